package mld_test

// Router discovery over IPv6: PIMFromFrame, MRDFromFrame and VerifyPseudo,
// and igmp's ParsePIM6 and ParseMRD6 on what they find. gopacket builds
// the frames and computes the ICMPv6 checksums where it has layers; it has
// no PIM layer, so PIM is laid out and summed by hand (refSum).

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/mld"
)

var (
	rtMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	rtSrc = netip.MustParseAddr("fe80::5054:ff:fe12:3456")
)

// refSum is the Internet checksum of the IPv6 pseudo-header (RFC 8200
// section 8.1: source, destination, a 32-bit upper-layer length, three
// zero bytes and the next header) followed by b, one 16-bit word at a
// time, as RFC 1071 describes it.
func refSum(src, dst netip.Addr, nh uint8, b []byte) uint16 {
	s, d := src.As16(), dst.As16()
	ph := slices.Concat(s[:], d[:], binary.BigEndian.AppendUint32(nil, uint32(len(b))), []byte{0, 0, 0, nh}, b)
	if len(ph)%2 == 1 {
		ph = append(ph, 0)
	}
	var sum uint32
	for i := 0; i < len(ph); i += 2 {
		sum += uint32(ph[i])<<8 | uint32(ph[i+1])
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pim6 returns a PIMv2 message of type typ followed by body, its checksum
// set over the pseudo-header of src and dst.
func pim6(src, dst netip.Addr, typ uint8, body ...byte) []byte {
	b := append([]byte{2<<4 | typ, 0, 0, 0}, body...)
	binary.BigEndian.PutUint16(b[2:], refSum(src, dst, mld.NextHeaderPIM, b))
	return b
}

// holdtime is a Hello's Holdtime option.
func holdtime(s uint16) []byte { return []byte{0, 1, 0, 2, byte(s >> 8), byte(s)} }

// gpFrame serializes Ethernet, IPv6 (next header nh, hop limit 1, from src
// to dst), the extension headers exts and then upper with gopacket, fixing
// the lengths and computing the checksums gopacket knows.
func gpFrame(t testing.TB, src, dst netip.Addr, nh layers.IPProtocol, exts []gopacket.SerializableLayer, upper ...gopacket.SerializableLayer) []byte {
	t.Helper()
	mac := mld.MulticastMAC(dst)
	ip := &layers.IPv6{Version: 6, NextHeader: nh, HopLimit: 1, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ls := []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: rtMAC, DstMAC: mac[:], EthernetType: layers.EthernetTypeIPv6}, ip,
	}
	ls = append(append(ls, exts...), upper...)
	for _, l := range upper {
		if c, ok := l.(*layers.ICMPv6); ok {
			if err := c.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hbhRouterAlert is a Hop-by-Hop header with MLD's Router Alert and a
// 2-byte PadN (gopacket pads it wrongly itself).
func hbhRouterAlert(next layers.IPProtocol) *layers.IPv6HopByHop {
	h := &layers.IPv6HopByHop{}
	h.NextHeader = next
	h.Options = []*layers.IPv6HopByHopOption{
		{OptionType: 5, OptionLength: 2, ActualLength: 4, OptionData: []byte{0, 0}},
		{OptionType: 1, OptionLength: 0, ActualLength: 2, OptionData: []byte{}},
	}
	return h
}

func destOpts(next layers.IPProtocol) *layers.IPv6Destination {
	d := &layers.IPv6Destination{}
	d.NextHeader = next
	d.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, ActualLength: 6, OptionData: make([]byte, 4)}}
	return d
}

// mrdICMP is an MRD message of ICMPv6 type typ for gopacket: the ICMPv6
// header, then the rest of body (bytes 4 on).
func mrdICMP(typ, code uint8, body []byte) []gopacket.SerializableLayer {
	return []gopacket.SerializableLayer{&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}, gopacket.Payload(body)}
}

func TestVerifyPseudo(t *testing.T) {
	dsts := []netip.Addr{mld.AllPIMRouters6, mld.AllSnoopers6, netip.MustParseAddr("ff0e::1:2:3")}
	for _, dst := range dsts {
		for n := 4; n < 40; n++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*37 + n)
			}
			for _, nh := range []uint8{mld.NextHeaderPIM, mld.NextHeaderICMPv6, 17} {
				b[2], b[3] = 0, 0
				binary.BigEndian.PutUint16(b[2:], refSum(rtSrc, dst, nh, b))
				if !mld.VerifyPseudo(rtSrc, dst, nh, b) {
					t.Fatalf("%v next header %d length %d: does not verify", dst, nh, n)
				}
				if mld.VerifyPseudo(rtSrc, dst, nh^1, b) || mld.VerifyPseudo(netip.MustParseAddr("fe80::1"), dst, nh, b) {
					t.Fatalf("%v next header %d length %d: verifies with the wrong pseudo-header", dst, nh, n)
				}
			}
		}
	}
	// gopacket's ICMPv6 checksum verifies as next header 58.
	f := gpFrame(t, rtSrc, mld.AllSnoopers6, layers.IPProtocolICMPv6, nil, mrdICMP(mld.TypeMRDAdvertisement6, 20, []byte{0, 125, 0, 2})...)
	if !mld.VerifyPseudo(rtSrc, mld.AllSnoopers6, mld.NextHeaderICMPv6, f[54:]) {
		t.Fatal("gopacket's ICMPv6 checksum does not verify")
	}
}

