package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// AgentNodeLabel is the Node label (value "true") that schedules z8r's
// privileged agent on a node. It is under node-restriction.kubernetes.io/,
// which the NodeRestriction admission plugin forbids kubelets from setting
// on their own Node; z8r's node admission policy forbids it too.
const AgentNodeLabel = "node-restriction.kubernetes.io/z8r-agent"

// NodePolicyPrefixes are the Node label and annotation key prefixes that
// node identities (kubelets) may not set, change or remove: z8r's and the
// seed's replication policy, and AgentNodeLabel.
var NodePolicyPrefixes = []string{"z8r.dev/", "zfs.replication.takutakahashi.dev", AgentNodeLabel}

// Load reads the objects of a multi-document YAML file, skipping empty
// documents.
func Load(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse reads the objects of multi-document YAML.
func Parse(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifests: split documents: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("manifests: parse document: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Find returns the object of kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Convert converts an unstructured object into a typed one (a pointer to a
// k8s.io/api struct).
func Convert(o *unstructured.Unstructured, into any) error {
	if o == nil {
		return errors.New("manifests: no such object")
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true)
}

// Rule is one RBAC rule and the role it belongs to.
type Rule struct {
	Role string // Kind/name
	rbacv1.PolicyRule
}

// Rules returns every rule of every Role and ClusterRole in objs.
func Rules(objs []*unstructured.Unstructured) ([]Rule, error) {
	var out []Rule
	for _, o := range objs {
		var rules []rbacv1.PolicyRule
		switch o.GetKind() {
		case "Role":
			var r rbacv1.Role
			if err := Convert(o, &r); err != nil {
				return nil, fmt.Errorf("manifests: Role %s: %w", o.GetName(), err)
			}
			rules = r.Rules
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := Convert(o, &r); err != nil {
				return nil, fmt.Errorf("manifests: ClusterRole %s: %w", o.GetName(), err)
			}
			if r.AggregationRule != nil {
				return nil, fmt.Errorf("manifests: ClusterRole %s aggregates other roles: its rules are not in the manifest", o.GetName())
			}
			rules = r.Rules
		default:
			continue
		}
		for _, r := range rules {
			out = append(out, Rule{Role: o.GetKind() + "/" + o.GetName(), PolicyRule: r})
		}
	}
	return out, nil
}

// Wildcards describes every rule that grants with a wildcard ("*" as a
// verb, resource, resource name or API group, or a "*" subresource such as
// "pods/*") or grants non-resource URLs other than "/metrics" (what the
// ClusterRole z8r-metrics-reader grants, for Prometheus).
func Wildcards(rules []Rule) []string {
	var out []string
	star := func(field string, values []string, r Rule) {
		for _, v := range values {
			if v == rbacv1.VerbAll || strings.HasSuffix(v, "/*") {
				out = append(out, fmt.Sprintf("%s: %s %q in %s", r.Role, field, v, describe(r.PolicyRule)))
			}
		}
	}
	for _, r := range rules {
		star("verb", r.Verbs, r)
		star("resource", r.Resources, r)
		star("apiGroup", r.APIGroups, r)
		star("resourceName", r.ResourceNames, r)
		if len(r.NonResourceURLs) > 0 && !slices.Equal(r.NonResourceURLs, []string{"/metrics"}) {
			out = append(out, fmt.Sprintf("%s: nonResourceURLs %q", r.Role, r.NonResourceURLs))
		}
	}
	return out
}

// RulesOf returns the rules of one role ("ClusterRole/z8r-agent"), each as
// "group resource[ names] verbs" with sorted lists, sorted.
func RulesOf(rules []Rule, role string) []string {
	var out []string
	for _, r := range rules {
		if r.Role == role {
			out = append(out, describe(r.PolicyRule))
		}
	}
	slices.Sort(out)
	return out
}

func describe(r rbacv1.PolicyRule) string {
	sorted := func(s []string) string {
		c := slices.Clone(s)
		slices.Sort(c)
		return strings.Join(c, ",")
	}
	groups := make([]string, len(r.APIGroups))
	for i, g := range r.APIGroups {
		if g == "" {
			g = "core"
		}
		groups[i] = g
	}
	s := sorted(groups) + " " + sorted(r.Resources)
	if len(r.ResourceNames) > 0 {
		s += "[" + sorted(r.ResourceNames) + "]"
	}
	return s + " " + sorted(r.Verbs)
}
