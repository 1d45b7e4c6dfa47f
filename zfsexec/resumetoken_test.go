package zfsexec

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureToken reads the token column of a `zfs get -Hp -o
// name,property,value,source receive_resume_token` capture.
func fixtureToken(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "openzfs-2.3", name))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "\t")
	if len(f) != 4 || f[1] != "receive_resume_token" {
		t.Fatalf("%s: unexpected fixture %q", name, b)
	}
	return f[2]
}

// sendNVTFixture is a real token with what `zfs send -nvt TOKEN` printed for
// it in the OpenZFS guest (testdata/openzfs-2.3/send-nvt-*.txt: the token on
// the first line, the output after it).
func sendNVTFixture(t testing.TB, name string) (token string, nvt map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "openzfs-2.3", name))
	if err != nil {
		t.Fatal(err)
	}
	token, out, _ := strings.Cut(string(b), "\n")
	return token, parseSendNVT(out)
}

func TestDecodeResumeToken_RealFull(t *testing.T) {
	tok, err := DecodeResumeToken(fixtureToken(t, "get-Hp-receive-resume-token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// Values read off the packed nvlist by hand (and printed by
	// `zfs send -nvt` for tokens of the same shape).
	want := ResumeToken{Version: 1, ToName: "tank/data@s1", ToGUID: 0x262ecbd9084f234e,
		Object: 2, Offset: 0x3c0000, Bytes: 0x3e2fc8}
	got := tok
	got.Fields = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v\nwant     %+v", got, want)
	}
	if tok.IsIncremental() {
		t.Error("full stream token reported incremental")
	}
	if tok.Fields["toguid"] != "0x262ecbd9084f234e" || tok.Fields["toname"] != "tank/data@s1" {
		t.Errorf("Fields = %v", tok.Fields)
	}
}

// TestDecodeResumeToken_MatchesSendNVT compares the decoder with OpenZFS's
// own decoding of tokens captured in the guest (full and incremental).
func TestDecodeResumeToken_MatchesSendNVT(t *testing.T) {
	for _, name := range []string{"send-nvt-full.txt", "send-nvt-incremental.txt", "send-nvt-flags.txt"} {
		t.Run(name, func(t *testing.T) {
			token, nvt := sendNVTFixture(t, name)
			tok, err := DecodeResumeToken(token)
			if err != nil {
				t.Fatal(err)
			}
			if len(nvt) < 5 {
				t.Fatalf("fixture has only %v", nvt)
			}
			for k, v := range nvt {
				if tok.Fields[k] != v {
					t.Errorf("%s = %q, zfs send -nvt says %q", k, tok.Fields[k], v)
				}
			}
			for k := range tok.Fields {
				if _, ok := nvt[k]; !ok {
					t.Errorf("decoded %s, which zfs send -nvt does not print", k)
				}
			}
			if wantInc := strings.Contains(name, "incremental"); tok.IsIncremental() != wantInc {
				t.Errorf("IsIncremental = %v", tok.IsIncremental())
			}
		})
	}
}

// packToken builds a version-1 token around a packed nvlist, with a correct
// checksum, so the tests can craft payloads.
func packToken(packed []byte) string {
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(packed)
	w.Close()
	return fmt.Sprintf("1-%x-%x-%s", fletcher4First(z.Bytes()), len(packed), hex.EncodeToString(z.Bytes()))
}

// nvBuilder writes a little-endian native nvlist.
type nvBuilder struct{ b []byte }

func newNV() *nvBuilder { return &nvBuilder{b: []byte{0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}} }

func (n *nvBuilder) pair(name string, typ, nelem int32, val []byte) *nvBuilder {
	hdr := align8(16 + len(name) + 1)
	size := hdr + align8(len(val))
	p := make([]byte, size)
	binary.LittleEndian.PutUint32(p, uint32(size))
	binary.LittleEndian.PutUint16(p[4:], uint16(len(name)+1))
	binary.LittleEndian.PutUint32(p[8:], uint32(nelem))
	binary.LittleEndian.PutUint32(p[12:], uint32(typ))
	copy(p[16:], name)
	copy(p[hdr:], val)
	n.b = append(n.b, p...)
	return n
}

func (n *nvBuilder) u64(name string, v uint64) *nvBuilder {
	return n.pair(name, nvUint64, 1, binary.LittleEndian.AppendUint64(nil, v))
}

func (n *nvBuilder) str(name, v string) *nvBuilder {
	return n.pair(name, nvString, 1, append([]byte(v), 0))
}

func (n *nvBuilder) flag(name string) *nvBuilder { return n.pair(name, nvBoolean, 0, nil) }

func (n *nvBuilder) end() []byte { return append(n.b, 0, 0, 0, 0) }

func validNV() *nvBuilder {
	return newNV().u64("fromguid", 7).u64("object", 1).u64("offset", 2).u64("bytes", 3).
		u64("toguid", 9).str("toname", "tank/a@b")
}

func TestDecodeResumeToken_Crafted(t *testing.T) {
	tok, err := DecodeResumeToken(packToken(validNV().flag("compressok").flag("largeblockok").
		flag("embedok").flag("rawok").pair("redact_snaps", nvUint64Array, 2, make([]byte, 16)).end()))
	if err != nil {
		t.Fatal(err)
	}
	if tok.FromGUID != 7 || tok.ToGUID != 9 || tok.ToName != "tank/a@b" || !tok.CompressOK ||
		!tok.LargeBlockOK || !tok.EmbedOK || !tok.RawOK || tok.SavedOK || !tok.IsIncremental() {
		t.Errorf("decoded %+v", tok)
	}
	if tok.Fields["redact_snaps"] != "0x0 0x0" {
		t.Errorf("redact_snaps = %q", tok.Fields["redact_snaps"])
	}
}

func TestDecodeResumeToken_Invalid(t *testing.T) {
	real := fixtureToken(t, "get-Hp-receive-resume-token.txt")
	f := strings.Split(real, "-")
	flip := []byte(f[3])
	if flip[10] == '0' {
		flip[10] = '1'
	} else {
		flip[10] = '0'
	}
	cases := []struct {
		name, token string
	}{
		{"empty", ""},
		{"three fields", "1-abc-def"},
		{"five fields", real + "-00"},
		{"version 2", "2-" + strings.Join(f[1:], "-")},
		{"version not number", "x-" + strings.Join(f[1:], "-")},
		{"checksum off by one", f[0] + "-9a82b66e4-" + f[2] + "-" + f[3]},
		{"payload byte flipped", f[0] + "-" + f[1] + "-" + f[2] + "-" + string(flip)},
		{"payload odd hex", f[0] + "-" + f[1] + "-" + f[2] + "-" + f[3] + "0"},
		{"payload not hex", f[0] + "-" + f[1] + "-" + f[2] + "-zz" + f[3][2:]},
		{"packed length too small", f[0] + "-" + f[1] + "-b7-" + f[3]},
		{"packed length too large", f[0] + "-" + f[1] + "-b9-" + f[3]},
		{"packed length huge", f[0] + "-" + f[1] + "-ffffffffffffffff-" + f[3]},
		{"packed length zero", f[0] + "-" + f[1] + "-0-" + f[3]},
		{"too long", "1-0-10-" + strings.Repeat("00", maxResumeTokenLen)},
		{"not zlib", packTokenRaw([]byte("not zlib at all"), 10)},
		{"no terminator", packToken(validNV().b)},
		{"bytes after terminator", packToken(append(validNV().end(), 0, 0, 0, 0))},
		{"xdr encoding", packToken(append([]byte{1, 1, 0, 0}, validNV().end()[4:]...))},
		{"no toguid", packToken(newNV().str("toname", "tank/a@b").end())},
		{"no toname", packToken(newNV().u64("toguid", 9).end())},
		{"toname not a snapshot", packToken(newNV().u64("toguid", 9).str("toname", "tank/a").end())},
		{"toname an option", packToken(newNV().u64("toguid", 9).str("toname", "-R@x").end())},
		{"toguid a string", packToken(newNV().str("toguid", "9").str("toname", "tank/a@b").end())},
		{"toname a uint64", packToken(newNV().u64("toguid", 9).u64("toname", 1).end())},
		{"duplicate toguid", packToken(validNV().u64("toguid", 10).end())},
		{"nested nvlist", packToken(validNV().pair("x", 19, 1, make([]byte, 24)).end())},
		{"string unterminated", packToken(validNV().pair("s", nvString, 1, []byte("abcdefgh")).end())},
		{"array too long", packToken(validNV().pair("a", nvUint64Array, 1000, make([]byte, 8)).end())},
		{"array negative", packToken(validNV().pair("a", nvUint64Array, -1, nil).end())},
		{"uint64 truncated", packToken(validNV().pair("u", nvUint64, 1, nil).end())},
		{"boolean value 2", packToken(validNV().pair("rawok", nvBooleanValue, 1, []byte{2, 0, 0, 0}).end())},
		{"pair size not aligned", packToken(func() []byte {
			b := validNV().end()
			b[12] = 33
			return b
		}())},
		{"pair size beyond end", packToken(func() []byte {
			b := validNV().end()
			b[12], b[13] = 0, 1
			return b
		}())},
		{"name size zero", packToken(func() []byte {
			b := validNV().end()
			b[16] = 0
			return b
		}())},
		{"too many pairs", packToken(func() []byte {
			n := validNV()
			for i := 0; i <= maxNVPairs; i++ {
				n.flag(fmt.Sprint("f", i))
			}
			return n.end()
		}())},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeResumeToken(c.token)
			if !errors.Is(err, ErrInvalidResumeToken) {
				t.Errorf("err = %v, want ErrInvalidResumeToken", err)
			}
		})
	}
}

