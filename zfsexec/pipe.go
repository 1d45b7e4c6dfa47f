package zfsexec

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
)

// errReceiverDone closes the pipe to a sender whose receiver has exited.
var errReceiverDone = errors.New("zfsexec: receiver exited")

// Pipe sends from src and receives into dst in this process, the
// equivalent of `zfs send ... | zfs recv ...` between two runners. It
// returns the bytes that passed through. When one side fails the other is
// stopped, and the error returned is the one that explains the failure: a
// receiver's error over the sender's broken pipe, a sender's error over the
// receiver's complaint about a truncated stream.
func Pipe(ctx context.Context, src *ZFS, so SendOptions, dst *ZFS, ro RecvOptions) (int64, error) {
	return PipeCounted(ctx, src, so, dst, ro, &CountingWriter{})
}

// PipeCounted is Pipe with a caller-owned counter, which the caller may
// read (cw.N) while the transfer runs to report progress. cw.W is set by
// PipeCounted.
func PipeCounted(ctx context.Context, src *ZFS, so SendOptions, dst *ZFS, ro RecvOptions, cw *CountingWriter) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	cw.W = pw
	sendErr := make(chan error, 1)
	go func() {
		err := src.Send(ctx, so, cw)
		if err != nil {
			_ = pw.CloseWithError(err)
		} else {
			_ = pw.Close()
		}
		sendErr <- err
	}()
	rerr := dst.Recv(ctx, ro, pr)
	_ = pr.CloseWithError(errReceiverDone)
	if rerr != nil {
		cancel()
	}
	serr := <-sendErr
	switch {
	case serr == nil && rerr == nil:
		return cw.N(), nil
	case serr != nil && rerr == nil:
		return cw.N(), serr
	case serr == nil:
		return cw.N(), rerr
	case errors.Is(rerr, ErrInvalidStream) || errors.Is(rerr, context.Canceled):
		// The receiver saw a stream cut short by the failing sender.
		return cw.N(), serr
	default:
		return cw.N(), rerr
	}
}

// CountingWriter counts the bytes written through it; N is safe to call
// from another goroutine while writes go on. Pace, if set, is called with
// each write's length before it is passed on: it may block to hold a rate
// (the agents' bandwidth limits), and an error it returns fails the write.
type CountingWriter struct {
	W    io.Writer
	Pace func(n int) error
	n    atomic.Int64
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	if c.Pace != nil {
		if err := c.Pace(len(p)); err != nil {
			return 0, err
		}
	}
	n, err := c.W.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// N returns the bytes written so far.
func (c *CountingWriter) N() int64 { return c.n.Load() }
