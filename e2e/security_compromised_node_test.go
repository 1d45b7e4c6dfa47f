//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// nodePolicyDenial is part of the node admission policy's message
// (config/rbac/node_admission_policy.yaml).
const nodePolicyDenial = "may not set, change or remove z8r policy labels or annotations on Nodes"

// TestSecurity_CompromisedNode acts as node3, a node an attacker owns: its
// agent's own host key (read from the agent's state folder) and its
// kubelet's credentials (impersonated against the real API server, with
// z8r's admission policies from deploy/z8r.yaml installed). Meanwhile
// node1 replicates tank/data to node2 through the controller. Every attempt
// on node1's and node2's agents and on z8r's policy is refused and audited,
// ZFS on node1 and node2 is unchanged apart from the legitimate
// replication, and that replication carries on.
func TestSecurity_CompromisedNode(t *testing.T) {
	clock := clocktest.New(time.Now())
	dir := t.TempDir()
	auditPath := func(node string) string { return filepath.Join(dir, node+"-audit.jsonl") }
	c := cluster.Start(t, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "node1", Labels: map[string]string{seedLabel: "true"}, Annotations: map[string]string{seedLabel + "/master": "tank/data"},
			AgentArgs: []string{"--audit-log", auditPath("node1")}},
		{Name: "node2", Labels: map[string]string{seedLabel: "true"}, Annotations: map[string]string{seedLabel + "/replica": "tank/data"},
			AgentArgs: []string{"--audit-log", auditPath("node2")}},
		{Name: "node3", AgentArgs: []string{"--audit-log", auditPath("node3")}},
	}})
	ctx := ctxT(t)
	n1, n2 := c.Nodes["node1"], c.Nodes["node2"]
	sum := mkdata(t, n1, "tank/data", "payload", 1<<20)
	// node3 has data of its own, which the controller may legitimately
	// grant it to send.
	mkdata(t, c.Nodes["node3"], "tank/n3", "payload", 64<<10)
	if _, err := c.InstallAdmissionPolicies(ctx); err != nil {
		t.Fatal(err)
	}
	c.StartController()
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := policy.ID("node1", "tank/data")
	dr := waitFor(t, c, rep, "the first sync node1 -> node2", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Status.State == z8rv1.TargetSynced && target(dr, "node2").LastSnapshot != ""
	})
	firstSnap := target(dr, "node2").LastSnapshot
	if readReplica(t, n2, "tank/data", "payload") != sum {
		t.Fatal("replica contents differ from the source before any attack")
	}
	before := map[string]map[string]string{"node1": zfsState(t, n1), "node2": zfsState(t, n2)}

	// node3's identity as the attacker holds it: the agent's host key file.
	node3Key := loadHostKey(t, c, "node3")
	node3FP := ssh.FingerprintSHA256(node3Key.PublicKey())
	victimSnap := "tank/data@" + firstSnap
	attacks := [][]string{
		{"zfs", "list", "-H", "-o", "name"},
		{"zfs", "destroy", victimSnap},
		{"zfs", "recv", "-u", "-F", "tank/data"},
		{"zfs", "set", "mountpoint=/etc/cron.d", "tank/data"},
		{"zfs", "mount", "tank/data"},
	}

	t.Run("node3's key is refused at login on node1 and node2", func(t *testing.T) {
		for _, victim := range []string{"node1", "node2"} {
			for _, user := range []string{"z8r", agent.GrantPrincipal} {
				conn, err := attackerDial(ctx, c, victim, user, node3Key)
				if err == nil {
					// Should the login ever pass, every attack must still fail.
					t.Errorf("%s: node3's plain key logged in as %q", victim, user)
					for _, argv := range attacks {
						if refusal, st, err := rawRun(conn, argv, nil); refusal == "" && err == nil {
							t.Errorf("%s: %q ran as node3: %+v", victim, argv, st)
						}
					}
					conn.Close()
					continue
				}
				if !strings.Contains(err.Error(), "unable to authenticate") {
					t.Errorf("%s as %q: %v, want an authentication failure", victim, user, err)
				}
			}
			waitAudit(t, auditPath(victim), fmt.Sprintf("%s's refusal of node3's login", victim), func(r auditLine) bool {
				return r.Fingerprint == node3FP && r.Request == "login" && r.Outcome == "refused"
			})
		}
	})

	// A grant the controller legitimately issues for a transfer of node3's
	// own data to node2 (as it would for a replication node3 -> node2).
	node2 := c.Agents["node2"]
	granted := agent.Grant{
		Send:          zfsexec.SendOptions{Snapshot: "tank/n3@s1"},
		Recv:          zfsexec.RecvOptions{Target: "tank/from-node3", Unmounted: true},
		TargetAddr:    node2.Addr,
		TargetHostKey: node2.PublicHostKey(),
	}
	cert, err := agent.IssueGrant(c.Keys.Controller, node3Key.PublicKey(), granted, time.Now(), agent.DefaultGrantLifetime)
	if err != nil {
		t.Fatal(err)
	}
	grantSigner, err := ssh.NewCertSigner(cert, node3Key)
	if err != nil {
		t.Fatal(err)
	}
	grantedRecv, err := granted.Recv.Validate()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a grant allows only its one receive, once", func(t *testing.T) {
		conn, err := attackerDial(ctx, c, "node2", agent.GrantPrincipal, grantSigner)
		if err != nil {
			t.Fatalf("the legitimate grant was refused at login: %v", err)
		}
		defer conn.Close()
		for _, tc := range []struct {
			name string
			argv []string
		}{
			{"receive into another dataset (node1's replica)", []string{"zfs", "recv", "-u", "tank/data"}},
			{"forced receive into the granted target", []string{"zfs", "recv", "-u", "-F", granted.Recv.Target}},
			{"destroy a snapshot of node1's replica", []string{"zfs", "destroy", victimSnap}},
			{"read: list the pool", []string{"zfs", "list", "-H", "-o", "name"}},
			{"set a mountpoint", []string{"zfs", "set", "mountpoint=/etc/cron.d", "tank/data"}},
		} {
			refusal, st, err := rawRun(conn, tc.argv, nil)
			switch {
			case refusal == "":
				t.Errorf("%s: %q not refused (exit %+v, err %v)", tc.name, tc.argv, st, err)
			case !strings.Contains(refusal, "grant "+cert.KeyId):
				t.Errorf("%s: refused %q, want the grant's refusal", tc.name, refusal)
			}
		}
		// A transfer request (send node2's data somewhere) on a grant
		// connection.
		if refusal := rawOpen(conn, agent.ChanTransfer, agent.TransferRequest{
			Send: zfsexec.SendOptions{Snapshot: victimSnap}, TargetAddr: c.Agents["node3"].Addr, TargetHostKey: c.Agents["node3"].PublicHostKey(),
			Recv: zfsexec.RecvOptions{Target: "tank/stolen", Unmounted: true}}); !strings.Contains(refusal, "grant connection") {
			t.Errorf("a transfer request on a grant connection: refusal %q, want the grant connection's", refusal)
		}
		// The granted receive itself is accepted and runs; node3 feeds it
		// garbage, so zfs refuses the stream and nothing is created.
		refusal, st, err := rawRun(conn, grantedRecv, []byte("not a zfs stream, just bytes from node3\n"))
		if refusal != "" {
			t.Errorf("the granted receive %q was refused: %s", grantedRecv, refusal)
		} else if err != nil || st.Kind == "" {
			t.Errorf("the granted receive of garbage: exit %+v, err %v; want zfs's failure", st, err)
		}
		if refusal, _, _ := rawRun(conn, grantedRecv, []byte("again\n")); !strings.Contains(refusal, "used already") {
			t.Errorf("a second receive on one grant: refusal %q, want its one receive used already", refusal)
		}
	})

	t.Run("a used grant is refused on a new connection (replay)", func(t *testing.T) {
		conn, err := attackerDial(ctx, c, "node2", agent.GrantPrincipal, grantSigner)
		if err == nil {
			conn.Close()
			t.Fatal("the used grant logged in again")
		}
		waitAudit(t, auditPath("node2"), "node2's refusal of the replayed grant", func(r auditLine) bool {
			return r.Request == "login" && r.Outcome == "refused" && r.KeyID == cert.KeyId && strings.Contains(r.Reason, "replay")
		})
	})

	t.Run("a grant for node2 is refused by node1", func(t *testing.T) {
		// A fresh grant, so that only the target, not a replay, is at stake.
		fresh, err := agent.IssueGrant(c.Keys.Controller, node3Key.PublicKey(), granted, time.Now(), agent.DefaultGrantLifetime)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewCertSigner(fresh, node3Key)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := attackerDial(ctx, c, "node1", agent.GrantPrincipal, s)
		if err == nil {
			conn.Close()
			t.Fatal("node1 accepted a grant naming node2")
		}
		waitAudit(t, auditPath("node1"), "node1's refusal of a grant for node2", func(r auditLine) bool {
			return r.Request == "login" && r.Outcome == "refused" && r.KeyID == fresh.KeyId && strings.Contains(r.Reason, "another target host key")
		})
	})

	t.Run("a grant stolen from node1 is refused with node3's key", func(t *testing.T) {
		// What node1 would carry for node1 -> node2: certified for node1's
		// host key, which node3 does not have. node3 presents the
		// certificate and signs with its own key.
		stolen, err := agent.IssueGrant(c.Keys.Controller, c.Agents["node1"].HostKey, agent.Grant{
			Send:       zfsexec.SendOptions{Snapshot: victimSnap},
			Recv:       zfsexec.RecvOptions{Target: "tank/data-copy", Unmounted: true},
			TargetAddr: node2.Addr, TargetHostKey: node2.PublicHostKey(),
		}, time.Now(), agent.DefaultGrantLifetime)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ssh.NewCertSigner(stolen, node3Key); err == nil {
			t.Error("x/crypto/ssh paired node1's certificate with node3's key")
		}
		conn, err := attackerDial(ctx, c, "node2", agent.GrantPrincipal, forgedSigner{pub: stolen, priv: node3Key})
		if err == nil {
			conn.Close()
			t.Fatal("node2 accepted node1's grant signed with node3's key")
		}
		// The signature does not verify against the certified key, so the
		// agent ends the handshake (x/crypto/ssh drops the connection).
		t.Logf("stolen grant refused: %v", err)
		for _, r := range readAudit(t, auditPath("node2")) {
			if r.KeyID == stolen.KeyId && r.Outcome != "refused" {
				t.Errorf("node2 audit: the stolen grant got %+v", r)
			}
		}
	})

	t.Run("node3's kubelet cannot make node3 a replica or an agent node", func(t *testing.T) {
		kubelet, err := c.AsKubelet(ctx, "node3")
		if err != nil {
			t.Fatal(err)
		}
		admin := c.Kube.Client
		// The policy applies a moment after it is created.
		var lastErr error
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			lastErr = patchMeta(ctx, kubelet, "node3", nil, map[string]*string{seedLabel + "/probe": ptr("x")})
			if lastErr == nil {
				return false, patchMeta(ctx, admin, "node3", nil, map[string]*string{seedLabel + "/probe": nil})
			}
			return apierrors.IsInvalid(lastErr) || apierrors.IsForbidden(lastErr), nil
		}); err != nil {
			t.Fatalf("the node admission policy never took effect: %v (last: %v)", err, lastErr)
		}
		nodesBefore := nodeMeta(t, c, "node1", "node2", "node3")
		for _, tc := range []struct {
			name        string
			node        string
			labels      map[string]*string
			annotations map[string]*string
		}{
			{name: "label itself an agent node", node: "node3", labels: map[string]*string{"node-restriction.kubernetes.io/z8r-agent": ptr("true")}},
			{name: "join the seed's replication", node: "node3", labels: map[string]*string{seedLabel: ptr("true")}},
			{name: "annotate itself a replica of node1's dataset (seed)", node: "node3", annotations: map[string]*string{seedLabel + "/replica": ptr("tank/data")}},
			{name: "annotate itself a replica of node1's dataset (z8r.dev)", node: "node3", labels: map[string]*string{"z8r.dev/replication": ptr("true")},
				annotations: map[string]*string{"z8r.dev/replica": ptr("tank/data")}},
			{name: "remove node2's replica annotation", node: "node2", annotations: map[string]*string{seedLabel + "/replica": nil}},
			{name: "point node1's master elsewhere", node: "node1", annotations: map[string]*string{seedLabel + "/master": ptr("tank/other")}},
		} {
			err := patchMeta(ctx, kubelet, tc.node, tc.labels, tc.annotations)
			if err == nil || !(apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) || !strings.Contains(err.Error(), nodePolicyDenial) {
				t.Errorf("%s: %v, want the node admission policy's denial", tc.name, err)
			}
		}
		if after := nodeMeta(t, c, "node1", "node2", "node3"); !equalJSON(nodesBefore, after) {
			t.Errorf("Node labels or annotations changed:\nbefore %v\nafter  %v", nodesBefore, after)
		}
	})

	t.Run("the legitimate replication carries on", func(t *testing.T) {
		sum2 := writeFile(t, n1, "tank/data", "after-attacks", 256<<10)
		nextPeriod(t, c, clock, rep, 6*time.Hour+time.Minute)
		dr := waitFor(t, c, rep, "a sync after the attacks", 2*time.Minute, func(dr *z8rv1.DatasetReplication) bool {
			ts := target(dr, "node2")
			return ts.LastSnapshot != firstSnap && ts.State == z8rv1.TargetSynced
		})
		last := target(dr, "node2").LastSnapshot
		if g1, g2 := snapGUIDs(t, n1, "tank/data"), snapGUIDs(t, n2, "tank/data"); g1[last] == 0 || g1[last] != g2[last] {
			t.Errorf("@%s: source guid %d, replica %d", last, g1[last], g2[last])
		}
		if readReplica(t, n2, "tank/data", "after-attacks") != sum2 {
			t.Error("the replica lacks the data written after the attacks")
		}
		for _, ts := range dr.Status.Targets {
			if ts.Node != "node2" {
				t.Errorf("replication has target %s; only node2 is the admin's", ts.Node)
			}
		}
		for _, tg := range dr.Spec.Targets {
			if tg.Node != "node2" {
				t.Errorf("replication spec targets %s; only node2 is the admin's", tg.Node)
			}
		}
	})

	t.Run("ZFS on node1 and node2 is unchanged but for the replication", func(t *testing.T) {
		after := map[string]map[string]string{"node1": zfsState(t, n1), "node2": zfsState(t, n2)}
		for _, node := range []string{"node1", "node2"} {
			for name, v := range before[node] {
				if after[node][name] != v {
					t.Errorf("%s: %s was %q, now %q", node, name, v, after[node][name])
				}
			}
			for name, v := range after[node] {
				if _, ok := before[node][name]; ok {
					continue
				}
				// New: only snapshots of tank/data that both nodes have with
				// the same GUID (the legitimate replication).
				other := map[string]string{"node1": "node2", "node2": "node1"}[node]
				if !strings.HasPrefix(name, "tank/data@") || after[other][name] != v {
					t.Errorf("%s: new %s %q (on %s: %q), not the replication's", node, name, v, other, after[other][name])
				}
			}
		}
	})

	t.Run("the audit logs show node3 ran only its granted receive", func(t *testing.T) {
		for _, r := range readAudit(t, auditPath("node1")) {
			if (r.Fingerprint == node3FP || r.Grant) && r.Outcome != "refused" {
				t.Errorf("node1 audit: %+v", r)
			}
		}
		// On node2 only the granted receive ran (and failed in zfs).
		var ran []string
		for _, r := range readAudit(t, auditPath("node2")) {
			if r.Fingerprint == node3FP && r.Outcome != "refused" {
				if r.KeyID != cert.KeyId || !equalJSON(r.Argv, grantedRecv) {
					t.Errorf("node2 audit: node3 ran %+v", r)
				}
				ran = append(ran, r.Outcome)
			}
		}
		if strings.Join(ran, ",") != "accepted,finished" {
			t.Errorf("node2 audit: node3's granted receive %v, want accepted,finished once", ran)
		}
	})
}

