package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// TestPVCAnnotations_NewSourceReplacesTheReplication: a PVC re-created
// under the same name on another volume resolves to another dataset. The
// replication's source is immutable (the apiserver refuses the change, and
// its holds belong to the old dataset), so the old DatasetReplication is
// deleted, never patched, and a new one with the new source follows.
func TestPVCAnnotations_NewSourceReplacesTheReplication(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, z8rv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv2",
		Annotations: map[string]string{z8rv1.AnnotationDataset: "tank/new", z8rv1.AnnotationNode: "n1"}}}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data", UID: "uid-2",
			Annotations: map[string]string{z8rv1.AnnotationSchedule: "1h"}},
		Spec:   corev1.PersistentVolumeClaimSpec{VolumeName: "pv2"},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	name := PVCReplicationName("ns", "data")
	old := &z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "dr-uid",
			Labels:      map[string]string{z8rv1.LabelManagedBy: managedByPVCAnnotations, z8rv1.LabelPVCUID: "uid-1"},
			Annotations: map[string]string{annotationPVC: "ns/data", annotationPV: "pv1"}},
		Spec: z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: "n1", Dataset: "tank/old"}, Schedule: "1h"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pv, pvc, old).Build()
	r := &PVCAnnotationsReconciler{Client: c, Recorder: events.NewFakeRecorder(100)}
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "data"}}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	var dr z8rv1.DatasetReplication
	err := c.Get(ctx, client.ObjectKey{Name: name}, &dr)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	default:
		t.Fatalf("the old replication is still there (source %s); want it deleted, not patched", dr.Spec.Source.Dataset)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
		t.Fatalf("no new replication after the old one went: %v", err)
	}
	if dr.Spec.Source != (z8rv1.DatasetRef{Node: "n1", Dataset: "tank/new"}) || dr.Labels[z8rv1.LabelPVCUID] != "uid-2" {
		t.Errorf("new replication: source %+v, PVC UID %q; want tank/new on n1 for uid-2", dr.Spec.Source, dr.Labels[z8rv1.LabelPVCUID])
	}
}
