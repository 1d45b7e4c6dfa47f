//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestSafety_UnreachableTargetDoesNotCancelOtherTransfers is issue 15's
// case 6. Two replications from n1: "far" to n2, which n1 cannot reach
// (a prohibit route in n1's network; the controller still reaches n2), and
// "big" to n3, a full send of a few hundred MiB. While big's transfer runs,
// far is synced again and again; each attempt fails because the source
// agent reports n2 unreachable. Only a connection that failed is dropped:
// the controller's connection to n1 stays, so big's transfer is never
// cancelled and succeeds on its first attempt. (Before, each failure of
// far closed the shared connection to n1 and cancelled big's transfer.)
func TestSafety_UnreachableTargetDoesNotCancelOtherTransfers(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}})
	n1 := c.Nodes["n1"]
	mkdata(t, n1, "tank/far", "payload", 64<<10)
	mkdata(t, n1, "tank/big", "payload", 160<<20)
	writeFile(t, n1, "tank/big", "payload2", 160<<20)
	if out, err := exec.Command("ip", "netns", "exec", c.Net.NS("n1"), "ip", "route", "add", "prohibit", c.Net.Addr("n2")+"/32").CombinedOutput(); err != nil {
		t.Fatalf("partition n1 from n2: %v: %s", err, out)
	}
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	mk := func(name, dataset, node string) {
		c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
			Source: z8rv1.DatasetRef{Node: "n1", Dataset: dataset}, Schedule: "1h", Targets: []z8rv1.ReplicationTarget{{Node: node}},
		}})
	}
	mk("far", "tank/far", "n2")
	waitFor(t, c, "far", "far's first failure", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").ConsecutiveFailures > 0
	})
	if e := target(mustReplication(t, c, "far"), "n2").LastError; !strings.Contains(e, "unreachable") {
		t.Fatalf("far failed with %q; want the source reporting n2 unreachable", e)
	}

	mk("big", "tank/big", "n3")
	// Keep far failing while big transfers.
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			requestSync(t, c, "far")
			n++
		}
	}()
	var big *z8rv1.DatasetReplication
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		dr, err := c.Replication(ctx, "big")
		if err != nil {
			return false, nil
		}
		big = dr
		ts := target(dr, "n3")
		return ts.State == z8rv1.TargetSynced || ts.ConsecutiveFailures > 0, nil
	})
	close(stop)
	pokes := <-done
	if err != nil {
		t.Fatalf("waiting for big: %v: %+v", err, statusOf(big))
	}
	farFailures := target(mustReplication(t, c, "far"), "n2").ConsecutiveFailures
	ts := target(big, "n3")
	if ts.State != z8rv1.TargetSynced || ts.ConsecutiveFailures != 0 || ts.LastSyncKind != "full" {
		ev, _ := c.Events(ctx, "big")
		t.Fatalf("big: state %s, failures %d, error %q; want Synced on the first attempt\nevents: %v", ts.State, ts.ConsecutiveFailures, ts.LastError, ev)
	}
	if ev, _ := c.Events(ctx, "big"); hasEvent(ev, z8rv1.EventReplicationFailed) {
		t.Errorf("big had a failed attempt: %v", ev)
	}
	t.Logf("big: %d bytes in %s while far was asked to sync %d times (%d failures in all)", ts.LastSyncBytes, ts.LastSyncDuration.Duration, pokes, farFailures)
	if farFailures < 3 {
		t.Errorf("far failed only %d times: the test did not overlap far's failures with big's transfer", farFailures)
	}
}

func mustReplication(t *testing.T, c *cluster.Cluster, name string) *z8rv1.DatasetReplication {
	t.Helper()
	dr, err := c.Replication(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return dr
}
