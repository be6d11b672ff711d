package overlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const testKey = 0x01020304

// greBytes returns a GRE packet (without outer IPv4) with header h in front
// of inner, marshalled by MarshalGRE.
func greBytes(h GREHeader, inner []byte) []byte {
	b := make([]byte, h.Len()+len(inner))
	copy(b[h.Len():], inner)
	MarshalGRE(b, h)
	return b
}

// fixGRESum recomputes the checksum of a GRE packet with the C flag after a
// test changed it, using the reference checksum.
func fixGRESum(b []byte) {
	binary.BigEndian.PutUint16(b[4:6], 0)
	binary.BigEndian.PutUint16(b[4:6], refChecksum(b))
}

// checkGREOracle decodes b with gopacket and compares it with h and the
// payload, and checks a present checksum against refChecksum.
func checkGREOracle(t *testing.T, b []byte, h GREHeader, payload []byte) {
	t.Helper()
	var g layers.GRE
	if err := g.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("gopacket: %v", err)
	}
	if g.ChecksumPresent != h.Checksum || g.KeyPresent != h.HasKey || g.SeqPresent != h.HasSeq {
		t.Errorf("gopacket flags C=%v K=%v S=%v, want C=%v K=%v S=%v",
			g.ChecksumPresent, g.KeyPresent, g.SeqPresent, h.Checksum, h.HasKey, h.HasSeq)
	}
	if g.RoutingPresent || g.StrictSourceRoute || g.AckPresent || g.RecursionControl != 0 || g.Flags != 0 || g.Version != uint8(h.Version) {
		t.Errorf("gopacket sees extra bits: R=%v s=%v A=%v recur=%d flags=%d version=%d",
			g.RoutingPresent, g.StrictSourceRoute, g.AckPresent, g.RecursionControl, g.Flags, g.Version)
	}
	if uint16(g.Protocol) != h.Proto {
		t.Errorf("gopacket protocol %#04x, want %#04x", uint16(g.Protocol), h.Proto)
	}
	if h.HasKey && g.Key != h.Key {
		t.Errorf("gopacket key %#x, want %#x", g.Key, h.Key)
	}
	if h.HasSeq && g.Seq != h.Seq {
		t.Errorf("gopacket seq %#x, want %#x", g.Seq, h.Seq)
	}
	if h.Checksum {
		if g.Offset != 0 {
			t.Errorf("Reserved1 = %#04x, want 0", g.Offset)
		}
		z := bytes.Clone(b)
		binary.BigEndian.PutUint16(z[4:6], 0)
		if want := refChecksum(z); !sameChecksum(g.Checksum, want) {
			t.Errorf("checksum %#04x, RFC 1071 reference %#04x", g.Checksum, want)
		}
	}
	if len(g.LayerContents()) != h.Len() {
		t.Errorf("gopacket header length %d, want %d", len(g.LayerContents()), h.Len())
	}
	if !bytes.Equal(g.LayerPayload(), payload) {
		t.Errorf("gopacket payload %x, want %x", g.LayerPayload(), payload)
	}
}

