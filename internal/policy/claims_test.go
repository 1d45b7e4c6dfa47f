package policy

import (
	"reflect"
	"testing"
	"time"
)

func TestConflicts_OneWriterPerDataset(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodeDR := Owner{Kind: "DatasetReplication", Name: "n1-tank-a", Created: t0}
	pvcDR := Owner{Kind: "DatasetReplication", Name: "pvc-data", Created: t0.Add(time.Minute)}
	vs := Owner{Kind: "VolumeSnapshots", Name: "n1:tank/b", Created: t0.Add(2 * time.Minute)}
	sameTime := Owner{Kind: "DatasetReplication", Name: "a-same-time", Created: t0}
	src := func(o Owner, node, ds string) Claim {
		return Claim{Owner: o, Node: node, Dataset: ds, Role: RoleSource}
	}
	tgt := func(o Owner, node, ds string) Claim {
		return Claim{Owner: o, Node: node, Dataset: ds, Role: RoleTarget}
	}
	tests := []struct {
		name   string
		claims []Claim
		want   []Conflict
	}{
		{"distinct datasets", []Claim{src(nodeDR, "n1", "tank/a"), tgt(nodeDR, "n2", "tank/a"), src(pvcDR, "n1", "tank/b"), tgt(pvcDR, "n2", "tank/b")}, nil},
		{"same dataset name on different nodes", []Claim{src(nodeDR, "n1", "tank/a"), src(pvcDR, "n3", "tank/a")}, nil},
		{"two sources of one dataset: the later is refused (case 5)",
			[]Claim{src(pvcDR, "n1", "tank/a"), tgt(pvcDR, "n3", "tank/a"), src(nodeDR, "n1", "tank/a"), tgt(nodeDR, "n2", "tank/a")},
			[]Conflict{{Claim: src(pvcDR, "n1", "tank/a"), First: src(nodeDR, "n1", "tank/a")}}},
		{"two writers into one target (case 8)",
			[]Claim{src(nodeDR, "n1", "tank/a"), tgt(nodeDR, "n2", "tank/a"), src(vs, "n1", "tank/b"), tgt(vs, "n2", "tank/a")},
			[]Conflict{{Claim: tgt(vs, "n2", "tank/a"), First: tgt(nodeDR, "n2", "tank/a")}}},
		{"receiving into another replication's source",
			[]Claim{src(nodeDR, "n1", "tank/a"), tgt(pvcDR, "n1", "tank/a")},
			[]Conflict{{Claim: tgt(pvcDR, "n1", "tank/a"), First: src(nodeDR, "n1", "tank/a")}}},
		{"an earlier target wins over a later source",
			[]Claim{tgt(nodeDR, "n2", "tank/a"), src(pvcDR, "n2", "tank/a")},
			[]Conflict{{Claim: src(pvcDR, "n2", "tank/a"), First: tgt(nodeDR, "n2", "tank/a")}}},
		{"one owner's own claims never conflict", []Claim{src(nodeDR, "n1", "tank/a"), tgt(nodeDR, "n1", "tank/a")}, nil},
		{"same creation time: the name decides",
			[]Claim{src(nodeDR, "n1", "tank/a"), src(sameTime, "n1", "tank/a")},
			[]Conflict{{Claim: src(nodeDR, "n1", "tank/a"), First: src(sameTime, "n1", "tank/a")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Conflicts(tt.claims)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Conflicts =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	all := Conflicts([]Claim{src(nodeDR, "n1", "tank/a"), src(pvcDR, "n1", "tank/a"), tgt(vs, "n1", "tank/a")})
	if got := ConflictsOf(all, "DatasetReplication", "pvc-data"); len(got) != 1 || got[0].First.Owner != nodeDR {
		t.Errorf("ConflictsOf pvc-data = %+v", got)
	}
	if got := ConflictsOf(all, "DatasetReplication", "n1-tank-a"); len(got) != 0 {
		t.Errorf("the first owner has conflicts: %+v", got)
	}
}
