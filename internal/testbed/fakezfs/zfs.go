package fakezfs

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// runZFS dispatches `zfs SUBCOMMAND ...`.
func (n *Node) runZFS(ctx context.Context, argv []string, c zfsexec.Command) error {
	if len(argv) < 2 {
		return &NotModelledError{Argv: argv}
	}
	switch argv[1] {
	case "send":
		return n.send(ctx, argv, c)
	case "recv", "receive":
		return n.recv(ctx, argv, c)
	case "version":
		if len(argv) != 2 {
			return &NotModelledError{Argv: argv}
		}
		if !n.openZFS() {
			return cmdErr(argv, 2, "unrecognized command 'version'\nusage: zfs command args ...")
		}
		return writeOut(c, "zfs-2.3.2-fakezfs\nzfs-kmod-2.3.2-fakezfs\n")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch argv[1] {
	case "get":
		out, err := n.get(argv)
		if err != nil {
			return err
		}
		return writeOut(c, out)
	case "set":
		return n.set(argv)
	case "create":
		return n.create(argv)
	case "snapshot", "snap":
		return n.snapshotCmd(argv)
	case "destroy":
		return n.destroy(argv)
	case "hold":
		return n.hold(argv)
	case "release":
		return n.release(argv)
	case "holds":
		out, err := n.holds(argv)
		if err != nil {
			return err
		}
		return writeOut(c, out)
	case "bookmark":
		return n.bookmarkCmd(argv)
	case "rename":
		return n.rename(argv)
	case "mount":
		return n.mount(argv)
	case "umount", "unmount":
		return n.umount(argv)
	case "rollback":
		return n.rollback(argv)
	case "clone":
		return n.clone(argv)
	case "promote":
		return n.promote(argv)
	case "inherit":
		return n.inherit(argv)
	}
	return &NotModelledError{Argv: argv}
}

func notExist(argv []string, name string) error {
	return cmdErr(argv, 1, "cannot open '%s': dataset does not exist", name)
}

func (n *Node) set(argv []string) error {
	if len(argv) != 4 {
		return &NotModelledError{Argv: argv}
	}
	o, ok := n.lookup(argv[3])
	if !ok {
		return notExist(argv, argv[3])
	}
	return n.setProp(argv, o, argv[2], "local")
}

// createArgs parses [-p] [-o k=v]... [-V size] NAME.
func createArgs(argv []string, flags string) (map[string]bool, []string, string, string, bool) {
	seen := map[string]bool{}
	var kvs []string
	vol := ""
	args := argv[2:]
	for len(args) > 1 {
		switch a := args[0]; {
		case len(a) == 2 && a[0] == '-' && strings.IndexByte(flags, a[1]) >= 0:
			seen[a] = true
			args = args[1:]
		case a == "-o" && len(args) > 2:
			kvs = append(kvs, args[1])
			args = args[2:]
		case a == "-V" && len(args) > 2 && strings.IndexByte(flags, 'V') >= 0:
			vol = args[1]
			args = args[2:]
		default:
			return nil, nil, "", "", false
		}
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return nil, nil, "", "", false
	}
	return seen, kvs, vol, args[0], true
}

func (n *Node) create(argv []string) error {
	seen, kvs, vol, name, ok := createArgs(argv, "pV")
	if !ok || strings.ContainsAny(name, "@#") {
		return &NotModelledError{Argv: argv}
	}
	if n.ds[name] != nil {
		return cmdErr(argv, 1, "cannot create '%s': dataset already exists", name)
	}
	parent := parentOf(name)
	if parent == "" {
		return cmdErr(argv, 1, "cannot create '%s': missing dataset name", name)
	}
	if n.ds[parent] == nil {
		if !seen["-p"] {
			return cmdErr(argv, 1, "cannot create '%s': parent does not exist", name)
		}
		var missing []string
		for p := parent; p != "" && n.ds[p] == nil; p = parentOf(p) {
			missing = append(missing, p)
		}
		if !strings.Contains(missing[len(missing)-1], "/") {
			return cmdErr(argv, 1, "cannot create '%s': no such pool '%s'", name, missing[len(missing)-1])
		}
		for i := len(missing) - 1; i >= 0; i-- {
			d := n.newDataset(missing[i], zfsexec.TypeFilesystem)
			d.mounted = true
			n.ds[d.name] = d
		}
	}
	if n.ds[parent].typ != zfsexec.TypeFilesystem {
		return cmdErr(argv, 1, "cannot create '%s': parent is not a filesystem", name)
	}
	typ := zfsexec.TypeFilesystem
	var size int64
	if vol != "" {
		typ = zfsexec.TypeVolume
		s, ok := parseSize(vol)
		if !ok {
			return cmdErr(argv, 1, "bad volume size '%s'", vol)
		}
		size = s
	}
	d := n.newDataset(name, typ)
	d.volsize = size
	o := object{name: name, typ: typ, ds: d}
	for _, kv := range kvs {
		if err := n.setProp(argv, o, kv, "local"); err != nil {
			return err
		}
	}
	n.ds[name] = d
	d.mounted = typ == zfsexec.TypeFilesystem && d.local["canmount"] != "off" && d.local["canmount"] != "noauto"
	return nil
}

// parseSize reads a volume size such as 1048576, 64M or 1G.
func parseSize(s string) (int64, bool) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	var v int64
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		v = v*10 + int64(r-'0')
	}
	return v * mult, s != "" && v > 0
}

