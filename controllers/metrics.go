package controllers

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/snapname"
)

// The controller serves its metrics only to callers the API server
// authenticates and authorizes (cmd/z8r-controller), and asks the API server
// with TokenReviews and SubjectAccessReviews.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Metrics are z8r's Prometheus metrics. docs/metrics.md lists every one with
// its labels, the alerts of config/prometheus over them and the dashboard of
// config/grafana; hack/promrules checks that those use only names registered
// here.
//
// Per target (labels replication and target, "<node>:<dataset>") the
// gauges that describe a target's state are set from the DatasetReplication's
// status (ObserveReplication), so they survive a controller restart: the
// first reconcile of each replication sets them from what the status
// recorded. The counters and histograms count what this process did.
type Metrics struct {
	SyncDuration *prometheus.HistogramVec
	SyncBytes    *prometheus.CounterVec
	SyncFailures *prometheus.CounterVec
	Behind       *prometheus.GaugeVec
	Snapshots    *prometheus.CounterVec
	sinceSuccess *sinceCollector

	lastSync       *prometheus.GaugeVec
	outOfSync      *prometheus.GaugeVec
	failures       *prometheus.GaugeVec
	missed         *missedCollector
	transferActive *prometheus.GaugeVec
	transferBytes  *prometheus.GaugeVec
	transferMoved  *prometheus.GaugeVec

	nodeReady     *prometheus.GaugeVec
	nodeHeartbeat *prometheus.GaugeVec
	nodeKeyChange *prometheus.GaugeVec

	snapshotReady        *prometheus.HistogramVec
	snapshotReplications *prometheus.CounterVec

	// now is the clock of the transfer gauges (tests replace it).
	now func() time.Time

	mu sync.Mutex
	// targets are the target labels ObserveReplication last saw per
	// replication; lastSyncs the newest last-sync time set per target.
	targets   map[string]map[string]bool
	lastSyncs map[[2]string]time.Time
}

// syncDurationBuckets are the buckets of z8r_sync_duration_seconds: from
// 50 ms to a day, so a first full sync of a large dataset is not lumped
// into +Inf.
var syncDurationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
	3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 24 * 3600}

// snapshotReadyBuckets are the buckets of z8r_volumesnapshot_ready_seconds.
var snapshotReadyBuckets = []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300}

// maxMissed bounds the missed intervals counted for a cron schedule (a
// minutely schedule a year behind), so a scrape stays cheap.
const maxMissed = 10000

// NewMetrics creates the metrics and registers them with reg (nil: the
// controller-runtime registry served on the manager's metrics endpoint).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = metrics.Registry
	}
	labels := []string{"replication", "target"}
	gauge := func(name, help string, l ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, l)
	}
	m := &Metrics{
		SyncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "z8r_sync_duration_seconds", Help: "Duration of successful syncs of one target that transferred data.",
			Buckets: syncDurationBuckets}, labels),
		SyncBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_sync_bytes_total", Help: "Bytes of send streams delivered to a target."}, labels),
		SyncFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_sync_failures_total", Help: "Failed syncs of a target, by reason."}, append(labels, "reason")),
		Behind: gauge("z8r_snapshots_behind", "Source snapshots a target still lacks.", labels...),
		Snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_snapshots_created_total", Help: "Snapshots z8r took on a source."}, []string{"replication"}),
		sinceSuccess: &sinceCollector{desc: prometheus.NewDesc("z8r_seconds_since_last_successful_sync",
			"Seconds since a target last finished a sync successfully.", labels, nil), last: map[[2]string]time.Time{}},

		lastSync: gauge("z8r_last_sync_timestamp_seconds",
			"Unix time of the last successful transfer to a target (status.targets[].lastSyncTime).", labels...),
		outOfSync: gauge("z8r_target_out_of_sync",
			"1 when a target is not being kept current: its state is Failed, Diverged or Pending, or the replication cannot run (source unavailable or failed, conflict, invalid spec, promotion waiting or refused).", labels...),
		failures: gauge("z8r_target_consecutive_failures",
			"Failed sync attempts of a target since its last success (status.targets[].consecutiveFailures).", labels...),
		missed: &missedCollector{desc: prometheus.NewDesc("z8r_missed_intervals",
			"Schedule activations since the newest snapshot a target has: how many snapshot intervals the target is behind now.", labels, nil),
			targets: map[[2]string]missedEntry{}},
		transferActive: gauge("z8r_transfer_active", "1 while a sync of a target is transferring.", labels...),
		transferBytes:  gauge("z8r_transfer_bytes", "Bytes the running sync of a target has moved so far, or the last sync that moved data.", labels...),
		transferMoved: gauge("z8r_transfer_last_progress_timestamp_seconds",
			"Unix time a target's running sync last moved bytes (its start until the first report).", labels...),

		nodeReady: gauge("z8r_node_ready", "1 when the node's agent reports itself ready in its Z8RNode (status.ready).", "node"),
		nodeHeartbeat: gauge("z8r_node_last_heartbeat_timestamp_seconds",
			"Unix time the node's agent last refreshed its Z8RNode status (status.lastHeartbeatTime).", "node"),
		nodeKeyChange: gauge("z8r_node_host_key_changed",
			"1 when the node's agent presents a host key other than the pinned one (HostKeyTrusted=False); z8r refuses to connect until an administrator approves it.", "node"),

		snapshotReady: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "z8r_volumesnapshot_ready_seconds",
			Help:    "Time from a VolumeSnapshotContent's creation to z8r marking it readyToUse.",
			Buckets: snapshotReadyBuckets}, []string{"driver"}),
		snapshotReplications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_volumesnapshot_replications_total",
			Help: "Replications of a VolumeSnapshotContent's snapshot to a target node, by outcome (the target state: Synced, Failed, Diverged, Skipped)."},
			[]string{"node", "outcome"}),

		now:       time.Now,
		targets:   map[string]map[string]bool{},
		lastSyncs: map[[2]string]time.Time{},
	}
	for _, c := range m.collectors() {
		// Registering twice (a second manager in one process) keeps the
		// first registration; any other error is a programming mistake.
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			panic(fmt.Sprintf("controllers: register metrics: %v", err))
		}
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.SyncDuration, m.SyncBytes, m.SyncFailures, m.Behind, m.Snapshots, m.sinceSuccess,
		m.lastSync, m.outOfSync, m.failures, m.missed, m.transferActive, m.transferBytes, m.transferMoved,
		m.nodeReady, m.nodeHeartbeat, m.nodeKeyChange, m.snapshotReady, m.snapshotReplications}
}

