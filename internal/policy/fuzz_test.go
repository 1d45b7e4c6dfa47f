package policy

import (
	"reflect"
	"slices"
	"testing"

	"github.com/z8r-project/z8r/zfsexec"
)

// fuzzNode builds one participating (or not) node for FuzzParse. bits says
// which keys are present, so that an absent annotation and an empty one
// are both reached: bit 0 LabelZ8R=true, bit 1 LabelSeed=true, bits 2-5
// the z8r master, z8r replica, seed master and seed replica annotations,
// bits 6-7 which of settingKeys carries setting.
func fuzzNode(name string, bits uint8, master, replica, seedMaster, seedReplica, setting string, settingKeys [3]string) Node {
	n := Node{Name: name, Labels: map[string]string{}, Annotations: map[string]string{}}
	if bits&1 != 0 {
		n.Labels[LabelZ8R] = "true"
	}
	if bits&2 != 0 {
		n.Labels[LabelSeed] = "true"
	}
	for i, kv := range []struct{ key, value string }{
		{AnnMaster, master}, {AnnReplica, replica}, {AnnSeedMaster, seedMaster}, {AnnSeedReplica, seedReplica},
	} {
		if bits&(4<<i) != 0 {
			n.Annotations[kv.key] = kv.value
		}
	}
	if k := bits >> 6; k > 0 {
		n.Annotations[settingKeys[k-1]] = setting
	}
	return n
}

