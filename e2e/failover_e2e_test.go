//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/cli"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

// readFile returns the checksum of a file on a filesystem, mounting it if
// it is not (it stays mounted).
func readFile(t *testing.T, n *zfsnodes.Node, fs, file string) [32]byte {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Exec(ctx, "zfs", "mount", fs); err != nil && !strings.Contains(err.Error(), "already mounted") {
		t.Fatalf("mount %s: %v", fs, err)
	}
	mp, err := n.ZFS().Get(ctx, fs, "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(n.Path(filepath.Join(mp["mountpoint"].Value, file)))
	if err != nil {
		t.Fatalf("read %s on %s: %v", file, fs, err)
	}
	return sha256.Sum256(data)
}

func propOf(t *testing.T, n *zfsnodes.Node, fs, prop string) string {
	t.Helper()
	p, err := n.ZFS().Get(context.Background(), fs, prop)
	if err != nil {
		t.Fatalf("get %s %s: %v", prop, fs, err)
	}
	return p[prop].Value
}

// promoteTo patches the replication as `kubectl z8r promote` does.
func promoteTo(t *testing.T, c *cluster.Cluster, name, node string, unplanned bool) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var dr z8rv1.DatasetReplication
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			return err
		}
		spec, err := cli.PromoteSpec(&dr, node, "", unplanned)
		if err != nil {
			return err
		}
		dr.Spec = spec
		return c.Kube.Client.Update(ctx, &dr)
	})
	if err != nil {
		t.Fatalf("promote %s to %s: %v", name, node, err)
	}
}

func promoted(to string) func(*z8rv1.DatasetReplication) bool {
	return func(dr *z8rv1.DatasetReplication) bool {
		p := dr.Status.Promotion
		return p != nil && p.To.Node == to && p.Phase == z8rv1.PromotionCompleted &&
			dr.Status.Source != nil && dr.Status.Source.Node == to
	}
}

// guidsOf is every snapshot GUID of the datasets.
func guidsOf(t *testing.T, n *zfsnodes.Node, fss ...string) map[uint64]string {
	out := map[uint64]string{}
	for _, fs := range fss {
		for name, g := range snapGUIDs(t, n, fs) {
			out[g] = fs + "@" + name
		}
	}
	return out
}

