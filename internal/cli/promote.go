package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// ErrPromote matches every error PromoteSpec returns: the promotion asked
// for is not one the replication can make, and nothing was changed.
var ErrPromote = errors.New("cannot promote")

// PromoteSpec returns dr's spec with the target on node (and dataset, when
// the node has several) as the source and the old source as a target: the
// declarative form of a promotion (docs/failover.md). Targets whose
// dataset defaulted to the old source's name keep it, spelled out. The
// promoted target's retention becomes the old source's as a target.
// unplanned sets spec.allowUnplannedFailover.
func PromoteSpec(dr *z8rv1.DatasetReplication, node, dataset string, unplanned bool) (z8rv1.DatasetReplicationSpec, error) {
	spec := *dr.Spec.DeepCopy()
	old := spec.Source
	dsOf := func(t z8rv1.ReplicationTarget) string {
		if t.Dataset != "" {
			return t.Dataset
		}
		return old.Dataset
	}
	var match []int
	var names []string
	for i, t := range spec.Targets {
		names = append(names, t.Node+":"+dsOf(t))
		if t.Node == node && (dataset == "" || dsOf(t) == dataset) {
			match = append(match, i)
		}
	}
	switch {
	case node == old.Node && (dataset == "" || dataset == old.Dataset):
		return spec, fmt.Errorf("%w: %s:%s is already the source of %s", ErrPromote, old.Node, old.Dataset, dr.Name)
	case len(match) == 0:
		return spec, fmt.Errorf("%w: %s has no target on node %s%s (targets: %s)", ErrPromote, dr.Name, node, onDataset(dataset), strings.Join(names, ", "))
	case len(match) > 1:
		return spec, fmt.Errorf("%w: %s has %d targets on node %s; say which with --dataset", ErrPromote, dr.Name, len(match), node)
	}
	promoted := spec.Targets[match[0]]
	spec.Source = z8rv1.DatasetRef{Node: promoted.Node, Dataset: dsOf(promoted)}
	targets := make([]z8rv1.ReplicationTarget, 0, len(spec.Targets))
	for i, t := range spec.Targets {
		if i == match[0] {
			continue
		}
		t.Dataset = dsOf(t)
		if t.Dataset == spec.Source.Dataset {
			t.Dataset = ""
		}
		targets = append(targets, t)
	}
	back := z8rv1.ReplicationTarget{Node: old.Node, Retention: promoted.Retention}
	if old.Dataset != spec.Source.Dataset {
		back.Dataset = old.Dataset
	}
	spec.Targets = append(targets, back)
	spec.AllowUnplannedFailover = unplanned
	return spec, nil
}

func onDataset(ds string) string {
	if ds == "" {
		return ""
	}
	return " with dataset " + ds
}

// checkPromotable refuses, before anything is changed, what the controller
// would refuse or revert.
func checkPromotable(dr *z8rv1.DatasetReplication, spec z8rv1.DatasetReplicationSpec) error {
	switch dr.Labels[z8rv1.LabelManagedBy] {
	case z8rv1.ManagedByNodeAnnotations:
		return fmt.Errorf("%w: %s is generated from node annotations, which would undo the change: swap the master and replica annotations instead (docs/failover.md)", ErrPromote, dr.Name)
	case "", z8rv1.ManagedByPVCAnnotations:
		// A PVC's replication: the PVC's annotations leave it alone while
		// it is promoted and hand it over to the administrator once the
		// promotion completed (docs/failover.md, PVCs).
	default:
		return fmt.Errorf("%w: %s is generated from %s annotations, which would undo the change; restore the replica into a new PVC with kubectl z8r restore instead (docs/failover.md)", ErrPromote, dr.Name, dr.Labels[z8rv1.LabelManagedBy])
	}
	if p := dr.Status.Promotion; p != nil && p.Phase != z8rv1.PromotionCompleted && p.Phase != z8rv1.PromotionCancelled && p.Phase != z8rv1.PromotionRefused {
		return fmt.Errorf("%w: a promotion of %s:%s is %s; wait for it to end", ErrPromote, p.To.Node, p.To.Dataset, p.Phase)
	}
	for _, t := range dr.Status.Targets {
		if t.Node != spec.Source.Node || t.Dataset != spec.Source.Dataset {
			continue
		}
		switch {
		case t.State == z8rv1.TargetDiverged:
			return fmt.Errorf("%w: %s:%s diverged from the source (%s); promoting it would lose what the source has", ErrPromote, t.Node, t.Dataset, t.LastError)
		case t.LastSnapshotGUID == "" && t.LastSnapshot == "":
			return fmt.Errorf("%w: %s:%s has not received any snapshot yet", ErrPromote, t.Node, t.Dataset)
		}
		return nil
	}
	return fmt.Errorf("%w: %s:%s has no status yet (never synced)", ErrPromote, spec.Source.Node, spec.Source.Dataset)
}

