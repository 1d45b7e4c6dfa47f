package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicaRestoreSpec says which snapshot on which node becomes a new
// dataset, and the PersistentVolume and PersistentVolumeClaim that expose
// it. It cannot be changed once created: create another ReplicaRestore.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create another ReplicaRestore"
type ReplicaRestoreSpec struct {
	// Source is the snapshot to restore.
	Source RestoreSource `json:"source"`
	// Dataset is the new dataset on the source's node, in the snapshot's
	// pool (a clone lives in its origin's pool); it must not exist.
	// Default: <parent of the replica dataset>/<name>-restored for a Local
	// volume; for ZFSLocalPV it is always <pool>/<PV name> (zfs-localpv's
	// naming), so a dataset given there must be <pool>/<name> and its last
	// component becomes the PV's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@') && !self.contains('#')`,message="a dataset name cannot contain '@' or '#': name a dataset, not a snapshot or bookmark"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9_.:/@#-]*$')`,message="a dataset name may contain only letters, digits, '-', '_', '.', ':' and '/' (no spaces)"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z]')`,message="a dataset name begins with its pool's name, which begins with a letter"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^(mirror|raidz|draid|spare|log|c[0-9])')`,message="pool names beginning with mirror, raidz, draid, spare, log or c and a digit are reserved by ZFS"
	// +kubebuilder:validation:XValidation:rule=`self.contains('/')`,message="a restored dataset cannot be a pool's root dataset: name it pool/..."
	// +kubebuilder:validation:XValidation:rule=`!self.contains('//') && !self.endsWith('/')`,message="a dataset name has no empty component (no trailing or doubled '/')"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('(^|/)[.][.]?(/|$)')`,message="'.' and '..' are not allowed as dataset name components"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/-')`,message="no component of a dataset name may begin with '-'"
	// +optional
	Dataset string `json:"dataset,omitempty"`
	// Volume is how the dataset is offered to pods.
	Volume RestoreVolume `json:"volume"`
}

// RestoreSource names one snapshot on one node: either a snapshot of a
// DatasetReplication's source or target dataset, or a VolumeSnapshotContent
// z8r knows the node and dataset of (a replica content, or a content z8r
// took).
//
// +kubebuilder:validation:XValidation:rule="has(self.replication) != has(self.volumeSnapshotContent)",message="name exactly one of replication and volumeSnapshotContent"
// +kubebuilder:validation:XValidation:rule="!has(self.volumeSnapshotContent) || !has(self.snapshot)",message="snapshot goes with replication: a VolumeSnapshotContent names its snapshot itself"
type RestoreSource struct {
	// Replication is a DatasetReplication's name.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Replication string `json:"replication,omitempty"`
	// VolumeSnapshotContent is a VolumeSnapshotContent's name; its
	// z8r.dev/node annotation must name Node.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	VolumeSnapshotContent string `json:"volumeSnapshotContent,omitempty"`
	// Node holds the snapshot: for a replication, its source node or one
	// of its targets' nodes; for a content, the node it records.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a Kubernetes node name: a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', beginning and ending with a letter or digit)"
	Node string `json:"node"`
	// Snapshot is the short name (after '@') of a snapshot of the
	// replication's dataset on Node. Default: the newest snapshot that
	// dataset has there (decided once, recorded in status.snapshot).
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9_.:-]+$')`,message="a snapshot's short name (after '@') has only letters, digits, '-', '_', '.' and ':'"
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
}

// Volume kinds of a ReplicaRestore.
const (
	// RestoreKindLocal: a `local` PersistentVolume at the dataset's
	// mountpoint, pinned to the node by kubernetes.io/hostname.
	RestoreKindLocal = "Local"
	// RestoreKindZFSLocalPV: OpenEBS zfs-localpv's own objects, a
	// ZFSVolume and a zfs.csi.openebs.io PersistentVolume pinned by
	// openebs.io/nodeid.
	RestoreKindZFSLocalPV = "ZFSLocalPV"
)

// RestoreVolume is the PersistentVolume and PersistentVolumeClaim a
// ReplicaRestore makes.
type RestoreVolume struct {
	// Kind is Local (default) or ZFSLocalPV.
	// +kubebuilder:validation:Enum=Local;ZFSLocalPV
	// +kubebuilder:default=Local
	// +optional
	Kind string `json:"kind,omitempty"`
	// PVCName is the PersistentVolumeClaim made in the ReplicaRestore's
	// namespace, pre-bound to the new PersistentVolume; it must not exist.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a lowercase RFC 1123 subdomain"
	PVCName string `json:"pvcName"`
	// StorageClassName of both the PV and the PVC (default none: "").
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StorageClassName string `json:"storageClassName,omitempty"`
	// AccessModes of both (default ReadWriteOnce).
	// +kubebuilder:validation:MaxItems=4
	// +optional
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
	// Capacity of both. Default: the snapshot's referenced size rounded up
	// to a MiB.
	// +optional
	Capacity *resource.Quantity `json:"capacity,omitempty"`
}

