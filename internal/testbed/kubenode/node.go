package kubenode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

// Binaries a node needs besides kubelet (kubeenv's tool folder).
const (
	binContainerd = "/usr/bin/containerd"
	binCtr        = "/usr/bin/ctr"
	binShim       = "/usr/bin/containerd-shim-runc-v2"
	binZFSFuse    = "/usr/sbin/zfs-fuse"
	binKubelet    = "kubelet"
)

// Options describe one node.
type Options struct {
	// Env is the control plane the kubelet registers with.
	Env *kubeenv.Env
	// Network holds the node's network namespace (named like the node).
	Network *netns.Network
	// APIServer is the API server's host:port as the node reaches it
	// (ForwardAPIServer's result).
	APIServer string
	// Images are BuildImages' result; the pause image is imported on Start.
	Images *Images
	// PodSubnet is the node's pod network; default 10.214.<last byte of
	// the node's address>.0/24.
	PodSubnet string
	// ZFSPools, when not empty, starts a zfs-fuse daemon in the node's
	// namespaces with one file-backed pool (512M) per name, as the node's
	// host zfs that a hostPID pod reaches with nsenter -t 1 -m.
	ZFSPools []string
	// PrivateDirs are absolute host folders (such as /var/lib/z8r, the
	// agent's hostPath) that the node sees as empty folders of its own,
	// under PrivatePath: bind mounts in the node's mount namespace. A
	// missing folder is created, empty, on the host: the mount needs it.
	// Every node has /var/lib/kubelet and /var/lib/cni private already.
	PrivateDirs []string
	// InClusterAPI serves the default/kubernetes Service on the node
	// (kubeenv.KubernetesServiceIP:KubernetesServicePort, forwarded to the
	// API server) for pods that use client-go's in-cluster configuration,
	// hostNetwork or not. The control plane must have been started with
	// kubeenv.Options.InClusterAPI, whose certificate names that address.
	InClusterAPI bool
}

// Node is one running kubelet node.
type Node struct {
	Name string
	// Dir is the node's folder (kubelet and containerd state, logs).
	Dir string
	// IP is the node's address in its network.
	IP string
	// InitPID is the host PID of the node's init (PID 1 inside).
	InitPID int
	// CgroupRoot is kubelet's cgroupRoot.
	CgroupRoot string
	// PodSubnet is the node's pod network (Options.PodSubnet or its default).
	PodSubnet string

	initProc, containerd, kubelet, zfsFuse *proc
	pidNS, mntNS                           uint64
	netns                                  string
	apiService                             *apiService
	pools                                  []string
	privateDirs                            []string
	stopOnce                               sync.Once
	stopErr                                error
	leftovers                              []string
	sysctlsHeld                            bool
}

// ForwardAPIServer makes env's API server reachable from network's nodes
// and returns the address they use. When env was started with
// kubeenv.Options.KubeletAccess it also routes the API server's
// connections to the nodes' kubelets (`kubectl logs/exec`) into network:
// its cluster egress dials them from the hub namespace.
func ForwardAPIServer(t tb.TB, network *netns.Network, env *kubeenv.Env) string {
	t.Helper()
	env.SetClusterDialer(network.DialContext)
	return network.Forward(t, 6443, trimScheme(env.Config.Host))
}

// trimScheme turns a REST config's host (https://127.0.0.1:PORT/) into host:port.
func trimScheme(host string) string {
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		return u.Host
	}
	return host
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Start starts the node name: its init, containerd (with the pause image
// imported) and kubelet, and, if asked, zfs-fuse with pools. It returns
// once kubelet runs: tests poll the Node's Ready condition (about a second
// later here). The node is stopped in t.Cleanup.
func Start(t tb.TB, opts Options, name string) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kubenode: needs root")
	}
	for _, b := range []string{binContainerd, binCtr, binShim, runcPath, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local")} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("kubenode: %s missing: run hack/install-deps.sh (containerd runc containernetworking-plugins)", b)
		}
	}
	if len(opts.ZFSPools) > 0 {
		if _, err := os.Stat(binZFSFuse); err != nil {
			t.Fatal("kubenode: zfs-fuse missing: run hack/install-deps.sh")
		}
	}
	kubelet := filepath.Join(opts.Env.BinDir, binKubelet)
	if _, err := os.Stat(kubelet); err != nil {
		t.Fatalf("kubenode: %s missing: run make kube-tools", kubelet)
	}
	if opts.Images == nil || opts.Images.PauseBinary == "" || opts.Images.Archives[PauseRef] == "" {
		t.Fatal("kubenode: Options.Images must come from BuildImages")
	}
	if err := Sweep(); err != nil {
		t.Logf("kubenode: sweep: %v", err)
	}
	n, err := start(opts, name, kubelet)
	if n != nil {
		t.Cleanup(func() {
			if t.Failed() {
				n.logTails(t)
			}
			if err := n.Stop(); err != nil {
				t.Errorf("kubenode: stop %s: %v", n.Name, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("kubenode: start %s: %v", name, err)
	}
	return n
}

func start(opts Options, name, kubelet string) (*Node, error) {
	ns := opts.Network.NS(name)
	ip := opts.Network.Addr(name)
	if ns == "" {
		return nil, fmt.Errorf("no network namespace for node %s in the network", name)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(StateRoot(), 0o755); err != nil {
		return nil, err
	}
	// A short folder: containerd's socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp(StateRoot(), "n")
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Dir: dir, IP: ip, CgroupRoot: "/z8r-kn-" + id, pools: opts.ZFSPools, netns: ns}
	for _, d := range []string{"logs", "var-log", "cni/net.d", "cni/ipam", "containerd/root", "containerd/state", "containerd/opt", "zfs/run", "zfs/lock", "zfs/lib", "zfs/mnt", "zfs/disks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return n, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return n, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup-root"), []byte(n.CgroupRoot), 0o644); err != nil {
		return n, err
	}
	subnet := opts.PodSubnet
	if subnet == "" {
		parsed := net.ParseIP(ip).To4()
		if parsed == nil {
			return n, fmt.Errorf("node address %q is not IPv4", ip)
		}
		subnet = fmt.Sprintf("10.214.%d.0/24", parsed[3])
	}
	n.PodSubnet = subnet
	var tls *kubeletTLS
	files := map[string]string{
		"containerd.toml":           containerdConfig(dir, PauseRef),
		"cni/net.d/10-z8r.conflist": cniConfig(dir, subnet),
	}
	if ca := opts.Env.KubeletCA(); ca != nil {
		cert, key, err := opts.Env.KubeletServingCert(name, net.ParseIP(ip))
		if err != nil {
			return n, err
		}
		tls = &kubeletTLS{clientCA: filepath.Join(dir, "kubelet-ca.crt"), cert: filepath.Join(dir, "kubelet.crt"), key: filepath.Join(dir, "kubelet.key")}
		files["kubelet-ca.crt"], files["kubelet.crt"], files["kubelet.key"] = string(ca), string(cert), string(key)
	}
	files["kubelet.yaml"] = kubeletConfig(dir, ip, n.CgroupRoot, tls)
	for f, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), mode); err != nil {
			return n, err
		}
	}
	kubeconfig := filepath.Join(dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(opts.Env.Environment, "z8r-kubelet-"+name, opts.APIServer, kubeconfig); err != nil {
		return n, err
	}
	if err := createCgroupRoot(n.CgroupRoot); err != nil {
		return n, err
	}
	if len(opts.ZFSPools) > 0 {
		// The bind-mount target must exist in the host's namespace.
		if err := os.MkdirAll("/var/lib/zfs", 0o755); err != nil {
			return n, err
		}
	}
	n.privateDirs = append(slices.Clone(nodePrivateDirs), opts.PrivateDirs...)
	for _, d := range n.privateDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
			return n, fmt.Errorf("private folder %q: want a clean absolute path below /", d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return n, err
		}
		if err := os.MkdirAll(n.PrivatePath(d), 0o755); err != nil {
			return n, err
		}
	}

	if err := n.startInit(ns, opts.Images.PauseBinary); err != nil {
		return n, err
	}
	if len(opts.ZFSPools) > 0 {
		if err := n.startZFS(); err != nil {
			return n, err
		}
	}
	if err := n.startContainerd(); err != nil {
		return n, err
	}
	if opts.InClusterAPI {
		if n.apiService, err = startAPIService(ns, trimScheme(opts.Env.Config.Host)); err != nil {
			return n, err
		}
	}
	if err := n.Import(context.Background(), opts.Images.Archives[PauseRef]); err != nil {
		return n, err
	}
	if err := saveSysctls(); err != nil {
		return n, err
	}
	n.sysctlsHeld = true
	n.kubelet, err = startInNode("kubelet", n.logPath("kubelet"), n.InitPID, []string{
		kubelet,
		"--config=" + filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + kubeletRootDir,
		"--hostname-override=" + name,
		"--node-ip=" + ip,
		"--v=2",
	})
	if err != nil {
		return n, err
	}
	return n, nil
}

