package replicate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Failpoints on a step, in the order a step reaches them (package
// failpoint; the chaos suite arms them to kill the process there).
const (
	FailAfterStepHold = "replicate.after-step-hold"
	FailAfterRecv     = "replicate.after-recv"
	FailAfterBaseHold = "replicate.after-base-hold"
	FailMidPrune      = "replicate.mid-prune"
)

// execute runs the plan's steps, each under zrepl's step discipline:
//
//  1. source: hold from (a snapshot) and to with the step tag;
//  2. transfer (a full receive into an existing dataset only when that
//     dataset is provably pristine; otherwise it is moved aside first);
//  3. target: record the replica (first receive: ReplicaOfProp,
//     readonly=on and canmount=noauto), mark to owned by
//     the policy (when it is the policy's on the source), hold it with the
//     replica tag and release that tag from from;
//  4. source: hold to with the base tag (and bookmark it), then release the
//     base tag from every other snapshot and the step tag from every held
//     one (from and to, and any a crash left), side by side.
//
// A crash anywhere leaves to protected on the source (step or base hold)
// and is finished by the next sync's repair pass.
func (s *session) execute(ctx context.Context, p plan.Plan, res *Result) error {
	if p.Base != nil {
		res.Newest, res.NewestGUID = p.Base.Name, p.Base.GUID
		// Make sure the current base is protected (a first run after an
		// upgrade, or a hold lost to a manual release).
		if !p.Base.Bookmark && len(p.Steps) == 0 {
			phase := time.Now()
			// Step holds a crash left after the target's side finished go
			// with the old base holds.
			steps := heldReleases(&s.srcList, snapname.StepHoldTag(s.t.ID), "")
			if err := protect(ctx, s.sz, s.srcCaps, s.srcDataset, s.t.ID, p.Base.Name, &s.srcList, steps...); err != nil {
				return err
			}
			s.opts.trace("protect", phase)
			res.ProtectedBase = p.Base.Name
		}
	}
	if len(p.Steps) > 0 {
		// The send flags, before anything is held or sent: a refusal
		// (ErrEncryptedNeedsRaw) leaves nothing behind.
		var err error
		if s.enc, err = s.encoding(ctx, p); err != nil {
			return err
		}
		if s.opts.Admit != nil {
			release, err := s.opts.Admit(ctx)
			if err != nil {
				return err
			}
			defer release()
		}
	}
	if s.opts.Planned != nil && len(p.Steps) > 0 {
		s.opts.Planned(len(p.Steps), s.estimate(ctx, p))
	}
	stepTag := snapname.StepHoldTag(s.t.ID)
	for i, step := range p.Steps {
		phase := time.Now()
		holds := []func() error{func() error { return s.hold(ctx, s.sz, &s.srcList, s.srcDataset, step.To.Name, stepTag) }}
		if step.From != nil && !step.From.Bookmark {
			holds = append(holds, func() error { return s.hold(ctx, s.sz, &s.srcList, s.srcDataset, step.From.Name, stepTag) })
		}
		if err := parallel(holds...); err != nil {
			return fmt.Errorf("replicate: step hold: %w", err)
		}
		s.opts.trace("step-hold", phase)
		failpoint.Hit(FailAfterStepHold)

		force := false
		if i == 0 && step.From == nil {
			var err error
			if force, err = s.prepareFull(ctx, p.IntoExisting, res); err != nil {
				return err
			}
		}
		req := agent.TransferRequest{
			Send:          s.enc.apply(stepSend(s.srcDataset, step)),
			TargetAddr:    s.t.Addr,
			TargetHostKey: s.t.HostKey,
			Recv:          zfsexec.RecvOptions{Target: s.t.Dataset, Unmounted: true, Resumable: s.resumable(), Force: force},
			RateLimit:     s.opts.RateLimit,
		}
		if step.From != nil {
			req.Recv.Incremental = true
			req.Recv.BaseGUID = step.From.GUID
			if !step.From.Bookmark {
				req.Recv.BaseName = step.From.Name
			}
		} else if s.tgtCaps.RecvProps {
			req.Recv.SetProps = replicaProps()
		}
		start := time.Now()
		r, err := s.src.Transfer(ctx, req, func(pr agent.Progress) {
			if s.opts.Progress != nil {
				s.opts.Progress(i, pr)
			}
		})
		if err != nil {
			err = fmt.Errorf("replicate: send %s@%s to %s: %w", s.srcDataset, step.To.Name, s.t.Dataset, err)
			if refusedByReceiver(err) {
				// Nothing was received: the step holds protect nothing.
				// Any other failure may have committed the receive, and
				// they stay for the next sync's repair pass.
				return errors.Join(err, s.releaseStep(ctx, step))
			}
			return err
		}
		s.opts.trace("transfer", start)
		failpoint.Hit(FailAfterRecv)

		sr := StepResult{To: step.To.Name, Bytes: r.Bytes, Duration: time.Since(start)}
		from := ""
		if step.From != nil {
			sr.From = step.From.Name
			if !step.From.Bookmark {
				from = step.From.Name
			}
		}
		res.Steps = append(res.Steps, sr)
		if err := s.finishStep(ctx, from, step.To, step.From == nil); err != nil {
			return err
		}
		res.ProtectedBase = step.To.Name
		res.Newest, res.NewestGUID = step.To.Name, step.To.GUID
		res.Behind = len(p.Steps) - i - 1
	}
	return nil
}

// refusedByReceiver reports whether a transfer failed because the target
// refused the stream before receiving anything (the checks zfs recv and
// zfsexec.Recv make first), so that no receive can have committed.
func refusedByReceiver(err error) bool {
	for _, e := range []error{zfsexec.ErrDestinationModified, zfsexec.ErrIncrementalMismatch, zfsexec.ErrDestinationExists,
		zfsexec.ErrDestinationHasSnapshots, zfsexec.ErrBaseMissing} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// releaseStep releases the step tag from a step's from and to.
func (s *session) releaseStep(ctx context.Context, step plan.Step) error {
	tag := snapname.StepHoldTag(s.t.ID)
	if step.From != nil && !step.From.Bookmark {
		if err := releaseTag(ctx, s.sz, tag, s.srcDataset+"@"+step.From.Name); err != nil {
			return fmt.Errorf("replicate: release step hold: %w", err)
		}
	}
	if err := releaseTag(ctx, s.sz, tag, s.srcDataset+"@"+step.To.Name); err != nil {
		return fmt.Errorf("replicate: release step hold: %w", err)
	}
	return nil
}

// finishStep does everything after a confirmed receive of to (from is the
// incremental source snapshot's name, "" for a full send or a bookmark
// source): the target's side (replica mark, readonly, ownership, replica
// hold) runs beside the source's new base hold; then the old base hold
// and the step holds go. Every operation is idempotent; the repair pass
// finishes a step a crash interrupted the same way.
func (s *session) finishStep(ctx context.Context, from string, to plan.Snapshot, full bool) error {
	phase := time.Now()
	marked := make(chan error, 1)
	go func() {
		start := time.Now()
		marked <- s.finishTarget(ctx, from, to, full)
		s.opts.trace("mark-owned", start)
	}()
	herr := s.holdBase(ctx, to.Name)
	if err := <-marked; err != nil {
		return err
	}
	if herr != nil {
		return herr
	}
	failpoint.Hit(FailAfterBaseHold)
	// The step tag goes from every held snapshot, not only from and to:
	// a step a crash interrupted after the target's side finished may
	// have left it on an older one. The releases run together with the
	// old base's.
	steps := heldReleases(&s.srcList, snapname.StepHoldTag(s.t.ID), "")
	if err := releaseOthers(ctx, s.sz, s.srcCaps, s.srcDataset, s.t.ID, to.Name, &s.srcList, steps...); err != nil {
		return err
	}
	s.opts.trace("protect", phase)
	return nil
}

// finishTarget records the received snapshot to on the target.
func (s *session) finishTarget(ctx context.Context, from string, to plan.Snapshot, full bool) error {
	tz, ds := s.tz, s.t.Dataset
	if full {
		// First, before the hold and the ownership mark that tell the
		// repair pass the step finished. readonly=on and canmount=noauto
		// again where the receive set them (-o): a resumed receive may not
		// have, zfs-fuse cannot (no recv -o), and a local value is what
		// Pristine reads.
		props := replicaProps()
		props[ReplicaOfProp] = s.t.origin(s.srcDataset)
		if err := tz.Set(ctx, ds, props); err != nil {
			return fmt.Errorf("replicate: mark target a readonly replica: %w", err)
		}
	}
	tag := snapname.ReplicaHoldTag(s.t.ID)
	// The mark and the hold are independent: they go side by side.
	ops := []func() error{func() error {
		if err := tz.Hold(ctx, tag, ds+"@"+to.Name); err != nil && !errors.Is(err, zfsexec.ErrTagExists) {
			return fmt.Errorf("replicate: hold received snapshot %s@%s: %w", ds, to.Name, err)
		}
		return nil
	}}
	if to.Owned && s.t.PolicyID != "" {
		// One `zfs set` per property (zfs-fuse takes one): side by side.
		for k, v := range snapname.Props(s.t.PolicyID) {
			ops = append(ops, func() error {
				if err := tz.Set(ctx, ds+"@"+to.Name, map[string]string{k: v}); err != nil {
					return fmt.Errorf("replicate: mark received snapshot owned: %w", err)
				}
				return nil
			})
		}
	}
	if err := parallel(ops...); err != nil {
		return err
	}
	// Then the tag leaves every other held snapshot: from, or the
	// target's newest before an incremental from a source bookmark, or
	// an earlier step's to. The listing (kept current here) knows every
	// candidate.
	l := &s.tgtList
	rs := heldReleases(l, tag, to.Name)
	if from != "" && from != to.Name && l.byName(from) == nil {
		rs = append(rs, release{tag, ds + "@" + from})
	}
	if err := releaseAll(ctx, tz, rs); err != nil {
		return fmt.Errorf("replicate: release previous replica hold: %w", err)
	}
	for i := range l.Snapshots {
		if d := &l.Snapshots[i]; d.ShortName() != to.Name {
			d.UserRefs = 0 // not ours any more; other holds do not matter here
		}
	}
	if d := l.byName(to.Name); d != nil {
		d.UserRefs++
	} else {
		l.Exists = true
		l.Snapshots = append(l.Snapshots, zfsexec.Dataset{Name: ds + "@" + to.Name, Type: zfsexec.TypeSnapshot,
			GUID: to.GUID, CreateTXG: to.CreateTXG, UserRefs: 1})
	}
	return nil
}

// holdBase holds snap on the source with the base tag and bookmarks it
// where the node can.
func (s *session) holdBase(ctx context.Context, snap string) error {
	if err := s.hold(ctx, s.sz, &s.srcList, s.srcDataset, snap, snapname.HoldTag(s.t.ID)); err != nil {
		return fmt.Errorf("replicate: hold base: %w", err)
	}
	return bookmarkBase(ctx, s.sz, s.srcCaps, s.srcDataset, s.t.ID, snap)
}

// releaseStepHolds releases the target's step tag from every source
// snapshot that has holds (zfs-fuse cannot list tags; "no such tag" is
// ignored).
func (s *session) releaseStepHolds(ctx context.Context) error {
	return releaseTagFromHeld(ctx, s.sz, snapname.StepHoldTag(s.t.ID), &s.srcList, "")
}

// hold places tag on dataset@short (a tag already there is fine) and
// records in l that the snapshot is held.
func (s *session) hold(ctx context.Context, z *zfsexec.ZFS, l *Listing, dataset, short, tag string) error {
	err := z.Hold(ctx, tag, dataset+"@"+short)
	if err != nil && !errors.Is(err, zfsexec.ErrTagExists) {
		return fmt.Errorf("hold %s on %s@%s: %w", tag, dataset, short, err)
	}
	if d := l.byName(short); d != nil && d.UserRefs == 0 {
		d.UserRefs = 1
	}
	return nil
}

// releaseTag releases tag from snap; an absent tag or snapshot is fine.
func releaseTag(ctx context.Context, z *zfsexec.ZFS, tag, snap string) error {
	err := z.Release(ctx, tag, snap)
	if err != nil && !errors.Is(err, zfsexec.ErrNoSuchTag) && !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return err
	}
	return nil
}

// releaseTagFromHeld releases tag from every held snapshot of l but keep.
func releaseTagFromHeld(ctx context.Context, z *zfsexec.ZFS, tag string, l *Listing, keep string) error {
	return releaseAll(ctx, z, heldReleases(l, tag, keep))
}

// release is one `zfs release TAG SNAP`.
type release struct{ tag, snap string }

// heldReleases lists releasing tag from every snapshot of l that has
// holds, but keep (zfs-fuse cannot tell which tags are where).
func heldReleases(l *Listing, tag, keep string) []release {
	var rs []release
	for _, d := range l.Snapshots {
		if d.IsSnapshot() && d.UserRefs > 0 && d.ShortName() != keep {
			rs = append(rs, release{tag, d.Name})
		}
	}
	return rs
}

// releaseWidth is how many releases run at once: each is a round trip to
// the node's agent, and they are independent.
const releaseWidth = 4

// releaseAll runs the releases, releaseWidth at a time; an absent tag or
// snapshot is fine.
func releaseAll(ctx context.Context, z *zfsexec.ZFS, rs []release) error {
	fns := make([]func() error, len(rs))
	for i, r := range rs {
		fns[i] = func() error {
			if err := releaseTag(ctx, z, r.tag, r.snap); err != nil {
				return fmt.Errorf("replicate: release %s from %s: %w", r.tag, r.snap, err)
			}
			return nil
		}
	}
	return parallelN(releaseWidth, fns...)
}

// parallel runs fns side by side and joins their errors.
func parallel(fns ...func() error) error { return parallelN(len(fns), fns...) }

// parallelN runs fns at most width at a time and joins their errors.
func parallelN(width int, fns ...func() error) error {
	if len(fns) == 1 {
		return fns[0]()
	}
	sem := make(chan struct{}, max(width, 1))
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prepareFull readies the target for the first (full) step and reports
// whether the receive must force. A target that does not exist gets its
// parents. An existing one (the plan's IntoExisting) is overwritten only
// when Pristine says so; otherwise it is moved aside and the receive is a
// plain one into the now missing name.
func (s *session) prepareFull(ctx context.Context, intoExisting bool, res *Result) (bool, error) {
	if !intoExisting {
		return false, ensureParent(ctx, s.tz, s.t.Dataset)
	}
	ok, err := Pristine(ctx, s.tz, s.t.Dataset, s.t.origin(s.srcDataset))
	if err != nil {
		return false, err
	}
	if ok {
		return true, nil
	}
	return false, s.moveAside(ctx, res)
}

// Pristine reports whether the existing filesystem dataset may be replaced
// by a forced full receive (zfs recv -F) without losing anything: z8r set
// ReplicaOfProp=origin on it locally, it is readonly=on (so it was never
// made writable since z8r received into it; zfs-fuse has no `written` to
// prove more), not mounted, and has no snapshots and no children. It is
// checked right before the receive.
func Pristine(ctx context.Context, z *zfsexec.ZFS, dataset, origin string) (bool, error) {
	p, err := z.Get(ctx, dataset, ReplicaOfProp, "readonly", "mounted", "type")
	if err != nil {
		return false, fmt.Errorf("replicate: inspect %s: %w", dataset, err)
	}
	if p["type"].Value != string(zfsexec.TypeFilesystem) || p[ReplicaOfProp].Source != "local" || p[ReplicaOfProp].Value != origin ||
		p["readonly"].Value != "on" || p["mounted"].Value != "no" {
		return false, nil
	}
	below, err := z.List(ctx, dataset, zfsexec.ListOptions{Depth: 1})
	if err != nil {
		return false, fmt.Errorf("replicate: inspect %s: %w", dataset, err)
	}
	for _, d := range below {
		if d.Name != dataset {
			return false, nil
		}
	}
	return true, nil
}

// moveAside renames the target to snapname.DivergedName beside itself,
// keeping every snapshot and write (unmounted first, never forced: a
// target in use is not moved and the sync fails), after releasing the
// replica holds z8r
// placed there (the moved-aside copy is not a replica z8r tracks, and a
// hold nobody tracks would leak). A crash between the two leaves the
// target unheld, which the next repair pass re-holds.
func (s *session) moveAside(ctx context.Context, res *Result) error {
	if s.tgtList.Exists {
		if err := releaseTagFromHeld(ctx, s.tz, snapname.ReplicaHoldTag(s.t.ID), &s.tgtList, ""); err != nil {
			return err
		}
	}
	// zfs-fuse renames only unmounted filesystems; an unforced unmount
	// fails on one in use, which then stays where it is.
	p, err := s.tz.Get(ctx, s.t.Dataset, "mounted")
	if err != nil {
		return fmt.Errorf("replicate: move %s aside: %w", s.t.Dataset, err)
	}
	if p["mounted"].Value == "yes" {
		if err := s.tz.Unmount(ctx, s.t.Dataset); err != nil {
			return fmt.Errorf("replicate: move %s aside: unmount: %w", s.t.Dataset, err)
		}
	}
	name := snapname.DivergedName(s.t.Dataset, time.Now())
	if err := renameAfterUnmount(ctx, s.tz, s.t.Dataset, name); err != nil {
		return fmt.Errorf("replicate: move %s aside to %s: %w", s.t.Dataset, name, err)
	}
	res.MovedAside = name
	s.tgtList = Listing{}
	return nil
}

// renameAfterUnmount renames src to dst, retrying for up to about 15
// seconds while ZFS calls src busy: on zfs-fuse a rename right after an
// unmount (and after recent writes) fails with "dataset is busy" for
// several seconds; measured up to about 8 s on the test bed.
func renameAfterUnmount(ctx context.Context, z *zfsexec.ZFS, src, dst string) error {
	delay := 100 * time.Millisecond
	for i := 0; ; i++ {
		err := z.Rename(ctx, src, dst)
		if err == nil || !errors.Is(err, zfsexec.ErrDatasetBusy) || i == 18 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// protect holds snap for target id (and bookmarks it where supported), then
// releases the id's hold from every other snapshot. l, when non-nil, is a
// listing of dataset taken earlier in this sync, kept current by the
// sync's own holds: the snapshots held there are the only places the id
// can hold (z8r's holds are only placed here), so no new listing is
// needed.
func protect(ctx context.Context, z *zfsexec.ZFS, caps zfsexec.Capabilities, dataset, id, snap string, l *Listing, extra ...release) error {
	tag := snapname.HoldTag(id)
	full := dataset + "@" + snap
	if err := z.Hold(ctx, tag, full); err != nil && !errors.Is(err, zfsexec.ErrTagExists) {
		return fmt.Errorf("replicate: hold base %s: %w", full, err)
	}
	if l != nil {
		if d := l.byName(snap); d != nil && d.UserRefs == 0 {
			d.UserRefs = 1
		}
	}
	if err := bookmarkBase(ctx, z, caps, dataset, id, snap); err != nil {
		return err
	}
	return releaseOthers(ctx, z, caps, dataset, id, snap, l, extra...)
}

// bookmarkBase bookmarks dataset@snap for target id where the node has
// bookmarks.
func bookmarkBase(ctx context.Context, z *zfsexec.ZFS, caps zfsexec.Capabilities, dataset, id, snap string) error {
	if !caps.Bookmarks {
		return nil
	}
	full := dataset + "@" + snap
	bm := dataset + "#" + snapname.BookmarkName(id, snap)
	if err := z.Bookmark(ctx, full, bm); err != nil && !errors.Is(err, zfsexec.ErrBookmarkExists) && !errors.Is(err, zfsexec.ErrSnapshotExists) {
		return fmt.Errorf("replicate: bookmark base %s: %w", full, err)
	}
	return nil
}

// releaseOthers moves target id's protection to keep: it removes id's base
// hold from every other snapshot (together with the extra releases) and
// destroys id's own bookmarks of other
// snapshots, but only those older (createtxg) than keep, and never one
// whose GUID is keep's. Bookmarks of other targets (another tag) are never
// touched, whatever snapshot they mark: they are those targets' bases.
// zfs-fuse cannot list holds, so every held snapshot is tried and "no such
// tag" ignored.
func releaseOthers(ctx context.Context, z *zfsexec.ZFS, caps zfsexec.Capabilities, dataset, id, keep string, l *Listing, extra ...release) error {
	if l == nil {
		fresh, err := List(ctx, z, dataset)
		if err != nil {
			return err
		}
		l = &fresh
	}
	tag := snapname.HoldTag(id)
	if err := releaseAll(ctx, z, append(heldReleases(l, tag, keep), extra...)); err != nil {
		return err
	}
	if !caps.Bookmarks {
		return nil
	}
	k := l.byName(keep)
	if k == nil || k.CreateTXG == 0 {
		return nil // keep's place in history is unknown: destroy nothing
	}
	for _, d := range l.Snapshots {
		if !d.IsBookmark() {
			continue
		}
		t, snap, ok := snapname.ParseBookmarkName(d.ShortName())
		if !ok || t != tag || snap == keep || d.GUID == k.GUID || d.CreateTXG >= k.CreateTXG {
			continue
		}
		if err := z.Destroy(ctx, d.Name, zfsexec.DestroyOptions{}); err != nil {
			return fmt.Errorf("replicate: drop old base bookmark %s: %w", d.Name, err)
		}
	}
	return nil
}

// Unprotect releases everything target id holds on the source (its base
// and step holds) when the target is removed from the policy. It keeps
// the target's bookmark (OpenZFS), so that re-adding the same target
// finds a common base without a full send; a bookmark costs no space.
func Unprotect(ctx context.Context, z *zfsexec.ZFS, dataset, id string) error {
	l, err := List(ctx, z, dataset)
	if err != nil || !l.Exists {
		return err
	}
	for _, tag := range []string{snapname.HoldTag(id), snapname.StepHoldTag(id)} {
		if err := releaseTagFromHeld(ctx, z, tag, &l, ""); err != nil {
			return err
		}
	}
	return nil
}

// UnprotectReplica releases the replica hold z8r placed for target id on
// the target dataset (the last received snapshot), when the target is
// removed from the policy. The replica and its snapshots stay.
func UnprotectReplica(ctx context.Context, z *zfsexec.ZFS, dataset, id string) error {
	l, err := List(ctx, z, dataset)
	if err != nil || !l.Exists {
		return err
	}
	return releaseTagFromHeld(ctx, z, snapname.ReplicaHoldTag(id), &l, "")
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
	if err := releaseTag(ctx, z, snapname.HoldTag(id), snapshot); err != nil {
		return fmt.Errorf("replicate: release %s: %w", snapshot, err)
	}
	return nil
}

// ReleaseReplica removes target id's replica hold from one snapshot on the
// target (dataset@short); a snapshot without that hold is not an error. A
// replica marked for deferred destruction goes when its last hold does.
func ReleaseReplica(ctx context.Context, z *zfsexec.ZFS, snapshot, id string) error {
	if err := releaseTag(ctx, z, snapname.ReplicaHoldTag(id), snapshot); err != nil {
		return fmt.Errorf("replicate: release replica %s: %w", snapshot, err)
	}
	return nil
}

// stepSend is the send of one step: a full stream, or incremental from a
// snapshot or a bookmark.
func stepSend(srcDataset string, step plan.Step) zfsexec.SendOptions {
	o := zfsexec.SendOptions{Snapshot: srcDataset + "@" + step.To.Name}
	if step.From != nil {
		sep := "@"
		if step.From.Bookmark {
			sep = "#"
		}
		o.From = sep + step.From.Name
	}
	return o
}

// estimate is the expected stream size of p's steps as the source
// estimates them (zfsexec.SendSize), 0 when it cannot estimate every step
// (zfs-fuse's incrementals). It only informs progress: a failure is no
// reason not to send.
func (s *session) estimate(ctx context.Context, p plan.Plan) int64 {
	defer s.opts.trace("estimate", time.Now())
	var total int64
	for _, step := range p.Steps {
		n, err := s.sz.SendSize(ctx, s.enc.apply(stepSend(s.srcDataset, step)))
		if err != nil {
			return 0
		}
		total += n
	}
	return total
}
