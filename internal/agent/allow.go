package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// ErrRefused is matched by every *RefusedError: the agent would not run the
// request. Nothing was started.
var ErrRefused = errors.New("refused by the node agent")

// RefusedError says why a request was refused.
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return "refused by the node agent: " + e.Reason }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Policy is what an agent allows: the pools its requests may name.
type Policy struct {
	Pools []string
}

func (p Policy) poolAllowed(name string) bool {
	pool := name
	if i := strings.IndexAny(pool, "/@#"); i >= 0 {
		pool = pool[:i]
	}
	for _, a := range p.Pools {
		if a == pool {
			return true
		}
	}
	return false
}

// argv kinds a name argument may have.
type nameKind int

const (
	kindDataset nameKind = iota
	kindSnapshot
	kindBookmark
	kindSnapOrBookmark
	kindAny
)

func (p Policy) checkName(kind nameKind, name string) error {
	var err error
	switch kind {
	case kindDataset:
		err = zfsexec.ValidateDataset(name)
	case kindSnapshot:
		err = zfsexec.ValidateSnapshot(name)
	case kindBookmark:
		err = zfsexec.ValidateBookmark(name)
	case kindSnapOrBookmark:
		err = zfsexec.ValidateSnapshotOrBookmark(name)
	case kindAny:
		switch {
		case strings.Contains(name, "@"):
			err = zfsexec.ValidateSnapshot(name)
		case strings.Contains(name, "#"):
			err = zfsexec.ValidateBookmark(name)
		default:
			err = zfsexec.ValidateDataset(name)
		}
	}
	if err != nil {
		return refuse("%v", err)
	}
	if !p.poolAllowed(name) {
		return refuse("%q is outside the pools this agent may touch (%s)", name, strings.Join(p.Pools, ","))
	}
	return nil
}

func checkProps(list string) error {
	for _, prop := range strings.Split(list, ",") {
		if err := zfsexec.ValidateProperty(prop); err != nil {
			return refuse("%v", err)
		}
	}
	return nil
}

// userPropPrefix begins every user property z8r sets (snapname.OwnerProp,
// snapname.PolicyProp, replicate.ReplicaOfProp, volsnap.PropContent).
// User properties are only read back by z8r: ZFS gives them no effect on
// the host.
const userPropPrefix = "z8r.dev:"

// isZ8RUserProp reports whether prop is one of z8r's user properties.
func isZ8RUserProp(prop string) bool {
	return strings.HasPrefix(prop, userPropPrefix) && len(prop) > len(userPropPrefix)
}

// nativeAllowed is every native property assignment the agent runs at
// creation (zfs create -o, zfs clone -o, zfs recv -o): the ones that make a
// replica read-only and keep it from being mounted automatically. Anything
// else (mountpoint, sharenfs, sharesmb, setuid, exec, devices,
// keylocation, canmount=on, readonly=off, ...) changes what the host
// exposes and is refused.
var nativeAllowed = map[string]string{"readonly": "on", "canmount": "noauto"}

// promoteAllowed is the only other native assignment, and only in zfs set:
// making a promoted replica writable and mountable. CheckEffect admits it
// only on a filesystem carrying z8r.dev:replica-of set locally, so it can
// only undo what z8r did to its own replica.
var promoteAllowed = map[string]string{"readonly": "off", "canmount": "on"}

// propSet says which "k=v" assignments one argument position takes.
type propSet int

const (
	// propsUser: z8r's user properties only (zfs snapshot -o).
	propsUser propSet = iota
	// propsCreate: z8r's user properties and nativeAllowed (zfs create
	// -o, zfs clone -o).
	propsCreate
	// propsSet: propsCreate and promoteAllowed (zfs set).
	propsSet
	// propsRecv: nativeAllowed only (zfs recv -o).
	propsRecv
)

