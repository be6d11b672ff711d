package igmp

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

var (
	testMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	testMAC2 = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// rawFrame builds an untagged Ethernet frame by hand: an IPv4 header with
// the given options (a multiple of 4 bytes), TTL 1, protocol proto, the
// addresses, a correct header checksum, then payload.
func rawFrame(opts []byte, proto uint8, src, dst string, payload []byte) []byte {
	hlen := 20 + len(opts)
	f := make([]byte, 14+hlen+len(payload))
	copy(f[0:6], []byte{0x01, 0x00, 0x5e, 0, 0, 1})
	copy(f[6:12], testMAC)
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0] = 0x40 | uint8(hlen/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(hlen+len(payload)))
	ip[8] = 1
	ip[9] = proto
	s, d := mustAddr(src).As4(), mustAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	copy(ip[20:], opts)
	copy(ip[hlen:], payload)
	return fixIP(f)
}

// fixIP recomputes the IPv4 header checksum of frame f, as far as the
// header is present, and returns f.
func fixIP(f []byte) []byte {
	ip := f[14:]
	hlen := int(ip[0]&0x0f) * 4
	if hlen < 20 || hlen > len(ip) {
		hlen = 20
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], refChecksum(ip[:hlen]))
	return f
}

// mutate returns a copy of f changed by fn.
func mutate(f []byte, fn func(f []byte)) []byte {
	c := slices.Clone(f)
	fn(c)
	return c
}

// gopacketFrame serializes an Ethernet frame with gopacket, which pads it to
// 60 bytes and computes the IPv4 checksum.
func gopacketFrame(ip *layers.IPv4, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: testMAC, DstMAC: net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 0x16}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, gopacket.Payload(payload))
	if err != nil {
		panic(err)
	}
	return slices.Clone(buf.Bytes())
}

var routerAlert = []byte{0x94, 0x04, 0x00, 0x00}

type frameCase struct {
	name     string
	f        []byte
	ok       bool
	src, dst string
	igmp     []byte // the IGMP bytes FromFrame must return
}

// frameCases feed TestFromFrame and seed FuzzFromFrame.
func frameCases() []frameCase {
	v2 := msg(0x16, 0, 0, 0, 239, 1, 1, 1)
	v3 := report3()
	built := make([]byte, 128)
	n := BuildQueryFrame(built, testMAC, mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), queryV3SG())
	built = built[:n]
	good := rawFrame(routerAlert, ProtoIGMP, "198.19.0.2", "239.1.1.1", v2)
	nops := bytes.Repeat([]byte{0x01}, 40) // IHL 15: 40 bytes of NOP options
	return []frameCase{
		{"BuildQueryFrame", built, true, "198.19.0.1", "224.0.0.1", queryV3SG()},
		{"router alert", good, true, "198.19.0.2", "239.1.1.1", v2},
		{"no options", rawFrame(nil, ProtoIGMP, "198.19.0.3", "224.0.0.22", v3), true, "198.19.0.3", "224.0.0.22", v3},
		{"IHL 15", rawFrame(nops, ProtoIGMP, "198.19.0.3", "224.0.0.22", v3), true, "198.19.0.3", "224.0.0.22", v3},
		{"ethernet padding trimmed", cat(good, make([]byte, 60-len(good))), true, "198.19.0.2", "239.1.1.1", v2},
		{"gopacket padded", gopacketFrame(&layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolIGMP,
			SrcIP: net.IPv4(198, 19, 0, 4), DstIP: net.IPv4(239, 1, 1, 1)}, v2), true, "198.19.0.4", "239.1.1.1", v2},
		{"gopacket router alert", gopacketFrame(&layers.IPv4{Version: 4, TTL: 1, TOS: 0xc0, Protocol: layers.IPProtocolIGMP,
			SrcIP: net.IPv4(198, 19, 0, 5), DstIP: net.IPv4(224, 0, 0, 22),
			Options: []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}}, v3),
			true, "198.19.0.5", "224.0.0.22", v3},
		{"DF set", fixIP(mutate(good, func(f []byte) { f[20] = 0x40 })), true, "198.19.0.2", "239.1.1.1", v2},
		{"TTL 64 accepted", fixIP(mutate(good, func(f []byte) { f[22] = 64 })), true, "198.19.0.2", "239.1.1.1", v2},
		{"empty IGMP payload", rawFrame(nil, ProtoIGMP, "198.19.0.2", "239.1.1.1", nil), true, "198.19.0.2", "239.1.1.1", []byte{}},
		{"bad IGMP checksum still found", rawFrame(nil, ProtoIGMP, "198.19.0.2", "239.1.1.1", []byte{0x16, 0, 0, 0, 239, 1, 1, 1}),
			true, "198.19.0.2", "239.1.1.1", []byte{0x16, 0, 0, 0, 239, 1, 1, 1}},

		{"empty", nil, false, "", "", nil},
		{"13 bytes", good[:13], false, "", "", nil},
		{"IPv4 header cut", good[:14+19], false, "", "", nil},
		{"options cut", good[:14+22], false, "", "", nil},
		{"IGMP cut", good[:len(good)-1], false, "", "", nil},
		{"802.1Q tag", cat(good[:12], []byte{0x81, 0x00, 0x00, 0x05}, good[12:]), false, "", "", nil},
		{"EtherType IPv6", mutate(good, func(f []byte) { f[12], f[13] = 0x86, 0xdd }), false, "", "", nil},
		{"EtherType ARP", mutate(good, func(f []byte) { f[12], f[13] = 0x08, 0x06 }), false, "", "", nil},
		{"IP version 6", fixIP(mutate(good, func(f []byte) { f[14] = 0x66 })), false, "", "", nil},
		{"IHL 4", fixIP(mutate(good, func(f []byte) { f[14] = 0x44 })), false, "", "", nil},
		{"IHL beyond frame", fixIP(mutate(good[:14+24], func(f []byte) { f[14] = 0x4f })), false, "", "", nil},
		{"total below IHL", fixIP(mutate(good, func(f []byte) { binary.BigEndian.PutUint16(f[16:], 20) })), false, "", "", nil},
		{"total beyond frame", fixIP(mutate(good, func(f []byte) { binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14+1)) })), false, "", "", nil},
		{"more fragments", fixIP(mutate(good, func(f []byte) { f[20] = 0x20 })), false, "", "", nil},
		{"fragment offset", fixIP(mutate(good, func(f []byte) { f[21] = 0x01 })), false, "", "", nil},
		{"fragment offset high bits", fixIP(mutate(good, func(f []byte) { f[20] = 0x10 })), false, "", "", nil},
		{"protocol UDP", fixIP(mutate(good, func(f []byte) { f[23] = 17 })), false, "", "", nil},
		{"bad IP checksum", mutate(good, func(f []byte) { f[24] ^= 0x80 }), false, "", "", nil},
		{"bad IP checksum in options", mutate(good, func(f []byte) { f[36] ^= 0x01 }), false, "", "", nil},
	}
}

