package replicate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// repair finishes, idempotently, what an interrupted earlier sync of this
// target left undone, before anything is planned. A sync can die anywhere
// after a receive committed (the controller killed, its connection
// dropped): the target then has the new snapshot but maybe not readonly,
// the replica mark, the ownership mark or the replica hold, and the source
// still has the step holds and the old base hold.
//
// What makes the target z8r's replica is decided only from facts z8r set:
// the source snapshot with the GUID of the target's newest snapshot still
// carries this target's step hold (a step was in flight), or the target
// filesystem carries ReplicaOfProp=origin set locally, or the target's
// newest snapshot is locally marked owned and is, by GUID, a snapshot z8r
// took for this replication on the source. Then:
//
//   - the step in flight is finished as execute would have: ownership
//     mark, replica hold (released from the target's other snapshots),
//     the base hold moved to that snapshot on the source; and, only when
//     that step's receive committed (no newer source snapshot carries the
//     step tag: the target's newest is the step's to, not its from), the
//     replica mark, and readonly=on with canmount=noauto (only while the
//     target is not mounted: a mounted, writable replica is a promoted
//     one, not an unfinished receive);
//   - outside a step in flight, a missing ownership mark or replica hold
//     on the newest snapshot is restored (readonly is left alone: a
//     replica made writable after its step finished is the operator's
//     choice, and an incremental receive will report it as modified).
//
// Last, the target's step holds are released from the source wherever no
// received snapshot needs them any more.
func (s *session) repair(ctx context.Context, res *Result) error {
	phase := time.Now()
	defer s.opts.trace("repair", phase)
	var newest *zfsexec.Dataset
	if s.tgtList.Exists {
		newest = s.tgtList.Newest(false)
	}
	if newest == nil {
		// Nothing received yet (or moved aside): a step hold left on the
		// source belongs to a transfer that never committed.
		return s.releaseStepHolds(ctx)
	}
	srcSnap := s.srcList.snapshotByGUID(newest.GUID)
	if srcSnap == nil {
		// The target's newest is not a source snapshot (diverged, or its
		// base is a bookmark): no step of ours can have ended there.
		return s.releaseStepHolds(ctx)
	}
	srcOwned := snapname.IsOwnedBy(srcSnap.LocalProps, s.t.PolicyID)
	needOwner := srcOwned && !snapname.IsOwnedBy(newest.LocalProps, s.t.PolicyID)
	needHold := newest.UserRefs == 0
	if !needOwner && !needHold {
		// The target's side of the last step finished (the marks and the
		// hold come after the receive, readonly first). What the source's
		// side may have left (the base hold not moved, step holds) is
		// finished by this sync's protect or next step, which move the
		// base to the target's newest and sweep the step tag. A crash
		// between the hold on the newest and the release from the
		// previous snapshot leaves the replica tag on both: it leaves
		// every older held snapshot here (only z8r's tag; none is held in
		// the steady state, so this usually runs nothing).
		return releaseTagFromHeld(ctx, s.tz, snapname.ReplicaHoldTag(s.t.ID), &s.tgtList, newest.ShortName())
	}
	inFlight, err := s.stepHeld(ctx, srcSnap)
	if err != nil {
		return err
	}
	// The receive of the step in flight committed when no newer source
	// snapshot carries the step tag too (a step holds from and to; the
	// target's newest is to once its receive committed, from before).
	committed := inFlight
	for i := range s.srcList.Snapshots {
		if d := &s.srcList.Snapshots[i]; committed && d.IsSnapshot() && d.CreateTXG > srcSnap.CreateTXG {
			held, err := s.stepHeld(ctx, d)
			if err != nil {
				return err
			}
			committed = !held
		}
	}
	ds := s.t.Dataset
	fs, err := s.tz.Get(ctx, ds, ReplicaOfProp, "readonly", "mounted")
	if err != nil {
		return fmt.Errorf("replicate: repair: inspect target %s: %w", ds, err)
	}
	origin := s.t.origin(s.srcDataset)
	marked := fs[ReplicaOfProp].Source == "local" && fs[ReplicaOfProp].Value == origin
	received := srcOwned && snapname.IsOwned(newest.LocalProps)
	if !inFlight && !marked && !received {
		return nil // not provably z8r's replica: touch nothing there
	}
	repaired := func(what string) {
		if !slices.Contains(res.Repaired, what) {
			res.Repaired = append(res.Repaired, what)
		}
	}
	if !marked && (committed || fs["readonly"].Value == "on") {
		if err := s.tz.Set(ctx, ds, map[string]string{ReplicaOfProp: origin}); err != nil {
			return fmt.Errorf("replicate: repair: mark target a replica: %w", err)
		}
		repaired("replica-of")
	}
	if committed && fs["readonly"].Value != "on" && fs["mounted"].Value == "no" {
		if err := s.tz.Set(ctx, ds, replicaProps()); err != nil {
			return fmt.Errorf("replicate: repair: make target readonly: %w", err)
		}
		repaired("readonly")
	}
	if needOwner && s.t.PolicyID != "" {
		if err := s.tz.Set(ctx, newest.Name, snapname.Props(s.t.PolicyID)); err != nil {
			return fmt.Errorf("replicate: repair: mark %s owned: %w", newest.Name, err)
		}
		if newest := s.tgtList.byName(newest.ShortName()); newest != nil {
			newest.LocalProps = mergeProps(newest.LocalProps, snapname.Props(s.t.PolicyID))
		}
		repaired("owner")
	}
	tag := snapname.ReplicaHoldTag(s.t.ID)
	if needHold || inFlight {
		err := s.tz.Hold(ctx, tag, newest.Name)
		switch {
		case err == nil:
			repaired("replica-hold")
		case !errors.Is(err, zfsexec.ErrTagExists):
			return fmt.Errorf("replicate: repair: hold %s: %w", newest.Name, err)
		}
		if d := s.tgtList.byName(newest.ShortName()); d != nil && d.UserRefs == 0 {
			d.UserRefs = 1
		}
		if err := releaseTagFromHeld(ctx, s.tz, tag, &s.tgtList, newest.ShortName()); err != nil {
			return err
		}
	}
	if !inFlight {
		return nil
	}
	if err := s.holdBase(ctx, srcSnap.ShortName()); err != nil {
		return err
	}
	if err := releaseOthers(ctx, s.sz, s.srcCaps, s.srcDataset, s.t.ID, srcSnap.ShortName(), &s.srcList); err != nil {
		return err
	}
	repaired("base-hold")
	return s.releaseStepHolds(ctx)
}

