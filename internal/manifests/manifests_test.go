package manifests

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/z8r-project/z8r/internal/cli"
)

const namespace = "z8r-system"

func deployObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Load(filepath.Join(root(t), "deploy", "z8r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("deploy/z8r.yaml is empty: run make manifests")
	}
	return objs
}

func TestDeploy_NoWildcardRBAC(t *testing.T) {
	rules, err := Rules(deployObjects(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("no RBAC rules in deploy/z8r.yaml")
	}
	for _, w := range Wildcards(rules) {
		t.Errorf("wildcard grant: %s", w)
	}
}

func TestWildcards_Detects(t *testing.T) {
	rules := []Rule{
		{Role: "ClusterRole/a", PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"*"}}},
		{Role: "ClusterRole/b", PolicyRule: rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"pods/*"}, Verbs: []string{"get"}}},
		{Role: "ClusterRole/c", PolicyRule: rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics", "/debug/*"}, Verbs: []string{"get"}}},
		{Role: "ClusterRole/ok", PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get"}}},
		{Role: "ClusterRole/ok-metrics", PolicyRule: rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	got := Wildcards(rules)
	if len(got) != 4 {
		t.Errorf("Wildcards = %q, want 4 findings (verb *, apiGroup *, resource pods/*, nonResourceURLs)", got)
	}
	for _, g := range got {
		if strings.HasPrefix(g, "ClusterRole/ok") {
			t.Errorf("false positive: %s", g)
		}
	}
}

// TestDeploy_AgentRules pins the agent's permissions exactly: a new rule
// must be a deliberate change here.
func TestDeploy_AgentRules(t *testing.T) {
	rules, err := Rules(deployObjects(t))
	if err != nil {
		t.Fatal(err)
	}
	got := RulesOf(rules, "ClusterRole/z8r-agent")
	want := []string{
		"z8r.dev z8rnodes create,get",
		"z8r.dev z8rnodes/status patch,update",
	}
	if !slices.Equal(got, want) {
		t.Errorf("agent rules = %q, want %q", got, want)
	}
	for _, r := range rules {
		if strings.HasPrefix(r.Role, "Role/") || r.Role == "ClusterRole/z8r-agent" {
			continue
		}
		for _, res := range r.Resources {
			if res == "secrets" {
				t.Errorf("%s grants %s on secrets: keys are mounted volumes, no z8r component reads Secrets", r.Role, r.Verbs)
			}
		}
	}
}

func TestDeploy_ControllerLeaderElectionRole(t *testing.T) {
	rules, err := Rules(deployObjects(t))
	if err != nil {
		t.Fatal(err)
	}
	got := RulesOf(rules, "Role/z8r-controller-leader-election")
	want := []string{
		"coordination.k8s.io leases create",
		"coordination.k8s.io leases[z8r-controller.z8r.dev] get,update",
		"core events create,patch",
	}
	if !slices.Equal(got, want) {
		t.Errorf("leader election rules = %q, want %q", got, want)
	}
}

// TestDeploy_Bindings: each service account is bound to its own roles and
// nothing else, and each workload runs as its service account.
func TestDeploy_Bindings(t *testing.T) {
	objs := deployObjects(t)
	bound := map[string][]string{} // service account: roles
	for _, o := range objs {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		switch o.GetKind() {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := Convert(o, &b); err != nil {
				t.Fatal(err)
			}
			subjects, ref = b.Subjects, b.RoleRef
		case "RoleBinding":
			var b rbacv1.RoleBinding
			if err := Convert(o, &b); err != nil {
				t.Fatal(err)
			}
			subjects, ref = b.Subjects, b.RoleRef
		default:
			continue
		}
		for _, s := range subjects {
			if s.Kind != rbacv1.ServiceAccountKind || s.Namespace != namespace {
				t.Errorf("%s %s binds %s %s/%s; want only z8r's service accounts", o.GetKind(), o.GetName(), s.Kind, s.Namespace, s.Name)
			}
			bound[s.Name] = append(bound[s.Name], o.GetKind()+"->"+ref.Kind+"/"+ref.Name)
		}
	}
	want := map[string][]string{
		"z8r-controller": {"ClusterRoleBinding->ClusterRole/z8r-controller", "RoleBinding->Role/z8r-controller-leader-election"},
		"z8r-agent":      {"ClusterRoleBinding->ClusterRole/z8r-agent"},
	}
	for sa, roles := range want {
		got := slices.Sorted(slices.Values(bound[sa]))
		if !slices.Equal(got, roles) {
			t.Errorf("service account %s is bound to %q, want %q", sa, got, roles)
		}
	}
	if len(bound) != len(want) {
		t.Errorf("bound service accounts = %v, want only %v", bound, want)
	}
	if sa := controller(t, objs).Spec.Template.Spec.ServiceAccountName; sa != "z8r-controller" {
		t.Errorf("controller runs as service account %q", sa)
	}
	if sa := agent(t, objs).Spec.Template.Spec.ServiceAccountName; sa != "z8r-agent" {
		t.Errorf("agent runs as service account %q", sa)
	}
}

func TestDeploy_Namespaces(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true,
		"ClusterRoleBinding": true, "ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true}
	for _, o := range deployObjects(t) {
		ns := o.GetNamespace()
		if clusterScoped[o.GetKind()] {
			if ns != "" {
				t.Errorf("cluster-scoped %s %s has namespace %q", o.GetKind(), o.GetName(), ns)
			}
		} else if ns != namespace {
			t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), ns, namespace)
		}
	}
	var ns corev1.Namespace
	if err := Convert(Find(deployObjects(t), "Namespace", namespace), &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels %v: the agent needs pod-security.kubernetes.io/enforce=privileged", ns.Labels)
	}
}

// TestDeploy_AdmissionPolicies: every ValidatingAdmissionPolicy fails
// closed, is bound with Deny, and names no install namespace (so a
// kustomize overlay that installs into another namespace keeps it in
// force); the node policy guards nodes and nodes/status against node
// identities for every prefix in NodePolicyPrefixes.
func TestDeploy_AdmissionPolicies(t *testing.T) {
	objs := deployObjects(t)
	bound := map[string][]admissionv1.ValidationAction{}
	for _, o := range objs {
		if o.GetKind() != "ValidatingAdmissionPolicyBinding" {
			continue
		}
		var b admissionv1.ValidatingAdmissionPolicyBinding
		if err := Convert(o, &b); err != nil {
			t.Fatal(err)
		}
		bound[b.Spec.PolicyName] = b.Spec.ValidationActions
		if b.Spec.ParamRef != nil || b.Spec.MatchResources != nil {
			t.Errorf("binding %s narrows its policy (paramRef/matchResources): %+v", b.Name, b.Spec)
		}
	}
	policies := map[string]*admissionv1.ValidatingAdmissionPolicy{}
	for _, o := range objs {
		if o.GetKind() != "ValidatingAdmissionPolicy" {
			continue
		}
		var p admissionv1.ValidatingAdmissionPolicy
		if err := Convert(o, &p); err != nil {
			t.Fatal(err)
		}
		policies[p.Name] = &p
		if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1.Fail {
			t.Errorf("policy %s failurePolicy %v, want Fail", p.Name, p.Spec.FailurePolicy)
		}
		if !slices.Equal(bound[p.Name], []admissionv1.ValidationAction{admissionv1.Deny}) {
			t.Errorf("policy %s bound with %v, want [Deny]", p.Name, bound[p.Name])
		}
		text, err := yamlOf(p.Spec)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text, namespace) {
			t.Errorf("policy %s names the install namespace %s: it would not apply to an install elsewhere", p.Name, namespace)
		}
	}
	for _, name := range []string{"z8r-agent-own-z8rnode", "z8r-node-policy-labels"} {
		if policies[name] == nil {
			t.Errorf("policy %s is not deployed", name)
		}
	}
	p := policies["z8r-node-policy-labels"]
	if p == nil {
		return
	}
	var resources, ops []string
	for _, r := range p.Spec.MatchConstraints.ResourceRules {
		resources = append(resources, r.Resources...)
		for _, op := range r.Operations {
			ops = append(ops, string(op))
		}
	}
	for _, want := range []string{"nodes", "nodes/status"} {
		if !slices.Contains(resources, want) {
			t.Errorf("node policy resources %q lack %s", resources, want)
		}
	}
	for _, want := range []string{"CREATE", "UPDATE", "DELETE"} {
		if !slices.Contains(ops, want) {
			t.Errorf("node policy operations %q lack %s", ops, want)
		}
	}
	text, _ := yamlOf(p.Spec)
	for _, prefix := range NodePolicyPrefixes {
		if !strings.Contains(text, "'"+prefix+"'") {
			t.Errorf("node policy does not guard prefix %q", prefix)
		}
	}
}

func yamlOf(v any) (string, error) {
	b, err := yaml.Marshal(v)
	return string(b), err
}

func controller(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := Convert(Find(objs, "Deployment", "z8r-controller"), &d); err != nil {
		t.Fatalf("Deployment z8r-controller: %v", err)
	}
	return &d
}

func agent(t *testing.T, objs []*unstructured.Unstructured) *appsv1.DaemonSet {
	t.Helper()
	var d appsv1.DaemonSet
	if err := Convert(Find(objs, "DaemonSet", "z8r-agent"), &d); err != nil {
		t.Fatalf("DaemonSet z8r-agent: %v", err)
	}
	return &d
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func hasArg(c corev1.Container, arg string) bool { return slices.Contains(c.Args, arg) }

func volumeFor(spec corev1.PodSpec, c corev1.Container, mountPath string) *corev1.Volume {
	for _, m := range c.VolumeMounts {
		if m.MountPath != mountPath {
			continue
		}
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == m.Name {
				return &spec.Volumes[i]
			}
		}
	}
	return nil
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, c corev1.Container, path string, port int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP probe", what)
		return
	}
	got := p.HTTPGet.Port.IntVal
	if p.HTTPGet.Port.StrVal != "" {
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.StrVal {
				got = cp.ContainerPort
			}
		}
	}
	if p.HTTPGet.Path != path || got != port {
		t.Errorf("%s: probe %s:%d, want %s:%d", what, p.HTTPGet.Path, got, path, port)
	}
}

func checkResources(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", what, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", what, r)
		}
	}
}

func TestDeploy_Controller(t *testing.T) {
	d := controller(t, deployObjects(t))
	spec := d.Spec.Template.Spec
	c := container(t, spec, "controller")
	for _, arg := range []string{"--leader-elect=true", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
		"--ssh-key=/etc/z8r/controller-key/" + cli.KeyPrivate} {
		if !hasArg(c, arg) {
			t.Errorf("controller args %q lack %s", c.Args, arg)
		}
	}
	checkProbe(t, "controller liveness", c.LivenessProbe, c, "/healthz", 8081)
	checkProbe(t, "controller readiness", c.ReadinessProbe, c, "/readyz", 8081)
	checkResources(t, "controller", c)

	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("controller pod security context %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("controller: want seccompProfile RuntimeDefault")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("controller container security context %+v: want read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	if spec.HostNetwork || spec.HostPID {
		t.Error("controller uses host namespaces")
	}
	v := volumeFor(spec, c, "/etc/z8r/controller-key")
	if v == nil || v.Secret == nil || v.Secret.SecretName != cli.SecretControllerKey {
		t.Errorf("controller key volume = %+v, want Secret %s (what kubectl z8r init-keys creates)", v, cli.SecretControllerKey)
	}
	if d.Spec.Template.Labels["app.kubernetes.io/component"] != "controller" {
		t.Errorf("controller pod labels %v", d.Spec.Template.Labels)
	}
}

func TestDeploy_Agent(t *testing.T) {
	objs := deployObjects(t)
	d := agent(t, objs)
	spec := d.Spec.Template.Spec
	c := container(t, spec, "agent")

	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("agent hostNetwork=%v hostPID=%v: agents are reached at the node IP and run the host's zfs through nsenter", spec.HostNetwork, spec.HostPID)
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("agent dnsPolicy %s, want ClusterFirstWithHostNet", spec.DNSPolicy)
	}
	// Node affinity: one term, the label kubelets cannot set on their own
	// Node (NodeRestriction); the policy labels a kubelet could set (and
	// that the node admission policy guards) do not schedule agents.
	var terms []string
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			var exprs []string
			for _, e := range term.MatchExpressions {
				exprs = append(exprs, e.Key+" "+string(e.Operator)+" "+strings.Join(e.Values, ","))
			}
			for _, f := range term.MatchFields {
				exprs = append(exprs, "field "+f.Key+" "+string(f.Operator)+" "+strings.Join(f.Values, ","))
			}
			terms = append(terms, strings.Join(exprs, " && "))
		}
	}
	if want := []string{AgentNodeLabel + " In true"}; !slices.Equal(terms, want) {
		t.Errorf("agent node affinity terms = %q, want %q (a label kubelets cannot set)", terms, want)
	}
	if !strings.HasPrefix(AgentNodeLabel, "node-restriction.kubernetes.io/") {
		t.Errorf("AgentNodeLabel %q is not under node-restriction.kubernetes.io/", AgentNodeLabel)
	}
	if len(spec.NodeSelector) > 0 {
		t.Errorf("agent nodeSelector %v: scheduling is the affinity's alone", spec.NodeSelector)
	}
	// Only the tolerations the agent needs: none (an administrator adds the
	// taints of its storage or control-plane nodes with a patch). In
	// particular never "tolerate everything".
	for _, tol := range spec.Tolerations {
		if tol.Key == "" && tol.Operator == corev1.TolerationOpExists {
			t.Errorf("agent tolerates every taint: %+v", tol)
		}
	}
	if len(spec.Tolerations) > 0 {
		t.Errorf("agent tolerations %+v, want none by default (docs/install.md shows the patch for tainted nodes)", spec.Tolerations)
	}

	for _, arg := range []string{
		"--node-name=$(NODE_NAME)", "--pools=$(Z8R_POOLS)", "--advertise-address=$(POD_IP):2022",
		"--health-addr=127.0.0.1:2023", "--host-key=/var/lib/z8r/host_key", "--authorized-keys=/etc/z8r/authorized-keys",
		"--zfs-prefix=nsenter -t 1 -m --",
	} {
		if !hasArg(c, arg) {
			t.Errorf("agent args %q lack %s", c.Args, arg)
		}
	}
	// No private key is shared by the agents: each node's identity is its
	// host key; only the controller's public key is mounted.
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--client-key") {
			t.Errorf("agent args %q carry a shared client key", c.Args)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName != cli.SecretAgentAuthorizedKeys {
			t.Errorf("agent mounts Secret %s, want only %s (public keys)", v.Secret.SecretName, cli.SecretAgentAuthorizedKeys)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			env[e.Name] = "configmap:" + e.ValueFrom.ConfigMapKeyRef.Name + "/" + e.ValueFrom.ConfigMapKeyRef.Key
		}
	}
	for name, want := range map[string]string{"NODE_NAME": "field:spec.nodeName", "POD_IP": "field:status.podIP", "Z8R_POOLS": "configmap:z8r-agent-config/pools"} {
		if env[name] != want {
			t.Errorf("agent env %s = %q, want %q", name, env[name], want)
		}
	}
	if Find(objs, "ConfigMap", "z8r-agent-config") == nil {
		t.Error("no ConfigMap z8r-agent-config")
	}
	checkProbe(t, "agent liveness", c.LivenessProbe, c, "/healthz", 2023)
	checkProbe(t, "agent readiness", c.ReadinessProbe, c, "/readyz", 2023)
	// Probes and metrics are served on the node's loopback only, never to
	// the network unauthenticated.
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" {
			t.Errorf("agent probe %+v: want host 127.0.0.1 (the agent serves probes and metrics on loopback)", p)
		}
	}
	if Find(objs, "Service", "z8r-agent-metrics") != nil {
		t.Error("Service z8r-agent-metrics: the agent's metrics are not served to the network")
	}
	checkResources(t, "agent", c)
	if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("agent security context %+v: want privileged (nsenter into the host) with a read-only root", sc)
	}

	for _, tc := range []struct {
		path, secret string
		hostPath     string
	}{
		{path: "/etc/z8r/authorized-keys", secret: cli.SecretAgentAuthorizedKeys},
		{path: "/var/lib/z8r", hostPath: "/var/lib/z8r"},
	} {
		v := volumeFor(spec, c, tc.path)
		switch {
		case v == nil:
			t.Errorf("agent mounts nothing at %s", tc.path)
		case tc.secret != "" && (v.Secret == nil || v.Secret.SecretName != tc.secret):
			t.Errorf("agent volume at %s = %+v, want Secret %s", tc.path, v.VolumeSource, tc.secret)
		case tc.hostPath != "" && (v.HostPath == nil || v.HostPath.Path != tc.hostPath):
			t.Errorf("agent volume at %s = %+v, want hostPath %s", tc.path, v.VolumeSource, tc.hostPath)
		}
	}
	// The only host path is the host key's folder: no /dev, no host root.
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path != "/var/lib/z8r" {
			t.Errorf("agent mounts host path %s", v.HostPath.Path)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["ssh"] != 2022 || ports["metrics"] != 2023 {
		t.Errorf("agent ports %v, want ssh 2022 and metrics 2023", ports)
	}
}

func TestDeploy_Images(t *testing.T) {
	objs := deployObjects(t)
	for _, tc := range []struct {
		image string
		want  string
	}{
		{container(t, controller(t, objs).Spec.Template.Spec, "controller").Image, "ghcr.io/z8r-project/z8r-controller:"},
		{container(t, agent(t, objs).Spec.Template.Spec, "agent").Image, "ghcr.io/z8r-project/z8r-agent:"},
	} {
		if !strings.HasPrefix(tc.image, tc.want) {
			t.Errorf("image %s, want %s<tag>", tc.image, tc.want)
		}
	}
}

// TestConfig_EveryCRDIsDeployed: every generated CRD is listed in
// config/crd/kustomization.yaml and rendered into deploy/z8r.yaml.
func TestConfig_EveryCRDIsDeployed(t *testing.T) {
	r := root(t)
	bases, err := filepath.Glob(filepath.Join(r, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v): run make manifests", err)
	}
	kust, err := Load(filepath.Join(r, "config", "crd", "kustomization.yaml"))
	if err != nil || len(kust) != 1 {
		t.Fatalf("config/crd/kustomization.yaml: %v", err)
	}
	listed, _, _ := unstructured.NestedStringSlice(kust[0].Object, "resources")
	deployed := deployObjects(t)
	for _, b := range bases {
		rel := "bases/" + filepath.Base(b)
		if !slices.Contains(listed, rel) {
			t.Errorf("config/crd/kustomization.yaml does not list %s", rel)
		}
		crds, err := Load(b)
		if err != nil || len(crds) != 1 {
			t.Fatalf("%s: %v", b, err)
		}
		if Find(deployed, "CustomResourceDefinition", crds[0].GetName()) == nil {
			t.Errorf("deploy/z8r.yaml lacks CRD %s: run make manifests", crds[0].GetName())
		}
	}
}
