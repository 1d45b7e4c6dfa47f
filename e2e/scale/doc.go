//go:build scale

// Package scale measures z8r's controller at scale against the real test
// bed (zfs-fuse nodes in network namespaces, real agents over SSH, a real
// kube-apiserver and the real snapshot-controller): API requests per
// reconcile by verb and resource (a counting transport on the manager's
// rest.Config), LIST calls per cycle, status writes per steady reconcile,
// ZFS commands per cycle (the agents' command logs), controller RSS (the
// controller as its own process), full-cycle time, and VolumeSnapshot
// create → readyToUse latency. Run it with `make bench-scale`; it is not
// part of `make test`. Results are in docs/benchmarks.md ("Scale").
package scale
