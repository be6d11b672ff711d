package ping

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
)

// golden is a request built by hand from the wire format in doc.go.
var golden = mustHex("" +
	"4d4350494e473100" + // magic
	"01" + "02" + // request, multicast
	"00000007" + // seq 7
	"0102030405060708" + // nonce
	"17d0a1b2c3d4e5f6" + // stamp
	"0000000000000000000000000000000000" + // 34 bytes of padding
	"0000000000000000000000000000000000")

var goldenHeader = header{typ: typeRequest, kind: kindMulticast, seq: 7, nonce: 0x0102030405060708, stamp: 0x17d0a1b2c3d4e5f6}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// with returns a copy of golden with b[off] = v.
func with(off int, v byte) []byte {
	b := bytes.Clone(golden)
	b[off] = v
	return b
}

type parseCase struct {
	name string
	b    []byte
	want reason
}

func parseCases() []parseCase {
	reply := with(offType, byte(typeReply))
	return []parseCase{
		{"golden request", golden, reasonOK},
		{"reply", reply, reasonOK},
		{"unicast", with(offKind, byte(kindUnicast)), reasonOK},
		{"negative stamp", encode(make([]byte, packetLen), header{typ: typeReply, kind: kindUnicast, seq: 1<<32 - 1, nonce: 1<<64 - 1, stamp: -1}), reasonOK},
		{"empty", nil, reasonShort},
		{"magic only", []byte(magic), reasonShort},
		{"header only", golden[:headerLen], reasonShort},
		{"one short", golden[:packetLen-1], reasonShort},
		{"one long", append(bytes.Clone(golden), 0), reasonLong},
		{"twice", append(bytes.Clone(golden), golden...), reasonLong},
		{"bad magic", with(0, 'm'), reasonMagic},
		{"magic without NUL", with(7, ' '), reasonMagic},
		{"other version", with(6, '2'), reasonMagic},
		{"type 0", with(offType, 0), reasonType},
		{"type 3", with(offType, 3), reasonType},
		{"type 255", with(offType, 255), reasonType},
		{"kind 0", with(offKind, 0), reasonKind},
		{"kind 3", with(offKind, 3), reasonKind},
		{"first padding byte", with(headerLen, 1), reasonPadding},
		{"last padding byte", with(packetLen-1, 0x80), reasonPadding},
		{"all ones", bytes.Repeat([]byte{0xff}, packetLen), reasonMagic},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, why := parse(tc.b)
			if why != tc.want {
				t.Fatalf("parse: %v, want %v", why, tc.want)
			}
			if why != reasonOK {
				if p != nil {
					t.Fatal("refused packet is not nil")
				}
				return
			}
			if &p[0] != &tc.b[0] || len(p) != packetLen {
				t.Fatal("accepted packet is not a view of the input")
			}
		})
	}
}

func TestEncodeGolden(t *testing.T) {
	// encode overwrites everything, padding included.
	b := bytes.Repeat([]byte{0xaa}, packetLen+3)
	if p := encode(b, goldenHeader); !bytes.Equal(p, golden) {
		t.Fatalf("encode:\n got %x\nwant %x", []byte(p), golden)
	}
	p, why := parse(golden)
	if why != reasonOK {
		t.Fatal(why)
	}
	if h := p.header(); h != goldenHeader {
		t.Fatalf("header %+v, want %+v", h, goldenHeader)
	}
}

func TestReplyInPlace(t *testing.T) {
	b := bytes.Clone(golden)
	from := netip.MustParseAddrPort("198.19.0.1:40000")
	if why := answer(b, from, kindMulticast, false); why != reasonOK {
		t.Fatal(why)
	}
	want := with(offType, byte(typeReply))
	if !bytes.Equal(b, want) {
		t.Fatalf("reply:\n got %x\nwant %x", b, want)
	}
}

func TestAnswer(t *testing.T) {
	from := netip.MustParseAddrPort("198.19.0.1:40000")
	from6 := netip.MustParseAddrPort("[fd00:198:19::1]:40000")
	for _, tc := range []struct {
		name string
		b    []byte
		from netip.AddrPort
		k    kind
		v6   bool // received on an IPv6 socket
		want reason
	}{
		{"multicast probe", golden, from, kindMulticast, false, reasonOK},
		{"unicast probe", with(offKind, byte(kindUnicast)), from, kindUnicast, false, reasonOK},
		{"mapped source", golden, netip.MustParseAddrPort("[::ffff:198.19.0.1]:40000"), kindMulticast, false, reasonOK},
		{"multicast probe on unicast socket", golden, from, kindUnicast, false, reasonWrongKind},
		{"unicast probe on group socket", with(offKind, byte(kindUnicast)), from, kindMulticast, false, reasonWrongKind},
		{"reply", with(offType, byte(typeReply)), from, kindMulticast, false, reasonDirection},
		{"short", golden[:20], from, kindMulticast, false, reasonShort},
		{"from port 0", golden, netip.MustParseAddrPort("198.19.0.1:0"), kindMulticast, false, reasonSource},
		{"from multicast", golden, netip.MustParseAddrPort("232.43.211.234:4321"), kindMulticast, false, reasonSource},
		{"from broadcast", golden, netip.MustParseAddrPort("255.255.255.255:4321"), kindMulticast, false, reasonSource},
		{"from unspecified", golden, netip.MustParseAddrPort("0.0.0.0:4321"), kindMulticast, false, reasonSource},
		{"from IPv6", golden, from6, kindMulticast, false, reasonSource},

		{"IPv6 multicast probe", golden, from6, kindMulticast, true, reasonOK},
		{"IPv6 unicast probe", with(offKind, byte(kindUnicast)), from6, kindUnicast, true, reasonOK},
		{"IPv6 link-local source", golden, netip.MustParseAddrPort("[fe80::1%mcbr-demo]:40000"), kindMulticast, true, reasonOK},
		{"IPv6 loopback source", golden, netip.MustParseAddrPort("[::1]:40000"), kindMulticast, true, reasonOK},
		{"IPv6 multicast probe on unicast socket", golden, from6, kindUnicast, true, reasonWrongKind},
		{"IPv6 reply", with(offType, byte(typeReply)), from6, kindMulticast, true, reasonDirection},
		{"IPv6 from port 0", golden, netip.MustParseAddrPort("[fd00:198:19::1]:0"), kindMulticast, true, reasonSource},
		{"IPv6 from multicast", golden, netip.MustParseAddrPort("[" + DefaultGroup6 + "]:4321"), kindMulticast, true, reasonSource},
		{"IPv6 from unspecified", golden, netip.MustParseAddrPort("[::]:4321"), kindMulticast, true, reasonSource},
		{"IPv6 from mapped IPv4", golden, netip.MustParseAddrPort("[::ffff:198.19.0.1]:40000"), kindMulticast, true, reasonSource},
		{"IPv4 on an IPv6 socket", golden, from, kindMulticast, true, reasonSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.b)
			if got := answer(b, tc.from, tc.k, tc.v6); got != tc.want {
				t.Fatalf("answer: %v, want %v", got, tc.want)
			}
			if tc.want != reasonOK && !bytes.Equal(b, tc.b) {
				t.Fatal("a refused packet was modified")
			}
		})
	}
}

