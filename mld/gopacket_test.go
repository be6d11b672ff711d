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

// gopacket v1.1.19 is the oracle of these tests. Its MLD layers have bugs
// that the tests work around rather than drop the oracle:
//
//   - MLDv2MulticastListenerQueryMessage.MaximumResponseDelay returns a code
//     below 32768 as that many nanoseconds, not milliseconds, and decodes the
//     float codes as mant | 0x1000<<(exp+3) (Go's << binds tighter than |),
//     not (mant|0x1000) << (exp+3); QQI has the same precedence bug. Their
//     setters, SetMLDv2MaximumResponseDelay and SetQQI, fall through from
//     the linear range into the float one and use 0x1000 and 0x10 as the
//     float's leading bit instead of 0x8000 and 0x80. The tests compare the
//     raw codes (MaximumResponseCode, QueriersQueryIntervalCode) and check
//     the decoding against RFC 3810 in TestMaxRespCode and TestQQIC.
//   - IPv6HopByHop.SerializeTo with FixLengths pads the options with
//     length%8 bytes instead of 8-length%8, so a header holding only Router
//     Alert (6 bytes) fails with "actual length must be multiple of 8". The
//     tests add the 2-byte PadN themselves.
//   - MLDv2MulticastAddressRecord serialization pads aux data that is not a
//     multiple of 4 bytes with len%4 zero bytes instead of 4-len%4; the
//     tests only give it whole words.
//   - gopacket never verifies the ICMPv6 checksum it decodes. The tests
//     recompute it with gopacket's serializer over the decoded IPv6 layer's
//     pseudo-header (gopacketChecksum) and compare.

// decodeFrame decodes an Ethernet frame with gopacket and fails the test on
// any decoding error.
func decodeFrame(t *testing.T, frame []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	return p
}

// gopacketChecksum computes, with gopacket, the ICMPv6 checksum of the
// message b (its checksum field ignored) carried by ip6.
func gopacketChecksum(t *testing.T, ip6 *layers.IPv6, b []byte) uint16 {
	t.Helper()
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(b[0], b[1])}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, gopacket.Payload(b[4:])); err != nil {
		t.Fatal(err)
	}
	return icmp.Checksum
}

func ipEqual(ip net.IP, a netip.Addr) bool { return ip.Equal(net.IP(a.AsSlice())) }

// checkGopacketHeaders checks the Ethernet, IPv6, Hop-by-Hop and ICMPv6
// layers gopacket decodes from a frame BuildFrame wrote, and returns the
// MLD message's own layer.
func checkGopacketHeaders(t *testing.T, frame []byte, src, dst netip.Addr, msg []byte) gopacket.Packet {
	t.Helper()
	p := decodeFrame(t, frame)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	mac := MulticastMAC(dst)
	if !bytes.Equal(eth.DstMAC, mac[:]) || !bytes.Equal(eth.SrcMAC, testMAC) || eth.EthernetType != layers.EthernetTypeIPv6 {
		t.Errorf("gopacket Ethernet %+v", eth)
	}
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if ip.Version != 6 || ip.TrafficClass != 0 || ip.FlowLabel != 0 || int(ip.Length) != 8+len(msg) ||
		ip.NextHeader != layers.IPProtocolIPv6HopByHop || ip.HopLimit != 1 || !ipEqual(ip.SrcIP, src) || !ipEqual(ip.DstIP, dst) {
		t.Errorf("gopacket IPv6 %+v", ip)
	}
	hbh, ok := p.Layer(layers.LayerTypeIPv6HopByHop).(*layers.IPv6HopByHop)
	if !ok || hbh.NextHeader != layers.IPProtocolICMPv6 || hbh.HeaderLength != 0 || len(hbh.Options) != 2 ||
		hbh.Options[0].OptionType != 5 || hbh.Options[0].OptionLength != 2 || !bytes.Equal(hbh.Options[0].OptionData, []byte{0, 0}) ||
		hbh.Options[1].OptionType != 1 || hbh.Options[1].OptionLength != 0 {
		t.Errorf("gopacket Hop-by-Hop %+v", p.Layer(layers.LayerTypeIPv6HopByHop))
	}
	icmp, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if !ok || icmp.TypeCode != layers.CreateICMPv6TypeCode(msg[0], 0) {
		t.Fatalf("gopacket ICMPv6 %+v", p.Layer(layers.LayerTypeICMPv6))
	}
	if sum := binary.BigEndian.Uint16(frame[FrameOverhead+2:]); icmp.Checksum != sum || gopacketChecksum(t, ip, msg) != sum {
		t.Errorf("checksum %#04x, gopacket decodes %#04x and computes %#04x", sum, icmp.Checksum, gopacketChecksum(t, ip, msg))
	}
	if !bytes.Equal(frame[FrameOverhead:], msg) {
		t.Errorf("frame holds %x, want %x", frame[FrameOverhead:], msg)
	}
	return p
}

