package zfsexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SendOptions describe one `zfs send`.
type SendOptions struct {
	// Snapshot is the full name of the snapshot to send (dataset@snap).
	Snapshot string
	// From is the incremental source: a snapshot ("ds@a" or "@a") or a
	// bookmark ("ds#a" or "#a") of the same dataset. Empty: full stream.
	From string
	// Intermediates sends every snapshot between From and Snapshot (-I)
	// instead of one step (-i). From must be a snapshot.
	Intermediates bool
	// Props includes the dataset's properties (-p).
	Props bool
	// Replicate sends the dataset and its descendants (-R).
	Replicate bool
	// Raw sends encrypted blocks as they are (-w, OpenZFS).
	Raw bool
	// Compressed keeps blocks compressed on the wire (-c, OpenZFS).
	Compressed bool
	// LargeBlocks allows blocks over 128 KiB (-L, OpenZFS).
	LargeBlocks bool
	// ResumeToken resumes an interrupted send (-t, OpenZFS). When set,
	// every other field must be empty: the token says what to send.
	ResumeToken string
}

// Validate checks names and option combinations without knowing the
// node, and returns the argv it would have with every feature present;
// the argv a node really runs comes from Argv(caps).
func (o SendOptions) Validate() ([]string, error) { return o.Argv(allCaps) }

// Validate checks names and option combinations without knowing the node.
func (o RecvOptions) Validate() ([]string, error) { return o.Argv(allCaps) }

// IsIncremental reports whether the stream is incremental.
func (o SendOptions) IsIncremental() bool { return o.From != "" }

// allCaps has every feature; building an argv against it checks names only.
var allCaps = Capabilities{Bookmarks: true, ResumableRecv: true, RawSend: true,
	CompressedSend: true, HoldsList: true, ParsableList: true, RecvProps: true, DryRunSend: true}

// Argv validates o against naming rules and caps and returns the argv.
func (o SendOptions) Argv(caps Capabilities) ([]string, error) {
	if o.ResumeToken != "" {
		if !caps.ResumableRecv {
			return nil, caps.unsupported("send -t (resume)")
		}
		if o != (SendOptions{ResumeToken: o.ResumeToken}) {
			return nil, errors.New("zfsexec: send: a resume token excludes every other option")
		}
		if !resumeTokenRE.MatchString(o.ResumeToken) || len(o.ResumeToken) > 16<<10 {
			return nil, nameErr(o.ResumeToken, "not a resume token")
		}
		return []string{"zfs", "send", "-t", o.ResumeToken}, nil
	}
	if err := ValidateSnapshot(o.Snapshot); err != nil {
		return nil, err
	}
	argv := []string{"zfs", "send"}
	if o.Props {
		argv = append(argv, "-p")
	}
	if o.Replicate {
		argv = append(argv, "-R")
	}
	if o.Raw {
		if !caps.RawSend {
			return nil, caps.unsupported("raw send (-w)")
		}
		argv = append(argv, "-w")
	}
	if o.Compressed {
		if !caps.CompressedSend {
			return nil, caps.unsupported("compressed send (-c)")
		}
		argv = append(argv, "-c")
	}
	if o.LargeBlocks {
		if !caps.CompressedSend {
			return nil, caps.unsupported("large-block send (-L)")
		}
		argv = append(argv, "-L")
	}
	if o.From != "" {
		from, err := o.fullFrom()
		if err != nil {
			return nil, err
		}
		isBookmark := strings.Contains(from, "#")
		if isBookmark && !caps.Bookmarks {
			return nil, caps.unsupported("incremental send from a bookmark")
		}
		flag := "-i"
		if o.Intermediates {
			if isBookmark {
				return nil, nameErr(o.From, "-I needs a snapshot, not a bookmark")
			}
			flag = "-I"
		}
		argv = append(argv, flag, from)
	} else if o.Intermediates {
		return nil, errors.New("zfsexec: send: Intermediates without From")
	}
	return append(argv, o.Snapshot), nil
}

// fullFrom expands "@a"/"#a" to the snapshot's dataset and checks that the
// source belongs to the same dataset.
func (o SendOptions) fullFrom() (string, error) {
	fs, _ := SplitSnapshot(o.Snapshot)
	from := o.From
	if strings.HasPrefix(from, "@") || strings.HasPrefix(from, "#") {
		from = fs + from
	}
	if err := ValidateSnapshotOrBookmark(from); err != nil {
		return "", err
	}
	if ffs, _ := SplitSnapshot(from); ffs != fs {
		return "", nameErr(o.From, "incremental source must be on %q", fs)
	}
	return from, nil
}

