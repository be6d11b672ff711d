#!/usr/bin/env bash
# vmtest.sh: meshcast on the kernels users run, booted under qemu.
#
# Boots Debian's own cloud kernels (the newest 6.1, the generation of Amazon
# Linux 2023, and the newest 6.12) in qemu with software emulation (TCG, no
# KVM needed), and runs the test of ./internal/vmtest inside each: three
# meshcast daemons in network namespaces with default flags, first with GRE
# and then with VXLAN; one node sends, the two others receive. Each
# encapsulation has four cases: delivery, a steady stream and then sendmmsg
# bursts; takeover, a steady stream during which node 2's daemon and then
# node 1's are replaced with `meshcast run --takeover`; mld, the nodes
# with IPv6 overlay addresses and --unregistered drop, node 2 joins an IPv6
# group (MLDv2), node 3 joins nothing, and node 1 streams to the group; and
# underlay6, the delivery case with fewer datagrams over an IPv6-only
# underlay (fd00:198:18::/64: GRE and VXLAN over IPv6). It prints a table
# per kernel, encapsulation and case: the offloads meshcast status reports,
# datagrams sent, received and lost, frames written into each receiver's
# TAP, tap_write drops, and in the mld case the packets node 3's underlay
# received during the stream; how long each takeover took; the MLD
# membership and querier of the mld case; and the TAP MTU of the underlay6
# case.
#
# Run as root:   make vmtest
# Installs what is missing with apt-get (qemu-system-x86, busybox-static,
# cpio, kmod, iproute2, xz-utils or zstd), downloads the kernel packages with
# `apt-get download` (never installs them) and keeps them, unpacked, in the
# cache directory, so a second run starts at once.
#
# Environment:
#   VMTEST_KERNELS  kernel packages to boot, space separated (default: the
#                   newest linux-image-6.1.0-*-cloud-amd64-unsigned and
#                   linux-image-6.12.*+deb12-cloud-amd64-unsigned)
#   VMTEST_CACHE    cache directory (default: .vmtest-cache in the repository)
#   VMTEST_TIMEOUT  seconds one virtual machine may run (default 600)
#   VMTEST_MEM      guest memory in MiB (default 1024)
#   VMTEST_SMP      guest CPUs (default 2)
#   MESHCAST_VMTEST_ENCAPS, MESHCAST_VMTEST_STEADY, MESHCAST_VMTEST_BURSTS,
#   MESHCAST_VMTEST_BURST, MESHCAST_VMTEST_TAKEOVER, MESHCAST_VMTEST_MLD,
#   MESHCAST_VMTEST_UNDERLAY6
#                   passed to the guest's test (see internal/vmtest);
#                   MESHCAST_VMTEST_TAKEOVER=0 leaves the takeover case out,
#                   MESHCAST_VMTEST_MLD=0 the mld case,
#                   MESHCAST_VMTEST_UNDERLAY6=0 the underlay6 case
# Exit status: 0 if every kernel booted and, for every encapsulation, every
# receiver got every datagram of the delivery and underlay6 cases, every
# takeover cost each receiver it affects at most 5 datagrams, the IPv6
# group's member got every datagram and the non-member's underlay at most 20
# packets during the mld stream, with the sender's MLD querier active, and
# the offloads are those that kernel allows (over IPv6: no AF_PACKET egress
# and no receive ring, for the reason meshcast gives for an IPv6 underlay).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root
readonly CACHE=${VMTEST_CACHE:-$root/.vmtest-cache}
readonly TIMEOUT=${VMTEST_TIMEOUT:-600}
readonly MEM=${VMTEST_MEM:-1024}
readonly SMP=${VMTEST_SMP:-2}
readonly ENCAPS=${MESHCAST_VMTEST_ENCAPS:-gre vxlan}
# The cases the guest's test reports for each encapsulation.
CASES=(delivery)
[[ ${MESHCAST_VMTEST_TAKEOVER:-} == 0 ]] || CASES+=(takeover)
[[ ${MESHCAST_VMTEST_MLD:-} == 0 ]] || CASES+=(mld)
[[ ${MESHCAST_VMTEST_UNDERLAY6:-} == 0 ]] || CASES+=(underlay6)
readonly CASES
# Kernel packages by default: the newest of each series apt-cache lists.
readonly DEFAULT_SERIES=(
	'^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'
	'^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$'
)
# Kernel modules the guest needs, their dependencies come along; a module
# built into the kernel is skipped. meshcast needs tun; the test's underlay
# is veth pairs on a bridge; vxlan is for the kernel dataplane. The test's
# netlink handles (github.com/vishvananda/netlink) open NETLINK_XFRM and
# NETLINK_NETFILTER sockets too, which need xfrm_user and nfnetlink.
readonly MODULES=(veth bridge tun vxlan xfrm_user nfnetlink)
# busybox applets /init and the test use (the test needs iproute2's ip,
# which busybox's ip cannot replace: ip netns exec).
readonly APPLETS=(sh cat echo mount umount mkdir mknod insmod lsmod uname nproc poweroff sync sleep ls ps dmesg)

