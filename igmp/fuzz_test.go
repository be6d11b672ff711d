package igmp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/meshcast/meshcast/internal/inet"
)

// FuzzParse checks invariants of accepted messages, not only the absence of
// panics: the view is the input itself; its checksum verifies; every record
// and source lies inside it; rebuilding it with this package's builders
// gives the same bytes; gopacket agrees where it can decode.
func FuzzParse(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.b)
	}
	for _, tc := range refusalCases() {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data)
		// Most mutations break the checksum; fixing it lets them reach
		// the structure checks and the invariants of accepted messages.
		if len(data) >= 4 {
			checkParse(t, fix(slices.Clone(data)))
		}
	})
}

func checkParse(t *testing.T, data []byte) {
	t.Helper()
	m, r := Parse(data)
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
	if refChecksum(data) != 0 {
		t.Fatalf("accepted message %x whose checksum does not verify", data)
	}
	// Every accessor is safe on every accepted message.
	_, _, _ = m.Group(), m.MaxResp(), m.QQI()
	_, _, _ = m.SFlag(), m.QRV(), m.MaxRespCode()
	if v := m.Version(); v < 1 || v > 3 {
		t.Fatalf("Version %d", v)
	}

	switch m.Type() {
	case TypeQuery:
		checkQueryInvariants(t, m)
	case TypeV1Report, TypeV2Report, TypeV2Leave:
		if !m.Group().IsMulticast() {
			t.Fatalf("accepted report for %v", m.Group())
		}
		if len(m) == HeaderLen && m[1] == 0 {
			b := make([]byte, HeaderLen)
			PutReportV2(b, m.Type(), m.Group())
			if !sameMessage(b, data) {
				t.Fatalf("rebuilt %x, got %x", b, data)
			}
		}
	case TypeV3Report:
		checkReportInvariants(t, m)
	default:
		t.Fatalf("accepted type %#x", m.Type())
	}
}

