package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	xipv4 "golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/internal/nstest"
)

func TestPairVNI(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	b := netip.MustParseAddr("198.18.0.2")
	c := netip.MustParseAddr("198.18.0.3")
	if PairVNI(7, a, b) != PairVNI(7, b, a) {
		t.Errorf("PairVNI is not symmetric: %d, %d", PairVNI(7, a, b), PairVNI(7, b, a))
	}
	if PairVNI(7, a, b) == PairVNI(7, a, c) || PairVNI(7, a, b) == PairVNI(7, b, c) {
		t.Errorf("PairVNI gives two pairs of one node the same VNI")
	}
	if PairVNI(7, a, b) == PairVNI(8, a, b) {
		t.Errorf("PairVNI ignores the community VNI")
	}
	// In range, and rarely colliding, over the pairs of a /24.
	seen := map[uint32]int{}
	collisions := 0
	for i := 1; i < 255; i++ {
		for j := i + 1; j < 255; j++ {
			x := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			y := netip.AddrFrom4([4]byte{10, 0, 0, byte(j)})
			for _, vni := range []uint32{0, MaxVNI} {
				v := PairVNI(vni, x, y)
				if v < 1 || v > MaxVNI {
					t.Fatalf("PairVNI(%d, %v, %v) = %d, out of 1..%d", vni, x, y, v, MaxVNI)
				}
				if seen[v] > 0 {
					collisions++
				}
				seen[v]++
			}
		}
	}
	// 64262 values in 2^24-1: about 123 collisions are expected by chance.
	if collisions > 300 {
		t.Errorf("%d collisions among %d pair VNIs", collisions, len(seen))
	}
}

func TestKernelPortName(t *testing.T) {
	peer := netip.MustParseAddr("198.18.0.2")
	if got := kernelPortName("vxlan", peer); got != "mcvc6120002" {
		t.Errorf("VXLAN port %q", got)
	}
	if got := kernelPortName("gre", peer); got != "mcgc6120002" {
		t.Errorf("gretap port %q", got)
	}
	if got := hreName(0xabcdef); got != "mcvhabcdef" {
		t.Errorf("hre device %q", got)
	}
	if err := ValidIfName(kernelPortName("vxlan", netip.MustParseAddr("255.255.255.255"))); err != nil {
		t.Error(err)
	}
}

