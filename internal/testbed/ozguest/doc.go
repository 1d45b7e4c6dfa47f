// Package ozguest boots qemu guests that run real OpenZFS 2.x (Debian
// bookworm-backports' zfs-dkms/zfsutils-linux) and runs commands in them
// through a zfsexec.Runner, so platform tests can use the OpenZFS-only features
// (bookmarks, resumable receive, raw and compressed sends) that zfs-fuse lacks.
//
// Contract:
//   - Boot(t, opts) (or BootN for several at once, booting in parallel) returns
//     guests whose exec server answers and whose spl/zfs modules are loaded, or
//     fails the test. It never skips: when the image is missing the test fails
//     with "run make ozguest-image". The image is the directory printed by
//     `hack/ozguest/build-image.sh --print-dir` (kernel, initrd, root.qcow2,
//     done), or $Z8R_OZGUEST_IMAGE when set.
//   - The guest runs under software emulation (-accel tcg,thread=multi -cpu max):
//     /dev/kvm on these machines cannot run Debian's kernel. The root disk is
//     opened with snapshot=on and never changes. Options.Disks sparse files
//     become virtio-blk disks with serial zdisk0, zdisk1, ..., seen in the guest
//     as Guest.Disk(i) = /dev/disk/by-id/virtio-zdiskI. They and everything else
//     of the guest live in the test's temporary directory.
//   - Every qemu is killed by a t.Cleanup registered by Boot, also when the test
//     fails. When the test binary dies without running cleanups, the kernel kills
//     qemu (PR_SET_PDEATHSIG=SIGKILL); qemu runs in its own process group.
//   - Guest.Runner() implements zfsexec.Runner. Each Run is one SSH session on
//     the guest's single persistent connection: the argv travels as JSON and is
//     executed without a shell (PATH includes /sbin and /usr/sbin); stdin and
//     stdout stream in both directions with SSH flow control, so `zfs send` in
//     one guest can feed `zfs recv` in another through an io.Pipe; stderr is
//     kept up to 64 KiB. A non-zero exit yields a *zfsexec.CommandError (a
//     process killed by signal N exits 128+N; a program that cannot be started
//     exits 127 with the reason on stderr). Cancelling ctx kills the process
//     group in the guest and Run returns an error wrapping ctx.Err(). When
//     Command.Stdout fails, the guest closes the process's stdout (so it sees a
//     broken pipe, as it would locally) and Run returns that write error unless
//     the process itself failed.
//   - Channel: the exec server (guestexec, built from ./guestexec for the
//     host's Go toolchain with CGO_ENABLED=0 at the first Boot of a test
//     binary) comes to the guest through a 9p share, with an SSH host key and
//     the one authorized client key that Boot generates per guest. The guest's
//     init (hack/ozguest/guest/ozinit) starts it. By default it serves on a
//     virtio-serial port backed by a unix socket on the host; ChannelTCP serves
//     over qemu user-mode networking with a hostfwd on a free 127.0.0.1 port
//     instead (measured slower; kept for comparison). The unix socket lives in
//     $TMPDIR/z8r-ozguest/<pid>-<guest>/ (socket paths must be short); Boot
//     removes those of test binaries that died.
//   - Measured on 2 contended cores: boot to a usable zfs in 11-17 s; a
//     command's round trip 22-45 ms; streams 16-32 MB/s each way (the guest's
//     SSH cipher under emulation is the limit; chacha20-poly1305 is offered
//     first because it is three times faster there than AES-GCM).
//   - Other host processes reach a guest through StartRelay(t, g): an SSH
//     server on a unix socket beside the guest's (both ends pinned: the
//     relay's host key and the one client key it writes) that runs each
//     session's JSON argv through Guest.Runner, with the same exit codes
//     and stderr. Relay.Prefix() is the argv of the ozexec client (built
//     from ./ozexec once per test binary) up to "--": prepended to an argv
//     it runs that command in the guest. A client that goes away (ozexec
//     killed) has its commands killed in the guest.
//   - StartAgent(t, g, relay, keys, pools...) runs a real z8r-agent on the
//     host (agentproc.Binary, agentproc.Keys) on a free 127.0.0.1 port
//     with --zfs-prefix set to the relay's prefix, so every zfs command
//     the agent starts runs in the guest. HostAgent.Kill is a crash
//     (SIGKILL); Start brings it back with the same host key.
//
// The tests of this package carry the build tag `platform`, except
// agents_e2e_test.go (tag `e2e`): TestAgents_ResumeBetweenOpenZFSGuests
// interrupts a 256 MiB replication between two guests' agents and resumes
// it from the token.
package ozguest
