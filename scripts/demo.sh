#!/usr/bin/env bash
# demo.sh: three meshcast instances on one simulated network, and ordinary
# multicast between them.
#
# Each instance is a Linux network namespace. A bridge in a fourth "hub"
# namespace stands in for the unicast-only network of a cloud VPC (the
# "underlay", 198.18.0.0/24). meshcast gives every instance a TAP device
# mcbr-demo with an overlay address (198.19.0.0/24, and fd00:198:19::/64
# for IPv6) and carries the frames sent on it to the other instances inside
# GRE or VXLAN. It snoops IGMP and MLD, so a group's datagrams cross the
# underlay only to the instances that joined it.
#
# Run as root, after `make build`:   make demo   or   ENCAP=vxlan make demo
# Environment: ENCAP (gre|vxlan, default gre), COUNT (datagrams, default
# 1000), RATE (datagrams per second, default 500), MESHCAST and MCASTPROBE
# (the binaries, default bin/meshcast and bin/mcastprobe).
# Exit status: 0 if every receiver got every datagram (IPv4 and IPv6), the
# IPv6 group stayed off the instance that did not join it, and the pings
# answered.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root
readonly MESHCAST=${MESHCAST:-$root/bin/meshcast}
readonly MCASTPROBE=${MCASTPROBE:-$root/bin/mcastprobe}
readonly ENCAP=${ENCAP:-gre}
readonly COUNT=${COUNT:-1000}
readonly RATE=${RATE:-500}
readonly COMMUNITY=demo
readonly TAP=mcbr-demo
readonly GROUP=239.1.2.3
readonly GROUP6=ff0e::1:2:3
readonly PORT=5000
readonly PREFIX=meshdemo
readonly HUB=$PREFIX-hub
readonly NODES=(1 2 3)
readonly RECEIVERS=(2 3)

heading() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
indent() { sed 's/^/     /'; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}
ns() { printf '%s-%s' "$PREFIX" "$1"; }
underlay() { printf '198.18.0.%s' "$1"; }
overlay() { printf '198.19.0.%s' "$1"; }
overlay6() { printf 'fd00:198:19::%s' "$1"; }

# ---- preconditions ---------------------------------------------------------

if [[ $(id -u) -ne 0 ]]; then
	echo "demo: needs root, because it creates network namespaces. Run: sudo make demo" >&2
	exit 1
fi
command -v ip >/dev/null || die "the ip command is missing: apt-get install iproute2"
[[ -x $MESHCAST ]] || die "$MESHCAST is missing: run make build"
[[ -x $MCASTPROBE ]] || die "$MCASTPROBE is missing: run make build"
case $ENCAP in
gre | vxlan) ;;
*) die "ENCAP=$ENCAP: want gre or vxlan" ;;
esac
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "COUNT=$COUNT: want a positive number"
for name in "$HUB" "${NODES[@]/#/$PREFIX-}"; do
	if [[ -e /run/netns/$name ]]; then
		die "namespace $name exists: another demo is running, or one was killed. Remove it with: ip netns del $name"
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshcast-demo.XXXXXX")
readonly tmp
status=0 # the demo's verdict; the EXIT trap keeps the exit status
declare -A daemon=() receiver=() # node number -> pid

# ---- cleanup: runs on every exit, also after errors and Ctrl-C -------------

# shellcheck disable=SC2317 # reached from the EXIT trap
# stop_ns_procs NS: SIGTERM every process in namespace NS, SIGKILL after 5 s.
stop_ns_procs() {
	local pids
	pids=$(ip netns pids "$1" 2>/dev/null) || return 0
	[[ -n $pids ]] || return 0
	# shellcheck disable=SC2086 # one pid per word
	kill -TERM $pids 2>/dev/null
	for _ in $(seq 50); do
		pids=$(ip netns pids "$1" 2>/dev/null)
		[[ -n $pids ]] || return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
}

