package v1alpha1

// Event reasons z8r emits (constant, so they can be filtered and alerted on).
const (
	EventSnapshotCreated   = "SnapshotCreated"
	EventSnapshotFailed    = "SnapshotFailed"
	EventReplicated        = "Replicated"
	EventReplicationFailed = "ReplicationFailed"
	EventTargetDiverged    = "TargetDiverged"
	// EventTargetMovedAside: a diverged target was renamed aside (every
	// snapshot and write kept) and received afresh, as its policy allows.
	EventTargetMovedAside     = "TargetMovedAside"
	EventPruned               = "Pruned"
	EventPruneFailed          = "PruneFailed"
	EventSourceUnavailable    = "SourceUnavailable"
	EventTargetRemoved        = "TargetRemoved"
	EventInvalidAnnotation    = "InvalidReplicationAnnotation"
	EventAnnotationWarning    = "ReplicationAnnotationWarning"
	EventHostKeyPinned        = "HostKeyPinned"
	EventHostKeyChanged       = "HostKeyChanged"
	EventReplicationGenerated = "ReplicationConfigured"
	// EventReplicationConflict: a second replication claims a source or
	// target dataset another one already has; it is refused (nothing runs
	// for it) and the Event names the first.
	EventReplicationConflict = "ReplicationConflict"
	// EventFutureSnapshot: a snapshot's name is later than the controller's
	// clock (a clock that ran ahead); the schedule does not wait for it.
	EventFutureSnapshot = "FutureSnapshot"
	// EventHoldsLeaked: holds z8r could not release (the source node is
	// gone or unreachable at deletion) are named in the Event.
	EventHoldsLeaked = "HoldsLeaked"
	// EventResumeAbandoned: an interrupted receive's resume token no
	// longer matched the source (its snapshot gone, another base); the
	// partial state was discarded and the next sync plans afresh.
	EventResumeAbandoned = "ResumeAbandoned"
	// EventTransferCancelled: a running sync was stopped on purpose (the
	// replication suspended or deleted, the target removed from it); its
	// partial receive was discarded and its step holds released.
	EventTransferCancelled = "TransferCancelled"
	// EventReplicationHandedOver: a PVC's DatasetReplication was promoted
	// to one of its targets; z8r stops managing it from the PVC's
	// annotations (it keeps replicating from the new source) and leaves
	// it to the administrator.
	EventReplicationHandedOver = "ReplicationHandedOver"
	// EventEmptyAnnotation: a master or replica annotation with an empty
	// value (an error, not "replicate nothing"); the node is rejected and
	// keeps its replications. A reason of its own, since Events on one
	// object are aggregated by reason and it must not hide behind an
	// earlier InvalidReplicationAnnotation.
	EventEmptyAnnotation = "EmptyReplicationAnnotation"
	// EventTargetNotAllowed: a tenant's z8r.dev/replicate-to names a
	// target no ReplicationTargetPolicy allows for the object's namespace;
	// nothing is done for that target.
	EventTargetNotAllowed = "TargetNotAllowed"
	// EventReplicationNameTaken: the DatasetReplication name computed for
	// a PVC belongs to another owner; it is neither patched nor deleted.
	EventReplicationNameTaken = "ReplicationNameTaken"
	// EventPromoted: a target became the source (planned switchover or
	// unplanned failover); the message gives the recovery point.
	EventPromoted = "Promoted"
	// EventPromotionRefused: a promotion was refused (the target diverged,
	// never synced or is missing); nothing was changed.
	EventPromotionRefused = "PromotionRefused"
	// EventPromotionWaiting: a promotion waits for an unreachable old
	// source (unplanned failover not allowed).
	EventPromotionWaiting = "PromotionWaiting"
	// EventPromotionCancelled: spec.source went back before the target
	// was made writable; the old source is writable again.
	EventPromotionCancelled = "PromotionCancelled"
	// EventTailPreserved: the old source's unreplicated tail was moved
	// aside (renamed, every snapshot and write kept) before it was made a
	// replica of the new source.
	EventTailPreserved = "TailPreserved"
)
