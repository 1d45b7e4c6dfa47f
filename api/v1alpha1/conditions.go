package v1alpha1

// Condition types and reasons on DatasetReplication (those on Z8RNode
// are beside its type). Constant, so clients can branch on them.
const (
	// ConditionReady: every target has the newest snapshot (True), or why
	// not (False).
	ConditionReady = "Ready"

	// ReasonAllTargetsSynced: Ready=True.
	ReasonAllTargetsSynced = "AllTargetsSynced"
	// ReasonTargetsNotSynced: some target is not Synced; the message names
	// how many are and the worst state.
	ReasonTargetsNotSynced = "TargetsNotSynced"
	// ReasonSourceUnavailable: the source node's agent cannot be reached
	// (or its Z8RNode is missing, not ready, or presents another host key).
	ReasonSourceUnavailable = "SourceUnavailable"
	// ReasonSourceFailed: the source dataset is missing, or listing or
	// snapshotting it failed.
	ReasonSourceFailed = "SourceFailed"
	// ReasonConflict: a dataset the replication claims belongs to an
	// earlier replication (one replication per source, one writer per
	// target); nothing runs for it.
	ReasonConflict = "Conflict"
	// ReasonInvalidSpec: the schedule or retention does not parse; nothing
	// runs until the spec is fixed.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonPromoting: spec.source was changed to a target and the
	// promotion runs (status.promotion says how far it is).
	ReasonPromoting = "Promoting"
	// ReasonPromotionWaiting: the promotion waits for the old source (it
	// cannot be reached and unplanned failover is not allowed).
	ReasonPromotionWaiting = "PromotionWaiting"
	// ReasonPromotionRefused: the target cannot be promoted; nothing was
	// changed (status.promotion.message says why).
	ReasonPromotionRefused = "PromotionRefused"
)
