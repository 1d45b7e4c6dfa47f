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
	"github.com/z8r-project/z8r/internal/retention"
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

// PlanSnapshots converts a listing for package plan.
func PlanSnapshots(l Listing) []plan.Snapshot {
	out := make([]plan.Snapshot, 0, len(l.Snapshots))
	for _, d := range l.Snapshots {
		out = append(out, plan.Snapshot{
			Name: d.ShortName(), GUID: d.GUID, CreateTXG: d.CreateTXG, Creation: d.Creation,
			Bookmark: d.IsBookmark(), Owned: snapname.IsOwned(d.LocalProps),
		})
	}
	return out
}

// Newest returns the newest snapshot (not bookmark) of a listing.
func (l Listing) Newest(ownedOnly bool) *zfsexec.Dataset {
	for i := len(l.Snapshots) - 1; i >= 0; i-- {
		d := l.Snapshots[i]
		if d.IsSnapshot() && (!ownedOnly || snapname.IsOwned(d.LocalProps)) {
			return &d
		}
	}
	return nil
}

// Target is one replica to bring up to date.
type Target struct {
	// ID identifies the target within its replication (hold tags and
	// bookmarks are named after it); stable across restarts.
	ID string
	// Endpoint is the target node's agent, as the controller reaches it.
	Endpoint Endpoint
	// Addr and HostKey are how the source agent reaches the target agent.
	Addr    string
	HostKey string
	// Dataset on the target node.
	Dataset string
	// RollbackDiverged allows rolling a diverged target back to the base,
	// destroying only z8r's snapshots there.
	RollbackDiverged bool
}

// Options tune a sync.
type Options struct {
	IncludeForeign bool
	// Progress, if set, receives transfer progress.
	Progress func(step int, p agent.Progress)
	// Trace, if set, receives the time each phase of the sync took:
	// "capabilities", "list", "plan", "transfer", "mark-owned", "protect".
	// Phases on different nodes overlap, so Trace may be called from
	// several goroutines at once.
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
	// RolledBack lists target snapshots destroyed by an allowed rollback.
	RolledBack []string
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

// SyncTarget brings one target up to date with srcDataset. On a conflict
// it returns the *plan.ConflictError (errors.Is plan.ErrDiverged, ...) and
// changes nothing on the target.
func SyncTarget(ctx context.Context, src Endpoint, srcDataset string, t Target, opts Options) (Result, error) {
	var res Result
	sz, tz := src.ZFS(), t.Endpoint.ZFS()
	phase := time.Now()
	srcCaps, err := sz.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("replicate: source capabilities: %w", err)
	}
	tgtCaps, err := tz.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("replicate: target capabilities: %w", err)
	}
	opts.trace("capabilities", phase)
	resumable := srcCaps.ResumableRecv && tgtCaps.ResumableRecv

	// An interrupted resumable receive continues where it stopped.
	if resumable {
		if step, err := resume(ctx, src, t, opts); err != nil {
			return res, err
		} else if step != nil {
			res.Steps = append(res.Steps, *step)
		}
	}

	for attempt := 0; ; attempt++ {
		phase = time.Now()
		// The two listings go to different nodes: run them side by side.
		var tgtList Listing
		tgtErr := make(chan error, 1)
		go func() {
			var err error
			tgtList, err = List(ctx, tz, t.Dataset)
			tgtErr <- err
		}()
		srcList, err := List(ctx, sz, srcDataset)
		if terr := <-tgtErr; terr != nil {
			return res, fmt.Errorf("replicate: list target %s: %w", t.Dataset, terr)
		}
		if err != nil {
			return res, fmt.Errorf("replicate: list source %s: %w", srcDataset, err)
		}
		if !srcList.Exists {
			return res, fmt.Errorf("replicate: source %s: %w", srcDataset, zfsexec.ErrDatasetNotExist)
		}
		opts.trace("list", phase)
		phase = time.Now()
		in := plan.Input{Source: PlanSnapshots(srcList), Target: PlanSnapshots(tgtList), TargetExists: tgtList.Exists,
			Options: plan.Options{IncludeForeign: opts.IncludeForeign}}
		p, err := plan.Compute(in)
		opts.trace("plan", phase)
		if err != nil {
			if attempt == 0 && t.RollbackDiverged && errors.Is(err, plan.ErrDiverged) {
				rolled, rerr := rollback(ctx, tz, t.Dataset, plan.Diverged(in))
				if rerr != nil {
					return res, rerr
				}
				res.RolledBack = rolled
				continue
			}
			res.Behind = countEligible(in)
			return res, err
		}
		res.Behind = len(p.Steps)
		if err := execute(ctx, src, srcDataset, t, p, &srcList, srcCaps, tgtCaps, opts, &res); err != nil {
			var ce *plan.ConflictError
			if attempt == 0 && errors.Is(err, zfsexec.ErrDestinationModified) {
				// Written since its last snapshot: a divergence the listing
				// could not show (zfs-fuse has no `written`).
				if t.RollbackDiverged && p.Base != nil {
					if rerr := tz.Rollback(ctx, t.Dataset+"@"+p.Base.Name, zfsexec.RollbackOptions{}); rerr != nil {
						return res, fmt.Errorf("replicate: roll back modified target: %w", rerr)
					}
					res.RolledBack = append(res.RolledBack, "(changes since @"+p.Base.Name+")")
					continue
				}
				return res, &plan.ConflictError{Kind: plan.ConflictDiverged, Base: p.Base, Modified: true}
			}
			if errors.As(err, &ce) {
				return res, err
			}
			return res, err
		}
		break
	}
	return res, nil
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

