package igmp

import (
	"encoding/binary"
	"github.com/meshcast/meshcast/internal/inet"
	"net/netip"
	"time"
)

// Message types (RFC 3376 section 4, RFC 2236 section 2.1, RFC 1112
// appendix I).
const (
	TypeQuery    = 0x11 // Membership Query, all versions
	TypeV1Report = 0x12 // Version 1 Membership Report
	TypeV2Report = 0x16 // Version 2 Membership Report
	TypeV2Leave  = 0x17 // Version 2 Leave Group
	TypeV3Report = 0x22 // Version 3 Membership Report
)

// Group Record types of an IGMPv3 report (RFC 3376 section 4.2.12).
const (
	ModeIsInclude   = 1 // current-state: INCLUDE the listed sources
	ModeIsExclude   = 2 // current-state: EXCLUDE the listed sources
	ChangeToInclude = 3 // filter-mode change to INCLUDE
	ChangeToExclude = 4 // filter-mode change to EXCLUDE
	AllowNewSources = 5 // source-list change: sources to add
	BlockOldSources = 6 // source-list change: sources to remove
)

// Wire sizes.
const (
	// HeaderLen is the length of IGMPv1 and IGMPv2 messages and the least
	// length of every IGMP message.
	HeaderLen = 8
	// QueryV3HeaderLen is the length of an IGMPv3 query without sources.
	QueryV3HeaderLen = 12
	// RecordHeaderLen is the length of a v3 Group Record without sources
	// and auxiliary data.
	RecordHeaderLen = 8
)

// Offsets of fields inside a message and inside a Group Record.
const (
	offType     = 0
	offCode     = 1 // Max Resp Time (v2), Max Resp Code (v3), Reserved (reports)
	offChecksum = 2
	offGroup    = 4 // queries, v1 and v2 reports, leaves
	offNumRecs  = 6 // v3 report: Number of Group Records (bytes 4-5 are reserved)
	offSQRV     = 8 // v3 query: Resv(4) S(1) QRV(3)
	offQQIC     = 9
	offNumSrcs  = 10
	offSources  = 12

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
	Truncated          // shorter than 8 bytes, or than its own counts of records, sources or aux data announce
	BadLength          // a query of 9 to 11 bytes, neither v1/v2 nor v3 (RFC 3376 section 7.1)
	BadChecksum        // the checksum over the whole message does not verify
	UnknownType        // a type other than the five above
	BadGroup           // a group field that cannot name a group: not multicast (or, for a query, neither 0.0.0.0 nor multicast)
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:          "ok",
	Truncated:   "igmp_truncated",
	BadLength:   "igmp_length",
	BadChecksum: "igmp_checksum",
	UnknownType: "igmp_type",
	BadGroup:    "igmp_group",
}

// String returns the reason's counter name, such as "igmp_checksum".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "igmp_unknown_reason"
}

// Message is one IGMP message, from its type byte to the end of the IP
// payload: a view over the caller's bytes, never a copy. Its methods assume a
// Message that Parse accepted; on anything else they return zero values or,
// for out-of-range indexes, panic as a slice index would.
//
// The Message shares memory with the bytes passed to Parse: it is valid only
// while the caller keeps them unchanged.
type Message []byte

