package controllers

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
)

var metricsT0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// series returns the value of the series of metric name with exactly the
// given label pairs (name, value, ...); ok is false when there is none.
func metricSeries(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
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
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

func statusTarget(node, state string, mod func(*z8rv1.TargetStatus)) z8rv1.TargetStatus {
	ts := z8rv1.TargetStatus{Node: node, Dataset: "tank/a", State: state}
	if mod != nil {
		mod(&ts)
	}
	return ts
}

func TestMetrics_ObserveReplication(t *testing.T) {
	synced := metricsT0.Add(-90 * time.Minute)
	tests := []struct {
		name    string
		dr      func(dr *z8rv1.DatasetReplication)
		now     time.Time // clock at scrape (default metricsT0)
		node    string
		want    map[string]float64 // metric -> value of the target's series
		missing []string           // metrics without a series for the target
	}{
		{
			name: "synced target after a restart: last sync from status, in sync, 0 missed",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) {
					ts.LastSyncTime = &metav1.Time{Time: synced}
					ts.LastSnapshot = "z8r-20261130T100000Z"
				})}
			},
			node: "n2",
			want: map[string]float64{"z8r_last_sync_timestamp_seconds": float64(synced.Unix()), "z8r_target_out_of_sync": 0,
				"z8r_missed_intervals": 0, "z8r_target_consecutive_failures": 0, "z8r_snapshots_behind": 0,
				"z8r_seconds_since_last_successful_sync": -1},
		},
		{
			name: "failed target three intervals behind",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Schedule = "1h"
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetFailed, func(ts *z8rv1.TargetStatus) {
					ts.LastSnapshot = "z8r-20261130T085959Z"
					ts.ConsecutiveFailures = 4
					ts.SnapshotsBehind = 3
				})}
			},
			node:    "n2",
			want:    map[string]float64{"z8r_target_out_of_sync": 1, "z8r_missed_intervals": 3, "z8r_target_consecutive_failures": 4, "z8r_snapshots_behind": 3},
			missing: []string{"z8r_last_sync_timestamp_seconds"},
		},
		{
			name: "cron schedule: activations since the target's newest snapshot",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Schedule = "0 */4 * * *" // 00, 04, 08, 12 UTC
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetBehind, func(ts *z8rv1.TargetStatus) {
					ts.LastSnapshot = "z8r-20261130T000000Z-1"
				})}
			},
			node: "n2",
			want: map[string]float64{"z8r_target_out_of_sync": 0, "z8r_missed_intervals": 3},
		},
		{
			name: "the target's newest is the source's newest, named by another prefix",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Schedule = "30m"
				dr.Status.LastSnapshot = "manual"
				dr.Status.LastSnapshotTime = &metav1.Time{Time: metricsT0.Add(-61 * time.Minute)}
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) { ts.LastSnapshot = "manual" })}
			},
			node: "n2",
			want: map[string]float64{"z8r_missed_intervals": 2},
		},
		{
			name: "a foreign snapshot of unknown time: no missed-interval series",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) { ts.LastSnapshot = "snapshot-1234" })}
			},
			node:    "n2",
			want:    map[string]float64{"z8r_target_out_of_sync": 0},
			missing: []string{"z8r_missed_intervals"},
		},
		{
			name: "no snapshot yet: counts from the replication's creation",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Schedule = "1h"
				dr.CreationTimestamp = metav1.Time{Time: metricsT0.Add(-150 * time.Minute)}
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetPending, nil)}
			},
			node: "n2",
			want: map[string]float64{"z8r_target_out_of_sync": 1, "z8r_missed_intervals": 2},
		},
		{
			name: "source unavailable: a Synced target is out of sync, missed intervals grow with the clock",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Schedule = "1h"
				meta.SetStatusCondition(&dr.Status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse, Reason: z8rv1.ReasonSourceUnavailable})
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) { ts.LastSnapshot = "z8r-20261130T120000Z" })}
			},
			now:  metricsT0.Add(5*time.Hour + time.Minute),
			node: "n2",
			want: map[string]float64{"z8r_target_out_of_sync": 1, "z8r_missed_intervals": 5},
		},
		{
			name: "a promotion in progress does not count as blocked",
			dr: func(dr *z8rv1.DatasetReplication) {
				meta.SetStatusCondition(&dr.Status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse, Reason: z8rv1.ReasonPromoting})
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSyncing, func(ts *z8rv1.TargetStatus) { ts.LastSnapshot = "z8r-20261130T120000Z" })}
			},
			node: "n2",
			want: map[string]float64{"z8r_target_out_of_sync": 0},
		},
		{
			name: "diverged target is out of sync",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetDiverged, func(ts *z8rv1.TargetStatus) { ts.LastSnapshot = "z8r-20261130T120000Z" })}
			},
			node: "n2",
			want: map[string]float64{"z8r_target_out_of_sync": 1},
		},
		{
			name: "suspended: no out-of-sync, failure or missed-interval series, last sync kept",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Spec.Suspend = true
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetFailed, func(ts *z8rv1.TargetStatus) {
					ts.LastSyncTime = &metav1.Time{Time: synced}
					ts.LastSnapshot = "z8r-20261129T120000Z"
				})}
			},
			node:    "n2",
			want:    map[string]float64{"z8r_last_sync_timestamp_seconds": float64(synced.Unix())},
			missing: []string{"z8r_target_out_of_sync", "z8r_missed_intervals", "z8r_target_consecutive_failures"},
		},
		{
			name: "a target removed from the spec (grace period) has no series",
			dr: func(dr *z8rv1.DatasetReplication) {
				dr.Status.Targets = []z8rv1.TargetStatus{statusTarget("n3", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) {
					ts.LastSyncTime = &metav1.Time{Time: synced}
					ts.RemovedAt = &metav1.Time{Time: metricsT0}
				})}
			},
			node:    "n3",
			missing: []string{"z8r_last_sync_timestamp_seconds", "z8r_target_out_of_sync", "z8r_missed_intervals", "z8r_snapshots_behind"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r"},
				Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/a"}}}
			tt.dr(dr)
			now := tt.now
			if now.IsZero() {
				now = metricsT0
			}
			m.ObserveReplication(dr, clocktest.New(now))
			for name, want := range tt.want {
				got, ok := metricSeries(t, reg, name, "replication", "r", "target", tt.node+":tank/a")
				if !ok {
					t.Errorf("%s: no series", name)
					continue
				}
				if want < 0 { // present; its value depends on the wall clock
					continue
				}
				if got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			for _, name := range tt.missing {
				if got, ok := metricSeries(t, reg, name, "replication", "r", "target", tt.node+":tank/a"); ok {
					t.Errorf("%s = %v, want no series", name, got)
				}
			}
		})
	}
}

