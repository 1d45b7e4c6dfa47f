package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TestPVCReplicationName_Shape: DNS-1123 label-safe, at most 63
// characters, 64 bits of hash, distinct from the legacy 32-bit name.
func TestPVCReplicationName_Shape(t *testing.T) {
	long := strings.Repeat("a", 253)
	for _, tc := range []struct{ ns, name string }{
		{"default", "data"}, {long[:63], long}, {"ns", "Data.With_Odd-chars"}, {"a-b", "c"}, {"a", "b-c"},
	} {
		n := PVCReplicationName(tc.ns, tc.name)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("PVCReplicationName(%q, %q) = %q: %v", tc.ns, tc.name, n, errs)
		}
		if i := strings.LastIndexByte(n, '-'); i < 0 || len(n)-i-1 != 16 {
			t.Errorf("%q does not end in 16 hex digits", n)
		}
		if n == legacyPVCReplicationName(tc.ns, tc.name) {
			t.Errorf("%q equals the legacy name", n)
		}
	}
	if PVCReplicationName("a-b", "c") == PVCReplicationName("a", "b-c") {
		t.Error("different PVCs with the same readable part share a name")
	}
}
