package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The integration tests need root. Each makes its own unnamed network
// namespace, which vanishes with the last thread and file that hold it, and
// uses only RFC 2544 addresses inside it.

// ioTimeout bounds every wait for packets, so that a lost packet fails the
// test instead of hanging it.
const ioTimeout = 5 * time.Second

var (
	underlayA   = netip.MustParseAddr("198.18.0.1")
	underlayB   = netip.MustParseAddr("198.18.0.2")
	unreachable = netip.MustParseAddr("198.18.9.9") // no route in the test namespace
)

// skipOrFail skips an integration test that lacks privileges, or fails it
// when CI=true, where the privileged tests are expected to run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "integration test needs root (CAP_NET_ADMIN, CAP_NET_RAW) and network namespaces; run it as root, e.g. sudo go test ./overlay/: " +
		fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this is a failure, not a skip)")
	}
	t.Skip(msg)
}

// testNS is a fresh network namespace with a goroutine whose thread lives in
// it. Code that creates sockets, devices or netlink requests runs through
// do; the files it opens stay in the namespace and may be used from any
// goroutine.
type testNS struct {
	ops  chan func()
	done chan struct{}
	h    netns.NsHandle
}

// newTestNS makes a network namespace with lo up. The namespace goes away in
// the test's cleanup, after the cleanups registered later (which close what
// was opened in it).
func newTestNS(t testing.TB) *testNS {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		skipOrFail(t, "running as uid %d", uid)
	}
	ns := &testNS{ops: make(chan func()), done: make(chan struct{}), h: -1}
	ready := make(chan error, 1)
	offMainThread(func() {
		defer close(ns.done)
		orig, err := netns.Get()
		if err != nil {
			ready <- err
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err != nil {
			ready <- err
			return
		}
		// Back to the original namespace before the thread is discarded,
		// so that nothing of the runtime ever holds the test namespace.
		defer func() { _ = netns.Set(orig) }()
		if h.Equal(orig) {
			h.Close()
			ready <- errors.New("netns.New left the thread in its namespace")
			return
		}
		ns.h = h
		ready <- nil
		for fn := range ns.ops {
			fn()
		}
	})
	if err := <-ready; err != nil {
		<-ns.done
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			skipOrFail(t, "creating a network namespace: %v", err)
		}
		t.Fatalf("creating a network namespace: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.h), &st); err != nil {
		t.Fatalf("stat namespace: %v", err)
	}
	t.Cleanup(func() {
		close(ns.ops)
		<-ns.done
		ns.h.Close()
		checkNSReleased(t, st.Ino)
	})
	ns.do(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return ns
}

// offMainThread runs fn on a new goroutine locked to an OS thread that is
// not the process's main thread, and never unlocks it: when fn returns, the
// runtime ends the thread instead of reusing it, whatever fn did to it. The
// main thread is avoided because the runtime never ends it, and because
// /proc/PID/ns reports its namespace.
func offMainThread(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn() // never unlocked
			return
		}
		// Hold the main thread until fn runs on another one. Nothing was
		// changed on this thread, so it may be unlocked and reused.
		started := make(chan struct{})
		offMainThread(func() {
			close(started)
			fn()
		})
		<-started
		runtime.UnlockOSThread()
	}()
}

// checkNSReleased fails the test if, after a grace period for the locked
// thread to exit, a thread or a namespace file of this process still holds
// the namespace with inode ino.
func checkNSReleased(t testing.TB, ino uint64) {
	t.Helper()
	want := fmt.Sprintf("net:[%d]", ino)
	holders := func() []string {
		var hs []string
		for _, glob := range []string{"/proc/self/task/*/ns/net", "/proc/self/fd/*"} {
			paths, _ := filepath.Glob(glob)
			for _, p := range paths {
				if l, err := os.Readlink(p); err == nil && l == want {
					hs = append(hs, p)
				}
			}
		}
		return hs
	}
	deadline := time.Now().Add(ioTimeout)
	for {
		hs := holders()
		if len(hs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("namespace %s still held by %v", want, hs)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do runs fn on the namespace's thread and fails the test if it fails.
func (ns *testNS) do(t testing.TB, fn func() error) {
	t.Helper()
	if err := ns.try(fn); err != nil {
		t.Fatal(err)
	}
}

// try runs fn on the namespace's thread and returns its error.
func (ns *testNS) try(fn func() error) error {
	errc := make(chan error, 1)
	ns.ops <- func() { errc <- fn() }
	return <-errc
}

// addLoopback adds the underlay addresses as /24s to lo, so two sockets in
// one namespace can talk through it.
func (ns *testNS) addLoopback(t testing.TB, addrs ...netip.Addr) {
	t.Helper()
	ns.do(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, a := range addrs {
			ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipn}); err != nil {
				return fmt.Errorf("add %v to lo: %w", ipn, err)
			}
		}
		return nil
	})
}

