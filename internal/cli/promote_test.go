package cli

import (
	"errors"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

func promoteFixture() *z8rv1.DatasetReplication {
	return &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: z8rv1.DatasetReplicationSpec{
			Source: z8rv1.DatasetRef{Node: "node01", Dataset: "tank/web"},
			Targets: []z8rv1.ReplicationTarget{
				{Node: "node02", Retention: "last=5"},
				{Node: "node03", Dataset: "backup/web"},
				{Node: "node04"},
			},
			Schedule: "1h",
		},
	}
}

// TestPromoteSpec_Swaps: the promoted target becomes the source, the old
// source a target, the others keep their datasets.
func TestPromoteSpec_Swaps(t *testing.T) {
	got, err := PromoteSpec(promoteFixture(), "node02", "", true)
	if err != nil {
		t.Fatal(err)
	}
	want := z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: "node02", Dataset: "tank/web"},
		Targets: []z8rv1.ReplicationTarget{
			{Node: "node03", Dataset: "backup/web"},
			{Node: "node04"},
			{Node: "node01", Retention: "last=5"},
		},
		Schedule:               "1h",
		AllowUnplannedFailover: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PromoteSpec = %+v\nwant %+v", got, want)
	}
}

// TestPromoteSpec_OtherDataset: promoting a target with its own dataset
// spells out the datasets that defaulted to the old source's name.
func TestPromoteSpec_OtherDataset(t *testing.T) {
	got, err := PromoteSpec(promoteFixture(), "node03", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != (z8rv1.DatasetRef{Node: "node03", Dataset: "backup/web"}) {
		t.Fatalf("source = %+v", got.Source)
	}
	want := []z8rv1.ReplicationTarget{
		{Node: "node02", Dataset: "tank/web", Retention: "last=5"},
		{Node: "node04", Dataset: "tank/web"},
		{Node: "node01", Dataset: "tank/web"},
	}
	if !reflect.DeepEqual(got.Targets, want) {
		t.Fatalf("targets = %+v\nwant %+v", got.Targets, want)
	}
	// Failing back restores the original shape.
	back := promoteFixture()
	back.Spec = got
	again, err := PromoteSpec(back, "node01", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Source != (z8rv1.DatasetRef{Node: "node01", Dataset: "tank/web"}) {
		t.Fatalf("failback source = %+v", again.Source)
	}
}

// TestPromoteSpec_BadInput: unknown nodes, the source itself and
// ambiguous nodes are refused with ErrPromote.
func TestPromoteSpec_BadInput(t *testing.T) {
	two := promoteFixture()
	two.Spec.Targets = append(two.Spec.Targets, z8rv1.ReplicationTarget{Node: "node02", Dataset: "backup/web"})
	for _, tc := range []struct {
		name, node, dataset string
		dr                  *z8rv1.DatasetReplication
	}{
		{"unknown node", "node09", "", promoteFixture()},
		{"the source", "node01", "", promoteFixture()},
		{"wrong dataset", "node02", "tank/other", promoteFixture()},
		{"ambiguous", "node02", "", two},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.dr.DeepCopy()
			if _, err := PromoteSpec(tc.dr, tc.node, tc.dataset, false); !errors.Is(err, ErrPromote) {
				t.Fatalf("err = %v, want ErrPromote", err)
			}
			if !reflect.DeepEqual(before, tc.dr) {
				t.Fatal("the input was modified")
			}
		})
	}
}

// TestCheckPromotable_Refuses: replications generated from node
// annotations or for a VolumeSnapshot replica, diverged or never-synced
// targets and a running promotion are refused; a PVC's replication is
// not (the PVC's annotations hand it over once it is promoted).
func TestCheckPromotable_Refuses(t *testing.T) {
	synced := []z8rv1.TargetStatus{{Node: "node02", Dataset: "tank/web", State: z8rv1.TargetSynced, LastSnapshotGUID: "42"}}
	for _, tc := range []struct {
		name   string
		mutate func(*z8rv1.DatasetReplication)
		ok     bool
	}{
		{"synced target", func(dr *z8rv1.DatasetReplication) { dr.Status.Targets = synced }, true},
		{"node annotations", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = synced
			dr.Labels = map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}
		}, false},
		{"a PVC's (handed over once promoted)", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = synced
			dr.Labels = map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCAnnotations}
		}, true},
		{"a VolumeSnapshot replica's", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = synced
			dr.Labels = map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByReplication}
		}, false},
		{"diverged", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = []z8rv1.TargetStatus{{Node: "node02", Dataset: "tank/web", State: z8rv1.TargetDiverged, LastSnapshotGUID: "42"}}
		}, false},
		{"never synced", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = []z8rv1.TargetStatus{{Node: "node02", Dataset: "tank/web", State: z8rv1.TargetPending}}
		}, false},
		{"no status", func(*z8rv1.DatasetReplication) {}, false},
		{"running promotion", func(dr *z8rv1.DatasetReplication) {
			dr.Status.Targets = synced
			dr.Status.Promotion = &z8rv1.PromotionStatus{Phase: z8rv1.PromotionFinalSync}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr := promoteFixture()
			tc.mutate(dr)
			spec, err := PromoteSpec(dr, "node02", "", false)
			if err != nil {
				t.Fatal(err)
			}
			err = checkPromotable(dr, spec)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrPromote)) {
				t.Fatalf("checkPromotable = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
