package volsnap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/zfsexec"
)

// PropContent is the ZFS user property z8r sets, at creation, on a snapshot
// it takes for a VolumeSnapshotContent: the content's name. A retry finds
// the snapshot by its name and adopts it only if this property matches.
// z8r does not mark these snapshots z8r.dev:owner=z8r: their lifetime is
// the content's, never a retention policy's.
const PropContent = "z8r.dev:volumesnapshotcontent"

// SnapshotPrefix begins the short name of every snapshot z8r takes for a
// VolumeSnapshot, as the csi-snapshotter sidecar names them by default.
const SnapshotPrefix = "snapshot-"

// ErrBadHandle is matched by errors about snapshot handles.
var ErrBadHandle = errors.New("invalid snapshot handle")

// SnapshotName returns the short name of the ZFS snapshot for a dynamic
// content: "snapshot-<VolumeSnapshot UID>", the name the csi-snapshotter
// sidecar gives the driver. It depends only on the content, so a retry
// after a crash finds the snapshot an earlier attempt took.
func SnapshotName(c *snapshotv1.VolumeSnapshotContent) (string, error) {
	uid := string(c.Spec.VolumeSnapshotRef.UID)
	if uid == "" {
		return "", fmt.Errorf("content %s is not bound to a VolumeSnapshot (no volumeSnapshotRef.uid)", c.Name)
	}
	return SnapshotPrefix + uid, nil
}

// Handle is the snapshotHandle z8r writes: the full ZFS snapshot name.
func Handle(dataset, short string) string { return dataset + "@" + short }

// ParseHandle splits a z8r snapshot handle (dataset@short).
func ParseHandle(h string) (dataset, short string, err error) {
	if err := zfsexec.ValidateSnapshot(h); err != nil {
		return "", "", fmt.Errorf("%w %q: %w", ErrBadHandle, h, err)
	}
	dataset, short = zfsexec.SplitSnapshot(h)
	return dataset, short, nil
}

// ForeignShortName returns the snapshot part of another driver's handle
// (zfs-localpv's "<volumeHandle>@snapshot-<uid>": what follows the last
// '@'); the dataset comes from resolving the volume.
func ForeignShortName(h string) (string, error) {
	i := strings.LastIndexByte(h, '@')
	if i < 0 {
		return "", fmt.Errorf("%w %q: no '@' separates a snapshot name", ErrBadHandle, h)
	}
	short := h[i+1:]
	if err := zfsexec.ValidateSnapshot("x@" + short); err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrBadHandle, h, err)
	}
	return short, nil
}

// TargetID identifies a VolumeSnapshot replication target on its source
// dataset: it names the hold that protects the target's incremental base.
// It differs from a DatasetReplication target's id for the same node and
// dataset, so the two never release each other's holds.
func TargetID(t Target) string { return "vs-" + policy.ID(t.Node, t.Dataset) }

// ReplicaContentName names the pre-provisioned VolumeSnapshotContent that
// shows the replica of source (a content name) at t; it fits the 253
// characters of an object name.
func ReplicaContentName(source string, t Target) string {
	suffix := "-" + policy.ID(t.Node, t.Dataset)
	if len(source)+len(suffix) > 253 {
		source = strings.TrimRight(source[:253-len(suffix)], ".-")
	}
	return source + suffix
}

// RestoreSize is the size a volume restored from a snapshot needs: a
// volume's volsize, else the snapshot's referenced bytes. props are the
// snapshot's, from `zfs get -p referenced,volsize`.
func RestoreSize(props map[string]zfsexec.Property) (int64, error) {
	if v, ok := props["volsize"]; ok {
		if n, err := strconv.ParseInt(v.Value, 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	v, ok := props["referenced"]
	if !ok {
		return 0, errors.New("volsnap: no referenced property")
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("volsnap: referenced %q: %w", v.Value, err)
	}
	return n, nil
}

// MarkedFor reports whether p, the value of PropContent on a snapshot, is
// z8r's mark for content: set locally on that snapshot (not received in a
// stream, not inherited) to content's name. Only then did z8r create the
// snapshot for that content, and only then may deleting the content
// destroy it.
func MarkedFor(p zfsexec.Property, content string) bool {
	return p.Source == "local" && p.Value == content
}
