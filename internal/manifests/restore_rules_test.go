package manifests

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/z8r-project/z8r/zfsexec"
)

// TestCRDValidation_RestoreRules holds the ReplicaRestore CRD's name rules
// to what the controller applies: spec.dataset is a name
// zfsexec.ValidateDataset accepts below a pool (a clone is never a pool's
// root), spec.source.node a Node name.
func TestCRDValidation_RestoreRules(t *testing.T) {
	const file = "z8r.dev_replicarestores.yaml"
	ds := loadStringRule(t, file, "spec", "dataset")
	node := loadStringRule(t, file, "spec", "source", "node")
	for _, name := range nameCorpus() {
		crdErrs := ds.errors(name)
		ok := zfsexec.ValidateDataset(name) == nil && strings.Contains(name, "/")
		if (len(crdErrs) == 0) != ok {
			t.Errorf("dataset %q: CRD says %q, the controller says valid=%v", name, crdErrs, ok)
		}
		if (len(node.errors(name)) == 0) != (len(validation.IsDNS1123Subdomain(name)) == 0) {
			t.Errorf("node %q: CRD says %q", name, node.errors(name))
		}
	}
}
