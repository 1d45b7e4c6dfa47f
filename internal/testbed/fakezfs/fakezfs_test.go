package fakezfs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailNth_FailsOnlyTheNthMatch(t *testing.T) {
	ctx := context.Background()
	n := fakezfs.New("n", fakezfs.Options{})
	z := n.ZFS()
	must(t, z.CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}))
	f := n.FailNth(fakezfs.Prefix("zfs", "snapshot"), 2,
		&zfsexec.CommandError{ExitCode: 1, Stderr: "cannot open 'tank/d': dataset does not exist\n"})
	must(t, z.Snapshot(ctx, "tank/d@a", nil))
	must(t, z.Set(ctx, "tank/d", map[string]string{"z8r.dev:x": "1"})) // not counted
	if f.Fired() {
		t.Fatal("fault fired before its command")
	}
	err := z.Snapshot(ctx, "tank/d@b", nil)
	if !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Fatalf("second snapshot = %v, want the injected ErrDatasetNotExist", err)
	}
	var ce *zfsexec.CommandError
	if !errors.As(err, &ce) || strings.Join(ce.Argv, " ") != "zfs snapshot tank/d@b" {
		t.Errorf("injected error argv = %v, want the failing command's", ce)
	}
	if !f.Fired() {
		t.Error("Fired() = false after the fault fired")
	}
	if ok, _ := z.Exists(ctx, "tank/d@b"); ok {
		t.Error("the failed command ran anyway")
	}
	must(t, z.Snapshot(ctx, "tank/d@c", nil))
}

func TestFailNth_PlainErrorPassesThrough(t *testing.T) {
	n := fakezfs.New("n", fakezfs.Options{})
	boom := errors.New("connection reset")
	n.FailNth(fakezfs.Prefix("zfs", "get"), 1, boom)
	if _, err := n.ZFS().Exists(context.Background(), "tank"); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the injected error", err)
	}
}

func TestBlock_HoldsCommandUntilRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, dst := fakezfs.New("src", fakezfs.Options{}), fakezfs.New("dst", fakezfs.Options{})
	must(t, src.ZFS().CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}))
	must(t, src.Write("tank/d", "f", []byte("hello")))
	must(t, src.ZFS().Snapshot(ctx, "tank/d@s", nil))
	g := dst.Block(fakezfs.Prefix("zfs", "recv"))
	done := make(chan error, 1)
	go func() {
		_, err := zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{Snapshot: "tank/d@s"},
			dst.ZFS(), zfsexec.RecvOptions{Target: "tank/d", Unmounted: true})
		done <- err
	}()
	must(t, g.Wait(ctx))
	select {
	case err := <-done:
		t.Fatalf("transfer finished while its receive was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if g.Held() != 1 {
		t.Errorf("Held() = %d, want 1", g.Held())
	}
	g.Release()
	must(t, <-done)
	if ok, _ := dst.ZFS().Exists(ctx, "tank/d@s"); !ok {
		t.Error("released receive did not land")
	}
}

func TestBlock_CancelledContextEndsTheWait(t *testing.T) {
	n := fakezfs.New("n", fakezfs.Options{})
	g := n.Block(fakezfs.Prefix("zfs", "snapshot"))
	defer g.Release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.ZFS().Snapshot(ctx, "tank@s", nil) }()
	must(t, g.Wait(context.Background()))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if ok, _ := n.ZFS().Exists(context.Background(), "tank@s"); ok {
		t.Error("a cancelled command ran")
	}
}

func TestRun_NotModelled(t *testing.T) {
	for _, argv := range [][]string{
		{"zfs", "destroy", "tank"},
		{"zfs", "destroy", "-r", "tank@s"},
		{"zfs", "send", "-R", "tank@s"},
		{"zfs", "list"},
		{"zfs", "inherit", "-r", "z8r.dev:x", "tank"},
		{"zfs", "inherit", "mountpoint", "tank"},
		{"zfs", "promote", "-f", "tank"},
		{"zfs", "set", "mountpoint=/x", "tank"},
		{"zfs", "rename", "tank/a@s", "tank/a@t"},
		{"zpool", "status"},
		{"sh", "-c", "true"},
	} {
		t.Run(strings.Join(argv, "_"), func(t *testing.T) {
			n := fakezfs.New("n", fakezfs.Options{})
			must(t, n.Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "snapshot", "tank@s"}}))
			err := n.Run(context.Background(), zfsexec.Command{Argv: argv})
			if !errors.Is(err, fakezfs.ErrNotModelled) || !strings.Contains(err.Error(), argv[len(argv)-1]) {
				t.Fatalf("got %v, want ErrNotModelled naming the argv", err)
			}
		})
	}
}

