//go:build kube

package manifests

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

const (
	agentUser      = "system:serviceaccount:z8r-system:z8r-agent"
	controllerUser = "system:serviceaccount:z8r-system:z8r-controller"
	// extraNodeName is the user extra a pod-bound service account token
	// carries: the name of the pod's node.
	extraNodeName = "authentication.kubernetes.io/node-name"
)

var saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:z8r-system", "system:authenticated"}

func TestMain(m *testing.M) {
	logf.SetLogger(logrDiscard())
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestInstall_ManifestsUpToDate regenerates the CRDs, the controller's
// ClusterRole and deploy/z8r.yaml into a temporary folder and diffs them
// with the committed files.
func TestInstall_ManifestsUpToDate(t *testing.T) {
	r := root(t)
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(r, "hack", "manifests.sh"), out)
	cmd.Env = append(os.Environ(), "KUBECTL="+filepath.Join(kubeenv.BinDir(r), kubeenv.BinKubectl))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/manifests.sh: %v\n%s(run make controller-gen kube-tools)", err, b)
	}
	generated, err := filepath.Glob(filepath.Join(out, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(r, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rel := func(paths []string, base string) []string {
		var o []string
		for _, p := range paths {
			s, _ := filepath.Rel(base, p)
			o = append(o, s)
		}
		return o
	}
	if g, c := rel(generated, out), rel(committed, r); !slices.Equal(g, c) {
		t.Errorf("CRD files: generated %q, committed %q: run make manifests (and remove CRDs of deleted types)", g, c)
	}
	for _, f := range append(rel(generated, out), filepath.Join("config", "rbac", "role.yaml"), filepath.Join("deploy", "z8r.yaml")) {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(r, f))
		if err != nil {
			t.Errorf("%s: %v: run make manifests", f, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run make manifests\n%s", f, diff(t, filepath.Join(r, f), filepath.Join(out, f)))
		}
	}
}

// TestInstall_DeepCopyUpToDate regenerates the deepcopy functions of each
// API package into a temporary folder and diffs them with the committed
// zz_generated.deepcopy.go.
func TestInstall_DeepCopyUpToDate(t *testing.T) {
	r := root(t)
	gen := os.Getenv("CONTROLLER_GEN")
	if gen == "" {
		gen = filepath.Join(r, ".cache", "bin", "controller-gen")
	}
	if _, err := os.Stat(gen); err != nil {
		t.Fatalf("controller-gen: %v: run make controller-gen", err)
	}
	pkgs := goList(t, "-f", "{{.Dir}}", "./api/...")
	if len(pkgs) == 0 {
		t.Fatal("no packages under api/")
	}
	for _, dir := range pkgs {
		rel, err := filepath.Rel(r, dir)
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		cmd := exec.Command(gen, "object", "paths=./"+rel, "output:object:dir="+out)
		cmd.Dir = r
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("controller-gen object %s: %v\n%s", rel, err, b)
		}
		want, err := os.ReadFile(filepath.Join(out, "zz_generated.deepcopy.go"))
		if err != nil {
			continue // a package without API types
		}
		committed := filepath.Join(dir, "zz_generated.deepcopy.go")
		if got, err := os.ReadFile(committed); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run make generate\n%s", filepath.Join(rel, "zz_generated.deepcopy.go"),
				diff(t, committed, filepath.Join(out, "zz_generated.deepcopy.go")))
		}
	}
}

func diff(t *testing.T, a, b string) string {
	out, _ := exec.Command("diff", "-u", a, b).CombinedOutput()
	lines := strings.Split(string(out), "\n")
	if len(lines) > 40 {
		lines = append(lines[:40], "...")
	}
	return strings.Join(lines, "\n")
}

