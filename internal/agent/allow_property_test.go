package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// recorder is a zfsexec.Runner that records every argv and answers with
// canned output: enough for zfsexec's builders to run without a node.
type recorder struct {
	openzfs bool
	argvs   [][]string
}

func (r *recorder) Run(_ context.Context, c zfsexec.Command) error {
	r.argvs = append(r.argvs, append([]string(nil), c.Argv...))
	if c.Stdin != nil {
		_, _ = io.Copy(io.Discard, c.Stdin)
	}
	switch strings.Join(c.Argv, " ") {
	case "zfs version":
		if !r.openzfs {
			return &zfsexec.CommandError{Argv: c.Argv, ExitCode: 2, Stderr: "unrecognized command 'version'\nusage: zfs command args ...\n"}
		}
		if c.Stdout != nil {
			_, _ = io.WriteString(c.Stdout, "zfs-2.3.0-1\nzfs-kmod-2.3.0-1\n")
		}
	case "zpool upgrade -v":
		if c.Stdout != nil {
			_, _ = io.WriteString(c.Stdout, "This system is currently running ZFS pool version 23.\n")
		}
	}
	return nil
}

// genName returns a random valid dataset name in one of pools.
func genName(rng *rand.Rand, pools []string) string {
	const chars = "abcxyzABZ0189_-.:"
	for {
		name := pools[rng.IntN(len(pools))]
		for range 1 + rng.IntN(3) {
			var b strings.Builder
			for range 1 + rng.IntN(14) {
				b.WriteByte(chars[rng.IntN(len(chars))])
			}
			name += "/" + b.String()
		}
		if zfsexec.ValidateDataset(name) == nil {
			return name
		}
	}
}

// genShort returns a random snapshot short name: z8r's own form or a
// free-form one (VolumeSnapshot handles, snapshots found on a node).
func genShort(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		prefixes := []string{"z8r", "hourly", "daily", "snapshot", "a-b_c"}
		t := time.Unix(rng.Int64N(4e9), 0).UTC()
		return snapname.New(prefixes[rng.IntN(len(prefixes))], t)
	}
	const chars = "abcz019_-.:"
	for {
		var b strings.Builder
		for range 1 + rng.IntN(20) {
			b.WriteByte(chars[rng.IntN(len(chars))])
		}
		if zfsexec.ValidateSnapshot("tank@"+b.String()) == nil {
			return b.String()
		}
	}
}

// genID returns a random replication target or policy id, sometimes one
// HoldTag has to hash.
func genID(rng *rand.Rand) string {
	const chars = "abcdefxyz0123456789-._:/ "
	var b strings.Builder
	for range 1 + rng.IntN(40) {
		b.WriteByte(chars[rng.IntN(len(chars))])
	}
	return b.String()
}

