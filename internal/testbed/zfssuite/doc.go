// Package zfssuite is the platform test suite for package zfsexec: the same
// tests, run against every real ZFS the project supports (zfs-fuse test
// nodes, OpenZFS in a qemu guest), so a behaviour z8r relies on is checked
// on each implementation, never on a fake.
//
// A backend supplies a Pair: two Hosts, each a zfsexec.ZFS on a distinct
// node with a pool the suite may create datasets in (the pools may share a
// name). Every subtest works in datasets named after itself, so one pair of
// nodes serves the whole suite.
package zfssuite
