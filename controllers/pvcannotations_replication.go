package controllers

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// PVC annotations' DatasetReplications.
const (
	// managedByPVCAnnotations marks a DatasetReplication made for a PVC.
	managedByPVCAnnotations = "pvc-annotations"
	// annotationPVC and annotationPV on it name the PVC (namespace/name)
	// and the PV whose dataset it keeps.
	annotationPVC = "z8r.dev/pvc"
	annotationPV  = "z8r.dev/pv"
)

// pvcReplicationName names the DatasetReplication of a PVC.
func pvcReplicationName(namespace, name string) string { return "pvc-" + policy.ID(namespace, name) }

// reconcileReplication keeps the DatasetReplication of a non-CSI PVC in
// line with its annotations.
func (r *PVCAnnotationsReconciler) reconcileReplication(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (reconcile.Result, error) {
	vol, err := pvresolve.Resolve(pv)
	if err != nil {
		return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
	}
	name := pvcReplicationName(pvc.Namespace, pvc.Name)
	var cur z8rv1.DatasetReplication
	err = r.Client.Get(ctx, client.ObjectKey{Name: name}, &cur)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	if vol.NeedsMountpointLookup() {
		if exists && cur.Annotations[annotationPV] == pv.Name && cur.Spec.Source.Node == vol.Node {
			vol.Dataset = cur.Spec.Source.Dataset // resolved before; the path is immutable
		} else if vol, err = r.datasetAt(ctx, pv.Name, vol); err != nil {
			if errors.Is(err, pvresolve.ErrNoDatasetAtPath) || errors.Is(err, pvresolve.ErrIncomplete) || errors.Is(err, ErrNodeUnknown) {
				return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
			}
			logf.FromContext(ctx).Error(err, "resolve local volume failed", "pv", pv.Name, "node", vol.Node)
			return reconcile.Result{RequeueAfter: retryTransient}, nil
		}
	}
	targets, err := volsnap.ResolveTargets(pvc.Annotations[z8rv1.AnnotationReplicateTo], vol.Node, vol.Dataset)
	if err != nil {
		return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
	}
	spec := z8rv1.DatasetReplicationSpec{
		Source:    z8rv1.DatasetRef{Node: vol.Node, Dataset: vol.Dataset},
		Schedule:  pvc.Annotations[z8rv1.AnnotationSchedule],
		Retention: pvc.Annotations[z8rv1.AnnotationRetention],
	}
	for _, t := range targets {
		spec.Targets = append(spec.Targets, z8rv1.ReplicationTarget{Node: t.Node, Dataset: t.Dataset})
	}
	meta := metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{z8rv1.LabelManagedBy: managedByPVCAnnotations, z8rv1.LabelPVCUID: string(pvc.UID)},
		Annotations: map[string]string{annotationPVC: pvc.Namespace + "/" + pvc.Name, annotationPV: pv.Name},
	}
	switch {
	case !exists:
		dr := &z8rv1.DatasetReplication{ObjectMeta: meta, Spec: spec}
		if err := r.Client.Create(ctx, dr); err != nil {
			return reconcile.Result{}, fmt.Errorf("create DatasetReplication %s: %w", name, err)
		}
	case cur.Labels[z8rv1.LabelManagedBy] != managedByPVCAnnotations:
		return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo],
			fmt.Errorf("DatasetReplication %s exists and is not z8r's for this PVC", name))
	case reflect.DeepEqual(cur.Spec, spec) && cur.Annotations[annotationPV] == pv.Name:
		return reconcile.Result{}, nil
	default:
		old := cur.DeepCopy()
		cur.Spec = spec
		for k, v := range meta.Labels {
			cur.Labels[k] = v
		}
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		for k, v := range meta.Annotations {
			cur.Annotations[k] = v
		}
		if err := r.Client.Patch(ctx, &cur, client.MergeFrom(old)); err != nil {
			return reconcile.Result{}, fmt.Errorf("update DatasetReplication %s: %w", name, err)
		}
	}
	logf.FromContext(ctx).Info("configured DatasetReplication for PVC", "replication", name, "node", vol.Node, "dataset", vol.Dataset)
	r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
		"DatasetReplication %s keeps %s on node %s (targets %v)", name, vol.Dataset, vol.Node, targets)
	return reconcile.Result{}, nil
}

// datasetAt finds the dataset mounted at a local volume's path, from the
// mountpoints of the pools the node's agent serves.
func (r *PVCAnnotationsReconciler) datasetAt(ctx context.Context, pv string, vol pvresolve.Volume) (pvresolve.Volume, error) {
	if r.Agents == nil {
		return vol, errors.New("no agent pool to ask for mountpoints")
	}
	var zn z8rv1.ZFSNode
	if err := r.Client.Get(ctx, client.ObjectKey{Name: vol.Node}, &zn); err != nil {
		if apierrors.IsNotFound(err) {
			return vol, fmt.Errorf("node %s: %w", vol.Node, ErrNodeUnknown)
		}
		return vol, err
	}
	node, err := r.Agents.Get(ctx, vol.Node)
	if err != nil {
		return vol, err
	}
	var mounts []pvresolve.Mount
	for _, pool := range zn.Status.Pools {
		m, err := node.ZFS().Mountpoints(ctx, pool)
		if err != nil {
			r.Agents.DropFailed(err, node)
			return vol, fmt.Errorf("mountpoints of %s on node %s: %w", pool, vol.Node, err)
		}
		for ds, mp := range m {
			mounts = append(mounts, pvresolve.Mount{Dataset: ds, Mountpoint: mp})
		}
	}
	return pvresolve.DatasetAtMountpoint(pv, vol, mounts)
}

// dropReplication deletes the PVC's DatasetReplication, if z8r made one
// (its finalizer releases the holds on the source).
func (r *PVCAnnotationsReconciler) dropReplication(ctx context.Context, namespace, name string, pvc *corev1.PersistentVolumeClaim) error {
	var dr z8rv1.DatasetReplication
	err := r.Client.Get(ctx, client.ObjectKey{Name: pvcReplicationName(namespace, name)}, &dr)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if dr.Labels[z8rv1.LabelManagedBy] != managedByPVCAnnotations || !dr.DeletionTimestamp.IsZero() {
		return nil
	}
	if err := r.Client.Delete(ctx, &dr); client.IgnoreNotFound(err) != nil {
		return err
	}
	logf.FromContext(ctx).Info("deleted the PVC's DatasetReplication", "replication", dr.Name)
	if pvc != nil {
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
			"DatasetReplication %s deleted: the PVC no longer asks for snapshots or replicas", dr.Name)
	}
	return nil
}
