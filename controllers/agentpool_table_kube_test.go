//go:build kube

package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/hostkeys"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// tableAgentPool drives AgentPool, the NodeAccess of production, against
// the Z8RNodes on the API server and a real in-process agent serving a
// fake node: which Z8RNode states it refuses and with what error, that it
// dials only a pinned key at the published address, keeps one connection
// per node, fails fast after a failed dial, and drops a connection only
// when an error names it.
func tableAgentPool(t *testing.T, te *tableEnv) {
	ctrlKey := newKey(t)
	agentKey := newKey(t)
	fake := fakezfs.New("pool-n1", fakezfs.Options{})
	if err := fake.ZFS().CreateFilesystem(context.Background(), "tank/pool", zfsexec.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv, err := agent.NewServer(agent.ServerConfig{
		HostKey:        agentKey,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{ctrlKey.PublicKey()}, nil },
		Policy:         agent.Policy{Pools: []string{"tank"}},
		Runner:         fake,
		Log:            logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	// An address nothing listens on.
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dl.Addr().String()
	_ = dl.Close()

	pinned := agent.MarshalPublicKey(agentKey.PublicKey())
	other := agent.MarshalPublicKey(newKey(t).PublicKey())
	const retryAfter = 300 * time.Millisecond
	tests := []struct {
		name    string
		node    *z8rv1.Z8RNode // nil: no Z8RNode
		wantErr error          // nil: a working node
		wantAs  any            // a pointer to an error type errors.As must find
		// then checks the pool afterwards.
		then func(t *testing.T, p *AgentPool, n *Node)
	}{
		{name: "no Z8RNode: no agent runs there", wantErr: ErrNodeUnknown},
		{name: "a host key not pinned yet", wantErr: ErrHostKeyUnknown,
			node: zfsNode("", pinned, true, l.Addr().String())},
		{name: "the agent presents another key than the pinned one", wantAs: new(*hostkeys.ChangedError),
			node: zfsNode(pinned, other, true, l.Addr().String())},
		{name: "an agent not ready", wantErr: ErrNodeNotReady,
			node: zfsNode(pinned, pinned, false, l.Addr().String())},
		{name: "a pinned key that does not parse", wantErr: errAny,
			node: zfsNode("ssh-ed25519 not-base64!", "", true, l.Addr().String())},
		{name: "a pinned key the agent does not have: the handshake fails", wantErr: agent.ErrHostKeyMismatch,
			node: zfsNode(other, "", true, l.Addr().String())},
		{name: "nothing listens: unreachable, then the same error at once until RetryAfter", wantErr: agent.ErrUnreachable,
			node: zfsNode(pinned, pinned, true, deadAddr),
			then: func(t *testing.T, p *AgentPool, _ *Node) {
				start := time.Now()
				_, err := p.Get(context.Background(), "pool-n1")
				if !errors.Is(err, agent.ErrUnreachable) || time.Since(start) > retryAfter/2 {
					t.Errorf("second Get: %v after %s, want the remembered ErrUnreachable at once", err, time.Since(start))
				}
			}},
		{name: "a ready agent: its node's ZFS, one connection reused", node: zfsNode(pinned, pinned, true, l.Addr().String()),
			then: func(t *testing.T, p *AgentPool, n *Node) {
				ctx := context.Background()
				if ok, err := n.ZFS().Exists(ctx, "tank/pool"); err != nil || !ok {
					t.Fatalf("the agent's node: tank/pool exists %v (%v)", ok, err)
				}
				if n.Address != l.Addr().String() || n.HostKey != pinned {
					t.Errorf("node address %q key %q, want the Z8RNode's", n.Address, n.HostKey)
				}
				again, err := p.Get(ctx, "pool-n1")
				if err != nil || again.conn != n.conn {
					t.Errorf("second Get: %v, same connection %v; want the pooled one", err, err == nil && again.conn == n.conn)
				}
			}},
		{name: "an error an agent reported drops nothing; one naming the connection drops it", node: zfsNode(pinned, pinned, true, l.Addr().String()),
			then: func(t *testing.T, p *AgentPool, n *Node) {
				ctx := context.Background()
				p.DropFailed(fmt.Errorf("send: %w", &agent.RemoteError{Kind: "unreachable", Message: "target refused"}), n)
				p.DropFailed(&agent.UnreachableError{Addr: "10.9.9.9:2022", Op: "open z8r.dev/run/v1"}, n)
				if again, err := p.Get(ctx, "pool-n1"); err != nil || again.conn != n.conn {
					t.Fatalf("after errors that do not name it: %v; the connection was dropped", err)
				}
				p.DropFailed(fmt.Errorf("list: %w", &agent.UnreachableError{Addr: n.conn.Addr(), Op: "open z8r.dev/run/v1", Err: errors.New("EOF")}), n)
				select {
				case <-n.conn.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the dropped connection was not closed")
				}
				again, err := p.Get(ctx, "pool-n1")
				if err != nil || again.conn == n.conn {
					t.Fatalf("after the drop: %v; want a new connection", err)
				}
				if ok, err := again.ZFS().Exists(ctx, "tank/pool"); err != nil || !ok {
					t.Errorf("the new connection: tank/pool exists %v (%v)", ok, err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			if tt.node != nil {
				zn := tt.node.DeepCopy()
				zn.Status = z8rv1.Z8RNodeStatus{}
				if err := c.Create(ctx, zn); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := c.Delete(ctx, zn); client.IgnoreNotFound(err) != nil {
						t.Error(err)
					}
				})
				zn.Status = tt.node.Status
				if err := c.Status().Update(ctx, zn); err != nil {
					t.Fatal(err)
				}
			}
			p := &AgentPool{Client: c, Signer: ctrlKey, RetryAfter: retryAfter, DialTimeout: 3 * time.Second}
			t.Cleanup(p.Close)
			n, err := p.Get(ctx, "pool-n1")
			switch {
			case tt.wantAs != nil:
				if !errors.As(err, tt.wantAs) {
					t.Fatalf("Get: %v, want %T", err, tt.wantAs)
				}
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("Get succeeded; want an error")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get: %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Get: %v", err)
			}
			if tt.then != nil {
				tt.then(t, p, n)
			}
		})
	}
}

// errAny stands for "any error" in a table's wantErr.
var errAny = errors.New("any error")

// zfsNode is the Z8RNode pool-n1 with the key the controller pinned, the
// key the agent presents, and its readiness at addr.
func zfsNode(pinned, presented string, ready bool, addr string) *z8rv1.Z8RNode {
	return &z8rv1.Z8RNode{
		ObjectMeta: metav1.ObjectMeta{Name: "pool-n1"},
		Spec:       z8rv1.Z8RNodeSpec{PinnedHostKey: pinned},
		Status:     z8rv1.Z8RNodeStatus{Ready: ready, Address: addr, HostKey: presented, Message: "starting"},
	}
}
