package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the limits in ServerConfig and ClientConfig.
const (
	// DefaultMaxUnauthConns caps connections that have not authenticated
	// yet (SSH handshake or data-connection token still pending).
	DefaultMaxUnauthConns = 64
	// DefaultMaxUnauthPerAddr caps them per remote IP address.
	DefaultMaxUnauthPerAddr = 8
	// DefaultHandshakeTimeout bounds the time from accept to a finished
	// SSH handshake (or a presented data token).
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxOutput bounds the output of a non-stream command.
	DefaultMaxOutput = 16 << 20
	// DefaultRequestTimeout bounds a non-stream request.
	DefaultRequestTimeout = 10 * time.Minute
	// DefaultStallTimeout aborts a stream that moved no byte for that long.
	DefaultStallTimeout = 2 * time.Minute
)

// ErrOutputLimit: a non-stream command wrote more than the bound; it was
// killed and its output is incomplete.
var ErrOutputLimit = errors.New("command output exceeds the limit")

// ErrRequestTimeout: a non-stream request ran past its deadline and was
// killed.
var ErrRequestTimeout = errors.New("request deadline exceeded")

// ErrStalled: a stream moved no byte for the stall timeout; both ends were
// stopped as a cancellation stops them.
var ErrStalled = errors.New("stream stalled")

// isStream tells stream commands (zfs send, zfs recv), which run as long as
// their data flows, from the others, which are bounded in time and output.
func isStream(argv []string) bool {
	if len(argv) < 2 || argv[0] != "zfs" {
		return false
	}
	switch argv[1] {
	case "send":
		// A dry run (-n) only prints the stream's size.
		return !slices.Contains(argv[2:], "-n")
	case "recv", "receive":
		return true
	}
	return false
}

// limitWriter passes at most max bytes to W; the write that would pass the
// bound fails with ErrOutputLimit and calls exceeded once.
type limitWriter struct {
	W        io.Writer
	max      int64
	n        int64
	exceeded func()
	once     sync.Once
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n+int64(len(p)) > l.max {
		if l.exceeded != nil {
			l.once.Do(l.exceeded)
		}
		return 0, fmt.Errorf("%w (%d bytes)", ErrOutputLimit, l.max)
	}
	n, err := l.W.Write(p)
	l.n += int64(n)
	return n, err
}

// activity counts bytes moved by a stream; watchStall reads it.
type activity struct{ n atomic.Int64 }

type activityReader struct {
	r io.Reader
	a *activity
}

func (r activityReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.a.n.Add(int64(n))
	return n, err
}

type activityWriter struct {
	w io.Writer
	a *activity
}

func (w activityWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.a.n.Add(int64(n))
	return n, err
}

// watchStall cancels with ErrStalled when bytes() has not changed for
// timeout, checking four times per timeout. It returns when ctx ends.
func watchStall(ctx context.Context, cancel context.CancelCauseFunc, timeout time.Duration, bytes func() int64) {
	if timeout <= 0 {
		return
	}
	t := time.NewTicker(timeout / 4)
	defer t.Stop()
	last, lastChange := bytes(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := bytes(); n != last {
				last, lastChange = n, now
				continue
			}
			if now.Sub(lastChange) >= timeout {
				cancel(fmt.Errorf("%w: no byte moved for %s", ErrStalled, timeout))
				return
			}
		}
	}
}

// connLimiter counts unauthenticated connections, in total and per remote
// IP address, and refuses those over the caps.
type connLimiter struct {
	maxTotal, maxPer int

	mu      sync.Mutex
	total   int
	perAddr map[string]int
	refused atomic.Int64
}

func newConnLimiter(maxTotal, maxPer int) *connLimiter {
	return &connLimiter{maxTotal: maxTotal, maxPer: maxPer, perAddr: map[string]int{}}
}

// acquire takes a slot for a connection from addr; release (idempotent)
// gives it back once the connection authenticated or ended.
func (l *connLimiter) acquire(addr net.Addr) (release func(), ok bool) {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxTotal || l.perAddr[host] >= l.maxPer {
		l.refused.Add(1)
		return nil, false
	}
	l.total++
	l.perAddr[host]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total--
			if l.perAddr[host]--; l.perAddr[host] <= 0 {
				delete(l.perAddr, host)
			}
			l.mu.Unlock()
		})
	}, true
}

func (l *connLimiter) unauthenticated() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Stats are the agent's connection counters.
type Stats struct {
	// Unauthenticated is the number of open connections that have not
	// finished authentication.
	Unauthenticated int
	// RefusedConns counts connections closed at once because they were
	// over a pre-authentication cap.
	RefusedConns int64
	// AcceptErrors counts temporary Accept errors that were retried.
	AcceptErrors int64
}

// temporaryAcceptError tells errors Accept recovers from (out of file
// descriptors or memory, an aborted connection, a timeout) from a closed
// or broken listener.
func temporaryAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptBackoff is the wait after the n-th consecutive temporary Accept
// error: 5ms doubling up to 1s.
func acceptBackoff(n int) time.Duration {
	d := 5 * time.Millisecond
	for i := 1; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}
