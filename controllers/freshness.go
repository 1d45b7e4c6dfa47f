package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ownWrites remembers, per object, the resourceVersion of the last write
// a reconciler made to it (or of the last uncached read it did), so that
// the next reconcile can tell a cached copy that is its own latest write
// from one that may predate it.
//
// Why: controller-runtime's cache trails the API server. A reconcile
// queued by the reconciler's own intermediate status write (for example
// a promotion's phase recorded before its ZFS step) can start after the
// final write of the reconcile that made it, yet read the intermediate
// one from the cache, and repeat a ZFS step that already ran (a tail
// kept aside twice left a snapshot that made the replica diverge). The
// optimistic lock of the status write refuses that reconcile's status,
// but only after its ZFS commands ran.
//
// A reconcile whose cached object does not carry the remembered version
// reads the object from the API server instead (fresh). In the steady
// state (the cache has caught up with the last own write) that costs
// nothing; it costs one GET after anyone else's change.
type ownWrites struct {
	mu sync.Mutex
	rv map[types.NamespacedName]string
}

// record remembers obj's resourceVersion as the latest one this
// reconciler knows to be current.
func (w *ownWrites) record(obj client.Object) {
	if obj.GetResourceVersion() == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rv == nil {
		w.rv = map[types.NamespacedName]string{}
	}
	w.rv[client.ObjectKeyFromObject(obj)] = obj.GetResourceVersion()
}

// forget drops what is remembered of key (the object is gone).
func (w *ownWrites) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rv, key)
}

// mayBeStale reports whether obj, read from the cache, may be older than
// this reconciler's last write to it: a write is remembered and obj does
// not carry its resourceVersion.
func (w *ownWrites) mayBeStale(obj client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rv, ok := w.rv[client.ObjectKeyFromObject(obj)]
	return ok && rv != obj.GetResourceVersion()
}

// getFresh reads key into obj from cached, or from live (the API server)
// when the cached copy may be older than this reconciler's last write.
// live nil reads the cache only (unit tests' clients are never stale).
func (w *ownWrites) getFresh(ctx context.Context, cached client.Reader, live client.Reader, key types.NamespacedName, obj client.Object) error {
	if err := cached.Get(ctx, key, obj); err != nil {
		return err
	}
	if live == nil || !w.mayBeStale(obj) {
		return nil
	}
	if err := live.Get(ctx, key, obj); err != nil {
		return err
	}
	w.record(obj)
	return nil
}
