// Package health serves a node agent's probe and metrics endpoints on one
// HTTP port (the agent's --health-addr):
//
//	/healthz  200 "ok" while the process serves HTTP (liveness)
//	/readyz   200 "ok" when the readiness check passes, else 503 and the error
//	/metrics  Prometheus text format from Server.Gatherer (absent when nil)
//
// Contract:
//   - Check is the readiness check (for the agent: zfs answers and every
//     allowed pool exists). It runs with Timeout, at most once per CacheFor:
//     kubelet probes, scrapes of z8r_agent_ready and concurrent requests share
//     one result, so a slow zfs is never asked more often than that.
//   - ReadyCollector exports the same cached result as the gauge
//     z8r_agent_ready (1 ready, 0 not).
//   - Nothing here knows about ZFS; the clock is injectable (Now).
package health
