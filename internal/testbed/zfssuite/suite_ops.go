// Subtests for rename, bookmarks, property sources, clones, forced and
// resumable receives, -I streams and recv -o (run by Run in suite.go).

package zfssuite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// run runs argv on h, for the commands zfsexec deliberately does not wrap
// (clone, mount).
func run(t *testing.T, ctx context.Context, h Host, argv ...string) {
	t.Helper()
	must(t, h.ZFS.Runner().Run(ctx, zfsexec.Command{Argv: argv}))
}

// testRename moves a filesystem with a child and snapshots aside, as z8r
// keeps a diverged target: everything keeps its identity under the new
// name, and a taken or missing name fails with the typed error.
func testRename(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	aside := fs + "-aside"
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.CreateFilesystem(ctx, fs+"/child", zfsexec.CreateOptions{}))
	data := writeRandom(t, ctx, src, fs, "f", 8192)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", map[string]string{"z8r.dev:owner": "z8r"}))
	before := snapGUIDs(t, ctx, src, fs)
	// zfs-fuse renames only unmounted filesystems; z8r unmounts first.
	must(t, src.ZFS.Unmount(ctx, fs+"/child"))
	must(t, src.ZFS.Unmount(ctx, fs))
	must(t, renameWhenIdle(ctx, src, fs, aside))

	if ok, err := src.ZFS.Exists(ctx, fs); err != nil || ok {
		t.Errorf("Exists(%s) after rename = %v, %v; want false", fs, ok, err)
	}
	if ok, err := src.ZFS.Exists(ctx, aside+"/child"); err != nil || !ok {
		t.Errorf("Exists(%s/child) after rename = %v, %v; want true", aside, ok, err)
	}
	after := snapGUIDs(t, ctx, src, aside)
	if len(after) != 1 || after["s1"] != before["s1"] {
		t.Errorf("snapshots after rename %v, before %v: want the same GUIDs", after, before)
	}
	snaps, err := src.ZFS.Snapshots(ctx, aside, "z8r.dev:owner")
	must(t, err)
	if len(snaps) != 1 || snaps[0].LocalProps["z8r.dev:owner"] != "z8r" {
		t.Errorf("renamed snapshot %+v lost its local property", snaps)
	}
	run(t, ctx, src, "zfs", "mount", aside)
	got, err := ReadFile(ctx, src, path.Join(mustMountpoint(t, ctx, src, aside), "f"))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("file after rename: %d bytes, want the %d written", len(got), len(data))
	}

	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Unmount(ctx, fs))
	if err := renameWhenIdle(ctx, src, fs, aside); !errors.Is(err, zfsexec.ErrDatasetExists) {
		t.Errorf("rename onto a taken name = %v, want ErrDatasetExists", err)
	}
	if err := src.ZFS.Rename(ctx, fs+"-nope", fs+"-nope2"); !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Errorf("rename of a missing dataset = %v, want ErrDatasetNotExist", err)
	}
}