func TestGREHeaderRoundTrip(t *testing.T) {
	keys := []uint32{0, 1, 0x80000000, 0xdeadbeef, 0xffffffff}
	seqs := []uint32{0, 1, 0x7fffffff, 0xffffffff}
	protos := []uint16{EtherTypeTEB, 0x0800, 0x86dd, 0, 0xffff}
	sizes := []int{0, 1, 13, 14, 63, 64, 1400, 1401}
	for flags := range 8 {
		keys, seqs := keys, seqs
		if flags&2 == 0 {
			keys = []uint32{0}
		}
		if flags&4 == 0 {
			seqs = []uint32{0}
		}
		for _, key := range keys {
			for _, seq := range seqs {
				for _, proto := range protos {
					for _, size := range sizes {
						h := GREHeader{
							Checksum: flags&1 != 0,
							HasKey:   flags&2 != 0,
							HasSeq:   flags&4 != 0,
							Proto:    proto,
						}
						if h.HasKey {
							h.Key = key
						}
						if h.HasSeq {
							h.Seq = seq
						}
						payload := testFrame(max(size, 14), uint16(size))[:size]
						b := greBytes(h, payload)
						name := fmt.Sprintf("C=%v,K=%v,S=%v,key=%#x,seq=%#x,proto=%#x,size=%d",
							h.Checksum, h.HasKey, h.HasSeq, key, seq, proto, size)
						got, n, r := ParseGRE(b)
						if r != OK {
							t.Fatalf("%s: ParseGRE: %v", name, r)
						}
						if got != h {
							t.Fatalf("%s: ParseGRE = %+v, want %+v", name, got, h)
						}
						if n != h.Len() || n != 4+4*(flags&1+flags>>1&1+flags>>2&1) {
							t.Fatalf("%s: length %d, Len %d", name, n, h.Len())
						}
						if !bytes.Equal(b[n:], payload) {
							t.Fatalf("%s: payload changed", name)
						}
						if h.Checksum && !refVerifies(b) {
							t.Fatalf("%s: checksum does not verify with the reference", name)
						}
						t.Run(name, func(t *testing.T) { checkGREOracle(t, b, h, payload) })
					}
				}
			}
		}
	}
}

func TestMarshalGREIgnoresAbsentFields(t *testing.T) {
	h := GREHeader{Proto: EtherTypeTEB, Key: 7, Seq: 9}
	b := greBytes(h, testFrame(20, 1))
	if !bytes.Equal(b[:4], []byte{0, 0, 0x65, 0x58}) {
		t.Fatalf("header %x, want 00006558", b[:4])
	}
	got, n, r := ParseGRE(b)
	if r != OK || n != 4 || got.Key != 0 || got.Seq != 0 {
		t.Fatalf("ParseGRE = %+v, %d, %v", got, n, r)
	}

	// The version is written in its 3 bits only, and refused on parsing.
	for _, v := range []uint8{1, 7, 9} {
		b := greBytes(GREHeader{Proto: EtherTypeTEB, Version: v, HasKey: true, Key: 0xffffffff}, nil)
		if b[1] != v&7 || b[0] != 0x20 {
			t.Errorf("version %d: flags %x", v, b[:2])
		}
		if _, _, r := ParseGRE(b); r != ReasonGREVersion {
			t.Errorf("version %d: ParseGRE = %v, want %v", v, r, ReasonGREVersion)
		}
	}
}

