package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustAdmit(t *testing.T, s *transferSlots, key string, nodes ...string) func() {
	t.Helper()
	release, err := s.acquire(key, nil, nodes...)
	if err != nil {
		t.Fatalf("%s on %v: %v, want admitted", key, nodes, err)
	}
	return release
}

func mustQueue(t *testing.T, s *transferSlots, key, reason string, nodes ...string) {
	t.Helper()
	_, err := s.acquire(key, nil, nodes...)
	var q *TransferQueuedError
	if !errors.As(err, &q) || !strings.Contains(q.Reason, reason) {
		t.Fatalf("%s on %v: %v, want queued for %q", key, nodes, err, reason)
	}
}

func TestTransferSlots_PerNodeCountsBothEnds(t *testing.T) {
	s := newTransferSlots(TransferLimits{PerNode: 1})
	a := mustAdmit(t, s, "a", "n1", "n2")
	mustQueue(t, s, "b", "node n1 runs 1", "n1", "n3") // n1 sends already
	mustQueue(t, s, "c", "node n2 runs 1", "n3", "n2") // n2 receives already
	mustAdmit(t, s, "d", "n4", "n5")                   // other nodes: no wait
	a()
	a() // a second release changes nothing
	if s.running["n1"] != 0 || s.running["n2"] != 0 || s.total != 1 {
		t.Fatalf("after release: running %v, total %d", s.running, s.total)
	}
	mustAdmit(t, s, "b", "n1", "n3")
}

func TestTransferSlots_FirstComeFirstServed(t *testing.T) {
	s := newTransferSlots(TransferLimits{PerNode: 1})
	a := mustAdmit(t, s, "a", "n1", "n2")
	// b waits for n2; c, later, needs n3 too: b keeps n3's only slot.
	mustQueue(t, s, "b", "node n2", "n2", "n3")
	mustQueue(t, s, "c", "queued earlier", "n3", "n4")
	a()
	// c asks first once a slot frees, but b came first.
	mustQueue(t, s, "c", "queued earlier", "n3", "n4")
	b := mustAdmit(t, s, "b", "n2", "n3")
	mustQueue(t, s, "c", "node n3 runs 1", "n3", "n4")
	b()
	mustAdmit(t, s, "c", "n3", "n4")
}

func TestTransferSlots_AWaiterThatStopsAskingLosesItsPlace(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := newTransferSlots(TransferLimits{PerNode: 1})
	s.now = func() time.Time { return now }
	a := mustAdmit(t, s, "a", "n1", "n2")
	mustQueue(t, s, "gone", "node n2", "n2", "n3") // then deleted: never asks again
	mustQueue(t, s, "c", "queued earlier", "n3", "n4")
	now = now.Add(waiterExpiry + time.Second)
	mustAdmit(t, s, "c", "n3", "n4")
	a()
}

func TestTransferSlots_TotalAndNoLimits(t *testing.T) {
	s := newTransferSlots(TransferLimits{Total: 2})
	mustAdmit(t, s, "a", "n1", "n2")
	b := mustAdmit(t, s, "b", "n1", "n2") // no per-node limit
	mustQueue(t, s, "c", "2 transfers run in the cluster (limit 2)", "n3", "n4")
	b()
	mustAdmit(t, s, "c", "n3", "n4")

	free := newTransferSlots(TransferLimits{})
	for _, k := range []string{"a", "b", "c", "d"} {
		mustAdmit(t, free, k, "n1", "n2")
	}
	var none *transferSlots
	if none.admit("k", nil, "n1") != nil || none.stillQueued(true, "k", nil, "n1") {
		t.Error("nil slots: want no Admit hook")
	}
}

func TestTransferSlots_ReleaseWakesWhoCanStartInQueueOrder(t *testing.T) {
	s := newTransferSlots(TransferLimits{PerNode: 1})
	woken := map[string]int{}
	wake := func(k string) func() { return func() { woken[k]++ } }
	a := mustAdmit(t, s, "a", "n1", "n2")
	c := mustAdmit(t, s, "c", "n3", "n4")
	for _, w := range []struct{ key, n1, n2 string }{{"b", "n2", "n3"}, {"d", "n1", "n5"}, {"e", "n2", "n6"}} {
		if _, err := s.acquire(w.key, wake(w.key), w.n1, w.n2); err == nil {
			t.Fatalf("%s admitted, want queued", w.key)
		}
	}
	// a's end frees n1 and n2: d (n1, n5) can start; b (n2, n3) waits for
	// n3 and keeps n2 from e, which came after it.
	a()
	if woken["d"] != 1 || woken["b"] != 0 || woken["e"] != 0 {
		t.Fatalf("woken %v, want d only", woken)
	}
	// A queued sync asks wait() first: still blocked costs nothing.
	if !s.stillQueued(true, "e", wake("e"), "n2", "n6") || s.stillQueued(false, "e", wake("e"), "n2", "n6") {
		t.Error("stillQueued: e must wait behind b, and a target not queued before is never held back")
	}
	c()
	if woken["b"] != 1 || woken["e"] != 0 {
		t.Fatalf("woken %v after c ended, want b (n2, n3 free) and not e", woken)
	}
}
