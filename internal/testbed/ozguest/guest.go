package ozguest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Channel is how the host reaches the guest's exec server.
type Channel int

const (
	// ChannelSerial is SSH over a virtio-serial port backed by a unix socket.
	ChannelSerial Channel = iota
	// ChannelTCP is SSH over qemu user-mode networking (hostfwd to a free
	// 127.0.0.1 port).
	ChannelTCP
)

func (c Channel) String() string {
	switch c {
	case ChannelSerial:
		return "virtio-serial"
	case ChannelTCP:
		return "tcp"
	}
	return "channel(" + strconv.Itoa(int(c)) + ")"
}

// Options configure a guest. The zero value is usable.
type Options struct {
	// Disks is the number of test disks (default 2); DiskSize their size in
	// bytes (default 1 GiB, sparse).
	Disks    int
	DiskSize int64
	// MemoryMiB (default 1536) and CPUs (default 2) size the guest.
	MemoryMiB int
	CPUs      int
	// ARCMaxBytes caps the ARC (zfs_arc_max; default 256 MiB).
	ARCMaxBytes int64
	// Channel selects the exec channel (default ChannelSerial).
	Channel Channel
	// Ciphers, when set, is the SSH cipher list the host offers (default
	// chacha20-poly1305 first, see defaultCiphers).
	Ciphers []string
	// BootTimeout bounds the boot up to a usable exec server with zfs loaded
	// (default 5 minutes; a cold boot takes seconds, a loaded CI machine more).
	BootTimeout time.Duration
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string
	// Image overrides FindImage.
	Image *Image
}

func (o Options) withDefaults() Options {
	if o.Disks == 0 {
		o.Disks = 2
	}
	if o.DiskSize == 0 {
		o.DiskSize = 1 << 30
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1536
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.ARCMaxBytes == 0 {
		o.ARCMaxBytes = 256 << 20
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 5 * time.Minute
	}
	return o
}

// defaultCiphers puts chacha20-poly1305 first: under emulation the guest's
// AES-GCM (emulated AES-NI and PCLMULQDQ) streamed 8-11 MB/s against 23-32
// MB/s for chacha20-poly1305 on the same channel.
var defaultCiphers = []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes128-ctr"}

// guestSeq numbers guests within the test binary, for their names.
var guestSeq atomic.Int64

// killGrace is how long Run waits for the guest to report a killed process.
const killGrace = 10 * time.Second

// Guest is one running qemu guest.
type Guest struct {
	name    string
	opts    Options
	dir     string
	sockDir string
	console string
	disks   []string
	port    int
	banner  string

	clientKey ssh.Signer
	hostKey   ssh.PublicKey

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	client   *ssh.Client
	started  time.Time
	bootTime time.Duration
	stopOnce sync.Once
}

// Boot starts one guest and waits until it can run zfs commands. The guest is
// killed when the test ends.
func Boot(t testing.TB, opts Options) *Guest {
	t.Helper()
	return BootN(t, 1, opts)[0]
}

// BootN starts n guests at once and waits until all can run zfs commands.
func BootN(t testing.TB, n int, opts Options) []*Guest {
	t.Helper()
	opts = opts.withDefaults()
	im := opts.Image
	if im == nil {
		found, err := FindImage()
		if err != nil {
			t.Fatal(err)
		}
		im = &found
	}
	bin := guestexecBinary(t)
	guests := make([]*Guest, n)
	for i := range guests {
		name := fmt.Sprintf("ozguest%d", guestSeq.Add(1)-1)
		g, err := start(t, name, *im, bin, opts)
		if g != nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("ozguest: %s console (last lines):\n%s", g.name, g.consoleTail(40))
				}
				g.stop()
			})
		}
		if err != nil {
			t.Fatalf("ozguest: start %s: %v", name, err)
		}
		guests[i] = g
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Go(func() { errs[i] = g.connect() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ozguest: %s: %v\nconsole (last lines):\n%s", guests[i].name, err, guests[i].consoleTail(40))
		}
		t.Logf("ozguest: %s ready in %v (channel %v)", guests[i].name, guests[i].bootTime.Round(time.Millisecond), opts.Channel)
	}
	return guests
}

