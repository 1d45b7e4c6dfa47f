package kubeenv_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

func TestPVBuilders_Shapes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pv         *corev1.PersistentVolume
		wantDriver string
		wantHandle string
		wantAttrs  map[string]string
		wantLocal  string
	}{
		{
			name:       "z8r CSI",
			pv:         kubeenv.Z8rPV("pv-a", "node-a", "tank/k8s/a", "1Gi"),
			wantDriver: "zfs.z8r.dev",
			wantHandle: "tank/k8s/a",
			wantAttrs:  map[string]string{kubeenv.AttrZ8rNode: "node-a"},
		},
		{
			name:       "zfs-localpv",
			pv:         kubeenv.ZFSLocalPV("pvc-1234", "node-a", "zfspv-pool", "1Gi"),
			wantDriver: "zfs.csi.openebs.io",
			wantHandle: "pvc-1234",
			wantAttrs:  map[string]string{"openebs.io/poolname": "zfspv-pool", "openebs.io/cas-type": "localpv-zfs"},
		},
		{
			name:      "local",
			pv:        kubeenv.LocalPV("pv-l", "node-a", "/tank/data", "1Gi"),
			wantLocal: "/tank/data",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.pv.Spec
			if tc.wantDriver != "" {
				if spec.CSI == nil {
					t.Fatalf("no CSI source")
				}
				if spec.CSI.Driver != tc.wantDriver || spec.CSI.VolumeHandle != tc.wantHandle {
					t.Errorf("CSI = %s %s, want %s %s", spec.CSI.Driver, spec.CSI.VolumeHandle, tc.wantDriver, tc.wantHandle)
				}
				for k, v := range tc.wantAttrs {
					if got := spec.CSI.VolumeAttributes[k]; got != v {
						t.Errorf("volumeAttributes[%s] = %q, want %q", k, got, v)
					}
				}
			}
			if tc.wantLocal != "" && (spec.Local == nil || spec.Local.Path != tc.wantLocal) {
				t.Errorf("local = %+v, want path %s", spec.Local, tc.wantLocal)
			}
			terms := spec.NodeAffinity.Required.NodeSelectorTerms
			if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 {
				t.Fatalf("node affinity = %+v, want one term with one expression", terms)
			}
			if ex := terms[0].MatchExpressions[0]; ex.Key != corev1.LabelHostname || len(ex.Values) != 1 || ex.Values[0] != "node-a" {
				t.Errorf("node affinity = %+v, want %s in [node-a]", ex, corev1.LabelHostname)
			}
		})
	}
}

func TestPVCFor_MatchesPV(t *testing.T) {
	pv := kubeenv.Z8rPV("pv-a", "node-a", "tank/a", "5Gi")
	pvc := kubeenv.PVCFor(pv, "ns", "claim")
	if pvc.Spec.VolumeName != "pv-a" {
		t.Errorf("volumeName = %q, want pv-a", pvc.Spec.VolumeName)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "" {
		t.Errorf("storageClassName = %v, want empty (no default class)", pvc.Spec.StorageClassName)
	}
	got, want := pvc.Spec.Resources.Requests[corev1.ResourceStorage], pv.Spec.Capacity[corev1.ResourceStorage]
	if got.Cmp(want) != 0 {
		t.Errorf("request = %s, want %s", &got, &want)
	}
}

func TestNode_HostnameLabel(t *testing.T) {
	n := kubeenv.Node("node-a", map[string]string{"z8r.dev/pool": "tank"}, map[string]string{"a": "b"})
	if n.Labels[corev1.LabelHostname] != "node-a" || n.Labels["z8r.dev/pool"] != "tank" || n.Annotations["a"] != "b" {
		t.Errorf("node meta = %+v", n.ObjectMeta)
	}
}
