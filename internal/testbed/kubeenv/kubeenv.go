package kubeenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	// EnvKubeTools names the environment variable that, when set, is the folder holding
	// kube-apiserver, etcd, kubectl, snapshot-controller and kube-controller-manager.
	EnvKubeTools = "Z8R_KUBE_TOOLS"

	modulePath = "github.com/z8r-project/z8r"

	// toolsDir is the default binary folder, relative to the module root; the link
	// "current" is kept by hack/build-kube-tools.sh.
	toolsDir = ".cache/kube-tools/current/bin"

	snapshotCRDDir = "config/crd/external/snapshot.storage.k8s.io"
	// The group snapshot CRDs are installed too, as on a cluster set up from the upstream
	// manifests: without them snapshot-controller v8.7 waits 30 s for them at start.
	groupSnapshotCRDDir = "config/crd/external/groupsnapshot.storage.k8s.io"
	projectCRDDir       = "config/crd/bases"

	// snapshotControllerReady is what snapshot-controller logs once its CRD check passed
	// and its controller loop starts.
	snapshotControllerReady = "Starting snapshot controller"

	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	logTailLines = 40
)

// Binary names, as the build script writes them and as envtest looks them up.
const (
	BinAPIServer          = "kube-apiserver"
	BinEtcd               = "etcd"
	BinKubectl            = "kubectl"
	BinSnapshotController = "snapshot-controller"
	BinControllerManager  = "kube-controller-manager"
)

// VolumeControllers are the kube-controller-manager controllers that give PVCs and PVs
// their life in a real cluster: the PV controller that binds claims to volumes and the
// two protection controllers that put the kubernetes.io/pvc-protection and
// kubernetes.io/pv-protection finalizers on them. They need no kubelet, scheduler or
// cloud provider.
func VolumeControllers() []string {
	return []string{
		"persistentvolume-binder-controller",
		"persistentvolumeclaim-protection-controller",
		"persistentvolume-protection-controller",
	}
}

// Options selects what Start runs besides kube-apiserver and etcd.
type Options struct {
	// SnapshotController starts the upstream snapshot-controller against the API server.
	SnapshotController bool
	// ControllerManager, when not empty, starts kube-controller-manager against the API
	// server with exactly these controllers (their canonical v1.37 names, such as those
	// of VolumeControllers; `kube-controller-manager --help` lists them under
	// --controllers). Start returns once each of them has started; their informers may
	// still be syncing.
	ControllerManager []string
	// CRDDirectoryPaths are more CRD folders or files to install; each must exist.
	CRDDirectoryPaths []string
	// InClusterAPI readies the API server for pods that use client-go's in-cluster
	// configuration: its serving certificate also names the kubernetes Service
	// (KubernetesServiceIP and its DNS names), and the ServiceAccount admission plugin
	// gives pods their service account token. Pods still need a route to the API
	// server at KubernetesServiceIP:KubernetesServicePort (kubenode serves one on each
	// node) and, for the token volume, kube-controller-manager's
	// root-ca-certificate-publisher-controller (the kube-root-ca.crt ConfigMap) and
	// serviceaccount-controller.
	InClusterAPI bool
	// KubeletAccess lets the API server reach kubelets the way a real cluster's does,
	// for `kubectl logs`, `kubectl exec` and the like: it presents a client certificate
	// (user KubeletClientUser, bound to system:kubelet-api-admin) signed by KubeletCA,
	// verifies each kubelet's serving certificate against KubeletCA (kubelets get theirs
	// from KubeletServingCert), dials a node's InternalIP, and sends that traffic
	// through an HTTP CONNECT proxy (its "cluster" egress selector) that dials with
	// SetClusterDialer's dialer: the nodes' networks are not the API server's.
	KubeletAccess bool
}

