package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
)

// TestWatchSync_SetOnFirstProgress: a target's state becomes Syncing
// (and only that target's), with its transfer's bytes, once its transfer
// reports progress, is written before Ended returns, and is not written
// for a sync that transferred nothing.
func TestWatchSync_SetOnFirstProgress(t *testing.T) {
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

			w := r.watchSync(ctx, &before, tt.node, "tank/a", func(error) {})
			for i := range tt.progress {
				w.Progress(0, agent.Progress{Bytes: int64(i+1) * 4096})
			}
			w.Ended()

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
				if ts.Node == tt.node && tt.writes && (ts.Transfer == nil || ts.Transfer.BytesDone <= 0 || ts.Transfer.Step != 1) {
					t.Errorf("target %s: transfer %+v, want step 1 with bytes done", ts.Node, ts.Transfer)
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

// TestWatchSync_RewritesWhileBytesMove: while reports keep coming the
// transfer is rewritten every progress interval with growing bytes, and
// nothing is written once the sync ended.
func TestWatchSync_RewritesWhileBytesMove(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r"}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(dr).WithStatusSubresource(dr).Build()
	r := &DatasetReplicationReconciler{Client: c, ProgressInterval: 20 * time.Millisecond}
	ctx := context.Background()
	w := r.watchSync(ctx, dr, "n2", "tank/a", func(error) {})
	w.Planned(2, 1<<20)
	var seen []int64
	for i := range 10 {
		w.Progress(i/5, agent.Progress{Bytes: int64(i%5+1) * 50_000})
		time.Sleep(30 * time.Millisecond)
		var cur z8rv1.DatasetReplication
		if err := c.Get(ctx, client.ObjectKey{Name: "r"}, &cur); err != nil {
			t.Fatal(err)
		}
		if len(cur.Status.Targets) == 1 && cur.Status.Targets[0].Transfer != nil {
			tr := cur.Status.Targets[0].Transfer
			if tr.Steps != 2 || tr.BytesExpected != 1<<20 {
				t.Errorf("transfer %+v: want 2 steps and 1 MiB expected", tr)
			}
			if n := len(seen); n == 0 || seen[n-1] != tr.BytesDone {
				seen = append(seen, tr.BytesDone)
			}
		}
	}
	w.Ended()
	if len(seen) < 3 || !slices.IsSorted(seen) {
		t.Errorf("bytes done as written: %v; want at least 3 growing values", seen)
	}
	if seen[len(seen)-1] != 250_000+250_000 {
		t.Errorf("last bytes done %d, want both steps' 500000", seen[len(seen)-1])
	}
	var before, after z8rv1.DatasetReplication
	_ = c.Get(ctx, client.ObjectKey{Name: "r"}, &before)
	time.Sleep(60 * time.Millisecond)
	_ = c.Get(ctx, client.ObjectKey{Name: "r"}, &after)
	if before.ResourceVersion != after.ResourceVersion {
		t.Error("status written after Ended")
	}
}

// TestTransferTracker: steps add up, a resumed receive counts as a step
// before the plan's, and the rate and completion estimate follow from the
// bytes and the time.
func TestTransferTracker(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var tr transferTracker
	tr.report(t0.Add(time.Second), -1, 100, time.Second) // a resumed receive, begun at t0
	tr.report(t0.Add(time.Second), -1, 1000, 0)          // grows
	tr.plan(2, 10_000)                                   // then the plan
	tr.report(t0.Add(2*time.Second), 0, 3000, 0)         // first planned step
	tr.report(t0.Add(3*time.Second), 0, 2000, 0)         // out of order: no shrink
	tr.report(t0.Add(4*time.Second), 1, 1000, 0)         // second step
	p := tr.progress(t0.Add(5 * time.Second))
	if p.Step != 3 || p.Steps != 3 {
		t.Errorf("step %d of %d, want 3 of 3", p.Step, p.Steps)
	}
	if p.BytesDone != 1000+3000+1000 || p.BytesExpected != 10_000 {
		t.Errorf("bytes %d of %d, want 5000 of 10000", p.BytesDone, p.BytesExpected)
	}
	if p.BytesPerSecond != 1000 {
		t.Errorf("rate %d B/s, want 1000", p.BytesPerSecond)
	}
	if want := t0.Add(10 * time.Second); p.EstimatedCompletion == nil || !p.EstimatedCompletion.Time.Equal(want) {
		t.Errorf("completion %v, want %v", p.EstimatedCompletion, want)
	}
	if !p.StartedAt.Time.Equal(t0) {
		t.Errorf("started %v, want the first report's %v", p.StartedAt, t0)
	}

	var unknown transferTracker
	unknown.report(t0, 0, 10, 0)
	if p := unknown.progress(t0.Add(time.Second)); p.BytesExpected != 0 || p.EstimatedCompletion != nil || p.Steps != 1 {
		t.Errorf("without a plan: %+v; want no expectation and no completion time", p)
	}
	if p := unknown.progress(t0.Add(time.Second / 2)); p.BytesPerSecond != 0 {
		t.Errorf("a rate over half a second: %d B/s, want none yet", p.BytesPerSecond)
	}
	var over transferTracker
	over.plan(1, 100)
	over.report(t0, 0, 500, 0)
	if p := over.progress(t0.Add(time.Second)); p.BytesExpected != 500 || !p.EstimatedCompletion.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("an estimate below the bytes sent: %+v; want it raised to the bytes sent", p)
	}
}

// TestCancelReason: a sync goes on while the stored replication still
// wants it, and stops when it is suspended, being deleted, gone, or no
// longer lists the target.
func TestCancelReason(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	base := func() *z8rv1.DatasetReplication {
		return &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r", Finalizers: []string{finalizerReleaseHolds}},
			Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/a"},
				Targets: []z8rv1.ReplicationTarget{{Node: "n2"}, {Node: "n3", Dataset: "backup/a"}}}}
	}
	now := metav1.Now()
	cases := []struct {
		name       string
		stored     func() *z8rv1.DatasetReplication // nil: not stored
		node, ds   string
		wantReason string
	}{
		{"wanted", base, "n2", "tank/a", ""},
		{"wanted, own dataset", base, "n3", "backup/a", ""},
		{"suspended", func() *z8rv1.DatasetReplication { dr := base(); dr.Spec.Suspend = true; return dr }, "n2", "tank/a", "suspended"},
		{"deleting", func() *z8rv1.DatasetReplication { dr := base(); dr.DeletionTimestamp = &now; return dr }, "n2", "tank/a", "being deleted"},
		{"deleted", nil, "n2", "tank/a", "deleted"},
		{"target removed", func() *z8rv1.DatasetReplication { dr := base(); dr.Spec.Targets = dr.Spec.Targets[1:]; return dr }, "n2", "tank/a", "removed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme)
			if c.stored != nil {
				b = b.WithObjects(c.stored())
			}
			r := &DatasetReplicationReconciler{Client: b.Build()}
			got := r.cancelReason(context.Background(), base(), c.node, c.ds)
			if (c.wantReason == "") != (got == "") || !strings.Contains(got, c.wantReason) {
				t.Errorf("reason %q, want one with %q", got, c.wantReason)
			}
		})
	}
}
