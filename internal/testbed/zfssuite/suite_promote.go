// Subtests for what promotion and restore rely on (issue 16): clones,
// promote, preserving an old source's tail by rename + clone + promote,
// and making a replica writable and mountable (run by Run in suite.go).

package zfssuite

import (
	"bytes"
	"context"
	"errors"
	"path"
	"testing"

	"github.com/z8r-project/z8r/zfsexec"
)

// replicaProps are the properties a clone standing for a replica is made
// with, as promotion makes them.
func replicaProps(of string) map[string]string {
	return map[string]string{"readonly": "on", "canmount": "noauto", "z8r.dev:replica-of": of}
}

// mountFresh (re)mounts fs so that what is read is its current state and
// not a cache of an earlier mount (zfs-fuse's FUSE mount keeps one).
func mountFresh(t *testing.T, ctx context.Context, h Host, fs string) string {
	t.Helper()
	m, err := h.ZFS.Get(ctx, fs, "mounted")
	must(t, err)
	if m["mounted"].Value == "yes" {
		must(t, h.ZFS.Unmount(ctx, fs))
	}
	must(t, h.ZFS.Mount(ctx, fs))
	return mustMountpoint(t, ctx, h, fs)
}

// wantFiles fails t unless each named file under mp has the given
// contents (nil: the file must not exist).
func wantFiles(t *testing.T, ctx context.Context, h Host, what, mp string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := ReadFile(ctx, h, path.Join(mp, name))
		switch {
		case want == nil && err == nil:
			t.Errorf("%s: file %s exists, want none", what, name)
		case want != nil && err != nil:
			t.Errorf("%s: file %s: %v", what, name, err)
		case want != nil && !bytes.Equal(got, want):
			t.Errorf("%s: file %s has %d bytes, not the %d expected", what, name, len(got), len(want))
		}
	}
}

func origin(t *testing.T, ctx context.Context, h Host, fs string) string {
	t.Helper()
	p, err := h.ZFS.Get(ctx, fs, "origin")
	must(t, err)
	return p["origin"].Value
}

// testClone: a clone has its snapshot's data (not what was written after
// it), its origin property names the snapshot, it carries the properties
// it was made with set locally, and a taken name or a missing snapshot
// fail with the typed errors.
func testClone(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	clone := fs + "-clone"
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	before := writeRandom(t, ctx, src, fs, "before", 8192)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", nil))
	writeRandom(t, ctx, src, fs, "after", 4096)

	must(t, src.ZFS.Clone(ctx, fs+"@s1", clone, replicaProps("n2:tank/x")))
	if o := origin(t, ctx, src, clone); o != fs+"@s1" {
		t.Errorf("clone origin = %q, want %s@s1", o, fs)
	}
	if o := origin(t, ctx, src, fs); o != "-" {
		t.Errorf("origin of the cloned filesystem = %q, want -", o)
	}
	p, err := src.ZFS.Get(ctx, clone, "z8r.dev:replica-of", "canmount")
	must(t, err)
	if m := p["z8r.dev:replica-of"]; m.Value != "n2:tank/x" || m.Source != "local" {
		t.Errorf("clone's z8r.dev:replica-of = %+v, want n2:tank/x set locally", m)
	}
	if c := p["canmount"]; c.Value != "noauto" || c.Source != "local" {
		t.Errorf("clone's canmount = %+v, want noauto set locally", c)
	}
	mp := mountFresh(t, ctx, src, clone)
	wantFiles(t, ctx, src, "clone", mp, map[string][]byte{"before": before, "after": nil})
	if err := WriteFile(ctx, src, path.Join(mp, "w"), []byte("x")); err == nil {
		t.Error("wrote to a clone made with readonly=on")
	}

	if err := src.ZFS.Clone(ctx, fs+"@s1", clone, nil); !errors.Is(err, zfsexec.ErrDatasetExists) {
		t.Errorf("clone onto a taken name = %v, want ErrDatasetExists", err)
	}
	if err := src.ZFS.Clone(ctx, fs+"@nope", fs+"-clone2", nil); !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Errorf("clone of a missing snapshot = %v, want ErrDatasetNotExist", err)
	}
}

