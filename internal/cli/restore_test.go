package cli

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

func TestRestoreObject_Flags(t *testing.T) {
	tests := []struct {
		name    string
		f       RestoreFlags
		wantErr bool
		check   func(t *testing.T, rr *z8rv1.ReplicaRestore)
	}{
		{name: "from a replication, defaults", f: RestoreFlags{Namespace: "shop", FromReplication: "rep", Node: "n2", PVC: "data"},
			check: func(t *testing.T, rr *z8rv1.ReplicaRestore) {
				if rr.Name != "data" || rr.Namespace != "shop" || rr.Spec.Source != (z8rv1.RestoreSource{Replication: "rep", Node: "n2"}) ||
					rr.Spec.Volume.Kind != z8rv1.RestoreKindLocal || rr.Spec.Volume.PVCName != "data" || rr.Spec.Volume.Capacity != nil {
					t.Errorf("%+v", rr)
				}
			}},
		{name: "from a content, zfs-localpv, size and modes", f: RestoreFlags{Name: "r1", FromContent: "c", Node: "n2", PVC: "data",
			Kind: "zfs-localpv", Size: "2Gi", AccessModes: []string{"ReadWriteOncePod"}, Dataset: "tank/pv1"},
			check: func(t *testing.T, rr *z8rv1.ReplicaRestore) {
				if rr.Name != "r1" || rr.Spec.Source.VolumeSnapshotContent != "c" || rr.Spec.Volume.Kind != z8rv1.RestoreKindZFSLocalPV ||
					rr.Spec.Volume.Capacity.String() != "2Gi" || rr.Spec.Volume.AccessModes[0] != corev1.ReadWriteOncePod || rr.Spec.Dataset != "tank/pv1" {
					t.Errorf("%+v", rr)
				}
			}},
		{name: "both sources", f: RestoreFlags{FromReplication: "r", FromContent: "c", Node: "n2", PVC: "d"}, wantErr: true},
		{name: "neither source", f: RestoreFlags{Node: "n2", PVC: "d"}, wantErr: true},
		{name: "no node", f: RestoreFlags{FromReplication: "r", PVC: "d"}, wantErr: true},
		{name: "no pvc", f: RestoreFlags{FromReplication: "r", Node: "n2"}, wantErr: true},
		{name: "a snapshot with a content", f: RestoreFlags{FromContent: "c", Snapshot: "s", Node: "n2", PVC: "d"}, wantErr: true},
		{name: "an unknown kind", f: RestoreFlags{FromReplication: "r", Node: "n2", PVC: "d", Kind: "nfs"}, wantErr: true},
		{name: "a bad size", f: RestoreFlags{FromReplication: "r", Node: "n2", PVC: "d", Size: "lots"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr, err := RestoreObject(tt.f)
			if tt.wantErr {
				if !errors.Is(err, ErrRestoreFlags) || rr != nil {
					t.Fatalf("RestoreObject = %v, %v; want ErrRestoreFlags", rr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, rr)
		})
	}
}
