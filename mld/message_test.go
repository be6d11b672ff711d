package mld

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/inet"
)

var mustAddr = netip.MustParseAddr

// The addresses the test messages are checksummed for: a host's link-local
// address (that of 52:54:00:12:34:56) sending to all MLDv2-capable routers.
var (
	testSrc = mustAddr("fe80::5054:ff:fe12:3456")
	testDst = mustAddr("ff02::16")
)

// refChecksum is a plain byte-by-byte ICMPv6 checksum (RFC 4443 section
// 2.3): the IPv6 pseudo-header of RFC 8200 section 8.1 written out as bytes,
// then b, summed a 16-bit word at a time. It is kept apart from the
// package's word-at-a-time one so each checks the other.
func refChecksum(src, dst netip.Addr, b []byte) uint16 {
	s, d := src.As16(), dst.As16()
	ph := make([]byte, 0, 40+len(b))
	ph = append(ph, s[:]...)
	ph = append(ph, d[:]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(b)))
	ph = append(ph, 0, 0, 0, NextHeaderICMPv6)
	ph = append(ph, b...)
	var sum uint32
	for i := 0; i < len(ph); i += 2 {
		w := uint32(ph[i]) << 8
		if i+1 < len(ph) {
			w |= uint32(ph[i+1])
		}
		sum += w
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
	}
	return ^uint16(sum)
}

// fixFor fills in the ICMPv6 checksum of b (bytes 2-3) for a message from
// src to dst and returns b.
func fixFor(src, dst netip.Addr, b []byte) []byte {
	if len(b) >= 4 {
		b[2], b[3] = 0, 0
		binary.BigEndian.PutUint16(b[2:], refChecksum(src, dst, b))
	}
	return b
}

// fix fills in the checksum of b for testSrc and testDst.
func fix(b []byte) []byte { return fixFor(testSrc, testDst, b) }

// u16 is a 16-bit big-endian field for wire.
type u16 uint16

// wire lays out a message: an int is one byte, a u16 two bytes, a string a
// 16-byte IPv6 address, a []byte itself.
func wire(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case u16:
			b = binary.BigEndian.AppendUint16(b, uint16(p))
		case string:
			a := mustAddr(p).As16()
			b = append(b, a[:]...)
		case []byte:
			b = append(b, p...)
		default:
			panic("wire: unknown part")
		}
	}
	return b
}

// msg lays out a message with wire and fills in its checksum for testSrc
// and testDst. The parts include the checksum field, as u16(0).
func msg(parts ...any) []byte { return fix(wire(parts...)) }

// cat joins byte slices into a new one.
func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// report3 is a v2 report with three records: an ASM join with no sources,
// an INCLUDE record with two sources and one word of aux data, and a BLOCK
// record with one source and two words of aux data. 128 bytes.
func report3() []byte {
	return msg(
		TypeV2Report, 0, u16(0), u16(0), u16(3),
		// record 1: MODE_IS_EXCLUDE ff0e::1:1, no sources, no aux
		ModeIsExclude, 0, u16(0), "ff0e::1:1",
		// record 2: MODE_IS_INCLUDE ff3e::8000:2, 2 sources, 1 aux word
		ModeIsInclude, 1, u16(2), "ff3e::8000:2",
		"2001:db8::1", "2001:db8::2",
		[]byte{0xde, 0xad, 0xbe, 0xef},
		// record 3: BLOCK_OLD_SOURCES ff3e::8000:3, 1 source, 2 aux words
		BlockOldSources, 2, u16(1), "ff3e::8000:3",
		"2001:db8::9",
		[]byte{1, 2, 3, 4, 5, 6, 7, 8},
	)
}

