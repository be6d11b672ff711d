package overlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const testVNI = 0xabcdef

// vxlanBytes returns a UDP payload: a VXLAN header for vni, then inner.
func vxlanBytes(vni uint32, inner []byte) []byte {
	b := make([]byte, VXLANHeaderLen+len(inner))
	PutVXLAN(b, vni)
	copy(b[VXLANHeaderLen:], inner)
	return b
}

func TestPutParseVXLAN(t *testing.T) {
	for _, vni := range []uint32{0, 1, 0xff, 0x100, testVNI, MaxVNI} {
		b := make([]byte, VXLANHeaderLen)
		PutVXLAN(b, vni)
		want := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
		if !bytes.Equal(b, want) {
			t.Errorf("PutVXLAN(%#x) = %x, want %x", vni, b, want)
		}
		got, r := ParseVXLAN(b)
		if r != OK || got != vni {
			t.Errorf("ParseVXLAN(PutVXLAN(%#x)) = %#x, %v", vni, got, r)
		}
		var vx layers.VXLAN
		if err := vx.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil || !vx.ValidIDFlag || vx.VNI != vni {
			t.Errorf("gopacket reads PutVXLAN(%#x) as I=%v VNI=%#x (%v)", vni, vx.ValidIDFlag, vx.VNI, err)
		}
	}
	// A VNI above 24 bits is cut to 24 bits, never spilling into the flags
	// or the reserved byte.
	b := make([]byte, VXLANHeaderLen)
	PutVXLAN(b, 0xff000001)
	if got, r := ParseVXLAN(b); r != OK || got != 1 {
		t.Errorf("PutVXLAN(0xff000001) parses as %#x, %v", got, r)
	}
	if v := NewVXLAN(1<<24|5, 4789); v.VNI() != 5 {
		t.Errorf("NewVXLAN(1<<24|5).VNI() = %#x, want 5", v.VNI())
	}
}

// vxlanCase is one UDP payload given to the VXLAN codec's Decap.
type vxlanCase struct {
	name string
	vni  uint32 // the codec's VNI
	pkt  []byte
	want Reason
}

// vxlanCases are the table cases of Decap; FuzzVXLANDecap starts from them.
func vxlanCases() []vxlanCase {
	inner := testFrame(64, 1)
	valid := vxlanBytes(testVNI, inner)
	cs := []vxlanCase{
		{"ok", testVNI, valid, OK},
		{"ok VNI 0", 0, vxlanBytes(0, inner), OK},
		{"ok VNI max", MaxVNI, vxlanBytes(MaxVNI, inner), OK},
		{"ok inner 14", testVNI, valid[:VXLANHeaderLen+14], OK},
		{"ok jumbo", testVNI, vxlanBytes(testVNI, testFrame(8963+14, 2)), OK},
		{"empty", testVNI, nil, ReasonTruncated},
		{"7 bytes", testVNI, valid[:7], ReasonTruncated},
		{"no I flag", testVNI, mutate(valid, func(p []byte) { p[0] = 0 }), ReasonVXLANFlags},
		{"no I flag, other flags", testVNI, mutate(valid, func(p []byte) { p[0] = 0x80 }), ReasonVXLANFlags},
		{"no I flag, 7 bytes", testVNI, mutate(valid[:7], func(p []byte) { p[0] = 0 }), ReasonTruncated},
		{"wrong VNI", testVNI, vxlanBytes(testVNI+1, inner), ReasonVXLANVNI},
		{"VNI 0 for another", testVNI, vxlanBytes(0, inner), ReasonVXLANVNI},
		{"other VNI for 0", 0, valid, ReasonVXLANVNI},
		{"inner 13", testVNI, valid[:VXLANHeaderLen+13], ReasonInnerShort},
		{"inner 0", testVNI, valid[:VXLANHeaderLen], ReasonInnerShort},
	}
	// Each reserved bit of the flags byte, and each reserved byte, set on
	// its own (lowest and highest bit).
	for bit := byte(1); bit != 0; bit <<= 1 {
		if bit == vxlanFlagI {
			continue
		}
		cs = append(cs, vxlanCase{fmt.Sprintf("flag bit %#02x", bit), testVNI,
			mutate(valid, func(p []byte) { p[0] |= bit }), ReasonVXLANReserved})
	}
	for _, i := range []int{1, 2, 3, 7} {
		for _, v := range []byte{0x01, 0x80, 0xff} {
			cs = append(cs, vxlanCase{fmt.Sprintf("reserved byte %d = %#02x", i, v), testVNI,
				mutate(valid, func(p []byte) { p[i] = v }), ReasonVXLANReserved})
		}
	}
	return cs
}

