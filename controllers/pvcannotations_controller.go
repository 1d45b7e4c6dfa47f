package controllers

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/pvresolve"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// annDefaultSnapshotClass marks a driver's default VolumeSnapshotClass.
const annDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// PVCAnnotationsReconciler takes VolumeSnapshots of PVCs annotated
// z8r.dev/schedule and prunes them by z8r.dev/retention. The snapshots are
// ordinary VolumeSnapshots (kubectl lists them; whichever snapshotter
// serves the PVC's driver takes them, z8r for its own drivers), labelled
// as z8r's; only those are ever pruned. A malformed annotation gets a
// Warning on the PVC and changes nothing: no snapshot is taken or pruned
// until it is fixed.
//
// A PVC whose volume is not a CSI volume (a `local` PV on a dataset's
// mountpoint, or any PV annotated with z8r.dev/dataset and z8r.dev/node)
// cannot have VolumeSnapshots; for it the same annotations configure a
// DatasetReplication of the dataset behind it (named PVCReplicationName,
// labelled z8r.dev/managed-by=pvc-annotations and annotated z8r.dev/pvc
// with the PVC's namespace/name), which snapshots, replicates and prunes
// with the engine node annotations use; its targets are those a
// ReplicationTargetPolicy allows. It is deleted when the annotations or
// the PVC go, and only when it is this PVC's.
//
// The PVC's current problem (a malformed or empty annotation, refused
// targets, a replication name taken) is kept in its
// z8r.dev/annotation-problem and removed once there is none.
type PVCAnnotationsReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    schedule.Clock
	// Agents resolve a local volume's path to its dataset.
	Agents NodeAccess

	skipNameValidation bool
}

// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=z8r.dev,resources=z8rnodes,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *PVCAnnotationsReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx).WithValues("pvc", req.NamespacedName)
	ctx = logf.IntoContext(ctx, log)
	var pvc corev1.PersistentVolumeClaim
	if err := r.Client.Get(ctx, req.NamespacedName, &pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.dropReplication(ctx, req.Namespace, req.Name, nil)
		}
		return reconcile.Result{}, err
	}
	res, problem, err := r.reconcile(ctx, &pvc)
	if err != nil {
		return res, err
	}
	// The current problem (or none) stays on the PVC, where aggregated
	// Events cannot hide it.
	if !pvc.DeletionTimestamp.IsZero() {
		return res, nil
	}
	return res, setAnnotationProblem(ctx, r.Client, &pvc, problem)
}

