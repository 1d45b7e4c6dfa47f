package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// Design:
//
// SnapshotterReconciler plays the csi-snapshotter sidecar's role for the
// VolumeSnapshotContents of the drivers z8r serves (zfs.z8r.dev and any
// configured in Drivers). It works with the unmodified
// snapshot-controller: that controller creates the content of a
// VolumeSnapshot, adds the bound-protection finalizer, and marks the
// content being-deleted when the VolumeSnapshot goes; this reconciler
// takes the ZFS snapshot through the node's agent and fills the content's
// status, and on deletion destroys the snapshot (deletionPolicy Delete)
// before it removes the finalizer. It follows the sidecar's order
// (delete, then create or import, then status; volsnap.Next) and its
// safety rule: the being-created annotation is written before the node is
// asked and removed only on success or a final error, so a crash never
// leaks a snapshot; and the snapshot's name depends only on the content,
// so the retry after a crash adopts the snapshot instead of taking a
// second one. Nothing is asked of a node before the volume, the node and
// every annotation (z8r.dev/replicate-to included, decided as the
// replication decides it: contentKit.targetsFor) have been checked: bad
// input gets an error on the content (which the snapshot-controller
// copies to the VolumeSnapshot) and runs no ZFS command.
//
// Deleting a source content with Delete destroys its snapshot first
// (deferred, `zfs destroy -d`, while holds keep it) and records that on
// the content (z8r.dev/source-destroyed); only then are its unbound
// replica contents deleted and the holds of the targets whose replica
// goes released (contentKit.cleanupReplicas, the replication's part of a
// deletion, run here so that this order holds), and only then does the
// finalizer go. A source node that is down therefore keeps the deletion
// waiting and costs no copy. A replica content's snapshot is destroyed
// only if it carries z8r's local mark for that replica content.
type SnapshotterReconciler struct {
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
	// Metrics, if set, records the create → readyToUse latency.
	Metrics *Metrics

	skipNameValidation bool
}

// SnapshotHooks let fault-injection tests act at chosen points of the
// snapshotter. Production leaves them nil.
type SnapshotHooks struct {
	// AfterSnapshot runs after the node took a content's ZFS snapshot and
	// before the content's status is written.
	AfterSnapshot func(ctx context.Context, content, snapshot string)
}

// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;list;watch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=z8rnodes,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *SnapshotterReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("content", req.Name)
	ctx = logf.IntoContext(ctx, log)
	var c snapshotv1.VolumeSnapshotContent
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !r.Drivers[c.Spec.Driver] {
		return reconcile.Result{}, nil
	}
	return r.snapshotter(ctx, &c)
}

// SetupWithManager registers the reconciler for the served drivers'
// contents. It also follows a replica content's changes: its deletion
// unblocks its source's.
func (r *SnapshotterReconciler) SetupWithManager(mgr manager.Manager) error {
	if r.MaxConcurrent == 0 {
		r.MaxConcurrent = 4
	}
	served := predicate.NewPredicateFuncs(func(o client.Object) bool {
		c, ok := o.(*snapshotv1.VolumeSnapshotContent)
		return ok && r.Drivers[c.Spec.Driver]
	})
	return builder.ControllerManagedBy(mgr).
		Named("snapshotter").
		For(&snapshotv1.VolumeSnapshotContent{}, builder.WithPredicates(served)).
		Watches(&snapshotv1.VolumeSnapshotContent{}, replicaToSource()).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrent, SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}

// kit is what the snapshotter shares with the replication.
func (r *SnapshotterReconciler) kit() contentKit {
	return contentKit{Client: r.Client, Recorder: r.Recorder, Agents: r.Agents, Drivers: r.Drivers}
}

// snapshotter does the sidecar's part, in its order (volsnap.Next):
// delete, then create or import, then status. A ready content needs
// nothing; a deletion the snapshot-controller has not released yet waits.
func (r *SnapshotterReconciler) snapshotter(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	switch volsnap.Next(c) {
	case volsnap.ActDelete:
		return r.deleteSnapshot(ctx, c)
	case volsnap.ActRemoveFinalizer:
		return r.letGo(ctx, c)
	case volsnap.ActCreate:
		return r.create(ctx, c)
	case volsnap.ActImport:
		return r.importSnapshot(ctx, c)
	case volsnap.ActClearBeingCreated:
		return reconcile.Result{}, r.kit().patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil})
	}
	return reconcile.Result{}, nil
}

