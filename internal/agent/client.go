package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// ClientConfig configures a connection to an agent.
type ClientConfig struct {
	// Signer is the client's identity; the agent must list its public key.
	Signer ssh.Signer
	// HostKey is the agent's pinned host key; any other key is refused.
	// (Pinning on first use is the caller's job: see package hostkeys.)
	HostKey ssh.PublicKey
	// HostKeyCallback, when set, replaces the exact-match HostKey check.
	HostKeyCallback ssh.HostKeyCallback
	// Dial, if set, opens the TCP connection.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds the connection and SSH handshake (default 10s).
	Timeout time.Duration
	// SSHDataPath sends stdin streams inside the SSH channel instead of on
	// a separate TLS data connection (dataconn.go).
	SSHDataPath bool
	// DataPlaintext takes an agent's offer of a plaintext data connection
	// (an agent started with --data-plaintext offers one); otherwise, and
	// by default, the data connection uses TLS. Only for trusted networks:
	// see ServerConfig.DataPlaintext.
	DataPlaintext bool
	// KeepAlive is how often an idle-or-not connection is probed; a probe
	// unanswered for 2×KeepAlive closes the connection, which fails every
	// request on it instead of letting it hang on a vanished peer
	// (default 15s; negative disables).
	KeepAlive time.Duration
	// MaxOutput bounds what the client accepts from a non-stream command
	// (everything but zfs send and recv): past it the request is cancelled
	// and fails with ErrOutputLimit, so a hostile agent cannot grow the
	// caller's memory (default DefaultMaxOutput; negative disables).
	MaxOutput int64
	// GrantAuthority, when set, signs a grant (IssueGrant, valid
	// DefaultGrantLifetime) for each Transfer whose request carries none:
	// for exactly that request, certifying the host key this client
	// verified on the source agent. The controller sets its own key.
	GrantAuthority ssh.Signer
	// RequestTimeout bounds a non-stream request when ctx has no earlier
	// deadline; past it the request is cancelled and fails with
	// ErrRequestTimeout (default DefaultRequestTimeout; negative disables).
	RequestTimeout time.Duration
}

// Client is a connection to one agent. It is safe for concurrent use; each
// request is its own SSH channel on the one connection.
type Client struct {
	conn     *ssh.Client
	addr     string
	zfs      *zfsexec.ZFS
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	dataConn bool
	// dataPlain takes a ticket's offer of a plaintext data connection.
	dataPlain bool
	// maxOutput and requestTimeout bound non-stream requests (≤ 0: none).
	maxOutput      int64
	requestTimeout time.Duration
	// hostKey is the key the agent presented and the callback accepted;
	// grantAuthority signs transfer grants for it.
	hostKey        ssh.PublicKey
	grantAuthority ssh.Signer

	closeOnce sync.Once
	closed    chan struct{}
}

// Dial connects to the agent at addr.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	return dial(ctx, addr, cfg, "z8r")
}

// dial connects to the agent at addr as user (GrantPrincipal for a
// source agent's grant login).
func dial(ctx context.Context, addr string, cfg ClientConfig, user string) (*Client, error) {
	if cfg.Signer == nil {
		return nil, errors.New("agent: client needs a key")
	}
	cb := cfg.HostKeyCallback
	if cb == nil {
		if cfg.HostKey == nil {
			return nil, errors.New("agent: client needs the agent's pinned host key")
		}
		cb = ExactHostKey(cfg.HostKey)
	}
	var presented ssh.PublicKey
	verify := cb
	cb = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := verify(hostname, remote, key); err != nil {
			return err
		}
		presented = key
		return nil
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	dial := cfg.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent: dial %s: %w: %w", addr, ErrUnreachable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: cb,
		Timeout:         cfg.Timeout,
		ClientVersion:   "SSH-2.0-z8r-client",
	})
	if err != nil {
		_ = nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Connected, but the agent did not complete the handshake in
			// time (a stopped or wedged agent): as unreachable as a
			// refused connection.
			return nil, fmt.Errorf("agent: ssh handshake with %s: %w: %w", addr, ErrUnreachable, err)
		}
		return nil, fmt.Errorf("agent: ssh handshake with %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	c := &Client{conn: ssh.NewClient(sc, chans, reqs), addr: addr, closed: make(chan struct{}),
		dial: cfg.Dial, dataConn: !cfg.SSHDataPath, dataPlain: cfg.DataPlaintext, maxOutput: cfg.MaxOutput, requestTimeout: cfg.RequestTimeout,
		hostKey: presented, grantAuthority: cfg.GrantAuthority}
	c.zfs = zfsexec.New(c.Runner())
	go func() {
		_ = c.conn.Wait()
		c.closeOnce.Do(func() { close(c.closed) })
	}()
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.KeepAlive > 0 {
		go c.keepAlive(cfg.KeepAlive)
	}
	return c, nil
}

