package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// snap is an owned source snapshot; guid and txg double as its identity and
// order.
func snap(name string, guid, txg uint64) Snapshot {
	return Snapshot{Name: name, GUID: guid, CreateTXG: txg, Creation: t0.Add(time.Duration(txg) * time.Hour), Owned: true}
}

// Modifiers for fixtures.
func foreign(s Snapshot) Snapshot { s.Owned = false; return s }
func bookmark(s Snapshot) Snapshot {
	s.Bookmark = true
	return s
}

// received is s as it appears on the target: same GUID, the target's own
// createtxg.
func received(s Snapshot, txg uint64) Snapshot { s.CreateTXG = txg; return s }

func renamed(s Snapshot, name string) Snapshot { s.Name = name; return s }

var (
	a = snap("z8r-a", 0xa, 10)
	b = snap("z8r-b", 0xb, 20)
	c = snap("z8r-c", 0xc, 30)
	d = snap("z8r-d", 0xd, 40)
	f = foreign(snap("snapshot-f", 0xf, 25))
	// x is z8r's, received by the target from this replication, and no
	// longer on the source (the source lost it).
	x = snap("z8r-x", 0x99, 500)
	// m is an operator's snapshot taken on the target.
	m = foreign(snap("manual", 0x98, 510))
)

func tgt(s ...Snapshot) []Snapshot {
	out := make([]Snapshot, len(s))
	for i, v := range s {
		out[i] = received(v, uint64(1000+i))
	}
	return out
}

func src(s ...Snapshot) []Snapshot { return s }

// steps renders a plan's steps as "full>@b" or "@a>@b".
func steps(p Plan) []string {
	out := []string{}
	for _, s := range p.Steps {
		from := "full"
		if s.From != nil {
			from = s.From.String()
		}
		out = append(out, from+">"+s.To.String())
	}
	return out
}

func checkChain(t *testing.T, p Plan) {
	t.Helper()
	for i, s := range p.Steps {
		switch {
		case i == 0 && p.Base == nil && s.From != nil:
			t.Fatalf("step 0 from %v without a base", s.From)
		case i == 0 && p.Base != nil && (s.From == nil || *s.From != *p.Base):
			t.Fatalf("step 0 from %v, base %v", s.From, p.Base)
		case i > 0 && (s.From == nil || *s.From != p.Steps[i-1].To):
			t.Fatalf("step %d from %v, previous to %v", i, s.From, p.Steps[i-1].To)
		}
		if s.To.Bookmark {
			t.Fatalf("step %d sends a bookmark", i)
		}
	}
}

