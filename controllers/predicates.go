package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// generationOrDeletion passes spec changes, deletions and sync requests,
// not the status writes the reconciler makes itself.
func generationOrDeletion() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectNew.GetGeneration() != e.ObjectOld.GetGeneration() ||
				!e.ObjectNew.GetDeletionTimestamp().IsZero() ||
				e.ObjectNew.GetAnnotations()[z8rv1.AnnotationSyncRequested] != e.ObjectOld.GetAnnotations()[z8rv1.AnnotationSyncRequested]
		},
	}
}

// readyOrKeyChanged passes Z8RNode updates that can unblock a replication:
// readiness, address or host key (pin) changes and an agent restart
// (status.startedAt), not heartbeats.
func readyOrKeyChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*z8rv1.Z8RNode)
			n, ok2 := e.ObjectNew.(*z8rv1.Z8RNode)
			if !ok1 || !ok2 {
				return true
			}
			return o.Status.Ready != n.Status.Ready || o.Status.Address != n.Status.Address ||
				o.Status.HostKey != n.Status.HostKey || o.Spec.PinnedHostKey != n.Spec.PinnedHostKey ||
				!o.Status.StartedAt.Equal(n.Status.StartedAt)
		},
	}
}