// TestOpenKernelRefusesBadConfig needs no privileges: OpenKernel checks its
// configuration before it touches the system.
func TestOpenKernelRefusesBadConfig(t *testing.T) {
	good := KernelConfig{
		Bridge:  "mcbr-demo",
		Overlay: netip.MustParsePrefix("198.19.0.1/24"),
		Local:   netip.MustParseAddr("198.18.0.1"),
		Encap:   "vxlan",
		VNI:     42,
	}
	tests := []struct {
		name    string
		change  func(*KernelConfig)
		wantErr string
	}{
		{"long bridge name", func(c *KernelConfig) { c.Bridge = "mcbr-community12" }, "at most 15"},
		{"no overlay", func(c *KernelConfig) { c.Overlay = netip.Prefix{} }, "not IPv4"},
		{"IPv6 overlay", func(c *KernelConfig) { c.Overlay = netip.MustParsePrefix("2001:db8::1/64") }, "not IPv4"},
		{"IPv4 overlay6", func(c *KernelConfig) { c.Overlay6 = netip.MustParsePrefix("198.19.0.1/24") }, "not IPv6"},
		{"no local", func(c *KernelConfig) { c.Local = netip.Addr{} }, "underlay address"},
		{"bad MAC", func(c *KernelConfig) { c.MAC = net.HardwareAddr{1, 2} }, "MAC"},
		{"tiny MTU", func(c *KernelConfig) { c.MTU = 60 }, "MTU 60"},
		{"encap", func(c *KernelConfig) { c.Encap = "ipip" }, "use gre or vxlan"},
		{"VNI", func(c *KernelConfig) { c.VNI = 1 << 24 }, "VNI 16777216"},
		{"mode", func(c *KernelConfig) { c.VXLANMode = "flood" }, `"pair" or "hre"`},
		{"query interval", func(c *KernelConfig) { c.QueryInterval = 500 * time.Millisecond }, "minimum of 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			k, err := OpenKernel(cfg)
			if err == nil {
				k.Close()
				t.Fatal("OpenKernel succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenKernel = %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// The integration tests below build an underlay with nstest and run a kernel
// dataplane in each node's namespace. Node K has the underlay address
// 198.18.0.K (fd00:198:18::K on an IPv6-only underlay, see underlayOf) and
// the overlay address 198.19.0.K/24.

const (
	kernelTestBridge = "mcbr-ktest"
	kernelTestVNI    = 4242
	kernelTestMTU    = nstest.UnderlayMTU - 50
	// kernelTestMTU6 is the overlay MTU over an IPv6 underlay: VXLAN
	// costs 70 bytes there.
	kernelTestMTU6   = nstest.UnderlayMTU - 70
	kernelTestPort   = 5000
	kernelPayloadLen = 1000
	// kernelUnicastPort is the port of the unicast test streams: a
	// socket joined to a group is bound to the wildcard address and
	// kernelTestPort.
	kernelUnicastPort = kernelTestPort + 1
	// kernelQueryInterval is the querier's interval in the tests: the
	// bridge's minimum, so that snooping takes hold quickly.
	kernelQueryInterval = time.Second
)

var (
	kernelGroup  = netip.MustParseAddr("239.1.2.3")
	kernelGroup2 = netip.MustParseAddr("239.1.2.4")
	kernelMagic  = []byte("meshcast kernel dataplane test ")
)

func kernelOverlay(n *nstest.Node) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(n.Index)}), 24)
}

// underlayOf returns n's underlay address: IPv4 where n has one, else IPv6.
func underlayOf(n *nstest.Node) netip.Addr {
	if n.Underlay.IsValid() {
		return n.Underlay
	}
	return n.Underlay6
}

// kernelMTUOf is the overlay MTU of a VXLAN kernel dataplane in n, from
// the underlay MTU and the family of underlayOf(n).
func kernelMTUOf(n *nstest.Node) int {
	if underlayOf(n).Is6() {
		return kernelTestMTU6
	}
	return kernelTestMTU
}

func kernelTestConfig(n *nstest.Node, mode string) KernelConfig {
	return KernelConfig{
		Bridge:        kernelTestBridge,
		Overlay:       kernelOverlay(n),
		Local:         underlayOf(n),
		UnderlayIf:    nstest.NodeLink,
		Encap:         "vxlan",
		VNI:           kernelTestVNI,
		VXLANMode:     mode,
		QueryInterval: kernelQueryInterval,
	}
}

// openKernelIn opens the kernel dataplane in n's namespace; it is closed in
// the test's cleanup, before the namespace goes.
func openKernelIn(t *testing.T, n *nstest.Node, cfg KernelConfig) *Kernel {
	t.Helper()
	var k *Kernel
	err := n.Do(func() error {
		var err error
		k, err = OpenKernel(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("%s: OpenKernel: %v", n, err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("%s: Close: %v", n, err)
		}
	})
	return k
}

// peersOf returns every node of nodes as a peer.
func peersOf(nodes ...*nstest.Node) []KernelPeer {
	var peers []KernelPeer
	for _, n := range nodes {
		peers = append(peers, KernelPeer{Underlay: underlayOf(n), Overlay: kernelOverlay(n), ID: n.Name})
	}
	return peers
}

// meshKernels opens a kernel dataplane in every node, each with all the
// others as peers.
func meshKernels(t *testing.T, nodes []*nstest.Node, mode string, change ...func(n *nstest.Node, cfg *KernelConfig)) []*Kernel {
	t.Helper()
	ks := make([]*Kernel, len(nodes))
	for i, n := range nodes {
		cfg := kernelTestConfig(n, mode)
		for _, c := range change {
			c(n, &cfg)
		}
		ks[i] = openKernelIn(t, n, cfg)
	}
	for i, n := range nodes {
		others := slices.Delete(slices.Clone(nodes), i, i+1)
		added, removed, err := ks[i].SetPeers(peersOf(nodes...)) // itself is ignored
		if err != nil {
			t.Fatalf("%s: SetPeers: %v", n, err)
		}
		if len(added) != len(others) || len(removed) != 0 {
			t.Fatalf("%s: SetPeers added %v and removed %v, want %d added", n, added, removed, len(others))
		}
	}
	return ks
}

// mcastRx is a UDP socket in a node joined to a group on an interface; it
// counts the test packets it receives.
type mcastRx struct {
	c     net.PacketConn
	count atomic.Int64
	done  chan struct{}
}

func joinGroup(t *testing.T, n *nstest.Node, ifname string, group netip.Addr) *mcastRx {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Bound to the group, so it gets that group only.
		c, err = net.ListenPacket("udp4", netip.AddrPortFrom(group, kernelTestPort).String())
		if err != nil {
			return err
		}
		_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
		if err := xipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: group.AsSlice()}); err != nil {
			c.Close()
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: join %v on %s: %v", n, group, ifname, err)
	}
	return startRx(t, c)
}

// listenUnicast returns a UDP socket in n bound to addr and
// kernelUnicastPort; it counts the test packets it receives, as joinGroup's
// does.
func listenUnicast(t *testing.T, n *nstest.Node, addr netip.Addr) *mcastRx {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket("udp4", netip.AddrPortFrom(addr, kernelUnicastPort).String())
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen on %v: %v", n, addr, err)
	}
	return startRx(t, c)
}

// startRx counts the test packets that c receives until the test ends.
func startRx(t *testing.T, c net.PacketConn) *mcastRx {
	r := &mcastRx{c: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 2048)
		for {
			m, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:m], kernelMagic) {
				r.count.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-r.done
	})
	return r
}

// waitCount waits until r has counted at least want packets, then a little
// longer for duplicates, and returns the count.
func (r *mcastRx) waitCount(want int64) int64 {
	deadline := time.Now().Add(ioTimeout)
	for r.count.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return r.count.Load()
}

// mcastTx is a UDP socket in a node that sends multicast out of an
// interface, to port (kernelTestPort unless changed).
type mcastTx struct {
	c    net.PacketConn
	port int
}

