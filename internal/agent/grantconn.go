package agent

// The target side of a grant. A source agent logs in with its host key
// certified by a grant (grant.go). The login is accepted only for a
// certificate signed by an authorized key, for GrantPrincipal, within its
// validity window, whose grant names this agent's host key and whose serial
// was not used before. The serial is marked used once the handshake has
// completed (a key query without a signature burns nothing). The
// connection may then run, on ChanRun only, the reads zfsexec.ZFS.Recv
// makes before receiving (grantReads) and exactly one zfs recv: the argv
// of the grant's RecvOptions. Both still pass Policy.Check and
// CheckEffect.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// Permissions extensions a grant login carries from the callback to the
// connection.
const (
	extFingerprint      = "fingerprint"
	extGrant            = "z8r.dev/grant"
	extGrantSerial      = "z8r.dev/grant-serial"
	extGrantKeyID       = "z8r.dev/grant-key-id"
	extGrantValidBefore = "z8r.dev/grant-valid-before"
)

// maxUsedSerials bounds the replay memory. Serials are kept until their
// grant expires (at most MaxGrantLifetime); past the bound, new grant
// logins are refused (fail closed) until old ones expire.
const maxUsedSerials = 1 << 16

// errReplay: a grant's serial was used already.
var errReplay = errors.New("grant already used (replayed serial)")

// usedSerials remembers the serials of the grants used, until they expire.
type usedSerials struct {
	mu sync.Mutex
	m  map[uint64]time.Time
}

func (u *usedSerials) seen(serial uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.m[serial]
	return ok
}

// use marks serial used until until; it fails if it was used already or
// the memory is full of unexpired serials.
func (u *usedSerials) use(serial uint64, until, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[uint64]time.Time{}
	}
	if _, ok := u.m[serial]; ok {
		return errReplay
	}
	if len(u.m) >= maxUsedSerials {
		for s, t := range u.m {
			if !now.Before(t) {
				delete(u.m, s)
			}
		}
		if len(u.m) >= maxUsedSerials {
			return errors.New("too many unexpired grants in use")
		}
	}
	u.m[serial] = until
	return nil
}

// grantConn is what one grant connection may still do.
type grantConn struct {
	grant       Grant
	keyID       string
	serial      uint64
	validBefore time.Time
	recvUsed    atomic.Bool
}

// grantLogin decides a certificate login (PublicKeyCallback).
func (s *Server) grantLogin(meta ssh.ConnMetadata, cert *ssh.Certificate) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(cert.Key)
	who := client{remote: meta.RemoteAddr().String(), fingerprint: fp, grant: true, keyID: cert.KeyId, serial: cert.Serial}
	refused := func(reason string) (*ssh.Permissions, error) {
		s.audit(who.record("login", nil, outcomeRefused, reason))
		return nil, errors.New("agent: grant refused: " + reason)
	}
	if meta.User() != GrantPrincipal {
		return refused("certificate login as user " + strconv.Quote(meta.User()) + ", not " + GrantPrincipal)
	}
	keys, err := s.cfg.AuthorizedKeys()
	if err != nil {
		return refused("authorized keys unusable: " + err.Error())
	}
	g, err := verifyGrant(cert, keys, time.Now())
	if err != nil {
		return refused(err.Error())
	}
	tk, err := g.targetHostKey()
	if err != nil {
		return refused(err.Error())
	}
	if !keysEqual(tk, s.cfg.HostKey.PublicKey()) {
		return refused("the grant names another target host key (" + ssh.FingerprintSHA256(tk) + ")")
	}
	if s.used.seen(cert.Serial) {
		return refused(errReplay.Error())
	}
	s.accepted.Store(who.remote, who)
	return &ssh.Permissions{Extensions: map[string]string{
		extFingerprint:      fp,
		extGrant:            string(mustJSON(g)),
		extGrantSerial:      strconv.FormatUint(cert.Serial, 10),
		extGrantKeyID:       cert.KeyId,
		extGrantValidBefore: strconv.FormatUint(cert.ValidBefore, 10),
	}}, nil
}

