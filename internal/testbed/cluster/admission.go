package cluster

import (
	"context"
	"fmt"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/z8r-project/z8r/internal/manifests"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// admissionKinds are the objects InstallAdmissionPolicies takes from
// deploy/z8r.yaml.
var admissionKinds = map[string]bool{"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true}

// InstallAdmissionPolicies creates the ValidatingAdmissionPolicies and their
// bindings exactly as deploy/z8r.yaml ships them (the node policy that
// keeps kubelets off z8r's labels and annotations, the agent's own-Z8RNode
// policy) and returns their names. The test bed's controller and agents use
// admin credentials, so the policies bind only identities a test
// impersonates. The API server applies a new policy a moment after it is
// created: tests poll for its effect.
func (c *Cluster) InstallAdmissionPolicies(ctx context.Context) ([]string, error) {
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	objs, err := manifests.Load(filepath.Join(root, "deploy", "z8r.yaml"))
	if err != nil {
		return nil, fmt.Errorf("cluster: admission policies: %w", err)
	}
	var names []string
	for _, o := range objs {
		if !admissionKinds[o.GetKind()] {
			continue
		}
		if err := c.Kube.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("cluster: create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("cluster: deploy/z8r.yaml has no ValidatingAdmissionPolicy")
	}
	return names, nil
}

// AsKubelet returns a client with node's kubelet identity (user
// system:node:NAME in groups system:nodes and system:authenticated),
// through impersonation by the admin. It binds the bootstrap ClusterRole
// system:node to the group system:nodes, which is what a kubelet may do on
// a real cluster (there the Node authorizer grants it), so that what stops
// a kubelet in a test is z8r's admission policy, not missing RBAC. The
// test API server does not run the NodeRestriction admission plugin.
func (c *Cluster) AsKubelet(ctx context.Context, node string) (client.Client, error) {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "z8r-testbed-system-nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	if err := c.Kube.Client.Create(ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("cluster: bind system:node: %w", err)
	}
	cfg := rest.CopyConfig(c.Kube.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:node:" + node, Groups: []string{"system:nodes", "system:authenticated"}}
	cl, err := client.New(cfg, client.Options{Scheme: c.Kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("cluster: kubelet client: %w", err)
	}
	return cl, nil
}
