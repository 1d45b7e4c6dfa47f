package zfssuite

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// Host is one node under test.
type Host struct {
	Name string
	ZFS  *zfsexec.ZFS
	Pool string
}

// Pair returns the two nodes the suite runs on.
type Pair func(t *testing.T) (src, dst Host)

// Run runs every suite test as a subtest of t.
func Run(t *testing.T, pair Pair) {
	src, dst := pair(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, src, dst Host)
	}{
		{"Capabilities", testCapabilities},
		{"SnapshotAndList", testSnapshotAndList},
		{"HoldReleaseDeferredDestroy", testHolds},
		{"DestroyIsIdempotent", testDestroyIdempotent},
		{"FullAndIncrementalReplication", testReplication},
		{"SendSizeEstimatesTheStream", testSendSize},
		{"Rollback", testRollback},
		{"TypedErrors", testTypedErrors},
		{"RenameMovesDatasetAside", testRename},
		{"Bookmarks", testBookmarks},
		{"PropertySources", testPropertySources},
		{"ClonesBlockDestroy", testClonesBlockDestroy},
		{"ForcedReceiveDiscardsLocalChanges", testForcedReceive},
		{"ResumableReceive", testResumableReceive},
		{"IntermediateSnapshots", testIntermediates},
		{"ReadingWritableTargetModifiesIt", testReadingWritableTarget},
		{"ReceivePropertyOverrides", testRecvProps},
		{"CloneHasSnapshotDataAndOrigin", testClone},
		{"PromoteMovesOlderSnapshots", testPromote},
		{"PreserveTailThenIncrementalReceive", testPreserveTail},
		{"ReadonlyOffMountInherit", testWritableAndMount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			tc.fn(t, ctx, src, dst)
		})
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

