package v1alpha1

// A replication target's state is one vocabulary for both replication
// paths: a DatasetReplication's status.targets[].state (and its summary
// status.state) and, per target, a VolumeSnapshotContent's
// z8r.dev/replication-status (internal/volsnap). What each means:
//
//   - Pending: not tried yet (or the target node's host key is not pinned
//     yet, or its transfer waits for a slot under the controller's
//     transfer limits: lastError says "queued for a transfer slot").
//   - Syncing: a transfer to the target is running (DatasetReplication).
//   - Synced: the target has what it was asked for: a DatasetReplication
//     target the source's newest snapshot, a VolumeSnapshot target the
//     content's snapshot (its GUID recorded).
//   - Behind: the last sync succeeded but the source has newer snapshots
//     to send (DatasetReplication).
//   - Diverged: the target has history the source lacks and was left
//     untouched (an administrator repairs it, or a policy allowing it
//     moves it aside); looked at again with backoff.
//   - Failed: the last attempt failed; retried with backoff.
//   - Skipped: the target already has a newer snapshot, so this older one
//     can never be received there (VolumeSnapshot). Final.
//   - Refused: another replication claimed the target (or the source)
//     first (one writer per dataset); looked at again later.
const (
	TargetPending  = "Pending"
	TargetSyncing  = "Syncing"
	TargetSynced   = "Synced"
	TargetBehind   = "Behind"
	TargetDiverged = "Diverged"
	TargetFailed   = "Failed"
	TargetSkipped  = "Skipped"
	TargetRefused  = "Refused"
)
