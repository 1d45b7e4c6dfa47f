//go:build pods

package kubenode_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
)

// What the VolumeSnapshot test uses and how long it waits.
const (
	// volumeSnapshotClassFile is the class a user applies after the
	// snapshot-controller (docs/install.md): driver zfs.z8r.dev,
	// deletionPolicy Delete.
	volumeSnapshotClassFile = "deploy/volumesnapshotclass.yaml"
	volumeSnapshotClass     = "z8r-zfs"
	snapshotWithin          = 60 * time.Second
)

// TestNodes_VolumeSnapshotThroughSnapshotControllerPod installs z8r from
// deploy/ through the overlay on a kubelet node with a zfs-fuse pool tank,
// and the upstream snapshot-controller as a cluster administrator does: a
// Deployment in kube-system (the test bed's manifests in
// kubenode.SnapshotControllerDir, leader election on, its own
// ServiceAccount and RBAC), its image the static binary make kube-tools
// built. The control plane runs no snapshot-controller of its own. Then
// deploy/volumesnapshotclass.yaml is applied and a VolumeSnapshot of a PVC
// bound to a zfs.z8r.dev PV (dataset tank/vol on kn1) is created: it must
// turn readyToUse with the ZFS snapshot its content's snapshotHandle names
// present in kn1's pool (read through the node's zfs-fuse); the
// snapshot-controller pod holds its Lease and its log names the content.
// Deleted (deletionPolicy Delete), the VolumeSnapshot and its content go
// and so does the ZFS snapshot, the dataset and its file staying.
func TestNodes_VolumeSnapshotThroughSnapshotControllerPod(t *testing.T) {
	ctx := context.Background()
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := buildImages(t)
	began := time.Now()
	scArchive, err := kubenode.BuildSnapshotControllerImage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot-controller image built in %s", time.Since(began).Round(time.Millisecond))
	imgs := &kubenode.Images{PauseBinary: base.PauseBinary, Archives: maps.Clone(base.Archives)}
	imgs.Archives[kubenode.SnapshotControllerRef] = scArchive

	began = time.Now()
	d := kubenode.StartDeployed(t, kubenode.DeployedOptions{
		Nodes: []string{"kn1"}, Images: imgs, SnapshotController: true,
		Log: func(msg string) { t.Log(msg) },
	})
	env, kn1 := d.Env, d.Nodes["kn1"]
	t.Logf("z8r and the snapshot-controller Ready through pods in %s", time.Since(began).Round(time.Millisecond))
	if out, err := d.Kubectl(ctx, "get", "pods", "-A", "-o", "wide"); err == nil {
		t.Logf("kubectl get pods -A -o wide:\n%s", out)
	}

	// The snapshot-controller that runs is the pod: none on the host, and
	// the pod holds the Lease.
	procs, err := env.Processes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Name == kubeenv.BinSnapshotController {
			t.Fatalf("the control plane runs a snapshot-controller of its own (pid %d)", p.PID)
		}
	}
	scPods, err := kubenode.WaitReadyPods(ctx, env, kubenode.SnapshotControllerNamespace, kubenode.SnapshotControllerSelector, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	scPod := scPods[0]
	if scPod.Spec.HostNetwork || scPod.Spec.ServiceAccountName != kubenode.SnapshotControllerName {
		t.Errorf("snapshot-controller pod %s: hostNetwork %v, service account %q; want the pod network and its own account",
			scPod.Name, scPod.Spec.HostNetwork, scPod.Spec.ServiceAccountName)
	}
	var lease coordinationv1.Lease
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: kubenode.SnapshotControllerNamespace, Name: kubenode.SnapshotControllerLease}, &lease); err != nil {
			return false, nil
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "") == scPod.Name, nil
	})
	if err != nil {
		t.Fatalf("Lease %s/%s not held by the pod %s: %+v", kubenode.SnapshotControllerNamespace, kubenode.SnapshotControllerLease, scPod.Name, lease.Spec)
	}
	t.Logf("snapshot-controller pod %s on %s (pod IP %s) holds its Lease", scPod.Name, scPod.Spec.NodeName, scPod.Status.PodIP)

	// A z8r-backed volume: tank/vol on kn1 with a file, a zfs.z8r.dev PV
	// and a PVC bound to it.
	const dataset = "tank/vol"
	if _, err := kn1.Exec(ctx, "zfs", "create", dataset); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(kn1.Dir, "zfs", "mnt", dataset, "file")
	if _, err := kn1.Exec(ctx, "dd", "if=/dev/urandom", "of="+file, "bs=64k", "count=4"); err != nil {
		t.Fatal(err)
	}
	sum := sha256In(t, kn1, file)
	ns := env.CreateNamespace(t, "shop")
	pv := kubeenv.Z8rPV("pv-vol", "kn1", dataset, "1Gi")
	env.CreateBound(t, pv, kubeenv.PVCFor(pv, ns, "data"))

	b, err := os.ReadFile(filepath.Join(root, volumeSnapshotClassFile))
	if err != nil {
		t.Fatal(err)
	}
	class := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &class.Object); err != nil {
		t.Fatalf("%s: %v", volumeSnapshotClassFile, err)
	}
	if err := kubenode.Apply(ctx, env.Client, "z8r-testbed", []*unstructured.Unstructured{class}); err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	env.Create(t, kubeenv.VolumeSnapshot(ns, "before-upgrade", volumeSnapshotClass, "data"))
	var vs snapshotv1.VolumeSnapshot
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, snapshotWithin, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "before-upgrade"}, &vs); err != nil {
			last = err.Error()
			return false, nil
		}
		if vs.Status == nil {
			last = "no status"
			return false, nil
		}
		last = vsStatus(vs.Status)
		return ptr.Deref(vs.Status.ReadyToUse, false), nil
	})
	if err != nil {
		logPodTail(t, d, scPod.Spec.NodeName, kubenode.SnapshotControllerNamespace, scPod.Name, kubenode.SnapshotControllerName)
		t.Fatalf("VolumeSnapshot %s/before-upgrade not readyToUse after %s: %s", ns, snapshotWithin, last)
	}
	contentName := ptr.Deref(vs.Status.BoundVolumeSnapshotContentName, "")
	t.Logf("VolumeSnapshot readyToUse in %s, content %s", time.Since(began).Round(time.Millisecond), contentName)
	if want := "snapcontent-" + string(vs.UID); contentName != want {
		t.Errorf("bound content %q, want %q (the snapshot-controller's name for it)", contentName, want)
	}
	var content snapshotv1.VolumeSnapshotContent
	if err := env.Client.Get(ctx, client.ObjectKey{Name: contentName}, &content); err != nil {
		t.Fatal(err)
	}
	handle := ""
	if content.Status != nil {
		handle = ptr.Deref(content.Status.SnapshotHandle, "")
	}
	if want := dataset + "@snapshot-" + string(vs.UID); handle != want {
		t.Errorf("content %s snapshotHandle %q, want %q", contentName, handle, want)
	}
	if content.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
		t.Errorf("content %s deletionPolicy %q, want Delete (the class's)", contentName, content.Spec.DeletionPolicy)
	}
	if !zfsSnapshotExists(t, kn1, handle) {
		t.Fatalf("kn1's zfs-fuse lists no snapshot %s", handle)
	}
	t.Logf("kn1's zfs-fuse has %s", handle)
	logs, err := d.Nodes[scPod.Spec.NodeName].PodLogs(kubenode.SnapshotControllerNamespace, scPod.Name, kubenode.SnapshotControllerName)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, contentName) {
		t.Errorf("the snapshot-controller pod's log never names %s:\n%s", contentName, tailString(logs, 20))
	}

	// Deleted: deletionPolicy Delete takes the ZFS snapshot with it.
	began = time.Now()
	if err := env.Client.Delete(ctx, &vs); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, snapshotWithin, true, func(ctx context.Context) (bool, error) {
		vsErr := env.Client.Get(ctx, client.ObjectKeyFromObject(&vs), &snapshotv1.VolumeSnapshot{})
		cErr := env.Client.Get(ctx, client.ObjectKey{Name: contentName}, &snapshotv1.VolumeSnapshotContent{})
		last = "VolumeSnapshot: " + errText(vsErr) + "; content: " + errText(cErr)
		return apierrors.IsNotFound(vsErr) && apierrors.IsNotFound(cErr), nil
	})
	if err != nil {
		logPodTail(t, d, scPod.Spec.NodeName, kubenode.SnapshotControllerNamespace, scPod.Name, kubenode.SnapshotControllerName)
		t.Fatalf("VolumeSnapshot and content not gone %s after the delete: %s", snapshotWithin, last)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return !zfsSnapshotExists(t, kn1, handle), nil
	})
	if err != nil {
		t.Fatalf("%s still on kn1 after its VolumeSnapshot and content were deleted", handle)
	}
	t.Logf("VolumeSnapshot, content and %s gone in %s", handle, time.Since(began).Round(time.Millisecond))
	if got := sha256In(t, kn1, file); got != sum {
		t.Errorf("%s's file has SHA-256 %s after the snapshot's deletion, want %s", dataset, got, sum)
	}
}

// zfsSnapshotExists says whether node n's zfs lists the snapshot name.
func zfsSnapshotExists(t *testing.T, n *kubenode.Node, name string) bool {
	t.Helper()
	ds, _, _ := strings.Cut(name, "@")
	out, err := n.Exec(context.Background(), "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", ds)
	if err != nil {
		t.Fatalf("zfs list on %s: %v: %s", n.Name, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == name {
			return true
		}
	}
	return false
}

func vsStatus(s *snapshotv1.VolumeSnapshotStatus) string {
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}

func errText(err error) string {
	if err == nil {
		return "present"
	}
	return err.Error()
}

// logPodTail logs the end of a container's log on node.
func logPodTail(t *testing.T, d *kubenode.Deployed, node, ns, pod, container string) {
	t.Helper()
	n := d.Nodes[node]
	if n == nil {
		return
	}
	if logs, err := n.PodLogs(ns, pod, container); err == nil {
		t.Logf("%s/%s log:\n%s", ns, pod, tailString(logs, 40))
	}
}
