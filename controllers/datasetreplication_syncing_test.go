package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
)

// TestMarkSyncing_SetOnFirstProgress: a target's state becomes Syncing
// (and only that target's) once its transfer reports progress, is written
// before transferred returns, and is not written for a sync that
// transferred nothing.
func TestMarkSyncing_SetOnFirstProgress(t *testing.T) {
	tests := []struct {
		name     string
		node     string
		progress int
		want     map[string]string // node -> state after transferred()
		writes   bool
	}{
		{"no transfer, no write", "n3", 0, map[string]string{"n2": z8rv1.TargetSynced, "n3": z8rv1.TargetFailed}, false},
		{"one report", "n3", 1, map[string]string{"n2": z8rv1.TargetSynced, "n3": z8rv1.TargetSyncing}, true},
		{"many reports, one write", "n3", 5, map[string]string{"n2": z8rv1.TargetSynced, "n3": z8rv1.TargetSyncing}, true},
		{"a target not listed yet is added", "n4", 1, map[string]string{"n2": z8rv1.TargetSynced, "n3": z8rv1.TargetFailed, "n4": z8rv1.TargetSyncing}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			if err := z8rv1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			dr := &z8rv1.DatasetReplication{
				ObjectMeta: metav1.ObjectMeta{Name: "r"},
				Status: z8rv1.DatasetReplicationStatus{State: z8rv1.TargetFailed, Targets: []z8rv1.TargetStatus{
					{Node: "n2", Dataset: "tank/a", State: z8rv1.TargetSynced},
					{Node: "n3", Dataset: "tank/a", State: z8rv1.TargetFailed, ConsecutiveFailures: 2},
				}},
			}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(dr).WithStatusSubresource(dr).Build()
			r := &DatasetReplicationReconciler{Client: c}
			ctx := context.Background()
			var before z8rv1.DatasetReplication
			if err := c.Get(ctx, client.ObjectKey{Name: "r"}, &before); err != nil {
				t.Fatal(err)
			}

			progress, transferred := r.markSyncing(ctx, &before, tt.node, "tank/a")
			for i := range tt.progress {
				progress(0, agent.Progress{Bytes: int64(i) * 4096})
			}
			transferred()

			var after z8rv1.DatasetReplication
			if err := c.Get(ctx, client.ObjectKey{Name: "r"}, &after); err != nil {
				t.Fatal(err)
			}
			if wrote := after.ResourceVersion != before.ResourceVersion; wrote != tt.writes {
				t.Errorf("status written = %v, want %v", wrote, tt.writes)
			}
			got := map[string]string{}
			for _, ts := range after.Status.Targets {
				got[ts.Node] = ts.State
				if ts.Node == "n3" && ts.ConsecutiveFailures != 2 {
					t.Errorf("n3's failure count changed to %d", ts.ConsecutiveFailures)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("targets %v, want %v", got, tt.want)
			}
			for n, s := range tt.want {
				if got[n] != s {
					t.Errorf("target %s state %q, want %q", n, got[n], s)
				}
			}
			if after.Status.State != z8rv1.TargetFailed {
				t.Errorf("aggregate state changed to %q", after.Status.State)
			}
		})
	}
}
