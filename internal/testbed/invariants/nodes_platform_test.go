//go:build platform

package invariants

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

func platformNode(t *testing.T) *zfsnodes.Node {
	t.Helper()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "inv")[0]
	if _, err := n.Exec(context.Background(), "zfs", "create", "tank/data"); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProbeTags_NamesHeldTagsAndLeavesOthersUnheld(t *testing.T) {
	ctx := context.Background()
	n := platformNode(t)
	for _, argv := range [][]string{{"zfs", "snapshot", "tank/data@s"}, {"zfs", "hold", "z8r-base-a", "tank/data@s"}} {
		if _, err := n.Exec(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	held, err := ProbeTags(ctx, n, "tank/data@s", []string{"z8r-base-a", "z8r-step-a", "z8r-last-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(held, []string{"z8r-base-a"}) {
		t.Fatalf("ProbeTags = %v, want [z8r-base-a]", held)
	}
	l, err := Read(ctx, n, "tank/data")
	if err != nil {
		t.Fatal(err)
	}
	if s := l.Newest(); s == nil || s.UserRefs != 1 {
		t.Fatalf("after probing, the snapshot has %+v: want exactly the one hold it had", s)
	}
}

func TestContents_ReadsTheSnapshotAndLeavesNoClone(t *testing.T) {
	ctx := context.Background()
	n := platformNode(t)
	mp, err := n.ZFS().Get(ctx, "tank/data", "mountpoint")
	if err != nil {
		t.Fatal(err)
	}
	dir := n.Path(mp["mountpoint"].Value)
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Exec(ctx, "zfs", "snapshot", "tank/data@s"); err != nil {
		t.Fatal(err)
	}
	// Changed after the snapshot: Contents must see the snapshot's data.
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	sums, err := Contents(ctx, n, "tank/data@s")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("before"))
	if want := map[string]string{"a": hex.EncodeToString(sum[:])}; !reflect.DeepEqual(sums, want) {
		t.Fatalf("Contents = %v, want %v (the snapshot's data)", sums, want)
	}
	after, err := Contents(ctx, n, "tank/data@s")
	if err != nil || !reflect.DeepEqual(after, sums) {
		t.Fatalf("a second read gave %v, %v", after, err)
	}
	out, err := n.Exec(ctx, "zfs", "list", "-H", "-o", "name", "-t", "filesystem")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "z8r-invariants-") {
		t.Fatalf("a temporary clone was left behind:\n%s", out)
	}
}
