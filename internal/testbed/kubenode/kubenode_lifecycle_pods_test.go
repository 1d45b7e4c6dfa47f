//go:build pods

package kubenode_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
)

// Bounds of the lifecycle flows on the deploy test's cluster.
const (
	agentSelector      = "app.kubernetes.io/component=agent"
	controllerSelector = "app.kubernetes.io/component=controller"
	// rolloutWithin bounds a rolling update of the agent DaemonSet over
	// two nodes, one pod at a time (maxUnavailable 1), each Ready after
	// its readiness probe (5 s delay, 10 s period).
	rolloutWithin = 120 * time.Second
	// uninstallWithin bounds each uninstall step: the DatasetReplications
	// gone (their finalizers released the holds), then everything
	// `kubectl delete -k` deletes, the namespace included.
	uninstallWithin = 120 * time.Second
	// restartedAtAnnotation is what `kubectl rollout restart` sets on a
	// pod template.
	restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
)

// podsCluster is the deploy test's cluster, for the flows that run on it.
type podsCluster struct {
	env   *kubeenv.Env
	nodes map[string]*kubenode.Node
	// overlay is the kustomization directory, objs what it renders.
	overlay string
	objs    []*unstructured.Unstructured
	// kept maps each replicated dataset of kn1 to its file's SHA-256,
	// clones to the clone of its replica on kn2 (sha256OfClone's).
	kept, clones map[string]string
}

// controller returns the Ready controller pod and its node, or an empty
// pod and nil.
func (c *podsCluster) controller(ctx context.Context) (corev1.Pod, *kubenode.Node) {
	for _, p := range readyPods(ctx, c.env, agentNamespace, controllerSelector) {
		return p, c.nodes[p.Spec.NodeName]
	}
	return corev1.Pod{}, nil
}

