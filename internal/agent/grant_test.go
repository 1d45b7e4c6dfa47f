package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// fakeNode is a node's zfs for grant tests: it logs every argv it starts
// and answers the capability probe, sends, receives and the reads an
// incremental receive makes.
type fakeNode struct {
	fuse bool

	mu       sync.Mutex
	log      [][]string
	received map[string][]byte // stream bytes per receive target
}

func (f *fakeNode) Run(_ context.Context, c zfsexec.Command) error {
	f.mu.Lock()
	f.log = append(f.log, slices.Clone(c.Argv))
	f.mu.Unlock()
	out := c.Stdout
	if out == nil {
		out = io.Discard
	}
	last := c.Argv[len(c.Argv)-1]
	switch strings.Join(c.Argv[:2], " ") {
	case "zfs version":
		if f.fuse {
			return &zfsexec.CommandError{Argv: c.Argv, ExitCode: 2, Stderr: "unrecognized command 'version'\n"}
		}
		_, _ = io.WriteString(out, "zfs-2.3.2-1\nzfs-kmod-2.3.2-1\n")
	case "zpool upgrade":
		_, _ = io.WriteString(out, "This system is currently running ZFS pool version 23.\n")
	case "zfs send":
		_, _ = io.WriteString(out, "stream of "+last)
	case "zfs recv":
		b, err := io.ReadAll(c.Stdin)
		if err != nil {
			return err
		}
		f.mu.Lock()
		if f.received == nil {
			f.received = map[string][]byte{}
		}
		f.received[last] = b
		f.mu.Unlock()
	case "zfs get":
		if strings.Contains(last, "@") {
			_, _ = fmt.Fprintf(out, "%s\tguid\t42\t-\n", last)
			return nil
		}
		for _, o := range []struct{ name, typ, guid string }{{last, "filesystem", "7"}, {last + "@base", "snapshot", "42"}} {
			for _, p := range [][2]string{{"type", o.typ}, {"guid", o.guid}, {"createtxg", "5"}, {"creation", "1700000000"}, {"userrefs", "0"}} {
				_, _ = fmt.Fprintf(out, "%s\t%s\t%s\t-\n", o.name, p[0], p[1])
			}
		}
	default:
		return fmt.Errorf("fakeNode: unexpected %q", c.Argv)
	}
	return nil
}

func (f *fakeNode) argvs() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// grantBed is a controller key, a source agent and a target agent, each
// agent with its own host key, fake zfs and audit file.
type grantBed struct {
	ctrl               ssh.Signer
	srcHost, dstHost   ssh.Signer
	src, dst           *testServer
	srcZFS, dstZFS     *fakeNode
	srcAudit, dstAudit *syncBuffer
}

func newGrantBed(t *testing.T) *grantBed {
	t.Helper()
	b := &grantBed{ctrl: newSigner(t), srcHost: newSigner(t), dstHost: newSigner(t),
		srcZFS: &fakeNode{}, dstZFS: &fakeNode{}, srcAudit: &syncBuffer{}, dstAudit: &syncBuffer{}}
	b.src = startServerCfg(t, ServerConfig{HostKey: b.srcHost, Runner: b.srcZFS, AuditLog: b.srcAudit}, b.ctrl, nil)
	b.dst = startServerCfg(t, ServerConfig{HostKey: b.dstHost, Runner: b.dstZFS, AuditLog: b.dstAudit}, b.ctrl, nil)
	return b
}

// grant is the grant for sending tank/a@s from the source into tank/a on
// the target.
func (b *grantBed) grant() Grant {
	return Grant{
		Send:       zfsexec.SendOptions{Snapshot: "tank/a@s"},
		Recv:       zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
		TargetAddr: b.dst.addr, TargetHostKey: MarshalPublicKey(b.dst.hostKey),
	}
}

func (b *grantBed) request(g Grant) TransferRequest {
	return TransferRequest{Send: g.Send, Recv: g.Recv, TargetAddr: g.TargetAddr, TargetHostKey: g.TargetHostKey}
}