// Parse validates b as one IGMP message and returns it as a Message, or nil
// and the reason for refusing it. It copies and allocates nothing.
//
// Checked, in this order:
//   - at least 8 bytes, and one of the five known types;
//   - a query is 8 bytes (v1 or v2) or at least 12 (v3); 9 to 11 bytes is
//     BadLength. A v3 query must hold all the sources it counts;
//   - a v3 report must hold every Group Record it counts, each with its
//     sources and its aux data (Aux Data Len counts 32-bit words);
//   - the checksum (RFC 1071) over the whole of b, trailing octets included;
//   - the group fields: multicast for reports, leaves and group records;
//     0.0.0.0 or multicast for queries.
//
// Octets after the part a message's type defines are accepted and otherwise
// ignored (RFC 2236 section 2.5, RFC 3376 sections 4.1.10 and 4.2.11), but
// they stay in the Message, so its checksum still verifies.
//
// A v3 report may hold Group Records of types this package does not know.
// RFC 3376 section 4.2.12 has receivers silently ignore such records, not
// the whole report, so Parse accepts them; callers skip any Record whose
// Known method is false (Table.Handle counts those as "igmp_record" in
// Table.Refused). A record whose Multicast Address is not multicast is
// malformed, not an extension: the whole report is refused with BadGroup.
func Parse(b []byte) (Message, Reason) {
	if len(b) < HeaderLen {
		return nil, Truncated
	}
	badGroup := false
	switch b[offType] {
	case TypeQuery:
		switch {
		case len(b) == HeaderLen:
		case len(b) < QueryV3HeaderLen:
			return nil, BadLength
		default:
			n := int(binary.BigEndian.Uint16(b[offNumSrcs:]))
			if len(b)-QueryV3HeaderLen < 4*n {
				return nil, Truncated
			}
		}
		g := b[offGroup : offGroup+4]
		badGroup = !isMulticast(g) && !isZero(g)
	case TypeV1Report, TypeV2Report, TypeV2Leave:
		badGroup = !isMulticast(b[offGroup : offGroup+4])
	case TypeV3Report:
		n := int(binary.BigEndian.Uint16(b[offNumRecs:]))
		rest := b[HeaderLen:]
		for range n {
			if len(rest) < RecordHeaderLen {
				return nil, Truncated
			}
			l := recordLen(rest)
			if l > len(rest) {
				return nil, Truncated
			}
			if !isMulticast(rest[offRecGroup : offRecGroup+4]) {
				badGroup = true
			}
			rest = rest[l:]
		}
	default:
		return nil, UnknownType
	}
	if !verifyChecksum(b) {
		return nil, BadChecksum
	}
	if badGroup {
		return nil, BadGroup
	}
	return Message(b), OK
}

// recordLen is the length of the Group Record at the start of b, which must
// hold at least its 8-byte header. It can exceed len(b).
func recordLen(b []byte) int {
	return RecordHeaderLen + 4*int(binary.BigEndian.Uint16(b[offRecNumSrc:])) + 4*int(b[offRecAux])
}

func isMulticast(a []byte) bool { return a[0]&0xf0 == 0xe0 } // 224.0.0.0/4
func isZero(a []byte) bool      { return a[0]|a[1]|a[2]|a[3] == 0 }

