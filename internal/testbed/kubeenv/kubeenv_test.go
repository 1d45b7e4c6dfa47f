//go:build kube

package kubeenv_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

const (
	// What the upstream controller and sidecar put on objects (external-snapshotter's
	// pkg/utils), repeated here because they are what this test checks.
	annBeingDeleted       = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
	finalizerContentBound = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
	contentNamePrefix     = "snapcontent-"
	// What kube-controller-manager's volume controllers put on PVCs and PVs.
	annBindCompletedKey    = "pv.kubernetes.io/bind-completed"
	finalizerPVCProtection = "kubernetes.io/pvc-protection"
	finalizerPVProtection  = "kubernetes.io/pv-protection"
	waitTimeout            = 30 * time.Second
	processGoneTimeout     = 15 * time.Second
	helperModeEnv          = "Z8R_KUBEENV_HELPER_MODE"
	helperProcessLinePrefx = "kubeenv-process"
	helperReadyLine        = "kubeenv-ready"
)

func TestMain(m *testing.M) {
	// Silences controller-runtime's warning that no logger was set; envtest logs little.
	ctrllog.SetLogger(logr.Discard())
	if mode := os.Getenv(helperModeEnv); mode != "" {
		helperProcess(mode)
		return
	}
	os.Exit(m.Run())
}

