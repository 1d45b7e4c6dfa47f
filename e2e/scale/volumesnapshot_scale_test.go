//go:build scale

package scale

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/zfsexec"
)

var (
	vsCount = flag.Int("scale.snapshots", 1000, "VolumeSnapshots to create")
	vsRate  = flag.Float64("scale.snapshot-rate", 5, "VolumeSnapshots created per second")
	vsPVCs  = flag.Int("scale.pvcs-per-node", 4, "zfs.z8r.dev PVCs per node the VolumeSnapshots are spread over")
)

// TestScale_VolumeSnapshots: -scale.snapshots (1,000) VolumeSnapshots of
// zfs.z8r.dev PVCs on three nodes, created at -scale.snapshot-rate per
// second, through the real snapshot-controller and z8r's controller as its
// own process. Each one's time from create to readyToUse=true (seen by a
// watch) is recorded: p50, p99, max; and the controller's memory.
func TestScale_VolumeSnapshots(t *testing.T) {
	nodes := []string{srcNode, tgtA, tgtB}
	var specs []cluster.NodeSpec
	for _, n := range nodes {
		specs = append(specs, cluster.NodeSpec{Name: n, PoolSize: "1G"})
	}
	c := cluster.Start(t, cluster.Options{Nodes: specs, SnapshotController: true})
	cp, err := c.StartControllerProcess(cluster.ProcessOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitExec(t, cp.PID())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	if err := c.WaitZ8RNodesReady(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	ns := c.Kube.CreateNamespace(t, "scale")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	var pvcs []string
	for _, n := range nodes {
		for i := range *vsPVCs {
			// Volume handles (the dataset) are unique across nodes.
			ds := fmt.Sprintf("tank/%s-vol%d", n, i)
			if err := c.Nodes[n].ZFS().CreateFilesystem(ctx, ds, zfsexec.CreateOptions{Parents: true}); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s-vol%d", n, i)
			pv := kubeenv.Z8rPV("pv-"+name, n, ds, "1Gi")
			c.Kube.CreateBound(t, pv, kubeenv.PVCFor(pv, ns, name))
			pvcs = append(pvcs, name)
		}
	}

	// Ready times from a watch, re-opened if the API server closes it.
	var mu sync.Mutex
	ready := map[string]time.Time{}
	failed := map[string]string{}
	wc, err := client.NewWithWatch(c.Kube.Config, client.Options{Scheme: c.Kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watching := make(chan struct{})
	go func() {
		once := sync.Once{}
		for wctx.Err() == nil {
			w, err := wc.Watch(wctx, &snapshotv1.VolumeSnapshotList{}, client.InNamespace(ns))
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			once.Do(func() { close(watching) })
			for ev := range w.ResultChan() {
				vs, ok := ev.Object.(*snapshotv1.VolumeSnapshot)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				now := time.Now()
				mu.Lock()
				if _, seen := ready[vs.Name]; !seen && vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
					ready[vs.Name] = now
				}
				if vs.Status != nil && vs.Status.Error != nil && vs.Status.Error.Message != nil {
					failed[vs.Name] = *vs.Status.Error.Message
				}
				mu.Unlock()
			}
			w.Stop()
		}
	}()
	<-watching

	sctx, stopSampling := context.WithCancel(ctx)
	peak := rssSampler(sctx, cp.PID())
	n := *vsCount
	created := make(map[string]time.Time, n)
	interval := time.Duration(float64(time.Second) / *vsRate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		name := fmt.Sprintf("snap-%04d", i)
		vs := kubeenv.VolumeSnapshot(ns, name, "z8r", pvcs[i%len(pvcs)])
		at := time.Now()
		if err := c.Kube.Client.Create(ctx, vs); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		created[name] = at
	}
	createdIn := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		mu.Lock()
		got := len(ready)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("%d of %d VolumeSnapshots ready after 10 min; errors: %v", len(ready), n, failed)
		}
		time.Sleep(200 * time.Millisecond)
	}
	total := time.Since(start)
	stopSampling()
	p := <-peak
	stopWatch()

	lat := make([]time.Duration, 0, n)
	mu.Lock()
	for name, at := range created {
		lat = append(lat, ready[name].Sub(at))
	}
	nFailed := len(failed)
	mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99, maxL := percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
	t.Logf("RESULT %d VolumeSnapshots of %d PVCs on %d nodes, created at %.1f/s (in %s), all ready after %s: create → readyToUse p50 %s, p90 %s, p99 %s, max %s; %d reported an error on the way",
		n, len(pvcs), len(nodes), *vsRate, createdIn.Round(time.Millisecond), total.Round(time.Millisecond),
		p50.Round(time.Millisecond), percentile(lat, 90).Round(time.Millisecond), p99.Round(time.Millisecond), maxL.Round(time.Millisecond), nFailed)
	t.Logf("RESULT controller process memory with %d VolumeSnapshots: peak VmRSS sampled %d KiB (%.1f MiB), VmHWM %d KiB (%.1f MiB)",
		n, p.RSS, float64(p.RSS)/1024, p.HWM, float64(p.HWM)/1024)
	if p99 >= maxVSReadyP99 {
		miss(t, "VolumeSnapshot create → readyToUse p99 %s at %d, want < 1s", p99.Round(time.Millisecond), n)
	}
	if p.HWM > maxRSSKiB {
		miss(t, "controller VmHWM %.1f MiB, want ≤ 100 MiB", float64(p.HWM)/1024)
	}
	if cp.Exited() {
		t.Errorf("controller process exited: %s", cp.LogTail(30))
	}
}
