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
// One listener serves both protocols: an SSH client speaks first with
// "SSH-", a TLS client with a handshake record (0x16).

import (
	"bufio"
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
	// dataWait bounds how long a command waits for its data connection.
	dataWait = 30 * time.Second
)

type dataTicket struct {
	Token      string `json:"token"`
	CertSHA256 string `json:"certSHA256"`
}

// dataServer issues tickets and matches incoming TLS connections to them.
type dataServer struct {
	cert tls.Certificate
	fp   string

	mu      sync.Mutex
	pending map[string]chan net.Conn
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
		pending: map[string]chan net.Conn{},
	}, nil
}

// ticket registers a one-time token; wait returns the connection that
// presents it.
func (d *dataServer) ticket() (dataTicket, func(ctx context.Context) (net.Conn, error), error) {
	b := make([]byte, tokenLen)
	if _, err := rand.Read(b); err != nil {
		return dataTicket{}, nil, err
	}
	token := hex.EncodeToString(b)
	ch := make(chan net.Conn, 1)
	d.mu.Lock()
	d.pending[token] = ch
	d.mu.Unlock()
	wait := func(ctx context.Context) (net.Conn, error) {
		defer func() {
			d.mu.Lock()
			delete(d.pending, token)
			d.mu.Unlock()
		}()
		select {
		case c := <-ch:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(dataWait):
			return nil, errors.New("agent: no data connection arrived for the ticket")
		}
	}
	return dataTicket{Token: token, CertSHA256: d.fp}, wait, nil
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
	d.mu.Lock()
	var ch chan net.Conn
	for token, pc := range d.pending {
		if subtle.ConstantTimeCompare([]byte(token), buf) == 1 {
			ch = pc
			delete(d.pending, token)
		}
	}
	d.mu.Unlock()
	if ch == nil {
		_ = tc.Close()
		return
	}
	ch <- tc
}

// sniffConn replays the bytes peeked to tell SSH from TLS.
type sniffConn struct {
	net.Conn
	r *bufio.Reader
}

func (s sniffConn) Read(p []byte) (int, error) { return s.r.Read(p) }

// isTLS reads the connection's first byte: 0x16 is a TLS handshake record;
// an SSH client starts with "SSH-". The read is bounded by the deadline the
// server set on accept.
func isTLS(c net.Conn) (net.Conn, bool, error) {
	r := bufio.NewReader(c)
	b, err := r.Peek(1)
	if err != nil {
		return nil, false, err
	}
	return sniffConn{Conn: c, r: r}, b[0] == 0x16, nil
}

// dialData opens the data connection a ticket describes and presents the
// token.
func dialData(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, t dataTicket) (*tls.Conn, error) {
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
	tc := tls.Client(nc, &tls.Config{
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
	if _, err := io.WriteString(tc, t.Token); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("agent: data connection: %w", err)
	}
	return tc, nil
}
