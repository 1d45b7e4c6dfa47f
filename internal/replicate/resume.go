package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/zfsexec"
)

// resume continues an interrupted receive into t.Dataset, if there is one.
func resume(ctx context.Context, src Endpoint, t Target, opts Options) (*StepResult, error) {
	tz := t.Endpoint.ZFS()
	token, err := tz.ResumeToken(ctx, t.Dataset)
	if err != nil || token == "" {
		if errors.Is(err, zfsexec.ErrDatasetNotExist) {
			err = nil
		}
		return nil, err
	}
	start := time.Now()
	r, err := src.Transfer(ctx, agent.TransferRequest{
		Send:       zfsexec.SendOptions{ResumeToken: token},
		TargetAddr: t.Addr, TargetHostKey: t.HostKey,
		Recv: zfsexec.RecvOptions{Target: t.Dataset, Unmounted: true, Resumable: true},
	}, func(p agent.Progress) {
		if opts.Progress != nil {
			opts.Progress(-1, p)
		}
	})
	if err != nil {
		// A token that no longer applies (source snapshot gone) is
		// abandoned so the next sync plans afresh.
		if aerr := tz.AbortRecv(ctx, t.Dataset); aerr != nil {
			return nil, fmt.Errorf("replicate: resume failed (%v) and abort failed: %w", err, aerr)
		}
		return nil, fmt.Errorf("replicate: resume into %s: %w", t.Dataset, err)
	}
	return &StepResult{Bytes: r.Bytes, Duration: time.Since(start), Resumed: true}, nil
}
