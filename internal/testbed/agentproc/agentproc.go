package agentproc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"github.com/z8r-project/z8r/internal/testbed/gobin"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

// Binary builds cmd/z8r-agent once per test process and returns its path.
func Binary(t tb.TB) string {
	t.Helper()
	return gobin.Build(t, "z8r-agent")
}

// Keys are the identities of a test deployment: the controller's key, the
// only one authorized on every agent (its holder runs commands and signs
// transfer grants). Each agent's own identity is its host key.
type Keys struct {
	Dir        string
	Controller ssh.Signer
}

// NewKeys generates keys into a temporary folder.
func NewKeys(t tb.TB) *Keys {
	t.Helper()
	dir := t.TempDir()
	k := &Keys{Dir: dir}
	k.Controller = writeKey(t, filepath.Join(dir, "controller"))
	auth := agent.MarshalPublicKey(k.Controller.PublicKey()) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "authorized-keys"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKey(t tb.TB, path string) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// AuthorizedKeysPath is the authorized-keys file every agent reads.
func (k *Keys) AuthorizedKeysPath() string { return filepath.Join(k.Dir, "authorized-keys") }

// Options for one agent.
type Options struct {
	// Addr to listen on, e.g. "10.213.0.10:2022" inside the node's netns.
	Addr string
	// Pools the agent may touch; default: the node's pools.
	Pools []string
	// Kubeconfig, when set, makes the agent publish its Z8RNode through
	// that API server; otherwise publishing is off.
	Kubeconfig string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Agent is one running (or stopped) agent process.
type Agent struct {
	Node    *zfsnodes.Node
	Addr    string
	HostKey ssh.PublicKey
	LogPath string

	t    tb.TB
	argv []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts an agent on node.
func Start(t tb.TB, node *zfsnodes.Node, keys *Keys, opts Options) *Agent {
	t.Helper()
	bin := Binary(t)
	pools := opts.Pools
	if len(pools) == 0 {
		pools = node.Pools
	}
	stateDir := filepath.Join(t.TempDir(), "agent-"+node.Name)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	hostKeyPath := filepath.Join(stateDir, "host_key")
	args := []string{bin,
		"--node-name", node.Name,
		"--listen", opts.Addr,
		"--pools", strings.Join(pools, ","),
		"--host-key", hostKeyPath,
		"--authorized-keys", keys.AuthorizedKeysPath(),
		"--zap-log-level", "debug",
	}
	if opts.Kubeconfig != "" {
		args = append(args, "--kubeconfig", opts.Kubeconfig, "--advertise-address", opts.Addr, "--publish-interval", "2s")
	} else {
		args = append(args, "--publish=false")
	}
	args = append(args, opts.ExtraArgs...)
	out, err := exec.Command(bin, "--host-key", hostKeyPath, "--print-host-key").Output()
	if err != nil {
		t.Fatalf("agentproc: print host key: %v", err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(out)
	if err != nil {
		t.Fatalf("agentproc: parse host key: %v", err)
	}
	a := &Agent{Node: node, Addr: opts.Addr, HostKey: hk, LogPath: filepath.Join(stateDir, "agent.log"),
		t: t, argv: append(node.Prefix(), args...)}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.LogPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("agentproc: last lines of the agent on %s:\n%s", node.Name, strings.Join(lines, "\n"))
			}
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// Start (re)starts a stopped agent with the same host key and flags, and
// waits until it accepts TCP connections.
func (a *Agent) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(a.argv[0], a.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("agentproc: start: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	// The agent listens inside the node's network namespace: probe it by
	// dialing from there.
	ns := ""
	if a.Node.NetNS != "" {
		ns = "/run/netns/" + a.Node.NetNS
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(a.LogPath)
			a.cmd = nil
			return fmt.Errorf("agentproc: agent exited at start: %s", log)
		default:
		}
		if probe(ns, a.Addr) {
			return nil
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("agentproc: agent not listening on %s after 15s", a.Addr)
}

func probe(nsPath, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var c net.Conn
	var err error
	if nsPath == "" {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = dialIn(ctx, nsPath, addr)
	}
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Stop stops the agent (SIGTERM, then SIGKILL after 5s) and waits for it.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	}
	a.cmd = nil
}

// Kill kills the agent at once (SIGKILL), as a crash would.
func (a *Agent) Kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
	a.cmd = nil
}

// PublicHostKey returns the host key in authorized_keys format.
func (a *Agent) PublicHostKey() string { return agent.MarshalPublicKey(a.HostKey) }

// Args returns the agent's command line (after the namespace prefix).
func (a *Agent) Args() []string { return a.argv }

// RotateHostKey stops the agent, replaces its host key with a new one (as
// a reinstalled node would have), starts it again and returns the new key.
func (a *Agent) RotateHostKey(t tb.TB) ssh.PublicKey {
	t.Helper()
	a.Stop()
	var path string
	for i, arg := range a.argv {
		if arg == "--host-key" {
			path = a.argv[i+1]
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s, err := agent.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	a.HostKey = s.PublicKey()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a.HostKey
}

// PID is the running agent's process id (0 when stopped).
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}
