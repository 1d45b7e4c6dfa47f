package replicate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/failpoint"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// ErrResumeAbandoned is matched (errors.Is) by *ResumeMismatchError: an
// interrupted receive's partial state did not belong to this replication's
// next step and was discarded (`zfs recv -A`) or is about to be.
var ErrResumeAbandoned = errors.New("interrupted receive abandoned")

// ResumeMismatchError reports an interrupted resumable receive into a
// target whose resume token does not apply to what this replication would
// send: the token names a snapshot of another dataset, a snapshot the
// source no longer has (or has under another GUID), or an incremental
// source that is not the target's newest snapshot. Callers surface it (an
// Event, a condition); the next sync plans afresh.
type ResumeMismatchError struct {
	// Target is the target dataset that held the partial state.
	Target string
	// Token is the decoded token; zero when it could not be decoded.
	Token zfsexec.ResumeToken
	// Reason says why the token does not apply.
	Reason string
	// Aborted reports that `zfs recv -A` discarded the partial state.
	Aborted bool
	// AbortErr is why the abort failed, when it did.
	AbortErr error
}

func (e *ResumeMismatchError) Error() string {
	what := "aborted"
	if !e.Aborted {
		what = "abort failed"
		if e.AbortErr != nil {
			what += ": " + e.AbortErr.Error()
		}
	}
	to := e.Token.ToName
	if to == "" {
		to = "(undecodable token)"
	}
	return fmt.Sprintf("replicate: interrupted receive of %s into %s does not apply (%s); %s", to, e.Target, e.Reason, what)
}

// Is makes errors.Is(err, ErrResumeAbandoned) true.
func (e *ResumeMismatchError) Is(target error) bool { return target == ErrResumeAbandoned }

// Unwrap returns the abort's error, if any.
func (e *ResumeMismatchError) Unwrap() error { return e.AbortErr }

// resumeMatch is a token checked against both nodes' listings.
type resumeMatch struct {
	tok zfsexec.ResumeToken
	// to is the source snapshot the token sends (found by GUID).
	to zfsexec.Dataset
	// from is the incremental source's short name on the source when it
	// is a snapshot (it can then be held); "" for a full stream or when
	// the source keeps only a bookmark of it.
	from string
	// fromName is the incremental source's short name on the source,
	// snapshot or bookmark; "" for a full stream.
	fromName string
}

// matchResumeToken decides from the listings whether token belongs to the
// next step of replicating srcDataset (src) into the target (tgt, which
// holds the token): the token must name a snapshot of srcDataset whose
// GUID the source still has (by GUID: a snapshot renamed since keeps its
// identity, and `zfs send -t` finds it by GUID too); an incremental token's
// source must still exist on the source (snapshot or bookmark) and be the
// target's newest snapshot; a full token goes into a target without
// snapshots. It returns the reason it does not match, or "".
func matchResumeToken(token, srcDataset string, src, tgt Listing) (resumeMatch, string) {
	tok, err := zfsexec.DecodeResumeToken(token)
	if err != nil {
		return resumeMatch{}, err.Error()
	}
	m := resumeMatch{tok: tok}
	if fs, _ := zfsexec.SplitSnapshot(tok.ToName); fs != srcDataset {
		return m, fmt.Sprintf("token sends %s, not a snapshot of %s", tok.ToName, srcDataset)
	}
	to := src.snapshotByGUID(tok.ToGUID)
	if to == nil {
		return m, fmt.Sprintf("source has no snapshot with guid %d (%s was destroyed or recreated)", tok.ToGUID, tok.ToName)
	}
	m.to = *to
	if tok.IsIncremental() {
		found := false
		for _, d := range src.Snapshots {
			if d.GUID == tok.FromGUID {
				found = true
				if d.IsSnapshot() {
					m.from, m.fromName = d.ShortName(), d.ShortName()
				} else if m.fromName == "" {
					m.fromName = d.ShortName()
				}
			}
		}
		if !found {
			return m, fmt.Sprintf("source has no snapshot or bookmark with the incremental source's guid %d", tok.FromGUID)
		}
	}
	newest := tgt.Newest(false)
	switch {
	case !tok.IsIncremental() && newest != nil:
		return m, fmt.Sprintf("full stream token, but the target has snapshot %s", newest.Name)
	case tok.IsIncremental() && newest == nil:
		return m, fmt.Sprintf("incremental token from guid %d, but the target has no snapshot", tok.FromGUID)
	case tok.IsIncremental() && newest.GUID != tok.FromGUID:
		return m, fmt.Sprintf("incremental token from guid %d, but the target's newest snapshot %s has guid %d", tok.FromGUID, newest.Name, newest.GUID)
	}
	return m, ""
}

// abandon reports and then discards an interrupted receive that does not
// apply: the log line comes first, so the report survives a crash during
// the abort; the returned *ResumeMismatchError carries it to the caller.
func (s *session) abandon(ctx context.Context, m resumeMatch, reason string) error {
	logr.FromContextOrDiscard(ctx).Info("abandoning interrupted receive",
		"target", s.t.Dataset, "toname", m.tok.ToName, "toguid", m.tok.ToGUID, "fromguid", m.tok.FromGUID,
		"bytes", m.tok.Bytes, "reason", reason)
	e := &ResumeMismatchError{Target: s.t.Dataset, Token: m.tok, Reason: reason}
	if err := s.tz.AbortRecv(ctx, s.t.Dataset); err != nil && !errors.Is(err, zfsexec.ErrNoResumeState) {
		e.AbortErr = err
		return e
	}
	e.Aborted = true
	return e
}

