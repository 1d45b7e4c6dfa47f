package schedule

import (
	"testing"
	"time"
)

// FuzzParse: Parse never panics (robfig/cron's parser does on a bare
// "CRON_TZ=zone"), and what it accepts prints to a spec that parses to the
// same activations, each strictly later than the last.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"6h", "@every 1d", "0 */6 * * *", "@daily", "CRON_TZ=Europe/Berlin 30 2 * * *",
		"TZ=America/Santiago 0 0 * * *", "CRON_TZ=Europe/Berlin", "CRON_TZ= 0 2 * * *", "0 0 29 2 *"} {
		f.Add(s)
	}
	from := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", spec, s, err)
		}
		at := from
		for range 5 {
			next := s.Next(at)
			if next.IsZero() {
				return
			}
			if !next.After(at) || !again.Next(at).Equal(next) {
				t.Fatalf("%q: Next(%v) = %v, re-parsed %v", spec, at, next, again.Next(at))
			}
			at = next
		}
	})
}