// TestGopacketDecodesBuilt builds frames with BuildFrame and the Put
// functions and decodes them with gopacket.
func TestGopacketDecodesBuilt(t *testing.T) {
	src := mustAddr(ll)
	buf := make([]byte, 1024)
	msg := make([]byte, 1024)
	build := func(dst netip.Addr, n int) ([]byte, []byte) {
		m := buf[FrameOverhead : FrameOverhead+n]
		copy(m, msg[:n])
		f := buf[:BuildFrame(buf, testMAC, src, dst, m)]
		return f, f[FrameOverhead:]
	}

	t.Run("v1 queries", func(t *testing.T) {
		for _, tc := range []struct {
			group, dst string
			resp       time.Duration
		}{
			{"::", all, 10 * time.Second},
			{"ff0e::1:1", "ff0e::1:1", time.Second},
			{"ff02::fb", "ff02::fb", 65535 * time.Millisecond},
			{"::", all, 0},
		} {
			group, dst := mustAddr(tc.group), mustAddr(tc.dst)
			f, m := build(dst, PutQueryV1(msg, group, tc.resp))
			p := checkGopacketHeaders(t, f, src, dst, m)
			q, ok := p.Layer(layers.LayerTypeMLDv1MulticastListenerQuery).(*layers.MLDv1MulticastListenerQueryMessage)
			if !ok {
				t.Fatalf("no MLDv1 query layer in %v", p)
			}
			pm, r := Parse(src, dst, m)
			if r != OK || q.MaximumResponseDelay != pm.MaxResp() || q.MaximumResponseDelay != tc.resp ||
				!ipEqual(q.MulticastAddress, group) || q.IsGeneralQuery() != (tc.group == "::") {
				t.Errorf("gopacket %v; ours %v %v %v", q, r, pm.Group(), pm.MaxResp())
			}
		}
	})
	t.Run("v1 reports and dones", func(t *testing.T) {
		for _, tc := range []struct {
			typ   uint8
			layer gopacket.LayerType
		}{
			{TypeV1Report, layers.LayerTypeMLDv1MulticastListenerReport},
			{TypeV1Done, layers.LayerTypeMLDv1MulticastListenerDone},
		} {
			group := mustAddr("ff05::1:3")
			f, m := build(group, PutReportV1(msg, tc.typ, group))
			p := checkGopacketHeaders(t, f, src, group, m)
			var g layers.MLDv1Message
			switch l := p.Layer(tc.layer).(type) {
			case *layers.MLDv1MulticastListenerReportMessage:
				g = l.MLDv1Message
			case *layers.MLDv1MulticastListenerDoneMessage:
				g = l.MLDv1Message
			default:
				t.Fatalf("type %d: no %v layer in %v", tc.typ, tc.layer, p)
			}
			pm, r := Parse(src, group, m)
			if r != OK || pm.Version() != 1 || !ipEqual(g.MulticastAddress, pm.Group()) || g.MaximumResponseDelay != 0 {
				t.Errorf("type %d: gopacket %v; ours %v %v", tc.typ, &g, r, pm.Group())
			}
		}
	})
	t.Run("v2 queries", func(t *testing.T) {
		srcs := []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2"), mustAddr("fe80::1:2")}
		for _, tc := range []struct {
			group     string
			resp, qqi time.Duration
			sflag     bool
			qrv       int
			sources   []netip.Addr
			mark      bool
		}{
			{"::", 10 * time.Second, 125 * time.Second, false, 2, nil, false},
			{"::", 10 * time.Second, 125 * time.Second, false, 2, nil, true},
			{"ff0e::1:1", time.Second, 125 * time.Second, true, 2, nil, false},
			{"ff3e::8000:1", 32767 * time.Millisecond, 127 * time.Second, true, 7, srcs, true},
			{"ff3e::8000:1", time.Hour, time.Hour, false, 0, srcs[:1], false},
			{"ff3e::8000:1", 3 * time.Hour, 10 * time.Hour, false, 9, srcs[1:], false},
		} {
			group := mustAddr(tc.group)
			dst := group
			if tc.group == "::" {
				dst = mustAddr(all)
			}
			f, m := build(dst, PutQuery(msg, group, tc.resp, tc.sflag, tc.qrv, tc.qqi, tc.sources, tc.mark))
			p := checkGopacketHeaders(t, f, src, dst, m)
			q, ok := p.Layer(layers.LayerTypeMLDv2MulticastListenerQuery).(*layers.MLDv2MulticastListenerQueryMessage)
			if !ok {
				t.Fatalf("no MLDv2 query layer in %v", p)
			}
			pm, r := Parse(src, dst, m)
			if r != OK {
				t.Fatalf("Parse = %v", r)
			}
			if q.MaximumResponseCode != pm.MaxRespCode() || !ipEqual(q.MulticastAddress, pm.Group()) ||
				q.SuppressRoutersideProcessing != pm.SFlag() || int(q.QueriersRobustnessVariable) != pm.QRV() ||
				q.QueriersQueryIntervalCode != m[25] || int(q.NumberOfSources) != pm.NumSources() ||
				len(q.SourceAddresses) != len(tc.sources) || pm.Marked() != tc.mark {
				t.Errorf("gopacket %v\nours code %#x S %v qrv %d qqic %#x n %d", q, pm.MaxRespCode(), pm.SFlag(), pm.QRV(), m[25], pm.NumSources())
			}
			if pm.MaxResp() != DecodeCode(q.MaximumResponseCode) || pm.QQI() != DecodeQQIC(q.QueriersQueryIntervalCode) ||
				pm.MaxResp() > max(tc.resp, 0) || pm.QQI() > max(tc.qqi, 0) {
				t.Errorf("MaxResp %v QQI %v for %v %v", pm.MaxResp(), pm.QQI(), tc.resp, tc.qqi)
			}
			for i, s := range q.SourceAddresses {
				if !ipEqual(s, pm.Source(i)) || pm.Source(i) != tc.sources[i] {
					t.Errorf("source %d: gopacket %v, ours %v", i, s, pm.Source(i))
				}
			}
		}
	})
	t.Run("v2 reports", func(t *testing.T) {
		dst := mustAddr(mld2)
		for _, recs := range [][]RecordSpec{
			report3Specs(),
			nil,
			report3Specs()[1:2],
			{{Type: 9, Group: mustAddr("ff0e::9")}, {Type: ChangeToExclude, Group: mustAddr("ff02::fb")}},
		} {
			f, m := build(dst, PutReport(msg, recs...))
			p := checkGopacketHeaders(t, f, src, dst, m)
			g, ok := p.Layer(layers.LayerTypeMLDv2MulticastListenerReport).(*layers.MLDv2MulticastListenerReportMessage)
			if !ok {
				t.Fatalf("no MLDv2 report layer in %v", p)
			}
			pm, r := Parse(src, dst, m)
			if r != OK {
				t.Fatalf("Parse = %v", r)
			}
			if int(g.NumberOfMulticastAddressRecords) != pm.NumRecords() || len(g.MulticastAddressRecords) != len(recs) {
				t.Fatalf("gopacket %v", g)
			}
			it := pm.Records()
			for i, gr := range g.MulticastAddressRecords {
				rec, _ := it.Next()
				if uint8(gr.RecordType) != rec.Type() || int(gr.AuxDataLen)*4 != rec.AuxLen() ||
					int(gr.N) != rec.NumSources() || len(gr.SourceAddresses) != rec.NumSources() ||
					!ipEqual(gr.MulticastAddress, rec.Group()) || !bytes.Equal(gr.AuxiliaryData, rec.Aux()) ||
					rec.Group() != recs[i].Group || !bytes.Equal(rec.Aux(), recs[i].Aux) {
					t.Errorf("record %d: gopacket %v, ours %x", i, &gr, []byte(rec))
				}
				for j, s := range gr.SourceAddresses {
					if !ipEqual(s, rec.Source(j)) || rec.Source(j) != recs[i].Sources[j] {
						t.Errorf("record %d source %d: gopacket %v, ours %v", i, j, s, rec.Source(j))
					}
				}
			}
		}
	})
}

