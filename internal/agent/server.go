package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// ServerConfig configures an agent's SSH endpoint.
type ServerConfig struct {
	// HostKey identifies the agent; clients pin it.
	HostKey ssh.Signer
	// AuthorizedKeys returns the client keys allowed in. It is called on
	// every login, so a rotated Secret takes effect without a restart.
	AuthorizedKeys func() ([]ssh.PublicKey, error)
	// Policy decides which ZFS commands run.
	Policy Policy
	// Runner runs the allowed commands on this node.
	Runner zfsexec.Runner
	// ClientKey is the identity this agent presents when it dials another
	// agent for a transfer.
	ClientKey ssh.Signer
	// Dial, if set, opens connections to other agents (tests use it to
	// dial inside a network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ProgressInterval is how often transfers report progress (default 1s).
	ProgressInterval time.Duration
	Log              logr.Logger
}

// Server is a node agent's SSH endpoint. It accepts only the typed requests
// of this package's protocol: no shell, no arbitrary exec.
type Server struct {
	cfg   ServerConfig
	zfs   *zfsexec.ZFS
	peers *Peers
	data  *dataServer

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
	if len(cfg.Policy.Pools) == 0 {
		return nil, errors.New("agent: server needs at least one allowed pool")
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = time.Second
	}
	data, err := newDataServer()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, zfs: zfsexec.New(cfg.Runner), data: data, conns: map[*ssh.ServerConn]struct{}{}}
	if cfg.ClientKey != nil {
		s.peers = NewPeers(cfg.ClientKey, cfg.Dial)
	}
	return s, nil
}

func (s *Server) sshConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			keys, err := s.cfg.AuthorizedKeys()
			if err != nil {
				return nil, fmt.Errorf("agent: load authorized keys: %w", err)
			}
			for _, k := range keys {
				if keysEqual(k, key) {
					return &ssh.Permissions{Extensions: map[string]string{"fingerprint": ssh.FingerprintSHA256(key)}}, nil
				}
			}
			s.cfg.Log.Info("refused unknown client key", "remote", meta.RemoteAddr().String(), "fingerprint", ssh.FingerprintSHA256(key))
			return nil, errors.New("agent: unknown client key")
		},
		ServerVersion: "SSH-2.0-z8r-agent",
	}
	c.AddHostKey(s.cfg.HostKey)
	return c
}

// Serve accepts connections on l until Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.listener = l
	s.mu.Unlock()
	cfg := s.sshConfig()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("agent: accept: %w", err)
		}
		go func() {
			c, tlsConn, err := isTLS(nc)
			switch {
			case err != nil:
				_ = nc.Close()
			case tlsConn:
				s.data.serve(c)
			default:
				s.handleConn(c, cfg)
			}
		}()
	}
}

// Close stops accepting, closes every connection (which cancels their
// requests and kills their processes) and closes peer connections.
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
	if s.peers != nil {
		s.peers.Close()
	}
	return nil
}

