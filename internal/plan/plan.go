package plan

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Snapshot is a snapshot or bookmark of one dataset.
type Snapshot struct {
	Name      string // short name, after '@' or '#'
	GUID      uint64
	CreateTXG uint64
	Creation  time.Time
	Bookmark  bool
	// Owned: z8r's, of this replication: the caller sets it from
	// snapname.IsOwnedBy(LocalProps, policyID). On a source that means z8r
	// took it for this replication; on a target, that z8r received it
	// from this replication's source.
	Owned bool
}

func (s Snapshot) String() string {
	if s.Bookmark {
		return "#" + s.Name
	}
	return "@" + s.Name
}

// Options tune Compute.
type Options struct {
	// IncludeForeign also sends snapshots z8r did not create.
	IncludeForeign bool
	// InitialAll makes the initial replication send every eligible
	// snapshot (oldest full, then incrementals) instead of only the newest.
	InitialAll bool
	// AllowFullIntoEmpty permits a full send into a target dataset that
	// exists without snapshots (the receive must then force).
	AllowFullIntoEmpty bool
}

// Input is what Compute plans from.
type Input struct {
	Source []Snapshot // snapshots and bookmarks of the source dataset
	Target []Snapshot // snapshots of the target dataset (bookmarks are ignored)
	// TargetExists tells a missing target dataset from one without
	// snapshots. A non-empty Target implies it.
	TargetExists bool
	// TargetModified reports that the target was written since its newest
	// snapshot (its "written" property is non-zero), where the caller can
	// tell.
	TargetModified bool
	Options        Options
}

// Step sends To, incrementally from From, or in full if From is nil.
type Step struct {
	From *Snapshot
	To   Snapshot
}

// Plan is the list of steps that brings the target up to date.
type Plan struct {
	// Base is the newest common snapshot (or source bookmark); nil when the
	// target has none (initial replication).
	Base  *Snapshot
	Steps []Step
	// IntoExisting marks a full first step into a dataset that exists
	// (Options.AllowFullIntoEmpty): the receive must force.
	IntoExisting bool
}

// Full reports whether the first step is a full send.
func (p Plan) Full() bool { return len(p.Steps) > 0 && p.Steps[0].From == nil }

// UpToDate reports whether there is nothing to send.
func (p Plan) UpToDate() bool { return len(p.Steps) == 0 }

// ConflictKind classifies a ConflictError.
type ConflictKind int

// Conflict kinds.
const (
	ConflictNoCommonSnapshot ConflictKind = iota + 1
	ConflictDiverged
	ConflictTargetNotEmpty
	ConflictTargetNewer
	// ConflictSourceLost: the target's snapshots newer than the base are
	// all ones it received from this source (z8r's, of this replication),
	// and the source no longer has them: the *source* lost history (an
	// operator's rollback or destroy, a failback). The target holds the
	// only copy; never resolved automatically.
	ConflictSourceLost
)

func (k ConflictKind) String() string {
	switch k {
	case ConflictNoCommonSnapshot:
		return "NoCommonSnapshot"
	case ConflictDiverged:
		return "Diverged"
	case ConflictTargetNotEmpty:
		return "TargetNotEmpty"
	case ConflictTargetNewer:
		return "TargetNewer"
	case ConflictSourceLost:
		return "SourceLost"
	}
	return fmt.Sprintf("ConflictKind(%d)", int(k))
}

// Sentinels matched by errors.Is on a *ConflictError of the kind.
var (
	ErrNoCommonSnapshot = errors.New("target has no snapshot in common with the source")
	ErrDiverged         = errors.New("target has diverged from the source")
	ErrTargetNotEmpty   = errors.New("target dataset exists without snapshots")
	ErrTargetNewer      = errors.New("target already has a newer snapshot than the one to send")
	ErrSourceLost       = errors.New("source no longer has snapshots the target received from it")
)

// ErrSnapshotMissing: the snapshot ComputeSnapshot was asked to send is not
// a snapshot of the source.
var ErrSnapshotMissing = errors.New("snapshot to send is not on the source")

// ConflictError is why no plan could be made.
type ConflictError struct {
	Kind ConflictKind
	// Base is the newest common snapshot (ConflictDiverged,
	// ConflictSourceLost and ConflictTargetNewer only).
	Base *Snapshot
	// TargetOnly lists the target snapshots newer than Base whose GUID the
	// source lacks, oldest first (ConflictDiverged, ConflictSourceLost:
	// then all Owned), or all target snapshots (ConflictNoCommonSnapshot).
	TargetOnly []Snapshot
	// Modified: the target was written since its newest snapshot
	// (ConflictDiverged only; never set with ConflictSourceLost).
	Modified bool
}