// received is a copy of one message read from a Conn.
type received struct {
	buf  []byte
	addr netip.Addr
}

// readN reads from c until want messages arrived. After ioTimeout it closes
// c, which ends the pending read, and fails.
func readN(t *testing.T, c *Conn, want int) []received {
	t.Helper()
	type result struct {
		got []received
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var got []received
		// More messages than one call may fill: ReadBatch must stop at
		// batchSize.
		msgs := make([]Message, 2*c.batchSize())
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		for len(got) < want {
			n, err := c.ReadBatch(msgs)
			if err != nil {
				ch <- result{got, err}
				return
			}
			// A coalesced datagram may yield more messages than the
			// batch, but never more than msgs holds.
			if n < 1 || n > len(msgs) || (!c.gro && n > c.batchSize()) {
				ch <- result{got, fmt.Errorf("ReadBatch read %d messages with batch size %d", n, c.batchSize())}
				return
			}
			for _, m := range msgs[:n] {
				got = append(got, received{bytes.Clone(m.Buf[:m.N]), m.Addr})
			}
		}
		ch <- result{got, nil}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ReadBatch after %d of %d messages: %v", len(r.got), want, r.err)
		}
		return r.got
	case <-time.After(ioTimeout):
		c.Close()
		r := <-ch
		t.Fatalf("received %d of %d messages in %v", len(r.got), want, ioTimeout)
		return nil
	}
}

// listenPair opens a Conn of the codec on each underlay address.
func listenPair(t *testing.T, ns *testNS, codec string, batch int) (a, b *Conn) {
	t.Helper()
	a, b = listenPairOpts(t, ns, codec, Options{Batch: batch})
	if want := min(batch, groBatch); codec == "vxlan" && b.batchSize() != want {
		t.Fatalf("batchSize = %d, want %d", b.batchSize(), want)
	}
	return a, b
}

// listenPairOpts opens a Conn of the codec with opts on each underlay
// address.
func listenPairOpts(t testing.TB, ns *testNS, codec string, opts Options) (a, b *Conn) {
	t.Helper()
	ns.addLoopback(t, underlayA, underlayB)
	return listenPairAt(t, ns, codec, opts, underlayA, underlayB)
}

// listenPairAt opens a Conn of the codec with opts on addrA and on addrB,
// which the namespace holds.
func listenPairAt(t testing.TB, ns *testNS, codec string, opts Options, addrA, addrB netip.Addr) (a, b *Conn) {
	t.Helper()
	open := func(addr netip.Addr) (*Conn, error) {
		if codec == "gre" {
			return ListenGRE(addr, opts)
		}
		return ListenVXLAN(addr, DefaultVXLANPort, opts)
	}
	ns.do(t, func() error {
		var err error
		if a, err = open(addrA); err != nil {
			return err
		}
		t.Cleanup(func() { a.Close() })
		if b, err = open(addrB); err != nil {
			return err
		}
		t.Cleanup(func() { b.Close() })
		return nil
	})
	return a, b
}

// encapFrames returns n encapsulated packets of distinct frames, and the
// frames.
func encapFrames(c Codec, n int) (pkts, frames [][]byte) {
	for i := range n {
		size := 60 + 37*i
		frame := testFrame(size, uint16(1000+i))
		pkts = append(pkts, c.Encap(withHeadroom(frame), size))
		frames = append(frames, frame)
	}
	return pkts, frames
}

// checkDelivered decaps every received message (with DecapIPv6 if src is
// an IPv6 address) and checks that it came from src and that the frames
// are exactly frames, each once.
func checkDelivered(t *testing.T, c Codec, got []received, src netip.Addr, frames [][]byte) {
	t.Helper()
	decap, name := c.Decap, "Decap"
	if src.Is6() {
		decap, name = c.DecapIPv6, "DecapIPv6"
	}
	seen := make([]bool, len(frames))
	for i, m := range got {
		if m.addr != src {
			t.Errorf("message %d from %v, want %v", i, m.addr, src)
		}
		inner, r := decap(m.buf)
		if r != OK {
			t.Errorf("message %d (%d bytes): %s: %v", i, len(m.buf), name, r)
			continue
		}
		found := false
		for k, f := range frames {
			if !seen[k] && bytes.Equal(inner, f) {
				seen[k], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("message %d carries a frame of %d bytes that was not sent, or twice", i, len(inner))
		}
	}
}

func TestIntegrationGRE(t *testing.T) {
	ns := newTestNS(t)
	const batch = 8
	a, b := listenPair(t, ns, "gre", batch)
	g := NewGRE(testKey, true)

	const n = 3*batch + 3 // several sendmmsg calls
	pkts, frames := encapFrames(g, n)
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Buf: pkts[i], Addr: underlayB}
	}
	failed, err := a.WriteBatch(msgs)
	if err != nil || failed != 0 {
		t.Fatalf("WriteBatch: %d failed, %v", failed, err)
	}
	for i, m := range msgs {
		if m.N != len(m.Buf) {
			t.Errorf("message %d: N = %d, want %d", i, m.N, len(m.Buf))
		}
	}

	got := readN(t, b, n)
	for i, m := range got {
		// A raw GRE socket delivers the outer IPv4 header the kernel wrote.
		src, proto, payload, r := ParseIPv4(m.buf)
		if r != OK || src != underlayA || proto != ProtoGRE {
			t.Fatalf("message %d: outer IPv4 %v from %v proto %d", i, r, src, proto)
		}
		if dst := netipFrom(m.buf[16:20]); dst != underlayB {
			t.Errorf("message %d: outer destination %v, want %v", i, dst, underlayB)
		}
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(m.buf, gopacket.NilDecodeFeedback); err != nil || ip.Protocol != layers.IPProtocolGRE {
			t.Errorf("message %d: gopacket IPv4 %v, protocol %v", i, err, ip.Protocol)
		}
		found := false
		for _, p := range pkts {
			found = found || bytes.Equal(payload, p)
		}
		if !found {
			t.Errorf("message %d: the GRE bytes (%d) are not a packet that was sent", i, len(payload))
		}
	}
	checkDelivered(t, g, got, underlayA, frames)
}

