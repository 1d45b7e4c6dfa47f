package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// Field indexes the snapshot reconcilers look objects up by.
const (
	// indexPVByCSI: a PV's pvresolve.CSIKey(driver, volume handle).
	indexPVByCSI = "z8r.pv.csi"
	// indexContentByVolume: a dynamic content's CSIKey(driver, source
	// volume handle).
	indexContentByVolume = "z8r.content.volume"
)

// replicate is the replication role (see the Design comment).
func (r *VolumeSnapshotContentReconciler) replicate(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	if _, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]; isReplica {
		return reconcile.Result{}, nil // a replica is not replicated further
	}
	if c.DeletionTimestamp != nil {
		// Served contents were handled by the snapshotter role. For another
		// driver's content, release z8r's holds so that driver's destroy
		// can go ahead.
		if r.Drivers[c.Spec.Driver] || !volsnap.HasFinalizer(c, finalizerReleaseHolds) {
			return reconcile.Result{}, nil
		}
		if _, wait, err := r.cleanupReplicas(ctx, c); err != nil || wait {
			return reconcile.Result{RequeueAfter: retryWaiting}, err
		}
		old := c.DeepCopy()
		controllerutil.RemoveFinalizer(c, finalizerReleaseHolds)
		return reconcile.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, c, client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{})))
	}
	if !volsnap.IsReady(c) || c.Status.SnapshotHandle == nil {
		return reconcile.Result{}, nil
	}
	loc, locErr := r.snapshotLocation(ctx, c)
	if err := r.mirrorPolicy(ctx, c); err != nil {
		return reconcile.Result{}, err
	}
	if !asks(c, loc) {
		return reconcile.Result{}, nil
	}
	if locErr != nil {
		r.event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Locate", "cannot replicate: %v", locErr)
		return reconcile.Result{RequeueAfter: retryInvalid}, nil
	}
	targets, stamped, err := r.targetsFor(ctx, c, loc)
	if errors.Is(err, volsnap.ErrSyntax) || errors.Is(err, volsnap.ErrSelfTarget) {
		r.event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventInvalidAnnotation, "Validate", "invalid %s: %v", z8rv1.AnnotationReplicateTo, err)
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
			if ts.State != volsnap.StateRefused || ts.Error != msg {
				r.event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationConflict, "Replicate", "replica on %s refused: %s", t, msg)
				ts.State, ts.Error, ts.Time = volsnap.StateRefused, msg, now.UTC().Format(time.RFC3339)
				status = status.Set(ts)
				if err := r.patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationReplicationStatus: new(status.String())}); err != nil {
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
			status = status.Set(ts)
			if err := r.patchAnnotations(ctx, c, map[string]*string{z8rv1.AnnotationReplicationStatus: new(status.String())}); err != nil {
				return reconcile.Result{}, err
			}
		}
		switch {
		case ts.State == volsnap.StateReplicated:
			if err := r.ensureReplica(ctx, c, loc, t); err != nil {
				return reconcile.Result{}, err
			}
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
func (r *VolumeSnapshotContentReconciler) stamp(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, stamped bool, targets []volsnap.Target) error {
	set := map[string]*string{
		z8rv1.AnnotationNode:    new(loc.Node),
		z8rv1.AnnotationDataset: new(loc.Dataset),
	}
	if !stamped {
		set[z8rv1.AnnotationReplicateTo] = new(renderTargets(targets))
	}
	if err := r.patchAnnotations(ctx, c, set); err != nil {
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
func (r *VolumeSnapshotContentReconciler) replicateOne(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, t volsnap.Target, ts volsnap.TargetState) volsnap.TargetState {
	log := logf.FromContext(ctx).WithValues("target", t.Node, "targetDataset", t.Dataset)
	ts.Time = r.Clock.Now().UTC().Format(time.RFC3339)
	snap := volsnap.Handle(loc.Dataset, loc.Short)
	fail := func(state, reason string, err error) volsnap.TargetState {
		ts.State, ts.Error = state, err.Error()
		ts.Attempts++
		r.event(c, loc.VS, corev1.EventTypeWarning, reason, "Replicate", "replica of %s on %s: %v", snap, t, err)
		return ts
	}
	unlock := r.locks.lock(t.Node + "\x00" + t.Dataset)
	defer unlock()
	src, err := r.Agents.Get(ctx, loc.Node)
	if err != nil {
		return fail(volsnap.StateFailed, z8rv1.EventSourceUnavailable, err)
	}
	tgt, err := r.Agents.Get(ctx, t.Node)
	if err != nil {
		return fail(volsnap.StateFailed, z8rv1.EventReplicationFailed, err)
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
		return fail(volsnap.StateFailed, z8rv1.EventReplicationFailed, err)
	}
	start := time.Now()
	res, err := replicate.SyncSnapshot(ctx, src, loc.Dataset, loc.Short, replicate.Target{
		ID: volsnap.TargetID(t), Origin: origin, Endpoint: tgt, Addr: tgt.Address, HostKey: tgt.HostKey, Dataset: t.Dataset,
	}, replicate.SnapshotOptions{AllowFullIntoEmpty: allowEmpty})
	if err != nil {
		var ce *plan.ConflictError
		switch {
		case errors.Is(err, plan.ErrTargetNewer):
			ts.State, ts.Error = volsnap.StateSkipped, err.Error()
			log.Info("target already has a newer snapshot; skipped", "snapshot", snap)
			r.event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Replicate", "replica of %s on %s skipped: %v", snap, t, err)
			return ts
		case errors.As(err, &ce):
			log.Info("target diverged; left untouched", "kind", ce.Kind.String(), "error", err.Error())
			return fail(volsnap.StateDiverged, z8rv1.EventTargetDiverged, err)
		default:
			// Only a connection that failed: a target the source could
			// not reach must not cancel the source's other transfers.
			r.Agents.DropFailed(err, src, tgt)
		}
		log.Error(err, "replication failed", "snapshot", snap)
		return fail(volsnap.StateFailed, z8rv1.EventReplicationFailed, err)
	}
	if res.MovedAside != "" {
		r.event(c, loc.VS, corev1.EventTypeWarning, z8rv1.EventTargetDiverged, "Replicate",
			"%s could not be proven pristine and was moved aside to %s on %s before the full receive (nothing destroyed)", t.Dataset, res.MovedAside, t.Node)
	}
	// Mark the replica z8r's for its replica content, locally on the
	// target: deleting that content destroys the snapshot only if this
	// mark is there (a received or hand-made look-alike is never z8r's).
	replica := volsnap.Handle(t.Dataset, loc.Short)
	if err := tgt.ZFS().Set(ctx, replica, map[string]string{volsnap.PropContent: volsnap.ReplicaContentName(c.Name, t)}); err != nil {
		r.Agents.DropFailed(err, tgt)
		return fail(volsnap.StateFailed, z8rv1.EventReplicationFailed, fmt.Errorf("mark the replica: %w", err))
	}
	info, err := snapshotInfo(ctx, tgt.ZFS(), replica)
	if err != nil {
		return fail(volsnap.StateFailed, z8rv1.EventReplicationFailed, fmt.Errorf("read the replica: %w", err))
	}
	ts.State, ts.Error, ts.Attempts = volsnap.StateReplicated, "", 0
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
	r.event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventReplicated, "Replicate",
		"replicated %s to %s (%s, %d bytes, guid %s)", snap, t, kind, res.Bytes(), ts.GUID)
	return ts
}

// ensureReplica creates the pre-provisioned content that shows the replica
// at t, if it does not exist.
func (r *VolumeSnapshotContentReconciler) ensureReplica(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located, t volsnap.Target) error {
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
	r.event(c, loc.VS, corev1.EventTypeNormal, z8rv1.EventReplicaCreated, "Replicate",
		"replica on %s is VolumeSnapshotContent %s", t, name)
	return nil
}

// replicasOf lists the replica contents of c.
func (r *VolumeSnapshotContentReconciler) replicasOf(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) ([]snapshotv1.VolumeSnapshotContent, error) {
	var list snapshotv1.VolumeSnapshotContentList
	if err := r.Client.List(ctx, &list, client.MatchingLabels{z8rv1.LabelReplicaOfUID: string(c.UID)}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// mirrorPolicy keeps the unbound replicas' deletionPolicy equal to c's
// (Velero flips it at expiry).
func (r *VolumeSnapshotContentReconciler) mirrorPolicy(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) error {
	reps, err := r.replicasOf(ctx, c)
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

// cleanupReplicas runs when a source content is deleted. With Delete its
// unbound replica contents are deleted (wait until they are gone); bound
// ones, and all of them with Retain, stay. Then z8r's holds on the source
// snapshot are released for every target whose replica did not stay
// (for another driver's snapshot: for every target). held lists the
// targets whose hold stays.
func (r *VolumeSnapshotContentReconciler) cleanupReplicas(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (held []string, wait bool, err error) {
	reps, err := r.replicasOf(ctx, c)
	if err != nil {
		return nil, false, err
	}
	kept := map[volsnap.Target]bool{}
	for i := range reps {
		rep := &reps[i]
		t := volsnap.Target{Node: rep.Annotations[z8rv1.AnnotationNode], Dataset: rep.Annotations[z8rv1.AnnotationDataset]}
		if c.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete || rep.Spec.VolumeSnapshotRef.UID != "" {
			kept[t] = true
			continue
		}
		wait = true
		if rep.DeletionTimestamp != nil {
			continue
		}
		if rep.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
			old := rep.DeepCopy()
			rep.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentDelete
			if err := r.Client.Patch(ctx, rep, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
				return nil, false, err
			}
		}
		if err := r.Client.Delete(ctx, rep); client.IgnoreNotFound(err) != nil {
			return nil, false, err
		}
		logf.FromContext(ctx).Info("deleting replica with its source", "replica", rep.Name, "target", t.String())
	}
	if wait {
		return nil, true, nil
	}
	status, _ := volsnap.ParseStatus(c.Annotations[z8rv1.AnnotationReplicationStatus])
	served := r.Drivers[c.Spec.Driver]
	nodeName, dataset := c.Annotations[z8rv1.AnnotationNode], c.Annotations[z8rv1.AnnotationDataset]
	short := ""
	if c.Status != nil && c.Status.SnapshotHandle != nil {
		if i := strings.LastIndexByte(*c.Status.SnapshotHandle, '@'); i >= 0 {
			short = (*c.Status.SnapshotHandle)[i+1:]
		}
	}
	var release []volsnap.Target
	for _, ts := range status {
		if served && kept[ts.Target()] {
			held = append(held, ts.Target().String())
			continue
		}
		// A replica whose destroy was deferred (the target holds its last
		// received snapshot as the next base) still needs its source: keep
		// the source's hold until the next replication moves both.
		if served && short != "" && ts.State == volsnap.StateReplicated && r.replicaStillThere(ctx, ts.Target(), short) {
			held = append(held, ts.Target().String())
			continue
		}
		release = append(release, ts.Target())
	}
	if len(release) == 0 || nodeName == "" || dataset == "" || short == "" {
		return held, false, nil
	}
	node, err := r.Agents.Get(ctx, nodeName)
	if errors.Is(err, ErrNodeUnknown) {
		return held, false, nil // the node, its pool and its holds are gone
	}
	if err != nil {
		return nil, false, fmt.Errorf("release holds on node %s: %w", nodeName, err)
	}
	for _, t := range release {
		// Another driver destroys its own snapshot once z8r lets go, so the
		// chain to t ends here: a replica whose deletion was asked for
		// (Delete) and only deferred by z8r's hold as the next base can go
		// now, leaving t a pristine replica that the next replication
		// receives into in full. Released before the source's hold, so a
		// crash in between only retries.
		if !served && !kept[t] {
			if err := r.releaseReplicaHold(ctx, t, short); err != nil {
				return nil, false, err
			}
		}
		if err := replicate.Release(ctx, node.ZFS(), volsnap.Handle(dataset, short), volsnap.TargetID(t)); err != nil {
			r.Agents.DropFailed(err, node)
			return nil, false, err
		}
	}
	return held, false, nil
}

// releaseReplicaHold releases z8r's replica hold on t's copy of the
// snapshot short. A target node that is gone holds nothing any more.
func (r *VolumeSnapshotContentReconciler) releaseReplicaHold(ctx context.Context, t volsnap.Target, short string) error {
	tgt, err := r.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrNodeUnknown) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release replica hold on node %s: %w", t.Node, err)
	}
	if err := replicate.ReleaseReplica(ctx, tgt.ZFS(), volsnap.Handle(t.Dataset, short), volsnap.TargetID(t)); err != nil {
		r.Agents.DropFailed(err, tgt)
		return err
	}
	return nil
}

// replicaStillThere reports whether t still has the snapshot short (its
// destroy deferred by a hold). A node that cannot be asked counts as
// still having it (keeping a hold is the safe side); a node that is gone
// does not.
func (r *VolumeSnapshotContentReconciler) replicaStillThere(ctx context.Context, t volsnap.Target, short string) bool {
	tgt, err := r.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrNodeUnknown) {
		return false
	}
	if err != nil {
		return true
	}
	ok, err := tgt.ZFS().Exists(ctx, volsnap.Handle(t.Dataset, short))
	if err != nil {
		r.Agents.DropFailed(err, tgt)
		return true
	}
	return ok
}

// snapshotLocation finds where a ready content's snapshot is, and the
// objects that may ask for its replication. It fills what it can even
// when it fails.
func (r *VolumeSnapshotContentReconciler) snapshotLocation(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (located, error) {
	loc := located{VS: r.boundSnapshot(ctx, c), Class: r.classOf(ctx, c.Spec.VolumeSnapshotClassName)}
	handle := *c.Status.SnapshotHandle
	loc.Node, loc.Dataset = c.Annotations[z8rv1.AnnotationNode], c.Annotations[z8rv1.AnnotationDataset]
	var err error
	if r.Drivers[c.Spec.Driver] {
		loc.Dataset, loc.Short, err = volsnap.ParseHandle(handle)
	} else {
		loc.Short, err = volsnap.ForeignShortName(handle)
	}
	if err != nil {
		return loc, err
	}
	if c.Spec.Source.VolumeHandle != nil {
		pv, perr := r.pvFor(ctx, c.Spec.Driver, *c.Spec.Source.VolumeHandle)
		if perr == nil {
			loc.PVC = r.claimOf(ctx, pv)
			if loc.Node == "" || loc.Dataset == "" {
				vol, rerr := pvresolve.Resolve(pv)
				if rerr != nil {
					return loc, rerr
				}
				if loc.Node == "" {
					loc.Node = vol.Node
				}
				if loc.Dataset == "" {
					loc.Dataset = vol.Dataset
				}
			}
		} else if loc.Node == "" || loc.Dataset == "" {
			return loc, perr
		}
	}
	if loc.Node == "" || loc.Dataset == "" {
		return loc, fmt.Errorf("cannot tell where snapshot %s is: annotate the content with %s and %s", handle, z8rv1.AnnotationNode, z8rv1.AnnotationDataset)
	}
	return loc, nil
}

// locateVolume finds the volume a dynamic content snapshots, and the
// objects around it.
func (r *VolumeSnapshotContentReconciler) locateVolume(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (located, error) {
	loc := located{VS: r.boundSnapshot(ctx, c), Class: r.classOf(ctx, c.Spec.VolumeSnapshotClassName)}
	pv, err := r.pvFor(ctx, c.Spec.Driver, *c.Spec.Source.VolumeHandle)
	if err != nil {
		return loc, err
	}
	loc.PVC = r.claimOf(ctx, pv)
	vol, err := pvresolve.Resolve(pv)
	if err != nil {
		return loc, err
	}
	if vol.NeedsMountpointLookup() {
		return loc, fmt.Errorf("PersistentVolume %s: a local volume cannot be snapshotted through the CSI snapshot API", pv.Name)
	}
	loc.Node, loc.Dataset = vol.Node, vol.Dataset
	return loc, nil
}

// asks reports whether anything asks for c's replication: c itself, its
// class, its VolumeSnapshot or its PVC carries z8r.dev/replicate-to.
func asks(c *snapshotv1.VolumeSnapshotContent, loc located) bool {
	has := func(ann map[string]string) bool { _, ok := ann[z8rv1.AnnotationReplicateTo]; return ok }
	return has(c.Annotations) || loc.Class != nil && has(loc.Class.Annotations) ||
		loc.VS != nil && has(loc.VS.Annotations) || loc.PVC != nil && has(loc.PVC.Annotations)
}

// targetsFor returns the targets c is replicated to (see the Design
// comment): c's own z8r.dev/replicate-to when it has one (stamped=true:
// the administrator's, or z8r's earlier decision); else the union of its
// class's targets (the administrator's) and the tenant's (its
// VolumeSnapshot's, else its PVC's), the tenant's only as far as a
// ReplicationTargetPolicy allows them. An empty tenant value is reported
// and skipped; refused targets are reported. A malformed value is an
// error matching volsnap.ErrSyntax or volsnap.ErrSelfTarget.
func (r *VolumeSnapshotContentReconciler) targetsFor(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located) (targets []volsnap.Target, stamped bool, err error) {
	const key = z8rv1.AnnotationReplicateTo
	if v, ok := c.Annotations[key]; ok {
		targets, err := volsnap.Request{Value: v, From: volsnap.Annotated{Kind: contentKind, Name: c.Name}}.Targets(loc.Node, loc.Dataset)
		return targets, true, err
	}
	if loc.Class != nil {
		if v, ok := loc.Class.Annotations[key]; ok {
			req := volsnap.Request{Value: v, From: volsnap.Annotated{Kind: "VolumeSnapshotClass", Name: loc.Class.Name}}
			if targets, err = req.Targets(loc.Node, loc.Dataset); err != nil {
				return nil, false, err
			}
		}
	}
	// The tenant's request: the VolumeSnapshot's, else the PVC's.
	type carrier struct {
		obj  client.Object
		desc string
	}
	var carriers []carrier
	if loc.VS != nil {
		carriers = append(carriers, carrier{loc.VS, "VolumeSnapshot " + loc.VS.Namespace + "/" + loc.VS.Name})
	}
	if loc.PVC != nil {
		carriers = append(carriers, carrier{loc.PVC, "PersistentVolumeClaim " + loc.PVC.Namespace + "/" + loc.PVC.Name})
	}
	for _, cr := range carriers {
		v, ok := cr.obj.GetAnnotations()[key]
		if !ok {
			continue
		}
		if isEmptyTargets(v) {
			note := emptyNote(cr.desc) + "; it is ignored"
			r.tenantEvent(c, loc, cr.obj, z8rv1.EventEmptyAnnotation, note)
			if err := r.snapshotProblem(ctx, cr.obj, note); err != nil {
				return nil, false, err
			}
			continue // as if absent: the next one in order applies
		}
		ts, err := volsnap.ResolveTargets(v, loc.Node, loc.Dataset)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", cr.desc, err)
		}
		allowed, refused, err := tenantScope(ctx, r.Client, cr.obj.GetNamespace(), ts)
		if err != nil {
			return nil, false, err
		}
		problem := ""
		if len(refused) > 0 {
			problem = refusalNote(cr.desc, refused)
			logf.FromContext(ctx).Info("replica targets refused by ReplicationTargetPolicies", "from", cr.desc, "refused", len(refused))
			r.tenantEvent(c, loc, cr.obj, z8rv1.EventTargetNotAllowed, problem)
		}
		if err := r.snapshotProblem(ctx, cr.obj, problem); err != nil {
			return nil, false, err
		}
		for _, t := range allowed {
			if !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
		break
	}
	return targets, false, nil
}

// snapshotProblem records the current problem of a VolumeSnapshot's
// request in its z8r.dev/annotation-problem. A PVC's is left to the PVC
// reconciler, which decides the same for the PVC's value and also
// records the PVC's other problems.
func (r *VolumeSnapshotContentReconciler) snapshotProblem(ctx context.Context, obj client.Object, problem string) error {
	if _, ok := obj.(*snapshotv1.VolumeSnapshot); !ok {
		return nil
	}
	return setAnnotationProblem(ctx, r.Client, obj, problem)
}

// tenantEvent reports a problem of a tenant's request on the content, its
// VolumeSnapshot and, when the request is the PVC's, the PVC.
func (r *VolumeSnapshotContentReconciler) tenantEvent(c *snapshotv1.VolumeSnapshotContent, loc located, from client.Object, reason, note string) {
	r.event(c, loc.VS, corev1.EventTypeWarning, reason, "Validate", "%s", note)
	if pvc, ok := from.(*corev1.PersistentVolumeClaim); ok {
		r.Recorder.Eventf(pvc, c, corev1.EventTypeWarning, reason, "Validate", "%s", note)
	}
}

// renderTargets writes resolved targets as a replicate-to value
// (NODE:DATASET entries), which resolves to exactly them.
func renderTargets(ts []volsnap.Target) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, ",")
}

// pvFor finds the PV of a CSI volume.
func (r *VolumeSnapshotContentReconciler) pvFor(ctx context.Context, driver, handle string) (*corev1.PersistentVolume, error) {
	var list corev1.PersistentVolumeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{indexPVByCSI: pvresolve.CSIKey(driver, handle)}); err != nil {
		return nil, err
	}
	switch len(list.Items) {
	case 0:
		return nil, fmt.Errorf("no PersistentVolume of driver %s has volume handle %s", driver, handle)
	case 1:
		return &list.Items[0], nil
	}
	return nil, fmt.Errorf("%d PersistentVolumes of driver %s have volume handle %s", len(list.Items), driver, handle)
}

// claimOf returns the PVC a PV is bound to, if it still exists.
func (r *VolumeSnapshotContentReconciler) claimOf(ctx context.Context, pv *corev1.PersistentVolume) *corev1.PersistentVolumeClaim {
	ref := pv.Spec.ClaimRef
	if ref == nil {
		return nil
	}
	var pvc corev1.PersistentVolumeClaim
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &pvc); err != nil {
		return nil
	}
	if ref.UID != "" && pvc.UID != ref.UID {
		return nil
	}
	return &pvc
}

