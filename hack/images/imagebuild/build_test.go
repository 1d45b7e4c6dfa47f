package imagebuild

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const (
	testVersion  = "v0.0.0-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

var testEpoch = time.Unix(1700000000, 0).UTC()

func build(t *testing.T, specs ...Spec) []Result {
	t.Helper()
	rs, err := Build(t.Context(), Options{
		ModuleRoot: moduleRoot(t),
		OutDir:     t.TempDir(),
		Version:    testVersion,
		Revision:   testRevision,
		Epoch:      testEpoch,
		Specs:      specs,
		Log:        testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func fileSHA256(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestBuild_ReproducibleAndLoadable builds both images twice, into two
// folders, and reads each archive back as an OCI layout and as a docker
// archive.
func TestBuild_ReproducibleAndLoadable(t *testing.T) {
	first, second := build(t), build(t)
	if len(first) != len(Specs()) || len(second) != len(first) {
		t.Fatalf("built %d and %d images, want %d", len(first), len(second), len(Specs()))
	}
	for i, r := range first {
		t.Run(r.Spec.Name, func(t *testing.T) {
			if r.Digest != second[i].Digest {
				t.Errorf("digests differ between two builds: %s, %s", r.Digest, second[i].Digest)
			}
			if fileSHA256(t, r.Archive) != fileSHA256(t, second[i].Archive) {
				t.Errorf("archives %s and %s differ", r.Archive, second[i].Archive)
			}
			checkArchiveEntries(t, r.Archive)
			img := loadLayout(t, r)
			checkImage(t, r.Spec, img)
			fromDocker := loadDockerArchive(t, r)
			for _, get := range []func(v1.Image) (v1.Hash, error){v1.Image.ConfigName, layerDigest} {
				a, errA := get(img)
				b, errB := get(fromDocker)
				if errA != nil || errB != nil || a != b {
					t.Errorf("the OCI layout and manifest.json disagree: %v (%v), %v (%v)", a, errA, b, errB)
				}
			}
		})
	}
}

func layerDigest(img v1.Image) (v1.Hash, error) {
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		return v1.Hash{}, errors.Join(err, errors.New("no layer"))
	}
	return ls[len(ls)-1].Digest()
}

// checkArchiveEntries: the archive's own entries are fixed too.
func checkArchiveEntries(t *testing.T, archive string) {
	t.Helper()
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range readTar(t, b, testEpoch) {
		names = append(names, e.name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("archive entries not sorted: %q", names)
	}
	for _, want := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive has no %s: %q", want, names)
		}
	}
}

// loadLayout unpacks the archive and reads it as an OCI image layout.
func loadLayout(t *testing.T, r Result) v1.Image {
	t.Helper()
	f, err := os.Open(r.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	untar(t, f, dir, false)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(im.Manifests))
	}
	d := im.Manifests[0]
	ref, err := name.NewTag(r.Spec.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != r.Digest || d.Annotations[AnnotationImageName] != r.Spec.Ref || d.Annotations[AnnotationRefName] != ref.TagStr() {
		t.Errorf("index.json entry %s %v, want %s named %s", d.Digest, d.Annotations, r.Digest, r.Spec.Ref)
	}
	if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index.json platform %+v, want linux/%s", d.Platform, runtime.GOARCH)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("OCI layout: %v", err)
	}
	return img
}

// loadDockerArchive reads the archive through manifest.json, as docker
// load does.
func loadDockerArchive(t *testing.T, r Result) v1.Image {
	t.Helper()
	tag, err := name.NewTag(r.Spec.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(r.Archive, &tag)
	if err != nil {
		t.Fatalf("as a docker archive: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("docker archive: %v", err)
	}
	return img
}

type imageFile struct {
	typ      byte
	mode     int64
	linkname string
	body     []byte
}

// imageFiles flattens img's layers.
func imageFiles(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]imageFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testEpoch) {
			t.Errorf("%s: %d:%d %v, want 0:0 at %v", h.Name, h.Uid, h.Gid, h.ModTime, testEpoch)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = imageFile{h.Typeflag, h.Mode, h.Linkname, b}
	}
}

// resolve follows symbolic links inside the image's files.
func resolve(files map[string]imageFile, p string) (string, bool) {
	for range maxLinks {
		dir, cur := "/", ""
		changed := false
		for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
			cur = path.Join(dir, c)
			f, ok := files[cur]
			if !ok {
				return "", false
			}
			if f.typ == tar.TypeSymlink {
				rest := strings.TrimPrefix(strings.TrimPrefix(p, cur), "/")
				if path.IsAbs(f.linkname) {
					p = path.Join(f.linkname, rest)
				} else {
					p = path.Join(dir, f.linkname, rest)
				}
				changed = true
				break
			}
			dir = cur
		}
		if !changed {
			return cur, files[cur].typ == tar.TypeReg
		}
	}
	return "", false
}

func checkImage(t *testing.T, s Spec, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, s.Entrypoint) || c.User != s.User || !slices.Equal(c.Env, []string{"PATH=" + DefaultPath}) || len(c.Cmd) != 0 {
		t.Errorf("config entrypoint %q cmd %q user %q env %q, want %q, none, %q, PATH", c.Entrypoint, c.Cmd, c.User, c.Env, s.Entrypoint, s.User)
	}
	if want := s.Labels(testVersion, testRevision); !maps.Equal(c.Labels, want) {
		t.Errorf("labels %v, want %v", c.Labels, want)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Equal(testEpoch) {
		t.Errorf("config %s/%s created %v, want linux/%s at %v", cf.OS, cf.Architecture, cf.Created, runtime.GOARCH, testEpoch)
	}
	machine, err := ELFMachine(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	files := imageFiles(t, img)
	entry := files[s.Entrypoint[0]]
	if entry.typ != tar.TypeReg || entry.mode != 0o755 {
		t.Fatalf("entrypoint %s: type %c mode %o, want an executable file", s.Entrypoint[0], entry.typ, entry.mode)
	}
	if err := CheckStaticELF(entry.body, machine); err != nil {
		t.Errorf("entrypoint %s: %v", s.Entrypoint[0], err)
	}
	// Exactly the files it needs: its binary, and each host file with what
	// it loads.
	want := map[string]bool{s.Binary(): true}
	for _, hf := range s.HostFiles {
		for _, p := range neededFiles(t, files, hf) {
			want[p] = true
		}
	}
	var extra []string
	for p, f := range files {
		if f.typ == tar.TypeReg && !want[p] {
			extra = append(extra, p)
		}
	}
	if len(extra) > 0 {
		t.Errorf("files no program of the image loads: %q", extra)
	}
}

// neededFiles checks that p and everything its program interpreter would
// load resolve to files inside the image, and returns those files.
func neededFiles(t *testing.T, files map[string]imageFile, p string) []string {
	t.Helper()
	real, ok := resolve(files, p)
	if !ok {
		t.Fatalf("%s: not in the image", p)
	}
	if files[real].mode != 0o755 {
		t.Errorf("%s: mode %o, want 0755", p, files[real].mode)
	}
	out := []string{real}
	f, err := elf.NewFile(bytes.NewReader(files[real].body))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	defer f.Close()
	interp := programInterpreter(t, f)
	ip, ok := resolve(files, interp)
	if !ok {
		t.Fatalf("%s: its program interpreter %s is not in the image", p, interp)
	}
	out = append(out, ip)
	// The loader's multiarch folders: where Debian's ld.so looks first.
	dirs := []string{"/lib/" + multiarch(t), "/usr/lib/" + multiarch(t), "/lib", "/usr/lib"}
	seen := map[string]bool{}
	queue := []*elf.File{f}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		libs, err := cur.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		for _, lib := range libs {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, d := range dirs {
				if rp, ok := resolve(files, path.Join(d, lib)); ok {
					found = rp
					break
				}
			}
			if found == "" {
				t.Errorf("%s needs %s, which is in none of %v in the image", p, lib, dirs)
				continue
			}
			out = append(out, found)
			lf, err := elf.NewFile(bytes.NewReader(files[found].body))
			if err != nil {
				t.Fatalf("%s: %v", found, err)
			}
			defer lf.Close()
			queue = append(queue, lf)
		}
	}
	return out
}

func multiarch(t *testing.T) string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	}
	t.Fatalf("GOARCH %s", runtime.GOARCH)
	return ""
}

// untar writes the folders and regular files (with their permission bits)
// of the tar stream r under dir, and its symlinks when symlinks is set;
// any other entry, or a name leaving dir, fails the test.
func untar(t *testing.T, r io.Reader, dir string, symlinks bool) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("tar entry %q leaves the folder", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch {
		case h.Typeflag == tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case h.Typeflag == tar.TypeSymlink && symlinks:
			err = os.Symlink(h.Linkname, p)
		case h.Typeflag == tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode).Perm())
			}
		default:
			t.Fatalf("tar entry %s: type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