// reconcile does the work of Reconcile and returns the PVC's current
// annotation problem ("" when there is none).
func (r *PVCAnnotationsReconciler) reconcile(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (reconcile.Result, string, error) {
	log := logf.FromContext(ctx)
	spec, scheduled := pvc.Annotations[z8rv1.AnnotationSchedule]
	targets, replicated := pvc.Annotations[z8rv1.AnnotationReplicateTo]
	if (!scheduled && !replicated) || !pvc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, "", r.dropReplication(ctx, pvc.Namespace, pvc.Name, pvc)
	}
	var sched schedule.Schedule
	var err error
	if scheduled {
		if sched, err = schedule.Parse(spec); err != nil {
			return r.invalid(pvc, z8rv1.AnnotationSchedule, spec, err)
		}
	}
	policy, err := retention.Parse(retention.DefaultSource)
	if err != nil {
		return reconcile.Result{}, "", err
	}
	if v, ok := pvc.Annotations[z8rv1.AnnotationRetention]; ok {
		if policy, err = retention.Parse(v); err != nil {
			return r.invalid(pvc, z8rv1.AnnotationRetention, v, err)
		}
	}
	if replicated {
		if _, err := volsnap.ParseTargets(targets); err != nil {
			return r.invalid(pvc, z8rv1.AnnotationReplicateTo, targets, err)
		}
		if isEmptyTargets(targets) {
			return r.empty(pvc)
		}
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return reconcile.Result{RequeueAfter: retryInvalid}, "", nil
	}
	var pv corev1.PersistentVolume
	if err := r.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		return reconcile.Result{}, "", client.IgnoreNotFound(err)
	}
	if pv.Spec.CSI == nil {
		// No VolumeSnapshots without CSI: the dataset behind a local (or
		// annotated) volume is kept by a DatasetReplication instead.
		return r.reconcileReplication(ctx, pvc, &pv)
	}
	// replicate-to acts per VolumeSnapshot (the content reconciler decides
	// and reports per snapshot); the PVC's problem says the same here.
	pvcAsks, problem, err := r.csiScope(ctx, pvc, &pv)
	if err != nil {
		return reconcile.Result{}, "", err
	}
	if !scheduled {
		return reconcile.Result{}, problem, nil
	}
	class, err := r.classFor(ctx, pvc, pv.Spec.CSI.Driver)
	if err != nil {
		return r.invalid(pvc, z8rv1.AnnotationSnapshotClass, pvc.Annotations[z8rv1.AnnotationSnapshotClass], err)
	}

	var list snapshotv1.VolumeSnapshotList
	if err := r.Client.List(ctx, &list, client.InNamespace(pvc.Namespace),
		client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCSchedule, z8rv1.LabelPVCUID: string(pvc.UID)}); err != nil {
		return reconcile.Result{}, "", err
	}
	var taken []volsnap.Scheduled
	for _, vs := range list.Items {
		at, err := time.Parse(time.RFC3339, vs.Annotations[z8rv1.AnnotationScheduledAt])
		if err != nil {
			at = vs.CreationTimestamp.Time
		}
		s := volsnap.Scheduled{Name: vs.Name, At: at, Deleting: vs.DeletionTimestamp != nil,
			Ready: vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse}
		if s.Ready && !s.Deleting {
			pending, err := r.replicationPending(ctx, &vs, pvcAsks)
			if err != nil {
				return reconcile.Result{}, "", err
			}
			s.Replicating = pending
		}
		taken = append(taken, s)
	}
	now := r.Clock.Now()
	times := make([]time.Time, 0, len(taken))
	for _, s := range taken {
		times = append(times, s.At)
	}
	// A VolumeSnapshot scheduled while the clock ran ahead does not count,
	// or it would freeze the schedule until then.
	last, future := schedule.Last(times, now, schedule.MaxClockSkew)
	if len(future) > 0 {
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventFutureSnapshot, "Schedule",
			"scheduled VolumeSnapshots are dated after the controller's time %s (a clock ran ahead); the schedule does not wait for them: %v", now.UTC().Format(time.RFC3339), future)
	}
	requeue := max(sched.NextDue(last, now).Sub(now), time.Second)
	if waiting, ok := volsnap.Waiting(taken); ok && sched.Due(last, now) {
		// The previous one is not ready (its node may be down): no second
		// one while it waits; its readiness requeues this PVC.
		log.Info("scheduled VolumeSnapshot due but the previous one is not ready; waiting", "waitingFor", waiting)
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventScheduledWaiting, "Snapshot",
			"a scheduled VolumeSnapshot is due but %s is not ready yet; no other is taken until it is", waiting)
		requeue = retryInvalid
	} else if sched.Due(last, now) {
		slot := volsnap.SlotTime(sched, now)
		name, created, err := r.take(ctx, pvc, class, slot, now)
		if err != nil {
			return reconcile.Result{}, "", err
		}
		if created {
			log.Info("took scheduled VolumeSnapshot", "volumeSnapshot", name, "class", class)
			r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventScheduledSnapshot, "Snapshot", "created VolumeSnapshot %s (class %s)", name, class)
			taken = append(taken, volsnap.Scheduled{Name: name, At: now})
		}
		last = now
		requeue = max(sched.NextDue(last, now).Sub(now), time.Second)
	}
	if victims := volsnap.PruneScheduled(taken, policy, now); len(victims) > 0 {
		for _, name := range victims {
			vs := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: pvc.Namespace, Name: name}}
			if err := r.Client.Delete(ctx, vs); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, "", err
			}
		}
		log.Info("pruned scheduled VolumeSnapshots", "pruned", victims)
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeNormal, z8rv1.EventScheduledPruned, "Prune", "deleted %d VolumeSnapshot(s) by retention %s: %v", len(victims), policy, victims)
	}
	for _, s := range taken {
		if s.Replicating {
			// Retention waits for it; its content's progress does not
			// requeue this PVC, so look again soon.
			requeue = min(requeue, retryInvalid)
			break
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, problem, nil
}

// csiScope checks the replicate-to of a CSI PVC against the
// ReplicationTargetPolicies: asks is whether any of its targets is
// allowed (so its scheduled snapshots wait for replication before
// retention prunes them), problem names the refused ones. A volume z8r
// cannot place (another driver's) is left to the content reconciler.
func (r *PVCAnnotationsReconciler) csiScope(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (asks bool, problem string, err error) {
	v, ok := pvc.Annotations[z8rv1.AnnotationReplicateTo]
	if !ok {
		return false, "", nil
	}
	vol, err := pvresolve.Resolve(pv, pvNodeIDs(ctx, r.Client))
	if err != nil || vol.NeedsMountpointLookup() {
		return true, "", nil
	}
	targets, err := volsnap.ResolveTargets(v, vol.Node, vol.Dataset)
	if err != nil {
		return false, "", nil // reported per snapshot (ErrSelfTarget)
	}
	allowed, refused, err := tenantScope(ctx, r.Client, pvc.Namespace, targets)
	if err != nil {
		return false, "", err
	}
	if len(refused) > 0 {
		problem = refusalNote("PersistentVolumeClaim "+pvc.Namespace+"/"+pvc.Name, refused)
		r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventTargetNotAllowed, "Validate", "%s", problem)
	}
	return len(allowed) > 0, problem, nil
}

// replicationPending reports whether vs's content is still being
// replicated (volsnap.ReplicationPending); a VolumeSnapshot not bound to a
// content yet counts as pending when the PVC asks for replication.
func (r *PVCAnnotationsReconciler) replicationPending(ctx context.Context, vs *snapshotv1.VolumeSnapshot, pvcAsks bool) (bool, error) {
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil || *vs.Status.BoundVolumeSnapshotContentName == "" {
		return pvcAsks, nil
	}
	var c snapshotv1.VolumeSnapshotContent
	if err := r.Client.Get(ctx, client.ObjectKey{Name: *vs.Status.BoundVolumeSnapshotContentName}, &c); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return volsnap.ReplicationPending(c.Annotations, pvcAsks), nil
}

// take creates the VolumeSnapshot of the schedule slot (named after the
// slot, so a second reconcile of the same slot, even from a stale cache,
// finds it exists instead of creating another). created is false when this
// PVC's VolumeSnapshot of the slot already existed.
func (r *PVCAnnotationsReconciler) take(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class string, slot, now time.Time) (name string, created bool, err error) {
	for n := 0; ; n++ {
		vs := &snapshotv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:   pvc.Namespace,
				Name:        volsnap.ScheduledName(pvc.Name, slot, n),
				Labels:      map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByPVCSchedule, z8rv1.LabelPVCUID: string(pvc.UID)},
				Annotations: map[string]string{z8rv1.AnnotationScheduledAt: now.UTC().Format(time.RFC3339)},
			},
			Spec: snapshotv1.VolumeSnapshotSpec{
				Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: new(pvc.Name)},
				VolumeSnapshotClassName: new(class),
			},
		}
		err := r.Client.Create(ctx, vs)
		if apierrors.IsAlreadyExists(err) && n < 10 {
			var cur snapshotv1.VolumeSnapshot
			if gerr := r.Client.Get(ctx, client.ObjectKeyFromObject(vs), &cur); gerr != nil {
				return "", false, fmt.Errorf("get VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, gerr)
			}
			if cur.Labels[z8rv1.LabelPVCUID] == string(pvc.UID) && cur.Labels[z8rv1.LabelManagedBy] == z8rv1.ManagedByPVCSchedule {
				return cur.Name, false, nil // this slot's snapshot was taken already
			}
			continue // someone else's VolumeSnapshot has the name
		}
		if err != nil {
			return "", false, fmt.Errorf("create VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, err)
		}
		return vs.Name, true, nil
	}
}

