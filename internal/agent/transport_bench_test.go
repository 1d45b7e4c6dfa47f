package agent

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// benchBytes is the stream size per benchmark iteration.
const benchBytes = 256 << 20

// zeroSource writes n bytes from memory to stdout: a stand-in for
// `zfs send` that costs nothing, so only the transport is measured.
type zeroSource struct{ n int64 }

func (z zeroSource) Run(_ context.Context, c zfsexec.Command) error {
	buf := make([]byte, 256<<10)
	for left := z.n; left > 0; {
		chunk := int64(len(buf))
		if left < chunk {
			chunk = left
		}
		if _, err := c.Stdout.Write(buf[:chunk]); err != nil {
			return err
		}
		left -= chunk
	}
	return nil
}

// BenchmarkTransport_TCP is the baseline: a raw loopback TCP copy.
func BenchmarkTransport_TCP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = zeroSource{benchBytes}.Run(context.Background(), zfsexec.Command{Stdout: c})
				c.Close()
			}()
		}
	}()
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		if n != benchBytes {
			b.Fatalf("got %d bytes", n)
		}
	}
}

// BenchmarkTransport_SSHChannel moves the stream over one agent SSH
// channel (the ChanRun data path), on an already open connection.
func BenchmarkTransport_SSHChannel(b *testing.B) {
	host, client := benchSigner(b), benchSigner(b)
	srv, err := NewServer(ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{client.PublicKey()}, nil },
		Policy:         Policy{Pools: []string{"tank"}},
		Runner:         zeroSource{benchBytes},
		Log:            logr.Discard(),
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	c, err := Dial(context.Background(), l.Addr().String(), ClientConfig{Signer: client, HostKey: host.PublicKey()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cw := &zfsexec.CountingWriter{W: io.Discard}
		if err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "send", "tank/a@s"}, Stdout: cw}); err != nil {
			b.Fatal(err)
		}
		if cw.N() != benchBytes {
			b.Fatalf("got %d bytes", cw.N())
		}
	}
}

// BenchmarkRoundTrip_SSHChannel is the cost of one tiny request on an open
// connection (a near-empty replication step pays a few of these).
func BenchmarkRoundTrip_SSHChannel(b *testing.B) {
	host, client := benchSigner(b), benchSigner(b)
	srv, err := NewServer(ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{client.PublicKey()}, nil },
		Policy:         Policy{Pools: []string{"tank"}},
		Runner:         zeroSource{16},
		Log:            logr.Discard(),
	})
	if err != nil {
		b.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	start := time.Now()
	c, err := Dial(context.Background(), l.Addr().String(), ClientConfig{Signer: client, HostKey: host.PublicKey()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds()), "handshake-µs")
	defer c.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "version"}, Stdout: io.Discard}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSigner(b *testing.B) ssh.Signer {
	b.Helper()
	t := &testing.T{}
	return newSigner(t)
}
