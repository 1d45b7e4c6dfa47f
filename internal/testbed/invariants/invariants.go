package invariants

import (
	"fmt"
	"sort"
	"strings"

	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/zfsexec"
)

// Invariant names.
const (
	I1 = "I1" // target's newest exists on the source
	I2 = "I2" // no leaked z8r hold
	I3 = "I3" // nothing not owned by this replication destroyed
	I4 = "I4" // replica contents equal the source at the same GUID
	T1 = "T1" // target readonly
	T2 = "T2" // received snapshots marked owned on the target
	R1 = "R1" // retention makes progress
)

// Listing is one dataset's snapshots and bookmarks on one node, oldest
// first (zfsexec.ZFS.Snapshots order), with z8r's user properties.
type Listing struct {
	Node    string
	Dataset string
	Exists  bool
	Items   []zfsexec.Dataset
}

// Newest returns the newest snapshot (not bookmark), or nil.
func (l Listing) Newest() *zfsexec.Dataset {
	var best *zfsexec.Dataset
	for i := range l.Items {
		d := &l.Items[i]
		if d.IsSnapshot() && (best == nil || d.CreateTXG > best.CreateTXG) {
			best = d
		}
	}
	return best
}

// NewestOwnedBy returns the newest snapshot owned (locally) by policyID.
func (l Listing) NewestOwnedBy(policyID string) *zfsexec.Dataset {
	var best *zfsexec.Dataset
	for i := range l.Items {
		d := &l.Items[i]
		if d.IsSnapshot() && snapname.IsOwnedBy(d.LocalProps, policyID) && (best == nil || d.CreateTXG > best.CreateTXG) {
			best = d
		}
	}
	return best
}

// ByGUID returns the snapshot or bookmark with that GUID, preferring a
// snapshot, or nil.
func (l Listing) ByGUID(guid uint64) *zfsexec.Dataset {
	var bm *zfsexec.Dataset
	for i := range l.Items {
		d := &l.Items[i]
		if d.GUID != guid {
			continue
		}
		if d.IsSnapshot() {
			return d
		}
		bm = d
	}
	return bm
}

