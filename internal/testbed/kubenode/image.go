package kubenode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
)

// PauseRef is the reference of the test bed's pause image, containerd's
// sandbox_image on every node.
const PauseRef = "localhost/z8r-testbed/pause:v1"

// PauseSpec describes the pause image: the static pause program only, run
// as 65535 like Kubernetes' own pause image.
var PauseSpec = imagebuild.Spec{
	Name:        "z8r-testbed-pause",
	Ref:         PauseRef,
	Package:     "./internal/testbed/kubenode/pause",
	Entrypoint:  []string{"/pause"},
	User:        "65535:65535",
	Description: "z8r test bed: pod sandbox and node init",
}

// Images are the image archives and the pause binary BuildImages made.
type Images struct {
	// PauseBinary is the static pause program, each node's init.
	PauseBinary string
	// Archives maps an image reference to its archive.
	Archives map[string]string
}

// BuildImages builds, into dir, the pause program and the archives of the
// pause image and of extra (imagebuild.Agent, say). root is the module root.
func BuildImages(ctx context.Context, root, dir string, log logr.Logger, extra ...imagebuild.Spec) (*Images, error) {
	bin := filepath.Join(dir, "pause")
	argv := append([]string{"go", "build"}, imagebuild.GoBuildFlags()...)
	argv = append(argv, "-o", bin, PauseSpec.Package)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), imagebuild.GoBuildEnv(runtime.GOARCH)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kubenode: %s: %w: %s", strings.Join(argv, " "), err, out)
	}
	results, err := imagebuild.Build(ctx, imagebuild.Options{
		ModuleRoot: root,
		OutDir:     dir,
		Version:    "testbed",
		Revision:   "testbed",
		Epoch:      time.Unix(0, 0).UTC(),
		Specs:      append([]imagebuild.Spec{PauseSpec}, extra...),
		Log:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("kubenode: build images: %w", err)
	}
	imgs := &Images{PauseBinary: bin, Archives: map[string]string{}}
	for _, r := range results {
		imgs.Archives[r.Spec.Ref] = r.Archive
	}
	return imgs, nil
}
