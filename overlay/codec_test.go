package overlay

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"unsafe"
)

// Addresses of the outer headers the tests build (RFC 2544 underlay range).
var (
	testSrc = netip.MustParseAddr("198.18.0.1")
	testDst = netip.MustParseAddr("198.18.0.2")
)

// Sinks keep the compiler from discarding the work of benchmarks and
// allocation tests.
var (
	sinkBytes  []byte
	sinkReason Reason
	sinkPort   uint16
)

// testFrame returns an inner Ethernet frame of n >= 14 bytes from
// 02:6d:c6:13:00:01 to 02:6d:c6:13:00:02. When n >= 42 it carries an IPv4
// UDP header whose source port is flow, so frames of different flows hash
// differently. Every payload byte is nonzero, so that cutting the frame
// short changes any checksum over it.
func testFrame(n int, flow uint16) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i%251) + 1
	}
	copy(f[0:6], []byte{0x02, 0x6d, 198, 19, 0, 2})
	copy(f[6:12], []byte{0x02, 0x6d, 198, 19, 0, 1})
	if n < 42 {
		binary.BigEndian.PutUint16(f[12:14], 0x88b5) // local experimental EtherType
		return f
	}
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(n-14))
	binary.BigEndian.PutUint16(ip[4:6], 1)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8] = 64
	ip[9] = ProtoUDP
	binary.BigEndian.PutUint16(ip[10:12], 0)
	copy(ip[12:16], []byte{198, 19, 0, 1})
	copy(ip[16:20], []byte{198, 19, 0, 2})
	binary.BigEndian.PutUint16(ip[10:12], refChecksum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:22], flow)
	binary.BigEndian.PutUint16(ip[22:24], 4321)
	binary.BigEndian.PutUint16(ip[24:26], uint16(n-34))
	binary.BigEndian.PutUint16(ip[26:28], 0)
	return f
}

// withHeadroom returns a buffer that holds frame at Headroom, as a TAP read
// leaves it.
func withHeadroom(frame []byte) []byte {
	buf := make([]byte, Headroom+len(frame))
	copy(buf[Headroom:], frame)
	return buf
}

// ipv4 returns payload behind a 20-byte IPv4 header from testSrc to
// testDst, as a raw socket delivers it.
func ipv4(proto uint8, payload []byte) []byte {
	p := make([]byte, IPv4HeaderLen+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:6], 0x1234)
	binary.BigEndian.PutUint16(p[6:8], 0x4000) // DF
	p[8] = 64
	p[9] = proto
	src, dst := testSrc.As4(), testDst.As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:12], refChecksum(p[:IPv4HeaderLen]))
	copy(p[IPv4HeaderLen:], payload)
	return p
}

// mutate returns a copy of pkt changed by fn.
func mutate(pkt []byte, fn func(p []byte)) []byte {
	p := bytes.Clone(pkt)
	fn(p)
	return p
}

// refChecksum is a deliberately naive RFC 1071 checksum, one 16-bit word at
// a time with the end-around carry folded at once, as the RFC describes it.
// It is the oracle for Checksum.
func refChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
		if s > 0xffff {
			s = s&0xffff + 1
		}
	}
	return ^uint16(s)
}

// refVerifies reports whether b, which holds its own checksum field, sums to
// all ones: refChecksum(b) is then 0.
func refVerifies(b []byte) bool { return refChecksum(b) == 0 }

// isSubslice reports whether sub lies inside the memory of of.
func isSubslice(sub, of []byte) bool {
	if len(sub) == 0 {
		return true
	}
	if len(of) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(of)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= lo && p+uintptr(len(sub)) <= lo+uintptr(len(of))
}

func TestChecksumKnownValues(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want uint16
	}{
		{"empty", nil, 0xffff},
		// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
		{"rfc1071", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, ^uint16(0xddf2)},
		{"odd byte is padded", []byte{0xab}, ^uint16(0xab00)},
		// A well-known IPv4 header with its checksum field zeroed.
		{"ipv4 header", []byte{
			0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
			0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
		}, 0xb861},
		{"all ones", bytes.Repeat([]byte{0xff}, 1<<16+1), 0x00ff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(tt.in); got != tt.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tt.want)
			}
			if got := refChecksum(tt.in); got != tt.want {
				t.Errorf("refChecksum = %#04x, want %#04x (the oracle is wrong)", got, tt.want)
			}
		})
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := make([]int, 0, 300)
	for n := 0; n <= 70; n++ {
		lengths = append(lengths, n) // every alignment of the 8-byte loop, odd and even
	}
	for range 200 {
		lengths = append(lengths, rng.IntN(9000))
	}
	lengths = append(lengths, 1499, 1500, 9001)
	for _, n := range lengths {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := Checksum(b), refChecksum(b); got != want {
			t.Fatalf("len %d: Checksum = %#04x, reference = %#04x", n, got, want)
		}
		// A checksum stored in the data makes the whole verify.
		if n >= 2 {
			binary.BigEndian.PutUint16(b[0:2], 0)
			binary.BigEndian.PutUint16(b[0:2], Checksum(b))
			if !refVerifies(b) {
				t.Fatalf("len %d: data with its checksum stored does not verify", n)
			}
		}
	}
}