func newSender(t *testing.T, n *nstest.Node, ifname string) *mcastTx {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if c, err = net.ListenPacket("udp4", "0.0.0.0:0"); err != nil {
			return err
		}
		p := xipv4.NewPacketConn(c)
		if err := p.SetMulticastInterface(ifi); err != nil {
			c.Close()
			return err
		}
		_ = p.SetMulticastLoopback(false)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: multicast sender on %s: %v", n, ifname, err)
	}
	t.Cleanup(func() { c.Close() })
	return &mcastTx{c: c, port: kernelTestPort}
}

// send sends count test packets of kernelPayloadLen bytes to group (or a
// unicast address) and s.port, one every gap.
func (s *mcastTx) send(t *testing.T, group netip.Addr, count int, gap time.Duration) {
	t.Helper()
	payload := make([]byte, kernelPayloadLen)
	copy(payload, kernelMagic)
	dst := &net.UDPAddr{IP: group.AsSlice(), Port: s.port}
	for i := range count {
		if _, err := s.c.WriteTo(payload, dst); err != nil {
			t.Fatalf("send %d to %v: %v", i, group, err)
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
}

// warmUp sends to group until r has received a packet, so that the tunnels
// are up, ARP is done and the membership has reached the sender's bridge;
// then it resets r's count.
func warmUp(t *testing.T, s *mcastTx, group netip.Addr, r *mcastRx) {
	t.Helper()
	deadline := time.Now().Add(3 * ioTimeout)
	for r.count.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no packet to %v arrived within %v", group, 3*ioTimeout)
		}
		s.send(t, group, 1, 50*time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	r.count.Store(0)
}

// counters reads the counters of ifname in n.
func counters(t *testing.T, n *nstest.Node, ifname string) nstest.Counters {
	t.Helper()
	c, err := n.Counters(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustExec runs a command in n and fails the test if it fails.
func mustExec(t *testing.T, n *nstest.Node, args ...string) string {
	t.Helper()
	out, err := n.Exec(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkBridge checks the bridge in n as the kernel shows it.
func checkBridge(t *testing.T, n *nstest.Node) {
	t.Helper()
	link, err := n.Link(kernelTestBridge)
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	if link.Type() != "bridge" || a.MTU != kernelMTUOf(n) || a.Flags&net.FlagUp == 0 ||
		!bytes.Equal(a.HardwareAddr, MACFor(kernelOverlay(n).Addr())) {
		t.Errorf("%s: bridge %s: type %s MTU %d flags %v MAC %v; want an up bridge, MTU %d, MAC %v",
			n, kernelTestBridge, link.Type(), a.MTU, a.Flags, a.HardwareAddr, kernelMTUOf(n), MACFor(kernelOverlay(n).Addr()))
	}
	if out := mustExec(t, n, "ip", "-o", "addr", "show", "dev", kernelTestBridge); !strings.Contains(out, "inet "+kernelOverlay(n).String()) || strings.Contains(out, "inet6") {
		t.Errorf("%s: bridge addresses:\n%s\nwant %v and no IPv6", n, out, kernelOverlay(n))
	}
	out := mustExec(t, n, "ip", "-d", "link", "show", "dev", kernelTestBridge)
	for _, want := range []string{"mcast_snooping 1", "mcast_querier 1", "mcast_query_use_ifaddr 1", "mcast_igmp_version 3", "mcast_mld_version 2", "mcast_query_interval 100"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: bridge details lack %q:\n%s", n, want, out)
		}
	}
}

// checkPort checks that name is a port of the bridge in n with the flags the
// kernel dataplane sets, and returns its ifindex.
func checkPort(t *testing.T, n *nstest.Node, name string) int {
	t.Helper()
	br, err := n.Link(kernelTestBridge)
	if err != nil {
		t.Fatal(err)
	}
	link, err := n.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	if a.MasterIndex != br.Attrs().Index || a.MTU != kernelMTUOf(n) || a.Flags&net.FlagUp == 0 {
		t.Errorf("%s: %s: master %d MTU %d flags %v; want master %d, MTU %d, up", n, name, a.MasterIndex, a.MTU, a.Flags, br.Attrs().Index, kernelMTUOf(n))
	}
	out := mustExec(t, n, "bridge", "-d", "link", "show", "dev", name)
	for _, want := range []string{"master " + kernelTestBridge, "isolated on", "mcast_router 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: bridge -d link show dev %s lacks %q:\n%s", n, name, want, out)
		}
	}
	return a.Index
}

// kernelLinks returns the names of the links in n that the kernel
// dataplane could have made.
func kernelLinks(t *testing.T, n *nstest.Node) []string {
	t.Helper()
	out := mustExec(t, n, "ip", "-o", "link", "show")
	return regexp.MustCompile(`(?m)^\d+: (mc(?:br|v|g)[^:@]*)`).FindAllString(out, -1)
}

// TestIntegrationKernelPairTwoNodes checks the devices of VXLAN pair mode
// and that multicast flows both ways between two nodes.
func TestIntegrationKernelPairTwoNodes(t *testing.T) { testKernelPairTwoNodes(t, nstest.UnderlayIPv4) }

func testKernelPairTwoNodes(t *testing.T, family nstest.Family) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: family})
	n1, n2 := nt.Node(1), nt.Node(2)
	ks := meshKernels(t, []*nstest.Node{n1, n2}, VXLANModePair)

	for i, n := range []*nstest.Node{n1, n2} {
		other := []*nstest.Node{n2, n1}[i]
		checkBridge(t, n)
		name := kernelPortName("vxlan", underlayOf(other))
		checkPort(t, n, name)
		link, err := n.Link(name)
		if err != nil {
			t.Fatal(err)
		}
		vx, ok := link.(*netlink.Vxlan)
		if want := PairVNI(kernelTestVNI, underlayOf(n1), underlayOf(n2)); !ok || vx.VxlanId != int(want) || vx.Learning ||
			!vx.Group.Equal(underlayOf(other).AsSlice()) || !vx.SrcAddr.Equal(underlayOf(n).AsSlice()) || vx.Port != DefaultVXLANPort {
			t.Errorf("%s: %s is %#v; want VXLAN %d from %v to %v port %d, learning off", n, name, link, want, underlayOf(n), underlayOf(other), DefaultVXLANPort)
		}
		checkVXLANUnderlay(t, n, name, underlayOf(other))
		if ports := ks[i].Ports(); len(ports) != 1 || ports[0].Port != name || ports[0].Underlay != underlayOf(other) {
			t.Errorf("%s: Ports() = %+v, want one port %s to %v", n, ports, name, underlayOf(other))
		}
		if ks[i].Bridge() != kernelTestBridge || ks[i].MTU() != kernelMTUOf(n) {
			t.Errorf("%s: Bridge() %q MTU() %d, want MTU %d", n, ks[i].Bridge(), ks[i].MTU(), kernelMTUOf(n))
		}
	}

	const count = 100
	for _, dir := range [][2]*nstest.Node{{n1, n2}, {n2, n1}} {
		from, to := dir[0], dir[1]
		rx := joinGroup(t, to, kernelTestBridge, kernelGroup)
		tx := newSender(t, from, kernelTestBridge)
		warmUp(t, tx, kernelGroup, rx)
		before := ks[from.Index-1].Ports()[0]
		tx.send(t, kernelGroup, count, time.Millisecond)
		if got := rx.waitCount(count); got != count {
			t.Errorf("%s -> %s: received %d of %d packets", from, to, got, count)
		}
		after := ks[from.Index-1].Ports()[0]
		if sent := after.TxPackets - before.TxPackets; sent < count {
			t.Errorf("%s: port %s counted %d packets sent, want at least %d", from, after.Port, sent, count)
		}
	}
	for _, dir := range [][2]*nstest.Node{{n1, n2}, {n2, n1}} {
		from, to := dir[0], dir[1]
		before := ks[from.Index-1].Ports()[0]
		checkUnicast(t, from, to, count)
		after := ks[from.Index-1].Ports()[0]
		if sent := after.TxPackets - before.TxPackets; sent < count {
			t.Errorf("%s: port %s counted %d packets sent during the unicast stream, want at least %d", from, after.Port, sent, count)
		}
		checkOverlayMTU(t, from, to)
	}
}

