//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// waitRestore polls a ReplicaRestore until cond holds.
func waitRestore(t *testing.T, c *cluster.Cluster, ns, name, what string, cond func(*z8rv1.ReplicaRestore) bool) *z8rv1.ReplicaRestore {
	t.Helper()
	rr := &z8rv1.ReplicaRestore{}
	poll(t, what, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, rr); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return cond(rr), nil
	}, func() any { return rr.Status })
	return rr
}

// TestRestore_VolumeSnapshotReplicaIntoNewPVC: a VolumeSnapshot of a PVC on
// n1 is replicated to n2 (real agents, zfs-fuse, the real
// snapshot-controller); a ReplicaRestore of n2's replica content makes a
// clone on n2 with the snapshot's data (not the data written on n1 since), a
// `local` PV at the clone's mountpoint pinned to n2, and a PVC pre-bound to
// it whose name the PV's claimRef holds, which the real PV controller
// (kube-controller-manager) then binds: both Bound, the claimRef holding the
// PVC's UID. The replica itself is untouched.
// A second ReplicaRestore into the same dataset, and one of a content whose
// snapshot n2 does not have, are refused (DatasetExists, SnapshotNotFound)
// and n2 runs nothing but reads for them.
func TestRestore_VolumeSnapshotReplicaIntoNewPVC(t *testing.T) {
	c, logs := startSnapshotCluster(t, cluster.Options{ControllerManager: kubeenv.VolumeControllers()}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	sum := mkdata(t, n1, "tank/vol1", "payload", 2<<20)
	ns := c.Kube.CreateNamespace(t, "restore")
	bindPVC(t, c, ns, "data", kubeenv.Z8rPV("pv-restore-src", "n1", "tank/vol1", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2"})
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentRetain))
	c.Kube.Create(t, newVS(ns, "snap-1", "z8r", "data", nil))
	vs := waitVS(t, c, ns, "snap-1", "snap-1 ready", vsReady)
	snap := "tank/vol1@snapshot-" + string(vs.UID)
	content := contentPrefix + string(vs.UID)
	waitContent(t, c, content, "snap-1 replicated to n2", replicated("n2", "tank/vol1"))
	replica := volsnap.ReplicaContentName(content, volsnap.Target{Node: "n2", Dataset: "tank/vol1"})
	waitContent(t, c, replica, "the replica content to be ready", contentReady)
	// Written after the snapshot: must not be in the restore.
	writeFile(t, n1, "tank/vol1", "payload", 1<<20)
	replicaGUID := snapProps(t, n2, snap, "guid")["guid"]
	before := len(commands(t, logs["n2"]))

	target := ns + "-app"
	rr := &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Spec: z8rv1.ReplicaRestoreSpec{
		Source:  z8rv1.RestoreSource{VolumeSnapshotContent: replica, Node: "n2"},
		Dataset: "tank/" + target,
		Volume:  z8rv1.RestoreVolume{PVCName: "app-data"}}}
	c.Kube.Create(t, rr)
	rr = waitRestore(t, c, ns, "app", "the restore to complete", func(r *z8rv1.ReplicaRestore) bool { return r.Status.Phase == z8rv1.RestoreCompleted })
	ds := "tank/" + target
	if rr.Status.Dataset != ds || rr.Status.Snapshot != snap || rr.Status.SnapshotGUID != replicaGUID || rr.Status.Node != "n2" {
		t.Errorf("status %+v; want %s from %s (GUID %s) on n2", rr.Status, ds, snap, replicaGUID)
	}

	// The clone on n2: a clone of the replica snapshot with its data.
	p := snapProps(t, n2, ds, "origin", "mountpoint", "mounted", z8rv1.PropRestoredFrom, z8rv1.PropRestore)
	if p == nil || p["origin"] != snap || p["mounted"] != "yes" || p[z8rv1.PropRestoredFrom] != "n2:"+snap || p[z8rv1.PropRestore] != string(rr.UID) {
		t.Fatalf("%s on n2: %v", ds, p)
	}
	data, err := os.ReadFile(n2.Path(filepath.Join(p["mountpoint"], "payload")))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(data) != sum {
		t.Errorf("the restored payload differs from the snapshot's")
	}
	if g := snapProps(t, n2, snap, "guid")["guid"]; g != replicaGUID {
		t.Errorf("the replica snapshot changed: GUID %s, was %s", g, replicaGUID)
	}

	// The PV: local, at the clone's mountpoint, pinned to n2, Retain, and
	// its claimRef names the PVC; the PVC is pre-bound to it.
	var pv corev1.PersistentVolume
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: rr.Status.PVName}, &pv); err != nil {
		t.Fatal(err)
	}
	aff := pv.Spec.NodeAffinity
	if pv.Spec.Local == nil || pv.Spec.Local.Path != p["mountpoint"] || aff == nil || aff.Required == nil ||
		len(aff.Required.NodeSelectorTerms) != 1 || len(aff.Required.NodeSelectorTerms[0].MatchExpressions) != 1 {
		t.Fatalf("PV %s: local %+v, affinity %+v", pv.Name, pv.Spec.Local, aff)
	}
	if e := aff.Required.NodeSelectorTerms[0].MatchExpressions[0]; e.Key != corev1.LabelHostname || e.Operator != corev1.NodeSelectorOpIn || !slices.Equal(e.Values, []string{"n2"}) {
		t.Errorf("PV affinity %+v, want kubernetes.io/hostname In [n2]", e)
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "app-data" || pv.Spec.ClaimRef.Namespace != ns || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("PV claimRef %+v, reclaim %s", pv.Spec.ClaimRef, pv.Spec.PersistentVolumeReclaimPolicy)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-data"}, &pvc); err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.VolumeName != pv.Name || pvc.Spec.Resources.Requests.Storage().Cmp(*pv.Spec.Capacity.Storage()) != 0 {
		t.Errorf("PVC volumeName %q request %v; PV %s capacity %v", pvc.Spec.VolumeName, pvc.Spec.Resources.Requests.Storage(), pv.Name, pv.Spec.Capacity.Storage())
	}
	// The real PV controller accepts the pair: both Bound, the claimRef
	// completed with the PVC's UID.
	poll(t, "the PV controller to bind the restored PVC", time.Minute, func(ctx context.Context) (bool, error) {
		if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(&pv), &pv); err != nil {
			return false, err
		}
		if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(&pvc), &pvc); err != nil {
			return false, err
		}
		return pvc.Status.Phase == corev1.ClaimBound && pv.Status.Phase == corev1.VolumeBound &&
			pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.UID == pvc.UID, nil
	}, func() any {
		return fmt.Sprintf("PVC phase %q uid %s; PV phase %q claimRef %+v", pvc.Status.Phase, pvc.UID, pv.Status.Phase, pv.Spec.ClaimRef)
	})
	if ev := eventsOf(t, c, "app"); !hasEvent(ev, z8rv1.EventRestored) {
		t.Errorf("restore events %v", ev)
	}
	// What n2's agent ran for the restore: one clone, nothing destroyed.
	var mutated []string
	for _, cmd := range commands(t, logs["n2"])[before:] {
		if strings.HasPrefix(cmd, "zfs clone") || strings.HasPrefix(cmd, "zfs destroy") || strings.HasPrefix(cmd, "zfs rollback") || strings.Contains(cmd, ds) && !strings.HasPrefix(cmd, "zfs get") {
			mutated = append(mutated, cmd)
		}
	}
	want := "zfs clone -o z8r.dev:restore=" + string(rr.UID) + " -o z8r.dev:restored-from=n2:" + snap + " " + snap + " " + ds
	if !slices.Equal(mutated, []string{want}) {
		t.Errorf("n2 ran %q for the restore, want only %q", mutated, want)
	}

	// A second restore into the same dataset is refused; nothing runs.
	before = len(commands(t, logs["n2"]))
	again := &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "again", Namespace: ns}, Spec: z8rv1.ReplicaRestoreSpec{
		Source:  z8rv1.RestoreSource{VolumeSnapshotContent: replica, Node: "n2"},
		Dataset: ds,
		Volume:  z8rv1.RestoreVolume{PVCName: "again-data"}}}
	c.Kube.Create(t, again)
	waitRestore(t, c, ns, "again", "the second restore to be refused", func(r *z8rv1.ReplicaRestore) bool {
		return r.Status.Phase == z8rv1.RestoreFailed && strings.Contains(r.Status.Message, "exists already")
	})
	for _, cmd := range commands(t, logs["n2"])[before:] {
		if !strings.HasPrefix(cmd, "zfs get") && !strings.HasPrefix(cmd, "zpool get") {
			t.Errorf("a refused restore ran %q on n2", cmd)
		}
	}
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "again-data"}, &corev1.PersistentVolumeClaim{}); !strings.Contains(errString(err), "not found") {
		t.Errorf("a refused restore made its PVC: %v", err)
	}

	// A content naming a snapshot n2 does not have: refused, nothing runs.
	missing := "tank/vol1@snapshot-does-not-exist"
	c.Kube.Create(t, &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "restore-missing", Annotations: map[string]string{z8rv1.AnnotationNode: "n2"}},
		Spec: snapshotv1.VolumeSnapshotContentSpec{Driver: z8rv1.DriverName, DeletionPolicy: snapshotv1.VolumeSnapshotContentRetain,
			Source:            snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: &missing},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: ns, Name: "restore-missing"}}})
	before = len(commands(t, logs["n2"]))
	c.Kube.Create(t, &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: ns}, Spec: z8rv1.ReplicaRestoreSpec{
		Source: z8rv1.RestoreSource{VolumeSnapshotContent: "restore-missing", Node: "n2"},
		Volume: z8rv1.RestoreVolume{PVCName: "missing-data"}}})
	refused := waitRestore(t, c, ns, "missing", "the restore of a missing snapshot to be refused", func(r *z8rv1.ReplicaRestore) bool {
		return r.Status.Phase == z8rv1.RestoreFailed
	})
	if cond := meta.FindStatusCondition(refused.Status.Conditions, z8rv1.ConditionReady); cond == nil || cond.Reason != z8rv1.ReasonSnapshotNotFound ||
		!strings.Contains(refused.Status.Message, missing) {
		t.Errorf("refusal %+v: %s", cond, refused.Status.Message)
	}
	for _, cmd := range commands(t, logs["n2"])[before:] {
		if !strings.HasPrefix(cmd, "zfs get") && !strings.HasPrefix(cmd, "zpool get") {
			t.Errorf("a refused restore ran %q on n2", cmd)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
