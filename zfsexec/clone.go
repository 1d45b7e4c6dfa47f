package zfsexec

import (
	"context"
	"strings"
)

// Clone creates the filesystem fs as a clone of the snapshot snap (`zfs
// clone [-o k=v]... SNAP FS`, properties sorted). A clone lives in its
// origin's pool, so snap and fs must name the same pool. A taken fs is
// ErrDatasetExists; a missing snap is ErrDatasetNotExist.
func (z *ZFS) Clone(ctx context.Context, snap, fs string, props map[string]string) error {
	if err := ValidateSnapshot(snap); err != nil {
		return err
	}
	if err := ValidateDataset(fs); err != nil {
		return err
	}
	if !strings.Contains(fs, "/") {
		return nameErr(fs, "a clone cannot be a pool's root dataset")
	}
	if poolOf(snap) != poolOf(fs) {
		return nameErr(fs, "a clone must be in its origin's pool %q", poolOf(snap))
	}
	args, err := propArgs(props)
	if err != nil {
		return err
	}
	argv := []string{"zfs", "clone"}
	for _, kv := range args {
		argv = append(argv, "-o", kv)
	}
	return z.run(ctx, append(argv, snap, fs)...)
}

// Promote makes the clone fs independent of its origin (`zfs promote FS`):
// fs takes over its origin snapshot and every older snapshot of the origin
// filesystem, and the former origin filesystem becomes a clone of fs. A
// filesystem that is not a clone is ErrNotClone.
func (z *ZFS) Promote(ctx context.Context, fs string) error {
	if err := ValidateDataset(fs); err != nil {
		return err
	}
	return z.run(ctx, "zfs", "promote", fs)
}

// Mount mounts the filesystem fs at its mountpoint property (`zfs mount
// FS`, no options).
func (z *ZFS) Mount(ctx context.Context, fs string) error {
	if err := ValidateDataset(fs); err != nil {
		return err
	}
	return z.run(ctx, "zfs", "mount", fs)
}

// Inherit clears the local value of prop on name (`zfs inherit PROP
// NAME`, never -r), so it takes its parent's value (or, for a user
// property, none).
func (z *ZFS) Inherit(ctx context.Context, name, prop string) error {
	if err := validateAny(name); err != nil {
		return err
	}
	if err := ValidateProperty(prop); err != nil {
		return err
	}
	return z.run(ctx, "zfs", "inherit", prop, name)
}

// poolOf returns the pool part of a dataset, snapshot or bookmark name.
func poolOf(name string) string {
	if i := strings.IndexAny(name, "/@#"); i >= 0 {
		return name[:i]
	}
	return name
}
