package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/snapname"
)

// finalizerReleaseHolds makes deletion release the holds and bookmarks
// that protect the targets' bases on the source.
const finalizerReleaseHolds = "z8r.dev/release-holds"

// Backoff bounds for a failing target.
const (
	backoffMin = 5 * time.Second
	backoffMax = 10 * time.Minute
)

// DatasetReplicationReconciler snapshots on schedule and keeps every target
// current.
type DatasetReplicationReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   *AgentPool
	Metrics  *Metrics
	Clock    schedule.Clock
	// SnapshotPrefix names z8r's snapshots (default "z8r").
	SnapshotPrefix string
	// MaxConcurrent syncs of different datasets (default 4).
	MaxConcurrent int

	skipNameValidation bool
}

// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications/finalizers,verbs=update
// +kubebuilder:rbac:groups=z8r.dev,resources=zfsnodes,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *DatasetReplicationReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("replication", req.Name)
	ctx = logf.IntoContext(ctx, log)
	var dr z8rv1.DatasetReplication
	if err := r.Client.Get(ctx, req.NamespacedName, &dr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !dr.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &dr)
	}
	if !controllerutil.ContainsFinalizer(&dr, finalizerReleaseHolds) {
		controllerutil.AddFinalizer(&dr, finalizerReleaseHolds)
		if err := r.Client.Update(ctx, &dr); err != nil {
			return reconcile.Result{}, err
		}
	}
	if dr.Spec.Suspend {
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
	now := r.Clock.Now()
	status := dr.Status.DeepCopy()
	status.ObservedGeneration = dr.Generation

	src, err := r.Agents.Get(ctx, dr.Spec.Source.Node)
	if errors.Is(err, ErrHostKeyUnknown) {
		// A new agent whose key the ZFSNode reconciler is about to pin.
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if err != nil {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventSourceUnavailable, "Connect", "source node %s: %v", dr.Spec.Source.Node, err)
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse,
			Reason: "SourceUnavailable", Message: err.Error(), ObservedGeneration: dr.Generation})
		status.State = z8rv1.TargetFailed
		if uerr := r.writeStatus(ctx, &dr, status); uerr != nil {
			return reconcile.Result{}, uerr
		}
		return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
	}
	dataset := dr.Spec.Source.Dataset

	// 1. Snapshot on schedule.
	srcList, err := replicate.List(ctx, src.ZFS(), dataset)
	if err != nil {
		if errors.Is(err, agent.ErrUnreachable) {
			r.Agents.Drop(src)
		}
		return r.sourceError(ctx, &dr, status, err)
	}
	if !srcList.Exists {
		return r.sourceError(ctx, &dr, status, fmt.Errorf("source dataset %s does not exist on node %s", dataset, src.Name))
	}
	last := time.Time{}
	if n := srcList.Newest(true); n != nil {
		// The time in z8r's own name is the controller clock's; it keeps
		// the schedule consistent with the clock that decides (creation is
		// the node's clock).
		last = n.Creation
		if _, t, ok := snapname.Parse(n.ShortName()); ok {
			last = t
		}
		status.LastSnapshot = n.ShortName()
		status.LastSnapshotTime = &metav1.Time{Time: last}
	}
	if sched.Due(last, now) {
		name, err := replicate.TakeSnapshot(ctx, src.ZFS(), dataset, r.prefix(), dr.Name, now)
		if err != nil {
			r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventSnapshotFailed, "Snapshot", "snapshot of %s failed: %v", dataset, err)
			return r.sourceError(ctx, &dr, status, err)
		}
		log.Info("took snapshot", "dataset", dataset, "snapshot", name)
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventSnapshotCreated, "Snapshot", "took %s@%s", dataset, name)
		if r.Metrics != nil {
			r.Metrics.Snapshots.WithLabelValues(dr.Name).Inc()
		}
		last = now
		status.LastSnapshot = name
		status.LastSnapshotTime = &metav1.Time{Time: now}
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
	for _, t := range dr.Spec.Targets {
		ts := r.syncTarget(ctx, &dr, src, t, prev[t.Node+"/"+targetDataset(dr, t)], now)
		if ts.ProtectedBase != "" {
			protected[ts.ProtectedBase] = true
		}
		if ts.State != z8rv1.TargetSynced && ts.State != z8rv1.TargetBehind {
			if d := backoff(ts.ConsecutiveFailures); d < requeue {
				requeue = d
			}
		}
		status.Targets = append(status.Targets, ts)
	}
	// Targets removed from the spec: release what protected their base.
	for key, old := range prev {
		if !hasTarget(dr, key) {
			if err := replicate.Unprotect(ctx, src.ZFS(), dataset, policy.ID(old.Node, old.Dataset)); err != nil {
				log.Error(err, "release holds of removed target failed", "node", old.Node, "dataset", old.Dataset)
				status.Targets = append(status.Targets, old) // keep it listed until released
				continue
			}
			r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventTargetRemoved, "Release", "released the base held for removed target %s:%s", old.Node, old.Dataset)
			if r.Metrics != nil {
				r.Metrics.Forget(dr.Name, old.Node+":"+old.Dataset)
			}
		}
	}

	// 3. Source retention: only z8r's snapshots, never a held base.
	pruned, err := replicate.Prune(ctx, src.ZFS(), dataset, srcRet, now, func(s string) bool { return protected[s] })
	if err != nil {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeWarning, z8rv1.EventPruneFailed, "Prune", "pruning %s: %v", dataset, err)
	} else if len(pruned) > 0 {
		r.Recorder.Eventf(&dr, nil, corev1.EventTypeNormal, z8rv1.EventPruned, "Prune", "pruned %d snapshot(s) of %s: %v", len(pruned), dataset, pruned)
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

// nodeRef is the target's ZFSNode, set as an Event's related object so
// that events about different targets of one replication stay distinct.
func nodeRef(node string) *z8rv1.ZFSNode {
	return &z8rv1.ZFSNode{TypeMeta: metav1.TypeMeta{APIVersion: z8rv1.GroupVersion.String(), Kind: "ZFSNode"},
		ObjectMeta: metav1.ObjectMeta{Name: node}}
}

// syncTarget brings one target up to date and returns its status.
func (r *DatasetReplicationReconciler) syncTarget(ctx context.Context, dr *z8rv1.DatasetReplication, src *Node, t z8rv1.ReplicationTarget, prev z8rv1.TargetStatus, now time.Time) z8rv1.TargetStatus {
	log := logf.FromContext(ctx).WithValues("target", t.Node, "dataset", targetDataset(*dr, t))
	ts := prev
	ts.Node, ts.Dataset = t.Node, targetDataset(*dr, t)
	label := ts.Node + ":" + ts.Dataset
	related := nodeRef(t.Node)
	fail := func(state, reason string, err error) z8rv1.TargetStatus {
		ts.State, ts.LastError = state, err.Error()
		ts.ConsecutiveFailures++
		if r.Metrics != nil {
			r.Metrics.SyncFailures.WithLabelValues(dr.Name, label, reason).Inc()
		}
		return ts
	}
	tgt, err := r.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrHostKeyUnknown) {
		ts.State, ts.LastError = z8rv1.TargetPending, err.Error()
		return ts
	}
	if err != nil {
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Connect", "target %s: %v", label, err)
		return fail(z8rv1.TargetFailed, "TargetUnavailable", err)
	}
	id := policy.ID(t.Node, ts.Dataset)
	start := time.Now()
	res, err := replicate.SyncTarget(ctx, src, dr.Spec.Source.Dataset, replicate.Target{
		ID: id, Endpoint: tgt, Addr: tgt.Address, HostKey: tgt.HostKey, Dataset: ts.Dataset, RollbackDiverged: t.RollbackDiverged,
	}, replicate.Options{IncludeForeign: dr.Spec.IncludeForeign})
	ts.SnapshotsBehind = res.Behind
	if res.ProtectedBase != "" {
		ts.ProtectedBase = res.ProtectedBase
	}
	if res.Newest != "" {
		ts.LastSnapshot, ts.LastSnapshotGUID = res.Newest, strconv.FormatUint(res.NewestGUID, 10)
	}
	if r.Metrics != nil {
		r.Metrics.Behind.WithLabelValues(dr.Name, label).Set(float64(res.Behind))
	}
	if len(res.RolledBack) > 0 {
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventTargetRolledBack, "Rollback",
			"target %s had diverged; rolled back as its policy allows, destroying z8r's snapshots %v", label, res.RolledBack)
	}
	if err != nil {
		var ce *plan.ConflictError
		if errors.As(err, &ce) {
			log.Info("target diverged; left untouched", "kind", ce.Kind.String(), "error", err.Error())
			r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventTargetDiverged, "Sync",
				"target %s diverged from the source and was left untouched: %v", label, err)
			return fail(z8rv1.TargetDiverged, "Diverged", err)
		}
		if errors.Is(err, agent.ErrUnreachable) {
			r.Agents.Drop(src)
			r.Agents.Drop(tgt)
		}
		log.Error(err, "sync failed")
		r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventReplicationFailed, "Sync", "target %s: %v", label, err)
		return fail(z8rv1.TargetFailed, "SyncFailed", err)
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
		log.Info("replicated", "steps", len(res.Steps), "bytes", res.Bytes(), "kind", ts.LastSyncKind, "duration", d.String())
		r.Recorder.Eventf(dr, related, corev1.EventTypeNormal, z8rv1.EventReplicated, "Sync",
			"%s sync of %s to %s: %d step(s), %d bytes, up to @%s", ts.LastSyncKind, dr.Spec.Source.Dataset, label, len(res.Steps), res.Bytes(), res.Newest)
		if r.Metrics != nil {
			r.Metrics.SyncDuration.WithLabelValues(dr.Name, label).Observe(d.Seconds())
			r.Metrics.SyncBytes.WithLabelValues(dr.Name, label).Add(float64(res.Bytes()))
		}
	} else if ts.LastSyncTime == nil {
		ts.LastSyncTime = &metav1.Time{Time: r.Clock.Now()}
	}
	// Target retention (default: the source's): z8r's received snapshots only,
	// never the newest (the next base).
	tgtRet, perr := retention.Parse(orDefault(t.Retention, orDefault(dr.Spec.Retention, retention.DefaultTarget)))
	if perr == nil {
		if pruned, err := replicate.Prune(ctx, tgt.ZFS(), ts.Dataset, tgtRet, now, func(s string) bool { return s == res.Newest }); err != nil {
			r.Recorder.Eventf(dr, related, corev1.EventTypeWarning, z8rv1.EventPruneFailed, "Prune", "pruning target %s: %v", label, err)
		} else if len(pruned) > 0 {
			r.Recorder.Eventf(dr, related, corev1.EventTypeNormal, z8rv1.EventPruned, "Prune", "pruned %d snapshot(s) on target %s: %v", len(pruned), label, pruned)
		}
	}
	return ts
}

