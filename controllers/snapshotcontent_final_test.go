package controllers

import (
	"errors"
	"fmt"
	"testing"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestCreateFailedFinally_Classes: only a request that certainly left no
// snapshot being created lets the snapshotter remove the being-created
// annotation; an unreachable agent, a lost connection or a timeout may
// have left one, so it stays.
func TestCreateFailedFinally_Classes(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		final bool
	}{
		{"zfs ran and failed", &zfsexec.CommandError{Argv: []string{"zfs", "snapshot"}, ExitCode: 1, Stderr: "cannot open 'tank/x': dataset does not exist"}, true},
		{"zfs failure wrapped", fmt.Errorf("wrapped: %w", &zfsexec.CommandError{ExitCode: 2}), true},
		{"agent refused", &agent.RefusedError{Reason: "outside the pools"}, true},
		{"invalid name", &zfsexec.NameError{Name: "x y", Reason: "bad"}, true},
		{"agent unreachable", fmt.Errorf("agent: %w", agent.ErrUnreachable), false},
		{"timeout", errors.New("context deadline exceeded"), false},
		{"agent-side failure", &agent.RemoteError{Kind: "internal", Message: "?"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := createFailedFinally(tt.err); got != tt.final {
				t.Errorf("createFailedFinally(%v) = %v, want %v", tt.err, got, tt.final)
			}
		})
	}
}
