package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// Design:
//
// VolumeSnapshotReplicationReconciler replicates VolumeSnapshots. It
// applies to every ready VolumeSnapshotContent whose snapshot z8r can
// locate (its own driver's, and other ZFS drivers' such as zfs-localpv)
// when the content, its VolumeSnapshot, the PVC or the class asks with
// z8r.dev/replicate-to. The content's own value (the administrator's) is
// used alone; otherwise the targets are the class's (the administrator's)
// plus those of the tenant's request (the VolumeSnapshot's, else the
// PVC's) that a ReplicationTargetPolicy allows (tenancy.Check; refused
// ones get a TargetNotAllowed Warning and the object's
// z8r.dev/annotation-problem, and an empty tenant value is an error that
// is ignored, so a tenant can never remove the class's targets). The
// targets decided are written onto the content, resolved, the first time,
// so replication is keyed on the content and its snapshotHandle, never on
// the VolumeSnapshot, which Velero deletes after its upload. Each target
// gets exactly that snapshot (replicate.SyncSnapshot), incrementally from
// its newest one, which stays held on the source as its base; its outcome
// is one of the target states of api/v1alpha1 (targetstate.go), kept in
// the content's z8r.dev/replication-status. A replica appears as a
// pre-provisioned VolumeSnapshotContent of zfs.z8r.dev naming its node,
// whose deletionPolicy follows the source content's.
//
// Deleting a served driver's content is the snapshotter's
// (SnapshotterReconciler), which destroys the source snapshot before the
// replicas go. Another driver's content carries finalizerReleaseHolds
// from the first replication on; when it is deleted this reconciler
// deletes its unbound replica contents (with Delete) and releases z8r's
// holds (contentKit.cleanupReplicas), then lets it go. Snapshots of other
// drivers are never destroyed by z8r. The source keeps its hold for a
// target whose replica stays, or whose replica's destroy was deferred
// because the target holds it as its last received snapshot (the next
// base): ZFS removes both when the next replication moves the holds.
type VolumeSnapshotReplicationReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   NodeAccess
	Clock    schedule.Clock
	// Drivers are the CSI drivers whose snapshots z8r takes (the
	// snapshotter's); their contents' deletion is the snapshotter's.
	Drivers map[string]bool
	// MaxConcurrent reconciles (default 4).
	MaxConcurrent int
	// Metrics, if set, counts the outcome of each target's replication.
	Metrics *Metrics

	// slots admits transfers within Config.TransferLimits (shared with
	// the DatasetReplication reconciler); nil admits every transfer.
	slots *transferSlots
	// wake reconciles a content with a queued target once a slot frees.
	wake wakeChannel

	skipNameValidation bool
	locks              keyedMutex
}

// Reconcile implements reconcile.Reconciler.
func (r *VolumeSnapshotReplicationReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("content", req.Name)
	ctx = logf.IntoContext(ctx, log)
	var c snapshotv1.VolumeSnapshotContent
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	return r.replicate(ctx, &c)
}

