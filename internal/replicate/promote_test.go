package replicate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// Unit tests of the promotion operations on fakezfs nodes (both
// flavours): the OpenZFS-only parts (a partial receive, bookmarks) and
// what must run no command at all. promote_platform_test.go runs them on
// real zfs-fuse.

func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakePair is an old source and a replica on two fake nodes, synced once.
type fakePair struct {
	src, dst *fakezfs.Node
	sz, dz   *zfsexec.ZFS
	ep       fakeEndpoint
	tgt      replicate.Target
	clock    time.Time
}

func newFakePair(t *testing.T, impl zfsexec.Implementation) *fakePair {
	t.Helper()
	ctx := context.Background()
	p := &fakePair{src: fakezfs.New("src", fakezfs.Options{Implementation: impl}), dst: fakezfs.New("dst", fakezfs.Options{Implementation: impl}),
		clock: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}
	p.sz, p.dz = p.src.ZFS(), p.dst.ZFS()
	p.ep = fakeEndpoint{z: p.sz, peers: map[string]*zfsexec.ZFS{"dst": p.dz}}
	p.tgt = replicate.Target{ID: "dst-tank-replica", PolicyID: "p1", Origin: "src:tank/data",
		Endpoint: fakeEndpoint{z: p.dz}, Addr: "dst", Dataset: "tank/replica"}
	fatalIf(t, p.sz.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}))
	fatalIf(t, p.src.Write("tank/data", "f", []byte("base")))
	p.snapshot(t)
	_, err := replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
	fatalIf(t, err)
	return p
}

func (p *fakePair) snapshot(t *testing.T) string {
	t.Helper()
	p.clock = p.clock.Add(time.Hour)
	name, err := replicate.TakeSnapshot(context.Background(), p.sz, "tank/data", "z8r", "p1", p.clock)
	fatalIf(t, err)
	return name
}

// TestMakeWritable_DiscardsPartialReceive: on OpenZFS a replica with an
// interrupted resumable receive is promoted at its newest snapshot; the
// recovery point names what the partial receive was bringing; the
// partial state is aborted before anything else, and the mark goes last.
// A second run changes nothing.
func TestMakeWritable_DiscardsPartialReceive(t *testing.T) {
	ctx := context.Background()
	p := newFakePair(t, zfsexec.ImplOpenZFS)
	first, err := p.dz.Snapshots(ctx, "tank/replica")
	fatalIf(t, err)
	fatalIf(t, p.src.Write("tank/data", "big", make([]byte, 1<<20)))
	next := p.snapshot(t)
	p.src.CutNth(fakezfs.Prefix("zfs", "send"), 1, 64<<10, nil)
	if _, err := replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{}); err == nil {
		t.Fatal("the cut transfer succeeded")
	}
	if tok, err := p.dz.ResumeToken(ctx, "tank/replica"); err != nil || tok == "" {
		t.Fatalf("no partial receive to discard (token %q, %v)", tok, err)
	}

	mark := len(p.dst.Commands())
	rp, err := replicate.MakeWritable(ctx, p.dz, "tank/replica")
	fatalIf(t, err)
	if rp.Snapshot != first[0].Name || rp.GUID != first[0].GUID || !rp.Time.Equal(first[0].Creation) || rp.DiscardedPartial != "tank/data@"+next {
		t.Errorf("recovery point %+v, want %s and discarded tank/data@%s", rp, first[0].Name, next)
	}
	var order []string
	for _, argv := range p.dst.Commands()[mark:] {
		if argv[1] != "get" && argv[1] != "version" {
			order = append(order, strings.Join(argv, " "))
		}
	}
	want := []string{"zfs recv -A tank/replica", "zfs set readonly=off tank/replica", "zfs set canmount=on tank/replica",
		"zfs mount tank/replica", "zfs inherit " + replicate.ReplicaOfProp + " tank/replica"}
	if !slices.Equal(order, want) {
		t.Errorf("commands %q, want %q", order, want)
	}
	if tok, err := p.dz.ResumeToken(ctx, "tank/replica"); err != nil || tok != "" {
		t.Errorf("token after promotion %q, %v", tok, err)
	}
	props, err := p.dz.Get(ctx, "tank/replica", "readonly", "canmount", "mounted", replicate.ReplicaOfProp)
	fatalIf(t, err)
	if props["readonly"].Value != "off" || props["canmount"].Value != "on" || props["mounted"].Value != "yes" || props[replicate.ReplicaOfProp].IsSet() {
		t.Errorf("promoted replica %+v", props)
	}

	mark = len(p.dst.Commands())
	again, err := replicate.MakeWritable(ctx, p.dz, "tank/replica")
	fatalIf(t, err)
	for _, argv := range p.dst.Commands()[mark:] {
		if argv[1] != "get" {
			t.Errorf("a second MakeWritable ran %q", argv)
		}
	}
	if again.Snapshot != rp.Snapshot || again.DiscardedPartial != "" {
		t.Errorf("second recovery point %+v", again)
	}
}

