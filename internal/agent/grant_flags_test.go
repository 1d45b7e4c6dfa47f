package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGrant_SendFlags: a grant for a raw or a compressed large-block send
// (the flags replication chooses) validates and the source runs exactly
// that send; a request whose flags differ from the granted ones (a
// decrypted send granted raw) is refused before anything runs.
func TestGrant_SendFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(g *Grant)
		argv []string
	}{
		{"Raw", func(g *Grant) { g.Send.Raw = true }, []string{"zfs", "send", "-w", "tank/a@s"}},
		{"CompressedLargeBlocks", func(g *Grant) { g.Send.Compressed, g.Send.LargeBlocks = true, true }, []string{"zfs", "send", "-c", "-L", "tank/a@s"}},
		{"RawIncremental", func(g *Grant) { g.Send.Raw, g.Send.From = true, "@base" }, []string{"zfs", "send", "-w", "-i", "tank/a@base", "tank/a@s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newGrantBed(t)
			c := b.src.dial(t, b.ctrl, ClientConfig{GrantAuthority: b.ctrl})
			g := b.grant()
			tc.set(&g)
			if g.Send.From != "" {
				g.Recv.Incremental, g.Recv.BaseGUID, g.Recv.BaseName = true, 42, "base"
			}
			if err := g.validate(); err != nil {
				t.Fatalf("grant %+v: %v", g.Send, err)
			}
			if _, err := c.Transfer(context.Background(), b.request(g), nil); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(b.srcZFS.argvs(), func(a []string) bool { return slices.Equal(a, tc.argv) }) {
				t.Errorf("source ran %q, want %q", b.srcZFS.argvs(), tc.argv)
			}

			// The same grant does not cover the plain (decrypted) send.
			b = newGrantBed(t)
			c = b.src.dial(t, b.ctrl, ClientConfig{})
			req := b.request(g)
			req.Send.Raw, req.Send.Compressed, req.Send.LargeBlocks = false, false, false
			req.Grant = MarshalPublicKey(issue(t, b.ctrl, b.srcHost.PublicKey(), g, time.Now()))
			_, err := c.Transfer(context.Background(), req, nil)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "send differs") {
				t.Errorf("plain send under a grant for %+v: %v, want refused", g.Send, err)
			}
			if got := append(b.srcZFS.argvs(), b.dstZFS.argvs()...); len(got) > 0 {
				t.Errorf("ran %q, want nothing", got)
			}
		})
	}
}