func TestMetrics_LastSyncNeverMovesBack(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	newer, older := metricsT0, metricsT0.Add(-time.Hour)
	for _, at := range []time.Time{newer, older} { // a stale cached status read after a newer write
		dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Status: z8rv1.DatasetReplicationStatus{
			Targets: []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, func(ts *z8rv1.TargetStatus) { ts.LastSyncTime = &metav1.Time{Time: at} })}}}
		m.ObserveReplication(dr, schedule.RealClock{})
	}
	if got, _ := metricSeries(t, reg, "z8r_last_sync_timestamp_seconds", "replication", "r", "target", "n2:tank/a"); got != float64(newer.Unix()) {
		t.Errorf("last sync %v, want the newer %v", got, newer.Unix())
	}
}

// TestMetrics_ObserveReadOnlyFirst: the status a reconcile reads from the
// cache sets the gauges only when the replication is new to this process;
// a stale read after a written status does not set them back.
func TestMetrics_ObserveReadOnlyFirst(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	withFailures := func(n int) *z8rv1.DatasetReplication {
		return &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Status: z8rv1.DatasetReplicationStatus{
			Targets: []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetFailed, func(ts *z8rv1.TargetStatus) { ts.ConsecutiveFailures = n })}}}
	}
	failures := func() float64 {
		v, _ := metricSeries(t, reg, "z8r_target_consecutive_failures", "replication", "r", "target", "n2:tank/a")
		return v
	}
	m.ObserveRead(withFailures(3), schedule.RealClock{}) // after a restart: taken
	if failures() != 3 {
		t.Fatalf("first read: failures %v, want 3", failures())
	}
	m.ObserveReplication(withFailures(0), schedule.RealClock{}) // a status written
	m.ObserveRead(withFailures(3), schedule.RealClock{})        // a stale cached read
	if failures() != 0 {
		t.Errorf("after a stale read: failures %v, want the written 0", failures())
	}
	m.ForgetReplication("r")
	m.ObserveRead(withFailures(2), schedule.RealClock{}) // new again
	if failures() != 2 {
		t.Errorf("read after ForgetReplication: failures %v, want 2", failures())
	}
}