func TestPIMFromFrame(t *testing.T) {
	hello := pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMHello, holdtime(105)...)
	withPad := func(f []byte) []byte { return append(slices.Clip(f), make([]byte, 10)...) }
	cases := []struct {
		name  string
		frame []byte
		ok    bool
	}{
		{"plain", gpFrame(t, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello)), true},
		{"ethernet padding", withPad(gpFrame(t, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello))), true},
		{"behind hop-by-hop", gpFrame(t, rtSrc, mld.AllPIMRouters6, layers.IPProtocolIPv6HopByHop,
			[]gopacket.SerializableLayer{hbhRouterAlert(mld.NextHeaderPIM)}, gopacket.Payload(hello)), true},
		{"behind destination options", gpFrame(t, rtSrc, mld.AllPIMRouters6, layers.IPProtocolIPv6Destination,
			[]gopacket.SerializableLayer{destOpts(mld.NextHeaderPIM)}, gopacket.Payload(hello)), true},
		{"udp", gpFrame(t, rtSrc, mld.AllPIMRouters6, layers.IPProtocolUDP, nil, gopacket.Payload(hello)), false},
		{"icmpv6", gpFrame(t, rtSrc, mld.AllSnoopers6, layers.IPProtocolICMPv6, nil, mrdICMP(mld.TypeMRDAdvertisement6, 20, []byte{0, 125, 0, 2})...), false},
		{"payload length past the frame", func() []byte {
			f := gpFrame(t, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello))
			binary.BigEndian.PutUint16(f[18:], uint16(len(hello)+1))
			return f
		}(), false},
		{"fragment", gpFrame(t, rtSrc, mld.AllPIMRouters6, layers.IPProtocolIPv6Fragment, nil,
			gopacket.Payload(append([]byte{mld.NextHeaderPIM, 0, 0, 0, 0, 0, 0, 1}, hello...))), false},
		{"ipv4", func() []byte {
			f := gpFrame(t, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello))
			f[12], f[13] = 0x08, 0x00
			return f
		}(), false},
		{"short", gpFrame(t, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello))[:50], false},
	}
	for _, c := range cases {
		src, dst, b, ok := mld.PIMFromFrame(c.frame)
		if ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.name, ok, c.ok)
			continue
		}
		if !ok {
			if src.IsValid() || dst.IsValid() || b != nil {
				t.Errorf("%s: not PIM, yet %v %v % x", c.name, src, dst, b)
			}
			continue
		}
		if src != rtSrc || dst != mld.AllPIMRouters6 || !slices.Equal(b, hello) || cap(b) != len(b) {
			t.Errorf("%s: %v -> %v % x (cap %d), want % x", c.name, src, dst, b, cap(b), hello)
		}
		if !mld.VerifyPseudo(src, dst, mld.NextHeaderPIM, b) {
			t.Errorf("%s: checksum does not verify over the pseudo-header", c.name)
		}
		if typ, hold, ok := igmp.ParsePIM6(src, dst, b); !ok || typ != igmp.PIMHello || hold != 105*time.Second {
			t.Errorf("%s: ParsePIM6 = %d %v %v", c.name, typ, hold, ok)
		}
		if _, r := mld.FromFrame(c.frame); r != mld.NotMLD {
			t.Errorf("%s: FromFrame says %v", c.name, r)
		}
	}
}

