package controllers

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
)

// policyKey is the single work item: the policy is a function of every
// node's annotations at once (a master and its replicas live on different
// nodes).
var policyKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-annotations"}}

// NodePolicyReconciler turns node labels and annotations into
// DatasetReplications labelled z8r.dev/managed-by=node-annotations.
type NodePolicyReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder

	skipNameValidation bool
}

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=z8r.dev,resources=datasetreplications,verbs=get;list;watch;create;update;patch;delete

// Reconcile implements reconcile.Reconciler.
func (r *NodePolicyReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return reconcile.Result{}, err
	}
	in := make([]policy.Node, 0, len(nodes.Items))
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		byName[n.Name] = n
		in = append(in, policy.Node{Name: n.Name, Labels: n.Labels, Annotations: n.Annotations})
	}
	reps, problems := policy.Parse(in)
	for _, p := range problems {
		n := byName[p.Node]
		if n == nil {
			continue
		}
		reason := z8rv1.EventAnnotationWarning
		switch {
		case p.Rejected && p.Message == policy.MsgEmpty:
			reason = z8rv1.EventEmptyAnnotation
		case p.Rejected:
			reason = z8rv1.EventInvalidAnnotation
		}
		r.Recorder.Eventf(n, nil, corev1.EventTypeWarning, reason, "Validate", "%s", p.String())
		log.Info("node annotation problem", "node", p.Node, "key", p.Key, "value", p.Value, "message", p.Message, "rejected", p.Rejected)
	}
	if err := r.recordProblems(ctx, nodes.Items, problems); err != nil {
		return reconcile.Result{}, err
	}
	rejected := map[string]bool{}
	for _, n := range policy.RejectedNodes(problems) {
		rejected[n] = true
	}

	var existing z8rv1.DatasetReplicationList
	if err := r.Client.List(ctx, &existing, client.MatchingLabels{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}); err != nil {
		return reconcile.Result{}, err
	}
	current := map[string]*z8rv1.DatasetReplication{}
	for i := range existing.Items {
		current[existing.Items[i].Name] = &existing.Items[i]
	}
	wanted := map[string]bool{}
	for _, rep := range reps {
		spec := specFor(rep)
		// A replication keeps the name it was created with when a
		// promotion moves its source to another node.
		cur, ok := current[rep.ID]
		if !ok {
			cur = promotedTo(current, wanted, rep)
			ok = cur != nil
		}
		if ok {
			wanted[cur.Name] = true
			if involvesRejected(cur, rejected) {
				continue // frozen until its nodes' annotations are fixed
			}
			// spec.trigger is an action, not configuration: a user's
			// manual trigger is kept, other hand edits are reverted.
			spec.Trigger = cur.Spec.Trigger
			if reflect.DeepEqual(cur.Spec, spec) {
				continue
			}
			cur.Spec = spec
			if err := r.Client.Update(ctx, cur); err != nil {
				return reconcile.Result{}, err
			}
			log.Info("updated replication from node annotations", "replication", cur.Name)
			continue
		}
		wanted[rep.ID] = true
		// The master and replica annotations swapped between two nodes:
		// the existing replication is promoted (its spec.source changes
		// to the former replica), not replaced by a new one that would
		// find its target diverged.
		if cur := promotedFrom(current, wanted, rep); cur != nil {
			wanted[cur.Name] = true
			if involvesRejected(cur, rejected) {
				continue
			}
			spec.Trigger = cur.Spec.Trigger
			cur.Spec = spec
			if err := r.Client.Update(ctx, cur); err != nil {
				return reconcile.Result{}, err
			}
			log.Info("promotion from node annotations", "replication", cur.Name, "node", rep.SourceNode, "dataset", rep.SourceDataset)
			continue
		}
		dr := &z8rv1.DatasetReplication{
			ObjectMeta: metav1.ObjectMeta{Name: rep.ID, Labels: map[string]string{z8rv1.LabelManagedBy: z8rv1.ManagedByNodeAnnotations}},
			Spec:       spec,
		}
		if err := r.Client.Create(ctx, dr); err != nil && !apierrors.IsAlreadyExists(err) {
			return reconcile.Result{}, err
		}
		log.Info("created replication from node annotations", "replication", rep.ID, "node", rep.SourceNode, "dataset", rep.SourceDataset)
		if n := byName[rep.SourceNode]; n != nil {
			r.Recorder.Eventf(n, nil, corev1.EventTypeNormal, z8rv1.EventReplicationGenerated, "Configure",
				"replicating %s to %d target(s) as DatasetReplication %s", rep.SourceDataset, len(rep.Targets), rep.ID)
		}
	}
	for name, cur := range current {
		if wanted[name] || involvesRejected(cur, rejected) {
			continue
		}
		if err := r.Client.Delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		log.Info("deleted replication no longer annotated", "replication", name)
	}
	return reconcile.Result{}, nil
}

