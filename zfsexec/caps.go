package zfsexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// Implementation names the ZFS a node runs.
type Implementation string

// Known implementations.
const (
	ImplZFSFuse Implementation = "zfs-fuse"
	ImplOpenZFS Implementation = "openzfs"
)

// Capabilities is what a node's ZFS can do. The planner reads it to choose
// bookmarks over holds, resumable receives, raw sends.
type Capabilities struct {
	Implementation Implementation
	// Version is "2.3.2" for OpenZFS, "pool-v23" for zfs-fuse.
	Version string
	// Bookmarks: `zfs bookmark` and incremental sends from a bookmark.
	Bookmarks bool
	// ResumableRecv: `recv -s`, receive_resume_token, `send -t`, `recv -A`.
	ResumableRecv bool
	// RawSend: `send -w` of encrypted datasets.
	RawSend bool
	// CompressedSend: `send -c` and `send -L`.
	CompressedSend bool
	// HoldsList: a working `zfs holds -H` (zfs-fuse's is broken).
	HoldsList bool
	// ParsableList: `zfs list -p`.
	ParsableList bool
	// RecvProps: `recv -o`/`-x`.
	RecvProps bool
	// DryRunSend: `send -n -P`, a send's stream size without sending.
	DryRunSend bool
}

// Names lists the optional features present, for status output.
func (c Capabilities) Names() []string {
	var out []string
	for _, f := range []struct {
		on   bool
		name string
	}{
		{c.Bookmarks, "bookmarks"},
		{c.ResumableRecv, "resume"},
		{c.RawSend, "raw-send"},
		{c.CompressedSend, "compressed-send"},
		{c.DryRunSend, "send-estimate"},
		{c.HoldsList, "holds-list"},
		{c.RecvProps, "recv-props"},
	} {
		if f.on {
			out = append(out, f.name)
		}
	}
	return out
}

// unsupported is the error for asking this node for a feature it lacks.
func (c Capabilities) unsupported(feature string) error {
	return &UnsupportedError{Feature: feature, Implementation: string(c.Implementation)}
}

func (c Capabilities) String() string {
	return fmt.Sprintf("%s %s [%s]", c.Implementation, c.Version, strings.Join(c.Names(), ","))
}

// DetectCapabilities asks the node's zfs what it is. OpenZFS answers
// `zfs version`; zfs-fuse rejects it as an unknown command (exit 2), and its
// pool version comes from `zpool upgrade -v`.
func DetectCapabilities(ctx context.Context, r Runner) (Capabilities, error) {
	var out bytes.Buffer
	err := r.Run(ctx, Command{Argv: []string{"zfs", "version"}, Stdout: &out})
	if err == nil {
		maj, min, patch, ok := ParseOpenZFSVersion(out.String())
		if !ok {
			return Capabilities{}, &ParseError{Argv: []string{"zfs", "version"}, Text: out.String(), Reason: "no zfs-X.Y.Z line"}
		}
		c := Capabilities{
			Implementation: ImplOpenZFS,
			Version:        fmt.Sprintf("%d.%d.%d", maj, min, patch),
			Bookmarks:      true,
			ResumableRecv:  true,
			CompressedSend: true,
			HoldsList:      true,
			ParsableList:   true,
			RecvProps:      true,
			DryRunSend:     true,
			// Raw send of encrypted datasets arrived in 0.8.
			RawSend: maj > 0 || min >= 8,
		}
		return c, nil
	}
	var ce *CommandError
	if !errors.As(err, &ce) {
		return Capabilities{}, fmt.Errorf("zfsexec: detect capabilities: %w", err)
	}
	if errors.Is(ce, ErrDaemonNotRunning) {
		return Capabilities{}, fmt.Errorf("zfsexec: detect capabilities: %w", ce)
	}
	if !strings.Contains(ce.Stderr, "unrecognized command 'version'") {
		return Capabilities{}, fmt.Errorf("zfsexec: detect capabilities: %w", ce)
	}
	out.Reset()
	if err := r.Run(ctx, Command{Argv: []string{"zpool", "upgrade", "-v"}, Stdout: &out}); err != nil {
		return Capabilities{}, fmt.Errorf("zfsexec: detect capabilities: %w", err)
	}
	v, ok := ParsePoolVersion(out.String())
	if !ok {
		return Capabilities{}, &ParseError{Argv: []string{"zpool", "upgrade", "-v"}, Text: firstLine(out.String()), Reason: "no pool version"}
	}
	return Capabilities{Implementation: ImplZFSFuse, Version: fmt.Sprintf("pool-v%d", v)}, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
