// Package kubeenv gives tests a real Kubernetes control plane: kube-apiserver and etcd
// started by controller-runtime's envtest, the snapshot CRDs and the project's own CRDs
// installed, and optionally the real upstream snapshot-controller and a real
// kube-controller-manager running chosen controllers against it.
//
// Contract:
//   - Start(t, opts) returns a running Env or fails the test. It never skips: when the
//     binaries are missing the test fails with "run make kube-tools". The binaries come
//     from $Z8R_KUBE_TOOLS if set, else from .cache/kube-tools/current/bin under the
//     module root (hack/build-kube-tools.sh builds them from Go modules).
//   - The CRDs come from config/crd/external/{snapshot,groupsnapshot}.storage.k8s.io
//     (must exist), config/crd/bases (when it exists) and Options.CRDDirectoryPaths
//     (must exist).
//   - Every process Start launches is stopped by a t.Cleanup registered by Start, also
//     when the test fails or panics in its own goroutine. When the test binary dies
//     without running cleanups (a panic in another goroutine, a -timeout, SIGKILL), the
//     kernel kills kube-apiserver, etcd, snapshot-controller and kube-controller-manager:
//     each is started with PR_SET_PDEATHSIG=SIGKILL (through setpriv(1) for the
//     processes envtest starts, whose process runner offers no hook for it) in its own
//     process group.
//   - Env.Client is a controller-runtime client with the core and snapshot.storage.k8s.io/v1
//     types; Env.Config and Env.Kubeconfig give the same admin (system:masters) access to
//     anything else, such as a controller under test or kubectl.
//   - No kubelet runs, and nothing binds PVCs unless Options.ControllerManager runs the PV
//     controller (VolumeControllers): the object helpers (objects.go) create what a real
//     cluster would have made, such as Nodes and bound PV/PVC pairs; CreateBound's
//     hand-made binding is one the PV controller accepts as it is.
//   - With Options.KubeletAccess the API server reaches kubelets as in a real cluster
//     (a client certificate bound to system:kubelet-api-admin, kubelets' serving
//     certificates checked against KubeletCA, InternalIP addresses), its connections
//     to them going through an HTTP CONNECT proxy on a unix socket (its "cluster"
//     egress selector) that dials with SetClusterDialer's dialer; Stop closes it.
//   - Start returns when the API server serves and the CRDs are established; the
//     snapshot-controller is started and past its CRD check and each asked-for
//     kube-controller-manager controller has started, but their informers may still be
//     syncing, so tests poll for what they expect. kube-controller-manager serves no port
//     (--secure-port=0) and runs without leader election.
//
// envtest logs through controller-runtime's logger: a test package calls log.SetLogger
// (in TestMain, say) to see those logs or to silence the warning that it was never set.
//
// The tests of this package and those that use it carry the build tag `kube`.
package kubeenv
