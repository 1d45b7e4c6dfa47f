//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// labelledNamespace creates a namespace with a generated name and labels.
func labelledNamespace(t *testing.T, c *cluster.Cluster, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	c.Kube.Create(t, ns)
	return ns.Name
}

// scopePolicy creates a ReplicationTargetPolicy; targets are NODE:PARENT.
func scopePolicy(t *testing.T, c *cluster.Cluster, name string, sel metav1.LabelSelector, targets ...string) {
	t.Helper()
	p := &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: z8rv1.ReplicationTargetPolicySpec{NamespaceSelector: sel}}
	for _, s := range targets {
		node, parent, _ := strings.Cut(s, ":")
		p.Spec.Targets = append(p.Spec.Targets, z8rv1.AllowedTarget{Node: node, ParentDataset: parent})
	}
	c.Kube.Create(t, p)
}

// problemOf returns an object's z8r.dev/annotation-problem.
func problemOf(t *testing.T, c *cluster.Cluster, obj client.Object) string {
	t.Helper()
	if err := c.Kube.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	return obj.GetAnnotations()[policy.AnnProblem]
}

// problemSays waits up to a minute for obj's policy.AnnProblem to contain
// want and reports whether it did. The reconcilers record the Event
// before they write the annotation, so a test that has just seen the
// Event must wait for the annotation too.
func problemSays(t *testing.T, c *cluster.Cluster, obj client.Object, want string) (last string, ok bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		last = problemOf(t, c, obj)
		return strings.Contains(last, want), nil
	})
	return last, err == nil
}

// noZFSAbout fails if the node's agent ran any command naming s, or s
// exists on the node.
func noZFSAbout(t *testing.T, c *cluster.Cluster, logs map[string]string, node, s string) {
	t.Helper()
	if cmds := commandsNaming(t, logs[node], s); len(cmds) > 0 {
		t.Errorf("agent on %s ran %v", node, cmds)
	}
	if exists(t, c.Nodes[node], s) {
		t.Errorf("%s exists on %s", s, node)
	}
}

// TestTenantScope_AllowedTargetReplicates: a VolumeSnapshot asks for two
// replicas; the policy selecting its namespace allows the one under
// n2:tank/replicas, which is made; the other (n2:tank/elsewhere/...) is
// refused with a TargetNotAllowed Warning naming it, recorded in the
// VolumeSnapshot's z8r.dev/annotation-problem, and nothing about it runs
// on any node; the content records only the allowed target.
func TestTenantScope_AllowedTargetReplicates(t *testing.T) {
	c, logs := startSnapshotClusterScoped(t, cluster.Options{}, false, "n1", "n2")
	mkdata(t, c.Nodes["n1"], "tank/vol", "payload", 64<<10)
	ns := labelledNamespace(t, c, "allowed", map[string]string{"team": "a"})
	scopePolicy(t, c, "team-a", metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}, "n2:tank/replicas")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), nil)
	vs := newVS(ns, "s1", "z8r", "vol", map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/replicas/,n2:tank/elsewhere/"})
	c.Kube.Create(t, vs)
	vs = waitVS(t, c, ns, "s1", "s1 ready", vsReady)
	vc := waitContent(t, c, contentPrefix+string(vs.UID), "s1 replicated under tank/replicas", replicated("n2", "tank/replicas/vol"))
	if got := vc.Annotations[z8rv1.AnnotationReplicateTo]; got != "n2:tank/replicas/vol" {
		t.Errorf("content's %s = %q, want only the allowed target", z8rv1.AnnotationReplicateTo, got)
	}
	if !exists(t, c.Nodes["n2"], "tank/replicas/vol@snapshot-"+string(vs.UID)) {
		t.Error("the allowed replica is not on n2")
	}
	note := waitEvent(t, c, "s1", "Warning "+z8rv1.EventTargetNotAllowed+": ", func(string) bool { return true })
	if !strings.Contains(note, "n2:tank/elsewhere/vol") || strings.Contains(note, "n2:tank/replicas/vol") {
		t.Errorf("refusal %q: want it to name the refused target only", note)
	}
	if p, ok := problemSays(t, c, vs, "n2:tank/elsewhere/vol"); !ok {
		t.Errorf("VolumeSnapshot's %s = %q, want the refusal", policy.AnnProblem, p)
	}
	noZFSAbout(t, c, logs, "n2", "tank/elsewhere")
}

