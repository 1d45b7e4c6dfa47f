package agent

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/z8r-project/z8r/zfsexec"
)

// SSH channel and request types of the agent protocol. A connection carries
// any number of channels; each channel is one request.
const (
	// ChanRun runs one ZFS argv (payload runRequest). Stdin and stdout are
	// the channel's data; the result is an exit request.
	ChanRun = "z8r.dev/run/v1"
	// ChanTransfer asks the agent to send a snapshot straight to another
	// agent (payload TransferRequest). Progress requests arrive while it
	// runs; the result is an exit request.
	ChanTransfer = "z8r.dev/transfer/v1"

	reqExit     = "z8r.dev/exit"
	reqProgress = "z8r.dev/progress"
)

type runRequest struct {
	Argv []string `json:"argv"`
	// DataConn asks for stdin on a separate TLS data connection.
	DataConn bool `json:"dataConn,omitempty"`
}

// TransferRequest tells a source agent to stream a snapshot to a target
// agent: the source runs `zfs send`, dials the target over SSH (verifying
// exactly TargetHostKey) and feeds the target's `zfs recv`.
type TransferRequest struct {
	Send zfsexec.SendOptions `json:"send"`
	// TargetAddr is the target agent's host:port.
	TargetAddr string `json:"targetAddr"`
	// TargetHostKey is the target agent's pinned host key in
	// authorized_keys format; any other key is refused.
	TargetHostKey string `json:"targetHostKey"`
	// Recv is the receive on the target.
	Recv zfsexec.RecvOptions `json:"recv"`
}

// Progress is reported while a transfer runs.
type Progress struct {
	Bytes         int64 `json:"bytes"`
	ElapsedMillis int64 `json:"elapsedMillis"`
}

// Result of a finished transfer.
type Result struct {
	Bytes         int64 `json:"bytes"`
	ElapsedMillis int64 `json:"elapsedMillis"`
}

// Error kinds carried in exitStatus.Kind, so typed errors survive the wire.
const (
	kindCommand     = "command"
	kindRefused     = "refused"
	kindHostKey     = "hostkey"
	kindUnreachable = "unreachable"
	kindBaseMissing = "base-missing"
	kindCanceled    = "canceled"
	kindUnsupported = "unsupported"
	kindInternal    = "internal"
)

// exitStatus ends every channel.
type exitStatus struct {
	Kind     string   `json:"kind,omitempty"`
	Argv     []string `json:"argv,omitempty"`
	Code     int      `json:"code,omitempty"`
	Stderr   string   `json:"stderr,omitempty"`
	Message  string   `json:"message,omitempty"`
	Bytes    int64    `json:"bytes,omitempty"`
	Elapsed  int64    `json:"elapsedMillis,omitempty"`
	FromPeer bool     `json:"fromPeer,omitempty"`
}

// ErrHostKeyMismatch: the peer presented a host key other than the pinned one.
var ErrHostKeyMismatch = errors.New("host key does not match the pinned key")

// ErrUnreachable: the agent could not be reached.
var ErrUnreachable = errors.New("node agent unreachable")

// RemoteError is an agent-side failure that is not a ZFS command's exit.
type RemoteError struct {
	Kind    string
	Message string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("node agent: %s: %s", e.Kind, e.Message) }

// Is maps the wire kind back to the sentinel callers branch on.
func (e *RemoteError) Is(target error) bool {
	switch e.Kind {
	case kindHostKey:
		return target == ErrHostKeyMismatch
	case kindUnreachable:
		return target == ErrUnreachable
	case kindBaseMissing:
		return target == zfsexec.ErrBaseMissing
	case kindUnsupported:
		return target == zfsexec.ErrUnsupported
	case kindRefused:
		return target == ErrRefused
	}
	return false
}

// statusFromError turns an error into the exit status that reproduces it
// on the client (errorFromStatus).
func statusFromError(err error) exitStatus {
	if err == nil {
		return exitStatus{}
	}
	var ce *zfsexec.CommandError
	var re *RemoteError
	switch {
	case errors.As(err, &ce):
		return exitStatus{Kind: kindCommand, Argv: ce.Argv, Code: ce.ExitCode, Stderr: ce.Stderr, Message: err.Error()}
	case errors.As(err, &re):
		return exitStatus{Kind: re.Kind, Message: re.Message}
	case errors.Is(err, ErrRefused), errors.Is(err, zfsexec.ErrInvalidName):
		return exitStatus{Kind: kindRefused, Message: err.Error()}
	case errors.Is(err, ErrHostKeyMismatch):
		return exitStatus{Kind: kindHostKey, Message: err.Error()}
	case errors.Is(err, ErrUnreachable):
		return exitStatus{Kind: kindUnreachable, Message: err.Error()}
	case errors.Is(err, zfsexec.ErrBaseMissing):
		return exitStatus{Kind: kindBaseMissing, Message: err.Error()}
	case errors.Is(err, zfsexec.ErrUnsupported):
		return exitStatus{Kind: kindUnsupported, Message: err.Error()}
	case errors.Is(err, errCanceled):
		return exitStatus{Kind: kindCanceled, Message: err.Error()}
	}
	return exitStatus{Kind: kindInternal, Message: err.Error()}
}

var errCanceled = errors.New("canceled")

func errorFromStatus(st exitStatus) error {
	switch st.Kind {
	case "":
		return nil
	case kindCommand:
		return &zfsexec.CommandError{Argv: st.Argv, ExitCode: st.Code, Stderr: st.Stderr}
	case kindRefused:
		return &RefusedError{Reason: st.Message}
	}
	return &RemoteError{Kind: st.Kind, Message: st.Message}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
