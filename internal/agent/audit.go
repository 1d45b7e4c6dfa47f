package agent

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// AuditRunner records the argv of every command before it starts, one JSON
// line each, then runs it with Next. Tests read the log to prove that a
// refused request started nothing.
type AuditRunner struct {
	Next zfsexec.Runner
	W    io.Writer
}

var auditMu sync.Mutex

// Run implements zfsexec.Runner.
func (a AuditRunner) Run(ctx context.Context, c zfsexec.Command) error {
	line, _ := json.Marshal(struct {
		Time string   `json:"time"`
		Argv []string `json:"argv"`
	}{time.Now().UTC().Format(time.RFC3339Nano), c.Argv})
	auditMu.Lock()
	_, _ = a.W.Write(append(line, '\n'))
	auditMu.Unlock()
	return a.Next.Run(ctx, c)
}

// The audit log. Every request an agent receives (every login attempt
// refused, every channel: run or transfer) leaves records in the agent's
// log with the constant message "audit": who asked (the client key's
// SHA256 fingerprint and remote address; for a transfer grant, its key
// id and serial, and on a grant connection grant=true), what (the argv, or a transfer's
// send, receive and target), and the outcome: refused with the reason,
// accepted (transfers and zfs send/recv streams, which may run for hours),
// and finished with the exit kind, code and duration. A refused request has
// exactly one record and started nothing. ServerConfig.AuditLog
// receives the same records as JSON lines.

// Audit outcomes.
const (
	outcomeRefused  = "refused"
	outcomeAccepted = "accepted"
	outcomeFinished = "finished"
)

// auditRecord is one audit entry.
type auditRecord struct {
	Time        string `json:"time"`
	Remote      string `json:"remote"`
	Fingerprint string `json:"fingerprint"`
	// Grant, KeyID and Serial identify a transfer grant: on the target,
	// the grant a source agent logged in with; on the source, the grant
	// its transfer request carried.
	Grant      bool     `json:"grant,omitempty"`
	KeyID      string   `json:"grantKeyId,omitempty"`
	Serial     uint64   `json:"grantSerial,omitempty"`
	Request    string   `json:"request"`
	Argv       []string `json:"argv,omitempty"`
	Outcome    string   `json:"outcome"`
	Reason     string   `json:"reason,omitempty"`
	ExitKind   string   `json:"exitKind,omitempty"`
	ExitCode   int      `json:"exitCode,omitempty"`
	DurationMS int64    `json:"durationMillis,omitempty"`
}

// client is who sent a request: grant is set on a grant connection (a
// source agent, not the controller); keyID and serial name the grant.
type client struct {
	remote, fingerprint string
	grant               bool
	keyID               string
	serial              uint64
}

func (c client) record(request string, argv []string, outcome, reason string) auditRecord {
	return auditRecord{Remote: c.remote, Fingerprint: c.fingerprint, Request: request, Argv: argv, Outcome: outcome, Reason: reason,
		Grant: c.grant, KeyID: c.keyID, Serial: c.serial}
}

func (c client) finished(request string, argv []string, st exitStatus, d time.Duration) auditRecord {
	r := c.record(request, argv, outcomeFinished, st.Message)
	r.ExitKind, r.ExitCode, r.DurationMS = st.Kind, st.Code, d.Milliseconds()
	if st.Kind == "" {
		r.ExitKind = "ok"
	}
	return r
}

// audit writes r to the log and, when configured, the audit file.
func (s *Server) audit(r auditRecord) {
	r.Time = time.Now().UTC().Format(time.RFC3339Nano)
	kv := []any{"outcome", r.Outcome, "request", r.Request, "remote", r.Remote, "fingerprint", r.Fingerprint, "argv", r.Argv}
	if r.Reason != "" {
		kv = append(kv, "reason", r.Reason)
	}
	if r.KeyID != "" || r.Grant {
		kv = append(kv, "grant", r.Grant, "grantKeyId", r.KeyID, "grantSerial", r.Serial)
	}
	if r.Outcome == outcomeFinished {
		kv = append(kv, "exitKind", r.ExitKind, "exitCode", r.ExitCode, "durationMillis", r.DurationMS)
	}
	s.cfg.Log.Info("audit", kv...)
	if s.cfg.AuditLog != nil {
		line, err := json.Marshal(r)
		if err != nil {
			return
		}
		auditMu.Lock()
		_, _ = s.cfg.AuditLog.Write(append(line, '\n'))
		auditMu.Unlock()
	}
}
