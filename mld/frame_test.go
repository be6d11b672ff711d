package mld

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	testMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56} // testSrc's MAC
	testMAC2 = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// rawFrame builds an untagged Ethernet frame by hand: an IPv6 header with
// next header nh, hop limit hop, the addresses and a payload length of
// len(payload), then payload (extension headers and the upper layer).
func rawFrame(nh, hop uint8, src, dst string, payload []byte) []byte {
	f := make([]byte, 14+40+len(payload))
	mac := MulticastMAC(mustAddr(dst))
	copy(f[0:6], mac[:])
	copy(f[6:12], testMAC)
	f[12], f[13] = 0x86, 0xdd
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip[6] = nh
	ip[7] = hop
	s, d := mustAddr(src).As16(), mustAddr(dst).As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	copy(ip[40:], payload)
	return f
}

// ext lays out an extension header: next header, Hdr Ext Len, then body,
// which must make the header a multiple of 8 bytes long.
func ext(next uint8, body ...byte) []byte {
	if (len(body)+2)%8 != 0 {
		panic("ext: header not a multiple of 8 bytes")
	}
	return append([]byte{next, uint8((len(body)+2)/8 - 1)}, body...)
}

// Hop-by-Hop option bodies.
var (
	optRA    = []byte{5, 2, 0, 0}       // Router Alert, MLD
	optPadN2 = []byte{1, 0}             // PadN of 2 bytes
	optPadN6 = []byte{1, 4, 0, 0, 0, 0} // PadN of 6 bytes
)

// hbhRA is the Hop-by-Hop header that BuildFrame writes, followed by next.
func hbhRA(next uint8) []byte { return ext(next, cat(optRA, optPadN2)...) }

// destChain lays out n Destination Options headers of 8 bytes, each
// followed by the next, the last by last.
func destChain(n int, last uint8) []byte {
	var b []byte
	for i := range n {
		next := uint8(60)
		if i == n-1 {
			next = last
		}
		b = append(b, ext(next, optPadN6...)...)
	}
	return b
}

// mldFor returns b checksummed for src and dst.
func mldFor(src, dst string, b []byte) []byte {
	return fixFor(mustAddr(src), mustAddr(dst), slices.Clone(b))
}

// mutate returns a copy of f changed by fn.
func mutate(f []byte, fn func(f []byte)) []byte {
	c := slices.Clone(f)
	fn(c)
	return c
}

// setPayloadLen sets the IPv6 payload length of frame f.
func setPayloadLen(f []byte, n int) { binary.BigEndian.PutUint16(f[18:], uint16(n)) }

type frameCase struct {
	name     string
	f        []byte
	want     FrameReason
	src, dst string
	hop      uint8
	ra       bool
	mld      []byte // the MLD bytes FromFrame must return
}

const (
	ll   = "fe80::5054:ff:fe12:3456"
	all  = "ff02::1"
	mld2 = "ff02::16"
)