// checkKV checks one "k=v" assignment: well-formed, and in the set.
func checkKV(kv string, set propSet) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return refuse("property assignment %q lacks '='", kv)
	}
	if err := zfsexec.ValidateProperty(k); err != nil {
		return refuse("%v", err)
	}
	if err := zfsexec.ValidatePropertyValue(k, v); err != nil {
		return refuse("%v", err)
	}
	if isZ8RUserProp(k) {
		if set == propsRecv {
			return refuse("zfs recv -o may not set user property %q", k)
		}
		return nil
	}
	want, native := nativeAllowed[k]
	switch {
	case set == propsUser:
		return refuse("only z8r's user properties (%s*) may be set here, not %q", userPropPrefix, k)
	case !native:
		return refuse("property %q is not one z8r sets (allowed: readonly=on, canmount=noauto, %s*)", k, userPropPrefix)
	case v == want:
		return nil
	case set == propsSet && promoteAllowed[k] == v:
		return nil
	case set == propsSet:
		return refuse("zfs set may set %s only to %q or %q, not %q", k, want, promoteAllowed[k], v)
	}
	return refuse("%s may only be set to %q here, not %q", k, want, v)
}

// isPromoteKV reports whether a zfs set assignment is one of
// promoteAllowed's, which CheckEffect judges.
func isPromoteKV(kv string) bool {
	k, v, ok := strings.Cut(kv, "=")
	return ok && promoteAllowed[k] == v
}

// Check decides whether argv is one of the ZFS commands z8r's operations
// need, judged by effect, with every name valid and inside the allowed
// pools. It is the whole of the agent's exec surface: an argv Check does
// not accept never reaches a process. Accepted, and nothing else:
//   - reads: zfs version, zpool upgrade -v, zfs get -H -p ..., zfs holds -H;
//   - zfs set k=v NAME and zfs create [-p] [-o k=v]... FS: k=v only
//     readonly=on, canmount=noauto or a z8r user property (z8r.dev:*);
//     never mountpoint, sharenfs, setuid, keylocation...;
//   - zfs set readonly=off FS and zfs set canmount=on FS (a filesystem,
//     not a snapshot): making a promoted replica writable and mountable;
//   - zfs clone [-o k=v]... SNAP FS: k=v as for zfs create; zfs promote
//     FS; zfs mount FS (no options, never -a); zfs inherit z8r.dev:NAME
//     NAME (only z8r's user properties, no -r);
//   - zfs snapshot [-o k=v]... SNAP: z8r user properties only, no -r;
//   - zfs destroy [-d] SNAP, zfs destroy BOOKMARK of z8r's form
//     (snapname.IsZ8RBookmark): never a filesystem, never -r/-R;
//   - zfs hold|release TAG SNAP and zfs bookmark SNAP BOOKMARK: only z8r's
//     hold tags (snapname.IsZ8RHoldTag) and bookmarks, on the same dataset;
//   - zfs send [-w] [-c] [-L] [-i FROM] SNAP, FROM on SNAP's dataset (no
//     -R, -p or -I: nothing beyond the one dataset, no properties), and
//     zfs send -t TOKEN only for a token that decodes
//     (zfsexec.DecodeResumeToken) to a snapshot in the allowed pools;
//   - zfs recv -u [-F] [-s] [-o readonly=on|canmount=noauto]... FS (always
//     unmounted, no -x, -d, -e) and zfs recv -A FS;
//   - zfs rename FS FS-z8r-diverged-<UTC time> and zfs rename FS
//     FS-z8r-tail-<UTC time> (moving a filesystem aside beside itself) and
//     zfs umount FS, never forced.
//
// z8r never rolls back, so zfs rollback is refused. Check judges the argv
// alone: that a destroyed snapshot is z8r's, that the target of recv -F
// is a pristine z8r replica, that what is made writable or promoted is a
// z8r replica, or that a mount lands where the admin chose, needs ZFS to
// be read first and is checked by CheckEffect.
func (p Policy) Check(argv []string) error {
	if len(argv) < 2 {
		return refuse("not a zfs command")
	}
	switch {
	case argv[0] == "zpool" && len(argv) == 3 && argv[1] == "upgrade" && argv[2] == "-v":
		return nil
	case argv[0] != "zfs":
		return refuse("program %q is not allowed", argv[0])
	}
	args := argv[2:]
	switch argv[1] {
	case "version":
		if len(args) == 0 {
			return nil
		}
	case "get":
		return p.checkGet(args)
	case "set":
		if len(args) == 2 {
			if err := checkKV(args[0], propsSet); err != nil {
				return err
			}
			if isPromoteKV(args[0]) {
				return p.checkName(kindDataset, args[1])
			}
			return p.checkName(kindAny, args[1])
		}
	case "create":
		return p.checkFlagsThenName(args, map[string]bool{"-p": true}, propsCreate, kindDataset)
	case "clone":
		return p.checkClone(args)
	case "promote", "mount":
		// zfs mount: no options (no -o, no -a): it mounts one filesystem
		// at its mountpoint property, which CheckEffect requires to be
		// inherited or default.
		if len(args) == 1 {
			return p.checkName(kindDataset, args[0])
		}
	case "inherit":
		if len(args) == 2 {
			if err := zfsexec.ValidateProperty(args[0]); err != nil {
				return refuse("%v", err)
			}
			if !isZ8RUserProp(args[0]) {
				return refuse("zfs inherit may clear only z8r's user properties (%s*), not %q", userPropPrefix, args[0])
			}
			return p.checkName(kindAny, args[1])
		}
	case "snapshot":
		return p.checkFlagsThenName(args, nil, propsUser, kindSnapshot)
	case "destroy":
		return p.checkDestroy(args)
	case "hold", "release":
		if len(args) == 2 {
			if err := checkTag(args[0]); err != nil {
				return err
			}
			return p.checkName(kindSnapshot, args[1])
		}
	case "holds":
		if len(args) == 2 && args[0] == "-H" {
			return p.checkName(kindSnapshot, args[1])
		}
	case "bookmark":
		return p.checkBookmark(args)
	case "rename":
		return p.checkRename(args)
	case "umount":
		// Never forced: a filesystem in use stays mounted. Needed before
		// a rename on zfs-fuse.
		if len(args) == 1 {
			return p.checkName(kindDataset, args[0])
		}
	case "send":
		return p.checkSend(args)
	case "recv":
		return p.checkRecv(args)
	default:
		return refuse("zfs %s is not allowed", argv[1])
	}
	return refuse("unexpected arguments to zfs %s", argv[1])
}

