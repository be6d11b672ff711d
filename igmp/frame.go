package igmp

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/meshcast/meshcast/internal/inet"
)

// Frame-level constants.
const (
	// EtherTypeIPv4 is the EtherType of IPv4.
	EtherTypeIPv4 = 0x0800
	// ProtoIGMP is the IPv4 protocol number of IGMP.
	ProtoIGMP = 2

	ethHeaderLen = 14

	// FrameOverhead is the length of the headers BuildQueryFrame writes in
	// front of the IGMP message: 14 bytes of Ethernet and 24 of IPv4 (a
	// 20-byte header and the 4-byte Router Alert option).
	FrameOverhead = ethHeaderLen + inet.IPv4MinLen + 4

	ipTOSInternet  = 0xc0 // precedence 6, Internetwork Control, as IGMP is sent
	optRouterAlert = 0x94 // copied flag, class 0, option 20 (RFC 2113)
)

// ipv4 returns the IPv4 packet of an untagged Ethernet frame, or ok false
// when the frame is too short to hold an Ethernet header and an IPv4 header
// without options, or its EtherType is not IPv4.
func ipv4(frame []byte) (ip inet.IPv4, ok bool) {
	if len(frame) < ethHeaderLen+inet.IPv4MinLen ||
		binary.BigEndian.Uint16(frame[12:14]) != EtherTypeIPv4 {
		return nil, false
	}
	return inet.IPv4(frame[ethHeaderLen:]), true
}

// FromFrame finds an IGMP message in an untagged Ethernet frame, as the TAP
// or a peer carries it. It returns the IPv4 source and destination and the
// IGMP bytes (a view into frame, trimmed to the IP total length so Ethernet
// padding is left out), or isIGMP false.
//
// The frame must carry EtherType 0x0800 (802.1Q tags are not looked
// through) and an IPv4 header with version 4, IHL of at least 5 (options
// are allowed: IGMP carries Router Alert), a header checksum that verifies, a
// total length that covers the header and fits in the frame, protocol 2,
// and no fragmentation (neither MF nor an offset). TTL and the Router Alert
// option are not required. FromFrame does not check the IGMP message itself:
// Parse does. It allocates nothing.
func FromFrame(frame []byte) (src, dst netip.Addr, igmp []byte, isIGMP bool) {
	ip, ok := ipv4(frame)
	if !ok || ip.Check() != inet.IPv4OK || ip.Protocol() != ProtoIGMP ||
		ip.IsFragment() || !ip.HeaderChecksumOK() {
		return src, dst, nil, false
	}
	return ip.Src(), ip.Dst(), ip.Payload(), true
}

// IPv4Multicast returns the source, the destination and the protocol of an
// untagged Ethernet frame carrying IPv4 to a multicast destination
// (224.0.0.0/4), for the forwarding decision. ok is false for other
// EtherTypes, a version other than 4, an IHL below 5, a header cut short by
// the end of the frame, or a destination that is not multicast. It checks
// nothing more (no checksum, no total length), so it costs a few loads and
// allocates nothing.
func IPv4Multicast(frame []byte) (src, dst netip.Addr, proto uint8, ok bool) {
	ip, ok := ipv4(frame)
	if !ok || ip.Version() != 4 {
		return src, dst, 0, false
	}
	if hlen := ip.HeaderLen(); hlen < inet.IPv4MinLen || hlen > len(ip) || !isMulticast(ip[inet.IPv4Dst:]) {
		return src, dst, 0, false
	}
	return ip.Src(), ip.Dst(), ip.Protocol(), true
}

// MulticastMAC returns the Ethernet address that IPv4 group maps to (RFC 1112
// section 6.4): 01:00:5e followed by the low 23 bits of the group. group must
// be an IPv4 address (any, though only multicast ones are meaningful).
func MulticastMAC(group netip.Addr) [6]byte {
	g := group.As4()
	return [6]byte{0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3]}
}

// BuildQueryFrame writes an Ethernet frame carrying the IGMP message igmp
// into buf and returns the frame's length, FrameOverhead + len(igmp). It is
// meant for queries but works for any IGMP message.
//
// The Ethernet destination is MulticastMAC(dstIP), the source srcMAC, the
// EtherType IPv4. The IPv4 header has TOS 0xc0 (Internetwork Control), ID 0,
// no flags (DF off), TTL 1, protocol 2, the Router Alert option of RFC 2113
// (so IHL 6), and its checksum filled in. The IGMP message is copied in as
// is; it may already sit at buf[FrameOverhead:], in which case nothing moves.
//
// It requires len(srcMAC) == 6, IPv4 srcIP and dstIP, and
// len(buf) >= FrameOverhead+len(igmp), and panics otherwise.
func BuildQueryFrame(buf []byte, srcMAC net.HardwareAddr, srcIP, dstIP netip.Addr, igmp []byte) int {
	if len(srcMAC) != 6 {
		panic("igmp: BuildQueryFrame source MAC is not 6 bytes")
	}
	n := FrameOverhead + len(igmp)
	if len(buf) < n {
		panic("igmp: BuildQueryFrame buffer too short")
	}
	if n-ethHeaderLen > 0xffff {
		panic("igmp: BuildQueryFrame message too long for IPv4")
	}
	f := buf[:n]
	copy(f[FrameOverhead:], igmp) // first: igmp may alias buf
	mac := MulticastMAC(dstIP)
	copy(f[0:6], mac[:])
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], EtherTypeIPv4)

	ip := inet.IPv4(f[ethHeaderLen:FrameOverhead])
	ip[inet.IPv4VerIHL] = 4<<4 | 6
	ip[inet.IPv4TOS] = ipTOSInternet
	ip.SetTotalLen(n - ethHeaderLen)
	binary.BigEndian.PutUint16(ip[inet.IPv4ID:], 0)
	binary.BigEndian.PutUint16(ip[inet.IPv4FlagsFrag:], 0)
	ip[inet.IPv4TTL] = 1
	ip[inet.IPv4Proto] = ProtoIGMP
	s, d := srcIP.As4(), dstIP.As4()
	copy(ip[inet.IPv4Src:], s[:])
	copy(ip[inet.IPv4Dst:], d[:])
	ip[20], ip[21], ip[22], ip[23] = optRouterAlert, 4, 0, 0 // value 0: examine the packet
	ip.SetChecksum()
	return n
}
