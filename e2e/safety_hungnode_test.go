//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestSafety_HungNodeDoesNotStallOthers is issue 13's item 6 ("a hung or
// hostile node stalls everyone"): node n3's agent is frozen (SIGSTOP: the
// kernel still accepts its TCP connections, nothing answers) while six
// replications target it, more than the controller has workers. A
// replication between n1 and n2 must keep completing new snapshots
// meanwhile; n3's replications fail as unreachable; once n3 is thawed,
// they catch up.
func TestSafety_HungNodeDoesNotStallOthers(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}})
	n1 := c.Nodes["n1"]
	hung := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	mkdata(t, n1, "tank/ok", "payload", 64<<10)
	for _, h := range hung {
		mkdata(t, n1, "tank/"+h, "payload", 64<<10)
	}
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	mk := func(name, node string) {
		c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
			Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/" + name}, Schedule: "1h", Targets: []z8rv1.ReplicationTarget{{Node: node}},
		}})
	}
	mk("ok", "n2")
	for _, h := range hung {
		mk(h, "n3")
	}
	synced := func(node string) func(*z8rv1.DatasetReplication) bool {
		return func(dr *z8rv1.DatasetReplication) bool { return target(dr, node).State == z8rv1.TargetSynced }
	}
	waitFor(t, c, "ok", "ok's first sync", 2*time.Minute, synced("n2"))
	for _, h := range hung {
		waitFor(t, c, h, h+"'s first sync", 2*time.Minute, synced("n3"))
	}

	pid := c.Agents["n3"].PID()
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze n3's agent: %v", err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(-pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)

	// Three scheduled periods while n3 hangs: each time every replication
	// is due, n3's six keep the workers busy if anything can, and ok must
	// still land its new snapshot on n2.
	const perRound = 45 * time.Second
	for round := 1; round <= 3; round++ {
		prev := target(mustReplication(t, c, "ok"), "n2").LastSnapshot
		start := time.Now()
		clock.Advance(time.Hour)
		for _, h := range hung {
			requestSync(t, c, h)
		}
		requestSync(t, c, "ok")
		waitFor(t, c, "ok", fmt.Sprintf("ok's round %d while n3 hangs", round), perRound, func(dr *z8rv1.DatasetReplication) bool {
			ts := target(dr, "n2")
			return ts.State == z8rv1.TargetSynced && ts.LastSnapshot != "" && ts.LastSnapshot != prev
		})
		t.Logf("round %d: ok synced a new snapshot to n2 in %s while n3 hangs", round, time.Since(start).Round(100*time.Millisecond))
	}
	failing := 0
	for _, h := range hung {
		ts := target(mustReplication(t, c, h), "n3")
		if ts.ConsecutiveFailures > 0 && strings.Contains(ts.LastError, "unreachable") {
			failing++
		}
	}
	if failing == 0 {
		t.Errorf("no replication to the frozen n3 reports it unreachable: the test did not hang anything")
	}

	// Thawed, n3's replications catch up.
	thaw()
	clock.Advance(time.Hour)
	for _, h := range hung {
		requestSync(t, c, h)
	}
	for _, h := range hung {
		waitFor(t, c, h, h+" catching up after n3 thawed", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
			ts := target(dr, "n3")
			return ts.State == z8rv1.TargetSynced && ts.ConsecutiveFailures == 0 && ts.LastSnapshot == dr.Status.LastSnapshot
		})
	}
}
