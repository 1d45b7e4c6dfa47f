//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestPVCSchedule_TakesAndPrunesOnlyItsOwn: a PVC annotated with a
// schedule, a retention and replicate-to gets real VolumeSnapshots, labelled
// as z8r's, each period; each is taken by z8r's snapshotter and replicated.
// Retention last=2 deletes the older scheduled ones (and so their ZFS
// snapshots and replicas), never a VolumeSnapshot someone else made.
func TestPVCSchedule_TakesAndPrunesOnlyItsOwn(t *testing.T) {
	clock := clocktest.New(time.Now())
	c, _ := startSnapshotCluster(t, cluster.Options{Clock: clock}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	mkdata(t, n1, "tank/sched", "payload", 256<<10)
	ns := c.Kube.CreateNamespace(t, "sched")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	pvc := bindPVC(t, c, ns, "data", kubeenv.Z8rPV("pv-sched", "n1", "tank/sched", "1Gi"), map[string]string{
		z8rv1.AnnotationSchedule: "1h", z8rv1.AnnotationRetention: "last=2", z8rv1.AnnotationReplicateTo: "n2",
	})
	c.Kube.Create(t, newVS(ns, "manual", "z8r", "data", nil))
	waitVS(t, c, ns, "manual", "the manual snapshot ready", vsReady)

	scheduled := func() []snapshotv1.VolumeSnapshot {
		var list snapshotv1.VolumeSnapshotList
		if err := c.Kube.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCSchedule}); err != nil {
			t.Fatal(err)
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		return list.Items
	}
	var taken []string // ZFS snapshot names, oldest first
	for i := 0; i < 4; i++ {
		if i > 0 {
			writeFile(t, n1, "tank/sched", "more", 64<<10)
			clock.Advance(time.Hour + time.Minute)
			poke(t, c, pvc, i)
		}
		var newest snapshotv1.VolumeSnapshot
		poll(t, fmt.Sprintf("scheduled snapshot %d ready", i+1), 2*time.Minute, func(context.Context) (bool, error) {
			items := scheduled()
			if len(items) == 0 {
				return false, nil
			}
			newest = items[len(items)-1]
			return len(taken) == 0 || "snapshot-"+string(newest.UID) != taken[len(taken)-1], nil
		}, func() any { return eventsOf(t, c, "data") })
		newest = *waitVS(t, c, ns, newest.Name, "the new scheduled snapshot ready", vsReady)
		if newest.Labels[z8rv1.LabelPVCUID] != string(pvc.UID) || newest.Spec.VolumeSnapshotClassName == nil || *newest.Spec.VolumeSnapshotClassName != "z8r" {
			t.Errorf("scheduled snapshot %s: labels %v class %v", newest.Name, newest.Labels, newest.Spec.VolumeSnapshotClassName)
		}
		taken = append(taken, "snapshot-"+string(newest.UID))
		waitContent(t, c, contentPrefix+string(newest.UID), "replicated", replicated("n2", "tank/sched"))
	}
	// last=2: the two oldest scheduled snapshots go, with their ZFS
	// snapshots on both nodes; the manual one stays.
	poll(t, "retention to prune", 2*time.Minute, func(context.Context) (bool, error) {
		return len(scheduled()) == 2 && !exists(t, n1, "tank/sched@"+taken[1]) && !exists(t, n2, "tank/sched@"+taken[1]), nil
	}, func() any { return struct{ Scheduled, Events any }{len(scheduled()), eventsOf(t, c, "data")} })
	for i, s := range taken {
		keep := i >= 2
		if exists(t, n1, "tank/sched@"+s) != keep || exists(t, n2, "tank/sched@"+s) != keep {
			t.Errorf("scheduled %d (%s): on n1 %v, n2 %v; want %v", i, s, exists(t, n1, "tank/sched@"+s), exists(t, n2, "tank/sched@"+s), keep)
		}
	}
	manual := waitVS(t, c, ns, "manual", "the manual snapshot", vsReady)
	if !exists(t, n1, "tank/sched@snapshot-"+string(manual.UID)) {
		t.Error("retention touched a VolumeSnapshot z8r did not schedule")
	}
	ev := eventsOf(t, c, "data")
	if !hasEvent(ev, z8rv1.EventScheduledSnapshot) || !hasEvent(ev, z8rv1.EventScheduledPruned) {
		t.Errorf("PVC events %v", ev)
	}
}

