package agent

// The data path. A stream into a command's stdin (a `zfs recv`) can travel
// on a separate TLS connection instead of the SSH channel: Go's SSH moves
// about 0.4× what a raw loopback TCP copy does on these machines, TLS with
// AES-GCM about 0.55× (docs/benchmarks.md). The TLS connection is set up
// over the authenticated SSH channel and is itself authenticated both ways:
//
//  1. the client opens ChanRun with DataConn set;
//  2. the agent replies on the channel with a ticket: a one-time random
//     token and the SHA-256 of its TLS certificate (generated at start, in
//     memory). Both travel inside the SSH channel, so only the holder of an
//     authorized key sees them, and only the agent with the pinned host key
//     can have sent them;
//  3. the client dials the agent's same address with TLS 1.3, accepts only
//     a certificate with that fingerprint, and writes the token;
//  4. the agent hands the connection to the waiting command as its stdin.
//     Stdout, stderr and the exit status stay on the SSH channel.
//
// crypto/tls writes each record (16 KiB at most) with its own system call;
// the client's side runs over a batchConn so that the records of one chunk
// of the stream leave together (docs/benchmarks.md, "Profile of the data
// path").
//
// One listener serves both protocols: an SSH client speaks first with
// "SSH-", a TLS client with a handshake record (0x16).
//
// Plaintext data connections (off by default). An agent started with
// ServerConfig.DataPlaintext (--data-plaintext) marks its tickets
// Plaintext; a client that allows it too (ClientConfig.DataPlaintext, which
// an agent sets from its own flag when it dials a target for a transfer)
// then dials without TLS and writes plainPreamble and the token. The token
// is the same one-time secret from the SSH channel, compared in constant
// time, used once, valid for dataWait, so only the holder of the ticket
// gets to feed the command. But nothing protects the stream itself: anyone
// on the network path can read it and alter it (TCP hijacking, a
// man-in-the-middle rewriting the replicated data). Only for networks the
// operator trusts as much as the nodes. A ticket without Plaintext refuses
// a plaintext connection (and burns its token); an agent without the flag
// closes any connection that starts with plainPreamble.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

const (
	reqDataTicket = "z8r.dev/data-ticket"
	tokenLen      = 32
	// plainPreamble opens a plaintext data connection. Its first byte,
	// 'Z', is neither TLS's 0x16 nor the 'S' of "SSH-".
	plainPreamble = "Z8RDATA1"
	// dataWait bounds how long a command waits for its data connection.
	dataWait = 30 * time.Second
)

type dataTicket struct {
	Token      string `json:"token"`
	CertSHA256 string `json:"certSHA256"`
	// Plaintext: the agent also accepts this ticket's stream on a
	// plaintext connection (it allows them, ServerConfig.DataPlaintext).
	Plaintext bool `json:"plaintext,omitempty"`
}

// dataServer issues tickets and matches incoming data connections to them.
type dataServer struct {
	cert tls.Certificate
	fp   string
	// plaintext: tickets offer plaintext connections.
	plaintext bool

	mu      sync.Mutex
	pending map[string]pendingData
}

// pendingData is a ticket waiting for its connection.
type pendingData struct {
	ch        chan dataArrival
	plaintext bool
}

// dataArrival is a data connection matched to its ticket.
type dataArrival struct {
	conn      net.Conn
	plaintext bool
}

func newDataServer() (*dataServer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: data key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("agent: data certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &dataServer{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		fp:      hex.EncodeToString(sum[:]),
		pending: map[string]pendingData{},
	}, nil
}

// ticket registers a one-time token; wait returns the connection that
// presents it and whether it came without TLS.
func (d *dataServer) ticket() (dataTicket, func(ctx context.Context) (net.Conn, bool, error), error) {
	b := make([]byte, tokenLen)
	if _, err := rand.Read(b); err != nil {
		return dataTicket{}, nil, err
	}
	token := hex.EncodeToString(b)
	ch := make(chan dataArrival, 1)
	d.mu.Lock()
	d.pending[token] = pendingData{ch: ch, plaintext: d.plaintext}
	d.mu.Unlock()
	wait := func(ctx context.Context) (net.Conn, bool, error) {
		defer func() {
			d.mu.Lock()
			delete(d.pending, token)
			d.mu.Unlock()
		}()
		select {
		case a := <-ch:
			return a.conn, a.plaintext, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(dataWait):
			return nil, false, errors.New("agent: no data connection arrived for the ticket")
		}
	}
	return dataTicket{Token: token, CertSHA256: d.fp, Plaintext: d.plaintext}, wait, nil
}

// claim removes the pending ticket whose token is presented (compared in
// constant time with every pending token) and returns it, if any. A token
// is used once, whatever the outcome.
func (d *dataServer) claim(presented []byte) (pendingData, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var found pendingData
	ok := false
	for token, p := range d.pending {
		if subtle.ConstantTimeCompare([]byte(token), presented) == 1 {
			found, ok = p, true
			delete(d.pending, token)
		}
	}
	return found, ok
}

// serve completes the TLS handshake on c, reads the token and delivers c to
// the command waiting for it. Anything else is closed.
// The handshake and token must arrive before the deadline the server set
// on accept; release frees the pre-authentication slot.
func (d *dataServer) serve(c net.Conn, release func()) {
	defer release()
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{d.cert}, MinVersion: tls.VersionTLS13, DynamicRecordSizingDisabled: true})
	buf := make([]byte, 2*tokenLen)
	if _, err := io.ReadFull(tc, buf); err != nil {
		_ = tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	p, ok := d.claim(buf)
	if !ok {
		_ = tc.Close()
		return
	}
	p.ch <- dataArrival{conn: tc}
}

