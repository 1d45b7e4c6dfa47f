package tenancy

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// Refusal is a tenant target that no policy allows, and why.
type Refusal struct {
	Target volsnap.Target
	Reason string
}

func (r Refusal) String() string { return r.Target.String() + ": " + r.Reason }

// Selects reports whether p applies to a namespace with the given labels.
// A selector that does not parse selects nothing.
func Selects(p *z8rv1.ReplicationTargetPolicy, nsLabels map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NamespaceSelector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(nsLabels))
}

// Allows reports whether the entry a allows a replica at t.
func Allows(a z8rv1.AllowedTarget, t volsnap.Target) bool {
	if a.Node != t.Node || zfsexec.ValidateDataset(a.ParentDataset) != nil || zfsexec.ValidateDataset(t.Dataset) != nil {
		return false
	}
	return strings.HasPrefix(t.Dataset, a.ParentDataset+"/")
}

// Check splits tenant targets of an object in namespace ns (with labels
// nsLabels) into the allowed and the refused, in the order given.
func Check(policies []z8rv1.ReplicationTargetPolicy, ns string, nsLabels map[string]string, targets []volsnap.Target) (allowed []volsnap.Target, refused []Refusal) {
	var selecting []*z8rv1.ReplicationTargetPolicy
	for i := range policies {
		if Selects(&policies[i], nsLabels) {
			selecting = append(selecting, &policies[i])
		}
	}
	for _, t := range targets {
		ok := false
		for _, p := range selecting {
			if slices.ContainsFunc(p.Spec.Targets, func(a z8rv1.AllowedTarget) bool { return Allows(a, t) }) {
				ok = true
				break
			}
		}
		if ok {
			allowed = append(allowed, t)
			continue
		}
		refused = append(refused, Refusal{Target: t, Reason: reason(policies, selecting, ns)})
	}
	return allowed, refused
}

func reason(all []z8rv1.ReplicationTargetPolicy, selecting []*z8rv1.ReplicationTargetPolicy, ns string) string {
	switch {
	case len(all) == 0:
		return "no ReplicationTargetPolicy exists, so tenants may not ask for replicas (an administrator allows targets with one)"
	case len(selecting) == 0:
		return fmt.Sprintf("no ReplicationTargetPolicy selects namespace %s", ns)
	}
	names := make([]string, 0, len(selecting))
	for _, p := range selecting {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return fmt.Sprintf("not allowed by the ReplicationTargetPolicies that select namespace %s (%s): the node is not listed or the dataset is not strictly under an allowed parent", ns, strings.Join(names, ", "))
}