// renameWhenIdle renames, retrying for up to about 15 s while the node
// calls the dataset busy: zfs-fuse does for seconds after an unmount (as
// replicate's renameAfterUnmount knows).
func renameWhenIdle(ctx context.Context, h Host, src, dst string) error {
	for i := 0; ; i++ {
		err := h.ZFS.Rename(ctx, src, dst)
		if err == nil || !errors.Is(err, zfsexec.ErrDatasetBusy) || i == 30 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// testBookmarks: a bookmark keeps its snapshot's GUID and createtxg, and an
// incremental stream can start from it after the snapshot is gone. Nodes
// without bookmarks refuse them before running anything.
func testBookmarks(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	caps, err := src.ZFS.Capabilities(ctx)
	must(t, err)
	if !caps.Bookmarks {
		if err := src.ZFS.Bookmark(ctx, fs+"@s1", fs+"#b1"); !errors.Is(err, zfsexec.ErrUnsupported) {
			t.Errorf("Bookmark on a node without bookmarks = %v, want ErrUnsupported", err)
		}
		return
	}
	target := path.Join(dst.Pool, path.Base(fs))
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	must(t, src.ZFS.Bookmark(ctx, fs+"@s1", fs+"#b1"))
	if err := src.ZFS.Bookmark(ctx, fs+"@s1", fs+"#b1"); !errors.Is(err, zfsexec.ErrBookmarkExists) {
		t.Errorf("bookmark twice = %v, want ErrBookmarkExists", err)
	}
	second := writeRandom(t, ctx, src, fs, "second", 16<<10)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	snaps, err := src.ZFS.Snapshots(ctx, fs)
	must(t, err)
	byName := map[string]zfsexec.Dataset{}
	for _, s := range snaps {
		byName[s.ShortName()+string(s.Type)] = s
	}
	s1, b1 := byName["s1snapshot"], byName["b1bookmark"]
	if !b1.IsBookmark() || b1.GUID != s1.GUID || b1.CreateTXG != s1.CreateTXG {
		t.Fatalf("bookmark %+v, snapshot %+v: want the snapshot's GUID and createtxg", b1, s1)
	}
	must(t, src.ZFS.Destroy(ctx, fs+"@s1", zfsexec.DestroyOptions{}))
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "#b1"},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Incremental: true, BaseGUID: b1.GUID})
	must(t, err)
	d := snapGUIDs(t, ctx, dst, target)
	if d["s1"] != s1.GUID || d["s2"] != byName["s2snapshot"].GUID {
		t.Errorf("target snapshots %v after an incremental from a bookmark", d)
	}
	must(t, dst.ZFS.Set(ctx, target, map[string]string{"readonly": "on"}))
	run(t, ctx, dst, "zfs", "mount", target)
	got, err := ReadFile(ctx, dst, path.Join(mustMountpoint(t, ctx, dst, target), "second"))
	must(t, err)
	if sha256.Sum256(got) != sha256.Sum256(second) {
		t.Error("file sent from a bookmark differs on the target")
	}
	err = src.ZFS.Send(ctx, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "#nope"}, &bytes.Buffer{})
	if !errors.Is(err, zfsexec.ErrIncrementalSourceMissing) {
		t.Errorf("send from a missing bookmark = %v, want ErrIncrementalSourceMissing", err)
	}
	must(t, src.ZFS.Destroy(ctx, fs+"#b1", zfsexec.DestroyOptions{}))
	must(t, src.ZFS.Destroy(ctx, fs+"#b1", zfsexec.DestroyOptions{}))
	if ok, err := src.ZFS.Exists(ctx, fs+"#b1"); err != nil || ok {
		t.Errorf("Exists(#b1) after destroy = %v, %v", ok, err)
	}
}

