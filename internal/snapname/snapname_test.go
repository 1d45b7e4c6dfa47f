package snapname

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/z8r-project/z8r/zfsexec"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNew_Cases(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name   string
		prefix string
		t      time.Time
		want   string
	}{
		{"default prefix", "", at("2026-11-26T10:30:00Z"), "z8r-20261126T103000Z"},
		{"custom prefix", "hourly", at("2026-11-26T10:30:00Z"), "hourly-20261126T103000Z"},
		{"converted to UTC", "z8r", at("2026-11-26T10:30:00Z").In(berlin), "z8r-20261126T103000Z"},
		{"sub-second truncated", "z8r", at("2026-11-26T10:30:00Z").Add(999 * time.Millisecond), "z8r-20261126T103000Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := New(tc.prefix, tc.t)
			if got != tc.want {
				t.Fatalf("New(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
			if err := zfsexec.ValidateSnapshot("tank/ds@" + got); err != nil {
				t.Fatalf("not a valid ZFS snapshot name: %v", err)
			}
		})
	}
}

func TestNew_SortsByTime(t *testing.T) {
	base := at("2026-01-31T23:59:59Z")
	var names []string
	for _, d := range []time.Duration{48 * time.Hour, time.Second, 0, 400 * 24 * time.Hour, time.Hour} {
		names = append(names, New("z8r", base.Add(d)))
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for i := 1; i < len(sorted); i++ {
		_, a, _ := Parse(sorted[i-1])
		_, b, _ := Parse(sorted[i])
		if !a.Before(b) {
			t.Fatalf("string order %v is not time order", sorted)
		}
	}
}

func TestParse_Cases(t *testing.T) {
	ts := at("2026-11-26T10:30:00Z")
	tests := []struct {
		name       string
		in         string
		wantPrefix string
		wantOK     bool
	}{
		{"default", "z8r-20261126T103000Z", "z8r", true},
		{"prefix with dash", "my-app-20261126T103000Z", "my-app", true},
		{"collision suffix", "z8r-20261126T103000Z-2", "z8r", true},
		{"collision suffix 10", "z8r-20261126T103000Z-10", "z8r", true},
		{"suffix with leading zero", "z8r-20261126T103000Z-01", "", false},
		{"zfs-localpv snapshot", "snapshot-2b0c4bd2-9f04-4b51-8f52-4fc8bc7bd1b6", "", false},
		{"no prefix", "-20261126T103000Z", "", false},
		{"no dash", "z8r20261126T103000Z", "", false},
		{"bad time", "z8r-20261326T103000Z", "", false},
		{"local time form", "z8r-20261126T103000", "", false},
		{"trailing dash", "z8r-20261126T103000Z-", "", false},
		{"empty", "", "", false},
		{"bad prefix char", "a/b-20261126T103000Z", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, got, ok := Parse(tc.in)
			if ok != tc.wantOK || p != tc.wantPrefix {
				t.Fatalf("Parse(%q) = %q, %v, %v; want %q, ok=%v", tc.in, p, got, ok, tc.wantPrefix, tc.wantOK)
			}
			if ok && (!got.Equal(ts) || got.Location() != time.UTC) {
				t.Fatalf("Parse(%q) time = %v, want %v UTC", tc.in, got, ts)
			}
		})
	}
}

func TestParse_RoundTripsNew(t *testing.T) {
	tm := at("2030-02-03T04:05:06Z")
	for _, prefix := range []string{"z8r", "a", "x.y:z_1-2", strings.Repeat("p", MaxPrefixLen)} {
		for n := 0; n < 3; n++ {
			name := WithSuffix(New(prefix, tm), n)
			p, got, ok := Parse(name)
			if !ok || p != prefix || !got.Equal(tm) {
				t.Errorf("Parse(%q) = %q, %v, %v", name, p, got, ok)
			}
		}
	}
}

func TestValidatePrefix_Cases(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"z8r", false},
		{"Daily.v2:x_y-z", false},
		{"9lives", false},
		{"", true},
		{"-z8r", true},
		{"_z8r", true},
		{"z8r/x", true},
		{"z8r@x", true},
		{"z 8r", true},
		{strings.Repeat("a", MaxPrefixLen+1), true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidatePrefix(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ValidatePrefix(%q) = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidPrefix) {
				t.Fatalf("error %v is not ErrInvalidPrefix", err)
			}
		})
	}
}

func TestIsOwned_Cases(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  bool
	}{
		{"nil", nil, false},
		{"empty", map[string]string{}, false},
		{"owned", map[string]string{OwnerProp: OwnerValue}, true},
		{"props helper", Props("node1.tank-ds"), true},
		{"other owner", map[string]string{OwnerProp: "zrepl"}, false},
		{"case differs", map[string]string{OwnerProp: "Z8R"}, false},
		{"zfs placeholder", map[string]string{OwnerProp: "-"}, false},
		{"policy only", map[string]string{PolicyProp: "x"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsOwned(tc.props); got != tc.want {
				t.Fatalf("IsOwned(%v) = %v, want %v", tc.props, got, tc.want)
			}
		})
	}
}