// keepAlive probes the agent until the connection ends.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			_, _, _ = c.conn.SendRequest("keepalive@openssh.com", true, nil)
			close(answered)
		}()
		select {
		case <-answered:
		case <-c.closed:
			return
		case <-time.After(2 * every):
			_ = c.Close()
			return
		}
	}
}

// ExactHostKey accepts only key.
func ExactHostKey(key ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, got ssh.PublicKey) error {
		if !keysEqual(key, got) {
			return fmt.Errorf("%w: got %s, pinned %s", ErrHostKeyMismatch, ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(key))
		}
		return nil
	}
}

func keysEqual(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && bytes.Equal(a.Marshal(), b.Marshal())
}

// Close closes the connection; running requests are cancelled on the agent.
func (c *Client) Close() error {
	err := c.conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.closed }

// Addr is the agent's address.
func (c *Client) Addr() string { return c.addr }

// ZFS returns typed ZFS operations on the agent's node; capabilities are
// detected once per client.
func (c *Client) ZFS() *zfsexec.ZFS { return c.zfs }

// Runner returns a zfsexec.Runner that runs each argv on the agent.
func (c *Client) Runner() zfsexec.Runner { return remoteRunner{c} }

type remoteRunner struct{ c *Client }

func (r remoteRunner) Run(ctx context.Context, cmd zfsexec.Command) error {
	req := runRequest{Argv: cmd.Argv, DataConn: cmd.Stdin != nil && r.c.dataConn}
	if isStream(cmd.Argv) {
		return r.c.request(ctx, ChanRun, req, cmd.Stdin, cmd.Stdout, nil)
	}
	// A non-stream command is bounded in time and output on this side too:
	// the agent's own bounds protect the node, these protect the caller
	// from an agent that ignores them.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if r.c.requestTimeout > 0 {
		t := time.AfterFunc(r.c.requestTimeout, func() {
			stop(fmt.Errorf("%w (%s)", ErrRequestTimeout, r.c.requestTimeout))
		})
		defer t.Stop()
	}
	stdout := cmd.Stdout
	if stdout != nil && r.c.maxOutput > 0 {
		stdout = &limitWriter{W: stdout, max: r.c.maxOutput, exceeded: func() {
			stop(fmt.Errorf("%w (%d bytes)", ErrOutputLimit, r.c.maxOutput))
		}}
	}
	err := r.c.request(ctx, ChanRun, req, cmd.Stdin, stdout, nil)
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrOutputLimit) || errors.Is(cause, ErrRequestTimeout) {
			return fmt.Errorf("agent %s: %q: %w", r.c.addr, cmd.Argv, cause)
		}
	}
	return err
}

// Transfer asks the agent to send req.Send straight to the target agent.
// progress, if set, is called as progress reports arrive. Cancelling ctx
// stops both ends. With ClientConfig.GrantAuthority set and req.Grant
// empty, the grant for exactly req is issued here.
func (c *Client) Transfer(ctx context.Context, req TransferRequest, progress func(Progress)) (Result, error) {
	if req.Grant == "" && c.grantAuthority != nil {
		cert, err := IssueGrant(c.grantAuthority, c.hostKey, Grant{Send: req.Send, Recv: req.Recv, TargetAddr: req.TargetAddr, TargetHostKey: req.TargetHostKey},
			time.Now(), DefaultGrantLifetime)
		if err != nil {
			return Result{}, fmt.Errorf("agent %s: transfer grant: %w", c.addr, err)
		}
		req.Grant = MarshalPublicKey(cert)
	}
	var res Result
	err := c.request(ctx, ChanTransfer, req, nil, nil, func(st exitStatus) {
		res = Result{Bytes: st.Bytes, ElapsedMillis: st.Elapsed}
	}, withProgress(progress))
	return res, err
}

