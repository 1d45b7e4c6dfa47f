package replicate

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Node-side operations of a promotion (issue 16). The controller drives
// them; each reads ZFS first and does only what is still needed, so a
// re-run after a crash at any point finishes the job without redoing or
// destroying anything. See the promotion section of doc.go.

// ErrNothingToPromote is returned by MakeWritable for a replica without
// snapshots: it has no consistent state to be promoted to.
var ErrNothingToPromote = errors.New("replica has no snapshot to promote")

// ErrNotReplica is matched (errors.Is) by *NotReplicaError.
var ErrNotReplica = errors.New("dataset is not a z8r replica")

// ErrTailState is returned by PreserveTail when the datasets are in a
// state it does not recognise as one of its own steps (a tail dataset
// beside fs that fs is not related to, the base snapshot missing, fs
// missing without its tail). Nothing was changed.
var ErrTailState = errors.New("unexpected state while preserving a tail")

// NotReplicaError refuses an operation on a filesystem that z8r did not
// mark as its replica (z8r.dev:replica-of set locally): a diverged or
// foreign dataset, which z8r leaves as it is.
type NotReplicaError struct {
	// Dataset is the filesystem refused.
	Dataset string
	// Reason says what is missing.
	Reason string
}

func (e *NotReplicaError) Error() string {
	return fmt.Sprintf("replicate: %s is not a z8r replica: %s", e.Dataset, e.Reason)
}

// Is makes errors.Is(err, ErrNotReplica) true.
func (e *NotReplicaError) Is(target error) bool { return target == ErrNotReplica }

// RecoveryPoint is what a promoted replica holds: the state of its newest
// snapshot. Writes on the old source after that snapshot are not in it.
type RecoveryPoint struct {
	// Snapshot is the newest snapshot's full name (dataset@name).
	Snapshot string
	// GUID is that snapshot's GUID.
	GUID uint64
	// Time is that snapshot's creation time.
	Time time.Time
	// DiscardedPartial is what the replica had beyond Snapshot: the
	// snapshot (dataset@name, as the sender named it) an interrupted
	// resumable receive was bringing, whose partial state the promotion
	// discarded; "" when there was none.
	DiscardedPartial string
}

// Freeze makes fs, the source of a replication being reversed, read-only
// and marks it as z8r's replica of origin (the new source,
// "<node>:<dataset>"): readonly=on first, then ReplicaOfProp=origin, both
// set locally, each only if not already so. After it nothing more can be
// written to fs, and z8r may receive into it (incrementally from the
// common base) or preserve its tail (PreserveTail).
//
// Crash safety: each property is read before it is set, so a re-run after
// a crash between the two sets only the mark, and a re-run after both does
// nothing. A crash after readonly=on leaves fs read-only without the mark,
// which no z8r operation takes for a replica until the re-run.
func Freeze(ctx context.Context, z *zfsexec.ZFS, fs, origin string) error {
	if origin == "" {
		return fmt.Errorf("replicate: freeze %s: empty origin", fs)
	}
	p, err := z.Get(ctx, fs, "readonly", ReplicaOfProp)
	if err != nil {
		return fmt.Errorf("replicate: freeze %s: %w", fs, err)
	}
	if p["readonly"].Value != "on" || p["readonly"].Source != "local" {
		if err := z.Set(ctx, fs, map[string]string{"readonly": "on"}); err != nil {
			return fmt.Errorf("replicate: freeze %s: readonly: %w", fs, err)
		}
	}
	if m := p[ReplicaOfProp]; m.Source != "local" || m.Value != origin {
		if err := z.Set(ctx, fs, map[string]string{ReplicaOfProp: origin}); err != nil {
			return fmt.Errorf("replicate: freeze %s: mark replica of %s: %w", fs, origin, err)
		}
	}
	return nil
}

