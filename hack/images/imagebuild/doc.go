// Package imagebuild builds z8r's container images without Docker, a
// registry or a base image: the static z8r binaries, plus for the agent the
// host's nsenter with exactly the shared libraries it loads, as layers on
// an empty base, written as image archives that `ctr -n k8s.io images
// import` and `docker load` accept. hack/images is its command line (make
// images); docs/images.md explains the images.
//
// Contract:
//   - Specs lists the images; each Spec says what the Dockerfile's stage
//     Spec.Stage declares (entrypoint, user, labels, binary). The tests
//     keep the two equivalent, and keep Spec.Ref equal to the image
//     deploy/z8r.yaml names.
//   - Build compiles the binaries with GoBuildEnv and GoBuildFlags (static:
//     CGO_ENABLED=0, -trimpath, no VCS stamp, stripped) and fails if one is
//     not a static ELF. The same sources, the same Go toolchain, the same
//     host files, version, revision and epoch give byte-identical archives,
//     so identical digests: every tar entry (in a layer and in the archive)
//     is sorted, owned by 0:0, dated at the epoch, with a fixed mode (0755
//     for folders, executables and shared objects, 0644 otherwise, 0777
//     for symbolic links); the config and history carry the epoch too.
//   - Host files (Spec.HostFiles, the agent's /usr/bin/nsenter) are copied
//     from HostRoot at the same paths with every shared library ldd lists
//     and the dynamic loader, each through the same chain of symbolic links
//     as on the host (Debian 12's /lib -> usr/lib, for instance), so the
//     loader finds them where the host's does. A library ldd cannot find
//     fails the build.
//   - An archive holds an OCI image layout (oci-layout, index.json,
//     blobs/sha256/...) and a Docker manifest.json naming the same blobs,
//     as `docker save` writes since Docker 25: the index entry carries the
//     image name (io.containerd.image.name) and tag
//     (org.opencontainers.image.ref.name), manifest.json the RepoTags.
//     Manifests and configs use the OCI media types; layers are gzipped.
//   - Build writes nothing outside Options.OutDir except the Go build
//     cache and a temporary folder for the binaries, removed before it
//     returns; an archive appears under its final name only when complete.
//
// Tests: spec_test.go (the Dockerfile's stages, build flags and labels
// against Specs; deploy/z8r.yaml's images and --zfs-prefix), layer_test.go
// and hostfiles_test.go (pure), build_test.go (both images built twice:
// identical digests and bytes; read back as an OCI layout and as a docker
// archive; static entrypoints; nsenter's loader and libraries present and
// nothing else), nsenter_platform_test.go (tag platform: the unpacked agent
// image runs the DaemonSet's --zfs-prefix against a zfs-fuse node).
package imagebuild
