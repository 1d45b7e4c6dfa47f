package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/z8r-project/z8r/zfsexec"
)

// ServerConfig configures an agent's SSH endpoint.
type ServerConfig struct {
	// HostKey identifies the agent; clients pin it. It is also the
	// node's identity when it dials another agent for a transfer, certified
	// by the transfer's grant (grant.go).
	HostKey ssh.Signer
	// AuthorizedKeys returns the client keys allowed in with full
	// authority (the controller's), which are also the only authorities
	// whose transfer grants are honoured. It is called on every login, so
	// a rotated Secret takes effect without a restart.
	AuthorizedKeys func() ([]ssh.PublicKey, error)
	// Policy decides which ZFS commands run.
	Policy Policy
	// Runner runs the allowed commands on this node.
	Runner zfsexec.Runner
	// Dial, if set, opens connections to other agents (tests use it to
	// dial inside a network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ProgressInterval is how often transfers report progress (default 1s).
	ProgressInterval time.Duration
	// Log receives the audit record of every request (constant message
	// "audit", see audit.go) and the server's own events.
	Log logr.Logger
	// AuditLog, if set, also receives each audit record as a JSON line.
	AuditLog io.Writer

	// Limits. Zero means the Default* value of limits.go; a negative
	// duration or output bound disables that limit.

	// MaxUnauthConns caps connections not yet authenticated; more are
	// closed at once and counted (Stats.RefusedConns).
	MaxUnauthConns int
	// MaxUnauthPerAddr caps them per remote IP address.
	MaxUnauthPerAddr int
	// HandshakeTimeout bounds accept-to-authenticated (SSH handshake, or a
	// data connection's token).
	HandshakeTimeout time.Duration
	// MaxOutput bounds what a non-stream command may write; past it the
	// command is killed and the request fails with ErrOutputLimit.
	MaxOutput int64
	// RequestTimeout bounds a non-stream request; past it the command is
	// killed and the request fails with ErrRequestTimeout.
	RequestTimeout time.Duration
	// StallTimeout aborts a transfer or a stream command (zfs send/recv)
	// that moved no byte for that long, as a cancellation does; the
	// request fails with ErrStalled.
	StallTimeout time.Duration
	// RateLimit caps, in bytes per second, everything this agent sends
	// in transfers, all of them together (0: no node-wide cap). A
	// transfer's own TransferRequest.RateLimit applies as well.
	RateLimit int64
	// DataPlaintext allows data connections without TLS, for trusted
	// networks only (off by default; dataconn.go): this agent's tickets
	// offer one, and when it sends a transfer it takes a target's offer.
	// A stream travels in plaintext only when both agents allow it. The
	// connection is still authenticated by the one-time token from the
	// SSH channel, but anyone on the path can read and alter the stream.
	DataPlaintext bool
}

func (c *ServerConfig) setDefaults() {
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	if c.MaxUnauthConns <= 0 {
		c.MaxUnauthConns = DefaultMaxUnauthConns
	}
	if c.MaxUnauthPerAddr <= 0 {
		c.MaxUnauthPerAddr = DefaultMaxUnauthPerAddr
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxOutput == 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
}

// Server is a node agent's SSH endpoint. It accepts only the typed requests
// of this package's protocol: no shell, no arbitrary exec.
type Server struct {
	cfg  ServerConfig
	zfs  *zfsexec.ZFS
	used usedSerials
	data *dataServer
	// accepted holds, per remote address, the login the key callback
	// accepted and that has not finished its handshake yet: if the
	// client's signature then fails (a copied certificate or public key
	// without its private key), handleConn audits the refusal.
	accepted     sync.Map // remote address -> client
	unauth       *connLimiter
	acceptErrors atomic.Int64
	// nodeRate paces all transfers together (ServerConfig.RateLimit);
	// nil: no node-wide cap.
	nodeRate *rate.Limiter
	// policy is the Policy in force: cfg.Policy until SetPools.
	policy atomic.Pointer[Policy]

	mu       sync.Mutex
	conns    map[*ssh.ServerConn]struct{}
	closed   bool
	listener net.Listener
}

// NewServer checks cfg and returns a server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.HostKey == nil || cfg.AuthorizedKeys == nil || cfg.Runner == nil {
		return nil, errors.New("agent: server needs a host key, authorized keys and a runner")
	}
	if err := checkPools(cfg.Policy.Pools); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	data, err := newDataServer()
	if err != nil {
		return nil, err
	}
	data.plaintext = cfg.DataPlaintext
	s := &Server{cfg: cfg, zfs: zfsexec.New(cfg.Runner), data: data, conns: map[*ssh.ServerConn]struct{}{},
		unauth: newConnLimiter(cfg.MaxUnauthConns, cfg.MaxUnauthPerAddr), nodeRate: newRateLimiter(cfg.RateLimit)}
	p := cfg.Policy
	p.Pools = slices.Clone(p.Pools)
	s.policy.Store(&p)
	return s, nil
}

