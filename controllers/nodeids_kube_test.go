//go:build kube

package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestSnapshotContent_ZFSLocalPVPinnedByNodeID: a VolumeSnapshot of a
// zfs-localpv PV pinned with openebs.io/nodeid (a UUID, the value of that
// label on Node n1), for a driver z8r serves, is taken on n1: the
// controller resolves the label through the Node list on the real API
// server. When no Node carries the UUID the content fails with an error
// naming the label, and no node runs anything.
func TestSnapshotContent_ZFSLocalPVPinnedByNodeID(t *testing.T) {
	te := startTableEnv(t)
	c := te.client
	ctx := context.Background()
	const uuid = "3d6f0c2a-8b1e-4f7a-a5c9-0e2b7d4f6a18"
	for _, tt := range []struct {
		name      string
		handle    string // the volume; one per case, as PVs outlive their case
		label     string // n1's openebs.io/nodeid label
		wantReady bool
	}{
		{name: "the UUID label resolves to n1", handle: "pvc-a", label: uuid, wantReady: true},
		{name: "no node carries the UUID: error, nothing run", handle: "pvc-b", label: "another-id"},
	} {
		handle := tt.handle
		t.Run(tt.name, func(t *testing.T) {
			node := kubeenv.Node("n1", map[string]string{pvresolve.TopologyZFSLocalPVNodeID: tt.label}, nil)
			if err := c.Create(ctx, node); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, node) })
			zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
			if err := c.Create(ctx, zn); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}) })
			zn.Status.Pools, zn.Status.Ready, zn.Status.Address = []string{"tank"}, true, "n1:2222"
			if err := c.Status().Update(ctx, zn); err != nil {
				t.Fatal(err)
			}
			nodes := newFakeNodes("n1")
			if err := nodes.nodes["n1"].ZFS().CreateFilesystem(ctx, "tank/"+handle, zfsexec.CreateOptions{Parents: true}); err != nil {
				t.Fatal(err)
			}
			setup := len(nodes.nodes["n1"].Commands())

			ns := te.env.CreateNamespace(t, "nodeid")
			pv := kubeenv.ZFSLocalPV(handle, "n1", "tank", "1Gi")
			pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: pvresolve.TopologyZFSLocalPVNodeID, Operator: corev1.NodeSelectorOpIn, Values: []string{uuid}}}}}}}
			te.env.CreateBound(t, pv, kubeenv.PVCFor(pv, ns, "data"))
			t.Cleanup(func() { _ = c.Delete(ctx, pv) })
			class := kubeenv.VolumeSnapshotClass("nodeid-"+handle, pvresolve.DriverZFSLocalPV, snapshotv1.VolumeSnapshotContentRetain)
			if err := c.Create(ctx, class); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, class) })
			vs := kubeenv.VolumeSnapshot(ns, "snap", class.Name, "data")
			if err := c.Create(ctx, vs); err != nil {
				t.Fatal(err)
			}
			content := &snapshotv1.VolumeSnapshotContent{
				ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-" + string(vs.UID), Finalizers: []string{volsnap.FinalizerBound}},
				Spec: snapshotv1.VolumeSnapshotContentSpec{
					Driver: pvresolve.DriverZFSLocalPV, DeletionPolicy: snapshotv1.VolumeSnapshotContentRetain,
					Source:                  snapshotv1.VolumeSnapshotContentSource{VolumeHandle: new(handle)},
					VolumeSnapshotRef:       corev1.ObjectReference{Kind: "VolumeSnapshot", Namespace: ns, Name: vs.Name, UID: vs.UID},
					VolumeSnapshotClassName: new(class.Name),
				},
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
			r := &SnapshotterReconciler{Client: interceptor.NewClient(c, indexed()), Recorder: NewLimitedRecorder(&recorder{}), Agents: nodes,
				Clock: clocktest.New(tableStart), Drivers: map[string]bool{pvresolve.DriverZFSLocalPV: true}}
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(content)}); err != nil {
				t.Fatal(err)
			}
			var cur snapshotv1.VolumeSnapshotContent
			if err := c.Get(ctx, client.ObjectKeyFromObject(content), &cur); err != nil {
				t.Fatal(err)
			}
			got := mutating(nodes.nodes["n1"].Commands()[setup:])
			if !tt.wantReady {
				if cur.Status == nil || cur.Status.Error == nil || !strings.Contains(*cur.Status.Error.Message, pvresolve.TopologyZFSLocalPVNodeID) || len(got) != 0 {
					t.Fatalf("status error %q, n1 ran %q; want an error naming %s and nothing run", *cur.Status.Error.Message, got, pvresolve.TopologyZFSLocalPVNodeID)
				}
				return
			}
			want := "tank/" + handle + "@snapshot-" + string(vs.UID)
			if !volsnap.IsReady(&cur) || *cur.Status.SnapshotHandle != want || cur.Annotations[z8rv1.AnnotationNode] != "n1" ||
				len(got) != 1 || !strings.HasPrefix(got[0], "zfs snapshot") || !slices.Contains(strings.Fields(got[0]), want) {
				t.Fatalf("status %+v, annotations %v, n1 ran %q; want %s taken on n1", cur.Status, cur.Annotations, got, want)
			}
		})
	}
}
