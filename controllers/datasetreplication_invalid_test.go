package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
)

// TestReconcile_InvalidTargetRetentionIsReported: a target's own retention
// that does not parse used to switch that target's pruning off without a
// word. Now the spec is refused like an invalid source retention: an
// InvalidReplicationAnnotation Warning naming the field, Ready=False with
// reason InvalidSpec, and no node is asked anything (the pool here has no
// node at all).
func TestReconcile_InvalidTargetRetentionIsReported(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dr := &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Finalizers: []string{finalizerReleaseHolds}},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/a"},
			Targets: []z8rv1.ReplicationTarget{{Node: "n2"}, {Node: "n3", Retention: "7x1d |"}}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(dr).WithStatusSubresource(dr).Build()
	rec := events.NewFakeRecorder(10)
	r := &DatasetReplicationReconciler{Client: c, Recorder: rec, Agents: &AgentPool{Client: c}, Clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Name: "r"}}); err != nil {
		t.Fatal(err)
	}
	var cur z8rv1.DatasetReplication
	if err := c.Get(context.Background(), client.ObjectKey{Name: "r"}, &cur); err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(cur.Status.Conditions, z8rv1.ConditionReady)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != z8rv1.ReasonInvalidSpec || !strings.Contains(cond.Message, "targets[1].retention") {
		t.Errorf("Ready condition %+v, want False/%s naming targets[1].retention", cond, z8rv1.ReasonInvalidSpec)
	}
	found := false
	for len(rec.Events) > 0 {
		e := <-rec.Events
		found = found || strings.Contains(e, z8rv1.EventInvalidAnnotation) && strings.Contains(e, "targets[1].retention")
	}
	if !found {
		t.Errorf("no %s Warning naming targets[1].retention", z8rv1.EventInvalidAnnotation)
	}
	if len(cur.Status.Targets) != 0 || cur.Status.LastSnapshot != "" {
		t.Errorf("something ran for an invalid spec: %+v", cur.Status)
	}
}