// gopacketFrame serializes an Ethernet frame with gopacket: IPv6 from src to
// dst with hop limit hop, a Hop-by-Hop header with Router Alert if ra, the
// extension layers exts (whose next headers the caller sets), then ICMPv6
// of type typ holding the MLD layer mld, with gopacket's checksum.
func gopacketFrame(t testing.TB, src, dst netip.Addr, hop uint8, ra bool, exts []gopacket.SerializableLayer,
	typ uint8, mld gopacket.SerializableLayer) []byte {
	t.Helper()
	mac := MulticastMAC(dst)
	eth := &layers.Ethernet{SrcMAC: testMAC, DstMAC: mac[:], EthernetType: layers.EthernetTypeIPv6}
	ip6 := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	first := layers.IPProtocolICMPv6
	if len(exts) > 0 {
		first = layers.IPProtocolIPv6Destination
	}
	if ra {
		hbh := &layers.IPv6HopByHop{}
		hbh.NextHeader = first
		// The PadN is explicit: see gopacket's padding bug above.
		hbh.Options = []*layers.IPv6HopByHopOption{
			{OptionType: 5, OptionLength: 2, OptionData: []byte{0, 0}},
			{OptionType: 1, OptionLength: 0},
		}
		ip6.HopByHop = hbh
	} else {
		ip6.NextHeader = first
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		t.Fatal(err)
	}
	ls := append([]gopacket.SerializableLayer{eth, ip6}, exts...)
	ls = append(ls, icmp, mld)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(buf.Bytes())
}

