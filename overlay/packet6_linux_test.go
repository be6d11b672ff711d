package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// The AF_PACKET egress tests over IPv6 run on an IPv6-only nstest
// underlay (fd00:198:18::/64), as the IPv4 ones in packet_linux_test.go.

// newNet6 builds an IPv6-only underlay of n nodes.
func newNet6(t testing.TB, n int) *nstest.Net {
	t.Helper()
	return nstest.NewNetWith(t, n, nstest.Options{Underlay: nstest.UnderlayIPv6})
}

// listenIn6 opens a Conn of codec on node n's IPv6 underlay address.
func listenIn6(t testing.TB, n *nstest.Node, codec string, port uint16, opts Options) *Conn {
	t.Helper()
	var c *Conn
	err := n.Do(func() (err error) {
		if codec == "gre" {
			c, err = ListenGRE(n.Underlay6, opts)
		} else {
			c, err = ListenVXLAN(n.Underlay6, port, opts)
		}
		return err
	})
	if err != nil {
		t.Fatalf("in %s: listen %s: %v", n, codec, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// routeTo6 returns the published route of an IPv6 peer, or nil.
func routeTo6(c *Conn, peer netip.Addr) *peerRoute {
	return c.pkt.table.Load().m6[peer.As16()]
}

// waitRoute6 waits until the published route to peer satisfies ok.
func waitRoute6(t testing.TB, c *Conn, peer netip.Addr, what string, ok func(r *peerRoute) bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		if r := routeTo6(c, peer); r != nil && ok(r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %v: %s not seen in %v (route %+v)", peer, what, ioTimeout, routeTo6(c, peer))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitResolved6(t testing.TB, c *Conn, peer netip.Addr) {
	t.Helper()
	waitRoute6(t, c, peer, "resolution", func(r *peerRoute) bool { return r.ok })
}

// newCapture6 receives the IPv6 frames of one interface of node n.
func newCapture6(t testing.TB, n *nstest.Node, ifname string) *capture {
	t.Helper()
	var c capture
	err := n.Do(func() error {
		l, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IPV6)))
		if err != nil {
			return err
		}
		if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: l.Index}); err != nil {
			unix.Close(c.fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(ioTimeout))
		return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("in %s: capture on %s: %v", n, ifname, err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return &c
}

// frames6 returns the next n IPv6 frames of next header proto from src.
func (c *capture) frames6(t testing.TB, n int, src netip.Addr, proto uint8) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 1<<16)
	for len(got) < n {
		k, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			t.Fatalf("capture: %d of %d frames, then %v", len(got), n, err)
		}
		f := buf[:k]
		if len(f) >= ethIP6Len && f[EthHeaderLen+6] == proto && netip.AddrFrom16([16]byte(f[hdr6Src:hdr6Src+16])) == src {
			got = append(got, bytes.Clone(f))
		}
	}
	return got
}

