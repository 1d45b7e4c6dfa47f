//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestTransferLimits_OneAtATimePerNode (issue 14, transfer limits): three
// replications from n1 to n2 start together under a limit of one transfer
// per node. The receiving agent's audit log shows no two receives running
// at once, the replications that waited showed it in their status
// (Pending, "queued for a transfer slot"), and all three end Synced with a
// full copy each.
func TestTransferLimits_OneAtATimePerNode(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{{Name: "n1"}, {Name: "n2"}},
		TransferLimits: &controllers.TransferLimits{PerNode: 1}})
	n1 := c.Nodes["n1"]
	const size = 24 << 20
	names := []string{"q1", "q2", "q3"}
	for _, n := range names {
		mkdata(t, n1, "tank/"+n, "payload", size)
	}
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}

	// Watch the statuses for a queued target while the syncs run.
	var mu sync.Mutex
	queued := map[string]string{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = wait.PollUntilContextCancel(watchCtx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			for _, n := range names {
				dr, err := c.Replication(ctx, n)
				if err != nil {
					continue
				}
				if ts := target(dr, "n2"); strings.HasPrefix(ts.LastError, "queued for a transfer slot") {
					mu.Lock()
					queued[n] = ts.LastError
					mu.Unlock()
				}
			}
			return false, nil
		})
	}()
	for _, n := range names {
		c.Kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: z8rv1.DatasetReplicationSpec{
			Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/" + n}, Schedule: "1h",
			Targets: []z8rv1.ReplicationTarget{{Node: "n2"}},
		}})
	}
	for _, n := range names {
		dr := waitFor(t, c, n, "synced under the limit", 3*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
			return target(dr, "n2").State == z8rv1.TargetSynced
		})
		if ts := target(dr, "n2"); ts.LastSyncKind != "full" || ts.LastSyncBytes < size {
			t.Errorf("%s: %+v, want one full sync of at least %d bytes", n, ts, size)
		}
	}
	stopWatch()
	<-watched

	most, recvs := maxConcurrent(t, c.Agents["n2"].LogPath, "zfs", "recv")
	if recvs != len(names) {
		t.Errorf("n2 ran %d receives, want %d", recvs, len(names))
	}
	if most != 1 {
		t.Errorf("n2 ran %d receives at once, want 1 (limit 1 per node)", most)
	}
	if most, n := maxConcurrent(t, c.Agents["n1"].LogPath, "transfer"); most != 1 || n != len(names) {
		t.Errorf("n1 ran %d transfers, at most %d at once; want %d, one at a time", n, most, len(names))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queued) == 0 {
		t.Error("no replication was ever seen queued: the limit did not make any wait")
	}
	for n, msg := range queued {
		if !strings.Contains(msg, "(limit 1)") {
			t.Errorf("%s queued as %q, want the limit named", n, msg)
		}
	}
}

// maxConcurrent reads an agent's audit log (one JSON object a line, in
// the order things happened) and returns the most requests whose argv
// starts with prefix that ran at once, and how many ran.
func maxConcurrent(t *testing.T, logPath string, prefix ...string) (most, count int) {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	running := 0
	for sc.Scan() {
		var e struct {
			Msg     string   `json:"msg"`
			Outcome string   `json:"outcome"`
			Argv    []string `json:"argv"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Msg != "audit" || len(e.Argv) < len(prefix) || !slices.Equal(e.Argv[:len(prefix)], prefix) {
			continue
		}
		switch e.Outcome {
		case "accepted":
			running++
			count++
			most = max(most, running)
		case "finished":
			running--
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", logPath, err))
	}
	return most, count
}
