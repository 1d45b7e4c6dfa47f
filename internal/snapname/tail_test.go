package snapname

import (
	"testing"
	"time"
)

func TestTailName_RoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 30, 16, 4, 5, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		dataset string
		want    string
	}{
		{"tank/data", "tank/data-z8r-tail-20261130T150405Z"},
		{"tank", "tank-z8r-tail-20261130T150405Z"},
		{"tank/data-z8r-tail-20261129T000000Z", "tank/data-z8r-tail-20261129T000000Z-z8r-tail-20261130T150405Z"},
	}
	for _, tc := range tests {
		t.Run(tc.dataset, func(t *testing.T) {
			got := TailName(tc.dataset, when)
			if got != tc.want {
				t.Fatalf("TailName = %q, want %q", got, tc.want)
			}
			ds, at, ok := ParseTailName(got)
			if !ok || ds != tc.dataset || !at.Equal(when) || at.Location() != time.UTC {
				t.Fatalf("ParseTailName(%q) = %q, %v, %v", got, ds, at, ok)
			}
			if !IsTailName(tc.dataset, got) || IsTailName(tc.dataset+"x", got) {
				t.Fatalf("IsTailName(%q, %q) disagrees with ParseTailName", tc.dataset, got)
			}
		})
	}
}

func TestParseTailName_Rejects(t *testing.T) {
	for _, name := range []string{
		"tank/data",
		"-z8r-tail-20261130T150405Z",
		"tank/data-z8r-tail-",
		"tank/data-z8r-tail-yesterday",
		"tank/data-z8r-tail-20261130T150405Z/child",
		"tank/data-z8r-tail-20261130T150405Z@snap",
		"tank/data-z8r-diverged-20261130T150405Z",
	} {
		if ds, _, ok := ParseTailName(name); ok {
			t.Errorf("ParseTailName(%q) = %q, true", name, ds)
		}
	}
}

func TestTailSnapshotName_RoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 30, 15, 4, 5, 0, time.UTC)
	got := TailSnapshotName(when.In(time.FixedZone("X", -7200)))
	if got != "z8r-tail-20261130T150405Z" {
		t.Fatalf("TailSnapshotName = %q", got)
	}
	if at, ok := ParseTailSnapshotName(got); !ok || !at.Equal(when) {
		t.Fatalf("ParseTailSnapshotName(%q) = %v, %v", got, at, ok)
	}
	// A tail snapshot is not a z8r snapshot name of any prefix that
	// retention could mistake for its own (ownership is the property,
	// but the names should not collide either).
	if p, _, ok := Parse(got); ok && p == DefaultPrefix {
		t.Errorf("Parse(%q) reads the default prefix", got)
	}
	for _, short := range []string{"z8r-tail-", "z8r-tail-x", "z8r-20261130T150405Z", "tail-20261130T150405Z"} {
		if _, ok := ParseTailSnapshotName(short); ok {
			t.Errorf("ParseTailSnapshotName(%q) = true", short)
		}
	}
}
