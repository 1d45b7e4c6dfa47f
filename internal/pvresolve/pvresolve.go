package pvresolve

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/zfsexec"
)

// Drivers and attributes of the shapes Resolve knows.
const (
	DriverZFSLocalPV   = "zfs.csi.openebs.io"
	AttrZFSLocalPVPool = "openebs.io/poolname"
	// TopologyZFSLocalPV is the node affinity key older zfs-localpv
	// releases write; its value is the node's name.
	TopologyZFSLocalPV = "openebs.io/nodename"
	// TopologyZFSLocalPVNodeID is the key current zfs-localpv writes; its
	// value is the Node's label of the same key (often a UUID), not its
	// name: Options.NodeByID resolves it.
	TopologyZFSLocalPVNodeID = "openebs.io/nodeid"
)

// NodeByID returns the name of the Node whose openebs.io/nodeid label is
// id. The caller builds it from its Node list or cache (NodeIDs).
type NodeByID func(id string) (node string, ok bool)

// NodeIDs returns a NodeByID over nodes' openebs.io/nodeid labels. A
// value two Nodes carry resolves to neither.
func NodeIDs(nodes []corev1.Node) NodeByID {
	byID := map[string]string{}
	for _, n := range nodes {
		id := n.Labels[TopologyZFSLocalPVNodeID]
		if id == "" {
			continue
		}
		if _, dup := byID[id]; dup {
			byID[id] = ""
			continue
		}
		byID[id] = n.Name
	}
	return func(id string) (string, bool) {
		n := byID[id]
		return n, n != ""
	}
}

// Options are what Resolve needs besides the PV.
type Options struct {
	// NodeByID resolves an openebs.io/nodeid affinity; nil refuses one
	// (ErrIncomplete).
	NodeByID NodeByID
}

// Sentinels matched by *Error.
var (
	// ErrUnknownShape: nothing tells which dataset backs the PV.
	ErrUnknownShape = errors.New("not a ZFS-backed volume z8r can resolve")
	// ErrIncomplete: the PV has the shape but lacks a part (node, pool).
	ErrIncomplete = errors.New("incomplete ZFS volume description")
	// ErrInvalidDataset: the dataset the PV names is not a valid ZFS name.
	ErrInvalidDataset = errors.New("invalid dataset name")
	// ErrNoDatasetAtPath: no dataset is mounted exactly at a local PV's path.
	ErrNoDatasetAtPath = errors.New("no dataset is mounted at the path")
)

// Error says why a PV could not be resolved.
type Error struct {
	PV     string
	Reason string
	Err    error // one of the sentinels, possibly wrapping a cause
}

