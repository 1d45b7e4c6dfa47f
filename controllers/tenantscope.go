package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/tenancy"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// +kubebuilder:rbac:groups=z8r.dev,resources=replicationtargetpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=patch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=patch

// tenantScope checks tenant targets of an object in namespace ns against
// the administrator's ReplicationTargetPolicies (tenancy.Check).
func tenantScope(ctx context.Context, c client.Client, ns string, targets []volsnap.Target) ([]volsnap.Target, []tenancy.Refusal, error) {
	if len(targets) == 0 {
		return nil, nil, nil
	}
	var policies z8rv1.ReplicationTargetPolicyList
	if err := c.List(ctx, &policies); err != nil {
		return nil, nil, fmt.Errorf("list ReplicationTargetPolicies: %w", err)
	}
	var namespace corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	allowed, refused := tenancy.Check(policies.Items, ns, namespace.Labels, targets)
	return allowed, refused, nil
}

// refusalNote says which targets of a replicate-to value were refused.
func refusalNote(from string, refused []tenancy.Refusal) string {
	parts := make([]string, 0, len(refused))
	for _, r := range refused {
		parts = append(parts, r.String())
	}
	return fmt.Sprintf("%s on %s: replica refused, nothing is done for it: %s", z8rv1.AnnotationReplicateTo, from, strings.Join(parts, "; "))
}

// emptyNote is the problem of an empty (or blank) replicate-to value.
func emptyNote(from string) string {
	return fmt.Sprintf("%s on %s is empty: an empty value is an error, not \"replicate nothing\"; remove the annotation to ask for no replicas (targets a VolumeSnapshotClass requires are made regardless)", z8rv1.AnnotationReplicateTo, from)
}

// isEmptyTargets reports a replicate-to value with no entry.
func isEmptyTargets(v string) bool {
	return strings.Trim(v, " \t,") == ""
}

// setAnnotationProblem sets obj's policy.AnnProblem to problem (cut to the
// Event limit), or removes it when problem is empty, so the current
// problem stays readable however Events are aggregated. obj is updated in
// place.
func setAnnotationProblem(ctx context.Context, c client.Client, obj client.Object, problem string) error {
	if problem != "" {
		problem = ShortenNote(problem, MaxEventNote)
	}
	ann := obj.GetAnnotations()
	have, ok := ann[policy.AnnProblem]
	if have == problem && ok == (problem != "") {
		return nil
	}
	base, ok := obj.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("cannot copy %T", obj)
	}
	patch := client.MergeFrom(base)
	if problem == "" {
		delete(ann, policy.AnnProblem)
	} else {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[policy.AnnProblem] = problem
	}
	obj.SetAnnotations(ann)
	if err := c.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("record the annotation problem of %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}
