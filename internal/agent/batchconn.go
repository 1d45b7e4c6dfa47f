package agent

import (
	"net"
	"sync"
	"time"
)

// batchMax is the most a batchConn holds before it writes.
const batchMax = 512 << 10

// batchConn sits under the client's TLS data connection and gathers the
// records crypto/tls writes one system call each (16 KiB at most), so
// that a chunk of the stream leaves in one write: the sender calls Flush
// after each chunk it hands to TLS. A Read (the handshake waiting for the
// server), CloseWrite and Close flush first.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	err error
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchMax {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is gathered.
func (b *batchConn) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if b.err != nil {
		return b.err
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	b.err = err
	return err
}

func (b *batchConn) Read(p []byte) (int, error) {
	if err := b.Flush(); err != nil {
		return 0, err
	}
	return b.Conn.Read(p)
}

func (b *batchConn) Close() error {
	_ = b.Flush()
	return b.Conn.Close()
}

// SetWriteDeadline flushes first: crypto/tls sets one right after the
// close_notify alert it sends on CloseWrite, to fail later writes.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	_ = b.Flush()
	return b.Conn.SetWriteDeadline(t)
}

// SetDeadline flushes first, as SetWriteDeadline does.
func (b *batchConn) SetDeadline(t time.Time) error {
	_ = b.Flush()
	return b.Conn.SetDeadline(t)
}