func TestCompute_Plans(t *testing.T) {
	tests := []struct {
		name  string
		in    Input
		base  string // Base.String(), "" for nil
		steps []string
		full  bool
		into  bool
	}{
		{"up to date",
			Input{Source: src(a, b), Target: tgt(a, b)}, "@z8r-b", []string{}, false, false},
		{"one step",
			Input{Source: src(a, b), Target: tgt(a)}, "@z8r-a", []string{"@z8r-a>@z8r-b"}, false, false},
		{"many steps",
			Input{Source: src(a, b, c, d), Target: tgt(a)}, "@z8r-a",
			[]string{"@z8r-a>@z8r-b", "@z8r-b>@z8r-c", "@z8r-c>@z8r-d"}, false, false},
		{"unsorted input",
			Input{Source: src(d, b, a, c), Target: []Snapshot{received(b, 7), received(a, 3)}}, "@z8r-b",
			[]string{"@z8r-b>@z8r-c", "@z8r-c>@z8r-d"}, false, false},
		{"base is a bookmark (snapshot pruned on source)",
			Input{Source: src(bookmark(a), b, c), Target: tgt(a)}, "#z8r-a",
			[]string{"#z8r-a>@z8r-b", "@z8r-b>@z8r-c"}, false, false},
		{"snapshot preferred over its bookmark",
			Input{Source: src(bookmark(b), a, b, c), Target: tgt(a, b)}, "@z8r-b",
			[]string{"@z8r-b>@z8r-c"}, false, false},
		{"bookmark newer than last sent is not a To",
			Input{Source: src(a, b, bookmark(c)), Target: tgt(a)}, "@z8r-a",
			[]string{"@z8r-a>@z8r-b"}, false, false},
		{"foreign skipped",
			Input{Source: src(a, b, f, c), Target: tgt(a)}, "@z8r-a",
			[]string{"@z8r-a>@z8r-b", "@z8r-b>@z8r-c"}, false, false},
		{"foreign included",
			Input{Source: src(a, b, f, c), Target: tgt(a), Options: Options{IncludeForeign: true}}, "@z8r-a",
			[]string{"@z8r-a>@z8r-b", "@z8r-b>@snapshot-f", "@snapshot-f>@z8r-c"}, false, false},
		{"foreign base from an earlier run",
			Input{Source: src(a, b, f, c), Target: tgt(a, b, f)}, "@snapshot-f",
			[]string{"@snapshot-f>@z8r-c"}, false, false},
		{"target pruned older snapshots",
			Input{Source: src(a, b, c, d), Target: tgt(c)}, "@z8r-c", []string{"@z8r-c>@z8r-d"}, false, false},
		{"source pruned older snapshots",
			Input{Source: src(c, d), Target: tgt(a, b, c)}, "@z8r-c", []string{"@z8r-c>@z8r-d"}, false, false},
		{"target bookmarks ignored",
			Input{Source: src(a, b), Target: append(tgt(a), bookmark(x))}, "@z8r-a",
			[]string{"@z8r-a>@z8r-b"}, false, false},
		{"renamed snapshot matched by GUID",
			Input{Source: src(renamed(a, "before-upgrade"), b), Target: tgt(a)}, "@before-upgrade",
			[]string{"@before-upgrade>@z8r-b"}, false, false},
		{"target missing sends newest",
			Input{Source: src(a, b, c)}, "", []string{"full>@z8r-c"}, true, false},
		{"target missing newest owned, not newest foreign",
			Input{Source: src(a, b, foreign(snap("snapshot-g", 0x10, 35)))}, "", []string{"full>@z8r-b"}, true, false},
		{"target missing initial all",
			Input{Source: src(a, f, b, bookmark(c)), Options: Options{InitialAll: true}}, "",
			[]string{"full>@z8r-a", "@z8r-a>@z8r-b"}, true, false},
		{"target missing nothing eligible",
			Input{Source: src(f, bookmark(a))}, "", []string{}, false, false},
		{"target missing empty source",
			Input{}, "", []string{}, false, false},
		{"target empty allowed",
			Input{Source: src(a, b), TargetExists: true, Options: Options{AllowFullIntoEmpty: true}}, "",
			[]string{"full>@z8r-b"}, true, true},
		{"target empty allowed nothing to send",
			Input{Source: src(f), TargetExists: true, Options: Options{AllowFullIntoEmpty: true}}, "",
			[]string{}, false, false},
		{"target with only bookmarks counts as empty",
			Input{Source: src(a), Target: []Snapshot{bookmark(x)}, TargetExists: true, Options: Options{AllowFullIntoEmpty: true}}, "",
			[]string{"full>@z8r-a"}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srcBefore := append([]Snapshot(nil), tc.in.Source...)
			p, err := Compute(tc.in)
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			base := ""
			if p.Base != nil {
				base = p.Base.String()
			}
			if base != tc.base {
				t.Errorf("base = %q, want %q", base, tc.base)
			}
			if got := steps(p); !reflect.DeepEqual(got, tc.steps) {
				t.Errorf("steps = %v, want %v", got, tc.steps)
			}
			if p.Full() != tc.full || p.IntoExisting != tc.into || p.UpToDate() != (len(tc.steps) == 0) {
				t.Errorf("Full=%v IntoExisting=%v UpToDate=%v, want %v %v %v", p.Full(), p.IntoExisting, p.UpToDate(), tc.full, tc.into, len(tc.steps) == 0)
			}
			checkChain(t, p)
			if !reflect.DeepEqual(srcBefore, tc.in.Source) {
				t.Errorf("input modified")
			}
		})
	}
}

