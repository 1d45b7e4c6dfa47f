#!/usr/bin/env bash
# zfsnode.sh: simulated ZFS nodes for tests and the demo.
#
# A node is one zfs-fuse daemon in its own private mount namespace (and, when
# asked, inside an existing network namespace), with its own socket, lock and
# pool cache, so several nodes can each own a pool with the same name.
#
#   zfsnode.sh up DIR [--netns NS] [--arc MB]   start a node whose state lives in DIR,
#                                               in the background; prints its PID
#   zfsnode.sh daemon DIR [--netns NS] [--arc MB]
#                                               the same in the foreground: execs into
#                                               the daemon (for callers that own it)
#   zfsnode.sh wait DIR PID                     wait for the daemon's socket
#   zfsnode.sh pin DIR                          keep the node's mount namespace in DIR/ns-mnt
#   zfsnode.sh pool DIR NAME [SIZE]             create a file-backed pool (default 512M)
#   zfsnode.sh exec DIR -- ARGV...              run ARGV in the node's namespaces
#   zfsnode.sh down DIR                         destroy pools, stop the daemon, remove DIR
#   zfsnode.sh sweep ROOT                       take down every node under ROOT whose
#                                               owner process (DIR/owner) has died
#
# DIR/pid holds the daemon's PID; DIR/netns the network namespace, if any.
# Pools are mounted under DIR/mnt/<pool> inside the node's mount namespace;
# from outside, read them through /proc/<pid>/root/DIR/mnt/<pool>.
set -euo pipefail

die() { echo "zfsnode: $*" >&2; exit 1; }

node_pid() { cat "$1/pid" 2>/dev/null || die "$1: no pid file"; }

# node_nsenter DIR ARGV...: run ARGV in the node's namespaces. The mount
# namespace is entered through DIR/ns-mnt, a bind mount of the daemon's
# namespace file, so it outlives the daemon (a stopped daemon then gives
# ZFS's own "daemon not running" error instead of an nsenter failure).
node_nsenter() {
	local dir=$1; shift
	[ -f "$dir/ns-mnt" ] || die "$dir: node not pinned (no ns-mnt)"
	local ns=(--mount="$dir/ns-mnt")
	local netns; netns=$(cat "$dir/netns" 2>/dev/null || true)
	[ -n "$netns" ] && ns+=(--net="/run/netns/$netns")
	exec nsenter "${ns[@]}" -- "$@"
}

# cmd_pin DIR: bind-mount the daemon's mount namespace onto DIR/ns-mnt.
cmd_pin() {
	local dir=$1 pid
	pid=$(node_pid "$dir")
	touch "$dir/ns-mnt"
	mount --bind "/proc/$pid/ns/mnt" "$dir/ns-mnt"
}

# alive PID: the process exists and is not a zombie (PID 1 may not reap).
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

parse_node_flags() {
	netns="" arc=64
	while [ $# -gt 0 ]; do
		case $1 in
		--netns) netns=$2; shift 2 ;;
		--arc) arc=$2; shift 2 ;;
		*) die "unknown flag $1" ;;
		esac
	done
}

# cmd_daemon prepares DIR and execs into the node's daemon (the process
# keeps this PID through every exec), so a caller that starts it owns it.
cmd_daemon() {
	local dir=$1; shift
	parse_node_flags "$@"
	[ -x /usr/sbin/zfs-fuse ] || die "zfs-fuse is not installed (apt-get install -y zfs-fuse)"
	mkdir -p "$dir"/{run,lock,lib,mnt,disks}
	dir=$(cd "$dir" && pwd)
	# The bind-mount targets must exist in the parent namespace.
	mkdir -p /run/zfs /run/lock/zfs /var/lib/zfs
	[ -f "$dir/owner" ] || printf '%s\n' "${Z8R_OWNER_PID:-$PPID}" >"$dir/owner"
	printf '%s\n' "$netns" >"$dir/netns"
	echo $$ >"$dir/pid"
	local inner
	# shellcheck disable=SC2016
	inner='
		set -e
		awk '"'"'$3=="fuse.zfs"{print $2}'"'"' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
		mount --bind "$1/run" /run/zfs
		mount --bind "$1/lock" /run/lock/zfs
		mount --bind "$1/lib" /var/lib/zfs
		exec /usr/sbin/zfs-fuse --no-daemon --no-kstat-mount -m "$2" >"$1/daemon.log" 2>&1
	'
	local launch=(unshare -m --propagation private -- sh -c "$inner" zfsnode "$dir" "$arc")
	if [ -n "$netns" ]; then
		launch=(ip netns exec "$netns" "${launch[@]}")
	fi
	exec "${launch[@]}"
}

wait_socket() {
	local dir=$1 pid=$2 i
	for i in $(seq 1 200); do
		[ -S "$dir/run/zfs_socket" ] && return 0
		alive "$pid" || die "zfs-fuse exited; see $dir/daemon.log"
		sleep 0.05
	done
	die "no socket at $dir/run/zfs_socket after 10s"
}

cmd_up() {
	local dir=$1; shift
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	printf '%s\n' "${Z8R_OWNER_PID:-$PPID}" >"$dir/owner"
	setsid "$0" daemon "$dir" "$@" </dev/null >/dev/null 2>&1 &
	local pid=$!
	wait_socket "$dir" "$pid"
	cmd_pin "$dir"
	echo "$pid"
}

cmd_pool() {
	local dir=$1 name=$2 size=${3:-512M}
	dir=$(cd "$dir" && pwd)
	truncate -s "$size" "$dir/disks/$name.img"
	(node_nsenter "$dir" zpool create -m "$dir/mnt/$name" "$name" "$dir/disks/$name.img")
}

cmd_down() {
	local dir=$1
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	local pid; pid=$(cat "$dir/pid" 2>/dev/null || true)
	if [ -n "$pid" ] && alive "$pid" && [ -f "$dir/ns-mnt" ]; then
		(node_nsenter "$dir" zfs umount -a) >/dev/null 2>&1 || true
		local img pool i
		for img in "$dir"/disks/*.img; do
			[ -e "$img" ] || continue
			pool=$(basename "$img" .img)
			for i in 1 2 3 4 5 6 7 8 9 10; do
				(node_nsenter "$dir" zpool destroy -f "$pool") >/dev/null 2>&1 && break
				(node_nsenter "$dir" zpool list "$pool") >/dev/null 2>&1 || break
				sleep 0.3
			done
		done
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 100); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	umount "$dir/ns-mnt" 2>/dev/null || true
	rm -rf "$dir"
}

cmd_sweep() {
	local root=$1 dir owner
	[ -d "$root" ] || return 0
	for dir in "$root"/*/; do
		[ -f "$dir/owner" ] || continue
		owner=$(cat "$dir/owner")
		if [ -z "$owner" ] || ! alive "$owner"; then
			cmd_down "$dir"
		fi
	done
}

[ $# -ge 1 ] || die "usage: zfsnode.sh up|pool|exec|down|sweep ..."
[ "$(id -u)" = 0 ] || die "must run as root (zfs-fuse needs /dev/fuse and namespaces)"
sub=$1; shift
case $sub in
up) cmd_up "$@" ;;
daemon) cmd_daemon "$@" ;;
wait) wait_socket "$@" ;;
pin) cmd_pin "$@" ;;
pool) cmd_pool "$@" ;;
exec)
	dir=$1; shift
	[ "${1:-}" = "--" ] && shift
	node_nsenter "$dir" "$@"
	;;
down) cmd_down "$@" ;;
sweep) cmd_sweep "$@" ;;
*) die "unknown command $sub" ;;
esac
