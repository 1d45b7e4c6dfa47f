package controllers

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// TransferLimits caps how many transfers (zfs send | zfs recv between two
// agents) run at once. A transfer counts on both its nodes. Zero means no
// limit. Syncs with nothing to send are not transfers and never wait.
type TransferLimits struct {
	// PerNode: at most this many transfers that send from or receive on
	// one node.
	PerNode int
	// Total: at most this many in the cluster.
	Total int
}

// DefaultTransferLimits: two transfers per node (a third would mostly
// share the node's disks and CPU with the first two), no cluster-wide
// cap beyond the reconcile workers.
var DefaultTransferLimits = TransferLimits{PerNode: 2}

// waiterExpiry: a queued transfer not asked for again within this long
// (its replication deleted, suspended, or its sync no longer needed) no
// longer holds its place in the queue.
const waiterExpiry = 30 * time.Second

// retryQueued is how soon a queued transfer asks again if no wake-up
// came first (a slot it can take frees: transferSlots.release).
const retryQueued = 10 * time.Second

// TransferQueuedError: a transfer limit is reached; the sync sent and
// held nothing and is tried again shortly.
type TransferQueuedError struct {
	// Reason names the limit, e.g. "node n1 runs 2 transfers (limit 2)".
	Reason string
}

// queuedPrefix starts a queued target's lastError.
const queuedPrefix = "queued for a transfer slot: "

func (e *TransferQueuedError) Error() string {
	return queuedPrefix + e.Reason
}

// queued reports a target, by its state and last error (a
// DatasetReplication's or a VolumeSnapshot's), whose sync waits for a
// transfer slot.
func queued(state, lastError string) bool {
	return state == z8rv1.TargetPending && strings.HasPrefix(lastError, queuedPrefix)
}

// isQueued is queued for a DatasetReplication target.
func isQueued(ts z8rv1.TargetStatus) bool { return queued(ts.State, ts.LastError) }

// transferSlots admits transfers within TransferLimits, first come first
// served per node: a transfer that waits keeps its place against later
// ones that need one of its nodes, as long as it keeps asking.
type transferSlots struct {
	limits TransferLimits
	now    func() time.Time

	mu      sync.Mutex
	running map[string]int // per node
	total   int
	waiting map[string]*slotWaiter
	next    uint64
}

type slotWaiter struct {
	order uint64 // queue position: lower came first
	seen  time.Time
	nodes []string
	// wake, if set, asks for the waiter's reconcile once a slot it can
	// take frees (never blocks).
	wake func()
}

func newTransferSlots(l TransferLimits) *transferSlots {
	return &transferSlots{limits: l, now: time.Now, running: map[string]int{}, waiting: map[string]*slotWaiter{}}
}

// wait registers (or refreshes) key as waiting for a transfer between
// nodes and names what keeps it from starting now ("" when nothing
// does). It admits nothing: a queued sync asks it before listing
// anything, and runs only once a slot is free for it.
func (s *transferSlots) wait(key string, wake func(), nodes ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked(key, s.waiterLocked(key, wake, nodes))
}

// acquire admits the transfer key (one replication target) between
// nodes, or returns a *TransferQueuedError (key then waits, and wake is
// called once a slot it can take frees). release must be called once the
// transfer ends; calling it again does nothing.
func (s *transferSlots) acquire(key string, wake func(), nodes ...string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	me := s.waiterLocked(key, wake, nodes)
	if reason := s.blocked(key, me); reason != "" {
		return nil, &TransferQueuedError{Reason: reason}
	}
	delete(s.waiting, key)
	for _, n := range me.nodes {
		s.running[n]++
	}
	s.total++
	var once sync.Once
	return func() { once.Do(func() { s.release(me.nodes) }) }, nil
}

// waiterLocked returns key's waiter, made or refreshed, after dropping
// the waiters that stopped asking.
func (s *transferSlots) waiterLocked(key string, wake func(), nodes []string) *slotWaiter {
	now := s.now()
	for k, w := range s.waiting {
		if now.Sub(w.seen) > waiterExpiry {
			delete(s.waiting, k)
		}
	}
	me := s.waiting[key]
	if me == nil {
		s.next++
		me = &slotWaiter{order: s.next}
		s.waiting[key] = me
	}
	me.seen, me.nodes, me.wake = now, slices.Compact(slices.Sorted(slices.Values(nodes))), wake
	return me
}

