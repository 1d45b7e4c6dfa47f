package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Subnet is the /24 used inside every test network; networks are isolated
// from each other, so they may all use it.
const Subnet = "10.213.0"

const nsPrefix = "z8rt"

// Network is one test network.
type Network struct {
	ID    string
	Hub   string
	nodes map[string]string // node name -> namespace
	addrs map[string]string // node name -> IP
}

func ownerDir() string { return filepath.Join(os.TempDir(), "z8r-netns") }

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// New creates a hub and one namespace per node name.
func New(t tb.TB, names ...string) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netns: needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("netns: iproute2 is not installed (hack/install-deps.sh installs it)")
	}
	Sweep()
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	n := &Network{ID: id, Hub: nsPrefix + id + "h", nodes: map[string]string{}, addrs: map[string]string{}}
	_ = os.MkdirAll(ownerDir(), 0o755)
	if err := os.WriteFile(filepath.Join(ownerDir(), id), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Delete() })
	steps := [][]string{
		{"netns", "add", n.Hub},
		{"-n", n.Hub, "link", "set", "lo", "up"},
		{"-n", n.Hub, "link", "add", "br0", "type", "bridge"},
		{"-n", n.Hub, "addr", "add", Subnet + ".1/24", "dev", "br0"},
		{"-n", n.Hub, "link", "set", "br0", "up"},
	}
	for i, name := range names {
		ns := fmt.Sprintf("%s%s%d", nsPrefix, id, i)
		addr := fmt.Sprintf("%s.%d", Subnet, 10+i)
		n.nodes[name], n.addrs[name] = ns, addr
		port := fmt.Sprintf("p%d", i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", n.Hub},
			[]string{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", n.Hub, "link", "set", port, "master", "br0"},
			[]string{"-n", n.Hub, "link", "set", port, "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// NS returns the namespace name of a node.
func (n *Network) NS(node string) string { return n.nodes[node] }

// Addr returns the IP address of a node.
func (n *Network) Addr(node string) string { return n.addrs[node] }

// NSMap returns node name -> namespace, for zfsnodes.Options.NetNS.
func (n *Network) NSMap() map[string]string {
	m := make(map[string]string, len(n.nodes))
	for k, v := range n.nodes {
		m[k] = v
	}
	return m
}

// Delete removes every namespace of the network.
func (n *Network) Delete() {
	for _, ns := range n.nodes {
		_ = ip("netns", "del", ns)
	}
	_ = ip("netns", "del", n.Hub)
	_ = os.Remove(filepath.Join(ownerDir(), n.ID))
}

// Sweep deletes the namespaces of networks whose owner process is gone.
func Sweep() {
	entries, _ := os.ReadDir(ownerDir())
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(ownerDir(), e.Name()))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && processAlive(pid) {
			continue
		}
		nss, _ := os.ReadDir("/run/netns")
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), nsPrefix+e.Name()) {
				_ = ip("netns", "del", ns.Name())
			}
		}
		_ = os.Remove(filepath.Join(ownerDir(), e.Name()))
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// DialContext dials addr from inside the hub namespace: the socket is
// created on a thread switched into the hub, and stays there.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn(ctx, filepath.Join("/run/netns", n.Hub), network, addr)
}

// DialIn dials addr from inside the network namespace at nsPath.
func DialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(nsPath, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenIn opens a TCP listener inside the network namespace at nsPath.
func ListenIn(nsPath, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetNS(nsPath, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// inNetNS runs f on an OS thread switched into the network namespace at
// nsPath. Sockets f creates stay in that namespace after the thread
// switches back.
func inNetNS(nsPath string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine
			// instead of running other goroutines in the wrong namespace.
			done <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// Forward makes target (an address in the test process's own network, such
// as envtest's apiserver on 127.0.0.1) reachable from the nodes at
// hubPort on the hub's bridge address. It returns that address.
func (n *Network) Forward(t tb.TB, hubPort int, target string) string {
	t.Helper()
	addr := net.JoinHostPort(Subnet+".1", strconv.Itoa(hubPort))
	l, err := ListenIn(filepath.Join("/run/netns", n.Hub), addr)
	if err != nil {
		t.Fatalf("netns: listen in hub: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return addr
}