func TestIntegrationVXLAN(t *testing.T) {
	ns := newTestNS(t)
	const batch = 8
	a, b := listenPair(t, ns, "vxlan", batch)
	v := NewVXLAN(testVNI, DefaultVXLANPort)

	const n = 2*batch + 5
	pkts, frames := encapFrames(v, n)
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Buf: pkts[i], Addr: underlayB}
	}
	failed, err := a.WriteBatch(msgs)
	if err != nil || failed != 0 {
		t.Fatalf("WriteBatch: %d failed, %v", failed, err)
	}
	got := readN(t, b, n)
	for i, m := range got {
		// The UDP socket delivers the VXLAN header and the frame.
		if _, r := ParseVXLAN(m.buf); r != OK {
			t.Fatalf("message %d: ParseVXLAN: %v", i, r)
		}
		found := false
		for _, p := range pkts {
			found = found || bytes.Equal(m.buf, p[UDPHeaderLen:])
		}
		if !found {
			t.Errorf("message %d: %d bytes that were not sent", i, len(m.buf))
		}
	}
	checkDelivered(t, v, got, underlayA, frames)
}

// TestIntegrationWriteBatchUnreachable checks that a destination the kernel
// refuses marks only its own messages, while the others still go.
func TestIntegrationWriteBatchUnreachable(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			ns := newTestNS(t)
			const batch = 4
			a, b := listenPair(t, ns, codec, batch)
			ns.do(t, func() error {
				if routes, err := netlink.RouteGet(unreachable.AsSlice()); err == nil {
					return fmt.Errorf("the namespace has a route to %v: %v", unreachable, routes)
				}
				return nil
			})
			var c Codec = NewGRE(0, false)
			if codec == "vxlan" {
				c = NewVXLAN(testVNI, DefaultVXLANPort)
			}
			pkts, frames := encapFrames(c, 10)
			// Unreachable first, in the middle, twice in a row, and last,
			// across several system calls.
			bad := map[int]bool{0: true, 3: true, 5: true, 6: true, 9: true}
			msgs := make([]Message, len(pkts))
			var good [][]byte
			for i := range msgs {
				msgs[i] = Message{Buf: pkts[i], Addr: underlayB, N: 12345}
				if bad[i] {
					msgs[i].Addr = unreachable
				} else {
					good = append(good, frames[i])
				}
			}
			failed, err := a.WriteBatch(msgs)
			if err != nil {
				t.Fatalf("WriteBatch: %v", err)
			}
			if failed != len(bad) {
				t.Errorf("WriteBatch: %d failed, want %d", failed, len(bad))
			}
			for i, m := range msgs {
				want := len(m.Buf)
				if bad[i] {
					want = -1
				}
				if m.N != want {
					t.Errorf("message %d to %v: N = %d, want %d", i, m.Addr, m.N, want)
				}
			}
			checkDelivered(t, c, readN(t, b, len(good)), underlayA, good)
		})
	}
}

// tapNeighbour is the static neighbour the TAP test sends to, so that the
// kernel sends without asking ARP first.
var (
	tapOverlay   = netip.MustParsePrefix("198.19.0.1/24")
	tapNeighbour = netip.MustParseAddr("198.19.0.2")
)

