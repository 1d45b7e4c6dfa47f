package volsnap

import (
	"slices"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// What the upstream snapshot-controller and csi-snapshotter sidecar put on
// VolumeSnapshotContents (external-snapshotter's pkg/utils, which lives in
// a module z8r does not import).
const (
	// AnnBeingCreated is set by the snapshotter before it asks the storage
	// to take a snapshot and removed only when the storage answered with
	// success or a final error, so a crash in between never leaks one.
	AnnBeingCreated = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
	// AnnBeingDeleted is set by the snapshot-controller when the bound
	// VolumeSnapshot is deleted: the snapshotter may act on the deletion.
	AnnBeingDeleted = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
	// FinalizerBound is added by the snapshot-controller to bound contents
	// and removed by the snapshotter once the backend snapshot is deleted
	// (or retained).
	FinalizerBound = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
)

// Action is the one thing the snapshotter does next for a content.
type Action int

// Actions, in the order the sidecar considers them.
const (
	// ActNone: the content is ready; nothing for the snapshotter to do.
	ActNone Action = iota
	// ActDelete: destroy the snapshot (deletionPolicy Delete), clear the
	// status handle, then remove the finalizer.
	ActDelete
	// ActRemoveFinalizer: deletion with Retain, or nothing was ever taken.
	ActRemoveFinalizer
	// ActCreate: take the snapshot of a dynamic content (idempotent).
	ActCreate
	// ActImport: verify a pre-provisioned content's snapshot and fill its
	// status.
	ActImport
	// ActClearBeingCreated: ready, but the being-created annotation is
	// still there (a crash after the status write).
	ActClearBeingCreated
)

func (a Action) String() string {
	return [...]string{"None", "Delete", "RemoveFinalizer", "Create", "Import", "ClearBeingCreated"}[a]
}

// ShouldDelete is the sidecar's rule for acting on a content's deletion:
// only once it has a deletion timestamp, and then if it is an unbound
// pre-provisioned content, or the snapshot-controller marked it being
// deleted, but never while a create may still be in flight.
func ShouldDelete(c *snapshotv1.VolumeSnapshotContent) bool {
	if c.DeletionTimestamp == nil {
		return false
	}
	if c.Spec.Source.SnapshotHandle != nil && c.Spec.VolumeSnapshotRef.UID == "" {
		return true
	}
	if _, ok := c.Annotations[AnnBeingCreated]; ok {
		return false
	}
	_, ok := c.Annotations[AnnBeingDeleted]
	return ok
}

// Next decides what the snapshotter does for c, in the sidecar's fixed
// order: delete, then create or import, then status.
func Next(c *snapshotv1.VolumeSnapshotContent) Action {
	if ShouldDelete(c) {
		if c.Spec.DeletionPolicy == snapshotv1.VolumeSnapshotContentDelete && c.Status != nil && c.Status.SnapshotHandle != nil {
			return ActDelete
		}
		return ActRemoveFinalizer
	}
	if !IsReady(c) {
		if c.Spec.Source.VolumeHandle != nil {
			return ActCreate
		}
		if c.Spec.Source.SnapshotHandle != nil {
			return ActImport
		}
		return ActNone // invalid source; the snapshot-controller reports it
	}
	if _, ok := c.Annotations[AnnBeingCreated]; ok {
		return ActClearBeingCreated
	}
	return ActNone
}

// IsReady reports status.readyToUse.
func IsReady(c *snapshotv1.VolumeSnapshotContent) bool {
	return c.Status != nil && c.Status.ReadyToUse != nil && *c.Status.ReadyToUse
}

// HasFinalizer reports whether c carries f.
func HasFinalizer(c *snapshotv1.VolumeSnapshotContent, f string) bool {
	return slices.Contains(c.Finalizers, f)
}
