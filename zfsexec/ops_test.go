package zfsexec

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestOperations_BadNamesStartNoProcess: every operation refuses a bad name
// before any process (not even the capability probe) starts.
func TestOperations_BadNamesStartNoProcess(t *testing.T) {
	bad := []string{"tank/a;rm -rf /", "-o", "tank/@x", strings.Repeat("t", 300), "", "tank/../etc", "tank/a\nb"}
	ctx := context.Background()
	for _, name := range bad {
		z := New(failRunner{t})
		ops := map[string]error{}
		_, ops["List"] = z.List(ctx, name, ListOptions{})
		_, ops["Snapshots"] = z.Snapshots(ctx, name)
		_, ops["Get"] = z.Get(ctx, name, "guid")
		ops["Set"] = z.Set(ctx, name, map[string]string{"readonly": "on"})
		ops["CreateFilesystem"] = z.CreateFilesystem(ctx, name, CreateOptions{})
		ops["Snapshot"] = z.Snapshot(ctx, name+"@s", nil)
		ops["SnapshotShort"] = z.Snapshot(ctx, "tank/data@"+name, nil)
		ops["Destroy"] = z.Destroy(ctx, name+"@s", DestroyOptions{})
		ops["Hold"] = z.Hold(ctx, "z8r", name+"@s")
		ops["HoldTag"] = z.Hold(ctx, name, "tank/data@s")
		ops["Release"] = z.Release(ctx, "z8r", name+"@s")
		_, ops["Holds"] = z.Holds(ctx, name+"@s")
		ops["Rollback"] = z.Rollback(ctx, name+"@s", RollbackOptions{})
		ops["RenameSrc"] = z.Rename(ctx, name, "tank/x")
		ops["RenameDst"] = z.Rename(ctx, "tank/x", name)
		ops["Unmount"] = z.Unmount(ctx, name)
		ops["CloneSnap"] = z.Clone(ctx, name+"@s", "tank/c", nil)
		ops["CloneFS"] = z.Clone(ctx, "tank/d@s", name, nil)
		ops["Promote"] = z.Promote(ctx, name)
		ops["Mount"] = z.Mount(ctx, name)
		ops["Inherit"] = z.Inherit(ctx, name, "z8r.dev:replica-of")
		ops["InheritProp"] = z.Inherit(ctx, "tank/d", name)
		ops["Bookmark"] = z.Bookmark(ctx, name+"@s", name+"#b")
		_, ops["ResumeToken"] = z.ResumeToken(ctx, name)
		ops["AbortRecv"] = z.AbortRecv(ctx, name)
		ops["Send"] = z.Send(ctx, SendOptions{Snapshot: name + "@s"}, &bytes.Buffer{})
		if name != "" { // From "@a" alone is the valid short form
			ops["SendFrom"] = z.Send(ctx, SendOptions{Snapshot: "tank/data@s", From: name + "@a"}, &bytes.Buffer{})
		}
		ops["Recv"] = z.Recv(ctx, RecvOptions{Target: name}, strings.NewReader(""))
		for op, err := range ops {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s(%q) = %v, want ErrInvalidName", op, name, err)
			}
		}
	}
}

func TestOperations_BadPropertyStartsNoProcess(t *testing.T) {
	ctx := context.Background()
	z := New(failRunner{t})
	for _, err := range []error{
		z.Set(ctx, "tank/data", map[string]string{"-o": "x"}),
		z.Set(ctx, "tank/data", map[string]string{"z8r.dev:x": "a\tb"}),
		z.Snapshot(ctx, "tank/data@s", map[string]string{"bad prop": "1"}),
		func() error { _, err := z.List(ctx, "tank", ListOptions{UserProps: []string{"guid"}}); return err }(),
	} {
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("got %v, want ErrInvalidName", err)
		}
	}
}

func TestDestroy_RefusesFilesystem(t *testing.T) {
	z := New(failRunner{t})
	if err := z.Destroy(context.Background(), "tank/data", DestroyOptions{}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Destroy(filesystem) = %v, want refusal", err)
	}
}

