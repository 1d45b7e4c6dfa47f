package invariants

import (
	"strings"
	"testing"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

const policy = "chaos"

// snap builds a snapshot: owner "" (none), "z8r" (owned by policy),
// "other" (owned by another replication) or "inherited".
func snap(ds, name string, guid, txg, refs uint64, owner string) zfsexec.Dataset {
	d := zfsexec.Dataset{Name: ds + "@" + name, Type: zfsexec.TypeSnapshot, GUID: guid, CreateTXG: txg, UserRefs: refs,
		UserProps: map[string]string{}, LocalProps: map[string]string{}}
	switch owner {
	case "z8r":
		d.LocalProps, d.UserProps = snapname.Props(policy), snapname.Props(policy)
	case "other":
		d.LocalProps, d.UserProps = snapname.Props("other"), snapname.Props("other")
	case "inherited":
		d.UserProps[snapname.OwnerProp] = snapname.OwnerValue
	}
	return d
}

func bookmark(ds, name string, guid, txg uint64) zfsexec.Dataset {
	return zfsexec.Dataset{Name: ds + "#" + name, Type: zfsexec.TypeBookmark, GUID: guid, CreateTXG: txg}
}

func listing(node, ds string, items ...zfsexec.Dataset) Listing {
	return Listing{Node: node, Dataset: ds, Exists: true, Items: items}
}

func kinds(vs []Violation) string {
	var k []string
	for _, v := range vs {
		k = append(k, v.Invariant+"@"+v.Node)
	}
	return strings.Join(k, ",")
}

func TestCheckI1_Cases(t *testing.T) {
	src := listing("src", "tank/data", snap("tank/data", "a", 1, 10, 0, "z8r"), bookmark("tank/data", "b", 2, 20), snap("tank/data", "c", 3, 30, 2, "z8r"))
	for _, tc := range []struct {
		name   string
		target Listing
		want   string
	}{
		{"NewestOnSourceAsSnapshot", listing("dst", "tank/data", snap("tank/data", "a", 1, 5, 0, "z8r"), snap("tank/data", "c", 3, 6, 1, "z8r")), ""},
		{"NewestOnSourceAsBookmark", listing("dst", "tank/data", snap("tank/data", "b", 2, 6, 0, "z8r")), ""},
		{"NewestGoneFromSource", listing("dst", "tank/data", snap("tank/data", "a", 1, 5, 0, "z8r"), snap("tank/data", "d", 4, 6, 0, "z8r")), "I1@dst"},
		{"OnlyAnOlderOneOnSource", listing("dst", "tank/data", snap("tank/data", "x", 9, 7, 0, ""), snap("tank/data", "a", 1, 5, 0, "z8r")), "I1@dst"},
		{"TargetMissing", Listing{Node: "dst", Dataset: "tank/data"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kinds(CheckI1(src, []Listing{tc.target})); got != tc.want {
				t.Fatalf("CheckI1 = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckI2_Cases(t *testing.T) {
	ds := "tank/data"
	near := listing("near", ds, snap(ds, "c", 3, 6, 1, "z8r"))
	farBehind := listing("far", ds, snap(ds, "a", 1, 6, 1, "z8r"))
	for _, tc := range []struct {
		name    string
		src     Listing
		targets []Listing
		own     map[string]uint64
		want    string
	}{
		{"BothBasesOnNewest", listing("src", ds, snap(ds, "a", 1, 10, 0, "z8r"), snap(ds, "c", 3, 30, 2, "z8r")), []Listing{near, listing("far", ds, snap(ds, "c", 3, 6, 0, "z8r"))}, nil, ""},
		{"OneBaseEach", listing("src", ds, snap(ds, "a", 1, 10, 1, "z8r"), snap(ds, "c", 3, 30, 1, "z8r")), []Listing{near, farBehind}, nil, ""},
		{"OldBaseNotReleased", listing("src", ds, snap(ds, "a", 1, 10, 1, "z8r"), snap(ds, "c", 3, 30, 2, "z8r")), []Listing{near, listing("far", ds, snap(ds, "c", 3, 6, 0, "z8r"))}, nil, "I2@src"},
		{"StepHoldLeftOnNewest", listing("src", ds, snap(ds, "c", 3, 30, 3, "z8r")), []Listing{near, listing("far", ds, snap(ds, "c", 3, 6, 0, "z8r"))}, nil, "I2@src"},
		{"TestsOwnHoldAllowed", listing("src", ds, snap(ds, "m", 7, 5, 1, ""), snap(ds, "c", 3, 30, 2, "z8r")), []Listing{near, listing("far", ds, snap(ds, "c", 3, 6, 0, "z8r"))}, map[string]uint64{"m": 1}, ""},
		{"ReplicaOlderSnapshotHeld", listing("src", ds, snap(ds, "c", 3, 30, 1, "z8r")), []Listing{listing("near", ds, snap(ds, "a", 1, 5, 1, "z8r"), snap(ds, "c", 3, 6, 1, "z8r"))}, nil, "I2@near"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kinds(CheckI2(tc.src, tc.targets, tc.own)); got != tc.want {
				t.Fatalf("CheckI2 = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLedgerCheckI3_Cases(t *testing.T) {
	ds := "tank/data"
	first := listing("src", ds,
		snap(ds, "manual", 11, 1, 0, ""),
		snap(ds, "z8r-20010101T000000Z", 12, 2, 0, "inherited"),
		snap(ds, "z8r-20010101T000001Z", 13, 3, 0, "other"),
		snap(ds, "z8r-20261130T000000Z", 14, 4, 0, "z8r"))
	for _, tc := range []struct {
		name  string
		later Listing
		want  string
	}{
		{"AllKeptOwnPruned", listing("src", ds, snap(ds, "manual", 11, 1, 0, ""), snap(ds, "z8r-20010101T000000Z", 12, 2, 0, "inherited"), snap(ds, "z8r-20010101T000001Z", 13, 3, 0, "other")), ""},
		{"InheritedOwnerPruned", listing("src", ds, snap(ds, "manual", 11, 1, 0, ""), snap(ds, "z8r-20010101T000001Z", 13, 3, 0, "other")), "I3@src"},
		{"OtherReplicationsPruned", listing("src", ds, snap(ds, "manual", 11, 1, 0, ""), snap(ds, "z8r-20010101T000000Z", 12, 2, 0, "inherited")), "I3@src"},
		{"OtherNodeNotChecked", listing("dst", ds), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Ledger
			if n := g.Record(first, policy); n != 3 {
				t.Fatalf("Record = %d new, want 3 (the snapshot owned by %q is not foreign)", n, policy)
			}
			if got := kinds(g.CheckI3(tc.later)); got != tc.want {
				t.Fatalf("CheckI3 = %q, want %q", got, tc.want)
			}
			if again := g.CheckI3(tc.later); len(again) != 0 {
				t.Fatalf("a destroyed snapshot was reported twice: %v", again)
			}
		})
	}
}

func TestCheckHygiene_Cases(t *testing.T) {
	ds := "tank/data"
	src := listing("src", ds, snap(ds, "c", 3, 30, 2, "z8r"), snap(ds, "m", 7, 31, 0, ""))
	for _, tc := range []struct {
		name     string
		tgt      Listing
		readonly string
		want     string
	}{
		{"ReadonlyAndMarked", listing("dst", ds, snap(ds, "c", 3, 6, 0, "z8r")), "on", ""},
		{"Writable", listing("dst", ds, snap(ds, "c", 3, 6, 0, "z8r")), "off", "T1@dst"},
		{"ReceivedNotMarked", listing("dst", ds, snap(ds, "c", 3, 6, 0, "")), "on", "T2@dst"},
		{"ForeignReplicaNeedsNoMark", listing("dst", ds, snap(ds, "m", 7, 6, 0, "")), "on", ""},
		{"NothingReceivedYet", Listing{Node: "dst", Dataset: ds}, "off", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kinds(CheckHygiene(src, tc.tgt, tc.readonly, policy)); got != tc.want {
				t.Fatalf("CheckHygiene = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDiffSums_Cases(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want, got map[string]string
		diff      string
	}{
		{"Equal", map[string]string{"a": "1"}, map[string]string{"a": "1"}, ""},
		{"Differs", map[string]string{"a": "1"}, map[string]string{"a": "2"}, "a differs"},
		{"MissingAndExtra", map[string]string{"a": "1"}, map[string]string{"b": "1"}, "a missing, b extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := diffSums(tc.want, tc.got); d != tc.diff {
				t.Fatalf("diffSums = %q, want %q", d, tc.diff)
			}
		})
	}
}

func TestCheckRetention_Cases(t *testing.T) {
	ds := "tank/data"
	for _, tc := range []struct {
		name string
		l    Listing
		want string
	}{
		{"OnlyNewestLeft", listing("src", ds, snap(ds, "m", 7, 1, 0, ""), snap(ds, "o", 8, 2, 0, "other"), snap(ds, "c", 3, 30, 2, "z8r")), ""},
		{"OldBaseLeft", listing("src", ds, snap(ds, "a", 1, 10, 0, "z8r"), snap(ds, "c", 3, 30, 2, "z8r")), "R1@src"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kinds(CheckRetention(tc.l, policy, 1)); got != tc.want {
				t.Fatalf("CheckRetention = %q, want %q", got, tc.want)
			}
		})
	}
}