func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	if d > backoffMax {
		d = backoffMax
	}
	return d
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
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "AllTargetsSynced",
		Message: "every target has the newest snapshot", ObservedGeneration: gen}
	if synced != len(s.Targets) {
		cond.Status, cond.Reason = metav1.ConditionFalse, "TargetsNotSynced"
		cond.Message = fmt.Sprintf("%d of %d targets synced; worst state %s", synced, len(s.Targets), worst)
	}
	meta.SetStatusCondition(&s.Conditions, cond)
}

func (r *DatasetReplicationReconciler) sourceError(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus, err error) (reconcile.Result, error) {
	logf.FromContext(ctx).Error(err, "source failed")
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse,
		Reason: "SourceFailed", Message: err.Error(), ObservedGeneration: dr.Generation})
	status.State = z8rv1.TargetFailed
	if uerr := r.writeStatus(ctx, dr, status); uerr != nil {
		return reconcile.Result{}, uerr
	}
	return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
}

// invalid reports a spec that cannot be acted on; nothing runs until it is
// fixed (a spec change triggers the next reconcile).
func (r *DatasetReplicationReconciler) invalid(ctx context.Context, dr *z8rv1.DatasetReplication, field string, err error) (reconcile.Result, error) {
	r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventInvalidAnnotation, "Validate", "invalid %s: %v", field, err)
	status := dr.Status.DeepCopy()
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse,
		Reason: "InvalidSpec", Message: fmt.Sprintf("invalid %s: %v", field, err), ObservedGeneration: dr.Generation})
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
		cur.Status = *next
		return r.Client.Status().Update(ctx, &cur)
	})
}

