package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationMLDDifferential is TestIntegrationIGMPDifferential for
// MLD: the same two worlds of four real Linux host stacks, now IPv6
// listeners joining with sockets (MCAST_JOIN_GROUP, MCAST_BLOCK_SOURCE,
// MCAST_JOIN_SOURCE_GROUP, MCAST_MSFILTER and their counterparts) and
// changing to MLDv1 with force_mld_version:
//
//   - bridge: a Linux bridge with MLDv2 snooping (mcast_mld_version 2) and
//     its own querier, which sends from the bridge's link-local address,
//     the hosts on veth ports (fd00:198:19:1::1-4);
//   - meshcast: four nodes running `meshcast run` with IPv6 overlays, each
//     host being the node's own stack on its TAP (fd00:198:19::1-4).
//
// The script walks the cases of the kernel's bridge MLD selftest
// (tools/testing/selftests/net/forwarding/bridge_mld.sh) as real hosts
// produce them: INCLUDE, INCLUDE -> ALLOW, BLOCK, TO_EX, EXCLUDE -> ALLOW,
// BLOCK, TO_IN and the EXCLUDE timeout, the IS_IN and IS_EX answers to
// the queries, and a source entry made for a group with an EXCLUDE port
// (star_ex_auto_add); then MLDv1 listeners among MLDv2 source state. Each
// cell of the delivery matrix is compared with RFC 3810 (sections 4.2,
// 7.4 and 8.3.2) and RFC 4541 (sections 2.1.2 and 3).
//
// The snooped groups are of global and site scope, ff3e::8000:cc among
// them, which only MLDv2 source-specific (INCLUDE) sockets join: the
// RFC 4604 rules for other reports in the SSM range are not what is
// compared. One more group, ff02::cc (the selftest's own), is of
// link-local scope: RFC 4541 section 3 exempts only ff02::1 from
// snooping, so the bridge snoops ff02::cc, while meshcast sends all of
// ff02::/16 to every peer by design. Its column is reported apart:
// meshcast's copies beyond the RFC reading there are counted, not failed;
// a copy it owes a joined host fails as anywhere else.
//
// A fixed script runs first, then a random sequence;
// MESHCAST_MLD_DIFF_SEED replays a seed (MESHCAST_DIFF_SEED, the IGMP
// test's, serves too when it is not set).
func TestIntegrationMLDDifferential(t *testing.T) {
	diffRun(t, mldDiff)
}

// The groups of the MLD test, by index: 0 = ff0e::cc, 1 = ff05::cc, 2 =
// ff3e::8000:cc (source-specific joins only), 3 = ff0e::ee (script only:
// unregistered in most steps), 4 = ff02::cc (link-local scope).
const (
	mldG0 = iota
	mldG1
	mldGSSM
	mldG3
	mldGLL
)

var mldDiff = &diffFamily{
	name: "MLD", newVer: 2, oldVer: 1,
	seedEnv: []string{"MESHCAST_MLD_DIFF_SEED", "MESHCAST_DIFF_SEED"},
	groups: []netip.Addr{
		netip.MustParseAddr("ff0e::cc"), netip.MustParseAddr("ff05::cc"),
		netip.MustParseAddr("ff3e::8000:cc"), netip.MustParseAddr("ff0e::ee"),
		netip.MustParseAddr("ff02::cc"),
	},
	randomGroups:   []int{mldG0, mldG1, mldGSSM, mldGLL},
	sourceOnly:     func(g int) bool { return g == mldGSSM },
	meshcastFloods: func(g int) bool { return g == mldGLL },
	// The all-nodes group goes to every port (RFC 4541 section 3), in
	// both worlds: the marker.
	marker:      netip.MustParseAddr("ff02::1"),
	markerWhy:   "all-nodes ff02::1: every port (RFC 4541 3)",
	headers:     48, // IPv6 (no extension headers) and UDP
	loopOpt:     "IPV6_MULTICAST_LOOP",
	rfcRouter:   "RFC 3810 7.4",
	rfcCompat:   "RFC 3810 8.3.2",
	bridgeVer:   []string{"mcast_mld_version", "2"},
	versionKnob: "force_mld_version",
	hostNet:     [2]netip.Prefix{netip.MustParsePrefix("fd00:198:19::/64"), netip.MustParsePrefix("fd00:198:19:1::/64")},
	inventory:   mldDiffInventory,
	proto:       mldProto{},
	script:      mldDiffScript,
	opKinds:     []diffOpKind{diffJoin, diffLeave, diffBlock, diffUnblock, diffSJoin, diffSDrop, diffSFilter, diffVersion},
	// Version changes are the slow steps (a periodic report, then the
	// answer to the next query, and a MALI back to MLDv2): the script
	// has four, and random steps draw them half as often as the IGMP
	// test does, to keep the run as short as the IGMP test's.
	opWeights: map[diffOpKind]int{diffJoin: 3, diffLeave: 2, diffBlock: 2, diffUnblock: 1, diffSJoin: 3, diffSDrop: 2,
		diffSFilter: 2, diffVersion: 1},
	// The script is three steps longer than the IGMP test's: two random
	// steps fewer keep the whole as long.
	randomSteps: diffRandomSteps - 2,
}

