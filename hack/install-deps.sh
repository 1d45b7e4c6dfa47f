#!/usr/bin/env bash
# install-deps.sh: install the Debian packages z8r's tests and demo need,
# only those missing. Never installs ZFS kernel packages (zfs-dkms,
# zfsutils-linux): they conflict with zfs-fuse; OpenZFS runs in a qemu guest.
# jq: the kubectl plugin test pipes `kubectl z8r status -o json` through it.
# containerd, runc, containernetworking-plugins: the container runtime and the
# bridge/host-local CNI plugins of the kubelet nodes in internal/testbed/kubenode
# (tag pods; containerd is started by hand, the package starts no daemon here).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps: must run as root" >&2; exit 1; }
want=(zfs-fuse qemu-system-x86 qemu-utils seabios ipxe-qemu debootstrap busybox-static cpio iproute2 util-linux procps e2fsprogs jq containerd runc containernetworking-plugins)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
