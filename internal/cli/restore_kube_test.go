//go:build kube

package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestPluginRestore_CreatesTheReplicaRestore: `kubectl z8r restore`
// creates the ReplicaRestore its flags describe in -n's namespace (the API
// server accepts it); bad flags create nothing; --wait reports a refusal
// with its reason.
func TestPluginRestore_CreatesTheReplicaRestore(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	p := plugin{t: t, env: env}
	ctx := context.Background()
	ns := env.CreateNamespace(t, "restorecli")

	out := p.ok("restore", "app", "-n", ns, "--from-replication", "rep", "--node", "n2", "--snapshot", "z8r-20261130T150405Z", "--pvc", "app-data", "--size", "1Gi")
	if !strings.Contains(out, "ReplicaRestore "+ns+"/app created") {
		t.Errorf("output %q", out)
	}
	var rr z8rv1.ReplicaRestore
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Spec.Source != (z8rv1.RestoreSource{Replication: "rep", Node: "n2", Snapshot: "z8r-20261130T150405Z"}) ||
		rr.Spec.Volume.PVCName != "app-data" || rr.Spec.Volume.Kind != z8rv1.RestoreKindLocal || rr.Spec.Volume.Capacity.String() != "1Gi" {
		t.Errorf("spec %+v", rr.Spec)
	}

	if _, _, err := p.run("", "restore", "-n", ns, "--from-replication", "rep", "--from-content", "c", "--node", "n2", "--pvc", "x"); err == nil ||
		!strings.Contains(err.Error(), "exactly one of --from-replication and --from-content") {
		t.Errorf("both sources: %v", err)
	}
	var list z8rv1.ReplicaRestoreList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Errorf("bad flags created a restore: %d, %v", len(list.Items), err)
	}

	// --wait: a controller's refusal is the command's error.
	done := make(chan error, 1)
	go func() {
		_, _, err := p.run("", "restore", "refused", "-n", ns, "--from-content", "nope", "--node", "n2", "--pvc", "y", "--wait")
		done <- err
	}()
	var got z8rv1.ReplicaRestore
	for {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "refused"}, &got); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got.Status.Phase, got.Status.Message = z8rv1.RestoreFailed, "VolumeSnapshotContent nope does not exist"
	apimeta.SetStatusCondition(&got.Status.Conditions, metav1.Condition{Type: z8rv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: z8rv1.ReasonContentNotFound, Message: got.Status.Message})
	if err := env.Client.Status().Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "ContentNotFound: VolumeSnapshotContent nope does not exist") {
		t.Errorf("--wait on a refused restore: %v", err)
	}
}
