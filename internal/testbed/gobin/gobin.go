// Package gobin builds the project's commands (cmd/<name>) for tests that
// run them as real processes: each once per test process, into a temporary
// folder, from the module the test runs in. A build failure fails the test
// with the compiler's output.
package gobin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/z8r-project/z8r/internal/testbed/tb"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
)

// Build builds ./cmd/<name> once per test process and returns the path of
// the binary.
func Build(t tb.TB, name string) string {
	t.Helper()
	mu.Lock()
	b := builds[name]
	if b == nil {
		b = &build{}
		builds[name] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(name) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func goBuild(name string) (string, error) {
	root, err := zfsnodes.ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", name+"-bin")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", path, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w: %s", name, err, out)
	}
	return path, nil
}