// Send runs `zfs send` and writes the stream to w. It returns when the
// stream has ended; a receiver that stops reading makes it fail with an
// error matching ErrBrokenPipe or a context error.
func (z *ZFS) Send(ctx context.Context, o SendOptions, w io.Writer) error {
	// Names first, so a bad name never starts even the capability probe.
	if _, err := o.Validate(); err != nil {
		return err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	argv, err := o.Argv(caps)
	if err != nil {
		return err
	}
	err = z.runner.Run(ctx, Command{Argv: argv, Stdout: w})
	var ce *CommandError
	if o.From != "" && errors.As(err, &ce) && errors.Is(ce, ErrDatasetNotExist) {
		// OpenZFS reports a missing incremental source as "cannot open
		// 'ds@nope': dataset does not exist" (zfs-fuse as "incremental
		// source (@nope) does not exist").
		if from, ferr := o.fullFrom(); ferr == nil && strings.Contains(ce.Stderr, "'"+from+"'") {
			return fmt.Errorf("zfsexec: send from %s: %w: %w", from, ErrIncrementalSourceMissing, err)
		}
	}
	return err
}

// SendSize is the stream size the send o describes would have, without
// sending it: `zfs send -n -P` where the node has it (DryRunSend). Where it
// has not (zfs-fuse), a full send's estimate is its snapshot's referenced
// size, which a plain stream is close to; an incremental one is
// ErrUnsupported there.
func (z *ZFS) SendSize(ctx context.Context, o SendOptions) (int64, error) {
	if _, err := o.Validate(); err != nil {
		return 0, err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return 0, err
	}
	if !caps.DryRunSend {
		if o.From != "" || o.ResumeToken != "" || o.Replicate || o.Intermediates {
			return 0, caps.unsupported("send -n -P (size of an incremental send)")
		}
		props, err := z.Get(ctx, o.Snapshot, "referenced")
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(props["referenced"].Value, 10, 64)
		if err != nil || n < 0 {
			return 0, &ParseError{Argv: []string{"zfs", "get", "referenced", o.Snapshot}, Text: props["referenced"].Value, Reason: "not a size"}
		}
		return n, nil
	}
	argv, err := o.Argv(caps)
	if err != nil {
		return 0, err
	}
	argv = append([]string{"zfs", "send", "-n", "-P"}, argv[2:]...)
	out, err := z.output(ctx, argv...)
	if err != nil {
		return 0, err
	}
	return ParseSendSize(argv, out)
}

// ParseSendSize reads the "size" line of `zfs send -n -P` output.
func ParseSendSize(argv []string, out string) (int64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "size" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 {
				return 0, &ParseError{Argv: argv, Text: line, Reason: "not a size"}
			}
			return n, nil
		}
	}
	return 0, &ParseError{Argv: argv, Text: firstLine(out), Reason: "no size line"}
}

// RecvOptions describe one `zfs recv`.
type RecvOptions struct {
	// Target is the filesystem to receive into.
	Target string
	// Unmounted leaves the received filesystem unmounted (-u). Replication
	// targets are always received unmounted.
	Unmounted bool
	// Force rolls the target back to its most recent snapshot first (-F).
	// Only a caller whose policy explicitly allows it may set this.
	Force bool
	// Resumable keeps partial state if the stream is interrupted (-s,
	// OpenZFS), so the transfer can continue from the receive_resume_token.
	Resumable bool
	// SetProps overrides properties on the received dataset (-o, OpenZFS).
	SetProps map[string]string
	// ExcludeProps leaves these properties out of the received dataset
	// (-x, OpenZFS).
	ExcludeProps []string
	// Incremental declares the stream incremental. ZFS (zfs-fuse at least)
	// may then land the stream, with exit 0, in another dataset when Target
	// does not exist, so Recv checks Target exists before it starts.
	Incremental bool
	// BaseGUID, when non-zero, is the GUID of the incremental source. Recv
	// checks that Target has a snapshot with that GUID before it starts.
	BaseGUID uint64
	// BaseName, with BaseGUID, is the short name the base is expected to
	// have on the target: the check then reads that one snapshot instead
	// of listing them all (a renamed base falls back to the listing).
	BaseName string
}

// Argv validates o against naming rules and caps and returns the argv.
func (o RecvOptions) Argv(caps Capabilities) ([]string, error) {
	if err := ValidateDataset(o.Target); err != nil {
		return nil, err
	}
	argv := []string{"zfs", "recv"}
	if o.Unmounted {
		argv = append(argv, "-u")
	}
	if o.Force {
		argv = append(argv, "-F")
	}
	if o.Resumable {
		if !caps.ResumableRecv {
			return nil, caps.unsupported("resumable receive (-s)")
		}
		argv = append(argv, "-s")
	}
	if len(o.SetProps) > 0 || len(o.ExcludeProps) > 0 {
		if !caps.RecvProps {
			return nil, caps.unsupported("receive property overrides (-o/-x)")
		}
		kvs, err := propArgs(o.SetProps)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			argv = append(argv, "-o", kv)
		}
		for _, p := range o.ExcludeProps {
			if err := ValidateProperty(p); err != nil {
				return nil, err
			}
			argv = append(argv, "-x", p)
		}
	}
	return append(argv, o.Target), nil
}

// ErrBaseMissing means the target lacks the incremental source the stream
// needs (checked by GUID before receiving).
var ErrBaseMissing = errors.New("target does not have the incremental base snapshot")

// Recv runs `zfs recv` reading the stream from r.
func (z *ZFS) Recv(ctx context.Context, o RecvOptions, r io.Reader) error {
	if _, err := o.Validate(); err != nil {
		return err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	argv, err := o.Argv(caps)
	if err != nil {
		return err
	}
	if o.Incremental || o.BaseGUID != 0 {
		if err := z.checkIncrementalTarget(ctx, o); err != nil {
			return err
		}
	}
	return z.runner.Run(ctx, Command{Argv: argv, Stdin: r})
}

func (z *ZFS) checkIncrementalTarget(ctx context.Context, o RecvOptions) error {
	if o.BaseGUID != 0 && o.BaseName != "" {
		p, err := z.Get(ctx, o.Target+"@"+o.BaseName, "guid")
		if err == nil && p["guid"].Value == strconv.FormatUint(o.BaseGUID, 10) {
			return nil
		}
	}
	snaps, err := z.Snapshots(ctx, o.Target)
	if err != nil {
		if errors.Is(err, ErrDatasetNotExist) {
			return fmt.Errorf("zfsexec: incremental receive into %s: %w", o.Target, err)
		}
		return err
	}
	if o.BaseGUID == 0 {
		return nil
	}
	for _, s := range snaps {
		if s.IsSnapshot() && s.GUID == o.BaseGUID {
			return nil
		}
	}
	return fmt.Errorf("zfsexec: incremental receive into %s: base guid %d: %w", o.Target, o.BaseGUID, ErrBaseMissing)
}
