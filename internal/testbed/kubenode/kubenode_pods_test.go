//go:build pods

package kubenode_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
	"github.com/z8r-project/z8r/internal/testbed/netns"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "z8r-kubenode-images-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	images.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// images are the pause, agent and controller images, built once for every test.
var images struct {
	dir  string
	once sync.Once
	imgs *kubenode.Images
	err  error
}

func buildImages(t *testing.T) *kubenode.Images {
	t.Helper()
	images.once.Do(func() {
		root, err := kubeenv.ModuleRoot()
		if err != nil {
			images.err = err
			return
		}
		began := time.Now()
		images.imgs, images.err = kubenode.BuildImages(context.Background(), root, images.dir, logr.Discard(), imagebuild.Agent, imagebuild.Controller)
		t.Logf("images built in %s", time.Since(began).Round(time.Millisecond))
	})
	if images.err != nil {
		t.Fatal(images.err)
	}
	return images.imgs
}

const (
	nodeName    = "kn1"
	readyWithin = 90 * time.Second
	podWithin   = 90 * time.Second
)

// TestNode_RunsPodsAndHostZFS brings up one real kubelet node (containerd,
// runc, bridge CNI) against a real control plane with kube-scheduler and
// kube-controller-manager's daemonset controller, then checks that a
// DaemonSet's pod on the pod network reaches Running with an address from
// the node's pod subnet, that a hostPID privileged pod of the z8r-agent image
// reaches the node's own zfs-fuse pool through `nsenter -t 1 -m -- zfs`
// (what the agent DaemonSet's --zfs-prefix does), and that stopping the node
// leaves no process, mount, cgroup or changed sysctl behind.
func TestNode_RunsPodsAndHostZFS(t *testing.T) {
	ctx := context.Background()
	imgs := buildImages(t)

	// A node of a killed test binary leaves the sysctls kubelet set; Sweep
	// (which Start runs too) restores them before they are taken as the
	// values to come back to.
	if err := kubenode.Sweep(); err != nil {
		t.Fatal(err)
	}
	sysctlsBefore := readSysctls(t)
	// kubelet registers its Node with the node.kubernetes.io/not-ready
	// NoSchedule taint, which the node lifecycle controller removes once the
	// node is Ready; DaemonSet pods do not tolerate it.
	env := kubeenv.Start(t, kubeenv.Options{ControllerManager: []string{"daemonset-controller", "serviceaccount-controller", "node-lifecycle-controller"}})
	kubenode.StartScheduler(t, env)
	network := netns.New(t, nodeName)
	api := kubenode.ForwardAPIServer(t, network, env)

	began := time.Now()
	node := kubenode.Start(t, kubenode.Options{
		Env: env, Network: network, APIServer: api, Images: imgs, ZFSPools: []string{"tank"},
	}, nodeName)
	started := time.Since(began)
	waitNodeReady(t, env, nodeName)
	ready := time.Since(began)
	t.Logf("node %s: kubelet started in %s, Ready in %s", nodeName, started.Round(time.Millisecond), ready.Round(time.Millisecond))

	agentRef := imagebuild.Agent.Ref
	if err := node.Import(ctx, imgs.Archives[agentRef]); err != nil {
		t.Fatal(err)
	}
	ns := env.CreateNamespace(t, "kubenode")
	waitDefaultServiceAccount(t, env, ns)

	// A DaemonSet of the pause image on the pod network.
	labels := map[string]string{"app": "pause"}
	env.Create(t, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pause"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "pause", Image: kubenode.PauseRef, ImagePullPolicy: corev1.PullNever,
					}},
				},
			},
		},
	})
	began = time.Now()
	dsPod := waitPod(t, env, ns, client.MatchingLabels(labels), func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	t.Logf("DaemonSet pod %s Running in %s on %s, pod IP %s", dsPod.Name, time.Since(began).Round(time.Millisecond), dsPod.Spec.NodeName, dsPod.Status.PodIP)
	if dsPod.Spec.NodeName != nodeName {
		t.Errorf("DaemonSet pod on node %q, want %q", dsPod.Spec.NodeName, nodeName)
	}
	_, subnet, _ := net.ParseCIDR("10.214.10.0/24")
	if ip := net.ParseIP(dsPod.Status.PodIP); ip == nil || !subnet.Contains(ip) {
		t.Errorf("DaemonSet pod IP %q, want one from the node's pod subnet %s", dsPod.Status.PodIP, subnet)
	}

	// The agent image as a hostPID privileged pod: nsenter -t 1 reaches the
	// node's init, so zfs runs in the node's mount namespace and talks to
	// the node's zfs-fuse.
	env.Create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "zfs-list"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			RestartPolicy:                 corev1.RestartPolicyNever,
			HostPID:                       true,
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "zfs", Image: agentRef, ImagePullPolicy: corev1.PullNever,
				Command:         []string{"nsenter", "-t", "1", "-m", "--", "zfs", "list", "-H", "-o", "name"},
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
			}},
		},
	})
	began = time.Now()
	zp := waitPod(t, env, ns, client.MatchingFields{"metadata.name": "zfs-list"}, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	t.Logf("hostPID pod finished (%s) in %s", zp.Status.Phase, time.Since(began).Round(time.Millisecond))
	logs, err := node.PodLogs(ns, "zfs-list", "zfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hostPID pod log:\n%s", logs)
	if zp.Status.Phase != corev1.PodSucceeded {
		t.Errorf("hostPID pod phase %s, want Succeeded", zp.Status.Phase)
	}
	if !logHasLine(logs, "tank") {
		t.Errorf("hostPID pod's zfs list does not show the node's pool tank")
	}

	k, c, err := node.RSS()
	if err != nil {
		t.Error(err)
	}
	t.Logf("RSS: kubelet %d MiB, containerd %d MiB", k/1024, c/1024)

	// What Stop must take away is there: processes in the node's PID
	// namespace (the sandboxes, the shims), overlay and shm mounts in its
	// mount namespace, pod cgroups, and sysctls kubelet rewrote.
	if left := node.Leftovers(); len(left) != 0 {
		t.Fatalf("Leftovers before Stop = %v, want nothing: it is only filled by Stop", left)
	}
	procs := node.Processes()
	for _, want := range []string{"kubelet", "containerd", "containerd-shim", "pause", "zfs-fuse"} {
		if !slices.ContainsFunc(procs, func(p string) bool { return strings.HasSuffix(p, "("+want+")") }) {
			t.Errorf("no %s among the node's processes %v", want, procs)
		}
	}
	mounts, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(node.InitPID), "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" - overlay ", "/shm "} {
		if !strings.Contains(string(mounts), want) {
			t.Errorf("no %q mount in the node's mount namespace", want)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", node.CgroupRoot, "kubepods")); err != nil {
		t.Errorf("no pod cgroup under the node's cgroupRoot: %v", err)
	}
	during := readSysctls(t)
	t.Logf("sysctls before the node %v, while it runs %v", sysctlsBefore, during)

	began = time.Now()
	if err := node.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("node stopped in %s", time.Since(began).Round(time.Millisecond))
	if left := node.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Stop: %v", left)
	}
	if _, err := os.Stat(node.Dir); !os.IsNotExist(err) {
		t.Errorf("node folder %s still there (%v)", node.Dir, err)
	}
	for _, m := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(m, node.CgroupRoot)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s%s still there (%v)", m, node.CgroupRoot, err)
		}
	}
	// kubelet and containerd wrote nothing into the host's folders the node
	// sees as its own.
	for _, d := range []string{"/var/lib/kubelet", "/var/lib/cni"} {
		if entries, err := os.ReadDir(d); err != nil || len(entries) > 0 {
			t.Errorf("host folder %s: %d entries (%v), want an empty folder", d, len(entries), err)
		}
	}
	if after := readSysctls(t); fmt.Sprint(after) != fmt.Sprint(sysctlsBefore) {
		t.Errorf("sysctls after Stop %v, before the node %v", after, sysctlsBefore)
	}
}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for _, k := range kubenode.KubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatal(err)
		}
		vals[k] = strings.TrimSpace(string(b))
	}
	return vals
}

