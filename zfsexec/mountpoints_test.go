package zfsexec

import (
	"context"
	"reflect"
	"testing"
)

func TestMountpoints_FilesystemsOnly(t *testing.T) {
	// zfs-fuse has no `get -t`: snapshots come back with "-".
	out := "tank\tmountpoint\t/mnt/tank\tdefault\n" +
		"tank/a\tmountpoint\t/mnt/tank/a\tdefault\n" +
		"tank/a@s1\tmountpoint\t-\t-\n" +
		"tank/legacy\tmountpoint\tlegacy\tlocal\n" +
		"tank/vol\tmountpoint\t-\t-\n"
	s := &scriptRunner{replies: map[string]reply{
		"zfs get -H -p -r -o name,property,value,source mountpoint tank": {stdout: out},
	}}
	got, err := New(s).Mountpoints(context.Background(), "tank")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tank": "/mnt/tank", "tank/a": "/mnt/tank/a", "tank/legacy": "legacy"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := New(failRunner{t}).Mountpoints(context.Background(), "tank@x"); err == nil {
		t.Error("a snapshot name: want an error")
	}
}
