//go:build kube

package manifests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// The messages of the CRDs' CEL rules (api/v1alpha1 markers), as a user
// sees them in kubectl's error. Each refused case below names the ones it
// must trigger; every other one must be absent, so a case proves which
// rule refused it.
const (
	msgNodeName       = "must be a Kubernetes node name: a lowercase RFC 1123 subdomain"
	msgAtHash         = "a dataset name cannot contain '@' or '#': name a dataset, not a snapshot or bookmark"
	msgCharset        = "a dataset name may contain only letters, digits, '-', '_', '.', ':' and '/' (no spaces)"
	msgPoolLetter     = "a dataset name begins with its pool's name, which begins with a letter"
	msgReservedPool   = "pool names beginning with mirror, raidz, draid, spare, log or c and a digit are reserved by ZFS"
	msgEmptyComponent = "a dataset name has no empty component (no trailing or doubled '/')"
	msgDotComponent   = "'.' and '..' are not allowed as dataset name components"
	msgDashComponent  = "no component of a dataset name may begin with '-'"
	msgTargetIsSource = "a target cannot be the source itself: on the source's node, give the target another dataset"
	msgTargetsUnique  = "targets must be unique by node and dataset (a target without a dataset uses the source's dataset name)"
	msgSourceFixed    = "source can change only to one of the targets (a promotion); to replicate another dataset, create another DatasetReplication"
)

var celMessages = []string{msgNodeName, msgAtHash, msgCharset, msgPoolLetter, msgReservedPool, msgEmptyComponent,
	msgDotComponent, msgDashComponent, msgTargetIsSource, msgTargetsUnique, msgSourceFixed}

// replicationYAML is a DatasetReplication with the given spec (YAML
// lines, indented under spec:); "" leaves spec out.
func replicationYAML(name, spec string) string {
	s := "apiVersion: z8r.dev/v1alpha1\nkind: DatasetReplication\nmetadata:\n  name: " + name + "\n"
	if spec != "" {
		s += "spec:\n" + indent(spec, "  ")
	}
	return s
}

func policyYAML(name, spec string) string {
	return "apiVersion: z8r.dev/v1alpha1\nkind: ReplicationTargetPolicy\nmetadata:\n  name: " + name + "\nspec:\n" + indent(spec, "  ")
}

func indent(s, by string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(by + l + "\n")
	}
	return b.String()
}

// targetsYAML lists n targets node-0 ... node-(n-1).
func targetsYAML(n int) string {
	s := "targets:\n"
	for i := range n {
		s += fmt.Sprintf("- node: node-%d\n", i)
	}
	return s
}