func TestGRECodec(t *testing.T) {
	for _, tc := range []struct {
		key      uint32
		hasKey   bool
		hdr      int
		overhead int
	}{
		{0, false, 4, 38},
		{testKey, true, 8, 42},
		{0, true, 8, 42},
		{0xffffffff, true, 8, 42},
		{testKey, false, 4, 38}, // a key given without hasKey is not used
	} {
		g := NewGRE(tc.key, tc.hasKey)
		if g.Name() != "gre" || g.HeaderLen() != tc.hdr || g.Overhead() != tc.overhead {
			t.Errorf("NewGRE(%#x, %v): name %q, HeaderLen %d, Overhead %d; want gre, %d, %d",
				tc.key, tc.hasKey, g.Name(), g.HeaderLen(), g.Overhead(), tc.hdr, tc.overhead)
		}
		var _ Codec = g
		for _, size := range []int{14, 15, 42, 64, 1400, 1500, 8963} {
			t.Run(fmt.Sprintf("key=%#x/%v/%d", tc.key, tc.hasKey, size), func(t *testing.T) {
				frame := testFrame(size, uint16(size))
				buf := withHeadroom(frame)
				buf = append(buf, 0xee, 0xee) // spare capacity beyond the frame must stay out
				out := g.Encap(buf, size)
				if len(out) != tc.hdr+size {
					t.Fatalf("Encap length %d, want %d", len(out), tc.hdr+size)
				}
				if &out[0] != &buf[Headroom-tc.hdr] {
					t.Fatal("Encap did not write in place in front of the frame")
				}
				if !bytes.Equal(out[tc.hdr:], frame) {
					t.Fatal("Encap changed the frame")
				}
				wantHdr := GREHeader{Proto: EtherTypeTEB, HasKey: tc.hasKey}
				if tc.hasKey {
					wantHdr.Key = tc.key
				}
				if want := greBytes(wantHdr, nil); !bytes.Equal(out[:tc.hdr], want) {
					t.Fatalf("header %x, want %x", out[:tc.hdr], want)
				}
				checkGREOracle(t, out, wantHdr, frame)

				pkt := ipv4(ProtoGRE, out)
				// gopacket decodes the whole outer packet down to the
				// inner Ethernet frame.
				p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
				greL, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
				ethL, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				if greL == nil || ethL == nil {
					// Only what follows the inner Ethernet header may fail
					// to decode (the short frames' EtherType is unknown).
					t.Fatalf("gopacket layers %v, error %v", p.Layers(), p.ErrorLayer())
				}
				if greL.Protocol != layers.EthernetTypeTransparentEthernetBridging {
					t.Errorf("gopacket GRE protocol %v", greL.Protocol)
				}
				if !bytes.Equal(ethL.DstMAC, frame[0:6]) || !bytes.Equal(ethL.SrcMAC, frame[6:12]) ||
					uint16(ethL.EthernetType) != binary.BigEndian.Uint16(frame[12:14]) {
					t.Errorf("gopacket Ethernet %v > %v type %v", ethL.SrcMAC, ethL.DstMAC, ethL.EthernetType)
				}
				if !bytes.Equal(append(bytes.Clone(ethL.Contents), ethL.Payload...), frame) {
					t.Error("gopacket Ethernet bytes differ from the frame")
				}

				inner, r := g.Decap(pkt)
				if r != OK {
					t.Fatalf("Decap: %v", r)
				}
				if !bytes.Equal(inner, frame) {
					t.Fatalf("Decap = %x, want the frame %x", inner, frame)
				}
				if !isSubslice(inner, pkt) {
					t.Fatal("Decap result is not a subslice of the packet")
				}
				inner, r = g.DecapGRE(out)
				if r != OK || !bytes.Equal(inner, frame) {
					t.Fatalf("DecapGRE = %v", r)
				}
			})
		}
	}
}

// greCase is one packet given to the GRE codec's Decap.
type greCase struct {
	name   string
	key    uint32 // the codec's configuration
	hasKey bool
	pkt    []byte // a whole IPv4 packet
	want   Reason
}

