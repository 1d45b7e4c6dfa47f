// Package cli is the kubectl plugin kubectl-z8r (cmd/kubectl-z8r only
// wires it): status, snapshots, nodes, approve-hostkey, sync and init-keys
// over z8r's ZFSNode and DatasetReplication objects.
//
// The presentation is pure and tested on fixture objects: WriteStatus,
// WriteSnapshots and WriteNodes render objects as of a given time,
// ReviewHostKey decides what approve-hostkey would change, KeySecrets builds
// the key Secrets. NewCommand binds them to a Kubernetes client built from
// the standard kubeconfig loading rules (--kubeconfig, $KUBECONFIG,
// ~/.kube/config, in-cluster) and kubectl's override flags (--context,
// --as, ...).
//
// What the plugin shows comes from the objects' status, which the
// controller and agents keep: it never connects to a node.
//
// Those strings are not trusted (a compromised node writes its ZFSNode
// status; tenants write annotations that reach messages): every one the
// plugin prints, and every error it returns, goes through Clean, which
// escapes control characters (C0 including ESC, CR, LF and TAB; DEL; C1),
// bidirectional overrides and invalid UTF-8, so nothing from the cluster
// can move the cursor, clear the screen or rewrite the fingerprints
// approve-hostkey shows.
package cli
