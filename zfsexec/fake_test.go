package zfsexec

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
)

// failRunner fails the test if any command is run: operations given bad
// input must refuse before starting a process.
type failRunner struct{ t *testing.T }

func (f failRunner) Run(_ context.Context, c Command) error {
	f.t.Helper()
	f.t.Errorf("runner called with %q; want no process started", c.Argv)
	return nil
}

// scriptRunner answers commands from a table keyed by the joined argv and
// records every argv it ran.
type scriptRunner struct {
	mu      sync.Mutex
	replies map[string]reply
	ran     [][]string
}

type reply struct {
	stdout string
	err    error
}

func (s *scriptRunner) Run(_ context.Context, c Command) error {
	s.mu.Lock()
	s.ran = append(s.ran, c.Argv)
	r, ok := s.replies[strings.Join(c.Argv, " ")]
	s.mu.Unlock()
	if !ok {
		return &CommandError{Argv: c.Argv, ExitCode: 2, Stderr: "scriptRunner: unexpected command"}
	}
	if c.Stdin != nil {
		_, _ = io.Copy(io.Discard, c.Stdin)
	}
	if c.Stdout != nil && r.stdout != "" {
		_, _ = io.WriteString(c.Stdout, r.stdout)
	}
	return r.err
}

// zfsFuseReplies makes a scriptRunner look like a zfs-fuse node to
// capability detection.
func zfsFuseReplies() map[string]reply {
	return map[string]reply{
		"zfs version":      {err: &CommandError{Argv: []string{"zfs", "version"}, ExitCode: 2, Stderr: "unrecognized command 'version'\nusage: zfs command args ...\n"}},
		"zpool upgrade -v": {stdout: "This system is currently running ZFS pool version 23.\n"},
	}
}
