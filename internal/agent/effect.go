package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// The user properties CheckEffect reads. They are z8r's marks, set locally
// by z8r itself; package agent cannot import the packages that define them
// (they import agent), so effect_test.go pins them to those definitions.
const (
	// replicaOfProp is replicate.ReplicaOfProp: set locally on a target
	// filesystem z8r received into.
	replicaOfProp = "z8r.dev:replica-of"
	// contentProp is volsnap.PropContent: set locally on a snapshot z8r
	// took for a VolumeSnapshotContent (at creation) and on a replica of
	// one (after receiving it).
	contentProp = "z8r.dev:volumesnapshotcontent"
)

// CheckEffect reads ZFS, with one `zfs get` through z, to decide the
// requests whose effect depends on what they touch. Call it after
// Policy.Check accepted argv and before anything starts. It refuses
// (*RefusedError, errors.Is ErrRefused):
//   - zfs recv ... -F ... FS, unless FS does not exist or is a pristine
//     z8r replica: a filesystem with z8r.dev:replica-of set locally,
//     readonly=on, not mounted, and nothing below it (no snapshot,
//     bookmark or child). An interrupted forced full receive leaves its
//     target so (the partial state is hidden), so its resume with -F
//     passes;
//   - zfs destroy [-d] SNAP, unless SNAP does not exist (destroying it is
//     then a no-op error) or carries, set locally on itself,
//     z8r.dev:owner=z8r (snapname.IsOwned) or z8r.dev:volumesnapshotcontent
//     (any value: the VolumeSnapshot path's mark on what it takes and on
//     the replicas it marks). An inherited or received value is no mark;
//   - zfs rename FS NEW, unless FS does not exist or carries
//     z8r.dev:replica-of set locally: only replicas are moved aside (a
//     frozen old source carries the mark too, so its tail is moved aside
//     the same way);
//   - zfs set readonly=off FS and zfs set canmount=on FS, unless FS does
//     not exist or is a filesystem carrying z8r.dev:replica-of set locally
//     (non-empty): only a z8r replica being promoted is made writable or
//     mountable, never a dataset the admin made read-only;
//   - zfs promote FS, unless FS does not exist or is a clone (origin not
//     "-") carrying z8r.dev:replica-of set locally;
//   - zfs mount FS, unless FS does not exist or its mountpoint property's
//     source is "default" or "inherited from ...": it mounts only where
//     its parent says, a place the admin chose, never at a local or
//     received mountpoint.
//
// Every other argv is accepted without a read. A read that fails (the node
// busy, the pool not imported) refuses too, with the error in the reason:
// the agent fails closed.
func CheckEffect(ctx context.Context, z *zfsexec.ZFS, argv []string) error {
	if len(argv) < 3 || argv[0] != "zfs" {
		return nil
	}
	args := argv[2:]
	switch argv[1] {
	case "recv":
		if !contains(args, "-F") {
			return nil
		}
		return checkForcedRecv(ctx, z, args[len(args)-1])
	case "destroy":
		name := args[len(args)-1]
		if !strings.Contains(name, "@") {
			return nil // bookmarks: Check admits only z8r's form
		}
		return checkDestroySnapshot(ctx, z, name)
	case "rename":
		return checkRenameAside(ctx, z, args[0])
	case "set":
		if isPromoteKV(args[0]) {
			return checkMarkedReplica(ctx, z, "zfs set "+args[0], args[1], false)
		}
	case "promote":
		return checkMarkedReplica(ctx, z, "zfs promote", args[0], true)
	case "mount":
		return checkMountpoint(ctx, z, args[0])
	}
	return nil
}

// hasLocalMark reports whether p is a non-empty value set locally.
func hasLocalMark(p zfsexec.Property) bool {
	return p.Source == "local" && p.Value != "" && p.Value != "-"
}

// checkMarkedReplica admits what (zfs set readonly=off|canmount=on, zfs
// promote) only on a filesystem with z8r.dev:replica-of set locally and,
// when clone is set, an origin.
func checkMarkedReplica(ctx context.Context, z *zfsexec.ZFS, what, fs string, clone bool) error {
	rows, exists, err := readProps(ctx, z, fs, false, "type", "origin", replicaOfProp)
	if err != nil {
		return readFailed("the filesystem of "+what, fs, err)
	}
	if !exists {
		return nil
	}
	p := propsOf(rows, fs)
	switch {
	case p["type"].Value != string(zfsexec.TypeFilesystem):
		return refuse("%s on %q refused: not a filesystem (type %q)", what, fs, p["type"].Value)
	case !hasLocalMark(p[replicaOfProp]):
		return refuse("%s on %q refused: not a z8r replica (%s not set locally)", what, fs, replicaOfProp)
	case clone && (p["origin"].Value == "" || p["origin"].Value == "-"):
		return refuse("%s on %q refused: not a clone (no origin)", what, fs)
	}
	return nil
}

