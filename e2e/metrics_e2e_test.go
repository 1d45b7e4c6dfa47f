//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// metricGauge returns the value of a gauge of reg whose labels are exactly
// the given pairs (name, value, ...); ok is false when there is none.
func metricGauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestMetrics_RealAgents: with real agents (their progress reports, their
// Z8RNodes) a replication's per-target gauges match its status, the
// transfer gauges show the bytes the agents reported, and each node's
// gauges its Z8RNode.
func TestMetrics_RealAgents(t *testing.T) {
	start := time.Now()
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "node01", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/master": "tank/dataset1"},
			// Reports often enough to see some during a short transfer.
			AgentArgs: []string{"--progress-interval=20ms"}},
		{Name: "node02", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/replica": "tank/dataset1"}},
	}})
	mkdata(t, c.Nodes["node01"], "tank/dataset1", "payload", 96<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := policy.ID("node01", "tank/dataset1")
	waitFor(t, c, rep, "dataset1 synced", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "node02").LastSyncTime != nil
	})
	// The controller goes on reconciling (a Z8RNode heartbeat, another
	// sync with nothing to send): compare its gauges with its status once
	// it stopped, so both are its last word.
	c.StopController()
	dr, err := c.Replication(ctx, rep)
	if err != nil {
		t.Fatal(err)
	}
	ts := target(dr, "node02")
	if ts.State != z8rv1.TargetSynced {
		t.Fatalf("target %+v after the controller stopped, want Synced", ts)
	}
	labels := []string{"replication", rep, "target", "node02:tank/dataset1"}
	gauge := func(name string) float64 {
		t.Helper()
		v, ok := metricGauge(t, c.Registry, name, labels...)
		if !ok {
			t.Fatalf("%s: no series for %v", name, labels)
		}
		return v
	}
	if got, want := gauge("z8r_last_sync_timestamp_seconds"), float64(ts.LastSyncTime.Unix()); got != want {
		t.Errorf("z8r_last_sync_timestamp_seconds %v, want status.lastSyncTime %v", got, want)
	}
	if gauge("z8r_target_out_of_sync") != 0 || gauge("z8r_missed_intervals") != 0 || gauge("z8r_target_consecutive_failures") != 0 {
		t.Errorf("a synced target: out of sync %v, missed %v, failures %v; want 0, 0, 0",
			gauge("z8r_target_out_of_sync"), gauge("z8r_missed_intervals"), gauge("z8r_target_consecutive_failures"))
	}
	if gauge("z8r_transfer_active") != 0 {
		t.Error("z8r_transfer_active is 1 after the sync ended")
	}
	if b := gauge("z8r_transfer_bytes"); b <= 0 || b > float64(ts.LastSyncBytes) {
		t.Errorf("z8r_transfer_bytes %v: want the agents' reports, above 0 and at most the %d bytes sent", b, ts.LastSyncBytes)
	}
	if p := gauge("z8r_transfer_last_progress_timestamp_seconds"); p < float64(start.Unix()) || p > float64(time.Now().Unix()+1) {
		t.Errorf("last progress at %v, want during this test (from %d)", p, start.Unix())
	}
	t.Logf("sync of %d bytes: agents reported %v bytes", ts.LastSyncBytes, gauge("z8r_transfer_bytes"))

	for _, node := range []string{"node01", "node02"} {
		ready, ok1 := metricGauge(t, c.Registry, "z8r_node_ready", "node", node)
		hb, ok2 := metricGauge(t, c.Registry, "z8r_node_last_heartbeat_timestamp_seconds", "node", node)
		changed, ok3 := metricGauge(t, c.Registry, "z8r_node_host_key_changed", "node", node)
		if !ok1 || !ok2 || !ok3 {
			t.Errorf("%s: node gauges missing (ready %v, heartbeat %v, host key %v)", node, ok1, ok2, ok3)
			continue
		}
		if ready != 1 || changed != 0 || hb < float64(start.Unix()-1) {
			t.Errorf("%s: ready %v, host key changed %v, heartbeat %v; want 1, 0 and a heartbeat during this test", node, ready, changed, hb)
		}
	}
}
