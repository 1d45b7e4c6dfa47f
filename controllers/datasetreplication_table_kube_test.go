//go:build kube

package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// drHarness is one DatasetReplication case's world.
type drHarness struct {
	t     *testing.T
	ctx   context.Context
	c     client.Client
	nodes *fakeNodes
	rec   *recorder
	clock *clocktest.Fake
	r     *DatasetReplicationReconciler
	marks map[string]int // per node, commands before the checked reconcile
	// metrics is the registry of r.Metrics.
	metrics *prometheus.Registry
}

// counter returns the value of a counter of r.Metrics with the given
// label values (in any order), 0 when it was never set.
func (h *drHarness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			slices.Sort(vals)
			want := slices.Clone(labels)
			slices.Sort(want)
			if slices.Equal(vals, want) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

var tableStart = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// newDRHarness is a DatasetReplication case's world: fake nodes, the
// controller's clock at tableStart, a recorder and fresh metrics; its
// replications are removed when the case ends.
func newDRHarness(t *testing.T, te *tableEnv, nodes ...string) *drHarness {
	h := &drHarness{t: t, ctx: context.Background(), c: te.client, nodes: newFakeNodes(nodes...), rec: &recorder{},
		clock: clocktest.New(tableStart), marks: map[string]int{}, metrics: prometheus.NewRegistry()}
	h.r = &DatasetReplicationReconciler{Client: te.client, Recorder: NewLimitedRecorder(h.rec), Agents: h.nodes, Clock: h.clock,
		Metrics: NewMetrics(h.metrics)}
	t.Cleanup(func() { cleanupReplications(t, te.client) })
	return h
}

func (h *drHarness) node(name string) *fakezfs.Node { return h.nodes.nodes[name] }

// dataset creates a filesystem with some data on a node.
func (h *drHarness) dataset(node, ds string) {
	h.t.Helper()
	if err := h.node(node).ZFS().CreateFilesystem(h.ctx, ds, zfsexec.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.node(node).Write(ds, "data", []byte("hello "+node)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *drHarness) create(dr *z8rv1.DatasetReplication) {
	h.t.Helper()
	if err := h.c.Create(h.ctx, dr); err != nil {
		h.t.Fatal(err)
	}
}

func (h *drHarness) get(name string) *z8rv1.DatasetReplication {
	h.t.Helper()
	var dr z8rv1.DatasetReplication
	if err := h.c.Get(h.ctx, client.ObjectKey{Name: name}, &dr); err != nil {
		h.t.Fatal(err)
	}
	return &dr
}

// reconcile runs one reconcile of name and fails the test on an error.
func (h *drHarness) reconcile(name string) reconcile.Result {
	h.t.Helper()
	res, err := h.r.Reconcile(h.ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: name}})
	if err != nil {
		h.t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

// mark starts the checked part of a case: Events and commands before it
// are not compared.
func (h *drHarness) mark() {
	h.rec.reset()
	for n, node := range h.nodes.nodes {
		h.marks[n] = len(node.Commands())
	}
}

func (h *drHarness) mutatedSinceMark(node string) []string {
	return mutating(h.node(node).Commands()[h.marks[node]:])
}

func (h *drHarness) editSpec(name string, edit func(*z8rv1.DatasetReplication)) {
	h.t.Helper()
	dr := h.get(name)
	edit(dr)
	if err := h.c.Update(h.ctx, dr); err != nil {
		h.t.Fatal(err)
	}
}

// snapshotsOf lists the short names of ds's snapshots on node.
func (h *drHarness) snapshotsOf(node, ds string) []string {
	h.t.Helper()
	l, err := replicate.List(h.ctx, h.node(node).ZFS(), ds)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, s := range l.Snapshots {
		if s.IsSnapshot() {
			out = append(out, s.ShortName())
		}
	}
	return out
}

func rep(name, src string, targets ...z8rv1.ReplicationTarget) *z8rv1.DatasetReplication {
	return &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: src, Dataset: "tank/a"}, Targets: targets}}
}

