// Package schedule decides when a dataset is due for its next snapshot.
//
// Grammar (Parse):
//   - an interval: a Go duration ("6h", "30m", "1h30m"), a whole number of
//     days or weeks ("1d", "2w"), or either form after "@every " ("@every
//     6h"). An interval must be at least MinInterval (one minute).
//   - a cron expression of five fields, minute hour day-of-month month
//     day-of-week ("0 */6 * * *"), or a descriptor (@hourly, @daily,
//     @midnight, @weekly, @monthly, @yearly, @annually). Cron expressions
//     are evaluated in UTC unless they begin with CRON_TZ=<zone> (or TZ=).
//     An expression that never fires is refused.
//
// Semantics:
//   - Next(after) is the first activation strictly after after: after plus
//     the interval, or the next time matching the cron expression.
//   - Due(last, now) is true when no snapshot was taken yet (last is the zero
//     time) or Next(last) <= now. After downtime a schedule is due once, not
//     once per missed activation: the caller takes one snapshot, and the next
//     activation counts from it.
//   - NextDue(last, now) is when Due becomes true, never earlier than now;
//     a controller requeues after NextDue(last, now).Sub(now).
//   - last comes from the newest snapshot's creation time as the node
//     recorded it; if it lies after now (clock skew), the schedule simply
//     waits for its Next.
//
// Time comes from an injected Clock: RealClock in production,
// clocktest.Fake in tests. DefaultInterval (6h) is the seed's interval.
package schedule
