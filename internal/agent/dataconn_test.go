package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// firstBytes is a listener that records the first byte of every
// connection it accepts: 'S' for SSH, 0x16 for TLS, 'Z' for a plaintext
// data connection.
type firstBytes struct {
	net.Listener
	mu    sync.Mutex
	bytes []byte
}

func (l *firstBytes) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordFirst{Conn: c, l: l}, nil
}

func (l *firstBytes) seen() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.bytes...)
}

type recordFirst struct {
	net.Conn
	l    *firstBytes
	once sync.Once
}

func (c *recordFirst) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			c.l.mu.Lock()
			c.l.bytes = append(c.l.bytes, p[0])
			c.l.mu.Unlock()
		})
	}
	return n, err
}

// streamNode sends payload for `zfs send`, answers the capability probe,
// and records the hash of what each `zfs recv` reads from stdin.
type streamNode struct {
	payload []byte
	mu      sync.Mutex
	got     [][32]byte
}

func (n *streamNode) Run(_ context.Context, c zfsexec.Command) error {
	switch {
	case len(c.Argv) > 1 && c.Argv[1] == "version":
		_, err := io.WriteString(c.Stdout, "zfs-2.3.2-1\n")
		return err
	case len(c.Argv) > 1 && c.Argv[1] == "send":
		_, err := c.Stdout.Write(n.payload)
		return err
	case c.Stdin != nil:
		h := sha256.New()
		if _, err := io.Copy(h, c.Stdin); err != nil {
			return err
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		n.mu.Lock()
		n.got = append(n.got, sum)
		n.mu.Unlock()
	}
	return nil
}

func (n *streamNode) received() [][32]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][32]byte(nil), n.got...)
}

