package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// An h6Class is one kind of crafted IPv6 packet (from its fixed header on)
// sent at a node over an IPv6 underlay, and where it must be counted:
//
//   - "drops:R1|R2": meshcast's drop reasons (the daemon saw it and refused it);
//   - "kernel:C1|C2": the counters of /proc/net/snmp6 in the target's
//     namespace (the kernel refused it before meshcast could see it);
//   - "kernel-undelivered": received by the kernel's IPv6 (Ip6InReceives)
//     and delivered to no protocol (Ip6InDelivers): for what the kernel
//     drops without an error counter of its own, such as a segment
//     routing header while seg6 is off (the report shows that no error
//     counter moved);
//   - "tap": delivered, as it should be: the TAP's rx_packets.
//
// want is how much the counter must grow by, perClass6 when 0.
type h6Class struct {
	name    string
	counter string
	want    int
	build   func(i int) []byte
}

const perClass6 = 1000

// h6Tolerance is the number of frames that may reach the TAP, or of drops
// meshcast may count, during a class that must show neither: the overlay's
// own background traffic (IGMP queries and reports, ARP).
const h6Tolerance = 10

// TestIntegrationHostile6 is the IPv6-underlay variant of
// TestIntegrationHostilePackets: three daemons on an IPv6-only underlay
// (fd00:198:18::/64), for GRE (with a key) and VXLAN, and a fourth host
// outside the inventory that writes crafted Ethernet frames at one of them
// through AF_PACKET, spoofing a peer's address or not: truncated IPv6
// headers, bad payload lengths, extension header chains (hop-by-hop,
// routing types 0, 2 and 4, fragments, a chain of many), wrong next
// headers, non-peer sources, bad UDP checksums (zero is refused over IPv6),
// broken GRE and VXLAN headers and broken inner frames, mixed with valid
// packets from a peer's address that must be delivered. Each class must
// show up under its counter, nothing else may reach the TAP, the daemon
// must survive with bounded memory and deliver multicast afterwards.
func TestIntegrationHostile6(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testHostile6(t, encap) })
	}
}

