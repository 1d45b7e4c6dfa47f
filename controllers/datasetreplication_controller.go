package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/snapname"
)

// FailAfterSnapshot is the failpoint (package failpoint) hit right after a
// scheduled snapshot is taken, before any target is synced.
const FailAfterSnapshot = "controller.after-snapshot"

// DatasetReplicationReconciler snapshots on schedule and keeps every target
// current.
type DatasetReplicationReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   NodeAccess
	Metrics  *Metrics
	Clock    schedule.Clock
	// SnapshotPrefix names z8r's snapshots (default "z8r").
	SnapshotPrefix string
	// MaxConcurrent syncs of different datasets (default 4).
	MaxConcurrent int

	// ProgressInterval is how often a running sync's progress is written
	// to status (default DefaultProgressInterval).
	ProgressInterval time.Duration

	// DetachAfter is how long a reconcile waits for a sync that is
	// transferring before it leaves it running in the background and
	// frees its worker (default DefaultDetachAfter; negative: at once).
	DetachAfter time.Duration

	// RemovedTargetGrace is how long a target removed from the spec keeps
	// its base held on the source (default DefaultRemovedTargetGrace).
	RemovedTargetGrace time.Duration
	// SnapshotsServed: the snapshot.storage.k8s.io API is served, so
	// VolumeSnapshot replications claim datasets too.
	SnapshotsServed bool
	// APIReader reads from the API server, bypassing the cache: a
	// reconcile whose cached object may predate this reconciler's own
	// last write to it reads it there (ownWrites). Nil reads the cache
	// only.
	APIReader client.Reader
	// slots admits transfers within Config.TransferLimits (shared with the
	// VolumeSnapshot replication reconciler); nil admits every transfer.
	slots *transferSlots
	// wake reconciles a queued replication once a slot frees, and one
	// whose background transfer ended.
	wake wakeChannel
	// transfers runs the syncs that outlast DetachAfter.
	transfers transferRunnerOnce

	written            ownWrites
	skipNameValidation bool
}

// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents,verbs=get;list;watch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications/finalizers,verbs=update
// +kubebuilder:rbac:groups=z8r.dev,resources=z8rnodes,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *DatasetReplicationReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("replication", req.Name)
	ctx = logf.IntoContext(ctx, log)
	var dr z8rv1.DatasetReplication
	if err := r.written.getFresh(ctx, r.Client, r.APIReader, req.NamespacedName, &dr); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.forget(req.NamespacedName)
			r.transfers.get().forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !dr.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &dr)
	}
	// The outcomes of syncs that ended in the background: part of the
	// status from here on, written with what this reconcile does (the
	// source's pruning included), and taken again if it writes nothing.
	done := r.transfers.get().finished(dr.Name)
	mergeOutcomes(dr.Name, &dr.Status, done)
	// Metrics from the stored status: after a restart, before any sync.
	r.Metrics.ObserveRead(&dr, r.Clock)
	if !controllerutil.ContainsFinalizer(&dr, finalizerReleaseHolds) {
		controllerutil.AddFinalizer(&dr, finalizerReleaseHolds)
		if err := r.Client.Update(ctx, &dr); err != nil {
			return reconcile.Result{}, err
		}
		r.written.record(&dr)
	}
	// One source dataset has one replication, one target dataset one
	// writer: a later claimant is refused and nothing runs for it.
	all, err := claimLister{Client: r.Client, Snapshots: r.SnapshotsServed}.conflicts(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	if mine := policy.ConflictsOf(all, claimKindReplication, dr.Name); len(mine) > 0 {
		return r.refuse(ctx, &dr, mine)
	}
	if dr.Spec.Suspend {
		if len(done) > 0 {
			return reconcile.Result{}, r.writeStatus(ctx, &dr, dr.Status.DeepCopy())
		}
		return reconcile.Result{}, nil
	}
	sched, err := schedule.Parse(orDefault(dr.Spec.Schedule, schedule.DefaultInterval.String()))
	if err != nil {
		return r.invalid(ctx, &dr, "schedule", err)
	}
	srcRet, err := retention.Parse(orDefault(dr.Spec.Retention, retention.DefaultSource))
	if err != nil {
		return r.invalid(ctx, &dr, "retention", err)
	}
	// A target's own retention is checked here too: before, one that did
	// not parse silently turned that target's pruning off.
	for i, t := range dr.Spec.Targets {
		if _, err := retention.Parse(targetRetention(&dr, t)); err != nil {
			return r.invalid(ctx, &dr, fmt.Sprintf("targets[%d].retention", i), err)
		}
	}
	now := r.Clock.Now()
	status := dr.Status.DeepCopy()
	status.ObservedGeneration = dr.Generation
	// A changed spec.source is a promotion (promotion.go); nothing else
	// runs until it completes.
	if status.Source == nil {
		src := dr.Spec.Source
		status.Source = &src
	}
	if *status.Source != dr.Spec.Source || promotionRunning(status.Promotion) {
		if r.transfers.get().busy(dr.Name) {
			// The sync's watch cancels it (the source changed); its end
			// wakes this replication.
			return reconcile.Result{RequeueAfter: time.Second}, nil
		}
		return r.promote(ctx, &dr, status, now)
	}

	src, err := r.Agents.Get(ctx, dr.Spec.Source.Node)
	if errors.Is(err, ErrHostKeyUnknown) {
		// A new agent whose key the Z8RNode reconciler is about to pin.
		return reconcile.Result{RequeueAfter: retryPinning}, nil
	}
	if err != nil {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventSourceUnavailable, "Connect", "source node %s: %v", dr.Spec.Source.Node, err)
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: z8rv1.ReasonSourceUnavailable, Message: err.Error(), ObservedGeneration: dr.Generation})
		status.State = z8rv1.TargetFailed
		if uerr := r.writeStatus(ctx, &dr, status); uerr != nil {
			return reconcile.Result{}, uerr
		}
		return reconcile.Result{RequeueAfter: retryUnavailable}, nil
	}
	dataset := dr.Spec.Source.Dataset

	// 1. Snapshot on schedule.
	srcList, err := replicate.List(ctx, src.ZFS(), dataset)
	if err != nil {
		r.Agents.DropFailed(err, src)
		return r.sourceError(ctx, &dr, status, err)
	}
	if !srcList.Exists {
		return r.sourceError(ctx, &dr, status, fmt.Errorf("source dataset %s does not exist on node %s", dataset, src.Name))
	}
	// The schedule counts from the newest of this replication's snapshots
	// (the time in z8r's own name is the controller clock's, which keeps
	// the schedule consistent with the clock that decides; creation is the
	// node's clock). One named in the future (a clock that ran ahead) does
	// not count, or it would freeze the schedule until then.
	last, future, lastName := scheduleTimes(srcList, dr.Name, now)
	if lastName != "" {
		status.LastSnapshot = lastName
		status.LastSnapshotTime = &metav1.Time{Time: last}
	}
	if len(future) > 0 {
		log.Info("snapshots named in the future ignored by the schedule", "snapshots", future)
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventFutureSnapshot, "Schedule",
			"snapshots of %s are named after the controller's time %s (a clock ran ahead); the schedule does not wait for them: %v", dataset, now.UTC().Format(time.RFC3339), future)
	}
	// A manual trigger takes one snapshot per new value, whatever the
	// schedule says; its sync is retried until every target has it.
	manual := ""
	if dr.Spec.Trigger != nil && dr.Spec.Trigger.Manual != "" && dr.Spec.Trigger.Manual != status.LastManualSync {
		manual = dr.Spec.Trigger.Manual
	}
	takeManual := manual != "" && status.ManualTrigger != manual
	if sched.Due(last, now) || takeManual {
		name, err := replicate.TakeSnapshot(ctx, src.ZFS(), dataset, r.prefix(), dr.Name, now)
		if err != nil {
			r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotFailed, "Snapshot", "snapshot of %s failed: %v", dataset, err)
			return r.sourceError(ctx, &dr, status, err)
		}
		failpoint.Hit(FailAfterSnapshot)
		log.Info("took snapshot", "dataset", dataset, "snapshot", name)
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotCreated, "Snapshot", "took %s@%s", dataset, name)
		if r.Metrics != nil {
			r.Metrics.Snapshots.WithLabelValues(dr.Name).Inc()
		}
		last = now
		status.LastSnapshot = name
		status.LastSnapshotTime = &metav1.Time{Time: now}
		if manual != "" {
			status.ManualTrigger, status.ManualSnapshot = manual, name
		}
	}
	next := sched.NextDue(last, now)
	status.NextSnapshotTime = &metav1.Time{Time: next}
	requeue := next.Sub(now)

	// 2. Every target, independently: one failing does not block the others.
	prev := map[string]z8rv1.TargetStatus{}
	for _, t := range dr.Status.Targets {
		prev[t.Node+"/"+t.Dataset] = t
	}
	status.Targets = nil
	protected := map[string]bool{}
	// The old source of an unplanned failover receives nothing before
	// its tail is kept aside (rejoin).
	var rejoining *z8rv1.DatasetRef
	if p := status.Promotion; p != nil && (p.Rejoin == z8rv1.RejoinPending || p.Rejoin == z8rv1.RejoinReceiving) {
		rejoining = &p.From
	}
	inBackground := map[string]bool{}
	for _, t := range dr.Spec.Targets {
		key := t.Node + "/" + targetDataset(dr, t)
		if job := r.transfers.get().running(dr.Name + "/" + t.Node + ":" + targetDataset(dr, t)); job != nil {
			// Its sync runs in the background: nothing else runs for it.
			ts := prev[key]
			ts.Node, ts.Dataset, ts.RemovedAt = t.Node, targetDataset(dr, t), nil
			status.Targets = append(status.Targets, runningStatus(ts))
			inBackground[key] = true
			requeue = min(requeue, retryRunning)
			continue
		}
		var ts z8rv1.TargetStatus
		if out, ok := done[dr.Name+"/"+t.Node+":"+targetDataset(dr, t)]; ok {
			// Its sync ended in the background: its outcome. A failure
			// backs off as one in this reconcile would; a success that
			// did not reach the newest snapshot (taken while it ran)
			// syncs on now.
			ts = out
			if (out.State == z8rv1.TargetSynced || out.State == z8rv1.TargetBehind) && status.LastSnapshot != "" && out.LastSnapshot != status.LastSnapshot {
				ts = r.syncTarget(ctx, &dr, src, t, out, now)
			}
		} else if rejoining != nil && t.Node == rejoining.Node && targetDataset(dr, t) == rejoining.Dataset && !r.rejoin(ctx, &dr, src, status, prev[key].State, now) {
			ts := prev[key]
			ts.Node, ts.Dataset, ts.State = t.Node, targetDataset(dr, t), z8rv1.TargetPending
			ts.LastError = "old source of an unplanned failover: waiting for it to return and its tail to be kept aside"
			if m := status.Promotion.Message; m != "" {
				ts.LastError = m
			}
			ts.ConsecutiveFailures++
			requeue = min(requeue, backoff(ts.ConsecutiveFailures))
			status.Targets = append(status.Targets, ts)
			continue
		} else {
			ts = r.syncTarget(ctx, &dr, src, t, prev[key], now)
		}
		if rejoining != nil && t.Node == rejoining.Node && ts.Dataset == rejoining.Dataset &&
			(ts.State == z8rv1.TargetSynced || ts.State == z8rv1.TargetBehind) {
			status.Promotion.Rejoin = z8rv1.RejoinDone
		}
		if ts.ProtectedBase != "" {
			protected[ts.ProtectedBase] = true
		}
		if ts.State != z8rv1.TargetSynced && ts.State != z8rv1.TargetBehind {
			d := backoff(ts.ConsecutiveFailures)
			if isQueued(ts) {
				d = retryQueued
			}
			requeue = min(requeue, d)
		}
		status.Targets = append(status.Targets, ts)
	}
	// Targets removed from the spec keep their base held (and
	// bookmarked) for a grace period, so re-adding one (a typo, a Node
	// recreated) still syncs incrementally; then it is released.
	for key, old := range prev {
		if hasTarget(dr, key) {
			continue
		}
		if r.transfers.get().running(dr.Name+"/"+old.Node+":"+old.Dataset) == nil {
			old = notSyncing(old)
		}
		if old.RemovedAt == nil {
			old.RemovedAt = &metav1.Time{Time: now}
			log.Info("target removed; its base stays held for the grace period", "node", old.Node, "dataset", old.Dataset, "grace", r.removedGrace().String())
		}
		if left := old.RemovedAt.Add(r.removedGrace()).Sub(now); left > 0 {
			status.Targets = append(status.Targets, old)
			requeue = min(requeue, left)
			continue
		}
		if err := replicate.Unprotect(ctx, src.ZFS(), dataset, policy.ID(old.Node, old.Dataset)); err != nil {
			log.Error(err, "release holds of removed target failed", "node", old.Node, "dataset", old.Dataset)
			status.Targets = append(status.Targets, old) // keep it listed until released
			continue
		}
		if leaked := r.releaseReplicaHold(ctx, old.Node, old.Dataset); leaked != "" {
			r.Recorder.Eventf(&dr, nodeRef(old.Node), corev1.EventTypeWarning, z8rv1.EventHoldsLeaked, "Release",
				"removed target %s:%s: %s", old.Node, old.Dataset, leaked)
		}
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventTargetRemoved, "Release", "released the base held for removed target %s:%s", old.Node, old.Dataset)
		if r.Metrics != nil {
			r.Metrics.Forget(dr.Name, old.Node+":"+old.Dataset)
		}
	}
	// Never prune a target's base or its last known snapshot (a target in
	// its grace period included).
	for _, ts := range status.Targets {
		for _, s := range []string{ts.ProtectedBase, ts.LastSnapshot} {
			if s != "" {
				protected[s] = true
			}
		}
	}

	// 3. Source retention: only z8r's snapshots, never a held base; not
	// while a sync runs in the background (what it sends is held).
	var pruned []string
	err = nil
	if !r.transfers.get().busy(dr.Name) {
		pruned, err = replicate.Prune(ctx, src.ZFS(), dataset, dr.Name, srcRet, now, func(s string) bool { return protected[s] })
	}
	if err != nil {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventPruneFailed, "Prune", "pruning %s: %v", dataset, err)
	} else if len(pruned) > 0 {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventPruned, "Prune", "pruned %d snapshot(s) of %s: %v", len(pruned), dataset, pruned)
	}

	if manual != "" && status.ManualTrigger == manual && manualDone(status) {
		status.LastManualSync = manual
		log.Info("manual sync done", "trigger", manual, "snapshot", status.ManualSnapshot)
	}
	// A transfer recorded by a sync that ended (or by a controller that
	// crashed mid-sync) is over; one running in the background is not.
	for i, ts := range status.Targets {
		if !inBackground[ts.Node+"/"+ts.Dataset] {
			status.Targets[i].Transfer = nil
		}
	}
	summarize(status, dr.Generation)
	if err := r.writeStatus(ctx, &dr, status); err != nil {
		return reconcile.Result{}, err
	}
	if requeue < time.Second {
		requeue = time.Second
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// bandwidthLimit is spec.bandwidthLimit in bytes per second (0: none).
func bandwidthLimit(dr *z8rv1.DatasetReplication) int64 {
	if q := dr.Spec.BandwidthLimit; q != nil && q.Sign() > 0 {
		return q.Value()
	}
	return 0
}

// manualDone reports whether every target (not one being removed) is
// Synced: it has the source's newest snapshot, which is the manual
// trigger's snapshot or a later one.
func manualDone(s *z8rv1.DatasetReplicationStatus) bool {
	for _, t := range s.Targets {
		if t.RemovedAt == nil && t.State != z8rv1.TargetSynced {
			return false
		}
	}
	return true
}

// DefaultRemovedTargetGrace is how long a removed target's base stays
// held before it is released.
const DefaultRemovedTargetGrace = 10 * time.Minute

func (r *DatasetReplicationReconciler) removedGrace() time.Duration {
	if r.RemovedTargetGrace > 0 {
		return r.RemovedTargetGrace
	}
	return DefaultRemovedTargetGrace
}

// scheduleTimes returns the time the schedule counts from (the newest of
// the replication's own snapshots, by the time in its name, that is not
// in the future: schedule.Last), that snapshot's name, and the names of
// those named in the future.
func scheduleTimes(l replicate.Listing, policyID string, now time.Time) (last time.Time, future []string, lastName string) {
	var times []time.Time
	names := map[time.Time][]string{}
	for _, d := range l.Snapshots {
		if !d.IsSnapshot() || !snapname.IsOwnedBy(d.LocalProps, policyID) {
			continue
		}
		t := d.Creation
		if _, nt, ok := snapname.Parse(d.ShortName()); ok {
			t = nt
		}
		times = append(times, t)
		names[t] = append(names[t], d.ShortName())
	}
	last, fut := schedule.Last(times, now, schedule.MaxClockSkew)
	for _, t := range fut {
		future = append(future, names[t]...)
	}
	slices.Sort(future)
	future = slices.Compact(future)
	if n := names[last]; len(n) > 0 {
		lastName = n[len(n)-1]
	}
	return last, future, lastName
}

func (r *DatasetReplicationReconciler) prefix() string {
	if r.SnapshotPrefix == "" {
		return snapname.DefaultPrefix
	}
	return r.SnapshotPrefix
}

func targetDataset(dr z8rv1.DatasetReplication, t z8rv1.ReplicationTarget) string {
	return orDefault(t.Dataset, dr.Spec.Source.Dataset)
}

func hasTarget(dr z8rv1.DatasetReplication, key string) bool {
	for _, t := range dr.Spec.Targets {
		if t.Node+"/"+targetDataset(dr, t) == key {
			return true
		}
	}
	return false
}

// nodeRef is the target's Z8RNode, set as an Event's related object so
// that events about different targets of one replication stay distinct.
func nodeRef(node string) *z8rv1.Z8RNode {
	return &z8rv1.Z8RNode{TypeMeta: metav1.TypeMeta{APIVersion: z8rv1.GroupVersion.String(), Kind: "Z8RNode"},
		ObjectMeta: metav1.ObjectMeta{Name: node}}
}

// Why a target's sync failed: the reason label of z8r_sync_failures_total.
const (
	failTargetUnavailable = "TargetUnavailable"
	failDiverged          = "Diverged"
	failResumeAbandoned   = "ResumeAbandoned"
	failSyncFailed        = "SyncFailed"
)

// syncTarget brings one target up to date and returns its status.
func (r *DatasetReplicationReconciler) syncTarget(ctx context.Context, dr *z8rv1.DatasetReplication, src *Node, t z8rv1.ReplicationTarget, prev z8rv1.TargetStatus, now time.Time) z8rv1.TargetStatus {
	log := logf.FromContext(ctx).WithValues("target", t.Node, "dataset", targetDataset(*dr, t))
	ts := prev
	ts.Node, ts.Dataset = t.Node, targetDataset(*dr, t)
	ts.RemovedAt = nil  // back in the spec within the grace period
	ts.Transfer = nil   // written anew while this sync runs
	ts = notSyncing(ts) // no sync of this controller runs for it
	label := ts.Node + ":" + ts.Dataset
	related := nodeRef(t.Node)
	slotKey := dr.Name + "/" + label
	wake := r.wake.waker(&z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: dr.Name}})
	if r.slots.stillQueued(isQueued(prev), slotKey, wake, dr.Spec.Source.Node, t.Node) {
		return ts // its turn has not come: nothing listed, held or sent
	}
	fail := func(state, reason string, err error) z8rv1.TargetStatus {
		return r.failed(dr.Name, ts, state, reason, err)
	}
	tgt, err := r.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrHostKeyUnknown) {
		ts.State, ts.LastError = z8rv1.TargetPending, err.Error()
		return ts
	}
	if err != nil {
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Connect", "target %s: %v", label, err)
		return fail(z8rv1.TargetFailed, failTargetUnavailable, err)
	}
	if reason := r.cancelReason(ctx, dr, t.Node, ts.Dataset); reason != "" {
		ts.LastError = "not synced: " + reason // changed while this reconcile ran
		return ts
	}
	// The sync runs as a job (transferRunner): this reconcile waits for it
	// until it ends or has been transferring for DetachAfter.
	own := dr.DeepCopy() // the job outlives this reconcile's objects
	detach := r.DetachAfter
	if detach == 0 {
		detach = DefaultDetachAfter
	}
	job := r.transfers.get().start(ctx, slotKey, dr.Name, detach, wake,
		func(jctx context.Context, cancel context.CancelCauseFunc) *syncWatch {
			return r.watchSync(jctx, own, ts.Node, ts.Dataset, cancel)
		},
		func(jctx, syncCtx context.Context, watch *syncWatch, admitted func()) z8rv1.TargetStatus {
			return r.runSync(jctx, syncCtx, own, src, tgt, t, ts, now, watch, admitted)
		})
	if job == nil {
		return ts // the controller is stopping, or an outcome waits
	}
	if out, ended := r.transfers.get().wait(slotKey, job); ended {
		return out
	}
	log.V(1).Info("sync goes on in the background")
	return runningStatus(ts)
}

