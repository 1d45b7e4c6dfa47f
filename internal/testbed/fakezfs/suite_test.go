package fakezfs_test

import (
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/internal/testbed/zfssuite"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestPlatform_Fake runs the zfsexec platform suite, the one zfs-fuse and
// OpenZFS pass, on pairs of fake nodes imitating each.
func TestPlatform_Fake(t *testing.T) {
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			zfssuite.Run(t, func(t *testing.T) (zfssuite.Host, zfssuite.Host) {
				src := fakezfs.New("src", fakezfs.Options{Implementation: impl})
				dst := fakezfs.New("dst", fakezfs.Options{Implementation: impl})
				return zfssuite.Host{Name: "src", ZFS: src.ZFS(), Pool: "tank"},
					zfssuite.Host{Name: "dst", ZFS: dst.ZFS(), Pool: "tank"}
			})
		})
	}
}