// TestIntegrationKernelPairSnooping checks pruning and split horizon in a
// mesh of three nodes: node 1 sends, node 2 is a member, node 3 is not.
func TestIntegrationKernelPairSnooping(t *testing.T) { testKernelPairSnooping(t, nstest.UnderlayIPv4) }

func testKernelPairSnooping(t *testing.T, family nstest.Family) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: family})
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	nodes := []*nstest.Node{n1, n2, n3}
	start := time.Now()
	ks := meshKernels(t, nodes, VXLANModePair)
	for _, n := range nodes {
		checkBridge(t, n)
		for _, o := range nodes {
			if o != n {
				checkPort(t, n, kernelPortName("vxlan", underlayOf(o)))
			}
		}
	}
	rx2 := joinGroup(t, n2, kernelTestBridge, kernelGroup)
	tx := newSender(t, n1, kernelTestBridge)
	warmUp(t, tx, kernelGroup, rx2)

	// Until its querier has been active for the response interval, node
	// 1's bridge floods the group to node 3 too. Measure how long that
	// lasts: a window in which node 3's underlay receives no data packet
	// (control packets are far smaller than kernelPayloadLen).
	var snooped time.Duration
	for {
		before := counters(t, n3, nstest.NodeLink)
		tx.send(t, kernelGroup, 10, 20*time.Millisecond)
		if got := counters(t, n3, nstest.NodeLink).Sub(before); got.RxBytes < kernelPayloadLen {
			snooped = time.Since(start)
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("node 1 still floods %v to node 3 after %v", kernelGroup, time.Since(start))
		}
	}
	t.Logf("node 1 stopped sending %v to non-member node 3 %v after the bridges were made (query interval %v)",
		kernelGroup, snooped.Round(10*time.Millisecond), kernelQueryInterval)

	// Pruning: a stream to node 2 leaves node 3 alone. Split horizon:
	// node 2 sends none of it on.
	const count = 200
	rx2.count.Store(0)
	b2, b3 := counters(t, n2, nstest.NodeLink), counters(t, n3, nstest.NodeLink)
	p1 := ks[0].Ports()
	tx.send(t, kernelGroup, count, time.Millisecond)
	if got := rx2.waitCount(count); got != count {
		t.Errorf("node 2 received %d of %d packets", got, count)
	}
	d2, d3 := counters(t, n2, nstest.NodeLink).Sub(b2), counters(t, n3, nstest.NodeLink).Sub(b3)
	t.Logf("during %d packets from node 1: node 2 eth0 tx %d packets, node 3 eth0 rx %d packets (%d bytes)", count, d2.TxPackets, d3.RxPackets, d3.RxBytes)
	if d3.RxPackets > count/20 || d3.RxBytes > count*kernelPayloadLen/20 {
		t.Errorf("non-member node 3 received %d packets (%d bytes) on its underlay during a stream of %d", d3.RxPackets, d3.RxBytes, count)
	}
	if d2.TxPackets > count/20 {
		t.Errorf("node 2 sent %d packets on its underlay while receiving a stream of %d", d2.TxPackets, count)
	}
	for i, p := range ks[0].Ports() {
		sent := p.TxPackets - p1[i].TxPackets
		switch p.Underlay {
		case underlayOf(n2):
			if sent < count {
				t.Errorf("node 1: port %s sent %d packets, want at least %d", p.Port, sent, count)
			}
		case underlayOf(n3):
			if sent > count/20 {
				t.Errorf("node 1: port %s to the non-member sent %d packets", p.Port, sent)
			}
		}
	}

	// Split horizon proper: with node 3 a member too, node 2's table lists
	// node 3's port, yet node 2 does not relay node 1's frames to it, and
	// node 3 gets each packet once. Then the control: without isolation
	// on node 2, node 3 does get node 1's stream twice.
	rx3 := joinGroup(t, n3, kernelTestBridge, kernelGroup2)
	rx2b := joinGroup(t, n2, kernelTestBridge, kernelGroup2)
	warmUp(t, tx, kernelGroup2, rx3)
	warmUp(t, tx, kernelGroup2, rx2b)
	time.Sleep(kernelQueryInterval) // let every bridge hear both reports
	rx3.count.Store(0)
	rx2b.count.Store(0)
	b2 = counters(t, n2, nstest.NodeLink)
	tx.send(t, kernelGroup2, count, time.Millisecond)
	got2, got3 := rx2b.waitCount(count), rx3.waitCount(count)
	d2 = counters(t, n2, nstest.NodeLink).Sub(b2)
	if got2 != count || got3 != count {
		t.Errorf("members received %d and %d of %d packets, want each exactly once", got2, got3, count)
	}
	if d2.TxPackets > count/20 {
		t.Errorf("node 2 relayed: it sent %d packets on its underlay during a stream of %d to members 2 and 3", d2.TxPackets, count)
	}
	for _, o := range []*nstest.Node{n1, n3} {
		mustExec(t, n2, "bridge", "link", "set", "dev", kernelPortName("vxlan", underlayOf(o)), "isolated", "off")
	}
	rx3.count.Store(0)
	b2 = counters(t, n2, nstest.NodeLink)
	tx.send(t, kernelGroup2, count, time.Millisecond)
	got3 = rx3.waitCount(2 * count)
	d2 = counters(t, n2, nstest.NodeLink).Sub(b2)
	t.Logf("control, node 2 not isolated: node 3 received %d of %d packets, node 2 eth0 tx %d", got3, count, d2.TxPackets)
	if got3 < 2*count*9/10 || d2.TxPackets < count*9/10 {
		t.Errorf("without isolation node 2 should relay node 1's stream: node 3 got %d of %d packets, node 2 sent %d; the split-horizon check proves nothing", got3, count, d2.TxPackets)
	}
}

