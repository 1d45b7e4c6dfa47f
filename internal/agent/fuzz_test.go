package agent

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/z8r-project/z8r/zfsexec"
)

var fuzzPolicy = Policy{Pools: []string{"tank"}}

// FuzzDecodeRunRequest: what a client puts in a ChanRun's extra data.
// Decoding never panics; an accepted payload has a bounded, UTF-8, NUL-free
// argv and encodes back to a payload that decodes to the same request; an
// argv the policy then allows runs zfs or zpool on the allowed pool only.
func FuzzDecodeRunRequest(f *testing.F) {
	for _, s := range []string{
		`{"argv":["zfs","snapshot","tank/a@s"]}`,
		`{"argv":["zfs","recv","-u","tank/a"],"dataConn":true}`,
		`{"argv":["zfs","get","-H","-p","-o","name,property,value,source","guid","tank"]}`,
		`{"argv":["sh","-c","id"]}`, `{"argv":[]}`, `{"argv":null}`, `null`, `[]`, `{}`, ``,
		`{"argv":["zfs"],"extra":1}`, `{"argv":["zfs","list"]} {"argv":["x"]}`, `{"argv":["zfs","snapshot","tank/a\u0000@s"]}`,
		`{"ARGV":["zfs","version"]}`, `{"argv":["zfs","destroy","-r","tank"]}`, "{\"argv\":[\"\xff\"]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRunRequest(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("decode error %v is not errMalformed", err)
			}
			return
		}
		if len(b) > maxPayload || len(req.Argv) == 0 || len(req.Argv) > maxArgs {
			t.Fatalf("accepted %d bytes with %d arguments", len(b), len(req.Argv))
		}
		for _, a := range req.Argv {
			if len(a) > maxArgLen || !utf8.ValidString(a) || strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("accepted argument %q", a)
			}
		}
		again, err := decodeRunRequest(mustJSON(req))
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", req, again, err)
		}
		if fuzzPolicy.Check(req.Argv) != nil {
			return
		}
		if req.Argv[0] != "zfs" && req.Argv[0] != "zpool" {
			t.Fatalf("policy allowed %q", req.Argv)
		}
		for _, a := range req.Argv[1:] {
			if strings.ContainsAny(a, "\n\r;|&`$") {
				t.Fatalf("policy allowed argument %q in %q", a, req.Argv)
			}
		}
	})
}

// FuzzDecodeTransferRequest: a ChanTransfer's extra data. Decoding never
// panics; a request that passes the node-independent checks sends a valid
// snapshot of the allowed pool to a valid dataset, and survives a
// re-encoding unchanged.
func FuzzDecodeTransferRequest(f *testing.F) {
	hk := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	for _, s := range []string{
		`{"send":{"Snapshot":"tank/a@s2","From":"@s1"},"targetAddr":"10.0.0.2:2022","targetHostKey":"` + hk + `","recv":{"Target":"tank/a","Unmounted":true}}`,
		`{"send":{"Snapshot":"vault/a@s"},"targetAddr":"x:1","targetHostKey":"k","recv":{"Target":"tank/a"}}`,
		`{"send":{"Snapshot":"tank/a@s","From":"other/b@s0"},"targetAddr":"x:1","targetHostKey":"k","recv":{"Target":"tank/a"}}`,
		`{"send":{"Snapshot":"tank/a@s"},"targetAddr":"","targetHostKey":"","recv":{"Target":"../x"}}`,
		`{"send":{"Snapshot":"tank/a@s","Bogus":true}}`, `{}`, `null`, `{"send":1}`,
		`{"send":{"Snapshot":"tank/a@s"},"targetAddr":"10.0.0.2:2022","targetHostKey":"` + hk + `","recv":{"Target":"tank/a","Unmounted":true},"grant":"ssh-ed25519-cert-v01@openssh.com AAAA"}`,
		`{"send":{"Snapshot":"tank/a@s"},"targetAddr":"x:1","targetHostKey":"k","recv":{"Target":"tank/a"},"grant":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeTransferRequest(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("decode error %v is not errMalformed", err)
			}
			return
		}
		again, err := decodeTransferRequest(mustJSON(req))
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", req, again, err)
		}
		if checkTransferRequest(fuzzPolicy, req) != nil {
			return
		}
		if req.TargetAddr == "" || req.TargetHostKey == "" {
			t.Fatalf("accepted a transfer without target: %+v", req)
		}
		if err := zfsexec.ValidateDataset(req.Recv.Target); err != nil {
			t.Fatalf("accepted receive into %q: %v", req.Recv.Target, err)
		}
		if req.Send.ResumeToken != "" {
			return // what a token names is checked when it is decoded (resume.go)
		}
		if err := zfsexec.ValidateSnapshot(req.Send.Snapshot); err != nil || !strings.HasPrefix(req.Send.Snapshot, "tank/") && !strings.HasPrefix(req.Send.Snapshot, "tank@") {
			t.Fatalf("accepted send of %q (%v)", req.Send.Snapshot, err)
		}
		if req.Send.From != "" && !strings.HasPrefix(req.Send.From, "@") && !strings.HasPrefix(req.Send.From, "#") &&
			!strings.HasPrefix(req.Send.From, "tank/") && !strings.HasPrefix(req.Send.From, "tank@") && !strings.HasPrefix(req.Send.From, "tank#") {
			t.Fatalf("accepted incremental source %q outside the pool", req.Send.From)
		}
	})
}

// FuzzExitStatus: the status a client decodes from an agent (which may be
// hostile). It never panics; the error it yields is nil exactly when the
// kind is empty, and a known kind keeps its meaning through the
// error-to-status round trip the agent uses.
func FuzzExitStatus(f *testing.F) {
	for _, s := range []string{`{}`, `{"kind":"command","argv":["zfs","hold"],"code":1,"stderr":"cannot hold"}`,
		`{"kind":"refused","message":"no"}`, `{"kind":"stalled","message":"x"}`, `{"kind":"output-limit"}`,
		`{"kind":"timeout"}`, `{"kind":"hostkey"}`, `{"kind":"weird","message":"\u001b[2J"}`, `{"kind":"base-missing"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st exitStatus
		if json.Unmarshal(b, &st) != nil {
			return
		}
		err := errorFromStatus(st)
		if (err == nil) != (st.Kind == "") {
			t.Fatalf("status %+v gives error %v", st, err)
		}
		if err == nil {
			return
		}
		_ = err.Error()
		back := statusFromError(err)
		switch st.Kind {
		case kindCommand, kindRefused, kindHostKey, kindUnreachable, kindBaseMissing, kindUnsupported,
			kindOutputLimit, kindTimeout, kindStalled:
			if back.Kind != st.Kind {
				t.Fatalf("kind %q came back as %q", st.Kind, back.Kind)
			}
		}
	})
}