func testHostile6(t *testing.T, encap string) {
	nt := nstest.NewNetWith(t, 4, nstest.Options{Underlay: nstest.UnderlayIPv6})
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	target, p2, p3, attacker := nt.Node(1), nt.Node(2), nt.Node(3), nt.Node(4)
	var inv strings.Builder
	for i, n := range []*nstest.Node{target, p2, p3} {
		fmt.Fprintf(&inv, "%s demo,198.19.0.%d/24\n", n.Underlay6, i+1)
	}
	path := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(path, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	const key = 42
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	var daemons []*nstest.Proc
	for i, n := range []*nstest.Node{target, p2, p3} {
		args := []string{"run", "--peers", path, "--local", n.Underlay6.String(), "--encap", encap, "--control", socks[i]}
		if encap == "gre" {
			args = append(args, "--gre-key", strconv.Itoa(key))
		}
		daemons = append(daemons, n.Start(t, bin, args...))
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, d.Output())
		}
	}
	state := hostileState(t, socks[0], daemons[0])
	st0 := state()
	if len(st0.Peers) != 2 {
		t.Fatalf("the target has %d peers, want 2", len(st0.Peers))
	}
	// Let malformed IPv6 reach the target.
	hostileOpenPath(t, nt, target, attacker, "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-iptables")

	// The attacker resolves the target's underlay MAC as any host would.
	if out, err := attacker.Exec(t, "ping", "-6", "-c", "1", "-W", "2", target.Underlay6.String()); err != nil {
		t.Fatalf("ping6 from the attacker to the target: %v\n%s", err, out)
	}
	targetMAC := h6Neighbour(t, attacker, target.Underlay6)
	if want := linkMAC(t, target, nstest.NodeLink); targetMAC.String() != want.String() {
		t.Fatalf("the attacker's neighbour entry for %v is %v; the target's %s is %v", target.Underlay6, targetMAC, nstest.NodeLink, want)
	}

	dst := target.Underlay6
	peer, stranger := p2.Underlay6, attacker.Underlay6
	offLink := netip.MustParseAddr("fd00:198:19::99") // in no inventory, on no link
	targetTAPMAC := overlay.MACFor(netip.MustParseAddr("198.19.0.1"))
	peerMAC := overlay.MACFor(netip.MustParseAddr("198.19.0.2"))
	vni := st0.VNI
	rss0, _ := procMemory(t, daemons[0].Pid())

	// Inner frames. The good one is unicast to the target's TAP with a
	// local experimental EtherType, which its host drops without a reply.
	eth := func(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
		f := make([]byte, 14+len(payload))
		copy(f[0:6], dst)
		copy(f[6:12], src)
		binary.BigEndian.PutUint16(f[12:14], typ)
		copy(f[14:], payload)
		return f
	}
	goodInner := func(i int) []byte {
		p := make([]byte, 46)
		binary.BigEndian.PutUint32(p, uint32(i))
		return eth(targetTAPMAC, peerMAC, 0x88b5, p)
	}

	// Upper-layer packets: GRE, and UDP (with its checksum over the IPv6
	// pseudo-header) carrying VXLAN.
	k := binary.BigEndian.AppendUint32(nil, key)
	vxlanBody := vxlanHeader
	udp := func(src netip.Addr, dport uint16, body []byte) []byte {
		u := make([]byte, 8+len(body))
		binary.BigEndian.PutUint16(u[0:2], 50000)
		binary.BigEndian.PutUint16(u[2:4], dport)
		binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
		copy(u[8:], body)
		binary.BigEndian.PutUint16(u[6:8], h6UDPChecksum(src, dst, u))
		return u
	}
	greUpper := func(f []byte) []byte { return greHeader(0x2000, overlay.EtherTypeTEB, k, f) }
	vxlanUpper := func(src netip.Addr, f []byte) []byte {
		return udp(src, overlay.DefaultVXLANPort, vxlanBody(0x08, false, vni, f))
	}
	var nh, otherNH byte // the tunnel's next header and the other encapsulation's
	var upper func(src netip.Addr, f []byte) []byte
	if encap == "gre" {
		nh, otherNH = overlay.ProtoGRE, overlay.ProtoUDP
		upper = func(_ netip.Addr, f []byte) []byte { return greUpper(f) }
	} else {
		nh, otherNH = overlay.ProtoUDP, overlay.ProtoGRE
		upper = vxlanUpper
	}
	pkt := func(src netip.Addr, next byte, payload []byte) []byte { return h6Packet(src, dst, next, payload) }
	fromPeer := func(inner []byte) []byte { return pkt(peer, nh, upper(peer, inner)) }
	setPayloadLen := func(p []byte, n int) []byte {
		binary.BigEndian.PutUint16(p[4:6], uint16(n))
		return p
	}
	cat := func(bs ...[]byte) []byte { return slices.Concat(bs...) }
	padN4 := []byte{1, 4, 0, 0, 0, 0} // PadN: 2 + 6 option bytes fill 8
	// Fragment IDs: a range per class, so that no two classes' fragments
	// meet in one reassembly queue.
	fragID := func(class, i int) uint32 { return uint32(class)<<24 | uint32(i) }

	classes := []h6Class{
		// The fixed header.
		{"IPv6 header cut to 20 bytes", "kernel:Ip6InHdrErrors|Ip6InTruncatedPkts", 0, func(i int) []byte {
			return fromPeer(goodInner(i))[:20]
		}},
		{"IPv6 version field 4", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			p := fromPeer(goodInner(i))
			p[0] = 0x40
			return p
		}},
		{"payload length 200 beyond the packet", "kernel:Ip6InTruncatedPkts", 0, func(i int) []byte {
			p := fromPeer(goodInner(i))
			return setPayloadLen(p, len(p)-40+200)
		}},
		{"payload length 2: shorter than the GRE/UDP header", map[string]string{"gre": "drops:truncated", "vxlan": "kernel:Udp6InErrors"}[encap], 0, func(i int) []byte {
			return setPayloadLen(fromPeer(goodInner(i)), 2)
		}},
		{"payload length 0 without a jumbo option", map[string]string{"gre": "drops:truncated", "vxlan": "kernel:Udp6InErrors"}[encap], 0, func(i int) []byte {
			return setPayloadLen(fromPeer(goodInner(i)), 0)
		}},
		{"payload length cutting the inner frame to 6 bytes", map[string]string{"gre": "drops:inner_short", "vxlan": "kernel:Udp6InErrors"}[encap], 0, func(i int) []byte {
			p := fromPeer(goodInner(i))
			return setPayloadLen(p, len(upper(peer, nil))+6)
		}},
		{"payload length shorter than the frame: trailer trimmed, delivered", "tap", 0, func(i int) []byte {
			p := fromPeer(goodInner(i))
			n := len(p) - 40
			return setPayloadLen(append(p, make([]byte, 32)...), n)
		}},
		{"destination not the node's address", "kernel:Ip6InAddrErrors", 0, func(i int) []byte {
			p := fromPeer(goodInner(i))
			p[39] = 0x99
			return p
		}},
		{"source address multicast", "kernel:Ip6InHdrErrors|Ip6InAddrErrors", 0, func(i int) []byte {
			return pkt(netip.MustParseAddr("ff02::1"), nh, upper(netip.MustParseAddr("ff02::1"), goodInner(i)))
		}},

		// Hop-by-hop options.
		{"hop-by-hop with PadN (valid), delivered", "tap", 0, func(i int) []byte {
			return pkt(peer, 0, cat(h6Opts(nh, padN4), upper(peer, goodInner(i))))
		}},
		{"hop-by-hop option running past its header", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			return pkt(peer, 0, cat(h6Opts(nh, []byte{0x1e, 200, 0, 0, 0, 0}), upper(peer, goodInner(i))))
		}},
		{"hop-by-hop PadN with non-zero padding", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			return pkt(peer, 0, cat(h6Opts(nh, []byte{1, 4, 1, 2, 3, 4}), upper(peer, goodInner(i))))
		}},
		{"hop-by-hop unknown option, action discard (01)", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			return pkt(peer, 0, cat(h6Opts(nh, []byte{0x5e, 4, 0, 0, 0, 0}), upper(peer, goodInner(i))))
		}},
		{"hop-by-hop header length beyond the packet", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			h := h6Opts(nh, padN4)
			h[1] = 100 // 808 bytes
			return pkt(peer, 0, cat(h, upper(peer, goodInner(i))))
		}},
		{"hop-by-hop not first (after destination options)", "kernel:Ip6InUnknownProtos", 0, func(i int) []byte {
			return pkt(peer, 60, cat(h6Opts(0, padN4), h6Opts(nh, padN4), upper(peer, goodInner(i))))
		}},

		// Routing headers.
		{"routing type 0, segments left 2", "kernel:Ip6InHdrErrors", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6Routing(nh, 0, 2, peer, p3.Underlay6), upper(peer, goodInner(i))))
		}},
		{"routing type 0, segments left 0 (ignored), delivered", "tap", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6Routing(nh, 0, 0, peer, p3.Underlay6), upper(peer, goodInner(i))))
		}},
		{"routing type 2, segments left 1", "kernel:Ip6InHdrErrors|Ip6InAddrErrors", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6Routing(nh, 2, 1, dst), upper(peer, goodInner(i))))
		}},
		{"routing type 2, segments left 0 (ignored), delivered", "tap", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6Routing(nh, 2, 0, dst), upper(peer, goodInner(i))))
		}},
		{"routing type 4 (SRH; seg6 off), segments left 1", "kernel-undelivered", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6SRH(nh, 1, dst, p3.Underlay6), upper(peer, goodInner(i))))
		}},
		{"routing type 4 (SRH; seg6 off), segments left 0", "kernel-undelivered", 0, func(i int) []byte {
			return pkt(peer, 43, cat(h6SRH(nh, 0, dst), upper(peer, goodInner(i))))
		}},

		// Fragments.
		{"lone first fragment, never completed", "kernel:Ip6ReasmReqds", 0, func(i int) []byte {
			u := upper(peer, goodInner(i))
			return pkt(peer, 44, cat(h6Frag(nh, 0, true, fragID(1, i)), u[:64]))
		}},
		{"atomic fragment (offset 0, M=0), delivered", "tap", 0, func(i int) []byte {
			return pkt(peer, 44, cat(h6Frag(nh, 0, false, fragID(2, i)), upper(peer, goodInner(i))))
		}},
		{"two fragments, reassembled and delivered", "tap", perClass6 / 2, func(i int) []byte {
			u := upper(peer, goodInner(i/2))
			if i%2 == 0 {
				return pkt(peer, 44, cat(h6Frag(nh, 0, true, fragID(3, i/2)), u[:48]))
			}
			return pkt(peer, 44, cat(h6Frag(nh, 48/8, false, fragID(3, i/2)), u[48:]))
		}},
		{"two overlapping fragments", "kernel:Ip6ReasmFails", perClass6 / 2, func(i int) []byte {
			u := upper(peer, goodInner(i/2))
			if i%2 == 0 {
				return pkt(peer, 44, cat(h6Frag(nh, 0, true, fragID(4, i/2)), u[:48]))
			}
			return pkt(peer, 44, cat(h6Frag(nh, 32/8, false, fragID(4, i/2)), u[32:]))
		}},
		{"first fragment without the upper-layer header (RFC 7112)", "kernel:Ip6InHdrErrors|Ip6ReasmFails", 0, func(i int) []byte {
			// Destination options fill the fragment: GRE/UDP would follow
			// in a later one.
			return pkt(peer, 44, cat(h6Frag(60, 0, true, fragID(5, i)), h6Opts(nh, padN4)))
		}},
		{"chain of 12 headers (HBH, 8 dest opts, RH0 SL 0, atomic frag, dest opts), delivered", "tap", 0, func(i int) []byte {
			chain := h6Opts(60, padN4)
			for range 8 {
				chain = cat(chain, h6Opts(60, padN4))
			}
			chain[len(chain)-8] = 43
			chain = cat(chain, h6Routing(44, 0, 0, peer), h6Frag(60, 0, false, fragID(6, i)), h6Opts(nh, padN4))
			return pkt(peer, 0, cat(chain, upper(peer, goodInner(i))))
		}},

		// Next header.
		{"unknown next header 253", "kernel:Ip6InUnknownProtos", 0, func(i int) []byte {
			return pkt(peer, 253, upper(peer, goodInner(i)))
		}},
		{fmt.Sprintf("the tunnel packet labelled next header %d", otherNH), map[string]string{"gre": "kernel:Udp6InErrors", "vxlan": "kernel:Ip6InUnknownProtos"}[encap], 0, func(i int) []byte {
			return pkt(peer, otherNH, upper(peer, goodInner(i)))
		}},
		{fmt.Sprintf("the other encapsulation's packet labelled next header %d", nh), map[string]string{"gre": "drops:gre_flags", "vxlan": "kernel:Udp6InErrors"}[encap], 0, func(i int) []byte {
			if encap == "gre" {
				return pkt(peer, nh, vxlanUpper(peer, goodInner(i)))
			}
			return pkt(peer, nh, greUpper(goodInner(i)))
		}},

		// Sources.
		{"non-peer (the attacker's own address), well formed", "drops:not_peer", 0, func(i int) []byte {
			return pkt(stranger, nh, upper(stranger, goodInner(i)))
		}},
		{"non-peer off-link fd00:198:19::99, well formed", "drops:not_peer", 0, func(i int) []byte {
			return pkt(offLink, nh, upper(offLink, goodInner(i)))
		}},
		{"source spoofed as the target's own address", "drops:not_peer", 0, func(i int) []byte {
			return pkt(dst, nh, upper(dst, goodInner(i)))
		}},
		{"non-peer, garbage", "drops:not_peer", 0, func(i int) []byte {
			g := []byte{0xde, 0xad, byte(i), 0xef, 1, 2, 3, 4, 5, 6, 7, 8}
			if encap == "vxlan" {
				g = udp(stranger, overlay.DefaultVXLANPort, g)
			}
			return pkt(stranger, nh, g)
		}},
		{"well formed from the peer's address (spoofed), delivered", "tap", 0, func(i int) []byte {
			return fromPeer(goodInner(i))
		}},

		// Inner frames.
		{"inner frame shorter than 14 bytes", "drops:inner_short", 0, func(i int) []byte {
			return fromPeer([]byte{1, 2, 3, 4, 5, 6, 7})
		}},
		{"inner frame longer than the MTU", "drops:inner_too_big", 0, func(i int) []byte {
			return fromPeer(eth(targetTAPMAC, peerMAC, 0x88b5, make([]byte, 2000)))
		}},
		{"inner source MAC is the node's own", "drops:loop", 0, func(i int) []byte {
			return fromPeer(eth(targetTAPMAC, targetTAPMAC, 0x88b5, make([]byte, 46)))
		}},
		{"inner source MAC is multicast", "drops:bad_source_mac", 0, func(i int) []byte {
			return fromPeer(eth(targetTAPMAC, net.HardwareAddr{1, 0, 0x5e, 1, 2, 3}, 0x88b5, make([]byte, 46)))
		}},
		{"inner unicast to another MAC", "drops:not_local", 0, func(i int) []byte {
			return fromPeer(eth(net.HardwareAddr{2, 0x6d, 198, 19, 0, 99}, peerMAC, 0x88b5, make([]byte, 46)))
		}},
		{"inner IGMP with a bad checksum", "drops:igmp_checksum", 0, func(i int) []byte {
			m := reportV3(igmp.RecordSpec{Type: igmp.ModeIsExclude, Group: netip.MustParseAddr("239.9.9.9")})
			m[2] ^= 0xff
			return fromPeer(igmpFrame(netip.MustParseAddr("198.19.0.2"), allReports, m))
		}},
	}
	if encap == "gre" {
		for _, b := range hostileGREBodies(key, goodInner) {
			classes = append(classes, h6Class{b.name, b.counter, 0, func(i int) []byte { return pkt(peer, nh, b.body(i)) }})
		}
	} else {
		classes = append(classes,
			h6Class{"UDP checksum zero (RFC 6935/6936: refused)", "kernel:Udp6InCsumErrors", 0, func(i int) []byte {
				u := vxlanUpper(peer, goodInner(i))
				u[6], u[7] = 0, 0
				return pkt(peer, nh, u)
			}},
			h6Class{"UDP checksum wrong", "kernel:Udp6InCsumErrors", 0, func(i int) []byte {
				u := vxlanUpper(peer, goodInner(i))
				u[6] ^= 0x5a
				return pkt(peer, nh, u)
			}},
			h6Class{"UDP header cut to 4 bytes", "kernel:Udp6InErrors", 0, func(i int) []byte {
				return pkt(peer, nh, []byte{0xc3, 0x50, 0x12, 0xb5})
			}},
			h6Class{"UDP length beyond the payload", "kernel:Udp6InErrors", 0, func(i int) []byte {
				u := vxlanUpper(peer, goodInner(i))
				binary.BigEndian.PutUint16(u[4:6], uint16(len(u)+100))
				return pkt(peer, nh, u)
			}},
			h6Class{"UDP length cutting the inner frame to 6 bytes (checksum over that)", "drops:inner_short", 0, func(i int) []byte {
				u := vxlanUpper(peer, goodInner(i))
				binary.BigEndian.PutUint16(u[4:6], 8+8+6)
				u[6], u[7] = 0, 0
				binary.BigEndian.PutUint16(u[6:8], h6UDPChecksum(peer, dst, u[:8+8+6]))
				return pkt(peer, nh, u)
			}},
			h6Class{"VXLAN to UDP port 4790 (no socket)", "kernel:Udp6NoPorts", 0, func(i int) []byte {
				return pkt(peer, nh, udp(peer, 4790, vxlanBody(0x08, false, vni, goodInner(i))))
			}},
			h6Class{"VXLAN header cut to 4 bytes", "drops:truncated", 0, func(i int) []byte {
				return pkt(peer, nh, udp(peer, overlay.DefaultVXLANPort, []byte{0x08, 0, 0, 0}))
			}},
			h6Class{"VXLAN without the I flag", "drops:vxlan_flags", 0, func(i int) []byte {
				return pkt(peer, nh, udp(peer, overlay.DefaultVXLANPort, vxlanBody(0x00, false, vni, goodInner(i))))
			}},
			h6Class{"VXLAN reserved bits set", "drops:vxlan_reserved", 0, func(i int) []byte {
				return pkt(peer, nh, udp(peer, overlay.DefaultVXLANPort, vxlanBody(0x08, true, vni, goodInner(i))))
			}},
			h6Class{"VXLAN wrong VNI", "drops:vxlan_vni", 0, func(i int) []byte {
				return pkt(peer, nh, udp(peer, overlay.DefaultVXLANPort, vxlanBody(0x08, false, vni^1, goodInner(i))))
			}},
		)
	}

	// The attacker writes whole Ethernet frames to the target's underlay
	// MAC: nothing in its own stack checks or fixes them.
	send := hostileAttacker(t, attacker, targetMAC, unix.ETH_P_IPV6)

	type snap struct {
		kernel, drops map[string]uint64
		tap           uint64
	}
	take := func() snap {
		return snap{h6SNMP(t, target), state().Drops, target.MustCounters(t, "mcbr-demo").RxPackets}
	}
	// measure returns how much the class's counter grew between two
	// snapshots, the frames the TAP received, meshcast's drops (all
	// reasons) and the kernel's error counters that moved.
	measure := func(c h6Class, b, a snap) (got, tap, drops uint64, kernelErrs map[string]uint64) {
		tap = a.tap - b.tap
		for n, v := range a.drops {
			drops += v - b.drops[n]
		}
		kernelErrs = map[string]uint64{}
		for n, v := range a.kernel {
			if d := v - b.kernel[n]; d > 0 && h6ErrorCounter(n) {
				kernelErrs[n] = d
			}
		}
		kind, names, _ := strings.Cut(c.counter, ":")
		switch kind {
		case "drops":
			for _, n := range strings.Split(names, "|") {
				got += a.drops[n] - b.drops[n]
			}
		case "kernel":
			for _, n := range strings.Split(names, "|") {
				got += a.kernel[n] - b.kernel[n]
			}
		case "kernel-undelivered":
			recv := a.kernel["Ip6InReceives"] - b.kernel["Ip6InReceives"]
			deliv := a.kernel["Ip6InDelivers"] - b.kernel["Ip6InDelivers"]
			if recv > deliv {
				got = recv - deliv
			}
		case "tap":
			got = tap
		}
		return got, tap, drops, kernelErrs
	}

	total := 0
	var report []string
	for _, c := range classes {
		want := c.want
		if want == 0 {
			want = perClass6
		}
		before := take()
		total += send(c.name, perClass6, c.build)
		// Wait for the counter (the daemon counts as it reads), then a
		// little more for anything that should not come.
		var after snap
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			after = take()
			if got, _, _, _ := measure(c, before, after); got >= uint64(want) || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		after = take()
		got, tap, drops, kerrs := measure(c, before, after)
		var ks []string
		for _, n := range slices.Sorted(func(yield func(string) bool) {
			for n := range kerrs {
				if !yield(n) {
					return
				}
			}
		}) {
			ks = append(ks, fmt.Sprintf("%s+%d", n, kerrs[n]))
		}
		report = append(report, fmt.Sprintf("%-82s %5d  %-42s %5d  tap+%-5d drops+%-5d %s",
			c.name, perClass6, c.counter, got, tap, drops, strings.Join(ks, " ")))
		if got < uint64(want)*99/100 {
			t.Errorf("%s: %s grew by %d, want %d", c.name, c.counter, got, want)
		}
		if daemons[0].Exited() {
			t.Fatalf("the target's daemon exited during %q:\n%s", c.name, daemons[0].Output())
		}
		switch kind, _, _ := strings.Cut(c.counter, ":"); kind {
		case "tap":
			if tap > uint64(want)+h6Tolerance {
				t.Errorf("%s: the TAP received %d frames for %d delivered", c.name, tap, want)
			}
			if drops > h6Tolerance {
				t.Errorf("%s: meshcast counted %d drops for packets that must be delivered", c.name, drops)
			}
		case "drops":
			if tap > h6Tolerance {
				t.Errorf("%s: the TAP received %d frames", c.name, tap)
			}
		default: // the kernel drops them: meshcast sees nothing
			if tap > h6Tolerance || drops > h6Tolerance {
				t.Errorf("%s: the TAP received %d frames and meshcast counted %d drops for packets the kernel should drop", c.name, tap, drops)
			}
		}
	}
	st := state() // alive
	rss1, hwm := procMemory(t, daemons[0].Pid())
	t.Logf("%s over IPv6: %d crafted packets in %d classes (class, sent, counter, grew by, TAP, meshcast drops, kernel error counters that moved):\n%s",
		encap, total, len(classes), strings.Join(report, "\n"))
	t.Logf("%s over IPv6: target alive (%d peers); RSS %.1f -> %.1f MiB, peak %.1f MiB",
		encap, len(st.Peers), float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(hwm)/(1<<20))
	if len(st.Peers) != 2 {
		t.Errorf("the target has %d peers after the barrage, want 2", len(st.Peers))
	}
	if rss1-rss0 > 16<<20 && memoryBounded(t) {
		t.Errorf("RSS grew by %d MiB during the barrage; the bound is 16 MiB", (rss1-rss0)>>20)
	}

	// After the storm: multicast from a peer still reaches the target and
	// the other peer.
	const count = 500
	var recvs []*nstest.Proc
	for _, n := range []*nstest.Node{target, p3} {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
			"--count", strconv.Itoa(count), "--timeout", "30s")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on %s: %v\n%s", n, err, p.Output())
		}
		recvs = append(recvs, p)
	}
	waitMembers(t, p2, bin, socks[1], "239.1.2.3", 2)
	if out, err := p2.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "1000"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for i, p := range recvs {
		p.Wait(40 * time.Second)
		got := received(t, p.Output())
		t.Logf("%s over IPv6 after the barrage: %s received %d/%d multicast datagrams from node 2", encap, []string{"the target", "node 3"}[i], got, count)
		if got*1000 < count*999 {
			t.Errorf("%s received %d/%d after the barrage", []string{"the target", "node 3"}[i], got, count)
		}
	}
	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v\n%s", i+1, code, err, d.Output())
		}
	}
}

