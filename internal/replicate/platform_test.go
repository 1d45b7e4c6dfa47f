//go:build platform

package replicate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// Platform tests of the replication steps on real zfs-fuse nodes. The
// source "agent" is a small Endpoint that pipes `zfs send` on one node
// into `zfs recv` on another through zfsexec (the real agents are
// exercised by the e2e suites); everything else is the real code.

// endpoint is a node as replicate sees it; Transfer pipes into the peer
// named by the request's TargetAddr.
type endpoint struct {
	z     *zfsexec.ZFS
	peers map[string]*zfsexec.ZFS
}

func (e endpoint) ZFS() *zfsexec.ZFS { return e.z }

func (e endpoint) Transfer(ctx context.Context, req agent.TransferRequest, _ func(agent.Progress)) (agent.Result, error) {
	dst := e.peers[req.TargetAddr]
	if dst == nil {
		return agent.Result{}, fmt.Errorf("test endpoint: no peer %q", req.TargetAddr)
	}
	n, err := zfsexec.Pipe(ctx, e.z, req.Send, dst, req.Recv)
	return agent.Result{Bytes: n}, err
}

// bed is two zfs-fuse nodes, src and dst, each with a pool tank.
type bed struct {
	src, dst *zfsnodes.Node
	sz, dz   *zfsexec.ZFS
	srcEP    endpoint
	clock    time.Time
}

func newBed(t *testing.T) *bed {
	nodes := zfsnodes.Start(t, zfsnodes.Options{PoolSize: "256M"}, "src", "dst")
	b := &bed{src: nodes[0], dst: nodes[1], sz: nodes[0].ZFS(), dz: nodes[1].ZFS(),
		clock: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}
	b.srcEP = endpoint{z: b.sz, peers: map[string]*zfsexec.ZFS{"dst": b.dz}}
	return b
}

// target is a target on dst for the replication policy of srcDS.
func (b *bed) target(srcDS, dstDS, policy string) replicate.Target {
	return replicate.Target{ID: "dst-" + strings.ReplaceAll(dstDS, "/", "-"), PolicyID: policy, Origin: "src:" + srcDS,
		Endpoint: endpoint{z: b.dz}, Addr: "dst", Dataset: dstDS}
}

// snapshot takes a z8r snapshot of ds for policy, an hour after the last.
func (b *bed) snapshot(t *testing.T, ds, policy string) string {
	t.Helper()
	b.clock = b.clock.Add(time.Hour)
	name, err := replicate.TakeSnapshot(context.Background(), b.sz, ds, "z8r", policy, b.clock)
	must(t, err)
	return name
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, z *zfsexec.ZFS, fs string) {
	t.Helper()
	must(t, z.CreateFilesystem(context.Background(), fs, zfsexec.CreateOptions{Parents: true}))
}

func run(t *testing.T, n *zfsnodes.Node, argv ...string) {
	t.Helper()
	if _, err := n.Exec(context.Background(), argv...); err != nil {
		t.Fatal(err)
	}
}

// mountpoint returns where fs is mounted on n, mounting it if needed.
func mountpoint(t *testing.T, n *zfsnodes.Node, fs string) string {
	t.Helper()
	p, err := n.ZFS().Get(context.Background(), fs, "mountpoint", "mounted")
	must(t, err)
	if p["mounted"].Value != "yes" {
		run(t, n, "zfs", "mount", fs)
	}
	return p["mountpoint"].Value
}

func writeFile(t *testing.T, n *zfsnodes.Node, fs, name, data string) {
	t.Helper()
	must(t, n.Runner().Run(context.Background(), zfsexec.Command{
		Argv: []string{"dd", "of=" + path.Join(mountpoint(t, n, fs), name), "bs=1M", "status=none"}, Stdin: strings.NewReader(data)}))
}

func readFile(t *testing.T, n *zfsnodes.Node, fs, name string) string {
	t.Helper()
	var out bytes.Buffer
	must(t, n.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"cat", path.Join(mountpoint(t, n, fs), name)}, Stdout: &out}))
	return out.String()
}

