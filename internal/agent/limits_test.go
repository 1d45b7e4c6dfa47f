package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// testServer is an in-process agent on loopback.
type testServer struct {
	srv     *Server
	addr    string
	hostKey ssh.PublicKey
	served  chan error
}

// startServerCfg runs an agent with cfg on l (a loopback listener when
// nil), filling the host key, keys (client), pools and log when unset.
func startServerCfg(t *testing.T, cfg ServerConfig, client ssh.Signer, l net.Listener) *testServer {
	t.Helper()
	if cfg.HostKey == nil {
		cfg.HostKey = newSigner(t)
	}
	if cfg.AuthorizedKeys == nil {
		cfg.AuthorizedKeys = func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{client.PublicKey()}, nil }
	}
	if cfg.Policy.Pools == nil {
		cfg.Policy = Policy{Pools: []string{"tank"}}
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l == nil {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ts := &testServer{srv: srv, addr: l.Addr().String(), hostKey: cfg.HostKey.PublicKey(), served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ts
}

func (ts *testServer) dial(t *testing.T, key ssh.Signer, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Signer, cfg.HostKey = key, ts.hostKey
	c, err := Dial(context.Background(), ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialFrom opens a raw TCP connection to addr from the loopback address
// src (any 127/8 address is local), so tests can act as several remotes.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedByPeer reports whether the server closed c (a read ends with EOF
// or reset, not with our own short deadline).
func closedByPeer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c) // whatever the agent says first, then the end
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestServer_UnauthenticatedFloodCappedPerAddress: 200 silent connections
// from one address are cut down to the per-address cap (the rest closed at
// once and counted), and a client from another address still connects and
// runs a command, as does a client connected before the flood.
func TestServer_UnauthenticatedFloodCappedPerAddress(t *testing.T) {
	key := newSigner(t)
	ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}, MaxUnauthConns: 64, MaxUnauthPerAddr: 8}, key, nil)
	before := ts.dial(t, key, ClientConfig{})

	var flood []net.Conn
	for range 200 {
		flood = append(flood, dialFrom(t, "127.0.0.2", ts.addr))
	}
	waitFor(t, "192 refused connections", 5*time.Second, func() bool { return ts.srv.Stats().RefusedConns == 192 })
	if st := ts.srv.Stats(); st.Unauthenticated != 8 {
		t.Fatalf("unauthenticated connections = %d, want the cap 8 (stats %+v)", st.Unauthenticated, st)
	}
	closed := 0
	for _, c := range flood {
		if closedByPeer(c, 20*time.Millisecond) {
			closed++
		}
	}
	if closed != 192 {
		t.Errorf("%d flood connections closed by the agent, want 192", closed)
	}

	for name, c := range map[string]*Client{"connected before the flood": before, "new from another address": ts.dial(t, key, ClientConfig{})} {
		caps, err := c.ZFS().Capabilities(context.Background())
		if err != nil || caps.Implementation != zfsexec.ImplOpenZFS {
			t.Errorf("%s: command during the flood: %+v %v", name, caps, err)
		}
	}
}

// TestServer_UnauthenticatedFloodCappedGlobally: silent connections from
// many addresses stop at the global cap.
func TestServer_UnauthenticatedFloodCappedGlobally(t *testing.T) {
	key := newSigner(t)
	ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}, MaxUnauthConns: 16, MaxUnauthPerAddr: 4}, key, nil)
	for i := range 10 {
		for range 4 {
			dialFrom(t, net.IPv4(127, 0, 1, byte(i+1)).String(), ts.addr)
		}
	}
	waitFor(t, "24 refused connections", 5*time.Second, func() bool { return ts.srv.Stats().RefusedConns == 24 })
	if st := ts.srv.Stats(); st.Unauthenticated != 16 {
		t.Fatalf("unauthenticated connections = %d, want the global cap 16", st.Unauthenticated)
	}
}

