package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/restore"
	"github.com/z8r-project/z8r/zfsexec"
)

// ReplicaRestoreReconciler makes a ReplicaRestore's dataset (a clone of a
// replica snapshot on its node), its PersistentVolume and its pre-bound
// PersistentVolumeClaim (internal/restore has the rules). It decides the
// snapshot once and records it in the status; every later step checks
// whether it was done, so a restart mid-restore finishes it. It never
// destroys anything, and deleting the ReplicaRestore leaves what it made.
type ReplicaRestoreReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   NodeAccess
	// SnapshotsServed: the snapshot.storage.k8s.io API is installed (a
	// VolumeSnapshotContent source needs it).
	SnapshotsServed bool
	// ZFSLocalPVNamespace is where ZFSVolumes are made (default
	// restore.ZFSLocalPVNamespace).
	ZFSLocalPVNamespace string
	// APIReader reads from the API server when the cached ReplicaRestore
	// may predate this reconciler's own last status write (ownWrites).
	APIReader client.Reader

	written            ownWrites
	skipNameValidation bool
}

// +kubebuilder:rbac:groups=z8r.dev,resources=replicarestores,verbs=get;list;watch
// +kubebuilder:rbac:groups=z8r.dev,resources=replicarestores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=zfs.openebs.io,resources=zfsvolumes,verbs=get;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// restorePlan is what a restore makes, decided once (status).
type restorePlan struct {
	node, snapshot, guid, dataset, pvName string
}

// restoreTransient wraps failures that are retried (an agent down, an
// API or ZFS command that failed); its reason is the condition's.
type restoreTransient struct {
	reason string
	err    error
}

func (e *restoreTransient) Error() string { return e.err.Error() }
func (e *restoreTransient) Unwrap() error { return e.err }

func transient(reason string, err error) error { return &restoreTransient{reason: reason, err: err} }

func refusal(reason, format string, args ...any) error {
	return &restore.Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Reconcile implements reconcile.Reconciler.
func (r *ReplicaRestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx).WithValues("replicarestore", req.NamespacedName)
	var rr z8rv1.ReplicaRestore
	if err := r.written.getFresh(ctx, r.Client, r.APIReader, req.NamespacedName, &rr); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rr.DeletionTimestamp != nil || (rr.Status.Phase == z8rv1.RestoreCompleted && rr.Status.ObservedGeneration == rr.Generation) {
		return ctrl.Result{}, nil
	}
	plan, err := r.decide(ctx, &rr)
	if err == nil {
		err = r.execute(ctx, &rr, plan)
	}
	var ref *restore.Refusal
	var tr *restoreTransient
	switch {
	case err == nil:
		log.Info("restored", "node", plan.node, "snapshot", plan.snapshot, "dataset", plan.dataset, "pv", plan.pvName)
		return ctrl.Result{}, r.setStatus(ctx, &rr, func(s *z8rv1.ReplicaRestoreStatus) {
			s.Phase = z8rv1.RestoreCompleted
			s.Message = fmt.Sprintf("%s on node %s is a clone of %s, exposed as PV %s and PVC %s", plan.dataset, plan.node, plan.snapshot, plan.pvName, rr.Spec.Volume.PVCName)
			r.condition(&rr, s, metav1.ConditionTrue, z8rv1.ReasonRestored, s.Message, corev1.EventTypeNormal, z8rv1.EventRestored)
		})
	case errors.As(err, &ref):
		log.Info("restore refused", "reason", ref.Reason, "message", ref.Message)
		return ctrl.Result{RequeueAfter: retryInvalid}, r.setStatus(ctx, &rr, func(s *z8rv1.ReplicaRestoreStatus) {
			s.Phase, s.Message = z8rv1.RestoreFailed, ref.Message
			r.condition(&rr, s, metav1.ConditionFalse, ref.Reason, ref.Message, corev1.EventTypeWarning, z8rv1.EventRestoreRefused)
		})
	case errors.As(err, &tr):
		log.Info("restore step failed; retrying", "reason", tr.reason, "error", tr.err.Error())
		return ctrl.Result{RequeueAfter: retryTransient}, r.setStatus(ctx, &rr, func(s *z8rv1.ReplicaRestoreStatus) {
			if s.Phase == "" {
				s.Phase = z8rv1.RestorePending
			}
			s.Message = tr.err.Error()
			r.condition(&rr, s, metav1.ConditionFalse, tr.reason, s.Message, corev1.EventTypeWarning, z8rv1.EventRestoreFailed)
		})
	}
	return ctrl.Result{}, err
}

