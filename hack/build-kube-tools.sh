#!/usr/bin/env bash
# build-kube-tools.sh builds the control plane that the `kube` tests run against:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl
# (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and snapshot-controller
# (github.com/kubernetes-csi/external-snapshotter/v8), all from the Go module proxy
# through the tools module in hack/tools/ (prebuilt binaries cannot be downloaded here).
#
# Output: .cache/kube-tools/<key>/bin/, where <key> hashes hack/tools/go.mod, go.sum,
# this script and the Go version, and .cache/kube-tools/current -> <key>. The build is
# skipped when that folder exists. The bin folder is printed as the last line of stdout;
# everything else goes to stderr, so `bin=$(hack/build-kube-tools.sh)` works.
#
#   hack/build-kube-tools.sh              build if needed, print the bin folder
#   hack/build-kube-tools.sh --print-dir  print the bin folder; exit 1 if not built
#
# A build from scratch takes about 10 minutes and 2.7 GB of memory on 2 cores (585 s
# measured while a CI run shared the machine); the binaries take about 540 MB.
set -euo pipefail

KUBE_VERSION=v1.37.2
SNAPSHOTTER_VERSION=v8.7.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/hack/tools
cache=$root/.cache/kube-tools

key=$( { cat "$tools/go.mod" "$tools/go.sum" "${BASH_SOURCE[0]}"; go env GOVERSION; } | sha256sum | cut -c1-16)
out=$cache/$key
bin=$out/bin

built() {
	local b
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd snapshot-controller; do
		[[ -x $bin/$b ]] || return 1
	done
}

point_current() {
	ln -sfn "$key" "$cache/current.tmp"
	mv -T "$cache/current.tmp" "$cache/current"
}

case ${1:-} in
--print-dir)
	echo "$bin"
	built
	exit
	;;
"") ;;
*)
	echo "usage: $0 [--print-dir]" >&2
	exit 2
	;;
esac

mkdir -p "$cache"
# One build at a time: parallel test packages or make jobs wait for the first one.
exec 9>"$cache/.lock"
flock 9

if built; then
	point_current
	echo "kube-tools: up to date in $out" >&2
	echo "$bin"
	exit 0
fi

major=${KUBE_VERSION#v}
major=${major%%.*}
minor=${KUBE_VERSION#v*.}
minor=${minor%%.*}
ldflags="-s -w -X main.version=$SNAPSHOTTER_VERSION"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
	ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"

echo "kube-tools: building into $out (about 10 minutes from scratch)" >&2
start=$SECONDS
# -X main.version only lands in snapshot-controller and the version flags only in the
# Kubernetes binaries: the linker ignores -X for packages that a binary does not contain.
(cd "$tools" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubelet \
	k8s.io/kubernetes/cmd/kubectl \
	go.etcd.io/etcd/server/v3 \
	github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller)
# The etcd server module's root package is its main package; go build names it "server".
mv "$tmp/bin/server" "$tmp/bin/etcd"

{
	echo "kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl: k8s.io/kubernetes $KUBE_VERSION"
	echo "etcd: $(cd "$tools" && GOWORK=off go list -m -f '{{.Path}} {{.Version}}' go.etcd.io/etcd/server/v3)"
	echo "snapshot-controller: github.com/kubernetes-csi/external-snapshotter/v8 $SNAPSHOTTER_VERSION"
	echo "go: $(go env GOVERSION)"
	echo "build seconds: $((SECONDS - start))"
} >"$tmp/VERSIONS"

rm -rf "$out"
mv -T "$tmp" "$out"
trap - EXIT
point_current
# Earlier builds are 540 MB each and nothing uses them once current has moved on.
for old in "$cache"/*/; do
	old=${old%/}
	[[ -L $old || ${old##*/} == "$key" ]] || rm -rf "$old"
done
echo "kube-tools: built in $((SECONDS - start))s" >&2
echo "$bin"