// boundSnapshot returns the VolumeSnapshot c is bound to, if it exists.
func (r *VolumeSnapshotContentReconciler) boundSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) *snapshotv1.VolumeSnapshot {
	ref := c.Spec.VolumeSnapshotRef
	if ref.UID == "" || ref.Name == "" {
		return nil
	}
	var vs snapshotv1.VolumeSnapshot
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &vs); err != nil || vs.UID != ref.UID {
		return nil
	}
	return &vs
}

// classOf returns the named VolumeSnapshotClass, if it exists.
func (r *VolumeSnapshotContentReconciler) classOf(ctx context.Context, name *string) *snapshotv1.VolumeSnapshotClass {
	if name == nil || *name == "" {
		return nil
	}
	var class snapshotv1.VolumeSnapshotClass
	if err := r.Client.Get(ctx, client.ObjectKey{Name: *name}, &class); err != nil {
		return nil
	}
	return &class
}

// checkPool checks, from the node's ZFSNode, that a z8r agent serves the
// dataset's pool there, so that no request is sent that it would refuse.
func (r *VolumeSnapshotContentReconciler) checkPool(ctx context.Context, node, dataset string) error {
	var zn z8rv1.ZFSNode
	if err := r.Client.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("node %s: %w", node, ErrNodeUnknown)
		}
		return err
	}
	pool, _, _ := strings.Cut(dataset, "/")
	if len(zn.Status.Pools) == 0 {
		return fmt.Errorf("node %s: %w: it has published no pools yet", node, ErrNodeNotReady)
	}
	if !slices.Contains(zn.Status.Pools, pool) {
		return fmt.Errorf("dataset %s is in pool %s, which the z8r agent on node %s does not serve (it serves %v)", dataset, pool, node, zn.Status.Pools)
	}
	return nil
}