// TestTenantScope_OutsideEveryPolicyRefused: without any
// ReplicationTargetPolicy, a CSI PVC's replicate-to is refused for its
// VolumeSnapshot (Warnings on the VolumeSnapshot and the PVC, the PVC's
// annotation-problem), and a local PVC's is refused without any
// DatasetReplication; nothing about either runs on the target node. The
// snapshot itself is still taken.
func TestTenantScope_OutsideEveryPolicyRefused(t *testing.T) {
	c, logs := startSnapshotClusterScoped(t, cluster.Options{}, false, "n1", "n2")
	ctx := ctxT(t)
	mkdata(t, c.Nodes["n1"], "tank/vol", "payload", 64<<10)
	mkdata(t, c.Nodes["n1"], "tank/local", "payload", 64<<10)
	ns := c.Kube.CreateNamespace(t, "nopolicy")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	pvc := bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/copies/"})
	local := kubeenv.LocalPV("pv-local", "n1", "/unused", "1Gi")
	local.Annotations = map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/local"}
	lpvc := bindPVC(t, c, ns, "local", local, map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/copies/"})

	c.Kube.Create(t, newVS(ns, "s1", "z8r", "vol", nil))
	vs := waitVS(t, c, ns, "s1", "s1 ready", vsReady)
	for _, obj := range []string{"s1", "vol", "local"} {
		note := waitEvent(t, c, obj, "Warning "+z8rv1.EventTargetNotAllowed+": ", func(string) bool { return true })
		if !strings.Contains(note, "n2:tank/copies/") || !strings.Contains(note, "no ReplicationTargetPolicy exists") {
			t.Errorf("%s: refusal %q: want the target and the reason", obj, note)
		}
	}
	poll(t, "the PVCs' annotation problems", 30*time.Second, func(context.Context) (bool, error) {
		return strings.Contains(problemOf(t, c, pvc), "n2:tank/copies/vol") && strings.Contains(problemOf(t, c, lpvc), "n2:tank/copies/local"), nil
	}, func() any { return []string{problemOf(t, c, pvc), problemOf(t, c, lpvc)} })
	time.Sleep(2 * time.Second) // give a wrong replication time to start
	vc := waitContent(t, c, contentPrefix+string(vs.UID), "the content", contentReady)
	if v, ok := vc.Annotations[z8rv1.AnnotationReplicateTo]; ok {
		t.Errorf("content stamped with %s=%q though every target was refused", z8rv1.AnnotationReplicateTo, v)
	}
	for _, n := range []string{controllers.PVCReplicationName(ns, "local"), "pvc-" + policy.ID(ns, "local")} {
		var dr z8rv1.DatasetReplication
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: n}, &dr); !apierrors.IsNotFound(err) {
			t.Errorf("DatasetReplication %s for a refused local PVC: %v", n, err)
		}
	}
	noZFSAbout(t, c, logs, "n2", "tank/copies")
}

// TestTenantScope_SelectorNotMatchingDoesNotAllow: a policy that allows
// the target but selects other namespaces does not allow it; once the
// namespace carries the selected label, the next VolumeSnapshot's replica
// is made.
func TestTenantScope_SelectorNotMatchingDoesNotAllow(t *testing.T) {
	c, logs := startSnapshotClusterScoped(t, cluster.Options{}, false, "n1", "n2")
	ctx := ctxT(t)
	mkdata(t, c.Nodes["n1"], "tank/vol", "payload", 64<<10)
	ns := labelledNamespace(t, c, "team-b", map[string]string{"team": "b"})
	scopePolicy(t, c, "team-a", metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}, "n2:tank")
	c.Kube.Create(t, kubeenv.VolumeSnapshotClass("z8r", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete))
	bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), nil)
	ask := map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/copies/"}

	c.Kube.Create(t, newVS(ns, "s1", "z8r", "vol", ask))
	vs1 := waitVS(t, c, ns, "s1", "s1 ready", vsReady)
	note := waitEvent(t, c, "s1", "Warning "+z8rv1.EventTargetNotAllowed+": ", func(string) bool { return true })
	if !strings.Contains(note, "no ReplicationTargetPolicy selects namespace "+ns) {
		t.Errorf("refusal %q: want it to say no policy selects the namespace", note)
	}
	time.Sleep(2 * time.Second)
	noZFSAbout(t, c, logs, "n2", "tank/copies")
	vc1 := waitContent(t, c, contentPrefix+string(vs1.UID), "s1's content", contentReady)
	if v, ok := vc1.Annotations[z8rv1.AnnotationReplicateTo]; ok {
		t.Errorf("s1's content stamped with %s=%q though its target was refused", z8rv1.AnnotationReplicateTo, v)
	}

	var n corev1.Namespace
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Labels["team"] = "a"
	if err := c.Kube.Client.Patch(ctx, &n, patch); err != nil {
		t.Fatal(err)
	}
	c.Kube.Create(t, newVS(ns, "s2", "z8r", "vol", ask))
	vs2 := waitVS(t, c, ns, "s2", "s2 ready", vsReady)
	waitContent(t, c, contentPrefix+string(vs2.UID), "s2 replicated once the namespace is selected", replicated("n2", "tank/copies/vol"))
	if p := problemOf(t, c, vs2); p != "" {
		t.Errorf("s2 has the problem %q", p)
	}
}