// checkDelivered6 is checkDelivered for what an IPv6 Conn received.
func checkDelivered6(t *testing.T, c Codec, got []received, src netip.Addr, frames [][]byte) {
	t.Helper()
	seen := make([]bool, len(frames))
	for i, m := range got {
		if m.addr != src {
			t.Errorf("message %d from %v, want %v", i, m.addr, src)
		}
		inner, r := c.DecapIPv6(m.buf)
		if r != OK {
			t.Errorf("message %d (%d bytes): DecapIPv6: %v", i, len(m.buf), r)
			continue
		}
		found := false
		for k, f := range frames {
			if !seen[k] && bytes.Equal(inner, f) {
				seen[k], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("message %d carries a frame of %d bytes that was not sent, or twice", i, len(inner))
		}
	}
}

// checkOuter6 checks, with gopacket as the oracle, the Ethernet and IPv6
// header of a frame that carries pkt from src to dst, and for UDP that its
// checksum verifies and that, but for the checksum, the datagram is pkt.
func checkOuter6(t *testing.T, f []byte, pkt []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, proto uint8, hops int) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	switch {
	case eth == nil || ip == nil:
		t.Errorf("gopacket: no Ethernet and IPv6 in %x", f)
	case !bytes.Equal(eth.DstMAC, dstMAC) || !bytes.Equal(eth.SrcMAC, srcMAC) || eth.EthernetType != layers.EthernetTypeIPv6:
		t.Errorf("Ethernet %v > %v %v, want %v > %v IPv6", eth.SrcMAC, eth.DstMAC, eth.EthernetType, srcMAC, dstMAC)
	case ip.Version != 6 || ip.TrafficClass != 0:
		t.Errorf("IPv6 version %d traffic class %#x, want 6 and 0", ip.Version, ip.TrafficClass)
	case int(ip.Length) != len(pkt) || len(ip.Payload) < len(pkt):
		t.Errorf("IPv6 payload length %d (%d bytes), want %d", ip.Length, len(ip.Payload), len(pkt))
	case int(ip.HopLimit) != hops || uint8(ip.NextHeader) != proto:
		t.Errorf("IPv6 hop limit %d next header %d, want %d %d", ip.HopLimit, ip.NextHeader, hops, proto)
	case !ip.SrcIP.Equal(src.AsSlice()) || !ip.DstIP.Equal(dst.AsSlice()):
		t.Errorf("IPv6 %v > %v, want %v > %v", ip.SrcIP, ip.DstIP, src, dst)
	case proto == ProtoUDP && !verifyUDP6(ip.SrcIP, ip.DstIP, ip.Payload[:len(pkt)]):
		t.Errorf("UDP checksum %#04x does not verify", binary.BigEndian.Uint16(ip.Payload[6:8]))
	case proto == ProtoUDP && (!bytes.Equal(ip.Payload[:6], pkt[:6]) || !bytes.Equal(ip.Payload[UDPHeaderLen:len(pkt)], pkt[UDPHeaderLen:])):
		t.Errorf("UDP datagram differs from the packet sent beyond the checksum")
	case proto != ProtoUDP && !bytes.Equal(ip.Payload[:len(pkt)], pkt):
		t.Errorf("IPv6 payload differs from the packet sent")
	}
}

// routeElsewhere6 adds a veth pair to node n with an IPv6 route through
// it, and returns an address on that route.
func routeElsewhere6(t testing.TB, n *nstest.Node) netip.Addr {
	t.Helper()
	exec(t, n, "ip", "link", "add", "mcx0", "type", "veth", "peer", "name", "mcx1")
	exec(t, n, "sysctl", "-qw", "net.ipv6.conf.mcx0.disable_ipv6=0", "net.ipv6.conf.mcx0.accept_dad=0")
	exec(t, n, "ip", "link", "set", "mcx0", "up")
	exec(t, n, "ip", "link", "set", "mcx1", "up")
	exec(t, n, "ip", "-6", "route", "add", "fd00:198:19::/64", "dev", "mcx0")
	return netip.MustParseAddr("fd00:198:19::9")
}