// greCases are the table cases of Decap; FuzzGREDecap starts from them.
func greCases() []greCase {
	inner := testFrame(64, 1)
	teb := GREHeader{Proto: EtherTypeTEB}
	keyed := GREHeader{Proto: EtherTypeTEB, HasKey: true, Key: testKey}
	full := GREHeader{Proto: EtherTypeTEB, Checksum: true, HasKey: true, Key: testKey, HasSeq: true, Seq: 42}
	plain := ipv4(ProtoGRE, greBytes(teb, inner))
	withKey := ipv4(ProtoGRE, greBytes(keyed, inner))
	withAll := ipv4(ProtoGRE, greBytes(full, inner))
	// setFlags changes the GRE flags word of a packet with outer IPv4.
	setFlags := func(pkt []byte, flags uint16) []byte {
		return mutate(pkt, func(p []byte) { binary.BigEndian.PutUint16(p[20:22], flags) })
	}

	cs := []greCase{
		{"ok", 0, false, plain, OK},
		{"ok keyed", testKey, true, withKey, OK},
		{"ok key zero", 0, true, ipv4(ProtoGRE, greBytes(GREHeader{Proto: EtherTypeTEB, HasKey: true}, inner)), OK},
		{"ok C K S", testKey, true, withAll, OK},
		{"ok C", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: EtherTypeTEB, Checksum: true}, inner)), OK},
		{"ok S", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: EtherTypeTEB, HasSeq: true, Seq: 1}, inner)), OK},
		{"ok C odd length", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: EtherTypeTEB, Checksum: true}, testFrame(15, 0))), OK},
		{"ok inner 14", 0, false, ipv4(ProtoGRE, greBytes(teb, inner[:14])), OK},
		{"ok keyless codec given a key", 7, false, plain, OK},
		{"ok trailing bytes after total length", 0, false, append(bytes.Clone(plain), 0xff, 0xff, 0xff), OK},

		{"empty", 0, false, nil, ReasonTruncated},
		{"ip 19 bytes", 0, false, plain[:19], ReasonTruncated},
		{"ip version 6", 0, false, mutate(plain, func(p []byte) { p[0] = 0x65 }), ReasonIPHeader},
		{"ip IHL 4", 0, false, mutate(plain, func(p []byte) { p[0] = 0x44 }), ReasonIPHeader},
		{"ip total below IHL", 0, false, mutate(plain, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], 8) }), ReasonIPHeader},
		{"ip total beyond packet", 0, false, mutate(plain, func(p []byte) { binary.BigEndian.PutUint16(p[2:4], uint16(len(p)+4)) }), ReasonTruncated},
		{"ip options", 0, false, func() []byte {
			p := append(bytes.Clone(plain[:20]), 1, 1, 1, 0)
			p[0] = 0x46
			p = append(p, plain[20:]...)
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			return p
		}(), ReasonIPOptions},
		{"ip more fragments", 0, false, mutate(plain, func(p []byte) { p[6] |= 0x20 }), ReasonIPFragment},
		{"ip fragment offset", 0, false, mutate(plain, func(p []byte) { binary.BigEndian.PutUint16(p[6:8], 0x00b9) }), ReasonIPFragment},
		{"ip proto UDP", 0, false, mutate(plain, func(p []byte) { p[9] = ProtoUDP }), ReasonIPProto},
		{"ip proto 0", 0, false, mutate(plain, func(p []byte) { p[9] = 0 }), ReasonIPProto},

		{"gre 0 bytes", 0, false, ipv4(ProtoGRE, nil), ReasonTruncated},
		{"gre 3 bytes", 0, false, ipv4(ProtoGRE, greBytes(teb, nil)[:3]), ReasonTruncated},
		{"gre key cut", testKey, true, ipv4(ProtoGRE, greBytes(keyed, nil)[:7]), ReasonTruncated},
		{"gre C K S header cut", testKey, true, ipv4(ProtoGRE, greBytes(full, nil)[:12]), ReasonTruncated},
		{"gre version 1", 0, false, setFlags(plain, 0x0001), ReasonGREVersion},
		{"gre version 7", 0, false, setFlags(plain, 0x0007), ReasonGREVersion},
		{"gre PPTP", 0, false, setFlags(plain, 0x3081), ReasonGREVersion},
		{"gre reserved1", 0, false, ipv4(ProtoGRE, func() []byte {
			b := greBytes(GREHeader{Proto: EtherTypeTEB, Checksum: true}, inner)
			b[7] = 1
			fixGRESum(b)
			return b
		}()), ReasonGREFlags},
		{"gre proto IPv4", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: 0x0800}, inner)), ReasonGREProto},
		{"gre proto 0x6559", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: 0x6559}, inner)), ReasonGREProto},
		{"gre proto 0", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{}, inner)), ReasonGREProto},
		{"gre wrong key", testKey + 1, true, withKey, ReasonGREKey},
		{"gre missing key", testKey, true, plain, ReasonGREKey},
		{"gre unexpected key", 0, false, withKey, ReasonGREKey},
		{"gre unexpected key zero", 0, false, ipv4(ProtoGRE, greBytes(GREHeader{Proto: EtherTypeTEB, HasKey: true}, inner)), ReasonGREKey},
		{"gre bad checksum payload", testKey, true, mutate(withAll, func(p []byte) { p[len(p)-1] ^= 0x40 }), ReasonGREChecksum},
		{"gre bad checksum field", testKey, true, mutate(withAll, func(p []byte) { p[25] ^= 1 }), ReasonGREChecksum},
		{"gre bad checksum key", testKey, true, mutate(withAll, func(p []byte) { p[29] ^= 1 }), ReasonGREChecksum},
		{"inner 13", 0, false, ipv4(ProtoGRE, greBytes(teb, inner[:13])), ReasonInnerShort},
		{"inner 0", testKey, true, ipv4(ProtoGRE, greBytes(keyed, nil)), ReasonInnerShort},
		{"inner 0 C K S", testKey, true, ipv4(ProtoGRE, greBytes(full, nil)), ReasonInnerShort},
	}
	// Every flag bit but C, K and S, and not the version, on its own.
	for bit := uint16(0x0008); bit != 0; bit <<= 1 {
		if bit == greFlagC || bit == greFlagK || bit == greFlagS {
			continue
		}
		cs = append(cs, greCase{fmt.Sprintf("gre flag %#04x", bit), 0, false, setFlags(plain, bit), ReasonGREFlags})
		cs = append(cs, greCase{fmt.Sprintf("gre flag %#04x with K", bit), testKey, true, setFlags(withKey, greFlagK|bit), ReasonGREFlags})
	}
	return cs
}

