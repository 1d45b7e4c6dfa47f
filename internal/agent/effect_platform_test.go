//go:build platform

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// effectAgent runs an in-process agent over the zfs-fuse node n (pool tank)
// and returns a client of it.
func effectAgent(t *testing.T, n *zfsnodes.Node) *agent.Client {
	t.Helper()
	host, key := effSigner(t), effSigner(t)
	srv, err := agent.NewServer(agent.ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{key.PublicKey()}, nil },
		Policy:         agent.Policy{Pools: []string{"tank"}},
		Runner:         n.Runner(),
		Log:            logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	c, err := agent.Dial(context.Background(), l.Addr().String(), agent.ClientConfig{Signer: key, HostKey: host.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func effMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// effState is what must not change on a dataset a refused request named.
type effState struct {
	guid  uint64
	names []string // the dataset and everything below it
	file  string   // contents of the written file, "" if none
}

func effStateOf(t *testing.T, n *zfsnodes.Node, fs, file string) effState {
	t.Helper()
	ctx := context.Background()
	all, err := n.ZFS().List(ctx, fs, zfsexec.ListOptions{Depth: -1})
	effMust(t, err)
	var st effState
	for _, d := range all {
		if d.Name == fs {
			st.guid = d.GUID
		}
		st.names = append(st.names, d.Name)
	}
	if file != "" {
		var out bytes.Buffer
		effMust(t, n.Runner().Run(ctx, zfsexec.Command{Argv: []string{"cat", file}, Stdout: &out}))
		st.file = out.String()
	}
	return st
}

func (a effState) equal(b effState) bool {
	if a.guid != b.guid || a.file != b.file || len(a.names) != len(b.names) {
		return false
	}
	for i := range a.names {
		if a.names[i] != b.names[i] {
			return false
		}
	}
	return true
}

// TestCheckEffect_PlatformForcedRecv: on a real zfs-fuse node, through a
// real agent, a forced full receive over a written dataset that is not a
// z8r replica is refused and leaves it exactly as it was; the same receive
// into a pristine z8r replica goes through.
func TestCheckEffect_PlatformForcedRecv(t *testing.T) {
	ctx := context.Background()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "effect-recv")[0]
	z := n.ZFS()
	c := effectAgent(t, n)

	// A stream to force in.
	effMust(t, z.CreateFilesystem(ctx, "tank/src", zfsexec.CreateOptions{}))
	effMust(t, z.Snapshot(ctx, "tank/src@s1", nil))
	var stream bytes.Buffer
	effMust(t, z.Send(ctx, zfsexec.SendOptions{Snapshot: "tank/src@s1"}, &stream))

	// A user's dataset with data and no snapshot: recv -F would replace it.
	effMust(t, z.CreateFilesystem(ctx, "tank/plain", zfsexec.CreateOptions{}))
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	file := filepath.Join(n.Dir, "mnt", "tank", "plain", "data")
	effMust(t, n.Runner().Run(ctx, zfsexec.Command{Argv: []string{"dd", "of=" + file, "bs=64k", "status=none"}, Stdin: bytes.NewReader(data)}))
	before := effStateOf(t, n, "tank/plain", file)

	err := c.ZFS().Recv(ctx, zfsexec.RecvOptions{Target: "tank/plain", Unmounted: true, Force: true}, bytes.NewReader(stream.Bytes()))
	if !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("recv -F over a written non-replica: %v, want ErrRefused", err)
	}
	if after := effStateOf(t, n, "tank/plain", file); !after.equal(before) || after.file != string(data) {
		t.Fatalf("tank/plain changed: before %+v, after guid %d names %v", before.names, after.guid, after.names)
	}

	// A pristine z8r replica (mark set locally, readonly, unmounted, empty)
	// takes the forced receive.
	effMust(t, z.CreateFilesystem(ctx, "tank/rep", zfsexec.CreateOptions{Props: map[string]string{
		replicate.ReplicaOfProp: "tank/src", "readonly": "on", "canmount": "noauto"}}))
	if err := c.ZFS().Recv(ctx, zfsexec.RecvOptions{Target: "tank/rep", Unmounted: true, Force: true}, bytes.NewReader(stream.Bytes())); err != nil {
		t.Fatalf("recv -F into a pristine replica: %v", err)
	}
	if ok, err := z.Exists(ctx, "tank/rep@s1"); err != nil || !ok {
		t.Fatalf("tank/rep@s1 after the receive: exists %v, %v", ok, err)
	}
}

// TestCheckEffect_PlatformDestroy: on a real zfs-fuse node, through a real
// agent, destroying a snapshot without z8r's mark, or with the mark only
// inherited from its filesystem, is refused and the snapshot stays;
// snapshots z8r marked locally (owner, or the VolumeSnapshot content mark)
// are destroyed.
func TestCheckEffect_PlatformDestroy(t *testing.T) {
	ctx := context.Background()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "effect-destroy")[0]
	z := n.ZFS()
	c := effectAgent(t, n)

	effMust(t, z.CreateFilesystem(ctx, "tank/user", zfsexec.CreateOptions{}))
	effMust(t, z.Snapshot(ctx, "tank/user@mine", nil))
	// The owner mark set on the filesystem is inherited by its snapshots.
	effMust(t, z.CreateFilesystem(ctx, "tank/inh", zfsexec.CreateOptions{Props: map[string]string{snapname.OwnerProp: snapname.OwnerValue}}))
	effMust(t, z.Snapshot(ctx, "tank/inh@s", nil))
	effMust(t, z.Snapshot(ctx, "tank/user@z8r", snapname.Props("default/web")))
	effMust(t, z.Snapshot(ctx, "tank/user@vs", map[string]string{volsnap.PropContent: "snapcontent-1"}))

	for _, snap := range []string{"tank/user@mine", "tank/inh@s"} {
		for _, defer_ := range []bool{false, true} {
			err := c.ZFS().Destroy(ctx, snap, zfsexec.DestroyOptions{Defer: defer_})
			if !errors.Is(err, agent.ErrRefused) {
				t.Errorf("destroy (defer %v) %s: %v, want ErrRefused", defer_, snap, err)
			}
			if ok, err := z.Exists(ctx, snap); err != nil || !ok {
				t.Errorf("%s after a refused destroy: exists %v, %v", snap, ok, err)
			}
		}
	}
	for _, snap := range []string{"tank/user@z8r", "tank/user@vs"} {
		if err := c.ZFS().Destroy(ctx, snap, zfsexec.DestroyOptions{}); err != nil {
			t.Errorf("destroy %s: %v", snap, err)
		}
		if ok, err := z.Exists(ctx, snap); err != nil || ok {
			t.Errorf("%s after its destroy: exists %v, %v", snap, ok, err)
		}
	}
	// Destroying what is already gone stays an idempotent no-op error.
	if err := c.ZFS().Destroy(ctx, "tank/user@z8r", zfsexec.DestroyOptions{}); errors.Is(err, agent.ErrRefused) {
		t.Errorf("destroy of a missing snapshot: %v, want no refusal", err)
	}
}

