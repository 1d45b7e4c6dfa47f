// Package snapname defines the names and markers by which z8r recognises what
// it owns on a ZFS node: its snapshots, the hold tags and the bookmarks that
// protect each target's incremental base.
//
// Contract:
//   - A snapshot z8r creates is named <prefix>-<UTC time> with the time as
//     20261126T103000Z (New). Names with one prefix sort by time as strings.
//     Two snapshots in the same second are told apart by a suffix -N
//     (WithSuffix), which Parse accepts; order such names by createtxg,
//     not as strings ("-10" sorts before "-2").
//   - A name is only a hint. Ownership is decided by the user property
//     z8r.dev:owner=z8r (IsOwned), set with z8r.dev:policy=<policy id>
//     at snapshot creation (Props), and only when set *locally* on the
//     snapshot itself (zfsexec.Dataset.LocalProps): a value inherited from a
//     parent or received in a stream makes nothing z8r's. A snapshot whose
//     name looks like z8r's but which lacks the local property is foreign:
//     z8r never prunes, holds or (by default) replicates it. IsOwnedBy
//     scopes ownership to one replication: retention and rollback act only
//     on the snapshots of the replication that took them.
//   - HoldTag(target) is the hold tag that protects a target's incremental
//     base on the source: z8r-base-<target id> when the id is short and made
//     of [A-Za-z0-9_.-], otherwise z8r-base-<readable part>-<16 hex digits of
//     SHA-256>. A tag never contains ':', is at most MaxHoldTagLen long, and
//     distinct target ids get distinct tags (up to a 64-bit hash collision).
//   - StepHoldTag(target) (z8r-step-...) protects both ends of a transfer
//     in flight on the source; ReplicaHoldTag(target) (z8r-last-...)
//     protects a target's last received snapshot on the target. Same form
//     as HoldTag; IsZ8RHoldTag recognises all three.
//   - DivergedName(dataset, t) is where a diverged target is moved aside
//     (renamed) instead of being rolled back or overwritten:
//     <dataset>-z8r-diverged-<UTC time>.
//   - TailName(dataset, t) is where a former source's unreplicated tail
//     (snapshots after the common base with the new source, and writes)
//     is preserved when a promotion reverses a replication:
//     <dataset>-z8r-tail-<UTC time>, beside the dataset (ParseTailName,
//     IsTailName). TailSnapshotName(t), z8r-tail-<same UTC time>, is the
//     snapshot that captures the writes since the newest snapshot right
//     before the move; it carries no ownership marks, so retention never
//     prunes it.
//   - BookmarkName(target, snap) is <hold tag>:<snap>, the bookmark that
//     protects the same base where the node supports bookmarks. The first
//     ':' separates the target's tag from the snapshot name
//     (ParseBookmarkName).
//
// Everything here is pure: no I/O, no clock.
package snapname
