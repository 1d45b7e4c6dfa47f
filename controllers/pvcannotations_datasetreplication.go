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
	managedByPVCAnnotations = z8rv1.ManagedByPVCAnnotations
	// annotationPVC and annotationPV on it name the PVC (namespace/name)
	// and the PV whose dataset it keeps.
	annotationPVC = "z8r.dev/pvc"
	annotationPV  = "z8r.dev/pv"
	// annotationHandedOver on a DatasetReplication that was a PVC's
	// names that PVC (namespace/name): the replication was promoted away
	// from the PVC's volume and handed over to the administrator.
	annotationHandedOver = "z8r.dev/handed-over-from"
)

// promotedAway reports a promotion of dr asked for (spec.source moved to
// a target), running, refused or completed: its source is, or is about
// to be, another dataset than the PVC's volume, and the PVC's annotations
// must neither change nor delete it (that would undo or orphan the
// promotion, and could leave the old source read-only).
func promotedAway(dr *z8rv1.DatasetReplication) bool {
	if dr.Status.Source != nil && *dr.Status.Source != dr.Spec.Source {
		return true
	}
	p := dr.Status.Promotion
	return p != nil && (promotionRunning(p) || p.Phase == z8rv1.PromotionCompleted)
}

// handOver ends z8r's management of a promoted PVC replication: the labels
// and annotations that make it the PVC's go, annotationHandedOver records
// where it came from. The replication itself (its source, now the
// promoted target, and its targets, the old source among them) is left
// as it is; from then on it is the administrator's, like any
// DatasetReplication they create.
func (r *PVCAnnotationsReconciler) handOver(ctx context.Context, dr *z8rv1.DatasetReplication, namespace, name string, pvc *corev1.PersistentVolumeClaim) error {
	patch := client.MergeFromWithOptions(dr.DeepCopy(), client.MergeFromWithOptimisticLock{})
	delete(dr.Labels, z8rv1.LabelManagedBy)
	delete(dr.Labels, z8rv1.LabelPVCUID)
	delete(dr.Annotations, annotationPVC)
	delete(dr.Annotations, annotationPV)
	if dr.Annotations == nil {
		dr.Annotations = map[string]string{}
	}
	dr.Annotations[annotationHandedOver] = namespace + "/" + name
	if err := r.Client.Patch(ctx, dr, patch); err != nil {
		return fmt.Errorf("hand over DatasetReplication %s: %w", dr.Name, err)
	}
	src := sourceInForce(dr)
	logf.FromContext(ctx).Info("handed over a promoted PVC replication", "replication", dr.Name, "source", refString(src))
	if pvc != nil {
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationHandedOver, "Promote",
			"DatasetReplication %s was promoted: %s is its source now and it replicates from there; this PVC's annotations no longer manage it (docs/failover.md, PVCs)", dr.Name, refString(dr.Spec.Source))
	}
	return nil
}

// promotedNote is the PVC's problem while its replication is promoted
// away (running) or after it was handed over.
func promotedNote(dr *z8rv1.DatasetReplication) string {
	if dr.Annotations[annotationHandedOver] == "" {
		phase := "requested"
		if p := dr.Status.Promotion; p != nil && promotionRunning(p) {
			phase = p.Phase
		}
		return fmt.Sprintf("DatasetReplication %s is being promoted to %s (%s): this PVC's annotations are not applied to it meanwhile", dr.Name, refString(dr.Spec.Source), phase)
	}
	return fmt.Sprintf("DatasetReplication %s was promoted to %s and handed over to the administrator; this PVC's replication annotations have no effect until it is deleted (docs/failover.md, PVCs)", dr.Name, refString(dr.Spec.Source))
}

// PVCReplicationName names the DatasetReplication of a PVC: "pvc-", a
// readable part and 64 bits of a hash of namespace and name, at most 63
// characters (so it also fits a label value).
func PVCReplicationName(namespace, name string) string {
	return "pvc-" + policy.LongID(63-len("pvc-"), namespace, name)
}

// legacyPVCReplicationName is the name earlier versions gave it (a 32-bit
// hash). Such an object, when it is this PVC's, keeps its name: its
// snapshots are owned under that name (z8r.dev:policy), so renaming it
// would orphan them.
func legacyPVCReplicationName(namespace, name string) string {
	return "pvc-" + policy.ID(namespace, name)
}

// errReplicationNameTaken: the computed name is another owner's object.
var errReplicationNameTaken = errors.New("the DatasetReplication name is taken by another owner")

// errHandedOver: the computed name is the PVC's former replication,
// promoted away and handed over to the administrator (handOver).
var errHandedOver = errors.New("the PVC's DatasetReplication was promoted and handed over")

