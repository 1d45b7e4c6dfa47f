package clocktest

import (
	"sync"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/schedule"
)

var _ schedule.Clock = (*Fake)(nil)

func TestFake_SetAndAdvance(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	f := New(start)
	if !f.Now().Equal(start) {
		t.Fatalf("Now = %v", f.Now())
	}
	if got := f.Advance(6 * time.Hour); !got.Equal(start.Add(6*time.Hour)) || !f.Now().Equal(got) {
		t.Fatalf("Advance = %v, Now = %v", got, f.Now())
	}
	f.Set(start.Add(-time.Hour))
	if !f.Now().Equal(start.Add(-time.Hour)) {
		t.Fatalf("after Set, Now = %v", f.Now())
	}
}

func TestFake_Concurrent(t *testing.T) {
	f := New(time.Time{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				f.Advance(time.Second)
				_ = f.Now()
			}
		}()
	}
	wg.Wait()
	if got := f.Now().Sub(time.Time{}); got != 800*time.Second {
		t.Fatalf("advanced %v, want 800s", got)
	}
}

func TestFake_DrivesSchedule(t *testing.T) {
	f := New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	s := schedule.Default()
	last := f.Now()
	f.Advance(5 * time.Hour)
	if s.Due(last, f.Now()) {
		t.Fatal("due after 5h")
	}
	f.Advance(time.Hour)
	if !s.Due(last, f.Now()) {
		t.Fatal("not due after 6h")
	}
}
