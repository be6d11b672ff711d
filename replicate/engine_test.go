package replicate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/meshcast/meshcast/overlay"
	"golang.org/x/sys/unix"
)

var localMAC = net.HardwareAddr{0x02, 0x6d, 198, 19, 0, 1}

// capture is a PacketWriter that records what it is asked to send.
type capture struct {
	sent   []overlay.Message
	refuse map[netip.Addr]bool
	keep   bool
}

func (c *capture) WriteBatch(msgs []overlay.Message) (int, error) {
	failed := 0
	for i := range msgs {
		if c.refuse[msgs[i].Addr] {
			msgs[i].N, msgs[i].Errno = -1, unix.EHOSTUNREACH
			failed++
			continue
		}
		msgs[i].N = len(msgs[i].Buf)
		if c.keep {
			m := msgs[i]
			m.Buf = bytes.Clone(m.Buf)
			c.sent = append(c.sent, m)
		}
	}
	return failed, nil
}

func (c *capture) to() map[netip.Addr]int {
	m := map[netip.Addr]int{}
	for _, s := range c.sent {
		m[s.Addr]++
	}
	return m
}

func underlay(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }

func peerInfos(n int) []PeerInfo {
	var infos []PeerInfo
	for i := 2; i < n+2; i++ {
		infos = append(infos, PeerInfo{
			Underlay: underlay(i),
			Overlay:  netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), 24),
			ID:       fmt.Sprintf("peer%d", i),
		})
	}
	return infos
}

func newTestEngine(t testing.TB, codec overlay.Codec, peers int) *Engine {
	t.Helper()
	e, err := New(Config{Codec: codec, LocalMAC: localMAC, MTU: 1500 - codec.Overhead()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.SetPeers(peerInfos(peers)); err != nil {
		t.Fatal(err)
	}
	return e
}

// frame builds an Ethernet frame carrying an IPv4/UDP payload of size bytes
// into a buffer with headroom, and returns the buffer and frame length.
func frame(dst, src net.HardwareAddr, size int) ([]byte, int) {
	buf := make([]byte, BufSize)
	f := buf[overlay.Headroom:]
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	n := 20 + 8 + size
	binary.BigEndian.PutUint16(ip[2:4], uint16(n))
	ip[8] = 1
	ip[9] = 17
	copy(ip[12:16], []byte{198, 19, 0, 1})
	copy(ip[16:20], []byte{239, 1, 2, 3})
	return buf, 14 + n
}

var (
	mcastMAC  = net.HardwareAddr{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}
	bcastMAC  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	remoteMAC = net.HardwareAddr{0x02, 0x6d, 198, 19, 0, 2}
)

// encapFrom wraps an inner frame as peer src would send it, in the form the
// underlay socket delivers for codec.
func encapFrom(codec overlay.Codec, src netip.Addr, inner []byte) []byte {
	buf := make([]byte, BufSize)
	copy(buf[overlay.Headroom:], inner)
	pkt := codec.Encap(buf, len(inner))
	if codec.Name() != "gre" {
		return bytes.Clone(pkt[overlay.UDPHeaderLen:]) // a UDP socket strips IP and UDP
	}
	ip := make([]byte, 20+len(pkt))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
	ip[8] = 64
	ip[9] = overlay.ProtoGRE
	a := src.As4()
	copy(ip[12:16], a[:])
	copy(ip[16:20], []byte{198, 18, 0, 1})
	copy(ip[20:], pkt)
	return ip
}

func codecs() []overlay.Codec {
	return []overlay.Codec{overlay.NewGRE(0, false), overlay.NewGRE(7, true), overlay.NewVXLAN(42, 4789)}
}

func TestEgressFanout(t *testing.T) {
	for _, codec := range codecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			e := newTestEngine(t, codec, 3)
			w := &capture{keep: true}
			g := e.newEgress(8)
			for _, dst := range []net.HardwareAddr{mcastMAC, bcastMAC, remoteMAC} {
				buf, n := frame(dst, localMAC, 100)
				want := bytes.Clone(buf[overlay.Headroom : overlay.Headroom+n])
				w.sent = nil
				if err := g.forward(buf, n, w); err != nil {
					t.Fatal(err)
				}
				if err := g.flush(w); err != nil {
					t.Fatal(err)
				}
				// Unknown unicast, broadcast and multicast go to every peer.
				if got := w.to(); len(got) != 3 || got[underlay(2)] != 1 || got[underlay(3)] != 1 || got[underlay(4)] != 1 {
					t.Fatalf("dst %v: copies %v, want one to each of 3 peers", dst, got)
				}
				for _, m := range w.sent {
					if len(m.Buf) != codec.HeaderLen()+n || !bytes.Equal(m.Buf[codec.HeaderLen():], want) {
						t.Fatalf("dst %v: copy to %v is not header+frame", dst, m.Addr)
					}
					if !bytes.Equal(m.Buf, w.sent[0].Buf) {
						t.Fatalf("copies differ beyond their destination")
					}
				}
			}
			for _, p := range e.Peers() {
				if p.TxPackets != 3 {
					t.Errorf("peer %v tx_packets = %d, want 3", p.Underlay, p.TxPackets)
				}
			}
		})
	}
}