func TestVXLANDecap(t *testing.T) {
	for _, tc := range vxlanCases() {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVXLAN(tc.vni, DefaultVXLANPort)
			inner, r := v.Decap(tc.pkt)
			if r != tc.want {
				t.Fatalf("Decap = %v, want %v", r, tc.want)
			}
			if r != OK {
				if inner != nil {
					t.Fatalf("Decap returned a frame with %v", r)
				}
				return
			}
			if !bytes.Equal(inner, tc.pkt[VXLANHeaderLen:]) || !isSubslice(inner, tc.pkt) {
				t.Fatal("Decap did not return the payload in place")
			}
			var vx layers.VXLAN
			if err := vx.DecodeFromBytes(tc.pkt, gopacket.NilDecodeFeedback); err != nil {
				t.Fatal(err)
			}
			if !vx.ValidIDFlag || vx.VNI != tc.vni || !bytes.Equal(vx.Payload, inner) {
				t.Errorf("gopacket: I=%v VNI=%#x, %d payload bytes", vx.ValidIDFlag, vx.VNI, len(vx.Payload))
			}
		})
	}
}

// TestVXLANDecapTruncated cuts a packet at every offset. A UDP socket
// delivers whole datagrams and VXLAN has no length field, so a cut after
// the inner Ethernet header is a valid shorter frame; every shorter cut is
// refused.
func TestVXLANDecapTruncated(t *testing.T) {
	v := NewVXLAN(testVNI, DefaultVXLANPort)
	pkt := vxlanBytes(testVNI, testFrame(64, 1))
	for i := 0; i <= len(pkt); i++ {
		want := OK
		switch {
		case i < VXLANHeaderLen:
			want = ReasonTruncated
		case i < VXLANHeaderLen+EthHeaderLen:
			want = ReasonInnerShort
		}
		inner, r := v.Decap(pkt[:i])
		if r != want {
			t.Errorf("Decap(pkt[:%d]) = %d bytes, %v; want %v", i, len(inner), r, want)
		}
		if r == OK && len(inner) != i-VXLANHeaderLen {
			t.Errorf("Decap(pkt[:%d]) = %d bytes", i, len(inner))
		}
	}
}