// testAgentRollingUpdateMidSync starts a paced first sync from kn1 to kn2,
// restarts the agent DaemonSet as `kubectl rollout restart` does once bytes
// flow, waits for the rollout (every agent pod replaced and Ready) and
// checks that the transfer was in flight when the first agent pod went,
// that the replication ends Synced with the data intact, nothing but the
// replica on the target and only the base hold on the source, and that the
// agents kept their host keys.
func testAgentRollingUpdateMidSync(t *testing.T, c *podsCluster) {
	ctx := context.Background()
	const fs, size, name = "tank/rolled", 48 << 20, "rolled"
	src := c.nodes["kn1"]
	if _, err := src.Exec(ctx, "zfs", "create", fs); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(src.Dir, "zfs", "mnt", fs, "file")
	if _, err := src.Exec(ctx, "dd", "if=/dev/urandom", "of="+file, "bs=1M", fmt.Sprintf("count=%d", size>>20)); err != nil {
		t.Fatal(err)
	}
	want := sha256In(t, src, file)
	c.kept[fs], c.clones[fs] = want, "tank/verify-rolled"
	pinned := map[string]string{}
	for n := range c.nodes {
		var zn z8rv1.Z8RNode
		if err := c.env.Client.Get(ctx, client.ObjectKey{Name: n}, &zn); err != nil {
			t.Fatal(err)
		}
		pinned[n] = zn.Spec.PinnedHostKey
	}
	old := map[string]bool{}
	for _, p := range readyPods(ctx, c.env, agentNamespace, agentSelector) {
		old[p.Name] = true
	}
	if len(old) != len(c.nodes) {
		t.Fatalf("%d Ready agent pods before the rollout, want %d", len(old), len(c.nodes))
	}

	limit := resource.MustParse("4Mi")
	c.env.Create(t, &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: z8rv1.DatasetReplicationSpec{
			Source:   z8rv1.DatasetRef{Node: "kn1", Dataset: fs},
			Schedule: "24h", BandwidthLimit: &limit,
			Targets: []z8rv1.ReplicationTarget{{Node: "kn2"}},
		},
	})
	progress := waitTransferring(t, c.env, name, "kn2")

	// kubectl rollout restart daemonset/z8r-agent: a pod template
	// annotation with the time.
	restarted := time.Now()
	var ds appsv1.DaemonSet
	if err := c.env.Client.Get(ctx, client.ObjectKey{Namespace: agentNamespace, Name: agentName}, &ds); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ds.DeepCopy())
	if ds.Spec.Template.Annotations == nil {
		ds.Spec.Template.Annotations = map[string]string{}
	}
	ds.Spec.Template.Annotations[restartedAtAnnotation] = restarted.Format(time.RFC3339)
	if err := c.env.Client.Patch(ctx, &ds, patch); err != nil {
		t.Fatal(err)
	}
	t.Logf("agent DaemonSet restarted mid-sync: %s", progress)

	// Until the rollout completes: when the first old agent pod began
	// terminating, and what the replication showed then and meanwhile.
	var firstGone time.Time
	var atFirstGone z8rv1.TargetStatus
	failures, lastError := 0, ""
	var state string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, rolloutWithin, true, func(ctx context.Context) (bool, error) {
		var dr z8rv1.DatasetReplication
		var tg z8rv1.TargetStatus
		if err := c.env.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err == nil {
			for _, x := range dr.Status.Targets {
				if x.Node == "kn2" {
					tg = x
				}
			}
		}
		if tg.ConsecutiveFailures > failures {
			failures, lastError = tg.ConsecutiveFailures, tg.LastError
		}
		var pods corev1.PodList
		if err := c.env.Client.List(ctx, &pods, client.InNamespace(agentNamespace), client.MatchingLabels(ds.Spec.Selector.MatchLabels)); err != nil {
			return false, nil
		}
		fresh := 0
		oldLeft := 0
		var summary []string
		for _, p := range pods.Items {
			summary = append(summary, podSummary(&p))
			if old[p.Name] {
				oldLeft++
				if p.DeletionTimestamp != nil && firstGone.IsZero() {
					firstGone, atFirstGone = time.Now(), tg
				}
				continue
			}
			if podReady(&p) && p.DeletionTimestamp == nil {
				fresh++
			}
		}
		if oldLeft < len(old) && firstGone.IsZero() {
			firstGone, atFirstGone = time.Now(), tg
		}
		if err := c.env.Client.Get(ctx, client.ObjectKeyFromObject(&ds), &ds); err != nil {
			return false, nil
		}
		st := ds.Status
		state = fmt.Sprintf("generation %d observed %d desired %d updated %d ready %d available %d; pods %s",
			ds.Generation, st.ObservedGeneration, st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberReady, st.NumberAvailable, strings.Join(summary, "; "))
		// kubectl rollout status's test, and every pod a new one.
		return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled == int32(len(c.nodes)) &&
			st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberAvailable == st.DesiredNumberScheduled &&
			oldLeft == 0 && fresh == len(c.nodes), nil
	})
	rolled := time.Now()
	kubectlGetPods(t, c.env)
	if err != nil {
		t.Fatalf("agent DaemonSet not rolled out %s after the restart: %s", rolloutWithin, state)
	}
	t.Logf("agent DaemonSet rolled out in %s (first old pod terminating %s after the restart); at that moment: %+v",
		rolled.Sub(restarted).Round(time.Millisecond), firstGone.Sub(restarted).Round(time.Millisecond), atFirstGone)
	// The sync was transferring at the restart (waitTransferring) and had
	// not ended when the first old pod began terminating.
	if atFirstGone.LastSyncTime != nil || atFirstGone.State == z8rv1.TargetSynced {
		t.Errorf("the sync had ended when the first old agent pod went (%+v): the rollout did not meet a transfer", atFirstGone)
	}

	ctrl, ctrlNode := c.controller(ctx)
	if ctrlNode == nil {
		t.Fatal("no Ready controller pod")
	}
	ts := waitSynced(t, c.env, ctrlNode, ctrl.Name, name, "kn2", firstGone)
	t.Logf("Synced %s after the rollout completed, %s after the first agent pod went: %d bytes, %s, %d failed attempts seen (last: %s)",
		time.Since(rolled).Round(time.Millisecond), time.Since(firstGone).Round(time.Millisecond), ts.LastSyncBytes, ts.LastSyncKind, failures, lastError)
	if failures == 0 {
		t.Errorf("the replication reported no failed attempt while its transfer's agents were replaced")
	}
	if ts.LastSyncBytes < size || ts.LastSyncBytes > size*3/2 || ts.Transfer != nil {
		t.Errorf("after the rollout: %+v, want one finished transfer of about %d bytes", ts, size)
	}
	if got := sha256OfClone(t, c.nodes["kn2"], fs+"@"+ts.LastSnapshot, c.clones[fs]); got != want {
		t.Errorf("%s's file on kn2 has SHA-256 %s, want %s (kn1's)", fs, got, want)
	}
	checkReplicaClean(t, src, c.nodes["kn2"], fs, ts.LastSnapshot)
	// The agents' host keys live on the node (/var/lib/z8r): the new pods
	// kept them, so nothing was pinned again.
	for n, key := range pinned {
		var zn z8rv1.Z8RNode
		if err := c.env.Client.Get(ctx, client.ObjectKey{Name: n}, &zn); err != nil {
			t.Fatal(err)
		}
		if zn.Spec.PinnedHostKey != key || zn.Status.HostKey != key {
			t.Errorf("Z8RNode %s after the rollout: pinned %q, host key %q, want %q both", n, zn.Spec.PinnedHostKey, zn.Status.HostKey, key)
		}
	}
}

