package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// The two reconcilers of VolumeSnapshotContents (SnapshotterReconciler and
// VolumeSnapshotReplicationReconciler) find and describe a content the
// same way: this file holds what they share (contentKit: where a
// content's snapshot is, the objects around it, the replica targets asked
// for, the content's annotations and Events) and the field indexes they
// list by.

const (
	annotationYes = "yes"
	contentKind   = "VolumeSnapshotContent"
)

// Field indexes the snapshot reconcilers look objects up by.
const (
	// indexPVByCSI: a PV's pvresolve.CSIKey(driver, volume handle).
	indexPVByCSI = "z8r.pv.csi"
	// indexContentByVolume: a dynamic content's CSIKey(driver, source
	// volume handle).
	indexContentByVolume = "z8r.content.volume"
)

// fieldIndex is one field index the manager's cache keeps.
type fieldIndex struct {
	Object  client.Object
	Field   string
	Extract client.IndexerFunc
}

// snapshotIndexes are the field indexes the snapshot reconcilers list by
// (registered by setupSnapshots).
var snapshotIndexes = []fieldIndex{
	{Object: &corev1.PersistentVolume{}, Field: indexPVByCSI, Extract: pvCSIKey},
	{Object: &snapshotv1.VolumeSnapshotContent{}, Field: indexContentByVolume, Extract: contentVolumeKey},
}

// pvCSIKey indexes a CSI PV by pvresolve.CSIKey(driver, volume handle).
func pvCSIKey(o client.Object) []string {
	pv, ok := o.(*corev1.PersistentVolume)
	if !ok || pv.Spec.CSI == nil {
		return nil
	}
	return []string{pvresolve.CSIKey(pv.Spec.CSI.Driver, pv.Spec.CSI.VolumeHandle)}
}

// contentVolumeKey indexes a dynamic content by the CSIKey of the volume
// it snapshots.
func contentVolumeKey(o client.Object) []string {
	c, ok := o.(*snapshotv1.VolumeSnapshotContent)
	if !ok || c.Spec.Source.VolumeHandle == nil {
		return nil
	}
	return []string{pvresolve.CSIKey(c.Spec.Driver, *c.Spec.Source.VolumeHandle)}
}

// replicaToSource maps a replica content to its source content.
func replicaToSource() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if src := o.GetAnnotations()[z8rv1.AnnotationReplicaOf]; src != "" && o.GetLabels()[z8rv1.LabelReplicaOfUID] != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: src}}}
		}
		return nil
	})
}

// contentKit is what the VolumeSnapshotContent reconcilers share: the
// API, Events, the nodes, and the drivers whose snapshots z8r takes.
type contentKit struct {
	Client   client.Client
	Recorder events.EventRecorder
	Agents   NodeAccess
	Drivers  map[string]bool
}

// located is where a content's snapshot is (or will be).
type located struct {
	Node    string
	Dataset string
	// Short is the snapshot's name after '@' ("" before it exists).
	Short string
	PVC   *corev1.PersistentVolumeClaim
	VS    *snapshotv1.VolumeSnapshot
	Class *snapshotv1.VolumeSnapshotClass
}

// asks reports whether anything asks for c's replication: c itself, its
// class, its VolumeSnapshot or its PVC carries z8r.dev/replicate-to.
func asks(c *snapshotv1.VolumeSnapshotContent, loc located) bool {
	has := func(ann map[string]string) bool { _, ok := ann[z8rv1.AnnotationReplicateTo]; return ok }
	return has(c.Annotations) || loc.Class != nil && has(loc.Class.Annotations) ||
		loc.VS != nil && has(loc.VS.Annotations) || loc.PVC != nil && has(loc.PVC.Annotations)
}