// Succeeded records a successful sync at t.
func (m *Metrics) Succeeded(rep, target string, t time.Time) { m.sinceSuccess.set(rep, target, t) }

// Forget drops a target's series (target or replication removed).
func (m *Metrics) Forget(rep, target string) {
	if m == nil {
		return
	}
	for _, g := range []*prometheus.GaugeVec{m.Behind, m.lastSync, m.outOfSync, m.failures, m.transferActive, m.transferBytes, m.transferMoved} {
		g.DeleteLabelValues(rep, target)
	}
	m.sinceSuccess.forget(rep, target)
	m.missed.forget(rep, target)
	m.mu.Lock()
	delete(m.lastSyncs, [2]string{rep, target})
	delete(m.targets[rep], target)
	m.mu.Unlock()
}

// ForgetReplication drops every series of a replication (it is deleted).
func (m *Metrics) ForgetReplication(rep string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	var labels []string
	for l := range m.targets[rep] {
		labels = append(labels, l)
	}
	delete(m.targets, rep)
	m.mu.Unlock()
	for _, l := range labels {
		m.Forget(rep, l)
	}
	m.Snapshots.DeleteLabelValues(rep)
}

// ObserveReplication sets the per-target gauges of dr from its status:
// z8r_last_sync_timestamp_seconds (never moved back within a process),
// z8r_snapshots_behind, z8r_target_consecutive_failures,
// z8r_target_out_of_sync and what z8r_missed_intervals is computed from at
// scrape time (the time of the newest snapshot each target has, and the
// schedule, with clock as "now"). Targets removed from the spec (in their
// grace period) and targets no longer listed lose their series; a suspended
// replication has no out-of-sync, consecutive-failure or missed-interval
// series (nothing is expected of it, so nothing alerts). The reconciler
// calls it with every status it writes, and through ObserveRead with the
// status it read the first time it sees a replication (after a restart).
func (m *Metrics) ObserveReplication(dr *z8rv1.DatasetReplication, clock schedule.Clock) {
	if m == nil || dr == nil {
		return
	}
	rep, st := dr.Name, &dr.Status
	sched, serr := schedule.Parse(orDefault(dr.Spec.Schedule, schedule.DefaultInterval.String()))
	blocked := replicationBlocked(st)
	seen := map[string]bool{}
	for _, ts := range st.Targets {
		if ts.RemovedAt != nil {
			continue
		}
		label := ts.Node + ":" + ts.Dataset
		seen[label] = true
		if ts.LastSyncTime != nil {
			m.setLastSync(rep, label, ts.LastSyncTime.Time)
		}
		m.Behind.WithLabelValues(rep, label).Set(float64(ts.SnapshotsBehind))
		if dr.Spec.Suspend {
			m.outOfSync.DeleteLabelValues(rep, label)
			m.failures.DeleteLabelValues(rep, label)
			m.missed.forget(rep, label)
			continue
		}
		m.failures.WithLabelValues(rep, label).Set(float64(ts.ConsecutiveFailures))
		m.outOfSync.WithLabelValues(rep, label).Set(boolGauge(blocked || targetOutOfSync(ts.State)))
		if newest, ok := targetNewest(dr, ts); ok && serr == nil {
			m.missed.set(rep, label, missedEntry{newest: newest, sched: sched, clock: clock})
		} else {
			m.missed.forget(rep, label)
		}
	}
	m.mu.Lock()
	prev := m.targets[rep]
	m.targets[rep] = seen
	m.mu.Unlock()
	for l := range prev {
		if !seen[l] {
			m.Forget(rep, l)
		}
	}
}