// startDataServer runs an agent with runner r and the given plaintext
// setting on l, authorizing ctrl.
func startDataServer(t *testing.T, host, ctrl ssh.Signer, r zfsexec.Runner, plaintext bool, l net.Listener) *Server {
	t.Helper()
	srv, err := NewServer(ServerConfig{HostKey: host, Runner: r, Policy: Policy{Pools: []string{"tank"}}, Log: logr.Discard(),
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{ctrl.PublicKey()}, nil }, DataPlaintext: plaintext})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestTransfer_PlaintextOnlyWhenBothAgentsAllow runs a granted transfer
// between two agents for each combination of --data-plaintext on the
// source and the target, and reads on the target's listener how the
// stream arrived: in plaintext only when both allow it, with TLS
// otherwise (the default). The stream arrives intact either way.
func TestTransfer_PlaintextOnlyWhenBothAgentsAllow(t *testing.T) {
	payload := make([]byte, 3<<20+17)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	for _, tc := range []struct {
		src, dst  bool
		wantFirst byte
	}{
		{false, false, 0x16},
		{true, false, 0x16},
		{false, true, 0x16},
		{true, true, 'Z'},
	} {
		t.Run(fmt.Sprintf("source=%v,target=%v", tc.src, tc.dst), func(t *testing.T) {
			ctrl, srcHost, dstHost := newSigner(t), newSigner(t), newSigner(t)
			src, dst := &streamNode{payload: payload}, &streamNode{}
			srcL := listen(t)
			dstL := &firstBytes{Listener: listen(t)}
			startDataServer(t, srcHost, ctrl, src, tc.src, srcL)
			startDataServer(t, dstHost, ctrl, dst, tc.dst, dstL)
			ctx := context.Background()
			c, err := Dial(ctx, srcL.Addr().String(), ClientConfig{Signer: ctrl, HostKey: srcHost.PublicKey(), GrantAuthority: ctrl})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := TransferRequest{Send: zfsexec.SendOptions{Snapshot: "tank/a@s"}, Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
				TargetAddr: dstL.Addr().String(), TargetHostKey: MarshalPublicKey(dstHost.PublicKey())}
			res, err := c.Transfer(ctx, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != int64(len(payload)) {
				t.Errorf("transfer moved %d bytes, want %d", res.Bytes, len(payload))
			}
			got := dst.received()
			if len(got) != 1 || got[0] != want {
				t.Fatalf("target received %d streams, want one equal to the payload", len(got))
			}
			// The source's SSH login, then the data connection.
			first := dstL.seen()
			if len(first) != 2 || first[0] != 'S' || first[1] != tc.wantFirst {
				t.Errorf("target saw connections starting with %q, want %q", first, []byte{'S', tc.wantFirst})
			}
		})
	}
}

// TestClient_DefaultDataConnIsTLS: with zero-value configurations a
// stream into a command travels on a TLS data connection.
func TestClient_DefaultDataConnIsTLS(t *testing.T) {
	ctrl, host := newSigner(t), newSigner(t)
	node := &streamNode{}
	l := &firstBytes{Listener: listen(t)}
	startDataServer(t, host, ctrl, node, false, l)
	c, err := Dial(context.Background(), l.Addr().String(), ClientConfig{Signer: ctrl, HostKey: host.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte("z8r"), 1000)
	if err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/x"}, Stdin: bytes.NewReader(payload)}); err != nil {
		t.Fatal(err)
	}
	if got := node.received(); len(got) != 1 || got[0] != sha256.Sum256(payload) {
		t.Fatalf("received %d streams, want the payload once", len(got))
	}
	if first := l.seen(); !bytes.Equal(first, []byte{'S', 0x16}) {
		t.Errorf("connections started with %q, want SSH then TLS", first)
	}
}

// waitShort waits up to 2 s for a ticket's data connection.
func waitShort(wait func(context.Context) (net.Conn, bool, error)) (net.Conn, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return wait(ctx)
}

// refusedPlain presents preamble and token on a plaintext connection and
// fails unless the agent closes it and the ticket's wait gets no
// connection; what names the attempt in the failure.
func refusedPlain(t *testing.T, addr, preamble, token string, wait func(context.Context) (net.Conn, bool, error), what string) {
	t.Helper()
	if c := presentPlain(t, addr, preamble, token); !closedByPeer(c, time.Second) {
		t.Errorf("%s was kept open", what)
	}
	if dc, _, err := waitShort(wait); err == nil {
		dc.Close()
		t.Fatalf("%s reached the command", what)
	}
}

// presentPlain opens a raw connection to addr and writes preamble and
// token (closedByPeer then tells whether the agent refused it).
func presentPlain(t *testing.T, addr, preamble, token string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, preamble+token); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDataConn_PlaintextToken: a plaintext data connection gets to the
// waiting command only with the ticket's token, once, and only from an
// agent that allows plaintext and a ticket that offered it.
func TestDataConn_PlaintextToken(t *testing.T) {
	start := func(t *testing.T, plaintext bool) (*Server, string) {
		l := listen(t)
		return startDataServer(t, newSigner(t), newSigner(t), &streamNode{}, plaintext, l), l.Addr().String()
	}
	wrongToken := func(token string) string {
		b := []byte(token)
		b[0] ^= 1
		return string(b)
	}

	t.Run("right token once", func(t *testing.T) {
		srv, addr := start(t, true)
		tk, wait, err := srv.data.ticket()
		if err != nil {
			t.Fatal(err)
		}
		if !tk.Plaintext {
			t.Fatal("an agent with DataPlaintext issued a ticket without the plaintext offer")
		}
		c := presentPlain(t, addr, plainPreamble, tk.Token)
		if _, err := io.WriteString(c, "stream"); err != nil {
			t.Fatal(err)
		}
		dc, plain, err := waitShort(wait)
		if err != nil || !plain {
			t.Fatalf("data connection: plain=%v err=%v", plain, err)
		}
		defer dc.Close()
		got := make([]byte, len("stream"))
		if _, err := io.ReadFull(dc, got); err != nil || string(got) != "stream" {
			t.Fatalf("read %q, %v", got, err)
		}
		// The same token again: refused, the ticket is spent.
		if again := presentPlain(t, addr, plainPreamble, tk.Token); !closedByPeer(again, time.Second) {
			t.Error("a reused token was accepted")
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		srv, addr := start(t, true)
		tk, wait, _ := srv.data.ticket()
		refusedPlain(t, addr, plainPreamble, wrongToken(tk.Token), wait, "a connection with a wrong token")
	})
	t.Run("wrong preamble", func(t *testing.T) {
		srv, addr := start(t, true)
		tk, wait, _ := srv.data.ticket()
		refusedPlain(t, addr, "Z8RDATA9", tk.Token, wait, "a connection with a wrong preamble")
	})
	t.Run("agent without plaintext", func(t *testing.T) {
		srv, addr := start(t, false)
		tk, wait, _ := srv.data.ticket()
		if tk.Plaintext {
			t.Fatal("an agent without DataPlaintext offered plaintext")
		}
		refusedPlain(t, addr, plainPreamble, tk.Token, wait, "a plaintext connection to an agent that does not allow them")
	})
	t.Run("ticket without the offer", func(t *testing.T) {
		// A ticket issued while plaintext was off stays TLS-only.
		d, err := newDataServer()
		if err != nil {
			t.Fatal(err)
		}
		tk, wait, _ := d.ticket()
		d.plaintext = true
		client, server := net.Pipe()
		defer client.Close()
		go d.servePlain(server, func() {})
		go func() { _, _ = io.WriteString(client, plainPreamble+tk.Token) }()
		if dc, _, err := waitShort(wait); err == nil {
			dc.Close()
			t.Fatal("a plaintext connection used a ticket that did not offer plaintext")
		}
	})
	t.Run("client ignores an offer it does not allow", func(t *testing.T) {
		srv, _ := start(t, true)
		tk, _, _ := srv.data.ticket()
		l := &firstBytes{Listener: listen(t)}
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, _ = c.Read(make([]byte, 1))
				_ = c.Close()
			}
		}()
		_, _ = dialData(context.Background(), nil, l.Addr().String(), tk, false)
		if first := l.seen(); !bytes.Equal(first, []byte{0x16}) {
			t.Errorf("client without DataPlaintext started with %q, want TLS", first)
		}
	})
}

