package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// The AF_PACKET egress tests run on an nstest underlay: node 1 sends, the
// other nodes are peers, all on one bridge, each with an Ethernet (veth)
// interface nstest.NodeLink.

// packetTestPort is the VXLAN port the source's own Conns listen on, so
// that several of them fit on one node; peers listen on DefaultVXLANPort,
// the port the codec sends to.
const packetTestPort = 4790

// listenIn opens a Conn of codec on node n's underlay address.
func listenIn(t testing.TB, n *nstest.Node, codec string, port uint16, opts Options) *Conn {
	t.Helper()
	return listenAt(t, n, n.Underlay, codec, port, opts)
}

// newNetOf builds an underlay of n nodes, IPv6-only if v6.
func newNetOf(t testing.TB, n int, v6 bool) *nstest.Net {
	t.Helper()
	if v6 {
		return newNet6(t, n)
	}
	return nstest.NewNet(t, n)
}

// listenAt opens a Conn of codec on addr, an address of node n.
func listenAt(t testing.TB, n *nstest.Node, addr netip.Addr, codec string, port uint16, opts Options) *Conn {
	t.Helper()
	var c *Conn
	err := n.Do(func() (err error) {
		if codec == "gre" {
			c, err = ListenGRE(addr, opts)
		} else {
			c, err = ListenVXLAN(addr, port, opts)
		}
		return err
	})
	if err != nil {
		t.Fatalf("in %s: listen %s: %v", n, codec, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// codecOf returns the codec the tests send with.
func codecOf(name string) Codec {
	if name == "gre" {
		return NewGRE(testKey, true)
	}
	return NewVXLAN(testVNI, DefaultVXLANPort)
}

// writeIn sends msgs through c from node n (where VXLAN opens its flow
// sockets) and fails the test unless every copy was taken.
func writeIn(t testing.TB, n *nstest.Node, c *Conn, msgs []Message) {
	t.Helper()
	var failed int
	if err := n.Do(func() (err error) { failed, err = c.WriteBatch(msgs); return err }); err != nil || failed != 0 {
		t.Fatalf("WriteBatch: %d failed, %v", failed, err)
	}
	for i, m := range msgs {
		if m.N != len(m.Buf) {
			t.Fatalf("message %d: N = %d (%v), want %d", i, m.N, m.Errno, len(m.Buf))
		}
	}
}

// packetOf returns c's AF_PACKET egress or fails the test.
func packetOf(t testing.TB, c *Conn) *packetTx {
	t.Helper()
	if c.pkt == nil {
		t.Fatalf("AF_PACKET egress off: %+v", c.Offloads())
	}
	return c.pkt
}

// routeTo returns the published route of peer (of either family), or nil.
func routeTo(c *Conn, peer netip.Addr) *peerRoute {
	if peer.Is6() {
		return c.pkt.table.Load().m6[peer.As16()]
	}
	return c.pkt.table.Load().m[peer.As4()]
}

// tableOf returns a route table that holds only r, the route to peer.
func tableOf(peer netip.Addr, r *peerRoute) *peerTable {
	if peer.Is6() {
		return &peerTable{m6: map[[16]byte]*peerRoute{peer.As16(): r}}
	}
	return &peerTable{m: map[[4]byte]*peerRoute{peer.As4(): r}}
}

// routeMAC returns the destination MAC of r's header for peer's family.
func routeMAC(r *peerRoute, peer netip.Addr) []byte {
	if peer.Is6() {
		return r.hdr6[0:6]
	}
	return r.hdr[0:6]
}

// waitRoute waits until the published route to peer satisfies ok.
func waitRoute(t testing.TB, c *Conn, peer netip.Addr, what string, ok func(r *peerRoute) bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		if r := routeTo(c, peer); r != nil && ok(r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %v: %s not seen in %v (route %+v)", peer, what, ioTimeout, routeTo(c, peer))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitResolved(t testing.TB, c *Conn, peer netip.Addr) {
	t.Helper()
	waitRoute(t, c, peer, "resolution", func(r *peerRoute) bool { return r.ok })
}

// capture receives the IPv4 or IPv6 frames of one interface, Ethernet
// header included, through an AF_PACKET socket in the interface's
// namespace.
type capture struct{ fd int }

// newCapture receives the frames of EtherType ethType of one interface.
func newCapture(t testing.TB, n *nstest.Node, ifname string, ethType uint16) *capture {
	t.Helper()
	var c capture
	err := n.Do(func() error {
		l, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(ethType)))
		if err != nil {
			return err
		}
		if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: l.Index}); err != nil {
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

// ethTypeOf returns the EtherType of IPv6 if v6, of IPv4 if not.
func ethTypeOf(v6 bool) uint16 {
	if v6 {
		return unix.ETH_P_IPV6
	}
	return unix.ETH_P_IP
}

// frames returns the next n frames of protocol (or IPv6 next header) proto
// from src, of src's family.
func (c *capture) frames(t testing.TB, n int, src netip.Addr, proto uint8) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 1<<16)
	for len(got) < n {
		k, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			t.Fatalf("capture: %d of %d frames, then %v", len(got), n, err)
		}
		f := buf[:k]
		if src.Is6() {
			if len(f) >= ethIP6Len && f[EthHeaderLen+6] == proto && netip.AddrFrom16([16]byte(f[hdr6Src:hdr6Src+16])) == src {
				got = append(got, bytes.Clone(f))
			}
		} else if len(f) >= ethIPLen && f[EthHeaderLen+9] == proto && netipFrom(f[EthHeaderLen+12:EthHeaderLen+16]) == src {
			got = append(got, bytes.Clone(f))
		}
	}
	return got
}

// linkMAC returns the MAC of ifname on node n.
func linkMAC(t testing.TB, n *nstest.Node, ifname string) net.HardwareAddr {
	t.Helper()
	l, err := n.Link(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// exec runs a command on node n and fails the test if it fails.
func exec(t testing.TB, n *nstest.Node, args ...string) string {
	t.Helper()
	out, err := n.Exec(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// routeElsewhere adds a veth pair to node n with a route through it, and
// returns an address on that route: a peer whose copies leave through
// another interface than the underlay's.
func routeElsewhere(t testing.TB, n *nstest.Node) netip.Addr {
	t.Helper()
	exec(t, n, "ip", "link", "add", "mcx0", "type", "veth", "peer", "name", "mcx1")
	exec(t, n, "ip", "link", "set", "mcx0", "up")
	exec(t, n, "ip", "link", "set", "mcx1", "up")
	exec(t, n, "ip", "route", "add", "198.18.5.0/24", "dev", "mcx0")
	return netip.MustParseAddr("198.18.5.9")
}

// routeElsewhereOf is routeElsewhere6 if v6, routeElsewhere if not.
func routeElsewhereOf(t testing.TB, n *nstest.Node, v6 bool) netip.Addr {
	t.Helper()
	if v6 {
		return routeElsewhere6(t, n)
	}
	return routeElsewhere(t, n)
}

// statusOf returns the OffloadPacketTx status of c.
func statusOf(t testing.TB, c *Conn) OffloadStatus {
	t.Helper()
	return offloadNamed(t, c, OffloadPacketTx)
}

// offloadNamed returns the Conn's offload name.
func offloadNamed(t testing.TB, c *Conn, name string) OffloadStatus {
	t.Helper()
	for _, s := range c.Offloads() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %s in %+v", name, c.Offloads())
	return OffloadStatus{}
}

// peerMsgs returns one message per packet to peer.
func peerMsgs(pkts [][]byte, peer netip.Addr) []Message {
	msgs := make([]Message, len(pkts))
	for i, p := range pkts {
		msgs[i] = Message{Buf: p, Addr: peer}
	}
	return msgs
}

// checkOuter checks the Ethernet and IPv4 header of a frame that carries
// pkt from src to dst.
func checkOuter(t *testing.T, f []byte, pkt []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, proto uint8, ttl int) {
	t.Helper()
	ip := f[EthHeaderLen:]
	switch {
	case !bytes.Equal(f[0:6], dstMAC) || !bytes.Equal(f[6:12], srcMAC) || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP:
		t.Errorf("Ethernet %x, want %v > %v IPv4", f[:14], srcMAC, dstMAC)
	case ip[0] != 0x45 || ip[1] != 0:
		t.Errorf("IPv4 version/IHL %#x TOS %#x, want 0x45 0", ip[0], ip[1])
	case int(binary.BigEndian.Uint16(ip[2:4])) != IPv4HeaderLen+len(pkt) || len(ip) < IPv4HeaderLen+len(pkt):
		t.Errorf("IPv4 total length %d (frame %d), want %d", binary.BigEndian.Uint16(ip[2:4]), len(f), IPv4HeaderLen+len(pkt))
	case binary.BigEndian.Uint16(ip[6:8]) != 0x4000:
		t.Errorf("IPv4 flags/offset %#x, want DF", binary.BigEndian.Uint16(ip[6:8]))
	case int(ip[8]) != ttl || ip[9] != proto:
		t.Errorf("IPv4 TTL %d protocol %d, want %d %d", ip[8], ip[9], ttl, proto)
	case !inet.Verify(ip[:IPv4HeaderLen]):
		t.Errorf("IPv4 header checksum %#x does not verify", binary.BigEndian.Uint16(ip[10:12]))
	case netipFrom(ip[12:16]) != src || netipFrom(ip[16:20]) != dst:
		t.Errorf("IPv4 %v > %v, want %v > %v", netipFrom(ip[12:16]), netipFrom(ip[16:20]), src, dst)
	case !bytes.Equal(ip[IPv4HeaderLen:IPv4HeaderLen+len(pkt)], pkt):
		t.Errorf("IPv4 payload differs from the packet sent")
	}
}

// egressCopies is what sendEgressBothWays sent and saw.
type egressCopies struct {
	c                    Codec
	proto                uint8
	pkts, frames         [][]byte
	got                  []received // what the peer's Conn read of the copies through AF_PACKET
	viaPacket, viaSocket [][]byte   // the copies on the wire through AF_PACKET and through the socket
	srcMAC, dstMAC       net.HardwareAddr
}

// sendEgressBothWays is what TestIntegrationPacketEgress and its IPv6
// variant share: it sends the same copies from src to peer (of the family
// of their underlay addresses) through pc, first unresolved, then through
// AF_PACKET, then through sc's socket path, checks that rc receives them
// and how pc counted them, and returns the copies and what the peer's
// link saw of them. what names the egress in the log.
func sendEgressBothWays(t *testing.T, codec string, src, peer *nstest.Node, pc, sc, rc *Conn, what string) egressCopies {
	t.Helper()
	srcAddr, peerAddr := underlayOf(src), underlayOf(peer)
	capt := newCapture(t, peer, nstest.NodeLink, ethTypeOf(srcAddr.Is6()))
	c := codecOf(codec)
	proto := uint8(ProtoGRE)
	if codec == "vxlan" {
		proto = ProtoUDP
	}
	pkts, frames := encapFrames(c, 37) // 60 to 1392 bytes, over 3 sendmmsg calls
	srcMAC, dstMAC := linkMAC(t, src, nstest.NodeLink), linkMAC(t, peer, nstest.NodeLink)

	// Unresolved: the socket path, which makes the kernel ask ARP (over
	// IPv6, neighbour discovery).
	writeIn(t, src, pc, peerMsgs(pkts, peerAddr))
	checkDelivered(t, c, readN(t, rc, len(pkts)), srcAddr, frames)
	capt.frames(t, len(pkts), srcAddr, proto)
	if s := pc.PacketEgress(); s.Packet != 0 || s.Unresolved != uint64(len(pkts)) || s.Socket != uint64(len(pkts)) {
		t.Fatalf("before resolution: %+v, want every copy unresolved, through the socket", s)
	}
	waitResolved(t, pc, peerAddr)

	writeIn(t, src, pc, peerMsgs(pkts, peerAddr))
	got := readN(t, rc, len(pkts))
	viaPacket := capt.frames(t, len(pkts), srcAddr, proto)
	checkDelivered(t, c, got, srcAddr, frames)
	s := pc.PacketEgress()
	if s.Packet != uint64(len(pkts)) || s.Socket != uint64(len(pkts)) || s.Peers != 1 || s.Resolved != 1 || s.Interface != nstest.NodeLink {
		t.Fatalf("after resolution: %+v, want every copy through AF_PACKET", s)
	}
	t.Logf("%s: %+v", what, s)

	writeIn(t, src, sc, peerMsgs(pkts, peerAddr))
	checkDelivered(t, c, readN(t, rc, len(pkts)), srcAddr, frames)
	viaSocket := capt.frames(t, len(pkts), srcAddr, proto)
	return egressCopies{c, proto, pkts, frames, got, viaPacket, viaSocket, srcMAC, dstMAC}
}

// TestIntegrationPacketEgress sends the same copies through AF_PACKET and
// through the socket path and checks that the peer receives the same
// frames, byte for byte but for the IPv4 ID and so the checksum: Ethernet
// header, the outer IPv4 header (TTL following the source's
// net.ipv4.ip_default_ttl, DF, an ID that counts the copies as the
// kernel's does, a valid checksum) and the packet, and that its Conn
// decapsulates the frames sent.
// The first copies, to a peer not resolved yet, go through the socket path
// and are counted as such.
func TestIntegrationPacketEgress(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := nstest.NewNet(t, 2)
			src, peer := nt.Node(1), nt.Node(2)
			const ttl = 77
			exec(t, src, "sysctl", "-qw", "net.ipv4.ip_default_ttl="+strconv.Itoa(ttl))
			pc := listenIn(t, src, codec, packetTestPort, Options{Batch: 16})
			sc := listenIn(t, src, codec, packetTestPort+1, Options{Batch: 16, NoPacketEgress: true, NoOffload: true})
			rc := listenIn(t, peer, codec, DefaultVXLANPort, Options{NoOffload: true})
			if st := statusOf(t, pc); !st.InUse || st.Reason != "" {
				t.Fatalf("AF_PACKET egress: %+v", st)
			}
			if st := statusOf(t, sc); st.InUse || st.Reason != OffloadOffByConfig {
				t.Fatalf("AF_PACKET egress with NoPacketEgress: %+v", st)
			}
			e := sendEgressBothWays(t, codec, src, peer, pc, sc, rc, "AF_PACKET egress")
			pkts, got, viaPacket, viaSocket, proto := e.pkts, e.got, e.viaPacket, e.viaSocket, e.proto
			srcMAC, dstMAC := e.srcMAC, e.dstMAC

			id := func(f []byte) uint16 { return binary.BigEndian.Uint16(f[hdrID:]) }
			for i := range pkts {
				checkOuter(t, viaPacket[i], pkts[i], srcMAC, dstMAC, src.Underlay, peer.Underlay, proto, ttl)
				checkOuter(t, viaSocket[i], pkts[i], srcMAC, dstMAC, src.Underlay, peer.Underlay, proto, ttl)
				if i > 0 && (id(viaPacket[i]) != id(viaPacket[i-1])+1 || id(viaSocket[i]) != id(viaSocket[i-1])+1) {
					t.Errorf("copy %d: IPv4 ID %#x after %#x through AF_PACKET, %#x after %#x through the socket; want each the next",
						i, id(viaPacket[i]), id(viaPacket[i-1]), id(viaSocket[i]), id(viaSocket[i-1]))
				}
				p, s := bytes.Clone(viaPacket[i]), bytes.Clone(viaSocket[i])
				for _, f := range [][]byte{p, s} {
					clear(f[hdrID : hdrID+2])
					clear(f[hdrSum : hdrSum+2])
				}
				if !bytes.Equal(p, s) {
					t.Errorf("copy %d: AF_PACKET frame\n%x\ndiffers from the socket's\n%x\nbeyond ID and checksum", i, viaPacket[i], viaSocket[i])
				}
			}
			// What the peer's socket delivered is the packet sent.
			for i, m := range got {
				want := viaPacket[i][EthHeaderLen:]
				if codec == "vxlan" {
					want = pkts[i][UDPHeaderLen:]
				}
				if !bytes.Equal(m.buf, want) {
					t.Errorf("copy %d: the peer's socket delivered %d bytes that differ from what was sent", i, len(m.buf))
				}
			}
		})
	}
}

// TestIntegrationPacketEgressNeighbour follows the peer's MAC address as it
// changes: with the neighbour entry replaced (the switch is immediate),
// and with the entry flushed (the socket path until the kernel has asked
// ARP again, then AF_PACKET to the new address). A peer routed through
// another interface stays on the socket path.
func TestIntegrationPacketEgressNeighbour(t *testing.T) {
	testPacketEgressNeighbour(t, false)
}

// testPacketEgressNeighbour is TestIntegrationPacketEgressNeighbour over
// an IPv6-only underlay if v6, over IPv4 if not; over IPv6 it also checks
// that a copy larger than the route's MTU takes the socket path and that
// the resolver follows a route's MTU.
func testPacketEgressNeighbour(t *testing.T, v6 bool) {
	nstest.LeakCheck(t)
	nt := newNetOf(t, 2, v6)
	src, peer := nt.Node(1), nt.Node(2)
	srcAddr, peerAddr := underlayOf(src), underlayOf(peer)
	ip := func(args ...string) []string {
		if v6 {
			return append([]string{"ip", "-6"}, args...)
		}
		return append([]string{"ip"}, args...)
	}
	elsewhere := routeElsewhereOf(t, src, v6)

	pc := listenAt(t, src, srcAddr, "gre", 0, Options{Batch: 16})
	rc := listenAt(t, peer, peerAddr, "gre", 0, Options{})
	p := packetOf(t, pc)
	capt := newCapture(t, peer, nstest.NodeLink, ethTypeOf(v6))
	c := codecOf("gre")
	pkts, frames := encapFrames(c, 10)
	n := uint64(len(pkts))
	round := func(name string, wantPacket, wantUnresolved uint64, wantMAC net.HardwareAddr) {
		t.Helper()
		before := p.stats()
		msgs := peerMsgs(pkts, peerAddr)
		msgs = append(msgs, Message{Buf: pkts[0], Addr: elsewhere})
		writeIn(t, src, pc, msgs)
		checkDelivered(t, c, readN(t, rc, len(pkts)), srcAddr, frames)
		for i, f := range capt.frames(t, len(pkts), srcAddr, ProtoGRE) {
			if !bytes.Equal(f[0:6], wantMAC) {
				t.Errorf("%s: copy %d to %x, want %v", name, i, f[0:6], wantMAC)
			}
		}
		after := p.stats()
		packet, unresolved, socket := after.Packet-before.Packet, after.Unresolved-before.Unresolved, after.Socket-before.Socket
		t.Logf("%s: %d through AF_PACKET, %d through the socket (%d unresolved)", name, packet, socket, unresolved)
		// The copy routed elsewhere goes through the socket path, and
		// counts as unresolved only until the resolver has seen its
		// route.
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
	waitResolved(t, pc, peerAddr)
	round("resolved", n, 0, oldMAC)
	if r := routeTo(pc, elsewhere); r == nil || r.ok {
		t.Errorf("the peer routed through another interface takes AF_PACKET: %+v", r)
	}
	if s := pc.PacketEgress(); s.Peers != 2 || s.Resolved != 1 {
		t.Errorf("%+v, want 2 peers, 1 resolved", s)
	}

	if v6 {
		// A copy larger than the MTU goes through the socket, which
		// fragments it; the rest of the batch through AF_PACKET.
		big := testFrame(1600, 7)
		before := p.stats()
		msgs := append(peerMsgs(pkts[:3], peerAddr), Message{Buf: c.Encap(withHeadroom(big), len(big)), Addr: peerAddr})
		writeIn(t, src, pc, msgs)
		checkDelivered(t, c, readN(t, rc, len(msgs)), srcAddr, append([][]byte{big}, frames[:3]...))
		capt.frames(t, 3, srcAddr, ProtoGRE) // the big one leaves as fragments
		if after := p.stats(); after.Packet-before.Packet != 3 || after.Socket-before.Socket != 1 || after.Unresolved != before.Unresolved {
			t.Errorf("a copy over the MTU: %+v then %+v, want 3 through AF_PACKET and 1 through the socket", before, after)
		}

		// A route with a lower MTU: the resolver follows it.
		exec(t, src, "ip", "-6", "route", "add", peerAddr.String()+"/128", "dev", nstest.NodeLink, "mtu", "1300")
		waitRoute(t, pc, peerAddr, "the route's MTU", func(r *peerRoute) bool { return r.ok && r.maxLen == 1300-IPv6HeaderLen })
		exec(t, src, "ip", "-6", "route", "del", peerAddr.String()+"/128", "dev", nstest.NodeLink)
		waitRoute(t, pc, peerAddr, "the interface's MTU", func(r *peerRoute) bool { return r.ok && r.maxLen == 1500-IPv6HeaderLen })
	}

	// The peer's MAC changes and the entry is replaced: AF_PACKET to the
	// new address at once.
	mac1, _ := net.ParseMAC("02:00:5e:10:00:01")
	exec(t, peer, "ip", "link", "set", "dev", nstest.NodeLink, "address", mac1.String())
	exec(t, src, ip("neigh", "replace", peerAddr.String(), "lladdr", mac1.String(), "dev", nstest.NodeLink, "nud", "reachable")...)
	waitRoute(t, pc, peerAddr, "the new MAC", func(r *peerRoute) bool { return r.ok && bytes.Equal(routeMAC(r, peerAddr), mac1) })
	round("replaced", n, 0, mac1)

	// It changes again and the entry is flushed: the socket path, whose
	// first copy makes the kernel ask ARP (over IPv6, neighbour discovery),
	// then AF_PACKET to the answer.
	mac2, _ := net.ParseMAC("02:00:5e:10:00:02")
	exec(t, peer, "ip", "link", "set", "dev", nstest.NodeLink, "address", mac2.String())
	exec(t, src, ip("neigh", "flush", "dev", nstest.NodeLink)...)
	waitRoute(t, pc, peerAddr, "the flush", func(r *peerRoute) bool { return !r.ok })
	round("flushed", 0, n, mac2)
	waitRoute(t, pc, peerAddr, "the MAC the kernel resolved", func(r *peerRoute) bool { return r.ok && bytes.Equal(routeMAC(r, peerAddr), mac2) })
	round("resolved again", n, 0, mac2)
}

// TestIntegrationPacketEgressRefused makes the AF_PACKET socket refuse a
// copy for real: the published route is made to believe in a larger MTU,
// so that a 1600-byte packet reaches the packet socket, which refuses it
// (EMSGSIZE). The copy is sent again through the raw socket, which
// fragments it as it always did, and the peer receives it with the rest of
// the batch; the fallback is counted, the offload stays in use, and the
// peer's next copies take the socket path until the resolver's next tick.
func TestIntegrationPacketEgressRefused(t *testing.T) {
	testPacketEgressRefused(t, false)
}

// testPacketEgressRefused is TestIntegrationPacketEgressRefused over an
// IPv6-only underlay if v6, over IPv4 if not.
func testPacketEgressRefused(t *testing.T, v6 bool) {
	nstest.LeakCheck(t)
	nt := newNetOf(t, 2, v6)
	src, peer := nt.Node(1), nt.Node(2)
	srcAddr, peerAddr := underlayOf(src), underlayOf(peer)
	pc := listenAt(t, src, srcAddr, "gre", 0, Options{Batch: 16})
	rc := listenAt(t, peer, peerAddr, "gre", 0, Options{})
	p := packetOf(t, pc)
	c := codecOf("gre")
	small, smallFrames := encapFrames(c, 3)
	writeIn(t, src, pc, peerMsgs(small, peerAddr))
	readN(t, rc, len(small))
	waitResolved(t, pc, peerAddr)

	r := *routeTo(pc, peerAddr)
	r.maxLen = 9000
	p.table.Store(tableOf(peerAddr, &r))
	big := testFrame(1600, 7)
	msgs := peerMsgs(small, peerAddr)
	msgs = append(msgs[:1], append([]Message{{Buf: c.Encap(withHeadroom(big), len(big)), Addr: peerAddr}}, msgs[1:]...)...)
	writeIn(t, src, pc, msgs)
	checkDelivered(t, c, readN(t, rc, len(msgs)), srcAddr, append([][]byte{big}, smallFrames...))
	st := statusOf(t, pc)
	if !st.InUse || st.Fallbacks != 1 {
		t.Errorf("%+v, want in use with 1 fallback", st)
	}
	if s := p.stats(); s.Packet != uint64(len(small)) {
		t.Errorf("%+v, want the %d small copies through AF_PACKET", s, len(small))
	}
	if !r.st.hold.Load() {
		t.Error("the peer is not held on the socket path after a refused copy")
	}
	writeIn(t, src, pc, peerMsgs(small, peerAddr))
	checkDelivered(t, c, readN(t, rc, len(small)), srcAddr, smallFrames)
	if s := p.stats(); s.Packet != uint64(len(small)) {
		t.Errorf("%+v: a held peer took AF_PACKET", s)
	}
}

// TestIntegrationPacketEgressStatus checks what Offloads reports: in use
// on an Ethernet interface for both encapsulations, off by configuration
// with either option, and off, saying why, on the loopback interface.
func TestIntegrationPacketEgressStatus(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 1)
	n := nt.Node(1)
	for i, codec := range []string{"gre", "vxlan"} {
		port := uint16(packetTestPort + 3*i)
		names := func(c *Conn) string {
			var s []string
			for _, o := range c.Offloads() {
				s = append(s, o.Name)
			}
			return strings.Join(s, ",")
		}
		c := listenIn(t, n, codec, port, Options{PacketRx: true})
		want := map[string]string{
			"gre":   OffloadPacketTx + "," + OffloadPacketRx,
			"vxlan": OffloadUDPGSO + "," + OffloadUDPGRO + "," + OffloadPacketTx + "," + OffloadPacketGSO,
		}[codec]
		if got := names(c); got != want {
			t.Errorf("%s: offloads %s, want %s", codec, got, want)
		}
		for _, st := range c.Offloads() {
			if !st.InUse || st.Reason != "" || st.Fallbacks != 0 {
				t.Errorf("%s: %+v, want in use", codec, st)
			}
		}
		if s := c.PacketEgress(); !s.QdiscBypass || s.Interface != nstest.NodeLink {
			t.Errorf("%s: %+v, want qdisc bypass on %s", codec, s, nstest.NodeLink)
		}
		for _, opts := range []Options{{NoPacketEgress: true}, {NoOffload: true}} {
			c := listenIn(t, n, codec, port+1, opts)
			for _, st := range c.Offloads() {
				if (st.Name == OffloadPacketTx || st.Name == OffloadPacketGSO || opts.NoOffload) && (st.InUse || st.Reason != OffloadOffByConfig) {
					t.Errorf("%s with %+v: %+v", codec, opts, st)
				}
			}
			if c.pkt != nil {
				t.Errorf("%s with %+v: AF_PACKET egress open", codec, opts)
			}
			c.Close()
		}
	}
	// On lo, which is not Ethernet.
	ns := newTestNS(t)
	a, _ := listenPairOpts(t, ns, "gre", Options{})
	if st := statusOf(t, a); st.InUse || !strings.Contains(st.Reason, "not Ethernet") || a.pkt != nil {
		t.Errorf("on lo: %+v, want off because lo is not Ethernet", st)
	}
	v, _ := listenPairOpts(t, newTestNS(t), "vxlan", Options{})
	for _, st := range v.Offloads()[2:] {
		if st.InUse || !strings.Contains(st.Reason, "not Ethernet") {
			t.Errorf("VXLAN on lo: %+v, want off because lo is not Ethernet", st)
		}
	}
}

// TestIntegrationPacketEgressZeroAllocs checks that WriteBatch allocates
// nothing per copy once its peers are resolved, with copies to a peer on
// another interface (the socket path) in the batch and, for VXLAN, runs of
// one flow (segmentation offload).
func TestIntegrationPacketEgressZeroAllocs(t *testing.T) {
	testPacketEgressZeroAllocs(t, false)
}

// testPacketEgressZeroAllocs is TestIntegrationPacketEgressZeroAllocs over
// an IPv6-only underlay if v6, over IPv4 if not.
func testPacketEgressZeroAllocs(t *testing.T, v6 bool) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := newNetOf(t, 3, v6)
			src := nt.Node(1)
			peers := []netip.Addr{underlayOf(nt.Node(2)), underlayOf(nt.Node(3)), routeElsewhereOf(t, src, v6)}
			for _, n := range nt.Nodes()[1:] {
				listenAt(t, n, underlayOf(n), codec, DefaultVXLANPort, Options{NoOffload: true})
			}
			pc := listenAt(t, src, underlayOf(src), codec, packetTestPort, Options{})
			c := codecOf(codec)
			var msgs []Message
			for i := range 16 {
				f := testFrame(64+i*80, uint16(1000+i))
				pkt := c.Encap(withHeadroom(f), len(f))
				for _, p := range peers {
					msgs = append(msgs, Message{Buf: pkt, Addr: p})
				}
			}
			resolved := len(msgs)*2/3 + 8 // the copies to the resolved peers
			for range 4 {
				f := testFrame(300, 999)
				pkt := c.Encap(withHeadroom(f), len(f))
				for _, p := range peers[:2] {
					msgs = append(msgs, Message{Buf: pkt, Addr: p})
				}
			}
			run := 8 // two runs of 4
			if codec == "gre" {
				run = 0
			}
			writeIn(t, src, pc, msgs)
			waitResolved(t, pc, peers[0])
			waitResolved(t, pc, peers[1])
			waitRoute(t, pc, peers[2], "the route through another interface", func(r *peerRoute) bool { return !r.ok })
			writeIn(t, src, pc, msgs) // warm: the flow sockets are open
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

// TestIntegrationPacketEgressTshark captures on the peer, with tshark, a
// copy sent through each egress (the IP socket, AF_PACKET, and for VXLAN
// a UDP_SEGMENT run, which the source's interface splits in software) and
// logs tshark's decoding of the outer headers. It runs only with
// MESHCAST_TSHARK=1 and tshark installed; it shows what the kernel sees.
func TestIntegrationPacketEgressTshark(t *testing.T) {
	if os.Getenv("MESHCAST_TSHARK") == "" {
		t.Skip("set MESHCAST_TSHARK=1 to decode the copies with tshark")
	}
	if _, err := osexec.LookPath("tshark"); err != nil {
		t.Skip("no tshark")
	}
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := nstest.NewNet(t, 2)
			src, peer := nt.Node(1), nt.Node(2)
			exec(t, src, "ethtool", "-K", nstest.NodeLink, "tx-udp-segmentation", "off")
			pc := listenIn(t, src, codec, packetTestPort, Options{})
			sc := listenIn(t, src, codec, packetTestPort+1, Options{NoPacketEgress: true, NoOffload: true})
			listenIn(t, peer, codec, DefaultVXLANPort, Options{NoOffload: true})
			c := codecOf(codec)
			f := testFrame(100, 1001)
			pkt := c.Encap(withHeadroom(f), len(f))
			msg := func() []Message { return []Message{{Buf: pkt, Addr: peer.Underlay}} }
			writeIn(t, src, pc, msg())
			waitResolved(t, pc, peer.Underlay)
			want := 2
			if codec == "vxlan" {
				want = 6
			}
			file := t.TempDir() + "/egress.pcap"
			exec(t, peer, "chmod", "777", t.TempDir())
			capt := peer.Start(t, "tshark", "-i", nstest.NodeLink, "-f", "ip proto 47 or udp dst port 4789",
				"-c", strconv.Itoa(want), "-w", file)
			if err := capt.WaitOutput("Capture started", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // until dumpcap's filter is in place
			writeIn(t, src, sc, msg())
			writeIn(t, src, pc, msg())
			if codec == "vxlan" {
				// Another flow, whose source port pc has not bound.
				f := testFrame(100, 1002)
				pkt := c.Encap(withHeadroom(f), len(f))
				gc := listenIn(t, src, codec, packetTestPort+2, Options{NoPacketEgress: true})
				writeIn(t, src, gc, []Message{{Buf: pkt, Addr: peer.Underlay}, {Buf: pkt, Addr: peer.Underlay}})
				// And a run through AF_PACKET.
				f = testFrame(100, 1003)
				pkt = c.Encap(withHeadroom(f), len(f))
				writeIn(t, src, pc, []Message{{Buf: pkt, Addr: peer.Underlay}, {Buf: pkt, Addr: peer.Underlay}})
			}
			if code, err := capt.Wait(10 * time.Second); code != 0 || err != nil {
				t.Fatalf("tshark: %d, %v\n%s", code, err, capt.Output())
			}
			out := exec(t, peer, "tshark", "-r", file, "-V", "-O", "eth,ip,udp,gre")
			t.Logf("in order: the IP socket, AF_PACKET%s\n%s", map[string]string{"vxlan": ", a UDP_SEGMENT run of two, an AF_PACKET run of two"}[codec], out)
		})
	}
}