// TestInstall applies deploy/ to a real kube-apiserver (CRDs and namespace
// first, then everything with --dry-run=server, then for real) and checks
// what each service account may do, by SubjectAccessReview, by kubectl
// auth can-i with impersonation, and by running the real binaries with
// the service accounts' identities.
func TestInstall(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	r := root(t)
	k := &kubectl{t: t, bin: filepath.Join(env.BinDir, kubeenv.BinKubectl), kubeconfig: env.Kubeconfig, dir: r}
	deployYAML := filepath.Join(r, "deploy", "z8r.yaml")
	objs, err := Load(deployYAML)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("CRDs and namespace applied first", func(t *testing.T) {
		var first bytes.Buffer
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				first.WriteString("---\n")
				first.Write(b)
			}
		}
		path := filepath.Join(t.TempDir(), "first.yaml")
		if err := os.WriteFile(path, first.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		k.run("apply", "-f", path)
		k.run("wait", "--for=condition=Established", "--timeout=60s", "crd/z8rnodes.z8r.dev", "crd/datasetreplications.z8r.dev")
	})

	t.Run("every manifest passes --dry-run=server", func(t *testing.T) {
		out := k.run("apply", "--dry-run=server", "-f", deployYAML)
		if n := strings.Count(out, "(server dry run)"); n != len(objs) {
			t.Errorf("dry run reported %d objects, deploy/z8r.yaml has %d:\n%s", n, len(objs), out)
		}
		k.run("apply", "--dry-run=server", "-k", filepath.Join(r, "deploy"))
		k.run("apply", "--dry-run=server", "-k", filepath.Join(r, "config", "samples"))
		k.run("apply", "--dry-run=server", "-f", filepath.Join(r, "config", "samples", "node-annotations.yaml"))
		k.run("apply", "--dry-run=server", "-f", filepath.Join(r, "deploy", "volumesnapshotclass.yaml"))
	})

	t.Run("kubectl apply -k deploy/", func(t *testing.T) {
		k.run("apply", "-k", filepath.Join(r, "deploy"))
		for _, o := range objs {
			args := []string{"get", strings.ToLower(o.GetKind()) + "." + groupOf(o.GetAPIVersion()), o.GetName()}
			if ns := o.GetNamespace(); ns != "" {
				args = append(args, "-n", ns)
			}
			k.run(args...)
		}
	})

	t.Run("RBAC by SubjectAccessReview", func(t *testing.T) {
		testAccess(t, env.Client)
	})

	t.Run("kubectl auth can-i with impersonation", func(t *testing.T) {
		for _, tc := range []struct {
			as   string
			args []string
			want string
		}{
			{agentUser, []string{"get", "secrets", "-n", "z8r-system"}, "no"},
			{agentUser, []string{"list", "secrets", "--all-namespaces"}, "no"},
			{agentUser, []string{"patch", "persistentvolumeclaims", "-n", "default"}, "no"},
			{agentUser, []string{"update", "z8rnodes.z8r.dev", "--subresource=status"}, "yes"},
			{agentUser, []string{"update", "z8rnodes.z8r.dev"}, "no"},
			{controllerUser, []string{"patch", "z8rnodes.z8r.dev"}, "yes"},
			{controllerUser, []string{"get", "secrets", "-n", "z8r-system"}, "no"},
			{controllerUser, []string{"update", "leases.coordination.k8s.io/z8r-controller.z8r.dev", "-n", "z8r-system"}, "yes"},
			{controllerUser, []string{"update", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system"}, "no"},
		} {
			out, _, _ := k.try(append([]string{"auth", "can-i", "--as", tc.as}, tc.args...)...)
			if got := strings.TrimSpace(out); got != tc.want {
				t.Errorf("kubectl auth can-i --as %s %s = %q, want %q", tc.as, strings.Join(tc.args, " "), got, tc.want)
			}
		}
		out := k.run("auth", "can-i", "--list", "--as", agentUser, "-n", "z8r-system")
		t.Logf("everything the agent may do (kubectl auth can-i --list --as %s):\n%s", agentUser, out)
	})

	t.Run("agent writes only its own node's Z8RNode", func(t *testing.T) {
		testAgentAdmission(t, env)
	})

	t.Run("agent policy holds in any install namespace", func(t *testing.T) {
		testAgentAdmissionAnyNamespace(t, env)
	})

	t.Run("kubelets cannot write z8r policy on Nodes", func(t *testing.T) {
		testNodeAdmission(t, env)
	})

	bins := buildBinaries(t)

	t.Run("binaries accept every flag the manifests pass", func(t *testing.T) {
		d, c := agent(t, objs), controller(t, objs)
		checkFlags(t, bins.agent, container(t, d.Spec.Template.Spec, "agent").Args)
		checkFlags(t, bins.controller, container(t, c.Spec.Template.Spec, "controller").Args)
	})

	t.Run("controller reconciles with its RBAC", func(t *testing.T) {
		testControllerRuns(t, env, bins.controller)
	})

	t.Run("agent publishes and serves probes with its RBAC", func(t *testing.T) {
		testAgentRuns(t, env, bins.agent)
	})
}

func groupOf(apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return g
	}
	return ""
}

