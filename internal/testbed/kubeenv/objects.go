package kubeenv

import (
	"context"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"maps"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// The shapes of ZFS-backed volumes that z8r must understand.
const (
	// DriverZ8r is z8r's own CSI driver name.
	DriverZ8r = z8rv1.DriverName
	// DriverZFSLocalPV is OpenEBS zfs-localpv's CSI driver name. Its dataset is
	// <volumeAttributes["openebs.io/poolname"]>/<volumeHandle>.
	DriverZFSLocalPV = "zfs.csi.openebs.io"
	// AttrZFSLocalPVPool is the volume attribute in which zfs-localpv records the pool.
	AttrZFSLocalPVPool = "openebs.io/poolname"
	// AttrZ8rNode is the volume attribute of a zfs.z8r.dev PV naming the node whose pool
	// holds the dataset.
	AttrZ8rNode = z8rv1.VolumeAttributeNode

	// annBindCompleted is what the PV controller sets on a PVC once it is bound.
	annBindCompleted = "pv.kubernetes.io/bind-completed"
)

// Node returns a Node named name, labelled kubernetes.io/hostname=name plus labels, with
// annotations.
func Node(name string, labels, annotations map[string]string) *corev1.Node {
	l := map[string]string{corev1.LabelHostname: name}
	maps.Copy(l, labels)
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l, Annotations: maps.Clone(annotations)}}
}

// Z8rPV returns a CSI PV of driver zfs.z8r.dev whose volume handle is dataset, on node.
func Z8rPV(name, node, dataset, size string) *corev1.PersistentVolume {
	pv := basePV(name, node, size)
	pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{
		Driver:           DriverZ8r,
		VolumeHandle:     dataset,
		FSType:           "zfs",
		VolumeAttributes: map[string]string{AttrZ8rNode: node},
	}
	return pv
}

// ZFSLocalPV returns a PV shaped like one provisioned by OpenEBS zfs-localpv: the volume
// handle is the PV name and the dataset is <pool>/<name>.
func ZFSLocalPV(name, node, pool, size string) *corev1.PersistentVolume {
	pv := basePV(name, node, size)
	pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{
		Driver:       DriverZFSLocalPV,
		VolumeHandle: name,
		FSType:       "zfs",
		VolumeAttributes: map[string]string{
			AttrZFSLocalPVPool:    pool,
			"openebs.io/cas-type": "localpv-zfs",
		},
	}
	return pv
}

// LocalPV returns a `local` PV whose path is a dataset's mountpoint on node.
func LocalPV(name, node, mountpoint, size string) *corev1.PersistentVolume {
	pv := basePV(name, node, size)
	pv.Spec.Local = &corev1.LocalVolumeSource{Path: mountpoint}
	return pv
}

// basePV is a Filesystem, ReadWriteOnce, Retain PV of size pinned to node by
// kubernetes.io/hostname, with no storage class and no volume source yet.
func basePV(name, node, size string) *corev1.PersistentVolume {
	fs := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			VolumeMode:                    &fs,
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key:      corev1.LabelHostname,
					Operator: corev1.NodeSelectorOpIn,
					Values:   []string{node},
				}}}},
			}},
		},
	}
}

// PVCFor returns a PVC namespace/name that asks for pv by name, with pv's storage class,
// access modes, volume mode and capacity.
func PVCFor(pv *corev1.PersistentVolume, namespace, name string) *corev1.PersistentVolumeClaim {
	class := pv.Spec.StorageClassName
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      pv.Spec.AccessModes,
			VolumeMode:       pv.Spec.VolumeMode,
			StorageClassName: &class,
			VolumeName:       pv.Name,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage],
			}},
		},
	}
}

// VolumeSnapshotClass returns a cluster-scoped VolumeSnapshotClass for driver.
func VolumeSnapshotClass(name, driver string, policy snapshotv1.DeletionPolicy) *snapshotv1.VolumeSnapshotClass {
	return &snapshotv1.VolumeSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		Driver:         driver,
		DeletionPolicy: policy,
	}
}

// VolumeSnapshot returns a VolumeSnapshot namespace/name of the PVC pvc in class.
func VolumeSnapshot(namespace, name, class, pvc string) *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
			VolumeSnapshotClassName: &class,
		},
	}
}

// Create creates obj or fails the test.
func (e *Env) Create(t tb.TB, obj client.Object) {
	t.Helper()
	if err := e.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("kubeenv: create %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// CreateNamespace creates a namespace with a generated name starting with prefix and
// returns its name.
func (e *Env) CreateNamespace(t tb.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	e.Create(t, ns)
	return ns.Name
}

// CreateBound creates pvc and pv bound to each other, as the PV controller (which
// envtest does not run) would leave them: pv.spec.claimRef points at pvc,
// pvc.spec.volumeName at pv, and both have status.phase Bound, set through the status
// subresource. Status writes retry on conflict, since the snapshot-controller updates
// PVCs too. pv and pvc are updated in place.
func (e *Env) CreateBound(t tb.TB, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	ctx := context.Background()
	pvc.Spec.VolumeName = pv.Name
	if pvc.Annotations == nil {
		pvc.Annotations = map[string]string{}
	}
	pvc.Annotations[annBindCompleted] = "yes"
	e.Create(t, pvc)

	pv.Spec.ClaimRef = &corev1.ObjectReference{
		APIVersion: "v1",
		Kind:       "PersistentVolumeClaim",
		Namespace:  pvc.Namespace,
		Name:       pvc.Name,
		UID:        pvc.UID,
	}
	e.Create(t, pv)

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pv), pv); err != nil {
			return err
		}
		pv.Status.Phase = corev1.VolumeBound
		return e.Client.Status().Update(ctx, pv)
	})
	if err != nil {
		t.Fatalf("kubeenv: set PV %s Bound: %v", pv.Name, err)
	}

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil {
			return err
		}
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.AccessModes = pv.Spec.AccessModes
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage]}
		return e.Client.Status().Update(ctx, pvc)
	})
	if err != nil {
		t.Fatalf("kubeenv: set PVC %s Bound: %v", client.ObjectKeyFromObject(pvc), err)
	}
}

// CreateNode creates Node(name, labels, annotations) and returns it.
func (e *Env) CreateNode(t tb.TB, name string, labels, annotations map[string]string) *corev1.Node {
	t.Helper()
	n := Node(name, labels, annotations)
	e.Create(t, n)
	return n
}