func (s *Server) handleConn(nc net.Conn, cfg *ssh.ServerConfig) {
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	log := s.cfg.Log.WithValues("remote", conn.RemoteAddr().String(), "client", conn.Permissions.Extensions["fingerprint"])
	log.V(1).Info("client connected")
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
			go s.handleRun(ctx, log, nch)
		case ChanTransfer:
			go s.handleTransfer(ctx, log, nch)
		default:
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

func (s *Server) handleRun(ctx context.Context, log logr.Logger, nch ssh.NewChannel) {
	var req runRequest
	if err := json.Unmarshal(nch.ExtraData(), &req); err != nil {
		_ = nch.Reject(ssh.Prohibited, "malformed request")
		return
	}
	if err := s.cfg.Policy.Check(req.Argv); err != nil {
		log.Info("refused request", "argv", req.Argv, "reason", err.Error())
		_ = nch.Reject(ssh.Prohibited, err.Error())
		return
	}
	ch, ctx, cancel, err := accept(ctx, nch)
	if err != nil {
		return
	}
	defer cancel()
	var stdin io.Reader = ch
	if req.DataConn {
		// Stdin arrives on a TLS connection set up with a ticket sent on
		// this channel (dataconn.go).
		t, wait, err := s.data.ticket()
		if err == nil {
			_, err = ch.SendRequest(reqDataTicket, false, mustJSON(t))
		}
		var dc net.Conn
		if err == nil {
			dc, err = wait(ctx)
		}
		if err != nil {
			finish(ch, exitStatus{Kind: kindUnreachable, Message: "data connection: " + err.Error()})
			return
		}
		defer dc.Close()
		stdin = dc
	}
	start := time.Now()
	err = s.cfg.Runner.Run(ctx, zfsexec.Command{Argv: req.Argv, Stdin: stdin, Stdout: ch})
	log.V(1).Info("ran command", "argv", req.Argv, "duration", time.Since(start).String(), "error", errString(err))
	st := statusFromError(err)
	if err != nil && ctx.Err() != nil {
		st = exitStatus{Kind: kindCanceled, Message: err.Error()}
	}
	finish(ch, st)
}

func (s *Server) handleTransfer(ctx context.Context, log logr.Logger, nch ssh.NewChannel) {
	var req TransferRequest
	if err := json.Unmarshal(nch.ExtraData(), &req); err != nil {
		_ = nch.Reject(ssh.Prohibited, "malformed request")
		return
	}
	if s.peers == nil {
		_ = nch.Reject(ssh.Prohibited, "this agent has no client key for transfers")
		return
	}
	if err := s.checkTransfer(ctx, req); err != nil {
		log.Info("refused transfer", "snapshot", req.Send.Snapshot, "target", req.TargetAddr, "reason", err.Error())
		_ = nch.Reject(ssh.Prohibited, err.Error())
		return
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.TargetHostKey))
	if err != nil {
		_ = nch.Reject(ssh.Prohibited, "target host key: "+err.Error())
		return
	}
	ch, ctx, cancel, err := accept(ctx, nch)
	if err != nil {
		return
	}
	defer cancel()
	log = log.WithValues("snapshot", req.Send.Snapshot, "from", req.Send.From, "target", req.TargetAddr, "dataset", req.Recv.Target)
	start := time.Now()
	res, err := s.transfer(ctx, req, hostKey, ch)
	st := statusFromError(err)
	if err != nil && ctx.Err() != nil {
		st = exitStatus{Kind: kindCanceled, Message: err.Error()}
	}
	st.Bytes, st.Elapsed = res.Bytes, time.Since(start).Milliseconds()
	log.Info("transfer finished", "bytes", res.Bytes, "duration", time.Since(start).String(), "error", errString(err))
	finish(ch, st)
}

// checkTransfer refuses a transfer whose send side this agent would not run.
func (s *Server) checkTransfer(ctx context.Context, req TransferRequest) error {
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
	if err := s.cfg.Policy.Check(argv); err != nil {
		return err
	}
	caps, err := s.zfs.Capabilities(ctx)
	if err != nil {
		return err
	}
	if argv, err = req.Send.Argv(caps); err != nil {
		return refuse("%v", err)
	}
	return s.cfg.Policy.Check(argv)
}

func (s *Server) transfer(ctx context.Context, req TransferRequest, hostKey ssh.PublicKey, ch ssh.Channel) (Result, error) {
	peer, err := s.peers.Get(ctx, req.TargetAddr, hostKey)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	cw := &zfsexec.CountingWriter{}
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
	n, err := zfsexec.PipeCounted(ctx, s.zfs, req.Send, peer.ZFS(), req.Recv, cw)
	close(done)
	if err != nil && isConnErr(err) {
		// The peer connection broke; drop it so the next transfer redials.
		s.peers.Drop(req.TargetAddr, hostKey, peer)
	}
	return Result{Bytes: n, ElapsedMillis: time.Since(start).Milliseconds()}, err
}

func isConnErr(err error) bool {
	var re *RemoteError
	return errors.Is(err, io.EOF) || errors.Is(err, ErrUnreachable) || (errors.As(err, &re) && re.Kind == kindInternal)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