// testPropertySources: LocalProps holds only what was set on the object
// itself; inherited (from a parent, or by a snapshot from its filesystem)
// and received (`send -p`) values are in UserProps alone.
func testPropertySources(t *testing.T, ctx context.Context, src, dst Host) {
	const p, q = "z8r.dev:suite-parent", "z8r.dev:suite-own"
	fs := dataset(t, src, "fs")
	child := fs + "/child"
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{Props: map[string]string{p: "up"}}))
	must(t, src.ZFS.CreateFilesystem(ctx, child, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Set(ctx, child, map[string]string{q: "mine"}))
	must(t, src.ZFS.Snapshot(ctx, child+"@s1", nil))
	all, err := src.ZFS.List(ctx, fs, ListOptions{Depth: -1, UserProps: []string{p, q}})
	must(t, err)
	got := map[string]zfsexec.Dataset{}
	for _, d := range all {
		got[d.Name] = d
	}
	check := func(where, name string, user, local map[string]string) {
		t.Helper()
		d, ok := got[name]
		if !ok {
			t.Errorf("%s: %s not listed", where, name)
			return
		}
		if !sameMap(d.UserProps, user) || !sameMap(d.LocalProps, local) {
			t.Errorf("%s: %s UserProps %v LocalProps %v; want %v and %v", where, name, d.UserProps, d.LocalProps, user, local)
		}
	}
	check("source", fs, map[string]string{p: "up"}, map[string]string{p: "up"})
	check("source", child, map[string]string{p: "up", q: "mine"}, map[string]string{q: "mine"})
	check("source", child+"@s1", map[string]string{p: "up", q: "mine"}, nil)
	pr, err := src.ZFS.Get(ctx, child, p, q)
	must(t, err)
	if !pr[p].Inherited() || pr[p].Source != "inherited from "+fs || pr[q].Source != "local" {
		t.Errorf("Get sources %+v", pr)
	}

	target := path.Join(dst.Pool, path.Base(fs)+"-recv")
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: child + "@s1", Props: true},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	all, err = dst.ZFS.List(ctx, target, ListOptions{Depth: 0, UserProps: []string{p, q}})
	must(t, err)
	got = map[string]zfsexec.Dataset{}
	for _, d := range all {
		got[d.Name] = d
	}
	// Only what was set on the child itself travels; it arrives received.
	check("target", target, map[string]string{q: "mine"}, nil)
	pr, err = dst.ZFS.Get(ctx, target, q)
	must(t, err)
	if pr[q].Source != "received" {
		t.Errorf("received property source %q, want received", pr[q].Source)
	}
	must(t, dst.ZFS.Set(ctx, target, map[string]string{q: "claimed"}))
	all, err = dst.ZFS.List(ctx, target, ListOptions{Depth: 0, UserProps: []string{q}})
	must(t, err)
	got = map[string]zfsexec.Dataset{all[0].Name: all[0]}
	check("target after set", target, map[string]string{q: "claimed"}, map[string]string{q: "claimed"})
}

// ListOptions is zfsexec.ListOptions, named here for brevity.
type ListOptions = zfsexec.ListOptions

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// testClonesBlockDestroy: the origin of a clone cannot be destroyed, and
// the refusal is ErrHasClones, not a generic failure.
func testClonesBlockDestroy(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@origin", nil))
	run(t, ctx, src, "zfs", "clone", fs+"@origin", fs+"-clone")
	err := src.ZFS.Destroy(ctx, fs+"@origin", zfsexec.DestroyOptions{})
	if !errors.Is(err, zfsexec.ErrHasClones) {
		t.Errorf("destroy a clone's origin = %v, want ErrHasClones", err)
	}
	if errors.Is(err, zfsexec.ErrDatasetBusy) {
		t.Errorf("destroy a clone's origin also matches ErrDatasetBusy: %v", err)
	}
	if ok, err := src.ZFS.Exists(ctx, fs+"@origin"); err != nil || !ok {
		t.Errorf("origin after refused destroy: exists %v, %v", ok, err)
	}
	p, err := src.ZFS.Get(ctx, fs+"-clone", "origin")
	must(t, err)
	if p["origin"].Value != fs+"@origin" {
		t.Errorf("clone origin = %q", p["origin"].Value)
	}
}