// TestIntegrationKernelHRE checks head-end replication: one VXLAN device
// with one all-zero FDB entry per peer.
func TestIntegrationKernelHRE(t *testing.T) { testKernelHRE(t, nstest.UnderlayIPv4) }

func testKernelHRE(t *testing.T, family nstest.Family) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: family})
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	nodes := []*nstest.Node{n1, n2, n3}
	ks := meshKernels(t, nodes, VXLANModeHRE)
	dev := hreName(kernelTestVNI)
	fdb := func(n *nstest.Node) []string {
		out := mustExec(t, n, "bridge", "fdb", "show", "dev", dev)
		return regexp.MustCompile(`(?m)^00:00:00:00:00:00 dst (\S+)`).FindAllString(out, -1)
	}
	entry := func(peer *nstest.Node) string { return "00:00:00:00:00:00 dst " + underlayOf(peer).String() }
	var index1 int
	for i, n := range nodes {
		checkBridge(t, n)
		index := checkPort(t, n, dev)
		if i == 0 {
			index1 = index
		}
		if links := kernelLinks(t, n); len(links) != 2 {
			t.Errorf("%s: links %q, want the bridge and %s only", n, links, dev)
		}
		link, err := n.Link(dev)
		if err != nil {
			t.Fatal(err)
		}
		if vx, ok := link.(*netlink.Vxlan); !ok || vx.VxlanId != kernelTestVNI || vx.Learning || vx.Port != DefaultVXLANPort ||
			len(vx.Group) != 0 && !vx.Group.IsUnspecified() {
			t.Errorf("%s: %s is %#v; want VXLAN %d, learning off, no remote", n, dev, link, kernelTestVNI)
		}
		checkVXLANUnderlay(t, n, dev, netip.Addr{})
		var want []string
		for _, o := range nodes {
			if o != n {
				want = append(want, entry(o))
			}
		}
		if got := fdb(n); !slices.Equal(got, want) {
			t.Errorf("%s: all-zero FDB entries %q, want %q", n, got, want)
		}
		if ports := ks[i].Ports(); len(ports) != 1 || ports[0].Port != dev || ports[0].Underlay.IsValid() {
			t.Errorf("%s: Ports() = %+v, want one aggregate entry for %s", n, ports, dev)
		}
	}

	const count = 100
	rx := joinGroup(t, n2, kernelTestBridge, kernelGroup)
	tx := newSender(t, n1, kernelTestBridge)
	warmUp(t, tx, kernelGroup, rx)
	before := ks[0].Ports()[0]
	tx.send(t, kernelGroup, count, time.Millisecond)
	if got := rx.waitCount(count); got != count {
		t.Errorf("node 2 received %d of %d packets", got, count)
	}
	// One device, no per-peer pruning: every copy counts on it.
	if sent := ks[0].Ports()[0].TxPackets - before.TxPackets; sent < count {
		t.Errorf("node 1: %s counted %d packets sent, want at least %d", dev, sent, count)
	}
	// Unicast, both ways, and the MTU, between nodes 1 and 3.
	for _, dir := range [][2]*nstest.Node{{n1, n3}, {n3, n1}} {
		checkUnicast(t, dir[0], dir[1], count)
		checkOverlayMTU(t, dir[0], dir[1])
	}

	added, removed, err := ks[0].SetPeers(peersOf(n2))
	if err != nil || len(added) != 0 || !slices.Equal(removed, []netip.Addr{underlayOf(n3)}) {
		t.Fatalf("SetPeers without node 3: added %v removed %v, %v", added, removed, err)
	}
	if got, want := fdb(n1), []string{entry(n2)}; !slices.Equal(got, want) {
		t.Errorf("node 1: all-zero FDB entries %q after removing node 3, want %q", got, want)
	}
	if l, err := n1.Link(dev); err != nil || l.Attrs().Index != index1 {
		t.Errorf("node 1: %s changed (%v), want it untouched", dev, err)
	}
	rx.count.Store(0)
	tx.send(t, kernelGroup, count, time.Millisecond)
	if got := rx.waitCount(count); got != count {
		t.Errorf("after removing node 3, node 2 received %d of %d packets", got, count)
	}
	added, removed, err = ks[0].SetPeers(peersOf(n2, n3))
	if err != nil || !slices.Equal(added, []netip.Addr{underlayOf(n3)}) || len(removed) != 0 {
		t.Fatalf("SetPeers with node 3 again: added %v removed %v, %v", added, removed, err)
	}
	if got, want := fdb(n1), []string{entry(n2), entry(n3)}; !slices.Equal(got, want) {
		t.Errorf("node 1: all-zero FDB entries %q, want %q", got, want)
	}
}