func issue(t *testing.T, authority ssh.Signer, key ssh.PublicKey, g Grant, now time.Time) *ssh.Certificate {
	t.Helper()
	cert, err := IssueGrant(authority, key, g, now, DefaultGrantLifetime)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dialTarget logs in to the target as the source would, with signer (the
// source's host key certified by a grant, or anything else).
func (b *grantBed) dialTarget(signer ssh.Signer, user string) (*Client, error) {
	return dial(context.Background(), b.dst.addr, ClientConfig{Signer: signer, HostKey: b.dst.hostKey, SSHDataPath: true}, user)
}

func certSigner(t *testing.T, cert *ssh.Certificate, key ssh.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stolenSigner presents a certificate but signs with another private key:
// what the holder of a copied certificate without the node's key can do.
type stolenSigner struct {
	cert *ssh.Certificate
	key  ssh.Signer
}

func (s stolenSigner) PublicKey() ssh.PublicKey { return s.cert }
func (s stolenSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return s.key.Sign(r, data)
}

// refusedWith reports whether the audit file holds a refusal naming
// the certificate's key id and serial, the source key fingerprint and a
// remote address, whose reason contains reason.
func refusedWith(recs []auditRecord, cert *ssh.Certificate, reason string) bool {
	for _, r := range recs {
		if r.Outcome == outcomeRefused && r.KeyID == cert.KeyId && r.Serial == cert.Serial && r.Remote != "" &&
			r.Fingerprint == ssh.FingerprintSHA256(cert.Key) && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

// TestGrant_Target: what a certificate login may do on the target agent.
// Each case acts as (or against) a source agent holding a grant; the
// target's command log proves what ran, its audit file who was refused.
func TestGrant_Target(t *testing.T) {
	recvArgv := []string{"zfs", "recv", "-u", "tank/a"}
	type result struct {
		loginErr error      // the login's error, nil if it succeeded
		runErrs  []error    // errors of the requests made after login
		ran      [][]string // commands the target started (checked exactly)
		refusal  string     // a substring of the audited refusal
	}
	run := func(c *Client, argv ...string) error {
		var stdin io.Reader
		if argv[1] == "recv" {
			stdin = strings.NewReader("data")
		}
		return c.Runner().Run(context.Background(), zfsexec.Command{Argv: argv, Stdin: stdin, Stdout: io.Discard})
	}
	for _, tc := range []struct {
		name  string
		act   func(t *testing.T, b *grantBed) (cert *ssh.Certificate, r result)
		check func(t *testing.T, r result)
	}{{
		name: "ValidGrantReceivesOnce",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			c, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return cert, result{runErrs: []error{run(c, recvArgv...)}, ran: [][]string{recvArgv}}
		},
		check: func(t *testing.T, r result) {
			if r.runErrs[0] != nil {
				t.Errorf("granted receive: %v", r.runErrs[0])
			}
		},
	}, {
		name: "SignedByNonAuthorizedKey",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, newSigner(t), b.srcHost.PublicKey(), b.grant(), time.Now())
			_, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			return cert, result{loginErr: err, refusal: "not an authorized key"}
		},
	}, {
		name: "Expired",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now().Add(-time.Hour))
			_, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			return cert, result{loginErr: err, refusal: "expired"}
		},
	}, {
		name: "NotYetValid",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now().Add(time.Hour))
			_, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			return cert, result{loginErr: err, refusal: "not yet valid"}
		},
	}, {
		// A node that copied another node's grant certificate cannot use
		// it: the login needs a signature by the certified key.
		name: "StolenCertificateWithWrongPrivateKey",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			thief := newSigner(t)
			if _, err := ssh.NewCertSigner(cert, thief); err == nil {
				t.Error("NewCertSigner paired a certificate with another key")
			}
			_, err := b.dialTarget(stolenSigner{cert: cert, key: thief}, GrantPrincipal)
			if err == nil {
				t.Fatal("a stolen certificate logged in")
			}
			// The failed attempt did not burn the grant for its holder.
			c, err2 := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err2 != nil {
				t.Errorf("the grant's holder after a thief's attempt: %v", err2)
			} else {
				_ = c.Close()
			}
			return cert, result{loginErr: err, refusal: "handshake failed after the key was accepted"}
		},
	}, {
		name: "GrantNamesAnotherTargetHostKey",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			g := b.grant()
			g.TargetHostKey = MarshalPublicKey(newSigner(t).PublicKey())
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now())
			_, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			return cert, result{loginErr: err, refusal: "another target host key"}
		},
	}, {
		name: "LoginAsAnotherUser",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			_, err := b.dialTarget(certSigner(t, cert, b.srcHost), "z8r")
			return cert, result{loginErr: err, refusal: "not " + GrantPrincipal}
		},
	}, {
		name: "RecvIntoAnotherDataset",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			c, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return cert, result{runErrs: []error{
				run(c, "zfs", "recv", "-u", "tank/other"),
				run(c, "zfs", "recv", "-u", "-F", "tank/a"),
				run(c, "zfs", "recv", "-u", "tank/a/child"),
			}, refusal: "allows only"}
		},
	}, {
		name: "SecondRecvOnSameConnection",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			c, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := run(c, recvArgv...); err != nil {
				t.Fatalf("first, granted receive: %v", err)
			}
			return cert, result{runErrs: []error{run(c, recvArgv...)}, ran: [][]string{recvArgv}, refusal: "used already"}
		},
	}, {
		name: "ReplayedSerialOnNewConnection",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			c, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			_, err = b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			return cert, result{loginErr: err, refusal: "replayed"}
		},
	}, {
		name: "OtherCommandsAndTransfer",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			cert := issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now())
			c, err := b.dialTarget(certSigner(t, cert, b.srcHost), GrantPrincipal)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := result{refusal: "does not allow"}
			for _, argv := range [][]string{
				{"zfs", "destroy", "tank/a@s"},
				{"zfs", "send", "tank/a@s"},
				{"zfs", "set", "readonly=on", "tank/a"},
				{"zfs", "hold", "z8r", "tank/a@s"},
				{"zfs", "rename", "tank/a", "tank/b"},
				{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "guid", "tank/other@s"},
			} {
				r.runErrs = append(r.runErrs, run(c, argv...))
			}
			_, err = c.Transfer(context.Background(), b.request(b.grant()), nil)
			r.runErrs = append(r.runErrs, err)
			return cert, r
		},
	}, {
		name: "PlainNodeHostKey",
		act: func(t *testing.T, b *grantBed) (*ssh.Certificate, result) {
			_, err1 := b.dialTarget(b.srcHost, "z8r")
			_, err2 := b.dialTarget(b.srcHost, GrantPrincipal)
			return nil, result{loginErr: errors.Join(err1, err2), runErrs: []error{err1, err2}}
		},
		check: func(t *testing.T, r result) {
			if r.runErrs[0] == nil || r.runErrs[1] == nil {
				t.Errorf("a node's plain host key logged in to another agent: %v", r.runErrs)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newGrantBed(t)
			cert, r := tc.act(t, b)
			if tc.check != nil {
				tc.check(t, r)
			} else if r.loginErr == nil && len(r.runErrs) == 0 {
				t.Fatal("case made no attempt")
			} else if r.loginErr == nil {
				for i, err := range r.runErrs {
					if !errors.Is(err, ErrRefused) {
						t.Errorf("request %d: %v, want ErrRefused", i, err)
					}
				}
			}
			if r.loginErr == nil && r.runErrs == nil {
				t.Errorf("no error")
			}
			if got := b.dstZFS.argvs(); !slices.EqualFunc(got, r.ran, slices.Equal) {
				t.Errorf("target ran %q, want %q", got, r.ran)
			}
			// A refusal after the handshake started can reach the client
			// before the agent has written its record: wait for it.
			deadline := time.Now().Add(2 * time.Second)
			for r.refusal != "" && !refusedWith(b.dstAudit.records(t), cert, r.refusal) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if r.refusal != "" && !refusedWith(b.dstAudit.records(t), cert, r.refusal) {
				t.Errorf("no audited refusal with key id, serial, fingerprint and %q: %+v", r.refusal, b.dstAudit.records(t))
			}
			for _, rec := range b.dstAudit.records(t) {
				if cert != nil && rec.KeyID == cert.KeyId && !rec.Grant {
					t.Errorf("record of a grant login not marked as a grant: %+v", rec)
				}
				if rec.Outcome != outcomeRefused && (r.ran == nil) {
					t.Errorf("a refused case left a non-refusal record: %+v", rec)
				}
			}
		})
	}
}