// MakeWritable is the target side of a promotion: it turns z8r's replica
// fs into a writable, mounted filesystem and reports its recovery point
// (its newest snapshot, and the partial receive it discards, if any). In
// order, each step only if still needed:
//
//  1. read the newest snapshot and the receive_resume_token (nodes with
//     resumable receive), and abort the partial receive (`zfs recv -A`);
//  2. readonly=off, then canmount=on, then `zfs mount` unless mounted;
//  3. last, `zfs inherit` ReplicaOfProp: from then on fs is no replica.
//
// An encrypted fs whose key is not loaded (a replica received raw) is
// refused first with ErrKeyNotLoaded: it could not be mounted.
//
// fs must carry ReplicaOfProp set locally (the agent allows readonly=off
// and canmount=on only then), or be writable already (readonly=off,
// canmount=on: a promotion that finished, which is then only mounted if it
// is not). Any other filesystem (a diverged or foreign one) is refused
// with *NotReplicaError, and a replica without snapshots with
// ErrNothingToPromote; neither changes anything.
//
// Crash safety: the mark goes last, so a re-run after a crash anywhere
// before it finds the mark and redoes only the steps whose effect is not
// yet visible; after it, the re-run sees a writable filesystem and
// changes nothing but a missing mount. A re-run after the abort no longer
// sees the partial receive, so its DiscardedPartial is "": the first run's
// report is the one to keep.
func MakeWritable(ctx context.Context, z *zfsexec.ZFS, fs string) (RecoveryPoint, error) {
	var rp RecoveryPoint
	p, err := z.Get(ctx, fs, "type", "readonly", "canmount", "mounted", ReplicaOfProp)
	if err != nil {
		return rp, fmt.Errorf("replicate: promote %s: %w", fs, err)
	}
	if t := p["type"].Value; t != string(zfsexec.TypeFilesystem) {
		return rp, &NotReplicaError{Dataset: fs, Reason: "a " + t + ", not a filesystem"}
	}
	if missing, err := KeyNotLoaded(ctx, z, fs); err != nil {
		return rp, fmt.Errorf("replicate: promote %s: %w", fs, err)
	} else if missing {
		return rp, fmt.Errorf("replicate: promote %s: %w", fs, ErrKeyNotLoaded)
	}
	m := p[ReplicaOfProp]
	marked := m.Source == "local" && m.Value != "" && m.Value != "-"
	writable := p["readonly"].Value == "off" && p["readonly"].Source != "temporary" && p["canmount"].Value == "on"
	if !marked && !writable {
		return rp, &NotReplicaError{Dataset: fs, Reason: ReplicaOfProp + " is not set locally and it is not writable"}
	}
	snaps, err := z.Snapshots(ctx, fs)
	if err != nil {
		return rp, fmt.Errorf("replicate: promote %s: %w", fs, err)
	}
	newest := Listing{Exists: true, Snapshots: snaps}.Newest(false)
	if newest == nil {
		return rp, fmt.Errorf("replicate: promote %s: %w", fs, ErrNothingToPromote)
	}
	rp.Snapshot, rp.GUID, rp.Time = newest.Name, newest.GUID, newest.Creation
	if marked {
		token, err := z.ResumeToken(ctx, fs)
		if err != nil {
			return rp, fmt.Errorf("replicate: promote %s: %w", fs, err)
		}
		if token != "" {
			rp.DiscardedPartial = "(undecodable resume token)"
			if tok, err := zfsexec.DecodeResumeToken(token); err == nil {
				rp.DiscardedPartial = tok.ToName
			}
			if err := z.AbortRecv(ctx, fs); err != nil && !errors.Is(err, zfsexec.ErrNoResumeState) {
				return rp, fmt.Errorf("replicate: promote %s: discard partial receive: %w", fs, err)
			}
		}
		if p["readonly"].Value != "off" || p["readonly"].Source == "temporary" {
			if err := z.Set(ctx, fs, map[string]string{"readonly": "off"}); err != nil {
				return rp, fmt.Errorf("replicate: promote %s: readonly=off: %w", fs, err)
			}
		}
		if p["canmount"].Value != "on" {
			if err := z.Set(ctx, fs, map[string]string{"canmount": "on"}); err != nil {
				return rp, fmt.Errorf("replicate: promote %s: canmount=on: %w", fs, err)
			}
		}
	}
	if p["mounted"].Value != "yes" {
		if err := z.Mount(ctx, fs); err != nil {
			return rp, fmt.Errorf("replicate: promote %s: mount: %w", fs, err)
		}
	}
	if marked {
		if err := z.Inherit(ctx, fs, ReplicaOfProp); err != nil {
			return rp, fmt.Errorf("replicate: promote %s: clear %s: %w", fs, ReplicaOfProp, err)
		}
	}
	return rp, nil
}

