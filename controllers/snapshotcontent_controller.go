package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// Design:
//
// VolumeSnapshotContentReconciler plays two roles on VolumeSnapshotContents.
//
// The snapshotter role is the csi-snapshotter sidecar's, for contents of the
// drivers z8r serves (zfs.z8r.dev and any configured in Drivers). It works
// with the unmodified snapshot-controller: that controller creates the
// content of a VolumeSnapshot, adds the bound-protection finalizer, and
// marks the content being-deleted when the VolumeSnapshot goes; this
// reconciler takes the ZFS snapshot through the node's agent and fills the
// content's status, and on deletion destroys the snapshot (deletionPolicy
// Delete) before it removes the finalizer. It follows the sidecar's order
// (delete, then create or import, then status; volsnap.Next) and its
// safety rule: the being-created annotation is written before the node is
// asked and removed only on success or a final error, so a crash never
// leaks a snapshot; and the snapshot's name depends only on the content,
// so the retry after a crash adopts the snapshot instead of taking a
// second one. Nothing is asked of a node before the volume, the node and
// every annotation have been checked: bad input gets an error on the
// content (which the snapshot-controller copies to the VolumeSnapshot)
// and runs no ZFS command.
//
// The replication role applies to every ready content whose snapshot z8r
// can locate (its own, and other ZFS drivers' such as zfs-localpv) when the
// content, its VolumeSnapshot, the PVC or the class asks with
// z8r.dev/replicate-to. The content's own value (the administrator's) is
// used alone; otherwise the targets are the class's (the administrator's)
// plus those of the tenant's request (the VolumeSnapshot's, else the
// PVC's) that a ReplicationTargetPolicy allows (tenancy.Check; refused
// ones get a TargetNotAllowed Warning and the object's
// z8r.dev/annotation-problem, and an empty tenant value is an error that
// is ignored, so a tenant can never remove the class's targets). The
// targets decided are written onto the content, resolved, the first time,
// so replication is keyed on the content and its snapshotHandle, never on
// the VolumeSnapshot, which Velero deletes after its upload. Each
// target gets exactly that snapshot (replicate.SyncSnapshot), incrementally
// from its newest one, which stays held on the source as its base. A
// replica appears as a pre-provisioned VolumeSnapshotContent of
// zfs.z8r.dev naming its node, whose deletionPolicy follows the source
// content's; when a source content is deleted with Delete, the source
// snapshot is destroyed first (deferred, `zfs destroy -d`, while holds keep
// it) and that is recorded on the content (z8r.dev/source-destroyed); only
// then are its unbound replica contents deleted (and so destroyed on their
// nodes, each only if it carries z8r's local mark for that replica
// content). A source node that is down therefore keeps the deletion
// waiting and costs no copy. The source keeps its hold for a target whose
// replica stays, or whose replica's destroy was deferred because the
// target holds it as its last received snapshot (the next base): ZFS
// removes both when the next replication moves the holds. Snapshots of other drivers
// are never destroyed by z8r; it only releases its holds on them when
// their content goes.
type VolumeSnapshotContentReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   NodeAccess
	Clock    schedule.Clock
	// Drivers are the CSI drivers z8r takes snapshots for.
	Drivers map[string]bool
	// Hooks inject faults in tests.
	Hooks SnapshotHooks
	// MaxConcurrent reconciles (default 4).
	MaxConcurrent int

	skipNameValidation bool
	locks              keyedMutex
}

// SnapshotHooks let fault-injection tests act at chosen points of the
// snapshotter. Production leaves them nil.
type SnapshotHooks struct {
	// AfterSnapshot runs after the node took a content's ZFS snapshot and
	// before the content's status is written.
	AfterSnapshot func(ctx context.Context, content, snapshot string)
}

const (
	annotationYes = "yes"
	contentKind   = "VolumeSnapshotContent"
)

// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;list;watch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=zfsnodes,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *VolumeSnapshotContentReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("content", req.Name)
	ctx = logf.IntoContext(ctx, log)
	var c snapshotv1.VolumeSnapshotContent
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if r.Drivers[c.Spec.Driver] {
		res, done, err := r.snapshotter(ctx, &c)
		if done || err != nil {
			return res, err
		}
	}
	return r.replicate(ctx, &c)
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

// snapshotter does the sidecar's part; done means the reconcile ends here.
func (r *VolumeSnapshotContentReconciler) snapshotter(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, bool, error) {
	switch volsnap.Next(c) {
	case volsnap.ActDelete:
		res, err := r.deleteSnapshot(ctx, c)
		return res, true, err
	case volsnap.ActRemoveFinalizer:
		res, err := r.letGo(ctx, c)
		return res, true, err
	case volsnap.ActCreate:
		return r.create(ctx, c)
	case volsnap.ActImport:
		return r.importSnapshot(ctx, c)
	case volsnap.ActClearBeingCreated:
		return reconcile.Result{}, false, r.patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil})
	}
	// Ready. A deletion the snapshot-controller has not released yet waits.
	return reconcile.Result{}, c.DeletionTimestamp != nil, nil
}

// located is where a content's snapshot is (or will be).
type located struct {
	Node    string
	Dataset string
	// Short is the snapshot's name after '@' ("" before it exists).
	Short string
	PVC   *corev1.PersistentVolumeClaim
	VS    *snapshotv1.VolumeSnapshot
	Class *snapshotv1.VolumeSnapshotClass
}

// create takes the snapshot of a dynamic content (ActCreate).
func (r *VolumeSnapshotContentReconciler) create(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, bool, error) {
	log := logf.FromContext(ctx)
	loc, err := r.locateVolume(ctx, c)
	if err != nil {
		// Nothing was asked of a node; report and look again later (the PV,
		// the node's agent or an annotation may be fixed).
		return r.failCreate(ctx, c, loc.VS, err, retryInvalid)
	}
	targets, stamped, err := r.targetsFor(ctx, c, loc)
	if errors.Is(err, volsnap.ErrSyntax) || errors.Is(err, volsnap.ErrSelfTarget) {
		return r.failCreate(ctx, c, loc.VS, fmt.Errorf("invalid %s: %w", z8rv1.AnnotationReplicateTo, err), retryInvalid)
	}
	if err != nil {
		return reconcile.Result{}, false, err
	}
	short, err := volsnap.SnapshotName(c)
	if err != nil {
		return r.failCreate(ctx, c, loc.VS, err, retryInvalid)
	}
	if err := r.checkPool(ctx, loc.Node, loc.Dataset); err != nil {
		return r.failCreate(ctx, c, loc.VS, err, retryInvalid)
	}
	node, err := r.Agents.Get(ctx, loc.Node)
	if err != nil {
		return r.failCreate(ctx, c, loc.VS, err, retryTransient)
	}

	// From here a crash may leave a snapshot behind: mark the content
	// first, with where the snapshot goes and what replication it asked for.
	mark := map[string]*string{
		volsnap.AnnBeingCreated: new(annotationYes),
		z8rv1.AnnotationNode:    new(loc.Node),
		z8rv1.AnnotationDataset: new(loc.Dataset),
	}
	if !stamped && len(targets) > 0 {
		mark[z8rv1.AnnotationReplicateTo] = new(renderTargets(targets))
	}
	if err := r.patchAnnotations(ctx, c, mark); err != nil {
		return reconcile.Result{}, true, err
	}
	snap := volsnap.Handle(loc.Dataset, short)
	err = node.ZFS().Snapshot(ctx, snap, map[string]string{volsnap.PropContent: c.Name})
	final := createFailedFinally(err)
	if errors.Is(err, zfsexec.ErrSnapshotExists) {
		// An earlier attempt got this far: adopt its snapshot if it is
		// this content's.
		err = r.adopt(ctx, node, snap, c.Name)
		final = errors.Is(err, errNotOurs)
	}
	if err != nil {
		r.Agents.DropFailed(err, node)
		if final {
			if perr := r.patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil}); perr != nil {
				return reconcile.Result{}, true, perr
			}
		}
		log.Error(err, "snapshot failed", "node", loc.Node, "snapshot", snap, "final", final)
		return r.failCreate(ctx, c, loc.VS, fmt.Errorf("snapshot %s on node %s: %w", snap, loc.Node, err), retryTransient)
	}
	if r.Hooks.AfterSnapshot != nil {
		r.Hooks.AfterSnapshot(ctx, c.Name, snap)
	}
	info, err := snapshotInfo(ctx, node.ZFS(), snap)
	if err != nil {
		// The snapshot exists; the annotation stays until the status says so.
		r.Agents.DropFailed(err, node)
		log.Error(err, "read snapshot properties failed", "node", loc.Node, "snapshot", snap)
		return r.failCreate(ctx, c, loc.VS, fmt.Errorf("snapshot %s on node %s taken, reading it: %w", snap, loc.Node, err), retryTransient)
	}
	if err := r.markReady(ctx, c, snap, info); err != nil {
		return reconcile.Result{}, true, err
	}
	if err := r.patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil}); err != nil {
		return reconcile.Result{}, true, err
	}
	log.Info("took snapshot", "node", loc.Node, "snapshot", snap, "restoreSize", info.size)
	r.event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventSnapshotCreated, "Snapshot",
		"took ZFS snapshot %s on node %s (restore size %d bytes)", snap, loc.Node, info.size)
	return reconcile.Result{}, false, nil
}