// TestGrant_ValidTransfer: the controller's client issues the grant, the
// source verifies it and dials the target, which receives exactly the
// granted stream; both audit files name the grant.
func TestGrant_ValidTransfer(t *testing.T) {
	b := newGrantBed(t)
	c := b.src.dial(t, b.ctrl, ClientConfig{GrantAuthority: b.ctrl})
	g := b.grant()
	g.Recv.Incremental, g.Recv.BaseGUID, g.Recv.BaseName = true, 42, "base"
	g.Send.From = "@base"
	res, err := c.Transfer(context.Background(), b.request(g), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "stream of tank/a@s"; string(b.dstZFS.received["tank/a"]) != want || res.Bytes != int64(len(want)) {
		t.Errorf("target received %q (%d bytes), want %q", b.dstZFS.received["tank/a"], res.Bytes, want)
	}
	var granted bool
	for _, r := range b.dstAudit.records(t) {
		if r.Outcome == outcomeRefused {
			t.Errorf("refusal on the target: %+v", r)
		}
		granted = granted || (r.Grant && r.KeyID != "" && r.Fingerprint == ssh.FingerprintSHA256(b.srcHost.PublicKey()))
	}
	if !granted {
		t.Errorf("target audit does not name the grant: %+v", b.dstAudit.records(t))
	}
	var accepted bool
	for _, r := range b.srcAudit.records(t) {
		accepted = accepted || (r.Request == ChanTransfer && r.Outcome == outcomeAccepted && r.KeyID != "")
	}
	if !accepted {
		t.Errorf("source audit has no accepted transfer naming its grant: %+v", b.srcAudit.records(t))
	}
}

// TestGrant_Source: a source agent refuses, before anything runs on either
// node, a transfer without a grant, with a grant that is not for exactly
// the request, not for its own key, not valid now, or not signed by an
// authorized key.
func TestGrant_Source(t *testing.T) {
	for _, tc := range []struct {
		name   string
		grant  func(t *testing.T, b *grantBed, req TransferRequest) string
		reason string
	}{
		{"NoGrant", func(*testing.T, *grantBed, TransferRequest) string { return "" }, "without a grant"},
		{"NotACertificate", func(_ *testing.T, b *grantBed, _ TransferRequest) string { return MarshalPublicKey(b.ctrl.PublicKey()) }, "not a certificate"},
		{"SignedByNonAuthority", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			return MarshalPublicKey(issue(t, newSigner(t), b.srcHost.PublicKey(), b.grant(), time.Now()))
		}, "not an authorized key"},
		{"ForAnotherNode", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			return MarshalPublicKey(issue(t, b.ctrl, b.dstHost.PublicKey(), b.grant(), time.Now()))
		}, "another node"},
		{"Expired", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), b.grant(), time.Now().Add(-time.Hour)))
		}, "expired"},
		{"OtherSnapshot", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			g := b.grant()
			g.Send.Snapshot = "tank/a@other"
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
		}, "send differs"},
		{"OtherRecvTarget", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			g := b.grant()
			g.Recv.Target = "tank/b"
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
		}, "receive differs"},
		{"OtherRecvOptions", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			g := b.grant()
			g.Recv.Force = true
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
		}, "receive differs"},
		{"OtherTargetAddr", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			g := b.grant()
			g.TargetAddr = "127.0.0.1:1"
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
		}, "target address"},
		{"OtherTargetHostKey", func(t *testing.T, b *grantBed, _ TransferRequest) string {
			g := b.grant()
			g.TargetHostKey = MarshalPublicKey(newSigner(t).PublicKey())
			return MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
		}, "target host key differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newGrantBed(t)
			c := b.src.dial(t, b.ctrl, ClientConfig{})
			req := b.request(b.grant())
			req.Grant = tc.grant(t, b, req)
			_, err := c.Transfer(context.Background(), req, nil)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("got %v, want a refusal with %q", err, tc.reason)
			}
			if got := append(b.srcZFS.argvs(), b.dstZFS.argvs()...); len(got) > 0 {
				t.Errorf("ran %q, want nothing", got)
			}
			recs := b.srcAudit.records(t)
			if len(recs) != 1 || recs[0].Outcome != outcomeRefused || recs[0].Request != ChanTransfer || !strings.Contains(recs[0].Reason, tc.reason) {
				t.Errorf("source audit = %+v, want one refusal with %q", recs, tc.reason)
			}
			if recs := b.dstAudit.records(t); len(recs) > 0 {
				t.Errorf("target audit = %+v, want nothing (never dialled)", recs)
			}
		})
	}
}