say() { printf 'vmtest: %s\n' "$*"; }
die() {
	printf 'vmtest: %s\n' "$*" >&2
	exit 1
}

if [[ $(id -u) -ne 0 ]]; then
	die "needs root: it installs packages with apt-get and makes device nodes for the guest. Run: sudo make vmtest"
fi
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "VMTEST_TIMEOUT=$TIMEOUT: want seconds"
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go is missing (expected on PATH or in /usr/local/go/bin)"

# ---- tools ---------------------------------------------------------------

apt_updated=false
apt_update() {
	if [[ $apt_updated == false ]]; then
		say "apt-get update"
		apt-get update -qq
		apt_updated=true
	fi
}
# need_pkgs PKG...: install the Debian packages given, updating the lists
# first.
need_pkgs() {
	(($# > 0)) || return 0
	apt_update
	say "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
# The guest needs a static busybox; the dynamic one of package busybox
# would need libraries the initramfs does not have.
[[ $(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null || true) == *" installed" ]] || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v depmod >/dev/null || missing+=(kmod)
command -v ip >/dev/null || missing+=(iproute2)
command -v gzip >/dev/null || missing+=(gzip)
command -v timeout >/dev/null || missing+=(coreutils)
need_pkgs "${missing[@]}"
busybox=$(dpkg -L busybox-static | grep -E '/busybox$' | head -n1)
[[ -x $busybox ]] || die "busybox-static has no busybox binary"
ipbin=$(command -v ip)
readonly busybox ipbin

# ---- temporary directory and cleanup --------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshcast-vmtest.XXXXXX")
readonly tmp
qemu_pid="" tail_pid=""
# shellcheck disable=SC2317 # the traps run it
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		# timeout(1) passes the signal on to qemu.
		kill -TERM "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
	fi
	if [[ -n $tail_pid ]]; then
		kill "$tail_pid" 2>/dev/null
		wait "$tail_pid" 2>/dev/null
	fi
	rm -rf -- "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "vmtest: interrupted" >&2; exit 130' INT
trap 'echo "vmtest: terminated" >&2; exit 143' TERM

# ---- kernels ---------------------------------------------------------------

mkdir -p "$CACHE/debs" "$CACHE/kernels" "$CACHE/logs"

# newest REGEX: the newest package name apt-cache knows that matches REGEX.
newest() {
	apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$1" | sort -V | tail -n1 || true
}
# version PKG: the version of PKG that apt-get download would fetch.
version() {
	apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# pick: choose the kernel packages and their versions (kernels, versions),
# and succeed if every one is known and already unpacked in the cache.
kernels=() versions=()
pick() {
	local i ok=0
	kernels=() versions=()
	if [[ -n ${VMTEST_KERNELS:-} ]]; then
		read -r -a kernels <<<"$VMTEST_KERNELS"
	else
		for re in "${DEFAULT_SERIES[@]}"; do
			kernels+=("$(newest "$re")")
		done
	fi
	for i in "${!kernels[@]}"; do
		versions[i]=""
		if [[ -n ${kernels[i]} ]]; then
			versions[i]=$(version "${kernels[i]}")
		fi
		if [[ -z ${versions[i]} || ! -e $CACHE/kernels/${kernels[i]}_${versions[i]}/.done ]]; then
			ok=1
		fi
	done
	return "$ok"
}
# apt's lists may be missing, or old enough to name a kernel the archive no
# longer has: bring them up to date before downloading anything.
if ! pick && [[ $apt_updated == false ]]; then
	apt_update
	pick || true
fi

# fetch PKG VERSION: download and unpack kernel package PKG into the cache,
# unless it is there, and set fetched to the directory it is unpacked in.
fetched=""
fetch() {
	local pkg=$1 ver=$2 deb dir release
	deb=$CACHE/debs/${pkg}_${ver}_amd64.deb
	dir=$CACHE/kernels/${pkg}_${ver}
	if [[ ! -e $dir/.done ]]; then
		if [[ ! -s $deb ]]; then
			say "downloading $pkg $ver"
			(cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver")
			[[ -s $deb ]] || die "apt-get download $pkg=$ver left no $deb"
		fi
		say "unpacking $(basename "$deb")"
		rm -rf -- "$dir"
		mkdir -p "$dir"
		dpkg-deb -x "$deb" "$dir"
		release=$(ls "$dir/lib/modules" 2>/dev/null | head -n1)
		[[ -n $release && -n $(ls "$dir/boot/vmlinuz-$release" 2>/dev/null) ]] ||
			die "$deb has no /boot/vmlinuz and /lib/modules/RELEASE"
		# The package ships no modules.dep: its postinst runs depmod.
		depmod -b "$dir" "$release"
		touch "$dir/.done"
	fi
	fetched=$dir
}

kdirs=()
for i in "${!kernels[@]}"; do
	if [[ -z ${kernels[i]} ]]; then
		die "no package matching ${DEFAULT_SERIES[i]} in apt's lists (is this Debian 12 with bookworm-security?)"
	fi
	[[ -n ${versions[i]} ]] || die "apt-cache does not know the package ${kernels[i]}"
	fetch "${kernels[i]}" "${versions[i]}"
	kdirs+=("$fetched")
done
# Keep the cache to the default kernels: older versions go. (A run with
# VMTEST_KERNELS leaves the cache alone.)
for f in "$CACHE"/debs/*.deb "$CACHE"/kernels/*; do
	[[ -e $f && -z ${VMTEST_KERNELS:-} ]] || continue
	keep=false
	for d in "${kdirs[@]}"; do
		if [[ $f == "$d" || $f == "$CACHE/debs/$(basename "$d")_amd64.deb" ]]; then
			keep=true
		fi
	done
	if [[ $keep == false ]]; then
		say "removing $f from the cache: not a kernel in use"
		rm -rf -- "$f"
	fi
done

# ---- the guest's programs ----------------------------------------------------

say "building meshcast, mcastprobe and the guest's test (static)"
(
	cd "$root"
	export CGO_ENABLED=0
	go build -o "$tmp/bin/meshcast" ./cmd/meshcast
	go build -o "$tmp/bin/mcastprobe" ./internal/cmd/mcastprobe
	go test -c -o "$tmp/bin/vmcheck.test" ./internal/vmtest
)

# The part of the initramfs every kernel shares.
common=$tmp/common
mkdir -p "$common"/{bin,sbin,etc,proc,sys,dev,run,tmp,lib/modules}
# The kernel opens /dev/console for /init before anything is mounted.
mknod -m 0600 "$common/dev/console" c 5 1
install -m 0755 "$busybox" "$common/bin/busybox"
for a in "${APPLETS[@]}"; do
	ln -s busybox "$common/bin/$a"
done
install -m 0755 "$tmp/bin/meshcast" "$tmp/bin/mcastprobe" "$tmp/bin/vmcheck.test" "$common/bin/"
# iproute2's ip, with the libraries and the loader ldd names.
install -m 0755 "$ipbin" "$common/sbin/ip"
while read -r lib; do
	mkdir -p "$common$(dirname "$lib")"
	cp -L "$lib" "$common$lib"
done < <(ldd "$ipbin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
# The guest's /init: mount, load the modules, run the test, power off.
{
	echo '#!/bin/sh'
	echo "export PATH=/sbin:/bin MESHCAST_VMTEST=1 CI=true HOME=/tmp"
	# The test stops (printing where it hung) before qemu is killed.
	echo "TEST_TIMEOUT=$((TIMEOUT > 120 ? TIMEOUT - 60 : TIMEOUT))"
	echo "export MESHCAST_BIN=/bin/meshcast MCASTPROBE_BIN=/bin/mcastprobe MESHCAST_VMTEST_ENCAPS='$ENCAPS'"
	for v in MESHCAST_VMTEST_STEADY MESHCAST_VMTEST_BURSTS MESHCAST_VMTEST_BURST MESHCAST_VMTEST_TAKEOVER MESHCAST_VMTEST_MLD MESHCAST_VMTEST_UNDERLAY6; do
		if [[ -n ${!v:-} ]]; then
			printf "export %s='%s'\n" "$v" "${!v}"
		fi
	done
	cat <<'EOF'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /run /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "VMTEST-BOOT kernel=$(uname -r) cpus=$(nproc)"
while read -r m; do
	if insmod "/lib/modules/$m.ko"; then
		echo "VMTEST-MODULE $m loaded"
	else
		echo "VMTEST-MODULE $m FAILED"
	fi
done </etc/vmtest-modules
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net
	mknod /dev/net/tun c 10 200
fi
ip link set lo up
cd /tmp
/bin/vmcheck.test -test.v -test.count=1 -test.timeout="${TEST_TIMEOUT}s" -test.run '^TestVMDelivery$'
echo "VMTEST-DONE rc=$?"
sync
poweroff -f
EOF
} >"$common/init"
chmod 0755 "$common/init"

# modules KDIR RELEASE: copy the modules and their dependencies, in load
# order and uncompressed, into the staging tree $stage, and list them in
# $stage/etc/vmtest-modules.
modules() {
	local kdir=$1 release=$2 mdir dep
	mdir=$kdir/lib/modules/$release
	declare -A deps=() loaded=()
	while IFS=: read -r path rest; do
		deps[$path]=$rest
	done <"$mdir/modules.dep"
	local order=()
	# visit PATH: its dependencies first, then itself.
	visit() {
		local p=$1 d
		[[ -z ${loaded[$p]:-} ]] || return 0
		loaded[$p]=1
		for d in ${deps[$p]}; do
			visit "$d"
		done
		order+=("$p")
	}
	for m in "${MODULES[@]}"; do
		dep=""
		for p in "${!deps[@]}"; do
			if [[ $p =~ /$m\.ko(\.xz|\.zst|\.gz)?$ ]]; then
				dep=$p
				break
			fi
		done
		if [[ -z $dep ]]; then
			if grep -Eq "/$m\.ko$" "$mdir/modules.builtin" 2>/dev/null; then
				say "$release: $m is built into the kernel"
				continue
			fi
			die "$release: module $m is neither in modules.dep nor built in"
		fi
		visit "$dep"
	done
	: >"$stage/etc/vmtest-modules"
	for p in "${order[@]}"; do
		local name
		name=$(basename "$p")
		name=${name%%.ko*}
		case $p in
		*.ko.xz)
			command -v xz >/dev/null || need_pkgs xz-utils
			xz -dc "$mdir/$p" >"$stage/lib/modules/$name.ko"
			;;
		*.ko.zst)
			command -v zstd >/dev/null || need_pkgs zstd
			zstd -qdc "$mdir/$p" >"$stage/lib/modules/$name.ko"
			;;
		*.ko.gz) gzip -dc "$mdir/$p" >"$stage/lib/modules/$name.ko" ;;
		*.ko) cp "$mdir/$p" "$stage/lib/modules/$name.ko" ;;
		*) die "$release: $p: not a kernel module" ;;
		esac
		echo "$name" >>"$stage/etc/vmtest-modules"
	done
	say "$release: modules $(tr '\n' ' ' <"$stage/etc/vmtest-modules")"
}

# ---- boot each kernel ---------------------------------------------------------

# sed script that removes carriage returns and the firmware's terminal
# escapes from the console output.
readonly clean=$'s/\r$//; s/\x1b\\[[0-9;?]*[A-Za-z]//g; s/\x1b[c]//g'
declare -A wall=() boot_rc=()
releases=()
for kdir in "${kdirs[@]}"; do
	release=$(ls "$kdir/lib/modules" | head -n1)
	releases+=("$release")
	stage=$tmp/stage-$release
	cp -a "$common" "$stage"
	modules "$kdir" "$release"
	initrd=$tmp/initramfs-$release.gz
	(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$initrd")
	rm -rf -- "$stage"
	log=$CACHE/logs/$release.log
	say "booting $release (TCG, $SMP CPUs, $MEM MiB, at most $TIMEOUT s); console in $log"
	# Empty the log before tail opens it: tail would otherwise show the
	# previous run's console until qemu's redirection truncates it.
	: >"$log"
	start=$(date +%s.%N)
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m "$MEM" \
		-nographic -no-reboot -nic none \
		-kernel "$kdir/boot/vmlinuz-$release" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet" </dev/null >"$log" 2>&1 &
	qemu_pid=$!
	tail -n +1 -f --pid="$qemu_pid" "$log" 2>/dev/null | sed -u -e "$clean" -e 's/^/  | /' &
	tail_pid=$!
	rc=0
	wait "$qemu_pid" || rc=$?
	qemu_pid=""
	wait "$tail_pid" 2>/dev/null || true
	tail_pid=""
	wall[$release]=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')
	boot_rc[$release]=$rc
	if ((rc == 124 || rc == 137)); then
		say "$release: no power-off after $TIMEOUT s: qemu killed"
	fi
	rm -f -- "$initrd"
done

# ---- the table ------------------------------------------------------------------

readonly rowfmt='%-28s %-5s %-9s %-12s %-7s %-7s %-12s %-13s %-12s %8s %5s %5s %5s %7s %11s %11s %9s  %s'
status=0
rows=()
reasons=()
takeovers=()
mlds=()
underlay6s=()
for release in "${releases[@]}"; do
	log=$CACHE/logs/$release.log
	lines=$(sed -e "$clean" "$log" | grep -a '^VMTEST-' || true)
	done_rc=$(sed -n 's/^VMTEST-DONE rc=//p' <<<"$lines" | tail -n1)
	if [[ $done_rc != 0 ]]; then
		status=1
	fi
	for encap in $ENCAPS; do
		for kind in "${CASES[@]}"; do
			line=$(grep -F "VMTEST-RESULT kernel=$release encap=$encap case=$kind " <<<"$lines" | tail -n1 || true)
			if [[ -z $line ]]; then
				what="no result (the guest did not run the test to the end; see $log)"
				[[ -n $done_rc ]] || what="no result (no boot or no power-off: qemu exit status ${boot_rc[$release]}; see $log)"
				rows+=("$(printf '%-28s %-5s %-9s %s' "$release" "$encap" "$kind" "$what")")
				status=1
				continue
			fi
			# A failed case's reason comes last and has spaces.
			why=""
			if [[ $line == *" reason="* ]]; then
				why=${line#* reason=}
				line=${line%% reason=*}
			fi
			declare -A f=()
			for kv in ${line#VMTEST-RESULT }; do
				f[${kv%%=*}]=${kv#*=}
			done
			verdict=${f[verdict]:-}
			if [[ $verdict != PASS ]]; then
				status=1
				[[ -z $why ]] || verdict="$verdict: $why"
			fi
			rows+=("$(printf "$rowfmt" \
				"$release" "$encap" "$kind" "${f[tap_coalesce]}" "${f[udp_gso]}" "${f[udp_gro]}" "${f[af_packet_tx]:-absent}" "${f[af_packet_gso]:-absent}" "${f[af_packet_rx]:-absent}" "${f[fallback]}" \
				"${f[sent]}" "${f[node2]}" "${f[node3]}" "${f[lost2]}/${f[lost3]}" "${f[frames2]}/${f[frames3]}" \
				"${f[tap_write2]}/${f[tap_write3]}" "${f[underlay3]:--}" "$verdict")")
			if [[ $kind == takeover ]]; then
				takeovers+=("$(printf "%-28s %-5s node 2 in %s (paused %s), node 1 in %s (paused %s); underlay 1 to 2 %s; node 2 lost %s at its own takeover, %s at node 1's" \
					"$release" "$encap" "${f[takeover2]:-?}" "${f[paused2]:-?}" "${f[takeover1]:-?}" "${f[paused1]:-?}" \
					"${f[underlay12]:-?}" "${f[lost2_at_node2]:-?}" "${f[lost2_at_node1]:-?}")")
			fi
			if [[ $kind == mld ]]; then
				mlds+=("$(printf "%-28s %-5s IPv6 usable in %s; node 2 a member at node 1 in %s; node 1's MLD querier active/sent %s" \
					"$release" "$encap" "${f[ipv6]:-?}" "${f[member2]:-?}" "${f[mld_querier]:-?}")")
			fi
			if [[ $kind == underlay6 ]]; then
				underlay6s+=("$(printf "%-28s %-5s underlay %s only, TAP MTU %s" \
					"$release" "$encap" "${f[underlay]:-?}" "${f[mtu]:-?}")")
			fi
			unset f
		done
	done
	while read -r r; do
		reasons+=("$r")
	done < <(sed -n -e 's/^VMTEST-REASON kernel=\([^ ]*\) encap=\([^ ]*\) underlay=ipv6 node=[0-9]* offload=\([^ ]*\) in_use=\([^ ]*\) reason=\(.*\)$/\1 \2 over IPv6 \3 (in use: \4): \5/p' \
		-e 's/^VMTEST-REASON kernel=\([^ ]*\) encap=\([^ ]*\) node=[0-9]* offload=\([^ ]*\) in_use=\([^ ]*\) reason=\(.*\)$/\1 \2 \3 (in use: \4): \5/p' <<<"$lines" | sort -u)
	failed=$(sed -n 's/^VMTEST-MODULE \(.*\) FAILED$/\1/p' <<<"$lines" | tr '\n' ' ')
	if [[ -n $failed ]]; then
		say "$release: modules that failed to load: $failed"
		status=1
	fi
done

echo
echo "== meshcast on older kernels (qemu TCG): default flags, node 1 sends, nodes 2 and 3 receive (mld: node 2 only)"
[[ " ${CASES[*]} " != *" underlay6 "* ]] || echo "   over an IPv4 underlay (underlay6: IPv6 only)"
printf "$rowfmt\n" kernel encap case tap_coalesce udp_gso udp_gro af_packet_tx af_packet_gso af_packet_rx fallback sent node2 node3 lost "TAP frames" tap_write underlay3 result
for r in "${rows[@]}"; do
	echo "$r"
done
echo
echo "case: delivery, a steady stream and then sendmmsg bursts, every datagram must arrive; takeover, a steady"
echo "stream during which node 2's daemon and then node 1's are taken over (meshcast run --takeover; GRE with"
echo "--ingress packet, so that its receive ring is handed over), each"
echo "takeover may cost each receiver it affects 5 datagrams; mld, IPv6 overlay addresses and --unregistered"
echo "drop, node 2 joins ff0e::1:2:3 (MLDv2), node 3 joins nothing, node 1 streams to it once its daemon lists"
echo "node 2 as a member: node 2 must get every datagram, node 3's underlay at most 20 packets, node 1's MLD"
echo "querier must be active; underlay6, the delivery case with fewer datagrams over an IPv6-only underlay"
echo "(fd00:198:18::/64, GRE and VXLAN over IPv6), every datagram must arrive, AF_PACKET egress and the receive"
echo "ring must be off for the IPv6 underlay, the TAP MTU 1500 less 58 (GRE) or 70 (VXLAN)."
echo "tap_coalesce ... af_packet_rx: in_use of meshcast status's offloads (the same on"
echo "every node, else mixed; after a takeover, the successors'); fallback: their offload_fallback summed over"
echo "all nodes; sent: datagrams of node 1; node2, node3: distinct datagrams received (mld: node 3 is no"
echo "receiver, -); lost: datagrams node 2/3 did not receive; TAP frames, tap_write: frames meshcast wrote into"
echo "the TAP of nodes 2/3, and its tap_write drops there; underlay3 (mld): packets node 3's underlay interface"
echo "received during the stream; result: FAIL with the first reason the case recorded, or the console log."
if ((${#takeovers[@]} > 0)); then
	echo
	echo "Takeovers: from the successor's start to its \"meshcast forwarding\" (paused: from the old daemon's"
	echo "\"handing over\" to that line, by their logs); underlay 1 to 2: packets node 1's daemons sent to node 2"
	echo "during the stream / node 2's daemons received from node 1, by their counters (the stream and the"
	echo "daemons' own packets); node 2's loss split between the takeovers by them:"
	printf '  %s\n' "${takeovers[@]}"
fi
if ((${#mlds[@]} > 0)); then
	echo
	echo "MLD: from the daemons forwarding until every TAP's IPv6 addresses were usable (duplicate address detection"
	echo "over the overlay), and from node 2's join until node 1's daemon listed node 2 as a member of ff0e::1:2:3"
	echo "(none: they were not); node 1's mld_querier at the end (active/queries sent):"
	printf '  %s\n' "${mlds[@]}"
fi
if ((${#underlay6s[@]} > 0)); then
	echo
	echo "IPv6 underlay (underlay6): the underlay's addresses, and the TAP MTU every daemon reported (-1: they differ):"
	printf '  %s\n' "${underlay6s[@]}"
fi
if ((${#reasons[@]} > 0)); then
	echo
	echo "Why an offload is off, as meshcast reports it:"
	printf '  %s\n' "${reasons[@]}"
fi
echo
for release in "${releases[@]}"; do
	printf 'wall time %-28s %4s s (qemu start to power-off)\n' "$release" "${wall[$release]}"
done
echo
if ((status == 0)); then
	msg="PASS: on every kernel every receiver got every datagram"
	[[ " ${CASES[*]} " != *" takeover "* ]] || msg+=", every takeover cost at most 5"
	[[ " ${CASES[*]} " != *" mld "* ]] || msg+=", MLD kept the IPv6 group's stream off the non-member"
	[[ " ${CASES[*]} " != *" underlay6 "* ]] || msg+=", and delivery held over an IPv6-only underlay"
	say "$msg"
else
	say "FAIL: see the table above and the console logs in $CACHE/logs"
fi
exit "$status"