// recordProblems sets each node's policy.AnnProblem to its current
// problems, and removes it from nodes that have none, so the problem a user
// reads is never a stale one folded into an earlier Event.
func (r *NodePolicyReconciler) recordProblems(ctx context.Context, nodes []corev1.Node, problems []policy.Problem) error {
	current := map[string][]string{}
	for _, p := range problems {
		current[p.Node] = append(current[p.Node], p.String())
	}
	for i := range nodes {
		n := &nodes[i]
		want := ""
		if ps := current[n.Name]; len(ps) > 0 {
			want = ShortenNote(strings.Join(ps, "; "), MaxEventNote)
		}
		have, ok := n.Annotations[policy.AnnProblem]
		if have == want && ok == (want != "") {
			continue
		}
		patch := client.MergeFrom(n.DeepCopy())
		if want == "" {
			delete(n.Annotations, policy.AnnProblem)
		} else {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[policy.AnnProblem] = want
		}
		if err := r.Client.Patch(ctx, n, patch); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("recording the annotation problems of node %s: %w", n.Name, err)
		}
	}
	return nil
}

func involvesRejected(dr *z8rv1.DatasetReplication, rejected map[string]bool) bool {
	if rejected[dr.Spec.Source.Node] {
		return true
	}
	for _, t := range dr.Spec.Targets {
		if rejected[t.Node] {
			return true
		}
	}
	return false
}

// promotedFrom is the generated replication rep promotes, if any: one
// whose source rep lists as a target and which lists rep's source as a
// target, and that no parsed replication keeps under its own name.
func promotedFrom(current map[string]*z8rv1.DatasetReplication, wanted map[string]bool, rep policy.Replication) *z8rv1.DatasetReplication {
	names := make([]string, 0, len(current))
	for name := range current {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		cur := current[name]
		if wanted[name] || name == rep.ID {
			continue
		}
		old := cur.Spec.Source
		back := slices.ContainsFunc(rep.Targets, func(t policy.Target) bool { return t.Node == old.Node && t.Dataset == old.Dataset })
		fwd := slices.ContainsFunc(cur.Spec.Targets, func(t z8rv1.ReplicationTarget) bool {
			return t.Node == rep.SourceNode && targetDataset(*cur, t) == rep.SourceDataset
		})
		if back && fwd {
			return cur
		}
	}
	return nil
}

// promotedTo is the generated replication, under another name than
// rep.ID, whose source already is rep's: one promoted earlier.
func promotedTo(current map[string]*z8rv1.DatasetReplication, wanted map[string]bool, rep policy.Replication) *z8rv1.DatasetReplication {
	for name, cur := range current {
		if !wanted[name] && cur.Spec.Source == (z8rv1.DatasetRef{Node: rep.SourceNode, Dataset: rep.SourceDataset}) {
			return cur
		}
	}
	return nil
}

func specFor(rep policy.Replication) z8rv1.DatasetReplicationSpec {
	spec := z8rv1.DatasetReplicationSpec{
		Source:         z8rv1.DatasetRef{Node: rep.SourceNode, Dataset: rep.SourceDataset},
		Schedule:       rep.Schedule,
		Retention:      rep.Retention,
		IncludeForeign: rep.IncludeForeign,

		AllowUnplannedFailover: rep.AllowUnplannedFailover,
	}
	for _, t := range rep.Targets {
		spec.Targets = append(spec.Targets, z8rv1.ReplicationTarget{
			Node: t.Node, Dataset: t.Dataset, Retention: t.Retention, RollbackDiverged: t.RollbackDiverged,
		})
	}
	return spec
}

// SetupWithManager registers the reconciler: every Node event, and every
// change to a managed DatasetReplication (so a hand edit is reverted),
// enqueues the single policy key.
func (r *NodePolicyReconciler) SetupWithManager(mgr manager.Manager) error {
	toPolicy := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{policyKey}
	})
	managed := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[z8rv1.LabelManagedBy] == z8rv1.ManagedByNodeAnnotations
	})
	return builder.ControllerManagedBy(mgr).
		Named("nodepolicy").
		WithOptions(controller.Options{SkipNameValidation: &r.skipNameValidation}).
		Watches(&corev1.Node{}, toPolicy).
		Watches(&z8rv1.DatasetReplication{}, toPolicy,
			builder.WithPredicates(managed, predicate.GenerationChangedPredicate{})).
		Complete(r)
}
