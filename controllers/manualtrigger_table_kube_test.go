//go:build kube

package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
)

func (h *drHarness) trigger(name, value string) {
	h.t.Helper()
	h.editSpec(name, func(dr *z8rv1.DatasetReplication) {
		dr.Spec.Trigger = &z8rv1.ReplicationTrigger{Manual: value}
	})
}

func snapshotCmds(cmds []string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, "zfs snapshot ") {
			n++
		}
	}
	return n
}

// tableManualTrigger: spec.trigger.manual takes exactly one snapshot per
// value, outside the schedule, retries its sync without another snapshot,
// and reports the value in status.lastManualSync once every target has it.
func tableManualTrigger(t *testing.T, te *tableEnv) {
	tests := []struct {
		name  string
		check func(t *testing.T, h *drHarness)
	}{
		{
			name: "one snapshot and one sync per value",
			check: func(t *testing.T, h *drHarness) {
				h.clock.Advance(time.Minute) // not due (6h schedule)
				h.mark()
				h.trigger("r", "1")
				h.reconcile("r")
				dr := h.get("r")
				if dr.Status.LastManualSync != "1" || dr.Status.ManualSnapshot != "z8r-20261130T120100Z" {
					t.Fatalf("status lastManualSync %q manualSnapshot %q", dr.Status.LastManualSync, dr.Status.ManualSnapshot)
				}
				if n := snapshotCmds(h.mutatedSinceMark("src")); n != 1 {
					t.Errorf("%d snapshots taken, want 1", n)
				}
				if got := h.snapshotsOf("dst", "tank/a"); !slices.Contains(got, "z8r-20261130T120100Z") {
					t.Errorf("target snapshots %v lack the manual one", got)
				}
				// The same value again: nothing more.
				h.mark()
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				if n := snapshotCmds(h.mutatedSinceMark("src")); n != 0 {
					t.Errorf("the same trigger value took %d more snapshots", n)
				}
			},
		},
		{
			name: "a failed sync is retried without another snapshot",
			check: func(t *testing.T, h *drHarness) {
				h.clock.Advance(time.Minute)
				h.mark()
				h.node("dst").FailNth(fakezfs.Prefix("zfs", "recv"), 1, nil)
				h.trigger("r", "again")
				h.reconcile("r")
				dr := h.get("r")
				if dr.Status.LastManualSync != "" || dr.Status.ManualTrigger != "again" {
					t.Fatalf("after a failed sync: lastManualSync %q manualTrigger %q", dr.Status.LastManualSync, dr.Status.ManualTrigger)
				}
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				dr = h.get("r")
				if dr.Status.LastManualSync != "again" {
					t.Fatalf("after the retry lastManualSync %q, targets %+v", dr.Status.LastManualSync, dr.Status.Targets)
				}
				if n := snapshotCmds(h.mutatedSinceMark("src")); n != 1 {
					t.Errorf("%d snapshots for one trigger value, want 1", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newDRHarness(t, te, "src", "dst")
			h.dataset("src", "tank/a")
			h.create(rep("r", "src", to("dst")))
			h.reconcile("r")
			tt.check(t, h)
			seenReasons(h.rec)
		})
	}
}
