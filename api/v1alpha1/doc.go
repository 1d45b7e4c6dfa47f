// Package v1alpha1 holds z8r's API types, group z8r.dev:
//
//   - ZFSNode (cluster-scoped, one per node running the agent): what the
//     agent publishes about its node (address, host key, pools, ZFS version,
//     capabilities) in status, and the host key the controller trusts in
//     spec.pinnedHostKey. Agents may write only status; the pin changes only
//     on first use (by the controller) or by an administrator's approval.
//   - DatasetReplication (cluster-scoped, one per source dataset): where a
//     dataset is snapshotted and replicated to, and, in status, how far each
//     target is. The controller creates these from node annotations (and
//     PVC annotations); users may also create them directly.
//
// +kubebuilder:object:generate=true
// +groupName=z8r.dev
package v1alpha1
