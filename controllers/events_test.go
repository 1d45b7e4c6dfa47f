package controllers

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/z8r-project/z8r/internal/policy"
)

func TestShortenNote_Cases(t *testing.T) {
	long := "tank/" + strings.Repeat("a", 10000)
	problem := policy.Problem{Node: "n1", Key: policy.AnnMaster, Value: long,
		Message: "name too long: " + long, Rejected: true}.String()
	tests := []struct {
		name string
		in   string
		// keep: substrings the result must contain.
		keep []string
		// cutSuffix: the result must end in "… (N bytes cut)".
		cutSuffix bool
	}{
		{"short note unchanged", "node n1: z8r.dev/master=\"\": empty value", []string{"empty value"}, false},
		{"exactly the limit unchanged", strings.Repeat("x", MaxEventNote), nil, false},
		{"long quoted value keeps head and tail",
			fmt.Sprintf("node n1: %s=%q: bad", policy.AnnMaster, long),
			[]string{`z8r.dev/master="tank/aaa`, "(9845 bytes cut)…aaaa", `aaaa": bad`}, false},
		{"problem with the value unquoted too is cut overall",
			problem, []string{`node n1: z8r.dev/master="tank/a`, "…(", "name too long: tank/a"}, true},
		{"no quotes, plain cut", strings.Repeat("b", 5000), []string{"bbbb"}, true},
		{"multi-byte runes never split", strings.Repeat("é", 3000), []string{"é"}, true},
		{"escaped quotes in a long value", fmt.Sprintf("v=%q.", strings.Repeat(`a"b\`, 400)+"END"), []string{`v="a\"b`, `END".`}, false},
	}
	suffix := regexp.MustCompile(`… \((\d+) bytes cut\)$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ShortenNote(tc.in, MaxEventNote)
			if len(got) > MaxEventNote {
				t.Errorf("len %d > %d", len(got), MaxEventNote)
			}
			if !utf8.ValidString(got) {
				t.Errorf("not valid UTF-8: %q", got)
			}
			if len(tc.in) <= MaxEventNote && got != tc.in {
				t.Errorf("a note within the limit changed: %q", got)
			}
			for _, k := range tc.keep {
				if !strings.Contains(got, k) {
					t.Errorf("%q lacks %q", got, k)
				}
			}
			m := suffix.FindStringSubmatch(got)
			if tc.cutSuffix != (m != nil) {
				t.Fatalf("cut suffix present = %v, want %v: %q", m != nil, tc.cutSuffix, got)
			}
			if m != nil {
				// N is what the final cut removed: the kept text plus N
				// bytes is no longer than the input.
				n, _ := strconv.Atoi(m[1])
				kept := strings.TrimSuffix(got, m[0])
				if n <= 0 || len(kept)+n > len(tc.in) {
					t.Errorf("cut %d bytes, kept %d of %d", n, len(kept), len(tc.in))
				}
			}
		})
	}
}

func TestLimitedRecorder_Eventf(t *testing.T) {
	fake := events.NewFakeRecorder(1)
	rec := NewLimitedRecorder(fake)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	rec.Eventf(n, nil, corev1.EventTypeWarning, "Reason", "Validate", "value %q and %d%%", strings.Repeat("x", 5000), 7)
	got := <-fake.Events
	if len(got) > MaxEventNote+len("Warning Reason ") {
		t.Fatalf("event %d bytes: %.200s", len(got), got)
	}
	if !strings.Contains(got, "bytes cut)") || !strings.HasSuffix(got, `" and 7%`) {
		t.Errorf("event %q: want the value shortened and the rest formatted", got)
	}
}
