package mld

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/meshcast/meshcast/internal/inet"
)

// Message types, the ICMPv6 types of MLD (RFC 2710 section 3, RFC 3810
// section 5).
const (
	TypeQuery    = 130 // Multicast Listener Query, v1 and v2
	TypeV1Report = 131 // Version 1 Multicast Listener Report
	TypeV1Done   = 132 // Multicast Listener Done (v1)
	TypeV2Report = 143 // Version 2 Multicast Listener Report
)

// Multicast Address Record types of an MLDv2 report (RFC 3810 section
// 5.2.12). They have the same values as IGMPv3's Group Record types.
const (
	ModeIsInclude   = 1 // current-state: INCLUDE the listed sources
	ModeIsExclude   = 2 // current-state: EXCLUDE the listed sources
	ChangeToInclude = 3 // filter-mode change to INCLUDE
	ChangeToExclude = 4 // filter-mode change to EXCLUDE
	AllowNewSources = 5 // source-list change: sources to add
	BlockOldSources = 6 // source-list change: sources to remove
)

// Wire sizes and numbers.
const (
	// HeaderLen is the length of MLDv1 messages (queries, reports and
	// dones) and the least length of an MLDv2 query.
	HeaderLen = 24
	// QueryV2HeaderLen is the length of an MLDv2 query without sources.
	QueryV2HeaderLen = 28
	// ReportHeaderLen is the length of an MLDv2 report header, and the
	// least length of an MLDv2 report.
	ReportHeaderLen = 8
	// RecordHeaderLen is the length of a Multicast Address Record without
	// sources and auxiliary data.
	RecordHeaderLen = 20
	// NextHeaderICMPv6 is the IPv6 Next Header value of ICMPv6, which
	// carries MLD.
	NextHeaderICMPv6 = 58
	// QuerierMark is the value meshcast's own queriers put in the 16-bit
	// Reserved field of a query (bytes 6 and 7). Receivers ignore that field
	// (RFC 3810 section 5.1.4, RFC 2710 section 3.5), so the mark changes
	// nothing for other nodes; Marked tells a marked query.
	QuerierMark = 0x6d63
)

// Offsets of fields inside a message and inside a Multicast Address Record.
const (
	offType     = 0
	offChecksum = 2
	offCode     = 4  // queries: Maximum Response Delay (v1), Maximum Response Code (v2)
	offReserved = 6  // queries and v1 messages: Reserved; QuerierMark in marked queries
	offNumRecs  = 6  // v2 report: Nr of Mcast Address Records (bytes 4-5 are reserved)
	offGroup    = 8  // queries, v1 reports and dones
	offSQRV     = 24 // v2 query: Resv(4) S(1) QRV(3)
	offQQIC     = 25
	offNumSrcs  = 26
	offSources  = 28

	offRecType   = 0
	offRecAux    = 1 // Aux Data Len, in 32-bit words
	offRecNumSrc = 2
	offRecGroup  = 4
)

// Reason says why Parse refused a message. Callers count refusals by reason;
// String gives the counter name.
type Reason uint8

// Reasons for refusing a message. OK means it was accepted.
const (
	OK          Reason = iota
	Truncated          // shorter than 24 bytes (8 for a v2 report), or than its own counts of records, sources or aux data announce
	BadLength          // a query of 25 to 27 bytes, neither v1 nor v2 (RFC 3810 section 8.1)
	BadChecksum        // the ICMPv6 checksum, over the pseudo-header and the whole message, does not verify
	UnknownType        // an ICMPv6 type other than the four above
	BadGroup           // an address field that cannot name a group (see Parse)
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:          "ok",
	Truncated:   "mld_truncated",
	BadLength:   "mld_length",
	BadChecksum: "mld_checksum",
	UnknownType: "mld_type",
	BadGroup:    "mld_group",
}

// String returns the reason's counter name, such as "mld_checksum".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "mld_unknown_reason"
}

// Message is one MLD message, from its ICMPv6 type byte to the end of the
// IPv6 payload: a view over the caller's bytes, never a copy. Its methods
// assume a Message that Parse accepted; on anything else they return zero
// values or, for out-of-range indexes, panic as a slice index would.
//
// The Message shares memory with the bytes passed to Parse: it is valid only
// while the caller keeps them unchanged.
type Message []byte