// create takes the snapshot of a dynamic content (ActCreate).
func (r *SnapshotterReconciler) create(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	loc, err := r.kit().locateVolume(ctx, c)
	if err != nil {
		// Nothing was asked of a node; report and look again later (the PV,
		// the node's agent or an annotation may be fixed).
		return r.failCreate(ctx, c, loc.VS, err, retryInvalid)
	}
	targets, stamped, err := r.kit().targetsFor(ctx, c, loc)
	if errors.Is(err, volsnap.ErrSyntax) || errors.Is(err, volsnap.ErrSelfTarget) {
		return r.failCreate(ctx, c, loc.VS, fmt.Errorf("invalid %s: %w", z8rv1.AnnotationReplicateTo, err), retryInvalid)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	short, err := volsnap.SnapshotName(c)
	if err != nil {
		return r.failCreate(ctx, c, loc.VS, err, retryInvalid)
	}
	if err := r.kit().checkPool(ctx, loc.Node, loc.Dataset); err != nil {
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
	if err := r.kit().patchAnnotations(ctx, c, mark); err != nil {
		return reconcile.Result{}, err
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
			if perr := r.kit().patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil}); perr != nil {
				return reconcile.Result{}, perr
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
		return reconcile.Result{}, err
	}
	if err := r.kit().patchAnnotations(ctx, c, map[string]*string{volsnap.AnnBeingCreated: nil}); err != nil {
		return reconcile.Result{}, err
	}
	log.Info("took snapshot", "node", loc.Node, "snapshot", snap, "restoreSize", info.size)
	r.kit().event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventSnapshotCreated, "Snapshot",
		"took ZFS snapshot %s on node %s (restore size %d bytes)", snap, loc.Node, info.size)
	return reconcile.Result{}, nil
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
func (r *SnapshotterReconciler) adopt(ctx context.Context, node *Node, snap, content string) error {
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
func (r *SnapshotterReconciler) failCreate(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, err error, after time.Duration) (reconcile.Result, error) {
	if werr := r.setError(ctx, c, vs, z8rv1.EventSnapshotFailed, err); werr != nil {
		return reconcile.Result{}, werr
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// importSnapshot verifies a pre-provisioned content's snapshot on its node
// and fills the status (ActImport).
func (r *SnapshotterReconciler) importSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	vs := r.kit().boundSnapshot(ctx, c)
	handle := *c.Spec.Source.SnapshotHandle
	nodeName := c.Annotations[z8rv1.AnnotationNode]
	if nodeName == "" {
		return r.failCreate(ctx, c, vs, fmt.Errorf("pre-provisioned snapshot %s: annotate the content with %s naming the node that holds it", handle, z8rv1.AnnotationNode), retryInvalid)
	}
	dataset, _, err := volsnap.ParseHandle(handle)
	if err != nil {
		return r.failCreate(ctx, c, vs, err, retryInvalid)
	}
	if err := r.kit().checkPool(ctx, nodeName, dataset); err != nil {
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
		return reconcile.Result{}, err
	}
	logf.FromContext(ctx).Info("imported pre-provisioned snapshot", "node", nodeName, "snapshot", handle)
	r.kit().event(c, vs, corev1.EventTypeNormal, z8rv1.EventSnapshotImported, "Import", "snapshot %s exists on node %s", handle, nodeName)
	return reconcile.Result{}, nil
}

// deleteSnapshot destroys the snapshot of a content deleted with
// deletionPolicy Delete, then lets the content go (ActDelete). The source
// snapshot is destroyed (or marked for deferred destruction while holds
// keep it) and that is recorded on the content before any replica is
// deleted: a source node that is down keeps the deletion waiting and
// costs no copy. A replica's snapshot is destroyed only if z8r's local
// mark for this replica content is on it (replicaOwned).
func (r *SnapshotterReconciler) deleteSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	handle := *c.Status.SnapshotHandle
	nodeName := c.Annotations[z8rv1.AnnotationNode]
	if c.Annotations[z8rv1.AnnotationSourceDestroyed] != annotationYes {
		if nodeName == "" {
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete",
				"cannot destroy %s: the content does not record its node (annotation %s)", handle, z8rv1.AnnotationNode)
			return reconcile.Result{RequeueAfter: retryInvalid}, nil
		}
		node, err := r.Agents.Get(ctx, nodeName)
		switch {
		case errors.Is(err, ErrNodeUnknown):
			// The node and its agent are gone, and with them the pool.
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete",
				"node %s has no z8r agent any more; %s was not destroyed", nodeName, handle)
		case err != nil:
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "cannot destroy %s on node %s yet: %v", handle, nodeName, err)
			return reconcile.Result{RequeueAfter: retryTransient}, nil
		default:
			if res, done := r.destroyOnNode(ctx, c, node, handle); done {
				return res, nil
			}
		}
		if err := r.kit().patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationSourceDestroyed: new(annotationYes)}); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	// Replicas that go with it go now; holds are released only for targets
	// that no longer have the snapshot (which lets a deferred destroy finish).
	held, wait, err := r.kit().cleanupReplicas(ctx, c)
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
func (r *SnapshotterReconciler) destroyOnNode(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, node *Node, handle string) (reconcile.Result, bool) {
	log := logf.FromContext(ctx)
	if _, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]; isReplica {
		owned, err := replicaOwned(ctx, node.ZFS(), handle, c.Name)
		switch {
		case errors.Is(err, zfsexec.ErrDatasetNotExist):
			return reconcile.Result{}, false
		case err != nil:
			r.Agents.DropFailed(err, node)
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "check %s on node %s: %v", handle, node.Name, err)
			return reconcile.Result{RequeueAfter: retryTransient}, true
		case !owned:
			log.Info("replica snapshot not marked as this content's; not destroyed", "node", node.Name, "snapshot", handle)
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventReplicaNotOwned, "Delete",
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
		r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "destroy %s on node %s: %v", handle, node.Name, err)
		return reconcile.Result{RequeueAfter: retryTransient}, true
	}
	if deferred {
		log.Info("snapshot held; destroy deferred", "node", node.Name, "snapshot", handle)
		r.kit().event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotDeferred, "Delete",
			"%s on node %s is still held (incremental base of replicas): marked for deferred destroy, ZFS removes it when the last hold goes", handle, node.Name)
	} else {
		log.Info("destroyed snapshot", "node", node.Name, "snapshot", handle)
		r.kit().event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotDeleted, "Delete", "destroyed %s on node %s", handle, node.Name)
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
func (r *SnapshotterReconciler) letGo(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	if c.Spec.DeletionPolicy == snapshotv1.VolumeSnapshotContentDelete && c.Annotations[z8rv1.AnnotationSourceDestroyed] != annotationYes {
		// Nothing recorded, but something may exist: a create that failed
		// in a way z8r took for final, or a replica deleted before it was
		// imported. Destroy it if it is this content's.
		if err := r.destroyStray(ctx, c); err != nil {
			r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotDeleteFailed, "Delete", "%v", err)
			return reconcile.Result{RequeueAfter: retryTransient}, nil
		}
		if err := r.kit().patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationSourceDestroyed: new(annotationYes)}); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	if _, wait, err := r.kit().cleanupReplicas(ctx, c); err != nil || wait {
		return reconcile.Result{RequeueAfter: retryWaiting}, err
	}
	if c.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete && c.Status != nil && c.Status.SnapshotHandle != nil {
		r.kit().event(c, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotRetained, "Delete",
			"deletionPolicy %s: %s stays on node %s", c.Spec.DeletionPolicy, *c.Status.SnapshotHandle, c.Annotations[z8rv1.AnnotationNode])
	}
	return reconcile.Result{}, r.removeFinalizers(ctx, c)
}

