package zfsexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// ZFS runs typed ZFS operations on one node through a Runner. It validates
// every name before any process starts and detects the node's capabilities
// once, on first need. A ZFS is safe for concurrent use.
type ZFS struct {
	runner Runner

	mu   sync.Mutex
	caps *Capabilities
}

// New returns a ZFS that runs its commands with r.
func New(r Runner) *ZFS { return &ZFS{runner: r} }

// Runner returns the runner the operations use.
func (z *ZFS) Runner() Runner { return z.runner }

// Capabilities returns the node's capabilities, detecting them on first call.
func (z *ZFS) Capabilities(ctx context.Context) (Capabilities, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.caps != nil {
		return *z.caps, nil
	}
	c, err := DetectCapabilities(ctx, z.runner)
	if err != nil {
		return Capabilities{}, err
	}
	z.caps = &c
	return c, nil
}

func (z *ZFS) output(ctx context.Context, argv ...string) (string, error) {
	var out bytes.Buffer
	if err := z.runner.Run(ctx, Command{Argv: argv, Stdout: &out}); err != nil {
		return "", err
	}
	return out.String(), nil
}

func (z *ZFS) run(ctx context.Context, argv ...string) error {
	return z.runner.Run(ctx, Command{Argv: argv})
}

// ListOptions selects what List returns.
type ListOptions struct {
	// Depth limits recursion: 0 lists only the root, 1 its direct children
	// (including its snapshots and bookmarks), -1 everything below.
	Depth int
	// UserProps are user properties (module:name) to read for each object.
	UserProps []string
}

