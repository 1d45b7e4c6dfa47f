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