// FuzzGrantDecode: the grant a certificate's critical option carries
// (signed by the controller, but decoded by agents that must not crash on
// anything). Decoding never panics; every error is ErrGrant; an accepted
// grant names a target, a valid host key, a valid send and receive, and
// survives a re-encoding unchanged.
func FuzzGrantDecode(f *testing.F) {
	hk := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	for _, s := range []string{
		`{"send":{"Snapshot":"tank/a@s2","From":"@s1"},"recv":{"Target":"tank/a","Unmounted":true,"Incremental":true,"BaseGUID":42,"BaseName":"s1"},"targetAddr":"10.0.0.2:2022","targetHostKey":"` + hk + `"}`,
		`{"send":{"Snapshot":"tank/a@s"},"recv":{"Target":"tank/a","SetProps":{"readonly":"on"},"ExcludeProps":["mountpoint"]},"targetAddr":"x:1","targetHostKey":"` + hk + `"}`,
		`{"send":{"Snapshot":"tank/a@s"},"recv":{"Target":"tank/a"},"targetAddr":"x:1","targetHostKey":"k"}`,
		`{"send":{"Snapshot":"tank/a@s"},"recv":{"Target":"../a"},"targetAddr":"x:1","targetHostKey":"` + hk + `"}`,
		`{"send":{"Snapshot":"tank/a@s"},"recv":{"Target":"tank/a"},"targetAddr":"","targetHostKey":"` + hk + `"}`,
		`{"send":{"Snapshot":"tank/a@s"},"recv":{"Target":"tank/a"},"targetAddr":"x:1","targetHostKey":"` + hk + `","extra":1}`,
		`{}`, `null`, `[]`, `{"send":{}} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeGrant(b)
		if err != nil {
			if !errors.Is(err, ErrGrant) {
				t.Fatalf("decode error %v is not ErrGrant", err)
			}
			return
		}
		if g.TargetAddr == "" {
			t.Fatalf("accepted a grant without a target address: %+v", g)
		}
		if _, err := g.targetHostKey(); err != nil {
			t.Fatalf("accepted a grant with host key %q: %v", g.TargetHostKey, err)
		}
		if _, err := g.Send.Validate(); err != nil {
			t.Fatalf("accepted send %+v: %v", g.Send, err)
		}
		if _, err := g.Recv.Validate(); err != nil {
			t.Fatalf("accepted receive %+v: %v", g.Recv, err)
		}
		again, err := decodeGrant(mustJSON(g))
		if err != nil || !reflect.DeepEqual(again, g) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", g, again, err)
		}
	})
}