func TestProps_Contents(t *testing.T) {
	p := Props("pol-1")
	if len(p) != 2 || p[OwnerProp] != OwnerValue || p[PolicyProp] != "pol-1" {
		t.Fatalf("Props = %v", p)
	}
	for k, v := range p {
		if err := zfsexec.ValidateProperty(k); err != nil {
			t.Errorf("property %q: %v", k, err)
		}
		if err := zfsexec.ValidatePropertyValue(k, v); err != nil {
			t.Errorf("value %q: %v", v, err)
		}
	}
}

func TestHoldTag_Cases(t *testing.T) {
	long := strings.Repeat("n", MaxHoldTagLen)
	tests := []struct {
		name    string
		id      string
		want    string // exact tag, or "" to check the hashed form
		wantHas string // substring a hashed tag keeps for humans
	}{
		{"plain", "node02-backup-ds1-3f9a0c12", "z8r-base-node02-backup-ds1-3f9a0c12", ""},
		{"dots and underscores", "node.example_com", "z8r-base-node.example_com", ""},
		{"longest literal", strings.Repeat("a", MaxHoldTagLen-len(HoldTagPrefix)), HoldTagPrefix + strings.Repeat("a", MaxHoldTagLen-len(HoldTagPrefix)), ""},
		{"slash hashed", "node02/backup/ds1", "", "z8r-base-node02_backup_ds1-"},
		{"colon hashed", "a:b", "", "z8r-base-a_b-"},
		{"space hashed", "a b", "", "z8r-base-a_b-"},
		{"too long hashed", long, "", "z8r-base-nnnn"},
		{"empty hashed", "", "", "z8r-base-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := HoldTag(tc.id)
			if tc.want != "" && got != tc.want {
				t.Fatalf("HoldTag(%q) = %q, want %q", tc.id, got, tc.want)
			}
			if tc.want == "" && !strings.HasPrefix(got, tc.wantHas) {
				t.Fatalf("HoldTag(%q) = %q, want prefix %q", tc.id, got, tc.wantHas)
			}
			if len(got) > MaxHoldTagLen || strings.Contains(got, ":") {
				t.Fatalf("HoldTag(%q) = %q: too long or contains ':'", tc.id, got)
			}
			if err := zfsexec.ValidateTag(got); err != nil {
				t.Fatalf("HoldTag(%q) = %q: %v", tc.id, got, err)
			}
			if !IsZ8RHoldTag(got) {
				t.Fatalf("IsZ8RHoldTag(%q) = false", got)
			}
			if HoldTag(tc.id) != got {
				t.Fatalf("HoldTag(%q) is not deterministic", tc.id)
			}
		})
	}
}

func TestHoldTag_DistinctIDs(t *testing.T) {
	ids := []string{"a/b", "a_b", "a:b", "a b", "a-b", strings.Repeat("x", 200), strings.Repeat("x", 201), ""}
	seen := map[string]string{}
	for _, id := range ids {
		tag := HoldTag(id)
		if prev, dup := seen[tag]; dup {
			t.Fatalf("ids %q and %q share tag %q", prev, id, tag)
		}
		seen[tag] = id
	}
}

func TestIsZ8RHoldTag_Cases(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"z8r-base-node2", true},
		{"z8r-base-", false},
		{"z8r-base-a:b", false},
		{"zrepl_base", false},
		{"z8r-basex", false},
		{"Z8R-BASE-x", false},
		{HoldTagPrefix + strings.Repeat("a", MaxHoldTagLen), false},
	}
	for _, tc := range tests {
		t.Run(tc.tag, func(t *testing.T) {
			if got := IsZ8RHoldTag(tc.tag); got != tc.want {
				t.Fatalf("IsZ8RHoldTag(%q) = %v, want %v", tc.tag, got, tc.want)
			}
		})
	}
}

func TestBookmarkName_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		id   string
		snap string
	}{
		{"owned snapshot", "node02-backup-ds1-3f9a0c12", "z8r-20261126T103000Z"},
		{"hashed id", "node02/backup:ds1", "z8r-20261126T103000Z-1"},
		{"snapshot with colon", "n1", "a:b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bm := BookmarkName(tc.id, tc.snap)
			if err := zfsexec.ValidateBookmark("tank/dataset1#" + bm); err != nil {
				t.Fatalf("BookmarkName = %q: %v", bm, err)
			}
			tag, snap, ok := ParseBookmarkName(bm)
			if !ok || tag != HoldTag(tc.id) || snap != tc.snap {
				t.Fatalf("ParseBookmarkName(%q) = %q, %q, %v", bm, tag, snap, ok)
			}
			if !IsZ8RBookmark(bm) {
				t.Fatalf("IsZ8RBookmark(%q) = false", bm)
			}
		})
	}
}

func TestParseBookmarkName_Foreign(t *testing.T) {
	for _, bm := range []string{"zrepl_CURSOR_G_0123_J_job", "z8r-base-x", "z8r-base-x:", "backup:z8r-1", ""} {
		if _, _, ok := ParseBookmarkName(bm); ok {
			t.Errorf("ParseBookmarkName(%q) ok, want not z8r's", bm)
		}
	}
}
