package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// Zone data for CRON_TZ= on nodes and images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// DefaultInterval is the snapshot interval of the original z8r and the
// default when no schedule is given.
const DefaultInterval = 6 * time.Hour

// MinInterval is the shortest interval Parse accepts.
const MinInterval = time.Minute

// ErrInvalid is matched (errors.Is) by every error Parse returns.
var ErrInvalid = errors.New("invalid schedule")

// Clock tells the time. Inject it; never call time.Now in logic that a test
// must control.
type Clock interface {
	Now() time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Schedule is a parsed interval or cron schedule. The zero Schedule never
// fires; obtain one from Parse or Default.
type Schedule struct {
	spec     string // canonical form, see String
	interval time.Duration
	cron     *cronSchedule
}

// Default returns the DefaultInterval schedule.
func Default() Schedule {
	return Every(DefaultInterval)
}

// Every returns an interval schedule. It does not enforce MinInterval;
// Parse does, for user input.
func Every(d time.Duration) Schedule {
	return Schedule{spec: formatDuration(d), interval: d}
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// probe is where Parse checks that a cron expression fires at all.
var probe = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Parse reads an interval or a five-field cron expression (see the package
// documentation). Errors match ErrInvalid.
func Parse(spec string) (Schedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Schedule{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if rest, ok := strings.CutPrefix(s, "@every"); ok {
		if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			return Schedule{}, fmt.Errorf("%w %q: want \"@every <duration>\"", ErrInvalid, spec)
		}
		return parseInterval(spec, strings.TrimSpace(rest))
	}
	if looksLikeDuration(s) {
		return parseInterval(spec, s)
	}
	return parseCron(spec, s)
}

// looksLikeDuration tells an interval from a cron expression or descriptor:
// a duration has no spaces and does not begin with '@', '*' or a field list.
func looksLikeDuration(s string) bool {
	if strings.ContainsAny(s, " \t*,/@=?") {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' }) >= 0
}

func parseInterval(spec, s string) (Schedule, error) {
	d, err := parseDuration(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w %q: %w", ErrInvalid, spec, err)
	}
	if d < MinInterval {
		return Schedule{}, fmt.Errorf("%w %q: interval %s is shorter than the minimum %s", ErrInvalid, spec, d, MinInterval)
	}
	return Every(d), nil
}

// parseDuration accepts Go durations and a whole number of days (d) or
// weeks (w).
func parseDuration(s string) (time.Duration, error) {
	if n := len(s); n >= 2 && (s[n-1] == 'd' || s[n-1] == 'w') {
		if v, err := strconv.ParseUint(s[:n-1], 10, 32); err == nil {
			unit := 24 * time.Hour
			if s[n-1] == 'w' {
				unit *= 7
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration (want e.g. 30m, 6h, 1d): %w", err)
	}
	return d, nil
}

func parseCron(spec, s string) (Schedule, error) {
	fields := strings.Fields(s)
	canon := strings.Join(fields, " ")
	loc := time.UTC
	if zone, ok := cutZone(fields[0]); ok {
		if zone == "" || zone == "Local" {
			return Schedule{}, fmt.Errorf("%w %q: want a zone name such as CRON_TZ=Europe/Berlin", ErrInvalid, spec)
		}
		l, err := time.LoadLocation(zone)
		if err != nil {
			return Schedule{}, fmt.Errorf("%w %q: unknown time zone: %w", ErrInvalid, spec, err)
		}
		loc, fields = l, fields[1:]
		if len(fields) == 0 {
			return Schedule{}, fmt.Errorf("%w %q: a time zone without a cron expression", ErrInvalid, spec)
		}
	}
	expr := strings.Join(fields, " ")
	if strings.HasPrefix(expr, "@every") {
		return Schedule{}, fmt.Errorf("%w %q: want \"@every <duration>\"", ErrInvalid, spec)
	}
	if _, ok := cutZone(fields[0]); ok {
		return Schedule{}, fmt.Errorf("%w %q: more than one time zone", ErrInvalid, spec)
	}
	c, err := cronParser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w %q: not a duration or a five-field cron expression: %w", ErrInvalid, spec, err)
	}
	ss, ok := c.(*cron.SpecSchedule)
	if !ok {
		return Schedule{}, fmt.Errorf("%w %q: not a cron expression", ErrInvalid, spec)
	}
	cs := newCronSchedule(ss, loc)
	if cs.next(probe).IsZero() {
		return Schedule{}, fmt.Errorf("%w %q: the cron expression never fires", ErrInvalid, spec)
	}
	return Schedule{spec: canon, cron: cs}, nil
}

// cutZone splits a CRON_TZ=<zone> or TZ=<zone> field (Kubernetes
// CronJob's forms).
func cutZone(field string) (zone string, ok bool) {
	if z, ok := strings.CutPrefix(field, "CRON_TZ="); ok {
		return z, true
	}
	return strings.CutPrefix(field, "TZ=")
}

// cronSchedule evaluates a cron expression on the wall clock of a time
// zone, with the DST rules of the package documentation.
type cronSchedule struct {
	loc *time.Location
	// spec's fields are wall-clock fields; its Location is replaced by a
	// fixed zone per stretch of constant UTC offset (fixed), or by UTC to
	// search wall-clock ranges (wall).
	spec *cron.SpecSchedule
	wall cron.SpecSchedule
	// everyHour: the hour field matches every hour of the day: the job
	// runs by elapsed time across DST changes.
	everyHour bool
}

// allHours is the hour field of an expression that fires in every hour.
const allHours = 1<<24 - 1

func newCronSchedule(s *cron.SpecSchedule, loc *time.Location) *cronSchedule {
	c := &cronSchedule{loc: loc, spec: s, wall: *s, everyHour: s.Hour&allHours == allHours}
	c.wall.Location = time.UTC
	return c
}

// fixed returns the expression evaluated at a constant UTC offset (in
// seconds east of UTC).
func (c *cronSchedule) fixed(offset int) *cron.SpecSchedule {
	f := *c.spec
	f.Location = time.FixedZone("", offset)
	return &f
}

// maxSegments bounds the stretches of constant UTC offset next walks
// through (two a year in most zones; cron.SpecSchedule itself gives up
// after five years).
const maxSegments = 40

// next returns the first activation strictly after after, or the zero
// time if there is none. It walks the stretches of constant UTC offset of
// c.loc from after: within one, wall clock and elapsed time agree and the
// expression is evaluated at that fixed offset; at each transition it
// applies the DST rules.
func (c *cronSchedule) next(after time.Time) time.Time {
	cur := after   // search strictly after cur
	probe := after // an instant in the stretch being searched
	for range maxSegments {
		_, off := probe.In(c.loc).Zone()
		start, end := probe.In(c.loc).ZoneBounds()
		fixed := c.fixed(off)
		for {
			cand := fixed.Next(cur)
			if cand.IsZero() {
				return time.Time{}
			}
			if !end.IsZero() && !cand.Before(end) {
				break // in a later stretch
			}
			if !c.everyHour && c.repeated(cand, start, off) {
				cur = cand // the wall time's second occurrence: it ran in the first
				continue
			}
			return cand.In(after.Location())
		}
		if end.IsZero() {
			return time.Time{} // no more transitions; cannot happen with a non-zero cand
		}
		_, newOff := end.In(c.loc).Zone()
		if !c.everyHour && newOff > off && c.wallMatch(end, off, newOff) {
			return end.In(after.Location()) // runs skipped by the gap, once, at its end
		}
		// Continue from end itself (cron.SpecSchedule.Next is strictly
		// after its argument, to the second).
		cur = end.Add(-time.Second)
		if cur.Before(after) {
			cur = after
		}
		probe = end
	}
	return time.Time{}
}

// repeated reports whether t, in the stretch beginning at start with UTC
// offset off, shows a wall-clock time that the previous stretch already
// showed (the hour repeated when clocks go back).
func (c *cronSchedule) repeated(t, start time.Time, off int) bool {
	if start.IsZero() {
		return false
	}
	_, prevOff := start.Add(-time.Nanosecond).In(c.loc).Zone()
	if prevOff <= off {
		return false
	}
	return t.Before(start.Add(time.Duration(prevOff-off) * time.Second))
}

// wallMatch reports whether the expression matches a wall-clock time that
// the transition at end skips: from end's wall time at the old offset
// (inclusive) to its wall time at the new one (exclusive).
func (c *cronSchedule) wallMatch(end time.Time, oldOff, newOff int) bool {
	from := wallAsUTC(end, oldOff)
	to := wallAsUTC(end, newOff)
	m := c.wall.Next(from.Add(-time.Second))
	return !m.IsZero() && m.Before(to)
}

// wallAsUTC returns the wall-clock reading of t at UTC offset off, as a
// UTC time.
func wallAsUTC(t time.Time, off int) time.Time {
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// String returns the canonical spec: an interval as "6h", "90m" is "1h30m",
// whole days and weeks as "1d", "2w"; a cron expression as given, with
// single spaces. Parse(s.String()) is equivalent to s.
func (s Schedule) String() string { return s.spec }

// IsZero reports whether s is the zero Schedule.
func (s Schedule) IsZero() bool { return s.interval == 0 && s.cron == nil }

// Interval returns the interval of an interval schedule; ok is false for a
// cron schedule.
func (s Schedule) Interval() (d time.Duration, ok bool) {
	return s.interval, s.interval > 0
}

// Next returns the first activation strictly after after, or the zero time
// if there is none (the zero Schedule).
func (s Schedule) Next(after time.Time) time.Time {
	switch {
	case s.interval > 0:
		return after.Add(s.interval)
	case s.cron != nil:
		return s.cron.next(after)
	}
	return time.Time{}
}

// Due reports whether a snapshot is due at now, given the creation time of
// the last one (zero if there is none): true if last is zero or
// Next(last) <= now. The zero Schedule is never due.
func (s Schedule) Due(last, now time.Time) bool {
	if s.IsZero() {
		return false
	}
	if last.IsZero() {
		return true
	}
	next := s.Next(last)
	return !next.IsZero() && !next.After(now)
}

// NextDue returns when Due(last, now') first holds for some now' >= now:
// now if already due, otherwise Next(last). The zero time means never.
func (s Schedule) NextDue(last, now time.Time) time.Time {
	if s.IsZero() {
		return time.Time{}
	}
	if s.Due(last, now) {
		return now
	}
	return s.Next(last)
}

func formatDuration(d time.Duration) string {
	const day, week = 24 * time.Hour, 7 * 24 * time.Hour
	switch {
	case d <= 0:
		return d.String()
	case d%week == 0:
		return strconv.FormatInt(int64(d/week), 10) + "w"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MaxClockSkew is how far after now a snapshot's time may lie and still
// count as the last snapshot (clocks of controller replicas and nodes
// disagree by that much); Last reports anything later as in the future.
const MaxClockSkew = 5 * time.Minute

// Last picks, from the times of a schedule's snapshots (z8r's name times,
// in any order; zero times are ignored), the one the schedule counts from:
// the newest that is not after now+skew. Pass it to Due and NextDue.
//
// The times after now+skew are returned in future, oldest first: snapshots
// named while a clock ran ahead. They do not count, so one snapshot named a
// year ahead does not freeze the schedule for a year; the caller raises a
// Warning naming them. Once now+skew passes such a time it counts again,
// like any other.
func Last(times []time.Time, now time.Time, skew time.Duration) (last time.Time, future []time.Time) {
	limit := now.Add(skew)
	for _, t := range times {
		switch {
		case t.IsZero():
		case t.After(limit):
			future = append(future, t)
		case t.After(last):
			last = t
		}
	}
	slices.SortFunc(future, func(a, b time.Time) int { return a.Compare(b) })
	return last, future
}
