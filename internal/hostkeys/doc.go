// Package hostkeys pins node agents' SSH host keys: trust on first use,
// then refuse any other key until an administrator approves it.
//
// Contract:
//   - Verify pins the presented key when the node has none pinned, accepts
//     the pinned key, and refuses any other key with a *ChangedError
//     (errors.Is ErrChanged) without changing the pin.
//   - Approve replaces the pin; it is the only way a changed key is
//     accepted. In a cluster the pin lives where agents cannot write it
//     (the Z8RNode's spec, written by the controller and by
//     `kubectl z8r approve-hostkey`); FileStore keeps pins in a file for
//     tests and the demo.
package hostkeys
