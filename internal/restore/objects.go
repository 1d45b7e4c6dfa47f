package restore

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
)

// zfs-localpv's names (github.com/openebs/zfs-localpv: its ZFSVolume CRD,
// zfs.openebs.io/v1, and the PVs its controller provisions).
const (
	// ZFSLocalPVNamespace is where zfs-localpv keeps its ZFSVolumes by
	// default (its OPENEBS_NAMESPACE).
	ZFSLocalPVNamespace = "openebs"
	// LabelZFSLocalPVNodeName is the label zfs-localpv puts on a
	// ZFSVolume: its owner node id.
	LabelZFSLocalPVNodeName = "kubernetes.io/nodename"
	// AttrZFSLocalPVCASType is the volume attribute zfs-localpv's
	// provisioner puts on its PVs besides the pool, CASTypeZFSLocalPV its
	// value.
	AttrZFSLocalPVCASType = "openebs.io/cas-type"
	CASTypeZFSLocalPV     = "localpv-zfs"
	// AnnotationProvisionedBy is the annotation external-provisioner puts on
	// the PVs it makes.
	AnnotationProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

// ZFSVolumeGVK is zfs-localpv's ZFSVolume.
var ZFSVolumeGVK = schema.GroupVersionKind{Group: "zfs.openebs.io", Version: "v1", Kind: "ZFSVolume"}

// MiB is the unit the default capacity is rounded up to.
const MiB = 1 << 20

// Capacity is the spec's capacity, else referenced bytes rounded up to a
// MiB (at least one).
func Capacity(rr *z8rv1.ReplicaRestore, referenced int64) resource.Quantity {
	if rr.Spec.Volume.Capacity != nil {
		return rr.Spec.Volume.Capacity.DeepCopy()
	}
	mib := (referenced + MiB - 1) / MiB
	if mib < 1 {
		mib = 1
	}
	return *resource.NewQuantity(mib*MiB, resource.BinarySI)
}

// Owned reports whether obj was made by this restore.
func Owned(obj metav1.Object, rr *z8rv1.ReplicaRestore) bool {
	return rr.UID != "" && obj.GetAnnotations()[z8rv1.AnnotationRestoreUID] == string(rr.UID)
}

func meta(rr *z8rv1.ReplicaRestore, name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:        name,
		Namespace:   namespace,
		Labels:      map[string]string{z8rv1.LabelManagedBy: "replica-restore"},
		Annotations: map[string]string{z8rv1.AnnotationRestoreUID: string(rr.UID), z8rv1.AnnotationRestore: rr.Namespace + "/" + rr.Name},
	}
}

func accessModes(rr *z8rv1.ReplicaRestore) []corev1.PersistentVolumeAccessMode {
	if len(rr.Spec.Volume.AccessModes) > 0 {
		return append([]corev1.PersistentVolumeAccessMode(nil), rr.Spec.Volume.AccessModes...)
	}
	return []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
}

func affinity(key, value string) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}}},
	}}}}
}

func pv(rr *z8rv1.ReplicaRestore, name string, capacity resource.Quantity) *corev1.PersistentVolume {
	fs := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolume{
		ObjectMeta: meta(rr, name, ""),
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   accessModes(rr),
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              rr.Spec.Volume.StorageClassName,
			VolumeMode:                    &fs,
			ClaimRef: &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: rr.Namespace, Name: rr.Spec.Volume.PVCName},
		},
	}
}

// LocalPV is a `local` PersistentVolume at path (the dataset's mountpoint)
// on node, pinned with kubernetes.io/hostname, pre-bound to the PVC.
func LocalPV(rr *z8rv1.ReplicaRestore, name, node, path string, capacity resource.Quantity) *corev1.PersistentVolume {
	p := pv(rr, name, capacity)
	p.Spec.Local = &corev1.LocalVolumeSource{Path: path}
	p.Spec.NodeAffinity = affinity(corev1.LabelHostname, node)
	return p
}

// ZFSLocalPV is the PersistentVolume zfs-localpv's node plugin mounts:
// CSI driver zfs.csi.openebs.io, handle name (the dataset is
// <pool>/<name>), fsType zfs, the attributes openebs.io/poolname and
// openebs.io/cas-type=localpv-zfs, pinned with
// openebs.io/nodeid = nodeID, pre-bound to the PVC.
func ZFSLocalPV(rr *z8rv1.ReplicaRestore, name, pool, nodeID string, capacity resource.Quantity) *corev1.PersistentVolume {
	p := pv(rr, name, capacity)
	p.Annotations[AnnotationProvisionedBy] = pvresolve.DriverZFSLocalPV
	p.Spec.CSI = &corev1.CSIPersistentVolumeSource{
		Driver:           pvresolve.DriverZFSLocalPV,
		VolumeHandle:     name,
		FSType:           "zfs",
		VolumeAttributes: map[string]string{pvresolve.AttrZFSLocalPVPool: pool, AttrZFSLocalPVCASType: CASTypeZFSLocalPV},
	}
	p.Spec.NodeAffinity = affinity(pvresolve.TopologyZFSLocalPVNodeID, nodeID)
	return p
}

// ZFSVolume is zfs-localpv's record of the dataset <pool>/<name> on the
// node whose id is nodeID, already Ready (the dataset exists). It carries
// no zfs.openebs.io/finalizer: zfs-localpv destroys the dataset of a
// deleted ZFSVolume only when it has that finalizer, and z8r arranges no
// destruction.
func ZFSVolume(rr *z8rv1.ReplicaRestore, namespace, name, pool, nodeID string, capacityBytes int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ZFSVolumeGVK)
	m := meta(rr, name, namespace)
	m.Labels[LabelZFSLocalPVNodeName] = nodeID
	u.SetName(m.Name)
	u.SetNamespace(m.Namespace)
	u.SetLabels(m.Labels)
	u.SetAnnotations(m.Annotations)
	u.Object["spec"] = map[string]any{
		"capacity":    strconv.FormatInt(capacityBytes, 10),
		"fsType":      "zfs",
		"ownerNodeID": nodeID,
		"poolName":    pool,
		"volumeType":  "DATASET",
	}
	u.Object["status"] = map[string]any{"state": "Ready"}
	return u
}

// PVC is the claim, pre-bound to the PV name (spec.volumeName), with the
// same class, access modes and capacity.
func PVC(rr *z8rv1.ReplicaRestore, pvName string, capacity resource.Quantity) *corev1.PersistentVolumeClaim {
	fs := corev1.PersistentVolumeFilesystem
	sc := rr.Spec.Volume.StorageClassName
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: meta(rr, rr.Spec.Volume.PVCName, rr.Namespace),
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      accessModes(rr),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: capacity}},
			VolumeName:       pvName,
			StorageClassName: &sc,
			VolumeMode:       &fs,
		},
	}
}

// NodeID is the value zfs-localpv pins a node's volumes with: the Node's
// openebs.io/nodeid label, else its name.
func NodeID(node *corev1.Node) string {
	if id := node.Labels[pvresolve.TopologyZFSLocalPVNodeID]; id != "" {
		return id
	}
	return node.Name
}
