//go:build kube

package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// vsrFixture is one case's world: nodes n1 (the source, holding ds@s1),
// n2 and n3 (Z8RNodes serving pool tank), a ready content of ds@s1 bound
// to a VolumeSnapshot, and both content reconcilers.
type vsrFixture struct {
	ctx     context.Context
	c       client.Client
	nodes   *fakeNodes
	clock   *clocktest.Fake
	rec     *recorder
	r       contentReconcilers
	ds      string
	vs      *snapshotv1.VolumeSnapshot
	content *snapshotv1.VolumeSnapshotContent
}

// vsrStep is one reconcile of a case and what it must leave.
type vsrStep struct {
	name   string
	before func(t *testing.T, f *vsrFixture) // a change made before the reconcile
	// onReplica: reconcile the (first) replica content instead of the
	// source content.
	onReplica bool
	// advance moves the controller's clock before the reconcile.
	advance time.Duration
	// want: per target ("node:dataset"), its state in the content's
	// replication status ("" absent); attempts likewise (0 unchecked).
	want     map[string]string
	attempts map[string]int
	// events: the reasons this reconcile emitted, in order (each on the
	// content and on its VolumeSnapshot while one is bound).
	events []string
	// n1, n2: the mutating "zfs verb" commands the node ran in this
	// reconcile, in order (nil: none).
	n1, n2 []string
	// n2Recv: instead of n2, the replica was received on n2 (its first
	// mutating command a receive) and marked last as the replica
	// content's.
	n2Recv bool
	// replicas: replica contents that exist after it (-1 unchecked).
	replicas int
	// requeue: the reconcile asks to come back (a retry, a conflict).
	requeue bool
	// check: further checks of this step.
	check func(t *testing.T, f *vsrFixture)
}