// report3Specs describes report3 for the builder.
func report3Specs() []RecordSpec {
	return []RecordSpec{
		{Type: ModeIsExclude, Group: mustAddr("ff0e::1:1")},
		{Type: ModeIsInclude, Group: mustAddr("ff3e::8000:2"),
			Sources: []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2")},
			Aux:     []byte{0xde, 0xad, 0xbe, 0xef}},
		{Type: BlockOldSources, Group: mustAddr("ff3e::8000:3"),
			Sources: []netip.Addr{mustAddr("2001:db8::9")},
			Aux:     []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
}

// report4 is a v2 report with four records and no aux data, the shape a
// Linux host sends after joining a few groups; used by the benchmarks.
func report4() []byte {
	b := make([]byte, 256)
	n := PutReport(b,
		RecordSpec{Type: ChangeToExclude, Group: mustAddr("ff0e::1:1")},
		RecordSpec{Type: ChangeToExclude, Group: mustAddr("ff02::fb")},
		RecordSpec{Type: AllowNewSources, Group: mustAddr("ff3e::8000:1"), Sources: []netip.Addr{mustAddr("2001:db8::1")}},
		RecordSpec{Type: ModeIsInclude, Group: mustAddr("ff3e::8000:2"), Sources: []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2")}},
	)
	return fix(b[:n])
}

// queryV2SG is a multicast-address-and-source-specific v2 query: Maximum
// Response Code 10000 (10 s), S set, QRV 2, QQIC 125, two sources. 60
// bytes.
func queryV2SG() []byte {
	return msg(
		TypeQuery, 0, u16(0), u16(10000), u16(0), "ff3e::8000:2",
		0x0a, 125, u16(2),
		"2001:db8::1", "2001:db8::2",
	)
}

// msgWant is what the accessors of a Message should return.
type msgWant struct {
	typ, version int
	group        string // "" for the zero Addr
	code         uint16
	maxResp      time.Duration
	marked       bool
	sflag        bool
	qrv          int
	qqi          time.Duration
	sources      []string
	records      int
}

type validCase struct {
	name string
	b    []byte
	want msgWant
}

// validCases are accepted messages of every type and version, checksummed
// for testSrc and testDst. They seed the fuzz tests too.
func validCases() []validCase {
	return []validCase{
		{"v1 general query", msg(TypeQuery, 0, u16(0), u16(10000), u16(0), "::"),
			msgWant{typ: TypeQuery, version: 1, group: "::", code: 10000, maxResp: 10 * time.Second}},
		{"v1 specific query", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "ff0e::1:1"),
			msgWant{typ: TypeQuery, version: 1, group: "ff0e::1:1", code: 1000, maxResp: time.Second}},
		{"v1 query delay 0", msg(TypeQuery, 0, u16(0), u16(0), u16(0), "::"),
			msgWant{typ: TypeQuery, version: 1, group: "::"}},
		{"v1 query delay 65535 is linear", msg(TypeQuery, 0, u16(0), u16(65535), u16(0), "::"),
			msgWant{typ: TypeQuery, version: 1, group: "::", code: 65535, maxResp: 65535 * time.Millisecond}},
		{"v1 query marked", msg(TypeQuery, 0, u16(0), u16(10000), u16(QuerierMark), "::"),
			msgWant{typ: TypeQuery, version: 1, group: "::", code: 10000, maxResp: 10 * time.Second, marked: true}},
		{"v1 query other reserved value", msg(TypeQuery, 0, u16(0), u16(10000), u16(QuerierMark+1), "::"),
			msgWant{typ: TypeQuery, version: 1, group: "::", code: 10000, maxResp: 10 * time.Second}},
		{"v1 report", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff0e::1:1"}},
		{"v1 report mDNS group", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff02::fb"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff02::fb"}},
		{"v1 report solicited-node group", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff02::1:ff12:3456"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff02::1:ff12:3456"}},
		{"v1 report interface-local scope", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff01::1:2"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff01::1:2"}},
		{"v1 report reserved scope 15", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0f::1:2"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff0f::1:2"}},
		{"v1 report ignored fields set", msg(TypeV1Report, 7, u16(0), u16(1234), u16(QuerierMark), "ff0e::1:1"),
			msgWant{typ: TypeV1Report, version: 1, group: "ff0e::1:1"}},
		{"v1 report with trailing octets (RFC 2710 3.7)", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1", 9, 9, 9),
			msgWant{typ: TypeV1Report, version: 1, group: "ff0e::1:1"}},
		{"v1 done", msg(TypeV1Done, 0, u16(0), u16(0), u16(0), "ff05::1:3"),
			msgWant{typ: TypeV1Done, version: 1, group: "ff05::1:3"}},
		{"v2 general query", msg(TypeQuery, 0, u16(0), u16(10000), u16(0), "::", 0x02, 125, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "::", code: 10000, maxResp: 10 * time.Second, qrv: 2, qqi: 125 * time.Second}},
		{"v2 query codes 0", msg(TypeQuery, 0, u16(0), u16(0), u16(0), "::", 0, 0, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "::"}},
		{"v2 query marked", msg(TypeQuery, 0, u16(0), u16(10000), u16(QuerierMark), "::", 0x02, 125, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "::", code: 10000, maxResp: 10 * time.Second, marked: true, qrv: 2, qqi: 125 * time.Second}},
		{"v2 specific query, float codes", msg(TypeQuery, 0, u16(0), u16(0x8000), u16(0), "ff0e::1:1", 0x07, 0x8c, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "ff0e::1:1", code: 0x8000, maxResp: 32768 * time.Millisecond,
				qrv: 7, qqi: 224 * time.Second}},
		{"v2 query largest codes", msg(TypeQuery, 0, u16(0), u16(0xffff), u16(0), "::", 0x0f, 0xff, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "::", code: 0xffff, maxResp: 8387584 * time.Millisecond,
				sflag: true, qrv: 7, qqi: 31744 * time.Second}},
		{"v2 query reserved bits ignored", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::", 0xf1, 60, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "::", code: 1000, maxResp: time.Second, qrv: 1, qqi: time.Minute}},
		{"v2 query for a scope-0 group", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "ff00::1", 0x02, 125, u16(0)),
			msgWant{typ: TypeQuery, version: 2, group: "ff00::1", code: 1000, maxResp: time.Second, qrv: 2, qqi: 125 * time.Second}},
		{"v2 source-specific query", queryV2SG(),
			msgWant{typ: TypeQuery, version: 2, group: "ff3e::8000:2", code: 10000, maxResp: 10 * time.Second,
				sflag: true, qrv: 2, qqi: 125 * time.Second, sources: []string{"2001:db8::1", "2001:db8::2"}}},
		{"v2 query with additional data (RFC 3810 5.1.12)", fix(cat(queryV2SG(), []byte{1, 2, 3})),
			msgWant{typ: TypeQuery, version: 2, group: "ff3e::8000:2", code: 10000, maxResp: 10 * time.Second,
				sflag: true, qrv: 2, qqi: 125 * time.Second, sources: []string{"2001:db8::1", "2001:db8::2"}}},
		{"v2 report no records", msg(TypeV2Report, 0, u16(0), u16(0), u16(0)),
			msgWant{typ: TypeV2Report, version: 2}},
		{"v2 report 3 records", report3(), msgWant{typ: TypeV2Report, version: 2, records: 3}},
		{"v2 report 4 records", report4(), msgWant{typ: TypeV2Report, version: 2, records: 4}},
		{"v2 report reserved fields set", msg(TypeV2Report, 9, u16(0), u16(0xabcd), u16(1), ModeIsExclude, 0, u16(0), "ff0e::1:1"),
			msgWant{typ: TypeV2Report, version: 2, records: 1}},
		{"v2 report with additional data (RFC 3810 5.2.11)", fix(cat(report3(), []byte{7, 7, 7, 7, 7})),
			msgWant{typ: TypeV2Report, version: 2, records: 3}},
		{"v2 report unknown record type", msg(TypeV2Report, 0, u16(0), u16(0), u16(2),
			7, 0, u16(0), "ff0e::1:1",
			ChangeToExclude, 0, u16(0), "ff0e::1:2"),
			msgWant{typ: TypeV2Report, version: 2, records: 2}},
	}
}

func checkMessage(t *testing.T, m Message, w msgWant) {
	t.Helper()
	if got := m.Type(); int(got) != w.typ {
		t.Errorf("Type = %d, want %d", got, w.typ)
	}
	if got := m.Version(); got != w.version {
		t.Errorf("Version = %d, want %d", got, w.version)
	}
	var group netip.Addr
	if w.group != "" {
		group = mustAddr(w.group)
	}
	if got := m.Group(); got != group {
		t.Errorf("Group = %v, want %v", got, group)
	}
	if got := m.MaxRespCode(); got != w.code {
		t.Errorf("MaxRespCode = %#x, want %#x", got, w.code)
	}
	if got := m.MaxResp(); got != w.maxResp {
		t.Errorf("MaxResp = %v, want %v", got, w.maxResp)
	}
	if got := m.Marked(); got != w.marked {
		t.Errorf("Marked = %v, want %v", got, w.marked)
	}
	if got := m.SFlag(); got != w.sflag {
		t.Errorf("SFlag = %v, want %v", got, w.sflag)
	}
	if got := m.QRV(); got != w.qrv {
		t.Errorf("QRV = %d, want %d", got, w.qrv)
	}
	if got := m.QQI(); got != w.qqi {
		t.Errorf("QQI = %v, want %v", got, w.qqi)
	}
	if got := m.NumSources(); got != len(w.sources) {
		t.Fatalf("NumSources = %d, want %d", got, len(w.sources))
	}
	for i, s := range w.sources {
		if got := m.Source(i); got != mustAddr(s) {
			t.Errorf("Source(%d) = %v, want %v", i, got, s)
		}
	}
	if got := m.NumRecords(); got != w.records {
		t.Errorf("NumRecords = %d, want %d", got, w.records)
	}
	n := 0
	for it := m.Records(); ; n++ {
		if _, ok := it.Next(); !ok {
			break
		}
	}
	if n != w.records {
		t.Errorf("Records yielded %d, want %d", n, w.records)
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, r := Parse(testSrc, testDst, tc.b)
			if r != OK {
				t.Fatalf("Parse = %v, want ok", r)
			}
			if len(m) != len(tc.b) || &m[0] != &tc.b[0] {
				t.Fatalf("Parse returned a copy or a different length (%d, want %d)", len(m), len(tc.b))
			}
			checkMessage(t, m, tc.want)
		})
	}
}