// SetupWithManager registers the reconciler. Besides its contents it
// follows: a replica content's changes (its deletion unblocks the source's),
// and replicate-to changes on VolumeSnapshots and PVCs (a request added
// after the snapshot was ready).
func (r *VolumeSnapshotReplicationReconciler) SetupWithManager(mgr manager.Manager) error {
	if r.MaxConcurrent == 0 {
		r.MaxConcurrent = 4
	}
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
	b := builder.ControllerManagedBy(mgr).
		Named("volumesnapshotreplication").
		For(&snapshotv1.VolumeSnapshotContent{}).
		Watches(&snapshotv1.VolumeSnapshotContent{}, replicaToSource()).
		Watches(&snapshotv1.VolumeSnapshot{}, snapshotToContent, builder.WithPredicates(replicateToChanged())).
		Watches(&corev1.PersistentVolumeClaim{}, claimToContents, builder.WithPredicates(replicateToChanged()))
	if r.slots != nil {
		r.wake = newWakeChannel()
		b = b.WatchesRawSource(r.wake.source())
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrent, SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}

// kit is what the replication shares with the snapshotter.
func (r *VolumeSnapshotReplicationReconciler) kit() contentKit {
	return contentKit{Client: r.Client, Recorder: r.Recorder, Agents: r.Agents, Drivers: r.Drivers}
}

// replicate is the reconcile of one content (see the Design comment).
func (r *VolumeSnapshotReplicationReconciler) replicate(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	if _, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]; isReplica {
		return reconcile.Result{}, nil // a replica is not replicated further
	}
	if c.DeletionTimestamp != nil {
		// A served driver's content is the snapshotter's to delete. For another
		// driver's content, release z8r's holds so that driver's destroy
		// can go ahead.
		if r.Drivers[c.Spec.Driver] || !volsnap.HasFinalizer(c, finalizerReleaseHolds) {
			return reconcile.Result{}, nil
		}
		if _, wait, err := r.kit().cleanupReplicas(ctx, c); err != nil || wait {
			return reconcile.Result{RequeueAfter: retryWaiting}, err
		}
		old := c.DeepCopy()
		controllerutil.RemoveFinalizer(c, finalizerReleaseHolds)
		return reconcile.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, c, client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{})))
	}
	if !volsnap.IsReady(c) || c.Status.SnapshotHandle == nil {
		return reconcile.Result{}, nil
	}
	loc, locErr := r.kit().snapshotLocation(ctx, c)
	if err := r.mirrorPolicy(ctx, c); err != nil {
		return reconcile.Result{}, err
	}
	if !asks(c, loc) {
		return reconcile.Result{}, nil
	}
	if locErr != nil {
		r.kit().event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Locate", "cannot replicate: %v", locErr)
		return reconcile.Result{RequeueAfter: retryInvalid}, nil
	}
	targets, stamped, err := r.kit().targetsFor(ctx, c, loc)
	if errors.Is(err, volsnap.ErrSyntax) || errors.Is(err, volsnap.ErrSelfTarget) {
		r.kit().event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventInvalidAnnotation, "Validate", "invalid %s: %v", z8rv1.AnnotationReplicateTo, err)
		return reconcile.Result{RequeueAfter: retryInvalid}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if len(targets) == 0 {
		if stamped {
			return reconcile.Result{}, nil
		}
		// Refused or empty: look again (a policy may allow it later).
		return reconcile.Result{RequeueAfter: retryInvalid}, nil
	}
	if err := r.stamp(ctx, c, loc, stamped, targets); err != nil {
		return reconcile.Result{}, err
	}

	status, err := volsnap.ParseStatus(c.Annotations[z8rv1.AnnotationReplicationStatus])
	if err != nil {
		log.Error(err, "replication status annotation unreadable; starting afresh")
		status = nil
	}
	// One writer per dataset: a target (or the whole volume) another
	// replication claimed first is refused.
	all, err := claimLister{Client: r.Client, Snapshots: true}.conflicts(ctx, c)
	if err != nil {
		return reconcile.Result{}, err
	}
	refused := refusedTargets(policy.ConflictsOf(all, claimKindVolumeSnapshots, volumeOwnerName(loc.Node, loc.Dataset)))
	now := r.Clock.Now()
	var requeue time.Duration
	for _, t := range targets {
		ts, _ := status.Get(t)
		if conflict, ok := refused.of(t); ok && !ts.Done() {
			msg := conflictMessage(conflict)
			if ts.State != z8rv1.TargetRefused || ts.Error != msg {
				r.kit().event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationConflict, "Replicate", "replica on %s refused: %s", t, msg)
				ts.State, ts.Error, ts.Time = z8rv1.TargetRefused, msg, now.UTC().Format(time.RFC3339)
				status = status.Set(ts)
				if err := r.kit().patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationReplicationStatus: new(status.String())}); err != nil {
					return reconcile.Result{}, err
				}
			}
			requeue = minPositive(requeue, retryConflict)
			continue
		}
		if !ts.Done() {
			if wait := retryWait(ts, now); wait > 0 {
				requeue = minPositive(requeue, wait)
				continue
			}
			ts = r.replicateOne(ctx, c, loc, t, ts)
			r.Metrics.SnapshotReplicated(t.Node, ts.State)
			status = status.Set(ts)
			if err := r.kit().patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationReplicationStatus: new(status.String())}); err != nil {
				return reconcile.Result{}, err
			}
		}
		switch {
		case ts.Synced():
			if err := r.ensureReplica(ctx, c, loc, t); err != nil {
				return reconcile.Result{}, err
			}
		case queued(ts.State, ts.Error):
			requeue = minPositive(requeue, retryQueued)
		case !ts.Done():
			requeue = minPositive(requeue, backoff(ts.Attempts))
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// refusedSet is what a VolumeSnapshot replication was refused.
type refusedSet struct {
	source  *policy.Conflict
	targets map[volsnap.Target]policy.Conflict
}

func refusedTargets(conflicts []policy.Conflict) refusedSet {
	rs := refusedSet{targets: map[volsnap.Target]policy.Conflict{}}
	for i, c := range conflicts {
		if c.Claim.Role == policy.RoleSource {
			rs.source = &conflicts[i]
			continue
		}
		rs.targets[volsnap.Target{Node: c.Claim.Node, Dataset: c.Claim.Dataset}] = c
	}
	return rs
}

// of returns the conflict that refuses t, if any.
func (rs refusedSet) of(t volsnap.Target) (policy.Conflict, bool) {
	if rs.source != nil {
		return *rs.source, true
	}
	c, ok := rs.targets[t]
	return c, ok
}

func retryWait(ts volsnap.TargetState, now time.Time) time.Duration {
	if ts.Attempts == 0 || ts.Time == "" {
		return 0
	}
	last, err := time.Parse(time.RFC3339, ts.Time)
	if err != nil {
		return 0
	}
	return last.Add(backoff(ts.Attempts)).Sub(now)
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || b < a {
		return b
	}
	return a
}

// stamp records on the content what replication keys on: the targets
// decided (resolved, so they outlive the VolumeSnapshot and are not
// re-decided) and where the snapshot is; another
// driver's content also gets z8r's finalizer before z8r holds its
// snapshot.
func (r *VolumeSnapshotReplicationReconciler) stamp(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, stamped bool, targets []volsnap.Target) error {
	set := map[string]*string{
		z8rv1.AnnotationNode:    new(loc.Node),
		z8rv1.AnnotationDataset: new(loc.Dataset),
	}
	if !stamped {
		set[z8rv1.AnnotationReplicateTo] = new(renderTargets(targets))
	}
	if err := r.kit().patchAnnotations(ctx, c, set); err != nil {
		return err
	}
	if r.Drivers[c.Spec.Driver] || volsnap.HasFinalizer(c, finalizerReleaseHolds) {
		return nil
	}
	old := c.DeepCopy()
	controllerutil.AddFinalizer(c, finalizerReleaseHolds)
	return r.Client.Patch(ctx, c, client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{}))
}

