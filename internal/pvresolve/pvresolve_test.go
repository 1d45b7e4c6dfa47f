package pvresolve

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pv builds a PV pinned to node by hostname (node "" for no affinity).
func pv(node string, mod ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}}
	if node != "" {
		p.Spec.NodeAffinity = affinity(corev1.LabelHostname, node)
	}
	for _, m := range mod {
		m(p)
	}
	return p
}

func affinity(key string, values ...string) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}},
	}}}}
}

func csi(driver, handle string, attrs map[string]string) func(*corev1.PersistentVolume) {
	return func(p *corev1.PersistentVolume) {
		p.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: handle, VolumeAttributes: attrs}
	}
}

func local(path string) func(*corev1.PersistentVolume) {
	return func(p *corev1.PersistentVolume) { p.Spec.Local = &corev1.LocalVolumeSource{Path: path} }
}

func annotated(kv ...string) func(*corev1.PersistentVolume) {
	return func(p *corev1.PersistentVolume) {
		p.Annotations = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func TestResolve_Shapes(t *testing.T) {
	tests := []struct {
		name string
		pv   *corev1.PersistentVolume
		want Volume
	}{
		{"z8r driver, node attribute",
			pv("", csi("zfs.z8r.dev", "tank/k8s/data", map[string]string{"z8r.dev/node": "n1"})),
			Volume{Kind: KindZ8r, Driver: "zfs.z8r.dev", Node: "n1", Dataset: "tank/k8s/data"}},
		{"z8r driver, node from affinity",
			pv("n2", csi("zfs.z8r.dev", "tank/data", nil)),
			Volume{Kind: KindZ8r, Driver: "zfs.z8r.dev", Node: "n2", Dataset: "tank/data"}},
		{"z8r driver, attribute wins over affinity",
			pv("n2", csi("zfs.z8r.dev", "tank/data", map[string]string{"z8r.dev/node": "n1"})),
			Volume{Kind: KindZ8r, Driver: "zfs.z8r.dev", Node: "n1", Dataset: "tank/data"}},
		{"zfs-localpv",
			pv("n1", csi("zfs.csi.openebs.io", "pvc-4f1c", map[string]string{"openebs.io/poolname": "zfspv-pool"})),
			Volume{Kind: KindZFSLocalPV, Driver: "zfs.csi.openebs.io", Node: "n1", Dataset: "zfspv-pool/pvc-4f1c"}},
		{"zfs-localpv pool with a parent dataset, openebs topology key",
			pv("", csi("zfs.csi.openebs.io", "pvc-4f1c", map[string]string{"openebs.io/poolname": "tank/k8s"}),
				func(p *corev1.PersistentVolume) { p.Spec.NodeAffinity = affinity("openebs.io/nodename", "n3") }),
			Volume{Kind: KindZFSLocalPV, Driver: "zfs.csi.openebs.io", Node: "n3", Dataset: "tank/k8s/pvc-4f1c"}},
		{"local PV needs a mountpoint lookup",
			pv("n1", local("/mnt/tank/data/")),
			Volume{Kind: KindLocal, Node: "n1", Path: "/mnt/tank/data"}},
		{"annotations on any driver",
			pv("n9", csi("nfs.csi.k8s.io", "share", nil), annotated("z8r.dev/dataset", "tank/nfs", "z8r.dev/node", "n1")),
			Volume{Kind: KindAnnotated, Driver: "nfs.csi.k8s.io", Node: "n1", Dataset: "tank/nfs"}},
		{"annotations override the z8r shape",
			pv("", csi("zfs.z8r.dev", "tank/a", map[string]string{"z8r.dev/node": "n1"}), annotated("z8r.dev/dataset", "tank/b", "z8r.dev/node", "n2")),
			Volume{Kind: KindAnnotated, Driver: "zfs.z8r.dev", Node: "n2", Dataset: "tank/b"}},
		{"annotations on a hostPath PV",
			pv("", func(p *corev1.PersistentVolume) {
				p.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/x"}
			}, annotated("z8r.dev/dataset", "tank/x", "z8r.dev/node", "n1")),
			Volume{Kind: KindAnnotated, Node: "n1", Dataset: "tank/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.pv)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.NeedsMountpointLookup() != (tt.want.Kind == KindLocal) {
				t.Errorf("NeedsMountpointLookup %v", got.NeedsMountpointLookup())
			}
		})
	}
}

func TestResolve_Errors(t *testing.T) {
	tests := []struct {
		name string
		pv   *corev1.PersistentVolume
		want error
	}{
		{"other CSI driver", pv("n1", csi("ebs.csi.aws.com", "vol-1", nil)), ErrUnknownShape},
		{"hostPath", pv("n1", func(p *corev1.PersistentVolume) { p.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/x"} }), ErrUnknownShape},
		{"no source at all", pv("n1"), ErrUnknownShape},
		{"z8r handle not a dataset", pv("n1", csi("zfs.z8r.dev", "/dev/sdb", nil)), ErrInvalidDataset},
		{"z8r handle with a snapshot", pv("n1", csi("zfs.z8r.dev", "tank/a@b", nil)), ErrInvalidDataset},
		{"z8r without node", pv("", csi("zfs.z8r.dev", "tank/a", nil)), ErrIncomplete},
		{"zfs-localpv without pool", pv("n1", csi("zfs.csi.openebs.io", "pvc-1", nil)), ErrIncomplete},
		{"zfs-localpv without node", pv("", csi("zfs.csi.openebs.io", "pvc-1", map[string]string{"openebs.io/poolname": "p"})), ErrIncomplete},
		{"zfs-localpv bad handle", pv("n1", csi("zfs.csi.openebs.io", "a b", map[string]string{"openebs.io/poolname": "p"})), ErrInvalidDataset},
		{"local with two nodes", pv("", local("/mnt/x"), func(p *corev1.PersistentVolume) {
			p.Spec.NodeAffinity = affinity(corev1.LabelHostname, "n1", "n2")
		}), ErrIncomplete},
		{"local relative path", pv("n1", local("mnt/x")), ErrIncomplete},
		{"dataset annotation alone", pv("n1", csi("ebs.csi.aws.com", "v", nil), annotated("z8r.dev/dataset", "tank/x")), ErrIncomplete},
		{"node annotation alone", pv("n1", csi("ebs.csi.aws.com", "v", nil), annotated("z8r.dev/node", "n1")), ErrIncomplete},
		{"dataset annotation invalid", pv("n1", annotated("z8r.dev/dataset", "tank//x", "z8r.dev/node", "n1")), ErrInvalidDataset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(tt.pv)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.PV != "pv-1" {
				t.Errorf("err %#v does not name the PV", err)
			}
		})
	}
}

func TestAffinityNode_Terms(t *testing.T) {
	two := pv("n1")
	two.Spec.NodeAffinity.Required.NodeSelectorTerms = append(two.Spec.NodeAffinity.Required.NodeSelectorTerms,
		affinity(corev1.LabelHostname, "n2").Required.NodeSelectorTerms...)
	if n, ok := AffinityNode(two); ok {
		t.Errorf("terms naming different nodes gave %q", n)
	}
	notIn := pv("")
	notIn.Spec.NodeAffinity = affinity(corev1.LabelHostname, "n1")
	notIn.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Operator = corev1.NodeSelectorOpNotIn
	if n, ok := AffinityNode(notIn); ok {
		t.Errorf("NotIn gave %q", n)
	}
	if n, ok := AffinityNode(pv("n1")); !ok || n != "n1" {
		t.Errorf("got %q %v", n, ok)
	}
}

func TestDatasetAtMountpoint_ExactOnly(t *testing.T) {
	mounts := []Mount{
		{"tank", "/mnt/tank"},
		{"tank/data", "/mnt/tank/data"},
		{"tank/data@s1", "/mnt/tank/data"}, // snapshots never match
		{"tank/legacy", "legacy"},
		{"tank/none", "none"},
		{"tank/other", "/srv/other/"},
	}
	v := Volume{Kind: KindLocal, Node: "n1", Path: "/mnt/tank/data"}
	got, err := DatasetAtMountpoint("pv-1", v, mounts)
	if err != nil || got.Dataset != "tank/data" || got.NeedsMountpointLookup() {
		t.Fatalf("got %+v, %v", got, err)
	}
	if got, err := DatasetAtMountpoint("pv-1", Volume{Kind: KindLocal, Node: "n1", Path: "/srv/other"}, mounts); err != nil || got.Dataset != "tank/other" {
		t.Errorf("trailing slash in mountpoint: %+v %v", got, err)
	}
	for _, p := range []string{"/mnt/tank/data/sub", "/mnt", "/none"} {
		if _, err := DatasetAtMountpoint("pv-1", Volume{Kind: KindLocal, Node: "n1", Path: p}, mounts); !errors.Is(err, ErrNoDatasetAtPath) {
			t.Errorf("%s: err %v, want ErrNoDatasetAtPath", p, err)
		}
	}
	dup := append(mounts, Mount{"backup/data", "/mnt/tank/data"})
	if _, err := DatasetAtMountpoint("pv-1", v, dup); !errors.Is(err, ErrIncomplete) {
		t.Errorf("two datasets at one path: %v", err)
	}
}