// destroyStray destroys a snapshot of a Delete content whose status never
// recorded it: the one a dynamic content's failed create may have left
// (only if it carries this content's property), or a replica's.
func (r *SnapshotterReconciler) destroyStray(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
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
		r.kit().event(c, nil, corev1.EventTypeWarning, z8rv1.EventReplicaNotOwned, "Delete",
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
func (r *SnapshotterReconciler) removeFinalizers(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
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
func (r *SnapshotterReconciler) markReady(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, handle string, info snapInfo) error {
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
	wasReady := c.Status.ReadyToUse != nil && *c.Status.ReadyToUse
	c.Status.ReadyToUse = new(true)
	c.Status.Error = nil
	if err := r.Client.Status().Patch(ctx, c, client.MergeFrom(old)); err != nil {
		return err
	}
	if !wasReady {
		r.Metrics.SnapshotReady(c.Spec.Driver, c.CreationTimestamp.Time, time.Now())
	}
	return nil
}

// setError records err on the content (readyToUse false) and emits a
// Warning on the content and its VolumeSnapshot, unless the same error is
// already recorded.
func (r *SnapshotterReconciler) setError(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, reason string, err error) error {
	msg := err.Error()
	if c.Status != nil && c.Status.Error != nil && c.Status.Error.Message != nil && *c.Status.Error.Message == msg {
		return nil
	}
	old := c.DeepCopy()
	if c.Status == nil {
		c.Status = &snapshotv1.VolumeSnapshotContentStatus{}
	}
	c.Status.ReadyToUse = new(false)
	c.Status.Error = &snapshotv1.VolumeSnapshotError{Time: &metav1.Time{Time: r.Clock.Now()}, Message: new(msg)}
	r.kit().event(c, vs, corev1.EventTypeWarning, reason, "Snapshot", "%s", msg)
	return client.IgnoreNotFound(r.Client.Status().Patch(ctx, c, client.MergeFrom(old)))
}