// kubeletRootDir is kubelet's root folder inside a node: its default,
// since kubelet also writes there without regard to --root-dir (the
// device plugin socket; --cert-dir's default).
const kubeletRootDir = "/var/lib/kubelet"

// nodePrivateDirs are the host folders every node replaces with its own:
// kubelet's root, and libcni's cache (containerd's CNI results), which a
// node stopped with its pods still running would leave behind.
var nodePrivateDirs = []string{kubeletRootDir, "/var/lib/cni"}

// PrivatePath is the host folder the node sees at dir, one of
// Options.PrivateDirs.
func (n *Node) PrivatePath(dir string) string { return filepath.Join(n.Dir, "private", dir) }

func (n *Node) logPath(name string) string { return filepath.Join(n.Dir, "logs", name+".log") }

// initScript prepares the node's mount namespace and execs the init: a
// private /run (containerd's shim sockets, pod network namespaces, the
// node's zfs socket), the node's own /var/log (pod logs) and its private
// folders (the arguments after the pause binary). zfs-fuse
// mounts copied from the host's namespace are detached first, as
// hack/zfsnode.sh does.
const initScript = `set -e
dir=$1
awk '$3=="fuse.zfs"{print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
mount -t tmpfs -o mode=0755 z8r-node-run /run
mkdir -p /run/containerd /run/netns /run/zfs /run/lock/zfs
mount --bind "$dir/zfs/run" /run/zfs
mount --bind "$dir/zfs/lock" /run/lock/zfs
if [ -d /var/lib/zfs ]; then mount --bind "$dir/zfs/lib" /var/lib/zfs; fi
mount --bind "$dir/var-log" /var/log
mkdir -p /var/log/pods /var/log/containers
pause=$2
shift 2
for d in "$@"; do mount --bind "$dir/private$d" "$d"; done
exec "$pause"
`