// classFor picks the VolumeSnapshotClass of scheduled snapshots: the PVC's
// z8r.dev/snapshot-class, else the driver's default class, else its only
// class.
func (r *PVCAnnotationsReconciler) classFor(ctx context.Context, pvc *corev1.PersistentVolumeClaim, driver string) (string, error) {
	if name := pvc.Annotations[z8rv1.AnnotationSnapshotClass]; name != "" {
		var class snapshotv1.VolumeSnapshotClass
		if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &class); err != nil {
			return "", fmt.Errorf("VolumeSnapshotClass %s: %w", name, err)
		}
		if class.Driver != driver {
			return "", fmt.Errorf("VolumeSnapshotClass %s is for driver %s, the volume's is %s", name, class.Driver, driver)
		}
		return name, nil
	}
	var list snapshotv1.VolumeSnapshotClassList
	if err := r.Client.List(ctx, &list); err != nil {
		return "", err
	}
	var mine, defaults []string
	for _, c := range list.Items {
		if c.Driver != driver {
			continue
		}
		mine = append(mine, c.Name)
		if c.Annotations[annDefaultSnapshotClass] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	switch {
	case len(defaults) == 1:
		return defaults[0], nil
	case len(defaults) == 0 && len(mine) == 1:
		return mine[0], nil
	case len(mine) == 0:
		return "", fmt.Errorf("no VolumeSnapshotClass for driver %s", driver)
	}
	return "", fmt.Errorf("driver %s has several VolumeSnapshotClasses %v and no single default: set %s", driver, mine, z8rv1.AnnotationSnapshotClass)
}

