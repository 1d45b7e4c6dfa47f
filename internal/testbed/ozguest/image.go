package ozguest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ImageEnv overrides the image directory.
const ImageEnv = "Z8R_OZGUEST_IMAGE"

// Image is a built guest image: the files hack/ozguest/build-image.sh writes.
type Image struct {
	Dir string
}

func (im Image) kernel() string { return filepath.Join(im.Dir, "vmlinuz") }
func (im Image) initrd() string { return filepath.Join(im.Dir, "initrd") }
func (im Image) root() string   { return filepath.Join(im.Dir, "root.qcow2") }

// FindImage returns the guest image for this checkout: $Z8R_OZGUEST_IMAGE, or
// the directory build-image.sh --print-dir names. It fails when the image has
// not been built.
func FindImage() (Image, error) {
	dir := os.Getenv(ImageEnv)
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return Image{}, err
		}
		script := filepath.Join(root, "hack", "ozguest", "build-image.sh")
		cmd := exec.Command("bash", script, "--print-dir")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return Image{}, fmt.Errorf("ozguest: %s --print-dir: %w: %s", script, err, stderr.String())
		}
		dir = strings.TrimSpace(string(out))
	}
	im := Image{Dir: dir}
	for _, f := range []string{filepath.Join(dir, "done"), im.kernel(), im.initrd(), im.root()} {
		if _, err := os.Stat(f); err != nil {
			return Image{}, fmt.Errorf("ozguest: OpenZFS guest image not built (%w): run make ozguest-image", err)
		}
	}
	return im, nil
}

// moduleRoot finds the directory of this module's go.mod, starting from the
// working directory (go test runs in the package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("ozguest: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/z8r-project/z8r\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("ozguest: module root (go.mod of github.com/z8r-project/z8r) not found")
		}
		dir = parent
	}
}

var guestexecBuild struct {
	once sync.Once
	path string
	err  error
}

// guestexecBinary builds the guest's exec server once per test binary into
// .cache/ozguest/guestexec/ and returns its path.
func guestexecBinary(t testing.TB) string {
	t.Helper()
	b := &guestexecBuild
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("ozguest: the go tool is needed to build guestexec: %w", err)
			return
		}
		dir := filepath.Join(root, ".cache", "ozguest", "guestexec")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = fmt.Errorf("ozguest: %w", err)
			return
		}
		tmp, err := os.CreateTemp(dir, "guestexec.*")
		if err != nil {
			b.err = fmt.Errorf("ozguest: %w", err)
			return
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", tmp.Name(), "./internal/testbed/ozguest/guestexec")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("ozguest: build guestexec: %w: %s", err, out)
			return
		}
		b.path = filepath.Join(dir, "guestexec")
		if err := os.Rename(tmp.Name(), b.path); err != nil {
			b.err = fmt.Errorf("ozguest: %w", err)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