// stepHeld reports whether the source snapshot d carries this target's
// step hold. Where `zfs holds` works it reads the tags. On zfs-fuse,
// whose `zfs holds` is broken, it places the tag: "tag exists" means it
// was there; otherwise it releases the tag again (a crash in between
// leaves a step hold the next repair finishes and releases, as for a real
// step).
func (s *session) stepHeld(ctx context.Context, d *zfsexec.Dataset) (bool, error) {
	if d.UserRefs == 0 {
		return false, nil
	}
	tag := snapname.StepHoldTag(s.t.ID)
	if s.srcCaps.HoldsList {
		tags, err := s.sz.Holds(ctx, d.Name)
		if err != nil {
			return false, fmt.Errorf("replicate: repair: holds of %s: %w", d.Name, err)
		}
		return slices.Contains(tags, tag), nil
	}
	err := s.sz.Hold(ctx, tag, d.Name)
	if errors.Is(err, zfsexec.ErrTagExists) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("replicate: repair: probe %s on %s: %w", tag, d.Name, err)
	}
	if err := releaseTag(ctx, s.sz, tag, d.Name); err != nil {
		return false, fmt.Errorf("replicate: repair: release probe %s on %s: %w", tag, d.Name, err)
	}
	return false, nil
}

func mergeProps(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}
