// Package failpoint lets the chaos suite crash a z8r process at a named
// point in its code, the way a power cut or an OOM kill would: between two
// ZFS commands, between a receive's exit and the hold move, in the middle
// of a prune.
//
// Contract:
//   - Hit(name) does nothing unless the process was started with the
//     environment variable Z8R_FAILPOINTS naming that point. The value is a
//     comma-separated list of name or name=N entries; name=N fires on the
//     N-th hit of that point (counted from 1), name alone on the first.
//   - A point that fires writes one line "z8r failpoint: <name>" to stderr
//     and kills the process with SIGKILL: no deferred function, no
//     finalizer, no flush runs, exactly as in a crash.
//   - Unarmed, Hit costs one map lookup on a map read once at start; it is
//     safe for concurrent use.
//   - Names are constants declared where the point is (so a grep for
//     failpoint.Hit lists every point); the chaos suite picks among them.
//
// It is for tests only in effect: nothing in z8r sets Z8R_FAILPOINTS.
package failpoint