// ownsReplication reports whether dr is the DatasetReplication z8r made
// for the PVC namespace/name: labelled as PVC annotations' and annotated
// with that namespace and name. (Its z8r.dev/pvc-uid label may name an
// earlier PVC of the same name, which is gone since names are unique in a
// namespace; reconcile then relabels it.)
func ownsReplication(dr *z8rv1.DatasetReplication, namespace, name string) bool {
	return dr.Labels[z8rv1.LabelManagedBy] == managedByPVCAnnotations && dr.Annotations[annotationPVC] == namespace+"/"+name
}

// pvcReplication finds the PVC's DatasetReplication: under its name, else
// under the legacy name when that object is this PVC's. cur is nil when
// there is none; name is where it is or would be created. The computed
// name held by someone else's object is errReplicationNameTaken.
func (r *PVCAnnotationsReconciler) pvcReplication(ctx context.Context, namespace, pvcName string) (cur *z8rv1.DatasetReplication, name string, err error) {
	name = PVCReplicationName(namespace, pvcName)
	var taken *z8rv1.DatasetReplication
	for _, n := range []string{name, legacyPVCReplicationName(namespace, pvcName)} {
		var dr z8rv1.DatasetReplication
		err := r.Client.Get(ctx, client.ObjectKey{Name: n}, &dr)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, name, err
		case ownsReplication(&dr, namespace, pvcName):
			return &dr, n, nil
		case n == name:
			taken = &dr
		}
		// A legacy-named object of another PVC is not ours: never touched.
	}
	if taken != nil && taken.Annotations[annotationHandedOver] == namespace+"/"+pvcName {
		return taken, name, errHandedOver
	}
	if taken != nil {
		owner := taken.Annotations[annotationPVC]
		if taken.Labels[z8rv1.LabelManagedBy] != managedByPVCAnnotations || owner == "" {
			owner = "not a PVC's"
		}
		return nil, name, fmt.Errorf("DatasetReplication %s (owner: %s): %w", name, owner, errReplicationNameTaken)
	}
	return nil, name, nil
}

// reconcileReplication keeps the DatasetReplication of a non-CSI PVC in
// line with its annotations, within what the administrator's
// ReplicationTargetPolicies allow. It returns the PVC's current problem.
func (r *PVCAnnotationsReconciler) reconcileReplication(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (reconcile.Result, string, error) {
	log := logf.FromContext(ctx)
	vol, err := pvresolve.Resolve(pv, pvNodeIDs(ctx, r.Client))
	if err != nil {
		return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
	}
	cur, name, err := r.pvcReplication(ctx, pvc.Namespace, pvc.Name)
	if errors.Is(err, errHandedOver) {
		return reconcile.Result{}, promotedNote(cur), nil
	}
	if err == nil && cur != nil && promotedAway(cur) {
		if p := cur.Status.Promotion; p == nil || p.Phase != z8rv1.PromotionCompleted || cur.DeletionTimestamp != nil {
			return reconcile.Result{RequeueAfter: retryTransient}, promotedNote(cur), nil
		}
		if err := r.handOver(ctx, cur, pvc.Namespace, pvc.Name, pvc); err != nil {
			return reconcile.Result{}, "", err
		}
		return reconcile.Result{}, promotedNote(cur), nil
	}
	if errors.Is(err, errReplicationNameTaken) {
		note := fmt.Sprintf("cannot keep this PVC's replication: %v; it is neither changed nor deleted", err)
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventReplicationNameTaken, "Configure", "%s", note)
		return reconcile.Result{RequeueAfter: retryInvalid}, note, nil
	}
	if err != nil {
		return reconcile.Result{}, "", err
	}
	exists := cur != nil
	if vol.NeedsMountpointLookup() {
		if exists && cur.Annotations[annotationPV] == pv.Name && cur.Spec.Source.Node == vol.Node {
			vol.Dataset = cur.Spec.Source.Dataset // resolved before; the path is immutable
		} else if vol, err = r.datasetAt(ctx, pv.Name, vol); err != nil {
			if errors.Is(err, pvresolve.ErrNoDatasetAtPath) || errors.Is(err, pvresolve.ErrIncomplete) || errors.Is(err, ErrNodeUnknown) {
				return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
			}
			log.Error(err, "resolve local volume failed", "pv", pv.Name, "node", vol.Node)
			return reconcile.Result{RequeueAfter: retryTransient}, "", nil
		}
	}
	targets, err := volsnap.ResolveTargets(pvc.Annotations[z8rv1.AnnotationReplicateTo], vol.Node, vol.Dataset)
	if err != nil {
		return r.invalid(pvc, z8rv1.AnnotationReplicateTo, pvc.Annotations[z8rv1.AnnotationReplicateTo], err)
	}
	// The PVC's targets are a tenant's: only what a policy allows.
	targets, refused, err := tenantScope(ctx, r.Client, pvc.Namespace, targets)
	if err != nil {
		return reconcile.Result{}, "", err
	}
	problem := ""
	if len(refused) > 0 {
		problem = refusalNote("PersistentVolumeClaim "+pvc.Namespace+"/"+pvc.Name, refused)
		log.Info("replica targets refused by ReplicationTargetPolicies", "refused", len(refused))
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventTargetNotAllowed, "Validate", "%s", problem)
	}
	_, scheduled := pvc.Annotations[z8rv1.AnnotationSchedule]
	if len(targets) == 0 && !scheduled {
		// Nothing allowed to replicate and no schedule: nothing is created;
		// an existing replication is left as it is until the annotation is
		// fixed or removed.
		return reconcile.Result{RequeueAfter: retryInvalid}, problem, nil
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
	requeue := reconcile.Result{}
	if len(refused) > 0 {
		requeue.RequeueAfter = retryInvalid // a policy may allow them later
	}
	switch {
	case !exists:
		dr := &z8rv1.DatasetReplication{ObjectMeta: meta, Spec: spec}
		if err := r.Client.Create(ctx, dr); err != nil {
			return reconcile.Result{}, "", fmt.Errorf("create DatasetReplication %s: %w", name, err)
		}
	case reflect.DeepEqual(cur.Spec, spec) && cur.Annotations[annotationPV] == pv.Name && cur.Labels[z8rv1.LabelPVCUID] == string(pvc.UID):
		return requeue, problem, nil
	case cur.DeletionTimestamp != nil:
		// Going away (its finalizer is releasing its holds): a new one is
		// created once it is gone, never patched in between.
		return reconcile.Result{RequeueAfter: retryTransient}, problem, nil
	case cur.Spec.Source != spec.Source:
		// The PVC now resolves to another dataset (re-created under the
		// same name on another volume). A replication's source is
		// immutable: its holds and snapshots belong to the old dataset. The
		// old replication is deleted (its finalizer releases its holds;
		// replicas stay on the targets) and a new one created next time.
		if err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, "", fmt.Errorf("delete DatasetReplication %s of a former source: %w", name, err)
		}
		log.Info("deleted DatasetReplication of the PVC's former source", "replication", name, "from", cur.Spec.Source.Dataset, "to", vol.Dataset)
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
			"DatasetReplication %s kept %s on node %s, not this PVC's volume any more: deleted (replicas stay), a new one follows", name, cur.Spec.Source.Dataset, cur.Spec.Source.Node)
		return reconcile.Result{RequeueAfter: retryTransient}, problem, nil
	default:
		// Patched with the version read: ownership was checked on it.
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
		if err := r.Client.Patch(ctx, cur, client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{})); err != nil {
			return reconcile.Result{}, "", fmt.Errorf("update DatasetReplication %s: %w", name, err)
		}
	}
	log.Info("configured DatasetReplication for PVC", "replication", name, "node", vol.Node, "dataset", vol.Dataset)
	r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
		"DatasetReplication %s keeps %s on node %s (targets %v)", name, vol.Dataset, vol.Node, targets)
	return requeue, problem, nil
}

