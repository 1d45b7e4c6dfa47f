//go:build e2e

package e2e

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_BandwidthLimitHolds: a 256 MiB full sync of a
// replication with spec.bandwidthLimit 8Mi runs at 8 MiB/s within ±10%,
// measured from the sync's bytes and duration in status (the source agent
// paces the stream; the sync's other steps take well under a second).
func TestReplication_BandwidthLimitHolds(t *testing.T) {
	q := resource.MustParse("8Mi")
	limitedSync(t, 256<<20, 8<<20, &q, nil)
}

// TestReplication_NodeBandwidthLimitHolds: the source agent's own
// --bandwidth-limit (8Mi) paces a replication that sets none: a 128 MiB
// full sync at 8 MiB/s within ±10%.
func TestReplication_NodeBandwidthLimitHolds(t *testing.T) {
	limitedSync(t, 128<<20, 8<<20, nil, []string{"--bandwidth-limit", "8Mi"})
}

// limitedSync replicates size random bytes from n1 to n2 with the given
// replication limit and n1 agent flags, and checks the rate is within 10%
// of limit.
func limitedSync(t *testing.T, size, limit int, q *resource.Quantity, agentArgs []string) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "n1", PoolSize: "768M", AgentArgs: agentArgs}, {Name: "n2", PoolSize: "768M"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const fs = "tank/bw"
	sum := mkdata(t, n1, fs, "big", size)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "bw"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "24h", BandwidthLimit: q,
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	dr := waitFor(t, c, name, "the limited full sync", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced && target(dr, "n2").LastSyncDuration != nil
	})
	ts := target(dr, "n2")
	if ts.LastSyncBytes < int64(size) {
		t.Fatalf("synced %d bytes, want at least %d", ts.LastSyncBytes, size)
	}
	got := float64(ts.LastSyncBytes) / ts.LastSyncDuration.Seconds()
	t.Logf("%d bytes in %s: %.2f MiB/s (limit %.0f MiB/s)", ts.LastSyncBytes, ts.LastSyncDuration.Duration, got/(1<<20), float64(limit)/(1<<20))
	if got > float64(limit)*1.10 || got < float64(limit)*0.90 {
		t.Errorf("rate %.2f MiB/s is not within 10%% of the %d MiB/s limit", got/(1<<20), limit>>20)
	}
	if readReplica(t, n2, fs, "big") != sum {
		t.Error("the replica's data differs")
	}
}
