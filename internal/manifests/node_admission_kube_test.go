//go:build kube

package manifests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// nodePolicyDenial is part of the node admission policy's message.
const nodePolicyDenial = "may not set, change or remove z8r policy labels or annotations on Nodes"

// asUser returns a client impersonating user with groups (and the pod's
// node name as user extra, if node is not "").
func asUser(t *testing.T, env *kubeenv.Env, user string, groups []string, node string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	if node != "" {
		cfg.Impersonate.Extra = map[string][]string{extraNodeName: {node}}
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// metaPatch is a merge patch of a Node's labels and annotations; a nil
// value removes the key.
func metaPatch(t *testing.T, labels, annotations map[string]*string) client.Patch {
	t.Helper()
	meta := map[string]any{}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		t.Fatal(err)
	}
	return client.RawPatch(types.MergePatchType, b)
}

func ptr(s string) *string { return &s }

// testNodeAdmission: the node admission policy denies a kubelet identity
// (user system:node:NAME, group system:nodes) setting, changing or removing
// z8r's, the seed's and the agent-scheduling labels and annotations on its
// own Node, through nodes and nodes/status, on create and on delete; other
// labels stay the kubelet's, and the cluster admin sets z8r's freely. The
// test apiserver does not run NodeRestriction (kubeenv has no flag for it),
// so the policy alone is what denies here; the kubelet's ordinary Node
// permissions come from binding the bootstrap ClusterRole system:node to
// group system:nodes (what the Node authorizer grants on a real cluster).
func testNodeAdmission(t *testing.T, env *kubeenv.Env) {
	ctx := context.Background()
	admin := env.Client
	const (
		seed    = "zfs.replication.takutakahashi.dev"
		problem = "z8r.dev/annotation-problem"
	)
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-system-nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"},
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:node:kn-node-a"}},
	}); err != nil {
		t.Fatal(err)
	}
	nodeGroups := []string{"system:nodes", "system:authenticated"}
	kubelet := asUser(t, env, "system:node:kn-node-a", nodeGroups, "")
	// A node identity by user name alone (no system:nodes group) is caught too.
	kubeletNoGroup := asUser(t, env, "system:node:kn-node-a", []string{"system:authenticated"}, "")

	node := kubeenv.Node("kn-node-a",
		map[string]string{seed: "true", "example.com/rack": "r1"},
		map[string]string{seed + "/master": "tank/a", problem: "earlier problem"})
	if err := admin.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(node)

	// The policy's informer takes a moment after the policy is created.
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kn-node-a"}}
		lastErr = kubelet.Patch(ctx, n, metaPatch(t, nil, map[string]*string{seed + "/probe": ptr("x")}))
		if lastErr == nil {
			return false, admin.Patch(ctx, n, metaPatch(t, nil, map[string]*string{seed + "/probe": nil}))
		}
		return apierrors.IsInvalid(lastErr) || apierrors.IsForbidden(lastErr), nil
	}); err != nil {
		t.Fatalf("a kubelet can still annotate its Node with z8r policy: %v (last: %v)", err, lastErr)
	}

	for _, tc := range []struct {
		name        string
		labels      map[string]*string
		annotations map[string]*string
		status      bool // through nodes/status instead of nodes
		c           client.Client
		allowed     bool
	}{
		{name: "annotate itself a replica", annotations: map[string]*string{seed + "/replica": ptr("tank/stolen")}},
		{name: "z8r master annotation", annotations: map[string]*string{"z8r.dev/master": ptr("tank/a")}},
		{name: "z8r master label", labels: map[string]*string{"z8r.dev/master": ptr("x")}},
		{name: "agent scheduling label", labels: map[string]*string{AgentNodeLabel: ptr("true")}},
		{name: "z8r participation label", labels: map[string]*string{"z8r.dev/replication": ptr("true")}},
		{name: "change the seed's master", annotations: map[string]*string{seed + "/master": ptr("tank/other")}},
		{name: "remove the seed's master (freeze/delete the policy)", annotations: map[string]*string{seed + "/master": nil}},
		{name: "remove the controller's problem report", annotations: map[string]*string{problem: nil}},
		{name: "remove the seed label", labels: map[string]*string{seed: nil}},
		{name: "agent label through nodes/status", labels: map[string]*string{AgentNodeLabel: ptr("true")}, status: true},
		{name: "replica annotation by user name only", annotations: map[string]*string{seed + "/replica": ptr("tank/x")}, c: kubeletNoGroup},
		{name: "unrelated label", labels: map[string]*string{"example.com/rack": ptr("r2")}, allowed: true},
		{name: "unrelated annotation", annotations: map[string]*string{"example.com/note": ptr("hi")}, allowed: true},
		{name: "admin sets the agent label", labels: map[string]*string{AgentNodeLabel: ptr("true")}, c: admin, allowed: true},
		{name: "admin sets a replica annotation", annotations: map[string]*string{"z8r.dev/replica": ptr("tank/b")}, c: admin, allowed: true},
		{name: "admin removes the problem report", annotations: map[string]*string{problem: nil}, c: admin, allowed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if c == nil {
				c = kubelet
			}
			var before corev1.Node
			if err := admin.Get(ctx, key, &before); err != nil {
				t.Fatal(err)
			}
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}
			var err error
			if tc.status {
				err = c.Status().Patch(ctx, n, metaPatch(t, tc.labels, tc.annotations))
			} else {
				err = c.Patch(ctx, n, metaPatch(t, tc.labels, tc.annotations))
			}
			if tc.allowed {
				if err != nil {
					t.Errorf("patch: %v, want allowed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), nodePolicyDenial) {
				t.Errorf("patch: %v, want the node policy's denial", err)
			}
			var after corev1.Node
			if err := admin.Get(ctx, key, &after); err != nil {
				t.Fatal(err)
			}
			if !equalMaps(before.Labels, after.Labels) || !equalMaps(before.Annotations, after.Annotations) {
				t.Errorf("denied patch changed the Node: labels %v -> %v, annotations %v -> %v",
					before.Labels, after.Labels, before.Annotations, after.Annotations)
			}
		})
	}

	t.Run("kubelet registers a Node with z8r policy", func(t *testing.T) {
		c := asUser(t, env, "system:node:kn-node-c", nodeGroups, "")
		bad := kubeenv.Node("kn-node-c", map[string]string{AgentNodeLabel: "true"}, map[string]string{seed + "/replica": "tank/a"})
		if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), nodePolicyDenial) {
			t.Errorf("create: %v, want the node policy's denial", err)
		}
		good := kubeenv.Node("kn-node-c", map[string]string{"example.com/rack": "r1"}, nil)
		if err := c.Create(ctx, good); err != nil {
			t.Errorf("kubelet registering a plain Node: %v", err)
		}
	})
	t.Run("kubelet deletes its Node carrying z8r policy", func(t *testing.T) {
		// system:node does not grant delete; some clusters let a node delete
		// its own Node (NodeRestriction permits it), so grant it here and
		// check that the policy still refuses.
		for _, o := range []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-node-delete"},
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"delete"}}}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-node-delete"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-node-delete"},
				Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:node:kn-node-a"}}},
		} {
			if err := admin.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if werr := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			err = kubelet.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: key.Name}})
			return !apierrors.IsForbidden(err) || strings.Contains(err.Error(), nodePolicyDenial), nil
		}); werr != nil {
			t.Fatalf("delete never got past RBAC: %v", err)
		}
		if err == nil || !strings.Contains(err.Error(), nodePolicyDenial) {
			t.Errorf("delete: %v, want the node policy's denial", err)
		}
		if err := admin.Get(ctx, key, &corev1.Node{}); err != nil {
			t.Errorf("Node after a denied delete: %v", err)
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// testAgentAdmissionAnyNamespace: the agent policy does not depend on the
// install namespace. z8r installed into namespace z8r-alt (the agent's
// ClusterRole bound to that namespace's z8r-agent, as a kustomize overlay
// with `namespace: z8r-alt` renders it) is still held to its own node's
// Z8RNode; with the policy matching only z8r-system's service account, it
// could write any node's.
func testAgentAdmissionAnyNamespace(t *testing.T, env *kubeenv.Env) {
	ctx := context.Background()
	admin := env.Client
	const ns = "z8r-alt"
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "z8r-agent-alt"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "z8r-agent"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "z8r-agent"}},
	}); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + ns + ":z8r-agent"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	agentA := asUser(t, env, user, groups, "alt-node-a")

	// RBAC caches take a moment: wait until the agent may create its own.
	own := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "alt-node-a"}}
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lastErr = agentA.Create(ctx, own.DeepCopy())
		return lastErr == nil, nil
	}); err != nil {
		t.Fatalf("agent of %s creating its own Z8RNode: %v", ns, lastErr)
	}
	err := agentA.Create(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "alt-node-b"}})
	if err == nil || !strings.Contains(err.Error(), "may write only the Z8RNode of its own node") {
		t.Errorf("agent in namespace %s creating another node's Z8RNode: %v, want the policy's denial", ns, err)
	}
	unbound := asUser(t, env, user, groups, "")
	if err := unbound.Create(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "alt-node-c"}}); err == nil {
		t.Errorf("agent in namespace %s without a node name created a Z8RNode", ns)
	}
}
