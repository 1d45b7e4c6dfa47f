package controllers

import "time"

// Requeue delays shared by the reconcilers.
const (
	// retryTransient: a node or agent may come back.
	retryTransient = 5 * time.Second
	// retryInvalid: input that needs a human, or an agent still starting.
	retryInvalid = 30 * time.Second
	// retryWaiting: waiting for other objects to go.
	retryWaiting = 2 * time.Second
	// retryConflict: how often a replication refused a dataset (one
	// writer per dataset) looks again.
	retryConflict = time.Minute
	// retryUnavailable: a source node that cannot be reached or failed.
	retryUnavailable = 30 * time.Second
	// retryPinning: a new agent whose host key the Z8RNode reconciler is
	// about to pin.
	retryPinning = 2 * time.Second
)

// Backoff bounds for a failing target, on both replication paths
// (DatasetReplication targets and VolumeSnapshot replicas).
const (
	backoffMin = 5 * time.Second
	backoffMax = 10 * time.Minute
)

// backoff is the wait before the next attempt after failures consecutive
// failures: backoffMin for the first, doubled for each further one, at
// most backoffMax.
func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// finalizerReleaseHolds is z8r's finalizer wherever z8r holds snapshots
// as replication bases: on a DatasetReplication (deletion releases the
// holds and bookmarks that protect its targets' bases on the source) and
// on another driver's VolumeSnapshotContent whose snapshot z8r holds
// (the holds are released before the content, and that driver's destroy,
// may proceed).
const finalizerReleaseHolds = "z8r.dev/release-holds"
