package volsnap

import (
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// content builds a dynamic, bound content with deletionPolicy Delete.
func content(mod ...func(*snapshotv1.VolumeSnapshotContent)) *snapshotv1.VolumeSnapshotContent {
	c := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-1", Finalizers: []string{FinalizerBound}},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			Driver:            "zfs.z8r.dev",
			DeletionPolicy:    snapshotv1.VolumeSnapshotContentDelete,
			Source:            snapshotv1.VolumeSnapshotContentSource{VolumeHandle: new("tank/a")},
			VolumeSnapshotRef: corev1Ref("uid-1"),
		},
	}
	for _, m := range mod {
		m(c)
	}
	return c
}

func ready(c *snapshotv1.VolumeSnapshotContent) {
	c.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: new("tank/a@snapshot-uid-1"), ReadyToUse: new(true)}
}
func errored(c *snapshotv1.VolumeSnapshotContent) {
	c.Status = &snapshotv1.VolumeSnapshotContentStatus{ReadyToUse: new(false), Error: &snapshotv1.VolumeSnapshotError{Message: new("boom")}}
}
func deleting(c *snapshotv1.VolumeSnapshotContent) {
	now := metav1.Now()
	c.DeletionTimestamp = &now
}
func ann(k string) func(*snapshotv1.VolumeSnapshotContent) {
	return func(c *snapshotv1.VolumeSnapshotContent) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[k] = "yes"
	}
}
func retain(c *snapshotv1.VolumeSnapshotContent) {
	c.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentRetain
}
func preProvisioned(c *snapshotv1.VolumeSnapshotContent) {
	c.Spec.Source = snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: new("tank/a@s")}
}
func unbound(c *snapshotv1.VolumeSnapshotContent) { c.Spec.VolumeSnapshotRef.UID = "" }

func TestNext_SidecarOrder(t *testing.T) {
	tests := []struct {
		name string
		c    *snapshotv1.VolumeSnapshotContent
		want Action
	}{
		{"new dynamic content", content(), ActCreate},
		{"failed create is retried", content(errored), ActCreate},
		{"create in flight is retried (adopts)", content(ann(AnnBeingCreated)), ActCreate},
		{"ready", content(ready), ActNone},
		{"ready with stale being-created", content(ready, ann(AnnBeingCreated)), ActClearBeingCreated},
		{"pre-provisioned not imported yet", content(preProvisioned), ActImport},
		{"pre-provisioned ready", content(preProvisioned, ready), ActNone},
		{"delete, Delete policy", content(ready, deleting, ann(AnnBeingDeleted)), ActDelete},
		{"delete, Retain policy", content(ready, retain, deleting, ann(AnnBeingDeleted)), ActRemoveFinalizer},
		{"delete, nothing taken", content(errored, deleting, ann(AnnBeingDeleted)), ActRemoveFinalizer},
		{"deletion waits for being-deleted", content(ready, deleting), ActNone},
		{"deletion waits while being created", content(deleting, ann(AnnBeingDeleted), ann(AnnBeingCreated)), ActCreate},
		{"unbound pre-provisioned deleted", content(preProvisioned, unbound, ready, deleting), ActDelete},
		{"unbound pre-provisioned, Retain", content(preProvisioned, unbound, ready, retain, deleting), ActRemoveFinalizer},
		{"no source at all", content(func(c *snapshotv1.VolumeSnapshotContent) { c.Spec.Source = snapshotv1.VolumeSnapshotContentSource{} }), ActNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Next(tt.c); got != tt.want {
				t.Errorf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}
