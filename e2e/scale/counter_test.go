//go:build scale

package scale

import "testing"

func TestClassify_VerbsAndResources(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		watch        bool
		want         Call
	}{
		{"GET", "/apis/z8r.dev/v1alpha1/datasetreplications", false, Call{"LIST", "datasetreplications"}},
		{"GET", "/apis/z8r.dev/v1alpha1/datasetreplications", true, Call{"WATCH", "datasetreplications"}},
		{"GET", "/apis/z8r.dev/v1alpha1/datasetreplications/a", false, Call{"GET", "datasetreplications"}},
		{"PUT", "/apis/z8r.dev/v1alpha1/datasetreplications/a/status", false, Call{"UPDATE", "datasetreplications/status"}},
		{"POST", "/api/v1/namespaces/default/events", false, Call{"CREATE", "events"}},
		{"PATCH", "/api/v1/namespaces/default/events/e1", false, Call{"PATCH", "events"}},
		{"GET", "/api/v1/namespaces/ns1", false, Call{"GET", "namespaces"}},
		{"GET", "/api/v1/namespaces/ns1/persistentvolumeclaims", false, Call{"LIST", "persistentvolumeclaims"}},
		{"PUT", "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/c/status", false, Call{"UPDATE", "volumesnapshotcontents/status"}},
		{"GET", "/api/v1/nodes", false, Call{"LIST", "nodes"}},
	} {
		if got := Classify(tc.method, tc.path, tc.watch); got != tc.want {
			t.Errorf("Classify(%s %s watch=%v) = %v, want %v", tc.method, tc.path, tc.watch, got, tc.want)
		}
	}
}