func TestSendOptions_Argv(t *testing.T) {
	fuse := Capabilities{Implementation: ImplZFSFuse}
	cases := []struct {
		name string
		o    SendOptions
		caps Capabilities
		want []string
		err  error
	}{
		{"full", SendOptions{Snapshot: "tank/d@s1"}, fuse, []string{"zfs", "send", "tank/d@s1"}, nil},
		{"incremental short", SendOptions{Snapshot: "tank/d@s2", From: "@s1"}, fuse, []string{"zfs", "send", "-i", "tank/d@s1", "tank/d@s2"}, nil},
		{"intermediates props", SendOptions{Snapshot: "tank/d@s3", From: "tank/d@s1", Intermediates: true, Props: true}, fuse, []string{"zfs", "send", "-p", "-I", "tank/d@s1", "tank/d@s3"}, nil},
		{"replicate", SendOptions{Snapshot: "tank/d@s1", Replicate: true}, fuse, []string{"zfs", "send", "-R", "tank/d@s1"}, nil},
		{"bookmark on fuse", SendOptions{Snapshot: "tank/d@s2", From: "#b1"}, fuse, nil, ErrUnsupported},
		{"bookmark on openzfs", SendOptions{Snapshot: "tank/d@s2", From: "#b1"}, allCaps, []string{"zfs", "send", "-i", "tank/d#b1", "tank/d@s2"}, nil},
		{"raw on fuse", SendOptions{Snapshot: "tank/d@s1", Raw: true}, fuse, nil, ErrUnsupported},
		{"compressed on fuse", SendOptions{Snapshot: "tank/d@s1", Compressed: true}, fuse, nil, ErrUnsupported},
		{"raw compressed large", SendOptions{Snapshot: "tank/d@s1", Raw: true, Compressed: true, LargeBlocks: true}, allCaps, []string{"zfs", "send", "-w", "-c", "-L", "tank/d@s1"}, nil},
		{"resume on fuse", SendOptions{ResumeToken: "1-abc-def"}, fuse, nil, ErrUnsupported},
		{"resume", SendOptions{ResumeToken: "1-abc-def"}, allCaps, []string{"zfs", "send", "-t", "1-abc-def"}, nil},
		{"resume token not hex", SendOptions{ResumeToken: "-R"}, allCaps, nil, ErrInvalidName},
		{"from other dataset", SendOptions{Snapshot: "tank/d@s2", From: "tank/e@s1"}, fuse, nil, ErrInvalidName},
		{"-I from bookmark", SendOptions{Snapshot: "tank/d@s2", From: "#b", Intermediates: true}, allCaps, nil, ErrInvalidName},
	}
	for _, c := range cases {
		got, err := c.o.Argv(c.caps)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Argv = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func TestRecvOptions_Argv(t *testing.T) {
	fuse := Capabilities{Implementation: ImplZFSFuse}
	got, err := RecvOptions{Target: "tank/r", Unmounted: true}.Argv(fuse)
	if err != nil || !reflect.DeepEqual(got, []string{"zfs", "recv", "-u", "tank/r"}) {
		t.Errorf("plain: %q %v", got, err)
	}
	got, err = RecvOptions{Target: "tank/r", Unmounted: true, Force: true}.Argv(fuse)
	if err != nil || !reflect.DeepEqual(got, []string{"zfs", "recv", "-u", "-F", "tank/r"}) {
		t.Errorf("force: %q %v", got, err)
	}
	if _, err := (RecvOptions{Target: "tank/r", Resumable: true}).Argv(fuse); !errors.Is(err, ErrUnsupported) {
		t.Errorf("resumable on fuse: %v", err)
	}
	got, err = RecvOptions{Target: "tank/r", Resumable: true, SetProps: map[string]string{"readonly": "on"}, ExcludeProps: []string{"mountpoint"}}.Argv(allCaps)
	if err != nil || !reflect.DeepEqual(got, []string{"zfs", "recv", "-s", "-o", "readonly=on", "-x", "mountpoint", "tank/r"}) {
		t.Errorf("openzfs: %q %v", got, err)
	}
}

func TestRecv_IncrementalChecksTargetAndBase(t *testing.T) {
	ctx := context.Background()
	replies := zfsFuseReplies()
	replies["zfs get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,userrefs tank/missing"] = reply{
		err: &CommandError{ExitCode: 1, Stderr: "cannot open 'tank/missing': dataset does not exist\n"}}
	replies["zfs get -H -p -d 1 -o name,property,value,source type,guid,createtxg,creation,userrefs tank/r"] = reply{
		stdout: "tank/r\ttype\tfilesystem\t-\ntank/r\tguid\t1\t-\ntank/r\tcreatetxg\t1\t-\ntank/r\tcreation\t1\t-\ntank/r\tuserrefs\t-\t-\n" +
			"tank/r@a\ttype\tsnapshot\t-\ntank/r@a\tguid\t42\t-\ntank/r@a\tcreatetxg\t5\t-\ntank/r@a\tcreation\t1\t-\ntank/r@a\tuserrefs\t0\t-\n"}
	s := &scriptRunner{replies: replies}
	z := New(s)
	err := z.Recv(ctx, RecvOptions{Target: "tank/missing", Incremental: true}, strings.NewReader("stream"))
	if !errors.Is(err, ErrDatasetNotExist) {
		t.Fatalf("missing target: %v, want ErrDatasetNotExist", err)
	}
	err = z.Recv(ctx, RecvOptions{Target: "tank/r", BaseGUID: 7}, strings.NewReader("stream"))
	if !errors.Is(err, ErrBaseMissing) {
		t.Fatalf("wrong base: %v, want ErrBaseMissing", err)
	}
	for _, argv := range s.ran {
		if argv[1] == "recv" {
			t.Fatalf("zfs recv ran (%q) although the checks failed", argv)
		}
	}
}

func TestDetectCapabilities(t *testing.T) {
	ctx := context.Background()
	c, err := DetectCapabilities(ctx, &scriptRunner{replies: zfsFuseReplies()})
	if err != nil || c.Implementation != ImplZFSFuse || c.Version != "pool-v23" || c.Bookmarks || c.ResumableRecv || c.HoldsList {
		t.Errorf("zfs-fuse: %+v %v", c, err)
	}
	c, err = DetectCapabilities(ctx, &scriptRunner{replies: map[string]reply{
		"zfs version": {stdout: "zfs-2.3.2-1~bpo12+1\nzfs-kmod-2.3.2-1~bpo12+1\n"}}})
	if err != nil || c.Implementation != ImplOpenZFS || c.Version != "2.3.2" || !c.Bookmarks || !c.ResumableRecv || !c.RawSend || !c.HoldsList {
		t.Errorf("openzfs: %+v %v", c, err)
	}
	_, err = DetectCapabilities(ctx, &scriptRunner{replies: map[string]reply{
		"zfs version": {err: &CommandError{ExitCode: 1, Stderr: "connect: No such file or directory\nPlease make sure that the zfs-fuse daemon is running.\n"}}}})
	if !errors.Is(err, ErrDaemonNotRunning) {
		t.Errorf("no daemon: %v", err)
	}
}

// TestRename_Argv: a rename is `zfs rename SRC DST` between two
// filesystems with the same parent; anything else runs nothing.
func TestRename_Argv(t *testing.T) {
	ctx := context.Background()
	s := &scriptRunner{replies: map[string]reply{"zfs rename tank/a/b tank/a/b-z8r-diverged-20261130T000000Z": {}}}
	if err := New(s).Rename(ctx, "tank/a/b", "tank/a/b-z8r-diverged-20261130T000000Z"); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"zfs", "rename", "tank/a/b", "tank/a/b-z8r-diverged-20261130T000000Z"}}; !reflect.DeepEqual(s.ran, want) {
		t.Errorf("ran %q, want %q", s.ran, want)
	}
	for _, c := range [][2]string{
		{"tank/a/b", "tank/c/b"},    // another parent
		{"tank/a/b", "backup/a/b"},  // another pool
		{"tank", "tank2"},           // a pool's root
		{"tank/a@s", "tank/a@t"},    // snapshots
		{"tank/a", "tank/a"},        // no-op
		{"tank/a", "tank/a/b/../c"}, // bad name
	} {
		if err := New(failRunner{t}).Rename(ctx, c[0], c[1]); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Rename(%q, %q) = %v, want ErrInvalidName", c[0], c[1], err)
		}
	}
}