func TestParseIPv4(t *testing.T) {
	payload := []byte("meshcast outer payload")
	valid := ipv4(ProtoGRE, payload)
	tests := []struct {
		name        string
		pkt         []byte
		want        Reason
		wantProto   uint8
		wantPayload []byte
	}{
		{"valid", valid, OK, ProtoGRE, payload},
		{"udp", ipv4(ProtoUDP, payload), OK, ProtoUDP, payload},
		{"empty payload", ipv4(ProtoGRE, nil), OK, ProtoGRE, []byte{}},
		{"trailing bytes trimmed", append(bytes.Clone(valid), 0, 0, 0, 0), OK, ProtoGRE, payload},
		{"DF only", mutate(valid, func(p []byte) { p[6] = 0x40 }), OK, ProtoGRE, payload},
		{"no flags", mutate(valid, func(p []byte) { p[6] = 0 }), OK, ProtoGRE, payload},
		{"nil", nil, ReasonTruncated, 0, nil},
		{"19 bytes", valid[:19], ReasonTruncated, 0, nil},
		{"version 6", mutate(valid, func(p []byte) { p[0] = 0x65 }), ReasonIPHeader, 0, nil},
		{"version 0", mutate(valid, func(p []byte) { p[0] = 0x05 }), ReasonIPHeader, 0, nil},
		{"version 15", mutate(valid, func(p []byte) { p[0] = 0xf5 }), ReasonIPHeader, 0, nil},
		{"IHL 4", mutate(valid, func(p []byte) { p[0] = 0x44 }), ReasonIPHeader, 0, nil},
		{"IHL 0", mutate(valid, func(p []byte) { p[0] = 0x40 }), ReasonIPHeader, 0, nil},
		{"total below IHL", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], 19) }), ReasonIPHeader, 0, nil},
		{"total zero", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], 0) }), ReasonIPHeader, 0, nil},
		{"total beyond packet", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], uint16(len(p)+1)) }), ReasonTruncated, 0, nil},
		{"total 65535", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], 0xffff) }), ReasonTruncated, 0, nil},
		{"options IHL 6", func() []byte {
			p := make([]byte, 24+len(payload))
			copy(p, valid[:20])
			p[0] = 0x46
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			p[20] = 1 // NOP options
			p[21], p[22], p[23] = 1, 1, 0
			copy(p[24:], payload)
			return p
		}(), ReasonIPOptions, 0, nil},
		{"options IHL 15", func() []byte {
			p := make([]byte, 60)
			copy(p, valid[:20])
			p[0] = 0x4f
			binary.BigEndian.PutUint16(p[2:4], 60)
			return p
		}(), ReasonIPOptions, 0, nil},
		{"IHL 15 beyond packet", mutate(valid, func(p []byte) { p[0] = 0x4f; binary.BigEndian.PutUint16(p[2:4], 60) }), ReasonTruncated, 0, nil},
		{"more fragments", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[6:8], 0x2000) }), ReasonIPFragment, 0, nil},
		{"fragment offset 1", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[6:8], 0x0001) }), ReasonIPFragment, 0, nil},
		{"fragment offset max", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[6:8], 0x1fff) }), ReasonIPFragment, 0, nil},
		{"last fragment with DF", mutate(valid, func(p []byte) { binary.BigEndian.PutUint16(p[6:8], 0x4010) }), ReasonIPFragment, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, proto, got, r := ParseIPv4(tt.pkt)
			if r != tt.want {
				t.Fatalf("reason = %v, want %v", r, tt.want)
			}
			if r != OK {
				if got != nil {
					t.Errorf("payload = %x on a drop, want nil", got)
				}
				return
			}
			if src != testSrc {
				t.Errorf("src = %v, want %v", src, testSrc)
			}
			if proto != tt.wantProto {
				t.Errorf("proto = %d, want %d", proto, tt.wantProto)
			}
			if !bytes.Equal(got, tt.wantPayload) {
				t.Errorf("payload = %q, want %q", got, tt.wantPayload)
			}
			if !isSubslice(got, tt.pkt) {
				t.Error("payload is not a subslice of the packet")
			}
		})
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]Reason{}
	for r := range NumReasons {
		s := r.String()
		if s == "" || s == "unknown" {
			t.Errorf("Reason(%d) has no name", r)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Reason(%d) and Reason(%d) share the name %q", prev, r, s)
		}
		seen[s] = r
	}
	if got := NumReasons.String(); got != "unknown" {
		t.Errorf("NumReasons.String() = %q, want unknown", got)
	}
	if got := ReasonGREKey.String(); got != "gre_key" {
		t.Errorf("ReasonGREKey.String() = %q, want gre_key", got)
	}
}

