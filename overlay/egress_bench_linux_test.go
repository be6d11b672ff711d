package overlay

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// The egress benchmarks measure the source's send path per copy: batches
// of 64 copies (16 frames of one flow, each to 4 peers, in the order the
// engine queues them) through a real Conn on node 1 of an nstest underlay,
// to 4 peers on the same bridge. The copies are dropped (nftables) where
// they enter the hub, at the bridge port of the source's veth, so that the
// figure is the source's and not the bridge's and the peers' (which the
// veth makes the sender's CPUs run in softirq); ARP goes through. With
// MESHCAST_BENCH_DROP=peers they cross the bridge and are dropped at the
// ingress of each peer's interface instead. The source's
// interface has tx-udp-segmentation off, as a NIC without UDP segmentation
// offload would: a UDP_SEGMENT send is split in software before it
// leaves. The figure is copies/s of WriteBatch; it includes what the
// veth, the bridge and the peers' ingress cost on the same CPUs, alike for
// every method. One underlay serves every sub-benchmark of a benchmark, so
// that no namespace is being torn down while another measures. With
// MESHCAST_BENCH_UNDERLAY=6, BenchmarkSendGRE and BenchmarkSendVXLAN run
// over an IPv6-only underlay instead. They need root.

// egressBenchPeers is the fanout of the benchmarks.
const egressBenchPeers = 4

// egressBench is the underlay of a benchmark.
type egressBench struct {
	nt    *nstest.Net
	src   *nstest.Node
	peers []netip.Addr
	// drops are the nodes whose nftables rules drop the copies and count
	// them.
	drops []*nstest.Node
	v6    bool // the underlay is IPv6 (MESHCAST_BENCH_UNDERLAY=6)
}

// newEgressBench builds the underlay: the source, and peers that drop
// GRE and VXLAN at ingress.
func newEgressBench(b *testing.B) *egressBench {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("the egress benchmarks need root (network namespaces, raw and packet sockets): run them as root")
	}
	v6 := os.Getenv("MESHCAST_BENCH_UNDERLAY") == "6"
	var nt *nstest.Net
	if v6 {
		nt = nstest.NewNetWith(b, 1+egressBenchPeers, nstest.Options{Underlay: nstest.UnderlayIPv6})
	} else {
		nt = nstest.NewNet(b, 1+egressBenchPeers)
	}
	e := &egressBench{nt: nt, src: nt.Node(1), v6: v6}
	exec(b, e.src, "ethtool", "-K", nstest.NodeLink, "tx-udp-segmentation", "off")
	for _, n := range nt.Nodes()[1:] {
		if v6 {
			e.peers = append(e.peers, n.Underlay6)
		} else {
			e.peers = append(e.peers, n.Underlay)
		}
	}
	where, dev := nt.Hub, nstest.HubPort(1)
	if os.Getenv("MESHCAST_BENCH_DROP") == "peers" {
		where, dev = nil, nstest.NodeLink
	}
	rules := fmt.Sprintf(`table netdev mcdrop {
	chain in {
		type filter hook ingress device %q priority 0; policy accept;
		meta protocol ip ip protocol gre counter drop
		meta protocol ip udp dport %d counter drop
	}
}
`, dev, DefaultVXLANPort)
	if v6 {
		rules = fmt.Sprintf(`table netdev mcdrop {
	chain in {
		type filter hook ingress device %q priority 0; policy accept;
		meta protocol ip6 ip6 nexthdr gre counter drop
		meta protocol ip6 udp dport %d counter drop
	}
}
`, dev, DefaultVXLANPort)
	}
	f := b.TempDir() + "/drop.nft"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		b.Fatal(err)
	}
	if where != nil {
		e.drops = []*nstest.Node{where}
	} else {
		e.drops = nt.Nodes()[1:]
	}
	for _, n := range e.drops {
		exec(b, n, "nft", "-f", f)
	}
	// A queueing discipline on the source's interface, as a NIC has one
	// (veth has none by default).
	if q := os.Getenv("MESHCAST_BENCH_QDISC"); q != "" {
		exec(b, e.src, "ip", "link", "set", nstest.NodeLink, "txqueuelen", "1000")
		exec(b, e.src, "tc", "qdisc", "replace", "dev", nstest.NodeLink, "root", q)
	}
	// Let the kernel finish with namespaces that earlier tests deleted.
	time.Sleep(2 * time.Second)
	return e
}

