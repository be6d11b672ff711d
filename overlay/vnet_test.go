package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/meshcast/meshcast/internal/inet"
)

var (
	coSrc    = netip.MustParseAddr("198.19.0.9")
	coDst    = netip.MustParseAddr("198.19.0.1")
	coSrcMAC = net.HardwareAddr{0x02, 0x6d, 198, 19, 0, 9}
	coDstMAC = net.HardwareAddr{0x02, 0x6d, 198, 19, 0, 1}
)

// udpFrame builds an Ethernet frame of a UDP datagram with a valid UDP
// checksum and IP ID id.
func coFrame(sport uint16, id uint16, payload []byte) []byte {
	f := udpToTAP(coSrc, coDst, coSrcMAC, coDstMAC, sport, 7000, payload)
	ip := f[EthHeaderLen:]
	binary.BigEndian.PutUint16(ip[4:6], id)
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], Checksum(ip[:20]))
	u := ip[20:]
	c := ^inet.Fold(inet.Sum(u, inet.Sum(ip[12:20], uint64(ProtoUDP)+uint64(len(u)))))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	return f
}

func seqPayload(n int, seq byte) []byte {
	p := bytes.Repeat([]byte{seq}, n)
	return p
}

// segment splits a frame built by buildCoalesced the way the kernel does, and
// returns the datagrams' payloads.
func segment(t *testing.T, super []byte) [][]byte {
	t.Helper()
	h, f := super[:VnetHdrLen], super[VnetHdrLen:]
	if h[0] != vnetNeedsCsum || h[1] != vnetGSOUDPL4 {
		t.Fatalf("virtio-net header %x", h)
	}
	seg := int(binary.NativeEndian.Uint16(h[4:6]))
	if int(binary.NativeEndian.Uint16(h[6:8])) != 34 || binary.NativeEndian.Uint16(h[8:10]) != 6 {
		t.Fatalf("checksum start/offset %x", h)
	}
	ip := f[EthHeaderLen:]
	if !inet.Verify(ip[:20]) {
		t.Fatal("IPv4 header checksum of the coalesced frame is wrong")
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total != len(ip) {
		t.Fatalf("IPv4 total length %d, frame has %d", total, len(ip))
	}
	u := ip[20:]
	if int(binary.BigEndian.Uint16(u[4:6])) != len(u) {
		t.Fatalf("UDP length %d of %d", binary.BigEndian.Uint16(u[4:6]), len(u))
	}
	if got, want := binary.BigEndian.Uint16(u[6:8]), inet.Fold(inet.Sum(ip[12:20], uint64(ProtoUDP)+uint64(len(u)))); got != want {
		t.Fatalf("partial UDP checksum %#04x, want the pseudo-header sum %#04x", got, want)
	}
	var out [][]byte
	for p := u[8:]; len(p) > 0; {
		n := min(seg, len(p))
		out = append(out, p[:n])
		p = p[n:]
	}
	return out
}

func TestUDPRunCoalesces(t *testing.T) {
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, coFrame(5000, uint16(i), seqPayload(300, byte(i))))
	}
	frames = append(frames, coFrame(5000, 10, seqPayload(120, 10))) // shorter: ends the run
	frames = append(frames, coFrame(5000, 11, seqPayload(300, 11)))
	n, seg := udpRun(frames)
	if n != 11 || seg != 300 {
		t.Fatalf("udpRun = %d, %d; want 11, 300", n, seg)
	}
	buf := make([]byte, VnetHdrLen+EthHeaderLen+maxCoalescedLen)
	l := buildCoalesced(buf, frames[:n], seg)
	if !bytes.Equal(buf[VnetHdrLen:VnetHdrLen+EthHeaderLen], frames[0][:EthHeaderLen]) {
		t.Error("Ethernet header changed")
	}
	got := segment(t, buf[:l])
	if len(got) != 11 {
		t.Fatalf("%d datagrams, want 11", len(got))
	}
	for i, p := range got {
		if !bytes.Equal(p, frames[i][42:]) {
			t.Errorf("datagram %d: payload differs", i)
		}
	}
	if n, _ := udpRun(frames[11:]); n != 1 {
		t.Errorf("a lone frame: run of %d", n)
	}
}

