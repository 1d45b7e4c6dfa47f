// Command images is `make images`: it builds z8r's controller and agent
// images from this repository without Docker, a registry or a base image,
// and writes them as image archives (OCI layout plus docker manifest.json)
// that `ctr -n k8s.io images import` and `docker load` accept:
//
//	go run ./hack/images [-out .cache/images] [-version V] [-revision R]
//
// It prints each image's reference and digest and writes them to
// OUT/digests.txt. The same tree, Go toolchain and build host give the
// same digests; see docs/images.md and package imagebuild.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
)

func main() {
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	if err := run(log); err != nil {
		log.Error(err, "make images failed")
		os.Exit(1)
	}
}

func run(log logr.Logger) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	out := flag.String("out", filepath.Join(root, ".cache", "images"), "folder for the image archives")
	version := flag.String("version", "", "org.opencontainers.image.version label (default: git describe --tags --always --dirty, or dev)")
	revision := flag.String("revision", "", "org.opencontainers.image.revision label (default: git rev-parse HEAD, or unknown)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *version == "" {
		*version = gitOr(ctx, root, "dev", "describe", "--tags", "--always", "--dirty")
	}
	if *revision == "" {
		*revision = gitOr(ctx, root, "unknown", "rev-parse", "HEAD")
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	results, err := imagebuild.Build(ctx, imagebuild.Options{
		ModuleRoot: root,
		OutDir:     *out,
		Version:    *version,
		Revision:   *revision,
		Epoch:      epoch,
		Log:        log,
	})
	if err != nil {
		return err
	}
	var digests strings.Builder
	for _, r := range results {
		rel, err := filepath.Rel(*out, r.Archive)
		if err != nil {
			return err
		}
		fmt.Fprintf(&digests, "%s@%s  %s\n", r.Spec.Ref, r.Digest, rel)
	}
	if err := os.WriteFile(filepath.Join(*out, "digests.txt"), []byte(digests.String()), 0o644); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	fmt.Print(digests.String())
	fmt.Printf("import into a node's containerd: ctr -n k8s.io images import %s\n", filepath.Join(*out, "<name>.tar"))
	return nil
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH (seconds since 1970), or 1970
// itself: the date of every file, the config and the history.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// gitOr runs git with args in root and returns its trimmed output, or def
// when git fails (no git, or not a checkout).
func gitOr(ctx context.Context, root, def string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = root
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return def
	}
	if s := strings.TrimSpace(stdout.String()); s != "" {
		return s
	}
	return def
}

// moduleRoot is the folder of the main module's go.mod, as the go
// command finds it from the working folder.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("images: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("images: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}