// sameMessage reports whether a and b are the same message: equal bytes,
// except that the checksum fields may hold either of one's complement's two
// zeros (0x0000 and 0xffff) as long as both verify. A sender may put 0xffff
// where this package computes 0x0000.
func sameMessage(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 4 {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(a[:2], b[:2]) && bytes.Equal(a[4:], b[4:]) &&
		refChecksum(a) == 0 && refChecksum(b) == 0
}

func checkQueryInvariants(t *testing.T, m Message) {
	g := m.Group()
	if !g.IsMulticast() && g != netip.IPv4Unspecified() {
		t.Fatalf("accepted query for %v", g)
	}
	switch len(m) {
	case HeaderLen:
		want := 2
		if m[1] == 0 {
			want = 1
		}
		if m.QueryVersion() != want || m.NumSources() != 0 {
			t.Fatalf("8-byte query: version %d, %d sources", m.QueryVersion(), m.NumSources())
		}
		if want == 2 {
			b := make([]byte, HeaderLen)
			PutQueryV2(b, g, m.MaxResp())
			if !sameMessage(b, m) {
				t.Fatalf("rebuilt %x, got %x", b, []byte(m))
			}
		}
		return
	}
	if m.QueryVersion() != 3 {
		t.Fatalf("query of %d bytes: version %d", len(m), m.QueryVersion())
	}
	n := m.NumSources()
	if QueryV3Len(n) > len(m) {
		t.Fatalf("%d sources do not fit in %d bytes", n, len(m))
	}
	srcs := make([]netip.Addr, n)
	for i := range n {
		srcs[i] = m.Source(i)
		if srcs[i] != netip.AddrFrom4([4]byte(m[12+4*i:])) {
			t.Fatalf("source %d", i)
		}
	}
	// A canonical query (reserved bits clear, no additional data) is
	// rebuilt bit for bit: the float codes round-trip exactly.
	b := make([]byte, QueryV3Len(n))
	PutQueryV3(b, g, m.MaxResp(), m.SFlag(), m.QRV(), m.QQI(), srcs)
	if b[1] != m[1] || b[9] != m[9] {
		t.Fatalf("codes %#x %#x rebuilt as %#x %#x", m[1], m[9], b[1], b[9])
	}
	if m[8]&0xf0 == 0 && len(m) == QueryV3Len(n) && !sameMessage(b, m) {
		t.Fatalf("rebuilt %x, got %x", b, []byte(m))
	}
	if len(m) == QueryV3Len(n) {
		p := gopacket.NewPacket(m, layers.LayerTypeIGMP, gopacket.NoCopy)
		gq, ok := p.Layer(layers.LayerTypeIGMP).(*layers.IGMP)
		if !ok || int(gq.NumberOfSources) != n || len(gq.SourceAddresses) != n || int(gq.RobustnessValue) != m.QRV() ||
			gq.SupressRouterProcessing != m.SFlag() || !gq.GroupAddress.Equal(net.IP(g.AsSlice())) {
			t.Fatalf("gopacket disagrees: %+v", p.Layer(layers.LayerTypeIGMP))
		}
		for i, s := range gq.SourceAddresses {
			if !s.Equal(net.IP(srcs[i].AsSlice())) {
				t.Fatalf("gopacket source %d %v, ours %v", i, s, srcs[i])
			}
		}
	}
}

func checkReportInvariants(t *testing.T, m Message) {
	off := HeaderLen
	var specs []RecordSpec
	anyAux := false
	for it := m.Records(); ; {
		rec, ok := it.Next()
		if !ok {
			break
		}
		if len(rec) < RecordHeaderLen || off+len(rec) > len(m) || &rec[0] != &m[off] {
			t.Fatalf("record %d at %d (%d bytes) is not inside the %d-byte message", len(specs), off, len(rec), len(m))
		}
		if !rec.Group().IsMulticast() {
			t.Fatalf("accepted record for %v", rec.Group())
		}
		s := RecordSpec{Type: rec.Type(), Group: rec.Group(), Aux: rec.Aux()}
		for i := range rec.NumSources() {
			s.Sources = append(s.Sources, rec.Source(i))
		}
		if len(rec) != s.Len() || rec.AuxLen() != len(s.Aux) {
			t.Fatalf("record length %d, parts add up to %d", len(rec), s.Len())
		}
		_ = rec.Known()
		anyAux = anyAux || len(s.Aux) > 0
		specs = append(specs, s)
		off += len(rec)
	}
	if len(specs) != m.NumRecords() {
		t.Fatalf("iterated %d records, NumRecords %d", len(specs), m.NumRecords())
	}

	// Rebuild: the records come out the same. The reserved fields and any
	// additional data are not rebuilt, so the whole message (checksum
	// included) is identical only when it is canonical.
	b := make([]byte, ReportV3Len(specs...))
	n := PutReportV3(b, specs...)
	if n != off {
		t.Fatalf("rebuilt %d bytes, records end at %d", n, off)
	}
	if b[0] != m[0] || !bytes.Equal(b[6:n], m[6:off]) {
		t.Fatalf("rebuilt\n%x, got\n%x", b, []byte(m))
	}
	canonical := m[1] == 0 && m[4] == 0 && m[5] == 0 && off == len(m)
	if canonical && !sameMessage(b, m) {
		t.Fatalf("canonical report rebuilt as\n%x, got\n%x", b, []byte(m))
	}
	if _, r := Parse(b); r != OK {
		t.Fatalf("rebuilt report refused: %v", r)
	}

	if !anyAux && off == len(m) {
		p := gopacket.NewPacket(m, layers.LayerTypeIGMP, gopacket.NoCopy)
		g, ok := p.Layer(layers.LayerTypeIGMP).(*layers.IGMP)
		if !ok || len(g.GroupRecords) != len(specs) {
			t.Fatalf("gopacket disagrees: %+v", p.Layer(layers.LayerTypeIGMP))
		}
		for i, gr := range g.GroupRecords {
			if uint8(gr.Type) != specs[i].Type || !gr.MulticastAddress.Equal(net.IP(specs[i].Group.AsSlice())) ||
				len(gr.SourceAddresses) != len(specs[i].Sources) {
				t.Fatalf("record %d: gopacket %+v, ours %+v", i, gr, specs[i])
			}
		}
	}
}

// FuzzFromFrame checks that FromFrame and IPv4Multicast never panic, that
// what FromFrame returns is a view inside the frame described by a valid
// IPv4 header, that the two functions agree, and that a frame rebuilt with
// BuildQueryFrame from what FromFrame found yields the same again.
func FuzzFromFrame(f *testing.F) {
	for _, tc := range frameCases() {
		f.Add(tc.f)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkFrame(t, frame)
		// As for FuzzParse: fix the IPv4 header checksum so mutations reach
		// the later checks.
		if len(frame) >= 14+20 {
			checkFrame(t, fixIP(slices.Clone(frame)))
		}
	})
}