// TestIntegrationPacketEgress6 sends the same copies over IPv6 through
// AF_PACKET and through the socket path and checks, with gopacket as the
// oracle, that the peer receives the same frames, byte for byte but for
// the flow label (the kernel's is keyed by a secret of its own) and for
// VXLAN's UDP checksum, which verifies: the Ethernet header, the IPv6
// header (hop limit following the source interface's
// net.ipv6.conf.eth0.hop_limit, next header 47 or 17, payload length) and
// the packet; and that the peer's Conn decapsulates them. The source's
// interface has transmit checksum offload off, so that the kernel
// finishes the UDP checksum that AF_PACKET egress leaves to it, in
// software, and the peer's UDP socket, which checks it, delivers the
// datagrams only if it is right. The first copies, to a peer not resolved
// yet, go through the socket path (which makes the kernel ask neighbour
// discovery) and are counted as such.
func TestIntegrationPacketEgress6(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := newNet6(t, 2)
			src, peer := nt.Node(1), nt.Node(2)
			const hops = 77
			exec(t, src, "sysctl", "-qw", "net.ipv6.conf."+nstest.NodeLink+".hop_limit="+strconv.Itoa(hops))
			exec(t, src, "ethtool", "-K", nstest.NodeLink, "tx", "off")
			pc := listenIn6(t, src, codec, packetTestPort, Options{Batch: 16})
			sc := listenIn6(t, src, codec, packetTestPort+1, Options{Batch: 16, NoPacketEgress: true, NoOffload: true})
			rc := listenIn6(t, peer, codec, DefaultVXLANPort, Options{NoOffload: true})
			if st := statusOf(t, pc); !st.InUse || st.Reason != "" {
				t.Fatalf("AF_PACKET egress over IPv6: %+v", st)
			}
			capt := newCapture6(t, peer, nstest.NodeLink)
			c := codecOf(codec)
			proto := uint8(ProtoGRE)
			if codec == "vxlan" {
				proto = ProtoUDP
			}
			pkts, frames := encapFrames(c, 37)
			srcMAC, dstMAC := linkMAC(t, src, nstest.NodeLink), linkMAC(t, peer, nstest.NodeLink)

			writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay6))
			checkDelivered6(t, c, readN(t, rc, len(pkts)), src.Underlay6, frames)
			capt.frames6(t, len(pkts), src.Underlay6, proto)
			if s := pc.PacketEgress(); s.Packet != 0 || s.Unresolved != uint64(len(pkts)) || s.Socket != uint64(len(pkts)) {
				t.Fatalf("before resolution: %+v, want every copy unresolved, through the socket", s)
			}
			waitResolved6(t, pc, peer.Underlay6)

			writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay6))
			got := readN(t, rc, len(pkts))
			viaPacket := capt.frames6(t, len(pkts), src.Underlay6, proto)
			checkDelivered6(t, c, got, src.Underlay6, frames)
			s := pc.PacketEgress()
			if s.Packet != uint64(len(pkts)) || s.Socket != uint64(len(pkts)) || s.Peers != 1 || s.Resolved != 1 || s.Interface != nstest.NodeLink {
				t.Fatalf("after resolution: %+v, want every copy through AF_PACKET", s)
			}
			t.Logf("AF_PACKET egress over IPv6: %+v", s)

			writeIn(t, src, sc, peerMsgs(pkts, peer.Underlay6))
			checkDelivered6(t, c, readN(t, rc, len(pkts)), src.Underlay6, frames)
			viaSocket := capt.frames6(t, len(pkts), src.Underlay6, proto)
			for i := range pkts {
				checkOuter6(t, viaPacket[i], pkts[i], srcMAC, dstMAC, src.Underlay6, peer.Underlay6, proto, hops)
				checkOuter6(t, viaSocket[i], pkts[i], srcMAC, dstMAC, src.Underlay6, peer.Underlay6, proto, hops)
				p, s := bytes.Clone(viaPacket[i]), bytes.Clone(viaSocket[i])
				for _, f := range [][]byte{p, s} {
					f[EthHeaderLen+1] &= 0xf0 // the flow label
					clear(f[EthHeaderLen+2 : EthHeaderLen+4])
				}
				if !bytes.Equal(p, s) {
					t.Errorf("copy %d: AF_PACKET frame\n%x\ndiffers from the socket's\n%x\nbeyond the flow label", i, viaPacket[i], viaSocket[i])
				}
			}
			// One flow label per peer, as the kernel's raw sockets.
			label := func(f []byte) uint32 { return binary.BigEndian.Uint32(f[EthHeaderLen:]) & 0xfffff }
			for i := range viaPacket {
				if label(viaPacket[i]) != label(viaPacket[0]) {
					t.Errorf("copy %d: flow label %#x, copy 0 %#x", i, label(viaPacket[i]), label(viaPacket[0]))
				}
			}
		})
	}
}

