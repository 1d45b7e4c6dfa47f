//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestNodePools_OneAgentConfigTwoLayouts (issue 12, one DaemonSet for
// nodes whose pools differ): both agents run with the same --pools tank,
// the DaemonSet's default; n2 keeps its replicas on an HDD pool "backup",
// which an administrator names in n2's Z8RNode spec.pools. The agent on n2
// takes it up without a restart (status.pools [backup], poolsFrom spec),
// a replication into n2:backup syncs, and one into n2:tank is refused by
// n2's agent: nothing of it is on n2.
func TestNodePools_OneAgentConfigTwoLayouts(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "n1"},
		{Name: "n2", Pools: []string{"tank", "backup"}, AgentArgs: []string{"--pools", "tank"}},
	}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	sum := mkdata(t, n1, "tank/src", "payload", 1<<20)
	mkdata(t, n1, "tank/other", "payload", 64<<10)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	zn := znode(t, c, "n2")
	if !slices.Equal(zn.Status.Pools, []string{"tank"}) || zn.Status.PoolsFrom != "agent" {
		t.Fatalf("n2 before: pools %v from %q, want the agent's [tank]", zn.Status.Pools, zn.Status.PoolsFrom)
	}
	patch := client.MergeFrom(zn.DeepCopy())
	zn.Spec.Pools = []string{"backup"}
	if err := c.Kube.Client.Patch(ctx, zn, patch); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		zn = znode(t, c, "n2")
		return slices.Equal(zn.Status.Pools, []string{"backup"}) && zn.Status.PoolsFrom == "spec" && zn.Status.Ready, nil
	})
	if err != nil {
		t.Fatalf("n2 did not take up spec.pools: status %+v", zn.Status)
	}

	for _, r := range []struct{ name, src, dst string }{{"to-backup", "tank/src", "backup/src"}, {"to-tank", "tank/other", "tank/other"}} {
		c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: r.name}, Spec: z8rv1.DatasetReplicationSpec{
			Source: z8rv1.DatasetRef{Node: "n1", Dataset: r.src}, Schedule: "1h",
			Targets: []z8rv1.ReplicationTarget{{Node: "n2", Dataset: r.dst}},
		}})
	}
	waitFor(t, c, "to-backup", "synced into n2's backup pool", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	if readReplica(t, n2, "backup/src", "payload") != sum {
		t.Error("n2:backup/src differs from the source")
	}
	dr := waitFor(t, c, "to-tank", "refused by n2's agent", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n2")
		return ts.State == z8rv1.TargetFailed && strings.Contains(ts.LastError, "outside the pools")
	})
	t.Logf("into n2:tank: %s", target(dr, "n2").LastError)
	if ok, err := n2.ZFS().Exists(ctx, "tank/other"); err != nil || ok {
		t.Errorf("n2:tank/other exists (%v, %v): the refused replication wrote there", ok, err)
	}
}

func znode(t *testing.T, c *cluster.Cluster, name string) *z8rv1.Z8RNode {
	t.Helper()
	var zn z8rv1.Z8RNode
	if err := c.Kube.Client.Get(context.Background(), client.ObjectKey{Name: name}, &zn); err != nil {
		t.Fatal(err)
	}
	return &zn
}