// Parse validates b as one MLD message that src sent to dst, and returns it
// as a Message, or nil and the reason for refusing it. src and dst are the
// IPv6 addresses of the checksum's pseudo-header, as in Packet.Src and
// Packet.Dst; the zero Addr counts as ::, and an IPv4 address as its
// IPv4-mapped form. Parse copies and allocates nothing.
//
// Checked, in this order:
//   - at least 8 bytes, and one of the four known types;
//   - a query, a v1 report or a done is at least 24 bytes. A query is 24
//     bytes (v1) or at least 28 (v2); 25 to 27 bytes is BadLength (RFC 3810
//     section 8.1). A v2 query must hold all the sources it counts;
//   - a v2 report must hold every Multicast Address Record it counts, each
//     with its sources and its aux data (Aux Data Len counts 32-bit words);
//   - the ICMPv6 checksum (RFC 4443 section 2.3) over the pseudo-header of
//     RFC 8200 section 8.1 (src, dst, an upper-layer length of len(b), next
//     header 58) and the whole of b, trailing octets included;
//   - the address fields: a report, a done and every record must name a
//     multicast address whose scope is not the reserved 0 (RFC 4291 section
//     2.7 has such packets dropped); a query names :: (a general query) or a
//     multicast address.
//
// Octets after the part a message's type defines are accepted and otherwise
// ignored (RFC 2710 section 3.7, RFC 3810 sections 5.1.12 and 5.2.11), but
// they stay in the Message, so its checksum still verifies.
//
// A v2 report may hold records of types this package does not know. RFC 3810
// section 5.2.12 has receivers silently ignore such records, not the whole
// report, so Parse accepts them; callers skip any Record whose Known method
// is false. A record whose Multicast Address is not a usable group is
// malformed, not an extension: the whole report is refused with BadGroup.
func Parse(src, dst netip.Addr, b []byte) (Message, Reason) {
	if len(b) < ReportHeaderLen {
		return nil, Truncated
	}
	badGroup := false
	switch b[offType] {
	case TypeQuery:
		switch {
		case len(b) < HeaderLen:
			return nil, Truncated
		case len(b) == HeaderLen:
		case len(b) < QueryV2HeaderLen:
			return nil, BadLength
		default:
			n := int(binary.BigEndian.Uint16(b[offNumSrcs:]))
			if len(b)-QueryV2HeaderLen < 16*n {
				return nil, Truncated
			}
		}
		g := b[offGroup : offGroup+16]
		badGroup = !isMulticast(g) && !isZero(g)
	case TypeV1Report, TypeV1Done:
		if len(b) < HeaderLen {
			return nil, Truncated
		}
		badGroup = !isGroup(b[offGroup : offGroup+16])
	case TypeV2Report:
		n := int(binary.BigEndian.Uint16(b[offNumRecs:]))
		rest := b[ReportHeaderLen:]
		for range n {
			if len(rest) < RecordHeaderLen {
				return nil, Truncated
			}
			l := recordLen(rest)
			if l > len(rest) {
				return nil, Truncated
			}
			if !isGroup(rest[offRecGroup : offRecGroup+16]) {
				badGroup = true
			}
			rest = rest[l:]
		}
	default:
		return nil, UnknownType
	}
	if !verifyChecksum(src, dst, b) {
		return nil, BadChecksum
	}
	if badGroup {
		return nil, BadGroup
	}
	return Message(b), OK
}

// recordLen is the length of the record at the start of b, which must hold
// at least its 20-byte header. It can exceed len(b).
func recordLen(b []byte) int {
	return RecordHeaderLen + 16*int(binary.BigEndian.Uint16(b[offRecNumSrc:])) + 4*int(b[offRecAux])
}

// isMulticast reports whether the 16 bytes of a are in ff00::/8.
func isMulticast(a []byte) bool { return a[0] == 0xff }

// isGroup reports whether the 16 bytes of a are a multicast address whose
// scope is not the reserved 0.
func isGroup(a []byte) bool { return a[0] == 0xff && a[1]&0x0f != 0 }

// isZero reports whether the 16 bytes of a are ::.
func isZero(a []byte) bool {
	return binary.BigEndian.Uint64(a)|binary.BigEndian.Uint64(a[8:16]) == 0
}

// addr returns the address in the first 16 bytes of b. It panics if b is
// shorter, whatever its capacity.
func addr(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b)) }

// Type returns the message type, such as TypeQuery, or 0 for an empty
// Message.
func (m Message) Type() uint8 {
	if len(m) == 0 {
		return 0
	}
	return m[offType]
}

