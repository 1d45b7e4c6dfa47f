package snapname

import (
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

// TestIsOwnedBy_Cases: ownership is scoped to one replication, and only
// locally set properties count (the caller passes LocalProps; an
// inherited owner=z8r never reaches IsOwnedBy).
func TestIsOwnedBy_Cases(t *testing.T) {
	tests := []struct {
		name   string
		props  map[string]string
		policy string
		want   bool
	}{
		{"this replication's", Props("default/web"), "default/web", true},
		{"another replication's", Props("default/db"), "default/web", false},
		{"owner without policy", map[string]string{OwnerProp: OwnerValue}, "default/web", false},
		{"policy without owner", map[string]string{PolicyProp: "default/web"}, "default/web", false},
		{"other owner, same policy", map[string]string{OwnerProp: "zrepl", PolicyProp: "default/web"}, "default/web", false},
		{"empty policy id matches nothing", map[string]string{OwnerProp: OwnerValue, PolicyProp: ""}, "", false},
		{"nil props", nil, "default/web", false},
		{"policy differs in case", Props("Default/Web"), "default/web", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsOwnedBy(tc.props, tc.policy); got != tc.want {
				t.Fatalf("IsOwnedBy(%v, %q) = %v, want %v", tc.props, tc.policy, got, tc.want)
			}
			if tc.want && !IsOwned(tc.props) {
				t.Fatalf("IsOwnedBy without IsOwned for %v", tc.props)
			}
		})
	}
}

// TestHoldTags_Kinds: the base, step and last-received tags of one target
// differ from each other and from every other target's, are valid ZFS
// tags, and are all recognised as z8r's.
func TestHoldTags_Kinds(t *testing.T) {
	ids := []string{"node2-tank-data", "node2/tank/data", strings.Repeat("x", 200), "a:b", ""}
	kinds := []struct {
		name   string
		prefix string
		tag    func(string) string
	}{
		{"base", HoldTagPrefix, HoldTag},
		{"step", StepHoldTagPrefix, StepHoldTag},
		{"last", ReplicaHoldTagPrefix, ReplicaHoldTag},
	}
	seen := map[string]string{}
	for _, id := range ids {
		for _, k := range kinds {
			tag := k.tag(id)
			what := k.name + " " + id
			if prev, dup := seen[tag]; dup {
				t.Fatalf("%s and %s share tag %q", prev, what, tag)
			}
			seen[tag] = what
			if !strings.HasPrefix(tag, k.prefix) || len(tag) > MaxHoldTagLen {
				t.Fatalf("%s: tag %q", what, tag)
			}
			if !IsZ8RHoldTag(tag) {
				t.Fatalf("%s: IsZ8RHoldTag(%q) = false", what, tag)
			}
			if err := zfsexec.ValidateTag(tag); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			// The part after the prefix is the same for every kind, so a
			// tag of one kind maps to the target's tags of the others.
			if strings.TrimPrefix(tag, k.prefix) != strings.TrimPrefix(HoldTag(id), HoldTagPrefix) {
				t.Fatalf("%s: %q and %q name different targets", what, tag, HoldTag(id))
			}
		}
	}
	for _, tag := range []string{"z8r-step-", "z8r-last-", "z8r-lastx", "z8r-step-a:b", "zrepl_step_J_x", "z8r-other-x"} {
		if IsZ8RHoldTag(tag) {
			t.Errorf("IsZ8RHoldTag(%q) = true", tag)
		}
	}
}

func TestDivergedName_RoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 30, 8, 35, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		dataset string
		want    string
	}{
		{"tank/data", "tank/data-z8r-diverged-20261130T073500Z"},
		{"tank", "tank-z8r-diverged-20261130T073500Z"},
		{"tank/data-z8r-diverged-20261129T000000Z", "tank/data-z8r-diverged-20261129T000000Z-z8r-diverged-20261130T073500Z"},
	}
	for _, tc := range tests {
		t.Run(tc.dataset, func(t *testing.T) {
			got := DivergedName(tc.dataset, when)
			if got != tc.want {
				t.Fatalf("DivergedName = %q, want %q", got, tc.want)
			}
			ds, at, ok := ParseDivergedName(got)
			if !ok || ds != tc.dataset || !at.Equal(when) || at.Location() != time.UTC {
				t.Fatalf("ParseDivergedName(%q) = %q, %v, %v", got, ds, at, ok)
			}
		})
	}
	for _, name := range []string{"tank/data", "-z8r-diverged-20261130T073500Z", "tank/data-z8r-diverged-", "tank/data-z8r-diverged-yesterday", "tank/data-z8r-diverged-20261130T073500Z/child"} {
		if ds, _, ok := ParseDivergedName(name); ok {
			t.Errorf("ParseDivergedName(%q) = %q, true", name, ds)
		}
	}
}
