//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// startSnapshotCluster starts nodes (each with pool tank) with agents that
// log their commands, the real snapshot-controller and z8r's controller,
// and waits for the agents. Tenants of every namespace may ask for
// replicas anywhere under tank on these nodes (allowTenantTargets).
func startSnapshotCluster(t *testing.T, opts cluster.Options, nodes ...string) (*cluster.Cluster, map[string]string) {
	t.Helper()
	return startSnapshotClusterScoped(t, opts, true, nodes...)
}

// startSnapshotClusterScoped is startSnapshotCluster; allowTank says
// whether the ReplicationTargetPolicy allowing tank on every node is made.
func startSnapshotClusterScoped(t *testing.T, opts cluster.Options, allowTank bool, nodes ...string) (*cluster.Cluster, map[string]string) {
	t.Helper()
	logs := map[string]string{}
	dir := t.TempDir()
	for _, n := range nodes {
		logs[n] = filepath.Join(dir, n+"-commands.log")
		opts.Nodes = append(opts.Nodes, cluster.NodeSpec{Name: n, AgentArgs: []string{"--command-log", logs[n]}})
	}
	opts.SnapshotController = true
	c := cluster.Start(t, opts)
	if allowTank {
		allowTenantTargets(t, c, "tank", nodes...)
	}
	c.StartController()
	if err := c.WaitZ8RNodesReady(ctxT(t), time.Minute); err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// bindPVC creates pv and a PVC named name in ns bound to it, with
// annotations.
func bindPVC(t *testing.T, c *cluster.Cluster, ns, name string, pv *corev1.PersistentVolume, ann map[string]string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := kubeenv.PVCFor(pv, ns, name)
	pvc.Annotations = ann
	c.Kube.CreateBound(t, pv, pvc)
	return pvc
}

func newVS(ns, name, class, pvc string, ann map[string]string) *snapshotv1.VolumeSnapshot {
	vs := kubeenv.VolumeSnapshot(ns, name, class, pvc)
	vs.Annotations = ann
	return vs
}

// poll waits for cond, failing the test with what last describes.
func poll(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error), last func() any) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v\nlast: %+v", what, err, last())
	}
}

// waitVS waits until cond holds for the VolumeSnapshot.
func waitVS(t *testing.T, c *cluster.Cluster, ns, name, what string, cond func(*snapshotv1.VolumeSnapshot) bool) *snapshotv1.VolumeSnapshot {
	t.Helper()
	vs := &snapshotv1.VolumeSnapshot{}
	poll(t, what, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return cond(vs), nil
	}, func() any { return describeVS(c, vs) })
	return vs
}

// waitVSGone waits until the VolumeSnapshot no longer exists.
func waitVSGone(t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	poll(t, "VolumeSnapshot "+name+" to go", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := c.Kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &snapshotv1.VolumeSnapshot{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}, func() any { return eventsOf(t, c, name) })
}

func describeVS(c *cluster.Cluster, vs *snapshotv1.VolumeSnapshot) any {
	ev, _ := c.Events(context.Background(), vs.Name)
	return struct {
		Status any
		Events []string
	}{vs.Status, ev}
}

func vsReady(vs *snapshotv1.VolumeSnapshot) bool {
	return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
}

func vsError(vs *snapshotv1.VolumeSnapshot) string {
	if vs.Status == nil || vs.Status.Error == nil || vs.Status.Error.Message == nil {
		return ""
	}
	return *vs.Status.Error.Message
}

// waitContent waits until cond holds for the content (nil: it is gone).
func waitContent(t *testing.T, c *cluster.Cluster, name, what string, cond func(*snapshotv1.VolumeSnapshotContent) bool) *snapshotv1.VolumeSnapshotContent {
	t.Helper()
	var last *snapshotv1.VolumeSnapshotContent
	poll(t, what, 2*time.Minute, func(ctx context.Context) (bool, error) {
		var vc snapshotv1.VolumeSnapshotContent
		err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &vc)
		if apierrors.IsNotFound(err) {
			last = nil
			return cond(nil), nil
		}
		if err != nil {
			return false, err
		}
		last = &vc
		return cond(&vc), nil
	}, func() any {
		ev, _ := c.Events(context.Background(), name)
		if last == nil {
			return struct{ Events []string }{ev}
		}
		return struct {
			Annotations map[string]string
			Finalizers  []string
			Spec        any
			Status      any
			Events      []string
		}{last.Annotations, last.Finalizers, last.Spec, last.Status, ev}
	})
	return last
}

func contentReady(vc *snapshotv1.VolumeSnapshotContent) bool { return vc != nil && volsnap.IsReady(vc) }