// TestIntegrationPacketEgress6Neighbour follows the peer's MAC address
// over IPv6 as it changes (the neighbour entry replaced, then flushed and
// resolved again by neighbour discovery), keeps a peer routed through
// another interface and a copy larger than the route's MTU on the socket
// path, and follows a route's MTU.
func TestIntegrationPacketEgress6Neighbour(t *testing.T) {
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	elsewhere := routeElsewhere6(t, src)

	pc := listenIn6(t, src, "gre", 0, Options{Batch: 16})
	rc := listenIn6(t, peer, "gre", 0, Options{})
	p := packetOf(t, pc)
	capt := newCapture6(t, peer, nstest.NodeLink)
	c := codecOf("gre")
	pkts, frames := encapFrames(c, 10)
	n := uint64(len(pkts))
	round := func(name string, wantPacket, wantUnresolved uint64, wantMAC net.HardwareAddr) {
		t.Helper()
		before := p.stats()
		msgs := peerMsgs(pkts, peer.Underlay6)
		msgs = append(msgs, Message{Buf: pkts[0], Addr: elsewhere})
		writeIn(t, src, pc, msgs)
		checkDelivered6(t, c, readN(t, rc, len(pkts)), src.Underlay6, frames)
		for i, f := range capt.frames6(t, len(pkts), src.Underlay6, ProtoGRE) {
			if !bytes.Equal(f[0:6], wantMAC) {
				t.Errorf("%s: copy %d to %x, want %v", name, i, f[0:6], wantMAC)
			}
		}
		after := p.stats()
		packet, unresolved, socket := after.Packet-before.Packet, after.Unresolved-before.Unresolved, after.Socket-before.Socket
		t.Logf("%s: %d through AF_PACKET, %d through the socket (%d unresolved)", name, packet, socket, unresolved)
		if packet != wantPacket || unresolved < wantUnresolved || unresolved > wantUnresolved+1 || socket != n+1-packet ||
			(name != "unresolved" && unresolved != wantUnresolved) {
			t.Errorf("%s: %d through AF_PACKET, %d through the socket (%d unresolved); want %d through AF_PACKET, %d unresolved",
				name, packet, socket, unresolved, wantPacket, wantUnresolved)
		}
		if st := statusOf(t, pc); !st.InUse || st.Fallbacks != 0 {
			t.Errorf("%s: %+v", name, st)
		}
	}
	oldMAC := linkMAC(t, peer, nstest.NodeLink)
	round("unresolved", 0, n, oldMAC)
	waitResolved6(t, pc, peer.Underlay6)
	round("resolved", n, 0, oldMAC)
	if r := routeTo6(pc, elsewhere); r == nil || r.ok {
		t.Errorf("the peer routed through another interface takes AF_PACKET: %+v", r)
	}
	if s := pc.PacketEgress(); s.Peers != 2 || s.Resolved != 1 {
		t.Errorf("%+v, want 2 peers, 1 resolved", s)
	}

	// A copy larger than the MTU goes through the socket, which
	// fragments it; the rest of the batch through AF_PACKET.
	big := testFrame(1600, 7)
	before := p.stats()
	msgs := append(peerMsgs(pkts[:3], peer.Underlay6), Message{Buf: c.Encap(withHeadroom(big), len(big)), Addr: peer.Underlay6})
	writeIn(t, src, pc, msgs)
	checkDelivered6(t, c, readN(t, rc, len(msgs)), src.Underlay6, append([][]byte{big}, frames[:3]...))
	capt.frames6(t, 3, src.Underlay6, ProtoGRE) // the big one leaves as fragments
	if after := p.stats(); after.Packet-before.Packet != 3 || after.Socket-before.Socket != 1 || after.Unresolved != before.Unresolved {
		t.Errorf("a copy over the MTU: %+v then %+v, want 3 through AF_PACKET and 1 through the socket", before, after)
	}

	// A route with a lower MTU: the resolver follows it.
	exec(t, src, "ip", "-6", "route", "add", peer.Underlay6.String()+"/128", "dev", nstest.NodeLink, "mtu", "1300")
	waitRoute6(t, pc, peer.Underlay6, "the route's MTU", func(r *peerRoute) bool { return r.ok && r.maxLen == 1300-IPv6HeaderLen })
	exec(t, src, "ip", "-6", "route", "del", peer.Underlay6.String()+"/128", "dev", nstest.NodeLink)
	waitRoute6(t, pc, peer.Underlay6, "the interface's MTU", func(r *peerRoute) bool { return r.ok && r.maxLen == 1500-IPv6HeaderLen })

	// The peer's MAC changes and the entry is replaced: AF_PACKET to the
	// new address at once.
	mac1, _ := net.ParseMAC("02:00:5e:10:00:01")
	exec(t, peer, "ip", "link", "set", "dev", nstest.NodeLink, "address", mac1.String())
	exec(t, src, "ip", "-6", "neigh", "replace", peer.Underlay6.String(), "lladdr", mac1.String(), "dev", nstest.NodeLink, "nud", "reachable")
	waitRoute6(t, pc, peer.Underlay6, "the new MAC", func(r *peerRoute) bool { return r.ok && bytes.Equal(r.hdr6[0:6], mac1) })
	round("replaced", n, 0, mac1)

	// It changes again and the entry is flushed: the socket path, whose
	// first copy makes the kernel ask neighbour discovery, then AF_PACKET
	// to the answer.
	mac2, _ := net.ParseMAC("02:00:5e:10:00:02")
	exec(t, peer, "ip", "link", "set", "dev", nstest.NodeLink, "address", mac2.String())
	exec(t, src, "ip", "-6", "neigh", "flush", "dev", nstest.NodeLink)
	waitRoute6(t, pc, peer.Underlay6, "the flush", func(r *peerRoute) bool { return !r.ok })
	round("flushed", 0, n, mac2)
	waitRoute6(t, pc, peer.Underlay6, "the MAC the kernel resolved", func(r *peerRoute) bool { return r.ok && bytes.Equal(r.hdr6[0:6], mac2) })
	round("resolved again", n, 0, mac2)
}