// snapshotLocation finds where a ready content's snapshot is, and the
// objects that may ask for its replication. It fills what it can even
// when it fails.
func (k contentKit) snapshotLocation(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (located, error) {
	loc := located{VS: k.boundSnapshot(ctx, c), Class: k.classOf(ctx, c.Spec.VolumeSnapshotClassName)}
	handle := *c.Status.SnapshotHandle
	loc.Node, loc.Dataset = c.Annotations[z8rv1.AnnotationNode], c.Annotations[z8rv1.AnnotationDataset]
	var err error
	if k.Drivers[c.Spec.Driver] {
		loc.Dataset, loc.Short, err = volsnap.ParseHandle(handle)
	} else {
		loc.Short, err = volsnap.ForeignShortName(handle)
	}
	if err != nil {
		return loc, err
	}
	if c.Spec.Source.VolumeHandle != nil {
		pv, perr := k.pvFor(ctx, c.Spec.Driver, *c.Spec.Source.VolumeHandle)
		if perr == nil {
			loc.PVC = k.claimOf(ctx, pv)
			if loc.Node == "" || loc.Dataset == "" {
				vol, rerr := pvresolve.Resolve(pv, pvNodeIDs(ctx, k.Client))
				if rerr != nil {
					return loc, rerr
				}
				if loc.Node == "" {
					loc.Node = vol.Node
				}
				if loc.Dataset == "" {
					loc.Dataset = vol.Dataset
				}
			}
		} else if loc.Node == "" || loc.Dataset == "" {
			return loc, perr
		}
	}
	if loc.Node == "" || loc.Dataset == "" {
		return loc, fmt.Errorf("cannot tell where snapshot %s is: annotate the content with %s and %s", handle, z8rv1.AnnotationNode, z8rv1.AnnotationDataset)
	}
	return loc, nil
}

// locateVolume finds the volume a dynamic content snapshots, and the
// objects around it.
func (k contentKit) locateVolume(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (located, error) {
	loc := located{VS: k.boundSnapshot(ctx, c), Class: k.classOf(ctx, c.Spec.VolumeSnapshotClassName)}
	pv, err := k.pvFor(ctx, c.Spec.Driver, *c.Spec.Source.VolumeHandle)
	if err != nil {
		return loc, err
	}
	loc.PVC = k.claimOf(ctx, pv)
	vol, err := pvresolve.Resolve(pv, pvNodeIDs(ctx, k.Client))
	if err != nil {
		return loc, err
	}
	if vol.NeedsMountpointLookup() {
		return loc, fmt.Errorf("PersistentVolume %s: a local volume cannot be snapshotted through the CSI snapshot API", pv.Name)
	}
	loc.Node, loc.Dataset = vol.Node, vol.Dataset
	return loc, nil
}

// targetsFor returns the targets c is replicated to (see the Design
// comment): c's own z8r.dev/replicate-to when it has one (stamped=true:
// the administrator's, or z8r's earlier decision); else the union of its
// class's targets (the administrator's) and the tenant's (its
// VolumeSnapshot's, else its PVC's), the tenant's only as far as a
// ReplicationTargetPolicy allows them. An empty tenant value is reported
// and skipped; refused targets are reported. A malformed value is an
// error matching volsnap.ErrSyntax or volsnap.ErrSelfTarget.
func (k contentKit) targetsFor(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, loc located) (targets []volsnap.Target, stamped bool, err error) {
	const key = z8rv1.AnnotationReplicateTo
	if v, ok := c.Annotations[key]; ok {
		targets, err := volsnap.Request{Value: v, From: volsnap.Annotated{Kind: contentKind, Name: c.Name}}.Targets(loc.Node, loc.Dataset)
		return targets, true, err
	}
	if loc.Class != nil {
		if v, ok := loc.Class.Annotations[key]; ok {
			req := volsnap.Request{Value: v, From: volsnap.Annotated{Kind: "VolumeSnapshotClass", Name: loc.Class.Name}}
			if targets, err = req.Targets(loc.Node, loc.Dataset); err != nil {
				return nil, false, err
			}
		}
	}
	// The tenant's request: the VolumeSnapshot's, else the PVC's.
	type carrier struct {
		obj  client.Object
		desc string
	}
	var carriers []carrier
	if loc.VS != nil {
		carriers = append(carriers, carrier{loc.VS, "VolumeSnapshot " + loc.VS.Namespace + "/" + loc.VS.Name})
	}
	if loc.PVC != nil {
		carriers = append(carriers, carrier{loc.PVC, "PersistentVolumeClaim " + loc.PVC.Namespace + "/" + loc.PVC.Name})
	}
	for _, cr := range carriers {
		v, ok := cr.obj.GetAnnotations()[key]
		if !ok {
			continue
		}
		if isEmptyTargets(v) {
			note := emptyNote(cr.desc) + "; it is ignored"
			k.tenantEvent(c, loc, cr.obj, z8rv1.EventEmptyAnnotation, note)
			if err := k.snapshotProblem(ctx, cr.obj, note); err != nil {
				return nil, false, err
			}
			continue // as if absent: the next one in order applies
		}
		ts, err := volsnap.ResolveTargets(v, loc.Node, loc.Dataset)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", cr.desc, err)
		}
		allowed, refused, err := tenantScope(ctx, k.Client, cr.obj.GetNamespace(), ts)
		if err != nil {
			return nil, false, err
		}
		problem := ""
		if len(refused) > 0 {
			problem = refusalNote(cr.desc, refused)
			logf.FromContext(ctx).Info("replica targets refused by ReplicationTargetPolicies", "from", cr.desc, "refused", len(refused))
			k.tenantEvent(c, loc, cr.obj, z8rv1.EventTargetNotAllowed, problem)
		}
		if err := k.snapshotProblem(ctx, cr.obj, problem); err != nil {
			return nil, false, err
		}
		for _, t := range allowed {
			if !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
		break
	}
	return targets, false, nil
}

// snapshotProblem records the current problem of a VolumeSnapshot's
// request in its z8r.dev/annotation-problem. A PVC's is left to the PVC
// reconciler, which decides the same for the PVC's value and also
// records the PVC's other problems.
func (k contentKit) snapshotProblem(ctx context.Context, obj client.Object, problem string) error {
	if _, ok := obj.(*snapshotv1.VolumeSnapshot); !ok {
		return nil
	}
	return setAnnotationProblem(ctx, k.Client, obj, problem)
}

// tenantEvent reports a problem of a tenant's request on the content, its
// VolumeSnapshot and, when the request is the PVC's, the PVC.
func (k contentKit) tenantEvent(c *snapshotv1.VolumeSnapshotContent, loc located, from client.Object, reason, note string) {
	k.event(c, loc.VS, corev1.EventTypeWarning, reason, "Validate", "%s", note)
	if pvc, ok := from.(*corev1.PersistentVolumeClaim); ok {
		k.Recorder.Eventf(pvc, c, corev1.EventTypeWarning, reason, "Validate", "%s", note)
	}
}

// renderTargets writes resolved targets as a replicate-to value
// (NODE:DATASET entries), which resolves to exactly them.
func renderTargets(ts []volsnap.Target) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, ",")
}

