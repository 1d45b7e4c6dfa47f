package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

func TestClean_Cases(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tank/data@z8r-20260301T120000Z", "tank/data@z8r-20260301T120000Z"},
		{"10.0.0.1:2022", "10.0.0.1:2022"},
		{"\x1b[2J", `\x1b[2J`},
		{"SHA256:good\rSHA256:spoof", `SHA256:good\rSHA256:spoof`},
		{"a\nb\tc", `a\nb\tc`},
		{"bell\x07 del\x7f nul\x00", `bell\x07 del\x7f nul\x00`},
		{"csi\u009b2J nel\u0085", `csi\u009b2J nel\u0085`},
		{"bidi \u202eevil\u202c \u2066x\u2069", `bidi \u202eevil\u202c \u2066x\u2069`},
		{"bad utf8 \xff\xfe", `bad utf8 \xff\xfe`},
		{"ünïcödé ok — 日本", "ünïcödé ok — 日本"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// hostile is what a compromised agent or a tenant might put in a string
// the plugin prints: clear the screen, return to the line start and
// overwrite it, an 8-bit CSI, a bidi override.
const hostile = "x\x1b[2J\rSHA256:spoofed\u009b1A\u202e"

// assertPrintable fails when out holds a control character other than the
// newlines that end lines, or misses the visible escape of hostile.
func assertPrintable(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidiControl(r) || (r == utf8.RuneError) {
			t.Errorf("%s: control character %U at byte %d:\n%q", what, r, i, out)
			return
		}
	}
	if !strings.Contains(out, `x\x1b[2J\rSHA256:spoofed\u009b1A\u202e`) {
		t.Errorf("%s: the hostile string is not shown escaped:\n%s", what, out)
	}
}

// TestOutput_ClusterStringsEscaped: every writer of the plugin, fed
// objects whose agent- or tenant-written fields carry terminal escapes,
// prints them escaped.
func TestOutput_ClusterStringsEscaped(t *testing.T) {
	reps := func() []z8rv1.DatasetReplication {
		return []z8rv1.DatasetReplication{replication("data", "node-a", "tank/"+hostile,
			withTarget("node-b"+hostile, ""),
			withTargetStatus(z8rv1.TargetStatus{Node: "node-b" + hostile, Dataset: "tank/" + hostile, State: z8rv1.TargetFailed + hostile,
				LastSnapshot: hostile, ProtectedBase: hostile, LastSyncKind: hostile, LastError: hostile}),
			func(dr *z8rv1.DatasetReplication) {
				dr.Status.State, dr.Status.TargetsSummary, dr.Status.LastSnapshot = hostile, hostile, hostile
				dr.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Message: hostile}}
			})}
	}
	nodes := func() []z8rv1.Z8RNode {
		return []z8rv1.Z8RNode{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: z8rv1.Z8RNodeStatus{
			Address: hostile, Pools: []string{hostile}, Implementation: hostile, ZFSVersion: hostile,
			Capabilities: []string{hostile}, HostKeyFingerprint: hostile, HostKey: hostile, Message: hostile}}}
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"status":      func(b *bytes.Buffer) error { return WriteStatus(b, reps(), now, false) },
		"status wide": func(b *bytes.Buffer) error { return WriteStatus(b, reps(), now, true) },
		"snapshots":   func(b *bytes.Buffer) error { return WriteSnapshots(b, reps(), now) },
		"nodes":       func(b *bytes.Buffer) error { return WriteNodes(b, nodes(), now, false) },
		"volumesnapshots": func(b *bytes.Buffer) error {
			return WriteVolumeSnapshotStatus(b, []VolumeSnapshotReplication{{Content: hostile, VolumeSnapshot: hostile,
				Source: Place{Node: hostile, Dataset: hostile}, Snapshot: hostile,
				Targets: []VolumeSnapshotTarget{{Place: Place{Node: hostile, Dataset: hostile}, State: hostile, Error: hostile, GUID: hostile, ReplicaContent: hostile}}}},
				hostile, now, false)
		},
		"volumesnapshots wide": func(b *bytes.Buffer) error {
			return WriteVolumeSnapshotStatus(b, []VolumeSnapshotReplication{{Content: hostile, StatusError: hostile}}, hostile, now, true)
		},
		"nodes wide": func(b *bytes.Buffer) error { return WriteNodes(b, nodes(), now, true) },
		"approve-hostkey review": func(b *bytes.Buffer) error {
			return WriteReview(b, HostKeyReview{Node: "node-a" + hostile, Pinned: hostile, Presented: hostile,
				Address: hostile, Heartbeat: at(time.Minute)}, now)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := write(&b); err != nil {
				t.Fatal(err)
			}
			assertPrintable(t, name, b.String())
		})
	}
}

// TestReviewHostKey_HostileKeyErrorEscaped: a published host key that is
// not a key fails the review with an error that prints escaped, through
// the command tree's error wrapping.
func TestReviewHostKey_HostileKeyErrorEscaped(t *testing.T) {
	zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: z8rv1.Z8RNodeStatus{HostKey: "ssh-ed25519 " + hostile}}
	_, err := ReviewHostKey(zn)
	if err == nil {
		t.Fatal("review accepted a key that does not parse")
	}
	root := &cobra.Command{Use: "root"}
	sub := &cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error {
		return errors.New("Z8RNode says: " + hostile)
	}}
	root.AddCommand(sub)
	cleanErrors(root)
	got := sub.RunE(sub, nil)
	assertPrintable(t, "command error", got.Error())
	if errors.Unwrap(got) == nil {
		t.Error("cleaned error lost its cause")
	}
}