func TestGREDecap(t *testing.T) {
	for _, tc := range greCases() {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGRE(tc.key, tc.hasKey)
			inner, r := g.Decap(tc.pkt)
			if r != tc.want {
				t.Fatalf("Decap = %v, want %v", r, tc.want)
			}
			if r != OK {
				if inner != nil {
					t.Fatalf("Decap returned a frame with %v", r)
				}
				return
			}
			if len(inner) < EthHeaderLen || !isSubslice(inner, tc.pkt) {
				t.Fatalf("Decap returned %d bytes outside the packet", len(inner))
			}
			_, _, payload, _ := ParseIPv4(tc.pkt)
			h, n, _ := ParseGRE(payload)
			if !bytes.Equal(inner, payload[n:]) {
				t.Fatal("Decap did not return the GRE payload")
			}
			checkGREOracle(t, payload, h, inner)
		})
	}
}

// TestGREDecapTruncated cuts a keyed, checksummed, sequenced packet at every
// offset.
func TestGREDecapTruncated(t *testing.T) {
	g := NewGRE(testKey, true)
	full := GREHeader{Proto: EtherTypeTEB, Checksum: true, HasKey: true, Key: testKey, HasSeq: true, Seq: 0xffffffff}
	gre := greBytes(full, testFrame(64, 3))
	pkt := ipv4(ProtoGRE, gre)

	// As delivered with the outer header intact: its total length gives
	// every cut away.
	for i := range len(pkt) {
		if inner, r := g.Decap(pkt[:i]); r != ReasonTruncated {
			t.Errorf("Decap(pkt[:%d]) = %d bytes, %v; want %v", i, len(inner), r, ReasonTruncated)
		}
	}

	// Cut the GRE packet and give it a consistent outer header: the GRE
	// header is checked for length, then the checksum catches the cut.
	for i := range len(gre) {
		cut := gre[:i]
		want := ReasonTruncated
		switch {
		case i < full.Len():
		case !refVerifies(cut):
			want = ReasonGREChecksum
		case i-full.Len() < EthHeaderLen:
			want = ReasonInnerShort
		default:
			continue // the cut happens to keep the checksum: a valid, shorter frame
		}
		if inner, r := g.Decap(ipv4(ProtoGRE, cut)); r != want {
			t.Errorf("Decap(gre[:%d]) = %d bytes, %v; want %v", i, len(inner), r, want)
		}
	}

	// Without a checksum, a cut inside the inner Ethernet header is
	// InnerShort; every shorter cut is Truncated.
	noSum := full
	noSum.Checksum = false
	gre = greBytes(noSum, testFrame(64, 3))
	for i := 0; i < noSum.Len()+EthHeaderLen; i++ {
		want := ReasonTruncated
		if i >= noSum.Len() {
			want = ReasonInnerShort
		}
		if inner, r := g.Decap(ipv4(ProtoGRE, gre[:i])); r != want {
			t.Errorf("Decap(gre[:%d]) without C = %d bytes, %v; want %v", i, len(inner), r, want)
		}
		if inner, r := g.DecapGRE(gre[:i]); r != want {
			t.Errorf("DecapGRE(gre[:%d]) without C = %d bytes, %v; want %v", i, len(inner), r, want)
		}
	}
	// And no cut of any length panics ParseGRE.
	for i := range len(gre) {
		_, n, r := ParseGRE(gre[:i])
		if r == OK && n > i {
			t.Errorf("ParseGRE(gre[:%d]) claims a %d-byte header", i, n)
		}
	}
}

