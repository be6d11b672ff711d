package inet

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// header returns a valid IPv4 packet: a header of hlen bytes and payload.
func header(hlen int, proto uint8, payload []byte) []byte {
	p := make([]byte, hlen+len(payload))
	p[IPv4VerIHL] = 0x40 | byte(hlen/4)
	p[IPv4TTL] = 64
	p[IPv4Proto] = proto
	copy(p[IPv4Src:], []byte{198, 19, 0, 1})
	copy(p[IPv4Dst:], []byte{239, 1, 2, 3})
	for i := IPv4MinLen; i < hlen; i++ {
		p[i] = 1 // NOP options
	}
	copy(p[hlen:], payload)
	h := IPv4(p)
	h.SetTotalLen(len(p))
	h.SetChecksum()
	return p
}

func TestIPv4Getters(t *testing.T) {
	p := header(24, 17, []byte("payload"))
	binary.BigEndian.PutUint16(p[IPv4FlagsFrag:], IPv4FlagDF)
	h := IPv4(p)
	h.SetChecksum()
	if h.Check() != IPv4OK || !h.HeaderChecksumOK() {
		t.Fatalf("Check %v, checksum %v", h.Check(), h.HeaderChecksumOK())
	}
	if h.Version() != 4 || h.HeaderLen() != 24 || h.TotalLen() != 31 || h.Protocol() != 17 || h.IsFragment() {
		t.Errorf("version %d hlen %d total %d proto %d fragment %v", h.Version(), h.HeaderLen(), h.TotalLen(), h.Protocol(), h.IsFragment())
	}
	if h.Src() != netip.MustParseAddr("198.19.0.1") || h.Dst() != netip.MustParseAddr("239.1.2.3") {
		t.Errorf("src %v dst %v", h.Src(), h.Dst())
	}
	if !bytes.Equal(h.Addrs(), []byte{198, 19, 0, 1, 239, 1, 2, 3}) || string(h.Payload()) != "payload" {
		t.Errorf("addrs %v payload %q", h.Addrs(), h.Payload())
	}
	for _, frag := range []uint16{IPv4FlagMF, 1, IPv4FragOffset, IPv4FlagMF | 185} {
		binary.BigEndian.PutUint16(p[IPv4FlagsFrag:], frag)
		if !h.IsFragment() {
			t.Errorf("flags/offset %#04x: not a fragment", frag)
		}
	}
	p[IPv4TTL]++
	if h.HeaderChecksumOK() {
		t.Error("a changed header still verifies")
	}
}

func TestIPv4Check(t *testing.T) {
	good := header(20, 2, make([]byte, 8))
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		want IPv4Problem
	}{
		{"valid", func(p []byte) []byte { return p }, IPv4OK},
		{"trailing bytes past the total length", func(p []byte) []byte { return append(p, 0, 0) }, IPv4OK},
		{"empty", func(p []byte) []byte { return nil }, IPv4Short},
		{"19 bytes", func(p []byte) []byte { return p[:19] }, IPv4Short},
		{"version 6", func(p []byte) []byte { p[0] = 0x65; return p }, IPv4Version},
		{"IHL 4", func(p []byte) []byte { p[0] = 0x44; return p }, IPv4IHL},
		{"IHL 0", func(p []byte) []byte { p[0] = 0x40; return p }, IPv4IHL},
		{"total shorter than the header", func(p []byte) []byte { IPv4(p).SetTotalLen(19); return p }, IPv4IHL},
		{"IHL past the total", func(p []byte) []byte { p[0] = 0x4f; return p }, IPv4IHL},
		{"total past the end", func(p []byte) []byte { return p[:27] }, IPv4Truncated},
	} {
		p := c.edit(bytes.Clone(good))
		if got := IPv4(p).Check(); got != c.want {
			t.Errorf("%s: Check() = %v, want %v", c.name, got, c.want)
		}
	}
}

// FuzzIPv4 checks the view against its invariants and against gopacket's
// IPv4 decoder as a second implementation.
func FuzzIPv4(f *testing.F) {
	f.Add(header(20, 2, make([]byte, 8)))
	f.Add(header(24, 17, []byte("payload")))
	f.Add(header(60, 6, nil))
	f.Add([]byte{0x45, 0, 0, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		h := IPv4(b)
		if h.Check() != IPv4OK {
			return
		}
		hlen, total := h.HeaderLen(), h.TotalLen()
		if hlen < IPv4MinLen || hlen > total || total > len(b) || len(h.Payload()) != total-hlen {
			t.Fatalf("accepted: hlen %d total %d len %d payload %d", hlen, total, len(b), len(h.Payload()))
		}
		h.HeaderChecksumOK()
		h.IsFragment()
		if hlen != IPv4MinLen {
			return // gopacket also parses the options, which the view leaves alone
		}
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("Check accepted what gopacket refuses: %v", err)
		}
		if !ip.SrcIP.Equal(net.IP(h.Src().AsSlice())) || !ip.DstIP.Equal(net.IP(h.Dst().AsSlice())) ||
			uint8(ip.Protocol) != h.Protocol() || int(ip.Length) != total || int(ip.IHL)*4 != hlen ||
			!bytes.Equal(ip.Payload, h.Payload()) {
			t.Fatalf("gopacket reads %v > %v proto %d length %d ihl %d; the view %v > %v proto %d total %d hlen %d",
				ip.SrcIP, ip.DstIP, ip.Protocol, ip.Length, ip.IHL, h.Src(), h.Dst(), h.Protocol(), total, hlen)
		}
	})
}