func TestMetrics_ObserveReplicationForgetsGoneTargets(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Status: z8rv1.DatasetReplicationStatus{
		Targets: []z8rv1.TargetStatus{statusTarget("n2", z8rv1.TargetSynced, nil), statusTarget("n3", z8rv1.TargetFailed, nil)}}}
	m.ObserveReplication(dr, schedule.RealClock{})
	dr.Status.Targets = dr.Status.Targets[:1]
	m.ObserveReplication(dr, schedule.RealClock{})
	if _, ok := metricSeries(t, reg, "z8r_target_out_of_sync", "replication", "r", "target", "n3:tank/a"); ok {
		t.Error("n3 still has a series after it left the status")
	}
	if _, ok := metricSeries(t, reg, "z8r_target_out_of_sync", "replication", "r", "target", "n2:tank/a"); !ok {
		t.Error("n2 lost its series")
	}
	m.ForgetReplication("r")
	if _, ok := metricSeries(t, reg, "z8r_target_out_of_sync", "replication", "r", "target", "n2:tank/a"); ok {
		t.Error("n2 still has a series after ForgetReplication")
	}
}

func TestMetrics_Transfer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	now := metricsT0
	m.now = func() time.Time { return now }
	var passed int
	progress, done := m.Transfer("r", "n2:tank/a", func(int, agent.Progress) { passed++ })
	get := func(name string) float64 {
		v, ok := metricSeries(t, reg, name, "replication", "r", "target", "n2:tank/a")
		if !ok {
			t.Fatalf("%s: no series", name)
		}
		return v
	}
	if get("z8r_transfer_active") != 1 || get("z8r_transfer_last_progress_timestamp_seconds") != float64(metricsT0.Unix()) {
		t.Fatal("a started transfer is not active since its start")
	}
	steps := []struct {
		step      int
		bytes     int64
		advance   time.Duration
		wantBytes float64
		wantMoved time.Time
	}{
		{0, 100, time.Second, 100, metricsT0.Add(time.Second)},
		{0, 100, time.Minute, 100, metricsT0.Add(time.Second)}, // no progress: the time stays
		{0, 250, time.Second, 250, metricsT0.Add(62 * time.Second)},
		{1, 10, time.Second, 260, metricsT0.Add(63 * time.Second)}, // the next step adds to the first
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		progress(s.step, agent.Progress{Bytes: s.bytes})
		if got := get("z8r_transfer_bytes"); got != s.wantBytes {
			t.Errorf("report %d: bytes %v, want %v", i, got, s.wantBytes)
		}
		if got := get("z8r_transfer_last_progress_timestamp_seconds"); got != float64(s.wantMoved.Unix()) {
			t.Errorf("report %d: last progress %v, want %v", i, got, s.wantMoved.Unix())
		}
	}
	if passed != len(steps) {
		t.Errorf("the wrapped progress got %d reports, want %d", passed, len(steps))
	}
	done()
	if get("z8r_transfer_active") != 0 {
		t.Error("transfer still active after done")
	}
	// A later sync with nothing to send keeps the last transfer's bytes;
	// one that moves data counts from its own first report.
	_, done = m.Transfer("r", "n2:tank/a", nil)
	done()
	if got := get("z8r_transfer_bytes"); got != 260 {
		t.Errorf("after a sync that sent nothing: bytes %v, want the last transfer's 260", got)
	}
	progress, done = m.Transfer("r", "n2:tank/a", nil)
	progress(0, agent.Progress{Bytes: 7})
	done()
	if got := get("z8r_transfer_bytes"); got != 7 {
		t.Errorf("a new transfer's first report: bytes %v, want 7", got)
	}
	var nilM *Metrics
	p, d := nilM.Transfer("r", "t", nil)
	if p != nil {
		t.Error("nil Metrics changed the progress function")
	}
	d()
}

