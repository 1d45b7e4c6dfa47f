package replicate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestSettle_AfterACancelledTransfer: a sync cut in the middle of an
// incremental step (a cancel) leaves, on OpenZFS, a partial receive and on
// both flavours the step holds on the source. Settle discards the partial
// receive and releases the step holds; the replica keeps what it had
// received, with its replica hold and the source's base hold; a second
// Settle changes nothing; the next sync sends the step afresh.
func TestSettle_AfterACancelledTransfer(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			p := newFakePair(t, impl)
			before, err := p.dz.Snapshots(ctx, "tank/replica")
			fatalIf(t, err)
			fatalIf(t, p.src.Write("tank/data", "big", make([]byte, 1<<20)))
			next := p.snapshot(t)
			p.src.CutNth(fakezfs.Prefix("zfs", "send"), 1, 64<<10, nil)
			if _, err := replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{}); err == nil {
				t.Fatal("the cut transfer succeeded")
			}
			stepTag := snapname.StepHoldTag(p.tgt.ID)
			if !hasHold(t, p.sz, "tank/data@"+next, stepTag) {
				t.Fatalf("no step hold on the source after the cut: nothing for Settle to do")
			}
			res, err := replicate.Settle(ctx, p.ep, "tank/data", p.tgt)
			fatalIf(t, err)
			if tok, err := p.dz.ResumeToken(ctx, "tank/replica"); err != nil || tok != "" {
				t.Errorf("resume token %q (%v) after Settle, want none", tok, err)
			}
			if impl == zfsexec.ImplOpenZFS && len(res.Repaired) == 0 {
				t.Errorf("Settle reports %v, want the partial receive discarded", res.Repaired)
			}
			for _, s := range []string{before[0].ShortName(), next} {
				if hasHold(t, p.sz, "tank/data@"+s, stepTag) {
					t.Errorf("step hold still on tank/data@%s", s)
				}
			}
			if !hasHold(t, p.sz, "tank/data@"+before[0].ShortName(), snapname.HoldTag(p.tgt.ID)) {
				t.Error("the source's base hold for the target is gone")
			}
			after, err := p.dz.Snapshots(ctx, "tank/replica")
			fatalIf(t, err)
			if len(after) != len(before) || after[0].GUID != before[0].GUID {
				t.Errorf("replica snapshots %v, want what it had (%v)", after, before)
			}
			srcMark, dstMark := len(p.src.Commands()), len(p.dst.Commands())
			if _, err := replicate.Settle(ctx, p.ep, "tank/data", p.tgt); err != nil {
				t.Fatal(err)
			}
			for _, argv := range append(p.src.Commands()[srcMark:], p.dst.Commands()[dstMark:]...) {
				switch {
				case argv[1] == "get", argv[1] == "version", argv[1] == "holds":
				case argv[1] == "recv" && argv[2] == "-A":
				case argv[1] == "release" && argv[2] == stepTag:
					// The step tag is released from every held snapshot
					// without reading tags first (zfs-fuse cannot list
					// them); "no such tag" is fine.
				default:
					t.Errorf("a second Settle ran %q", argv)
				}
			}
			res, err = replicate.SyncTarget(ctx, p.ep, "tank/data", p.tgt, replicate.Options{})
			fatalIf(t, err)
			if res.Newest != next || len(res.Steps) != 1 {
				t.Errorf("the next sync %+v, want the step to %s sent afresh", res, next)
			}
		})
	}
}

// hasHold reports whether snap carries tag (read through the fake's
// working `zfs holds`, or the tag-exists probe on the zfs-fuse flavour).
func hasHold(t *testing.T, z *zfsexec.ZFS, snap, tag string) bool {
	t.Helper()
	err := z.Hold(context.Background(), tag, snap)
	if err == nil {
		fatalIf(t, z.Release(context.Background(), tag, snap))
		return false
	}
	if !errors.Is(err, zfsexec.ErrTagExists) {
		t.Fatal(err)
	}
	return true
}
