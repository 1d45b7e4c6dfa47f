package controllers

import (
	"context"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// Z8RNodeReconciler pins agent host keys on first use and reports changes.
type Z8RNodeReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	// Metrics: the node's readiness, heartbeat and host-key gauges (nil: none).
	Metrics *Metrics

	skipNameValidation bool
}

// +kubebuilder:rbac:groups=z8r.dev,resources=z8rnodes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=z8rnodes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile implements reconcile.Reconciler.
func (r *Z8RNodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx).WithValues("z8rnode", req.Name)
	var zn z8rv1.Z8RNode
	if err := r.Client.Get(ctx, req.NamespacedName, &zn); err != nil {
		if apierrors.IsNotFound(err) {
			r.Metrics.ForgetNode(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// After pinning below, so a key pinned on first use is no change.
	defer r.Metrics.ObserveNode(&zn)
	if zn.Status.HostKey == "" {
		return ctrl.Result{}, nil
	}
	if zn.Spec.PinnedHostKey == "" {
		patch := client.MergeFrom(zn.DeepCopy())
		zn.Spec.PinnedHostKey = zn.Status.HostKey
		if err := r.Client.Patch(ctx, &zn, patch); err != nil {
			return ctrl.Result{}, err
		}
		log.Info("pinned host key on first use", "fingerprint", zn.Status.HostKeyFingerprint)
		r.Recorder.Eventf(&zn, nil, corev1.EventTypeNormal, z8rv1.EventHostKeyPinned, "Pin",
			"pinned agent host key %s on first use", zn.Status.HostKeyFingerprint)
	}
	cond := metav1.Condition{Type: z8rv1.ConditionHostKeyTrusted, Status: metav1.ConditionTrue,
		Reason: z8rv1.ReasonHostKeyMatches, Message: "the agent presents the pinned host key", ObservedGeneration: zn.Generation}
	if zn.Status.HostKey != zn.Spec.PinnedHostKey {
		cond.Status, cond.Reason = metav1.ConditionFalse, z8rv1.ReasonHostKeyChanged
		cond.Message = "the agent publishes a host key (" + zn.Status.HostKeyFingerprint +
			") other than the pinned one; z8r refuses to connect until an administrator approves it: kubectl z8r approve-hostkey " + zn.Name
		if prev := meta.FindStatusCondition(zn.Status.Conditions, z8rv1.ConditionHostKeyTrusted); prev == nil || prev.Status != metav1.ConditionFalse {
			r.Recorder.Eventf(&zn, nil, corev1.EventTypeWarning, z8rv1.EventHostKeyChanged, "Refuse", "%s", cond.Message)
			log.Info("agent host key changed; refusing until approved", "presented", zn.Status.HostKeyFingerprint)
		}
	}
	if prev := meta.FindStatusCondition(zn.Status.Conditions, cond.Type); prev != nil && prev.Status == cond.Status && prev.Reason == cond.Reason {
		return ctrl.Result{}, nil
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur z8rv1.Z8RNode
		if err := r.Client.Get(ctx, req.NamespacedName, &cur); err != nil {
			return err
		}
		meta.SetStatusCondition(&cur.Status.Conditions, cond)
		return r.Client.Status().Update(ctx, &cur)
	})
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// SetupWithManager registers the reconciler.
func (r *Z8RNodeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&z8rv1.Z8RNode{}).Named("z8rnode").
		WithOptions(controller.Options{SkipNameValidation: &r.skipNameValidation}).Complete(r)
}
