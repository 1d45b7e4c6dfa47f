package agent

import (
	"context"
	"io"
	"net"
	"sort"
	"syscall"
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
	l := tcpServer(b, func(c net.Conn) {
		_ = zeroSource{benchBytes}.Run(context.Background(), zfsexec.Command{Stdout: c})
	})
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
	addr, host, client := benchServer(b, zeroSource{benchBytes})
	c, err := Dial(context.Background(), addr, ClientConfig{Signer: client, HostKey: host.PublicKey()})
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
	addr, host, client := benchServer(b, zeroSource{16})
	start := time.Now()
	c, err := Dial(context.Background(), addr, ClientConfig{Signer: client, HostKey: host.PublicKey()})
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

// sinkRunner reads stdin to the end: a stand-in for `zfs recv`.
type sinkRunner struct{}

func (sinkRunner) Run(_ context.Context, c zfsexec.Command) error {
	if c.Stdin != nil {
		_, err := io.Copy(io.Discard, c.Stdin)
		return err
	}
	return nil
}

// benchUpload streams benchBytes into a remote command's stdin, through the
// SSH channel or the TLS data connection.
func benchUpload(b *testing.B, sshPath bool) {
	addr, host, client := benchServer(b, sinkRunner{})
	c, err := Dial(context.Background(), addr, ClientConfig{Signer: client, HostKey: host.PublicKey(), SSHDataPath: sshPath})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pr, pw := io.Pipe()
		go func() {
			_ = zeroSource{benchBytes}.Run(context.Background(), zfsexec.Command{Stdout: pw})
			pw.Close()
		}()
		if err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/x"}, Stdin: pr}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransport_UploadSSHChannel: stdin inside the SSH channel.
func BenchmarkTransport_UploadSSHChannel(b *testing.B) { benchUpload(b, true) }

// BenchmarkTransport_UploadTLSData: stdin on the TLS data connection (the
// default data path for streams into `zfs recv`).
func BenchmarkTransport_UploadTLSData(b *testing.B) { benchUpload(b, false) }

// BenchmarkTransport_UploadTCP is the baseline for the uploads: the same
// producer through an io.Pipe into a raw loopback TCP connection.
func BenchmarkTransport_UploadTCP(b *testing.B) {
	l := tcpServer(b, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		go func() {
			_ = zeroSource{benchBytes}.Run(context.Background(), zfsexec.Command{Stdout: pw})
			pw.Close()
		}()
		if n, err := io.Copy(c, pr); err != nil || n != benchBytes {
			b.Fatalf("copied %d: %v", n, err)
		}
		c.Close()
	}
}

// BenchmarkTransport_DataPathRatio moves the same stream over a raw TCP
// connection, the TLS data connection, the plaintext data connection
// (both ends with DataPlaintext) and the SSH channel in each iteration,
// and reports each agent path as a ratio of the TCP copy measured
// alongside it, plus CPU seconds per GiB of the whole process.
func BenchmarkTransport_DataPathRatio(b *testing.B) {
	addr, host, client := benchServerCfg(b, sinkRunner{}, true)
	tcpL := tcpServer(b, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	dial := func(sshPath, plain bool) *Client {
		c, err := Dial(context.Background(), addr, ClientConfig{Signer: client, HostKey: host.PublicKey(), SSHDataPath: sshPath, DataPlaintext: plain})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	tlsC, sshC, plainC := dial(false, false), dial(true, false), dial(false, true)
	defer tlsC.Close()
	defer sshC.Close()
	defer plainC.Close()
	producer := func() io.Reader {
		pr, pw := io.Pipe()
		go func() {
			_ = zeroSource{benchBytes}.Run(context.Background(), zfsexec.Command{Stdout: pw})
			pw.Close()
		}()
		return pr
	}
	timed := func(f func()) (time.Duration, float64) {
		cpu0 := processCPU()
		start := time.Now()
		f()
		return time.Since(start), processCPU() - cpu0
	}
	var rTLS, rSSH, rPlain, cpuTLS, cpuTCP, cpuPlain []float64
	recv := []string{"zfs", "recv", "-u", "tank/x"}
	for i := 0; i < b.N; i++ {
		dTCP, cTCP := timed(func() {
			c, err := net.Dial("tcp", tcpL.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(c, producer()); err != nil {
				b.Fatal(err)
			}
			c.Close()
		})
		dTLS, cTLS := timed(func() {
			if err := tlsC.Runner().Run(context.Background(), zfsexec.Command{Argv: recv, Stdin: producer()}); err != nil {
				b.Fatal(err)
			}
		})
		dPlain, cPlain := timed(func() {
			if err := plainC.Runner().Run(context.Background(), zfsexec.Command{Argv: recv, Stdin: producer()}); err != nil {
				b.Fatal(err)
			}
		})
		dSSH, _ := timed(func() {
			if err := sshC.Runner().Run(context.Background(), zfsexec.Command{Argv: recv, Stdin: producer()}); err != nil {
				b.Fatal(err)
			}
		})
		rTLS = append(rTLS, dTCP.Seconds()/dTLS.Seconds())
		rSSH = append(rSSH, dTCP.Seconds()/dSSH.Seconds())
		rPlain = append(rPlain, dTCP.Seconds()/dPlain.Seconds())
		gib := float64(benchBytes) / (1 << 30)
		cpuTLS = append(cpuTLS, cTLS/gib)
		cpuTCP = append(cpuTCP, cTCP/gib)
		cpuPlain = append(cpuPlain, cPlain/gib)
	}
	b.ReportMetric(medianOf(rTLS), "tls-x-tcp")
	b.ReportMetric(medianOf(rSSH), "ssh-x-tcp")
	b.ReportMetric(medianOf(cpuTLS), "tls-cpu-s/GiB")
	b.ReportMetric(medianOf(cpuTCP), "tcp-cpu-s/GiB")
	b.ReportMetric(medianOf(rPlain), "plain-x-tcp")
	b.ReportMetric(medianOf(cpuPlain), "plain-cpu-s/GiB")
}

// processCPU is this process's user+system CPU time in seconds (both ends
// of the benchmark run in it).
func processCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// benchServer starts an in-process agent on loopback that runs r, and
// returns its address, host key and an authorized client key.
func benchServer(b *testing.B, r zfsexec.Runner) (string, ssh.Signer, ssh.Signer) {
	b.Helper()
	return benchServerCfg(b, r, false)
}

// benchServerCfg is benchServer with plaintext data connections allowed
// or not.
func benchServerCfg(b *testing.B, r zfsexec.Runner, plaintext bool) (string, ssh.Signer, ssh.Signer) {
	b.Helper()
	host, client := benchSigner(b), benchSigner(b)
	srv, err := NewServer(ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{client.PublicKey()}, nil },
		Policy:         Policy{Pools: []string{"tank"}},
		Runner:         r,
		Log:            logr.Discard(),
		DataPlaintext:  plaintext,
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), host, client
}

// tcpServer serves loopback TCP connections with handle (which the
// baselines use to send or swallow a stream) until the benchmark ends.
func tcpServer(b *testing.B, handle func(net.Conn)) net.Listener {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				handle(c)
				_ = c.Close()
			}()
		}
	}()
	return l
}

// BenchmarkTransfer_GrantOverhead measures what a transfer's grant costs:
// since transfers no longer share a pooled agent-to-agent connection, each
// one has the controller's client sign a grant, the source check it, dial
// the target and complete an SSH handshake with the certificate, which the
// target checks. One iteration is a near-empty transfer (the whole
// request); grant-login-ms is the grant's part alone (issue, dial,
// handshake, close) and roundtrip-ms the baseline of one small request on
// an open connection, all measured in the same run.
func BenchmarkTransfer_GrantOverhead(b *testing.B) {
	t := &testing.T{}
	ctrl, srcHost, dstHost := newSigner(t), newSigner(t), newSigner(t)
	start := func(host ssh.Signer, r zfsexec.Runner) string {
		srv, err := NewServer(ServerConfig{HostKey: host, Runner: r, Policy: Policy{Pools: []string{"tank"}}, Log: logr.Discard(),
			AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{ctrl.PublicKey()}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = srv.Serve(l) }()
		b.Cleanup(func() { _ = srv.Close() })
		return l.Addr().String()
	}
	srcAddr, dstAddr := start(srcHost, &benchNode{}), start(dstHost, &benchNode{})
	ctx := context.Background()
	c, err := Dial(ctx, srcAddr, ClientConfig{Signer: ctrl, HostKey: srcHost.PublicKey(), GrantAuthority: ctrl})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	g := Grant{Send: zfsexec.SendOptions{Snapshot: "tank/a@s"}, Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
		TargetAddr: dstAddr, TargetHostKey: MarshalPublicKey(dstHost.PublicKey())}
	req := TransferRequest{Send: g.Send, Recv: g.Recv, TargetAddr: g.TargetAddr, TargetHostKey: g.TargetHostKey}
	measure := func(n int, f func() error) time.Duration {
		t0 := time.Now()
		for range n {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0) / time.Duration(n)
	}
	const probes = 50
	login := measure(probes, func() error {
		cert, err := IssueGrant(ctrl, srcHost.PublicKey(), g, time.Now(), DefaultGrantLifetime)
		if err != nil {
			return err
		}
		signer, err := ssh.NewCertSigner(cert, srcHost)
		if err != nil {
			return err
		}
		pc, err := dial(ctx, dstAddr, ClientConfig{Signer: signer, HostKey: dstHost.PublicKey()}, GrantPrincipal)
		if err != nil {
			return err
		}
		return pc.Close()
	})
	rt := measure(probes, func() error {
		return c.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zfs", "version"}, Stdout: io.Discard})
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Transfer(ctx, req, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(login.Microseconds())/1000, "grant-login-ms")
	b.ReportMetric(float64(rt.Microseconds())/1000, "roundtrip-ms")
}

// benchNode answers the capability probe, sends a few bytes and swallows
// receives.
type benchNode struct{}

func (benchNode) Run(_ context.Context, c zfsexec.Command) error {
	switch c.Argv[1] {
	case "version":
		_, err := io.WriteString(c.Stdout, "zfs-2.3.2-1\n")
		return err
	case "send":
		_, err := io.WriteString(c.Stdout, "stream")
		return err
	}
	return sinkRunner{}.Run(context.Background(), c)
}