// TestServer_PreAuthDeadline: a connection that does not finish the
// handshake is closed after HandshakeTimeout and frees its slot.
func TestServer_PreAuthDeadline(t *testing.T) {
	key := newSigner(t)
	ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}, HandshakeTimeout: 300 * time.Millisecond}, key, nil)
	silent := dialFrom(t, "127.0.0.3", ts.addr)
	slow := dialFrom(t, "127.0.0.3", ts.addr)
	// slow starts an SSH handshake and never finishes it.
	if _, err := io.WriteString(slow, "SSH-2.0-slow\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for name, c := range map[string]net.Conn{"silent": silent, "half a handshake": slow} {
		if !closedByPeer(c, 5*time.Second) {
			t.Errorf("%s: connection still open after 5s", name)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %s, want about the 300ms handshake timeout", d)
	}
	waitFor(t, "slots freed", 2*time.Second, func() bool { return ts.srv.Stats().Unauthenticated == 0 })
	// An authenticated connection is not subject to it.
	c := ts.dial(t, key, ClientConfig{})
	time.Sleep(500 * time.Millisecond)
	if _, err := c.ZFS().Capabilities(context.Background()); err != nil {
		t.Fatalf("authenticated connection after the handshake timeout: %v", err)
	}
}

// flakyListener fails its first n Accepts with err.
type flakyListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestServer_TemporaryAcceptErrorsRetried: out of file descriptors (and
// similar) does not end Serve; the agent keeps serving.
func TestServer_TemporaryAcceptErrorsRetried(t *testing.T) {
	for name, err := range map[string]error{
		"EMFILE":  &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		"ENFILE":  &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		"timeout": &net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded},
	} {
		t.Run(name, func(t *testing.T) {
			key := newSigner(t)
			inner, lerr := net.Listen("tcp", "127.0.0.1:0")
			if lerr != nil {
				t.Fatal(lerr)
			}
			ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}}, key, &flakyListener{Listener: inner, n: 5, err: err})
			c := ts.dial(t, key, ClientConfig{})
			if _, err := c.ZFS().Capabilities(context.Background()); err != nil {
				t.Fatalf("command after accept errors: %v", err)
			}
			select {
			case err := <-ts.served:
				t.Fatalf("Serve returned %v after a temporary accept error", err)
			default:
			}
			if got := ts.srv.Stats().AcceptErrors; got != 5 {
				t.Errorf("accept errors counted = %d, want 5", got)
			}
		})
	}
}

// TestServer_PermanentAcceptErrorEndsServe: a broken listener is not
// retried forever.
func TestServer_PermanentAcceptErrorEndsServe(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}}, newSigner(t), &flakyListener{Listener: inner, n: 1, err: net.ErrClosed})
	select {
	case err := <-ts.served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept going on a closed listener")
	}
}

// floodRunner answers `zfs get ... guid` with output without end and
// `zfs get ... creation` by blocking until cancelled, and reports how each
// command ended.
type floodRunner struct {
	ended chan error
}

func (f floodRunner) Run(ctx context.Context, c zfsexec.Command) error {
	var err error
	switch c.Argv[len(c.Argv)-2] {
	case "guid":
		buf := bytes.Repeat([]byte("tank/x\n"), 1<<14)
		for err == nil {
			if ctx.Err() != nil {
				err = ctx.Err()
				break
			}
			_, err = c.Stdout.Write(buf)
		}
	case "creation":
		<-ctx.Done()
		err = ctx.Err()
	}
	f.ended <- err
	return err
}

// countingBuffer keeps at most the bytes written to it, and their count.
type countingBuffer struct {
	mu sync.Mutex
	n  int64
}

func (b *countingBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.n += int64(len(p))
	b.mu.Unlock()
	return len(p), nil
}

// TestServer_OutputBound: a non-stream command writing past the bound is
// killed and the request fails with ErrOutputLimit, on the agent's bound
// and on the client's own; nothing past the bound reaches the caller.
func TestServer_OutputBound(t *testing.T) {
	for _, tc := range []struct {
		name              string
		server, client    int64
		wantAtMost        int64
		wantServerStopped bool
	}{
		{name: "agent bound", server: 1 << 20, client: -1, wantAtMost: 1 << 20},
		{name: "client bound", server: -1, client: 1 << 20, wantAtMost: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := newSigner(t)
			fr := floodRunner{ended: make(chan error, 1)}
			ts := startServerCfg(t, ServerConfig{Runner: fr, MaxOutput: tc.server}, key, nil)
			c := ts.dial(t, key, ClientConfig{MaxOutput: tc.client})
			out := &countingBuffer{}
			err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "get", "-H", "-p", "-r", "-o", "name,property,value,source", "guid", "tank"}, Stdout: out})
			if !errors.Is(err, ErrOutputLimit) {
				t.Fatalf("got %v, want ErrOutputLimit", err)
			}
			if out.n > tc.wantAtMost {
				t.Errorf("caller received %d bytes, bound %d", out.n, tc.wantAtMost)
			}
			select {
			case <-fr.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the command kept running past the bound")
			}
		})
	}
}