type recWant struct {
	typ     uint8
	known   bool
	group   string
	sources []string
	aux     []byte
}

func checkRecords(t *testing.T, m Message, want []recWant) {
	t.Helper()
	it := m.Records()
	for i, w := range want {
		r, ok := it.Next()
		if !ok {
			t.Fatalf("record %d: iterator ended early", i)
		}
		if r.Type() != w.typ || r.Known() != w.known {
			t.Errorf("record %d: Type %d Known %v, want %d %v", i, r.Type(), r.Known(), w.typ, w.known)
		}
		if r.Group() != mustAddr(w.group) {
			t.Errorf("record %d: Group %v, want %v", i, r.Group(), w.group)
		}
		if r.NumSources() != len(w.sources) {
			t.Fatalf("record %d: NumSources %d, want %d", i, r.NumSources(), len(w.sources))
		}
		for j, s := range w.sources {
			if r.Source(j) != mustAddr(s) {
				t.Errorf("record %d: Source(%d) %v, want %v", i, j, r.Source(j), s)
			}
		}
		if r.AuxLen() != len(w.aux) || !bytes.Equal(r.Aux(), w.aux) {
			t.Errorf("record %d: AuxLen %d Aux %x, want %x", i, r.AuxLen(), r.Aux(), w.aux)
		}
		if cap(r) != len(r) || cap(r.Aux()) != len(r.Aux()) {
			t.Errorf("record %d: a view with spare capacity: an append would overwrite the message", i)
		}
	}
	if r, ok := it.Next(); ok {
		t.Errorf("extra record %x", []byte(r))
	}
	if _, ok := it.Next(); ok {
		t.Errorf("iterator restarted after its end")
	}
}

