package agent

import (
	"context"

	"golang.org/x/time/rate"
)

// rateBurst is the most a rate limiter lets through at once: small against
// any transfer worth limiting, so the rate holds from the first second.
const rateBurst = 256 << 10

// newRateLimiter paces to bytesPerSec; nil (no limit) when it is not
// positive.
func newRateLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), rateBurst)
}

// pace returns a zfsexec.CountingWriter.Pace that waits, for each write,
// until every non-nil limiter admits its bytes (in pieces no larger than
// the burst). It returns nil when no limiter is set. A cancelled ctx ends
// the wait with its error.
func pace(ctx context.Context, limiters ...*rate.Limiter) func(n int) error {
	var ls []*rate.Limiter
	for _, l := range limiters {
		if l != nil {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	return func(n int) error {
		for n > 0 {
			k := min(n, rateBurst)
			for _, l := range ls {
				if err := l.WaitN(ctx, k); err != nil {
					return err
				}
			}
			n -= k
		}
		return nil
	}
}
