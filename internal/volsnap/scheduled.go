package volsnap

import (
	"strconv"
	"strings"
	"time"

	"github.com/z8r-project/z8r/internal/retention"
)

// Scheduled is a VolumeSnapshot z8r took on a PVC's schedule.
type Scheduled struct {
	Name string
	// At is the controller time it was due (its z8r.dev/scheduled-at).
	At    time.Time
	Ready bool
}

// ScheduledNameLayout is the time in a scheduled VolumeSnapshot's name
// (object names are lower case, so not snapname's layout).
const ScheduledNameLayout = "20060102-150405"

// ScheduledName names the VolumeSnapshot due at t for pvc:
// "<pvc>-20261126-103000", with "-<n>" for n > 0 (a name already taken).
func ScheduledName(pvc string, t time.Time, n int) string {
	suffix := "-" + t.UTC().Format(ScheduledNameLayout)
	if n > 0 {
		suffix += "-" + strconv.Itoa(n)
	}
	if max := 253 - len(suffix); len(pvc) > max {
		pvc = strings.TrimRight(pvc[:max], ".-")
	}
	return pvc + suffix
}

// LastScheduled is the newest At (zero if none).
func LastScheduled(s []Scheduled) time.Time {
	var last time.Time
	for _, x := range s {
		if x.At.After(last) {
			last = x.At
		}
	}
	return last
}

// PruneScheduled returns the scheduled snapshots policy does not keep. It
// only ever sees snapshots z8r scheduled (the caller lists them by label),
// never prunes one that is not ready yet, and never the newest (package
// retention's rules).
func PruneScheduled(s []Scheduled, policy retention.Policy, now time.Time) []string {
	snaps := make([]retention.Snapshot, 0, len(s))
	ready := map[string]bool{}
	for _, x := range s {
		snaps = append(snaps, retention.Snapshot{Name: x.Name, Creation: x.At, Owned: true})
		ready[x.Name] = x.Ready
	}
	var out []string
	for _, v := range retention.Prune(snaps, policy, now, func(r retention.Snapshot) bool { return !ready[r.Name] }) {
		out = append(out, v.Name)
	}
	return out
}
