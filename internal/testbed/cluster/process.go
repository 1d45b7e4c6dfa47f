package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/testbed/gobin"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

// EnvControllerBinary, when set, names a prebuilt controller binary that
// ControllerBinary returns instead of building one (to run a suite against
// another version of the controller).
const EnvControllerBinary = "Z8R_CONTROLLER_BIN"

// ControllerBinary builds cmd/z8r-controller once per test process and
// returns its path.
func ControllerBinary(t tb.TB) string {
	t.Helper()
	if p := os.Getenv(EnvControllerBinary); p != "" {
		return p
	}
	return gobin.Build(t, "z8r-controller")
}

// ProcessOptions describe one run of the controller as a process.
type ProcessOptions struct {
	// ClockOffset moves the controller's clock ahead of the wall clock
	// (--clock-offset): a test brings a schedule round by starting the
	// next run with a larger offset.
	ClockOffset time.Duration
	// Failpoints arms internal/failpoint points (the Z8R_FAILPOINTS
	// value, e.g. "replicate.after-recv=2"); empty arms none.
	Failpoints string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// ControllerProcess is cmd/z8r-controller running as its own process in
// the test network's hub namespace, so that a test can SIGKILL it at any
// point (or let a failpoint do it) and start another one.
type ControllerProcess struct {
	// LogPath receives the process's stdout and stderr.
	LogPath string

	opts ProcessOptions
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	state *os.ProcessState
}

// StartControllerProcess starts z8r's controller binary against the test
// bed's API server, reaching the agents from the hub network namespace with
// the test deployment's controller key. Leader election, metrics and probes
// are off. The process is killed in t.Cleanup and dies with the test
// process. Only one controller (process or in-process) should run at a
// time.
func (c *Cluster) StartControllerProcess(opts ProcessOptions) (*ControllerProcess, error) {
	c.t.Helper()
	bin := ControllerBinary(c.t)
	c.procRuns++
	logPath := filepath.Join(c.procDir(), fmt.Sprintf("controller-%03d.log", c.procRuns))
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: controller log: %w", err)
	}
	argv := []string{"nsenter", "--net=" + filepath.Join("/run/netns", c.Net.Hub), "--", bin,
		"--kubeconfig", c.AgentKubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", "0",
		"--ssh-key", filepath.Join(c.Keys.Dir, "controller"),
		"--zap-log-level", "debug",
	}
	if opts.ClockOffset != 0 {
		argv = append(argv, "--clock-offset", opts.ClockOffset.String())
	}
	argv = append(argv, opts.ExtraArgs...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), failpoint.EnvVar+"="+opts.Failpoints)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("cluster: start controller: %w", err)
	}
	p := &ControllerProcess{LogPath: logPath, opts: opts, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	c.t.Cleanup(p.Kill)
	return p, nil
}

func (c *Cluster) procDir() string {
	if c.procLogDir == "" {
		c.procLogDir = c.t.TempDir()
	}
	return c.procLogDir
}

// PID is the controller's process id.
func (p *ControllerProcess) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *ControllerProcess) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *ControllerProcess) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill kills the controller at once (SIGKILL), as a crash would, and waits
// for it.
func (p *ControllerProcess) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the controller to stop (SIGTERM: the manager cancels its
// reconciles and returns) and waits up to timeout before killing it. It
// reports whether the process stopped by itself.
func (p *ControllerProcess) Stop(timeout time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}

// Signaled returns the signal that ended the process, or 0 if it exited
// on its own (or still runs).
func (p *ControllerProcess) Signaled() syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return 0
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// ExitCode is the process's exit code (-1 when it was signalled or still
// runs).
func (p *ControllerProcess) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// FiredFailpoint returns the failpoint that killed the process (from the
// line internal/failpoint writes before the SIGKILL), or "".
func (p *ControllerProcess) FiredFailpoint() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	const marker = "z8r failpoint: "
	i := strings.LastIndex(string(b), marker)
	if i < 0 {
		return ""
	}
	rest := string(b[i+len(marker):])
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(rest)
}

// LogTail returns the last n lines of the process's log.
func (p *ControllerProcess) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
