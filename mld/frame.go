package mld

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frame-level constants.
const (
	// EtherTypeIPv6 is the EtherType of IPv6.
	EtherTypeIPv6 = 0x86dd

	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	hbhLen        = 8 // the Hop-by-Hop header BuildFrame writes

	// FrameOverhead is the length of the headers BuildFrame writes in front
	// of the MLD message: 14 bytes of Ethernet, the 40-byte IPv6 header and
	// an 8-byte Hop-by-Hop Options header holding Router Alert.
	FrameOverhead = ethHeaderLen + ipv6HeaderLen + hbhLen

	// IPv6 header fields, from the start of the IPv6 header.
	ipOffPayloadLen = 4
	ipOffNextHeader = 6
	ipOffHopLimit   = 7
	ipOffSrc        = 8
	ipOffDst        = 24

	// Next Header values of the extension headers FromFrame knows.
	nextHopByHop  = 0
	nextRouting   = 43
	nextFragment  = 44
	nextDestOpts  = 60
	maxExtHeaders = 8 // the most extension headers FromFrame walks

	// Hop-by-Hop options (RFC 8200 section 4.2, RFC 2711).
	optPad1        = 0
	optPadN        = 1
	optRouterAlert = 5 // Router Alert, 2 bytes of value; value 0 is MLD
)

// FrameReason says what FromFrame found in a frame.
type FrameReason uint8

// What FromFrame finds.
const (
	NotMLD    FrameReason = iota // not IPv6, or IPv6 carrying something other than MLD
	IsMLD                        // IPv6 carrying ICMPv6 of an MLD type: Parse the Packet's MLD bytes
	Malformed                    // IPv6 whose headers are too broken to tell what it carries
)

// Packet is what FromFrame finds in a frame carrying MLD.
type Packet struct {
	Src, Dst netip.Addr // the IPv6 header's addresses, for Parse
	HopLimit uint8      // MLD is sent with 1 (RFC 3810 section 5)
	// RouterAlert is true when a Hop-by-Hop Options header carries the
	// Router Alert option (type 5, length 2) with value 0, MLD's (RFC
	// 2711). RFC 3810 section 5 has MLD messages sent with it.
	RouterAlert bool
	// MLD is the ICMPv6 message, a view into the frame trimmed to the IPv6
	// payload length, so Ethernet padding is left out. Its capacity is its
	// length, so an append cannot overwrite the frame.
	MLD []byte
}

// ipv6 returns the IPv6 packet of an untagged Ethernet frame whose EtherType
// is IPv6 and whose 40-byte header is present, or ok false.
func ipv6(frame []byte) (ip []byte, ok bool) {
	if len(frame) < ethHeaderLen+ipv6HeaderLen ||
		binary.BigEndian.Uint16(frame[12:14]) != EtherTypeIPv6 {
		return nil, false
	}
	return frame[ethHeaderLen:], true
}

// IPv6Multicast returns the source and destination of an untagged Ethernet
// frame carrying IPv6 to a multicast destination (ff00::/8), for the
// forwarding decision. ok is false for other EtherTypes, a version other
// than 6, a 40-byte header cut short by the end of the frame, or a
// destination that is not multicast. It checks nothing more (no payload
// length, no extension headers), so it costs a few loads and allocates
// nothing.
func IPv6Multicast(frame []byte) (src, dst netip.Addr, ok bool) {
	ip, ok := ipv6(frame)
	if !ok || ip[0]>>4 != 6 || ip[ipOffDst] != 0xff {
		return src, dst, false
	}
	return addr(ip[ipOffSrc:]), addr(ip[ipOffDst:]), true
}

