package manifests

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

const modulePath = "github.com/z8r-project/z8r"

func root(t *testing.T) string {
	t.Helper()
	r, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func loadDockerfile(t *testing.T) *Dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := ParseDockerfile(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

var goBuild = regexp.MustCompile(`go build .*-o (\S+) (.+)$`)

// builtBinaries returns the paths the build stage's `go build -o DIR/
// PATTERNS` writes: DIR/<last element of each main package>.
func builtBinaries(t *testing.T, build *Stage) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for _, run := range build.Runs {
		m := goBuild.FindStringSubmatch(run)
		if m == nil {
			continue
		}
		if !strings.Contains(run, "CGO_ENABLED=0") {
			t.Errorf("build stage: %q is not static (CGO_ENABLED=0)", run)
		}
		dir := m[1]
		if !strings.HasSuffix(dir, "/") {
			t.Fatalf("build stage: go build -o %s: want a folder (ending in /) for several binaries", dir)
		}
		patterns := strings.Fields(m[2])
		for _, line := range goList(t, append([]string{"-f", "{{.Name}}:{{.ImportPath}}"}, patterns...)...) {
			name, pkg, _ := strings.Cut(line, ":")
			if name == "main" {
				bins[path.Join(dir, path.Base(pkg))] = pkg
			}
		}
	}
	if len(bins) == 0 {
		t.Fatal("build stage: no `go build -o DIR/ PACKAGES` that builds a main package")
	}
	return bins
}

func TestDockerfile_StagesAndBinaries(t *testing.T) {
	d := loadDockerfile(t)
	build := d.Stage("build")
	if build == nil {
		t.Fatal("no stage named build")
	}
	bins := builtBinaries(t, build)
	// Every ./cmd binary is built.
	for _, pkg := range goList(t, "./cmd/...") {
		if _, ok := bins["/out/"+path.Base(pkg)]; !ok {
			t.Errorf("%s is not built by the build stage (built: %v)", pkg, bins)
		}
	}
	want := map[string]string{ // stage: binary it runs
		"controller": "/z8r-controller",
		"agent":      "/z8r-agent",
	}
	seen := map[string]bool{}
	for i, s := range d.Stages {
		if s.Name == "" {
			t.Errorf("stage %d (%s) has no name", i, s.Image)
		}
		dests := map[string]bool{}
		for _, c := range s.Copies {
			if c.From == "" {
				continue
			}
			if !seen[c.From] {
				t.Errorf("stage %s copies from %q, which is not an earlier stage", s.Name, c.From)
			}
			for _, src := range c.Sources {
				if c.From == "build" {
					if _, ok := bins[src]; !ok {
						t.Errorf("stage %s copies %s, which the build stage does not produce (it builds %v)", s.Name, src, keys(bins))
					}
				}
				dest := c.Dest
				if strings.HasSuffix(dest, "/") {
					dest += path.Base(src)
				}
				dests[dest] = true
			}
		}
		if len(s.Entrypoint) > 0 && !dests[s.Entrypoint[0]] {
			t.Errorf("stage %s: ENTRYPOINT %s is not a file copied into it", s.Name, s.Entrypoint[0])
		}
		if bin, ok := want[s.Name]; ok && (len(s.Entrypoint) == 0 || s.Entrypoint[0] != bin) {
			t.Errorf("stage %s: ENTRYPOINT %v, want [%s] (the manifests set only args)", s.Name, s.Entrypoint, bin)
		}
		seen[s.Name] = true
	}
	for name := range want {
		if d.Stage(name) == nil {
			t.Errorf("no stage %s", name)
		}
	}
	if c := d.Stage("controller"); c != nil {
		if u := strings.Split(c.User, ":")[0]; u == "" || u == "0" || u == "root" {
			t.Errorf("controller stage runs as %q, want a non-root user", c.User)
		}
	}
}

func TestDockerfile_GoVersionMatchesGoMod(t *testing.T) {
	d := loadDockerfile(t)
	b, err := os.ReadFile(filepath.Join(root(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := goDirective.FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	want := "golang:" + string(m[1]) + "-"
	if img := d.Stage("build").Image; !strings.HasPrefix(img, want) {
		t.Errorf("build stage image %s, want %s... (go.mod says go %s)", img, want, m[1])
	}
}

// TestDockerfile_CopiesEverySourceTheBinariesNeed: every build-context path
// a COPY names exists and is not excluded by .dockerignore, and every
// package of this module that a binary imports lies in a copied folder.
func TestDockerfile_CopiesEverySourceTheBinariesNeed(t *testing.T) {
	r := root(t)
	d := loadDockerfile(t)
	ignored := dockerignore(t, r)
	var copied []string
	for _, c := range d.Stage("build").Copies {
		if c.From != "" {
			continue
		}
		for _, src := range c.Sources {
			if _, err := os.Stat(filepath.Join(r, src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
			clean := strings.TrimSuffix(path.Clean(src), "/")
			if slices.Contains(ignored, clean) {
				t.Errorf("COPY %s: excluded by .dockerignore", src)
			}
			copied = append(copied, clean)
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !slices.Contains(copied, f) {
			t.Errorf("the build stage does not copy %s", f)
		}
	}
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/...")
	for _, pkg := range deps {
		rel, ok := strings.CutPrefix(pkg, modulePath+"/")
		if !ok {
			continue
		}
		if !slices.ContainsFunc(copied, func(c string) bool { return rel == c || strings.HasPrefix(rel, c+"/") }) {
			t.Errorf("the binaries import %s, but the Dockerfile copies only %v", pkg, copied)
		}
	}
}

// dockerignore returns the plain folder and file entries of .dockerignore
// (without trailing slashes).
func dockerignore(t *testing.T, root string) []string {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.TrimSuffix(path.Clean(line), "/"))
	}
	return out
}

func TestParseDockerfile_Syntax(t *testing.T) {
	src := `# comment
ARG V=1.2
FROM golang:${V}-x AS b
RUN a \
    b
COPY --from=b --chown=1:1 /o/x /o/y /dst/
FROM scratch
ENTRYPOINT ["/x", "-v"]
USER 1:1
`
	d, err := ParseDockerfile(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Stages) != 2 || d.Stages[0].Image != "golang:1.2-x" || d.Stages[0].Name != "b" {
		t.Fatalf("stages = %+v", d.Stages)
	}
	if got := d.Stages[0].Runs; len(got) != 1 || got[0] != "a  b" {
		t.Errorf("runs = %q, want the continuation joined", got)
	}
	c := d.Stages[0].Copies[0]
	if c.From != "b" || !slices.Equal(c.Sources, []string{"/o/x", "/o/y"}) || c.Dest != "/dst/" {
		t.Errorf("copy = %+v", c)
	}
	if s := d.Stages[1]; !slices.Equal(s.Entrypoint, []string{"/x", "-v"}) || s.User != "1:1" {
		t.Errorf("second stage = %+v", s)
	}
	for _, bad := range []string{"RUN x\n", "FROM a b c d\n", "FROM a\nENTRYPOINT /x\n", "FROM a\nRUN x \\\n"} {
		if _, err := ParseDockerfile(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseDockerfile(%q) succeeded, want an error", bad)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