// TestCommonBase_BookmarkOnNewSource: where the new source keeps only a
// bookmark of the newest common snapshot (OpenZFS), that snapshot is the
// base: the new source can send incrementally from the bookmark.
func TestCommonBase_BookmarkOnNewSource(t *testing.T) {
	ctx := context.Background()
	p := newFakePair(t, zfsexec.ImplOpenZFS)
	second := p.snapshot(t)
	_, err := replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
	fatalIf(t, err)
	third := p.snapshot(t)
	// The replica keeps only a bookmark of second.
	fatalIf(t, p.dz.Bookmark(ctx, "tank/replica@"+second, "tank/replica#keep"))
	fatalIf(t, p.dz.Release(ctx, snapname.ReplicaHoldTag(p.tgt.ID), "tank/replica@"+second))
	fatalIf(t, p.dz.Destroy(ctx, "tank/replica@"+second, zfsexec.DestroyOptions{}))

	base, tail, err := replicate.CommonBase(ctx, p.sz, "tank/data", p.dz, "tank/replica")
	fatalIf(t, err)
	if base.Name != "tank/data@"+second || !base.IsSnapshot() {
		t.Errorf("base %s (%s), want the snapshot tank/data@%s", base.Name, base.Type, second)
	}
	if len(tail) != 1 || tail[0].ShortName() != third {
		t.Errorf("tail %v, want [%s]", tail, third)
	}
}

// TestCommonBase_NoCommonSnapshot: unrelated datasets have no base.
func TestCommonBase_NoCommonSnapshot(t *testing.T) {
	ctx := context.Background()
	p := newFakePair(t, zfsexec.ImplZFSFuse)
	fatalIf(t, p.dz.CreateFilesystem(ctx, "tank/other", zfsexec.CreateOptions{}))
	fatalIf(t, p.dz.Snapshot(ctx, "tank/other@s", nil))
	if _, _, err := replicate.CommonBase(ctx, p.sz, "tank/data", p.dz, "tank/other"); !errors.Is(err, plan.ErrNoCommonSnapshot) {
		t.Errorf("CommonBase = %v, want ErrNoCommonSnapshot", err)
	}
}

// TestPreserveTail_FakeBothFlavours: the whole PreserveTail on each
// flavour (OpenZFS does not mount the clone, zfs-fuse does): the tail
// snapshot and the write stay in the aside dataset, the old name ends at
// the base, read-only, unmounted and marked, and takes the new source's
// incremental without -F.
func TestPreserveTail_FakeBothFlavours(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			p := newFakePair(t, impl)
			_, err := replicate.MakeWritable(ctx, p.dz, "tank/replica")
			fatalIf(t, err)
			fatalIf(t, p.src.Write("tank/data", "tail", []byte("only on the old source")))
			tailSnap := p.snapshot(t)
			fatalIf(t, p.src.Write("tank/data", "late", []byte("written after its last snapshot")))
			fatalIf(t, p.dst.Write("tank/replica", "new", []byte("on the new source")))
			fatalIf(t, p.dz.Snapshot(ctx, "tank/replica@next", nil))

			origin := "dst:tank/replica"
			fatalIf(t, replicate.Freeze(ctx, p.sz, "tank/data", origin))
			base, tail, err := replicate.CommonBase(ctx, p.sz, "tank/data", p.dz, "tank/replica")
			fatalIf(t, err)
			if len(tail) != 1 || tail[0].ShortName() != tailSnap {
				t.Fatalf("tail %v, want [%s]", tail, tailSnap)
			}
			at := p.clock.Add(time.Minute)
			aside, err := replicate.PreserveTail(ctx, p.sz, "tank/data", base.ShortName(), origin, at)
			fatalIf(t, err)
			if aside != snapname.TailName("tank/data", at) {
				t.Errorf("aside %s", aside)
			}
			names := func(fs string) (out []string) {
				l, err := replicate.List(ctx, p.sz, fs)
				fatalIf(t, err)
				for _, d := range l.Snapshots {
					if d.IsSnapshot() {
						out = append(out, d.ShortName())
					}
				}
				return out
			}
			if got, want := names(aside), []string{tailSnap, snapname.TailSnapshotName(at)}; !slices.Equal(got, want) {
				t.Errorf("aside snapshots %v, want %v", got, want)
			}
			if got, want := names("tank/data"), []string{base.ShortName()}; !slices.Equal(got, want) {
				t.Errorf("old snapshots %v, want %v", got, want)
			}
			props, err := p.sz.Get(ctx, "tank/data", "readonly", "canmount", "mounted", replicate.ReplicaOfProp)
			fatalIf(t, err)
			if props["readonly"].Value != "on" || props["canmount"].Value != "noauto" || props["mounted"].Value != "no" ||
				props[replicate.ReplicaOfProp] != (zfsexec.Property{Value: origin, Source: "local"}) {
				t.Errorf("old after PreserveTail %+v", props)
			}
			_, err = zfsexec.Pipe(ctx, p.dz, zfsexec.SendOptions{Snapshot: "tank/replica@next", From: "@" + base.ShortName()}, p.sz,
				zfsexec.RecvOptions{Target: "tank/data", Unmounted: true, Incremental: true, BaseGUID: base.GUID})
			if err != nil {
				t.Errorf("incremental into the old source: %v", err)
			}
		})
	}
}