// h6Packet returns an IPv6 packet from src to dst whose first next header
// is next, with a hop limit of 64 and a payload length that matches.
func h6Packet(src, dst netip.Addr, next byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(len(payload)))
	p[6], p[7] = next, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	copy(p[40:], payload)
	return p
}

// h6Opts returns a hop-by-hop or destination options header holding opts,
// padded to a multiple of 8 bytes with Pad1 or PadN.
func h6Opts(next byte, opts []byte) []byte {
	h := append([]byte{next, 0}, opts...)
	switch pad := (8 - len(h)%8) % 8; pad {
	case 0:
	case 1:
		h = append(h, 0)
	default:
		h = append(h, 1, byte(pad-2))
		h = append(h, make([]byte, pad-2)...)
	}
	h[1] = byte(len(h)/8 - 1)
	return h
}

// h6Routing returns a routing header of type typ (0 or 2: four reserved
// bytes, then the addresses) with segments left segLeft.
func h6Routing(next, typ, segLeft byte, addrs ...netip.Addr) []byte {
	h := make([]byte, 8, 8+16*len(addrs))
	h[0], h[1], h[2], h[3] = next, byte(2*len(addrs)), typ, segLeft
	for _, a := range addrs {
		b := a.As16()
		h = append(h, b[:]...)
	}
	return h
}