// startInit starts the node's init in the network namespace ns and a new
// PID and mount namespace. unshare forks the init and kills it when it
// dies itself; unshare dies with the test binary (death signal).
func (n *Node) startInit(ns, pause string) error {
	p, err := startProc("init", n.logPath("init"), append([]string{
		"nsenter", "--net=" + filepath.Join("/run/netns", ns), "--",
		"unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--propagation", "private", "--mount-proc", "--",
		"sh", "-c", initScript, "kubenode-init", n.Dir, pause,
	}, n.privateDirs...))
	if err != nil {
		return err
	}
	n.initProc = p
	// The init is unshare's child; it is ready once it runs pause.
	children := filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "task", strconv.Itoa(p.cmd.Process.Pid), "children")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(children)
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			if exe, err := os.Readlink(filepath.Join("/proc", f[0], "exe")); err == nil && exe == pause {
				n.InitPID = pid
				p.pid = pid
				break
			}
		}
		if p.exited() {
			log, _ := os.ReadFile(n.logPath("init"))
			return fmt.Errorf("init exited: %s: %s", p.cmd.ProcessState, log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("init not running pause after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n.pidNS, err = nsInode(n.InitPID, "pid"); err != nil {
		return err
	}
	if n.mntNS, err = nsInode(n.InitPID, "mnt"); err != nil {
		return err
	}
	return nil
}

func (n *Node) startContainerd() error {
	p, err := startInNode("containerd", n.logPath("containerd"), n.InitPID, []string{binContainerd, "--config", filepath.Join(n.Dir, "containerd.toml")})
	if err != nil {
		return err
	}
	n.containerd = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, binCtr, "--address", containerdSocket(n.Dir), "version").Run()
		cancel()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("containerd exited: %s (see %s)", p.cmd.ProcessState, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not serving after 30s: %w (see %s)", err, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *Node) startZFS() error {
	p, err := startInNode("zfs-fuse", n.logPath("zfs-fuse"), n.InitPID, []string{binZFSFuse, "--no-daemon", "--no-kstat-mount", "-m", "64"})
	if err != nil {
		return err
	}
	n.zfsFuse = p
	socket := filepath.Join(n.Dir, "zfs", "run", "zfs_socket")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if p.exited() {
			return fmt.Errorf("zfs-fuse exited: %s (see %s)", p.cmd.ProcessState, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no zfs-fuse socket at %s after 10s", socket)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pool := range n.pools {
		img := filepath.Join(n.Dir, "zfs", "disks", pool+".img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(img, 512<<20); err != nil {
			return err
		}
		if _, err := n.Exec(context.Background(), "zpool", "create", "-m", filepath.Join(n.Dir, "zfs", "mnt", pool), pool, img); err != nil {
			return err
		}
	}
	return nil
}

// Exec runs argv in the node's mount, PID and network namespaces and
// returns its combined output. The PID namespace is needed too: the
// node's /proc is that namespace's, so /proc/self exists only for its
// members (libzfs reads /proc/mounts).
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	full := append([]string{"nsenter", "--target", strconv.Itoa(n.InitPID), "--mount", "--pid", "--net", "--"}, argv...)
	out, err := exec.CommandContext(ctx, full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubenode: %s: %v: %w: %s", n.Name, argv, err, out)
	}
	return string(out), nil
}

// Import loads an image archive into the node's containerd, in the
// namespace the CRI plugin (and so kubelet) uses.
func (n *Node) Import(ctx context.Context, archive string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binCtr, "--address", containerdSocket(n.Dir), "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubenode: %s: import %s: %w: %s", n.Name, archive, err, out)
	}
	return nil
}

// RSS returns the resident set sizes, in KiB, of the node's kubelet and
// containerd.
func (n *Node) RSS() (kubelet, containerd int64, err error) {
	k, err1 := rssKiB(n.kubelet.pid)
	c, err2 := rssKiB(n.containerd.pid)
	return k, c, errors.Join(err1, err2)
}

// CPUTime returns the CPU time (user and system) kubelet and containerd
// have used since they started; two readings apart give their CPU use.
func (n *Node) CPUTime() (kubelet, containerd time.Duration, err error) {
	k, err1 := cpuTime(n.kubelet.pid)
	c, err2 := cpuTime(n.containerd.pid)
	return k, c, errors.Join(err1, err2)
}