// ReplicaRestore phases.
const (
	RestorePending   = "Pending"
	RestoreRestoring = "Restoring"
	RestoreCompleted = "Completed"
	RestoreFailed    = "Failed"
)

// ReplicaRestoreStatus is how far the restore is.
type ReplicaRestoreStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is Pending, Restoring, Completed or Failed.
	Phase string `json:"phase,omitempty"`
	// Node is the node the dataset is made on.
	Node string `json:"node,omitempty"`
	// Dataset is the new dataset (a clone of Snapshot).
	Dataset string `json:"dataset,omitempty"`
	// Snapshot is the full name of the snapshot restored, decided once.
	Snapshot string `json:"snapshot,omitempty"`
	// SnapshotGUID is its GUID; the restore refuses a snapshot of that
	// name with another GUID.
	SnapshotGUID string `json:"snapshotGUID,omitempty"`
	// PVName and PVCName are the PersistentVolume and claim made.
	PVName  string `json:"pvName,omitempty"`
	PVCName string `json:"pvcName,omitempty"`
	// Path is a Local volume's path: the dataset's mountpoint.
	Path string `json:"path,omitempty"`
	// Message says what happened last, or why the restore cannot go on.
	Message string `json:"message,omitempty"`
	// Conditions: Ready.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ReplicaRestore makes a new dataset from a replica snapshot (`zfs clone`
// on the snapshot's node) and a PersistentVolume and pre-bound
// PersistentVolumeClaim for it. Deleting it leaves the dataset, the PV and
// the PVC: they are the user's.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=zrestore
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.source.node`
// +kubebuilder:printcolumn:name="Dataset",type=string,JSONPath=`.status.dataset`
// +kubebuilder:printcolumn:name="PVC",type=string,JSONPath=`.spec.volume.pvcName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Snapshot",type=string,JSONPath=`.status.snapshot`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReplicaRestore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:Required
	Spec   ReplicaRestoreSpec   `json:"spec,omitempty"`
	Status ReplicaRestoreStatus `json:"status,omitempty"`
}

// ReplicaRestoreList is a list of ReplicaRestores.
//
// +kubebuilder:object:root=true
type ReplicaRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicaRestore `json:"items"`
}

// Marks of a restore, on the dataset it made (ZFS user properties, set
// locally with `zfs clone -o`) and on the objects it made (annotation).
const (
	// PropRestoredFrom on a restored dataset is "<node>:<snapshot>".
	PropRestoredFrom = "z8r.dev:restored-from"
	// PropRestore on a restored dataset is the ReplicaRestore's UID:
	// a dataset carrying it locally is that restore's own.
	PropRestore = "z8r.dev:restore"
	// AnnotationRestoreUID on a PV, PVC or ZFSVolume a restore made is the
	// ReplicaRestore's UID.
	AnnotationRestoreUID = "z8r.dev/restore-uid"
	// AnnotationRestore on them names the ReplicaRestore, namespace/name.
	AnnotationRestore = "z8r.dev/restore"
)

// Ready condition reasons of a ReplicaRestore.
const (
	ReasonRestored  = "Restored"
	ReasonRestoring = "Restoring"
	// Refusals: nothing was changed on ZFS or in the API.
	ReasonInvalidSource           = "InvalidSource"
	ReasonReplicationNotFound     = "ReplicationNotFound"
	ReasonContentNotFound         = "ContentNotFound"
	ReasonNodeNotInSource         = "NodeNotInSource"
	ReasonSnapshotNotFound        = "SnapshotNotFound"
	ReasonInvalidDataset          = "InvalidDataset"
	ReasonDatasetExists           = "DatasetExists"
	ReasonPVCExists               = "PVCExists"
	ReasonPVExists                = "PVExists"
	ReasonVolumeSnapshotsDisabled = "VolumeSnapshotsDisabled"
	// Transient: retried with backoff.
	ReasonNodeUnavailable = "NodeUnavailable"
	ReasonRestoreFailed   = "RestoreFailed"
)

// Event reasons of a ReplicaRestore.
const (
	// EventRestored: the dataset, PV and PVC exist.
	EventRestored = "Restored"
	// EventRestoreRefused: the spec names something that cannot be
	// restored (one of the refusal reasons); nothing was changed.
	EventRestoreRefused = "RestoreRefused"
	// EventRestoreFailed: a step failed on the node or in the API; it is
	// retried.
	EventRestoreFailed = "RestoreFailed"
)

func init() {
	SchemeBuilder.Register(&ReplicaRestore{}, &ReplicaRestoreList{})
}
