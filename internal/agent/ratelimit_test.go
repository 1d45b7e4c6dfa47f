package agent

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// TestPace_NoLimiterIsNoHook: without a limit the writer is not paced.
func TestPace_NoLimiterIsNoHook(t *testing.T) {
	if pace(context.Background(), nil, newRateLimiter(0), newRateLimiter(-1)) != nil {
		t.Fatal("pace without limiters returned a hook")
	}
}

// TestPace_HoldsTheSlowerLimit: a write through a paced CountingWriter
// takes at least as long as the slower of two limits allows (never
// faster), whole writes larger than the burst included.
func TestPace_HoldsTheSlowerLimit(t *testing.T) {
	const rate, total = 8 << 20, 4 << 20
	cw := &zfsexec.CountingWriter{W: io.Discard, Pace: pace(context.Background(), newRateLimiter(64<<20), newRateLimiter(rate))}
	buf := make([]byte, 1<<20) // four times the burst per write
	start := time.Now()
	for cw.N() < total {
		if _, err := cw.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	// The first burst passes at once; the rest at the rate.
	floor := time.Duration(float64(total-rateBurst) / rate * float64(time.Second))
	if took < floor*95/100 {
		t.Fatalf("%d bytes in %s: faster than %d B/s allows (%s)", total, took, rate, floor)
	}
}

// TestPace_CancelStopsTheWait: a cancelled context ends a paced write
// with an error instead of waiting.
func TestPace_CancelStopsTheWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cw := &zfsexec.CountingWriter{W: io.Discard, Pace: pace(ctx, newRateLimiter(1024))}
	cancel()
	if _, err := cw.Write(make([]byte, 64<<10)); err == nil {
		t.Fatal("a write paced on a cancelled context succeeded")
	}
	if cw.N() != 0 {
		t.Fatalf("%d bytes passed", cw.N())
	}
}
