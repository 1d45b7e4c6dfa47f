package retention

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "base seed of the property tests (0: random, printed on failure)")

// propertyCases is how many random histories TestPrune_Properties checks.
const propertyCases = 5000

func baseSeed() uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	return rand.Uint64()
}

// pruneCase is one random pruning situation. snaps are generated oldest
// first (the order Prune must derive from CreateTXG, or from Creation when
// some CreateTXG is zero), then shuffled.
type pruneCase struct {
	snaps     []Snapshot // oldest first
	shuffled  []Snapshot
	policy    Policy
	now       time.Time
	held      map[string]bool
	lastKnown []uint64 // GUIDs of the targets' last known snapshots
}

func (c pruneCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  policy %q now %s lastKnown %v\n", c.policy, c.now.Format(time.RFC3339), c.lastKnown)
	for _, s := range c.snaps {
		fmt.Fprintf(&b, "  %s guid=%d txg=%d created=%s owned=%v held=%v\n", s.Name, s.GUID, s.CreateTXG, s.Creation.Format(time.RFC3339), s.Owned, c.held[s.Name])
	}
	return b.String()
}

var lengths = []time.Duration{30 * time.Minute, time.Hour, 6 * time.Hour, dayLen, weekLen}

func randomPolicy(r *rand.Rand) Policy {
	if r.IntN(20) == 0 {
		return Policy{}
	}
	var rules []Rule
	for range 1 + r.IntN(3) {
		switch x := r.IntN(10); {
		case x < 4:
			rules = append(rules, LastN{N: 1 + r.IntN(6)})
		case x < 5 && r.IntN(4) == 0:
			rules = append(rules, KeepAllRule{})
		default:
			var g Grid
			for range 1 + r.IntN(3) {
				iv := Interval{Count: 1 + r.IntN(6), Length: lengths[r.IntN(len(lengths))], Keep: 1}
				switch r.IntN(4) {
				case 0:
					iv.Keep = KeepAll
				case 1:
					iv.Keep = 2
				}
				g.Intervals = append(g.Intervals, iv)
			}
			rules = append(rules, g)
		}
	}
	return NewPolicy(rules...)
}

func randomPruneCase(r *rand.Rand) pruneCase {
	c := pruneCase{policy: randomPolicy(r), held: map[string]bool{}}
	n := r.IntN(30)
	noTXG := r.IntN(8) == 0 // a source of snapshots without createtxg (VolumeSnapshots)
	at := t0.Add(-time.Duration(r.IntN(90*24)) * time.Hour)
	for i := range n {
		// Mostly a few hours apart; sometimes the clock stepped back (only
		// where CreateTXG gives the order).
		step := time.Duration(r.IntN(12*60)+1) * time.Minute
		if !noTXG && r.IntN(10) == 0 {
			step = -step
		}
		at = at.Add(step)
		s := Snapshot{Name: fmt.Sprintf("s%02d", i), GUID: uint64(100 + i), Creation: at, CreateTXG: uint64(10 * (i + 1)), Owned: r.IntN(5) != 0}
		if noTXG {
			s.CreateTXG = 0
		}
		if r.IntN(40) == 0 {
			s.Creation = time.Time{}
		}
		if r.IntN(8) == 0 {
			c.held[s.Name] = true
		}
		c.snaps = append(c.snaps, s)
	}
	if noTXG {
		// Without createtxg the order is Creation's; keep it unambiguous.
		c.snaps = slices.DeleteFunc(c.snaps, func(s Snapshot) bool { return s.Creation.IsZero() })
	}
	// Two targets' last known snapshots: usually recent ones, sometimes a
	// GUID the source no longer has, sometimes none yet.
	for range r.IntN(3) {
		switch {
		case len(c.snaps) > 0 && r.IntN(4) != 0:
			c.lastKnown = append(c.lastKnown, c.snaps[max(0, len(c.snaps)-1-r.IntN(6))].GUID)
		case r.IntN(2) == 0:
			c.lastKnown = append(c.lastKnown, 99999)
		default:
			c.lastKnown = append(c.lastKnown, 0)
		}
	}
	if r.IntN(30) == 0 && len(c.snaps) > 0 {
		c.snaps[r.IntN(len(c.snaps))].GUID = 0 // identity unknown
	}
	newest := t0
	for _, s := range c.snaps {
		if s.Creation.After(newest) {
			newest = s.Creation
		}
	}
	c.now = newest.Add(time.Duration(r.IntN(24*20)-2) * time.Hour)
	c.shuffled = slices.Clone(c.snaps)
	r.Shuffle(len(c.shuffled), func(i, j int) { c.shuffled[i], c.shuffled[j] = c.shuffled[j], c.shuffled[i] })
	return c
}