func TestMRDFromFrame(t *testing.T) {
	body := []byte{0, 125, 0, 2} // query interval 125 s, robustness 2
	ra := []gopacket.SerializableLayer{hbhRouterAlert(layers.IPProtocolICMPv6)}
	for _, c := range []struct {
		name      string
		typ, code uint8
		body      []byte
		dst       netip.Addr
		ok        bool
		hold      time.Duration
	}{
		{"advertisement", mld.TypeMRDAdvertisement6, 20, body, mld.AllSnoopers6, true, 60 * time.Second},
		{"advertisement, interval 0", mld.TypeMRDAdvertisement6, 0, body, mld.AllSnoopers6, true, 3 * igmp.MRDDefaultInterval},
		{"advertisement, interval 255", mld.TypeMRDAdvertisement6, 255, body, mld.AllSnoopers6, true, 765 * time.Second},
		{"solicitation", mld.TypeMRDSolicitation6, 0, nil, netip.MustParseAddr("ff02::2"), true, 0},
		{"termination", mld.TypeMRDTermination6, 0, nil, mld.AllSnoopers6, true, 0},
		{"type 150", 150, 0, body, mld.AllSnoopers6, false, 0},
		{"type 154", 154, 0, body, mld.AllSnoopers6, false, 0},
		{"mld query", mld.TypeQuery, 0, make([]byte, 20), mld.AllSnoopers6, false, 0},
		{"neighbour solicitation", 135, 0, make([]byte, 20), netip.MustParseAddr("ff02::1:ff00:1"), false, 0},
	} {
		for _, exts := range [][]gopacket.SerializableLayer{nil, ra} {
			nh := layers.IPProtocolICMPv6
			if exts != nil {
				nh = layers.IPProtocolIPv6HopByHop
			}
			f := gpFrame(t, rtSrc, c.dst, nh, exts, mrdICMP(c.typ, c.code, c.body)...)
			src, dst, b, ok := mld.MRDFromFrame(f)
			if ok != c.ok {
				t.Errorf("%s (%d extension headers): ok %v, want %v", c.name, len(exts), ok, c.ok)
				continue
			}
			if !ok {
				if src.IsValid() || dst.IsValid() || b != nil {
					t.Errorf("%s: not MRD, yet %v %v % x", c.name, src, dst, b)
				}
				continue
			}
			// gopacket pads short frames to 60 bytes: the view ends with
			// the IPv6 payload.
			end := 54 + int(binary.BigEndian.Uint16(f[18:]))
			if src != rtSrc || dst != c.dst || len(b) != 4+len(c.body) || &b[len(b)-1] != &f[end-1] || cap(b) != len(b) ||
				b[0] != c.typ || b[1] != c.code || !slices.Equal(b[4:], c.body) {
				t.Errorf("%s: %v -> %v % x", c.name, src, dst, b)
			}
			// gopacket's checksum, over the pseudo-header.
			if !mld.VerifyPseudo(src, dst, mld.NextHeaderICMPv6, b) {
				t.Errorf("%s: gopacket's checksum does not verify", c.name)
			}
			typ, hold, r := igmp.ParseMRD6(src, dst, b)
			if r != igmp.OK || typ != c.typ || hold != c.hold {
				t.Errorf("%s: ParseMRD6 = %d %v %v, want %d %v", c.name, typ, hold, r, c.typ, c.hold)
			}
			// gopacket decodes the same ICMPv6 type.
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			if ic, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ic == nil || ic.TypeCode.Type() != c.typ {
				t.Errorf("%s: gopacket decodes %v", c.name, p)
			}
		}
	}
}

