package igmp

import (
	"encoding/binary"
	"math"
	"net/netip"
	"time"

	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/mld"
)

// Multicast router discovery. RFC 4541 section 2.1.1 has a snooping switch
// learn the ports behind which multicast routers sit from IGMP queries
// whose source is not 0.0.0.0, from PIM Hellos and from Multicast Router
// Discovery advertisements (RFC 4286). Traffic for every group goes to
// those ports, registered or not, and so do the reports. Over IPv6 the
// same messages (PIM to ff02::d, MRD as ICMPv6 to ff02::6a) are found by
// mld.PIMFromFrame and mld.MRDFromFrame, and parsed by ParsePIM6 and
// ParseMRD6.

// Router discovery constants.
const (
	// ProtoPIM is the IPv4 protocol number of PIM (RFC 7761).
	ProtoPIM = 103
	// PIMHello is the PIM message type of a Hello (RFC 7761 section
	// 4.9.2); PIMRegister that of a Register (section 4.9.3), whose
	// checksum covers its 8-byte header only.
	PIMHello    = 0
	PIMRegister = 1

	// MRD message types (RFC 4286 section 3-5): IGMP messages of their
	// own, which Parse refuses as UnknownType; ParseMRD takes them.
	TypeMRDAdvertisement = 0x30
	TypeMRDSolicitation  = 0x31
	TypeMRDTermination   = 0x32

	// PIMDefaultHoldtime is a Hello's holdtime when it carries no
	// Holdtime option: 3.5 × the default Hello period of 30 s (RFC 7761
	// section 4.11).
	PIMDefaultHoldtime = 105 * time.Second
	// HoldForever is the holdtime of a Hello whose Holdtime option is
	// 0xffff: the neighbor never times out (section 4.9.2).
	HoldForever = time.Duration(math.MaxInt64)
	// MRDDefaultInterval is the Advertisement Interval that an
	// advertisement whose field is zero is taken to have (RFC 4286
	// section 3.1.1: 20 s).
	MRDDefaultInterval = 20 * time.Second

	pimHeaderLen       = 4
	pimRegisterLen     = 8 // the part of a Register its checksum covers
	pimOptHoldtime     = 1
	mrdAdvertisementLn = 8
	mrdShortLen        = 4 // solicitation and termination
)

// Well-known groups of router discovery.
var (
	// AllRouters is 224.0.0.2. meshcast sends its querier's election
	// queries there: routers hear them, hosts do not.
	AllRouters = netip.AddrFrom4([4]byte{224, 0, 0, 2})
	// AllPIMRouters is 224.0.0.13, where PIM Hellos go.
	AllPIMRouters = netip.AddrFrom4([4]byte{224, 0, 0, 13})
	// AllSnoopers is 224.0.0.106, where MRD advertisements and
	// terminations go (RFC 4286 section 6.1).
	AllSnoopers = netip.AddrFrom4([4]byte{224, 0, 0, 106})
)

// RouterSource says how a router port was learned.
type RouterSource uint8

// How a router port is learned.
const (
	RouterQuery RouterSource = iota // an IGMP query whose source is not 0.0.0.0
	RouterPIM                       // a PIMv2 Hello
	RouterMRD                       // an MRD advertisement
	NumRouterSources
)

var routerSourceNames = [NumRouterSources]string{RouterQuery: "query", RouterPIM: "pim", RouterMRD: "mrd"}

// String returns "query", "pim" or "mrd".
func (s RouterSource) String() string {
	if s < NumRouterSources {
		return routerSourceNames[s]
	}
	return "unknown"
}

// ipPayload returns the IPv4 source, destination and payload of an untagged
// Ethernet frame carrying protocol proto, with the checks of FromFrame.
func ipPayload(frame []byte, proto uint8) (src, dst netip.Addr, payload []byte, ok bool) {
	ip, ok := ipv4(frame)
	if !ok || ip.Check() != inet.IPv4OK || ip.Protocol() != proto ||
		ip.IsFragment() || !ip.HeaderChecksumOK() {
		return src, dst, nil, false
	}
	return ip.Src(), ip.Dst(), ip.Payload(), true
}