// TestIntegrationKernelSetPeersLive checks that adding and removing peers
// leaves the other ports alone.
func TestIntegrationKernelSetPeersLive(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 3)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	k1 := openKernelIn(t, n1, kernelTestConfig(n1, ""))
	k3 := openKernelIn(t, n3, kernelTestConfig(n3, VXLANModePair))
	if _, _, err := k3.SetPeers(peersOf(n1)); err != nil {
		t.Fatal(err)
	}
	port2, port3 := kernelPortName("vxlan", n2.Underlay), kernelPortName("vxlan", n3.Underlay)

	if added, removed, err := k1.SetPeers(nil); err != nil || added != nil || removed != nil {
		t.Fatalf("SetPeers(nil) on no peers: added %v removed %v, %v", added, removed, err)
	}
	added, removed, err := k1.SetPeers(peersOf(n2))
	if err != nil || !slices.Equal(added, []netip.Addr{n2.Underlay}) || removed != nil {
		t.Fatalf("SetPeers(2): added %v removed %v, %v", added, removed, err)
	}
	index2 := checkPort(t, n1, port2)

	added, removed, err = k1.SetPeers(peersOf(n3, n2))
	if err != nil || !slices.Equal(added, []netip.Addr{n3.Underlay}) || removed != nil {
		t.Fatalf("SetPeers(2, 3): added %v removed %v, %v", added, removed, err)
	}
	index3 := checkPort(t, n1, port3)
	if l, err := n1.Link(port2); err != nil || l.Attrs().Index != index2 {
		t.Errorf("%s changed when node 3 was added (%v)", port2, err)
	}

	// The same set again changes nothing; an invalid peer changes nothing.
	if added, removed, err := k1.SetPeers(peersOf(n2, n3)); err != nil || added != nil || removed != nil {
		t.Errorf("SetPeers with the same peers: added %v removed %v, %v", added, removed, err)
	}
	if _, _, err := k1.SetPeers(append(peersOf(n2), KernelPeer{ID: "broken"})); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("SetPeers with an invalid peer: %v, want an error naming it", err)
	}
	if l, err := n1.Link(port3); err != nil || l.Attrs().Index != index3 {
		t.Errorf("%s changed (%v)", port3, err)
	}

	added, removed, err = k1.SetPeers(peersOf(n3))
	if err != nil || added != nil || !slices.Equal(removed, []netip.Addr{n2.Underlay}) {
		t.Fatalf("SetPeers(3): added %v removed %v, %v", added, removed, err)
	}
	if _, err := n1.Link(port2); err == nil {
		t.Errorf("%s still exists after node 2 was removed", port2)
	}
	if l, err := n1.Link(port3); err != nil || l.Attrs().Index != index3 {
		t.Errorf("%s changed when node 2 was removed (%v)", port3, err)
	}
	if ports := k1.Ports(); len(ports) != 1 || ports[0].Port != port3 {
		t.Errorf("Ports() = %+v, want %s only", ports, port3)
	}

	// The remaining tunnel carries traffic.
	rx := joinGroup(t, n3, kernelTestBridge, kernelGroup)
	tx := newSender(t, n1, kernelTestBridge)
	warmUp(t, tx, kernelGroup, rx)
	const count = 50
	tx.send(t, kernelGroup, count, time.Millisecond)
	if got := rx.waitCount(count); got != count {
		t.Errorf("node 3 received %d of %d packets", got, count)
	}
}

