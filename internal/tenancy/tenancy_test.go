package tenancy

import (
	"math/rand/v2"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/volsnap"
)

func pol(name string, sel metav1.LabelSelector, targets ...string) z8rv1.ReplicationTargetPolicy {
	p := z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.ReplicationTargetPolicySpec{NamespaceSelector: sel}}
	for _, t := range targets {
		node, parent, _ := strings.Cut(t, ":")
		p.Spec.Targets = append(p.Spec.Targets, z8rv1.AllowedTarget{Node: node, ParentDataset: parent})
	}
	return p
}

func tgt(s string) volsnap.Target {
	node, ds, _ := strings.Cut(s, ":")
	return volsnap.Target{Node: node, Dataset: ds}
}

var (
	all    = metav1.LabelSelector{}
	teamA  = metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	broken = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}}
)

func TestCheck_Cases(t *testing.T) {
	tests := []struct {
		name        string
		policies    []z8rv1.ReplicationTargetPolicy
		nsLabels    map[string]string
		targets     []string
		wantAllowed []string
		wantReason  string // in every refusal
	}{
		{name: "no policy refuses everything", targets: []string{"n2:tank/x"}, wantReason: "no ReplicationTargetPolicy exists"},
		{name: "empty selector selects every namespace", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank")},
			targets: []string{"n2:tank/x", "n2:tank/a/b"}, wantAllowed: []string{"n2:tank/x", "n2:tank/a/b"}},
		{name: "parent itself is refused", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank/backup")},
			targets: []string{"n2:tank/backup", "n2:tank/backup/x"}, wantAllowed: []string{"n2:tank/backup/x"}, wantReason: "not allowed by the ReplicationTargetPolicies that select namespace ns (p)"},
		{name: "prefix of a name is not a parent", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank/backup")},
			targets: []string{"n2:tank/backupx/y", "n2:tank/backup2"}, wantReason: "not allowed"},
		{name: "other node refused", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank")},
			targets: []string{"n3:tank/x", "n2:tank/x"}, wantAllowed: []string{"n2:tank/x"}, wantReason: "not allowed"},
		{name: "other pool refused", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank")},
			targets: []string{"n2:other/x"}, wantReason: "not allowed"},
		{name: "selector not matching the namespace does not allow", policies: []z8rv1.ReplicationTargetPolicy{pol("p", teamA, "n2:tank")},
			nsLabels: map[string]string{"team": "b"}, targets: []string{"n2:tank/x"}, wantReason: "no ReplicationTargetPolicy selects namespace ns"},
		{name: "selector matching the namespace allows", policies: []z8rv1.ReplicationTargetPolicy{pol("p", teamA, "n2:tank")},
			nsLabels: map[string]string{"team": "a"}, targets: []string{"n2:tank/x"}, wantAllowed: []string{"n2:tank/x"}},
		{name: "broken selector selects nothing", policies: []z8rv1.ReplicationTargetPolicy{pol("p", broken, "n2:tank")},
			nsLabels: map[string]string{"team": "a"}, targets: []string{"n2:tank/x"}, wantReason: "no ReplicationTargetPolicy selects"},
		{name: "invalid parent allows nothing", policies: []z8rv1.ReplicationTargetPolicy{pol("p", all, "n2:tank/", "n2:tank/../x", "n2:")},
			targets: []string{"n2:tank/x", "n2:tank/../x/y"}, wantReason: "not allowed"},
		{name: "union of the selecting policies", policies: []z8rv1.ReplicationTargetPolicy{pol("p1", all, "n2:tank"), pol("p2", teamA, "n3:backup"), pol("p3", teamA, "n4:tank")},
			nsLabels: map[string]string{"team": "a"}, targets: []string{"n2:tank/x", "n3:backup/x", "n4:tank/x", "n5:tank/x"},
			wantAllowed: []string{"n2:tank/x", "n3:backup/x", "n4:tank/x"}, wantReason: "(p1, p2, p3)"},
		{name: "a policy not selecting does not add its targets", policies: []z8rv1.ReplicationTargetPolicy{pol("p1", all, "n2:tank"), pol("p2", teamA, "n3:tank")},
			targets: []string{"n3:tank/x"}, wantReason: "(p1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []volsnap.Target
			for _, s := range tc.targets {
				in = append(in, tgt(s))
			}
			allowed, refused := Check(tc.policies, "ns", tc.nsLabels, in)
			var got []string
			for _, a := range allowed {
				got = append(got, a.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.wantAllowed, ",") {
				t.Errorf("allowed %v, want %v", got, tc.wantAllowed)
			}
			if len(allowed)+len(refused) != len(in) {
				t.Errorf("%d allowed + %d refused != %d targets", len(allowed), len(refused), len(in))
			}
			for _, r := range refused {
				if !strings.Contains(r.Reason, tc.wantReason) {
					t.Errorf("refusal %q does not say %q", r, tc.wantReason)
				}
			}
		})
	}
}