func (e *ConflictError) Error() string {
	switch e.Kind {
	case ConflictNoCommonSnapshot:
		return fmt.Sprintf("%s (target has %s)", ErrNoCommonSnapshot, listNames(e.TargetOnly))
	case ConflictDiverged:
		var why []string
		if len(e.TargetOnly) > 0 {
			why = append(why, "target-only snapshots "+listNames(e.TargetOnly))
		}
		if e.Modified {
			why = append(why, "target written since its newest snapshot")
		}
		return fmt.Sprintf("%s after common snapshot %s: %s", ErrDiverged, e.Base, strings.Join(why, "; "))
	case ConflictTargetNotEmpty:
		return ErrTargetNotEmpty.Error() + ": a full receive would replace its contents"
	case ConflictTargetNewer:
		return fmt.Sprintf("%s (its newest, %s, is newer); ZFS cannot receive an older snapshot after it", ErrTargetNewer, e.Base)
	case ConflictSourceLost:
		return fmt.Sprintf("%s after common snapshot %s: %s exist only on the target", ErrSourceLost, e.Base, listNames(e.TargetOnly))
	}
	return "replication conflict " + e.Kind.String()
}

// Is matches the sentinel of e's Kind.
func (e *ConflictError) Is(target error) bool {
	switch e.Kind {
	case ConflictNoCommonSnapshot:
		return target == ErrNoCommonSnapshot
	case ConflictDiverged:
		return target == ErrDiverged
	case ConflictTargetNotEmpty:
		return target == ErrTargetNotEmpty
	case ConflictTargetNewer:
		return target == ErrTargetNewer
	case ConflictSourceLost:
		return target == ErrSourceLost
	}
	return false
}

