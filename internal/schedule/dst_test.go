package schedule

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// In Europe/Berlin in 2026 clocks go forward on 29 March at 02:00 CET
// (01:00Z) to 03:00 CEST, and back on 25 October at 03:00 CEST (01:00Z) to
// 02:00 CET.
var berlin = mustZone("Europe/Berlin")

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// runs lists the activations of s in (from, to].
func runs(t *testing.T, s Schedule, from, to time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	for at := s.Next(from); !at.After(to); at = s.Next(at) {
		if at.IsZero() || len(out) > 10000 {
			t.Fatalf("Next stopped at %v after %d runs", at, len(out))
		}
		if len(out) > 0 && !at.After(out[len(out)-1]) {
			t.Fatalf("Next(%v) = %v, not later", out[len(out)-1], at)
		}
		out = append(out, at)
	}
	return out
}

func formatRuns(ts []time.Time) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.In(berlin).Format("01-02T15:04MST"))
	}
	return out
}

// TestCron_DST covers issue 15 case 13: cron across DST neither skips nor
// doubles runs. robfig/cron's own Next, which Schedule used before, runs a
// daily 02:30 Berlin job zero times on 29 March 2026 and twice on 25
// October 2026.
func TestCron_DST(t *testing.T) {
	spring := time.Date(2026, 3, 28, 0, 0, 0, 0, berlin)
	autumn := time.Date(2026, 10, 24, 0, 0, 0, 0, berlin)
	tests := []struct {
		name string
		spec string
		from time.Time
		days int
		want []string // in Berlin time
	}{
		{"spring-forward: daily 02:30 runs once, at the end of the gap", "CRON_TZ=Europe/Berlin 30 2 * * *", spring, 3,
			[]string{"03-28T02:30CET", "03-29T03:00CEST", "03-30T02:30CEST"}},
		{"fall-back: daily 02:30 runs once, at the first 02:30", "CRON_TZ=Europe/Berlin 30 2 * * *", autumn, 3,
			[]string{"10-24T02:30CEST", "10-25T02:30CEST", "10-26T02:30CET"}},
		{"TZ= prefix (Kubernetes CronJob form)", "TZ=Europe/Berlin 30 2 * * *", spring, 2,
			[]string{"03-28T02:30CET", "03-29T03:00CEST"}},
		{"spring-forward: times in the gap merge into one run", "CRON_TZ=Europe/Berlin */20 2,3 29 3 *", spring, 2,
			[]string{"03-29T03:00CEST", "03-29T03:20CEST", "03-29T03:40CEST"}},
		{"fall-back: repeated wall times run once", "CRON_TZ=Europe/Berlin 0,30 2 25 10 *", autumn, 2,
			[]string{"10-25T02:00CEST", "10-25T02:30CEST"}},
		{"spring-forward: a job outside the gap is unaffected", "CRON_TZ=Europe/Berlin 0 1,4 29 3 *", spring, 2,
			[]string{"03-29T01:00CET", "03-29T04:00CEST"}},
		{"spring-forward: hourly (hour *) runs by elapsed time, nothing caught up", "CRON_TZ=Europe/Berlin 30 * 29 3 *", spring.Add(24 * time.Hour), 1,
			[]string{"03-29T00:30CET", "03-29T01:30CET", "03-29T03:30CEST", "03-29T04:30CEST", "03-29T05:30CEST", "03-29T06:30CEST",
				"03-29T07:30CEST", "03-29T08:30CEST", "03-29T09:30CEST", "03-29T10:30CEST", "03-29T11:30CEST", "03-29T12:30CEST",
				"03-29T13:30CEST", "03-29T14:30CEST", "03-29T15:30CEST", "03-29T16:30CEST", "03-29T17:30CEST", "03-29T18:30CEST",
				"03-29T19:30CEST", "03-29T20:30CEST", "03-29T21:30CEST", "03-29T22:30CEST", "03-29T23:30CEST"}},
		{"fall-back: an hour-list job runs each wall time once", "CRON_TZ=Europe/Berlin 0 1-3 25 10 *", autumn, 2,
			[]string{"10-25T01:00CEST", "10-25T02:00CEST", "10-25T03:00CET"}},
		{"UTC: no DST", "30 2 * * *", spring, 3,
			[]string{"03-28T03:30CET", "03-29T04:30CEST", "03-30T04:30CEST"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.spec)
			got := formatRuns(runs(t, s, tc.from, tc.from.AddDate(0, 0, tc.days)))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("runs %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCron_DSTHourlyElapsed: a job that runs every hour (hour field "*")
// runs exactly once per elapsed hour across both transitions of a year,
// and a daily job exactly once per local day.
func TestCron_DSTHourlyElapsed(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, berlin)
	to := from.AddDate(1, 0, 0)
	for _, spec := range []string{"CRON_TZ=Europe/Berlin 0 * * * *", "CRON_TZ=Europe/Berlin @hourly", "CRON_TZ=Europe/Berlin 45 0-23 * * *"} {
		t.Run(spec, func(t *testing.T) {
			got := runs(t, mustParse(t, spec), from, to)
			for i := 1; i < len(got); i++ {
				if d := got[i].Sub(got[i-1]); d != time.Hour {
					t.Fatalf("%v then %v: %v apart", got[i-1].In(berlin), got[i].In(berlin), d)
				}
			}
			if len(got) != int(to.Sub(from)/time.Hour) {
				t.Fatalf("%d runs in %v", len(got), to.Sub(from))
			}
		})
	}
	for _, spec := range []string{"CRON_TZ=Europe/Berlin 30 2 * * *", "CRON_TZ=Europe/Berlin 0 0 * * *", "CRON_TZ=America/Santiago 0 0 * * *", "CRON_TZ=Australia/Lord_Howe 15 2 * * *"} {
		t.Run(spec, func(t *testing.T) {
			s := mustParse(t, spec)
			loc := s.cron.loc
			perDay := map[string]int{}
			for _, r := range runs(t, s, from.AddDate(0, 0, -2), to.AddDate(0, 0, 2)) {
				perDay[r.In(loc).Format(time.DateOnly)]++
			}
			// Every day of 2026 in the job's zone.
			for d := time.Date(2026, 1, 1, 12, 0, 0, 0, loc); d.Year() == 2026; d = d.AddDate(0, 0, 1) {
				if day := d.Format(time.DateOnly); perDay[day] != 1 {
					t.Fatalf("%d runs on %s", perDay[day], day)
				}
			}
		})
	}
}

// TestCron_UTCByDefault: without a zone a cron expression is UTC's even
// where the controller's local zone is not.
func TestCron_UTCByDefault(t *testing.T) {
	saved := time.Local
	time.Local = berlin
	t.Cleanup(func() { time.Local = saved })
	s := mustParse(t, "30 2 * * *")
	from := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC)
	got := runs(t, s, from, from.AddDate(0, 0, 3))
	for _, r := range got {
		if u := r.UTC(); u.Hour() != 2 || u.Minute() != 30 {
			t.Fatalf("run at %v, want 02:30Z", u)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d runs, want 3", len(got))
	}
}

// TestInterval_DST: an interval schedule counts elapsed time across DST.
func TestInterval_DST(t *testing.T) {
	for _, spec := range []string{"1d", "6h", "1h"} {
		t.Run(spec, func(t *testing.T) {
			s := mustParse(t, spec)
			d, _ := s.Interval()
			for _, from := range []time.Time{
				time.Date(2026, 3, 28, 23, 0, 0, 0, berlin),
				time.Date(2026, 10, 24, 23, 0, 0, 0, berlin),
			} {
				for at, i := from, 0; i < 10; i++ {
					next := s.Next(at)
					if next.Sub(at) != d {
						t.Fatalf("Next(%v) = %v: %v apart, want %v", at, next, next.Sub(at), d)
					}
					at = next
				}
			}
		})
	}
}

func TestParse_Zones(t *testing.T) {
	valid := []string{"CRON_TZ=Europe/Berlin 0 2 * * *", "TZ=America/New_York @daily", "CRON_TZ=UTC 0 2 * * *"}
	for _, spec := range valid {
		if _, err := Parse(spec); err != nil {
			t.Errorf("Parse(%q): %v", spec, err)
		}
	}
	invalid := []string{"CRON_TZ=Europe/Berlin", "CRON_TZ= 0 2 * * *", "TZ=Local 0 2 * * *", "CRON_TZ=UTC CRON_TZ=UTC 0 2 * * *", "CRON_TZ=Mars/Olympus 0 2 * * *"}
	for _, spec := range invalid {
		if s, err := Parse(spec); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", spec, s)
		}
	}
}

// TestLast_FutureSnapshot covers issue 15 case 11: one snapshot named while
// the controller clock ran a year ahead does not freeze the schedule. A
// controller loop that counts from Last keeps taking snapshots at the
// interval and reports the future one each time; counting from the newest
// time, as before, takes none for a year.
func TestLast_FutureSnapshot(t *testing.T) {
	start := at("2026-11-30T09:00:00Z")
	ahead := start.AddDate(1, 0, 0)
	for _, spec := range []string{"6h", "0 */6 * * *"} {
		t.Run(spec, func(t *testing.T) {
			s := mustParse(t, spec)
			times := []time.Time{start.Add(-7 * time.Hour), ahead}
			var taken []time.Time
			for now := start; now.Before(start.Add(72 * time.Hour)); now = now.Add(10 * time.Minute) {
				last, future := Last(times, now, MaxClockSkew)
				if !slices.Equal(future, []time.Time{ahead}) {
					t.Fatalf("at %v: future %v, want [%v]", now, future, ahead)
				}
				if s.Due(last, now) {
					taken = append(taken, now)
					times = append(times, now)
				}
				if next := s.NextDue(last, now); next.After(now.Add(6 * time.Hour)) {
					t.Fatalf("at %v: next due %v", now, next)
				}
			}
			if len(taken) < 12 || len(taken) > 13 {
				t.Fatalf("took %d snapshots in 72h at %s: %v", len(taken), spec, taken)
			}
			for i := 1; i < len(taken); i++ {
				if gap := taken[i].Sub(taken[i-1]); gap > 6*time.Hour+10*time.Minute {
					t.Fatalf("no snapshot from %v to %v", taken[i-1], taken[i])
				}
			}
			// The old reading: the newest snapshot's time is last.
			if s.Due(ahead, start.Add(72*time.Hour)) {
				t.Fatalf("Due counts from a future last")
			}
		})
	}
}

func TestLast_Cases(t *testing.T) {
	now := at("2026-11-30T09:00:00Z")
	tests := []struct {
		name   string
		times  []time.Time
		last   time.Time
		future []time.Time
	}{
		{"none", nil, time.Time{}, nil},
		{"zero ignored", []time.Time{{}}, time.Time{}, nil},
		{"newest of several, any order", []time.Time{now.Add(-time.Hour), now.Add(-3 * time.Hour), now.Add(-2 * time.Hour)}, now.Add(-time.Hour), nil},
		{"within skew counts", []time.Time{now.Add(-time.Hour), now.Add(MaxClockSkew)}, now.Add(MaxClockSkew), nil},
		{"beyond skew reported, oldest first", []time.Time{now.AddDate(1, 0, 0), now.Add(-time.Hour), now.Add(MaxClockSkew + time.Second)},
			now.Add(-time.Hour), []time.Time{now.Add(MaxClockSkew + time.Second), now.AddDate(1, 0, 0)}},
		{"only future", []time.Time{now.AddDate(1, 0, 0)}, time.Time{}, []time.Time{now.AddDate(1, 0, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			last, future := Last(tc.times, now, MaxClockSkew)
			if !last.Equal(tc.last) || fmt.Sprint(future) != fmt.Sprint(tc.future) {
				t.Fatalf("Last = %v, %v; want %v, %v", last, future, tc.last, tc.future)
			}
		})
	}
}
