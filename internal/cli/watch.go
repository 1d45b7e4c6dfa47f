package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"
)

// render writes what was read as of now.
type render func(w io.Writer, now time.Time) error

// status reads what `kubectl z8r status` shows and returns its rendering
// in format f.
func (r *runner) status(ctx context.Context, args []string, f string, allNamespaces bool) (render, error) {
	reps, err := r.replications(ctx, args)
	if err != nil {
		return nil, err
	}
	var vs []VolumeSnapshotReplication
	scope := ""
	if len(args) == 0 {
		if !allNamespaces {
			if scope, err = r.namespace(); err != nil {
				return nil, err
			}
		}
		if vs, err = r.volumeSnapshotReplications(ctx, scope); err != nil {
			return nil, err
		}
	}
	return func(w io.Writer, now time.Time) error {
		switch f {
		case OutputJSON, OutputYAML:
			return PrintObject(w, f, NewStatusReport(reps, vs, scope, now))
		}
		if err := WriteStatus(w, reps, now, f == OutputWide); err != nil {
			return err
		}
		if len(vs) > 0 {
			fmt.Fprintln(w)
		}
		return WriteVolumeSnapshotStatus(w, vs, scope, now, f == OutputWide)
	}, nil
}

// watchOutput reads every interval and writes what it read, under a line
// with the time, whenever it differs from what was last written, until ctx
// ends (then it returns nil). Ages alone changing is no change: two
// readings are compared as rendered against one fixed clock. An error
// reading ends the watch.
func watchOutput(ctx context.Context, w io.Writer, every time.Duration, now func() time.Time, read func() (render, error)) error {
	if every <= 0 {
		return fmt.Errorf("--watch-interval must be positive, not %v", every)
	}
	fixed := time.Unix(0, 0)
	var last []byte
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		show, err := read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var key bytes.Buffer
		if err := show(&key, fixed); err != nil {
			return err
		}
		if !bytes.Equal(key.Bytes(), last) {
			last = key.Bytes()
			if _, err := fmt.Fprintf(w, "--- %s\n", now().UTC().Format(time.RFC3339)); err != nil {
				return err
			}
			if err := show(w, now()); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
