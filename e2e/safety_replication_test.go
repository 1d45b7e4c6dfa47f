//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/internal/volsnap"
)

const z8rLabel = "z8r.dev/replication"

// TestSafety_SecondReplicationOfADatasetIsRefused is issue 15's case 5:
// node annotations replicate n1's tank/shared; later a PVC on a `local` PV
// of the same dataset asks for a replication too. The second (later)
// DatasetReplication is refused: Ready=False reason Conflict and a Warning
// naming the first; it takes no snapshot and prunes nothing, so the first's
// snapshots all stay. (Before, both ran and each pruned the other's
// history.)
func TestSafety_SecondReplicationOfADatasetIsRefused(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, SnapshotController: true, Nodes: []cluster.NodeSpec{
		{Name: "n1", Labels: map[string]string{z8rLabel: "true"},
			Annotations: map[string]string{"z8r.dev/master": "tank/shared", "z8r.dev/schedule": "1h", "z8r.dev/retention": "last=1"}},
		{Name: "n2", Labels: map[string]string{z8rLabel: "true"}, Annotations: map[string]string{"z8r.dev/replica": "tank/shared"}},
	}})
	n1 := c.Nodes["n1"]
	mkdata(t, n1, "tank/shared", "payload", 256<<10)
	allowTenantTargets(t, c, "tank", "n2")
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	first := policy.ID("n1", "tank/shared")
	waitFor(t, c, first, "the node-annotation replication synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "n2").LastSnapshot != ""
	})
	before := snapGUIDs(t, n1, "tank/shared")
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution

	mp, err := n1.ZFS().Get(ctx, "tank/shared", "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	ns := c.Kube.CreateNamespace(t, "claims")
	bindPVC(t, c, ns, "data", kubeenv.LocalPV("pv-shared", "n1", mp["mountpoint"].Value, "1Gi"), map[string]string{
		z8rv1.AnnotationReplicateTo: "n2:tank/copies/", z8rv1.AnnotationSchedule: "1h", z8rv1.AnnotationRetention: "last=1",
	})
	second := controllers.PVCReplicationName(ns, "data")
	dr := waitFor(t, c, second, "the second replication refused", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		cond := meta.FindStatusCondition(dr.Status.Conditions, "Ready")
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "Conflict"
	})
	if msg := meta.FindStatusCondition(dr.Status.Conditions, "Ready").Message; !strings.Contains(msg, first) {
		t.Errorf("condition message %q does not name the first replication %s", msg, first)
	}
	ev, _ := c.Events(ctx, second)
	if !hasEventContaining(ev, z8rv1.EventReplicationConflict, "DatasetReplication "+first) {
		t.Errorf("no %s Warning naming %s: %v", z8rv1.EventReplicationConflict, first, ev)
	}

	// Time passes and the second is asked to sync: it stays refused, takes
	// nothing and prunes nothing of the first's.
	for i := 0; i < 2; i++ {
		nextPeriod(t, c, clock, second, time.Hour+time.Minute)
		time.Sleep(2 * time.Second)
	}
	for _, s := range snapshotsOf(t, n1, "tank/shared") {
		if s.IsSnapshot() && s.LocalProps[snapname.PolicyProp] == second {
			t.Errorf("the refused replication took %s", s.Name)
		}
	}
	after := snapGUIDs(t, n1, "tank/shared")
	for name, guid := range before {
		if after[name] != guid {
			t.Errorf("the first replication's snapshot @%s is gone (before %v, after %v)", name, before, after)
		}
	}
	if exists(t, c.Nodes["n2"], "tank/copies/shared") {
		t.Error("the refused replication wrote its target")
	}
}

