package retention

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// snaps builds owned snapshots at the given ages before t0, oldest first
// when ages are given in decreasing order; CreateTXG follows creation.
func snaps(ages ...time.Duration) []Snapshot {
	out := make([]Snapshot, len(ages))
	for i, a := range ages {
		c := t0.Add(-a)
		out[i] = Snapshot{Name: "z8r-" + c.Format("20060102T150405Z"), Creation: c, CreateTXG: uint64(c.Unix()), Owned: true}
	}
	return out
}

func foreign(s Snapshot) Snapshot {
	s.Owned = false
	s.Name = "snapshot-" + s.Name
	return s
}

func names(s []Snapshot) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, x.Name)
	}
	return out
}

func h(n int) time.Duration { return time.Duration(n) * time.Hour }
func d(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

func mustParse(t *testing.T, spec string) Policy {
	t.Helper()
	p, err := Parse(spec)
	if err != nil {
		t.Fatalf("Parse(%q): %v", spec, err)
	}
	return p
}

func TestParse_Valid(t *testing.T) {
	tests := []struct {
		spec      string
		canonical string
		rules     []Rule
	}{
		{"last=10", "last=10", []Rule{LastN{10}}},
		{" last = 3 ", "last=3", []Rule{LastN{3}}},
		{"all", "all", []Rule{KeepAllRule{}}},
		{"24x1h", "24x1h", []Rule{Grid{[]Interval{{24, time.Hour, 1}}}}},
		{"1x1h(keep=all) | 24x1h | 14x1d", "1x1h(keep=all) | 24x1h | 14x1d",
			[]Rule{Grid{[]Interval{{1, time.Hour, KeepAll}, {24, time.Hour, 1}, {14, d(1), 1}}}}},
		{"1x1h( keep = all )|24x1h", "1x1h(keep=all) | 24x1h",
			[]Rule{Grid{[]Interval{{1, time.Hour, KeepAll}, {24, time.Hour, 1}}}}},
		{"2x30m(keep=3)", "2x30m(keep=3)", []Rule{Grid{[]Interval{{2, 30 * time.Minute, 3}}}}},
		{"1x60m | 1x24h | 1x7d | 1x2w", "1x1h | 1x1d | 1x1w | 1x2w",
			[]Rule{Grid{[]Interval{{1, time.Hour, 1}, {1, d(1), 1}, {1, d(7), 1}, {1, d(14), 1}}}}},
		{"last=3; 7x1d | 4x1w", "last=3; 7x1d | 4x1w",
			[]Rule{LastN{3}, Grid{[]Interval{{7, d(1), 1}, {4, d(7), 1}}}}},
		{"1 x 1 h (keep=1)", "1x1h", []Rule{Grid{[]Interval{{1, time.Hour, 1}}}}},
		{DefaultSource, DefaultSource, nil},
		{DefaultTarget, DefaultTarget, nil},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			p := mustParse(t, tc.spec)
			if got := p.String(); got != tc.canonical {
				t.Fatalf("String() = %q, want %q", got, tc.canonical)
			}
			if tc.rules != nil && !reflect.DeepEqual(p.Rules(), tc.rules) {
				t.Fatalf("rules = %#v, want %#v", p.Rules(), tc.rules)
			}
			again := mustParse(t, p.String())
			if !reflect.DeepEqual(again, p) {
				t.Fatalf("round trip %q: %#v != %#v", p.String(), again, p)
			}
		})
	}
}

func TestParse_Invalid(t *testing.T) {
	tests := []struct {
		spec   string
		offset int
		msg    string
	}{
		{"", 0, "empty policy"},
		{"last=10;", 8, "empty rule"},
		{";last=1", 0, "empty rule"},
		{"last=0", 5, "at least 1"},
		{"last=", 5, "missing number"},
		{"last10", 4, `want "last=N"`},
		{"last=-1", 5, "positive integer"},
		{"last=ten", 5, "positive integer"},
		{"last=99999999999", 5, "larger than"},
		{"keep-forever", 0, "unknown rule"},
		{"24x1h |", 7, "empty grid interval"},
		{"24x1h || 1x1d", 7, "empty grid interval"},
		{"x1h", 0, "missing number"},
		{"0x1h", 0, "at least 1"},
		{"24x", 3, "want an interval length"},
		{"24x1", 3, "want an interval length"},
		{"24x1y", 4, "unknown unit"},
		{"24x1s", 4, "unknown unit"},
		{"24xh1", 4, "unknown unit"},
		{"24x0h", 3, "at least 1"},
		{"1x1h(keep=0)", 10, "at least 1"},
		{"1x1h(keep=all", 13, "missing ')'"},
		{"1x1h(kept=all)", 5, "want (keep=N)"},
		{"1x1h(keep all)", 10, "want (keep=N)"},
		{"1x1h(keep=some)", 10, "positive integer"},
		{"1000000x1000000w", 8, "longer than 100 years"},
		{"100x27w | 100x27w", 10, "more than 100 years"},
		{"100x2w | 1000000x1000000m", 9, "more than 100 years"},
		{"last=1; 1x1h | 24x1q", 19, "unknown unit"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			p, err := Parse(tc.spec)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", tc.spec, p)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v is not a *SyntaxError matching ErrSyntax", err)
			}
			if se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
				t.Fatalf("error at %d %q, want at %d containing %q", se.Offset, se.Msg, tc.offset, tc.msg)
			}
		})
	}
}

