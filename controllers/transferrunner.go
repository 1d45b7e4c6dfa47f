package controllers

import (
	"context"
	"slices"
	"sync"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// DefaultDetachAfter is how long a reconcile waits for a sync that was
// admitted to transfer before it leaves the sync running in the
// background (transferRunner): a small incremental ends within it and
// its outcome is written by the same reconcile.
const DefaultDetachAfter = time.Second

// retryRunning is how often a replication with a transfer running in the
// background is reconciled if the transfer's end did not wake it first
// (the wake channel full).
const retryRunning = 30 * time.Second

// transferRunner runs DatasetReplication targets' syncs outside the
// reconcile workers. A reconcile starts a target's sync as a job and
// waits for it until it either ends (its outcome is returned at once) or
// has been transferring for DetachAfter; then the reconcile goes on
// without it and the worker is free. A detached job wakes its
// replication when it ends, and the next reconcile takes its outcome
// (finished) and writes it. While a job runs, reconciles of its
// replication run no sync, rejoin or source pruning for it, a promotion
// or a deletion waits for it (the sync's watch cancels it within a
// second), and its target shows Syncing with the job's progress.
//
// Jobs live in the controller process: stop (at the manager's shutdown)
// cancels them, without the settling of a cancel on purpose, so an
// OpenZFS receive stays resumable, and waits for them to end. The next
// controller starts the sync again (and resumes it on OpenZFS).
type transferRunner struct {
	mu       sync.Mutex
	jobs     map[string]*transferJob
	stopping bool
	wg       sync.WaitGroup
}

// transferJob is one target's sync.
type transferJob struct {
	replication string
	cancel      context.CancelCauseFunc
	watch       *syncWatch

	admitOnce sync.Once
	detach    chan struct{} // closed DetachAfter after the job was admitted
	done      chan struct{} // closed when result is set
	result    z8rv1.TargetStatus
	detached  bool // the reconcile that started it stopped waiting
	taken     bool // its outcome went into a reconcile (finished)
	wake      func()
}

// transferRunnerOnce makes a reconciler's runner on first use.
type transferRunnerOnce struct {
	once sync.Once
	r    *transferRunner
}

func (o *transferRunnerOnce) get() *transferRunner {
	o.once.Do(func() { o.r = &transferRunner{jobs: map[string]*transferJob{}} })
	return o.r
}

// syncFunc runs one target's sync to its end and returns the target's
// status. The sync runs on syncCtx, which its watch cancels (a cancel on
// purpose); what follows a cancel (settling) runs on ctx. It calls
// admitted once its transfer was admitted (nothing before that point
// waits long), and reports progress to watch.
type syncFunc func(ctx, syncCtx context.Context, watch *syncWatch, admitted func()) z8rv1.TargetStatus

// start runs key's sync as a job of replication. newWatch makes the
// sync's watch (it may cancel the job's context). It returns nil, and
// starts nothing, when the runner is stopping or key has a job whose
// outcome no reconcile took yet (it ended after this reconcile asked for
// the finished ones; the next one takes it).
func (tr *transferRunner) start(ctx context.Context, key, replication string, detachAfter time.Duration, wake func(),
	newWatch func(context.Context, context.CancelCauseFunc) *syncWatch, run syncFunc) *transferJob {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if old := tr.jobs[key]; tr.stopping || (old != nil && !old.taken) {
		return nil
	}
	// The job outlives the reconcile that started it: its context is
	// cancelled by the watch or by stop, not by the reconcile's end.
	jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	syncCtx, cancelSync := context.WithCancelCause(jctx)
	j := &transferJob{replication: replication, cancel: cancel, detach: make(chan struct{}), done: make(chan struct{}), wake: wake}
	j.watch = newWatch(jctx, cancelSync)
	tr.jobs[key] = j
	admitted := func() {
		j.admitOnce.Do(func() {
			if detachAfter <= 0 {
				close(j.detach)
				return
			}
			time.AfterFunc(detachAfter, func() { close(j.detach) })
		})
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		res := run(jctx, syncCtx, j.watch, admitted)
		j.watch.Ended()
		cancelSync(nil)
		cancel(nil)
		tr.mu.Lock()
		j.result = res
		close(j.done)
		wake := j.detached && j.wake != nil
		tr.mu.Unlock()
		if wake {
			j.wake()
		}
	}()
	return j
}

// wait waits for j to end or detach. It returns j's outcome and true if
// it ended (j is then forgotten), else false: j runs on and its outcome
// is taken later (finished).
func (tr *transferRunner) wait(key string, j *transferJob) (z8rv1.TargetStatus, bool) {
	select {
	case <-j.done:
	case <-j.detach:
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	select {
	case <-j.done:
		delete(tr.jobs, key)
		return j.result, true
	default:
		j.detached = true
		return z8rv1.TargetStatus{}, false
	}
}

// running returns key's job if one runs.
func (tr *transferRunner) running(key string) *transferJob {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	j := tr.jobs[key]
	if j == nil {
		return nil
	}
	select {
	case <-j.done:
		return nil
	default:
		return j
	}
}

// busy reports whether a job of replication runs.
func (tr *transferRunner) busy(replication string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, j := range tr.jobs {
		if j.replication != replication {
			continue
		}
		select {
		case <-j.done:
		default:
			return true
		}
	}
	return false
}

// finished returns the outcomes, by key, of replication's jobs that
// ended after their reconcile stopped waiting. They stay until committed:
// a reconcile that takes them and fails before it writes the
// replication's status takes them again next time.
func (tr *transferRunner) finished(replication string) map[string]z8rv1.TargetStatus {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out map[string]z8rv1.TargetStatus
	for key, j := range tr.jobs {
		if j.replication != replication {
			continue
		}
		select {
		case <-j.done:
			if out == nil {
				out = map[string]z8rv1.TargetStatus{}
			}
			out[key] = j.result
			j.taken = true
		default:
		}
	}
	return out
}

// committed drops the jobs of replication whose outcomes finished
// returned: a status with them was written. (Reconciles of one
// replication do not overlap, so these are the ones the writing
// reconcile took; a job that ended since is kept.)
func (tr *transferRunner) committed(replication string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for key, j := range tr.jobs {
		if j.replication == replication && j.taken {
			delete(tr.jobs, key)
		}
	}
}

// forget drops every ended job of replication (it is gone).
func (tr *transferRunner) forget(replication string) {
	tr.finished(replication)
	tr.committed(replication)
}

// stop cancels every job and waits for them to end; no job starts after.
func (tr *transferRunner) stop() {
	tr.mu.Lock()
	tr.stopping = true
	for _, j := range tr.jobs {
		j.cancel(context.Canceled)
	}
	tr.mu.Unlock()
	tr.wg.Wait()
}

// mergeOutcomes puts the outcomes of syncs that ended in the background
// (transferRunner.finished, by job key) into status.
func mergeOutcomes(replication string, status *z8rv1.DatasetReplicationStatus, done map[string]z8rv1.TargetStatus) {
	for key, out := range done {
		i := slices.IndexFunc(status.Targets, func(ts z8rv1.TargetStatus) bool { return replication+"/"+ts.Node+":"+ts.Dataset == key })
		if i < 0 {
			status.Targets = append(status.Targets, out)
			continue
		}
		out.RemovedAt = status.Targets[i].RemovedAt // removed while it ran: its grace started
		status.Targets[i] = out
	}
}
