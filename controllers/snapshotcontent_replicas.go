package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// A deleted source content's replicas and holds: what goes with it and
// what stays. The snapshotter runs this after it destroyed a served
// driver's snapshot, the replication for another driver's content.

// replicasOf lists the replica contents of c.
func (k contentKit) replicasOf(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) ([]snapshotv1.VolumeSnapshotContent, error) {
	var list snapshotv1.VolumeSnapshotContentList
	if err := k.Client.List(ctx, &list, client.MatchingLabels{z8rv1.LabelReplicaOfUID: string(c.UID)}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// cleanupReplicas runs when a source content is deleted. With Delete its
// unbound replica contents are deleted (wait until they are gone); bound
// ones, and all of them with Retain, stay. Then z8r's holds on the source
// snapshot are released for every target whose replica did not stay
// (for another driver's snapshot: for every target). held lists the
// targets whose hold stays.
func (k contentKit) cleanupReplicas(ctx context.Context, c *snapshotv1.VolumeSnapshotContent) (held []string, wait bool, err error) {
	reps, err := k.replicasOf(ctx, c)
	if err != nil {
		return nil, false, err
	}
	kept := map[volsnap.Target]bool{}
	for i := range reps {
		rep := &reps[i]
		t := volsnap.Target{Node: rep.Annotations[z8rv1.AnnotationNode], Dataset: rep.Annotations[z8rv1.AnnotationDataset]}
		if c.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete || rep.Spec.VolumeSnapshotRef.UID != "" {
			kept[t] = true
			continue
		}
		wait = true
		if rep.DeletionTimestamp != nil {
			continue
		}
		if rep.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
			old := rep.DeepCopy()
			rep.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentDelete
			if err := k.Client.Patch(ctx, rep, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
				return nil, false, err
			}
		}
		if err := k.Client.Delete(ctx, rep); client.IgnoreNotFound(err) != nil {
			return nil, false, err
		}
		logf.FromContext(ctx).Info("deleting replica with its source", "replica", rep.Name, "target", t.String())
	}
	if wait {
		return nil, true, nil
	}
	status, _ := volsnap.ParseStatus(c.Annotations[z8rv1.AnnotationReplicationStatus])
	served := k.Drivers[c.Spec.Driver]
	nodeName, dataset := c.Annotations[z8rv1.AnnotationNode], c.Annotations[z8rv1.AnnotationDataset]
	short := ""
	if c.Status != nil && c.Status.SnapshotHandle != nil {
		if i := strings.LastIndexByte(*c.Status.SnapshotHandle, '@'); i >= 0 {
			short = (*c.Status.SnapshotHandle)[i+1:]
		}
	}
	var release []volsnap.Target
	for _, ts := range status {
		if served && kept[ts.Target()] {
			held = append(held, ts.Target().String())
			continue
		}
		// A replica whose destroy was deferred (the target holds its last
		// received snapshot as the next base) still needs its source: keep
		// the source's hold until the next replication moves both.
		if served && short != "" && ts.Synced() && k.replicaStillThere(ctx, ts.Target(), short) {
			held = append(held, ts.Target().String())
			continue
		}
		release = append(release, ts.Target())
	}
	if len(release) == 0 || nodeName == "" || dataset == "" || short == "" {
		return held, false, nil
	}
	node, err := k.Agents.Get(ctx, nodeName)
	if errors.Is(err, ErrNodeUnknown) {
		return held, false, nil // the node, its pool and its holds are gone
	}
	if err != nil {
		return nil, false, fmt.Errorf("release holds on node %s: %w", nodeName, err)
	}
	for _, t := range release {
		// Another driver destroys its own snapshot once z8r lets go, so the
		// chain to t ends here: a replica whose deletion was asked for
		// (Delete) and only deferred by z8r's hold as the next base can go
		// now, leaving t a pristine replica that the next replication
		// receives into in full. Released before the source's hold, so a
		// crash in between only retries.
		if !served && !kept[t] {
			if err := k.releaseReplicaHold(ctx, t, short); err != nil {
				return nil, false, err
			}
		}
		if err := replicate.Release(ctx, node.ZFS(), volsnap.Handle(dataset, short), volsnap.TargetID(t)); err != nil {
			k.Agents.DropFailed(err, node)
			return nil, false, err
		}
	}
	return held, false, nil
}

// releaseReplicaHold releases z8r's replica hold on t's copy of the
// snapshot short. A target node that is gone holds nothing any more.
func (k contentKit) releaseReplicaHold(ctx context.Context, t volsnap.Target, short string) error {
	tgt, err := k.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrNodeUnknown) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release replica hold on node %s: %w", t.Node, err)
	}
	if err := replicate.ReleaseReplica(ctx, tgt.ZFS(), volsnap.Handle(t.Dataset, short), volsnap.TargetID(t)); err != nil {
		k.Agents.DropFailed(err, tgt)
		return err
	}
	return nil
}

// replicaStillThere reports whether t still has the snapshot short (its
// destroy deferred by a hold). A node that cannot be asked counts as
// still having it (keeping a hold is the safe side); a node that is gone
// does not.
func (k contentKit) replicaStillThere(ctx context.Context, t volsnap.Target, short string) bool {
	tgt, err := k.Agents.Get(ctx, t.Node)
	if errors.Is(err, ErrNodeUnknown) {
		return false
	}
	if err != nil {
		return true
	}
	ok, err := tgt.ZFS().Exists(ctx, volsnap.Handle(t.Dataset, short))
	if err != nil {
		k.Agents.DropFailed(err, tgt)
		return true
	}
	return ok
}