// poke changes an annotation of the PVC, as the schedule coming round
// would requeue it (the test's clock is fake).
func poke(t *testing.T, c *cluster.Cluster, pvc *corev1.PersistentVolumeClaim, i int) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur corev1.PersistentVolumeClaim
		if err := c.Kube.Client.Get(context.Background(), client.ObjectKeyFromObject(pvc), &cur); err != nil {
			return err
		}
		cur.Annotations["test.z8r.dev/poke"] = fmt.Sprint(i)
		return c.Kube.Client.Update(context.Background(), &cur)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPVCAnnotations_LocalPVKeptByDatasetReplication: a `local` PV whose
// path is a dataset's mountpoint cannot have VolumeSnapshots; its PVC's
// annotations make z8r ask the node's agent which dataset is mounted there
// and configure a DatasetReplication of it, which snapshots and replicates
// it into a parent dataset on n2. A local PV on a path that is no
// dataset's mountpoint gets a Warning; removing the annotations removes
// the DatasetReplication.
func TestPVCAnnotations_LocalPVKeptByDatasetReplication(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{Clock: clocktest.New(time.Now())}, "n1", "n2")
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	sum := mkdata(t, n1, "tank/local/data", "payload", 512<<10)
	mp, err := n1.ZFS().Get(ctx, "tank/local/data", "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	ns := c.Kube.CreateNamespace(t, "local")
	pvc := bindPVC(t, c, ns, "data", kubeenv.LocalPV("pv-local", "n1", mp["mountpoint"].Value, "1Gi"),
		map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/copies/", z8rv1.AnnotationSchedule: "6h", z8rv1.AnnotationRetention: "last=3"})
	bindPVC(t, c, ns, "elsewhere", kubeenv.LocalPV("pv-elsewhere", "n1", "/var/tmp/not-a-dataset", "1Gi"),
		map[string]string{z8rv1.AnnotationReplicateTo: "n2"})

	name := controllers.PVCReplicationName(ns, "data")
	dr := waitFor(t, c, name, "the PVC's replication synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "n2").LastSnapshot != ""
	})
	if dr.Spec.Source != (z8rv1.DatasetRef{Node: "n1", Dataset: "tank/local/data"}) || len(dr.Spec.Targets) != 1 ||
		dr.Spec.Targets[0].Dataset != "tank/copies/local/data" || dr.Spec.Retention != "last=3" || dr.Labels[z8rv1.LabelManagedBy] != "pvc-annotations" {
		t.Errorf("DatasetReplication %+v labels %v", dr.Spec, dr.Labels)
	}
	last := target(dr, "n2").LastSnapshot
	if g1, g2 := snapGUIDs(t, n1, "tank/local/data"), snapGUIDs(t, n2, "tank/copies/local/data"); g1[last] == 0 || g1[last] != g2[last] {
		t.Errorf("source %v replica %v", g1, g2)
	}
	if readReplica(t, n2, "tank/copies/local/data", "payload") != sum {
		t.Error("replica contents differ")
	}
	poll(t, "the warning about the path", time.Minute, func(context.Context) (bool, error) {
		return hasEventContaining(eventsOf(t, c, "elsewhere"), z8rv1.EventInvalidPVCAnnotation, "no dataset is mounted"), nil
	}, func() any { return eventsOf(t, c, "elsewhere") })

	// The annotations go; so does the DatasetReplication.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur corev1.PersistentVolumeClaim
		if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(pvc), &cur); err != nil {
			return err
		}
		delete(cur.Annotations, z8rv1.AnnotationReplicateTo)
		delete(cur.Annotations, z8rv1.AnnotationSchedule)
		return c.Kube.Client.Update(ctx, &cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "the DatasetReplication to go", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.Replication(ctx, name)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}, func() any { return eventsOf(t, c, name) })
	if held := snapshotsOf(t, n1, "tank/local/data"); len(held) == 0 || held[len(held)-1].UserRefs != 0 {
		t.Errorf("after the DatasetReplication went: %+v (want its holds released)", held)
	}
}
