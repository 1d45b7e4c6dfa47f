package agent

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/resumetok"
)

func TestPolicyCheck_Forms(t *testing.T) {
	p := Policy{Pools: []string{"tank", "backup"}}
	long := "tank/" + strings.Repeat("x", 300)
	cases := []struct {
		argv []string
		ok   bool
	}{
		{[]string{"zfs", "version"}, true},
		{[]string{"zpool", "upgrade", "-v"}, true},
		{[]string{"zfs", "get", "-H", "-p", "-d", "1", "-o", "name,property,value,source", "type,guid,z8r.dev:owner", "tank/a"}, true},
		{[]string{"zfs", "get", "-H", "-p", "-r", "-t", "filesystem,snapshot", "-o", "name,property,value,source", "guid", "backup"}, true},
		{[]string{"zfs", "snapshot", "-o", "z8r.dev:owner=z8r", "tank/a@s1"}, true},
		{[]string{"zfs", "destroy", "-d", "tank/a@s1"}, true},
		{[]string{"zfs", "destroy", "tank/a@s1"}, true},
		{[]string{"zfs", "destroy", "tank/a#z8r-base-x:s1"}, true},
		{[]string{"zfs", "bookmark", "tank/a@s1", "tank/a#z8r-base-x:s1"}, true},
		{[]string{"zfs", "hold", "z8r-base-x", "tank/a@s1"}, true},
		{[]string{"zfs", "send", "-i", "tank/a@s1", "tank/a@s2"}, true},
		{[]string{"zfs", "send", "-i", "tank/a#z8r-base-x:s1", "tank/a@s2"}, true},
		{[]string{"zfs", "send", "-w", "-c", "-L", "tank/a@s2"}, true},
		{[]string{"zfs", "send", "-n", "-P", "-i", "tank/a@s1", "tank/a@s2"}, true},
		{[]string{"zfs", "send", "-t", realToken(t)}, true},
		{[]string{"zfs", "recv", "-u", "-s", "-o", "readonly=on", "backup/a"}, true},
		{[]string{"zfs", "recv", "-u", "-F", "-o", "canmount=noauto", "backup/a"}, true},
		{[]string{"zfs", "recv", "-u", "backup/a"}, true},
		{[]string{"zfs", "recv", "-A", "backup/a"}, true},
		{[]string{"zfs", "create", "-p", "backup/a"}, true},
		{[]string{"zfs", "set", "readonly=on", "backup/a"}, true},
		{[]string{"zfs", "set", "canmount=noauto", "backup/a"}, true},
		{[]string{"zfs", "set", "z8r.dev:replica-of=n1/tank/a", "backup/a"}, true},
		{[]string{"zfs", "set", "z8r.dev:owner=z8r", "backup/a@s1"}, true},
		{[]string{"zfs", "release", "z8r-step-x", "tank/a@s1"}, true},
		{[]string{"zfs", "release", "z8r-last-x", "backup/a@s1"}, true},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-diverged-20261130T091500Z"}, true},
		{[]string{"zfs", "umount", "backup/a"}, true},
		// promotion and restore
		{[]string{"zfs", "set", "readonly=off", "backup/a"}, true},
		{[]string{"zfs", "set", "canmount=on", "backup/a"}, true},
		{[]string{"zfs", "inherit", "z8r.dev:replica-of", "backup/a"}, true},
		{[]string{"zfs", "inherit", "z8r.dev:owner", "backup/a@s1"}, true},
		{[]string{"zfs", "mount", "backup/a"}, true},
		{[]string{"zfs", "promote", "backup/a"}, true},
		{[]string{"zfs", "clone", "backup/a-z8r-tail-20261130T150405Z@s1", "backup/a"}, true},
		{[]string{"zfs", "clone", "-o", "readonly=on", "-o", "canmount=noauto", "-o", "z8r.dev:replica-of=n2:tank/a", "backup/a-z8r-tail-20261130T150405Z@s1", "backup/a"}, true},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-tail-20261130T150405Z"}, true},
		// refused
		{[]string{"sh", "-c", "id"}, false},
		{[]string{"zfs"}, false},
		{[]string{"zfs", "destroy", "tank/a"}, false},
		{[]string{"zfs", "destroy", "-r", "tank/a@s"}, false},
		{[]string{"zfs", "destroy", "-R", "tank"}, false},
		{[]string{"zfs", "snapshot", "vault/a@s"}, false},
		{[]string{"zfs", "snapshot", "tank/a;rm -rf /@s"}, false},
		{[]string{"zfs", "snapshot", "tank/../etc@s"}, false},
		{[]string{"zfs", "snapshot", "-tank@s"}, false},
		{[]string{"zfs", "snapshot", long + "@s"}, false},
		{[]string{"zfs", "snapshot", "-r", "tank@s"}, false},
		{[]string{"zfs", "get", "all", "tank"}, false},
		{[]string{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", "guid", "vault"}, false},
		{[]string{"zfs", "send", "-i", "vault/a@s1", "tank/a@s2"}, false},
		{[]string{"zfs", "send", "-t", "-R"}, false},
		{[]string{"zfs", "recv", "-d", "tank"}, false},
		{[]string{"zfs", "recv", "-o", "mountpoint", "tank/a"}, false},
		{[]string{"zfs", "recv", "-u", "-x", "mountpoint", "backup/a"}, false},
		{[]string{"zfs", "recv", "-u", "-u", "backup/a"}, false},
		{[]string{"zfs", "send", "-I", "tank/a@s1", "tank/a@s2"}, false},
		{[]string{"zfs", "send", "-i", "tank/b@s1", "tank/a@s2"}, false},
		{[]string{"zfs", "send", "-n", "-P", "vault/a@s2"}, false},
		{[]string{"zfs", "send", "-n", "-n", "tank/a@s2"}, false},
		{[]string{"zfs", "bookmark", "tank/a@s1", "tank/b#z8r-base-x:s1"}, false},
		{[]string{"zfs", "bookmark", "tank/a@s1", "tank/a#mine"}, false},
		{[]string{"zfs", "create", "-p", "-p", "backup/a"}, false},
		{[]string{"zfs", "set", "readonly=on\nx", "tank/a"}, false},
		{[]string{"zfs", "hold", "-r", "tank/a@s"}, false},
		// promotion near misses
		{[]string{"zfs", "set", "readonly=off", "backup/a@s1"}, false},
		{[]string{"zfs", "set", "canmount=off", "backup/a"}, false},
		{[]string{"zfs", "set", "readonly=offx", "backup/a"}, false},
		{[]string{"zfs", "set", "readonly=off", "vault/a"}, false},
		{[]string{"zfs", "create", "-o", "readonly=off", "backup/a"}, false},
		{[]string{"zfs", "create", "-o", "canmount=on", "backup/a"}, false},
		{[]string{"zfs", "recv", "-u", "-o", "canmount=on", "backup/a"}, false},
		{[]string{"zfs", "clone", "-o", "mountpoint=/etc/cron.d", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "-o", "readonly=off", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "-o", "canmount=on", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "-o", "sharenfs=on", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "-o", "com.example:x=1", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "-p", "tank/a@s", "tank/b/c"}, false},
		{[]string{"zfs", "clone", "tank/a", "tank/b"}, false},
		{[]string{"zfs", "clone", "tank/a@s", "tank/b@s"}, false},
		{[]string{"zfs", "clone", "tank/a@s", "tank"}, false},
		{[]string{"zfs", "clone", "vault/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "tank/a@s", "vault/b"}, false},
		{[]string{"zfs", "clone", "-o", "tank/a@s", "tank/b"}, false},
		{[]string{"zfs", "clone", "tank/a@s"}, false},
		{[]string{"zfs", "mount", "-o", "rw", "tank/a"}, false},
		{[]string{"zfs", "mount", "-O", "tank/a"}, false},
		{[]string{"zfs", "mount", "-a"}, false},
		{[]string{"zfs", "mount"}, false},
		{[]string{"zfs", "mount", "tank/a@s"}, false},
		{[]string{"zfs", "mount", "vault/a"}, false},
		{[]string{"zfs", "promote", "tank/a@s"}, false},
		{[]string{"zfs", "promote", "vault/a"}, false},
		{[]string{"zfs", "promote", "-f", "tank/a"}, false},
		{[]string{"zfs", "inherit", "readonly", "tank/a"}, false},
		{[]string{"zfs", "inherit", "mountpoint", "tank/a"}, false},
		{[]string{"zfs", "inherit", "-r", "z8r.dev:replica-of", "tank/a"}, false},
		{[]string{"zfs", "inherit", "-S", "z8r.dev:replica-of", "tank/a"}, false},
		{[]string{"zfs", "inherit", "z8r.dev:", "tank/a"}, false},
		{[]string{"zfs", "inherit", "com.example:x", "tank/a"}, false},
		{[]string{"zfs", "inherit", "z8r.dev:replica-of", "vault/a"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-tail-2026-11-30"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/b-z8r-tail-20261130T150405Z"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-tail-20261130T150405Z-x"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-tails-20261130T150405Z"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-tail-20261130T150405+0100"}, false},
		{[]string{"zfs", "rename", "backup/a-z8r-tail-20261130T150405Z", "backup/a"}, false},
		{[]string{"zfs", "rename", "backup", "backup-z8r-tail-20261130T150405Z"}, false},
		{[]string{"zfs", "rollback", "-r", "backup/a@s1"}, false},
		{[]string{"zfs", "rollback", "backup/a@s1"}, false},
		{[]string{"zfs", "umount", "-f", "backup/a"}, false},
		{[]string{"zfs", "umount", "-a"}, false},
		{[]string{"zfs", "umount", "vault/a"}, false},
		{[]string{"zfs", "umount", "backup/a@s"}, false},
		// rename: only moving a filesystem aside beside itself
		{[]string{"zfs", "rename", "backup/a", "backup/b"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/b-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/x/a-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "backup/a", "vault/a-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "vault/a", "vault/a-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-diverged-2026-11-30"}, false},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-diverged-20261130T091500Z-x"}, false},
		{[]string{"zfs", "rename", "backup", "backup-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "-r", "backup/a@s", "backup/a@t"}, false},
		{[]string{"zfs", "rename", "backup/a@s", "backup/a@s-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "-f", "backup/a", "backup/a-z8r-diverged-20261130T091500Z"}, false},
		{[]string{"zfs", "rename", "backup/a-z8r-diverged-20261130T091500Z", "backup/a"}, false},
		{[]string{"zfs", "allow", "everyone", "destroy", "tank"}, false},
	}
	for _, c := range cases {
		err := p.Check(c.argv)
		if (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", c.argv, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%q) error is not ErrRefused: %v", c.argv, err)
		}
	}
}

// TestPolicyCheck_AttackArgvsRefused: the argvs of issue 13 item 1, each
// accepted by the old shape-and-pool allow-list, are refused by effect.
func TestPolicyCheck_AttackArgvsRefused(t *testing.T) {
	p := Policy{Pools: []string{"tank", "backup"}}
	cases := []struct {
		name string
		argv []string
	}{
		{"SetMountpointCron", []string{"zfs", "set", "mountpoint=/etc/cron.d", "tank/x"}},
		{"SetMountpointRootOfPool", []string{"zfs", "set", "mountpoint=/", "tank"}},
		{"SetSharenfs", []string{"zfs", "set", "sharenfs=rw=@0.0.0.0/0,no_root_squash", "tank/x"}},
		{"SetSharesmb", []string{"zfs", "set", "sharesmb=on", "tank/x"}},
		{"SetSetuid", []string{"zfs", "set", "setuid=on", "tank/x"}},
		{"SetExec", []string{"zfs", "set", "exec=on", "tank/x"}},
		{"SetDevices", []string{"zfs", "set", "devices=on", "tank/x"}},
		{"SetKeylocation", []string{"zfs", "set", "keylocation=file:///etc/shadow", "tank/x"}},
		// zfs set readonly=off|canmount=on FS pass Check and are judged
		// by CheckEffect (TestCheckEffect_Rules); on snapshots, never.
		{"SetReadonlyOffSnapshot", []string{"zfs", "set", "readonly=off", "tank/x@s"}},
		{"SetCanmountOff", []string{"zfs", "set", "canmount=off", "tank/x"}},
		{"SetForeignUserProp", []string{"zfs", "set", "com.example:x=1", "tank/x"}},
		{"SetBareZ8RPrefix", []string{"zfs", "set", "z8r.dev:=1", "tank/x"}},
		{"CreateMountpoint", []string{"zfs", "create", "-o", "mountpoint=/root/.ssh", "tank/x"}},
		{"CreateParentsMountpoint", []string{"zfs", "create", "-p", "-o", "mountpoint=/root/.ssh", "tank/x/y"}},
		{"CreateSharenfs", []string{"zfs", "create", "-o", "sharenfs=on", "tank/x"}},
		{"CreateVolume", []string{"zfs", "create", "-V", "1G", "tank/x"}},
		{"SnapshotNativeProp", []string{"zfs", "snapshot", "-o", "readonly=on", "tank/x@s"}},
		{"SnapshotForeignUserProp", []string{"zfs", "snapshot", "-o", "com.example:x=1", "tank/x@s"}},
		{"RecvMountpoint", []string{"zfs", "recv", "-o", "mountpoint=/etc/cron.d", "tank/x"}},
		{"RecvMountpointUnmounted", []string{"zfs", "recv", "-u", "-o", "mountpoint=/etc/cron.d", "tank/x"}},
		{"RecvWithoutU", []string{"zfs", "recv", "tank/x"}},
		{"RecvForceWithoutU", []string{"zfs", "recv", "-F", "-s", "-o", "readonly=on", "tank/x"}},
		{"RecvReadonlyOff", []string{"zfs", "recv", "-u", "-o", "readonly=off", "tank/x"}},
		{"RecvSetuid", []string{"zfs", "recv", "-u", "-o", "setuid=on", "tank/x"}},
		{"RecvUserProp", []string{"zfs", "recv", "-u", "-o", "z8r.dev:owner=z8r", "tank/x"}},
		{"RecvExclude", []string{"zfs", "recv", "-u", "-x", "readonly", "tank/x"}},
		{"RecvDiscardName", []string{"zfs", "recv", "-u", "-d", "tank"}},
		{"RecvElideName", []string{"zfs", "recv", "-u", "-e", "tank"}},
		{"ReleaseForeignTag", []string{"zfs", "release", "keep", "tank/x@s"}},
		{"ReleaseLookalikeTag", []string{"zfs", "release", "z8r-keep", "tank/x@s"}},
		{"ReleaseBarePrefix", []string{"zfs", "release", "z8r-base-", "tank/x@s"}},
		{"HoldForeignTag", []string{"zfs", "hold", "backup-tool", "tank/x@s"}},
		{"DestroyFilesystem", []string{"zfs", "destroy", "tank/x"}},
		{"DestroyPool", []string{"zfs", "destroy", "tank"}},
		{"DestroyDeferFilesystem", []string{"zfs", "destroy", "-d", "tank/x"}},
		{"DestroyRecursiveSnapshot", []string{"zfs", "destroy", "-r", "tank/x@s"}},
		{"DestroyForeignBookmark", []string{"zfs", "destroy", "tank/x#mine"}},
		{"DestroyDeferBookmark", []string{"zfs", "destroy", "-d", "tank/x#z8r-base-a:s"}},
		{"SendReplicate", []string{"zfs", "send", "-R", "tank@s"}},
		{"SendProps", []string{"zfs", "send", "-p", "tank/x@s"}},
		{"SendTokenOtherPool", []string{"zfs", "send", "-t", craftToken("vault/secret@s")}},
		{"SendTokenBadChecksum", []string{"zfs", "send", "-t", "1-abc-def-00"}},
		{"SendTokenShapeOnly", []string{"zfs", "send", "-t", "1-abc-def"}},
		{"Rollback", []string{"zfs", "rollback", "-r", "tank/x@s"}},
		// zfs mount FS and zfs promote FS pass Check and are judged by
		// CheckEffect; these variants never pass.
		{"MountAll", []string{"zfs", "mount", "-a"}},
		{"MountOptions", []string{"zfs", "mount", "-o", "remount,rw", "tank/x"}},
		{"Inherit", []string{"zfs", "inherit", "readonly", "tank/x"}},
		{"InheritRecursive", []string{"zfs", "inherit", "-r", "z8r.dev:owner", "tank"}},
		{"PromoteSnapshot", []string{"zfs", "promote", "tank/x@s"}},
		{"CloneMountpoint", []string{"zfs", "clone", "-o", "mountpoint=/etc/cron.d", "tank/x@s", "tank/y"}},
		{"CloneReadonlyOff", []string{"zfs", "clone", "-o", "readonly=off", "tank/x@s", "tank/y"}},
		{"CloneOtherPool", []string{"zfs", "clone", "vault/x@s", "tank/y"}},
		{"Allow", []string{"zfs", "allow", "everyone", "mount", "tank"}},
		{"LoadKey", []string{"zfs", "load-key", "-L", "file:///etc/shadow", "tank/x"}},
		{"ZpoolSet", []string{"zpool", "set", "altroot=/", "tank"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := p.Check(c.argv)
			if err == nil {
				t.Fatalf("Check(%q) accepted", c.argv)
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Reason == "" {
				t.Errorf("Check(%q) = %v, want a *RefusedError with a reason", c.argv, err)
			}
		})
	}
}

// TestPolicyCheck_ResumeTokenPools: zfs send -t is judged by the snapshot
// the decoded token names, not by the token's shape.
func TestPolicyCheck_ResumeTokenPools(t *testing.T) {
	cases := []struct {
		name  string
		pools []string
		token string
		ok    bool
	}{
		{"RealTokenInPool", []string{"tank"}, realToken(t), true},
		{"RealTokenOtherPool", []string{"backup"}, realToken(t), false},
		{"CraftedInPool", []string{"tank", "backup"}, craftToken("backup/a@s1"), true},
		{"CraftedOtherPool", []string{"tank", "backup"}, craftToken("vault/a@s1"), false},
		{"CraftedPoolPrefix", []string{"tank"}, craftToken("tankx/a@s1"), false},
		{"CraftedNotSnapshot", []string{"tank"}, craftToken("tank/a"), false},
		{"Empty", []string{"tank"}, "", false},
		{"Option", []string{"tank"}, "-R", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Policy{Pools: c.pools}.Check([]string{"zfs", "send", "-t", c.token})
			if (err == nil) != c.ok {
				t.Fatalf("Check(send -t %.40s...) with pools %v = %v, want ok=%v", c.token, c.pools, err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Errorf("error is not ErrRefused: %v", err)
			}
		})
	}
}

// realToken is a receive_resume_token captured in the OpenZFS guest; it
// names tank/data@s2.
func realToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../zfsexec/testdata/openzfs-2.3/send-nvt-incremental.txt")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	return tok
}

// craftToken builds a well-formed version-1 token (correct checksum) for a
// full send of toname.
func craftToken(toname string) string { return resumetok.Encode(toname, 9, 0) }

// CraftResumeToken is craftToken for the external tests
// (allow_property_test.go).
var CraftResumeToken = craftToken