// testForcedReceive: an incremental `recv -F` into a target changed since
// its last snapshot rolls the change back and lands the stream (without
// -F the same receive is refused: TypedErrors); a full `recv -F` into a
// filesystem without snapshots replaces it.
func testForcedReceive(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, dst.ZFS.CreateFilesystem(ctx, target+"-empty", zfsexec.CreateOptions{}))
	writeRandom(t, ctx, src, fs, "first", 8192)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	_, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	second := writeRandom(t, ctx, src, fs, "second", 8192)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))

	run(t, ctx, dst, "zfs", "mount", target)
	mp := mustMountpoint(t, ctx, dst, target)
	writeRandom(t, ctx, dst, target, "local-change", 4096)
	s := snapGUIDs(t, ctx, src, fs)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Force: true, Incremental: true, BaseGUID: s["s1"]})
	must(t, err)
	if d := snapGUIDs(t, ctx, dst, target); len(d) != 2 || d["s2"] != s["s2"] {
		t.Fatalf("target snapshots %v after forced receive, source %v", d, s)
	}
	must(t, dst.ZFS.Set(ctx, target, map[string]string{"readonly": "on"}))
	// Remount, so what is read is the received state and not a cache of
	// the mount that saw the local change (zfs-fuse's FUSE mount keeps one).
	m, err := dst.ZFS.Get(ctx, target, "mounted")
	must(t, err)
	if m["mounted"].Value == "yes" {
		must(t, dst.ZFS.Unmount(ctx, target))
	}
	run(t, ctx, dst, "zfs", "mount", target)
	if _, err := ReadFile(ctx, dst, path.Join(mp, "local-change")); err == nil {
		t.Error("the local change survived a forced receive")
	}
	got, err := ReadFile(ctx, dst, path.Join(mp, "second"))
	must(t, err)
	if !bytes.Equal(got, second) {
		t.Error("file received with -F differs from the source")
	}

	// A full stream with -F into an existing filesystem without
	// snapshots replaces its contents (z8r does this only to a pristine
	// replica).
	empty := target + "-empty"
	writeRandom(t, ctx, dst, empty, "old", 4096)
	// Unmounted first, as z8r receives only into an unmounted pristine
	// replica.
	must(t, dst.ZFS.Unmount(ctx, empty))
	forced := zfsexec.RecvOptions{Target: empty, Unmounted: true, Force: true}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2"}, dst.ZFS, forced)
	if err != nil && strings.Contains(err.Error(), "I/O error") {
		// zfs-fuse reports this receive, about one time in eight, as
		// failed with "I/O error" although it committed (a retry then
		// finds the snapshot there): what landed is checked below.
		t.Logf("forced full receive reported %v; checking what landed", err)
		err = nil
	}
	must(t, err)
	if d := snapGUIDs(t, ctx, dst, empty); len(d) != 1 || d["s2"] != s["s2"] {
		t.Fatalf("snapshots %v after a forced full receive, want only s2 (guid %d)", d, s["s2"])
	}
	must(t, dst.ZFS.Set(ctx, empty, map[string]string{"readonly": "on"}))
	if m, err := dst.ZFS.Get(ctx, empty, "mounted"); err == nil && m["mounted"].Value == "yes" {
		must(t, dst.ZFS.Unmount(ctx, empty))
	}
	run(t, ctx, dst, "zfs", "mount", empty)
	emp := mustMountpoint(t, ctx, dst, empty)
	if _, err := ReadFile(ctx, dst, path.Join(emp, "old")); err == nil {
		t.Error("a forced full receive kept the old contents")
	}
	got, err = ReadFile(ctx, dst, path.Join(emp, "second"))
	must(t, err)
	if !bytes.Equal(got, second) {
		t.Error("file of a forced full receive differs from the source")
	}
}

