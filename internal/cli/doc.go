// Package cli is the kubectl plugin kubectl-z8r (cmd/kubectl-z8r only
// wires it): status, snapshots, nodes, approve-hostkey, sync and init-keys
// over z8r's Z8RNode and DatasetReplication objects and the
// VolumeSnapshotContents z8r replicates.
//
// The presentation is pure and tested on fixture objects: WriteStatus,
// WriteVolumeSnapshotStatus, WriteSnapshots and WriteNodes render objects
// as of a given time, VolumeSnapshotReplications reads a content's
// z8r.dev/replicate-to and z8r.dev/replication-status annotations,
// NewStatusReport builds the document `status -o json|yaml` prints,
// ReviewHostKey decides what approve-hostkey would change, KeySecrets
// builds the key Secrets. NewCommand binds them to a Kubernetes client
// built by k8s.io/cli-runtime's ConfigFlags: kubectl's own flags
// (--kubeconfig, --context, --cluster, --user, -n, --as, ...) over the
// standard loading rules ($KUBECONFIG, ~/.kube/config, in-cluster).
//
// Scope: DatasetReplications and Z8RNodes are cluster-scoped and always
// listed; VolumeSnapshot replications are listed for the namespace of
// their VolumeSnapshot (-n, else the context's, else "default"), or for
// all with -A, as kubectl lists namespaced objects.
//
// Output: the default tables are for people; -o wide adds columns;
// -o json and -o yaml print the objects (nodes, snapshots: the Z8RNodes and
// DatasetReplications, as kubectl get would, managed fields omitted) or,
// for status, a StatusReport (apiVersion cli.z8r.dev/v1alpha1, built by
// the plugin, never stored; fields are only added within a version).
//
// What the plugin shows comes from the objects, which the controller and
// agents keep: it never connects to a node.
//
// Those strings are not trusted (a compromised node writes its Z8RNode
// status; tenants write annotations that reach messages): every one the
// plugin prints in a table, and every error it returns, goes through
// Clean, which escapes control characters (C0 including ESC, CR, LF and
// TAB; DEL; C1), bidirectional overrides and invalid UTF-8, so nothing
// from the cluster can move the cursor, clear the screen or rewrite the
// fingerprints approve-hostkey shows. JSON and YAML keep every value
// exact: their encoders escape C0 controls, and PrintObject escapes the
// rest (DEL, C1, bidirectional controls) as \uXXXX, which decodes to the
// same string (SafeJSON, SafeYAML).
package cli
