package manifests

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/z8r-project/z8r/zfsexec"
)

// stringRule is one string property of a generated CRD: its length
// bounds and its CEL rules, evaluated by the API server's own validator.
type stringRule struct {
	props     apiextensionsv1.JSONSchemaProps
	validator *cel.Validator
	schema    *structuralschema.Structural
}

// loadStringRule reads the property at path (property names from the
// version's root schema, "[]" stepping into array items) of a CRD in
// config/crd/bases.
func loadStringRule(t *testing.T, file string, path ...string) stringRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "config", "crd", "bases", file))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	p := *crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	for _, step := range path {
		if step == "[]" {
			p = *p.Items.Schema
			continue
		}
		next, ok := p.Properties[step]
		if !ok {
			t.Fatalf("%s: no property %s in %v", file, step, path)
		}
		p = next
	}
	if p.Type != "string" || p.MaxLength == nil || len(p.XValidations) == 0 {
		t.Fatalf("%s %v: want a bounded string with CEL rules, got type %q maxLength %v, %d rules", file, path, p.Type, p.MaxLength, len(p.XValidations))
	}
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(&p, &internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(&internal)
	if err != nil {
		t.Fatal(err)
	}
	return stringRule{props: p, schema: s, validator: cel.NewValidator(s, false, celconfig.PerCallLimit)}
}

// errors returns what the API server would say about v: length bounds
// (OpenAPI) and CEL rules.
func (r stringRule) errors(v string) []string {
	var out []string
	if r.props.MinLength != nil && int64(len(v)) < *r.props.MinLength {
		out = append(out, "too short")
	}
	if int64(len(v)) > *r.props.MaxLength {
		out = append(out, "too long")
	}
	errs, _ := r.validator.Validate(context.Background(), field.NewPath("v"), r.schema, v, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range errs {
		out = append(out, e.Detail)
	}
	return out
}

// nameCorpus returns names built from the characters and fragments that
// matter to the rules, plus random ones, deterministically.
func nameCorpus() []string {
	names := []string{"", "tank", "tank/a", "tank/a/b", "Tank/A", "tank/a:b", "tank/a.b", "tank/a_b", "tank/a-b",
		"tank/.", "tank/..", "tank/...", "tank/.a", "tank/a.", "tank/..a", "./tank", "../tank", "tank/./a",
		"tank/-a", "tank/a-", "-tank", "_tank", "1tank", ":tank", "tank/", "/tank", "tank//a", "tank/a@b", "tank#b",
		"mirror", "mirrors/a", "raidz1/a", "draid/a", "spare/a", "log/a", "logs", "c0/a", "c/a", "cx0/a", "amirror/a",
		"tank/a b", "tank/a\tb", "tank/a\nb", "tank/é", "tank/a;b", "tank/$(x)", "tank/a*b",
		"tank/" + strings.Repeat("a", 250), "tank/" + strings.Repeat("a", 251), "node-a", "node-a.example.com",
		"Node-A", "node_a", "node-", "-node", "a..b", "a.b.", strings.Repeat("n", 253), strings.Repeat("n", 254)}
	rng := rand.New(rand.NewPCG(11, 22))
	frags := []string{"a", "Z", "0", "9", "-", "_", ".", "..", ":", "/", "//", "@", "#", " ", "tank", "mirror", "log",
		"c1", "x", "é", "\x00", "%", "+"}
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(7) {
			b.WriteString(frags[rng.IntN(len(frags))])
		}
		names = append(names, b.String())
	}
	return names
}

// TestCRDValidation_DatasetRulesMatchZFSExec holds the dataset-name rules
// of the generated CRDs (evaluated by the API server's CEL validator) to
// zfsexec.ValidateDataset, which the controller and the agent apply: the
// API server refuses exactly the names z8r refuses, so an object it
// accepts never fails later on its dataset's name, and no valid name is
// refused.
func TestCRDValidation_DatasetRulesMatchZFSExec(t *testing.T) {
	for _, tc := range []struct {
		file string
		path []string
	}{
		{"z8r.dev_datasetreplications.yaml", []string{"spec", "source", "dataset"}},
		{"z8r.dev_datasetreplications.yaml", []string{"spec", "targets", "[]", "dataset"}},
		{"z8r.dev_replicationtargetpolicies.yaml", []string{"spec", "targets", "[]", "parentDataset"}},
	} {
		t.Run(strings.Join(tc.path, "."), func(t *testing.T) {
			rule := loadStringRule(t, tc.file, tc.path...)
			for _, name := range nameCorpus() {
				crdErrs := rule.errors(name)
				zerr := zfsexec.ValidateDataset(name)
				if (len(crdErrs) == 0) != (zerr == nil) {
					t.Errorf("%q: CRD says %q, zfsexec.ValidateDataset says %v", name, crdErrs, zerr)
				}
			}
		})
	}
}

// TestCRDValidation_NodeRulesMatchNodeNames holds the node-name rules of
// the generated CRDs to the API server's own rule for Node names (a
// DNS-1123 subdomain), which internal/volsnap applies to tenants' targets.
func TestCRDValidation_NodeRulesMatchNodeNames(t *testing.T) {
	for _, tc := range []struct {
		file string
		path []string
	}{
		{"z8r.dev_datasetreplications.yaml", []string{"spec", "source", "node"}},
		{"z8r.dev_datasetreplications.yaml", []string{"spec", "targets", "[]", "node"}},
		{"z8r.dev_replicationtargetpolicies.yaml", []string{"spec", "targets", "[]", "node"}},
	} {
		t.Run(strings.Join(tc.path, "."), func(t *testing.T) {
			rule := loadStringRule(t, tc.file, tc.path...)
			for _, name := range nameCorpus() {
				crdErrs := rule.errors(name)
				k8sErrs := validation.IsDNS1123Subdomain(name)
				if (len(crdErrs) == 0) != (len(k8sErrs) == 0) {
					t.Errorf("%q: CRD says %q, IsDNS1123Subdomain says %q", name, crdErrs, k8sErrs)
				}
			}
		})
	}
}
