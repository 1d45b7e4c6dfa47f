package kubenode

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// The upstream snapshot-controller as the test bed runs it in a pod.
const (
	// SnapshotControllerDir is the kustomization, relative to the module
	// root, that installs it: ServiceAccount, RBAC and a Deployment in
	// kube-system with leader election on.
	SnapshotControllerDir = "internal/testbed/kubenode/snapshotcontroller"
	// SnapshotControllerRef is the image its Deployment names.
	SnapshotControllerRef = "localhost/z8r-testbed/snapshot-controller:v8.7.0"
	// SnapshotControllerNamespace, SnapshotControllerName and
	// SnapshotControllerSelector find its Deployment and pods.
	SnapshotControllerNamespace = "kube-system"
	SnapshotControllerName      = "snapshot-controller"
	SnapshotControllerSelector  = "app.kubernetes.io/name=snapshot-controller"
	// SnapshotControllerLease is the Lease it takes in its namespace when
	// leader election is on; the holder is the pod's name.
	SnapshotControllerLease = "snapshot-controller-leader"
)

// SnapshotControllerSpec describes the snapshot-controller image: the
// static binary make kube-tools built from
// github.com/kubernetes-csi/external-snapshotter/v8 (cmd/snapshot-controller),
// alone on an empty base, run as the distroless "nonroot" user as
// upstream's image does.
var SnapshotControllerSpec = imagebuild.Spec{
	Name:        "z8r-testbed-snapshot-controller",
	Ref:         SnapshotControllerRef,
	Package:     "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller",
	Entrypoint:  []string{"/snapshot-controller"},
	User:        "65532:65532",
	Description: "z8r test bed: the upstream snapshot-controller (external-snapshotter v8.7.0), built by make kube-tools",
}

// BuildSnapshotControllerImage writes the snapshot-controller image's
// archive into dir and returns its path. The binary is taken from
// kubeenv's binary folder (make kube-tools, or Z8R_KUBE_TOOLS) and must be
// a static ELF for this machine; nothing is downloaded or compiled.
func BuildSnapshotControllerImage(dir string) (string, error) {
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	bin := filepath.Join(kubeenv.BinDir(root), kubeenv.BinSnapshotController)
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w (run make kube-tools)", err)
	}
	machine, err := imagebuild.ELFMachine(runtime.GOARCH)
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	if err := imagebuild.CheckStaticELF(b, machine); err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %s: %w", bin, err)
	}
	epoch := time.Unix(0, 0).UTC()
	img, err := imagebuild.Image(SnapshotControllerSpec, bin, nil, runtime.GOARCH, "v8.7.0", "testbed", epoch)
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	ref, err := name.NewTag(SnapshotControllerRef, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	path := filepath.Join(dir, SnapshotControllerSpec.Name+".tar")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	if err := imagebuild.WriteArchive(f, img, ref, epoch); err != nil {
		f.Close()
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("kubenode: snapshot-controller image: %w", err)
	}
	return path, nil
}