// Version returns the MLD version the message belongs to: for a query, 1 if
// it is 24 bytes long and 2 if 28 or more (RFC 3810 section 8.1); 1 for a
// v1 report or a done; 2 for a v2 report. It returns 0 for anything else.
func (m Message) Version() int {
	switch m.Type() {
	case TypeQuery:
		switch {
		case len(m) == HeaderLen:
			return 1
		case len(m) >= QueryV2HeaderLen:
			return 2
		}
	case TypeV1Report, TypeV1Done:
		return 1
	case TypeV2Report:
		return 2
	}
	return 0
}

// isQuery reports whether m is a query of either version, long enough for
// the fields the two share.
func (m Message) isQuery() bool { return len(m) >= HeaderLen && m[offType] == TypeQuery }

// isQueryV2 reports whether m is an MLDv2 query.
func (m Message) isQueryV2() bool { return len(m) >= QueryV2HeaderLen && m[offType] == TypeQuery }

// Group returns the Multicast Address of a query, a v1 report or a done. It
// is :: in a general query. A v2 report has no such field (its groups are in
// its records): Group returns the zero Addr for it.
func (m Message) Group() netip.Addr {
	if len(m) < HeaderLen {
		return netip.Addr{}
	}
	switch m[offType] {
	case TypeQuery, TypeV1Report, TypeV1Done:
		return addr(m[offGroup:])
	}
	return netip.Addr{}
}

// MaxRespCode returns the raw Maximum Response Delay (v1) or Maximum
// Response Code (v2) field of a query, or 0 for other messages.
func (m Message) MaxRespCode() uint16 {
	if !m.isQuery() {
		return 0
	}
	return binary.BigEndian.Uint16(m[offCode:])
}

// MaxResp returns the longest time a listener may wait before it answers a
// query: for v1, the Maximum Response Delay in milliseconds (RFC 2710
// section 3.4); for v2, the Maximum Response Code decoded as in RFC 3810
// section 5.1.3 (DecodeCode). It returns 0 for messages other than queries.
func (m Message) MaxResp() time.Duration {
	switch {
	case !m.isQuery():
		return 0
	case len(m) == HeaderLen:
		return time.Duration(m.MaxRespCode()) * time.Millisecond
	}
	return DecodeCode(m.MaxRespCode())
}

// Marked reports whether m is a query (of either version) whose Reserved
// field holds QuerierMark, as the queries of meshcast's own queriers do.
func (m Message) Marked() bool {
	return m.isQuery() && binary.BigEndian.Uint16(m[offReserved:]) == QuerierMark
}

// SFlag reports the Suppress Router-Side Processing flag of a v2 query
// (RFC 3810 section 5.1.7).
func (m Message) SFlag() bool {
	return m.isQueryV2() && m[offSQRV]&0x08 != 0
}

// QRV returns the Querier's Robustness Variable of a v2 query, 0 to 7 (RFC
// 3810 section 5.1.8). 0 means the querier's value exceeds 7, or that the
// message is not a v2 query.
func (m Message) QRV() int {
	if !m.isQueryV2() {
		return 0
	}
	return int(m[offSQRV] & 0x07)
}

// QQI returns the Querier's Query Interval of a v2 query: its QQIC decoded
// as in RFC 3810 section 5.1.9 (DecodeQQIC). It returns 0 for other
// messages.
func (m Message) QQI() time.Duration {
	if !m.isQueryV2() {
		return 0
	}
	return DecodeQQIC(m[offQQIC])
}

// NumSources returns the Number of Sources of a v2 query: 0 for a general or
// multicast-address-specific query, more for a multicast-address-and-source
// specific one. It returns 0 for other messages.
func (m Message) NumSources() int {
	if !m.isQueryV2() {
		return 0
	}
	return int(binary.BigEndian.Uint16(m[offNumSrcs:]))
}

// Source returns source address i of a v2 query. It requires
// 0 <= i < NumSources().
func (m Message) Source(i int) netip.Addr {
	if uint(i) >= uint(m.NumSources()) {
		panic("mld: query source index out of range")
	}
	return addr(m[offSources+16*i:])
}

// NumRecords returns the Nr of Mcast Address Records of a v2 report, or 0
// for other messages.
func (m Message) NumRecords() int {
	if len(m) < ReportHeaderLen || m[offType] != TypeV2Report {
		return 0
	}
	return int(binary.BigEndian.Uint16(m[offNumRecs:]))
}