// keepNewerSyncs keeps, per target, the record of the latest sync. A
// reconcile that started from a cached object older than the previous
// reconcile's status write must not erase that sync's time, duration, bytes
// and kind. (A successful Update proves cur was fresh.)
func keepNewerSyncs(next, cur *z8rv1.DatasetReplicationStatus) {
	for i := range next.Targets {
		n := &next.Targets[i]
		for _, c := range cur.Targets {
			if c.Node != n.Node || c.Dataset != n.Dataset || c.LastSyncTime == nil {
				continue
			}
			if n.LastSyncTime == nil || c.LastSyncTime.After(n.LastSyncTime.Time) || (n.LastSyncKind == "" && c.LastSyncKind != "") {
				n.LastSyncTime, n.LastSyncDuration = c.LastSyncTime, c.LastSyncDuration
				n.LastSyncBytes, n.LastSyncKind = c.LastSyncBytes, c.LastSyncKind
			}
		}
	}
}

// finalize releases every target's protection on the source, then lets the
// object go. If the source cannot be reached the finalizer stays (the
// holds would otherwise keep snapshots forever without anyone knowing).
func (r *DatasetReplicationReconciler) finalize(ctx context.Context, dr *z8rv1.DatasetReplication) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(dr, finalizerReleaseHolds) {
		return reconcile.Result{}, nil
	}
	src, err := r.Agents.Get(ctx, dr.Spec.Source.Node)
	if errors.Is(err, ErrNodeUnknown) {
		err = nil // the node and its agent are gone: nothing is held any more
	} else if err == nil {
		for _, t := range dr.Spec.Targets {
			if err = replicate.Unprotect(ctx, src.ZFS(), dr.Spec.Source.Dataset, policy.ID(t.Node, targetDataset(*dr, t))); err != nil {
				break
			}
		}
	}
	if err != nil {
		r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, z8rv1.EventSourceUnavailable, "Release", "cannot release holds on %s yet: %v", dr.Spec.Source.Node, err)
		return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if r.Metrics != nil {
		for _, t := range dr.Spec.Targets {
			r.Metrics.Forget(dr.Name, t.Node+":"+targetDataset(*dr, t))
		}
	}
	controllerutil.RemoveFinalizer(dr, finalizerReleaseHolds)
	if err := r.Client.Update(ctx, dr); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// SetupWithManager registers the reconciler; a ZFSNode change (an agent
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
			involved := dr.Spec.Source.Node == o.GetName()
			for _, t := range dr.Spec.Targets {
				involved = involved || t.Node == o.GetName()
			}
			if involved {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&dr)})
			}
		}
		return out
	})
	return builder.ControllerManagedBy(mgr).
		Named("datasetreplication").
		For(&z8rv1.DatasetReplication{}, builder.WithPredicates(generationOrDeletion())).
		Watches(&z8rv1.ZFSNode{}, byNode, builder.WithPredicates(readyOrKeyChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrent, SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}
