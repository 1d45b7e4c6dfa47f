package v1alpha1

// DriverName is z8r's CSI driver name: z8r acts as the csi-snapshotter
// sidecar for VolumeSnapshotContents of this driver (and of any other
// driver it is configured to serve).
const DriverName = "zfs.z8r.dev"

// VolumeAttributeNode is the CSI volume attribute of a zfs.z8r.dev
// PersistentVolume naming the node whose pool holds the dataset (the
// volume handle).
const VolumeAttributeNode = "z8r.dev/node"

// Annotations and labels of the VolumeSnapshot integration (see
// docs/volumesnapshots.md).
const (
	// AnnotationDataset and AnnotationNode on a PersistentVolume name the
	// dataset and node behind it, for any driver. On a
	// VolumeSnapshotContent z8r records where the snapshot lives (a
	// pre-provisioned content of a served driver needs AnnotationNode).
	AnnotationDataset = "z8r.dev/dataset"
	AnnotationNode    = "z8r.dev/node"

	// AnnotationReplicateTo on a PVC, VolumeSnapshot, VolumeSnapshotClass
	// or VolumeSnapshotContent asks z8r to mirror snapshots to other nodes:
	// "node2,node3:backup/x,node4:backup/" (internal/volsnap grammar).
	AnnotationReplicateTo = "z8r.dev/replicate-to"
	// AnnotationSchedule and AnnotationRetention on a PVC make z8r take
	// VolumeSnapshots on a schedule and prune the ones it took.
	AnnotationSchedule  = "z8r.dev/schedule"
	AnnotationRetention = "z8r.dev/retention"
	// AnnotationSnapshotClass on a PVC picks the VolumeSnapshotClass of
	// scheduled snapshots (default: the driver's default class).
	AnnotationSnapshotClass = "z8r.dev/snapshot-class"

	// AnnotationReplicationStatus on a VolumeSnapshotContent is z8r's
	// per-target replication state (JSON, see volsnap.Status).
	AnnotationReplicationStatus = "z8r.dev/replication-status"
	// AnnotationReplicaOf on a replica's VolumeSnapshotContent names the
	// source content; LabelReplicaOfUID carries its UID for selectors.
	AnnotationReplicaOf = "z8r.dev/replica-of"
	LabelReplicaOfUID   = "z8r.dev/replica-of-uid"
	// LabelNode on a replica's VolumeSnapshotContent is the node holding
	// the copy (also in AnnotationNode, which is authoritative).
	LabelNode = "z8r.dev/node"

	// LabelPVCUID on a scheduled VolumeSnapshot is its PVC's UID;
	// AnnotationScheduledAt the controller time it was due (RFC 3339).
	LabelPVCUID           = "z8r.dev/pvc-uid"
	AnnotationScheduledAt = "z8r.dev/scheduled-at"

	// AnnotationSourceDestroyed on a source VolumeSnapshotContent being
	// deleted records that its ZFS snapshot was destroyed (or marked for
	// deferred destruction) on its node: only then are its replicas
	// deleted, so a source node that is down never costs the copies.
	AnnotationSourceDestroyed = "z8r.dev/source-destroyed"

	// Values of LabelManagedBy.
	ManagedByPVCSchedule = "pvc-schedule"
	ManagedByReplication = "replication"
)

// Event reasons of the VolumeSnapshot integration.
const (
	EventSnapshotDeleted      = "SnapshotDeleted"
	EventSnapshotDeferred     = "SnapshotDestroyDeferred"
	EventSnapshotDeleteFailed = "SnapshotDeleteFailed"
	EventSnapshotImported     = "SnapshotImported"
	EventSnapshotRetained     = "SnapshotRetained"
	EventReplicaCreated       = "ReplicaContentCreated"
	EventInvalidPVCAnnotation = "InvalidPVCAnnotation"
	EventScheduledSnapshot    = "ScheduledSnapshotCreated"
	EventScheduledPruned      = "ScheduledSnapshotsPruned"
	// EventScheduledWaiting: a scheduled VolumeSnapshot is due but the
	// previous one is not ready yet (its node may be down); no second one
	// is taken until it is.
	EventScheduledWaiting = "ScheduledSnapshotWaiting"
	// EventReplicaNotOwned: a replica content's snapshot on its node does
	// not carry z8r's ownership for that replication; z8r did not destroy it.
	EventReplicaNotOwned = "ReplicaNotOwned"
)