// destOpts is a Destination Options layer of 8 bytes (a PadN of 6) followed
// by next.
func destOpts(next layers.IPProtocol) *layers.IPv6Destination {
	d := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}}
	d.NextHeader = next
	return d
}

// TestGopacketSerialized parses frames that gopacket serialized.
func TestGopacketSerialized(t *testing.T) {
	src := mustAddr(ll)
	fromFrame := func(t *testing.T, f []byte, dst netip.Addr, hop uint8, ra bool) Message {
		t.Helper()
		p, r := FromFrame(f)
		if r != IsMLD || p.Src != src || p.Dst != dst || p.HopLimit != hop || p.RouterAlert != ra {
			t.Fatalf("FromFrame = %+v %v", p, r)
		}
		m, pr := Parse(p.Src, p.Dst, p.MLD)
		if pr != OK {
			t.Fatalf("Parse = %v", pr)
		}
		if s, d, ok := IPv6Multicast(f); !ok || s != src || d != dst {
			t.Errorf("IPv6Multicast = %v %v %v", s, d, ok)
		}
		return m
	}
	ip := func(s string) net.IP { return net.IP(mustAddr(s).AsSlice()) }
	allNodes := mustAddr(all)

	t.Run("v1 messages", func(t *testing.T) {
		q := &layers.MLDv1MulticastListenerQueryMessage{MLDv1Message: layers.MLDv1Message{
			MaximumResponseDelay: 10 * time.Second, MulticastAddress: net.IPv6zero}}
		m := fromFrame(t, gopacketFrame(t, src, allNodes, 1, true, nil, TypeQuery, q), allNodes, 1, true)
		checkMessage(t, m, msgWant{typ: TypeQuery, version: 1, group: "::", code: 10000, maxResp: 10 * time.Second})

		g := mustAddr("ff05::1:3")
		q = &layers.MLDv1MulticastListenerQueryMessage{MLDv1Message: layers.MLDv1Message{
			MaximumResponseDelay: 65535 * time.Millisecond, MulticastAddress: ip("ff05::1:3")}}
		m = fromFrame(t, gopacketFrame(t, src, g, 1, true, nil, TypeQuery, q), g, 1, true)
		checkMessage(t, m, msgWant{typ: TypeQuery, version: 1, group: "ff05::1:3", code: 65535, maxResp: 65535 * time.Millisecond})

		r := &layers.MLDv1MulticastListenerReportMessage{MLDv1Message: layers.MLDv1Message{MulticastAddress: ip("ff05::1:3")}}
		m = fromFrame(t, gopacketFrame(t, src, g, 1, true, nil, TypeV1Report, r), g, 1, true)
		checkMessage(t, m, msgWant{typ: TypeV1Report, version: 1, group: "ff05::1:3"})

		allRouters := mustAddr("ff02::2")
		d := &layers.MLDv1MulticastListenerDoneMessage{MLDv1Message: layers.MLDv1Message{MulticastAddress: ip("ff02::fb")}}
		m = fromFrame(t, gopacketFrame(t, src, allRouters, 1, true, nil, TypeV1Done, d), allRouters, 1, true)
		checkMessage(t, m, msgWant{typ: TypeV1Done, version: 1, group: "ff02::fb"})

		// Without the Hop-by-Hop header, and behind a Destination
		// Options header: found all the same.
		m = fromFrame(t, gopacketFrame(t, src, g, 1, false, nil, TypeV1Report, r), g, 1, false)
		checkMessage(t, m, msgWant{typ: TypeV1Report, version: 1, group: "ff05::1:3"})
		m = fromFrame(t, gopacketFrame(t, src, g, 1, true, []gopacket.SerializableLayer{destOpts(layers.IPProtocolICMPv6)}, TypeV1Report, r), g, 1, true)
		checkMessage(t, m, msgWant{typ: TypeV1Report, version: 1, group: "ff05::1:3"})
	})
	t.Run("v2 queries", func(t *testing.T) {
		for _, tc := range []struct {
			code    uint16
			group   string
			s       bool
			qrv     uint8
			qqic    uint8
			sources []string
		}{
			{10000, "::", false, 2, 125, nil},
			{0x8000, "ff0e::1:1", true, 7, 0x80, nil},
			{0xffff, "ff3e::8000:1", true, 0, 0xff, []string{"2001:db8::1", "2001:db8::2"}},
			{1, "ff3e::8000:1", false, 3, 0, []string{"fe80::1"}},
		} {
			q := &layers.MLDv2MulticastListenerQueryMessage{
				MaximumResponseCode: tc.code, MulticastAddress: ip(tc.group), SuppressRoutersideProcessing: tc.s,
				QueriersRobustnessVariable: tc.qrv, QueriersQueryIntervalCode: tc.qqic,
			}
			for _, s := range tc.sources {
				q.SourceAddresses = append(q.SourceAddresses, ip(s))
			}
			dst := allNodes
			if tc.group != "::" {
				dst = mustAddr(tc.group)
			}
			m := fromFrame(t, gopacketFrame(t, src, dst, 1, true, nil, TypeQuery, q), dst, 1, true)
			checkMessage(t, m, msgWant{typ: TypeQuery, version: 2, group: tc.group, code: tc.code, maxResp: DecodeCode(tc.code),
				sflag: tc.s, qrv: int(tc.qrv), qqi: DecodeQQIC(tc.qqic), sources: tc.sources})
		}
	})
	t.Run("v2 reports", func(t *testing.T) {
		dst := mustAddr(mld2)
		for _, specs := range [][]RecordSpec{
			report3Specs(),
			nil,
			{{Type: 9, Group: mustAddr("ff0e::9"), Aux: []byte{1, 2, 3, 4}}, {Type: ChangeToExclude, Group: mustAddr("ff02::fb")}},
		} {
			g := &layers.MLDv2MulticastListenerReportMessage{}
			for _, s := range specs {
				r := layers.MLDv2MulticastAddressRecord{
					RecordType:       layers.MLDv2MulticastAddressRecordType(s.Type),
					MulticastAddress: net.IP(s.Group.AsSlice()),
					AuxiliaryData:    slices.Clone(s.Aux),
				}
				for _, a := range s.Sources {
					r.SourceAddresses = append(r.SourceAddresses, net.IP(a.AsSlice()))
				}
				g.MulticastAddressRecords = append(g.MulticastAddressRecords, r)
			}
			f := gopacketFrame(t, src, dst, 1, true, []gopacket.SerializableLayer{destOpts(layers.IPProtocolICMPv6)}, TypeV2Report, g)
			m := fromFrame(t, f, dst, 1, true)
			checkMessage(t, m, msgWant{typ: TypeV2Report, version: 2, records: len(specs)})
			var want []recWant
			for _, s := range specs {
				w := recWant{typ: s.Type, known: s.Type >= 1 && s.Type <= 6, group: s.Group.String(), aux: s.Aux}
				for _, a := range s.Sources {
					w.sources = append(w.sources, a.String())
				}
				want = append(want, w)
			}
			checkRecords(t, m, want)
			// And our builder writes the same bytes as gopacket.
			b := make([]byte, ReportLen(specs...))
			SetChecksum(src, dst, b[:PutReport(b, specs...)])
			if p, _ := FromFrame(f); !bytes.Equal(b, p.MLD) {
				t.Errorf("PutReport =\n%x, gopacket\n%x", b, p.MLD)
			}
		}
	})
}