// PIMFromFrame finds a PIM message in an untagged Ethernet frame, with the
// checks FromFrame makes of an IGMP one (a valid, unfragmented IPv4 header
// whose checksum verifies), but for protocol 103. It returns the IPv4
// source and destination and the PIM bytes (a view into frame, without
// Ethernet padding), or isPIM false. It allocates nothing.
func PIMFromFrame(frame []byte) (src, dst netip.Addr, pim []byte, isPIM bool) {
	return ipPayload(frame, ProtoPIM)
}

// ParsePIM validates b, one PIM message (the IPv4 payload), as far as a
// snooping switch needs (RFC 7761 section 4.9): at least the 4-byte header,
// PIM version 2, and a checksum that verifies over the whole message (or,
// for a Register, over its 8-byte header). For a Hello it also walks the options,
// each of which must lie inside the message, and returns the holdtime of
// the Holdtime option (type 1): PIMDefaultHoldtime without one, 0 for a
// Hello that says goodbye, HoldForever for 0xffff. ok is false for a
// malformed message. It allocates nothing.
func ParsePIM(b []byte) (typ uint8, holdtime time.Duration, ok bool) {
	return parsePIM(b, false, netip.Addr{}, netip.Addr{})
}

// ParsePIM6 is ParsePIM for PIM over IPv6 (mld.PIMFromFrame): the checksum
// also covers the IPv6 pseudo-header of src, dst, the message's length and
// next header 103 (RFC 7761 section 4.9). A Register's checksum over its
// 8-byte header alone is taken with a pseudo-header length of 8, as Linux
// computes it. It allocates nothing.
func ParsePIM6(src, dst netip.Addr, b []byte) (typ uint8, holdtime time.Duration, ok bool) {
	return parsePIM(b, true, src, dst)
}

// parsePIM is ParsePIM, or with v6 ParsePIM6.
func parsePIM(b []byte, v6 bool, src, dst netip.Addr) (typ uint8, holdtime time.Duration, ok bool) {
	if len(b) < pimHeaderLen || b[0]>>4 != 2 {
		return 0, 0, false
	}
	typ = b[0] & 0x0f
	// A Register's checksum covers its header; one over the whole
	// message is accepted too (section 4.9.3).
	if !pimChecksumOK(b, v6, src, dst) &&
		(typ != PIMRegister || len(b) < pimRegisterLen || !pimChecksumOK(b[:pimRegisterLen], v6, src, dst)) {
		return 0, 0, false
	}
	if typ != PIMHello {
		return typ, 0, true
	}
	if holdtime, ok = helloHoldtime(b[pimHeaderLen:]); !ok {
		return 0, 0, false
	}
	return PIMHello, holdtime, true
}

// pimChecksumOK reports whether b's PIM checksum verifies: alone for IPv4,
// with the IPv6 pseudo-header of src and dst for v6.
func pimChecksumOK(b []byte, v6 bool, src, dst netip.Addr) bool {
	if v6 {
		return mld.VerifyPseudo(src, dst, mld.NextHeaderPIM, b)
	}
	return inet.Verify(b)
}

// helloHoldtime walks the options of a PIM Hello, each of which must lie
// inside opts, and returns the holdtime of its Holdtime option (see
// ParsePIM), or ok false.
func helloHoldtime(opts []byte) (holdtime time.Duration, ok bool) {
	holdtime = PIMDefaultHoldtime
	for len(opts) > 0 {
		if len(opts) < 4 {
			return 0, false
		}
		t, l := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return 0, false
		}
		if t == pimOptHoldtime {
			if l != 2 {
				return 0, false
			}
			switch h := binary.BigEndian.Uint16(opts[4:]); h {
			case 0xffff:
				holdtime = HoldForever
			default:
				holdtime = time.Duration(h) * time.Second
			}
		}
		opts = opts[4+l:]
	}
	return holdtime, true
}

// IsMRD reports whether b, an IGMP message, is of one of the MRD types
// (0x30 to 0x32), for ParseMRD rather than Parse.
func IsMRD(b []byte) bool {
	return len(b) > 0 && b[offType] >= TypeMRDAdvertisement && b[offType] <= TypeMRDTermination
}