// checkMountpoint admits zfs mount FS only where FS's mountpoint is the
// default or inherited from its parent.
func checkMountpoint(ctx context.Context, z *zfsexec.ZFS, fs string) error {
	rows, exists, err := readProps(ctx, z, fs, false, "type", "mountpoint")
	if err != nil {
		return readFailed("the filesystem to mount", fs, err)
	}
	if !exists {
		return nil
	}
	p := propsOf(rows, fs)
	mp := p["mountpoint"]
	switch {
	case p["type"].Value != string(zfsexec.TypeFilesystem):
		return refuse("zfs mount of %q refused: not a filesystem (type %q)", fs, p["type"].Value)
	case mp.Source != "default" && !strings.HasPrefix(mp.Source, "inherited from "):
		return refuse("zfs mount of %q refused: its mountpoint %q is %s, not inherited or default", fs, mp.Value, mp.Source)
	}
	return nil
}

func contains(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// readProps runs `zfs get -H -p [-d 1] -o name,property,value,source PROPS
// NAME` on z's runner. exists is false, with no error, when NAME does not
// exist.
func readProps(ctx context.Context, z *zfsexec.ZFS, name string, below bool, props ...string) (rows []zfsexec.PropRow, exists bool, err error) {
	argv := []string{"zfs", "get", "-H", "-p"}
	if below {
		// No -t: zfs get lists filesystems, volumes, snapshots (and
		// bookmarks where there are) by default.
		argv = append(argv, "-d", "1")
	}
	argv = append(argv, "-o", "name,property,value,source", strings.Join(props, ","), name)
	var out bytes.Buffer
	if err := z.Runner().Run(ctx, zfsexec.Command{Argv: argv, Stdout: &out}); err != nil {
		if errors.Is(err, zfsexec.ErrDatasetNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	rows, err = zfsexec.ParseGet(argv, out.String())
	if err != nil {
		return nil, false, err
	}
	return rows, true, nil
}

// propsOf folds the rows of one object into a map.
func propsOf(rows []zfsexec.PropRow, name string) map[string]zfsexec.Property {
	m := map[string]zfsexec.Property{}
	for _, r := range rows {
		if r.Name == name {
			m[r.Prop] = r.Property
		}
	}
	return m
}

func readFailed(what, name string, err error) error {
	return refuse("cannot verify %s %q, refused: %v", what, name, err)
}

func checkForcedRecv(ctx context.Context, z *zfsexec.ZFS, target string) error {
	rows, exists, err := readProps(ctx, z, target, true, "type", "readonly", "mounted", replicaOfProp)
	if err != nil {
		return readFailed("the target of zfs recv -F", target, err)
	}
	if !exists {
		return nil
	}
	p := propsOf(rows, target)
	switch {
	case p["type"].Value != string(zfsexec.TypeFilesystem):
		return refuse("zfs recv -F into %q refused: not a filesystem (type %q)", target, p["type"].Value)
	case p[replicaOfProp].Source != "local" || p[replicaOfProp].Value == "" || p[replicaOfProp].Value == "-":
		return refuse("zfs recv -F into %q refused: not a z8r replica (%s not set locally)", target, replicaOfProp)
	case p["readonly"].Value != "on":
		return refuse("zfs recv -F into %q refused: readonly is %q, the replica may have been written", target, p["readonly"].Value)
	case p["mounted"].Value != "no":
		return refuse("zfs recv -F into %q refused: it is mounted", target)
	}
	for _, r := range rows {
		if r.Name != target {
			return refuse("zfs recv -F into %q refused: it is not empty (%q below it)", target, r.Name)
		}
	}
	return nil
}

func checkDestroySnapshot(ctx context.Context, z *zfsexec.ZFS, snap string) error {
	rows, exists, err := readProps(ctx, z, snap, false, "type", snapname.OwnerProp, contentProp)
	if err != nil {
		return readFailed("the snapshot to destroy", snap, err)
	}
	if !exists {
		return nil
	}
	p := propsOf(rows, snap)
	if p["type"].Value != string(zfsexec.TypeSnapshot) {
		return refuse("zfs destroy of %q refused: not a snapshot (type %q)", snap, p["type"].Value)
	}
	local := map[string]string{}
	for k, v := range p {
		if v.Source == "local" {
			local[k] = v.Value
		}
	}
	if snapname.IsOwned(local) {
		return nil
	}
	if c, ok := local[contentProp]; ok && c != "" && c != "-" {
		return nil
	}
	return refuse("zfs destroy of %q refused: z8r did not create it (neither %s=%s nor %s set locally on it)",
		snap, snapname.OwnerProp, snapname.OwnerValue, contentProp)
}

func checkRenameAside(ctx context.Context, z *zfsexec.ZFS, fs string) error {
	rows, exists, err := readProps(ctx, z, fs, false, replicaOfProp)
	if err != nil {
		return readFailed("the filesystem to move aside", fs, err)
	}
	if !exists {
		return nil
	}
	p := propsOf(rows, fs)[replicaOfProp]
	if p.Source != "local" || p.Value == "" || p.Value == "-" {
		return refuse("zfs rename of %q refused: only z8r replicas are moved aside (%s not set locally)", fs, replicaOfProp)
	}
	return nil
}
