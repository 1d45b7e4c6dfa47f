//go:build kube

package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// tablePVCPromoted: a PVC's DatasetReplication promoted to its target
// (kubectl z8r promote) is never changed or deleted by the PVC's
// annotations: left alone while the promotion runs, handed over to the
// administrator (labels off, handed-over-from on, a ReplicationHandedOver
// Event) once it completed, and handed over rather than deleted when the
// PVC or its annotations go.
func tablePVCPromoted(t *testing.T, te *tableEnv) {
	vol := z8rv1.DatasetRef{Node: "n1", Dataset: "tank/vol"}
	promoted := z8rv1.DatasetRef{Node: "n2", Dataset: "tank/vol"}
	tests := []struct {
		name        string
		phase       string // status.promotion.phase; "" only asked (status.source still n1)
		then        string // "" reconcile, "unannotate" remove the annotations first, "delete" delete the PVC first
		wantHanded  bool
		problem     string
		events      []string
		secondQuiet bool // a second reconcile changes nothing and emits nothing
	}{
		{name: "asked, not started: left alone", phase: "", problem: "being promoted"},
		{name: "running: left alone", phase: z8rv1.PromotionFinalSync, problem: "being promoted"},
		{name: "refused: left alone (spec.source back cancels)", phase: z8rv1.PromotionRefused, problem: "being promoted"},
		{name: "completed: handed over", phase: z8rv1.PromotionCompleted, wantHanded: true, problem: "handed over",
			events: []string{z8rv1.EventReplicationHandedOver}, secondQuiet: true},
		{name: "annotations removed mid-promotion: handed over, not deleted", phase: z8rv1.PromotionFinalSync, then: "unannotate",
			wantHanded: true, events: []string{z8rv1.EventReplicationHandedOver}},
		{name: "PVC deleted after the promotion: handed over, not deleted", phase: z8rv1.PromotionCompleted, then: "delete",
			wantHanded: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			t.Cleanup(func() { cleanupReplications(t, c); cleanupPolicies(t, c) })
			ns := te.env.CreateNamespace(t, "pvcpromoted")
			pv := kubeenv.LocalPV(fmt.Sprintf("pv-promoted-%d", i), "n1", "/mnt/vol", "1Gi")
			pv.Annotations = map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/vol"}
			pvc := kubeenv.PVCFor(pv, ns, "data")
			pvc.Annotations = map[string]string{z8rv1.AnnotationReplicateTo: "n2"}
			te.env.CreateBound(t, pv, pvc)
			if err := c.Create(ctx, &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-" + ns},
				Spec: z8rv1.ReplicationTargetPolicySpec{
					NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
					Targets:           []z8rv1.AllowedTarget{{Node: "n2", ParentDataset: "tank"}, {Node: "n1", ParentDataset: "tank"}}}}); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			r := &PVCAnnotationsReconciler{Client: c, Recorder: NewLimitedRecorder(rec), Clock: clocktest.New(tableStart), Agents: newFakeNodes()}
			req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "data"}}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatal(err)
			}
			name := PVCReplicationName(ns, "data")
			var dr z8rv1.DatasetReplication
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
				t.Fatalf("no replication made: %v", err)
			}
			// kubectl z8r promote: spec.source to n2, n1 a target.
			dr.Spec.Source, dr.Spec.Targets = promoted, []z8rv1.ReplicationTarget{{Node: "n1"}}
			if err := c.Update(ctx, &dr); err != nil {
				t.Fatal(err)
			}
			dr.Status.Source = &vol
			if tt.phase != "" {
				dr.Status.Promotion = &z8rv1.PromotionStatus{From: vol, To: promoted, Phase: tt.phase}
				if tt.phase == z8rv1.PromotionCompleted {
					dr.Status.Source = &promoted
				}
			}
			if err := c.Status().Update(ctx, &dr); err != nil {
				t.Fatal(err)
			}
			wantSpec := dr.Spec
			rec.reset()
			switch tt.then {
			case "unannotate", "delete":
				var cur corev1.PersistentVolumeClaim
				if err := c.Get(ctx, req.NamespacedName, &cur); err != nil {
					t.Fatal(err)
				}
				if tt.then == "delete" {
					cur.Finalizers = nil
					if err := c.Update(ctx, &cur); err != nil {
						t.Fatal(err)
					}
					if err := c.Delete(ctx, &cur); err != nil {
						t.Fatal(err)
					}
				} else {
					cur.Annotations = map[string]string{}
					if err := c.Update(ctx, &cur); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			check := func(when string) {
				t.Helper()
				var after z8rv1.DatasetReplication
				if err := c.Get(ctx, client.ObjectKey{Name: name}, &after); err != nil {
					t.Fatalf("%s: the promoted replication is gone: %v", when, err)
				}
				if !after.DeletionTimestamp.IsZero() {
					t.Fatalf("%s: the promoted replication is being deleted", when)
				}
				if after.Spec.Source != wantSpec.Source || len(after.Spec.Targets) != 1 || after.Spec.Targets[0].Node != "n1" {
					t.Errorf("%s: spec %+v, want the promotion's (source n2, target n1)", when, after.Spec)
				}
				handed := after.Annotations[annotationHandedOver] == ns+"/data" && after.Labels[z8rv1.LabelManagedBy] == "" && after.Annotations[annotationPVC] == ""
				if handed != tt.wantHanded {
					t.Errorf("%s: handed over %v, want %v (labels %v annotations %v)", when, handed, tt.wantHanded, after.Labels, after.Annotations)
				}
				if !tt.wantHanded && !ownsReplication(&after, ns, "data") {
					t.Errorf("%s: no longer marked as the PVC's: %v %v", when, after.Labels, after.Annotations)
				}
			}
			check("first reconcile")
			if tt.then != "delete" {
				var cur corev1.PersistentVolumeClaim
				if err := c.Get(ctx, req.NamespacedName, &cur); err != nil {
					t.Fatal(err)
				}
				if p := cur.Annotations[policy.AnnProblem]; tt.problem != "" && !strings.Contains(p, tt.problem) {
					t.Errorf("problem %q, want one with %q", p, tt.problem)
				}
			}
			if ev := rec.reasons(); !slices.Equal(ev, tt.events) && !(len(ev) == 0 && len(tt.events) == 0) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
			seenReasons(rec)
			if tt.secondQuiet {
				rec.reset()
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatal(err)
				}
				check("second reconcile")
				if ev := rec.reasons(); len(ev) != 0 {
					t.Errorf("second reconcile emitted %v, want nothing", ev)
				}
			}
		})
	}
}
