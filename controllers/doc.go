// Package controllers holds z8r's reconcilers. Each is thin: it reads
// objects, decides through the pure packages under internal/ (policy,
// schedule, plan, retention), acts on nodes only through their agents
// (internal/replicate over internal/agent), and writes status and Events
// with constant reasons.
//
//   - ZFSNodeReconciler pins each agent's host key on first use and reports
//     a changed key (HostKeyTrusted=False) until an administrator approves.
//   - NodePolicyReconciler turns node labels and annotations (the original
//     z8r's and z8r.dev's) into DatasetReplications; a node with a malformed
//     annotation gets a Warning and changes nothing.
//   - DatasetReplicationReconciler snapshots on schedule, brings every target
//     up to date, protects bases, prunes, and records per-target status and
//     metrics.
package controllers
