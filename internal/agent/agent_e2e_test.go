//go:build e2e

package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/hostkeys"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// bed is two zfs-fuse nodes, each in its own network namespace with an
// agent process listening on the node's address.
type bed struct {
	net    *netns.Network
	nodes  map[string]*zfsnodes.Node
	agents map[string]*agentproc.Agent
	keys   *agentproc.Keys
}

func newBed(t *testing.T, extraAgentArgs ...string) *bed {
	t.Helper()
	names := []string{"a", "b"}
	n := netns.New(t, names...)
	nodes := zfsnodes.Start(t, zfsnodes.Options{Pools: []string{"tank", "vault"}, NetNS: n.NSMap()}, names...)
	keys := agentproc.NewKeys(t)
	b := &bed{net: n, nodes: map[string]*zfsnodes.Node{}, agents: map[string]*agentproc.Agent{}, keys: keys}
	for _, node := range nodes {
		b.nodes[node.Name] = node
		b.agents[node.Name] = agentproc.Start(t, node, keys, agentproc.Options{
			Addr:  n.Addr(node.Name) + ":2022",
			Pools: []string{"tank"}, // vault exists but is not allowed
			ExtraArgs: append([]string{"--progress-interval", "50ms",
				"--command-log", filepath.Join(t.TempDir(), "commands-"+node.Name+".log")}, extraAgentArgs...),
		})
	}
	return b
}