// h6SRH returns a segment routing header (routing type 4, RFC 8754) with
// segments left segLeft and the segment list segs.
func h6SRH(next, segLeft byte, segs ...netip.Addr) []byte {
	h := h6Routing(next, 4, segLeft, segs...)
	h[4] = byte(len(segs) - 1) // last entry
	return h
}

// h6Frag returns a fragment header: offset in 8-byte units, the M flag and
// the identification.
func h6Frag(next byte, offset uint16, more bool, id uint32) []byte {
	h := make([]byte, 8)
	h[0] = next
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], fo)
	binary.BigEndian.PutUint32(h[4:8], id)
	return h
}

// h6UDPChecksum returns the UDP checksum of u (whose checksum field is
// zero) from src to dst over IPv6: over the pseudo-header of RFC 8200
// section 8.1, and never 0.
func h6UDPChecksum(src, dst netip.Addr, u []byte) uint16 {
	ph := make([]byte, 40, 40+len(u))
	s, d := src.As16(), dst.As16()
	copy(ph[0:16], s[:])
	copy(ph[16:32], d[:])
	binary.BigEndian.PutUint32(ph[32:36], uint32(len(u)))
	ph[39] = overlay.ProtoUDP
	c := inet.Checksum(append(ph, u...))
	if c == 0 {
		c = 0xffff
	}
	return c
}

