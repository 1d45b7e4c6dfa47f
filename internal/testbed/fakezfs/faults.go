package fakezfs

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/z8r-project/z8r/zfsexec"
)

// Matcher selects commands by argv.
type Matcher func(argv []string) bool

// Prefix matches every argv that begins with words (Prefix("zfs", "recv")).
func Prefix(words ...string) Matcher {
	return func(argv []string) bool {
		return len(argv) >= len(words) && slices.Equal(argv[:len(words)], words)
	}
}

// Fault fails one command: the Nth matching its Matcher after FailNth or
// CutNth.
type Fault struct {
	match Matcher
	nth   int
	err   error
	// cut >= 0: the command runs, its stdout cut after cut bytes.
	cut int64

	seen  int // under the node's lock
	fired atomic.Bool
}

// Fired reports whether the fault has failed its command.
func (f *Fault) Fired() bool {
	return f.fired.Load()
}

// FailNth makes the nth command (1-based, counted from now) matching m fail
// with err instead of running. A *zfsexec.CommandError without Argv gets
// the failing command's argv, so `&zfsexec.CommandError{ExitCode: 1,
// Stderr: "cannot open 'tank/x': dataset does not exist"}` fails exactly as
// ZFS would. The fault fires once.
func (n *Node) FailNth(m Matcher, nth int, err error) *Fault {
	if nth < 1 {
		nth = 1
	}
	if err == nil {
		err = errors.New("fakezfs: injected failure")
	}
	return n.addFault(&Fault{match: m, nth: nth, err: err, cut: -1})
}

// CutNth lets the nth command matching m run but passes on only the first
// after bytes of its standard output, then fails it with err: a transfer
// whose connection dropped mid-stream (the receiver sees a truncated
// stream). A nil err is a *zfsexec.CommandError saying the stream was cut.
func (n *Node) CutNth(m Matcher, nth int, after int64, err error) *Fault {
	if nth < 1 {
		nth = 1
	}
	if err == nil {
		err = &zfsexec.CommandError{ExitCode: 1, Stderr: "fakezfs: injected: stream cut\n"}
	}
	return n.addFault(&Fault{match: m, nth: nth, err: err, cut: max(after, 0)})
}

func (n *Node) addFault(f *Fault) *Fault {
	n.mu.Lock()
	n.faults = append(n.faults, f)
	n.mu.Unlock()
	return f
}

// matchFaults counts argv against every pending fault and returns the one
// that fires, if any; n.mu is held.
func (n *Node) matchFaults(argv []string) *Fault {
	var out *Fault
	for _, f := range n.faults {
		if f.fired.Load() || !f.match(argv) {
			continue
		}
		f.seen++
		if f.seen == f.nth && out == nil {
			f.fired.Store(true)
			out = f
		}
	}
	n.faults = slices.DeleteFunc(n.faults, func(f *Fault) bool { return f.fired.Load() })
	return out
}

// Gate holds every command matching its Matcher before it runs, until
// Release (or the command's context ends).
type Gate struct {
	match    Matcher
	arrived  chan struct{}
	release  chan struct{}
	once     sync.Once
	arriveMu sync.Mutex
	n        int
}

// Block installs a gate for the commands matching m.
func (n *Node) Block(m Matcher) *Gate {
	g := &Gate{match: m, arrived: make(chan struct{}, 1<<10), release: make(chan struct{})}
	n.mu.Lock()
	n.gates = append(n.gates, g)
	n.mu.Unlock()
	return g
}

// Release lets every held and future matching command run.
func (g *Gate) Release() { g.once.Do(func() { close(g.release) }) }

// Wait returns when a matching command is being held at the gate (one
// arrival per Wait), or with ctx's error.
func (g *Gate) Wait(ctx context.Context) error {
	select {
	case <-g.arrived:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Held returns how many commands have arrived at the gate so far.
func (g *Gate) Held() int {
	g.arriveMu.Lock()
	defer g.arriveMu.Unlock()
	return g.n
}

func (g *Gate) pass(ctx context.Context) error {
	select {
	case <-g.release:
		return nil
	default:
	}
	g.arriveMu.Lock()
	g.n++
	g.arriveMu.Unlock()
	select {
	case g.arrived <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// matchGates returns the gates argv must pass; n.mu is held.
func (n *Node) matchGates(argv []string) []*Gate {
	var out []*Gate
	for _, g := range n.gates {
		if g.match(argv) {
			out = append(out, g)
		}
	}
	return out
}

// withArgv fills in the argv of an injected *zfsexec.CommandError that
// has none, on a copy.
func withArgv(err error, argv []string) error {
	var ce *zfsexec.CommandError
	if errors.As(err, &ce) && len(ce.Argv) == 0 && err == error(ce) {
		c := *ce
		c.Argv = slices.Clone(argv)
		return &c
	}
	return err
}

// cutWriter passes on the first left bytes, then fails every write.
type cutWriter struct {
	w    io.Writer
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.w.Write(p)
	}
	n, err := c.w.Write(p[:c.left])
	c.left -= int64(n)
	if err == nil {
		err = errors.New("fakezfs: stream cut")
	}
	return n, err
}

func drain(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