func (b *bed) dial(t *testing.T, name string) *agent.Client {
	t.Helper()
	a := b.agents[name]
	c, err := agent.Dial(context.Background(), a.Addr, agent.ClientConfig{
		Signer: b.keys.Controller, HostKey: a.HostKey, Dial: b.net.DialContext, GrantAuthority: b.keys.Controller})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func writeRandom(t *testing.T, n *zfsnodes.Node, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := n.Runner().Run(context.Background(), zfsexec.Command{
		Argv: []string{"dd", "of=" + path, "bs=1M", "status=none"}, Stdin: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	return data
}

func guids(t *testing.T, z *zfsexec.ZFS, fs string) map[string]uint64 {
	t.Helper()
	snaps, err := z.Snapshots(context.Background(), fs)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, s := range snaps {
		m[s.ShortName()] = s.GUID
	}
	return m
}

// TestAgent_FullAndIncrementalTransfer: the controller asks agent a to send
// tank/data to agent b; the stream goes a → b directly.
func TestAgent_FullAndIncrementalTransfer(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	ca, cb := b.dial(t, "a"), b.dial(t, "b")
	za, zb := ca.ZFS(), cb.ZFS()
	if err := za.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(b.nodes["a"].Dir, "mnt", "tank", "data")
	first := writeRandom(t, b.nodes["a"], mp+"/first", 8<<20)
	if err := za.Snapshot(ctx, "tank/data@s1", nil); err != nil {
		t.Fatal(err)
	}
	var progress []agent.Progress
	req := agent.TransferRequest{
		Send:          zfsexec.SendOptions{Snapshot: "tank/data@s1"},
		TargetAddr:    b.agents["b"].Addr,
		TargetHostKey: b.agents["b"].PublicHostKey(),
		Recv:          zfsexec.RecvOptions{Target: "tank/data", Unmounted: true},
	}
	full, err := ca.Transfer(ctx, req, func(p agent.Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	second := writeRandom(t, b.nodes["a"], mp+"/second", 256<<10)
	if err := za.Snapshot(ctx, "tank/data@s2", nil); err != nil {
		t.Fatal(err)
	}
	src := guids(t, za, "tank/data")
	req.Send = zfsexec.SendOptions{Snapshot: "tank/data@s2", From: "@s1"}
	req.Recv = zfsexec.RecvOptions{Target: "tank/data", Unmounted: true, Incremental: true, BaseGUID: src["s1"]}
	incr, err := ca.Transfer(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full %d bytes in %d ms, incremental %d bytes in %d ms, %d progress reports", full.Bytes, full.ElapsedMillis, incr.Bytes, incr.ElapsedMillis, len(progress))
	if full.Bytes < 8<<20 || incr.Bytes > full.Bytes/8 {
		t.Errorf("full %d bytes, incremental %d: want an incremental far below the full stream", full.Bytes, incr.Bytes)
	}
	dst := guids(t, zb, "tank/data")
	if dst["s1"] != src["s1"] || dst["s2"] != src["s2"] || len(dst) != 2 {
		t.Fatalf("target snapshots %v, source %v", dst, src)
	}
	// Check contents on b directly (the agent has no mount request).
	nb := b.nodes["b"]
	if _, err := nb.Exec(ctx, "zfs", "set", "readonly=on", "tank/data"); err != nil {
		t.Fatal(err)
	}
	if _, err := nb.Exec(ctx, "zfs", "mount", "tank/data"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"first": first, "second": second} {
		got, err := os.ReadFile(nb.Path(filepath.Join(nb.Dir, "mnt", "tank", "data", name)))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Errorf("file %s differs on the target", name)
		}
	}
}

// readCommandLog returns the argv the agent on node started.
func readCommandLog(t *testing.T, a *agentproc.Agent) [][]string {
	t.Helper()
	var path string
	for i, arg := range a.Args() {
		if arg == "--command-log" {
			path = a.Args()[i+1]
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Argv []string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Argv)
	}
	return out
}

// TestAgent_Security checks each refusal against running agents, and that
// no refused request started a process (the agent's command log).
func TestAgent_Security(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	a := b.agents["a"]

	t.Run("unknown client key is refused", func(t *testing.T) {
		_, err := agent.Dial(ctx, a.Addr, agent.ClientConfig{Signer: newSigner(t), HostKey: a.HostKey, Dial: b.net.DialContext})
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("got %v, want authentication failure", err)
		}
	})
	t.Run("wrong host key is refused by the client", func(t *testing.T) {
		_, err := agent.Dial(ctx, a.Addr, agent.ClientConfig{Signer: b.keys.Controller, HostKey: b.agents["b"].HostKey, Dial: b.net.DialContext})
		if !errors.Is(err, agent.ErrHostKeyMismatch) {
			t.Fatalf("got %v, want ErrHostKeyMismatch", err)
		}
	})
	t.Run("bad requests are refused and start nothing", func(t *testing.T) {
		c := b.dial(t, "a")
		before := len(readCommandLog(t, a))
		for _, argv := range [][]string{
			{"zfs", "snapshot", "vault/x@s"},                                                // outside the allow-list
			{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "guid", "vault"}, // outside the allow-list
			{"zfs", "snapshot", "tank/a;rm -rf /@s"},                                        // shell metacharacters
			{"zfs", "snapshot", "tank/$(reboot)@s"},                                         // shell metacharacters
			{"zfs", "snapshot", "tank/../../etc@s"},                                         // ..
			{"zfs", "snapshot", "-tank@s"},                                                  // leading -
			{"zfs", "destroy", "-r", "tank"},                                                // option smuggling
			{"zfs", "snapshot", "tank/" + strings.Repeat("x", 300) + "@s"},                  // over-long
			{"sh", "-c", "touch /tmp/pwned"},                                                // not zfs
		} {
			if err := c.Runner().Run(ctx, zfsexec.Command{Argv: argv}); !errors.Is(err, agent.ErrRefused) {
				t.Errorf("%q: got %v, want ErrRefused", argv, err)
			}
		}
		_, err := c.Transfer(ctx, agent.TransferRequest{
			Send:       zfsexec.SendOptions{Snapshot: "vault/x@s"},
			TargetAddr: b.agents["b"].Addr, TargetHostKey: b.agents["b"].PublicHostKey(),
			Recv: zfsexec.RecvOptions{Target: "tank/x"}}, nil)
		if !errors.Is(err, agent.ErrRefused) {
			t.Errorf("transfer from vault: got %v, want ErrRefused", err)
		}
		if after := readCommandLog(t, a); len(after) != before {
			t.Errorf("refused requests started processes: %q", after[before:])
		}
		// The agent does run an allowed command (the log works).
		if _, err := c.ZFS().Snapshots(ctx, "tank"); err != nil {
			t.Fatal(err)
		}
		if after := readCommandLog(t, a); len(after) == before {
			t.Error("command log recorded nothing for an allowed command")
		}
	})
	t.Run("changed host key is refused until approved", func(t *testing.T) {
		store := &hostkeys.FileStore{Path: filepath.Join(t.TempDir(), "known-hosts")}
		dial := func() error {
			c, err := agent.Dial(ctx, a.Addr, agent.ClientConfig{Signer: b.keys.Controller,
				HostKeyCallback: hostkeys.Callback(ctx, store, "a"), Dial: b.net.DialContext})
			if err == nil {
				c.Close()
			}
			return err
		}
		if err := dial(); err != nil {
			t.Fatalf("first use: %v", err)
		}
		old := a.HostKey
		newKey := a.RotateHostKey(t)
		if err := dial(); !errors.Is(err, hostkeys.ErrChanged) {
			t.Fatalf("after rotation: %v, want ErrChanged", err)
		}
		pinned, _, _ := store.Pinned(ctx, "a")
		if pinned != agent.MarshalPublicKey(old) {
			t.Fatal("a refused key changed the pin")
		}
		if err := hostkeys.Approve(ctx, store, "a", newKey); err != nil {
			t.Fatal(err)
		}
		if err := dial(); err != nil {
			t.Fatalf("after approval: %v", err)
		}
	})
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	k := agentproc.NewKeys(t)
	return k.Controller
}

// zfsProcesses lists the zfs commands (not the daemon) running anywhere.
func zfsProcesses(t *testing.T, under ...int) []string {
	t.Helper()
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "zfs" {
			continue
		}
		// Only the descendants of this test's agents: other packages'
		// tests run their own zfs commands at the same time.
		if pid, err := strconv.Atoi(e.Name()); err == nil && descendsFrom(pid, under) {
			out = append(out, e.Name()+": "+strings.Join(argv, " "))
		}
	}
	return out
}

// descendsFrom reports whether pid is a descendant of one of ancestors.
func descendsFrom(pid int, ancestors []int) bool {
	for range 32 {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat)[i+1:])
		if i < 0 || len(f) < 2 {
			return false
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil || ppid <= 1 {
			return false
		}
		if slices.Contains(ancestors, ppid) {
			return true
		}
		pid = ppid
	}
	return false
}

// TestAgent_CancelledTransferLeavesNodesClean cancels a transfer mid-stream:
// no partial dataset or snapshot on the target, no holds on the source, no
// zfs process left on either node.
func TestAgent_CancelledTransferLeavesNodesClean(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	ca, cb := b.dial(t, "a"), b.dial(t, "b")
	za, zb := ca.ZFS(), cb.ZFS()
	if err := za.CreateFilesystem(ctx, "tank/big", zfsexec.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	writeRandom(t, b.nodes["a"], filepath.Join(b.nodes["a"].Dir, "mnt", "tank", "big", "blob"), 200<<20)
	if err := za.Snapshot(ctx, "tank/big@s1", nil); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var seen int64
	_, err := ca.Transfer(tctx, agent.TransferRequest{
		Send:       zfsexec.SendOptions{Snapshot: "tank/big@s1"},
		TargetAddr: b.agents["b"].Addr, TargetHostKey: b.agents["b"].PublicHostKey(),
		Recv: zfsexec.RecvOptions{Target: "tank/big", Unmounted: true},
	}, func(p agent.Progress) {
		seen = p.Bytes
		if p.Bytes > 8<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled transfer returned %v (after %d bytes), want context.Canceled", err, seen)
	}
	if seen == 0 {
		t.Fatal("cancelled before any byte moved: the test did not cut a stream mid-way")
	}
	// Give both agents a moment to reap their processes, bounded.
	agents := []int{b.agents["a"].PID(), b.agents["b"].PID()}
	deadline := time.Now().Add(10 * time.Second)
	for len(zfsProcesses(t, agents...)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if p := zfsProcesses(t, agents...); len(p) > 0 {
		t.Errorf("zfs processes left: %v", p)
	}
	// The receiving daemon discards the partial dataset of an aborted full
	// receive once it sees the stream end; give it a bounded moment.
	var left []string
	for deadline := time.Now().Add(15 * time.Second); ; {
		all, err := zb.List(ctx, "tank", zfsexec.ListOptions{Depth: -1})
		if err != nil {
			t.Fatal(err)
		}
		left = left[:0]
		for _, d := range all {
			if strings.HasPrefix(d.Name, "tank/big") {
				left = append(left, d.Name)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("target still has %v 15s after a cancelled full receive", left)
	}
	snaps, err := za.Snapshots(ctx, "tank/big")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].UserRefs != 0 {
		t.Errorf("source snapshots after cancel: %+v, want @s1 with no holds", snaps)
	}
	// And the same transfer then completes.
	if _, err := ca.Transfer(ctx, agent.TransferRequest{
		Send:       zfsexec.SendOptions{Snapshot: "tank/big@s1"},
		TargetAddr: b.agents["b"].Addr, TargetHostKey: b.agents["b"].PublicHostKey(),
		Recv: zfsexec.RecvOptions{Target: "tank/big", Unmounted: true},
	}, nil); err != nil {
		t.Fatalf("transfer after cancel: %v", err)
	}
}