// frameCases feed TestFromFrame and seed FuzzFromFrame.
func frameCases() []frameCase {
	v1 := mldFor(ll, "ff0e::1:1", wire(TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1"))
	v2 := mldFor(ll, mld2, report3())
	q := make([]byte, 128)
	n := PutQuery(q, netip.IPv6Unspecified(), 10*time.Second, false, 2, 125*time.Second, nil, true)
	q = q[:n]
	built := make([]byte, 256)
	n = BuildFrame(built, testMAC, mustAddr(ll), mustAddr(all), q)
	built = built[:n]
	q = slices.Clone(built[FrameOverhead:])

	good := rawFrame(0, 1, ll, "ff0e::1:1", cat(hbhRA(58), v1))
	dest := ext(58, optPadN6...)
	return []frameCase{
		{"BuildFrame", built, IsMLD, ll, all, 1, true, q},
		{"router alert", good, IsMLD, ll, "ff0e::1:1", 1, true, v1},
		{"no hop-by-hop header", rawFrame(58, 1, ll, mld2, v2), IsMLD, ll, mld2, 1, false, v2},
		{"router alert after Pad1s", rawFrame(0, 1, ll, mld2, cat(ext(58, 0, 0, 5, 2, 0, 0), v2)), IsMLD, ll, mld2, 1, true, v2},
		{"router alert after PadN, in 16 bytes", rawFrame(0, 1, ll, mld2, cat(ext(58, cat(optPadN6, optPadN2, optRA, optPadN2)...), v2)),
			IsMLD, ll, mld2, 1, true, v2},
		{"router alert value 1 is not MLD's", rawFrame(0, 1, ll, mld2, cat(ext(58, 5, 2, 0, 1, 1, 0), v2)), IsMLD, ll, mld2, 1, false, v2},
		{"router alert of 4 bytes is not one", rawFrame(0, 1, ll, mld2, cat(ext(58, 5, 4, 0, 0, 0, 0), v2)), IsMLD, ll, mld2, 1, false, v2},
		{"unknown option skipped", rawFrame(0, 1, ll, mld2, cat(ext(58, 0x3e, 0, optRA[0], optRA[1], optRA[2], optRA[3]), v2)), IsMLD, ll, mld2, 1, true, v2},
		{"hop-by-hop of padding only", rawFrame(0, 1, ll, mld2, cat(ext(58, optPadN6...), v2)), IsMLD, ll, mld2, 1, false, v2},
		{"destination options", rawFrame(60, 1, ll, mld2, cat(dest, v2)), IsMLD, ll, mld2, 1, false, v2},
		{"hop-by-hop then destination options", rawFrame(0, 1, ll, mld2, cat(hbhRA(60), dest, v2)), IsMLD, ll, mld2, 1, true, v2},
		{"routing header, no segments left", rawFrame(0, 1, ll, mld2, cat(hbhRA(43), ext(58, 0, 0, 0, 0, 0, 0), v2)), IsMLD, ll, mld2, 1, true, v2},
		{"8 extension headers", rawFrame(0, 1, ll, mld2, cat(hbhRA(60), destChain(7, 58), v2)), IsMLD, ll, mld2, 1, true, v2},
		{"ethernet padding trimmed", cat(good, make([]byte, 20)), IsMLD, ll, "ff0e::1:1", 1, true, v1},
		{"hop limit 255 reported as is", mutate(good, func(f []byte) { f[21] = 255 }), IsMLD, ll, "ff0e::1:1", 255, true, v1},
		{"traffic class and flow label ignored", mutate(good, func(f []byte) { f[14], f[15], f[16], f[17] = 0x6f, 0xff, 0xff, 0xff }),
			IsMLD, ll, "ff0e::1:1", 1, true, v1},
		{"unspecified source", rawFrame(0, 1, "::", mld2, cat(hbhRA(58), mldFor("::", mld2, report3()))), IsMLD, "::", mld2, 1, true, mldFor("::", mld2, report3())},
		{"unicast destination", rawFrame(0, 1, ll, "fe80::1", cat(hbhRA(58), mldFor(ll, "fe80::1", v1))), IsMLD, ll, "fe80::1", 1, true, mldFor(ll, "fe80::1", v1)},
		{"bad MLD checksum still found", rawFrame(0, 1, ll, mld2, cat(hbhRA(58), report3()[:8])), IsMLD, ll, mld2, 1, true, report3()[:8]},
		{"query type byte only", rawFrame(58, 1, ll, all, []byte{TypeQuery}), IsMLD, ll, all, 1, false, []byte{TypeQuery}},
		{"v1 report type byte only", rawFrame(58, 1, ll, all, []byte{TypeV1Report}), IsMLD, ll, all, 1, false, []byte{TypeV1Report}},
		{"done type byte only", rawFrame(58, 1, ll, all, []byte{TypeV1Done}), IsMLD, ll, all, 1, false, []byte{TypeV1Done}},
		{"v2 report type byte only", rawFrame(58, 1, ll, all, []byte{TypeV2Report}), IsMLD, ll, all, 1, false, []byte{TypeV2Report}},

		{"empty", nil, NotMLD, "", "", 0, false, nil},
		{"13 bytes", good[:13], NotMLD, "", "", 0, false, nil},
		{"802.1Q tag", cat(good[:12], []byte{0x81, 0x00, 0x00, 0x05}, good[12:]), NotMLD, "", "", 0, false, nil},
		{"EtherType IPv4", mutate(good, func(f []byte) { f[12], f[13] = 0x08, 0x00 }), NotMLD, "", "", 0, false, nil},
		{"EtherType ARP", mutate(good, func(f []byte) { f[12], f[13] = 0x08, 0x06 }), NotMLD, "", "", 0, false, nil},
		{"IP version 4", mutate(good, func(f []byte) { f[14] = 0x45 }), NotMLD, "", "", 0, false, nil},
		{"IP version 4, header cut", mutate(good[:20], func(f []byte) { f[14] = 0x45 }), NotMLD, "", "", 0, false, nil},
		{"neighbor solicitation", rawFrame(58, 255, ll, "ff02::1:ff00:1", []byte{135, 0, 0, 0, 0, 0, 0, 0}), NotMLD, "", "", 0, false, nil},
		{"router solicitation behind router alert", rawFrame(0, 1, ll, all, cat(hbhRA(58), []byte{133, 0, 0, 0, 0, 0, 0, 0})), NotMLD, "", "", 0, false, nil},
		{"echo request", rawFrame(58, 64, ll, all, []byte{128, 0, 0, 0, 0, 1, 0, 1}), NotMLD, "", "", 0, false, nil},
		{"MRD advertisement", rawFrame(0, 1, ll, all, cat(hbhRA(58), []byte{151, 20, 0, 0, 0, 2, 0, 2})), NotMLD, "", "", 0, false, nil},
		{"empty ICMPv6", rawFrame(58, 1, ll, all, nil), NotMLD, "", "", 0, false, nil},
		{"empty ICMPv6 behind hop-by-hop", rawFrame(0, 1, ll, all, hbhRA(58)), NotMLD, "", "", 0, false, nil},
		{"UDP", rawFrame(17, 1, ll, "ff02::fb", make([]byte, 32)), NotMLD, "", "", 0, false, nil},
		{"UDP behind hop-by-hop", rawFrame(0, 1, ll, "ff02::fb", cat(hbhRA(17), make([]byte, 32))), NotMLD, "", "", 0, false, nil},
		{"no next header", rawFrame(59, 1, ll, all, v1), NotMLD, "", "", 0, false, nil},
		{"fragment header", rawFrame(44, 1, ll, mld2, cat([]byte{58, 0, 0, 1, 0, 0, 0, 1}, v2)), NotMLD, "", "", 0, false, nil},
		{"fragment behind hop-by-hop", rawFrame(0, 1, ll, mld2, cat(hbhRA(44), []byte{58, 0, 0, 0, 0, 0, 0, 1}, v2)), NotMLD, "", "", 0, false, nil},
		{"authentication header", rawFrame(0, 1, ll, mld2, cat(hbhRA(51), []byte{58, 4, 0, 0}, make([]byte, 20), v2)), NotMLD, "", "", 0, false, nil},
		{"ESP", rawFrame(50, 1, ll, mld2, make([]byte, 40)), NotMLD, "", "", 0, false, nil},

		{"EtherType IPv6, no header", good[:14], Malformed, "", "", 0, false, nil},
		{"IPv6 header cut", good[:14+39], Malformed, "", "", 0, false, nil},
		{"payload length beyond frame", mutate(good, func(f []byte) { setPayloadLen(f, len(f)-54+1) }), Malformed, "", "", 0, false, nil},
		{"payload length 65535", mutate(good, func(f []byte) { setPayloadLen(f, 0xffff) }), Malformed, "", "", 0, false, nil},
		{"jumbo payload length 0", mutate(good, func(f []byte) { setPayloadLen(f, 0) }), Malformed, "", "", 0, false, nil},
		{"payload cuts hop-by-hop", mutate(good, func(f []byte) { setPayloadLen(f, 4) }), Malformed, "", "", 0, false, nil},
		{"payload holds 1 byte of hop-by-hop", mutate(good, func(f []byte) { setPayloadLen(f, 1) }), Malformed, "", "", 0, false, nil},
		{"hop-by-hop length beyond payload", mutate(good, func(f []byte) { f[55] = 4 }), Malformed, "", "", 0, false, nil},
		{"hop-by-hop option overruns header", rawFrame(0, 1, ll, mld2, cat(ext(58, 1, 5, 0, 0, 0, 0), v2)), Malformed, "", "", 0, false, nil},
		{"router alert overruns header", rawFrame(0, 1, ll, mld2, cat(ext(58, 1, 2, 0, 0, 5, 2), v2)), Malformed, "", "", 0, false, nil},
		{"hop-by-hop option length byte missing", rawFrame(0, 1, ll, mld2, cat(ext(58, 1, 3, 0, 0, 0, 5), v2)), Malformed, "", "", 0, false, nil},
		{"hop-by-hop not first", rawFrame(60, 1, ll, mld2, cat(ext(0, optPadN6...), hbhRA(58), v2)), Malformed, "", "", 0, false, nil},
		{"hop-by-hop twice", rawFrame(0, 1, ll, mld2, cat(hbhRA(0), hbhRA(58), v2)), Malformed, "", "", 0, false, nil},
		{"9 extension headers", rawFrame(0, 1, ll, mld2, cat(hbhRA(60), destChain(8, 58), v2)), Malformed, "", "", 0, false, nil},
		{"destination options beyond payload", rawFrame(60, 1, ll, mld2, ext(58, optPadN6...)[:7]), Malformed, "", "", 0, false, nil},
		{"destination options length beyond payload", rawFrame(60, 1, ll, mld2, cat([]byte{58, 1}, optPadN6, v1[:4])), Malformed, "", "", 0, false, nil},
		{"routing header beyond payload", rawFrame(43, 1, ll, mld2, []byte{58}), Malformed, "", "", 0, false, nil},
	}
}

func TestFromFrame(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, r := FromFrame(tc.f)
			if r != tc.want {
				t.Fatalf("FromFrame = %v, want %v", r, tc.want)
			}
			if r != IsMLD {
				if p.MLD != nil || p.Src.IsValid() || p.Dst.IsValid() || p.HopLimit != 0 || p.RouterAlert {
					t.Errorf("refused frame returned %+v", p)
				}
				return
			}
			if p.Src != mustAddr(tc.src) || p.Dst != mustAddr(tc.dst) || p.HopLimit != tc.hop || p.RouterAlert != tc.ra ||
				!bytes.Equal(p.MLD, tc.mld) {
				t.Errorf("FromFrame = %v %v %d %v %x, want %v %v %d %v %x",
					p.Src, p.Dst, p.HopLimit, p.RouterAlert, p.MLD, tc.src, tc.dst, tc.hop, tc.ra, tc.mld)
			}
			if cap(p.MLD) != len(p.MLD) {
				t.Errorf("MLD view has cap %d > len %d: an append would overwrite the frame", cap(p.MLD), len(p.MLD))
			}
			end := 54 + int(binary.BigEndian.Uint16(tc.f[18:]))
			if &p.MLD[len(p.MLD)-1] != &tc.f[end-1] {
				t.Error("MLD view does not end where the IPv6 payload does")
			}
			// The test messages that are whole parse with the frame's
			// addresses.
			if len(tc.mld) >= HeaderLen {
				if _, r := Parse(p.Src, p.Dst, p.MLD); r != OK {
					t.Errorf("Parse = %v", r)
				}
			}
		})
	}
}

