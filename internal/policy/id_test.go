package policy

import (
	"regexp"
	"strings"
	"testing"
)

// TestID_Unchanged pins ID's output (computed with the original code):
// hold tags on existing pools derive from it.
func TestID_Unchanged(t *testing.T) {
	for _, tc := range []struct{ node, dataset, want string }{
		{"node01", "tank/dataset1", "node01-tank-dataset1-12b8cd1a"},
		{"n1", "tank/vol", "n1-tank-vol-c97ace61"},
		{"a-very-long-node-name-that-goes-on", "tank/a/very/long/dataset/name/beyond/limits", "a-very-long-node-name-that-goes-on-tank-a-very-long-da-909b21e4"},
		{"N", "///", "n-80bed7bd"},
		{"ns", "data", "ns-data-1c28f7cf"},
	} {
		if got := ID(tc.node, tc.dataset); got != tc.want {
			t.Errorf("ID(%q, %q) = %q, want %q", tc.node, tc.dataset, got, tc.want)
		}
	}
}

// TestLongID_Shape: 16 hex digits of hash, within the limit, DNS-1123
// label characters, different for inputs that share a readable part.
func TestLongID_Shape(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?-[0-9a-f]{16}$|^x[0-9a-f]{16}$`)
	long := strings.Repeat("n", 80)
	for _, tc := range []struct {
		limit int
		a, b  string
	}{
		{59, "ns", "data"}, {59, long, long}, {17, "ns", "data"}, {59, "--", "__"}, {59, "Ns.x", "Data_1"},
	} {
		id := LongID(tc.limit, tc.a, tc.b)
		if len(id) > tc.limit || !shape.MatchString(id) {
			t.Errorf("LongID(%d, %q, %q) = %q: want at most %d characters ending in 16 hex digits", tc.limit, tc.a, tc.b, id, tc.limit)
		}
	}
	if LongID(59, "ns-a", "b") == LongID(59, "ns", "a-b") {
		t.Error("LongID of different pairs with the same readable part collide")
	}
}