// TestSafety_RemovedTargetKeepsItsBaseForAGracePeriod is issue 15's case 7.
// A target removed from a DatasetReplication keeps its base held on the
// source for the grace period (10 minutes of the controller's clock), so
// a new snapshot and last=1 retention do not prune it, and re-adding the
// target syncs incrementally instead of failing with NoCommonSnapshot.
// After the grace period the hold goes. Deleting the replication right
// after removing a target releases that target's hold too (the finalizer
// releases the union of spec and status targets): no z8r hold is left.
func TestSafety_RemovedTargetKeepsItsBaseForAGracePeriod(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1 := c.Nodes["n1"]
	mkdata(t, n1, "tank/r", "payload", 256<<10)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "grace"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/r"}, Schedule: "5m", Retention: "last=1",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	synced := func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "n2").LastSnapshot != "" && target(dr, "n2").RemovedAt == nil
	}
	base := target(waitFor(t, c, name, "the first sync", 2*time.Minute, synced), "n2").LastSnapshot

	setTargets := func(targets []z8rv1.ReplicationTarget) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var dr z8rv1.DatasetReplication
			if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
				return err
			}
			dr.Spec.Targets = targets
			return c.Kube.Client.Update(ctx, &dr)
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Removed: listed with removedAt, base still held.
	setTargets(nil)
	waitFor(t, c, name, "the removed target listed with removedAt", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").RemovedAt != nil
	})
	// A new snapshot; last=1 would prune the old base if it were not held.
	writeFile(t, n1, "tank/r", "more", 64<<10)
	nextPeriod(t, c, clock, name, 6*time.Minute)
	waitFor(t, c, name, "a new snapshot while the target is removed", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.LastSnapshot != base
	})
	if held := userRefs(t, n1, "tank/r"); held[base] != 1 {
		t.Fatalf("within the grace period the removed target's base @%s has holds %v, want 1", base, held)
	}

	// Re-added within the grace period: incremental, not NoCommonSnapshot.
	setTargets([]z8rv1.ReplicationTarget{{Node: "n2"}})
	dr := waitFor(t, c, name, "the re-added target synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n2")
		return (synced(dr) && ts.LastSnapshot != base) || ts.State == z8rv1.TargetDiverged || ts.ConsecutiveFailures > 2
	})
	if ts := target(dr, "n2"); ts.State != z8rv1.TargetSynced || ts.LastSyncKind != "incremental" {
		t.Fatalf("re-added target: state %s kind %s error %q; want Synced incremental", ts.State, ts.LastSyncKind, ts.LastError)
	}

	// Removed again and not re-added: after the grace period the hold goes.
	setTargets(nil)
	waitFor(t, c, name, "the removed target listed with removedAt", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").RemovedAt != nil
	})
	if total(userRefs(t, n1, "tank/r")) == 0 {
		t.Fatal("the hold went at once, before the grace period")
	}
	nextPeriod(t, c, clock, name, 11*time.Minute)
	waitFor(t, c, name, "the removed target released after the grace period", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return len(dr.Status.Targets) == 0
	})
	if held := userRefs(t, n1, "tank/r"); total(held) != 0 {
		t.Errorf("after the grace period: holds %v, want none", held)
	}
	if held := userRefs(t, c.Nodes["n2"], "tank/r"); total(held) != 0 {
		t.Errorf("after the grace period: holds on the replica %v, want none", held)
	}

	// Deleted right after a target is removed: nothing stays held. (A new
	// target dataset: the old one's base went with the grace period, so it
	// has nothing in common with the source any more.)
	setTargets([]z8rv1.ReplicationTarget{{Node: "n2", Dataset: "tank/r2"}})
	waitFor(t, c, name, "a new target synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "n2").Dataset == "tank/r2"
	})
	if total(userRefs(t, n1, "tank/r")) == 0 {
		t.Fatal("no base held for the target")
	}
	setTargets(nil)
	deleteObj(t, c, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}})
	poll(t, "the replication to go", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.Replication(ctx, name)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}, func() any { return eventsOf(t, c, name) })
	if held := userRefs(t, n1, "tank/r"); total(held) != 0 {
		t.Errorf("after deleting the replication right after removing its target: holds %v, want none", held)
	}
	if held := userRefs(t, c.Nodes["n2"], "tank/r2"); total(held) != 0 {
		t.Errorf("after deleting the replication: holds on the replica %v, want none", held)
	}
}

