package kubenode

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Paths of the CNI plugins and runc, as Debian 12's packages install them.
const (
	cniBinDir = "/usr/lib/cni"
	runcPath  = "/usr/sbin/runc"
)

// containerdConfig is containerd 1.6's configuration (version 2) for a
// node whose folder is dir. restrict_oom_score_adj is required on this
// kind of machine: the VM withholds CAP_SYS_RESOURCE, and without it every
// sandbox fails with "can't get final child's PID from pipe".
func containerdConfig(dir, sandboxImage string) string {
	q := strconv.Quote
	return `version = 2
root = ` + q(filepath.Join(dir, "containerd", "root")) + `
state = ` + q(filepath.Join(dir, "containerd", "state")) + `
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ` + q(containerdSocket(dir)) + `

[ttrpc]
  address = ` + q(containerdSocket(dir)+".ttrpc") + `

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ` + q(filepath.Join(dir, "containerd", "opt")) + `
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = ` + q(sandboxImage) + `
    restrict_oom_score_adj = true
    disable_apparmor = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = ` + q(runcPath) + `
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = ` + q(cniBinDir) + `
      conf_dir = ` + q(filepath.Join(dir, "cni", "net.d")) + `
      max_conf_num = 1
`
}

func containerdSocket(dir string) string { return filepath.Join(dir, "containerd.sock") }

// cniConfig is a bridge network with host-local addresses from subnet;
// containerd sets up the loopback itself. No masquerading and no port
// mapping: both would need iptables rules.
func cniConfig(dir, subnet string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "z8r-testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, filepath.Join(dir, "cni", "ipam"), subnet)
}

// kubeletTLS are the files of a kubelet's API (port 10250) as a real
// cluster sets them up: the CA whose client certificates it accepts (the
// API server's) and its serving certificate, signed by a CA the API server
// checks it against. Paths inside the node's folder.
type kubeletTLS struct {
	clientCA, cert, key string
}

// kubeletConfig is the node's KubeletConfiguration. cgroup v1 needs
// failCgroupV1: false; the cgroupfs driver puts pods under cgroupRoot.
// The kubelet's API takes no anonymous requests; it authenticates bearer
// tokens with TokenReviews and, with tls, client certificates of
// tls.clientCA, and authorizes every request with SubjectAccessReviews
// (Webhook mode), as kubeadm sets it up. Without tls the kubelet serves a
// self-signed certificate and accepts no client certificate. Eviction and
// image garbage collection thresholds are set so that a busy test
// machine's disk never evicts test pods or removes imported images, which
// cannot be pulled again.
func kubeletConfig(dir, nodeIP, cgroupRoot string, tls *kubeletTLS) string {
	q := strconv.Quote
	x509 := ""
	if tls != nil {
		x509 = `  x509:
    clientCAFile: ` + q(tls.clientCA) + `
`
	}
	c := `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: ` + q(cgroupRoot) + `
cgroupsPerQOS: true
containerRuntimeEndpoint: ` + q("unix://"+containerdSocket(dir)) + `
address: ` + q(nodeIP) + `
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
` + x509 + `authorization:
  mode: Webhook
failSwapOn: false
protectKernelDefaults: false
staticPodPath: ""
registerNode: true
enableControllerAttachDetach: false
nodeStatusUpdateFrequency: 1s
nodeStatusReportFrequency: 1m
syncFrequency: 10s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
kernelMemcgNotification: false
maxPods: 32
resolvConf: /etc/resolv.conf
`
	if tls != nil {
		c += `tlsCertFile: ` + q(tls.cert) + `
tlsPrivateKeyFile: ` + q(tls.key) + `
`
	}
	return c
}

// writeKubeconfig adds an API server user in system:masters named user and
// writes its kubeconfig to path, with server as the API server's address
// (as the node reaches it) and the serving certificate checked for
// "localhost", the name envtest's certificate carries.
func writeKubeconfig(env *envtest.Environment, user, server, path string) error {
	u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, &rest.Config{})
	if err != nil {
		return fmt.Errorf("kubeconfig: add user: %w", err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + server
		c.TLSServerName = "localhost"
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return os.Chmod(path, 0o600)
}
