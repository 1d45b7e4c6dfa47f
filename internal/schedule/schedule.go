package schedule

import (
	"errors"
	"fmt"
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
	cron     cron.Schedule
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
	canon := strings.Join(strings.Fields(s), " ")
	expr := canon
	if !strings.HasPrefix(expr, "CRON_TZ=") && !strings.HasPrefix(expr, "TZ=") {
		expr = "CRON_TZ=UTC " + expr
	}
	if strings.HasPrefix(canon, "@every") {
		return Schedule{}, fmt.Errorf("%w %q: want \"@every <duration>\"", ErrInvalid, spec)
	}
	c, err := cronParser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w %q: not a duration or a five-field cron expression: %w", ErrInvalid, spec, err)
	}
	if c.Next(probe).IsZero() {
		return Schedule{}, fmt.Errorf("%w %q: the cron expression never fires", ErrInvalid, spec)
	}
	return Schedule{spec: canon, cron: c}, nil
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
		return s.cron.Next(after)
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