func to(node string) z8rv1.ReplicationTarget { return z8rv1.ReplicationTarget{Node: node} }

// Snapshot names of the cases: the controller's clock at tableStart and
// 6h (the default schedule) later.
const (
	snap0 = "z8r-20261130T120000Z"
	snap1 = "z8r-20261130T180000Z"
)

// tableDatasetReplication drives DatasetReplicationReconciler.Reconcile
// over a table: objects and node state set up (with injected faults) →
// the status, the Events and the mutating argv each node saw in the
// checked reconcile (after mark).
func tableDatasetReplication(t *testing.T, te *tableEnv) {
	type want struct {
		err        string            // substring of Reconcile's error
		gone       bool              // the object no longer exists
		ready      string            // Ready condition reason
		state      string            // aggregate status.state
		targets    map[string]string // node -> target state
		events     []string          // reasons (Reason/related node), in order
		cmds       map[string][]string
		noCmdsOn   []string // nodes that must have seen no mutating command
		check      func(t *testing.T, h *drHarness)
		skipStatus bool
	}
	var releaseOther func() // a transfer slot taken by a case's setup
	tests := []struct {
		name      string
		nodes     []string
		setup     func(h *drHarness) // objects, node state, earlier reconciles, then h.mark()
		conflicts [2]int             // status and object updates failed with a conflict first
		run       string             // the replication reconciled after the mark
		want      want
	}{
		{
			name:  "first full sync",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, state: z8rv1.TargetSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst"},
				cmds: map[string][]string{
					"src": {
						"zfs snapshot -o z8r.dev:owner=z8r -o z8r.dev:policy=r tank/a@" + snap0,
						"zfs hold " + stepTag("dst") + " tank/a@" + snap0,
						"zfs hold " + baseTag("dst") + " tank/a@" + snap0,
						"zfs bookmark tank/a@" + snap0 + " tank/a#" + baseTag("dst") + ":" + snap0,
						"zfs release " + stepTag("dst") + " tank/a@" + snap0,
					},
					"dst": {
						"zfs recv -u -s -o canmount=noauto -o readonly=on tank/a",
						"zfs set canmount=noauto tank/a",
						"zfs set readonly=on tank/a",
						"zfs set z8r.dev:replica-of=src:tank/a tank/a",
						// The hold and the ownership mark run side by side.
						anyOrder(
							"zfs hold "+lastTag("dst")+" tank/a@"+snap0,
							"zfs set z8r.dev:owner=z8r tank/a@"+snap0,
							"zfs set z8r.dev:policy=r tank/a@"+snap0,
						),
					},
				},
				check: func(t *testing.T, h *drHarness) {
					ts := h.get("r").Status.Targets[0]
					if ts.LastSyncKind != "full" || ts.LastSnapshot != snap0 || ts.ProtectedBase != snap0 {
						t.Errorf("target status %+v, want a full sync to %s, protected", ts, snap0)
					}
					if got := h.snapshotsOf("dst", "tank/a"); !slices.Equal(got, []string{snap0}) {
						t.Errorf("target snapshots %v, want [%s]", got, snap0)
					}
				}},
		},
		{
			name:  "incremental after the schedule",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(6 * time.Hour)
				if err := h.node("src").Write("tank/a", "more", []byte("more")); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					ts := h.get("r").Status.Targets[0]
					if ts.LastSyncKind != "incremental" || ts.LastSnapshot != snap1 || ts.ProtectedBase != snap1 {
						t.Errorf("target status %+v, want an incremental sync to %s, protected", ts, snap1)
					}
					if got := h.snapshotsOf("dst", "tank/a"); !slices.Equal(got, []string{snap0, snap1}) {
						t.Errorf("target snapshots %v, want [%s %s]", got, snap0, snap1)
					}
				}},
		},
		{
			name:  "not due: nothing taken, nothing sent",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(time.Hour)
				h.mark()
			},
			run: "r",
			// Nothing is taken or sent; the base's protection is re-asserted.
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				cmds: map[string][]string{"src": reprotect("dst", snap0), "dst": nil}},
		},
		{
			name:  "target diverged: reported, nothing destroyed",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				if err := h.node("dst").ZFS().Snapshot(h.ctx, "tank/a@mine", nil); err != nil {
					h.t.Fatal(err)
				}
				h.clock.Advance(6 * time.Hour)
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, state: z8rv1.TargetDiverged, targets: map[string]string{"dst": z8rv1.TargetDiverged},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventTargetDiverged + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					for _, c := range h.mutatedSinceMark("dst") {
						for _, bad := range []string{"destroy", "rollback", "receive", "recv", "rename"} {
							if strings.HasPrefix(c, "zfs "+bad) {
								t.Errorf("diverged target changed: %s", c)
							}
						}
					}
					if got := h.snapshotsOf("dst", "tank/a"); !slices.Equal(got, []string{snap0, "mine"}) {
						t.Errorf("target snapshots %v, want [%s mine] kept", got, snap0)
					}
				}},
		},
		{
			name:  "rollbackDiverged moves the target aside and receives afresh",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", z8rv1.ReplicationTarget{Node: "dst", RollbackDiverged: true}))
				h.reconcile("r")
				if err := h.node("dst").ZFS().Snapshot(h.ctx, "tank/a@mine", nil); err != nil {
					h.t.Fatal(err)
				}
				h.clock.Advance(6 * time.Hour)
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventTargetMovedAside + "/dst", z8rv1.EventReplicated + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					ts := h.get("r").Status.Targets[0]
					if ts.MovedAside == "" || ts.LastSyncKind != "full" {
						t.Fatalf("target status %+v, want movedAside set and a full sync", ts)
					}
					if got := h.snapshotsOf("dst", ts.MovedAside); !slices.Contains(got, "mine") {
						t.Errorf("moved-aside %s has snapshots %v, want the target's own kept", ts.MovedAside, got)
					}
					for _, c := range h.mutatedSinceMark("dst") {
						if strings.HasPrefix(c, "zfs destroy") || strings.HasPrefix(c, "zfs rollback") {
							t.Errorf("moving aside destroyed or rolled back: %s", c)
						}
					}
				}},
		},
		{
			name:  "source unavailable",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.nodes.unreachable["src"] = true
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonSourceUnavailable, state: z8rv1.TargetFailed,
				events: []string{z8rv1.EventSourceUnavailable}, noCmdsOn: []string{"src", "dst"}},
		},
		{
			name:  "source dataset missing",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run:  "r",
			want: want{ready: z8rv1.ReasonSourceFailed, state: z8rv1.TargetFailed, noCmdsOn: []string{"src", "dst"}},
		},
		{
			name:  "snapshot command fails",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.node("src").FailNth(fakezfs.Prefix("zfs", "snapshot"), 1, errors.New("injected: out of space"))
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonSourceFailed, state: z8rv1.TargetFailed,
				events: []string{z8rv1.EventSnapshotFailed}, noCmdsOn: []string{"dst"}},
		},
		{
			name:  "receive fails on the target",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.node("dst").FailNth(fakezfs.Prefix("zfs", "recv"), 1, errors.New("injected: I/O error"))
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, state: z8rv1.TargetFailed, targets: map[string]string{"dst": z8rv1.TargetFailed},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicationFailed + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					if ts := h.get("r").Status.Targets[0]; ts.ConsecutiveFailures != 1 || !strings.Contains(ts.LastError, "injected") {
						t.Errorf("target status %+v, want one failure naming the error", ts)
					}
					if n := h.counter("z8r_sync_failures_total", "r", "dst:tank/a", failSyncFailed); n != 1 {
						t.Errorf("sync failures metric %v, want 1", n)
					}
				}},
		},
		{
			name:  "unreachable target while another target syncs",
			nodes: []string{"src", "dst1", "dst2"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.nodes.unreachable["dst1"] = true
				h.create(rep("r", "src", to("dst1"), to("dst2")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, state: z8rv1.TargetFailed,
				targets:  map[string]string{"dst1": z8rv1.TargetFailed, "dst2": z8rv1.TargetSynced},
				events:   []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicationFailed + "/dst1", z8rv1.EventReplicated + "/dst2"},
				noCmdsOn: []string{"dst1"}},
		},
		{
			name:  "target host key not pinned yet: pending",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.nodes.keyUnknown["dst"] = true
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, state: z8rv1.TargetPending, targets: map[string]string{"dst": z8rv1.TargetPending},
				events: []string{z8rv1.EventSnapshotCreated}, noCmdsOn: []string{"dst"}},
		},
		{
			name:  "conflict: a second replication of one dataset is refused",
			nodes: []string{"src", "dst", "dst2"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.create(rep("r2", "src", to("dst2")))
				h.mark()
			},
			run: "r2",
			want: want{ready: z8rv1.ReasonConflict, state: z8rv1.TargetFailed,
				events: []string{z8rv1.EventReplicationConflict}, noCmdsOn: []string{"src", "dst", "dst2"}},
		},
		{
			name:  "removed target keeps its base for the grace period",
			nodes: []string{"src", "dst1", "dst2"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst1"), to("dst2")))
				h.reconcile("r")
				h.editSpec("r", func(dr *z8rv1.DatasetReplication) { dr.Spec.Targets = dr.Spec.Targets[:1] })
				h.clock.Advance(time.Minute)
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst1": z8rv1.TargetSynced, "dst2": z8rv1.TargetSynced},
				cmds: map[string][]string{"src": reprotect("dst1", snap0), "dst1": nil, "dst2": nil},
				check: func(t *testing.T, h *drHarness) {
					for _, ts := range h.get("r").Status.Targets {
						if (ts.Node == "dst2") != (ts.RemovedAt != nil) {
							t.Errorf("target %s removedAt %v", ts.Node, ts.RemovedAt)
						}
					}
				}},
		},
		{
			name:  "removed target released after the grace period",
			nodes: []string{"src", "dst1", "dst2"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst1"), to("dst2")))
				h.reconcile("r")
				h.editSpec("r", func(dr *z8rv1.DatasetReplication) { dr.Spec.Targets = dr.Spec.Targets[:1] })
				h.reconcile("r")
				h.clock.Advance(DefaultRemovedTargetGrace + time.Second)
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst1": z8rv1.TargetSynced},
				events:   []string{z8rv1.EventTargetRemoved},
				noCmdsOn: []string{"dst1"},
				check: func(t *testing.T, h *drHarness) {
					if n := len(h.get("r").Status.Targets); n != 1 {
						t.Errorf("%d targets in status, want the removed one gone", n)
					}
					if !hasCmd(h.mutatedSinceMark("src"), "zfs release") || !hasCmd(h.mutatedSinceMark("dst2"), "zfs release") {
						t.Errorf("source %v / removed target %v did not release", h.mutatedSinceMark("src"), h.mutatedSinceMark("dst2"))
					}
				}},
		},
		{
			name:  "deletion: the finalizer releases the holds",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				if err := h.c.Delete(h.ctx, h.get("r")); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{gone: true,
				check: func(t *testing.T, h *drHarness) {
					for _, n := range []string{"src", "dst"} {
						cmds := h.mutatedSinceMark(n)
						if !hasCmd(cmds, "zfs release") {
							t.Errorf("%s: %v, want its hold released", n, cmds)
						}
						for _, c := range cmds {
							if strings.HasPrefix(c, "zfs destroy") {
								t.Errorf("%s: deletion destroyed %s", n, c)
							}
						}
					}
				}},
		},
		{
			name:  "deletion with the source node gone: HoldsLeaked",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.nodes.unknown["src"] = true
				if err := h.c.Delete(h.ctx, h.get("r")); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{gone: true, events: []string{z8rv1.EventHoldsLeaked}, noCmdsOn: []string{"src"},
				check: func(t *testing.T, h *drHarness) {
					if n := h.rec.got[0].Note; !strings.Contains(n, baseTag("dst")) {
						t.Errorf("HoldsLeaked note %q does not name %s", n, baseTag("dst"))
					}
				}},
		},
		{
			name:  "deletion with the source unreachable keeps the finalizer",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.nodes.unreachable["src"] = true
				if err := h.c.Delete(h.ctx, h.get("r")); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{skipStatus: true, events: []string{z8rv1.EventSourceUnavailable}, noCmdsOn: []string{"src", "dst"},
				check: func(t *testing.T, h *drHarness) {
					if dr := h.get("r"); !controllerutil.ContainsFinalizer(dr, finalizerReleaseHolds) {
						t.Errorf("finalizer removed with the holds unreleased: %v", dr.Finalizers)
					}
				}},
		},
		{
			name:  "invalid schedule: InvalidSpec and an Event, nothing runs",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				dr := rep("r", "src", to("dst"))
				dr.Spec.Schedule = "every tuesday"
				h.create(dr)
				h.mark()
			},
			run:  "r",
			want: want{ready: z8rv1.ReasonInvalidSpec, events: []string{z8rv1.EventInvalidAnnotation}, noCmdsOn: []string{"src", "dst"}},
		},
		{
			name:  "invalid retention: InvalidSpec and an Event, nothing runs",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				dr := rep("r", "src", to("dst"))
				dr.Spec.Retention = "keep everything"
				h.create(dr)
				h.mark()
			},
			run:  "r",
			want: want{ready: z8rv1.ReasonInvalidSpec, events: []string{z8rv1.EventInvalidAnnotation}, noCmdsOn: []string{"src", "dst"}},
		},
		{
			// A target retention that does not parse is reported like the
			// source's (it used to disable that target's pruning silently).
			name:  "invalid per-target retention: InvalidSpec and an Event, nothing runs",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", z8rv1.ReplicationTarget{Node: "dst", Retention: "keep everything"}))
				h.mark()
			},
			run:  "r",
			want: want{ready: z8rv1.ReasonInvalidSpec, events: []string{z8rv1.EventInvalidAnnotation}, noCmdsOn: []string{"src", "dst"}},
		},
		{
			name:  "source retention prunes old snapshots, never the base",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				dr := rep("r", "src", z8rv1.ReplicationTarget{Node: "dst", Retention: "1x1d(keep=all) | 7x1d | 4x1w"})
				dr.Spec.Retention = "1x6h"
				dr.Spec.Schedule = "6h"
				h.create(dr)
				for range 3 {
					h.reconcile("r")
					h.clock.Advance(6 * time.Hour)
				}
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst", z8rv1.EventPruned},
				check: func(t *testing.T, h *drHarness) {
					if !hasCmd(h.mutatedSinceMark("src"), "zfs destroy tank/a@") {
						t.Errorf("source ran %q, want a snapshot pruned", h.mutatedSinceMark("src"))
					}
					for _, c := range h.mutatedSinceMark("src") {
						if strings.HasPrefix(c, "zfs destroy") && strings.Contains(c, h.get("r").Status.Targets[0].ProtectedBase) {
							t.Errorf("pruned the protected base: %s", c)
						}
					}
				}},
		},
		{
			name:  "target prune fails: PruneFailed, the sync still counts",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				dr := rep("r", "src", z8rv1.ReplicationTarget{Node: "dst", Retention: "last=1"})
				h.create(dr)
				h.reconcile("r")
				h.clock.Advance(6 * time.Hour)
				h.node("dst").FailNth(fakezfs.Prefix("zfs", "destroy"), 1, errors.New("injected: dataset is busy"))
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst", z8rv1.EventPruneFailed + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					if got := h.snapshotsOf("dst", "tank/a"); !slices.Equal(got, []string{snap0, snap1}) {
						t.Errorf("target snapshots %v, want both kept after the failed prune", got)
					}
				}},
		},
		{
			name:  "interrupted receive that no longer applies: ResumeAbandoned",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(6 * time.Hour)
				if err := h.node("src").Write("tank/a", "more", make([]byte, 64<<10)); err != nil {
					h.t.Fatal(err)
				}
				// The stream, not the size estimate before it (send -n).
				realSend := func(argv []string) bool {
					return fakezfs.Prefix("zfs", "send")(argv) && !slices.Contains(argv, "-n")
				}
				h.node("src").CutNth(realSend, 1, 1024, errors.New("injected: connection reset"))
				h.reconcile("r") // the incremental to snap1 is cut: partial state on dst
				// snap1 goes from the source (its step hold released by hand).
				sz := h.node("src").ZFS()
				if err := sz.Release(h.ctx, stepTag("dst"), "tank/a@"+snap1); err != nil {
					h.t.Fatal(err)
				}
				if err := sz.Destroy(h.ctx, "tank/a@"+snap1, zfsexec.DestroyOptions{}); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, targets: map[string]string{"dst": z8rv1.TargetFailed},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventResumeAbandoned + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					if !hasCmd(h.mutatedSinceMark("dst"), "zfs recv -A tank/a") {
						t.Errorf("target ran %q, want the partial receive discarded", h.mutatedSinceMark("dst"))
					}
				}},
		},
		{
			name:  "a running transfer cancelled by suspending the replication: TransferCancelled, step holds released",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.r.ProgressInterval = 20 * time.Millisecond // the watch reads the object this often
				h.nodes.beforeTransfer = func(ctx context.Context) error {
					// The operator suspends the replication while the
					// transfer runs; it runs until cancelled.
					h.editSpec("r", func(dr *z8rv1.DatasetReplication) { dr.Spec.Suspend = true })
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(10 * time.Second):
						return errors.New("the transfer was not cancelled within 10 s")
					}
				}
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonTargetsNotSynced, targets: map[string]string{"dst": z8rv1.TargetPending},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventTransferCancelled + "/dst"},
				check: func(t *testing.T, h *drHarness) {
					ts := h.get("r").Status.Targets[0]
					if !strings.Contains(ts.LastError, "suspended") || ts.ConsecutiveFailures != 0 || ts.Transfer != nil {
						t.Errorf("target status %+v, want the cancel as its last error, no failure counted, no transfer", ts)
					}
					src := h.mutatedSinceMark("src")
					if !hasCmd(src, "zfs hold "+stepTag("dst")) || !hasCmd(src, "zfs release "+stepTag("dst")+" tank/a@"+snap0) {
						t.Errorf("source ran %q, want the step hold placed and released", src)
					}
					if hasCmd(src, "zfs hold "+baseTag("dst")) {
						t.Errorf("source ran %q: a base hold for a target that received nothing", src)
					}
					if ok, _ := h.node("dst").ZFS().Exists(h.ctx, "tank/a"); ok {
						t.Error("the target has a dataset after the cancelled first sync")
					}
				}},
		},
		{
			name:  "snapshot named in the future: FutureSnapshot, schedule not frozen",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				if _, err := replicate.TakeSnapshot(h.ctx, h.node("src").ZFS(), "tank/a", "z8r", "r", tableStart.Add(48*time.Hour)); err != nil {
					h.t.Fatal(err)
				}
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			run: "r",
			want: want{skipStatus: true,
				events: []string{z8rv1.EventFutureSnapshot, z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst"}},
		},
		{
			name:  "API conflicts on status writes are retried",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			conflicts: [2]int{2, 0},
			run:       "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventReplicated + "/dst"}},
		},
		{
			name:  "API conflict adding the finalizer: error, nothing runs",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.mark()
			},
			conflicts: [2]int{0, 1},
			run:       "r",
			want:      want{err: "injected", skipStatus: true, noCmdsOn: []string{"src", "dst"}},
		},
		{
			name:  "a steady reconcile (nothing due, nothing to send) writes no status",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.reconcile("r")
				h.clock.Advance(time.Minute)
				h.reconcile("r") // the first status after the sync, if any was pending
				h.mark()
			},
			run: "r",
			want: want{ready: z8rv1.ReasonAllTargetsSynced, state: z8rv1.TargetSynced, targets: map[string]string{"dst": z8rv1.TargetSynced},
				check: func(t *testing.T, h *drHarness) {
					writes := 0
					h.r.Client = interceptor.NewClient(te.client, interceptor.Funcs{
						SubResourceUpdate: func(ctx context.Context, cl client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
							writes++
							return cl.SubResource(sub).Update(ctx, obj, opts...)
						}})
					defer func() { h.r.Client = te.client }()
					h.clock.Advance(time.Minute)
					h.reconcile("r")
					if writes != 0 {
						t.Errorf("%d status writes by a reconcile that changed nothing, want 0", writes)
					}
					// A change is written: the next snapshot is due.
					h.clock.Advance(6 * time.Hour)
					h.reconcile("r")
					if writes == 0 {
						t.Error("no status write after a new snapshot and sync")
					}
				}},
		},
		{
			name:  "a node at its transfer limit: the sync waits its turn, holding and sending nothing",
			nodes: []string{"src", "dst"},
			setup: func(h *drHarness) {
				h.dataset("src", "tank/a")
				h.create(rep("r", "src", to("dst")))
				h.r.slots = newTransferSlots(TransferLimits{PerNode: 1})
				var err error
				if releaseOther, err = h.r.slots.acquire("another/transfer", nil, "dst", "elsewhere"); err != nil {
					h.t.Fatal(err)
				}
				h.mark()
			},
			run: "r",
			want: want{skipStatus: true, events: []string{z8rv1.EventSnapshotCreated}, noCmdsOn: []string{"dst"},
				cmds: map[string][]string{"src": {"zfs snapshot -o z8r.dev:owner=z8r -o z8r.dev:policy=r tank/a@" + snap0}},
				check: func(t *testing.T, h *drHarness) {
					ts := h.get("r").Status.Targets[0]
					if !isQueued(ts) || ts.ConsecutiveFailures != 0 || !strings.Contains(ts.LastError, "node dst runs 1 transfers (limit 1)") {
						t.Errorf("target %+v, want Pending, queued for dst's slot, no failure counted", ts)
					}
					h.mark()
					if res := h.reconcile("r"); res.RequeueAfter != retryQueued {
						t.Errorf("queued: requeue after %v, want %v", res.RequeueAfter, retryQueued)
					}
					// Still queued: the sync is not even started.
					if got := h.node("dst").Commands()[h.marks["dst"]:]; len(got) > 0 {
						t.Errorf("dst ran %q while it waited", got)
					}
					if got := h.mutatedSinceMark("src"); len(got) > 0 {
						t.Errorf("src ran %q while the target waited", got)
					}
					releaseOther()
					h.reconcile("r")
					if ts := h.get("r").Status.Targets[0]; ts.State != z8rv1.TargetSynced || ts.LastSyncKind != "full" || ts.LastError != "" {
						t.Errorf("after the slot freed: %+v, want a full sync", ts)
					}
					if h.r.slots.total != 0 {
						t.Errorf("%d transfers still counted after the sync", h.r.slots.total)
					}
				}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			inj := &conflicts{status: tt.conflicts[0], spec: tt.conflicts[1]}
			h := newDRHarness(t, te, tt.nodes...)
			tt.setup(h)
			h.r.Client = interceptor.NewClient(te.client, inj.funcs())

			_, err := h.r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: tt.run}})
			h.r.Client = te.client
			if tt.want.err == "" && err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if tt.want.err != "" && (err == nil || !strings.Contains(err.Error(), tt.want.err)) {
				t.Fatalf("reconcile error %v, want one containing %q", err, tt.want.err)
			}
			if n := tt.conflicts[0] + tt.conflicts[1]; inj.fired != n {
				t.Errorf("injected %d conflicts, want %d", inj.fired, n)
			}

			var dr z8rv1.DatasetReplication
			err = te.client.Get(ctx, client.ObjectKey{Name: tt.run}, &dr)
			if tt.want.gone {
				if err == nil {
					t.Errorf("object still exists with finalizers %v", dr.Finalizers)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if !tt.want.skipStatus {
				if c := meta.FindStatusCondition(dr.Status.Conditions, z8rv1.ConditionReady); c == nil || c.Reason != tt.want.ready {
					t.Errorf("Ready condition %+v, want reason %s", c, tt.want.ready)
				}
				if tt.want.state != "" && dr.Status.State != tt.want.state {
					t.Errorf("state %q, want %q", dr.Status.State, tt.want.state)
				}
				got := map[string]string{}
				for _, ts := range dr.Status.Targets {
					got[ts.Node] = ts.State
				}
				if len(got) != len(tt.want.targets) {
					t.Errorf("targets %v, want %v", got, tt.want.targets)
				}
				for n, s := range tt.want.targets {
					if got[n] != s {
						t.Errorf("target %s state %q, want %q", n, got[n], s)
					}
				}
			}
			if got := h.rec.reasons(); !slices.Equal(got, tt.want.events) && !(len(got) == 0 && len(tt.want.events) == 0) {
				t.Errorf("events %v, want %v", got, tt.want.events)
			}
			for _, n := range tt.want.noCmdsOn {
				if c := h.mutatedSinceMark(n); len(c) > 0 {
					t.Errorf("node %s ran %q, want nothing changed", n, c)
				}
			}
			for n, want := range tt.want.cmds {
				if got := h.mutatedSinceMark(n); !argvMatch(got, want) {
					t.Errorf("node %s ran\n  %q\nwant\n  %q", n, got, want)
				}
			}
			if tt.want.check != nil {
				tt.want.check(t, h)
			}
			seenReasons(h.rec)
			if t.Failed() {
				for _, n := range tt.nodes {
					t.Logf("node %s ran %q", n, h.mutatedSinceMark(n))
				}
			}
		})
	}
}