func TestParsePIM6(t *testing.T) {
	dst := mld.AllPIMRouters6
	flip := func(b []byte, i int) []byte { b = slices.Clone(b); b[i] ^= 0x10; return b }
	register := pim6(rtSrc, dst, igmp.PIMRegister, append(make([]byte, 4), 0x60, 0, 0, 0)...)
	registerHeader := slices.Clone(register)
	registerHeader[2], registerHeader[3] = 0, 0
	binary.BigEndian.PutUint16(registerHeader[2:], refSum(rtSrc, dst, mld.NextHeaderPIM, registerHeader[:8]))
	v4Hello := make([]byte, 10)
	igmp.PutPIMHello(v4Hello, 105*time.Second) // checksum without the pseudo-header
	for _, c := range []struct {
		name string
		b    []byte
		typ  uint8
		hold time.Duration
		ok   bool
	}{
		{"hello", pim6(rtSrc, dst, igmp.PIMHello, holdtime(30)...), igmp.PIMHello, 30 * time.Second, true},
		{"hello without options", pim6(rtSrc, dst, igmp.PIMHello), igmp.PIMHello, igmp.PIMDefaultHoldtime, true},
		{"hello among options", pim6(rtSrc, dst, igmp.PIMHello, slices.Concat([]byte{0, 20, 0, 4, 1, 2, 3, 4}, holdtime(7))...), igmp.PIMHello, 7 * time.Second, true},
		{"goodbye", pim6(rtSrc, dst, igmp.PIMHello, holdtime(0)...), igmp.PIMHello, 0, true},
		{"forever", pim6(rtSrc, dst, igmp.PIMHello, holdtime(0xffff)...), igmp.PIMHello, igmp.HoldForever, true},
		{"odd length", pim6(rtSrc, dst, igmp.PIMHello, 0, 21, 0, 1, 9), igmp.PIMHello, igmp.PIMDefaultHoldtime, true},
		{"join/prune", pim6(rtSrc, dst, 3, make([]byte, 8)...), 3, 0, true},
		{"register, checksum over the whole", register, igmp.PIMRegister, 0, true},
		{"register, checksum over the header", registerHeader, igmp.PIMRegister, 0, true},
		{"bad checksum", flip(pim6(rtSrc, dst, igmp.PIMHello, holdtime(30)...), 9), 0, 0, false},
		{"no pseudo-header", v4Hello, 0, 0, false},
		{"version 1", func() []byte {
			b := slices.Concat([]byte{1<<4 | igmp.PIMHello, 0, 0, 0}, holdtime(30))
			binary.BigEndian.PutUint16(b[2:], refSum(rtSrc, dst, mld.NextHeaderPIM, b))
			return b
		}(), 0, 0, false},
		{"short", pim6(rtSrc, dst, igmp.PIMHello)[:3], 0, 0, false},
		{"empty", nil, 0, 0, false},
		{"option past the end", pim6(rtSrc, dst, igmp.PIMHello, 0, 1, 0, 2, 0), 0, 0, false},
		{"holdtime of 3 bytes", pim6(rtSrc, dst, igmp.PIMHello, 0, 1, 0, 3, 0, 0, 5), 0, 0, false},
	} {
		typ, hold, ok := igmp.ParsePIM6(rtSrc, dst, c.b)
		if typ != c.typ || hold != c.hold || ok != c.ok {
			t.Errorf("%s: ParsePIM6 = %d %v %v, want %d %v %v", c.name, typ, hold, ok, c.typ, c.hold, c.ok)
		}
		if c.ok {
			// The pseudo-header counts: another source does not verify.
			if _, _, ok := igmp.ParsePIM6(netip.MustParseAddr("fe80::1"), dst, c.b); ok {
				t.Errorf("%s: verifies from another source", c.name)
			}
		}
	}
}

