package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DatasetReplicationSpec says where a dataset is snapshotted and where its
// snapshots go.
//
// The API server refuses a malformed spec: a missing source, node names
// that are not node names, dataset names ZFS (or z8r) would refuse, a
// target that repeats another or is the source itself, a changed source,
// an overlong schedule or retention. The schedule and retention grammars
// are checked by the controller, which reports a bad value with an
// InvalidReplicationAnnotation Warning Event and the Ready condition
// False, reason InvalidSpec.
//
// +kubebuilder:validation:XValidation:rule="!has(self.targets) || self.targets.all(t, t.node != self.source.node || (has(t.dataset) && t.dataset != self.source.dataset))",message="a target cannot be the source itself: on the source's node, give the target another dataset"
// +kubebuilder:validation:XValidation:rule="!has(self.targets) || self.targets.all(t, self.targets.exists_one(u, u.node == t.node && (has(u.dataset) ? u.dataset : self.source.dataset) == (has(t.dataset) ? t.dataset : self.source.dataset)))",message="targets must be unique by node and dataset (a target without a dataset uses the source's dataset name)"
type DatasetReplicationSpec struct {
	// Source is the dataset that is snapshotted. It cannot be changed: the
	// holds, bookmarks and snapshots z8r keeps for the targets belong to
	// this dataset, and a changed source would orphan them and send an
	// unrelated dataset into the targets. To replicate another dataset,
	// create another DatasetReplication (deleting this one releases its
	// holds).
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="source is immutable: create another DatasetReplication for another dataset (deleting this one releases its holds)"
	Source DatasetRef `json:"source"`
	// Targets receive the snapshots, each into its own dataset; at most
	// 64, unique by node and dataset, none the source itself.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Targets []ReplicationTarget `json:"targets,omitempty"`
	// Schedule for z8r's snapshots: a duration ("6h") or a 5-field cron
	// expression. Default 6h. The API server only bounds its length; the
	// controller parses it and reports a malformed schedule with an
	// InvalidReplicationAnnotation Warning Event and Ready=False (reason
	// InvalidSpec), taking no snapshot until it is fixed.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Schedule string `json:"schedule,omitempty"`
	// Retention of z8r's snapshots on the source, e.g.
	// "1x1d(keep=all) | 7x1d | 4x1w" or "last=10". Only snapshots z8r
	// created are ever pruned, and never a target's incremental base. The
	// API server only bounds its length; the controller parses it and
	// reports a malformed policy as it does a malformed schedule, pruning
	// nothing until it is fixed.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Retention string `json:"retention,omitempty"`
	// IncludeForeign also replicates snapshots z8r did not create.
	// +optional
	IncludeForeign bool `json:"includeForeign,omitempty"`
	// Suspend stops snapshots and transfers without forgetting state.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// DatasetRef names a dataset on a node.
type DatasetRef struct {
	// Node is the name of the Kubernetes node (and its ZFSNode) whose pool
	// holds the dataset.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a Kubernetes node name: a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', beginning and ending with a letter or digit)"
	Node string `json:"node"`
	// Dataset is the ZFS dataset, pool/child/..., as z8r accepts it:
	// letters, digits, '-', '_', '.', ':' and '/'; no '@' or '#'; no
	// empty, '.' or '..' component and none beginning with '-'; at most 255
	// characters.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@') && !self.contains('#')`,message="a dataset name cannot contain '@' or '#': name a dataset, not a snapshot or bookmark"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9_.:/@#-]*$')`,message="a dataset name may contain only letters, digits, '-', '_', '.', ':' and '/' (no spaces)"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z]')`,message="a dataset name begins with its pool's name, which begins with a letter"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^(mirror|raidz|draid|spare|log|c[0-9])')`,message="pool names beginning with mirror, raidz, draid, spare, log or c and a digit are reserved by ZFS"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('//') && !self.endsWith('/')`,message="a dataset name has no empty component (no trailing or doubled '/')"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('(^|/)[.][.]?(/|$)')`,message="'.' and '..' are not allowed as dataset name components"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/-')`,message="no component of a dataset name may begin with '-'"
	Dataset string `json:"dataset"`
}

// ReplicationTarget is one replica.
type ReplicationTarget struct {
	// Node is the name of the node that receives the replica.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a Kubernetes node name: a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', beginning and ending with a letter or digit)"
	Node string `json:"node"`
	// Dataset on the target node; default: the source dataset's name.
	// Same naming rules as the source's dataset.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@') && !self.contains('#')`,message="a dataset name cannot contain '@' or '#': name a dataset, not a snapshot or bookmark"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9_.:/@#-]*$')`,message="a dataset name may contain only letters, digits, '-', '_', '.', ':' and '/' (no spaces)"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z]')`,message="a dataset name begins with its pool's name, which begins with a letter"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^(mirror|raidz|draid|spare|log|c[0-9])')`,message="pool names beginning with mirror, raidz, draid, spare, log or c and a digit are reserved by ZFS"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('//') && !self.endsWith('/')`,message="a dataset name has no empty component (no trailing or doubled '/')"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('(^|/)[.][.]?(/|$)')`,message="'.' and '..' are not allowed as dataset name components"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/-')`,message="no component of a dataset name may begin with '-'"
	// +optional
	Dataset string `json:"dataset,omitempty"`
	// Retention on the target; default: the source's retention. Its
	// length is bounded here; its grammar is checked by the controller,
	// as the source's retention is.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Retention string `json:"retention,omitempty"`
	// RollbackDiverged (the name is kept from earlier releases) lets z8r
	// resolve a diverged target, one that grew snapshots of its own or was
	// written since its last receive, by moving it aside: the whole target
	// dataset is renamed to <dataset>-z8r-diverged-<UTC time> with every
	// snapshot and write it had, and the source is received afresh (a full
	// send) under the original name. Nothing is destroyed or rolled back;
	// status.targets[].movedAside says where the old copy went. A target
	// whose source lost snapshots (SourceLost) is never resolved
	// automatically. Default false: a diverged target is reported and left
	// untouched.
	// +optional
	RollbackDiverged bool `json:"rollbackDiverged,omitempty"`
}

// Target states.
const (
	TargetPending  = "Pending"
	TargetSyncing  = "Syncing"
	TargetSynced   = "Synced"
	TargetBehind   = "Behind"
	TargetDiverged = "Diverged"
	TargetFailed   = "Failed"
)

// TargetStatus is how far one target is.
type TargetStatus struct {
	Node    string `json:"node"`
	Dataset string `json:"dataset"`
	// State is Pending, Syncing, Synced, Behind, Diverged or Failed.
	State string `json:"state"`
	// LastSnapshot is the newest snapshot the target has (short name).
	LastSnapshot string `json:"lastSnapshot,omitempty"`
	// LastSnapshotGUID is its GUID.
	LastSnapshotGUID string `json:"lastSnapshotGUID,omitempty"`
	// SnapshotsBehind counts source snapshots to send that the target lacks.
	SnapshotsBehind int `json:"snapshotsBehind"`
	// LastSyncTime is when the last transfer to this target succeeded.
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// LastSyncDuration is how long that sync took.
	LastSyncDuration *metav1.Duration `json:"lastSyncDuration,omitempty"`
	// LastSyncBytes is the stream size of that sync.
	LastSyncBytes int64 `json:"lastSyncBytes,omitempty"`
	// LastSyncKind is "full" or "incremental".
	LastSyncKind string `json:"lastSyncKind,omitempty"`
	// ProtectedBase is the source snapshot held for this target.
	ProtectedBase string `json:"protectedBase,omitempty"`
	// ConsecutiveFailures drives the retry backoff.
	ConsecutiveFailures int `json:"consecutiveFailures,omitempty"`
	// LastError is the last failure, if the target is not Synced.
	LastError string `json:"lastError,omitempty"`
	// MovedAside is where the last diverged target was moved aside on
	// its node (snapname.DivergedName) before it was received afresh.
	// +optional
	MovedAside string `json:"movedAside,omitempty"`
	// RemovedAt is when the target left the spec. Its base stays held on
	// the source (and bookmarked) for a grace period, so re-adding it
	// soon still syncs incrementally; then it is released and the entry
	// goes.
	// +optional
	RemovedAt *metav1.Time `json:"removedAt,omitempty"`
}

// DatasetReplicationStatus is the state of the source and every target.
type DatasetReplicationStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastSnapshot is the newest z8r snapshot on the source (short name).
	LastSnapshot string `json:"lastSnapshot,omitempty"`
	// LastSnapshotTime is when it was taken.
	LastSnapshotTime *metav1.Time `json:"lastSnapshotTime,omitempty"`
	// NextSnapshotTime is when the schedule takes the next one.
	NextSnapshotTime *metav1.Time `json:"nextSnapshotTime,omitempty"`
	// State summarises the targets: Synced when all are, else the worst.
	State string `json:"state,omitempty"`
	// TargetsSummary is "synced/total", for kubectl.
	TargetsSummary string `json:"targetsSummary,omitempty"`
	// MaxSnapshotsBehind is the largest SnapshotsBehind of any target.
	MaxSnapshotsBehind int `json:"maxSnapshotsBehind"`
	// Targets, one per spec target.
	Targets []TargetStatus `json:"targets,omitempty"`
	// Conditions: Ready, Synchronizing.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DatasetReplication keeps a dataset snapshotted and replicated.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dsrep
// +kubebuilder:printcolumn:name="Source-Node",type=string,JSONPath=`.spec.source.node`
// +kubebuilder:printcolumn:name="Dataset",type=string,JSONPath=`.spec.source.dataset`
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.status.targetsSummary`
// +kubebuilder:printcolumn:name="Last-Snapshot",type=string,JSONPath=`.status.lastSnapshot`
// +kubebuilder:printcolumn:name="Behind",type=integer,JSONPath=`.status.maxSnapshotsBehind`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Next-Snapshot",type=string,JSONPath=`.status.nextSnapshotTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DatasetReplication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:Required
	Spec   DatasetReplicationSpec   `json:"spec,omitempty"`
	Status DatasetReplicationStatus `json:"status,omitempty"`
}

// DatasetReplicationList is a list of DatasetReplications.
//
// +kubebuilder:object:root=true
type DatasetReplicationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatasetReplication `json:"items"`
}

// Labels and annotations the controller sets on objects it manages.
const (
	// LabelManagedBy marks DatasetReplications generated from annotations.
	LabelManagedBy = "z8r.dev/managed-by"
	// ManagedByNodeAnnotations is its value for node annotations.
	ManagedByNodeAnnotations = "node-annotations"
)

func init() {
	SchemeBuilder.Register(&DatasetReplication{}, &DatasetReplicationList{})
}
