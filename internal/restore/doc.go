// Package restore holds the pure parts of a ReplicaRestore (#16 "Restore
// into a PVC"): where the snapshot to restore is, which one it is, what the
// new dataset is called, and the Kubernetes objects that expose it. It runs
// no command and calls no API; controllers/replicarestore_controller.go
// does, in this order, each step checking first whether it was done:
//
//  1. Locate (ReplicationDataset, ContentSnapshot) and pick the snapshot
//     (PickSnapshot: the named one, else the newest by createtxg); decide the
//     dataset (Dataset) and PV name (PVName). Every refusal is a *Refusal
//     whose Reason is a constant of api/v1alpha1 (ReasonDatasetExists, ...):
//     the controller reports it on the object and changes nothing.
//  2. `zfs clone -o z8r.dev:restore=<UID> -o z8r.dev:restored-from=<node>:<snapshot>
//     SNAP FS` (CloneProps). A dataset that carries z8r.dev:restore=<UID>
//     set locally is this restore's own (OwnsDataset): found after a crash,
//     it is adopted, never cloned again; any other existing dataset is
//     DatasetExists.
//  3. For a Local volume `zfs mount FS` unless mounted, then LocalPV at the
//     mountpoint read back from ZFS, pinned with kubernetes.io/hostname.
//     For ZFSLocalPV, ZFSVolume (unstructured: zfs-localpv's own
//     zfs.openebs.io/v1 type, in its namespace, no finalizer so deleting it
//     never destroys the dataset) and ZFSLocalPV, pinned with
//     openebs.io/nodeid = the Node's openebs.io/nodeid label (the node name
//     when absent), as zfs-localpv's node plugin expects.
//  4. PVC pre-bound (spec.volumeName) to the PV, whose claimRef names it.
//
// Objects made carry z8r.dev/restore-uid (Owned); one without it, or with
// another UID, is never adopted or changed. Every PV is Retain: nothing z8r
// makes for a restore is ever destroyed by Kubernetes or by z8r.
package restore