// FuzzParse: Parse over fuzzed annotation values on two nodes. It never
// panics, and does not depend on the order of the nodes. Every Replication
// has a valid source dataset, claimed by one replication only, on a node
// from the input, and targets with valid datasets on nodes from the input,
// never the source itself; IDs are valid object names. A node some Problem
// rejects contributes no replication and no target.
func FuzzParse(f *testing.F) {
	type seed struct {
		name1                      string
		bits1                      uint8
		m1, r1, sm1, sr1, setting1 string
		name2                      string
		bits2                      uint8
		m2, r2, sm2, sr2, setting2 string
	}
	// From policy_test.go's tables. Node 1's setting key: bits 6-7 = 1
	// schedule, 2 retention, 3 replicate-foreign; node 2's: 1
	// target-retention, 2 rollback-diverged, 3 schedule.
	for _, s := range []seed{
		{"node01", 2 | 16, "", "", "tank/dataset1,tank/dataset2", "", "", "node02", 2 | 32, "", "", "", "tank/dataset1,tank/dataset2", ""},
		{"n1", 1 | 4 | 1<<6, "tank/a", "", "", "", "0 */6 * * *", "n2", 1 | 8 | 2<<6, "", "tank/a", "", "", "true"},
		{"n1", 1 | 4 | 2<<6, "tank/a", "", "", "", "last=3;24x1h", "n2", 1 | 8 | 1<<6, "", "tank/a:backup/a", "", "", "last=30"},
		{"n1", 1 | 4 | 3<<6, "tank/a", "tank/b", "", "", "true", "n2", 1 | 4 | 8, "tank/b", "tank/a", "", "", ""},
		{"n1", 1 | 4 | 8, "tank/a", "tank/a:backup/a", "", "", "", "n2", 0, "", "", "", "", ""},
		{"n1", 1 | 4, "tank/a", "", "", "", "", "n2", 1 | 8, "", "tank/a:hdd/a,tank/a:ssd/a", "", "", ""},
		{"n1", 2 | 16, "", "", " tank/a , ,tank/a,", "", "", "n2", 1 | 8, "", "tank/a : backup/a,tank/a:backup/a", "", "", ""},
		{"n1", 2 | 16, "", "", "tank/a:b", "", "", "n2", 2 | 32, "", "", "", "tank/a:b", ""},
		{"n1", 3 | 4 | 16, "tank/b,tank/a", "", "tank/a,tank/b", "", "", "n2", 3 | 8 | 32, "", "tank/a", "", "tank/a", ""},
		{"n1", 1 | 4 | 1<<6, "tank/a", "", "", "", "@every 90m", "n5", 4, "not a dataset", "", "", "", ""},
		// Rejections: empty lists, bad names, two masters, receiving into
		// a mastered dataset, two sources into one target, bad settings.
		{"n1", 1 | 4, ",", "", "", "", "", "n2", 1 | 8, "", " ", "", "", ""},
		{"n1", 1 | 4, "tank/a,tank/../b", "", "", "", "", "n2", 1 | 8, "", "tank/a:tank/b:c", "", "", ""},
		{"n1", 1 | 4, "tank/a", "", "", "", "", "n2", 1 | 4 | 8, "tank/a", "tank/a", "", "", ""},
		{"n1", 1 | 4 | 8, "tank/a", "tank/a", "", "", "", "n2", 1 | 8, "", "tank/a:backup/a,tank/b:backup/a", "", "", ""},
		{"n1", 1 | 4 | 8, "tank/a,backup/a", "tank/a:backup/a", "", "", "", "n2", 1 | 8 | 2<<6, "", "tank/a", "", "", "yes"},
		{"n1", 1 | 4 | 1<<6, "tank/a", "", "", "", "every day", "n2", 1 | 8 | 1<<6, "", "tank/a", "", "", "keep=forever"},
		{"n1", 1 | 4 | 2<<6, "tank/a", "", "", "", "7x", "n2", 1 | 8 | 3<<6, "", "tank/a", "", "", "0 0 31 2 *"},
		{"n1", 1 | 4, "tank/a", "", "", "", "", "n1", 1 | 8, "", "tank/a", "", "", ""},
		{"", 1 | 4, "tank", "", "", "", "", "n/2", 1 | 8, "", "tank:backup", "", "", ""},
	} {
		f.Add(s.name1, s.bits1, s.m1, s.r1, s.sm1, s.sr1, s.setting1, s.name2, s.bits2, s.m2, s.r2, s.sm2, s.sr2, s.setting2)
	}
	f.Fuzz(func(t *testing.T, name1 string, bits1 uint8, m1, r1, sm1, sr1, setting1 string,
		name2 string, bits2 uint8, m2, r2, sm2, sr2, setting2 string) {
		if name2 == name1 {
			name2 += "-2" // Parse requires unique node names.
		}
		nodes := []Node{
			fuzzNode(name1, bits1, m1, r1, sm1, sr1, setting1, [3]string{AnnSchedule, AnnRetention, AnnReplicateForeign}),
			fuzzNode(name2, bits2, m2, r2, sm2, sr2, setting2, [3]string{AnnTargetRetention, AnnRollbackDiverged, AnnSchedule}),
		}
		names := []string{name1, name2}
		repls, problems := Parse(nodes)
		again, againP := Parse([]Node{nodes[1], nodes[0]})
		if !reflect.DeepEqual(repls, again) || !reflect.DeepEqual(problems, againP) {
			t.Fatalf("Parse depends on node order:\n%+v %+v\n%+v %+v", repls, problems, again, againP)
		}
		rejected := RejectedNodes(problems)
		for _, p := range problems {
			if !slices.Contains(names, p.Node) {
				t.Fatalf("problem %+v names a node not in the input", p)
			}
		}
		sources := map[string]bool{}
		for _, r := range repls {
			if err := zfsexec.ValidateDataset(r.SourceDataset); err != nil {
				t.Fatalf("replication %+v: invalid source dataset: %v", r, err)
			}
			if !slices.Contains(names, r.SourceNode) {
				t.Fatalf("replication %+v: source node not in the input", r)
			}
			if slices.Contains(rejected, r.SourceNode) {
				t.Fatalf("replication %+v comes from rejected node (problems %v)", r, problems)
			}
			if sources[r.SourceDataset] {
				t.Fatalf("dataset %s is the source of two replications: %+v", r.SourceDataset, repls)
			}
			sources[r.SourceDataset] = true
			if r.ID != ID(r.SourceNode, r.SourceDataset) || !fuzzValidID(r.ID) {
				t.Fatalf("replication %+v: bad ID", r)
			}
			for _, tg := range r.Targets {
				if err := zfsexec.ValidateDataset(tg.Dataset); err != nil {
					t.Fatalf("replication %+v: invalid target dataset %q: %v", r, tg.Dataset, err)
				}
				if !slices.Contains(names, tg.Node) {
					t.Fatalf("replication %+v: target node %q not in the input", r, tg.Node)
				}
				if slices.Contains(rejected, tg.Node) {
					t.Fatalf("replication %+v: target on rejected node %q (problems %v)", r, tg.Node, problems)
				}
				if tg.Node == r.SourceNode && tg.Dataset == r.SourceDataset {
					t.Fatalf("replication %+v targets its own source", r)
				}
				if tg.ID != ID(tg.Node, tg.Dataset) || !fuzzValidID(tg.ID) {
					t.Fatalf("replication %+v: target %+v has a bad ID", r, tg)
				}
			}
		}
	})
}

// fuzzValidID: a Kubernetes object name and label value, as ID promises.
func fuzzValidID(id string) bool {
	if id == "" || len(id) > 63 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