// TestIntegrationPacketEgress6Refused makes the AF_PACKET socket refuse a
// copy over IPv6 for real (a 1600-byte packet, with the published route
// made to believe in a larger MTU): it is sent again through the raw
// socket, which fragments it, and the peer receives it with the rest of
// the batch; the fallback is counted and the peer held on the socket path.
func TestIntegrationPacketEgress6Refused(t *testing.T) {
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	pc := listenIn6(t, src, "gre", 0, Options{Batch: 16})
	rc := listenIn6(t, peer, "gre", 0, Options{})
	p := packetOf(t, pc)
	c := codecOf("gre")
	small, smallFrames := encapFrames(c, 3)
	writeIn(t, src, pc, peerMsgs(small, peer.Underlay6))
	readN(t, rc, len(small))
	waitResolved6(t, pc, peer.Underlay6)

	r := *routeTo6(pc, peer.Underlay6)
	r.maxLen = 9000
	p.table.Store(&peerTable{m6: map[[16]byte]*peerRoute{peer.Underlay6.As16(): &r}})
	big := testFrame(1600, 7)
	msgs := peerMsgs(small, peer.Underlay6)
	msgs = append(msgs[:1], append([]Message{{Buf: c.Encap(withHeadroom(big), len(big)), Addr: peer.Underlay6}}, msgs[1:]...)...)
	writeIn(t, src, pc, msgs)
	checkDelivered6(t, c, readN(t, rc, len(msgs)), src.Underlay6, append([][]byte{big}, smallFrames...))
	if st := statusOf(t, pc); !st.InUse || st.Fallbacks != 1 {
		t.Errorf("%+v, want in use with 1 fallback", st)
	}
	if s := p.stats(); s.Packet != uint64(len(small)) {
		t.Errorf("%+v, want the %d small copies through AF_PACKET", s, len(small))
	}
	if !r.st.hold.Load() {
		t.Error("the peer is not held on the socket path after a refused copy")
	}
	writeIn(t, src, pc, peerMsgs(small, peer.Underlay6))
	checkDelivered6(t, c, readN(t, rc, len(small)), src.Underlay6, smallFrames)
	if s := p.stats(); s.Packet != uint64(len(small)) {
		t.Errorf("%+v: a held peer took AF_PACKET", s)
	}
}

