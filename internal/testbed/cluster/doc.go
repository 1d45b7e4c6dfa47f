// Package cluster assembles the whole z8r test bed: a real control plane
// (kubeenv: kube-apiserver, etcd, optionally the snapshot-controller), a
// test network (netns), one zfs-fuse node per name (zfsnodes), a z8r-agent
// process on each node publishing its ZFSNode through the API server, and
// z8r's controller running in-process. End-to-end tests and `make demo`
// both use it.
//
// The agents live in their nodes' network namespaces; the API server is
// made reachable to them at the hub's address (netns.Forward), and the
// controller dials agents from the hub. Everything stops in Cleanup.
package cluster
