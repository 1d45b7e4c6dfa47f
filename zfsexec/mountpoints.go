package zfsexec

import (
	"context"
	"strings"
)

// Mountpoints returns the mountpoint property of every filesystem in root
// and below it (`zfs get -H -p -r mountpoint ROOT`), keyed by dataset.
// Values are as ZFS prints them: a path, "legacy" or "none"; volumes and
// snapshots (which print "-") are left out. z8r uses it to find the
// dataset behind a `local` PersistentVolume's path.
func (z *ZFS) Mountpoints(ctx context.Context, root string) (map[string]string, error) {
	if err := ValidateDataset(root); err != nil {
		return nil, err
	}
	argv := []string{"zfs", "get", "-H", "-p", "-r", "-o", "name,property,value,source", "mountpoint", root}
	out, err := z.output(ctx, argv...)
	if err != nil {
		return nil, err
	}
	rows, err := ParseGet(argv, out)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, r := range rows {
		if r.Prop != "mountpoint" {
			return nil, &ParseError{Argv: argv, Text: r.Prop, Reason: "row for another property"}
		}
		if strings.ContainsAny(r.Name, "@#") || r.Value == "-" {
			continue
		}
		m[r.Name] = r.Value
	}
	return m, nil
}
