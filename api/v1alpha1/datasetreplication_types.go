package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
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
// +kubebuilder:validation:XValidation:rule="self.source == oldSelf.source || (has(oldSelf.targets) && oldSelf.targets.exists(t, t.node == self.source.node && (has(t.dataset) ? t.dataset : oldSelf.source.dataset) == self.source.dataset))",message="source can change only to one of the targets (a promotion); to replicate another dataset, create another DatasetReplication"
// +kubebuilder:validation:XValidation:rule="!has(self.targets) || self.targets.all(t, self.targets.exists_one(u, u.node == t.node && (has(u.dataset) ? u.dataset : self.source.dataset) == (has(t.dataset) ? t.dataset : self.source.dataset)))",message="targets must be unique by node and dataset (a target without a dataset uses the source's dataset name)"
type DatasetReplicationSpec struct {
	// Source is the dataset that is snapshotted. It can change only to one
	// of the targets: that is a promotion (a planned switchover, or a
	// failover when the old source is lost; see docs/failover.md), which
	// z8r carries out before replicating in the new direction, reported
	// in status.promotion. List the old source among the targets to have
	// it replicated back to when it returns. Any other change is refused:
	// the holds, bookmarks and snapshots z8r keeps belong to this dataset
	// and its replicas, and another source would send an unrelated dataset
	// into the targets. To replicate another dataset, create another
	// DatasetReplication (deleting this one releases its holds).
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
	// Suspend stops snapshots and transfers without forgetting state. A
	// transfer running when it is set is cancelled within about a second:
	// its partial receive is discarded and its step holds released (what
	// earlier syncs received stays). Removing a target or deleting the
	// replication cancels that target's transfer the same way.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// BandwidthLimit caps each transfer of this replication, in bytes per
	// second ("20Mi" is 20 MiB/s), in the source agent's data path. The
	// source node's own limit (the agent's --bandwidth-limit) applies as
	// well. Default: none.
	// +optional
	BandwidthLimit *resource.Quantity `json:"bandwidthLimit,omitempty"`
	// Trigger takes a snapshot and syncs it outside the schedule.
	// +optional
	Trigger *ReplicationTrigger `json:"trigger,omitempty"`
	// AllowUnplannedFailover lets a promotion (spec.source changed to a
	// target) go ahead when the old source cannot be reached: the target
	// is made writable at its newest snapshot (the recovery point, in
	// status.promotion) and whatever the old source had beyond it is kept
	// aside there when it returns. Default false: a promotion waits for
	// the old source and is a planned switchover that loses nothing.
	// +optional
	AllowUnplannedFailover bool `json:"allowUnplannedFailover,omitempty"`
	// AllowDecryptedSend lets z8r send an encrypted source decrypted when
	// it cannot send it raw (zfs send -w, the blocks still encrypted): a
	// target node without raw receives (zfs-fuse, OpenZFS before 0.8), or
	// a replica received decrypted earlier. The data then crosses the
	// network and lands on the target as plaintext (or re-encrypted under
	// an encrypted parent there). Default false: such a sync fails, sends
	// nothing, and the target reports the error. Where a raw send is
	// possible it is used either way; unencrypted sources are unaffected.
	// +optional
	AllowDecryptedSend bool `json:"allowDecryptedSend,omitempty"`
}

// ReplicationTrigger asks for a sync now.
type ReplicationTrigger struct {
	// Manual: set it to a new value (a timestamp, a counter) to take one
	// snapshot now and send it to every target. status.lastManualSync
	// becomes this value once every target has that snapshot; until then
	// the sync is retried with the targets' backoff, without taking
	// another snapshot (status.manualSnapshot names the one taken).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Manual string `json:"manual,omitempty"`
}

// Promotion kinds.
const (
	// PromotionPlanned: the old source was reachable; it was made
	// read-only, snapshotted a last time and that snapshot sent, so
	// nothing written on it is lost.
	PromotionPlanned = "Planned"
	// PromotionUnplanned: the old source could not be reached; the target
	// was promoted at its newest snapshot (the recovery point).
	PromotionUnplanned = "Unplanned"
)

// Promotion phases.
const (
	// PromotionWaiting: the old source cannot be reached and unplanned
	// failover is not allowed; nothing was changed.
	PromotionWaiting = "WaitingForSource"
	// PromotionFreezing: the old source is being made read-only and
	// snapshotted a last time (recorded before anything is changed, so a
	// cancel after a crash here still makes it writable again).
	PromotionFreezing = "Freezing"
	// PromotionFinalSync: the old source is read-only; its last snapshot
	// is being sent to the target.
	PromotionFinalSync = "FinalSync"
	// PromotionPromoting: the target is being made writable.
	PromotionPromoting = "Promoting"
	// PromotionCompleted: the target is the source.
	PromotionCompleted = "Completed"
	// PromotionRefused: the target cannot be promoted (diverged, never
	// synced, missing); nothing was changed. Status says why.
	PromotionRefused = "Refused"
	// PromotionCancelled: spec.source went back before the target was
	// made writable; the old source was made writable again.
	PromotionCancelled = "Cancelled"
)

