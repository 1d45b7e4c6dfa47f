// Package agent is z8r's node executor: an SSH endpoint (Server) that runs
// typed ZFS requests on one node, and its Client.
//
// Who may do what (docs/security.md maps each line to its test):
//   - The keys in the authorized keys (the controller's) log in with full
//     authority: every request below. They are also the only authorities
//     whose transfer grants are honoured. An authorized_keys line with
//     options, or one that does not parse, makes the whole file unusable
//     (every login refused, the error logged naming the line), since the
//     agent would not enforce the options.
//   - A node's identity is its agent's host key (ServerConfig.HostKey,
//     generated on the node). No key is shared by nodes. A node's plain
//     host key logs in nowhere.
//   - Another agent logs in only with its host key certified by a grant
//     (grant.go, grantconn.go): an SSH user certificate signed by an
//     authorized key, principal and login user GrantPrincipal, within its
//     validity window (at most MaxGrantLifetime), no critical option but
//     the grant, the grant naming this agent's host key, its serial never
//     used before (marked used once the handshake completes, remembered
//     until it expires). Such a connection may run, on ChanRun only, the
//     reads zfsexec.ZFS.Recv makes before receiving and exactly one zfs
//     recv: the argv of the grant's RecvOptions, still checked by Policy
//     and CheckEffect. Nothing else; every refusal is audited with the
//     certificate's key id, serial and key fingerprint.
//   - A transfer request (ChanTransfer, from the controller) carries the
//     grant; the source agent refuses, before anything runs, one without a
//     grant or whose grant is not signed by an authorized key, not for its
//     own host key, not valid now, or not equal to the request field by
//     field. It then dials only the grant's TargetAddr, verifies the
//     grant's TargetHostKey, on a connection of its own per transfer.
//
// Contract of the Server's requests:
//   - Only the channels ChanRun and ChanTransfer are served; payloads are
//     decoded strictly (protocol.go) and checked by Policy before anything
//     starts; a refused request starts nothing. Policy.Check judges an argv
//     by its effect, not only its shape: only the properties, tags,
//     bookmarks, send and receive options z8r itself uses, on names inside
//     the allowed pools, and resume tokens decoded and confined to those
//     pools (allow.go); for promotion and restore also zfs set
//     readonly=off|canmount=on FS, zfs clone (-o as for create), zfs
//     promote FS, zfs mount FS (no options) and zfs inherit of z8r's user
//     properties only. Then, before anything starts, CheckEffect reads
//     ZFS (one zfs get) for the requests whose effect depends on what they
//     touch (effect.go): zfs recv -F only into a missing target or a
//     pristine z8r replica (z8r.dev:replica-of set locally, readonly=on,
//     unmounted, nothing below it); zfs destroy [-d] SNAP only of a missing
//     snapshot or one carrying, set locally, z8r.dev:owner=z8r or
//     z8r.dev:volumesnapshotcontent; zfs rename aside (to the diverged or
//     the tail form) only of a filesystem with z8r.dev:replica-of set
//     locally; zfs set readonly=off|canmount=on only on a filesystem with
//     that mark set locally; zfs promote only of a clone with that mark
//     set locally; zfs mount only of a filesystem whose mountpoint is
//     inherited or default. A failed read refuses (fail closed). The marks are ones the same key may set (zfs set z8r.dev:*),
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
// The Client issues the grant of each Transfer itself when
// ClientConfig.GrantAuthority is set (for the host key it verified on the
// source). It bounds non-stream requests itself too (ClientConfig.MaxOutput,
// RequestTimeout), so a hostile agent cannot grow the caller's memory or
// hang it, and honours one data ticket per channel (a second one ends the
// request with ErrProtocol).
package agent