// Name is the guest's name in logs.
func (g *Guest) Name() string { return g.name }

// Disk returns the guest's path of test disk i: /dev/disk/by-id/virtio-zdiskI.
func (g *Guest) Disk(i int) string {
	if i < 0 || i >= len(g.disks) {
		panic(fmt.Sprintf("ozguest: %s has %d disks, no disk %d", g.name, len(g.disks), i))
	}
	return "/dev/disk/by-id/virtio-zdisk" + strconv.Itoa(i)
}

// BootTime is the time from starting qemu to a usable exec server (the
// guest's init loads zfs before it starts the server).
func (g *Guest) BootTime() time.Duration { return g.bootTime }

// ConsoleLog is the host path of the guest's serial console log.
func (g *Guest) ConsoleLog() string { return g.console }

func start(t testing.TB, name string, im Image, bin string, opts Options) (*Guest, error) {
	g := &Guest{name: name, opts: opts, dir: t.TempDir(), exited: make(chan struct{})}
	share := filepath.Join(g.dir, "share")
	if err := os.Mkdir(share, 0o700); err != nil {
		return g, fmt.Errorf("share: %w", err)
	}
	if err := copyFile(bin, filepath.Join(share, "guestexec"), 0o755); err != nil {
		return g, err
	}
	if err := g.writeKeys(share); err != nil {
		return g, err
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return g, fmt.Errorf("nonce: %w", err)
	}
	g.banner = "z8r-guestexec " + hex.EncodeToString(nonce)
	cfg := map[string]string{
		"hostKey":       "/mnt/z8r/hostkey",
		"authorizedKey": "/mnt/z8r/authorized_key",
		"banner":        g.banner,
	}
	sockDir, err := socketDir(name)
	if err != nil {
		return g, err
	}
	g.sockDir = sockDir
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", strconv.Itoa(opts.CPUs), "-m", strconv.Itoa(opts.MemoryMiB),
		"-kernel", im.kernel(), "-initrd", im.initrd(),
		"-append", strings.Join(append([]string{
			"console=ttyS0", "quiet", "panic=-1", "mitigations=off",
			"zfs.zfs_arc_max=" + strconv.FormatInt(opts.ARCMaxBytes, 10),
		}, opts.KernelArgs...), " "),
		"-serial", "file:" + filepath.Join(g.dir, "console.log"),
		"-drive", "file=" + im.root() + ",if=none,id=root,format=qcow2,snapshot=on",
		"-device", "virtio-blk-pci,drive=root",
		"-fsdev", "local,id=share,path=" + share + ",security_model=none,readonly=on",
		"-device", "virtio-9p-pci,fsdev=share,mount_tag=z8r",
		"-device", "virtio-rng-pci",
	}
	g.console = filepath.Join(g.dir, "console.log")
	for i := range opts.Disks {
		p := filepath.Join(g.dir, fmt.Sprintf("zdisk%d.img", i))
		if err := makeSparse(p, opts.DiskSize); err != nil {
			return g, err
		}
		g.disks = append(g.disks, p)
		id := "d" + strconv.Itoa(i)
		args = append(args,
			"-drive", "file="+p+",if=none,id="+id+",format=raw,cache=unsafe,discard=unmap",
			"-device", "virtio-blk-pci,drive="+id+",serial=zdisk"+strconv.Itoa(i))
	}
	switch opts.Channel {
	case ChannelSerial:
		cfg["serialPort"] = "z8r.exec"
		args = append(args,
			"-device", "virtio-serial-pci",
			"-chardev", "socket,id=exec,path="+g.socket()+",server=on,wait=off",
			"-device", "virtserialport,chardev=exec,name=z8r.exec")
	case ChannelTCP:
		port, err := freePort()
		if err != nil {
			return g, err
		}
		g.port = port
		cfg["tcpListen"] = ":22"
		args = append(args,
			"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", port),
			"-device", "virtio-net-pci,netdev=net0,romfile=")
	default:
		return g, fmt.Errorf("unknown channel %v", opts.Channel)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return g, fmt.Errorf("config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(share, "guestexec.json"), cfgJSON, 0o600); err != nil {
		return g, fmt.Errorf("config: %w", err)
	}
	logf, err := os.Create(filepath.Join(g.dir, "qemu.log"))
	if err != nil {
		return g, fmt.Errorf("qemu log: %w", err)
	}
	defer logf.Close()
	g.cmd = exec.Command("qemu-system-x86_64", args...)
	g.cmd.Stdout = logf
	g.cmd.Stderr = logf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	g.started = time.Now()
	if err := g.cmd.Start(); err != nil {
		g.cmd = nil
		return g, fmt.Errorf("start qemu: %w", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	return g, nil
}

func (g *Guest) socket() string { return filepath.Join(g.sockDir, "exec.sock") }

// socketDir makes $TMPDIR/z8r-ozguest/<pid>-<guest>/ for the guest's unix
// socket: a unix socket path must stay under 108 bytes, and test temporary
// directories can be longer. Directories of test binaries that died without
// cleaning up are removed on the way.
func socketDir(name string) (string, error) {
	parent := filepath.Join(os.TempDir(), "z8r-ozguest")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() &&
			errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
	dir := filepath.Join(parent, strconv.Itoa(os.Getpid())+"-"+name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	return dir, nil
}

func (g *Guest) writeKeys(share string) error {
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "ozguest host key")
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(share, "hostkey"), pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if g.hostKey, err = ssh.NewPublicKey(hostPub); err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	cpub, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(share, "authorized_key"), ssh.MarshalAuthorizedKey(cpub), 0o600); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	if g.clientKey, err = ssh.NewSignerFromKey(clientPriv); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	return nil
}