// Records returns an iterator over the Multicast Address Records of a v2
// report. It is empty for other messages. Iteration allocates nothing and
// costs O(1) per record:
//
//	for it := m.Records(); ; {
//		rec, ok := it.Next()
//		if !ok {
//			break
//		}
//		if !rec.Known() {
//			continue
//		}
//		...
//	}
func (m Message) Records() RecordIter {
	n := m.NumRecords()
	if n == 0 {
		return RecordIter{}
	}
	return RecordIter{rest: m[ReportHeaderLen:], left: n}
}

// RecordIter walks the Multicast Address Records of a v2 report. The zero
// RecordIter is empty.
type RecordIter struct {
	rest []byte // the records not returned yet, then any trailing octets
	left int    // how many records have not been returned yet
}

// Next returns the next record and true, or nil and false after the last
// one. On a Message that Parse did not accept it stops, instead of
// panicking, at the first record that does not fit.
func (it *RecordIter) Next() (Record, bool) {
	if it.left <= 0 || len(it.rest) < RecordHeaderLen {
		it.left = 0
		return nil, false
	}
	n := recordLen(it.rest)
	if n > len(it.rest) {
		it.left = 0
		return nil, false
	}
	r := Record(it.rest[:n:n])
	it.rest = it.rest[n:]
	it.left--
	return r, true
}

// Record is one Multicast Address Record of a v2 report (RFC 3810 section
// 5.2.4): its header, its sources and its auxiliary data, as a view into the
// Message.
type Record []byte

// Type returns the Record Type, such as ModeIsInclude.
func (r Record) Type() uint8 { return r[offRecType] }

// Known reports whether the Record Type is one of the six that RFC 3810
// section 5.2.12 defines. Receivers silently ignore records of other types
// (same section).
func (r Record) Known() bool {
	t := r[offRecType]
	return t >= ModeIsInclude && t <= BlockOldSources
}

// Group returns the record's Multicast Address.
func (r Record) Group() netip.Addr { return addr(r[offRecGroup:]) }

// NumSources returns the record's Number of Sources.
func (r Record) NumSources() int { return int(binary.BigEndian.Uint16(r[offRecNumSrc:])) }

// Source returns source address i of the record. It requires
// 0 <= i < NumSources().
func (r Record) Source(i int) netip.Addr {
	if uint(i) >= uint(r.NumSources()) {
		panic("mld: record source index out of range")
	}
	return addr(r[RecordHeaderLen+16*i:])
}

// AuxLen returns the length of the record's auxiliary data in bytes. (The
// Aux Data Len field on the wire counts 32-bit words.)
func (r Record) AuxLen() int { return 4 * int(r[offRecAux]) }

// Aux returns the record's auxiliary data, a view into the message. MLDv2
// defines none; receivers ignore it (RFC 3810 section 5.2.10).
func (r Record) Aux() []byte {
	off := RecordHeaderLen + 16*r.NumSources()
	return r[off : off+r.AuxLen() : off+r.AuxLen()]
}

// DecodeCode returns the Maximum Response Delay that an MLDv2 Maximum
// Response Code stands for (RFC 3810 section 5.1.3), in milliseconds: a code
// below 32768 is the number of milliseconds itself; from 32768 on it is a
// float, 1 bit set, 3 bits of exponent and 12 of mantissa, standing for
// (mantissa | 0x1000) << (exponent + 3) ms. It ranges from 0 to 8387584 ms
// (about 2 h 20 min).
func DecodeCode(c uint16) time.Duration {
	return time.Duration(inet.DecodeFloat(uint32(c), 12)) * time.Millisecond
}

// EncodeCode returns the Maximum Response Code for d, the inverse of
// DecodeCode. d is rounded down to whole milliseconds; below 32768 ms that is
// exact. Longer ones are rounded down to the nearest value the float format
// can represent, so a code never stands for more than was asked for; beyond
// 8387584 ms it gives the largest code, 0xffff. Negative durations give 0.
func EncodeCode(d time.Duration) uint16 {
	return uint16(inet.EncodeFloat(int64(max(d, 0)/time.Millisecond), 12))
}

// DecodeQQIC returns the Querier's Query Interval that a QQIC stands for
// (RFC 3810 section 5.1.9), in seconds: the same 8-bit float as IGMPv3's
// (RFC 3376 section 4.1.7). A code below 128 is the number of seconds
// itself; from 128 on it stands for (mantissa | 0x10) << (exponent + 3)
// seconds, with 3 bits of exponent and 4 of mantissa. It ranges from 0 to
// 31744 s.
func DecodeQQIC(c uint8) time.Duration {
	return time.Duration(inet.DecodeFloat(uint32(c), 4)) * time.Second
}

