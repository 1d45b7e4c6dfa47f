package agent

// Transfer grants. An agent-to-agent transfer is authorized by the
// controller for exactly that transfer: an SSH user certificate, signed by
// the controller's key (a key in the agents' authorized keys), whose key is
// the source agent's own host key and whose critical option grantOption
// holds the Grant. The source agent checks the grant against the request
// and dials the grant's target with it; the target admits the certificate
// only for what the grant names (grantconn.go).

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// Grant is what one transfer may do on the receiving agent.
type Grant struct {
	// Send is what the source sends.
	Send zfsexec.SendOptions `json:"send"`
	// Recv is exactly the receive the target may run.
	Recv zfsexec.RecvOptions `json:"recv"`
	// TargetAddr is the only address the source dials.
	TargetAddr string `json:"targetAddr"`
	// TargetHostKey is the target agent's host key (authorized_keys format).
	TargetHostKey string `json:"targetHostKey"`
}

// GrantPrincipal is the only principal of a grant certificate and the SSH
// user a source agent logs in with.
const GrantPrincipal = "z8r-transfer"

// DefaultGrantLifetime is the time a grant may be *started* in (the login
// on the target); a transfer may run longer.
const DefaultGrantLifetime = 5 * time.Minute

// MaxGrantLifetime bounds a grant's validity window: agents refuse longer
// ones, so the used serials they remember (until ValidBefore) stay few.
const MaxGrantLifetime = time.Hour

// grantOption is the certificate's critical option holding the grant as
// JSON. Critical: an agent that does not understand it refuses the
// certificate.
const grantOption = "z8r.dev/grant"

// grantSkew backdates ValidAfter for clocks slightly behind the
// controller's.
const grantSkew = time.Minute

// ErrGrant is matched by every refused grant (errors.Is).
var ErrGrant = errors.New("transfer grant refused")

func grantErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrGrant, fmt.Sprintf(format, args...))
}

// IssueGrant signs g with authority as a user certificate for the source
// agent's host key, valid from now-1min to now+lifetime (at most
// MaxGrantLifetime), with a random serial and key id.
func IssueGrant(authority ssh.Signer, sourceHostKey ssh.PublicKey, g Grant, now time.Time, lifetime time.Duration) (*ssh.Certificate, error) {
	if authority == nil || sourceHostKey == nil {
		return nil, errors.New("agent: grant needs an authority and the source's host key")
	}
	if lifetime <= 0 || lifetime > MaxGrantLifetime {
		return nil, fmt.Errorf("agent: grant lifetime %s outside (0, %s]", lifetime, MaxGrantLifetime)
	}
	if _, ok := sourceHostKey.(*ssh.Certificate); ok {
		return nil, errors.New("agent: a grant's key must be a plain host key, not a certificate")
	}
	if err := g.validate(); err != nil {
		return nil, err
	}
	var rnd [24]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("agent: grant serial: %w", err)
	}
	cert := &ssh.Certificate{
		Key:             sourceHostKey,
		Serial:          binary.BigEndian.Uint64(rnd[:8]),
		CertType:        ssh.UserCert,
		KeyId:           "z8r-grant-" + hex.EncodeToString(rnd[8:]),
		ValidPrincipals: []string{GrantPrincipal},
		ValidAfter:      uint64(now.Add(-grantSkew).Unix()),
		ValidBefore:     uint64(now.Add(lifetime).Unix()),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{grantOption: string(mustJSON(g))},
		},
	}
	if err := cert.SignCert(rand.Reader, authority); err != nil {
		return nil, fmt.Errorf("agent: sign grant: %w", err)
	}
	return cert, nil
}

// validate checks what a grant must hold, without a node.
func (g Grant) validate() error {
	if g.TargetAddr == "" {
		return grantErr("no target address")
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(g.TargetHostKey)); err != nil {
		return grantErr("target host key: %v", err)
	}
	if _, err := g.Send.Validate(); err != nil {
		return grantErr("send: %v", err)
	}
	if _, err := g.Recv.Validate(); err != nil {
		return grantErr("recv: %v", err)
	}
	return nil
}

// targetHostKey parses g.TargetHostKey.
func (g Grant) targetHostKey() (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(g.TargetHostKey))
	if err != nil {
		return nil, grantErr("target host key: %v", err)
	}
	return k, nil
}

// decodeGrant decodes a grant option strictly (one bounded JSON object,
// known fields only) and validates it.
func decodeGrant(b []byte) (Grant, error) {
	var g Grant
	if err := decodeStrict(b, &g); err != nil {
		return Grant{}, grantErr("%v", err)
	}
	if err := g.validate(); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// ParseGrant parses a grant certificate in authorized_keys format.
func ParseGrant(s string) (*ssh.Certificate, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, grantErr("not a certificate: %v", err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, grantErr("a plain key, not a certificate")
	}
	return cert, nil
}

// verifyGrant checks that cert is a grant: a user certificate for
// GrantPrincipal alone, signed by one of authorities, valid at now, no
// longer than MaxGrantLifetime, whose only critical option is the grant;
// and decodes the grant.
func verifyGrant(cert *ssh.Certificate, authorities []ssh.PublicKey, now time.Time) (Grant, error) {
	if cert.CertType != ssh.UserCert {
		return Grant{}, grantErr("certificate type %d is not a user certificate", cert.CertType)
	}
	if len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != GrantPrincipal {
		return Grant{}, grantErr("principals %q, want only %q", cert.ValidPrincipals, GrantPrincipal)
	}
	if cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore < cert.ValidAfter ||
		cert.ValidBefore-cert.ValidAfter > uint64((MaxGrantLifetime+grantSkew)/time.Second) {
		return Grant{}, grantErr("validity window over %s", MaxGrantLifetime)
	}
	checker := ssh.CertChecker{
		SupportedCriticalOptions: []string{grantOption},
		Clock:                    func() time.Time { return now },
	}
	authorized := false
	for _, a := range authorities {
		if keysEqual(a, cert.SignatureKey) {
			authorized = true
			break
		}
	}
	if !authorized {
		return Grant{}, grantErr("signed by %s, not an authorized key", ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if err := checker.CheckCert(GrantPrincipal, cert); err != nil {
		return Grant{}, grantErr("%v", err)
	}
	opt, ok := cert.CriticalOptions[grantOption]
	if !ok || len(cert.CriticalOptions) != 1 {
		return Grant{}, grantErr("the certificate carries no grant, or other critical options")
	}
	return decodeGrant([]byte(opt))
}

// matchesRequest reports why g does not grant exactly req, field by field.
func (g Grant) matchesRequest(req TransferRequest) error {
	if string(mustJSON(g.Send)) != string(mustJSON(req.Send)) {
		return grantErr("the request's send differs from the granted one")
	}
	if string(mustJSON(g.Recv)) != string(mustJSON(req.Recv)) {
		return grantErr("the request's receive differs from the granted one")
	}
	if g.TargetAddr != req.TargetAddr {
		return grantErr("target address %q differs from the granted %q", req.TargetAddr, g.TargetAddr)
	}
	gk, err := g.targetHostKey()
	if err != nil {
		return err
	}
	rk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.TargetHostKey))
	if err != nil || !keysEqual(gk, rk) {
		return grantErr("the request's target host key differs from the granted one")
	}
	return nil
}