// replicateOne sends the content's snapshot to one target.
func (r *VolumeSnapshotReplicationReconciler) replicateOne(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, t volsnap.Target, ts volsnap.TargetState) volsnap.TargetState {
	log := logf.FromContext(ctx).WithValues("target", t.Node, "targetDataset", t.Dataset)
	ts.Time = r.Clock.Now().UTC().Format(time.RFC3339)
	snap := volsnap.Handle(loc.Dataset, loc.Short)
	fail := func(state, reason string, err error) volsnap.TargetState {
		ts.State, ts.Error = state, err.Error()
		ts.Attempts++
		r.kit().event(c, loc.VS, corev1.EventTypeWarning, reason, "Replicate", "replica of %s on %s: %v", snap, t, err)
		return ts
	}
	slotKey := c.Name + "/" + t.String()
	wake := r.wake.waker(&snapshotv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: c.Name}})
	if r.slots.stillQueued(queued(ts.State, ts.Error), slotKey, wake, loc.Node, t.Node) {
		return ts // its turn has not come: nothing listed, held or sent
	}
	unlock := r.locks.lock(t.Node + "\x00" + t.Dataset)
	defer unlock()
	src, err := r.Agents.Get(ctx, loc.Node)
	if err != nil {
		return fail(z8rv1.TargetFailed, z8rv1.EventSourceUnavailable, err)
	}
	tgt, err := r.Agents.Get(ctx, t.Node)
	if err != nil {
		return fail(z8rv1.TargetFailed, z8rv1.EventReplicationFailed, err)
	}
	// A replica dataset whose last snapshot went with its content may take
	// a full receive again; any other existing dataset may not.
	origin := loc.Node + ":" + loc.Dataset
	allowEmpty := false
	switch p, err := tgt.ZFS().Get(ctx, t.Dataset, replicate.ReplicaOfProp); {
	case err == nil:
		// Set locally by z8r (not received, not inherited); replicate
		// still forces a receive only into a provably pristine target and
		// moves any other aside.
		allowEmpty = p[replicate.ReplicaOfProp].Source == "local" && p[replicate.ReplicaOfProp].Value == origin
	case !errors.Is(err, zfsexec.ErrDatasetNotExist):
		return fail(z8rv1.TargetFailed, z8rv1.EventReplicationFailed, err)
	}
	start := time.Now()
	res, err := replicate.SyncSnapshot(ctx, src, loc.Dataset, loc.Short, replicate.Target{
		ID: volsnap.TargetID(t), Origin: origin, Endpoint: tgt, Addr: tgt.Address, HostKey: tgt.HostKey, Dataset: t.Dataset,
	}, replicate.SnapshotOptions{AllowFullIntoEmpty: allowEmpty, Admit: r.slots.admit(slotKey, wake, loc.Node, t.Node)})
	if err != nil {
		var ce *plan.ConflictError
		var queued *TransferQueuedError
		switch {
		case errors.As(err, &queued):
			// Nothing held or sent; not a failed attempt.
			ts.State, ts.Error = z8rv1.TargetPending, queued.Error()
			return ts
		case errors.Is(err, plan.ErrTargetNewer):
			ts.State, ts.Error = z8rv1.TargetSkipped, err.Error()
			log.Info("target already has a newer snapshot; skipped", "snapshot", snap)
			r.kit().event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Replicate", "replica of %s on %s skipped: %v", snap, t, err)
			return ts
		case errors.As(err, &ce):
			log.Info("target diverged; left untouched", "kind", ce.Kind.String(), "error", err.Error())
			return fail(z8rv1.TargetDiverged, z8rv1.EventTargetDiverged, err)
		default:
			// Only a connection that failed: a target the source could
			// not reach must not cancel the source's other transfers.
			r.Agents.DropFailed(err, src, tgt)
		}
		log.Error(err, "replication failed", "snapshot", snap)
		return fail(z8rv1.TargetFailed, z8rv1.EventReplicationFailed, err)
	}
	if res.MovedAside != "" {
		r.kit().event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventTargetDiverged, "Replicate",
			"%s could not be proven pristine and was moved aside to %s on %s before the full receive (nothing destroyed)", t.Dataset, res.MovedAside, t.Node)
	}
	// Mark the replica z8r's for its replica content, locally on the
	// target: deleting that content destroys the snapshot only if this
	// mark is there (a received or hand-made look-alike is never z8r's).
	replica := volsnap.Handle(t.Dataset, loc.Short)
	if err := tgt.ZFS().Set(ctx, replica, map[string]string{volsnap.PropContent: volsnap.ReplicaContentName(c.Name, t)}); err != nil {
		r.Agents.DropFailed(err, tgt)
		return fail(z8rv1.TargetFailed, z8rv1.EventReplicationFailed, fmt.Errorf("mark the replica: %w", err))
	}
	info, err := snapshotInfo(ctx, tgt.ZFS(), replica)
	if err != nil {
		return fail(z8rv1.TargetFailed, z8rv1.EventReplicationFailed, fmt.Errorf("read the replica: %w", err))
	}
	ts.State, ts.Error, ts.Attempts = z8rv1.TargetSynced, "", 0
	ts.GUID = strconv.FormatUint(info.guid, 10)
	ts.Content = volsnap.ReplicaContentName(c.Name, t)
	kind := "incremental"
	if res.Full() {
		kind = "full"
	}
	if len(res.Steps) == 0 {
		kind = "already present"
	}
	log.Info("replicated snapshot", "snapshot", snap, "kind", kind, "bytes", res.Bytes(), "duration", time.Since(start).String())
	r.kit().event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventReplicated, "Replicate",
		"replicated %s to %s (%s, %d bytes, guid %s)", snap, t, kind, res.Bytes(), ts.GUID)
	return ts
}

