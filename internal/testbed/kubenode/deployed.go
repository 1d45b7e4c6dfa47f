package kubenode

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/cli"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

// What deploy/ installs, as a Deployed cluster finds it.
const (
	// Z8RNamespace is deploy/'s namespace.
	Z8RNamespace = "z8r-system"
	// AgentSelector and ControllerSelector select the agent DaemonSet's
	// and the controller Deployment's pods.
	AgentSelector      = "app.kubernetes.io/component=agent"
	ControllerSelector = "app.kubernetes.io/component=controller"
	// AgentNodeLabel is the node label the agent DaemonSet's affinity requires.
	AgentNodeLabel = "node-restriction.kubernetes.io/z8r-agent"
	// AgentStateDir is the agent's hostPath (its host key), private to each node.
	AgentStateDir = "/var/lib/z8r"

	deployedFieldOwner = "z8r-testbed"
	deployedPodsWithin = 120 * time.Second
)

// DeployedControllers are the kube-controller-manager controllers a
// Deployed cluster runs: DaemonSets, Deployments and their ReplicaSets,
// service accounts and their tokens' CA, node lifecycle, and the
// namespace and garbage collectors `kubectl delete -k` relies on.
func DeployedControllers() []string {
	return []string{
		"daemonset-controller", "deployment-controller", "replicaset-controller",
		"serviceaccount-controller", "node-lifecycle-controller", "root-ca-certificate-publisher-controller",
		"namespace-controller", "garbage-collector-controller",
	}
}

// DeployedOptions configure StartDeployed.
type DeployedOptions struct {
	// Nodes are the kubelet nodes' names; each gets Pools.
	Nodes []string
	// Pools are the zfs-fuse pools every node has (tank when empty).
	Pools []string
	// NodePools, when it names a node, are that node's pools instead of
	// Pools (a node whose pools differ from the others').
	NodePools map[string][]string
	// Images must hold the agent and controller images (BuildImages with
	// imagebuild.Agent and imagebuild.Controller) and, with
	// SnapshotController, SnapshotControllerRef's archive.
	Images *Images
	// SnapshotController installs the upstream snapshot-controller as a
	// Deployment (SnapshotControllerDir) after deploy/; the control plane
	// runs none of its own.
	SnapshotController bool
	// Log, when set, is told each step (a constant message).
	Log func(msg string)
}

// Deployed is a control plane with kubelet nodes onto which deploy/ was
// applied through the test bed's overlay, as a user applies it.
type Deployed struct {
	Env   *kubeenv.Env
	Nodes map[string]*Node
	// Overlay is the overlay's folder, Objects what it rendered.
	Overlay string
	Objects []*unstructured.Unstructured
}