// userRefs returns the number of holds on each snapshot of fs.
func userRefs(t *testing.T, n *zfsnodes.Node, fs string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, s := range snapshotsOf(t, n, fs) {
		if s.IsSnapshot() {
			out[s.ShortName()] = s.UserRefs
		}
	}
	return out
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// TestSafety_FakeReplicaContentDestroysNothing is issue 15's case 8
// (second part): a pre-provisioned VolumeSnapshotContent labelled and
// annotated like one of z8r's replicas, pointing at a snapshot z8r did not
// create (someone's own snapshot on n2), with deletionPolicy Delete. z8r
// imports it, but deleting it destroys nothing: the snapshot lacks z8r's
// locally set mark for that content. A Warning says so. (Before, z8r
// destroyed the snapshot.) z8r's own replicas, marked when received, are
// still destroyed with their content; while the target keeps its last
// received one as the next base (deferred destroy), the source keeps it
// too, so the next snapshot replicates incrementally, and then both go.
func TestSafety_FakeReplicaContentDestroysNothing(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{Clock: clocktest.New(time.Now())}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	mkdata(t, n2, "tank/mine", "payload", 64<<10)
	if _, err := n2.Exec(ctx, "zfs", "snapshot", "tank/mine@keep"); err != nil {
		t.Fatal(err)
	}
	// The received property a stream could carry is not a local mark.
	fake := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "fake-replica",
			Labels:      map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByReplication, z8rv1.LabelReplicaOfUID: "0000-fake"},
			Annotations: map[string]string{z8rv1.AnnotationReplicaOf: "snapcontent-x", z8rv1.AnnotationNode: "n2", z8rv1.AnnotationDataset: "tank/mine"},
			Finalizers:  []string{volsnap.FinalizerBound},
		},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			Driver:            z8rv1.DriverName,
			DeletionPolicy:    snapshotv1.VolumeSnapshotContentDelete,
			Source:            snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: new("tank/mine@keep")},
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: "default", Name: "fake-replica"},
		},
	}
	c.Kube.Create(t, fake)
	waitContent(t, c, "fake-replica", "the fake replica imported", contentReady)
	deleteObj(t, c, fake)
	waitContent(t, c, "fake-replica", "the fake replica content to go", gone)
	if !exists(t, n2, "tank/mine@keep") {
		t.Fatal("deleting a content that only looks like z8r's replica destroyed a snapshot z8r did not create")
	}
	if ev := eventsOf(t, c, "fake-replica"); !hasEvent(ev, z8rv1.EventReplicaNotOwned) {
		t.Errorf("no %s Warning: %v", z8rv1.EventReplicaNotOwned, ev)
	}

	// z8r's own replica is marked and goes with its content.
	mkdata(t, n1, "tank/vol", "payload", 64<<10)
	ns := c.Kube.CreateNamespace(t, "own")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2"})
	c.Kube.Create(t, newVS(ns, "s1", "z8r", "vol", nil))
	vs := waitVS(t, c, ns, "s1", "the snapshot ready", vsReady)
	vc := waitContent(t, c, contentPrefix+string(vs.UID), "replicated", replicated("n2", "tank/vol"))
	replica := "tank/vol@snapshot-" + string(vs.UID)
	rep := replication(vc, "n2", "tank/vol").Content
	p, err := n2.ZFS().Get(ctx, replica, volsnap.PropContent)
	if err != nil || !volsnap.MarkedFor(p[volsnap.PropContent], rep) {
		t.Fatalf("replica %s mark %+v (err %v), want %s set locally", replica, p, err, rep)
	}
	deleteObj(t, c, vs)
	waitContent(t, c, rep, "the replica content to go", gone)
	// Destroyed, or (while it is the target's last received snapshot, held
	// there as the next base) marked for deferred destruction.
	poll(t, "the replica destroyed", time.Minute, func(context.Context) (bool, error) {
		p := snapProps(t, n2, replica, "defer_destroy")
		return p == nil || p["defer_destroy"] == "on", nil
	}, func() any { return eventsOf(t, c, rep) })
	waitContent(t, c, contentPrefix+string(vs.UID), "the source content to go", gone)

	// Invariant 1: while the replica is still there (the target's last
	// received snapshot, its next base), so is its source; the next
	// snapshot then replicates incrementally and both old ones go.
	if exists(t, n2, replica) && !exists(t, n1, replica) {
		t.Fatalf("the target still has %s but the source lost it: the next replication has no common base", replica)
	}
	writeFile(t, n1, "tank/vol", "more", 64<<10)
	c.Kube.Create(t, newVS(ns, "s2", "z8r", "vol", nil))
	vs2 := waitVS(t, c, ns, "s2", "the second snapshot ready", vsReady)
	vc2 := waitContent(t, c, contentPrefix+string(vs2.UID), "the second snapshot replicated", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		st := replication(vc, "n2", "tank/vol")
		return st.State == volsnap.StateSynced || st.State == volsnap.StateDiverged || st.Attempts > 2
	})
	if ts := replication(vc2, "n2", "tank/vol"); ts.State != volsnap.StateSynced {
		t.Fatalf("the next replication after deleting the last replicated snapshot: %+v", ts)
	}
	if ev := eventsOf(t, c, "s2"); !hasEventContaining(ev, z8rv1.EventReplicated, "incremental") {
		t.Errorf("the next replication was not incremental: %v", ev)
	}
	poll(t, "the old snapshot gone from both nodes", time.Minute, func(context.Context) (bool, error) {
		return !exists(t, n1, replica) && !exists(t, n2, replica), nil
	}, func() any {
		return struct{ Src, Dst any }{snapshotsOf(t, n1, "tank/vol"), snapshotsOf(t, n2, "tank/vol")}
	})
}