func (e *Error) Error() string {
	return fmt.Sprintf("PersistentVolume %s: %s: %s", e.PV, e.Err.Error(), e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is the shape a PV was recognised as.
type Kind string

// Kinds.
const (
	KindAnnotated  Kind = "annotated"
	KindZ8r        Kind = "zfs.z8r.dev"
	KindZFSLocalPV Kind = "zfs-localpv"
	KindLocal      Kind = "local"
)

// Volume is where a PV's data lives.
type Volume struct {
	Kind Kind
	// Driver is the PV's CSI driver ("" for non-CSI PVs).
	Driver string
	Node   string
	// Dataset is empty when NeedsMountpointLookup.
	Dataset string
	// Path is a local PV's path.
	Path string
}

// NeedsMountpointLookup reports that Dataset must still be found from the
// node's mountpoints (DatasetAtMountpoint).
func (v Volume) NeedsMountpointLookup() bool { return v.Kind == KindLocal && v.Dataset == "" }

// Resolve tells where pv's data lives (see the package documentation). A
// PV pinned with openebs.io/nodeid needs opts.NodeByID.
func Resolve(pv *corev1.PersistentVolume, opts ...Options) (Volume, error) {
	var o Options
	for _, x := range opts {
		if x.NodeByID != nil {
			o.NodeByID = x.NodeByID
		}
	}
	fail := func(sentinel error, format string, args ...any) (Volume, error) {
		return Volume{}, &Error{PV: pv.Name, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	var driver string
	if pv.Spec.CSI != nil {
		driver = pv.Spec.CSI.Driver
	}
	v, err := resolve(pv, driver, o, fail)
	if err == nil && v.Node != "" {
		if errs := validation.IsDNS1123Subdomain(v.Node); len(errs) > 0 {
			return fail(ErrIncomplete, "node %q is not a valid node name", v.Node)
		}
	}
	return v, err
}

func resolve(pv *corev1.PersistentVolume, driver string, o Options, fail func(sentinel error, format string, args ...any) (Volume, error)) (Volume, error) {
	ds, hasDS := pv.Annotations[z8rv1.AnnotationDataset]
	node, hasNode := pv.Annotations[z8rv1.AnnotationNode]
	switch {
	case hasDS && hasNode:
		if node == "" {
			return fail(ErrIncomplete, "annotation %s is empty", z8rv1.AnnotationNode)
		}
		if err := zfsexec.ValidateDataset(ds); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrInvalidDataset, err), "annotation %s", z8rv1.AnnotationDataset)
		}
		return Volume{Kind: KindAnnotated, Driver: driver, Node: node, Dataset: ds}, nil
	case hasDS:
		return fail(ErrIncomplete, "annotation %s needs %s as well", z8rv1.AnnotationDataset, z8rv1.AnnotationNode)
	case hasNode:
		return fail(ErrIncomplete, "annotation %s needs %s as well", z8rv1.AnnotationNode, z8rv1.AnnotationDataset)
	}

	switch {
	case pv.Spec.CSI != nil && driver == z8rv1.DriverName:
		ds := pv.Spec.CSI.VolumeHandle
		if err := zfsexec.ValidateDataset(ds); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrInvalidDataset, err), "volume handle of driver %s", driver)
		}
		node := pv.Spec.CSI.VolumeAttributes[z8rv1.VolumeAttributeNode]
		if node == "" {
			node, _ = o.affinityNode(pv)
		}
		if node == "" {
			return fail(ErrIncomplete, "driver %s: no volume attribute %s and no node affinity", driver, z8rv1.VolumeAttributeNode)
		}
		return Volume{Kind: KindZ8r, Driver: driver, Node: node, Dataset: ds}, nil
	case pv.Spec.CSI != nil && driver == DriverZFSLocalPV:
		pool := pv.Spec.CSI.VolumeAttributes[AttrZFSLocalPVPool]
		if pool == "" {
			return fail(ErrIncomplete, "driver %s: no volume attribute %s", driver, AttrZFSLocalPVPool)
		}
		ds := pool + "/" + pv.Spec.CSI.VolumeHandle
		if err := zfsexec.ValidateDataset(ds); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrInvalidDataset, err), "driver %s: pool and volume handle", driver)
		}
		node, ok := o.affinityNode(pv)
		if !ok {
			return fail(ErrIncomplete, "driver %s: no single node in the node affinity%s", driver, o.nodeIDHint(pv))
		}
		return Volume{Kind: KindZFSLocalPV, Driver: driver, Node: node, Dataset: ds}, nil
	case pv.Spec.CSI != nil:
		return fail(ErrUnknownShape, "CSI driver %s is not a ZFS driver z8r knows; annotate the PV with %s and %s",
			driver, z8rv1.AnnotationDataset, z8rv1.AnnotationNode)
	case pv.Spec.Local != nil:
		node, ok := o.affinityNode(pv)
		if !ok {
			return fail(ErrIncomplete, "local volume without a single node in its node affinity%s", o.nodeIDHint(pv))
		}
		p := pv.Spec.Local.Path
		if !filepath.IsAbs(p) {
			return fail(ErrIncomplete, "local path %q is not absolute", p)
		}
		return Volume{Kind: KindLocal, Node: node, Path: filepath.Clean(p)}, nil
	}
	return fail(ErrUnknownShape, "neither a CSI volume of a ZFS driver nor a local volume; annotate the PV with %s and %s",
		z8rv1.AnnotationDataset, z8rv1.AnnotationNode)
}