// TestServer_RequestDeadline: a non-stream request running past the
// deadline is killed and fails with ErrRequestTimeout, on the agent's
// deadline and on the client's own.
func TestServer_RequestDeadline(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, client time.Duration
	}{
		{name: "agent deadline", server: 200 * time.Millisecond, client: -1},
		{name: "client deadline", server: -1, client: 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := newSigner(t)
			fr := floodRunner{ended: make(chan error, 1)}
			ts := startServerCfg(t, ServerConfig{Runner: fr, RequestTimeout: tc.server}, key, nil)
			c := ts.dial(t, key, ClientConfig{RequestTimeout: tc.client})
			start := time.Now()
			err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "creation", "tank"}, Stdout: io.Discard})
			if !errors.Is(err, ErrRequestTimeout) {
				t.Fatalf("got %v, want ErrRequestTimeout", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("returned after %s", d)
			}
			select {
			case <-fr.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the command kept running past the deadline")
			}
		})
	}
}

// stallRunner answers `zfs version` like OpenZFS; its send writes some
// bytes then hangs until cancelled; its recv reads until its stdin ends.
// Each stream command reports on ended how it finished.
type stallRunner struct {
	ended chan string
}

func (r stallRunner) Run(ctx context.Context, c zfsexec.Command) error {
	switch c.Argv[1] {
	case "version":
		_, _ = c.Stdout.Write([]byte("zfs-2.3.2-1\n"))
		return nil
	case "send":
		_, _ = c.Stdout.Write(make([]byte, 64<<10))
		<-ctx.Done()
		r.ended <- "send cancelled"
		return ctx.Err()
	case "recv", "receive":
		// Like a killed process, the receive ends on cancellation even
		// while its stdin blocks.
		copied := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c.Stdin)
			copied <- err
		}()
		select {
		case <-ctx.Done():
			r.ended <- "recv cancelled"
			return ctx.Err()
		case err := <-copied:
			if ctx.Err() != nil {
				r.ended <- "recv cancelled"
				return ctx.Err()
			}
			r.ended <- "recv ended"
			return err
		}
	}
	return nil
}

// TestServer_TransferStallAborted: a transfer whose send stops producing
// bytes is aborted after the stall timeout, both the send (source) and the
// receive (target) are stopped, and the client gets ErrStalled.
func TestServer_TransferStallAborted(t *testing.T) {
	key := newSigner(t)
	ended := make(chan string, 4)
	// The source logs in to the target with the grant key signs.
	target := startServerCfg(t, ServerConfig{Runner: stallRunner{ended}}, key, nil)
	source := startServerCfg(t, ServerConfig{Runner: stallRunner{ended}, StallTimeout: 400 * time.Millisecond}, key, nil)
	c := source.dial(t, key, ClientConfig{GrantAuthority: key})
	start := time.Now()
	_, err := c.Transfer(context.Background(), TransferRequest{
		Send:       zfsexec.SendOptions{Snapshot: "tank/a@s"},
		TargetAddr: target.addr, TargetHostKey: MarshalPublicKey(target.hostKey),
		Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
	}, nil)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stall detected after %s, want about 400ms", d)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case e := <-ended:
			got[e] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("ends stopped: %v; want the send and the receive stopped", got)
		}
	}
	if !got["send cancelled"] || !(got["recv cancelled"] || got["recv ended"]) {
		t.Errorf("ends stopped: %v; want the send cancelled and the receive stopped", got)
	}
}

// TestServer_StreamRunStallAborted: a zfs recv over ChanRun whose input
// stops arriving is aborted with ErrStalled.
func TestServer_StreamRunStallAborted(t *testing.T) {
	key := newSigner(t)
	ended := make(chan string, 1)
	ts := startServerCfg(t, ServerConfig{Runner: stallRunner{ended}, StallTimeout: 300 * time.Millisecond}, key, nil)
	c := ts.dial(t, key, ClientConfig{})
	pr, pw := io.Pipe() // never written: the stream stalls
	defer pw.Close()
	err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/a"}, Stdin: pr})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
	select {
	case e := <-ended:
		if e != "recv cancelled" {
			t.Errorf("recv: %s, want cancelled", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("recv kept running")
	}
}
