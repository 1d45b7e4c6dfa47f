// Package plan decides what to send to bring one target dataset up to date
// with its source, from the two sides' snapshot lists alone. It is the z8r
// counterpart of zrepl's replication/logic/diff, and pure: no I/O.
//
// Contract of Compute:
//
//   - Snapshots are matched by GUID, never by name. A target snapshot named
//     like a source snapshot but with another GUID is not common; one with a
//     different name but the same GUID (renamed) is.
//   - The base is the newest target snapshot (by the target's createtxg)
//     whose GUID the source has as a snapshot or a bookmark. When the source
//     has both, the snapshot is preferred; a bookmark base lets the source
//     prune the snapshot while keeping the chain (zfs send -i #bookmark).
//     Target bookmarks are ignored.
//   - Steps go oldest to newest, one per snapshot to send; each step's From
//     is the previous step's To, the first one's is the base (nil for a full
//     send). The snapshots sent are the source snapshots newer (createtxg)
//     than the base that are Owned, plus foreign ones with
//     Options.IncludeForeign. A bookmark is never a To. Sending one step per
//     snapshot (zfs send -i) rather than -I keeps foreign intermediate
//     snapshots off the target unless asked for.
//   - Target dataset missing (TargetExists false and no target snapshots):
//     not an error. The plan is a full send of the newest eligible snapshot
//     (Plan.Full), or with Options.InitialAll of the oldest eligible one
//     followed by incrementals through all of them. No eligible snapshot
//     yet: an empty plan, Base nil.
//   - Target dataset exists but has no snapshots: by default a conflict
//     (ErrTargetNotEmpty). A full receive over an existing dataset needs
//     zfs recv -F, which would silently replace whatever the dataset holds
//     (the original z8r's mistake). With Options.AllowFullIntoEmpty the plan
//     is the same as for a missing target, with Plan.IntoExisting set so
//     the executor knows to force the receive.
//   - Up to date: not an error; Steps is empty and Base is the newest common
//     snapshot.
//   - Conflicts are *ConflictError; errors.Is matches its Kind's sentinel
//     (and only that one): ErrNoCommonSnapshot (the target has snapshots,
//     none shares a GUID with the source), ErrTargetNotEmpty (above), and
//     for a target with history the source lacks one of two kinds:
//   - ErrSourceLost (ConflictSourceLost): the target has snapshots newer
//     than the base that the source lacks, every one of them Owned (z8r
//     received it from this replication's source), and was not written
//     since its newest snapshot. The source lost history the target still
//     has (an operator's rollback or destroy, a failback, a lost
//     acknowledgement): the target holds the only copy. Never resolved
//     automatically, not even under a rollback-diverged policy.
//   - ErrDiverged (ConflictDiverged): the target grew: it has snapshots
//     newer than the base that the source lacks, at least one of them not
//     Owned (an operator's, another replication's), or it was written since
//     its newest snapshot (Input.TargetModified), or both. A
//     rollback-diverged policy may act on this one, after moving the
//     target's unique data aside.
//   - Snapshot.Owned must mean "z8r's, of this replication": callers set it
//     from snapname.IsOwnedBy(LocalProps, policyID), never from inherited
//     or received properties. Owned decides both what is sent and which
//     divergence is which.
//   - Diverged describes a divergence for status without planning. Its
//     Kind (and Err) classify it exactly as Compute does; OnlyOwned tells
//     whether a rollback would destroy only z8r's snapshots (necessary, not
//     sufficient, for honouring a rollback-diverged policy: with target-only
//     snapshots it means SourceLost).
//
// Contract of ComputeSnapshot (one named snapshot, for VolumeSnapshots):
//
//   - It plans at most one step, whose To is the source snapshot named
//     name, whether Owned or not (asking for it by name is the consent
//     IncludeForeign gives for whole histories). Not on the source:
//     ErrSnapshotMissing.
//   - The target already has a snapshot with its GUID: an empty plan whose
//     Base is the newest common snapshot (as for Compute), so the caller
//     keeps protecting the right base.
//   - Target dataset missing or (with AllowFullIntoEmpty) empty: one full
//     send, as for Compute.
//   - Otherwise the one step is incremental from the base, which must be the
//     target's newest snapshot (a receive needs it): target snapshots newer
//     than the newest common one are ErrDiverged or ErrSourceLost (as for
//     Compute), and a base newer than the
//     snapshot to send is ErrTargetNewer (ConflictTargetNewer: ZFS cannot
//     receive an older snapshot after a newer one); no common snapshot is
//     ErrNoCommonSnapshot, and an existing target without snapshots
//     ErrTargetNotEmpty, as for Compute.
//
// Ordering uses createtxg within each side (ZFS's own order); Creation is
// carried for display. Inputs are not modified.
package plan