// hashingNode is streamNode whose receives run a real process
// (sha256sum, through zfsexec.LocalRunner) on the stream, as `zfs recv`
// would run, so a plaintext stream takes the splice path into its stdin.
type hashingNode struct {
	streamNode
	spliced bool
	sums    []string
}

func (n *hashingNode) Run(ctx context.Context, c zfsexec.Command) error {
	if len(c.Argv) < 2 || c.Argv[1] != "recv" {
		return n.streamNode.Run(ctx, c)
	}
	_, spliced := c.Stdin.(spliceReader)
	var out bytes.Buffer
	err := zfsexec.LocalRunner{}.Run(ctx, zfsexec.Command{Argv: []string{"sha256sum"}, Stdin: c.Stdin, Stdout: &out})
	n.mu.Lock()
	n.spliced = spliced
	n.sums = append(n.sums, string(bytes.Fields(out.Bytes())[0]))
	n.mu.Unlock()
	return err
}

// TestTransfer_PlaintextSplicedIntoProcess: between two agents that both
// allow plaintext, the stream reaches the receiving process's stdin by
// the splice path, byte for byte.
func TestTransfer_PlaintextSplicedIntoProcess(t *testing.T) {
	payload := make([]byte, 5<<20+3)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	ctrl, srcHost, dstHost := newSigner(t), newSigner(t), newSigner(t)
	srcL, dstL := listen(t), listen(t)
	dst := &hashingNode{}
	startDataServer(t, srcHost, ctrl, &streamNode{payload: payload}, true, srcL)
	startDataServer(t, dstHost, ctrl, dst, true, dstL)
	ctx := context.Background()
	c, err := Dial(ctx, srcL.Addr().String(), ClientConfig{Signer: ctrl, HostKey: srcHost.PublicKey(), GrantAuthority: ctrl})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := TransferRequest{Send: zfsexec.SendOptions{Snapshot: "tank/a@s"}, Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
		TargetAddr: dstL.Addr().String(), TargetHostKey: MarshalPublicKey(dstHost.PublicKey())}
	if _, err := c.Transfer(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", sha256.Sum256(payload))
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if len(dst.sums) != 1 || dst.sums[0] != want {
		t.Fatalf("receiving process hashed %q, want [%s]", dst.sums, want)
	}
	if !dst.spliced {
		t.Error("the plaintext stream did not take the splice path")
	}
}