func TestRecords(t *testing.T) {
	want3 := []recWant{
		{ModeIsExclude, true, "ff0e::1:1", nil, nil},
		{ModeIsInclude, true, "ff3e::8000:2", []string{"2001:db8::1", "2001:db8::2"}, []byte{0xde, 0xad, 0xbe, 0xef}},
		{BlockOldSources, true, "ff3e::8000:3", []string{"2001:db8::9"}, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
	for _, b := range [][]byte{report3(), fix(cat(report3(), []byte{7, 7, 7}))} {
		m, r := Parse(testSrc, testDst, b)
		if r != OK {
			t.Fatalf("Parse = %v", r)
		}
		checkRecords(t, m, want3)
	}

	// Unknown record types are accepted; Known tells the caller to skip them.
	m, r := Parse(testSrc, testDst, msg(TypeV2Report, 0, u16(0), u16(0), u16(3),
		0, 0, u16(0), "ff0e::1:1",
		7, 0, u16(1), "ff0e::1:2", "2001:db8::1",
		ChangeToInclude, 0, u16(0), "ff0e::1:3"))
	if r != OK {
		t.Fatalf("Parse with unknown record types = %v, want ok", r)
	}
	checkRecords(t, m, []recWant{
		{0, false, "ff0e::1:1", nil, nil},
		{7, false, "ff0e::1:2", []string{"2001:db8::1"}, nil},
		{ChangeToInclude, true, "ff0e::1:3", nil, nil},
	})
	for typ := range 256 {
		known := typ >= 1 && typ <= 6
		if got := Record(wire(typ, 0, u16(0), "ff0e::1")).Known(); got != known {
			t.Errorf("record type %d: Known = %v, want %v", typ, got, known)
		}
	}

	// A Message that Parse did not accept must not make the iterator panic:
	// cut inside record 2, it yields record 1 and stops.
	bad := Message(report3()[:50])
	n := 0
	for it := bad.Records(); ; n++ {
		if _, ok := it.Next(); !ok {
			break
		}
	}
	if n != 1 {
		t.Errorf("cut report yielded %d records, want 1", n)
	}
	var zero RecordIter
	if _, ok := zero.Next(); ok {
		t.Error("zero RecordIter yielded a record")
	}
}

func TestSourceIndexPanics(t *testing.T) {
	m, _ := Parse(testSrc, testDst, queryV2SG())
	rec, _ := func() (Record, bool) { it := Message(report3()).Records(); return it.Next() }()
	for name, f := range map[string]func(){
		"query -1":  func() { m.Source(-1) },
		"query n":   func() { m.Source(2) },
		"record 0":  func() { rec.Source(0) },
		"v1 query":  func() { Message(msg(TypeQuery, 0, u16(0), u16(0), u16(0), "::")).Source(0) },
		"v1 report": func() { Message(msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1")).Source(0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestZeroMessage(t *testing.T) {
	var m Message
	checkMessage(t, m, msgWant{})
	// Messages too short for their type answer zero values too.
	checkMessage(t, Message{TypeQuery}, msgWant{typ: TypeQuery})
	checkMessage(t, make(Message, 23), msgWant{})
	checkMessage(t, Message{TypeV2Report, 0, 0, 0, 0, 0, 0}, msgWant{typ: TypeV2Report, version: 2})
	checkMessage(t, Message{TypeV1Done, 0, 0, 0, 0, 0, 0, 0}, msgWant{typ: TypeV1Done, version: 1})
	checkMessage(t, Message(wire(TypeQuery, 0, u16(0), u16(1), u16(QuerierMark), "::", 0, 0)),
		msgWant{typ: TypeQuery, group: "::", code: 1, maxResp: time.Millisecond, marked: true})
}

type refusal struct {
	name string
	b    []byte
	want Reason
}

// refusalCases are messages Parse must refuse, each built so that only the
// named fault is present (checksums are right for testSrc and testDst
// unless the fault is the checksum). They seed the fuzz tests too.
func refusalCases() []refusal {
	flip := func(b []byte, i int) []byte { b[i] ^= 0x01; return b }
	v1r := func(group string) []byte { return msg(TypeV1Report, 0, u16(0), u16(0), u16(0), group) }
	// checksumWith computes the checksum over a pseudo-header with the
	// given length and next header, not the right ones.
	checksumWith := func(b []byte, length uint32, next uint8) []byte {
		s, d := testSrc.As16(), testDst.As16()
		b[2], b[3] = 0, 0
		acc := inet.Sum(s[:], 0)
		acc = inet.Sum(d[:], acc)
		acc += uint64(length>>16) + uint64(length&0xffff) + uint64(next)
		binary.BigEndian.PutUint16(b[2:], ^inet.Fold(inet.Sum(b, acc)))
		return b
	}
	return []refusal{
		{"empty", nil, Truncated},
		{"1 byte", []byte{TypeV1Report}, Truncated},
		{"4 bytes", msg(TypeV1Report, 0, u16(0)), Truncated},
		{"v2 report 7 bytes", msg(TypeV2Report, 0, u16(0), u16(0), 0), Truncated},
		{"v1 report 8 bytes", msg(TypeV1Report, 0, u16(0), u16(0), u16(0)), Truncated},
		{"v1 report 23 bytes", fix(v1r("ff0e::1")[:23]), Truncated},
		{"v1 done 23 bytes", fix(msg(TypeV1Done, 0, u16(0), u16(0), u16(0), "ff0e::1")[:23]), Truncated},
		{"query 8 bytes", msg(TypeQuery, 0, u16(0), u16(1000), u16(0)), Truncated},
		{"query 23 bytes", fix(msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::")[:23]), Truncated},
		{"type 0", msg(0, 0, u16(0), u16(0), u16(0), "ff0e::1"), UnknownType},
		{"echo request 128", msg(128, 0, u16(0), u16(0), u16(0), "ff0e::1"), UnknownType},
		{"echo reply 129", msg(129, 0, u16(0), u16(0), u16(0), "ff0e::1"), UnknownType},
		{"neighbor solicitation 135", msg(135, 0, u16(0), u16(0), u16(0), "ff0e::1"), UnknownType},
		{"MRD advertisement 151", msg(151, 0, u16(0), u16(0), u16(0)), UnknownType},
		{"IGMP query type 0x11", msg(0x11, 100, u16(0), 0, 0, 0, 0), UnknownType},
		{"IGMPv3 report type 0x22", msg(0x22, 0, u16(0), u16(0), u16(0)), UnknownType},
		{"type 255", msg(255, 0, u16(0), u16(0), u16(0)), UnknownType},
		{"query 25 bytes", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::", 0), BadLength},
		{"query 26 bytes", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::", 0, 0), BadLength},
		{"query 27 bytes", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::", 0, 0, 0), BadLength},
		{"v2 query 1 source, none present", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "ff3e::1", 2, 125, u16(1)), Truncated},
		{"v2 query 1 source, 15 bytes present", fix(msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "ff3e::1", 2, 125, u16(1), "2001:db8::1")[:43]), Truncated},
		{"v2 query 65535 sources", fix(cat(wire(TypeQuery, 0, u16(0), u16(1000), u16(0), "ff3e::1", 2, 125, u16(0xffff)), make([]byte, 16*100))), Truncated},
		{"v2 query 3 sources, 2 present", fix(func() []byte { b := queryV2SG(); b[27] = 3; return b }()), Truncated},
		{"v2 report 1 record, none present", msg(TypeV2Report, 0, u16(0), u16(0), u16(1)), Truncated},
		{"v2 report 65535 records", fix(cat(wire(TypeV2Report, 0, u16(0), u16(0), u16(0xffff)), report3()[8:])), Truncated},
		{"v2 report 4 records, 3 present", fix(func() []byte { b := report3(); b[7] = 4; return b }()), Truncated},
		{"v2 report record header cut", fix(msg(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsExclude, 0, u16(0), "ff0e::1")[:27]), Truncated},
		{"v2 report 65535 sources", fix(cat(wire(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsInclude, 0, u16(0xffff), "ff3e::1"), make([]byte, 16*100))), Truncated},
		{"v2 report sources beyond packet", msg(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsInclude, 0, u16(2), "ff3e::1", "2001:db8::1"), Truncated},
		{"v2 report aux len 255 beyond packet", msg(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsExclude, 0xff, u16(0), "ff0e::1", 1, 2, 3, 4), Truncated},
		{"v2 report aux one word beyond packet", msg(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsExclude, 2, u16(0), "ff0e::1", 1, 2, 3, 4), Truncated},
		{"v2 report aux cut at last record", fix(func() []byte { b := report3(); return b[:len(b)-4] }()), Truncated},
		{"bad checksum v1 query", flip(msg(TypeQuery, 0, u16(0), u16(0), u16(0), "::"), 3), BadChecksum},
		{"bad checksum v1 report group", flip(v1r("ff0e::1:1"), 23), BadChecksum},
		{"bad checksum v1 done", flip(msg(TypeV1Done, 0, u16(0), u16(0), u16(0), "ff0e::1:1"), 2), BadChecksum},
		{"bad checksum v2 query source", flip(queryV2SG(), 59), BadChecksum},
		{"bad checksum v2 query mark", flip(queryV2SG(), 7), BadChecksum},
		{"bad checksum v2 report aux", flip(report3(), 127), BadChecksum},
		{"bad checksum v1 report trailing octet", flip(msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1", 5), 24), BadChecksum},
		{"bad checksum v2 report trailing octets", func() []byte { b := fix(cat(report3(), []byte{1, 2})); b[129]++; return b }(), BadChecksum},
		{"zero checksum field", func() []byte { b := v1r("ff0e::1:1"); b[2], b[3] = 0, 0; return b }(), BadChecksum},
		{"checksum without pseudo-header", func() []byte {
			b := v1r("ff0e::1:1")
			b[2], b[3] = 0, 0
			binary.BigEndian.PutUint16(b[2:], inet.Checksum(b))
			return b
		}(), BadChecksum},
		{"checksum for another source", fixFor(mustAddr("fe80::1"), testDst, v1r("ff0e::1:1")), BadChecksum},
		{"checksum for another destination", fixFor(testSrc, mustAddr("ff02::1"), v1r("ff0e::1:1")), BadChecksum},
		{"checksum for another length", checksumWith(v1r("ff0e::1:1"), 26, NextHeaderICMPv6), BadChecksum},
		{"checksum for a length above 65535", checksumWith(v1r("ff0e::1:1"), 24+1<<16, NextHeaderICMPv6), BadChecksum},
		{"checksum for another next header", checksumWith(v1r("ff0e::1:1"), 24, 17), BadChecksum},
		{"bad checksum and bad group", flip(v1r("2001:db8::1"), 3), BadChecksum},
		{"v1 report unicast group", v1r("2001:db8::1"), BadGroup},
		{"v1 report link-local unicast group", v1r("fe80::1"), BadGroup},
		{"v1 report group ::", v1r("::"), BadGroup},
		{"v1 report IPv4-mapped group", v1r("::ffff:239.1.1.1"), BadGroup},
		{"v1 report scope 0 group", v1r("ff00::1"), BadGroup},
		{"v1 report scope 0 transient group", v1r("ff10::1"), BadGroup},
		{"v1 done unicast group", msg(TypeV1Done, 0, u16(0), u16(0), u16(0), "2001:db8::1"), BadGroup},
		{"v1 done scope 0 group", msg(TypeV1Done, 0, u16(0), u16(0), u16(0), "ff30::8000:1"), BadGroup},
		{"v1 query unicast group", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "fe80::1"), BadGroup},
		{"v2 query unicast group", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "2001:db8::1", 2, 125, u16(0)), BadGroup},
		{"v2 query ::1 group", msg(TypeQuery, 0, u16(0), u16(1000), u16(0), "::1", 2, 125, u16(0)), BadGroup},
		{"v2 report record unicast group", fix(func() []byte { b := report3(); b[32] = 0x20; return b }()), BadGroup},
		{"v2 report record scope 0", fix(func() []byte { b := report3(); b[13] = 0x30; return b }()), BadGroup},
		{"v2 report record group ::", msg(TypeV2Report, 0, u16(0), u16(0), u16(1), ModeIsExclude, 0, u16(0), "::"), BadGroup},
	}
}

func TestParseRefusals(t *testing.T) {
	for _, tc := range refusalCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, r := Parse(testSrc, testDst, tc.b)
			if r != tc.want {
				t.Errorf("Parse = %v, want %v", r, tc.want)
			}
			if m != nil {
				t.Errorf("Parse returned a message with %v", r)
			}
		})
	}
}

// TestChecksumCoverage checks that the checksum covers the pseudo-header:
// a message valid for one pair of addresses fails for any other, and every
// bit of the message itself counts.
func TestChecksumCoverage(t *testing.T) {
	b := report3()
	if _, r := Parse(testSrc, testDst, b); r != OK {
		t.Fatalf("Parse = %v", r)
	}
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"other link-local source", mustAddr("fe80::5054:ff:fe12:3457"), testDst},
		{"unspecified source", netip.IPv6Unspecified(), testDst},
		{"zero Addr source", netip.Addr{}, testDst},
		{"IPv4 source", mustAddr("198.19.0.1"), testDst},
		{"all-nodes destination", testSrc, mustAddr("ff02::1")},
		{"group destination", testSrc, mustAddr("ff0e::1:1")},
		{"source and destination both changed", mustAddr("fe80::5054:ff:fe12:3457"), mustAddr("ff02::17")},
	} {
		if _, r := Parse(tc.src, tc.dst, b); r != BadChecksum {
			t.Errorf("%s: Parse = %v, want %v", tc.name, r, BadChecksum)
		}
		// And checksummed for those addresses, it is accepted with them.
		c := fixFor(tc.src, tc.dst, slices.Clone(b))
		if _, r := Parse(tc.src, tc.dst, c); r != OK {
			t.Errorf("%s: rechecksummed Parse = %v", tc.name, r)
		}
	}
	// The pseudo-header sum is commutative in src and dst: swapping them
	// gives the same checksum, as with TCP and UDP.
	if _, r := Parse(testDst, testSrc, b); r != OK {
		t.Errorf("swapped addresses: Parse = %v, want ok", r)
	}
	// Both encodings of one's complement zero in the checksum field verify.
	found := false
	for i := 0; i < 0x10000 && !found; i++ {
		c := msg(TypeV1Report, 0, u16(0), u16(i), u16(0), "ff0e::1")
		if binary.BigEndian.Uint16(c[2:]) == 0 {
			found = true
			c[2], c[3] = 0xff, 0xff
			if _, r := Parse(testSrc, testDst, c); r != OK {
				t.Errorf("checksum 0xffff for 0x0000: Parse = %v", r)
			}
		}
	}
	if !found {
		t.Error("no message with a zero checksum found")
	}
	// Every single-bit flip of every byte is caught (checksum field
	// included, since it changes the sum too).
	for i := range len(b) {
		for bit := range 8 {
			c := slices.Clone(b)
			c[i] ^= 1 << bit
			if m, r := Parse(testSrc, testDst, c); r == OK {
				t.Fatalf("flip of byte %d bit %d accepted: %x", i, bit, []byte(m))
			}
		}
	}
}

func TestSetChecksum(t *testing.T) {
	// Against the byte-at-a-time reference, for every length up to 90
	// bytes (odd ones included) and several address pairs.
	buf := make([]byte, 90)
	for i := range buf {
		buf[i] = byte(i*37 + 11)
	}
	for _, a := range [][2]netip.Addr{
		{testSrc, testDst},
		{netip.IPv6Unspecified(), mustAddr("ff02::16")},
		{mustAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), mustAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
	} {
		for n := 4; n < len(buf); n++ {
			b := slices.Clone(buf[:n])
			SetChecksum(a[0], a[1], b)
			want := fixFor(a[0], a[1], slices.Clone(buf[:n]))
			if !bytes.Equal(b, want) {
				t.Fatalf("%v %v, %d bytes: SetChecksum %x, want %x", a[0], a[1], n, b[2:4], want[2:4])
			}
			if !verifyChecksum(a[0], a[1], b) {
				t.Fatalf("%v %v, %d bytes: does not verify", a[0], a[1], n)
			}
		}
	}
}

// TestParseEveryPrefix cuts messages at every offset: each proper prefix is
// refused (with its checksum as sent, and again with a checksum fixed to
// match the prefix), and Parse never panics.
func TestParseEveryPrefix(t *testing.T) {
	for _, full := range [][]byte{report3(), report4(), queryV2SG()} {
		for i := range len(full) {
			want := Truncated
			if full[0] == TypeQuery && i > HeaderLen && i < QueryV2HeaderLen {
				want = BadLength
			}
			if full[0] == TypeQuery && i == HeaderLen {
				continue // a 24-byte prefix of a query is a v1 query
			}
			p := slices.Clone(full[:i])
			if _, r := Parse(testSrc, testDst, p); r != want {
				t.Errorf("%x...: prefix %d: Parse = %v, want %v", full[:4], i, r, want)
			}
			if _, r := Parse(testSrc, testDst, fix(p)); r != want {
				t.Errorf("%x...: prefix %d with its own checksum: Parse = %v, want %v", full[:4], i, r, want)
			}
		}
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := range NumReasons {
		s := r.String()
		if r != OK && !strings.HasPrefix(s, "mld_") {
			t.Errorf("Reason(%d).String() = %q, want an mld_ prefix", r, s)
		}
		if s == "" || seen[s] {
			t.Errorf("Reason(%d).String() = %q: empty or repeated", r, s)
		}
		seen[s] = true
	}
	for r, want := range map[Reason]string{
		OK: "ok", Truncated: "mld_truncated", BadLength: "mld_length", BadChecksum: "mld_checksum",
		UnknownType: "mld_type", BadGroup: "mld_group", NumReasons: "mld_unknown_reason", 200: "mld_unknown_reason",
	} {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", r, got, want)
		}
	}
}

// rfcDecodeCode is RFC 3810 section 5.1.3 written out bit by bit, in
// milliseconds.
func rfcDecodeCode(c uint16) int {
	if c < 32768 {
		return int(c)
	}
	exp := int(c>>12) & 7
	mant := int(c) & 0xfff
	v := mant | 0x1000
	for range exp + 3 {
		v *= 2
	}
	return v
}

// rfcDecodeQQIC is RFC 3810 section 5.1.9 written out bit by bit, in
// seconds.
func rfcDecodeQQIC(c uint8) int {
	if c < 128 {
		return int(c)
	}
	exp := int(c>>4) & 7
	mant := int(c) & 15
	v := mant | 0x10
	for range exp + 3 {
		v *= 2
	}
	return v
}

func TestMaxRespCode(t *testing.T) {
	for c := range 0x10000 {
		d := DecodeCode(uint16(c))
		if want := time.Duration(rfcDecodeCode(uint16(c))) * time.Millisecond; d != want {
			t.Fatalf("DecodeCode(%#x) = %v, want %v", c, d, want)
		}
		if back := EncodeCode(d); back != uint16(c) {
			t.Fatalf("EncodeCode(DecodeCode(%#x) = %v) = %#x", c, d, back)
		}
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		d    time.Duration
		code uint16
		back time.Duration
	}{
		{-time.Second, 0, 0},
		{math.MinInt64, 0, 0},
		{0, 0, 0},
		{999 * time.Microsecond, 0, 0},
		{ms, 1, ms},
		{1999 * time.Microsecond, 1, ms},
		{10 * time.Second, 10000, 10 * time.Second},
		{32767 * ms, 0x7fff, 32767 * ms},
		{32768 * ms, 0x8000, 32768 * ms},
		{32769 * ms, 0x8000, 32768 * ms},
		{32775 * ms, 0x8000, 32768 * ms},
		{32776 * ms, 0x8001, 32776 * ms}, // the float's step is 8 ms at exponent 0
		{65535 * ms, 0x8fff, 65528 * ms},
		{65536 * ms, 0x9000, 65536 * ms},
		{125 * time.Second, 0x9e84, 124992 * ms},
		{time.Hour, 0xeb77, 3599872 * ms},
		{8386560 * ms, 0xfffe, 8386560 * ms},
		{8387583 * ms, 0xfffe, 8386560 * ms},
		{8387584 * ms, 0xffff, 8387584 * ms},
		{8387585 * ms, 0xffff, 8387584 * ms},
		{24 * time.Hour, 0xffff, 8387584 * ms},
		{math.MaxInt64, 0xffff, 8387584 * ms},
	} {
		if got := EncodeCode(tc.d); got != tc.code {
			t.Errorf("EncodeCode(%v) = %#x, want %#x", tc.d, got, tc.code)
		}
		if got := DecodeCode(EncodeCode(tc.d)); got != tc.back {
			t.Errorf("DecodeCode(EncodeCode(%v)) = %v, want %v", tc.d, got, tc.back)
		}
	}
	// Every millisecond: exact below 32768; otherwise the largest
	// representable delay not above it, and monotonic.
	const top = 8387584
	prev := uint16(0)
	for v := 0; v <= top+10000; v++ {
		c := EncodeCode(time.Duration(v) * ms)
		r := rfcDecodeCode(c)
		switch {
		case v < 32768 && r != v:
			t.Fatalf("%d ms not exact: %d", v, r)
		case r > v && v <= top, v > top && r != top:
			t.Fatalf("%d ms encoded as %d", v, r)
		case c < prev:
			t.Fatalf("EncodeCode not monotonic at %d ms", v)
		case c < 0xffff && rfcDecodeCode(c+1) <= v:
			t.Fatalf("%d ms encoded as %d, but code %#x = %d fits", v, r, c+1, rfcDecodeCode(c+1))
		}
		prev = c
	}
}

func TestQQIC(t *testing.T) {
	for c := range 256 {
		d := DecodeQQIC(uint8(c))
		if want := time.Duration(rfcDecodeQQIC(uint8(c))) * time.Second; d != want {
			t.Errorf("DecodeQQIC(%#x) = %v, want %v", c, d, want)
		}
		if back := EncodeQQIC(d); back != uint8(c) {
			t.Errorf("EncodeQQIC(DecodeQQIC(%#x) = %v) = %#x", c, d, back)
		}
	}
	s := time.Second
	for _, tc := range []struct {
		d    time.Duration
		code uint8
		back time.Duration
	}{
		{-5 * s, 0, 0},
		{0, 0, 0},
		{999 * time.Millisecond, 0, 0},
		{s, 1, s},
		{125 * s, 125, 125 * s},
		{127 * s, 0x7f, 127 * s},
		{128 * s, 0x80, 128 * s},
		{129 * s, 0x80, 128 * s},
		{135 * s, 0x80, 128 * s},
		{136 * s, 0x81, 136 * s},
		{248 * s, 0x8f, 248 * s},
		{255 * s, 0x8f, 248 * s},
		{256 * s, 0x90, 256 * s},
		{16384 * s, 0xf0, 16384 * s},
		{31743 * s, 0xfe, 30720 * s},
		{31744 * s, 0xff, 31744 * s},
		{31745 * s, 0xff, 31744 * s},
		{24 * time.Hour, 0xff, 31744 * s},
		{math.MaxInt64, 0xff, 31744 * s},
	} {
		if got := EncodeQQIC(tc.d); got != tc.code {
			t.Errorf("EncodeQQIC(%v) = %#x, want %#x", tc.d, got, tc.code)
		}
		if got := DecodeQQIC(EncodeQQIC(tc.d)); got != tc.back {
			t.Errorf("DecodeQQIC(EncodeQQIC(%v)) = %v, want %v", tc.d, got, tc.back)
		}
	}
	prev := uint8(0)
	for v := 0; v <= 40000; v++ {
		c := EncodeQQIC(time.Duration(v) * s)
		r := rfcDecodeQQIC(c)
		switch {
		case v < 128 && r != v:
			t.Fatalf("%d s not exact: %d", v, r)
		case r > v && v <= 31744, v > 31744 && r != 31744:
			t.Fatalf("%d s encoded as %d", v, r)
		case c < prev:
			t.Fatalf("EncodeQQIC not monotonic at %d s", v)
		case c < 0xff && rfcDecodeQQIC(c+1) <= v:
			t.Fatalf("%d s encoded as %d, but code %#x = %d fits", v, r, c+1, rfcDecodeQQIC(c+1))
		}
		prev = c
	}
}

func TestPutQuery(t *testing.T) {
	srcs := []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2")}
	b := make([]byte, 128)
	for i := range b {
		b[i] = 0xaa // dirty buffer: reserved fields and the checksum must be cleared
	}
	n := PutQuery(b, mustAddr("ff3e::8000:2"), 10*time.Second, true, 2, 125*time.Second, srcs, false)
	if n != QueryLen(2) || n != 60 {
		t.Errorf("length %d, want %d", n, QueryLen(2))
	}
	if b[2] != 0 || b[3] != 0 {
		t.Errorf("checksum %x, want it left zero", b[2:4])
	}
	SetChecksum(testSrc, testDst, b[:n])
	if !bytes.Equal(b[:n], queryV2SG()) {
		t.Fatalf("PutQuery =\n%x, want\n%x", b[:n], queryV2SG())
	}
	n = PutQuery(b, netip.IPv6Unspecified(), 10*time.Second, false, 2, 125*time.Second, nil, true)
	want := wire(TypeQuery, 0, u16(0), u16(10000), u16(QuerierMark), "::", 2, 125, u16(0))
	if !bytes.Equal(b[:n], want) {
		t.Fatalf("marked PutQuery =\n%x, want\n%x", b[:n], want)
	}

	for _, tc := range []struct {
		name         string
		group        netip.Addr
		maxResp, qqi time.Duration
		sflag, mark  bool
		qrv          int
		wantResp     time.Duration
		wantQQI      time.Duration
		wantQRV      int
		wantGroup    string
		code         uint16
		qqic         uint8
	}{
		{"zero Addr is general", netip.Addr{}, time.Second, 125 * time.Second, false, false, 2, time.Second, 125 * time.Second, 2, "::", 1000, 125},
		{"marked", mustAddr("ff0e::1:1"), time.Second, 125 * time.Second, false, true, 2, time.Second, 125 * time.Second, 2, "ff0e::1:1", 1000, 125},
		{"32767 ms exact", netip.IPv6Unspecified(), 32767 * time.Millisecond, 127 * time.Second, false, false, 7, 32767 * time.Millisecond, 127 * time.Second, 7, "::", 0x7fff, 0x7f},
		{"32768 ms", netip.IPv6Unspecified(), 32768 * time.Millisecond, 128 * time.Second, false, false, 1, 32768 * time.Millisecond, 128 * time.Second, 1, "::", 0x8000, 0x80},
		{"rounded down", mustAddr("ff0e::1:1"), 32775 * time.Millisecond, 130 * time.Second, false, false, 2, 32768 * time.Millisecond, 128 * time.Second, 2, "ff0e::1:1", 0x8000, 0x80},
		{"largest codes", netip.IPv6Unspecified(), 8387584 * time.Millisecond, 31744 * time.Second, true, false, 2, 8387584 * time.Millisecond, 31744 * time.Second, 2, "::", 0xffff, 0xff},
		{"longest durations clamped", netip.IPv6Unspecified(), math.MaxInt64, math.MaxInt64, false, false, 2, 8387584 * time.Millisecond, 31744 * time.Second, 2, "::", 0xffff, 0xff},
		{"qrv 8 sent as 0", netip.IPv6Unspecified(), time.Second, time.Second, false, false, 8, time.Second, time.Second, 0, "::", 1000, 1},
		{"negative values", netip.IPv6Unspecified(), -time.Second, -time.Second, true, true, -1, 0, 0, 0, "::", 0, 0},
		{"sub-unit rounds to 0", netip.IPv6Unspecified(), 999 * time.Microsecond, 999 * time.Millisecond, true, false, 3, 0, 0, 3, "::", 0, 0},
		{"zoned group loses its zone", mustAddr("ff02::fb%eth0"), time.Second, time.Second, false, false, 2, time.Second, time.Second, 2, "ff02::fb", 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := PutQuery(b, tc.group, tc.maxResp, tc.sflag, tc.qrv, tc.qqi, nil, tc.mark)
			SetChecksum(testSrc, testDst, b[:n])
			m, r := Parse(testSrc, testDst, b[:n])
			if r != OK {
				t.Fatalf("Parse = %v", r)
			}
			if m.MaxRespCode() != tc.code || m[25] != tc.qqic {
				t.Errorf("codes %#x %#x, want %#x %#x", m.MaxRespCode(), m[25], tc.code, tc.qqic)
			}
			checkMessage(t, m, msgWant{typ: TypeQuery, version: 2, group: tc.wantGroup, code: tc.code,
				maxResp: tc.wantResp, marked: tc.mark, sflag: tc.sflag, qrv: tc.wantQRV, qqi: tc.wantQQI})
		})
	}
}

func TestPutQueryV1(t *testing.T) {
	b := make([]byte, 24)
	for _, tc := range []struct {
		group   netip.Addr
		maxResp time.Duration
		code    uint16
	}{
		{netip.IPv6Unspecified(), 10 * time.Second, 10000},
		{netip.Addr{}, 10 * time.Second, 10000},
		{mustAddr("ff0e::1:1"), time.Second, 1000},
		{mustAddr("ff0e::1:1"), 1500 * time.Microsecond, 1},
		{mustAddr("ff0e::1:1"), 0, 0},
		{mustAddr("ff0e::1:1"), -time.Second, 0},
		{mustAddr("ff0e::1:1"), 65535 * time.Millisecond, 65535},
		{mustAddr("ff0e::1:1"), time.Minute + 5535*time.Millisecond + time.Millisecond, 65535},
		{mustAddr("ff0e::1:1"), math.MaxInt64, 65535},
	} {
		for i := range b {
			b[i] = 0xaa
		}
		n := PutQueryV1(b, tc.group, tc.maxResp)
		g := "::"
		if tc.group.IsValid() {
			g = tc.group.String()
		}
		if want := wire(TypeQuery, 0, u16(0), u16(tc.code), u16(0), g); n != 24 || !bytes.Equal(b[:n], want) {
			t.Errorf("PutQueryV1(%v, %v) = %x, want %x", tc.group, tc.maxResp, b[:n], want)
		}
		SetChecksum(testSrc, testDst, b[:n])
		if m, r := Parse(testSrc, testDst, b[:n]); r != OK || m.Version() != 1 ||
			m.MaxResp() != time.Duration(tc.code)*time.Millisecond || m.Marked() {
			t.Errorf("PutQueryV1(%v, %v): Parse %v, version %d, MaxResp %v", tc.group, tc.maxResp, r, m.Version(), m.MaxResp())
		}
	}
}

func TestPutReports(t *testing.T) {
	b := make([]byte, 256)
	for _, typ := range []uint8{TypeV1Report, TypeV1Done} {
		for i := range b {
			b[i] = 0x55 // PutReportV1 must clear the fields it does not set
		}
		n := PutReportV1(b, typ, mustAddr("ff05::1:3"))
		if want := wire(int(typ), 0, u16(0), u16(0), u16(0), "ff05::1:3"); n != 24 || !bytes.Equal(b[:n], want) {
			t.Errorf("PutReportV1(%d) = %x, want %x", typ, b[:n], want)
		}
		SetChecksum(testSrc, testDst, b[:n])
		checkParsed(t, b[:n], msgWant{typ: int(typ), version: 1, group: "ff05::1:3"})
	}

	specs := report3Specs()
	if got := ReportLen(specs...); got != len(report3()) {
		t.Errorf("ReportLen = %d, want %d", got, len(report3()))
	}
	for i, s := range specs {
		if want := []int{20, 56, 44}[i]; s.Len() != want {
			t.Errorf("record %d: Len %d, want %d", i, s.Len(), want)
		}
	}
	for i := range b {
		b[i] = 0xaa // dirty buffer: reserved fields must be cleared
	}
	n := PutReport(b, specs...)
	if b[2] != 0 || b[3] != 0 {
		t.Errorf("checksum %x, want it left zero", b[2:4])
	}
	SetChecksum(testSrc, testDst, b[:n])
	if !bytes.Equal(b[:n], report3()) {
		t.Errorf("PutReport =\n%x, want\n%x", b[:n], report3())
	}
	n = PutReport(b)
	if !bytes.Equal(b[:n], wire(TypeV2Report, 0, u16(0), u16(0), u16(0))) || ReportLen() != 8 {
		t.Errorf("empty PutReport = %x", b[:n])
	}
}

// checkParsed parses b (checksummed for testSrc and testDst) and checks the
// accessors.
func checkParsed(t *testing.T, b []byte, w msgWant) {
	t.Helper()
	m, r := Parse(testSrc, testDst, b)
	if r != OK {
		t.Fatalf("Parse(%x) = %v", b, r)
	}
	checkMessage(t, m, w)
}

func TestBuilderPanics(t *testing.T) {
	long := make([]byte, 64)
	for name, f := range map[string]func(){
		"query short buffer": func() {
			PutQuery(make([]byte, 43), netip.Addr{}, 0, false, 2, 0, []netip.Addr{mustAddr("2001:db8::1")}, false)
		},
		"query short buffer, long capacity": func() { PutQuery(long[:27], netip.Addr{}, 0, false, 2, 0, nil, false) },
		"query IPv4 group":                  func() { PutQuery(long, mustAddr("239.1.1.1"), 0, false, 2, 0, nil, false) },
		"query IPv4 source": func() {
			PutQuery(long, netip.Addr{}, 0, false, 2, 0, []netip.Addr{mustAddr("198.19.0.1")}, false)
		},
		"query v1 short buffer":                 func() { PutQueryV1(make([]byte, 23), netip.Addr{}, time.Second) },
		"query v1 short buffer, long capacity":  func() { PutQueryV1(long[:23], netip.Addr{}, time.Second) },
		"query v1 IPv4 group":                   func() { PutQueryV1(long, mustAddr("224.0.0.1"), time.Second) },
		"report v1 short buffer":                func() { PutReportV1(make([]byte, 23), TypeV1Report, mustAddr("ff0e::1")) },
		"report v1 short buffer, long capacity": func() { PutReportV1(long[:23], TypeV1Report, mustAddr("ff0e::1")) },
		"report v1 IPv4 group":                  func() { PutReportV1(long, TypeV1Report, mustAddr("239.1.1.1")) },
		"report v2 short buffer":                func() { PutReport(make([]byte, 127), report3Specs()...) },
		"report v2 short buffer, long capacity": func() { PutReport(make([]byte, 127, 256), report3Specs()...) },
		"report v2 IPv4 group":                  func() { PutReport(long, RecordSpec{Type: 1, Group: mustAddr("239.1.1.1")}) },
		"report v2 IPv4 source": func() {
			PutReport(long, RecordSpec{Type: 1, Group: mustAddr("ff0e::1"), Sources: []netip.Addr{mustAddr("198.19.0.1")}})
		},
		"query 65536 sources": func() {
			PutQuery(make([]byte, QueryLen(1<<16)), netip.Addr{}, 0, false, 2, 0, make([]netip.Addr, 1<<16), false)
		},
		"report v2 65536 records": func() { PutReport(make([]byte, 1<<21), make([]RecordSpec, 1<<16)...) },
		"report v2 65536 sources": func() {
			PutReport(make([]byte, 1<<21), RecordSpec{Type: 1, Group: mustAddr("ff0e::1"), Sources: make([]netip.Addr, 1<<16)})
		},
		"report v2 aux 3 bytes": func() { PutReport(long, RecordSpec{Type: 1, Group: mustAddr("ff0e::1"), Aux: []byte{1, 2, 3}}) },
		"report v2 aux 1024 bytes": func() {
			PutReport(make([]byte, 2048), RecordSpec{Type: 1, Group: mustAddr("ff0e::1"), Aux: make([]byte, 1024)})
		},
		"SetChecksum of 3 bytes":                 func() { SetChecksum(testSrc, testDst, make([]byte, 3)) },
		"Source of a message Parse did not take": func() { Message(wire(TypeQuery, 0, u16(0), u16(0), u16(0), "::", 0, 0, u16(1))).Source(0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	// 1020 bytes of aux data is the most a record can carry.
	b := make([]byte, 2048)
	n := PutReport(b, RecordSpec{Type: 1, Group: mustAddr("ff0e::1"), Aux: make([]byte, 1020)})
	SetChecksum(testSrc, testDst, b[:n])
	m, r := Parse(testSrc, testDst, b[:n])
	if r != OK {
		t.Fatalf("Parse = %v", r)
	}
	rec, _ := func() (Record, bool) { it := m.Records(); return it.Next() }()
	if rec.AuxLen() != 1020 {
		t.Errorf("AuxLen = %d, want 1020", rec.AuxLen())
	}
	// An IPv4-mapped IPv6 address is an IPv6 address: written as is, and
	// refused by Parse as a group (it is not multicast).
	n = PutReportV1(b, TypeV1Report, mustAddr("::ffff:239.1.1.1"))
	SetChecksum(testSrc, testDst, b[:n])
	if _, r := Parse(testSrc, testDst, b[:n]); r != BadGroup {
		t.Errorf("IPv4-mapped group: Parse = %v, want %v", r, BadGroup)
	}
}

// iterate walks every record and source of m and returns how many sources it
// saw, so the compiler keeps the work.
func iterate(m Message) int {
	n := 0
	for it := m.Records(); ; {
		rec, ok := it.Next()
		if !ok {
			break
		}
		if !rec.Known() {
			continue
		}
		if rec.Group().IsMulticast() {
			n++
		}
		for i := range rec.NumSources() {
			if rec.Source(i).IsValid() {
				n++
			}
		}
		n += len(rec.Aux())
	}
	for i := range m.NumSources() {
		if m.Source(i).IsValid() {
			n++
		}
	}
	return n
}

func TestAllocs(t *testing.T) {
	v1 := msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1")
	v2 := report3()
	q := queryV2SG()
	buf := make([]byte, 256)
	srcs := []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2")}
	specs := report3Specs()
	group := mustAddr("ff0e::1:1")
	var sink int
	for name, f := range map[string]func(){
		"Parse v1": func() {
			m, _ := Parse(testSrc, testDst, v1)
			sink += int(m.Type()) + int(m.Group().As16()[15])
		},
		"Parse v2 report and iterate": func() {
			m, _ := Parse(testSrc, testDst, v2)
			sink += iterate(m)
		},
		"Parse v2 query and read": func() {
			m, _ := Parse(testSrc, testDst, q)
			sink += iterate(m) + int(m.MaxResp()+m.QQI()) + m.QRV() + int(m.Group().As16()[15])
			if m.Marked() || m.SFlag() {
				sink++
			}
		},
		"PutQuery": func() {
			sink += PutQuery(buf, group, 10*time.Second, false, 2, 125*time.Second, srcs, true)
		},
		"PutQueryV1":  func() { sink += PutQueryV1(buf, group, time.Second) },
		"PutReportV1": func() { sink += PutReportV1(buf, TypeV1Done, group) },
		"PutReport":   func() { sink += PutReport(buf, specs...) },
		"SetChecksum": func() { SetChecksum(testSrc, testDst, v2); sink += int(v2[2]) },
		"codes": func() {
			sink += int(EncodeCode(time.Hour)) + int(EncodeQQIC(time.Hour)) + int(DecodeCode(0xffff)+DecodeQQIC(0xff))
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	_ = sink
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		msg  []byte
	}{
		{"v1report", msg(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1")},
		{"v2report4", report4()},
		{"v2querySG", queryV2SG()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			pkts, n := 0, 0
			for b.Loop() {
				m, r := Parse(testSrc, testDst, bc.msg)
				if r != OK {
					b.Fatal(r)
				}
				n += iterate(m)
				pkts++
			}
			b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
