//go:build kube

package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// tableSnapshotContent drives the snapshotter (SnapshotterReconciler), and
// after it the VolumeSnapshot replication, for z8r's driver: a content as the
// snapshot-controller makes it for a VolumeSnapshot of a z8r PV, the
// node's Z8RNode and its state → the content's status, the Events and the
// mutating argv the node saw.
func tableSnapshotContent(t *testing.T, te *tableEnv) {
	tests := []struct {
		name          string
		pools         []string // the Z8RNode's published pools
		noDataset     bool     // the volume's dataset does not exist on the node
		unreach       bool     // the node's agent cannot be reached
		deleteToo     bool     // delete the content after it is ready, reconcile again
		loseNode      bool     // before that, its z8r.dev/node annotation goes
		userHold      bool     // before that, a user holds the snapshot on the node
		retain        bool     // the content's deletionPolicy is Retain
		deferred      bool     // the last command is a deferred destroy (zfs destroy -d)
		replicate     string   // the class's z8r.dev/replicate-to (node n2 serves pool tank)
		again         int      // more reconciles after the first (a replication's steps)
		wantOnN2      []string // mutating argv prefixes on n2
		wantReplicas  int      // replica contents made
		imported      string   // "exists" or "missing": a pre-provisioned content of ds@pre
		unmarkReplica bool     // then the replica\'s mark is changed on n2 and its content deleted
		leftBehind    string   // "ours" or "theirs": the content's snapshot exists before the first reconcile, marked for this content or another
		wantReady     bool
		wantCmds      []string // mutating argv prefixes on n1, in order
		events        []string // reasons; while a VolumeSnapshot is bound, each goes to it and to the content
	}{
		{name: "a content is snapshotted and ready", pools: []string{"tank"}, wantReady: true,
			wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated}},
		{name: "a pool the agent does not serve: error, nothing run", pools: []string{"other"}, events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "a node without pools yet: error, nothing run", pools: nil, events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "the agent unreachable: error, nothing run", pools: []string{"tank"}, unreach: true, events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "the snapshot fails on the node", pools: []string{"tank"}, noDataset: true, wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "deleting the content destroys its snapshot", pools: []string{"tank"}, deleteToo: true, wantReady: true,
			wantCmds: []string{"zfs snapshot", "zfs destroy"}, events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotDeleted}},
		{name: "deleting a content whose snapshot a user holds defers the destroy", pools: []string{"tank"}, deleteToo: true, userHold: true, wantReady: true,
			// The user's hold (the case's), a destroy refused as busy, then a deferred one.
			wantCmds: []string{"zfs snapshot", "zfs hold", "zfs destroy", "zfs destroy"}, deferred: true,
			events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotDeferred}},
		{name: "deleting a Retain content keeps its snapshot", pools: []string{"tank"}, deleteToo: true, retain: true, wantReady: true,
			wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotRetained}},
		{name: "a class's replicate-to: the snapshot is sent and a replica content made", pools: []string{"tank"}, wantReady: true,
			// On the source: the step and base holds, the base's bookmark, the step hold released.
			replicate: "n2", again: 2, wantCmds: []string{"zfs snapshot", "zfs hold", "zfs hold", "zfs bookmark", "zfs release"},
			wantOnN2: []string{"zfs recv"}, wantReplicas: 1,
			events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventReplicated, z8rv1.EventReplicated,
				z8rv1.EventReplicaCreated, z8rv1.EventReplicaCreated}},
		{name: "a pre-provisioned snapshot that exists is imported", pools: []string{"tank"}, imported: "exists", wantReady: true,
			events: []string{z8rv1.EventSnapshotImported, z8rv1.EventSnapshotImported}},
		{name: "a pre-provisioned snapshot that does not exist: error", pools: []string{"tank"}, imported: "missing",
			events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "deleting a replicated content: the source's destroy is deferred (held as the replica's base)", pools: []string{"tank"},
			wantReady: true, replicate: "n2", again: 2, deleteToo: true, wantReplicas: 1, deferred: true,
			wantCmds: []string{"zfs snapshot", "zfs hold", "zfs hold", "zfs bookmark", "zfs release", "zfs destroy", "zfs destroy"},
			events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventReplicated, z8rv1.EventReplicated,
				z8rv1.EventReplicaCreated, z8rv1.EventReplicaCreated, z8rv1.EventSnapshotDeferred}},
		{name: "deleting a replica content whose snapshot lost z8r's mark destroys nothing", pools: []string{"tank"},
			wantReady: true, replicate: "n2", again: 2, wantReplicas: 1, unmarkReplica: true,
			wantCmds: []string{"zfs snapshot", "zfs hold", "zfs hold", "zfs bookmark", "zfs release"},
			events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventReplicated, z8rv1.EventReplicated,
				z8rv1.EventReplicaCreated, z8rv1.EventReplicaCreated, z8rv1.EventReplicaNotOwned}},
		{name: "a snapshot an earlier attempt took for this content is adopted", pools: []string{"tank"}, leftBehind: "ours", wantReady: true,
			// The snapshot is refused as existing; nothing else runs.
			wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated}},
		{name: "a snapshot of the content's name that is not its own: a final error, never adopted", pools: []string{"tank"}, leftBehind: "theirs",
			wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotFailed, z8rv1.EventSnapshotFailed}},
		{name: "a deleted content that lost its node annotation: nothing destroyed", pools: []string{"tank"}, deleteToo: true, loseNode: true, wantReady: true,
			wantCmds: []string{"zfs snapshot"}, events: []string{z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotDeleteFailed}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			ns := te.env.CreateNamespace(t, "contenttable")
			ds := fmt.Sprintf("tank/vol%d", i) // a handle of its own: the PVs stay
			nodes := newFakeNodes("n1", "n2")
			if !tt.noDataset {
				if err := nodes.nodes["n1"].ZFS().CreateFilesystem(ctx, ds, zfsexec.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			nodes.unreachable["n1"] = tt.unreach
			setupCmds := len(nodes.nodes["n1"].Commands())
			for n, pools := range map[string][]string{"n1": tt.pools, "n2": {"tank"}} {
				zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: n}}
				if err := c.Create(ctx, zn); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := c.Delete(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: n}}); client.IgnoreNotFound(err) != nil {
						t.Error(err)
					}
				})
				zn.Status.Pools, zn.Status.Ready, zn.Status.Address = pools, true, n+":2222"
				if err := c.Status().Update(ctx, zn); err != nil {
					t.Fatal(err)
				}
			}
			class := kubeenv.VolumeSnapshotClass(fmt.Sprintf("content-table-%d", i), kubeenv.DriverZ8r, snapshotv1.VolumeSnapshotContentDelete)
			if tt.replicate != "" {
				class.Annotations = map[string]string{z8rv1.AnnotationReplicateTo: tt.replicate}
			}
			if err := c.Create(ctx, class); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, class) })
			t.Cleanup(func() { cleanupReplicaContents(t, c) })
			pv := kubeenv.Z8rPV(fmt.Sprintf("pv-content-%d", i), "n1", ds, "1Gi")
			pvc := kubeenv.PVCFor(pv, ns, "data")
			te.env.CreateBound(t, pv, pvc)
			vs := kubeenv.VolumeSnapshot(ns, "snap", class.Name, "data")
			if err := c.Create(ctx, vs); err != nil {
				t.Fatal(err)
			}
			policy := snapshotv1.VolumeSnapshotContentDelete
			if tt.retain {
				policy = snapshotv1.VolumeSnapshotContentRetain
			}
			content := &snapshotv1.VolumeSnapshotContent{
				// As the snapshot-controller makes it: bound, protected.
				ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-" + string(vs.UID), Finalizers: []string{volsnap.FinalizerBound}},
				Spec: snapshotv1.VolumeSnapshotContentSpec{
					Driver: kubeenv.DriverZ8r, DeletionPolicy: policy,
					Source:                  snapshotv1.VolumeSnapshotContentSource{VolumeHandle: new(ds)},
					VolumeSnapshotRef:       corev1.ObjectReference{Kind: "VolumeSnapshot", Namespace: ns, Name: vs.Name, UID: vs.UID},
					VolumeSnapshotClassName: new(class.Name),
				},
			}
			if tt.imported != "" {
				content.Spec.Source = snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: new(ds + "@pre")}
				content.Annotations = map[string]string{z8rv1.AnnotationNode: "n1"}
				if tt.imported == "exists" {
					if err := nodes.nodes["n1"].ZFS().Snapshot(ctx, ds+"@pre", nil); err != nil {
						t.Fatal(err)
					}
				}
				setupCmds = len(nodes.nodes["n1"].Commands())
			}
			if tt.leftBehind != "" {
				owner := content.Name
				if tt.leftBehind == "theirs" {
					owner = "another-content"
				}
				if err := nodes.nodes["n1"].ZFS().Snapshot(ctx, ds+"@"+volsnap.SnapshotPrefix+string(vs.UID), map[string]string{volsnap.PropContent: owner}); err != nil {
					t.Fatal(err)
				}
				setupCmds = len(nodes.nodes["n1"].Commands())
			}
			if err := c.Create(ctx, content); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				var cur snapshotv1.VolumeSnapshotContent
				if err := c.Get(ctx, client.ObjectKeyFromObject(content), &cur); err == nil {
					cur.Finalizers = nil
					_ = c.Update(ctx, &cur)
					_ = c.Delete(ctx, &cur)
				}
			})
			rec := &recorder{}
			r := newContentReconcilers(interceptor.NewClient(c, indexed()), NewLimitedRecorder(rec), nodes, clocktest.New(tableStart), kubeenv.DriverZ8r)
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(content)}
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			for range tt.again {
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatalf("reconcile: %v", err)
				}
			}
			var cur snapshotv1.VolumeSnapshotContent
			if err := c.Get(ctx, req.NamespacedName, &cur); err != nil {
				t.Fatal(err)
			}
			ready := cur.Status != nil && cur.Status.ReadyToUse != nil && *cur.Status.ReadyToUse
			if ready != tt.wantReady {
				t.Errorf("ready %v, want %v (status %+v)", ready, tt.wantReady, cur.Status)
			}
			if !tt.wantReady && (cur.Status == nil || cur.Status.Error == nil) {
				t.Errorf("not ready and no error in the status: %+v", cur.Status)
			}
			if tt.deleteToo {
				// The snapshot-controller's part of a deletion: the
				// being-deleted annotation, then the delete.
				if tt.userHold {
					if err := nodes.nodes["n1"].ZFS().Hold(ctx, "keep", *cur.Status.SnapshotHandle); err != nil {
						t.Fatal(err)
					}
				}
				if tt.loseNode {
					delete(cur.Annotations, z8rv1.AnnotationNode)
				}
				cur.Annotations[volsnap.AnnBeingDeleted] = "yes"
				if err := c.Update(ctx, &cur); err != nil {
					t.Fatal(err)
				}
				if err := c.Delete(ctx, &cur); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatalf("reconcile the deletion: %v", err)
				}
			}
			var got []string
			for _, m := range mutating(nodes.nodes["n1"].Commands()[setupCmds:]) {
				got = append(got, strings.Join(strings.Fields(m)[:2], " ")) // "zfs verb"
			}
			if !slices.Equal(got, tt.wantCmds) && !(len(got) == 0 && len(tt.wantCmds) == 0) {
				t.Errorf("node ran %q, want %q", got, tt.wantCmds)
			}
			if cmds := nodes.nodes["n1"].Commands(); tt.deferred && !slices.Contains(cmds[len(cmds)-1], "-d") {
				t.Errorf("last command %q, want a deferred destroy", cmds[len(cmds)-1])
			}
			if got := mutating(nodes.nodes["n2"].Commands()); !hasAllPrefixes(got, tt.wantOnN2) {
				t.Errorf("n2 ran %q, want commands starting %q in order", got, tt.wantOnN2)
			}
			var replicas snapshotv1.VolumeSnapshotContentList
			if err := c.List(ctx, &replicas, client.HasLabels{z8rv1.LabelReplicaOfUID}); err != nil {
				t.Fatal(err)
			}
			if len(replicas.Items) != tt.wantReplicas {
				t.Errorf("%d replica contents, want %d", len(replicas.Items), tt.wantReplicas)
			}
			if tt.unmarkReplica {
				// The replica's snapshot no longer carries its content's mark
				// (someone changed it): deleting the replica content must
				// not destroy it.
				rc := replicas.Items[0]
				handle := *rc.Spec.Source.SnapshotHandle
				if err := nodes.nodes["n2"].ZFS().Set(ctx, handle, map[string]string{volsnap.PropContent: "someone-else"}); err != nil {
					t.Fatal(err)
				}
				rc.Annotations[volsnap.AnnBeingDeleted] = "yes"
				if err := c.Update(ctx, &rc); err != nil {
					t.Fatal(err)
				}
				if err := c.Delete(ctx, &rc); err != nil {
					t.Fatal(err)
				}
				before := len(nodes.nodes["n2"].Commands())
				if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rc)}); err != nil {
					t.Fatalf("reconcile the replica's deletion: %v", err)
				}
				if got := mutating(nodes.nodes["n2"].Commands()[before:]); hasCmd(got, "zfs destroy") {
					t.Errorf("n2 ran %q: destroyed a snapshot without the content's mark", got)
				}
			}
			want := tt.events
			if ev := rec.reasonsOnly(); !slices.Equal(ev, want) && !(len(ev) == 0 && len(want) == 0) {
				t.Errorf("events %v, want %v", ev, want)
			}
			seenReasons(rec)
			if t.Failed() {
				for _, e := range rec.got {
					t.Logf("event %s: %s", e.Reason, e.Note)
				}
			}
		})
	}
}

