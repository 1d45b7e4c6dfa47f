package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// A promotion makes one of a replication's targets its source. It is
// asked for by changing spec.source to a target (the API server refuses
// any other change of source); status.source is the source in force until
// the promotion completes. The steps, each safe to run again after a crash
// (every one reads ZFS before acting, and status records the phase):
//
// Planned switchover, the old source reachable:
//  1. refuse a target that never received a snapshot or diverged
//     (nothing changed);
//  2. freeze the old source: readonly=on and z8r.dev:replica-of naming the
//     new source, so nothing written after this point can be lost;
//  3. take a final snapshot there and send it (the usual sync, old
//     direction); the target's newest GUID must be the final snapshot's. A
//     target that turns out diverged unfreezes the old source and refuses;
//  4. make the target writable (replicate.MakeWritable);
//  5. release the old direction's holds; status.source becomes the target.
//
// Unplanned failover, the old source unreachable and
// spec.allowUnplannedFailover set: 4 and 5 only, the recovery point being
// the target's newest snapshot. The old source's rejoin is then pending:
// when it is seen again, before anything is received into it, it is frozen,
// its old holds released and its tail (snapshots after the newest common
// one, and writes) moved aside with replicate.PreserveTail.
//
// Changing spec.source back before step 4 cancels: the old source is made
// writable again.

// Failpoints of a promotion (package failpoint), in the order a planned
// switchover reaches them; the chaos suite (e2e/chaos/promotion_test.go)
// kills the controller at each and checks that the promotion completes
// with nothing lost.
const (
	// FailPromoteAfterFreeze: the old source is read-only, nothing of the
	// promotion is in status yet.
	FailPromoteAfterFreeze = "controller.promote-after-freeze"
	// FailPromoteAfterFinalSnapshot: the final snapshot exists on the old
	// source; status does not name it yet and it was not sent.
	FailPromoteAfterFinalSnapshot = "controller.promote-after-final-snapshot"
	// FailPromoteAfterWritable: the target is writable (planned or
	// unplanned); the old direction's holds and status are as before.
	FailPromoteAfterWritable = "controller.promote-after-writable"
	// FailPromoteAfterRelease: the promoted target's replica hold and
	// (planned) the old source's holds of the old direction are released;
	// status still says Promoting.
	FailPromoteAfterRelease = "controller.promote-after-release"
	// FailRejoinAfterTail: the returning old source of an unplanned
	// failover is frozen and its tail moved aside; nothing was received
	// into it and status still says Rejoin Pending.
	FailRejoinAfterTail = "controller.rejoin-after-tail"
)

// sourceInForce is where z8r snapshots and sends from now.
func sourceInForce(dr *z8rv1.DatasetReplication) z8rv1.DatasetRef {
	if dr.Status.Source != nil {
		return *dr.Status.Source
	}
	return dr.Spec.Source
}

// promotionRunning reports a promotion that has started and not ended.
func promotionRunning(p *z8rv1.PromotionStatus) bool {
	if p == nil {
		return false
	}
	switch p.Phase {
	case z8rv1.PromotionCompleted, z8rv1.PromotionCancelled:
		return false
	}
	return true
}

func refString(r z8rv1.DatasetRef) string { return r.Node + ":" + r.Dataset }