// ErrKeyNotLoaded: the filesystem is encrypted (a raw replica) and its
// key is not loaded on its node, so it cannot be mounted: load it first
// (`zfs load-key`, with the source's key). Nothing was changed.
var ErrKeyNotLoaded = errors.New("encrypted and its key is not loaded (zfs load-key it first)")

// KeyNotLoaded reports whether fs is encrypted with its key not loaded,
// as a replica received raw is until an operator loads the key. Nodes
// without raw sends (zfs-fuse) have no encryption: false, and nothing is
// run there. It only reads.
func KeyNotLoaded(ctx context.Context, z *zfsexec.ZFS, fs string) (bool, error) {
	caps, err := z.Capabilities(ctx)
	if err != nil || !caps.RawSend {
		return false, err
	}
	p, err := z.Get(ctx, fs, "encryption", "keystatus")
	if err != nil {
		return false, err
	}
	return isEncrypted(p["encryption"].Value) && p["keystatus"].Value != "available", nil
}

// CommonBase returns the newest snapshot of oldFS (on oldZ, the former
// source) whose GUID newFS (on newZ, the new source) has as a snapshot or
// a bookmark, and oldFS's snapshots newer than it by createtxg, oldest
// first: the tail that the new source lacks. Without a common snapshot it
// returns an error matching plan.ErrNoCommonSnapshot. It only reads.
func CommonBase(ctx context.Context, oldZ *zfsexec.ZFS, oldFS string, newZ *zfsexec.ZFS, newFS string) (base zfsexec.Dataset, tail []zfsexec.Dataset, err error) {
	var oldSnaps, newSnaps []zfsexec.Dataset
	err = parallel(func() (err error) {
		oldSnaps, err = oldZ.Snapshots(ctx, oldFS)
		return err
	}, func() (err error) {
		newSnaps, err = newZ.Snapshots(ctx, newFS)
		return err
	})
	if err != nil {
		return base, nil, fmt.Errorf("replicate: common base of %s and %s: %w", oldFS, newFS, err)
	}
	have := make(map[uint64]bool, len(newSnaps))
	for _, d := range newSnaps {
		have[d.GUID] = true
	}
	for i := len(oldSnaps) - 1; i >= 0; i-- {
		d := oldSnaps[i]
		if !d.IsSnapshot() {
			continue
		}
		if have[d.GUID] {
			return d, tail, nil
		}
		tail = append([]zfsexec.Dataset{d}, tail...)
	}
	return base, nil, fmt.Errorf("replicate: %s and %s: %w", oldFS, newFS, plan.ErrNoCommonSnapshot)
}