// dataset returns a fresh dataset name for this subtest on h's pool.
func dataset(t *testing.T, h Host, suffix string) string {
	base := unsafeChars.ReplaceAllString(strings.ReplaceAll(t.Name(), "/", "-"), "_")
	return path.Join(h.Pool, strings.ToLower(base)+"-"+suffix)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes data to p on h (through its runner, so it works in any
// node's namespace or guest).
func WriteFile(ctx context.Context, h Host, p string, data []byte) error {
	return h.ZFS.Runner().Run(ctx, zfsexec.Command{
		Argv:  []string{"dd", "of=" + p, "bs=1M", "status=none"},
		Stdin: bytes.NewReader(data),
	})
}

// ReadFile reads p on h.
func ReadFile(ctx context.Context, h Host, p string) ([]byte, error) {
	var out bytes.Buffer
	err := h.ZFS.Runner().Run(ctx, zfsexec.Command{Argv: []string{"cat", p}, Stdout: &out})
	return out.Bytes(), err
}

// Mountpoint returns where fs is mounted on h.
func Mountpoint(ctx context.Context, h Host, fs string) (string, error) {
	p, err := h.ZFS.Get(ctx, fs, "mountpoint")
	if err != nil {
		return "", err
	}
	return p["mountpoint"].Value, nil
}

func randomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func writeRandom(t *testing.T, ctx context.Context, h Host, fs, file string, n int) []byte {
	t.Helper()
	mp, err := Mountpoint(ctx, h, fs)
	must(t, err)
	data := randomData(n)
	must(t, WriteFile(ctx, h, path.Join(mp, file), data))
	return data
}

func testCapabilities(t *testing.T, ctx context.Context, src, dst Host) {
	for _, h := range []Host{src, dst} {
		c, err := h.ZFS.Capabilities(ctx)
		must(t, err)
		if c.Implementation != zfsexec.ImplZFSFuse && c.Implementation != zfsexec.ImplOpenZFS {
			t.Errorf("%s: implementation %q", h.Name, c.Implementation)
		}
		if c.Version == "" {
			t.Errorf("%s: no version", h.Name)
		}
		t.Logf("%s: %s", h.Name, c)
	}
}

func testSnapshotAndList(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@a", map[string]string{"z8r.dev:owner": "z8r", "z8r.dev:policy": "p1"}))
	writeRandom(t, ctx, src, fs, "f", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@b", nil))
	snaps, err := src.ZFS.Snapshots(ctx, fs, "z8r.dev:owner", "z8r.dev:policy")
	must(t, err)
	if len(snaps) != 2 || snaps[0].Name != fs+"@a" || snaps[1].Name != fs+"@b" {
		t.Fatalf("Snapshots = %+v, want @a then @b", snaps)
	}
	a, b := snaps[0], snaps[1]
	if a.GUID == 0 || b.GUID == 0 || a.GUID == b.GUID {
		t.Errorf("guids %d %d", a.GUID, b.GUID)
	}
	if a.CreateTXG >= b.CreateTXG {
		t.Errorf("createtxg %d >= %d", a.CreateTXG, b.CreateTXG)
	}
	if time.Since(a.Creation) > time.Hour || a.Creation.After(time.Now().Add(time.Minute)) {
		t.Errorf("creation %v is not now", a.Creation)
	}
	if a.UserProps["z8r.dev:owner"] != "z8r" || a.UserProps["z8r.dev:policy"] != "p1" {
		t.Errorf("@a user props %v", a.UserProps)
	}
	if len(b.UserProps) != 0 {
		t.Errorf("@b user props %v, want none", b.UserProps)
	}
	all, err := src.ZFS.List(ctx, src.Pool, zfsexec.ListOptions{Depth: -1})
	must(t, err)
	found := map[string]bool{}
	for _, d := range all {
		found[d.Name] = true
	}
	if !found[fs] || !found[fs+"@a"] || !found[fs+"@b"] {
		t.Errorf("recursive List lacks %s and its snapshots", fs)
	}
	ok, err := src.ZFS.Exists(ctx, fs+"@a")
	must(t, err)
	if !ok {
		t.Error("Exists(@a) = false")
	}
	ok, err = src.ZFS.Exists(ctx, fs+"@nope")
	must(t, err)
	if ok {
		t.Error("Exists(@nope) = true")
	}
	must(t, src.ZFS.Set(ctx, fs, map[string]string{"z8r.dev:note": "hello world"}))
	p, err := src.ZFS.Get(ctx, fs, "z8r.dev:note", "readonly")
	must(t, err)
	if p["z8r.dev:note"].Value != "hello world" || p["z8r.dev:note"].Source != "local" || p["readonly"].Value != "off" {
		t.Errorf("Get = %+v", p)
	}
}

func userRefs(t *testing.T, ctx context.Context, h Host, snap string) uint64 {
	t.Helper()
	fs, _ := zfsexec.SplitSnapshot(snap)
	snaps, err := h.ZFS.Snapshots(ctx, fs)
	must(t, err)
	for _, s := range snaps {
		if s.Name == snap {
			return s.UserRefs
		}
	}
	t.Fatalf("%s not listed", snap)
	return 0
}

func testHolds(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	snap := fs + "@held"
	must(t, src.ZFS.Snapshot(ctx, snap, nil))
	must(t, src.ZFS.Hold(ctx, "z8r-a", snap))
	must(t, src.ZFS.Hold(ctx, "z8r-b", snap))
	if n := userRefs(t, ctx, src, snap); n != 2 {
		t.Errorf("userrefs = %d, want 2", n)
	}
	if caps, _ := src.ZFS.Capabilities(ctx); caps.HoldsList {
		tags, err := src.ZFS.Holds(ctx, snap)
		must(t, err)
		if strings.Join(tags, ",") != "z8r-a,z8r-b" {
			t.Errorf("Holds = %v", tags)
		}
	} else if _, err := src.ZFS.Holds(ctx, snap); !errors.Is(err, zfsexec.ErrUnsupported) {
		t.Errorf("Holds on a node without `zfs holds` = %v, want ErrUnsupported", err)
	}
	if err := src.ZFS.Destroy(ctx, snap, zfsexec.DestroyOptions{}); !errors.Is(err, zfsexec.ErrDatasetBusy) {
		t.Errorf("destroy held = %v, want ErrDatasetBusy", err)
	}
	must(t, src.ZFS.Destroy(ctx, snap, zfsexec.DestroyOptions{Defer: true}))
	if ok, _ := src.ZFS.Exists(ctx, snap); !ok {
		t.Fatal("deferred destroy removed a held snapshot at once")
	}
	p, err := src.ZFS.Get(ctx, snap, "defer_destroy")
	must(t, err)
	if p["defer_destroy"].Value != "on" {
		t.Errorf("defer_destroy = %q", p["defer_destroy"].Value)
	}
	must(t, src.ZFS.Release(ctx, "z8r-a", snap))
	if ok, _ := src.ZFS.Exists(ctx, snap); !ok {
		t.Fatal("snapshot destroyed while a hold remained")
	}
	must(t, src.ZFS.Release(ctx, "z8r-b", snap))
	if ok, _ := src.ZFS.Exists(ctx, snap); ok {
		t.Fatal("deferred destroy did not happen when the last hold was released")
	}
}

func testDestroyIdempotent(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s", nil))
	must(t, src.ZFS.Destroy(ctx, fs+"@s", zfsexec.DestroyOptions{}))
	must(t, src.ZFS.Destroy(ctx, fs+"@s", zfsexec.DestroyOptions{}))
	must(t, src.ZFS.Destroy(ctx, src.Pool+"/no-such-fs@s", zfsexec.DestroyOptions{}))
}

func snapGUIDs(t *testing.T, ctx context.Context, h Host, fs string) map[string]uint64 {
	t.Helper()
	snaps, err := h.ZFS.Snapshots(ctx, fs)
	must(t, err)
	m := map[string]uint64{}
	for _, s := range snaps {
		if s.IsSnapshot() {
			m[s.ShortName()] = s.GUID
		}
	}
	return m
}

func testReplication(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	first := writeRandom(t, ctx, src, fs, "first", 1<<20)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))

	full, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)

	second := writeRandom(t, ctx, src, fs, "second", 64<<10)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	s := snapGUIDs(t, ctx, src, fs)
	incr, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Incremental: true, BaseGUID: s["s1"]})
	must(t, err)
	if full < 1<<20 || incr >= full/4 {
		t.Errorf("full stream %d bytes, incremental %d: want incremental far below full", full, incr)
	}
	d := snapGUIDs(t, ctx, dst, target)
	if len(d) != 2 || d["s1"] != s["s1"] || d["s2"] != s["s2"] {
		t.Fatalf("target snapshots %v, source %v: GUIDs must match", d, s)
	}
	// Read the target's files: readonly, so reading cannot modify it.
	must(t, dst.ZFS.Set(ctx, target, map[string]string{"readonly": "on"}))
	if err := dst.ZFS.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zfs", "mount", target}}); err != nil {
		t.Fatal(err)
	}
	mp, err := Mountpoint(ctx, dst, target)
	must(t, err)
	for name, want := range map[string][]byte{"first": first, "second": second} {
		got, err := ReadFile(ctx, dst, path.Join(mp, name))
		must(t, err)
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Errorf("target file %s differs from source (%d vs %d bytes)", name, len(got), len(want))
		}
	}
}

