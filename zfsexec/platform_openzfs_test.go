//go:build platform

package zfsexec_test

import (
	"context"
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/ozguest"
	"github.com/z8r-project/z8r/internal/testbed/zfssuite"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestPlatform_OpenZFS runs the zfsexec platform suite on two OpenZFS 2.3
// qemu guests that both own a pool named tank.
func TestPlatform_OpenZFS(t *testing.T) {
	zfssuite.Run(t, func(t *testing.T) (zfssuite.Host, zfssuite.Host) {
		gs := ozguest.BootN(t, 2, ozguest.Options{})
		for _, g := range gs {
			err := g.Runner().Run(context.Background(), zfsexec.Command{Argv: []string{"zpool", "create", "-f", "tank", g.Disk(0)}})
			if err != nil {
				t.Fatal(err)
			}
		}
		return zfssuite.Host{Name: "src", ZFS: zfsexec.New(gs[0].Runner()), Pool: "tank"},
			zfssuite.Host{Name: "dst", ZFS: zfsexec.New(gs[1].Runner()), Pool: "tank"}
	})
}
