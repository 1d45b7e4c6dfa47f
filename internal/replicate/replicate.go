package replicate

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Endpoint is a node's agent as replication needs it: typed ZFS
// operations, and (on a source) transfers straight to another agent.
// *agent.Client implements it.
type Endpoint interface {
	ZFS() *zfsexec.ZFS
	Transfer(ctx context.Context, req agent.TransferRequest, progress func(agent.Progress)) (agent.Result, error)
}

// ReplicaOfProp is the user property z8r sets, locally, on a target
// filesystem right after the first receive into it: the target is z8r's
// replica of the source it names (Target.Origin). Only a target carrying
// it (with readonly=on, unmounted, without snapshots or children) may be
// overwritten by a forced full receive.
const ReplicaOfProp = "z8r.dev:replica-of"

// replicaProps returns the native properties every replica gets on its
// first (full) receive: read-only, so that nothing (not even atime)
// modifies it between incremental receives, and canmount=noauto, so that
// a reboot or `zfs mount -a` does not mount it. They are given to the
// receive (recv -o) where the node supports it, and set again right after
// it everywhere. Promotion (MakeWritable) turns both back.
func replicaProps() map[string]string {
	return map[string]string{"readonly": "on", "canmount": "noauto"}
}

// userProps are the user properties read with every listing.
var userProps = []string{snapname.OwnerProp, snapname.PolicyProp}

// TakeSnapshot creates a z8r-owned snapshot of dataset named after now
// (UTC) and returns its short name. A name already taken in the same
// second gets a suffix.
func TakeSnapshot(ctx context.Context, z *zfsexec.ZFS, dataset, prefix, policyID string, now time.Time) (string, error) {
	base := snapname.New(prefix, now)
	name := base
	for i := 1; ; i++ {
		err := z.Snapshot(ctx, dataset+"@"+name, snapname.Props(policyID))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, zfsexec.ErrSnapshotExists) || i > 20 {
			return "", fmt.Errorf("replicate: snapshot %s@%s: %w", dataset, name, err)
		}
		name = snapname.WithSuffix(base, i)
	}
}

// Listing is one dataset's snapshots as ZFS reports them.
type Listing struct {
	Exists    bool
	Snapshots []zfsexec.Dataset
}

// List reads a dataset's snapshots and bookmarks with z8r's properties.
func List(ctx context.Context, z *zfsexec.ZFS, dataset string) (Listing, error) {
	snaps, err := z.Snapshots(ctx, dataset, userProps...)
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return Listing{}, nil
	}
	if err != nil {
		return Listing{}, err
	}
	return Listing{Exists: true, Snapshots: snaps}, nil
}

// PlanSnapshots converts a listing for package plan. A snapshot is Owned
// only when its locally set properties make it z8r's for the replication
// policyID (snapname.IsOwnedBy): an inherited or received mark, or another
// replication's, never counts.
func PlanSnapshots(l Listing, policyID string) []plan.Snapshot {
	out := make([]plan.Snapshot, 0, len(l.Snapshots))
	for _, d := range l.Snapshots {
		out = append(out, plan.Snapshot{
			Name: d.ShortName(), GUID: d.GUID, CreateTXG: d.CreateTXG, Creation: d.Creation,
			Bookmark: d.IsBookmark(), Owned: snapname.IsOwnedBy(d.LocalProps, policyID),
		})
	}
	return out
}

// Newest returns the newest snapshot (not bookmark) of a listing; with
// ownedOnly, the newest z8r owns (locally set, any replication).
func (l Listing) Newest(ownedOnly bool) *zfsexec.Dataset {
	for i := len(l.Snapshots) - 1; i >= 0; i-- {
		d := l.Snapshots[i]
		if d.IsSnapshot() && (!ownedOnly || snapname.IsOwned(d.LocalProps)) {
			return &d
		}
	}
	return nil
}

// NewestOwnedBy returns the newest snapshot z8r took for the replication
// policyID (snapname.IsOwnedBy), or nil.
func (l Listing) NewestOwnedBy(policyID string) *zfsexec.Dataset {
	for i := len(l.Snapshots) - 1; i >= 0; i-- {
		d := l.Snapshots[i]
		if d.IsSnapshot() && snapname.IsOwnedBy(d.LocalProps, policyID) {
			return &d
		}
	}
	return nil
}

