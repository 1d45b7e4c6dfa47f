package volsnap

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/z8r-project/z8r/zfsexec"
)

func corev1Ref(uid string) corev1.ObjectReference {
	return corev1.ObjectReference{Namespace: "ns", Name: "snap", UID: types.UID(uid)}
}

func TestSnapshotName_FromVolumeSnapshotUID(t *testing.T) {
	c := content()
	c.UID = "content-uid"
	if n, err := SnapshotName(c); err != nil || n != "snapshot-uid-1" {
		t.Errorf("got %q %v", n, err)
	}
	if _, err := SnapshotName(content(unbound)); err == nil {
		t.Error("unbound content: want an error")
	}
}

func TestHandles_ParseAndForeign(t *testing.T) {
	ds, short, err := ParseHandle("tank/k8s/a@snapshot-1")
	if err != nil || ds != "tank/k8s/a" || short != "snapshot-1" {
		t.Errorf("got %q %q %v", ds, short, err)
	}
	for _, bad := range []string{"tank/a", "tank/a@", "@x", "tank/a@b@c", "tank/a#b"} {
		if _, _, err := ParseHandle(bad); !errors.Is(err, ErrBadHandle) {
			t.Errorf("ParseHandle(%q): %v", bad, err)
		}
	}
	if s, err := ForeignShortName("pvc-4f1c@snapshot-7d3e"); err != nil || s != "snapshot-7d3e" {
		t.Errorf("got %q %v", s, err)
	}
	for _, bad := range []string{"pvc-4f1c", "pvc@", "pvc@a b"} {
		if _, err := ForeignShortName(bad); !errors.Is(err, ErrBadHandle) {
			t.Errorf("ForeignShortName(%q): %v", bad, err)
		}
	}
}

func TestReplicaContentName_Bounded(t *testing.T) {
	tgt := Target{Node: "node2", Dataset: "backup/x"}
	n := ReplicaContentName("snapcontent-abc", tgt)
	if !strings.HasPrefix(n, "snapcontent-abc-node2-backup-x-") {
		t.Errorf("got %q", n)
	}
	long := ReplicaContentName(strings.Repeat("a", 250), tgt)
	if len(long) > 253 || !strings.HasSuffix(long, n[len("snapcontent-abc"):]) {
		t.Errorf("long name %d chars: %q", len(long), long)
	}
	if ReplicaContentName("c", tgt) == ReplicaContentName("c", Target{Node: "node2", Dataset: "backup/y"}) {
		t.Error("different targets share a name")
	}
	if TargetID(tgt) == TargetID(Target{Node: "node3", Dataset: "backup/x"}) || !strings.HasPrefix(TargetID(tgt), "vs-") {
		t.Errorf("TargetID %q", TargetID(tgt))
	}
}

func TestRestoreSize_VolumeOrReferenced(t *testing.T) {
	fs := map[string]zfsexec.Property{"referenced": {Value: "4308992"}, "volsize": {Value: "-"}}
	if n, err := RestoreSize(fs); err != nil || n != 4308992 {
		t.Errorf("filesystem: %d %v", n, err)
	}
	vol := map[string]zfsexec.Property{"referenced": {Value: "8192"}, "volsize": {Value: "1073741824"}}
	if n, err := RestoreSize(vol); err != nil || n != 1<<30 {
		t.Errorf("volume: %d %v", n, err)
	}
	if _, err := RestoreSize(map[string]zfsexec.Property{"referenced": {Value: "1.2G"}}); err == nil {
		t.Error("non-numeric referenced: want an error")
	}
}

func TestMarkedFor_OnlyLocalAndThisContent(t *testing.T) {
	tests := []struct {
		name string
		p    zfsexec.Property
		want bool
	}{
		{"set locally to this content", zfsexec.Property{Value: "rep-1", Source: "local"}, true},
		{"set locally to another content", zfsexec.Property{Value: "rep-2", Source: "local"}, false},
		{"received in the stream", zfsexec.Property{Value: "rep-1", Source: "received"}, false},
		{"inherited from a parent", zfsexec.Property{Value: "rep-1", Source: "inherited from tank"}, false},
		{"not set", zfsexec.Property{Value: "-", Source: "-"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MarkedFor(tt.p, "rep-1"); got != tt.want {
				t.Errorf("MarkedFor(%+v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}