// PreserveTail keeps the unreplicated tail of fs, a former source frozen
// by Freeze (ReplicaOfProp=origin set locally), so that fs can receive
// from the new source incrementally from base, the newest snapshot they
// share (CommonBase; its short name or full name). It destroys and rolls
// back nothing:
//
//  1. snapshot fs@snapname.TailSnapshotName(at), without ownership marks,
//     capturing the writes since fs's newest snapshot (skipped when fs
//     already has a tail snapshot newer than base: its time is used);
//  2. unmount fs (zfs-fuse renames only unmounted filesystems), and
//     rename it to aside = snapname.TailName(fs, T), T the tail
//     snapshot's time; aside keeps every snapshot and write (and child);
//  3. clone aside@base to fs with readonly=on, canmount=noauto and
//     ReplicaOfProp=origin;
//  4. unmount fs if the clone was mounted (zfs-fuse mounts clones,
//     whatever canmount says), then promote fs: fs takes every snapshot
//     up to base, with their holds, and aside becomes a clone of
//     fs@base holding the snapshots after base and the writes.
//
// fs is then an unmodified read-only copy of base, marked as origin's
// replica, and the reverse replication is an incremental receive into it.
// It returns aside. The holds the old direction left on the tail
// snapshots (a step hold of a transfer in flight) stay on them in aside;
// HoldTags(ctx, z, aside) reports them, and the caller releases the tags
// it knows.
//
// Crash safety: each step's result is recognised from ZFS alone, without
// at: fs's origin is aside@base (cloned, step 4 next); aside's origin is
// fs@base, fs's newest snapshot is base and fs is still as the clone made
// it (marked, canmount=noauto: done); fs is missing and a
// TailName of fs holds its own tail snapshot and base (renamed, step 3
// next); fs has a tail snapshot after base (step 2 next). So a re-run
// after a crash at any point, with any at, continues where the first run
// stopped, and a re-run after the end only returns aside. A state none of
// these explains (fs missing without such a tail, base missing, fs not
// frozen) is ErrTailState or *NotReplicaError, with nothing changed.
func PreserveTail(ctx context.Context, z *zfsexec.ZFS, fs, base, origin string, at time.Time) (aside string, err error) {
	if origin == "" {
		return "", fmt.Errorf("replicate: preserve tail of %s: empty origin", fs)
	}
	if b, short, ok := strings.Cut(base, "@"); ok {
		if b != fs {
			return "", fmt.Errorf("replicate: preserve tail of %s: base %s is not its snapshot", fs, base)
		}
		base = short
	}
	if err := zfsexec.ValidateSnapshot(fs + "@" + base); err != nil {
		return "", fmt.Errorf("replicate: preserve tail of %s: %w", fs, err)
	}
	if !strings.Contains(fs, "/") {
		return "", fmt.Errorf("replicate: preserve tail of %s: a pool's root dataset cannot be moved aside", fs)
	}
	// One step per round; a state that does not advance is reported.
	for range 6 {
		st, err := inspectTail(ctx, z, fs, base)
		if err != nil {
			return "", fmt.Errorf("replicate: preserve tail of %s: %w", fs, err)
		}
		done, err := st.advance(ctx, z, origin, at)
		if err != nil {
			return "", fmt.Errorf("replicate: preserve tail of %s: %w", fs, err)
		}
		if done {
			return st.aside, nil
		}
	}
	return "", fmt.Errorf("replicate: preserve tail of %s: %w: no progress", fs, ErrTailState)
}

// TailKept reports whether PreserveTail completed for fs with aside as
// its tail dataset: aside exists and is a clone of one of fs's snapshots
// (step 4 promoted fs over it). That stays true after fs has received
// more snapshots, which PreserveTail itself, given the newer base, would
// no longer recognise as done. It only reads.
func TailKept(ctx context.Context, z *zfsexec.ZFS, fs, aside string) (bool, error) {
	p, err := z.Get(ctx, aside, "origin")
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("replicate: tail %s of %s: %w", aside, fs, err)
	}
	return strings.HasPrefix(p["origin"].Value, fs+"@"), nil
}

// tailPhase is how far PreserveTail got, as read from ZFS.
type tailPhase int

const (
	// tailStart: fs has no tail snapshot after base yet.
	tailStart tailPhase = iota
	// tailSnapshotted: fs has a tail snapshot after base (step 2 next).
	tailSnapshotted
	// tailRenamed: fs is gone, its tail is aside (step 3 next).
	tailRenamed
	// tailCloned: fs is a clone of aside@base (step 4 next).
	tailCloned
	// tailDone: aside is a clone of fs@base and fs ends at base.
	tailDone
)

