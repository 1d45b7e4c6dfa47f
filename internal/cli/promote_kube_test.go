//go:build kube

package cli

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestPluginPromote_PatchesTheSpec: `kubectl z8r promote` swaps source and
// target through the real API server (its CEL rule accepts a target as the
// new source); a diverged target, a node that is not a target and a
// generated replication are refused and the spec stays as it was.
func TestPluginPromote_PatchesTheSpec(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	p := plugin{t: t, env: env}
	ctx := context.Background()
	createFixtures(t, env.Client)

	// data: node-b is synced, node-c failed but never diverged.
	out := p.ok("promote", "data", "--to", "node-b", "--unplanned")
	if !strings.Contains(out, "node-b:tank/data becomes the source") {
		t.Errorf("output %q", out)
	}
	var dr z8rv1.DatasetReplication
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "data"}, &dr); err != nil {
		t.Fatal(err)
	}
	if dr.Spec.Source != (z8rv1.DatasetRef{Node: "node-b", Dataset: "tank/data"}) || !dr.Spec.AllowUnplannedFailover {
		t.Fatalf("spec after promote %+v", dr.Spec)
	}
	var back bool
	for _, tg := range dr.Spec.Targets {
		if tg.Node == "node-a" {
			back = true
		}
	}
	if !back {
		t.Errorf("the old source is not a target: %+v", dr.Spec.Targets)
	}

	refused := func(args ...string) {
		t.Helper()
		var before z8rv1.DatasetReplication
		if err := env.Client.Get(ctx, client.ObjectKey{Name: args[1]}, &before); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.run("", args...); err == nil || !strings.Contains(err.Error(), "cannot promote") {
			t.Errorf("kubectl z8r %s: %v, want a refusal", strings.Join(args, " "), err)
		}
		var after z8rv1.DatasetReplication
		if err := env.Client.Get(ctx, client.ObjectKey{Name: args[1]}, &after); err != nil {
			t.Fatal(err)
		}
		if after.Generation != before.Generation {
			t.Errorf("a refused promote changed the spec: %+v", after.Spec)
		}
	}
	refused("promote", "logs", "--to", "node-z")
	refused("promote", "logs", "--to", "node-b") // never synced

	// A diverged target.
	dr.Status.Targets = []z8rv1.TargetStatus{{Node: "node-a", Dataset: "tank/data", State: z8rv1.TargetDiverged, LastSnapshotGUID: "7", LastError: "snapshots the source lacks"}}
	if err := env.Client.Status().Update(ctx, &dr); err != nil {
		t.Fatal(err)
	}
	refused("promote", "data", "--to", "node-a")

	// A replication generated from node annotations.
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "logs"}, &dr); err != nil {
		t.Fatal(err)
	}
	dr.Labels = map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}
	if err := env.Client.Update(ctx, &dr); err != nil {
		t.Fatal(err)
	}
	dr.Status.Targets = []z8rv1.TargetStatus{{Node: "node-b", Dataset: "tank/logs", State: z8rv1.TargetSynced, LastSnapshotGUID: "9"}}
	if err := env.Client.Status().Update(ctx, &dr); err != nil {
		t.Fatal(err)
	}
	refused("promote", "logs", "--to", "node-b")
}