// promote carries a promotion one step further; status is the status to
// write (status.Source set). It returns when the promotion waits, was
// refused, failed for now, or completed.
func (r *DatasetReplicationReconciler) promote(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus, now time.Time) (reconcile.Result, error) {
	from, to := *status.Source, dr.Spec.Source
	log := logf.FromContext(ctx).WithValues("from", refString(from), "to", refString(to))
	p := status.Promotion
	if from == to {
		return r.cancelPromotion(ctx, dr, status, now)
	}
	if p == nil || p.From != from || p.To != to || !promotionRunning(p) {
		p = &z8rv1.PromotionStatus{From: from, To: to, StartedAt: &metav1.Time{Time: now}}
		status.Promotion = p
		log.Info("promotion started")
	}
	setPromoting := func(reason, msg string) {
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: reason, Message: msg, ObservedGeneration: dr.Generation})
	}
	// retry writes status and asks to come back after the backoff.
	retry := func(msg string) (reconcile.Result, error) {
		p.Attempts++
		p.Message = msg
		setPromoting(z8rv1.ReasonPromoting, msg)
		if err := r.writeStatus(ctx, dr, status); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, nil
	}
	refuse := func(msg string) (reconcile.Result, error) {
		p.Phase, p.Message = z8rv1.PromotionRefused, msg
		p.Attempts++
		log.Info("promotion refused", "reason", msg)
		r.Recorder.Eventf(dr, nodeRef(to.Node), corev1.EventTypeWarning, z8rv1.EventPromotionRefused, "Promote",
			"promotion of %s refused, nothing was changed: %s", refString(to), msg)
		setPromoting(z8rv1.ReasonPromotionRefused, msg)
		if err := r.writeStatus(ctx, dr, status); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, nil
	}

	beforeWritable := p.Phase == "" || p.Phase == z8rv1.PromotionWaiting || p.Phase == z8rv1.PromotionRefused
	if beforeWritable {
		i := slices.IndexFunc(status.Targets, func(t z8rv1.TargetStatus) bool { return t.Node == to.Node && t.Dataset == to.Dataset })
		switch {
		case i < 0 || (status.Targets[i].LastSnapshotGUID == "" && status.Targets[i].LastSnapshot == ""):
			return refuse(fmt.Sprintf("%s has not received any snapshot of %s yet: there is nothing to promote", refString(to), refString(from)))
		case status.Targets[i].State == z8rv1.TargetDiverged:
			return refuse(fmt.Sprintf("%s diverged from %s (%s): promoting it would lose what the source has; resolve the divergence first", refString(to), refString(from), status.Targets[i].LastError))
		}
		// A raw replica of an encrypted dataset cannot be mounted without
		// its key: refused before the old source is frozen. (Unreachable:
		// the steps below report it.)
		if tgt, err := r.Agents.Get(ctx, to.Node); err == nil {
			if missing, err := replicate.KeyNotLoaded(ctx, tgt.ZFS(), to.Dataset); err == nil && missing {
				return refuse(fmt.Sprintf("%s is encrypted and its key is not loaded on %s: load it (zfs load-key %s, with the source's key) and the promotion goes on", refString(to), to.Node, to.Dataset))
			}
		}
	}

	if p.Phase != z8rv1.PromotionPromoting {
		old, err := r.Agents.Get(ctx, from.Node)
		switch {
		case err == nil:
			p.Kind = z8rv1.PromotionPlanned
			if res, done, err := r.switchover(ctx, dr, status, old, now); !done || err != nil {
				return res, err
			}
		case !dr.Spec.AllowUnplannedFailover:
			msg := fmt.Sprintf("old source %s cannot be reached (%v); the promotion waits for it (a planned switchover loses nothing). Set spec.allowUnplannedFailover to promote %s at its newest snapshot", from.Node, err, refString(to))
			if p.Phase != z8rv1.PromotionWaiting {
				r.Recorder.Eventf(dr, nodeRef(from.Node), corev1.EventTypeWarning, z8rv1.EventPromotionWaiting, "Promote", "%s", msg)
			}
			p.Phase, p.Message = z8rv1.PromotionWaiting, msg
			p.Attempts++
			setPromoting(z8rv1.ReasonPromotionWaiting, msg)
			if err := r.writeStatus(ctx, dr, status); err != nil {
				return reconcile.Result{}, err
			}
			return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, nil
		default:
			p.Kind = z8rv1.PromotionUnplanned
			p.Phase = z8rv1.PromotionPromoting
			log.Info("old source unreachable; unplanned failover", "error", err.Error())
			if err := r.writeStatus(ctx, dr, status); err != nil {
				return reconcile.Result{}, err
			}
		}
	}

	// 4. The target becomes writable.
	tgt, err := r.Agents.Get(ctx, to.Node)
	if err != nil {
		return retry(fmt.Sprintf("target %s cannot be reached: %v", to.Node, err))
	}
	rp, err := replicate.MakeWritable(ctx, tgt.ZFS(), to.Dataset)
	if err != nil {
		r.Agents.DropFailed(err, tgt)
		return retry(fmt.Sprintf("making %s writable failed: %v", refString(to), err))
	}
	failpoint.Hit(FailPromoteAfterWritable)
	// The recovery point is the target's newest snapshot: for a planned
	// switchover the final snapshot (switchover checked it).
	p.RecoveryPoint, p.RecoveryPointGUID = rp.Snapshot, strconv.FormatUint(rp.GUID, 10)
	if _, short := zfsexec.SplitSnapshot(rp.Snapshot); short != "" {
		p.RecoveryPoint = short
	}
	p.RecoveryPointTime = &metav1.Time{Time: rp.Time}
	if rp.DiscardedPartial != "" {
		p.Discarded = "an interrupted receive of " + rp.DiscardedPartial + " (abandoned; the old source still has it)"
	}

	// 5. The old direction's holds go; the target is the source.
	oldTargets := status.Targets
	if err := replicate.UnprotectReplica(ctx, tgt.ZFS(), to.Dataset, policy.ID(to.Node, to.Dataset)); err != nil {
		log.Error(err, "releasing the promoted target's replica hold failed")
	}
	if p.Kind == z8rv1.PromotionPlanned {
		if old, err := r.Agents.Get(ctx, from.Node); err == nil {
			for _, t := range oldTargets {
				if err := replicate.Unprotect(ctx, old.ZFS(), from.Dataset, policy.ID(t.Node, t.Dataset)); err != nil {
					log.Error(err, "releasing an old target's holds on the old source failed", "target", t.Node+":"+t.Dataset)
				}
			}
		}
		p.Rejoin = z8rv1.RejoinDone
	} else {
		p.Rejoin = z8rv1.RejoinPending
	}
	failpoint.Hit(FailPromoteAfterRelease)
	status.Targets = nil
	for _, t := range oldTargets {
		if t.Node == to.Node && t.Dataset == to.Dataset {
			continue
		}
		t.ProtectedBase = "" // held on the old source; the next sync protects it on the new one
		status.Targets = append(status.Targets, t)
	}
	if hasTarget(*dr, from.Node+"/"+from.Dataset) {
		ts := z8rv1.TargetStatus{Node: from.Node, Dataset: from.Dataset, State: z8rv1.TargetPending}
		if p.Kind == z8rv1.PromotionPlanned {
			ts.LastSnapshot, ts.LastSnapshotGUID = p.RecoveryPoint, p.RecoveryPointGUID
		}
		status.Targets = append(status.Targets, ts)
	}
	src := to
	status.Source = &src
	p.Phase, p.Message, p.Attempts = z8rv1.PromotionCompleted, "", 0
	p.CompletedAt = &metav1.Time{Time: r.Clock.Now()}
	summarize(status, dr.Generation)
	msg := fmt.Sprintf("%s is the source (%s): recovery point %s taken %s", refString(to), p.Kind, p.RecoveryPoint, rp.Time.UTC().Format(time.RFC3339))
	if p.Kind == z8rv1.PromotionUnplanned {
		msg += "; what " + refString(from) + " had after it is kept aside there when it returns"
	}
	if p.Discarded != "" {
		msg += "; beyond it the target had " + p.Discarded
	}
	log.Info("promoted", "kind", p.Kind, "recoveryPoint", p.RecoveryPoint)
	r.Recorder.Eventf(dr, nodeRef(to.Node), corev1.EventTypeNormal, z8rv1.EventPromoted, "Promote", "%s", msg)
	if err := r.writeStatus(ctx, dr, status); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Second}, nil
}

