//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

const seedLabel = "zfs.replication.takutakahashi.dev"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mkdata creates a filesystem with a file of random data on a node and
// returns the file's checksum.
func mkdata(t *testing.T, n *zfsnodes.Node, fs, file string, size int) [32]byte {
	t.Helper()
	ctx := context.Background()
	z := n.ZFS()
	if ok, _ := z.Exists(ctx, fs); !ok {
		if err := z.CreateFilesystem(ctx, fs, zfsexec.CreateOptions{Parents: true}); err != nil {
			t.Fatal(err)
		}
	}
	return writeFile(t, n, fs, file, size)
}

func writeFile(t *testing.T, n *zfsnodes.Node, fs, file string, size int) [32]byte {
	t.Helper()
	mp, err := n.ZFS().Get(context.Background(), fs, "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(n.Path(filepath.Join(mp["mountpoint"].Value, file)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// readReplica mounts a (readonly) replica on its node and returns a file's
// checksum.
func readReplica(t *testing.T, n *zfsnodes.Node, fs, file string) [32]byte {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Exec(ctx, "zfs", "mount", fs); err != nil && !strings.Contains(err.Error(), "already mounted") {
		t.Fatal(err)
	}
	mp, err := n.ZFS().Get(ctx, fs, "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(n.Path(filepath.Join(mp["mountpoint"].Value, file)))
	if err != nil {
		t.Fatal(err)
	}
	// Unmount again, so the replica is as z8r keeps it.
	_, _ = n.Exec(ctx, "zfs", "umount", fs)
	return sha256.Sum256(data)
}

func snapGUIDs(t *testing.T, n *zfsnodes.Node, fs string) map[string]uint64 {
	t.Helper()
	snaps, err := n.ZFS().Snapshots(context.Background(), fs)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, s := range snaps {
		if s.IsSnapshot() {
			m[s.ShortName()] = s.GUID
		}
	}
	return m
}

func snapshotsOf(t *testing.T, n *zfsnodes.Node, fs string) []zfsexec.Dataset {
	t.Helper()
	snaps, err := n.ZFS().Snapshots(context.Background(), fs, "z8r.dev:owner")
	if err != nil {
		t.Fatal(err)
	}
	return snaps
}

// waitFor polls the DatasetReplication until cond holds.
func waitFor(t *testing.T, c *cluster.Cluster, name, what string, timeout time.Duration, cond func(*z8rv1.DatasetReplication) bool) *z8rv1.DatasetReplication {
	t.Helper()
	var last *z8rv1.DatasetReplication
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		dr, err := c.Replication(ctx, name)
		if err != nil {
			return false, client.IgnoreNotFound(err)
		}
		last = dr
		return cond(dr), nil
	})
	if err != nil {
		ev, _ := c.Events(context.Background(), name)
		t.Fatalf("waiting for %s: %v\nlast status: %+v\nevents:\n%s", what, err, statusOf(last), strings.Join(ev, "\n"))
	}
	return last
}

func statusOf(dr *z8rv1.DatasetReplication) any {
	if dr == nil {
		return nil
	}
	return dr.Status
}

func target(dr *z8rv1.DatasetReplication, node string) z8rv1.TargetStatus {
	for _, t := range dr.Status.Targets {
		if t.Node == node {
			return t
		}
	}
	return z8rv1.TargetStatus{}
}

// nextPeriod advances the controller's clock past the schedule and asks
// for a sync, as if the schedule had come round.
func nextPeriod(t *testing.T, c *cluster.Cluster, clock *clocktest.Fake, name string, d time.Duration) {
	t.Helper()
	clock.Advance(d)
	requestSync(t, c, name)
}

func requestSync(t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	ctx := context.Background()
	dr, err := c.Replication(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(dr.DeepCopy())
	if dr.Annotations == nil {
		dr.Annotations = map[string]string{}
	}
	dr.Annotations[z8rv1.AnnotationSyncRequested] = fmt.Sprint(time.Now().UnixNano())
	if err := c.Kube.Client.Patch(ctx, dr, patch); err != nil {
		t.Fatal(err)
	}
}