// applyStdin runs kubectl apply -f - with manifest on stdin, as a user
// pasting a manifest would, and returns kubectl's combined output.
func (k *kubectl) applyStdin(manifest string) (string, error) {
	cmd := exec.Command(k.bin, "--kubeconfig", k.kubeconfig, "apply", "-f", "-")
	cmd.Dir = k.dir
	cmd.Stdin = strings.NewReader(manifest)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// installDeployCRDs applies the CustomResourceDefinitions of
// deploy/z8r.yaml, the file users apply, over the ones the test bed
// installed from config/crd, so the rules tested are the shipped ones.
func installDeployCRDs(t *testing.T, k *kubectl, r string) {
	t.Helper()
	objs, err := Load(filepath.Join(r, "deploy", "z8r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crds bytes.Buffer
	var names []string
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" || !strings.HasSuffix(o.GetName(), ".z8r.dev") {
			continue
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		crds.WriteString("---\n")
		crds.Write(b)
		names = append(names, "crd/"+o.GetName())
	}
	if len(names) == 0 {
		t.Fatal("deploy/z8r.yaml has no z8r.dev CustomResourceDefinition")
	}
	path := filepath.Join(t.TempDir(), "crds.yaml")
	if err := os.WriteFile(path, crds.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	k.run("apply", "--server-side", "--force-conflicts", "-f", path)
	k.run(append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, names...)...)
}

// TestCRDValidation_Apply applies malformed DatasetReplications and
// ReplicationTargetPolicies with the real kubectl to a real kube-apiserver
// that has deploy/z8r.yaml's CRDs: each is refused with the messages a
// user must see (and no other rule's), and nothing is created. The
// project's samples and valid edge cases are accepted, and a changed
// source is refused while other edits are not.
func TestCRDValidation_Apply(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	r := root(t)
	k := &kubectl{t: t, bin: filepath.Join(env.BinDir, kubeenv.BinKubectl), kubeconfig: env.Kubeconfig, dir: r}
	installDeployCRDs(t, k, r)

	const src = "source:\n  node: node-a\n  dataset: tank/data\n"
	long := func(n int) string { return strings.Repeat("x", n) }

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			manifest string
			// want are substrings of kubectl's output: the field path and
			// the message (for CEL rules, one of celMessages).
			want []string
		}{
			{"no spec", replicationYAML("r-nospec", ""), []string{"spec: Required value"}},
			{"no source", replicationYAML("r-nosource", "schedule: 6h\n"), []string{"spec.source: Required value"}},
			{"source without dataset", replicationYAML("r-nodataset", "source:\n  node: node-a\n"),
				[]string{"spec.source.dataset: Required value"}},
			{"source without node", replicationYAML("r-nonode", "source:\n  dataset: tank/data\n"),
				[]string{"spec.source.node: Required value"}},
			{"upper-case node", replicationYAML("r-node-upper", "source:\n  node: Node-A\n  dataset: tank/data\n"),
				[]string{"spec.source.node: Invalid value", msgNodeName}},
			{"node with a slash", replicationYAML("r-node-slash", src+"targets:\n- node: node-b/evil\n"),
				[]string{"spec.targets[0].node: Invalid value", msgNodeName}},
			{"node beginning with '-'", replicationYAML("r-node-dash", src+"targets:\n- node: -node-b\n"),
				[]string{"spec.targets[0].node: Invalid value", msgNodeName}},
			{"empty node", replicationYAML("r-node-empty", "source:\n  node: \"\"\n  dataset: tank/data\n"),
				[]string{"spec.source.node: Invalid value", msgNodeName}},
			{"node too long", replicationYAML("r-node-long", "source:\n  node: "+long(254)+"\n  dataset: tank/data\n"),
				[]string{"spec.source.node: Too long: may not be more than 253"}},
			{"snapshot as source", replicationYAML("r-at", "source:\n  node: node-a\n  dataset: tank/data@snap\n"),
				[]string{"spec.source.dataset: Invalid value", msgAtHash}},
			{"bookmark as target", replicationYAML("r-hash", src+"targets:\n- node: node-b\n  dataset: backup/data#mark\n"),
				[]string{"spec.targets[0].dataset: Invalid value", msgAtHash}},
			{"space in dataset", replicationYAML("r-space", "source:\n  node: node-a\n  dataset: tank/my data\n"),
				[]string{"spec.source.dataset: Invalid value", msgCharset}},
			{"shell characters in dataset", replicationYAML("r-shell", "source:\n  node: node-a\n  dataset: tank/a;rm\n"),
				[]string{"spec.source.dataset: Invalid value", msgCharset}},
			{"absolute path", replicationYAML("r-abs", "source:\n  node: node-a\n  dataset: /tank/data\n"),
				[]string{"spec.source.dataset: Invalid value", msgPoolLetter}},
			{"pool beginning with a digit", replicationYAML("r-digit", src+"targets:\n- node: node-b\n  dataset: 1tank/data\n"),
				[]string{"spec.targets[0].dataset: Invalid value", msgPoolLetter}},
			{"reserved pool name", replicationYAML("r-mirror", "source:\n  node: node-a\n  dataset: mirror/data\n"),
				[]string{"spec.source.dataset: Invalid value", msgReservedPool}},
			{"reserved c0 pool name", replicationYAML("r-c0", src+"targets:\n- node: node-b\n  dataset: c0t0d0/data\n"),
				[]string{"spec.targets[0].dataset: Invalid value", msgReservedPool}},
			{"doubled slash", replicationYAML("r-dslash", "source:\n  node: node-a\n  dataset: tank//data\n"),
				[]string{"spec.source.dataset: Invalid value", msgEmptyComponent}},
			{"trailing slash", replicationYAML("r-tslash", src+"targets:\n- node: node-b\n  dataset: backup/\n"),
				[]string{"spec.targets[0].dataset: Invalid value", msgEmptyComponent}},
			{"dot-dot component", replicationYAML("r-dotdot", "source:\n  node: node-a\n  dataset: tank/../etc\n"),
				[]string{"spec.source.dataset: Invalid value", msgDotComponent}},
			{"dot component", replicationYAML("r-dot", src+"targets:\n- node: node-b\n  dataset: backup/.\n"),
				[]string{"spec.targets[0].dataset: Invalid value", msgDotComponent}},
			{"component beginning with '-'", replicationYAML("r-dash", "source:\n  node: node-a\n  dataset: tank/-o\n"),
				[]string{"spec.source.dataset: Invalid value", msgDashComponent}},
			{"empty target dataset", replicationYAML("r-ds-empty", src+"targets:\n- node: node-b\n  dataset: \"\"\n"),
				[]string{"spec.targets[0].dataset: Invalid value", "should be at least 1 chars long", msgPoolLetter}},
			{"dataset too long", replicationYAML("r-ds-long", "source:\n  node: node-a\n  dataset: tank/"+long(251)+"\n"),
				[]string{"spec.source.dataset: Too long: may not be more than 255"}},
			{"target is the source", replicationYAML("r-self", src+"targets:\n- node: node-b\n- node: node-a\n"),
				[]string{"spec: Invalid value", msgTargetIsSource}},
			{"target is the source, dataset named", replicationYAML("r-self-named", src+"targets:\n- node: node-a\n  dataset: tank/data\n"),
				[]string{"spec: Invalid value", msgTargetIsSource}},
			{"repeated target", replicationYAML("r-twice", src+"targets:\n- node: node-b\n- node: node-c\n- node: node-b\n  retention: last=3\n"),
				[]string{"spec: Invalid value", msgTargetsUnique}},
			{"repeated target, default and named dataset", replicationYAML("r-twice-named", src+"targets:\n- node: node-b\n- node: node-b\n  dataset: tank/data\n"),
				[]string{"spec: Invalid value", msgTargetsUnique}},
			{"too many targets", replicationYAML("r-many", src+targetsYAML(65)),
				[]string{"spec.targets: Too many: 65: must have at most 64 items"}},
			{"schedule too long", replicationYAML("r-sched-long", src+"schedule: "+long(257)+"\n"),
				[]string{"spec.schedule: Too long: may not be more than 256"}},
			{"retention too long", replicationYAML("r-ret-long", src+"retention: "+long(1025)+"\n"),
				[]string{"spec.retention: Too long: may not be more than 1024"}},
			{"target retention too long", replicationYAML("r-tret-long", src+"targets:\n- node: node-b\n  retention: "+long(1025)+"\n"),
				[]string{"spec.targets[0].retention: Too long: may not be more than 1024"}},

			{"policy without targets", policyYAML("p-empty", "namespaceSelector: {}\ntargets: []\n"),
				[]string{"spec.targets: Invalid value: 0: spec.targets in body should have at least 1 items"}},
			{"policy without namespaceSelector", policyYAML("p-nosel", "targets:\n- node: node-b\n  parentDataset: tank/replicas\n"),
				[]string{"spec.namespaceSelector: Required value"}},
			{"policy parent with trailing slash", policyYAML("p-tslash", "namespaceSelector: {}\ntargets:\n- node: node-b\n  parentDataset: tank/replicas/\n"),
				[]string{"spec.targets[0].parentDataset: Invalid value", msgEmptyComponent}},
			{"policy parent as a snapshot", policyYAML("p-at", "namespaceSelector: {}\ntargets:\n- node: node-b\n  parentDataset: tank@x\n"),
				[]string{"spec.targets[0].parentDataset: Invalid value", msgAtHash}},
			{"policy parent with dot-dot", policyYAML("p-dotdot", "namespaceSelector: {}\ntargets:\n- node: node-b\n  parentDataset: tank/replicas/..\n"),
				[]string{"spec.targets[0].parentDataset: Invalid value", msgDotComponent}},
			{"policy node upper-case", policyYAML("p-upper", "namespaceSelector: {}\ntargets:\n- node: Node2\n  parentDataset: tank/replicas\n"),
				[]string{"spec.targets[0].node: Invalid value", msgNodeName}},
			{"policy repeated target", policyYAML("p-twice", "namespaceSelector: {}\ntargets:\n- node: node2\n  parentDataset: tank/replicas\n- node: node2\n  parentDataset: tank/replicas\n"),
				[]string{`spec.targets[1]: Duplicate value: {"node":"node2","parentDataset":"tank/replicas"}`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := k.applyStdin(tc.manifest)
				if err == nil {
					t.Fatalf("kubectl apply accepted:\n%s\n%s", tc.manifest, out)
				}
				if !strings.Contains(out, " is invalid: ") {
					t.Errorf("kubectl apply failed for another reason than validation: %v\n%s", err, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("kubectl apply output lacks %q:\n%s", w, out)
					}
				}
				for _, m := range celMessages {
					if !slices.Contains(tc.want, m) && strings.Contains(out, m) {
						t.Errorf("kubectl apply output has the unexpected message %q:\n%s", m, out)
					}
				}
				kind, name := kindAndName(t, tc.manifest)
				if _, errOut, err := k.try("get", kind, name); err == nil || !strings.Contains(errOut, "NotFound") {
					t.Errorf("kubectl get %s %s after the refusal: %v %s, want NotFound", kind, name, err, errOut)
				}
			})
		}
	})

	t.Run("accepted", func(t *testing.T) {
		k.run("apply", "-k", filepath.Join(r, "config", "samples"))
		k.run("get", "datasetreplication.z8r.dev/node-a-tank-data", "replicationtargetpolicy.z8r.dev/tenant-replicas")

		for _, tc := range []struct {
			name     string
			manifest string
		}{
			{"every allowed character", replicationYAML("ok-chars",
				"source:\n  node: node-1.example.com\n  dataset: Pool_1/a.b:c/d-e_f.\n")},
			{"names at their length limits", replicationYAML("ok-long",
				"source:\n  node: "+strings.Repeat(strings.Repeat("n", 63)+".", 3)+strings.Repeat("m", 61)+"\n  dataset: tank/"+long(250)+"\ntargets:\n- node: node-b\n  dataset: backup/"+long(248)+"\n")},
			{"target on the source's node in another dataset", replicationYAML("ok-local",
				src+"targets:\n- node: node-a\n  dataset: backup/data\n")},
			{"same node twice into two datasets", replicationYAML("ok-two-datasets",
				src+"targets:\n- node: node-b\n- node: node-b\n  dataset: backup/data\n")},
			{"same dataset named on another node", replicationYAML("ok-named-same",
				src+"targets:\n- node: node-b\n  dataset: tank/data\n- node: node-c\n")},
			{"64 targets", replicationYAML("ok-64", src+targetsYAML(64))},
			// The grammar is the controller's to check (an Event and
			// Ready=False): the API server only bounds the length.
			{"schedule and retention the controller refuses", replicationYAML("ok-grammar",
				src+"schedule: every day\nretention: keep some\nsuspend: true\n")},
			{"pool-wide policy", policyYAML("ok-pool",
				"namespaceSelector: {}\ntargets:\n- node: node2\n  parentDataset: tank\n- node: node3\n  parentDataset: tank\n- node: node3\n  parentDataset: backup/tenants\n")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if out, err := k.applyStdin(tc.manifest); err != nil {
					t.Fatalf("kubectl apply refused:\n%s\n%v: %s", tc.manifest, err, out)
				}
				kind, name := kindAndName(t, tc.manifest)
				k.run("get", kind, name)
			})
		}
	})

	t.Run("source changes only to a target", func(t *testing.T) {
		orig := src + "targets:\n- node: node-b\n"
		if out, err := k.applyStdin(replicationYAML("imm", orig)); err != nil {
			t.Fatalf("create: %v: %s", err, out)
		}
		for _, tc := range []struct {
			name, spec string
		}{
			{"another node", "source:\n  node: node-z\n  dataset: tank/data\n" + "targets:\n- node: node-b\n"},
			{"another dataset", "source:\n  node: node-a\n  dataset: tank/other\n" + "targets:\n- node: node-b\n"},
			{"a target's node with another dataset", "source:\n  node: node-b\n  dataset: tank/other\n" + "targets:\n- node: node-a\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := k.applyStdin(replicationYAML("imm", tc.spec))
				if err == nil {
					t.Fatalf("kubectl apply changed the source:\n%s", out)
				}
				for _, w := range []string{"spec: Invalid value", msgSourceFixed} {
					if !strings.Contains(out, w) {
						t.Errorf("kubectl apply output lacks %q:\n%s", w, out)
					}
				}
			})
		}
		t.Run("a promotion: the source becomes a target's", func(t *testing.T) {
			if out, err := k.applyStdin(replicationYAML("promo", orig)); err != nil {
				t.Fatalf("create: %v: %s", err, out)
			}
			swapped := "source:\n  node: node-b\n  dataset: tank/data\ntargets:\n- node: node-a\n"
			if out, err := k.applyStdin(replicationYAML("promo", swapped)); err != nil {
				t.Fatalf("kubectl apply refused a promotion: %v: %s", err, out)
			}
			if got := k.run("get", "datasetreplication.z8r.dev/promo", "-o", "jsonpath={.spec.source.node}"); got != "node-b" {
				t.Errorf("source after the promotion %q, want node-b", got)
			}
		})
		t.Run("other fields stay editable", func(t *testing.T) {
			edited := src + "schedule: 1h\nretention: last=5\ntargets:\n- node: node-b\n- node: node-c\n  dataset: backup/data\n"
			if out, err := k.applyStdin(replicationYAML("imm", edited)); err != nil {
				t.Fatalf("kubectl apply refused an edit that keeps the source: %v: %s", err, out)
			}
			got := k.run("get", "datasetreplication.z8r.dev/imm", "-o", "jsonpath={.spec.source.node}:{.spec.source.dataset} {.spec.schedule} {.spec.targets[1].node}")
			if want := "node-a:tank/data 1h node-c"; got != want {
				t.Errorf("after the edit: %q, want %q", got, want)
			}
		})
	})
}

// kindAndName reads the kind (as a kubectl resource) and name of a
// one-object manifest.
func kindAndName(t *testing.T, manifest string) (string, string) {
	t.Helper()
	objs, err := Parse([]byte(manifest))
	if err != nil || len(objs) != 1 {
		t.Fatalf("parse manifest: %v (%d objects)", err, len(objs))
	}
	return strings.ToLower(objs[0].GetKind()) + ".z8r.dev", objs[0].GetName()
}