// testPromote: promoting a clone moves its origin snapshot and the older
// snapshots of the origin filesystem to it, with their GUIDs, holds and
// local properties; the newer ones stay; the origins flip, so the old
// origin filesystem is now the clone and the moved origin snapshot cannot
// be destroyed. A filesystem that is not a clone is ErrNotClone. Renaming
// the promoted filesystem carries the clone's origin along.
func testPromote(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	clone := fs + "-clone"
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{}))
	must(t, src.ZFS.Snapshot(ctx, fs+"@s1", map[string]string{"z8r.dev:owner": "z8r"}))
	must(t, src.ZFS.Hold(ctx, "z8r-a", fs+"@s1"))
	writeRandom(t, ctx, src, fs, "f2", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s2", nil))
	writeRandom(t, ctx, src, fs, "f3", 4096)
	must(t, src.ZFS.Snapshot(ctx, fs+"@s3", nil))
	before := snapGUIDs(t, ctx, src, fs)

	if err := src.ZFS.Promote(ctx, fs); !errors.Is(err, zfsexec.ErrNotClone) {
		t.Errorf("promote of a non-clone = %v, want ErrNotClone", err)
	}
	must(t, src.ZFS.Clone(ctx, fs+"@s2", clone, replicaProps("n2:tank/x")))
	must(t, src.ZFS.Snapshot(ctx, clone+"@c1", nil))
	must(t, src.ZFS.Promote(ctx, clone))

	got := snapGUIDs(t, ctx, src, clone)
	if len(got) != 3 || got["s1"] != before["s1"] || got["s2"] != before["s2"] || got["c1"] == 0 {
		t.Errorf("promoted clone's snapshots %v, want s1, s2 (GUIDs %v) and c1", got, before)
	}
	if left := snapGUIDs(t, ctx, src, fs); len(left) != 1 || left["s3"] != before["s3"] {
		t.Errorf("former origin's snapshots %v, want only s3 (GUID %d)", left, before["s3"])
	}
	snaps, err := src.ZFS.Snapshots(ctx, clone, "z8r.dev:owner")
	must(t, err)
	if len(snaps) == 0 || snaps[0].Name != clone+"@s1" || snaps[0].LocalProps["z8r.dev:owner"] != "z8r" {
		t.Errorf("moved snapshot %+v lost its local property", snaps)
	}
	if n := userRefs(t, ctx, src, clone+"@s1"); n != 1 {
		t.Errorf("moved snapshot's userrefs = %d, want its hold kept", n)
	}
	if o := origin(t, ctx, src, clone); o != "-" {
		t.Errorf("promoted clone's origin = %q, want -", o)
	}
	if o := origin(t, ctx, src, fs); o != clone+"@s2" {
		t.Errorf("former origin's origin = %q, want %s@s2", o, clone)
	}
	if err := src.ZFS.Destroy(ctx, clone+"@s2", zfsexec.DestroyOptions{}); !errors.Is(err, zfsexec.ErrHasClones) {
		t.Errorf("destroy of the moved origin snapshot = %v, want ErrHasClones", err)
	}
	must(t, src.ZFS.Release(ctx, "z8r-a", clone+"@s1"))

	// Renaming a filesystem another one is cloned from: the clone's
	// origin follows the rename.
	moved := clone + "-moved"
	if m, err := src.ZFS.Get(ctx, clone, "mounted"); err == nil && m["mounted"].Value == "yes" {
		must(t, src.ZFS.Unmount(ctx, clone))
	}
	must(t, renameWhenIdle(ctx, src, clone, moved))
	if o := origin(t, ctx, src, fs); o != moved+"@s2" {
		t.Errorf("origin after renaming the origin filesystem = %q, want %s@s2", o, moved)
	}
}