// keptByRules is an independent, naive reading of the rules: which of
// owned (oldest first) some rule keeps, with the grid anchored at the
// newest owned creation time, not after now.
func keptByRules(p Policy, owned []Snapshot, now time.Time) map[string]bool {
	kept := map[string]bool{}
	var anchor time.Time
	for _, s := range owned {
		if s.Creation.After(anchor) {
			anchor = s.Creation
		}
	}
	if anchor.After(now) {
		anchor = now
	}
	for _, rule := range p.Rules() {
		switch r := rule.(type) {
		case LastN:
			for i := len(owned) - 1; i >= 0 && i >= len(owned)-r.N; i-- {
				kept[owned[i].Name] = true
			}
		case KeepAllRule:
			for _, s := range owned {
				kept[s.Name] = true
			}
		case Grid:
			start := time.Duration(0)
			for _, iv := range r.Intervals {
				for range iv.Count {
					end := start + iv.Length
					seen := 0
					for _, s := range owned {
						if s.Creation.IsZero() {
							continue
						}
						age := max(anchor.Sub(s.Creation), 0)
						if age < start || age >= end {
							continue
						}
						if iv.Keep == KeepAll || seen < iv.Keep {
							kept[s.Name] = true
						}
						seen++
					}
					start = end
				}
			}
		default:
			panic(fmt.Sprintf("unknown rule %T", rule))
		}
	}
	return kept
}

func checkPrune(c pruneCase) error {
	var opts []Option
	if len(c.lastKnown) > 0 {
		opts = append(opts, KeepGUIDs(c.lastKnown...))
	}
	input := slices.Clone(c.shuffled)
	got := Prune(c.shuffled, c.policy, c.now, func(s Snapshot) bool { return c.held[s.Name] }, opts...)
	if !slices.Equal(input, c.shuffled) {
		return fmt.Errorf("input modified")
	}
	var owned []Snapshot
	for _, s := range c.snaps {
		if s.Owned {
			owned = append(owned, s)
		}
	}
	lastKnown := map[uint64]bool{}
	for _, g := range c.lastKnown {
		if g != 0 {
			lastKnown[g] = true
		}
	}
	destroyed := map[string]bool{}
	for i, s := range got {
		if destroyed[s.Name] {
			return fmt.Errorf("%s selected twice", s.Name)
		}
		destroyed[s.Name] = true
		switch {
		case !slices.Contains(c.snaps, s):
			return fmt.Errorf("selected %+v, not an input snapshot", s)
		case !s.Owned:
			return fmt.Errorf("selected %s, which is not owned", s.Name)
		case c.held[s.Name]:
			return fmt.Errorf("selected %s, which is held", s.Name)
		case lastKnown[s.GUID]:
			return fmt.Errorf("selected %s, a target's last known snapshot (guid %d)", s.Name, s.GUID)
		case len(lastKnown) > 0 && s.GUID == 0:
			return fmt.Errorf("selected %s, of unknown GUID, while targets' last known GUIDs are given", s.Name)
		case s.Name == owned[len(owned)-1].Name:
			return fmt.Errorf("selected %s, the newest owned snapshot", s.Name)
		case s.Creation.IsZero():
			return fmt.Errorf("selected %s, of unknown age", s.Name)
		case i > 0 && slices.Index(c.snaps, s) < slices.Index(c.snaps, got[i-1]):
			return fmt.Errorf("not oldest first: %s after %s", s.Name, got[i-1].Name)
		}
	}
	if c.policy.IsZero() {
		if len(got) > 0 {
			return fmt.Errorf("the zero policy destroys %v", names(got))
		}
		return nil
	}
	// A snapshot is destroyed exactly when no rule keeps it and nothing
	// above protects it.
	kept := keptByRules(c.policy, owned, c.now)
	for i, s := range owned {
		protected := i == len(owned)-1 || c.held[s.Name] || lastKnown[s.GUID] || (len(lastKnown) > 0 && s.GUID == 0) || s.Creation.IsZero()
		switch {
		case kept[s.Name] && destroyed[s.Name]:
			return fmt.Errorf("destroys %s, which a rule of %q keeps", s.Name, c.policy)
		case !kept[s.Name] && !protected && !destroyed[s.Name]:
			return fmt.Errorf("keeps %s, which no rule of %q keeps and nothing protects", s.Name, c.policy)
		}
	}
	return nil
}