// TestAllocs proves that what a responder does per datagram, and the
// parsing a prober does, allocate nothing.
func TestAllocs(t *testing.T) {
	b := bytes.Clone(golden)
	from := netip.MustParseAddrPort("198.19.0.1:40000")
	var sink header
	n := testing.AllocsPerRun(1000, func() {
		b[offType] = byte(typeRequest)
		if answer(b, from, kindMulticast, false) != reasonOK {
			panic("refused")
		}
		p, _ := parse(b)
		sink = p.header()
		encode(b, sink)
	})
	if n != 0 {
		t.Fatalf("%v allocations per datagram, want 0", n)
	}
}

// refParse is a second parser for FuzzParse to compare with: it decodes the
// layout of doc.go with encoding/binary into a struct.
func refParse(b []byte) (header, bool) {
	var w struct {
		Magic [8]byte
		Type  uint8
		Kind  uint8
		Seq   uint32
		Nonce uint64
		Stamp int64
		Pad   [34]byte
	}
	if binary.Size(w) != packetLen {
		panic("reference layout is not 64 bytes")
	}
	if len(b) != packetLen {
		return header{}, false
	}
	if _, err := binary.Decode(b, binary.BigEndian, &w); err != nil {
		return header{}, false
	}
	ok := string(w.Magic[:]) == magic &&
		(w.Type == 1 || w.Type == 2) &&
		(w.Kind == 1 || w.Kind == 2) &&
		w.Pad == [34]byte{}
	return header{typ: msgType(w.Type), kind: kind(w.Kind), seq: w.Seq, nonce: w.Nonce, stamp: w.Stamp}, ok
}

// FuzzParse checks invariants, not only the absence of panics: parse and
// the reference parser agree on what is accepted and on every field; an
// accepted packet is a view of the whole input, and encoding its header
// gives back the same bytes; a responder's reply to it parses as a reply
// with the same fields.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases() {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		p, why := parse(data)
		ref, refOK := refParse(data)
		if (why == reasonOK) != refOK {
			t.Fatalf("parse says %v, reference says accepted=%v, for %x", why, refOK, data)
		}
		if why != reasonOK {
			if p != nil {
				t.Fatal("refused packet is not nil")
			}
			if why < reasonShort || why > reasonPadding { // not a reason of parse
				t.Fatalf("parse refused with reason %v", why)
			}
			return
		}
		if len(p) != len(data) || &p[0] != &data[0] {
			t.Fatal("accepted packet is not a view of the whole input")
		}
		h := p.header()
		if h != ref {
			t.Fatalf("header %+v, reference %+v", h, ref)
		}
		if enc := encode(make([]byte, packetLen), h); !bytes.Equal(enc, data) {
			t.Fatalf("re-encoded:\n got %x\nwant %x", []byte(enc), data)
		}
		if !bytes.Equal(data, in) {
			t.Fatal("parse modified its input")
		}
		// The reply a responder would send.
		k := h.kind
		if answer(data, netip.MustParseAddrPort("198.19.0.1:1"), k, false) == reasonOK {
			r, why := parse(data)
			if why != reasonOK || r.typ() != typeReply {
				t.Fatalf("reply refused (%v) or not a reply", why)
			}
			rh := r.header()
			rh.typ = h.typ
			if rh != h {
				t.Fatalf("reply changed fields: %+v, request %+v", r.header(), h)
			}
		} else if h.typ == typeRequest {
			t.Fatal("a valid request was not answered")
		}
	})
}

// BenchmarkAnswer measures a responder's work per datagram, short of the
// system calls.
func BenchmarkAnswer(b *testing.B) {
	b.ReportAllocs()
	p := bytes.Clone(golden)
	from := netip.MustParseAddrPort("198.19.0.1:40000")
	for b.Loop() {
		p[offType] = byte(typeRequest)
		if answer(p, from, kindMulticast, false) != reasonOK {
			b.Fatal("refused")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}