// invalid reports a malformed annotation; nothing is taken or pruned until
// the PVC changes. It returns the problem to keep on the PVC.
func (r *PVCAnnotationsReconciler) invalid(pvc *corev1.PersistentVolumeClaim, key, value string, err error) (reconcile.Result, string, error) {
	note := fmt.Sprintf("%s=%q: %v; no VolumeSnapshot is taken or pruned until it is fixed", key, value, err)
	r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventInvalidPVCAnnotation, "Validate", "%s", note)
	return reconcile.Result{}, note, nil
}

// empty reports an empty replicate-to: an error that changes nothing (no
// snapshot taken or pruned, the PVC's replication kept as it is).
func (r *PVCAnnotationsReconciler) empty(pvc *corev1.PersistentVolumeClaim) (reconcile.Result, string, error) {
	note := emptyNote("PersistentVolumeClaim "+pvc.Namespace+"/"+pvc.Name) + "; nothing changes until it is fixed"
	r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, z8rv1.EventEmptyAnnotation, "Validate", "%s", note)
	return reconcile.Result{}, note, nil
}

// SetupWithManager registers the reconciler: PVC annotation and phase
// changes, and the readiness of its own VolumeSnapshots (which unblocks
// pruning).
func (r *PVCAnnotationsReconciler) SetupWithManager(mgr manager.Manager) error {
	pvcChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.PersistentVolumeClaim)
			n, ok2 := e.ObjectNew.(*corev1.PersistentVolumeClaim)
			if !ok1 || !ok2 {
				return true
			}
			return !maps.Equal(withoutProblem(o.Annotations), withoutProblem(n.Annotations)) || o.Status.Phase != n.Status.Phase
		},
	}
	ownVS := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[z8rv1.LabelManagedBy] == z8rv1.ManagedByPVCSchedule
	})
	toPVC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		vs, ok := o.(*snapshotv1.VolumeSnapshot)
		if !ok || vs.Spec.Source.PersistentVolumeClaimName == nil {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: vs.Namespace, Name: *vs.Spec.Source.PersistentVolumeClaimName}}}
	})
	// A PVC's replication being promoted: the PVC hands it over once the
	// promotion completed (pvcannotations_datasetreplication.go).
	ownDR := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*z8rv1.DatasetReplication)
			n, ok2 := e.ObjectNew.(*z8rv1.DatasetReplication)
			if !ok1 || !ok2 || n.Labels[z8rv1.LabelManagedBy] != managedByPVCAnnotations {
				return false
			}
			phase := func(dr *z8rv1.DatasetReplication) string {
				if dr.Status.Promotion == nil {
					return ""
				}
				return dr.Status.Promotion.Phase
			}
			return o.Generation != n.Generation || phase(o) != phase(n) || !reflect.DeepEqual(o.Status.Source, n.Status.Source)
		},
	}
	drToPVC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		ns, name, ok := strings.Cut(o.GetAnnotations()[annotationPVC], "/")
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
	})
	return builder.ControllerManagedBy(mgr).
		Named("pvcannotations").
		For(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(pvcChanged)).
		Watches(&snapshotv1.VolumeSnapshot{}, toPVC, builder.WithPredicates(ownVS)).
		Watches(&z8rv1.DatasetReplication{}, drToPVC, builder.WithPredicates(ownDR)).
		WithOptions(controller.Options{SkipNameValidation: &r.skipNameValidation}).
		Complete(r)
}

// withoutProblem is ann without the problem z8r itself records, so that
// recording it does not reconcile the PVC again.
func withoutProblem(ann map[string]string) map[string]string {
	if _, ok := ann[policy.AnnProblem]; !ok {
		return ann
	}
	out := maps.Clone(ann)
	delete(out, policy.AnnProblem)
	return out
}