// readTAPFrame reads frames from tap until match accepts one, and returns
// it. After ioTimeout it closes tap and fails.
func readTAPFrame(t *testing.T, tap *TAP, match func([]byte) bool) []byte {
	t.Helper()
	type result struct {
		frame []byte
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		const n = 4
		bufs := make([][]byte, n)
		for i := range bufs {
			bufs[i] = bytes.Repeat([]byte{0xee}, Headroom+2048)
		}
		sizes := make([]int, n)
		for {
			k, err := tap.ReadBatch(bufs, Headroom, sizes)
			if err != nil {
				ch <- result{nil, err}
				return
			}
			for i := range k {
				// The virtio-net header takes the VnetHdrLen bytes
				// before the frame; the rest of the headroom is left.
				if !bytes.Equal(bufs[i][:Headroom-VnetHdrLen], bytes.Repeat([]byte{0xee}, Headroom-VnetHdrLen)) {
					ch <- result{nil, errors.New("ReadBatch wrote into the headroom before the virtio-net header")}
					return
				}
				if f := bufs[i][Headroom : Headroom+sizes[i]]; match(f) {
					ch <- result{bytes.Clone(f), nil}
					return
				}
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("TAP ReadBatch: %v", r.err)
		}
		return r.frame
	case <-time.After(ioTimeout):
		tap.Close()
		<-ch
		t.Fatalf("the frame did not come out of the TAP in %v", ioTimeout)
		return nil
	}
}

func TestIntegrationTAP(t *testing.T) {
	ns := newTestNS(t)
	const name, mtu = "mctest0", 1462
	var tap *TAP
	ns.do(t, func() error {
		var err error
		tap, err = OpenTAP(TAPConfig{Name: name, Overlay: tapOverlay, MTU: mtu})
		return err
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			tap.Close()
		}
	})
	mac := MACFor(tapOverlay.Addr())
	if tap.Name() != name || tap.MTU() != mtu || !bytes.Equal(tap.MAC(), mac) {
		t.Errorf("TAP %q MTU %d MAC %v, want %q %d %v", tap.Name(), tap.MTU(), tap.MAC(), name, mtu, mac)
	}

	// The kernel's view: type, MTU, MAC, UP, the address, no IPv6.
	ns.do(t, func() error {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		attrs := link.Attrs()
		if link.Type() != "tuntap" {
			t.Errorf("link type %q, want tuntap", link.Type())
		}
		if attrs.MTU != mtu {
			t.Errorf("kernel MTU %d, want %d", attrs.MTU, mtu)
		}
		if !bytes.Equal(attrs.HardwareAddr, mac) {
			t.Errorf("kernel MAC %v, want %v", attrs.HardwareAddr, mac)
		}
		if attrs.Flags&net.FlagUp == 0 {
			t.Errorf("link flags %v, want up", attrs.Flags)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		found := false
		for _, a := range addrs {
			ones, _ := a.Mask.Size()
			found = found || (a.IP.Equal(tapOverlay.Addr().AsSlice()) && ones == tapOverlay.Bits())
		}
		if !found {
			t.Errorf("addresses %v, want %v", addrs, tapOverlay)
		}
		if v6, err := netlink.AddrList(link, netlink.FAMILY_V6); err == nil && len(v6) != 0 {
			t.Errorf("IPv6 addresses %v, want none", v6)
		}
		if attrs.TxQLen != TAPQueueLen {
			t.Errorf("transmit queue %d, want %d", attrs.TxQLen, TAPQueueLen)
		}
		qs, err := netlink.QdiscList(link)
		if err != nil {
			return err
		}
		if len(qs) != 1 || qs[0].Type() != "noqueue" {
			t.Errorf("queueing disciplines %v, want noqueue only", qs)
		}
		if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"); err == nil && strings.TrimSpace(string(b)) != "1" {
			t.Errorf("disable_ipv6 = %q, want 1", b)
		}
		return nil
	})

	// A second TAP of the same name is refused, saying why.
	err := ns.try(func() error {
		tap2, err := OpenTAP(TAPConfig{Name: name, Overlay: netip.MustParsePrefix("198.19.0.9/24")})
		if err == nil {
			tap2.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("a second OpenTAP with the same name succeeded")
	}
	if !errors.Is(err, ErrInterfaceExists) || !strings.Contains(err.Error(), name) {
		t.Errorf("second OpenTAP: %q, want it to name %s and say it already exists", err, name)
	}

	// A UDP packet to a static neighbour leaves through the TAP.
	nbMAC := MACFor(tapNeighbour)
	payload := []byte("meshcast tap integration")
	var sock *net.UDPConn
	ns.do(t, func() error {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.NeighAdd(&netlink.Neigh{
			LinkIndex:    link.Attrs().Index,
			Family:       netlink.FAMILY_V4,
			State:        netlink.NUD_PERMANENT,
			IP:           tapNeighbour.AsSlice(),
			HardwareAddr: nbMAC,
		}); err != nil {
			return fmt.Errorf("add neighbour: %w", err)
		}
		sock, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tapNeighbour, 9999)))
		return err
	})
	defer sock.Close()
	if _, err := sock.Write(payload); err != nil {
		t.Fatalf("send to %v: %v", tapNeighbour, err)
	}
	frame := readTAPFrame(t, tap, func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		return udp != nil && udp.DstPort == 9999
	})
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !bytes.Equal(eth.DstMAC, nbMAC) || !bytes.Equal(eth.SrcMAC, mac) || eth.EthernetType != layers.EthernetTypeIPv4 {
		t.Errorf("Ethernet %v > %v type %v, want %v > %v IPv4", eth.SrcMAC, eth.DstMAC, eth.EthernetType, mac, nbMAC)
	}
	if ip == nil || !ip.SrcIP.Equal(tapOverlay.Addr().AsSlice()) || !ip.DstIP.Equal(tapNeighbour.AsSlice()) {
		t.Errorf("IPv4 %v", ip)
	}
	if !bytes.Equal(udp.Payload, payload) {
		t.Errorf("UDP payload %q, want %q", udp.Payload, payload)
	}

	// A frame written to the TAP reaches a socket of the local host.
	var listener *net.UDPConn
	ns.do(t, func() error {
		var err error
		listener, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tapOverlay.Addr(), 4321)))
		return err
	})
	defer listener.Close()
	in := udpToTAP(tapNeighbour, tapOverlay.Addr(), nbMAC, mac, 5555, 4321, []byte("from a peer"))
	if n, err := tap.Write(in); err != nil || n != len(in) {
		t.Fatalf("TAP Write = %d, %v", n, err)
	}
	listener.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 100)
	n, from, err := listener.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the frame written to the TAP did not arrive: %v", err)
	}
	if string(buf[:n]) != "from a peer" || from != netip.AddrPortFrom(tapNeighbour, 5555) {
		t.Errorf("received %q from %v", buf[:n], from)
	}

	// Close removes the interface.
	if err := tap.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	deadline := time.Now().Add(ioTimeout)
	for {
		err := ns.try(func() error { _, err := netlink.LinkByName(name); return err })
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("interface %s still there after Close (%v)", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The name is free again.
	ns.do(t, func() error {
		tap3, err := OpenTAP(TAPConfig{Name: name, Overlay: tapOverlay, MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x33}})
		if err != nil {
			return fmt.Errorf("reopen %s: %w", name, err)
		}
		defer tap3.Close()
		if tap3.MAC().String() != "02:00:00:00:00:33" {
			t.Errorf("TAP MAC %v, want the configured one", tap3.MAC())
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if link.Attrs().HardwareAddr.String() != "02:00:00:00:00:33" {
			t.Errorf("kernel MAC %v, want the configured one", link.Attrs().HardwareAddr)
		}
		return nil
	})
}

// udpToTAP builds an Ethernet frame of a UDP datagram with a zero (absent)
// UDP checksum.
func udpToTAP(src, dst netip.Addr, srcMAC, dstMAC net.HardwareAddr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
	ip[8] = 64
	ip[9] = ProtoUDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:12], Checksum(ip[:20]))
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], payload)
	return f
}