// TestClone_Argv: a clone is `zfs clone [-o k=v]... SNAP FS` with the
// properties sorted; a clone outside its origin's pool, of a filesystem,
// onto a pool root or with a bad property runs nothing.
func TestClone_Argv(t *testing.T) {
	ctx := context.Background()
	want := []string{"zfs", "clone", "-o", "canmount=noauto", "-o", "readonly=on", "-o", "z8r.dev:replica-of=n2:tank/b", "tank/a-z8r-tail-20261130T150405Z@s1", "tank/a"}
	s := &scriptRunner{replies: map[string]reply{strings.Join(want, " "): {}}}
	err := New(s).Clone(ctx, "tank/a-z8r-tail-20261130T150405Z@s1", "tank/a", map[string]string{
		"z8r.dev:replica-of": "n2:tank/b", "readonly": "on", "canmount": "noauto"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.ran, [][]string{want}) {
		t.Errorf("ran %q, want %q", s.ran, want)
	}
	for _, c := range []struct {
		snap, fs string
		props    map[string]string
	}{
		{"tank/a@s", "backup/a", nil},                        // another pool
		{"tank/a", "tank/b", nil},                            // origin not a snapshot
		{"tank/a@s", "tank", nil},                            // pool root
		{"tank/a@s", "tank/b@s", nil},                        // clone named like a snapshot
		{"tank/a@s", "tank/b", map[string]string{"-o": "x"}}, // bad property
	} {
		if err := New(failRunner{t}).Clone(ctx, c.snap, c.fs, c.props); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Clone(%q, %q, %v) = %v, want ErrInvalidName", c.snap, c.fs, c.props, err)
		}
	}
}

