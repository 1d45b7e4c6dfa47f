package restore

import (
	"fmt"
	"path"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/zfsexec"
)

// Refusal is a spec the controller cannot restore: Reason is one of the
// ReplicaRestore condition reasons of api/v1alpha1. Nothing was changed.
type Refusal struct {
	Reason  string
	Message string
}

func (e *Refusal) Error() string { return e.Reason + ": " + e.Message }

func refuse(reason, format string, args ...any) error {
	return &Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// CheckSource refuses a source that names both or neither of a
// replication and a VolumeSnapshotContent, or a snapshot with a content
// (the API server refuses those too; this guards objects made before the
// rules, or by a client that skipped them).
func CheckSource(s z8rv1.RestoreSource) error {
	switch {
	case (s.Replication == "") == (s.VolumeSnapshotContent == ""):
		return refuse(z8rv1.ReasonInvalidSource, "name exactly one of source.replication and source.volumeSnapshotContent")
	case s.VolumeSnapshotContent != "" && s.Snapshot != "":
		return refuse(z8rv1.ReasonInvalidSource, "source.snapshot goes with source.replication: a VolumeSnapshotContent names its snapshot itself")
	case s.Node == "":
		return refuse(z8rv1.ReasonInvalidSource, "source.node is required")
	}
	if errs := validation.IsDNS1123Subdomain(s.Node); len(errs) > 0 {
		return refuse(z8rv1.ReasonInvalidSource, "source.node %q is not a node name: %s", s.Node, strings.Join(errs, "; "))
	}
	if s.Snapshot != "" {
		if err := zfsexec.ValidateSnapshot("pool@" + s.Snapshot); err != nil || strings.ContainsAny(s.Snapshot, "@#/") {
			return refuse(z8rv1.ReasonInvalidSource, "source.snapshot %q is not a snapshot's short name", s.Snapshot)
		}
	}
	return nil
}

// ReplicationDataset is the dataset a replication keeps on node: its
// source dataset on the source node, else the first target on node (in
// spec order). A node that is neither is NodeNotInSource.
func ReplicationDataset(dr *z8rv1.DatasetReplication, node string) (string, error) {
	if dr.Spec.Source.Node == node {
		return dr.Spec.Source.Dataset, nil
	}
	for _, t := range dr.Spec.Targets {
		if t.Node != node {
			continue
		}
		if t.Dataset != "" {
			return t.Dataset, nil
		}
		return dr.Spec.Source.Dataset, nil
	}
	nodes := []string{dr.Spec.Source.Node}
	for _, t := range dr.Spec.Targets {
		nodes = append(nodes, t.Node)
	}
	return "", refuse(z8rv1.ReasonNodeNotInSource, "node %s is neither the source nor a target of DatasetReplication %s (its nodes: %s)",
		node, dr.Name, strings.Join(nodes, ", "))
}

// ContentSnapshot is the snapshot a VolumeSnapshotContent records on node:
// the content's z8r.dev/node annotation must be node; the snapshot is its
// status.snapshotHandle (else spec.source.snapshotHandle, as a replica
// content has), a full dataset@short name unless z8r.dev/dataset names the
// dataset (another driver's handle).
func ContentSnapshot(c *snapshotv1.VolumeSnapshotContent, node string) (dataset, short string, err error) {
	recorded := c.Annotations[z8rv1.AnnotationNode]
	switch {
	case recorded == "":
		return "", "", refuse(z8rv1.ReasonNodeNotInSource, "VolumeSnapshotContent %s does not record a node (%s): z8r does not know where its snapshot is", c.Name, z8rv1.AnnotationNode)
	case recorded != node:
		return "", "", refuse(z8rv1.ReasonNodeNotInSource, "VolumeSnapshotContent %s is on node %s, not %s", c.Name, recorded, node)
	}
	var handle string
	switch {
	case c.Status != nil && c.Status.SnapshotHandle != nil:
		handle = *c.Status.SnapshotHandle
	case c.Spec.Source.SnapshotHandle != nil:
		handle = *c.Spec.Source.SnapshotHandle
	default:
		return "", "", refuse(z8rv1.ReasonSnapshotNotFound, "VolumeSnapshotContent %s has no snapshot handle yet", c.Name)
	}
	i := strings.LastIndexByte(handle, '@')
	if i < 0 {
		return "", "", refuse(z8rv1.ReasonSnapshotNotFound, "VolumeSnapshotContent %s: handle %q is not a snapshot", c.Name, handle)
	}
	dataset, short = handle[:i], handle[i+1:]
	if ds := c.Annotations[z8rv1.AnnotationDataset]; ds != "" {
		dataset = ds
	}
	if err := zfsexec.ValidateSnapshot(dataset + "@" + short); err != nil {
		return "", "", refuse(z8rv1.ReasonSnapshotNotFound, "VolumeSnapshotContent %s: %v", c.Name, err)
	}
	return dataset, short, nil
}

// PickSnapshot returns the snapshot named short among snaps (a
// filesystem's snapshots and bookmarks, oldest first), or the newest
// snapshot when short is "". None is SnapshotNotFound.
func PickSnapshot(node, dataset string, snaps []zfsexec.Dataset, short string) (zfsexec.Dataset, error) {
	var newest *zfsexec.Dataset
	for i := range snaps {
		s := snaps[i]
		if !s.IsSnapshot() {
			continue
		}
		if short != "" && s.ShortName() == short {
			return s, nil
		}
		if newest == nil || s.CreateTXG > newest.CreateTXG {
			newest = &snaps[i]
		}
	}
	if short != "" {
		return zfsexec.Dataset{}, refuse(z8rv1.ReasonSnapshotNotFound, "%s@%s does not exist on node %s", dataset, short, node)
	}
	if newest == nil {
		return zfsexec.Dataset{}, refuse(z8rv1.ReasonSnapshotNotFound, "%s has no snapshot on node %s", dataset, node)
	}
	return *newest, nil
}

// Kind is the spec's volume kind with its default.
func Kind(rr *z8rv1.ReplicaRestore) string {
	if rr.Spec.Volume.Kind == "" {
		return z8rv1.RestoreKindLocal
	}
	return rr.Spec.Volume.Kind
}

// PVName is the PersistentVolume a restore makes: for ZFSLocalPV with a
// dataset given, its last component (zfs-localpv names the dataset after
// the PV); else z8r-restore-<UID>.
func PVName(rr *z8rv1.ReplicaRestore) string {
	if Kind(rr) == z8rv1.RestoreKindZFSLocalPV && rr.Spec.Dataset != "" {
		return path.Base(rr.Spec.Dataset)
	}
	return "z8r-restore-" + string(rr.UID)
}

// Dataset is the dataset a restore makes from a snapshot of replica (a
// dataset in the same pool: a clone lives in its origin's pool). Local:
// spec.dataset, else <replica's parent>/<name>-restored. ZFSLocalPV:
// <pool>/<PVName>; a spec.dataset must have that form.
func Dataset(rr *z8rv1.ReplicaRestore, replica string) (string, error) {
	pool, _, _ := strings.Cut(replica, "/")
	var ds string
	switch {
	case Kind(rr) == z8rv1.RestoreKindZFSLocalPV:
		ds = pool + "/" + PVName(rr)
		if rr.Spec.Dataset != "" && rr.Spec.Dataset != ds {
			return "", refuse(z8rv1.ReasonInvalidDataset, "a ZFSLocalPV volume's dataset is <pool>/<PV name> (zfs-localpv's naming): %q is not %s/<name>", rr.Spec.Dataset, pool)
		}
		if errs := validation.IsDNS1123Subdomain(PVName(rr)); len(errs) > 0 {
			return "", refuse(z8rv1.ReasonInvalidDataset, "dataset %q: its last component names the PV and must be a lowercase RFC 1123 subdomain", ds)
		}
	case rr.Spec.Dataset != "":
		ds = rr.Spec.Dataset
	default:
		parent := path.Dir(replica)
		if parent == "." {
			parent = pool
		}
		ds = parent + "/" + rr.Name + "-restored"
	}
	if err := zfsexec.ValidateDataset(ds); err != nil {
		return "", refuse(z8rv1.ReasonInvalidDataset, "%v", err)
	}
	if p, _, _ := strings.Cut(ds, "/"); p != pool || !strings.Contains(ds, "/") {
		return "", refuse(z8rv1.ReasonInvalidDataset, "dataset %s must be below pool %s, the snapshot's pool (a clone lives in its origin's pool)", ds, pool)
	}
	return ds, nil
}

// CloneProps are the user properties `zfs clone -o` sets on the new
// dataset: the restore's UID (its ownership) and where it came from.
func CloneProps(rr *z8rv1.ReplicaRestore, node, snapshot string) map[string]string {
	return map[string]string{
		z8rv1.PropRestore:      string(rr.UID),
		z8rv1.PropRestoredFrom: node + ":" + snapshot,
	}
}

// OwnsDataset reports whether a dataset's restore mark, read with its
// source, makes it this restore's: set locally to the restore's UID.
func OwnsDataset(rr *z8rv1.ReplicaRestore, mark zfsexec.Property) bool {
	return mark.Source == "local" && mark.Value == string(rr.UID) && rr.UID != ""
}
