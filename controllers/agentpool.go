package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/hostkeys"
)

// Errors from AgentPool.Get that callers report on objects.
var (
	ErrNodeUnknown    = errors.New("node has no Z8RNode (no z8r agent runs there)")
	ErrNodeNotReady   = errors.New("node agent is not ready")
	ErrHostKeyUnknown = errors.New("node agent host key is not pinned yet")
)

// AgentPool keeps one connection per node agent, verified against the
// host key pinned in the node's Z8RNode spec.
type AgentPool struct {
	Client client.Client
	Signer ssh.Signer
	// Dial, if set, opens TCP connections (tests dial into namespaces).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RetryAfter is how long Get fails fast, with the same error, after a
	// dial to a node failed (default DefaultRetryAfter), so reconciles of a
	// hung or unreachable node cannot keep the workers waiting on dial
	// timeouts while other nodes' work queues behind them.
	RetryAfter time.Duration
	// DialTimeout bounds connecting to an agent and the SSH handshake
	// (default: agent.Dial's).
	DialTimeout time.Duration
	// DialWait bounds how long Get waits for another caller's dial to the
	// same node (default DefaultDialWait): past it Get fails, so callers
	// queued behind a hung node's dial free their workers.
	DialWait time.Duration
	// KeepAlive is the connections' probe interval (default
	// DefaultKeepAlive): a node that stops answering fails the requests
	// in flight to it after 2×KeepAlive.
	KeepAlive time.Duration

	mu      sync.Mutex
	conns   map[string]pooled
	dialing map[string]chan struct{} // per node: a one-slot semaphore
	failed  map[string]dialFailure
}

// Defaults of AgentPool's timing fields.
const (
	DefaultRetryAfter = 10 * time.Second
	DefaultDialWait   = 2 * time.Second
	DefaultKeepAlive  = 5 * time.Second
)

// dialFailure is a node's last failed dial, for the address and key it
// was made with.
type dialFailure struct {
	key   string
	until time.Time
	err   error
}

type pooled struct {
	c   *agent.Client
	key string // address + pinned key
}

// Get returns a connected agent for node.
func (p *AgentPool) Get(ctx context.Context, node string) (*Node, error) {
	var zn z8rv1.Z8RNode
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
	// A connection (and a failed dial) belongs to one agent process: a
	// restarted agent (status.startedAt) is dialled at once.
	key := zn.Status.Address + " " + pinned
	if zn.Status.StartedAt != nil {
		key += " " + zn.Status.StartedAt.UTC().Format(time.RFC3339)
	}
	// One dial at a time per node: concurrent reconciles of datasets on
	// the same node share one connection instead of racing to replace it,
	// and a node whose dial hangs holds up only its own callers.
	sem := p.nodeLock(node)
	wait := p.DialWait
	if wait == 0 {
		wait = DefaultDialWait
	}
	t := time.NewTimer(wait)
	select {
	case sem <- struct{}{}:
		t.Stop()
	case <-t.C:
		return nil, fmt.Errorf("%s: %w: another dial to it has been running for over %s", node, agent.ErrUnreachable, wait)
	case <-ctx.Done():
		t.Stop()
		return nil, fmt.Errorf("%s: %w", node, ctx.Err())
	}
	defer func() { <-sem }()
	p.mu.Lock()
	cur, ok := p.conns[node]
	f, failed := p.failed[node]
	p.mu.Unlock()
	if ok && cur.key == key {
		select {
		case <-cur.c.Done():
		default:
			return &Node{Endpoint: cur.c, conn: cur.c, Name: node, Address: zn.Status.Address, HostKey: pinned}, nil
		}
	}
	if failed && f.key == key && time.Now().Before(f.until) {
		return nil, fmt.Errorf("%s: %w (not redialled before %s)", node, f.err, f.until.UTC().Format(time.RFC3339))
	}
	c, err := agent.Dial(ctx, zn.Status.Address, agent.ClientConfig{Signer: p.Signer, HostKey: hk, Dial: p.Dial, GrantAuthority: p.Signer, Timeout: p.DialTimeout, KeepAlive: p.keepAlive()})
	if err != nil {
		retry := p.RetryAfter
		if retry == 0 {
			retry = DefaultRetryAfter
		}
		p.mu.Lock()
		p.failed[node] = dialFailure{key: key, until: time.Now().Add(retry), err: err}
		p.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", node, err)
	}
	p.mu.Lock()
	delete(p.failed, node)
	old, hadOld := p.conns[node]
	p.conns[node] = pooled{c: c, key: key}
	p.mu.Unlock()
	if hadOld {
		// Dead, or for an address or key that no longer applies.
		_ = old.c.Close()
	}
	return &Node{Endpoint: c, conn: c, Name: node, Address: zn.Status.Address, HostKey: pinned}, nil
}

// nodeLock returns node's dial semaphore, creating the pool's maps on
// first use.
func (p *AgentPool) nodeLock(node string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[string]pooled{}
		p.dialing = map[string]chan struct{}{}
		p.failed = map[string]dialFailure{}
	}
	l := p.dialing[node]
	if l == nil {
		l = make(chan struct{}, 1)
		p.dialing[node] = l
	}
	return l
}

func (p *AgentPool) keepAlive() time.Duration {
	if p.KeepAlive == 0 {
		return DefaultKeepAlive
	}
	return p.KeepAlive
}

// Drop closes n's connection if it is still the pooled one, so the next
// Get redials; a connection other reconciles already replaced is left alone.
func (p *AgentPool) Drop(n *Node) {
	p.mu.Lock()
	cur, ok := p.conns[n.Name]
	if ok && cur.c == n.conn {
		delete(p.conns, n.Name)
	}
	p.mu.Unlock()
	if ok && cur.c == n.conn {
		_ = cur.c.Close()
	}
}

// DropFailed drops those of nodes' connections that err shows failed: a
// connection that has ended (closed, or its keep-alives went unanswered),
// or one whose own channel could not be opened or ended without a status
// (an *agent.UnreachableError naming its address). An error an agent
// reported over a working connection (a *agent.RemoteError, such as the
// source agent failing to reach the target during a transfer) drops
// nothing: the controller's connections are fine, and dropping the
// source's would cancel every other transfer from that node.
func (p *AgentPool) DropFailed(err error, nodes ...*Node) {
	for _, n := range nodes {
		if n == nil || n.conn == nil {
			continue
		}
		ended := false
		select {
		case <-n.conn.Done():
			ended = true
		default:
		}
		if ended || ownChannelFailed(err, n.conn.Addr()) {
			p.Drop(n)
		}
	}
}

// ownChannelFailed reports whether err is the controller's own channel to
// the agent at addr failing (an *agent.UnreachableError naming addr), not
// an error an agent reported.
func ownChannelFailed(err error, addr string) bool {
	var re *agent.RemoteError
	var ue *agent.UnreachableError
	if err == nil || errors.As(err, &re) || !errors.As(err, &ue) {
		return false
	}
	return ue.Addr == addr
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