// FromFrame finds an MLD message in an untagged Ethernet frame, as the TAP
// or a peer carries it, and says whether it found one.
//
// A frame whose EtherType is not 0x86dd (802.1Q tags are not looked
// through), or whose IP version is not 6, is NotMLD. An IPv6 header cut
// short by the end of the frame, or a payload length beyond the frame, is
// Malformed.
//
// FromFrame then walks the extension headers within the payload: a
// Hop-by-Hop Options header, only as the first one (RFC 8200 section 4.1),
// then Destination Options and Routing headers, at most 8 in all. A
// Hop-by-Hop header anywhere else, an extension header that runs past the
// payload, a Hop-by-Hop option that runs past its header, or a ninth
// extension header is Malformed: FromFrame cannot tell what such a packet
// carries, and does not guess. A Fragment header, or any next header other
// than these and ICMPv6, is NotMLD: FromFrame does not reassemble, and MLD
// messages, sent from a link-local address to the link, are not fragmented.
//
// ICMPv6 of type 130, 131, 132 or 143 is IsMLD; other ICMPv6 messages
// (neighbour discovery, echo) and an empty ICMPv6 payload are NotMLD. For
// IsMLD the Packet holds the IPv6 addresses, the hop limit, whether the
// Hop-by-Hop header carried MLD's Router Alert, and the message bytes.
// FromFrame checks neither the hop limit, nor Router Alert, nor the source
// address RFC 3810 section 5 asks for (link-local, or :: for reports): the
// caller decides, with the Packet in hand. Nor does it check the message
// itself: Parse does. Dst is the IPv6 header's: behind a Routing header
// with segments left it is not the final destination the checksum's
// pseudo-header uses, and Parse refuses the message; MLD is never routed.
//
// On NotMLD and Malformed the Packet is the zero Packet. FromFrame allocates
// nothing and never panics.
func FromFrame(frame []byte) (Packet, FrameReason) {
	u, r := walk(frame)
	if r != reached {
		return Packet{}, r
	}
	if u.next != NextHeaderICMPv6 || u.off >= len(u.ip) {
		return Packet{}, NotMLD
	}
	switch u.ip[u.off] {
	case TypeQuery, TypeV1Report, TypeV1Done, TypeV2Report:
	default:
		return Packet{}, NotMLD
	}
	return Packet{
		Src:         addr(u.ip[ipOffSrc:]),
		Dst:         addr(u.ip[ipOffDst:]),
		HopLimit:    u.ip[ipOffHopLimit],
		RouterAlert: u.routerAlert,
		MLD:         u.ip[u.off:],
	}, IsMLD
}

// upper is where walk found the upper layer of an IPv6 packet.
type upper struct {
	// ip is the IPv6 packet, trimmed to its payload length; its capacity
	// is its length.
	ip          []byte
	next        uint8 // the Next Header of the upper layer
	off         int   // where the upper layer starts in ip; len(ip) if it is empty
	routerAlert bool  // a Hop-by-Hop header carried MLD's Router Alert
}

// reached is what walk returns when it found the upper layer.
const reached = IsMLD

// walk checks the IPv6 header of an untagged Ethernet frame and walks its
// extension headers as FromFrame describes, up to the first next header
// that is none of Hop-by-Hop, Destination Options and Routing (a Fragment
// header stops it too). It returns reached and where the upper layer is;
// NotMLD for a frame that is not IPv6; or Malformed. It allocates nothing.
func walk(frame []byte) (upper, FrameReason) {
	if len(frame) < ethHeaderLen || binary.BigEndian.Uint16(frame[12:14]) != EtherTypeIPv6 {
		return upper{}, NotMLD
	}
	if len(frame) > ethHeaderLen && frame[ethHeaderLen]>>4 != 6 {
		return upper{}, NotMLD
	}
	ip, ok := ipv6(frame)
	if !ok {
		return upper{}, Malformed
	}
	end := ipv6HeaderLen + int(binary.BigEndian.Uint16(ip[ipOffPayloadLen:]))
	if end > len(ip) {
		return upper{}, Malformed
	}
	ip = ip[:end:end]

	routerAlert := false
	next := ip[ipOffNextHeader]
	off := ipv6HeaderLen
	for n := 0; ; n++ {
		switch next {
		case nextHopByHop, nextDestOpts, nextRouting:
		default: // ICMPv6, PIM, Fragment, No Next Header, transport protocols, ...
			return upper{ip: ip, next: next, off: off, routerAlert: routerAlert}, reached
		}
		if n == maxExtHeaders || (next == nextHopByHop && n != 0) {
			return upper{}, Malformed
		}
		// Every extension header walk follows starts with Next Header
		// and Hdr Ext Len, its length in 8-byte units beyond the first 8.
		if end-off < 2 {
			return upper{}, Malformed
		}
		hlen := 8 * (int(ip[off+1]) + 1)
		if end-off < hlen {
			return upper{}, Malformed
		}
		if next == nextHopByHop {
			ra, ok := hbhOptions(ip[off+2 : off+hlen])
			if !ok {
				return upper{}, Malformed
			}
			routerAlert = ra
		}
		next = ip[off]
		off += hlen
	}
}