// Rejoin states of the old source after a promotion.
const (
	// RejoinPending: the old source has not been seen since an unplanned
	// failover; when it returns it is made read-only and its tail kept
	// aside before anything is received into it.
	RejoinPending = "Pending"
	// RejoinReceiving: the old source is read-only, its old holds are
	// released and its tail (if any) is in tailAside; it is receiving from
	// the new source.
	RejoinReceiving = "Receiving"
	// RejoinDone: the old source is a replica of the new one (its tail, if
	// any, is in tailAside).
	RejoinDone = "Done"
)

// PromotionStatus is the last (or running) promotion of a target to source.
type PromotionStatus struct {
	// From is the old source, To the promoted target.
	From DatasetRef `json:"from"`
	To   DatasetRef `json:"to"`
	// Kind is Planned or Unplanned (known once the old source was tried).
	// +optional
	Kind string `json:"kind,omitempty"`
	// Phase is WaitingForSource, Freezing, FinalSync, Promoting,
	// Completed, Refused or Cancelled.
	Phase string `json:"phase"`
	// StartedAt and CompletedAt bound the promotion.
	StartedAt   *metav1.Time `json:"startedAt,omitempty"`
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// FinalSnapshot is the snapshot of a planned switchover, taken after
	// the old source was made read-only.
	// +optional
	FinalSnapshot string `json:"finalSnapshot,omitempty"`
	// RecoveryPoint is the snapshot the target was promoted at (short
	// name), RecoveryPointGUID its GUID and RecoveryPointTime when it was
	// taken: nothing written on the old source after that time is in the
	// new source.
	// +optional
	RecoveryPoint     string       `json:"recoveryPoint,omitempty"`
	RecoveryPointGUID string       `json:"recoveryPointGUID,omitempty"`
	RecoveryPointTime *metav1.Time `json:"recoveryPointTime,omitempty"`
	// Discarded is what the target had beyond the recovery point when it
	// was promoted: an interrupted receive of a later snapshot, abandoned
	// (the old source still has that snapshot).
	// +optional
	Discarded string `json:"discarded,omitempty"`
	// Rejoin is the old source's way back as a replica: Pending,
	// Receiving or Done.
	// +optional
	Rejoin string `json:"rejoin,omitempty"`
	// TailAside is where the old source's unreplicated tail (its snapshots
	// after the common base, and its writes) was kept, on From.Node: a
	// dataset named <dataset>-z8r-tail-<UTC time>. z8r never destroys it.
	// +optional
	TailAside string `json:"tailAside,omitempty"`
	// Message says why the promotion waits or was refused.
	// +optional
	Message string `json:"message,omitempty"`
	// Attempts counts refused or failed tries (drives the retry backoff).
	// +optional
	Attempts int `json:"attempts,omitempty"`
}

// DatasetRef names a dataset on a node.
type DatasetRef struct {
	// Node is the name of the Kubernetes node (and its Z8RNode) whose pool
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
	// Transfer is the sync running now, while bytes move; it is cleared
	// when the sync ends (the lastSync* fields then say how it went).
	// +optional
	Transfer *TransferProgress `json:"transfer,omitempty"`
}

// TransferProgress is how far a running sync of one target is. The
// controller writes it at most every few seconds, and at least every 10 s
// while the agents report progress.
type TransferProgress struct {
	// StartedAt is when the sync's first transfer began.
	StartedAt metav1.Time `json:"startedAt"`
	// UpdatedAt is when these numbers were last written.
	UpdatedAt metav1.Time `json:"updatedAt"`
	// Step is the snapshot being sent (from 1) of Steps in this sync.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// BytesDone is the stream bytes the sync's steps have sent so far.
	BytesDone int64 `json:"bytesDone"`
	// BytesExpected is the estimated stream size of the whole sync, from
	// the source's dry-run send (zfs send -nP) or, where that is missing,
	// the size a full send's snapshot references; 0 when unknown.
	// +optional
	BytesExpected int64 `json:"bytesExpected,omitempty"`
	// BytesPerSecond is the average rate since StartedAt.
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`
	// EstimatedCompletion is when the sync ends at that rate (only when
	// BytesExpected is known).
	// +optional
	EstimatedCompletion *metav1.Time `json:"estimatedCompletion,omitempty"`
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
	// ManualTrigger is the spec.trigger.manual value the snapshot
	// ManualSnapshot was taken for.
	// +optional
	ManualTrigger  string `json:"manualTrigger,omitempty"`
	ManualSnapshot string `json:"manualSnapshot,omitempty"`
	// LastManualSync is the last spec.trigger.manual value whose snapshot
	// reached every target.
	// +optional
	LastManualSync string `json:"lastManualSync,omitempty"`
	// Source is the source in force: where z8r snapshots and sends from.
	// It differs from spec.source while a promotion runs.
	// +optional
	Source *DatasetRef `json:"source,omitempty"`
	// Promotion is the last (or running) promotion.
	// +optional
	Promotion *PromotionStatus `json:"promotion,omitempty"`
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
// +kubebuilder:printcolumn:name="Promotion",type=string,JSONPath=`.status.promotion.phase`,priority=1
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
	// ManagedByPVCAnnotations is its value for a PVC's annotations
	// (z8r.dev/replicate-to on a PVC of a non-CSI volume).
	ManagedByPVCAnnotations = "pvc-annotations"
)

func init() {
	SchemeBuilder.Register(&DatasetReplication{}, &DatasetReplicationList{})
}
