//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_SeedAnnotations: with the original z8r's exact label and
// annotations, the master's datasets appear on the replica with matching
// GUIDs and contents; after new data and the next snapshot the transfer is
// incremental.
func TestReplication_SeedAnnotations(t *testing.T) {
	clock := clocktest.New(time.Now())
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "node01", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/master": "tank/dataset1,tank/dataset2"}},
		{Name: "node02", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/replica": "tank/dataset1,tank/dataset2"}},
	}})
	n1, n2 := c.Nodes["node01"], c.Nodes["node02"]
	sum1 := mkdata(t, n1, "tank/dataset1", "payload", 4<<20)
	sum2 := mkdata(t, n1, "tank/dataset2", "payload", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep1, rep2 := policy.ID("node01", "tank/dataset1"), policy.ID("node01", "tank/dataset2")
	synced := func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "node02").LastSnapshot != ""
	}
	dr1 := waitFor(t, c, rep1, "dataset1 synced", 2*time.Minute, synced)
	waitFor(t, c, rep2, "dataset2 synced", 2*time.Minute, synced)

	first := target(dr1, "node02")
	if first.LastSyncKind != "full" {
		t.Errorf("first sync kind %q, want full", first.LastSyncKind)
	}
	for _, ds := range []string{"tank/dataset1", "tank/dataset2"} {
		src, dst := snapGUIDs(t, n1, ds), snapGUIDs(t, n2, ds)
		if len(dst) != 1 || len(src) != 1 {
			t.Fatalf("%s: source %v, replica %v: want one snapshot each", ds, src, dst)
		}
		for name, g := range src {
			if dst[name] != g {
				t.Errorf("%s@%s: replica guid %d, source %d", ds, name, dst[name], g)
			}
			if _, _, ok := snapname.Parse(name); !ok {
				t.Errorf("%s@%s is not named like a z8r snapshot", ds, name)
			}
		}
	}
	if readReplica(t, n2, "tank/dataset1", "payload") != sum1 || readReplica(t, n2, "tank/dataset2", "payload") != sum2 {
		t.Fatal("replica contents differ from the source")
	}
	ro, err := n2.ZFS().Get(ctx, "tank/dataset1", "readonly")
	if err != nil || ro["readonly"].Value != "on" {
		t.Errorf("replica readonly = %v %v, want on", ro, err)
	}

	// New data; six hours later the schedule takes the next snapshot.
	writeFile(t, n1, "tank/dataset1", "more", 1<<20)
	nextPeriod(t, c, clock, rep1, 6*time.Hour+time.Minute)
	dr1 = waitFor(t, c, rep1, "the incremental sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "node02")
		return ts.LastSnapshot != first.LastSnapshot && ts.State == z8rv1.TargetSynced
	})
	second := target(dr1, "node02")
	t.Logf("full sync %d bytes, incremental %d bytes", first.LastSyncBytes, second.LastSyncBytes)
	if second.LastSyncKind != "incremental" {
		t.Errorf("second sync kind %q, want incremental", second.LastSyncKind)
	}
	if second.LastSyncBytes >= first.LastSyncBytes/2 || second.LastSyncBytes < 1<<20 {
		t.Errorf("incremental %d bytes vs full %d: want about the 1 MiB written", second.LastSyncBytes, first.LastSyncBytes)
	}
	if g1, g2 := snapGUIDs(t, n1, "tank/dataset1"), snapGUIDs(t, n2, "tank/dataset1"); g2[second.LastSnapshot] != g1[second.LastSnapshot] || g1[second.LastSnapshot] == 0 {
		t.Errorf("after the incremental: source %v replica %v", g1, g2)
	}
	// The base is protected on the source by a hold for node02.
	for _, s := range snapshotsOf(t, n1, "tank/dataset1") {
		if s.ShortName() == second.LastSnapshot && s.UserRefs != 1 {
			t.Errorf("base @%s has %d holds, want 1", s.ShortName(), s.UserRefs)
		}
		if s.ShortName() == first.LastSnapshot && s.UserRefs != 0 {
			t.Errorf("old base @%s still held (%d)", s.ShortName(), s.UserRefs)
		}
	}
	ev, _ := c.Events(ctx, rep1)
	t.Logf("events:\n%s", strings.Join(ev, "\n"))
	if !hasEvent(ev, z8rv1.EventReplicated) || !hasEvent(ev, z8rv1.EventSnapshotCreated) {
		t.Errorf("missing Replicated / SnapshotCreated events: %v", ev)
	}
}

func hasEvent(ev []string, reason string) bool {
	for _, e := range ev {
		if strings.Contains(e, " "+reason+":") {
			return true
		}
	}
	return false
}

