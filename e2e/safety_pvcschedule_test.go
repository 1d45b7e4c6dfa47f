//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// TestSafety_PVCScheduleSourceOutage is issue 15's cases 1 and 14 (and 15)
// on the real test bed. A PVC with a 1h schedule, retention last=3 and
// replicate-to n2 has three ready, replicated scheduled snapshots; then the
// source node's agent goes down and the schedule comes round four times.
//
// Case 1: the snapshot that cannot be taken stays not ready, no second one
// is created while it waits, and it does not count in retention: the
// three ready VolumeSnapshots, their ZFS snapshots and their replicas on
// the healthy node all survive. (Before: a new not-ready VolumeSnapshot
// each period filled the last=3 slots and every ready one was pruned,
// replicas first.)
//
// Case 14: the agent comes back; the waiting snapshot becomes ready and is
// replicated before retention may prune it, and afterwards every replica
// on n2 still has its source VolumeSnapshot and the source snapshot of
// the same GUID, and the next scheduled snapshot replicates incrementally
// (not NoCommonSnapshot).
func TestSafety_PVCScheduleSourceOutage(t *testing.T) {
	clock := clocktest.New(time.Now())
	c, _ := startSnapshotCluster(t, cluster.Options{Clock: clock}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	mkdata(t, n1, "tank/out", "payload", 256<<10)
	ns := c.Kube.CreateNamespace(t, "outage")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	pvc := bindPVC(t, c, ns, "data", kubeenv.Z8rPV("pv-out", "n1", "tank/out", "1Gi"), map[string]string{
		z8rv1.AnnotationSchedule: "1h", z8rv1.AnnotationRetention: "last=3", z8rv1.AnnotationReplicateTo: "n2",
	})

	scheduled := func() []snapshotv1.VolumeSnapshot {
		var list snapshotv1.VolumeSnapshotList
		if err := c.Kube.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCSchedule}); err != nil {
			t.Fatal(err)
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		return list.Items
	}
	describe := func() any {
		var out []string
		for _, vs := range scheduled() {
			out = append(out, fmt.Sprintf("%s ready=%v deleting=%v", vs.Name, vsReady(&vs), vs.DeletionTimestamp != nil))
		}
		return struct{ Scheduled, Events any }{out, eventsOf(t, c, "data")}
	}
	tick := 0
	period := func() {
		tick++
		clock.Advance(time.Hour + time.Minute)
		poke(t, c, pvc, tick)
	}

	// Three ready, replicated scheduled snapshots.
	var good []snapshotv1.VolumeSnapshot
	for i := 0; i < 3; i++ {
		if i > 0 {
			writeFile(t, n1, "tank/out", fmt.Sprintf("more-%d", i), 64<<10)
			period()
		}
		poll(t, fmt.Sprintf("scheduled snapshot %d", i+1), 2*time.Minute, func(context.Context) (bool, error) {
			return len(scheduled()) == i+1, nil
		}, describe)
		items := scheduled()
		vs := waitVS(t, c, ns, items[i].Name, "the scheduled snapshot ready", vsReady)
		waitContent(t, c, contentPrefix+string(vs.UID), "replicated", replicated("n2", "tank/out"))
		good = append(good, *vs)
	}

	t.Run("case1_outage_keeps_ready_snapshots_and_replicas", func(t *testing.T) {
		c.Agents["n1"].Stop()
		for i := 0; i < 4; i++ {
			period()
			if i == 0 {
				poll(t, "the snapshot due during the outage to be created (not ready)", 2*time.Minute, func(context.Context) (bool, error) {
					return len(scheduled()) == 4, nil
				}, describe)
			}
			time.Sleep(3 * time.Second) // let the PVC's reconcile act on the period
			items := scheduled()
			pending := 0
			for _, vs := range items {
				if !vsReady(&vs) {
					pending++
				}
			}
			if len(items) != 4 || pending != 1 {
				t.Errorf("period %d of the outage: %d scheduled VolumeSnapshots, %d not ready; want 4 and 1 (no second one while one waits)\n%+v", i+1, len(items), pending, describe())
			}
			for _, g := range good {
				var cur snapshotv1.VolumeSnapshot
				if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(&g), &cur); err != nil || cur.DeletionTimestamp != nil {
					t.Errorf("period %d of the outage: ready VolumeSnapshot %s was pruned (err %v)", i+1, g.Name, err)
				}
				if snap := "tank/out@snapshot-" + string(g.UID); !exists(t, n2, snap) {
					t.Errorf("period %d of the outage: replica %s on the healthy node was destroyed", i+1, snap)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
		}
		if ev := eventsOf(t, c, "data"); !hasEvent(ev, z8rv1.EventScheduledWaiting) {
			t.Errorf("no %s Warning on the PVC: %v", z8rv1.EventScheduledWaiting, ev)
		}
	})

	t.Run("case14_return_no_orphan_replicas", func(t *testing.T) {
		if err := c.Agents["n1"].Start(); err != nil {
			t.Fatal(err)
		}
		var waiting snapshotv1.VolumeSnapshot
		for _, vs := range scheduled() {
			if !vsReady(&vs) {
				waiting = vs
			}
		}
		if waiting.Name == "" {
			t.Fatalf("no waiting snapshot: %+v", describe())
		}
		w := waitVS(t, c, ns, waiting.Name, "the waiting snapshot ready after the agent came back", vsReady)
		waitContent(t, c, contentPrefix+string(w.UID), "the waiting snapshot replicated", replicated("n2", "tank/out"))
		// last=3 prunes the oldest once the newest is replicated.
		poll(t, "retention to prune the oldest", 2*time.Minute, func(context.Context) (bool, error) {
			return len(scheduled()) == 3 && !exists(t, n2, "tank/out@snapshot-"+string(good[0].UID)), nil
		}, describe)

		// One more period: an incremental replication, not NoCommonSnapshot.
		writeFile(t, n1, "tank/out", "after", 64<<10)
		period()
		poll(t, "the next scheduled snapshot", 2*time.Minute, func(context.Context) (bool, error) {
			return len(scheduled()) == 4, nil
		}, describe)
		items := scheduled()
		next := waitVS(t, c, ns, items[len(items)-1].Name, "the next scheduled snapshot ready", vsReady)
		vc := waitContent(t, c, contentPrefix+string(next.UID), "the next snapshot replicated", func(vc *snapshotv1.VolumeSnapshotContent) bool {
			st := replication(vc, "n2", "tank/out").State
			return st == volsnap.StateSynced || st == volsnap.StateDiverged || (st == volsnap.StateFailed && replication(vc, "n2", "tank/out").Attempts > 2)
		})
		if ts := replication(vc, "n2", "tank/out"); ts.State != volsnap.StateSynced {
			t.Fatalf("the next replication after the outage: %+v", ts)
		}
		if !hasEventContaining(eventsOf(t, c, next.Name), z8rv1.EventReplicated, "incremental") {
			t.Errorf("the next replication was not incremental: %v", eventsOf(t, c, next.Name))
		}
		poll(t, "retention to settle at last=3", 2*time.Minute, func(context.Context) (bool, error) {
			return len(scheduled()) == 3, nil
		}, describe)

		// Every replica on n2 has its source: a scheduled VolumeSnapshot
		// that still exists and the source snapshot of the same GUID.
		uids := map[string]bool{}
		for _, vs := range scheduled() {
			uids[string(vs.UID)] = true
		}
		src, dst := snapGUIDs(t, n1, "tank/out"), snapGUIDs(t, n2, "tank/out")
		for name, guid := range dst {
			uid, ok := strings.CutPrefix(name, "snapshot-")
			if !ok {
				t.Errorf("unexpected snapshot %s on n2", name)
				continue
			}
			if !uids[uid] {
				t.Errorf("orphan replica tank/out@%s on n2: its VolumeSnapshot is gone", name)
			}
			if src[name] != guid {
				t.Errorf("replica tank/out@%s (guid %d) has no source snapshot of that GUID on n1 (%v)", name, guid, src)
			}
		}
	})
}
