// Package zfsexec runs typed ZFS operations on one node.
//
// Two layers, as in zrepl: a Runner executes an argv (never a shell string)
// with streaming stdin/stdout, locally (LocalRunner, optionally entering a
// test node's namespaces through a prefix), inside a test guest, or on a
// remote node agent; ZFS builds each argv, runs it through the Runner and
// parses the output.
//
// Contract:
//   - Every dataset, snapshot, bookmark, hold tag and property name is
//     validated (names.go) before any process starts; a bad name returns a
//     *NameError (errors.Is ErrInvalidName) and runs nothing.
//   - Output is read in machine form (`zfs get -H -p -o
//     name,property,value,source`, which zfs-fuse also supports) and every
//     line's field count is checked; bad output is a *ParseError.
//   - A command that exits non-zero returns a *CommandError with argv, exit
//     code and stderr. errors.Is(err, ErrX) tells which known condition it
//     is (errors.go); the patterns were provoked on real zfs-fuse 0.7 and
//     OpenZFS 2.3, whose captured output is in testdata/.
//   - Capabilities are detected per node (zfs-fuse 0.7 at pool version 23
//     versus OpenZFS 2.x). Asking for a feature the node lacks (bookmarks,
//     resumable receive, raw or compressed send, `zfs holds`) returns an
//     *UnsupportedError (errors.Is ErrUnsupported) and runs nothing.
//   - Nothing here decides policy: Recv uses -F and Rollback -r only when
//     the caller sets Force / DestroyNewer; Destroy refuses filesystems;
//     Rename moves a filesystem only beside itself (same parent, never a
//     pool's root, never a snapshot), which is how callers move a dataset
//     aside instead of destroying it; Unmount never forces. A snapshot a clone depends on fails
//     to destroy with ErrHasClones; a taken rename destination is
//     ErrDatasetExists.
//   - Clone makes a filesystem from a snapshot of the same pool (a taken
//     name is ErrDatasetExists), Promote swaps a clone with its origin (a
//     non-clone is ErrNotClone), Mount mounts at the mountpoint property
//     (ErrAlreadyMounted if mounted), Inherit clears one property's local
//     value (never -r). zfs-fuse mounts a new clone even with
//     canmount=noauto: callers that need it unmounted unmount it.
//   - DecodeResumeToken (resumetoken.go) decodes a receive_resume_token
//     without asking ZFS: version 1, the Fletcher-4 word of the compressed
//     payload, zlib, then the packed nvlist (native encoding, either byte
//     order, as the OpenZFS kernel writes it), with every size bounded.
//     Any malformed token is an error matching ErrInvalidResumeToken, never
//     a panic (FuzzDecodeResumeToken); decoding was checked against
//     `zfs send -nvt` on tokens from OpenZFS 2.3 (testdata/openzfs-2.3/
//     send-nvt-*.txt).
package zfsexec
