package kubenode

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// OverlayDir is the test bed's kustomize overlay of deploy/, relative to
// the module root: deploy/ with imagePullPolicy Never, nothing else.
const OverlayDir = "internal/testbed/kubenode/overlay"

// Render builds the kustomization in dir (an absolute path) with the
// kustomize library kubectl apply -k uses, and returns its objects in the
// order Apply needs.
func Render(dir string) ([]*unstructured.Unstructured, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("kubenode: render %s: want an absolute path", dir)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kubenode: kustomize %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so that numbers are int64 or float64 as in any
		// object the API machinery decoded (kyaml's maps hold ints).
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kubenode: kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			return nil, fmt.Errorf("kubenode: kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("kubenode: kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, o)
	}
	sort.SliceStable(objs, func(i, j int) bool { return applyRank(objs[i]) < applyRank(objs[j]) })
	return objs, nil
}

// applyRank orders objects the way kubectl apply must meet them:
// namespaces and CRDs before what lives in them or is of their kinds.
func applyRank(o *unstructured.Unstructured) int {
	switch o.GetKind() {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	default:
		return 2
	}
}

// Apply server-side applies objs with field manager owner, taking
// ownership of fields another manager set (kubeenv installs the same CRDs
// from config/crd/bases before).
func Apply(ctx context.Context, c client.Client, owner string, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		o = o.DeepCopy()
		o.SetManagedFields(nil)
		o.SetResourceVersion("")
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(owner), client.ForceOwnership); err != nil {
			b, _ := yaml.Marshal(o.Object["metadata"])
			return fmt.Errorf("kubenode: apply %s %s: %w (metadata: %s)", o.GetKind(), o.GetName(), err, b)
		}
	}
	return nil
}

// Find returns the object of objs with kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}
