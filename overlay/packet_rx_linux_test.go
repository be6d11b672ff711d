package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The receive ring tests run on an nstest underlay: node 1 sends GRE
// through a Conn, node 2 receives it on its Ethernet (veth) interface
// through a packetReceiver, and, to compare, through a second raw GRE
// socket (a Conn of its own) that sees the same packets.

// ringTest is the underlay of a receive ring test.
type ringTest struct {
	snd, rcv *nstest.Node
	tx       *Conn // on snd
	rx       *Conn // on rcv: the raw socket the ring silences
	ref      *Conn // on rcv: an unfiltered raw GRE socket, for comparison
}

func newRingTest(t testing.TB) *ringTest {
	t.Helper()
	nt := nstest.NewNet(t, 2)
	rt := &ringTest{snd: nt.Node(1), rcv: nt.Node(2)}
	rt.tx = ringListen(t, rt.snd, rt.snd.Underlay)
	rt.rx = ringListen(t, rt.rcv, rt.rcv.Underlay)
	rt.ref = ringListen(t, rt.rcv, rt.rcv.Underlay)
	return rt
}

// ringListen opens a GRE Conn on node n, without AF_PACKET egress.
func ringListen(t testing.TB, n *nstest.Node, local netip.Addr) *Conn {
	t.Helper()
	var c *Conn
	if err := n.Do(func() (err error) { c, err = ListenGRE(local, Options{NoOffload: true}); return err }); err != nil {
		t.Fatalf("in %s: ListenGRE(%v): %v", n, local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// open opens a receive ring on the receiver that silences rt.rx.
func (rt *ringTest) open(t testing.TB, cfg packetRxConfig) *packetReceiver {
	t.Helper()
	var p *packetReceiver
	if err := rt.rcv.Do(func() (err error) { p, err = openPacketReceiver(rt.rcv.Underlay, rt.rx.rxc, cfg); return err }); err != nil {
		t.Fatalf("openPacketReceiver: %v", err)
	}
	// Before the Conns' cleanups, registered earlier.
	t.Cleanup(func() { p.Close() })
	return p
}

// send sends msgs from the sender, in batches of at most 16.
func (rt *ringTest) send(t testing.TB, msgs []Message) {
	t.Helper()
	for len(msgs) > 0 {
		chunk := msgs[:min(16, len(msgs))]
		msgs = msgs[len(chunk):]
		if failed, err := rt.tx.WriteBatch(chunk); err != nil || failed != 0 {
			t.Fatalf("WriteBatch: %d failed, %v", failed, err)
		}
	}
}

// greMsgs returns a GRE packet to dst per inner frame size, and the
// frames.
func greMsgs(g *GRE, dst netip.Addr, sizes ...int) (msgs []Message, frames [][]byte) {
	for i, size := range sizes {
		f := testFrame(size, uint16(2000+i))
		msgs = append(msgs, Message{Buf: g.Encap(withHeadroom(f), size), Addr: dst})
		frames = append(frames, f)
	}
	return msgs, frames
}

// batchReader is what Conn and packetReceiver share.
type batchReader interface {
	ReadBatch(msgs []Message) (int, error)
	SetReadDeadline(t time.Time) error
}

// readAll reads from r with batches of batch messages until want
// packets arrived, and fails after ioTimeout.
func readAll(t testing.TB, r batchReader, want, batch int) []received {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	defer r.SetReadDeadline(time.Time{})
	msgs := make([]Message, batch)
	var got []received
	for len(got) < want {
		n, err := r.ReadBatch(msgs)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d packets: %v", len(got), want, err)
		}
		if n < 1 || n > batch {
			t.Fatalf("ReadBatch returned %d messages for %d", n, batch)
		}
		for _, m := range msgs[:n] {
			got = append(got, received{bytes.Clone(m.Buf[:m.N]), m.Addr})
		}
	}
	return got
}

// expectNothing fails if r returns a packet within d.
func expectNothing(t testing.TB, r batchReader, d time.Duration, what string) {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	defer r.SetReadDeadline(time.Time{})
	msgs := make([]Message, 64)
	n, err := r.ReadBatch(msgs)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		for _, m := range msgs[:n] {
			t.Errorf("%s: received %d bytes from %v: % x", what, m.N, m.Addr, m.Buf[:min(m.N, 48)])
		}
		t.Fatalf("%s: ReadBatch = %d, %v; want nothing", what, n, err)
	}
}

// sameReceived fails unless the ring returned exactly what the raw socket
// returned, in the same order.
func sameReceived(t testing.TB, ring, sock []received) {
	t.Helper()
	if len(ring) != len(sock) {
		t.Fatalf("the ring returned %d packets, the socket %d", len(ring), len(sock))
	}
	for i := range ring {
		if ring[i].addr != sock[i].addr || !bytes.Equal(ring[i].buf, sock[i].buf) {
			t.Errorf("packet %d: ring %d bytes from %v, socket %d bytes from %v\nring   % x\nsocket % x", i,
				len(ring[i].buf), ring[i].addr, len(sock[i].buf), sock[i].addr,
				ring[i].buf[:min(len(ring[i].buf), 64)], sock[i].buf[:min(len(sock[i].buf), 64)])
		}
	}
}

// filterLen returns the number of instructions of the socket filter of
// the socket behind c (0: none).
func filterLen(t testing.TB, c *Conn) int {
	t.Helper()
	var n uint32
	var errno unix.Errno
	err := c.rxc.Control(func(fd uintptr) {
		// With no room, SO_GET_FILTER returns the length alone.
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_GET_FILTER,
			0, uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 {
		t.Fatalf("SO_GET_FILTER: %v, %v", err, errno)
	}
	return int(n)
}

// icmpUnreachSent returns the ICMP destination unreachable messages node
// n sent.
func icmpUnreachSent(t testing.TB, n *nstest.Node) uint64 {
	t.Helper()
	out, err := n.Exec(t, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "OutDestUnreachs" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Icmp OutDestUnreachs in /proc/net/snmp:\n%s", out)
	return 0
}

// TestIntegrationPacketReceiver sends the same GRE traffic, twice, to a
// receiver that reads it through the ring and through a raw GRE socket
// at once, and checks that the ring returns what Conn.ReadBatch returns,
// byte for byte and in order, from the right sender: frames from 14
// bytes (a packet shorter than the Ethernet minimum, which the link pads)
// to 1,400, and one that the sender fragments and the ring reassembles.
// The raw socket the ring silences receives nothing, and the kernel
// answers nothing with ICMP.
func TestIntegrationPacketReceiver(t *testing.T) {
	for _, tc := range []struct {
		name  string
		g     *GRE
		cfg   packetRxConfig
		batch int
	}{
		{"key/ring=default/batch=64", NewGRE(testKey, true), packetRxConfig{}, 64},
		// Small blocks, so that the packets span many. The sender sends
		// everything before anything is read, and a block that its 1 ms
		// timeout retires part full (a slow sender, such as under the
		// race detector) wastes the rest: 32 blocks hold the 126 packets
		// even if every batch of 16 fills a block of its own.
		{"nokey/ring=32x8KiB/batch=5", NewGRE(0, false), packetRxConfig{BlockSize: 8 << 10, Blocks: 32}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRingTest(t)
			r := rt.open(t, tc.cfg)
			if r.Interface() != nstest.NodeLink {
				t.Errorf("ring on %q, want %q", r.Interface(), nstest.NodeLink)
			}
			if n := filterLen(t, rt.rx); n != 1 {
				t.Errorf("the raw GRE socket has a filter of %d instructions, want 1 (receive nothing)", n)
			}
			unreach := icmpUnreachSent(t, rt.rcv)
			var sizes []int
			for round := range 3 {
				for i := range 40 {
					sizes = append(sizes, 60+(37*i+round*13)%1340)
				}
				sizes = append(sizes, 14, 3000) // padded; fragmented
			}
			msgs, frames := greMsgs(tc.g, rt.rcv.Underlay, sizes...)
			rt.send(t, msgs)
			ring := readAll(t, r, len(msgs), tc.batch)
			sock := readAll(t, rt.ref, len(msgs), tc.batch)
			sameReceived(t, ring, sock)
			checkDelivered(t, tc.g, ring, rt.snd.Underlay, frames)
			expectNothing(t, r, 50*time.Millisecond, "ring after the traffic")
			expectNothing(t, rt.rx, 50*time.Millisecond, "the silenced raw socket")
			if d := r.Drops(); d != 0 {
				t.Errorf("Drops() = %d, want 0", d)
			}
			if u := icmpUnreachSent(t, rt.rcv); u != unreach {
				t.Errorf("the receiver sent %d ICMP destination unreachable", u-unreach)
			}
		})
	}
}

// ethGRE returns an Ethernet frame from src to dst that carries an IPv4
// GRE packet with payload from srcIP to dstIP; fix edits the IPv4 header
// after its checksum is set.
func ethGRE(dst, src net.HardwareAddr, srcIP, dstIP netip.Addr, id uint16, payload []byte, fix func(ip []byte)) []byte {
	f := make([]byte, EthHeaderLen+IPv4HeaderLen+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_IP)
	ip := inet.IPv4(f[EthHeaderLen:])
	ip[0] = 0x45
	ip.SetTotalLen(len(ip))
	binary.BigEndian.PutUint16(ip[inet.IPv4ID:], id)
	ip[inet.IPv4TTL] = 64
	ip[inet.IPv4Proto] = ProtoGRE
	s, d := srcIP.As4(), dstIP.As4()
	copy(ip[inet.IPv4Src:], s[:])
	copy(ip[inet.IPv4Dst:], d[:])
	ip.SetChecksum()
	copy(ip[IPv4HeaderLen:], payload)
	if fix != nil {
		fix(ip)
	}
	return f
}

// sendFrames sends Ethernet frames through an AF_PACKET socket on node
// n's underlay interface.
func sendFrames(t testing.TB, n *nstest.Node, frames ...[]byte) {
	t.Helper()
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(nstest.NodeLink)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f[0:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("in %s: send frames: %v", n, err)
	}
}

// nodeMAC returns the MAC of node n's underlay interface.
func nodeMAC(t testing.TB, n *nstest.Node) net.HardwareAddr {
	t.Helper()
	l, err := n.Link(nstest.NodeLink)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// TestIntegrationPacketReceiverFilter sends the receiver what the ring
// must not return: GRE to another address of its interface, UDP and ICMP
// to its address, GRE it sends itself, GRE to its address but another
// host's MAC (seen in promiscuous mode), GRE with a wrong IPv4 header
// checksum or a fragment that never completes (which the IP stack drops),
// and then GRE it must return. The ring returns exactly what the raw
// socket returns: the last.
func TestIntegrationPacketReceiverFilter(t *testing.T) {
	rt := newRingTest(t)
	other := netip.MustParseAddr("198.18.0.102")
	run := func(n *nstest.Node, args ...string) {
		t.Helper()
		if out, err := n.Exec(t, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	run(rt.rcv, "ip", "addr", "add", other.String()+"/24", "dev", nstest.NodeLink)
	run(rt.rcv, "ip", "link", "set", nstest.NodeLink, "promisc", "on")
	r := rt.open(t, packetRxConfig{})
	g := NewGRE(testKey, true)

	// GRE to the other address.
	toOther, _ := greMsgs(g, other, 100, 200, 300)
	rt.send(t, toOther)
	// UDP and ICMP to the receiver.
	err := rt.snd.Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for range 5 {
			if _, err := c.WriteToUDPAddrPort([]byte("not GRE"), netip.AddrPortFrom(rt.rcv.Underlay, 9)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run(rt.snd, "ping", "-c", "2", "-i", "0.2", "-W", "2", rt.rcv.Underlay.String())
	// GRE from the receiver.
	back, _ := greMsgs(g, rt.snd.Underlay, 100, 200)
	if failed, err := rt.rx.WriteBatch(back); err != nil || failed != 0 {
		t.Fatalf("WriteBatch from the receiver: %d failed, %v", failed, err)
	}
	// Crafted frames: to another host's MAC; a wrong header checksum; a
	// first fragment whose rest never comes; and one good packet.
	sndMAC, rcvMAC := nodeMAC(t, rt.snd), nodeMAC(t, rt.rcv)
	payload := g.Encap(withHeadroom(testFrame(120, 7)), 120)
	good := ethGRE(rcvMAC, sndMAC, rt.snd.Underlay, rt.rcv.Underlay, 4, payload, nil)
	sendFrames(t, rt.snd,
		ethGRE(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, sndMAC, rt.snd.Underlay, rt.rcv.Underlay, 1, payload, nil),
		ethGRE(rcvMAC, sndMAC, rt.snd.Underlay, rt.rcv.Underlay, 2, payload, func(ip []byte) { ip[inet.IPv4Checksum] ^= 0x55 }),
		ethGRE(rcvMAC, sndMAC, rt.snd.Underlay, rt.rcv.Underlay, 3, payload, func(ip []byte) {
			binary.BigEndian.PutUint16(ip[inet.IPv4FlagsFrag:], inet.IPv4FlagMF)
			inet.IPv4(ip).SetChecksum()
		}),
		good)
	// GRE it must return.
	want, _ := greMsgs(g, rt.rcv.Underlay, 60, 500, 1400)
	rt.send(t, want)

	ring := readAll(t, r, 1+len(want), 64)
	sock := readAll(t, rt.ref, 1+len(want), 64)
	sameReceived(t, ring, sock)
	if !bytes.Equal(ring[0].buf, good[EthHeaderLen:]) {
		t.Errorf("first packet % x, want the good crafted one", ring[0].buf[:min(len(ring[0].buf), 32)])
	}
	for i, m := range want {
		if got := ring[1+i].buf; len(got) != IPv4HeaderLen+len(m.Buf) || !bytes.Equal(got[IPv4HeaderLen:], m.Buf) {
			t.Errorf("packet %d: %d bytes, want the GRE packet of %d sent", 1+i, len(got), len(m.Buf))
		}
	}
	expectNothing(t, r, 100*time.Millisecond, "ring")
	expectNothing(t, rt.ref, 50*time.Millisecond, "raw socket")
}

// TestIntegrationPacketReceiverDeadline checks the read deadline: it
// interrupts a ReadBatch that waits, a zero deadline lets it wait again,
// and a deadline in the past returns the packets of the block in hand
// first and then os.ErrDeadlineExceeded, with nothing lost or repeated.
func TestIntegrationPacketReceiverDeadline(t *testing.T) {
	rt := newRingTest(t)
	r := rt.open(t, packetRxConfig{})
	g := NewGRE(testKey, true)

	type result struct {
		n   int
		err error
	}
	msgs := make([]Message, 64)
	read := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			n, err := r.ReadBatch(msgs)
			ch <- result{n, err}
		}()
		return ch
	}
	ch := read()
	time.Sleep(50 * time.Millisecond)
	select {
	case res := <-ch:
		t.Fatalf("ReadBatch returned %d, %v without traffic", res.n, res.err)
	default:
	}
	start := time.Now()
	if err := r.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		if res.n != 0 || !errors.Is(res.err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadBatch = %d, %v; want os.ErrDeadlineExceeded", res.n, res.err)
		}
		t.Logf("a past deadline interrupted ReadBatch in %v", time.Since(start))
	case <-time.After(ioTimeout):
		t.Fatal("a past deadline did not interrupt ReadBatch")
	}
	if err := r.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	ch = read()
	time.Sleep(20 * time.Millisecond)
	first, _ := greMsgs(g, rt.rcv.Underlay, 100, 101, 102)
	sentAt := time.Now()
	rt.send(t, first)
	select {
	case res := <-ch:
		if res.err != nil || res.n < 1 {
			t.Fatalf("ReadBatch after the deadline was cleared = %d, %v", res.n, res.err)
		}
		// A block that does not fill is handed over after the retire
		// timeout (1 ms, or the kernel's timer tick), not later.
		latency := time.Since(sentAt)
		t.Logf("3 packets in a block that does not fill returned after %v", latency)
		if latency > 100*time.Millisecond {
			t.Errorf("a block that does not fill took %v to come", latency)
		}
		got := res.n
		if got < len(first) {
			got += len(readAll(t, r, len(first)-got, 64))
		}
		if got != len(first) {
			t.Fatalf("%d packets, want %d", got, len(first))
		}
	case <-time.After(ioTimeout):
		t.Fatal("ReadBatch did not return the packets sent after the deadline was cleared")
	}

	// Packets in hand: one block's worth is returned one by one after a
	// past deadline, the rest after it is cleared.
	sizes := make([]int, 40)
	for i := range sizes {
		sizes[i] = 100 + i
	}
	sent, _ := greMsgs(g, rt.rcv.Underlay, sizes...)
	rt.send(t, sent)
	time.Sleep(50 * time.Millisecond) // the kernel hands the block over
	var got []received
	one := msgs[:1]
	n, err := r.ReadBatch(one)
	if n != 1 || err != nil {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	got = append(got, received{bytes.Clone(one[0].Buf[:one[0].N]), one[0].Addr})
	r.SetReadDeadline(time.Unix(1, 0))
	inHand := 0
	for {
		n, err := r.ReadBatch(one)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil || n != 1 {
			t.Fatalf("ReadBatch after a past deadline = %d, %v", n, err)
		}
		inHand++
		got = append(got, received{bytes.Clone(one[0].Buf[:one[0].N]), one[0].Addr})
		if inHand > len(sent) {
			t.Fatal("a past deadline does not stop ReadBatch")
		}
	}
	if n, err := r.ReadBatch(msgs); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch again = %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	t.Logf("%d packets in hand returned after the deadline, %d waiting", inHand, len(sent)-1-inHand)
	r.SetReadDeadline(time.Time{})
	if rest := len(sent) - len(got); rest > 0 {
		got = append(got, readAll(t, r, rest, 64)...)
	}
	if len(got) != len(sent) {
		t.Fatalf("%d packets, want %d", len(got), len(sent))
	}
	for i, m := range got {
		if len(m.buf) != IPv4HeaderLen+len(sent[i].Buf) || !bytes.Equal(m.buf[IPv4HeaderLen:], sent[i].Buf) {
			t.Errorf("packet %d: %d bytes, want packet %d sent (%d bytes)", i, len(m.buf), i, len(sent[i].Buf))
		}
	}
	expectNothing(t, r, 50*time.Millisecond, "ring")
}

// TestIntegrationPacketReceiverClose checks that Close unblocks a
// ReadBatch that waits, that ReadBatch fails after Close, that the ring
// stays mapped while the last batch may be in use, and that the raw
// socket receives again once the ring is closed.
func TestIntegrationPacketReceiverClose(t *testing.T) {
	rt := newRingTest(t)
	g := NewGRE(testKey, true)

	// Close while ReadBatch waits.
	r := rt.open(t, packetRxConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadBatch(make([]Message, 8))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadBatch after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Close did not unblock ReadBatch")
	}
	if r.ring != nil {
		t.Error("the ring is still mapped after Close and ReadBatch returned")
	}
	if n := packetSockets(t, rt.rcv); n != 0 {
		t.Errorf("%d packet sockets in the receiver after Close", n)
	}
	if n, err := r.ReadBatch(make([]Message, 8)); n != 0 || !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadBatch on a closed ring = %d, %v", n, err)
	}
	if err := r.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v, want os.ErrClosed", err)
	}
	if n := filterLen(t, rt.rx); n != 0 {
		t.Errorf("the raw socket keeps a filter of %d instructions after Close", n)
	}
	// The raw socket receives again.
	msgs, frames := greMsgs(g, rt.rcv.Underlay, 80, 90)
	rt.send(t, msgs)
	checkDelivered(t, g, readAll(t, rt.rx, len(msgs), 8), rt.snd.Underlay, frames)
	readAll(t, rt.ref, len(msgs), 8)

	// Close while the caller holds a batch.
	r = rt.open(t, packetRxConfig{})
	msgs, frames = greMsgs(g, rt.rcv.Underlay, 80, 90)
	rt.send(t, msgs)
	batch := make([]Message, 8)
	r.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := r.ReadBatch(batch)
	if err != nil || n < 1 {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	if inner, reason := g.Decap(batch[0].Buf[:batch[0].N]); reason != OK || !bytes.Equal(inner, frames[0]) {
		t.Errorf("the last batch before Close: %v", reason)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The socket is gone at once (a mapping of the ring would hold it
	// open, bound and receiving); the caller's views read zeros.
	if n := packetSockets(t, rt.rcv); n != 0 {
		t.Errorf("%d packet sockets in the receiver after Close", n)
	}
	if r.ring == nil {
		t.Fatal("Close unmapped the ring's place while the caller may use its last batch")
	}
	if b := batch[0].Buf[:batch[0].N]; len(b) == 0 || !bytes.Equal(b, make([]byte, len(b))) {
		t.Errorf("the last batch after Close is not zeros")
	}
	if _, err := r.ReadBatch(batch); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v, want os.ErrClosed", err)
	}
	if r.ring != nil {
		t.Error("the ring's place is still mapped after the next ReadBatch")
	}
}

// packetSockets returns the number of AF_PACKET sockets in node n.
func packetSockets(t testing.TB, n *nstest.Node) int {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		out, err := n.Exec(t, "cat", "/proc/net/packet")
		if err != nil {
			t.Fatal(err)
		}
		// A header line, then one per socket; the kernel frees a
		// socket after an RCU grace period.
		k := len(strings.Split(strings.TrimSpace(out), "\n")) - 1
		if k == 0 || time.Now().After(deadline) {
			return k
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIntegrationPacketReceiverOverflow fills a small ring that nobody
// reads and checks that what did not fit is counted in Drops, and that
// the ring delivers the rest and then again.
func TestIntegrationPacketReceiverOverflow(t *testing.T) {
	rt := newRingTest(t)
	// Two 1400-byte frames fit a block: the ring holds about 8.
	r := rt.open(t, packetRxConfig{BlockSize: 4096, Blocks: 4})
	g := NewGRE(testKey, true)
	const total = 200
	sizes := make([]int, total)
	for i := range sizes {
		sizes[i] = 1400
	}
	msgs, _ := greMsgs(g, rt.rcv.Underlay, sizes...)
	rt.send(t, msgs)
	readAll(t, rt.ref, total, 64) // every packet arrived
	time.Sleep(50 * time.Millisecond)
	// What the ring holds.
	var got int
	batch := make([]Message, 64)
	for {
		r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := r.ReadBatch(batch)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	r.SetReadDeadline(time.Time{})
	// The ring works again, and the next block it fills says that the
	// kernel dropped packets (TP_STATUS_LOSING), until they are counted.
	again, _ := greMsgs(g, rt.rcv.Underlay, 100, 200, 300)
	rt.send(t, again)
	readAll(t, r, len(again), 64)
	if !r.losing {
		t.Error("no block said TP_STATUS_LOSING after the drops")
	}
	drops := r.Drops()
	t.Logf("%d packets received, %d dropped of %d", got, drops, total)
	if drops == 0 || got == 0 || uint64(got)+drops != total {
		t.Errorf("%d received + %d dropped, want %d with some dropped", got, drops, total)
	}
	if d := r.Drops(); d != drops {
		t.Errorf("Drops() = %d, then %d without traffic", drops, d)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := r.Drops(); d != drops {
		t.Errorf("Drops() after Close = %d, want %d", d, drops)
	}
}

// TestIntegrationPacketReceiverZeroAllocs checks that ReadBatch
// allocates nothing once warm, across the blocks it hands back.
func TestIntegrationPacketReceiverZeroAllocs(t *testing.T) {
	rt := newRingTest(t)
	r := rt.open(t, packetRxConfig{BlockSize: 16 << 10, Blocks: 32})
	g := NewGRE(testKey, true)
	sizes := make([]int, 300)
	for i := range sizes {
		sizes[i] = 200 + i
	}
	msgs, _ := greMsgs(g, rt.rcv.Underlay, sizes...)
	rt.send(t, msgs[:16])
	readAll(t, r, 16, 4)
	rt.send(t, msgs[16:])
	readAll(t, rt.ref, len(msgs), 64)
	time.Sleep(50 * time.Millisecond) // every block handed over
	batch := make([]Message, 4)
	got := 0
	allocs := testing.AllocsPerRun(60, func() {
		n, err := r.ReadBatch(batch)
		if err != nil || n < 1 {
			panic(fmt.Sprintf("ReadBatch = %d, %v", n, err))
		}
		got += n
	})
	if allocs != 0 {
		t.Errorf("%v allocations per ReadBatch", allocs)
	}
	t.Logf("%d packets in %d ReadBatch calls", got, 61)
}

// TestIntegrationPacketReceiverProbe checks the errors that make the
// caller fall back to the raw socket, which they leave untouched: an
// address on an interface that is not Ethernet, one no interface holds,
// and an interface that is down.
func TestIntegrationPacketReceiverProbe(t *testing.T) {
	rt := newRingTest(t)
	open := func(local netip.Addr) error {
		return rt.rcv.Do(func() error {
			p, err := openPacketReceiver(local, rt.rx.rxc, packetRxConfig{})
			if err == nil {
				p.Close()
			}
			return err
		})
	}
	lo := netip.MustParseAddr("198.18.7.1")
	if out, err := rt.rcv.Exec(t, "ip", "addr", "add", lo.String()+"/32", "dev", "lo"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := open(lo); err == nil || !strings.Contains(err.Error(), "not Ethernet") {
		t.Errorf("on lo: %v, want an error saying it is not Ethernet", err)
	}
	if err := open(netip.MustParseAddr("198.18.0.77")); err == nil || !strings.Contains(err.Error(), "no interface holds") {
		t.Errorf("on an address nobody holds: %v", err)
	}
	if err := open(netip.IPv4Unspecified()); err == nil {
		t.Error("on 0.0.0.0: no error")
	}
	if _, err := rt.rcv.Exec(t, "ip", "link", "set", nstest.NodeLink, "down"); err != nil {
		t.Fatal(err)
	}
	// Older kernels refuse the fanout group (EINVAL) while the interface
	// is down; newer ones link it when the interface comes up.
	var down *packetReceiver
	err := rt.rcv.Do(func() (err error) { down, err = openPacketReceiver(rt.rcv.Underlay, nil, packetRxConfig{}); return err })
	t.Logf("open on an interface that is down: %v", err)
	if err != nil && Errno(err) == 0 {
		t.Errorf("no errno in %v", err)
	}
	if _, err := rt.rcv.Exec(t, "ip", "link", "set", nstest.NodeLink, "up"); err != nil {
		t.Fatal(err)
	}
	if n := filterLen(t, rt.rx); n != 0 {
		t.Fatalf("a failed open left a filter of %d instructions on the raw socket", n)
	}
	g := NewGRE(testKey, true)
	msgs, frames := greMsgs(g, rt.rcv.Underlay, 100)
	deadline := time.Now().Add(ioTimeout)
	for {
		// The link needs a moment to carry traffic again.
		if failed, err := rt.tx.WriteBatch(msgs); err == nil && failed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cannot send after the link came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkDelivered(t, g, readAll(t, rt.rx, 1, 8), rt.snd.Underlay, frames)
	if down != nil {
		checkDelivered(t, g, readAll(t, down, 1, 8), rt.snd.Underlay, frames)
		down.Close()
	}
}

// TestIntegrationPacketReceiverInterfaceGone deletes the interface of a
// ring while ReadBatch waits: ReadBatch returns an error wrapping ENODEV,
// for the caller to fall back to the raw socket. An interface that goes
// down and up is no error.
func TestIntegrationPacketReceiverInterfaceGone(t *testing.T) {
	nt := nstest.NewNet(t, 1)
	n := nt.Node(1)
	run := func(args ...string) {
		t.Helper()
		if out, err := n.Exec(t, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	// waiting opens a ring on a new veth with address local and starts a
	// ReadBatch.
	waiting := func(ifname string, local netip.Addr) <-chan error {
		run("ip", "link", "add", ifname, "type", "veth", "peer", "name", ifname+"p")
		run("ip", "addr", "add", local.String()+"/24", "dev", ifname)
		run("ip", "link", "set", ifname, "up")
		run("ip", "link", "set", ifname+"p", "up")
		var r *packetReceiver
		if err := n.Do(func() (err error) { r, err = openPacketReceiver(local, nil, packetRxConfig{}); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		done := make(chan error, 1)
		go func() {
			_, err := r.ReadBatch(make([]Message, 8))
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		return done
	}
	gone := func(done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if !errors.Is(err, unix.ENODEV) {
				t.Fatalf("ReadBatch after the interface was deleted: %v, want ENODEV", err)
			}
			t.Log(err)
		case <-time.After(ioTimeout):
			t.Fatal("ReadBatch still waits after the interface was deleted")
		}
	}

	done := waiting("mcr0", netip.MustParseAddr("198.18.9.1"))
	run("ip", "link", "del", "mcr0")
	gone(done)

	done = waiting("mcr2", netip.MustParseAddr("198.18.10.1"))
	run("ip", "link", "set", "mcr2", "down")
	run("ip", "link", "set", "mcr2", "up")
	time.Sleep(goneEvery + 50*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("ReadBatch returned %v after the interface went down and up", err)
	default:
	}
	run("ip", "link", "del", "mcr2")
	gone(done)
}

// TestRingFilterProgram runs the ring's filter, but for its packet type
// check (an extension bpf.VM lacks), on packets as the socket sees them.
func TestRingFilterProgram(t *testing.T) {
	local := netip.MustParseAddr("198.18.0.2")
	prog := greFilterProgram(local)
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatal(err)
	}
	if _, ok := prog[0].(bpf.LoadExtension); !ok {
		t.Fatalf("instruction 0 is %v, want the packet type", prog[0])
	}
	vm, err := bpf.NewVM(prog[2:])
	if err != nil {
		t.Fatal(err)
	}
	pkt := func(proto uint8, dst string, frag uint16) []byte {
		ip := make([]byte, 60)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 60)
		binary.BigEndian.PutUint16(ip[6:], frag)
		ip[9] = proto
		copy(ip[12:16], []byte{198, 18, 0, 1})
		d := netip.MustParseAddr(dst).As4()
		copy(ip[16:20], d[:])
		return ip
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"GRE to local", pkt(ProtoGRE, "198.18.0.2", 0), true},
		{"GRE to local with DF", pkt(ProtoGRE, "198.18.0.2", inet.IPv4FlagDF), true},
		{"GRE to another address", pkt(ProtoGRE, "198.18.0.3", 0), false},
		{"UDP to local", pkt(ProtoUDP, "198.18.0.2", 0), false},
		{"ICMP to local", pkt(1, "198.18.0.2", 0), false},
		{"first fragment", pkt(ProtoGRE, "198.18.0.2", inet.IPv4FlagMF), false},
		{"last fragment", pkt(ProtoGRE, "198.18.0.2", 100), false},
	} {
		n, err := vm.Run(tc.pkt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// The VM returns what the filter returns: 0 or all.
		if got := n >= len(tc.pkt); got != tc.want || (n != 0 && n < len(tc.pkt)) {
			t.Errorf("%s: filter keeps %d of %d bytes, want accepted %v", tc.name, n, len(tc.pkt), tc.want)
		}
	}
}

// TestRingGeometry checks the ring sizes packetRxConfig allows.
func TestRingGeometry(t *testing.T) {
	for _, tc := range []struct {
		cfg    packetRxConfig
		bs, nb int
		tov    uint32
		ok     bool
	}{
		{packetRxConfig{}, ringBlockSize, ringBlocks, 1, true},
		{packetRxConfig{BlockSize: 4096, Blocks: 4, Retire: 10 * time.Millisecond}, 4096, 4, 10, true},
		{packetRxConfig{Retire: time.Microsecond}, ringBlockSize, ringBlocks, 1, true},
		{packetRxConfig{BlockSize: 3 << 12}, 0, 0, 0, false},
		{packetRxConfig{BlockSize: 1024}, 0, 0, 0, false},
		{packetRxConfig{Blocks: 1}, 0, 0, 0, false},
		{packetRxConfig{BlockSize: 1 << 30, Blocks: 2}, 0, 0, 0, false},
	} {
		bs, nb, tov, err := ringGeometry(tc.cfg)
		if (err == nil) != tc.ok || (tc.ok && (bs != tc.bs || nb != tc.nb || tov != tc.tov)) {
			t.Errorf("%+v: %d x %d, %d ms, %v", tc.cfg, nb, bs, tov, err)
		}
	}
}