func TestMACFor(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"198.19.0.1", "02:6d:c6:13:00:01"},
		{"198.19.255.254", "02:6d:c6:13:ff:fe"},
		{"0.0.0.0", "02:6d:00:00:00:00"},
		{"255.255.255.255", "02:6d:ff:ff:ff:ff"},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		mac := MACFor(a)
		if got := mac.String(); got != tt.want {
			t.Errorf("MACFor(%v) = %s, want %s", a, got, tt.want)
		}
		if len(mac) != 6 {
			t.Fatalf("MACFor(%v) has %d bytes", a, len(mac))
		}
		if mac[0]&0x01 != 0 {
			t.Errorf("MACFor(%v) = %s is multicast", a, mac)
		}
		if mac[0]&0x02 == 0 {
			t.Errorf("MACFor(%v) = %s is not locally administered", a, mac)
		}
		// Stable: the same address gives the same MAC, and the result is
		// not shared, so a caller may modify it.
		again := MACFor(a)
		if !bytes.Equal(mac, again) {
			t.Errorf("MACFor(%v) changed: %s then %s", a, mac, again)
		}
		mac[5] ^= 0xff
		if bytes.Equal(mac, MACFor(a)) {
			t.Errorf("MACFor(%v) returns shared memory", a)
		}
	}
	if bytes.Equal(MACFor(netip.MustParseAddr("198.19.0.1")), MACFor(netip.MustParseAddr("198.19.0.2"))) {
		t.Error("different addresses give the same MAC")
	}
}

// TestAllocs proves that the data path allocates nothing per packet.
func TestAllocs(t *testing.T) {
	const n = 1400
	frame := testFrame(n, 7)
	gre := NewGRE(0x01020304, true)
	greBuf := withHeadroom(frame)
	grePkt := ipv4(ProtoGRE, gre.Encap(withHeadroom(frame), n))
	vx := NewVXLAN(0xabcdef, DefaultVXLANPort)
	vxBuf := withHeadroom(frame)
	vxPkt := vx.Encap(withHeadroom(frame), n)[UDPHeaderLen:]

	tests := []struct {
		name string
		fn   func()
	}{
		{"GRE Encap", func() { sinkBytes = gre.Encap(greBuf, n) }},
		{"GRE Decap", func() { sinkBytes, sinkReason = gre.Decap(grePkt) }},
		{"VXLAN Encap", func() { sinkBytes = vx.Encap(vxBuf, n) }},
		{"VXLAN Decap", func() { sinkBytes, sinkReason = vx.Decap(vxPkt) }},
		{"FlowPort", func() { sinkPort = FlowPort(frame) }},
		{"ParseIPv4", func() { _, _, sinkBytes, sinkReason = ParseIPv4(grePkt) }},
		{"ParseGRE", func() { _, _, sinkReason = ParseGRE(grePkt[IPv4HeaderLen:]) }},
		{"Checksum", func() { sinkPort = Checksum(frame) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.fn); got != 0 {
				t.Errorf("%s allocates %v times per packet, want 0", tt.name, got)
			}
		})
	}
	if sinkReason != OK {
		t.Fatalf("the packets of the allocation test were dropped: %v", sinkReason)
	}
}

// netipFrom returns the IPv4 address in the 4 bytes of b.
func netipFrom(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }

// benchCodecs are the codecs the benchmarks run, with how the underlay
// socket delivers what Encap produced: GRE through a raw socket with the
// outer IPv4 header, VXLAN through a UDP socket without IPv4 and UDP.
func benchCodecs() []struct {
	codec Codec
	wire  func(pkt []byte) []byte
} {
	return []struct {
		codec Codec
		wire  func(pkt []byte) []byte
	}{
		{NewGRE(testKey, true), func(pkt []byte) []byte { return ipv4(ProtoGRE, pkt) }},
		{NewVXLAN(testVNI, DefaultVXLANPort), func(pkt []byte) []byte { return pkt[UDPHeaderLen:] }},
	}
}

func BenchmarkEncap(b *testing.B) {
	for _, c := range benchCodecs() {
		for _, size := range []int{64, 1400} {
			b.Run(c.codec.Name()+"/inner="+strconv.Itoa(size), func(b *testing.B) {
				buf := withHeadroom(testFrame(size, 1))
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					sinkBytes = c.codec.Encap(buf, size)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			})
		}
	}
}

func BenchmarkDecap(b *testing.B) {
	for _, c := range benchCodecs() {
		for _, size := range []int{64, 1400} {
			b.Run(c.codec.Name()+"/inner="+strconv.Itoa(size), func(b *testing.B) {
				pkt := c.wire(c.codec.Encap(withHeadroom(testFrame(size, 1)), size))
				if _, r := c.codec.Decap(pkt); r != OK {
					b.Fatalf("Decap: %v", r)
				}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					sinkBytes, _ = c.codec.Decap(pkt)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			})
		}
	}
}