// servePlain reads plainPreamble and a token from c, in the clear, and
// delivers c to the command waiting for it, if this agent allows
// plaintext data connections and the ticket offered one. Anything else is
// closed. The reads are bounded by the deadline the server set on accept;
// release frees the pre-authentication slot.
func (d *dataServer) servePlain(c net.Conn, release func()) {
	defer release()
	if !d.plaintext {
		_ = c.Close()
		return
	}
	buf := make([]byte, len(plainPreamble)+2*tokenLen)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf[:len(plainPreamble)]) != plainPreamble {
		_ = c.Close()
		return
	}
	p, ok := d.claim(buf[len(plainPreamble):])
	if !ok || !p.plaintext {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if s, ok := c.(*sniffConn); ok && s.first == nil {
		// The replayed byte was read: hand over the connection itself,
		// so that a *net.TCPConn can be spliced into the command's stdin
		// (activityReader.WriteTo).
		c = s.Conn
	}
	p.ch <- dataArrival{conn: c, plaintext: true}
}

// sniffConn replays the first byte read to tell the protocols apart.
type sniffConn struct {
	net.Conn
	first []byte
}

func (s *sniffConn) Read(p []byte) (int, error) {
	if len(s.first) == 0 {
		return s.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := copy(p, s.first)
	s.first = s.first[n:]
	if len(s.first) == 0 {
		s.first = nil
	}
	return n, nil
}

// connKind is the protocol a connection speaks, by its first byte.
type connKind int

const (
	kindSSH connKind = iota
	kindTLS
	kindPlainData
)

// sniff reads the connection's first byte, and only that byte: 0x16 is a
// TLS handshake record, plainPreamble's 'Z' a plaintext data connection,
// anything else is left to the SSH handshake (a client starts with
// "SSH-"). The read is bounded by the deadline the server set on accept.
func sniff(c net.Conn) (net.Conn, connKind, error) {
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, kindSSH, err
	}
	kind := kindSSH
	switch b[0] {
	case 0x16:
		kind = kindTLS
	case plainPreamble[0]:
		kind = kindPlainData
	}
	return &sniffConn{Conn: c, first: b}, kind, nil
}

// halfCloser is a data connection as the client writes it: the stream's
// end is a CloseWrite.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// dialData opens the data connection a ticket describes and presents the
// token: in the clear if the ticket offers it and allowPlain, otherwise
// with TLS, verifying the ticket's certificate fingerprint.
func dialData(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, t dataTicket, allowPlain bool) (halfCloser, error) {
	want, err := hex.DecodeString(t.CertSHA256)
	if err != nil || len(want) != sha256.Size || len(t.Token) != 2*tokenLen {
		return nil, errors.New("agent: malformed data ticket")
	}
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent: dial data connection: %w: %w", ErrUnreachable, err)
	}
	if t.Plaintext && allowPlain {
		pc, ok := nc.(halfCloser)
		if !ok {
			_ = nc.Close()
			return nil, fmt.Errorf("agent: plaintext data connection: %T cannot half-close", nc)
		}
		if _, err := io.WriteString(pc, plainPreamble+t.Token); err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("agent: data connection: %w", err)
		}
		return pc, nil
	}
	bc := &batchConn{Conn: nc}
	tc := tls.Client(bc, &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		DynamicRecordSizingDisabled: true,
		// The certificate is verified by its fingerprint, received over the
		// authenticated SSH channel, instead of by a CA.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("agent: data connection without certificate")
			}
			sum := sha256.Sum256(raw[0])
			if !bytes.Equal(sum[:], want) {
				return fmt.Errorf("%w: data connection certificate", ErrHostKeyMismatch)
			}
			return nil
		},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("agent: data connection handshake: %w", err)
	}
	btc := &batchedTLS{Conn: tc, bc: bc}
	if _, err := io.WriteString(btc, t.Token); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("agent: data connection: %w", err)
	}
	return btc, nil
}

// batchedTLS is the client's TLS data connection over a batchConn: each
// Write leaves in one system call (or a few for a large one) however many
// records it makes.
type batchedTLS struct {
	*tls.Conn
	bc *batchConn
}

func (b *batchedTLS) Write(p []byte) (int, error) {
	n, err := b.Conn.Write(p)
	if err != nil {
		return n, err
	}
	return n, b.bc.Flush()
}

// CloseWrite sends TLS's close_notify and flushes it.
func (b *batchedTLS) CloseWrite() error {
	err := b.Conn.CloseWrite()
	if ferr := b.bc.Flush(); err == nil {
		err = ferr
	}
	return err
}

// spliceChunk is how much a plaintext stream moves per splice loop before
// its activity counter is updated (the stall watch reads it).
const spliceChunk = 1 << 20

// spliceReader is the activityReader of a plaintext data connection: its
// WriteTo lets the command's stdin pipe (an *os.File) pull the stream
// straight from the socket with splice(2), so the bytes never enter the
// agent's memory, counting them chunk by chunk.
type spliceReader struct {
	c *net.TCPConn
	a *activity
}

func (r spliceReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.a.n.Add(int64(n))
	return n, err
}

// WriteTo copies the connection to w until EOF, by w's ReadFrom when it
// has one (an *os.File splices from a *net.TCPConn), else through a
// buffer.
func (r spliceReader) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return io.CopyBuffer(w, struct{ io.Reader }{r}, make([]byte, 256<<10))
	}
	var total int64
	for {
		n, err := rf.ReadFrom(&io.LimitedReader{R: r.c, N: spliceChunk})
		total += n
		r.a.n.Add(n)
		if err != nil || n == 0 {
			return total, err
		}
	}
}