// TestSnapshotController_SnapshotOfCSIPVCBecomesReadyAndIsDeleted drives the real
// snapshot-controller through a snapshot's life, with the test in the csi-snapshotter
// sidecar's role.
func TestSnapshotController_SnapshotOfCSIPVCBecomesReadyAndIsDeleted(t *testing.T) {
	e := kubeenv.Start(t, kubeenv.Options{SnapshotController: true})
	t.Logf("control plane and snapshot-controller up in %s", e.StartDuration)
	ctx := t.Context()

	ns := e.CreateNamespace(t, "snap")
	e.CreateNode(t, "node-a", map[string]string{"zfs.replication.takutakahashi.dev": "true"}, nil)
	const dataset = "tank/k8s/data"
	pv := kubeenv.Z8rPV("pv-data", "node-a", dataset, "1Gi")
	e.CreateBound(t, pv, kubeenv.PVCFor(pv, ns, "data"))
	e.Create(t, kubeenv.VolumeSnapshotClass("z8r", kubeenv.DriverZ8r, snapshotv1.VolumeSnapshotContentDelete))
	vs := kubeenv.VolumeSnapshot(ns, "snap-1", "z8r", "data")
	e.Create(t, vs)

	// The controller creates the content, named after the snapshot's UID, for the PV's driver.
	content := &snapshotv1.VolumeSnapshotContent{}
	contentKey := types.NamespacedName{Name: contentNamePrefix + string(vs.UID)}
	poll(t, "the VolumeSnapshotContent to be created", func(ctx context.Context) (bool, error) {
		err := e.Client.Get(ctx, contentKey, content)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if got := content.Spec.Driver; got != kubeenv.DriverZ8r {
		t.Errorf("content driver = %q, want %q", got, kubeenv.DriverZ8r)
	}
	if got := content.Spec.Source.VolumeHandle; got == nil || *got != dataset {
		t.Errorf("content volumeHandle = %v, want %q", got, dataset)
	}
	if got := content.Spec.VolumeSnapshotRef; got.UID != vs.UID || got.Namespace != ns || got.Name != vs.Name {
		t.Errorf("content volumeSnapshotRef = %+v, want %s/%s uid %s", got, ns, vs.Name, vs.UID)
	}
	if got := content.Spec.DeletionPolicy; got != snapshotv1.VolumeSnapshotContentDelete {
		t.Errorf("content deletionPolicy = %q, want Delete", got)
	}

	// The sidecar's part: take the snapshot, then report it on the content's status.
	created := time.Now().Truncate(time.Second)
	restoreSize := resource.MustParse("1Gi")
	patch := client.MergeFrom(content.DeepCopy())
	content.Status = &snapshotv1.VolumeSnapshotContentStatus{
		SnapshotHandle: new(dataset + "@snapshot-" + string(vs.UID)),
		ReadyToUse:     new(true),
		CreationTime:   new(created.UnixNano()),
		RestoreSize:    new(restoreSize.Value()),
	}
	if err := e.Client.Status().Patch(ctx, content, patch); err != nil {
		t.Fatalf("patch content status: %v", err)
	}

	poll(t, "the VolumeSnapshot to be ready", func(ctx context.Context) (bool, error) {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(vs), vs); err != nil {
			return false, err
		}
		return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse, nil
	})
	st := vs.Status
	if st.BoundVolumeSnapshotContentName == nil || *st.BoundVolumeSnapshotContentName != contentKey.Name {
		t.Errorf("boundVolumeSnapshotContentName = %v, want %q", st.BoundVolumeSnapshotContentName, contentKey.Name)
	}
	if st.RestoreSize == nil || st.RestoreSize.Cmp(restoreSize) != 0 {
		t.Errorf("restoreSize = %v, want %s", st.RestoreSize, &restoreSize)
	}
	if st.CreationTime == nil || !st.CreationTime.Time.Equal(created) {
		t.Errorf("creationTime = %v, want %s", st.CreationTime, created)
	}

	// Deleting the snapshot: the controller marks the content and deletes it; the content
	// stays until the sidecar, having destroyed the ZFS snapshot, drops its finalizer.
	if err := e.Client.Delete(ctx, vs); err != nil {
		t.Fatalf("delete VolumeSnapshot: %v", err)
	}
	poll(t, "the content to be marked for deletion", func(ctx context.Context) (bool, error) {
		if err := e.Client.Get(ctx, contentKey, content); err != nil {
			return false, err
		}
		return content.DeletionTimestamp != nil && content.Annotations[annBeingDeleted] == "yes", nil
	})
	if !slices.Contains(content.Finalizers, finalizerContentBound) {
		t.Fatalf("content finalizers = %v, want %s", content.Finalizers, finalizerContentBound)
	}
	patch = client.MergeFrom(content.DeepCopy())
	content.Finalizers = slices.DeleteFunc(content.Finalizers, func(f string) bool { return f == finalizerContentBound })
	if err := e.Client.Patch(ctx, content, patch); err != nil {
		t.Fatalf("remove content finalizer: %v", err)
	}
	poll(t, "the content and the snapshot to be gone", func(ctx context.Context) (bool, error) {
		errContent := e.Client.Get(ctx, contentKey, &snapshotv1.VolumeSnapshotContent{})
		errSnapshot := e.Client.Get(ctx, client.ObjectKeyFromObject(vs), &snapshotv1.VolumeSnapshot{})
		return apierrors.IsNotFound(errContent) && apierrors.IsNotFound(errSnapshot), nil
	})
}

// TestCreateBound_PVCIsBoundToPV checks the binding the PV controller would have made.
func TestCreateBound_PVCIsBoundToPV(t *testing.T) {
	e := kubeenv.Start(t, kubeenv.Options{})
	ctx := t.Context()
	ns := e.CreateNamespace(t, "bind")
	for _, pv := range []*corev1.PersistentVolume{
		kubeenv.Z8rPV("pv-z8r", "node-a", "tank/a", "1Gi"),
		kubeenv.ZFSLocalPV("pvc-0b8c6a8e", "node-a", "zfspv-pool", "2Gi"),
		kubeenv.LocalPV("pv-local", "node-a", "/tank/local", "3Gi"),
	} {
		t.Run(pv.Name, func(t *testing.T) {
			pvc := kubeenv.PVCFor(pv, ns, "claim-"+pv.Name)
			e.CreateBound(t, pv, pvc)

			gotPVC := &corev1.PersistentVolumeClaim{}
			if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pvc), gotPVC); err != nil {
				t.Fatalf("get PVC: %v", err)
			}
			gotPV := &corev1.PersistentVolume{}
			if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pv), gotPV); err != nil {
				t.Fatalf("get PV: %v", err)
			}
			if gotPVC.Status.Phase != corev1.ClaimBound || gotPVC.Spec.VolumeName != pv.Name {
				t.Errorf("PVC phase %q volumeName %q, want Bound %q", gotPVC.Status.Phase, gotPVC.Spec.VolumeName, pv.Name)
			}
			if gotPV.Status.Phase != corev1.VolumeBound {
				t.Errorf("PV phase %q, want Bound", gotPV.Status.Phase)
			}
			if ref := gotPV.Spec.ClaimRef; ref == nil || ref.UID != gotPVC.UID || ref.Name != pvc.Name || ref.Namespace != ns {
				t.Errorf("PV claimRef = %+v, want %s/%s uid %s", ref, ns, pvc.Name, gotPVC.UID)
			}
			want := pv.Spec.Capacity[corev1.ResourceStorage]
			if got := gotPVC.Status.Capacity[corev1.ResourceStorage]; got.Cmp(want) != 0 {
				t.Errorf("PVC capacity %s, want %s", &got, &want)
			}
		})
	}
}

