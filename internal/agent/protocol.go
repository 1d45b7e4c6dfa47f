package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

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

// Bounds on what a request's payload may hold. They are far above what
// z8r's own requests need and keep a hostile payload from costing memory.
const (
	// maxPayload bounds a channel's extra data.
	maxPayload = 64 << 10
	// maxArgs bounds a run request's argv length.
	maxArgs = 64
	// maxArgLen bounds one argument.
	maxArgLen = 4096
)

// errMalformed is the refusal of a payload that does not decode.
var errMalformed = errors.New("malformed request")

// decodeRunRequest decodes and bounds a ChanRun payload. It accepts only
// one JSON object with known fields; argv must be non-empty, within the
// bounds, valid UTF-8 and free of NUL bytes.
func decodeRunRequest(b []byte) (runRequest, error) {
	var req runRequest
	if err := decodeStrict(b, &req); err != nil {
		return runRequest{}, err
	}
	if len(req.Argv) == 0 || len(req.Argv) > maxArgs {
		return runRequest{}, fmt.Errorf("%w: argv must have 1 to %d arguments", errMalformed, maxArgs)
	}
	for _, a := range req.Argv {
		if len(a) > maxArgLen || !utf8.ValidString(a) || strings.IndexByte(a, 0) >= 0 {
			return runRequest{}, fmt.Errorf("%w: argument over %d bytes, not UTF-8 or with a NUL byte", errMalformed, maxArgLen)
		}
	}
	return req, nil
}

// decodeTransferRequest decodes and bounds a ChanTransfer payload; the
// meaning of its fields is checked by Server.checkTransfer.
func decodeTransferRequest(b []byte) (TransferRequest, error) {
	var req TransferRequest
	if err := decodeStrict(b, &req); err != nil {
		return TransferRequest{}, err
	}
	return req, nil
}

// decodeStrict decodes exactly one JSON object of at most maxPayload bytes
// into v, refusing unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxPayload {
		return fmt.Errorf("%w: payload over %d bytes", errMalformed, maxPayload)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: payload is not UTF-8", errMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the request", errMalformed)
	}
	return nil
}

type runRequest struct {
	Argv []string `json:"argv"`
	// DataConn asks for stdin on a separate TLS data connection.
	DataConn bool `json:"dataConn,omitempty"`
}

// TransferRequest tells a source agent to stream a snapshot to a target
// agent: the source runs `zfs send`, dials the target over SSH (verifying
// exactly TargetHostKey, logging in with its host key certified by Grant)
// and feeds the target's `zfs recv`.
type TransferRequest struct {
	Send zfsexec.SendOptions `json:"send"`
	// TargetAddr is the target agent's host:port.
	TargetAddr string `json:"targetAddr"`
	// TargetHostKey is the target agent's pinned host key in
	// authorized_keys format; any other key is refused.
	TargetHostKey string `json:"targetHostKey"`
	// Recv is the receive on the target.
	Recv zfsexec.RecvOptions `json:"recv"`
	// Grant is the controller's grant for exactly this transfer: an SSH
	// user certificate in authorized_keys format (IssueGrant). The source
	// refuses a transfer without one, or one that differs from the request
	// in any field; the target admits only what it names.
	Grant string `json:"grant,omitempty"`
	// RateLimit caps this transfer at that many bytes per second on the
	// source (0: no cap of its own). The source agent's own node-wide
	// limit (ServerConfig.RateLimit) applies as well.
	RateLimit int64 `json:"rateLimit,omitempty"`
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
	kindOutputLimit = "output-limit"
	kindTimeout     = "timeout"
	kindStalled     = "stalled"
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

// ErrProtocol: the agent broke the protocol (for example, it sent a second
// data ticket on one channel); the request was ended.
var ErrProtocol = errors.New("agent protocol violation")

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
	case kindOutputLimit:
		return target == ErrOutputLimit
	case kindTimeout:
		return target == ErrRequestTimeout
	case kindStalled:
		return target == ErrStalled
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
	case errors.Is(err, ErrOutputLimit):
		return exitStatus{Kind: kindOutputLimit, Message: err.Error()}
	case errors.Is(err, ErrRequestTimeout):
		return exitStatus{Kind: kindTimeout, Message: err.Error()}
	case errors.Is(err, ErrStalled):
		return exitStatus{Kind: kindStalled, Message: err.Error()}
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
