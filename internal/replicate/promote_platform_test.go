//go:build platform

package replicate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/ozguest"
	"github.com/z8r-project/z8r/zfsexec"
)

// Platform tests of the node-side promotion operations (issue 16) on real
// zfs-fuse nodes: src is the old source, dst the replica promoted.

// props reads properties of name on z.
func props(t *testing.T, z *zfsexec.ZFS, name string, ps ...string) map[string]zfsexec.Property {
	t.Helper()
	p, err := z.Get(context.Background(), name, ps...)
	must(t, err)
	return p
}

func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// replicated creates src on the src node with file f, takes a z8r
// snapshot and syncs it to dst on the dst node; it returns the target.
func (b *bed) replicated(t *testing.T, src, dst string) replicate.Target {
	t.Helper()
	create(t, b.sz, src)
	writeFile(t, b.src, src, "f", "base data of "+src)
	tgt := b.target(src, dst, "p1")
	b.snapshot(t, src, "p1")
	_, err := replicate.SyncTarget(context.Background(), b.srcEP, src, tgt, replicate.Options{})
	must(t, err)
	return tgt
}

// TestFreezeMakeWritable_RoundTrip: a replica is received read-only and
// canmount=noauto, unmounted; Freeze makes the old source read-only and
// marks it; MakeWritable reports the recovery point and leaves the
// replica writable, mounted, without the mark, with its data; a re-run
// after a crash after any of its steps finishes the same way, and a
// re-run after the end changes nothing.
func TestFreezeMakeWritable_RoundTrip(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	// crashAfter runs the first n of MakeWritable's steps by hand, as a
	// run killed after step n leaves the replica.
	steps := []func(z *zfsexec.ZFS, fs string) error{
		func(z *zfsexec.ZFS, fs string) error { return z.Set(ctx, fs, map[string]string{"readonly": "off"}) },
		func(z *zfsexec.ZFS, fs string) error { return z.Set(ctx, fs, map[string]string{"canmount": "on"}) },
		func(z *zfsexec.ZFS, fs string) error { return z.Mount(ctx, fs) },
		func(z *zfsexec.ZFS, fs string) error { return z.Inherit(ctx, fs, replicate.ReplicaOfProp) },
	}
	for crashAfter := 0; crashAfter <= len(steps); crashAfter++ {
		t.Run(fmt.Sprint("crash-after-step-", crashAfter), func(t *testing.T) {
			src, dst := fmt.Sprintf("tank/rt%d", crashAfter), fmt.Sprintf("tank/rt%d-replica", crashAfter)
			b.replicated(t, src, dst)
			p := props(t, b.dz, dst, "readonly", "canmount", "mounted")
			if p["readonly"] != (zfsexec.Property{Value: "on", Source: "local"}) ||
				p["canmount"] != (zfsexec.Property{Value: "noauto", Source: "local"}) || p["mounted"].Value != "no" {
				t.Fatalf("received replica %+v, want readonly=on, canmount=noauto (local), unmounted", p)
			}

			// Freeze the old source, twice (idempotent).
			origin := "dst:" + dst
			for range 2 {
				must(t, replicate.Freeze(ctx, b.sz, src, origin))
			}
			// zfs-fuse reports a mounted filesystem's readonly=on as "off,
			// temporary": the write refused below is the proof.
			p = props(t, b.sz, src, "readonly", replicate.ReplicaOfProp)
			if p[replicate.ReplicaOfProp] != (zfsexec.Property{Value: origin, Source: "local"}) ||
				p["readonly"] != (zfsexec.Property{Value: "on", Source: "local"}) && p["readonly"].Source != "temporary" {
				t.Fatalf("frozen source %+v", p)
			}
			if err := b.src.Runner().Run(ctx, zfsexec.Command{Argv: []string{"touch", mountpoint(t, b.src, src) + "/late"}}); err == nil {
				t.Fatal("a frozen source accepted a write")
			}

			newest := list(t, b.dz, dst).Newest(false)
			for _, step := range steps[:crashAfter] {
				must(t, step(b.dz, dst))
			}
			for run := range 2 {
				rp, err := replicate.MakeWritable(ctx, b.dz, dst)
				must(t, err)
				if rp.Snapshot != newest.Name || rp.GUID != newest.GUID || !rp.Time.Equal(newest.Creation) || rp.DiscardedPartial != "" {
					t.Errorf("run %d: recovery point %+v, want %s (guid %d, %v), nothing discarded", run, rp, newest.Name, newest.GUID, newest.Creation)
				}
				p = props(t, b.dz, dst, "readonly", "canmount", "mounted", replicate.ReplicaOfProp)
				if p["readonly"].Value != "off" || p["canmount"].Value != "on" || p["mounted"].Value != "yes" ||
					p[replicate.ReplicaOfProp].IsSet() {
					t.Errorf("run %d: promoted replica %+v, want readonly=off, canmount=on, mounted, no %s", run, p, replicate.ReplicaOfProp)
				}
			}
			if got := readFile(t, b.dst, dst, "f"); got != "base data of "+src {
				t.Errorf("promoted replica f = %q", got)
			}
			writeFile(t, b.dst, dst, "new", "written on the new source")
			if got := readFile(t, b.dst, dst, "new"); got != "written on the new source" {
				t.Errorf("write on the promoted replica read back %q", got)
			}
		})
	}
}

