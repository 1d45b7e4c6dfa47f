// Package policy turns the node labels and annotations users write into the
// replications z8r runs. It is pure: nodes come in as names with label and
// annotation maps, no Kubernetes types.
//
// # Keys
//
// A node takes part if it carries the label z8r.dev/replication=true or the
// original z8r's zfs.replication.takutakahashi.dev=true; other nodes are
// ignored entirely. On a participating node:
//
//	z8r.dev/master              tank/a,tank/b     datasets this node is the source of
//	z8r.dev/replica             tank/a,tank/b:backup/b
//	                                              datasets this node receives; SRC:DST
//	                                              receives SRC into DST on this node
//	                                              (another pool or parent)
//	z8r.dev/schedule            6h | 0 */6 * * *  snapshot schedule of this node's
//	                                              masters (package schedule; default 6h)
//	z8r.dev/retention           retention of this node's masters
//	                                              (package retention; default DefaultSource)
//	z8r.dev/target-retention    retention of what this node receives (default DefaultTarget)
//	z8r.dev/replicate-foreign   true|false        also send snapshots z8r did not create
//	                                              from this node's masters (default false)
//	z8r.dev/rollback-diverged   true|false        roll this node's targets back when they
//	                                              diverged, destroying only z8r's snapshots
//	                                              (default false)
//	z8r.dev/allow-unplanned-failover true|false   when this node becomes the master of a
//	                                              dataset another node mastered (the two
//	                                              nodes' annotations swapped: a promotion),
//	                                              go ahead even if the old master cannot be
//	                                              reached (default false: wait for it)
//
// zfs.replication.takutakahashi.dev/master and .../replica mean what they
// meant in the original: lists of datasets, received under the same name
// (a ':' there is part of the dataset name). When both prefixes carry the
// same key, z8r.dev wins and a differing seed value is reported. In
// z8r.dev/replica the first ':' of an entry separates source and target,
// so a dataset whose name contains ':' can be replicated only under its own
// name through the seed key. Entries are separated by ',', blanks around
// them are ignored, as are empty entries and exact repeats.
//
// # Problems and rejected nodes
//
// Parse reports every problem it finds as a Problem naming the node, key
// and value. A Problem with Rejected set means that node is rejected as a
// whole: it contributes no replication and no target, not even its valid
// entries, so that one typo never half-applies a node's configuration.
// The caller must keep everything that involves a rejected node as it was
// (no new replications, no removed targets, no released holds) and emit a
// Warning; RejectedNodes lists them. The controller also writes a node's
// current problems into its AnnProblem annotation (removed when there are
// none), since Events are aggregated by reason and may show a stale one. The rejecting problems are:
//
//   - an empty master or replica list (the value is empty, blank or only
//     commas): removing the annotation, not emptying it, stops replicating;
//   - a malformed value: a dataset name refused by zfsexec.ValidateDataset,
//     a bad SRC:DST entry, a schedule or retention that does not parse, a
//     boolean other than true/false;
//   - a node receiving into a dataset it is the master of (which includes
//     replicating a dataset onto itself), or into the same target dataset
//     for two sources;
//   - a dataset that two nodes claim to be master of: both nodes are
//     rejected, since replicating in the wrong direction is the one mistake
//     that destroys data. The claims of nodes rejected for other reasons
//     count too.
//
// Warnings that reject nothing: a replica entry whose source no node
// masters (the entry is skipped; the admin may be about to annotate the
// master), the two prefixes disagreeing, a participation label whose value
// is neither true nor false (the node does not take part).
//
// Receiving into another dataset on the master node itself (tank/a into
// backup/a) is allowed: a local copy on a second pool is a legitimate
// target.
//
// # One writer per dataset
//
// Conflicts decides, over every replication's Claims (a DatasetReplication
// of any origin, or the VolumeSnapshot replication of one volume, each
// claiming its source and target datasets by node and dataset), which are
// refused: a dataset belongs to its earliest claimant (Owner.Created, then
// kind and name), and every other owner's claim on it is refused, whatever
// the roles. The controllers refuse the replication that owns a refused
// claim instead of running it.
//
// # Output
//
// Replications are sorted by source node and dataset, targets by node and
// dataset, problems by node, key, value and message. IDs are stable,
// unique and valid Kubernetes object names and label values: a readable
// lower-case form of node and dataset plus a hash of both (ID).
package policy
