package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Prune destroys the snapshots of dataset that z8r took (or received) for
// the replication policyID and that policy does not keep; never a held
// snapshot or one protect names. Ownership is decided from locally set
// properties only (snapname.IsOwnedBy): a mark inherited from a parent, a
// received one, or another replication's never makes a snapshot
// prunable here. A snapshot that cannot go because a clone depends on it
// (zfsexec.ErrHasClones) or because it was held since the listing
// (zfsexec.ErrDatasetBusy) is skipped and pruning goes on with the rest.
// Options go to retention.Prune (retention.KeepGUIDs: every configured
// target's last known snapshot). It returns what it destroyed.
func Prune(ctx context.Context, z *zfsexec.ZFS, dataset, policyID string, policy retention.Policy, now time.Time, protect func(short string) bool, opts ...retention.Option) ([]string, error) {
	log := logr.FromContextOrDiscard(ctx)
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
		owned := snapname.IsOwnedBy(d.LocalProps, policyID)
		created := d.Creation
		if _, t, ok := snapname.Parse(d.ShortName()); ok && owned {
			created = t // the controller's clock, as for schedules
		}
		snaps = append(snaps, retention.Snapshot{Name: d.ShortName(), GUID: d.GUID, Creation: created, CreateTXG: d.CreateTXG, Owned: owned})
	}
	victims := retention.Prune(snaps, policy, now, func(s retention.Snapshot) bool {
		return held[s.Name] || (protect != nil && protect(s.Name))
	}, opts...)
	var destroyed []string
	for _, v := range victims {
		name := dataset + "@" + v.Name
		err := z.Destroy(ctx, name, zfsexec.DestroyOptions{})
		switch {
		case errors.Is(err, zfsexec.ErrDatasetBusy):
			log.V(1).Info("prune skipped a snapshot held since the listing", "snapshot", name)
			continue
		case errors.Is(err, zfsexec.ErrHasClones):
			log.Info("prune skipped a clone origin", "snapshot", name)
			continue
		case err != nil:
			return destroyed, fmt.Errorf("replicate: prune %s: %w", name, err)
		}
		destroyed = append(destroyed, v.Name)
		if len(destroyed) == 1 {
			failpoint.Hit(FailMidPrune)
		}
	}
	return destroyed, nil
}