// AffinityNode returns the node a PV's required node affinity pins it to:
// the single value of a kubernetes.io/hostname or openebs.io/nodename In
// expression, the same in every term. It does not resolve
// openebs.io/nodeid (Resolve with Options.NodeByID does).
func AffinityNode(pv *corev1.PersistentVolume) (string, bool) { return Options{}.affinityNode(pv) }

// affinityNode is AffinityNode, also taking an openebs.io/nodeid In
// expression whose single value o.NodeByID resolves.
func (o Options) affinityNode(pv *corev1.PersistentVolume) (string, bool) {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return "", false
	}
	node := ""
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		found := ""
		for _, e := range term.MatchExpressions {
			if e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
				continue
			}
			n := ""
			switch e.Key {
			case corev1.LabelHostname, TopologyZFSLocalPV:
				n = e.Values[0]
			case TopologyZFSLocalPVNodeID:
				if o.NodeByID == nil {
					continue
				}
				var ok bool
				if n, ok = o.NodeByID(e.Values[0]); !ok {
					return "", false
				}
			default:
				continue
			}
			// Expressions of one term that name different nodes pin the
			// PV nowhere z8r can tell.
			if found != "" && found != n {
				return "", false
			}
			found = n
		}
		if found == "" || (node != "" && found != node) {
			return "", false
		}
		node = found
	}
	return node, node != ""
}

// nodeIDHint explains an unresolved openebs.io/nodeid affinity.
func (o Options) nodeIDHint(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Key == TopologyZFSLocalPVNodeID && len(e.Values) == 1 {
				return fmt.Sprintf(" (no single Node carries the label %s=%q)", TopologyZFSLocalPVNodeID, e.Values[0])
			}
		}
	}
	return ""
}

// Mount is one filesystem and its mountpoint property on a node.
type Mount struct {
	Dataset    string
	Mountpoint string
}

// DatasetAtMountpoint finishes resolving a local volume: the filesystem
// whose mountpoint is exactly v.Path. mounts are the node's filesystems
// (mountpoints "legacy", "none" and "-" never match).
func DatasetAtMountpoint(pv string, v Volume, mounts []Mount) (Volume, error) {
	var found, invalid []string
	for _, m := range mounts {
		if !strings.HasPrefix(m.Mountpoint, "/") || strings.ContainsAny(m.Dataset, "@#") {
			continue
		}
		if filepath.Clean(m.Mountpoint) != v.Path {
			continue
		}
		// The list comes from the node: a name that is not a valid
		// dataset is never returned.
		if zfsexec.ValidateDataset(m.Dataset) != nil {
			invalid = append(invalid, m.Dataset)
			continue
		}
		found = append(found, m.Dataset)
	}
	switch len(found) {
	case 0:
		if len(invalid) > 0 {
			return v, &Error{PV: pv, Reason: fmt.Sprintf("%s on node %s is the mountpoint of %q", v.Path, v.Node, invalid[0]), Err: ErrInvalidDataset}
		}
		return v, &Error{PV: pv, Reason: fmt.Sprintf("%s on node %s", v.Path, v.Node), Err: ErrNoDatasetAtPath}
	case 1:
		v.Dataset = found[0]
		return v, nil
	}
	sort.Strings(found)
	return v, &Error{PV: pv, Reason: fmt.Sprintf("%s on node %s is the mountpoint of several datasets %v", v.Path, v.Node, found), Err: ErrIncomplete}
}

// CSIKey identifies a CSI volume across objects: a PV's driver and
// handle, or a VolumeSnapshotContent's driver and source volume handle.
func CSIKey(driver, handle string) string { return driver + "\x00" + handle }
