//go:build pods

package kubenode_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/zfsexec"
)

// The agent's objects in deploy/z8r.yaml, and the node label its
// DaemonSet's affinity requires.
const (
	deployManifest    = "deploy/z8r.yaml"
	agentNamespace    = "z8r-system"
	agentName         = "z8r-agent"
	agentConfigMap    = "z8r-agent-config"
	agentKeysSecret   = "z8r-agent-authorized-keys"
	agentNodeLabel    = "node-restriction.kubernetes.io/z8r-agent"
	agentStateDir     = "/var/lib/z8r"
	agentSSHPort      = "2022"
	agentReadyWithin  = 90 * time.Second
	agentControllerID = "controller"
)

// TestNode_AgentDaemonSetFromDeploy runs the agent DaemonSet exactly as
// deploy/z8r.yaml ships it (hostNetwork, hostPID, privileged, read-only
// root, the --zfs-prefix "nsenter -t 1 -m --", the /var/lib/z8r hostPath,
// the authorized-keys Secret, the readiness probe on /readyz) on a real
// kubelet node, changed only where this test needs it: imagePullPolicy
// Never, and no Kubernetes API for the agent (--publish=false, no service
// account token), so that this test shows the agent's SSH side alone;
// TestNodes_DeployFromOverlayReplicatesThroughPods runs it publishing. The pod
// must turn Ready, which the agent's /readyz only reports when zfs answers
// through nsenter and every pool exists, and the controller's key must then
// list the node's datasets over SSH, pinned to the host key the agent wrote
// into the node's /var/lib/z8r.
func TestNode_AgentDaemonSetFromDeploy(t *testing.T) {
	ctx := context.Background()
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs := deployObjects(t, filepath.Join(root, deployManifest))
	imgs := buildImages(t)
	env := kubeenv.Start(t, kubeenv.Options{ControllerManager: []string{"daemonset-controller", "serviceaccount-controller", "node-lifecycle-controller"}})
	kubenode.StartScheduler(t, env)
	network := netns.New(t, nodeName)
	api := kubenode.ForwardAPIServer(t, network, env)
	node := kubenode.Start(t, kubenode.Options{
		Env: env, Network: network, APIServer: api, Images: imgs,
		ZFSPools: []string{"tank"}, PrivateDirs: []string{agentStateDir},
	}, nodeName)
	if _, err := node.Exec(ctx, "zfs", "create", "tank/data"); err != nil {
		t.Fatal(err)
	}
	if err := node.Import(ctx, imgs.Archives[imagebuild.Agent.Ref]); err != nil {
		t.Fatal(err)
	}
	waitNodeReady(t, env, nodeName)
	var n corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: nodeName}, &n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Labels[agentNodeLabel] = "true"
	if err := env.Client.Patch(ctx, &n, patch); err != nil {
		t.Fatal(err)
	}

	keys := agentproc.NewKeys(t)
	authorized, err := os.ReadFile(keys.AuthorizedKeysPath())
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := objs["Namespace/"+agentNamespace].(*corev1.Namespace)
	sa, ok2 := objs["ServiceAccount/"+agentName].(*corev1.ServiceAccount)
	cm, ok3 := objs["ConfigMap/"+agentConfigMap].(*corev1.ConfigMap)
	ds, ok4 := objs["DaemonSet/"+agentName].(*appsv1.DaemonSet)
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatalf("%s lacks the agent's Namespace, ServiceAccount, ConfigMap or DaemonSet", deployManifest)
	}
	cm.Data = map[string]string{"pools": "tank"}
	spec := &ds.Spec.Template.Spec
	spec.AutomountServiceAccountToken = ptr.To(false)
	if len(spec.Containers) != 1 {
		t.Fatalf("agent DaemonSet has %d containers, want 1", len(spec.Containers))
	}
	c := &spec.Containers[0]
	c.ImagePullPolicy = corev1.PullNever
	c.Args = append(c.Args, "--publish=false")
	began := time.Now()
	env.Create(t, ns)
	env.Create(t, sa)
	env.Create(t, cm)
	secret := &corev1.Secret{Data: map[string][]byte{agentControllerID: authorized}}
	secret.Name, secret.Namespace = agentKeysSecret, agentNamespace
	env.Create(t, secret)
	env.Create(t, ds)

	var pod corev1.Pod
	var last string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, agentReadyWithin, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(agentNamespace), client.MatchingLabels(ds.Spec.Selector.MatchLabels)); err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = pods.Items[0]
		last = podSummary(&pod)
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		if logs, lerr := node.PodLogs(agentNamespace, pod.Name, c.Name); lerr == nil {
			t.Logf("agent log:\n%s", tailString(logs, 30))
		}
		t.Fatalf("agent pod not Ready after %s: %s", agentReadyWithin, last)
	}
	t.Logf("agent pod %s Ready in %s", pod.Name, time.Since(began).Round(time.Millisecond))

	hostKey := readHostKey(t, filepath.Join(node.PrivatePath(agentStateDir), "host_key"))
	addr := node.IP + ":" + agentSSHPort
	cl, err := agent.Dial(ctx, addr, agent.ClientConfig{
		Signer: keys.Controller, HostKey: hostKey, Dial: network.DialContext, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial the agent pod at %s: %v", addr, err)
	}
	defer cl.Close()
	list, err := cl.ZFS().List(ctx, "tank", zfsexec.ListOptions{Depth: -1})
	if err != nil {
		t.Fatalf("list through the agent pod: %v", err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	t.Logf("the agent pod lists %v", names)
	if fmt.Sprint(names) != "[tank tank/data]" {
		t.Errorf("agent pod lists %v, want [tank tank/data] (the node's own pool)", names)
	}
	k, cd, err := node.RSS()
	if err != nil {
		t.Error(err)
	}
	t.Logf("RSS: kubelet %d MiB, containerd %d MiB", k/1024, cd/1024)
}

// deployObjects decodes every object of the manifest the client-go scheme
// knows, keyed "Kind/name".
func deployObjects(t *testing.T, path string) map[string]client.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]client.Object{}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			continue // CRDs, admission policies: not needed here
		}
		co, ok := obj.(client.Object)
		if !ok {
			continue
		}
		objs[gvk.Kind+"/"+co.GetName()] = co
	}
	return objs
}

func readHostKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the agent's host key in the node's %s: %v", agentStateDir, err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return s.PublicKey()
}

func tailString(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