// access is one SubjectAccessReview: can user do verb on
// group/resource[/subresource] [name] in namespace?
type access struct {
	user                  string
	verb, group, resource string
	sub, name, ns         string
	allowed               bool
	why                   string
}

// testAccess lists what each service account must and must not be able to
// do. The controller's allowed checks are what its reconcilers call (see
// the +kubebuilder:rbac markers in controllers/); the agent's are what
// internal/nodepublish calls.
func testAccess(t *testing.T, c client.Client) {
	const (
		z8r    = "z8r.dev"
		core   = ""
		coord  = "coordination.k8s.io"
		events = "events.k8s.io"
		ns     = "z8r-system"
		yes    = true
		no     = false
	)
	checks := []access{
		// agent: publish its Z8RNode
		{agentUser, "get", z8r, "z8rnodes", "", "node-a", "", yes, "nodepublish reads its Z8RNode"},
		{agentUser, "create", z8r, "z8rnodes", "", "", "", yes, "nodepublish creates its Z8RNode"},
		{agentUser, "update", z8r, "z8rnodes", "status", "node-a", "", yes, "nodepublish writes status"},
		{agentUser, "patch", z8r, "z8rnodes", "status", "node-a", "", yes, "status patch"},
		// agent: nothing else
		{agentUser, "update", z8r, "z8rnodes", "", "node-a", "", no, "the pinned host key is in spec"},
		{agentUser, "patch", z8r, "z8rnodes", "", "node-a", "", no, "the pinned host key is in spec"},
		{agentUser, "delete", z8r, "z8rnodes", "", "node-b", "", no, "other nodes' objects"},
		{agentUser, "list", z8r, "z8rnodes", "", "", "", no, "not needed"},
		{agentUser, "watch", z8r, "z8rnodes", "", "", "", no, "not needed"},
		{agentUser, "get", core, "secrets", "", "", ns, no, "keys are mounted volumes"},
		{agentUser, "get", core, "secrets", "", "z8r-agent-authorized-keys", ns, no, "its keys come as volumes too"},
		{agentUser, "get", core, "secrets", "", "z8r-controller-key", ns, no, "the controller's key"},
		{agentUser, "list", core, "secrets", "", "", "", no, "any Secret"},
		{agentUser, "watch", core, "secrets", "", "", "kube-system", no, "any Secret"},
		{agentUser, "update", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{agentUser, "patch", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{agentUser, "delete", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{agentUser, "create", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{agentUser, "update", core, "persistentvolumes", "", "", "", no, "PVs"},
		{agentUser, "get", core, "nodes", "", "node-a", "", no, "not needed"},
		{agentUser, "patch", core, "nodes", "", "node-a", "", no, "nodes"},
		{agentUser, "update", z8r, "datasetreplications", "", "", "", no, "the controller's objects"},
		{agentUser, "update", z8r, "datasetreplications", "status", "", "", no, "the controller's objects"},
		{agentUser, "create", z8r, "datasetreplications", "", "", "", no, "the controller's objects"},
		{agentUser, "create", core, "pods", "", "", ns, no, "workloads"},
		{agentUser, "create", core, "pods", "exec", "", ns, no, "workloads"},
		{agentUser, "create", events, "events", "", "", "default", no, "not needed"},
		{agentUser, "update", coord, "leases", "", "z8r-controller.z8r.dev", ns, no, "the controller's lease"},
		{agentUser, "update", "snapshot.storage.k8s.io", "volumesnapshotcontents", "", "", "", no, "snapshots"},

		// controller: node policy (nodes -> DatasetReplications)
		{controllerUser, "list", core, "nodes", "", "", "", yes, "node annotations"},
		{controllerUser, "watch", core, "nodes", "", "", "", yes, "node annotations"},
		{controllerUser, "get", core, "nodes", "", "node-a", "", yes, "node annotations"},
		{controllerUser, "create", z8r, "datasetreplications", "", "", "", yes, "generated from annotations"},
		{controllerUser, "update", z8r, "datasetreplications", "", "", "", yes, "spec and finalizer"},
		{controllerUser, "patch", z8r, "datasetreplications", "", "", "", yes, "spec"},
		{controllerUser, "delete", z8r, "datasetreplications", "", "", "", yes, "annotation removed"},
		{controllerUser, "list", z8r, "datasetreplications", "", "", "", yes, "cache"},
		{controllerUser, "watch", z8r, "datasetreplications", "", "", "", yes, "cache"},
		// controller: replication
		{controllerUser, "update", z8r, "datasetreplications", "status", "", "", yes, "status"},
		{controllerUser, "update", z8r, "datasetreplications", "finalizers", "", "", yes, "release holds"},
		{controllerUser, "get", z8r, "z8rnodes", "", "node-a", "", yes, "agent address and pin"},
		{controllerUser, "list", z8r, "z8rnodes", "", "", "", yes, "cache"},
		{controllerUser, "watch", z8r, "z8rnodes", "", "", "", yes, "cache"},
		// controller: host-key pinning
		{controllerUser, "patch", z8r, "z8rnodes", "", "node-a", "", yes, "pin on first use"},
		{controllerUser, "update", z8r, "z8rnodes", "status", "node-a", "", yes, "HostKeyTrusted condition"},
		{controllerUser, "create", events, "events", "", "", "default", yes, "events on cluster-scoped objects"},
		{controllerUser, "patch", events, "events", "", "", "default", yes, "event series"},
		// controller: leader election
		{controllerUser, "create", coord, "leases", "", "", ns, yes, "leader lease"},
		{controllerUser, "get", coord, "leases", "", "z8r-controller.z8r.dev", ns, yes, "leader lease"},
		{controllerUser, "update", coord, "leases", "", "z8r-controller.z8r.dev", ns, yes, "leader lease"},
		{controllerUser, "create", core, "events", "", "", ns, yes, "leader election events"},
		// controller: nothing else
		{controllerUser, "get", core, "secrets", "", "", ns, no, "its key is a mounted volume"},
		{controllerUser, "list", core, "secrets", "", "", "", no, "any Secret"},
		{controllerUser, "update", core, "nodes", "", "node-a", "", no, "only reads nodes"},
		{controllerUser, "patch", core, "nodes", "", "node-a", "", yes, "records a node's annotation problem in z8r.dev/annotation-problem"},
		{controllerUser, "create", z8r, "z8rnodes", "", "", "", no, "agents create them"},
		{controllerUser, "delete", z8r, "z8rnodes", "", "node-a", "", no, "agents own them"},
		{controllerUser, "deletecollection", z8r, "datasetreplications", "", "", "", no, "one by one"},
		{controllerUser, "update", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{controllerUser, "delete", core, "persistentvolumeclaims", "", "", "default", no, "PVCs"},
		{controllerUser, "get", coord, "leases", "", "kube-controller-manager", ns, no, "other leases"},
		{controllerUser, "update", coord, "leases", "", "z8r-controller.z8r.dev", "kube-system", no, "other namespaces"},
		{controllerUser, "create", core, "pods", "", "", ns, no, "workloads"},
		{controllerUser, "create", core, "pods", "exec", "", ns, no, "workloads"},
		{controllerUser, "delete", events, "events", "", "", "default", no, "events"},
		{controllerUser, "create", core, "events", "", "", "default", no, "core events only for leader election"},
		{controllerUser, "impersonate", core, "users", "", "", "", no, "impersonation"},
		{controllerUser, "bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "", no, "RBAC"},
		{controllerUser, "escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", "", no, "RBAC"},
	}
	ctx := context.Background()
	for _, a := range checks {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   a.user,
			Groups: saGroups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Name: a.name,
			},
		}}
		if err := c.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != a.allowed {
			res := a.resource
			if a.sub != "" {
				res += "/" + a.sub
			}
			t.Errorf("%s %s %s.%s name=%q ns=%q: allowed=%v, want %v (%s)",
				strings.TrimPrefix(a.user, "system:serviceaccount:z8r-system:"), a.verb, res, a.group, a.name, a.ns,
				sar.Status.Allowed, a.allowed, a.why)
		}
	}
}

// impersonating returns a client that acts as user with the service
// account groups and the given node name (none if "").
func impersonating(t *testing.T, env *kubeenv.Env, user, node string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: saGroups}
	if node != "" {
		cfg.Impersonate.Extra = map[string][]string{extraNodeName: {node}}
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testAgentAdmission: the ValidatingAdmissionPolicy lets the agent of node
// X create and update only the Z8RNode X, never with a pinned key.
func testAgentAdmission(t *testing.T, env *kubeenv.Env) {
	ctx := context.Background()
	admin := env.Client
	other := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-b"}}
	if err := admin.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	agentA := impersonating(t, env, agentUser, "adm-node-a")

	// The policy's informer takes a moment after the policy is created.
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		probe := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-probe"}}
		lastErr = agentA.Create(ctx, probe)
		if lastErr == nil {
			_ = admin.Delete(ctx, probe)
			return false, nil
		}
		return apierrors.IsInvalid(lastErr) || apierrors.IsForbidden(lastErr), nil
	})
	if err != nil {
		t.Fatalf("the agent can still create another node's Z8RNode: %v (last: %v)", err, lastErr)
	}
	if !strings.Contains(lastErr.Error(), "may write only the Z8RNode of its own node") {
		t.Errorf("denial = %v, want the policy's message", lastErr)
	}

	own := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-a"}}
	if err := agentA.Create(ctx, own); err != nil {
		t.Fatalf("agent of adm-node-a creating its own Z8RNode: %v", err)
	}
	own.Status.Address, own.Status.Ready = "10.0.0.1:2022", true
	if err := agentA.Status().Update(ctx, own); err != nil {
		t.Errorf("agent of adm-node-a updating its own status: %v", err)
	}
	if err := admin.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	other.Status.Address = "10.6.6.6:2022"
	if err := agentA.Status().Update(ctx, other); err == nil {
		t.Error("agent of adm-node-a updated the status of adm-node-b (could redirect the controller)")
	}
	if err := agentA.Get(ctx, client.ObjectKeyFromObject(own), own); err != nil {
		t.Fatal(err)
	}
	own.Spec.PinnedHostKey = "ssh-ed25519 AAAA"
	if err := agentA.Update(ctx, own); !apierrors.IsForbidden(err) {
		t.Errorf("agent updating its own pinned key: %v, want Forbidden by RBAC", err)
	}

	agentE := impersonating(t, env, agentUser, "adm-node-e")
	pinned := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-e"}, Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: "ssh-ed25519 AAAA"}}
	if err := agentE.Create(ctx, pinned); err == nil || !strings.Contains(err.Error(), "may not pin a host key") {
		t.Errorf("agent creating its Z8RNode with a pinned key: %v, want the policy's denial", err)
	}
	pools := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-e"}, Spec: z8rv1.Z8RNodeSpec{Pools: []string{"tank", "backup"}}}
	if err := agentE.Create(ctx, pools); err == nil || !strings.Contains(err.Error(), "may not choose its node's pools") {
		t.Errorf("agent creating its Z8RNode with pools: %v, want the policy's denial", err)
	}
	own.Spec.PinnedHostKey, own.Spec.Pools = "", []string{"tank", "other"}
	if err := agentA.Update(ctx, own); !apierrors.IsForbidden(err) {
		t.Errorf("agent updating its own pools: %v, want Forbidden by RBAC", err)
	}

	// A token without a node (not bound to a pod) writes nothing.
	unbound := impersonating(t, env, agentUser, "")
	if err := unbound.Create(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "adm-node-f"}}); err == nil {
		t.Error("agent identity without a node name created a Z8RNode")
	}
	// The policy applies to the agent only.
	other.Status.Address = "10.0.0.2:2022"
	if err := admin.Status().Update(ctx, other); err != nil {
		t.Errorf("admin updating a Z8RNode status: %v", err)
	}
}