func baseTag(node string) string { return snapname.HoldTag(policy.ID(node, "tank/a")) }
func stepTag(node string) string { return snapname.StepHoldTag(policy.ID(node, "tank/a")) }
func lastTag(node string) string { return snapname.ReplicaHoldTag(policy.ID(node, "tank/a")) }

// reprotect is what a reconcile with nothing to send runs on the source
// for an up-to-date target: its base held and bookmarked again, the step
// hold released.
func reprotect(node, snap string) []string {
	return []string{
		"zfs hold " + baseTag(node) + " tank/a@" + snap,
		"zfs bookmark tank/a@" + snap + " tank/a#" + baseTag(node) + ":" + snap,
		"zfs release " + stepTag(node) + " tank/a@" + snap,
	}
}

func hasCmd(cmds []string, prefix string) bool {
	return slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

// cleanupReplications removes every DatasetReplication (finalizers
// dropped), so the next case starts from an empty API.
func cleanupReplications(t *testing.T, c client.Client) {
	ctx := context.Background()
	var list z8rv1.DatasetReplicationList
	if err := c.List(ctx, &list); err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for i := range list.Items {
		dr := &list.Items[i]
		if len(dr.Finalizers) > 0 {
			dr.Finalizers = nil
			if err := c.Update(ctx, dr); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := c.Delete(ctx, dr); client.IgnoreNotFound(err) != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.List(ctx, &list); err == nil && len(list.Items) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("cleanup: %d replications left", len(list.Items))
}
