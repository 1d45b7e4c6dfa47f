//go:build e2e

package e2e

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_SourceAgentRestartResumesAtOnce: a replication whose
// source agent is down waits with its 30 s retry (the down node is not
// hammered); when the agent comes back, its Z8RNode's startedAt changes and
// the replication is reconciled and synced at once, well before that retry
// would have come round.
func TestReplication_SourceAgentRestartResumesAtOnce(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1 := c.Nodes["n1"]
	const fs = "tank/back"
	mkdata(t, n1, fs, "a", 256<<10)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "back"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "1h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	dr := waitFor(t, c, name, "the first sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	first := target(dr, "n2").LastSnapshot

	// The source's agent goes away; a snapshot falls due meanwhile.
	c.Agents["n1"].Stop()
	nextPeriod(t, c, clock, name, time.Hour+time.Minute)
	waitFor(t, c, name, "the source reported unavailable", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		for _, cond := range dr.Status.Conditions {
			if cond.Type == z8rv1.ConditionReady && cond.Reason == z8rv1.ReasonSourceUnavailable {
				return true
			}
		}
		return false
	})

	restarted := time.Now()
	if err := c.Agents["n1"].Start(); err != nil {
		t.Fatal(err)
	}
	// No sync request: only the Z8RNode's change may wake the replication.
	dr = waitFor(t, c, name, "the sync after the agent came back", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		tn := target(dr, "n2")
		return tn.State == z8rv1.TargetSynced && tn.LastSnapshot != first
	})
	took := time.Since(restarted)
	t.Logf("agent restart to Synced: %s", took.Round(100*time.Millisecond))
	// The retry of an unavailable source is 30 s; resuming must not wait
	// for it (the bound leaves room for a loaded machine).
	if took >= 20*time.Second {
		t.Errorf("agent restart to Synced took %s: the controller waited for its retry instead of the agent's return", took)
	}
}