// createFailedFinally tells whether a failed snapshot request certainly
// did not leave a snapshot being created: the agent refused it, a name was
// invalid, or zfs itself ran and exited with an error. Anything else (the
// agent unreachable, the connection lost, a timeout) may have left the
// command running or done, so the being-created annotation must stay ("be
// on the safe side", as the csi-snapshotter sidecar says).
func createFailedFinally(err error) bool {
	var ce *zfsexec.CommandError
	return errors.As(err, &ce) || errors.Is(err, agent.ErrRefused) || errors.Is(err, zfsexec.ErrInvalidName)
}

// errNotOurs: a snapshot of the content's name exists but z8r did not
// take it for this content.
var errNotOurs = errors.New("exists but was not taken for this content")

// adopt accepts an existing snapshot as content's if z8r took it for it.
func (r *VolumeSnapshotContentReconciler) adopt(ctx context.Context, node *Node, snap, content string) error {
	p, err := node.ZFS().Get(ctx, snap, volsnap.PropContent)
	if err != nil {
		return err
	}
	if got := p[volsnap.PropContent]; !got.IsSet() || got.Value != content {
		return fmt.Errorf("%s %w (its %s is %q)", snap, errNotOurs, volsnap.PropContent, got.Value)
	}
	logf.FromContext(ctx).Info("adopted snapshot taken by an earlier attempt", "snapshot", snap)
	return nil
}

// failCreate records err on the content (ready false) and retries later.
func (r *VolumeSnapshotContentReconciler) failCreate(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, err error, after time.Duration) (reconcile.Result, bool, error) {
	if werr := r.setError(ctx, c, vs, z8rv1.EventSnapshotFailed, err); werr != nil {
		return reconcile.Result{}, true, werr
	}
	return reconcile.Result{RequeueAfter: after}, true, nil
}

