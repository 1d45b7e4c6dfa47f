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

func checkKV(kv string) error {
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
	return nil
}

// Check decides whether argv is one of the ZFS command forms the agent
// runs (the forms package zfsexec builds that z8r uses) with every name
// valid and inside the allowed pools. It is the whole of the agent's exec
// surface: an argv Check does not accept never reaches a process. z8r
// never rolls back (a diverged target is moved aside), so `zfs rollback`
// is refused; `zfs rename` only moves a filesystem aside beside itself,
// and `zfs umount` is never forced.
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
			if err := checkKV(args[0]); err != nil {
				return err
			}
			return p.checkName(kindAny, args[1])
		}
	case "create":
		return p.checkFlagsThenName(args, map[string]bool{"-p": true}, true, kindDataset)
	case "snapshot":
		return p.checkFlagsThenName(args, nil, true, kindSnapshot)
	case "destroy":
		if len(args) == 2 && args[0] == "-d" {
			return p.checkName(kindSnapshot, args[1])
		}
		if len(args) == 1 {
			return p.checkName(kindSnapOrBookmark, args[0])
		}
	case "hold", "release":
		if len(args) == 2 {
			if err := zfsexec.ValidateTag(args[0]); err != nil {
				return refuse("%v", err)
			}
			return p.checkName(kindSnapshot, args[1])
		}
	case "holds":
		if len(args) == 2 && args[0] == "-H" {
			return p.checkName(kindSnapshot, args[1])
		}
	case "bookmark":
		if len(args) == 2 {
			if err := p.checkName(kindSnapshot, args[0]); err != nil {
				return err
			}
			return p.checkName(kindBookmark, args[1])
		}
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

// checkFlagsThenName accepts the given boolean flags, "-o k=v" pairs when
// withProps, then exactly one name.
func (p Policy) checkFlagsThenName(args []string, flags map[string]bool, withProps bool, kind nameKind) error {
	for len(args) > 1 {
		switch {
		case flags[args[0]]:
			args = args[1:]
		case withProps && args[0] == "-o" && len(args) > 2:
			if err := checkKV(args[1]); err != nil {
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

// checkRename accepts exactly one form: moving a filesystem aside beside
// itself, `zfs rename FS FS-z8r-diverged-<UTC time>`
// (snapname.DivergedName), which is how z8r keeps a diverged target
// instead of destroying it. No flags, no other destination.
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
	if !ok || ds != args[0] || args[1] != snapname.DivergedName(ds, t) {
		return refuse("zfs rename may only move %q aside to %q<UTC time>", args[0], args[0]+snapname.DivergedInfix)
	}
	return nil
}

func (p Policy) checkSend(args []string) error {
	if len(args) == 2 && args[0] == "-t" {
		if len(args[1]) > 16<<10 || strings.Trim(args[1], "0123456789abcdefABCDEF-") != "" || args[1][0] == '-' {
			return refuse("bad resume token")
		}
		return nil
	}
	for len(args) > 1 {
		switch args[0] {
		case "-p", "-R", "-w", "-c", "-L":
			args = args[1:]
		case "-i", "-I":
			if len(args) < 3 {
				return refuse("%s needs a source", args[0])
			}
			if err := p.checkName(kindSnapOrBookmark, args[1]); err != nil {
				return err
			}
			args = args[2:]
		default:
			return refuse("unexpected argument %q to zfs send", args[0])
		}
	}
	if len(args) != 1 {
		return refuse("zfs send needs one snapshot")
	}
	return p.checkName(kindSnapshot, args[0])
}

func (p Policy) checkRecv(args []string) error {
	if len(args) == 2 && args[0] == "-A" {
		return p.checkName(kindDataset, args[1])
	}
	for len(args) > 1 {
		switch args[0] {
		case "-u", "-F", "-s":
			args = args[1:]
		case "-o":
			if len(args) < 3 {
				return refuse("-o needs a value")
			}
			if err := checkKV(args[1]); err != nil {
				return err
			}
			args = args[2:]
		case "-x":
			if len(args) < 3 {
				return refuse("-x needs a property")
			}
			if err := checkProps(args[1]); err != nil {
				return err
			}
			args = args[2:]
		default:
			return refuse("unexpected argument %q to zfs recv", args[0])
		}
	}
	if len(args) != 1 {
		return refuse("zfs recv needs one target")
	}
	return p.checkName(kindDataset, args[0])
}
