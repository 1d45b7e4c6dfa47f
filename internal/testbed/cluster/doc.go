// Package cluster assembles the whole z8r test bed: a real control plane
// (kubeenv: kube-apiserver, etcd, optionally the snapshot-controller), a
// test network (netns), one zfs-fuse node per name (z8rnodes), a z8r-agent
// process on each node publishing its Z8RNode through the API server, and
// z8r's controller running in-process. End-to-end tests and `make demo`
// both use it.
//
// The agents live in their nodes' network namespaces; the API server is
// made reachable to them at the hub's address (netns.Forward), and the
// controller dials agents from the hub. Everything stops in Cleanup.
//
// StartControllerProcess runs the controller as its own process instead
// (the built cmd/z8r-controller, in the hub namespace, with the agents'
// kubeconfig and the test's controller key), so that a test can SIGKILL it
// at any point or arm internal/failpoint points in it (Z8R_FAILPOINTS),
// and move its clock ahead (--clock-offset) to bring a schedule round. The
// process dies with the test process and is killed in Cleanup.
//
// InstallAdmissionPolicies creates the ValidatingAdmissionPolicies of
// deploy/z8r.yaml as shipped, and AsKubelet gives a test a node's kubelet
// identity (impersonation, with the RBAC a kubelet has on a real cluster),
// so that a test can act as a compromised node against the real API server.
package cluster
