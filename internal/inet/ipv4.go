package inet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 is a view of an IPv4 header (RFC 791 section 3.1) at the start of a
// byte slice, and of the packet it heads. Its getters read the fields in
// place and copy nothing. They assume len(h) >= IPv4MinLen (and
// HeaderChecksumOK and Payload a header that Check accepted): check first.
type IPv4 []byte

// Offsets and sizes of the IPv4 header fields (RFC 791 section 3.1).
const (
	IPv4VerIHL    = 0  // version (4 bits) and IHL, the header length in 32-bit words (4 bits)
	IPv4TOS       = 1  // type of service
	IPv4TotalLen  = 2  // total length of the packet, header included (16 bits)
	IPv4ID        = 4  // identification (16 bits)
	IPv4FlagsFrag = 6  // flags (3 bits: reserved, DF, MF) and fragment offset (13 bits)
	IPv4TTL       = 8  // time to live
	IPv4Proto     = 9  // protocol of the payload
	IPv4Checksum  = 10 // header checksum (16 bits)
	IPv4Src       = 12 // source address (4 bytes)
	IPv4Dst       = 16 // destination address (4 bytes)
	IPv4MinLen    = 20 // a header without options

	IPv4FlagDF     = 0x4000 // don't fragment, in the 16 bits at IPv4FlagsFrag
	IPv4FlagMF     = 0x2000 // more fragments
	IPv4FragOffset = 0x1fff // fragment offset, in 8-byte units
)

// Version returns the IP version field.
func (h IPv4) Version() uint8 { return h[IPv4VerIHL] >> 4 }

// HeaderLen returns the header length in bytes, from the IHL field.
func (h IPv4) HeaderLen() int { return int(h[IPv4VerIHL]&0x0f) * 4 }

// TotalLen returns the total length field.
func (h IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(h[IPv4TotalLen:])) }

// Protocol returns the protocol field.
func (h IPv4) Protocol() uint8 { return h[IPv4Proto] }

// IsFragment reports whether the packet is a fragment: MF is set or the
// fragment offset is not zero.
func (h IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(h[IPv4FlagsFrag:])&(IPv4FlagMF|IPv4FragOffset) != 0
}

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[IPv4Src : IPv4Src+4])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[IPv4Dst : IPv4Dst+4])) }

// Addrs returns the source and destination addresses as they lie in the
// header, 8 bytes: what a flow hash and the UDP pseudo-header take. Do not
// modify it.
func (h IPv4) Addrs() []byte { return h[IPv4Src : IPv4Dst+4] }

// HeaderChecksumOK reports whether the header checksum verifies.
func (h IPv4) HeaderChecksumOK() bool { return Verify(h[:h.HeaderLen()]) }

// Payload returns the bytes after the header, up to the total length.
func (h IPv4) Payload() []byte {
	total := h.TotalLen()
	return h[h.HeaderLen():total:total]
}

// SetTotalLen sets the total length field.
func (h IPv4) SetTotalLen(n int) { binary.BigEndian.PutUint16(h[IPv4TotalLen:], uint16(n)) }

// SetChecksum computes the header checksum and stores it.
func (h IPv4) SetChecksum() {
	binary.BigEndian.PutUint16(h[IPv4Checksum:], 0)
	binary.BigEndian.PutUint16(h[IPv4Checksum:], Checksum(h[:h.HeaderLen()]))
}

// IPv4Problem is what Check finds wrong with an IPv4 header.
type IPv4Problem uint8

// The problems Check reports, in the order it looks for them.
const (
	IPv4OK        IPv4Problem = iota
	IPv4Short                 // fewer bytes than a header without options
	IPv4Version               // the version is not 4
	IPv4IHL                   // IHL below 5, or a total length shorter than the header
	IPv4Truncated             // the total length runs past the end of the bytes
)

// Check reports whether h starts with an IPv4 header whose version is 4,
// whose IHL is at least 5 and whose total length covers the header and
// fits in h, and if not, the first problem. It checks neither the header
// checksum (HeaderChecksumOK does) nor fragmentation (IsFragment).
func (h IPv4) Check() IPv4Problem {
	switch {
	case len(h) < IPv4MinLen:
		return IPv4Short
	case h.Version() != 4:
		return IPv4Version
	}
	hlen, total := h.HeaderLen(), h.TotalLen()
	switch {
	case hlen < IPv4MinLen || total < hlen:
		return IPv4IHL
	case total > len(h):
		return IPv4Truncated
	}
	return IPv4OK
}
