package fakezfs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// ErrNotModelled is matched (errors.Is) by every *NotModelledError.
var ErrNotModelled = errors.New("fakezfs: command not modelled")

// NotModelledError is returned for an argv the fake does not model: it never
// pretends to run what it does not understand.
type NotModelledError struct {
	Argv []string
}

func (e *NotModelledError) Error() string {
	return fmt.Sprintf("fakezfs: command not modelled: %q", e.Argv)
}

// Is makes errors.Is(err, ErrNotModelled) true.
func (e *NotModelledError) Is(target error) bool { return target == ErrNotModelled }

// Options configure a Node.
type Options struct {
	// Implementation is the ZFS the node imitates, with that
	// implementation's capabilities, wording and limits: zfsexec.ImplOpenZFS
	// (the default; OpenZFS 2.3) or zfsexec.ImplZFSFuse (pool version 23).
	Implementation zfsexec.Implementation
	// Pools are created empty at start, each with its root filesystem
	// mounted. Default: one pool, "tank".
	Pools []string
	// MountRoot prefixes every mountpoint ("/tank/fs" by default, as
	// OpenZFS's default mountpoint).
	MountRoot string
}

// Node is one in-memory ZFS node. It implements zfsexec.Runner; use
// zfsexec.New(node) or node.ZFS(). A Node is safe for concurrent use.
type Node struct {
	name string
	impl zfsexec.Implementation
	root string

	mu     sync.Mutex
	txg    uint64
	rnd    *rand.Rand
	ds     map[string]*dataset
	log    [][]string
	faults []*Fault
	gates  []*Gate
}

// dataset is a filesystem or volume.
type dataset struct {
	name      string
	typ       zfsexec.Type
	guid      uint64
	createtxg uint64
	creation  time.Time
	local     map[string]string // properties set on it (user and native)
	received  map[string]string // properties received in a stream (-p)
	files     map[string][]byte // file contents, by path below the mountpoint
	written   int64             // bytes written since the last snapshot
	mounted   bool
	volsize   int64
	snaps     []*snapshot // oldest first
	bookmarks []*bookmark
	origin    *snapshot // a clone's origin
	partial   *partialRecv
}

// snapshot is one snapshot of a dataset.
type snapshot struct {
	fs           *dataset
	name         string
	guid         uint64
	createtxg    uint64
	creation     time.Time
	local        map[string]string
	received     map[string]string
	files        map[string][]byte
	holds        map[string]time.Time
	deferDestroy bool
	clones       []*dataset
}

func (s *snapshot) fullName() string { return s.fs.name + "@" + s.name }

// bookmark keeps its snapshot's identity; files is the fake's record of
// the snapshot's contents, used only to compute incremental streams.
type bookmark struct {
	fs        *dataset
	name      string
	guid      uint64
	createtxg uint64
	creation  time.Time
	files     map[string][]byte
}

func (b *bookmark) fullName() string { return b.fs.name + "#" + b.name }

// partialRecv is the saved state of an interrupted `zfs recv -s`.
type partialRecv struct {
	toName   string
	toGUID   uint64
	fromGUID uint64
	token    string
	// created: the receive was a full stream that created the dataset,
	// which `recv -A` then removes.
	created bool
}

// New returns a node named name (the name only labels errors and logs).
func New(name string, opts Options) *Node {
	if opts.Implementation == "" {
		opts.Implementation = zfsexec.ImplOpenZFS
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []string{"tank"}
	}
	n := &Node{
		name: name,
		impl: opts.Implementation,
		root: strings.TrimSuffix(opts.MountRoot, "/"),
		rnd:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		ds:   map[string]*dataset{},
	}
	for _, p := range opts.Pools {
		d := n.newDataset(p, zfsexec.TypeFilesystem)
		d.mounted = true
		n.ds[p] = d
	}
	return n
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// ZFS returns a zfsexec.ZFS that runs its commands on n.
func (n *Node) ZFS() *zfsexec.ZFS { return zfsexec.New(n) }

// Commands returns every argv Run was given, in order, including refused
// and failed ones.
func (n *Node) Commands() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([][]string, len(n.log))
	for i, a := range n.log {
		out[i] = slices.Clone(a)
	}
	return out
}

