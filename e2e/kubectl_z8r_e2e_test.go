//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/cli"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestKubectlZ8r_ShowsLiveReplication: on the test bed that `make demo`
// runs (zfs-fuse nodes, real agents, the controller), kubectl z8r status,
// snapshots and nodes show the replication as it happens, and sync makes
// the controller send a new snapshot.
func TestKubectlZ8r_ShowsLiveReplication(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "node01", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/master": "tank/dataset1"}},
		{Name: "node02", Labels: map[string]string{seedLabel: "true"},
			Annotations: map[string]string{seedLabel + "/replica": "tank/dataset1"}},
	}})
	mkdata(t, c.Nodes["node01"], "tank/dataset1", "payload", 1<<20)
	c.StartController()
	ctx := ctxT(t)
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	name := policy.ID("node01", "tank/dataset1")
	dr := waitFor(t, c, name, "node02 synced", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "node02").LastSnapshot != ""
	})
	snap := dr.Status.LastSnapshot

	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := cli.NewCommand(cli.Options{Out: &out, ErrOut: &errOut})
		cmd.SetArgs(append(args, "--kubeconfig", c.Kube.Kubeconfig))
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("kubectl z8r %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		t.Logf("kubectl z8r %s\n%s", strings.Join(args, " "), out.String())
		return out.String()
	}
	contains := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q", w)
			}
		}
	}

	contains(run("status"), name+"  node01:tank/dataset1  state Synced, synced 1/1", "last snapshot "+snap, "node02:tank/dataset1   Synced")
	contains(run("snapshots"), snap, "newest, base of node02")
	nodes := run("nodes")
	contains(nodes, "zfs-fuse pool-v23")
	if n := strings.Count(nodes, " pinned"); n != 2 {
		t.Errorf("nodes: %d pinned host keys, want 2", n)
	}

	// sync: the controller reconciles at once; the target stays synced.
	run("sync", name)
	waitFor(t, c, name, "the sync request seen", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Annotations["z8r.dev/sync-requested"] != "" && dr.Status.State == z8rv1.TargetSynced
	})
}

// TestAgentHealth_ReadyWithRealZFS: the agent's --health-addr endpoints on a
// zfs-fuse node: ready while zfs answers and every allowed pool exists, not
// ready when a pool is missing, with z8r_agent_ready saying the same.
func TestAgentHealth_ReadyWithRealZFS(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{{Name: "node01"}}})
	node := c.Nodes["node01"]
	ip := c.Net.Addr("node01")
	httpc := &http.Client{Transport: &http.Transport{DialContext: c.Net.DialContext}, Timeout: 30 * time.Second}
	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := httpc.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name      string
		pools     []string
		port      string
		wantCode  int
		wantReady string
	}{
		{"pool present", []string{"tank"}, "2123", http.StatusOK, "z8r_agent_ready 1"},
		{"pool missing", []string{"tank", "nosuchpool"}, "2124", http.StatusServiceUnavailable, "z8r_agent_ready 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			health := ip + ":" + tc.port
			a := agentproc.Start(t, node, c.Keys, agentproc.Options{Addr: ip + ":1" + tc.port, Pools: tc.pools,
				ExtraArgs: []string{"--health-addr", health}})
			defer a.Stop()
			var code int
			var body string
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := httpc.Get("http://" + health + "/healthz")
				if err == nil {
					resp.Body.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("health endpoint never answered: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if code, body = get(health, "/readyz"); code != tc.wantCode {
				t.Errorf("/readyz = %d %q, want %d", code, body, tc.wantCode)
			}
			if code, body = get(health, "/metrics"); code != http.StatusOK || !strings.Contains(body, tc.wantReady) {
				t.Errorf("/metrics = %d, want %q", code, tc.wantReady)
			}
		})
	}
}
