package fakezfs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/z8r-project/z8r/zfsexec"
)

// object is anything `zfs get` reports on.
type object struct {
	name string
	typ  zfsexec.Type
	ds   *dataset
	snap *snapshot
	bm   *bookmark
}

// nativeProps are the native properties the fake reports. Others are
// refused as zfs refuses an unknown property.
var nativeProps = map[string]bool{
	"type": true, "name": true, "guid": true, "createtxg": true, "creation": true,
	"userrefs": true, "readonly": true, "mountpoint": true, "mounted": true,
	"canmount": true, "defer_destroy": true, "origin": true, "used": true,
	"referenced": true, "volsize": true,
	// OpenZFS only (see knownProp). The fake has no encryption: every
	// dataset's is off.
	"receive_resume_token": true, "written": true, "encryption": true, "keystatus": true,
}

// knownProp reports whether this node's ZFS has property p.
func (n *Node) knownProp(p string) bool {
	if strings.Contains(p, ":") {
		return true
	}
	if (p == "receive_resume_token" || p == "written" || p == "encryption" || p == "keystatus") && !n.openZFS() {
		return false
	}
	return nativeProps[p]
}

// lookup finds a filesystem, volume, snapshot or bookmark by name.
func (n *Node) lookup(name string) (object, bool) {
	switch {
	case strings.Contains(name, "@"):
		if s := n.snapshot(name); s != nil {
			return object{name: name, typ: zfsexec.TypeSnapshot, snap: s}, true
		}
	case strings.Contains(name, "#"):
		if b := n.bookmarkNamed(name); b != nil {
			return object{name: name, typ: zfsexec.TypeBookmark, bm: b}, true
		}
	default:
		if d := n.ds[name]; d != nil {
			return object{name: name, typ: d.typ, ds: d}, true
		}
	}
	return object{}, false
}

// userProp returns the value and source of user property p on o, with
// inheritance from parents (and from a snapshot's filesystem).
func (n *Node) userProp(o object, p string) (string, string) {
	switch {
	case o.bm != nil:
		return "-", "-"
	case o.snap != nil:
		if v, ok := o.snap.local[p]; ok {
			return v, "local"
		}
		if v, ok := o.snap.received[p]; ok {
			return v, "received"
		}
		if v, src, ok := n.inheritedUser(o.snap.fs.name, p); ok {
			return v, src
		}
		return "-", "-"
	}
	if v, ok := o.ds.local[p]; ok {
		return v, "local"
	}
	if v, ok := o.ds.received[p]; ok {
		return v, "received"
	}
	if v, src, ok := n.inheritedUser(parentOf(o.ds.name), p); ok {
		return v, src
	}
	return "-", "-"
}

// inheritedUser looks for p on name and its ancestors.
func (n *Node) inheritedUser(name, p string) (string, string, bool) {
	for ; name != ""; name = parentOf(name) {
		d := n.ds[name]
		if d == nil {
			break
		}
		if v, ok := d.local[p]; ok {
			return v, "inherited from " + name, true
		}
		if v, ok := d.received[p]; ok {
			return v, "inherited from " + name, true
		}
	}
	return "", "", false
}

// effectiveNative returns the value of an inheritable native property on a
// dataset (readonly).
func (n *Node) effectiveNative(d *dataset, p string) string {
	v, _ := n.inheritableNative(d, p, "off")
	return v
}

