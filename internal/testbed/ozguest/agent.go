package ozguest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
)

// HostAgent is a real z8r-agent process on the host whose zfs commands run
// in a guest: its --zfs-prefix is the guest's Relay prefix. It listens on a
// free 127.0.0.1 port, with the test deployment's keys (agentproc.Keys).
type HostAgent struct {
	Name    string
	Addr    string
	HostKey ssh.PublicKey
	LogPath string

	argv []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartAgent starts an agent for g that may touch pools; it is stopped when
// the test ends. It does not publish a Z8RNode.
func StartAgent(t testing.TB, g *Guest, r *Relay, keys *agentproc.Keys, pools ...string) *HostAgent {
	t.Helper()
	return StartAgentWith(t, g, r, keys, AgentOptions{Pools: pools})
}

// AgentOptions are StartAgentWith's.
type AgentOptions struct {
	// Pools the agent may touch.
	Pools []string
	// Kubeconfig, if set, makes the agent publish its Z8RNode (named
	// after the guest, every 5 s) through that API server, with its
	// listen address as the address the controller dials; the Node
	// object must exist.
	Kubeconfig string
}

// StartAgentWith is StartAgent with options.
func StartAgentWith(t testing.TB, g *Guest, r *Relay, keys *agentproc.Keys, opts AgentOptions) *HostAgent {
	t.Helper()
	pools := opts.Pools
	bin := agentproc.Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(t.TempDir(), "agent-"+g.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	hostKeyPath := filepath.Join(dir, "host_key")
	out, err := exec.Command(bin, "--host-key", hostKeyPath, "--print-host-key").Output()
	if err != nil {
		t.Fatalf("ozguest: agent host key: %v", err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(out)
	if err != nil {
		t.Fatal(err)
	}
	a := &HostAgent{Name: g.name, Addr: addr, HostKey: hk, LogPath: filepath.Join(dir, "agent.log"),
		argv: []string{bin,
			"--node-name", g.name,
			"--listen", addr,
			"--pools", strings.Join(pools, ","),
			"--host-key", hostKeyPath,
			"--authorized-keys", keys.AuthorizedKeysPath(),
			"--zfs-prefix", strings.Join(r.Prefix(), " "),
			"--progress-interval", "200ms",
			"--zap-log-level", "debug",
		}}
	if opts.Kubeconfig == "" {
		a.argv = append(a.argv, "--publish=false")
	} else {
		a.argv = append(a.argv, "--kubeconfig", opts.Kubeconfig, "--advertise-address", addr, "--publish-interval", "5s")
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.LogPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("ozguest: last lines of the agent for %s:\n%s", g.name, strings.Join(lines, "\n"))
			}
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// Start (re)starts a stopped agent with the same host key and flags and
// waits until it accepts connections.
func (a *HostAgent) Start() error {
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
		return fmt.Errorf("ozguest: start agent: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		select {
		case <-done:
			a.cmd = nil
			log, _ := os.ReadFile(a.LogPath)
			return fmt.Errorf("ozguest: agent exited at start: %s", log)
		default:
		}
		if c, err := net.DialTimeout("tcp", a.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("ozguest: agent not listening on %s after 15s", a.Addr)
}

// Stop stops the agent (SIGTERM, SIGKILL after 5s) and waits for it.
func (a *HostAgent) Stop() { a.signal(syscall.SIGTERM, 5*time.Second) }

// Kill kills the agent at once (SIGKILL), as a crash would. The ozexec
// processes it started run in their own process groups, as a local zfs
// would: they die on the broken pipe to the dead agent.
func (a *HostAgent) Kill() { a.signal(syscall.SIGKILL, 0) }

func (a *HostAgent) signal(sig syscall.Signal, grace time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, sig)
	select {
	case <-a.done:
	case <-time.After(grace):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	}
	a.cmd = nil
}

// PublicHostKey returns the host key in authorized_keys format.
func (a *HostAgent) PublicHostKey() string { return agent.MarshalPublicKey(a.HostKey) }
