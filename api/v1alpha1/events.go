package v1alpha1

// Event reasons z8r emits (constant, so they can be filtered and alerted on).
const (
	EventSnapshotCreated      = "SnapshotCreated"
	EventSnapshotFailed       = "SnapshotFailed"
	EventReplicated           = "Replicated"
	EventReplicationFailed    = "ReplicationFailed"
	EventTargetDiverged       = "TargetDiverged"
	EventTargetRolledBack     = "TargetRolledBack"
	EventPruned               = "Pruned"
	EventPruneFailed          = "PruneFailed"
	EventSourceUnavailable    = "SourceUnavailable"
	EventTargetRemoved        = "TargetRemoved"
	EventInvalidAnnotation    = "InvalidReplicationAnnotation"
	EventAnnotationWarning    = "ReplicationAnnotationWarning"
	EventHostKeyPinned        = "HostKeyPinned"
	EventHostKeyChanged       = "HostKeyChanged"
	EventReplicationGenerated = "ReplicationConfigured"
)
