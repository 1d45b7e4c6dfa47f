package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/zfsexec"
)

// Labels and annotations read from nodes.
const (
	LabelSeed      = "zfs.replication.takutakahashi.dev"
	AnnSeedMaster  = "zfs.replication.takutakahashi.dev/master"
	AnnSeedReplica = "zfs.replication.takutakahashi.dev/replica"

	LabelZ8R            = "z8r.dev/replication"
	AnnMaster           = "z8r.dev/master"
	AnnReplica          = "z8r.dev/replica"
	AnnSchedule         = "z8r.dev/schedule"
	AnnRetention        = "z8r.dev/retention"
	AnnTargetRetention  = "z8r.dev/target-retention"
	AnnReplicateForeign = "z8r.dev/replicate-foreign"
	AnnRollbackDiverged = "z8r.dev/rollback-diverged"
	// AnnAllowUnplannedFailover on a master node lets a promotion of its
	// datasets (the master and replica annotations swapped) go ahead when
	// the old master cannot be reached (spec.allowUnplannedFailover).
	AnnAllowUnplannedFailover = "z8r.dev/allow-unplanned-failover"

	// AnnProblem is written by the controller, not by users: the node's
	// current annotation problems (Problem.String, joined by "; "),
	// removed once there are none. Events about a node are aggregated by
	// reason, so a later problem may be folded into an earlier Event; this
	// annotation always says what is wrong now.
	AnnProblem = "z8r.dev/annotation-problem"
)

// MsgEmpty is the problem of a list annotation with no entry.
const MsgEmpty = "empty value; remove the annotation to stop replicating"

// Node is one Kubernetes node's name, labels and annotations.
type Node struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Replication is one source dataset and where it goes.
type Replication struct {
	ID             string // ID(SourceNode, SourceDataset)
	SourceNode     string
	SourceDataset  string
	Schedule       string // canonical schedule.Schedule string
	Retention      string // canonical retention.Policy string (source side)
	IncludeForeign bool
	// AllowUnplannedFailover: AnnAllowUnplannedFailover on the master.
	AllowUnplannedFailover bool
	Targets                []Target
}

// Target is one node receiving a Replication.
type Target struct {
	ID               string // ID(Node, Dataset); also names its hold tag
	Node             string
	Dataset          string
	Retention        string // canonical retention.Policy string (target side)
	RollbackDiverged bool
}

// Problem is one thing wrong in the nodes' configuration.
type Problem struct {
	Node    string
	Key     string
	Value   string
	Message string
	// Rejected: Node contributes nothing (see the package documentation).
	Rejected bool
}

func (p Problem) String() string {
	return fmt.Sprintf("node %s: %s=%q: %s", p.Node, p.Key, p.Value, p.Message)
}

// RejectedNodes returns the sorted names of the nodes some problem rejects.
func RejectedNodes(problems []Problem) []string {
	var out []string
	for _, p := range problems {
		if p.Rejected && !slices.Contains(out, p.Node) {
			out = append(out, p.Node)
		}
	}
	sort.Strings(out)
	return out
}

// ID returns a stable identifier for a dataset on a node: lower-case
// letters, digits and '-', at most 63 characters, ending in 8 hex digits of
// a hash of node and dataset so that distinct pairs never share an ID.
// Hold tags derive from it: its output must never change.
func ID(node, dataset string) string { return hashedID(63, 4, node, dataset) }

// LongID is ID with 16 hex digits (64 bits) of the hash of a and b, at
// most limit characters long (limit at least 17): for names a party may
// try to collide with someone else's by choosing a and b.
func LongID(limit int, a, b string) string { return hashedID(limit, 8, a, b) }

