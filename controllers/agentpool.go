package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/hostkeys"
)

// Errors from AgentPool.Get that callers report on objects.
var (
	ErrNodeUnknown    = errors.New("node has no ZFSNode (no z8r agent runs there)")
	ErrNodeNotReady   = errors.New("node agent is not ready")
	ErrHostKeyUnknown = errors.New("node agent host key is not pinned yet")
)

// AgentPool keeps one connection per node agent, verified against the
// host key pinned in the node's ZFSNode spec.
type AgentPool struct {
	Client client.Client
	Signer ssh.Signer
	// Dial, if set, opens TCP connections (tests dial into namespaces).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	dialMu sync.Mutex
	mu     sync.Mutex
	conns  map[string]pooled
}

type pooled struct {
	c   *agent.Client
	key string // address + pinned key
}

// Node is a connected agent with what the pool read about it.
type Node struct {
	*agent.Client
	Name    string
	Address string
	HostKey string
}

// Get returns a connected agent for node.
func (p *AgentPool) Get(ctx context.Context, node string) (*Node, error) {
	var zn z8rv1.ZFSNode
	if err := p.Client.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s: %w", node, ErrNodeUnknown)
		}
		return nil, err
	}
	pinned := zn.Spec.PinnedHostKey
	switch {
	case pinned == "":
		return nil, fmt.Errorf("%s: %w", node, ErrHostKeyUnknown)
	case zn.Status.HostKey != "" && zn.Status.HostKey != pinned:
		return nil, fmt.Errorf("%s: %w", node, &hostkeys.ChangedError{Node: node, Pinned: fingerprint(pinned), Presented: zn.Status.HostKeyFingerprint})
	case !zn.Status.Ready || zn.Status.Address == "":
		return nil, fmt.Errorf("%s: %w: %s", node, ErrNodeNotReady, zn.Status.Message)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned))
	if err != nil {
		return nil, fmt.Errorf("%s: pinned host key: %w", node, err)
	}
	key := zn.Status.Address + " " + pinned
	// One dial at a time per pool: concurrent reconciles of datasets on
	// the same node share one connection instead of racing to replace it.
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	p.mu.Lock()
	if p.conns == nil {
		p.conns = map[string]pooled{}
	}
	cur, ok := p.conns[node]
	p.mu.Unlock()
	if ok && cur.key == key {
		select {
		case <-cur.c.Done():
		default:
			return &Node{Client: cur.c, Name: node, Address: zn.Status.Address, HostKey: pinned}, nil
		}
	}
	c, err := agent.Dial(ctx, zn.Status.Address, agent.ClientConfig{Signer: p.Signer, HostKey: hk, Dial: p.Dial, GrantAuthority: p.Signer})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", node, err)
	}
	p.mu.Lock()
	old, hadOld := p.conns[node]
	p.conns[node] = pooled{c: c, key: key}
	p.mu.Unlock()
	if hadOld {
		// Dead, or for an address or key that no longer applies.
		_ = old.c.Close()
	}
	return &Node{Client: c, Name: node, Address: zn.Status.Address, HostKey: pinned}, nil
}

// Drop closes n's connection if it is still the pooled one, so the next
// Get redials; a connection other reconciles already replaced is left alone.
func (p *AgentPool) Drop(n *Node) {
	p.mu.Lock()
	cur, ok := p.conns[n.Name]
	if ok && cur.c == n.Client {
		delete(p.conns, n.Name)
	}
	p.mu.Unlock()
	if ok && cur.c == n.Client {
		_ = cur.c.Close()
	}
}

// DropFailed drops those of nodes' connections that err shows failed: a
// connection that has ended (closed, or its keep-alives went unanswered),
// or one whose own channel could not be opened or ended without a status
// (a local agent.ErrUnreachable naming its address). An error an agent
// reported over a working connection (a *agent.RemoteError, such as the
// source agent failing to reach the target during a transfer) drops
// nothing: the controller's connections are fine, and dropping the
// source's would cancel every other transfer from that node.
func (p *AgentPool) DropFailed(err error, nodes ...*Node) {
	for _, n := range nodes {
		if n == nil || n.Client == nil {
			continue
		}
		ended := false
		select {
		case <-n.Done():
			ended = true
		default:
		}
		if ended || ownChannelFailed(err, n.Addr()) {
			p.Drop(n)
		}
	}
}

// ownChannelFailed reports whether err is the controller's own channel to
// the agent at addr failing (not an error an agent reported).
func ownChannelFailed(err error, addr string) bool {
	var re *agent.RemoteError
	if err == nil || errors.As(err, &re) || !errors.Is(err, agent.ErrUnreachable) {
		return false
	}
	return strings.Contains(err.Error(), "agent "+addr+":")
}

// Close closes every connection.
func (p *AgentPool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.c.Close()
	}
}

func fingerprint(authorizedKey string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return "invalid"
	}
	return ssh.FingerprintSHA256(k)
}