// StartDeployed starts a control plane ready for in-cluster clients and
// reaching the kubelets (`kubectl logs` and `exec` work), the scheduler,
// opts.Nodes as kubelet nodes (each with opts.Pools or its opts.NodePools,
// the agent's state folder private, pod networks routed to each other, the
// images imported, the agent's node label set), applies deploy/ through
// OverlayDir with the key Secrets `kubectl z8r init-keys` makes, and
// returns once every agent pod and the controller pod are Ready and every
// node's Z8RNode is Ready with its host key pinned; with
// opts.SnapshotController, also once the snapshot-controller pod is Ready.
// Everything stops in t's cleanups.
func StartDeployed(t tb.TB, opts DeployedOptions) *Deployed {
	t.Helper()
	ctx := context.Background()
	say := func(msg string) {
		if opts.Log != nil {
			opts.Log(msg)
		}
	}
	pools := opts.Pools
	if len(pools) == 0 {
		pools = []string{"tank"}
	}
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	d := &Deployed{Overlay: filepath.Join(root, OverlayDir), Nodes: map[string]*Node{}}
	if d.Objects, err = Render(d.Overlay); err != nil {
		t.Fatal(err)
	}
	var scObjs []*unstructured.Unstructured
	refs := []string{imagebuild.Agent.Ref, imagebuild.Controller.Ref}
	if opts.SnapshotController {
		if scObjs, err = Render(filepath.Join(root, SnapshotControllerDir)); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, SnapshotControllerRef)
	}
	for _, ref := range refs {
		if opts.Images.Archives[ref] == "" {
			t.Fatalf("kubenode: no image archive for %s", ref)
		}
	}

	say("starting kube-apiserver, etcd, kube-controller-manager and kube-scheduler")
	d.Env = kubeenv.Start(t, kubeenv.Options{InClusterAPI: true, KubeletAccess: true, ControllerManager: DeployedControllers()})
	StartScheduler(t, d.Env)
	say("starting the kubelet nodes (containerd, kubelet and zfs-fuse in each node's namespaces)")
	network := netns.New(t, opts.Nodes...)
	api := ForwardAPIServer(t, network, d.Env)
	var all []*Node
	for _, n := range opts.Nodes {
		d.Nodes[n] = Start(t, Options{
			Env: d.Env, Network: network, APIServer: api, Images: opts.Images, InClusterAPI: true,
			ZFSPools: nodePools(opts, n, pools), PrivateDirs: []string{AgentStateDir},
		}, n)
		all = append(all, d.Nodes[n])
	}
	if err := RoutePodNetworks(all...); err != nil {
		t.Fatal(err)
	}
	say("importing the images into each node's containerd")
	for _, n := range opts.Nodes {
		for _, ref := range refs {
			if err := d.Nodes[n].Import(ctx, opts.Images.Archives[ref]); err != nil {
				t.Fatal(err)
			}
		}
		if err := waitNodeReady(ctx, d.Env, n, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := d.patchNode(ctx, n, map[string]string{AgentNodeLabel: "true"}, nil); err != nil {
			t.Fatal(err)
		}
	}

	say("applying deploy/ through the test bed's overlay, and the keys kubectl z8r init-keys makes")
	if err := Apply(ctx, d.Env.Client, deployedFieldOwner, d.Objects); err != nil {
		t.Fatal(err)
	}
	secrets, err := cli.KeySecrets(cli.DefaultNamespace, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		d.Env.Create(t, s)
	}
	if opts.SnapshotController {
		say("applying the snapshot-controller's ServiceAccount, RBAC and Deployment")
		if err := Apply(ctx, d.Env.Client, deployedFieldOwner, scObjs); err != nil {
			t.Fatal(err)
		}
	}
	say("waiting for the pods to turn Ready and the agents to publish their nodes")
	if _, err := WaitReadyPods(ctx, d.Env, Z8RNamespace, AgentSelector, len(opts.Nodes), deployedPodsWithin); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitReadyPods(ctx, d.Env, Z8RNamespace, ControllerSelector, 1, deployedPodsWithin); err != nil {
		t.Fatal(err)
	}
	if opts.SnapshotController {
		if _, err := WaitReadyPods(ctx, d.Env, SnapshotControllerNamespace, SnapshotControllerSelector, 1, deployedPodsWithin); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range opts.Nodes {
		if err := waitZ8RNodeReady(ctx, d.Env, n, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// nodePools returns node's pools: opts.NodePools' when it names node, else
// pools.
func nodePools(opts DeployedOptions, node string, pools []string) []string {
	if p, ok := opts.NodePools[node]; ok {
		return p
	}
	return pools
}

// Kubectl runs the kubectl make kube-tools built against the control
// plane, as its administrator, and returns its combined output.
func (d *Deployed) Kubectl(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"--kubeconfig", d.Env.Kubeconfig}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(d.Env.BinDir, kubeenv.BinKubectl), argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// AnnotateNode adds labels and annotations to the Node name, as an
// administrator.
func (d *Deployed) AnnotateNode(ctx context.Context, name string, labels, annotations map[string]string) error {
	return d.patchNode(ctx, name, labels, annotations)
}

func (d *Deployed) patchNode(ctx context.Context, name string, labels, annotations map[string]string) error {
	var n corev1.Node
	if err := d.Env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return fmt.Errorf("kubenode: node %s: %w", name, err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	for k, v := range labels {
		n.Labels[k] = v
	}
	for k, v := range annotations {
		n.Annotations[k] = v
	}
	if err := d.Env.Client.Patch(ctx, &n, patch); err != nil {
		return fmt.Errorf("kubenode: node %s: %w", name, err)
	}
	return nil
}

// FileSHA256 returns the SHA-256 of path as node n sees it (sha256sum in
// the node's namespaces, so through its zfs-fuse for a dataset's file).
func FileSHA256(ctx context.Context, n *Node, path string) (string, error) {
	out, err := n.Exec(ctx, "sha256sum", path)
	if err != nil {
		return "", fmt.Errorf("kubenode: sha256sum %s on %s: %w", path, n.Name, err)
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", fmt.Errorf("kubenode: sha256sum %s on %s: no output", path, n.Name)
	}
	return f[0], nil
}

// WaitReadyPods waits until count pods matching the label selector sel in
// ns are Ready and not being deleted, and returns them.
func WaitReadyPods(ctx context.Context, env *kubeenv.Env, ns, sel string, count int, within time.Duration) ([]corev1.Pod, error) {
	ls, err := labels.Parse(sel)
	if err != nil {
		return nil, fmt.Errorf("kubenode: selector %q: %w", sel, err)
	}
	var ready []corev1.Pod
	var last []string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: ls}); err != nil {
			return false, nil
		}
		ready, last = nil, nil
		for _, p := range pods.Items {
			last = append(last, fmt.Sprintf("%s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase))
			if podIsReady(&p) && p.DeletionTimestamp == nil {
				ready = append(ready, p)
			}
		}
		return len(ready) == count, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubenode: %d Ready pods %s in %s after %s, want %d: %s: %w", len(ready), sel, ns, within, count, strings.Join(last, "; "), err)
	}
	return ready, nil
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func waitNodeReady(ctx context.Context, env *kubeenv.Env, name string, within time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("kubenode: node %s not Ready after %s: %w", name, within, err)
	}
	return nil
}

// waitZ8RNodeReady waits until the Z8RNode name is Ready with its host
// key pinned and trusted.
func waitZ8RNodeReady(ctx context.Context, env *kubeenv.Env, name string, within time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		var zn z8rv1.Z8RNode
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &zn); err != nil {
			last = err.Error()
			return false, nil
		}
		trusted := false
		for _, c := range zn.Status.Conditions {
			trusted = trusted || (c.Type == z8rv1.ConditionHostKeyTrusted && c.Status == metav1.ConditionTrue)
		}
		last = fmt.Sprintf("ready=%v address=%q trusted=%v message=%q", zn.Status.Ready, zn.Status.Address, trusted, zn.Status.Message)
		return zn.Status.Ready && trusted && zn.Spec.PinnedHostKey == zn.Status.HostKey, nil
	})
	if err != nil {
		return fmt.Errorf("kubenode: Z8RNode %s not Ready with a pinned, trusted host key after %s: %s: %w", name, within, last, err)
	}
	return nil
}
