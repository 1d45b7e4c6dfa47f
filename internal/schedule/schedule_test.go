package schedule

import (
	"errors"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustParse(t *testing.T, spec string) Schedule {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatalf("Parse(%q): %v", spec, err)
	}
	return s
}

func TestParse_Valid(t *testing.T) {
	from := at("2026-11-26T10:17:00Z")
	tests := []struct {
		spec      string
		canonical string
		next      string // Next(from)
	}{
		{"6h", "6h", "2026-11-26T16:17:00Z"},
		{" 30m ", "30m", "2026-11-26T10:47:00Z"},
		{"90m", "1h30m", "2026-11-26T11:47:00Z"},
		{"1m", "1m", "2026-11-26T10:18:00Z"},
		{"1d", "1d", "2026-11-27T10:17:00Z"},
		{"24h", "1d", "2026-11-27T10:17:00Z"},
		{"2w", "2w", "2026-12-10T10:17:00Z"},
		{"@every 6h", "6h", "2026-11-26T16:17:00Z"},
		{"@every  1d", "1d", "2026-11-27T10:17:00Z"},
		{"0 */6 * * *", "0 */6 * * *", "2026-11-26T12:00:00Z"},
		{"0  */6 *  * *", "0 */6 * * *", "2026-11-26T12:00:00Z"},
		{"30 2 * * 0", "30 2 * * 0", "2026-11-29T02:30:00Z"},
		{"@daily", "@daily", "2026-11-27T00:00:00Z"},
		{"@hourly", "@hourly", "2026-11-26T11:00:00Z"},
		{"CRON_TZ=Etc/GMT-2 0 3 * * *", "CRON_TZ=Etc/GMT-2 0 3 * * *", "2026-11-27T01:00:00Z"},
		{"0 0 29 2 *", "0 0 29 2 *", "2028-02-29T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s := mustParse(t, tc.spec)
			if got := s.String(); got != tc.canonical {
				t.Fatalf("String() = %q, want %q", got, tc.canonical)
			}
			if got := s.Next(from); !got.Equal(at(tc.next)) {
				t.Fatalf("Next(%v) = %v, want %v", from, got, tc.next)
			}
			again := mustParse(t, s.String())
			if got := again.Next(from); !got.Equal(at(tc.next)) {
				t.Fatalf("re-parsed %q: Next = %v, want %v", s.String(), got, tc.next)
			}
		})
	}
}

func TestParse_Invalid(t *testing.T) {
	tests := []struct {
		name string
		spec string
	}{
		{"empty", ""},
		{"blank", "   "},
		{"seconds", "30s"},
		{"just under a minute", "59s"},
		{"every seconds", "@every 10s"},
		{"negative", "-6h"},
		{"zero", "0h"},
		{"bare number", "6"},
		{"unknown unit", "6y"},
		{"every without duration", "@every"},
		{"every glued", "@every6h"},
		{"six fields", "0 0 */6 * * *"},
		{"four fields", "0 */6 * *"},
		{"bad minute", "61 * * * *"},
		{"never fires", "0 0 31 2 *"},
		{"unknown descriptor", "@often"},
		{"unknown zone", "CRON_TZ=Nowhere/Else 0 3 * * *"},
		{"garbage", "every six hours"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", tc.spec, s)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not match ErrInvalid", tc.spec, err)
			}
		})
	}
}

func TestParse_ShortIntervalMessage(t *testing.T) {
	_, err := Parse("30s")
	if err == nil || err.Error() != `invalid schedule "30s": interval 30s is shorter than the minimum 1m0s` {
		t.Fatalf("error = %v", err)
	}
}

func TestSchedule_Due(t *testing.T) {
	six := mustParse(t, "6h")
	cronSix := mustParse(t, "0 */6 * * *")
	last := at("2026-11-26T12:00:00Z")
	tests := []struct {
		name string
		s    Schedule
		last time.Time
		now  time.Time
		want bool
	}{
		{"no snapshot yet", six, time.Time{}, last, true},
		{"interval just taken", six, last, last, false},
		{"interval before next", six, last, last.Add(6*time.Hour - time.Second), false},
		{"interval at next", six, last, last.Add(6 * time.Hour), true},
		{"interval long overdue", six, last, last.Add(30 * 24 * time.Hour), true},
		{"last in the future (skew)", six, last.Add(time.Hour), last, false},
		{"cron before slot", cronSix, at("2026-11-26T12:00:05Z"), at("2026-11-26T17:59:59Z"), false},
		{"cron at slot", cronSix, at("2026-11-26T12:00:05Z"), at("2026-11-26T18:00:00Z"), true},
		{"cron last just before slot", cronSix, at("2026-11-26T11:59:59Z"), at("2026-11-26T12:00:00Z"), true},
		{"zero schedule never due", Schedule{}, time.Time{}, last, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Due(tc.last, tc.now); got != tc.want {
				t.Fatalf("Due(%v, %v) = %v, want %v", tc.last, tc.now, got, tc.want)
			}
		})
	}
}

func TestSchedule_NextDue(t *testing.T) {
	six := mustParse(t, "6h")
	last := at("2026-11-26T12:00:00Z")
	tests := []struct {
		name string
		s    Schedule
		last time.Time
		now  time.Time
		want time.Time
	}{
		{"no snapshot yet", six, time.Time{}, last, last},
		{"waiting", six, last, last.Add(time.Hour), last.Add(6 * time.Hour)},
		{"overdue is now", six, last, last.Add(7 * time.Hour), last.Add(7 * time.Hour)},
		{"zero schedule", Schedule{}, last, last, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.NextDue(tc.last, tc.now); !got.Equal(tc.want) {
				t.Fatalf("NextDue = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDefault_IsSixHours(t *testing.T) {
	d, ok := Default().Interval()
	if !ok || d != DefaultInterval || DefaultInterval != 6*time.Hour || Default().String() != "6h" {
		t.Fatalf("Default() = %q (%v, %v)", Default(), d, ok)
	}
	if _, ok := mustParse(t, "@daily").Interval(); ok {
		t.Fatal("a cron schedule reports an interval")
	}
}

func TestRealClock_Now(t *testing.T) {
	var c Clock = RealClock{}
	before := time.Now()
	got := c.Now()
	if got.Before(before) || got.After(time.Now()) {
		t.Fatalf("RealClock.Now() = %v", got)
	}
}
