package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// fuzzPools are the pools FuzzPolicyCheck's policy allows.
var fuzzPools = []string{"tank", "backup"}

// fuzzArgvSep joins an argv into the one string FuzzPolicyCheck mutates. A
// NUL never reaches Check: decodeRunRequest refuses it.
const fuzzArgvSep = "\x00"

// fuzzFlags are the options each accepted subcommand may carry, checked
// independently of allow.go's parsers. Anything else starting with '-'
// (-r, -R, -f, -p on send, -I, -x, -d/-e on recv...) must have been
// refused.
var fuzzFlags = map[string][]string{
	"get":      {"-H", "-p", "-r", "-d", "-t", "-o"},
	"create":   {"-p", "-o"},
	"snapshot": {"-o"},
	"destroy":  {"-d"},
	"holds":    {"-H"},
	"send":     {"-w", "-c", "-L", "-i", "-t"},
	"recv":     {"-u", "-F", "-s", "-o", "-A"},
	"clone":    {"-o"},
}

// fuzzPoolOf is the pool part of a ZFS name, worked out here rather than
// with allow.go's helper.
func fuzzPoolOf(name string) string {
	end := len(name)
	for _, sep := range []string{"/", "@", "#"} {
		if i := strings.Index(name, sep); i >= 0 && i < end {
			end = i
		}
	}
	return name[:end]
}

// fuzzCheckName fails t unless name is a valid ZFS name inside fuzzPools
// that cannot be read as an option.
func fuzzCheckName(t *testing.T, argv []string, name string) {
	t.Helper()
	if strings.HasPrefix(name, "-") {
		t.Fatalf("accepted %q: name argument %q starts with '-'", argv, name)
	}
	var err error
	switch {
	case strings.Contains(name, "@"):
		err = zfsexec.ValidateSnapshot(name)
	case strings.Contains(name, "#"):
		err = zfsexec.ValidateBookmark(name)
	default:
		err = zfsexec.ValidateDataset(name)
	}
	if err != nil {
		t.Fatalf("accepted %q: name argument %q is invalid: %v", argv, name, err)
	}
	if !slices.Contains(fuzzPools, fuzzPoolOf(name)) {
		t.Fatalf("accepted %q: %q is outside pools %q", argv, name, fuzzPools)
	}
}

// fuzzCheckKV fails t unless kv is an assignment z8r makes with zfs sub:
// one of its user properties (not through recv) or readonly=on /
// canmount=noauto, and with zfs set also readonly=off / canmount=on.
func fuzzCheckKV(t *testing.T, argv []string, kv string, sub string) {
	t.Helper()
	k, v, ok := strings.Cut(kv, "=")
	switch {
	case !ok:
		t.Fatalf("accepted %q: property argument %q has no '='", argv, kv)
	case strings.HasPrefix(k, "z8r.dev:") && len(k) > len("z8r.dev:") && sub != "recv":
	case k == "readonly" && v == "on", k == "canmount" && v == "noauto":
	case sub == "set" && (k == "readonly" && v == "off" || k == "canmount" && v == "on"):
	default:
		t.Fatalf("accepted %q: property assignment %q is outside the allowed set", argv, kv)
	}
}

