package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
)

// pvcScheduleFixture is a bound zfs.z8r.dev PVC with a 1h schedule, and a
// client whose VolumeSnapshot lists can be made stale (the informer cache
// not having seen a create yet). The fake client stands in for the API
// server only to inject that stale read.
type pvcScheduleFixture struct {
	r     *PVCAnnotationsReconciler
	c     client.Client
	clock *clocktest.Fake
	stale bool
}

func newPVCScheduleFixture(t *testing.T) *pvcScheduleFixture {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := snapshotv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv"}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: z8rv1.DriverName, VolumeHandle: "tank/d"}}}}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data", UID: "pvc-uid",
			Annotations: map[string]string{z8rv1.AnnotationSchedule: "1h", z8rv1.AnnotationRetention: "last=3"}},
		Spec:   corev1.PersistentVolumeClaimSpec{VolumeName: "pv"},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	class := &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "z8r"}, Driver: z8rv1.DriverName, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete}
	f := &pvcScheduleFixture{clock: clocktest.New(time.Date(2026, 3, 1, 10, 20, 0, 0, time.UTC))}
	f.c = fake.NewClientBuilder().WithScheme(scheme).WithObjects(pv, pvc, class).
		WithStatusSubresource(&snapshotv1.VolumeSnapshot{}).
		WithInterceptorFuncs(interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*snapshotv1.VolumeSnapshotList); ok && f.stale {
				return nil // the cache has not seen the VolumeSnapshots yet
			}
			return c.List(ctx, list, opts...)
		}}).Build()
	f.r = &PVCAnnotationsReconciler{Client: f.c, Recorder: events.NewFakeRecorder(100), Clock: f.clock}
	return f
}

func (f *pvcScheduleFixture) reconcile(t *testing.T) {
	t.Helper()
	if _, err := f.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "data"}}); err != nil {
		t.Fatal(err)
	}
}

func (f *pvcScheduleFixture) snapshots(t *testing.T) []snapshotv1.VolumeSnapshot {
	t.Helper()
	f.stale = false
	var list snapshotv1.VolumeSnapshotList
	if err := f.c.List(context.Background(), &list, client.InNamespace("ns")); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func (f *pvcScheduleFixture) markReady(t *testing.T) {
	t.Helper()
	for _, vs := range f.snapshots(t) {
		vs.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: new(true)}
		if err := f.c.Status().Update(context.Background(), &vs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPVCSchedule_StaleCacheTakesOneSnapshotPerSlot (issue 15 case 15): a
// reconcile of the same schedule slot that reads a stale cache (it does
// not see the VolumeSnapshot the previous reconcile created) must not
// create a second one: the slot's name is fixed, the API server says it
// exists, and that counts as taken.
func TestPVCSchedule_StaleCacheTakesOneSnapshotPerSlot(t *testing.T) {
	f := newPVCScheduleFixture(t)
	f.reconcile(t)
	if n := len(f.snapshots(t)); n != 1 {
		t.Fatalf("first reconcile: %d VolumeSnapshots, want 1", n)
	}
	f.markReady(t)
	f.clock.Advance(20 * time.Second)
	f.stale = true
	f.reconcile(t)
	if got := f.snapshots(t); len(got) != 1 {
		t.Fatalf("a stale reconcile of the same slot made %d VolumeSnapshots: %v", len(got), names(got))
	}
	// The next slot still gets its own.
	f.clock.Advance(time.Hour)
	f.reconcile(t)
	if got := f.snapshots(t); len(got) != 2 {
		t.Fatalf("next slot: %d VolumeSnapshots %v, want 2", len(got), names(got))
	}
}

// TestPVCSchedule_NoSecondWhileOneWaits (issue 15 case 1): while the last
// scheduled VolumeSnapshot is not ready (its node is down), the schedule
// coming round does not create another; once it is ready, it does.
func TestPVCSchedule_NoSecondWhileOneWaits(t *testing.T) {
	f := newPVCScheduleFixture(t)
	f.reconcile(t)
	for i := 0; i < 3; i++ {
		f.clock.Advance(time.Hour + time.Minute)
		f.reconcile(t)
	}
	if got := f.snapshots(t); len(got) != 1 {
		t.Fatalf("three periods with the first not ready: %d VolumeSnapshots %v, want 1", len(got), names(got))
	}
	f.markReady(t)
	f.reconcile(t)
	if got := f.snapshots(t); len(got) != 2 {
		t.Fatalf("after it became ready: %d VolumeSnapshots %v, want 2", len(got), names(got))
	}
}

func names(vs []snapshotv1.VolumeSnapshot) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// TestPVCAnnotations_EmptyReplicateToIsAnError: an empty replicate-to on a
// scheduled PVC is a Warning and the PVC's annotation-problem, and changes
// nothing (no VolumeSnapshot is taken); fixing it clears the problem and
// the schedule goes on.
func TestPVCAnnotations_EmptyReplicateToIsAnError(t *testing.T) {
	f := newPVCScheduleFixture(t)
	ctx := context.Background()
	setAnn := func(v *string) {
		var pvc corev1.PersistentVolumeClaim
		if err := f.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "data"}, &pvc); err != nil {
			t.Fatal(err)
		}
		if v == nil {
			delete(pvc.Annotations, z8rv1.AnnotationReplicateTo)
		} else {
			pvc.Annotations[z8rv1.AnnotationReplicateTo] = *v
		}
		if err := f.c.Update(ctx, &pvc); err != nil {
			t.Fatal(err)
		}
	}
	problem := func() string {
		var pvc corev1.PersistentVolumeClaim
		if err := f.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "data"}, &pvc); err != nil {
			t.Fatal(err)
		}
		return pvc.Annotations[policy.AnnProblem]
	}
	setAnn(new(""))
	f.reconcile(t)
	if got := f.snapshots(t); len(got) != 0 {
		t.Errorf("empty replicate-to: %d VolumeSnapshots taken, want none", len(got))
	}
	if p := problem(); !strings.Contains(p, "is empty") {
		t.Errorf("PVC's problem %q, want the empty value", p)
	}
	rec := f.r.Recorder.(*events.FakeRecorder)
	found := false
	for len(rec.Events) > 0 && !found {
		found = strings.Contains(<-rec.Events, " "+z8rv1.EventEmptyAnnotation+" ")
	}
	if !found {
		t.Errorf("no %s Warning", z8rv1.EventEmptyAnnotation)
	}
	setAnn(nil)
	f.reconcile(t)
	if got := f.snapshots(t); len(got) != 1 {
		t.Errorf("after the fix: %d VolumeSnapshots, want 1", len(got))
	}
	if p := problem(); p != "" {
		t.Errorf("after the fix the PVC still has the problem %q", p)
	}
}
