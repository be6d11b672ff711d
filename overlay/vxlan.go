package overlay

import (
	"encoding/binary"

	"github.com/meshcast/meshcast/internal/inet"
)

const (
	// DefaultVXLANPort is the IANA port of VXLAN (RFC 7348 section 5).
	DefaultVXLANPort = 4789
	// VXLANHeaderLen is the length of the VXLAN header.
	VXLANHeaderLen = 8
	// UDPHeaderLen is the length of a UDP header.
	UDPHeaderLen = 8
	// ProtoUDP is the IPv4 protocol number of UDP.
	ProtoUDP = 17

	vxlanFlagI = 0x08
	// MaxVNI is the largest 24-bit VXLAN network identifier.
	MaxVNI = 1<<24 - 1
)

// VXLAN is the codec for VXLAN (RFC 7348). Packets are sent through a raw
// IPv4 socket for protocol UDP, so Encap writes the UDP header too and can
// choose the source port per inner flow; they are received on an ordinary
// UDP socket, which delivers the VXLAN header and what follows.
type VXLAN struct {
	vni  uint32
	port uint16
}

// NewVXLAN returns a VXLAN codec for one VNI and destination port. It
// requires vni <= MaxVNI.
func NewVXLAN(vni uint32, port uint16) *VXLAN { return &VXLAN{vni: vni & MaxVNI, port: port} }

// Name implements Codec.
func (v *VXLAN) Name() string { return "vxlan" }

// VNI returns the codec's VXLAN network identifier.
func (v *VXLAN) VNI() uint32 { return v.vni }

// Port returns the codec's destination UDP port.
func (v *VXLAN) Port() uint16 { return v.port }

// HeaderLen implements Codec: the UDP and VXLAN headers, 16 bytes.
func (v *VXLAN) HeaderLen() int { return UDPHeaderLen + VXLANHeaderLen }

// Overhead implements Codec: 50 bytes.
func (v *VXLAN) Overhead() int { return IPv4HeaderLen + UDPHeaderLen + VXLANHeaderLen + EthHeaderLen }

// Encap implements Codec. It writes a UDP checksum of zero, as RFC 7348
// section 5 recommends for IPv4, and the source port from FlowPort. The raw
// IPv4 socket sends the header as it is; a segmentation-offload send
// through a flow socket (Conn.WriteBatch) has the kernel fill the checksum
// in, and so does the raw IPv6 socket (IPV6_CHECKSUM): over IPv6 every
// datagram carries its checksum (RFC 8200 section 8.1).
func (v *VXLAN) Encap(buf []byte, n int) []byte {
	start := Headroom - UDPHeaderLen - VXLANHeaderLen
	u := buf[start:]
	binary.BigEndian.PutUint16(u[0:2], FlowPort(buf[Headroom:Headroom+n]))
	binary.BigEndian.PutUint16(u[2:4], v.port)
	binary.BigEndian.PutUint16(u[4:6], uint16(UDPHeaderLen+VXLANHeaderLen+n))
	binary.BigEndian.PutUint16(u[6:8], 0)
	PutVXLAN(u[UDPHeaderLen:], v.vni)
	return buf[start : Headroom+n]
}

// PutVXLAN writes a VXLAN header with the I flag and vni into b[:8].
func PutVXLAN(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:4], vxlanFlagI<<24)
	binary.BigEndian.PutUint32(b[4:8], (vni&MaxVNI)<<8)
}

// ParseVXLAN validates a VXLAN header at the start of b and returns its VNI.
// Like Linux, it refuses a header whose reserved bits are set.
func ParseVXLAN(b []byte) (vni uint32, r Reason) {
	if len(b) < VXLANHeaderLen {
		return 0, ReasonTruncated
	}
	if b[0]&vxlanFlagI == 0 {
		return 0, ReasonVXLANFlags
	}
	if b[0] != vxlanFlagI || b[1]|b[2]|b[3]|b[7] != 0 {
		return 0, ReasonVXLANReserved
	}
	return binary.BigEndian.Uint32(b[4:8]) >> 8, OK
}

// Decap implements Codec. pkt is a UDP payload: the VXLAN header and the
// inner frame.
func (v *VXLAN) Decap(pkt []byte) ([]byte, Reason) {
	vni, r := ParseVXLAN(pkt)
	if r != OK {
		return nil, r
	}
	if vni != v.vni {
		return nil, ReasonVXLANVNI
	}
	inner := pkt[VXLANHeaderLen:]
	if len(inner) < EthHeaderLen {
		return nil, ReasonInnerShort
	}
	return inner, OK
}

// DecapIPv6 implements Codec: the UDP socket delivers the same payload
// over either family. The kernel has verified the mandatory checksum.
func (v *VXLAN) DecapIPv6(pkt []byte) ([]byte, Reason) { return v.Decap(pkt) }

// FlowPort returns a UDP source port in the dynamic range 49152-65535 that
// is a hash of the inner frame's flow: its MAC addresses and EtherType; for
// IPv4 its addresses, protocol and, for unfragmented TCP and UDP, ports; for
// IPv6 its addresses, next header and flow label and, for TCP and UDP right
// after the IPv6 header, ports (behind extension headers, such as a
// fragment header, the ports are not hashed, so the fragments of a
// datagram share its flow). Frames of one flow get one port, so underlay
// ECMP keeps them in order.
func FlowPort(frame []byte) uint16 {
	h := uint32(fnvOffset32)
	mix := func(b []byte) { h = fnv32a(h, b) }
	if len(frame) < EthHeaderLen {
		mix(frame)
	} else {
		mix(frame[:EthHeaderLen])
		ip := inet.IPv4(frame[EthHeaderLen:])
		switch binary.BigEndian.Uint16(frame[12:14]) {
		case 0x0800:
			if len(ip) >= inet.IPv4MinLen && ip.Version() == 4 {
				mix(ip[inet.IPv4Proto : inet.IPv4Proto+1])
				mix(ip.Addrs())
				ihl, proto := ip.HeaderLen(), ip.Protocol()
				if (proto == 6 || proto == 17) && !ip.IsFragment() && ihl >= inet.IPv4MinLen && len(ip) >= ihl+4 {
					mix(ip[ihl : ihl+4]) // the ports
				}
			}
		case 0x86dd:
			if len(ip) >= IPv6HeaderLen && ip[0]>>4 == 6 {
				// The flow label (the low 20 bits of the first word),
				// the next header, and the addresses.
				mix([]byte{ip[1] & 0x0f, ip[2], ip[3], ip[6]})
				mix(ip[8:IPv6HeaderLen])
				if nh := ip[6]; (nh == 6 || nh == 17) && len(ip) >= IPv6HeaderLen+4 {
					mix(ip[IPv6HeaderLen : IPv6HeaderLen+4]) // the ports
				}
			}
		}
	}
	h ^= h >> 16
	return 49152 + uint16(h&0x3fff)
}
