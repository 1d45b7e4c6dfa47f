package agent

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
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
		{[]string{"zfs", "destroy", "tank/a#b"}, true},
		{[]string{"zfs", "hold", "z8r-base-x", "tank/a@s1"}, true},
		{[]string{"zfs", "send", "-p", "-i", "tank/a@s1", "tank/a@s2"}, true},
		{[]string{"zfs", "send", "-t", "1-abc-def"}, true},
		{[]string{"zfs", "recv", "-u", "-s", "-o", "readonly=on", "-x", "mountpoint", "backup/a"}, true},
		{[]string{"zfs", "recv", "-A", "backup/a"}, true},
		{[]string{"zfs", "create", "-p", "backup/a"}, true},
		{[]string{"zfs", "set", "readonly=on", "backup/a"}, true},
		{[]string{"zfs", "rename", "backup/a", "backup/a-z8r-diverged-20261130T091500Z"}, true},
		{[]string{"zfs", "umount", "backup/a"}, true},
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
		{[]string{"zfs", "set", "readonly=on\nx", "tank/a"}, false},
		{[]string{"zfs", "hold", "-r", "tank/a@s"}, false},
		{[]string{"zfs", "mount", "tank/a"}, false},
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
