package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// Owner kinds of policy claims.
const (
	claimKindReplication     = "DatasetReplication"
	claimKindVolumeSnapshots = "VolumeSnapshots"
)

// claimLister lists every replication's claims on datasets: each
// DatasetReplication (node annotations, PVC annotations or a user's) claims
// its source and its targets; the VolumeSnapshot replication of one source
// volume claims that volume and every target its contents were asked to
// go to, as of its oldest such content.
type claimLister struct {
	Client client.Client
	// Snapshots: the snapshot.storage.k8s.io API is served.
	Snapshots bool
}

// conflicts decides policy.Conflicts over every claim; extra contents
// replace the listed ones of the same name (the cache may not show a
// request just stamped).
func (l claimLister) conflicts(ctx context.Context, extra ...*snapshotv1.VolumeSnapshotContent) ([]policy.Conflict, error) {
	var claims []policy.Claim
	var drs z8rv1.DatasetReplicationList
	if err := l.Client.List(ctx, &drs); err != nil {
		return nil, fmt.Errorf("list DatasetReplications: %w", err)
	}
	for i := range drs.Items {
		claims = append(claims, replicationClaims(&drs.Items[i])...)
	}
	if l.Snapshots {
		var contents snapshotv1.VolumeSnapshotContentList
		if err := l.Client.List(ctx, &contents); err != nil {
			return nil, fmt.Errorf("list VolumeSnapshotContents: %w", err)
		}
		items := contents.Items
		for _, e := range extra {
			found := false
			for i := range items {
				if items[i].Name == e.Name {
					items[i], found = *e, true
				}
			}
			if !found {
				items = append(items, *e)
			}
		}
		claims = append(claims, contentClaims(items)...)
	}
	return policy.Conflicts(claims), nil
}

func replicationOwner(dr *z8rv1.DatasetReplication) policy.Owner {
	return policy.Owner{Kind: claimKindReplication, Name: dr.Name, Created: dr.CreationTimestamp.Time}
}

func replicationClaims(dr *z8rv1.DatasetReplication) []policy.Claim {
	o := replicationOwner(dr)
	out := []policy.Claim{{Owner: o, Node: dr.Spec.Source.Node, Dataset: dr.Spec.Source.Dataset, Role: policy.RoleSource}}
	for _, t := range dr.Spec.Targets {
		out = append(out, policy.Claim{Owner: o, Node: t.Node, Dataset: targetDataset(*dr, t), Role: policy.RoleTarget})
	}
	return out
}

// volumeOwnerName names the VolumeSnapshot replication of a source volume.
func volumeOwnerName(node, dataset string) string { return node + ":" + dataset }

// contentClaims groups the replicating contents (z8r stamped their
// request, node and dataset; replicas excluded) by source volume.
func contentClaims(contents []snapshotv1.VolumeSnapshotContent) []policy.Claim {
	type vol struct{ node, dataset string }
	created := map[vol]time.Time{}
	targets := map[vol]map[volsnap.Target]bool{}
	for _, c := range contents {
		if _, isReplica := c.Labels[z8rv1.LabelReplicaOfUID]; isReplica {
			continue
		}
		req, stamped := c.Annotations[z8rv1.AnnotationReplicateTo]
		v := vol{c.Annotations[z8rv1.AnnotationNode], c.Annotations[z8rv1.AnnotationDataset]}
		if !stamped || strings.TrimSpace(req) == "" || v.node == "" || v.dataset == "" {
			continue
		}
		ts, err := volsnap.ResolveTargets(req, v.node, v.dataset)
		if err != nil || len(ts) == 0 {
			continue
		}
		if at, ok := created[v]; !ok || c.CreationTimestamp.Time.Before(at) {
			created[v] = c.CreationTimestamp.Time
		}
		if targets[v] == nil {
			targets[v] = map[volsnap.Target]bool{}
		}
		for _, t := range ts {
			targets[v][t] = true
		}
	}
	var out []policy.Claim
	for v, ts := range targets {
		o := policy.Owner{Kind: claimKindVolumeSnapshots, Name: volumeOwnerName(v.node, v.dataset), Created: created[v]}
		out = append(out, policy.Claim{Owner: o, Node: v.node, Dataset: v.dataset, Role: policy.RoleSource})
		for t := range ts {
			out = append(out, policy.Claim{Owner: o, Node: t.Node, Dataset: t.Dataset, Role: policy.RoleTarget})
		}
	}
	return out
}

// conflictMessage says what a refused claim collides with.
func conflictMessage(c policy.Conflict) string {
	return fmt.Sprintf("%s %s:%s is already the %s of %s; one dataset has one replication and one writer, so this one is refused until that one goes",
		c.Claim.Role, c.Claim.Node, c.Claim.Dataset, c.First.Role, c.First.Owner)
}