// TestReplication_TargetDownCatchesUpIncrementally: one source, two
// targets, one into a differently named pool. One target goes down while
// snapshots continue; the other stays current, the down target's base stays
// protected (even under aggressive retention), and when it comes back it
// catches up with an incremental.
func TestReplication_TargetDownCatchesUpIncrementally(t *testing.T) {
	clock := clocktest.New(time.Now())
	lbl := map[string]string{"z8r.dev/replication": "true"}
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "src", Labels: lbl, Annotations: map[string]string{"z8r.dev/master": "tank/data", "z8r.dev/retention": "last=1"}},
		{Name: "near", Labels: lbl, Annotations: map[string]string{"z8r.dev/replica": "tank/data"}},
		{Name: "far", Pools: []string{"backup"}, Labels: lbl, Annotations: map[string]string{"z8r.dev/replica": "tank/data:backup/mirror/data"}},
	}})
	src, near, far := c.Nodes["src"], c.Nodes["near"], c.Nodes["far"]
	mkdata(t, src, "tank/data", "a", 2<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := policy.ID("src", "tank/data")
	dr := waitFor(t, c, rep, "both targets synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.TargetsSummary == "2/2"
	})
	farBase := target(dr, "far").LastSnapshot
	if g := snapGUIDs(t, far, "backup/mirror/data"); g[farBase] != snapGUIDs(t, src, "tank/data")[farBase] {
		t.Fatalf("far replica in pool backup: %v", g)
	}

	// far goes down; two more periods pass with new data.
	c.Agents["far"].Stop()
	var last string
	for i := 0; i < 2; i++ {
		writeFile(t, src, "tank/data", "b", 512<<10)
		prev := target(dr, "near").LastSnapshot
		nextPeriod(t, c, clock, rep, 6*time.Hour+time.Minute)
		dr = waitFor(t, c, rep, "near to take the new snapshot", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
			return target(dr, "near").LastSnapshot != prev && target(dr, "near").State == z8rv1.TargetSynced &&
				target(dr, "far").State == z8rv1.TargetFailed
		})
		last = target(dr, "near").LastSnapshot
	}
	if tf := target(dr, "far"); tf.LastSnapshot != farBase || tf.LastError == "" {
		t.Errorf("down target status %+v", tf)
	}
	// Retention is last=1, yet far's base survives, held for far.
	var baseHeld bool
	var names []string
	for _, s := range snapshotsOf(t, src, "tank/data") {
		names = append(names, s.ShortName())
		if s.ShortName() == farBase && s.UserRefs >= 1 {
			baseHeld = true
		}
	}
	if !baseHeld {
		t.Fatalf("far's base @%s is not held on the source (snapshots %v)", farBase, names)
	}
	if len(names) != 2 {
		t.Errorf("source snapshots %v: want far's base and the newest (retention last=1)", names)
	}

	// far comes back and catches up incrementally.
	if err := c.Agents["far"].Start(); err != nil {
		t.Fatal(err)
	}
	requestSync(t, c, rep)
	dr = waitFor(t, c, rep, "far to catch up", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "far").LastSnapshot == last && target(dr, "far").State == z8rv1.TargetSynced
	})
	if k := target(dr, "far").LastSyncKind; k != "incremental" {
		t.Errorf("catch-up kind %q, want incremental", k)
	}
	if g, s := snapGUIDs(t, far, "backup/mirror/data"), snapGUIDs(t, src, "tank/data"); g[last] != s[last] {
		t.Errorf("far after catch-up %v, source %v", g, s)
	}
	_ = near
}

