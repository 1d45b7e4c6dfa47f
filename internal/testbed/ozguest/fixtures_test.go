//go:build platform

package ozguest

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/z8r-project/z8r/zfsexec"
)

var updateFixtures = flag.Bool("update", false, "rewrite zfsexec/testdata/openzfs-2.3 from the guests' output")

// fixtures compares captured output with zfsexec/testdata/openzfs-2.3 after
// masking what changes from run to run (numbers, dates, resume tokens), or
// rewrites the files with -update. The README there says which command
// produced each file.
type fixtures struct {
	t   *testing.T
	dir string
}

func newFixtures(t *testing.T) *fixtures {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "zfsexec", "testdata", "openzfs-2.3")
	if *updateFixtures {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fixtures{t: t, dir: dir}
}

var (
	maskToken = regexp.MustCompile(`1-[0-9a-f]+-[0-9a-f]+-[0-9a-f]{16,}`)
	maskDate  = regexp.MustCompile(`[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{1,2}:\d\d \d{4}`)
	maskNum   = regexp.MustCompile(`\d+`)
)

func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func mask(s string) string {
	s = maskToken.ReplaceAllString(s, "TOKEN")
	s = maskDate.ReplaceAllString(s, "DATE")
	return maskNum.ReplaceAllString(s, "N")
}

// output checks (or records) a command's stdout.
func (f *fixtures) output(name, got string) {
	f.t.Helper()
	f.check(name, got, false)
}

// unordered is output for commands whose line order varies from run to run
// (zfs holds lists tags in hash order).
func (f *fixtures) unordered(name, got string) {
	f.t.Helper()
	f.check(name, got, true)
}

func (f *fixtures) check(name, got string, sortLines bool) {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if *updateFixtures {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		f.t.Errorf("fixture %s: %v (capture with: go test -tags platform -run TestOpenZFS/Fixtures ./internal/testbed/ozguest -update)", name, err)
		return
	}
	g, w := mask(got), mask(string(want))
	if sortLines {
		g, w = sortedLines(g), sortedLines(w)
	}
	if g != w {
		f.t.Errorf("fixture %s does not match OpenZFS's output (masked):\n got: %q\nwant: %q", name, g, w)
	}
}

// failure checks (or records) the stderr of a failed command, its exit code
// and which zfsexec sentinel it matches (nil: none expected yet).
func (f *fixtures) failure(name string, err error, exitCode int, sentinel error) {
	f.t.Helper()
	var ce *zfsexec.CommandError
	if !errors.As(err, &ce) {
		f.t.Errorf("%s: want a *zfsexec.CommandError, got %v", name, err)
		return
	}
	f.check(name, ce.Stderr, false)
	if ce.ExitCode != exitCode {
		f.t.Errorf("%s: exit %d, want %d", name, ce.ExitCode, exitCode)
	}
	if sentinel != nil && !errors.Is(ce, sentinel) {
		f.t.Errorf("%s: errors.Is(err, %q) is false for OpenZFS stderr %q", name, sentinel, ce.Stderr)
	}
}