// failed is ts after a failed sync: state, the error, one more failure
// counted (and in z8r_sync_failures_total under reason).
func (r *DatasetReplicationReconciler) failed(replication string, ts z8rv1.TargetStatus, state, reason string, err error) z8rv1.TargetStatus {
	ts.State, ts.LastError = state, err.Error()
	ts.ConsecutiveFailures++
	if r.Metrics != nil {
		r.Metrics.SyncFailures.WithLabelValues(replication, ts.Node+":"+ts.Dataset, reason).Inc()
	}
	return ts
}

// runningStatus is a target's status while its sync runs in the
// background: Syncing, with the progress reported so far.
// Its transfer progress is the sync watch's to write (writeStatus keeps
// the stored one), so that a reconcile never rewrites it.
func runningStatus(ts z8rv1.TargetStatus) z8rv1.TargetStatus {
	ts.State = z8rv1.TargetSyncing
	return ts
}

// notSyncing is ts of a target no sync of this controller runs for: a
// Syncing state (and transfer) a stopped controller left behind (a crash,
// a restart, a sync cancelled before its outcome was written) becomes
// Pending, or Behind if the target has a snapshot.
func notSyncing(ts z8rv1.TargetStatus) z8rv1.TargetStatus {
	if ts.State == z8rv1.TargetSyncing {
		ts.State = z8rv1.TargetPending
		if ts.LastSnapshot != "" {
			ts.State = z8rv1.TargetBehind
		}
		ts.Transfer = nil
	}
	return ts
}