// TestMakeWritable_RefusesForeign: a filesystem without z8r's replica
// mark set locally (a foreign read-only dataset, one whose mark is only
// inherited) is refused with *NotReplicaError, a marked one without
// snapshots with ErrNothingToPromote; none of them is changed.
func TestMakeWritable_RefusesForeign(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	create(t, b.dz, "tank/marked-parent/child")
	must(t, b.dz.Snapshot(ctx, "tank/marked-parent/child@s1", nil))
	must(t, b.dz.Set(ctx, "tank/marked-parent", map[string]string{replicate.ReplicaOfProp: "src:tank/x"}))
	create(t, b.dz, "tank/foreign")
	must(t, b.dz.Snapshot(ctx, "tank/foreign@s1", nil))
	create(t, b.dz, "tank/empty-replica")
	cases := []struct {
		name, fs string
		setup    map[string]string
		want     error
	}{
		{"foreign read-only", "tank/foreign", map[string]string{"readonly": "on"}, replicate.ErrNotReplica},
		{"foreign, canmount=noauto", "tank/foreign", map[string]string{"canmount": "noauto"}, replicate.ErrNotReplica},
		{"mark inherited", "tank/marked-parent/child", map[string]string{"readonly": "on"}, replicate.ErrNotReplica},
		{"replica without snapshots", "tank/empty-replica", map[string]string{"readonly": "on", replicate.ReplicaOfProp: "src:tank/y"}, replicate.ErrNothingToPromote},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			must(t, b.dz.Set(ctx, c.fs, c.setup))
			all := []string{"readonly", "canmount", "mounted", replicate.ReplicaOfProp}
			before := props(t, b.dz, c.fs, all...)
			_, err := replicate.MakeWritable(ctx, b.dz, c.fs)
			if !errors.Is(err, c.want) {
				t.Fatalf("MakeWritable = %v, want %v", err, c.want)
			}
			var nr *replicate.NotReplicaError
			if errors.Is(c.want, replicate.ErrNotReplica) && (!errors.As(err, &nr) || nr.Dataset != c.fs) {
				t.Errorf("error %v is not a *NotReplicaError for %s", err, c.fs)
			}
			if after := props(t, b.dz, c.fs, all...); !maps.Equal(before, after) {
				t.Errorf("properties changed: %+v -> %+v", before, after)
			}
		})
	}
}

