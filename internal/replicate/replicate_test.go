package replicate

import (
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

func snap(name string, guid, txg uint64, owned bool) zfsexec.Dataset {
	d := zfsexec.Dataset{Name: "tank/d@" + name, Type: zfsexec.TypeSnapshot, GUID: guid, CreateTXG: txg, Creation: time.Unix(int64(txg), 0)}
	if owned {
		d.UserProps = snapname.Props("p1")
		d.LocalProps = snapname.Props("p1")
	}
	return d
}

func TestPlanSnapshots_CarriesOwnershipAndBookmarks(t *testing.T) {
	bm := zfsexec.Dataset{Name: "tank/d#z8r-base-x:a", Type: zfsexec.TypeBookmark, GUID: 1, CreateTXG: 1}
	l := Listing{Exists: true, Snapshots: []zfsexec.Dataset{bm, snap("a", 1, 1, true), snap("b", 2, 2, false)}}
	got := PlanSnapshots(l, "p1")
	if len(got) != 3 || !got[0].Bookmark || got[0].Name != "z8r-base-x:a" || !got[1].Owned || got[2].Owned || got[2].GUID != 2 {
		t.Fatalf("PlanSnapshots = %+v", got)
	}
}

// TestPlanSnapshots_OwnershipIsLocalAndScoped: only a mark set locally on
// the snapshot itself, by the same replication, makes it Owned.
func TestPlanSnapshots_OwnershipIsLocalAndScoped(t *testing.T) {
	inherited := snap("inherited", 1, 1, false)
	inherited.UserProps = snapname.Props("p1") // value present, but not local
	other := snap("other", 2, 2, false)
	other.UserProps, other.LocalProps = snapname.Props("p2"), snapname.Props("p2")
	ownerOnly := snap("owner-only", 3, 3, false)
	ownerOnly.LocalProps = map[string]string{snapname.OwnerProp: snapname.OwnerValue}
	l := Listing{Exists: true, Snapshots: []zfsexec.Dataset{inherited, other, ownerOnly, snap("mine", 4, 4, true)}}
	cases := []struct {
		policy string
		want   []bool
	}{
		{"p1", []bool{false, false, false, true}},
		{"p2", []bool{false, true, false, false}},
		{"", []bool{false, false, false, false}},
	}
	for _, c := range cases {
		got := PlanSnapshots(l, c.policy)
		for i, s := range got {
			if s.Owned != c.want[i] {
				t.Errorf("policy %q: %s Owned = %v, want %v", c.policy, s.Name, s.Owned, c.want[i])
			}
		}
	}
}

func TestListingNewest(t *testing.T) {
	l := Listing{Exists: true, Snapshots: []zfsexec.Dataset{snap("a", 1, 1, true), snap("b", 2, 2, false),
		{Name: "tank/d#bm", Type: zfsexec.TypeBookmark, CreateTXG: 3}}}
	if n := l.Newest(false); n == nil || n.ShortName() != "b" {
		t.Errorf("Newest(any) = %v, want b (bookmarks are not snapshots)", n)
	}
	if n := l.Newest(true); n == nil || n.ShortName() != "a" {
		t.Errorf("Newest(owned) = %v, want a", n)
	}
	if n := (Listing{}).Newest(false); n != nil {
		t.Errorf("Newest of an empty listing = %v", n)
	}
}

func TestResult_BytesAndFull(t *testing.T) {
	r := Result{Steps: []StepResult{{To: "a", Bytes: 100}, {From: "a", To: "b", Bytes: 5}}}
	if r.Bytes() != 105 || !r.Full() {
		t.Errorf("Bytes %d Full %v", r.Bytes(), r.Full())
	}
	if (Result{Steps: []StepResult{{From: "a", To: "b"}}}).Full() {
		t.Error("an incremental first step reported as full")
	}
}
