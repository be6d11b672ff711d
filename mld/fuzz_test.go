package mld

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// realFrames are frames as they come off a link: those of frameCases, and
// frames that gopacket and BuildFrame serialized. They seed the fuzz tests.
func realFrames(tb testing.TB) [][]byte {
	var fs [][]byte
	for _, tc := range frameCases() {
		fs = append(fs, tc.f)
	}
	src, ip := mustAddr(ll), func(s string) net.IP { return net.IP(mustAddr(s).AsSlice()) }
	fs = append(fs,
		gopacketFrame(tb, src, mustAddr(all), 1, true, nil, TypeQuery, &layers.MLDv2MulticastListenerQueryMessage{
			MaximumResponseCode: 10000, MulticastAddress: net.IPv6zero, QueriersRobustnessVariable: 2, QueriersQueryIntervalCode: 125}),
		gopacketFrame(tb, src, mustAddr("ff3e::8000:1"), 1, true, nil, TypeQuery, &layers.MLDv2MulticastListenerQueryMessage{
			MaximumResponseCode: 0x8123, MulticastAddress: ip("ff3e::8000:1"), SuppressRoutersideProcessing: true,
			QueriersRobustnessVariable: 7, QueriersQueryIntervalCode: 0x9a, SourceAddresses: []net.IP{ip("2001:db8::1")}}),
		gopacketFrame(tb, src, mustAddr(all), 1, true, nil, TypeQuery, &layers.MLDv1MulticastListenerQueryMessage{
			MLDv1Message: layers.MLDv1Message{MaximumResponseDelay: 10 * time.Second, MulticastAddress: net.IPv6zero}}),
		gopacketFrame(tb, src, mustAddr("ff05::1:3"), 1, false, []gopacket.SerializableLayer{destOpts(layers.IPProtocolICMPv6)},
			TypeV1Report, &layers.MLDv1MulticastListenerReportMessage{MLDv1Message: layers.MLDv1Message{MulticastAddress: ip("ff05::1:3")}}),
		gopacketFrame(tb, src, mustAddr("ff02::2"), 1, true, nil,
			TypeV1Done, &layers.MLDv1MulticastListenerDoneMessage{MLDv1Message: layers.MLDv1Message{MulticastAddress: ip("ff05::1:3")}}),
		gopacketFrame(tb, src, mustAddr(mld2), 1, true, nil, TypeV2Report, &layers.MLDv2MulticastListenerReportMessage{
			MulticastAddressRecords: []layers.MLDv2MulticastAddressRecord{
				{RecordType: ChangeToExclude, MulticastAddress: ip("ff0e::1:1")},
				{RecordType: AllowNewSources, MulticastAddress: ip("ff3e::8000:1"), SourceAddresses: []net.IP{ip("2001:db8::1")},
					AuxiliaryData: []byte{1, 2, 3, 4}},
			}}),
	)
	buf := make([]byte, 512)
	for _, m := range [][]byte{report3(), report4(), queryV2SG()} {
		n := BuildFrame(buf, testMAC, src, mustAddr(mld2), m)
		fs = append(fs, slices.Clone(buf[:n]))
	}
	return fs
}

// addrOf makes a fuzz-chosen address: none for no bytes, IPv4 for up to 4,
// IPv6 otherwise (zero-padded to 16 bytes).
func addrOf(b []byte) netip.Addr {
	switch {
	case len(b) == 0:
		return netip.Addr{}
	case len(b) <= 4:
		var a [4]byte
		copy(a[:], b)
		return netip.AddrFrom4(a)
	}
	var a [16]byte
	copy(a[:], b)
	return netip.AddrFrom16(a)
}