// importSnapshot verifies a pre-provisioned content's snapshot on its node
// and fills the status (ActImport).
func (r *VolumeSnapshotContentReconciler) importSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, bool, error) {
	vs := r.boundSnapshot(ctx, c)
	handle := *c.Spec.Source.SnapshotHandle
	nodeName := c.Annotations[z8rv1.AnnotationNode]
	if nodeName == "" {
		return r.failCreate(ctx, c, vs, fmt.Errorf("pre-provisioned snapshot %s: annotate the content with %s naming the node that holds it", handle, z8rv1.AnnotationNode), retryInvalid)
	}
	dataset, _, err := volsnap.ParseHandle(handle)
	if err != nil {
		return r.failCreate(ctx, c, vs, err, retryInvalid)
	}
	if err := r.checkPool(ctx, nodeName, dataset); err != nil {
		return r.failCreate(ctx, c, vs, err, retryInvalid)
	}
	node, err := r.Agents.Get(ctx, nodeName)
	if err != nil {
		return r.failCreate(ctx, c, vs, err, retryTransient)
	}
	info, err := snapshotInfo(ctx, node.ZFS(), handle)
	switch {
	case errors.Is(err, zfsexec.ErrDatasetNotExist):
		return r.failCreate(ctx, c, vs, fmt.Errorf("pre-provisioned snapshot %s does not exist on node %s", handle, nodeName), retryInvalid)
	case err != nil:
		r.Agents.DropFailed(err, node)
		return r.failCreate(ctx, c, vs, fmt.Errorf("check %s on node %s: %w", handle, nodeName, err), retryTransient)
	}
	if err := r.markReady(ctx, c, handle, info); err != nil {
		return reconcile.Result{}, true, err
	}
	logf.FromContext(ctx).Info("imported pre-provisioned snapshot", "node", nodeName, "snapshot", handle)
	r.event(c, vs, corev1.EventTypeNormal, z8rv1.EventSnapshotImported, "Import", "snapshot %s exists on node %s", handle, nodeName)
	return reconcile.Result{}, false, nil
}

// deleteSnapshot destroys the snapshot of a content deleted with
// deletionPolicy Delete, then lets the content go (ActDelete). The source
// snapshot is destroyed (or marked for deferred destruction while holds
// keep it) and that is recorded on the content before any replica is
// deleted: a source node that is down keeps the deletion waiting and
// costs no copy. A replica's snapshot is destroyed only if z8r's local
// mark for this replica content is on it (replicaOwned).
func (r *VolumeSnapshotContentReconciler) deleteSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	handle := *c.Status.SnapshotHandle
	nodeName := c.Annotations[z8rv1.AnnotationNode]
	if c.Annotations[z8rv1.AnnotationSourceDestroyed] != annotationYes {
		if nodeName == "" {
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete",
				"cannot destroy %s: the content does not record its node (annotation %s)", handle, z8rv1.AnnotationNode)
			return reconcile.Result{RequeueAfter: retryInvalid}, nil
		}
		node, err := r.Agents.Get(ctx, nodeName)
		switch {
		case errors.Is(err, ErrNodeUnknown):
			// The node and its agent are gone, and with them the pool.
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete",
				"node %s has no z8r agent any more; %s was not destroyed", nodeName, handle)
		case err != nil:
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "cannot destroy %s on node %s yet: %v", handle, nodeName, err)
			return reconcile.Result{RequeueAfter: retryTransient}, nil
		default:
			if res, done := r.destroyOnNode(ctx, c, node, handle); done {
				return res, nil
			}
		}
		if err := r.patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationSourceDestroyed: new(annotationYes)}); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	// Replicas that go with it go now; holds are released only for targets
	// that no longer have the snapshot (which lets a deferred destroy finish).
	held, wait, err := r.cleanupReplicas(ctx, c)
	if err != nil || wait {
		return reconcile.Result{RequeueAfter: retryWaiting}, err
	}
	if len(held) > 0 {
		log.Info("source snapshot stays held for replicas that stay", "snapshot", handle, "keptFor", held)
	}
	// As the sidecar: clear the handle, then drop the finalizer (a retry
	// after the first step goes straight to the second).
	old := c.DeepCopy()
	c.Status.SnapshotHandle, c.Status.ReadyToUse, c.Status.CreationTime, c.Status.RestoreSize = nil, nil, nil, nil
	if err := r.Client.Status().Patch(ctx, c, client.MergeFrom(old)); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	return reconcile.Result{}, r.removeFinalizers(ctx, c)
}

