// Package tenancy decides which replica targets a tenant may ask for. It is
// pure: policies, a namespace's labels and the targets come in, the
// decision comes out.
//
// Tenants (whoever may edit PVCs and VolumeSnapshots in a namespace) ask
// for replicas with z8r.dev/replicate-to. The cluster administrator scopes
// what they may ask for with cluster-scoped ReplicationTargetPolicy objects
// (api/v1alpha1): each selects namespaces by their labels (an empty
// selector selects every namespace) and lists targets, a node and a parent
// dataset. A tenant target (node N, dataset D) is allowed when at least one
// policy that selects the namespace lists N with a parent P such that D is
// strictly under P ("P/..."; never P itself). Everything else is refused,
// with a reason naming the target (Check): no policy at all, no policy
// selecting the namespace, or none allowing that node and dataset. The
// decision fails closed: a policy whose selector does not parse selects no
// namespace, and an entry whose parent is not a valid dataset name
// (zfsexec.ValidateDataset) allows nothing.
//
// Targets the administrator sets (a VolumeSnapshotClass's replicate-to,
// DatasetReplications, node annotations, a VolumeSnapshotContent's own
// annotation) are not checked here: callers pass only tenant targets.
package tenancy