func TestFromFrame(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, igmp, ok := FromFrame(tc.f)
			if ok != tc.ok {
				t.Fatalf("FromFrame ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				if igmp != nil || src.IsValid() || dst.IsValid() {
					t.Errorf("refused frame returned %v %v %x", src, dst, igmp)
				}
				return
			}
			if src != mustAddr(tc.src) || dst != mustAddr(tc.dst) || !bytes.Equal(igmp, tc.igmp) {
				t.Errorf("FromFrame = %v %v %x, want %v %v %x", src, dst, igmp, tc.src, tc.dst, tc.igmp)
			}
			if cap(igmp) != len(igmp) {
				t.Errorf("IGMP view has cap %d > len %d: an append would overwrite the frame", cap(igmp), len(igmp))
			}
		})
	}
}

func TestIPv4Multicast(t *testing.T) {
	udp := func(dst string) []byte { return rawFrame(nil, 17, "198.19.0.1", dst, make([]byte, 8)) }
	for _, tc := range []struct {
		name  string
		f     []byte
		ok    bool
		dst   string
		proto uint8
	}{
		{"UDP to 239.1.1.1", udp("239.1.1.1"), true, "239.1.1.1", 17},
		{"UDP to 224.0.0.251", udp("224.0.0.251"), true, "224.0.0.251", 17},
		{"UDP to 239.255.255.255", udp("239.255.255.255"), true, "239.255.255.255", 17},
		{"UDP to 224.0.0.0", udp("224.0.0.0"), true, "224.0.0.0", 17},
		{"IGMP with router alert", rawFrame(routerAlert, ProtoIGMP, "198.19.0.1", "224.0.0.22", report3()), true, "224.0.0.22", ProtoIGMP},
		{"header only", udp("239.1.1.1")[:34], true, "239.1.1.1", 17},
		{"bad checksum not checked", mutate(udp("239.1.1.1"), func(f []byte) { f[24]++ }), true, "239.1.1.1", 17},
		{"unicast", udp("198.19.0.2"), false, "", 0},
		{"223.255.255.255", udp("223.255.255.255"), false, "", 0},
		{"class E 240.0.0.1", udp("240.0.0.1"), false, "", 0},
		{"broadcast", udp("255.255.255.255"), false, "", 0},
		{"empty", nil, false, "", 0},
		{"header cut", udp("239.1.1.1")[:33], false, "", 0},
		{"options cut", rawFrame(routerAlert, 17, "198.19.0.1", "239.1.1.1", nil)[:37], false, "", 0},
		{"IHL 4", mutate(udp("239.1.1.1"), func(f []byte) { f[14] = 0x44 }), false, "", 0},
		{"version 6", mutate(udp("239.1.1.1"), func(f []byte) { f[14] = 0x65 }), false, "", 0},
		{"ARP", mutate(udp("239.1.1.1"), func(f []byte) { f[12], f[13] = 0x08, 0x06 }), false, "", 0},
		{"802.1Q", cat(udp("239.1.1.1")[:12], []byte{0x81, 0x00, 0, 1}, udp("239.1.1.1")[12:]), false, "", 0},
	} {
		src, dst, proto, ok := IPv4Multicast(tc.f)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			if src.IsValid() || dst.IsValid() || proto != 0 {
				t.Errorf("%s: refused frame returned %v %v %d", tc.name, src, dst, proto)
			}
			continue
		}
		if src != mustAddr("198.19.0.1") || dst != mustAddr(tc.dst) || proto != tc.proto {
			t.Errorf("%s: = %v %v %d, want 198.19.0.1 %v %d", tc.name, src, dst, proto, tc.dst, tc.proto)
		}
	}
}

