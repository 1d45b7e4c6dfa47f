package replicate

import (
	"context"
	"fmt"
	"sort"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Holds is what can be known of z8r's holds on one dataset's snapshots.
type Holds struct {
	// Tags maps a held snapshot's short name to the z8r hold tags on it
	// (snapname.IsZ8RHoldTag), on nodes that can list holds (OpenZFS).
	Tags map[string][]string
	// Unknown maps a held snapshot's short name to its hold count
	// (userrefs) where the tags cannot be read: zfs-fuse's `zfs holds` is
	// broken. Which tags they are can only be found by releasing a
	// candidate tag ("no such tag" when absent), which is safe only for a
	// tag no configured target or sync in flight uses: see Unprotect.
	Unknown map[string]uint64
}

// HoldTags reports z8r's holds on the snapshots of dataset, for finding
// leaked tags (a target removed while its node was away, a deleted
// replication): with OpenZFS, exactly which z8r tags hold which snapshot;
// with zfs-fuse, only which snapshots are held and how often. A missing
// dataset has no holds.
func HoldTags(ctx context.Context, z *zfsexec.ZFS, dataset string) (Holds, error) {
	h := Holds{Tags: map[string][]string{}, Unknown: map[string]uint64{}}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return h, err
	}
	l, err := List(ctx, z, dataset)
	if err != nil || !l.Exists {
		return h, err
	}
	for _, d := range l.Snapshots {
		if !d.IsSnapshot() || d.UserRefs == 0 {
			continue
		}
		if !caps.HoldsList {
			h.Unknown[d.ShortName()] = d.UserRefs
			continue
		}
		tags, err := z.Holds(ctx, d.Name)
		if err != nil {
			return h, fmt.Errorf("replicate: holds of %s: %w", d.Name, err)
		}
		for _, t := range tags {
			if snapname.IsZ8RHoldTag(t) {
				h.Tags[d.ShortName()] = append(h.Tags[d.ShortName()], t)
			}
		}
		sort.Strings(h.Tags[d.ShortName()])
	}
	return h, nil
}