// EncodeQQIC returns the QQIC for d, the inverse of DecodeQQIC. d is rounded
// down to whole seconds; below 128 s that is exact. Longer ones are rounded
// down to a value the float format can represent; beyond 31744 s it gives
// the largest code, 0xff. Negative durations give 0.
func EncodeQQIC(d time.Duration) uint8 {
	return uint8(inet.EncodeFloat(int64(max(d, 0)/time.Second), 4))
}

// putAddr writes a as 16 bytes. The zero Addr is written as ::. An IPv4
// address panics: MLD carries IPv6 addresses only (an IPv4-mapped IPv6
// address is written as it is).
func putAddr(b []byte, a netip.Addr) {
	switch {
	case !a.IsValid():
		clear(b[:16])
	case a.Is4():
		panic("mld: IPv4 address " + a.String() + " in an MLD message")
	default:
		a16 := a.As16()
		copy(b[:16], a16[:])
	}
}

// QueryLen returns the length of an MLDv2 query with nsources sources.
func QueryLen(nsources int) int { return QueryV2HeaderLen + 16*nsources }

// PutQuery writes an MLDv2 query (RFC 3810 section 5.1) into b and returns
// its length, QueryLen(len(sources)). The checksum is left zero: it depends
// on the IPv6 addresses, and BuildFrame (or SetChecksum) fills it in.
//
// group is :: (or the zero Addr) for a general query and the multicast
// address for a multicast-address-specific or, with sources, a
// multicast-address-and-source-specific query. maxResp is encoded with
// EncodeCode and qqi with EncodeQQIC, so both are rounded down to a
// representable value. qrv outside 1 to 7 is sent as 0, as section 5.1.8
// asks for values above 7. mark puts QuerierMark in the Reserved field;
// otherwise it is zero. It requires len(b) >= QueryLen(len(sources)), at
// most 65535 sources, and IPv6 addresses, and panics otherwise.
func PutQuery(b []byte, group netip.Addr, maxResp time.Duration, sflag bool, qrv int, qqi time.Duration, sources []netip.Addr, mark bool) int {
	if len(sources) > 0xffff {
		panic("mld: PutQuery with more than 65535 sources")
	}
	n := QueryLen(len(sources))
	if len(b) < n {
		panic("mld: PutQuery buffer too short")
	}
	b = b[:n]
	b[offType] = TypeQuery
	b[1] = 0 // Code
	b[offChecksum], b[offChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[offCode:], EncodeCode(maxResp))
	var reserved uint16
	if mark {
		reserved = QuerierMark
	}
	binary.BigEndian.PutUint16(b[offReserved:], reserved)
	putAddr(b[offGroup:], group)
	var sq uint8
	if sflag {
		sq |= 0x08
	}
	if qrv > 0 && qrv <= 7 {
		sq |= uint8(qrv)
	}
	b[offSQRV] = sq
	b[offQQIC] = EncodeQQIC(qqi)
	binary.BigEndian.PutUint16(b[offNumSrcs:], uint16(len(sources)))
	for i, s := range sources {
		putAddr(b[offSources+16*i:], s)
	}
	return n
}

// PutQueryV1 writes a 24-byte MLDv1 query (RFC 2710 section 3) into b and
// returns its length, 24. group is :: (or the zero Addr) for a general query
// or the multicast address of a specific one. maxResp is rounded down to
// whole milliseconds and kept within 0 to 65535 ms. The Reserved field and
// the checksum are left zero (see PutQuery). It requires len(b) >= 24 and
// an IPv6 group, and panics otherwise.
func PutQueryV1(b []byte, group netip.Addr, maxResp time.Duration) int {
	if len(b) < HeaderLen {
		panic("mld: PutQueryV1 buffer too short")
	}
	b = b[:HeaderLen]
	ms := min(max(maxResp, 0)/time.Millisecond, 0xffff)
	b[offType] = TypeQuery
	b[1] = 0
	b[offChecksum], b[offChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[offCode:], uint16(ms))
	b[offReserved], b[offReserved+1] = 0, 0
	putAddr(b[offGroup:], group)
	return HeaderLen
}

