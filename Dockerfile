# z8r's images, all built from this repository:
#
#   docker build --target controller -t ghcr.io/z8r-project/z8r-controller:TAG .
#   docker build --target agent      -t ghcr.io/z8r-project/z8r-agent:TAG .
#   docker build --target plugin --output bin/ .     # bin/kubectl-z8r
#
# Add --build-arg VERSION=$(git describe --tags --always --dirty)
# --build-arg REVISION=$(git rev-parse HEAD) for the version labels.
# Without Docker, `make images` builds the same two images as archives
# (hack/images, docs/images.md); hack/images/imagebuild's tests keep the two
# equivalent: same binaries and build flags, entrypoints, users and labels.
#
# Without --target, docker builds the last stage, the controller.
# The build stage compiles every binary in cmd/ statically (CGO_ENABLED=0), so
# the runtime stages need no libc. internal/manifests/dockerfile_test.go checks
# that every path, binary and package named here exists.

ARG GO_VERSION=1.26
ARG VERSION=dev
ARG REVISION=unknown

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY zfsexec/ zfsexec/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ ./cmd/...

# The kubectl plugin, for `docker build --target plugin --output bin/ .`.
FROM scratch AS plugin
COPY --from=build /out/kubectl-z8r /kubectl-z8r

# The agent runs the host's zfs in the host's mount namespace through
# nsenter (util-linux, part of every Debian image), started with
# --zfs-prefix "nsenter -t 1 -m --" by config/agent/daemonset.yaml, so the
# image carries no zfs userland that could disagree with the host's kernel
# module. It runs as root: entering the host's namespaces needs it.
# `make images` builds this image on an empty base instead: the same binary
# and bookworm's /usr/bin/nsenter with exactly the shared libraries it loads,
# copied from a Debian 12 build host.
FROM debian:bookworm-slim AS agent
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="z8r-agent" \
      org.opencontainers.image.description="z8r node agent: runs the host's zfs for the controller over SSH" \
      org.opencontainers.image.source="https://github.com/z8r-project/z8r" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/z8r-agent /z8r-agent
USER 0:0
ENTRYPOINT ["/z8r-agent"]

# The controller talks to the API server and to agents over SSH: no shell, no
# package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot AS controller
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="z8r-controller" \
      org.opencontainers.image.description="z8r controller: ZFS snapshot and replication reconcilers" \
      org.opencontainers.image.source="https://github.com/z8r-project/z8r" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/z8r-controller /z8r-controller
USER 65532:65532
ENTRYPOINT ["/z8r-controller"]