// destroyOnNode destroys a deleted content's snapshot on its node (deferred
// while held). A replica's is destroyed only if it carries z8r's mark for
// this content; otherwise it is left and reported. done means the
// reconcile ends here (an error to retry).
func (r *VolumeSnapshotContentReconciler) destroyOnNode(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, node *Node, handle string) (reconcile.Result, bool) {
	log := logf.FromContext(ctx)
	if _, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]; isReplica {
		owned, err := replicaOwned(ctx, node.ZFS(), handle, c.Name)
		switch {
		case errors.Is(err, zfsexec.ErrDatasetNotExist):
			return reconcile.Result{}, false
		case err != nil:
			r.Agents.DropFailed(err, node)
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "check %s on node %s: %v", handle, node.Name, err)
			return reconcile.Result{RequeueAfter: retryTransient}, true
		case !owned:
			log.Info("replica snapshot not marked as this content's; not destroyed", "node", node.Name, "snapshot", handle)
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventReplicaNotOwned, "Delete",
				"%s on node %s does not carry z8r's mark (%s=%s set locally): z8r did not create it for this content and did not destroy it", handle, node.Name, volsnap.PropContent, c.Name)
			return reconcile.Result{}, false
		}
	}
	deferred, err := destroySnapshot(ctx, node.ZFS(), handle)
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return reconcile.Result{}, false
	}
	if err != nil {
		r.Agents.DropFailed(err, node)
		log.Error(err, "destroy snapshot failed", "node", node.Name, "snapshot", handle)
		r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "destroy %s on node %s: %v", handle, node.Name, err)
		return reconcile.Result{RequeueAfter: retryTransient}, true
	}
	if deferred {
		log.Info("snapshot held; destroy deferred", "node", node.Name, "snapshot", handle)
		r.event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotDeferred, "Delete",
			"%s on node %s is still held (incremental base of replicas): marked for deferred destroy, ZFS removes it when the last hold goes", handle, node.Name)
	} else {
		log.Info("destroyed snapshot", "node", node.Name, "snapshot", handle)
		r.event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotDeleted, "Delete", "destroyed %s on node %s", handle, node.Name)
	}
	return reconcile.Result{}, false
}

// replicaOwned reports whether snap carries z8r's mark for the replica
// content named content: the property volsnap.PropContent set locally on
// the snapshot (by z8r after it received it) to that name. A received or
// inherited value, or another content's name, is not z8r's for it.
func replicaOwned(ctx context.Context, z *zfsexec.ZFS, snap, content string) (bool, error) {
	p, err := z.Get(ctx, snap, volsnap.PropContent)
	if err != nil {
		return false, err
	}
	return volsnap.MarkedFor(p[volsnap.PropContent], content), nil
}

// destroySnapshot destroys snap, or marks it for deferred destruction when
// holds keep it (deferred true).
func destroySnapshot(ctx context.Context, z *zfsexec.ZFS, snap string) (deferred bool, err error) {
	err = z.Destroy(ctx, snap, zfsexec.DestroyOptions{})
	if errors.Is(err, zfsexec.ErrDatasetBusy) {
		return true, z.Destroy(ctx, snap, zfsexec.DestroyOptions{Defer: true})
	}
	return false, err
}

