package replicate

import (
	"context"
	"errors"
	"fmt"

	"github.com/z8r-project/z8r/zfsexec"
)

// Settle puts a target in order after a sync of it was cancelled on
// purpose (its replication suspended or deleted, the target removed): an
// interrupted receive is discarded rather than kept for a resume, since a
// cancelled transfer is not to be continued, and then the repair pass
// finishes a step whose receive committed before the cancel took effect,
// and last the target's step holds are released from the source. It
// changes nothing a finished step received. Like SyncTarget, it must not
// run concurrently with another sync of the same target; it is idempotent,
// so a crash in it is finished by the next Settle or SyncTarget.
func Settle(ctx context.Context, src Endpoint, srcDataset string, t Target) (Result, error) {
	var res Result
	s, err := newSession(ctx, src, srcDataset, t, Options{})
	if err != nil {
		return res, err
	}
	if s.resumable() {
		err := s.tz.AbortRecv(ctx, t.Dataset)
		switch {
		case err == nil:
			res.Repaired = append(res.Repaired, "partial-receive")
		case errors.Is(err, zfsexec.ErrNoResumeState), errors.Is(err, zfsexec.ErrDatasetNotExist):
		default:
			return res, fmt.Errorf("replicate: settle: discard the partial receive into %s: %w", t.Dataset, err)
		}
	}
	if err := s.list(ctx); err != nil {
		return res, err
	}
	if err := s.repair(ctx, &res); err != nil {
		return res, err
	}
	// No transfer of this target is in flight now: no step hold is
	// needed (repair leaves them to the next sync's steps to sweep).
	return res, s.releaseStepHolds(ctx)
}