func TestCommands_RecordsEveryArgvInOrder(t *testing.T) {
	ctx := context.Background()
	n := fakezfs.New("n", fakezfs.Options{})
	z := zfsexec.New(n)
	must(t, z.Snapshot(ctx, "tank@a", nil))
	_ = z.Hold(ctx, "z8r-x", "tank@nope")
	got := n.Commands()
	// A failed command is recorded too; neither operation probes the
	// node's capabilities.
	want := []string{"zfs snapshot tank@a", "zfs hold z8r-x tank@nope"}
	var joined []string
	for _, a := range got {
		joined = append(joined, strings.Join(a, " "))
	}
	if strings.Join(joined, "|") != strings.Join(want, "|") {
		t.Fatalf("Commands() = %q, want %q", joined, want)
	}
}

func TestWrite_MakesTargetModified(t *testing.T) {
	ctx := context.Background()
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			src, dst := fakezfs.New("src", fakezfs.Options{Implementation: impl}), fakezfs.New("dst", fakezfs.Options{Implementation: impl})
			must(t, src.ZFS().CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}))
			must(t, src.ZFS().Snapshot(ctx, "tank/d@s1", nil))
			_, err := zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{Snapshot: "tank/d@s1"}, dst.ZFS(), zfsexec.RecvOptions{Target: "tank/r", Unmounted: true})
			must(t, err)
			must(t, src.ZFS().Snapshot(ctx, "tank/d@s2", nil))
			must(t, dst.Write("tank/r", "x", []byte("local")))
			if impl == zfsexec.ImplOpenZFS {
				p, err := dst.ZFS().Get(ctx, "tank/r", "written")
				must(t, err)
				if p["written"].Value == "0" {
					t.Error("written = 0 after a write")
				}
			}
			_, err = zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{Snapshot: "tank/d@s2", From: "@s1"}, dst.ZFS(), zfsexec.RecvOptions{Target: "tank/r", Unmounted: true, Incremental: true})
			if !errors.Is(err, zfsexec.ErrDestinationModified) {
				t.Fatalf("incremental after a write = %v, want ErrDestinationModified", err)
			}
		})
	}
}

func TestZFSFuseFlavour_RefusesOpenZFSOnlyForms(t *testing.T) {
	for _, argv := range [][]string{
		{"zfs", "bookmark", "tank@s", "tank#b"},
		{"zfs", "send", "-t", "1-abc-1-789c"},
		{"zfs", "send", "-c", "tank@s"},
		{"zfs", "recv", "-A", "tank/x"},
		{"zfs", "recv", "-u", "-s", "tank/x"},
		{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "written", "tank"},
		{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "receive_resume_token", "tank"},
	} {
		t.Run(strings.Join(argv[:3], "_"), func(t *testing.T) {
			n := fakezfs.New("n", fakezfs.Options{Implementation: zfsexec.ImplZFSFuse})
			must(t, n.Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "snapshot", "tank@s"}}))
			err := n.Run(context.Background(), zfsexec.Command{Argv: argv, Stdin: bytes.NewReader(nil)})
			var ce *zfsexec.CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 2 {
				t.Fatalf("got %v, want a usage error (exit 2) as zfs-fuse gives", err)
			}
		})
	}
}

func TestFailNth_ReceiveFailureEndsThePipe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, dst := fakezfs.New("src", fakezfs.Options{}), fakezfs.New("dst", fakezfs.Options{})
	must(t, src.ZFS().Snapshot(ctx, "tank@s", nil))
	must(t, src.Write("tank", "f", make([]byte, 1<<20)))
	must(t, src.ZFS().Snapshot(ctx, "tank@t", nil))
	dst.FailNth(fakezfs.Prefix("zfs", "recv"), 1, &zfsexec.CommandError{ExitCode: 1,
		Stderr: "cannot receive incremental stream: destination tank/r has been modified\nsince most recent snapshot\n"})
	_, err := zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{Snapshot: "tank@t"}, dst.ZFS(), zfsexec.RecvOptions{Target: "tank/r", Unmounted: true})
	if !errors.Is(err, zfsexec.ErrDestinationModified) {
		t.Fatalf("got %v, want the injected ErrDestinationModified", err)
	}
	if ok, _ := dst.ZFS().Exists(ctx, "tank/r"); ok {
		t.Error("the failed receive created its target")
	}
}