// TestReplication_DivergedTargetIsReportedAndUntouched: a snapshot taken by
// hand on the replica makes it diverge; z8r reports it and destroys nothing.
func TestReplication_DivergedTargetIsReportedAndUntouched(t *testing.T) {
	clock := clocktest.New(time.Now())
	lbl := map[string]string{"z8r.dev/replication": "true"}
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "src", Labels: lbl, Annotations: map[string]string{"z8r.dev/master": "tank/data"}},
		{Name: "dst", Labels: lbl, Annotations: map[string]string{"z8r.dev/replica": "tank/data"}},
	}})
	src, dst := c.Nodes["src"], c.Nodes["dst"]
	mkdata(t, src, "tank/data", "a", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := policy.ID("src", "tank/data")
	waitFor(t, c, rep, "synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool { return dr.Status.State == z8rv1.TargetSynced })

	// Someone works on the replica: makes it writable, writes, snapshots.
	if _, err := dst.Exec(ctx, "zfs", "set", "readonly=off", "tank/data"); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Exec(ctx, "zfs", "mount", "tank/data"); err != nil {
		t.Fatal(err)
	}
	local := writeFile(t, dst, "tank/data", "local-work", 64<<10)
	if _, err := dst.Exec(ctx, "zfs", "snapshot", "tank/data@by-hand"); err != nil {
		t.Fatal(err)
	}
	before := snapGUIDs(t, dst, "tank/data")

	writeFile(t, src, "tank/data", "b", 64<<10)
	nextPeriod(t, c, clock, rep, 6*time.Hour+time.Minute)
	dr := waitFor(t, c, rep, "the divergence to be reported", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "dst").State == z8rv1.TargetDiverged
	})
	if !strings.Contains(target(dr, "dst").LastError, "diverged") {
		t.Errorf("diverged target error %q", target(dr, "dst").LastError)
	}
	ev, _ := c.Events(ctx, rep)
	if !hasEvent(ev, z8rv1.EventTargetDiverged) {
		t.Errorf("no %s event: %v", z8rv1.EventTargetDiverged, ev)
	}
	after := snapGUIDs(t, dst, "tank/data")
	if len(after) != len(before) {
		t.Fatalf("replica snapshots changed: before %v after %v", before, after)
	}
	for n, g := range before {
		if after[n] != g {
			t.Errorf("replica snapshot %s changed or vanished", n)
		}
	}
	if readReplica(t, dst, "tank/data", "local-work") != local {
		t.Error("the local change on the replica was lost")
	}
}

// TestReplication_RetentionPrunesOnlyOwned: retention prunes z8r's snapshots
// only: never the protected base, never foreign snapshots (one named like a
// zfs-localpv snapshot, one named like z8r's but not owned).
func TestReplication_RetentionPrunesOnlyOwned(t *testing.T) {
	clock := clocktest.New(time.Now())
	lbl := map[string]string{"z8r.dev/replication": "true"}
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "src", Labels: lbl, Annotations: map[string]string{"z8r.dev/master": "tank/pvc-4f1c", "z8r.dev/retention": "last=2"}},
		{Name: "dst", Labels: lbl, Annotations: map[string]string{"z8r.dev/replica": "tank/pvc-4f1c", "z8r.dev/target-retention": "last=2"}},
	}})
	src := c.Nodes["src"]
	mkdata(t, src, "tank/pvc-4f1c", "a", 256<<10)
	for _, foreign := range []string{"snapshot-7d3e9a1c-0b1f-4c52-9d8e-2a6f4b1e5c3d", "z8r-20200101T000000Z"} {
		if _, err := src.Exec(context.Background(), "zfs", "snapshot", "tank/pvc-4f1c@"+foreign); err != nil {
			t.Fatal(err)
		}
	}
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := policy.ID("src", "tank/pvc-4f1c")
	dr := waitFor(t, c, rep, "synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool { return dr.Status.State == z8rv1.TargetSynced })
	var owned []string
	for i := 0; i < 4; i++ {
		prev := dr.Status.LastSnapshot
		owned = append(owned, prev)
		writeFile(t, src, "tank/pvc-4f1c", "a", 64<<10)
		nextPeriod(t, c, clock, rep, 6*time.Hour+time.Minute)
		dr = waitFor(t, c, rep, "the next sync", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
			return dr.Status.LastSnapshot != prev && target(dr, "dst").LastSnapshot == dr.Status.LastSnapshot
		})
	}
	owned = append(owned, dr.Status.LastSnapshot)
	got := map[string]bool{}
	for _, s := range snapshotsOf(t, src, "tank/pvc-4f1c") {
		got[s.ShortName()] = true
	}
	for _, foreign := range []string{"snapshot-7d3e9a1c-0b1f-4c52-9d8e-2a6f4b1e5c3d", "z8r-20200101T000000Z"} {
		if !got[foreign] {
			t.Errorf("foreign snapshot @%s was pruned", foreign)
		}
	}
	// last=2 keeps the two newest owned snapshots (the newest is the base).
	for i, name := range owned {
		keep := i >= len(owned)-2
		if got[name] != keep {
			t.Errorf("owned @%s present=%v, want %v (snapshots %v)", name, got[name], keep, got)
		}
	}
	// The target keeps its last two as well and never received the foreign ones.
	dst := snapGUIDs(t, c.Nodes["dst"], "tank/pvc-4f1c")
	if len(dst) != 2 || dst[owned[len(owned)-1]] == 0 {
		t.Errorf("target snapshots %v, want the two newest owned", dst)
	}
}