func TestParseMRD6(t *testing.T) {
	dst := mld.AllSnoopers6
	mrd := func(b ...byte) []byte {
		binary.BigEndian.PutUint16(b[2:], refSum(rtSrc, dst, mld.NextHeaderICMPv6, b))
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		typ  uint8
		hold time.Duration
		r    igmp.Reason
	}{
		{"advertisement", mrd(151, 2, 0, 0, 0, 125, 0, 2), 151, 6 * time.Second, igmp.OK},
		{"advertisement with more", mrd(151, 2, 0, 0, 0, 125, 0, 2, 9, 9), 151, 6 * time.Second, igmp.OK},
		{"solicitation", mrd(152, 0, 0, 0), 152, 0, igmp.OK},
		{"termination", mrd(153, 0, 0, 0), 153, 0, igmp.OK},
		{"advertisement of 7", mrd(151, 2, 0, 0, 0, 125, 0), 0, 0, igmp.Truncated},
		{"termination of 3", []byte{153, 0, 0}, 0, 0, igmp.Truncated},
		{"bad checksum", func() []byte { b := mrd(151, 2, 0, 0, 0, 125, 0, 2); b[7] ^= 1; return b }(), 0, 0, igmp.BadChecksum},
		{"ipv4 type", mrd(igmp.TypeMRDAdvertisement, 2, 0, 0, 0, 125, 0, 2), 0, 0, igmp.UnknownType},
		{"mld query", mrd(130, 0, 0, 0, 0, 0, 0, 0), 0, 0, igmp.UnknownType},
		{"empty", nil, 0, 0, igmp.UnknownType},
	} {
		typ, hold, r := igmp.ParseMRD6(rtSrc, dst, c.b)
		if typ != c.typ || hold != c.hold || r != c.r {
			t.Errorf("%s: ParseMRD6 = %d %v %v, want %d %v %v", c.name, typ, hold, r, c.typ, c.hold, c.r)
		}
	}
	// The pseudo-header counts.
	if _, _, r := igmp.ParseMRD6(rtSrc, mld.AllPIMRouters6, mrd(153, 0, 0, 0)); r != igmp.BadChecksum {
		t.Errorf("a termination summed for ff02::6a, sent to ff02::d: %v", r)
	}
}

func TestRouterAllocs(t *testing.T) {
	pf := gpFrame(t, rtSrc, mld.AllPIMRouters6, layers.IPProtocolIPv6HopByHop,
		[]gopacket.SerializableLayer{hbhRouterAlert(mld.NextHeaderPIM)}, gopacket.Payload(pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMHello, holdtime(105)...)))
	mf := gpFrame(t, rtSrc, mld.AllSnoopers6, layers.IPProtocolIPv6HopByHop,
		[]gopacket.SerializableLayer{hbhRouterAlert(layers.IPProtocolICMPv6)}, mrdICMP(mld.TypeMRDAdvertisement6, 20, []byte{0, 125, 0, 2})...)
	if a := testing.AllocsPerRun(100, func() {
		src, dst, b, ok := mld.PIMFromFrame(pf)
		if _, _, ok2 := igmp.ParsePIM6(src, dst, b); !ok || !ok2 {
			t.Fatal("PIM refused")
		}
		src, dst, b, ok = mld.MRDFromFrame(mf)
		if _, _, r := igmp.ParseMRD6(src, dst, b); !ok || r != igmp.OK {
			t.Fatal("MRD refused")
		}
	}); a != 0 {
		t.Errorf("%.1f allocations", a)
	}
}