// TestCommonBase_TailAfterBase: the base is the newest snapshot of the
// old source the new source has (by GUID), the tail the old source's
// snapshots after it; datasets without a common snapshot are
// plan.ErrNoCommonSnapshot.
func TestCommonBase_TailAfterBase(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	src, dst := "tank/cb", "tank/cb-replica"
	tgt := b.replicated(t, src, dst)
	b.snapshot(t, src, "p1")
	_, err := replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
	must(t, err)
	s2 := list(t, b.sz, src).Newest(false)
	must(t, b.sz.Snapshot(ctx, src+"@manual", nil))
	s4 := b.snapshot(t, src, "p1")

	base, tail, err := replicate.CommonBase(ctx, b.sz, src, b.dz, dst)
	must(t, err)
	if base.Name != s2.Name || base.GUID != s2.GUID {
		t.Errorf("base %s (%d), want %s (%d)", base.Name, base.GUID, s2.Name, s2.GUID)
	}
	var names []string
	for _, d := range tail {
		names = append(names, d.ShortName())
	}
	if want := []string{"manual", s4}; !slices.Equal(names, want) {
		t.Errorf("tail %v, want %v", names, want)
	}
	create(t, b.dz, "tank/unrelated")
	must(t, b.dz.Snapshot(ctx, "tank/unrelated@s1", nil))
	if _, _, err := replicate.CommonBase(ctx, b.sz, src, b.dz, "tank/unrelated"); !errors.Is(err, plan.ErrNoCommonSnapshot) {
		t.Errorf("CommonBase with an unrelated dataset = %v, want ErrNoCommonSnapshot", err)
	}
}

// tailScenario is an unplanned failover on the bed: old (on src) was
// replicated to replica (on dst) up to base; replica was promoted and
// moved on (a file, a snapshot next); old, unreachable meanwhile, kept
// its own tail; old is back and frozen.
type tailScenario struct {
	old, replica, origin string
	base                 zfsexec.Dataset
	next                 string            // replica's snapshot after base
	files                map[string]string // old's files at the end, with content
	tailSnaps            []string          // old's snapshots after base
	guids                map[uint64]string // every snapshot GUID of old
}

func (b *bed) tailScenario(t *testing.T, name string, tailSnapshot bool) *tailScenario {
	t.Helper()
	ctx := context.Background()
	s := &tailScenario{old: "tank/" + name, replica: "tank/" + name + "-replica", files: map[string]string{}}
	s.origin = "dst:" + s.replica
	b.replicated(t, s.old, s.replica)
	s.files["f"] = "base data of " + s.old
	// The failover: the replica is promoted and written.
	_, err := replicate.MakeWritable(ctx, b.dz, s.replica)
	must(t, err)
	writeFile(t, b.dst, s.replica, "after-failover", "written on the new source")
	// The old source's tail: writes (and a snapshot) after the base.
	writeFile(t, b.src, s.old, "t1", strings.Repeat("tail one ", 1000))
	s.files["t1"] = strings.Repeat("tail one ", 1000)
	if tailSnapshot {
		s.tailSnaps = append(s.tailSnaps, b.snapshot(t, s.old, "p1"))
		// A transfer that was in flight: its step hold stays on the
		// tail snapshot.
		must(t, b.sz.Hold(ctx, snapname.StepHoldTag("dst-tank-"+name+"-replica"), s.old+"@"+s.tailSnaps[0]))
	}
	writeFile(t, b.src, s.old, "t2", "unsnapshotted tail")
	s.files["t2"] = "unsnapshotted tail"
	writeFile(t, b.src, s.old, "f", "overwritten after the base")
	s.files["f"] = "overwritten after the base"
	b.clock = b.clock.Add(time.Hour)
	s.next, err = replicate.TakeSnapshot(ctx, b.dz, s.replica, "z8r", "p1", b.clock)
	must(t, err)

	must(t, replicate.Freeze(ctx, b.sz, s.old, s.origin))
	var tail []zfsexec.Dataset
	s.base, tail, err = replicate.CommonBase(ctx, b.sz, s.old, b.dz, s.replica)
	must(t, err)
	if len(tail) != len(s.tailSnaps) {
		t.Fatalf("tail %v, want %v", tail, s.tailSnaps)
	}
	s.guids = map[uint64]string{}
	for _, d := range list(t, b.sz, s.old).Snapshots {
		s.guids[d.GUID] = d.Name
	}
	return s
}

