package controllers

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
)

// TestReleasableTargets_UnionLessRefused (issue 15 cases 5 and 7): the
// finalizer releases the holds of the spec's and the status's targets (a
// target removed just before the deletion still has its base held), and
// none of a dataset the replication was refused (another replication's
// holds use the same tag).
func TestReleasableTargets_UnionLessRefused(t *testing.T) {
	dr := &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/a"},
			Targets: []z8rv1.ReplicationTarget{{Node: "n2"}, {Node: "n3", Dataset: "backup/a"}}},
		Status: z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{
			{Node: "n2", Dataset: "tank/a"}, {Node: "n4", Dataset: "tank/a"}}},
	}
	owner := policy.Owner{Kind: claimKindReplication, Name: "r"}
	other := policy.Claim{Owner: policy.Owner{Kind: claimKindReplication, Name: "first"}}
	tests := []struct {
		name    string
		refused []policy.Conflict
		want    []z8rv1.DatasetRef
	}{
		{"spec and status targets", nil, []z8rv1.DatasetRef{{Node: "n2", Dataset: "tank/a"}, {Node: "n3", Dataset: "backup/a"}, {Node: "n4", Dataset: "tank/a"}}},
		{"a refused target is not released",
			[]policy.Conflict{{Claim: policy.Claim{Owner: owner, Node: "n3", Dataset: "backup/a", Role: policy.RoleTarget}, First: other}},
			[]z8rv1.DatasetRef{{Node: "n2", Dataset: "tank/a"}, {Node: "n4", Dataset: "tank/a"}}},
		{"a refused source releases nothing",
			[]policy.Conflict{{Claim: policy.Claim{Owner: owner, Node: "n1", Dataset: "tank/a", Role: policy.RoleSource}, First: other}},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := releasableTargets(dr, tt.refused); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("releasableTargets = %v, want %v", got, tt.want)
			}
		})
	}
}