// FuzzParse checks invariants of accepted messages, not only the absence of
// panics: the view is the input itself; its checksum verifies over the
// pseudo-header and fails for any other source; every record and source
// lies inside it; rebuilding it with this package's builders gives the same
// bytes; gopacket decodes the same fields.
func FuzzParse(f *testing.F) {
	s, d := testSrc.As16(), testDst.As16()
	for _, tc := range validCases() {
		f.Add(s[:], d[:], tc.b)
	}
	for _, tc := range refusalCases() {
		f.Add(s[:], d[:], tc.b)
	}
	for _, fr := range realFrames(f) {
		if p, r := FromFrame(fr); r == IsMLD {
			ps, pd := p.Src.As16(), p.Dst.As16()
			f.Add(ps[:], pd[:], p.MLD)
		}
	}
	f.Add([]byte{}, []byte{198, 19, 0, 1}, report3())
	f.Fuzz(func(t *testing.T, srcB, dstB, data []byte) {
		src, dst := addrOf(srcB), addrOf(dstB)
		checkParse(t, src, dst, data)
		// Most mutations break the checksum; fixing it lets them reach
		// the structure checks and the invariants of accepted messages.
		if len(data) >= 4 {
			checkParse(t, src, dst, fixFor(src, dst, slices.Clone(data)))
		}
	})
}

func checkParse(t *testing.T, src, dst netip.Addr, data []byte) {
	t.Helper()
	m, r := Parse(src, dst, data)
	if r != OK {
		if m != nil {
			t.Fatalf("refused with %v but returned a message", r)
		}
		if r >= NumReasons {
			t.Fatalf("Parse returned reason %d", r)
		}
		return
	}
	if len(m) != len(data) || &m[0] != &data[0] {
		t.Fatal("accepted message is not a view of the whole input")
	}
	if refChecksum(src, dst, data) != 0 {
		t.Fatalf("accepted message %x whose checksum does not verify", data)
	}
	// The pseudo-header counts: any one bit of the source changed, the
	// same bytes are refused.
	s16 := src.As16()
	s16[len(data)%16] ^= 1 << (len(data) % 8)
	if _, r := Parse(netip.AddrFrom16(s16), dst, data); r != BadChecksum {
		t.Fatalf("accepted from %v and, with %v, from %v", src, r, netip.AddrFrom16(s16))
	}
	// Every accessor is safe on every accepted message.
	_, _, _, _ = m.Group(), m.MaxResp(), m.QQI(), m.MaxRespCode()
	_, _, _ = m.SFlag(), m.QRV(), m.Marked()
	if v := m.Version(); v < 1 || v > 2 {
		t.Fatalf("Version %d", v)
	}
	switch m.Type() {
	case TypeQuery:
		checkQueryInvariants(t, src, dst, m)
	case TypeV1Report, TypeV1Done:
		g := m.Group()
		if g.As16()[0] != 0xff || g.As16()[1]&0x0f == 0 || m.Version() != 1 {
			t.Fatalf("accepted v1 message for %v", g)
		}
		if m.NumSources() != 0 || m.NumRecords() != 0 || m.MaxResp() != 0 || m.Marked() {
			t.Fatal("v1 report with query or v2 fields")
		}
		b := make([]byte, HeaderLen)
		PutReportV1(b, m.Type(), g)
		SetChecksum(src, dst, b)
		canonical := len(m) == HeaderLen && m[1] == 0 && bytes.Equal(m[4:8], []byte{0, 0, 0, 0})
		if canonical && !sameMessage(b, data) || !bytes.Equal(b[8:], m[8:HeaderLen]) {
			t.Fatalf("rebuilt %x, got %x", b, data)
		}
	case TypeV2Report:
		checkReportInvariants(t, src, dst, m)
	default:
		t.Fatalf("accepted type %d", m.Type())
	}
	if d := gopacketAgrees(m); d != "" {
		t.Fatalf("gopacket disagrees on %x: %s", data, d)
	}
}

// sameMessage reports whether a and b are the same message: equal bytes,
// except that the checksum fields may hold either of one's complement's two
// zeros (0x0000 and 0xffff), as long as both verify for the same
// addresses. A sender may put 0xffff where this package computes 0x0000.
func sameMessage(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 4 {
		return bytes.Equal(a, b)
	}
	if bytes.Equal(a, b) {
		return true
	}
	ca, cb := binary.BigEndian.Uint16(a[2:]), binary.BigEndian.Uint16(b[2:])
	return bytes.Equal(a[:2], b[:2]) && bytes.Equal(a[4:], b[4:]) && (ca == 0 && cb == 0xffff || ca == 0xffff && cb == 0)
}

