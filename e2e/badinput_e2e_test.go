//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// TestBadInput_NodeAnnotations: every rejected node annotation is visible.
// A 10,000-character dataset name in z8r.dev/master yields a Warning Event
// the apiserver accepted, its note shortened to the API's limit, and the
// problem in the node's z8r.dev/annotation-problem; an empty master value is
// an error (its own Warning), not "replicate nothing": the node's
// DatasetReplication is kept; a later, different problem of the same reason
// replaces the first in the annotation although its Event is folded into
// the first one; fixing the annotation removes the problem.
func TestBadInput_NodeAnnotations(t *testing.T) {
	on := map[string]string{policy.LabelZ8R: "true"}
	c := cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "node01", Labels: on, Annotations: map[string]string{policy.AnnMaster: "tank/a"}},
		{Name: "node02", Labels: on, Annotations: map[string]string{policy.AnnReplica: "tank/a"}},
	}})
	mkdata(t, c.Nodes["node01"], "tank/a", "payload", 1<<16)
	c.StartController()
	ctx := ctxT(t)
	repID := policy.ID("node01", "tank/a")
	dr := waitFor(t, c, repID, "the replication from the annotations", time.Minute,
		func(*z8rv1.DatasetReplication) bool { return true })
	uid := dr.UID

	// 1. A 10,000-character dataset name.
	long := "tank/" + strings.Repeat("x", 10000)
	setNodeAnnotation(t, c, "node01", policy.AnnMaster, long)
	note := waitEvent(t, c, "node01", "Warning "+z8rv1.EventInvalidAnnotation+": ", func(note string) bool {
		return strings.Contains(note, "bytes cut")
	})
	if len(note) > controllers.MaxEventNote || !strings.Contains(note, `node node01: z8r.dev/master="tank/xxx`) {
		t.Errorf("event note (%d bytes) %q: want at most %d bytes naming the node, key and value's head", len(note), note, controllers.MaxEventNote)
	}
	p := waitProblem(t, c, "node01", func(p string) bool { return strings.Contains(p, `z8r.dev/master="tank/xxx`) })
	if len(p) > controllers.MaxEventNote || !strings.Contains(p, "bytes cut") {
		t.Errorf("annotation problem (%d bytes) %q: want it shortened", len(p), p)
	}
	assertKept(t, c, repID, uid)

	// 2. An empty master: its own Warning, the replication kept.
	setNodeAnnotation(t, c, "node01", policy.AnnMaster, "")
	waitEvent(t, c, "node01", "Warning "+z8rv1.EventEmptyAnnotation+": ", func(note string) bool {
		return strings.Contains(note, policy.MsgEmpty)
	})
	p = waitProblem(t, c, "node01", func(p string) bool { return strings.Contains(p, policy.MsgEmpty) })
	if strings.Contains(p, "tank/xxx") {
		t.Errorf("annotation problem %q still names the previous problem", p)
	}
	time.Sleep(3 * time.Second) // give a wrong delete time to happen
	assertKept(t, c, repID, uid)

	// 3. A different malformed value of the same reason as step 1: its
	// Event may be folded into step 1's, the annotation says what is
	// wrong now.
	setNodeAnnotation(t, c, "node01", policy.AnnMaster, "tank/a,tank//b")
	p = waitProblem(t, c, "node01", func(p string) bool { return strings.Contains(p, `"tank//b"`) })
	if strings.Contains(p, "tank/xxx") || strings.Contains(p, policy.MsgEmpty) {
		t.Errorf("annotation problem %q still names an earlier problem", p)
	}
	ev, err := c.Events(ctx, "node01")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("events on node01 (aggregated by reason):\n%s", strings.Join(ev, "\n"))
	assertKept(t, c, repID, uid)

	// 4. Fixed: the problem is gone, the replication is the same one.
	setNodeAnnotation(t, c, "node01", policy.AnnMaster, "tank/a")
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: "node01"}, &n); err != nil {
			return false, err
		}
		_, has := n.Annotations[policy.AnnProblem]
		return !has, nil
	})
	if err != nil {
		t.Fatalf("annotation problem not removed after the fix: %v", err)
	}
	assertKept(t, c, repID, uid)
}

// setNodeAnnotation sets one annotation, keeping an empty value (unlike
// cluster.Annotate, which removes it).
func setNodeAnnotation(t *testing.T, c *cluster.Cluster, node, key, value string) {
	t.Helper()
	var n corev1.Node
	if err := c.Kube.Client.Get(context.Background(), client.ObjectKey{Name: node}, &n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Annotations[key] = value
	if err := c.Kube.Client.Patch(context.Background(), &n, patch); err != nil {
		t.Fatal(err)
	}
}

// waitEvent waits for an Event about obj whose line starts with prefix and
// whose note satisfies cond; it returns the note.
func waitEvent(t *testing.T, c *cluster.Cluster, obj, prefix string, cond func(note string) bool) string {
	t.Helper()
	var found string
	var last []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ev, err := c.Events(ctx, obj)
		if err != nil {
			return false, err
		}
		last = ev
		for _, e := range ev {
			if note, ok := strings.CutPrefix(e, prefix); ok && cond(note) {
				found = note
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("waiting for an event %q on %s: %v\nevents:\n%s", prefix, obj, err, strings.Join(last, "\n"))
	}
	return found
}

// waitProblem waits until the node's policy.AnnProblem satisfies cond.
func waitProblem(t *testing.T, c *cluster.Cluster, node string, cond func(string) bool) string {
	t.Helper()
	var p string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: node}, &n); err != nil {
			return false, err
		}
		p = n.Annotations[policy.AnnProblem]
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("waiting for node %s's %s: %v; last %q", node, policy.AnnProblem, err, p)
	}
	return p
}

// assertKept fails unless the replication still exists, is the same
// object and is not being deleted.
func assertKept(t *testing.T, c *cluster.Cluster, name string, uid types.UID) {
	t.Helper()
	dr, err := c.Replication(context.Background(), name)
	if err != nil {
		t.Fatalf("replication %s: %v", name, err)
	}
	if dr.UID != uid || dr.DeletionTimestamp != nil {
		t.Fatalf("replication %s: uid %s (want %v), deletion %v", name, dr.UID, uid, dr.DeletionTimestamp)
	}
}
