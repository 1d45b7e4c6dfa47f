package retention

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Default policies (see the package documentation for why).
const (
	DefaultSource = "1x1d(keep=all) | 7x1d | 4x1w"
	DefaultTarget = DefaultSource
)

// KeepAll as Interval.Keep keeps every snapshot in the interval.
const KeepAll = -1

// Limits that keep arithmetic far from overflow.
const (
	maxN    = 1_000_000
	maxSpan = 100 * 365 * 24 * time.Hour
	dayLen  = 24 * time.Hour
	weekLen = 7 * dayLen
)

// Snapshot is what pruning needs to know about a snapshot.
type Snapshot struct {
	Name string
	// GUID identifies the snapshot for KeepGUIDs; zero if unknown.
	GUID      uint64
	Creation  time.Time
	CreateTXG uint64
	// Owned: z8r's, of the replication being pruned (the caller sets it
	// from snapname.IsOwnedBy on locally set properties). Rules see only
	// owned snapshots; the others are always kept.
	Owned bool
}

// An Option adds to what Prune keeps whatever the policy says.
type Option func(*options)

type options struct {
	keepGUIDs map[uint64]bool
}

// KeepGUIDs makes Prune keep every snapshot whose GUID is one of guids.
// Pass the GUID of every configured target's last known snapshot (the
// newest snapshot each target was last seen to have): that snapshot, or
// its bookmark, is the next incremental's base for that target, and
// destroying it would force a full resend. Zero GUIDs are ignored; while
// any GUID is given, an owned snapshot whose own GUID is zero (unknown) is
// kept too, since it could be one of them.
func KeepGUIDs(guids ...uint64) Option {
	return func(o *options) {
		for _, g := range guids {
			if g == 0 {
				continue
			}
			if o.keepGUIDs == nil {
				o.keepGUIDs = map[uint64]bool{}
			}
			o.keepGUIDs[g] = true
		}
	}
}

// keeps reports whether the options protect s.
func (o options) keeps(s Snapshot) bool {
	return len(o.keepGUIDs) > 0 && (s.GUID == 0 || o.keepGUIDs[s.GUID])
}

// Rule is one retention rule: LastN, KeepAllRule or Grid.
type Rule interface {
	String() string
	// keep marks, in owned (sorted oldest first), the snapshots this rule
	// keeps. anchor is the grid's reference time.
	keep(owned []Snapshot, anchor time.Time, kept []bool)
}

// LastN keeps the N newest owned snapshots.
type LastN struct{ N int }

func (r LastN) String() string { return "last=" + strconv.Itoa(r.N) }

func (r LastN) keep(owned []Snapshot, _ time.Time, kept []bool) {
	for i := max(0, len(owned)-r.N); i < len(owned); i++ {
		kept[i] = true
	}
}

// KeepAllRule keeps every owned snapshot.
type KeepAllRule struct{}

func (KeepAllRule) String() string { return "all" }

func (KeepAllRule) keep(_ []Snapshot, _ time.Time, kept []bool) {
	for i := range kept {
		kept[i] = true
	}
}

// Interval is Count adjacent intervals of Length, each keeping its Keep
// oldest snapshots (KeepAll: all).
type Interval struct {
	Count  int
	Length time.Duration
	Keep   int
}

func (iv Interval) String() string {
	s := strconv.Itoa(iv.Count) + "x" + formatLength(iv.Length)
	switch iv.Keep {
	case 1:
	case KeepAll:
		s += "(keep=all)"
	default:
		s += "(keep=" + strconv.Itoa(iv.Keep) + ")"
	}
	return s
}

// Grid is a retention grid: its intervals follow each other back in time
// from the anchor.
type Grid struct{ Intervals []Interval }

func (g Grid) String() string {
	parts := make([]string, len(g.Intervals))
	for i, iv := range g.Intervals {
		parts[i] = iv.String()
	}
	return strings.Join(parts, " | ")
}

func (g Grid) keep(owned []Snapshot, anchor time.Time, kept []bool) {
	// Bucket b covers ages [start_b, start_b+length_b); ages below zero
	// (creation after the anchor) count as the first bucket.
	type bucket struct {
		start, end time.Duration
		keep, seen int
	}
	var buckets []bucket
	var start time.Duration
	for _, iv := range g.Intervals {
		for range iv.Count {
			buckets = append(buckets, bucket{start: start, end: start + iv.Length, keep: iv.Keep})
			start += iv.Length
		}
	}
	// owned is oldest first, so the first snapshots a bucket sees are its
	// oldest.
	for i, s := range owned {
		if s.Creation.IsZero() {
			continue
		}
		age := anchor.Sub(s.Creation)
		if age < 0 {
			age = 0
		}
		b := sort.Search(len(buckets), func(j int) bool { return buckets[j].end > age })
		if b == len(buckets) {
			continue // older than the grid
		}
		if buckets[b].keep == KeepAll || buckets[b].seen < buckets[b].keep {
			kept[i] = true
		}
		buckets[b].seen++
	}
}

