// Package chaos is z8r's crash-anywhere suite (build tag e2e; issue 15,
// docs/chaos.md): a real kube-apiserver, three zfs-fuse nodes with real
// agents, and the controller as its own process (cluster.ControllerProcess),
// one DatasetReplication with two targets and retention last=1.
//
// Each iteration writes new data on the source, brings the schedule round
// (a new controller process whose clock is one interval further ahead),
// injects one fault chosen from the seed — a failpoint that SIGKILLs the
// controller after the snapshot, after the step holds, between the
// receive's exit and the hold move, after the new base hold, or mid-prune;
// a SIGKILL of the controller a random few ms into a transfer; a SIGKILL of
// the source or a target agent mid-send; or a target down for a whole round
// while source retention runs — restarts what died, waits for
// every target to catch up, stops the controller and checks the invariants
// of internal/testbed/invariants on what ZFS reports (I1 and I3 also right
// after the crash).
//
// The seed is printed at the start and with every failure; -chaos.seed=N
// (or Z8R_CHAOS_SEED) replays the same fault schedule and data, and
// -chaos.iterations=N (Z8R_CHAOS_ITERATIONS) sets the length: `make test`
// runs a short fixed-seed run, `make chaos` a long one. Every wait is
// bounded.
//
// promotion_test.go kills the controller at each failpoint of a promotion
// (controllers/promotion.go: planned switchover back and forth, an
// unplanned failover and the old source's rejoin, a cancel) and checks
// that it completes with every file intact, one writable copy, no hold of
// the old direction left and the invariants above.
package chaos
