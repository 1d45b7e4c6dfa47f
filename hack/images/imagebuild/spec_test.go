package imagebuild

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/z8r-project/z8r/internal/manifests"
)

// moduleRoot is two folders up from this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return r
}

func loadDockerfile(t *testing.T) *manifests.Dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := manifests.ParseDockerfile(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// shellWords splits a RUN line into words the way sh would for the simple
// quoting the Dockerfile uses (double quotes, no expansions).
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case !quoted && (r == ' ' || r == '\t'):
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// dockerGoBuild returns the environment assignments, the flags and the
// package patterns of the build stage's go build.
func dockerGoBuild(t *testing.T, d *manifests.Dockerfile) (env, flags, pkgs []string, out string) {
	t.Helper()
	build := d.Stage("build")
	if build == nil {
		t.Fatal("Dockerfile: no build stage")
	}
	for _, run := range build.Runs {
		words := shellWords(run)
		i := slices.Index(words, "go")
		if i < 0 || i+1 >= len(words) || words[i+1] != "build" {
			continue
		}
		env = words[:i]
		rest := words[i+2:]
		for j := 0; j < len(rest); j++ {
			switch {
			case rest[j] == "-o" && j+1 < len(rest):
				out = rest[j+1]
				j++
			case strings.HasPrefix(rest[j], "-"):
				flags = append(flags, rest[j])
			default:
				pkgs = append(pkgs, rest[j])
			}
		}
		return env, flags, pkgs, out
	}
	t.Fatal("Dockerfile: the build stage has no go build")
	return nil, nil, nil, ""
}

func TestSpecs_MatchDockerfile(t *testing.T) {
	d := loadDockerfile(t)
	env, flags, pkgs, out := dockerGoBuild(t, d)
	if !slices.Equal(sorted(flags), sorted(GoBuildFlags())) {
		t.Errorf("Dockerfile go build flags %q, make images uses %q", flags, GoBuildFlags())
	}
	for _, kv := range GoBuildEnv("amd64") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "GOARCH" || k == "GOFLAGS" {
			continue // docker builds for its platform; its GOFLAGS are empty
		}
		if !slices.Contains(env, kv) {
			t.Errorf("Dockerfile go build runs with %q, make images with %s=%s", env, k, v)
		}
	}
	for _, s := range Specs() {
		t.Run(s.Name, func(t *testing.T) {
			if !slices.ContainsFunc(pkgs, func(p string) bool {
				return p == s.Package || (strings.HasSuffix(p, "/...") && strings.HasPrefix(s.Package, strings.TrimSuffix(p, "...")))
			}) {
				t.Errorf("the Dockerfile builds %v, not %s", pkgs, s.Package)
			}
			st := d.Stage(s.Stage)
			if st == nil {
				t.Fatalf("Dockerfile has no stage %s", s.Stage)
			}
			var copied []string
			for _, c := range st.Copies {
				for _, src := range c.Sources {
					dest := c.Dest
					if strings.HasSuffix(dest, "/") {
						dest += path.Base(src)
					}
					copied = append(copied, c.From+":"+src+"->"+dest)
				}
			}
			want := "build:" + path.Join(out, path.Base(s.Package)) + "->" + s.Binary()
			if !slices.Equal(copied, []string{want}) {
				t.Errorf("stage %s copies %q, want exactly [%s] (the binary make images puts in the image)", s.Stage, copied, want)
			}
			if !slices.Equal(st.Entrypoint, s.Entrypoint) {
				t.Errorf("ENTRYPOINT %q, make images sets %q", st.Entrypoint, s.Entrypoint)
			}
			if st.User != s.User {
				t.Errorf("USER %q, make images sets %q", st.User, s.User)
			}
			got := map[string]string{}
			for k, v := range st.Labels {
				v = strings.ReplaceAll(v, "${VERSION}", "v9.8.7")
				got[k] = strings.ReplaceAll(v, "${REVISION}", "0123abcd")
			}
			if want := s.Labels("v9.8.7", "0123abcd"); !maps.Equal(got, want) {
				t.Errorf("LABELs (VERSION and REVISION substituted) %v, make images sets %v", got, want)
			}
		})
	}
}

// TestSpecs_AgentRunsNsenterFromItsPath: the DaemonSet's --zfs-prefix
// names a program the agent image ships in a folder of its PATH, and the
// Dockerfile's agent base is the Debian release whose nsenter it is.
func TestSpecs_AgentRunsNsenterFromItsPath(t *testing.T) {
	ds := daemonSet(t)
	var prefix string
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--zfs-prefix="); ok {
			prefix = v
		}
	}
	words := strings.Fields(prefix)
	if len(words) == 0 || words[0] != "nsenter" {
		t.Fatalf("the agent DaemonSet's --zfs-prefix is %q, want nsenter ...", prefix)
	}
	found := false
	for _, dir := range strings.Split(DefaultPath, ":") {
		if slices.Contains(Agent.HostFiles, path.Join(dir, words[0])) {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent image ships %v; none is %s in a folder of PATH=%s", Agent.HostFiles, words[0], DefaultPath)
	}
	st := loadDockerfile(t).Stage(Agent.Stage)
	if st == nil {
		t.Fatalf("Dockerfile has no stage %s", Agent.Stage)
	}
	if img := st.Image; !strings.HasPrefix(img, "debian:bookworm") {
		t.Errorf("the Dockerfile's agent stage is based on %s; make images copies Debian 12 (bookworm)'s nsenter", img)
	}
}

func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	objs, err := manifests.Load(filepath.Join(moduleRoot(t), "deploy", "z8r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	o := manifests.Find(objs, "DaemonSet", "z8r-agent")
	if o == nil {
		t.Fatal("deploy/z8r.yaml has no DaemonSet z8r-agent")
	}
	if err := manifests.Convert(o, &ds); err != nil {
		t.Fatal(err)
	}
	return &ds
}

// TestSpecs_RefsAreWhatDeployNames: make images tags the images with the
// references deploy/z8r.yaml runs.
func TestSpecs_RefsAreWhatDeployNames(t *testing.T) {
	objs, err := manifests.Load(filepath.Join(moduleRoot(t), "deploy", "z8r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	o := manifests.Find(objs, "Deployment", "z8r-controller")
	if o == nil {
		t.Fatal("deploy/z8r.yaml has no Deployment z8r-controller")
	}
	if err := manifests.Convert(o, &dep); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec       Spec
		containers []string
	}{
		{Controller, images(dep.Spec.Template.Spec.Containers)},
		{Agent, images(daemonSet(t).Spec.Template.Spec.Containers)},
	} {
		if !slices.Equal(tc.containers, []string{tc.spec.Ref}) {
			t.Errorf("%s: deploy/z8r.yaml runs %q, make images builds %s", tc.spec.Name, tc.containers, tc.spec.Ref)
		}
	}
}

func images(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