// condition sets Ready and, when its reason changes and event is not
// empty, records an Event.
func (r *ReplicaRestoreReconciler) condition(rr *z8rv1.ReplicaRestore, s *z8rv1.ReplicaRestoreStatus, status metav1.ConditionStatus, reason, msg, eventType, event string) {
	prev := meta.FindStatusCondition(s.Conditions, z8rv1.ConditionReady)
	if event != "" && (prev == nil || prev.Reason != reason || prev.Status != status) {
		r.Recorder.Eventf(rr, nil, eventType, event, "Restore", "%s", msg)
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: status, Reason: reason,
		Message: msg, ObservedGeneration: rr.Generation})
}

// setStatus applies change to the current status and writes it (retrying
// on conflict); rr is updated to what was written.
func (r *ReplicaRestoreReconciler) setStatus(ctx context.Context, rr *z8rv1.ReplicaRestore, change func(*z8rv1.ReplicaRestoreStatus)) error {
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := rr
		if !first {
			cur = &z8rv1.ReplicaRestore{}
			if err := r.Client.Get(ctx, client.ObjectKeyFromObject(rr), cur); err != nil {
				return err
			}
		}
		first = false
		before := cur.Status.DeepCopy()
		change(&cur.Status)
		cur.Status.ObservedGeneration = cur.Generation
		if apiEqualStatus(before, &cur.Status) {
			return nil
		}
		if err := r.Client.Status().Update(ctx, cur); err != nil {
			return err
		}
		r.written.record(cur)
		*rr = *cur
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func apiEqualStatus(a, b *z8rv1.ReplicaRestoreStatus) bool {
	if a.Phase != b.Phase || a.Message != b.Message || a.Snapshot != b.Snapshot || a.SnapshotGUID != b.SnapshotGUID ||
		a.Dataset != b.Dataset || a.PVName != b.PVName || a.PVCName != b.PVCName || a.Node != b.Node || a.Path != b.Path ||
		a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

// node reaches a node's agent; a failure is transient.
func (r *ReplicaRestoreReconciler) node(ctx context.Context, name string) (*Node, error) {
	n, err := r.Agents.Get(ctx, name)
	if err != nil {
		return nil, transient(z8rv1.ReasonNodeUnavailable, fmt.Errorf("node %s: %w", name, err))
	}
	return n, nil
}

// decide returns the restore's plan: the recorded one, or, the first
// time, one checked against the API and the node (everything a refusal
// names is checked before anything changes) and then recorded.
func (r *ReplicaRestoreReconciler) decide(ctx context.Context, rr *z8rv1.ReplicaRestore) (restorePlan, error) {
	if s := rr.Status; s.Snapshot != "" && s.Dataset != "" && s.PVName != "" && s.Node != "" {
		return restorePlan{node: s.Node, snapshot: s.Snapshot, guid: s.SnapshotGUID, dataset: s.Dataset, pvName: s.PVName}, nil
	}
	src := rr.Spec.Source
	if err := restore.CheckSource(src); err != nil {
		return restorePlan{}, err
	}
	var dataset, short string
	if src.Replication != "" {
		var dr z8rv1.DatasetReplication
		if err := r.Client.Get(ctx, client.ObjectKey{Name: src.Replication}, &dr); apierrors.IsNotFound(err) {
			return restorePlan{}, refusal(z8rv1.ReasonReplicationNotFound, "DatasetReplication %s does not exist", src.Replication)
		} else if err != nil {
			return restorePlan{}, transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get DatasetReplication %s: %w", src.Replication, err))
		}
		ds, err := restore.ReplicationDataset(&dr, src.Node)
		if err != nil {
			return restorePlan{}, err
		}
		dataset, short = ds, src.Snapshot
	} else {
		if !r.SnapshotsServed {
			return restorePlan{}, refusal(z8rv1.ReasonVolumeSnapshotsDisabled, "snapshot.storage.k8s.io/v1 is not served: a VolumeSnapshotContent source needs the snapshot CRDs")
		}
		var c snapshotv1.VolumeSnapshotContent
		if err := r.Client.Get(ctx, client.ObjectKey{Name: src.VolumeSnapshotContent}, &c); apierrors.IsNotFound(err) {
			return restorePlan{}, refusal(z8rv1.ReasonContentNotFound, "VolumeSnapshotContent %s does not exist", src.VolumeSnapshotContent)
		} else if err != nil {
			return restorePlan{}, transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get VolumeSnapshotContent %s: %w", src.VolumeSnapshotContent, err))
		}
		ds, s, err := restore.ContentSnapshot(&c, src.Node)
		if err != nil {
			return restorePlan{}, err
		}
		dataset, short = ds, s
	}
	node, err := r.node(ctx, src.Node)
	if err != nil {
		return restorePlan{}, err
	}
	z := node.ZFS()
	snaps, err := z.Snapshots(ctx, dataset)
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return restorePlan{}, refusal(z8rv1.ReasonSnapshotNotFound, "dataset %s does not exist on node %s", dataset, src.Node)
	} else if err != nil {
		return restorePlan{}, transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("list %s on node %s: %w", dataset, src.Node, err))
	}
	snap, err := restore.PickSnapshot(src.Node, dataset, snaps, short)
	if err != nil {
		return restorePlan{}, err
	}
	target, err := restore.Dataset(rr, dataset)
	if err != nil {
		return restorePlan{}, err
	}
	p := restorePlan{node: src.Node, snapshot: snap.Name, guid: strconv.FormatUint(snap.GUID, 10), dataset: target, pvName: restore.PVName(rr)}
	if err := r.checkFree(ctx, rr, z, p); err != nil {
		return restorePlan{}, err
	}
	err = r.setStatus(ctx, rr, func(s *z8rv1.ReplicaRestoreStatus) {
		s.Phase, s.Node, s.Snapshot, s.SnapshotGUID, s.Dataset, s.PVName, s.PVCName = z8rv1.RestoreRestoring,
			p.node, p.snapshot, p.guid, p.dataset, p.pvName, rr.Spec.Volume.PVCName
		s.Message = fmt.Sprintf("restoring %s (GUID %s) on node %s into %s", p.snapshot, p.guid, p.node, p.dataset)
		r.condition(rr, s, metav1.ConditionFalse, z8rv1.ReasonRestoring, s.Message, corev1.EventTypeNormal, "")
	})
	if err != nil {
		return restorePlan{}, transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("record the plan: %w", err))
	}
	return p, nil
}

