package volsnap

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Replication states of one target of a content.
const (
	// StatePending: not tried yet.
	StatePending = "Pending"
	// StateReplicated: the target has the snapshot (GUID recorded).
	StateReplicated = "Replicated"
	// StateFailed: the last attempt failed; retried with backoff.
	StateFailed = "Failed"
	// StateDiverged: the target has history the source lacks; retried with
	// backoff (an administrator must repair the target).
	StateDiverged = "Diverged"
	// StateSkipped: the target already has a newer snapshot, so this older
	// one can never be received there. Final.
	StateSkipped = "Skipped"
	// StateRefused: another replication claimed the target (or the source
	// volume) first (one writer per dataset); looked at again later.
	StateRefused = "Refused"
)

// TargetState is the replication state of one content at one target.
type TargetState struct {
	Node    string `json:"node"`
	Dataset string `json:"dataset"`
	State   string `json:"state"`
	// GUID of the snapshot on the target (same as the source's).
	GUID string `json:"guid,omitempty"`
	// Content is the replica's pre-provisioned VolumeSnapshotContent.
	Content  string `json:"content,omitempty"`
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// Time of the last change (RFC 3339).
	Time string `json:"time,omitempty"`
}

// Target returns where the state applies.
func (s TargetState) Target() Target { return Target{Node: s.Node, Dataset: s.Dataset} }

// Done reports a state that needs no more transfers.
func (s TargetState) Done() bool { return s.State == StateReplicated || s.State == StateSkipped }

// Status is the replication state of a content, one entry per target, as
// kept in the z8r.dev/replication-status annotation (JSON).
type Status []TargetState

// ParseStatus reads the annotation ("" is no state).
func ParseStatus(v string) (Status, error) {
	if v == "" {
		return nil, nil
	}
	var s Status
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("volsnap: replication status: %w", err)
	}
	return s, nil
}

// String renders the annotation value.
func (s Status) String() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain strings and ints always marshal
	}
	return string(b)
}

// Get returns the state of t.
func (s Status) Get(t Target) (TargetState, bool) {
	for _, e := range s {
		if e.Target() == t {
			return e, true
		}
	}
	return TargetState{Node: t.Node, Dataset: t.Dataset, State: StatePending}, false
}

// Set replaces (or adds) the state of ts's target, keeping targets sorted.
func (s Status) Set(ts TargetState) Status {
	out := slices.DeleteFunc(slices.Clone(s), func(e TargetState) bool { return e.Target() == ts.Target() })
	out = append(out, ts)
	slices.SortFunc(out, func(a, b TargetState) int {
		if a.Node != b.Node {
			return cmpString(a.Node, b.Node)
		}
		return cmpString(a.Dataset, b.Dataset)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
