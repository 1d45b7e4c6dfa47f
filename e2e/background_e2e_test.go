//go:build e2e

package e2e

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_LongTransferFreesItsWorker (issue 14, transfers out of
// the reconcile loop): with a single DatasetReplication worker, a long
// paced first sync goes on in the background, so a second replication
// created while it runs syncs before the first one ends. Before, the
// first sync held the only worker to its end. The long one then ends
// Synced with one full transfer and the same data.
func TestReplication_LongTransferFreesItsWorker(t *testing.T) {
	c := cluster.Start(t, cluster.Options{ReplicationWorkers: 1, Nodes: []cluster.NodeSpec{
		{Name: "n1", PoolSize: "512M"}, {Name: "n2", PoolSize: "512M"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const size = 96 << 20 // at 8 MiB/s: 12 s
	longSum := mkdata(t, n1, "tank/long", "big", size)
	shortSum := mkdata(t, n1, "tank/short", "small", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	limit := resource.MustParse("8Mi")
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "long"}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/long"}, Schedule: "24h", BandwidthLimit: &limit,
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	waitFor(t, c, "long", "the long sync transferring", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n2")
		return ts.State == z8rv1.TargetSyncing && ts.Transfer != nil && ts.Transfer.BytesDone > 0
	})
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "short"}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/short"}, Schedule: "24h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	waitFor(t, c, "short", "the short sync done", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	long, err := c.Replication(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	if ts := target(long, "n2"); ts.State != z8rv1.TargetSyncing {
		t.Fatalf("when the short sync ended the long one was %s (%+v), want still Syncing: the short one waited for it", ts.State, ts)
	} else {
		t.Logf("short synced while the long sync had moved %d of %d bytes", ts.Transfer.BytesDone, ts.Transfer.BytesExpected)
	}

	dr := waitFor(t, c, "long", "the long sync done", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	if ts := target(dr, "n2"); ts.LastSyncKind != "full" || ts.LastSyncBytes < size || ts.Transfer != nil {
		t.Errorf("long: %+v, want one full sync of at least %d bytes and no transfer left in status", ts, size)
	}
	if _, recvs := maxConcurrent(t, c.Agents["n2"].LogPath, "zfs", "recv"); recvs != 2 {
		t.Errorf("n2 ran %d receives, want 2 (one per replication: nothing restarted)", recvs)
	}
	if readReplica(t, n2, "tank/long", "big") != longSum || readReplica(t, n2, "tank/short", "small") != shortSum {
		t.Error("a replica's data differs from its source")
	}
}