func (n *Node) snapshotCmd(argv []string) error {
	_, kvs, _, name, ok := createArgs(argv, "")
	if !ok {
		return &NotModelledError{Argv: argv}
	}
	fs, short, isSnap := strings.Cut(name, "@")
	if !isSnap || short == "" {
		return cmdErr(argv, 1, "cannot create snapshot '%s': invalid character '@' in name", name)
	}
	d := n.ds[fs]
	if d == nil || d.partial != nil && d.partial.created {
		return notExist(argv, fs)
	}
	if n.snapshot(name) != nil {
		return cmdErr(argv, 1, "cannot create snapshot '%s': dataset already exists", name)
	}
	local := map[string]string{}
	for _, kv := range kvs {
		k, v, err := parseKV(kv)
		if err != nil {
			return cmdErr(argv, 2, "%v", err)
		}
		if !strings.Contains(k, ":") {
			return &NotModelledError{Argv: argv}
		}
		local[k] = v
	}
	n.takeSnapshot(d, short, n.newGUID(), time.Now(), local)
	return nil
}

func (n *Node) takeSnapshot(d *dataset, short string, guid uint64, creation time.Time, local map[string]string) *snapshot {
	s := &snapshot{
		fs: d, name: short, guid: guid, createtxg: n.nextTXG(), creation: creation,
		local: local, received: map[string]string{}, files: copyFiles(d.files),
		holds: map[string]time.Time{},
	}
	d.snaps = append(d.snaps, s)
	d.written = 0
	return s
}

func (n *Node) destroy(argv []string) error {
	args := argv[2:]
	deferred := false
	if len(args) == 2 && args[0] == "-d" {
		deferred = true
		args = args[1:]
	}
	if len(args) != 1 {
		return &NotModelledError{Argv: argv}
	}
	name := args[0]
	switch {
	case strings.Contains(name, "#") && !deferred:
		if !n.openZFS() {
			return cmdErr(argv, 1, "cannot open '%s': invalid dataset name", name)
		}
		b := n.bookmarkNamed(name)
		if b == nil {
			return cmdErr(argv, 1, "bookmark '%s' does not exist.", name)
		}
		b.fs.bookmarks = slices.DeleteFunc(b.fs.bookmarks, func(x *bookmark) bool { return x == b })
		return nil
	case strings.Contains(name, "@"):
		s := n.snapshot(name)
		if s == nil {
			if n.openZFS() {
				return cmdErr(argv, 1, "could not find any snapshots to destroy; check snapshot names.")
			}
			return notExist(argv, name)
		}
		switch {
		case len(s.holds) > 0 && deferred, len(s.clones) > 0 && deferred:
			s.deferDestroy = true
			return nil
		case len(s.holds) > 0:
			return n.errBusy(argv, name)
		case len(s.clones) > 0:
			return n.errClones(argv, s)
		}
		removeSnapshot(s)
		return nil
	}
	// Filesystems and volumes: z8r never destroys them; not modelled.
	return &NotModelledError{Argv: argv}
}