// Policy is a set of rules; a snapshot is kept if any rule keeps it. The
// zero Policy keeps everything.
type Policy struct {
	rules []Rule
}

// NewPolicy returns a policy of the given rules. Rules built by hand are not
// validated; Parse validates user input.
func NewPolicy(rules ...Rule) Policy { return Policy{rules: append([]Rule(nil), rules...)} }

// Rules returns a copy of the policy's rules.
func (p Policy) Rules() []Rule { return append([]Rule(nil), p.rules...) }

// IsZero reports whether p has no rules (and so keeps everything).
func (p Policy) IsZero() bool { return len(p.rules) == 0 }

// String returns the canonical form: rules joined by "; ", grid intervals by
// " | ", lengths in the largest unit that divides them.
func (p Policy) String() string {
	parts := make([]string, len(p.rules))
	for i, r := range p.rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}

// Prune returns the snapshots of snaps to destroy under p at now, oldest
// first. See the package documentation for the guarantees. protect (which
// may be nil) reports snapshots to keep whatever the policy says: held
// ones, ones being sent; opts add more (KeepGUIDs).
func Prune(snaps []Snapshot, p Policy, now time.Time, protect func(Snapshot) bool, opts ...Option) (destroy []Snapshot) {
	if p.IsZero() {
		return nil
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var owned []Snapshot
	for _, s := range snaps {
		if s.Owned {
			owned = append(owned, s)
		}
	}
	if len(owned) <= 1 {
		return nil
	}
	sortOldestFirst(owned)

	var anchor time.Time
	for _, s := range owned {
		if s.Creation.After(anchor) {
			anchor = s.Creation
		}
	}
	if anchor.After(now) {
		anchor = now
	}

	kept := make([]bool, len(owned))
	for _, r := range p.rules {
		r.keep(owned, anchor, kept)
	}
	kept[len(kept)-1] = true // the newest owned snapshot: next incremental base
	for i, s := range owned {
		if kept[i] || s.Creation.IsZero() || o.keeps(s) || (protect != nil && protect(s)) {
			continue
		}
		destroy = append(destroy, s)
	}
	return destroy
}

func sortOldestFirst(s []Snapshot) {
	byTXG := true
	for _, x := range s {
		if x.CreateTXG == 0 {
			byTXG = false
			break
		}
	}
	sort.SliceStable(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if byTXG && a.CreateTXG != b.CreateTXG {
			return a.CreateTXG < b.CreateTXG
		}
		if !a.Creation.Equal(b.Creation) {
			return a.Creation.Before(b.Creation)
		}
		if a.CreateTXG != b.CreateTXG {
			return a.CreateTXG < b.CreateTXG
		}
		return a.Name < b.Name
	})
}

// Parsing.

// ErrSyntax is matched (errors.Is) by every *SyntaxError.
var ErrSyntax = errors.New("invalid retention policy")