func (n *Node) inheritableNative(d *dataset, p, def string) (string, string) {
	if v, ok := d.local[p]; ok {
		return v, "local"
	}
	if v, ok := d.received[p]; ok {
		return v, "received"
	}
	for name := parentOf(d.name); name != ""; name = parentOf(name) {
		pd := n.ds[name]
		if pd == nil {
			break
		}
		if v, ok := pd.local[p]; ok {
			return v, "inherited from " + name
		}
		if v, ok := pd.received[p]; ok {
			return v, "inherited from " + name
		}
	}
	return def, "default"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// prop returns the value and source of property p on o, as `zfs get -p`.
func (n *Node) prop(o object, p string) (string, string) {
	if strings.Contains(p, ":") {
		return n.userProp(o, p)
	}
	var guid, txg uint64
	var creation int64
	switch {
	case o.ds != nil:
		guid, txg, creation = o.ds.guid, o.ds.createtxg, o.ds.creation.Unix()
	case o.snap != nil:
		guid, txg, creation = o.snap.guid, o.snap.createtxg, o.snap.creation.Unix()
	case o.bm != nil:
		guid, txg, creation = o.bm.guid, o.bm.createtxg, o.bm.creation.Unix()
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	fsOnly := o.ds != nil && o.ds.typ == zfsexec.TypeFilesystem
	switch p {
	case "type":
		return string(o.typ), "-"
	case "name":
		return o.name, "-"
	case "guid":
		return u(guid), "-"
	case "createtxg":
		return u(txg), "-"
	case "creation":
		return strconv.FormatInt(creation, 10), "-"
	case "userrefs":
		if o.snap != nil {
			return u(uint64(len(o.snap.holds))), "-"
		}
	case "defer_destroy":
		if o.snap != nil {
			return onOff(o.snap.deferDestroy), "-"
		}
	case "readonly":
		if o.ds != nil {
			return n.inheritableNative(o.ds, "readonly", "off")
		}
	case "mountpoint":
		if fsOnly {
			return o.ds.mountpoint(n.root), "default"
		}
	case "mounted":
		if fsOnly {
			return yesNo(o.ds.mounted), "-"
		}
	case "canmount":
		if fsOnly {
			if v, ok := o.ds.local["canmount"]; ok {
				return v, "local"
			}
			if v, ok := o.ds.received["canmount"]; ok {
				return v, "received"
			}
			return "on", "default"
		}
	case "origin":
		if o.ds != nil && o.ds.origin != nil {
			return o.ds.origin.fullName(), "-"
		}
	case "used", "referenced":
		switch {
		case o.ds != nil:
			return strconv.FormatInt(o.ds.size()+4096, 10), "-"
		case o.snap != nil:
			var s int64
			for _, f := range o.snap.files {
				s += int64(len(f))
			}
			return strconv.FormatInt(s+4096, 10), "-"
		}
	case "volsize":
		if o.ds != nil && o.ds.typ == zfsexec.TypeVolume {
			return strconv.FormatInt(o.ds.volsize, 10), "local"
		}
	case "receive_resume_token":
		if o.ds != nil && o.ds.partial != nil {
			return o.ds.partial.token, "-"
		}
	case "written":
		if o.ds != nil {
			return strconv.FormatInt(o.ds.written, 10), "-"
		}
	case "encryption":
		if o.ds != nil || o.snap != nil {
			return "off", "default"
		}
	}
	return "-", "-"
}

// get models `zfs get [-H] [-p] [-r|-d N] [-t types] [-o fields] PROPS NAME...`.
func (n *Node) get(argv []string) (string, error) {
	args := argv[2:]
	depth := 0
	types := map[zfsexec.Type]bool{zfsexec.TypeFilesystem: true, zfsexec.TypeVolume: true, zfsexec.TypeSnapshot: true, zfsexec.TypeBookmark: true}
	fields := []string{"name", "property", "value", "source"}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-H", "-p":
			args = args[1:]
		case "-r":
			depth = -1
			args = args[1:]
		case "-d", "-t", "-o":
			if len(args) < 2 {
				return "", &NotModelledError{Argv: argv}
			}
			switch args[0] {
			case "-d":
				d, err := strconv.Atoi(args[1])
				if err != nil || d < 0 {
					return "", cmdErr(argv, 2, "invalid depth '%s'", args[1])
				}
				depth = d
			case "-t":
				types = map[zfsexec.Type]bool{}
				for _, t := range strings.Split(args[1], ",") {
					tt := zfsexec.Type(t)
					switch {
					case tt == zfsexec.TypeBookmark && !n.openZFS():
						return "", cmdErr(argv, 2, "invalid type '%s'", t)
					case tt == zfsexec.TypeFilesystem, tt == zfsexec.TypeVolume, tt == zfsexec.TypeSnapshot, tt == zfsexec.TypeBookmark:
						types[tt] = true
					case t == "all":
						for _, x := range []zfsexec.Type{zfsexec.TypeFilesystem, zfsexec.TypeVolume, zfsexec.TypeSnapshot, zfsexec.TypeBookmark} {
							types[x] = true
						}
					default:
						return "", cmdErr(argv, 2, "invalid type '%s'", t)
					}
				}
			case "-o":
				fields = strings.Split(args[1], ",")
				for _, f := range fields {
					switch f {
					case "name", "property", "value", "source":
					default:
						return "", cmdErr(argv, 2, "invalid field '%s'", f)
					}
				}
			}
			args = args[2:]
		default:
			return "", &NotModelledError{Argv: argv}
		}
	}
	if len(args) < 2 {
		return "", cmdErr(argv, 2, "missing property argument\nusage:\n\tget [-rHp] [-d max] [-o \"all\" | field[,...]] [-t type[,...]] [-s source[,...]] <\"all\" | property[,...]> [filesystem|volume|snapshot|bookmark] ...")
	}
	props := strings.Split(args[0], ",")
	for _, p := range props {
		if !n.knownProp(p) {
			return "", cmdErr(argv, 2, "bad property list: invalid property '%s'", p)
		}
	}
	var b strings.Builder
	for _, name := range args[1:] {
		o, ok := n.lookup(name)
		if !ok {
			if strings.Contains(name, "#") {
				return "", cmdErr(argv, 1, "cannot open '%s': no such pool or dataset", name)
			}
			return "", cmdErr(argv, 1, "cannot open '%s': dataset does not exist", name)
		}
		for _, obj := range n.walk(o, depth) {
			if !types[obj.typ] && obj.name != name {
				continue
			}
			for _, p := range props {
				v, src := n.prop(obj, p)
				row := make([]string, 0, 4)
				for _, f := range fields {
					switch f {
					case "name":
						row = append(row, obj.name)
					case "property":
						row = append(row, p)
					case "value":
						row = append(row, v)
					case "source":
						row = append(row, src)
					}
				}
				b.WriteString(strings.Join(row, "\t") + "\n")
			}
		}
	}
	return b.String(), nil
}