// TestIntegrationPacketEgress6Status checks what Offloads reports over
// IPv6: AF_PACKET egress (and for VXLAN its segmentation offload) in use
// on an Ethernet interface, the receive ring off as not used over IPv6,
// and AF_PACKET egress off, saying why, on the loopback interface.
func TestIntegrationPacketEgress6Status(t *testing.T) {
	nstest.LeakCheck(t)
	nt := newNet6(t, 1)
	n := nt.Node(1)
	for i, codec := range []string{"gre", "vxlan"} {
		c := listenIn6(t, n, codec, uint16(packetTestPort+i), Options{PacketRx: true})
		for _, st := range c.Offloads() {
			if st.Name == OffloadPacketRx {
				if st.InUse || st.Reason != OffloadNoIPv6 {
					t.Errorf("%s: %+v, want off: %s", codec, st, OffloadNoIPv6)
				}
				continue
			}
			if !st.InUse || st.Reason != "" || st.Fallbacks != 0 {
				t.Errorf("%s: %+v, want in use", codec, st)
			}
		}
		if s := c.PacketEgress(); !s.QdiscBypass || s.Interface != nstest.NodeLink {
			t.Errorf("%s: %+v, want qdisc bypass on %s", codec, s, nstest.NodeLink)
		}
	}
	for _, codec := range []string{"gre", "vxlan"} {
		a, _ := listenPair6(t, newTestNS(t), codec, Options{})
		for _, st := range a.Offloads() {
			if (st.Name == OffloadPacketTx || st.Name == OffloadPacketGSO) && (st.InUse || !strings.Contains(st.Reason, "not Ethernet")) {
				t.Errorf("%s on lo: %+v, want off because lo is not Ethernet", codec, st)
			}
		}
	}
}

// TestIntegrationPacketEgress6VXLANRuns sends VXLAN over IPv6 through
// AF_PACKET with runs of one flow (segmentation offload), the source's
// interface without UDP segmentation or checksum offload, so that the
// kernel splits each run and computes every copy's UDP checksum: the peer
// receives every frame, the run in order, and each copy on the wire has
// the outer header the single copies have and a UDP checksum that
// verifies.
func TestIntegrationPacketEgress6VXLANRuns(t *testing.T) {
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	exec(t, src, "ethtool", "-K", nstest.NodeLink, "tx-udp-segmentation", "off", "tx", "off")
	pc := listenIn6(t, src, "vxlan", packetTestPort, Options{})
	rc := listenIn6(t, peer, "vxlan", DefaultVXLANPort, Options{NoOffload: true})
	capt := newCapture6(t, peer, nstest.NodeLink)
	c := codecOf("vxlan")
	var msgs []Message
	var frames [][]byte
	add := func(flow uint16, size, seq int) {
		f := testFrame(size, flow)
		binary.BigEndian.PutUint32(f[size-4:], uint32(seq))
		frames = append(frames, f)
		msgs = append(msgs, Message{Buf: c.Encap(withHeadroom(f), len(f)), Addr: peer.Underlay6})
	}
	for i := range 10 {
		size := 1000
		if i == 9 {
			size = 300
		}
		add(1001, size, i)
		if i%2 == 0 {
			add(uint16(2000+i), 200, i)
		}
	}
	writeIn(t, src, pc, msgs)
	readN(t, rc, len(msgs))
	capt.frames6(t, len(msgs), src.Underlay6, ProtoUDP)
	waitResolved6(t, pc, peer.Underlay6)
	before := pc.PacketEgress()
	writeIn(t, src, pc, msgs)
	got := readN(t, rc, len(msgs))
	wire := capt.frames6(t, len(msgs), src.Underlay6, ProtoUDP)
	checkDelivered6(t, c, got, src.Underlay6, frames)
	var run []uint32
	for _, m := range got {
		inner, _ := c.DecapIPv6(m.buf)
		if binary.BigEndian.Uint16(inner[34:36]) == 1001 {
			run = append(run, binary.BigEndian.Uint32(inner[len(inner)-4:]))
		}
	}
	for i, seq := range run {
		if seq != uint32(i) {
			t.Errorf("the run arrived out of order: %v", run)
			break
		}
	}
	after := pc.PacketEgress()
	if p, s := after.Packet-before.Packet, after.Segmented-before.Segmented; p != uint64(len(msgs)) || s != 10 {
		t.Errorf("%d through AF_PACKET, %d of them segmented; want %d and 10", p, s, len(msgs))
	}
	if st := offloadNamed(t, pc, OffloadPacketGSO); !st.InUse || st.Fallbacks != 0 {
		t.Errorf("%+v, want %s in use", st, OffloadPacketGSO)
	}
	srcMAC, dstMAC := linkMAC(t, src, nstest.NodeLink), linkMAC(t, peer, nstest.NodeLink)
	hops := 64
	for _, f := range wire {
		u := f[ethIP6Len:]
		var sent []byte
		for _, m := range msgs {
			if len(m.Buf) == int(binary.BigEndian.Uint16(f[hdr6PayloadLen:])) && bytes.Equal(m.Buf[UDPHeaderLen:], u[UDPHeaderLen:len(m.Buf)]) {
				sent = m.Buf
			}
		}
		if sent == nil {
			t.Errorf("a copy on the wire is no packet that was sent")
			continue
		}
		checkOuter6(t, f, sent, srcMAC, dstMAC, src.Underlay6, peer.Underlay6, ProtoUDP, hops)
	}
}

