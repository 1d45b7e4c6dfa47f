//go:build platform

package imagebuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

// unpackRootfs writes the image's flattened file system into a new folder,
// as a container runtime would, plus the /proc mount point runtimes add.
func unpackRootfs(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	untar(t, rc, dir, true)
	if err := os.Mkdir(filepath.Join(dir, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inRootfs runs argv with root as its root folder, in a private mount
// namespace with /proc mounted (as in a hostPID container), with only the
// image's PATH in its environment.
func inRootfs(ctx context.Context, root string, argv ...string) (string, error) {
	full := append([]string{"unshare", "--mount", "--propagation", "private", "--root=" + root, "--mount-proc"}, argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = []string{"PATH=" + DefaultPath}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestAgentImage_NsenterRunsTheNodesZFS: inside the agent image's file
// system, nsenter and the agent's --zfs-prefix reach a (simulated) node's
// zfs: nsenter -t PID -m -- zfs list, with PID a process of the node as PID
// 1 is on a real node; and the static agent binary starts there.
func TestAgentImage_NsenterRunsTheNodesZFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (chroot and mount namespaces); run as root like the other platform tests")
	}
	node := zfsnodes.Start(t, zfsnodes.Options{}, "imgnode")[0]
	rs := build(t, Agent)
	tag, err := name.NewTag(Agent.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(rs[0].Archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	root := unpackRootfs(t, img)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	prefix := strings.Fields(strings.ReplaceAll(zfsPrefix(t), " 1 ", " "+strconv.Itoa(node.PID)+" "))
	out, err := inRootfs(ctx, root, append(prefix, "zfs", "list", "-H", "-o", "name")...)
	if err != nil {
		t.Fatalf("%v in the agent image: %v: %s", prefix, err, out)
	}
	if !slices.Contains(strings.Fields(out), "tank") {
		t.Errorf("zfs list through the image's nsenter: %q, want the node's pool tank", out)
	}
	// The image itself has no zfs: the same command without nsenter fails.
	if out, err := inRootfs(ctx, root, "zfs", "list"); err == nil {
		t.Errorf("zfs ran inside the image without nsenter: %s", out)
	}
	out, err = inRootfs(ctx, root, Agent.Entrypoint[0], "--help")
	if !strings.Contains(out, "zfs-prefix") {
		t.Errorf("%s --help in the image: %v: %s", Agent.Entrypoint[0], err, out)
	}
}

// zfsPrefix is the agent DaemonSet's --zfs-prefix.
func zfsPrefix(t *testing.T) string {
	t.Helper()
	for _, a := range daemonSet(t).Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--zfs-prefix="); ok {
			return v
		}
	}
	t.Fatal("the agent DaemonSet has no --zfs-prefix")
	return ""
}