// runSync is one target's sync, from its plan to the target's pruning;
// it returns the target's status. It runs as a transferRunner job
// (syncFunc); admitted is called once its transfer may start.
func (r *DatasetReplicationReconciler) runSync(ctx, syncCtx context.Context, dr *z8rv1.DatasetReplication, src, tgt *Node, t z8rv1.ReplicationTarget, ts z8rv1.TargetStatus,
	now time.Time, watch *syncWatch, admitted func()) z8rv1.TargetStatus {
	log := logf.FromContext(ctx).WithValues("target", t.Node, "dataset", ts.Dataset)
	label := ts.Node + ":" + ts.Dataset
	related := nodeRef(t.Node)
	slotKey := dr.Name + "/" + label
	wake := r.wake.waker(&z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: dr.Name}})
	fail := func(state, reason string, err error) z8rv1.TargetStatus {
		return r.failed(dr.Name, ts, state, reason, err)
	}
	start := time.Now()
	progress, transferEnded := r.Metrics.Transfer(dr.Name, label, watch.Progress)
	target := replicate.Target{
		ID: policy.ID(t.Node, ts.Dataset), PolicyID: dr.Name, Origin: dr.Spec.Source.Node + ":" + dr.Spec.Source.Dataset,
		Endpoint: tgt, Addr: tgt.Address, HostKey: tgt.HostKey, Dataset: ts.Dataset, RollbackDiverged: t.RollbackDiverged,
	}
	admit := r.slots.admit(slotKey, wake, dr.Spec.Source.Node, t.Node)
	res, err := replicate.SyncTarget(syncCtx, src, dr.Spec.Source.Dataset, target, replicate.Options{IncludeForeign: dr.Spec.IncludeForeign, AllowDecryptedSend: dr.Spec.AllowDecryptedSend, Progress: progress, Planned: watch.Planned, RateLimit: bandwidthLimit(dr),
		Admit: func(ctx context.Context) (func(), error) {
			release := func() {}
			if admit != nil {
				var err error
				if release, err = admit(ctx); err != nil {
					return nil, err
				}
			}
			admitted()
			return release, nil
		}})
	transferEnded()
	ts.SnapshotsBehind = res.Behind
	var cancelled *TransferCancelledError
	if err != nil && errors.As(context.Cause(syncCtx), &cancelled) {
		return r.cancelledSync(ctx, dr, src, target, ts, cancelled)
	}
	var queued *TransferQueuedError
	if errors.As(err, &queued) {
		// Nothing held or sent; not a failure.
		log.V(1).Info("sync queued", "reason", queued.Reason)
		ts.State, ts.LastError = z8rv1.TargetPending, queued.Error()
		return ts
	}
	if res.ProtectedBase != "" {
		ts.ProtectedBase = res.ProtectedBase
	}
	if res.Newest != "" {
		ts.LastSnapshot, ts.LastSnapshotGUID = res.Newest, strconv.FormatUint(res.NewestGUID, 10)
	}
	if r.Metrics != nil {
		r.Metrics.Behind.WithLabelValues(dr.Name, label).Set(float64(res.Behind))
	}
	if res.MovedAside != "" {
		ts.MovedAside = res.MovedAside
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventTargetMovedAside, "MoveAside",
			"target %s had diverged; as its policy allows it was moved aside to %s on %s (every snapshot and write kept) and received afresh", label, res.MovedAside, t.Node)
	}
	if err != nil {
		var ce *plan.ConflictError
		if errors.As(err, &ce) {
			log.Info("target diverged; left untouched", "kind", ce.Kind.String(), "error", err.Error())
			r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventTargetDiverged, "Sync",
				"target %s diverged from the source and was left untouched: %v", label, err)
			return fail(z8rv1.TargetDiverged, failDiverged, err)
		}
		if errors.Is(err, replicate.ErrResumeAbandoned) {
			r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventResumeAbandoned, "Resume",
				"target %s: an interrupted receive could not be resumed and was discarded: %v", label, err)
			return fail(z8rv1.TargetFailed, failResumeAbandoned, err)
		}
		// Only a connection that failed: a target the source could not
		// reach must not cancel the source's other transfers.
		r.Agents.DropFailed(err, src, tgt)
		log.Error(err, "sync failed")
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Sync", "target %s: %v", label, err)
		return fail(z8rv1.TargetFailed, failSyncFailed, err)
	}
	ts.ConsecutiveFailures, ts.LastError = 0, ""
	ts.State = z8rv1.TargetSynced
	if res.Behind > 0 {
		ts.State = z8rv1.TargetBehind
	}
	if r.Metrics != nil {
		r.Metrics.Succeeded(dr.Name, label, now)
	}
	if len(res.Steps) > 0 {
		d := time.Since(start)
		ts.LastSyncTime = &metav1.Time{Time: r.Clock.Now()}
		ts.LastSyncDuration = &metav1.Duration{Duration: d}
		ts.LastSyncBytes = res.Bytes()
		ts.LastSyncKind = "incremental"
		if res.Full() {
			ts.LastSyncKind = "full"
		}
		resumed := ""
		if slices.ContainsFunc(res.Steps, func(s replicate.StepResult) bool { return s.Resumed }) {
			resumed = " (an interrupted receive resumed)"
		}
		log.Info("replicated", "steps", len(res.Steps), "bytes", res.Bytes(), "kind", ts.LastSyncKind, "duration", d.String(), "resumed", resumed != "")
		r.Recorder.Eventf(dr, related, corev1.EventTypeNormal, z8rv1.EventReplicated, "Sync",
			"%s sync of %s to %s: %d step(s), %d bytes, up to @%s%s", ts.LastSyncKind, dr.Spec.Source.Dataset, label, len(res.Steps), res.Bytes(), res.Newest, resumed)
		if r.Metrics != nil {
			r.Metrics.SyncDuration.WithLabelValues(dr.Name, label).Observe(d.Seconds())
			r.Metrics.SyncBytes.WithLabelValues(dr.Name, label).Add(float64(res.Bytes()))
		}
	} else if ts.LastSyncTime == nil {
		ts.LastSyncTime = &metav1.Time{Time: r.Clock.Now()}
	}
	// Target retention (default: the source's): z8r's received snapshots only,
	// never the newest (the next base).
	tgtRet, perr := retention.Parse(targetRetention(dr, t))
	if perr == nil { // Reconcile refused a spec where it is not
		if pruned, err := replicate.Prune(ctx, tgt.ZFS(), ts.Dataset, dr.Name, tgtRet, now, func(s string) bool { return s == res.Newest }); err != nil {
			r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventPruneFailed, "Prune", "pruning target %s: %v", label, err)
		} else if len(pruned) > 0 {
			r.Recorder.Eventf(dr, related, corev1.EventTypeNormal, z8rv1.EventPruned, "Prune", "pruned %d snapshot(s) on target %s: %v", len(pruned), label, pruned)
		}
	}
	return ts
}

