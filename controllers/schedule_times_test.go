package controllers

import (
	"reflect"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestScheduleTimes_FutureSnapshotDoesNotFreeze (issue 15 case 11): one
// snapshot named while the controller's clock ran a year ahead must not
// make the schedule wait a year; it is reported instead. Snapshots of
// another replication, or with ownership that is not set locally, do not
// count either.
func TestScheduleTimes_FutureSnapshotDoesNotFreeze(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	snap := func(at time.Time, local map[string]string) zfsexec.Dataset {
		return zfsexec.Dataset{Name: "tank/a@" + snapname.New("z8r", at), Type: zfsexec.TypeSnapshot, Creation: now, LocalProps: local}
	}
	mine := snapname.Props("dr-a")
	other := snapname.Props("dr-b")
	tests := []struct {
		name       string
		snaps      []zfsexec.Dataset
		wantLast   time.Time
		wantFuture int
		wantDue    bool
	}{
		{"ordinary: last snapshot 2h ago, 6h schedule", []zfsexec.Dataset{snap(now.Add(-8*time.Hour), mine), snap(now.Add(-2*time.Hour), mine)},
			now.Add(-2 * time.Hour), 0, false},
		{"one named a year ahead is ignored", []zfsexec.Dataset{snap(now.Add(-7*time.Hour), mine), snap(now.AddDate(1, 0, 0), mine)},
			now.Add(-7 * time.Hour), 1, true},
		{"only a future one: due now", []zfsexec.Dataset{snap(now.AddDate(1, 0, 0), mine)}, time.Time{}, 1, true},
		{"within the clock skew it counts", []zfsexec.Dataset{snap(now.Add(time.Minute), mine)}, now.Add(time.Minute), 0, false},
		{"another replication's snapshot does not count", []zfsexec.Dataset{snap(now.Add(-7*time.Hour), mine), snap(now.Add(-time.Hour), other)},
			now.Add(-7 * time.Hour), 0, true},
		{"ownership not set locally does not count", []zfsexec.Dataset{snap(now.Add(-7*time.Hour), mine), snap(now.Add(-time.Hour), nil)},
			now.Add(-7 * time.Hour), 0, true},
	}
	sched, err := schedule.Parse("6h")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last, future, _ := scheduleTimes(replicate.Listing{Exists: true, Snapshots: tt.snaps}, "dr-a", now)
			if !last.Equal(tt.wantLast) || len(future) != tt.wantFuture {
				t.Errorf("last %s future %v; want %s and %d", last, future, tt.wantLast, tt.wantFuture)
			}
			if got := sched.Due(last, now); got != tt.wantDue {
				t.Errorf("due = %v, want %v", got, tt.wantDue)
			}
		})
	}
	_, future, _ := scheduleTimes(replicate.Listing{Snapshots: []zfsexec.Dataset{snap(now.AddDate(1, 0, 0), mine)}}, "dr-a", now)
	if want := []string{snapname.New("z8r", now.AddDate(1, 0, 0))}; !reflect.DeepEqual(future, want) {
		t.Errorf("future %v, want %v", future, want)
	}
}
