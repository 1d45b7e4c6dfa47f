package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Clean makes a string that came from the cluster safe to print on a
// terminal. Agents write Z8RNode status and messages, tenants write
// annotations and names reach errors: any of them may carry terminal
// control sequences that clear the screen, move the cursor or rewrite a
// line (for example to spoof the fingerprints approve-hostkey shows). Clean
// escapes, visibly, every C0 control (including ESC, CR, LF and TAB), DEL,
// every C1 control, Unicode bidirectional overrides and invalid UTF-8:
// "\x1b[2J" prints as `\x1b[2J`, a CR as `\r`. Printable text is unchanged.
//
// Every string from the cluster that this package prints goes through
// Clean (table cells through writeRow, returned errors through
// cleanError).
func Clean(s string) string {
	if !needsClean(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, isBidiControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsClean(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidiControl(r) {
			return true
		}
		i += size
	}
	return false
}

// isBidiControl: marks, embeddings, overrides and isolates that reorder
// how a terminal displays the text around them.
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// writeRow writes cells, each cleaned, as one tab-separated line (for a
// tabwriter).
func writeRow(w io.Writer, cells ...string) {
	clean := make([]string, len(cells))
	for i, c := range cells {
		clean[i] = Clean(c)
	}
	fmt.Fprintln(w, strings.Join(clean, "\t"))
}

// cleanError prints as its cleaned message; errors.Is and errors.As still
// see the original.
type cleanError struct{ err error }

func (e cleanError) Error() string { return Clean(e.err.Error()) }
func (e cleanError) Unwrap() error { return e.err }

// cleanErr wraps err (nil stays nil) so that printing it is safe.
func cleanErr(err error) error {
	var ce cleanError
	if err == nil || errors.As(err, &ce) {
		return err
	}
	return cleanError{err}
}