func TestMulticastMAC(t *testing.T) {
	for _, tc := range []struct{ group, mac string }{
		{"224.0.0.1", "01:00:5e:00:00:01"},
		{"224.0.0.22", "01:00:5e:00:00:16"},
		{"239.1.2.3", "01:00:5e:01:02:03"},
		{"224.129.2.3", "01:00:5e:01:02:03"}, // bit 24 is dropped: 32 groups share a MAC
		{"239.255.255.255", "01:00:5e:7f:ff:ff"},
		{"232.128.0.0", "01:00:5e:00:00:00"},
	} {
		mac := MulticastMAC(mustAddr(tc.group))
		if got := net.HardwareAddr(mac[:]).String(); got != tc.mac {
			t.Errorf("MulticastMAC(%s) = %s, want %s", tc.group, got, tc.mac)
		}
	}
}

func TestBuildQueryFrame(t *testing.T) {
	igmp := make([]byte, 8)
	PutQueryV2(igmp, netip.IPv4Unspecified(), 10*time.Second)
	buf := make([]byte, 100)
	for i := range buf {
		buf[i] = 0xee
	}
	n := BuildQueryFrame(buf, testMAC, mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), igmp)
	want := []byte{
		0x01, 0x00, 0x5e, 0x00, 0x00, 0x01, // dst
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
		0x08, 0x00,
		0x46, 0xc0, 0x00, 32, // version 4 IHL 6, TOS, total length
		0x00, 0x00, 0x00, 0x00, // ID, flags and offset
		0x01, 0x02, 0x00, 0x00, // TTL 1, IGMP, checksum
		198, 19, 0, 1,
		224, 0, 0, 1,
		0x94, 0x04, 0x00, 0x00, // Router Alert
		0x11, 100, 0xee, 0x9b, 0, 0, 0, 0,
	}
	binary.BigEndian.PutUint16(want[24:], refChecksum(want[14:38]))
	if n != FrameOverhead+8 || !bytes.Equal(buf[:n], want) {
		t.Fatalf("BuildQueryFrame =\n%x, want\n%x", buf[:n], want)
	}
	if buf[n] != 0xee {
		t.Error("BuildQueryFrame wrote past the frame")
	}

	// The IGMP message may already sit in place.
	inPlace := make([]byte, 128)
	m := PutQueryV3(inPlace[FrameOverhead:], mustAddr("239.1.1.1"), time.Second, false, 2, 125*time.Second, nil)
	n = BuildQueryFrame(inPlace, testMAC2, mustAddr("198.19.0.7"), mustAddr("239.1.1.1"), inPlace[FrameOverhead:FrameOverhead+m])
	other := make([]byte, 128)
	m2 := PutQueryV3(other[100:], mustAddr("239.1.1.1"), time.Second, false, 2, 125*time.Second, nil)
	n2 := BuildQueryFrame(other, testMAC2, mustAddr("198.19.0.7"), mustAddr("239.1.1.1"), slices.Clone(other[100:100+m2]))
	if !bytes.Equal(inPlace[:n], other[:n2]) {
		t.Errorf("in-place build differs:\n%x\n%x", inPlace[:n], other[:n2])
	}

	// FromFrame and Parse read back what was built.
	src, dst, got, ok := FromFrame(inPlace[:n])
	if !ok || src != mustAddr("198.19.0.7") || dst != mustAddr("239.1.1.1") {
		t.Fatalf("FromFrame = %v %v %v", src, dst, ok)
	}
	if q, r := Parse(got); r != OK || q.Group() != mustAddr("239.1.1.1") || q.QueryVersion() != 3 {
		t.Errorf("Parse = %v", r)
	}

	// gopacket as oracle for the Ethernet and IPv4 headers.
	p := gopacket.NewPacket(inPlace[:n], layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth.DstMAC.String() != "01:00:5e:01:01:01" || !bytes.Equal(eth.SrcMAC, testMAC2) || eth.EthernetType != layers.EthernetTypeIPv4 {
		t.Errorf("gopacket Ethernet %+v", eth)
	}
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.Version != 4 || ip.IHL != 6 || ip.TOS != 0xc0 || int(ip.Length) != n-14 || ip.Id != 0 || ip.Flags != 0 ||
		ip.FragOffset != 0 || ip.TTL != 1 || ip.Protocol != layers.IPProtocolIGMP ||
		!ip.SrcIP.Equal(net.IPv4(198, 19, 0, 7)) || !ip.DstIP.Equal(net.IPv4(239, 1, 1, 1)) {
		t.Errorf("gopacket IPv4 %+v", ip)
	}
	if len(ip.Options) != 1 || ip.Options[0].OptionType != 0x94 || ip.Options[0].OptionLength != 4 ||
		!bytes.Equal(ip.Options[0].OptionData, []byte{0, 0}) {
		t.Errorf("gopacket IPv4 options %+v", ip.Options)
	}
	if refChecksum(inPlace[14:38]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	if g, ok := p.Layer(layers.LayerTypeIGMP).(*layers.IGMP); !ok || g.Type != layers.IGMPMembershipQuery || g.Version != 3 {
		t.Errorf("gopacket IGMP %+v", p.Layer(layers.LayerTypeIGMP))
	}

	for name, f := range map[string]func(){
		"short buffer": func() {
			BuildQueryFrame(make([]byte, 45), testMAC, mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), igmp)
		},
		"MAC 8 bytes": func() {
			BuildQueryFrame(buf, make(net.HardwareAddr, 8), mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), igmp)
		},
		"IPv6 source": func() { BuildQueryFrame(buf, testMAC, mustAddr("fe80::1"), mustAddr("224.0.0.1"), igmp) },
		"too long": func() {
			BuildQueryFrame(make([]byte, 70000), testMAC, mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), make([]byte, 65536-24))
		},
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

