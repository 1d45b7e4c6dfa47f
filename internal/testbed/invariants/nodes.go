package invariants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// Read lists dataset on node n as ZFS reports it, with z8r's properties.
func Read(ctx context.Context, n *zfsnodes.Node, dataset string) (Listing, error) {
	l := Listing{Node: n.Name, Dataset: dataset}
	items, err := n.ZFS().Snapshots(ctx, dataset, snapname.OwnerProp, snapname.PolicyProp)
	if errors.Is(err, zfsexec.ErrDatasetNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("invariants: list %s:%s: %w", n.Name, dataset, err)
	}
	l.Exists, l.Items = true, items
	return l, nil
}

// Contents returns the SHA-256 of every regular file of snapshot (a full
// name, dataset@snap) on node n, keyed by path relative to its root. It
// reads through a temporary clone in the snapshot's pool, which it
// destroys before returning; the snapshot itself is not changed.
func Contents(ctx context.Context, n *zfsnodes.Node, snapshot string) (sums map[string]string, err error) {
	fsName, _ := zfsexec.SplitSnapshot(snapshot)
	pool, _, _ := strings.Cut(fsName, "/")
	var b [4]byte
	_, _ = rand.Read(b[:])
	clone := pool + "/z8r-invariants-" + hex.EncodeToString(b[:])
	if _, err := n.Exec(ctx, "zfs", "clone", snapshot, clone); err != nil {
		return nil, fmt.Errorf("invariants: clone %s: %w", snapshot, err)
	}
	defer func() {
		// A clone left behind would make its origin unprunable: failing to
		// destroy it fails the check.
		// "dataset is busy" clears within a second or two after reading.
		dctx := context.WithoutCancel(ctx)
		var derr error
		for attempt := 0; attempt < 20; attempt++ {
			_, _ = n.Exec(dctx, "zfs", "umount", clone)
			if _, derr = n.Exec(dctx, "zfs", "destroy", clone); derr == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err == nil {
			err = fmt.Errorf("invariants: destroy the temporary clone %s: %w", clone, derr)
		}
	}()
	if _, err := n.Exec(ctx, "zfs", "mount", clone); err != nil && !strings.Contains(err.Error(), "already mounted") {
		return nil, fmt.Errorf("invariants: mount %s: %w", clone, err)
	}
	mp, err := n.ZFS().Get(ctx, clone, "mountpoint")
	if err != nil {
		return nil, fmt.Errorf("invariants: mountpoint of %s: %w", clone, err)
	}
	root := n.Path(mp["mountpoint"].Value)
	sums = map[string]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sums[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("invariants: read %s: %w", snapshot, err)
	}
	return sums, nil
}

// CheckI4 compares, for every snapshot of the target whose GUID the source
// has as a snapshot, the files of both. It returns the violations and how
// many snapshot pairs it compared.
func CheckI4(ctx context.Context, srcNode *zfsnodes.Node, src Listing, tgtNode *zfsnodes.Node, tgt Listing) ([]Violation, int, error) {
	var out []Violation
	compared := 0
	for _, d := range tgt.Items {
		if !d.IsSnapshot() {
			continue
		}
		s := src.ByGUID(d.GUID)
		if s == nil || !s.IsSnapshot() {
			continue
		}
		want, err := Contents(ctx, srcNode, s.Name)
		if err != nil {
			return out, compared, err
		}
		got, err := Contents(ctx, tgtNode, d.Name)
		if err != nil {
			return out, compared, err
		}
		compared++
		if diff := diffSums(want, got); diff != "" {
			out = append(out, Violation{Invariant: I4, Node: tgt.Node, Dataset: tgt.Dataset,
				Detail: fmt.Sprintf("replica @%s differs from source @%s (guid %d): %s", d.ShortName(), s.ShortName(), d.GUID, diff)})
		}
	}
	return out, compared, nil
}

// diffSums describes how got differs from want ("" if equal).
func diffSums(want, got map[string]string) string {
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, p+" missing")
		case g != w:
			diffs = append(diffs, p+" differs")
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, p+" extra")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, ", ")
}

// ProbeTags reports which of tags are held on snapshot (a full name) on
// node n. zfs-fuse cannot list hold tags (`zfs holds` is broken there), so
// each tag is probed by placing it: "tag already exists" means it is held;
// a hold that succeeds was not there and is released at once. Only call it
// while nothing else changes holds (controller stopped).
func ProbeTags(ctx context.Context, n *zfsnodes.Node, snapshot string, tags []string) ([]string, error) {
	var held []string
	for _, tag := range tags {
		_, err := n.Exec(ctx, "zfs", "hold", tag, snapshot)
		switch {
		case err == nil:
			if _, err := n.Exec(ctx, "zfs", "release", tag, snapshot); err != nil {
				return held, fmt.Errorf("invariants: release probe tag %s from %s: %w", tag, snapshot, err)
			}
		case strings.Contains(err.Error(), "tag already exists"):
			held = append(held, tag)
		default:
			return held, fmt.Errorf("invariants: probe tag %s on %s: %w", tag, snapshot, err)
		}
	}
	return held, nil
}