func checkFrame(t *testing.T, frame []byte) {
	t.Helper()
	msrc, mdst, proto, mok := IPv4Multicast(frame)
	if mok && !mdst.IsMulticast() {
		t.Fatalf("IPv4Multicast: %v is not multicast", mdst)
	}
	if rsrc, rdst, rproto, rok := refIPv4Multicast(frame); rsrc != msrc || rdst != mdst || rproto != proto || rok != mok {
		t.Fatalf("IPv4Multicast = %v %v %d %v, reference %v %v %d %v", msrc, mdst, proto, mok, rsrc, rdst, rproto, rok)
	}
	src, dst, igmp, ok := FromFrame(frame)
	if rsrc, rdst, rigmp, rok := refFromFrame(frame); rok != ok || rok && (rsrc != src || rdst != dst ||
		len(rigmp) != len(igmp) || cap(rigmp) != cap(igmp) || len(igmp) > 0 && &rigmp[0] != &igmp[0]) {
		t.Fatalf("FromFrame = %v %v %x %v, reference %v %v %x %v", src, dst, igmp, ok, rsrc, rdst, rigmp, rok)
	}
	if !ok {
		if igmp != nil {
			t.Fatal("refused frame returned IGMP bytes")
		}
		return
	}
	ip := frame[14:]
	hlen := int(ip[0]&0x0f) * 4
	if hlen < 20 || refChecksum(ip[:hlen]) != 0 || ip[9] != ProtoIGMP || ip[0]>>4 != 4 {
		t.Fatalf("accepted a bad IPv4 header %x", ip[:min(hlen, len(ip))])
	}
	if src != netip.AddrFrom4([4]byte(ip[12:16])) || dst != netip.AddrFrom4([4]byte(ip[16:20])) {
		t.Fatal("addresses are not the header's")
	}
	if 14+hlen+len(igmp) > len(frame) || cap(igmp) != len(igmp) ||
		(len(igmp) > 0 && &igmp[0] != &frame[14+hlen]) {
		t.Fatal("IGMP bytes are not a view just after the IPv4 header")
	}
	if dst.IsMulticast() != mok || (mok && (msrc != src || mdst != dst || proto != ProtoIGMP)) {
		t.Fatalf("IPv4Multicast %v %v %d %v disagrees with FromFrame %v %v", msrc, mdst, proto, mok, src, dst)
	}
	m, r := Parse(igmp)
	if r == OK && len(m) != len(igmp) {
		t.Fatal("Parse changed the length")
	}

	if len(igmp)+FrameOverhead > 0xffff+14 {
		return
	}
	buf := make([]byte, FrameOverhead+len(igmp))
	n := BuildQueryFrame(buf, net.HardwareAddr(slices.Clone(frame[6:12])), src, dst, igmp)
	src2, dst2, igmp2, ok2 := FromFrame(buf[:n])
	if !ok2 || src2 != src || dst2 != dst || !bytes.Equal(igmp2, igmp) {
		t.Fatalf("rebuilt frame read back as %v %v %x %v", src2, dst2, igmp2, ok2)
	}
}

// refFromFrame and refIPv4Multicast are FromFrame and IPv4Multicast as they
// were before they read the header through inet.IPv4: hand-written offsets,
// the oracle that keeps their behaviour the same.
func refFromFrame(frame []byte) (src, dst netip.Addr, igmp []byte, isIGMP bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return src, dst, nil, false
	}
	ip := frame[14:]
	if ip[0]>>4 != 4 || ip[9] != 2 {
		return src, dst, nil, false
	}
	hlen := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if hlen < 20 || total < hlen || total > len(ip) {
		return src, dst, nil, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return src, dst, nil, false
	}
	if !inet.Verify(ip[:hlen]) {
		return src, dst, nil, false
	}
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ip[hlen:total:total], true
}

func refIPv4Multicast(frame []byte) (src, dst netip.Addr, proto uint8, ok bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return src, dst, 0, false
	}
	ip := frame[14:]
	vihl := ip[0]
	if vihl>>4 != 4 || vihl&0x0f < 5 || int(vihl&0x0f)*4 > len(ip) || ip[16]&0xf0 != 0xe0 {
		return src, dst, 0, false
	}
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ip[9], true
}