// release ends a transfer between nodes and wakes the waiters that can
// start now, in queue order.
func (s *transferSlots) release(nodes []string) {
	s.mu.Lock()
	for _, n := range nodes {
		if s.running[n]--; s.running[n] <= 0 {
			delete(s.running, n)
		}
	}
	s.total--
	wake := s.startableLocked()
	s.mu.Unlock()
	for _, w := range wake {
		w()
	}
}

// startableLocked returns the wake funcs of the waiters that would be
// admitted now, going through the queue in order as blocked does: an
// earlier waiter keeps its nodes' slots whether or not it can start.
func (s *transferSlots) startableLocked() []func() {
	queue := make([]*slotWaiter, 0, len(s.waiting))
	for _, w := range s.waiting {
		queue = append(queue, w)
	}
	slices.SortFunc(queue, func(a, b *slotWaiter) int { return cmp.Compare(a.order, b.order) })
	used, total := maps.Clone(s.running), s.total
	var wake []func()
	for _, w := range queue {
		ok := s.limits.Total <= 0 || total < s.limits.Total
		for _, n := range w.nodes {
			ok = ok && (s.limits.PerNode <= 0 || used[n] < s.limits.PerNode)
		}
		for _, n := range w.nodes {
			used[n]++
		}
		if ok {
			total++
			if w.wake != nil {
				wake = append(wake, w.wake)
			}
		}
	}
	return wake
}

// blocked names what keeps the waiter me from starting now: a limit
// reached, or the free slots of one of its nodes taken by earlier
// waiters (which keep them while they wait for their other node).
func (s *transferSlots) blocked(key string, me *slotWaiter) string {
	if l := s.limits.Total; l > 0 && s.total >= l {
		return fmt.Sprintf("%d transfers run in the cluster (limit %d)", s.total, l)
	}
	l := s.limits.PerNode
	if l <= 0 {
		return ""
	}
	for _, n := range me.nodes {
		if s.running[n] >= l {
			return fmt.Sprintf("node %s runs %d transfers (limit %d)", n, s.running[n], l)
		}
		ahead := 0
		for k, w := range s.waiting {
			if k != key && w.order < me.order && slices.Contains(w.nodes, n) {
				ahead++
			}
		}
		if s.running[n]+ahead >= l {
			return fmt.Sprintf("node %s runs %d transfers (limit %d) and %d queued earlier need it", n, s.running[n], l, ahead)
		}
	}
	return ""
}

// admit is a replicate.Options.Admit for the transfer key between nodes;
// nil slots admit everything.
func (s *transferSlots) admit(key string, wake func(), nodes ...string) func(context.Context) (func(), error) {
	if s == nil {
		return nil
	}
	return func(context.Context) (func(), error) { return s.acquire(key, wake, nodes...) }
}

// stillQueued reports, for a target queued before (its previous status),
// whether it must wait on: a sync that would only be queued again is not
// started, so a queued target costs no ZFS command until its turn.
func (s *transferSlots) stillQueued(queuedBefore bool, key string, wake func(), nodes ...string) bool {
	return s != nil && queuedBefore && s.wait(key, wake, nodes...) != ""
}

// wakeChannel feeds a controller's watch (WatchesRawSource(w.source())):
// a queued transfer's object is reconciled as soon as a slot it can take
// frees, instead of at its next poll.
type wakeChannel chan event.GenericEvent

func newWakeChannel() wakeChannel { return make(wakeChannel, 256) }

// waker returns a func that enqueues obj's reconcile without ever
// blocking (a full channel leaves it to the poll, retryQueued).
func (w wakeChannel) waker(obj client.Object) func() {
	if w == nil {
		return nil
	}
	return func() {
		select {
		case w <- event.GenericEvent{Object: obj}:
		default:
		}
	}
}

func (w wakeChannel) source() source.Source {
	return source.Channel(w, &handler.EnqueueRequestForObject{})
}
