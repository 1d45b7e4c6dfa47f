package controllers

import (
	"context"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
)

// DefaultProgressInterval is how often a running sync's progress is
// written to status.targets[].transfer (the API promises at least every
// 10 s).
const DefaultProgressInterval = 5 * time.Second

// transferTracker sums the agents' progress reports of one sync (one
// report stream per step; a resumed receive reports as step -1) into
// what status.targets[].transfer shows. It is pure: the caller passes the
// time.
type transferTracker struct {
	started    time.Time
	step       int // the step reporting now
	seen       int // steps seen so far
	stepBytes  int64
	doneBytes  int64 // of the steps before the current one
	steps      int   // planned, 0 until known
	expected   int64 // planned stream size, 0 when unknown
	resumed    bool
	lastReport time.Time
}

// report records that step has sent bytes so far, in elapsed since the
// step's transfer began (as the agent measured it).
func (t *transferTracker) report(now time.Time, step int, bytes int64, elapsed time.Duration) {
	if t.seen == 0 {
		t.started, t.step, t.seen = now.Add(-max(elapsed, 0)), step, 1
	} else if step != t.step {
		t.doneBytes += t.stepBytes
		t.step, t.stepBytes = step, 0
		t.seen++
	}
	if step < 0 {
		t.resumed = true
	}
	t.stepBytes = max(t.stepBytes, bytes)
	t.lastReport = now
}

// plan records the sync's planned steps and expected stream size.
func (t *transferTracker) plan(steps int, expected int64) { t.steps, t.expected = steps, expected }

// progress is the transfer status at now.
func (t *transferTracker) progress(now time.Time) z8rv1.TransferProgress {
	p := z8rv1.TransferProgress{
		StartedAt: metav1.Time{Time: t.started}, UpdatedAt: metav1.Time{Time: now},
		Step: t.seen, Steps: max(t.steps, t.seen), BytesDone: t.doneBytes + t.stepBytes,
	}
	if t.resumed && t.steps > 0 {
		p.Steps = max(t.steps+1, t.seen) // the resumed receive comes first
	}
	if t.expected > 0 {
		p.BytesExpected = max(t.expected, p.BytesDone)
	}
	// A rate over less than a second says little (and the first report
	// may come at once).
	if el := now.Sub(t.started); el >= time.Second && p.BytesDone > 0 {
		p.BytesPerSecond = int64(float64(p.BytesDone) / el.Seconds())
		if p.BytesExpected > 0 && p.BytesPerSecond > 0 {
			left := time.Duration(float64(p.BytesExpected-p.BytesDone) / float64(p.BytesPerSecond) * float64(time.Second))
			p.EstimatedCompletion = &metav1.Time{Time: now.Add(left).Truncate(time.Second)}
		}
	}
	return p
}

// syncWatch makes one target's sync visible while it runs, and stops it
// when it is cancelled. On the sync's first progress report (agents report
// every second, so a transfer that takes longer shows) the target's state
// in the stored status becomes Syncing with status.targets[].transfer;
// while reports keep coming, transfer is rewritten every progress
// interval. Every second (or progress interval, if shorter) it reads the
// replication as stored and cancels the sync's context, with a
// *TransferCancelledError as the cause, once the replication is
// suspended, being deleted or gone, or no longer lists the target. Ended
// must be called when the sync returned: it stops the watch and waits for
// a write in flight, so the status the reconcile writes at its end (with
// the sync's outcome, transfer cleared) always comes after.
type syncWatch struct {
	mu       sync.Mutex
	tr       transferTracker
	changed  bool
	first    sync.Once
	reported chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// TransferCancelledError is the cause of a sync's cancelled context when
// the sync was stopped on purpose; Reason says why.
type TransferCancelledError struct{ Reason string }

func (e *TransferCancelledError) Error() string { return "transfer cancelled: " + e.Reason }

// cancelReason says why a sync of node/dataset for dr must not go on, as
// the replication is stored now: "" when it may.
func (r *DatasetReplicationReconciler) cancelReason(ctx context.Context, dr *z8rv1.DatasetReplication, node, dataset string) string {
	var cur z8rv1.DatasetReplication
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(dr), &cur); err != nil {
		if apierrors.IsNotFound(err) {
			return "the replication was deleted"
		}
		return "" // cannot tell: go on
	}
	switch {
	case !cur.DeletionTimestamp.IsZero():
		return "the replication is being deleted"
	case cur.Spec.Suspend:
		return "the replication was suspended"
	case !hasTarget(cur, node+"/"+dataset):
		return "the target was removed from the replication"
	}
	return ""
}