// Write simulates an application writing data to file on the filesystem or
// volume fs, mounted or not: the dataset is then modified since its last
// snapshot, as a receive or `written` sees it.
func (n *Node) Write(fs, file string, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.ds[fs]
	if d == nil {
		return fmt.Errorf("fakezfs: write to %s: %w", fs, zfsexec.ErrDatasetNotExist)
	}
	d.write(file, data)
	return nil
}

func (d *dataset) write(file string, data []byte) {
	d.files[path.Clean("/" + file)[1:]] = slices.Clone(data)
	d.written += int64(len(data)) + 512
}

func (n *Node) nextTXG() uint64 {
	n.txg++
	return n.txg
}

func (n *Node) newGUID() uint64 {
	for {
		if g := n.rnd.Uint64(); g != 0 {
			return g
		}
	}
}

func (n *Node) newDataset(name string, typ zfsexec.Type) *dataset {
	return &dataset{
		name:      name,
		typ:       typ,
		guid:      n.newGUID(),
		createtxg: n.nextTXG(),
		creation:  time.Now(),
		local:     map[string]string{},
		received:  map[string]string{},
		files:     map[string][]byte{},
	}
}

func (n *Node) openZFS() bool { return n.impl == zfsexec.ImplOpenZFS }

// parentOf returns the parent dataset's name ("" for a pool's root).
func parentOf(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return ""
}