// logHasLine reports whether a CRI-format log (time stream tag line) has
// a line equal to want.
func logHasLine(log, want string) bool {
	for _, l := range strings.Split(log, "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) == 4 && f[3] == want {
			return true
		}
	}
	return false
}

func waitNodeReady(t *testing.T, env *kubeenv.Env, name string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, readyWithin, true, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
			if ctx.Err() == nil {
				last = err.Error()
			}
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		last = "no Ready condition"
		return false, nil
	})
	if err != nil {
		t.Fatalf("node %s not Ready after %s: %s", name, readyWithin, last)
	}
}

func waitDefaultServiceAccount(t *testing.T, env *kubeenv.Env, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var sa corev1.ServiceAccount
		return env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa) == nil, nil
	})
	if err != nil {
		t.Fatalf("no default ServiceAccount in %s: %v", ns, err)
	}
}

func waitPod(t *testing.T, env *kubeenv.Env, ns string, sel client.ListOption, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, podWithin, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns), sel); err != nil {
			if ctx.Err() == nil {
				last = err.Error()
			}
			return false, nil
		}
		if len(pods.Items) == 0 {
			last = "no pod"
			return false, nil
		}
		p := &pods.Items[0]
		last = podSummary(p)
		if done(p) {
			found = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod in %s: %v; last seen: %s", ns, err, last)
	}
	return found
}

