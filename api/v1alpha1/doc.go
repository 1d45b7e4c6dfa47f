// Package v1alpha1 holds z8r's API types, group z8r.dev:
//
//   - Z8RNode (cluster-scoped, one per node running the agent): what the
//     agent publishes about its node (address, host key, pools, ZFS version,
//     capabilities) in status, and the host key the controller trusts in
//     spec.pinnedHostKey. Agents may write only status; the pin changes only
//     on first use (by the controller) or by an administrator's approval.
//   - DatasetReplication (cluster-scoped, one per source dataset): where a
//     dataset is snapshotted and replicated to, and, in status, how far each
//     target is. The controller creates these from node annotations (and
//     PVC annotations); users may also create them directly.
//   - ReplicationTargetPolicy (cluster-scoped): which replica targets
//     tenants may ask for.
//   - ReplicaRestore (namespaced, admin-only): a snapshot on a node (a
//     replication's, or a VolumeSnapshotContent's) to clone into a new
//     dataset there, with a PV and a pre-bound PVC in its namespace
//     (docs/restore.md). Its spec is immutable; the API server refuses a
//     source naming both or neither of replication and
//     volumeSnapshotContent, and dataset and node names z8r would refuse.
//
// The markers on the spec types are part of the contract: the API server
// refuses a DatasetReplication or ReplicationTargetPolicy whose node
// names are not node names, whose dataset names zfsexec.ValidateDataset
// would refuse (as far as CEL can tell), whose targets repeat or equal
// the source, or whose source changed (README, "What the API server
// refuses"). The schedule and retention grammars stay the controller's to
// check. The controller still validates everything it uses, since
// objects created before the rules (or on a server without them) exist.
//
// +kubebuilder:object:generate=true
// +groupName=z8r.dev
package v1alpha1
