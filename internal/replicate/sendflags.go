package replicate

import (
	"context"
	"errors"
	"fmt"

	"github.com/z8r-project/z8r/internal/plan"
	"github.com/z8r-project/z8r/zfsexec"
)

// ErrEncryptedNeedsRaw means the source dataset is encrypted and the sync
// cannot send it raw (zfs send -w: the blocks as they are on disk, still
// encrypted), because a node lacks raw sends or because the existing
// replica was received decrypted (a raw incremental cannot land on it).
// Sending it decrypted would put its plaintext on the wire and on the
// target: only Options.AllowDecryptedSend permits that. Nothing was sent.
var ErrEncryptedNeedsRaw = errors.New("encrypted dataset can only be sent raw")

// encoding is how a sync's streams are encoded: the zfs send flags that
// change the stream's form but not what is received.
type encoding struct {
	// raw: -w, an encrypted dataset's blocks as they are on disk (still
	// encrypted and compressed; OpenZFS implies -L -c -e with it).
	raw bool
	// compressed: -c, blocks compressed on disk stay compressed on the
	// wire.
	compressed bool
	// largeBlocks: -L, records over 128 KiB stay whole.
	largeBlocks bool
}

// apply sets e's flags on o. A resume (o.ResumeToken) takes none: the
// token carries the interrupted send's flags.
func (e encoding) apply(o zfsexec.SendOptions) zfsexec.SendOptions {
	if o.ResumeToken != "" {
		return o
	}
	o.Raw, o.Compressed, o.LargeBlocks = e.raw, e.compressed, e.largeBlocks
	return o
}

// chooseEncoding chooses the send flags of a sync from whether the source
// dataset is encrypted, whether the existing replica (when the sync's
// first step is incremental into one) was received raw, and both nodes'
// capabilities:
//   - an encrypted source is sent raw (-w) when both nodes can and the
//     replica, if any is built on, was received raw; otherwise the sync is
//     refused with ErrEncryptedNeedsRaw, unless allowDecrypted, when it
//     is sent decrypted as an unencrypted one would be;
//   - an unencrypted source (or a decrypted send) is sent compressed (-c)
//     with large blocks (-L) when both nodes can. -L must then stay on for
//     every later incremental (OpenZFS refuses an incremental without -L
//     onto a replica received with large blocks), which it does while the
//     nodes' capabilities do not change.
//
// Embedded blocks (-e) are not chosen: a non-raw stream with them cannot
// be received as an encrypted dataset (a target under an encrypted
// parent), and -c already keeps compressed blocks compact.
func chooseEncoding(encrypted, replicaDecrypted bool, src, tgt zfsexec.Capabilities, allowDecrypted bool) (encoding, error) {
	if encrypted {
		switch {
		case src.RawSend && tgt.RawSend && !replicaDecrypted:
			return encoding{raw: true}, nil
		case allowDecrypted:
			// Decrypted, as permitted: the encodings an unencrypted
			// source gets.
		case replicaDecrypted:
			return encoding{}, fmt.Errorf("replicate: the replica was received decrypted, a raw incremental cannot follow: %w", ErrEncryptedNeedsRaw)
		case !src.RawSend:
			return encoding{}, fmt.Errorf("replicate: source node (%s %s) lacks raw sends: %w", src.Implementation, src.Version, ErrEncryptedNeedsRaw)
		default:
			return encoding{}, fmt.Errorf("replicate: target node (%s %s) lacks raw receives: %w", tgt.Implementation, tgt.Version, ErrEncryptedNeedsRaw)
		}
	}
	if src.CompressedSend && tgt.CompressedSend {
		return encoding{compressed: true, largeBlocks: true}, nil
	}
	return encoding{}, nil
}

// encoding returns the send flags for the plan p's steps (chooseEncoding),
// reading the source's encryption property once per session: only on a
// node with raw sends, since a node without them (zfs-fuse) has no
// encryption (nor the property). An incremental first step into an
// existing replica of an encrypted source also reads the replica's
// encryption: one received decrypted (encryption=off) cannot take a raw
// incremental.
func (s *session) encoding(ctx context.Context, p plan.Plan) (encoding, error) {
	if !s.encChecked {
		s.encrypted = false
		if s.srcCaps.RawSend {
			props, err := s.sz.Get(ctx, s.srcDataset, "encryption")
			if err != nil {
				return encoding{}, fmt.Errorf("replicate: read encryption of %s: %w", s.srcDataset, err)
			}
			s.encrypted = isEncrypted(props["encryption"].Value)
		}
		s.encChecked = true
	}
	replicaDecrypted := false
	if s.encrypted && s.tgtCaps.RawSend && len(p.Steps) > 0 && p.Steps[0].From != nil {
		props, err := s.tz.Get(ctx, s.t.Dataset, "encryption")
		if err != nil {
			return encoding{}, fmt.Errorf("replicate: read encryption of %s: %w", s.t.Dataset, err)
		}
		replicaDecrypted = !isEncrypted(props["encryption"].Value)
	}
	return chooseEncoding(s.encrypted, replicaDecrypted, s.srcCaps, s.tgtCaps, s.opts.AllowDecryptedSend)
}

// isEncrypted reads an encryption property's value: "off", or a cipher
// ("aes-256-gcm", ...). An empty or "-" value (no such property) is off.
func isEncrypted(v string) bool { return v != "" && v != "-" && v != "off" }
