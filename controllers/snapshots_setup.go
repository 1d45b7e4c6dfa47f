package controllers

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// snapshotAPIServed reports whether the cluster serves
// snapshot.storage.k8s.io/v1 VolumeSnapshotContents; if it does, the
// manager's scheme must know them.
func snapshotAPIServed(mgr manager.Manager) (bool, error) {
	gk := schema.GroupKind{Group: snapshotv1.GroupName, Kind: "VolumeSnapshotContent"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, "v1"); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", gk, err)
	}
	if !mgr.GetScheme().Recognizes(snapshotv1.SchemeGroupVersion.WithKind("VolumeSnapshotContent")) {
		return false, fmt.Errorf("the manager's scheme lacks %s", snapshotv1.SchemeGroupVersion)
	}
	return true, nil
}

// setupSnapshots registers the VolumeSnapshot integration (only on a
// cluster that serves snapshot.storage.k8s.io/v1: snapshotAPIServed): the
// field indexes they list by (snapshotIndexes), the snapshotter and the
// VolumeSnapshot replication on VolumeSnapshotContents, and the PVC
// annotations (schedules, and replication of volumes without CSI).
func setupSnapshots(mgr manager.Manager, cfg Config, slots *transferSlots) error {
	ctx := context.Background()
	for _, ix := range snapshotIndexes {
		if err := mgr.GetFieldIndexer().IndexField(ctx, ix.Object, ix.Field, ix.Extract); err != nil {
			return fmt.Errorf("index %T by %s: %w", ix.Object, ix.Field, err)
		}
	}
	drivers := map[string]bool{z8rv1.DriverName: true}
	for _, d := range cfg.SnapshotDrivers {
		if d != "" {
			drivers[d] = true
		}
	}
	rec := NewLimitedRecorder(mgr.GetEventRecorder("z8r-controller"))
	skip := cfg.SkipNameValidation
	if err := (&SnapshotterReconciler{Client: mgr.GetClient(), Recorder: rec, Agents: cfg.Agents, Clock: cfg.Clock,
		Drivers: drivers, Hooks: cfg.SnapshotHooks, Metrics: cfg.Metrics, skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("snapshotter controller: %w", err)
	}
	if err := (&VolumeSnapshotReplicationReconciler{Client: mgr.GetClient(), Recorder: rec, Agents: cfg.Agents, Clock: cfg.Clock,
		Drivers: drivers, Metrics: cfg.Metrics, slots: slots, skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("volumesnapshot replication controller: %w", err)
	}
	if err := (&PVCAnnotationsReconciler{Client: mgr.GetClient(), Recorder: rec, Clock: cfg.Clock, Agents: cfg.Agents,
		skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("pvc annotations controller: %w", err)
	}
	return nil
}
