package overlay

import (
	"encoding/binary"

	"github.com/meshcast/meshcast/internal/inet"
)

// GRE header bits (RFC 2784 section 2, RFC 2890 section 2).
const (
	greFlagC    = 0x8000 // checksum present
	greFlagK    = 0x2000 // key present
	greFlagS    = 0x1000 // sequence number present
	greVersion  = 0x0007
	greAccepted = greFlagC | greFlagK | greFlagS | greVersion

	// ProtoGRE is the IPv4 protocol number of GRE.
	ProtoGRE = 47
	// EtherTypeTEB is the GRE protocol type of Transparent Ethernet
	// Bridging: the payload is an Ethernet frame, as with Linux gretap.
	EtherTypeTEB = 0x6558
)

// GREHeader is a decoded GRE header.
type GREHeader struct {
	Checksum bool   // C: a checksum over header and payload is present
	HasKey   bool   // K: a key is present
	HasSeq   bool   // S: a sequence number is present
	Version  uint8  // must be 0
	Proto    uint16 // protocol type of the payload
	Key      uint32 // valid when HasKey
	Seq      uint32 // valid when HasSeq
}

// Len is the header's length on the wire: 4 bytes plus 4 for each of the
// checksum, key and sequence fields present.
func (h GREHeader) Len() int {
	n := 4
	if h.Checksum {
		n += 4
	}
	if h.HasKey {
		n += 4
	}
	if h.HasSeq {
		n += 4
	}
	return n
}

// MarshalGRE writes h at the start of pkt, whose remainder after h.Len()
// bytes is the payload. When h.Checksum is set it computes the checksum over
// the whole of pkt, so the payload must already be in place. It requires
// len(pkt) >= h.Len().
func MarshalGRE(pkt []byte, h GREHeader) {
	var flags uint16
	if h.Checksum {
		flags |= greFlagC
	}
	if h.HasKey {
		flags |= greFlagK
	}
	if h.HasSeq {
		flags |= greFlagS
	}
	flags |= uint16(h.Version) & greVersion
	binary.BigEndian.PutUint16(pkt[0:2], flags)
	binary.BigEndian.PutUint16(pkt[2:4], h.Proto)
	off := 4
	if h.Checksum {
		binary.BigEndian.PutUint32(pkt[off:], 0)
		off += 4
	}
	if h.HasKey {
		binary.BigEndian.PutUint32(pkt[off:], h.Key)
		off += 4
	}
	if h.HasSeq {
		binary.BigEndian.PutUint32(pkt[off:], h.Seq)
	}
	if h.Checksum {
		binary.BigEndian.PutUint16(pkt[4:6], Checksum(pkt))
	}
}

// ParseGRE decodes the GRE header at the start of b and returns it with its
// length. It refuses a version other than 0, flag bits other than C, K and
// S, a nonzero Reserved1 field (which it could not re-encode), and a header
// longer than b. It checks the checksum when C is set. It does not judge the
// protocol type or the key.
func ParseGRE(b []byte) (GREHeader, int, Reason) {
	var h GREHeader
	if len(b) < 4 {
		return h, 0, ReasonTruncated
	}
	flags := binary.BigEndian.Uint16(b[0:2])
	h.Version = uint8(flags & greVersion)
	if h.Version != 0 {
		return h, 0, ReasonGREVersion
	}
	if flags&^greAccepted != 0 {
		return h, 0, ReasonGREFlags
	}
	h.Checksum = flags&greFlagC != 0
	h.HasKey = flags&greFlagK != 0
	h.HasSeq = flags&greFlagS != 0
	h.Proto = binary.BigEndian.Uint16(b[2:4])
	n := h.Len()
	if len(b) < n {
		return h, 0, ReasonTruncated
	}
	off := 4
	if h.Checksum {
		if binary.BigEndian.Uint16(b[6:8]) != 0 { // Reserved1 (RFC 2784 section 2.5)
			return h, 0, ReasonGREFlags
		}
		if !inet.Verify(b) {
			return h, 0, ReasonGREChecksum
		}
		off += 4
	}
	if h.HasKey {
		h.Key = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	if h.HasSeq {
		h.Seq = binary.BigEndian.Uint32(b[off:])
	}
	return h, n, OK
}

// GRE is the codec for Ethernet over GRE, interoperable with Linux gretap
// and, over IPv6, ip6gretap. Packets are sent through a raw socket for
// protocol 47, so the kernel writes the outer IP header. Received packets
// include the outer IPv4 header (Decap); over IPv6 they do not
// (DecapIPv6).
type GRE struct {
	key    uint32
	hasKey bool
}

// NewGRE returns a GRE codec. With hasKey, every packet sent carries key and
// only packets with that key are accepted; without it, keyed packets are
// refused, as Linux does for a tunnel without a key.
func NewGRE(key uint32, hasKey bool) *GRE { return &GRE{key: key, hasKey: hasKey} }

// Name implements Codec.
func (g *GRE) Name() string { return "gre" }

// HeaderLen implements Codec: 4 bytes, 8 with a key.
func (g *GRE) HeaderLen() int {
	if g.hasKey {
		return 8
	}
	return 4
}

// Overhead implements Codec: 38 bytes, 42 with a key.
func (g *GRE) Overhead() int { return IPv4HeaderLen + g.HeaderLen() + EthHeaderLen }

// Encap implements Codec.
func (g *GRE) Encap(buf []byte, n int) []byte {
	start := Headroom - g.HeaderLen()
	h := buf[start:Headroom]
	if g.hasKey {
		binary.BigEndian.PutUint16(h[0:2], greFlagK)
		binary.BigEndian.PutUint16(h[2:4], EtherTypeTEB)
		binary.BigEndian.PutUint32(h[4:8], g.key)
	} else {
		binary.BigEndian.PutUint16(h[0:2], 0)
		binary.BigEndian.PutUint16(h[2:4], EtherTypeTEB)
	}
	return buf[start : Headroom+n]
}

// Decap implements Codec. pkt is a whole IPv4 packet, as a raw socket
// delivers it.
func (g *GRE) Decap(pkt []byte) ([]byte, Reason) {
	_, proto, payload, r := ParseIPv4(pkt)
	if r != OK {
		return nil, r
	}
	if proto != ProtoGRE {
		return nil, ReasonIPProto
	}
	return g.DecapGRE(payload)
}

// DecapIPv6 implements Codec: a raw IPv6 socket delivers the GRE header
// and what follows, without the outer IPv6 header.
func (g *GRE) DecapIPv6(pkt []byte) ([]byte, Reason) { return g.DecapGRE(pkt) }

// DecapGRE validates a GRE packet without its outer IP header and returns
// the inner frame.
func (g *GRE) DecapGRE(b []byte) ([]byte, Reason) {
	h, n, r := ParseGRE(b)
	if r != OK {
		return nil, r
	}
	if h.Proto != EtherTypeTEB {
		return nil, ReasonGREProto
	}
	if h.HasKey != g.hasKey || (g.hasKey && h.Key != g.key) {
		return nil, ReasonGREKey
	}
	inner := b[n:]
	if len(inner) < EthHeaderLen {
		return nil, ReasonInnerShort
	}
	return inner, OK
}