func TestCompute_Conflicts(t *testing.T) {
	b2 := renamed(b, "z8r-b")
	b2.GUID = 0xbad
	tests := []struct {
		name       string
		in         Input
		sentinel   error
		kind       ConflictKind
		base       string
		targetOnly []string
		modified   bool
		msg        string
	}{
		{"target empty", Input{Source: src(a), TargetExists: true},
			ErrTargetNotEmpty, ConflictTargetNotEmpty, "", nil, false, "would replace"},
		{"target empty without source snapshots", Input{TargetExists: true},
			ErrTargetNotEmpty, ConflictTargetNotEmpty, "", nil, false, ""},
		{"no common snapshot", Input{Source: src(a, b), Target: tgt(x)},
			ErrNoCommonSnapshot, ConflictNoCommonSnapshot, "", []string{"@z8r-x"}, false, "@z8r-x"},
		{"no source snapshots", Input{Target: tgt(a)},
			ErrNoCommonSnapshot, ConflictNoCommonSnapshot, "", []string{"@z8r-a"}, false, ""},
		{"same name other GUID is not common", Input{Source: src(a, b), Target: tgt(renamed(x, "z8r-a"))},
			ErrNoCommonSnapshot, ConflictNoCommonSnapshot, "", []string{"@z8r-a"}, false, ""},
		{"same name other GUID after a common one", Input{Source: src(a, b, c), Target: tgt(a, foreign(b2))},
			ErrDiverged, ConflictDiverged, "@z8r-a", []string{"@z8r-b"}, false, "target-only snapshots [@z8r-b]"},
		{"diverged target-only snapshot", Input{Source: src(a, b, c), Target: tgt(a, b, m)},
			ErrDiverged, ConflictDiverged, "@z8r-b", []string{"@manual"}, false, "after common snapshot @z8r-b"},
		{"diverged though up to date otherwise", Input{Source: src(a, b), Target: tgt(a, b, m)},
			ErrDiverged, ConflictDiverged, "@z8r-b", []string{"@manual"}, false, ""},
		{"diverged by writes", Input{Source: src(a, b), Target: tgt(a), TargetModified: true},
			ErrDiverged, ConflictDiverged, "@z8r-a", nil, true, "written since"},
		{"diverged from a bookmark base", Input{Source: src(bookmark(a), b), Target: tgt(a, m)},
			ErrDiverged, ConflictDiverged, "#z8r-a", []string{"@manual"}, false, ""},
		{"diverged: owned and foreign target-only", Input{Source: src(a, b), Target: tgt(a, x, m)},
			ErrDiverged, ConflictDiverged, "@z8r-a", []string{"@z8r-x", "@manual"}, false, ""},
		{"diverged: source lost snapshots but target also written", Input{Source: src(a, b), Target: tgt(a, x), TargetModified: true},
			ErrDiverged, ConflictDiverged, "@z8r-a", []string{"@z8r-x"}, true, "written since"},
		{"source lost the target's newest", Input{Source: src(a, b), Target: tgt(a, b, x)},
			ErrSourceLost, ConflictSourceLost, "@z8r-b", []string{"@z8r-x"}, false, "exist only on the target"},
		{"source lost several (operator rolled the source back)", Input{Source: src(a), Target: tgt(a, b, c)},
			ErrSourceLost, ConflictSourceLost, "@z8r-a", []string{"@z8r-b", "@z8r-c"}, false, "[@z8r-b @z8r-c]"},
		{"source lost snapshots, new ones taken since", Input{Source: src(a, d), Target: tgt(a, b, c)},
			ErrSourceLost, ConflictSourceLost, "@z8r-a", []string{"@z8r-b", "@z8r-c"}, false, ""},
		{"source lost with a bookmark base", Input{Source: src(bookmark(a), d), Target: tgt(a, x)},
			ErrSourceLost, ConflictSourceLost, "#z8r-a", []string{"@z8r-x"}, false, ""},
		{"same name other GUID, owned: source lost it", Input{Source: src(a, b, c), Target: tgt(a, b2)},
			ErrSourceLost, ConflictSourceLost, "@z8r-a", []string{"@z8r-b"}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compute(tc.in)
			if err == nil {
				t.Fatalf("Compute = %v, want error", steps(p))
			}
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %v does not match %v", err, tc.sentinel)
			}
			for _, other := range []error{ErrNoCommonSnapshot, ErrDiverged, ErrTargetNotEmpty, ErrTargetNewer, ErrSourceLost} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Fatalf("error %v also matches %v", err, other)
				}
			}
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Kind != tc.kind {
				t.Fatalf("error %#v, want *ConflictError of kind %v", err, tc.kind)
			}
			base := ""
			if ce.Base != nil {
				base = ce.Base.String()
			}
			var only []string
			for _, s := range ce.TargetOnly {
				only = append(only, s.String())
			}
			if base != tc.base || !reflect.DeepEqual(only, tc.targetOnly) || ce.Modified != tc.modified {
				t.Fatalf("conflict base=%q targetOnly=%v modified=%v, want %q %v %v", base, only, ce.Modified, tc.base, tc.targetOnly, tc.modified)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not contain %q", err.Error(), tc.msg)
			}
		})
	}
}