// TestIntegrationPacketEgress6ZeroAllocs checks that WriteBatch over IPv6
// allocates nothing once its peers are resolved, with copies to a peer on
// another interface in the batch and, for VXLAN, runs of one flow.
func TestIntegrationPacketEgress6ZeroAllocs(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := newNet6(t, 3)
			src := nt.Node(1)
			peers := []netip.Addr{nt.Node(2).Underlay6, nt.Node(3).Underlay6, routeElsewhere6(t, src)}
			for _, n := range nt.Nodes()[1:] {
				listenIn6(t, n, codec, DefaultVXLANPort, Options{NoOffload: true})
			}
			pc := listenIn6(t, src, codec, packetTestPort, Options{})
			c := codecOf(codec)
			var msgs []Message
			for i := range 16 {
				f := testFrame(64+i*80, uint16(1000+i))
				pkt := c.Encap(withHeadroom(f), len(f))
				for _, p := range peers {
					msgs = append(msgs, Message{Buf: pkt, Addr: p})
				}
			}
			resolved := len(msgs)*2/3 + 8
			for range 4 {
				f := testFrame(300, 999)
				pkt := c.Encap(withHeadroom(f), len(f))
				for _, p := range peers[:2] {
					msgs = append(msgs, Message{Buf: pkt, Addr: p})
				}
			}
			run := 8
			if codec == "gre" {
				run = 0
			}
			writeIn(t, src, pc, msgs)
			waitResolved6(t, pc, peers[0])
			waitResolved6(t, pc, peers[1])
			waitRoute6(t, pc, peers[2], "the route through another interface", func(r *peerRoute) bool { return !r.ok })
			writeIn(t, src, pc, msgs)
			before := pc.PacketEgress()
			if a := testing.AllocsPerRun(100, func() { pc.WriteBatch(msgs) }); a != 0 {
				t.Errorf("%v allocations per WriteBatch of %d copies", a, len(msgs))
			}
			after := pc.PacketEgress()
			if d, r := after.Packet-before.Packet, after.Segmented-before.Segmented; d != 101*uint64(resolved) || r != 101*uint64(run) {
				t.Errorf("%d copies through AF_PACKET, %d of them segmented, in 101 batches; want %d and %d", d, r, 101*resolved, 101*run)
			}
		})
	}
}