// pvFor finds the PV of a CSI volume.
func (k contentKit) pvFor(ctx context.Context, driver, handle string) (*corev1.PersistentVolume, error) {
	var list corev1.PersistentVolumeList
	if err := k.Client.List(ctx, &list, client.MatchingFields{indexPVByCSI: pvresolve.CSIKey(driver, handle)}); err != nil {
		return nil, err
	}
	switch len(list.Items) {
	case 0:
		return nil, fmt.Errorf("no PersistentVolume of driver %s has volume handle %s", driver, handle)
	case 1:
		return &list.Items[0], nil
	}
	return nil, fmt.Errorf("%d PersistentVolumes of driver %s have volume handle %s", len(list.Items), driver, handle)
}

// claimOf returns the PVC a PV is bound to, if it still exists.
func (k contentKit) claimOf(ctx context.Context, pv *corev1.PersistentVolume) *corev1.PersistentVolumeClaim {
	ref := pv.Spec.ClaimRef
	if ref == nil {
		return nil
	}
	var pvc corev1.PersistentVolumeClaim
	if err := k.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &pvc); err != nil {
		return nil
	}
	if ref.UID != "" && pvc.UID != ref.UID {
		return nil
	}
	return &pvc
}

// boundSnapshot returns the VolumeSnapshot c is bound to, if it exists.
func (k contentKit) boundSnapshot(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) *snapshotv1.VolumeSnapshot {
	ref := c.Spec.VolumeSnapshotRef
	if ref.UID == "" || ref.Name == "" {
		return nil
	}
	var vs snapshotv1.VolumeSnapshot
	if err := k.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &vs); err != nil || vs.UID != ref.UID {
		return nil
	}
	return &vs
}

// classOf returns the named VolumeSnapshotClass, if it exists.
func (k contentKit) classOf(ctx context.Context, name *string) *snapshotv1.VolumeSnapshotClass {
	if name == nil || *name == "" {
		return nil
	}
	var class snapshotv1.VolumeSnapshotClass
	if err := k.Client.Get(ctx, client.ObjectKey{Name: *name}, &class); err != nil {
		return nil
	}
	return &class
}

// checkPool checks, from the node's Z8RNode, that a z8r agent serves the
// dataset's pool there, so that no request is sent that it would refuse.
func (k contentKit) checkPool(ctx context.Context, node, dataset string) error {
	var zn z8rv1.Z8RNode
	if err := k.Client.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("node %s: %w", node, ErrNodeUnknown)
		}
		return err
	}
	pool, _, _ := strings.Cut(dataset, "/")
	if len(zn.Status.Pools) == 0 {
		return fmt.Errorf("node %s: %w: it has published no pools yet", node, ErrNodeNotReady)
	}
	if !slices.Contains(zn.Status.Pools, pool) {
		return fmt.Errorf("dataset %s is in pool %s, which the z8r agent on node %s does not serve (it serves %v)", dataset, pool, node, zn.Status.Pools)
	}
	return nil
}

// patchAnnotations sets (value) or removes (nil) annotations.
func (k contentKit) patchAnnotations(ctx context.Context, c *snapshotv1.VolumeSnapshotContent, set map[string]*string) error {
	old := c.DeepCopy()
	changed := false
	for k, v := range set {
		cur, has := c.Annotations[k]
		switch {
		case v == nil && has:
			delete(c.Annotations, k)
			changed = true
		case v != nil && (!has || cur != *v):
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[k] = *v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return k.Client.Patch(ctx, c, client.MergeFrom(old))
}

// event emits on the content and, when it exists, its VolumeSnapshot
// (where `kubectl describe volumesnapshot` shows it).
func (k contentKit) event(c *snapshotv1.VolumeSnapshotContent, vs *snapshotv1.VolumeSnapshot, typ, reason, action, format string, args ...any) {
	var related runtime.Object
	if vs != nil {
		related = vs
	}
	k.Recorder.Eventf(c, related, typ, reason, action, format, args...)
	if vs != nil {
		k.Recorder.Eventf(vs, c, typ, reason, action, format, args...)
	}
}
