package kubenode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the test bed started: either a program in the host's
// namespaces, or one started in a node's namespaces through
// `nsenter --pid`, which forks: then cmd is nsenter and pid the program.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int           // the program's host PID
	done chan struct{} // closed once cmd has exited and was reaped
	log  string
}

// startProc runs argv with its output appended to logPath, in its own
// process group and with SIGKILL as its death signal.
func startProc(name, logPath string, argv []string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startInNode runs argv in the namespaces of the node whose init has host
// PID initPID. nsenter forks to enter the PID namespace; the program's
// host PID is read from nsenter's children.
func startInNode(name, logPath string, initPID int, argv []string) (*proc, error) {
	full := append([]string{"nsenter", "--target", strconv.Itoa(initPID), "--mount", "--pid", "--net", "--"}, argv...)
	p, err := startProc(name, logPath, full)
	if err != nil {
		return nil, err
	}
	children := filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "task", strconv.Itoa(p.cmd.Process.Pid), "children")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(children)
		if f := strings.Fields(string(b)); len(f) > 0 {
			p.pid, _ = strconv.Atoi(f[0])
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s: exited at once: %s (see %s)", name, p.cmd.ProcessState, logPath)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.stop(time.Second)
			return nil, fmt.Errorf("%s: nsenter started no child in 5s", name)
		}
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the program, and SIGKILL to it and its process
// group after timeout; it returns once cmd was reaped.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s: killed after %s without exiting on SIGTERM", p.name, timeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: still running after SIGKILL", p.name)
	}
}