// hasTag reports whether snap carries tag, without changing anything
// (zfs-fuse cannot list holds: a hold that succeeds is released again).
func hasTag(t *testing.T, z *zfsexec.ZFS, tag, snap string) bool {
	t.Helper()
	ctx := context.Background()
	err := z.Hold(ctx, tag, snap)
	if errors.Is(err, zfsexec.ErrTagExists) {
		return true
	}
	must(t, err)
	must(t, z.Release(ctx, tag, snap))
	return false
}

func list(t *testing.T, z *zfsexec.ZFS, fs string) replicate.Listing {
	t.Helper()
	l, err := replicate.List(context.Background(), z, fs)
	must(t, err)
	return l
}

func shortNames(l replicate.Listing) []string {
	var out []string
	for _, d := range l.Snapshots {
		out = append(out, d.ShortName())
	}
	return out
}

// --- crash-anywhere: a child process runs SyncTarget and is killed at a
// failpoint; the next SyncTarget must finish the step.

const childEnv = "Z8R_REPLICATE_TEST_CHILD"

// childSpec is what the child process syncs.
type childSpec struct {
	SrcPrefix, DstPrefix []string
	SrcDataset           string
	Target               replicate.Target // Endpoint is rebuilt from DstPrefix
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// runChild syncs as the spec says; an armed failpoint kills it midway.
func runChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sz, dz := zfsexec.New(zfsexec.LocalRunner{Prefix: s.SrcPrefix}), zfsexec.New(zfsexec.LocalRunner{Prefix: s.DstPrefix})
	s.Target.Endpoint = endpoint{z: dz}
	_, err := replicate.SyncTarget(context.Background(), endpoint{z: sz, peers: map[string]*zfsexec.ZFS{s.Target.Addr: dz}}, s.SrcDataset, s.Target, replicate.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

// syncAndCrash runs SyncTarget in a child process armed to die at point,
// and fails the test unless it died there.
func (b *bed) syncAndCrash(t *testing.T, srcDS string, tgt replicate.Target, point string) {
	t.Helper()
	tgt.Endpoint = nil
	spec, err := json.Marshal(childSpec{SrcPrefix: b.src.Prefix(), DstPrefix: b.dst.Prefix(), SrcDataset: srcDS, Target: tgt})
	must(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec), failpoint.EnvVar+"="+point)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || !strings.Contains(out.String(), "z8r failpoint: "+point) {
		t.Fatalf("child was not killed at %s: %v\n%s", point, err, out.String())
	}
}

// TestSyncTarget_CrashAnywhereIsRepaired (issue 15 case 3): a sync killed
// at each step failpoint, in a first full send and in an incremental one,
// leaves the target's newest snapshot held on the source, and the next
// SyncTarget finishes the step: no conflict, the target readonly and
// marked as the replica, its newest snapshot owned by the policy and held
// on the target, the base hold on the source moved to it, no step hold
// left anywhere.
func TestSyncTarget_CrashAnywhereIsRepaired(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	points := []string{replicate.FailAfterStepHold, replicate.FailAfterRecv, replicate.FailAfterBaseHold}
	for i, point := range points {
		for _, incremental := range []bool{false, true} {
			name := fmt.Sprintf("%s/incremental=%v", point, incremental)
			t.Run(name, func(t *testing.T) {
				srcDS := fmt.Sprintf("tank/crash%d%v", i, incremental)
				dstDS := "tank/replica/" + path.Base(srcDS)
				create(t, b.sz, srcDS)
				writeFile(t, b.src, srcDS, "a", "first")
				tgt := b.target(srcDS, dstDS, "p1")
				first := b.snapshot(t, srcDS, "p1")
				if incremental {
					if _, err := replicate.SyncTarget(ctx, b.srcEP, srcDS, tgt, replicate.Options{}); err != nil {
						t.Fatal(err)
					}
					writeFile(t, b.src, srcDS, "b", "second")
					first = b.snapshot(t, srcDS, "p1")
				}
				b.syncAndCrash(t, srcDS, tgt, point)

				// Invariant 1 right after the crash: the target's newest
				// snapshot is held on the source.
				if tl := list(t, b.dz, dstDS); tl.Exists {
					n := tl.Newest(false)
					var held bool
					for _, d := range list(t, b.sz, srcDS).Snapshots {
						held = held || (d.GUID == n.GUID && d.UserRefs > 0)
					}
					if !held {
						t.Fatalf("after the crash the target's newest %s is not held on the source", n.Name)
					}
				}

				res, err := replicate.SyncTarget(ctx, b.srcEP, srcDS, tgt, replicate.Options{})
				if err != nil {
					t.Fatalf("sync after the crash: %v", err)
				}
				if res.Newest != first || res.ProtectedBase != first {
					t.Errorf("result %+v, want newest and base %s", res, first)
				}
				// A step whose receive committed is finished, not resent;
				// killed right after the receive, the repair pass did it.
				if received := point != replicate.FailAfterStepHold; received != (len(res.Steps) == 0) ||
					(point == replicate.FailAfterRecv && !slices.Contains(res.Repaired, "replica-hold")) {
					t.Errorf("after %s: steps %+v, repaired %v", point, res.Steps, res.Repaired)
				}
				p, err := b.dz.Get(ctx, dstDS, "readonly", replicate.ReplicaOfProp)
				must(t, err)
				if p["readonly"].Value != "on" || p[replicate.ReplicaOfProp].Value != tgt.Origin || p[replicate.ReplicaOfProp].Source != "local" {
					t.Errorf("target properties %+v", p)
				}
				tl := list(t, b.dz, dstDS)
				newest := tl.Newest(false)
				if newest.ShortName() != first || !snapname.IsOwnedBy(newest.LocalProps, "p1") {
					t.Errorf("target newest %s local props %v, want %s owned by p1", newest.Name, newest.LocalProps, first)
				}
				for _, d := range tl.Snapshots {
					if got, want := hasTag(t, b.dz, snapname.ReplicaHoldTag(tgt.ID), d.Name), d.ShortName() == first; got != want {
						t.Errorf("replica hold on %s = %v, want %v", d.Name, got, want)
					}
				}
				for _, d := range list(t, b.sz, srcDS).Snapshots {
					if got, want := hasTag(t, b.sz, snapname.HoldTag(tgt.ID), d.Name), d.ShortName() == first; got != want {
						t.Errorf("base hold on %s = %v, want %v", d.Name, got, want)
					}
					if hasTag(t, b.sz, snapname.StepHoldTag(tgt.ID), d.Name) {
						t.Errorf("step hold left on %s", d.Name)
					}
				}
				if got := readFile(t, b.dst, dstDS, "a"); got != "first" {
					t.Errorf("replica file a = %q", got)
				}
			})
		}
	}
}

// TestPrune_OwnershipIsLocalAndScoped (issue 15 cases 9 and 5): with
// z8r's marks set on the parent (inherited by every snapshot), pruning
// destroys none of the foreign snapshots, a replication prunes only its
// own snapshots, a sync sends none of the foreign ones, and a target
// snapshot with inherited marks makes the target Diverged, not a
// SourceLost z8r could be tempted to resolve.
func TestPrune_OwnershipIsLocalAndScoped(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	ds := "tank/own"
	create(t, b.sz, ds)
	must(t, b.sz.Set(ctx, ds, snapname.Props("p1")))
	must(t, b.sz.Snapshot(ctx, ds+"@manual-1", nil))
	p1a := b.snapshot(t, ds, "p1")
	p2a := b.snapshot(t, ds, "p2")
	must(t, b.sz.Snapshot(ctx, ds+"@manual-2", nil))
	p1b := b.snapshot(t, ds, "p1")
	p2b := b.snapshot(t, ds, "p2")
	p1c := b.snapshot(t, ds, "p1")
	_ = p1b

	keep1, err := retention.Parse("last=1")
	must(t, err)
	pruned, err := replicate.Prune(ctx, b.sz, ds, "p1", keep1, b.clock, nil)
	must(t, err)
	if strings.Join(pruned, ",") != p1a+","+p1b {
		t.Errorf("p1 pruned %v, want [%s %s]", pruned, p1a, p1b)
	}
	pruned, err = replicate.Prune(ctx, b.sz, ds, "p2", keep1, b.clock, nil)
	must(t, err)
	if strings.Join(pruned, ",") != p2a {
		t.Errorf("p2 pruned %v, want [%s]", pruned, p2a)
	}
	if got, want := strings.Join(shortNames(list(t, b.sz, ds)), ","), strings.Join([]string{"manual-1", "manual-2", p2b, p1c}, ","); got != want {
		t.Errorf("left %s, want %s", got, want)
	}

	// A sync for p1 sends p1's newest only, nothing with inherited marks.
	tgt := b.target(ds, "tank/own-replica", "p1")
	res, err := replicate.SyncTarget(ctx, b.srcEP, ds, tgt, replicate.Options{})
	must(t, err)
	if got := strings.Join(shortNames(list(t, b.dz, tgt.Dataset)), ","); got != p1c || res.Newest != p1c {
		t.Errorf("target has %s (result %s), want only %s", got, res.Newest, p1c)
	}
	// The target inherits z8r's marks and gets a snapshot of its own: that
	// snapshot is someone's history, not z8r's (Diverged, not SourceLost).
	must(t, b.dz.Set(ctx, tgt.Dataset, snapname.Props("p1")))
	must(t, b.dz.Snapshot(ctx, tgt.Dataset+"@operator", nil))
	b.snapshot(t, ds, "p1")
	_, err = replicate.SyncTarget(ctx, b.srcEP, ds, tgt, replicate.Options{})
	if !errors.Is(err, plan.ErrDiverged) || errors.Is(err, plan.ErrSourceLost) {
		t.Fatalf("sync over a target snapshot with inherited marks = %v, want Diverged", err)
	}
	pruned, err = replicate.Prune(ctx, b.dz, tgt.Dataset, "p1", keep1, b.clock.Add(time.Hour), nil)
	must(t, err)
	if len(pruned) != 0 {
		t.Errorf("target prune destroyed %v", pruned)
	}
}

// TestPrune_SkipsCloneOrigin (issue 15 case 10): a snapshot a clone
// depends on cannot be destroyed; Prune skips it and prunes the rest.
func TestPrune_SkipsCloneOrigin(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	ds := "tank/clones"
	create(t, b.sz, ds)
	s1 := b.snapshot(t, ds, "p1")
	s2 := b.snapshot(t, ds, "p1")
	s3 := b.snapshot(t, ds, "p1")
	run(t, b.src, "zfs", "clone", ds+"@"+s1, "tank/clone-of-s1")
	err := b.sz.Destroy(ctx, ds+"@"+s1, zfsexec.DestroyOptions{})
	if !errors.Is(err, zfsexec.ErrHasClones) {
		t.Fatalf("destroying a clone origin = %v, want ErrHasClones", err)
	}
	keep1, err := retention.Parse("last=1")
	must(t, err)
	pruned, err := replicate.Prune(ctx, b.sz, ds, "p1", keep1, b.clock, nil)
	if err != nil {
		t.Fatalf("Prune = %v; a clone origin must not stop pruning", err)
	}
	if strings.Join(pruned, ",") != s2 {
		t.Errorf("pruned %v, want [%s]", pruned, s2)
	}
	if got := strings.Join(shortNames(list(t, b.sz, ds)), ","); got != s1+","+s3 {
		t.Errorf("left %s, want %s,%s", got, s1, s3)
	}
}

// TestSyncSnapshot_NoForcedReceiveUnlessPristine (issue 15 case 2): a
// replica that was promoted (made writable, written, its snapshots
// destroyed) is not overwritten by a full receive allowed "into empty":
// it is moved aside with its data, and the new replica is received beside
// it. A pristine one (never made writable) is replaced in place.
func TestSyncSnapshot_NoForcedReceiveUnlessPristine(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	for _, promoted := range []bool{true, false} {
		t.Run(fmt.Sprint("promoted=", promoted), func(t *testing.T) {
			src := fmt.Sprintf("tank/vs%v", promoted)
			create(t, b.sz, src)
			writeFile(t, b.src, src, "f", "v1")
			must(t, b.sz.Snapshot(ctx, src+"@snapshot-1", nil))
			tgt := b.target(src, "tank/vsr"+path.Base(src), "")
			if _, err := replicate.SyncSnapshot(ctx, b.srcEP, src, "snapshot-1", tgt, replicate.SnapshotOptions{}); err != nil {
				t.Fatal(err)
			}
			// The content goes: its replica snapshot is released and destroyed.
			must(t, b.dz.Release(ctx, snapname.ReplicaHoldTag(tgt.ID), tgt.Dataset+"@snapshot-1"))
			if promoted {
				must(t, b.dz.Set(ctx, tgt.Dataset, map[string]string{"readonly": "off"}))
				writeFile(t, b.dst, tgt.Dataset, "promoted", "written after failover")
			}
			must(t, b.dz.Destroy(ctx, tgt.Dataset+"@snapshot-1", zfsexec.DestroyOptions{}))
			writeFile(t, b.src, src, "f", "v2")
			must(t, b.sz.Snapshot(ctx, src+"@snapshot-2", nil))

			res, err := replicate.SyncSnapshot(ctx, b.srcEP, src, "snapshot-2", tgt, replicate.SnapshotOptions{AllowFullIntoEmpty: true})
			must(t, err)
			if got := strings.Join(shortNames(list(t, b.dz, tgt.Dataset)), ","); got != "snapshot-2" {
				t.Errorf("target snapshots %s, want snapshot-2", got)
			}
			if got := readFile(t, b.dst, tgt.Dataset, "f"); got != "v2" {
				t.Errorf("replica f = %q, want v2", got)
			}
			if !promoted {
				if res.MovedAside != "" {
					t.Errorf("pristine target moved aside to %s", res.MovedAside)
				}
				return
			}
			if ds, _, ok := snapname.ParseDivergedName(res.MovedAside); !ok || ds != tgt.Dataset {
				t.Fatalf("MovedAside = %q, want %s%s<time>", res.MovedAside, tgt.Dataset, snapname.DivergedInfix)
			}
			if got := readFile(t, b.dst, res.MovedAside, "promoted"); got != "written after failover" {
				t.Errorf("moved-aside data = %q", got)
			}
		})
	}
}

// TestSyncTarget_DivergenceNeverDestroys (issue 15 case 4): with
// RollbackDiverged a target that grew (a snapshot of its own, or writes
// without one) is moved aside whole, its unique snapshot and unsnapshotted
// file intact under the documented name, and the source received afresh;
// without it the target is reported and untouched; a source that lost
// history is never resolved.
func TestSyncTarget_DivergenceNeverDestroys(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	cases := []struct {
		name     string
		allow    bool
		grow     func(t *testing.T, src, dst string)
		wantErr  error
		movedSee []string // snapshots expected in the moved-aside dataset
	}{
		{"own snapshot, allowed", true, func(t *testing.T, src, dst string) {
			must(t, b.dz.Set(ctx, dst, map[string]string{"readonly": "off"}))
			writeFile(t, b.dst, dst, "unique", "only here")
			must(t, b.dz.Snapshot(ctx, dst+"@mine", nil))
		}, nil, []string{"mine"}},
		{"written, allowed", true, func(t *testing.T, src, dst string) {
			must(t, b.dz.Set(ctx, dst, map[string]string{"readonly": "off"}))
			writeFile(t, b.dst, dst, "unique", "only here")
		}, nil, nil},
		{"own snapshot, not allowed", false, func(t *testing.T, src, dst string) {
			must(t, b.dz.Set(ctx, dst, map[string]string{"readonly": "off"}))
			writeFile(t, b.dst, dst, "unique", "only here")
			must(t, b.dz.Snapshot(ctx, dst+"@mine", nil))
		}, plan.ErrDiverged, nil},
		{"source lost, allowed", true, func(t *testing.T, src, dst string) {
			// The source loses its newest (an operator's destroy): the
			// target has the only copy.
			l := list(t, b.sz, src)
			n := l.Newest(false)
			for _, tag := range []string{snapname.HoldTag("dst-" + strings.ReplaceAll(dst, "/", "-"))} {
				must(t, b.sz.Release(ctx, tag, n.Name))
			}
			must(t, b.sz.Destroy(ctx, n.Name, zfsexec.DestroyOptions{}))
		}, plan.ErrSourceLost, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := fmt.Sprintf("tank/div%d", i), fmt.Sprintf("tank/divr%d", i)
			create(t, b.sz, src)
			writeFile(t, b.src, src, "f", "v1")
			tgt := b.target(src, dst, "p1")
			tgt.RollbackDiverged = c.allow
			s1 := b.snapshot(t, src, "p1")
			_, err := replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
			must(t, err)
			s2 := b.snapshot(t, src, "p1")
			_, err = replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
			must(t, err)
			before := shortNames(list(t, b.dz, dst))
			c.grow(t, src, dst)
			grown := shortNames(list(t, b.dz, dst))
			s3 := b.snapshot(t, src, "p1")

			res, err := replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("sync = %v, want %v", err, c.wantErr)
				}
				if res.MovedAside != "" {
					t.Errorf("moved aside to %s", res.MovedAside)
				}
				if got := shortNames(list(t, b.dz, dst)); strings.Join(got, ",") != strings.Join(grown, ",") {
					t.Errorf("target snapshots %v, want untouched %v", got, grown)
				}
				return
			}
			must(t, err)
			if ds, _, ok := snapname.ParseDivergedName(res.MovedAside); !ok || ds != dst {
				t.Fatalf("MovedAside = %q", res.MovedAside)
			}
			want := append(append([]string{}, before...), c.movedSee...)
			if got := shortNames(list(t, b.dz, res.MovedAside)); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("moved-aside snapshots %v, want %v", got, want)
			}
			if got := readFile(t, b.dst, res.MovedAside, "unique"); got != "only here" {
				t.Errorf("moved-aside file = %q", got)
			}
			if got := strings.Join(shortNames(list(t, b.dz, dst)), ","); got != s3 || res.Newest != s3 || !res.Full() {
				t.Errorf("new target has %s (result %+v), want a full receive of %s", got, res, s3)
			}
			for _, d := range list(t, b.dz, res.MovedAside).Snapshots {
				if hasTag(t, b.dz, snapname.ReplicaHoldTag(tgt.ID), d.Name) {
					t.Errorf("replica hold left on moved-aside %s", d.Name)
				}
			}
			_, _ = s1, s2
		})
	}
}