func TestIPv6Multicast(t *testing.T) {
	udp := func(dst string) []byte { return rawFrame(17, 64, "2001:db8::1", dst, make([]byte, 8)) }
	for _, tc := range []struct {
		name string
		f    []byte
		ok   bool
		dst  string
	}{
		{"UDP to ff0e::1:1", udp("ff0e::1:1"), true, "ff0e::1:1"},
		{"UDP to ff02::fb", udp("ff02::fb"), true, "ff02::fb"},
		{"UDP to ff3e::8000:1", udp("ff3e::8000:1"), true, "ff3e::8000:1"},
		{"UDP to ff00::", udp("ff00::"), true, "ff00::"},
		{"UDP to ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", udp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), true, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"MLD with hop-by-hop", rawFrame(0, 1, "2001:db8::1", "ff02::16", cat(hbhRA(58), report3())), true, "ff02::16"},
		{"header only", udp("ff0e::1:1")[:54], true, "ff0e::1:1"},
		{"payload length not checked", mutate(udp("ff0e::1:1"), func(f []byte) { setPayloadLen(f, 9999) }), true, "ff0e::1:1"},
		{"unicast", udp("2001:db8::2"), false, ""},
		{"link-local unicast", udp("fe80::1"), false, ""},
		{"feff::1", udp("feff::1"), false, ""},
		{"IPv4-mapped multicast", udp("::ffff:239.1.1.1"), false, ""},
		{"empty", nil, false, ""},
		{"header cut", udp("ff0e::1:1")[:53], false, ""},
		{"version 4", mutate(udp("ff0e::1:1"), func(f []byte) { f[14] = 0x45 }), false, ""},
		{"version 7", mutate(udp("ff0e::1:1"), func(f []byte) { f[14] = 0x70 }), false, ""},
		{"IPv4 EtherType", mutate(udp("ff0e::1:1"), func(f []byte) { f[12], f[13] = 0x08, 0x00 }), false, ""},
		{"802.1Q", cat(udp("ff0e::1:1")[:12], []byte{0x81, 0x00, 0, 1}, udp("ff0e::1:1")[12:]), false, ""},
	} {
		src, dst, ok := IPv6Multicast(tc.f)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			if src.IsValid() || dst.IsValid() {
				t.Errorf("%s: refused frame returned %v %v", tc.name, src, dst)
			}
			continue
		}
		if src != mustAddr("2001:db8::1") || dst != mustAddr(tc.dst) {
			t.Errorf("%s: = %v %v, want 2001:db8::1 %v", tc.name, src, dst, tc.dst)
		}
	}
}