// loTx returns the packets lo has sent in the test namespace.
func loTx(t testing.TB, ns *testNS) uint64 {
	t.Helper()
	var n uint64
	ns.do(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		n = lo.Attrs().Statistics.TxPackets
		return nil
	})
	return n
}

// TestIntegrationVXLANOffload sends the copies of a batch in two flows,
// interleaved as the engine makes them, with and without offload. With
// it, each flow's run leaves as a few segmentation-offload packets and is
// split again on receive; without, every copy is a packet. Either way the
// receiver gets every frame, in order within its flow.
func TestIntegrationVXLANOffload(t *testing.T) {
	for _, noOffload := range []bool{false, true} {
		name := map[bool]string{false: "on", true: "off"}[noOffload]
		t.Run(name, func(t *testing.T) {
			ns := newTestNS(t)
			a, b := listenPairOpts(t, ns, "vxlan", Options{Batch: 64, NoOffload: noOffload})
			gro, gso := b.Offload()
			if gro == noOffload || gso == noOffload {
				t.Fatalf("Offload() = %v, %v with NoOffload %v", gro, gso, noOffload)
			}
			v := NewVXLAN(testVNI, DefaultVXLANPort)
			// Flow 1: 40 frames of 300 bytes and a last one of 200; flow 2:
			// 30 of 500. Each frame carries its sequence number.
			var msgs []Message
			sent := map[uint16][][]byte{}
			add := func(flow uint16, size int, seq int) {
				f := testFrame(size, flow)
				binary.BigEndian.PutUint32(f[size-4:], uint32(seq))
				sent[flow] = append(sent[flow], f)
				msgs = append(msgs, Message{Buf: v.Encap(withHeadroom(f), size), Addr: underlayB})
			}
			for i := range 41 {
				size := 300
				if i == 40 {
					size = 200
				}
				add(1001, size, i)
				if i < 30 {
					add(1002, 500, i)
				}
			}
			before := loTx(t, ns)
			// In the namespace: WriteBatch opens the flow sockets there.
			var failed int
			ns.do(t, func() (err error) {
				failed, err = a.WriteBatch(msgs)
				return err
			})
			if failed != 0 {
				t.Fatalf("WriteBatch: %d failed", failed)
			}
			for i, m := range msgs {
				if m.N != len(m.Buf) {
					t.Fatalf("message %d: N = %d, want %d", i, m.N, len(m.Buf))
				}
			}
			got := readN(t, b, len(msgs))
			packets := loTx(t, ns) - before
			t.Logf("offload %s: %d copies left as %d packets", name, len(msgs), packets)
			if noOffload && packets != uint64(len(msgs)) {
				t.Errorf("%d packets for %d copies without offload", packets, len(msgs))
			}
			if !noOffload && packets > 4 {
				t.Errorf("%d packets for %d copies with offload; want a few", packets, len(msgs))
			}
			recv := map[uint16][][]byte{}
			for i, m := range got {
				if m.addr != underlayA {
					t.Errorf("message %d from %v", i, m.addr)
				}
				inner, r := v.Decap(m.buf)
				if r != OK {
					t.Fatalf("message %d: %v", i, r)
				}
				flow := binary.BigEndian.Uint16(inner[34:36])
				recv[flow] = append(recv[flow], inner)
			}
			for flow, frames := range sent {
				if len(recv[flow]) != len(frames) {
					t.Fatalf("flow %d: %d frames received, %d sent", flow, len(recv[flow]), len(frames))
				}
				for i := range frames {
					if !bytes.Equal(recv[flow][i], frames[i]) {
						t.Errorf("flow %d: frame %d differs or is out of order", flow, i)
					}
				}
			}
		})
	}
}