// packTokenRaw wraps arbitrary "compressed" bytes with a correct checksum.
func packTokenRaw(compressed []byte, packedLen int) string {
	return fmt.Sprintf("1-%x-%x-%s", fletcher4First(compressed), packedLen, hex.EncodeToString(compressed))
}

func TestFletcher4First_IgnoresPartialWord(t *testing.T) {
	cases := []struct {
		in   []byte
		want uint64
	}{
		{nil, 0},
		{[]byte{1, 0, 0, 0}, 1},
		{[]byte{1, 0, 0, 0, 0xff}, 1},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x1fffffffe},
	}
	for _, c := range cases {
		if got := fletcher4First(c.in); got != c.want {
			t.Errorf("fletcher4First(%x) = %x, want %x", c.in, got, c.want)
		}
	}
}

func FuzzDecodeResumeToken(f *testing.F) {
	f.Add(fixtureToken(f, "get-Hp-receive-resume-token.txt"))
	for _, name := range []string{"send-nvt-full.txt", "send-nvt-incremental.txt", "send-nvt-flags.txt"} {
		token, _ := sendNVTFixture(f, name)
		f.Add(token)
	}
	f.Add(packToken(validNV().flag("compressok").end()))
	f.Add("1-0-0-")
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := DecodeResumeToken(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidResumeToken) {
				t.Fatalf("error %v does not match ErrInvalidResumeToken", err)
			}
			return
		}
		if tok.ToGUID == 0 || ValidateSnapshot(tok.ToName) != nil {
			t.Fatalf("accepted token without a valid target: %+v", tok)
		}
	})
}