// checkUpper checks what PIMFromFrame or MRDFromFrame found in frame: on
// ok, addresses from the IPv6 header and a view that ends where the IPv6
// payload does; FromFrame agrees that the frame carries no MLD.
func checkUpper(t *testing.T, name string, frame []byte, src, dst netip.Addr, b []byte, ok bool) {
	t.Helper()
	_, r := mld.FromFrame(frame)
	if !ok {
		if src.IsValid() || dst.IsValid() || b != nil {
			t.Fatalf("%s: not found, yet %v %v % x", name, src, dst, b)
		}
		return
	}
	if r != mld.NotMLD {
		t.Fatalf("%s: found, and FromFrame says %v", name, r)
	}
	if len(frame) < 54 || frame[12] != 0x86 || frame[13] != 0xdd || frame[14]>>4 != 6 {
		t.Fatalf("%s: found in a frame that is not IPv6", name)
	}
	end := 54 + int(binary.BigEndian.Uint16(frame[18:]))
	if end > len(frame) || src != netip.AddrFrom16([16]byte(frame[22:38])) || dst != netip.AddrFrom16([16]byte(frame[38:54])) ||
		cap(b) != len(b) || len(b) > 0 && &b[len(b)-1] != &frame[end-1] || len(b) > end-54 {
		t.Fatalf("%s: %v -> %v % x is not the frame's", name, src, dst, b)
	}
}

// fuzzSeeds are frames of PIM and MRD, plain and behind extension headers.
func fuzzSeeds(f *testing.F) {
	hello := pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMHello, holdtime(105)...)
	f.Add(gpFrame(f, rtSrc, mld.AllPIMRouters6, mld.NextHeaderPIM, nil, gopacket.Payload(hello)))
	f.Add(gpFrame(f, rtSrc, mld.AllPIMRouters6, layers.IPProtocolIPv6Destination, []gopacket.SerializableLayer{destOpts(mld.NextHeaderPIM)}, gopacket.Payload(hello)))
	f.Add(gpFrame(f, rtSrc, mld.AllSnoopers6, layers.IPProtocolIPv6HopByHop, []gopacket.SerializableLayer{hbhRouterAlert(layers.IPProtocolICMPv6)},
		mrdICMP(mld.TypeMRDAdvertisement6, 20, []byte{0, 125, 0, 2})...))
	f.Add(gpFrame(f, rtSrc, mld.AllSnoopers6, layers.IPProtocolICMPv6, nil, mrdICMP(mld.TypeMRDTermination6, 0, nil)...))
}

// FuzzPIMFromFrame checks that PIMFromFrame never panics, and that what it
// finds is the frame's PIM (checkUpper) and no MRD.
func FuzzPIMFromFrame(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		src, dst, b, ok := mld.PIMFromFrame(frame)
		checkUpper(t, "PIMFromFrame", frame, src, dst, b, ok)
		if _, _, _, mrd := mld.MRDFromFrame(frame); ok && mrd {
			t.Fatal("both PIM and MRD")
		}
		if ok && len(frame) > 54 && frame[20] == mld.NextHeaderPIM && len(b) != int(binary.BigEndian.Uint16(frame[18:])) {
			t.Fatalf("PIM right after the IPv6 header is %d bytes", len(b))
		}
	})
}

// FuzzMRDFromFrame checks that MRDFromFrame never panics, and that what it
// finds is the frame's ICMPv6 message of an MRD type.
func FuzzMRDFromFrame(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		src, dst, b, ok := mld.MRDFromFrame(frame)
		checkUpper(t, "MRDFromFrame", frame, src, dst, b, ok)
		if ok && (len(b) == 0 || b[0] < mld.TypeMRDAdvertisement6 || b[0] > mld.TypeMRDTermination6) {
			t.Fatalf("MRDFromFrame found % x", b)
		}
	})
}