// testSendSize: SendSize estimates a full stream within a factor of two of
// what Send writes; an incremental one too where the node has a dry-run
// send, and is ErrUnsupported where it has not.
func testSendSize(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	writeRandom(t, ctx, src, fs, "first", 2<<20)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	writeRandom(t, ctx, src, fs, "second", 256<<10)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	caps, err := src.ZFS.Capabilities(ctx)
	must(t, err)
	for _, o := range []zfsexec.SendOptions{{Snapshot: fs + "@s1"}, {Snapshot: fs + "@s2", From: "@s1"}} {
		est, err := src.ZFS.SendSize(ctx, o)
		if o.From != "" && !caps.DryRunSend {
			if !errors.Is(err, zfsexec.ErrUnsupported) {
				t.Errorf("%s without a dry-run send: %d, %v; want ErrUnsupported", o.Snapshot, est, err)
			}
			continue
		}
		must(t, err)
		cw := zfsexec.CountingWriter{W: io.Discard}
		must(t, src.ZFS.Send(ctx, o, &cw))
		if n := cw.N(); est < n/2 || est > n*2 {
			t.Errorf("send %s from %q: estimated %d bytes, the stream has %d", o.Snapshot, o.From, est, n)
		}
		t.Logf("send %s from %q: estimated %d bytes, stream %d", o.Snapshot, o.From, est, cw.N())
	}
	if _, err := src.ZFS.SendSize(ctx, zfsexec.SendOptions{Snapshot: fs + "@nope"}); !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Errorf("size of a missing snapshot: %v, want ErrDatasetNotExist", err)
	}
}