// connect waits for the guest's exec server and opens the SSH connection.
func (g *Guest) connect() error {
	deadline := g.started.Add(g.opts.BootTimeout)
	var conn net.Conn
	for {
		c, err := g.dialOnce(deadline)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-g.exited:
			return fmt.Errorf("qemu exited during boot (%v): %s", g.waitErr, g.qemuLog())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no exec server after %v: %w", g.opts.BootTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(g.clientKey)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		Timeout:         time.Minute,
	}
	cfg.Ciphers = g.opts.Ciphers
	if cfg.Ciphers == nil {
		cfg.Ciphers = defaultCiphers
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, g.name, cfg)
	if err != nil {
		conn.Close()
		return fmt.Errorf("ssh handshake: %w", err)
	}
	g.client = ssh.NewClient(c, chans, reqs)
	g.bootTime = time.Since(g.started)
	return nil
}

// dialOnce connects and reads the server's banner line. Until the guest's
// server runs, a TCP connection is closed by qemu at once, and a connection
// to the serial socket stays silent.
func (g *Guest) dialOnce(deadline time.Time) (net.Conn, error) {
	var c net.Conn
	var err error
	readBy := deadline
	switch g.opts.Channel {
	case ChannelSerial:
		c, err = net.Dial("unix", g.socket())
	case ChannelTCP:
		c, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)), 5*time.Second)
		if short := time.Now().Add(10 * time.Second); short.Before(readBy) {
			readBy = short
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	// Stop waiting for the banner when qemu dies.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-g.exited:
			c.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	if err := c.SetReadDeadline(readBy); err != nil {
		c.Close()
		return nil, fmt.Errorf("deadline: %w", err)
	}
	line, err := readLine(c, 256)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("banner: %w", err)
	}
	if line != g.banner {
		c.Close()
		return nil, fmt.Errorf("banner: got %q, want %q", line, g.banner)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("deadline: %w", err)
	}
	return c, nil
}

// readLine reads one line byte by byte, so nothing after it is consumed.
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", errors.New("line too long")
}

// stop kills qemu and removes the socket directory; the rest of the guest's
// files live in the test's temporary directory.
func (g *Guest) stop() {
	g.stopOnce.Do(func() {
		if g.client != nil {
			g.client.Close()
		}
		if g.cmd != nil && g.cmd.Process != nil {
			syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
			<-g.exited
		}
		if g.sockDir != "" {
			os.RemoveAll(g.sockDir)
		}
	})
}

func (g *Guest) consoleTail(n int) string {
	b, err := os.ReadFile(g.console)
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (g *Guest) qemuLog() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "qemu.log"))
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func makeSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}