func addr(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

// Type returns the message type, such as TypeQuery, or 0 for an empty
// Message.
func (m Message) Type() uint8 {
	if len(m) == 0 {
		return 0
	}
	return m[offType]
}

// Version returns the IGMP version the message belongs to: QueryVersion for
// a query, 1 for a v1 report, 2 for a v2 report or leave, 3 for a v3 report.
func (m Message) Version() int {
	switch m.Type() {
	case TypeQuery:
		return m.QueryVersion()
	case TypeV1Report:
		return 1
	case TypeV2Report, TypeV2Leave:
		return 2
	case TypeV3Report:
		return 3
	}
	return 0
}

// Group returns the Group Address of a query, v1 or v2 report or leave. It is
// 0.0.0.0 in a general query. A v3 report has no such field (its groups are
// in its records): Group returns the zero Addr for it.
func (m Message) Group() netip.Addr {
	if len(m) < HeaderLen || m[offType] == TypeV3Report {
		return netip.Addr{}
	}
	return addr(m[offGroup:])
}

// QueryVersion tells the versions of queries apart as RFC 3376 section 7.1
// does: 1 for 8 bytes with a zero Max Resp Code, 2 for 8 bytes with a
// non-zero one, 3 for 12 bytes or more. It returns 0 for other messages.
func (m Message) QueryVersion() int {
	switch {
	case m.Type() != TypeQuery || len(m) < HeaderLen:
		return 0
	case len(m) >= QueryV3HeaderLen:
		return 3
	case m[offCode] == 0:
		return 1
	}
	return 2
}

// MaxRespCode returns the raw Max Resp Time (v2) or Max Resp Code (v3)
// byte of a query, or 0 for other messages.
func (m Message) MaxRespCode() uint8 {
	if m.Type() != TypeQuery || len(m) < HeaderLen {
		return 0
	}
	return m[offCode]
}

// MaxResp returns the longest time a host may wait before it answers a
// query: for v2, Max Resp Time tenths of a second (RFC 2236 section 2.2); for
// v3, the Max Resp Code decoded as in RFC 3376 section 4.1.1, in tenths of a
// second. A v1 query carries 0, which stands for 10 seconds (RFC 2236
// section 4). It returns 0 for messages other than queries.
func (m Message) MaxResp() time.Duration {
	switch m.QueryVersion() {
	case 1:
		return 10 * time.Second
	case 2:
		return time.Duration(m[offCode]) * (time.Second / 10)
	case 3:
		return time.Duration(DecodeCode(m[offCode])) * (time.Second / 10)
	}
	return 0
}

// SFlag reports the Suppress Router-Side Processing flag of a v3 query
// (RFC 3376 section 4.1.5).
func (m Message) SFlag() bool {
	return m.QueryVersion() == 3 && m[offSQRV]&0x08 != 0
}

// QRV returns the Querier's Robustness Variable of a v3 query, 0 to 7 (RFC
// 3376 section 4.1.6). 0 means the querier's value exceeds 7, or that the
// message is not a v3 query.
func (m Message) QRV() int {
	if m.QueryVersion() != 3 {
		return 0
	}
	return int(m[offSQRV] & 0x07)
}

// QQI returns the Querier's Query Interval of a v3 query: its QQIC decoded
// as in RFC 3376 section 4.1.7, in seconds. It returns 0 for other messages.
func (m Message) QQI() time.Duration {
	if m.QueryVersion() != 3 {
		return 0
	}
	return time.Duration(DecodeCode(m[offQQIC])) * time.Second
}

// NumSources returns the Number of Sources of a v3 query: 0 for a general or
// group-specific query, more for a group-and-source-specific one. It returns 0
// for other messages.
func (m Message) NumSources() int {
	if m.QueryVersion() != 3 {
		return 0
	}
	return int(binary.BigEndian.Uint16(m[offNumSrcs:]))
}

// Source returns source address i of a v3 query. It requires
// 0 <= i < NumSources().
func (m Message) Source(i int) netip.Addr {
	if uint(i) >= uint(m.NumSources()) {
		panic("igmp: query source index out of range")
	}
	return addr(m[offSources+4*i:])
}

// NumRecords returns the Number of Group Records of a v3 report, or 0 for
// other messages.
func (m Message) NumRecords() int {
	if m.Type() != TypeV3Report || len(m) < HeaderLen {
		return 0
	}
	return int(binary.BigEndian.Uint16(m[offNumRecs:]))
}

// Records returns an iterator over the Group Records of a v3 report. It is
// empty for other messages. Iteration allocates nothing and costs O(1) per
// record:
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
	return RecordIter{rest: m[HeaderLen:], left: n}
}

// RecordIter walks the Group Records of a v3 report. The zero RecordIter is
// empty.
type RecordIter struct {
	rest []byte // the records not returned yet, then any trailing octets
	left int    // how many records have not been returned yet
}

// Next returns the next Group Record and true, or nil and false after the
// last one. On a Message that Parse did not accept it stops, instead of
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

// Record is one Group Record of a v3 report (RFC 3376 section 4.2.4): its
// header, its sources and its auxiliary data, as a view into the Message.
type Record []byte

// Type returns the Record Type, such as ModeIsInclude.
func (r Record) Type() uint8 { return r[offRecType] }

// Known reports whether the Record Type is one of the six that RFC 3376
// section 4.2.12 defines. Receivers silently ignore records of other types
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
		panic("igmp: record source index out of range")
	}
	return addr(r[RecordHeaderLen+4*i:])
}

// AuxLen returns the length of the record's auxiliary data in bytes. (The
// Aux Data Len field on the wire counts 32-bit words.)
func (r Record) AuxLen() int { return 4 * int(r[offRecAux]) }

