//go:build platform

package zfsexec_test

import (
	"context"
	"errors"
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/internal/testbed/zfssuite"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestPlatform_ZFSFuse runs the zfsexec platform suite on two zfs-fuse
// nodes that both own a pool named tank.
func TestPlatform_ZFSFuse(t *testing.T) {
	zfssuite.Run(t, func(t *testing.T) (zfssuite.Host, zfssuite.Host) {
		nodes := zfsnodes.Start(t, zfsnodes.Options{}, "src", "dst")
		return zfssuite.Host{Name: "src", ZFS: nodes[0].ZFS(), Pool: "tank"},
			zfssuite.Host{Name: "dst", ZFS: nodes[1].ZFS(), Pool: "tank"}
	})
}

// TestPlatform_ZFSFuse_DaemonNotRunning stops a node's daemon and expects
// ErrDaemonNotRunning from the next command.
func TestPlatform_ZFSFuse_DaemonNotRunning(t *testing.T) {
	n := zfsnodes.Start(t, zfsnodes.Options{}, "stopped")[0]
	if err := n.StopDaemon(); err != nil {
		t.Fatal(err)
	}
	_, err := zfsexec.New(n.Runner()).Capabilities(context.Background())
	if !errors.Is(err, zfsexec.ErrDaemonNotRunning) {
		t.Fatalf("got %v, want ErrDaemonNotRunning", err)
	}
}

// TestPlatform_ZFSFuse_Capabilities: zfs-fuse is detected as pool v23 with
// none of OpenZFS's optional features, and asking for one is refused.
func TestPlatform_ZFSFuse_Capabilities(t *testing.T) {
	ctx := context.Background()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "caps")[0]
	z := n.ZFS()
	c, err := z.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Implementation != zfsexec.ImplZFSFuse || c.Version != "pool-v23" || len(c.Names()) != 0 {
		t.Fatalf("capabilities %s", c)
	}
	if err := z.CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := z.Snapshot(ctx, "tank/d@s", nil); err != nil {
		t.Fatal(err)
	}
	if err := z.Bookmark(ctx, "tank/d@s", "tank/d#b"); !errors.Is(err, zfsexec.ErrUnsupported) {
		t.Errorf("Bookmark = %v, want ErrUnsupported", err)
	}
	if err := z.AbortRecv(ctx, "tank/d"); !errors.Is(err, zfsexec.ErrUnsupported) {
		t.Errorf("AbortRecv = %v, want ErrUnsupported", err)
	}
	if err := z.Send(ctx, zfsexec.SendOptions{Snapshot: "tank/d@s", Raw: true}, nil); !errors.Is(err, zfsexec.ErrUnsupported) {
		t.Errorf("raw Send = %v, want ErrUnsupported", err)
	}
	if tok, err := z.ResumeToken(ctx, "tank/d"); tok != "" || err != nil {
		t.Errorf("ResumeToken = %q, %v; want none", tok, err)
	}
}
