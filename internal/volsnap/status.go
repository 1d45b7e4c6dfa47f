package volsnap

import (
	"encoding/json"
	"fmt"
	"slices"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// Replication states of one target of a content: the target states of
// api/v1alpha1 (targetstate.go), one vocabulary with DatasetReplications.
const (
	// StatePending: not tried yet.
	StatePending = z8rv1.TargetPending
	// StateSynced: the target has the snapshot (GUID recorded).
	StateSynced = z8rv1.TargetSynced
	// StateFailed: the last attempt failed; retried with backoff.
	StateFailed = z8rv1.TargetFailed
	// StateDiverged: the target has history the source lacks; retried with
	// backoff (an administrator must repair the target).
	StateDiverged = z8rv1.TargetDiverged
	// StateSkipped: the target already has a newer snapshot, so this older
	// one can never be received there. Final.
	StateSkipped = z8rv1.TargetSkipped
	// StateRefused: another replication claimed the target (or the source
	// volume) first (one writer per dataset); looked at again later.
	StateRefused = z8rv1.TargetRefused
	// StateReplicated is what earlier versions wrote for StateSynced. It is
	// still read as StateSynced (TargetState.Synced) and never written.
	StateReplicated = "Replicated"
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

// Synced reports that the target has the snapshot (StateSynced, or an
// earlier version's StateReplicated).
func (s TargetState) Synced() bool { return s.State == StateSynced || s.State == StateReplicated }

// Done reports a state that needs no more transfers.
func (s TargetState) Done() bool { return s.Synced() || s.State == StateSkipped }

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
