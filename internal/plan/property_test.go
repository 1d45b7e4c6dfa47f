package plan

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "base seed of the property tests (0: random, printed on failure)")

// propertyCases is how many random histories each property test checks.
const propertyCases = 5000

// baseSeed returns -seed, or a fresh random seed.
func baseSeed() uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	return rand.Uint64()
}

// history is one random replication history, told as the story it
// simulates so that a failure can be read.
type history struct {
	in    Input
	story []string
}

func (h history) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s\n", strings.Join(h.story, "; "))
	fmt.Fprintf(&b, "  options %+v modified=%v exists=%v\n", h.in.Options, h.in.TargetModified, h.in.TargetExists)
	for _, side := range []struct {
		name string
		s    []Snapshot
	}{{"source", h.in.Source}, {"target", h.in.Target}} {
		fmt.Fprintf(&b, "  %s:", side.name)
		for _, s := range side.s {
			own := ""
			if s.Owned {
				own = "*"
			}
			fmt.Fprintf(&b, " %s%s(guid=%d,txg=%d)", s, own, s.GUID, s.CreateTXG)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// randomHistory builds a source history of snapshots (some owned, some
// later bookmarked or destroyed), a target that received some of them in
// order (by GUID, with its own createtxg), and optionally target-only
// snapshots (an operator's, or ones the source has since lost), writes on
// the target, and random options. Inputs are shuffled: order must not
// matter.
func randomHistory(r *rand.Rand) history {
	var h history
	n := r.IntN(10)
	all := make([]Snapshot, n)
	for i := range all {
		all[i] = Snapshot{
			Name: fmt.Sprintf("s%d", i), GUID: uint64(1000 + i), CreateTXG: uint64(10 * (i + 1)),
			Creation: t0.Add(time.Duration(i) * time.Hour), Owned: r.IntN(4) != 0,
		}
	}
	// The target received a prefix of the history: each of all[:k] that it
	// still has (target retention may have pruned some).
	k := r.IntN(n + 1)
	var target []Snapshot
	txg := uint64(5)
	nextGUID := uint64(5000)
	extra := func(owned bool) {
		txg += 1 + r.Uint64N(3)
		name := "manual"
		if owned {
			name = "lost"
		}
		target = append(target, Snapshot{Name: fmt.Sprintf("%s%d", name, nextGUID), GUID: nextGUID, CreateTXG: txg, Owned: owned})
		nextGUID++
	}
	for _, s := range all[:k] {
		if r.IntN(8) == 0 {
			extra(r.IntN(2) == 0) // a target-only snapshot between received ones
			h.story = append(h.story, "target snapshot between receives")
		}
		if r.IntN(5) != 0 {
			txg += 1 + r.Uint64N(3)
			rs := s
			rs.CreateTXG = txg
			target = append(target, rs)
		}
	}
	h.story = append(h.story, fmt.Sprintf("target received %d of %d", k, n))
	switch r.IntN(5) {
	case 0:
		for range 1 + r.IntN(3) {
			extra(false)
		}
		h.story = append(h.story, "operator snapshots on target")
	case 1:
		// The source lost snapshots the target received from it: GUIDs
		// the source no longer lists (also happens below, when the
		// source destroys received snapshots without a bookmark).
		for range 1 + r.IntN(3) {
			extra(true)
		}
		h.story = append(h.story, "source lost snapshots")
	case 2:
		extra(r.IntN(2) == 0)
		extra(r.IntN(2) == 0)
		h.story = append(h.story, "mixed target-only snapshots")
	}
	if r.IntN(10) == 0 && len(target) > 0 {
		target = append(target, Snapshot{Name: "tbm", GUID: target[0].GUID, CreateTXG: target[0].CreateTXG, Bookmark: true})
	}
	// The source: each snapshot kept, bookmarked, both, or destroyed.
	var source []Snapshot
	for _, s := range all {
		switch f := r.IntN(20); {
		case f < 12:
			source = append(source, s)
		case f < 15:
			source = append(source, bookmark(s))
		case f < 17:
			source = append(source, s, bookmark(s))
		default:
			// destroyed
		}
	}
	r.Shuffle(len(source), func(i, j int) { source[i], source[j] = source[j], source[i] })
	r.Shuffle(len(target), func(i, j int) { target[i], target[j] = target[j], target[i] })
	h.in = Input{
		Source: source, Target: target,
		TargetExists:   len(target) > 0 || r.IntN(2) == 0,
		TargetModified: len(target) > 0 && r.IntN(6) == 0,
		Options: Options{
			IncludeForeign:     r.IntN(3) == 0,
			InitialAll:         r.IntN(3) == 0,
			AllowFullIntoEmpty: r.IntN(2) == 0,
		},
	}
	return h
}

// expectation is what an independent reading of the contract says Compute
// must return.
type expectation struct {
	kind       ConflictKind // 0: a plan
	targetSnap []Snapshot   // the target's snapshots, oldest first
	newest     *Snapshot    // the target's newest snapshot
	commonIdx  int          // index in targetSnap of the newest common snapshot, -1 if none
}

func expect(in Input) expectation {
	var ts []Snapshot
	for _, s := range in.Target {
		if !s.Bookmark {
			ts = append(ts, s)
		}
	}
	slices.SortFunc(ts, func(a, b Snapshot) int { return cmp.Compare(a.CreateTXG, b.CreateTXG) })
	e := expectation{targetSnap: ts, commonIdx: -1}
	if len(ts) == 0 {
		if in.TargetExists && !in.Options.AllowFullIntoEmpty {
			e.kind = ConflictTargetNotEmpty
		}
		return e
	}
	e.newest = &ts[len(ts)-1]
	onSource := map[uint64]bool{}
	for _, s := range in.Source {
		onSource[s.GUID] = true
	}
	for i, s := range ts {
		if onSource[s.GUID] {
			e.commonIdx = i
		}
	}
	if e.commonIdx < 0 {
		e.kind = ConflictNoCommonSnapshot
		return e
	}
	newer := ts[e.commonIdx+1:]
	switch {
	case len(newer) == 0 && !in.TargetModified:
	case len(newer) > 0 && !in.TargetModified && allOwned(newer):
		e.kind = ConflictSourceLost
	default:
		e.kind = ConflictDiverged
	}
	return e
}

func allOwned(s []Snapshot) bool {
	for _, x := range s {
		if !x.Owned {
			return false
		}
	}
	return true
}

// sourceEntry finds the source's entry of a base: the snapshot of that
// GUID, or else its bookmark.
func sourceEntry(src []Snapshot, guid uint64) (Snapshot, bool) {
	var bm *Snapshot
	for i, s := range src {
		if s.GUID != guid {
			continue
		}
		if !s.Bookmark {
			return s, true
		}
		bm = &src[i]
	}
	if bm != nil {
		return *bm, true
	}
	return Snapshot{}, false
}

// checkBase: the base is on both sides (a target snapshot, and the
// source's entry of the same GUID, the snapshot in preference to a
// bookmark), and is the target's newest snapshot: nothing is ever sent
// into a target that has snapshots the source lacks.
func checkBase(in Input, e expectation, p Plan) error {
	if e.newest == nil {
		if p.Base != nil {
			return fmt.Errorf("base %v, but the target has no snapshots", p.Base)
		}
		return nil
	}
	if p.Base == nil {
		return fmt.Errorf("no base, but the target has snapshots")
	}
	want, ok := sourceEntry(in.Source, p.Base.GUID)
	if !ok || want != *p.Base {
		return fmt.Errorf("base %v (guid %d) is not the source's entry %v of that GUID", p.Base, p.Base.GUID, want)
	}
	if p.Base.GUID != e.newest.GUID {
		return fmt.Errorf("base %v is not the target's newest snapshot %v", p.Base, e.newest)
	}
	return nil
}

// checkSteps: every step's From is the previous step's To (the first one's
// the base), the To's are source snapshots in strictly increasing
// createtxg after the base, never a bookmark.
func checkSteps(in Input, p Plan) error {
	for i, s := range p.Steps {
		var from *Snapshot
		if i == 0 {
			from = p.Base
		} else {
			from = &p.Steps[i-1].To
		}
		if (s.From == nil) != (from == nil) || (from != nil && *s.From != *from) {
			return fmt.Errorf("step %d from %v, want %v", i, s.From, from)
		}
		if s.To.Bookmark {
			return fmt.Errorf("step %d sends bookmark %v", i, s.To)
		}
		if from != nil && s.To.CreateTXG <= from.CreateTXG {
			return fmt.Errorf("step %d: %v (txg %d) not after %v (txg %d)", i, s.To, s.To.CreateTXG, from, from.CreateTXG)
		}
		if !slices.Contains(in.Source, s.To) {
			return fmt.Errorf("step %d sends %v, not a source snapshot", i, s.To)
		}
	}
	return nil
}

func checkCompute(in Input) error {
	before := slices.Clone(in.Source)
	beforeT := slices.Clone(in.Target)
	p, err := Compute(in)
	if !slices.Equal(before, in.Source) || !slices.Equal(beforeT, in.Target) {
		return fmt.Errorf("input modified")
	}
	e := expect(in)
	if e.kind != 0 {
		var ce *ConflictError
		if !errors.As(err, &ce) || ce.Kind != e.kind {
			return fmt.Errorf("got plan %v, error %v; want a %v conflict", steps(p), err, e.kind)
		}
		if e.kind == ConflictDiverged || e.kind == ConflictSourceLost {
			wantOnly := e.targetSnap[e.commonIdx+1:]
			if !slices.Equal(ce.TargetOnly, wantOnly) || ce.Base == nil || ce.Base.GUID != e.targetSnap[e.commonIdx].GUID {
				return fmt.Errorf("conflict base %v target-only %v, want guid %d and %v", ce.Base, ce.TargetOnly, e.targetSnap[e.commonIdx].GUID, wantOnly)
			}
			dv := Diverged(in)
			if dv == nil || !reflect.DeepEqual(dv.Err(), ce) {
				return fmt.Errorf("Diverged %+v disagrees with Compute's %+v", dv, ce)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("error %v, want a plan", err)
	}
	if dv := Diverged(in); dv != nil {
		return fmt.Errorf("planned, but Diverged reports %+v", dv)
	}
	if err := checkBase(in, e, p); err != nil {
		return err
	}
	if err := checkSteps(in, p); err != nil {
		return err
	}
	if p.Full() != (p.Base == nil && len(p.Steps) > 0) || p.IntoExisting != (p.Full() && in.TargetExists) {
		return fmt.Errorf("Full=%v IntoExisting=%v with base %v", p.Full(), p.IntoExisting, p.Base)
	}
	// What is sent: every eligible source snapshot after the base, or for
	// an initial replication the newest eligible one (all with
	// InitialAll).
	var eligible []Snapshot
	for _, s := range sorted(in.Source) {
		if !s.Bookmark && (s.Owned || in.Options.IncludeForeign) && (p.Base == nil || s.CreateTXG > p.Base.CreateTXG) {
			eligible = append(eligible, s)
		}
	}
	if p.Base == nil && !in.Options.InitialAll && len(eligible) > 0 {
		eligible = eligible[len(eligible)-1:]
	}
	var sent []Snapshot
	for _, s := range p.Steps {
		sent = append(sent, s.To)
	}
	if !slices.Equal(sent, eligible) {
		return fmt.Errorf("sends %v, want %v", sent, eligible)
	}
	return nil
}

func checkComputeSnapshot(in Input, name string) error {
	p, err := ComputeSnapshot(in, name)
	var want *Snapshot
	for _, s := range in.Source {
		if !s.Bookmark && s.Name == name {
			want = &s
		}
	}
	if want == nil {
		if !errors.Is(err, ErrSnapshotMissing) {
			return fmt.Errorf("@%s not on the source: plan %v, error %v", name, steps(p), err)
		}
		return nil
	}
	e := expect(in)
	for _, t := range e.targetSnap {
		if t.GUID == want.GUID {
			if err != nil || len(p.Steps) > 0 {
				return fmt.Errorf("@%s already on the target: plan %v, error %v", name, steps(p), err)
			}
			if e.commonIdx >= 0 && (p.Base == nil || p.Base.GUID != e.targetSnap[e.commonIdx].GUID) {
				return fmt.Errorf("@%s already on the target: base %v, want the newest common", name, p.Base)
			}
			return nil
		}
	}
	if e.kind == 0 && e.newest != nil {
		if base, ok := sourceEntry(in.Source, e.newest.GUID); ok && base.CreateTXG >= want.CreateTXG {
			e.kind = ConflictTargetNewer
		}
	}
	if e.kind != 0 {
		var ce *ConflictError
		if !errors.As(err, &ce) || ce.Kind != e.kind {
			return fmt.Errorf("@%s: plan %v, error %v; want a %v conflict", name, steps(p), err, e.kind)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("@%s: error %v, want a plan", name, err)
	}
	if err := checkBase(in, e, p); err != nil {
		return fmt.Errorf("@%s: %w", name, err)
	}
	if err := checkSteps(in, p); err != nil {
		return fmt.Errorf("@%s: %w", name, err)
	}
	if len(p.Steps) != 1 || p.Steps[0].To != *want {
		return fmt.Errorf("@%s: plan %v, want one step to it", name, steps(p))
	}
	return nil
}

// TestCompute_Properties checks Compute, ComputeSnapshot and Diverged on
// random histories against an independent reading of the contract: the
// base is on both sides and is the target's newest snapshot; steps chain
// from it in strictly increasing createtxg and send exactly the eligible
// snapshots; a Diverged or SourceLost conflict comes exactly when the
// target has snapshots newer than the newest common one (or was written),
// SourceLost exactly when those are all z8r's of this replication and the
// target was not written.
func TestCompute_Properties(t *testing.T) {
	seed := baseSeed()
	kinds := map[ConflictKind]int{}
	for i := range propertyCases {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		h := randomHistory(r)
		kinds[expect(h.in).kind]++
		err := checkCompute(h.in)
		if err == nil {
			var names []string
			for _, s := range h.in.Source {
				names = append(names, s.Name)
			}
			names = append(names, "absent")
			err = checkComputeSnapshot(h.in, names[r.IntN(len(names))])
		}
		if err != nil {
			t.Fatalf("seed %d case %d: %v\n%v(replay: go test ./internal/plan -run TestCompute_Properties -seed %d)", seed, i, err, h, seed)
		}
	}
	// The generator must reach every outcome, or the properties are
	// checked on too little.
	for _, k := range []ConflictKind{0, ConflictNoCommonSnapshot, ConflictDiverged, ConflictSourceLost, ConflictTargetNotEmpty} {
		if kinds[k] < propertyCases/100 {
			t.Errorf("seed %d: only %d of %d histories have outcome %v", seed, kinds[k], propertyCases, k)
		}
	}
}
