// Package manifests reads z8r's install artifacts — the rendered manifests in
// deploy/, the kustomize tree in config/ and the Dockerfile — for the tests
// that keep them correct:
//
//   - manifests_test.go (no tag): deploy/z8r.yaml parsed and checked for
//     least privilege (no wildcard in any RBAC rule, the agent's exact
//     rules, who is bound to what), every admission policy failing closed,
//     bound with Deny and naming no namespace, the agent DaemonSet
//     scheduled only by AgentNodeLabel (a label kubelets cannot set) with no
//     tolerations, the agent DaemonSet's and controller
//     Deployment's security settings, probes, resources, keys and labels,
//     agreeing with internal/cli's key Secret names; every generated CRD
//     listed in config/crd and rendered.
//   - dockerfile_test.go (no tag): every binary, path and ./cmd package the
//     Dockerfile names exists, and every local package the binaries import
//     is copied into the build stage; dockerfile_labels_test.go: LABEL
//     parsing. hack/images/imagebuild's tests use ParseDockerfile to keep
//     the Dockerfile and `make images` describing the same images.
//   - install_kube_test.go (tag kube): deploy/, the CRDs and the
//     controller's ClusterRole regenerated and diffed (run make manifests),
//     the deepcopy code too (run make generate); deploy/ applied with
//     --dry-run=server and for real against a real kube-apiserver, RBAC
//     checked with SubjectAccessReviews and kubectl auth can-i with
//     impersonation, the agent admission policy enforced (also for an
//     install in another namespace), the node admission policy enforced
//     against kubelet identities (NodePolicyPrefixes on Nodes: create,
//     update, status, delete) while the admin may set them, the binaries'
//     flags checked against the manifests' arguments, and the real
//     controller and agent run under their service accounts' identities
//     (no request denied).
//
// Load parses multi-document YAML into unstructured objects; ParseDockerfile
// reads the subset of Dockerfile syntax the project uses.
package manifests