type binaries struct{ agent, controller string }

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	built     binaries
	buildErr  error
)

func buildBinaries(t *testing.T) binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "z8r-install-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/z8r-agent", "./cmd/z8r-controller")
		cmd.Dir = root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		built = binaries{agent: filepath.Join(dir, "z8r-agent"), controller: filepath.Join(dir, "z8r-controller")}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

var flagName = regexp.MustCompile(`^--?([a-zA-Z0-9-]+)`)

// checkFlags runs bin -help and checks every flag in args is defined.
func checkFlags(t *testing.T, bin string, args []string) {
	t.Helper()
	out, _ := exec.Command(bin, "-help").CombinedOutput()
	defined := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := flagName.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			defined[m[1]] = true
		}
	}
	if len(defined) == 0 {
		t.Fatalf("%s -help listed no flags:\n%s", bin, out)
	}
	for _, a := range args {
		m := flagName.FindStringSubmatch(a)
		if m == nil {
			t.Errorf("%s: argument %q is not a flag", filepath.Base(bin), a)
			continue
		}
		if !defined[m[1]] {
			t.Errorf("%s has no flag -%s (manifest argument %q)", filepath.Base(bin), m[1], a)
		}
	}
}

// saKubeconfig writes a copy of the admin kubeconfig that impersonates
// user with the service account groups (and node name, if any).
func saKubeconfig(t *testing.T, env *kubeenv.Env, user, node string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
		ai.ImpersonateGroups = saGroups
		if node != "" {
			ai.ImpersonateUserExtra = map[string][]string{extraNodeName: {node}}
		}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// process runs a binary until the test ends, logging to a file that is
// printed when the test fails.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.output())
		}
	})
	return p
}

