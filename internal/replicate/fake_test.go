package replicate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// fakeEndpoint is a fake node as replicate sees it: Transfer pipes into
// the peer named by the request's TargetAddr.
type fakeEndpoint struct {
	z     *zfsexec.ZFS
	peers map[string]*zfsexec.ZFS
}

func (e fakeEndpoint) ZFS() *zfsexec.ZFS { return e.z }

func (e fakeEndpoint) Transfer(ctx context.Context, req agent.TransferRequest, _ func(agent.Progress)) (agent.Result, error) {
	dst := e.peers[req.TargetAddr]
	if dst == nil {
		return agent.Result{}, fmt.Errorf("fake endpoint: no peer %q", req.TargetAddr)
	}
	n, err := zfsexec.Pipe(ctx, e.z, req.Send, dst, req.Recv)
	return agent.Result{Bytes: n}, err
}

// TestSyncTarget_FakeNodes_FullThenIncremental runs a full and then an
// incremental sync between two fake nodes of each flavour, with the real
// replication code: the fake is usable where zfs-fuse nodes were needed.
func TestSyncTarget_FakeNodes_FullThenIncremental(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			src := fakezfs.New("src", fakezfs.Options{Implementation: impl})
			dst := fakezfs.New("dst", fakezfs.Options{Implementation: impl})
			sz, dz := src.ZFS(), dst.ZFS()
			srcEP := fakeEndpoint{z: sz, peers: map[string]*zfsexec.ZFS{"dst": dz}}
			tgt := replicate.Target{ID: "dst-tank-replica", PolicyID: "p1", Origin: "src:tank/data",
				Endpoint: fakeEndpoint{z: dz}, Addr: "dst", Dataset: "tank/replica"}
			if err := sz.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			clock := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
			snapshot := func() string {
				t.Helper()
				clock = clock.Add(time.Hour)
				name, err := replicate.TakeSnapshot(ctx, sz, "tank/data", "z8r", "p1", clock)
				if err != nil {
					t.Fatal(err)
				}
				return name
			}
			if err := src.Write("tank/data", "big", make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			snapshot()
			full, err := replicate.SyncTarget(ctx, srcEP, "tank/data", tgt, replicate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !full.Full() || full.Behind != 0 {
				t.Fatalf("first sync %+v, want a full step and nothing behind", full)
			}
			if err := src.Write("tank/data", "small", []byte("more")); err != nil {
				t.Fatal(err)
			}
			last := snapshot()
			incr, err := replicate.SyncTarget(ctx, srcEP, "tank/data", tgt, replicate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if incr.Full() || len(incr.Steps) != 1 || incr.Newest != last || incr.Bytes() >= full.Bytes()/4 {
				t.Fatalf("second sync %+v (%d bytes, full %d), want one small incremental step to %s", incr, incr.Bytes(), full.Bytes(), last)
			}
			s, err := sz.Snapshots(ctx, "tank/data")
			if err != nil {
				t.Fatal(err)
			}
			d, err := dz.Snapshots(ctx, "tank/replica")
			if err != nil {
				t.Fatal(err)
			}
			var sg, dg []uint64
			for _, x := range s {
				if x.IsSnapshot() {
					sg = append(sg, x.GUID)
				}
			}
			for _, x := range d {
				if x.IsSnapshot() {
					dg = append(dg, x.GUID)
				}
			}
			if fmt.Sprint(sg) != fmt.Sprint(dg) {
				t.Errorf("target snapshot GUIDs %v, source %v", dg, sg)
			}
			p, err := dz.Get(ctx, "tank/replica", "readonly", replicate.ReplicaOfProp)
			if err != nil {
				t.Fatal(err)
			}
			if p["readonly"].Value != "on" || p[replicate.ReplicaOfProp].Value != "src:tank/data" || p[replicate.ReplicaOfProp].Source != "local" {
				t.Errorf("target properties %+v, want readonly=on and %s set locally", p, replicate.ReplicaOfProp)
			}
		})
	}
}

// TestSyncTarget_PlannedEstimatesTheSync: before the first transfer,
// Options.Planned hears the plan's step count and the source's estimate of
// its stream size: every step's where the node has a dry-run send, a full
// first step's where it has not, and 0 (unknown) when an incremental step
// there cannot be estimated.
func TestSyncTarget_PlannedEstimatesTheSync(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			src := fakezfs.New("src", fakezfs.Options{Implementation: impl})
			dst := fakezfs.New("dst", fakezfs.Options{Implementation: impl})
			sz, dz := src.ZFS(), dst.ZFS()
			srcEP := fakeEndpoint{z: sz, peers: map[string]*zfsexec.ZFS{"dst": dz}}
			tgt := replicate.Target{ID: "dst-tank-replica", PolicyID: "p1", Origin: "src:tank/data",
				Endpoint: fakeEndpoint{z: dz}, Addr: "dst", Dataset: "tank/replica"}
			if err := sz.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			clock := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
			snapshot := func(file string, size int) {
				t.Helper()
				if err := src.Write("tank/data", file, make([]byte, size)); err != nil {
					t.Fatal(err)
				}
				clock = clock.Add(time.Hour)
				if _, err := replicate.TakeSnapshot(ctx, sz, "tank/data", "z8r", "p1", clock); err != nil {
					t.Fatal(err)
				}
			}
			type planned struct {
				steps    int
				expected int64
			}
			sync := func() (replicate.Result, []planned) {
				t.Helper()
				var got []planned
				res, err := replicate.SyncTarget(ctx, srcEP, "tank/data", tgt, replicate.Options{
					Planned: func(steps int, expected int64) { got = append(got, planned{steps, expected}) }})
				if err != nil {
					t.Fatal(err)
				}
				return res, got
			}
			snapshot("a", 1<<20)
			full, got := sync()
			if len(got) != 1 || got[0].steps != 1 || got[0].expected < full.Bytes()/2 || got[0].expected > full.Bytes()*2 {
				t.Errorf("full sync of %d bytes: planned %+v, want 1 step estimated near its size", full.Bytes(), got)
			}
			snapshot("b", 64<<10)
			snapshot("c", 64<<10)
			incr, got := sync()
			wantKnown := impl == zfsexec.ImplOpenZFS
			switch {
			case len(got) != 1 || got[0].steps != 2:
				t.Errorf("two incremental steps: planned %+v", got)
			case wantKnown && got[0].expected != incr.Bytes():
				t.Errorf("incremental sync of %d bytes: estimated %d", incr.Bytes(), got[0].expected)
			case !wantKnown && got[0].expected != 0:
				t.Errorf("incrementals without a dry-run send: estimated %d, want 0 (unknown)", got[0].expected)
			}
			if _, got := sync(); len(got) != 0 {
				t.Errorf("a sync with nothing to send planned %+v, want no call", got)
			}
		})
	}
}