// TestTenantScope_EmptyValueKeepsClassCopies: the class requires a
// replica (an administrator's target, which needs no policy); a
// VolumeSnapshot with an empty replicate-to gets an
// EmptyReplicationAnnotation Warning and its annotation-problem, and the
// class's replica is made all the same.
func TestTenantScope_EmptyValueKeepsClassCopies(t *testing.T) {
	c, _ := startSnapshotClusterScoped(t, cluster.Options{}, false, "n1", "n2")
	mkdata(t, c.Nodes["n1"], "tank/vol", "payload", 64<<10)
	ns := c.Kube.CreateNamespace(t, "empty")
	class := kubeenv.VolumeSnapshotClass("z8r-copies", z8rv1.DriverName, snapshotv1.VolumeSnapshotContentDelete)
	class.Annotations = map[string]string{z8rv1.AnnotationReplicateTo: "n2:tank/classcopies/"}
	c.Kube.Create(t, class)
	bindPVC(t, c, ns, "vol", kubeenv.Z8rPV("pv-vol", "n1", "tank/vol", "1Gi"), nil)
	vs := newVS(ns, "s1", "z8r-copies", "vol", map[string]string{z8rv1.AnnotationReplicateTo: ""})
	c.Kube.Create(t, vs)
	vs = waitVS(t, c, ns, "s1", "s1 ready", vsReady)
	waitContent(t, c, contentPrefix+string(vs.UID), "the class's replica made", replicated("n2", "tank/classcopies/vol"))
	note := waitEvent(t, c, "s1", "Warning "+z8rv1.EventEmptyAnnotation+": ", func(string) bool { return true })
	if !strings.Contains(note, "remove the annotation") {
		t.Errorf("empty-value warning %q: want it to say how to ask for nothing", note)
	}
	if p, ok := problemSays(t, c, vs, "is empty"); !ok {
		t.Errorf("VolumeSnapshot's %s = %q, want the empty-value problem", policy.AnnProblem, p)
	}
}

// TestTenantScope_ReplicationNameCollisionRefused: a DatasetReplication
// another PVC owns sits under the name computed for this PVC (made by
// hand); this PVC gets a ReplicationNameTaken Warning and its
// annotation-problem, and the other object is neither changed nor, when
// this PVC stops asking, deleted.
func TestTenantScope_ReplicationNameCollisionRefused(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{}, "n1", "n2")
	ctx := ctxT(t)
	ns := c.Kube.CreateNamespace(t, "collide")
	name := controllers.PVCReplicationName(ns, "data")
	other := &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{z8rv1.LabelManagedBy: "pvc-annotations", z8rv1.LabelPVCUID: "other-uid"},
			Annotations: map[string]string{"z8r.dev/pvc": "elsewhere/theirs", "z8r.dev/pv": "pv-theirs"}},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/theirs"}, Suspend: true,
			Targets: []z8rv1.ReplicationTarget{{Node: "n2", Dataset: "tank/theirs"}}},
	}
	c.Kube.Create(t, other)
	var before z8rv1.DatasetReplication
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &before); err != nil {
		t.Fatal(err)
	}

	pv := kubeenv.LocalPV("pv-data", "n1", "/unused", "1Gi")
	pv.Annotations = map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/data"}
	pvc := bindPVC(t, c, ns, "data", pv, map[string]string{z8rv1.AnnotationReplicateTo: "n2", z8rv1.AnnotationSchedule: "1h"})
	note := waitEvent(t, c, "data", "Warning "+z8rv1.EventReplicationNameTaken+": ", func(string) bool { return true })
	if !strings.Contains(note, name) || !strings.Contains(note, "elsewhere/theirs") {
		t.Errorf("warning %q: want the name and its owner", note)
	}
	if p, ok := problemSays(t, c, pvc, name); !ok {
		t.Errorf("PVC's %s = %q, want the collision", policy.AnnProblem, p)
	}

	// The PVC stops asking: the other's object is not deleted either.
	var cur corev1.PersistentVolumeClaim
	if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(pvc), &cur); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cur.DeepCopy())
	delete(cur.Annotations, z8rv1.AnnotationReplicateTo)
	delete(cur.Annotations, z8rv1.AnnotationSchedule)
	if err := c.Kube.Client.Patch(ctx, &cur, patch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // give a wrong patch or delete time to happen
	var after z8rv1.DatasetReplication
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &after); err != nil {
		t.Fatalf("the other PVC's DatasetReplication: %v", err)
	}
	if after.UID != before.UID || after.Generation != before.Generation || after.DeletionTimestamp != nil ||
		after.Annotations["z8r.dev/pvc"] != "elsewhere/theirs" || after.Labels[z8rv1.LabelPVCUID] != "other-uid" {
		t.Errorf("the other PVC's DatasetReplication changed: before %+v, after %+v", before.ObjectMeta, after.ObjectMeta)
	}
}