func checkQueryInvariants(t *testing.T, src, dst netip.Addr, m Message) {
	t.Helper()
	g := m.Group()
	if g.As16()[0] != 0xff && g != netip.IPv6Unspecified() {
		t.Fatalf("accepted query for %v", g)
	}
	if m.Marked() != (binary.BigEndian.Uint16(m[6:]) == QuerierMark) {
		t.Fatal("Marked disagrees with the Reserved field")
	}
	if len(m) == HeaderLen {
		if m.Version() != 1 || m.NumSources() != 0 || m.SFlag() || m.QRV() != 0 || m.QQI() != 0 {
			t.Fatal("v1 query with v2 fields")
		}
		if m.MaxResp() != time.Duration(binary.BigEndian.Uint16(m[4:]))*time.Millisecond {
			t.Fatalf("v1 query MaxResp %v for %x", m.MaxResp(), m[4:6])
		}
		b := make([]byte, HeaderLen)
		PutQueryV1(b, g, m.MaxResp())
		copy(b[6:8], m[6:8]) // the Reserved field: PutQueryV1 leaves it zero
		SetChecksum(src, dst, b)
		if m[1] == 0 && !sameMessage(b, m) || !bytes.Equal(b[4:], m[4:]) {
			t.Fatalf("rebuilt %x, got %x", b, []byte(m))
		}
		return
	}
	if m.Version() != 2 || len(m) < QueryV2HeaderLen {
		t.Fatalf("query of %d bytes: version %d", len(m), m.Version())
	}
	n := m.NumSources()
	if QueryLen(n) > len(m) {
		t.Fatalf("%d sources do not fit in %d bytes", n, len(m))
	}
	srcs := make([]netip.Addr, n)
	for i := range n {
		srcs[i] = m.Source(i)
		if srcs[i] != netip.AddrFrom16([16]byte(m[28+16*i:])) {
			t.Fatalf("source %d", i)
		}
	}
	// A canonical query (reserved bits and fields clear or marked, no
	// additional data) is rebuilt bit for bit: the codes round-trip
	// exactly.
	b := make([]byte, QueryLen(n))
	PutQuery(b, g, m.MaxResp(), m.SFlag(), m.QRV(), m.QQI(), srcs, m.Marked())
	SetChecksum(src, dst, b)
	if !bytes.Equal(b[4:6], m[4:6]) || b[25] != m[25] {
		t.Fatalf("codes %x %#x rebuilt as %x %#x", m[4:6], m[25], b[4:6], b[25])
	}
	reservedOK := m.Marked() || m[6] == 0 && m[7] == 0
	if m[1] == 0 && reservedOK && m[24]&0xf0 == 0 && len(m) == QueryLen(n) && !sameMessage(b, m) {
		t.Fatalf("rebuilt %x, got %x", b, []byte(m))
	}
	if !bytes.Equal(b[8:24], m[8:24]) || b[24] != m[24]&0x0f || !bytes.Equal(b[26:], m[26:QueryLen(n)]) {
		t.Fatalf("rebuilt %x, got %x", b, []byte(m))
	}
}

