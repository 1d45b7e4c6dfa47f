// Package replicate carries out replication steps against real nodes: it
// takes z8r's snapshots, brings one target up to date (planning with
// package plan, moving data agent to agent), protects each target's
// incremental base on the source, and prunes with package retention.
//
// It holds no state of its own: everything it decides from is read from
// the nodes (snapshot lists, GUIDs, holds, resume tokens), so a crash at
// any point is recovered by running the same call again.
//
// Contract:
//   - A target's base is held on the source with the tag
//     snapname.HoldTag(target id) (and bookmarked where the node supports
//     bookmarks) before the previous base's hold is released, so there is
//     never a moment when the chain is unprotected.
//   - Targets are received unmounted and set readonly; received snapshots
//     that z8r owned on the source are marked owned on the target, so target
//     retention can tell them from snapshots someone took there.
//   - A diverged target (history the source lacks, or written since its
//     last snapshot) is reported as *plan.ConflictError and left untouched,
//     unless the target's policy allows rollback and every snapshot the
//     rollback destroys is z8r's.
//   - Nothing is destroyed that z8r did not create: pruning considers only
//     owned snapshots, never a held one, never the newest.
//   - An interrupted receive is resumed from its token where both nodes
//     support resumable streams; elsewhere the step restarts.
package replicate