// listen opens a Conn of codec on the source's underlay address.
func (e *egressBench) listen(b *testing.B, codec string, port uint16, opts Options) *Conn {
	b.Helper()
	if e.v6 {
		return listenIn6(b, e.src, codec, port, opts)
	}
	return listenIn(b, e.src, codec, port, opts)
}

// dropped returns the copies the nftables rules have dropped so far.
func (e *egressBench) dropped(b *testing.B) uint64 {
	b.Helper()
	var n uint64
	for _, node := range e.drops {
		out := exec(b, node, "nft", "list", "table", "netdev", "mcdrop")
		for _, f := range strings.Split(out, "counter packets ")[1:] {
			var k uint64
			fmt.Sscan(f, &k)
			n += k
		}
	}
	return n
}

// batch returns the copies of 16 frames of size bytes to every peer,
// encapsulated by c: of one flow, or each of its own (flows=16).
func (e *egressBench) batch(c Codec, size, flows int) []Message {
	var msgs []Message
	for i := range 16 {
		f := testFrame(size, uint16(1001+i%flows))
		f[size-1] = byte(i)
		pkt := c.Encap(withHeadroom(f), size)
		for _, p := range e.peers {
			msgs = append(msgs, Message{Buf: pkt, Addr: p})
		}
	}
	return msgs
}

// warm sends msgs from the source until the kernel has resolved every
// peer, and, with AF_PACKET egress, until the Conn has.
func (e *egressBench) warm(b *testing.B, c *Conn, msgs []Message) {
	b.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		writeIn(b, e.src, c, msgs)
		family := "-4"
		if e.v6 {
			family = "-6"
		}
		out := exec(b, e.src, "ip", family, "neigh", "show", "dev", nstest.NodeLink)
		done := strings.Count(out, "lladdr") >= len(e.peers) // the kernel has resolved them
		for _, st := range []string{"INCOMPLETE", "FAILED"} {
			done = done && !strings.Contains(out, st)
		}
		if c.pkt != nil {
			done = done && c.PacketEgress().Resolved == len(e.peers)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("peers not resolved in %v: %s %+v", ioTimeout, out, c.PacketEgress())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run measures WriteBatch of msgs through c.
func (e *egressBench) run(b *testing.B, c *Conn, msgs []Message, wantPacket bool) {
	b.Helper()
	e.warm(b, c, msgs)
	before := c.PacketEgress()
	failed := 0
	e.measure(b, c, len(msgs), func() {
		f, err := c.WriteBatch(msgs)
		if err != nil {
			b.Fatal(err)
		}
		failed += f
	})
	if failed > 0 {
		b.Errorf("%d copies failed", failed)
	}
	after := c.PacketEgress()
	if sent := after.Packet + after.Segmented - before.Packet - before.Segmented; wantPacket && sent < uint64(b.N*len(msgs))*99/100 {
		b.Errorf("only %d of %d copies through AF_PACKET or segmented: %+v", sent, b.N*len(msgs), after)
	}
	if st := c.Offloads(); wantPacket && statusOf(b, c).Fallbacks > 0 {
		b.Logf("fallbacks: %+v", st)
	}
}

// measure times send, which sends a batch of n copies through c, and
// reports copies/s and the share of the copies that reached the drop
// rules. Meanwhile a goroutine waits in c.ReadBatch, as meshcast's
// receive path always does: with a goroutine parked in the runtime's
// poller, every readiness event of a socket the poller watches (such as
// the kernel freeing a sent packet, which makes the socket writable) wakes
// an idle thread, a cost a benchmark without one would not see. With
// MESHCAST_BENCH_NOREADER=1 nothing waits, to show that cost.
func (e *egressBench) measure(b *testing.B, c *Conn, n int, send func()) {
	b.Helper()
	done := make(chan struct{})
	if os.Getenv("MESHCAST_BENCH_NOREADER") != "" {
		close(done)
	} else {
		go e.park(c, done)
	}
	defer func() {
		c.SetReadDeadline(time.Now())
		<-done
		c.SetReadDeadline(time.Time{})
	}()
	time.Sleep(10 * time.Millisecond) // until the reader waits
	start := e.dropped(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		send()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "copies/s")
	// Counted after a moment, for the softirqs to finish.
	time.Sleep(20 * time.Millisecond)
	got := e.dropped(b) - start
	b.ReportMetric(float64(got)/float64(b.N*n), "arrived/copy")
	if got < uint64(b.N*n) {
		b.Logf("%d of %d copies reached the drop rule", got, b.N*n)
	}
}

// park waits in c.ReadBatch until its deadline passes, then closes done.
func (e *egressBench) park(c *Conn, done chan struct{}) {
	defer close(done)
	in := make([]Message, 8)
	for {
		if _, err := c.ReadBatch(in); err != nil {
			return
		}
	}
}

// BenchmarkSendGRE sends GRE copies through the raw socket and through
// AF_PACKET.
func BenchmarkSendGRE(b *testing.B) {
	e := newEgressBench(b)
	for _, method := range []string{"socket", "packet"} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("method=%s/frame=%d", method, size), func(b *testing.B) {
				c := e.listen(b, "gre", 0, Options{NoPacketEgress: method == "socket"})
				e.run(b, c, e.batch(codecOf("gre"), size, 1), method == "packet")
			})
		}
	}
}

