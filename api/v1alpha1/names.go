package v1alpha1

// AnnotationSyncRequested on a DatasetReplication asks the controller to
// reconcile it now instead of at its next requeue; `kubectl z8r sync` sets
// it to the current time in Unix nanoseconds. Only a change of its value
// matters.
const AnnotationSyncRequested = "z8r.dev/sync-requested"
