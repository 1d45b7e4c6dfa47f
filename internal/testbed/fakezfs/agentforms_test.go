package fakezfs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/internal/testbed/resumetok"
	"github.com/z8r-project/z8r/zfsexec"
)

// TestAgentForms_AllModelled runs one argv of every form the node agent
// accepts (each checked with agent.Policy.Check, so the table cannot drift
// to forms the agent refuses) on a fake node of each flavour: every one is
// modelled, succeeding or failing as that ZFS would, never ErrNotModelled.
func TestAgentForms_AllModelled(t *testing.T) {
	policy := agent.Policy{Pools: []string{"tank"}}
	tag := snapname.HoldTag("t1")
	bm := "tank/d#" + snapname.BookmarkName("t1", "s1")
	aside := snapname.DivergedName("tank/e", time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	props := "name,property,value,source"
	for _, impl := range []zfsexec.Implementation{zfsexec.ImplOpenZFS, zfsexec.ImplZFSFuse} {
		t.Run(string(impl), func(t *testing.T) {
			ctx := context.Background()
			n := fakezfs.New("n", fakezfs.Options{Implementation: impl})
			z := n.ZFS()
			must(t, z.CreateFilesystem(ctx, "tank/d", zfsexec.CreateOptions{}))
			must(t, z.CreateFilesystem(ctx, "tank/e", zfsexec.CreateOptions{}))
			must(t, z.Snapshot(ctx, "tank/d@s1", nil))
			must(t, n.Write("tank/d", "f", []byte("data")))
			must(t, z.Snapshot(ctx, "tank/d@s2", nil))
			p, err := z.Get(ctx, "tank/d@s2", "guid")
			must(t, err)
			var guid uint64
			for _, c := range p["guid"].Value {
				guid = guid*10 + uint64(c-'0')
			}
			token := resumetok.Encode("tank/d@s2", guid, 0)
			var stream bytes.Buffer
			must(t, z.Send(ctx, zfsexec.SendOptions{Snapshot: "tank/d@s2"}, &stream))

			for _, argv := range [][]string{
				{"zpool", "upgrade", "-v"},
				{"zfs", "version"},
				{"zfs", "get", "-H", "-p", "-o", props, "guid,z8r.dev:owner", "tank/d"},
				{"zfs", "get", "-H", "-p", "-r", "-o", props, "type,guid,createtxg,creation,userrefs", "tank"},
				{"zfs", "get", "-H", "-p", "-d", "1", "-t", "filesystem,volume,snapshot,bookmark", "-o", props, "guid", "tank/d"},
				{"zfs", "set", "z8r.dev:owner=z8r", "tank/d"},
				{"zfs", "set", "canmount=noauto", "tank/e"},
				{"zfs", "create", "-p", "-o", "readonly=on", "-o", "z8r.dev:owner=z8r", "tank/a/b"},
				{"zfs", "snapshot", "-o", "z8r.dev:owner=z8r", "-o", "z8r.dev:policy=p1", "tank/d@s3"},
				{"zfs", "hold", tag, "tank/d@s1"},
				{"zfs", "holds", "-H", "tank/d@s1"},
				{"zfs", "bookmark", "tank/d@s1", bm},
				{"zfs", "send", "-i", "tank/d@s1", "tank/d@s2"},
				{"zfs", "send", "-w", "-c", "-L", "-i", bm, "tank/d@s2"},
				{"zfs", "send", "-t", token},
				{"zfs", "release", tag, "tank/d@s1"},
				{"zfs", "destroy", bm},
				{"zfs", "destroy", "-d", "tank/d@s1"},
				{"zfs", "destroy", "tank/d@s3"},
				{"zfs", "umount", "tank/e"},
				{"zfs", "rename", "tank/e", aside},
				{"zfs", "recv", "-u", "-s", "-o", "readonly=on", "-o", "canmount=noauto", "tank/r"},
				{"zfs", "recv", "-u", "-F", "tank/r2"},
				{"zfs", "recv", "-A", "tank/r"},
				{"zfs", "set", "readonly=on", "tank/d"},
				{"zfs", "clone", "-o", "readonly=on", "-o", "canmount=noauto", "-o", "z8r.dev:replica-of=n2:tank/x", "tank/d@s2", "tank/c"},
				{"zfs", "promote", "tank/c"},
				{"zfs", "set", "readonly=off", "tank/c"},
				{"zfs", "set", "canmount=on", "tank/c"},
				{"zfs", "mount", "tank/c"},
				{"zfs", "inherit", "z8r.dev:replica-of", "tank/c"},
				{"zfs", "umount", "tank/c"},
				{"zfs", "rename", "tank/c", "tank/c-z8r-tail-20261130T150405Z"},
			} {
				if err := policy.Check(argv); err != nil {
					t.Errorf("table has a form the agent refuses: %q: %v", argv, err)
					continue
				}
				c := zfsexec.Command{Argv: argv, Stdout: io.Discard}
				var want error
				switch {
				case argv[1] == "recv" && argv[3] == "-s":
					// Cut short, to leave the state recv -A discards.
					c.Stdin = bytes.NewReader(stream.Bytes()[:stream.Len()/2])
					want = zfsexec.ErrInvalidStream
				case argv[1] == "recv":
					c.Stdin = bytes.NewReader(stream.Bytes())
				}
				err := n.Run(ctx, c)
				var ce *zfsexec.CommandError
				switch {
				case errors.Is(err, fakezfs.ErrNotModelled):
					t.Errorf("%s: not modelled: %v", strings.Join(argv, " "), err)
				case err != nil && !errors.As(err, &ce):
					t.Errorf("%s: %v, want success or a *CommandError", strings.Join(argv, " "), err)
				case impl == zfsexec.ImplOpenZFS && want != nil && !errors.Is(err, want):
					t.Errorf("%s: %v, want %v", strings.Join(argv, " "), err, want)
				case impl == zfsexec.ImplOpenZFS && want == nil && err != nil:
					t.Errorf("%s: %v; OpenZFS runs every agent form", strings.Join(argv, " "), err)
				}
			}
		})
	}
}
