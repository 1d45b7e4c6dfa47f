//go:build pods

package kubenode_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
)

// What the deploy test waits for, and how long.
const (
	controllerName   = "z8r-controller"
	seedLabel        = "zfs.replication.takutakahashi.dev"
	controllerLease  = "z8r-controller.z8r.dev"
	deployReadyAfter = 120 * time.Second
	syncWithin       = 120 * time.Second
)

// TestNodes_DeployFromOverlayReplicatesThroughPods applies deploy/ through
// the test bed's kustomize overlay (deploy/ with imagePullPolicy Never,
// nothing else) to a control plane whose API server pods reach as a real
// cluster's: the kubernetes Service's address on every node, a serving
// certificate naming it, service account tokens the kubelet requests and
// the kube-root-ca.crt ConfigMap. Two kubelet nodes each have a zfs-fuse
// pool tank; the keys are the Secrets `kubectl z8r init-keys` makes. It
// checks that the agent DaemonSet's pods (hostNetwork) and the controller
// Deployment's pod (pod network, leader election on, its own
// ServiceAccount and RBAC) turn Ready, that the agents publish their
// Z8RNodes through the API (the admission policy z8r-agent-own-z8rnode in
// force) and the controller pins their host keys and holds its Lease. Then,
// on that cluster: a DatasetReplication from kn1's tank/data to kn2, and
// the seed's label and master/replica node annotations for tank/seed, each
// carry a file there (its checksum, read through kn2's zfs-fuse from a
// clone of the received snapshot, matches the source's; the source agent's
// log has the transfer's audit line); and the controller pod deleted while
// a paced first sync runs is replaced, the new pod takes the Lease and the
// sync ends Synced with one transfer's worth of bytes, the data intact,
// nothing partial on the target and no step hold left on the source; the
// agent DaemonSet restarted as `kubectl rollout restart` does while another
// paced first sync runs rolls out and the sync ends the same way
// (testAgentRollingUpdateMidSync); last, docs/install.md's Uninstall with
// `kubectl delete -k` of the overlay leaves no hold, nothing stuck, no
// orphan and the user's data intact (testUninstall).
func TestNodes_DeployFromOverlayReplicatesThroughPods(t *testing.T) {
	ctx := context.Background()
	imgs := buildImages(t)
	names := []string{"kn1", "kn2"}
	began := time.Now()
	d := kubenode.StartDeployed(t, kubenode.DeployedOptions{
		Nodes: names, Images: imgs,
		Log: func(msg string) { t.Logf("%s (%s)", msg, time.Since(began).Round(time.Millisecond)) },
	})
	env, nodes := d.Env, d.Nodes
	t.Logf("deploy/ applied and every pod and Z8RNode Ready in %s", time.Since(began).Round(time.Millisecond))
	for _, want := range [][2]string{{"Deployment", controllerName}, {"DaemonSet", agentName}, {"ValidatingAdmissionPolicy", "z8r-agent-own-z8rnode"}} {
		if kubenode.Find(d.Objects, want[0], want[1]) == nil {
			t.Fatalf("the overlay renders no %s %s", want[0], want[1])
		}
	}

	// The source dataset and a file in it, written through kn1's zfs-fuse.
	src := nodes["kn1"]
	if _, err := src.Exec(ctx, "zfs", "create", "tank/data"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(src.Dir, "zfs", "mnt", "tank", "data", "file")
	if _, err := src.Exec(ctx, "dd", "if=/dev/urandom", "of="+file, "bs=64k", "count=16"); err != nil {
		t.Fatal(err)
	}
	want := sha256In(t, src, file)
	// What the user's data must still be once z8r is gone: each replicated
	// dataset's file's SHA-256 on kn1, and the clone of its replica on kn2.
	kept := map[string]string{"tank/data": want}
	clones := map[string]string{"tank/data": "tank/verify-data"}

	// Agents: one Ready pod per node, each publishing its node's Z8RNode
	// through the API with its own token; the controller pins their keys.
	agents, err := kubenode.WaitReadyPods(ctx, env, agentNamespace, agentSelector, len(names), deployReadyAfter)
	if err != nil {
		t.Fatal(err)
	}
	ctrls, err := kubenode.WaitReadyPods(ctx, env, agentNamespace, controllerSelector, 1, deployReadyAfter)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := ctrls[0]
	t.Logf("controller pod %s on %s, pod IP %s", ctrl.Name, ctrl.Spec.NodeName, ctrl.Status.PodIP)
	if ctrl.Spec.HostNetwork || ctrl.Status.PodIP == nodes[ctrl.Spec.NodeName].IP {
		t.Errorf("controller pod on the host network (pod IP %s): the test must show the pod network reaching the API", ctrl.Status.PodIP)
	}
	for _, p := range agents {
		if p.Spec.AutomountServiceAccountToken != nil && !*p.Spec.AutomountServiceAccountToken {
			t.Errorf("agent pod %s has no service account token", p.Name)
		}
	}
	kubectlGetPods(t, env)

	var lease coordinationv1.Lease
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: agentNamespace, Name: controllerLease}, &lease); err != nil {
			return false, nil
		}
		return lease.Spec.HolderIdentity != nil && strings.HasPrefix(*lease.Spec.HolderIdentity, ctrl.Name+"_"), nil
	})
	if err != nil {
		t.Fatalf("Lease %s/%s not held by the controller pod %s: %+v", agentNamespace, controllerLease, ctrl.Name, lease.Spec)
	}
	t.Logf("leader Lease held by %s", *lease.Spec.HolderIdentity)

	// StartDeployed waited for each Z8RNode Ready with its host key pinned
	// and trusted; its address is the agent's hostNetwork pod IP.
	for _, name := range names {
		var zn z8rv1.Z8RNode
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &zn); err != nil {
			t.Fatal(err)
		}
		if !zn.Status.Ready || zn.Spec.PinnedHostKey == "" || zn.Spec.PinnedHostKey != zn.Status.HostKey {
			t.Errorf("Z8RNode %s: ready=%v pinned=%v, want Ready with the host key pinned", name, zn.Status.Ready, zn.Spec.PinnedHostKey != "")
		}
		if want := nodes[name].IP + ":" + agentSSHPort; zn.Status.Address != want {
			t.Errorf("Z8RNode %s address %q, want %q (the agent's hostNetwork pod IP)", name, zn.Status.Address, want)
		}
		t.Logf("Z8RNode %s: %s", name, zn.Status.Address)
	}

	// A DatasetReplication from kn1 to kn2, carried out by the controller
	// pod through the agent pods.
	t.Run("DatasetReplication", func(t *testing.T) {
		began := time.Now()
		env.Create(t, &z8rv1.DatasetReplication{
			ObjectMeta: metav1.ObjectMeta{Name: "data"},
			Spec: z8rv1.DatasetReplicationSpec{
				Source:   z8rv1.DatasetRef{Node: "kn1", Dataset: "tank/data"},
				Schedule: "24h",
				Targets:  []z8rv1.ReplicationTarget{{Node: "kn2"}},
			},
		})
		ts := waitSynced(t, env, nodes[ctrl.Spec.NodeName], ctrl.Name, "data", "kn2", time.Time{})
		t.Logf("Synced to kn2 in %s, last snapshot %s", time.Since(began).Round(time.Millisecond), ts.LastSnapshot)
		if got := sha256OfClone(t, nodes["kn2"], "tank/data@"+ts.LastSnapshot, "tank/verify-data"); got != want {
			t.Errorf("tank/data's file on kn2 has SHA-256 %s, want %s (kn1's)", got, want)
		}
		// The agents' audit lines, in the pods' logs as an operator reads
		// them (`kubectl logs`): the source agent ran the transfer the
		// controller pod asked for.
		logs, stderr, err := kubectl(t, env, nil, "logs", "-n", agentNamespace, podOn(agents, "kn1").Name, "-c", "agent")
		if err != nil {
			t.Fatalf("kubectl logs of kn1's agent pod: %v: %s", err, stderr)
		}
		if !strings.Contains(logs, `"msg":"audit"`) || !strings.Contains(logs, `"request":"z8r.dev/transfer/v1"`) || !strings.Contains(logs, `"remote":"`+ctrl.Status.PodIP+`:`) {
			t.Errorf("kn1's agent log has no audit line of a transfer requested from the controller pod %s:\n%s", ctrl.Status.PodIP, tailString(logs, 10))
		}
	})

	// The seed's own flow: its label on both nodes, the master annotation
	// on kn1 and the replica annotation on kn2, exactly as the original
	// z8r; the controller's node policy creates the replication.
	t.Run("SeedAnnotations", func(t *testing.T) {
		if _, err := src.Exec(ctx, "zfs", "create", "tank/seed"); err != nil {
			t.Fatal(err)
		}
		seedFile := filepath.Join(src.Dir, "zfs", "mnt", "tank", "seed", "file")
		if _, err := src.Exec(ctx, "dd", "if=/dev/urandom", "of="+seedFile, "bs=64k", "count=8"); err != nil {
			t.Fatal(err)
		}
		wantSeed := sha256In(t, src, seedFile)
		kept["tank/seed"], clones["tank/seed"] = wantSeed, "tank/verify-seed"
		began := time.Now()
		for name, role := range map[string]string{"kn1": "master", "kn2": "replica"} {
			if err := d.AnnotateNode(ctx, name, map[string]string{seedLabel: "true"}, map[string]string{seedLabel + "/" + role: "tank/seed"}); err != nil {
				t.Fatal(err)
			}
		}
		seedRep := policy.ID("kn1", "tank/seed")
		ts := waitSynced(t, env, nodes[ctrl.Spec.NodeName], ctrl.Name, seedRep, "kn2", time.Time{})
		t.Logf("%s Synced to kn2 in %s, last snapshot %s", seedRep, time.Since(began).Round(time.Millisecond), ts.LastSnapshot)
		if got := sha256OfClone(t, nodes["kn2"], "tank/seed@"+ts.LastSnapshot, "tank/verify-seed"); got != wantSeed {
			t.Errorf("tank/seed's file on kn2 has SHA-256 %s, want %s (kn1's)", got, wantSeed)
		}
	})

	// The controller pod deleted while a paced first sync runs: the
	// Deployment replaces it, the new pod takes the Lease and syncs again
	// from the start (zfs-fuse has no resumable receive), cleanly.
	t.Run("ControllerPodDeletedMidSync", func(t *testing.T) {
		const fs, size = "tank/paced", 48 << 20
		if _, err := src.Exec(ctx, "zfs", "create", fs); err != nil {
			t.Fatal(err)
		}
		pacedFile := filepath.Join(src.Dir, "zfs", "mnt", fs, "file")
		if _, err := src.Exec(ctx, "dd", "if=/dev/urandom", "of="+pacedFile, "bs=1M", fmt.Sprintf("count=%d", size>>20)); err != nil {
			t.Fatal(err)
		}
		wantPaced := sha256In(t, src, pacedFile)
		kept[fs], clones[fs] = wantPaced, "tank/verify-paced"
		limit := resource.MustParse("4Mi")
		env.Create(t, &z8rv1.DatasetReplication{
			ObjectMeta: metav1.ObjectMeta{Name: "paced"},
			Spec: z8rv1.DatasetReplicationSpec{
				Source:   z8rv1.DatasetRef{Node: "kn1", Dataset: fs},
				Schedule: "24h", BandwidthLimit: &limit,
				Targets: []z8rv1.ReplicationTarget{{Node: "kn2"}},
			},
		})
		last := waitTransferring(t, env, "paced", "kn2")
		deleted := time.Now()
		if err := env.Client.Delete(ctx, &ctrl); err != nil {
			t.Fatal(err)
		}
		t.Logf("controller pod %s deleted mid-sync: %s", ctrl.Name, last)
		var next corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, deployReadyAfter, true, func(ctx context.Context) (bool, error) {
			for _, p := range readyPods(ctx, env, agentNamespace, controllerSelector) {
				if p.Name != ctrl.Name {
					next = p
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			kubectlGetPods(t, env)
			t.Fatalf("no new controller pod Ready %s after deleting %s", deployReadyAfter, ctrl.Name)
		}
		t.Logf("new controller pod %s Ready on %s in %s", next.Name, next.Spec.NodeName, time.Since(deleted).Round(time.Millisecond))
		ts := waitSynced(t, env, nodes[next.Spec.NodeName], next.Name, "paced", "kn2", deleted)
		t.Logf("Synced after the deletion in %s: %d bytes, %s", time.Since(deleted).Round(time.Millisecond), ts.LastSyncBytes, ts.LastSyncKind)
		kubectlGetPods(t, env)
		var lease coordinationv1.Lease
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: agentNamespace, Name: controllerLease}, &lease); err != nil {
			t.Fatal(err)
		}
		if h := ptr.Deref(lease.Spec.HolderIdentity, ""); !strings.HasPrefix(h, next.Name+"_") {
			t.Errorf("Lease held by %q, want the new pod %s", h, next.Name)
		}
		if ts.LastSyncBytes < size || ts.LastSyncBytes > size*3/2 || ts.Transfer != nil {
			t.Errorf("after the new controller: %+v, want one finished transfer of about %d bytes", ts, size)
		}
		if got := sha256OfClone(t, nodes["kn2"], fs+"@"+ts.LastSnapshot, "tank/verify-paced"); got != wantPaced {
			t.Errorf("%s's file on kn2 has SHA-256 %s, want %s (kn1's)", fs, got, wantPaced)
		}
		checkReplicaClean(t, src, nodes["kn2"], fs, ts.LastSnapshot)
	})

	cluster := &podsCluster{
		env: env, nodes: nodes, overlay: d.Overlay, objs: d.Objects,
		kept: kept, clones: clones,
	}
	// A rolling update of the agent DaemonSet, as an operator's `kubectl
	// rollout restart`, while a paced first sync runs.
	t.Run("AgentRollingUpdateMidSync", func(t *testing.T) { testAgentRollingUpdateMidSync(t, cluster) })

	// Measured for docs/pods.md: each node's kubelet and containerd over
	// 10 s with the agent and controller pods running and no transfer.
	const window = 10 * time.Second
	before := map[string][2]time.Duration{}
	for _, name := range names {
		k, c, err := nodes[name].CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		before[name] = [2]time.Duration{k, c}
	}
	time.Sleep(window)
	for _, name := range names {
		k, c, err := nodes[name].CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		kr, cr, err := nodes[name].RSS()
		if err != nil {
			t.Fatal(err)
		}
		pct := func(d time.Duration) float64 { return 100 * d.Seconds() / window.Seconds() }
		t.Logf("node %s with pods running, over %s: kubelet %.1f%% of a core, %d MiB; containerd %.1f%% of a core, %d MiB",
			name, window, pct(k-before[name][0]), kr/1024, pct(c-before[name][1]), cr/1024)
	}

	// Last, as a user leaves: docs/install.md's Uninstall, `kubectl delete
	// -k` of the overlay included, leaves no hold, nothing stuck and no
	// orphan, and the user's data where it was.
	t.Run("UninstallAsDocumented", func(t *testing.T) { testUninstall(t, cluster) })
}

