package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// logLines captures a logr logger's output as JSON objects.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (l *logLines) logger() logr.Logger {
	return funcr.NewJSON(func(obj string) {
		var m map[string]any
		if json.Unmarshal([]byte(obj), &m) == nil {
			l.mu.Lock()
			l.lines = append(l.lines, m)
			l.mu.Unlock()
		}
	}, funcr.Options{})
}

// audits returns the "audit" records.
func (l *logLines) audits() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, m := range l.lines {
		if m["msg"] == "audit" {
			out = append(out, m)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the server's writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) records(t *testing.T) []auditRecord {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []auditRecord
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit file line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestServer_AuditRefusedRequest: a refused request leaves one audit record
// in the agent's log (and the audit file) with the client key fingerprint,
// the remote address, the argv, outcome "refused" and the refusal reason;
// nothing ran.
func TestServer_AuditRefusedRequest(t *testing.T) {
	key := newSigner(t)
	logs := &logLines{}
	file := &syncBuffer{}
	ts := startServerCfg(t, ServerConfig{Runner: failRunner{t}, Log: logs.logger(), AuditLog: file}, key, nil)
	c := ts.dial(t, key, ClientConfig{})
	argv := []string{"zfs", "snapshot", "vault/x@s"}
	err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: argv})
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("got %v, want a refusal", err)
	}
	fp := ssh.FingerprintSHA256(key.PublicKey())
	recs := logs.audits()
	if len(recs) != 1 {
		t.Fatalf("audit records in the log: %v, want exactly one", recs)
	}
	r := recs[0]
	if r["outcome"] != outcomeRefused || r["fingerprint"] != fp || r["reason"] != refused.Reason {
		t.Errorf("audit record %v: want outcome refused, fingerprint %s, reason %q", r, fp, refused.Reason)
	}
	if remote, _ := r["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Errorf("audit remote = %v, want the client's address", r["remote"])
	}
	if got, _ := json.Marshal(r["argv"]); string(got) != `["zfs","snapshot","vault/x@s"]` {
		t.Errorf("audit argv = %s", got)
	}
	fr := file.records(t)
	if len(fr) != 1 || fr[0].Outcome != outcomeRefused || fr[0].Fingerprint != fp || fr[0].Reason != refused.Reason || fr[0].Time == "" {
		t.Errorf("audit file: %+v", fr)
	}
}

// TestServer_AuditAcceptedRequest: a request that ran is logged when it
// finished, with its exit status; a stream also when accepted.
func TestServer_AuditAcceptedRequest(t *testing.T) {
	key := newSigner(t)
	logs := &logLines{}
	ts := startServerCfg(t, ServerConfig{Runner: echoRunner{}, Log: logs.logger()}, key, nil)
	c := ts.dial(t, key, ClientConfig{})
	if err := c.ZFS().Hold(context.Background(), "z8r-base-x", "tank/a@s"); !errors.Is(err, zfsexec.ErrTagExists) {
		t.Fatalf("hold: %v", err)
	}
	fp := ssh.FingerprintSHA256(key.PublicKey())
	var outcomes []string
	for _, r := range logs.audits() {
		if r["fingerprint"] != fp {
			t.Errorf("record without the client's fingerprint: %v", r)
		}
		if argv, _ := json.Marshal(r["argv"]); !strings.Contains(string(argv), `"hold"`) {
			continue
		}
		outcomes = append(outcomes, r["outcome"].(string))
		if r["outcome"] == outcomeFinished && (r["exitKind"] != kindCommand || r["exitCode"] != float64(1)) {
			t.Errorf("finished record %v: want exit kind command, code 1", r)
		}
	}
	if strings.Join(outcomes, ",") != "finished" {
		t.Errorf("hold audit outcomes %v, want one finished record", outcomes)
	}
	if err := c.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/a"}, Stdin: strings.NewReader("stream")}); err != nil {
		t.Fatalf("recv: %v", err)
	}
	outcomes = nil
	for _, r := range logs.audits() {
		if argv, _ := json.Marshal(r["argv"]); strings.Contains(string(argv), `"recv"`) {
			outcomes = append(outcomes, r["outcome"].(string))
		}
	}
	if strings.Join(outcomes, ",") != "accepted,finished" {
		t.Errorf("recv audit outcomes %v, want accepted then finished", outcomes)
	}
}