// check verifies the state after PreserveTail: aside holds every tail
// snapshot and file; old is an unmodified copy of base, marked, that
// takes the new source's incremental without -F and then has base's data
// plus the new source's; no snapshot GUID was lost.
func (s *tailScenario) check(t *testing.T, b *bed, aside string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	if want := snapname.TailName(s.old, at); aside != want {
		t.Fatalf("aside = %q, want %q", aside, want)
	}
	tailSnap := snapname.TailSnapshotName(at)
	asideList := list(t, b.sz, aside)
	if got, want := shortNames(asideList), append(slices.Clone(s.tailSnaps), tailSnap); !slices.Equal(got, want) {
		t.Errorf("aside snapshots %v, want %v", got, want)
	}
	for _, d := range asideList.Snapshots {
		if d.ShortName() == tailSnap && (len(d.LocalProps) != 0 || d.UserRefs != 0) {
			t.Errorf("tail snapshot %s has marks %v or holds %d", d.Name, d.LocalProps, d.UserRefs)
		}
	}
	if len(s.tailSnaps) > 0 {
		if !hasTag(t, b.sz, snapname.StepHoldTag("dst-tank-"+strings.TrimPrefix(s.old, "tank/")+"-replica"), aside+"@"+s.tailSnaps[0]) {
			t.Errorf("the step hold did not stay on %s@%s", aside, s.tailSnaps[0])
		}
		h, err := replicate.HoldTags(ctx, b.sz, aside)
		must(t, err)
		if h.Unknown[s.tailSnaps[0]] != 1 {
			t.Errorf("HoldTags(aside) = %+v, want %s held once", h, s.tailSnaps[0])
		}
	}
	oldList := list(t, b.sz, s.old)
	if got, want := shortNames(oldList), []string{s.base.ShortName()}; !slices.Equal(got, want) {
		t.Errorf("old snapshots %v, want %v", got, want)
	}
	if !hasTag(t, b.sz, snapname.HoldTag("dst-tank-"+strings.TrimPrefix(s.old, "tank/")+"-replica"), s.base.Name) {
		t.Errorf("the base hold did not stay on %s", s.base.Name)
	}
	p := props(t, b.sz, s.old, "readonly", "canmount", "mounted", "origin", replicate.ReplicaOfProp)
	if p["readonly"].Value != "on" || p["canmount"].Value != "noauto" || p["mounted"].Value != "no" || p["origin"].Value != "-" ||
		p[replicate.ReplicaOfProp] != (zfsexec.Property{Value: s.origin, Source: "local"}) {
		t.Errorf("old after PreserveTail %+v", p)
	}
	if o := props(t, b.sz, aside, "origin")["origin"].Value; o != s.base.Name {
		t.Errorf("aside origin %s, want %s", o, s.base.Name)
	}
	// Nothing destroyed: every GUID old had is in old or aside.
	after := map[uint64]bool{}
	for _, d := range append(oldList.Snapshots, asideList.Snapshots...) {
		after[d.GUID] = true
	}
	for g, n := range s.guids {
		if !after[g] {
			t.Errorf("snapshot %s (guid %d) is gone", n, g)
		}
	}
	if len(after) != len(s.guids)+1 {
		t.Errorf("%d snapshots after, want the %d before and the tail snapshot", len(after), len(s.guids))
	}
	// The reverse replication: incremental, no -F.
	_, err := zfsexec.Pipe(ctx, b.dz, zfsexec.SendOptions{Snapshot: s.replica + "@" + s.next, From: "@" + s.base.ShortName()}, b.sz,
		zfsexec.RecvOptions{Target: s.old, Unmounted: true, Incremental: true, BaseGUID: s.base.GUID})
	if err != nil {
		t.Fatalf("incremental from the new source into old: %v", err)
	}
	if got := readFile(t, b.src, s.old, "f"); got != "base data of "+s.old {
		t.Errorf("old f = %q, want the base's", got)
	}
	if got := readFile(t, b.src, s.old, "after-failover"); got != "written on the new source" {
		t.Errorf("old after-failover = %q", got)
	}
	for f, want := range s.files {
		if got := readFile(t, b.src, aside, f); sum(got) != sum(want) {
			t.Errorf("aside %s: checksum differs (%d bytes, want %d)", f, len(got), len(want))
		}
	}
}

