// Package invariants checks z8r's safety invariants (docs/design.md,
// DESIGN.md "Safety invariants") on what ZFS itself reports on the nodes,
// never on z8r's status: the chaos suite (e2e/chaos) runs them after every
// injected crash.
//
//   - I1: every target's newest snapshot GUID exists on the source as a
//     snapshot or a bookmark.
//   - I2: no z8r hold leaks. zfs-fuse cannot list hold tags, so holds are
//     counted (userrefs): with no transfer in flight, a source snapshot may
//     carry at most one hold per target whose newest snapshot it is (its
//     base), plus the holds the test placed itself; a target snapshot at
//     most one (z8r-last-<id>) and only if it is the target's newest.
//   - I3: no snapshot without locally set ownership by this replication
//     (snapname.IsOwnedBy on LocalProps: no owner, an inherited owner, or
//     another replication's) was destroyed: every such snapshot seen once
//     must still be there.
//   - I4: a replica's contents equal the source's at the same GUID: both
//     snapshots are cloned, mounted and every file's SHA-256 compared.
//   - T1, T2 (target hygiene, not in the list but part of case 3):
//     a target that has received is readonly, and every replica of a
//     snapshot z8r owns on the source is marked owned on the target.
//   - R1 (retention makes progress): with every target current, a last=N
//     policy leaves at most N of the replication's snapshots on a node.
//
// Contract: the checks on listings (I1, I2, I3, Hygiene, Retention) are pure; Read,
// Contents and I4 run zfs on a test-bed node and change nothing but the
// temporary clones they create and destroy. I2 and I4 are meant for a
// quiescent system (controller stopped); I1 and I3 hold at every instant.
package invariants
