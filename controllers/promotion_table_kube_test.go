//go:build kube

package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// swap makes dst the source of r and src its target, as kubectl z8r
// promote does.
func (h *drHarness) swap(name, newSrc, oldSrc string, unplanned bool) {
	h.t.Helper()
	h.editSpec(name, func(dr *z8rv1.DatasetReplication) {
		dr.Spec.Source.Node = newSrc
		dr.Spec.Targets = []z8rv1.ReplicationTarget{{Node: oldSrc}}
		dr.Spec.AllowUnplannedFailover = unplanned
	})
}

func (h *drHarness) prop(node, ds, prop string) zfsexec.Property {
	h.t.Helper()
	p, err := h.node(node).ZFS().Get(h.ctx, ds, prop)
	if err != nil {
		h.t.Fatalf("get %s %s on %s: %v", prop, ds, node, err)
	}
	return p[prop]
}

// hasInOrder reports whether cmds contains want as a subsequence.
func hasInOrder(cmds, want []string) bool {
	i := 0
	for _, c := range cmds {
		if i < len(want) && c == want[i] {
			i++
		}
	}
	return i == len(want)
}

// noneOf fails for a command with one of verbs; "destroy" stands for
// destroying a snapshot or filesystem (z8r's own bookmarks move with the
// protected base).
func noneOf(t *testing.T, node string, cmds []string, verbs ...string) {
	t.Helper()
	for _, c := range cmds {
		for _, v := range verbs {
			if strings.HasPrefix(c, "zfs "+v+" ") && !(v == "destroy" && strings.Contains(c, "#")) {
				t.Errorf("%s ran %q", node, c)
			}
		}
	}
}

// unplannedAsked: src replicated to dst, then wrote and snapshotted
// (@mine) what dst never got, went away, and dst's promotion was asked
// for, unplanned.
func unplannedAsked(h *drHarness) {
	h.t.Helper()
	h.dataset("src", "tank/a")
	h.create(rep("r", "src", to("dst")))
	h.reconcile("r")
	if err := h.node("src").Write("tank/a", "late", []byte("written after the last sync")); err != nil {
		h.t.Fatal(err)
	}
	if err := h.node("src").ZFS().Snapshot(h.ctx, "tank/a@mine", nil); err != nil {
		h.t.Fatal(err)
	}
	h.nodes.unreachable["src"] = true
	h.swap("r", "dst", "src", true)
}

// unplannedAway is unplannedAsked with the promotion done.
func unplannedAway(h *drHarness) {
	h.t.Helper()
	unplannedAsked(h)
	h.reconcile("r")
	if p := h.get("r").Status.Promotion; p == nil || p.Phase != z8rv1.PromotionCompleted {
		h.t.Fatalf("promotion %+v, want completed", p)
	}
}