// hashedID is a readable prefix of a-b, cut to fit limit, then '-' and
// the first hashBytes bytes of SHA-256(a NUL b) in hex.
func hashedID(limit, hashBytes int, a, b string) string {
	maxReadable := limit - 1 - 2*hashBytes
	sum := sha256.Sum256([]byte(a + "\x00" + b))
	suffix := hex.EncodeToString(sum[:hashBytes])
	if maxReadable < 1 {
		return "x" + suffix
	}
	var sb strings.Builder
	dash := false
	for _, r := range strings.ToLower(a + "-" + b) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
			dash = false
		} else if !dash && sb.Len() > 0 {
			sb.WriteByte('-')
			dash = true
		}
		if sb.Len() >= maxReadable {
			break
		}
	}
	readable := strings.TrimRight(sb.String(), "-")
	if readable == "" {
		return "x" + suffix
	}
	return readable + "-" + suffix
}

// replicaEntry is one SRC[:DST] entry.
type replicaEntry struct {
	source, target string
}

// nodeSpec is what one participating node says.
type nodeSpec struct {
	name            string
	masterKey       string // key the master list came from
	masters         []string
	replicaKey      string
	replicas        []replicaEntry
	schedule        string
	retention       string
	targetRetention string
	includeForeign  bool
	allowUnplanned  bool
	rollback        bool
}

type collector struct {
	problems []Problem
	rejected map[string]bool
}

func (c *collector) reject(node, key, value, format string, args ...any) {
	c.problems = append(c.problems, Problem{Node: node, Key: key, Value: value, Message: fmt.Sprintf(format, args...), Rejected: true})
	c.rejected[node] = true
}

func (c *collector) warn(node, key, value, format string, args ...any) {
	c.problems = append(c.problems, Problem{Node: node, Key: key, Value: value, Message: fmt.Sprintf(format, args...)})
}

// Parse reads every node's labels and annotations (see the package
// documentation). Node names must be unique.
func Parse(nodes []Node) ([]Replication, []Problem) {
	c := &collector{rejected: map[string]bool{}}
	var specs []*nodeSpec
	for _, n := range nodes {
		if !participates(c, n) {
			continue
		}
		specs = append(specs, parseNode(c, n))
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].name < specs[j].name })

	// A dataset claimed by two masters rejects both; claims of nodes already
	// rejected count, since their previous configuration stays in force.
	claims := map[string][]*nodeSpec{}
	for _, s := range specs {
		for _, ds := range s.masters {
			claims[ds] = append(claims[ds], s)
		}
	}
	for _, ds := range sortedKeys(claims) {
		if cl := claims[ds]; len(cl) > 1 {
			var names []string
			for _, s := range cl {
				names = append(names, s.name)
			}
			for _, s := range cl {
				c.reject(s.name, s.masterKey, ds, "dataset %s is claimed as master by nodes %s", ds, strings.Join(names, ", "))
			}
		}
	}

	byDataset := map[string]*Replication{}
	var repls []*Replication
	for _, s := range specs {
		if c.rejected[s.name] {
			continue
		}
		for _, ds := range s.masters {
			r := &Replication{
				ID: ID(s.name, ds), SourceNode: s.name, SourceDataset: ds,
				Schedule: s.schedule, Retention: s.retention, IncludeForeign: s.includeForeign, AllowUnplannedFailover: s.allowUnplanned,
			}
			byDataset[ds] = r
			repls = append(repls, r)
		}
	}
	for _, s := range specs {
		if c.rejected[s.name] {
			continue
		}
		for _, e := range s.replicas {
			r := byDataset[e.source]
			if r == nil {
				if len(claims[e.source]) == 0 {
					c.warn(s.name, s.replicaKey, e.source, "no node is master of %s; entry skipped", e.source)
				}
				continue
			}
			r.Targets = append(r.Targets, Target{
				ID: ID(s.name, e.target), Node: s.name, Dataset: e.target,
				Retention: s.targetRetention, RollbackDiverged: s.rollback,
			})
		}
	}

	out := make([]Replication, 0, len(repls))
	for _, r := range repls {
		sort.Slice(r.Targets, func(i, j int) bool {
			a, b := r.Targets[i], r.Targets[j]
			return a.Node < b.Node || a.Node == b.Node && a.Dataset < b.Dataset
		})
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.SourceNode < b.SourceNode || a.SourceNode == b.SourceNode && a.SourceDataset < b.SourceDataset
	})
	sort.SliceStable(c.problems, func(i, j int) bool {
		a, b := c.problems[i], c.problems[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.Value != b.Value {
			return a.Value < b.Value
		}
		return a.Message < b.Message
	})
	return out, c.problems
}