// tailState is one reading of fs and the tail datasets beside it.
type tailState struct {
	fs, base string
	phase    tailPhase
	// aside is the tail dataset (all phases from tailSnapshotted: the
	// name it has or gets).
	aside string
	// tailSnap is fs's tail snapshot (short name), in tailSnapshotted.
	tailSnap string
	// mounted reports whether fs is mounted (when it exists).
	mounted bool
}

// inspectTail reads which step of PreserveTail fs and its tail datasets
// are at.
func inspectTail(ctx context.Context, z *zfsexec.ZFS, fs, base string) (tailState, error) {
	st := tailState{fs: fs, base: base}
	// The tail datasets beside fs (earlier promotions may have left some).
	parent := path.Dir(fs)
	below, err := z.List(ctx, parent, zfsexec.ListOptions{Depth: 1})
	if err != nil {
		return st, err
	}
	var asides []string
	fsExists := false
	for _, d := range below {
		switch {
		case d.Type != zfsexec.TypeFilesystem:
		case d.Name == fs:
			fsExists = true
		case snapname.IsTailName(fs, d.Name):
			asides = append(asides, d.Name)
		}
	}
	origins := make(map[string]string, len(asides))
	for _, a := range asides {
		p, err := z.Get(ctx, a, "origin")
		if err != nil {
			return st, err
		}
		origins[a] = p["origin"].Value
	}
	if !fsExists {
		return st, st.findRenamed(ctx, z, asides)
	}
	p, err := z.Get(ctx, fs, "origin", "mounted", "canmount", ReplicaOfProp)
	if err != nil {
		return st, err
	}
	st.mounted = p["mounted"].Value == "yes"
	marked := p[ReplicaOfProp].Source == "local" && p[ReplicaOfProp].Value != "" && p[ReplicaOfProp].Value != "-"
	for _, a := range asides {
		if p["origin"].Value == a+"@"+base {
			st.phase, st.aside = tailCloned, a
			return st, nil
		}
	}
	snaps, err := z.Snapshots(ctx, fs)
	if err != nil {
		return st, err
	}
	var baseSnap, newest *zfsexec.Dataset
	for i := range snaps {
		d := &snaps[i]
		if !d.IsSnapshot() {
			continue
		}
		newest = d
		if d.ShortName() == base {
			baseSnap = d
		}
	}
	if baseSnap == nil {
		return st, fmt.Errorf("%w: base %s@%s does not exist", ErrTailState, fs, base)
	}
	// Done: fs is the promoted clone, still as step 4 left it (a copy of
	// base that was never made writable since: canmount=noauto is set
	// locally by the clone, MakeWritable turns it on).
	if newest == baseSnap && marked && p["canmount"].Value == "noauto" && p["canmount"].Source == "local" {
		for _, a := range asides {
			if origins[a] == fs+"@"+base {
				st.phase, st.aside = tailDone, a
				return st, nil
			}
		}
	}
	if !marked {
		return st, &NotReplicaError{Dataset: fs, Reason: "not frozen: " + ReplicaOfProp + " is not set locally"}
	}
	// The newest tail snapshot after base, if step 1 ran.
	for i := len(snaps) - 1; i >= 0 && snaps[i].CreateTXG > baseSnap.CreateTXG; i-- {
		if t, ok := snapname.ParseTailSnapshotName(snaps[i].ShortName()); ok && snaps[i].IsSnapshot() {
			st.phase, st.tailSnap, st.aside = tailSnapshotted, snaps[i].ShortName(), snapname.TailName(fs, t)
			return st, nil
		}
	}
	st.phase = tailStart
	return st, nil
}