func execute(ctx context.Context, src Endpoint, srcDataset string, t Target, p plan.Plan, srcList *Listing, srcCaps, tgtCaps zfsexec.Capabilities, opts Options, res *Result) error {
	sz, tz := src.ZFS(), t.Endpoint.ZFS()
	if p.Base != nil {
		res.Newest, res.NewestGUID = p.Base.Name, p.Base.GUID
		// Make sure the current base is protected (a first run after an
		// upgrade, or a hold lost to a manual release).
		if !p.Base.Bookmark && len(p.Steps) == 0 {
			phase := time.Now()
			if err := protect(ctx, sz, srcCaps, srcDataset, t.ID, p.Base.Name, srcList); err != nil {
				return err
			}
			opts.trace("protect", phase)
			res.ProtectedBase = p.Base.Name
		}
	}
	resumable := srcCaps.ResumableRecv && tgtCaps.ResumableRecv
	for i, step := range p.Steps {
		if p.Full() && i == 0 && !p.IntoExisting {
			if err := ensureParent(ctx, tz, t.Dataset); err != nil {
				return err
			}
		}
		req := agent.TransferRequest{
			Send:          zfsexec.SendOptions{Snapshot: srcDataset + "@" + step.To.Name},
			TargetAddr:    t.Addr,
			TargetHostKey: t.HostKey,
			Recv:          zfsexec.RecvOptions{Target: t.Dataset, Unmounted: true, Resumable: resumable, Force: p.IntoExisting && i == 0},
		}
		if step.From != nil {
			sep := "@"
			if step.From.Bookmark {
				sep = "#"
			}
			req.Send.From = sep + step.From.Name
			req.Recv.Incremental = true
			req.Recv.BaseGUID = step.From.GUID
			if !step.From.Bookmark {
				req.Recv.BaseName = step.From.Name
			}
		} else if tgtCaps.RecvProps {
			req.Recv.SetProps = map[string]string{"readonly": "on"}
		}
		start := time.Now()
		r, err := src.Transfer(ctx, req, func(pr agent.Progress) {
			if opts.Progress != nil {
				opts.Progress(i, pr)
			}
		})
		if err != nil {
			return fmt.Errorf("replicate: send %s@%s to %s: %w", srcDataset, step.To.Name, t.Dataset, err)
		}
		opts.trace("transfer", start)
		phase := time.Now()
		sr := StepResult{To: step.To.Name, Bytes: r.Bytes, Duration: time.Since(start)}
		if step.From != nil {
			sr.From = step.From.Name
		}
		res.Steps = append(res.Steps, sr)
		if step.From == nil && !tgtCaps.RecvProps {
			if err := tz.Set(ctx, t.Dataset, map[string]string{"readonly": "on"}); err != nil {
				return fmt.Errorf("replicate: make target readonly: %w", err)
			}
		}
		// Mark the received snapshot z8r's on the target (one property:
		// ownership) while the source moves the protection: hold the new
		// base, then release the old. The two run on different nodes.
		marked := make(chan error, 1)
		go func() {
			start := time.Now()
			var err error
			if step.To.Owned {
				err = tz.Set(ctx, t.Dataset+"@"+step.To.Name, map[string]string{snapname.OwnerProp: snapname.OwnerValue})
			}
			opts.trace("mark-owned", start)
			marked <- err
		}()
		perr := protect(ctx, sz, srcCaps, srcDataset, t.ID, step.To.Name, srcList)
		opts.trace("protect", phase)
		if err := <-marked; err != nil {
			return fmt.Errorf("replicate: mark received snapshot owned: %w", err)
		}
		if perr != nil {
			return perr
		}
		res.ProtectedBase = step.To.Name
		res.Newest, res.NewestGUID = step.To.Name, step.To.GUID
		res.Behind = len(p.Steps) - i - 1
	}
	return nil
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

// protect holds snap for target id (and bookmarks it where supported), then
// releases the id's hold from every other snapshot. l, when non-nil, is a
// listing of dataset taken earlier in this sync: the snapshots held then
// are the only places the id can hold (z8r's holds are only placed here),
// so no new listing is needed.
func protect(ctx context.Context, z *zfsexec.ZFS, caps zfsexec.Capabilities, dataset, id, snap string, l *Listing) error {
	tag := snapname.HoldTag(id)
	full := dataset + "@" + snap
	if err := z.Hold(ctx, tag, full); err != nil && !errors.Is(err, zfsexec.ErrTagExists) {
		return fmt.Errorf("replicate: hold base %s: %w", full, err)
	}
	if caps.Bookmarks {
		bm := dataset + "#" + snapname.BookmarkName(id, snap)
		if err := z.Bookmark(ctx, full, bm); err != nil && !errors.Is(err, zfsexec.ErrSnapshotExists) && !isExists(err) {
			return fmt.Errorf("replicate: bookmark base %s: %w", full, err)
		}
	}
	return releaseOthers(ctx, z, caps, dataset, id, snap, l)
}

func isExists(err error) bool {
	var ce *zfsexec.CommandError
	return errors.As(err, &ce) && strings.Contains(ce.Stderr, "exists")
}

// releaseOthers removes target id's hold (and bookmark) from every snapshot
// but keep. zfs-fuse cannot list holds, so every held snapshot is tried and
// "no such tag" ignored.
func releaseOthers(ctx context.Context, z *zfsexec.ZFS, caps zfsexec.Capabilities, dataset, id, keep string, l *Listing) error {
	if l == nil {
		fresh, err := List(ctx, z, dataset)
		if err != nil {
			return err
		}
		l = &fresh
	}
	tag := snapname.HoldTag(id)
	for _, d := range l.Snapshots {
		switch {
		case d.IsSnapshot() && d.ShortName() != keep && d.UserRefs > 0:
			if err := z.Release(ctx, tag, d.Name); err != nil && !errors.Is(err, zfsexec.ErrNoSuchTag) && !errors.Is(err, zfsexec.ErrDatasetNotExist) {
				return fmt.Errorf("replicate: release old base %s: %w", d.Name, err)
			}
		case d.IsBookmark():
			t, s, ok := snapname.ParseBookmarkName(d.ShortName())
			if ok && t == tag && s != keep {
				if err := z.Destroy(ctx, d.Name, zfsexec.DestroyOptions{}); err != nil {
					return fmt.Errorf("replicate: drop old base bookmark %s: %w", d.Name, err)
				}
			}
		}
	}
	return nil
}

// Unprotect releases everything target id holds on the source: used when a
// target is removed from the policy.
func Unprotect(ctx context.Context, z *zfsexec.ZFS, dataset, id string) error {
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	return releaseOthers(ctx, z, caps, dataset, id, "", nil)
}

// rollback rolls a diverged target back to its base when every snapshot it
// would destroy is z8r's.
func rollback(ctx context.Context, z *zfsexec.ZFS, dataset string, d *plan.Divergence) ([]string, error) {
	if d == nil || d.Base == nil {
		return nil, &plan.ConflictError{Kind: plan.ConflictNoCommonSnapshot}
	}
	if !d.OnlyOwned() {
		return nil, &plan.ConflictError{Kind: plan.ConflictDiverged, Base: d.Base, TargetOnly: d.TargetOnly, Modified: d.Modified}
	}
	var names []string
	for _, s := range d.TargetOnly {
		names = append(names, s.Name)
	}
	if err := z.Rollback(ctx, dataset+"@"+d.Base.Name, zfsexec.RollbackOptions{DestroyNewer: true}); err != nil {
		return nil, fmt.Errorf("replicate: roll back %s to @%s: %w", dataset, d.Base.Name, err)
	}
	return names, nil
}

// Prune destroys the owned snapshots of dataset that policy does not keep,
// never a held snapshot or one protect names. It returns what it destroyed.
func Prune(ctx context.Context, z *zfsexec.ZFS, dataset string, policy retention.Policy, now time.Time, protect func(short string) bool) ([]string, error) {
	l, err := List(ctx, z, dataset)
	if err != nil || !l.Exists {
		return nil, err
	}
	held := map[string]bool{}
	var snaps []retention.Snapshot
	for _, d := range l.Snapshots {
		if !d.IsSnapshot() {
			continue
		}
		if d.UserRefs > 0 {
			held[d.ShortName()] = true
		}
		owned := snapname.IsOwned(d.LocalProps)
		created := d.Creation
		if _, t, ok := snapname.Parse(d.ShortName()); ok && owned {
			created = t // the controller's clock, as for schedules
		}
		snaps = append(snaps, retention.Snapshot{Name: d.ShortName(), Creation: created, CreateTXG: d.CreateTXG, Owned: owned})
	}
	victims := retention.Prune(snaps, policy, now, func(s retention.Snapshot) bool {
		return held[s.Name] || (protect != nil && protect(s.Name))
	})
	var destroyed []string
	for _, v := range victims {
		err := z.Destroy(ctx, dataset+"@"+v.Name, zfsexec.DestroyOptions{})
		if errors.Is(err, zfsexec.ErrDatasetBusy) {
			continue // held since we listed: keep it
		}
		if err != nil {
			return destroyed, fmt.Errorf("replicate: prune %s@%s: %w", dataset, v.Name, err)
		}
		destroyed = append(destroyed, v.Name)
	}
	return destroyed, nil
}

// SnapshotOptions tune SyncSnapshot.
type SnapshotOptions struct {
	// AllowFullIntoEmpty lets the first send force a receive into a target
	// dataset that exists without snapshots (one z8r created as a replica
	// and whose last snapshot was since destroyed).
	AllowFullIntoEmpty bool
	// Progress, if set, receives transfer progress.
	Progress func(step int, p agent.Progress)
}

// SyncSnapshot sends exactly the source snapshot srcDataset@snap to t (a
// full send if the target has nothing, else one incremental from the
// target's newest snapshot), then protects it on the source as t's new
// base. Unlike SyncTarget it sends no other snapshot, owned or not. A
// target that already has the snapshot is left as it is. Conflicts are
// *plan.ConflictError (including plan.ErrTargetNewer when the target
// already has a newer snapshot) and change nothing on the target.
func SyncSnapshot(ctx context.Context, src Endpoint, srcDataset, snap string, t Target, opts SnapshotOptions) (Result, error) {
	var res Result
	sz, tz := src.ZFS(), t.Endpoint.ZFS()
	srcCaps, err := sz.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("replicate: source capabilities: %w", err)
	}
	tgtCaps, err := tz.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("replicate: target capabilities: %w", err)
	}
	eopts := Options{Progress: opts.Progress}
	if srcCaps.ResumableRecv && tgtCaps.ResumableRecv {
		if step, err := resume(ctx, src, t, eopts); err != nil {
			return res, err
		} else if step != nil {
			res.Steps = append(res.Steps, *step)
		}
	}
	srcList, err := List(ctx, sz, srcDataset)
	if err != nil {
		return res, fmt.Errorf("replicate: list source %s: %w", srcDataset, err)
	}
	if !srcList.Exists {
		return res, fmt.Errorf("replicate: source %s: %w", srcDataset, zfsexec.ErrDatasetNotExist)
	}
	tgtList, err := List(ctx, tz, t.Dataset)
	if err != nil {
		return res, fmt.Errorf("replicate: list target %s: %w", t.Dataset, err)
	}
	p, err := plan.ComputeSnapshot(plan.Input{Source: PlanSnapshots(srcList), Target: PlanSnapshots(tgtList), TargetExists: tgtList.Exists,
		Options: plan.Options{AllowFullIntoEmpty: opts.AllowFullIntoEmpty}}, snap)
	if err != nil {
		return res, err
	}
	res.Behind = len(p.Steps)
	if err := execute(ctx, src, srcDataset, t, p, &srcList, srcCaps, tgtCaps, eopts, &res); err != nil {
		if errors.Is(err, zfsexec.ErrDestinationModified) {
			return res, &plan.ConflictError{Kind: plan.ConflictDiverged, Base: p.Base, Modified: true}
		}
		return res, err
	}
	return res, nil
}

// Protect holds dataset@snap for target id (and bookmarks it where the
// node can), then releases id's hold from every other snapshot of dataset:
// the incremental base moves to snap.
func Protect(ctx context.Context, z *zfsexec.ZFS, dataset, id, snap string) error {
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	return protect(ctx, z, caps, dataset, id, snap, nil)
}

// Release removes target id's hold from one snapshot (dataset@short); a
// snapshot without that hold is not an error. A snapshot marked for
// deferred destruction goes when its last hold does.
func Release(ctx context.Context, z *zfsexec.ZFS, snapshot, id string) error {
	err := z.Release(ctx, snapname.HoldTag(id), snapshot)
	if err != nil && !errors.Is(err, zfsexec.ErrNoSuchTag) && !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return fmt.Errorf("replicate: release %s: %w", snapshot, err)
	}
	return nil
}