// TestFailover_UnplannedRoundTrip: n1 is lost; n2 is promoted at its newest
// snapshot and written to; n1 returns, its unreplicated tail (a snapshot
// and writes) is kept aside under the documented name and it receives from
// n2 incrementally; a planned failback to n1 resends nothing in full. The
// data is checked at every step.
func TestFailover_UnplannedRoundTrip(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const fs, size = "tank/app", 8 << 20
	sumA := mkdata(t, n1, fs, "a", size)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "app"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "1h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	dr := waitFor(t, c, name, "the first sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced && target(dr, "n2").LastSnapshot != ""
	})
	full := target(dr, "n2").LastSyncBytes
	if full < size {
		t.Fatalf("first sync moved %d bytes, want a full send of at least %d", full, size)
	}
	if v := propOf(t, n2, fs, "canmount"); v != "noauto" {
		t.Errorf("replica canmount = %q, want noauto (a reboot must not mount it)", v)
	}
	before := guidsOf(t, n1, fs)

	// n1's tail: a snapshot of its own and a write after it, never sent.
	sumB := writeFile(t, n1, fs, "b", 256<<10)
	if _, err := n1.Exec(ctx, "zfs", "snapshot", fs+"@mine"); err != nil {
		t.Fatal(err)
	}
	sumC := writeFile(t, n1, fs, "c", 256<<10)
	before = guidsOf(t, n1, fs)

	// n1 is lost; n2 is promoted (unplanned).
	lastOnN2 := target(dr, "n2").LastSnapshot
	c.Agents["n1"].Stop()
	promoteTo(t, c, name, "n2", true)
	dr = waitFor(t, c, name, "n2 promoted", 2*time.Minute, promoted("n2"))
	p := dr.Status.Promotion
	if p.Kind != z8rv1.PromotionUnplanned || p.RecoveryPoint != lastOnN2 {
		t.Fatalf("promotion %+v: want Unplanned at n2's newest snapshot %s", p, lastOnN2)
	}
	if p.RecoveryPointTime == nil || p.Rejoin != z8rv1.RejoinPending {
		t.Fatalf("promotion %+v: want a recovery point time and a pending rejoin", p)
	}
	if ro := propOf(t, n2, fs, "readonly"); ro != "off" {
		t.Fatalf("promoted n2:%s readonly=%s", fs, ro)
	}
	if readFile(t, n2, fs, "a") != sumA {
		t.Fatal("n2 lost file a")
	}
	sumD := writeFile(t, n2, fs, "d", 256<<10)
	ev, _ := c.Events(ctx, name)
	if !strings.Contains(strings.Join(ev, "\n"), z8rv1.EventPromoted) {
		t.Errorf("no %s event: %v", z8rv1.EventPromoted, ev)
	}

	// n1 returns: its tail goes aside, then it receives incrementally.
	if err := c.Agents["n1"].Start(); err != nil {
		t.Fatal(err)
	}
	nextPeriod(t, c, clock, name, time.Hour+time.Minute)
	dr = waitFor(t, c, name, "n1 to rejoin as a replica", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.Promotion.Rejoin == z8rv1.RejoinDone && target(dr, "n1").State == z8rv1.TargetSynced
	})
	aside := dr.Status.Promotion.TailAside
	if ds, _, ok := snapname.ParseTailName(aside); !ok || ds != fs {
		t.Fatalf("tail aside %q is not %s-z8r-tail-<time>", aside, fs)
	}
	tn := target(dr, "n1")
	if tn.LastSyncKind != "incremental" || tn.LastSyncBytes >= full/4 {
		t.Fatalf("reverse sync %s of %d bytes; want incremental, far below the full %d", tn.LastSyncKind, tn.LastSyncBytes, full)
	}
	if _, ok := snapGUIDs(t, n1, aside)["mine"]; !ok {
		t.Errorf("the tail snapshot @mine is not in %s: %v", aside, snapGUIDs(t, n1, aside))
	}
	if readFile(t, n1, aside, "b") != sumB || readFile(t, n1, aside, "c") != sumC {
		t.Error("the tail's files b and c are not intact in the aside dataset")
	}
	after := guidsOf(t, n1, fs, aside)
	for g, s := range before {
		if _, ok := after[g]; !ok {
			t.Errorf("snapshot %s (guid %d) of n1 is gone", s, g)
		}
	}
	if readReplica(t, n1, fs, "d") != sumD || readReplica(t, n1, fs, "a") != sumA {
		t.Error("n1's replica lacks n2's data")
	}

	// Planned failback to n1: e is written on n2 after its last
	// snapshot; the switchover must carry it.
	sumE := writeFile(t, n2, fs, "e", 128<<10)
	n1Before := guidsOf(t, n1, fs)
	promoteTo(t, c, name, "n1", false)
	dr = waitFor(t, c, name, "failback to n1", 2*time.Minute, promoted("n1"))
	if k := dr.Status.Promotion.Kind; k != z8rv1.PromotionPlanned {
		t.Fatalf("failback kind %s, want Planned", k)
	}
	if readFile(t, n1, fs, "e") != sumE || readFile(t, n1, fs, "d") != sumD || readFile(t, n1, fs, "a") != sumA {
		t.Fatal("n1 after failback lacks data written on n2")
	}
	n1After := guidsOf(t, n1, fs)
	for g, s := range n1Before {
		if _, ok := n1After[g]; !ok {
			t.Errorf("failback resent in full: n1's %s (guid %d) is gone", s, g)
		}
	}
	if ro := propOf(t, n2, fs, "readonly"); ro != "on" {
		t.Errorf("old source n2 readonly=%s after failback, want on", ro)
	}
	// n2 is n1's replica again, incrementally.
	nextPeriod(t, c, clock, name, time.Hour+time.Minute)
	dr = waitFor(t, c, name, "n2 synced after failback", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		tn := target(dr, "n2")
		return tn.State == z8rv1.TargetSynced && tn.LastSnapshot == dr.Status.LastSnapshot && dr.Status.Promotion.To.Node == "n1"
	})
	if tn := target(dr, "n2"); tn.LastSyncKind == "full" {
		t.Errorf("n2 resynced in full after failback: %+v", tn)
	}
}

