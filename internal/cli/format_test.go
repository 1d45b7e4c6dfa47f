package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

func TestWriteStatus_Fixture(t *testing.T) {
	var b bytes.Buffer
	if err := WriteStatus(&b, fixtureReplications(), now, false); err != nil {
		t.Fatal(err)
	}
	want := `data  node-a:tank/data  state Behind, synced 1/2, schedule 6h, last snapshot z8r-20260301T100000Z (120m ago), next in 4h
  TARGET               STATE    LAST SYNC   BEHIND   LAG    ERROR
  node-b:tank/data     Synced   110m ago    0        120m   -
  node-c:backup/data   Failed   13h ago     2        14h    transfer to node-c: recv: cannot receive incremental stream…

logs  node-a:tank/logs  state Failed, schedule 1h, no snapshot yet, not ready: node-a: node agent is not ready: pool tank is not available
  TARGET             STATE     LAST SYNC   BEHIND   LAG   ERROR
  node-b:tank/logs   Pending   never       0        -     -
`
	if got := b.String(); got != want {
		t.Errorf("status:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteStatus_WideShowsTransferAndWholeError(t *testing.T) {
	var b bytes.Buffer
	if err := WriteStatus(&b, fixtureReplications(), now, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"NEWEST", "BASE", "LAST TRANSFER", "FAILURES",
		"incremental 5.0 MiB in 1.5s",
		"full 300.0 MiB",
		"has been modified since most recent snapshot", // not truncated
	} {
		if !strings.Contains(out, want) {
			t.Errorf("wide status lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteStatus_SuspendedAndEmpty(t *testing.T) {
	dr := replication("r", "n1", "tank/x", withTarget("n2", ""), withSource(z8rv1.TargetSynced, "1/1", time.Hour, time.Hour))
	dr.Spec.Suspend = true
	var b bytes.Buffer
	if err := WriteStatus(&b, []z8rv1.DatasetReplication{dr}, now, false); err != nil {
		t.Fatal(err)
	}
	if line := strings.SplitN(b.String(), "\n", 2)[0]; !strings.Contains(line, "state Suspended") || strings.Contains(line, "next in") {
		t.Errorf("suspended source line = %q, want state Suspended and no next snapshot", line)
	}
	b.Reset()
	if err := WriteStatus(&b, nil, now, false); err != nil || b.String() != "No DatasetReplications found.\n" {
		t.Errorf("empty status = %q, %v", b.String(), err)
	}
}

func TestTargetRows_SpecOrderPendingAndRemoved(t *testing.T) {
	dr := replication("r", "n1", "tank/x",
		withTarget("n3", ""), withTarget("n2", "pool2/x"),
		withTargetStatus(z8rv1.TargetStatus{Node: "n2", Dataset: "pool2/x", State: z8rv1.TargetSynced}),
		withTargetStatus(z8rv1.TargetStatus{Node: "n4", Dataset: "tank/x", State: z8rv1.TargetBehind}),
	)
	rows := TargetRows(&dr)
	var got []string
	for _, r := range rows {
		s := r.Target + " " + r.State
		if r.Removed {
			s += " removed"
		}
		got = append(got, s)
	}
	want := []string{"n3:tank/x Pending", "n2:pool2/x Synced", "n4:tank/x Behind removed"}
	if !slices.Equal(got, want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
}

func TestTargetRows_LagFromSnapshotName(t *testing.T) {
	for _, tc := range []struct {
		name, newest string
		want         time.Time
	}{
		{"z8r name", snap(3 * time.Hour), now.Add(-3 * time.Hour)},
		{"z8r name with suffix", snap(3*time.Hour) + "-2", now.Add(-3 * time.Hour)},
		{"foreign name", "manual-backup", time.Time{}},
		{"none", "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr := replication("r", "n1", "tank/x", withTarget("n2", ""),
				withTargetStatus(z8rv1.TargetStatus{Node: "n2", Dataset: "tank/x", LastSnapshot: tc.newest}))
			if got := TargetRows(&dr)[0].NewestTime; !got.Equal(tc.want) {
				t.Errorf("NewestTime = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSnapshots_Matrix(t *testing.T) {
	dr := fixtureReplications()[1]
	m := Snapshots(&dr)
	if want := []string{"node-a:tank/data", "node-b:tank/data", "node-c:backup/data"}; !slices.Equal(m.Locations, want) {
		t.Fatalf("locations = %q, want %q", m.Locations, want)
	}
	if want := []string{snap(2 * time.Hour), snap(14 * time.Hour)}; !slices.Equal(m.Snapshots, want) {
		t.Fatalf("snapshots = %q, want %q (newest first)", m.Snapshots, want)
	}
	cells := func(s string) []string {
		var out []string
		for _, c := range m.Cells[s] {
			out = append(out, c.String())
		}
		return out
	}
	if got, want := cells(snap(2*time.Hour)), []string{"newest, base of node-b", "newest", ""}; !slices.Equal(got, want) {
		t.Errorf("newest snapshot cells = %q, want %q", got, want)
	}
	if got, want := cells(snap(14*time.Hour)), []string{"base of node-c", "", "newest"}; !slices.Equal(got, want) {
		t.Errorf("old snapshot cells = %q, want %q", got, want)
	}
}

func TestSnapshots_SharedBaseListsBothTargets(t *testing.T) {
	base := snap(6 * time.Hour)
	dr := replication("r", "n1", "tank/x", withTarget("n2", ""), withTarget("n3", ""),
		withTargetStatus(z8rv1.TargetStatus{Node: "n2", Dataset: "tank/x", LastSnapshot: base, ProtectedBase: base}),
		withTargetStatus(z8rv1.TargetStatus{Node: "n3", Dataset: "tank/x", LastSnapshot: base, ProtectedBase: base}))
	m := Snapshots(&dr)
	if len(m.Snapshots) != 1 {
		t.Fatalf("snapshots = %q, want one", m.Snapshots)
	}
	if got := m.Cells[base][0].String(); got != "base of n2,n3" {
		t.Errorf("source cell = %q, want \"base of n2,n3\"", got)
	}
}

func TestCompareSnapshots_Order(t *testing.T) {
	names := []string{"manual-b", snap(time.Hour) + "-10", snap(2 * time.Hour), snap(time.Hour), "manual-a", snap(time.Hour) + "-2"}
	slices.SortFunc(names, compareSnapshots)
	want := []string{"manual-a", "manual-b", snap(2 * time.Hour), snap(time.Hour), snap(time.Hour) + "-2", snap(time.Hour) + "-10"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted = %q\nwant %q", names, want)
	}
}

func TestWriteSnapshots_Fixture(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSnapshots(&b, fixtureReplications(), now); err != nil {
		t.Fatal(err)
	}
	want := `data  node-a:tank/data
  SNAPSHOT               AGE    node-a:tank/data (source)   node-b:tank/data   node-c:backup/data
  z8r-20260301T100000Z   120m   newest, base of node-b      newest             -
  z8r-20260228T220000Z   14h    base of node-c              -                  newest
`
	if got := b.String(); !strings.HasPrefix(got, want) {
		t.Errorf("snapshots:\n%s\nwant it to start with:\n%s", got, want)
	}
	if !strings.Contains(b.String(), "(no snapshot reported yet)") {
		t.Errorf("snapshots of a replication without snapshots should say so:\n%s", b.String())
	}
}

func fixtureNodes() []z8rv1.Z8RNode {
	keyA, keyB, keyB2 := testKey("a", "z8r"), testKey("b", "z8r"), testKey("b2", "z8r")
	node := func(name, addr string, ready bool, pinned, presented string) z8rv1.Z8RNode {
		return z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: pinned},
			Status: z8rv1.Z8RNodeStatus{Address: addr, HostKey: presented, HostKeyFingerprint: fingerprintOf(presented),
				Pools: []string{"tank"}, Implementation: "openzfs", ZFSVersion: "2.3.2",
				Capabilities: []string{"bookmarks", "resume"}, Ready: ready, LastHeartbeatTime: at(20 * time.Second)}}
	}
	c := node("node-c", "10.0.0.3:2022", false, "", keyA)
	c.Status.HostKey, c.Status.HostKeyFingerprint, c.Status.Message = "", "", "zfs: command not found"
	c.Status.Implementation, c.Status.ZFSVersion, c.Status.Capabilities = "", "", nil
	return []z8rv1.Z8RNode{
		node("node-b", "10.0.0.2:2022", true, keyB, keyB2),
		c,
		node("node-a", "10.0.0.1:2022", true, keyA, keyA),
	}
}

func TestWriteNodes_Fixture(t *testing.T) {
	var b bytes.Buffer
	if err := WriteNodes(&b, fixtureNodes(), now, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("nodes table has %d lines, want header and 3:\n%s", len(lines), b.String())
	}
	fpA, fpB2 := fingerprintOf(testKey("a", "")), fingerprintOf(testKey("b2", ""))
	for i, want := range [][]string{
		{"NAME", "ADDRESS", "POOLS", "ZFS", "CAPABILITIES", "READY", "HEARTBEAT", "HOST KEY", "TRUST"},
		{"node-a", "10.0.0.1:2022", "tank", "openzfs 2.3.2", "bookmarks,resume", "true", "20s ago", fpA, "pinned"},
		{"node-b", "10.0.0.2:2022", "true", fpB2, "CHANGED (kubectl z8r approve-hostkey node-b)"},
		{"node-c", "false", "no key"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d = %q, lacks %q", i, lines[i], w)
			}
		}
	}
	b.Reset()
	if err := WriteNodes(&b, fixtureNodes(), now, true); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "zfs: command not found") || !strings.Contains(out, fingerprintOf(testKey("b", ""))) {
		t.Errorf("wide nodes lacks the message or the pinned fingerprint:\n%s", out)
	}
}

func TestTrust_States(t *testing.T) {
	k1, k2 := testKey("1", "a"), testKey("2", "a")
	for _, tc := range []struct {
		name, pinned, presented, want string
	}{
		{"no key published", k1, "", TrustNoKey},
		{"not pinned yet", "", k1, TrustUnpinned},
		{"same key", k1, k1, TrustPinned},
		// The controller compares the strings: a new comment is a change.
		{"same key, other comment", k1, testKey("1", "other"), TrustChanged},
		{"changed", k1, k2, TrustChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			zn := &z8rv1.Z8RNode{Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: tc.pinned}, Status: z8rv1.Z8RNodeStatus{HostKey: tc.presented}}
			if got := Trust(zn); got != tc.want {
				t.Errorf("Trust = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReviewHostKey_Cases(t *testing.T) {
	k1, k2 := testKey("1", "a"), testKey("2", "a")
	for _, tc := range []struct {
		name, pinned, presented string
		wantErr                 bool
		wantPinned              string
		wantAlready             bool
	}{
		{name: "nothing published", pinned: k1, wantErr: true},
		{name: "unparsable", presented: "ssh-ed25519 !!!", wantErr: true},
		{name: "first pin", presented: k2},
		{name: "changed", pinned: k1, presented: k2, wantPinned: fingerprintOf(k1)},
		{name: "already pinned", pinned: k2, presented: k2, wantPinned: fingerprintOf(k2), wantAlready: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n"},
				Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: tc.pinned}, Status: z8rv1.Z8RNodeStatus{HostKey: tc.presented}}
			r, err := ReviewHostKey(zn)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ReviewHostKey = %+v, want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Presented != fingerprintOf(tc.presented) || r.PresentedKey != tc.presented || r.Pinned != tc.wantPinned || r.AlreadyPinned != tc.wantAlready {
				t.Errorf("review = %+v, want presented %s, pinned %q, already %v", r, fingerprintOf(tc.presented), tc.wantPinned, tc.wantAlready)
			}
		})
	}
}

func TestWriteReview_ShowsBothFingerprints(t *testing.T) {
	r := HostKeyReview{Node: "node-b", Pinned: "SHA256:old", Presented: "SHA256:new", Address: "10.0.0.2:2022", Heartbeat: at(time.Minute)}
	var b bytes.Buffer
	if err := WriteReview(&b, r, now); err != nil {
		t.Fatal(err)
	}
	want := "node           node-b\npinned key     SHA256:old\npresented key  SHA256:new  published by the agent at 10.0.0.2:2022, 60s ago\n"
	if b.String() != want {
		t.Errorf("review:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestConfirmed_Answers(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes ": true, "n\n": false, "\n": false, "": false, "yep\n": false} {
		if got := confirmed(strings.NewReader(in)); got != want {
			t.Errorf("confirmed(%q) = %v, want %v", in, got, want)
		}
	}
	if confirmed(nil) {
		t.Error("confirmed(nil) = true, want false")
	}
}

func TestHelpers_Format(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{bytesIEC(512), "512 B"},
		{bytesIEC(1536), "1.5 KiB"},
		{bytesIEC(3 << 30), "3.0 GiB"},
		{ago(time.Time{}, now), "never"},
		{ago(now.Add(time.Minute), now), "just now"},
		{until(now.Add(-time.Second), now), "due"},
		{truncate("abcdef", 4), "abc…"},
		{oneLine("a\n  b\tc"), "a b c"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestWriteStatus_Promotion: a replication's last promotion is shown under
// its targets, with the recovery point, the rejoin and the tail aside.
func TestWriteStatus_Promotion(t *testing.T) {
	reps := fixtureReplications()[:1]
	reps[0].Status.Promotion = &z8rv1.PromotionStatus{
		From: z8rv1.DatasetRef{Node: "node-b", Dataset: "tank/data"}, To: z8rv1.DatasetRef{Node: "node-a", Dataset: "tank/data"},
		Kind: z8rv1.PromotionUnplanned, Phase: z8rv1.PromotionCompleted,
		RecoveryPoint: "z8r-20260301T100000Z", RecoveryPointTime: &metav1.Time{Time: time.Date(2026, 3, 1, 10, 0, 2, 0, time.UTC)},
		Rejoin: z8rv1.RejoinPending,
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, reps, now, false); err != nil {
		t.Fatal(err)
	}
	want := "  promotion node-b:tank/data -> node-a:tank/data: Completed (Unplanned), recovery point z8r-20260301T100000Z taken 2026-03-01T10:00:02Z, old source rejoin Pending\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("status:\n%s\nwant it to end with:\n%s", got, want)
	}
	r := NewStatusReport(reps, nil, "", now)
	if p := r.DatasetReplications[0].Promotion; p == nil || p.RecoveryPoint != "z8r-20260301T100000Z" {
		t.Errorf("report promotion %+v", p)
	}
}