// snapshotByGUID returns the snapshot (not bookmark) of l with guid.
func (l Listing) snapshotByGUID(guid uint64) *zfsexec.Dataset {
	for i := range l.Snapshots {
		if d := &l.Snapshots[i]; d.IsSnapshot() && d.GUID == guid {
			return d
		}
	}
	return nil
}

// byName returns the entry of l with short name short (snapshots only).
func (l *Listing) byName(short string) *zfsexec.Dataset {
	for i := range l.Snapshots {
		if d := &l.Snapshots[i]; d.IsSnapshot() && d.ShortName() == short {
			return d
		}
	}
	return nil
}

// Target is one replica to bring up to date.
type Target struct {
	// ID identifies the target within its replication (hold tags and
	// bookmarks are named after it); stable across restarts.
	ID string
	// PolicyID is the replication the target belongs to, the value of
	// z8r.dev:policy on the snapshots z8r takes for it. It scopes
	// ownership: only source snapshots owned by it count as z8r's (are
	// sent without IncludeForeign), and received ones are marked owned by
	// it on the target. Empty: no snapshot counts as owned.
	PolicyID string
	// Origin names the source (for example "node:dataset"); z8r records it
	// in ReplicaOfProp on the target filesystem after the first receive.
	// Empty means the source dataset's name.
	Origin string
	// Endpoint is the target node's agent, as the controller reaches it.
	Endpoint Endpoint
	// Addr and HostKey are how the source agent reaches the target agent.
	Addr    string
	HostKey string
	// Dataset on the target node.
	Dataset string
	// RollbackDiverged lets a sync resolve a target that grew (history or
	// writes the source does not have: plan.ErrDiverged) by moving the
	// whole target aside, renamed to snapname.DivergedName with every
	// snapshot and write kept, and receiving the source afresh under the
	// original name (Result.MovedAside). Nothing is rolled back or
	// destroyed. A source that lost history (plan.ErrSourceLost) is never
	// resolved automatically.
	RollbackDiverged bool
}

func (t Target) origin(srcDataset string) string {
	if t.Origin != "" {
		return t.Origin
	}
	return srcDataset
}

// Options tune a sync.
type Options struct {
	IncludeForeign bool
	// AllowDecryptedSend lets an encrypted source be sent decrypted when
	// it cannot be sent raw (a node without raw sends, or a replica
	// received decrypted before): its plaintext then crosses the network
	// and lands on the target. Default false: such a sync fails with
	// ErrEncryptedNeedsRaw and sends nothing. Where raw is possible it
	// is used either way.
	AllowDecryptedSend bool
	// RateLimit caps each transfer at that many bytes per second on the
	// source agent (agent.TransferRequest.RateLimit); 0: no cap.
	RateLimit int64
	// Progress, if set, receives transfer progress.
	Progress func(step int, p agent.Progress)
	// Planned, if set, is told before the first transfer of a plan how
	// many steps it has and their estimated stream size in bytes (0 when
	// the source cannot estimate it).
	Planned func(steps int, expectedBytes int64)
	// Admit, if set, is asked once a plan has steps to send, before
	// anything is held or sent; its release runs when the sync ends. An
	// error (a transfer limit reached) ends the sync with that error and
	// nothing changed on either node. Syncs with nothing to send are
	// never asked.
	Admit func(ctx context.Context) (release func(), err error)
	// Trace, if set, receives the time each phase of the sync took:
	// "capabilities", "list", "repair", "plan", "estimate", "step-hold", "transfer",
	// "mark-owned", "protect". Phases on different nodes overlap, so
	// Trace may be called from several goroutines at once.
	Trace func(phase string, d time.Duration)
}

// trace times one phase.
func (o Options) trace(phase string, start time.Time) {
	if o.Trace != nil {
		o.Trace(phase, time.Since(start))
	}
}

// StepResult describes one transfer.
type StepResult struct {
	From, To string
	Bytes    int64
	Duration time.Duration
	Resumed  bool
}

// Result describes a sync of one target.
type Result struct {
	Steps []StepResult
	// Newest is the newest snapshot the target has after the sync.
	Newest     string
	NewestGUID uint64
	// Behind counts snapshots still to send (0 after a successful sync).
	Behind int
	// ProtectedBase is the source snapshot now held for this target.
	ProtectedBase string
	// MovedAside is the name the target was renamed to (on the target
	// node) because it had diverged or was not provably pristine; it keeps
	// every snapshot and write the target had. Empty when nothing moved.
	MovedAside string
	// Repaired lists what the repair pass finished of an interrupted
	// earlier sync (for logs and events), such as "readonly" or "hold".
	Repaired []string
}

