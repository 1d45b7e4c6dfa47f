// Package agent is z8r's node executor: an SSH endpoint (Server) that runs
// typed ZFS requests on one node, and its Client.
//
// Contract of the Server (docs/security.md maps each line to its test):
//   - Only keys listed in the authorized keys log in; an authorized_keys
//     line with options, or one that does not parse, makes the whole file
//     unusable (every login refused, the error logged naming the line),
//     since the agent would not enforce the options.
//   - Only the channels ChanRun and ChanTransfer are served; payloads are
//     decoded strictly (protocol.go) and checked by Policy before anything
//     starts; a refused request starts nothing. Policy.Check judges an argv
//     by its effect, not only its shape: only the properties, tags,
//     bookmarks, send and receive options z8r itself uses, on names inside
//     the allowed pools, and resume tokens decoded and confined to those
//     pools (allow.go). Then, before anything starts, CheckEffect reads
//     ZFS (one zfs get) for the requests whose effect depends on what they
//     touch (effect.go): zfs recv -F only into a missing target or a
//     pristine z8r replica (z8r.dev:replica-of set locally, readonly=on,
//     unmounted, nothing below it); zfs destroy [-d] SNAP only of a missing
//     snapshot or one carrying, set locally, z8r.dev:owner=z8r or
//     z8r.dev:volumesnapshotcontent; zfs rename aside only of a filesystem
//     with z8r.dev:replica-of set locally. A failed read refuses (fail
//     closed). The marks are ones the same key may set (zfs set z8r.dev:*),
//     so this stops a controller's mistake, not a hostile key holder.
//   - Every login refusal and request is audited (audit.go): client key
//     fingerprint, remote address, argv, outcome (refused + reason,
//     accepted, finished + exit status) in the log under the constant
//     message "audit", and optionally as JSON lines in ServerConfig.AuditLog.
//   - Limits (limits.go, ServerConfig): connections not yet authenticated
//     are capped globally and per remote IP (the excess closed at once and
//     counted in Stats) and must authenticate within HandshakeTimeout;
//     temporary Accept errors are retried with backoff; a non-stream
//     command is killed past MaxOutput bytes (ErrOutputLimit) or
//     RequestTimeout (ErrRequestTimeout); a transfer or zfs send/recv
//     stream that moves no byte for StallTimeout is stopped at both ends as
//     a cancellation is (ErrStalled).
//   - Typed errors survive the wire: the client gets the same
//     *zfsexec.CommandError, RefusedError or sentinel (errors.Is) the agent
//     saw.
//
// The Client bounds non-stream requests itself too (ClientConfig.MaxOutput,
// RequestTimeout), so a hostile agent cannot grow the caller's memory or
// hang it, and honours one data ticket per channel (a second one ends the
// request with ErrProtocol).
package agent
