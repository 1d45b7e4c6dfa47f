package replicate

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// ozObject is a snapshot or bookmark of the fake OpenZFS node.
type ozObject struct {
	name string // tank/d@s or tank/d#b
	guid uint64
	txg  uint64
	tags map[string]bool
}

// ozNode is a minimal OpenZFS node for protection tests: one filesystem
// with snapshots and bookmarks; it answers version, the listing, hold,
// release, holds, bookmark and destroy, and records every argv.
type ozNode struct {
	mu   sync.Mutex
	fs   string
	objs []*ozObject
	ran  []string
}

func (n *ozNode) add(name string, guid, txg uint64, tags ...string) {
	o := &ozObject{name: name, guid: guid, txg: txg, tags: map[string]bool{}}
	for _, t := range tags {
		o.tags[t] = true
	}
	n.objs = append(n.objs, o)
}

func (n *ozNode) find(name string) *ozObject {
	for _, o := range n.objs {
		if o.name == name {
			return o
		}
	}
	return nil
}

func (n *ozNode) names() []string {
	var out []string
	for _, o := range n.objs {
		out = append(out, o.name)
	}
	sort.Strings(out)
	return out
}

func (n *ozNode) Run(_ context.Context, c zfsexec.Command) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := c.Argv
	n.ran = append(n.ran, strings.Join(a, " "))
	fail := func(msg string) error { return &zfsexec.CommandError{Argv: a, ExitCode: 1, Stderr: msg + "\n"} }
	out := func(s string) error { _, err := io.WriteString(c.Stdout, s); return err }
	last := a[len(a)-1]
	switch {
	case len(a) == 2 && a[1] == "version":
		return out("zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n")
	case a[1] == "get" && last == n.fs:
		var b strings.Builder
		row := func(name, prop, val string) { fmt.Fprintf(&b, "%s\t%s\t%s\t-\n", name, prop, val) }
		row(n.fs, "type", "filesystem")
		row(n.fs, "guid", "1")
		row(n.fs, "createtxg", "1")
		row(n.fs, "creation", "1")
		row(n.fs, "userrefs", "-")
		for _, o := range n.objs {
			typ, refs := "snapshot", fmt.Sprint(len(o.tags))
			if strings.Contains(o.name, "#") {
				typ, refs = "bookmark", "-"
			}
			row(o.name, "type", typ)
			row(o.name, "guid", fmt.Sprint(o.guid))
			row(o.name, "createtxg", fmt.Sprint(o.txg))
			row(o.name, "creation", fmt.Sprint(o.txg))
			row(o.name, "userrefs", refs)
		}
		return out(b.String())
	case a[1] == "hold" || a[1] == "release":
		o := n.find(last)
		if o == nil {
			return fail(fmt.Sprintf("cannot open '%s': dataset does not exist", last))
		}
		tag := a[2]
		if a[1] == "hold" {
			if o.tags[tag] {
				return fail(fmt.Sprintf("cannot hold snapshot '%s': tag already exists on this dataset", last))
			}
			o.tags[tag] = true
			return nil
		}
		if !o.tags[tag] {
			return fail(fmt.Sprintf("cannot release '%s' from '%s': no such tag on this dataset", tag, last))
		}
		delete(o.tags, tag)
		return nil
	case a[1] == "holds":
		o := n.find(last)
		var b strings.Builder
		for t := range o.tags {
			fmt.Fprintf(&b, "%s\t%s\tThu Nov 26 10:00 2026\n", o.name, t)
		}
		return out(b.String())
	case a[1] == "bookmark":
		if n.find(a[3]) != nil {
			return fail(fmt.Sprintf("cannot create bookmark '%s': bookmark exists", a[3]))
		}
		s := n.find(a[2])
		n.add(a[3], s.guid, s.txg)
		return nil
	case a[1] == "destroy":
		n.objs = slices.DeleteFunc(n.objs, func(o *ozObject) bool { return o.name == last })
		return nil
	}
	return fail("ozNode: unexpected command " + strings.Join(a, " "))
}

func (n *ozNode) destroyed() []string {
	var out []string
	for _, r := range n.ran {
		if strings.HasPrefix(r, "zfs destroy ") {
			out = append(out, strings.TrimPrefix(r, "zfs destroy "))
		}
	}
	return out
}