// resume continues an interrupted receive into the target, if there is
// one, after checking that its token belongs to this replication's next
// step (matchResumeToken). A token that does not apply is reported and
// then aborted (*ResumeMismatchError); the next sync plans afresh. A
// resumed transfer that fails keeps the partial state for the next try,
// unless the failure proves the token no longer applies (ZFS calls it
// invalid, or the check fails on fresh listings): a dropped connection or
// an unreachable agent costs nothing.
//
// The step discipline is the same as execute's: the token's to (and a
// snapshot from) are held on the source with the step tag before the
// transfer, and the confirmed receive is finished by finishStep.
func (s *session) resume(ctx context.Context) (*StepResult, error) {
	token, err := s.tz.ResumeToken(ctx, s.t.Dataset)
	if err != nil || token == "" {
		if errors.Is(err, zfsexec.ErrDatasetNotExist) {
			err = nil
		}
		return nil, err
	}
	// A listing that fails (a source pool not imported yet) decides
	// nothing: the partial state stays.
	if err := s.list(ctx); err != nil {
		return nil, err
	}
	m, reason := matchResumeToken(token, s.srcDataset, s.srcList, s.tgtList)
	if reason != "" {
		return nil, s.abandon(ctx, m, reason)
	}
	stepTag := snapname.StepHoldTag(s.t.ID)
	for _, short := range []string{m.from, m.to.ShortName()} {
		if short == "" {
			continue
		}
		if err := s.hold(ctx, s.sz, &s.srcList, s.srcDataset, short, stepTag); err != nil {
			return nil, fmt.Errorf("replicate: step hold: %w", err)
		}
	}
	req := agent.TransferRequest{
		Send:       zfsexec.SendOptions{ResumeToken: token},
		TargetAddr: s.t.Addr, TargetHostKey: s.t.HostKey,
		Recv:      zfsexec.RecvOptions{Target: s.t.Dataset, Unmounted: true, Resumable: true},
		RateLimit: s.opts.RateLimit,
	}
	if m.tok.IsIncremental() {
		// The target agent checks the base by GUID before receiving.
		req.Recv.Incremental, req.Recv.BaseGUID = true, m.tok.FromGUID
	} else {
		if s.tgtCaps.RecvProps {
			req.Recv.SetProps = replicaProps()
		}
		// A full receive that execute forced into an existing pristine
		// target resumes only with -F ("Resuming recv on existing
		// destination ... must specify -F", OpenZFS 2.3). Pristine is the
		// condition execute forced under; a new file system's partial
		// state never passes it (no replica mark yet).
		pristine, err := Pristine(ctx, s.tz, s.t.Dataset, s.t.origin(s.srcDataset))
		if err != nil {
			return nil, err
		}
		req.Recv.Force = pristine
	}
	start := time.Now()
	r, err := s.src.Transfer(ctx, req, func(p agent.Progress) {
		if s.opts.Progress != nil {
			s.opts.Progress(-1, p)
		}
	})
	if err != nil {
		if errors.Is(err, zfsexec.ErrInvalidResumeToken) {
			return nil, s.abandon(ctx, m, "zfs send -t refused the token: "+err.Error())
		}
		if !req.Recv.Force && needsForce(err) {
			// The target of an interrupted forced full receive is no
			// longer pristine: it is not overwritten. Once the partial
			// state is gone the next sync moves it aside.
			return nil, s.abandon(ctx, m, "the existing target of an interrupted full receive is no longer pristine")
		}
		// Did the token stop applying (its snapshot destroyed meanwhile)?
		// Only a positive answer from fresh listings aborts.
		if token2, terr := s.tz.ResumeToken(ctx, s.t.Dataset); terr == nil && token2 != "" && s.list(ctx) == nil {
			if m2, reason := matchResumeToken(token2, s.srcDataset, s.srcList, s.tgtList); reason != "" {
				return nil, s.abandon(ctx, m2, reason)
			}
		}
		return nil, fmt.Errorf("replicate: resume into %s (partial state kept): %w", s.t.Dataset, err)
	}
	s.opts.trace("transfer", start)
	failpoint.Hit(FailAfterRecv)
	step := &StepResult{From: m.fromName, To: m.to.ShortName(), Bytes: r.Bytes, Duration: time.Since(start), Resumed: true}
	to := PlanSnapshots(Listing{Exists: true, Snapshots: []zfsexec.Dataset{m.to}}, s.t.PolicyID)[0]
	if err := s.finishStep(ctx, m.from, to, !m.tok.IsIncremental()); err != nil {
		return step, err
	}
	return step, nil
}

// needsForce reports a resumed receive refused because its partial state
// belongs to a forced receive into an existing dataset (OpenZFS 2.3:
// "cannot receive resume stream: Resuming recv on existing destination
// 'tank/t' must specify -F to overwrite it").
func needsForce(err error) bool {
	var ce *zfsexec.CommandError
	return errors.As(err, &ce) && strings.Contains(ce.Stderr, "Resuming recv on existing destination") &&
		strings.Contains(ce.Stderr, "must specify -F")
}
