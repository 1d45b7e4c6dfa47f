package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// TestWatchOutput: a reading is written when it differs from the last one
// written (ages alone do not count), the watch ends without error when
// the context does, and a failed reading ends it with the error.
func TestWatchOutput(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	values := []int{1, 1, 2, 2, 2, 3}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reads := 0
	read := func() (render, error) {
		v := values[min(reads, len(values)-1)]
		reads++
		if reads == len(values) {
			cancel()
		}
		return func(w io.Writer, now time.Time) error {
			_, err := fmt.Fprintf(w, "value %d, %s old\n", v, now.Sub(t0.Add(-time.Hour)))
			return err
		}, nil
	}
	var out strings.Builder
	clock := t0
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	if err := watchOutput(ctx, &out, time.Millisecond, now, read); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, v := range []string{"value 1", "value 2", "value 3"} {
		if strings.Count(got, v) != 1 {
			t.Errorf("%q written %d times, want once:\n%s", v, strings.Count(got, v), got)
		}
	}
	if n := strings.Count(got, "--- 2026-11-30T12:00:"); n != 3 {
		t.Errorf("%d time lines, want 3:\n%s", n, got)
	}

	boom := errors.New("apiserver gone")
	err := watchOutput(context.Background(), io.Discard, time.Millisecond, time.Now, func() (render, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("a failed reading: %v, want %v", err, boom)
	}
	if err := watchOutput(context.Background(), io.Discard, 0, time.Now, nil); err == nil {
		t.Error("a zero interval was accepted")
	}
}

// TestProgressCell: a running transfer reads as share of the expected
// size, rate and time left; bytes alone when the size is unknown.
func TestProgressCell(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	cases := []struct {
		name string
		p    *z8rv1.TransferProgress
		wide bool
		want string
	}{
		{"none", nil, false, ""},
		{"known size", &z8rv1.TransferProgress{BytesDone: 128 << 20, BytesExpected: 512 << 20, BytesPerSecond: 32 << 20, EstimatedCompletion: at(12 * time.Second), Step: 1, Steps: 1}, false, "(25% of 512.0 MiB, 32.0 MiB/s, 12s left)"},
		{"wide adds the step", &z8rv1.TransferProgress{BytesDone: 1 << 20, BytesExpected: 4 << 20, Step: 2, Steps: 3}, true, "(25% of 4.0 MiB, step 2/3)"},
		{"unknown size", &z8rv1.TransferProgress{BytesDone: 3 << 30, BytesPerSecond: 100 << 20}, false, "(3.0 GiB, 100.0 MiB/s)"},
		{"completion passed", &z8rv1.TransferProgress{BytesDone: 10, BytesExpected: 10, EstimatedCompletion: at(-time.Minute)}, false, "(100% of 10 B, 0s left)"},
	}
	for _, c := range cases {
		if got := progressCell(c.p, now, c.wide); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