func TestMulticastMAC(t *testing.T) {
	for _, tc := range []struct{ group, mac string }{
		{"ff02::1", "33:33:00:00:00:01"},
		{"ff02::16", "33:33:00:00:00:16"},
		{"ff02::fb", "33:33:00:00:00:fb"},
		{"ff02::1:ff12:3456", "33:33:ff:12:34:56"},
		{"ff05::1:3", "33:33:00:01:00:03"},
		{"ff3e::8000:1", "33:33:80:00:00:01"},
		{"ff0e:1234:5678:9abc:def0:1234:ffff:ffff", "33:33:ff:ff:ff:ff"}, // only the low 32 bits: many groups share a MAC
	} {
		mac := MulticastMAC(mustAddr(tc.group))
		if got := net.HardwareAddr(mac[:]).String(); got != tc.mac {
			t.Errorf("MulticastMAC(%s) = %s, want %s", tc.group, got, tc.mac)
		}
	}
}

func TestLinkLocal(t *testing.T) {
	for _, tc := range []struct{ mac, want string }{
		{"52:54:00:12:34:56", "fe80::5054:ff:fe12:3456"},
		{"02:00:00:00:00:01", "fe80::ff:fe00:1"}, // the local bit set in the MAC is clear in the interface ID
		{"00:00:00:00:00:00", "fe80::200:ff:fe00:0"},
		{"ff:ff:ff:ff:ff:ff", "fe80::fdff:ffff:feff:ffff"},
		{"00:1b:21:3c:4d:5e", "fe80::21b:21ff:fe3c:4d5e"},
	} {
		mac, err := net.ParseMAC(tc.mac)
		if err != nil {
			t.Fatal(err)
		}
		if got := LinkLocal(mac); got != mustAddr(tc.want) {
			t.Errorf("LinkLocal(%s) = %v, want %s", tc.mac, got, tc.want)
		}
		if got := LinkLocal(mac); !got.IsLinkLocalUnicast() || got.Zone() != "" {
			t.Errorf("LinkLocal(%s) = %v is not a link-local unicast address without zone", tc.mac, got)
		}
	}
	if LinkLocal(testMAC) != testSrc {
		t.Errorf("LinkLocal(%v) = %v, want testSrc %v", testMAC, LinkLocal(testMAC), testSrc)
	}
	for _, mac := range []net.HardwareAddr{nil, make(net.HardwareAddr, 5), make(net.HardwareAddr, 8)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("LinkLocal of a %d-byte MAC: no panic", len(mac))
				}
			}()
			LinkLocal(mac)
		}()
	}
}