func (p *process) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// forbidden reports log lines of denied API requests.
func (p *process) forbidden() []string {
	var out []string
	for _, line := range strings.Split(p.output(), "\n") {
		if strings.Contains(line, "forbidden") || strings.Contains(line, "Forbidden") {
			out = append(out, line)
		}
	}
	return out
}

func poll(t *testing.T, what string, timeout time.Duration, p *process, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("process exited: %s", p.cmd.ProcessState)
		default:
		}
		return cond(ctx)
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func writeKey(t *testing.T) (path string, pub ssh.PublicKey) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err = ssh.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// testControllerRuns runs z8r-controller as its service account: it must
// win the leader lease, pin a new agent's host key, turn node annotations
// into a DatasetReplication with its finalizer and status, and record
// events, all without one forbidden request.
func testControllerRuns(t *testing.T, env *kubeenv.Env, bin string) {
	ctx := context.Background()
	c := env.Client
	const seed = "zfs.replication.takutakahashi.dev"
	for _, n := range []*corev1.Node{
		kubeenv.Node("ctl-node-a", map[string]string{seed: "true"}, map[string]string{seed + "/master": "tank/ctl"}),
		kubeenv.Node("ctl-node-b", map[string]string{seed: "true"}, map[string]string{seed + "/replica": "tank/ctl"}),
	} {
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	_, hostKey := writeKey(t)
	hostKeyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey)))
	zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "ctl-node-a"}}
	if err := c.Create(ctx, zn); err != nil {
		t.Fatal(err)
	}
	zn.Status = z8rv1.Z8RNodeStatus{Address: "127.0.0.1:1", HostKey: hostKeyLine, HostKeyFingerprint: ssh.FingerprintSHA256(hostKey),
		Pools: []string{"tank"}, Ready: true}
	if err := c.Status().Update(ctx, zn); err != nil {
		t.Fatal(err)
	}

	keyPath, _ := writeKey(t)
	p := start(t, "z8r-controller", []string{"KUBECONFIG=" + saKubeconfig(t, env, controllerUser, "")}, bin,
		"--leader-elect=true", "--leader-election-namespace=z8r-system",
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--ssh-key="+keyPath)

	poll(t, "the leader lease", time.Minute, p, func(ctx context.Context) (bool, error) {
		var l coordinationv1.Lease
		err := c.Get(ctx, client.ObjectKey{Namespace: "z8r-system", Name: "z8r-controller.z8r.dev"}, &l)
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", client.IgnoreNotFound(err)
	})
	poll(t, "the host key pinned on first use", 30*time.Second, p, func(ctx context.Context) (bool, error) {
		var got z8rv1.Z8RNode
		if err := c.Get(ctx, client.ObjectKey{Name: "ctl-node-a"}, &got); err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == z8rv1.ConditionHostKeyTrusted && cond.Status == metav1.ConditionTrue {
				return got.Spec.PinnedHostKey == hostKeyLine, nil
			}
		}
		return false, nil
	})
	var dr z8rv1.DatasetReplication
	poll(t, "a DatasetReplication from the node annotations, with finalizer and status", 30*time.Second, p, func(ctx context.Context) (bool, error) {
		var list z8rv1.DatasetReplicationList
		if err := c.List(ctx, &list, client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}); err != nil {
			return false, err
		}
		for _, item := range list.Items {
			if item.Spec.Source.Node == "ctl-node-a" && len(item.Finalizers) > 0 && item.Status.State != "" {
				dr = item
				return true, nil
			}
		}
		return false, nil
	})
	if len(dr.Spec.Targets) != 1 || dr.Spec.Targets[0].Node != "ctl-node-b" {
		t.Errorf("replication targets = %+v, want ctl-node-b", dr.Spec.Targets)
	}
	poll(t, "the HostKeyPinned event", 30*time.Second, p, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.List(ctx, &list); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Reason == z8rv1.EventHostKeyPinned && e.Regarding.Name == "ctl-node-a" {
				return true, nil
			}
		}
		return false, nil
	})
	// A sync request (what kubectl z8r sync sets) is accepted from an admin
	// and reconciled by the controller under its own identity.
	patch := client.MergeFrom(dr.DeepCopy())
	metav1.SetMetaDataAnnotation(&dr.ObjectMeta, z8rv1.AnnotationSyncRequested, "1")
	if err := c.Patch(ctx, &dr, patch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if lines := p.forbidden(); len(lines) > 0 {
		t.Errorf("the controller was denied requests:\n%s", strings.Join(lines, "\n"))
	}
}

