package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// reportRunner answers every command with err, as a node whose own
// command failed would.
type reportRunner struct{ err error }

func (r reportRunner) Run(context.Context, zfsexec.Command) error { return r.err }

// silentAgent is an SSH server that accepts every channel and closes it
// without an exit status, as an agent that dies mid-request.
func silentAgent(t *testing.T, client ssh.Signer) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	host := newSigner(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.PublicKey().Marshal()) {
			return nil, errors.New("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(host)
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					if ch, creqs, err := nch.Accept(); err == nil {
						go ssh.DiscardRequests(creqs)
						_ = ch.Close()
					}
				}
			}()
		}
	}()
	return l.Addr().String(), host.PublicKey()
}

// TestUnreachableError_NamesTheFailedConnection: a request whose own
// channel fails (cannot be opened on a closed connection, or ends without
// a status) returns an *UnreachableError naming the agent's address and
// matching ErrUnreachable; an unreachable error the agent reports over a
// working channel matches ErrUnreachable but is no *UnreachableError.
func TestUnreachableError_NamesTheFailedConnection(t *testing.T) {
	key := newSigner(t)
	tests := []struct {
		name    string
		start   func(t *testing.T) (string, ssh.PublicKey)
		closeC  bool // close the client before the request
		wantOwn bool // an *UnreachableError naming the address
		wantOp  string
	}{
		{name: "the channel cannot be opened", closeC: true, wantOwn: true, wantOp: "open " + ChanRun,
			start: func(t *testing.T) (string, ssh.PublicKey) { return startServer(t, failRunner{t}, key) }},
		{name: "the channel ends without a status", wantOwn: true, wantOp: ChanRun + " ended without a status",
			start: func(t *testing.T) (string, ssh.PublicKey) { return silentAgent(t, key) }},
		{name: "the agent reports something unreachable", wantOwn: false,
			start: func(t *testing.T) (string, ssh.PublicKey) {
				return startServer(t, reportRunner{fmt.Errorf("peer: %w", ErrUnreachable)}, key)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, hk := tt.start(t)
			ctx := context.Background()
			c, err := Dial(ctx, addr, ClientConfig{Signer: key, HostKey: hk, KeepAlive: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.closeC {
				_ = c.Close()
				<-c.Done()
			}
			_, err = c.ZFS().Get(ctx, "tank/a", "guid")
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("got %v, want an error matching ErrUnreachable", err)
			}
			var ue *UnreachableError
			own := errors.As(err, &ue)
			if own != tt.wantOwn {
				t.Fatalf("got %v (%T): *UnreachableError %v, want %v", err, err, own, tt.wantOwn)
			}
			if own && (ue.Addr != addr || ue.Op != tt.wantOp) {
				t.Errorf("UnreachableError{Addr: %q, Op: %q}, want {%q, %q}", ue.Addr, ue.Op, addr, tt.wantOp)
			}
			if !own && !errors.As(err, new(*RemoteError)) {
				t.Errorf("got %v (%T), want the agent's *RemoteError", err, err)
			}
		})
	}
}