# shellcheck disable=SC2317 # the EXIT trap runs it
cleanup() {
	local rc=$? # the exit status, kept after this trap
	set +e
	trap - EXIT INT TERM
	heading "Cleaning up: stopping meshcast, deleting the namespaces"
	for k in "${NODES[@]}"; do
		stop_ns_procs "$(ns "$k")"
		[[ -n ${daemon[$k]:-} ]] || continue
		wait "${daemon[$k]}" 2>/dev/null
		say "node $k: meshcast stopped with exit status $? (0 is a clean stop); its own counters per peer:"
		grep -E 'msg="peer counters"|msg=drops' "$tmp/meshcast-$k.log" 2>/dev/null |
			sed -e 's/^time=[^ ]* level=INFO msg=//' | indent
	done
	wait 2>/dev/null
	if ((status != 0 || rc != 0)); then
		for k in "${NODES[@]}"; do
			if [[ ! -s $tmp/meshcast-$k.log ]]; then
				say "meshcast's log on node $k is empty"
				continue
			fi
			say "last lines of meshcast's log on node $k:"
			tail -n 15 "$tmp/meshcast-$k.log" | indent
		done
	fi
	for name in "${NODES[@]/#/$PREFIX-}" "$HUB"; do
		if [[ -e /run/netns/$name ]]; then
			stop_ns_procs "$name"
			ip netns del "$name"
		fi
	done
	rm -rf -- "$tmp"
	say "done"
}
trap cleanup EXIT
trap 'status=130; echo "demo: interrupted" >&2; exit 130' INT
trap 'status=143; echo "demo: terminated" >&2; exit 143' TERM

# ---- 1. the underlay -------------------------------------------------------

heading "1. Building the underlay: three instances on one plain IPv4 network"
say "A bridge in namespace $HUB plays the VPC. It carries the instances' unicast"
say "traffic; meshcast never relies on it for multicast."
ip netns add "$HUB"
ip -n "$HUB" link set lo up
ip -n "$HUB" link add br0 type bridge mcast_snooping 0
ip -n "$HUB" link set br0 up
for k in "${NODES[@]}"; do
	n=$(ns "$k")
	ip netns add "$n"
	# IPv6 off, so its background chatter does not blur the counters below.
	ip netns exec "$n" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 &&
		echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
	ip -n "$n" link set lo up
	ip -n "$HUB" link add "node$k" type veth peer name eth0 netns "$n"
	ip -n "$HUB" link set "node$k" master br0 up
	ip -n "$n" link set eth0 mtu 1500 up
	ip -n "$n" addr add "$(underlay "$k")/24" dev eth0
	say "node $k: namespace $n, eth0 $(underlay "$k")/24"
done

# ---- 2. meshcast -----------------------------------------------------------

heading "2. Starting meshcast on each instance (encapsulation: $ENCAP)"
inventory=$tmp/peers
{
	echo "# underlay      COMMUNITY,OVERLAY-IP/PREFIX[,OVERLAY-IPv6/PREFIX]"
	for k in "${NODES[@]}"; do
		printf '%-15s %s,%s/24,%s/64\n' "$(underlay "$k")" "$COMMUNITY" "$(overlay "$k")" "$(overlay6 "$k")"
	done
} >"$inventory"
say "Every instance reads the same inventory, $inventory:"
indent <"$inventory"

# in_ns K CMD...: run CMD in node K's namespace, for at most 10 s.
in_ns() {
	local k=$1
	shift
	timeout 10 ip netns exec "$(ns "$k")" "$@"
}

# Three daemons share one file system: give each its own control socket when
# this meshcast has the flag. (Asked inside a namespace, like every other use.)
has_control=false
if [[ $(in_ns 1 "$MESHCAST" run --help 2>&1 || true) == *-control* ]]; then
	has_control=true
fi
control_args() {
	if [[ $has_control == true ]]; then
		printf '%s\n' --control "$tmp/meshcast-$1.sock"
	fi
}

for k in "${NODES[@]}"; do
	mapfile -t extra < <(control_args "$k")
	ip netns exec "$(ns "$k")" "$MESHCAST" run --peers "$inventory" \
		--local "$(underlay "$k")" --encap "$ENCAP" "${extra[@]}" \
		>"$tmp/meshcast-$k.log" 2>&1 &
	daemon[$k]=$!
	say "node $k: meshcast run --peers $(basename "$inventory") --local $(underlay "$k") --encap $ENCAP (log: meshcast-$k.log)"