// testPreserveTail is the sequence that keeps an old source's unreplicated
// tail when it returns after a failover: the old source FS has snapshots
// and writes after the base it shares with the new source; FS is frozen,
// a tail snapshot taken, FS renamed to FS-z8r-tail-T, the tail's base
// cloned back to FS and FS promoted. Then FS has the snapshots up to the
// base (GUIDs and holds kept) and the base's data; the tail dataset, a
// clone of FS@base, has the later snapshots and the writes; and an
// incremental stream from the new source, which has the base by GUID,
// lands in FS without -F.
func testPreserveTail(t *testing.T, ctx context.Context, src, dst Host) {
	const when = "20261130T150405Z"
	old := dataset(t, src, "fs") // the old source
	tail := old + "-z8r-tail-" + when
	neu := path.Join(dst.Pool, path.Base(old)) // the new source
	must(t, src.ZFS.CreateFilesystem(ctx, old, zfsexec.CreateOptions{}))
	base := writeRandom(t, ctx, src, old, "base", 64<<10)
	must(t, src.ZFS.Snapshot(ctx, old+"@s0", nil))
	must(t, src.ZFS.Snapshot(ctx, old+"@base", map[string]string{"z8r.dev:owner": "z8r"}))
	must(t, src.ZFS.Hold(ctx, "z8r-base-t", old+"@base"))
	_, err := zfsexec.Pipe(ctx, src.ZFS, zfsexec.SendOptions{Snapshot: old + "@base"},
		dst.ZFS, zfsexec.RecvOptions{Target: neu, Unmounted: true})
	must(t, err)

	// The old source goes on alone: a snapshot and writes after the base.
	tail1 := writeRandom(t, ctx, src, old, "tail1", 8192)
	must(t, src.ZFS.Snapshot(ctx, old+"@t1", nil))
	tail2 := writeRandom(t, ctx, src, old, "tail2", 8192)
	// The new source is promoted and written to.
	must(t, dst.ZFS.Set(ctx, neu, map[string]string{"readonly": "off"}))
	must(t, dst.ZFS.Mount(ctx, neu))
	newer := writeRandom(t, ctx, dst, neu, "newer", 16<<10)
	must(t, dst.ZFS.Snapshot(ctx, neu+"@new", nil))
	sg := snapGUIDs(t, ctx, src, old)
	dg := snapGUIDs(t, ctx, dst, neu)
	if dg["base"] != sg["base"] {
		t.Fatalf("new source's base GUID %d, old source's %d", dg["base"], sg["base"])
	}

	// Freeze, capture the writes, move aside, clone the base back, promote.
	must(t, src.ZFS.Set(ctx, old, map[string]string{"readonly": "on", "z8r.dev:replica-of": "dst:" + neu}))
	must(t, src.ZFS.Snapshot(ctx, old+"@z8r-tail-"+when, nil))
	must(t, src.ZFS.Unmount(ctx, old))
	must(t, renameWhenIdle(ctx, src, old, tail))
	must(t, src.ZFS.Clone(ctx, tail+"@base", old, replicaProps("dst:"+neu)))
	must(t, src.ZFS.Promote(ctx, old))

	if got := snapGUIDs(t, ctx, src, old); len(got) != 2 || got["s0"] != sg["s0"] || got["base"] != sg["base"] {
		t.Errorf("FS's snapshots %v, want s0 and base with GUIDs %v", got, sg)
	}
	if got := snapGUIDs(t, ctx, src, tail); len(got) != 2 || got["t1"] != sg["t1"] || got["z8r-tail-"+when] == 0 {
		t.Errorf("tail's snapshots %v, want t1 (GUID %d) and z8r-tail-%s", got, sg["t1"], when)
	}
	if n := userRefs(t, ctx, src, old+"@base"); n != 1 {
		t.Errorf("base's userrefs in FS = %d, want its hold kept", n)
	}
	if o := origin(t, ctx, src, old); o != "-" {
		t.Errorf("FS's origin = %q, want -", o)
	}
	if o := origin(t, ctx, src, tail); o != old+"@base" {
		t.Errorf("tail's origin = %q, want %s@base", o, old)
	}
	p, err := src.ZFS.Get(ctx, old, "readonly", "z8r.dev:replica-of")
	must(t, err)
	if m := p["z8r.dev:replica-of"]; m.Source != "local" || m.Value != "dst:"+neu {
		t.Errorf("FS's z8r.dev:replica-of = %+v, want set locally", m)
	}
	mp := mountFresh(t, ctx, src, old)
	wantFiles(t, ctx, src, "FS", mp, map[string][]byte{"base": base, "tail1": nil, "tail2": nil})
	tmp := mountFresh(t, ctx, src, tail)
	wantFiles(t, ctx, src, "tail", tmp, map[string][]byte{"base": base, "tail1": tail1, "tail2": tail2})

	// Reverse replication: incremental from the common base, no -F.
	_, err = zfsexec.Pipe(ctx, dst.ZFS, zfsexec.SendOptions{Snapshot: neu + "@new", From: "@base"},
		src.ZFS, zfsexec.RecvOptions{Target: old, Unmounted: true, Incremental: true, BaseGUID: dg["base"]})
	must(t, err)
	if got := snapGUIDs(t, ctx, src, old); len(got) != 3 || got["new"] != dg["new"] {
		t.Errorf("FS's snapshots after the incremental %v, want new with GUID %d", got, dg["new"])
	}
	mp = mountFresh(t, ctx, src, old)
	wantFiles(t, ctx, src, "FS after the incremental", mp, map[string][]byte{"base": base, "newer": newer, "tail1": nil})
	must(t, src.ZFS.Release(ctx, "z8r-base-t", old+"@base"))
}

