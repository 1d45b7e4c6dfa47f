package imagebuild

import "path"

// Source is the project's source repository, the value of the
// org.opencontainers.image.source label.
const Source = "https://github.com/z8r-project/z8r"

// License is the SPDX identifier of LICENSE, the value of the
// org.opencontainers.image.licenses label.
const License = "Apache-2.0"

// DefaultPath is the PATH both images set: the one of Debian's and
// distroless's base images, which the Dockerfile's stages inherit. The
// agent finds nsenter through it (--zfs-prefix "nsenter -t 1 -m --").
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec describes one image.
type Spec struct {
	// Name is the image's short name, and its archive's (Name.tar).
	Name string
	// Stage is the Dockerfile stage that builds the same image.
	Stage string
	// Ref is the image reference deploy/z8r.yaml uses.
	Ref string
	// Package is the main package of its binary, built to /<base name>.
	Package string
	// Entrypoint is the image's ENTRYPOINT.
	Entrypoint []string
	// User is the image's USER, uid:gid.
	User string
	// Description is the org.opencontainers.image.description label.
	Description string
	// HostFiles are executables copied from the build host at the same
	// path, with the shared libraries they load.
	HostFiles []string
}

// Binary is the path of the image's binary inside the image.
func (s Spec) Binary() string {
	return "/" + path.Base(s.Package)
}

// Labels are the image's labels for a version and a revision (the values
// of the Dockerfile's VERSION and REVISION build arguments).
func (s Spec) Labels(version, revision string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       s.Name,
		"org.opencontainers.image.description": s.Description,
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.licenses":    License,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    revision,
	}
}

// Controller is the z8r-controller image: the static binary only, run as
// the distroless "nonroot" user. It needs no CA bundle (it trusts the
// cluster CA of its service account and pins agents' SSH host keys), no
// zone data (internal/schedule embeds time/tzdata), no shell and no
// writable file.
var Controller = Spec{
	Name:        "z8r-controller",
	Stage:       "controller",
	Ref:         "ghcr.io/z8r-project/z8r-controller:latest",
	Package:     "./cmd/z8r-controller",
	Entrypoint:  []string{"/z8r-controller"},
	User:        "65532:65532",
	Description: "z8r controller: ZFS snapshot and replication reconcilers",
}

// Agent is the z8r-agent image: the static binary and nsenter, which the
// DaemonSet's --zfs-prefix uses to run the host's zfs in the host's mount
// namespace. A Go process cannot enter a mount namespace itself once it
// has several threads (setns(CLONE_NEWNS) fails), and the binary is built
// without cgo, so a separate single-threaded nsenter does it. It runs as
// root: entering the host's namespaces needs it.
var Agent = Spec{
	Name:        "z8r-agent",
	Stage:       "agent",
	Ref:         "ghcr.io/z8r-project/z8r-agent:latest",
	Package:     "./cmd/z8r-agent",
	Entrypoint:  []string{"/z8r-agent"},
	User:        "0:0",
	Description: "z8r node agent: runs the host's zfs for the controller over SSH",
	HostFiles:   []string{"/usr/bin/nsenter"},
}

// Specs are the images make images builds.
func Specs() []Spec {
	return []Spec{Controller, Agent}
}