// TestIntegrationConnZeroAllocs checks that the batch paths, with and
// without offload, allocate nothing once warm.
func TestIntegrationConnZeroAllocs(t *testing.T) {
	for _, noOffload := range []bool{false, true} {
		t.Run(map[bool]string{false: "offload", true: "raw"}[noOffload], func(t *testing.T) {
			ns := newTestNS(t)
			a, b := listenPairOpts(t, ns, "vxlan", Options{Batch: 64, NoOffload: noOffload})
			v := NewVXLAN(testVNI, DefaultVXLANPort)
			var msgs []Message
			for i := range 16 {
				f := testFrame(400, uint16(1001+i%2))
				msgs = append(msgs, Message{Buf: v.Encap(withHeadroom(f), 400), Addr: underlayB})
			}
			in := make([]Message, 64)
			round := func() {
				if _, err := a.WriteBatch(msgs); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < len(msgs); {
					n, err := b.ReadBatch(in)
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			ns.do(t, func() error { round(); return nil }) // opens the flow sockets in the namespace
			if n := testing.AllocsPerRun(50, round); n != 0 {
				t.Errorf("%v allocations per batch written and read", n)
			}
		})
	}
}

// TestIntegrationTAPCoalesce writes runs of UDP datagrams to a real TAP and
// checks what a socket on the host receives: every valid datagram, in
// order, and with coalescing few TAP writes.
func TestIntegrationTAPCoalesce(t *testing.T) {
	for _, noCoalesce := range []bool{false, true} {
		t.Run(map[bool]string{false: "coalesce", true: "plain"}[noCoalesce], func(t *testing.T) {
			ns := newTestNS(t)
			const name = "mctest1"
			var tap *TAP
			var sock *net.UDPConn
			ns.do(t, func() error {
				var err error
				if tap, err = OpenTAP(TAPConfig{Name: name, Overlay: netip.PrefixFrom(coDst, 24), MTU: 1500, NoCoalesce: noCoalesce}); err != nil {
					return err
				}
				sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: coDst.AsSlice(), Port: 7000})
				return err
			})
			t.Cleanup(func() { sock.Close(); tap.Close() })
			rxPackets := func() uint64 {
				var n uint64
				ns.do(t, func() error {
					l, err := netlink.LinkByName(name)
					if err == nil {
						n = l.Attrs().Statistics.RxPackets
					}
					return err
				})
				return n
			}
			// Two flows interleaved in runs, a datagram with a bad
			// checksum (the kernel drops it), a shorter last datagram.
			var frames [][]byte
			var want [][]byte
			seq := 0
			add := func(sport uint16, size int, valid bool) {
				p := bytes.Repeat([]byte{byte(seq)}, size)
				binary.BigEndian.PutUint32(p, uint32(seq))
				f := coFrame(sport, uint16(seq), p)
				if !valid {
					f[len(f)-1] ^= 0xff
				} else {
					want = append(want, p)
				}
				seq++
				frames = append(frames, f)
			}
			for range 30 {
				add(5001, 1000, true)
			}
			add(5001, 1000, false)
			for range 20 {
				add(5001, 1000, true)
			}
			add(5001, 10, true)
			for range 10 {
				add(5002, 64, true)
			}
			before := rxPackets()
			if st := tap.Offloads()[0]; st.InUse == noCoalesce {
				if noCoalesce || st.Reason == "" {
					t.Fatalf("offload %+v with NoCoalesce %v", st, noCoalesce)
				}
				t.Skipf("this kernel takes no UDP segmentation frames on a TAP: %s", st.Reason)
			}
			failed, errno, err := tap.WriteBatch(frames)
			if err != nil || failed != 0 {
				t.Fatalf("WriteBatch: %d failed (%v), %v", failed, errno, err)
			}
			writes := rxPackets() - before
			t.Logf("%d frames in %d TAP writes", len(frames), writes)
			if noCoalesce && writes != uint64(len(frames)) {
				t.Errorf("%d writes for %d frames without coalescing", writes, len(frames))
			}
			if !noCoalesce && writes > 5 {
				t.Errorf("%d writes for %d frames with coalescing; want 5 or fewer", writes, len(frames))
			}
			buf := make([]byte, 2048)
			for i, w := range want {
				sock.SetReadDeadline(time.Now().Add(ioTimeout))
				n, _, err := sock.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("datagram %d of %d: %v", i, len(want), err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("datagram %d: %d bytes, seq %d; want %d bytes, seq %d", i, n,
						binary.BigEndian.Uint32(buf), len(w), binary.BigEndian.Uint32(w))
				}
			}
			sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := sock.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("an extra datagram of %d bytes (the one with a bad checksum?)", n)
			}
			// Writing allocates nothing (the socket drops what overflows).
			if a := testing.AllocsPerRun(20, func() { tap.WriteBatch(frames) }); a != 0 {
				t.Errorf("%v allocations per WriteBatch", a)
			}
		})
	}
}