// Env is a running control plane. Its exported fields are set by Start and must not be
// changed.
type Env struct {
	// Config is an admin (system:masters) REST config for the API server.
	Config *rest.Config
	// Client is a controller-runtime client built from Config and Scheme.
	Client client.Client
	// Scheme has the client-go types and snapshot.storage.k8s.io/v1.
	Scheme *runtime.Scheme
	// Kubeconfig is the path of a kubeconfig file with the admin credentials of Config.
	Kubeconfig string
	// BinDir is the folder the control-plane binaries were taken from.
	BinDir string
	// Environment is the envtest environment, for AddUser and the like.
	Environment *envtest.Environment
	// StartDuration is how long Start took, snapshot-controller and
	// kube-controller-manager included.
	StartDuration time.Duration

	dir    string // this Env's own folder: wrappers, kubeconfigs, logs, etcd data, certs
	logDir string

	startedEnvtest bool
	// kubelets is set with Options.KubeletAccess.
	kubelets *kubeletAccess
	// procs are the controllers Start ran itself, in start order; Stop ends them in
	// reverse order before the API server.
	procs []*process

	stopOnce sync.Once
	stopErr  error
}

// Start starts kube-apiserver and etcd with envtest, installs the CRDs and, if asked,
// starts snapshot-controller. It fails the test (never skips it) when anything is
// missing, and registers a cleanup that stops every process it started.
func Start(t tb.TB, opts Options) *Env {
	t.Helper()
	began := time.Now()

	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("kubeenv: find the module root: %v", err)
	}
	binDir := BinDir(root)
	need := []string{BinAPIServer, BinEtcd, BinKubectl}
	if opts.SnapshotController {
		need = append(need, BinSnapshotController)
	}
	if len(opts.ControllerManager) > 0 {
		need = append(need, BinControllerManager)
	}
	if err := checkBinaries(binDir, need); err != nil {
		t.Fatalf("kubeenv: %v: run make kube-tools (or set %s to a folder with %s)",
			err, EnvKubeTools, strings.Join(need, ", "))
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("kubeenv: setpriv (util-linux) ties the control plane to the test process: %v", err)
	}

	e := &Env{BinDir: binDir, dir: t.TempDir()}
	e.logDir = filepath.Join(e.dir, "logs")
	// Registered before anything starts, and after t.TempDir, so it runs before the folder
	// is removed.
	t.Cleanup(func() {
		if t.Failed() {
			e.logTails(t)
		}
		if err := e.Stop(); err != nil {
			t.Errorf("kubeenv: stop: %v", err)
		}
	})

	if err := e.start(root, setpriv, opts); err != nil {
		t.Fatalf("kubeenv: start: %v", err)
	}
	e.StartDuration = time.Since(began)
	return e
}

