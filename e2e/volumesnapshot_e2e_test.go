//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/internal/volsnap"
)

const contentPrefix = "snapcontent-"

// TestVolumeSnapshot_TakenReplicatedDeletedRetained: a VolumeSnapshot of a
// zfs.z8r.dev PVC whose PVC asks for a replica on n2, with the real
// snapshot-controller. The ZFS snapshot appears on the PVC's node, the
// VolumeSnapshot turns ready with the snapshot's referenced bytes as its
// restoreSize, the same GUID appears on n2 and a pre-provisioned content
// shows the replica there. A second snapshot goes incrementally and takes
// over the hold that protects n2's base. Deleting the first VolumeSnapshot
// (class policy Delete) destroys it on both nodes and its contents go;
// with a Retain class the ZFS snapshot stays, even once the content is
// deleted too. A replica bound for a restore stays when its source goes,
// and the source snapshot, still its base, is destroyed deferred.
func TestVolumeSnapshot_TakenReplicatedDeletedRetained(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	mkdata(t, n1, "tank/vol1", "payload", 4<<20)
	ns := c.Kube.CreateNamespace(t, "vs")
	bindPVC(t, c, ns, "data", kubeenv.Z8rPV("pv-vol1", "n1", "tank/vol1", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2"})
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r-retain", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentRetain))

	// 1. Taken on the PVC's node, ready with the right restore size.
	c.Kube.Create(t, newVS(ns, "snap-1", "z8r", "data", nil))
	vs1 := waitVS(t, c, ns, "snap-1", "snap-1 ready", vsReady)
	snap1 := "tank/vol1@snapshot-" + string(vs1.UID)
	p1 := snapProps(t, n1, snap1, "referenced", "guid", "z8r.dev:volumesnapshotcontent", "z8r.dev:owner")
	if p1 == nil {
		t.Fatalf("%s does not exist on n1", snap1)
	}
	ref, _ := strconv.ParseInt(p1["referenced"], 10, 64)
	if vs1.Status.RestoreSize == nil || vs1.Status.RestoreSize.Value() != ref || ref < 4<<20 {
		t.Errorf("restoreSize %v, want the snapshot's referenced %d (>= 4 MiB)", vs1.Status.RestoreSize, ref)
	}
	if ct := vs1.Status.CreationTime; ct == nil || time.Since(ct.Time) > 5*time.Minute {
		t.Errorf("creationTime %v", ct)
	}
	content1 := contentPrefix + string(vs1.UID)
	if p1["z8r.dev:volumesnapshotcontent"] != content1 || p1["z8r.dev:owner"] == "z8r" {
		t.Errorf("snapshot properties %v: want the content's name and no owner mark", p1)
	}
	if exists(t, n2, snap1) && snapProps(t, n2, snap1, "guid")["guid"] != p1["guid"] {
		t.Errorf("n2 has %s with another GUID", snap1)
	}

	// 2. Replicated to n2 with the same GUID, shown by a replica content.
	vc1 := waitContent(t, c, content1, "snap-1 replicated to n2", replicated("n2", "tank/vol1"))
	if _, ok := vc1.Annotations[volsnap.AnnBeingCreated]; ok {
		t.Error("being-created annotation left on a ready content")
	}
	if vc1.Annotations[z8rv1.AnnotationNode] != "n1" || vc1.Annotations[z8rv1.AnnotationReplicateTo] != "n2:tank/vol1" {
		t.Errorf("content annotations %v: want the node and the request recorded", vc1.Annotations)
	}
	if g := snapProps(t, n2, snap1, "guid"); g["guid"] != p1["guid"] {
		t.Fatalf("replica on n2: %v, source guid %s", g, p1["guid"])
	}
	if ts := replication(vc1, "n2", "tank/vol1"); ts.GUID != p1["guid"] {
		t.Errorf("recorded replica guid %s, want %s", ts.GUID, p1["guid"])
	}
	replica1 := volsnap.ReplicaContentName(content1, volsnap.Target{Node: "n2", Dataset: "tank/vol1"})
	rc := waitContent(t, c, replica1, "the replica content to be ready", contentReady)
	if rc.Spec.Source.SnapshotHandle == nil || *rc.Spec.Source.SnapshotHandle != snap1 || rc.Labels[z8rv1.LabelNode] != "n2" ||
		rc.Annotations[z8rv1.AnnotationNode] != "n2" || rc.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
		t.Errorf("replica content: labels %v annotations %v spec %+v", rc.Labels, rc.Annotations, rc.Spec)
	}
	var replicas snapshotv1.VolumeSnapshotContentList
	if err := c.Kube.Client.List(ctx, &replicas, client.MatchingLabels{z8rv1.LabelReplicaOfUID: string(vc1.UID)}); err != nil || len(replicas.Items) != 1 {
		t.Errorf("replicas selected by label: %d, %v", len(replicas.Items), err)
	}
	if u := snapProps(t, n1, snap1, "userrefs")["userrefs"]; u != "1" {
		t.Errorf("n2's base on n1 has %s holds, want 1", u)
	}
	ev := eventsOf(t, c, content1)
	if !hasEvent(ev, z8rv1.EventSnapshotCreated) || !hasEvent(ev, z8rv1.EventReplicated) {
		t.Errorf("content events %v", ev)
	}

	// 3. A second snapshot goes incrementally; the hold moves to it.
	writeFile(t, n1, "tank/vol1", "more", 1<<20)
	c.Kube.Create(t, newVS(ns, "snap-2", "z8r", "data", nil))
	vs2 := waitVS(t, c, ns, "snap-2", "snap-2 ready", vsReady)
	snap2 := "tank/vol1@snapshot-" + string(vs2.UID)
	content2 := contentPrefix + string(vs2.UID)
	waitContent(t, c, content2, "snap-2 replicated", replicated("n2", "tank/vol1"))
	if g1, g2 := snapProps(t, n1, snap2, "guid"), snapProps(t, n2, snap2, "guid"); g2 == nil || g1["guid"] != g2["guid"] {
		t.Fatalf("snap-2: n1 %v n2 %v", g1, g2)
	}
	if !hasEventContaining(eventsOf(t, c, content2), z8rv1.EventReplicated, "incremental") {
		t.Errorf("snap-2 not sent incrementally: %v", eventsOf(t, c, content2))
	}
	if u1, u2 := snapProps(t, n1, snap1, "userrefs")["userrefs"], snapProps(t, n1, snap2, "userrefs")["userrefs"]; u1 != "0" || u2 != "1" {
		t.Errorf("holds: snap-1 %s, snap-2 %s; want the base hold moved to snap-2", u1, u2)
	}

	// 4. Delete: the snapshot goes on both nodes, and both contents go.
	deleteObj(t, c, vs1)
	waitContent(t, c, content1, "snap-1's content to go", gone)
	waitContent(t, c, replica1, "snap-1's replica content to go", gone)
	if exists(t, n1, snap1) || exists(t, n2, snap1) {
		t.Errorf("snap-1 still exists: n1 %v n2 %v", exists(t, n1, snap1), exists(t, n2, snap1))
	}
	if !exists(t, n1, snap2) || !exists(t, n2, snap2) {
		t.Error("deleting snap-1 touched snap-2")
	}
	if !hasEvent(eventsOf(t, c, content1), z8rv1.EventSnapshotDeleted) {
		t.Errorf("no %s event: %v", z8rv1.EventSnapshotDeleted, eventsOf(t, c, content1))
	}

	// 5. Retain: the ZFS snapshot outlives the VolumeSnapshot and the
	// content. (Of a PVC that asks for no replica; keep-1's empty
	// replicate-to is an error, reported, that asks for nothing.)
	mkdata(t, n1, "tank/vol3", "payload", 64<<10)
	bindPVC(t, c, ns, "plain", kubeenv.Z8rPV("pv-vol3", "n1", "tank/vol3", "1Gi"), nil)
	c.Kube.Create(t, newVS(ns, "keep-1", "z8r-retain", "plain", map[string]string{z8rv1.AnnotationReplicateTo: ""}))
	vs3 := waitVS(t, c, ns, "keep-1", "keep-1 ready", vsReady)
	poll(t, "keep-1's empty replicate-to reported", 30*time.Second, func(context.Context) (bool, error) {
		return hasEvent(eventsOf(t, c, "keep-1"), z8rv1.EventEmptyAnnotation), nil
	}, func() any { return eventsOf(t, c, "keep-1") })
	snap3 := "tank/vol3@snapshot-" + string(vs3.UID)
	content3 := contentPrefix + string(vs3.UID)
	deleteObj(t, c, vs3)
	waitVSGone(t, c, ns, "keep-1")
	vc3 := waitContent(t, c, content3, "keep-1's content to stay", func(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil })
	if vc3.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain || !exists(t, n1, snap3) {
		t.Fatalf("Retain: policy %s, snapshot exists %v", vc3.Spec.DeletionPolicy, exists(t, n1, snap3))
	}
	if exists(t, n2, snap3) {
		t.Error("keep-1 (nothing asks for a replica) was replicated")
	}
	deleteObj(t, c, vc3)
	waitContent(t, c, content3, "keep-1's content to go", gone)
	if !exists(t, n1, snap3) {
		t.Error("Retain: the ZFS snapshot was destroyed with its content")
	}

	// 6. A replica someone restores from (its content bound to a
	// VolumeSnapshot) outlives its source content; the source snapshot, n2's
	// incremental base, is destroyed deferred and goes when the next
	// replication moves the hold.
	replica2 := volsnap.ReplicaContentName(content2, volsnap.Target{Node: "n2", Dataset: "tank/vol1"})
	restore := &snapshotv1.VolumeSnapshot{}
	restore.Namespace, restore.Name = ns, replica2
	restore.Spec.Source.VolumeSnapshotContentName = new(replica2)
	c.Kube.Create(t, restore)
	waitVS(t, c, ns, replica2, "the VolumeSnapshot of the replica ready", vsReady)
	deleteObj(t, c, vs2)
	waitContent(t, c, content2, "snap-2's content to go", gone)
	if p := snapProps(t, n1, snap2, "defer_destroy", "userrefs"); p == nil || p["defer_destroy"] != "on" || p["userrefs"] != "1" {
		t.Fatalf("snap-2 on n1: %v; want it kept, held and marked for deferred destroy", p)
	}
	if !hasEvent(eventsOf(t, c, content2), z8rv1.EventSnapshotDeferred) {
		t.Errorf("no %s event: %v", z8rv1.EventSnapshotDeferred, eventsOf(t, c, content2))
	}
	waitContent(t, c, replica2, "the bound replica to stay", contentReady)
	c.Kube.Create(t, newVS(ns, "snap-4", "z8r", "data", nil))
	vs4 := waitVS(t, c, ns, "snap-4", "snap-4 ready", vsReady)
	waitContent(t, c, contentPrefix+string(vs4.UID), "snap-4 replicated", replicated("n2", "tank/vol1"))
	poll(t, "the deferred destroy", 30*time.Second, func(context.Context) (bool, error) { return !exists(t, n1, snap2), nil }, func() any {
		return snapProps(t, n1, snap2, "defer_destroy", "userrefs")
	})
	if !exists(t, n2, snap2) {
		t.Error("the bound replica's snapshot was destroyed on n2")
	}
}

func hasEventContaining(ev []string, reason, text string) bool {
	for _, e := range ev {
		if strings.Contains(e, " "+reason+":") && strings.Contains(e, text) {
			return true
		}
	}
	return false
}

// TestVolumeSnapshot_VeleroSequence plays Velero's CSI flow with plain API
// calls: a VolumeSnapshot in the Velero-labelled class becomes ready and is
// replicated; Velero flips the content to Retain and deletes the
// VolumeSnapshot, and the ZFS snapshot, the replica and both contents stay
// (replication is keyed on the content); at expiry Velero flips the
// content to Delete and deletes it: both contents go, and the snapshot, the
// replica's last received one and so the base of its next incremental, is
// destroyed deferred on both nodes (defer_destroy=on, held only by z8r's
// base and last-received holds). The next backup's snapshot is replicated
// incrementally from it; the holds move to the new one and ZFS finishes
// both deferred destroys.
func TestVolumeSnapshot_VeleroSequence(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	mkdata(t, n1, "tank/app", "payload", 2<<20)
	ns := c.Kube.CreateNamespace(t, "velero")
	bindPVC(t, c, ns, "app", kubeenv.Z8rPV("pv-app", "n1", "tank/app", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2"})
	// The sample class is the one Velero picks: its label says so.
	class := sampleClass(t)
	if class.Labels["velero.io/csi-volumesnapshot-class"] != "true" || class.Driver != z8rv1.DriverName {
		t.Fatalf("sample class %+v is not labelled for Velero", class)
	}
	c.Kube.Create(t, class)

	// Velero's backup: a VolumeSnapshot in the labelled class, waited on.
	vs := newVS(ns, "velero-app-x7k2p", class.Name, "app", nil)
	vs.Labels = map[string]string{"velero.io/backup-name": "nightly"}
	c.Kube.Create(t, vs)
	vs = waitVS(t, c, ns, vs.Name, "the backup's snapshot ready", vsReady)
	snap := "tank/app@snapshot-" + string(vs.UID)
	content := contentPrefix + string(vs.UID)
	replica := volsnap.ReplicaContentName(content, volsnap.Target{Node: "n2", Dataset: "tank/app"})
	waitContent(t, c, content, "replicated to n2", replicated("n2", "tank/app"))
	waitContent(t, c, replica, "the replica content ready", contentReady)
	guid := snapProps(t, n1, snap, "guid")["guid"]

	// Velero keeps the content and drops the VolumeSnapshot. The
	// VolumeSnapshot goes once the replica followed Retain: the controllers'
	// caches have the patch by then (the snapshot-controller deletes the
	// content itself if its cache still says Delete when it handles the
	// VolumeSnapshot's deletion, which z8r cannot prevent; z8r keeps the
	// ZFS snapshot either way).
	patchContent(t, c, content, func(vc *snapshotv1.VolumeSnapshotContent) {
		vc.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentRetain
	})
	waitContent(t, c, replica, "the replica to follow Retain", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		return vc != nil && vc.Spec.DeletionPolicy == snapshotv1.VolumeSnapshotContentRetain
	})
	deleteObj(t, c, vs)
	waitVSGone(t, c, ns, vs.Name)
	time.Sleep(2 * time.Second) // give a wrong deletion the chance to happen
	vc := waitContent(t, c, content, "the retained content", func(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil })
	if !volsnap.IsReady(vc) || !exists(t, n1, snap) || snapProps(t, n2, snap, "guid")["guid"] != guid {
		t.Fatalf("after the VolumeSnapshot's deletion: content ready %v, source %v, replica %v", volsnap.IsReady(vc), exists(t, n1, snap), snapProps(t, n2, snap, "guid"))
	}

	// The backup expires.
	patchContent(t, c, content, func(vc *snapshotv1.VolumeSnapshotContent) {
		vc.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentDelete
	})
	deleteObj(t, c, vc)
	waitContent(t, c, content, "the content to go", gone)
	waitContent(t, c, replica, "the replica content to go", gone)
	// The snapshot is n2's last received one, the base of its next
	// incremental: both ends are destroyed deferred, held only by z8r.
	id := volsnap.TargetID(volsnap.Target{Node: "n2", Dataset: "tank/app"})
	srcKept := deferredOrGone(t, n1, snap, snapname.HoldTag(id))
	repKept := deferredOrGone(t, n2, snap, snapname.ReplicaHoldTag(id))
	if !srcKept || !repKept {
		t.Errorf("the next incremental's base went: source kept %v, replica kept %v", srcKept, repKept)
	}
	if !hasEvent(eventsOf(t, c, content), z8rv1.EventSnapshotDeferred) || !hasEvent(eventsOf(t, c, replica), z8rv1.EventSnapshotDeferred) {
		t.Errorf("no %s events: source %v replica %v", z8rv1.EventSnapshotDeferred, eventsOf(t, c, content), eventsOf(t, c, replica))
	}

	// The next backup of the volume is replicated from it; the holds move
	// and ZFS finishes the deferred destroys on both nodes.
	writeFile(t, n1, "tank/app", "more", 1<<20)
	c.Kube.Create(t, newVS(ns, "velero-app-q9m4r", class.Name, "app", nil))
	next := waitVS(t, c, ns, "velero-app-q9m4r", "the next backup's snapshot ready", vsReady)
	nextSnap := "tank/app@snapshot-" + string(next.UID)
	nextContent := contentPrefix + string(next.UID)
	waitContent(t, c, nextContent, "the next backup replicated to n2", replicated("n2", "tank/app"))
	if !hasEventContaining(eventsOf(t, c, nextContent), z8rv1.EventReplicated, "incremental") {
		t.Errorf("the next backup was not sent incrementally from the deferred base: %v", eventsOf(t, c, nextContent))
	}
	poll(t, "the deferred destroys to finish", time.Minute, func(context.Context) (bool, error) {
		return !exists(t, n1, snap) && !exists(t, n2, snap), nil
	}, func() any {
		return []map[string]string{snapProps(t, n1, snap, "defer_destroy", "userrefs"), snapProps(t, n2, snap, "defer_destroy", "userrefs")}
	})
	if g1, g2 := snapProps(t, n1, nextSnap, "guid"), snapProps(t, n2, nextSnap, "guid"); g2 == nil || g1["guid"] != g2["guid"] {
		t.Fatalf("the next backup: n1 %v n2 %v", g1, g2)
	}
	if msg := heldBy(t, n1, nextSnap, snapname.HoldTag(id)); msg != "" {
		t.Errorf("the new base on the source: %s", msg)
	}
	if msg := heldBy(t, n2, nextSnap, snapname.ReplicaHoldTag(id)); msg != "" {
		t.Errorf("the new last received snapshot on n2: %s", msg)
	}
}

// TestVolumeSnapshot_ZFSLocalPVSnapshotReplicatedNeverDeleted: a PV shaped
// like one of OpenEBS zfs-localpv, whose VolumeSnapshot another snapshotter
// serves (the test plays it: it takes the ZFS snapshot as zfs-localpv
// names it and reports it on the content). Because the PVC asks, z8r
// replicates that snapshot into a parent dataset on n2. When the
// VolumeSnapshot is deleted, z8r deletes its replica content (the replica,
// n2's last received snapshot, is destroyed deferred and stays held by
// z8r on n2) and releases its hold on the source, but never destroys the
// other driver's snapshot, nor runs any destroy on the source node. After
// the other driver destroyed its snapshot, the volume's next snapshot is
// replicated to n2, the hold there moves to it and the deferred replica
// goes.
func TestVolumeSnapshot_ZFSLocalPVSnapshotReplicatedNeverDeleted(t *testing.T) {
	c, logs := startSnapshotCluster(t, cluster.Options{}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	const vol = "pvc-4f1c2d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"
	mkdata(t, n1, "tank/"+vol, "payload", 1<<20)
	ns := c.Kube.CreateNamespace(t, "localpv")
	bindPVC(t, c, ns, "db", kubeenv.ZFSLocalPV(vol, "n1", "tank", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/replicas/"})
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("openebs-zfs", kubeenv.DriverZFSLocalPV, snapshotv1.VolumeSnapshotContentDelete))
	// zfsLocalPV plays zfs-localpv for a new VolumeSnapshot: it takes the
	// ZFS snapshot as that driver names it, then writes the content's
	// status. It returns the VolumeSnapshot, its content's name and the
	// snapshot's short name.
	zfsLocalPV := func(name string) (*snapshotv1.VolumeSnapshot, string, string) {
		t.Helper()
		vs := newVS(ns, name, "openebs-zfs", "db", nil)
		c.Kube.Create(t, vs)
		content := contentPrefix + string(vs.UID)
		vc := waitContent(t, c, content, "the snapshot-controller to create the content", func(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil })
		short := "snapshot-" + string(vs.UID)
		if _, err := n1.Exec(ctx, "zfs", "snapshot", "tank/"+vol+"@"+short); err != nil {
			t.Fatal(err)
		}
		old := vc.DeepCopy()
		vc.Status = &snapshotv1.VolumeSnapshotContentStatus{
			SnapshotHandle: new(vol + "@" + short),
			ReadyToUse:     new(true),
			CreationTime:   new(time.Now().UnixNano()),
			RestoreSize:    new(int64(1 << 30)),
		}
		if err := c.Kube.Client.Status().Patch(ctx, vc, client.MergeFrom(old)); err != nil {
			t.Fatal(err)
		}
		waitVS(t, c, ns, name, name+" ready", vsReady)
		return vs, content, short
	}
	vs, content, short := zfsLocalPV("db-1")
	snap := "tank/" + vol + "@" + short

	const target = "tank/replicas/" + vol
	vc := waitContent(t, c, content, "replicated to n2", replicated("n2", target))
	guid := snapProps(t, n1, snap, "guid")["guid"]
	if g := snapProps(t, n2, target+"@"+short, "guid"); g["guid"] != guid {
		t.Fatalf("replica %s@%s: %v, source guid %s", target, short, g, guid)
	}
	replica := volsnap.ReplicaContentName(content, volsnap.Target{Node: "n2", Dataset: target})
	waitContent(t, c, replica, "the replica content ready", contentReady)
	if snapProps(t, n1, snap, "userrefs")["userrefs"] != "1" {
		t.Errorf("the replica's base is not held on n1")
	}
	if vc.Spec.Driver != kubeenv.DriverZFSLocalPV || vc.Annotations[z8rv1.AnnotationDataset] != "tank/"+vol {
		t.Errorf("content driver %s annotations %v", vc.Spec.Driver, vc.Annotations)
	}

	// The VolumeSnapshot goes; zfs-localpv (the test) has not acted yet.
	deleteObj(t, c, vs)
	waitContent(t, c, replica, "the replica content to go", gone)
	vc = waitContent(t, c, content, "z8r to release the content", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		return vc != nil && vc.DeletionTimestamp != nil && !contains(vc.Finalizers, "z8r.dev/release-holds")
	})
	if !contains(vc.Finalizers, volsnap.FinalizerBound) {
		t.Errorf("z8r removed the other snapshotter's finalizer: %v", vc.Finalizers)
	}
	// z8r lets go of the other driver's snapshot, so it cannot stay n2's
	// incremental base: the replica whose deletion was asked for goes too
	// (z8r releases its hold on n2 before the source's), leaving n2 a
	// pristine replica for the next full receive.
	id := volsnap.TargetID(volsnap.Target{Node: "n2", Dataset: target})
	poll(t, "n2's replica of db-1 to go with its content", time.Minute, func(context.Context) (bool, error) {
		return !exists(t, n2, target+"@"+short), nil
	}, func() any { return snapProps(t, n2, target+"@"+short, "defer_destroy", "userrefs") })
	time.Sleep(2 * time.Second)
	if p := snapProps(t, n1, snap, "userrefs"); p == nil || p["userrefs"] != "0" {
		t.Fatalf("the other driver's snapshot: %v (want it present, without z8r's hold)", p)
	}
	if cmds := commandsNaming(t, logs["n1"], "destroy"); len(cmds) > 0 {
		t.Errorf("z8r ran destroys on the source node: %v", cmds)
	}
	if cmds := commandsNaming(t, logs["n1"], "zfs snapshot"); len(cmds) > 0 {
		t.Errorf("z8r took snapshots on the source node: %v", cmds)
	}

	// zfs-localpv's deletion then succeeds.
	if _, err := n1.Exec(ctx, "zfs", "destroy", snap); err != nil {
		t.Fatalf("the other driver cannot destroy its snapshot: %v", err)
	}
	patchContent(t, c, content, func(vc *snapshotv1.VolumeSnapshotContent) {
		vc.Finalizers = nil
	})
	waitContent(t, c, content, "the content to go", gone)

	// The next snapshot of the volume is replicated to n2 (in full: the
	// chain ended with the other driver's snapshot), and held there.
	writeFile(t, n1, "tank/"+vol, "more", 1<<20)
	_, content2, short2 := zfsLocalPV("db-2")
	vc2 := waitContent(t, c, content2, "db-2's replication to n2 to settle", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		st := replication(vc, "n2", target).State
		return st == volsnap.StateSynced || st == volsnap.StateDiverged
	})
	if ts := replication(vc2, "n2", target); ts.State != volsnap.StateSynced {
		t.Fatalf("db-2 not replicated after the other driver destroyed db-1, n2's base: %s: %s (n2's old replica %v)",
			ts.State, ts.Error, snapProps(t, n2, target+"@"+short, "defer_destroy", "userrefs"))
	}
	if g1, g2 := snapProps(t, n1, "tank/"+vol+"@"+short2, "guid"), snapProps(t, n2, target+"@"+short2, "guid"); g2 == nil || g1["guid"] != g2["guid"] {
		t.Fatalf("db-2: n1 %v n2 %v", g1, g2)
	}
	if msg := heldBy(t, n2, target+"@"+short2, snapname.ReplicaHoldTag(id)); msg != "" {
		t.Errorf("n2's new last received snapshot: %s", msg)
	}
	if cmds := commandsNaming(t, logs["n1"], "destroy"); len(cmds) > 0 {
		t.Errorf("z8r ran destroys on the source node: %v", cmds)
	}
}

// sampleClass reads config/samples/snapshot_v1_volumesnapshotclass.yaml.
func sampleClass(t *testing.T) *snapshotv1.VolumeSnapshotClass {
	t.Helper()
	root, err := zfsnodes.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "config", "samples", "snapshot_v1_volumesnapshotclass.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var class snapshotv1.VolumeSnapshotClass
	if err := yaml.UnmarshalStrict(b, &class); err != nil {
		t.Fatalf("sample VolumeSnapshotClass: %v", err)
	}
	return &class
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestVolumeSnapshot_AgentCrashLeaksNothing: the node's agent is killed
// right after it took a content's ZFS snapshot, before the content's
// status records it. The content stays marked being-created (so a
// deletion would wait) while the agent is down; once the agent is back the
// retry finds the snapshot by its name and adopts it: the content ends
// ready with exactly one ZFS snapshot.
func TestVolumeSnapshot_AgentCrashLeaksNothing(t *testing.T) {
	var c *cluster.Cluster
	killed := make(chan string, 1)
	var once sync.Once
	hooks := controllers.SnapshotHooks{AfterSnapshot: func(_ context.Context, _, snap string) {
		once.Do(func() {
			c.Agents["n1"].Kill()
			killed <- snap
		})
	}}
	c, logs := startSnapshotCluster(t, cluster.Options{SnapshotHooks: hooks}, "n1")
	n1 := c.Nodes["n1"]
	mkdata(t, n1, "tank/crash", "payload", 1<<20)
	ns := c.Kube.CreateNamespace(t, "crash")
	bindPVC(t, c, ns, "data", kubeenv.Z8rPV("pv-crash", "n1", "tank/crash", "1Gi"), nil)
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	vs := newVS(ns, "snap", "z8r", "data", nil)
	c.Kube.Create(t, vs)

	var snap string
	select {
	case snap = <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the snapshotter never took the snapshot")
	}
	content := contentPrefix + string(vs.UID)
	if want := "tank/crash@snapshot-" + string(vs.UID); snap != want {
		t.Fatalf("snapshot %s, want %s", snap, want)
	}
	// While the agent is down: marked, not ready, snapshot on the node.
	vc := waitContent(t, c, content, "the failed status read to be reported", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		return vc != nil && vc.Status != nil && vc.Status.Error != nil
	})
	time.Sleep(3 * time.Second)
	vc = waitContent(t, c, content, "the content", func(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil })
	if _, ok := vc.Annotations[volsnap.AnnBeingCreated]; !ok {
		t.Errorf("being-created annotation removed while the outcome is unknown: %v", vc.Annotations)
	}
	if volsnap.IsReady(vc) || (vc.Status != nil && vc.Status.SnapshotHandle != nil) {
		t.Errorf("content status %+v while the agent is down", vc.Status)
	}
	if !exists(t, n1, snap) {
		t.Fatalf("%s was not taken before the crash", snap)
	}

	if err := c.Agents["n1"].Start(); err != nil {
		t.Fatal(err)
	}
	waitVS(t, c, ns, "snap", "the snapshot ready after the agent's restart", vsReady)
	vc = waitContent(t, c, content, "being-created to be cleared", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		_, marked := vc.Annotations[volsnap.AnnBeingCreated]
		return !marked
	})
	if vc.Status.SnapshotHandle == nil || *vc.Status.SnapshotHandle != snap {
		t.Errorf("snapshotHandle %v, want %s", vc.Status.SnapshotHandle, snap)
	}
	snaps := snapGUIDs(t, n1, "tank/crash")
	if len(snaps) != 1 || snaps["snapshot-"+string(vs.UID)] == 0 {
		t.Errorf("snapshots of tank/crash %v: want exactly %s", snaps, snap)
	}
	t.Logf("snapshot commands the agent ran: %v", commandsNaming(t, logs["n1"], "zfs snapshot"))
}

// TestVolumeSnapshot_BadInputRunsNothing: VolumeSnapshots of a PVC whose
// volume is not a ZFS dataset z8r can resolve, of a volume on a node
// without a z8r agent, of a dataset in a pool the agent does not serve,
// and with malformed replicate-to annotations (on the VolumeSnapshot, on
// the PVC) each get a clear error on the VolumeSnapshot; a PVC with a
// malformed schedule gets a Warning and no VolumeSnapshot. No agent runs
// a single command about any of these volumes.
func TestVolumeSnapshot_BadInputRunsNothing(t *testing.T) {
	c, logs := startSnapshotCluster(t, cluster.Options{SnapshotDrivers: []string{"nfs.csi.k8s.io"}}, "n1", "n2")
	ctx := ctxT(t)
	n1 := c.Nodes["n1"]
	mkdata(t, n1, "tank/good", "payload", 64<<10)
	ns := c.Kube.CreateNamespace(t, "bad")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("nfs", "nfs.csi.k8s.io", snapshotv1.VolumeSnapshotContentDelete))

	nfs := kubeenv.Z8rPV("pv-nfs", "n1", "x", "1Gi")
	nfs.Spec.CSI.Driver, nfs.Spec.CSI.VolumeHandle, nfs.Spec.CSI.VolumeAttributes = "nfs.csi.k8s.io", "nfs.example.com:/export/share", nil
	bindPVC(t, c, ns, "nfs", nfs, nil)
	bindPVC(t, c, ns, "ghost", kubeenv.Z8rPV("pv-ghost", "ghost", "tank/ghost", "1Gi"), nil)
	bindPVC(t, c, ns, "otherpool", kubeenv.Z8rPV("pv-otherpool", "n1", "data/vol", "1Gi"), nil)
	bindPVC(t, c, ns, "good", kubeenv.Z8rPV("pv-good", "n1", "tank/good", "1Gi"), nil)
	bindPVC(t, c, ns, "badpvc", kubeenv.Z8rPV("pv-badpvc", "n1", "tank/good2", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "N2,n3"})
	bindPVC(t, c, ns, "badsched", kubeenv.Z8rPV("pv-badsched", "n1", "tank/good3", "1Gi"),
		map[string]string{z8rv1.AnnotationSchedule: "every tuesday", z8rv1.AnnotationRetention: "last=3"})

	cases := []struct {
		vs, pvc string
		ann     map[string]string
		want    string
	}{
		{"of-nfs", "nfs", nil, "not a ZFS-backed volume"},
		{"of-ghost", "ghost", nil, "node ghost: node has no Z8RNode"},
		{"of-otherpool", "otherpool", nil, "pool data, which the z8r agent on node n1 does not serve"},
		{"bad-target", "good", map[string]string{z8rv1.AnnotationReplicateTo: "n2:"}, "invalid z8r.dev/replicate-to: VolumeSnapshot " + ns + "/bad-target"},
		{"onto-itself", "good", map[string]string{z8rv1.AnnotationReplicateTo: "n1"}, "onto itself"},
		{"bad-pvc", "badpvc", nil, "invalid z8r.dev/replicate-to: PersistentVolumeClaim " + ns + "/badpvc"},
	}
	for _, tc := range cases {
		c.Kube.Create(t, newVS(ns, tc.vs, classFor(tc.pvc), tc.pvc, tc.ann))
	}
	for _, tc := range cases {
		vs := waitVS(t, c, ns, tc.vs, tc.vs+" to report an error", func(vs *snapshotv1.VolumeSnapshot) bool { return vsError(vs) != "" })
		if msg := vsError(vs); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q, want it to say %q", tc.vs, msg, tc.want)
		} else {
			t.Logf("%s: %s", tc.vs, msg)
		}
		if vsReady(vs) {
			t.Errorf("%s is ready", tc.vs)
		}
		vc := waitContent(t, c, contentPrefix+string(vs.UID), "the content", func(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil })
		if _, ok := vc.Annotations[volsnap.AnnBeingCreated]; ok {
			t.Errorf("%s: content marked being-created though no node was asked", tc.vs)
		}
		if !hasEvent(eventsOf(t, c, tc.vs), z8rv1.EventSnapshotFailed) {
			t.Errorf("%s: no %s event on the VolumeSnapshot", tc.vs, z8rv1.EventSnapshotFailed)
		}
	}
	// The malformed schedule: a Warning on the PVC, no VolumeSnapshot.
	poll(t, "the schedule warning", time.Minute, func(context.Context) (bool, error) {
		return hasEvent(eventsOf(t, c, "badsched"), z8rv1.EventInvalidPVCAnnotation), nil
	}, func() any { return eventsOf(t, c, "badsched") })
	var list snapshotv1.VolumeSnapshotList
	if err := c.Kube.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCSchedule}); err != nil || len(list.Items) != 0 {
		t.Errorf("scheduled VolumeSnapshots despite a malformed schedule: %d %v", len(list.Items), err)
	}

	for node, path := range logs {
		for _, s := range []string{"tank/good", "ghost", "data/vol", "export", "zfs snapshot", "destroy", "hold"} {
			if cmds := commandsNaming(t, path, s); len(cmds) > 0 {
				t.Errorf("agent on %s ran %v", node, cmds)
			}
		}
	}
	if got := len(snapGUIDs(t, n1, "tank/good")); got != 0 {
		t.Errorf("tank/good has %d snapshots", got)
	}
}

func classFor(pvc string) string {
	if pvc == "nfs" {
		return "nfs"
	}
	return "z8r"
}