func TestLearnedUnicastGoesToOnePeer(t *testing.T) {
	for _, codec := range codecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			e := newTestEngine(t, codec, 3)
			// Peer 3 sends a frame from remoteMAC: it is learned behind peer 3.
			in, n := frame(localMAC, remoteMAC, 10)
			now := time.Now().UnixNano()
			if got := e.receive(underlay(3), encapFrom(codec, underlay(3), in[overlay.Headroom:overlay.Headroom+n]), now); got == nil {
				t.Fatalf("frame from peer dropped: %v", e.Drops())
			}
			w := &capture{keep: true}
			g := e.newEgress(8)
			g.now = now
			buf, n := frame(remoteMAC, localMAC, 10)
			g.forward(buf, n, w)
			g.flush(w)
			if got := w.to(); len(got) != 1 || got[underlay(3)] != 1 {
				t.Fatalf("copies %v, want one to 198.18.0.3", got)
			}
			// After the peer is removed its MAC is forgotten: unknown unicast floods.
			if _, removed, _ := e.SetPeers(peerInfos(1)); len(removed) != 2 {
				t.Fatalf("removed %v", removed)
			}
			if e.macs.len() != 0 {
				t.Fatalf("MACs of a removed peer kept: %d", e.macs.len())
			}
			w.sent = nil
			buf, n = frame(remoteMAC, localMAC, 10)
			g.forward(buf, n, w)
			g.flush(w)
			if got := w.to(); len(got) != 1 || got[underlay(2)] != 1 {
				t.Fatalf("copies %v, want flood to the one remaining peer", got)
			}
		})
	}
}

func TestMACAging(t *testing.T) {
	codec := overlay.NewGRE(0, false)
	e, _ := New(Config{Codec: codec, LocalMAC: localMAC, MACAge: time.Minute, MACTable: 2})
	e.SetPeers(peerInfos(2))
	now := time.Now().UnixNano()
	for i := 0; i < 3; i++ {
		mac := net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i + 10)}
		in, n := frame(bcastMAC, mac, 10)
		e.receive(underlay(2), encapFrom(codec, underlay(2), in[overlay.Headroom:overlay.Headroom+n]), now)
	}
	if e.macs.len() != 2 || e.Drops()["mac_table_full"] != 1 {
		t.Fatalf("table bound not held: %d MACs, drops %v", e.macs.len(), e.Drops())
	}
	if p := e.macs.lookup([]byte{0x02, 0, 0, 0, 0, 10}, now+int64(2*time.Minute)); p != nil {
		t.Fatalf("expired MAC still maps to %v", p.Underlay)
	}
	e.Sweep(time.Unix(0, now+int64(2*time.Minute)))
	if e.macs.len() != 0 {
		t.Fatalf("sweep left %d MACs", e.macs.len())
	}
}