func checkReportInvariants(t *testing.T, src, dst netip.Addr, m Message) {
	t.Helper()
	if m.Group().IsValid() || m.NumSources() != 0 || m.MaxResp() != 0 || m.Marked() || m.Version() != 2 {
		t.Fatal("v2 report with query or v1 fields")
	}
	off := ReportHeaderLen
	var specs []RecordSpec
	for it := m.Records(); ; {
		rec, ok := it.Next()
		if !ok {
			break
		}
		if len(rec) < RecordHeaderLen || off+len(rec) > len(m) || &rec[0] != &m[off] || cap(rec) != len(rec) {
			t.Fatalf("record %d at %d (%d bytes) is not inside the %d-byte message", len(specs), off, len(rec), len(m))
		}
		if g := rec.Group(); g.As16()[0] != 0xff || g.As16()[1]&0x0f == 0 {
			t.Fatalf("accepted record for %v", g)
		}
		s := RecordSpec{Type: rec.Type(), Group: rec.Group(), Aux: rec.Aux()}
		for i := range rec.NumSources() {
			s.Sources = append(s.Sources, rec.Source(i))
		}
		if len(rec) != s.Len() || rec.AuxLen() != len(s.Aux) || rec.AuxLen()%4 != 0 {
			t.Fatalf("record length %d, parts add up to %d", len(rec), s.Len())
		}
		if rec.Known() != (rec.Type() >= 1 && rec.Type() <= 6) {
			t.Fatalf("record type %d Known %v", rec.Type(), rec.Known())
		}
		specs = append(specs, s)
		off += len(rec)
	}
	if len(specs) != m.NumRecords() {
		t.Fatalf("iterated %d records, NumRecords %d", len(specs), m.NumRecords())
	}

	// Rebuild: the records come out the same. The reserved fields and any
	// additional data are not rebuilt, so the whole message (checksum
	// included) is identical only when it is canonical.
	b := make([]byte, ReportLen(specs...))
	n := PutReport(b, specs...)
	if n != off {
		t.Fatalf("rebuilt %d bytes, records end at %d", n, off)
	}
	SetChecksum(src, dst, b)
	if b[0] != m[0] || !bytes.Equal(b[6:n], m[6:off]) {
		t.Fatalf("rebuilt\n%x, got\n%x", b, []byte(m))
	}
	canonical := m[1] == 0 && m[4] == 0 && m[5] == 0 && off == len(m)
	if canonical && !sameMessage(b, m) {
		t.Fatalf("canonical report rebuilt as\n%x, got\n%x", b, []byte(m))
	}
	if _, r := Parse(src, dst, b); r != OK {
		t.Fatalf("rebuilt report refused: %v", r)
	}
}

// FuzzFromFrame checks that FromFrame and IPv6Multicast never panic, that
// FromFrame agrees with a plain reference walker, that what it returns is a
// view inside the frame's IPv6 payload, and that a frame rebuilt with
// BuildFrame from what FromFrame found yields the same again.
func FuzzFromFrame(f *testing.F) {
	for _, fr := range realFrames(f) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkFrame(t, frame)
		// Fix the payload length so that mutations reach the extension
		// header walk.
		if len(frame) >= 54 && len(frame)-54 <= 0xffff {
			c := slices.Clone(frame)
			setPayloadLen(c, len(c)-54)
			checkFrame(t, c)
		}
	})
}

