package controllers

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// MaxEventNote is the longest note (message) the apiserver accepts in an
// Event (events.k8s.io/v1 validation); a longer one is rejected and the
// Event is lost.
const MaxEventNote = 1024

// maxQuotedValue is the longest quoted value kept whole inside a note; a
// longer one keeps its head and tail around a marker saying how much was cut.
const (
	maxQuotedValue = 200
	quotedHead     = 120
	quotedTail     = 40
)

// quoted matches a Go-quoted string ("..." with backslash escapes) at least
// maxQuotedValue bytes long.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.){` + strconv.Itoa(maxQuotedValue) + `,}"`)

// LimitedRecorder is an events.EventRecorder whose notes always fit the
// apiserver's limit (ShortenNote), so that a Warning about an oversized
// input is seen instead of rejected.
type LimitedRecorder struct {
	events.EventRecorder
}

// NewLimitedRecorder wraps rec.
func NewLimitedRecorder(rec events.EventRecorder) *LimitedRecorder {
	return &LimitedRecorder{EventRecorder: rec}
}

// Eventf formats the note, shortens it and records it.
func (r *LimitedRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, "%s", ShortenNote(fmt.Sprintf(note, args...), MaxEventNote))
}

// ShortenNote returns s in at most limit bytes of valid UTF-8. Quoted
// values (as %q writes them) longer than 200 bytes keep their first 120 and
// last 40 bytes around "…(N bytes cut)…"; if the whole is still too long it
// is cut at a rune boundary and ends in "… (N bytes cut)", N counting what
// the cut removed.
func ShortenNote(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = quoted.ReplaceAllStringFunc(s, func(q string) string {
		body := q[1 : len(q)-1]
		// No dangling escape before the marker.
		head := strings.TrimRight(validPrefix(body, quotedHead), `\`)
		tail := validSuffix(body, quotedTail)
		cut := len(body) - len(head) - len(tail)
		return fmt.Sprintf(`"%s…(%d bytes cut)…%s"`, head, cut, tail)
	})
	if len(s) <= limit {
		return s
	}
	// The suffix's length depends on N; size it for the largest N possible.
	suffixMax := len(fmt.Sprintf("… (%d bytes cut)", len(s)))
	if suffixMax >= limit {
		return validPrefix(s, limit)
	}
	kept := validPrefix(s, limit-suffixMax)
	return kept + fmt.Sprintf("… (%d bytes cut)", len(s)-len(kept))
}

// validPrefix returns the longest prefix of s of at most n bytes that does
// not split a rune.
func validPrefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// validSuffix returns the longest suffix of s of at most n bytes that does
// not split a rune.
func validSuffix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