func TestVXLANEncap(t *testing.T) {
	for _, port := range []uint16{DefaultVXLANPort, 8472} {
		for _, vni := range []uint32{0, 1, testVNI, MaxVNI} {
			v := NewVXLAN(vni, port)
			if v.Name() != "vxlan" || v.HeaderLen() != 16 || v.Overhead() != 50 || v.VNI() != vni || v.Port() != port {
				t.Fatalf("NewVXLAN(%#x, %d): %q HeaderLen %d Overhead %d VNI %#x Port %d",
					vni, port, v.Name(), v.HeaderLen(), v.Overhead(), v.VNI(), v.Port())
			}
			var _ Codec = v
			for _, size := range []int{14, 42, 64, 1400, 8963 + 14} {
				t.Run(fmt.Sprintf("port=%d/vni=%#x/%d", port, vni, size), func(t *testing.T) {
					frame := testFrame(size, uint16(size))
					buf := append(withHeadroom(frame), 0xee, 0xee)
					out := v.Encap(buf, size)
					if len(out) != 16+size || &out[0] != &buf[Headroom-16] {
						t.Fatalf("Encap returned %d bytes, not in place", len(out))
					}
					if !bytes.Equal(out[16:], frame) {
						t.Fatal("Encap changed the frame")
					}
					sport := binary.BigEndian.Uint16(out[0:2])
					if sport < 49152 {
						t.Errorf("source port %d outside 49152-65535", sport)
					}
					if sport != FlowPort(frame) {
						t.Errorf("source port %d, FlowPort %d", sport, FlowPort(frame))
					}

					// The oracle: gopacket's UDP, then VXLAN, then Ethernet.
					var udp layers.UDP
					if err := udp.DecodeFromBytes(out, gopacket.NilDecodeFeedback); err != nil {
						t.Fatal(err)
					}
					if uint16(udp.SrcPort) != sport || uint16(udp.DstPort) != port {
						t.Errorf("UDP ports %d > %d, want %d > %d", udp.SrcPort, udp.DstPort, sport, port)
					}
					if int(udp.Length) != len(out) {
						t.Errorf("UDP length %d, want %d", udp.Length, len(out))
					}
					if udp.Checksum != 0 {
						t.Errorf("UDP checksum %#04x, want 0 (RFC 7348 section 5)", udp.Checksum)
					}
					var vx layers.VXLAN
					if err := vx.DecodeFromBytes(udp.Payload, gopacket.NilDecodeFeedback); err != nil {
						t.Fatal(err)
					}
					if !vx.ValidIDFlag || vx.VNI != vni || vx.GBPExtension || vx.GBPGroupPolicyID != 0 {
						t.Errorf("gopacket VXLAN I=%v VNI=%#x G=%v policy=%d", vx.ValidIDFlag, vx.VNI, vx.GBPExtension, vx.GBPGroupPolicyID)
					}
					eth := gopacket.NewPacket(vx.Payload, layers.LayerTypeEthernet, gopacket.Default)
					ethL, _ := eth.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
					if ethL == nil || !bytes.Equal(ethL.DstMAC, frame[0:6]) || !bytes.Equal(ethL.SrcMAC, frame[6:12]) {
						t.Fatalf("gopacket Ethernet: %v", eth.Layers())
					}
					if port == DefaultVXLANPort {
						// On the IANA port gopacket dispatches to VXLAN itself.
						p := gopacket.NewPacket(out, layers.LayerTypeUDP, gopacket.Default)
						if p.Layer(layers.LayerTypeVXLAN) == nil || p.Layer(layers.LayerTypeEthernet) == nil {
							t.Errorf("gopacket layers %v", p.Layers())
						}
					}

					inner, r := v.Decap(out[UDPHeaderLen:])
					if r != OK || !bytes.Equal(inner, frame) {
						t.Fatalf("Decap(Encap) = %v", r)
					}
				})
			}
		}
	}
}

// udpFrame returns a 100-byte Ethernet frame of a UDP flow.
func udpFrame(src, dst [4]byte, sport, dport uint16) []byte {
	f := testFrame(100, sport)
	ip := f[EthHeaderLen:]
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[22:24], dport)
	return f
}

func TestFlowPort(t *testing.T) {
	a, b := [4]byte{198, 19, 0, 1}, [4]byte{198, 19, 0, 2}
	base := udpFrame(a, b, 40000, 4321)
	port := FlowPort(base)

	// The same flow keeps its port whatever the payload or length.
	same := []struct {
		name  string
		frame []byte
	}{
		{"payload", mutate(base, func(p []byte) { p[60] ^= 0xff; p[99] = 0 })},
		{"IP id and TTL", mutate(base, func(p []byte) { p[18], p[22] = 0x77, 1 })},
		{"longer", append(bytes.Clone(base), 1, 2, 3)},
	}
	for _, tc := range same {
		if got := FlowPort(tc.frame); got != port {
			t.Errorf("%s: port %d, want %d for the same flow", tc.name, got, port)
		}
	}

	// Fragments of one datagram share a port: ports are hashed only for
	// unfragmented packets.
	first := mutate(base, func(p []byte) { binary.BigEndian.PutUint16(p[20:22], 0x2000) })
	later := mutate(base, func(p []byte) {
		binary.BigEndian.PutUint16(p[20:22], 0x00b9)
		copy(p[34:38], []byte{9, 9, 9, 9}) // payload bytes where ports would be
	})
	if FlowPort(first) != FlowPort(later) {
		t.Errorf("fragments of one datagram get ports %d and %d", FlowPort(first), FlowPort(later))
	}

	// Every frame, however short or odd, gets a port in the dynamic range.
	for n := 0; n <= 64; n++ {
		f := testFrame(max(n, 14), 9)[:n]
		if p := FlowPort(f); p < 49152 {
			t.Errorf("FlowPort of %d bytes = %d", n, p)
		}
		if n >= 14 {
			g := mutate(f, func(p []byte) { binary.BigEndian.PutUint16(p[12:14], 0x0800) })
			if p := FlowPort(g); p < 49152 {
				t.Errorf("FlowPort of %d bytes of IPv4 = %d", n, p)
			}
		}
	}

	// Different flows spread: with 16384 ports, 500 flows should collide
	// only a few times (about 7 expected by the birthday bound).
	for _, vary := range []struct {
		name string
		make func(i int) []byte
	}{
		{"source port", func(i int) []byte { return udpFrame(a, b, uint16(30000+i), 4321) }},
		{"destination port", func(i int) []byte { return udpFrame(a, b, 40000, uint16(1000+i)) }},
		{"source address", func(i int) []byte { return udpFrame([4]byte{198, 19, byte(i >> 8), byte(i)}, b, 40000, 4321) }},
		{"destination group", func(i int) []byte {
			return udpFrame(a, [4]byte{239, 1, byte(i >> 8), byte(i)}, 40000, 4321)
		}},
		{"source MAC", func(i int) []byte {
			return mutate(base, func(p []byte) { p[10], p[11] = byte(i>>8), byte(i) })
		}},
	} {
		ports := map[uint16]bool{}
		const flows = 500
		for i := range flows {
			ports[FlowPort(vary.make(i))] = true
		}
		if len(ports) < flows-25 {
			t.Errorf("%s: %d flows got only %d distinct ports", vary.name, flows, len(ports))
		}
	}
}