func checkFrame(t *testing.T, frame []byte) {
	t.Helper()
	msrc, mdst, mok := IPv6Multicast(frame)
	if mok && (!mdst.Is6() || mdst.As16()[0] != 0xff || !msrc.Is6()) {
		t.Fatalf("IPv6Multicast: %v %v", msrc, mdst)
	}
	p, r := FromFrame(frame)
	rp, rr := refFromFrame(frame)
	if r != rr || p.Src != rp.Src || p.Dst != rp.Dst || p.HopLimit != rp.HopLimit || p.RouterAlert != rp.RouterAlert ||
		len(p.MLD) != len(rp.MLD) || cap(p.MLD) != cap(rp.MLD) || len(p.MLD) > 0 && &p.MLD[0] != &rp.MLD[0] {
		t.Fatalf("FromFrame = %+v %v, reference %+v %v", p, r, rp, rr)
	}
	if r > Malformed {
		t.Fatalf("FromFrame returned %d", r)
	}
	if r != IsMLD {
		if p.MLD != nil || p.Src.IsValid() || p.Dst.IsValid() || p.HopLimit != 0 || p.RouterAlert {
			t.Fatalf("%v frame returned %+v", r, p)
		}
		return
	}
	if binary.BigEndian.Uint16(frame[12:]) != EtherTypeIPv6 || frame[14]>>4 != 6 {
		t.Fatal("accepted a frame that is not IPv6")
	}
	end := 54 + int(binary.BigEndian.Uint16(frame[18:]))
	if end > len(frame) || len(p.MLD) == 0 || cap(p.MLD) != len(p.MLD) || &p.MLD[len(p.MLD)-1] != &frame[end-1] ||
		len(p.MLD) > end-54-8 && p.RouterAlert {
		t.Fatal("MLD bytes are not a view at the end of the IPv6 payload")
	}
	switch p.MLD[0] {
	case TypeQuery, TypeV1Report, TypeV1Done, TypeV2Report:
	default:
		t.Fatalf("ICMPv6 type %d is not MLD", p.MLD[0])
	}
	if p.Src != netip.AddrFrom16([16]byte(frame[22:38])) || p.Dst != netip.AddrFrom16([16]byte(frame[38:54])) || p.HopLimit != frame[21] {
		t.Fatal("addresses or hop limit are not the header's")
	}
	dstMulticast := p.Dst.As16()[0] == 0xff // not IsMulticast, which holds for ::ffff:224.0.0.0/100 too
	if dstMulticast != mok || mok && (msrc != p.Src || mdst != p.Dst) {
		t.Fatalf("IPv6Multicast %v %v %v disagrees with FromFrame %+v", msrc, mdst, mok, p)
	}
	m, pr := Parse(p.Src, p.Dst, p.MLD)
	if pr == OK && len(m) != len(p.MLD) {
		t.Fatal("Parse changed the length")
	}

	if !dstMulticast || len(p.MLD) < 4 || len(p.MLD)+8 > 0xffff {
		return
	}
	buf := make([]byte, FrameOverhead+len(p.MLD))
	n := BuildFrame(buf, net.HardwareAddr(slices.Clone(frame[6:12])), p.Src, p.Dst, p.MLD)
	p2, r2 := FromFrame(buf[:n])
	if r2 != IsMLD || p2.Src != p.Src || p2.Dst != p.Dst || p2.HopLimit != 1 || !p2.RouterAlert ||
		!bytes.Equal(p2.MLD[4:], p.MLD[4:]) || !bytes.Equal(p2.MLD[:2], p.MLD[:2]) {
		t.Fatalf("rebuilt frame read back as %+v %v", p2, r2)
	}
	if pr == OK && !sameMessage(p2.MLD, p.MLD) {
		t.Fatalf("rebuilt message %x, was %x", p2.MLD, p.MLD)
	}
	if _, pr2 := Parse(p2.Src, p2.Dst, p2.MLD); pr == OK && pr2 != OK || pr != OK && pr != BadChecksum && pr2 != pr {
		t.Fatalf("rebuilt message parses as %v, was %v", pr2, pr)
	}
}

// refFromFrame is FromFrame written out plainly: the headers collected
// first, then judged. It is the oracle that keeps FromFrame's behaviour.
func refFromFrame(frame []byte) (Packet, FrameReason) {
	if len(frame) < 14 || frame[12] != 0x86 || frame[13] != 0xdd {
		return Packet{}, NotMLD
	}
	if len(frame) >= 15 && frame[14]&0xf0 != 0x60 {
		return Packet{}, NotMLD
	}
	if len(frame) < 54 {
		return Packet{}, Malformed
	}
	payload := frame[54:]
	plen := int(frame[18])<<8 | int(frame[19])
	if plen > len(payload) {
		return Packet{}, Malformed
	}
	payload = payload[:plen:plen]
	next := frame[20]
	ra := false
	for i := 0; ; i++ {
		if next == 58 {
			if len(payload) == 0 || payload[0] != 130 && payload[0] != 131 && payload[0] != 132 && payload[0] != 143 {
				return Packet{}, NotMLD
			}
			return Packet{
				Src:         netip.AddrFrom16([16]byte(frame[22:38])),
				Dst:         netip.AddrFrom16([16]byte(frame[38:54])),
				HopLimit:    frame[21],
				RouterAlert: ra,
				MLD:         payload,
			}, IsMLD
		}
		if next != 0 && next != 43 && next != 60 {
			return Packet{}, NotMLD
		}
		if i >= 8 || next == 0 && i > 0 || len(payload) < 2 || len(payload) < 8+8*int(payload[1]) {
			return Packet{}, Malformed
		}
		hdr := payload[:8+8*int(payload[1])]
		if next == 0 {
			for o := hdr[2:]; len(o) > 0; {
				if o[0] == 0 {
					o = o[1:]
					continue
				}
				if len(o) < 2 || len(o) < 2+int(o[1]) {
					return Packet{}, Malformed
				}
				if bytes.Equal(o[:min(len(o), 4)], []byte{5, 2, 0, 0}) {
					ra = true
				}
				o = o[2+int(o[1]):]
			}
		}
		next = hdr[0]
		payload = payload[len(hdr):]
	}
}