// TestIntegrationPacketEgressVXLANRuns checks VXLAN segmentation offload
// through AF_PACKET: the copies of a flow that has several to a peer leave
// as one packet, which the kernel splits in software (the source's
// interface has neither UDP segmentation nor checksum offload, so the
// kernel computes each copy's UDP checksum and the peer checks it), the
// others one by one. The peer receives every frame, the run in order, each
// copy with the outer header the others have, a valid UDP checksum and
// IDs that count up.
func TestIntegrationPacketEgressVXLANRuns(t *testing.T) {
	src, peer, pc, msgs, frames, wire := sendVXLANRuns(t, false)
	if st := pc.Offloads()[3]; st.Name != OffloadPacketGSO || !st.InUse || st.Fallbacks != 0 {
		t.Errorf("%+v, want %s in use", st, OffloadPacketGSO)
	}
	// On the wire: the run's copies, with the header of the others, IDs
	// counting up, and a UDP checksum that verifies.
	srcMAC, dstMAC := linkMAC(t, src, nstest.NodeLink), linkMAC(t, peer, nstest.NodeLink)
	var ids []uint16
	for _, f := range wire {
		ip := f[EthHeaderLen:]
		u := ip[IPv4HeaderLen:]
		if binary.BigEndian.Uint16(u[0:2]) != FlowPort(frames[0]) {
			continue
		}
		ids = append(ids, binary.BigEndian.Uint16(ip[4:6]))
		pkt := u[:binary.BigEndian.Uint16(u[4:6])]
		if binary.BigEndian.Uint16(u[6:8]) == 0 || !udpChecksumOK(ip[12:20], pkt) {
			t.Errorf("copy of the run with UDP checksum %#x, which does not verify", binary.BigEndian.Uint16(u[6:8]))
		}
		// But for the checksum, the copy is the packet Encap made.
		g := bytes.Clone(f)
		clear(g[EthHeaderLen+IPv4HeaderLen+6 : EthHeaderLen+IPv4HeaderLen+8])
		var sent []byte
		for _, m := range msgs {
			if bytes.Equal(m.Buf, g[EthHeaderLen+IPv4HeaderLen:]) {
				sent = m.Buf
			}
		}
		if sent == nil {
			t.Errorf("a copy of the run on the wire is no packet that was sent")
			continue
		}
		checkOuter(t, g, sent, srcMAC, dstMAC, src.Underlay, peer.Underlay, ProtoUDP, 64)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Errorf("IPv4 IDs of the run %v, want each the next", ids)
			break
		}
	}
	if len(ids) != 10 {
		t.Errorf("%d copies of the run on the wire, want 10", len(ids))
	}
}

