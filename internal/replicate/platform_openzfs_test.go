//go:build platform

package replicate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/ozguest"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestSyncTarget_OpenZFS_RemovedTargetKeepsBookmark (issue 15 case 7, the
// replicate half, on real OpenZFS): removing a target releases its holds
// but keeps its bookmark, so after the old base is pruned, re-adding the
// same target replicates incrementally from the bookmark instead of
// failing with NoCommonSnapshot. On the same node, a clone origin is
// skipped by Prune (ErrHasClones matches OpenZFS's wording).
func TestSyncTarget_OpenZFS_RemovedTargetKeepsBookmark(t *testing.T) {
	ctx := context.Background()
	g := ozguest.Boot(t, ozguest.Options{})
	z := zfsexec.New(g.Runner())
	must(t, g.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zpool", "create", "-f", "tank", g.Disk(0)}}))
	// Source and target are two datasets of the guest's pool; the
	// "transfer" pipes between two runs on the same guest.
	src := endpoint{z: z, peers: map[string]*zfsexec.ZFS{"self": z}}
	tgt := replicate.Target{ID: "self-tank-replica", PolicyID: "p1", Origin: "self:tank/data",
		Endpoint: endpoint{z: z}, Addr: "self", Dataset: "tank/replica"}
	must(t, z.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}))
	clock := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	snap := func() string {
		clock = clock.Add(time.Hour)
		name, err := replicate.TakeSnapshot(ctx, z, "tank/data", "z8r", "p1", clock)
		must(t, err)
		return name
	}
	bookmark := func(s string) string { return "tank/data#" + snapname.BookmarkName(tgt.ID, s) }
	exists := func(name string) bool {
		ok, err := z.Exists(ctx, name)
		must(t, err)
		return ok
	}

	s1 := snap()
	_, err := replicate.SyncTarget(ctx, src, "tank/data", tgt, replicate.Options{})
	must(t, err)
	s2 := snap()
	_, err = replicate.SyncTarget(ctx, src, "tank/data", tgt, replicate.Options{})
	must(t, err)
	if exists(bookmark(s1)) || !exists(bookmark(s2)) {
		t.Fatalf("after moving the base to %s: bookmark of %s kept %v, of %s present %v", s2, s1, exists(bookmark(s1)), s2, exists(bookmark(s2)))
	}

	// The target is removed from the policy.
	must(t, replicate.Unprotect(ctx, z, "tank/data", tgt.ID))
	h, err := replicate.HoldTags(ctx, z, "tank/data")
	must(t, err)
	if len(h.Tags) != 0 {
		t.Errorf("holds left after Unprotect: %v", h.Tags)
	}
	if !exists(bookmark(s2)) {
		t.Fatalf("Unprotect destroyed the bookmark %s", bookmark(s2))
	}
	// Retention prunes the old base, now unheld.
	s3 := snap()
	keep1, err := retention.Parse("last=1")
	must(t, err)
	pruned, err := replicate.Prune(ctx, z, "tank/data", "p1", keep1, clock, nil)
	must(t, err)
	if strings.Join(pruned, ",") != s1+","+s2 {
		t.Fatalf("pruned %v, want [%s %s]", pruned, s1, s2)
	}

	// Re-added: the bookmark is the common base.
	res, err := replicate.SyncTarget(ctx, src, "tank/data", tgt, replicate.Options{})
	if err != nil {
		t.Fatalf("sync of the re-added target: %v", err)
	}
	if len(res.Steps) != 1 || res.Steps[0].From != snapname.BookmarkName(tgt.ID, s2) || res.Steps[0].To != s3 {
		t.Errorf("steps %+v, want one incremental from bookmark %s to %s", res.Steps, bookmark(s2), s3)
	}

	// A clone origin: OpenZFS refuses to destroy it, Prune goes on.
	s4 := snap()
	_ = snap()
	must(t, g.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zfs", "clone", "tank/data@" + s4, "tank/clone"}}))
	err = z.Destroy(ctx, "tank/data@"+s4, zfsexec.DestroyOptions{})
	var ce *zfsexec.CommandError
	if !errors.As(err, &ce) || !errors.Is(err, zfsexec.ErrHasClones) {
		t.Fatalf("destroying a clone origin on OpenZFS = %v, want ErrHasClones", err)
	}
	t.Logf("OpenZFS stderr for a clone origin: %q", ce.Stderr)
	pruned, err = replicate.Prune(ctx, z, "tank/data", "p1", keep1, clock, nil)
	if err != nil {
		t.Fatalf("Prune with a clone origin: %v", err)
	}
	for _, p := range pruned {
		if p == s4 {
			t.Errorf("pruned the clone origin %s", s4)
		}
	}
}
