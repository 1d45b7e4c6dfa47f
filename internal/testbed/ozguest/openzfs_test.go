//go:build platform

package ozguest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestOpenZFS checks the OpenZFS-only features z8r relies on, on two real
// OpenZFS guests (src and dst, each with a pool named tank); streams go from
// one guest to the other through the host.
func TestOpenZFS(t *testing.T) {
	gs := BootN(t, 2, Options{})
	src, dst := gs[0].Runner(), gs[1].Runner()
	for _, g := range gs {
		run(t, g.Runner(), "zpool", "create", "-f", "tank", g.Disk(0))
	}

	t.Run("Version", func(t *testing.T) {
		out := run(t, src, "zfs", "version")
		if !regexp.MustCompile(`(?m)^zfs-2\.3\.\d+`).MatchString(out) || !regexp.MustCompile(`(?m)^zfs-kmod-2\.3\.\d+`).MatchString(out) {
			t.Fatalf("zfs version:\n%s", out)
		}
		caps, err := zfsexec.DetectCapabilities(context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		if caps.Implementation != zfsexec.ImplOpenZFS || !strings.HasPrefix(caps.Version, "2.3.") ||
			!caps.Bookmarks || !caps.ResumableRecv || !caps.RawSend || !caps.CompressedSend || !caps.HoldsList {
			t.Fatalf("capabilities %s", caps)
		}
		t.Logf("%s", caps)
	})

	t.Run("IncrementalFromBookmark", func(t *testing.T) {
		run(t, src, "zfs", "create", "tank/bm")
		fill(t, src, "/tank/bm/a", 8)
		run(t, src, "zfs", "snapshot", "tank/bm@s1")
		run(t, src, "zfs", "bookmark", "tank/bm@s1", "tank/bm#b1")
		mustTransfer(t, src, []string{"zfs", "send", "tank/bm@s1"}, dst, []string{"zfs", "recv", "-u", "tank/bm"})
		// The base snapshot goes away on the source; the bookmark remains.
		run(t, src, "zfs", "destroy", "tank/bm@s1")
		fill(t, src, "/tank/bm/b", 8)
		run(t, src, "zfs", "snapshot", "tank/bm@s2")
		if got, want := prop(t, src, "tank/bm#b1", "guid"), prop(t, dst, "tank/bm@s1", "guid"); got != want {
			t.Fatalf("bookmark guid %s, received snapshot guid %s", got, want)
		}
		mustTransfer(t, src, []string{"zfs", "send", "-i", "tank/bm#b1", "tank/bm@s2"}, dst, []string{"zfs", "recv", "-u", "tank/bm"})
		if got, want := prop(t, dst, "tank/bm@s2", "guid"), prop(t, src, "tank/bm@s2", "guid"); got != want {
			t.Fatalf("received @s2 guid %s, source %s", got, want)
		}
	})

	t.Run("InterruptedReceive", func(t *testing.T) {
		run(t, src, "zfs", "create", "tank/rs")
		fill(t, src, "/tank/rs/a", 48)
		run(t, src, "zfs", "snapshot", "tank/rs@s1")
		want := prop(t, src, "tank/rs@s1", "guid")
		send := []string{"zfs", "send", "tank/rs@s1"}

		// interrupt kills the sender after 8 MiB of a ~48 MiB stream into
		// a resumable receive and returns the target's resume token.
		interrupt := func(t *testing.T, target string) string {
			t.Helper()
			n, sendErr, recvErr := transfer(context.Background(), src, send, dst, []string{"zfs", "recv", "-s", "-u", target}, 8<<20)
			if !errors.Is(sendErr, context.Canceled) {
				t.Fatalf("sender: want cancellation, got %v", sendErr)
			}
			var ce *zfsexec.CommandError
			if !errors.As(recvErr, &ce) || !strings.Contains(ce.Stderr, "Partially received snapshot is saved") {
				t.Fatalf("receiver after %d bytes: %v", n, recvErr)
			}
			tok := prop(t, dst, target, "receive_resume_token")
			if !resumeTokenRE.MatchString(tok) {
				t.Fatalf("receive_resume_token of %s = %q", target, tok)
			}
			return tok
		}

		t.Run("resumed with send -t", func(t *testing.T) {
			tok := interrupt(t, "tank/rs")
			mustTransfer(t, src, []string{"zfs", "send", "-t", tok}, dst, []string{"zfs", "recv", "-s", "-u", "tank/rs"})
			if got := prop(t, dst, "tank/rs@s1", "guid"); got != want {
				t.Fatalf("resumed snapshot guid %s, source %s", got, want)
			}
			if tok := prop(t, dst, "tank/rs", "receive_resume_token"); tok != "-" {
				t.Fatalf("token left after resume: %q", tok)
			}
		})
		t.Run("aborted with recv -A", func(t *testing.T) {
			interrupt(t, "tank/ra")
			run(t, dst, "zfs", "recv", "-A", "tank/ra")
			ce := runFail(t, dst, "zfs", "get", "-Hp", "-o", "value", "receive_resume_token", "tank/ra")
			if !errors.Is(ce, zfsexec.ErrDatasetNotExist) {
				t.Fatalf("after recv -A: %v", ce)
			}
			// The target is free for a fresh full receive.
			mustTransfer(t, src, send, dst, []string{"zfs", "recv", "-u", "tank/ra"})
			if got := prop(t, dst, "tank/ra@s1", "guid"); got != want {
				t.Fatalf("guid %s, source %s", got, want)
			}
		})
	})

	t.Run("RawSendOfEncryptedDataset", func(t *testing.T) {
		run(t, src, "dd", "if=/dev/urandom", "of=/run/enc.key", "bs=32", "count=1", "status=none")
		run(t, src, "zfs", "create", "-o", "encryption=aes-256-gcm", "-o", "keyformat=raw",
			"-o", "keylocation=file:///run/enc.key", "tank/enc")
		fill(t, src, "/tank/enc/a", 4)
		run(t, src, "zfs", "snapshot", "tank/enc@s1")
		mustTransfer(t, src, []string{"zfs", "send", "-w", "tank/enc@s1"}, dst, []string{"zfs", "recv", "-u", "tank/encrx"})
		if got := prop(t, dst, "tank/encrx", "keystatus"); got != "unavailable" {
			t.Fatalf("keystatus %q, want unavailable", got)
		}
		if got := prop(t, dst, "tank/encrx", "encryption"); got != "aes-256-gcm" {
			t.Fatalf("encryption %q", got)
		}
		// With the key the replica opens and holds the same data.
		key := run(t, src, "cat", "/run/enc.key")
		if err := dst.Run(context.Background(), zfsexec.Command{
			Argv: []string{"dd", "of=/run/enc.key", "status=none"}, Stdin: strings.NewReader(key),
		}); err != nil {
			t.Fatal(err)
		}
		run(t, dst, "zfs", "load-key", "-L", "file:///run/enc.key", "tank/encrx")
		run(t, dst, "zfs", "mount", "tank/encrx")
		if a, b := run(t, src, "sha256sum", "/tank/enc/a"), run(t, dst, "sha256sum", "/tank/encrx/a"); strings.Fields(a)[0] != strings.Fields(b)[0] {
			t.Fatalf("data differs: %s / %s", a, b)
		}
	})

	t.Run("CompressedSend", func(t *testing.T) {
		run(t, src, "zfs", "create", "-o", "compression=lz4", "tank/comp")
		text := bytes.Repeat([]byte("z8r compressible line of text 0123456789\n"), (16<<20)/41)
		if err := src.Run(context.Background(), zfsexec.Command{
			Argv: []string{"dd", "of=/tank/comp/a", "bs=1M", "status=none"}, Stdin: bytes.NewReader(text),
		}); err != nil {
			t.Fatal(err)
		}
		run(t, src, "zfs", "snapshot", "tank/comp@s1")
		var plain countingWriter
		if err := src.Run(context.Background(), zfsexec.Command{Argv: []string{"zfs", "send", "tank/comp@s1"}, Stdout: &plain}); err != nil {
			t.Fatal(err)
		}
		n := mustTransfer(t, src, []string{"zfs", "send", "-c", "tank/comp@s1"}, dst, []string{"zfs", "recv", "-u", "tank/comp"})
		t.Logf("stream of %d bytes of text: plain %d bytes, -c %d bytes", len(text), plain.n, n)
		if n*4 > plain.n {
			t.Fatalf("compressed stream %d bytes is not much smaller than the plain one (%d)", n, plain.n)
		}
		if got, want := prop(t, dst, "tank/comp@s1", "guid"), prop(t, src, "tank/comp@s1", "guid"); got != want {
			t.Fatalf("guid %s, source %s", got, want)
		}
		if got := prop(t, dst, "tank/comp", "compression"); got != "lz4" && got != "on" {
			t.Logf("received compression property %q (not sent without -p)", got)
		}
	})

	t.Run("Holds", func(t *testing.T) {
		run(t, src, "zfs", "create", "tank/h")
		run(t, src, "zfs", "snapshot", "tank/h@s1")
		run(t, src, "zfs", "hold", "z8r-target-b", "tank/h@s1")
		run(t, src, "zfs", "hold", "keep", "tank/h@s1")
		argv := []string{"zfs", "holds", "-H", "tank/h@s1"}
		holds, err := zfsexec.ParseHolds(argv, run(t, src, argv...))
		if err != nil {
			t.Fatal(err)
		}
		if tags := strings.Join(holds["tank/h@s1"], ","); tags != "keep,z8r-target-b" && tags != "z8r-target-b,keep" {
			t.Fatalf("holds %v", holds)
		}
		ce := runFail(t, src, "zfs", "destroy", "tank/h@s1")
		if !errors.Is(ce, zfsexec.ErrDatasetBusy) {
			t.Fatalf("destroy of a held snapshot: %v", ce)
		}
		run(t, src, "zfs", "destroy", "-d", "tank/h@s1")
		run(t, src, "zfs", "release", "keep", "tank/h@s1")
		run(t, src, "zfs", "release", "z8r-target-b", "tank/h@s1")
		if ce := runFail(t, src, "zfs", "get", "guid", "tank/h@s1"); !errors.Is(ce, zfsexec.ErrDatasetNotExist) {
			t.Fatalf("deferred destroy did not happen: %v", ce)
		}
	})

	t.Run("FullStreamToZFSFuse", func(t *testing.T) { testStreamToZFSFuse(t, gs[0]) })

	// Last: it leaves dst with its zfs module unloaded.
	t.Run("Fixtures", func(t *testing.T) { captureFixtures(t, gs[0], gs[1]) })
}

// testStreamToZFSFuse sends full streams from the OpenZFS guest to a zfs-fuse
// node (pool version 23). A pool at version 5000 (feature flags) marks every
// stream with the SA_SPILL feature (flag 4, pool version >= 24), which
// zfs-fuse refuses; a pool created at version 23 with filesystem version 4
// sends streams zfs-fuse receives.
func testStreamToZFSFuse(t *testing.T, g *Guest) {
	ctx := context.Background()
	src := g.Runner()
	node := zfsnodes.Start(t, zfsnodes.Options{}, "fuse")[0]
	fuse := node.Runner()

	t.Run("from a feature-flags pool: refused with a typed error", func(t *testing.T) {
		run(t, src, "zfs", "create", "tank/tofuse")
		fill(t, src, "/tank/tofuse/a", 1)
		run(t, src, "zfs", "snapshot", "tank/tofuse@s1")
		_, _, recvErr := transfer(ctx, src, []string{"zfs", "send", "tank/tofuse@s1"}, fuse, []string{"zfs", "recv", "-u", "tank/fromoz"}, 0)
		newFixtures(t).failure("err-zfsfuse-recv-openzfs-stream.txt", recvErr, 1, zfsexec.ErrStreamIncompatible)
		if ce := runFail(t, fuse, "zfs", "get", "-Hp", "-o", "value", "guid", "tank/fromoz"); !errors.Is(ce, zfsexec.ErrDatasetNotExist) {
			t.Fatalf("refused stream left something behind: %v", ce)
		}
	})
	t.Run("from a version 23 pool: received", func(t *testing.T) {
		run(t, src, "zpool", "create", "-f", "-o", "version=23", "-O", "version=4", "legacy", g.Disk(1))
		run(t, src, "zfs", "create", "legacy/tofuse")
		fill(t, src, "/legacy/tofuse/a", 1)
		run(t, src, "zfs", "snapshot", "legacy/tofuse@s1")
		mustTransfer(t, src, []string{"zfs", "send", "legacy/tofuse@s1"}, fuse, []string{"zfs", "recv", "-u", "tank/fromlegacy"})
		if got, want := prop(t, fuse, "tank/fromlegacy@s1", "guid"), prop(t, src, "legacy/tofuse@s1", "guid"); got != want {
			t.Fatalf("zfs-fuse guid %s, OpenZFS %s", got, want)
		}
		// zfs-fuse mounts the received file system (mounted=yes) but its
		// root answers ENOENT, even for an empty one: the data is checked
		// by sending it back to OpenZFS.
		mp := prop(t, fuse, "tank/fromlegacy", "mountpoint")
		if err := fuse.Run(context.Background(), zfsexec.Command{Argv: []string{"ls", mp}}); err != nil {
			t.Logf("zfs-fuse cannot read the received file system: %v", err)
		}
		mustTransfer(t, fuse, []string{"zfs", "send", "tank/fromlegacy@s1"}, src, []string{"zfs", "recv", "legacy/back"})
		if a, b := run(t, src, "sha256sum", "/legacy/tofuse/a"), run(t, src, "sha256sum", "/legacy/back/a"); strings.Fields(a)[0] != strings.Fields(b)[0] {
			t.Fatalf("data differs after the round trip through zfs-fuse: %s / %s", a, b)
		}
	})
}

// resumeTokenRE matches an OpenZFS receive_resume_token.
var resumeTokenRE = regexp.MustCompile(`^1-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$`)

// fill writes mib MiB of random data to path in the guest.
func fill(t testing.TB, r zfsexec.Runner, path string, mib int) {
	t.Helper()
	run(t, r, "dd", "if=/dev/urandom", "of="+path, "bs=1M", "count="+strconv.Itoa(mib), "status=none")
}

// prop returns one property value (-Hp) of name.
func prop(t testing.TB, r zfsexec.Runner, name, property string) string {
	t.Helper()
	return strings.TrimSpace(run(t, r, "zfs", "get", "-Hp", "-o", "value", property, name))
}

// transfer pipes `send` on src into `recv` on dst through the host. When
// cutAfter > 0 the sender is cancelled once that many bytes went through, as
// if its node died mid-stream. It returns the bytes passed and both errors.
func transfer(ctx context.Context, src zfsexec.Runner, send []string, dst zfsexec.Runner, recv []string, cutAfter int64) (int64, error, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	cw := &cutWriter{w: pw, limit: cutAfter, cancel: cancel}
	sendErr := make(chan error, 1)
	go func() {
		err := src.Run(sctx, zfsexec.Command{Argv: send, Stdout: cw})
		if err != nil {
			pw.CloseWithError(err)
		} else {
			pw.Close()
		}
		sendErr <- err
	}()
	recvErr := dst.Run(ctx, zfsexec.Command{Argv: recv, Stdin: pr})
	pr.CloseWithError(errors.New("receiver exited"))
	err := <-sendErr
	return cw.count(), err, recvErr
}

func mustTransfer(t testing.TB, src zfsexec.Runner, send []string, dst zfsexec.Runner, recv []string) int64 {
	t.Helper()
	start := time.Now()
	n, sendErr, recvErr := transfer(context.Background(), src, send, dst, recv, 0)
	if sendErr != nil || recvErr != nil {
		t.Fatalf("%s | %s: send: %v; recv: %v", strings.Join(send, " "), strings.Join(recv, " "), sendErr, recvErr)
	}
	t.Logf("%s | %s: %d bytes in %v", strings.Join(send, " "), strings.Join(recv, " "), n, time.Since(start).Round(time.Millisecond))
	return n
}

// cutWriter counts bytes and, past limit (when > 0), cancels the sender and
// passes nothing more on.
type cutWriter struct {
	w      io.Writer
	limit  int64
	cancel func()
	mu     sync.Mutex
	n      int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && c.n >= c.limit {
		c.cancel()
		return 0, errors.New("stream cut")
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *cutWriter) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