// contentReconcilers are the two reconcilers of VolumeSnapshotContents, as
// setupSnapshots registers them.
type contentReconcilers struct {
	snapshotter *SnapshotterReconciler
	replication *VolumeSnapshotReplicationReconciler
}

func newContentReconcilers(c client.Client, rec events.EventRecorder, nodes NodeAccess, clock schedule.Clock, drivers ...string) contentReconcilers {
	served := map[string]bool{}
	for _, d := range drivers {
		served[d] = true
	}
	return contentReconcilers{
		snapshotter: &SnapshotterReconciler{Client: c, Recorder: rec, Agents: nodes, Clock: clock, Drivers: served},
		replication: &VolumeSnapshotReplicationReconciler{Client: c, Recorder: rec, Agents: nodes, Clock: clock, Drivers: served},
	}
}

// Reconcile runs the snapshotter, then the replication, on req: what the
// manager does when both see the same change, in the order a content
// moves (taken, then replicated).
func (r contentReconcilers) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res1, err := r.snapshotter.Reconcile(ctx, req)
	if err != nil {
		return res1, err
	}
	res2, err := r.replication.Reconcile(ctx, req)
	if err != nil {
		return res2, err
	}
	if res1.RequeueAfter > 0 && (res2.RequeueAfter == 0 || res1.RequeueAfter < res2.RequeueAfter) {
		return res1, nil
	}
	return res2, nil
}

// hasAllPrefixes reports whether got has, in order, a command starting
// with each of prefixes.
func hasAllPrefixes(got, prefixes []string) bool {
	i := 0
	for _, c := range got {
		if i < len(prefixes) && strings.HasPrefix(c, prefixes[i]) {
			i++
		}
	}
	return i == len(prefixes)
}

// cleanupReplicaContents removes the replica contents a case made.
func cleanupReplicaContents(t *testing.T, c client.Client) {
	ctx := context.Background()
	var l snapshotv1.VolumeSnapshotContentList
	if err := c.List(ctx, &l); err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for i := range l.Items {
		cur := &l.Items[i]
		if len(cur.Finalizers) > 0 {
			cur.Finalizers = nil
			_ = c.Update(ctx, cur)
		}
		if err := c.Delete(ctx, cur); client.IgnoreNotFound(err) != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}
