// Package pvresolve tells which ZFS dataset on which node backs a
// PersistentVolume. It is pure: it reads the PV object and, for `local`
// PVs, a list of mountpoints the caller fetched from the node.
//
// # Shapes
//
// Resolve recognises, in this order:
//
//  1. Any PV annotated z8r.dev/dataset and z8r.dev/node
//     (v1alpha1.AnnotationDataset, AnnotationNode): the annotations are
//     taken as they are. An administrator uses them for drivers z8r does
//     not know, or to override a guess. One without the other is an error.
//  2. CSI driver zfs.z8r.dev: the volume handle is the dataset; the node is
//     the volume attribute z8r.dev/node (v1alpha1.VolumeAttributeNode),
//     else the node affinity.
//  3. CSI driver zfs.csi.openebs.io (OpenEBS zfs-localpv): the dataset is
//     <volumeAttributes["openebs.io/poolname"]>/<volumeHandle>; the node is
//     the node affinity.
//  4. A `local` PV: its path must be the mountpoint of a dataset on the
//     node of its node affinity. Which dataset that is only the node knows,
//     so Resolve returns a Volume with NeedsMountpointLookup true and the
//     caller, having read the node's mountpoints (`zfs get -r mountpoint
//     POOL` for each pool the agent serves), finishes with
//     DatasetAtMountpoint. Only an exact mountpoint counts: a directory
//     inside a dataset is not a volume z8r can snapshot on its own.
//
// The node of a node affinity is the single value of a required
// `kubernetes.io/hostname` (or older zfs-localpv's `openebs.io/nodename`)
// In term; z8r assumes node names equal their hostname label, as they do
// unless the kubelet was started with --hostname-override. Current
// zfs-localpv pins with `openebs.io/nodeid`, whose value is the Node's
// label of that key (often a UUID), not its name: Resolve resolves it
// through Options.NodeByID, which the caller builds from its Nodes
// (NodeIDs; a value two Nodes carry resolves to neither). Without one, or
// when no Node carries the value, such a PV is ErrIncomplete.
//
// Every other PV (another CSI driver, NFS, hostPath, ...) is
// ErrUnknownShape. Errors are *Error, naming the PV, and match (errors.Is)
// one of ErrUnknownShape, ErrIncomplete or ErrInvalidDataset. Dataset names
// are checked with zfsexec.ValidateDataset, including those a node reports
// for a local PV's mountpoint (a mountpoint of an invalid name is
// ErrInvalidDataset), and node names must be DNS-1123 subdomains
// (ErrIncomplete otherwise); whether the pool is one the node's agent
// serves is the caller's check.
package pvresolve
