// Package e2e holds z8r's end-to-end tests (build tag e2e): a real
// kube-apiserver and etcd, zfs-fuse nodes each in its own network
// namespace, z8r-agent processes talking SSH over real TCP, and the
// controller, assembled by internal/testbed/cluster.
package e2e