func TestIngressDrops(t *testing.T) {
	for _, codec := range codecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			e := newTestEngine(t, codec, 2)
			now := time.Now().UnixNano()
			good := func(dst, src net.HardwareAddr, size int) []byte {
				b, n := frame(dst, src, size)
				return b[overlay.Headroom : overlay.Headroom+n]
			}
			cases := []struct {
				name   string
				src    netip.Addr
				pkt    []byte
				reason string
			}{
				{"not a peer", underlay(99), encapFrom(codec, underlay(99), good(mcastMAC, remoteMAC, 10)), "not_peer"},
				{"own MAC as source", underlay(2), encapFrom(codec, underlay(2), good(mcastMAC, localMAC, 10)), "loop"},
				{"multicast source MAC", underlay(2), encapFrom(codec, underlay(2), good(localMAC, mcastMAC, 10)), "bad_source_mac"},
				{"unicast for another MAC", underlay(2), encapFrom(codec, underlay(2), good(remoteMAC, remoteMAC, 10)), "not_local"},
				{"inner over MTU", underlay(2), encapFrom(codec, underlay(2), good(mcastMAC, remoteMAC, 1500)), "inner_too_big"},
				{"truncated by the socket", underlay(2), nil, "truncated"},
				{"inner shorter than 14", underlay(2), encapFrom(codec, underlay(2), make([]byte, 13)), "inner_short"},
			}
			for _, c := range cases {
				before := e.Drops()[c.reason]
				if got := e.receive(c.src, c.pkt, now); got != nil {
					t.Errorf("%s: accepted", c.name)
				}
				if after := e.Drops()[c.reason]; after != before+1 {
					t.Errorf("%s: counter %s went %d -> %d", c.name, c.reason, before, after)
				}
			}
			for _, p := range e.Peers() {
				if p.RxPackets != 0 {
					t.Errorf("dropped packets counted as received from %v", p.Underlay)
				}
			}
			inner := good(mcastMAC, remoteMAC, 10)
			got := e.receive(underlay(2), encapFrom(codec, underlay(2), inner), now)
			if !bytes.Equal(got, inner) {
				t.Fatalf("good frame not delivered intact")
			}
		})
	}
}

// TestSplitHorizon runs the ingress loop over a stream of packets from a
// peer and checks that nothing is ever sent to the underlay: frames from
// peers go to the TAP only.
func TestSplitHorizon(t *testing.T) {
	codec := overlay.NewGRE(0, false)
	e := newTestEngine(t, codec, 3)
	var pkts [][]byte
	for _, dst := range []net.HardwareAddr{mcastMAC, bcastMAC, localMAC} {
		b, n := frame(dst, remoteMAC, 50)
		pkts = append(pkts, encapFrom(codec, underlay(2), b[overlay.Headroom:overlay.Headroom+n]))
	}
	r := &scriptedReader{src: underlay(2), pkts: pkts}
	tap := &tapRecorder{}
	if err := e.RunIngress(r, tap); err != errDone {
		t.Fatal(err)
	}
	if tap.frames != 3 {
		t.Fatalf("TAP got %d frames, want 3", tap.frames)
	}
	for _, p := range e.Peers() {
		if p.TxPackets != 0 {
			t.Fatalf("a frame from a peer was sent to peer %v", p.Underlay)
		}
	}
}

var errDone = fmt.Errorf("done")

type scriptedReader struct {
	src  netip.Addr
	pkts [][]byte
}

func (r *scriptedReader) ReadBatch(msgs []overlay.Message) (int, error) {
	if len(r.pkts) == 0 {
		return 0, errDone
	}
	n := 0
	for n < len(msgs) && len(r.pkts) > 0 {
		msgs[n].Buf = r.pkts[0]
		msgs[n].N = len(r.pkts[0])
		msgs[n].Addr = r.src
		r.pkts = r.pkts[1:]
		n++
	}
	return n, nil
}

type tapRecorder struct{ frames int }

func (t *tapRecorder) WriteBatch(frames [][]byte) (int, unix.Errno, error) {
	t.frames += len(frames)
	return 0, 0, nil
}

// failingWriter sends the first ok copies, then fails as a socket does.
type failingWriter struct{ ok int }