// checkPools refuses an empty list and any name that is not a pool's.
func checkPools(pools []string) error {
	if len(pools) == 0 {
		return errors.New("agent: server needs at least one allowed pool")
	}
	for _, p := range pools {
		if err := zfsexec.ValidatePool(p); err != nil {
			return fmt.Errorf("agent: allowed pool: %w", err)
		}
	}
	return nil
}

// SetPools replaces the pools requests may name (a node's Z8RNode
// spec.pools, read by the publisher). Requests checked from then on see
// the new list; a command already running is not stopped. An empty list
// or a bad name is refused and the pools stay as they were.
func (s *Server) SetPools(pools []string) error {
	if err := checkPools(pools); err != nil {
		return err
	}
	p := *s.policy.Load()
	p.Pools = slices.Clone(pools)
	s.policy.Store(&p)
	return nil
}

// Pools returns the pools requests may name now.
func (s *Server) Pools() []string { return slices.Clone(s.policy.Load().Pools) }

func (s *Server) sshConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if cert, ok := key.(*ssh.Certificate); ok {
				return s.grantLogin(meta, cert)
			}
			fp := ssh.FingerprintSHA256(key)
			keys, err := s.cfg.AuthorizedKeys()
			if err != nil {
				// Fail closed and loudly: a file the agent cannot fully
				// understand (e.g. a line with options) admits nobody.
				s.cfg.Log.Error(err, "authorized keys unusable, login refused", "remote", meta.RemoteAddr().String(), "fingerprint", fp)
				s.audit(auditRecord{Remote: meta.RemoteAddr().String(), Fingerprint: fp, Request: "login", Outcome: outcomeRefused, Reason: "authorized keys unusable: " + err.Error()})
				return nil, fmt.Errorf("agent: load authorized keys: %w", err)
			}
			for _, k := range keys {
				if keysEqual(k, key) {
					s.accepted.Store(meta.RemoteAddr().String(), client{remote: meta.RemoteAddr().String(), fingerprint: fp})
					return &ssh.Permissions{Extensions: map[string]string{extFingerprint: fp}}, nil
				}
			}
			s.audit(auditRecord{Remote: meta.RemoteAddr().String(), Fingerprint: fp, Request: "login", Outcome: outcomeRefused, Reason: "unknown client key"})
			return nil, errors.New("agent: unknown client key")
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, _ ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			return s.useGrant(meta, perms)
		},
		ServerVersion: "SSH-2.0-z8r-agent",
	}
	c.AddHostKey(s.cfg.HostKey)
	return c
}

// Serve accepts connections on l until Close. Temporary Accept errors (out
// of file descriptors, an aborted connection, a timeout) are retried with
// backoff; connections over the pre-authentication caps are closed at once
// and counted; every connection must authenticate within HandshakeTimeout.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.listener = l
	s.mu.Unlock()
	cfg := s.sshConfig()
	failures := 0
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			if temporaryAcceptError(err) {
				failures++
				s.acceptErrors.Add(1)
				wait := acceptBackoff(failures)
				s.cfg.Log.Error(err, "accept failed, retrying", "retryIn", wait.String())
				time.Sleep(wait)
				continue
			}
			return fmt.Errorf("agent: accept: %w", err)
		}
		failures = 0
		release, ok := s.unauth.acquire(nc.RemoteAddr())
		if !ok {
			_ = nc.Close()
			if n := s.unauth.refused.Load(); n == 1 || n%100 == 0 {
				s.cfg.Log.Info("connection over the pre-authentication cap closed", "remote", nc.RemoteAddr().String(), "refusedTotal", n)
			}
			continue
		}
		_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		go func() {
			c, kind, err := sniff(nc)
			switch {
			case err != nil:
				release()
				_ = nc.Close()
			case kind == kindTLS:
				s.data.serve(c, release)
			case kind == kindPlainData:
				s.data.servePlain(c, release)
			default:
				s.handleConn(c, cfg, release)
			}
		}()
	}
}

// Stats returns the connection counters.
func (s *Server) Stats() Stats {
	return Stats{Unauthenticated: s.unauth.unauthenticated(), RefusedConns: s.unauth.refused.Load(), AcceptErrors: s.acceptErrors.Load()}
}