// PutReportV1 writes a 24-byte MLDv1 message of type typ for group into b
// and returns its length, 24. typ is TypeV1Report or TypeV1Done (RFC 2710
// section 3; a done is sent with group set to the address left). The
// Maximum Response Delay, Reserved and checksum fields are left zero (see
// PutQuery). It requires len(b) >= 24 and an IPv6 group, and panics
// otherwise.
func PutReportV1(b []byte, typ uint8, group netip.Addr) int {
	if len(b) < HeaderLen {
		panic("mld: PutReportV1 buffer too short")
	}
	b = b[:HeaderLen]
	clear(b[:offGroup])
	b[offType] = typ
	putAddr(b[offGroup:], group)
	return HeaderLen
}

// RecordSpec describes one Multicast Address Record for PutReport.
type RecordSpec struct {
	Type    uint8        // ModeIsInclude ... BlockOldSources
	Group   netip.Addr   // the Multicast Address
	Sources []netip.Addr // at most 65535
	Aux     []byte       // auxiliary data: a multiple of 4 bytes, at most 1020
}

// Len returns the length of the record on the wire.
func (s RecordSpec) Len() int { return RecordHeaderLen + 16*len(s.Sources) + len(s.Aux) }

// ReportLen returns the length of an MLDv2 report holding records.
func ReportLen(records ...RecordSpec) int {
	n := ReportHeaderLen
	for i := range records {
		n += records[i].Len()
	}
	return n
}

// PutReport writes an MLDv2 report (RFC 3810 section 5.2) holding records
// into b and returns its length, ReportLen(records...). The checksum is left
// zero (see PutQuery). It requires len(b) >= ReportLen(records...), at most
// 65535 records and, in each, at most 65535 sources, IPv6 addresses and aux
// data of a multiple of 4 bytes up to 1020. It panics otherwise.
func PutReport(b []byte, records ...RecordSpec) int {
	if len(records) > 0xffff {
		panic("mld: PutReport with more than 65535 records")
	}
	n := ReportLen(records...)
	if len(b) < n {
		panic("mld: PutReport buffer too short")
	}
	b = b[:n]
	clear(b[:ReportHeaderLen])
	b[offType] = TypeV2Report
	binary.BigEndian.PutUint16(b[offNumRecs:], uint16(len(records)))
	off := ReportHeaderLen
	for i := range records {
		s := &records[i]
		if len(s.Sources) > 0xffff {
			panic("mld: PutReport record with more than 65535 sources")
		}
		if len(s.Aux)%4 != 0 || len(s.Aux) > 4*0xff {
			panic("mld: PutReport record aux data not a multiple of 4 bytes up to 1020")
		}
		r := b[off : off+s.Len()]
		r[offRecType] = s.Type
		r[offRecAux] = uint8(len(s.Aux) / 4)
		binary.BigEndian.PutUint16(r[offRecNumSrc:], uint16(len(s.Sources)))
		putAddr(r[offRecGroup:], s.Group)
		for j, src := range s.Sources {
			putAddr(r[RecordHeaderLen+16*j:], src)
		}
		copy(r[RecordHeaderLen+16*len(s.Sources):], s.Aux)
		off += len(r)
	}
	return n
}

// pseudoSum returns the unfolded sum of the IPv6 pseudo-header (RFC 8200
// section 8.1) of an ICMPv6 message of length n from src to dst.
func pseudoSum(src, dst netip.Addr, n int) uint64 {
	s, d := src.As16(), dst.As16()
	acc := inet.Sum(s[:], 0)
	acc = inet.Sum(d[:], acc)
	return acc + uint64(uint32(n)>>16) + uint64(n&0xffff) + NextHeaderICMPv6
}

// SetChecksum fills in the ICMPv6 checksum of the message b that src sends
// to dst: over the IPv6 pseudo-header (src, dst, an upper-layer length of
// len(b), next header 58) and b. It requires len(b) >= 4.
func SetChecksum(src, dst netip.Addr, b []byte) {
	b[offChecksum], b[offChecksum+1] = 0, 0
	c := ^inet.Fold(inet.Sum(b, pseudoSum(src, dst, len(b))))
	binary.BigEndian.PutUint16(b[offChecksum:], c)
}

// verifyChecksum reports whether the ICMPv6 checksum of b, sent from src to
// dst, verifies.
func verifyChecksum(src, dst netip.Addr, b []byte) bool {
	return inet.Fold(inet.Sum(b, pseudoSum(src, dst, len(b)))) == 0xffff
}