func TestConflictError_LongListTruncated(t *testing.T) {
	var many []Snapshot
	for i := range 25 {
		many = append(many, snap("t", uint64(1000+i), uint64(i+1)))
	}
	_, err := Compute(Input{Source: src(a), Target: many})
	if err == nil || !strings.Contains(err.Error(), "and 15 more") {
		t.Fatalf("error = %v", err)
	}
}

func TestDiverged_Cases(t *testing.T) {
	mine := received(x, 2000)
	theirs := foreign(renamed(snap("manual", 0x77, 1), "manual"))
	tests := []struct {
		name      string
		in        Input
		want      bool
		onlyOwned bool
		base      string
		kind      ConflictKind
	}{
		{"up to date", Input{Source: src(a, b), Target: tgt(a, b)}, false, false, "", 0},
		{"behind", Input{Source: src(a, b, c), Target: tgt(a)}, false, false, "", 0},
		{"target missing", Input{Source: src(a)}, false, false, "", 0},
		{"no common snapshot", Input{Source: src(a), Target: tgt(x)}, false, false, "", 0},
		{"owned target-only: source lost it", Input{Source: src(a, b), Target: append(tgt(a), mine)}, true, true, "@z8r-a", ConflictSourceLost},
		{"foreign target-only", Input{Source: src(a, b), Target: append(tgt(a), received(theirs, 2000))}, true, false, "@z8r-a", ConflictDiverged},
		{"owned and foreign target-only", Input{Source: src(a, b), Target: append(tgt(a), mine, received(theirs, 2001))}, true, false, "@z8r-a", ConflictDiverged},
		{"owned target-only and written", Input{Source: src(a, b), Target: append(tgt(a), mine), TargetModified: true}, true, true, "@z8r-a", ConflictDiverged},
		{"written", Input{Source: src(a, b), Target: tgt(a, b), TargetModified: true}, true, true, "@z8r-b", ConflictDiverged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dv := Diverged(tc.in)
			if (dv != nil) != tc.want {
				t.Fatalf("Diverged = %+v, want diverged=%v", dv, tc.want)
			}
			if dv == nil {
				return
			}
			if dv.OnlyOwned() != tc.onlyOwned || dv.Base.String() != tc.base || dv.Kind() != tc.kind {
				t.Fatalf("OnlyOwned=%v base=%v kind=%v, want %v %v %v", dv.OnlyOwned(), dv.Base, dv.Kind(), tc.onlyOwned, tc.base, tc.kind)
			}
			_, err := Compute(tc.in)
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Kind != tc.kind {
				t.Fatalf("Compute error %v, want a %v conflict", err, tc.kind)
			}
			if !reflect.DeepEqual(ce, dv.Err()) {
				t.Fatalf("Compute conflict %+v, Divergence.Err %+v", ce, dv.Err())
			}
		})
	}
}

// TestCompute_SourceLostNeverAutoResolved is issue 15 case 4's pure half:
// a target whose newer snapshots are all ones z8r received from this
// source (the source lost them: a failback, an operator's rollback) is not
// "diverged", so a rollback-diverged policy (which acts on ErrDiverged)
// never destroys the only copy of that tail. The old planner called it
// ErrDiverged with OnlyOwned true: exactly what rollback-diverged rolled
// back.
func TestCompute_SourceLostNeverAutoResolved(t *testing.T) {
	e := snap("z8r-e", 0xe, 50)
	in := Input{Source: src(a, b, e), Target: tgt(a, b, c, d)}
	tests := []struct {
		name string
		plan func() (Plan, error)
	}{
		{"Compute", func() (Plan, error) { return Compute(in) }},
		{"ComputeSnapshot", func() (Plan, error) { return ComputeSnapshot(in, "z8r-e") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.plan()
			if !errors.Is(err, ErrSourceLost) || errors.Is(err, ErrDiverged) {
				t.Fatalf("plan %v, error %v: want ErrSourceLost and not ErrDiverged", steps(p), err)
			}
			if !strings.Contains(err.Error(), "[@z8r-c @z8r-d] exist only on the target") {
				t.Fatalf("message %q does not name the target-only snapshots", err)
			}
		})
	}
}

func TestConflictKind_String(t *testing.T) {
	for k, want := range map[ConflictKind]string{
		ConflictNoCommonSnapshot: "NoCommonSnapshot",
		ConflictDiverged:         "Diverged",
		ConflictTargetNotEmpty:   "TargetNotEmpty",
		ConflictTargetNewer:      "TargetNewer",
		ConflictSourceLost:       "SourceLost",
		ConflictKind(9):          "ConflictKind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}
