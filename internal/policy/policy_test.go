package policy

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// node builds a node from key=value pairs; the two participation labels go
// to Labels, everything else to Annotations.
func node(name string, kv ...string) Node {
	n := Node{Name: name, Labels: map[string]string{}, Annotations: map[string]string{}}
	for _, p := range kv {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			panic("fixture " + p + " lacks '='")
		}
		if k == LabelSeed || k == LabelZ8R {
			n.Labels[k] = v
		} else {
			n.Annotations[k] = v
		}
	}
	return n
}

const (
	seedOn = LabelSeed + "=true"
	z8rOn  = LabelZ8R + "=true"

	defRetention = "1x1d(keep=all) | 7x1d | 4x1w"
)

// repl is a Replication with default settings.
func repl(srcNode, ds string, targets ...Target) Replication {
	return Replication{ID: ID(srcNode, ds), SourceNode: srcNode, SourceDataset: ds,
		Schedule: "6h", Retention: defRetention, Targets: targets}
}

// target is a Target with default settings.
func target(n, ds string) Target {
	return Target{ID: ID(n, ds), Node: n, Dataset: ds, Retention: defRetention}
}

func problem(n, key, value, msg string, rejected bool) Problem {
	return Problem{Node: n, Key: key, Value: value, Message: msg, Rejected: rejected}
}