// TestPreserveTail_KeepsEverything (issue 16): an old source with tail
// snapshots and writes, or with writes only, is moved aside whole under
// snapname.TailName; the old name becomes a read-only copy of the common
// base that takes the new source's incremental without -F; nothing is
// destroyed; holds stay on the snapshots they protect; a second call
// changes nothing.
func TestPreserveTail_KeepsEverything(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	for _, c := range []struct {
		name         string
		tailSnapshot bool
	}{{"tail-snapshots-and-writes", true}, {"writes-only", false}} {
		t.Run(c.name, func(t *testing.T) {
			s := b.tailScenario(t, strings.ReplaceAll(c.name, "-", ""), c.tailSnapshot)
			at := b.clock.Add(time.Minute)
			if kept, err := replicate.TailKept(ctx, b.sz, s.old, snapname.TailName(s.old, at)); err != nil || kept {
				t.Fatalf("TailKept before PreserveTail = %v, %v", kept, err)
			}
			aside, err := replicate.PreserveTail(ctx, b.sz, s.old, s.base.Name, s.origin, at)
			must(t, err)
			if kept, err := replicate.TailKept(ctx, b.sz, s.old, aside); err != nil || !kept {
				t.Fatalf("TailKept after PreserveTail = %v, %v", kept, err)
			}
			again, err := replicate.PreserveTail(ctx, b.sz, s.old, s.base.ShortName(), s.origin, at.Add(time.Hour))
			if err != nil || again != aside {
				t.Fatalf("second PreserveTail = %q, %v, want %q", again, err, aside)
			}
			s.check(t, b, aside, at)
		})
	}
}

// TestPreserveTail_CrashAfterEachStep: PreserveTail's steps run by hand
// up to each point, as a run killed there leaves them; PreserveTail,
// called with another time, recognises the state and finishes with the
// same result as an uninterrupted run.
func TestPreserveTail_CrashAfterEachStep(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	type step func(t *testing.T, s *tailScenario, at time.Time)
	aside := func(s *tailScenario, at time.Time) string { return snapname.TailName(s.old, at) }
	steps := []struct {
		name string
		do   step
	}{
		{"snapshot", func(t *testing.T, s *tailScenario, at time.Time) {
			must(t, b.sz.Snapshot(ctx, s.old+"@"+snapname.TailSnapshotName(at), nil))
		}},
		{"rename", func(t *testing.T, s *tailScenario, at time.Time) {
			must(t, b.sz.Unmount(ctx, s.old))
			var err error
			for range 50 { // zfs-fuse: busy for a moment after the unmount
				if err = b.sz.Rename(ctx, s.old, aside(s, at)); !errors.Is(err, zfsexec.ErrDatasetBusy) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			must(t, err)
		}},
		{"clone", func(t *testing.T, s *tailScenario, at time.Time) {
			must(t, b.sz.Clone(ctx, aside(s, at)+"@"+s.base.ShortName(), s.old,
				map[string]string{"readonly": "on", "canmount": "noauto", replicate.ReplicaOfProp: s.origin}))
		}},
		{"promote", func(t *testing.T, s *tailScenario, at time.Time) {
			must(t, b.sz.Promote(ctx, s.old))
		}},
	}
	for n := 1; n <= len(steps); n++ {
		t.Run("after-"+steps[n-1].name, func(t *testing.T) {
			s := b.tailScenario(t, fmt.Sprint("crash", n), true)
			at := b.clock.Add(time.Minute)
			for _, st := range steps[:n] {
				st.do(t, s, at)
			}
			got, err := replicate.PreserveTail(ctx, b.sz, s.old, s.base.Name, s.origin, at.Add(3*time.Hour))
			must(t, err)
			s.check(t, b, got, at)
		})
	}
}

// TestPreserveTail_RefusesUnexpectedState: PreserveTail on a source that
// was not frozen, with a base it lacks, or with the dataset gone and no
// tail beside it, fails with a typed error and changes nothing.
func TestPreserveTail_RefusesUnexpectedState(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	create(t, b.sz, "tank/unfrozen")
	must(t, b.sz.Snapshot(ctx, "tank/unfrozen@s1", nil))
	create(t, b.sz, "tank/frozen")
	must(t, b.sz.Snapshot(ctx, "tank/frozen@s1", nil))
	must(t, replicate.Freeze(ctx, b.sz, "tank/frozen", "dst:tank/x"))
	at := b.clock
	cases := []struct {
		name, fs, base string
		want           error
	}{
		{"not frozen", "tank/unfrozen", "s1", replicate.ErrNotReplica},
		{"base missing", "tank/frozen", "nope", replicate.ErrTailState},
		{"dataset gone, no tail", "tank/gone", "s1", replicate.ErrTailState},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := b.sz.List(ctx, "tank", zfsexec.ListOptions{Depth: -1})
			must(t, err)
			_, err = replicate.PreserveTail(ctx, b.sz, c.fs, c.base, "dst:tank/x", at)
			if !errors.Is(err, c.want) {
				t.Fatalf("PreserveTail = %v, want %v", err, c.want)
			}
			after, err := b.sz.List(ctx, "tank", zfsexec.ListOptions{Depth: -1})
			must(t, err)
			names := func(ds []zfsexec.Dataset) (out []string) {
				for _, d := range ds {
					out = append(out, d.Name)
				}
				return out
			}
			if !slices.Equal(names(before), names(after)) {
				t.Errorf("datasets changed: %v -> %v", names(before), names(after))
			}
		})
	}
}