// mldDiffInventory gives the four nodes IPv6 overlays: IPv6 is then on for
// their TAPs, with an EUI-64 link-local address, and meshcast snoops MLD
// and runs an MLD querier there.
const mldDiffInventory = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX,OVERLAY-IPV6/PREFIX
198.18.0.1      demo,198.19.0.1/24,fd00:198:19::1/64
198.18.0.2      demo,198.19.0.2/24,fd00:198:19::2/64
198.18.0.3      demo,198.19.0.3/24,fd00:198:19::3/64
198.18.0.4      demo,198.19.0.4/24,fd00:198:19::4/64
`

// mldDiffScript is the fixed sequence of the MLD test. The notes name the
// bridge_mld.sh case a step reaches and the RFC 3810 section 7.4 row the
// router applies; X are the forwarded and Y the blocked sources of an
// EXCLUDE port, Q(G,S) a group-and-source-specific query, LLQT the last
// listener query time (2 x 200ms).
func mldDiffScript() []diffOp {
	return []diffOp{
		{kind: diffBaseline, note: "nothing joined: every group unregistered"},
		{kind: diffVersion, host: 1, ver: 1, note: "h1 is an MLDv1 listener from here on"},
		{kind: diffJoin, host: 1, group: mldG3, note: "MLDv1 join; only the sender joined: h1's own traffic goes nowhere"},
		{kind: diffSJoin, host: 2, group: mldGSSM, src: 1, note: "mldv2include: ALLOW({h1}) makes INCLUDE({h1}); IS_IN at the queries"},
		{kind: diffSJoin, host: 2, group: mldGSSM, src: 3, note: "mldv2inc_allow: INCLUDE(A) ALLOW(B) -> INCLUDE(A+B)"},
		{kind: diffJoin, host: 4, group: mldG0, note: "TO_EX({}): EXCLUDE({},{})"},
		{kind: diffSJoin, host: 3, group: mldG0, src: 1, note: "mldv2star_ex_auto_add: the new (h1, G) source entry forwards to h4's EXCLUDE port too"},
		{kind: diffSJoin, host: 3, group: mldG0, src: 2, note: "mldv2inc_allow beside an EXCLUDE port"},
		{kind: diffSDrop, host: 2, group: mldGSSM, src: 1, note: "mldv2inc_block: INCLUDE(A) BLOCK(B) -> INCLUDE(A), Q(G,A*B): h1 goes after LLQT"},
		{kind: diffBlock, host: 4, group: mldG0, src: 1, note: "mldv2exc_block: EXCLUDE(X,Y) BLOCK(A) -> EXCLUDE(X+(A-Y),Y), Q(G,A-X-Y): h1 blocked after LLQT"},
		{kind: diffSFilter, host: 3, group: mldG0, mode: "exclude", srcs: []int{1, 4},
			note: "mldv2inc_to_exclude: INCLUDE({h1,h2}) TO_EX({h1,h4}) -> EXCLUDE({h1},{h4}), Q(G,{h1}); then mldv2exc_is_exclude at the queries: EXCLUDE({},{h1,h4})"},
		{kind: diffVersion, host: 4, ver: 1, note: "v2 to v1 with an existing exclusion: IS_EX({}), every source"},
		{kind: diffSJoin, host: 1, group: mldG0, src: 4, note: "MLDv1 source join onto a group with source-specific state: IS_EX({}), every source"},
		{kind: diffVersion, host: 4, ver: 2, note: "back to v2: the exclusion returns"},
		{kind: diffUnblock, host: 4, group: mldG0, src: 1, note: "mldv2exc_allow: EXCLUDE(X,Y) ALLOW(A) -> EXCLUDE(X+A,Y-A)"},
		{kind: diffSFilter, host: 3, group: mldG0, mode: "include", srcs: []int{2, 4},
			note: "EXCLUDE(X,Y) TO_IN(A) -> EXCLUDE(X+A,Y-A), Q(G,X-A), Q(G); mldv2exc_is_include with the answer; mldv2exc_timeout: INCLUDE({h2,h4}) after LLQT"},
		{kind: diffVersion, host: 3, ver: 1, note: "v2 to v1 with an INCLUDE source filter"},
		{kind: diffBaseline, settle: true, note: "a MALI later: the MLDv2 source timers of h3's last v2 report have run out"},
		{kind: diffSDrop, host: 1, group: mldG0, src: 4, note: "MLDv1 done of a source-specific membership"},
		{kind: diffSJoin, host: 2, group: mldGLL, src: 1, note: "link-local scope: the bridge snoops ff02::cc, meshcast sends ff02::/16 everywhere"},
		{kind: diffJoin, host: 1, group: mldGLL, note: "MLDv1 join of ff02::cc"},
		{kind: diffJoin, host: 4, group: mldGLL},
		{kind: diffBlock, host: 4, group: mldGLL, src: 2, note: "mldv2exc_block on ff02::cc"},
		{kind: diffLeave, host: 1, group: mldGLL, note: "MLDv1 done of ff02::cc"},
	}
}

// ---------------------------------------------------------------------------
// IPv6: MLD

type mldProto struct{}

func (mldProto) socket(n *nstest.Node) (int, error) {
	fd := -1
	err := n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func (p mldProto) openSender(h *diffHost) error {
	fd, err := p.socket(h.node)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.send = fd
	h.mu.Unlock()
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: h.addr.As16()}); err != nil {
		return fmt.Errorf("bind %s: %w", h.addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, h.ifindex); err != nil {
		return fmt.Errorf("IPV6_MULTICAST_IF: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0); err != nil {
		return fmt.Errorf("IPV6_MULTICAST_LOOP: %w", err)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1)
}

func (mldProto) send(h *diffHost, fd int, payload []byte, group netip.Addr) error {
	sa := &unix.SockaddrInet6{Port: diffPort, Addr: group.As16()}
	if group.IsLinkLocalMulticast() {
		sa.ZoneId = uint32(h.ifindex)
	}
	return unix.Sendto(fd, payload, 0, sa)
}

func (mldProto) counters(w *diffWorld, _ *diffHost) (in, out []string) {
	in = append(diffDataRules(w, "ip6"), `icmpv6 type mld-listener-query counter comment "q"`)
	for _, r := range [][2]string{{"mld-listener-report", "r1"}, {"mld2-listener-report", "r2"}, {"mld-listener-done", "rleave"}} {
		out = append(out, fmt.Sprintf("icmpv6 type %s counter comment %q", r[0], r[1]))
	}
	return in, out
}

func (p mldProto) member(w *diffWorld, h *diffHost, op diffOp) error {
	g := w.fam.groups[op.group]
	req := mldGroupReq(h.ifindex, g)
	srcOpt := func(opt int) error {
		return unix.SetsockoptString(h.socketFor(op), unix.IPPROTO_IPV6, opt, mldGroupSourceReq(h.ifindex, g, w.addrOf(op.src)))
	}
	switch op.kind {
	case diffJoin:
		fd, err := p.socket(h.node)
		if err != nil {
			return err
		}
		h.asm[op.group] = fd
		return unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.MCAST_JOIN_GROUP, req)
	case diffLeave:
		fd := h.asm[op.group]
		delete(h.asm, op.group)
		defer unix.Close(fd)
		return unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.MCAST_LEAVE_GROUP, req)
	case diffBlock:
		return srcOpt(unix.MCAST_BLOCK_SOURCE)
	case diffUnblock:
		return srcOpt(unix.MCAST_UNBLOCK_SOURCE)
	case diffSJoin:
		if _, ok := h.ssm[op.group]; !ok {
			fd, err := p.socket(h.node)
			if err != nil {
				return err
			}
			h.ssm[op.group] = fd
		}
		return srcOpt(unix.MCAST_JOIN_SOURCE_GROUP)
	case diffSDrop:
		// The socket stays open (without membership once its last
		// source is gone) and serves later source joins.
		return srcOpt(unix.MCAST_LEAVE_SOURCE_GROUP)
	case diffSFilter:
		// The socket is a member (the kernel wants a prior join):
		// its filter changes at once, mode and sources, and an
		// INCLUDE {} filter leaves.
		var srcs []netip.Addr
		for _, s := range op.srcs {
			srcs = append(srcs, w.addrOf(s))
		}
		mode := unix.MCAST_INCLUDE
		if op.mode == "exclude" {
			mode = unix.MCAST_EXCLUDE
		}
		return unix.SetsockoptString(h.socketFor(op), unix.IPPROTO_IPV6, unix.MCAST_MSFILTER, mldGroupFilter(h.ifindex, g, mode, srcs))
	}
	return fmt.Errorf("unknown step %v", op)
}

// The RFC 3678 structures: struct group_req, group_source_req and
// group_filter, whose struct sockaddr_storage members are aligned to a
// pointer.
var (
	mldPtr     = int(unsafe.Sizeof(uintptr(0)))
	mldStorage = 128 // sizeof(struct sockaddr_storage)
)

func mldAlign(n int) int { return (n + mldPtr - 1) &^ (mldPtr - 1) }

// mldSockaddr is a as a struct sockaddr_in6 in a struct sockaddr_storage.
func mldSockaddr(a netip.Addr) []byte {
	b := make([]byte, mldStorage)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	a16 := a.As16()
	copy(b[8:24], a16[:]) // after sin6_port and sin6_flowinfo
	return b
}

// mldGroupReq is a struct group_req: interface, group.
func mldGroupReq(ifindex int, group netip.Addr) string {
	b := make([]byte, mldAlign(4))
	binary.NativeEndian.PutUint32(b, uint32(ifindex))
	return string(append(b, mldSockaddr(group)...))
}

// mldGroupSourceReq is a struct group_source_req: interface, group,
// source.
func mldGroupSourceReq(ifindex int, group, source netip.Addr) string {
	return mldGroupReq(ifindex, group) + string(mldSockaddr(source))
}

// mldGroupFilter is a struct group_filter: interface, group, filter mode,
// number of sources, sources.
func mldGroupFilter(ifindex int, group netip.Addr, mode int, srcs []netip.Addr) string {
	b := []byte(mldGroupReq(ifindex, group))
	b = binary.NativeEndian.AppendUint32(b, uint32(mode))
	b = binary.NativeEndian.AppendUint32(b, uint32(len(srcs)))
	b = append(b, make([]byte, mldAlign(len(b))-len(b))...)
	for _, s := range srcs {
		b = append(b, mldSockaddr(s)...)
	}
	return string(b)
}

// diffEnableIPv6 turns IPv6 on for ifname in n (nstest turns it off in
// every namespace), without duplicate address detection: the link-local
// address is usable at once.
func diffEnableIPv6(t *testing.T, n *nstest.Node, ifname string) {
	t.Helper()
	conf := "/proc/sys/net/ipv6/conf/" + ifname + "/"
	err := n.Do(func() error {
		for _, kv := range [][2]string{{"accept_dad", "0"}, {"disable_ipv6", "0"}} {
			if err := os.WriteFile(conf+kv[0], []byte(kv[1]), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		nstest.SkipOrFail(t, "IPv6 cannot be switched on for %s in %s: %v", ifname, n, err)
	}
}

// diffBridgeIPv6 readies the bridge world for MLD: the bridge's querier
// sends from a link-local address of the bridge device, and without one
// it sends no queries (and the bridge, seeing no querier, floods every
// group); the hosts' reports come from their link-local addresses. So
// IPv6 is on for the bridge too, and every address is usable before the
// querier starts. The bridge's ports stay without IPv6: their own stacks
// send nothing to the hosts.
func diffBridgeIPv6(t *testing.T, w *diffWorld) {
	t.Helper()
	diffEnableIPv6(t, w.sw, nstest.BridgeName)
	diffWaitIPv6(t, w.sw, nstest.BridgeName, netip.Addr{})
	for _, h := range w.hosts {
		diffWaitIPv6(t, h.node, h.ifname, h.addr)
	}
}

// diffWaitIPv6 waits until ifname in n has a link-local address and addr
// (if valid), both past duplicate address detection (about a second).
func diffWaitIPv6(t *testing.T, n *nstest.Node, ifname string, addr netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", ifname)
		if err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
		if strings.Contains(out, "dadfailed") {
			t.Fatalf("%s %s: duplicate address detection failed:\n%s", n, ifname, out)
		}
		if strings.Contains(out, "inet6 fe80::") && (!addr.IsValid() || strings.Contains(out, "inet6 "+addr.String()+"/")) &&
			!strings.Contains(out, "tentative") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: no usable link-local address (and %v) after 10s:\n%s", n, ifname, addr, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
