package zfsexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
)

// Command is one process to run: an argv (never a shell string) and optional
// streams. Argv[0] is the program ("zfs" or "zpool"); a Runner may prefix it.
type Command struct {
	// Argv is the program and its arguments.
	Argv []string
	// Stdin, when non-nil, is copied to the process's standard input.
	Stdin io.Reader
	// Stdout, when non-nil, receives the process's standard output as it is
	// produced. When nil, the output is discarded.
	Stdout io.Writer
}

// Runner executes a Command somewhere: on this host, in a test node's
// namespaces, inside a guest VM, or on a remote agent.
//
// Contract:
//   - Run blocks until the process has exited and its streams are drained.
//   - A process that exits non-zero yields a *CommandError carrying the argv,
//     the exit code and (a bounded prefix of) stderr.
//   - A process that cannot be started yields an error wrapping the cause.
//   - Cancelling ctx kills the process; Run then returns an error that wraps
//     ctx.Err() when the exit was caused by cancellation.
//   - Implementations never pass argv through a shell.
type Runner interface {
	Run(ctx context.Context, cmd Command) error
}

// copyBuffer is the chunk size for stream copies: large chunks mean fewer
// system calls and full TLS records on the data path.
const copyBuffer = 256 << 10

// maxStderr bounds the stderr kept for a CommandError.
const maxStderr = 64 << 10

// CommandError is returned when a command ran and exited unsuccessfully.
type CommandError struct {
	Argv     []string
	ExitCode int
	Stderr   string
}

func (e *CommandError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	msg = strings.ReplaceAll(msg, "\n", " ")
	if msg == "" {
		msg = "no stderr"
	}
	return fmt.Sprintf("%s: exit %d: %s", strings.Join(e.Argv, " "), e.ExitCode, msg)
}

// LocalRunner runs commands on this host with os/exec. Prefix, when set, is
// put before every argv; tests use it to enter a simulated node's namespaces
// (for example {"nsenter", "-t", "1234", "-m", "-n", "--"}).
type LocalRunner struct {
	Prefix []string
}

// Run implements Runner.
//
// Streams are copied by Run itself rather than by os/exec: Run returns as
// soon as the process has exited and its stdout is drained, even when
// Stdin is a reader that has not reached EOF (a receiver that fails early
// must not wait for its sender), and a Stdout writer that fails kills the
// process instead of leaving it blocked on a full pipe.
func (r LocalRunner) Run(ctx context.Context, c Command) error {
	if len(c.Argv) == 0 {
		return errors.New("zfsexec: empty argv")
	}
	argv := append(append([]string{}, r.Prefix...), c.Argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stderr := &boundedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	// Own process group, so cancellation reaches everything a prefix such
	// as nsenter starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdin io.WriteCloser
	var stdout io.ReadCloser
	var err error
	if c.Stdin != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return fmt.Errorf("zfsexec: stdin pipe: %w", err)
		}
	}
	if c.Stdout != nil {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return fmt.Errorf("zfsexec: stdout pipe: %w", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("zfsexec: start %s: %w", argv[0], err)
	}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if stdin != nil {
		go func() {
			_, _ = io.CopyBuffer(stdin, c.Stdin, make([]byte, copyBuffer))
			_ = stdin.Close()
		}()
	}
	var copyErr error
	if stdout != nil {
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyBuffer(c.Stdout, stdout, make([]byte, copyBuffer))
			done <- err
		}()
		select {
		case copyErr = <-done:
			if copyErr != nil {
				kill()
			}
		case <-ctx.Done():
			kill()
			copyErr = <-done
		}
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waitDone:
	case <-ctx.Done():
		kill()
		waitErr = <-waitDone
	}
	if ctx.Err() != nil && waitErr != nil {
		return fmt.Errorf("zfsexec: %s: %w", strings.Join(c.Argv, " "), ctx.Err())
	}
	if copyErr != nil {
		// The process was killed because its output had nowhere to go.
		return fmt.Errorf("zfsexec: %s: copy stdout: %w", strings.Join(c.Argv, " "), copyErr)
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		return &CommandError{Argv: c.Argv, ExitCode: exitErr.ExitCode(), Stderr: stderr.String()}
	}
	if waitErr != nil {
		return fmt.Errorf("zfsexec: wait %s: %w", argv[0], waitErr)
	}
	return nil
}

// boundedBuffer keeps the first max bytes written to it and drops the rest.
type boundedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string { return b.buf.String() }
