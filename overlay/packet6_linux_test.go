package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/meshcast/meshcast/internal/nstest"
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
	return listenAt(t, n, n.Underlay6, codec, port, opts)
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
			e := sendEgressBothWays(t, codec, src, peer, pc, sc, rc, "AF_PACKET egress over IPv6")
			pkts, viaPacket, viaSocket, proto := e.pkts, e.viaPacket, e.viaSocket, e.proto
			srcMAC, dstMAC := e.srcMAC, e.dstMAC
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
	testPacketEgressNeighbour(t, true)
}

// TestIntegrationPacketEgress6Refused makes the AF_PACKET socket refuse a
// copy over IPv6 for real (a 1600-byte packet, with the published route
// made to believe in a larger MTU): it is sent again through the raw
// socket, which fragments it, and the peer receives it with the rest of
// the batch; the fallback is counted and the peer held on the socket path.
func TestIntegrationPacketEgress6Refused(t *testing.T) {
	testPacketEgressRefused(t, true)
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
	src, peer, pc, msgs, _, wire := sendVXLANRuns(t, true)
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
	testPacketEgressZeroAllocs(t, true)
}