// Aux returns the record's auxiliary data, a view into the message. IGMPv3
// defines none; receivers ignore it (RFC 3376 section 4.2.10).
func (r Record) Aux() []byte {
	off := RecordHeaderLen + 4*r.NumSources()
	return r[off : off+r.AuxLen() : off+r.AuxLen()]
}

// DecodeCode returns the value that a v3 Max Resp Code or QQIC stands for
// (RFC 3376 sections 4.1.1 and 4.1.7): a code below 128 is the value itself;
// from 128 on it is a small float, 1 bit set, 3 bits of exponent and 4 of
// mantissa, standing for (mantissa | 0x10) << (exponent + 3). The result is in
// the field's units: tenths of a second for Max Resp Code, seconds for QQIC.
// It ranges from 0 to 31744.
func DecodeCode(c uint8) int { return int(inet.DecodeFloat(uint32(c), 4)) }

// MaxCodeValue is the largest value a Max Resp Code or QQIC can stand for.
const MaxCodeValue = 31744

// EncodeCode returns the code for value v, the inverse of DecodeCode. Values
// below 128 are exact. Larger ones are rounded down to the nearest value the
// float format can represent, so a code never stands for more than was asked
// for; values above MaxCodeValue give the largest code, 0xff. Negative
// values give 0.
func EncodeCode(v int) uint8 { return uint8(inet.EncodeFloat(int64(v), 4)) }

// tenths converts d to whole tenths of a second, rounding down.
func tenths(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	t := d / (time.Second / 10)
	if t > 1<<30 {
		return 1 << 30
	}
	return int(t)
}

// seconds converts d to whole seconds, rounding down.
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if s > 1<<30 {
		return 1 << 30
	}
	return int(s)
}

// putAddr writes a as 4 bytes. The zero Addr is written as 0.0.0.0; an IPv6
// address that is not IPv4-mapped panics, as netip.Addr.As4 does.
func putAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		b[0], b[1], b[2], b[3] = 0, 0, 0, 0
		return
	}
	a4 := a.As4()
	copy(b[:4], a4[:])
}

// QueryV3Len returns the length of a v3 query with n sources.
func QueryV3Len(n int) int { return QueryV3HeaderLen + 4*n }

// PutQueryV2 writes an 8-byte IGMPv2 query into b and returns its length,
// 8. group is 0.0.0.0 (or the zero Addr) for a general query, or the group of
// a group-specific one. maxResp is rounded down to tenths of a second and
// kept within 0.1 s to 25.5 s: a zero code would make the message an IGMPv1
// query. It requires len(b) >= 8.
func PutQueryV2(b []byte, group netip.Addr, maxResp time.Duration) int {
	b = b[:HeaderLen]
	code := min(max(tenths(maxResp), 1), 0xff)
	b[offType] = TypeQuery
	b[offCode] = uint8(code)
	putAddr(b[offGroup:], group)
	setChecksum(b)
	return HeaderLen
}

// PutQueryV3 writes an IGMPv3 query (RFC 3376 section 4.1) into b and
// returns its length, QueryV3Len(len(sources)).
//
// group is 0.0.0.0 (or the zero Addr) for a general query and the group for a
// group-specific or, with sources, group-and-source-specific query. maxResp
// (in tenths of a second) and qqi (in seconds) are encoded with EncodeCode,
// so they are rounded down to a representable value. qrv above 7 is sent as
// 0, as section 4.1.6 asks. It requires len(b) >= QueryV3Len(len(sources))
// and at most 65535 sources, and panics otherwise.
func PutQueryV3(b []byte, group netip.Addr, maxResp time.Duration, sflag bool, qrv int, qqi time.Duration, sources []netip.Addr) int {
	if len(sources) > 0xffff {
		panic("igmp: PutQueryV3 with more than 65535 sources")
	}
	n := QueryV3Len(len(sources))
	if len(b) < n {
		panic("igmp: PutQueryV3 buffer too short")
	}
	b = b[:n]
	b[offType] = TypeQuery
	b[offCode] = EncodeCode(tenths(maxResp))
	putAddr(b[offGroup:], group)
	var sq uint8
	if sflag {
		sq |= 0x08
	}
	if qrv > 0 && qrv <= 7 {
		sq |= uint8(qrv)
	}
	b[offSQRV] = sq
	b[offQQIC] = EncodeCode(seconds(qqi))
	binary.BigEndian.PutUint16(b[offNumSrcs:], uint16(len(sources)))
	for i, s := range sources {
		putAddr(b[offSources+4*i:], s)
	}
	setChecksum(b)
	return n
}