func TestUDPRunBreaks(t *testing.T) {
	base := func() []byte { return coFrame(5000, 1, seqPayload(200, 1)) }
	cases := []struct {
		name   string
		mutate func(f []byte) []byte
	}{
		{"other source port", func(f []byte) []byte { return coFrame(5001, 2, seqPayload(200, 2)) }},
		{"longer payload", func(f []byte) []byte { return coFrame(5000, 2, seqPayload(201, 2)) }},
		{"bad UDP checksum", func(f []byte) []byte { f[len(f)-1] ^= 0xff; return f }},
		{"bad IP checksum", func(f []byte) []byte { f[EthHeaderLen+8]--; return f }},
		{"other TTL", func(f []byte) []byte {
			ip := f[EthHeaderLen:]
			ip[8]--
			binary.BigEndian.PutUint16(ip[10:12], 0)
			binary.BigEndian.PutUint16(ip[10:12], Checksum(ip[:20]))
			return f
		}},
		{"fragment", func(f []byte) []byte {
			ip := f[EthHeaderLen:]
			ip[6] |= 0x20 // MF
			binary.BigEndian.PutUint16(ip[10:12], 0)
			binary.BigEndian.PutUint16(ip[10:12], Checksum(ip[:20]))
			return f
		}},
		{"other MAC", func(f []byte) []byte { f[6] ^= 2; return f }},
		{"not IPv4", func(f []byte) []byte { f[12] = 0x86; return f }},
		{"short", func(f []byte) []byte { return f[:40] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frames := [][]byte{base(), base(), c.mutate(base()), base()}
			if n, _ := udpRun(frames); n != 2 {
				t.Errorf("run of %d, want 2", n)
			}
		})
	}
	// The first frame decides whether there is a run at all.
	frames := [][]byte{base(), base()}
	frames[0][len(frames[0])-1] ^= 0xff
	if n, _ := udpRun(frames); n != 1 {
		t.Errorf("bad first datagram: run of %d", n)
	}
	// No more than MaxCoalesce, and no more than the IPv4 length allows.
	frames = frames[:0]
	for i := range MaxCoalesce + 5 {
		frames = append(frames, coFrame(5000, uint16(i), seqPayload(100, 0)))
	}
	if n, _ := udpRun(frames); n != MaxCoalesce {
		t.Errorf("run of %d, want %d", n, MaxCoalesce)
	}
	frames = frames[:0]
	for i := range 60 {
		frames = append(frames, coFrame(5000, uint16(i), seqPayload(1400, 0)))
	}
	n, _ := udpRun(frames)
	if n < 2 || 28+n*1400 > maxCoalescedLen || 28+(n+1)*1400 <= maxCoalescedLen {
		t.Errorf("1400-byte datagrams: run of %d", n)
	}
}

func TestUDPRunZeroAllocs(t *testing.T) {
	var frames [][]byte
	for i := range 32 {
		frames = append(frames, coFrame(5000, uint16(i), seqPayload(1000, 0)))
	}
	buf := make([]byte, VnetHdrLen+EthHeaderLen+maxCoalescedLen)
	if a := testing.AllocsPerRun(100, func() {
		n, seg := udpRun(frames)
		buildCoalesced(buf, frames[:n], seg)
	}); a != 0 {
		t.Errorf("%v allocations per coalesced run", a)
	}
}

func TestFinishVnet(t *testing.T) {
	f := coFrame(5000, 1, seqPayload(50, 7))
	want := binary.BigEndian.Uint16(f[40:42])
	b := append(make([]byte, VnetHdrLen), f...)
	if n := finishVnet(b); n != len(f) {
		t.Fatalf("plain frame: length %d, want %d", n, len(f))
	}
	// A partial checksum: the field holds the pseudo-header sum.
	u := b[VnetHdrLen+34:]
	binary.BigEndian.PutUint16(u[6:8], inet.Fold(inet.Sum(b[VnetHdrLen+26:VnetHdrLen+34], uint64(ProtoUDP)+uint64(len(u)))))
	b[0] = vnetNeedsCsum
	binary.NativeEndian.PutUint16(b[6:8], 34)
	binary.NativeEndian.PutUint16(b[8:10], 6)
	if n := finishVnet(b); n != len(f) {
		t.Fatalf("partial checksum: length %d", n)
	}
	if got := binary.BigEndian.Uint16(u[6:8]); got != want {
		t.Errorf("completed checksum %#04x, want %#04x", got, want)
	}
	b[0], b[1] = 0, vnetGSOUDPL4
	if n := finishVnet(b); n != 0 {
		t.Errorf("segmentation-offload frame: length %d, want 0", n)
	}
	if n := finishVnet(b[:5]); n != 0 {
		t.Errorf("short header: length %d", n)
	}
}

// FuzzFinishVnet feeds finishVnet what a TAP read could return.
func FuzzFinishVnet(f *testing.F) {
	f.Add(append(make([]byte, VnetHdrLen), coFrame(1, 1, []byte("x"))...))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := finishVnet(b)
		if n < 0 || n > len(b) {
			t.Fatalf("length %d of %d", n, len(b))
		}
	})
}

// FuzzUDPRun splits the input into frames at 0xFE 0xFE markers, checks
// that udpRun's run is made of valid datagrams of one flow, and that the
// coalesced frame carries exactly their payloads.
func FuzzUDPRun(f *testing.F) {
	a := coFrame(5000, 1, seqPayload(40, 1))
	b := coFrame(5000, 2, seqPayload(40, 2))
	c := coFrame(5000, 3, seqPayload(20, 3))
	f.Add(bytes.Join([][]byte{a, b, c}, []byte{0xfe, 0xfe}))
	f.Add(bytes.Join([][]byte{a, a[:30], b}, []byte{0xfe, 0xfe}))
	buf := make([]byte, VnetHdrLen+EthHeaderLen+maxCoalescedLen)
	f.Fuzz(func(t *testing.T, in []byte) {
		frames := bytes.Split(in, []byte{0xfe, 0xfe})
		n, seg := udpRun(frames)
		if n < 2 {
			return
		}
		var want []byte
		for i, fr := range frames[:n] {
			p, ok := simpleUDP(fr)
			if !ok || !sameFlow(frames[0], fr) || p > seg || (i < n-1 && p != seg) {
				t.Fatalf("frame %d of the run does not belong", i)
			}
			total := int(binary.BigEndian.Uint16(fr[16:18]))
			want = append(want, fr[EthHeaderLen+28:EthHeaderLen+total]...)
		}
		l := buildCoalesced(buf, frames[:n], seg)
		got := bytes.Join(segment(t, buf[:l]), nil)
		if !bytes.Equal(got, want) {
			t.Fatal("coalesced payload differs")
		}
	})
}