// switchover runs steps 2 and 3 of a planned switchover. done is true when
// the target has the final snapshot and may be made writable.
func (r *DatasetReplicationReconciler) switchover(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus, old *Node, now time.Time) (reconcile.Result, bool, error) {
	p := status.Promotion
	from, to := p.From, p.To
	log := logf.FromContext(ctx)
	fail := func(msg string) (reconcile.Result, bool, error) {
		p.Attempts++
		p.Message = msg
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: z8rv1.ReasonPromoting, Message: msg, ObservedGeneration: dr.Generation})
		if err := r.writeStatus(ctx, dr, status); err != nil {
			return reconcile.Result{}, false, err
		}
		return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, false, nil
	}
	tgt, err := r.Agents.Get(ctx, to.Node)
	if err != nil {
		return fail(fmt.Sprintf("target %s cannot be reached: %v", to.Node, err))
	}
	// 2. Freeze, then 3. the final snapshot: nothing written after the
	// freeze can be missing from the snapshot.
	if p.Phase != z8rv1.PromotionFinalSync {
		// Recorded first: a crash from here on leaves a promotion that a
		// cancel (spec.source back) still finds and undoes.
		if p.Phase != z8rv1.PromotionFreezing {
			p.Phase = z8rv1.PromotionFreezing
			if err := r.writeStatus(ctx, dr, status); err != nil {
				return reconcile.Result{}, false, err
			}
		}
		if err := freeze(ctx, old, from.Dataset, refString(to)); err != nil {
			r.Agents.DropFailed(err, old)
			return fail(fmt.Sprintf("making the old source %s read-only failed: %v", refString(from), err))
		}
		failpoint.Hit(FailPromoteAfterFreeze)
		name, err := replicate.TakeSnapshot(ctx, old.ZFS(), from.Dataset, r.prefix(), dr.Name, now)
		if err != nil {
			r.Agents.DropFailed(err, old)
			return fail(fmt.Sprintf("final snapshot of %s failed: %v", refString(from), err))
		}
		failpoint.Hit(FailPromoteAfterFinalSnapshot)
		p.Phase, p.FinalSnapshot = z8rv1.PromotionFinalSync, name
		log.Info("old source frozen; final snapshot taken", "snapshot", name)
		if err := r.writeStatus(ctx, dr, status); err != nil {
			return reconcile.Result{}, false, err
		}
	}
	res, err := replicate.SyncTarget(ctx, old, from.Dataset, replicate.Target{
		ID: policy.ID(to.Node, to.Dataset), PolicyID: dr.Name, Origin: refString(from),
		Endpoint: tgt, Addr: tgt.Address, HostKey: tgt.HostKey, Dataset: to.Dataset,
	}, replicate.Options{IncludeForeign: dr.Spec.IncludeForeign, RateLimit: bandwidthLimit(dr)})
	var ce *plan.ConflictError
	if errors.As(err, &ce) {
		// The target grew: it cannot become the source without losing
		// what the old source has. Undo the freeze; refuse.
		if _, uerr := replicate.MakeWritable(ctx, old.ZFS(), from.Dataset); uerr != nil {
			return fail(fmt.Sprintf("%s diverged (%v) and making the old source %s writable again failed: %v", refString(to), err, refString(from), uerr))
		}
		p.Phase, p.Message = z8rv1.PromotionRefused, fmt.Sprintf("%s diverged from %s: %v; the old source is writable again", refString(to), refString(from), err)
		p.Attempts++
		r.Recorder.Eventf(dr, nodeRef(to.Node), corev1.EventTypeWarning, z8rv1.EventPromotionRefused, "Promote",
			"promotion of %s refused: %s", refString(to), p.Message)
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: z8rv1.ReasonPromotionRefused, Message: p.Message, ObservedGeneration: dr.Generation})
		if err := r.writeStatus(ctx, dr, status); err != nil {
			return reconcile.Result{}, false, err
		}
		return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, false, nil
	}
	if err != nil {
		r.Agents.DropFailed(err, old, tgt)
		return fail(fmt.Sprintf("sending the final snapshot %s to %s failed: %v", p.FinalSnapshot, refString(to), err))
	}
	if res.Newest != p.FinalSnapshot {
		return fail(fmt.Sprintf("%s has %s after the final sync, not the final snapshot %s", refString(to), res.Newest, p.FinalSnapshot))
	}
	p.RecoveryPoint, p.RecoveryPointGUID = res.Newest, strconv.FormatUint(res.NewestGUID, 10)
	p.Phase = z8rv1.PromotionPromoting
	if err := r.writeStatus(ctx, dr, status); err != nil {
		return reconcile.Result{}, false, err
	}
	return reconcile.Result{}, true, nil
}

