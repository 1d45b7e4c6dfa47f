package controllers

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The controller serves its metrics only to callers the API server
// authenticates and authorizes (cmd/z8r-controller), and asks the API server
// with TokenReviews and SubjectAccessReviews.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Metrics are z8r's Prometheus metrics, labelled by replication and target.
type Metrics struct {
	SyncDuration *prometheus.HistogramVec
	SyncBytes    *prometheus.CounterVec
	SyncFailures *prometheus.CounterVec
	Behind       *prometheus.GaugeVec
	Snapshots    *prometheus.CounterVec
	sinceSuccess *sinceCollector
}

// NewMetrics creates the metrics and registers them with reg (nil: the
// controller-runtime registry served on the manager's metrics endpoint).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = metrics.Registry
	}
	labels := []string{"replication", "target"}
	m := &Metrics{
		SyncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "z8r_sync_duration_seconds", Help: "Duration of successful syncs of one target.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}, labels),
		SyncBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_sync_bytes_total", Help: "Bytes of send streams delivered to a target."}, labels),
		SyncFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_sync_failures_total", Help: "Failed syncs of a target, by reason."}, append(labels, "reason")),
		Behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "z8r_snapshots_behind", Help: "Source snapshots a target still lacks."}, labels),
		Snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "z8r_snapshots_created_total", Help: "Snapshots z8r took on a source."}, []string{"replication"}),
		sinceSuccess: &sinceCollector{desc: prometheus.NewDesc("z8r_seconds_since_last_successful_sync",
			"Seconds since a target last finished a sync successfully.", labels, nil), last: map[[2]string]time.Time{}},
	}
	for _, c := range []prometheus.Collector{m.SyncDuration, m.SyncBytes, m.SyncFailures, m.Behind, m.Snapshots, m.sinceSuccess} {
		// Registering twice (a second manager in one process) keeps the
		// first registration; any other error is a programming mistake.
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			panic(fmt.Sprintf("controllers: register metrics: %v", err))
		}
	}
	return m
}

// Succeeded records a successful sync at t.
func (m *Metrics) Succeeded(rep, target string, t time.Time) { m.sinceSuccess.set(rep, target, t) }

// Forget drops a target's series (target or replication removed).
func (m *Metrics) Forget(rep, target string) {
	m.Behind.DeleteLabelValues(rep, target)
	m.sinceSuccess.forget(rep, target)
}

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