func (e *Env) start(root, setpriv string, opts Options) error {
	wrapDir := filepath.Join(e.dir, "bin")
	for _, d := range []string{e.logDir, wrapDir, filepath.Join(e.dir, "etcd"), filepath.Join(e.dir, "apiserver")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	apiServerPath, err := writeDeathSignalWrapper(wrapDir, setpriv, filepath.Join(e.BinDir, BinAPIServer))
	if err != nil {
		return err
	}
	etcdPath, err := writeDeathSignalWrapper(wrapDir, setpriv, filepath.Join(e.BinDir, BinEtcd))
	if err != nil {
		return err
	}
	logs, err := e.openLogs(BinAPIServer, BinEtcd)
	if err != nil {
		return err
	}
	defer closeAll(logs)

	crdPaths := []string{filepath.Join(root, snapshotCRDDir), filepath.Join(root, groupSnapshotCRDDir)}
	if _, err := os.Stat(filepath.Join(root, projectCRDDir)); err == nil {
		crdPaths = append(crdPaths, filepath.Join(root, projectCRDDir))
	}
	crdPaths = append(crdPaths, opts.CRDDirectoryPaths...)

	e.Scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(e.Scheme); err != nil {
		return fmt.Errorf("add client-go types to the scheme: %w", err)
	}
	if err := snapshotv1.AddToScheme(e.Scheme); err != nil {
		return fmt.Errorf("add snapshot.storage.k8s.io/v1 to the scheme: %w", err)
	}
	if err := z8rv1.AddToScheme(e.Scheme); err != nil {
		return fmt.Errorf("add z8r.dev/v1alpha1 to the scheme: %w", err)
	}

	e.Environment = &envtest.Environment{
		BinaryAssetsDirectory:    e.BinDir,
		CRDDirectoryPaths:        crdPaths,
		ErrorIfCRDPathMissing:    true,
		Scheme:                   e.Scheme,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}
	// The data and cert folders inside e.dir put e.dir on both command lines, which is how
	// Processes tells this Env's processes from those of other Envs.
	cp := &e.Environment.ControlPlane
	cp.Etcd = &envtest.Etcd{Path: etcdPath, DataDir: filepath.Join(e.dir, "etcd"), Out: logs[1], Err: logs[1]}
	api := cp.GetAPIServer()
	api.Path = apiServerPath
	api.CertDir = filepath.Join(e.dir, "apiserver")
	api.Out, api.Err = logs[0], logs[0]
	if opts.InClusterAPI {
		if err := prepareInClusterAPI(api); err != nil {
			return fmt.Errorf("in-cluster API: %w", err)
		}
	}
	if opts.KubeletAccess {
		if e.kubelets, err = prepareKubeletAccess(api); err != nil {
			return fmt.Errorf("kubelet access: %w", err)
		}
	}

	e.startedEnvtest = true
	cfg, err := e.Environment.Start()
	if err != nil {
		return fmt.Errorf("envtest: %w", err)
	}
	if err := checkCRDs(e.Environment); err != nil {
		return err
	}
	e.Config = cfg
	e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "admin.kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, e.Environment.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if e.kubelets != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := e.bindKubeletClient(ctx)
		cancel()
		if err != nil {
			return err
		}
	}

	if opts.SnapshotController {
		if err := e.startSnapshotController(); err != nil {
			return fmt.Errorf("snapshot-controller: %w", err)
		}
	}
	if len(opts.ControllerManager) > 0 {
		if err := e.startControllerManager(opts.ControllerManager); err != nil {
			return fmt.Errorf("kube-controller-manager: %w", err)
		}
	}
	return nil
}

// checkCRDs makes sure the three snapshot CRDs were installed, so that a renamed or
// emptied folder fails here rather than as a confusing "no matches for kind" later.
func checkCRDs(env *envtest.Environment) error {
	want := map[string]bool{
		"volumesnapshotclasses.snapshot.storage.k8s.io":  false,
		"volumesnapshotcontents.snapshot.storage.k8s.io": false,
		"volumesnapshots.snapshot.storage.k8s.io":        false,
	}
	for _, crd := range env.CRDs {
		if _, ok := want[crd.Name]; ok {
			want[crd.Name] = true
		}
	}
	for name, found := range want {
		if !found {
			return fmt.Errorf("CRD %s not installed from %s", name, snapshotCRDDir)
		}
	}
	return nil
}

func (e *Env) startSnapshotController() error {
	kubeconfig, err := e.userKubeconfig(BinSnapshotController)
	if err != nil {
		return err
	}
	return e.startProcess(BinSnapshotController, []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-election=false",
		"--retry-interval-start=100ms",
		"--retry-interval-max=2s",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=3",
	}, func(log []byte) bool { return bytes.Contains(log, []byte(snapshotControllerReady)) },
		fmt.Sprintf("%q", snapshotControllerReady))
}