func FuzzVXLANDecap(f *testing.F) {
	for _, tc := range vxlanCases() {
		f.Add(tc.pkt, tc.vni)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, vni uint32) {
		vni &= MaxVNI
		v := NewVXLAN(vni, DefaultVXLANPort)
		inner, r := v.Decap(pkt)
		if r != OK {
			if inner != nil {
				t.Fatalf("%v with a frame of %d bytes", r, len(inner))
			}
			switch r {
			case ReasonTruncated:
				if len(pkt) >= VXLANHeaderLen {
					t.Fatalf("truncated with %d bytes", len(pkt))
				}
			case ReasonVXLANFlags:
				if pkt[0]&vxlanFlagI != 0 {
					t.Fatal("I flag refused although set")
				}
			case ReasonVXLANReserved:
				if pkt[0] == vxlanFlagI && pkt[1]|pkt[2]|pkt[3]|pkt[7] == 0 {
					t.Fatal("reserved bits refused although clear")
				}
			case ReasonVXLANVNI:
				if got := uint32(pkt[4])<<16 | uint32(pkt[5])<<8 | uint32(pkt[6]); got == vni {
					t.Fatalf("VNI %#x refused for itself", got)
				}
			case ReasonInnerShort:
				if len(pkt)-VXLANHeaderLen >= EthHeaderLen {
					t.Fatalf("inner frame of %d bytes called short", len(pkt)-VXLANHeaderLen)
				}
			default:
				t.Fatalf("VXLAN decoder gave %v", r)
			}
			return
		}
		if len(inner) < EthHeaderLen {
			t.Fatalf("accepted an inner frame of %d bytes", len(inner))
		}
		if !isSubslice(inner, pkt) || &inner[0] != &pkt[VXLANHeaderLen] || len(inner) != len(pkt)-VXLANHeaderLen {
			t.Fatal("inner frame is not the payload in place")
		}
		var re [VXLANHeaderLen]byte
		PutVXLAN(re[:], vni)
		if !bytes.Equal(re[:], pkt[:VXLANHeaderLen]) {
			t.Fatalf("accepted header %x re-encodes as %x", pkt[:VXLANHeaderLen], re)
		}
		var vx layers.VXLAN
		if err := vx.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil || !vx.ValidIDFlag || vx.VNI != vni {
			t.Fatalf("gopacket: I=%v VNI=%#x (%v)", vx.ValidIDFlag, vx.VNI, err)
		}
	})
}

// udp6Frame is an Ethernet frame of an IPv6 UDP datagram from src:sport
// to dst:dport with flow label 0x12345.
func udp6Frame(src, dst netip.Addr, sport, dport uint16) []byte {
	f := make([]byte, EthHeaderLen+IPv6HeaderLen+UDPHeaderLen+60)
	copy(f[0:12], testFrame(60, 1)[0:12])
	binary.BigEndian.PutUint16(f[12:14], 0x86dd)
	ip := f[EthHeaderLen:]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28|0x12345)
	binary.BigEndian.PutUint16(ip[4:6], UDPHeaderLen+60)
	ip[6], ip[7] = ProtoUDP, 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	binary.BigEndian.PutUint16(ip[40:42], sport)
	binary.BigEndian.PutUint16(ip[42:44], dport)
	return f
}