// reader hands out fuzz bytes as fields, and zeros once they run out.
type reader struct{ b []byte }

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bool() bool { return r.byte()&1 != 0 }

func (r *reader) u64() uint64 {
	var v uint64
	for range 8 {
		v = v<<8 | uint64(r.byte())
	}
	return v
}

func (r *reader) addr() netip.Addr {
	var a [16]byte
	for i := range a {
		a[i] = r.byte()
	}
	return netip.AddrFrom16(a)
}

// duration is a fuzz-chosen duration, often in the ranges that matter.
func (r *reader) duration() time.Duration {
	v := int64(r.u64())
	switch r.byte() % 4 {
	case 0:
		return time.Duration(v % int64(3*time.Hour))
	case 1:
		return time.Duration(v%40000) * time.Second
	case 2:
		return time.Duration(v%70000) * time.Millisecond
	}
	return time.Duration(v)
}

// group is a fuzz-chosen address that is usually multicast.
func (r *reader) group() netip.Addr {
	a := r.addr().As16()
	switch r.byte() % 4 {
	case 0, 1:
		a[0] = 0xff
	case 2:
		a = [16]byte{}
	}
	return netip.AddrFrom16(a)
}

// FuzzRoundTrip builds messages of fuzz-chosen fields with the Put
// functions, frames them with BuildFrame, and checks that FromFrame and
// Parse read back the same fields, or refuse the group for BadGroup exactly
// when it cannot name one.
func FuzzRoundTrip(f *testing.F) {
	for _, fr := range realFrames(f) {
		if len(fr) > 14 {
			for kind := range uint8(4) {
				f.Add(kind, fr[14:])
			}
		}
	}
	f.Add(uint8(3), []byte{})
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		r := &reader{data}
		src := r.addr()
		dstA := r.addr().As16()
		dstA[0] = 0xff
		dst := netip.AddrFrom16(dstA)
		b := make([]byte, 4096)
		var n int
		var want msgWant
		var wantRecs []RecordSpec
		validGroup := true
		// Not netip's IsMulticast: it also holds for IPv4-mapped
		// multicast addresses, which MLD does not take for groups.
		isMulticast := func(g netip.Addr) bool { return g.As16()[0] == 0xff }
		isGroup := func(g netip.Addr) bool { return isMulticast(g) && g.As16()[1]&0x0f != 0 }
		switch kind % 4 {
		case 0:
			group, resp, qqi := r.group(), r.duration(), r.duration()
			sflag, qrv, mark := r.bool(), int(int8(r.byte())), r.bool()
			srcs := make([]netip.Addr, r.byte()%8)
			for i := range srcs {
				srcs[i] = r.addr()
			}
			n = PutQuery(b, group, resp, sflag, qrv, qqi, srcs, mark)
			code, qqic := EncodeCode(resp), EncodeQQIC(qqi)
			// Rounded down: never more than asked, and the next code up
			// would be more.
			if DecodeCode(code) > max(resp, 0) || code < 0xffff && DecodeCode(code+1) <= resp {
				t.Fatalf("EncodeCode(%v) = %#x", resp, code)
			}
			if DecodeQQIC(qqic) > max(qqi, 0) || qqic < 0xff && DecodeQQIC(qqic+1) <= qqi {
				t.Fatalf("EncodeQQIC(%v) = %#x", qqi, qqic)
			}
			wantQRV := qrv
			if qrv < 1 || qrv > 7 {
				wantQRV = 0
			}
			want = msgWant{typ: TypeQuery, version: 2, group: group.String(), code: code, maxResp: DecodeCode(code),
				marked: mark, sflag: sflag, qrv: wantQRV, qqi: DecodeQQIC(qqic)}
			for _, s := range srcs {
				want.sources = append(want.sources, s.String())
			}
			validGroup = isMulticast(group) || group == netip.IPv6Unspecified()
		case 1:
			group, resp := r.group(), r.duration()
			n = PutQueryV1(b, group, resp)
			ms := uint16(min(max(resp, 0)/time.Millisecond, 0xffff))
			want = msgWant{typ: TypeQuery, version: 1, group: group.String(), code: ms, maxResp: time.Duration(ms) * time.Millisecond}
			validGroup = isMulticast(group) || group == netip.IPv6Unspecified()
		case 2:
			typ := uint8(TypeV1Report)
			if r.bool() {
				typ = TypeV1Done
			}
			group := r.group()
			n = PutReportV1(b, typ, group)
			want = msgWant{typ: int(typ), version: 1, group: group.String()}
			validGroup = isGroup(group)
		case 3:
			wantRecs = make([]RecordSpec, r.byte()%6)
			for i := range wantRecs {
				s := RecordSpec{Type: r.byte(), Group: r.group()}
				s.Sources = make([]netip.Addr, r.byte()%5)
				for j := range s.Sources {
					s.Sources[j] = r.addr()
				}
				s.Aux = make([]byte, 4*int(r.byte()%4))
				for j := range s.Aux {
					s.Aux[j] = r.byte()
				}
				validGroup = validGroup && isGroup(s.Group)
				wantRecs[i] = s
			}
			n = PutReport(b, wantRecs...)
			if n != ReportLen(wantRecs...) {
				t.Fatalf("PutReport wrote %d bytes, ReportLen %d", n, ReportLen(wantRecs...))
			}
			want = msgWant{typ: TypeV2Report, version: 2, records: len(wantRecs)}
		}
		b = b[:n]
		if b[2] != 0 || b[3] != 0 {
			t.Fatalf("checksum %x not left zero", b[2:4])
		}
		frame := make([]byte, FrameOverhead+n)
		fn := BuildFrame(frame, testMAC, src, dst, b)
		p, fr := FromFrame(frame[:fn])
		if fr != IsMLD || p.Src != src || p.Dst != dst || p.HopLimit != 1 || !p.RouterAlert ||
			!bytes.Equal(p.MLD[4:], b[4:]) || !bytes.Equal(p.MLD[:2], b[:2]) {
			t.Fatalf("FromFrame = %+v %v", p, fr)
		}
		SetChecksum(src, dst, b)
		if !bytes.Equal(p.MLD, b) {
			t.Fatalf("BuildFrame checksum %x, SetChecksum %x", p.MLD[2:4], b[2:4])
		}
		m, pr := Parse(p.Src, p.Dst, p.MLD)
		if !validGroup {
			if pr != BadGroup {
				t.Fatalf("Parse = %v, want %v", pr, BadGroup)
			}
			return
		}
		if pr != OK {
			t.Fatalf("Parse = %v", pr)
		}
		checkMessage(t, m, want)
		if wantRecs != nil {
			var rw []recWant
			for _, s := range wantRecs {
				w := recWant{typ: s.Type, known: s.Type >= 1 && s.Type <= 6, group: s.Group.String(), aux: s.Aux}
				for _, a := range s.Sources {
					w.sources = append(w.sources, a.String())
				}
				rw = append(rw, w)
			}
			checkRecords(t, m, rw)
		}
		if d := gopacketAgrees(m); d != "" {
			t.Fatalf("gopacket disagrees: %s", d)
		}
	})
}
