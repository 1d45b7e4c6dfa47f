package kubenode_test

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
)

// TestOverlay_IsDeployWithImagePullPolicyNeverOnly keeps the test bed's
// overlay honest: rendered, it has exactly deploy/'s objects, equal but for
// imagePullPolicy Never on the controller's and the agent's container.
func TestOverlay_IsDeployWithImagePullPolicyNeverOnly(t *testing.T) {
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := kubenode.Render(filepath.Join(root, kubenode.OverlayDir))
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := kubenode.Render(filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlay) != len(deploy) {
		t.Errorf("the overlay renders %d objects, deploy/ %d", len(overlay), len(deploy))
	}
	changed := map[string]bool{"Deployment/z8r-controller": false, "DaemonSet/z8r-agent": false}
	for _, d := range deploy {
		key := d.GetKind() + "/" + d.GetName()
		o := kubenode.Find(overlay, d.GetKind(), d.GetName())
		if o == nil {
			t.Errorf("the overlay lacks %s", key)
			continue
		}
		o = o.DeepCopy()
		if _, ok := changed[key]; ok {
			containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			if err != nil || len(containers) != 1 {
				t.Fatalf("%s: want one container: %v", key, err)
			}
			c := containers[0].(map[string]any)
			if c["imagePullPolicy"] != "Never" {
				t.Errorf("%s: imagePullPolicy %v, want Never", key, c["imagePullPolicy"])
			}
			delete(c, "imagePullPolicy")
			if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
			changed[key] = true
		}
		if !equality.Semantic.DeepEqual(o.Object, d.Object) {
			t.Errorf("the overlay changes %s beyond imagePullPolicy", key)
		}
	}
	for key, seen := range changed {
		if !seen {
			t.Errorf("deploy/ has no %s", key)
		}
	}
}