// BenchmarkSendVXLAN sends VXLAN copies through the raw socket
// (socket), through UDP_SEGMENT sockets (gso: with flows=1 a run of 16
// copies to a peer per send, with flows=16 a send per copy), through
// AF_PACKET with segmentation offload for runs (packet, what a Conn does),
// and through AF_PACKET without it, every copy on its own (packet-noseg).
func BenchmarkSendVXLAN(b *testing.B) {
	e := newEgressBench(b)
	for _, method := range []string{"socket", "gso", "packet", "packet-noseg"} {
		for _, size := range []int{64, 1400} {
			for _, flows := range []int{1, 16} {
				b.Run(fmt.Sprintf("method=%s/frame=%d/flows=%d", method, size, flows), func(b *testing.B) {
					opts := map[string]Options{
						"socket": {NoOffload: true},
						"gso":    {NoPacketEgress: true},
					}[method]
					c := e.listen(b, "vxlan", packetTestPort, opts)
					if _, gso := c.Offload(); method == "gso" && !gso {
						b.Skip("no UDP segmentation offload on this kernel")
					}
					if method == "packet-noseg" {
						c.pkt.seg = nil
					}
					e.run(b, c, e.batch(codecOf("vxlan"), size, flows), method == "packet" || method == "packet-noseg")
				})
			}
		}
	}
}

// BenchmarkPacketTxRing compares the two ways to hand copies to an
// AF_PACKET socket: sendmmsg with two iovecs per copy (what WriteBatch
// does) and a PACKET_TX_RING (TPACKET_V2) into which each copy, header and
// packet, is copied, flushed with one send per batch. Both write the same
// headers from the same published routes, with PACKET_QDISC_BYPASS.
func BenchmarkPacketTxRing(b *testing.B) {
	e := newEgressBench(b)
	if e.v6 {
		b.Skip("the ring writes IPv4 headers only")
	}
	for _, method := range []string{"sendmmsg", "ring"} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("method=%s/frame=%d", method, size), func(b *testing.B) {
				c := listenIn(b, e.src, "gre", 0, Options{})
				msgs := e.batch(codecOf("gre"), size, 1)
				if method == "sendmmsg" {
					e.run(b, c, msgs, true)
					return
				}
				e.warm(b, c, msgs)
				r := newTxRing(b, e.src, c)
				e.measure(b, c, len(msgs), func() { r.send(b, c, msgs) })
				b.ReportMetric(float64(r.waits)/float64(b.N), "ring-full-waits/op")
			})
		}
	}
}

