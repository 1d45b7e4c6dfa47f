//go:build kube

package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
)

// tableNodePolicy drives NodePolicyReconciler.Reconcile: Nodes' labels and
// annotations (and replications it made before) → the DatasetReplications
// labelled managed-by=node-annotations, each Node's annotation-problem and
// the Events.
func tableNodePolicy(t *testing.T, te *tableEnv) {
	on := map[string]string{policy.LabelZ8R: "true"}
	type node struct {
		name string
		ann  map[string]string
	}
	id := policy.ID("n1", "tank/a")
	tests := []struct {
		name     string
		nodes    []node
		before   []node            // annotations of an earlier reconcile, changed to nodes before the checked one
		wantReps map[string]string // replication name -> "source node:dataset -> targets"
		problems map[string]string // node -> substring of its annotation-problem ("" none)
		events   []string
	}{
		{name: "master and replica make a replication",
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			wantReps: map[string]string{id: "n1:tank/a -> n2:tank/a"}, problems: map[string]string{"n1": "", "n2": ""},
			events: []string{z8rv1.EventReplicationGenerated}},
		{name: "an empty annotation is refused with its own reason",
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: ""}}},
			wantReps: map[string]string{}, problems: map[string]string{"n1": policy.MsgEmpty},
			events: []string{z8rv1.EventEmptyAnnotation}},
		{name: "a malformed dataset is refused",
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: "tank/a@snap"}}},
			wantReps: map[string]string{}, problems: map[string]string{"n1": policy.AnnMaster},
			events: []string{z8rv1.EventInvalidAnnotation}},
		{name: "a replica without a master is a warning",
			nodes:    []node{{"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			wantReps: map[string]string{}, problems: map[string]string{"n2": "no node is master"},
			events: []string{z8rv1.EventAnnotationWarning}},
		{name: "a changed annotation updates the replication",
			before:   []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a:backup/a"}}},
			wantReps: map[string]string{id: "n1:tank/a -> n2:backup/a"}, problems: map[string]string{"n1": "", "n2": ""}},
		{name: "a removed annotation deletes the replication",
			before:   []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			nodes:    []node{{"n1", map[string]string{}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			wantReps: map[string]string{}, problems: map[string]string{"n1": ""},
			events: []string{z8rv1.EventAnnotationWarning}},
		{name: "a node made invalid freezes its replication and records the problem",
			before:   []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: ""}}},
			wantReps: map[string]string{id: "n1:tank/a -> n2:tank/a"}, problems: map[string]string{"n2": policy.MsgEmpty},
			events: []string{z8rv1.EventEmptyAnnotation}},
		{name: "master and replica swapped: the replication is promoted under its name",
			before:   []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}, {"n2", map[string]string{policy.AnnReplica: "tank/a"}}},
			nodes:    []node{{"n1", map[string]string{policy.AnnReplica: "tank/a"}}, {"n2", map[string]string{policy.AnnMaster: "tank/a", policy.AnnAllowUnplannedFailover: "true"}}},
			wantReps: map[string]string{id: "n2:tank/a -> n1:tank/a"}, problems: map[string]string{"n1": "", "n2": ""}},
		{name: "a fixed node loses its problem annotation",
			before:   []node{{"n1", map[string]string{policy.AnnMaster: ""}}},
			nodes:    []node{{"n1", map[string]string{policy.AnnMaster: "tank/a"}}},
			wantReps: map[string]string{id: "n1:tank/a -> "}, problems: map[string]string{"n1": ""},
			events: []string{z8rv1.EventReplicationGenerated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			t.Cleanup(func() { cleanupNodes(t, c); cleanupReplications(t, c) })
			rec := &recorder{}
			r := &NodePolicyReconciler{Client: c, Recorder: NewLimitedRecorder(rec)}
			apply := func(nodes []node) {
				t.Helper()
				for _, n := range nodes {
					var cur corev1.Node
					err := c.Get(ctx, client.ObjectKey{Name: n.name}, &cur)
					if err != nil {
						obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: on, Annotations: n.ann}}
						if err := c.Create(ctx, obj); err != nil {
							t.Fatal(err)
						}
						continue
					}
					ann := map[string]string{}
					for k, v := range n.ann {
						ann[k] = v
					}
					if p, ok := cur.Annotations[policy.AnnProblem]; ok {
						ann[policy.AnnProblem] = p
					}
					cur.Annotations = ann
					if err := c.Update(ctx, &cur); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.before != nil {
				apply(tt.before)
				if _, err := r.Reconcile(ctx, policyKey); err != nil {
					t.Fatal(err)
				}
				rec.reset()
			}
			apply(tt.nodes)
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: policyKey.NamespacedName}); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			var list z8rv1.DatasetReplicationList
			if err := c.List(ctx, &list, client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, dr := range list.Items {
				if !dr.DeletionTimestamp.IsZero() {
					continue
				}
				var ts []string
				for _, x := range dr.Spec.Targets {
					ts = append(ts, x.Node+":"+targetDataset(dr, x))
				}
				got[dr.Name] = dr.Spec.Source.Node + ":" + dr.Spec.Source.Dataset + " -> " + strings.Join(ts, ",")
			}
			if len(got) != len(tt.wantReps) {
				t.Errorf("replications %v, want %v", got, tt.wantReps)
			}
			for n, w := range tt.wantReps {
				if got[n] != w {
					t.Errorf("replication %s is %q, want %q", n, got[n], w)
				}
			}
			for n, want := range tt.problems {
				var cur corev1.Node
				if err := c.Get(ctx, client.ObjectKey{Name: n}, &cur); err != nil {
					t.Fatal(err)
				}
				p, ok := cur.Annotations[policy.AnnProblem]
				if want == "" && ok {
					t.Errorf("node %s: problem %q, want none", n, p)
				}
				if want != "" && !strings.Contains(p, want) {
					t.Errorf("node %s: problem %q, want one naming %q", n, p, want)
				}
			}
			if ev := rec.reasons(); !slices.Equal(ev, tt.events) && !(len(ev) == 0 && len(tt.events) == 0) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
			seenReasons(rec)
		})
	}
	t.Run("a manual trigger on a generated replication is kept, a hand-edited schedule reverted", func(t *testing.T) {
		ctx := context.Background()
		c := te.client
		t.Cleanup(func() { cleanupNodes(t, c); cleanupReplications(t, c) })
		r := &NodePolicyReconciler{Client: c, Recorder: NewLimitedRecorder(&recorder{})}
		for name, ann := range map[string]map[string]string{"n1": {policy.AnnMaster: "tank/a"}, "n2": {policy.AnnReplica: "tank/a"}} {
			if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: on, Annotations: ann}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Reconcile(ctx, policyKey); err != nil {
			t.Fatal(err)
		}
		var dr z8rv1.DatasetReplication
		if err := c.Get(ctx, client.ObjectKey{Name: id}, &dr); err != nil {
			t.Fatal(err)
		}
		want := dr.Spec.Schedule
		dr.Spec.Trigger = &z8rv1.ReplicationTrigger{Manual: "now-1"}
		dr.Spec.Schedule = "5m"
		if err := c.Update(ctx, &dr); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Reconcile(ctx, policyKey); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: id}, &dr); err != nil {
			t.Fatal(err)
		}
		if dr.Spec.Trigger == nil || dr.Spec.Trigger.Manual != "now-1" {
			t.Errorf("trigger %+v after the policy's reconcile, want the user's manual trigger kept", dr.Spec.Trigger)
		}
		if dr.Spec.Schedule != want {
			t.Errorf("schedule %q, want the annotations' %q back", dr.Spec.Schedule, want)
		}
	})
}

// cleanupNodes removes every Node, so the next case starts without any.
func cleanupNodes(t *testing.T, c client.Client) {
	ctx := context.Background()
	if err := c.DeleteAllOf(ctx, &corev1.Node{}); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var list corev1.NodeList
	for time.Now().Before(deadline) {
		if err := c.List(ctx, &list); err == nil && len(list.Items) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("cleanup: %d nodes left", len(list.Items))
}