// TestPromote_OpenZFS_UnplannedRoundTrip (real OpenZFS 2.3 in a guest):
// a replica with an interrupted resumable receive is promoted at its
// newest snapshot, the partial receive discarded and reported; the old
// source's tail (a snapshot the replica never got, and a write) is
// preserved aside, OpenZFS leaving the clone unmounted, and the old
// source then takes the new source's incremental without -F. Source and
// replica are two datasets of the guest's pool.
func TestPromote_OpenZFS_UnplannedRoundTrip(t *testing.T) {
	ctx := context.Background()
	g := ozguest.Boot(t, ozguest.Options{})
	z := zfsexec.New(g.Runner())
	must(t, g.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zpool", "create", "-f", "tank", g.Disk(0)}}))
	src := endpoint{z: z, peers: map[string]*zfsexec.ZFS{"self": z}}
	tgt := replicate.Target{ID: "self-tank-replica", PolicyID: "p1", Origin: "self:tank/data",
		Endpoint: endpoint{z: z}, Addr: "self", Dataset: "tank/replica"}
	must(t, z.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}))
	clock := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	snap := func(fs string) string {
		clock = clock.Add(time.Hour)
		name, err := replicate.TakeSnapshot(ctx, z, fs, "z8r", "p1", clock)
		must(t, err)
		return name
	}
	file := func(fs, name string) string {
		p := props(t, z, fs, "mountpoint", "mounted")
		if p["mounted"].Value != "yes" {
			must(t, z.Mount(ctx, fs))
		}
		return p["mountpoint"].Value + "/" + name
	}
	write := func(fs, name, data string) {
		must(t, g.Runner().Run(ctx, zfsexec.Command{Argv: []string{"dd", "of=" + file(fs, name), "status=none"}, Stdin: strings.NewReader(data)}))
	}
	read := func(fs, name string) string {
		var out bytes.Buffer
		must(t, g.Runner().Run(ctx, zfsexec.Command{Argv: []string{"cat", file(fs, name)}, Stdout: &out}))
		return out.String()
	}

	write("tank/data", "f", "base data")
	s1 := snap("tank/data")
	_, err := replicate.SyncTarget(ctx, src, "tank/data", tgt, replicate.Options{})
	must(t, err)
	p := props(t, z, "tank/replica", "readonly", "canmount", "mounted")
	if p["readonly"].Value != "on" || p["canmount"] != (zfsexec.Property{Value: "noauto", Source: "local"}) || p["mounted"].Value != "no" {
		t.Fatalf("received replica %+v, want readonly=on, canmount=noauto, unmounted", p)
	}
	// The next incremental is cut halfway: partial state on the replica.
	big := strings.Repeat("tail block ", 50000)
	write("tank/data", "big", big)
	s2 := snap("tank/data")
	var stream bytes.Buffer
	must(t, z.Send(ctx, zfsexec.SendOptions{Snapshot: "tank/data@" + s2, From: "@" + s1}, &stream))
	err = z.Recv(ctx, zfsexec.RecvOptions{Target: "tank/replica", Unmounted: true, Resumable: true, Incremental: true},
		bytes.NewReader(stream.Bytes()[:stream.Len()/2]))
	if err == nil {
		t.Fatal("a truncated stream was received")
	}
	if tok, err := z.ResumeToken(ctx, "tank/replica"); err != nil || tok == "" {
		t.Fatalf("no partial receive (token %q, %v)", tok, err)
	}

	// Unplanned failover: the replica is promoted.
	rp, err := replicate.MakeWritable(ctx, z, "tank/replica")
	must(t, err)
	if rp.Snapshot != "tank/replica@"+s1 || rp.DiscardedPartial != "tank/data@"+s2 {
		t.Errorf("recovery point %+v, want tank/replica@%s, discarded tank/data@%s", rp, s1, s2)
	}
	p = props(t, z, "tank/replica", "readonly", "canmount", "mounted", "receive_resume_token", replicate.ReplicaOfProp)
	if p["readonly"].Value != "off" || p["canmount"].Value != "on" || p["mounted"].Value != "yes" ||
		p["receive_resume_token"].Value != "-" || p[replicate.ReplicaOfProp].IsSet() {
		t.Errorf("promoted replica %+v", p)
	}
	write("tank/replica", "new", "written on the new source")
	next := snap("tank/replica")

	// The old source returns with its tail (s2 and a write), is frozen,
	// and its tail preserved.
	write("tank/data", "late", "written after s2")
	origin := "self:tank/replica"
	must(t, replicate.Freeze(ctx, z, "tank/data", origin))
	base, tail, err := replicate.CommonBase(ctx, z, "tank/data", z, "tank/replica")
	must(t, err)
	if base.ShortName() != s1 || len(tail) != 1 || tail[0].ShortName() != s2 {
		t.Fatalf("base %s, tail %v; want %s, [%s]", base.Name, tail, s1, s2)
	}
	at := clock.Add(time.Minute)
	aside, err := replicate.PreserveTail(ctx, z, "tank/data", base.Name, origin, at)
	must(t, err)
	if aside != snapname.TailName("tank/data", at) {
		t.Errorf("aside %s", aside)
	}
	p = props(t, z, "tank/data", "readonly", "canmount", "mounted", "origin", replicate.ReplicaOfProp)
	if p["readonly"].Value != "on" || p["canmount"].Value != "noauto" || p["mounted"].Value != "no" || p["origin"].Value != "-" ||
		p[replicate.ReplicaOfProp].Value != origin {
		t.Errorf("old source after PreserveTail %+v", p)
	}
	if o := props(t, z, aside, "origin")["origin"].Value; o != base.Name {
		t.Errorf("aside origin %s, want %s", o, base.Name)
	}
	_, err = zfsexec.Pipe(ctx, z, zfsexec.SendOptions{Snapshot: "tank/replica@" + next, From: "@" + s1}, z,
		zfsexec.RecvOptions{Target: "tank/data", Unmounted: true, Incremental: true, BaseGUID: base.GUID})
	if err != nil {
		t.Fatalf("incremental from the new source into the old: %v", err)
	}
	for _, c := range []struct{ fs, name, want string }{
		{"tank/data", "f", "base data"}, {"tank/data", "new", "written on the new source"},
		{aside, "big", big}, {aside, "late", "written after s2"},
	} {
		if got := read(c.fs, c.name); sum(got) != sum(c.want) {
			t.Errorf("%s %s: %d bytes, checksum differs from the %d expected", c.fs, c.name, len(got), len(c.want))
		}
	}
}
