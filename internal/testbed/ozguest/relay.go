package ozguest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// Relay lets other host processes (a z8r agent, through its --zfs-prefix)
// run commands in a guest: it serves SSH on a unix socket next to the
// guest's own, and runs each session's JSON argv through Guest.Runner, so
// every command shares the guest's one persistent connection. The client
// is the ozexec command (./ozexec); Prefix is the argv prefix that runs it.
//
// Both ends are pinned: the relay accepts only the client key it wrote,
// and ozexec only the relay's host key. When a client's connection goes
// (ozexec killed), its commands are killed in the guest, as a local
// process would be by a closed pipe.
type Relay struct {
	prefix []string
	l      net.Listener
	cfg    *ssh.ServerConfig
	g      *Guest
	wg     sync.WaitGroup
}

// StartRelay starts a relay for g; it stops when the test ends.
func StartRelay(t testing.TB, g *Guest) *Relay {
	t.Helper()
	bin := ozexecBinary(t)
	dir := g.sockDir
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	sshHostPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "relay_host_key.pub")
	if err := os.WriteFile(hostKeyFile, ssh.MarshalAuthorizedKey(sshHostPub), 0o600); err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	clientKeyFile := filepath.Join(dir, "relay_client_key")
	if err := os.WriteFile(clientKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(allowed.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("ozguest relay: unknown client key")
	}}
	cfg.AddHostKey(hostSigner)
	sock := filepath.Join(dir, "relay.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("ozguest: relay for %s: %v", g.name, err)
	}
	r := &Relay{l: l, cfg: cfg, g: g,
		prefix: []string{bin, "-socket", sock, "-key", clientKeyFile, "-host-key", hostKeyFile, "--"}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		l.Close()
		r.wg.Wait()
	})
	return r
}

// Prefix is the argv prefix that runs a command in the guest; joined with
// spaces it is a valid z8r-agent --zfs-prefix (no path has a space).
func (r *Relay) Prefix() []string { return append([]string(nil), r.prefix...) }

func (r *Relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		go r.serveConn(c)
	}
}

func (r *Relay) serveConn(c net.Conn) {
	sconn, chans, reqs, err := ssh.NewServerConn(c, r.cfg)
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	// Commands of a client that went away are killed in the guest.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_ = sconn.Wait()
		cancel()
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go r.serveSession(ctx, ch, creqs)
	}
	cancel()
}

func (r *Relay) serveSession(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var argv []string
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil || json.Unmarshal([]byte(p.Command), &argv) != nil || len(argv) == 0 {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		break
	}
	if len(argv) == 0 {
		return
	}
	go ssh.DiscardRequests(reqs)
	code := 0
	err := r.g.Runner().Run(ctx, zfsexec.Command{Argv: argv, Stdin: ch, Stdout: ch})
	var ce *zfsexec.CommandError
	switch {
	case errors.As(err, &ce):
		_, _ = io.WriteString(ch.Stderr(), ce.Stderr)
		code = ce.ExitCode
	case err != nil:
		fmt.Fprintf(ch.Stderr(), "ozguest relay: %v\n", err)
		code = 255
	}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}

var ozexecBuild struct {
	once sync.Once
	path string
	err  error
}

// ozexecBinary builds ./ozexec once per test binary.
func ozexecBinary(t testing.TB) string {
	t.Helper()
	b := &ozexecBuild
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		dir, err := os.MkdirTemp("", "z8r-ozexec")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "ozexec")
		cmd := exec.Command("go", "build", "-o", b.path, "./internal/testbed/ozguest/ozexec")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("ozguest: build ozexec: %w: %s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