// cancelledSync settles a target whose sync was cancelled on purpose
// (replicate.Settle: the partial receive discarded, the step holds
// released) and returns its status: what it had before, the cancel as its
// last error. A cancel is not a failure: no backoff, no failure count.
func (r *DatasetReplicationReconciler) cancelledSync(ctx context.Context, dr *z8rv1.DatasetReplication, src *Node, target replicate.Target, ts z8rv1.TargetStatus, cancelled *TransferCancelledError) z8rv1.TargetStatus {
	label := ts.Node + ":" + ts.Dataset
	ts.LastError = cancelled.Error()
	if ts.State == z8rv1.TargetSyncing || ts.State == "" {
		ts.State = z8rv1.TargetPending
		if ts.LastSnapshot != "" {
			ts.State = z8rv1.TargetBehind
		}
	}
	res, err := replicate.Settle(ctx, src, dr.Spec.Source.Dataset, target)
	if err != nil {
		// The next sync's repair pass finishes it.
		logf.FromContext(ctx).Error(err, "settling a cancelled sync failed", "target", label)
		r.Recorder.Eventf(dr, nodeRef(ts.Node), corev1.EventTypeWarning, z8rv1.EventTransferCancelled, "Cancel",
			"sync of %s cancelled (%s); cleaning up failed, the next sync finishes it: %v", label, cancelled.Reason, err)
		return ts
	}
	r.Recorder.Eventf(dr, nodeRef(ts.Node), corev1.EventTypeNormal, z8rv1.EventTransferCancelled, "Cancel",
		"sync of %s cancelled: %s; partial receive discarded, step holds released (%v)", label, cancelled.Reason, res.Repaired)
	return ts
}