// TestCheck_Property: on random policies, namespaces and targets, every
// target is either allowed or refused, never both; an allowed target has
// a policy selecting the namespace with an entry for its node whose parent
// is a strict ancestor of its dataset (checked by path components,
// independently of Allows); without a selecting policy nothing is allowed.
func TestCheck_Property(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"n1", "n2", "n3"}
	parts := []string{"tank", "backup", "a", "b", "ab"}
	randDataset := func() string {
		n := 1 + rng.IntN(3)
		s := make([]string, n)
		for i := range s {
			s[i] = parts[rng.IntN(len(parts))]
		}
		return strings.Join(s, "/")
	}
	sels := []metav1.LabelSelector{all, teamA, broken}
	for i := 0; i < 3000; i++ {
		var policies []z8rv1.ReplicationTargetPolicy
		for j := rng.IntN(3); j > 0; j-- {
			var ts []string
			for k := rng.IntN(3); k > 0; k-- {
				ts = append(ts, nodes[rng.IntN(len(nodes))]+":"+randDataset())
			}
			policies = append(policies, pol("p", sels[rng.IntN(len(sels))], ts...))
		}
		nsLabels := map[string]string{"team": []string{"a", "b"}[rng.IntN(2)]}
		var in []volsnap.Target
		for k := 1 + rng.IntN(4); k > 0; k-- {
			in = append(in, volsnap.Target{Node: nodes[rng.IntN(len(nodes))], Dataset: randDataset()})
		}
		allowed, refused := Check(policies, "ns", nsLabels, in)
		if len(allowed)+len(refused) != len(in) {
			t.Fatalf("case %d: %d allowed + %d refused != %d", i, len(allowed), len(refused), len(in))
		}
		for _, a := range allowed {
			ok := false
			for _, p := range policies {
				if !selectsIndependently(p.Spec.NamespaceSelector, nsLabels) {
					continue
				}
				for _, e := range p.Spec.Targets {
					if e.Node == a.Node && strictAncestor(e.ParentDataset, a.Dataset) {
						ok = true
					}
				}
			}
			if !ok {
				t.Fatalf("case %d: %s allowed without a policy entry for it: %+v", i, a, policies)
			}
		}
		for _, r := range refused {
			for _, p := range policies {
				if !selectsIndependently(p.Spec.NamespaceSelector, nsLabels) {
					continue
				}
				for _, e := range p.Spec.Targets {
					if e.Node == r.Target.Node && strictAncestor(e.ParentDataset, r.Target.Dataset) {
						t.Fatalf("case %d: %s refused although %+v allows it", i, r.Target, e)
					}
				}
			}
		}
	}
}

func selectsIndependently(s metav1.LabelSelector, l map[string]string) bool {
	if len(s.MatchExpressions) > 0 {
		return false // only the broken one has expressions
	}
	for k, v := range s.MatchLabels {
		if l[k] != v {
			return false
		}
	}
	return true
}

func strictAncestor(parent, ds string) bool {
	p, d := strings.Split(parent, "/"), strings.Split(ds, "/")
	if len(p) >= len(d) {
		return false
	}
	for i := range p {
		if p[i] != d[i] {
			return false
		}
	}
	return true
}