// BenchmarkWriteBatchAndReceive sends batches of copies through a real
// VXLAN Conn in a namespace, with and without offload, and reads them back:
// 16 frames of one flow to each of 4 peers (addresses on lo), as the engine
// makes them for a burst at fanout 4. Each round includes the 4 receivers'
// reads, so copies/s is the rate of the send and the receive together, not
// of WriteBatch alone. A read waits at most a second for its copies; the
// copies that never came are reported as lost-copies/op (0 when the
// figure is valid). It needs root.
func BenchmarkWriteBatchAndReceive(b *testing.B) {
	for _, size := range []int{64 + 42, 1400 + 42} {
		for _, noOffload := range []bool{false, true} {
			name := fmt.Sprintf("%s/frame=%d", map[bool]string{false: "offload", true: "raw"}[noOffload], size)
			b.Run(name, func(b *testing.B) {
				ns := newTestNS(b)
				peers := []netip.Addr{underlayB,
					netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4"), netip.MustParseAddr("198.18.0.5")}
				ns.addLoopback(b, underlayA)
				ns.addLoopback(b, peers...)
				var a *Conn
				var rx []*Conn
				ns.do(b, func() (err error) {
					if a, err = ListenVXLAN(underlayA, DefaultVXLANPort, Options{NoOffload: noOffload}); err != nil {
						return err
					}
					for _, p := range peers {
						c, err := ListenVXLAN(p, DefaultVXLANPort, Options{NoOffload: noOffload})
						if err != nil {
							return err
						}
						rx = append(rx, c)
					}
					return nil
				})
				defer func() {
					a.Close()
					for _, c := range rx {
						c.Close()
					}
				}()
				v := NewVXLAN(testVNI, DefaultVXLANPort)
				var msgs []Message
				for range 16 {
					f := testFrame(size, 1001)
					pkt := v.Encap(withHeadroom(f), size)
					for _, p := range peers {
						msgs = append(msgs, Message{Buf: pkt, Addr: p})
					}
				}
				in := make([]Message, 64)
				lost := 0
				// A copy lost on the way must not hang the benchmark:
				// each receiver's reads of a round have a deadline, and
				// the copies missing then are counted.
				round := func() {
					if _, err := a.WriteBatch(msgs); err != nil {
						b.Fatal(err)
					}
					deadline := time.Now().Add(time.Second)
					for _, c := range rx {
						if err := c.rx.SetReadDeadline(deadline); err != nil {
							b.Fatal(err)
						}
						for got := 0; got < 16; {
							n, err := c.ReadBatch(in)
							if errors.Is(err, os.ErrDeadlineExceeded) {
								lost += 16 - got
								break
							}
							if err != nil {
								b.Fatal(err)
							}
							got += n
						}
					}
				}
				ns.do(b, func() error { round(); return nil })
				lost = 0
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					round()
				}
				b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "copies/s")
				b.ReportMetric(float64(lost)/float64(b.N), "lost-copies/op")
				if lost > 0 {
					b.Logf("%d of %d copies never arrived: copies/s counts them as sent and includes a second's wait per round that lost any", lost, b.N*len(msgs))
				}
			})
		}
	}
}