// targetRetention is the retention policy of target t: its own, else the
// replication's, else the default for targets.
func targetRetention(dr *z8rv1.DatasetReplication, t z8rv1.ReplicationTarget) string {
	return orDefault(t.Retention, orDefault(dr.Spec.Retention, retention.DefaultTarget))
}

// summarize fills the aggregate fields kubectl shows.
func summarize(s *z8rv1.DatasetReplicationStatus, gen int64) {
	synced, worst, maxBehind := 0, z8rv1.TargetSynced, 0
	rank := map[string]int{z8rv1.TargetSynced: 0, z8rv1.TargetBehind: 1, z8rv1.TargetPending: 2, z8rv1.TargetSyncing: 2, z8rv1.TargetFailed: 3, z8rv1.TargetDiverged: 4}
	for _, t := range s.Targets {
		if t.State == z8rv1.TargetSynced {
			synced++
		}
		if rank[t.State] > rank[worst] {
			worst = t.State
		}
		if t.SnapshotsBehind > maxBehind {
			maxBehind = t.SnapshotsBehind
		}
	}
	s.State = worst
	s.MaxSnapshotsBehind = maxBehind
	s.TargetsSummary = fmt.Sprintf("%d/%d", synced, len(s.Targets))
	cond := metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionTrue, Reason: z8rv1.ReasonAllTargetsSynced,
		Message: "every target has the newest snapshot", ObservedGeneration: gen}
	if synced != len(s.Targets) {
		cond.Status, cond.Reason = metav1.ConditionFalse, z8rv1.ReasonTargetsNotSynced
		cond.Message = fmt.Sprintf("%d of %d targets synced; worst state %s", synced, len(s.Targets), worst)
	}
	meta.SetStatusCondition(&s.Conditions, cond)
}

func (r *DatasetReplicationReconciler) sourceError(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus, err error) (reconcile.Result, error) {
	logf.FromContext(ctx).Error(err, "source failed")
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: z8rv1.ReasonSourceFailed, Message: err.Error(), ObservedGeneration: dr.Generation})
	status.State = z8rv1.TargetFailed
	if uerr := r.writeStatus(ctx, dr, status); uerr != nil {
		return reconcile.Result{}, uerr
	}
	return reconcile.Result{RequeueAfter: retryUnavailable}, nil
}

