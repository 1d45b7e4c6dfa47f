package restore

import (
	"errors"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/zfsexec"
)

func reason(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	if err != nil {
		return "not a refusal: " + err.Error()
	}
	return ""
}

func TestCheckSource_Forms(t *testing.T) {
	tests := []struct {
		name string
		src  z8rv1.RestoreSource
		want string
	}{
		{"replication", z8rv1.RestoreSource{Replication: "r", Node: "n2", Snapshot: "z8r-20261130T150405Z"}, ""},
		{"content", z8rv1.RestoreSource{VolumeSnapshotContent: "c", Node: "n2"}, ""},
		{"both", z8rv1.RestoreSource{Replication: "r", VolumeSnapshotContent: "c", Node: "n2"}, z8rv1.ReasonInvalidSource},
		{"neither", z8rv1.RestoreSource{Node: "n2"}, z8rv1.ReasonInvalidSource},
		{"a snapshot with a content", z8rv1.RestoreSource{VolumeSnapshotContent: "c", Node: "n2", Snapshot: "s"}, z8rv1.ReasonInvalidSource},
		{"no node", z8rv1.RestoreSource{Replication: "r"}, z8rv1.ReasonInvalidSource},
		{"a node that is no node name", z8rv1.RestoreSource{Replication: "r", Node: "N_2"}, z8rv1.ReasonInvalidSource},
		{"a snapshot with a slash", z8rv1.RestoreSource{Replication: "r", Node: "n2", Snapshot: "a/b"}, z8rv1.ReasonInvalidSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reason(CheckSource(tt.src)); got != tt.want {
				t.Fatalf("reason %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReplicationDataset_Nodes(t *testing.T) {
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "rep"}, Spec: z8rv1.DatasetReplicationSpec{
		Source:  z8rv1.DatasetRef{Node: "n1", Dataset: "tank/data"},
		Targets: []z8rv1.ReplicationTarget{{Node: "n2"}, {Node: "n3", Dataset: "backup/data"}, {Node: "n3", Dataset: "backup/second"}}}}
	tests := []struct{ node, want, reason string }{
		{"n1", "tank/data", ""},
		{"n2", "tank/data", ""},
		{"n3", "backup/data", ""}, // the first target on the node
		{"n4", "", z8rv1.ReasonNodeNotInSource},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			got, err := ReplicationDataset(dr, tt.node)
			if got != tt.want || reason(err) != tt.reason {
				t.Fatalf("%q, %v; want %q, %q", got, err, tt.want, tt.reason)
			}
		})
	}
}

func TestContentSnapshot_Shapes(t *testing.T) {
	h := func(s string) *string { return &s }
	content := func(ann map[string]string, status, spec *string) *snapshotv1.VolumeSnapshotContent {
		c := &snapshotv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: ann}}
		c.Spec.Source.SnapshotHandle = spec
		if status != nil {
			c.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: status}
		}
		return c
	}
	tests := []struct {
		name                  string
		c                     *snapshotv1.VolumeSnapshotContent
		node, ds, short, want string
	}{
		{"a replica content (pre-provisioned handle)", content(map[string]string{z8rv1.AnnotationNode: "n2"}, nil, h("tank/v@snapshot-1")), "n2", "tank/v", "snapshot-1", ""},
		{"status handle wins", content(map[string]string{z8rv1.AnnotationNode: "n2"}, h("tank/v@s2"), h("tank/v@s1")), "n2", "tank/v", "s2", ""},
		{"another driver's handle with the dataset annotated", content(map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "zfspv-pool/pvc-1"}, h("pvc-1@snapshot-9"), nil), "n1", "zfspv-pool/pvc-1", "snapshot-9", ""},
		{"another node", content(map[string]string{z8rv1.AnnotationNode: "n2"}, nil, h("tank/v@s")), "n1", "", "", z8rv1.ReasonNodeNotInSource},
		{"no node recorded", content(nil, nil, h("tank/v@s")), "n1", "", "", z8rv1.ReasonNodeNotInSource},
		{"no handle yet", content(map[string]string{z8rv1.AnnotationNode: "n2"}, nil, nil), "n2", "", "", z8rv1.ReasonSnapshotNotFound},
		{"not a snapshot", content(map[string]string{z8rv1.AnnotationNode: "n2"}, nil, h("tank/v")), "n2", "", "", z8rv1.ReasonSnapshotNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, short, err := ContentSnapshot(tt.c, tt.node)
			if ds != tt.ds || short != tt.short || reason(err) != tt.want {
				t.Fatalf("%q %q %v; want %q %q %q", ds, short, err, tt.ds, tt.short, tt.want)
			}
		})
	}
}

func TestPickSnapshot_NamedOrNewest(t *testing.T) {
	snaps := []zfsexec.Dataset{
		{Name: "tank/d@a", Type: zfsexec.TypeSnapshot, CreateTXG: 5},
		{Name: "tank/d#bm", Type: zfsexec.TypeBookmark, CreateTXG: 9},
		{Name: "tank/d@b", Type: zfsexec.TypeSnapshot, CreateTXG: 7},
	}
	tests := []struct{ short, want, reason string }{
		{"", "tank/d@b", ""},
		{"a", "tank/d@a", ""},
		{"bm", "", z8rv1.ReasonSnapshotNotFound}, // a bookmark cannot be cloned
		{"nope", "", z8rv1.ReasonSnapshotNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.short, func(t *testing.T) {
			got, err := PickSnapshot("n", "tank/d", snaps, tt.short)
			if got.Name != tt.want || reason(err) != tt.reason {
				t.Fatalf("%q %v", got.Name, err)
			}
		})
	}
	if _, err := PickSnapshot("n", "tank/d", nil, ""); reason(err) != z8rv1.ReasonSnapshotNotFound {
		t.Fatalf("no snapshots: %v", err)
	}
}

