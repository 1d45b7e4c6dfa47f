package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

func testWatch(context.Context, context.CancelCauseFunc) *syncWatch {
	return &syncWatch{reported: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
}

func endedWatch(ctx context.Context, cancel context.CancelCauseFunc) *syncWatch {
	w := testWatch(ctx, cancel)
	close(w.done)
	return w
}

// A sync that ends before DetachAfter returns its outcome to the
// reconcile that started it; nothing is left in the runner.
func TestTransferRunner_ShortSyncEndsInline(t *testing.T) {
	tr := (&transferRunnerOnce{}).get()
	j := tr.start(context.Background(), "r/n2:tank/a", "r", time.Hour, nil, endedWatch,
		func(ctx, _ context.Context, _ *syncWatch, admitted func()) z8rv1.TargetStatus {
			admitted()
			return z8rv1.TargetStatus{Node: "n2", Dataset: "tank/a", State: z8rv1.TargetSynced}
		})
	out, ended := tr.wait("r/n2:tank/a", j)
	if !ended || out.State != z8rv1.TargetSynced {
		t.Fatalf("wait = %+v, %v; want the Synced outcome at once", out, ended)
	}
	if tr.busy("r") || len(tr.finished("r")) != 0 {
		t.Error("the runner still has the sync")
	}
}

// A sync still transferring DetachAfter after it was admitted goes on
// without its reconcile; when it ends it wakes its replication and the
// next reconcile takes its outcome once.
func TestTransferRunner_LongSyncDetachesAndWakes(t *testing.T) {
	tr := (&transferRunnerOnce{}).get()
	release := make(chan struct{})
	woken := make(chan struct{}, 1)
	j := tr.start(context.Background(), "r/n2:tank/a", "r", 10*time.Millisecond, func() { woken <- struct{}{} }, endedWatch,
		func(ctx, _ context.Context, _ *syncWatch, admitted func()) z8rv1.TargetStatus {
			admitted()
			<-release
			return z8rv1.TargetStatus{Node: "n2", Dataset: "tank/a", State: z8rv1.TargetSynced}
		})
	if _, ended := tr.wait("r/n2:tank/a", j); ended {
		t.Fatal("wait returned an outcome of a sync that had not ended")
	}
	if tr.running("r/n2:tank/a") != j || !tr.busy("r") || tr.busy("other") {
		t.Fatal("the detached sync is not reported running for its replication only")
	}
	if got := tr.finished("r"); len(got) != 0 {
		t.Fatalf("finished = %v while the sync runs", got)
	}
	close(release)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("the replication was not woken when its sync ended")
	}
	if tr.running("r/n2:tank/a") != nil || tr.busy("r") {
		t.Error("an ended sync is still reported running")
	}
	got := tr.finished("r")
	if got["r/n2:tank/a"].State != z8rv1.TargetSynced || len(got) != 1 {
		t.Fatalf("finished = %v, want the Synced outcome", got)
	}
	// Until a status with it is written (committed) the outcome is
	// offered again: a reconcile that failed before writing loses nothing.
	if again := tr.finished("r"); again["r/n2:tank/a"].State != z8rv1.TargetSynced {
		t.Errorf("before commit finished = %v, want the outcome again", again)
	}
	tr.committed("r")
	if again := tr.finished("r"); len(again) != 0 {
		t.Errorf("after commit finished = %v, want nothing", again)
	}
}

// committed drops only the outcomes the writing reconcile took: a sync
// that ended after finished was called keeps its outcome.
func TestTransferRunner_CommitKeepsWhatEndedSince(t *testing.T) {
	tr := (&transferRunnerOnce{}).get()
	gates := map[string]chan struct{}{"r/a": make(chan struct{}), "r/b": make(chan struct{})}
	for key, gate := range gates {
		j := tr.start(context.Background(), key, "r", -1, nil, endedWatch,
			func(ctx, _ context.Context, _ *syncWatch, admitted func()) z8rv1.TargetStatus {
				admitted()
				<-gate
				return z8rv1.TargetStatus{State: z8rv1.TargetSynced, LastError: key}
			})
		if _, ended := tr.wait(key, j); ended {
			t.Fatal("ended before its gate opened")
		}
	}
	waitEnded := func(key string) {
		close(gates[key])
		for deadline := time.Now().Add(5 * time.Second); tr.running(key) != nil; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not end", key)
			}
		}
	}
	waitEnded("r/a")
	if got := tr.finished("r"); len(got) != 1 {
		t.Fatalf("finished = %v, want a's outcome", got)
	}
	waitEnded("r/b") // ends while the reconcile that took a's runs
	if tr.start(context.Background(), "r/b", "r", -1, nil, endedWatch, nil) != nil {
		t.Error("a new sync of b started over b's outcome no reconcile took")
	}
	tr.committed("r")
	if got := tr.finished("r"); len(got) != 1 || got["r/b"].LastError != "r/b" {
		t.Errorf("after commit finished = %v, want b's outcome still there", got)
	}
}

// A sync not yet admitted (planning, listing) never detaches: the
// reconcile waits for it as before.
func TestTransferRunner_NotAdmittedDoesNotDetach(t *testing.T) {
	tr := (&transferRunnerOnce{}).get()
	j := tr.start(context.Background(), "k", "r", -1, nil, endedWatch,
		func(ctx, _ context.Context, _ *syncWatch, _ func()) z8rv1.TargetStatus {
			time.Sleep(50 * time.Millisecond)
			return z8rv1.TargetStatus{State: z8rv1.TargetBehind}
		})
	if out, ended := tr.wait("k", j); !ended || out.State != z8rv1.TargetBehind {
		t.Fatalf("wait = %+v, %v; want the outcome of the unadmitted sync", out, ended)
	}
}

// stop cancels the running syncs (a plain cancel, not a cancel on
// purpose: no settling, an OpenZFS receive stays resumable), waits for
// them, and no sync starts after.
func TestTransferRunner_StopCancelsAndWaits(t *testing.T) {
	tr := (&transferRunnerOnce{}).get()
	var cause error
	ended := make(chan struct{})
	j := tr.start(context.Background(), "k", "r", -1, nil, endedWatch,
		func(ctx, _ context.Context, _ *syncWatch, admitted func()) z8rv1.TargetStatus {
			admitted()
			<-ctx.Done()
			cause = context.Cause(ctx)
			close(ended)
			return z8rv1.TargetStatus{State: z8rv1.TargetFailed}
		})
	if _, done := tr.wait("k", j); done {
		t.Fatal("the sync ended before stop")
	}
	tr.stop()
	select {
	case <-ended:
	default:
		t.Fatal("stop returned before the sync ended")
	}
	var purpose *TransferCancelledError
	if !errors.Is(cause, context.Canceled) || errors.As(cause, &purpose) {
		t.Errorf("cause %v, want a plain cancel", cause)
	}
	if tr.start(context.Background(), "k2", "r", -1, nil, endedWatch, nil) != nil {
		t.Error("a sync started after stop")
	}
}
