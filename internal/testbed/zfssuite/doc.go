// Package zfssuite is the platform test suite for package zfsexec: the same
// tests, run against every real ZFS the project supports (zfs-fuse test
// nodes, OpenZFS in a qemu guest), so a behaviour z8r relies on is checked
// on each implementation. The in-memory node of internal/testbed/fakezfs
// runs the same suite (TestPlatform_Fake, no tags), so the fake cannot
// claim behaviour the real implementations lack.
//
// A backend supplies a Pair: two Hosts, each a zfsexec.ZFS on a distinct
// node with a pool the suite may create datasets in (the pools may share a
// name). Every subtest works in datasets named after itself, so one pair of
// nodes serves the whole suite.
//
// Covered: capabilities; snapshots, listing, GUIDs and createtxg order;
// holds, `zfs holds` and deferred destroy; idempotent destroy; full,
// incremental and `-I` replication with file contents checked; rollback;
// the typed errors callers branch on; rename (moving a filesystem aside
// with its child and snapshots); bookmarks and sends from them; property
// sources (LocalProps versus inherited and received values); clones
// blocking their origin's destroy (ErrHasClones); `recv -F` (incremental
// into a modified target, full into a filesystem without snapshots);
// resumable receive, `send -t` and `recv -A`; `recv -o`. For promotion and
// restore (suite_promote.go): a clone has its snapshot's data and origin;
// promote moves the origin snapshot and the older ones (names, GUIDs,
// holds, local properties) and flips origins, and a rename of the promoted
// filesystem carries the clone's origin along; preserving a returning old
// source's tail (freeze, tail snapshot, rename to FS-z8r-tail-T, clone
// the base back to FS, promote FS) leaves FS with the snapshots up to the
// base and its data, the tail dataset a clone with the later snapshots and
// writes, and FS taking an incremental from the new source without -F;
// readonly=off, canmount=on, mount and inherit.
//
// Where implementations differ, a subtest branches on the node's
// zfsexec.Capabilities (for example Bookmarks, ResumableRecv, RecvProps,
// HoldsList), never on the backend's name; on a node lacking a feature it
// checks that zfsexec refuses it with ErrUnsupported.
package zfssuite
