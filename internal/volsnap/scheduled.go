package volsnap

import (
	"strconv"
	"strings"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
)

// Scheduled is a VolumeSnapshot z8r took on a PVC's schedule.
type Scheduled struct {
	Name string
	// At is the controller time it was due (its z8r.dev/scheduled-at).
	At time.Time
	// Ready: the VolumeSnapshot is ready to use.
	Ready bool
	// Deleting: it has a deletion timestamp.
	Deleting bool
	// Replicating: its content's replication to a requested target is not
	// done yet (ReplicationPending).
	Replicating bool
}

// ScheduledNameLayout is the time in a scheduled VolumeSnapshot's name
// (object names are lower case, so not snapname's layout).
const ScheduledNameLayout = "20060102-150405"

// ScheduledName names the VolumeSnapshot of the schedule slot t for pvc:
// "<pvc>-20261126-103000", with "-<n>" for n > 0 (a name someone else
// already took).
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

// SlotTime is the schedule slot now falls in: the latest activation of
// sched at or before now (for an interval schedule, now truncated to the
// interval; for cron, the latest cron time). It depends only on the
// schedule and now's slot, so two reconciles of the same slot (one of
// them from a stale cache) name the same VolumeSnapshot and the API
// server refuses the second. The zero Schedule gives now.
func SlotTime(sched schedule.Schedule, now time.Time) time.Time {
	now = now.UTC().Truncate(time.Second)
	if d, ok := sched.Interval(); ok {
		return now.Truncate(d)
	}
	if sched.IsZero() {
		return now
	}
	// Find an activation in a window before now, doubling the window, then
	// walk forward to the last one not after now.
	for w := time.Minute; w <= 4*366*24*time.Hour; w *= 2 {
		t := sched.Next(now.Add(-w))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			n := sched.Next(t)
			if n.IsZero() || n.After(now) {
				return t.UTC()
			}
			t = n
		}
	}
	return now
}

// Waiting returns a scheduled VolumeSnapshot that is not ready yet (and
// not being deleted), if there is one. While one waits no new one is
// taken: a source node that is down gets at most one pending scheduled
// VolumeSnapshot, not one per period.
func Waiting(s []Scheduled) (string, bool) {
	for _, x := range s {
		if !x.Ready && !x.Deleting {
			return x.Name, true
		}
	}
	return "", false
}

// PruneScheduled returns the scheduled snapshots policy does not keep. It
// only ever sees snapshots z8r scheduled (the caller lists them by label,
// never others). Only ready snapshots count: one that is not ready (its
// node may be down) neither fills a kept slot nor is pruned, so an outage
// never pushes the good copies out. A snapshot whose replication is still
// in progress counts but is not pruned (retention waits for it), and the
// newest is never pruned (package retention's rules).
func PruneScheduled(s []Scheduled, policy retention.Policy, now time.Time) []string {
	snaps := make([]retention.Snapshot, 0, len(s))
	busy := map[string]bool{}
	for _, x := range s {
		if !x.Ready || x.Deleting {
			continue
		}
		snaps = append(snaps, retention.Snapshot{Name: x.Name, Creation: x.At, Owned: true})
		busy[x.Name] = x.Replicating
	}
	var out []string
	for _, v := range retention.Prune(snaps, policy, now, func(r retention.Snapshot) bool { return busy[r.Name] }) {
		out = append(out, v.Name)
	}
	return out
}

// ReplicationPending reports whether a content's replication is still in
// progress: the content records a replicate-to request (annotations ann,
// as z8r stamps them) and some target of it is not done (replicated or
// skipped), or it records none yet while pvcAsks (its PVC asks for
// replication, so z8r has not acted on it yet). A request that cannot be
// resolved will never replicate and is not pending, nor is a target
// refused because another replication writes it (StateRefused).
func ReplicationPending(ann map[string]string, pvcAsks bool) bool {
	v, stamped := ann[z8rv1.AnnotationReplicateTo]
	if !stamped {
		return pvcAsks
	}
	targets, err := ResolveTargets(v, ann[z8rv1.AnnotationNode], ann[z8rv1.AnnotationDataset])
	if err != nil {
		return false
	}
	status, err := ParseStatus(ann[z8rv1.AnnotationReplicationStatus])
	if err != nil {
		return true // unreadable: replication starts afresh
	}
	for _, t := range targets {
		if ts, _ := status.Get(t); !ts.Done() && ts.State != StateRefused {
			return true
		}
	}
	return false
}
