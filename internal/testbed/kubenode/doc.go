// Package kubenode gives tests real Kubernetes nodes: for each simulated
// node, a real kubelet and a real containerd (with runc and the bridge and
// host-local CNI plugins from Debian) that run real pods from locally built
// images against a kubeenv control plane.
//
// Each node lives in namespaces of its own: the network namespace netns
// gave it, plus a new PID and mount namespace whose PID 1 is the test bed's
// pause program (package pause). containerd, kubelet and, when asked,
// the node's zfs-fuse daemon run inside all three, so a hostPID pod sees
// the node's init as PID 1 and `nsenter -t 1 -m -- zfs` reaches that
// node's zfs-fuse, the way the agent DaemonSet reaches the host's zfs.
//
// Contract:
//   - Start needs root, containerd, runc, the CNI plugins (hack/install-deps.sh)
//     and the kubelet (make kube-tools); it fails the test, never skips.
//   - The node's mount namespace has a private tmpfs on /run and folders
//     of Node.Dir bind-mounted on /var/log, /var/lib/kubelet, /var/lib/cni
//     and Options.PrivateDirs (hostPath volumes such as the agent's
//     /var/lib/z8r), so containerd's shim sockets, pod network namespaces,
//     pod logs, kubelet's files (it writes some under /var/lib/kubelet
//     whatever --root-dir says) and libcni's cache never reach the host's
//     files; containerd's root and state, the CNI configuration and IPAM
//     state are under Node.Dir too. The host keeps only the empty folders
//     these mounts need. Every mount kubelet or containerd makes (overlay,
//     shm, volumes) is in that namespace and goes with it. Anything else a
//     pod writes through a hostPath lands on the host's filesystem.
//   - Each node gets its own kubelet cgroupRoot, /z8r-kn-<id>, created in
//     every cgroup v1 hierarchy (cgroupfs driver, failCgroupV1: false).
//   - kubelet rewrites the global sysctls listed in KubeletSysctls; the first
//     node started saves their values (also to a file, for Sweep) and the
//     last node stopped restores them.
//   - Stop (also run by t.Cleanup) stops kubelet, containerd and zfs-fuse,
//     then the node's init, which makes the kernel kill whatever is left in
//     the node's PID namespace; it then removes the node's cgroups and
//     reports, through Leftovers, any process, mount or cgroup that remains.
//     When the test binary dies without cleanups the kernel kills the init
//     (PR_SET_PDEATHSIG through unshare --kill-child), hence the whole node;
//     Sweep (run by Start) removes the cgroups and restores the sysctls such
//     a node left.
//   - Images are imported with `ctr -n k8s.io images import` (Node.Import);
//     pods must use imagePullPolicy Never or IfNotPresent with a tag. The
//     sandbox (pause) image is built here (BuildImages) and imported by Start.
//   - With Options.InClusterAPI (and a control plane started with
//     kubeenv.Options.InClusterAPI), pods reach the API server the way
//     client-go's in-cluster configuration expects, without kube-proxy:
//     the node's network namespace holds the default/kubernetes Service's
//     address on its loopback and forwards its port to the API server,
//     whose certificate names that address; hostNetwork pods reach it
//     locally, pod-network pods through the node's bridge. RoutePodNetworks
//     adds the routes pods of one node need to reach other nodes and be
//     answered (the CNI configuration does not masquerade).
//   - Render and Apply put deploy/ through the test bed's kustomize
//     overlay (OverlayDir: imagePullPolicy Never, nothing else) onto the
//     control plane, as kubectl apply -k does.
//   - With a control plane started with kubeenv.Options.KubeletAccess,
//     `kubectl logs/exec` work: each kubelet serves a certificate signed by
//     Env.KubeletCA for its name and address, trusts that CA for client
//     certificates (the API server's) and authorizes requests with
//     SubjectAccessReviews (Webhook mode); ForwardAPIServer routes the API
//     server's connections to kubelets (its cluster egress proxy) into the
//     network. Without it nothing reaches a kubelet; Node.PodLogs reads a
//     container's log file either way.
//
// The tests carry the build tag `pods` (make test-pods).
package kubenode
