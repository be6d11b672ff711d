package overlay

import (
	"net/netip"

	"github.com/meshcast/meshcast/internal/inet"
)

// Headroom is the space every frame buffer reserves in front of the inner
// Ethernet frame, so that any Codec can write its header in place.
const Headroom = 32

// EthHeaderLen is the length of an Ethernet header without a VLAN tag.
const EthHeaderLen = 14

// IPv4HeaderLen is the length of an outer IPv4 header without options.
const IPv4HeaderLen = 20

// IPv6HeaderLen is the length of an outer IPv6 header; meshcast sends no
// extension headers.
const IPv6HeaderLen = 40

// Codec encapsulates and decapsulates inner Ethernet frames. A Codec is
// immutable and safe for concurrent use.
type Codec interface {
	// Name is "gre" or "vxlan".
	Name() string
	// Overhead is what an IPv4 underlay carries per frame beyond the
	// inner frame's IP packet: outer IPv4, the tunnel headers and the
	// inner Ethernet header. The TAP MTU is the underlay MTU minus
	// Overhead; over IPv6 see OverheadOver.
	Overhead() int
	// HeaderLen is how many bytes Encap writes in front of the frame. The
	// outer IPv4 header is written by the kernel and is not included.
	HeaderLen() int
	// Encap writes the tunnel header in front of the frame held in
	// buf[Headroom:Headroom+n] and returns the packet to send, which is
	// buf[Headroom-HeaderLen():Headroom+n]. It requires len(buf) >= Headroom+n.
	Encap(buf []byte, n int) []byte
	// Decap validates a packet exactly as the IPv4 underlay socket
	// delivered it and returns the inner Ethernet frame, a subslice of
	// pkt, or the reason to drop it.
	Decap(pkt []byte) ([]byte, Reason)
	// DecapIPv6 is Decap for a packet from the IPv6 underlay socket,
	// which delivers no outer header (the kernel has validated it and
	// its extension headers).
	DecapIPv6(pkt []byte) ([]byte, Reason)
}

// OverheadOver is c's overhead over an underlay of the family of addr:
// Overhead, plus 20 bytes over IPv6 (a 40-byte outer header for IPv4's
// 20). GRE over IPv6 costs 58 bytes (62 with a key), VXLAN 70.
func OverheadOver(c Codec, addr netip.Addr) int {
	if addr.Is6() && !addr.Is4In6() {
		return c.Overhead() + IPv6HeaderLen - IPv4HeaderLen
	}
	return c.Overhead()
}

// ParseIPv4 validates an outer IPv4 header as a raw socket delivers it and
// returns the source address, the protocol and the payload (trimmed to the
// header's total length). Options and fragments are refused: no tunnel
// endpoint meshcast talks to sends them.
func ParseIPv4(pkt []byte) (src netip.Addr, proto uint8, payload []byte, r Reason) {
	h := inet.IPv4(pkt)
	switch h.Check() {
	case inet.IPv4OK:
	case inet.IPv4Short, inet.IPv4Truncated:
		return src, 0, nil, ReasonTruncated
	default:
		return src, 0, nil, ReasonIPHeader
	}
	if h.HeaderLen() != IPv4HeaderLen {
		return src, 0, nil, ReasonIPOptions
	}
	if h.IsFragment() {
		return src, 0, nil, ReasonIPFragment
	}
	return h.Src(), h.Protocol(), h.Payload(), OK
}

// Checksum returns the Internet checksum (RFC 1071) of b, folded and
// complemented, ready to store in a header.
func Checksum(b []byte) uint16 { return inet.Checksum(b) }
