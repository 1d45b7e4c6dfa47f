package controllers

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
)

// snapshotAPIServed reports whether the cluster serves
// snapshot.storage.k8s.io/v1 VolumeSnapshotContents.
func snapshotAPIServed(mgr manager.Manager) (bool, error) {
	gk := schema.GroupKind{Group: snapshotv1.GroupName, Kind: "VolumeSnapshotContent"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, "v1"); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", gk, err)
	}
	return mgr.GetScheme().Recognizes(snapshotv1.SchemeGroupVersion.WithKind("VolumeSnapshotContent")), nil
}

// setupSnapshots registers the VolumeSnapshot integration: the
// snapshotter and replication roles on VolumeSnapshotContents and the PVC
// schedule. It does nothing (and says so) on a cluster without the
// snapshot.storage.k8s.io/v1 API.
func setupSnapshots(mgr manager.Manager, cfg Config) error {
	log := mgr.GetLogger().WithName("setup")
	gk := schema.GroupKind{Group: snapshotv1.GroupName, Kind: "VolumeSnapshotContent"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, "v1"); err != nil {
		if meta.IsNoMatchError(err) {
			log.Info("snapshot.storage.k8s.io/v1 is not served; VolumeSnapshot integration is off (install the snapshot CRDs and snapshot-controller)")
			return nil
		}
		return fmt.Errorf("look up %s: %w", gk, err)
	}
	if !mgr.GetScheme().Recognizes(snapshotv1.SchemeGroupVersion.WithKind("VolumeSnapshotContent")) {
		return fmt.Errorf("the manager's scheme lacks %s", snapshotv1.SchemeGroupVersion)
	}
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

// SetupWithManager registers the reconciler. Besides its contents it
// follows: a replica content's changes (its deletion unblocks the source's),
// and replicate-to changes on VolumeSnapshots and PVCs (a request added
// after the snapshot was ready).
func (r *VolumeSnapshotContentReconciler) SetupWithManager(mgr manager.Manager) error {
	if r.MaxConcurrent == 0 {
		r.MaxConcurrent = 4
	}
	replicaToSource := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if src := o.GetAnnotations()[z8rv1.AnnotationReplicaOf]; src != "" && o.GetLabels()[z8rv1.LabelReplicaOfUID] != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: src}}}
		}
		return nil
	})
	snapshotToContent := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		vs, ok := o.(*snapshotv1.VolumeSnapshot)
		if !ok || vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: *vs.Status.BoundVolumeSnapshotContentName}}}
	})
	claimToContents := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		pvc, ok := o.(*corev1.PersistentVolumeClaim)
		if !ok || pvc.Spec.VolumeName == "" {
			return nil
		}
		var pv corev1.PersistentVolume
		if err := r.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil || pv.Spec.CSI == nil {
			return nil
		}
		var list snapshotv1.VolumeSnapshotContentList
		if err := r.Client.List(ctx, &list, client.MatchingFields{indexContentByVolume: pvresolve.CSIKey(pv.Spec.CSI.Driver, pv.Spec.CSI.VolumeHandle)}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, c := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: c.Name}})
		}
		return out
	})
	return builder.ControllerManagedBy(mgr).
		Named("volumesnapshotcontent").
		For(&snapshotv1.VolumeSnapshotContent{}).
		Watches(&snapshotv1.VolumeSnapshotContent{}, replicaToSource).
		Watches(&snapshotv1.VolumeSnapshot{}, snapshotToContent, builder.WithPredicates(replicateToChanged())).
		Watches(&corev1.PersistentVolumeClaim{}, claimToContents, builder.WithPredicates(replicateToChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrent, SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}

// replicateToChanged passes updates that change z8r.dev/replicate-to.
func replicateToChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.GetAnnotations()[z8rv1.AnnotationReplicateTo]
			n, okNew := e.ObjectNew.GetAnnotations()[z8rv1.AnnotationReplicateTo]
			return o != n || okOld != okNew
		},
	}
}
