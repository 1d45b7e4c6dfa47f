package pvresolve

import (
	"errors"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/zfsexec"
)

// fuzzPV builds a PV of one of the shapes from fuzzed strings. shape picks
// annotated (0), z8r CSI (1), zfs-localpv (2), another CSI driver (3) or
// local (4).
func fuzzPV(shape uint8, a, b, c, node string) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv"}}
	if node != "" {
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}}
	}
	csi := func(driver string, attrs map[string]string) {
		pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: a, VolumeAttributes: attrs}
	}
	switch shape % 5 {
	case 0:
		pv.Annotations = map[string]string{z8rv1.AnnotationDataset: a, z8rv1.AnnotationNode: b}
	case 1:
		csi(z8rv1.DriverName, map[string]string{z8rv1.VolumeAttributeNode: b})
	case 2:
		csi(DriverZFSLocalPV, map[string]string{AttrZFSLocalPVPool: b})
	case 3:
		csi(c, nil)
	case 4:
		pv.Spec.Local = &corev1.LocalVolumeSource{Path: a}
	}
	return pv
}

// FuzzResolve: whatever the PV holds, Resolve does not panic; what it
// resolves names a valid dataset (or, for a local PV, an absolute clean
// path) on a valid node name, and every failure is an *Error matching one
// of the documented sentinels. DatasetAtMountpoint, given fuzzed mounts
// (as a node would report them), returns only valid dataset names mounted
// exactly at the path.
func FuzzResolve(f *testing.F) {
	for _, s := range []struct {
		shape             uint8
		a, b, c, node, ds string
	}{
		{0, "tank/pv1", "node-a", "", "", ""},
		{1, "tank/pvc-123", "node-a", "", "", ""},
		{1, "tank/pvc-123", "", "", "node-b", ""},
		{2, "pvc-9f", "zfspv-pool", "", "node-c", ""},
		{3, "vol", "", "ebs.csi.aws.com", "node-a", ""},
		{4, "/mnt/tank/data", "", "", "node-a", "tank/data"},
		{4, "/mnt/tank/data/", "", "", "node-a", "tank/data with space"},
		{0, "tank/../etc", "node-a", "", "", ""},
		{0, "tank/x", "Node_A\x1b[2J", "", "", ""},
		{2, "../x", "tank", "", "node-a", ""},
		{4, "relative/path", "", "", "node-a", "tank/x"},
	} {
		f.Add(s.shape, s.a, s.b, s.c, s.node, s.ds)
	}
	sentinels := []error{ErrUnknownShape, ErrIncomplete, ErrInvalidDataset, ErrNoDatasetAtPath}
	checkErr := func(t *testing.T, err error) {
		t.Helper()
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *Error", err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v matches no sentinel", err)
	}
	f.Fuzz(func(t *testing.T, shape uint8, a, b, c, node, mountDS string) {
		v, err := Resolve(fuzzPV(shape, a, b, c, node))
		if err != nil {
			checkErr(t, err)
			return
		}
		if errs := validation.IsDNS1123Subdomain(v.Node); len(errs) > 0 {
			t.Fatalf("resolved node %q: %v", v.Node, errs)
		}
		if !v.NeedsMountpointLookup() {
			if err := zfsexec.ValidateDataset(v.Dataset); err != nil {
				t.Fatalf("resolved dataset %q: %v", v.Dataset, err)
			}
			return
		}
		if !filepath.IsAbs(v.Path) || filepath.Clean(v.Path) != v.Path {
			t.Fatalf("local path %q is not absolute and clean", v.Path)
		}
		mounts := []Mount{{Dataset: mountDS, Mountpoint: a}, {Dataset: "tank/" + mountDS, Mountpoint: a + "/sub"}, {Dataset: b, Mountpoint: "legacy"}}
		got, err := DatasetAtMountpoint("pv", v, mounts)
		if err != nil {
			checkErr(t, err)
			return
		}
		if err := zfsexec.ValidateDataset(got.Dataset); err != nil {
			t.Fatalf("dataset at mountpoint %q: %v", got.Dataset, err)
		}
		if got.Dataset != mountDS && got.Dataset != "tank/"+mountDS {
			t.Fatalf("dataset %q is none of the mounts", got.Dataset)
		}
	})
}
