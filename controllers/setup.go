package controllers

import (
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/z8r-project/z8r/internal/schedule"
)

// Config wires the reconcilers.
type Config struct {
	Agents         NodeAccess
	Clock          schedule.Clock
	SnapshotPrefix string
	// Metrics; nil registers new ones with controller-runtime's registry.
	Metrics *Metrics
	// SkipNameValidation lets several managers in one process (tests)
	// register controllers with the same names.
	SkipNameValidation bool
	// SnapshotDrivers are CSI drivers, besides zfs.z8r.dev, whose
	// VolumeSnapshotContents z8r takes the snapshots of (the
	// csi-snapshotter sidecar's role). Their volumes must resolve to a ZFS
	// dataset (package pvresolve).
	SnapshotDrivers []string
	// SnapshotHooks inject faults in tests; nil in production.
	SnapshotHooks SnapshotHooks
	// RemovedTargetGrace: how long a target removed from a
	// DatasetReplication keeps its base held (default
	// DefaultRemovedTargetGrace).
	RemovedTargetGrace time.Duration
	// ProgressInterval: how often a running sync's progress is written to
	// status (default DefaultProgressInterval; at most 10 s keeps the
	// API's promise).
	ProgressInterval time.Duration
	// TransferLimits cap concurrent transfers, DatasetReplications' and
	// VolumeSnapshots' together; nil is DefaultTransferLimits.
	TransferLimits *TransferLimits
	// ReplicationWorkers: DatasetReplication reconciles at once (default
	// 4). A transfer that outlasts DetachAfter does not keep its worker.
	ReplicationWorkers int
	// DetachAfter: how long a reconcile waits for a sync that transfers
	// before it leaves it in the background (default DefaultDetachAfter;
	// negative: at once).
	DetachAfter time.Duration
}

// Setup registers every reconciler with mgr.
func Setup(mgr manager.Manager, cfg Config) error {
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.RealClock{}
	}
	// Notes cut to the apiserver's limit, so no Warning is ever rejected.
	rec := NewLimitedRecorder(mgr.GetEventRecorder("z8r-controller"))
	skip := cfg.SkipNameValidation
	limits := DefaultTransferLimits
	if cfg.TransferLimits != nil {
		limits = *cfg.TransferLimits
	}
	slots := newTransferSlots(limits)
	if err := (&Z8RNodeReconciler{Client: mgr.GetClient(), Recorder: rec, Metrics: cfg.Metrics, skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("z8rnode controller: %w", err)
	}
	if err := (&NodePolicyReconciler{Client: mgr.GetClient(), Recorder: rec, skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("node policy controller: %w", err)
	}
	served, err := snapshotAPIServed(mgr)
	if err != nil {
		return err
	}
	if err := (&DatasetReplicationReconciler{Client: mgr.GetClient(), Recorder: rec, Agents: cfg.Agents,
		Metrics: cfg.Metrics, Clock: cfg.Clock, SnapshotPrefix: cfg.SnapshotPrefix, RemovedTargetGrace: cfg.RemovedTargetGrace,
		ProgressInterval: cfg.ProgressInterval, SnapshotsServed: served, APIReader: mgr.GetAPIReader(), slots: slots, skipNameValidation: skip,
		MaxConcurrent: cfg.ReplicationWorkers, DetachAfter: cfg.DetachAfter}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replication controller: %w", err)
	}
	if err := (&ReplicaRestoreReconciler{Client: mgr.GetClient(), Recorder: rec, Agents: cfg.Agents,
		SnapshotsServed: served, APIReader: mgr.GetAPIReader(), skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("replica restore controller: %w", err)
	}
	if !served {
		mgr.GetLogger().WithName("setup").Info("snapshot.storage.k8s.io/v1 is not served; VolumeSnapshot integration is off (install the snapshot CRDs and snapshot-controller)")
		return nil
	}
	if err := setupSnapshots(mgr, cfg, slots); err != nil {
		return fmt.Errorf("snapshot controllers: %w", err)
	}
	return nil
}