// PutReportV2 writes an 8-byte message of type typ for group into b and
// returns its length, 8. typ is TypeV1Report, TypeV2Report or TypeV2Leave
// (RFC 2236 section 2; a leave is sent with group set to the group left). It
// requires len(b) >= 8.
func PutReportV2(b []byte, typ uint8, group netip.Addr) int {
	b = b[:HeaderLen]
	b[offType] = typ
	b[offCode] = 0
	putAddr(b[offGroup:], group)
	setChecksum(b)
	return HeaderLen
}

// RecordSpec describes one Group Record for PutReportV3.
type RecordSpec struct {
	Type    uint8        // ModeIsInclude ... BlockOldSources
	Group   netip.Addr   // the Multicast Address
	Sources []netip.Addr // at most 65535
	Aux     []byte       // auxiliary data: a multiple of 4 bytes, at most 1020
}

// Len returns the length of the Group Record on the wire.
func (s RecordSpec) Len() int { return RecordHeaderLen + 4*len(s.Sources) + len(s.Aux) }

// ReportV3Len returns the length of a v3 report holding records.
func ReportV3Len(records ...RecordSpec) int {
	n := HeaderLen
	for i := range records {
		n += records[i].Len()
	}
	return n
}

// PutReportV3 writes an IGMPv3 report (RFC 3376 section 4.2) holding records
// into b and returns its length, ReportV3Len(records...). It requires
// len(b) >= ReportV3Len(records...), at most 65535 records and, in each,
// at most 65535 sources and aux data of a multiple of 4 bytes up to 1020. It
// panics otherwise.
func PutReportV3(b []byte, records ...RecordSpec) int {
	if len(records) > 0xffff {
		panic("igmp: PutReportV3 with more than 65535 records")
	}
	n := ReportV3Len(records...)
	if len(b) < n {
		panic("igmp: PutReportV3 buffer too short")
	}
	b = b[:n]
	b[offType] = TypeV3Report
	b[offCode] = 0
	b[4], b[5] = 0, 0
	binary.BigEndian.PutUint16(b[offNumRecs:], uint16(len(records)))
	off := HeaderLen
	for i := range records {
		s := &records[i]
		if len(s.Sources) > 0xffff {
			panic("igmp: PutReportV3 record with more than 65535 sources")
		}
		if len(s.Aux)%4 != 0 || len(s.Aux) > 4*0xff {
			panic("igmp: PutReportV3 record aux data not a multiple of 4 bytes up to 1020")
		}
		r := b[off : off+s.Len()]
		r[offRecType] = s.Type
		r[offRecAux] = uint8(len(s.Aux) / 4)
		binary.BigEndian.PutUint16(r[offRecNumSrc:], uint16(len(s.Sources)))
		putAddr(r[offRecGroup:], s.Group)
		for j, src := range s.Sources {
			putAddr(r[RecordHeaderLen+4*j:], src)
		}
		copy(r[RecordHeaderLen+4*len(s.Sources):], s.Aux)
		off += len(r)
	}
	setChecksum(b)
	return n
}

// setChecksum fills in the checksum field of the message b.
func setChecksum(b []byte) {
	b[offChecksum], b[offChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[offChecksum:], inet.Checksum(b))
}

// verifyChecksum reports whether the Internet checksum over b, its checksum
// field included, verifies.
func verifyChecksum(b []byte) bool { return inet.Verify(b) }