// findRenamed finds, with fs missing, the tail dataset fs was renamed to:
// of the TailNames of fs that still end with their own tail snapshot (as
// the rename left them) and have base, the newest by name. A rename of
// this run is the newest: its time comes from the snapshot just taken.
func (st *tailState) findRenamed(ctx context.Context, z *zfsexec.ZFS, asides []string) error {
	var best time.Time
	for _, a := range asides {
		_, t, _ := snapname.ParseTailName(a)
		snaps, err := z.Snapshots(ctx, a)
		if err != nil {
			return err
		}
		var hasBase bool
		var newest string
		for _, d := range snaps {
			if d.IsSnapshot() {
				newest = d.ShortName()
				hasBase = hasBase || newest == st.base
			}
		}
		if hasBase && newest == snapname.TailSnapshotName(t) && (st.aside == "" || t.After(best)) {
			st.aside, best = a, t
		}
	}
	if st.aside == "" {
		return fmt.Errorf("%w: %s does not exist and no %s<time> beside it has its tail and %s", ErrTailState, st.fs, snapname.TailInfix, st.base)
	}
	st.phase = tailRenamed
	return nil
}

// advance does the next step from st; done reports that there is none.
func (st *tailState) advance(ctx context.Context, z *zfsexec.ZFS, origin string, at time.Time) (done bool, err error) {
	switch st.phase {
	case tailStart:
		snap := st.fs + "@" + snapname.TailSnapshotName(at)
		if err := z.Snapshot(ctx, snap, nil); err != nil {
			return false, fmt.Errorf("snapshot %s: %w", snap, err)
		}
	case tailSnapshotted:
		if st.mounted {
			if err := unmount(ctx, z, st.fs); err != nil {
				return false, err
			}
		}
		err := renameAfterUnmount(ctx, z, st.fs, st.aside)
		if errors.Is(err, zfsexec.ErrDatasetExists) {
			return false, fmt.Errorf("%w: %s exists and is not %s's tail", ErrTailState, st.aside, st.fs)
		}
		if err != nil {
			return false, fmt.Errorf("move %s aside to %s: %w", st.fs, st.aside, err)
		}
	case tailRenamed:
		props := map[string]string{"readonly": "on", "canmount": "noauto", ReplicaOfProp: origin}
		if err := z.Clone(ctx, st.aside+"@"+st.base, st.fs, props); err != nil {
			return false, fmt.Errorf("clone %s@%s to %s: %w", st.aside, st.base, st.fs, err)
		}
		// zfs-fuse mounts a new clone read-write whatever its
		// properties say: unmount it before anything can touch it.
		return false, unmountIfMounted(ctx, z, st.fs)
	case tailCloned:
		if st.mounted {
			if err := unmount(ctx, z, st.fs); err != nil {
				return false, err
			}
		}
		if err := z.Promote(ctx, st.fs); err != nil {
			return false, fmt.Errorf("promote %s: %w", st.fs, err)
		}
	case tailDone:
		if st.mounted {
			if err := unmount(ctx, z, st.fs); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// unmountIfMounted unmounts fs when it is mounted.
func unmountIfMounted(ctx context.Context, z *zfsexec.ZFS, fs string) error {
	p, err := z.Get(ctx, fs, "mounted")
	if err != nil {
		return err
	}
	if p["mounted"].Value != "yes" {
		return nil
	}
	return unmount(ctx, z, fs)
}

// unmount unmounts fs (never forced), retrying for a few seconds while
// ZFS calls it busy: zfs-fuse reports a filesystem it has just mounted,
// cloned or written as busy for a moment.
func unmount(ctx context.Context, z *zfsexec.ZFS, fs string) error {
	delay := 100 * time.Millisecond
	for i := 0; ; i++ {
		err := z.Unmount(ctx, fs)
		if err == nil || !errors.Is(err, zfsexec.ErrDatasetBusy) || i == 10 {
			if err != nil {
				return fmt.Errorf("unmount %s: %w", fs, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmount %s: %w", fs, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}