// TestFailover_PlannedSwitchoverWithSeedAnnotations: swapping the seed's
// master and replica annotations is a planned switchover: a file written
// on the master after its last snapshot is on the new master, and the old
// one is read-only.
func TestFailover_PlannedSwitchoverWithSeedAnnotations(t *testing.T) {
	clock := clocktest.New(time.Now())
	lbl := map[string]string{seedLabel: "true"}
	const fs = "tank/seed"
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "n1", Labels: lbl, Annotations: map[string]string{seedLabel + "/master": fs}},
		{Name: "n2", Labels: lbl, Annotations: map[string]string{seedLabel + "/replica": fs}},
	}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	sumA := mkdata(t, n1, fs, "a", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	name := policy.ID("n1", fs)
	waitFor(t, c, name, "the first sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})
	sumX := writeFile(t, n1, fs, "x", 512<<10) // after the last snapshot

	// The documented order: the new master first (both claim it: both
	// nodes are rejected and nothing changes), then the old one.
	if err := c.Annotate(ctx, "n2", map[string]string{seedLabel + "/master": fs, seedLabel + "/replica": ""}); err != nil {
		t.Fatal(err)
	}
	if err := c.Annotate(ctx, "n1", map[string]string{seedLabel + "/replica": fs, seedLabel + "/master": ""}); err != nil {
		t.Fatal(err)
	}
	dr := waitFor(t, c, name, "the switchover", 2*time.Minute, promoted("n2"))
	if k := dr.Status.Promotion.Kind; k != z8rv1.PromotionPlanned {
		t.Fatalf("kind %s, want Planned", k)
	}
	if readFile(t, n2, fs, "x") != sumX || readFile(t, n2, fs, "a") != sumA {
		t.Fatal("the new master lacks data written before the switchover")
	}
	if ro := propOf(t, n1, fs, "readonly"); ro != "on" {
		t.Errorf("old master readonly=%s, want on", ro)
	}
	var list z8rv1.DatasetReplicationList
	if err := c.Kube.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != name {
		t.Fatalf("replications after the swap: %d (want the one promoted, %s)", len(list.Items), name)
	}
	// And n1 is n2's replica: the next snapshot reaches it.
	nextPeriod(t, c, clock, name, 6*time.Hour+time.Minute)
	waitFor(t, c, name, "n1 synced from n2", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		tn := target(dr, "n1")
		return tn.State == z8rv1.TargetSynced && tn.LastSnapshot == dr.Status.LastSnapshot && tn.LastSyncKind == "incremental"
	})
}

// TestFailover_BadInput: promoting a node that is not a target is refused
// by the API server; promoting a diverged target is refused by the
// controller. Neither changes anything on ZFS.
func TestFailover_BadInput(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}}})
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	const fs = "tank/bad"
	mkdata(t, n1, fs, "a", 256<<10)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const name = "bad"
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "1h",
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	waitFor(t, c, name, "the first sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced
	})

	// An unknown target: the API server refuses the change of source.
	var dr z8rv1.DatasetReplication
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
		t.Fatal(err)
	}
	dr.Spec.Source = z8rv1.DatasetRef{Node: "n9", Dataset: fs}
	dr.Spec.Targets = []z8rv1.ReplicationTarget{{Node: "n1"}}
	err := c.Kube.Client.Update(ctx, &dr)
	if err == nil || !strings.Contains(err.Error(), "source can change only to one of the targets") {
		t.Fatalf("promoting an unknown node: %v, want the CRD's refusal", err)
	}

	// A diverged target: a snapshot of its own on n2.
	if _, err := n2.Exec(ctx, "zfs", "snapshot", fs+"@operator"); err != nil {
		t.Fatal(err)
	}
	nextPeriod(t, c, clock, name, time.Hour+time.Minute)
	waitFor(t, c, name, "n2 diverged", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetDiverged
	})
	n1Snaps, n2Snaps := snapGUIDs(t, n1, fs), snapGUIDs(t, n2, fs)
	promoteTo(t, c, name, "n2", true)
	got := waitFor(t, c, name, "the promotion refused", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.Promotion != nil && dr.Status.Promotion.Phase == z8rv1.PromotionRefused
	})
	if !strings.Contains(got.Status.Promotion.Message, "diverged") {
		t.Errorf("refusal message %q does not say the target diverged", got.Status.Promotion.Message)
	}
	if got.Status.Source == nil || got.Status.Source.Node != "n1" {
		t.Errorf("source in force %+v, want n1", got.Status.Source)
	}
	if ro := propOf(t, n1, fs, "readonly"); ro != "off" {
		t.Errorf("n1 readonly=%s after a refused promotion", ro)
	}
	if ro := propOf(t, n2, fs, "readonly"); ro != "on" {
		t.Errorf("n2 readonly=%s after a refused promotion", ro)
	}
	if a, b := snapGUIDs(t, n1, fs), snapGUIDs(t, n2, fs); len(a) != len(n1Snaps) || len(b) != len(n2Snaps) {
		t.Errorf("snapshots changed: n1 %v -> %v, n2 %v -> %v", n1Snaps, a, n2Snaps, b)
	}
	ev, _ := c.Events(ctx, name)
	if !strings.Contains(strings.Join(ev, "\n"), z8rv1.EventPromotionRefused) {
		t.Errorf("no %s event: %v", z8rv1.EventPromotionRefused, ev)
	}
}