done

say "Waiting for each meshcast to bring up $TAP with its overlay address..."
for k in "${NODES[@]}"; do
	n=$(ns "$k")
	for ((i = 0; ; i++)); do
		if ! kill -0 "${daemon[$k]}" 2>/dev/null; then
			status=1
			die "meshcast on node $k exited early; its log is printed below"
		fi
		# The IPv6 address is usable once duplicate address detection
		# (about a second) has passed: not tentative.
		if ip -n "$n" -o link show dev "$TAP" 2>/dev/null | grep -q '[<,]UP[,>]' &&
			ip -n "$n" -4 -o addr show dev "$TAP" 2>/dev/null | grep -qF " $(overlay "$k")/" &&
			ip -n "$n" -6 -o addr show dev "$TAP" 2>/dev/null | grep -F " $(overlay6 "$k")/" | grep -qv tentative; then
			break
		fi
		if ((i >= 150)); then
			status=1
			die "after 15 s, $TAP is not up with $(overlay "$k") and $(overlay6 "$k") on node $k"
		fi
		sleep 0.1
	done
	say "node $k: $(ip -n "$n" -br addr show dev "$TAP")"
done

# ---- 3. multicast ----------------------------------------------------------

heading "3. Multicast: node 1 sends $COUNT datagrams to group $GROUP"
say "Nodes 2 and 3 run an ordinary multicast receiver: it joins $GROUP on $TAP"
say "(the kernel sends an IGMP report, which meshcast snoops) and counts datagrams."
for k in "${RECEIVERS[@]}"; do
	ip netns exec "$(ns "$k")" "$MCASTPROBE" recv --iface "$TAP" --group "$GROUP" \
		--port "$PORT" --count "$COUNT" --timeout "$((COUNT / RATE + 20))s" \
		>"$tmp/recv-$k.out" 2>&1 &
	receiver[$k]=$!
done
for k in "${RECEIVERS[@]}"; do
	for ((i = 0; ; i++)); do
		grep -qx ready "$tmp/recv-$k.out" 2>/dev/null && break
		if ! kill -0 "${receiver[$k]}" 2>/dev/null || ((i >= 100)); then
			status=1
			cat "$tmp/recv-$k.out" >&2
			die "the receiver on node $k did not start"
		fi
		sleep 0.1
	done
	say "node $k: joined $GROUP, listening on port $PORT"
done
say "Letting the IGMP reports reach the other instances..."
sleep 1

say "node 1: sending $COUNT datagrams of 200 bytes at $RATE per second out of $TAP"
if ! ip netns exec "$(ns 1)" "$MCASTPROBE" send --iface "$TAP" --group "$GROUP" \
	--port "$PORT" --count "$COUNT" --rate "$RATE" --size 200 2>&1 | indent; then
	status=1
fi

delivered=0
for k in "${RECEIVERS[@]}"; do
	if wait "${receiver[$k]}"; then
		delivered=$((delivered + 1))
		verdict=ok
	else
		verdict=FAILED
		status=1
	fi
	say "node $k: $(grep -v '^ready$' "$tmp/recv-$k.out" | tr '\n' ' ')[$verdict]"
done

# ---- 4. IPv6 multicast ------------------------------------------------------

heading "4. IPv6 multicast: node 1 sends $COUNT datagrams to group $GROUP6; only node 2 joins"
say "Node 2's receiver joins $GROUP6 (the kernel sends an MLDv2 report, which meshcast"
say "snoops); node 3 joins nothing, so meshcast on node 1 sends it no copy."
ip netns exec "$(ns 2)" "$MCASTPROBE" recv --iface "$TAP" --group "$GROUP6" \
	--port "$PORT" --count "$COUNT" --timeout "$((COUNT / RATE + 20))s" \
	>"$tmp/recv6-2.out" 2>&1 &
receiver6=$!
for ((i = 0; ; i++)); do
	grep -qx ready "$tmp/recv6-2.out" 2>/dev/null && break
	if ! kill -0 "$receiver6" 2>/dev/null || ((i >= 100)); then
		status=1
		cat "$tmp/recv6-2.out" >&2
		die "the IPv6 receiver on node 2 did not start"
	fi
	sleep 0.1