// TestControllerManager_BindsPreBoundPVCs runs the real PV controller and checks that it
// binds what z8r makes and what a test binds by hand: a PV whose claimRef names a PVC
// (no UID, as a ReplicaRestore makes it) and then the PVC with volumeName; a PVC that
// names a PV created after it; and CreateBound's pair, which it must leave as it is.
// The protection controllers put their finalizers on all of them.
func TestControllerManager_BindsPreBoundPVCs(t *testing.T) {
	e := kubeenv.Start(t, kubeenv.Options{ControllerManager: kubeenv.VolumeControllers()})
	t.Logf("control plane and kube-controller-manager up in %s", e.StartDuration)
	ctx := t.Context()
	ns := e.CreateNamespace(t, "bind")

	t.Run("claimRef-then-PVC", func(t *testing.T) {
		pv := kubeenv.LocalPV("pv-restored", "node-a", "/tank/restored", "1Gi")
		pv.Spec.ClaimRef = &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: ns, Name: "restored"}
		e.Create(t, pv)
		pvc := kubeenv.PVCFor(pv, ns, "restored")
		e.Create(t, pvc)
		waitBound(t, e, pv.Name, pvc)
	})
	t.Run("PVC-then-PV", func(t *testing.T) {
		pv := kubeenv.Z8rPV("pv-late", "node-a", "tank/late", "2Gi")
		pvc := kubeenv.PVCFor(pv, ns, "early")
		e.Create(t, pvc)
		e.Create(t, pv)
		waitBound(t, e, pv.Name, pvc)
	})
	t.Run("CreateBound", func(t *testing.T) {
		pv := kubeenv.Z8rPV("pv-by-hand", "node-a", "tank/by-hand", "1Gi")
		pvc := kubeenv.PVCFor(pv, ns, "by-hand")
		e.CreateBound(t, pv, pvc)
		waitBound(t, e, pv.Name, pvc)
		// A few resyncs later the controller still agrees with the hand-made binding.
		time.Sleep(3 * time.Second)
		gotPV := &corev1.PersistentVolume{}
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pv), gotPV); err != nil {
			t.Fatalf("get PV: %v", err)
		}
		gotPVC := &corev1.PersistentVolumeClaim{}
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pvc), gotPVC); err != nil {
			t.Fatalf("get PVC: %v", err)
		}
		if gotPV.Status.Phase != corev1.VolumeBound || gotPVC.Status.Phase != corev1.ClaimBound ||
			gotPV.Spec.ClaimRef == nil || gotPV.Spec.ClaimRef.UID != gotPVC.UID {
			t.Errorf("after resyncs: PV phase %q claimRef %+v, PVC phase %q uid %s", gotPV.Status.Phase, gotPV.Spec.ClaimRef, gotPVC.Status.Phase, gotPVC.UID)
		}
	})
}

// waitBound waits until the PV controller has bound pvc and the PV pvName: both phase
// Bound, the PV's claimRef holding the PVC's UID, the PVC's bind-completed annotation
// and capacity set, and both carrying their protection finalizer.
func waitBound(t *testing.T, e *kubeenv.Env, pvName string, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	pv := &corev1.PersistentVolume{}
	got := &corev1.PersistentVolumeClaim{}
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		if err := e.Client.Get(ctx, types.NamespacedName{Name: pvName}, pv); err != nil {
			return false, err
		}
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pvc), got); err != nil {
			return false, err
		}
		last = fmt.Sprintf("PV phase %q claimRef %+v finalizers %v; PVC phase %q uid %s volumeName %q annotations %v capacity %v finalizers %v",
			pv.Status.Phase, pv.Spec.ClaimRef, pv.Finalizers, got.Status.Phase, got.UID, got.Spec.VolumeName, got.Annotations, got.Status.Capacity, got.Finalizers)
		return pv.Status.Phase == corev1.VolumeBound && got.Status.Phase == corev1.ClaimBound &&
			pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.UID == got.UID && got.Spec.VolumeName == pvName &&
			got.Annotations[annBindCompletedKey] == "yes" &&
			got.Status.Capacity.Storage().Cmp(*pv.Spec.Capacity.Storage()) == 0 &&
			slices.Contains(pv.Finalizers, finalizerPVProtection) && slices.Contains(got.Finalizers, finalizerPVCProtection), nil
	})
	if err != nil {
		t.Fatalf("waiting for PVC %s and PV %s to be bound: %v\nlast: %s", client.ObjectKeyFromObject(pvc), pvName, err, last)
	}
}