// ensureReplica creates the pre-provisioned content that shows the replica
// at t, if it does not exist.
func (r *VolumeSnapshotReplicationReconciler) ensureReplica(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, t volsnap.Target) error {
	name := volsnap.ReplicaContentName(c.Name, t)
	var cur snapshotv1.VolumeSnapshotContent
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &cur)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	ns := c.Spec.VolumeSnapshotRef.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	labels := map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByReplication, z8rv1.LabelReplicaOfUID: string(c.UID)}
	if len(validation.IsValidLabelValue(t.Node)) == 0 {
		labels[z8rv1.LabelNode] = t.Node
	}
	rep := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: labels,
			Annotations: map[string]string{
				z8rv1.AnnotationReplicaOf: c.Name,
				z8rv1.AnnotationNode:      t.Node,
				z8rv1.AnnotationDataset:   t.Dataset,
			},
			// Unbound pre-provisioned contents get no finalizer from the
			// snapshot-controller; this one makes deleting the object
			// destroy the replica (deletionPolicy Delete) through z8r.
			Finalizers: []string{volsnap.FinalizerBound},
		},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			Driver:         z8rv1.DriverName,
			DeletionPolicy: c.Spec.DeletionPolicy,
			Source:         snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: new(volsnap.Handle(t.Dataset, loc.Short))},
			// A VolumeSnapshot of this name in the source's namespace binds
			// to the replica (to restore from it on its node).
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: ns, Name: name},
			SourceVolumeMode:  c.Spec.SourceVolumeMode,
		},
	}
	if err := r.Client.Create(ctx, rep); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("create replica content %s: %w", name, err)
	}
	logf.FromContext(ctx).Info("created replica content", "replica", name, "target", t.String())
	r.kit().event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventReplicaCreated, "Replicate",
		"replica on %s is VolumeSnapshotContent %s", t, name)
	return nil
}

// mirrorPolicy keeps the unbound replicas' deletionPolicy equal to c's
// (Velero flips it at expiry).
func (r *VolumeSnapshotReplicationReconciler) mirrorPolicy(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
	reps, err := r.kit().replicasOf(ctx, c)
	if err != nil {
		return err
	}
	for i := range reps {
		rep := &reps[i]
		if rep.Spec.DeletionPolicy == c.Spec.DeletionPolicy || rep.Spec.VolumeSnapshotRef.UID != "" || rep.DeletionTimestamp != nil {
			continue
		}
		old := rep.DeepCopy()
		rep.Spec.DeletionPolicy = c.Spec.DeletionPolicy
		if err := r.Client.Patch(ctx, rep, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("mirror deletionPolicy to replica %s: %w", rep.Name, err)
		}
	}
	return nil
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
