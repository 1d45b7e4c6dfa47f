//go:build kube

package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
)

// TestMetrics_RestartSeedsFromStatus: a sync sets the per-target gauges; a
// new controller process (a new registry and reconciler) whose first
// reconcile cannot even reach the source sets them again from the stored
// status, and z8r_missed_intervals keeps growing with the clock.
func TestMetrics_RestartSeedsFromStatus(t *testing.T) {
	te := startTableEnv(t)
	ctx := context.Background()
	newHarness := func(nodes *fakeNodes, clock *clocktest.Fake) *drHarness {
		h := &drHarness{t: t, ctx: ctx, c: te.client, nodes: nodes, rec: &recorder{}, clock: clock,
			marks: map[string]int{}, metrics: prometheus.NewPedanticRegistry()}
		h.r = &DatasetReplicationReconciler{Client: te.client, Recorder: NewLimitedRecorder(h.rec), Agents: nodes, Clock: clock,
			Metrics: NewMetrics(h.metrics)}
		return h
	}
	t.Cleanup(func() { cleanupReplications(t, te.client) })
	nodes := newFakeNodes("src", "dst")
	clock := clocktest.New(tableStart)
	h := newHarness(nodes, clock)
	h.dataset("src", "tank/a")
	dr := rep("r", "src", to("dst"))
	dr.Spec.Schedule = "1h"
	h.create(dr)
	h.reconcile("r")

	gauge := func(h *drHarness, name string) float64 {
		t.Helper()
		v, ok := metricSeries(t, h.metrics, name, "replication", "r", "target", "dst:tank/a")
		if !ok {
			t.Fatalf("%s: no series", name)
		}
		return v
	}
	st := h.get("r").Status.Targets
	if len(st) != 1 || st[0].LastSyncTime == nil {
		t.Fatalf("after the first reconcile targets %+v, want dst synced", st)
	}
	synced := float64(st[0].LastSyncTime.UnixNano()) / 1e9
	if got := gauge(h, "z8r_last_sync_timestamp_seconds"); got != synced {
		t.Errorf("last sync %v, want status.lastSyncTime %v", got, synced)
	}
	if gauge(h, "z8r_target_out_of_sync") != 0 || gauge(h, "z8r_missed_intervals") != 0 {
		t.Error("a target just synced is out of sync or behind")
	}
	if gauge(h, "z8r_transfer_active") != 0 || gauge(h, "z8r_transfer_bytes") <= 0 {
		t.Errorf("transfer active %v bytes %v; want 0 and the bytes sent", gauge(h, "z8r_transfer_active"), gauge(h, "z8r_transfer_bytes"))
	}

	// A restart 3h later with the source down.
	clock.Advance(3*time.Hour + time.Minute)
	nodes.unreachable["src"] = true
	h2 := newHarness(nodes, clock)
	h2.reconcile("r")
	if got := gauge(h2, "z8r_last_sync_timestamp_seconds"); got != synced {
		t.Errorf("after the restart last sync %v, want %v from the status", got, synced)
	}
	if got := gauge(h2, "z8r_target_out_of_sync"); got != 1 {
		t.Errorf("source down: out of sync %v, want 1", got)
	}
	if got := gauge(h2, "z8r_missed_intervals"); got != 3 {
		t.Errorf("missed intervals %v, want 3", got)
	}
	clock.Advance(2 * time.Hour)
	if got := gauge(h2, "z8r_missed_intervals"); got != 5 {
		t.Errorf("2 h later without a reconcile: missed intervals %v, want 5", got)
	}
}

// TestMetrics_Z8RNodeReconciler: the Z8RNode reconciler sets a node's
// gauges from what its agent published (a key pinned on first use is no
// change) and drops them when the Z8RNode goes.
func TestMetrics_Z8RNodeReconciler(t *testing.T) {
	te := startTableEnv(t)
	ctx := context.Background()
	c := te.client
	hb := metav1.NewTime(tableStart.Truncate(time.Second))
	tests := []struct {
		name, pinned, published string
		ready                   bool
		wantReady, wantChanged  float64
	}{
		{name: "first key pinned, ready", published: "ssh-ed25519 AAAAkeyA", ready: true, wantReady: 1},
		{name: "not ready", pinned: "ssh-ed25519 AAAAkeyA", published: "ssh-ed25519 AAAAkeyA", wantReady: 0},
		{name: "host key changed", pinned: "ssh-ed25519 AAAAkeyA", published: "ssh-ed25519 AAAAkeyB", ready: true, wantReady: 1, wantChanged: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			r := &Z8RNodeReconciler{Client: c, Recorder: NewLimitedRecorder(&recorder{}), Metrics: NewMetrics(reg)}
			zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: tt.pinned}}
			if err := c.Create(ctx, zn); err != nil {
				t.Fatal(err)
			}
			zn.Status = z8rv1.Z8RNodeStatus{HostKey: tt.published, HostKeyFingerprint: "SHA256:fp", Ready: tt.ready, LastHeartbeatTime: &hb}
			if err := c.Status().Update(ctx, zn); err != nil {
				t.Fatal(err)
			}
			req := reconcile.Request{NamespacedName: client.ObjectKey{Name: "n1"}}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			for name, want := range map[string]float64{"z8r_node_ready": tt.wantReady, "z8r_node_host_key_changed": tt.wantChanged,
				"z8r_node_last_heartbeat_timestamp_seconds": float64(hb.Unix())} {
				if got, ok := metricSeries(t, reg, name, "node", "n1"); !ok || got != want {
					t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
				}
			}
			if err := c.Delete(ctx, zn); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile after delete: %v", err)
			}
			if _, ok := metricSeries(t, reg, "z8r_node_ready", "node", "n1"); ok {
				t.Error("z8r_node_ready still there after the Z8RNode went")
			}
		})
	}
}