func TestBuildFrame(t *testing.T) {
	m := make([]byte, 24)
	PutReportV1(m, TypeV1Report, mustAddr("ff0e::1:1"))
	buf := make([]byte, 200)
	for i := range buf {
		buf[i] = 0xee
	}
	src, dst := mustAddr(ll), mustAddr("ff0e::1:1")
	n := BuildFrame(buf, testMAC, src, dst, m)
	want := wire(
		[]byte{0x33, 0x33, 0x00, 0x01, 0x00, 0x01}, // dst
		[]byte(testMAC), // src
		[]byte{0x86, 0xdd},
		0x60, 0, 0, 0, // version 6, traffic class 0, flow label 0
		u16(8+24), 0, 1, // payload length, next header Hop-by-Hop, hop limit 1
		ll, "ff0e::1:1",
		58, 0, 5, 2, 0, 0, 1, 0, // Hop-by-Hop: ICMPv6 next, Router Alert MLD, PadN
		TypeV1Report, 0, u16(0), u16(0), u16(0), "ff0e::1:1",
	)
	fixFor(src, dst, want[FrameOverhead:])
	if FrameOverhead != 62 || n != FrameOverhead+24 || !bytes.Equal(buf[:n], want) {
		t.Fatalf("BuildFrame =\n%x, want\n%x", buf[:n], want)
	}
	if buf[n] != 0xee {
		t.Error("BuildFrame wrote past the frame")
	}
	if m[2] != 0 || m[3] != 0 {
		t.Error("BuildFrame changed the message passed in")
	}

	// The MLD message may already sit in place.
	inPlace := make([]byte, 256)
	k := PutQuery(inPlace[FrameOverhead:], dst, time.Second, false, 2, 125*time.Second, []netip.Addr{mustAddr("2001:db8::1")}, true)
	n = BuildFrame(inPlace, testMAC2, src, dst, inPlace[FrameOverhead:FrameOverhead+k])
	other := make([]byte, 256)
	k2 := PutQuery(other[150:], dst, time.Second, false, 2, 125*time.Second, []netip.Addr{mustAddr("2001:db8::1")}, true)
	n2 := BuildFrame(other, testMAC2, src, dst, slices.Clone(other[150:150+k2]))
	if !bytes.Equal(inPlace[:n], other[:n2]) {
		t.Errorf("in-place build differs:\n%x\n%x", inPlace[:n], other[:n2])
	}

	// FromFrame and Parse read back what was built.
	p, r := FromFrame(inPlace[:n])
	if r != IsMLD || p.Src != src || p.Dst != dst || p.HopLimit != 1 || !p.RouterAlert {
		t.Fatalf("FromFrame = %+v %v", p, r)
	}
	q, pr := Parse(p.Src, p.Dst, p.MLD)
	if pr != OK {
		t.Fatalf("Parse = %v", pr)
	}
	checkMessage(t, q, msgWant{typ: TypeQuery, version: 2, group: "ff0e::1:1", code: 1000, maxResp: time.Second,
		marked: true, qrv: 2, qqi: 125 * time.Second, sources: []string{"2001:db8::1"}})
	if a, b, ok := IPv6Multicast(inPlace[:n]); !ok || a != src || b != dst {
		t.Errorf("IPv6Multicast = %v %v %v", a, b, ok)
	}

	// A report from :: (RFC 3590) builds too.
	n = BuildFrame(buf, testMAC, netip.IPv6Unspecified(), mustAddr(mld2), report3())
	if p, r := FromFrame(buf[:n]); r != IsMLD || p.Src != netip.IPv6Unspecified() {
		t.Errorf("FromFrame of a report from :: = %+v %v", p, r)
	} else if _, r := Parse(p.Src, p.Dst, p.MLD); r != OK {
		t.Errorf("Parse of a report from :: = %v", r)
	}

	for name, f := range map[string]func(){
		"short buffer":     func() { BuildFrame(make([]byte, 85), testMAC, src, dst, m) },
		"MAC 8 bytes":      func() { BuildFrame(buf, make(net.HardwareAddr, 8), src, dst, m) },
		"MAC nil":          func() { BuildFrame(buf, nil, src, dst, m) },
		"IPv4 source":      func() { BuildFrame(buf, testMAC, mustAddr("198.19.0.1"), dst, m) },
		"zero Addr source": func() { BuildFrame(buf, testMAC, netip.Addr{}, dst, m) },
		"IPv4 destination": func() { BuildFrame(buf, testMAC, src, mustAddr("239.1.1.1"), m) },
		"unicast destination": func() {
			BuildFrame(buf, testMAC, src, mustAddr("fe80::1"), m)
		},
		"IPv4-mapped multicast destination": func() {
			BuildFrame(buf, testMAC, src, mustAddr("::ffff:239.1.1.1"), m)
		},
		"message of 3 bytes": func() { BuildFrame(buf, testMAC, src, dst, m[:3]) },
		"too long": func() {
			BuildFrame(make([]byte, 70000), testMAC, src, dst, make([]byte, 0xffff-8+1))
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
	// The longest message that fits.
	big := make([]byte, FrameOverhead+0xffff-8)
	n = BuildFrame(big, testMAC, src, dst, make([]byte, 0xffff-8))
	if p, r := FromFrame(big[:n]); r != NotMLD || p.MLD != nil {
		// A message of zeros is ICMPv6 type 0: not MLD, but the frame
		// is whole.
		t.Errorf("FromFrame of the longest frame = %v", r)
	}
}

func TestFrameAllocs(t *testing.T) {
	mldFrame := rawFrame(0, 1, ll, mld2, cat(hbhRA(60), ext(58, optPadN6...), mldFor(ll, mld2, report3())))
	udp := rawFrame(17, 64, "2001:db8::1", "ff0e::1:1", make([]byte, 64))
	q := queryV2SG()
	buf := make([]byte, 256)
	src, dst := mustAddr(ll), mustAddr(all)
	var sink int
	for name, f := range map[string]func(){
		"FromFrame, Parse and iterate": func() {
			p, r := FromFrame(mldFrame)
			m, _ := Parse(p.Src, p.Dst, p.MLD)
			if r == IsMLD && p.RouterAlert {
				sink += iterate(m)
			}
		},
		"FromFrame of other traffic": func() {
			_, r := FromFrame(udp)
			sink += int(r)
		},
		"IPv6Multicast": func() {
			_, dst, _ := IPv6Multicast(udp)
			sink += int(dst.As16()[15])
		},
		"BuildFrame": func() { sink += BuildFrame(buf, testMAC, src, dst, q) },
		"MulticastMAC": func() {
			sink += int(MulticastMAC(dst)[5])
		},
		"LinkLocal": func() { sink += int(LinkLocal(testMAC).As16()[15]) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	_ = sink
}

func BenchmarkIPv6Multicast(b *testing.B) {
	f := rawFrame(17, 64, "2001:db8::1", "ff0e::1:1", make([]byte, 1400))
	b.ReportAllocs()
	pkts, n := 0, 0
	for b.Loop() {
		_, dst, ok := IPv6Multicast(f)
		if !ok {
			b.Fatal("not multicast")
		}
		n += int(dst.As16()[15])
		pkts++
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkFromFrame(b *testing.B) {
	f := rawFrame(0, 1, ll, mld2, cat(hbhRA(58), mldFor(ll, mld2, report4())))
	b.ReportAllocs()
	pkts, n := 0, 0
	for b.Loop() {
		p, fr := FromFrame(f)
		m, r := Parse(p.Src, p.Dst, p.MLD)
		if fr != IsMLD || r != OK {
			b.Fatal(fr, r)
		}
		n += iterate(m)
		pkts++
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}