// TestSyncTarget_OneHoldPerSideAfterManySteps: after a sync of several
// incremental steps, the source holds only the newest with the base tag
// (no base or step hold left on an intermediate snapshot), the target
// holds only its newest with the replica tag, and HoldTags on zfs-fuse
// reports exactly that one held snapshot (tags unknown: `zfs holds` is
// broken there).
func TestSyncTarget_OneHoldPerSideAfterManySteps(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	src, dst := "tank/steps", "tank/steps-replica"
	create(t, b.sz, src)
	tgt := b.target(src, dst, "p1")
	b.snapshot(t, src, "p1")
	_, err := replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
	must(t, err)
	var last string
	for i := 0; i < 3; i++ {
		writeFile(t, b.src, src, fmt.Sprint("f", i), "data")
		last = b.snapshot(t, src, "p1")
	}
	res, err := replicate.SyncTarget(ctx, b.srcEP, src, tgt, replicate.Options{})
	must(t, err)
	if len(res.Steps) != 3 || res.Newest != last {
		t.Fatalf("result %+v, want 3 steps up to %s", res, last)
	}
	for _, d := range list(t, b.sz, src).Snapshots {
		if got, want := hasTag(t, b.sz, snapname.HoldTag(tgt.ID), d.Name), d.ShortName() == last; got != want {
			t.Errorf("base hold on %s = %v, want %v", d.Name, got, want)
		}
		if hasTag(t, b.sz, snapname.StepHoldTag(tgt.ID), d.Name) {
			t.Errorf("step hold left on %s", d.Name)
		}
	}
	for _, d := range list(t, b.dz, dst).Snapshots {
		if got, want := hasTag(t, b.dz, snapname.ReplicaHoldTag(tgt.ID), d.Name), d.ShortName() == last; got != want {
			t.Errorf("replica hold on %s = %v, want %v", d.Name, got, want)
		}
	}
	h, err := replicate.HoldTags(ctx, b.sz, src)
	must(t, err)
	if len(h.Tags) != 0 || len(h.Unknown) != 1 || h.Unknown[last] != 1 {
		t.Errorf("HoldTags = %+v, want only %s held once, tags unknown", h, last)
	}
}