func TestParse_Replications(t *testing.T) {
	custom := repl("n1", "tank/a",
		Target{ID: ID("n2", "tank/a"), Node: "n2", Dataset: "tank/a", Retention: "last=30", RollbackDiverged: true},
		Target{ID: ID("n3", "backup/a"), Node: "n3", Dataset: "backup/a", Retention: defRetention})
	custom.Schedule, custom.Retention, custom.IncludeForeign = "0 */6 * * *", "last=3; 24x1h", true

	tests := []struct {
		name  string
		nodes []Node
		want  []Replication
	}{
		{"seed annotations exactly",
			[]Node{
				node("node01", seedOn, AnnSeedMaster+"=tank/dataset1,tank/dataset2"),
				node("node02", seedOn, AnnSeedReplica+"=tank/dataset1,tank/dataset2"),
			},
			[]Replication{
				repl("node01", "tank/dataset1", target("node02", "tank/dataset1")),
				repl("node01", "tank/dataset2", target("node02", "tank/dataset2")),
			}},
		{"z8r keys with extensions",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a", AnnSchedule+"=0 */6 * * *", AnnRetention+"=last=3;24x1h", AnnReplicateForeign+"=true"),
				node("n2", z8rOn, AnnReplica+"=tank/a", AnnTargetRetention+"=last=30", AnnRollbackDiverged+"=true"),
				node("n3", z8rOn, AnnReplica+"=tank/a:backup/a", AnnRollbackDiverged+"=false"),
			},
			[]Replication{custom}},
		{"master without replicas",
			[]Node{node("n1", seedOn, AnnSeedMaster+"=tank/a")},
			[]Replication{repl("n1", "tank/a")}},
		{"unplanned failover allowed by the master",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a", AnnAllowUnplannedFailover+"=true"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a", AnnAllowUnplannedFailover+"=true"),
			},
			[]Replication{func() Replication {
				r := repl("n1", "tank/a", target("n2", "tank/a"))
				r.AllowUnplannedFailover = true
				return r
			}()}},
		{"schedule canonicalised",
			[]Node{node("n1", z8rOn, AnnMaster+"=tank/a", AnnSchedule+"=@every 90m")},
			[]Replication{func() Replication { r := repl("n1", "tank/a"); r.Schedule = "1h30m"; return r }()}},
		{"several targets, one node in two roles",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a", AnnReplica+"=tank/b"),
				node("n2", z8rOn, AnnMaster+"=tank/b", AnnReplica+"=tank/a"),
				node("n3", seedOn, AnnSeedReplica+"=tank/a,tank/b"),
			},
			[]Replication{
				repl("n1", "tank/a", target("n2", "tank/a"), target("n3", "tank/a")),
				repl("n2", "tank/b", target("n1", "tank/b"), target("n3", "tank/b")),
			}},
		{"local copy to another pool on the master",
			[]Node{node("n1", z8rOn, AnnMaster+"=tank/a", AnnReplica+"=tank/a:backup/a")},
			[]Replication{repl("n1", "tank/a", target("n1", "backup/a"))}},
		{"two targets on one node",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a"),
				node("n2", z8rOn, AnnReplica+"=tank/a:hdd/a,tank/a:ssd/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n2", "hdd/a"), target("n2", "ssd/a"))}},
		{"blanks, empty entries and repeats",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"= tank/a , ,tank/a,"),
				node("n2", z8rOn, AnnReplica+"=tank/a : backup/a,tank/a:backup/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n2", "backup/a"))}},
		{"colon is part of a seed dataset name",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a:b"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a:b"),
			},
			[]Replication{repl("n1", "tank/a:b", target("n2", "tank/a:b"))}},
		{"both prefixes agree",
			[]Node{
				node("n1", seedOn, z8rOn, AnnSeedMaster+"=tank/a,tank/b", AnnMaster+"=tank/b,tank/a"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a", AnnReplica+"=tank/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n2", "tank/a")), repl("n1", "tank/b")}},
		{"nodes without the label are ignored",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a"),
				node("n2", AnnSeedReplica+"=tank/a"),
				node("n3", LabelSeed+"=false", AnnSeedReplica+"=tank/a"),
				node("n4", AnnSeedMaster+"=tank/a"),
				node("n5", AnnMaster+"=not a dataset"),
			},
			[]Replication{repl("n1", "tank/a")}},
		{"no nodes", nil, []Replication{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Parse(tc.nodes)
			if len(problems) != 0 {
				t.Fatalf("problems: %v", problems)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParse_Problems(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []Node
		want     []Replication
		problems []Problem // Message compared by substring
		rejected []string
	}{
		{"bad dataset rejects the whole node",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a,tank//b"),
				node("n2", seedOn, AnnSeedMaster+"=tank/c"),
			},
			[]Replication{repl("n2", "tank/c")},
			[]Problem{problem("n1", AnnSeedMaster, "tank//b", "empty component", true)},
			[]string{"n1"}},
		{"bad schedule",
			[]Node{node("n1", z8rOn, AnnMaster+"=tank/a", AnnSchedule+"=30s")},
			[]Replication{},
			[]Problem{problem("n1", AnnSchedule, "30s", "shorter than the minimum", true)},
			[]string{"n1"}},
		{"bad retention",
			[]Node{node("n1", z8rOn, AnnMaster+"=tank/a", AnnRetention+"=24x1y")},
			[]Replication{},
			[]Problem{problem("n1", AnnRetention, "24x1y", "unknown unit", true)},
			[]string{"n1"}},
		{"bad target retention rejects the replica node only",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a"),
				node("n2", z8rOn, AnnReplica+"=tank/a", AnnTargetRetention+"=last=0"),
				node("n3", z8rOn, AnnReplica+"=tank/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n3", "tank/a"))},
			[]Problem{problem("n2", AnnTargetRetention, "last=0", "at least 1", true)},
			[]string{"n2"}},
		{"bad booleans",
			[]Node{node("n1", z8rOn, AnnMaster+"=tank/a", AnnReplicateForeign+"=yes", AnnRollbackDiverged+"=1", AnnAllowUnplannedFailover+"=sure")},
			[]Replication{},
			[]Problem{
				problem("n1", AnnAllowUnplannedFailover, "sure", "want true or false", true),
				problem("n1", AnnReplicateForeign, "yes", "want true or false", true),
				problem("n1", AnnRollbackDiverged, "1", "want true or false", true),
			},
			[]string{"n1"}},
		{"bad mapping entries",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a"),
				node("n2", z8rOn, AnnReplica+"=tank/a:b:c,:backup/a,tank/a:,tank/a:-x"),
			},
			[]Replication{repl("n1", "tank/a")},
			[]Problem{
				problem("n2", AnnReplica, ":backup/a", "empty", true),
				problem("n2", AnnReplica, "tank/a:", "empty", true),
				problem("n2", AnnReplica, "tank/a:-x", "must begin with a letter", true),
				problem("n2", AnnReplica, "tank/a:b:c", "one ':'", true),
			},
			[]string{"n2"}},
		{"empty master rejects the node, its replications are kept",
			[]Node{
				node("n1", z8rOn, AnnMaster+"="),
				node("n2", z8rOn, AnnReplica+"=tank/a"),
			},
			[]Replication{},
			[]Problem{
				problem("n1", AnnMaster, "", MsgEmpty, true),
				problem("n2", AnnReplica, "tank/a", "no node is master of tank/a", false),
			},
			[]string{"n1"}},
		{"blank seed master and only-commas replica",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=  "),
				node("n2", seedOn, AnnSeedReplica+"=, ,"),
			},
			[]Replication{},
			[]Problem{
				problem("n1", AnnSeedMaster, "  ", MsgEmpty, true),
				problem("n2", AnnSeedReplica, ", ,", MsgEmpty, true),
			},
			[]string{"n1", "n2"}},
		{"empty replica rejects the replica node only",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a"),
				node("n2", z8rOn, AnnReplica+"="),
				node("n3", z8rOn, AnnReplica+"=tank/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n3", "tank/a"))},
			[]Problem{problem("n2", AnnReplica, "", MsgEmpty, true)},
			[]string{"n2"}},
		{"empty z8r master wins over a seed master but is still an error",
			[]Node{node("n1", z8rOn, AnnMaster+"=", AnnSeedMaster+"=tank/a")},
			[]Replication{},
			[]Problem{problem("n1", AnnMaster, "", MsgEmpty, true)},
			[]string{"n1"}},
		{"dataset mastered by two nodes rejects both",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a,tank/b"),
				node("n2", z8rOn, AnnMaster+"=tank/a"),
				node("n3", seedOn, AnnSeedReplica+"=tank/a,tank/b"),
			},
			[]Replication{},
			[]Problem{
				problem("n1", AnnSeedMaster, "tank/a", "claimed as master by nodes n1, n2", true),
				problem("n2", AnnMaster, "tank/a", "claimed as master by nodes n1, n2", true),
			},
			[]string{"n1", "n2"}},
		{"a rejected node's master claim still conflicts",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a", AnnSchedule+"=often"),
				node("n2", z8rOn, AnnMaster+"=tank/a,tank/b"),
			},
			[]Replication{},
			[]Problem{
				problem("n1", AnnMaster, "tank/a", "claimed as master by nodes n1, n2", true),
				problem("n1", AnnSchedule, "often", "invalid schedule", true),
				problem("n2", AnnMaster, "tank/a", "claimed as master by nodes n1, n2", true),
			},
			[]string{"n1", "n2"}},
		{"replica of a dataset nobody masters is only a warning",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a,tank/ghost"),
			},
			[]Replication{repl("n1", "tank/a", target("n2", "tank/a"))},
			[]Problem{problem("n2", AnnSeedReplica, "tank/ghost", "no node is master", false)},
			nil},
		{"no orphan warning when the master is rejected",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a", AnnRetention+"=forever"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a"),
			},
			[]Replication{},
			[]Problem{problem("n1", AnnRetention, "forever", "unknown rule", true)},
			[]string{"n1"}},
		{"replicating a dataset onto itself",
			[]Node{node("n1", seedOn, AnnSeedMaster+"=tank/a,tank/b", AnnSeedReplica+"=tank/a")},
			[]Replication{},
			[]Problem{problem("n1", AnnSeedReplica, "tank/a", "cannot replicate it onto itself", true)},
			[]string{"n1"}},
		{"receiving into a dataset the node masters",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a"),
				node("n2", z8rOn, AnnMaster+"=tank/b", AnnReplica+"=tank/a:tank/b"),
			},
			[]Replication{repl("n1", "tank/a")},
			[]Problem{problem("n2", AnnReplica, "tank/a:tank/b", "is a dataset this node is master of", true)},
			[]string{"n2"}},
		{"the same target dataset claimed twice",
			[]Node{
				node("n1", z8rOn, AnnMaster+"=tank/a,tank/b"),
				node("n2", z8rOn, AnnReplica+"=tank/a:backup/x,tank/b:backup/x"),
			},
			[]Replication{repl("n1", "tank/a"), repl("n1", "tank/b")},
			[]Problem{problem("n2", AnnReplica, "tank/b:backup/x", "also the target of tank/a", true)},
			[]string{"n2"}},
		{"prefixes disagree: z8r wins",
			[]Node{
				node("n1", seedOn, AnnSeedMaster+"=tank/a,tank/b", AnnMaster+"=tank/a"),
				node("n2", seedOn, AnnSeedReplica+"=tank/a", AnnReplica+"=tank/a:backup/a"),
			},
			[]Replication{repl("n1", "tank/a", target("n2", "backup/a"))},
			[]Problem{
				problem("n1", AnnSeedMaster, "tank/a,tank/b", `differs from z8r.dev/master="tank/a"`, false),
				problem("n2", AnnSeedReplica, "tank/a", `differs from z8r.dev/replica="tank/a:backup/a"`, false),
			},
			nil},
		{"malformed seed value rejects even when z8r wins",
			[]Node{node("n1", seedOn, AnnSeedMaster+"=tank/a,@x", AnnMaster+"=tank/a")},
			[]Replication{},
			[]Problem{problem("n1", AnnSeedMaster, "@x", "cannot contain '@'", true)},
			[]string{"n1"}},
		{"labels disagree: z8r wins",
			[]Node{node("n1", LabelSeed+"=true", LabelZ8R+"=false", AnnSeedMaster+"=tank/a")},
			[]Replication{},
			[]Problem{problem("n1", LabelSeed, "true", `differs from z8r.dev/replication="false"`, false)},
			nil},
		{"label value neither true nor false",
			[]Node{node("n1", LabelSeed+"=yes", AnnSeedMaster+"=tank/a")},
			[]Replication{},
			[]Problem{problem("n1", LabelSeed, "yes", "want true or false", false)},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Parse(tc.nodes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("replications\n got  %+v\n want %+v", got, tc.want)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %v, want %v", problems, tc.problems)
			}
			for i, p := range problems {
				w := tc.problems[i]
				if p.Node != w.Node || p.Key != w.Key || p.Value != w.Value || p.Rejected != w.Rejected || !strings.Contains(p.Message, w.Message) {
					t.Errorf("problem %d = %+v, want %+v", i, p, w)
				}
			}
			if r := RejectedNodes(problems); !reflect.DeepEqual(r, tc.rejected) {
				t.Errorf("RejectedNodes = %v, want %v", r, tc.rejected)
			}
		})
	}
}

