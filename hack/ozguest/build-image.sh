#!/usr/bin/env bash
# build-image.sh builds the OpenZFS test guest (kernel, small initrd, compressed
# qcow2 root with zfs-dkms/zfsutils-linux from bookworm-backports) into
# .cache/ozguest/<hash of inputs>/ and prints that directory.
#
# Usage:
#   hack/ozguest/build-image.sh               build unless already built
#   hack/ozguest/build-image.sh --print-dir   print the image directory only
#
# Inputs are this script and hack/ozguest/guest/*; changing any of them builds
# a new image in a new directory. The guest's exec server is not part of the
# image: tests build it fresh and hand it to the guest through a 9p share.
#
# Host needs: root, Debian; the packages below are installed with apt-get when
# missing. ZFS packages are only ever installed inside the chroot, never on the
# host (they conflict with zfs-fuse).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${Z8R_CACHE_DIR:-$repo/.cache}/ozguest

suite=bookworm
# What goes into the guest root besides debootstrap's minbase.
base_pkgs=kmod,udev,procps,iproute2,util-linux,ca-certificates
kernel_pkgs="linux-image-amd64 linux-headers-amd64"
zfs_pkgs="zfs-dkms zfsutils-linux"
# Modules the initrd loads to mount the root file system; everything else is
# loaded from the root by the guest's init.
initrd_modules="virtio_pci virtio_blk ext4"

inputs_hash() {
	(cd "$here" && LC_ALL=C sha256sum build-image.sh guest/*) | sha256sum | cut -c1-16
}

out=$cache/$(inputs_hash)
if [[ ${1:-} == --print-dir ]]; then
	echo "$out"
	exit 0
fi
if [[ -f $out/done ]]; then
	echo "ozguest: image is up to date: $out" >&2
	echo "$out"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "ozguest: must run as root (debootstrap, chroot, mounts)" >&2
	exit 1
fi

log() { echo "ozguest: [$(date +%T)] $*" >&2; }
# The trap may run while a step's output goes to its log file: it reports on
# the script's own stderr, kept as fd 3.
exec 3>&2
start=$(date +%s)

# --- host packages -----------------------------------------------------------
need=()
for p in debootstrap qemu-utils qemu-system-x86 busybox-static cpio e2fsprogs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
	log "installing host packages: ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# --- mirror: the Debian archive the host's apt uses ---------------------------
# First URI that serves "$suite" (not -security/-updates) in the host's sources.
mirror=$(
	{
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk -v s="$suite" '$1=="deb" { i=2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1)==s) print $i }'
		for f in /etc/apt/sources.list.d/*.sources; do
			[[ -f $f ]] || continue
			# deb822: one stanza per paragraph.
			awk -v s="$suite" 'BEGIN{RS=""; FS="\n"} {
				uris=""; ok=0; deb=0
				for (i=1;i<=NF;i++) {
					if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[ \t]*/,"",uris) }
					if ($i ~ /^Suites:/) { n=split($i,a,/[ \t]+/); for (j=2;j<=n;j++) if (a[j]==s) ok=1 }
					if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb=1
				}
				if (ok && deb && uris!="") { split(uris,u,/[ \t]+/); print u[1] }
			}' "$f"
		done
	} | head -n1
)
if [[ -z $mirror ]]; then
	echo "ozguest: no apt source for '$suite' found in /etc/apt/sources.list*" >&2
	exit 1
fi
mirror=${mirror%/}
log "mirror $mirror"