func (n *Node) errBusy(argv []string, name string) error {
	if n.openZFS() {
		return cmdErr(argv, 1, "cannot destroy snapshot %s: it's being held. Run 'zfs holds -r %s' to see holders.", name, name)
	}
	return cmdErr(argv, 1, "cannot destroy '%s': dataset is busy", name)
}

func (n *Node) errClones(argv []string, s *snapshot) error {
	var names []string
	for _, c := range s.clones {
		names = append(names, c.name)
	}
	return cmdErr(argv, 1, "cannot destroy '%s': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\n%s", s.fullName(), strings.Join(names, "\n"))
}

func (n *Node) hold(argv []string) error {
	if len(argv) != 4 {
		return &NotModelledError{Argv: argv}
	}
	tag, name := argv[2], argv[3]
	s := n.snapshot(name)
	what := "snapshot '" + name + "'"
	if !n.openZFS() {
		what = "'" + name + "'"
	}
	if s == nil {
		return cmdErr(argv, 1, "cannot hold %s: dataset does not exist", what)
	}
	if _, ok := s.holds[tag]; ok {
		return cmdErr(argv, 1, "cannot hold %s: tag already exists on this dataset", what)
	}
	s.holds[tag] = time.Now()
	return nil
}

func (n *Node) release(argv []string) error {
	if len(argv) != 4 {
		return &NotModelledError{Argv: argv}
	}
	tag, name := argv[2], argv[3]
	s := n.snapshot(name)
	what := "cannot release hold from snapshot '" + name + "'"
	if !n.openZFS() {
		what = "cannot release '" + tag + "' from '" + name + "'"
	}
	if s == nil {
		return cmdErr(argv, 1, "%s: dataset does not exist", what)
	}
	if _, ok := s.holds[tag]; !ok {
		return cmdErr(argv, 1, "%s: no such tag on this dataset", what)
	}
	delete(s.holds, tag)
	if s.deferDestroy && len(s.holds) == 0 && len(s.clones) == 0 {
		removeSnapshot(s)
	}
	return nil
}