// tableVolumeSnapshotReplication drives the VolumeSnapshot replication
// (after the snapshotter, as the manager runs them) on a ready content:
// where its targets come from and who may ask, targets another
// replication claimed, unreachable nodes and retries, diverged and newer
// targets, the replicas' deletionPolicy, and another driver's content
// deleted with replicas. Each step checks the content's replication
// status, the Events and the mutating argv each node saw.
func tableVolumeSnapshotReplication(t *testing.T, te *tableEnv) {
	ann := func(v string) map[string]string { return map[string]string{z8rv1.AnnotationReplicateTo: v} }
	const tgt2, tgt3 = "n2:tank/vsr", "n3:tank/vsr" // + the case's index
	sent := []string{"zfs hold", "zfs hold", "zfs bookmark", "zfs release"}
	replicated := []string{z8rv1.EventReplicated, z8rv1.EventReplicated, z8rv1.EventReplicaCreated, z8rv1.EventReplicaCreated}
	tests := []struct {
		name      string
		class, vs map[string]string // replicate-to on the class and the VolumeSnapshot
		content   map[string]string // the content's own annotations (the administrator's)
		policy    bool              // a ReplicationTargetPolicy allows n2 and n3 under tank
		foreign   bool              // the content is zfs-localpv's, pre-provisioned (z8r does not take its snapshots)
		prepare   func(t *testing.T, f *vsrFixture)
		// claimedFirst runs before the content is made (ds is the case's
		// source dataset): an object made there is older than the content.
		claimedFirst  func(t *testing.T, c client.Client, ds string)
		steps         []vsrStep
		wantVSProblem string // the VolumeSnapshot's z8r.dev/annotation-problem contains it
	}{
		{name: "a class's target is replicated; a second reconcile sends nothing", class: ann("n2"),
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1},
				{name: "again", want: map[string]string{tgt2: z8rv1.TargetSynced}, replicas: 1},
			}},
		{name: "a target another replication claimed first is Refused and nothing is sent", class: ann("n2"),
			claimedFirst: func(t *testing.T, c client.Client, ds string) {
				createReplication(t, c, "vsr-claims-target", "n9", "tank/other", "n2", ds)
			},
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetRefused}, events: []string{z8rv1.EventReplicationConflict, z8rv1.EventReplicationConflict},
					replicas: 0, requeue: true, check: func(t *testing.T, f *vsrFixture) {
						if ts := f.state(t, "n2", f.ds); !strings.Contains(ts.Error, "vsr-claims-target") {
							t.Errorf("refusal %q does not name the DatasetReplication that claimed the target", ts.Error)
						}
					}},
				{name: "the same refusal is not reported twice", want: map[string]string{tgt2: z8rv1.TargetRefused}, replicas: 0, requeue: true},
			}},
		{name: "a source volume a DatasetReplication claimed first: every target Refused", class: ann("n2,n3"),
			claimedFirst: func(t *testing.T, c client.Client, ds string) {
				createReplication(t, c, "vsr-claims-source", "n1", ds, "n3", "tank/elsewhere")
			},
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetRefused, tgt3: z8rv1.TargetRefused}, replicas: 0, requeue: true,
					events: []string{z8rv1.EventReplicationConflict, z8rv1.EventReplicationConflict, z8rv1.EventReplicationConflict, z8rv1.EventReplicationConflict}},
			}},
		{name: "an unreachable target fails, waits out its backoff, then is replicated", class: ann("n2"),
			prepare: func(t *testing.T, f *vsrFixture) { f.nodes.unreachable["n2"] = true },
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetFailed}, attempts: map[string]int{tgt2: 1},
					events: []string{z8rv1.EventReplicationFailed, z8rv1.EventReplicationFailed}, replicas: 0, requeue: true},
				{name: "within the backoff: not tried", want: map[string]string{tgt2: z8rv1.TargetFailed}, attempts: map[string]int{tgt2: 1}, replicas: 0, requeue: true},
				{name: "after it, reachable again", advance: 6 * time.Second,
					before: func(t *testing.T, f *vsrFixture) { f.nodes.unreachable["n2"] = false },
					want:   map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1},
			}},
		{name: "an unreachable source: SourceUnavailable, nothing sent", class: ann("n2"),
			prepare: func(t *testing.T, f *vsrFixture) { f.nodes.unreachable["n1"] = true },
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetFailed}, attempts: map[string]int{tgt2: 1},
					events: []string{z8rv1.EventSourceUnavailable, z8rv1.EventSourceUnavailable}, replicas: 0, requeue: true},
			}},
		{name: "a target with history the source lacks is Diverged and left untouched", class: ann("n2"),
			prepare: func(t *testing.T, f *vsrFixture) {
				z := f.nodes.nodes["n2"].ZFS()
				if err := z.CreateFilesystem(f.ctx, f.ds, zfsexec.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := z.Snapshot(f.ctx, f.ds+"@mine", nil); err != nil {
					t.Fatal(err)
				}
			},
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetDiverged}, attempts: map[string]int{tgt2: 1},
					events: []string{z8rv1.EventTargetDiverged, z8rv1.EventTargetDiverged}, replicas: 0, requeue: true,
					check: func(t *testing.T, f *vsrFixture) {
						if ok, err := f.nodes.nodes["n2"].ZFS().Exists(f.ctx, f.ds+"@mine"); err != nil || !ok {
							t.Errorf("the target's own snapshot: exists %v, %v", ok, err)
						}
					}},
			}},
		{name: "a target that already has a newer snapshot: Skipped, final", class: ann("n2"),
			prepare: func(t *testing.T, f *vsrFixture) {
				// s2, newer than the content's s1, reached n2 first.
				if err := f.nodes.nodes["n1"].ZFS().Snapshot(f.ctx, f.ds+"@s2", nil); err != nil {
					t.Fatal(err)
				}
				src, _ := f.nodes.Get(f.ctx, "n1")
				dst, _ := f.nodes.Get(f.ctx, "n2")
				if _, err := replicate.SyncSnapshot(f.ctx, src, f.ds, "s2", replicate.Target{ID: "first", Origin: "n1:" + f.ds,
					Endpoint: dst, Addr: dst.Address, HostKey: dst.HostKey, Dataset: f.ds}, replicate.SnapshotOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSkipped}, events: []string{z8rv1.EventReplicationFailed, z8rv1.EventReplicationFailed}, replicas: 0},
				{name: "a skipped target is not tried again", want: map[string]string{tgt2: z8rv1.TargetSkipped}, replicas: 0},
			}},
		{name: "a tenant's request without a policy: TargetNotAllowed, the VolumeSnapshot's problem, nothing sent", vs: ann("n2"),
			wantVSProblem: "no ReplicationTargetPolicy",
			steps: []vsrStep{
				{want: map[string]string{}, events: []string{z8rv1.EventTargetNotAllowed, z8rv1.EventTargetNotAllowed}, replicas: 0, requeue: true,
					check: func(t *testing.T, f *vsrFixture) {
						if v, ok := f.get(t).Annotations[z8rv1.AnnotationReplicateTo]; ok {
							t.Errorf("a refused request was stamped on the content: %q", v)
						}
					}},
			}},
		{name: "a tenant's request a policy allows is stamped resolved and replicated", vs: ann("n2"), policy: true,
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1,
					check: func(t *testing.T, f *vsrFixture) {
						if v := f.get(t).Annotations[z8rv1.AnnotationReplicateTo]; v != "n2:"+f.ds {
							t.Errorf("stamped %q, want the resolved n2:%s", v, f.ds)
						}
					}},
			}},
		{name: "an empty tenant value is reported and the class's targets still apply", class: ann("n3"), vs: ann(" "), policy: true,
			wantVSProblem: "is empty",
			steps: []vsrStep{
				{want: map[string]string{tgt3: z8rv1.TargetSynced}, events: append([]string{z8rv1.EventEmptyAnnotation, z8rv1.EventEmptyAnnotation}, replicated...),
					n1: sent, replicas: 1},
			}},
		{name: "a content asking for its own source: InvalidReplicationAnnotation, nothing runs", content: ann("n1"),
			steps: []vsrStep{
				{want: map[string]string{}, events: []string{z8rv1.EventInvalidAnnotation, z8rv1.EventInvalidAnnotation}, replicas: 0, requeue: true},
			}},
		{name: "the replicas' deletionPolicy follows the source content's", class: ann("n2"),
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1},
				{name: "the source is set to Retain",
					before: func(t *testing.T, f *vsrFixture) {
						cur := f.get(t)
						cur.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentRetain
						if err := f.c.Update(f.ctx, cur); err != nil {
							t.Fatal(err)
						}
					},
					want: map[string]string{tgt2: z8rv1.TargetSynced}, replicas: 1,
					check: func(t *testing.T, f *vsrFixture) {
						for _, rc := range f.replicas(t) {
							if rc.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain {
								t.Errorf("replica %s has deletionPolicy %s, want Retain", rc.Name, rc.Spec.DeletionPolicy)
							}
						}
					}},
			}},
		{name: "a served source deleted with Delete: its snapshot destroyed first (deferred: held), then its replica; holds stay for the replica that stays held", class: ann("n2"),
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1},
				{name: "the replica content is imported (the snapshotter)", onReplica: true, replicas: 1,
					want: map[string]string{tgt2: z8rv1.TargetSynced}, events: []string{z8rv1.EventSnapshotImported}},
				{name: "the source is deleted: its snapshot is destroyed (deferred), then its replica content deleted",
					before: func(t *testing.T, f *vsrFixture) { f.deleteBound(t) },
					want:   map[string]string{tgt2: z8rv1.TargetSynced}, events: []string{z8rv1.EventSnapshotDeferred},
					n1: []string{"zfs destroy", "zfs destroy"}, replicas: 1, requeue: true,
					check: func(t *testing.T, f *vsrFixture) {
						if f.get(t).Annotations[z8rv1.AnnotationSourceDestroyed] != annotationYes {
							t.Errorf("the source's destruction is not recorded before its replicas go")
						}
					}},
				{name: "the replica's deletion: marked as its content's, destroyed (deferred: the target holds it as the next base)", onReplica: true,
					want: map[string]string{tgt2: z8rv1.TargetSynced}, events: []string{z8rv1.EventSnapshotDeferred},
					n2: []string{"zfs destroy", "zfs destroy"}, replicas: 0},
				{name: "the source goes; its hold stays while the target still has the snapshot",
					n1: nil, n2: nil, replicas: 0,
					check: func(t *testing.T, f *vsrFixture) {
						var cur snapshotv1.VolumeSnapshotContent
						if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(f.content), &cur); err == nil {
							t.Errorf("the source content is still there, finalizers %v", cur.Finalizers)
						}
						holds, err := f.nodes.nodes["n1"].ZFS().Holds(f.ctx, f.ds+"@s1")
						if err != nil || len(holds) == 0 {
							t.Errorf("source snapshot holds %v (%v): want the target's base hold kept", holds, err)
						}
					}},
			}},
		{name: "an imported replica whose snapshot lost z8r's mark: deleting it destroys nothing", class: ann("n2"),
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: replicated, n1: sent, n2Recv: true, replicas: 1},
				{name: "imported", onReplica: true, replicas: 1, want: map[string]string{tgt2: z8rv1.TargetSynced}, events: []string{z8rv1.EventSnapshotImported}},
				{name: "unmarked, then deleted", onReplica: true, replicas: 0, want: map[string]string{tgt2: z8rv1.TargetSynced},
					before: func(t *testing.T, f *vsrFixture) {
						rc := f.replicas(t)[0]
						if err := f.nodes.nodes["n2"].ZFS().Set(f.ctx, *rc.Spec.Source.SnapshotHandle, map[string]string{volsnap.PropContent: "someone-else"}); err != nil {
							t.Fatal(err)
						}
						if err := f.c.Delete(f.ctx, &rc); err != nil {
							t.Fatal(err)
						}
					},
					events: []string{z8rv1.EventReplicaNotOwned},
					check: func(t *testing.T, f *vsrFixture) {
						if ok, err := f.nodes.nodes["n2"].ZFS().Exists(f.ctx, f.ds+"@s1"); err != nil || !ok {
							t.Errorf("the unmarked replica snapshot: exists %v (%v), want it kept", ok, err)
						}
					}},
			}},
		{name: "another driver's content: z8r's finalizer, and its deletion releases the holds and deletes the replica", foreign: true,
			content: ann("n2"),
			steps: []vsrStep{
				{want: map[string]string{tgt2: z8rv1.TargetSynced}, events: []string{z8rv1.EventReplicated, z8rv1.EventReplicaCreated}, n1: sent, n2Recv: true, replicas: 1,
					check: func(t *testing.T, f *vsrFixture) {
						if !volsnap.HasFinalizer(f.get(t), finalizerReleaseHolds) {
							t.Errorf("finalizers %v, want %s before z8r holds another driver's snapshot", f.get(t).Finalizers, finalizerReleaseHolds)
						}
					}},
				{name: "deleted: the unbound replica is deleted first",
					before: func(t *testing.T, f *vsrFixture) {
						if err := f.c.Delete(f.ctx, f.get(t)); err != nil {
							t.Fatal(err)
						}
					},
					want: map[string]string{tgt2: z8rv1.TargetSynced}, replicas: 1, requeue: true,
					check: func(t *testing.T, f *vsrFixture) {
						for _, rc := range f.replicas(t) {
							if rc.DeletionTimestamp == nil {
								t.Errorf("replica %s not being deleted", rc.Name)
							}
						}
					}},
				{name: "the replica goes (its destroy deferred: held as the next base); then both holds are released",
					before: func(t *testing.T, f *vsrFixture) {
						// The snapshotter deletes the replica content: its
						// snapshot carries z8r's mark, so it is destroyed,
						// deferred while z8r's replica hold keeps it.
						before := len(f.nodes.nodes["n2"].Commands())
						for _, rc := range f.replicas(t) {
							if _, err := f.r.Reconcile(f.ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rc)}); err != nil {
								t.Fatal(err)
							}
						}
						cmds := f.nodes.nodes["n2"].Commands()[before:]
						if got := mutating(cmds); len(got) != 2 || !strings.HasPrefix(got[0], "zfs destroy") || !slices.Contains(cmds[len(cmds)-1], "-d") {
							t.Errorf("n2 ran %q for the replica's deletion, want a destroy refused as held, then a deferred one", got)
						}
					},
					n2: []string{"zfs release"}, n1: []string{"zfs release"}, replicas: 0,
					check: func(t *testing.T, f *vsrFixture) {
						var cur snapshotv1.VolumeSnapshotContent
						if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(f.content), &cur); err == nil {
							t.Errorf("the source content is still there, finalizers %v", cur.Finalizers)
						}
						// z8r never destroys another driver's snapshot; the
						// replica's deferred destroy finished with its hold.
						for node, want := range map[string]bool{"n1": true, "n2": false} {
							if ok, err := f.nodes.nodes[node].ZFS().Exists(f.ctx, f.ds+"@s1"); err != nil || ok != want {
								t.Errorf("%s@s1 on %s exists %v (%v), want %v", f.ds, node, ok, err, want)
							}
						}
						for node, snap := range map[string]string{"n1": f.ds + "@s1", "n2": f.ds + "@s1"} {
							holds, err := f.nodes.nodes[node].ZFS().Holds(f.ctx, snap)
							if err != nil && !errors.Is(err, zfsexec.ErrDatasetNotExist) {
								t.Fatal(err)
							}
							if len(holds) != 0 {
								t.Errorf("%s on %s still held: %v", snap, node, holds)
							}
						}
					}},
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.claimedFirst != nil {
				tt.claimedFirst(t, te.client, vsrDataset(i))
				// Claims order by creation time, in whole seconds: the
				// content must come in a later second.
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
			}
			f := newVSRFixture(t, te, i, tt.class, tt.vs, tt.content, tt.foreign)
			if tt.policy {
				p := &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "vsr-table"},
					Spec: z8rv1.ReplicationTargetPolicySpec{Targets: []z8rv1.AllowedTarget{{Node: "n2", ParentDataset: "tank"}, {Node: "n3", ParentDataset: "tank"}}}}
				if err := f.c.Create(f.ctx, p); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = f.c.Delete(context.Background(), p) })
			}
			if tt.prepare != nil {
				tt.prepare(t, f)
			}
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(f.content)}
			for _, st := range tt.steps {
				if t.Failed() {
					return
				}
				if st.before != nil {
					st.before(t, f)
				}
				f.clock.Advance(st.advance)
				f.rec.reset()
				n1, n2 := len(f.nodes.nodes["n1"].Commands()), len(f.nodes.nodes["n2"].Commands())
				stepReq := req
				if st.onReplica {
					stepReq = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&f.replicas(t)[0])}
				}
				res, err := f.r.Reconcile(f.ctx, stepReq)
				if err != nil {
					t.Fatalf("step %q: reconcile: %v", st.name, err)
				}
				if got := res.RequeueAfter > 0; got != st.requeue {
					t.Errorf("step %q: requeue after %s, want a requeue %v", st.name, res.RequeueAfter, st.requeue)
				}
				if st.want != nil {
					got := map[string]string{}
					for _, ts := range f.status(t) {
						got[ts.Node+":"+ts.Dataset] = ts.State
					}
					want := map[string]string{}
					for k, v := range st.want {
						want[k+fmt.Sprint(i)] = v
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("step %q: states %v, want %v", st.name, got, want)
					}
				}
				for k, n := range st.attempts {
					node, ds, _ := strings.Cut(k+fmt.Sprint(i), ":")
					if got := f.state(t, node, ds).Attempts; got != n {
						t.Errorf("step %q: %s attempts %d, want %d", st.name, k, got, n)
					}
				}
				if ev := f.rec.reasonsOnly(); !slices.Equal(ev, st.events) && len(ev)+len(st.events) > 0 {
					t.Errorf("step %q: events %v, want %v", st.name, ev, st.events)
				}
				if st.n2Recv {
					got := mutating(f.nodes.nodes["n2"].Commands()[n2:])
					mark := volsnap.PropContent + "=" + volsnap.ReplicaContentName(f.content.Name, volsnap.Target{Node: "n2", Dataset: f.ds})
					if len(got) < 2 || !strings.HasPrefix(got[0], "zfs recv") || !strings.Contains(got[len(got)-1], mark) {
						t.Errorf("step %q: n2 ran %q, want a receive first and the mark %s last", st.name, got, mark)
					}
				}
				for node, want := range map[string][]string{"n1": st.n1, "n2": st.n2} {
					if node == "n2" && st.n2Recv {
						continue
					}
					from := map[string]int{"n1": n1, "n2": n2}[node]
					var got []string
					for _, m := range mutating(f.nodes.nodes[node].Commands()[from:]) {
						got = append(got, strings.Join(strings.Fields(m)[:2], " "))
					}
					if !slices.Equal(got, want) && len(got)+len(want) > 0 {
						t.Errorf("step %q: %s ran %q, want %q", st.name, node, got, want)
					}
				}
				if st.replicas >= 0 {
					if got := len(f.replicas(t)); got != st.replicas {
						t.Errorf("step %q: %d replica contents, want %d", st.name, got, st.replicas)
					}
				}
				if st.check != nil {
					st.check(t, f)
				}
				seenReasons(f.rec)
				if t.Failed() {
					for _, e := range f.rec.got {
						t.Logf("event %s: %s", e.Reason, e.Note)
					}
				}
			}
			if tt.wantVSProblem != "" {
				var vs snapshotv1.VolumeSnapshot
				if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(f.vs), &vs); err != nil {
					t.Fatal(err)
				}
				if p := vs.Annotations[policy.AnnProblem]; !strings.Contains(p, tt.wantVSProblem) {
					t.Errorf("VolumeSnapshot's problem %q, want it to say %q", p, tt.wantVSProblem)
				}
			}
		})
	}
}

