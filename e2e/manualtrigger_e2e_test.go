//go:build e2e

package e2e

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_ManualTrigger: spec.trigger.manual, set to a new value
// between two scheduled snapshots, takes exactly one snapshot and syncs it
// once; status.lastManualSync reports the value; the same value again does
// nothing.
func TestReplication_ManualTrigger(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const fs = "tank/manual"
	mkdata(t, n1, fs, "a", 256<<10)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "manual"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "24h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	dr := waitFor(t, c, name, "the first sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	first := target(dr, "n2").LastSnapshot
	before := len(snapGUIDs(t, n1, fs))
	sumB := writeFile(t, n1, fs, "b", 128<<10)

	clock.Advance(time.Hour) // the schedule is not due
	trigger := func(v string) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var cur z8rv1.DatasetReplication
			if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &cur); err != nil {
				return err
			}
			cur.Spec.Trigger = &z8rv1.ReplicationTrigger{Manual: v}
			return c.Kube.Client.Update(ctx, &cur)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	trigger("2026-11-30T16:00:00Z")
	dr = waitFor(t, c, name, "the manual sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.LastManualSync == "2026-11-30T16:00:00Z"
	})
	manual := dr.Status.ManualSnapshot
	if manual == "" || manual == first || target(dr, "n2").LastSnapshot != manual {
		t.Fatalf("manual snapshot %q (first %q), target has %q", manual, first, target(dr, "n2").LastSnapshot)
	}
	if k := target(dr, "n2").LastSyncKind; k != "incremental" {
		t.Errorf("manual sync kind %q", k)
	}
	if got := len(snapGUIDs(t, n1, fs)); got != before+1 {
		t.Errorf("source has %d snapshots after the trigger, want %d (exactly one new)", got, before+1)
	}
	if g1, g2 := snapGUIDs(t, n1, fs)[manual], snapGUIDs(t, n2, fs)[manual]; g1 == 0 || g1 != g2 {
		t.Errorf("manual snapshot GUID on n1 %d, n2 %d", g1, g2)
	}
	if readReplica(t, n2, fs, "b") != sumB {
		t.Error("the replica lacks the data written before the trigger")
	}
	// The same value again, and another reconcile: nothing new.
	requestSync(t, c, name)
	time.Sleep(3 * time.Second)
	if got := len(snapGUIDs(t, n1, fs)); got != before+1 {
		t.Errorf("after another reconcile the source has %d snapshots, want %d", got, before+1)
	}
}