// loadHostKey reads a node agent's private host key from its state folder,
// as root on that node would.
func loadHostKey(t *testing.T, c *cluster.Cluster, node string) ssh.Signer {
	t.Helper()
	args := c.Agents[node].Args()
	for i, a := range args {
		if a == "--host-key" && i+1 < len(args) {
			s, err := agent.LoadKey(args[i+1])
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatalf("agent of %s has no --host-key", node)
	return nil
}

// attackerDial logs in to victim's agent from node3's network namespace as
// user with signer, verifying the victim's real host key.
func attackerDial(ctx context.Context, c *cluster.Cluster, victim, user string, signer ssh.Signer) (*ssh.Client, error) {
	a := c.Agents[victim]
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, err := netns.DialIn(ctx, filepath.Join("/run/netns", c.Net.NS("node3")), "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(nc, a.Addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(a.HostKey),
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// runExit is the agent's exit request (the fields a test reads).
type runExit struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code"`
	Stderr  string `json:"stderr"`
	Message string `json:"message"`
}

// rawOpen opens a channel of the agent protocol with payload and returns
// the agent's refusal ("" if it accepted the channel, which is closed).
func rawOpen(conn *ssh.Client, chanType string, payload any) string {
	b, _ := json.Marshal(payload)
	ch, reqs, err := conn.OpenChannel(chanType, b)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return oce.Message
		}
		return err.Error()
	}
	go ssh.DiscardRequests(reqs)
	ch.Close()
	return ""
}

// rawRun speaks the agent protocol by hand, as an attacker would: one run
// channel with argv, stdin in the channel. It returns the agent's refusal
// (the channel rejected) or the exit request.
func rawRun(conn *ssh.Client, argv []string, stdin []byte) (refusal string, st runExit, err error) {
	b, _ := json.Marshal(map[string]any{"argv": argv})
	ch, reqs, err := conn.OpenChannel(agent.ChanRun, b)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) && oce.Reason == ssh.Prohibited {
			return oce.Message, st, nil
		}
		return "", st, err
	}
	defer ch.Close()
	got := make(chan *runExit, 1)
	go func() {
		var e *runExit
		for r := range reqs {
			if r.Type == "z8r.dev/exit" {
				var x runExit
				if json.Unmarshal(r.Payload, &x) == nil {
					e = &x
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		got <- e
	}()
	if stdin != nil {
		_, _ = ch.Write(stdin)
	}
	_ = ch.CloseWrite()
	_, _ = io.Copy(io.Discard, ch)
	select {
	case e := <-got:
		if e == nil {
			return "", st, errors.New("channel ended without an exit status")
		}
		return "", *e, nil
	case <-time.After(time.Minute):
		return "", st, errors.New("no exit status within a minute")
	}
}

// forgedSigner presents pub (a certificate issued for another key) but
// signs with priv: what a node holding a stolen certificate, but not its
// key, can do.
type forgedSigner struct {
	pub  ssh.PublicKey
	priv ssh.Signer
}

func (f forgedSigner) PublicKey() ssh.PublicKey { return f.pub }
func (f forgedSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return f.priv.Sign(r, data)
}

// auditLine is one record of an agent's --audit-log.
type auditLine struct {
	Fingerprint string   `json:"fingerprint"`
	Grant       bool     `json:"grant"`
	KeyID       string   `json:"grantKeyId"`
	Request     string   `json:"request"`
	Argv        []string `json:"argv"`
	Outcome     string   `json:"outcome"`
	Reason      string   `json:"reason"`
}

func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r auditLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log %s: %v: %s", path, err, sc.Bytes())
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitAudit waits until the audit log at path has a record matching ok.
func waitAudit(t *testing.T, path, what string, ok func(auditLine) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, r := range readAudit(t, path) {
			if ok(r) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		var lines []string
		for _, r := range readAudit(t, path) {
			b, _ := json.Marshal(r)
			lines = append(lines, string(b))
		}
		t.Errorf("no audit record of %s in %s:\n%s", what, path, strings.Join(lines, "\n"))
	}
}

// zfsState maps every dataset and snapshot of tank on n to its GUID and
// the properties an attack would change.
func zfsState(t *testing.T, n *zfsnodes.Node) map[string]string {
	t.Helper()
	out, err := n.Exec(context.Background(), "zfs", "get", "-H", "-p", "-r", "-o", "name,property,value", "guid,mountpoint,readonly,canmount,mounted", "tank")
	if err != nil {
		t.Fatal(err)
	}
	props := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("zfs get line %q", line)
		}
		props[f[0]] = append(props[f[0]], f[1]+"="+f[2])
	}
	m := map[string]string{}
	for name, p := range props {
		sort.Strings(p)
		m[name] = strings.Join(p, " ")
	}
	return m
}

// patchMeta merge-patches a Node's labels and annotations (nil removes).
func patchMeta(ctx context.Context, cl client.Client, node string, labels, annotations map[string]*string) error {
	meta := map[string]any{}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	return cl.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, b))
}

// nodeMeta returns the labels and annotations of Nodes.
func nodeMeta(t *testing.T, c *cluster.Cluster, names ...string) map[string][2]map[string]string {
	t.Helper()
	m := map[string][2]map[string]string{}
	for _, name := range names {
		var n corev1.Node
		if err := c.Kube.Client.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
			t.Fatal(err)
		}
		m[name] = [2]map[string]string{n.Labels, n.Annotations}
	}
	return m
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func ptr(s string) *string { return &s }