// sameChecksum reports whether two checksums are equal as one's-complement
// numbers, where 0x0000 and 0xffff are both zero.
func sameChecksum(a, b uint16) bool {
	return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

// greZeroSum returns a GRE packet with C whose checksum is 0x0000: its
// words without the checksum sum to 0xffff. The other representation of
// one's-complement zero, 0xffff, verifies too (RFC 1624).
func greZeroSum() []byte {
	h := GREHeader{Proto: EtherTypeTEB, Checksum: true}
	b := make([]byte, h.Len()+16)
	copy(b[h.Len():], testFrame(16, 5))
	b[len(b)-2], b[len(b)-1] = 0, 0
	MarshalGRE(b, h)
	binary.BigEndian.PutUint16(b[4:6], 0)
	binary.BigEndian.PutUint16(b[len(b)-2:], ^refChecksum(b)^0xffff) // make the sum all ones
	MarshalGRE(b, h)
	return b
}

func TestParseGREChecksumZero(t *testing.T) {
	b := greZeroSum()
	if got := binary.BigEndian.Uint16(b[4:6]); got != 0 {
		t.Fatalf("checksum %#04x, the test wants 0", got)
	}
	for _, ck := range []uint16{0x0000, 0xffff} {
		binary.BigEndian.PutUint16(b[4:6], ck)
		if h, n, r := ParseGRE(b); r != OK {
			t.Errorf("checksum %#04x: %v", ck, r)
		} else {
			checkGREReencode(t, b, h, n)
		}
	}
}

// checkGREReencode checks that MarshalGRE with h over the payload of b gives
// b again. With C, both checksums must verify; they may differ only as the
// two one's-complement zeros 0x0000 and 0xffff.
func checkGREReencode(t *testing.T, b []byte, h GREHeader, n int) {
	t.Helper()
	re := bytes.Clone(b)
	MarshalGRE(re, h)
	if h.Checksum {
		if !refVerifies(re) {
			t.Fatalf("re-encoded checksum does not verify: %x", re[:n])
		}
		got, want := binary.BigEndian.Uint16(b[4:6]), binary.BigEndian.Uint16(re[4:6])
		if !sameChecksum(got, want) {
			t.Fatalf("checksum %#04x, re-encoded %#04x", got, want)
		}
		re[4], re[5] = b[4], b[5]
	}
	if !bytes.Equal(re, b) {
		t.Fatalf("re-encoding %+v gives\n%x\nnot\n%x", h, re[:n], b[:n])
	}
}

// refGREReason is an independent judgement of the first 4 bytes of a GRE
// header: what ParseGRE must say about the version and flags.
func refGREReason(b []byte) Reason {
	if len(b) < 4 {
		return ReasonTruncated
	}
	if b[1]&0x07 != 0 {
		return ReasonGREVersion
	}
	// Allowed: C (0x80), K (0x20) and S (0x10) of the first byte.
	if b[0]&^0xb0 != 0 || b[1] != 0 {
		return ReasonGREFlags
	}
	return OK
}

func FuzzParseGRE(f *testing.F) {
	for _, tc := range greCases() {
		if _, _, payload, r := ParseIPv4(tc.pkt); r == OK {
			f.Add(payload)
		}
	}
	zero := greZeroSum()
	f.Add(zero)
	f.Add(mutate(zero, func(p []byte) { p[4], p[5] = 0xff, 0xff }))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, r := ParseGRE(b)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if ref := refGREReason(b); ref != OK {
			if r != ref {
				t.Fatalf("ParseGRE = %v, reference %v", r, ref)
			}
			return
		}
		if r != OK {
			switch r {
			case ReasonTruncated:
				if len(b) >= h.Len() {
					t.Fatalf("truncated, but %d bytes hold the %d-byte header", len(b), h.Len())
				}
			case ReasonGREChecksum:
				if !h.Checksum || refVerifies(b) {
					t.Fatalf("checksum refused, but C=%v and the reference verifies it", h.Checksum)
				}
			case ReasonGREFlags:
				if !h.Checksum || binary.BigEndian.Uint16(b[6:8]) == 0 {
					t.Fatal("flags refused, but the flags word and Reserved1 are fine")
				}
			default:
				t.Fatalf("ParseGRE = %v, impossible after a good flags word", r)
			}
			return
		}
		if n != h.Len() || n > len(b) || h.Version != 0 {
			t.Fatalf("accepted with length %d (Len %d) of %d bytes, version %d", n, h.Len(), len(b), h.Version)
		}
		if h.Checksum && !refVerifies(b) {
			t.Fatal("accepted a checksum the reference refuses")
		}
		checkGREReencode(t, b, h, n)
		checkGREOracle(t, b, h, b[n:])
	})
}