// TestCheckEffect_PlatformRenameAside: only a filesystem carrying
// z8r.dev:replica-of set locally is moved aside; another is refused and
// stays where it is.
func TestCheckEffect_PlatformRenameAside(t *testing.T) {
	ctx := context.Background()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "effect-rename")[0]
	z := n.ZFS()
	c := effectAgent(t, n)

	effMust(t, z.CreateFilesystem(ctx, "tank/user", zfsexec.CreateOptions{Props: map[string]string{"canmount": "noauto"}}))
	effMust(t, z.CreateFilesystem(ctx, "tank/rep", zfsexec.CreateOptions{Props: map[string]string{
		"canmount": "noauto", replicate.ReplicaOfProp: "tank/src"}}))
	now := mustTime(t)
	if err := c.ZFS().Rename(ctx, "tank/user", snapname.DivergedName("tank/user", now)); !errors.Is(err, agent.ErrRefused) {
		t.Fatalf("rename of a non-replica aside: %v, want ErrRefused", err)
	}
	if ok, err := z.Exists(ctx, "tank/user"); err != nil || !ok {
		t.Fatalf("tank/user after a refused rename: exists %v, %v", ok, err)
	}
	aside := snapname.DivergedName("tank/rep", now)
	if err := c.ZFS().Rename(ctx, "tank/rep", aside); err != nil {
		t.Fatalf("rename of a replica aside: %v", err)
	}
	if ok, err := z.Exists(ctx, aside); err != nil || !ok {
		t.Fatalf("%s after the rename: exists %v, %v", aside, ok, err)
	}
}