// Close stops accepting and closes every connection (which cancels their
// requests, kills their processes and closes the connections their
// transfers opened to other agents).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	l := s.listener
	conns := s.conns
	s.conns = map[*ssh.ServerConn]struct{}{}
	s.mu.Unlock()
	if l != nil {
		_ = l.Close()
	}
	for c := range conns {
		_ = c.Close()
	}
	return nil
}

// handleConn runs the SSH handshake (under the deadline Serve set) and then
// the connection's channels. release frees the pre-authentication slot.
func (s *Server) handleConn(nc net.Conn, cfg *ssh.ServerConfig, release func()) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	release()
	pending, wasAccepted := s.accepted.LoadAndDelete(nc.RemoteAddr().String())
	if err != nil {
		if wasAccepted {
			// The key was acceptable but the handshake failed after it,
			// typically a signature that does not verify: a key or a
			// grant certificate presented without its private key.
			s.audit(pending.(client).record("login", nil, outcomeRefused, "handshake failed after the key was accepted: "+err.Error()))
		}
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	who := client{remote: conn.RemoteAddr().String(), fingerprint: conn.Permissions.Extensions[extFingerprint]}
	gc, err := s.grantOf(conn.Permissions)
	if gc != nil {
		who.grant, who.keyID, who.serial = true, gc.keyID, gc.serial
	}
	if err != nil {
		s.audit(who.record("login", nil, outcomeRefused, err.Error()))
		_ = conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	log := s.cfg.Log.WithValues("remote", who.remote, "fingerprint", who.fingerprint)
	log.V(1).Info("client connected", "grant", who.keyID)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		log.V(1).Info("client disconnected")
	}()
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		switch nch.ChannelType() {
		case ChanRun:
			go s.handleRun(ctx, who, gc, nch)
		case ChanTransfer:
			if gc != nil {
				s.audit(who.record(ChanTransfer, nil, outcomeRefused, "a grant connection may not ask for transfers"))
				_ = nch.Reject(ssh.Prohibited, "a grant connection may not ask for transfers")
				continue
			}
			go s.handleTransfer(ctx, who, log, nch)
		default:
			s.audit(who.record(nch.ChannelType(), nil, outcomeRefused, "unknown request type"))
			_ = nch.Reject(ssh.UnknownChannelType, "unknown request type")
		}
	}
}

// accept accepts nch and returns a context cancelled when the client
// closes the channel (or the connection ends).
func accept(ctx context.Context, nch ssh.NewChannel) (ssh.Channel, context.Context, context.CancelFunc, error) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		cancel()
	}()
	return ch, ctx, cancel, nil
}

func finish(ch ssh.Channel, st exitStatus) {
	_, _ = ch.SendRequest(reqExit, false, mustJSON(st))
	_ = ch.Close()
}

// checkRun decides a run request before anything starts: its argv by
// shape and effect (Policy.Check), then, reading ZFS, what it would
// touch (CheckEffect), the read bounded by RequestTimeout.
func (s *Server) checkRun(ctx context.Context, argv []string) error {
	if err := s.policy.Load().Check(argv); err != nil {
		return err
	}
	if s.cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	return CheckEffect(ctx, s.zfs, argv)
}