// letGo lets a deleted content go without destroying its snapshot
// (deletionPolicy Retain, or no snapshot was ever recorded)
// (ActRemoveFinalizer).
func (r *VolumeSnapshotContentReconciler) letGo(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	if c.Spec.DeletionPolicy == snapshotv1.VolumeSnapshotContentDelete && c.Annotations[z8rv1.AnnotationSourceDestroyed] != annotationYes {
		// Nothing recorded, but something may exist: a create that failed
		// in a way z8r took for final, or a replica deleted before it was
		// imported. Destroy it if it is this content's.
		if err := r.destroyStray(ctx, c); err != nil {
			r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "%v", err)
			return reconcile.Result{RequeueAfter: retryTransient}, nil
		}
		if err := r.patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationSourceDestroyed: new(annotationYes)}); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	if _, wait, err := r.cleanupReplicas(ctx, c); err != nil || wait {
		return reconcile.Result{RequeueAfter: retryWaiting}, err
	}
	if c.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete && c.Status != nil && c.Status.SnapshotHandle != nil {
		r.event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotRetained, "Delete",
			"deletionPolicy %s: %s stays on node %s", c.Spec.DeletionPolicy, *c.Status.SnapshotHandle, c.Annotations[z8rv1.AnnotationNode])
	}
	return reconcile.Result{}, r.removeFinalizers(ctx, c)
}

// destroyStray destroys a snapshot of a Delete content whose status never
// recorded it: the one a dynamic content's failed create may have left
// (only if it carries this content's property), or a replica's.
func (r *VolumeSnapshotContentReconciler) destroyStray(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
	nodeName := c.Annotations[z8rv1.AnnotationNode]
	_, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]
	var snap string
	switch {
	case c.Spec.Source.VolumeHandle != nil:
		short, err := volsnap.SnapshotName(c)
		dataset := c.Annotations[z8rv1.AnnotationDataset]
		if dataset == "" || err != nil {
			return nil // z8r never asked a node for this content
		}
		snap = volsnap.Handle(dataset, short)
	case isReplica && c.Spec.Source.SnapshotHandle != nil:
		snap = *c.Spec.Source.SnapshotHandle
	default:
		return nil
	}
	if nodeName == "" {
		return nil
	}
	node, err := r.Agents.Get(ctx, nodeName)
	if errors.Is(err, ErrNodeUnknown) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check node %s for %s: %w", nodeName, snap, err)
	}
	p, err := node.ZFS().Get(ctx, snap, volsnap.PropContent)
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s on node %s: %w", snap, nodeName, err)
	}
	if isReplica && !volsnap.MarkedFor(p[volsnap.PropContent], c.Name) {
		r.event(c, nil, corev1.EventTypeWarning, z8rv1.EventReplicaNotOwned, "Delete",
			"%s on node %s does not carry z8r's mark (%s=%s set locally): z8r did not create it for this content and did not destroy it", snap, nodeName, volsnap.PropContent, c.Name)
		return nil
	}
	if !isReplica && p[volsnap.PropContent].Value != c.Name {
		return nil
	}
	if _, err := destroySnapshot(ctx, node.ZFS(), snap); err != nil {
		return fmt.Errorf("destroy %s on node %s: %w", snap, nodeName, err)
	}
	logf.FromContext(ctx).Info("destroyed snapshot the status never recorded", "node", nodeName, "snapshot", snap)
	return nil
}

// removeFinalizers drops the bound-protection finalizer and z8r's own.
func (r *VolumeSnapshotContentReconciler) removeFinalizers(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
	if !volsnap.HasFinalizer(c, volsnap.FinalizerBound) && !volsnap.HasFinalizer(c, finalizerReleaseHolds) {
		return nil
	}
	old := c.DeepCopy()
	c.Finalizers = slices.DeleteFunc(c.Finalizers, func(f string) bool {
		return f == volsnap.FinalizerBound || f == finalizerReleaseHolds
	})
	err := r.Client.Patch(ctx, c, client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{}))
	return client.IgnoreNotFound(err)
}

// snapInfo is what the status reports about a snapshot.
type snapInfo struct {
	created time.Time
	size    int64
	guid    uint64
}