// cancelPromotion ends a promotion whose spec.source went back to the
// source in force before the target was made writable: the old source,
// frozen for a planned switchover, is made writable again.
func (r *DatasetReplicationReconciler) cancelPromotion(ctx context.Context, dr *z8rv1.DatasetReplication, status *z8rv1.DatasetReplicationStatus, now time.Time) (reconcile.Result, error) {
	p := status.Promotion
	if p.Phase == z8rv1.PromotionFinalSync || p.Phase == z8rv1.PromotionFreezing {
		old, err := r.Agents.Get(ctx, p.From.Node)
		if err == nil {
			err = unfreeze(ctx, old.ZFS(), p.From.Dataset, refString(p.To))
		}
		if err != nil {
			p.Message = fmt.Sprintf("cancelled; making %s writable again failed (retrying): %v", refString(p.From), err)
			p.Attempts++
			if werr := r.writeStatus(ctx, dr, status); werr != nil {
				return reconcile.Result{}, werr
			}
			return reconcile.Result{RequeueAfter: backoff(p.Attempts)}, nil
		}
	}
	p.Phase, p.Message, p.Attempts = z8rv1.PromotionCancelled, "spec.source went back to "+refString(p.From), 0
	p.CompletedAt = &metav1.Time{Time: now}
	r.Recorder.Eventf(dr, nil, corev1.EventTypeNormal, z8rv1.EventPromotionCancelled, "Promote",
		"promotion of %s cancelled; %s stays the source and is writable", refString(p.To), refString(p.From))
	if err := r.writeStatus(ctx, dr, status); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Second}, nil
}