// TestIntegrationKernelGretap checks GRE mode: where the kernel has no
// gretap, every entry point says so plainly and leaves nothing behind.
func TestIntegrationKernelGretap(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	n1, n2 := nt.Node(1), nt.Node(2)
	var supported error
	if err := n1.Do(func() error { supported = gretapSupported(); return nil }); err != nil {
		t.Fatal(err)
	}
	if supported != nil && !errors.Is(supported, ErrNoGretap) {
		t.Fatalf("gretapSupported() = %v, want nil or ErrNoGretap", supported)
	}
	if supported != nil && (supported.Error() != "this kernel has no gretap (ip_gre module)" || strings.Contains(supported.Error(), "\n")) {
		t.Errorf("gretapSupported() = %q", supported)
	}
	t.Logf("gretapSupported() = %v", supported)
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("the gretap probe left %q", links)
	}

	cfg := kernelTestConfig(n1, "")
	cfg.Encap, cfg.GREKey, cfg.HasGREKey = "gre", 7, true
	cfg.MTU = nstest.UnderlayMTU - 42
	if supported != nil {
		err := n1.Do(func() error {
			k, err := OpenKernel(cfg)
			if err == nil {
				k.Close()
			}
			return err
		})
		if !errors.Is(err, ErrNoGretap) || err.Error() != ErrNoGretap.Error() {
			t.Errorf("OpenKernel in GRE mode = %v, want %v", err, ErrNoGretap)
		}
		if links := kernelLinks(t, n1); len(links) != 0 {
			t.Errorf("the failed OpenKernel left %q", links)
		}
		// Past the probe (as if the module went away), SetPeers fails as
		// plainly and leaves no port.
		var k *Kernel
		err = n1.Do(func() (err error) {
			k, err = openKernel(cfg, false)
			return err
		})
		if err != nil {
			t.Fatalf("openKernel without the gretap probe: %v", err)
		}
		defer k.Close()
		added, _, err := k.SetPeers(peersOf(n2))
		if !errors.Is(err, ErrNoGretap) || len(added) != 0 {
			t.Errorf("SetPeers in GRE mode: added %v, %v; want %v", added, err, ErrNoGretap)
		}
		if links := kernelLinks(t, n1); len(links) != 1 {
			t.Errorf("links %q after the failed SetPeers, want the bridge only", links)
		}
		if err := k.Close(); err != nil {
			t.Error(err)
		}
		if links := kernelLinks(t, n1); len(links) != 0 {
			t.Errorf("Close left %q", links)
		}
		return
	}

	// A kernel with gretap: the port is a keyed gretap, isolated.
	k := openKernelIn(t, n1, cfg)
	if _, _, err := k.SetPeers(peersOf(n2)); err != nil {
		t.Fatal(err)
	}
	name := kernelPortName("gre", n2.Underlay)
	link, err := n1.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := link.(*netlink.Gretap); !ok || g.IKey != 7 || g.OKey != 7 || !g.Remote.Equal(n2.Underlay.AsSlice()) {
		t.Errorf("%s is %#v, want gretap to %v with key 7", name, link, n2.Underlay)
	}
	out := mustExec(t, n1, "bridge", "-d", "link", "show", "dev", name)
	if !strings.Contains(out, "isolated on") {
		t.Errorf("%s is not isolated:\n%s", name, out)
	}
}

