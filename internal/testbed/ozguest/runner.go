package ozguest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// maxStderr bounds the stderr kept for a CommandError, as zfsexec's own
// runners do.
const maxStderr = 64 << 10

// Runner returns a zfsexec.Runner that runs commands in the guest.
func (g *Guest) Runner() zfsexec.Runner { return runner{g: g} }

type runner struct{ g *Guest }

// Run implements zfsexec.Runner.
func (r runner) Run(ctx context.Context, c zfsexec.Command) error {
	if len(c.Argv) == 0 {
		return errors.New("ozguest: empty argv")
	}
	what := r.g.name + ": " + strings.Join(c.Argv, " ")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ozguest: %s: %w", what, err)
	}
	argv, err := json.Marshal(c.Argv)
	if err != nil {
		return fmt.Errorf("ozguest: %s: %w", what, err)
	}
	s, err := r.g.client.NewSession()
	if err != nil {
		return fmt.Errorf("ozguest: %s: new session: %w", what, err)
	}
	defer s.Close()
	stderr := &boundedBuffer{max: maxStderr}
	out := &stdoutWriter{w: c.Stdout, s: s}
	if out.w == nil {
		out.w = io.Discard
	}
	s.Stdin = c.Stdin
	s.Stdout = out
	s.Stderr = stderr
	if err := s.Start(string(argv)); err != nil {
		return fmt.Errorf("ozguest: %s: start: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The guest kills the process group and reports its exit; a wedged
		// guest gets the session closed under it.
		s.Signal(ssh.SIGKILL)
		select {
		case <-done:
		case <-time.After(killGrace):
			s.Close()
			select {
			case <-done:
			case <-time.After(killGrace):
			}
		}
		return fmt.Errorf("ozguest: %s: %w", what, ctx.Err())
	}
	var exitErr *ssh.ExitError
	switch {
	case errors.As(err, &exitErr):
		return &zfsexec.CommandError{Argv: c.Argv, ExitCode: exitErr.ExitStatus(), Stderr: stderr.String()}
	case err != nil && !errors.Is(err, io.EOF):
		// Lost connection (ssh.ExitMissingError) or reading Command.Stdin failed.
		return fmt.Errorf("ozguest: %s: %w", what, err)
	case out.err != nil:
		return fmt.Errorf("ozguest: %s: write stdout: %w", what, out.err)
	}
	// io.EOF: the process exited successfully without reading all of stdin.
	return nil
}

// stdoutWriter passes the process's output on. After the first write error it
// asks the guest to break the process's stdout pipe and keeps draining the
// channel, so the process sees EPIPE instead of blocking on a full window.
type stdoutWriter struct {
	w   io.Writer
	s   *ssh.Session
	err error
}

func (o *stdoutWriter) Write(p []byte) (int, error) {
	if o.err == nil {
		if _, err := o.w.Write(p); err != nil {
			o.err = err
			o.s.Signal(ssh.SIGPIPE)
		}
	}
	return len(p), nil
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