// FuzzPolicyCheck: the agent's whole exec surface, Policy.Check, over
// arbitrary argvs (arguments joined by NUL). It never panics and is
// deterministic; an accepted argv runs zfs (or exactly `zpool upgrade -v`),
// a known subcommand with only its known options, every name argument
// valid, not starting with '-' and inside the allowed pools, every
// property assignment inside the allowed set and no '=' anywhere else,
// never destroys a filesystem, always receives unmounted, holds/releases
// only z8r's tags, renames only aside to <FS>-z8r-diverged-<time> or
// <FS>-z8r-tail-<time>, makes only filesystems writable, and inherits only
// z8r's user properties.
func FuzzPolicyCheck(f *testing.F) {
	long := "tank/" + strings.Repeat("a", 300)
	for _, argv := range [][]string{
		// allow_test.go's table, accepted and refused.
		{"zfs", "version"},
		{"zpool", "upgrade", "-v"},
		{"zfs", "get", "-H", "-p", "-d", "1", "-o", "name,property,value,source", "type,guid,z8r.dev:owner", "tank/a"},
		{"zfs", "get", "-H", "-p", "-r", "-t", "filesystem,snapshot", "-o", "name,property,value,source", "guid", "backup"},
		{"zfs", "snapshot", "-o", "z8r.dev:owner=z8r", "tank/a@s1"},
		{"zfs", "destroy", "-d", "tank/a@s1"},
		{"zfs", "destroy", "tank/a@s1"},
		{"zfs", "destroy", "tank/a#z8r-base-x:s1"},
		{"zfs", "bookmark", "tank/a@s1", "tank/a#z8r-base-x:s1"},
		{"zfs", "hold", "z8r-base-x", "tank/a@s1"},
		{"zfs", "holds", "-H", "tank/a@s1"},
		{"zfs", "send", "-i", "tank/a@s1", "tank/a@s2"},
		{"zfs", "send", "-i", "tank/a#z8r-base-x:s1", "tank/a@s2"},
		{"zfs", "send", "-w", "-c", "-L", "tank/a@s2"},
		{"zfs", "send", "-t", craftToken("backup/a@s1")},
		{"zfs", "send", "-t", craftToken("vault/a@s1")},
		{"zfs", "send", "-t", "1-abc-def-00"},
		{"zfs", "recv", "-u", "-s", "-o", "readonly=on", "backup/a"},
		{"zfs", "recv", "-u", "-F", "-o", "canmount=noauto", "backup/a"},
		{"zfs", "recv", "-u", "backup/a"},
		{"zfs", "recv", "-A", "backup/a"},
		{"zfs", "create", "-p", "backup/a"},
		{"zfs", "create", "-p", "-o", "readonly=on", "-o", "z8r.dev:replica-of=n1/tank/a", "backup/a"},
		{"zfs", "set", "readonly=on", "backup/a"},
		{"zfs", "set", "canmount=noauto", "backup/a"},
		{"zfs", "set", "z8r.dev:replica-of=n1/tank/a", "backup/a"},
		{"zfs", "set", "z8r.dev:owner=z8r", "backup/a@s1"},
		{"zfs", "release", "z8r-step-x", "tank/a@s1"},
		{"zfs", "release", "z8r-last-x", "backup/a@s1"},
		{"zfs", "rename", "backup/a", "backup/a-z8r-diverged-20261130T091500Z"},
		{"zfs", "umount", "backup/a"},
		{"zfs", "set", "readonly=off", "backup/a"},
		{"zfs", "set", "canmount=on", "backup/a"},
		{"zfs", "inherit", "z8r.dev:replica-of", "backup/a"},
		{"zfs", "mount", "backup/a"},
		{"zfs", "promote", "backup/a"},
		{"zfs", "clone", "-o", "readonly=on", "-o", "z8r.dev:replica-of=n2:tank/a", "backup/a-z8r-tail-20261130T150405Z@s1", "backup/a"},
		{"zfs", "rename", "backup/a", "backup/a-z8r-tail-20261130T150405Z"},
		{"zfs", "set", "readonly=off", "backup/a@s"},
		{"zfs", "clone", "-o", "mountpoint=/etc", "tank/a@s", "tank/b"},
		{"zfs", "mount", "-a"},
		{"zfs", "inherit", "-r", "readonly", "tank/a"},
		{"sh", "-c", "id"},
		{"zfs"},
		{"zfs", "destroy", "tank/a"},
		{"zfs", "destroy", "-r", "tank/a@s"},
		{"zfs", "destroy", "-R", "tank"},
		{"zfs", "snapshot", "vault/a@s"},
		{"zfs", "snapshot", "tank/a;rm -rf /@s"},
		{"zfs", "snapshot", "tank/../etc@s"},
		{"zfs", "snapshot", "-tank@s"},
		{"zfs", "snapshot", long + "@s"},
		{"zfs", "snapshot", "-r", "tank@s"},
		{"zfs", "get", "all", "tank"},
		{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "guid", "vault"},
		{"zfs", "send", "-i", "vault/a@s1", "tank/a@s2"},
		{"zfs", "send", "-t", "-R"},
		{"zfs", "recv", "-d", "tank"},
		{"zfs", "recv", "-o", "mountpoint", "tank/a"},
		{"zfs", "recv", "-u", "-x", "mountpoint", "backup/a"},
		{"zfs", "recv", "-u", "-o", "mountpoint=/etc/cron.d", "tank/x"},
		{"zfs", "send", "-I", "tank/a@s1", "tank/a@s2"},
		{"zfs", "send", "-R", "tank@s"},
		{"zfs", "bookmark", "tank/a@s1", "tank/b#z8r-base-x:s1"},
		{"zfs", "set", "mountpoint=/etc/cron.d", "tank/x"},
		{"zfs", "set", "sharenfs=rw=@0.0.0.0/0,no_root_squash", "tank/x"},
		{"zfs", "set", "z8r.dev:=1", "tank/x"},
		{"zfs", "release", "z8r-keep", "tank/x@s"},
		{"zfs", "rollback", "-r", "backup/a@s1"},
		{"zfs", "umount", "-f", "backup/a"},
		{"zfs", "rename", "backup/a", "backup/x/a-z8r-diverged-20261130T091500Z"},
		{"zfs", "rename", "backup", "backup-z8r-diverged-20261130T091500Z"},
		{"zfs", "allow", "everyone", "destroy", "tank"},
		{"zpool", "set", "altroot=/", "tank"},
	} {
		f.Add(strings.Join(argv, fuzzArgvSep))
	}
	p := Policy{Pools: fuzzPools}
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, fuzzArgvSep)
		err := p.Check(argv)
		if again := p.Check(slices.Clone(argv)); (err == nil) != (again == nil) {
			t.Fatalf("Check(%q) is not deterministic: %v then %v", argv, err, again)
		}
		if err != nil {
			return
		}
		if argv[0] == "zpool" {
			if !slices.Equal(argv, []string{"zpool", "upgrade", "-v"}) {
				t.Fatalf("accepted zpool argv %q", argv)
			}
			return
		}
		if argv[0] != "zfs" {
			t.Fatalf("accepted program %q", argv)
		}
		sub, args := argv[1], argv[2:]
		if sub == "version" {
			if len(args) != 0 {
				t.Fatalf("accepted %q", argv)
			}
			return
		}
		if len(args) == 0 {
			t.Fatalf("accepted %q with no name", argv)
		}
		// Name positions: the last argument, both arguments of bookmark
		// and rename, and the source of an incremental send. The
		// positions taking a value: after -o (k=v, or get's columns),
		// after get's -d and -t, after send's -i and -t.
		names := map[int]bool{len(args) - 1: true}
		kvs := map[int]bool{}
		values := map[int]bool{}
		if sub == "set" {
			kvs[0] = true
		}
		if sub == "hold" || sub == "release" {
			values[0] = true
			if !snapname.IsZ8RHoldTag(args[0]) {
				t.Fatalf("accepted %q: hold tag %q is not z8r's", argv, args[0])
			}
		}
		if sub == "bookmark" || sub == "rename" {
			names[0] = true
		}
		if sub == "clone" && len(args) > 1 {
			names[len(args)-2] = true
		}
		if sub == "inherit" {
			values[0] = true
			if len(args) != 2 || !strings.HasPrefix(args[0], "z8r.dev:") || len(args[0]) == len("z8r.dev:") {
				t.Fatalf("accepted %q: inherits something other than a z8r user property", argv)
			}
		}
		if sub == "get" && len(args) > 1 {
			values[len(args)-2] = true // the property list
		}
		if sub == "send" && args[0] == "-t" {
			// The token, not the argv, names what is sent.
			if len(args) != 2 {
				t.Fatalf("accepted %q", argv)
			}
			tok, derr := zfsexec.DecodeResumeToken(args[1])
			if derr != nil || strings.HasPrefix(args[1], "-") {
				t.Fatalf("accepted %q: token does not decode: %v", argv, derr)
			}
			if !strings.Contains(tok.ToName, "@") {
				t.Fatalf("accepted %q: token names %q, not a snapshot", argv, tok.ToName)
			}
			fuzzCheckName(t, argv, tok.ToName)
			return
		}
		for i := 0; i < len(args)-1; i++ {
			if names[i] || kvs[i] || values[i] {
				continue
			}
			a := args[i]
			if !slices.Contains(fuzzFlags[sub], a) {
				t.Fatalf("accepted %q: argument %q is not an option zfs %s may take", argv, a, sub)
			}
			switch {
			case a == "-o" && sub == "get":
				values[i+1] = true
			case a == "-o":
				kvs[i+1] = true
			case a == "-i":
				names[i+1] = true
			case sub == "get" && (a == "-d" || a == "-t"):
				values[i+1] = true
			}
		}
		for i, a := range args {
			switch {
			case names[i]:
				fuzzCheckName(t, argv, a)
			case kvs[i]:
				fuzzCheckKV(t, argv, a, sub)
			case strings.Contains(a, "="):
				t.Fatalf("accepted %q: '=' in non-assignment argument %q", argv, a)
			}
		}
		last := args[len(args)-1]
		switch sub {
		case "destroy":
			if !strings.ContainsAny(last, "@#") {
				t.Fatalf("accepted %q: destroys a filesystem", argv)
			}
		case "recv":
			if !slices.Contains(args, "-u") && !(len(args) == 2 && args[0] == "-A") {
				t.Fatalf("accepted %q: receives mounted", argv)
			}
		case "rename":
			aside := strings.HasPrefix(last, args[0]+snapname.DivergedInfix) || strings.HasPrefix(last, args[0]+snapname.TailInfix)
			if !aside || strings.ContainsAny(args[0], "@#") {
				t.Fatalf("accepted %q: rename is not a move aside", argv)
			}
		case "set":
			if k, v, _ := strings.Cut(args[0], "="); (k == "readonly" && v == "off" || k == "canmount" && v == "on") && strings.ContainsAny(last, "@#") {
				t.Fatalf("accepted %q: makes a non-filesystem writable", argv)
			}
		case "create", "umount", "clone", "promote", "mount":
			if strings.ContainsAny(last, "@#") {
				t.Fatalf("accepted %q on a non-filesystem", argv)
			}
		case "snapshot", "hold", "release", "holds":
			if !strings.Contains(last, "@") {
				t.Fatalf("accepted %q on a non-snapshot", argv)
			}
		}
	})
}