// TestIntegrationKernelClose checks that OpenKernel refuses a taken name
// without harming its owner, and that Close removes everything, once.
func TestIntegrationKernelClose(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 3)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	for _, mode := range []string{VXLANModePair, VXLANModeHRE} {
		var k *Kernel
		if err := n1.Do(func() (err error) { k, err = OpenKernel(kernelTestConfig(n1, mode)); return err }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.SetPeers(peersOf(n2, n3)); err != nil {
			t.Fatal(err)
		}
		want := 3
		if mode == VXLANModeHRE {
			want = 2
		}
		if links := kernelLinks(t, n1); len(links) != want {
			t.Errorf("%s: links %q, want %d", mode, links, want)
		}

		// A second dataplane with the same bridge name is refused, and
		// the first keeps its bridge.
		err := n1.Do(func() error {
			k2, err := OpenKernel(kernelTestConfig(n1, mode))
			if err == nil {
				k2.Close()
			}
			return err
		})
		if !errors.Is(err, ErrInterfaceExists) || !strings.Contains(err.Error(), kernelTestBridge) {
			t.Errorf("%s: second OpenKernel: %v, want it to say %s already exists", mode, err, kernelTestBridge)
		}
		if _, err := n1.Link(kernelTestBridge); err != nil {
			t.Errorf("%s: the refused OpenKernel took the bridge: %v", mode, err)
		}

		if err := k.Close(); err != nil {
			t.Errorf("%s: Close: %v", mode, err)
		}
		if links := kernelLinks(t, n1); len(links) != 0 {
			t.Errorf("%s: Close left %q", mode, links)
		}
		if err := k.Close(); err != nil {
			t.Errorf("%s: second Close: %v", mode, err)
		}
		if _, _, err := k.SetPeers(peersOf(n2)); err == nil {
			t.Errorf("%s: SetPeers after Close succeeded", mode)
		}
		if ports := k.Ports(); ports != nil {
			t.Errorf("%s: Ports after Close = %v", mode, ports)
		}
	}
	// An underlay address that is not here is refused before anything is made.
	cfg := kernelTestConfig(n1, "")
	cfg.Local = netip.MustParseAddr("198.18.9.9")
	err := n1.Do(func() error {
		k, err := OpenKernel(cfg)
		if err == nil {
			k.Close()
		}
		return err
	})
	if ne, ok := errors.AsType[*UnderlayNotAssignedError](err); !ok || ne.Addr != cfg.Local || !strings.Contains(err.Error(), "198.18.9.9") || strings.Contains(err.Error(), "--") {
		t.Errorf("OpenKernel with a foreign Local: %v, want an *UnderlayNotAssignedError naming 198.18.9.9", err)
	}
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("links %q left", links)
	}
}

// gretapSupported reports nil if this kernel can create gretap devices, and
// ErrNoGretap if it has none, probing in the calling thread's network
// namespace as the kernel dataplane does (so it needs CAP_NET_ADMIN).
func gretapSupported() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("probing for gretap: %w", err)
	}
	defer h.Close()
	return probeGretap(h)
}

// TestSetPeersPairVNICollision needs no privileges: SetPeers checks the
// pair VNIs before it touches the system.
func TestSetPeersPairVNICollision(t *testing.T) {
	cfg, err := KernelConfig{
		Bridge:  kernelTestBridge,
		Overlay: netip.MustParsePrefix("198.19.0.254/24"),
		Local:   netip.MustParseAddr("198.18.255.254"),
		Encap:   "vxlan",
		VNI:     kernelTestVNI,
	}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	// Two peers of 198.18.255.254 whose tunnels get the same VNI: among
	// the addresses of 198.18.0.0/16, 88 pairs collide.
	seen := map[uint32]netip.Addr{}
	var a, b netip.Addr
	for i := 1; i < 1<<16-2 && !b.IsValid(); i++ {
		p := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		vni := PairVNI(kernelTestVNI, cfg.Local, p)
		if q, ok := seen[vni]; ok {
			a, b = q, p
		}
		seen[vni] = p
	}
	if !b.IsValid() {
		t.Fatal("no two peers in 198.18.0.0/16 share a pair VNI")
	}
	k := &Kernel{cfg: cfg, peers: map[netip.Addr]kernelPort{}}
	added, removed, err := k.SetPeers([]KernelPeer{{Underlay: b}, {Underlay: a}})
	pe, ok := errors.AsType[*PairVNIError](err)
	if !ok || added != nil || removed != nil {
		t.Fatalf("SetPeers with colliding peers: added %v removed %v, %v; want a *PairVNIError", added, removed, err)
	}
	want := PairVNIError{Community: kernelTestVNI, Peers: [2]netip.Addr{a, b}, VNI: PairVNI(kernelTestVNI, cfg.Local, a)}
	if *pe != want {
		t.Errorf("error %+v, want %+v", *pe, want)
	}
	for _, s := range []string{a.String(), b.String(), fmt.Sprint(want.VNI), "pair mode"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "--") {
		t.Errorf("error %q names a command-line flag", err)
	}
}

// TestIntegrationKernelIPv6 checks the kernel dataplane with IPv6 overlay
// addresses: the bridge holds the address and a link-local one, snoops
// MLDv2, and ping6 crosses the overlay; a node adopting the bridge keeps
// the address.
func TestIntegrationKernelIPv6(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	n1, n2 := nt.Node(1), nt.Node(2)
	overlay6 := func(n *nstest.Node) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x19, 15: byte(n.Index)}), 64)
	}
	meshKernels(t, []*nstest.Node{n1, n2}, VXLANModePair, func(n *nstest.Node, cfg *KernelConfig) { cfg.Overlay6 = overlay6(n) })
	for _, n := range []*nstest.Node{n1, n2} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out := mustExec(t, n, "ip", "-6", "-o", "addr", "show", "dev", kernelTestBridge)
			if strings.Contains(out, "inet6 "+overlay6(n).String()) && strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative") {
				break
			}
			if strings.Contains(out, "dadfailed") || time.Now().After(deadline) {
				t.Fatalf("%s: bridge IPv6 addresses:\n%s", n, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out := mustExec(t, n, "ip", "-d", "link", "show", "dev", kernelTestBridge); !strings.Contains(out, "mcast_mld_version 2") {
			t.Errorf("%s: bridge details lack mcast_mld_version 2:\n%s", n, out)
		}
	}
	if out, err := n1.Exec(t, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", overlay6(n2).Addr().String()); err != nil {
		t.Fatalf("ping6 across the kernel dataplane: %v\n%s", err, out)
	}
}