// TestGrantReads_MatchZfsexecRecv: the reads a grant connection may make
// are exactly those zfsexec.ZFS.Recv makes before its receive, on OpenZFS
// and zfs-fuse, for full and incremental receives.
func TestGrantReads_MatchZfsexecRecv(t *testing.T) {
	for _, fuse := range []bool{false, true} {
		for _, o := range []zfsexec.RecvOptions{
			{Target: "tank/a", Unmounted: true},
			{Target: "tank/a", Unmounted: true, Incremental: true},
			{Target: "tank/a", Unmounted: true, Incremental: true, BaseGUID: 42},
			{Target: "tank/a", Unmounted: true, Incremental: true, BaseGUID: 41, BaseName: "base"},
		} {
			n := &fakeNode{fuse: fuse}
			z := zfsexec.New(n)
			if err := z.Recv(context.Background(), o, bytes.NewReader(nil)); err != nil && !errors.Is(err, zfsexec.ErrBaseMissing) {
				t.Fatalf("fuse=%v %+v: %v", fuse, o, err)
			}
			caps, _ := z.Capabilities(context.Background())
			reads := grantReads(o, caps)
			want, _ := o.Validate()
			for _, argv := range n.argvs() {
				if !slices.Equal(argv, want) && !slices.ContainsFunc(reads, func(r []string) bool { return slices.Equal(r, argv) }) {
					t.Errorf("fuse=%v %+v: zfsexec ran %q, which a grant connection refuses", fuse, o, argv)
				}
			}
		}
	}
}

