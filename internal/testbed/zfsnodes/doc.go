// Package zfsnodes gives tests simulated ZFS nodes backed by real zfs-fuse.
//
// Each Node is one zfs-fuse daemon in its own private mount namespace (and,
// when asked, its own network namespace), started by hack/zfsnode.sh, with
// file-backed pools of its own; several nodes may each own a pool named
// "tank". Commands reach a node through a zfsexec.LocalRunner whose prefix
// enters the node's namespaces with nsenter.
//
// Contract:
//   - Start needs root and zfs-fuse; when either is missing the test fails
//     (it never skips): .ci/run installs zfs-fuse.
//   - Every node started is torn down in t.Cleanup (pools destroyed, daemon
//     stopped, state removed), also when the test fails or panics. Nodes
//     left behind by a killed test binary are swept by the next Start (their
//     recorded owner process is gone) and by `hack/zfsnode.sh sweep`.
//   - Node state lives under StateRoot(); nothing outside it is written
//     except the empty bind-mount targets /run/zfs, /run/lock/zfs and
//     /var/lib/zfs.
package zfsnodes
