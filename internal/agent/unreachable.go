package agent

import "fmt"

// UnreachableError is the caller's own channel to the agent at Addr
// failing on an established connection: the channel could not be opened,
// or it ended without an exit status (the connection, or the agent, went
// away mid-request). It matches ErrUnreachable. Addr tells which
// connection failed, so a pool can drop exactly that one; an error an
// agent reports over a working channel (a *RemoteError, such as a source
// agent failing to reach a transfer's target) is never an
// UnreachableError.
type UnreachableError struct {
	// Addr is the agent's address, as dialled.
	Addr string
	// Op is what failed ("open z8r.dev/run/v1", "z8r.dev/run/v1 ended
	// without a status").
	Op string
	// Err is the cause, if one is known.
	Err error
}

func (e *UnreachableError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("agent %s: %s: %v", e.Addr, e.Op, ErrUnreachable)
	}
	return fmt.Sprintf("agent %s: %s: %v: %v", e.Addr, e.Op, ErrUnreachable, e.Err)
}

// Is makes every UnreachableError match ErrUnreachable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }
