//go:build e2e

package ozguest

import (
	"context"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestController_RestartMidTransferResumesBetweenOpenZFSGuests is issue
// 14's "a controller restart mid-transfer ends Synced with one transfer's
// worth of bytes (OpenZFS: resumed, not restarted)", through the whole
// controller: two OpenZFS guests with publishing agents, a real API
// server, and z8r's reconcilers in this process. A paced first sync of
// 192 MiB is running (Syncing, in the background) when the controller
// stops. The target keeps a resumable partial receive. The controller
// started again resumes it from the target's token (zfs send -t): the
// sync it records moved less than the rest of the stream plus slack, the
// two transfers together about one stream, and the replica holds the
// source's data.
func TestController_RestartMidTransferResumesBetweenOpenZFSGuests(t *testing.T) {
	start := time.Now()
	srcG, dstG, want := twoGuestsWithData(t, 1<<30, 192)
	gs := []*Guest{srcG, dstG}
	srcR, dstR := srcG.Runner(), dstG.Runner()

	ctrl.SetLogger(zap.New(zap.WriteTo(testWriter{t})))
	kube := kubeenv.Start(t, kubeenv.Options{})
	keys := agentproc.NewKeys(t)
	for _, g := range gs {
		kube.CreateNode(t, g.Name(), nil, nil)
		StartAgentWith(t, g, StartRelay(t, g), keys, AgentOptions{Pools: []string{"tank"}, Kubeconfig: kube.Kubeconfig})
	}
	ctx := context.Background()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, g := range gs {
			var zn z8rv1.Z8RNode
			if err := kube.Client.Get(ctx, client.ObjectKey{Name: g.Name()}, &zn); err != nil || !zn.Status.Ready || zn.Status.Implementation != "openzfs" {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatal("the agents' Z8RNodes did not turn Ready as OpenZFS nodes")
	}

	pool := &controllers.AgentPool{Client: kube.Client, Signer: keys.Controller}
	t.Cleanup(pool.Close)
	run := func() (stop func()) {
		mgr, err := ctrl.NewManager(kube.Config, ctrl.Options{Scheme: kube.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := controllers.Setup(mgr, controllers.Config{Agents: pool, SkipNameValidation: true}); err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(mctx); err != nil {
				t.Errorf("controller: %v", err)
			}
		}()
		return func() { cancel(); <-done }
	}
	get := func() *z8rv1.DatasetReplication {
		var dr z8rv1.DatasetReplication
		if err := kube.Client.Get(ctx, client.ObjectKey{Name: "oz"}, &dr); err != nil {
			t.Fatal(err)
		}
		return &dr
	}

	stop := run()
	limit := resource.MustParse("12Mi")
	kube.Create(t, &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "oz"}, Spec: z8rv1.DatasetReplicationSpec{
		Source: z8rv1.DatasetRef{Node: srcG.Name(), Dataset: "tank/data"}, Schedule: "24h", BandwidthLimit: &limit,
		Targets: []z8rv1.ReplicationTarget{{Node: dstG.Name(), Dataset: "tank/replica"}},
	}})
	var first z8rv1.TransferProgress
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		dr := get()
		if len(dr.Status.Targets) == 0 || dr.Status.Targets[0].Transfer == nil {
			return false, nil
		}
		first = *dr.Status.Targets[0].Transfer
		return dr.Status.Targets[0].State == z8rv1.TargetSyncing && first.BytesDone >= 64<<20, nil
	}); err != nil {
		t.Fatalf("the first sync never showed 64 MiB moved: %+v", get().Status)
	}
	stop()
	t.Logf("controller stopped with %d of %d bytes moved", first.BytesDone, first.BytesExpected)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		tok := e2eProp(t, dstR, "tank/replica", "receive_resume_token")
		if tok == "-" || tok == "" {
			return false, nil
		}
		return true, nil
	}); err != nil {
		t.Fatal("no resumable partial receive on the target after the controller stopped")
	}

	stop = run()
	defer stop()
	var dr *z8rv1.DatasetReplication
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 4*time.Minute, true, func(context.Context) (bool, error) {
		dr = get()
		return len(dr.Status.Targets) == 1 && dr.Status.Targets[0].State == z8rv1.TargetSynced, nil
	}); err != nil {
		t.Fatalf("not Synced after the restart: %+v", get().Status)
	}
	ts := dr.Status.Targets[0]
	full := first.BytesExpected
	t.Logf("after the restart: %s sync of %d bytes in %v (stream %d, %d moved before the stop)", ts.LastSyncKind, ts.LastSyncBytes, ts.LastSyncDuration.Duration, full, first.BytesDone)
	if full <= 0 || ts.LastSyncBytes >= full-first.BytesDone+8<<20 {
		t.Errorf("the sync after the restart moved %d bytes; the stream is %d and %d had moved: restarted, not resumed", ts.LastSyncBytes, full, first.BytesDone)
	}
	if note := replicatedNote(t, kube); !strings.Contains(note, "an interrupted receive resumed") {
		t.Errorf("the Replicated Event says %q, want the interrupted receive resumed", note)
	}
	if got := e2eProp(t, dstR, "tank/replica", "receive_resume_token"); got != "-" {
		t.Errorf("token left after the resume: %q", got)
	}
	if holds := e2eRun(t, srcR, "zfs", "holds", "-H", "tank/data@"+ts.LastSnapshot); strings.Contains(holds, "z8r-step-") || !strings.Contains(holds, "z8r-") {
		t.Errorf("holds on the source's snapshot: %q, want the base hold and no step hold", holds)
	}
	checkReplicaBlob(t, dstR, want)
	t.Logf("done in %v", time.Since(start).Round(time.Second))
}

// replicatedNote is the note of the replication's Replicated Event ("" if
// none).
func replicatedNote(t *testing.T, kube *kubeenv.Env) string {
	t.Helper()
	var list eventsv1.EventList
	if err := kube.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Reason == z8rv1.EventReplicated && e.Regarding.Name == "oz" {
			return e.Note
		}
	}
	return ""
}

// testWriter sends the controller's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
