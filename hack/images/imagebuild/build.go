package imagebuild

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// GoBuildFlags are the go build flags of every binary in the images; the
// Dockerfile's build stage uses the same (a test checks).
func GoBuildFlags() []string {
	return []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}
}

// GoBuildEnv is the environment go build gets on top of the caller's: a
// static build for linux/goarch, with GOFLAGS cleared so that the caller's
// cannot change the binaries.
func GoBuildEnv(goarch string) []string {
	return []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch, "GOFLAGS="}
}

// Options configure Build.
type Options struct {
	// ModuleRoot is the folder of z8r's go.mod.
	ModuleRoot string
	// OutDir receives one archive per image, <name>.tar.
	OutDir string
	// Version and Revision are the images' version and revision labels.
	Version, Revision string
	// Epoch dates every file, the config and the history.
	Epoch time.Time
	// Specs are the images to build; nil means Specs().
	Specs []Spec
	Log   logr.Logger
}

// Result is one image built.
type Result struct {
	Spec Spec
	// Archive is the path of the written archive.
	Archive string
	// Digest is the image (manifest) digest, what `ctr images ls` and a
	// pod's imageID show.
	Digest v1.Hash
}

// Build compiles the images' binaries and writes one archive per image
// into opts.OutDir. The images are for the machine's architecture, which
// the host files (nsenter and its libraries) are for too.
func Build(ctx context.Context, opts Options) ([]Result, error) {
	specs := opts.Specs
	if specs == nil {
		specs = Specs()
	}
	goarch := runtime.GOARCH
	machine, err := ELFMachine(goarch)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "z8r-images-")
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	var pkgs []string
	for _, s := range specs {
		pkgs = append(pkgs, s.Package)
	}
	opts.Log.Info("building binaries", "packages", pkgs, "goarch", goarch)
	if err := goBuild(ctx, opts.ModuleRoot, tmp+"/", goarch, pkgs); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	var results []Result
	for _, s := range specs {
		bin := filepath.Join(tmp, path.Base(s.Package))
		b, err := os.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.Name, err)
		}
		if err := CheckStaticELF(b, machine); err != nil {
			return nil, fmt.Errorf("images: %s: %s: %w", s.Name, s.Package, err)
		}
		host, err := HostEntries(ctx, s.HostFiles)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.Name, err)
		}
		img, err := Image(s, bin, host, goarch, opts.Version, opts.Revision, opts.Epoch)
		if err != nil {
			return nil, err
		}
		r, err := writeArchiveFile(opts.OutDir, s, img, opts.Epoch)
		if err != nil {
			return nil, err
		}
		opts.Log.Info("image written", "image", s.Ref, "digest", r.Digest.String(), "archive", r.Archive)
		results = append(results, r)
	}
	return results, nil
}

// goBuild runs go build -o outDir/ for pkgs in root.
func goBuild(ctx context.Context, root, outDir, goarch string, pkgs []string) error {
	argv := append([]string{"go", "build"}, GoBuildFlags()...)
	argv = append(argv, "-o", outDir)
	argv = append(argv, pkgs...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), GoBuildEnv(goarch)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("images: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Image assembles spec's image on an empty base: a layer with the host
// entries (if any), then a layer with the binary at spec.Binary(); the
// config carries spec's entrypoint, user, labels and DefaultPath.
func Image(spec Spec, binary string, host []Entry, goarch, version, revision string, epoch time.Time) (v1.Image, error) {
	var img v1.Image = empty.Image
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	type step struct {
		entries []Entry
		by      string
	}
	var steps []step
	if len(host) > 0 {
		steps = append(steps, step{host, "hack/images: copy " + strings.Join(spec.HostFiles, " ") + " with the shared libraries it loads, from the build host"})
	}
	steps = append(steps, step{
		[]Entry{{Path: spec.Binary(), Type: File, Mode: 0o755, Source: binary}},
		"hack/images: go build " + strings.Join(GoBuildFlags(), " ") + " -o " + spec.Binary() + " " + spec.Package,
	})
	for _, st := range steps {
		b, err := layerBytes(st.entries, epoch)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", spec.Name, err)
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
		if err != nil {
			return nil, fmt.Errorf("images: %s: layer: %w", spec.Name, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: st.by}})
		if err != nil {
			return nil, fmt.Errorf("images: %s: layer: %w", spec.Name, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("images: %s: config: %w", spec.Name, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", goarch, v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: slices.Clone(spec.Entrypoint),
		User:       spec.User,
		Env:        []string{"PATH=" + DefaultPath},
		Labels:     spec.Labels(version, revision),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("images: %s: config: %w", spec.Name, err)
	}
	return img, nil
}

func writeArchiveFile(dir string, s Spec, img v1.Image, epoch time.Time) (Result, error) {
	ref, err := name.NewTag(s.Ref, name.StrictValidation)
	if err != nil {
		return Result{}, fmt.Errorf("images: %s: reference %q: %w", s.Name, s.Ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return Result{}, fmt.Errorf("images: %s: digest: %w", s.Name, err)
	}
	final := filepath.Join(dir, s.Name+".tar")
	f, err := os.CreateTemp(dir, "."+s.Name+"-*.tar")
	if err != nil {
		return Result{}, fmt.Errorf("images: %w", err)
	}
	defer os.Remove(f.Name())
	if err := WriteArchive(f, img, ref, epoch); err != nil {
		f.Close()
		return Result{}, fmt.Errorf("images: %s: %w", s.Name, err)
	}
	if err := f.Close(); err != nil {
		return Result{}, fmt.Errorf("images: %s: %w", s.Name, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return Result{}, fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return Result{}, fmt.Errorf("images: %w", err)
	}
	return Result{Spec: s, Archive: final, Digest: digest}, nil
}