// unfreeze makes the old source fs of a cancelled switchover writable
// again. A crash may have stopped the freeze anywhere: not begun
// (writable, unmarked: nothing to undo), readonly=on without the replica
// mark yet (the freeze is finished first, since z8r makes only its marked
// replicas writable), or done.
func unfreeze(ctx context.Context, z *zfsexec.ZFS, fs, origin string) error {
	props, err := z.Get(ctx, fs, "readonly", replicate.ReplicaOfProp)
	if err != nil {
		return err
	}
	ro, mark := props["readonly"], props[replicate.ReplicaOfProp]
	marked := mark.Source == "local" && mark.Value == origin
	if !marked && (ro.Value != "on" || ro.Source != "local") {
		return nil // the freeze never began
	}
	if !marked {
		if err := replicate.Freeze(ctx, z, fs, origin); err != nil {
			return err
		}
	}
	_, err = replicate.MakeWritable(ctx, z, fs)
	return err
}

// rejoin prepares the old source of an unplanned failover to receive from
// the new source: frozen, its old holds released, its tail moved aside
// (Rejoin Pending → Receiving). It reports whether the old source may be
// synced now; the rejoin is Done after the first successful sync into it.
func (r *DatasetReplicationReconciler) rejoin(ctx context.Context, dr *z8rv1.DatasetReplication, src *Node, status *z8rv1.DatasetReplicationStatus, prevState string, now time.Time) bool {
	p := status.Promotion
	log := logf.FromContext(ctx).WithValues("oldSource", refString(p.From))
	// Frozen and its tail aside already: it receives, unless a receive
	// was refused as modified (writes after its newest snapshot, which
	// only a receive reveals) and no tail was kept yet.
	if p.Rejoin == z8rv1.RejoinReceiving && (prevState != z8rv1.TargetDiverged || p.TailAside != "") {
		return true
	}
	old, err := r.Agents.Get(ctx, p.From.Node)
	if err != nil {
		return false // still away
	}
	l, err := replicate.List(ctx, old.ZFS(), p.From.Dataset)
	if err != nil {
		r.Agents.DropFailed(err, old)
		return false
	}
	origin := refString(p.To)
	// A tail this rejoin kept aside already (a run repeated after a crash
	// before the status said so, or a reconcile that read an older status)
	// is not kept again: the old source receives.
	if p.TailAside != "" {
		kept, err := replicate.TailKept(ctx, old.ZFS(), p.From.Dataset, p.TailAside)
		if err != nil {
			r.Agents.DropFailed(err, old)
			p.Message = fmt.Sprintf("reading the old source's tail %s failed: %v", p.TailAside, err)
			return false
		}
		if kept {
			p.Message, p.Rejoin = "", z8rv1.RejoinReceiving
			return true
		}
	}
	// oldFS holds the old source's snapshots: the old source itself, or
	// its tail dataset when a crash stopped PreserveTail after the rename
	// (the old source missing) or the clone (a clone has no snapshots of
	// its own); PreserveTail then finishes from there.
	oldFS := p.From.Dataset
	if !l.Exists {
		if p.TailAside == "" {
			p.Rejoin = z8rv1.RejoinReceiving
			return true // nothing there: a full receive
		}
		la, err := replicate.List(ctx, old.ZFS(), p.TailAside)
		if err != nil {
			r.Agents.DropFailed(err, old)
			return false
		}
		if !la.Exists {
			p.Rejoin = z8rv1.RejoinReceiving
			return true
		}
		oldFS = p.TailAside
	} else if err := freeze(ctx, old, p.From.Dataset, origin); err != nil {
		r.Agents.DropFailed(err, old)
		p.Message = fmt.Sprintf("making the returning old source read-only failed: %v", err)
		return false
	}
	// The old direction's holds on the old source: every target it had
	// (the new source included).
	for _, id := range oldDirectionIDs(dr, p) {
		if err := replicate.Unprotect(ctx, old.ZFS(), oldFS, id); err != nil {
			log.Error(err, "releasing the old direction's holds on the returning old source failed", "target", id)
		}
	}

	base, tail, err := replicate.CommonBase(ctx, old.ZFS(), oldFS, src.ZFS(), p.To.Dataset)
	if err != nil && p.TailAside != "" && oldFS != p.TailAside {
		base, tail, err = replicate.CommonBase(ctx, old.ZFS(), p.TailAside, src.ZFS(), p.To.Dataset)
	}
	if err != nil {
		p.Message = fmt.Sprintf("the returning old source has no snapshot in common with %s: %v; it is left untouched (read-only)", origin, err)
		return false
	}
	if len(tail) == 0 && prevState != z8rv1.TargetDiverged && p.TailAside == "" {
		p.Rejoin = z8rv1.RejoinReceiving
		return true
	}
	at := now
	if p.TailAside == "" {
		p.TailAside = snapname.TailName(p.From.Dataset, at)
		// Recorded before anything is renamed, so a crash leaves the name
		// the next try finishes. (The caller is rebuilding the targets'
		// status: the stored ones are kept.)
		rec := status.DeepCopy()
		rec.Targets = dr.Status.Targets
		if err := r.writeStatus(ctx, dr, rec); err != nil {
			return false
		}
	} else if _, t, ok := snapname.ParseTailName(p.TailAside); ok {
		at = t
	}
	aside, err := replicate.PreserveTail(ctx, old.ZFS(), p.From.Dataset, base.ShortName(), origin, at)
	if err != nil {
		r.Agents.DropFailed(err, old)
		p.Message = fmt.Sprintf("keeping the old source's tail aside failed (retrying): %v", err)
		log.Error(err, "preserving the tail failed")
		return false
	}
	failpoint.Hit(FailRejoinAfterTail)
	p.TailAside, p.Message, p.Rejoin = aside, "", z8rv1.RejoinReceiving
	tails := make([]string, 0, len(tail))
	for _, d := range tail {
		tails = append(tails, d.ShortName())
	}
	log.Info("old source's tail kept aside", "aside", aside, "base", base.ShortName(), "snapshots", tails)
	r.Recorder.Eventf(dr, nodeRef(p.From.Node), corev1.EventTypeWarning, z8rv1.EventTailPreserved, "Rejoin",
		"%s had data after its last snapshot common with %s (@%s): snapshots %v and any writes; all of it was kept in %s on %s (nothing destroyed)", refString(p.From), origin, base.ShortName(), tails, aside, p.From.Node)
	return true
}

