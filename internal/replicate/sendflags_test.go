package replicate

import (
	"errors"
	"testing"

	"github.com/z8r-project/z8r/zfsexec"
)

// TestChooseEncoding: an encrypted source goes raw or not at all (unless
// decrypted sends are allowed); an unencrypted one compressed with large
// blocks where both nodes can; embedded blocks never.
func TestChooseEncoding(t *testing.T) {
	oz := zfsexec.Capabilities{Implementation: zfsexec.ImplOpenZFS, Version: "2.3.2", RawSend: true, CompressedSend: true}
	oz07 := zfsexec.Capabilities{Implementation: zfsexec.ImplOpenZFS, Version: "0.7.13", CompressedSend: true}
	fuse := zfsexec.Capabilities{Implementation: zfsexec.ImplZFSFuse, Version: "pool-v23"}
	raw := encoding{raw: true}
	comp := encoding{compressed: true, largeBlocks: true}
	tests := []struct {
		name                        string
		encrypted, replicaDecrypted bool
		src, tgt                    zfsexec.Capabilities
		allow                       bool
		want                        encoding
		refused                     bool
	}{
		{name: "plain openzfs to openzfs", src: oz, tgt: oz, want: comp},
		{name: "plain openzfs to old openzfs", src: oz, tgt: oz07, want: comp},
		{name: "plain openzfs to zfs-fuse", src: oz, tgt: fuse, want: encoding{}},
		{name: "plain zfs-fuse to openzfs", src: fuse, tgt: oz, want: encoding{}},
		{name: "plain zfs-fuse to zfs-fuse", src: fuse, tgt: fuse, want: encoding{}},
		{name: "plain, decrypted sends allowed: no difference", src: oz, tgt: oz, allow: true, want: comp},
		{name: "encrypted to openzfs: raw", encrypted: true, src: oz, tgt: oz, want: raw},
		{name: "encrypted, allowed decrypted, raw possible: still raw", encrypted: true, src: oz, tgt: oz, allow: true, want: raw},
		{name: "encrypted to zfs-fuse: refused", encrypted: true, src: oz, tgt: fuse, refused: true},
		{name: "encrypted to old openzfs: refused", encrypted: true, src: oz, tgt: oz07, refused: true},
		{name: "encrypted, source without raw: refused", encrypted: true, src: oz07, tgt: oz, refused: true},
		{name: "encrypted to zfs-fuse, allowed: decrypted, plain", encrypted: true, src: oz, tgt: fuse, allow: true, want: encoding{}},
		{name: "encrypted to old openzfs, allowed: decrypted, compressed", encrypted: true, src: oz, tgt: oz07, allow: true, want: comp},
		{name: "encrypted onto a replica received decrypted: refused", encrypted: true, replicaDecrypted: true, src: oz, tgt: oz, refused: true},
		{name: "encrypted onto a replica received decrypted, allowed: decrypted", encrypted: true, replicaDecrypted: true, src: oz, tgt: oz, allow: true, want: comp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseEncoding(tt.encrypted, tt.replicaDecrypted, tt.src, tt.tgt, tt.allow)
			if tt.refused {
				if !errors.Is(err, ErrEncryptedNeedsRaw) {
					t.Fatalf("chooseEncoding = %+v, %v; want ErrEncryptedNeedsRaw", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("chooseEncoding = %+v, %v; want %+v", got, err, tt.want)
			}
			// Every choice is an argv both nodes accept.
			o := got.apply(zfsexec.SendOptions{Snapshot: "tank/a@s2", From: "@s1"})
			for _, c := range []zfsexec.Capabilities{tt.src, tt.tgt} {
				if _, err := o.Argv(c); err != nil {
					t.Errorf("%+v on %s: %v", o, c, err)
				}
			}
		})
	}
}

// TestEncodingApply: the flags land on a send; a resume takes none (the
// token carries the interrupted send's).
func TestEncodingApply(t *testing.T) {
	e := encoding{compressed: true, largeBlocks: true}
	got := e.apply(zfsexec.SendOptions{Snapshot: "tank/a@s2", From: "#b"})
	if want := (zfsexec.SendOptions{Snapshot: "tank/a@s2", From: "#b", Compressed: true, LargeBlocks: true}); got != want {
		t.Errorf("apply = %+v, want %+v", got, want)
	}
	argv, err := got.Validate()
	if err != nil || len(argv) != 7 || argv[2] != "-c" || argv[3] != "-L" {
		t.Errorf("argv %q, %v; want zfs send -c -L -i tank/a#b tank/a@s2", argv, err)
	}
	tok := zfsexec.SendOptions{ResumeToken: "1-abc-def"}
	if got := (encoding{raw: true}).apply(tok); got != tok {
		t.Errorf("apply to a resume = %+v, want it unchanged", got)
	}
	for _, v := range []struct {
		value string
		want  bool
	}{{"off", false}, {"", false}, {"-", false}, {"on", true}, {"aes-256-gcm", true}, {"aes-128-ccm", true}} {
		if got := isEncrypted(v.value); got != v.want {
			t.Errorf("isEncrypted(%q) = %v", v.value, got)
		}
	}
}