func (w *failingWriter) WriteBatch(msgs []overlay.Message) (int, error) {
	for i := range msgs[:w.ok] {
		msgs[i].N = len(msgs[i].Buf)
	}
	return 0, os.NewSyscallError("sendmmsg", unix.EBADF)
}

// TestSocketFailureCountsWhatWasNotSent: when the socket fails mid-batch,
// the copies sent before count as sent, the rest as send errors.
func TestSocketFailureCountsWhatWasNotSent(t *testing.T) {
	e := newTestEngine(t, overlay.NewGRE(0, false), 4)
	g := e.newEgress(8)
	buf, n := frame(mcastMAC, localMAC, 10)
	w := &failingWriter{ok: 2}
	g.forward(buf, n, w)
	if err := g.flush(w); err == nil {
		t.Fatal("flush hid the socket's failure")
	}
	var sent, failed uint64
	for _, p := range e.Peers() {
		sent += p.TxPackets
		failed += p.TxErrors
	}
	if sent != 2 || failed != 2 || e.Drops()["send_error"] != 2 {
		t.Fatalf("%d sent, %d failed, %d send_error; want 2, 2, 2", sent, failed, e.Drops()["send_error"])
	}
}

func TestSendErrorsCounted(t *testing.T) {
	e := newTestEngine(t, overlay.NewGRE(0, false), 2)
	w := &capture{refuse: map[netip.Addr]bool{underlay(3): true}}
	g := e.newEgress(8)
	buf, n := frame(mcastMAC, localMAC, 10)
	g.forward(buf, n, w)
	g.flush(w)
	st := e.Peers()
	if st[0].TxPackets != 1 || st[1].TxPackets != 0 || st[1].TxErrors != 1 || e.Drops()["send_error"] != 1 {
		t.Fatalf("stats %+v drops %v", st, e.Drops())
	}
}

func TestSetPeersKeepsCounters(t *testing.T) {
	e := newTestEngine(t, overlay.NewGRE(0, false), 2)
	g := e.newEgress(8)
	buf, n := frame(mcastMAC, localMAC, 10)
	g.forward(buf, n, &capture{})
	g.flush(&capture{})
	added, removed, err := e.SetPeers(peerInfos(3))
	if err != nil || len(added) != 1 || len(removed) != 0 {
		t.Fatalf("added %v removed %v err %v", added, removed, err)
	}
	if st := e.Peers(); st[0].TxPackets != 1 || st[2].TxPackets != 0 {
		t.Fatalf("counters lost: %+v", st)
	}
	dup := append(peerInfos(1), peerInfos(1)...)
	if _, _, err := e.SetPeers(dup); err == nil {
		t.Fatal("duplicate underlay accepted")
	}
	if len(e.Peers()) != 3 {
		t.Fatal("a refused peer set replaced the running one")
	}
}

// TestSetPeersOverlay6 checks that a peer's IPv6 overlay address reaches
// its stats, and that a peer whose IPv6 overlay address changed is a new
// peer, as one whose IPv4 overlay address changed is.
func TestSetPeersOverlay6(t *testing.T) {
	e := newTestEngine(t, overlay.NewGRE(0, false), 2)
	ps := peerInfos(2)
	ps[1].Overlay6 = netip.MustParsePrefix("fd00:198:19::2/64")
	if _, _, err := e.SetPeers(ps); err != nil {
		t.Fatal(err)
	}
	st := e.Peers()
	if st[0].Overlay6.IsValid() || st[1].Overlay6 != ps[1].Overlay6 {
		t.Fatalf("stats %+v, want the second peer's IPv6 overlay only", st)
	}
	ps[1].Overlay6 = netip.MustParsePrefix("fd00:198:19::9/64")
	added, removed, err := e.SetPeers(ps)
	if err != nil || len(added) != 1 || added[0] != ps[1].Underlay || len(removed) != 1 || removed[0] != ps[1].Underlay {
		t.Fatalf("added %v removed %v err %v, want the changed peer removed and added again", added, removed, err)
	}
	if st := e.Peers(); st[1].Overlay6 != ps[1].Overlay6 {
		t.Fatalf("stats %+v after the change", st)
	}
}