// datasetAt finds the dataset mounted at a local volume's path, from the
// mountpoints of the pools the node's agent serves.
func (r *PVCAnnotationsReconciler) datasetAt(ctx context.Context, pv string, vol pvresolve.Volume) (pvresolve.Volume, error) {
	if r.Agents == nil {
		return vol, errors.New("no agent pool to ask for mountpoints")
	}
	var zn z8rv1.Z8RNode
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
// for this PVC (its finalizer releases the holds on the source). An object
// under the name that is not this PVC's is left alone.
func (r *PVCAnnotationsReconciler) dropReplication(ctx context.Context, namespace, name string, pvc *corev1.PersistentVolumeClaim) error {
	dr, _, err := r.pvcReplication(ctx, namespace, name)
	if errors.Is(err, errReplicationNameTaken) || errors.Is(err, errHandedOver) {
		logf.FromContext(ctx).Info("replication name taken by another owner; not deleting it", "error", err.Error())
		return nil
	}
	if err != nil || dr == nil || !dr.DeletionTimestamp.IsZero() {
		return err
	}
	if promotedAway(dr) {
		// Its source is (or is becoming) the promoted target: deleting
		// it would stop that copy's replication and could leave the old
		// source read-only. It is handed over instead, even mid-promotion
		// (the promotion does not depend on the PVC).
		return r.handOver(ctx, dr, namespace, name, pvc)
	}
	// Deleted only if it is still the object whose ownership was checked
	// (only z8r and administrators write DatasetReplications).
	if err := r.Client.Delete(ctx, dr, client.Preconditions{UID: &dr.UID}); client.IgnoreNotFound(err) != nil {
		return err
	}
	logf.FromContext(ctx).Info("deleted the PVC's DatasetReplication", "replication", dr.Name)
	if pvc != nil {
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
			"DatasetReplication %s deleted: the PVC no longer asks for snapshots or replicas", dr.Name)
	}
	return nil
}