// tablePromotion drives promotions (promotion.go) through
// DatasetReplicationReconciler.Reconcile on fake nodes: the phases, the
// status record, the Events and the commands each node saw.
func tablePromotion(t *testing.T, te *tableEnv) {
	tests := []struct {
		name  string
		setup func(h *drHarness) // ends with h.mark()
		check func(t *testing.T, h *drHarness)
	}{
		{
			name: "planned switchover: freeze, final snapshot, sync, writable",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(time.Minute)
				h.swap("r", "dst", "src", false)
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				dr := h.get("r")
				p := dr.Status.Promotion
				if p == nil || p.Phase != z8rv1.PromotionCompleted || p.Kind != z8rv1.PromotionPlanned || p.Rejoin != z8rv1.RejoinDone {
					t.Fatalf("promotion %+v, want a completed planned one", p)
				}
				final := "z8r-20261130T120100Z"
				if p.FinalSnapshot != final || p.RecoveryPoint != final || p.RecoveryPointTime == nil {
					t.Errorf("final snapshot %q, recovery point %q at %v; want both %s", p.FinalSnapshot, p.RecoveryPoint, p.RecoveryPointTime, final)
				}
				if dr.Status.Source == nil || dr.Status.Source.Node != "dst" {
					t.Errorf("source in force %+v, want dst", dr.Status.Source)
				}
				if got := h.rec.reasons(); !slices.Equal(got, []string{z8rv1.EventPromoted + "/dst"}) {
					t.Errorf("events %v", got)
				}
				src, dst := h.mutatedSinceMark("src"), h.mutatedSinceMark("dst")
				if !hasInOrder(src, []string{
					"zfs set readonly=on tank/a",
					"zfs set z8r.dev:replica-of=dst:tank/a tank/a",
					"zfs snapshot -o z8r.dev:owner=z8r -o z8r.dev:policy=r tank/a@" + final,
				}) {
					t.Errorf("old source: freeze then the final snapshot, got %q", src)
				}
				if !hasInOrder(dst, []string{"zfs set readonly=off tank/a", "zfs set canmount=on tank/a", "zfs inherit z8r.dev:replica-of tank/a"}) {
					t.Errorf("target made writable, mark last: got %q", dst)
				}
				noneOf(t, "src", src, "destroy", "rollback", "rename")
				noneOf(t, "dst", dst, "destroy", "rollback", "rename")
				if v := h.prop("dst", "tank/a", "readonly"); v.Value != "off" {
					t.Errorf("new source readonly %+v", v)
				}
				if v := h.prop("src", "tank/a", replicate.ReplicaOfProp); v.Value != "dst:tank/a" || v.Source != "local" {
					t.Errorf("old source %s = %+v, want dst:tank/a (local)", replicate.ReplicaOfProp, v)
				}
				// The next reconcile runs the new direction: src is in sync.
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				dr = h.get("r")
				if c := meta.FindStatusCondition(dr.Status.Conditions, z8rv1.ConditionReady); c == nil || c.Reason != z8rv1.ReasonAllTargetsSynced {
					t.Errorf("after the switchover Ready %+v, targets %+v", c, dr.Status.Targets)
				}
			},
		},
		{
			name: "a diverged target is refused and nothing changes",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				if err := h.node("dst").ZFS().Snapshot(h.ctx, "tank/a@mine", nil); err != nil {
					h.t.Fatal(err)
				}
				h.clock.Advance(6 * time.Hour)
				h.reconcile("r")
				h.swap("r", "dst", "src", true)
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				dr := h.get("r")
				if p := dr.Status.Promotion; p == nil || p.Phase != z8rv1.PromotionRefused || !strings.Contains(p.Message, "diverged") {
					t.Fatalf("promotion %+v, want Refused because the target diverged", p)
				}
				if c := meta.FindStatusCondition(dr.Status.Conditions, z8rv1.ConditionReady); c == nil || c.Reason != z8rv1.ReasonPromotionRefused {
					t.Errorf("Ready %+v", c)
				}
				if got := h.rec.reasons(); !slices.Equal(got, []string{z8rv1.EventPromotionRefused + "/dst"}) {
					t.Errorf("events %v", got)
				}
				for _, n := range []string{"src", "dst"} {
					if m := h.mutatedSinceMark(n); len(m) > 0 {
						t.Errorf("%s changed: %q", n, m)
					}
				}
			},
		},
		{
			name: "an unreachable old source without allowUnplannedFailover: the promotion waits",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.nodes.unreachable["src"] = true
				h.swap("r", "dst", "src", false)
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				res := h.reconcile("r")
				dr := h.get("r")
				if p := dr.Status.Promotion; p == nil || p.Phase != z8rv1.PromotionWaiting || !strings.Contains(p.Message, "allowUnplannedFailover") {
					t.Fatalf("promotion %+v, want WaitingForSource naming allowUnplannedFailover", p)
				}
				if res.RequeueAfter <= 0 {
					t.Errorf("no retry scheduled: %+v", res)
				}
				if got := h.rec.reasons(); !slices.Equal(got, []string{z8rv1.EventPromotionWaiting + "/src"}) {
					t.Errorf("events %v", got)
				}
				if m := h.mutatedSinceMark("dst"); len(m) > 0 {
					t.Errorf("dst changed while waiting: %q", m)
				}
			},
		},
		{
			name: "unplanned failover, then the old source rejoins with its tail kept aside",
			setup: func(h *drHarness) {
				unplannedAsked(h)
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				dr := h.get("r")
				p := dr.Status.Promotion
				if p == nil || p.Phase != z8rv1.PromotionCompleted || p.Kind != z8rv1.PromotionUnplanned || p.Rejoin != z8rv1.RejoinPending || p.RecoveryPoint != snap0 {
					t.Fatalf("promotion %+v, want a completed unplanned one at %s, rejoin pending", p, snap0)
				}
				if got := h.rec.reasons(); !slices.Equal(got, []string{z8rv1.EventPromoted + "/dst"}) {
					t.Errorf("events %v", got)
				}
				// While src is away its target waits; nothing is sent.
				h.clock.Advance(6 * time.Hour)
				h.reconcile("r")
				if ts := h.get("r").Status.Targets; len(ts) != 1 || ts[0].Node != "src" || ts[0].State != z8rv1.TargetPending {
					t.Errorf("old source target while away %+v", ts)
				}
				// src returns.
				h.nodes.unreachable["src"] = false
				h.mark()
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				dr = h.get("r")
				p = dr.Status.Promotion
				if p.Rejoin != z8rv1.RejoinDone {
					t.Fatalf("rejoin %q (message %q), targets %+v", p.Rejoin, p.Message, dr.Status.Targets)
				}
				if ds, _, ok := snapname.ParseTailName(p.TailAside); !ok || ds != "tank/a" {
					t.Fatalf("tail aside %q", p.TailAside)
				}
				if got := h.snapshotsOf("src", p.TailAside); !slices.Contains(got, "mine") {
					t.Errorf("the aside %s has %v, want @mine kept", p.TailAside, got)
				}
				if ts := dr.Status.Targets[0]; ts.State != z8rv1.TargetSynced || ts.LastSyncKind != "incremental" {
					t.Errorf("old source after rejoin %+v, want synced incrementally", ts)
				}
				if got := h.rec.reasonsOnly(); !slices.Contains(got, z8rv1.EventTailPreserved) || !slices.Contains(got, z8rv1.EventReplicated) {
					t.Errorf("events %v, want TailPreserved and Replicated", got)
				}
				noneOf(t, "src", h.mutatedSinceMark("src"), "destroy", "rollback")
			},
		},
		{
			name: "unplanned failover: writes alone on the old source are kept aside once a receive reveals them",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				if err := h.node("src").Write("tank/a", "late", []byte("written after the last snapshot")); err != nil {
					h.t.Fatal(err)
				}
				h.nodes.unreachable["src"] = true
				h.swap("r", "dst", "src", true)
				h.reconcile("r")
				h.clock.Advance(6 * time.Hour)
				h.nodes.unreachable["src"] = false
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				// No tail snapshot: the receive is tried and refused as
				// modified; nothing of src's is touched.
				h.reconcile("r")
				dr := h.get("r")
				if ts := dr.Status.Targets[0]; ts.State != z8rv1.TargetDiverged {
					t.Fatalf("first try %+v, want the receive refused (Diverged)", ts)
				}
				noneOf(t, "src", h.mutatedSinceMark("src"), "destroy", "rollback", "rename")
				// The next reconcile keeps the writes aside and syncs.
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				dr = h.get("r")
				p := dr.Status.Promotion
				if p.Rejoin != z8rv1.RejoinDone || p.TailAside == "" {
					t.Fatalf("promotion %+v, targets %+v: want the writes aside and the rejoin done", p, dr.Status.Targets)
				}
				// The writes are in the aside's tail snapshot.
				if got := h.snapshotsOf("src", p.TailAside); !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "z8r-tail-") }) {
					t.Errorf("the aside %s has %v, want the tail snapshot holding the writes", p.TailAside, got)
				}
				noneOf(t, "src", h.mutatedSinceMark("src"), "destroy", "rollback")
			},
		},
		{
			name: "a reconcile that read the rejoin's earlier status keeps no second tail",
			setup: func(h *drHarness) {
				unplannedAway(h)
				h.nodes.unreachable["src"] = false
				h.clock.Advance(time.Minute)
				h.reconcile("r") // tail aside, rejoined
				h.clock.Advance(6 * time.Hour)
				h.reconcile("r") // src receives a newer snapshot than the tail's base
				dr := h.get("r")
				if p := dr.Status.Promotion; p.Rejoin != z8rv1.RejoinDone || p.TailAside == "" || dr.Status.Targets[0].LastSnapshot == snap0 {
					h.t.Fatalf("promotion %+v, targets %+v: want rejoined with a tail aside, then a snapshot after %s received", p, dr.Status.Targets, snap0)
				}
				// What the reconcile queued by the status write made before
				// the tail was moved would read from a cache that trails.
				dr.Status.Promotion.Rejoin = z8rv1.RejoinPending
				if err := h.c.Status().Update(h.ctx, dr); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				dr := h.get("r")
				if p := dr.Status.Promotion; p.Rejoin != z8rv1.RejoinDone {
					t.Errorf("rejoin %q (message %q), want Done again", p.Rejoin, p.Message)
				}
				if ts := dr.Status.Targets[0]; ts.State != z8rv1.TargetSynced {
					t.Errorf("old source %+v, want still synced", ts)
				}
				if got := h.snapshotsOf("src", "tank/a"); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "z8r-tail-") }) {
					t.Errorf("src:tank/a has %v: a second tail snapshot", got)
				}
				noneOf(t, "src", h.mutatedSinceMark("src"), "destroy", "rollback", "rename", "snapshot", "clone")
			},
		},
		{
			name: "a crash after the tail's rename: the next rejoin clones and promotes from the aside",
			setup: func(h *drHarness) {
				unplannedAway(h)
				h.nodes.unreachable["src"] = false
				// PreserveTail's first two steps, as a run that died after
				// the rename left them, with the aside recorded.
				z := h.node("src").ZFS()
				at := h.clock.Now()
				aside := snapname.TailName("tank/a", at)
				if err := replicate.Freeze(h.ctx, z, "tank/a", "dst:tank/a"); err != nil {
					h.t.Fatal(err)
				}
				if err := z.Snapshot(h.ctx, "tank/a@"+snapname.TailSnapshotName(at), nil); err != nil {
					h.t.Fatal(err)
				}
				_ = z.Unmount(h.ctx, "tank/a")
				if err := z.Rename(h.ctx, "tank/a", aside); err != nil {
					h.t.Fatal(err)
				}
				dr := h.get("r")
				dr.Status.Promotion.TailAside = aside
				if err := h.c.Status().Update(h.ctx, dr); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.clock.Advance(6 * time.Hour) // dst has a snapshot src lacks
				h.reconcile("r")
				dr := h.get("r")
				p := dr.Status.Promotion
				if p.Rejoin != z8rv1.RejoinDone {
					t.Fatalf("rejoin %q (message %q), targets %+v", p.Rejoin, p.Message, dr.Status.Targets)
				}
				if ts := dr.Status.Targets[0]; ts.State != z8rv1.TargetSynced || ts.LastSyncKind != "incremental" {
					t.Errorf("old source after rejoin %+v, want synced incrementally from the base", ts)
				}
				if got := h.snapshotsOf("src", p.TailAside); !slices.Contains(got, "mine") {
					t.Errorf("the aside %s has %v, want @mine kept", p.TailAside, got)
				}
				if !hasInOrder(h.mutatedSinceMark("src"), []string{"zfs promote tank/a"}) {
					t.Errorf("src: want the clone promoted, got %q", h.mutatedSinceMark("src"))
				}
				noneOf(t, "src", h.mutatedSinceMark("src"), "destroy", "rollback")
			},
		},
		{
			name: "deleted before the old source rejoined: its holds are named in a Warning",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.nodes.unreachable["src"] = true
				h.swap("r", "dst", "src", true)
				h.reconcile("r")
				if err := h.c.Delete(h.ctx, h.get("r")); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				var leaked []string
				found := false
				for _, e := range h.rec.got {
					if e.Reason == z8rv1.EventHoldsLeaked && e.Related == "src" {
						leaked = append(leaked, e.Note)
						found = found || (strings.Contains(e.Note, snapname.HoldTag(policy.ID("dst", "tank/a"))) && strings.Contains(e.Note, "never rejoined"))
					}
				}
				if !found {
					t.Errorf("no HoldsLeaked on src naming the old direction's base tag: %q", leaked)
				}
				var dr z8rv1.DatasetReplication
				if err := h.c.Get(h.ctx, client.ObjectKey{Name: "r"}, &dr); err == nil {
					t.Errorf("the replication is still there with finalizers %v", dr.Finalizers)
				}
			},
		},
		{
			name: "cancel before the target is writable: the old source is writable again",
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(time.Minute)
				h.node("dst").FailNth(fakezfs.Prefix("zfs", "recv"), 1, nil)
				h.swap("r", "dst", "src", false)
				h.reconcile("r") // frozen, final snapshot taken, its send failed
				if p := h.get("r").Status.Promotion; p == nil || p.Phase != z8rv1.PromotionFinalSync {
					h.t.Fatalf("promotion %+v, want stuck in FinalSync", p)
				}
				h.editSpec("r", func(dr *z8rv1.DatasetReplication) {
					dr.Spec.Source.Node = "src"
					dr.Spec.Targets = []z8rv1.ReplicationTarget{{Node: "dst"}}
				})
				h.mark()
			},
			check: func(t *testing.T, h *drHarness) {
				h.reconcile("r")
				dr := h.get("r")
				if p := dr.Status.Promotion; p == nil || p.Phase != z8rv1.PromotionCancelled {
					t.Fatalf("promotion %+v, want Cancelled", p)
				}
				if got := h.rec.reasonsOnly(); !slices.Equal(got, []string{z8rv1.EventPromotionCancelled}) {
					t.Errorf("events %v", got)
				}
				if v := h.prop("src", "tank/a", "readonly"); v.Value != "off" {
					t.Errorf("src readonly %+v after the cancel", v)
				}
				if v := h.prop("src", "tank/a", replicate.ReplicaOfProp); v.Source == "local" {
					t.Errorf("src still marked a replica: %+v", v)
				}
				// Replication goes on as before.
				h.clock.Advance(time.Minute)
				h.reconcile("r")
				if c := meta.FindStatusCondition(h.get("r").Status.Conditions, z8rv1.ConditionReady); c == nil || c.Reason != z8rv1.ReasonAllTargetsSynced {
					t.Errorf("after the cancel Ready %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newDRHarness(t, te, "src", "dst")
			tt.setup(h)
			tt.check(t, h)
			seenReasons(h.rec)
		})
	}
}