// Bytes is the total stream size of the sync.
func (r Result) Bytes() int64 {
	var n int64
	for _, s := range r.Steps {
		n += s.Bytes
	}
	return n
}

// Full reports whether the sync began with a full send.
func (r Result) Full() bool { return len(r.Steps) > 0 && r.Steps[0].From == "" }

// session is one sync of one target: both nodes, their capabilities and
// the listings read at its start (kept current as the sync changes them).
type session struct {
	src        Endpoint
	srcDataset string
	t          Target
	sz, tz     *zfsexec.ZFS
	srcCaps    zfsexec.Capabilities
	tgtCaps    zfsexec.Capabilities
	opts       Options
	srcList    Listing
	tgtList    Listing
	// encChecked: encrypted (the source's encryption property) was read;
	// enc is the send flags of the plan being executed.
	encChecked bool
	encrypted  bool
	enc        encoding
}

func newSession(ctx context.Context, src Endpoint, srcDataset string, t Target, opts Options) (*session, error) {
	s := &session{src: src, srcDataset: srcDataset, t: t, sz: src.ZFS(), tz: t.Endpoint.ZFS(), opts: opts}
	phase := time.Now()
	var err error
	if s.srcCaps, err = s.sz.Capabilities(ctx); err != nil {
		return nil, fmt.Errorf("replicate: source capabilities: %w", err)
	}
	if s.tgtCaps, err = s.tz.Capabilities(ctx); err != nil {
		return nil, fmt.Errorf("replicate: target capabilities: %w", err)
	}
	opts.trace("capabilities", phase)
	return s, nil
}

func (s *session) resumable() bool { return s.srcCaps.ResumableRecv && s.tgtCaps.ResumableRecv }

// list reads both sides, side by side (they are different nodes).
func (s *session) list(ctx context.Context) error {
	phase := time.Now()
	tgtErr := make(chan error, 1)
	go func() {
		var err error
		s.tgtList, err = List(ctx, s.tz, s.t.Dataset)
		tgtErr <- err
	}()
	var err error
	s.srcList, err = List(ctx, s.sz, s.srcDataset)
	if terr := <-tgtErr; terr != nil {
		return fmt.Errorf("replicate: list target %s: %w", s.t.Dataset, terr)
	}
	if err != nil {
		return fmt.Errorf("replicate: list source %s: %w", s.srcDataset, err)
	}
	if !s.srcList.Exists {
		return fmt.Errorf("replicate: source %s: %w", s.srcDataset, zfsexec.ErrDatasetNotExist)
	}
	s.opts.trace("list", phase)
	return nil
}

func (s *session) input(o plan.Options) plan.Input {
	return plan.Input{Source: PlanSnapshots(s.srcList, s.t.PolicyID), Target: PlanSnapshots(s.tgtList, s.t.PolicyID),
		TargetExists: s.tgtList.Exists, Options: o}
}

// SyncTarget brings one target up to date with srcDataset. It first
// finishes whatever an interrupted earlier sync of the same target left
// undone (repair), then plans and runs each step under step holds. On a
// conflict it returns the *plan.ConflictError (errors.Is plan.ErrDiverged,
// plan.ErrSourceLost, ...) and changes nothing on the target, except that
// with t.RollbackDiverged a diverged target is moved aside (never
// destroyed) and received afresh.
//
// Only one sync of a given target may run at a time (the callers
// serialise per target): the repair pass releases the target's step holds
// as left over.
func SyncTarget(ctx context.Context, src Endpoint, srcDataset string, t Target, opts Options) (Result, error) {
	var res Result
	s, err := newSession(ctx, src, srcDataset, t, opts)
	if err != nil {
		return res, err
	}
	// An interrupted resumable receive continues where it stopped.
	if s.resumable() {
		if step, err := s.resume(ctx); err != nil {
			return res, err
		} else if step != nil {
			res.Steps = append(res.Steps, *step)
		}
	}

	for attempt := 0; ; attempt++ {
		if err := s.list(ctx); err != nil {
			return res, err
		}
		if err := s.repair(ctx, &res); err != nil {
			return res, err
		}
		phase := time.Now()
		in := s.input(plan.Options{IncludeForeign: opts.IncludeForeign})
		p, err := plan.Compute(in)
		opts.trace("plan", phase)
		if err != nil {
			if attempt == 0 && t.RollbackDiverged && errors.Is(err, plan.ErrDiverged) {
				if err := s.moveAside(ctx, &res); err != nil {
					return res, err
				}
				continue
			}
			res.Behind = countEligible(in)
			return res, err
		}
		res.Behind = len(p.Steps)
		if err := s.execute(ctx, p, &res); err != nil {
			if errors.Is(err, zfsexec.ErrDestinationModified) {
				// Written since its last snapshot: a divergence the listing
				// could not show (zfs-fuse has no `written`).
				if attempt == 0 && t.RollbackDiverged {
					if err := s.moveAside(ctx, &res); err != nil {
						return res, err
					}
					continue
				}
				return res, &plan.ConflictError{Kind: plan.ConflictDiverged, Base: p.Base, Modified: true}
			}
			return res, err
		}
		return res, nil
	}
}

