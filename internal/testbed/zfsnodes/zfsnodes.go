package zfsnodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// Options describe the nodes to start.
type Options struct {
	// Pools to create on each node; default {"tank"}.
	Pools []string
	// PoolSize is the size of each pool's backing file; default "512M".
	PoolSize string
	// NetNS, when set for a node name, is the existing network namespace
	// that node's daemon runs in.
	NetNS map[string]string
}

// Node is one simulated ZFS node.
type Node struct {
	Name  string
	Dir   string
	PID   int
	NetNS string
	Pools []string

	cmd    *exec.Cmd
	exited chan struct{}
}

// StateRoot is the folder holding every node's state.
func StateRoot() string {
	if d := os.Getenv("Z8R_TESTBED_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "z8r-testbed")
}

// Script returns the path of hack/zfsnode.sh, found from the module root.
func Script() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "hack", "zfsnode.sh"), nil
}

// ModuleRoot walks up from the working directory to the folder with go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("zfsnodes: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Start starts one node per name, each with opts.Pools, and registers their
// teardown with t.Cleanup.
func Start(t tb.TB, opts Options, names ...string) []*Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("zfsnodes: real ZFS tests need root (zfs-fuse needs /dev/fuse and namespaces)")
	}
	if _, err := exec.LookPath("zfs-fuse"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/zfs-fuse"); err2 != nil {
			t.Fatal("zfsnodes: zfs-fuse is not installed; run `apt-get install -y zfs-fuse` (.ci/run does)")
		}
	}
	script, err := Script()
	if err != nil {
		t.Fatal(err)
	}
	root := StateRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Clear nodes left by test binaries that died without cleaning up.
	if out, err := exec.Command(script, "sweep", root).CombinedOutput(); err != nil {
		t.Logf("zfsnodes: sweep: %v: %s", err, out)
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []string{"tank"}
	}
	if opts.PoolSize == "" {
		opts.PoolSize = "512M"
	}
	nodes := make([]*Node, 0, len(names))
	for _, name := range names {
		n, err := startNode(script, root, name, opts)
		if n != nil {
			t.Cleanup(func() {
				if err := n.down(script); err != nil {
					t.Errorf("zfsnodes: teardown %s: %v", n.Name, err)
				}
			})
		}
		if err != nil {
			t.Fatalf("zfsnodes: start %s: %v", name, err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func startNode(script, root, name string, opts Options) (*Node, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	dir := filepath.Join(root, name+"-"+hex.EncodeToString(b[:]))
	n := &Node{Name: name, Dir: dir, NetNS: opts.NetNS[name]}
	args := []string{"daemon", dir}
	if n.NetNS != "" {
		args = append(args, "--netns", n.NetNS)
	}
	// The script execs into the daemon, so this process is its parent: it
	// reaps it, and Pdeathsig kills it if the test binary dies.
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "Z8R_OWNER_PID="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", script, err)
	}
	n.PID = cmd.Process.Pid
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	socket := filepath.Join(dir, "run", "zfs_socket")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		select {
		case <-n.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			return n, fmt.Errorf("zfs-fuse exited before its socket appeared: %s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("no socket at %s after 10s", socket)
		}
	}
	if out, err := exec.Command(script, "pin", dir).CombinedOutput(); err != nil {
		return n, fmt.Errorf("pin mount namespace: %w: %s", err, out)
	}
	for _, p := range opts.Pools {
		if out, err := exec.Command(script, "pool", dir, p, opts.PoolSize).CombinedOutput(); err != nil {
			return n, fmt.Errorf("create pool %s: %w: %s", p, err, out)
		}
		n.Pools = append(n.Pools, p)
	}
	return n, nil
}

func (n *Node) down(script string) error {
	out, err := exec.Command(script, "down", n.Dir).CombinedOutput()
	if n.cmd != nil {
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// Prefix is the argv prefix that runs a command in the node's namespaces.
// It enters the mount namespace through its pinned file, so it keeps
// working (and ZFS reports "daemon not running") after the daemon stops.
func (n *Node) Prefix() []string {
	p := []string{"nsenter", "--mount=" + filepath.Join(n.Dir, "ns-mnt")}
	if n.NetNS != "" {
		p = append(p, "--net="+filepath.Join("/run/netns", n.NetNS))
	}
	return append(p, "--")
}

// Runner runs argv inside the node.
func (n *Node) Runner() zfsexec.LocalRunner { return zfsexec.LocalRunner{Prefix: n.Prefix()} }

// ZFS returns typed ZFS operations on the node.
func (n *Node) ZFS() *zfsexec.ZFS { return zfsexec.New(n.Runner()) }

// Path returns the host path under which the node sees path p (its mount
// namespace's view, through /proc/<pid>/root).
func (n *Node) Path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(n.PID), "root", p)
}

// Exec runs argv in the node and returns its combined output.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	full := append(n.Prefix(), argv...)
	out, err := exec.CommandContext(ctx, full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%v: %w: %s", argv, err, out)
	}
	return string(out), nil
}

// StopDaemon stops the node's zfs-fuse daemon (SIGTERM, then waits), to
// provoke "daemon not running". The node's state stays for teardown.
func (n *Node) StopDaemon() error {
	if err := syscall.Kill(n.PID, syscall.SIGTERM); err != nil {
		return fmt.Errorf("zfsnodes: stop %s: %w", n.Name, err)
	}
	select {
	case <-n.exited:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("zfsnodes: %s: daemon %d still running", n.Name, n.PID)
	}
}