type requestOption func(*requestOpts)

type requestOpts struct{ progress func(Progress) }

func withProgress(f func(Progress)) requestOption {
	return func(o *requestOpts) { o.progress = f }
}

// request opens one channel, streams stdin/stdout, and returns the error
// the exit status describes.
func (c *Client) request(ctx context.Context, chanType string, payload any, stdin io.Reader, stdout io.Writer, onExit func(exitStatus), opts ...requestOption) error {
	var o requestOpts
	for _, f := range opts {
		f(&o)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ch, reqs, err := c.conn.OpenChannel(chanType, mustJSON(payload))
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) && oce.Reason == ssh.Prohibited {
			return &RefusedError{Reason: oce.Message}
		}
		return &UnreachableError{Addr: c.addr, Op: "open " + chanType, Err: err}
	}
	stop := context.AfterFunc(ctx, func() { _ = ch.Close() })
	defer stop()
	dataConn := false
	if rr, ok := payload.(runRequest); ok {
		dataConn = rr.DataConn
	}
	if stdin != nil && !dataConn {
		go func() {
			_, _ = io.Copy(ch, stdin)
			_ = ch.CloseWrite()
		}()
	} else {
		_ = ch.CloseWrite()
	}
	var dataMu sync.Mutex
	var data net.Conn
	ended := false
	defer func() {
		dataMu.Lock()
		ended = true
		if data != nil {
			_ = data.Close()
		}
		dataMu.Unlock()
	}()
	sendData := func(t dataTicket) {
		dc, err := dialData(ctx, c.dial, c.addr, t, c.dataPlain)
		if err != nil {
			_ = ch.Close() // the agent then reports no status; the error below says why
			return
		}
		dataMu.Lock()
		if ended {
			// The request is over: a late data connection sends nothing.
			dataMu.Unlock()
			_ = dc.Close()
			return
		}
		data = dc
		dataMu.Unlock()
		_, _ = io.CopyBuffer(dc, stdin, make([]byte, 256<<10))
		_ = dc.CloseWrite()
	}
	status := make(chan *exitStatus, 1)
	tickets := 0
	var violation atomic.Bool
	go func() {
		var got *exitStatus
		for r := range reqs {
			switch r.Type {
			case reqExit:
				var st exitStatus
				if json.Unmarshal(r.Payload, &st) == nil {
					got = &st
				}
			case reqDataTicket:
				var t dataTicket
				if dataConn && stdin != nil && json.Unmarshal(r.Payload, &t) == nil {
					// One data connection per channel: a second ticket
					// (an agent asking for the stream twice) ends the
					// request instead of sending the data again.
					if tickets++; tickets == 1 {
						go sendData(t)
					} else {
						violation.Store(true)
						_ = ch.Close()
					}
				}
			case reqProgress:
				var p Progress
				if o.progress != nil && json.Unmarshal(r.Payload, &p) == nil {
					o.progress(p)
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		status <- got
	}()
	if stdout == nil {
		stdout = io.Discard
	}
	_, copyErr := io.Copy(stdout, ch)
	if copyErr != nil {
		_ = ch.Close()
	}
	st := <-status
	_ = ch.Close()
	if violation.Load() {
		return fmt.Errorf("agent %s: %s: several data tickets on one channel: %w", c.addr, chanType, ErrProtocol)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("agent %s: %w", c.addr, ctx.Err())
	}
	if st == nil {
		return &UnreachableError{Addr: c.addr, Op: chanType + " ended without a status"}
	}
	if onExit != nil {
		onExit(*st)
	}
	if copyErr != nil && st.Kind == "" {
		return fmt.Errorf("agent %s: copy stdout: %w", c.addr, copyErr)
	}
	return errorFromStatus(*st)
}