// checkFree refuses names that are taken by something this restore did
// not make: the dataset, the PVC, the PV (and the ZFSVolume).
func (r *ReplicaRestoreReconciler) checkFree(ctx context.Context, rr *z8rv1.ReplicaRestore, z *zfsexec.ZFS, p restorePlan) error {
	if _, err := r.ownDataset(ctx, rr, z, p); err != nil {
		return err
	}
	var pvc corev1.PersistentVolumeClaim
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: rr.Namespace, Name: rr.Spec.Volume.PVCName}, &pvc); err == nil {
		if !restore.Owned(&pvc, rr) {
			return refusal(z8rv1.ReasonPVCExists, "PersistentVolumeClaim %s/%s exists already", rr.Namespace, pvc.Name)
		}
	} else if !apierrors.IsNotFound(err) {
		return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get PVC: %w", err))
	}
	var pv corev1.PersistentVolume
	if err := r.Client.Get(ctx, client.ObjectKey{Name: p.pvName}, &pv); err == nil {
		if !restore.Owned(&pv, rr) {
			return refusal(z8rv1.ReasonPVExists, "PersistentVolume %s exists already", pv.Name)
		}
	} else if !apierrors.IsNotFound(err) {
		return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get PV: %w", err))
	}
	return nil
}

// ownDataset reports whether the plan's dataset exists (then it is this
// restore's: anything else is refused as DatasetExists).
func (r *ReplicaRestoreReconciler) ownDataset(ctx context.Context, rr *z8rv1.ReplicaRestore, z *zfsexec.ZFS, p restorePlan) (bool, error) {
	props, err := z.Get(ctx, p.dataset, z8rv1.PropRestore)
	switch {
	case errors.Is(err, zfsexec.ErrDatasetNotExist):
		return false, nil
	case err != nil:
		return false, transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("read %s on node %s: %w", p.dataset, p.node, err))
	case !restore.OwnsDataset(rr, props[z8rv1.PropRestore]):
		return false, refusal(z8rv1.ReasonDatasetExists, "dataset %s exists already on node %s", p.dataset, p.node)
	}
	return true, nil
}