// captureFixtures provokes every output and error in the fixture set on src
// (pool tank, dataset tank/data) and dst (pool tank), in order. dst ends with
// its zfs module unloaded.
func captureFixtures(t *testing.T, srcG, dstG *Guest) {
	src, dst := srcG.Runner(), dstG.Runner()
	ctx := context.Background()
	fx := newFixtures(t)
	exec := func(r zfsexec.Runner, argv ...string) error {
		return r.Run(ctx, zfsexec.Command{Argv: argv})
	}
	pipe := func(send, recv []string) error {
		_, _, recvErr := transfer(ctx, src, send, dst, recv, 0)
		return recvErr
	}

	// The source dataset, as in the zfs-fuse fixtures.
	run(t, src, "zfs", "create", "tank/data")
	fill(t, src, "/tank/data/f", 16)
	run(t, src, "zfs", "snapshot", "-o", "z8r.dev:owner=z8r", "-o", "z8r.dev:policy=p1", "tank/data@s1")
	run(t, src, "zfs", "create", "tank/data/child")
	fill(t, src, "/tank/data/g", 1)
	run(t, src, "zfs", "snapshot", "tank/data@s2")
	run(t, src, "zfs", "bookmark", "tank/data@s1", "tank/data#b1")
	run(t, src, "zfs", "hold", "z8r-target-b", "tank/data@s1")
	run(t, src, "zfs", "hold", "keep", "tank/data@s1")
	run(t, src, "zfs", "hold", "z8r-target-c", "tank/data@s2")

	fx.output("version.txt", run(t, src, "zfs", "version"))
	fx.output("get-Hp-r.txt", run(t, src, "zfs", "get", "-Hp", "-r", "-o", "name,property,value,source",
		"guid,createtxg,creation,userrefs,type,z8r.dev:owner,z8r.dev:policy", "tank/data"))
	fx.output("get-Hp-guid-createtxg-creation.txt", run(t, src, "zfs", "get", "-Hp", "-r", "-t", "all",
		"-o", "name,property,value", "guid,createtxg,creation", "tank/data"))
	fx.output("list-Hp.txt", run(t, src, "zfs", "list", "-Hp", "-r", "-t", "all",
		"-o", "name,type,guid,createtxg,creation,used,referenced", "tank/data"))
	fx.output("list-H-guid.txt", run(t, src, "zfs", "list", "-H", "-t", "all", "-r", "-o", "name,guid,createtxg", "tank/data"))
	fx.output("list-Hp-bookmarks.txt", run(t, src, "zfs", "list", "-Hp", "-t", "bookmark", "-r", "-o", "name,guid,createtxg,creation", "tank/data"))
	fx.unordered("holds-H.txt", run(t, src, "zfs", "holds", "-H", "tank/data@s1"))
	fx.unordered("holds-Hp.txt", run(t, src, "zfs", "holds", "-Hp", "tank/data@s1"))
	fx.unordered("holds-H-two-snapshots.txt", run(t, src, "zfs", "holds", "-H", "tank/data@s1", "tank/data@s2"))
	run(t, src, "zfs", "release", "z8r-target-c", "tank/data@s2")
	fx.output("send-nP-full.txt", run(t, src, "zfs", "send", "-nP", "tank/data@s2"))
	fx.output("send-nP-incremental-bookmark.txt", run(t, src, "zfs", "send", "-nP", "-i", "tank/data#b1", "tank/data@s2"))

	// Errors on the source node.
	fx.failure("err-dataset-not-exist.txt", exec(src, "zfs", "get", "-Hp", "guid", "tank/nope"), 1, zfsexec.ErrDatasetNotExist)
	fx.failure("err-snapshot-exists.txt", exec(src, "zfs", "snapshot", "tank/data@s1"), 1, zfsexec.ErrSnapshotExists)
	fx.failure("err-destroy-busy.txt", exec(src, "zfs", "destroy", "tank/data@s1"), 1, zfsexec.ErrDatasetBusy)
	fx.failure("err-hold-tag-exists.txt", exec(src, "zfs", "hold", "z8r-target-b", "tank/data@s1"), 1, zfsexec.ErrTagExists)
	fx.failure("err-release-no-tag.txt", exec(src, "zfs", "release", "nope", "tank/data@s1"), 1, zfsexec.ErrNoSuchTag)
	fx.failure("err-send-incremental-source-missing.txt", exec(src, "zfs", "send", "-i", "@nope", "tank/data@s2"), 1, zfsexec.ErrDatasetNotExist)
	fx.failure("err-send-not-earlier.txt", exec(src, "zfs", "send", "-i", "@s2", "tank/data@s1"), 1, zfsexec.ErrNotEarlierSnapshot)
	fx.failure("err-send-bookmark-missing.txt", exec(src, "zfs", "send", "-i", "tank/data#nope", "tank/data@s2"), 1, zfsexec.ErrIncrementalSourceMissing)
	fx.failure("err-rollback-newer-exist.txt", exec(src, "zfs", "rollback", "tank/data@s1"), 1, zfsexec.ErrNewerSnapshotsExist)
	fx.failure("err-bookmark-exists.txt", exec(src, "zfs", "bookmark", "tank/data@s2", "tank/data#b1"), 1, nil)
	fx.failure("err-bookmark-source-missing.txt", exec(src, "zfs", "bookmark", "tank/data@nope", "tank/data#b2"), 2, zfsexec.ErrDatasetNotExist)
	fx.failure("err-bookmark-other-fs.txt", exec(src, "zfs", "bookmark", "tank/data@s1", "tank/data/child#b1"), 1, nil)
	fx.failure("err-destroy-snapshot-not-exist.txt", exec(src, "zfs", "destroy", "tank/data@nope"), 1, nil)
	fx.failure("err-destroy-bookmark-not-exist.txt", exec(src, "zfs", "destroy", "tank/data#nope"), 1, nil)
	fx.failure("err-destroy-has-children.txt", exec(src, "zfs", "destroy", "tank/data"), 1, nil)
	fx.failure("err-recv-abort-no-state.txt", exec(src, "zfs", "recv", "-A", "tank/data"), 1, nil)
	fx.failure("err-send-token-invalid.txt", exec(src, "zfs", "send", "-t", "1-0123abcd-12-789c0123456789abcdef"), 255, nil)

	// Receive errors on the target node, streams from the source.
	full := []string{"zfs", "send", "tank/data@s1"}
	incr := []string{"zfs", "send", "-i", "@s1", "tank/data@s2"}
	mustTransfer(t, src, full, dst, []string{"zfs", "recv", "-u", "tank/fx-full"})
	run(t, dst, "zfs", "create", "tank/fx-exists")
	run(t, dst, "zfs", "create", "tank/fx-other")
	run(t, dst, "zfs", "snapshot", "tank/fx-other@x")
	fx.failure("err-recv-destination-exists.txt", pipe(full, []string{"zfs", "recv", "-u", "tank/fx-exists"}), 1, zfsexec.ErrDestinationExists)
	fx.failure("err-recv-destination-has-snapshots.txt", pipe(full, []string{"zfs", "recv", "-u", "-F", "tank/fx-full"}), 1, zfsexec.ErrDestinationHasSnapshots)
	fx.failure("err-recv-incremental-mismatch.txt", pipe(incr, []string{"zfs", "recv", "-u", "tank/fx-other"}), 1, zfsexec.ErrIncrementalMismatch)
	fx.failure("err-recv-incremental-missing-dest.txt", pipe(incr, []string{"zfs", "recv", "-u", "tank/nope"}), 1, zfsexec.ErrDatasetNotExist)
	run(t, dst, "zfs", "mount", "tank/fx-full")
	run(t, dst, "dd", "if=/dev/zero", "of=/tank/fx-full/new", "bs=4k", "count=1", "status=none")
	run(t, dst, "zfs", "umount", "tank/fx-full")
	fx.failure("err-recv-modified.txt", pipe(incr, []string{"zfs", "recv", "-u", "tank/fx-full"}), 1, zfsexec.ErrDestinationModified)
	junk := make([]byte, 4096)
	rand.Read(junk)
	fx.failure("err-recv-bad-magic.txt", dst.Run(ctx, zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/g"}, Stdin: strings.NewReader(string(junk))}), 1, zfsexec.ErrInvalidStream)

	// An interrupted resumable receive, its token, and what it blocks.
	_, _, recvErr := transfer(ctx, src, full, dst, []string{"zfs", "recv", "-s", "-u", "tank/fx-partial"}, 4<<20)
	fx.failure("err-recv-interrupted.txt", recvErr, 1, zfsexec.ErrInvalidStream)
	fx.output("get-Hp-receive-resume-token.txt", run(t, dst, "zfs", "get", "-Hp", "-o", "name,property,value,source", "receive_resume_token", "tank/fx-partial"))
	// A plain retry of the full stream sees the partial target as existing.
	fx.failure("err-recv-partial-state-exists.txt", pipe(full, []string{"zfs", "recv", "-u", "tank/fx-partial"}), 1, zfsexec.ErrDestinationExists)
	run(t, dst, "zfs", "recv", "-A", "tank/fx-partial")
	// The same for an incremental stream into a target that has @s1.
	mustTransfer(t, src, full, dst, []string{"zfs", "recv", "-u", "tank/fx-inc"})
	_, _, recvErr = transfer(ctx, src, incr, dst, []string{"zfs", "recv", "-s", "-u", "tank/fx-inc"}, 256<<10)
	fx.failure("err-recv-interrupted-incremental.txt", recvErr, 1, zfsexec.ErrInvalidStream)
	fx.failure("err-recv-incremental-partial-state-exists.txt", pipe(incr, []string{"zfs", "recv", "-u", "tank/fx-inc"}), 1, nil)
	run(t, dst, "zfs", "recv", "-A", "tank/fx-inc")

	// Last: the module unloaded and not loadable, the OpenZFS counterpart
	// of zfs-fuse's missing daemon (libzfs runs modprobe itself, so the
	// module file is moved away; the root disk is a throwaway snapshot).
	ko := strings.TrimSpace(run(t, dst, "modinfo", "-n", "zfs"))
	run(t, dst, "zpool", "export", "-a")
	run(t, dst, "rmmod", "zfs")
	run(t, dst, "mv", ko, ko+".moved")
	fx.failure("err-module-not-loaded.txt", exec(dst, "zfs", "list"), 1, zfsexec.ErrDaemonNotRunning)
}