// h6Neighbour returns the link-layer address of n's neighbour entry for a
// on NodeLink.
func h6Neighbour(t *testing.T, n *nstest.Node, a netip.Addr) net.HardwareAddr {
	t.Helper()
	out, err := n.Exec(t, "ip", "-6", "neigh", "show", a.String(), "dev", nstest.NodeLink)
	if err != nil {
		t.Fatalf("ip -6 neigh: %v\n%s", err, out)
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac, err := net.ParseMAC(f[i+1])
			if err != nil {
				t.Fatal(err)
			}
			return mac
		}
	}
	t.Fatalf("no neighbour entry for %v on %s: %q", a, n, out)
	return nil
}

// h6SNMP reads /proc/net/snmp6 in n's namespace: "Ip6InHdrErrors 0" and
// so on, one counter a line.
func h6SNMP(t *testing.T, n *nstest.Node) map[string]uint64 {
	t.Helper()
	out, err := n.Exec(t, "cat", "/proc/net/snmp6")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// h6ErrorCounter reports whether an snmp6 counter counts packets the
// kernel refused.
func h6ErrorCounter(name string) bool {
	if strings.HasPrefix(name, "Icmp6") {
		return false // the errors the kernel sends back, and their types
	}
	for _, s := range []string{"Err", "Trunc", "Unknown", "Discard", "NoRoutes", "NoPorts", "ReasmFails", "ReasmReqds", "ReasmTimeout", "Overlaps"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
