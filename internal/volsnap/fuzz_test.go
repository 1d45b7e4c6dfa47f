package volsnap

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/z8r-project/z8r/zfsexec"
)

// FuzzParseTargets: the z8r.dev/replicate-to grammar (ParseTargets, then
// ResolveTargets for a source). It never panics and fails only with
// ErrSyntax. Accepted specs have DNS-1123 node names, valid datasets (or
// none, never a prefix without one), no repeats, and render (String,
// joined by ',') to a value that parses back to the same specs. Resolved
// targets have valid datasets on the nodes the specs named, no repeats and
// never the source itself; resolution fails only with ErrSyntax or
// ErrSelfTarget.
func FuzzParseTargets(f *testing.F) {
	for _, s := range []struct{ v, node, ds string }{
		// TestParseTargets_Grammar and _Malformed.
		{"", "node1", "tank/k8s/pvc-1"},
		{" , ,", "node1", "tank/k8s/pvc-1"},
		{"node2", "node1", "tank/k8s/pvc-1"},
		{"node2,node3:backup/x", "node1", "tank/k8s/pvc-1"},
		{" node2 , node3 : backup/ ", "node1", "tank/k8s/pvc-1"},
		{"node3:backup/x/", "node1", "tank/k8s/pvc-1"},
		{"node2,node2", "node1", "tank/k8s/pvc-1"},
		{"node2,node2:backup/", "node1", "tank/k8s/pvc-1"},
		{"worker-1.example.com", "node1", "tank/k8s/pvc-1"},
		{"node2:", "node1", "tank/k8s/pvc-1"},
		{":backup/x", "node1", "tank/k8s/pvc-1"},
		{"Node2", "node1", "tank/k8s/pvc-1"},
		{"node_2", "node1", "tank/k8s/pvc-1"},
		{"node2:a:b", "node1", "tank/k8s/pvc-1"},
		{"node2:backup//x", "node1", "tank/k8s/pvc-1"},
		{"node2:backup/x@s", "node1", "tank/k8s/pvc-1"},
		{"node2:/", "node1", "tank/k8s/pvc-1"},
		{"node2 node3", "node1", "tank/k8s/pvc-1"},
		{"node2,node3:bad x", "node1", "tank/k8s/pvc-1"},
		// TestResolveTargets_Datasets and _Self.
		{"node1:backup/", "node1", "tank/k8s/pvc-1"},
		{"node2,node2:tank/k8s/pvc-1", "node1", "tank/k8s/pvc-1"},
		{"n2:backup/", "n1", "tank"},
		{"node1", "node1", "tank/k8s/pvc-1"},
		{"node1:tank/k8s/pvc-1", "node1", "tank/k8s/pvc-1"},
		{"node1:tank/", "node1", "tank/k8s/pvc-1"},
		{"n2:backup/" + strings.Repeat("x", 200) + "/", "n1", "tank/" + strings.Repeat("y", 60)},
	} {
		f.Add(s.v, s.node, s.ds)
	}
	f.Fuzz(func(t *testing.T, v, srcNode, srcDataset string) {
		specs, err := ParseTargets(v)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("ParseTargets(%q): error %v is not ErrSyntax", v, err)
			}
			if specs != nil {
				t.Fatalf("ParseTargets(%q) failed but returned %+v", v, specs)
			}
			return
		}
		rendered := make([]string, len(specs))
		for i, s := range specs {
			if errs := validation.IsDNS1123Subdomain(s.Node); len(errs) > 0 {
				t.Fatalf("ParseTargets(%q) accepted node %q: %v", v, s.Node, errs)
			}
			if s.Dataset == "" && s.Prefix {
				t.Fatalf("ParseTargets(%q) accepted a prefix without a dataset: %+v", v, s)
			}
			if s.Dataset != "" {
				if err := zfsexec.ValidateDataset(s.Dataset); err != nil {
					t.Fatalf("ParseTargets(%q) accepted dataset %q: %v", v, s.Dataset, err)
				}
			}
			if slices.Contains(specs[:i], s) {
				t.Fatalf("ParseTargets(%q) repeats %+v", v, s)
			}
			rendered[i] = s.String()
		}
		value := strings.Join(rendered, ",")
		again, err := ParseTargets(value)
		if err != nil || !reflect.DeepEqual(again, specs) {
			t.Fatalf("ParseTargets(%q) = %+v renders to %q, which parses to %+v, %v", v, specs, value, again, err)
		}

		sources := [][2]string{{"node1", "tank/k8s/pvc-1"}}
		if zfsexec.ValidateDataset(srcDataset) == nil && len(validation.IsDNS1123Subdomain(srcNode)) == 0 {
			sources = append(sources, [2]string{srcNode, srcDataset})
		}
		for _, src := range sources {
			targets, err := ResolveTargets(v, src[0], src[1])
			if err != nil {
				if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrSelfTarget) {
					t.Fatalf("ResolveTargets(%q, %q, %q): error %v is neither ErrSyntax nor ErrSelfTarget", v, src[0], src[1], err)
				}
				continue
			}
			for i, tg := range targets {
				if err := zfsexec.ValidateDataset(tg.Dataset); err != nil {
					t.Fatalf("ResolveTargets(%q, %q, %q) resolved invalid dataset %q: %v", v, src[0], src[1], tg.Dataset, err)
				}
				if !slices.ContainsFunc(specs, func(s TargetSpec) bool { return s.Node == tg.Node }) {
					t.Fatalf("ResolveTargets(%q, %q, %q) resolved node %q no spec names", v, src[0], src[1], tg.Node)
				}
				if tg.Node == src[0] && tg.Dataset == src[1] {
					t.Fatalf("ResolveTargets(%q, %q, %q) targets the source itself", v, src[0], src[1])
				}
				if slices.Contains(targets[:i], tg) {
					t.Fatalf("ResolveTargets(%q, %q, %q) repeats %v", v, src[0], src[1], tg)
				}
			}
		}
	})
}
