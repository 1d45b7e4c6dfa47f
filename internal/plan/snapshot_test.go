package plan

import (
	"errors"
	"testing"
)

func TestComputeSnapshot_Plans(t *testing.T) {
	fb := foreign(snap("snapshot-b", 0x1b, 20))
	fc := foreign(snap("snapshot-c", 0x1c, 30))
	tests := []struct {
		name  string
		in    Input
		snap  string
		base  string
		steps []string
		into  bool
	}{
		{"target missing: full send of exactly that snapshot",
			Input{Source: src(a, fb, c)}, "snapshot-b", "", []string{"full>@snapshot-b"}, false},
		{"foreign snapshot needs no IncludeForeign",
			Input{Source: src(fb, fc), Target: tgt(fb)}, "snapshot-c", "@snapshot-b", []string{"@snapshot-b>@snapshot-c"}, false},
		{"intermediate snapshots are not sent",
			Input{Source: src(a, b, c, d), Target: tgt(a)}, "z8r-d", "@z8r-a", []string{"@z8r-a>@z8r-d"}, false},
		{"already there: base stays the newest common",
			Input{Source: src(a, b, c), Target: tgt(a, b, c)}, "z8r-b", "@z8r-c", []string{}, false},
		{"already there as the only one",
			Input{Source: src(a), Target: tgt(a)}, "z8r-a", "@z8r-a", []string{}, false},
		{"base is a bookmark",
			Input{Source: src(bookmark(a), b), Target: tgt(a)}, "z8r-b", "#z8r-a", []string{"#z8r-a>@z8r-b"}, false},
		{"empty target allowed",
			Input{Source: src(a, b), TargetExists: true, Options: Options{AllowFullIntoEmpty: true}}, "z8r-a", "", []string{"full>@z8r-a"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ComputeSnapshot(tt.in, tt.snap)
			if err != nil {
				t.Fatalf("ComputeSnapshot: %v", err)
			}
			checkChain(t, p)
			base := ""
			if p.Base != nil {
				base = p.Base.String()
			}
			if base != tt.base {
				t.Errorf("base %q, want %q", base, tt.base)
			}
			if got := steps(p); !equalStrings(got, tt.steps) {
				t.Errorf("steps %v, want %v", got, tt.steps)
			}
			if p.IntoExisting != tt.into {
				t.Errorf("IntoExisting %v, want %v", p.IntoExisting, tt.into)
			}
		})
	}
}

func TestComputeSnapshot_Conflicts(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		snap string
		want error
		kind ConflictKind
	}{
		{"older than the target's newest",
			Input{Source: src(a, b, c), Target: tgt(a, c)}, "z8r-b", ErrTargetNewer, ConflictTargetNewer},
		{"target has foreign snapshots the source lacks",
			Input{Source: src(a, b), Target: tgt(a, m)}, "z8r-b", ErrDiverged, ConflictDiverged},
		{"source lost snapshots the target received",
			Input{Source: src(a, b), Target: tgt(a, x)}, "z8r-b", ErrSourceLost, ConflictSourceLost},
		{"target modified",
			Input{Source: src(a, b), Target: tgt(a), TargetModified: true}, "z8r-b", ErrDiverged, ConflictDiverged},
		{"no common snapshot",
			Input{Source: src(a, b), Target: tgt(x)}, "z8r-b", ErrNoCommonSnapshot, ConflictNoCommonSnapshot},
		{"existing empty target",
			Input{Source: src(a), TargetExists: true}, "z8r-a", ErrTargetNotEmpty, ConflictTargetNotEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ComputeSnapshot(tt.in, tt.snap)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Kind != tt.kind {
				t.Fatalf("err %#v, want a ConflictError of kind %v", err, tt.kind)
			}
		})
	}
}

func TestComputeSnapshot_Missing(t *testing.T) {
	for _, in := range []Input{
		{Source: src(a, b)},
		{Source: src(bookmark(c))},
	} {
		if _, err := ComputeSnapshot(in, "z8r-c"); !errors.Is(err, ErrSnapshotMissing) {
			t.Errorf("%v: err %v, want ErrSnapshotMissing", in.Source, err)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