# --- work area, always cleaned up ---------------------------------------------
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
rootfs=$work/rootfs
umount_under() {
	# Unmount everything below $1, deepest first.
	local m
	awk -v p="$1/" 'index($2, p)==1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" || true
	done
}
# Long steps run in the background and are waited for, so a signal reaches
# the trap at once (bash defers traps while a foreground child runs, and apt
# ignores SIGINT). The trap kills them and anything running in the chroot.
bg=
background() {
	"$@" &
	bg=$!
	wait "$bg"
}
kill_chroot_procs() {
	local p r
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[[ $r == "$rootfs" || $r == "$rootfs"/* ]] && kill -KILL "${p#/proc/}" 2>/dev/null
	done
	return 0
}
cleanup() {
	local rc=$?
	# Cleanup never changes the outcome: a built image stays built.
	set +e
	trap - INT TERM
	[[ -n $bg ]] && kill -KILL "$bg" 2>/dev/null
	kill_chroot_procs
	sleep 0.2
	umount_under "$work"
	if awk -v p="$work/" 'index($2, p)==1 {found=1} END{exit !found}' /proc/mounts; then
		echo "ozguest: mounts remain under $work; not removing it" >&3
	else
		# Processes just killed in the chroot (gpg-agent, dkms) may still be
		# writing for a moment: retry.
		local i
		for i in 1 2 3 4 5 6 7 8 9 10; do
			rm -rf --one-file-system "$work" 2>/dev/null && break
			sleep 0.5
		done
		[[ -e $work ]] && echo "ozguest: could not remove $work" >&3
	fi
	((rc == 0)) || log "failed (exit $rc)" 2>&3
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Caches that survive builds and never enter the image.
debs=$cache/debootstrap-debs
archives=$cache/apt-archives
mkdir -p "$debs" "$archives/partial"

# --- root file system ---------------------------------------------------------
log "debootstrap $suite"
background debootstrap --variant=minbase --include="$base_pkgs" --cache-dir="$debs" \
	"$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}

mount -t proc proc "$rootfs/proc"
mount -t sysfs sysfs "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
mount -t devpts devpts "$rootfs/dev/pts" -o newinstance
mount --bind "$archives" "$rootfs/var/cache/apt/archives"

cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $mirror $suite main contrib
deb $mirror $suite-updates main contrib
deb $mirror $suite-backports main contrib
SRC
cat >"$rootfs/etc/apt/apt.conf.d/90ozguest" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Binary::apt::APT::Keep-Downloaded-Packages "true";
APT::Keep-Downloaded-Packages "true";
CONF
rm -f "$rootfs/etc/apt/apt.conf.d/docker-clean"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90ozguest" <<'CONF'
force-unsafe-io
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF
# Nothing starts services in the chroot, and no initramfs is generated: the
# guest boots with the small initrd built below.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod +x "$rootfs/usr/sbin/policy-rc.d"
chroot "$rootfs" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.real \
	--add /usr/sbin/update-initramfs >/dev/null
printf '#!/bin/sh\nexit 0\n' >"$rootfs/usr/sbin/update-initramfs"
chmod +x "$rootfs/usr/sbin/update-initramfs"
echo ozguest >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ozguest\n' >"$rootfs/etc/hosts"
: >"$rootfs/etc/fstab"

in_chroot() {
	background chroot "$rootfs" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive \
		"$@"
}

log "apt: kernel and headers"
in_chroot apt-get update -qq >&2
in_chroot apt-get install -y -qq $kernel_pkgs >"$work/apt-kernel.log" 2>&1 || {
	tail -n 40 "$work/apt-kernel.log" >&2
	exit 1
}
kver=$(ls "$rootfs/lib/modules" | sort -V | tail -n1)
log "kernel $kver"

log "apt: $zfs_pkgs from $suite-backports (dkms builds the modules)"
in_chroot apt-get install -y -qq -t "$suite-backports" $zfs_pkgs >"$work/apt-zfs.log" 2>&1 || {
	tail -n 60 "$work/apt-zfs.log" >&2
	exit 1
}
if ! find "$rootfs/lib/modules/$kver" -name 'zfs.ko*' | grep -q .; then
	log "dkms did not build for $kver; building explicitly"
	zver=$(in_chroot dpkg-query -W -f='${Version}' zfs-dkms | sed 's/-.*//')
	in_chroot dkms install "zfs/$zver" -k "$kver" >&2
fi
find "$rootfs/lib/modules/$kver" -name 'zfs.ko*' | grep -q . || {
	log "zfs.ko missing after dkms"
	exit 1
}
in_chroot depmod "$kver"
zfs_version=$(in_chroot dpkg-query -W -f='${Version}' zfsutils-linux)
log "zfsutils-linux $zfs_version"

# --- initrd -------------------------------------------------------------------
log "initrd"
initrd=$work/initrd
mkdir -p "$initrd"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$initrd/bin/busybox"
install -m 0755 "$here/guest/initrd-init" "$initrd/init"
# modprobe prints the insmod order with dependencies first.
in_chroot modprobe -a -S "$kver" --show-depends $initrd_modules |
	awk '$1=="insmod" {print $2}' | awk '!seen[$0]++' >"$work/initrd-modules"
: >"$initrd/lib/modules/load"
while read -r ko; do
	name=$(basename "$ko")
	case $name in
	*.ko.xz) xz -dc "$rootfs$ko" >"$initrd/lib/modules/${name%.xz}"; name=${name%.xz} ;;
	*.ko.zst) zstd -qdc "$rootfs$ko" >"$initrd/lib/modules/${name%.zst}"; name=${name%.zst} ;;
	*) cp "$rootfs$ko" "$initrd/lib/modules/$name" ;;
	esac
	echo "$name" >>"$initrd/lib/modules/load"
done <"$work/initrd-modules"
mkdir -p "$work/out"
(cd "$initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --owner 0:0) | gzip -1 >"$work/out/initrd"
cp "$rootfs/boot/vmlinuz-$kver" "$work/out/vmlinuz"

# --- guest files and slimming -------------------------------------------------
install -m 0755 "$here/guest/ozinit" "$rootfs/usr/local/sbin/ozinit"
umount_under "$rootfs"
rm -rf "$rootfs"/usr/src/* "$rootfs"/var/lib/dkms/*/*/build "$rootfs"/var/lib/apt/lists/* \
	"$rootfs"/var/cache/apt/*.bin "$rootfs"/boot/initrd* \
	"$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
ln -sf /proc/self/mounts "$rootfs/etc/mtab"

# --- root image -----------------------------------------------------------------
log "root image"
used_mb=$(du -sm "$rootfs" | cut -f1)
size_mb=$((used_mb + used_mb / 4 + 256))
truncate -s "${size_mb}M" "$work/root.img"
mkfs.ext4 -q -F -L ozroot -m 0 -d "$rootfs" "$work/root.img"
qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/root.img" "$work/out/root.qcow2"
rm -f "$work/root.img"

cat >"$work/out/manifest.txt" <<MAN
suite=$suite
kernel=$kver
zfsutils-linux=$zfs_version
rootfs_mb=$used_mb
built=$(date -u +%FT%TZ)
build_seconds=$(($(date +%s) - start))
MAN
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
# Older images (other input hashes) are of no further use.
for d in "$cache"/*; do
	[[ -d $d && $d != "$out" && ${d##*/} =~ ^[0-9a-f]{16}$ ]] && rm -rf "$d"
done
log "done in $(($(date +%s) - start)) s: $out"
ls -la "$out" >&2
echo "$out"
