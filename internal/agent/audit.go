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