// newVSRFixture makes case i's world (see vsrFixture): the content is
// z8r's, dynamic, of a z8r PV; or (foreign) zfs-localpv's, pre-provisioned
// and annotated with its node and dataset, as an administrator imports
// one.
func newVSRFixture(t *testing.T, te *tableEnv, i int, class, vsAnn, contentAnn map[string]string, foreign bool) *vsrFixture {
	t.Helper()
	ctx := context.Background()
	c := te.client
	f := &vsrFixture{ctx: ctx, c: c, nodes: newFakeNodes("n1", "n2", "n3"), clock: clocktest.New(tableStart), rec: &recorder{},
		ds: vsrDataset(i)}
	z := f.nodes.nodes["n1"].ZFS()
	if err := z.CreateFilesystem(ctx, f.ds, zfsexec.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := z.Snapshot(ctx, f.ds+"@s1", nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := c.Create(ctx, zn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Delete(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: n}}); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		})
		zn.Status.Pools, zn.Status.Ready, zn.Status.Address = []string{"tank"}, true, n+":2222"
		if err := c.Status().Update(ctx, zn); err != nil {
			t.Fatal(err)
		}
	}
	ns := te.env.CreateNamespace(t, "vsrtable")
	driver := kubeenv.DriverZ8r
	if foreign {
		driver = pvresolve.DriverZFSLocalPV
	}
	cls := kubeenv.VolumeSnapshotClass(fmt.Sprintf("vsr-table-%d", i), driver, snapshotv1.VolumeSnapshotContentDelete)
	cls.Annotations = class
	if err := c.Create(ctx, cls); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, cls) })
	t.Cleanup(func() { cleanupReplicaContents(t, c) })
	f.content = &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("vsr-content-%d", i), Annotations: map[string]string{}},
		Spec: snapshotv1.VolumeSnapshotContentSpec{Driver: driver, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
			VolumeSnapshotClassName: new(cls.Name)},
	}
	for k, v := range contentAnn {
		f.content.Annotations[k] = v
	}
	if foreign {
		// Pre-provisioned and unbound: z8r finds it by its annotations.
		f.content.Spec.Source.SnapshotHandle = new(f.ds + "@s1")
		f.content.Spec.VolumeSnapshotRef = corev1.ObjectReference{Kind: "VolumeSnapshot", Namespace: ns, Name: "unbound"}
		f.content.Annotations[z8rv1.AnnotationNode] = "n1"
		f.content.Annotations[z8rv1.AnnotationDataset] = f.ds
	} else {
		pv := kubeenv.Z8rPV(fmt.Sprintf("pv-vsr-%d", i), "n1", f.ds, "1Gi")
		te.env.CreateBound(t, pv, kubeenv.PVCFor(pv, ns, "data"))
		f.vs = kubeenv.VolumeSnapshot(ns, "snap", cls.Name, "data")
		f.vs.Annotations = vsAnn
		if err := c.Create(ctx, f.vs); err != nil {
			t.Fatal(err)
		}
		f.content.Finalizers = []string{volsnap.FinalizerBound}
		f.content.Spec.Source.VolumeHandle = new(f.ds)
		f.content.Spec.VolumeSnapshotRef = corev1.ObjectReference{Kind: "VolumeSnapshot", Namespace: ns, Name: f.vs.Name, UID: f.vs.UID}
	}
	if err := c.Create(ctx, f.content); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var cur snapshotv1.VolumeSnapshotContent
		if err := c.Get(ctx, client.ObjectKeyFromObject(f.content), &cur); err == nil {
			cur.Finalizers = nil
			_ = c.Update(ctx, &cur)
			_ = c.Delete(ctx, &cur)
		}
	})
	// Ready, as the snapshotter (or the other driver) left it.
	f.content.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: new(f.ds + "@s1"), ReadyToUse: new(true),
		CreationTime: new(tableStart.UnixNano())}
	if err := c.Status().Update(ctx, f.content); err != nil {
		t.Fatal(err)
	}
	f.r = newContentReconcilers(interceptor.NewClient(c, indexed()), NewLimitedRecorder(f.rec), f.nodes, f.clock, kubeenv.DriverZ8r)
	return f
}