func listNames(s []Snapshot) string {
	const max = 10
	parts := make([]string, 0, min(len(s), max+1))
	for i, x := range s {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(s)-max))
			break
		}
		parts = append(parts, x.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Compute plans the replication of one source dataset to one target; see
// the package documentation for the contract.
func Compute(in Input) (Plan, error) {
	src := sorted(in.Source)
	tgt := sorted(snapshotsOnly(in.Target))

	if len(tgt) == 0 {
		if in.TargetExists && !in.Options.AllowFullIntoEmpty {
			return Plan{}, &ConflictError{Kind: ConflictTargetNotEmpty}
		}
		p := Plan{Steps: initialSteps(src, in.Options)}
		p.IntoExisting = in.TargetExists && len(p.Steps) > 0
		return p, nil
	}

	base, targetOnly, ok := common(src, tgt)
	if !ok {
		return Plan{}, &ConflictError{Kind: ConflictNoCommonSnapshot, TargetOnly: tgt}
	}
	if len(targetOnly) > 0 || in.TargetModified {
		return Plan{}, divergence(base, targetOnly, in.TargetModified)
	}
	var send []Snapshot
	for _, s := range src {
		if s.CreateTXG > base.CreateTXG && s.GUID != base.GUID && eligible(s, in.Options) {
			send = append(send, s)
		}
	}
	return Plan{Base: base, Steps: chain(base, send)}, nil
}

// ComputeSnapshot plans sending exactly one source snapshot, named name,
// to the target (a VolumeSnapshot's snapshot, say, rather than a
// dataset's whole history); see the package documentation for the
// contract.
func ComputeSnapshot(in Input, name string) (Plan, error) {
	src := sorted(in.Source)
	var want *Snapshot
	for i := range src {
		if !src[i].Bookmark && src[i].Name == name {
			want = &src[i]
		}
	}
	if want == nil {
		return Plan{}, fmt.Errorf("%w: @%s", ErrSnapshotMissing, name)
	}
	tgt := sorted(snapshotsOnly(in.Target))
	if len(tgt) == 0 {
		if in.TargetExists && !in.Options.AllowFullIntoEmpty {
			return Plan{}, &ConflictError{Kind: ConflictTargetNotEmpty}
		}
		return Plan{Steps: []Step{{To: *want}}, IntoExisting: in.TargetExists}, nil
	}
	base, targetOnly, ok := common(src, tgt)
	for _, t := range tgt {
		if t.GUID == want.GUID {
			// Already there: nothing to send. Base stays the newest common
			// snapshot, which is what the target's protection must cover.
			if ok {
				return Plan{Base: base}, nil
			}
			return Plan{}, nil
		}
	}
	if !ok {
		return Plan{}, &ConflictError{Kind: ConflictNoCommonSnapshot, TargetOnly: tgt}
	}
	if len(targetOnly) > 0 || in.TargetModified {
		return Plan{}, divergence(base, targetOnly, in.TargetModified)
	}
	if base.CreateTXG >= want.CreateTXG {
		return Plan{}, &ConflictError{Kind: ConflictTargetNewer, Base: base}
	}
	return Plan{Base: base, Steps: []Step{{From: base, To: *want}}}, nil
}

// chain links snapshots into steps, the first from base (nil: full).
func chain(base *Snapshot, send []Snapshot) []Step {
	if len(send) == 0 {
		return nil
	}
	steps := make([]Step, len(send))
	for i, s := range send {
		steps[i] = Step{From: base, To: s}
		if i > 0 {
			steps[i].From = &steps[i-1].To
		}
	}
	return steps
}

// Divergence describes a target that has history its source lacks.
type Divergence struct {
	Base       *Snapshot  // newest common snapshot
	TargetOnly []Snapshot // target snapshots newer than Base, oldest first
	Modified   bool       // target written since its newest snapshot
}

// OnlyOwned reports whether every target-only snapshot is z8r's (of this
// replication, as the caller set Owned), so that a rollback to Base
// destroys no snapshot z8r did not create. It says nothing about Modified:
// a rollback also discards writes since the newest snapshot. And when it
// holds with snapshots to destroy, the divergence is SourceLost: those
// snapshots are the only copy left, so OnlyOwned alone never licenses a
// rollback.
func (d *Divergence) OnlyOwned() bool {
	for _, s := range d.TargetOnly {
		if !s.Owned {
			return false
		}
	}
	return true
}

// Kind classifies the divergence as Compute does: ConflictSourceLost when
// the target has snapshots newer than Base, all of them Owned (received
// from this replication), and was not written since; ConflictDiverged
// otherwise (the target grew: foreign snapshots, or writes).
func (d *Divergence) Kind() ConflictKind {
	if len(d.TargetOnly) > 0 && !d.Modified && d.OnlyOwned() {
		return ConflictSourceLost
	}
	return ConflictDiverged
}

// Err returns the *ConflictError Compute returns for this divergence.
func (d *Divergence) Err() *ConflictError {
	return &ConflictError{Kind: d.Kind(), Base: d.Base, TargetOnly: d.TargetOnly, Modified: d.Modified}
}

// divergence is the conflict for a target with snapshots newer than base
// that the source lacks, or written since its newest snapshot.
func divergence(base *Snapshot, targetOnly []Snapshot, modified bool) *ConflictError {
	return (&Divergence{Base: base, TargetOnly: targetOnly, Modified: modified}).Err()
}

// Diverged reports how the target diverged from the source, or nil if it
// did not (including when the two share no snapshot at all, which is
// ErrNoCommonSnapshot rather than divergence).
func Diverged(in Input) *Divergence {
	tgt := sorted(snapshotsOnly(in.Target))
	if len(tgt) == 0 {
		return nil
	}
	base, targetOnly, ok := common(sorted(in.Source), tgt)
	if !ok || (len(targetOnly) == 0 && !in.TargetModified) {
		return nil
	}
	return &Divergence{Base: base, TargetOnly: targetOnly, Modified: in.TargetModified}
}

// common finds the base: the newest target snapshot whose GUID the source
// has, as the source's entry (a snapshot in preference to a bookmark).
// targetOnly are the target snapshots newer than it.
func common(src, tgt []Snapshot) (base *Snapshot, targetOnly []Snapshot, ok bool) {
	byGUID := make(map[uint64]int, len(src))
	for i, s := range src {
		// src is sorted with a bookmark before the snapshot of the same
		// createtxg, so the snapshot wins.
		byGUID[s.GUID] = i
	}
	for t := len(tgt) - 1; t >= 0; t-- {
		if i, found := byGUID[tgt[t].GUID]; found {
			b := src[i]
			return &b, append([]Snapshot(nil), tgt[t+1:]...), true
		}
	}
	return nil, nil, false
}

func initialSteps(src []Snapshot, o Options) []Step {
	var el []Snapshot
	for _, s := range src {
		if eligible(s, o) {
			el = append(el, s)
		}
	}
	if len(el) == 0 {
		return nil
	}
	if !o.InitialAll {
		el = el[len(el)-1:]
	}
	return chain(nil, el)
}

func eligible(s Snapshot, o Options) bool {
	return !s.Bookmark && (s.Owned || o.IncludeForeign)
}

func snapshotsOnly(in []Snapshot) []Snapshot {
	out := make([]Snapshot, 0, len(in))
	for _, s := range in {
		if !s.Bookmark {
			out = append(out, s)
		}
	}
	return out
}

// sorted returns a copy ordered by createtxg, a bookmark before a snapshot
// of the same createtxg, then by name.
func sorted(in []Snapshot) []Snapshot {
	out := append([]Snapshot(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.CreateTXG != b.CreateTXG {
			return a.CreateTXG < b.CreateTXG
		}
		if a.Bookmark != b.Bookmark {
			return a.Bookmark
		}
		return a.Name < b.Name
	})
	return out
}