// PodLogs returns the log file of a pod's container, as containerd wrote
// it (CRI log format: time, stream, tag, then the line).
func (n *Node) PodLogs(namespace, pod, container string) (string, error) {
	m, err := filepath.Glob(filepath.Join(n.Dir, "var-log", "pods", namespace+"_"+pod+"_*", container, "*.log"))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("kubenode: %s: no log for %s/%s container %s", n.Name, namespace, pod, container)
	}
	b, err := os.ReadFile(m[len(m)-1])
	return string(b), err
}

// Stop stops kubelet, containerd and zfs-fuse (pools destroyed), then the
// node's init, which takes every process left in the node's PID namespace
// with it, and its mount namespace with every mount made in it; then it
// removes the node's cgroups, restores the sysctls (last node) and the
// node's folder. It fails when anything is left (see Leftovers). It is
// safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.stop() })
	return n.stopErr
}

func (n *Node) stop() error {
	var errs []error
	if n.kubelet != nil {
		errs = append(errs, n.kubelet.stop(15*time.Second))
	}
	if n.containerd != nil {
		errs = append(errs, n.containerd.stop(15*time.Second))
	}
	if n.zfsFuse != nil && !n.zfsFuse.exited() {
		_, _ = n.Exec(context.Background(), "zfs", "umount", "-a")
		for _, pool := range n.pools {
			for i := 0; i < 10; i++ {
				if _, err := n.Exec(context.Background(), "zpool", "destroy", "-f", pool); err == nil {
					break
				}
				if _, err := n.Exec(context.Background(), "zpool", "list", pool); err != nil {
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
		errs = append(errs, n.zfsFuse.stop(15*time.Second))
	}
	if n.initProc != nil {
		errs = append(errs, n.initProc.stop(10*time.Second))
	}
	if n.apiService != nil {
		n.apiService.close()
	}
	// The kernel kills the rest of the PID namespace when its init exits;
	// wait for those processes to be gone.
	if n.pidNS != 0 {
		deadline := time.Now().Add(10 * time.Second)
		for len(processesIn("pid", n.pidNS)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	errs = append(errs, removeCgroupRoot(n.CgroupRoot, 10*time.Second))
	if n.sysctlsHeld {
		errs = append(errs, releaseSysctls())
	}
	n.leftovers = n.findLeftovers()
	if len(n.leftovers) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(n.leftovers, "; ")))
	} else if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Processes lists the processes in the node's PID namespace, as
// "PID (name)" with host PIDs.
func (n *Node) Processes() []string { return processesIn("pid", n.pidNS) }

// Leftovers lists what Stop found still there: processes in the node's
// PID or mount namespace, mounts under the node's folder in the test
// process's namespace, the node's cgroups. A container process in a PID
// namespace of its own shows as its pod's cgroup, which cannot be removed
// while it lives. Empty before Stop.
func (n *Node) Leftovers() []string { return n.leftovers }

func (n *Node) findLeftovers() []string {
	var left []string
	if n.pidNS != 0 {
		for _, p := range processesIn("pid", n.pidNS) {
			left = append(left, "process in the node's PID namespace: "+p)
		}
	}
	if n.mntNS != 0 {
		for _, p := range processesIn("mnt", n.mntNS) {
			left = append(left, "process in the node's mount namespace: "+p)
		}
	}
	m, err := hostMountsUnder(n.Dir)
	if err != nil {
		left = append(left, err.Error())
	}
	for _, p := range m {
		left = append(left, "mount: "+p)
	}
	dirs, err := cgroupDirs(n.CgroupRoot)
	if err != nil {
		left = append(left, err.Error())
	}
	for _, d := range dirs {
		left = append(left, "cgroup: "+d)
	}
	return left
}

// logTails writes the end of the node's logs to the test log.
func (n *Node) logTails(t tb.TB) {
	for _, name := range []string{"init", "zfs-fuse", "containerd", "kubelet"} {
		b, err := os.ReadFile(n.logPath(name))
		if err != nil {
			continue
		}
		t.Logf("kubenode: %s: last lines of %s:\n%s", n.Name, name, tailLines(string(b), 40))
	}
}
