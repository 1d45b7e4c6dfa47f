// Package replicate carries out replication steps against real nodes: it
// takes z8r's snapshots, brings one target up to date (planning with
// package plan, moving data agent to agent), protects each target's
// incremental base on the source, and prunes with package retention.
//
// It holds no state of its own: everything it decides from is read from
// the nodes (snapshot lists, GUIDs, holds, properties z8r set, resume
// tokens), so a crash at any point is recovered by running the same call
// again. Only one sync of a given target may run at a time; callers
// serialise per target.
//
// Contract:
//   - Ownership is local and scoped: a snapshot is z8r's for a replication
//     only if z8r.dev:owner=z8r and z8r.dev:policy=<Target.PolicyID> are
//     set on the snapshot itself (snapname.IsOwnedBy on LocalProps).
//     Planning (PlanSnapshots) and pruning (Prune) use nothing else, so a
//     mark inherited from a parent, received in a stream, or set by
//     another replication never makes a snapshot sendable by default,
//     prunable or discardable here.
//   - Step discipline (zrepl's). Every step of a sync (execute, and a
//     resumed receive) runs in this order:
//     1. source: hold from (when a snapshot) and to with
//     snapname.StepHoldTag(target) [failpoint replicate.after-step-hold];
//     2. transfer [failpoint replicate.after-recv];
//     3. target: after a full receive set canmount=noauto, readonly=on
//     and ReplicaOfProp=<Target.Origin> (the first two are also given to
//     the receive, recv -o, where the node supports it: a replica is
//     never mounted by a reboot or `zfs mount -a`); mark to owned by the
//     policy (when it
//     is the policy's on the source); hold to with
//     snapname.ReplicaHoldTag(target) and release that tag from from;
//     4. source: hold to with snapname.HoldTag(target) (and bookmark it
//     where supported) [failpoint replicate.after-base-hold], then
//     release the base tag from every other snapshot and the step tag
//     from every held one.
//     So the target's newest snapshot is, at every moment, held on the
//     source by the step or the base tag (safety invariant 1), and held
//     on the target by the replica tag once the step finished. A
//     snapshot that still carries a step hold is kept by retention (it is
//     held) and, being on both sides, is a valid base for the next plan.
//   - Repair pass: before planning, every sync finishes what an
//     interrupted earlier sync of the same target left undone (repair.go).
//     When the target's newest snapshot lacks the replica hold or the
//     ownership mark, and the source snapshot with its GUID still carries
//     the target's step hold, the step is finished as in 3 and 4
//     (readonly=on and ReplicaOfProp only if that step's receive
//     committed, and readonly only while the target is unmounted: a
//     mounted writable replica is a promoted one); when the target is
//     otherwise z8r's replica (ReplicaOfProp set locally, or its newest
//     snapshot marked owned and, by GUID, one z8r took for this
//     replication) the missing mark or hold is restored. Step holds left
//     after the target's side finished go with the next protect or step,
//     which sweep the step tag from every held source snapshot. A target
//     without snapshots, or whose newest the source lacks, has its step
//     holds released at once. The repair never destroys, rolls back or
//     renames anything. A transfer the receiver refused outright
//     (modified, mismatch, exists) releases its step holds; any other
//     failure keeps them (the receive may have committed).
//   - No forced receive unless provably pristine: a full receive into an
//     existing dataset (plan's IntoExisting, SnapshotOptions
//     .AllowFullIntoEmpty) forces (recv -F) only when Pristine holds right
//     before it: ReplicaOfProp=origin set locally, readonly=on, not
//     mounted, no snapshots, no children. Any other existing target is
//     moved aside first and received into with a plain receive.
//   - Divergence never destroys. A target that grew (plan.ErrDiverged:
//     snapshots the source lacks that are not this replication's, or
//     writes since its newest snapshot, including a receive refused with
//     zfsexec.ErrDestinationModified) is reported as *plan.ConflictError
//     and left untouched, or, when Target.RollbackDiverged allows it,
//     moved aside whole: renamed to snapname.DivergedName (same parent)
//     with every snapshot and write, its replica holds released, and the
//     source received afresh under the original name
//     (Result.MovedAside). A source that lost history the target still
//     has (plan.ErrSourceLost) is never resolved automatically. Nothing
//     here rolls back.
//   - Nothing is destroyed that z8r did not create: Prune considers only
//     the replication's own snapshots, never a held one or one the caller
//     protects, skips clone origins (zfsexec.ErrHasClones) and goes on
//     [failpoint replicate.mid-prune after the first destroy].
//   - Removing a target: Unprotect releases its base and step holds on the
//     source but keeps its bookmark (re-adding the target finds the
//     common base); UnprotectReplica releases its replica hold on the
//     target. A base bookmark is destroyed only by the same target's
//     protection moving to a newer snapshot, never another target's.
//   - HoldTags reports z8r's holds on a dataset for finding leaked tags:
//     every tag where `zfs holds` works (OpenZFS), only the held
//     snapshots and their hold counts on zfs-fuse, whose `zfs holds` is
//     broken.
//   - Resume (resume.go): where both nodes support resumable streams, an
//     interrupted receive is continued from the target's
//     receive_resume_token only after the token is decoded
//     (zfsexec.DecodeResumeToken) and matched to this replication: its
//     toname is a snapshot of the source dataset and its toguid a snapshot
//     the source has now; an incremental token's fromguid is on the source
//     (snapshot or bookmark) and is the target's newest snapshot; a full
//     token needs a target without snapshots. The resumed transfer keeps
//     the step discipline above. A token that does not match is logged,
//     then aborted (`zfs recv -A`) and returned as *ResumeMismatchError
//     (errors.Is ErrResumeAbandoned) for the caller to surface; the next
//     sync plans afresh. A resumed transfer that fails keeps the partial
//     state unless ZFS calls the token invalid or fresh listings show it
//     no longer matches: a dropped connection, a cancelled context or an
//     unreachable agent never discards it. Listing errors (a source pool
//     not imported) decide nothing. Elsewhere (zfs-fuse) the step
//     restarts.
//   - Promotion (promote.go; issue 16). The node-side operations the
//     controller combines into a switchover, a failover or a failback.
//     Each reads ZFS first and does only what is still needed, so a
//     re-run after a crash anywhere finishes the job; none destroys,
//     rolls back or force-receives anything.
//     Freeze(fs, origin) makes an old source read-only (readonly=on) and
//     then marks it ReplicaOfProp=origin (the new source); from then on
//     nothing more is written to it.
//     MakeWritable(fs) promotes a replica: it refuses a filesystem without
//     ReplicaOfProp set locally that is not already writable
//     (*NotReplicaError, errors.Is ErrNotReplica: a diverged or foreign
//     dataset) and a replica without snapshots (ErrNothingToPromote),
//     changing nothing; otherwise it aborts a partial resumable receive
//     (recv -A), sets readonly=off and canmount=on, mounts, and clears
//     the mark last (zfs inherit), since the agent allows readonly=off and
//     canmount=on only on a marked dataset. It returns the RecoveryPoint:
//     the newest snapshot (name, GUID, creation time) and the toname of
//     the partial receive it discarded.
//     CommonBase(old, new) is the newest snapshot of the old source whose
//     GUID the new source has (snapshot or bookmark) and the old
//     source's snapshots after it (its tail); none is
//     plan.ErrNoCommonSnapshot.
//     PreserveTail(fs, base, origin, at) keeps a frozen old source's tail
//     when it has snapshots after the base or writes: fs@z8r-tail-<time>
//     (snapname.TailSnapshotName, no ownership marks) captures the writes;
//     fs is unmounted and renamed to snapname.TailName(fs, time); fs@base
//     comes back as `zfs clone -o readonly=on -o canmount=noauto -o
//     ReplicaOfProp=origin` of it, unmounted (zfs-fuse mounts a new clone
//     whatever canmount says), then `zfs promote`d: fs holds the
//     snapshots up to base with their holds, unmodified, and takes the new
//     source's incremental without -F; the tail dataset, a clone of
//     fs@base, holds the snapshots after base, the writes and the holds
//     on them (HoldTags reports those; the caller releases the tags it
//     knows). Every intermediate state is recognised from ZFS (which of
//     fs and the tail dataset exist, their origin properties, the tail
//     snapshot's name carrying the time), never from at, so a re-run
//     with any at continues; a state it does not explain is ErrTailState,
//     with nothing changed. Once fs has received after it, PreserveTail,
//     given the newer base, no longer sees its own work as done:
//     TailKept(fs, aside) (aside a clone of a snapshot of fs) is how a
//     caller tells a tail it kept already.
package replicate