// countEligible counts the source snapshots a sync would send, for status
// when no plan could be made.
func countEligible(in plan.Input) int {
	n := 0
	for _, s := range in.Source {
		if !s.Bookmark && (s.Owned || in.Options.IncludeForeign) {
			n++
		}
	}
	return n
}

// ensureParent creates the target's parent datasets when missing (the
// target itself is created by the full receive).
func ensureParent(ctx context.Context, z *zfsexec.ZFS, dataset string) error {
	parent := path.Dir(dataset)
	if !strings.Contains(parent, "/") {
		return nil // the pool itself
	}
	ok, err := z.Exists(ctx, parent)
	if err != nil || ok {
		return err
	}
	if err := z.CreateFilesystem(ctx, parent, zfsexec.CreateOptions{Parents: true}); err != nil {
		return fmt.Errorf("replicate: create target parent %s: %w", parent, err)
	}
	return nil
}

// SnapshotOptions tune SyncSnapshot.
type SnapshotOptions struct {
	// AllowFullIntoEmpty lets the first send replace a target dataset that
	// exists without snapshots (a replica whose last snapshot was since
	// destroyed). The replacement is forced (recv -F) only when the target
	// is provably pristine (see Pristine); otherwise the target is moved
	// aside (Result.MovedAside) and received afresh.
	AllowFullIntoEmpty bool
	// Progress, if set, receives transfer progress.
	Progress func(step int, p agent.Progress)
	// Admit is Options.Admit.
	Admit func(ctx context.Context) (release func(), err error)
}

// SyncSnapshot sends exactly the source snapshot srcDataset@snap to t (a
// full send if the target has nothing, else one incremental from the
// target's newest snapshot), then protects it on the source as t's new
// base. Unlike SyncTarget it sends no other snapshot, owned or not. A
// target that already has the snapshot is left as it is. It runs the same
// repair pass and step discipline as SyncTarget. Conflicts are
// *plan.ConflictError (including plan.ErrTargetNewer when the target
// already has a newer snapshot) and change nothing on the target.
func SyncSnapshot(ctx context.Context, src Endpoint, srcDataset, snap string, t Target, opts SnapshotOptions) (Result, error) {
	var res Result
	eopts := Options{Progress: opts.Progress, Admit: opts.Admit}
	s, err := newSession(ctx, src, srcDataset, t, eopts)
	if err != nil {
		return res, err
	}
	if s.resumable() {
		if step, err := s.resume(ctx); err != nil {
			return res, err
		} else if step != nil {
			res.Steps = append(res.Steps, *step)
		}
	}
	if err := s.list(ctx); err != nil {
		return res, err
	}
	if err := s.repair(ctx, &res); err != nil {
		return res, err
	}
	p, err := plan.ComputeSnapshot(s.input(plan.Options{AllowFullIntoEmpty: opts.AllowFullIntoEmpty}), snap)
	if err != nil {
		return res, err
	}
	res.Behind = len(p.Steps)
	if err := s.execute(ctx, p, &res); err != nil {
		if errors.Is(err, zfsexec.ErrDestinationModified) {
			return res, &plan.ConflictError{Kind: plan.ConflictDiverged, Base: p.Base, Modified: true}
		}
		return res, err
	}
	return res, nil
}
