// Package retention decides which of a dataset's snapshots to destroy.
//
// # Grammar
//
//	policy   = rule *( ";" rule )
//	rule     = "last=" N | "all" | grid
//	grid     = interval *( "|" interval )
//	interval = COUNT "x" LENGTH [ "(keep=" ( N | "all" ) ")" ]
//	LENGTH   = N unit        unit = "m" | "h" | "d" | "w"
//
// N and COUNT are positive integers; blanks around tokens are ignored.
// Examples: "last=10", "1x1h(keep=all) | 24x1h | 14x1d",
// "last=3; 7x1d | 4x1w". Errors are *SyntaxError (errors.Is ErrSyntax)
// with the offset of the offending token. Policy.String prints the
// canonical form, which Parse reads back to the same policy.
//
// # Meaning
//
// A snapshot is kept if ANY rule keeps it. Rules only see Owned snapshots
// (created by z8r for the replication being pruned); all others are
// invisible to them and always kept.
//
//   - last=N keeps the N newest.
//   - all keeps every snapshot (no pruning).
//   - A grid lays consecutive intervals back in time: "24x1h" is 24 adjacent
//     one-hour intervals, each following the previous one into the past.
//     In each interval the oldest keep snapshots (default 1) are kept,
//     keep=all keeps them all. Snapshots older than the whole grid are not
//     kept by it.
//
// The grid is anchored at the creation time of the newest owned snapshot
// (not later than now), as zrepl anchors its grid. Consequently only a new
// snapshot can make an old one expire: if snapshots stop arriving (a source
// node is gone, a schedule is broken) the history on hand is not eroded
// while the clock runs on. Keeping the OLDEST snapshot of each interval
// makes the survivors stable: as time passes a survivor moves into older
// intervals where it is again the oldest, so each run destroys only
// snapshots that were never meant to stay, instead of swapping survivors.
//
// # Safety (Prune)
//
// Prune never returns a snapshot
//
//   - that is not Owned: Owned must mean z8r's, of the replication being
//     pruned (snapname.IsOwnedBy on locally set properties), so that one
//     replication never prunes another's snapshots or an operator's;
//   - that is the newest owned snapshot (the next incremental base);
//   - that protect reports as protected: the caller's callback for
//     snapshots with a hold (any tag: z8r's base, step and last-received
//     holds, an operator's) and ones being sent;
//   - whose GUID is a configured target's last known snapshot, passed with
//     KeepGUIDs (issue 15: a target's newest snapshot stays on the source
//     until the target has a newer one, even when its hold was lost); with
//     KeepGUIDs, an owned snapshot of unknown (zero) GUID is kept too;
//   - with a zero Creation time: its age is unknown.
//
// Otherwise a snapshot is destroyed exactly when no rule keeps it. The zero
// Policy keeps everything. These guarantees are checked on random
// histories by TestPrune_Properties.
//
// Ordering is by CreateTXG when every owned snapshot has one (ZFS's own
// order, immune to clock steps), by Creation otherwise.
//
// # Defaults
//
// DefaultSource keeps every snapshot of the last day, one per day for the
// week before and one per week for the four weeks before that: about 15
// snapshots at the default 6h schedule, a month of history. DefaultTarget
// is the same: a replica that mirrors its source's history is what the
// original z8r users expect, and equal grids mean a snapshot leaves the
// target at about the time it leaves the source, so the newest common
// snapshot is never the victim of a shorter target policy (and the newest
// owned snapshot, which is the common base, is never pruned on either side).
// Operators who want a longer backup history set a target policy.
package retention
