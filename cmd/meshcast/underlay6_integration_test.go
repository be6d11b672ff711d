package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// TestIntegrationUnderlay6 runs three daemons whose underlay is IPv6 only
// (fd00:198:18::K/64, no IPv4 address on the underlay), for GRE and VXLAN,
// and checks: the TAP MTU is the underlay's 1500 minus the IPv6 overhead
// (58 and 70 bytes), and a frame of that size crosses unfragmented;
// multicast delivery of 1000 datagrams; unicast across the overlay; and
// that a fourth host outside the inventory, sending GRE and VXLAN over
// IPv6, gets nothing into a TAP and is counted as not_peer.
func TestIntegrationUnderlay6(t *testing.T) {
	for _, variant := range []string{"gre", "vxlan", "vxlan-offload-off"} {
		t.Run(variant, func(t *testing.T) { testUnderlay6(t, variant) })
	}
}

func testUnderlay6(t *testing.T, variant string) {
	encap, extra := variant, []string(nil)
	if e, ok := strings.CutSuffix(variant, "-offload-off"); ok {
		encap, extra = e, []string{"--offload", "off"}
	}
	nt := nstest.NewNetWith(t, 4, nstest.Options{Underlay: nstest.UnderlayIPv6})
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	nodes := nt.Nodes()[:3]
	outsider := nt.Node(4)
	var inv strings.Builder
	for i, n := range nodes {
		fmt.Fprintf(&inv, "%s demo,198.19.0.%d/24\n", n.Underlay6, i+1)
	}
	path := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(path, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	daemons := make([]*nstest.Proc, 3)
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	for i, n := range nodes {
		// Without --local: the daemon finds its IPv6 line itself.
		args := []string{"run", "--peers", path, "--encap", encap, "--control", socks[i]}
		daemons[i] = n.Start(t, bin, append(args, extra...)...)
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	wantMTU := map[string]int{"gre": 1500 - 58, "vxlan": 1500 - 70}[encap]
	if l, err := nodes[0].Link("mcbr-demo"); err != nil || l.Attrs().MTU != wantMTU {
		t.Fatalf("TAP MTU: link %v err %v, want %d", l, err, wantMTU)
	}
	st := fetchState(t, socks[0])
	if st.Local != nodes[0].Underlay6.String() || st.Local6 != "" || st.MTU != wantMTU || len(st.Peers) != 2 {
		t.Fatalf("status: local %q local6 %q mtu %d, %d peers; want %v, no local6, %d, 2 peers", st.Local, st.Local6, st.MTU, len(st.Peers), nodes[0].Underlay6, wantMTU)
	}
	for _, p := range st.Peers {
		if a, err := netip.ParseAddr(p.Underlay); err != nil || !a.Is6() {
			t.Errorf("peer underlay %q is not IPv6", p.Underlay)
		}
	}
	t.Logf("%s: TAP MTU %d over an IPv6 underlay of MTU 1500", variant, wantMTU)

	// A frame of the TAP's full MTU crosses without fragmentation: the
	// path MTU is right (ping's 28 bytes of IPv4 and ICMP headers).
	if out, err := nodes[0].Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", strconv.Itoa(wantMTU-28), "198.19.0.2"); err != nil {
		t.Errorf("a full-MTU ping across the overlay: %v\n%s", err, out)
	}

	// Multicast: nodes 2 and 3 join 239.1.2.3; node 1 sends 1000.
	const count = 1000
	var recvs []*nstest.Proc
	for _, n := range nodes[1:] {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
			"--count", strconv.Itoa(count), "--timeout", "30s")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on %s: %v\n%s", n, err, p.Output())
		}
		recvs = append(recvs, p)
	}
	waitMembers(t, nodes[0], bin, socks[0], "239.1.2.3", 2)
	if out, err := nodes[0].Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for i, p := range recvs {
		p.Wait(40 * time.Second)
		got := received(t, p.Output())
		t.Logf("%s over IPv6: node %d received %d/%d multicast datagrams", variant, i+2, got, count)
		if got*1000 < count*999 {
			t.Errorf("node %d received %d/%d (< 99.9%%)", i+2, got, count)
		}
	}

	// Unicast across the overlay.
	if out, err := nodes[0].Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.3"); err != nil {
		t.Errorf("ping across the overlay: %v\n%s", err, out)
	}
	urecv := nodes[1].Start(t, probe, "recv", "--port", "5001", "--count", "200", "--timeout", "20s")
	if err := urecv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := nodes[2].Exec(t, probe, "send", "--to", "198.19.0.2:5001", "--count", "200", "--rate", "2000"); err != nil {
		t.Fatalf("unicast send: %v\n%s", err, out)
	}
	urecv.Wait(25 * time.Second)
	if got := received(t, urecv.Output()); got < 200 {
		t.Errorf("unicast: received %d/200", got)
	}

	// A host outside the inventory sends GRE and VXLAN over IPv6.
	tapBefore := nodes[0].MustCounters(t, "mcbr-demo")
	notPeer0 := notPeerDrops(t, socks[0])
	const forged = 300
	if err := outsider.Do(func() error {
		return sendForged6(outsider.Underlay6, nodes[0].Underlay6, forged, defaultVNI("demo"), encap)
	}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); notPeerDrops(t, socks[0])-notPeer0 < forged; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 counted %d not_peer drops of %d forged packets after 5s", notPeerDrops(t, socks[0])-notPeer0, forged)
		}
	}
	if d := nodes[0].MustCounters(t, "mcbr-demo").Sub(tapBefore); d.RxPackets > 10 {
		t.Errorf("TAP of node 1 received %d frames while the outsider sent %d", d.RxPackets, forged)
	}

	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v", i+1, code, err)
		}
	}
	dr := drops(daemons[0].Output())
	t.Logf("%s over IPv6: node 1 drops %v", variant, dr)
}

// sendForged6 sends n packets of the encapsulation with a broadcast inner
// frame from src to dst over IPv6, as a host outside the community would.
func sendForged6(src, dst netip.Addr, n int, vni uint32, encap string) error {
	inner := make([]byte, 60)
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0, 0, 0, 0, 4})
	binary.BigEndian.PutUint16(inner[12:14], 0x0806)
	var c net.Conn
	var pkt []byte
	var err error
	if encap == "gre" {
		c, err = net.DialIP("ip6:47", &net.IPAddr{IP: src.AsSlice()}, &net.IPAddr{IP: dst.AsSlice()})
		pkt = make([]byte, 4+len(inner))
		overlay.MarshalGRE(pkt, overlay.GREHeader{Proto: overlay.EtherTypeTEB})
		copy(pkt[4:], inner)
	} else {
		c, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, overlay.DefaultVXLANPort)))
		pkt = make([]byte, 8+len(inner))
		overlay.PutVXLAN(pkt, vni)
		copy(pkt[8:], inner)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.Write(pkt); err != nil {
			return fmt.Errorf("forged %s over IPv6: %w", encap, err)
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}