// participates applies the labels: z8r.dev wins over the seed's label.
func participates(c *collector, n Node) bool {
	z, zok := n.Labels[LabelZ8R]
	s, sok := n.Labels[LabelSeed]
	check := func(key, v string) {
		if v != "true" && v != "false" {
			c.warn(n.Name, key, v, "want true or false; the node does not take part unless a label is true")
		}
	}
	if zok {
		check(LabelZ8R, z)
	}
	if sok {
		check(LabelSeed, s)
	}
	if zok && sok && z != s {
		c.warn(n.Name, LabelSeed, s, "differs from %s=%q, which wins", LabelZ8R, z)
	}
	if zok {
		return z == "true"
	}
	return sok && s == "true"
}

func parseNode(c *collector, n Node) *nodeSpec {
	s := &nodeSpec{name: n.Name}
	ann := n.Annotations
	reject := func(key, value, format string, args ...any) { c.reject(n.Name, key, value, format, args...) }

	// Masters.
	zm, zmOK := ann[AnnMaster]
	sm, smOK := ann[AnnSeedMaster]
	var zMasters, sMasters []string
	var zmErr, smErr bool
	// An empty list is a mistake (a half-written value), never "nothing":
	// removing the annotation is how a user says that.
	for _, key := range []string{AnnMaster, AnnSeedMaster, AnnReplica, AnnSeedReplica} {
		if v, ok := ann[key]; ok && len(entries(v)) == 0 {
			reject(key, v, "%s", MsgEmpty)
		}
	}
	if zmOK {
		zMasters, zmErr = parseDatasets(zm, func(v, msg string) { reject(AnnMaster, v, "%s", msg) })
	}
	if smOK {
		sMasters, smErr = parseDatasets(sm, func(v, msg string) { reject(AnnSeedMaster, v, "%s", msg) })
	}
	zmErr = zmErr || zmOK && len(zMasters) == 0
	smErr = smErr || smOK && len(sMasters) == 0
	switch {
	case zmOK:
		s.masterKey, s.masters = AnnMaster, zMasters
		if smOK && !zmErr && !smErr && !sameSet(zMasters, sMasters) {
			c.warn(n.Name, AnnSeedMaster, sm, "differs from %s=%q, which wins", AnnMaster, zm)
		}
	case smOK:
		s.masterKey, s.masters = AnnSeedMaster, sMasters
	}

	// Replicas.
	zr, zrOK := ann[AnnReplica]
	sr, srOK := ann[AnnSeedReplica]
	var zRep, sRep []replicaEntry
	var zrErr, srErr bool
	if zrOK {
		zRep, zrErr = parseReplicas(zr, true, func(v, msg string) { reject(AnnReplica, v, "%s", msg) })
	}
	if srOK {
		sRep, srErr = parseReplicas(sr, false, func(v, msg string) { reject(AnnSeedReplica, v, "%s", msg) })
	}
	zrErr = zrErr || zrOK && len(zRep) == 0
	srErr = srErr || srOK && len(sRep) == 0
	switch {
	case zrOK:
		s.replicaKey, s.replicas = AnnReplica, zRep
		if srOK && !zrErr && !srErr && !sameEntries(zRep, sRep) {
			c.warn(n.Name, AnnSeedReplica, sr, "differs from %s=%q, which wins", AnnReplica, zr)
		}
	case srOK:
		s.replicaKey, s.replicas = AnnSeedReplica, sRep
	}

	// Targets on this node: one source per target dataset, never a dataset
	// this node is the master of.
	seen := map[string]string{}
	for _, e := range s.replicas {
		if prev, dup := seen[e.target]; dup && prev != e.source {
			reject(s.replicaKey, entryString(e), "target dataset %s is also the target of %s", e.target, prev)
		}
		seen[e.target] = e.source
		if slices.Contains(s.masters, e.target) {
			if e.target == e.source {
				reject(s.replicaKey, entryString(e), "the node is master of %s and cannot replicate it onto itself", e.source)
			} else {
				reject(s.replicaKey, entryString(e), "target dataset %s is a dataset this node is master of", e.target)
			}
		}
	}

	// Settings.
	s.schedule = schedule.Default().String()
	if v, ok := ann[AnnSchedule]; ok {
		if sch, err := schedule.Parse(v); err != nil {
			reject(AnnSchedule, v, "%v", err)
		} else {
			s.schedule = sch.String()
		}
	}
	s.retention = canonicalRetention(retention.DefaultSource)
	if v, ok := ann[AnnRetention]; ok {
		if p, err := retention.Parse(v); err != nil {
			reject(AnnRetention, v, "%v", err)
		} else {
			s.retention = p.String()
		}
	}
	s.targetRetention = canonicalRetention(retention.DefaultTarget)
	if v, ok := ann[AnnTargetRetention]; ok {
		if p, err := retention.Parse(v); err != nil {
			reject(AnnTargetRetention, v, "%v", err)
		} else {
			s.targetRetention = p.String()
		}
	}
	s.includeForeign = parseBool(ann, AnnReplicateForeign, reject)
	s.rollback = parseBool(ann, AnnRollbackDiverged, reject)
	s.allowUnplanned = parseBool(ann, AnnAllowUnplannedFailover, reject)
	return s
}