// TestServer_AuditRefusedLogin: an unknown key's login is audited with its
// fingerprint and address.
func TestServer_AuditRefusedLogin(t *testing.T) {
	logs := &logLines{}
	ts := startServerCfg(t, ServerConfig{Runner: failRunner{t}, Log: logs.logger()}, newSigner(t), nil)
	stranger := newSigner(t)
	if _, err := Dial(context.Background(), ts.addr, ClientConfig{Signer: stranger, HostKey: ts.hostKey}); err == nil {
		t.Fatal("unknown key logged in")
	}
	recs := logs.audits()
	if len(recs) == 0 || recs[0]["outcome"] != outcomeRefused || recs[0]["fingerprint"] != ssh.FingerprintSHA256(stranger.PublicKey()) || recs[0]["reason"] != "unknown client key" {
		t.Fatalf("audit records %v, want the refused login with the stranger's fingerprint", recs)
	}
}

// TestParseAuthorizedKeys_OptionsRefused: a line with options is an error
// naming the line, not a key accepted without its restriction; so is a
// line that does not parse, anywhere in the file.
func TestParseAuthorizedKeys_OptionsRefused(t *testing.T) {
	k1 := MarshalPublicKey(newSigner(t).PublicKey())
	k2 := MarshalPublicKey(newSigner(t).PublicKey())
	for _, tc := range []struct {
		name, content string
		wantKeys      int
		wantErr       string
	}{
		{name: "plain keys, comments and blanks", content: "# controller\n" + k1 + " controller\n\n  \n" + k2 + "\n", wantKeys: 2},
		{name: "from option", content: k1 + "\nfrom=\"10.0.0.1\" " + k2 + "\n", wantErr: "line 2: options are not supported"},
		{name: "command option", content: "command=\"/bin/true\" " + k1, wantErr: "line 1: options are not supported"},
		{name: "no-pty option", content: "# x\nno-pty,restrict " + k1, wantErr: "line 2: options are not supported"},
		{name: "garbage after a good key", content: k1 + "\nnot a key\n", wantErr: "line 2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseAuthorizedKeys([]byte(tc.content))
			if tc.wantErr == "" {
				if err != nil || len(keys) != tc.wantKeys {
					t.Fatalf("got %d keys, %v; want %d keys", len(keys), err, tc.wantKeys)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %d keys, error %v; want an error containing %q", len(keys), err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, "options") && !errors.Is(err, ErrKeyOptions) {
				t.Errorf("error %v does not match ErrKeyOptions", err)
			}
		})
	}
}

// TestServer_AuthorizedKeysWithOptionsAdmitNobody: an agent whose keys
// file has a line with options refuses every login, loudly (an error in
// its log naming the line), even the key on that line.
func TestServer_AuthorizedKeysWithOptionsAdmitNobody(t *testing.T) {
	key := newSigner(t)
	path := filepath.Join(t.TempDir(), "authorized-keys")
	if err := os.WriteFile(path, []byte("from=\"10.9.9.9\" "+MarshalPublicKey(key.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	ts := startServerCfg(t, ServerConfig{Runner: failRunner{t}, AuthorizedKeys: AuthorizedKeysFile(path), Log: logs.logger()}, key, nil)
	if _, err := Dial(context.Background(), ts.addr, ClientConfig{Signer: key, HostKey: ts.hostKey}); err == nil {
		t.Fatal("a key restricted by an option the agent ignores logged in")
	}
	found := false
	logs.mu.Lock()
	for _, m := range logs.lines {
		if e, _ := m["error"].(string); strings.Contains(e, "line 1") && strings.Contains(e, "options are not supported") {
			found = true
		}
	}
	logs.mu.Unlock()
	if !found {
		t.Errorf("no error naming the line in the log: %v", logs.lines)
	}
}