// TestPolicyCheck_AcceptsEveryZ8RArgv: for random valid names in the
// allowed pools and z8r's own options, every argv zfsexec's builders
// produce for the operations z8r runs (as package replicate, controllers
// and volsnap call them) is accepted by the agent, on OpenZFS and on
// zfs-fuse. Check is judged by effect; this proves the judgement never
// refuses z8r itself.
func TestPolicyCheck_AcceptsEveryZ8RArgv(t *testing.T) {
	pools := []string{"tank", "backup"}
	policy := agent.Policy{Pools: pools}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x2a))
	ctx := context.Background()
	ran := map[string]int{}
	for _, openzfs := range []bool{true, false} {
		for range 300 {
			rec := &recorder{openzfs: openzfs}
			z := zfsexec.New(rec)
			caps, err := z.Capabilities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ds := genName(rng, pools)
			short, short2 := genShort(rng), genShort(rng)
			snap, snap2 := ds+"@"+short, ds+"@"+short2
			target, policyID := genID(rng), genID(rng)
			bm := ds + "#" + snapname.BookmarkName(target, short)
			origin := genName(rng, pools)
			content := "snapcontent-" + fmt.Sprint(rng.Uint32())

			ops := map[string]func() error{
				"Capabilities": func() error { _, err := zfsexec.DetectCapabilities(ctx, rec); return err },
				"List":         func() error { _, err := z.List(ctx, ds, zfsexec.ListOptions{Depth: 1}); return err },
				"ListAll": func() error {
					_, err := z.List(ctx, ds, zfsexec.ListOptions{Depth: -1, UserProps: []string{snapname.OwnerProp, snapname.PolicyProp}})
					return err
				},
				"Snapshots": func() error {
					_, err := z.Snapshots(ctx, ds, snapname.OwnerProp, snapname.PolicyProp, volsnap.PropContent, replicate.ReplicaOfProp)
					return err
				},
				"Exists": func() error { _, err := z.Exists(ctx, snap); return err },
				"GetPristine": func() error {
					_, err := z.Get(ctx, ds, replicate.ReplicaOfProp, "readonly", "mounted", "type")
					return err
				},
				"GetMounted": func() error { _, err := z.Get(ctx, ds, "mounted"); return err },
				"SetReplicaOf": func() error {
					return z.Set(ctx, ds, map[string]string{replicate.ReplicaOfProp: origin, "readonly": "on"})
				},
				"SetOwned":      func() error { return z.Set(ctx, snap, snapname.Props(policyID)) },
				"SetContent":    func() error { return z.Set(ctx, snap, map[string]string{volsnap.PropContent: content}) },
				"CreateParents": func() error { return z.CreateFilesystem(ctx, ds, zfsexec.CreateOptions{Parents: true}) },
				"SnapshotOwned": func() error { return z.Snapshot(ctx, snap, snapname.Props(policyID)) },
				"SnapshotContent": func() error {
					return z.Snapshot(ctx, snap, map[string]string{volsnap.PropContent: content})
				},
				"SnapshotBare":    func() error { return z.Snapshot(ctx, snap, nil) },
				"Destroy":         func() error { return z.Destroy(ctx, snap, zfsexec.DestroyOptions{}) },
				"DestroyDefer":    func() error { return z.Destroy(ctx, snap, zfsexec.DestroyOptions{Defer: true}) },
				"DestroyBookmark": func() error { return z.Destroy(ctx, bm, zfsexec.DestroyOptions{}) },
				"HoldBase":        func() error { return z.Hold(ctx, snapname.HoldTag(target), snap) },
				"HoldStep":        func() error { return z.Hold(ctx, snapname.StepHoldTag(target), snap) },
				"HoldReplica":     func() error { return z.Hold(ctx, snapname.ReplicaHoldTag(target), snap) },
				"ReleaseBase":     func() error { return z.Release(ctx, snapname.HoldTag(target), snap) },
				"ReleaseStep":     func() error { return z.Release(ctx, snapname.StepHoldTag(target), snap) },
				"ReleaseReplica":  func() error { return z.Release(ctx, snapname.ReplicaHoldTag(target), snap) },
				"Holds":           func() error { _, err := z.Holds(ctx, snap); return err },
				"Bookmark":        func() error { return z.Bookmark(ctx, snap, bm) },
				"ResumeToken":     func() error { _, err := z.ResumeToken(ctx, ds); return err },
				"AbortRecv":       func() error { return z.AbortRecv(ctx, ds) },
				"Rename":          func() error { return z.Rename(ctx, ds, snapname.DivergedName(ds, time.Unix(rng.Int64N(4e9), 0))) },
				"Unmount":         func() error { return z.Unmount(ctx, ds) },
				"RenameTail": func() error {
					return z.Rename(ctx, ds, snapname.TailName(ds, time.Unix(rng.Int64N(4e9), 0)))
				},
				"Clone": func() error {
					return z.Clone(ctx, snap, ds+"-c", map[string]string{"readonly": "on", "canmount": "noauto", replicate.ReplicaOfProp: origin})
				},
				"Promote":       func() error { return z.Promote(ctx, ds) },
				"Mount":         func() error { return z.Mount(ctx, ds) },
				"Inherit":       func() error { return z.Inherit(ctx, ds, replicate.ReplicaOfProp) },
				"SetWritable":   func() error { return z.Set(ctx, ds, map[string]string{"readonly": "off", "canmount": "on"}) },
				"GetPromotable": func() error { _, err := z.Get(ctx, ds, "type", "origin", replicate.ReplicaOfProp); return err },
				"SendFull":      func() error { return z.Send(ctx, zfsexec.SendOptions{Snapshot: snap}, io.Discard) },
				"SendSizeFull":  func() error { _, err := z.SendSize(ctx, zfsexec.SendOptions{Snapshot: snap}); return err },
				"SendSizeIncremental": func() error {
					_, err := z.SendSize(ctx, zfsexec.SendOptions{Snapshot: snap2, From: "@" + short})
					return err
				},
				"SendIncremental": func() error {
					return z.Send(ctx, zfsexec.SendOptions{Snapshot: snap2, From: "@" + short}, io.Discard)
				},
				"SendFromBookmark": func() error {
					_, bshort := zfsexec.SplitSnapshot(bm)
					return z.Send(ctx, zfsexec.SendOptions{Snapshot: snap2, From: "#" + bshort}, io.Discard)
				},
				"SendResume": func() error {
					return z.Send(ctx, zfsexec.SendOptions{ResumeToken: agent.CraftResumeToken(snap)}, io.Discard)
				},
				"RecvFull": func() error {
					o := zfsexec.RecvOptions{Target: ds, Unmounted: true, Resumable: caps.ResumableRecv, Force: rng.IntN(2) == 0}
					if caps.RecvProps {
						o.SetProps = map[string]string{"readonly": "on"}
					}
					return z.Recv(ctx, o, strings.NewReader("stream"))
				},
				"RecvIncremental": func() error {
					o := zfsexec.RecvOptions{Target: ds, Unmounted: true, Resumable: caps.ResumableRecv, Incremental: true, BaseGUID: 7, BaseName: short}
					return z.Recv(ctx, o, strings.NewReader("stream"))
				},
				"RecvResumed": func() error {
					o := zfsexec.RecvOptions{Target: ds, Unmounted: true, Resumable: true, SetProps: map[string]string{"readonly": "on"}}
					return z.Recv(ctx, o, strings.NewReader("stream"))
				},
			}
			for name, op := range ops {
				before := len(rec.argvs)
				err := op()
				if len(rec.argvs) == before {
					// zfs-fuse has no resume tokens: ResumeToken reads nothing.
					if err == nil && (openzfs || name != "ResumeToken") {
						t.Errorf("%s ran nothing and returned no error", name)
					}
					continue // refused by zfsexec itself (e.g. not on zfs-fuse)
				}
				ran[name]++
				for _, argv := range rec.argvs[before:] {
					if cerr := policy.Check(argv); cerr != nil {
						t.Errorf("openzfs=%v %s: Check(%q) = %v", openzfs, name, argv, cerr)
					}
				}
			}
		}
	}
	// Every operation really produced argvs (on OpenZFS at least), so the
	// test above judged something.
	for _, name := range []string{"List", "ListAll", "Snapshots", "Exists", "GetPristine", "GetMounted",
		"SetReplicaOf", "SetOwned", "SetContent", "CreateParents", "SnapshotOwned", "SnapshotContent",
		"SnapshotBare", "Destroy", "DestroyDefer", "DestroyBookmark", "HoldBase", "HoldStep", "HoldReplica",
		"ReleaseBase", "ReleaseStep", "ReleaseReplica", "Holds", "Bookmark", "ResumeToken", "AbortRecv",
		"Rename", "Unmount", "RenameTail", "Clone", "Promote", "Mount", "Inherit", "SetWritable", "GetPromotable", "SendFull", "SendIncremental", "SendFromBookmark", "SendResume", "RecvFull",
		"RecvIncremental", "RecvResumed"} {
		if ran[name] < 100 {
			t.Errorf("%s produced argvs only %d times", name, ran[name])
		}
	}
}