func TestFrameAllocs(t *testing.T) {
	igmpFrame := rawFrame(routerAlert, ProtoIGMP, "198.19.0.1", "224.0.0.22", report3())
	udp := rawFrame(nil, 17, "198.19.0.1", "239.1.1.1", make([]byte, 64))
	q := queryV3SG()
	buf := make([]byte, 128)
	var sink int
	for name, f := range map[string]func(){
		"FromFrame and Parse": func() {
			_, dst, b, ok := FromFrame(igmpFrame)
			m, _ := Parse(b)
			if ok && dst.IsMulticast() {
				sink += iterate(m)
			}
		},
		"IPv4Multicast": func() {
			_, dst, proto, _ := IPv4Multicast(udp)
			sink += int(proto) + int(dst.As4()[3])
		},
		"BuildQueryFrame": func() {
			sink += BuildQueryFrame(buf, testMAC, mustAddr("198.19.0.1"), mustAddr("224.0.0.1"), q)
		},
		"MulticastMAC": func() { sink += int(MulticastMAC(mustAddr("239.1.1.1"))[5]) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	_ = sink
}

func BenchmarkIPv4Multicast(b *testing.B) {
	f := rawFrame(nil, 17, "198.19.0.1", "239.1.1.1", make([]byte, 1400))
	b.ReportAllocs()
	pkts, n := 0, 0
	for b.Loop() {
		_, _, proto, ok := IPv4Multicast(f)
		if !ok {
			b.Fatal("not multicast")
		}
		n += int(proto)
		pkts++
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkFromFrame(b *testing.B) {
	f := rawFrame(routerAlert, ProtoIGMP, "198.19.0.1", "224.0.0.22", report4())
	b.ReportAllocs()
	pkts, n := 0, 0
	for b.Loop() {
		_, _, igmp, ok := FromFrame(f)
		m, r := Parse(igmp)
		if !ok || r != OK {
			b.Fatal(ok, r)
		}
		n += iterate(m)
		pkts++
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}
