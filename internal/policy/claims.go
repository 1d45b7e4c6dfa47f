package policy

import (
	"sort"
	"time"
)

// Role is how a replication uses a dataset.
type Role int

// Roles of a Claim.
const (
	// RoleSource: the replication snapshots the dataset, prunes its
	// snapshots and holds its bases.
	RoleSource Role = iota
	// RoleTarget: the replication receives into the dataset.
	RoleTarget
)

func (r Role) String() string {
	if r == RoleTarget {
		return "target"
	}
	return "source"
}

// Owner is one replication: a DatasetReplication (whatever configured it:
// node annotations, PVC annotations or a user), or the VolumeSnapshot
// replication of one source volume.
type Owner struct {
	// Kind and Name identify it ("DatasetReplication", name), for messages.
	Kind string
	Name string
	// Created orders owners: the earliest claim wins.
	Created time.Time
}

func (o Owner) String() string { return o.Kind + " " + o.Name }

// Claim is an owner's use of a dataset on a node.
type Claim struct {
	Owner   Owner
	Node    string
	Dataset string
	Role    Role
}

// Conflict is a claim refused because First holds the dataset.
type Conflict struct {
	Claim Claim
	First Claim
}

// Conflicts decides who may use each dataset: one source dataset
// (node+dataset) has one replication, and one target dataset has one
// writer. A dataset claimed by several owners belongs to the earliest
// (Created, then Kind and Name as a tiebreak); every claim of another
// owner on it is refused, unless both claims are sources (two owners
// snapshotting one dataset are refused too: they would prune each other's
// history). So a later replication that targets a dataset another one
// sources or receives into, or sources one that another receives into or
// sources, is refused. Claims of the same owner never conflict. The result
// is sorted by the refused owner, node and dataset.
func Conflicts(claims []Claim) []Conflict {
	type key struct{ node, dataset string }
	byDataset := map[key][]Claim{}
	for _, c := range claims {
		k := key{c.Node, c.Dataset}
		byDataset[k] = append(byDataset[k], c)
	}
	var out []Conflict
	for _, cs := range byDataset {
		sort.SliceStable(cs, func(i, j int) bool { return before(cs[i].Owner, cs[j].Owner) })
		first := cs[0]
		for _, c := range cs[1:] {
			if c.Owner.Kind == first.Owner.Kind && c.Owner.Name == first.Owner.Name {
				continue
			}
			out = append(out, Conflict{Claim: c, First: first})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Claim, out[j].Claim
		if a.Owner != b.Owner {
			return before(a.Owner, b.Owner)
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.Dataset != b.Dataset {
			return a.Dataset < b.Dataset
		}
		return a.Role < b.Role
	})
	return out
}

// ConflictsOf returns the conflicts whose refused claim is owner's.
func ConflictsOf(conflicts []Conflict, kind, name string) []Conflict {
	var out []Conflict
	for _, c := range conflicts {
		if c.Claim.Owner.Kind == kind && c.Claim.Owner.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func before(a, b Owner) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	return a.Name < b.Name
}
