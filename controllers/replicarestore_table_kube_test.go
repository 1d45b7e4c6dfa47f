//go:build kube

package controllers

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/restore"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestTable_ReplicaRestore drives ReplicaRestoreReconciler.Reconcile on a
// real kube-apiserver (with zfs-localpv's ZFSVolume CRD installed) and
// in-memory nodes: a ReplicaRestore and what the nodes hold → the new
// dataset, the PV and PVC, the status and Events, and the ordered mutating
// argv each node saw. Every bad input changes nothing on ZFS or in the API.
func TestTable_ReplicaRestore(t *testing.T) {
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := kubeenv.Start(t, kubeenv.Options{CRDDirectoryPaths: []string{filepath.Join(root, "internal/restore/testdata/zfslocalpv")}})
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, snapshotv1.AddToScheme, z8rv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	base, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const nodeUUID = "7c1e2a9d-4b3f-4e5a-9c8d-2f6b1a0e3d57"
	for _, n := range []*corev1.Node{kubeenv.Node("n1", nil, nil), kubeenv.Node("n2", map[string]string{pvresolve.TopologyZFSLocalPVNodeID: nodeUUID}, nil)} {
		if err := base.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := base.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restore.ZFSLocalPVNamespace}}); err != nil {
		t.Fatal(err)
	}

	createReplicaContent := func(t *testing.T, name, node, handle string) {
		t.Helper()
		c := &snapshotv1.VolumeSnapshotContent{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{z8rv1.AnnotationNode: node, z8rv1.AnnotationDataset: strings.Split(handle, "@")[0]}},
			Spec: snapshotv1.VolumeSnapshotContentSpec{Driver: z8rv1.DriverName, DeletionPolicy: snapshotv1.VolumeSnapshotContentRetain,
				Source:            snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: &handle},
				VolumeSnapshotRef: corev1.ObjectReference{Namespace: "default", Name: name}},
		}
		if err := base.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = base.Delete(ctx, c) })
	}
	type want struct {
		phase, reason string
		events        []string
		argv          []string // n2's mutating argv, "UID" standing for the restore's UID
		dataset       string   // the restored dataset; "" when nothing is made
	}
	tests := []struct {
		name    string
		source  z8rv1.RestoreSource
		dataset string
		kind    string
		// setup runs before the ReplicaRestore is made: ns is its namespace.
		setup   func(t *testing.T, nodes *fakeNodes, ns string)
		failPV  int // PV creations failed first (a controller dying mid-restore)
		unreach bool
		want    want
	}{
		{name: "a replica's newest snapshot becomes a mounted dataset, a Local PV and a pre-bound PVC",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"},
			want: want{phase: z8rv1.RestoreCompleted, reason: z8rv1.ReasonRestored, events: []string{z8rv1.EventRestored}, dataset: "tank/r-restored",
				argv: []string{"zfs clone -o z8r.dev:restore=UID -o z8r.dev:restored-from=n2:tank/data@s2 tank/data@s2 tank/r-restored"}}},
		{name: "a named snapshot into a named dataset",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2", Snapshot: "s1"}, dataset: "tank/restores/one",
			setup: func(t *testing.T, nodes *fakeNodes, _ string) { mkfs(t, nodes, "n2", "tank/restores") },
			want: want{phase: z8rv1.RestoreCompleted, reason: z8rv1.ReasonRestored, events: []string{z8rv1.EventRestored}, dataset: "tank/restores/one",
				argv: []string{"zfs clone -o z8r.dev:restore=UID -o z8r.dev:restored-from=n2:tank/data@s1 tank/data@s1 tank/restores/one"}}},
		{name: "a replica VolumeSnapshotContent on n2",
			source: z8rv1.RestoreSource{VolumeSnapshotContent: "replica-content", Node: "n2"},
			setup: func(t *testing.T, nodes *fakeNodes, _ string) {
				createReplicaContent(t, "replica-content", "n2", "tank/data@s1")
			},
			want: want{phase: z8rv1.RestoreCompleted, reason: z8rv1.ReasonRestored, events: []string{z8rv1.EventRestored}, dataset: "tank/r-restored",
				argv: []string{"zfs clone -o z8r.dev:restore=UID -o z8r.dev:restored-from=n2:tank/data@s1 tank/data@s1 tank/r-restored"}}},
		{name: "zfs-localpv objects: ZFSVolume and a CSI PV pinned by openebs.io/nodeid",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"}, kind: z8rv1.RestoreKindZFSLocalPV, dataset: "tank/pvc-restored-1",
			want: want{phase: z8rv1.RestoreCompleted, reason: z8rv1.ReasonRestored, events: []string{z8rv1.EventRestored}, dataset: "tank/pvc-restored-1",
				argv: []string{"zfs clone -o z8r.dev:restore=UID -o z8r.dev:restored-from=n2:tank/data@s2 tank/data@s2 tank/pvc-restored-1"}}},
		{name: "a controller dying after the clone: the retry adopts it and finishes, one clone",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"}, failPV: 1,
			want: want{phase: z8rv1.RestoreCompleted, reason: z8rv1.ReasonRestored, events: []string{z8rv1.EventRestoreFailed, z8rv1.EventRestored}, dataset: "tank/r-restored",
				argv: []string{"zfs clone -o z8r.dev:restore=UID -o z8r.dev:restored-from=n2:tank/data@s2 tank/data@s2 tank/r-restored"}}},
		{name: "bad input: the dataset exists",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"},
			setup:  func(t *testing.T, nodes *fakeNodes, _ string) { mkfs(t, nodes, "n2", "tank/r-restored") },
			want:   want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonDatasetExists, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "bad input: the PVC name exists",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"},
			setup: func(t *testing.T, _ *fakeNodes, ns string) {
				if err := base.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "restored", Namespace: ns},
					Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: restore.Capacity(&z8rv1.ReplicaRestore{}, 1)}}}}); err != nil {
					t.Fatal(err)
				}
			},
			want: want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonPVCExists, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "bad input: the snapshot does not exist",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2", Snapshot: "nope"},
			want:   want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonSnapshotNotFound, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "bad input: the node is not a target or the source of the replication",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n3"},
			want:   want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonNodeNotInSource, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "bad input: an unknown replication",
			source: z8rv1.RestoreSource{Replication: "nope", Node: "n2"},
			want:   want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonReplicationNotFound, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "bad input: a content on another node",
			source: z8rv1.RestoreSource{VolumeSnapshotContent: "replica-content", Node: "n1"},
			setup: func(t *testing.T, nodes *fakeNodes, _ string) {
				createReplicaContent(t, "replica-content", "n2", "tank/data@s1")
			},
			want: want{phase: z8rv1.RestoreFailed, reason: z8rv1.ReasonNodeNotInSource, events: []string{z8rv1.EventRestoreRefused}}},
		{name: "the node's agent cannot be reached: pending, retried, nothing run",
			source: z8rv1.RestoreSource{Replication: "rep", Node: "n2"}, unreach: true,
			want: want{phase: z8rv1.RestorePending, reason: z8rv1.ReasonNodeUnavailable, events: []string{z8rv1.EventRestoreFailed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.CreateNamespace(t, "restoretable")
			nodes := newFakeNodes("n1", "n2")
			for _, n := range []string{"n1", "n2"} {
				mkfs(t, nodes, n, "tank/data")
				for _, s := range []string{"s1", "s2"} {
					if err := nodes.nodes[n].ZFS().Snapshot(ctx, "tank/data@"+s, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "rep"}, Spec: z8rv1.DatasetReplicationSpec{
				Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/data"}, Targets: []z8rv1.ReplicationTarget{{Node: "n2"}}}}
			if err := base.Create(ctx, dr); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = base.Delete(ctx, dr) })
			if tt.setup != nil {
				tt.setup(t, nodes, ns)
			}
			nodes.unreachable["n2"] = tt.unreach
			before := map[string]int{}
			for n, fn := range nodes.nodes {
				before[n] = len(fn.Commands())
			}
			var existingPVCs corev1.PersistentVolumeClaimList
			if err := base.List(ctx, &existingPVCs, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}

			fails := tt.failPV
			c := interceptor.NewClient(base, interceptor.Funcs{Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*corev1.PersistentVolume); ok && fails > 0 {
					fails--
					return errors.New("injected: the controller died")
				}
				return cl.Create(ctx, obj, opts...)
			}})
			rec := &recorder{}
			r := &ReplicaRestoreReconciler{Client: c, Recorder: rec, Agents: nodes, SnapshotsServed: true}
			rr := &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: z8rv1.ReplicaRestoreSpec{
				Source: tt.source, Dataset: tt.dataset, Volume: z8rv1.RestoreVolume{Kind: tt.kind, PVCName: "restored"}}}
			if err := base.Create(ctx, rr); err != nil {
				t.Fatal(err)
			}
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(rr)}
			for range 1 + tt.failPV {
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			// A second pass (as after a restart) changes nothing more.
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatal(err)
			}
			if err := base.Get(ctx, req.NamespacedName, rr); err != nil {
				t.Fatal(err)
			}
			cond := meta.FindStatusCondition(rr.Status.Conditions, z8rv1.ConditionReady)
			if rr.Status.Phase != tt.want.phase || cond == nil || cond.Reason != tt.want.reason {
				t.Fatalf("phase %q, Ready %+v; want %s, %s (message %q)", rr.Status.Phase, cond, tt.want.phase, tt.want.reason, rr.Status.Message)
			}
			if got := rec.reasonsOnly(); !slices.Equal(got, tt.want.events) {
				t.Errorf("events %v, want %v (%+v)", got, tt.want.events, rec.got)
			}
			var wantArgv []string
			for _, a := range tt.want.argv {
				wantArgv = append(wantArgv, strings.ReplaceAll(a, "UID", string(rr.UID)))
			}
			for n, fn := range nodes.nodes {
				got := mutating(fn.Commands()[before[n]:])
				w := wantArgv
				if n != "n2" {
					w = nil
				}
				if !slices.Equal(got, w) {
					t.Errorf("node %s mutating argv:\n got %q\nwant %q", n, got, w)
				}
			}
			var pvs corev1.PersistentVolumeList
			if err := base.List(ctx, &pvs); err != nil {
				t.Fatal(err)
			}
			var pvcs corev1.PersistentVolumeClaimList
			if err := base.List(ctx, &pvcs, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			pvName := "z8r-restore-" + string(rr.UID)
			if tt.kind == z8rv1.RestoreKindZFSLocalPV {
				pvName = "pvc-restored-1"
			}
			var pv *corev1.PersistentVolume
			for i := range pvs.Items {
				if pvs.Items[i].Name == pvName {
					pv = &pvs.Items[i]
				}
			}
			if tt.want.dataset == "" {
				if pv != nil || len(pvcs.Items) != len(existingPVCs.Items) {
					t.Fatalf("a refused restore made objects: PV %v, PVCs %d (had %d)", pv != nil, len(pvcs.Items), len(existingPVCs.Items))
				}
				return
			}
			t.Cleanup(func() { _ = base.Delete(ctx, pv) })
			if rr.Status.Dataset != tt.want.dataset || rr.Status.PVName != pvName || rr.Status.SnapshotGUID == "" {
				t.Errorf("status %+v", rr.Status)
			}
			// The dataset: a clone of the snapshot, with the restore's marks set locally.
			props, err := nodes.nodes["n2"].ZFS().Get(ctx, tt.want.dataset, "origin", z8rv1.PropRestore, z8rv1.PropRestoredFrom, "mountpoint", "mounted")
			if err != nil {
				t.Fatal(err)
			}
			if props["origin"].Value != rr.Status.Snapshot || props[z8rv1.PropRestore].Value != string(rr.UID) || props[z8rv1.PropRestore].Source != "local" ||
				props[z8rv1.PropRestoredFrom].Value != "n2:"+rr.Status.Snapshot {
				t.Errorf("dataset properties %+v", props)
			}
			if pv == nil || len(pvcs.Items) != 1 {
				t.Fatalf("PV %v, PVCs %+v", pv, pvcs.Items)
			}
			pvc := pvcs.Items[0]
			if pvc.Name != "restored" || pvc.Spec.VolumeName != pvName || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "restored" ||
				pv.Spec.ClaimRef.Namespace != ns || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
				t.Errorf("PVC %s → %s, PV claimRef %+v, reclaim %s", pvc.Name, pvc.Spec.VolumeName, pv.Spec.ClaimRef, pv.Spec.PersistentVolumeReclaimPolicy)
			}
			nodesList := &corev1.NodeList{}
			if err := base.List(ctx, nodesList); err != nil {
				t.Fatal(err)
			}
			vol, err := pvresolve.Resolve(pv, pvresolve.Options{NodeByID: pvresolve.NodeIDs(nodesList.Items)})
			if vol.NeedsMountpointLookup() {
				vol, err = pvresolve.DatasetAtMountpoint(pv.Name, vol, []pvresolve.Mount{{Dataset: tt.want.dataset, Mountpoint: props["mountpoint"].Value}})
			}
			if err != nil || vol.Node != "n2" || vol.Dataset != tt.want.dataset {
				t.Errorf("the PV resolves to %+v, %v; want n2 and %s", vol, err, tt.want.dataset)
			}
			if tt.kind != z8rv1.RestoreKindZFSLocalPV {
				if props["mounted"].Value != "yes" || pv.Spec.Local == nil || pv.Spec.Local.Path != props["mountpoint"].Value || rr.Status.Path != pv.Spec.Local.Path {
					t.Errorf("local PV %+v, dataset %+v", pv.Spec.Local, props)
				}
				return
			}
			// zfs-localpv: the apiserver accepted the ZFSVolume, and the PV is
			// pinned with the node's UUID label.
			zv := &unstructured.Unstructured{}
			zv.SetGroupVersionKind(restore.ZFSVolumeGVK)
			if err := base.Get(ctx, client.ObjectKey{Namespace: restore.ZFSLocalPVNamespace, Name: pvName}, zv); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = base.Delete(ctx, zv) })
			spec, _, _ := unstructured.NestedStringMap(zv.Object, "spec")
			state, _, _ := unstructured.NestedString(zv.Object, "status", "state")
			if spec["ownerNodeID"] != nodeUUID || spec["poolName"] != "tank" || spec["volumeType"] != "DATASET" || spec["fsType"] != "zfs" || state != "Ready" {
				t.Errorf("ZFSVolume spec %v, state %q", spec, state)
			}
			expr := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]
			if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != pvresolve.DriverZFSLocalPV || pv.Spec.CSI.VolumeHandle != pvName ||
				expr.Key != pvresolve.TopologyZFSLocalPVNodeID || !slices.Equal(expr.Values, []string{nodeUUID}) {
				t.Errorf("zfs-localpv PV csi %+v, affinity %+v", pv.Spec.CSI, expr)
			}
		})
	}

	// The API server refuses a source naming both or neither form.
	t.Run("bad input: a source with both or neither forms is refused at create", func(t *testing.T) {
		for _, src := range []z8rv1.RestoreSource{{Node: "n2"}, {Replication: "rep", VolumeSnapshotContent: "c", Node: "n2"}} {
			rr := &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"}, Spec: z8rv1.ReplicaRestoreSpec{
				Source: src, Volume: z8rv1.RestoreVolume{PVCName: "x"}}}
			err := base.Create(ctx, rr)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "name exactly one of replication and volumeSnapshotContent") {
				t.Errorf("create with source %+v: %v", src, err)
			}
		}
	})
}

// mkfs creates a filesystem on a fake node.
func mkfs(t *testing.T, nodes *fakeNodes, node, fs string) {
	t.Helper()
	if err := nodes.nodes[node].ZFS().CreateFilesystem(context.Background(), fs, zfsexec.CreateOptions{}); err != nil {
		t.Fatal(fmt.Errorf("create %s on %s: %w", fs, node, err))
	}
}
