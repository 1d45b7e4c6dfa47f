// Package schedule decides when a dataset is due for its next snapshot.
//
// Grammar (Parse):
//   - an interval: a Go duration ("6h", "30m", "1h30m"), a whole number of
//     days or weeks ("1d", "2w"), or either form after "@every " ("@every
//     6h"). An interval must be at least MinInterval (one minute).
//   - a cron expression of five fields, minute hour day-of-month month
//     day-of-week ("0 */6 * * *"), or a descriptor (@hourly, @daily,
//     @midnight, @weekly, @monthly, @yearly, @annually). Cron expressions
//     are evaluated in UTC unless they begin with CRON_TZ=<zone> (or TZ=,
//     as Kubernetes CronJob schedules do), whatever the controller's local
//     zone; "Local" and an empty zone are refused. Zone data is embedded
//     (time/tzdata): a controller image without /usr/share/zoneinfo works.
//     An expression that never fires is refused.
//
// Cron and daylight saving time (a zone with DST), as Vixie cron and
// cronie do:
//   - a job whose hour field matches every hour ("*", "0-23": hourly or
//     more often) runs by elapsed time: across spring-forward its wall
//     times that do not exist are not run, across fall-back the repeated
//     hour runs again (so "0 * * * *" stays one run per hour);
//   - any other job runs by the wall clock, once per matching wall time:
//     wall times skipped by spring-forward run once, at the end of the gap
//     (a daily 02:30 job in Europe/Berlin runs at 03:00 CEST that day, and
//     several skipped times merge into that one run, together with a run
//     due exactly at the gap's end); a wall time repeated by fall-back runs
//     at its first occurrence only (a daily 02:30 job runs once);
//   - interval schedules count elapsed time and never notice DST.
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
//   - last comes from Last(times of the schedule's snapshots, now,
//     MaxClockSkew): the newest snapshot time not after now plus the skew.
//     Snapshots named further ahead (a controller clock that ran ahead) are
//     reported by Last for a Warning and otherwise ignored, so they do not
//     freeze the schedule until their time; Due itself, given a last after
//     now, waits for Next(last).
//
// Time comes from an injected Clock: RealClock in production,
// clocktest.Fake in tests. DefaultInterval (6h) is the seed's interval.
package schedule
