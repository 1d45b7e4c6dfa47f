package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	sigsyaml "sigs.k8s.io/yaml"
)

// Output formats (-o).
const (
	OutputTable = ""
	OutputWide  = "wide"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// ErrOutputFormat is matched by the error for an -o a command does not
// support.
var ErrOutputFormat = fmt.Errorf("unsupported output format")

// parseOutput checks format against what a command supports.
func parseOutput(format string, supported ...string) (string, error) {
	for _, s := range supported {
		if format == s {
			return format, nil
		}
	}
	names := make([]string, 0, len(supported))
	for _, s := range supported {
		if s != OutputTable {
			names = append(names, s)
		}
	}
	return "", fmt.Errorf("%w %q (supported: %s)", ErrOutputFormat, format, strings.Join(names, ", "))
}

// PrintObject writes obj as JSON or YAML, managed fields omitted as kubectl
// does, and safe for a terminal without changing what it decodes to.
//
// JSON comes from cli-runtime's JSON printer; encoding/json escapes C0
// controls but not DEL, C1 controls or bidirectional overrides, which
// SafeJSON escapes. YAML is that safe JSON converted as cli-runtime's YAML
// printer converts (sigs.k8s.io/yaml): converting the raw JSON would fail
// on DEL and C1 controls, which YAML does not allow in its input; the YAML
// encoder escapes them again but leaves bidirectional controls raw, which
// SafeYAML escapes.
func PrintObject(w io.Writer, format string, obj runtime.Object) error {
	if format != OutputJSON && format != OutputYAML {
		_, err := parseOutput(format, OutputJSON, OutputYAML)
		return err
	}
	p, err := (&genericclioptions.JSONYamlPrintFlags{}).ToPrinter(OutputJSON)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := p.PrintObj(obj, &buf); err != nil {
		return fmt.Errorf("print %s: %w", format, err)
	}
	out := SafeJSON(buf.Bytes())
	if format == OutputYAML {
		if out, err = sigsyaml.JSONToYAML(out); err != nil {
			return fmt.Errorf("print yaml: %w", err)
		}
		if out, err = SafeYAML(out); err != nil {
			return err
		}
	}
	_, err = w.Write(out)
	return err
}

// unsafeEncoded is a rune an encoder may leave raw that a terminal acts
// on: DEL, C1 controls and bidirectional controls (C0 controls are escaped
// by both encoders, except the line breaks they write themselves).
func unsafeEncoded(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidiControl(r)
}

// SafeJSON escapes, as \uXXXX, every unsafeEncoded rune in JSON text.
// Such runes can only occur inside strings, where the escape decodes to
// the same rune: the document is unchanged.
func SafeJSON(b []byte) []byte {
	if !bytes.ContainsFunc(b, unsafeEncoded) {
		return b
	}
	var out bytes.Buffer
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if unsafeEncoded(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
		} else {
			out.Write(b[i : i+size])
		}
		i += size
	}
	return out.Bytes()
}

// SafeYAML makes YAML text safe in the same way: the YAML encoder escapes
// DEL and C1 controls (they are not printable in YAML) but writes
// bidirectional controls raw, in any scalar style. SafeYAML re-encodes a
// document that has any, with each scalar holding one double-quoted, and
// escapes them there as \uXXXX, which decodes to the same rune.
func SafeYAML(b []byte) ([]byte, error) {
	if !bytes.ContainsFunc(b, unsafeEncoded) {
		return b, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	quoteUnsafe(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return SafeJSON(buf.Bytes()), nil
}

// quoteUnsafe double-quotes every scalar (keys included) that holds an
// unsafeEncoded rune.
func quoteUnsafe(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.ContainsFunc(n.Value, unsafeEncoded) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteUnsafe(c)
	}
}