// snapshotInfo reads a snapshot's creation, restore size and GUID.
func snapshotInfo(ctx context.Context, z *zfsexec.ZFS, snap string) (snapInfo, error) {
	p, err := z.Get(ctx, snap, "guid", "creation", "referenced", "volsize")
	if err != nil {
		return snapInfo{}, err
	}
	size, err := volsnap.RestoreSize(p)
	if err != nil {
		return snapInfo{}, err
	}
	sec, err := strconv.ParseInt(p["creation"].Value, 10, 64)
	if err != nil {
		return snapInfo{}, fmt.Errorf("creation of %s: %w", snap, err)
	}
	guid, err := strconv.ParseUint(p["guid"].Value, 10, 64)
	if err != nil {
		return snapInfo{}, fmt.Errorf("guid of %s: %w", snap, err)
	}
	return snapInfo{created: time.Unix(sec, 0), size: size, guid: guid}, nil
}

// markReady writes a taken or verified snapshot into the content's status.
func (r *VolumeSnapshotContentReconciler) markReady(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, handle string, info snapInfo) error {
	old := c.DeepCopy()
	if c.Status == nil {
		c.Status = &snapshotv1.VolumeSnapshotContentStatus{}
	}
	c.Status.SnapshotHandle = new(handle)
	if c.Status.CreationTime == nil {
		c.Status.CreationTime = new(info.created.UnixNano())
	}
	if c.Status.RestoreSize == nil && info.size > 0 {
		c.Status.RestoreSize = new(info.size)
	}
	c.Status.ReadyToUse = new(true)
	c.Status.Error = nil
	return r.Client.Status().Patch(ctx, c, client.MergeFrom(old))
}

// setError records err on the content (readyToUse false) and emits a
// Warning on the content and its VolumeSnapshot, unless the same error is
// already recorded.
func (r *VolumeSnapshotContentReconciler) setError(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, reason string, err error) error {
	msg := err.Error()
	if c.Status != nil && c.Status.Error != nil && c.Status.Error.Message != nil && *c.Status.Error.Message == msg {
		return nil
	}
	old := c.DeepCopy()
	if c.Status == nil {
		c.Status = &snapshotv1.VolumeSnapshotContentStatus{}
	}
	c.Status.ReadyToUse = new(false)
	c.Status.Error = &snapshotv1.VolumeSnapshotError{Time: &metav1.Time{Time: time.Now()}, Message: new(msg)}
	r.event(c, vs, corev1.EventTypeWarning, reason, "Snapshot", "%s", msg)
	return client.IgnoreNotFound(r.Client.Status().Patch(ctx, c, client.MergeFrom(old)))
}

// patchAnnotations sets (value) or removes (nil) annotations.
func (r *VolumeSnapshotContentReconciler) patchAnnotations(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, set map[string]*string) error {
	old := c.DeepCopy()
	changed := false
	for k, v := range set {
		cur, has := c.Annotations[k]
		switch {
		case v == nil && has:
			delete(c.Annotations, k)
			changed = true
		case v != nil && (!has || cur != *v):
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[k] = *v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return r.Client.Patch(ctx, c, client.MergeFrom(old))
}

// event emits on the content and, when it exists, its VolumeSnapshot
// (where `kubectl describe volumesnapshot` shows it).
func (r *VolumeSnapshotContentReconciler) event(c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, typ, reason, action, format string, args ...any) {
	var related runtime.Object
	if vs != nil {
		related = vs
	}
	r.Recorder.Eventf(c, related, typ, reason, action, format, args...)
	if vs != nil {
		r.Recorder.Eventf(vs, c, typ, reason, action, format, args...)
	}
}

// keyedMutex serialises work per key (one transfer into a target dataset
// at a time).
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*sync.Mutex{}
	}
	l, ok := k.m[key]
	if !ok {
		l = &sync.Mutex{}
		k.m[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}