func testRollback(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@a", nil))
	must(t, src.ZFS.Snapshot(ctx, fs+"@b", nil))
	if err := src.ZFS.Rollback(ctx, fs+"@a", zfsexec.RollbackOptions{}); !errors.Is(err, zfsexec.ErrNewerSnapshotsExist) {
		t.Fatalf("rollback past a newer snapshot = %v, want ErrNewerSnapshotsExist", err)
	}
	must(t, src.ZFS.Rollback(ctx, fs+"@a", zfsexec.RollbackOptions{DestroyNewer: true}))
	if g := snapGUIDs(t, ctx, src, fs); len(g) != 1 {
		t.Fatalf("after rollback -r: %v, want only @a", g)
	}
}

// testTypedErrors provokes each condition callers branch on and checks the
// typed error comes back.
func testTypedErrors(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	writeRandom(t, ctx, src, fs, "f", 8192)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	target := path.Join(dst.Pool, path.Base(fs))
	_, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	unrelated := path.Join(dst.Pool, path.Base(fs)+"-unrelated")
	must(t, dst.ZFS.CreateFilesystem(ctx, unrelated, zfsexec.CreateOptions{}))
	must(t, dst.ZFS.Snapshot(ctx, unrelated+"@x", nil))

	check := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", what, err, want)
			return
		}
		var ce *zfsexec.CommandError
		if errors.As(err, &ce) && len(ce.Argv) == 0 {
			t.Errorf("%s: CommandError without argv", what)
		}
	}
	_, err = src.ZFS.Get(ctx, src.Pool+"/nope", "guid")
	check("get missing dataset", err, zfsexec.ErrDatasetNotExist)
	check("snapshot twice", src.ZFS.Snapshot(ctx, fs+"@s1", nil), zfsexec.ErrSnapshotExists)
	must(t, src.ZFS.Hold(ctx, "z8r-t", fs+"@s1"))
	check("hold twice", src.ZFS.Hold(ctx, "z8r-t", fs+"@s1"), zfsexec.ErrTagExists)
	check("destroy held", src.ZFS.Destroy(ctx, fs+"@s1", zfsexec.DestroyOptions{}), zfsexec.ErrDatasetBusy)
	must(t, src.ZFS.Release(ctx, "z8r-t", fs+"@s1"))
	check("release missing tag", src.ZFS.Release(ctx, "z8r-t", fs+"@s1"), zfsexec.ErrNoSuchTag)

	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	check("full stream into existing dataset", err, zfsexec.ErrDestinationExists)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Force: true})
	check("full stream with -F into dataset with snapshots", err, zfsexec.ErrDestinationHasSnapshots)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: unrelated, Unmounted: true})
	check("incremental into unrelated dataset", err, zfsexec.ErrIncrementalMismatch)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: dst.Pool + "/missing", Unmounted: true, Incremental: true})
	check("incremental into missing dataset", err, zfsexec.ErrDatasetNotExist)
	err = src.ZFS.Send(ctx, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@nope"}, &bytes.Buffer{})
	check("send from missing source", err, zfsexec.ErrIncrementalSourceMissing)
	err = src.ZFS.Send(ctx, zfsexec.SendOptions{Snapshot: fs + "@s1", From: "@s2"}, &bytes.Buffer{})
	check("send from a later snapshot", err, zfsexec.ErrNotEarlierSnapshot)
	err = dst.ZFS.Recv(ctx, zfsexec.RecvOptions{Target: dst.Pool + "/garbage", Unmounted: true}, bytes.NewReader(randomData(4096)))
	check("receive garbage", err, zfsexec.ErrInvalidStream)

	// Modify the target after its last snapshot, then send the next step.
	must(t, dst.ZFS.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zfs", "mount", target}}))
	writeRandom(t, ctx, dst, target, "local-change", 4096)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Incremental: true})
	check("incremental into modified target", err, zfsexec.ErrDestinationModified)
	// Nothing on the modified target was destroyed or rolled back.
	if g := snapGUIDs(t, ctx, dst, target); len(g) != 1 {
		t.Errorf("target snapshots after refused receive: %v", g)
	}
	if _, err := ReadFile(ctx, dst, mustMountpoint(t, ctx, dst, target)+"/local-change"); err != nil {
		t.Errorf("local change on the target is gone: %v", err)
	}
}

func mustMountpoint(t *testing.T, ctx context.Context, h Host, fs string) string {
	t.Helper()
	mp, err := Mountpoint(ctx, h, fs)
	must(t, err)
	return mp
}