// SyntaxError locates a mistake in a policy.
type SyntaxError struct {
	Spec   string
	Offset int // byte offset in Spec of the offending token
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid retention policy %q at offset %d: %s", e.Spec, e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrSyntax) true for a *SyntaxError.
func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

// Parse reads a policy (grammar in the package documentation).
func Parse(spec string) (Policy, error) {
	if strings.TrimSpace(spec) == "" {
		return Policy{}, &SyntaxError{Spec: spec, Msg: "empty policy (want e.g. \"last=10\" or \"24x1h | 14x1d\")"}
	}
	var p Policy
	for _, f := range split(spec, 0, len(spec), ';') {
		r, err := parseRule(spec, f)
		if err != nil {
			return Policy{}, err
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// field is a trimmed substring of the spec with its offset.
type field struct {
	s   string
	off int
}

// split cuts spec[from:to] at sep and trims each piece.
func split(spec string, from, to int, sep byte) []field {
	var out []field
	start := from
	for i := from; i <= to; i++ {
		if i == to || spec[i] == sep {
			out = append(out, trim(spec, start, i))
			start = i + 1
		}
	}
	return out
}

func trim(spec string, from, to int) field {
	for from < to && isBlank(spec[from]) {
		from++
	}
	for to > from && isBlank(spec[to-1]) {
		to--
	}
	return field{s: spec[from:to], off: from}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func errAt(spec string, off int, format string, args ...any) error {
	return &SyntaxError{Spec: spec, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func parseRule(spec string, f field) (Rule, error) {
	switch {
	case f.s == "":
		return nil, errAt(spec, f.off, "empty rule (a stray ';'?)")
	case f.s == "all":
		return KeepAllRule{}, nil
	case strings.HasPrefix(f.s, "last"):
		rest := trim(spec, f.off+len("last"), f.off+len(f.s))
		if !strings.HasPrefix(rest.s, "=") {
			return nil, errAt(spec, rest.off, "want \"last=N\"")
		}
		num := trim(spec, rest.off+1, rest.off+len(rest.s))
		n, err := parseCount(spec, num, "last=N")
		if err != nil {
			return nil, err
		}
		return LastN{N: n}, nil
	}
	var g Grid
	total := time.Duration(0)
	for _, part := range split(spec, f.off, f.off+len(f.s), '|') {
		iv, err := parseInterval(spec, part)
		if err != nil {
			return nil, err
		}
		if time.Duration(iv.Count) > (maxSpan-total)/iv.Length {
			return nil, errAt(spec, part.off, "the grid spans more than 100 years")
		}
		total += time.Duration(iv.Count) * iv.Length
		g.Intervals = append(g.Intervals, iv)
	}
	return g, nil
}

func parseCount(spec string, f field, what string) (int, error) {
	if f.s == "" {
		return 0, errAt(spec, f.off, "missing number in %s", what)
	}
	for i := 0; i < len(f.s); i++ {
		if f.s[i] < '0' || f.s[i] > '9' {
			return 0, errAt(spec, f.off+i, "want a positive integer in %s, found %q", what, f.s)
		}
	}
	n, err := strconv.Atoi(f.s)
	if err != nil || n > maxN {
		return 0, errAt(spec, f.off, "%s: %s is larger than %d", what, f.s, maxN)
	}
	if n < 1 {
		return 0, errAt(spec, f.off, "%s must be at least 1", what)
	}
	return n, nil
}

// parseInterval reads COUNT "x" LENGTH [ "(keep=" (N|"all") ")" ].
func parseInterval(spec string, f field) (Interval, error) {
	if f.s == "" {
		return Interval{}, errAt(spec, f.off, "empty grid interval (a stray '|'?)")
	}
	end := f.off + len(f.s)
	x := strings.IndexByte(f.s, 'x')
	if x < 0 {
		return Interval{}, errAt(spec, f.off, "unknown rule %q (want last=N, all, or a grid like 24x1h | 14x1d)", f.s)
	}
	count, err := parseCount(spec, trim(spec, f.off, f.off+x), "interval count COUNTxLENGTH")
	if err != nil {
		return Interval{}, err
	}
	iv := Interval{Count: count, Keep: 1}

	lenEnd := end
	if p := strings.IndexByte(f.s, '('); p >= 0 {
		lenEnd = f.off + p
		keep, err := parseKeep(spec, field{s: f.s[p:], off: f.off + p})
		if err != nil {
			return Interval{}, err
		}
		iv.Keep = keep
	}
	lf := trim(spec, f.off+x+1, lenEnd)
	if iv.Length, err = parseLength(spec, lf); err != nil {
		return Interval{}, err
	}
	return iv, nil
}

func parseKeep(spec string, f field) (int, error) {
	if !strings.HasSuffix(f.s, ")") {
		return 0, errAt(spec, f.off+len(f.s), "missing ')' after (keep=...")
	}
	inner := trim(spec, f.off+1, f.off+len(f.s)-1)
	if !strings.HasPrefix(inner.s, "keep") {
		return 0, errAt(spec, inner.off, "want (keep=N) or (keep=all), found %q", f.s)
	}
	eq := trim(spec, inner.off+len("keep"), inner.off+len(inner.s))
	if !strings.HasPrefix(eq.s, "=") {
		return 0, errAt(spec, eq.off, "want (keep=N) or (keep=all)")
	}
	val := trim(spec, eq.off+1, eq.off+len(eq.s))
	if val.s == "all" {
		return KeepAll, nil
	}
	return parseCount(spec, val, "(keep=N)")
}

func parseLength(spec string, f field) (time.Duration, error) {
	if len(f.s) < 2 {
		return 0, errAt(spec, f.off, "want an interval length like 30m, 1h, 1d or 1w, found %q", f.s)
	}
	var unit time.Duration
	switch f.s[len(f.s)-1] {
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = dayLen
	case 'w':
		unit = weekLen
	default:
		return 0, errAt(spec, f.off+len(f.s)-1, "unknown unit %q in %q (want m, h, d or w)", f.s[len(f.s)-1], f.s)
	}
	n, err := parseCount(spec, field{s: strings.TrimRight(f.s[:len(f.s)-1], " \t"), off: f.off}, "interval length")
	if err != nil {
		return 0, err
	}
	if time.Duration(n) > maxSpan/unit {
		return 0, errAt(spec, f.off, "interval length %q is longer than 100 years", f.s)
	}
	return time.Duration(n) * unit, nil
}

func formatLength(d time.Duration) string {
	switch {
	case d > 0 && d%weekLen == 0:
		return strconv.FormatInt(int64(d/weekLen), 10) + "w"
	case d > 0 && d%dayLen == 0:
		return strconv.FormatInt(int64(d/dayLen), 10) + "d"
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