// replication returns a content's replication state for a target.
func replication(vc *snapshotv1.VolumeSnapshotContent, node, dataset string) volsnap.TargetState {
	if vc == nil {
		return volsnap.TargetState{}
	}
	s, _ := volsnap.ParseStatus(vc.Annotations[z8rv1.AnnotationReplicationStatus])
	ts, _ := s.Get(volsnap.Target{Node: node, Dataset: dataset})
	return ts
}

func replicated(node, dataset string) func(*snapshotv1.VolumeSnapshotContent) bool {
	return func(vc *snapshotv1.VolumeSnapshotContent) bool {
		return replication(vc, node, dataset).State == volsnap.StateSynced
	}
}

func gone(vc *snapshotv1.VolumeSnapshotContent) bool { return vc == nil }

// snapProps reads properties of a snapshot on a node (nil if it does not
// exist).
func snapProps(t *testing.T, n *zfsnodes.Node, snap string, props ...string) map[string]string {
	t.Helper()
	p, err := n.ZFS().Get(context.Background(), snap, props...)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range p {
		out[k] = v.Value
	}
	return out
}

func exists(t *testing.T, n *zfsnodes.Node, name string) bool {
	t.Helper()
	ok, err := n.ZFS().Exists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// commands returns the argv the node's agent ran, one line each.
func commands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("command log %s: %v", path, err)
		}
		out = append(out, strings.Join(line.Argv, " "))
	}
	return out
}

// commandsNaming returns the logged commands that mention s.
func commandsNaming(t *testing.T, path, s string) []string {
	var out []string
	for _, c := range commands(t, path) {
		if strings.Contains(c, s) {
			out = append(out, c)
		}
	}
	return out
}

// deleteObj deletes obj, ignoring "not found".
func deleteObj(t *testing.T, c *cluster.Cluster, obj client.Object) {
	t.Helper()
	if err := c.Kube.Client.Delete(context.Background(), obj); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
}

// patchContent applies mutate to the content, retrying on conflicts.
func patchContent(t *testing.T, c *cluster.Cluster, name string, mutate func(*snapshotv1.VolumeSnapshotContent)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var vc snapshotv1.VolumeSnapshotContent
		if err := c.Kube.Client.Get(context.Background(), client.ObjectKey{Name: name}, &vc); err != nil {
			return err
		}
		mutate(&vc)
		return c.Kube.Client.Update(context.Background(), &vc)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func eventsOf(t *testing.T, c *cluster.Cluster, name string) []string {
	t.Helper()
	ev, err := c.Events(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// heldBy reports what is wrong ("" if nothing) with the holds on snap on
// n, which must be exactly tags. zfs-fuse's `zfs holds` is broken, so
// userrefs must count len(tags) and a hold with each tag must be refused
// because the tag is already there (a probe that did take a hold is
// released again at once).
func heldBy(t *testing.T, n *zfsnodes.Node, snap string, tags ...string) string {
	t.Helper()
	p := snapProps(t, n, snap, "userrefs")
	if p == nil {
		return snap + " does not exist"
	}
	if p["userrefs"] != fmt.Sprint(len(tags)) {
		return fmt.Sprintf("%s has userrefs %s, want %d (%v)", snap, p["userrefs"], len(tags), tags)
	}
	ctx := context.Background()
	for _, tag := range tags {
		err := n.ZFS().Hold(ctx, tag, snap)
		if err == nil {
			if rerr := n.ZFS().Release(ctx, tag, snap); rerr != nil {
				t.Fatal(rerr)
			}
			return fmt.Sprintf("%s is not held by %s", snap, tag)
		}
		if !errors.Is(err, zfsexec.ErrTagExists) {
			t.Fatalf("probe hold %s on %s: %v", tag, snap, err)
		}
	}
	return ""
}

// deferredOrGone checks a snapshot whose destroy z8r has asked for while
// it may still be held: it is gone, or it is still there marked
// defer_destroy=on and held by exactly tags (z8r's), so that it goes when
// they are released. present tells which.
func deferredOrGone(t *testing.T, n *zfsnodes.Node, snap string, tags ...string) (present bool) {
	t.Helper()
	p := snapProps(t, n, snap, "defer_destroy")
	if p == nil {
		return false
	}
	if p["defer_destroy"] != "on" {
		t.Errorf("%s still exists and is not marked for deferred destroy: %v", snap, p)
	}
	if msg := heldBy(t, n, snap, tags...); msg != "" {
		t.Errorf("deferred %s: %s", snap, msg)
	}
	return true
}

// allowTenantTargets creates a ReplicationTargetPolicy that lets tenants
// of every namespace ask for replicas strictly under parent on each node.
func allowTenantTargets(t *testing.T, c *cluster.Cluster, parent string, nodes ...string) {
	t.Helper()
	p := &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-allow-"}}
	for _, n := range nodes {
		p.Spec.Targets = append(p.Spec.Targets, z8rv1.AllowedTarget{Node: n, ParentDataset: parent})
	}
	c.Kube.Create(t, p)
}