func TestMetrics_ObserveNode(t *testing.T) {
	hb := metricsT0.Add(-time.Minute)
	tests := []struct {
		name                      string
		status                    z8rv1.Z8RNodeStatus
		pinned                    string
		ready, heartbeat, changed float64
	}{
		{"ready, pinned key", z8rv1.Z8RNodeStatus{Ready: true, HostKey: "k1", LastHeartbeatTime: &metav1.Time{Time: hb}}, "k1", 1, float64(hb.Unix()), 0},
		{"not ready", z8rv1.Z8RNodeStatus{Ready: false, HostKey: "k1", LastHeartbeatTime: &metav1.Time{Time: hb}}, "k1", 0, float64(hb.Unix()), 0},
		{"host key changed", z8rv1.Z8RNodeStatus{Ready: true, HostKey: "k2", LastHeartbeatTime: &metav1.Time{Time: hb}}, "k1", 1, float64(hb.Unix()), 1},
		{"not pinned yet", z8rv1.Z8RNodeStatus{Ready: true, HostKey: "k2", LastHeartbeatTime: &metav1.Time{Time: hb}}, "", 1, float64(hb.Unix()), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: tt.pinned}, Status: tt.status}
			m.ObserveNode(zn)
			for name, want := range map[string]float64{"z8r_node_ready": tt.ready, "z8r_node_last_heartbeat_timestamp_seconds": tt.heartbeat, "z8r_node_host_key_changed": tt.changed} {
				if got, ok := metricSeries(t, reg, name, "node", "n1"); !ok || got != want {
					t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
				}
			}
			m.ForgetNode("n1")
			if _, ok := metricSeries(t, reg, "z8r_node_ready", "node", "n1"); ok {
				t.Error("series left after ForgetNode")
			}
		})
	}
}

func TestMetrics_SyncDurationBucketsReachADay(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.SyncDuration.WithLabelValues("r", "n2:tank/a").Observe(20 * 3600)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "z8r_sync_duration_seconds" {
			continue
		}
		bs := mf.GetMetric()[0].GetHistogram().GetBucket()
		last := bs[len(bs)-1]
		if last.GetUpperBound() < 24*3600 || last.GetCumulativeCount() != 1 {
			t.Errorf("largest bucket %v holds %d; want >= 86400 holding the 20 h sync", last.GetUpperBound(), last.GetCumulativeCount())
		}
		return
	}
	t.Fatal("no z8r_sync_duration_seconds")
}

func TestMetrics_VolumeSnapshotPath(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.SnapshotReady("zfs.z8r.dev", metricsT0, metricsT0.Add(300*time.Millisecond))
	m.SnapshotReady("zfs.z8r.dev", time.Time{}, metricsT0) // unknown creation: not observed
	m.SnapshotReplicated("n2", z8rv1.TargetSynced)
	m.SnapshotReplicated("n2", z8rv1.TargetSynced)
	m.SnapshotReplicated("n3", z8rv1.TargetFailed)
	if got, _ := metricSeries(t, reg, "z8r_volumesnapshot_ready_seconds", "driver", "zfs.z8r.dev"); got != 1 {
		t.Errorf("ready latency observations %v, want 1", got)
	}
	if got, _ := metricSeries(t, reg, "z8r_volumesnapshot_replications_total", "node", "n2", "outcome", z8rv1.TargetSynced); got != 2 {
		t.Errorf("n2 Synced %v, want 2", got)
	}
	if got, _ := metricSeries(t, reg, "z8r_volumesnapshot_replications_total", "node", "n3", "outcome", z8rv1.TargetFailed); got != 1 {
		t.Errorf("n3 Failed %v, want 1", got)
	}
}

func TestMissedIntervals_Table(t *testing.T) {
	hourly, _ := schedule.Parse("1h")
	cron, _ := schedule.Parse("0 0 * * *")
	tests := []struct {
		name        string
		s           schedule.Schedule
		newest, now time.Time
		want        int
	}{
		{"interval, within the first", hourly, metricsT0, metricsT0.Add(59 * time.Minute), 0},
		{"interval, exactly one", hourly, metricsT0, metricsT0.Add(time.Hour), 1},
		{"newest in the future", hourly, metricsT0.Add(time.Hour), metricsT0, 0},
		{"cron daily, two midnights", cron, metricsT0, metricsT0.Add(48 * time.Hour), 2},
		{"capped", mustSchedule(schedule.Parse("1m")), metricsT0.Add(-365 * 24 * time.Hour), metricsT0, maxMissed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := missedIntervals(tt.s, tt.newest, tt.now); got != tt.want {
				t.Errorf("missedIntervals = %d, want %d", got, tt.want)
			}
		})
	}
}

func mustSchedule(s schedule.Schedule, err error) schedule.Schedule {
	if err != nil {
		panic(err)
	}
	return s
}