// TestFlowPort6: IPv6 inner flows get a port of their own, stable over
// the payload and the hop limit, spread over addresses, ports and flow
// labels; the fragments of a datagram share one; and none allocates.
func TestFlowPort6(t *testing.T) {
	a, b := netip.MustParseAddr("fd00:198:19::1"), netip.MustParseAddr("ff15::4d43:1")
	base := udp6Frame(a, b, 40000, 4321)
	port := FlowPort(base)
	if got := FlowPort(mutate(base, func(p []byte) { p[EthHeaderLen+7] = 1; p[len(p)-1] ^= 0xff })); got != port {
		t.Errorf("the same flow with another hop limit and payload: port %d, want %d", got, port)
	}
	if got := FlowPort(mutate(base, func(p []byte) { p[EthHeaderLen+3] ^= 1 })); got == port {
		t.Errorf("another flow label kept port %d", got)
	}
	// A fragment header (44) before UDP: ports are not hashed, so every
	// fragment of the datagram has the first one's port.
	frag := func(payload byte) []byte {
		return mutate(base, func(p []byte) { p[EthHeaderLen+6] = 44; p[EthHeaderLen+40] = payload })
	}
	if FlowPort(frag(17)) != FlowPort(frag(99)) {
		t.Errorf("fragments of one datagram get different ports")
	}
	for _, vary := range []struct {
		name string
		make func(i int) []byte
	}{
		{"source port", func(i int) []byte { return udp6Frame(a, b, uint16(30000+i), 4321) }},
		{"source address", func(i int) []byte {
			s := a.As16()
			s[14], s[15] = byte(i>>8), byte(i)
			return udp6Frame(netip.AddrFrom16(s), b, 40000, 4321)
		}},
		{"destination group", func(i int) []byte {
			d := b.As16()
			d[14], d[15] = byte(i>>8), byte(i)
			return udp6Frame(a, netip.AddrFrom16(d), 40000, 4321)
		}},
	} {
		ports := map[uint16]bool{}
		const flows = 500
		for i := range flows {
			p := FlowPort(vary.make(i))
			if p < 49152 {
				t.Fatalf("%s: port %d outside the dynamic range", vary.name, p)
			}
			ports[p] = true
		}
		if len(ports) < flows-25 {
			t.Errorf("%s: %d flows got only %d ports", vary.name, flows, len(ports))
		}
	}
	// Short and truncated IPv6 frames still get a port.
	for n := EthHeaderLen; n <= len(base); n++ {
		if p := FlowPort(base[:n]); p < 49152 {
			t.Errorf("FlowPort of %d bytes of IPv6 = %d", n, p)
		}
	}
	if allocs := testing.AllocsPerRun(1000, func() { sinkPort = FlowPort(base) }); allocs != 0 {
		t.Errorf("FlowPort of an IPv6 frame allocates %.1f", allocs)
	}
}

// FuzzFlowPort checks that FlowPort reads any frame, IPv4, IPv6 or other,
// without panicking, into the dynamic port range, and that the bytes past
// what it hashes (an IPv6 UDP payload) do not change the port.
func FuzzFlowPort(f *testing.F) {
	f.Add(udp6Frame(netip.MustParseAddr("fd00:198:19::1"), netip.MustParseAddr("ff15::1"), 1, 2))
	f.Add(udpFrame([4]byte{198, 19, 0, 1}, [4]byte{239, 1, 2, 3}, 1, 2))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		p := FlowPort(frame)
		if p < 49152 {
			t.Fatalf("port %d outside the dynamic range", p)
		}
		if len(frame) > EthHeaderLen+IPv6HeaderLen+4 && binary.BigEndian.Uint16(frame[12:14]) == 0x86dd {
			g := bytes.Clone(frame)
			g[len(g)-1] ^= 0xff
			if FlowPort(g) != p {
				t.Fatalf("the last payload byte of an IPv6 frame changed its port")
			}
		}
	})
}