// TestPolicyCheck_RefusesBuilderArgvsZ8RNeverUses: the same builders with
// options z8r never passes yield argvs the agent refuses, so the test
// above cannot pass by accepting everything the builders make.
func TestPolicyCheck_RefusesBuilderArgvsZ8RNeverUses(t *testing.T) {
	policy := agent.Policy{Pools: []string{"tank"}}
	caps := zfsexec.Capabilities{Implementation: zfsexec.ImplOpenZFS, Bookmarks: true, ResumableRecv: true, RecvProps: true, RawSend: true, CompressedSend: true}
	cases := []struct {
		name string
		run  func(z *zfsexec.ZFS) error
	}{
		{"SetMountpoint", func(z *zfsexec.ZFS) error {
			return z.Set(context.Background(), "tank/a", map[string]string{"mountpoint": "/etc"})
		}},
		{"CreateMountpoint", func(z *zfsexec.ZFS) error {
			return z.CreateFilesystem(context.Background(), "tank/a", zfsexec.CreateOptions{Props: map[string]string{"mountpoint": "/root/.ssh"}})
		}},
		{"CloneMountpoint", func(z *zfsexec.ZFS) error {
			return z.Clone(context.Background(), "tank/a@s", "tank/b", map[string]string{"mountpoint": "/etc"})
		}},
		{"CloneWritable", func(z *zfsexec.ZFS) error {
			return z.Clone(context.Background(), "tank/a@s", "tank/b", map[string]string{"readonly": "off"})
		}},
		{"InheritNative", func(z *zfsexec.ZFS) error { return z.Inherit(context.Background(), "tank/a", "readonly") }},
		{"SetWritableSnapshot", func(z *zfsexec.ZFS) error {
			return z.Set(context.Background(), "tank/a@s", map[string]string{"readonly": "off"})
		}},
		{"SnapshotNative", func(z *zfsexec.ZFS) error {
			return z.Snapshot(context.Background(), "tank/a@s", map[string]string{"readonly": "on"})
		}},
		{"ForeignTag", func(z *zfsexec.ZFS) error { return z.Hold(context.Background(), "keep", "tank/a@s") }},
		{"ForeignBookmark", func(z *zfsexec.ZFS) error {
			return z.Destroy(context.Background(), "tank/a#mine", zfsexec.DestroyOptions{})
		}},
		{"Rollback", func(z *zfsexec.ZFS) error {
			return z.Rollback(context.Background(), "tank/a@s", zfsexec.RollbackOptions{DestroyNewer: true})
		}},
		{"RecvMounted", func(z *zfsexec.ZFS) error {
			argv, err := zfsexec.RecvOptions{Target: "tank/a"}.Argv(caps)
			return runArgv(z, argv, err)
		}},
		{"RecvExclude", func(z *zfsexec.ZFS) error {
			argv, err := zfsexec.RecvOptions{Target: "tank/a", Unmounted: true, ExcludeProps: []string{"mountpoint"}}.Argv(caps)
			return runArgv(z, argv, err)
		}},
		{"SendReplicate", func(z *zfsexec.ZFS) error {
			argv, err := zfsexec.SendOptions{Snapshot: "tank/a@s", Replicate: true}.Argv(caps)
			return runArgv(z, argv, err)
		}},
		{"SendProps", func(z *zfsexec.ZFS) error {
			argv, err := zfsexec.SendOptions{Snapshot: "tank/a@s", Props: true}.Argv(caps)
			return runArgv(z, argv, err)
		}},
		{"SendTokenOtherPool", func(z *zfsexec.ZFS) error {
			argv, err := zfsexec.SendOptions{ResumeToken: agent.CraftResumeToken("vault/a@s")}.Argv(caps)
			return runArgv(z, argv, err)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{openzfs: true}
			if err := c.run(zfsexec.New(rec)); err != nil {
				t.Fatal(err)
			}
			last := rec.argvs[len(rec.argvs)-1]
			if err := policy.Check(last); err == nil {
				t.Errorf("Check(%q) accepted", last)
			}
		})
	}
}

func runArgv(z *zfsexec.ZFS, argv []string, err error) error {
	if err != nil {
		return err
	}
	var out bytes.Buffer
	return z.Runner().Run(context.Background(), zfsexec.Command{Argv: argv, Stdout: &out})
}
