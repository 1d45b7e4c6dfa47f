package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/snapname"
)

// TestFinalize_SourceNodeGoneReportsLeakedHolds (issue 15 case 7): when
// the source's Z8RNode is gone, deleting the replication cannot release
// its holds; it must not leak them silently: a HoldsLeaked Warning names
// every tag (spec and status targets), and the object goes.
func TestFinalize_SourceNodeGoneReportsLeakedHolds(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dr := &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Finalizers: []string{finalizerReleaseHolds}, DeletionTimestamp: &now},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "gone", Dataset: "tank/a"},
			Targets: []z8rv1.ReplicationTarget{{Node: "n2"}}},
		Status: z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{
			{Node: "n2", Dataset: "tank/a"}, {Node: "n3", Dataset: "tank/a", RemovedAt: &now}}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(dr).WithStatusSubresource(dr).Build()
	rec := events.NewFakeRecorder(10)
	r := &DatasetReplicationReconciler{Client: c, Recorder: rec, Agents: &AgentPool{Client: c}, Clock: clocktest.New(now.Time)}
	var cur z8rv1.DatasetReplication
	if err := c.Get(context.Background(), client.ObjectKey{Name: "r"}, &cur); err != nil {
		t.Fatal(err)
	}
	if _, err := r.finalize(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(rec.Events) > 0 {
		got = append(got, <-rec.Events)
	}
	var leak string
	for _, e := range got {
		if strings.Contains(e, z8rv1.EventHoldsLeaked) {
			leak = e
		}
	}
	for _, node := range []string{"n2", "n3"} {
		if tag := snapname.HoldTag(policy.ID(node, "tank/a")); !strings.Contains(leak, tag) {
			t.Errorf("HoldsLeaked event %q does not name %s (events %v)", leak, tag, got)
		}
	}
	if err := c.Get(context.Background(), client.ObjectKey{Name: "r"}, &cur); err == nil && len(cur.Finalizers) > 0 {
		t.Errorf("finalizer kept: %v", cur.Finalizers)
	}
}