// TestUnprotect_KeepsBookmark: removing a target releases its base and
// step holds but keeps its bookmark, and touches no other target's holds
// or bookmarks (issue 15 case 7: the old code destroyed the bookmark, so
// re-adding the target found no common base).
func TestUnprotect_KeepsBookmark(t *testing.T) {
	a, b := "node2-tank-d", "node3-tank-d"
	n := &ozNode{fs: "tank/d"}
	n.add("tank/d@s1", 11, 10, snapname.HoldTag(a), snapname.StepHoldTag(a), "operator")
	n.add("tank/d#"+snapname.BookmarkName(a, "s1"), 11, 10)
	n.add("tank/d@s2", 12, 20, snapname.HoldTag(b))
	n.add("tank/d#"+snapname.BookmarkName(b, "s2"), 12, 20)
	if err := Unprotect(context.Background(), zfsexec.New(n), "tank/d", a); err != nil {
		t.Fatal(err)
	}
	if d := n.destroyed(); len(d) != 0 {
		t.Errorf("Unprotect destroyed %v; want the bookmark kept", d)
	}
	if got := n.find("tank/d@s1").tags; len(got) != 1 || !got["operator"] {
		t.Errorf("tags left on @s1 = %v, want only the operator's", got)
	}
	if got := n.find("tank/d@s2").tags; !got[snapname.HoldTag(b)] {
		t.Errorf("other target's hold released: %v", got)
	}
	if n.find("tank/d#"+snapname.BookmarkName(a, "s1")) == nil || n.find("tank/d#"+snapname.BookmarkName(b, "s2")) == nil {
		t.Errorf("bookmarks left %v", n.names())
	}
}

// TestProtect_DropsOnlyOwnOlderBookmarks: moving a target's base drops
// that target's own bookmarks of older snapshots only; another target's
// bookmark of the same old snapshot (its current base) stays.
func TestProtect_DropsOnlyOwnOlderBookmarks(t *testing.T) {
	a, b := "node2-tank-d", "node3-tank-d"
	n := &ozNode{fs: "tank/d"}
	n.add("tank/d@s1", 11, 10, snapname.HoldTag(a), snapname.HoldTag(b))
	n.add("tank/d#"+snapname.BookmarkName(a, "s1"), 11, 10)
	n.add("tank/d#"+snapname.BookmarkName(b, "s1"), 11, 10)
	n.add("tank/d@s2", 12, 20)
	n.add("tank/d@s3", 13, 30)
	n.add("tank/d#"+snapname.BookmarkName(a, "s3"), 13, 30) // newer than the new base: not ours to judge
	if err := Protect(context.Background(), zfsexec.New(n), "tank/d", a, "s2"); err != nil {
		t.Fatal(err)
	}
	if d := n.destroyed(); !slices.Equal(d, []string{"tank/d#" + snapname.BookmarkName(a, "s1")}) {
		t.Errorf("destroyed %v, want only target a's bookmark of s1", d)
	}
	for _, want := range []string{"tank/d#" + snapname.BookmarkName(b, "s1"), "tank/d#" + snapname.BookmarkName(a, "s2"), "tank/d#" + snapname.BookmarkName(a, "s3")} {
		if n.find(want) == nil {
			t.Errorf("%s missing; have %v", want, n.names())
		}
	}
	if s1 := n.find("tank/d@s1").tags; s1[snapname.HoldTag(a)] || !s1[snapname.HoldTag(b)] {
		t.Errorf("@s1 tags %v: want a's released, b's kept", s1)
	}
	if !n.find("tank/d@s2").tags[snapname.HoldTag(a)] {
		t.Error("new base @s2 not held")
	}
}

// TestHoldTags_OpenZFSListsZ8RTags: with `zfs holds`, every z8r tag is
// reported per snapshot and other tags are not.
func TestHoldTags_OpenZFSListsZ8RTags(t *testing.T) {
	n := &ozNode{fs: "tank/d"}
	n.add("tank/d@s1", 11, 10, snapname.HoldTag("x"), snapname.StepHoldTag("x"), "operator")
	n.add("tank/d@s2", 12, 20)
	h, err := HoldTags(context.Background(), zfsexec.New(n), "tank/d")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{snapname.HoldTag("x"), snapname.StepHoldTag("x")}
	sort.Strings(want)
	if len(h.Tags) != 1 || !slices.Equal(h.Tags["s1"], want) || len(h.Unknown) != 0 {
		t.Errorf("HoldTags = %+v, want s1: %v", h, want)
	}
}