func FuzzGREDecap(f *testing.F) {
	for _, tc := range greCases() {
		f.Add(tc.pkt, tc.key, tc.hasKey)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, key uint32, hasKey bool) {
		g := NewGRE(key, hasKey)
		inner, r := g.Decap(pkt)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			if inner != nil {
				t.Fatalf("%v with a frame of %d bytes", r, len(inner))
			}
			switch r {
			case ReasonVXLANFlags, ReasonVXLANReserved, ReasonVXLANVNI:
				t.Fatalf("GRE decoder gave %v", r)
			}
			return
		}
		if len(inner) < EthHeaderLen {
			t.Fatalf("accepted an inner frame of %d bytes", len(inner))
		}
		if !isSubslice(inner, pkt) {
			t.Fatal("inner frame is not a subslice of the packet")
		}
		src, proto, payload, ir := ParseIPv4(pkt)
		if ir != OK || proto != ProtoGRE || src != netipFrom(pkt[12:16]) {
			t.Fatalf("accepted an outer packet ParseIPv4 judges %v, proto %d", ir, proto)
		}
		h, n, gr := ParseGRE(payload)
		if gr != OK || h.Proto != EtherTypeTEB || h.HasKey != hasKey || (hasKey && h.Key != key) {
			t.Fatalf("accepted GRE header %+v (%v) for key %#x/%v", h, gr, key, hasKey)
		}
		if &inner[0] != &payload[n] || len(inner) != len(payload)-n {
			t.Fatal("inner frame is not the GRE payload")
		}
		checkGREReencode(t, payload, h, n)
		checkGREOracle(t, payload, h, inner)
	})
}