// execute makes what the plan says, each step only if it is not done.
func (r *ReplicaRestoreReconciler) execute(ctx context.Context, rr *z8rv1.ReplicaRestore, p restorePlan) error {
	node, err := r.node(ctx, p.node)
	if err != nil {
		return err
	}
	z := node.ZFS()
	fail := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		r.Agents.DropFailed(err, node)
		return transient(z8rv1.ReasonRestoreFailed, err)
	}
	sp, err := z.Get(ctx, p.snapshot, "guid", "referenced")
	switch {
	case errors.Is(err, zfsexec.ErrDatasetNotExist):
		return refusal(z8rv1.ReasonSnapshotNotFound, "%s no longer exists on node %s", p.snapshot, p.node)
	case err != nil:
		return fail("read %s on node %s: %w", p.snapshot, p.node, err)
	case sp["guid"].Value != p.guid:
		return refusal(z8rv1.ReasonSnapshotNotFound, "%s on node %s is another snapshot now (GUID %s, restore decided on %s)", p.snapshot, p.node, sp["guid"].Value, p.guid)
	}
	referenced, _ := strconv.ParseInt(sp["referenced"].Value, 10, 64)
	capacity := restore.Capacity(rr, referenced)

	have, err := r.ownDataset(ctx, rr, z, p)
	if err != nil {
		return err
	}
	if !have {
		if err := z.Clone(ctx, p.snapshot, p.dataset, restore.CloneProps(rr, p.node, p.snapshot)); err != nil {
			if errors.Is(err, zfsexec.ErrDatasetExists) {
				return refusal(z8rv1.ReasonDatasetExists, "dataset %s exists already on node %s", p.dataset, p.node)
			}
			return fail("clone %s to %s on node %s: %w", p.snapshot, p.dataset, p.node, err)
		}
	}

	var pv *corev1.PersistentVolume
	switch restore.Kind(rr) {
	case z8rv1.RestoreKindZFSLocalPV:
		nodeID := p.node
		var kn corev1.Node
		if err := r.Client.Get(ctx, client.ObjectKey{Name: p.node}, &kn); err == nil {
			nodeID = restore.NodeID(&kn)
		} else if !apierrors.IsNotFound(err) {
			return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get Node %s: %w", p.node, err))
		}
		pool, _, _ := strings.Cut(p.dataset, "/")
		ns := r.ZFSLocalPVNamespace
		if ns == "" {
			ns = restore.ZFSLocalPVNamespace
		}
		if err := r.createZFSVolume(ctx, rr, restore.ZFSVolume(rr, ns, p.pvName, pool, nodeID, capacity.Value())); err != nil {
			return err
		}
		pv = restore.ZFSLocalPV(rr, p.pvName, pool, nodeID, capacity)
	default:
		mp, err := z.Get(ctx, p.dataset, "mounted", "mountpoint")
		if err != nil {
			return fail("read %s on node %s: %w", p.dataset, p.node, err)
		}
		if mp["mounted"].Value != "yes" {
			if err := z.Mount(ctx, p.dataset); err != nil && !errors.Is(err, zfsexec.ErrAlreadyMounted) {
				return fail("mount %s on node %s: %w", p.dataset, p.node, err)
			}
		}
		path := mp["mountpoint"].Value
		if len(path) == 0 || path[0] != '/' {
			return refusal(z8rv1.ReasonInvalidDataset, "%s on node %s has mountpoint %q: a Local volume needs a path (its parent's mountpoint decides it)", p.dataset, p.node, path)
		}
		if err := r.setStatus(ctx, rr, func(s *z8rv1.ReplicaRestoreStatus) { s.Path = path }); err != nil {
			return transient(z8rv1.ReasonRestoreFailed, err)
		}
		pv = restore.LocalPV(rr, p.pvName, p.node, path, capacity)
	}
	if err := r.Client.Create(ctx, pv); apierrors.IsAlreadyExists(err) {
		var cur corev1.PersistentVolume
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(pv), &cur); err != nil {
			return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get PV %s: %w", pv.Name, err))
		}
		if !restore.Owned(&cur, rr) {
			return refusal(z8rv1.ReasonPVExists, "PersistentVolume %s exists already", pv.Name)
		}
	} else if err != nil {
		return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("create PV %s: %w", pv.Name, err))
	}
	pvc := restore.PVC(rr, p.pvName, capacity)
	if err := r.Client.Create(ctx, pvc); apierrors.IsAlreadyExists(err) {
		var cur corev1.PersistentVolumeClaim
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(pvc), &cur); err != nil {
			return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get PVC %s: %w", pvc.Name, err))
		}
		if !restore.Owned(&cur, rr) {
			return refusal(z8rv1.ReasonPVCExists, "PersistentVolumeClaim %s/%s exists already", pvc.Namespace, pvc.Name)
		}
	} else if err != nil {
		return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("create PVC %s: %w", pvc.Name, err))
	}
	return nil
}