// TestZeroAllocs asserts that the per-frame work of both directions,
// encapsulation and decapsulation included, allocates nothing.
func TestZeroAllocs(t *testing.T) {
	for _, codec := range codecs() {
		for _, fanout := range []int{1, 4, 16} {
			e := newTestEngine(t, codec, fanout)
			g := e.newEgress(64)
			w := &capture{}
			buf, n := frame(mcastMAC, localMAC, 1000)
			if a := testing.AllocsPerRun(1000, func() {
				g.forward(buf, n, w)
				g.flush(w)
			}); a != 0 {
				t.Errorf("%s fanout %d: egress allocates %.1f per frame", codec.Name(), fanout, a)
			}
			in, m := frame(localMAC, remoteMAC, 1000)
			pkt := encapFrom(codec, underlay(2), in[overlay.Headroom:overlay.Headroom+m])
			now := time.Now().UnixNano()
			if a := testing.AllocsPerRun(1000, func() {
				if e.receive(underlay(2), pkt, now) == nil {
					t.Fatal("dropped")
				}
			}); a != 0 {
				t.Errorf("%s: ingress allocates %.1f per packet", codec.Name(), a)
			}
		}
	}
}

// BenchmarkEgress measures the engine's egress decisions per frame (the
// snooping lookup, the fan-out, the encapsulation and the batching) into a
// writer that keeps nothing: its decisions/s are copies decided, not
// copies sent. The send path per copy is overlay's BenchmarkSendGRE and
// BenchmarkSendVXLAN.
func BenchmarkEgress(b *testing.B) {
	for _, codec := range []overlay.Codec{overlay.NewGRE(0, false), overlay.NewVXLAN(42, 4789)} {
		for _, fanout := range []int{1, 4, 16} {
			for _, size := range []int{64, 1400} {
				b.Run(fmt.Sprintf("%s/fanout=%d/size=%d", codec.Name(), fanout, size), func(b *testing.B) {
					e := newTestEngine(b, codec, fanout)
					g := e.newEgress(64)
					w := &capture{}
					buf, n := frame(mcastMAC, localMAC, size-42)
					b.ReportAllocs()
					frames := 0
					for b.Loop() {
						g.forward(buf, n, w)
						if len(g.out)+fanout > cap(g.out) {
							g.flush(w)
						}
						frames++
					}
					g.flush(w)
					b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
					b.ReportMetric(float64(frames*fanout)/b.Elapsed().Seconds(), "decisions/s")
				})
			}
		}
	}
}

func BenchmarkIngress(b *testing.B) {
	for _, codec := range []overlay.Codec{overlay.NewGRE(0, false), overlay.NewVXLAN(42, 4789)} {
		b.Run(codec.Name(), func(b *testing.B) {
			e := newTestEngine(b, codec, 16)
			in, m := frame(localMAC, remoteMAC, 1400-42)
			pkt := encapFrom(codec, underlay(2), in[overlay.Headroom:overlay.Headroom+m])
			now := time.Now().UnixNano()
			b.ReportAllocs()
			for b.Loop() {
				e.receive(underlay(2), pkt, now)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

func TestFanoutHistogram(t *testing.T) {
	e := &Engine{}
	for _, n := range []int{0, 1, 2, 3, 4, 5, 16, 17, 5000} {
		e.fanout.observe(n)
	}
	cum, count, sum := e.Fanout()
	// bounds 0 1 2 4 8 16 32 ...: 0 | 1 | 2 | 3,4 | 5 | 16 | 17 | ... | 5000 beyond 1024
	want := []uint64{1, 2, 3, 5, 6, 7, 8, 8, 8, 8, 8, 8}
	for i := range want {
		if cum[i] != want[i] {
			t.Fatalf("cumulative %v, want %v", cum, want)
		}
	}
	if count != 9 || sum != 0+1+2+3+4+5+16+17+5000 {
		t.Fatalf("count %d sum %d", count, sum)
	}
}