// testAgentRuns runs z8r-agent as its service account on node
// agent-node-x: it publishes its Z8RNode and serves /healthz, /readyz and
// /metrics; a second agent that claims another node's name is refused.
func testAgentRuns(t *testing.T, env *kubeenv.Env, bin string) {
	dir := t.TempDir()
	authorized := filepath.Join(dir, "authorized-keys")
	_, pub := writeKey(t)
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	healthAddr := freeAddr(t)
	kubeconfig := saKubeconfig(t, env, agentUser, "agent-node-x")
	args := func(node, health string) []string {
		return []string{"--node-name=" + node, "--pools=z8rnosuchpool", "--listen=127.0.0.1:0",
			"--advertise-address=127.0.0.1:2022", "--host-key=" + filepath.Join(dir, node+"-host_key"),
			"--authorized-keys=" + authorized, "--kubeconfig=" + kubeconfig, "--publish-interval=1s", "--health-addr=" + health}
	}
	p := start(t, "z8r-agent", nil, bin, args("agent-node-x", healthAddr)...)

	c := env.Client
	var zn z8rv1.Z8RNode
	poll(t, "the agent's Z8RNode", time.Minute, p, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: "agent-node-x"}, &zn)
		return err == nil && zn.Status.HostKey != "" && zn.Status.LastHeartbeatTime != nil, client.IgnoreNotFound(err)
	})
	if zn.Status.Ready || zn.Status.Message == "" || zn.Spec.PinnedHostKey != "" {
		t.Errorf("Z8RNode of an agent without its pool: ready=%v message=%q pinned=%q; want not ready, a reason, no pin",
			zn.Status.Ready, zn.Status.Message, zn.Spec.PinnedHostKey)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + healthAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz without the pool = %d %q, want 503 not ready", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "z8r_agent_ready 0") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, want z8r_agent_ready 0 and Go metrics:\n%.500s", code, body)
	}
	if lines := p.forbidden(); len(lines) > 0 {
		t.Errorf("the agent was denied requests:\n%s", strings.Join(lines, "\n"))
	}

	// An agent whose token says agent-node-x but that publishes as
	// agent-node-y (a compromised or misconfigured agent) is refused.
	liar := start(t, "z8r-agent-liar", nil, bin, args("agent-node-y", freeAddr(t))...)
	poll(t, "the policy's refusal in the lying agent's log", 30*time.Second, liar, func(context.Context) (bool, error) {
		return strings.Contains(liar.output(), "may write only the Z8RNode of its own node"), nil
	})
	if err := c.Get(context.Background(), client.ObjectKey{Name: "agent-node-y"}, &z8rv1.Z8RNode{}); !apierrors.IsNotFound(err) {
		t.Errorf("Z8RNode agent-node-y: %v, want not found", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// kubectl runs the real kubectl against the test control plane.
type kubectl struct {
	t          *testing.T
	bin        string
	kubeconfig string
	dir        string
}

// try runs kubectl and returns its stdout and stderr.
func (k *kubectl) try(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Dir = k.dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func (k *kubectl) run(args ...string) string {
	k.t.Helper()
	out, errOut, err := k.try(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}
