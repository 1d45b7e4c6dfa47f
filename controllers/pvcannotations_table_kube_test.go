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

// tablePVCAnnotations drives PVCAnnotationsReconciler.Reconcile for a PVC
// without CSI (a local PV annotated with its node and dataset): the PVC's
// annotations, the ReplicationTargetPolicies and an object already under
// the replication's name → the DatasetReplication it owns, the PVC's
// annotation-problem and the Events.
func tablePVCAnnotations(t *testing.T, te *tableEnv) {
	allowN2 := z8rv1.AllowedTarget{Node: "n2", ParentDataset: "tank"}
	tests := []struct {
		name     string
		ann      map[string]string     // the PVC's annotations
		before   map[string]string     // annotations of an earlier reconcile, if any
		allow    []z8rv1.AllowedTarget // a policy selecting the namespace, if any
		squatter bool                  // another object holds the replication's name
		wantRep  string                // "source -> targets" of the PVC's replication, "" none
		problem  string                // substring of the PVC's annotation-problem, "" none
		events   []string
	}{
		{name: "an allowed target makes the replication",
			ann: map[string]string{z8rv1.AnnotationReplicateTo: "n2"}, allow: []z8rv1.AllowedTarget{allowN2},
			wantRep: "n1:tank/vol -> n2:tank/vol", events: []string{z8rv1.EventReplicationGenerated}},
		{name: "without a policy the target is refused",
			ann:     map[string]string{z8rv1.AnnotationReplicateTo: "n2"},
			problem: "no ReplicationTargetPolicy", events: []string{z8rv1.EventTargetNotAllowed}},
		{name: "a target outside the policy is refused, the allowed one kept",
			ann: map[string]string{z8rv1.AnnotationReplicateTo: "n2,n3"}, allow: []z8rv1.AllowedTarget{allowN2},
			wantRep: "n1:tank/vol -> n2:tank/vol", problem: "n3", events: []string{z8rv1.EventTargetNotAllowed, z8rv1.EventReplicationGenerated}},
		{name: "the name taken by another object: left alone",
			ann: map[string]string{z8rv1.AnnotationReplicateTo: "n2"}, allow: []z8rv1.AllowedTarget{allowN2}, squatter: true,
			wantRep: "n9:tank/other -> n8:tank/other", problem: "taken", events: []string{z8rv1.EventReplicationNameTaken}},
		{name: "an empty replicate-to is an error, not an opt-out",
			ann: map[string]string{z8rv1.AnnotationReplicateTo: ""}, allow: []z8rv1.AllowedTarget{allowN2},
			problem: "empty", events: []string{z8rv1.EventEmptyAnnotation}},
		{name: "a malformed schedule is refused",
			ann: map[string]string{z8rv1.AnnotationReplicateTo: "n2", z8rv1.AnnotationSchedule: "every tuesday"}, allow: []z8rv1.AllowedTarget{allowN2},
			problem: z8rv1.AnnotationSchedule, events: []string{z8rv1.EventInvalidPVCAnnotation}},
		{name: "removing the annotations deletes the replication",
			before: map[string]string{z8rv1.AnnotationReplicateTo: "n2"}, ann: map[string]string{}, allow: []z8rv1.AllowedTarget{allowN2},
			events: []string{z8rv1.EventReplicationGenerated}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			t.Cleanup(func() { cleanupReplications(t, c); cleanupPolicies(t, c) })
			ns := te.env.CreateNamespace(t, "pvctable")
			pv := kubeenv.LocalPV(fmt.Sprintf("pv-table-%d", i), "n1", "/mnt/vol", "1Gi")
			pv.Annotations = map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/vol"}
			pvc := kubeenv.PVCFor(pv, ns, "data")
			pvc.Annotations = tt.ann
			if tt.before != nil {
				pvc.Annotations = tt.before
			}
			te.env.CreateBound(t, pv, pvc)
			if tt.allow != nil {
				p := &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-" + ns},
					Spec: z8rv1.ReplicationTargetPolicySpec{
						NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
						Targets:           tt.allow}}
				if err := c.Create(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			name := PVCReplicationName(ns, "data")
			if tt.squatter {
				if err := c.Create(ctx, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n9", Dataset: "tank/other"},
						Targets: []z8rv1.ReplicationTarget{{Node: "n8"}}}}); err != nil {
					t.Fatal(err)
				}
			}
			rec := &recorder{}
			r := &PVCAnnotationsReconciler{Client: c, Recorder: NewLimitedRecorder(rec), Clock: clocktest.New(tableStart), Agents: newFakeNodes()}
			req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "data"}}
			if tt.before != nil {
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatal(err)
				}
				if err := c.Get(ctx, client.ObjectKey{Name: name}, &z8rv1.DatasetReplication{}); err != nil {
					t.Fatalf("the earlier reconcile made no replication: %v", err)
				}
				var cur corev1.PersistentVolumeClaim
				if err := c.Get(ctx, req.NamespacedName, &cur); err != nil {
					t.Fatal(err)
				}
				cur.Annotations = tt.ann
				if err := c.Update(ctx, &cur); err != nil {
					t.Fatal(err)
				}
				rec.reset()
			}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile: %v", err)
			}

			var dr z8rv1.DatasetReplication
			got := ""
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &dr); err == nil && dr.DeletionTimestamp.IsZero() {
				var ts []string
				for _, x := range dr.Spec.Targets {
					ts = append(ts, x.Node+":"+targetDataset(dr, x))
				}
				got = dr.Spec.Source.Node + ":" + dr.Spec.Source.Dataset + " -> " + strings.Join(ts, ",")
				if !tt.squatter && !ownsReplication(&dr, ns, "data") {
					t.Errorf("replication %s not marked as the PVC's: labels %v annotations %v", name, dr.Labels, dr.Annotations)
				}
			}
			if got != tt.wantRep {
				t.Errorf("replication %q, want %q", got, tt.wantRep)
			}
			var cur corev1.PersistentVolumeClaim
			if err := c.Get(ctx, req.NamespacedName, &cur); err != nil {
				t.Fatal(err)
			}
			p, ok := cur.Annotations[policy.AnnProblem]
			if tt.problem == "" && ok {
				t.Errorf("problem %q, want none", p)
			}
			if tt.problem != "" && !strings.Contains(p, tt.problem) {
				t.Errorf("problem %q, want one naming %q", p, tt.problem)
			}
			if ev := rec.reasons(); !slices.Equal(ev, tt.events) && !(len(ev) == 0 && len(tt.events) == 0) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
			seenReasons(rec)
		})
	}
}

// cleanupPolicies removes every ReplicationTargetPolicy.
func cleanupPolicies(t *testing.T, c client.Client) {
	if err := c.DeleteAllOf(context.Background(), &z8rv1.ReplicationTargetPolicy{}); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