// refuse reports that dr claims a dataset an earlier replication has:
// Ready=False reason Conflict and a Warning naming the first; nothing runs
// (no snapshot, transfer, hold or prune) until the other one goes.
func (r *DatasetReplicationReconciler) refuse(ctx context.Context, dr *z8rv1.DatasetReplication, conflicts []policy.Conflict) (reconcile.Result, error) {
	msgs := make([]string, 0, len(conflicts))
	for _, c := range conflicts {
		msgs = append(msgs, conflictMessage(c))
	}
	msg := strings.Join(msgs, "; ")
	logf.FromContext(ctx).Info("replication refused: a dataset it claims belongs to another replication", "first", conflicts[0].First.Owner.String(), "conflicts", len(conflicts))
	status := dr.Status.DeepCopy()
	cur := meta.FindStatusCondition(status.Conditions, z8rv1.ConditionReady)
	if cur == nil || cur.Reason != z8rv1.ReasonConflict || cur.Message != msg {
		r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventReplicationConflict, "Refuse", "%s", msg)
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: z8rv1.ReasonConflict, Message: msg, ObservedGeneration: dr.Generation})
	status.State = z8rv1.TargetFailed
	status.ObservedGeneration = dr.Generation
	if err := r.writeStatus(ctx, dr, status); err != nil {
		return reconcile.Result{}, err
	}
	// The other replication going does not requeue this one: look again.
	return reconcile.Result{RequeueAfter: retryConflict}, nil
}

// invalid reports a spec that cannot be acted on; nothing runs until it is
// fixed (a spec change triggers the next reconcile).
func (r *DatasetReplicationReconciler) invalid(ctx context.Context, dr *z8rv1.DatasetReplication, field string, err error) (reconcile.Result, error) {
	r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventInvalidAnnotation, "Validate", "invalid %s: %v", field, err)
	status := dr.Status.DeepCopy()
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: z8rv1.ReasonInvalidSpec, Message: fmt.Sprintf("invalid %s: %v", field, err), ObservedGeneration: dr.Generation})
	return reconcile.Result{}, r.writeStatus(ctx, dr, status)
}

func (r *DatasetReplicationReconciler) writeStatus(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur z8rv1.DatasetReplication
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(dr), &cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		next := status.DeepCopy()
		keepNewerSyncs(next, &cur.Status)
		keepRunningTransfers(next, &cur.Status)
		if !r.written.mayBeStale(&cur) && equality.Semantic.DeepEqual(&cur.Status, next) {
			// Nothing changed (a steady reconcile): no write. cur is as
			// fresh as this reconciler's own last write, so the stored
			// status is this one.
			r.Metrics.ObserveReplication(&cur, r.Clock)
			r.transfers.get().committed(dr.Name)
			return nil
		}
		cur.Status = *next
		if err := r.Client.Status().Update(ctx, &cur); err != nil {
			return err
		}
		r.written.record(&cur)
		r.transfers.get().committed(dr.Name)
		r.Metrics.ObserveReplication(&cur, r.Clock)
		return nil
	})
}

// keepNewerSyncs keeps, per target, the record of the latest sync. A
// reconcile that started from a cached object older than the previous
// reconcile's status write must not erase that sync's time, duration, bytes
// and kind, nor (when it did not sync the target itself) the snapshot the
// target has since. (A successful Update proves cur was fresh.)
func keepNewerSyncs(next, cur *z8rv1.DatasetReplicationStatus) {
	for i := range next.Targets {
		n := &next.Targets[i]
		for _, c := range cur.Targets {
			if c.Node != n.Node || c.Dataset != n.Dataset || c.LastSyncTime == nil {
				continue
			}
			newer := n.LastSyncTime == nil || c.LastSyncTime.After(n.LastSyncTime.Time)
			if newer || (n.LastSyncKind == "" && c.LastSyncKind != "") {
				n.LastSyncTime, n.LastSyncDuration = c.LastSyncTime, c.LastSyncDuration
				n.LastSyncBytes, n.LastSyncKind = c.LastSyncBytes, c.LastSyncKind
			}
			if newer && c.LastSnapshotGUID != "" {
				// What that newer sync left on the target: this reconcile
				// did not sync it (cancelled, skipped) and only has the
				// stale read's.
				n.LastSnapshot, n.LastSnapshotGUID = c.LastSnapshot, c.LastSnapshotGUID
				if c.ProtectedBase != "" {
					n.ProtectedBase = c.ProtectedBase
				}
			}
		}
	}
}

// keepRunningTransfers keeps, for each target next shows Syncing (its
// sync runs in the background), the transfer progress stored: the sync's
// watch writes it, the reconcile does not.
func keepRunningTransfers(next, cur *z8rv1.DatasetReplicationStatus) {
	for i := range next.Targets {
		n := &next.Targets[i]
		if n.State != z8rv1.TargetSyncing {
			continue
		}
		n.Transfer = nil
		for _, c := range cur.Targets {
			if c.Node == n.Node && c.Dataset == n.Dataset {
				n.Transfer = c.Transfer
			}
		}
	}
}