// testWritableAndMount: readonly=off makes a replica writable, canmount=on
// and zfs mount mount it, and zfs inherit clears a user property's local
// value; mounting a mounted filesystem is ErrAlreadyMounted.
func testWritableAndMount(t *testing.T, ctx context.Context, src, _ Host) {
	fs := dataset(t, src, "fs")
	must(t, src.ZFS.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{Props: replicaProps("n2:tank/x")}))
	m, err := src.ZFS.Get(ctx, fs, "mounted")
	must(t, err)
	if m["mounted"].Value != "no" {
		t.Fatalf("created with canmount=noauto but mounted = %q", m["mounted"].Value)
	}
	must(t, src.ZFS.Mount(ctx, fs))
	mp := mustMountpoint(t, ctx, src, fs)
	if err := WriteFile(ctx, src, path.Join(mp, "w"), []byte("x")); err == nil {
		t.Error("wrote to a filesystem with readonly=on")
	}
	if err := src.ZFS.Mount(ctx, fs); !errors.Is(err, zfsexec.ErrAlreadyMounted) {
		t.Errorf("mount of a mounted filesystem = %v, want ErrAlreadyMounted", err)
	}
	must(t, src.ZFS.Unmount(ctx, fs))

	must(t, src.ZFS.Set(ctx, fs, map[string]string{"readonly": "off", "canmount": "on"}))
	mp = mountFresh(t, ctx, src, fs)
	data := randomData(4096)
	must(t, WriteFile(ctx, src, path.Join(mp, "w"), data))
	wantFiles(t, ctx, src, "writable", mp, map[string][]byte{"w": data})
	p, err := src.ZFS.Get(ctx, fs, "readonly", "canmount", "mounted")
	must(t, err)
	if p["readonly"].Value != "off" || p["canmount"].Value != "on" || p["mounted"].Value != "yes" {
		t.Errorf("after readonly=off, canmount=on, mount: %+v", p)
	}

	must(t, src.ZFS.Inherit(ctx, fs, "z8r.dev:replica-of"))
	p, err = src.ZFS.Get(ctx, fs, "z8r.dev:replica-of")
	must(t, err)
	if r := p["z8r.dev:replica-of"]; r.Source == "local" || r.Value != "-" {
		t.Errorf("z8r.dev:replica-of after inherit = %+v, want unset", r)
	}
	if err := src.ZFS.Inherit(ctx, fs+"-nope", "z8r.dev:replica-of"); !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Errorf("inherit on a missing dataset = %v, want ErrDatasetNotExist", err)
	}
}