func TestPrune_Rules(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		snaps  []Snapshot
		want   []Snapshot // destroyed, oldest first
	}{
		{"last keeps newest N", "last=2", snaps(h(4), h(3), h(2), h(1)), snaps(h(4), h(3))},
		{"last larger than set", "last=10", snaps(h(2), h(1)), nil},
		{"all keeps everything", "all", snaps(d(400), h(1)), nil},
		{"unsorted input", "last=1", snaps(h(1), h(3), h(2)), snaps(h(3), h(2))},
		{"grid keeps oldest per interval", "3x1h",
			// intervals back from the newest (age 0): [0,1h) [1h,2h) [2h,3h)
			snaps(h(3)+time.Minute, 2*time.Hour+30*time.Minute, 2*time.Hour+10*time.Minute, 90*time.Minute, 70*time.Minute, 0),
			snaps(h(3)+time.Minute, 2*time.Hour+10*time.Minute, 70*time.Minute)},
		{"grid keep=2", "1x1h(keep=2)", snaps(50*time.Minute, 40*time.Minute, 30*time.Minute, 0), snaps(30 * time.Minute)},
		{"grid keep=all then daily", "1x1d(keep=all) | 2x1d",
			snaps(d(3)+h(1), d(2)+h(5), d(2)+h(1), d(1)+h(7), d(1)+h(2), h(20), h(5), 0),
			snaps(d(3)+h(1), d(2)+h(1), d(1)+h(2))},
		{"older than grid dropped", "1x1d", snaps(d(10), d(5), h(1), 0), snaps(d(10), d(5), 0)[:2]},
		{"any rule keeps", "last=3; 2x1d", snaps(d(10), d(1)+h(5), d(1)+h(1), h(3), h(2), 0), snaps(d(10), d(1)+h(1))},
		{"zero creation kept", "last=1", []Snapshot{{Name: "x", CreateTXG: 1, Owned: true}, snaps(0)[0]}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Prune(tc.snaps, mustParse(t, tc.policy), t0, nil)
			if !reflect.DeepEqual(names(got), names(tc.want)) {
				t.Fatalf("destroy %v, want %v", names(got), names(tc.want))
			}
		})
	}
}

func TestPrune_Safety(t *testing.T) {
	all := snaps(d(30), d(20), d(10), h(1))
	ext := foreign(snaps(d(40))[0])
	protected := all[1]
	tests := []struct {
		name    string
		policy  Policy
		snaps   []Snapshot
		protect func(Snapshot) bool
		want    []Snapshot
	}{
		{"foreign never destroyed", mustParse(t, "last=1"), append([]Snapshot{ext}, all...), nil, all[:3]},
		{"foreign invisible to last=N", mustParse(t, "last=2"),
			append(all, foreign(snaps(h(0))[0])), nil, all[:2]},
		{"protected kept", mustParse(t, "last=1"), all,
			func(s Snapshot) bool { return s.Name == protected.Name }, []Snapshot{all[0], all[2]}},
		{"newest owned kept though a grid drops it", mustParse(t, "1x1h"),
			[]Snapshot{all[0], all[1]}, nil, all[:1]},
		{"newest owned kept when a foreign is newer", mustParse(t, "1x1h"),
			append(snaps(d(3), d(2)), foreign(snaps(0)[0])), nil, snaps(d(3))},
		{"only foreign", mustParse(t, "last=1"), []Snapshot{ext, foreign(all[0])}, nil, nil},
		{"single owned", mustParse(t, "1x1m"), snaps(d(100)), nil, nil},
		{"zero policy keeps all", Policy{}, all, nil, nil},
		{"empty input", mustParse(t, "last=1"), nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Prune(tc.snaps, tc.policy, t0, tc.protect)
			if !reflect.DeepEqual(names(got), names(tc.want)) {
				t.Fatalf("destroy %v, want %v", names(got), names(tc.want))
			}
			for _, s := range got {
				if !s.Owned || (tc.protect != nil && tc.protect(s)) {
					t.Fatalf("destroys %v", s)
				}
			}
		})
	}
}