done
say "node 2: joined $GROUP6, listening on port $PORT"
say "Letting the MLD report reach the other instances..."
sleep 1
before3=$(ip netns exec "$(ns 3)" cat /sys/class/net/eth0/statistics/rx_packets)
say "node 1: sending $COUNT datagrams of 200 bytes at $RATE per second out of $TAP"
if ! ip netns exec "$(ns 1)" "$MCASTPROBE" send --iface "$TAP" --group "$GROUP6" \
	--port "$PORT" --count "$COUNT" --rate "$RATE" --size 200 2>&1 | indent; then
	status=1
fi
if wait "$receiver6"; then
	mcast6=ok
else
	mcast6=FAILED
	status=1
fi
say "node 2: $(grep -v '^ready$' "$tmp/recv6-2.out" | tr '\n' ' ')[$mcast6]"
to3=$(($(ip netns exec "$(ns 3)" cat /sys/class/net/eth0/statistics/rx_packets) - before3))
if ((to3 <= 20)); then
	pruned6=ok
else
	pruned6=FAILED
	status=1
fi
say "node 3 (not a member): $to3 underlay packets arrived on its eth0 during the $COUNT-datagram stream [$pruned6]"

# ---- 5. unicast ------------------------------------------------------------

heading "5. Unicast across the overlay: node 1 pings node 2 at $(overlay 2) and $(overlay6 2)"
if command -v ping >/dev/null; then
	if in_ns 1 ping -c 3 -i 0.3 -W 2 "$(overlay 2)" 2>&1 | indent &&
		in_ns 1 ping -6 -c 3 -i 0.3 -W 2 "$(overlay6 2)" 2>&1 | indent; then
		ping_ok=ok
	else
		ping_ok=FAILED
		status=1
	fi
else
	say "ping is missing (apt-get install iputils-ping): skipped"
	ping_ok=skipped
fi

# ---- 6. counters -----------------------------------------------------------

heading "6. Counters on each instance"
say "$TAP counts the frames the applications exchange; eth0 counts the"
say "encapsulated packets that crossed the underlay. Node 1 sent each datagram"
say "once on $TAP, and meshcast sent one copy per interested peer on eth0."
has_status=false
if in_ns 1 "$MESHCAST" status --help >/dev/null 2>&1; then
	has_status=true
fi
for k in "${NODES[@]}"; do
	n=$(ns "$k")
	printf '\n   -- node %s (underlay %s, overlay %s)\n' "$k" "$(underlay "$k")" "$(overlay "$k")"
	ip -n "$n" -s link show dev "$TAP" | indent
	ip -n "$n" -s link show dev eth0 | indent
	if [[ $has_status == true ]]; then
		mapfile -t extra < <(control_args "$k")
		say "meshcast status:"
		in_ns "$k" "$MESHCAST" status "${extra[@]}" 2>&1 | indent ||
			say "(meshcast status failed)"
	fi
done

# ---- 7. meshcast ping ------------------------------------------------------

if [[ $has_status == true ]]; then
	heading "7. meshcast ping from node 1: every peer, unicast and multicast, over IPv4 and IPv6"
	say "Every daemon answers probes on its overlay address and on the ping group,"
	say "so this checks the whole path to each peer without any tool over there."
	mapfile -t extra < <(control_args 1)
	for family in 4 6; do
		if in_ns 1 "$MESHCAST" ping "${extra[@]}" --family "$family" --count 3 --interval 200ms 2>&1 | indent; then
			:
		else
			say "meshcast ping --family $family reported loss"
			status=1
		fi
	done
fi

# ---- verdict ---------------------------------------------------------------

heading "Result"
say "multicast: $delivered of ${#RECEIVERS[@]} receivers got all $COUNT datagrams"
say "IPv6 multicast: the member got all $COUNT datagrams: $mcast6; the non-member got none: $pruned6"
say "unicast ping across the overlay (IPv4 and IPv6): $ping_ok"
if ((status == 0)); then
	say "PASS"
else
	say "FAIL"
fi
exit "$status"
