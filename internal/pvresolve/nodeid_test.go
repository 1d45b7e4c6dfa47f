package pvresolve

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func labelledNode(name, id string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if id != "" {
		n.Labels = map[string]string{TopologyZFSLocalPVNodeID: id}
	}
	return n
}

// TestResolve_ZFSLocalPVNodeID: a zfs-localpv PV pinned with
// openebs.io/nodeid resolves to the Node carrying that label value; no
// lookup, an unknown value, or a value two Nodes carry is ErrIncomplete.
func TestResolve_ZFSLocalPVNodeID(t *testing.T) {
	const uuid = "5f0c7a3e-9d1b-4c2e-8a6f-3b7d2e1c0a99"
	nodes := []corev1.Node{labelledNode("node01", "0b3c2d1e-aaaa-bbbb-cccc-000000000001"), labelledNode("node02", uuid), labelledNode("node03", "")}
	zfspv := func(id string) *corev1.PersistentVolume {
		return pv("", csi(DriverZFSLocalPV, "pvc-1", map[string]string{AttrZFSLocalPVPool: "zfspv-pool"}), func(p *corev1.PersistentVolume) {
			p.Spec.NodeAffinity = affinity(TopologyZFSLocalPVNodeID, id)
		})
	}
	localpv := pv("", local("/mnt/x"), func(p *corev1.PersistentVolume) { p.Spec.NodeAffinity = affinity(TopologyZFSLocalPVNodeID, uuid) })
	tests := []struct {
		name     string
		pv       *corev1.PersistentVolume
		opts     []Options
		wantNode string
	}{
		{name: "uuid label resolves to its node", pv: zfspv(uuid), opts: []Options{{NodeByID: NodeIDs(nodes)}}, wantNode: "node02"},
		{name: "a local PV pinned by nodeid resolves too", pv: localpv, opts: []Options{{NodeByID: NodeIDs(nodes)}}, wantNode: "node02"},
		{name: "no lookup: incomplete", pv: zfspv(uuid)},
		{name: "no node carries the id: incomplete", pv: zfspv("nope"), opts: []Options{{NodeByID: NodeIDs(nodes)}}},
		{name: "a node name is not a node id", pv: zfspv("node01"), opts: []Options{{NodeByID: NodeIDs(nodes)}}},
		{name: "two nodes carry the id: incomplete", pv: zfspv(uuid),
			opts: []Options{{NodeByID: NodeIDs(append(nodes, labelledNode("node04", uuid)))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Resolve(tt.pv, tt.opts...)
			if tt.wantNode == "" {
				if !errors.Is(err, ErrIncomplete) {
					t.Fatalf("Resolve = %+v, %v; want ErrIncomplete", v, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Node != tt.wantNode {
				t.Fatalf("node %q, want %q", v.Node, tt.wantNode)
			}
		})
	}
}

// TestAffinityNode_NodeIDAgreesWithHostname: a term with both
// kubernetes.io/hostname and openebs.io/nodeid resolves only when both name
// the same node.
func TestAffinityNode_NodeIDAgreesWithHostname(t *testing.T) {
	nodes := []corev1.Node{labelledNode("node02", "id-2")}
	both := func(host, id string) *corev1.PersistentVolume {
		p := pv("")
		p.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{host}},
				{Key: TopologyZFSLocalPVNodeID, Operator: corev1.NodeSelectorOpIn, Values: []string{id}},
			}}}}}
		return p
	}
	o := Options{NodeByID: NodeIDs(nodes)}
	if n, ok := o.affinityNode(both("node02", "id-2")); !ok || n != "node02" {
		t.Fatalf("agreeing terms: %q %v", n, ok)
	}
	if n, ok := o.affinityNode(both("node01", "id-2")); ok {
		t.Fatalf("disagreeing terms resolved to %q", n)
	}
}

// TestAffinityNode_NodeIDFirst: the order of the expressions does not
// matter.
func TestAffinityNode_NodeIDFirst(t *testing.T) {
	o := Options{NodeByID: NodeIDs([]corev1.Node{labelledNode("node02", "id-2")})}
	p := pv("")
	p.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: TopologyZFSLocalPVNodeID, Operator: corev1.NodeSelectorOpIn, Values: []string{"id-2"}},
			{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"node01"}},
		}}}}}
	if n, ok := o.affinityNode(p); ok {
		t.Fatalf("disagreeing terms resolved to %q", n)
	}
}