// checkTag accepts only the hold tags z8r places.
func checkTag(tag string) error {
	if err := zfsexec.ValidateTag(tag); err != nil {
		return refuse("%v", err)
	}
	if !snapname.IsZ8RHoldTag(tag) {
		return refuse("hold tag %q is not one of z8r's (%s*, %s*, %s*)", tag,
			snapname.HoldTagPrefix, snapname.StepHoldTagPrefix, snapname.ReplicaHoldTagPrefix)
	}
	return nil
}

// checkZ8RBookmark accepts a valid bookmark name in the allowed pools whose
// short name is of z8r's form.
func (p Policy) checkZ8RBookmark(name string) error {
	if err := p.checkName(kindBookmark, name); err != nil {
		return err
	}
	if _, short := zfsexec.SplitSnapshot(name); !snapname.IsZ8RBookmark(short) {
		return refuse("bookmark %q is not one of z8r's (<hold tag>:<snapshot>)", name)
	}
	return nil
}

// checkDestroy accepts `zfs destroy [-d] SNAP` and `zfs destroy BOOKMARK`
// (z8r's bookmarks only). Never a filesystem, never recursive.
func (p Policy) checkDestroy(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "-d":
		return p.checkName(kindSnapshot, args[1])
	case len(args) == 1 && strings.Contains(args[0], "#"):
		return p.checkZ8RBookmark(args[0])
	case len(args) == 1 && strings.Contains(args[0], "@"):
		return p.checkName(kindSnapshot, args[0])
	case len(args) == 1:
		return refuse("zfs destroy of %q refused: z8r destroys only snapshots and its own bookmarks", args[0])
	}
	return refuse("unexpected arguments to zfs destroy")
}

