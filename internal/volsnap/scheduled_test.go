package volsnap

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/retention"
)

func TestScheduledName_Format(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 30, 5, 0, time.FixedZone("x", 3600))
	if got := ScheduledName("data", at, 0); got != "data-20261126-093005" {
		t.Errorf("got %q", got)
	}
	if got := ScheduledName("data", at, 2); got != "data-20261126-093005-2" {
		t.Errorf("got %q", got)
	}
	if got := ScheduledName(strings.Repeat("p", 253), at, 0); len(got) != 253 || !strings.HasSuffix(got, "-20261126-093005") {
		t.Errorf("long: %d %q", len(got), got)
	}
}

func TestPruneScheduled_OnlyReadyAndNotNewest(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := []Scheduled{
		{Name: "a", At: t0, Ready: true},
		{Name: "b", At: t0.Add(time.Hour), Ready: false}, // not ready: kept
		{Name: "c", At: t0.Add(2 * time.Hour), Ready: true},
		{Name: "d", At: t0.Add(3 * time.Hour), Ready: true},
	}
	if LastScheduled(s) != t0.Add(3*time.Hour) || !LastScheduled(nil).IsZero() {
		t.Errorf("LastScheduled")
	}
	p, err := retention.Parse("last=1")
	if err != nil {
		t.Fatal(err)
	}
	got := PruneScheduled(s, p, t0.Add(4*time.Hour))
	if !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Errorf("pruned %v, want [a c]", got)
	}
	if got := PruneScheduled(s, retention.Policy{}, t0.Add(4*time.Hour)); len(got) != 0 {
		t.Errorf("zero policy pruned %v", got)
	}
}
