//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/cli"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestReplication_ProgressVisibleWhileSyncing: a 512 MiB full sync (paced
// at 40 MiB/s so that it lasts about 13 s) shows in status, before it
// ends, state Syncing with transfer.bytesDone growing, the expected size
// (on zfs-fuse: the snapshot's referenced size) and an estimated
// completion, written at most 10 s apart; `kubectl z8r status` shows the
// share sent. Once synced the transfer is gone, and the replica holds the
// source's data.
func TestReplication_ProgressVisibleWhileSyncing(t *testing.T) {
	const name, fs = "progress", "tank/progress"
	c, sum := pacedSync(t, name, fs)
	n2 := c.Nodes["n2"]
	ctx := ctxT(t)

	var seen []z8rv1.TransferProgress // distinct writes, in order
	statusOut := ""
	deadline := time.Now().Add(3 * time.Minute)
	var dr z8rv1.DatasetReplication
	for {
		if time.Now().After(deadline) {
			t.Fatalf("not synced within 3 minutes; transfers seen: %+v", seen)
		}
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			t.Fatal(err)
		}
		ts := target(&dr, "n2")
		if ts.State == z8rv1.TargetSynced && ts.LastSyncTime != nil {
			break
		}
		if p := ts.Transfer; p != nil {
			if ts.State != z8rv1.TargetSyncing {
				t.Errorf("a transfer in status with state %q, want Syncing", ts.State)
			}
			if n := len(seen); n == 0 || !seen[n-1].UpdatedAt.Equal(&p.UpdatedAt) {
				seen = append(seen, *p)
				if statusOut == "" && p.BytesExpected > 0 {
					statusOut = pluginStatus(t, c, name)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	ts := target(&dr, "n2")
	t.Logf("synced %d bytes in %v; %d progress writes seen", ts.LastSyncBytes, ts.LastSyncDuration, len(seen))
	for _, p := range seen {
		t.Logf("  %s: %d of %d bytes, %d B/s, done by %v", p.UpdatedAt.Format(time.RFC3339), p.BytesDone, p.BytesExpected, p.BytesPerSecond, p.EstimatedCompletion)
	}
	if len(seen) < 2 {
		t.Fatalf("saw %d progress writes during a sync of %v, want at least 2", len(seen), ts.LastSyncDuration)
	}
	for i, p := range seen {
		if i > 0 && p.BytesDone <= seen[i-1].BytesDone {
			t.Errorf("write %d: bytes done %d after %d, want growing", i, p.BytesDone, seen[i-1].BytesDone)
		}
		if i > 0 && p.UpdatedAt.Sub(seen[i-1].UpdatedAt.Time) > 10*time.Second {
			t.Errorf("write %d came %v after the one before, want at most 10 s", i, p.UpdatedAt.Sub(seen[i-1].UpdatedAt.Time))
		}
		if p.BytesExpected < pacedSize || p.BytesExpected > 2*pacedSize {
			t.Errorf("write %d: expected %d bytes, want about the %d written", i, p.BytesExpected, pacedSize)
		}
		if p.EstimatedCompletion == nil || p.BytesPerSecond <= 0 || p.Steps != 1 {
			t.Errorf("write %d: %+v, want a rate, an estimated completion and one step", i, p)
			continue
		}
		if lim := pacedLimit.Value(); p.BytesPerSecond > 2*lim || p.BytesPerSecond < lim/4 {
			t.Errorf("write %d: rate %d B/s, want near the %d B/s the sync is paced at", i, p.BytesPerSecond, lim)
		}
		if off := p.EstimatedCompletion.Sub(ts.LastSyncTime.Time); off < -10*time.Second || off > 10*time.Second {
			t.Errorf("write %d: estimated completion %v, the sync ended %v", i, p.EstimatedCompletion, ts.LastSyncTime)
		}
	}
	if last := seen[len(seen)-1]; last.BytesDone > ts.LastSyncBytes || last.BytesDone < ts.LastSyncBytes/10 {
		t.Errorf("last progress %d bytes, sync total %d", last.BytesDone, ts.LastSyncBytes)
	}
	if !strings.Contains(statusOut, "Syncing (") || !strings.Contains(statusOut, "% of ") || !strings.Contains(statusOut, " left)") {
		t.Errorf("kubectl z8r status during the transfer does not show its progress:\n%s", statusOut)
	}
	if ts.Transfer != nil {
		t.Errorf("transfer %+v still in status after the sync", ts.Transfer)
	}
	if readReplica(t, n2, fs, "big") != sum {
		t.Error("the replica's data differs")
	}
}

// pacedLimit paces the transfers of pacedSync.
var pacedLimit = resource.MustParse("40Mi")

// pacedSync starts two nodes with 1 GiB pools, writes pacedSize random
// bytes into fs on n1 and creates the replication name of fs to n2, paced
// at pacedLimit, so that its first sync lasts about 13 s. It returns the
// cluster and the checksum of the data.
func pacedSync(t *testing.T, name, fs string) (*cluster.Cluster, [32]byte) {
	t.Helper()
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "n1", PoolSize: "1G"}, {Name: "n2", PoolSize: "1G"}}})
	sum := mkdata(t, c.Nodes["n1"], fs, "big", pacedSize)
	c.StartController()
	if err := c.WaitZ8RNodesReady(ctxT(t), time.Minute); err != nil {
		t.Fatal(err)
	}
	limit := pacedLimit
	c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "n1", Dataset: fs}, Schedule: "24h", BandwidthLimit: &limit,
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
	}})
	return c, sum
}