func (n *Node) holds(argv []string) (string, error) {
	if !n.openZFS() {
		// zfs-fuse's `zfs holds` fails, exit 255, without a word on
		// stderr (testdata err-holds-broken.txt).
		return "", &zfsexec.CommandError{Argv: argv, ExitCode: 255}
	}
	if len(argv) != 4 || argv[2] != "-H" {
		return "", &NotModelledError{Argv: argv}
	}
	s := n.snapshot(argv[3])
	if s == nil {
		return "", notExist(argv, argv[3])
	}
	tags := make([]string, 0, len(s.holds))
	for t := range s.holds {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	var b strings.Builder
	for _, t := range tags {
		b.WriteString(s.fullName() + "\t" + t + "\t" + s.holds[t].Format("Mon Jan _2 15:04 2006") + "\n")
	}
	return b.String(), nil
}

func (n *Node) bookmarkCmd(argv []string) error {
	if !n.openZFS() {
		return cmdErr(argv, 2, "unrecognized command 'bookmark'\nusage: zfs command args ...")
	}
	if len(argv) != 4 {
		return &NotModelledError{Argv: argv}
	}
	src, name := argv[2], argv[3]
	bfs, short, ok := strings.Cut(name, "#")
	if !ok || short == "" {
		return cmdErr(argv, 1, "cannot create bookmark '%s': invalid bookmark name", name)
	}
	var from *bookmark
	if s := n.snapshot(src); s != nil {
		from = &bookmark{fs: s.fs, guid: s.guid, createtxg: s.createtxg, creation: s.creation, files: s.files}
	} else if b := n.bookmarkNamed(src); b != nil {
		from = b
	} else {
		return cmdErr(argv, 2, "cannot open '%s': dataset does not exist\nusage:\n\tbookmark <snapshot|bookmark> <newbookmark>", src)
	}
	if from.fs.name != bfs {
		return cmdErr(argv, 1, "cannot create bookmark '%s': source is not an ancestor of the new bookmark's dataset", name)
	}
	if n.bookmarkNamed(name) != nil {
		return cmdErr(argv, 1, "cannot create bookmark '%s': bookmark exists", name)
	}
	d := from.fs
	d.bookmarks = append(d.bookmarks, &bookmark{fs: d, name: short, guid: from.guid, createtxg: from.createtxg, creation: from.creation, files: from.files})
	return nil
}

func (n *Node) rename(argv []string) error {
	if len(argv) != 4 || strings.HasPrefix(argv[2], "-") || strings.ContainsAny(argv[2]+argv[3], "@#") {
		return &NotModelledError{Argv: argv}
	}
	src, dst := argv[2], argv[3]
	d := n.ds[src]
	if d == nil {
		return notExist(argv, src)
	}
	if parentOf(src) == "" {
		return cmdErr(argv, 1, "cannot rename '%s': operation not supported for pools", src)
	}
	if n.ds[dst] != nil {
		return cmdErr(argv, 1, "cannot rename '%s': dataset already exists", src)
	}
	if strings.SplitN(src, "/", 2)[0] != strings.SplitN(dst, "/", 2)[0] {
		return cmdErr(argv, 1, "cannot rename to '%s': datasets must be within same pool", dst)
	}
	if strings.HasPrefix(dst, src+"/") {
		return cmdErr(argv, 1, "cannot rename to '%s': New dataset name cannot be a descendant of current dataset name", dst)
	}
	if p := n.ds[parentOf(dst)]; p == nil {
		return cmdErr(argv, 1, "cannot rename to '%s': parent does not exist", dst)
	}
	if !n.openZFS() && d.mounted {
		// zfs-fuse renames only unmounted filesystems
		// (testdata err-rename-mounted-busy.txt).
		return cmdErr(argv, 1, "cannot rename '%s': dataset is busy", src)
	}
	var moved []*dataset
	for name, x := range n.ds {
		if name == src || strings.HasPrefix(name, src+"/") {
			moved = append(moved, x)
		}
	}
	for _, x := range moved {
		delete(n.ds, x.name)
	}
	for _, x := range moved {
		x.name = dst + strings.TrimPrefix(x.name, src)
		n.ds[x.name] = x
	}
	return nil
}

func (n *Node) mount(argv []string) error {
	if len(argv) != 3 || strings.HasPrefix(argv[2], "-") {
		return &NotModelledError{Argv: argv}
	}
	name := argv[2]
	d := n.ds[name]
	switch {
	case d == nil:
		return notExist(argv, name)
	case d.typ != zfsexec.TypeFilesystem:
		return cmdErr(argv, 1, "cannot open '%s': operation not applicable to datasets of this type", name)
	case d.partial != nil && d.partial.created:
		return cmdErr(argv, 1, "cannot mount '%s': Input/output error", name)
	case d.mounted:
		return cmdErr(argv, 1, "cannot mount '%s': filesystem already mounted", name)
	case d.local["canmount"] == "off" || d.local["canmount"] == "" && d.received["canmount"] == "off":
		return cmdErr(argv, 1, "cannot mount '%s': 'canmount' property is set to 'off'", name)
	}
	d.mounted = true
	return nil
}

func (n *Node) umount(argv []string) error {
	if len(argv) != 3 || strings.HasPrefix(argv[2], "-") {
		return &NotModelledError{Argv: argv}
	}
	name := argv[2]
	d := n.ds[name]
	switch {
	case d == nil:
		return notExist(argv, name)
	case !d.mounted:
		return cmdErr(argv, 1, "cannot unmount '%s': not currently mounted", name)
	}
	d.mounted = false
	return nil
}

func (n *Node) rollback(argv []string) error {
	args := argv[2:]
	recursive := false
	if len(args) == 2 && args[0] == "-r" {
		recursive = true
		args = args[1:]
	}
	if len(args) != 1 || !strings.Contains(args[0], "@") {
		return &NotModelledError{Argv: argv}
	}
	s := n.snapshot(args[0])
	if s == nil {
		return notExist(argv, args[0])
	}
	d := s.fs
	var newer []string
	var newerSnaps []*snapshot
	var newerBms []*bookmark
	for _, x := range d.snaps {
		if x.createtxg > s.createtxg {
			newer = append(newer, x.fullName())
			newerSnaps = append(newerSnaps, x)
		}
	}
	if n.openZFS() {
		for _, b := range d.bookmarks {
			if b.createtxg > s.createtxg {
				newer = append(newer, b.fullName())
				newerBms = append(newerBms, b)
			}
		}
	}
	if len(newer) > 0 && !recursive {
		if n.openZFS() {
			return cmdErr(argv, 1, "cannot rollback to '%s': more recent snapshots or bookmarks exist\nuse '-r' to force deletion of the following snapshots and bookmarks:\n%s", args[0], strings.Join(newer, "\n"))
		}
		return cmdErr(argv, 1, "cannot rollback to '%s': more recent snapshots exist\nuse '-r' to force deletion of the following snapshots:\n%s", args[0], strings.Join(newer, "\n"))
	}
	for _, x := range newerSnaps {
		if len(x.holds) > 0 {
			return cmdErr(argv, 1, "cannot destroy '%s': dataset is busy", x.fullName())
		}
		if len(x.clones) > 0 {
			return n.errClones(argv, x)
		}
	}
	for _, x := range newerSnaps {
		removeSnapshot(x)
	}
	d.bookmarks = slices.DeleteFunc(d.bookmarks, func(b *bookmark) bool { return slices.Contains(newerBms, b) })
	d.files = copyFiles(s.files)
	d.written = 0
	return nil
}

func (n *Node) clone(argv []string) error {
	// zfs clone [-p] [-o k=v]... SNAPSHOT TARGET
	args := argv[2:]
	parents := false
	var kvs []string
	for len(args) > 2 {
		switch {
		case args[0] == "-p":
			parents = true
			args = args[1:]
		case args[0] == "-o":
			kvs = append(kvs, args[1])
			args = args[2:]
		default:
			return &NotModelledError{Argv: argv}
		}
	}
	if len(args) != 2 || !strings.Contains(args[0], "@") || strings.ContainsAny(args[1], "@#") {
		return &NotModelledError{Argv: argv}
	}
	snapName, target := args[0], args[1]
	s := n.snapshot(snapName)
	if s == nil {
		return notExist(argv, snapName)
	}
	if n.ds[target] != nil {
		return cmdErr(argv, 1, "cannot create '%s': dataset already exists", target)
	}
	if n.ds[parentOf(target)] == nil {
		if parents {
			return &NotModelledError{Argv: argv}
		}
		return cmdErr(argv, 1, "cannot create '%s': parent does not exist", target)
	}
	if parentOf(target) == "" || strings.SplitN(target, "/", 2)[0] != strings.SplitN(snapName, "/", 2)[0] {
		return cmdErr(argv, 1, "cannot create '%s': source and target pools differ", target)
	}
	d := n.newDataset(target, s.fs.typ)
	d.files = copyFiles(s.files)
	d.origin = s
	d.volsize = s.fs.volsize
	o := object{name: target, typ: d.typ, ds: d}
	for _, kv := range kvs {
		if err := n.setProp(argv, o, kv, "local"); err != nil {
			return err
		}
	}
	n.ds[target] = d
	// OpenZFS mounts a new clone unless canmount says not to; zfs-fuse
	// mounts it even with canmount=noauto (testdata/zfs-fuse-0.7/README.md).
	cm := d.local["canmount"]
	d.mounted = d.typ == zfsexec.TypeFilesystem && cm != "off" && (cm != "noauto" || !n.openZFS())
	s.clones = append(s.clones, d)
	return nil
}

// promote models `zfs promote CLONE`: the clone takes over its origin
// snapshot and every older snapshot of the origin's filesystem (with
// their GUIDs, holds and properties), and takes over that filesystem's
// own origin; the former origin filesystem becomes a clone of the
// promoted one's (moved) origin snapshot. Files stay where they are.
func (n *Node) promote(argv []string) error {
	if len(argv) != 3 || strings.HasPrefix(argv[2], "-") {
		return &NotModelledError{Argv: argv}
	}
	name := argv[2]
	if strings.ContainsAny(name, "@#") {
		if _, ok := n.lookup(name); !ok {
			return notExist(argv, name)
		}
		return cmdErr(argv, 1, "cannot open '%s': operation not applicable to datasets of this type", name)
	}
	c := n.ds[name]
	switch {
	case c == nil:
		return notExist(argv, name)
	case c.origin == nil:
		return cmdErr(argv, 1, "cannot promote '%s': not a cloned filesystem", name)
	}
	o := c.origin
	f := o.fs
	var moved, kept []*snapshot
	for _, x := range f.snaps {
		if x.createtxg <= o.createtxg {
			moved = append(moved, x)
		} else {
			kept = append(kept, x)
		}
	}
	for _, x := range moved {
		for _, y := range c.snaps {
			if x.name == y.name {
				return cmdErr(argv, 1, "cannot promote '%s': conflicting snapshot '%s' from parent '%s'", name, x.name, o.fullName())
			}
		}
	}
	for _, x := range moved {
		x.fs = c
	}
	c.snaps = append(moved, c.snaps...)
	f.snaps = kept
	// The origin chain: c takes f's origin, f hangs off o (now c's).
	if f.origin != nil {
		f.origin.clones = replaceDataset(f.origin.clones, f, c)
	}
	c.origin, f.origin = f.origin, o
	o.clones = replaceDataset(o.clones, c, f)
	return nil
}

// replaceDataset returns list with old replaced by new.
func replaceDataset(list []*dataset, old, new *dataset) []*dataset {
	out := make([]*dataset, 0, len(list))
	for _, d := range list {
		if d == old {
			d = new
		}
		out = append(out, d)
	}
	return out
}

// inherit models `zfs inherit PROP NAME` (no -r, no -S): the local value
// goes, and the received one is hidden too, as OpenZFS does without -S;
// the property is then inherited from a parent, or default.
func (n *Node) inherit(argv []string) error {
	if len(argv) != 4 || strings.HasPrefix(argv[2], "-") || strings.HasPrefix(argv[3], "-") {
		return &NotModelledError{Argv: argv}
	}
	prop, name := argv[2], argv[3]
	if !n.knownProp(prop) {
		return cmdErr(argv, 2, "invalid property '%s'", prop)
	}
	o, ok := n.lookup(name)
	if !ok {
		return notExist(argv, name)
	}
	switch {
	case prop == "canmount":
		return cmdErr(argv, 1, "'canmount' property cannot be inherited")
	case !strings.Contains(prop, ":") && prop != "readonly":
		return &NotModelledError{Argv: argv}
	}
	switch {
	case o.snap != nil && strings.Contains(prop, ":"):
		delete(o.snap.local, prop)
		delete(o.snap.received, prop)
	case o.ds != nil:
		delete(o.ds.local, prop)
		delete(o.ds.received, prop)
	default:
		return cmdErr(argv, 1, "'%s' property cannot be inherited", prop)
	}
	return nil
}
