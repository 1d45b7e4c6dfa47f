package volsnap

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseTargets_Grammar(t *testing.T) {
	tests := []struct {
		in   string
		want []TargetSpec
	}{
		{"", nil},
		{" , ,", nil},
		{"node2", []TargetSpec{{Node: "node2"}}},
		{"node2,node3:backup/x", []TargetSpec{{Node: "node2"}, {Node: "node3", Dataset: "backup/x"}}},
		{" node2 , node3 : backup/ ", []TargetSpec{{Node: "node2"}, {Node: "node3", Dataset: "backup", Prefix: true}}},
		{"node3:backup/x/", []TargetSpec{{Node: "node3", Dataset: "backup/x", Prefix: true}}},
		{"node2,node2", []TargetSpec{{Node: "node2"}}},
		{"node2,node2:backup/", []TargetSpec{{Node: "node2"}, {Node: "node2", Dataset: "backup", Prefix: true}}},
		{"worker-1.example.com", []TargetSpec{{Node: "worker-1.example.com"}}},
	}
	for _, tt := range tests {
		got, err := ParseTargets(tt.in)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseTargets_Malformed(t *testing.T) {
	for _, in := range []string{
		"node2:",            // empty destination
		":backup/x",         // no node
		"Node2",             // not a node name
		"node_2",            // not a node name
		"node2:a:b",         // two colons
		"node2:backup//x",   // empty component
		"node2:backup/x@s",  // a snapshot
		"node2:/",           // nothing before the slash
		"node2 node3",       // blank inside an entry
		"node2,node3:bad x", // a bad second entry fails the whole value
	} {
		got, err := ParseTargets(in)
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: got %+v, %v; want ErrSyntax", in, got, err)
		}
	}
}

func TestResolveTargets_Datasets(t *testing.T) {
	tests := []struct {
		in   string
		want []Target
	}{
		{"node2", []Target{{"node2", "tank/k8s/pvc-1"}}},
		{"node3:backup/pvc-1", []Target{{"node3", "backup/pvc-1"}}},
		{"node3:backup/", []Target{{"node3", "backup/k8s/pvc-1"}}},
		{"node3:backup/x/", []Target{{"node3", "backup/x/k8s/pvc-1"}}},
		{"node1:backup/", []Target{{"node1", "backup/k8s/pvc-1"}}},
		{"node2,node2:tank/k8s/pvc-1", []Target{{"node2", "tank/k8s/pvc-1"}}},
	}
	for _, tt := range tests {
		got, err := ResolveTargets(tt.in, "node1", "tank/k8s/pvc-1")
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
		}
	}
	// A pool-root source under a parent keeps its own name.
	if got, err := ResolveTargets("n2:backup/", "n1", "tank"); err != nil || got[0].Dataset != "backup/tank" {
		t.Errorf("pool root: %v %v", got, err)
	}
}

func TestResolveTargets_Self(t *testing.T) {
	for _, in := range []string{"node1", "node1:tank/k8s/pvc-1", "node1:tank/"} {
		if _, err := ResolveTargets(in, "node1", "tank/k8s/pvc-1"); !errors.Is(err, ErrSelfTarget) {
			t.Errorf("%q: err %v, want ErrSelfTarget", in, err)
		}
	}
}

func TestRequest_TargetsNameTheObject(t *testing.T) {
	pvc := Annotated{Kind: "PersistentVolumeClaim", Name: "ns/p"}
	if _, err := (Request{Value: "Bad", From: pvc}).Targets("n1", "tank/a"); err == nil || !errors.Is(err, ErrSyntax) {
		t.Errorf("bad request: %v", err)
	} else if got := err.Error(); got[:len("PersistentVolumeClaim ns/p")] != "PersistentVolumeClaim ns/p" {
		t.Errorf("error does not name the object: %s", got)
	}
}