// ParseMRD validates b as a Multicast Router Discovery message (RFC 4286):
// an advertisement of at least 8 bytes, or a solicitation or termination
// of at least 4, whose checksum verifies over the whole message. For an
// advertisement it returns the NeighborDeadInterval, 3 × its Advertisement
// Interval (section 3.1.5; a zero interval counts as MRDDefaultInterval).
// It allocates nothing.
func ParseMRD(b []byte) (typ uint8, hold time.Duration, r Reason) {
	if !IsMRD(b) {
		return 0, 0, UnknownType
	}
	return parseMRD(b, TypeMRDAdvertisement, false, netip.Addr{}, netip.Addr{})
}

// ParseMRD6 is ParseMRD for MRD over IPv6 (RFC 4286 section 4,
// mld.MRDFromFrame): ICMPv6 of types mld.TypeMRDAdvertisement6 to
// mld.TypeMRDTermination6, with the same layout, whose ICMPv6 checksum
// covers the IPv6 pseudo-header of src and dst too. typ is the ICMPv6
// type. Other types are UnknownType. It allocates nothing.
func ParseMRD6(src, dst netip.Addr, b []byte) (typ uint8, hold time.Duration, r Reason) {
	if len(b) == 0 || b[offType] < mld.TypeMRDAdvertisement6 || b[offType] > mld.TypeMRDTermination6 {
		return 0, 0, UnknownType
	}
	return parseMRD(b, mld.TypeMRDAdvertisement6, true, src, dst)
}

// parseMRD is ParseMRD, or with v6 ParseMRD6, for a message of an MRD type
// whose advertisement type is adv.
func parseMRD(b []byte, adv uint8, v6 bool, src, dst netip.Addr) (typ uint8, hold time.Duration, r Reason) {
	typ = b[offType]
	min := mrdShortLen
	if typ == adv {
		min = mrdAdvertisementLn
	}
	if len(b) < min {
		return 0, 0, Truncated
	}
	if v6 && !mld.VerifyPseudo(src, dst, mld.NextHeaderICMPv6, b) || !v6 && !verifyChecksum(b) {
		return 0, 0, BadChecksum
	}
	if typ == adv {
		interval := time.Duration(b[offCode]) * time.Second
		if interval == 0 {
			interval = MRDDefaultInterval
		}
		hold = 3 * interval
	}
	return typ, hold, OK
}

// PutPIMHello writes a PIMv2 Hello with a Holdtime option of holdtime
// (whole seconds, 0xffff for HoldForever) into b and returns its length,
// 10. It panics if b is shorter.
func PutPIMHello(b []byte, holdtime time.Duration) int {
	const n = pimHeaderLen + 6
	_ = b[n-1]
	b[0], b[1], b[2], b[3] = 2<<4|PIMHello, 0, 0, 0
	h := uint16(0xffff)
	if holdtime != HoldForever {
		h = uint16(min(holdtime/time.Second, 0xfffe))
	}
	binary.BigEndian.PutUint16(b[4:], pimOptHoldtime)
	binary.BigEndian.PutUint16(b[6:], 2)
	binary.BigEndian.PutUint16(b[8:], h)
	binary.BigEndian.PutUint16(b[2:], inet.Checksum(b[:n]))
	return n
}

// PutMRDAdvertisement writes an MRD advertisement (RFC 4286 section 3.2)
// into b and returns its length, 8. It panics if b is shorter.
func PutMRDAdvertisement(b []byte, interval, queryInterval time.Duration, robustness int) int {
	_ = b[mrdAdvertisementLn-1]
	b[offType] = TypeMRDAdvertisement
	b[offCode] = uint8(min(interval/time.Second, 0xff))
	binary.BigEndian.PutUint16(b[4:], uint16(min(queryInterval/time.Second, 0xffff)))
	binary.BigEndian.PutUint16(b[6:], uint16(robustness))
	setChecksum(b[:mrdAdvertisementLn])
	return mrdAdvertisementLn
}

// SetSource gives the IPv4 packet of an untagged Ethernet frame the source
// address src and fixes its header checksum. The frame must hold a header
// FromFrame or PIMFromFrame accepted; src must be IPv4.
func SetSource(frame []byte, src netip.Addr) {
	ip := inet.IPv4(frame[ethHeaderLen:])
	a := src.As4()
	copy(ip[inet.IPv4Src:], a[:])
	ip.SetChecksum()
}