// watchSync starts the watch of one target's sync; cancel cancels the
// sync's context.
func (r *DatasetReplicationReconciler) watchSync(ctx context.Context, dr *z8rv1.DatasetReplication, node, dataset string, cancel context.CancelCauseFunc) *syncWatch {
	w := &syncWatch{reported: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	every := r.ProgressInterval
	if every <= 0 {
		every = DefaultProgressInterval
	}
	write := func() {
		w.mu.Lock()
		p := w.tr.progress(time.Now())
		w.changed = false
		w.mu.Unlock()
		err := r.updateTargetStatus(ctx, dr, node, dataset, func(ts *z8rv1.TargetStatus) {
			ts.State, ts.Transfer = z8rv1.TargetSyncing, &p
		})
		if err != nil && ctx.Err() == nil {
			logf.FromContext(ctx).Error(err, "recording a target's transfer failed", "node", node, "dataset", dataset)
		}
	}
	go func() {
		defer close(w.done)
		check := time.NewTicker(min(every, time.Second))
		defer check.Stop()
		reported := w.reported // nil once the first report was written
		var lastWrite time.Time
		for {
			select {
			case <-w.stop:
				select {
				case <-reported: // reported, however short: recorded all the same
					write()
				default:
				}
				return
			case <-reported:
				write()
				reported, lastWrite = nil, time.Now()
			case <-check.C:
				if reason := r.cancelReason(ctx, dr, node, dataset); reason != "" {
					cancel(&TransferCancelledError{Reason: reason})
				}
				w.mu.Lock()
				changed := w.changed
				w.mu.Unlock()
				if reported == nil && changed && time.Since(lastWrite) >= every {
					write()
					lastWrite = time.Now()
				}
			}
		}
	}()
	return w
}

// Progress takes one agent report of a step (replicate.Options.Progress).
func (w *syncWatch) Progress(step int, p agent.Progress) {
	w.mu.Lock()
	w.tr.report(time.Now(), step, p.Bytes, time.Duration(p.ElapsedMillis)*time.Millisecond)
	w.changed = true
	w.mu.Unlock()
	w.first.Do(func() { close(w.reported) })
}

// Planned takes the sync's plan (replicate.Options.Planned).
func (w *syncWatch) Planned(steps int, expectedBytes int64) {
	w.mu.Lock()
	w.tr.plan(steps, expectedBytes)
	w.changed = true
	w.mu.Unlock()
}

// Ended stops the watch once the sync returned and waits for it.
func (w *syncWatch) Ended() {
	close(w.stop)
	<-w.done
}

// updateTargetStatus changes one target's entry in dr's status as stored,
// adding the target if the status does not list it yet; the rest is left
// as it is.
func (r *DatasetReplicationReconciler) updateTargetStatus(ctx context.Context, dr *z8rv1.DatasetReplication, node, dataset string, change func(*z8rv1.TargetStatus)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur z8rv1.DatasetReplication
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(dr), &cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		i := slices.IndexFunc(cur.Status.Targets, func(t z8rv1.TargetStatus) bool { return t.Node == node && t.Dataset == dataset })
		if i < 0 {
			cur.Status.Targets = append(cur.Status.Targets, z8rv1.TargetStatus{Node: node, Dataset: dataset})
			i = len(cur.Status.Targets) - 1
		}
		change(&cur.Status.Targets[i])
		if err := r.Client.Status().Update(ctx, &cur); err != nil {
			return err
		}
		r.written.record(&cur)
		return nil
	})
}
