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
//     at snapshot creation (Props). A snapshot whose name looks like z8r's
//     but which lacks the property is foreign: z8r never prunes, holds or
//     (by default) replicates it.
//   - HoldTag(target) is the hold tag that protects a target's incremental
//     base on the source: z8r-base-<target id> when the id is short and made
//     of [A-Za-z0-9_.-], otherwise z8r-base-<readable part>-<16 hex digits of
//     SHA-256>. A tag never contains ':', is at most MaxHoldTagLen long, and
//     distinct target ids get distinct tags (up to a 64-bit hash collision).
//   - BookmarkName(target, snap) is <hold tag>:<snap>, the bookmark that
//     protects the same base where the node supports bookmarks. The first
//     ':' separates the target's tag from the snapshot name
//     (ParseBookmarkName).
//
// Everything here is pure: no I/O, no clock.
package snapname