// TestPromoteMountInherit_Argv: each runs exactly one plain command.
func TestPromoteMountInherit_Argv(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		op   func(z *ZFS) error
		want []string
	}{
		{"promote", func(z *ZFS) error { return z.Promote(ctx, "tank/a") }, []string{"zfs", "promote", "tank/a"}},
		{"mount", func(z *ZFS) error { return z.Mount(ctx, "tank/a") }, []string{"zfs", "mount", "tank/a"}},
		{"inherit", func(z *ZFS) error { return z.Inherit(ctx, "tank/a", "z8r.dev:replica-of") }, []string{"zfs", "inherit", "z8r.dev:replica-of", "tank/a"}},
		{"inherit snapshot", func(z *ZFS) error { return z.Inherit(ctx, "tank/a@s", "z8r.dev:owner") }, []string{"zfs", "inherit", "z8r.dev:owner", "tank/a@s"}},
	}
	for _, c := range cases {
		s := &scriptRunner{replies: map[string]reply{strings.Join(c.want, " "): {}}}
		if err := c.op(New(s)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(s.ran, [][]string{c.want}) {
			t.Errorf("%s: ran %q, want %q", c.name, s.ran, c.want)
		}
	}
	if err := New(failRunner{t}).Promote(ctx, "tank/a@s"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Promote(snapshot) = %v, want ErrInvalidName", err)
	}
	if err := New(failRunner{t}).Mount(ctx, "tank/a@s"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Mount(snapshot) = %v, want ErrInvalidName", err)
	}
}
