package manifests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Dockerfile is the part of a Dockerfile the tests check.
type Dockerfile struct {
	// Args are the global ARGs (before the first FROM) with their defaults.
	Args   map[string]string
	Stages []*Stage
}

// Stage is one FROM ... AS name section.
type Stage struct {
	Name   string
	Image  string // as written, ${ARG}s expanded from the global defaults
	Copies []Copy
	Runs   []string
	// Entrypoint is the exec-form ENTRYPOINT (nil when absent).
	Entrypoint []string
	User       string
	// Labels are the stage's LABEL key=value pairs, values unquoted but
	// not expanded (a label may read "${VERSION}").
	Labels map[string]string
}

// Copy is one COPY instruction.
type Copy struct {
	From    string // --from stage, "" for the build context
	Sources []string
	Dest    string
}

// Stage returns the stage named name, or nil.
func (d *Dockerfile) Stage(name string) *Stage {
	for _, s := range d.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// ParseDockerfile reads instructions one per logical line (backslash
// continuations joined, comments and blank lines skipped). It understands
// ARG, FROM, COPY, RUN, ENTRYPOINT (exec form), USER and LABEL, and ignores
// the rest.
func ParseDockerfile(r io.Reader) (*Dockerfile, error) {
	d := &Dockerfile{Args: map[string]string{}}
	var cur *Stage
	sc := bufio.NewScanner(r)
	var logical strings.Builder
	lineNo := 0
	handle := func(line string) error {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil
		}
		instr, rest := strings.ToUpper(fields[0]), strings.TrimSpace(line[len(fields[0]):])
		switch instr {
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			if cur == nil {
				d.Args[name] = strings.Trim(def, `"`)
			}
		case "FROM":
			f := strings.Fields(rest)
			var args []string
			for _, x := range f {
				if !strings.HasPrefix(x, "--") {
					args = append(args, x)
				}
			}
			if len(args) != 1 && !(len(args) == 3 && strings.EqualFold(args[1], "AS")) {
				return fmt.Errorf("line %d: FROM %q: want IMAGE [AS NAME]", lineNo, rest)
			}
			cur = &Stage{Image: d.expand(args[0])}
			if len(args) == 3 {
				cur.Name = args[2]
			}
			d.Stages = append(d.Stages, cur)
		case "COPY", "RUN", "ENTRYPOINT", "USER", "LABEL":
			if cur == nil {
				return fmt.Errorf("line %d: %s before FROM", lineNo, instr)
			}
			switch instr {
			case "COPY":
				c, err := parseCopy(rest)
				if err != nil {
					return fmt.Errorf("line %d: %w", lineNo, err)
				}
				cur.Copies = append(cur.Copies, c)
			case "RUN":
				cur.Runs = append(cur.Runs, rest)
			case "ENTRYPOINT":
				if err := json.Unmarshal([]byte(rest), &cur.Entrypoint); err != nil {
					return fmt.Errorf("line %d: ENTRYPOINT must be in exec form: %w", lineNo, err)
				}
			case "USER":
				cur.User = rest
			case "LABEL":
				if cur.Labels == nil {
					cur.Labels = map[string]string{}
				}
				if err := parseLabels(rest, cur.Labels); err != nil {
					return fmt.Errorf("line %d: %w", lineNo, err)
				}
			}
		}
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if logical.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			logical.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		logical.WriteString(trimmed)
		if err := handle(logical.String()); err != nil {
			return nil, err
		}
		logical.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if logical.Len() > 0 {
		return nil, fmt.Errorf("line %d: file ends in a continuation", lineNo)
	}
	return d, nil
}

func (d *Dockerfile) expand(s string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := d.Args[name]; ok {
			return v
		}
		return m
	})
}

func parseCopy(rest string) (Copy, error) {
	var c Copy
	var args []string
	for _, f := range strings.Fields(rest) {
		switch {
		case strings.HasPrefix(f, "--from="):
			c.From = strings.TrimPrefix(f, "--from=")
		case strings.HasPrefix(f, "--"):
			// --chown, --chmod, --link: irrelevant here
		default:
			args = append(args, f)
		}
	}
	if len(args) < 2 {
		return c, fmt.Errorf("COPY %q: want SOURCE... DEST", rest)
	}
	c.Sources, c.Dest = args[:len(args)-1], args[len(args)-1]
	return c, nil
}

// parseLabels reads LABEL's key=value pairs (values bare or in double
// quotes, with backslash escapes inside quotes) into into.
func parseLabels(rest string, into map[string]string) error {
	var words []string
	var w strings.Builder
	inWord, quoted, escaped := false, false, false
	for _, r := range rest {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case quoted && r == '\\':
			escaped = true
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return fmt.Errorf("LABEL %q: unterminated quote", rest)
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return fmt.Errorf("LABEL %q: want KEY=VALUE...", rest)
	}
	for _, word := range words {
		k, v, ok := strings.Cut(word, "=")
		if !ok || k == "" {
			return fmt.Errorf("LABEL %q: %q is not KEY=VALUE", rest, word)
		}
		into[k] = v
	}
	return nil
}