// parseSendNVT reads the "\tname = value" lines of `zfs send -nvt` output
// (nvlist_print of the token); a line "\tname" alone is a boolean.
func parseSendNVT(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		k, v, _ := strings.Cut(strings.TrimSpace(line), " = ")
		m[k] = v
	}
	return m
}

// FuzzDecodeResumeTokenPayload fuzzes the packed nvlist behind a valid
// envelope (checksum, zlib, length), which random tokens rarely reach;
// seeds are the real tokens' payloads.
func FuzzDecodeResumeTokenPayload(f *testing.F) {
	seed := func(token string) {
		parts := strings.Split(token, "-")
		compressed, err := hex.DecodeString(parts[3])
		if err != nil {
			f.Fatal(err)
		}
		r, err := zlib.NewReader(bytes.NewReader(compressed))
		if err != nil {
			f.Fatal(err)
		}
		packed, err := io.ReadAll(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(packed)
	}
	seed(fixtureToken(f, "get-Hp-receive-resume-token.txt"))
	for _, name := range []string{"send-nvt-full.txt", "send-nvt-incremental.txt", "send-nvt-flags.txt"} {
		token, _ := sendNVTFixture(f, name)
		seed(token)
	}
	f.Add(validNV().pair("redact_snaps", nvUint64Array, 2, make([]byte, 16)).end())
	f.Fuzz(func(t *testing.T, packed []byte) {
		if len(packed) == 0 || len(packed) > maxResumeTokenPacked {
			return
		}
		tok, err := DecodeResumeToken(packToken(packed))
		if err != nil {
			if !errors.Is(err, ErrInvalidResumeToken) {
				t.Fatalf("error %v does not match ErrInvalidResumeToken", err)
			}
			return
		}
		if tok.ToGUID == 0 || ValidateSnapshot(tok.ToName) != nil {
			t.Fatalf("accepted token without a valid target: %+v", tok)
		}
	})
}