// TestEnv_StopLeavesNoProcess checks that Stop ends kube-apiserver, etcd,
// snapshot-controller and kube-controller-manager.
func TestEnv_StopLeavesNoProcess(t *testing.T) {
	e := kubeenv.Start(t, kubeenv.Options{SnapshotController: true, ControllerManager: kubeenv.VolumeControllers()})
	procs, err := e.Processes()
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	checkAllStarted(t, procs)
	if err := e.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if running, err := kubeenv.StillRunning(procs); err != nil || len(running) > 0 {
		t.Errorf("after Stop: still running %v (err %v)", running, err)
	}
	if left, err := e.Processes(); err != nil || len(left) > 0 {
		t.Errorf("after Stop: Processes() = %v (err %v)", left, err)
	}
}

// TestEnv_DeadTestBinaryLeavesNoProcess runs a test binary that starts an Env and then
// dies, and checks that the processes it started die with it.
func TestEnv_DeadTestBinaryLeavesNoProcess(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		wantPanic bool
	}{
		// t.Cleanup runs: Stop ends everything.
		{mode: "panic-in-test", wantPanic: true},
		// No cleanup runs: only the death signal set at start ends the processes.
		{mode: "panic-in-goroutine", wantPanic: true},
		{mode: "sigkill"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			procs, out := runHelper(t, tc.mode)
			checkAllStarted(t, procs)
			if tc.wantPanic && !strings.Contains(out, "panic: kubeenv test helper") {
				t.Errorf("helper did not panic as asked; output:\n%s", out)
			}
			var running []kubeenv.Process
			err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, processGoneTimeout, true,
				func(context.Context) (bool, error) {
					var err error
					running, err = kubeenv.StillRunning(procs)
					return len(running) == 0, err
				})
			if err != nil {
				t.Errorf("%s after the test binary died: still running %v: %v\nhelper output:\n%s", processGoneTimeout, running, err, out)
			}
		})
	}
}

// helperProcess is what the test binary does when TestEnv_DeadTestBinaryLeavesNoProcess
// runs it with helperModeEnv set (TestMain dispatches here, so a normal run has no
// helper test to skip): start an Env, report its processes, then die as mode says.
func helperProcess(mode string) {
	p := &tb.Program{}
	e := kubeenv.Start(p, kubeenv.Options{SnapshotController: true, ControllerManager: kubeenv.VolumeControllers()})
	procs, err := e.Processes()
	if err != nil {
		p.Fatalf("list processes: %v", err)
	}
	for _, proc := range procs {
		fmt.Printf("%s %s %d\n", helperProcessLinePrefx, proc.Name, proc.PID)
	}
	fmt.Println(helperReadyLine)
	switch mode {
	case "panic-in-test":
		// Like a test that panics: its cleanups run, then the panic ends it.
		defer p.Close()
		panic("kubeenv test helper: panic in the test goroutine")
	case "panic-in-goroutine":
		go func() { panic("kubeenv test helper: panic in another goroutine") }()
	}
	time.Sleep(time.Minute) // until killed or crashed
	p.Fatalf("helper mode %q did not end the process", mode)
}

// runHelper runs the test binary as helperProcess in mode, kills it once its Env is up for mode
// "sigkill", waits for it to end and returns the processes it reported and its output.
func runHelper(t *testing.T, mode string) ([]kubeenv.Process, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// The helper's temporary folders (etcd data, certificates) land in this test's, which
	// is removed even when the helper dies without its cleanups.
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, "TMPDIR="+t.TempDir())
	// Should this test itself be killed, the helper goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	var out strings.Builder
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	var procs []kubeenv.Process
	var lines []string
	s := bufio.NewScanner(stdout)
	for s.Scan() {
		line := s.Text()
		lines = append(lines, line)
		if rest, ok := strings.CutPrefix(line, helperProcessLinePrefx+" "); ok {
			name, pid, _ := strings.Cut(rest, " ")
			n, err := strconv.Atoi(pid)
			if err != nil {
				t.Errorf("bad helper line %q", line)
				continue
			}
			procs = append(procs, kubeenv.Process{Name: name, PID: n})
		}
		if line == helperReadyLine && mode == "sigkill" {
			if err := cmd.Process.Kill(); err != nil {
				t.Errorf("kill helper: %v", err)
			}
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	output := strings.Join(lines, "\n") + "\n" + out.String()
	if err == nil {
		t.Fatalf("helper exited 0, want it to die; output:\n%s", output)
	}
	return procs, output
}

func checkAllStarted(t *testing.T, procs []kubeenv.Process) {
	t.Helper()
	var names []string
	for _, p := range procs {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	want := []string{kubeenv.BinEtcd, kubeenv.BinAPIServer, kubeenv.BinControllerManager, kubeenv.BinSnapshotController}
	if !slices.Equal(names, want) {
		t.Fatalf("processes = %v, want one each of %v", procs, want)
	}
}

// poll waits up to waitTimeout for cond, failing the test with what it waited for.
func poll(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, waitTimeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