func TestDataset_Defaults(t *testing.T) {
	rr := func(kind, ds string) *z8rv1.ReplicaRestore {
		return &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "app", UID: "u-1"}, Spec: z8rv1.ReplicaRestoreSpec{Dataset: ds, Volume: z8rv1.RestoreVolume{Kind: kind}}}
	}
	tests := []struct {
		name            string
		rr              *z8rv1.ReplicaRestore
		replica         string
		want, wantPV, r string
	}{
		{"local default beside the replica", rr("", ""), "tank/k8s/vol1", "tank/k8s/app-restored", "z8r-restore-u-1", ""},
		{"local default under a pool root replica's pool", rr("", ""), "tank/vol1", "tank/app-restored", "z8r-restore-u-1", ""},
		{"local named", rr("Local", "tank/x/y"), "tank/vol1", "tank/x/y", "z8r-restore-u-1", ""},
		{"local in another pool", rr("", "backup/y"), "tank/vol1", "", "", z8rv1.ReasonInvalidDataset},
		{"zfs-localpv default", rr("ZFSLocalPV", ""), "tank/vol1", "tank/z8r-restore-u-1", "z8r-restore-u-1", ""},
		{"zfs-localpv named", rr("ZFSLocalPV", "tank/pvc-9"), "tank/a/b", "tank/pvc-9", "pvc-9", ""},
		{"zfs-localpv nested is refused", rr("ZFSLocalPV", "tank/a/pvc-9"), "tank/vol1", "", "", z8rv1.ReasonInvalidDataset},
		{"zfs-localpv with a name that is no PV name", rr("ZFSLocalPV", "tank/PVC_9"), "tank/vol1", "", "", z8rv1.ReasonInvalidDataset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Dataset(tt.rr, tt.replica)
			if got != tt.want || reason(err) != tt.r {
				t.Fatalf("%q %v; want %q %q", got, err, tt.want, tt.r)
			}
			if err == nil && PVName(tt.rr) != tt.wantPV {
				t.Fatalf("PV name %q, want %q", PVName(tt.rr), tt.wantPV)
			}
		})
	}
}

func TestCapacity_RoundsUpToMiB(t *testing.T) {
	rr := &z8rv1.ReplicaRestore{}
	for _, tt := range []struct {
		ref  int64
		want string
	}{{0, "1Mi"}, {1, "1Mi"}, {MiB, "1Mi"}, {MiB + 1, "2Mi"}, {5<<30 - 3, "5Gi"}} {
		if got := Capacity(rr, tt.ref); got.String() != tt.want {
			t.Errorf("Capacity(%d) = %s, want %s", tt.ref, got.String(), tt.want)
		}
	}
	q := resource.MustParse("10Gi")
	rr.Spec.Volume.Capacity = &q
	if got := Capacity(rr, 1); got.String() != "10Gi" {
		t.Errorf("spec capacity: %s", got.String())
	}
}

// TestObjects_PreBoundAndOwned: the PV's claimRef names the PVC, the PVC's
// volumeName the PV, both Retain-safe and marked with the restore's UID;
// a zfs-localpv PV resolves (pvresolve) to the node whose nodeid label it
// carries and to <pool>/<name>.
func TestObjects_PreBoundAndOwned(t *testing.T) {
	rr := &z8rv1.ReplicaRestore{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop", UID: "u-1"},
		Spec: z8rv1.ReplicaRestoreSpec{Volume: z8rv1.RestoreVolume{PVCName: "data", StorageClassName: "local"}}}
	c := resource.MustParse("1Gi")
	pvc := PVC(rr, "pv-1", c)
	for _, pv := range []*corev1.PersistentVolume{LocalPV(rr, "pv-1", "n2", "/tank/app", c), ZFSLocalPV(rr, "pv-1", "tank", "id-2", c)} {
		if pv.Spec.ClaimRef.Name != "data" || pv.Spec.ClaimRef.Namespace != "shop" || pvc.Spec.VolumeName != "pv-1" ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || *pvc.Spec.StorageClassName != pv.Spec.StorageClassName ||
			!Owned(pv, rr) || !Owned(pvc, rr) || pvc.Spec.AccessModes[0] != corev1.ReadWriteOnce {
			t.Errorf("PV %+v / PVC %+v", pv.Spec, pvc.Spec)
		}
	}
	pv := ZFSLocalPV(rr, "pv-1", "tank", "id-2", c)
	v, err := pvresolve.Resolve(pv, pvresolve.Options{NodeByID: pvresolve.NodeIDs([]corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{pvresolve.TopologyZFSLocalPVNodeID: "id-2"}}}})})
	if err != nil || v.Node != "n2" || v.Dataset != "tank/pv-1" {
		t.Fatalf("resolves to %+v, %v", v, err)
	}
	other := rr.DeepCopy()
	other.UID = "u-2"
	if Owned(pv, other) {
		t.Error("another restore owns the PV")
	}
	if OwnsDataset(rr, zfsexec.Property{Value: "u-1", Source: "inherited from tank"}) || !OwnsDataset(rr, zfsexec.Property{Value: "u-1", Source: "local"}) {
		t.Error("dataset ownership must be the UID set locally")
	}
}