// grantOf returns the grant carried by an accepted login's permissions
// (nil for a plain key login).
func (s *Server) grantOf(perms *ssh.Permissions) (*grantConn, error) {
	ext := perms.Extensions
	if _, ok := ext[extGrant]; !ok {
		return nil, nil
	}
	var g Grant
	if err := json.Unmarshal([]byte(ext[extGrant]), &g); err != nil {
		return nil, err
	}
	serial, err := strconv.ParseUint(ext[extGrantSerial], 10, 64)
	if err != nil {
		return nil, err
	}
	vb, err := strconv.ParseInt(ext[extGrantValidBefore], 10, 64)
	if err != nil {
		return nil, err
	}
	return &grantConn{grant: g, keyID: ext[extGrantKeyID], serial: serial, validBefore: time.Unix(vb, 0)}, nil
}

// useGrant is the ssh.ServerConfig.VerifiedPublicKeyCallback: it runs once
// the client proved it holds the key (a key query or a bad signature never
// gets here, so neither can burn a grant) and marks a grant's serial used,
// refusing the login when it was used already (a replay) during the
// handshake, where the client sees the refusal.
func (s *Server) useGrant(meta ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	gc, err := s.grantOf(perms)
	if gc == nil && err == nil {
		return perms, nil
	}
	if err == nil {
		err = s.used.use(gc.serial, gc.validBefore, time.Now())
	}
	if err != nil {
		who := client{remote: meta.RemoteAddr().String(), fingerprint: perms.Extensions[extFingerprint], grant: true}
		if gc != nil {
			who.keyID, who.serial = gc.keyID, gc.serial
		}
		// Refused here and audited here: not again as a failed handshake.
		s.accepted.Delete(who.remote)
		s.audit(who.record("login", nil, outcomeRefused, err.Error()))
		return nil, fmt.Errorf("agent: grant refused: %w", err)
	}
	return perms, nil
}

// grantReads are the read-only argvs zfsexec.ZFS.Recv runs through a
// remote runner before receiving o, on a node with caps: the capability
// probes, and for an incremental receive the base's guid and the target's
// listing (TestGrantReads_MatchZfsexecRecv pins them to zfsexec).
func grantReads(o zfsexec.RecvOptions, caps zfsexec.Capabilities) [][]string {
	reads := [][]string{{"zfs", "version"}, {"zpool", "upgrade", "-v"}}
	if o.BaseGUID != 0 && o.BaseName != "" {
		reads = append(reads, []string{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "guid", o.Target + "@" + o.BaseName})
	}
	if o.Incremental || o.BaseGUID != 0 {
		list := []string{"zfs", "get", "-H", "-p", "-d", "1"}
		if caps.Bookmarks {
			list = append(list, "-t", "filesystem,volume,snapshot,bookmark")
		}
		list = append(list, "-o", "name,property,value,source", "type,guid,createtxg,creation,userrefs", o.Target)
		reads = append(reads, list)
	}
	return reads
}

// checkGrantRun decides a run request on a grant connection: one of the
// grant's reads, or its one receive; then, as any request, Policy.Check
// and CheckEffect. Nothing runs for a request the grant does not name.
func (s *Server) checkGrantRun(ctx context.Context, gc *grantConn, argv []string) error {
	if len(argv) >= 2 && argv[0] == "zfs" && argv[1] == "recv" {
		want, err := gc.grant.Recv.Validate()
		if err != nil {
			return refuse("grant %s: %v", gc.keyID, err)
		}
		if !slices.Equal(argv, want) {
			return refuse("grant %s allows only %q, not %q", gc.keyID, want, argv)
		}
		if !gc.recvUsed.CompareAndSwap(false, true) {
			return refuse("grant %s: its one receive was used already", gc.keyID)
		}
		return s.checkRun(ctx, argv)
	}
	if !s.isGrantRead(ctx, gc, argv) {
		return refuse("grant %s does not allow %q", gc.keyID, argv)
	}
	return s.checkRun(ctx, argv)
}

// isGrantRead reports whether argv is one of the grant's reads. The node's
// capabilities are read only for an argv that is one with some
// capabilities.
func (s *Server) isGrantRead(ctx context.Context, gc *grantConn, argv []string) bool {
	candidate := false
	for _, b := range []bool{false, true} {
		for _, r := range grantReads(gc.grant.Recv, zfsexec.Capabilities{Bookmarks: b}) {
			candidate = candidate || slices.Equal(r, argv)
		}
	}
	if !candidate {
		return false
	}
	if !strings.Contains(strings.Join(argv, " "), " -d 1 ") {
		return true // the same with any capabilities
	}
	caps, err := s.zfs.Capabilities(ctx)
	if err != nil {
		return false
	}
	for _, r := range grantReads(gc.grant.Recv, caps) {
		if slices.Equal(r, argv) {
			return true
		}
	}
	return false
}