func podSummary(p *corev1.Pod) string {
	s := fmt.Sprintf("%s node=%q phase=%s", p.Name, p.Spec.NodeName, p.Status.Phase)
	for _, c := range p.Status.Conditions {
		s += fmt.Sprintf(" %s=%s(%s)", c.Type, c.Status, c.Message)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			s += fmt.Sprintf(" %s waiting %s: %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		}
		if cs.State.Terminated != nil {
			s += fmt.Sprintf(" %s terminated %s exit %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
	}
	return s
}

// TestNodes_DaemonSetSeesEachNodesOwnZFS runs two kubelet nodes in one
// network, each with its own zfs-fuse pool named tank holding a dataset
// only it has, and a DaemonSet shaped like the agent's (hostPID,
// hostNetwork, privileged, the z8r-agent image, nsenter -t 1 -m): the pod on
// each node must list that node's datasets and not the other's, and write
// into that node's private /var/lib/z8r (the agent's hostPath), not the
// host's or the other node's.
func TestNodes_DaemonSetSeesEachNodesOwnZFS(t *testing.T) {
	ctx := context.Background()
	imgs := buildImages(t)
	env := kubeenv.Start(t, kubeenv.Options{ControllerManager: []string{"daemonset-controller", "serviceaccount-controller", "node-lifecycle-controller"}})
	kubenode.StartScheduler(t, env)
	names := []string{"kn1", "kn2"}
	network := netns.New(t, names...)
	api := kubenode.ForwardAPIServer(t, network, env)
	const stateDir = "/var/lib/z8r"
	hostWho := filepath.Join(stateDir, "who")
	if _, err := os.Stat(hostWho); err == nil {
		t.Fatalf("%s exists on the host before the test", hostWho)
	}

	began := time.Now()
	nodes := map[string]*kubenode.Node{}
	for _, name := range names {
		n := kubenode.Start(t, kubenode.Options{
			Env: env, Network: network, APIServer: api, Images: imgs,
			ZFSPools: []string{"tank"}, PrivateDirs: []string{stateDir},
		}, name)
		if _, err := n.Exec(ctx, "zfs", "create", "tank/only-"+name); err != nil {
			t.Fatal(err)
		}
		if err := n.Import(ctx, imgs.Archives[imagebuild.Agent.Ref]); err != nil {
			t.Fatal(err)
		}
		nodes[name] = n
	}
	for _, name := range names {
		waitNodeReady(t, env, name)
	}
	t.Logf("%d nodes Ready in %s", len(names), time.Since(began).Round(time.Millisecond))

	ns := env.CreateNamespace(t, "kubenode")
	waitDefaultServiceAccount(t, env, ns)
	labels := map[string]string{"app": "zfs-view"}
	env.Create(t, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "zfs-view"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					HostPID:                       true,
					HostNetwork:                   true,
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "zfs", Image: imagebuild.Agent.Ref, ImagePullPolicy: corev1.PullNever,
						Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
						// The image has no shell: sh and sleep are the node's,
						// run in the node's mount namespace like its zfs.
						Command: []string{"nsenter", "-t", "1", "-m", "--", "sh", "-c",
							`zfs list -H -o name && echo "$NODE_NAME" > ` + hostWho + ` && exec sleep 3600`},
						SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
					}},
				},
			},
		},
	})
	began = time.Now()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, podWithin, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return false, nil
		}
		running := map[string]bool{}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running[p.Spec.NodeName] = true
			}
		}
		return len(running) == len(names), nil
	})
	if err != nil {
		t.Fatalf("DaemonSet pods not Running on %v: %v", names, err)
	}
	t.Logf("DaemonSet pods Running on %v in %s", names, time.Since(began).Round(time.Millisecond))

	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		node := nodes[p.Spec.NodeName]
		var logs string
		// The pod is Running once sh started; its output follows.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			logs, _ = node.PodLogs(ns, p.Name, "zfs")
			_, err := os.Stat(filepath.Join(node.PrivatePath(stateDir), "who"))
			return err == nil && logHasLine(logs, "tank"), nil
		})
		if err != nil {
			t.Fatalf("pod %s on %s: no zfs list output or no %s: log %q", p.Name, node.Name, hostWho, logs)
		}
		for _, other := range names {
			if got, want := logHasLine(logs, "tank/only-"+other), other == node.Name; got != want {
				t.Errorf("pod on %s lists tank/only-%s: %t, want %t; log:\n%s", node.Name, other, got, want, logs)
			}
		}
		who, err := os.ReadFile(filepath.Join(node.PrivatePath(stateDir), "who"))
		if err != nil || strings.TrimSpace(string(who)) != node.Name {
			t.Errorf("node %s's %s holds %q (%v), want its name", node.Name, hostWho, who, err)
		}
	}
	if _, err := os.Stat(hostWho); err == nil {
		t.Errorf("a pod wrote %s on the host, not in its node's private folder", hostWho)
	}
	for _, name := range names {
		k, c, err := nodes[name].RSS()
		if err != nil {
			t.Error(err)
		}
		t.Logf("%s RSS: kubelet %d MiB, containerd %d MiB", name, k/1024, c/1024)
	}
	began = time.Now()
	for _, name := range names {
		if err := nodes[name].Stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	}
	t.Logf("nodes stopped in %s", time.Since(began).Round(time.Millisecond))
}