func canonicalRetention(spec string) string {
	p, err := retention.Parse(spec)
	if err != nil {
		panic("policy: default retention does not parse: " + err.Error())
	}
	return p.String()
}

func parseBool(ann map[string]string, key string, reject func(key, value, format string, args ...any)) bool {
	v, ok := ann[key]
	if !ok {
		return false
	}
	switch strings.TrimSpace(v) {
	case "true":
		return true
	case "false":
		return false
	}
	reject(key, v, "want true or false")
	return false
}

// entries splits a comma-separated list, trimming blanks and dropping empty
// entries.
func entries(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// parseDatasets reads a dataset list; bad reports each invalid entry.
func parseDatasets(v string, bad func(entry, msg string)) (out []string, failed bool) {
	for _, e := range entries(v) {
		if err := zfsexec.ValidateDataset(e); err != nil {
			bad(e, err.Error())
			failed = true
			continue
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, failed
}

// parseReplicas reads a replica list; with mapping, SRC:DST entries.
func parseReplicas(v string, mapping bool, bad func(entry, msg string)) (out []replicaEntry, failed bool) {
	for _, e := range entries(v) {
		re := replicaEntry{source: e, target: e}
		if mapping {
			if src, dst, ok := strings.Cut(e, ":"); ok {
				re = replicaEntry{source: strings.TrimSpace(src), target: strings.TrimSpace(dst)}
				if strings.Contains(re.target, ":") {
					bad(e, "want SOURCE or SOURCE:TARGET (one ':')")
					failed = true
					continue
				}
			}
		}
		ok := true
		for _, ds := range []string{re.source, re.target} {
			if err := zfsexec.ValidateDataset(ds); err != nil {
				bad(e, err.Error())
				ok = false
				break
			}
		}
		if !ok {
			failed = true
			continue
		}
		if !slices.Contains(out, re) {
			out = append(out, re)
		}
	}
	return out, failed
}

func entryString(e replicaEntry) string {
	if e.source == e.target {
		return e.source
	}
	return e.source + ":" + e.target
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameEntries(a, b []replicaEntry) bool {
	as := make([]string, len(a))
	for i, e := range a {
		as[i] = e.source + "\x00" + e.target
	}
	bs := make([]string, len(b))
	for i, e := range b {
		bs[i] = e.source + "\x00" + e.target
	}
	return sameSet(as, bs)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