// waitTransferring waits until name's first sync to n2 has moved bytes.
func waitTransferring(t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	waitFor(t, c, name, "the first sync under way", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		p := target(dr, "n2").Transfer
		return p != nil && p.BytesDone > 0
	})
}

// pacedSize is how much pacedSync replicates.
const pacedSize = 512 << 20

// pluginStatus is `kubectl z8r status NAME`.
func pluginStatus(t *testing.T, c *cluster.Cluster, name string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := cli.NewCommand(cli.Options{Out: &out, ErrOut: &errOut})
	cmd.SetArgs([]string{"status", name, "--kubeconfig", c.Kube.Kubeconfig})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("kubectl z8r status: %v\n%s", err, errOut.String())
	}
	t.Logf("kubectl z8r status %s\n%s", name, out.String())
	return out.String()
}

// TestReplication_CancelLeavesNothingBehind: suspending a replication while
// its 512 MiB first sync runs (paced at 40 MiB/s) cancels the transfer
// within seconds: the target leaves Syncing, a TransferCancelled Event says
// so, the target node has no dataset (nothing partial) and the source's
// snapshot no hold (the step holds released, no base held for a target
// that received nothing). Resumed, the replication syncs in full and the
// replica holds the source's data.
func TestReplication_CancelLeavesNothingBehind(t *testing.T) {
	const name, fs = "cancel", "tank/cancel"
	c, sum := pacedSync(t, name, fs)
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	waitTransferring(t, c, name)
	setSuspend := func(v bool) {
		t.Helper()
		var dr z8rv1.DatasetReplication
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(dr.DeepCopy())
		dr.Spec.Suspend = v
		if err := c.Kube.Client.Patch(ctx, &dr, patch); err != nil {
			t.Fatal(err)
		}
	}
	setSuspend(true)
	cancelled := time.Now()
	dr := waitFor(t, c, name, "the transfer cancelled", 30*time.Second, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n2")
		return ts.State != z8rv1.TargetSyncing && ts.Transfer == nil && strings.Contains(ts.LastError, "cancelled")
	})
	t.Logf("cancelled within %v: target %+v", time.Since(cancelled).Round(100*time.Millisecond), target(dr, "n2"))
	if ev := eventsOf(t, c, name); !hasEvent(ev, z8rv1.EventTransferCancelled) {
		t.Errorf("no TransferCancelled Event: %v", ev)
	}
	if target(dr, "n2").ConsecutiveFailures != 0 {
		t.Errorf("a cancel counted as a failure: %+v", target(dr, "n2"))
	}
	if ok, err := n2.ZFS().Exists(ctx, fs); err != nil || ok {
		t.Errorf("the target node has %s after the cancel (exists %v, %v)", fs, ok, err)
	}
	if out, err := n2.Exec(ctx, "zfs", "list", "-H", "-t", "all", "-o", "name", "-r", "tank"); err != nil || strings.Contains(out, "cancel") {
		t.Errorf("the target pool after the cancel:\n%s (%v)", out, err)
	}
	for _, s := range snapshotsOf(t, n1, fs) {
		if s.UserRefs != 0 {
			t.Errorf("%s has %d holds after the cancel, want none", s.Name, s.UserRefs)
		}
	}

	setSuspend(false)
	dr = waitFor(t, c, name, "synced after resuming", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return target(dr, "n2").State == z8rv1.TargetSynced && target(dr, "n2").LastSyncTime != nil
	})
	if ts := target(dr, "n2"); ts.LastSyncKind != "full" || ts.LastSyncBytes < pacedSize {
		t.Errorf("after resuming: %+v, want a full sync of at least %d bytes", ts, pacedSize)
	}
	if readReplica(t, n2, fs, "big") != sum {
		t.Error("the replica's data differs")
	}
}