// TestCheckEffect_PlatformPromotion: on a real zfs-fuse node, through a
// real agent, the promotion forms are admitted only on a z8r replica:
// readonly=off and canmount=on only with z8r.dev:replica-of set locally
// (not on a plain dataset, not when the mark is inherited), mount only at
// an inherited mountpoint, promote only of a marked clone, and the rename
// to the tail form only of a marked filesystem. A refused request changes
// nothing.
func TestCheckEffect_PlatformPromotion(t *testing.T) {
	ctx := context.Background()
	n := zfsnodes.Start(t, zfsnodes.Options{}, "effect-promote")[0]
	z := n.ZFS()
	c := effectAgent(t, n).ZFS()
	noauto := func(props map[string]string) zfsexec.CreateOptions {
		m := map[string]string{"canmount": "noauto", "readonly": "on"}
		for k, v := range props {
			m[k] = v
		}
		return zfsexec.CreateOptions{Props: m}
	}
	prop := func(t *testing.T, name, p string) zfsexec.Property {
		t.Helper()
		got, err := z.Get(ctx, name, p)
		effMust(t, err)
		return got[p]
	}
	refused := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, agent.ErrRefused) {
			t.Fatalf("%s: %v, want ErrRefused", what, err)
		}
	}
	effMust(t, z.CreateFilesystem(ctx, "tank/plain", noauto(nil)))
	effMust(t, z.CreateFilesystem(ctx, "tank/marked", noauto(map[string]string{replicate.ReplicaOfProp: "n1:tank/src"})))
	effMust(t, z.CreateFilesystem(ctx, "tank/marked/child", noauto(nil)))

	t.Run("ReadonlyOff", func(t *testing.T) {
		refused(t, "readonly=off on a plain dataset", c.Set(ctx, "tank/plain", map[string]string{"readonly": "off"}))
		if p := prop(t, "tank/plain", "readonly"); p.Value != "on" {
			t.Fatalf("tank/plain readonly after a refused set: %+v", p)
		}
		if p := prop(t, "tank/marked/child", replicate.ReplicaOfProp); !p.Inherited() {
			t.Fatalf("child's mark is not inherited: %+v", p)
		}
		refused(t, "readonly=off with an inherited mark", c.Set(ctx, "tank/marked/child", map[string]string{"readonly": "off"}))
		if p := prop(t, "tank/marked/child", "readonly"); p.Value != "on" {
			t.Fatalf("tank/marked/child readonly after a refused set: %+v", p)
		}
		effMust(t, c.Set(ctx, "tank/marked", map[string]string{"readonly": "off"}))
		if p := prop(t, "tank/marked", "readonly"); p.Value != "off" {
			t.Fatalf("tank/marked readonly after readonly=off: %+v", p)
		}
	})
	t.Run("CanmountOn", func(t *testing.T) {
		refused(t, "canmount=on on a plain dataset", c.Set(ctx, "tank/plain", map[string]string{"canmount": "on"}))
		if p := prop(t, "tank/plain", "canmount"); p.Value != "noauto" {
			t.Fatalf("tank/plain canmount after a refused set: %+v", p)
		}
		effMust(t, c.Set(ctx, "tank/marked", map[string]string{"canmount": "on"}))
		if p := prop(t, "tank/marked", "canmount"); p.Value != "on" {
			t.Fatalf("tank/marked canmount: %+v", p)
		}
	})
	t.Run("Mount", func(t *testing.T) {
		elsewhere := filepath.Join(n.Dir, "mnt", "elsewhere")
		effMust(t, z.CreateFilesystem(ctx, "tank/local-mp", noauto(map[string]string{"mountpoint": elsewhere})))
		refused(t, "mount at a local mountpoint", c.Mount(ctx, "tank/local-mp"))
		if p := prop(t, "tank/local-mp", "mounted"); p.Value != "no" {
			t.Fatalf("tank/local-mp mounted after a refused mount: %+v", p)
		}
		effMust(t, z.CreateFilesystem(ctx, "tank/inherited-mp", noauto(nil)))
		effMust(t, c.Mount(ctx, "tank/inherited-mp"))
		if p := prop(t, "tank/inherited-mp", "mounted"); p.Value != "yes" {
			t.Fatalf("tank/inherited-mp after mount: %+v", p)
		}
	})
	t.Run("Promote", func(t *testing.T) {
		effMust(t, z.CreateFilesystem(ctx, "tank/origin", noauto(nil)))
		effMust(t, z.Snapshot(ctx, "tank/origin@s1", nil))
		refused(t, "promote of a marked non-clone", c.Promote(ctx, "tank/marked"))
		effMust(t, z.Clone(ctx, "tank/origin@s1", "tank/clone-plain", map[string]string{"readonly": "on", "canmount": "noauto"}))
		refused(t, "promote of an unmarked clone", c.Promote(ctx, "tank/clone-plain"))
		if p := prop(t, "tank/clone-plain", "origin"); p.Value != "tank/origin@s1" {
			t.Fatalf("tank/clone-plain origin after a refused promote: %+v", p)
		}
		effMust(t, c.Clone(ctx, "tank/origin@s1", "tank/clone-marked", map[string]string{
			"readonly": "on", "canmount": "noauto", replicate.ReplicaOfProp: "n1:tank/src"}))
		effMust(t, c.Promote(ctx, "tank/clone-marked"))
		if p := prop(t, "tank/clone-marked", "origin"); p.Value != "-" {
			t.Fatalf("tank/clone-marked origin after promote: %+v", p)
		}
		if p := prop(t, "tank/origin", "origin"); p.Value != "tank/clone-marked@s1" {
			t.Fatalf("tank/origin origin after promote: %+v", p)
		}
		effMust(t, c.Inherit(ctx, "tank/clone-marked", replicate.ReplicaOfProp))
		if p := prop(t, "tank/clone-marked", replicate.ReplicaOfProp); p.Source == "local" {
			t.Fatalf("mark after inherit: %+v", p)
		}
	})
	t.Run("RenameTail", func(t *testing.T) {
		tail := func(fs string) string { return fs + "-z8r-tail-20261130T150405Z" }
		refused(t, "rename of a plain dataset to the tail form", c.Rename(ctx, "tank/plain", tail("tank/plain")))
		if ok, err := z.Exists(ctx, "tank/plain"); err != nil || !ok {
			t.Fatalf("tank/plain after a refused rename: exists %v, %v", ok, err)
		}
		effMust(t, z.CreateFilesystem(ctx, "tank/frozen", noauto(map[string]string{replicate.ReplicaOfProp: "n2:tank/new"})))
		effMust(t, c.Rename(ctx, "tank/frozen", tail("tank/frozen")))
		if ok, err := z.Exists(ctx, tail("tank/frozen")); err != nil || !ok {
			t.Fatalf("%s after the rename: exists %v, %v", tail("tank/frozen"), ok, err)
		}
	})
}