// checkBookmark accepts `zfs bookmark SNAP BOOKMARK`: z8r's bookmark form,
// on the snapshot's own dataset.
func (p Policy) checkBookmark(args []string) error {
	if len(args) != 2 {
		return refuse("zfs bookmark takes a snapshot and a bookmark")
	}
	if err := p.checkName(kindSnapshot, args[0]); err != nil {
		return err
	}
	if err := p.checkZ8RBookmark(args[1]); err != nil {
		return err
	}
	sfs, _ := zfsexec.SplitSnapshot(args[0])
	if bfs, _ := zfsexec.SplitSnapshot(args[1]); bfs != sfs {
		return refuse("bookmark %q is not on the snapshot's dataset %q", args[1], sfs)
	}
	return nil
}

// checkFlagsThenName accepts the given boolean flags (each once), "-o k=v"
// pairs from props, then exactly one name.
func (p Policy) checkFlagsThenName(args []string, flags map[string]bool, props propSet, kind nameKind) error {
	seen := map[string]bool{}
	for len(args) > 1 {
		switch {
		case flags[args[0]] && !seen[args[0]]:
			seen[args[0]] = true
			args = args[1:]
		case args[0] == "-o" && len(args) > 2:
			if err := checkKV(args[1], props); err != nil {
				return err
			}
			args = args[2:]
		default:
			return refuse("unexpected argument %q", args[0])
		}
	}
	if len(args) != 1 {
		return refuse("want one name")
	}
	return p.checkName(kind, args[0])
}

func (p Policy) checkGet(args []string) error {
	// zfs get -H -p [-r | -d N] [-t types] -o name,property,value,source PROPS NAME
	if len(args) < 6 || args[0] != "-H" || args[1] != "-p" {
		return refuse("zfs get must be -H -p")
	}
	args = args[2:]
	switch args[0] {
	case "-r":
		args = args[1:]
	case "-d":
		if len(args) < 2 {
			return refuse("-d needs a depth")
		}
		if n, err := strconv.Atoi(args[1]); err != nil || n < 0 || n > 64 {
			return refuse("bad depth %q", args[1])
		}
		args = args[2:]
	}
	if len(args) > 1 && args[0] == "-t" {
		for _, t := range strings.Split(args[1], ",") {
			switch t {
			case "filesystem", "volume", "snapshot", "bookmark":
			default:
				return refuse("bad type %q", t)
			}
		}
		args = args[2:]
	}
	if len(args) != 4 || args[0] != "-o" || args[1] != "name,property,value,source" {
		return refuse("zfs get must select -o name,property,value,source")
	}
	if err := checkProps(args[2]); err != nil {
		return err
	}
	return p.checkName(kindAny, args[3])
}

// checkClone accepts `zfs clone [-o k=v]... SNAP FS`: k=v as for zfs
// create (readonly=on, canmount=noauto, z8r.dev:*), SNAP and FS in the
// allowed pools, FS not a pool's root.
func (p Policy) checkClone(args []string) error {
	for len(args) > 2 {
		if args[0] != "-o" {
			return refuse("unexpected argument %q to zfs clone", args[0])
		}
		if err := checkKV(args[1], propsCreate); err != nil {
			return err
		}
		args = args[2:]
	}
	if len(args) != 2 {
		return refuse("zfs clone takes a snapshot and a filesystem")
	}
	if err := p.checkName(kindSnapshot, args[0]); err != nil {
		return err
	}
	if err := p.checkName(kindDataset, args[1]); err != nil {
		return err
	}
	if !strings.Contains(args[1], "/") {
		return refuse("a clone cannot be a pool's root dataset")
	}
	return nil
}