// testUninstall follows docs/install.md's "Uninstall" with the kubectl
// built here: step 1 (node annotations removed, DatasetReplications
// deleted, waited for), step 2 (`kubectl delete -k` of the overlay) and
// step 3 (the labels). It checks that there was something to release first
// (holds on kn1), then that no z8r hold is left on either node, the
// DatasetReplications, Z8RNodes and z8r-system went within their bounds,
// no z8r CRD, ClusterRole(Binding) or admission policy (binding) is left,
// and the user's data (each source dataset and its replica) is intact.
func testUninstall(t *testing.T, c *podsCluster) {
	ctx := context.Background()
	kubectl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, uninstallWithin+30*time.Second)
		defer cancel()
		argv := append([]string{"--kubeconfig", c.env.Kubeconfig}, args...)
		out, err := exec.CommandContext(ctx, filepath.Join(c.env.BinDir, kubeenv.BinKubectl), argv...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}
	if holds := holdsOn(t, c.nodes["kn1"]); len(holds) == 0 {
		t.Fatal("no z8r hold on kn1 before the uninstall: nothing to show released")
	} else {
		t.Logf("holds before the uninstall on kn1: %s; on kn2: %v", strings.Join(holds, ", "), holdsOn(t, c.nodes["kn2"]))
	}

	// Step 1, while the controller runs.
	began := time.Now()
	for _, args := range [][]string{
		{"annotate", "node", "--all", "z8r.dev/master-", "z8r.dev/replica-",
			"zfs.replication.takutakahashi.dev/master-", "zfs.replication.takutakahashi.dev/replica-"},
		{"delete", "datasetreplications", "--all"},
	} {
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), strings.TrimSpace(out))
	}
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, uninstallWithin, true, func(ctx context.Context) (bool, error) {
		out, err := kubectl("get", "datasetreplications")
		last = out
		return err == nil && strings.Contains(out, "No resources found"), nil
	})
	if err != nil {
		t.Fatalf("DatasetReplications left %s after step 1:\n%s", uninstallWithin, last)
	}
	t.Logf("step 1: no DatasetReplication left after %s", time.Since(began).Round(time.Millisecond))
	for _, n := range []string{"kn1", "kn2"} {
		if holds := holdsOn(t, c.nodes[n]); len(holds) > 0 {
			t.Errorf("z8r holds left on %s after the DatasetReplications went: %s", n, strings.Join(holds, ", "))
		}
	}

	// Step 2: kubectl delete -k, which waits until each object is gone.
	began = time.Now()
	out, err := kubectl("delete", "-k", c.overlay, "--timeout="+uninstallWithin.String())
	t.Logf("kubectl delete -k %s (%s):\n%s", c.overlay, time.Since(began).Round(time.Millisecond), strings.TrimSpace(out))
	if err != nil {
		t.Errorf("%v", err)
	}
	// Step 3: the labels.
	labelArgs := []string{"label", "node", "--all", "z8r.dev/replication-", "zfs.replication.takutakahashi.dev-", agentNodeLabel + "-"}
	if out, err := kubectl(labelArgs...); err != nil {
		t.Errorf("%v: %s", err, out)
	}

	// Nothing stuck: every rendered object gone, the namespace included.
	for _, o := range c.objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		err := c.env.Client.Get(ctx, client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, got)
		if !gone(err) {
			t.Errorf("%s %s left after kubectl delete -k (finalizers %v, deletion %v): %v", o.GetKind(), o.GetName(), got.GetFinalizers(), got.GetDeletionTimestamp(), err)
		}
	}
	var zns z8rv1.Z8RNodeList
	if err := c.env.Client.List(ctx, &zns); (err != nil && !gone(err)) || len(zns.Items) > 0 {
		t.Errorf("Z8RNodes left: %d (%v)", len(zns.Items), err)
	}
	var drs z8rv1.DatasetReplicationList
	if err := c.env.Client.List(ctx, &drs); (err != nil && !gone(err)) || len(drs.Items) > 0 {
		t.Errorf("DatasetReplications left: %d (%v)", len(drs.Items), err)
	}
	// No orphan of z8r's among the cluster-wide objects, rendered or not.
	var leftovers []string
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinitionList"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleList"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBindingList"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicyList"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicyBindingList"},
	} {
		var l unstructured.UnstructuredList
		l.SetGroupVersionKind(gvk)
		if err := c.env.Client.List(ctx, &l); err != nil {
			t.Fatal(err)
		}
		for _, o := range l.Items {
			if strings.Contains(o.GetName(), "z8r") || o.GetLabels()["app.kubernetes.io/name"] == "z8r" {
				leftovers = append(leftovers, strings.TrimSuffix(gvk.Kind, "List")+" "+o.GetName())
			}
		}
	}
	if len(leftovers) > 0 {
		t.Errorf("z8r objects left after the uninstall: %s", strings.Join(leftovers, ", "))
	}
	for _, n := range []string{"kn1", "kn2"} {
		var node corev1.Node
		if err := c.env.Client.Get(ctx, client.ObjectKey{Name: n}, &node); err != nil {
			t.Fatal(err)
		}
		for k := range node.Labels {
			if strings.HasPrefix(k, "z8r.dev/") || strings.HasPrefix(k, "zfs.replication.takutakahashi.dev") || k == agentNodeLabel {
				t.Errorf("node %s keeps the label %s after step 3", n, k)
			}
		}
		for k := range node.Annotations {
			if strings.HasPrefix(k, "z8r.dev/") || strings.HasPrefix(k, "zfs.replication.takutakahashi.dev") {
				t.Errorf("node %s keeps the annotation %s after step 1", n, k)
			}
		}
		if holds := holdsOn(t, c.nodes[n]); len(holds) > 0 {
			t.Errorf("z8r holds left on %s after the uninstall: %s", n, strings.Join(holds, ", "))
		}
	}

	// The user's data: each source dataset's file unchanged on kn1, each
	// replica still there on kn2 with its snapshots, its clone's file the
	// same.
	for _, fs := range slices.Sorted(maps.Keys(c.kept)) {
		want := c.kept[fs]
		if got := sha256In(t, c.nodes["kn1"], filepath.Join(c.nodes["kn1"].Dir, "zfs", "mnt", fs, "file")); got != want {
			t.Errorf("kn1's %s file has SHA-256 %s after the uninstall, want %s", fs, got, want)
		}
		out, err := c.nodes["kn2"].Exec(ctx, "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", fs)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Errorf("kn2's replica %s has no snapshot after the uninstall: %q (%v)", fs, out, err)
		}
		clone := c.clones[fs]
		mnt := filepath.Join(c.nodes["kn2"].Dir, "zfs", "mnt", strings.ReplaceAll(clone, "/", "-"), "file")
		if got := sha256In(t, c.nodes["kn2"], mnt); got != want {
			t.Errorf("kn2's %s (clone of %s) file has SHA-256 %s after the uninstall, want %s", clone, fs, got, want)
		}
	}
}

// holdsOn lists node n's snapshots that have user holds, as "name(count)".
// zfs-fuse's `zfs holds` does not work; userrefs counts the holds. Every
// hold in the test bed's pools is z8r's.
func holdsOn(t *testing.T, n *kubenode.Node) []string {
	t.Helper()
	out, err := n.Exec(context.Background(), "zfs", "list", "-H", "-o", "name,userrefs", "-t", "snapshot", "-r", "tank")
	if err != nil {
		t.Fatalf("zfs list on %s: %v", n.Name, err)
	}
	var held []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "0" {
			held = append(held, f[0]+"("+f[1]+")")
		}
	}
	return held
}

// gone reports whether err is what reading an object, or listing a kind,
// that no longer exists returns: not found, or no such kind any more.
func gone(err error) bool {
	var noMatch *meta.NoKindMatchError
	return err != nil && (apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || errors.As(err, &noMatch))
}