// FuzzParsePIM6 checks that ParsePIM6 never panics, and that what it
// accepts is PIMv2 whose checksum verifies over the pseudo-header (over the
// whole message, or a Register's header), with a holdtime only for a
// Hello.
func FuzzParsePIM6(f *testing.F) {
	f.Add(rtSrc.AsSlice(), mld.AllPIMRouters6.AsSlice(), pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMHello, holdtime(105)...))
	f.Add(rtSrc.AsSlice(), mld.AllPIMRouters6.AsSlice(), pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMHello, 0, 20, 0, 4, 1, 2, 3, 4))
	f.Add(rtSrc.AsSlice(), mld.AllPIMRouters6.AsSlice(), pim6(rtSrc, mld.AllPIMRouters6, igmp.PIMRegister, make([]byte, 8)...))
	f.Fuzz(func(t *testing.T, s, d, b []byte) {
		if len(s) != 16 || len(d) != 16 {
			return
		}
		src, dst := netip.AddrFrom16([16]byte(s)), netip.AddrFrom16([16]byte(d))
		typ, hold, ok := igmp.ParsePIM6(src, dst, b)
		if !ok {
			if typ != 0 || hold != 0 {
				t.Fatalf("refused, yet %d %v", typ, hold)
			}
			return
		}
		if len(b) < 4 || b[0]>>4 != 2 || typ != b[0]&0x0f || hold < 0 || typ != igmp.PIMHello && hold != 0 {
			t.Fatalf("accepted % x as %d %v", b, typ, hold)
		}
		whole := refSum(src, dst, mld.NextHeaderPIM, b) == 0
		header := typ == igmp.PIMRegister && len(b) >= 8 && refSum(src, dst, mld.NextHeaderPIM, b[:8]) == 0
		if !whole && !header {
			t.Fatalf("accepted % x whose checksum does not verify", b)
		}
	})
}

// FuzzParseMRD6 checks that ParseMRD6 never panics, and that what it
// accepts is an MRD message of its least length whose checksum verifies
// over the pseudo-header.
func FuzzParseMRD6(f *testing.F) {
	adv := []byte{151, 20, 0, 0, 0, 125, 0, 2}
	binary.BigEndian.PutUint16(adv[2:], refSum(rtSrc, mld.AllSnoopers6, mld.NextHeaderICMPv6, adv))
	term := []byte{153, 0, 0, 0}
	binary.BigEndian.PutUint16(term[2:], refSum(rtSrc, mld.AllSnoopers6, mld.NextHeaderICMPv6, term))
	f.Add(rtSrc.AsSlice(), mld.AllSnoopers6.AsSlice(), adv)
	f.Add(rtSrc.AsSlice(), mld.AllSnoopers6.AsSlice(), term)
	f.Fuzz(func(t *testing.T, s, d, b []byte) {
		if len(s) != 16 || len(d) != 16 {
			return
		}
		src, dst := netip.AddrFrom16([16]byte(s)), netip.AddrFrom16([16]byte(d))
		typ, hold, r := igmp.ParseMRD6(src, dst, b)
		switch r {
		case igmp.OK:
		case igmp.Truncated, igmp.BadChecksum, igmp.UnknownType:
			if typ != 0 || hold != 0 {
				t.Fatalf("refused (%v), yet %d %v", r, typ, hold)
			}
			return
		default:
			t.Fatalf("reason %v", r)
		}
		if len(b) < 4 || typ != b[0] || typ < mld.TypeMRDAdvertisement6 || typ > mld.TypeMRDTermination6 ||
			refSum(src, dst, mld.NextHeaderICMPv6, b) != 0 {
			t.Fatalf("accepted % x as %d", b, typ)
		}
		want := time.Duration(0)
		if typ == mld.TypeMRDAdvertisement6 {
			if len(b) < 8 {
				t.Fatalf("accepted an advertisement of %d bytes", len(b))
			}
			want = 3 * time.Duration(b[1]) * time.Second
			if b[1] == 0 {
				want = 3 * igmp.MRDDefaultInterval
			}
		}
		if hold != want {
			t.Fatalf("hold %v, want %v", hold, want)
		}
	})
}
