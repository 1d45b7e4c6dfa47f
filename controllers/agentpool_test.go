package controllers

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/z8r-project/z8r/internal/agent"
)

// TestOwnChannelFailed_OnlyTheFailedConnection: which of the controller's
// connections a sync error condemns: only the one an
// *agent.UnreachableError names. A target the source agent could not
// reach (reported by the source over its working channel) condemns
// neither the source's connection nor the target's.
func TestOwnChannelFailed_OnlyTheFailedConnection(t *testing.T) {
	const src, tgt = "10.0.0.1:2022", "10.0.0.2:2022"
	ownOpen := fmt.Errorf("replicate: list target: %w", &agent.UnreachableError{Addr: tgt, Op: "open z8r.dev/run/v1", Err: io.EOF})
	ownNoStatus := fmt.Errorf("replicate: send tank/a@s1: %w", &agent.UnreachableError{Addr: src, Op: "z8r.dev/transfer/v1 ended without a status"})
	remote := fmt.Errorf("replicate: send tank/a@s1 to tank/a: %w", &agent.RemoteError{Kind: "unreachable", Message: "agent: dial data connection: node agent unreachable: connection refused"})
	// Text alone is not enough: an error that reads like the target's
	// channel failing but is not the client's typed error.
	lookalike := fmt.Errorf("replicate: %w: agent %s: open z8r.dev/run/v1: node agent unreachable", agent.ErrUnreachable, tgt)
	tests := []struct {
		name     string
		err      error
		src, tgt bool
	}{
		{"no error", nil, false, false},
		{"an ordinary failure", errors.New("zfs: exit 1"), false, false},
		{"target's own channel failed", ownOpen, false, true},
		{"source's own channel failed", ownNoStatus, true, false},
		{"source reports the target unreachable", remote, false, false},
		{"text naming the target, untyped", lookalike, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(remote, agent.ErrUnreachable) {
				t.Fatal("fixture: a remote unreachable error must match agent.ErrUnreachable (what the old code dropped on)")
			}
			if got := ownChannelFailed(tt.err, src); got != tt.src {
				t.Errorf("source connection failed = %v, want %v", got, tt.src)
			}
			if got := ownChannelFailed(tt.err, tgt); got != tt.tgt {
				t.Errorf("target connection failed = %v, want %v", got, tt.tgt)
			}
		})
	}
}
