package replicate_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestSyncTarget_FakeNodes_SendFlags: between two OpenZFS nodes every
// send of a sync, and its estimate, is compressed with large blocks
// (-c -L); with a zfs-fuse node on either side, plain. The source's
// encryption is read only where the node has it (OpenZFS).
func TestSyncTarget_FakeNodes_SendFlags(t *testing.T) {
	for _, tc := range []struct {
		src, dst zfsexec.Implementation
		flags    string
	}{
		{zfsexec.ImplOpenZFS, zfsexec.ImplOpenZFS, "-c -L "},
		{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse, ""},
		{zfsexec.ImplZFSFuse, zfsexec.ImplZFSFuse, ""},
	} {
		t.Run(string(tc.src)+"-to-"+string(tc.dst), func(t *testing.T) {
			ctx := context.Background()
			src := fakezfs.New("src", fakezfs.Options{Implementation: tc.src})
			dst := fakezfs.New("dst", fakezfs.Options{Implementation: tc.dst})
			sz, dz := src.ZFS(), dst.ZFS()
			srcEP := fakeEndpoint{z: sz, peers: map[string]*zfsexec.ZFS{"dst": dz}}
			tgt := replicate.Target{ID: "dst-tank-replica", PolicyID: "p1", Endpoint: fakeEndpoint{z: dz}, Addr: "dst", Dataset: "tank/replica"}
			if err := sz.CreateFilesystem(ctx, "tank/data", zfsexec.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			clock := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
			var snaps []string
			for i := range 2 {
				if err := src.Write("tank/data", "f", []byte(strings.Repeat("x", 1000*(i+1)))); err != nil {
					t.Fatal(err)
				}
				clock = clock.Add(time.Hour)
				name, err := replicate.TakeSnapshot(ctx, sz, "tank/data", "z8r", "p1", clock)
				if err != nil {
					t.Fatal(err)
				}
				snaps = append(snaps, name)
				opts := replicate.Options{Planned: func(int, int64) {}}
				if _, err := replicate.SyncTarget(ctx, srcEP, "tank/data", tgt, opts); err != nil {
					t.Fatal(err)
				}
			}
			var sends, gets []string
			for _, c := range src.Commands() {
				line := strings.Join(c, " ")
				switch {
				case slices.Equal(c[:2], []string{"zfs", "send"}):
					sends = append(sends, line)
				case slices.Contains(c, "encryption"):
					gets = append(gets, line)
				}
			}
			var want []string
			if tc.src == zfsexec.ImplOpenZFS {
				// The estimate (send -n -P) before each transfer.
				want = append(want, "zfs send -n -P "+tc.flags+"tank/data@"+snaps[0])
			}
			want = append(want, "zfs send "+tc.flags+"tank/data@"+snaps[0])
			if tc.src == zfsexec.ImplOpenZFS {
				want = append(want, "zfs send -n -P "+tc.flags+"-i tank/data@"+snaps[0]+" tank/data@"+snaps[1])
			}
			want = append(want, "zfs send "+tc.flags+"-i tank/data@"+snaps[0]+" tank/data@"+snaps[1])
			if !slices.Equal(sends, want) {
				t.Errorf("sends\n%s\nwant\n%s", strings.Join(sends, "\n"), strings.Join(want, "\n"))
			}
			if wantGets := map[bool]int{true: 2, false: 0}[tc.src == zfsexec.ImplOpenZFS]; len(gets) != wantGets {
				t.Errorf("encryption reads on the source %q, want %d (one per sync, none on zfs-fuse)", gets, wantGets)
			}
		})
	}
}