// createReplication makes a DatasetReplication claiming node:dataset as
// its source and tnode:tdataset as its target, before the content's
// replication claims anything.
// vsrDataset is case i's source dataset.
func vsrDataset(i int) string { return fmt.Sprintf("tank/vsr%d", i) }

func createReplication(t *testing.T, c client.Client, name, node, dataset, tnode, tdataset string) {
	t.Helper()
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: node, Dataset: dataset},
			Targets: []z8rv1.ReplicationTarget{{Node: tnode, Dataset: tdataset}}}}
	if err := c.Create(context.Background(), dr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), dr) })
}

// deleteBound deletes the source content as the snapshot-controller does
// when its VolumeSnapshot goes: marked being-deleted, then deleted.
func (f *vsrFixture) deleteBound(t *testing.T) {
	t.Helper()
	cur := f.get(t)
	cur.Annotations[volsnap.AnnBeingDeleted] = "yes"
	if err := f.c.Update(f.ctx, cur); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Delete(f.ctx, cur); err != nil {
		t.Fatal(err)
	}
}

func (f *vsrFixture) get(t *testing.T) *snapshotv1.VolumeSnapshotContent {
	t.Helper()
	var cur snapshotv1.VolumeSnapshotContent
	if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(f.content), &cur); err != nil {
		t.Fatal(err)
	}
	return &cur
}

// status is the content's replication status (none once it is gone).
func (f *vsrFixture) status(t *testing.T) volsnap.Status {
	t.Helper()
	var cur snapshotv1.VolumeSnapshotContent
	if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(f.content), &cur); err != nil {
		return nil
	}
	s, err := volsnap.ParseStatus(cur.Annotations[z8rv1.AnnotationReplicationStatus])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *vsrFixture) state(t *testing.T, node, dataset string) volsnap.TargetState {
	t.Helper()
	ts, _ := f.status(t).Get(volsnap.Target{Node: node, Dataset: dataset})
	return ts
}

func (f *vsrFixture) replicas(t *testing.T) []snapshotv1.VolumeSnapshotContent {
	t.Helper()
	var l snapshotv1.VolumeSnapshotContentList
	if err := f.c.List(f.ctx, &l, client.HasLabels{z8rv1.LabelReplicaOfUID}); err != nil {
		t.Fatal(err)
	}
	return l.Items
}