// TestSafety_VolumeSnapshotReplicaIntoAnotherReplicationsTargetIsRefused is
// issue 15's case 8 (first part): a DatasetReplication writes n2's
// tank/shared; later a PVC asks for its VolumeSnapshots to be replicated
// into exactly that dataset. The VolumeSnapshot path is refused for that
// target (state Refused, a ReplicationConflict Warning naming the
// DatasetReplication) and receives nothing there, so deleting its
// VolumeSnapshots can never touch the other replication's base.
func TestSafety_VolumeSnapshotReplicaIntoAnotherReplicationsTargetIsRefused(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{Clock: clocktest.New(time.Now())}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	mkdata(t, n1, "tank/a", "payload", 64<<10)
	mkdata(t, n1, "tank/vol", "payload", 64<<10)
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "first"}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/a"}, Schedule: "1h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2", Dataset: "tank/shared"}},
	}})
	waitFor(t, c, "first", "the DatasetReplication synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced
	})
	before := snapGUIDs(t, n2, "tank/shared")

	ns := c.Kube.CreateNamespace(t, "second")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/shared"})
	c.Kube.Create(t, newVS(ns, "s1", "z8r", "vol", nil))
	vs := waitVS(t, c, ns, "s1", "the snapshot ready", vsReady)
	vc := waitContent(t, c, contentPrefix+string(vs.UID), "the replica refused", func(vc *snapshotv1.VolumeSnapshotContent) bool {
		st := replication(vc, "n2", "tank/shared").State
		return st != "" && st != volsnap.StatePending
	})
	if ts := replication(vc, "n2", "tank/shared"); ts.State != volsnap.StateRefused || !strings.Contains(ts.Error, "DatasetReplication first") {
		t.Fatalf("replica into another replication's target: %+v; want Refused naming DatasetReplication first", ts)
	}
	if ev := eventsOf(t, c, "s1"); !hasEventContaining(ev, z8rv1.EventReplicationConflict, "DatasetReplication first") {
		t.Errorf("no %s Warning on the VolumeSnapshot: %v", z8rv1.EventReplicationConflict, ev)
	}
	after := snapGUIDs(t, n2, "tank/shared")
	if len(after) != len(before) {
		t.Errorf("the refused path wrote the target: before %v, after %v", before, after)
	}
	for name, g := range before {
		if after[name] != g {
			t.Errorf("the DatasetReplication's @%s changed or went: before %v after %v", name, before, after)
		}
	}
}