// ObserveRead is ObserveReplication for the status a reconcile read from
// the cache, which may be older than a status this process wrote since:
// it sets the gauges only the first time the replication is seen (after a
// restart); from then on the statuses written keep them current, and a
// stale read cannot set them back.
func (m *Metrics) ObserveRead(dr *z8rv1.DatasetReplication, clock schedule.Clock) {
	if m == nil || dr == nil {
		return
	}
	m.mu.Lock()
	_, seen := m.targets[dr.Name]
	m.mu.Unlock()
	if !seen {
		m.ObserveReplication(dr, clock)
	}
}

func (m *Metrics) setLastSync(rep, label string, t time.Time) {
	k := [2]string{rep, label}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.lastSyncs[k]; ok && !t.After(cur) {
		return
	}
	m.lastSyncs[k] = t
	m.lastSync.WithLabelValues(rep, label).Set(float64(t.UnixNano()) / 1e9)
	m.sinceSuccess.setIfNewer(rep, label, t)
}

// replicationBlocked: the replication as a whole cannot keep its targets
// current (its Ready condition says why).
func replicationBlocked(st *z8rv1.DatasetReplicationStatus) bool {
	c := meta.FindStatusCondition(st.Conditions, z8rv1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse {
		return false
	}
	switch c.Reason {
	case z8rv1.ReasonSourceUnavailable, z8rv1.ReasonSourceFailed, z8rv1.ReasonConflict, z8rv1.ReasonInvalidSpec,
		z8rv1.ReasonPromotionWaiting, z8rv1.ReasonPromotionRefused:
		return true
	}
	return false
}

// targetOutOfSync: a target state in which the last attempt did not bring
// the target up to date (Synced, Behind after a successful sync, and
// Syncing are not).
func targetOutOfSync(state string) bool {
	switch state {
	case z8rv1.TargetSynced, z8rv1.TargetBehind, z8rv1.TargetSyncing:
		return false
	}
	return true
}

// targetNewest is the time of the newest snapshot a target has: the time in
// z8r's snapshot name, else the source's newest snapshot's time when it is
// that one; a target with no snapshot yet counts from the replication's
// creation. ok is false when the time cannot be known (a foreign snapshot).
func targetNewest(dr *z8rv1.DatasetReplication, ts z8rv1.TargetStatus) (time.Time, bool) {
	switch {
	case ts.LastSnapshot == "":
		return dr.CreationTimestamp.Time, !dr.CreationTimestamp.IsZero()
	case ts.LastSnapshot == dr.Status.LastSnapshot && dr.Status.LastSnapshotTime != nil:
		return dr.Status.LastSnapshotTime.Time, true
	}
	if _, t, ok := snapname.Parse(ts.LastSnapshot); ok {
		return t, true
	}
	return time.Time{}, false
}

// missedIntervals counts the activations of s after newest up to now.
func missedIntervals(s schedule.Schedule, newest, now time.Time) int {
	if !now.After(newest) {
		return 0
	}
	if d, ok := s.Interval(); ok {
		return min(int(now.Sub(newest)/d), maxMissed)
	}
	n := 0
	for t := s.Next(newest); !t.IsZero() && !t.After(now) && n < maxMissed; t = s.Next(t) {
		n++
	}
	return n
}

// Transfer makes a target's sync visible while it runs: z8r_transfer_active
// is 1, z8r_transfer_bytes counts the bytes its steps moved so far and
// z8r_transfer_last_progress_timestamp_seconds is when they last grew. It
// returns the progress function to pass to the sync (it calls next too)
// and done, to call when the sync returned.
//
// z8r_transfer_bytes starts again from the first report of a sync that
// moves data: a sync with nothing to send (most reconciles) leaves the last
// transfer's bytes in place instead of zeroing them.
func (m *Metrics) Transfer(rep, target string, next func(int, agent.Progress)) (progress func(int, agent.Progress), done func()) {
	if m == nil {
		return next, func() {}
	}
	m.transferActive.WithLabelValues(rep, target).Set(1)
	m.transferBytes.WithLabelValues(rep, target) // the series exists from the first sync on
	m.transferMoved.WithLabelValues(rep, target).Set(unixSeconds(m.now()))
	var mu sync.Mutex
	step, stepBytes, doneBytes := 0, int64(0), int64(0)
	progress = func(i int, p agent.Progress) {
		mu.Lock()
		if i != step {
			doneBytes += stepBytes
			step, stepBytes = i, 0
		}
		if p.Bytes > stepBytes {
			stepBytes = p.Bytes
			m.transferBytes.WithLabelValues(rep, target).Set(float64(doneBytes + stepBytes))
			m.transferMoved.WithLabelValues(rep, target).Set(unixSeconds(m.now()))
		}
		mu.Unlock()
		if next != nil {
			next(i, p)
		}
	}
	done = func() { m.transferActive.WithLabelValues(rep, target).Set(0) }
	return progress, done
}

// ObserveNode sets a node's gauges from its Z8RNode: ready, last heartbeat
// and whether its agent presents a host key other than the pinned one.
func (m *Metrics) ObserveNode(zn *z8rv1.Z8RNode) {
	if m == nil || zn == nil {
		return
	}
	m.nodeReady.WithLabelValues(zn.Name).Set(boolGauge(zn.Status.Ready))
	if hb := zn.Status.LastHeartbeatTime; hb != nil {
		m.nodeHeartbeat.WithLabelValues(zn.Name).Set(unixSeconds(hb.Time))
	}
	changed := zn.Status.HostKey != "" && zn.Spec.PinnedHostKey != "" && zn.Status.HostKey != zn.Spec.PinnedHostKey
	m.nodeKeyChange.WithLabelValues(zn.Name).Set(boolGauge(changed))
}

// ForgetNode drops a node's series (its Z8RNode is gone).
func (m *Metrics) ForgetNode(node string) {
	if m == nil {
		return
	}
	m.nodeReady.DeleteLabelValues(node)
	m.nodeHeartbeat.DeleteLabelValues(node)
	m.nodeKeyChange.DeleteLabelValues(node)
}

// SnapshotReady records how long a VolumeSnapshotContent of driver took
// from its creation to z8r marking it readyToUse. Call it once, when the
// content turns ready.
func (m *Metrics) SnapshotReady(driver string, created, ready time.Time) {
	if m == nil || created.IsZero() {
		return
	}
	m.snapshotReady.WithLabelValues(driver).Observe(max(ready.Sub(created), 0).Seconds())
}

// SnapshotReplicated counts one replication of a content's snapshot to
// node, by its outcome (the target state it ended in).
func (m *Metrics) SnapshotReplicated(node, outcome string) {
	if m == nil {
		return
	}
	m.snapshotReplications.WithLabelValues(node, outcome).Inc()
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// sinceCollector reports now minus the last success time at scrape time.
type sinceCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	last map[[2]string]time.Time
}

func (c *sinceCollector) set(rep, target string, t time.Time) {
	c.mu.Lock()
	c.last[[2]string{rep, target}] = t
	c.mu.Unlock()
}

func (c *sinceCollector) setIfNewer(rep, target string, t time.Time) {
	c.mu.Lock()
	if cur, ok := c.last[[2]string{rep, target}]; !ok || t.After(cur) {
		c.last[[2]string{rep, target}] = t
	}
	c.mu.Unlock()
}

func (c *sinceCollector) forget(rep, target string) {
	c.mu.Lock()
	delete(c.last, [2]string{rep, target})
	c.mu.Unlock()
}

func (c *sinceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sinceCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, t := range c.last {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, now.Sub(t).Seconds(), k[0], k[1])
	}
}

// missedCollector reports z8r_missed_intervals at scrape time, so the value
// grows while nothing reconciles (a source down, a controller whose workers
// are all busy).
type missedCollector struct {
	desc    *prometheus.Desc
	mu      sync.Mutex
	targets map[[2]string]missedEntry
}

type missedEntry struct {
	newest time.Time
	sched  schedule.Schedule
	clock  schedule.Clock
}

func (c *missedCollector) set(rep, target string, e missedEntry) {
	c.mu.Lock()
	c.targets[[2]string{rep, target}] = e
	c.mu.Unlock()
}

func (c *missedCollector) forget(rep, target string) {
	c.mu.Lock()
	delete(c.targets, [2]string{rep, target})
	c.mu.Unlock()
}

func (c *missedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *missedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.targets {
		now := time.Now()
		if e.clock != nil {
			now = e.clock.Now()
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(missedIntervals(e.sched, e.newest, now)), k[0], k[1])
	}
}