// finalize releases, on the source, the protection of every target the
// replication has: the union of the spec's and the status's (a target
// removed shortly before, still in its grace period), but none it was
// refused (another replication's, policy.Conflicts). If the source cannot
// be reached the finalizer stays (the holds would otherwise keep
// snapshots forever without anyone knowing); if its Z8RNode is gone the
// tags that could not be released are named in a Warning (HoldsLeaked)
// before the object goes.
func (r *DatasetReplicationReconciler) finalize(ctx context.Context, dr *z8rv1.DatasetReplication) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(dr, finalizerReleaseHolds) {
		return reconcile.Result{}, nil
	}
	if r.transfers.get().busy(dr.Name) {
		// Its watch cancels the sync (the replication is being deleted)
		// and settles it; the holds are released after.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	r.transfers.get().forget(dr.Name)
	all, err := claimLister{Client: r.Client, Snapshots: r.SnapshotsServed}.conflicts(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	targets := releasableTargets(dr, policy.ConflictsOf(all, claimKindReplication, dr.Name))
	// The holds are on the source in force: during a promotion, the old
	// source (status.source), not spec.source.
	source := sourceInForce(dr)
	src, err := r.Agents.Get(ctx, source.Node)
	if errors.Is(err, ErrNodeUnknown) {
		// The node's agent is gone: its holds cannot be released from here.
		if len(targets) > 0 {
			tags := make([]string, 0, len(targets))
			for _, t := range targets {
				tags = append(tags, snapname.HoldTag(policy.ID(t.Node, t.Dataset)))
			}
			logf.FromContext(ctx).Info("source node has no agent; holds not released", "node", source.Node, "tags", tags)
			r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventHoldsLeaked, "Release",
				"node %s has no z8r agent: release these holds on %s by hand if its pool comes back (zfs release TAG SNAPSHOT): %v", source.Node, source.Dataset, tags)
		}
		err = nil
	} else if err == nil {
		for _, t := range targets {
			if err = replicate.Unprotect(ctx, src.ZFS(), source.Dataset, policy.ID(t.Node, t.Dataset)); err != nil {
				r.Agents.DropFailed(err, src)
				break
			}
		}
	}
	if err != nil {
		r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventSourceUnavailable, "Release", "cannot release holds on %s yet: %v", source.Node, err)
		return reconcile.Result{RequeueAfter: retryUnavailable}, nil
	}
	// The old source of an unplanned failover that never rejoined still
	// has the old direction's holds: released if it can be reached, else
	// named in a Warning.
	if p := dr.Status.Promotion; p != nil && p.Rejoin == z8rv1.RejoinPending {
		if leaked := r.releaseOldSourceHolds(ctx, dr); leaked != "" {
			r.Recorder.Eventf(dr, nodeRef(p.From.Node), corev1.EventTypeWarning, z8rv1.EventHoldsLeaked, "Release", "%s", leaked)
		}
	}
	// The hold on each target's last received snapshot: best effort (a
	// target node that is gone or down must not keep the object forever),
	// and named in a Warning when it stays.
	for _, t := range targets {
		if leaked := r.releaseReplicaHold(ctx, t.Node, t.Dataset); leaked != "" {
			r.Recorder.Eventf(dr, nodeRef(t.Node), corev1.EventTypeWarning, z8rv1.EventHoldsLeaked, "Release",
				"target %s:%s: %s", t.Node, t.Dataset, leaked)
		}
	}
	if r.Metrics != nil {
		for _, t := range targets {
			r.Metrics.Forget(dr.Name, t.Node+":"+t.Dataset)
		}
		r.Metrics.ForgetReplication(dr.Name)
	}
	controllerutil.RemoveFinalizer(dr, finalizerReleaseHolds)
	if err := r.Client.Update(ctx, dr); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// releaseReplicaHold releases the hold z8r keeps on a target's last
// received snapshot (replicate.UnprotectReplica). It returns "" when that
// is done (or the node is gone with its pool), else what was left and why.
func (r *DatasetReplicationReconciler) releaseReplicaHold(ctx context.Context, node, dataset string) string {
	tag := snapname.ReplicaHoldTag(policy.ID(node, dataset))
	tgt, err := r.Agents.Get(ctx, node)
	if errors.Is(err, ErrNodeUnknown) {
		return ""
	}
	if err == nil {
		if err = replicate.UnprotectReplica(ctx, tgt.ZFS(), dataset, policy.ID(node, dataset)); err == nil {
			return ""
		}
		r.Agents.DropFailed(err, tgt)
	}
	logf.FromContext(ctx).Error(err, "release replica hold failed", "node", node, "dataset", dataset, "tag", tag)
	return fmt.Sprintf("hold %s on the last received snapshot of %s was not released (%v): release it by hand (zfs release %s SNAPSHOT)", tag, dataset, err, tag)
}

// releasableTargets is the union of dr's spec and status targets, less
// those it was refused (all of them if its source was: it never ran).
func releasableTargets(dr *z8rv1.DatasetReplication, refused []policy.Conflict) []z8rv1.DatasetRef {
	no := map[z8rv1.DatasetRef]bool{}
	for _, c := range refused {
		if c.Claim.Role == policy.RoleSource {
			return nil
		}
		no[z8rv1.DatasetRef{Node: c.Claim.Node, Dataset: c.Claim.Dataset}] = true
	}
	var out []z8rv1.DatasetRef
	add := func(t z8rv1.DatasetRef) {
		if !no[t] && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, t := range dr.Spec.Targets {
		add(z8rv1.DatasetRef{Node: t.Node, Dataset: targetDataset(*dr, t)})
	}
	for _, t := range dr.Status.Targets {
		add(z8rv1.DatasetRef{Node: t.Node, Dataset: t.Dataset})
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// SetupWithManager registers the reconciler; a Z8RNode change (an agent
// coming back, a key approved) re-queues the replications on that node.
func (r *DatasetReplicationReconciler) SetupWithManager(mgr manager.Manager) error {
	if r.MaxConcurrent == 0 {
		r.MaxConcurrent = 4
	}
	byNode := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list z8rv1.DatasetReplicationList
		if err := r.Client.List(ctx, &list); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, dr := range list.Items {
			involved := dr.Spec.Source.Node == o.GetName() || (dr.Status.Source != nil && dr.Status.Source.Node == o.GetName())
			for _, t := range dr.Spec.Targets {
				involved = involved || t.Node == o.GetName()
			}
			if involved {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&dr)})
			}
		}
		return out
	})
	b := builder.ControllerManagedBy(mgr).
		Named("datasetreplication").
		For(&z8rv1.DatasetReplication{}, builder.WithPredicates(generationOrDeletion())).
		Watches(&z8rv1.Z8RNode{}, byNode, builder.WithPredicates(readyOrKeyChanged()))
	r.wake = newWakeChannel()
	b = b.WatchesRawSource(r.wake.source())
	// At shutdown the background syncs stop before the manager returns:
	// a controller started after must not find this one's still running.
	transfers := r.transfers.get()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		transfers.stop()
		return nil
	})); err != nil {
		return err
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrent, SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}