// freeze makes the old source fs read-only and z8r's replica of origin
// (replicate.Freeze), then unmounts it when it is not in use: a replica is
// kept unmounted, and zfs-fuse remounts a filesystem that receives a
// stream read-write whatever its readonly property says. A filesystem
// still in use stays mounted, read-only.
func freeze(ctx context.Context, n *Node, fs, origin string) error {
	if err := replicate.Freeze(ctx, n.ZFS(), fs, origin); err != nil {
		return err
	}
	if err := n.ZFS().Unmount(ctx, fs); err != nil && !errors.Is(err, zfsexec.ErrDatasetBusy) {
		logf.FromContext(ctx).Info("unmounting the frozen old source failed; it stays mounted read-only", "dataset", fs, "error", err.Error())
	}
	return nil
}

// oldDirectionIDs are the target ids the old direction of promotion p
// protected on its old source: the promoted target and every other
// target of dr but the old source itself.
func oldDirectionIDs(dr *z8rv1.DatasetReplication, p *z8rv1.PromotionStatus) []string {
	ids := []string{policy.ID(p.To.Node, p.To.Dataset)}
	for _, t := range dr.Spec.Targets {
		ds := targetDataset(*dr, t)
		if t.Node == p.From.Node && ds == p.From.Dataset {
			continue
		}
		ids = append(ids, policy.ID(t.Node, ds))
	}
	return ids
}

// releaseOldSourceHolds releases, on the old source of an unplanned
// failover that has not rejoined, the holds of the old direction. It
// returns "" when done, else what was left and why.
func (r *DatasetReplicationReconciler) releaseOldSourceHolds(ctx context.Context, dr *z8rv1.DatasetReplication) string {
	p := dr.Status.Promotion
	ids := oldDirectionIDs(dr, p)
	old, err := r.Agents.Get(ctx, p.From.Node)
	if err == nil {
		for _, id := range ids {
			if err = replicate.Unprotect(ctx, old.ZFS(), p.From.Dataset, id); err != nil {
				r.Agents.DropFailed(err, old)
				break
			}
		}
	}
	if err == nil {
		return ""
	}
	tags := make([]string, 0, 2*len(ids))
	for _, id := range ids {
		tags = append(tags, snapname.HoldTag(id), snapname.StepHoldTag(id))
	}
	return fmt.Sprintf("old source %s never rejoined and cannot be reached (%v): release these holds on %s by hand when it returns (zfs release TAG SNAPSHOT): %v",
		refString(p.From), err, p.From.Dataset, tags)
}