func (r *runner) promoteCommand() *cobra.Command {
	var to, dataset string
	var unplanned, wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "promote NAME --to NODE",
		Short: "Make a replica the source of a DatasetReplication (planned switchover or failover)",
		Long: `promote makes the target of DatasetReplication NAME on node NODE its source,
and the old source a target (it is replicated back to when it can be
reached). It patches spec.source and spec.targets; the controller does the
rest and reports in status.promotion:

  planned switchover (the old source reachable): the old source is made
  read-only, snapshotted a last time, that snapshot is sent, then the
  target is made writable. Nothing written before is lost.

  unplanned failover (--unplanned, the old source lost): the target is
  made writable at its newest snapshot, the recovery point. When the old
  source returns, whatever it had after that is kept aside in
  <dataset>-z8r-tail-<time> on it, never destroyed, and it becomes a
  replica of the new source, incrementally.

Without --unplanned a promotion whose old source cannot be reached waits.
Failing back is the same command with the old source's node.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return r.promote(c.Context(), args[0], to, dataset, unplanned, wait, timeout)
		},
	}
	c.Flags().StringVar(&to, "to", "", "the node of the target to promote (required)")
	c.Flags().StringVar(&dataset, "dataset", "", "the target's dataset, when NODE has several")
	c.Flags().BoolVar(&unplanned, "unplanned", false, "promote even if the old source cannot be reached (at the target's newest snapshot)")
	c.Flags().BoolVar(&wait, "wait", false, "wait for the promotion to end and print its outcome")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: how long to wait")
	_ = c.MarkFlagRequired("to")
	return c
}

func (r *runner) promote(ctx context.Context, name, node, dataset string, unplanned, wait bool, timeout time.Duration) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	var dr z8rv1.DatasetReplication
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
		return fmt.Errorf("DatasetReplication %s: %w", name, err)
	}
	spec, err := PromoteSpec(&dr, node, dataset, unplanned)
	if err != nil {
		return err
	}
	if err := checkPromotable(&dr, spec); err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(dr.DeepCopy(), client.MergeFromWithOptimisticLock{})
	dr.Spec = spec
	if err := c.Patch(ctx, &dr, patch); err != nil {
		return fmt.Errorf("promote %s: %w", name, err)
	}
	fmt.Fprintf(r.opts.Out, "Promotion requested: %s: %s:%s becomes the source\n", Clean(name), Clean(spec.Source.Node), Clean(spec.Source.Dataset))
	if pvc := dr.Annotations["z8r.dev/pvc"]; dr.Labels[z8rv1.LabelManagedBy] == z8rv1.ManagedByPVCAnnotations && pvc != "" {
		fmt.Fprintf(r.opts.Out, "It is PVC %s's replication: once promoted it is handed over to you (the PVC's annotations stop managing it); bind a workload to %s:%s with a PV of your own (docs/failover.md, PVCs)\n",
			Clean(pvc), Clean(spec.Source.Node), Clean(spec.Source.Dataset))
	}
	if !wait {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			return fmt.Errorf("DatasetReplication %s: %w", name, err)
		}
		if p := dr.Status.Promotion; p != nil && p.To == spec.Source {
			switch p.Phase {
			case z8rv1.PromotionCompleted:
				fmt.Fprintf(r.opts.Out, "Promoted (%s): recovery point %s", Clean(p.Kind), Clean(p.RecoveryPoint))
				if p.RecoveryPointTime != nil {
					fmt.Fprintf(r.opts.Out, " taken %s", p.RecoveryPointTime.UTC().Format(time.RFC3339))
				}
				fmt.Fprintln(r.opts.Out)
				return nil
			case z8rv1.PromotionRefused, z8rv1.PromotionWaiting:
				return fmt.Errorf("promotion %s: %s", p.Phase, Clean(p.Message))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promotion of %s:%s did not end within %s: %w", spec.Source.Node, spec.Source.Dataset, timeout, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