// handleRun serves a ChanRun request; gc is the connection's grant (nil
// for the controller's key), which then decides what may run.
func (s *Server) handleRun(ctx context.Context, who client, gc *grantConn, nch ssh.NewChannel) {
	req, err := decodeRunRequest(nch.ExtraData())
	if err != nil {
		s.audit(who.record(ChanRun, nil, outcomeRefused, err.Error()))
		_ = nch.Reject(ssh.Prohibited, err.Error())
		return
	}
	check := s.checkRun
	if gc != nil {
		check = func(ctx context.Context, argv []string) error { return s.checkGrantRun(ctx, gc, argv) }
	}
	if err := check(ctx, req.Argv); err != nil {
		s.audit(who.record(ChanRun, req.Argv, outcomeRefused, refusalReason(err)))
		_ = nch.Reject(ssh.Prohibited, refusalReason(err))
		return
	}
	ch, chCtx, cancel, err := accept(ctx, nch)
	if err != nil {
		return
	}
	defer cancel()
	stream := isStream(req.Argv)
	if stream {
		// A stream may run for hours: its start is on record too. Other
		// requests leave one record, when they finish.
		s.audit(who.record(ChanRun, req.Argv, outcomeAccepted, ""))
	}
	// Every request runs under a context whose cause says why it ended
	// early: the client went away, the deadline passed, the output
	// outgrew its bound, or the stream stalled.
	ctx, stop := context.WithCancelCause(chCtx)
	defer stop(nil)
	var stdout io.Writer = ch
	act := &activity{}
	if stream {
		stdout = activityWriter{w: ch, a: act}
		go watchStall(ctx, stop, s.cfg.StallTimeout, act.n.Load)
	} else {
		if s.cfg.RequestTimeout > 0 {
			t := time.AfterFunc(s.cfg.RequestTimeout, func() {
				stop(fmt.Errorf("%w (%s)", ErrRequestTimeout, s.cfg.RequestTimeout))
			})
			defer t.Stop()
		}
		if s.cfg.MaxOutput > 0 {
			stdout = &limitWriter{W: ch, max: s.cfg.MaxOutput, exceeded: func() {
				stop(fmt.Errorf("%w (%d bytes)", ErrOutputLimit, s.cfg.MaxOutput))
			}}
		}
	}
	var stdin io.Reader = ch
	if req.DataConn {
		// Stdin arrives on a TLS connection set up with a ticket sent on
		// this channel (dataconn.go).
		t, wait, err := s.data.ticket()
		if err == nil {
			_, err = ch.SendRequest(reqDataTicket, false, mustJSON(t))
		}
		var dc net.Conn
		var plain bool
		if err == nil {
			dc, plain, err = wait(ctx)
		}
		if err != nil {
			st := exitStatus{Kind: kindUnreachable, Message: "data connection: " + err.Error()}
			s.audit(who.finished(ChanRun, req.Argv, st, 0))
			finish(ch, st)
			return
		}
		defer dc.Close()
		stdin = dc
		if plain {
			s.cfg.Log.V(1).Info("plaintext data connection", "remote", who.remote, "argv", req.Argv)
		}
	}
	if stream {
		if tc, ok := stdin.(*net.TCPConn); ok {
			stdin = spliceReader{c: tc, a: act}
		} else {
			stdin = activityReader{r: stdin, a: act}
		}
	}
	start := time.Now()
	err = s.cfg.Runner.Run(ctx, zfsexec.Command{Argv: req.Argv, Stdin: stdin, Stdout: stdout})
	st := endStatus(ctx, err)
	s.audit(who.finished(ChanRun, req.Argv, st, time.Since(start)))
	finish(ch, st)
}

// endStatus is the exit status of a request that ended with err under ctx:
// a context cancelled with a cause (deadline, output bound, stall) reports
// the cause, a plainly cancelled one a cancellation.
func endStatus(ctx context.Context, err error) exitStatus {
	if err == nil {
		return exitStatus{}
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(cause, ErrOutputLimit) || errors.Is(cause, ErrRequestTimeout) || errors.Is(cause, ErrStalled) {
			return statusFromError(cause)
		}
		return exitStatus{Kind: kindCanceled, Message: err.Error()}
	}
	return statusFromError(err)
}

func (s *Server) handleTransfer(ctx context.Context, who client, log logr.Logger, nch ssh.NewChannel) {
	req, err := decodeTransferRequest(nch.ExtraData())
	if err != nil {
		s.audit(who.record(ChanTransfer, nil, outcomeRefused, err.Error()))
		_ = nch.Reject(ssh.Prohibited, err.Error())
		return
	}
	argv := transferArgv(req)
	// The grant first: a transfer it does not cover starts nothing, not
	// even a capability probe.
	cert, grant, err := s.checkTransferGrant(req)
	if cert != nil {
		who.keyID, who.serial = cert.KeyId, cert.Serial
	}
	if err == nil {
		err = s.checkTransfer(ctx, req)
	}
	if err != nil {
		s.audit(who.record(ChanTransfer, argv, outcomeRefused, refusalReason(err)))
		_ = nch.Reject(ssh.Prohibited, refusalReason(err))
		return
	}
	ch, chCtx, cancel, err := accept(ctx, nch)
	if err != nil {
		return
	}
	defer cancel()
	s.audit(who.record(ChanTransfer, argv, outcomeAccepted, ""))
	ctx, stop := context.WithCancelCause(chCtx)
	defer stop(nil)
	log = log.WithValues("snapshot", req.Send.Snapshot, "from", req.Send.From, "target", req.TargetAddr, "dataset", req.Recv.Target, "grant", cert.KeyId)
	start := time.Now()
	res, err := s.transfer(ctx, stop, cert, grant, req.RateLimit, ch)
	st := endStatus(ctx, err)
	st.Bytes, st.Elapsed = res.Bytes, time.Since(start).Milliseconds()
	log.V(1).Info("transfer finished", "bytes", res.Bytes, "duration", time.Since(start).String(), "error", errString(err))
	s.audit(who.finished(ChanTransfer, argv, st, time.Since(start)))
	finish(ch, st)
}

