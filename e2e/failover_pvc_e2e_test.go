//go:build e2e

package e2e

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestFailover_PVCReplicationPromotedAndHandedOver: a PVC on n1 (a local
// PV) replicated to n2 by its annotations is switched over to n2 as
// `kubectl z8r promote` does it: the PVC's annotations neither undo nor
// delete the promotion; once it completed the replication is handed over
// (no longer the PVC's, a ReplicationHandedOver Event, the PVC's problem
// saying so), n2 is writable with everything written on n1 before the
// switchover, n1 is read-only and receives from n2; deleting the PVC then
// leaves the replication alone.
func TestFailover_PVCReplicationPromotedAndHandedOver(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const fs = "tank/app"
	first := mkdata(t, n1, fs, "first", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	ns := labelledNamespace(t, c, "app", map[string]string{"team": "app"})
	scopePolicy(t, c, "team-app", metav1.LabelSelector{MatchLabels: map[string]string{"team": "app"}}, "n2:tank")
	mp := propOf(t, n1, fs, "mountpoint")
	pvc := bindPVC(t, c, ns, "data", kubeenv.LocalPV("pv-app", "n1", mp, "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2", z8rv1.AnnotationSchedule: "1h"})
	name := controllers.PVCReplicationName(ns, "data")
	waitFor(t, c, name, "the PVC's replication synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced && target(dr, "n2").LastSnapshot != ""
	})
	second := writeFile(t, n1, fs, "second", 256<<10) // after the last sync: the final snapshot carries it

	promoteTo(t, c, name, "n2", false)
	dr := waitFor(t, c, name, "the switchover", 2*time.Minute, promoted("n2"))
	if dr.Status.Promotion.Kind != z8rv1.PromotionPlanned {
		t.Errorf("promotion %+v, want a planned switchover", dr.Status.Promotion)
	}
	dr = waitFor(t, c, name, "the replication handed over", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Annotations["z8r.dev/handed-over-from"] == ns+"/data" && dr.Labels[z8rv1.LabelManagedBy] == ""
	})
	if dr.Spec.Source.Node != "n2" || len(dr.Spec.Targets) != 1 || dr.Spec.Targets[0].Node != "n1" {
		t.Errorf("handed-over spec %+v, want the promotion's: n2 -> n1", dr.Spec)
	}
	if p, ok := problemSays(t, c, pvc, "handed over"); !ok {
		t.Errorf("PVC problem %q, want it to say the replication was handed over", p)
	}
	if ev := eventsOf(t, c, "data"); !hasEvent(ev, z8rv1.EventReplicationHandedOver) {
		t.Errorf("no %s Event on the PVC: %v", z8rv1.EventReplicationHandedOver, ev)
	}
	if ro := propOf(t, n2, fs, "readonly"); ro != "off" {
		t.Errorf("promoted n2:%s readonly=%s, want off", fs, ro)
	}
	if ro := propOf(t, n1, fs, "readonly"); ro != "on" {
		t.Errorf("old source n1:%s readonly=%s, want on", fs, ro)
	}
	for file, sum := range map[string][32]byte{"first": first, "second": second} {
		if readFile(t, n2, fs, file) != sum {
			t.Errorf("n2:%s/%s differs from what n1 had before the switchover", fs, file)
		}
	}
	// The new direction works: n1 receives from n2.
	third := writeFile(t, n2, fs, "third", 128<<10)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Replication(ctx, name)
		if err != nil {
			return err
		}
		cur.Spec.Trigger = &z8rv1.ReplicationTrigger{Manual: "after-switchover"}
		return c.Kube.Client.Update(ctx, cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, name, "n1 synced from n2", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n1")
		return dr.Status.LastManualSync == "after-switchover" && ts.State == z8rv1.TargetSynced && ts.LastSyncKind == "incremental"
	})
	if readReplica(t, n1, fs, "third") != third {
		t.Error("n1 does not have what was written on n2 after the switchover")
	}
	// The PVC goes; the replication of the promoted copy stays.
	deleteObj(t, c, pvc)
	time.Sleep(3 * time.Second)
	if _, err := c.Replication(ctx, name); err != nil {
		t.Errorf("the handed-over replication after the PVC was deleted: %v", err)
	}
}