// String lists the items as name(guid, refs, owner), for failure reports.
func (l Listing) String() string {
	if !l.Exists {
		return fmt.Sprintf("%s:%s (does not exist)", l.Node, l.Dataset)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%s", l.Node, l.Dataset)
	for _, d := range l.Items {
		owner := "-"
		if snapname.IsOwned(d.LocalProps) {
			owner = "owned:" + d.LocalProps[snapname.PolicyProp]
		} else if d.UserProps[snapname.OwnerProp] != "" {
			owner = "inherited"
		}
		fmt.Fprintf(&b, "\n    %s guid=%d txg=%d userrefs=%d %s", d.ShortName(), d.GUID, d.CreateTXG, d.UserRefs, owner)
	}
	return b.String()
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	Node      string
	Dataset   string
	// Snapshot is the short name of the snapshot concerned, if one is.
	Snapshot string
	Detail   string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s:%s: %s", v.Invariant, v.Node, v.Dataset, v.Detail)
}

// CheckI1: every target's newest snapshot GUID exists on the source as a
// snapshot or a bookmark. A target that does not exist or has no snapshot
// yet is fine.
func CheckI1(src Listing, targets []Listing) []Violation {
	var out []Violation
	for _, t := range targets {
		n := t.Newest()
		if n == nil {
			continue
		}
		if src.ByGUID(n.GUID) == nil {
			out = append(out, Violation{Invariant: I1, Node: t.Node, Dataset: t.Dataset,
				Detail: fmt.Sprintf("newest snapshot @%s (guid %d) exists on the source %s:%s neither as a snapshot nor as a bookmark", n.ShortName(), n.GUID, src.Node, src.Dataset)})
		}
	}
	return out
}

// CheckI2 checks, with no transfer in flight, that no z8r hold leaked. On
// the source a snapshot may carry one hold per target whose newest snapshot
// it is, plus own[short name] holds the caller placed itself; on a target
// only the newest snapshot may carry a hold, at most one.
func CheckI2(src Listing, targets []Listing, own map[string]uint64) []Violation {
	var out []Violation
	bases := map[uint64]uint64{}
	for _, t := range targets {
		if n := t.Newest(); n != nil {
			bases[n.GUID]++
		}
	}
	for _, d := range src.Items {
		if !d.IsSnapshot() || d.UserRefs == 0 {
			continue
		}
		allowed := bases[d.GUID] + own[d.ShortName()]
		if d.UserRefs > allowed {
			out = append(out, Violation{Invariant: I2, Node: src.Node, Dataset: src.Dataset, Snapshot: d.ShortName(),
				Detail: fmt.Sprintf("@%s carries %d hold(s); allowed %d (%d target base(s) + %d placed by the test): a hold leaked", d.ShortName(), d.UserRefs, allowed, bases[d.GUID], own[d.ShortName()])})
		}
	}
	for _, t := range targets {
		n := t.Newest()
		for _, d := range t.Items {
			if !d.IsSnapshot() || d.UserRefs == 0 {
				continue
			}
			var allowed uint64
			if n != nil && d.GUID == n.GUID {
				allowed = 1
			}
			if d.UserRefs > allowed {
				out = append(out, Violation{Invariant: I2, Node: t.Node, Dataset: t.Dataset, Snapshot: d.ShortName(),
					Detail: fmt.Sprintf("replica @%s carries %d hold(s); allowed %d (only the newest may be held): a hold leaked", d.ShortName(), d.UserRefs, allowed)})
			}
		}
	}
	return out
}

// Ledger remembers every snapshot seen that this replication does not own
// (no locally set owner, an inherited one, or another replication's), by
// node and GUID: none of them may ever disappear.
type Ledger struct {
	entries map[string]ledgerEntry // node|guid
}

type ledgerEntry struct {
	node, name, why string
	guid            uint64
}

// Record adds every snapshot of l not owned by policyID and returns how
// many were new.
func (g *Ledger) Record(l Listing, policyID string) int {
	if g.entries == nil {
		g.entries = map[string]ledgerEntry{}
	}
	n := 0
	for _, d := range l.Items {
		if !d.IsSnapshot() || snapname.IsOwnedBy(d.LocalProps, policyID) {
			continue
		}
		key := fmt.Sprintf("%s|%d", l.Node, d.GUID)
		if _, ok := g.entries[key]; ok {
			continue
		}
		g.entries[key] = ledgerEntry{node: l.Node, name: d.Name, guid: d.GUID, why: whyNotOwned(d, policyID)}
		n++
	}
	return n
}

// Len is the number of snapshots in the ledger.
func (g *Ledger) Len() int { return len(g.entries) }

func whyNotOwned(d zfsexec.Dataset, policyID string) string {
	switch {
	case snapname.IsOwned(d.LocalProps):
		return "owned by another replication (" + d.LocalProps[snapname.PolicyProp] + ")"
	case d.UserProps[snapname.OwnerProp] != "":
		return "ownership inherited, not set locally"
	default:
		return "no ownership"
	}
}

// CheckI3 reports every ledger snapshot of the listings' nodes that is gone,
// once: a reported snapshot leaves the ledger. Only the listed nodes'
// entries are checked.
func (g *Ledger) CheckI3(listings ...Listing) []Violation {
	var out []Violation
	byNode := map[string][]Listing{}
	for _, l := range listings {
		byNode[l.Node] = append(byNode[l.Node], l)
	}
	keys := make([]string, 0, len(g.entries))
	for k := range g.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := g.entries[k]
		ls, ok := byNode[e.node]
		if !ok {
			continue
		}
		found := false
		for _, l := range ls {
			if d := l.ByGUID(e.guid); d != nil && d.IsSnapshot() {
				found = true
			}
		}
		if !found {
			fs, _ := zfsexec.SplitSnapshot(e.name)
			delete(g.entries, k)
			out = append(out, Violation{Invariant: I3, Node: e.node, Dataset: fs, Detail: fmt.Sprintf("%s (guid %d, %s) was destroyed", e.name, e.guid, e.why)})
		}
	}
	return out
}

// CheckHygiene checks one target that has received: T1 its readonly value
// is "on"; T2 every snapshot whose GUID is a snapshot policyID owns on the
// source is marked owned (locally) on the target.
func CheckHygiene(src, tgt Listing, readonly, policyID string) []Violation {
	var out []Violation
	if !tgt.Exists || tgt.Newest() == nil {
		return nil
	}
	if readonly != "on" {
		out = append(out, Violation{Invariant: T1, Node: tgt.Node, Dataset: tgt.Dataset, Detail: fmt.Sprintf("replica is writable (readonly=%s)", readonly)})
	}
	for _, d := range tgt.Items {
		if !d.IsSnapshot() {
			continue
		}
		s := src.ByGUID(d.GUID)
		if s == nil || !s.IsSnapshot() || !snapname.IsOwnedBy(s.LocalProps, policyID) {
			continue
		}
		if !snapname.IsOwned(d.LocalProps) {
			out = append(out, Violation{Invariant: T2, Node: tgt.Node, Dataset: tgt.Dataset,
				Detail: fmt.Sprintf("replica @%s of z8r's snapshot is not marked owned (target retention can never prune it)", d.ShortName())})
		}
	}
	return out
}

// CheckRetention checks that retention made progress (R1): once every
// target has the newest snapshot and no transfer is in flight, a "last=N"
// policy leaves at most keep snapshots owned by policyID in l (no old base
// is still needed). Snapshots kept beyond that fill the pool for ever.
func CheckRetention(l Listing, policyID string, keep int) []Violation {
	var owned []string
	for _, d := range l.Items {
		if d.IsSnapshot() && snapname.IsOwnedBy(d.LocalProps, policyID) {
			owned = append(owned, d.ShortName())
		}
	}
	if len(owned) <= keep {
		return nil
	}
	return []Violation{{Invariant: R1, Node: l.Node, Dataset: l.Dataset, Detail: fmt.Sprintf("%d snapshots of the replication left (%s), retention keeps %d", len(owned), strings.Join(owned, ", "), keep)}}
}