func TestPrune_AnchoredAtNewestSnapshot(t *testing.T) {
	// Snapshots stopped 60 days ago; the clock ran on. Nothing erodes.
	s := snaps(d(64), d(63), d(62), d(61), d(60))
	if got := Prune(s, mustParse(t, "7x1d"), t0, nil); len(got) != 0 {
		t.Fatalf("destroy %v, want nothing", names(got))
	}
	// A snapshot dated after now (clock skew) does not shift the grid
	// beyond now.
	future := snaps(-h(2))[0]
	got := Prune(append(snaps(h(30), h(3)), future), mustParse(t, "1x1d"), t0, nil)
	if want := snaps(h(30)); !reflect.DeepEqual(names(got), names(want)) {
		t.Fatalf("destroy %v, want %v", names(got), names(want))
	}
}

func TestPrune_OrdersByCreateTXG(t *testing.T) {
	// The clock stepped back: b was created after a (higher txg) but has an
	// earlier timestamp. last=1 keeps b, the newest by txg.
	a := Snapshot{Name: "a", Creation: t0, CreateTXG: 10, Owned: true}
	b := Snapshot{Name: "b", Creation: t0.Add(-time.Hour), CreateTXG: 11, Owned: true}
	got := Prune([]Snapshot{a, b}, mustParse(t, "last=1"), t0, nil)
	if !reflect.DeepEqual(names(got), []string{"a"}) {
		t.Fatalf("destroy %v, want [a]", names(got))
	}
}

// TestPrune_SteadyState simulates the default schedule and policy for 90
// days, pruning after every snapshot: the set stays bounded, survivors are
// not swapped, and the history reaches back about as far as the grid.
func TestPrune_SteadyState(t *testing.T) {
	p := mustParse(t, DefaultSource)
	var have []Snapshot
	destroyedBefore := map[string]bool{}
	start := t0
	for i := range 90 * 4 {
		now := start.Add(time.Duration(i) * 6 * time.Hour)
		have = append(have, Snapshot{Name: fmt.Sprintf("s%04d", i), Creation: now, CreateTXG: uint64(i + 1), Owned: true})
		destroy := Prune(have, p, now, nil)
		gone := map[string]bool{}
		for _, s := range destroy {
			if destroyedBefore[s.Name] {
				t.Fatalf("%s destroyed twice", s.Name)
			}
			destroyedBefore[s.Name] = true
			gone[s.Name] = true
		}
		kept := have[:0]
		for _, s := range have {
			if !gone[s.Name] {
				kept = append(kept, s)
			}
		}
		have = kept
		if len(have) > 17 {
			t.Fatalf("day %d: %d snapshots kept: %v", i/4, len(have), names(have))
		}
	}
	oldest := have[0].Creation
	last := have[len(have)-1].Creation
	if age := last.Sub(oldest); age < d(29) || age > d(36) {
		t.Fatalf("history spans %v, want about a month: %v", age, names(have))
	}
}

// TestPrune_SurvivorsStay checks the stability the doc promises: a snapshot
// kept past the keep=all interval is only destroyed when it leaves the grid
// or is the younger of two in one interval, never swapped back and forth.
func TestPrune_SurvivorsStay(t *testing.T) {
	p := mustParse(t, "1x1d(keep=all) | 7x1d")
	var have []Snapshot
	firstKeptAt := map[string]int{}
	for i := range 40 * 24 {
		now := t0.Add(time.Duration(i) * time.Hour)
		have = append(have, Snapshot{Name: fmt.Sprintf("s%04d", i), Creation: now, CreateTXG: uint64(i + 1), Owned: true})
		gone := map[string]bool{}
		for _, s := range Prune(have, p, now, nil) {
			gone[s.Name] = true
		}
		kept := have[:0]
		for _, s := range have {
			if gone[s.Name] {
				if at, ok := firstKeptAt[s.Name]; ok && now.Sub(s.Creation) < d(8) {
					t.Fatalf("%s survived the first day (hour %d) but was destroyed at age %v", s.Name, at, now.Sub(s.Creation))
				}
				continue
			}
			if now.Sub(s.Creation) >= d(1) {
				if _, ok := firstKeptAt[s.Name]; !ok {
					firstKeptAt[s.Name] = i
				}
			}
			kept = append(kept, s)
		}
		have = kept
	}
	if len(have) < 30 || len(have) > 32 { // 24 hourly + 7 daily
		t.Fatalf("%d kept: %v", len(have), names(have))
	}
}