// List returns root and, per opts.Depth, the filesystems, volumes,
// snapshots and bookmarks below it, with guid, createtxg, creation, userrefs
// and the requested user properties. It reads `zfs get -H -p` because
// zfs-fuse has no `zfs list -p`.
func (z *ZFS) List(ctx context.Context, root string, opts ListOptions) ([]Dataset, error) {
	if err := validateAny(root); err != nil {
		return nil, err
	}
	props := append([]string{}, listProps...)
	for _, p := range opts.UserProps {
		if err := ValidateProperty(p); err != nil {
			return nil, err
		}
		if !strings.Contains(p, ":") {
			return nil, nameErr(p, "not a user property (module:name)")
		}
		props = append(props, p)
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	argv := []string{"zfs", "get", "-H", "-p"}
	switch {
	case opts.Depth < 0:
		argv = append(argv, "-r")
	case opts.Depth > 0:
		argv = append(argv, "-d", fmt.Sprint(opts.Depth))
	}
	if caps.Bookmarks {
		argv = append(argv, "-t", "filesystem,volume,snapshot,bookmark")
	}
	argv = append(argv, "-o", "name,property,value,source", strings.Join(props, ","), root)
	out, err := z.output(ctx, argv...)
	if err != nil {
		return nil, err
	}
	rows, err := ParseGet(argv, out)
	if err != nil {
		return nil, err
	}
	return ParseDatasets(argv, rows)
}

// Snapshots returns the snapshots and bookmarks of one filesystem, oldest
// first by createtxg.
func (z *ZFS) Snapshots(ctx context.Context, fs string, userProps ...string) ([]Dataset, error) {
	if err := ValidateDataset(fs); err != nil {
		return nil, err
	}
	all, err := z.List(ctx, fs, ListOptions{Depth: 1, UserProps: userProps})
	if err != nil {
		return nil, err
	}
	var snaps []Dataset
	for _, d := range all {
		if (d.IsSnapshot() || d.IsBookmark()) && d.Filesystem() == fs {
			snaps = append(snaps, d)
		}
	}
	SortByCreateTXG(snaps)
	return snaps, nil
}

// Exists reports whether a dataset, snapshot or bookmark exists.
func (z *ZFS) Exists(ctx context.Context, name string) (bool, error) {
	_, err := z.Get(ctx, name, "guid")
	if errors.Is(err, ErrDatasetNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Get reads properties of one object.
func (z *ZFS) Get(ctx context.Context, name string, props ...string) (map[string]Property, error) {
	if err := validateAny(name); err != nil {
		return nil, err
	}
	if len(props) == 0 {
		return nil, errors.New("zfsexec: get: no properties asked")
	}
	for _, p := range props {
		if err := ValidateProperty(p); err != nil {
			return nil, err
		}
	}
	argv := []string{"zfs", "get", "-H", "-p", "-o", "name,property,value,source", strings.Join(props, ","), name}
	out, err := z.output(ctx, argv...)
	if err != nil {
		return nil, err
	}
	rows, err := ParseGet(argv, out)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Property, len(rows))
	for _, r := range rows {
		if r.Name != name {
			return nil, &ParseError{Argv: argv, Text: r.Name, Reason: "row for another object"}
		}
		m[r.Prop] = r.Property
	}
	return m, nil
}

// Set sets properties, one `zfs set` per property (zfs-fuse takes one).
func (z *ZFS) Set(ctx context.Context, name string, props map[string]string) error {
	if err := validateAny(name); err != nil {
		return err
	}
	args, err := propArgs(props)
	if err != nil {
		return err
	}
	for _, kv := range args {
		if err := z.run(ctx, "zfs", "set", kv, name); err != nil {
			return err
		}
	}
	return nil
}

// propArgs validates props and renders them as sorted key=value strings.
func propArgs(props map[string]string) ([]string, error) {
	keys := make([]string, 0, len(props))
	for k, v := range props {
		if err := ValidateProperty(k); err != nil {
			return nil, err
		}
		if err := ValidatePropertyValue(k, v); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + props[k]
	}
	return out, nil
}

// CreateOptions are options for CreateFilesystem.
type CreateOptions struct {
	// Parents creates missing parent datasets (-p).
	Parents bool
	// Props are set at creation (-o k=v).
	Props map[string]string
}

// CreateFilesystem creates a filesystem.
func (z *ZFS) CreateFilesystem(ctx context.Context, name string, opts CreateOptions) error {
	if err := ValidateDataset(name); err != nil {
		return err
	}
	args, err := propArgs(opts.Props)
	if err != nil {
		return err
	}
	argv := []string{"zfs", "create"}
	if opts.Parents {
		argv = append(argv, "-p")
	}
	for _, kv := range args {
		argv = append(argv, "-o", kv)
	}
	return z.run(ctx, append(argv, name)...)
}

// Snapshot creates snap (dataset@name) with the given user properties set
// atomically at creation.
func (z *ZFS) Snapshot(ctx context.Context, snap string, props map[string]string) error {
	if err := ValidateSnapshot(snap); err != nil {
		return err
	}
	args, err := propArgs(props)
	if err != nil {
		return err
	}
	argv := []string{"zfs", "snapshot"}
	for _, kv := range args {
		argv = append(argv, "-o", kv)
	}
	return z.run(ctx, append(argv, snap)...)
}

// DestroyOptions are options for Destroy.
type DestroyOptions struct {
	// Defer marks a held snapshot for destruction when its last hold is
	// released (-d) instead of failing with ErrDatasetBusy.
	Defer bool
}

// Destroy destroys one snapshot or bookmark. It refuses filesystems: z8r
// never destroys a filesystem. Destroying something that does not exist
// succeeds (idempotent).
func (z *ZFS) Destroy(ctx context.Context, name string, opts DestroyOptions) error {
	if err := ValidateSnapshotOrBookmark(name); err != nil {
		return err
	}
	argv := []string{"zfs", "destroy"}
	if opts.Defer {
		if strings.Contains(name, "#") {
			return nameErr(name, "deferred destroy applies to snapshots only")
		}
		argv = append(argv, "-d")
	}
	err := z.run(ctx, append(argv, name)...)
	if errors.Is(err, ErrDatasetNotExist) {
		return nil
	}
	return err
}

// Hold places a user hold tag on a snapshot.
func (z *ZFS) Hold(ctx context.Context, tag, snap string) error {
	return z.tagCommand(ctx, "hold", tag, snap)
}

// Release removes a user hold tag from a snapshot.
func (z *ZFS) Release(ctx context.Context, tag, snap string) error {
	return z.tagCommand(ctx, "release", tag, snap)
}

// tagCommand runs `zfs hold|release TAG SNAP` after validating both.
func (z *ZFS) tagCommand(ctx context.Context, verb, tag, snap string) error {
	if err := ValidateTag(tag); err != nil {
		return err
	}
	if err := ValidateSnapshot(snap); err != nil {
		return err
	}
	return z.run(ctx, "zfs", verb, tag, snap)
}

// Holds returns the hold tags on a snapshot. zfs-fuse's `zfs holds` is
// broken; there, use the UserRefs count from List.
func (z *ZFS) Holds(ctx context.Context, snap string) ([]string, error) {
	if err := ValidateSnapshot(snap); err != nil {
		return nil, err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if !caps.HoldsList {
		return nil, caps.unsupported("zfs holds")
	}
	argv := []string{"zfs", "holds", "-H", snap}
	out, err := z.output(ctx, argv...)
	if err != nil {
		return nil, err
	}
	m, err := ParseHolds(argv, out)
	if err != nil {
		return nil, err
	}
	tags := m[snap]
	sort.Strings(tags)
	return tags, nil
}

// RollbackOptions are options for Rollback.
type RollbackOptions struct {
	// DestroyNewer destroys snapshots newer than the target (-r). Only a
	// policy that explicitly allows it may ask for this.
	DestroyNewer bool
}

// Rollback rolls a filesystem back to snap.
func (z *ZFS) Rollback(ctx context.Context, snap string, opts RollbackOptions) error {
	if err := ValidateSnapshot(snap); err != nil {
		return err
	}
	argv := []string{"zfs", "rollback"}
	if opts.DestroyNewer {
		argv = append(argv, "-r")
	}
	return z.run(ctx, append(argv, snap)...)
}

// Bookmark creates bookmark (dataset#name) from snap.
func (z *ZFS) Bookmark(ctx context.Context, snap, bookmark string) error {
	if err := ValidateSnapshot(snap); err != nil {
		return err
	}
	if err := ValidateBookmark(bookmark); err != nil {
		return err
	}
	if a, _ := SplitSnapshot(snap); a != bookmarkFS(bookmark) {
		return nameErr(bookmark, "bookmark must be on the snapshot's dataset %q", a)
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.Bookmarks {
		return caps.unsupported("bookmarks")
	}
	return z.run(ctx, "zfs", "bookmark", snap, bookmark)
}

func bookmarkFS(name string) string {
	fs, _ := SplitSnapshot(name)
	return fs
}

// validateAny accepts a dataset, snapshot or bookmark name.
func validateAny(name string) error {
	switch {
	case strings.Contains(name, "@"):
		return ValidateSnapshot(name)
	case strings.Contains(name, "#"):
		return ValidateBookmark(name)
	default:
		return ValidateDataset(name)
	}
}

// resumeTokenRE is the shape of a receive_resume_token: a version, a
// checksum and a hex-encoded compressed nvlist, joined by '-'.
var resumeTokenRE = regexp.MustCompile(`^[0-9a-fA-F]+(-[0-9a-fA-F]+)+$`)

// ResumeToken returns the receive_resume_token of fs ("" when none). On
// nodes without resumable receive it returns "" and no error.
func (z *ZFS) ResumeToken(ctx context.Context, fs string) (string, error) {
	if err := ValidateDataset(fs); err != nil {
		return "", err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return "", err
	}
	if !caps.ResumableRecv {
		return "", nil
	}
	p, err := z.Get(ctx, fs, "receive_resume_token")
	if err != nil {
		return "", err
	}
	v := p["receive_resume_token"].Value
	if v == "-" || v == "" {
		return "", nil
	}
	if !resumeTokenRE.MatchString(v) {
		return "", &ParseError{Argv: []string{"zfs", "get", "receive_resume_token", fs}, Text: v, Reason: "not a resume token"}
	}
	return v, nil
}

// AbortRecv discards the partial state of an interrupted resumable receive
// into fs (`zfs recv -A`).
func (z *ZFS) AbortRecv(ctx context.Context, fs string) error {
	if err := ValidateDataset(fs); err != nil {
		return err
	}
	caps, err := z.Capabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.ResumableRecv {
		return caps.unsupported("resumable receive")
	}
	return z.run(ctx, "zfs", "recv", "-A", fs)
}

// Rename renames the filesystem src to dst (`zfs rename SRC DST`). Both
// must be filesystem names (no snapshots or bookmarks) with the same
// parent: z8r only moves a dataset aside beside itself, never elsewhere in
// the pool. A taken dst is ErrDatasetExists.
func (z *ZFS) Rename(ctx context.Context, src, dst string) error {
	if err := ValidateDataset(src); err != nil {
		return err
	}
	if err := ValidateDataset(dst); err != nil {
		return err
	}
	if !strings.Contains(src, "/") {
		return nameErr(src, "a pool's root dataset cannot be renamed")
	}
	if path.Dir(src) != path.Dir(dst) {
		return nameErr(dst, "rename must keep the parent %q", path.Dir(src))
	}
	if src == dst {
		return nameErr(dst, "rename to the same name")
	}
	return z.run(ctx, "zfs", "rename", src, dst)
}

// Unmount unmounts the filesystem fs (`zfs umount FS`, never forced: a
// filesystem in use fails with ErrDatasetBusy and stays mounted). zfs-fuse
// renames only unmounted filesystems.
func (z *ZFS) Unmount(ctx context.Context, fs string) error {
	if err := ValidateDataset(fs); err != nil {
		return err
	}
	return z.run(ctx, "zfs", "umount", fs)
}