// TestPromote_BadArgumentsRunNothing: arguments that cannot be right are
// refused before any command runs.
func TestPromote_BadArgumentsRunNothing(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 15, 4, 5, 0, time.UTC)
	cases := []struct {
		name string
		call func(z *zfsexec.ZFS) error
	}{
		{"PreserveTail without origin", func(z *zfsexec.ZFS) error {
			_, err := replicate.PreserveTail(ctx, z, "tank/data", "s1", "", at)
			return err
		}},
		{"PreserveTail with another dataset's base", func(z *zfsexec.ZFS) error {
			_, err := replicate.PreserveTail(ctx, z, "tank/data", "tank/other@s1", "dst:tank/r", at)
			return err
		}},
		{"PreserveTail of a pool root", func(z *zfsexec.ZFS) error {
			_, err := replicate.PreserveTail(ctx, z, "tank", "s1", "dst:tank/r", at)
			return err
		}},
		{"PreserveTail with a bad base name", func(z *zfsexec.ZFS) error {
			_, err := replicate.PreserveTail(ctx, z, "tank/data", "s 1", "dst:tank/r", at)
			return err
		}},
		{"Freeze without origin", func(z *zfsexec.ZFS) error { return replicate.Freeze(ctx, z, "tank/data", "") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := fakezfs.New("n", fakezfs.Options{})
			if err := c.call(n.ZFS()); err == nil {
				t.Fatal("accepted")
			}
			if cmds := n.Commands(); len(cmds) != 0 {
				t.Errorf("ran %q", cmds)
			}
		})
	}
}

// TestNotReplicaError_Is: the typed refusal matches ErrNotReplica and
// names the dataset.
func TestNotReplicaError_Is(t *testing.T) {
	var err error = &replicate.NotReplicaError{Dataset: "tank/x", Reason: "no mark"}
	if !errors.Is(err, replicate.ErrNotReplica) || errors.Is(err, replicate.ErrNothingToPromote) {
		t.Errorf("errors.Is mismatch for %v", err)
	}
	if !strings.Contains(err.Error(), "tank/x") || !strings.Contains(err.Error(), "no mark") {
		t.Errorf("message %q", err.Error())
	}
}

// TestSyncTarget_ReplicaIsCanmountNoauto: a first (full) receive leaves the
// replica readonly=on and canmount=noauto, set locally, so that a reboot
// or `zfs mount -a` does not mount it; OpenZFS gets both with the receive
// (recv -o), zfs-fuse right after it.
func TestSyncTarget_ReplicaIsCanmountNoauto(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			p := newFakePair(t, impl)
			props, err := p.dz.Get(context.Background(), "tank/replica", "readonly", "canmount", "mounted")
			fatalIf(t, err)
			if props["readonly"] != (zfsexec.Property{Value: "on", Source: "local"}) ||
				props["canmount"] != (zfsexec.Property{Value: "noauto", Source: "local"}) || props["mounted"].Value != "no" {
				t.Errorf("replica %+v, want readonly=on and canmount=noauto set locally, unmounted", props)
			}
			var recv []string
			for _, argv := range p.dst.Commands() {
				if argv[1] == "recv" {
					recv = argv
				}
			}
			withO := slices.Contains(recv, "canmount=noauto")
			if want := impl == zfsexec.ImplOpenZFS; withO != want {
				t.Errorf("receive %q: -o canmount=noauto given = %v, want %v", recv, withO, want)
			}
		})
	}
}

// TestSyncTarget_RepairReleasesAReplicaHoldLeftBehind: a controller killed
// after the replica hold went on the newest received snapshot but before
// it left the previous one (found by the chaos suite) leaves the tag on
// both; the next sync releases it from the older one and keeps it on the
// newest, and runs no release at all in the steady state.
func TestSyncTarget_RepairReleasesAReplicaHoldLeftBehind(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			p := newFakePair(t, impl)
			first, err := replicate.List(ctx, p.dz, "tank/replica")
			fatalIf(t, err)
			old := first.Newest(false).Name
			p.snapshot(t)
			_, err = replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
			fatalIf(t, err)
			// The crash: the tag back on the previous snapshot.
			tag := snapname.ReplicaHoldTag(p.tgt.ID)
			fatalIf(t, p.dz.Hold(ctx, tag, old))

			_, err = replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
			fatalIf(t, err)
			l, err := replicate.List(ctx, p.dz, "tank/replica")
			fatalIf(t, err)
			for _, d := range l.Snapshots {
				want := uint64(0)
				if d.Name == l.Newest(false).Name {
					want = 1
				}
				if d.UserRefs != want {
					t.Errorf("%s has %d hold(s), want %d", d.Name, d.UserRefs, want)
				}
			}
			// Steady state: another sync releases nothing on the target.
			before := len(p.dst.Commands())
			_, err = replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
			fatalIf(t, err)
			for _, argv := range p.dst.Commands()[before:] {
				if argv[1] == "release" {
					t.Errorf("steady state ran %q", argv)
				}
			}
		})
	}
}
