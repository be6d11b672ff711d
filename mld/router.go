package mld

import (
	"net/netip"

	"github.com/meshcast/meshcast/internal/inet"
)

// Multicast router discovery over IPv6. A snooping switch learns the ports
// behind which multicast routers sit (RFC 4541 section 2.1.1) from MLD
// queries, from PIM Hellos (RFC 7761) and from Multicast Router Discovery
// messages (RFC 4286 section 4). PIMFromFrame and MRDFromFrame find those
// messages in a frame; package igmp parses them (ParsePIM6, ParseMRD6).

// Router discovery constants.
const (
	// NextHeaderPIM is the IPv6 Next Header value of PIM.
	NextHeaderPIM = 103

	// ICMPv6 types of Multicast Router Discovery (RFC 4286 section 4):
	// an advertisement and a termination go to AllSnoopers6, a
	// solicitation to ff02::2. They have the layout of IPv4's MRD
	// messages.
	TypeMRDAdvertisement6 = 151
	TypeMRDSolicitation6  = 152
	TypeMRDTermination6   = 153
)

// Well-known groups of router discovery over IPv6.
var (
	// AllPIMRouters6 is ff02::d, where PIM Hellos go.
	AllPIMRouters6 = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x0d})
	// AllSnoopers6 is ff02::6a, where MRD advertisements and terminations
	// go.
	AllSnoopers6 = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x6a})
)

// PIMFromFrame finds a PIM message in an untagged Ethernet frame carrying
// IPv6. It checks the IPv6 header and walks the extension headers as
// FromFrame does; an upper layer of next header 103 is PIM. It returns the
// IPv6 header's source and destination and the PIM bytes, a view into the
// frame trimmed to the IPv6 payload length (so without Ethernet padding),
// whose capacity is its length; or ok false, for a frame that is not IPv6,
// is malformed as FromFrame judges it, or carries something else. The PIM
// bytes may be empty: ParsePIM6 in package igmp judges them. It allocates
// nothing and never panics.
func PIMFromFrame(frame []byte) (src, dst netip.Addr, pim []byte, ok bool) {
	u, r := walk(frame)
	if r != reached || u.next != NextHeaderPIM {
		return src, dst, nil, false
	}
	return addr(u.ip[ipOffSrc:]), addr(u.ip[ipOffDst:]), u.ip[u.off:], true
}

// MRDFromFrame finds a Multicast Router Discovery message (RFC 4286 section
// 4) in an untagged Ethernet frame, as PIMFromFrame finds PIM: ICMPv6 of
// type 151, 152 or 153. It returns the IPv6 header's source and
// destination and the ICMPv6 message, from its type byte to the end of the
// IPv6 payload, or ok false. It checks neither the message nor the hop
// limit, Router Alert or source address: ParseMRD6 in package igmp checks
// the message, and the caller the rest. It allocates nothing and never
// panics.
func MRDFromFrame(frame []byte) (src, dst netip.Addr, msg []byte, ok bool) {
	u, r := walk(frame)
	if r != reached || u.next != NextHeaderICMPv6 || u.off >= len(u.ip) {
		return src, dst, nil, false
	}
	if t := u.ip[u.off]; t < TypeMRDAdvertisement6 || t > TypeMRDTermination6 {
		return src, dst, nil, false
	}
	return addr(u.ip[ipOffSrc:]), addr(u.ip[ipOffDst:]), u.ip[u.off:], true
}

// VerifyPseudo reports whether b, an upper-layer message of next header
// nextHeader that src sent to dst, checksum field included, sums to all
// ones over the IPv6 pseudo-header (RFC 8200 section 8.1: src, dst, an
// upper-layer length of len(b) and nextHeader) and b. It is the check of
// ICMPv6 (58) and of PIM over IPv6 (103, RFC 7761 section 4.9).
func VerifyPseudo(src, dst netip.Addr, nextHeader uint8, b []byte) bool {
	// pseudoSum adds ICMPv6's next header; put nextHeader in its place.
	acc := pseudoSum(src, dst, len(b)) - NextHeaderICMPv6 + uint64(nextHeader)
	return inet.Fold(inet.Sum(b, acc)) == 0xffff
}