func TestParse_Deterministic(t *testing.T) {
	nodes := []Node{
		node("n3", seedOn, AnnSeedReplica+"=tank/a,tank/b,tank/ghost"),
		node("n1", z8rOn, AnnMaster+"=tank/b,tank/a"),
		node("n2", z8rOn, AnnReplica+"=tank/b:x/b,tank/a:x/a", AnnSchedule+"=bad"),
		node("n0", z8rOn, AnnReplica+"=tank/a"),
	}
	want, wantP := Parse(nodes)
	for i := range 10 {
		shuffled := append([]Node(nil), nodes...)
		for j := range shuffled {
			k := (j*7 + i) % len(shuffled)
			shuffled[j], shuffled[k] = shuffled[k], shuffled[j]
		}
		got, gotP := Parse(shuffled)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotP, wantP) {
			t.Fatalf("order %d gives a different result", i)
		}
	}
	if len(want) != 2 || want[0].SourceDataset != "tank/a" || len(want[0].Targets) != 2 || want[0].Targets[0].Node != "n0" {
		t.Fatalf("unexpected result %+v", want)
	}
}

func TestID_Properties(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	pairs := [][2]string{
		{"node01", "tank/dataset1"},
		{"node01", "tank/a-b"},
		{"node01", "tank/a/b"},
		{"node01-tank", "a/b"},
		{"Node01", "Tank/A_B.c:d"},
		{"ip-10-0-0-1.ec2.internal", "tank/" + strings.Repeat("very-long-name/", 20) + "x"},
		{"", ""},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id := ID(p[0], p[1])
		if len(id) > 63 || !valid.MatchString(id) {
			t.Errorf("ID%v = %q: not a DNS-1123 label", p, id)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("ID%v = ID%v = %q", p, prev, id)
		}
		seen[id] = p
		if ID(p[0], p[1]) != id {
			t.Errorf("ID%v is not stable", p)
		}
	}
	if id := ID("node01", "tank/dataset1"); !strings.HasPrefix(id, "node01-tank-dataset1-") || len(id) != len("node01-tank-dataset1-")+8 {
		t.Errorf("ID = %q, want node01-tank-dataset1-<8 hex>", id)
	}
}

func TestProblem_String(t *testing.T) {
	p := problem("n1", AnnSchedule, "30s", "too short", true)
	if got, want := p.String(), `node n1: z8r.dev/schedule="30s": too short`; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