// gopacketAgrees decodes the accepted message m with gopacket's ICMPv6 and
// MLD layers and reports the first difference, or "". gopacket ignores
// trailing octets as Parse does, so it can decode every accepted message.
func gopacketAgrees(m Message) string {
	p := gopacket.NewPacket(m, layers.LayerTypeICMPv6, gopacket.NoCopy)
	if el := p.ErrorLayer(); el != nil {
		return "gopacket: " + el.Error().Error()
	}
	icmp, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if !ok || icmp.TypeCode.Type() != m.Type() || icmp.Checksum != binary.BigEndian.Uint16(m[2:]) {
		return "ICMPv6 header"
	}
	switch m.Type() {
	case TypeQuery:
		if m.Version() == 1 {
			q, ok := p.Layer(layers.LayerTypeMLDv1MulticastListenerQuery).(*layers.MLDv1MulticastListenerQueryMessage)
			if !ok || q.MaximumResponseDelay != m.MaxResp() || !ipEqual(q.MulticastAddress, m.Group()) {
				return "v1 query"
			}
			return ""
		}
		q, ok := p.Layer(layers.LayerTypeMLDv2MulticastListenerQuery).(*layers.MLDv2MulticastListenerQueryMessage)
		if !ok || q.MaximumResponseCode != m.MaxRespCode() || !ipEqual(q.MulticastAddress, m.Group()) ||
			q.SuppressRoutersideProcessing != m.SFlag() || int(q.QueriersRobustnessVariable) != m.QRV() ||
			DecodeQQIC(q.QueriersQueryIntervalCode) != m.QQI() || int(q.NumberOfSources) != m.NumSources() ||
			len(q.SourceAddresses) != m.NumSources() {
			return "v2 query"
		}
		for i, s := range q.SourceAddresses {
			if !ipEqual(s, m.Source(i)) {
				return "v2 query source"
			}
		}
	case TypeV1Report, TypeV1Done:
		var g net.IP
		switch l := p.Layer(layers.LayerTypeMLDv1MulticastListenerReport).(type) {
		case *layers.MLDv1MulticastListenerReportMessage:
			g = l.MulticastAddress
		default:
			d, ok := p.Layer(layers.LayerTypeMLDv1MulticastListenerDone).(*layers.MLDv1MulticastListenerDoneMessage)
			if !ok {
				return "v1 report or done layer"
			}
			g = d.MulticastAddress
		}
		if !ipEqual(g, m.Group()) {
			return "v1 group"
		}
	case TypeV2Report:
		g, ok := p.Layer(layers.LayerTypeMLDv2MulticastListenerReport).(*layers.MLDv2MulticastListenerReportMessage)
		if !ok || int(g.NumberOfMulticastAddressRecords) != m.NumRecords() || len(g.MulticastAddressRecords) != m.NumRecords() {
			return "v2 report"
		}
		it := m.Records()
		for _, gr := range g.MulticastAddressRecords {
			rec, _ := it.Next()
			if uint8(gr.RecordType) != rec.Type() || int(gr.AuxDataLen)*4 != rec.AuxLen() ||
				len(gr.SourceAddresses) != rec.NumSources() || !ipEqual(gr.MulticastAddress, rec.Group()) ||
				!bytes.Equal(gr.AuxiliaryData, rec.Aux()) {
				return "v2 record"
			}
			for j, s := range gr.SourceAddresses {
				if !ipEqual(s, rec.Source(j)) {
					return "v2 record source"
				}
			}
		}
	}
	return ""
}

func TestGopacketAgreesOnValidCases(t *testing.T) {
	for _, tc := range validCases() {
		m, r := Parse(testSrc, testDst, tc.b)
		if r != OK {
			t.Fatalf("%s: Parse = %v", tc.name, r)
		}
		if d := gopacketAgrees(m); d != "" {
			t.Errorf("%s: gopacket disagrees: %s", tc.name, d)
		}
	}
}
