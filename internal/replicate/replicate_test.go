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
		d.UserProps = map[string]string{snapname.OwnerProp: snapname.OwnerValue}
	}
	return d
}

func TestPlanSnapshots_CarriesOwnershipAndBookmarks(t *testing.T) {
	bm := zfsexec.Dataset{Name: "tank/d#z8r-base-x:a", Type: zfsexec.TypeBookmark, GUID: 1, CreateTXG: 1}
	l := Listing{Exists: true, Snapshots: []zfsexec.Dataset{bm, snap("a", 1, 1, true), snap("b", 2, 2, false)}}
	got := PlanSnapshots(l)
	if len(got) != 3 || !got[0].Bookmark || got[0].Name != "z8r-base-x:a" || !got[1].Owned || got[2].Owned || got[2].GUID != 2 {
		t.Fatalf("PlanSnapshots = %+v", got)
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