// children returns the direct children of d, sorted by name.
func (n *Node) children(d *dataset) []*dataset {
	var out []*dataset
	for name, c := range n.ds {
		if parentOf(name) == d.name {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// snapshot returns the named snapshot ("fs@s") or nil.
func (n *Node) snapshot(name string) *snapshot {
	fs, short, ok := strings.Cut(name, "@")
	if !ok {
		return nil
	}
	d := n.ds[fs]
	if d == nil {
		return nil
	}
	for _, s := range d.snaps {
		if s.name == short {
			return s
		}
	}
	return nil
}

// bookmarkNamed returns the named bookmark ("fs#b") or nil.
func (n *Node) bookmarkNamed(name string) *bookmark {
	fs, short, ok := strings.Cut(name, "#")
	if !ok {
		return nil
	}
	d := n.ds[fs]
	if d == nil {
		return nil
	}
	for _, b := range d.bookmarks {
		if b.name == short {
			return b
		}
	}
	return nil
}

func (d *dataset) latest() *snapshot {
	if len(d.snaps) == 0 {
		return nil
	}
	return d.snaps[len(d.snaps)-1]
}

func (d *dataset) mountpoint(root string) string { return root + "/" + d.name }

func copyFiles(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (d *dataset) size() int64 {
	var s int64
	for _, f := range d.files {
		s += int64(len(f))
	}
	return s + d.volsize
}

// removeSnapshot drops s from its dataset.
func removeSnapshot(s *snapshot) {
	d := s.fs
	d.snaps = slices.DeleteFunc(d.snaps, func(x *snapshot) bool { return x == s })
}

// Run implements zfsexec.Runner.
func (n *Node) Run(ctx context.Context, c zfsexec.Command) error {
	if len(c.Argv) == 0 {
		return errors.New("fakezfs: empty argv")
	}
	argv := slices.Clone(c.Argv)
	n.mu.Lock()
	n.log = append(n.log, argv)
	gates := n.matchGates(argv)
	fault := n.matchFaults(argv)
	n.mu.Unlock()
	for _, g := range gates {
		if err := g.pass(ctx); err != nil {
			return fmt.Errorf("fakezfs: %s: %w", strings.Join(argv, " "), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fakezfs: %s: %w", strings.Join(argv, " "), err)
	}
	if fault != nil {
		ferr := withArgv(fault.err, argv)
		if fault.cut < 0 || c.Stdout == nil {
			// Like a process that failed at once: stdin is left
			// unread (a sender through zfsexec.Pipe sees the pipe
			// closed).
			return ferr
		}
		c.Stdout = &cutWriter{w: c.Stdout, left: fault.cut}
		_ = n.run(ctx, argv, c)
		return ferr
	}
	return n.run(ctx, argv, c)
}

// run runs one modelled command.
func (n *Node) run(ctx context.Context, argv []string, c zfsexec.Command) error {
	switch argv[0] {
	case "zfs":
		return n.runZFS(ctx, argv, c)
	case "zpool":
		if len(argv) == 3 && argv[1] == "upgrade" && argv[2] == "-v" {
			return n.zpoolUpgradeV(argv, c)
		}
	case "dd":
		return n.dd(argv, c)
	case "cat":
		if len(argv) == 2 {
			return n.cat(argv, c)
		}
	}
	return &NotModelledError{Argv: argv}
}

// cmdErr is what a real command that failed returns: exit code and stderr.
func cmdErr(argv []string, code int, format string, args ...any) error {
	return &zfsexec.CommandError{Argv: argv, ExitCode: code, Stderr: fmt.Sprintf(format, args...) + "\n"}
}

// resolve finds the mounted filesystem holding absolute path p and the
// file's path below its mountpoint.
func (n *Node) resolve(p string) (*dataset, string) {
	p = path.Clean(p)
	var best *dataset
	rel := ""
	for _, d := range n.ds {
		if !d.mounted {
			continue
		}
		mp := d.mountpoint(n.root)
		if strings.HasPrefix(p, mp+"/") && (best == nil || len(mp) > len(best.mountpoint(n.root))) {
			best, rel = d, p[len(mp)+1:]
		}
	}
	return best, rel
}

// dd models `dd of=PATH [bs=N] [status=none]`: stdin replaces the file.
func (n *Node) dd(argv []string, c zfsexec.Command) error {
	of := ""
	for _, a := range argv[1:] {
		switch {
		case strings.HasPrefix(a, "of="):
			of = a[3:]
		case strings.HasPrefix(a, "bs="), a == "status=none":
		default:
			return &NotModelledError{Argv: argv}
		}
	}
	if of == "" || c.Stdin == nil {
		return &NotModelledError{Argv: argv}
	}
	data, err := drain(c.Stdin)
	if err != nil {
		return fmt.Errorf("fakezfs: dd: read stdin: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, rel := n.resolve(of)
	if d == nil {
		return cmdErr(argv, 1, "dd: failed to open '%s': No such file or directory", of)
	}
	if n.effectiveNative(d, "readonly") == "on" {
		return cmdErr(argv, 1, "dd: failed to open '%s': Read-only file system", of)
	}
	d.write(rel, data)
	return nil
}

// cat models `cat PATH`.
func (n *Node) cat(argv []string, c zfsexec.Command) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, rel := n.resolve(argv[1])
	var data []byte
	ok := false
	if d != nil {
		data, ok = d.files[rel]
	}
	if !ok {
		return cmdErr(argv, 1, "cat: %s: No such file or directory", argv[1])
	}
	if d != nil && n.effectiveNative(d, "readonly") != "on" {
		// Reading updates atime: a writable filesystem is then modified
		// since its last snapshot, on zfs-fuse and OpenZFS alike
		// (TESTBED.md), which is why replicas are kept readonly.
		d.written += 512
	}
	if c.Stdout != nil {
		if _, err := c.Stdout.Write(data); err != nil {
			return cmdErr(argv, 1, "cat: write error: Broken pipe")
		}
	}
	return nil
}

func (n *Node) zpoolUpgradeV(argv []string, c zfsexec.Command) error {
	if n.openZFS() {
		return writeOut(c, "This system supports ZFS pool feature flags.\n\nAll pools are formatted using feature flags.\n")
	}
	return writeOut(c, "This system is currently running ZFS pool version 23.\n\nThe following versions are supported:\n")
}

func writeOut(c zfsexec.Command, s string) error {
	if c.Stdout == nil {
		return nil
	}
	_, err := c.Stdout.Write([]byte(s))
	return err
}
