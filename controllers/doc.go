// Package controllers holds z8r's reconcilers. Each is thin: it reads
// objects, decides through the pure packages under internal/ (policy,
// schedule, plan, retention, volsnap, tenancy), acts on nodes only
// through NodeAccess (internal/replicate over the nodes' agents), and
// writes status and Events with constant reasons (api/v1alpha1: Event
// reasons in events.go, condition types and reasons in conditions.go).
//
// # Reconcilers and what each owns
//
//   - Z8RNodeReconciler (z8rnode_controller.go) owns a Z8RNode's
//     spec.pinnedHostKey (pinned on first use) and its HostKeyTrusted
//     condition: a changed key is reported (False) until an administrator
//     approves it. The agents own the rest of the Z8RNode. It also sets
//     the node's gauges (ready, last heartbeat, host key changed).
//   - NodePolicyReconciler (nodepolicy_controller.go) owns the
//     DatasetReplications labelled z8r.dev/managed-by=node-annotations,
//     made from node labels and annotations (the original z8r's and
//     z8r.dev's), and each Node's z8r.dev/annotation-problem. A node with
//     a malformed or empty annotation gets a Warning and changes nothing
//     (removing the annotation is how a user stops replicating); its
//     current problems stay in that annotation until they are fixed.
//     Every Event note is cut to the API's 1024 bytes (LimitedRecorder)
//     so that a Warning about bad input is never lost.
//   - DatasetReplicationReconciler (datasetreplication_controller.go)
//     owns every DatasetReplication's status, its finalizer
//     (finalizerReleaseHolds) and, on the nodes, the replication's
//     snapshots, holds and bookmarks: it snapshots on schedule, brings
//     every target up to date (a running transfer shows Syncing with
//     status.targets[].transfer, and is cancelled when the replication is
//     suspended, deleted or drops the target: syncprogress.go; one that
//     transfers for longer than DetachAfter goes on in the background and
//     frees its worker: transferrunner.go), protects
//     bases, prunes, and records
//     per-target status and metrics (metrics.go: the per-target gauges
//     are set from the status it writes and, after a restart, from the
//     status it reads first, so they survive a restart; docs/metrics.md). A spec.source changed to
//     a target is a promotion (promotion.go): a planned switchover or an
//     unplanned failover, then the old source's rejoin with its tail kept
//     aside; status.source and status.promotion are its record.
//   - ReplicaRestoreReconciler (replicarestore_controller.go) owns a
//     ReplicaRestore's status and what it makes: on the snapshot's node a
//     clone marked z8r.dev:restore=<UID> (set locally) and, for a Local
//     volume, its mount; a Retain PV (local, or zfs-localpv's CSI PV and
//     ZFSVolume) and a PVC pre-bound to it, both annotated
//     z8r.dev/restore-uid. It checks every name before anything changes
//     (a refusal is Failed with a constant reason and a RestoreRefused
//     Warning), records the snapshot and its GUID once, and adopts only
//     what carries its UID, so a restart finishes a restore with one
//     clone. It destroys nothing; deleting the ReplicaRestore leaves the
//     dataset, PV and PVC (internal/restore, docs/restore.md).
//   - SnapshotterReconciler (snapshotter_controller.go) owns, for the CSI
//     drivers z8r serves, what the csi-snapshotter sidecar owns: the ZFS
//     snapshot of a content (taken, imported, destroyed), the content's
//     status, the being-created annotation, z8r.dev/source-destroyed and
//     the bound-protection finalizer's removal. Deleting a source content
//     destroys its snapshot first, then deletes its unbound replica
//     contents and releases their holds (snapshotcontent_replicas.go),
//     then lets it go.
//   - VolumeSnapshotReplicationReconciler
//     (volumesnapshot_replication_controller.go) owns, for every ready
//     content asking for replication (any driver whose snapshot z8r can
//     locate), the annotations z8r.dev/replicate-to (the targets
//     decided), z8r.dev/node, z8r.dev/dataset and
//     z8r.dev/replication-status (each target's state, the vocabulary of
//     api/v1alpha1's targetstate.go), the replica contents (labelled
//     z8r.dev/replica-of-uid) and their deletionPolicy, a
//     VolumeSnapshot's z8r.dev/annotation-problem, the replicas on the
//     target nodes and their holds, and finalizerReleaseHolds on another
//     driver's content (whose deletion releases the holds and deletes the
//     unbound replicas). Both reconcilers find a content's snapshot and
//     its targets the same way (snapshotcontent_objects.go), so the
//     snapshotter refuses a malformed z8r.dev/replicate-to before it takes
//     a snapshot.
//   - PVCAnnotationsReconciler (pvcannotations_controller.go) owns the
//     scheduled VolumeSnapshots of annotated PVCs (labelled
//     z8r.dev/managed-by=pvc-schedule), takes and prunes them, and a PVC's
//     z8r.dev/annotation-problem; for a PVC without CSI it owns the
//     DatasetReplication its annotations configure
//     (pvcannotations_datasetreplication.go, named PVCReplicationName),
//     until it is promoted to a target: then it leaves it alone and, once
//     the promotion completed, hands it over to the administrator.
//
// Shared by them: claims.go (one writer per dataset), tenantscope.go
// (ReplicationTargetPolicies), retry.go (requeue delays, the one backoff
// of failing targets on both replication paths, the one finalizer),
// nodeaccess.go and agentpool.go (reaching nodes), setup.go and
// snapshots_setup.go (wiring). The two VolumeSnapshotContent reconcilers
// also share snapshotcontent_objects.go (locating a content's snapshot,
// deciding its targets, the field indexes both list by) and
// snapshotcontent_replicas.go (what a deleted source content's replicas
// and holds become).
//
// # Tenants
//
// z8r.dev/replicate-to on a PVC or VolumeSnapshot is a tenant's request:
// each target is made only if a ReplicationTargetPolicy selecting the
// namespace allows it (tenancy.Check, fail closed); refused ones get a
// TargetNotAllowed Warning and stay in the object's
// z8r.dev/annotation-problem (the PVC's is rewritten on every reconcile,
// and removed when there is no problem), and nothing is created for them.
// A VolumeSnapshotClass's targets are the administrator's and always
// apply; an empty value on a PVC or VolumeSnapshot is an error, never an
// opt-out. A local PVC's DatasetReplication is named PVCReplicationName
// (64 bits of hash); before it is patched or deleted its labels and
// z8r.dev/pvc annotation must name that PVC, and an object under the name
// that is not the PVC's gets a ReplicationNameTaken Warning and is left
// alone. One made by an earlier version under the 32-bit name
// (pvc-<policy.ID>) keeps that name: its snapshots are owned under it
// (z8r.dev:policy), and hold tags derive from the targets
// (policy.ID(node, dataset)), not from the name, so neither changes.
//
// # One writer per dataset
//
// A source dataset (node and dataset) has one replication and a target
// dataset has one writer, across node annotations, DatasetReplications
// (including those PVC annotations create for non-CSI volumes) and
// VolumeSnapshot replication (all the replicating contents of one source
// volume count as one replication, dated by its oldest such content). The
// decision is policy.Conflicts: the earliest claimant (creationTimestamp,
// then kind and name) keeps the dataset; a later one is refused, not
// serialised. A refused DatasetReplication gets Ready=False reason Conflict
// and a Warning (ReplicationConflict) naming the first, and runs nothing:
// no snapshot, transfer, hold, release or prune, and its finalizer releases
// no hold of a dataset it was refused. A refused VolumeSnapshot target is
// recorded as Refused in the content's replication status, with the same
// Warning. Both look again every minute, so the second starts when the
// first goes.
//
// # Connections
//
// The reconcilers reach nodes through NodeAccess: Get returns a Node (its
// agent as a replicate.Endpoint, with the address and pinned host key a
// transfer's grant names) and DropFailed drops a connection an error
// showed failed. AgentPool implements it and keeps one SSH connection per
// node. A failed sync drops only a connection that failed
// (AgentPool.DropFailed): one that has ended, or whose own channel could
// not be opened or ended without a status (an *agent.UnreachableError
// naming its address). An error an agent reports over a working
// connection (the source agent could not reach the target) drops nothing,
// so one unreachable target never cancels the source's other transfers.
//
// # Removing a target, deleting a replication
//
// A target removed from a DatasetReplication's spec stays in its status
// with removedAt, and its base stays held (and bookmarked) on the source
// for RemovedTargetGrace (default 10 minutes of the controller's clock):
// re-adding it within that time syncs incrementally. Then the hold is
// released and the entry goes. Deleting a replication releases the holds
// of the union of its spec and status targets; if the source's Z8RNode is
// gone, the tags that could not be released are named in a HoldsLeaked
// Warning before the object goes.
//
// # Schedules
//
// The schedule counts from the newest of the replication's own snapshots
// (locally set ownership for that replication) that is not in the future
// (schedule.Last); ones named after the controller's clock raise a
// FutureSnapshot Warning and do not freeze the schedule.
//
// PVC schedules (volsnap): a scheduled VolumeSnapshot is named after its
// schedule slot, so a reconcile from a stale cache finds the slot's
// snapshot exists instead of taking a second; none is taken while the
// previous one is not ready (an outage leaves one pending, not one per
// period); only ready ones count in retention, and one whose content is
// still being replicated is not pruned. Deleting a source content destroys
// (or defers the destruction of) its snapshot on its node and records that
// (z8r.dev/source-destroyed) before any replica is deleted, so a source
// node that is down costs no copy. A replica content's snapshot is
// destroyed only if it carries z8r's local mark for that content
// (volsnap.MarkedFor), set on the target after each receive. While a
// target still has a replica (its destroy deferred: the target holds its
// last received snapshot as the next base), the source keeps its hold on
// the same snapshot, so a target's newest snapshot always exists on the
// source.
package controllers
