//go:build platform

package ozguest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// run runs argv in the guest and returns its stdout; it fails the test on error.
func run(t testing.TB, r zfsexec.Runner, argv ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := r.Run(context.Background(), zfsexec.Command{Argv: argv, Stdout: &out}); err != nil {
		t.Fatalf("%v", err)
	}
	return out.String()
}

// runFail runs argv, which must fail, and returns its *CommandError.
func runFail(t testing.TB, r zfsexec.Runner, argv ...string) *zfsexec.CommandError {
	t.Helper()
	err := r.Run(context.Background(), zfsexec.Command{Argv: argv})
	var ce *zfsexec.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: want a *zfsexec.CommandError, got %v", strings.Join(argv, " "), err)
	}
	return ce
}

func TestRunner_Contract(t *testing.T) {
	g := Boot(t, Options{Disks: 1})
	r := g.Runner()
	ctx := context.Background()

	t.Run("stdout of a successful command", func(t *testing.T) {
		if got := run(t, r, "echo", "hello"); got != "hello\n" {
			t.Fatalf("stdout = %q", got)
		}
	})
	t.Run("argv reaches the program without a shell", func(t *testing.T) {
		if got := run(t, r, "echo", "$HOME;", "*", "a b"); got != "$HOME; * a b\n" {
			t.Fatalf("stdout = %q", got)
		}
	})
	t.Run("stdin streams to the process", func(t *testing.T) {
		data := make([]byte, 8<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		var out bytes.Buffer
		err := r.Run(ctx, zfsexec.Command{Argv: []string{"sha256sum"}, Stdin: bytes.NewReader(data), Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(out.String())[0], hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("guest sha256 %s, host %s", got, want)
		}
	})
	t.Run("unread stdin is not an error", func(t *testing.T) {
		err := r.Run(ctx, zfsexec.Command{Argv: []string{"true"}, Stdin: io.LimitReader(zeros{}, 64<<20)})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("non-zero exit is a CommandError with stderr", func(t *testing.T) {
		ce := runFail(t, r, "ls", "/nonexistent")
		if ce.ExitCode != 2 || !strings.Contains(ce.Stderr, "No such file or directory") {
			t.Fatalf("got exit %d stderr %q", ce.ExitCode, ce.Stderr)
		}
		if ce.Argv[0] != "ls" || ce.Argv[1] != "/nonexistent" {
			t.Fatalf("argv %q", ce.Argv)
		}
	})
	t.Run("stderr written just before exit is kept", func(t *testing.T) {
		// Regression: the channel's EOF once raced the stderr copy.
		for range 20 {
			ce := runFail(t, r, "sh", "-c", "echo oops >&2; exit 3")
			if ce.ExitCode != 3 || ce.Stderr != "oops\n" {
				t.Fatalf("got exit %d stderr %q", ce.ExitCode, ce.Stderr)
			}
		}
	})
	t.Run("a missing program exits 127", func(t *testing.T) {
		ce := runFail(t, r, "no-such-program-z8r")
		if ce.ExitCode != 127 || !strings.Contains(ce.Stderr, "no-such-program-z8r") {
			t.Fatalf("got exit %d stderr %q", ce.ExitCode, ce.Stderr)
		}
	})
	t.Run("cancelling ctx kills the process in the guest", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := r.Run(cctx, zfsexec.Command{Argv: []string{"sleep", "1000"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want an error wrapping context.DeadlineExceeded, got %v", err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("Run returned %v after the deadline", d)
		}
		if ce := runFail(t, r, "pgrep", "-x", "sleep"); ce.ExitCode != 1 {
			t.Fatalf("pgrep: %v", ce)
		}
	})
	t.Run("a failing stdout writer breaks the process's pipe", func(t *testing.T) {
		w := &failingWriter{after: 1 << 20}
		err := r.Run(ctx, zfsexec.Command{Argv: []string{"yes"}, Stdout: w})
		var ce *zfsexec.CommandError
		if !errors.As(err, &ce) || ce.ExitCode != 128+13 {
			t.Fatalf("want exit 141 (SIGPIPE), got %v", err)
		}
	})
	t.Run("commands run concurrently on one connection", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		start := time.Now()
		for i := range errs {
			wg.Go(func() {
				errs[i] = r.Run(ctx, zfsexec.Command{Argv: []string{"sleep", "1"}})
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > 3500*time.Millisecond {
			t.Fatalf("4 parallel sleep 1 took %v", d)
		}
	})
}

// TestChannel_Measure boots a guest per channel and logs per-command latency
// and streaming throughput in both directions.
func TestChannel_Measure(t *testing.T) {
	for _, ch := range []Channel{ChannelSerial, ChannelTCP} {
		t.Run(ch.String(), func(t *testing.T) {
			g := Boot(t, Options{Channel: ch, Disks: 1})
			r := g.Runner()
			ctx := context.Background()
			const n = 15
			lat := make([]time.Duration, n)
			for i := range lat {
				start := time.Now()
				run(t, r, "true")
				lat[i] = time.Since(start)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			zstart := time.Now()
			run(t, r, "zfs", "list")
			zlat := time.Since(zstart)

			const size = 64 << 20
			var cw countingWriter
			start := time.Now()
			if err := r.Run(ctx, zfsexec.Command{Argv: []string{"head", "-c", "67108864", "/dev/zero"}, Stdout: &cw}); err != nil {
				t.Fatal(err)
			}
			down := time.Since(start)
			if cw.n != size {
				t.Fatalf("got %d bytes", cw.n)
			}
			start = time.Now()
			var out bytes.Buffer
			if err := r.Run(ctx, zfsexec.Command{Argv: []string{"wc", "-c"}, Stdin: io.LimitReader(zeros{}, size), Stdout: &out}); err != nil {
				t.Fatal(err)
			}
			up := time.Since(start)
			if strings.TrimSpace(out.String()) != "67108864" {
				t.Fatalf("guest counted %q bytes", out.String())
			}
			mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
			t.Logf("channel %v: boot %v; `true` latency min %v median %v max %v; `zfs list` %v; guest->host %.0f MB/s; host->guest %.0f MB/s",
				ch, g.BootTime().Round(time.Millisecond), lat[0].Round(time.Millisecond), lat[n/2].Round(time.Millisecond),
				lat[n-1].Round(time.Millisecond), zlat.Round(time.Millisecond), mbps(down), mbps(up))
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

type failingWriter struct{ after, n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n >= w.after {
		return 0, errors.New("reader went away")
	}
	w.n += len(p)
	return len(p), nil
}
