package retention

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; a rejected spec is a *SyntaxError whose
// offset lies inside the spec; an accepted one prints (String) to a
// canonical form that parses to the same rules and prints the same, and
// pruning with it never selects a snapshot z8r does not own nor the
// newest owned one.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"last=10", "24x1h | 14x1d", "all", "last=3; 7x1d(keep=2)", "1x1w|4x1w",
		"", ";", "last=-1", "last=99999999999999999999", "0x1h", "1x0h", "3x1h(keep=all)", "24x1h |", "12x5m; last=1; all",
		"last=1;last=1", "1x1y", "\t24x1h\n|\r14x1d "} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var snaps []Snapshot
	for i := range 40 {
		snaps = append(snaps, Snapshot{Name: "s" + string(rune('a'+i%26)), GUID: uint64(i + 1),
			Creation: now.Add(-time.Duration(i) * 37 * time.Minute), CreateTXG: uint64(1000 - i), Owned: i%5 != 3})
	}
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := Parse(spec)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): error %v is not a *SyntaxError", spec, err)
			}
			if se.Offset < 0 || se.Offset > len(spec) {
				t.Fatalf("Parse(%q): offset %d outside the spec", spec, se.Offset)
			}
			return
		}
		if p.IsZero() {
			t.Fatalf("Parse(%q) accepted a policy without rules", spec)
		}
		canon := p.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", spec, canon, err)
		}
		if again.String() != canon || !reflect.DeepEqual(again.Rules(), p.Rules()) {
			t.Fatalf("Parse(%q) = %q, re-parsed %q (%#v vs %#v)", spec, canon, again.String(), again.Rules(), p.Rules())
		}
		destroy := Prune(snaps, p, now, nil)
		for _, d := range destroy {
			if !d.Owned {
				t.Fatalf("%q prunes %s, which z8r does not own", canon, d.Name)
			}
			if d.GUID == 1 {
				t.Fatalf("%q prunes the newest owned snapshot", canon)
			}
		}
	})
}