// TestReplication_ControllerRestartMidTransfer (issue 14): the controller
// stops while a 512 MiB first sync runs (paced at 40 MiB/s) and starts
// again. The agents end the transfer with the controller's session; the
// restarted controller clears the dead transfer from status and syncs
// again, cleanly: Synced with one transfer's worth of bytes (zfs-fuse has
// no resumable receive, so the stream starts over), the replica holds the
// source's data, the target pool holds nothing else (no partial or
// moved-aside dataset) and the source no step hold.
func TestReplication_ControllerRestartMidTransfer(t *testing.T) {
	const name, fs = "restart", "tank/restart"
	c, sum := pacedSync(t, name, fs)
	n1, n2 := c.Nodes["n1"], c.Nodes["n2"]
	ctx := ctxT(t)
	waitTransferring(t, c, name)
	c.StopController()
	stopped, err := c.Replication(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("controller stopped mid-transfer: %+v", target(stopped, "n2"))
	c.StartController()
	dr := waitFor(t, c, name, "synced after the restart", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		ts := target(dr, "n2")
		return ts.State == z8rv1.TargetSynced && ts.LastSyncTime != nil
	})
	ts := target(dr, "n2")
	if ts.LastSyncKind != "full" || ts.LastSyncBytes < pacedSize || ts.LastSyncBytes > pacedSize*3/2 {
		t.Errorf("after the restart: %+v, want one full transfer of about %d bytes", ts, pacedSize)
	}
	if ts.Transfer != nil {
		t.Errorf("transfer %+v still in status", ts.Transfer)
	}
	if readReplica(t, n2, fs, "big") != sum {
		t.Error("the replica's data differs")
	}
	if out, err := n2.Exec(ctx, "zfs", "list", "-H", "-o", "name", "-r", "tank"); err != nil || strings.TrimSpace(out) != "tank\n"+fs {
		t.Errorf("the target pool after the restart:\n%s (%v), want tank and %s only", out, err, fs)
	}
	for _, s := range snapshotsOf(t, n1, fs) {
		want := 0
		if s.ShortName() == ts.LastSnapshot {
			want = 1 // the base hold
		}
		if int(s.UserRefs) != want {
			t.Errorf("%s has %d holds, want %d (no step hold left)", s.Name, s.UserRefs, want)
		}
	}
}