// testResumableReceive: a stream cut short into `recv -s` leaves a resume
// token naming the snapshot; `send -t` completes it; `recv -A` discards
// another such state. Nodes without resumable receive refuse -s before
// running anything.
func testResumableReceive(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	data := writeRandom(t, ctx, src, fs, "f", 1<<20)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	caps, err := dst.ZFS.Capabilities(ctx)
	must(t, err)
	if !caps.ResumableRecv {
		err := dst.ZFS.Recv(ctx, zfsexec.RecvOptions{Target: target, Unmounted: true, Resumable: true}, bytes.NewReader(nil))
		if !errors.Is(err, zfsexec.ErrUnsupported) {
			t.Errorf("resumable Recv on a node without it = %v, want ErrUnsupported", err)
		}
		if tok, err := dst.ZFS.ResumeToken(ctx, dst.Pool); tok != "" || err != nil {
			t.Errorf("ResumeToken = %q, %v; want none", tok, err)
		}
		return
	}
	var stream bytes.Buffer
	must(t, src.ZFS.Send(ctx, zfsexec.SendOptions{Snapshot: fs + "@s1"}, &stream))
	half := bytes.Clone(stream.Bytes()[:stream.Len()/2])
	ro := zfsexec.RecvOptions{Target: target, Unmounted: true, Resumable: true}
	err = dst.ZFS.Recv(ctx, ro, bytes.NewReader(half))
	if !errors.Is(err, zfsexec.ErrInvalidStream) {
		t.Fatalf("receive of half a stream = %v, want ErrInvalidStream", err)
	}
	tok, err := dst.ZFS.ResumeToken(ctx, target)
	must(t, err)
	if tok == "" {
		t.Fatal("no resume token after an interrupted resumable receive")
	}
	rt, err := zfsexec.DecodeResumeToken(tok)
	must(t, err)
	s := snapGUIDs(t, ctx, src, fs)
	if rt.ToName != fs+"@s1" || rt.ToGUID != s["s1"] || rt.FromGUID != 0 {
		t.Errorf("token %+v, want a full send of %s@s1 (guid %d)", rt, fs, s["s1"])
	}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	if !errors.Is(err, zfsexec.ErrDestinationExists) {
		t.Errorf("new full receive over partial state = %v, want ErrDestinationExists", err)
	}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{ResumeToken: tok}, dst.ZFS, ro)
	must(t, err)
	if d := snapGUIDs(t, ctx, dst, target); len(d) != 1 || d["s1"] != s["s1"] {
		t.Fatalf("target snapshots %v after resuming, source %v", d, s)
	}
	if tok, err := dst.ZFS.ResumeToken(ctx, target); tok != "" || err != nil {
		t.Errorf("ResumeToken after completion = %q, %v; want none", tok, err)
	}
	must(t, dst.ZFS.Set(ctx, target, map[string]string{"readonly": "on"}))
	run(t, ctx, dst, "zfs", "mount", target)
	got, err := ReadFile(ctx, dst, path.Join(mustMountpoint(t, ctx, dst, target), "f"))
	must(t, err)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Error("resumed receive: file differs from the source")
	}
	if err := dst.ZFS.AbortRecv(ctx, target); !errors.Is(err, zfsexec.ErrNoResumeState) {
		t.Errorf("AbortRecv without state = %v, want ErrNoResumeState", err)
	}

	// An interrupted incremental: the target keeps its snapshots, refuses
	// a new incremental while the partial state is there, and resumes.
	writeRandom(t, ctx, src, fs, "g", 1<<20)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	s = snapGUIDs(t, ctx, src, fs)
	stream.Reset()
	must(t, src.ZFS.Send(ctx, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, &stream))
	err = dst.ZFS.Recv(ctx, ro, bytes.NewReader(stream.Bytes()[:stream.Len()/2]))
	if !errors.Is(err, zfsexec.ErrInvalidStream) {
		t.Fatalf("receive of half an incremental stream = %v, want ErrInvalidStream", err)
	}
	tok, err = dst.ZFS.ResumeToken(ctx, target)
	must(t, err)
	rt, err = zfsexec.DecodeResumeToken(tok)
	must(t, err)
	if rt.ToGUID != s["s2"] || rt.FromGUID != s["s1"] {
		t.Errorf("token %+v, want s1 (%d) to s2 (%d)", rt, s["s1"], s["s2"])
	}
	if d := snapGUIDs(t, ctx, dst, target); len(d) != 1 {
		t.Errorf("target snapshots %v during an interrupted incremental, want s1 alone", d)
	}
	incr := ro
	incr.Incremental, incr.BaseGUID = true, s["s1"]
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, dst.ZFS, incr)
	if !errors.Is(err, zfsexec.ErrPartialReceiveState) {
		t.Errorf("new incremental over partial state = %v, want ErrPartialReceiveState", err)
	}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{ResumeToken: tok}, dst.ZFS, ro)
	must(t, err)
	if d := snapGUIDs(t, ctx, dst, target); len(d) != 2 || d["s2"] != s["s2"] {
		t.Errorf("target snapshots %v after resuming the incremental, source %v", d, s)
	}

	// A second interrupted full receive, aborted: the partial dataset goes.
	other := target + "-aborted"
	err = dst.ZFS.Recv(ctx, zfsexec.RecvOptions{Target: other, Unmounted: true, Resumable: true}, bytes.NewReader(half))
	if !errors.Is(err, zfsexec.ErrInvalidStream) {
		t.Fatalf("receive of half a stream = %v, want ErrInvalidStream", err)
	}
	must(t, dst.ZFS.AbortRecv(ctx, other))
	if tok, err := dst.ZFS.ResumeToken(ctx, other); tok != "" && err == nil {
		t.Errorf("resume token %q survived recv -A", tok)
	}
}