// walk returns o and, to depth (-1: all), its snapshots, bookmarks and
// descendants, in the order zfs prints them.
func (n *Node) walk(o object, depth int) []object {
	out := []object{o}
	if o.ds == nil || depth == 0 {
		return out
	}
	d := o.ds
	for _, s := range d.snaps {
		out = append(out, object{name: s.fullName(), typ: zfsexec.TypeSnapshot, snap: s})
	}
	for _, bm := range d.bookmarks {
		out = append(out, object{name: bm.fullName(), typ: zfsexec.TypeBookmark, bm: bm})
	}
	next := depth - 1
	if depth < 0 {
		next = -1
	}
	for _, c := range n.children(d) {
		out = append(out, n.walk(object{name: c.name, typ: c.typ, ds: c}, next)...)
	}
	return out
}

// setProp applies k=v to o as `zfs set` does.
func (n *Node) setProp(argv []string, o object, kv string, source string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return cmdErr(argv, 2, "missing '=' for property argument")
	}
	if strings.Contains(k, ":") {
		switch {
		case o.snap != nil:
			o.snap.local[k] = v
		case o.ds != nil:
			o.ds.local[k] = v
		default:
			return cmdErr(argv, 1, "cannot set property for '%s': operation not applicable to datasets of this type", o.name)
		}
		return nil
	}
	if !n.knownProp(k) {
		return cmdErr(argv, 2, "cannot set property for '%s': invalid property '%s'", o.name, k)
	}
	if o.snap != nil || o.bm != nil {
		return cmdErr(argv, 1, "cannot set property for '%s': this property can not be modified for snapshots", o.name)
	}
	var allowed []string
	switch k {
	case "readonly":
		allowed = []string{"on", "off"}
	case "canmount":
		if o.ds.typ != zfsexec.TypeFilesystem {
			return cmdErr(argv, 1, "cannot set property for '%s': 'canmount' does not apply to datasets of this type", o.name)
		}
		allowed = []string{"on", "off", "noauto"}
	default:
		// mountpoint, volsize and the read-only statistics are not
		// modelled as settable.
		return &NotModelledError{Argv: argv}
	}
	valid := false
	for _, a := range allowed {
		valid = valid || a == v
	}
	if !valid {
		return cmdErr(argv, 1, "cannot set property for '%s': '%s' must be one of '%s'", o.name, k, strings.Join(allowed, " | "))
	}
	if source == "received" {
		o.ds.received[k] = v
	} else {
		o.ds.local[k] = v
	}
	return nil
}

// parseKV splits one k=v assignment.
func parseKV(kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("missing '=' for property argument")
	}
	return k, v, nil
}