// checkReplicaClean checks what one DatasetReplication of fs from src to
// dst left once Synced at snapshot last: nothing partial or moved aside on
// the target (the replica alone), and on the source no step hold, only the
// base hold on fs@last.
func checkReplicaClean(t *testing.T, src, dst *kubenode.Node, fs, last string) {
	t.Helper()
	ctx := context.Background()
	out, err := dst.Exec(ctx, "zfs", "list", "-H", "-o", "name", "-r", fs)
	if err != nil || strings.TrimSpace(out) != fs {
		t.Errorf("%s's %s:\n%s (%v), want the replica alone", dst.Name, fs, out, err)
	}
	out, err = src.Exec(ctx, "zfs", "list", "-H", "-o", "name,userrefs", "-r", "-t", "snapshot", fs)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		seen = seen || f[0] == fs+"@"+last
		want := "0"
		if f[0] == fs+"@"+last {
			want = "1"
		}
		if f[1] != want {
			t.Errorf("%s has %s holds, want %s (no step hold left)", f[0], f[1], want)
		}
	}
	if !seen {
		t.Errorf("%s lists no snapshot %s@%s:\n%s", src.Name, fs, last, out)
	}
}

// waitTransferring waits until the DatasetReplication name shows bytes of
// a transfer to target flowing, and returns its targets' status.
func waitTransferring(t *testing.T, env *kubeenv.Env, name, target string) string {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, syncWithin, true, func(ctx context.Context) (bool, error) {
		var dr z8rv1.DatasetReplication
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%+v", dr.Status.Targets)
		for _, tg := range dr.Status.Targets {
			if tg.Node == target && tg.Transfer != nil && tg.Transfer.BytesDone > 0 {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s's sync to %s never showed progress: %s", name, target, last)
	}
	return last
}

// podOn returns the pod of pods on node, or an empty pod.
func podOn(pods []corev1.Pod, node string) corev1.Pod {
	for _, p := range pods {
		if p.Spec.NodeName == node {
			return p
		}
	}
	return corev1.Pod{}
}

// waitSynced waits until the DatasetReplication name reports target Synced
// with a sync that ended after after (any, when zero), and returns the
// target's status. On a timeout it logs the end of the controller pod's log
// (pod ctrlPod on node ctrlNode).
func waitSynced(t *testing.T, env *kubeenv.Env, ctrlNode *kubenode.Node, ctrlPod, name, target string, after time.Time) z8rv1.TargetStatus {
	t.Helper()
	var found z8rv1.TargetStatus
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, syncWithin, true, func(ctx context.Context) (bool, error) {
		var dr z8rv1.DatasetReplication
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%+v", dr.Status.Targets)
		for _, tg := range dr.Status.Targets {
			if tg.Node == target && tg.State == z8rv1.TargetSynced && tg.LastSnapshot != "" &&
				tg.LastSyncTime != nil && tg.LastSyncTime.After(after) {
				found = tg
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		if logs, lerr := ctrlNode.PodLogs(agentNamespace, ctrlPod, "controller"); lerr == nil {
			t.Logf("controller log:\n%s", tailString(logs, 40))
		}
		t.Fatalf("DatasetReplication %s not Synced to %s after %s: %s", name, target, syncWithin, last)
	}
	return found
}

// sha256OfClone clones snapshot (a received replica's) on node n into
// clone, mounted, and returns the SHA-256 of its file "file" as the node's
// zfs-fuse serves it. The replica itself stays as received (unmounted).
func sha256OfClone(t *testing.T, n *kubenode.Node, snapshot, clone string) string {
	t.Helper()
	mnt := filepath.Join(n.Dir, "zfs", "mnt", strings.ReplaceAll(clone, "/", "-"))
	if _, err := n.Exec(context.Background(), "zfs", "clone", "-o", "mountpoint="+mnt, snapshot, clone); err != nil {
		t.Fatal(err)
	}
	return sha256In(t, n, filepath.Join(mnt, "file"))
}

// sha256In returns the SHA-256 of path as the node sees it.
func sha256In(t *testing.T, n *kubenode.Node, path string) string {
	t.Helper()
	sum, err := kubenode.FileSHA256(context.Background(), n, path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// readyPods lists the Ready pods matching the label selector sel in ns.
func readyPods(ctx context.Context, env *kubeenv.Env, ns, sel string) []corev1.Pod {
	ls, err := labels.Parse(sel)
	if err != nil {
		return nil
	}
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: ls}); err != nil {
		return nil
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if podReady(&p) && p.DeletionTimestamp == nil {
			ready = append(ready, p)
		}
	}
	return ready
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// kubectlGetPods logs `kubectl get pods -n z8r-system -o wide`.
func kubectlGetPods(t *testing.T, env *kubeenv.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(env.BinDir, kubeenv.BinKubectl), "--kubeconfig", env.Kubeconfig,
		"get", "pods", "-n", agentNamespace, "-o", "wide").CombinedOutput()
	if err != nil {
		t.Logf("kubectl get pods: %v: %s", err, out)
		return
	}
	t.Logf("kubectl get pods -n %s -o wide:\n%s", agentNamespace, out)
}
