//go:build kube

package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// tableBackgroundSync: a sync still transferring after DetachAfter goes on
// without its reconcile. That reconcile writes the target Syncing; one
// that runs while the sync does runs nothing for that target; the one
// after the sync ended writes its outcome.
func tableBackgroundSync(t *testing.T, te *tableEnv) {
	h := newDRHarness(t, te, "src", "dst")
	h.dataset("src", "tank/a")
	h.r.DetachAfter = -1 // detach as soon as the transfer is admitted
	gate := make(chan struct{})
	h.nodes.beforeTransfer = waitGate(gate)
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	h.create(rep("r", "src", to("dst")))
	h.mark()
	waitIdle := func() {
		t.Helper()
		if err := wait.PollUntilContextTimeout(h.ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return !h.r.transfers.get().busy("r"), nil
		}); err != nil {
			t.Fatal("the background sync did not end")
		}
	}

	h.reconcile("r")
	if ts := h.get("r").Status.Targets; len(ts) != 1 || ts[0].State != z8rv1.TargetSyncing {
		t.Fatalf("after the first reconcile the targets are %+v, want dst Syncing", ts)
	}
	if !h.r.transfers.get().busy("r") {
		t.Fatal("no sync runs in the background")
	}

	// A reconcile while the sync runs: nothing for that target.
	h.mark()
	res := h.reconcile("r")
	if cmds := h.mutatedSinceMark("dst"); len(cmds) != 0 {
		t.Errorf("the target ran %q while its sync ran in the background", cmds)
	}
	if cmds := h.mutatedSinceMark("src"); len(cmds) != 0 {
		t.Errorf("the source ran %q while a sync ran in the background (no snapshot was due, no pruning)", cmds)
	}
	if res.RequeueAfter > retryRunning {
		t.Errorf("requeue after %s, want at most %s while a sync runs", res.RequeueAfter, retryRunning)
	}
	if ts := h.get("r").Status.Targets[0]; ts.State != z8rv1.TargetSyncing {
		t.Errorf("target %+v while its sync runs, want Syncing", ts)
	}

	close(gate)
	waitIdle()
	if ts := h.get("r").Status.Targets[0]; ts.State != z8rv1.TargetSyncing {
		t.Errorf("target %+v before the next reconcile, want still Syncing (the outcome is written by a reconcile)", ts)
	}
	h.mark()
	h.reconcile("r")
	ts := h.get("r").Status.Targets[0]
	if ts.State != z8rv1.TargetSynced || ts.LastSyncKind != "full" || ts.Transfer != nil || ts.ProtectedBase == "" {
		t.Errorf("target %+v after the sync ended, want Synced by one full sync, its base protected, no transfer", ts)
	}
	if cmds := h.mutatedSinceMark("dst"); slices.ContainsFunc(cmds, func(c string) bool { return hasCmd([]string{c}, "zfs recv") }) {
		t.Errorf("the target received again: %q", cmds)
	}
	if dr := h.get("r"); dr.Status.State != z8rv1.TargetSynced {
		t.Errorf("replication state %s, want Synced", dr.Status.State)
	}

	// A snapshot taken while an incremental runs in the background: the
	// reconcile that takes the incremental's outcome (up to the older
	// snapshot) syncs on to the newer one at once.
	gate2 := make(chan struct{})
	h.nodes.beforeTransfer = waitGate(gate2)
	h.clock.Advance(6 * time.Hour)
	h.reconcile("r") // snapshot 1, its incremental in the background
	h.clock.Advance(6 * time.Hour)
	h.reconcile("r") // snapshot 2, taken while it runs
	newest := h.get("r").Status.LastSnapshot
	if ts := h.get("r").Status.Targets[0]; ts.State != z8rv1.TargetSyncing || newest == ts.LastSnapshot {
		t.Fatalf("target %+v, newest %s: want Syncing, behind the newest", ts, newest)
	}
	close(gate2)
	waitIdle()
	h.reconcile("r") // the outcome (up to snapshot 1), then on to snapshot 2
	waitIdle()
	h.reconcile("r")
	if ts := h.get("r").Status.Targets[0]; ts.State != z8rv1.TargetSynced || ts.LastSnapshot != newest || ts.ConsecutiveFailures != 0 {
		t.Errorf("target %+v, want Synced at the newest snapshot %s", ts, newest)
	}
}

// waitGate is a fakeNodes.beforeTransfer that holds every transfer until
// gate is closed (or the transfer is cancelled).
func waitGate(gate <-chan struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
