package controllers

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/zfsexec"
)

// silentListener accepts TCP connections and never speaks: an agent that
// hangs after the kernel accepted the connection (a stopped process, a
// wedged node). It counts accepts and signals each one.
type silentListener struct {
	l        net.Listener
	accepts  atomic.Int64
	accepted chan struct{}
	conns    chan net.Conn
}

func newSilentListener(t *testing.T) *silentListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{l: l, accepted: make(chan struct{}, 16), conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.conns <- c
			s.accepted <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		close(s.conns)
		for c := range s.conns {
			_ = c.Close()
		}
	})
	return s
}

type nopRunner struct{}

func (nopRunner) Run(context.Context, zfsexec.Command) error { return nil }

// newKey is a fresh ed25519 key, made the way an agent makes its own.
func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	s, err := agent.LoadOrCreateKey(filepath.Join(t.TempDir(), "key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readyNode(name, addr string, hostKey ssh.PublicKey) *z8rv1.Z8RNode {
	k := agent.MarshalPublicKey(hostKey)
	return &z8rv1.Z8RNode{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       z8rv1.Z8RNodeSpec{PinnedHostKey: k},
		Status:     z8rv1.Z8RNodeStatus{Ready: true, Address: addr, HostKey: k},
	}
}

// TestAgentPool_HungNodeDoesNotHoldUpOthers is issue 13's item 6 at the
// pool: while a dial to a hung agent is in progress, a Get for another
// node completes (the dial lock is per node, not per pool) and another Get
// for the hung node gives up after DialWait instead of queueing behind
// the dial (each queued caller would be a reconcile worker); after the hung
// dial fails, Gets for that node fail fast with the same error for
// RetryAfter, without a new connection, and then it is dialled again.
func TestAgentPool_HungNodeDoesNotHoldUpOthers(t *testing.T) {
	ctrlKey := newKey(t)
	goodHost := newKey(t)
	srv, err := agent.NewServer(agent.ServerConfig{
		HostKey:        goodHost,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{ctrlKey.PublicKey()}, nil },
		Policy:         agent.Policy{Pools: []string{"tank"}},
		Runner:         nopRunner{},
		Log:            logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(gl) }()
	t.Cleanup(func() { _ = srv.Close() })
	hung := newSilentListener(t)

	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		readyNode("good", gl.Addr().String(), goodHost.PublicKey()),
		readyNode("hung", hung.l.Addr().String(), newKey(t).PublicKey()),
	).Build()
	const dialTimeout = 3 * time.Second
	const retryAfter = 500 * time.Millisecond
	pool := &AgentPool{Client: c, Signer: ctrlKey, DialTimeout: dialTimeout, RetryAfter: retryAfter, DialWait: 200 * time.Millisecond}
	t.Cleanup(pool.Close)
	ctx := context.Background()

	hungDone := make(chan error, 1)
	go func() {
		_, err := pool.Get(ctx, "hung")
		hungDone <- err
	}()
	select {
	case <-hung.accepted:
	case <-time.After(dialTimeout):
		t.Fatal("the hung node's dial never connected")
	}
	// The hung dial is now in progress: another node must not wait for it,
	// and another caller for the hung node waits DialWait, not the dial.
	if _, err := pool.Get(ctx, "good"); err != nil {
		t.Fatalf("Get(good) while hung's dial runs: %v", err)
	}
	if _, err := pool.Get(ctx, "hung"); !errors.Is(err, agent.ErrUnreachable) {
		t.Fatalf("a second Get(hung) during its dial: %v, want ErrUnreachable after DialWait", err)
	}
	select {
	case err := <-hungDone:
		t.Fatalf("hung's dial ended before good's Get returned (%v): the test proves nothing", err)
	default:
	}
	var first error
	select {
	case first = <-hungDone:
	case <-time.After(2 * dialTimeout):
		t.Fatal("hung's dial did not time out")
	}
	if !errors.Is(first, agent.ErrUnreachable) {
		t.Fatalf("hung's dial: %v, want ErrUnreachable", first)
	}

	// Within RetryAfter: the same error at once, no new connection.
	n := hung.accepts.Load()
	_, err = pool.Get(ctx, "hung")
	if !errors.Is(err, agent.ErrUnreachable) {
		t.Fatalf("second Get(hung): %v, want the remembered ErrUnreachable", err)
	}
	if got := hung.accepts.Load(); got != n {
		t.Fatalf("second Get(hung) dialled again (%d connections, want %d)", got, n)
	}

	// After RetryAfter it is dialled again.
	time.Sleep(retryAfter + 100*time.Millisecond)
	go func() {
		_, err := pool.Get(ctx, "hung")
		hungDone <- err
	}()
	select {
	case <-hung.accepted:
	case <-time.After(dialTimeout):
		t.Fatal("Get(hung) after RetryAfter did not dial again")
	}
	<-hungDone
}