// testReadingWritableTarget: reading a file on a mounted, writable
// replica updates atime, so the next incremental without -F is refused as
// modified; readonly=on prevents it (why replicas are readonly).
func testReadingWritableTarget(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	writeRandom(t, ctx, src, fs, "f", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	_, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	s := snapGUIDs(t, ctx, src, fs)
	run(t, ctx, dst, "zfs", "mount", target)
	_, err = ReadFile(ctx, dst, path.Join(mustMountpoint(t, ctx, dst, target), "f"))
	must(t, err)
	ro := zfsexec.RecvOptions{Target: target, Unmounted: true, Incremental: true, BaseGUID: s["s1"]}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s2", From: "@s1"}, dst.ZFS, ro)
	if !errors.Is(err, zfsexec.ErrDestinationModified) {
		t.Errorf("incremental after reading a writable target = %v, want ErrDestinationModified", err)
	}
}

// testIntermediates: `send -I` carries every snapshot between the two, each
// with its GUID.
func testIntermediates(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	_, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true})
	must(t, err)
	writeRandom(t, ctx, src, fs, "a", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	writeRandom(t, ctx, src, fs, "b", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s3", nil))
	s := snapGUIDs(t, ctx, src, fs)
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s3", From: "@s1", Intermediates: true},
		dst.ZFS, zfsexec.RecvOptions{Target: target, Unmounted: true, Incremental: true, BaseGUID: s["s1"]})
	must(t, err)
	d := snapGUIDs(t, ctx, dst, target)
	if len(d) != 3 || d["s2"] != s["s2"] || d["s3"] != s["s3"] {
		t.Errorf("target snapshots %v after send -I, source %v", d, s)
	}
}

// testRecvProps: `recv -o` sets properties on the received dataset where
// the node supports it, and is refused before running where it does not.
func testRecvProps(t *testing.T, ctx context.Context, src, dst Host) {
	fs := dataset(t, src, "fs")
	target := path.Join(dst.Pool, path.Base(fs))
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	ro := zfsexec.RecvOptions{Target: target, Unmounted: true, SetProps: map[string]string{"readonly": "on", "canmount": "noauto"}}
	caps, err := dst.ZFS.Capabilities(ctx)
	must(t, err)
	if !caps.RecvProps {
		if err := dst.ZFS.Recv(ctx, ro, bytes.NewReader(nil)); !errors.Is(err, zfsexec.ErrUnsupported) {
			t.Errorf("Recv with -o on a node without it = %v, want ErrUnsupported", err)
		}
		return
	}
	_, err = zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: fs + "@s1"}, dst.ZFS, ro)
	must(t, err)
	p, err := dst.ZFS.Get(ctx, target, "readonly", "canmount", "mounted")
	must(t, err)
	if p["readonly"].Value != "on" || p["canmount"].Value != "noauto" || p["mounted"].Value != "no" {
		t.Errorf("received with -o readonly=on -o canmount=noauto: %+v", p)
	}
}