// txRing is a TPACKET_V2 transmit ring on the source's interface.
type txRing struct {
	fd     int
	mem    []byte
	frames int
	next   int
	waits  int
}

const (
	txRingFrameSize = 2048
	txRingBlockSize = 1 << 16
	txRingBlocks    = 16
	// txRingData is where a frame's packet starts: TPACKET2_HDRLEN minus
	// the struct sockaddr_ll it counts.
	txRingData = 32
)

func newTxRing(b *testing.B, n *nstest.Node, c *Conn) *txRing {
	b.Helper()
	r := &txRing{frames: txRingBlockSize / txRingFrameSize * txRingBlocks}
	err := n.Do(func() error {
		l, err := underlayLink(c.pkt.res.h, n.Underlay)
		if err != nil {
			return err
		}
		fd, _, err := packetSocket(l.Attrs().Index, nil)
		if err != nil {
			return err
		}
		r.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			return fmt.Errorf("PACKET_VERSION: %w", err)
		}
		req := unix.TpacketReq{Block_size: txRingBlockSize, Block_nr: txRingBlocks, Frame_size: txRingFrameSize, Frame_nr: uint32(r.frames)}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_TX_RING: %w", err)
		}
		r.mem, err = unix.Mmap(fd, 0, txRingBlockSize*txRingBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		return err
	})
	if err != nil {
		b.Fatalf("TX ring: %v", err)
	}
	b.Cleanup(func() {
		unix.Munmap(r.mem)
		unix.Close(r.fd)
	})
	return r
}

// status is the tp_status word of frame i.
func (r *txRing) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[i*txRingFrameSize]))
}

// send copies msgs into the ring, with the headers WriteBatch would
// write, and flushes it.
func (r *txRing) send(b *testing.B, c *Conn, msgs []Message) {
	t := c.pkt.table.Load()
	for i := range msgs {
		m := &msgs[i]
		rt := t.m[m.Addr.As4()]
		for atomic.LoadUint32(r.status(r.next)) != unix.TP_STATUS_AVAILABLE {
			// The kernel has not sent this frame yet: flush and wait.
			r.waits++
			r.flush(b)
		}
		f := r.mem[r.next*txRingFrameSize : (r.next+1)*txRingFrameSize]
		d := f[txRingData:]
		copy(d, rt.hdr[:])
		tot := uint32(IPv4HeaderLen + len(m.Buf))
		d[hdrTotLen], d[hdrTotLen+1] = byte(tot>>8), byte(tot)
		s := rt.sum + tot
		if !rt.zeroID {
			id := rt.st.id
			rt.st.id++
			d[hdrID], d[hdrID+1] = byte(id>>8), byte(id)
			s += uint32(id)
		}
		s = s&0xffff + s>>16
		s = s&0xffff + s>>16
		d[hdrSum], d[hdrSum+1] = byte(^uint16(s)>>8), byte(^uint16(s))
		copy(d[ethIPLen:], m.Buf)
		*(*uint32)(unsafe.Pointer(&f[4])) = uint32(ethIPLen + len(m.Buf)) // tp_len
		atomic.StoreUint32(r.status(r.next), unix.TP_STATUS_SEND_REQUEST)
		r.next = (r.next + 1) % r.frames
	}
	r.flush(b)
}

// flush asks the kernel to send the frames marked for sending.
func (r *txRing) flush(b *testing.B) {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return
		case unix.EINTR, unix.EAGAIN, unix.ENOBUFS:
			continue
		default:
			b.Fatalf("send on the TX ring: %v", errno)
		}
	}
}
