// Package volsnap is the pure logic of z8r's VolumeSnapshot integration:
// what the snapshotter does next for a VolumeSnapshotContent (Next, in the
// csi-snapshotter sidecar's order and with its safety rules), how z8r
// names and finds the ZFS snapshots it takes for contents, the
// z8r.dev/replicate-to grammar, the per-content replication status kept in
// an annotation, and the choices behind scheduled VolumeSnapshots of a
// PVC. It is pure: it talks to no node, agent or API server and imports
// none of their packages; the controllers package does the I/O.
//
// # replicate-to
//
//	value  = [ entry *( "," entry ) ]
//	entry  = NODE [ ":" DEST ]
//	DEST   = DATASET            the replica is exactly DATASET on NODE
//	       | PARENT "/"         the replica is PARENT/<source without its pool>
//
// NODE is a Kubernetes node name (a z8r agent must run there). Without
// DEST the replica has the source dataset's name. For a source dataset
// tank/k8s/pvc-1 on node1:
//
//	node2                 node2:tank/k8s/pvc-1
//	node3:backup/pvc-1    node3:backup/pvc-1
//	node3:backup/         node3:backup/k8s/pvc-1
//	node3:backup/x/       node3:backup/x/k8s/pvc-1
//	node1:backup/         node1:backup/k8s/pvc-1  (a copy in another pool of the same node)
//
// Blanks around entries and empty entries are ignored and repeats dropped.
// ParseTargets accepts an empty value (no entry); z8r's controllers treat
// one on a PVC or VolumeSnapshot as an error, not as "replicate nothing". A target that resolves to the source itself is
// ErrSelfTarget. NODE:DATASET on a class or on a PVC whose snapshots are
// many is fine (every snapshot of one PVC goes to the same replica
// dataset); on a VolumeSnapshotClass prefer NODE or NODE:PARENT/, since a
// fixed DATASET would make the replicas of different PVCs collide (z8r
// then reports the second one's conflict, and destroys nothing).
//
// Which objects' values count, and that tenant targets are checked
// against the administrator's ReplicationTargetPolicies, is decided in
// the controllers and internal/tenancy: the class's targets plus the
// allowed ones of the VolumeSnapshot's (else the PVC's) value, unless the
// content carries its own. z8r writes the targets decided onto the
// content, resolved (NODE:DATASET), the first time it acts, so
// replication is keyed on the content and its snapshotHandle: Velero
// deletes the VolumeSnapshot after its upload, and the content carries on.
//
// # Snapshots and handles
//
// The ZFS snapshot of a dynamic content is <dataset>@snapshot-<VolumeSnapshot
// UID> (SnapshotName), the name the csi-snapshotter sidecar would pass a
// CSI driver, so a retry after a crash finds the snapshot an earlier
// attempt took instead of taking a second one. It carries the user
// property PropContent (the content's name), set atomically at creation;
// an existing snapshot of that name is adopted only if the property
// matches. It is not marked z8r.dev:owner=z8r, so no retention policy
// ever prunes it: it lives exactly as long as its content. The
// snapshotHandle is the full snapshot name (Handle); another driver's
// handle (zfs-localpv: <volumeHandle>@snapshot-<uid>) gives only the
// short name (ForeignShortName).
//
// # The sidecar's rules (Next)
//
// Next mirrors external-snapshotter's pkg/sidecar-controller: deletion is
// considered first and only when ShouldDelete (a deletion timestamp and
// either an unbound pre-provisioned content or the snapshot-controller's
// being-deleted annotation, never while being-created is set); then a
// dynamic content that is not ready is created (idempotently), a
// pre-provisioned one imported; a ready content with a stale
// being-created annotation has it removed. The controller sets
// AnnBeingCreated before asking the node and removes it on success or on
// an error it knows to be final (the agent refused, an invalid name, zfs
// ran and failed); any other error leaves it, so deletion waits and a
// retry adopts what the first attempt may have done.
//
// # Replication status
//
// Status (annotation z8r.dev/replication-status, JSON) has one
// TargetState per target, in the target-state vocabulary DatasetReplications
// use (api/v1alpha1, targetstate.go): Pending, Synced (with the GUID and
// the replica's content; "Replicated", written by earlier versions, reads
// as Synced), Failed or Diverged (retried with the controller's backoff),
// Skipped (the target already had a newer snapshot: ZFS cannot receive an
// older one after it), or Refused (another replication writes that
// dataset).
//
// # Scheduled VolumeSnapshots
//
// ScheduledName names them "<pvc>-<yyyymmdd-hhmmss>" after the schedule
// slot (SlotTime: the latest activation at or before now), so every
// reconcile of one slot names the same object and a second create is
// refused by the API server. Waiting reports a scheduled one that is not
// ready yet: while one waits no other is taken. PruneScheduled applies a
// retention policy to the ones z8r took (found by label, never others):
// only ready ones count (a snapshot that is not ready neither fills a slot
// nor is pruned), one whose replication is still in progress
// (ReplicationPending: a requested target not Synced or Skipped, or
// not started yet) is kept, and the newest is never pruned.
//
// # Replica marks
//
// After a replica is received z8r sets PropContent on it, locally, to the
// replica content's name; MarkedFor checks that mark before a replica's
// snapshot is destroyed, so a content that merely looks like a replica
// never makes z8r destroy a snapshot it did not create.
package volsnap
