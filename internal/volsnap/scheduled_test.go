package volsnap

import (
	"reflect"
	"strings"
	"testing"
	"time"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
)

func TestScheduledName_Format(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 30, 5, 0, time.FixedZone("x", 3600))
	if got := ScheduledName("data", at, 0); got != "data-20261126-093005" {
		t.Errorf("got %q", got)
	}
	if got := ScheduledName("data", at, 2); got != "data-20261126-093005-2" {
		t.Errorf("got %q", got)
	}
	if got := ScheduledName(strings.Repeat("p", 253), at, 0); len(got) != 253 || !strings.HasSuffix(got, "-20261126-093005") {
		t.Errorf("long: %d %q", len(got), got)
	}
}

func TestSlotTime_SameSlotSameName(t *testing.T) {
	day := time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		spec     string
		now      time.Time
		want     time.Time
		sameAsAt time.Time // a later reconcile in the same slot
	}{
		{"interval start of slot", "1h", day.Add(10 * time.Hour), day.Add(10 * time.Hour), day.Add(10*time.Hour + 59*time.Minute)},
		{"interval mid slot", "1h", day.Add(10*time.Hour + 17*time.Minute + 3*time.Second), day.Add(10 * time.Hour), day.Add(10*time.Hour + 30*time.Minute)},
		{"6h interval", "6h", day.Add(13 * time.Hour), day.Add(12 * time.Hour), day.Add(17 * time.Hour)},
		{"cron every 6h", "0 */6 * * *", day.Add(13*time.Hour + 5*time.Minute), day.Add(12 * time.Hour), day.Add(17*time.Hour + 59*time.Minute)},
		{"cron exactly on a tick", "30 2 * * *", day.Add(2*time.Hour + 30*time.Minute), day.Add(2*time.Hour + 30*time.Minute), day.Add(20 * time.Hour)},
		{"cron monthly", "0 0 1 * *", day, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), day.Add(48 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := schedule.Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := SlotTime(s, tt.now); !got.Equal(tt.want) {
				t.Errorf("SlotTime(%s, %s) = %s, want %s", tt.spec, tt.now, got, tt.want)
			}
			if a, b := ScheduledName("p", SlotTime(s, tt.now), 0), ScheduledName("p", SlotTime(s, tt.sameAsAt), 0); a != b {
				t.Errorf("two reconciles in one slot name %s and %s", a, b)
			}
		})
	}
}

func TestWaiting_OnlyNotReadyAndNotDeleting(t *testing.T) {
	tests := []struct {
		name string
		s    []Scheduled
		want string
	}{
		{"none", nil, ""},
		{"all ready", []Scheduled{{Name: "a", Ready: true}, {Name: "b", Ready: true}}, ""},
		{"one pending", []Scheduled{{Name: "a", Ready: true}, {Name: "b"}}, "b"},
		{"pending but being deleted", []Scheduled{{Name: "a", Ready: true}, {Name: "b", Deleting: true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Waiting(tt.s)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Waiting = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestPruneScheduled_Cases(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	tests := []struct {
		name   string
		policy string
		s      []Scheduled
		want   []string
	}{
		{"only ready count, newest kept", "last=1", []Scheduled{
			{Name: "a", At: at(0), Ready: true},
			{Name: "b", At: at(1)}, // not ready: neither kept nor pruned
			{Name: "c", At: at(2), Ready: true},
			{Name: "d", At: at(3), Ready: true},
		}, []string{"a", "c"}},
		{"outage: not-ready ones do not push out the good copies", "last=3", []Scheduled{
			{Name: "a", At: at(0), Ready: true},
			{Name: "b", At: at(1), Ready: true},
			{Name: "c", At: at(2), Ready: true},
			{Name: "d", At: at(3)},
			{Name: "e", At: at(4)},
			{Name: "f", At: at(5)},
			{Name: "g", At: at(6)},
		}, nil},
		{"a newer not-ready one does not make the newest ready one prunable", "last=1", []Scheduled{
			{Name: "a", At: at(0), Ready: true},
			{Name: "b", At: at(1), Ready: true},
			{Name: "c", At: at(2)},
		}, []string{"a"}},
		{"replicating: retention waits", "last=1", []Scheduled{
			{Name: "a", At: at(0), Ready: true, Replicating: true},
			{Name: "b", At: at(1), Ready: true, Replicating: true},
			{Name: "c", At: at(2), Ready: true},
			{Name: "d", At: at(3), Ready: true, Replicating: true},
		}, []string{"c"}},
		{"being deleted: not counted again", "last=2", []Scheduled{
			{Name: "a", At: at(0), Ready: true, Deleting: true},
			{Name: "b", At: at(1), Ready: true},
			{Name: "c", At: at(2), Ready: true},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := retention.Parse(tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if got := PruneScheduled(tt.s, p, at(10)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pruned %v, want %v", got, tt.want)
			}
		})
	}
	if got := PruneScheduled([]Scheduled{{Name: "a", Ready: true, At: t0}, {Name: "b", Ready: true, At: at(1)}}, retention.Policy{}, at(4)); len(got) != 0 {
		t.Errorf("zero policy pruned %v", got)
	}
}

func TestReplicationPending_Cases(t *testing.T) {
	stamped := func(status string) map[string]string {
		m := map[string]string{z8rv1.AnnotationReplicateTo: "n2,n3:backup/", z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/v"}
		if status != "" {
			m[z8rv1.AnnotationReplicationStatus] = status
		}
		return m
	}
	both := Status{}.Set(TargetState{Node: "n2", Dataset: "tank/v", State: StateReplicated}).
		Set(TargetState{Node: "n3", Dataset: "backup/v", State: StateSkipped})
	oneFailed := both.Set(TargetState{Node: "n3", Dataset: "backup/v", State: StateFailed})
	oneRefused := both.Set(TargetState{Node: "n3", Dataset: "backup/v", State: StateRefused})
	oneMissing := Status{}.Set(TargetState{Node: "n2", Dataset: "tank/v", State: StateReplicated})
	tests := []struct {
		name    string
		ann     map[string]string
		pvcAsks bool
		want    bool
	}{
		{"no request anywhere", nil, false, false},
		{"PVC asks, content not stamped yet", nil, true, true},
		{"stamped, no status yet", stamped(""), true, true},
		{"every target done", stamped(both.String()), true, false},
		{"a target failed", stamped(oneFailed.String()), true, true},
		{"a target refused (another replication writes it)", stamped(oneRefused.String()), true, false},
		{"a target never tried", stamped(oneMissing.String()), false, true},
		{"stamped empty request (opted out)", map[string]string{z8rv1.AnnotationReplicateTo: ""}, true, false},
		{"unresolvable request", map[string]string{z8rv1.AnnotationReplicateTo: "n1", z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/v"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplicationPending(tt.ann, tt.pvcAsks); got != tt.want {
				t.Errorf("ReplicationPending = %v, want %v", got, tt.want)
			}
		})
	}
}
