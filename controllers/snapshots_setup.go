package controllers

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
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
// snapshotter and replication roles on VolumeSnapshotContents and the PVC
// schedule.
func setupSnapshots(mgr manager.Manager, cfg Config) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &corev1.PersistentVolume{}, indexPVByCSI, func(o client.Object) []string {
		pv := o.(*corev1.PersistentVolume)
		if pv.Spec.CSI == nil {
			return nil
		}
		return []string{pvresolve.CSIKey(pv.Spec.CSI.Driver, pv.Spec.CSI.VolumeHandle)}
	}); err != nil {
		return fmt.Errorf("index PVs: %w", err)
	}
	if err := idx.IndexField(ctx, &snapshotv1.VolumeSnapshotContent{}, indexContentByVolume, func(o client.Object) []string {
		c := o.(*snapshotv1.VolumeSnapshotContent)
		if c.Spec.Source.VolumeHandle == nil {
			return nil
		}
		return []string{pvresolve.CSIKey(c.Spec.Driver, *c.Spec.Source.VolumeHandle)}
	}); err != nil {
		return fmt.Errorf("index VolumeSnapshotContents: %w", err)
	}
	drivers := map[string]bool{z8rv1.DriverName: true}
	for _, d := range cfg.SnapshotDrivers {
		if d != "" {
			drivers[d] = true
		}
	}
	rec := NewLimitedRecorder(mgr.GetEventRecorder("z8r-controller"))
	skip := cfg.SkipNameValidation
	if err := (&VolumeSnapshotContentReconciler{Client: mgr.GetClient(), Recorder: rec, Agents: cfg.Agents, Clock: cfg.Clock,
		Drivers: drivers, Hooks: cfg.SnapshotHooks, skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("volumesnapshotcontent controller: %w", err)
	}
	if err := (&PVCAnnotationsReconciler{Client: mgr.GetClient(), Recorder: rec, Clock: cfg.Clock, Agents: cfg.Agents,
		skipNameValidation: skip}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("pvc annotations controller: %w", err)
	}
	return nil
}