// checkTransferGrant refuses a transfer that carries no grant, or one not
// signed by an authorized key, not for this agent's host key, outside its
// validity window, or not matching the request field by field.
func (s *Server) checkTransferGrant(req TransferRequest) (*ssh.Certificate, Grant, error) {
	if req.Grant == "" {
		return nil, Grant{}, refuse("transfer without a grant")
	}
	cert, err := ParseGrant(req.Grant)
	if err != nil {
		return nil, Grant{}, refuse("%v", err)
	}
	keys, err := s.cfg.AuthorizedKeys()
	if err != nil {
		return cert, Grant{}, refuse("authorized keys unusable: %v", err)
	}
	g, err := verifyGrant(cert, keys, time.Now())
	if err != nil {
		return cert, Grant{}, refuse("%v", err)
	}
	if !keysEqual(cert.Key, s.cfg.HostKey.PublicKey()) {
		return cert, Grant{}, refuse("%v", grantErr("the grant is for another node's key (%s)", ssh.FingerprintSHA256(cert.Key)))
	}
	if err := g.matchesRequest(req); err != nil {
		return cert, Grant{}, refuse("%v", err)
	}
	return cert, g, nil
}

// refusalReason is what a refused client reads (the client wraps it in its
// own RefusedError).
func refusalReason(err error) string {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return err.Error()
}

// transferArgv describes a transfer in the audit log: the send and the
// receive it asks for, and where.
func transferArgv(req TransferRequest) []string {
	return []string{"transfer", "send=" + req.Send.Snapshot, "from=" + req.Send.From, "to=" + req.TargetAddr, "recv=" + req.Recv.Target}
}

// checkTransfer refuses a transfer whose send side this agent would not run.
func (s *Server) checkTransfer(ctx context.Context, req TransferRequest) error {
	if err := checkTransferRequest(*s.policy.Load(), req); err != nil {
		return err
	}
	caps, err := s.zfs.Capabilities(ctx)
	if err != nil {
		return err
	}
	argv, err := req.Send.Argv(caps)
	if err != nil {
		return refuse("%v", err)
	}
	return s.policy.Load().Check(argv)
}

// checkTransferRequest is the part of checkTransfer that needs no node:
// a target, valid send and receive options, a send the policy allows.
func checkTransferRequest(p Policy, req TransferRequest) error {
	if req.TargetAddr == "" || req.TargetHostKey == "" {
		return refuse("transfer needs a target address and its pinned host key")
	}
	argv, err := req.Send.Validate()
	if err != nil {
		return refuse("%v", err)
	}
	if _, err := req.Recv.Validate(); err != nil {
		return refuse("%v", err)
	}
	return p.Check(argv)
}

// transfer runs the granted transfer: it dials exactly the grant's target,
// verifying the granted host key, logs in with its host key certified by
// the grant, and pipes the send into the target's receive. The connection
// is the transfer's own and closed when it ends.
func (s *Server) transfer(ctx context.Context, stop context.CancelCauseFunc, cert *ssh.Certificate, g Grant, limit int64, ch ssh.Channel) (Result, error) {
	hostKey, err := g.targetHostKey()
	if err != nil {
		return Result{}, err
	}
	signer, err := ssh.NewCertSigner(cert, s.cfg.HostKey)
	if err != nil {
		return Result{}, fmt.Errorf("agent: grant signer: %w", err)
	}
	peer, err := dial(ctx, g.TargetAddr, ClientConfig{Signer: signer, HostKey: hostKey, Dial: s.cfg.Dial, DataPlaintext: s.cfg.DataPlaintext}, GrantPrincipal)
	if err != nil {
		return Result{}, err
	}
	defer peer.Close()
	start := time.Now()
	cw := &zfsexec.CountingWriter{Pace: pace(ctx, s.nodeRate, newRateLimiter(limit))}
	// A stall (no byte for StallTimeout) cancels both ends as a client's
	// cancellation does: the send is killed and the peer channel closed,
	// which kills the receive on the target.
	stallCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchStall(stallCtx, stop, s.cfg.StallTimeout, cw.N)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _ = ch.SendRequest(reqProgress, false, mustJSON(Progress{Bytes: cw.N(), ElapsedMillis: time.Since(start).Milliseconds()}))
			}
		}
	}()
	n, err := zfsexec.PipeCounted(ctx, s.zfs, g.Send, peer.ZFS(), g.Recv, cw)
	close(done)
	return Result{Bytes: n, ElapsedMillis: time.Since(start).Milliseconds()}, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