// TestTenantScope_LegacyNameKept: a PVC's DatasetReplication made by an
// earlier version under the 32-bit name keeps working under that name
// (its snapshots are owned under it): a change of the PVC's annotations
// patches it, no second one is created under the new name, and removing
// the annotations deletes it.
func TestTenantScope_LegacyNameKept(t *testing.T) {
	c, _ := startSnapshotCluster(t, cluster.Options{}, "n1", "n2")
	ctx := ctxT(t)
	mkdata(t, c.Nodes["n1"], "tank/data", "payload", 64<<10)
	ns := c.Kube.CreateNamespace(t, "legacy")
	pv := kubeenv.LocalPV("pv-data", "n1", "/unused", "1Gi")
	pv.Annotations = map[string]string{z8rv1.AnnotationNode: "n1", z8rv1.AnnotationDataset: "tank/data"}
	legacy := "pvc-" + policy.ID(ns, "data")
	pvc := kubeenv.PVCFor(pv, ns, "data")
	pvc.Annotations = map[string]string{z8rv1.AnnotationReplicateTo: "n2", z8rv1.AnnotationSchedule: "1h"}
	// Made the way the earlier version made it, before the PVC is bound.
	c.Kube.Create(t, &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: legacy,
			Labels:      map[string]string{z8rv1.LabelManagedBy: "pvc-annotations"},
			Annotations: map[string]string{"z8r.dev/pvc": ns + "/data", "z8r.dev/pv": "pv-data"}},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/data"}, Schedule: "1h",
			Targets: []z8rv1.ReplicationTarget{{Node: "n2", Dataset: "tank/data"}}},
	})
	c.Kube.CreateBound(t, pv, pvc)
	waitFor(t, c, legacy, "the legacy replication relabelled for the PVC", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Labels[z8rv1.LabelPVCUID] == string(pvc.UID)
	})
	var cur corev1.PersistentVolumeClaim
	if err := c.Kube.Client.Get(ctx, client.ObjectKeyFromObject(pvc), &cur); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Annotations[z8rv1.AnnotationSchedule] = "2h"
	if err := c.Kube.Client.Patch(ctx, &cur, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, legacy, "the legacy replication patched", time.Minute, func(dr *z8rv1.DatasetReplication) bool {
		return dr.Spec.Schedule == "2h"
	})
	var dr z8rv1.DatasetReplication
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: controllers.PVCReplicationName(ns, "data")}, &dr); !apierrors.IsNotFound(err) {
		t.Errorf("a second DatasetReplication under the new name: %v", err)
	}
	patch = client.MergeFrom(cur.DeepCopy())
	delete(cur.Annotations, z8rv1.AnnotationReplicateTo)
	delete(cur.Annotations, z8rv1.AnnotationSchedule)
	if err := c.Kube.Client.Patch(ctx, &cur, patch); err != nil {
		t.Fatal(err)
	}
	poll(t, "the legacy replication deleted", time.Minute, func(ctx context.Context) (bool, error) {
		err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: legacy}, &dr)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}, func() any { return dr.ObjectMeta })
}