// checkRename accepts exactly two forms, both moving a filesystem aside
// beside itself: `zfs rename FS FS-z8r-diverged-<UTC time>`
// (snapname.DivergedName), which is how z8r keeps a diverged target
// instead of destroying it, and `zfs rename FS FS-z8r-tail-<UTC time>`
// (snapname.TailName), which is how it keeps an old source's unreplicated
// tail. No flags, no
// other destination.
func (p Policy) checkRename(args []string) error {
	if len(args) != 2 {
		return refuse("zfs rename takes exactly a source and a destination")
	}
	if err := p.checkName(kindDataset, args[0]); err != nil {
		return err
	}
	if err := p.checkName(kindDataset, args[1]); err != nil {
		return err
	}
	if !strings.Contains(args[0], "/") {
		return refuse("a pool's root dataset cannot be renamed")
	}
	ds, t, ok := snapname.ParseDivergedName(args[1])
	if ok && ds == args[0] && args[1] == snapname.DivergedName(ds, t) {
		return nil
	}
	ds, t, ok = snapname.ParseTailName(args[1])
	if ok && ds == args[0] && args[1] == snapname.TailName(ds, t) {
		return nil
	}
	return refuse("zfs rename may only move %q aside to %q<UTC time> or %q<UTC time>", args[0],
		args[0]+snapname.DivergedInfix, args[0]+snapname.TailInfix)
}

func (p Policy) checkSend(args []string) error {
	if len(args) == 2 && args[0] == "-t" {
		return p.checkResumeToken(args[1])
	}
	seen := map[string]bool{}
	from := ""
	for len(args) > 1 {
		switch a := args[0]; a {
		case "-w", "-c", "-L", "-n", "-P":
			// Encoding only (raw, compressed, large blocks): what is sent
			// and what lands on the receiver are the same. -n -P: a dry
			// run that prints the stream's size and sends nothing.
			if seen[a] {
				return refuse("%s given twice", a)
			}
			seen[a] = true
			args = args[1:]
		case "-i":
			if len(args) < 3 || from != "" {
				return refuse("-i needs one incremental source")
			}
			if err := p.checkName(kindSnapOrBookmark, args[1]); err != nil {
				return err
			}
			from = args[1]
			args = args[2:]
		default:
			// -R (descendants), -p (properties, mountpoint among them),
			// -I and anything else: z8r sends one snapshot of one dataset.
			return refuse("unexpected argument %q to zfs send", a)
		}
	}
	if len(args) != 1 {
		return refuse("zfs send needs one snapshot")
	}
	if err := p.checkName(kindSnapshot, args[0]); err != nil {
		return err
	}
	if from != "" {
		fs, _ := zfsexec.SplitSnapshot(args[0])
		if ffs, _ := zfsexec.SplitSnapshot(from); ffs != fs {
			return refuse("incremental source %q is not on %q", from, fs)
		}
	}
	return nil
}

// checkResumeToken accepts `zfs send -t TOKEN` only for a token that
// decodes to a snapshot inside the allowed pools: the token, not the argv,
// names what is sent.
func (p Policy) checkResumeToken(token string) error {
	if token == "" || token[0] == '-' {
		return refuse("bad resume token")
	}
	tok, err := zfsexec.DecodeResumeToken(token)
	if err != nil {
		return refuse("resume token: %v", err)
	}
	if err := p.checkName(kindSnapshot, tok.ToName); err != nil {
		return refuse("resume token names %q: %v", tok.ToName, err)
	}
	return nil
}

// checkRecv accepts `zfs recv -A FS` and `zfs recv -u [-F] [-s] [-o
// readonly=on|canmount=noauto]... FS`: always unmounted (-u), so a stream
// never lands mounted in the host's namespace, and without -x, -d, -e or
// -o of anything else.
func (p Policy) checkRecv(args []string) error {
	if len(args) == 2 && args[0] == "-A" {
		return p.checkName(kindDataset, args[1])
	}
	seen := map[string]bool{}
	for len(args) > 1 {
		switch a := args[0]; a {
		case "-u", "-F", "-s":
			if seen[a] {
				return refuse("%s given twice", a)
			}
			seen[a] = true
			args = args[1:]
		case "-o":
			if len(args) < 3 {
				return refuse("-o needs a value")
			}
			if err := checkKV(args[1], propsRecv); err != nil {
				return err
			}
			args = args[2:]
		default:
			return refuse("unexpected argument %q to zfs recv", a)
		}
	}
	if !seen["-u"] {
		return refuse("zfs recv must leave the filesystem unmounted (-u)")
	}
	if len(args) != 1 {
		return refuse("zfs recv needs one target")
	}
	return p.checkName(kindDataset, args[0])
}