func TestCutNth_InterruptedTransferResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, dst := fakezfs.New("src", fakezfs.Options{}), fakezfs.New("dst", fakezfs.Options{})
	must(t, src.Write("tank", "f", bytes.Repeat([]byte("z8r"), 1<<18)))
	must(t, src.ZFS().Snapshot(ctx, "tank@s", nil))
	f := src.CutNth(fakezfs.Prefix("zfs", "send"), 1, 64<<10, nil)
	ro := zfsexec.RecvOptions{Target: "tank/r", Unmounted: true, Resumable: true}
	n, err := zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{Snapshot: "tank@s"}, dst.ZFS(), ro)
	var ce *zfsexec.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "stream cut") || ce.Argv[1] != "send" {
		t.Fatalf("cut transfer = %v, want the injected sender error", err)
	}
	if n != 64<<10 || !f.Fired() {
		t.Errorf("%d bytes passed (fired %v), want exactly the %d before the cut", n, f.Fired(), 64<<10)
	}
	tok, err := dst.ZFS().ResumeToken(ctx, "tank/r")
	must(t, err)
	if tok == "" {
		t.Fatal("no resume token after a cut resumable transfer")
	}
	_, err = zfsexec.Pipe(ctx, src.ZFS(), zfsexec.SendOptions{ResumeToken: tok}, dst.ZFS(), ro)
	must(t, err)
	if ok, _ := dst.ZFS().Exists(ctx, "tank/r@s"); !ok {
		t.Error("resumed transfer did not land")
	}
}

// TestClone_MountsAsEachFlavour: a clone made with canmount=noauto stays
// unmounted on OpenZFS and is mounted on zfs-fuse, as each really does
// (zfsexec/testdata/zfs-fuse-0.7/README.md); canmount=off is never mounted.
func TestClone_MountsAsEachFlavour(t *testing.T) {
	cases := []struct {
		impl     zfsexec.Implementation
		canmount string
		want     string
	}{
		{zfsexec.ImplOpenZFS, "noauto", "no"},
		{zfsexec.ImplOpenZFS, "on", "yes"},
		{zfsexec.ImplOpenZFS, "off", "no"},
		{zfsexec.ImplZFSFuse, "noauto", "yes"},
		{zfsexec.ImplZFSFuse, "off", "no"},
	}
	for _, c := range cases {
		t.Run(string(c.impl)+"_"+c.canmount, func(t *testing.T) {
			ctx := context.Background()
			z := fakezfs.New("n", fakezfs.Options{Implementation: c.impl}).ZFS()
			must(t, z.CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}))
			must(t, z.Snapshot(ctx, "tank/d@s", nil))
			must(t, z.Clone(ctx, "tank/d@s", "tank/c", map[string]string{"canmount": c.canmount}))
			p, err := z.Get(ctx, "tank/c", "mounted")
			must(t, err)
			if p["mounted"].Value != c.want {
				t.Errorf("mounted = %q, want %q", p["mounted"].Value, c.want)
			}
		})
	}
}

// TestPromote_CloneOfAClone: promoting a clone whose origin filesystem is
// itself a clone takes over that filesystem's origin too, as ZFS does, and
// a snapshot name both would hold is refused, with zfs-fuse's and
// OpenZFS's wording, and nothing changed (checked on zfs-fuse by hand).
func TestPromote_CloneOfAClone(t *testing.T) {
	ctx := context.Background()
	z := fakezfs.New("n", fakezfs.Options{}).ZFS()
	must(t, z.CreateFilesystem(ctx, "tank/a", zfsexec.CreateOptions{}))
	must(t, z.Snapshot(ctx, "tank/a@s1", nil))
	must(t, z.Clone(ctx, "tank/a@s1", "tank/b", nil))
	must(t, z.Snapshot(ctx, "tank/b@s2", nil))
	must(t, z.Clone(ctx, "tank/b@s2", "tank/c", nil))
	must(t, z.Promote(ctx, "tank/c"))
	for fs, want := range map[string]string{"tank/a": "-", "tank/b": "tank/c@s2", "tank/c": "tank/a@s1"} {
		p, err := z.Get(ctx, fs, "origin")
		must(t, err)
		if p["origin"].Value != want {
			t.Errorf("%s origin = %q, want %q", fs, p["origin"].Value, want)
		}
	}
	if err := z.Destroy(ctx, "tank/a@s1", zfsexec.DestroyOptions{}); !errors.Is(err, zfsexec.ErrHasClones) {
		t.Errorf("destroy tank/a@s1 = %v, want ErrHasClones (tank/c hangs off it)", err)
	}

	must(t, z.Snapshot(ctx, "tank/a@x", nil))
	must(t, z.Clone(ctx, "tank/a@x", "tank/d", nil))
	must(t, z.Snapshot(ctx, "tank/d@s1", nil)) // the name tank/a@s1 has
	if err := z.Promote(ctx, "tank/d"); err == nil || !strings.Contains(err.Error(), "cannot promote 'tank/d': conflicting snapshot 's1' from parent 'tank/a@x'") {
		t.Fatalf("promote with a conflicting snapshot name = %v", err)
	}
	if p, _ := z.Get(ctx, "tank/d", "origin"); p["origin"].Value != "tank/a@x" {
		t.Errorf("tank/d origin after a refused promote = %q", p["origin"].Value)
	}
}