// createZFSVolume creates zfs-localpv's ZFSVolume unless this restore
// already did.
func (r *ReplicaRestoreReconciler) createZFSVolume(ctx context.Context, rr *z8rv1.ReplicaRestore, zv *unstructured.Unstructured) error {
	err := r.Client.Create(ctx, zv)
	switch {
	case err == nil:
		return nil
	case meta.IsNoMatchError(err):
		return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("zfs-localpv's ZFSVolume (zfs.openebs.io/v1) is not served: install zfs-localpv, or restore as a Local volume: %w", err))
	case apierrors.IsAlreadyExists(err):
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(restore.ZFSVolumeGVK)
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(zv), cur); err != nil {
			return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("get ZFSVolume %s/%s: %w", zv.GetNamespace(), zv.GetName(), err))
		}
		if !restore.Owned(cur, rr) {
			return refusal(z8rv1.ReasonPVExists, "ZFSVolume %s/%s exists already", zv.GetNamespace(), zv.GetName())
		}
		return nil
	}
	return transient(z8rv1.ReasonRestoreFailed, fmt.Errorf("create ZFSVolume %s/%s: %w", zv.GetNamespace(), zv.GetName(), err))
}

// SetupWithManager registers the reconciler.
func (r *ReplicaRestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&z8rv1.ReplicaRestore{}).Named("replicarestore").
		WithOptions(controller.Options{SkipNameValidation: &r.skipNameValidation}).Complete(r)
}