// sendVXLANRuns is what TestIntegrationPacketEgressVXLANRuns and its IPv6
// variant share: over an IPv6-only underlay if v6, it sends VXLAN with
// runs of one flow through pc, from src to peer, whose interface the
// kernel splits them on, and checks that the peer receives every frame,
// the run in order, and how pc counted them. It returns the copies sent,
// their frames and the copies on the wire.
func sendVXLANRuns(t *testing.T, v6 bool) (src, peer *nstest.Node, pc *Conn, msgs []Message, frames, wire [][]byte) {
	t.Helper()
	nstest.LeakCheck(t)
	nt := newNetOf(t, 2, v6)
	src, peer = nt.Node(1), nt.Node(2)
	srcAddr, peerAddr := underlayOf(src), underlayOf(peer)
	exec(t, src, "ethtool", "-K", nstest.NodeLink, "tx-udp-segmentation", "off", "tx", "off")
	pc = listenAt(t, src, srcAddr, "vxlan", packetTestPort, Options{})
	rc := listenAt(t, peer, peerAddr, "vxlan", DefaultVXLANPort, Options{NoOffload: true})
	capt := newCapture(t, peer, nstest.NodeLink, ethTypeOf(v6))
	c := codecOf("vxlan")
	add := func(flow uint16, size, seq int) {
		f := testFrame(size, flow)
		binary.BigEndian.PutUint32(f[size-4:], uint32(seq))
		frames = append(frames, f)
		msgs = append(msgs, Message{Buf: c.Encap(withHeadroom(f), len(f)), Addr: peerAddr})
	}
	for i := range 10 {
		size := 1000
		if i == 9 {
			size = 300 // a shorter last copy ends the run
		}
		add(1001, size, i)
		if i%2 == 0 {
			add(uint16(2000+i), 200, i) // singles
		}
	}
	writeIn(t, src, pc, msgs)
	readN(t, rc, len(msgs))
	capt.frames(t, len(msgs), srcAddr, ProtoUDP)
	waitResolved(t, pc, peerAddr)
	before := pc.PacketEgress()
	writeIn(t, src, pc, msgs)
	got := readN(t, rc, len(msgs))
	wire = capt.frames(t, len(msgs), srcAddr, ProtoUDP)
	checkDelivered(t, c, got, srcAddr, frames)
	var run []uint32
	decap := c.Decap
	if v6 {
		decap = c.DecapIPv6
	}
	for _, m := range got {
		inner, _ := decap(m.buf)
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
	return src, peer, pc, msgs, frames, wire
}

// udpChecksumOK verifies the UDP checksum of pkt (a UDP header and its
// payload) between the addresses addrs (source then destination).
func udpChecksumOK(addrs, pkt []byte) bool {
	ps := make([]byte, 0, 12+len(pkt))
	ps = append(ps, addrs...)
	ps = append(ps, 0, ProtoUDP, byte(len(pkt)>>8), byte(len(pkt)))
	ps = append(ps, pkt...)
	return inet.Verify(ps)
}

// TestIntegrationPacketEgressIPsec checks that a peer behind an IPsec
// policy for outgoing packets never takes AF_PACKET, which would bypass
// it: the resolver follows the policy's addition and removal at once.
func TestIntegrationPacketEgressIPsec(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	pc := listenIn(t, src, "gre", 0, Options{})
	listenIn(t, peer, "gre", 0, Options{})
	pkts, _ := encapFrames(codecOf("gre"), 4)
	writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
	waitResolved(t, pc, peer.Underlay)
	policy := []string{"src", src.Underlay.String() + "/32", "dst", peer.Underlay.String() + "/32", "dir", "out"}
	exec(t, src, append([]string{"ip", "xfrm", "policy", "add"}, append(policy, "tmpl", "proto", "esp", "mode", "transport")...)...)
	start := time.Now()
	waitRoute(t, pc, peer.Underlay, "the IPsec policy", func(r *peerRoute) bool { return !r.ok && r.elsewhere })
	t.Logf("the IPsec policy took effect in %v", time.Since(start))
	before := pc.PacketEgress()
	// The kernel holds these for want of a security association.
	src.Do(func() (err error) { _, err = pc.WriteBatch(peerMsgs(pkts, peer.Underlay)); return err })
	if after := pc.PacketEgress(); after.Packet != before.Packet {
		t.Errorf("%d copies through AF_PACKET with an IPsec policy", after.Packet-before.Packet)
	}
	exec(t, src, append([]string{"ip", "xfrm", "policy", "delete"}, policy...)...)
	waitResolved(t, pc, peer.Underlay)
}

// TestIntegrationPacketEgressQdisc checks that the packet socket skips the
// queueing discipline only while the interface has a default one: with an
// operator's shaper (htb, 8 kbit/s to the peer) the copies through
// AF_PACKET are shaped too, as the socket path's are, and without it they
// skip it again.
func TestIntegrationPacketEgressQdisc(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	pc := listenIn(t, src, "gre", 0, Options{})
	rc := listenIn(t, peer, "gre", 0, Options{})
	c := codecOf("gre")
	pkts, frames := encapFrames(c, 20)
	writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
	readN(t, rc, len(pkts))
	waitResolved(t, pc, peer.Underlay)
	waitBypass := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(ioTimeout)
		for pc.PacketEgress().QdiscBypass != want {
			if time.Now().After(deadline) {
				t.Fatalf("qdisc bypass %v, want %v", !want, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitBypass(true)
	for _, args := range [][]string{
		{"qdisc", "add", "dev", nstest.NodeLink, "root", "handle", "1:", "htb", "default", "10"},
		{"class", "add", "dev", nstest.NodeLink, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"},
		{"class", "add", "dev", nstest.NodeLink, "parent", "1:", "classid", "1:20", "htb", "rate", "8kbit", "ceil", "8kbit"},
		{"filter", "add", "dev", nstest.NodeLink, "parent", "1:", "protocol", "ip", "u32",
			"match", "ip", "dst", peer.Underlay.String() + "/32", "flowid", "1:20"},
	} {
		exec(t, src, append([]string{"tc"}, args...)...)
	}
	waitBypass(false)
	before := pc.PacketEgress()
	writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
	if after := pc.PacketEgress(); after.Packet-before.Packet != uint64(len(pkts)) {
		t.Errorf("%d of %d copies through AF_PACKET", after.Packet-before.Packet, len(pkts))
	}
	// At 8 kbit/s the shaper lets a copy or two through in 300 ms.
	rx, _ := peer.RxPackets(nstest.NodeLink)
	time.Sleep(300 * time.Millisecond)
	if got, _ := peer.RxPackets(nstest.NodeLink); got-rx > 5 {
		t.Errorf("%d of %d copies reached the peer in 300 ms past an 8 kbit/s shaper", got-rx, len(pkts))
	}
	exec(t, src, "tc", "qdisc", "del", "dev", nstest.NodeLink, "root")
	waitBypass(true)
	// Those the shaper held are gone with it; the next arrive at once.
	drain := make([]Message, 64)
	rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		if _, err := rc.ReadBatch(drain); err != nil {
			break
		}
	}
	rc.SetReadDeadline(time.Time{})
	writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
	checkDelivered(t, c, readN(t, rc, len(pkts)), src.Underlay, frames)
}

// TestIntegrationPacketGSOLoopbackProbe runs the open-time probe of
// VIRTIO_NET_HDR_GSO_UDP_L4 in a namespace of its own and checks what it
// did: on this kernel, either it took the packet and the probe went out on
// the loopback interface (and nowhere else), or it refused it and says so.
func TestIntegrationPacketGSOLoopbackProbe(t *testing.T) {
	nstest.LeakCheck(t)
	n := nstest.NewNet(t, 1).Node(1)
	lo0 := n.MustCounters(t, "lo")
	eth0 := n.MustCounters(t, nstest.NodeLink)
	var err error
	n.Do(func() error { err = probeSegLoopback(); return nil })
	lo1 := n.MustCounters(t, "lo")
	eth1 := n.MustCounters(t, nstest.NodeLink)
	t.Logf("Linux %s: probe %v; loopback sent %d packets", KernelRelease(), err, lo1.TxPackets-lo0.TxPackets)
	if eth1.TxPackets != eth0.TxPackets {
		t.Errorf("the probe sent %d packets on the underlay", eth1.TxPackets-eth0.TxPackets)
	}
	switch {
	case err == nil && lo1.TxPackets == lo0.TxPackets:
		t.Errorf("the probe took the offload without the kernel sending anything")
	case err != nil && Errno(err) != unix.EINVAL:
		t.Errorf("probe: %v, want nil or EINVAL", err)
	}
}
