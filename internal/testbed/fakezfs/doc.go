// Package fakezfs is an in-memory ZFS node behind zfsexec.Runner, for tests
// that need ZFS without root, zfs-fuse or a guest: zfsexec.New(node) (or
// node.ZFS()) works unchanged, and transfers between two nodes go through
// zfsexec.Pipe and PipeCounted like real ones. TestPlatform_Fake runs the
// platform suite on it; `go test -tags platform -run
// 'TestPlatform_(Fake|ZFSFuse)$' ./internal/testbed/fakezfs/ ./zfsexec/`
// runs it in the same run as zfs-fuse.
//
// Contract:
//   - The fake cannot lie: it passes the same platform suite
//     (internal/testbed/zfssuite) as zfs-fuse and OpenZFS, in either
//     flavour (Options.Implementation: ImplOpenZFS, the default, imitating
//     OpenZFS 2.3; or ImplZFSFuse, pool version 23). Capability detection
//     sees the flavour it imitates; a feature that flavour lacks is refused
//     the way it refuses it (zfs-fuse: no bookmarks, `send -t/-w/-c/-L`,
//     `recv -s/-A/-o/-x`, `written`, receive_resume_token, and a silent
//     failing `zfs holds`).
//   - Every argv it does not model returns a *NotModelledError naming the
//     argv (errors.Is ErrNotModelled); nothing unknown silently succeeds.
//     Modelled: the forms the node agent accepts (internal/agent/allow.go,
//     among them `zfs clone [-o]`, `zfs promote`, `zfs mount`, `zfs
//     inherit` of user properties and readonly), plus `zfs rollback [-r]`,
//     `zfs clone -p` into an existing parent, `zfs send -p` and `-I`, `zfs
//     create -V`, `dd of=PATH` and `cat PATH` (files of mounted
//     filesystems, as the suite reads and writes them).
//   - A failing command returns a *zfsexec.CommandError whose stderr is
//     the wording the imitated ZFS prints for that condition (see
//     zfsexec/testdata), so zfsexec's typed errors come out the same.
//   - Modelled state: pools; filesystems and volumes with parents; files;
//     snapshots with random GUIDs and createtxg order, creation times
//     kept across a transfer; bookmarks; user properties with source
//     local, received (`send -p`) or inherited (also by snapshots), and
//     readonly/canmount; holds and deferred destroy; clones (origin
//     property; mounted at once unless canmount=off on zfs-fuse, unless
//     noauto or off on OpenZFS) blocking their origin's destroy
//     (ErrHasClones); promote (the clone takes the origin snapshot and the
//     older ones with GUIDs, holds and properties, and the origin
//     filesystem's own origin; the former origin becomes its clone; a
//     snapshot name on both sides refuses it); inherit (local and received
//     value cleared); rename (zfs-fuse: unmounted only; clones' origins
//     follow, the snapshots being the same objects); mounted state;
//     a written-since-last-snapshot count (Node.Write simulates an
//     application's write) that makes an incremental receive without -F
//     fail as modified.
//   - Streams are the fake's own format (magic, header, body, checksum): a
//     truncated stream fails like an incomplete one, and with `recv -s`
//     leaves partial state with a receive_resume_token in OpenZFS's real
//     token format, which `send -t` resumes and `recv -A` discards. An
//     incremental `recv -F` rolls back changes since the target's latest
//     snapshot; one whose target has snapshots newer than the stream's
//     source fails as a mismatch: the fake destroys nothing there
//     (zfs-fuse's behaviour, TESTBED.md; OpenZFS would destroy them, which
//     z8r never relies on). Not checked by the suite: volumes, `-d` on a
//     clone's origin, `written` values, renaming a mounted filesystem on
//     OpenZFS.
//   - Fault injection: FailNth fails the Nth command matching a Matcher
//     with a chosen error, before it runs; CutNth runs it but cuts its
//     output after a number of bytes (a dropped transfer); Block holds
//     matching commands until Release (Gate.Wait tells a test one is
//     held). Commands returns every argv the node was given, in order.
//   - A receive reads the whole stream into memory before applying it;
//     the fake is for tests, not for large data.
package fakezfs