// TestIssueGrant_Certificate: the certificate's fields are the ones the
// design fixes.
func TestIssueGrant_Certificate(t *testing.T) {
	ctrl, src := newSigner(t), newSigner(t)
	g := Grant{Send: zfsexec.SendOptions{Snapshot: "tank/a@s"}, Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true},
		TargetAddr: "10.0.0.2:2022", TargetHostKey: MarshalPublicKey(newSigner(t).PublicKey())}
	now := time.Unix(1_800_000_000, 0)
	cert, err := IssueGrant(ctrl, src.PublicKey(), g, now, DefaultGrantLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if cert.CertType != ssh.UserCert || !keysEqual(cert.Key, src.PublicKey()) || !slices.Equal(cert.ValidPrincipals, []string{GrantPrincipal}) ||
		cert.ValidAfter != uint64(now.Add(-time.Minute).Unix()) || cert.ValidBefore != uint64(now.Add(DefaultGrantLifetime).Unix()) ||
		cert.KeyId == "" || !keysEqual(cert.SignatureKey, ctrl.PublicKey()) {
		t.Errorf("certificate = %+v", cert)
	}
	got, err := verifyGrant(cert, []ssh.PublicKey{ctrl.PublicKey()}, now)
	if err != nil || g.matchesRequest(TransferRequest{Send: got.Send, Recv: got.Recv, TargetAddr: got.TargetAddr, TargetHostKey: got.TargetHostKey}) != nil {
		t.Errorf("verify = %+v, %v", got, err)
	}
	other, _ := IssueGrant(ctrl, src.PublicKey(), g, now, DefaultGrantLifetime)
	if other.Serial == cert.Serial || other.KeyId == cert.KeyId {
		t.Error("two grants share a serial or key id")
	}
	for _, bad := range []time.Duration{0, -time.Second, MaxGrantLifetime + time.Second} {
		if _, err := IssueGrant(ctrl, src.PublicKey(), g, now, bad); err == nil {
			t.Errorf("lifetime %s accepted", bad)
		}
	}
	g.Recv.Target = "tank/../x"
	if _, err := IssueGrant(ctrl, src.PublicKey(), g, now, DefaultGrantLifetime); err == nil {
		t.Error("grant with an invalid receive target issued")
	}
}