// TestPrune_Properties checks Prune on random histories, policies, holds
// and targets' last known snapshots: it never selects the newest owned
// snapshot, a held one, one that is not owned, or a configured target's
// last known snapshot (by GUID); and it destroys a snapshot exactly when
// no rule keeps it (against a naive reading of the rules).
func TestPrune_Properties(t *testing.T) {
	seed := baseSeed()
	var pruned, protectedByGUID int
	for i := range propertyCases {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		c := randomPruneCase(r)
		if err := checkPrune(c); err != nil {
			t.Fatalf("seed %d case %d: %v\n%v(replay: go test ./internal/retention -run TestPrune_Properties -seed %d)", seed, i, err, c, seed)
		}
		got := Prune(c.shuffled, c.policy, c.now, func(s Snapshot) bool { return c.held[s.Name] })
		pruned += len(got)
		for _, s := range got {
			if slices.Contains(c.lastKnown, s.GUID) {
				protectedByGUID++
			}
		}
	}
	// The generator must make Prune work, and make KeepGUIDs matter.
	if pruned < propertyCases || protectedByGUID < propertyCases/50 {
		t.Fatalf("seed %d: weak generator: %d snapshots pruned, %d saved only by KeepGUIDs", seed, pruned, protectedByGUID)
	}
}

// TestPrune_KeepGUIDs is the example behind the property: a target's last
// known snapshot survives even when it lost its hold and the policy drops
// it.
func TestPrune_KeepGUIDs(t *testing.T) {
	s := snaps(d(3), d(2), d(1), 0)
	for i := range s {
		s[i].GUID = uint64(i + 1)
	}
	tests := []struct {
		name string
		opts []Option
		want []Snapshot
	}{
		{"no targets", nil, s[:3]},
		{"a target's last known", []Option{KeepGUIDs(2)}, []Snapshot{s[0], s[2]}},
		{"two targets", []Option{KeepGUIDs(2), KeepGUIDs(1, 0)}, s[2:3]},
		{"unknown GUIDs ignored", []Option{KeepGUIDs(0, 77)}, s[:3]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Prune(s, mustParse(t, "last=1"), t0, nil, tc.opts...)
			if !slices.Equal(names(got), names(tc.want)) {
				t.Fatalf("destroy %v, want %v", names(got), names(tc.want))
			}
		})
	}
	// A snapshot whose GUID the caller did not fill could be a target's
	// base: kept while any GUID is protected.
	unknown := slices.Clone(s)
	unknown[1].GUID = 0
	if got := Prune(unknown, mustParse(t, "last=1"), t0, nil, KeepGUIDs(3)); !slices.Equal(names(got), names(s[:1])) {
		t.Fatalf("destroy %v, want %v", names(got), names(s[:1]))
	}
}