// BenchmarkTAPWriteBatchAndHostRead writes bursts of 32 datagrams of one
// UDP flow to a real TAP, coalesced and one by one, and reads them from a
// socket on the host: frames/s is the rate of the writes and of the host's
// stack and reads together. A read waits at most a second; datagrams that
// never came are reported as lost-frames/op (0 when the figure is valid).
// It needs root.
func BenchmarkTAPWriteBatchAndHostRead(b *testing.B) {
	for _, payload := range []int{64, 1400} {
		for _, noCoalesce := range []bool{false, true} {
			name := fmt.Sprintf("%s/payload=%d", map[bool]string{false: "coalesce", true: "plain"}[noCoalesce], payload)
			b.Run(name, func(b *testing.B) {
				ns := newTestNS(b)
				var tap *TAP
				var sock *net.UDPConn
				ns.do(b, func() (err error) {
					tap, err = OpenTAP(TAPConfig{Name: "mcbench0", Overlay: netip.PrefixFrom(coDst, 24), MTU: 1500, NoCoalesce: noCoalesce})
					if err != nil {
						return err
					}
					sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: coDst.AsSlice(), Port: 7000})
					return err
				})
				defer tap.Close()
				defer sock.Close()
				buf := make([]byte, 2048)
				var frames [][]byte
				for i := range 32 {
					frames = append(frames, coFrame(5001, uint16(i), bytes.Repeat([]byte{byte(i)}, payload)))
				}
				lost := 0
				b.ResetTimer()
				for b.Loop() {
					if _, _, err := tap.WriteBatch(frames); err != nil {
						b.Fatal(err)
					}
					// A lost datagram must not hang the benchmark.
					if err := sock.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
						b.Fatal(err)
					}
					for i := range frames {
						if _, _, err := sock.ReadFromUDPAddrPort(buf); err != nil {
							if errors.Is(err, os.ErrDeadlineExceeded) {
								lost += len(frames) - i
								break
							}
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "frames/s")
				b.ReportMetric(float64(lost)/float64(b.N), "lost-frames/op")
				if lost > 0 {
					b.Logf("%d of %d datagrams never reached the host's socket", lost, b.N*len(frames))
				}
			})
		}
	}
}

// BenchmarkUDPRun finds and builds one coalesced frame of 32 datagrams.
func BenchmarkUDPRun(b *testing.B) {
	for _, payload := range []int{64, 1400} {
		b.Run(fmt.Sprintf("payload=%d", payload), func(b *testing.B) {
			var frames [][]byte
			for i := range 32 {
				frames = append(frames, coFrame(5001, uint16(i), bytes.Repeat([]byte{byte(i)}, payload)))
			}
			buf := make([]byte, VnetHdrLen+EthHeaderLen+maxCoalescedLen)
			b.ReportAllocs()
			for b.Loop() {
				n, seg := udpRun(frames)
				buildCoalesced(buf, frames[:n], seg)
			}
			b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "datagrams/s")
		})
	}
}

// TestIntegrationVXLANFlowPortTaken: when another socket holds a flow's
// source port, that flow's copies go out through the raw socket, one
// packet each, and still arrive.
func TestIntegrationVXLANFlowPortTaken(t *testing.T) {
	ns := newTestNS(t)
	a, b := listenPairOpts(t, ns, "vxlan", Options{Batch: 64})
	v := NewVXLAN(testVNI, DefaultVXLANPort)
	f := testFrame(300, 1001)
	port := FlowPort(f)
	var holder *net.UDPConn
	ns.do(t, func() (err error) {
		holder, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(underlayA, port)))
		return err
	})
	defer holder.Close()
	var msgs []Message
	for range 10 {
		msgs = append(msgs, Message{Buf: v.Encap(withHeadroom(f), len(f)), Addr: underlayB})
	}
	before := loTx(t, ns)
	var failed int
	ns.do(t, func() (err error) {
		failed, err = a.WriteBatch(msgs)
		return err
	})
	if failed != 0 {
		t.Fatalf("%d copies failed", failed)
	}
	got := readN(t, b, len(msgs))
	packets := loTx(t, ns) - before
	t.Logf("port %d taken: %d copies left as %d packets", port, len(msgs), packets)
	if packets != uint64(len(msgs)) {
		t.Errorf("%d packets for %d copies: the flow was not sent raw", packets, len(msgs))
	}
	checkDelivered(t, v, got, underlayA, func() [][]byte {
		var fs [][]byte
		for range msgs {
			fs = append(fs, f)
		}
		return fs
	}())
}