// hbhOptions walks the options of a Hop-by-Hop header (its bytes after Next
// Header and Hdr Ext Len). It reports whether they include Router Alert with
// value 0 (MLD), and ok false if an option runs past the header. Options
// other than Pad1, PadN and Router Alert are skipped whatever their type
// asks of a node that does not know them: snooping only looks.
func hbhOptions(opts []byte) (routerAlert, ok bool) {
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == optPad1 {
			i++
			continue
		}
		if len(opts)-i < 2 {
			return false, false
		}
		l := int(opts[i+1])
		if len(opts)-i-2 < l {
			return false, false
		}
		if t == optRouterAlert && l == 2 && opts[i+2] == 0 && opts[i+3] == 0 {
			routerAlert = true
		}
		i += 2 + l
	}
	return routerAlert, true
}

// MulticastMAC returns the Ethernet address that IPv6 multicast address
// group maps to (RFC 2464 section 7): 33:33 followed by the low 32 bits of
// the address.
func MulticastMAC(group netip.Addr) [6]byte {
	g := group.As16()
	return [6]byte{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// LinkLocal returns the link-local address (fe80::/64) whose interface ID is
// the modified EUI-64 of mac (RFC 4291 appendix A): the MAC with its
// universal/local bit flipped and ff:fe inserted in its middle. It is the
// address a node with that MAC uses as the source of its MLD messages. It
// requires len(mac) == 6 and panics otherwise.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	if len(mac) != 6 {
		panic("mld: LinkLocal MAC is not 6 bytes")
	}
	return netip.AddrFrom16([16]byte{
		0xfe, 0x80, 0, 0, 0, 0, 0, 0,
		mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5],
	})
}

// BuildFrame writes an Ethernet frame carrying the MLD message mld from src
// to dst into buf and returns the frame's length, FrameOverhead + len(mld).
//
// The Ethernet destination is MulticastMAC(dst), the source srcMAC, the
// EtherType IPv6. The IPv6 header has traffic class 0, flow label 0, the
// payload length, next header 0 and hop limit 1 (RFC 3810 section 5), then
// an 8-byte Hop-by-Hop Options header: next header 58, the Router Alert
// option with value 0 (RFC 2711) and a 2-byte PadN. The message is copied in
// as is, then its ICMPv6 checksum is set (SetChecksum); it may already sit
// at buf[FrameOverhead:], in which case nothing moves.
//
// It requires len(srcMAC) == 6, an IPv6 src (:: is allowed, as reports may
// be sent from it), a dst in ff00::/8, at most 65535 bytes of IPv6
// payload, and len(buf) >= FrameOverhead+len(mld) with len(mld) >= 4, and
// panics otherwise.
func BuildFrame(buf []byte, srcMAC net.HardwareAddr, src, dst netip.Addr, mld []byte) int {
	if len(srcMAC) != 6 {
		panic("mld: BuildFrame source MAC is not 6 bytes")
	}
	// Not dst.IsMulticast: it holds for IPv4-mapped multicast addresses
	// too, which are not in ff00::/8.
	if d := dst.As16(); !src.Is6() || !dst.Is6() || d[0] != 0xff {
		panic("mld: BuildFrame needs an IPv6 source and a multicast IPv6 destination")
	}
	if len(mld) < 4 {
		panic("mld: BuildFrame message shorter than the ICMPv6 header")
	}
	n := FrameOverhead + len(mld)
	if len(buf) < n {
		panic("mld: BuildFrame buffer too short")
	}
	if hbhLen+len(mld) > 0xffff {
		panic("mld: BuildFrame message too long for IPv6")
	}
	f := buf[:n]
	copy(f[FrameOverhead:], mld) // first: mld may alias buf
	mac := MulticastMAC(dst)
	copy(f[0:6], mac[:])
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], EtherTypeIPv6)

	ip := f[ethHeaderLen:FrameOverhead]
	ip[0], ip[1], ip[2], ip[3] = 6<<4, 0, 0, 0 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip[ipOffPayloadLen:], uint16(hbhLen+len(mld)))
	ip[ipOffNextHeader] = nextHopByHop
	ip[ipOffHopLimit] = 1
	s, d := src.As16(), dst.As16()
	copy(ip[ipOffSrc:], s[:])
	copy(ip[ipOffDst:], d[:])
	hbh := ip[ipv6HeaderLen:]
	hbh[0], hbh[1] = NextHeaderICMPv6, 0 // Hdr Ext Len 0: 8 bytes
	hbh[2], hbh[3], hbh[4], hbh[5] = optRouterAlert, 2, 0, 0
	hbh[6], hbh[7] = optPadN, 0
	SetChecksum(src, dst, f[FrameOverhead:])
	return n
}