// userKubeconfig adds an API server user named name in system:masters and writes its
// kubeconfig into the Env's folder, returning the file's path.
func (e *Env) userKubeconfig(name string) (string, error) {
	user, err := e.Environment.AddUser(envtest.User{
		Name:   name,
		Groups: []string{"system:masters"},
	}, &rest.Config{})
	if err != nil {
		return "", fmt.Errorf("add user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	path := filepath.Join(e.dir, name+".kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// process is a program that Start ran itself (not through envtest).
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and was reaped
}

// startProcess runs the binary name from BinDir with args, its output appended to the
// log name.log, and waits up to startTimeout until ready reports true for what this run
// wrote there (readyWhat describes it in the error). The process is added to e.procs as
// soon as it runs, so that Stop ends it also when it never got ready.
func (e *Env) startProcess(name string, args []string, ready func(log []byte) bool, readyWhat string) error {
	logs, err := e.openLogs(name)
	if err != nil {
		return err
	}
	defer closeAll(logs)
	logPath := logs[0].Name()
	info, err := logs[0].Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	offset := info.Size()

	cmd := exec.Command(filepath.Join(e.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = logs[0], logs[0]
	// Its own process group, so that Stop reaches anything it might fork, and SIGKILL
	// from the kernel when the test binary dies without running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	e.procs = append(e.procs, p)

	deadline := time.After(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %s", cmd.ProcessState)
		case <-deadline:
			return fmt.Errorf("not ready after %s (no %s in %s)", startTimeout, readyWhat, logPath)
		case <-tick.C:
			b, err := os.ReadFile(logPath)
			if err != nil {
				return fmt.Errorf("read log: %w", err)
			}
			if int64(len(b)) > offset && ready(b[offset:]) {
				return nil
			}
		}
	}
}

// Stop stops kube-controller-manager, snapshot-controller, kube-apiserver and etcd. It
// is safe to call more than once; the cleanup registered by Start calls it too.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		for i := len(e.procs) - 1; i >= 0; i-- {
			p := e.procs[i]
			if err := stopProcessGroup(p.cmd, p.done, stopTimeout); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			}
		}
		if e.startedEnvtest {
			if err := e.Environment.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("envtest: %w", err))
			}
		}
		if e.kubelets != nil {
			e.kubelets.proxy.close()
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// stopProcessGroup sends SIGTERM to the process group of cmd and SIGKILL after timeout.
func stopProcessGroup(cmd *exec.Cmd, done <-chan struct{}, timeout time.Duration) error {
	select {
	case <-done:
		return nil
	default:
	}
	pgid := cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL after %s: %w", timeout, err)
	}
	<-done
	return nil
}

// writeDeathSignalWrapper writes a script named like bin that execs bin through setpriv
// with PR_SET_PDEATHSIG=SIGKILL: envtest starts its processes itself and offers no hook
// for that, and the death signal survives both execs, so the server keeps the PID that
// envtest signals on Stop.
func writeDeathSignalWrapper(dir, setpriv, bin string) (string, error) {
	path := filepath.Join(dir, filepath.Base(bin))
	script := "#!/bin/sh\nexec " + shellQuote(setpriv) + " --pdeathsig KILL -- " + shellQuote(bin) + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("write wrapper for %s: %w", filepath.Base(bin), err)
	}
	return path, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (e *Env) openLogs(names ...string) ([]*os.File, error) {
	var files []*os.File
	for _, name := range names {
		f, err := os.OpenFile(filepath.Join(e.logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("open log: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// logTails writes the end of each process log to the test log.
func (e *Env) logTails(t tb.TB) {
	for _, name := range []string{BinEtcd, BinAPIServer, BinSnapshotController, BinControllerManager} {
		path := filepath.Join(e.logDir, name+".log")
		lines, err := tail(path, logTailLines)
		if err != nil {
			continue
		}
		t.Logf("kubeenv: last lines of %s:\n%s", name, strings.Join(lines, "\n"))
	}
}

func tail(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, s.Err()
}

// ModuleRoot walks up from the working directory to the go.mod of the z8r module.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(b) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func moduleLine(gomod []byte) string {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// BinDir is the folder of the control-plane binaries: $Z8R_KUBE_TOOLS, else the build
// script's output under root.
func BinDir(root string) string {
	if d := os.Getenv(EnvKubeTools); d != "" {
		return d
	}
	return filepath.Join(root, toolsDir)
}

func checkBinaries(dir string, names []string) error {
	var missing []string
	for _, name := range names {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s missing in %s", strings.Join(missing, ", "), dir)
	}
	return nil
}
