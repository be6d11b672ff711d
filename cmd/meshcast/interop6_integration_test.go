package main

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// Interoperability over an IPv6 underlay (issue 18): meshcast's VXLAN over
// IPv6 against the Linux kernel's VXLAN device, and meshcast's GRE over IPv6
// against Open vSwitch's userspace ip6gre ports. In both, nodes 1 and 2 run
// meshcast and node 3 runs the other implementation; the underlay is IPv6
// only (node K is fd00:198:18::K/64) and the overlay is 198.19.0.K/24.

const (
	interop6Count = 1000 // datagrams per multicast stream
	// The TAP MTUs over a 1500-byte IPv6 underlay: 1500 minus 58 (GRE)
	// and 70 (VXLAN).
	interop6GREMTU   = nstest.UnderlayMTU - 58
	interop6VXLANMTU = nstest.UnderlayMTU - 70
	interop6KernelIf = "vx0" // node 3's kernel VXLAN device
)

// interop6Inventory is the inventory of a Net built with UnderlayIPv6:
// node K is fd00:198:18::K with overlay address 198.19.0.K/24.
func interop6Inventory(t *testing.T, nodes []*nstest.Node) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# underlay      COMMUNITY,OVERLAY-IP/PREFIX\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s  demo,198.19.0.%d/24\n", n.Underlay6, n.Index)
	}
	path := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// interop6Net builds the three nodes of an interop test on an IPv6-only
// underlay, checks for leaks, and returns the Net, the meshcast and probe
// binaries and the inventory.
func interop6Net(t *testing.T) (nt *nstest.Net, bin, probe, inv string) {
	t.Helper()
	nt = nstest.NewNetWith(t, 3, nstest.Options{Underlay: nstest.UnderlayIPv6})
	nstest.LeakCheck(t)
	bin, probe = binaries(t)
	return nt, bin, probe, interop6Inventory(t, nt.Nodes())
}

// interop6Stream starts receivers of group:port on rcvs (on the interface
// iface(n)), waits until they are ready and ready() (if not nil) returns,
// sends interop6Count datagrams of size bytes from sender out of
// senderIface, and checks that every receiver got at least 99.9% of them
// and no duplicate. Each count is logged as "interop LABEL: node K received
// N/1000".
func interop6Stream(t *testing.T, probe, label string, sender *nstest.Node, senderIface string,
	rcvs []*nstest.Node, iface func(*nstest.Node) string, group string, port, size int, ready func()) {
	t.Helper()
	var procs []*nstest.Proc
	for _, n := range rcvs {
		p := n.Start(t, probe, "recv", "--iface", iface(n), "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(interop6Count), "--timeout", "30s", "--linger", "500ms")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on node %d: %v\n%s", n.Index, err, p.Output())
		}
		procs = append(procs, p)
	}
	if ready != nil {
		ready()
	}
	start := time.Now()
	if out, err := sender.Exec(t, probe, "send", "--iface", senderIface, "--group", group, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(interop6Count), "--rate", "1000", "--size", strconv.Itoa(size)); err != nil {
		t.Fatalf("send from node %d: %v\n%s", sender.Index, err, out)
	}
	for i, p := range procs {
		p.Wait(40 * time.Second)
		got, dup := ovsProbeResult(t, p.Output())
		t.Logf("interop %s: node %d received %d/%d (%s, %d-byte datagrams from node %d, %d duplicates, %v)",
			label, rcvs[i].Index, got, interop6Count, group, size, sender.Index, dup, time.Since(start).Round(time.Millisecond))
		if got*1000 < interop6Count*999 {
			t.Errorf("interop %s: node %d received %d/%d (< 99.9%%)", label, rcvs[i].Index, got, interop6Count)
		}
		if dup > 0 {
			t.Errorf("interop %s: node %d received %d duplicates", label, rcvs[i].Index, dup)
		}
	}
}

// interop6WaitMember waits until the daemon behind sock on n lists every
// one of peers (underlay addresses) as a member of group.
func interop6WaitMember(t *testing.T, n *nstest.Node, bin, sock, group string, peers ...string) {
	t.Helper()
	var last []string
	start := time.Now()
	err := ovsWaitFor(memberWait, func() bool {
		last = nil
		for _, g := range statusJSON(t, n, bin, sock).Groups {
			if g.Group == group {
				last = g.Peers
			}
		}
		for _, p := range peers {
			if !slices.Contains(last, p) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("node %d did not learn %v as members of %s: %v (members %v)", n.Index, peers, group, err, last)
	}
	t.Logf("node %d listed %v as members of %s after %v", n.Index, peers, group, time.Since(start).Round(time.Millisecond))
}

// interop6Ping pings to from node from and fails the test if no reply
// comes back.
func interop6Ping(t *testing.T, label string, from *nstest.Node, to string) {
	t.Helper()
	out, err := from.Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", to)
	if err != nil {
		t.Errorf("interop %s: ping %s from node %d: %v", label, to, from.Index, err)
		return
	}
	t.Logf("interop %s: ping %s from node %d: %s", label, to, from.Index, ovsPingSummary(out))
}

// interop6StartMesh starts meshcast on nodes (node 1 first) with the
// inventory inv and the flags args, waits until each forwards, and checks
// node 1's status: its IPv6 underlay address, the TAP MTU mtu and two
// peers. It returns the daemons' control sockets and the daemons.
func interop6StartMesh(t *testing.T, bin, inv string, nodes []*nstest.Node, mtu int, args ...string) (map[*nstest.Node]string, map[*nstest.Node]*nstest.Proc) {
	t.Helper()
	socks := map[*nstest.Node]string{}
	daemons := map[*nstest.Node]*nstest.Proc{}
	for _, n := range nodes {
		socks[n] = ctlPath(t)
		daemons[n] = n.Start(t, bin, append([]string{"run", "--peers", inv, "--control", socks[n]}, args...)...)
	}
	for _, n := range nodes {
		if err := daemons[n].WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", n.Index, err, daemons[n].Output())
		}
	}
	n1 := nodes[0]
	if st := fetchState(t, socks[n1]); st.MTU != mtu || st.Local != n1.Underlay6.String() || len(st.Peers) != 2 {
		t.Fatalf("node 1 status: local %s, MTU %d, %d peers; want %s, %d, 2", st.Local, st.MTU, len(st.Peers), n1.Underlay6, mtu)
	}
	return socks, daemons
}

// interop6FullMTUPing checks that a frame of the full MTU crosses
// unfragmented both ways: from other (node 3) to meshcast node n2, and
// back.
func interop6FullMTUPing(t *testing.T, label string, mtu int, n2, other *nstest.Node) {
	t.Helper()
	for _, c := range []struct {
		from *nstest.Node
		to   string
	}{{other, "198.19.0.2"}, {n2, "198.19.0.3"}} {
		if out, err := c.from.Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do",
			"-s", strconv.Itoa(mtu-28), c.to); err != nil {
			t.Errorf("interop %s: a full-MTU ping from node %d to %s: %v\n%s", label, c.from.Index, c.to, err, out)
		}
	}
}

// interop6IfaceOf returns the interface of the overlay of each node:
// other's iface, the meshcast nodes' mcbr-demo.
func interop6IfaceOf(other *nstest.Node, iface string) func(*nstest.Node) string {
	return func(n *nstest.Node) string {
		if n == other {
			return iface
		}
		return "mcbr-demo"
	}
}

// interop6DecodeReasons are the decoders' drop reasons: none may count
// what the other implementation sent.
var interop6DecodeReasons = []string{"truncated", "ip_header", "ip_options", "ip_fragment", "ip_proto",
	"gre_version", "gre_flags", "gre_proto", "gre_checksum", "gre_key",
	"vxlan_flags", "vxlan_reserved", "vxlan_vni", "inner_short", "inner_too_big"}

// interop6Stop stops the meshcast daemons, checks that they exit cleanly,
// and that no decoder dropped anything.
func interop6Stop(t *testing.T, label string, nodes []*nstest.Node, daemons map[*nstest.Node]*nstest.Proc) {
	t.Helper()
	for _, n := range nodes {
		d := daemons[n]
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v", n.Index, code, err)
		}
		dr := drops(d.Output())
		t.Logf("interop %s: node %d drops %v", label, n.Index, dr)
		for _, reason := range interop6DecodeReasons {
			if dr[reason] > 0 {
				t.Errorf("interop %s: node %d dropped %d packets as %s", label, n.Index, dr[reason], reason)
			}
		}
	}
}

var (
	interop6PushRE    = regexp.MustCompile(`tnl_push\(tnl_port\(\d+\),header\((.*?)\),out_port`)
	interop6PacketsRE = regexp.MustCompile(`packets:(\d+)`)
)

var snmp6RE = regexp.MustCompile(`(?m)^(\S+)\s+(\d+)$`)

// interop6SNMP returns the IPv6 MIB counters of n's namespace
// (/proc/net/snmp6, which shows the reader's namespace).
func interop6SNMP(t *testing.T, n *nstest.Node) map[string]uint64 {
	t.Helper()
	out, err := n.Exec(t, "cat", "/proc/net/snmp6")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, f := range snmp6RE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(f[2], 10, 64)
		m[f[1]] = v
	}
	return m
}

// TestIntegrationInterop6KernelVXLAN shows that meshcast's VXLAN over IPv6
// interoperates with the Linux kernel's: nodes 1 and 2 run meshcast with
// --encap vxlan over an IPv6-only underlay; node 3 has one kernel VXLAN
// device of the community's VNI over IPv6 with head-end replication (an
// all-zero FDB entry per meshcast node, no learning) and the overlay
// address 198.19.0.3/24 on it. Unicast (ping) crosses both ways, and
// multicast of full-size datagrams flows both ways without loss or
// duplicates. The kernel's VXLAN over IPv6 refuses datagrams with a zero
// UDP checksum (udp6zerocsumrx is off by default) and its UDP layer drops
// those whose checksum is wrong, so every delivery to node 3 shows that
// meshcast's UDP checksums over IPv6 are right; node 3's Udp6InCsumErrors
// must stay 0. Both of meshcast's VXLAN send paths run: with segmentation
// offload (flow sockets with UDP_SEGMENT) and without (the raw IPv6 socket
// whose checksum the kernel fills in through IPV6_CHECKSUM).
func TestIntegrationInterop6KernelVXLAN(t *testing.T) {
	for _, variant := range []string{"offload", "offload-off"} {
		t.Run(variant, func(t *testing.T) { testInterop6KernelVXLAN(t, variant) })
	}
}

func testInterop6KernelVXLAN(t *testing.T, variant string) {
	began := time.Now()
	nt, bin, probe, inv := interop6Net(t)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	meshNodes := []*nstest.Node{n1, n2}
	vni := defaultVNI("demo")

	// Node 3: the kernel's VXLAN over IPv6, one device, head-end
	// replication to each meshcast node.
	if out, err := n3.Exec(t, "ip", "link", "add", interop6KernelIf, "type", "vxlan", "id", strconv.Itoa(int(vni)),
		"local", n3.Underlay6.String(), "dev", nstest.NodeLink, "dstport", "4789", "nolearning"); err != nil {
		if strings.Contains(out, "Unknown device type") || strings.Contains(out, "not supported") {
			nstest.SkipOrFail(t, "this kernel cannot make a VXLAN device over IPv6: %v", err)
		}
		t.Fatal(err)
	}
	for _, n := range meshNodes {
		ovsExec(t, n3, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", interop6KernelIf, "dst", n.Underlay6.String())
	}
	ovsExec(t, n3, "ip", "addr", "add", "198.19.0.3/24", "dev", interop6KernelIf)
	ovsExec(t, n3, "ip", "link", "set", interop6KernelIf, "up")
	// The kernel leaves the inner UDP checksum of what it sends through
	// vx0 unfinished (CHECKSUM_PARTIAL) and veth never finishes it: with
	// transmit offload off on the underlay veth the kernel finishes it
	// before the frame leaves, as a NIC would.
	ovsExec(t, n3, "ethtool", "-K", nstest.NodeLink, "tx", "off")
	vx, err := n3.Link(interop6KernelIf)
	if err != nil {
		t.Fatal(err)
	}
	if vx.Attrs().MTU != interop6VXLANMTU {
		t.Fatalf("%s: MTU %d, want %d (1500 minus VXLAN over IPv6's 70 bytes)", interop6KernelIf, vx.Attrs().MTU, interop6VXLANMTU)
	}
	t.Logf("node 3: %s", strings.Join(strings.Fields(ovsExec(t, n3, "ip", "-d", "link", "show", interop6KernelIf)), " "))
	t.Logf("node 3 fdb: %s", strings.Join(strings.Fields(ovsExec(t, n3, "bridge", "fdb", "show", "dev", interop6KernelIf)), " "))

	// Nodes 1 and 2: meshcast.
	args := []string{"--encap", "vxlan"}
	if variant == "offload-off" {
		args = append(args, "--offload", "off")
	}
	socks, daemons := interop6StartMesh(t, bin, inv, meshNodes, interop6VXLANMTU, args...)
	csum0 := interop6SNMP(t, n3)

	// Unicast both ways: ARP floods through head-end replication one way
	// and meshcast's broadcast flooding the other.
	label := "vxlan6 (" + variant + ")"
	interop6Ping(t, label+" kernel->meshcast", n3, "198.19.0.1")
	interop6Ping(t, label+" kernel->meshcast", n3, "198.19.0.2")
	interop6Ping(t, label+" meshcast->kernel", n1, "198.19.0.3")
	interop6Ping(t, label+" meshcast->kernel", n2, "198.19.0.3")
	interop6FullMTUPing(t, label, interop6VXLANMTU, n2, n3)

	ifaceOf := interop6IfaceOf(n3, interop6KernelIf)
	size := interop6VXLANMTU - 20 - 8 // the largest datagram of one frame

	// Multicast from the kernel node: it replicates to both meshcast nodes.
	interop6Stream(t, probe, label+" kernel->meshcast", n3, interop6KernelIf, meshNodes, ifaceOf,
		"239.1.2.3", 5000, size, nil)
	// Multicast from meshcast node 1 to the kernel node and node 2. Node 1
	// sends a registered group only to member peers: wait until the kernel
	// node's unsolicited IGMP reports (it never hears a query: meshcast
	// does not forward its queries) and node 2's have reached it.
	interop6Stream(t, probe, label+" meshcast->kernel", n1, "mcbr-demo", []*nstest.Node{n3, n2}, ifaceOf,
		"239.1.2.4", 5001, size, func() {
			interop6WaitMember(t, n1, bin, socks[n1], "239.1.2.4", n2.Underlay6.String(), n3.Underlay6.String())
		})

	// The kernel found no bad UDP checksum in what meshcast sent.
	csum := interop6SNMP(t, n3)
	for _, k := range []string{"Udp6InCsumErrors", "Udp6InErrors"} {
		if d := csum[k] - csum0[k]; d != 0 {
			t.Errorf("interop %s: node 3 counted %d %s while meshcast sent to it", label, d, k)
		}
	}
	t.Logf("interop %s: node 3 Udp6InDatagrams +%d, Udp6InCsumErrors +%d, Udp6InErrors +%d", label,
		csum["Udp6InDatagrams"]-csum0["Udp6InDatagrams"], csum["Udp6InCsumErrors"]-csum0["Udp6InCsumErrors"],
		csum["Udp6InErrors"]-csum0["Udp6InErrors"])
	if c, err := n3.Counters(interop6KernelIf); err == nil {
		t.Logf("interop %s: node 3 %s counters %+v", label, interop6KernelIf, c)
	}
	// The check has teeth: node 3's kernel takes VXLAN over IPv6 with a
	// right checksum, and refuses it with a zero or a wrong one.
	interop6ChecksumControl(t, label, n1, n3)

	interop6Stop(t, label, meshNodes, daemons)
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// interop6ChecksumControl sends, from src outside its daemon (a raw IPv6
// socket for protocol UDP, whose checksum the kernel leaves as written),
// VXLAN datagrams of the community's VNI to the kernel VXLAN node dst:
// some with the right UDP checksum, some with zero, some with a wrong one.
// It checks that dst's VXLAN device took the right ones and that its
// kernel dropped each of the others as a checksum error, so that a
// delivery from meshcast does show that meshcast's checksum was right.
func interop6ChecksumControl(t *testing.T, label string, src, dst *nstest.Node) {
	t.Helper()
	const each = 20
	before, snmp0 := dst.MustCounters(t, interop6KernelIf), interop6SNMP(t, dst)
	err := src.Do(func() error {
		c, err := net.DialIP("ip6:17", &net.IPAddr{IP: src.Underlay6.AsSlice()}, &net.IPAddr{IP: dst.Underlay6.AsSlice()})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, kind := range []string{"right", "zero", "wrong"} {
			for i := 0; i < each; i++ {
				pkt := interop6VXLANDatagram(src.Underlay6, dst.Underlay6, defaultVNI("demo"), kind)
				if _, err := c.Write(pkt); err != nil {
					return fmt.Errorf("a VXLAN datagram with a %s checksum: %w", kind, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rx, csumErrs uint64
	deadline := time.Now().Add(5 * time.Second)
	for {
		rx = dst.MustCounters(t, interop6KernelIf).Sub(before).RxPackets
		csumErrs = interop6SNMP(t, dst)["Udp6InCsumErrors"] - snmp0["Udp6InCsumErrors"]
		if (rx >= each && csumErrs >= 2*each) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("interop %s: control: node 3's %s took %d frames (%d sent with a right checksum); Udp6InCsumErrors +%d for %d with a zero or a wrong one",
		label, interop6KernelIf, rx, each, csumErrs, 2*each)
	if rx < each || csumErrs != 2*each {
		t.Errorf("interop %s: control: node 3 took %d datagrams (want at least %d) and counted %d checksum errors (want %d): "+
			"the kernel does not check VXLAN over IPv6 checksums as assumed", label, rx, each, csumErrs, 2*each)
	}
}

// interop6VXLANDatagram returns a UDP datagram (header included) from
// src to dst, port 4789, with a VXLAN header of vni and a broadcast inner
// frame of a local experimental EtherType, whose checksum is right, zero
// or wrong (kind).
func interop6VXLANDatagram(src, dst netip.Addr, vni uint32, kind string) []byte {
	pkt := make([]byte, 8+8+60)
	binary.BigEndian.PutUint16(pkt[0:2], 40000)
	binary.BigEndian.PutUint16(pkt[2:4], overlay.DefaultVXLANPort)
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(pkt)))
	overlay.PutVXLAN(pkt[8:16], vni)
	inner := pkt[16:]
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0x19, 0, 0, 0, 0x99})
	binary.BigEndian.PutUint16(inner[12:14], 0x88b5) // IEEE 802 local experimental
	sum := interop6UDPChecksum(src, dst, pkt)
	switch kind {
	case "zero":
		sum = 0
	case "wrong":
		if sum++; sum == 0 || sum == 0xffff {
			sum = 1
		}
	}
	binary.BigEndian.PutUint16(pkt[6:8], sum)
	return pkt
}

// interop6UDPChecksum returns the UDP checksum over IPv6 (RFC 8200 section
// 8.1) of datagram, whose checksum field is zero.
func interop6UDPChecksum(src, dst netip.Addr, datagram []byte) uint16 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	s16, d16 := src.As16(), dst.As16()
	add(s16[:])
	add(d16[:])
	s += uint32(len(datagram)) + 17
	add(datagram)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	sum := ^uint16(s)
	if sum == 0 {
		sum = 0xffff
	}
	return sum
}

// TestIntegrationInterop6OVSGRE shows that meshcast's GRE over IPv6 is the
// frames of Linux ip6gretap by interoperating with Open vSwitch's userspace
// ip6gre tunnel ports, as TestIntegrationOVSGRE does over IPv4: nodes 1 and
// 2 run meshcast with --encap gre over an IPv6-only underlay; node 3 is an
// OVS userspace switch (datapath_type netdev) laid out as there:
//
//	br-phy  (netdev): eth0 and the internal port br-phy, which holds the
//	                  underlay address fd00:198:18::3/64 and eth0's MAC;
//	                  OVS terminates GRE sent to that address
//	br-int  (netdev): ovl0, an internal port with 198.19.0.3/24 and the
//	                  TAP's MTU (1500 minus GRE over IPv6's 58 bytes, 62
//	                  with a key), and gre1, gre2 of type ip6gre to
//	                  fd00:198:18::1 and ::2, both protected (split horizon)
//
// OVS finds the route to the meshcast nodes in the kernel's IPv6 routing
// table of its namespace (the connected route of br-phy's address), and
// their MACs by neighbour discovery on br-phy. Unicast crosses both ways,
// multicast of full-size datagrams flows both ways without loss or
// duplicates, OVS's datapath pushed and popped IPv6 GRE headers itself, and
// neither meshcast node drops anything OVS sent as malformed. The keyed
// variant runs meshcast with --gre-key and the ports with options:key.
func TestIntegrationInterop6OVSGRE(t *testing.T) {
	nstest.RequireRoot(t)
	tools := requireOVS(t)
	for _, c := range []struct {
		name string
		key  int // -1: no key
	}{{"nokey", -1}, {"key", 0x2a}} {
		t.Run(c.name, func(t *testing.T) { testInterop6OVSGRE(t, tools, c.key) })
	}
}

func testInterop6OVSGRE(t *testing.T, tools map[string]string, key int) {
	began := time.Now()
	nt, bin, probe, inv := interop6Net(t)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	meshNodes := []*nstest.Node{n1, n2}
	mtu, label := interop6GREMTU, "gre6 ovs"
	if key >= 0 {
		mtu -= 4
		label = fmt.Sprintf("gre6 ovs key %d", key)
	}

	// Node 3: Open vSwitch.
	ovsStart := time.Now()
	o := startOVS(t, n3, tools)
	t.Cleanup(func() {
		if t.Failed() {
			o.diagnose(t)
			for _, args := range [][]string{{"ip", "-6", "route"}, {"ip", "-6", "neigh"}, {"ip", "addr"}} {
				out, err := n3.Exec(t, args...)
				t.Logf("node 3: %s (%v):\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	ovsLayOut(t, nt, o, meshNodes, ovsLayout{
		underlay: fmt.Sprintf("%s/%d", n3.Underlay6, nstest.UnderlayPrefix6.Bits()),
		v6:       true, portType: "ip6gre", portName: "ip6gre", mtu: mtu, key: key,
		local:  n3.Underlay6.String(),
		remote: func(n *nstest.Node) string { return n.Underlay6.String() },
	}, ovsStart)

	// Nodes 1 and 2: meshcast.
	args := []string{"--encap", "gre"}
	if key >= 0 {
		args = append(args, "--gre-key", strconv.Itoa(key))
	}
	socks, daemons := interop6StartMesh(t, bin, inv, meshNodes, mtu, args...)

	// Unicast both ways. This also has OVS resolve the meshcast nodes'
	// tunnel endpoints (neighbour discovery on br-phy) before the streams.
	interop6Ping(t, label+" meshcast->ovs", n1, "198.19.0.3")
	interop6Ping(t, label+" ovs->meshcast", n3, "198.19.0.1")
	interop6Ping(t, label+" ovs->meshcast", n3, "198.19.0.2")
	interop6FullMTUPing(t, label, mtu, n2, n3)

	ifaceOf := interop6IfaceOf(n3, ovsPort)
	size := mtu - 20 - 8 // the largest datagram of one frame
	// Multicast from meshcast node 1 to node 3 (OVS) and node 2: node 1
	// sends a registered group only to member peers, so wait until both
	// receivers' reports have reached it.
	interop6Stream(t, probe, label+" meshcast->ovs", n1, "mcbr-demo", []*nstest.Node{n3, n2}, ifaceOf,
		"239.1.2.3", 5000, size, func() {
			interop6WaitMember(t, n1, bin, socks[n1], "239.1.2.3", n2.Underlay6.String(), n3.Underlay6.String())
		})
	// Multicast from node 3: OVS floods it to both ip6gre ports.
	interop6Stream(t, probe, label+" ovs->meshcast", n3, ovsPort, meshNodes, ifaceOf,
		"239.1.2.4", 5001, size, nil)

	// The streams went through OVS's own IPv6 GRE: its datapath pushed an
	// IPv6 GRE header toward each meshcast node and popped the ones that
	// came from them.
	interop6OVSFlows(t, o, label, meshNodes, key)

	interop6Stop(t, label, meshNodes, daemons)
	t.Logf("nft GRE drops at node 3's IP input:\n%s", ovsExec(t, n3, tools["nft"], "list", "chain", "inet", "ovs", "input"))
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// interop6OVSFlows checks the userspace datapath's flows of switch o (dumped
// right after the streams, within the flows' 10 s idle time): a
// tnl_push of an IPv6 GRE header (with key, if key >= 0) toward each of
// nodes, and a tnl_pop. It logs them and the tunnel neighbours OVS
// resolved.
func interop6OVSFlows(t *testing.T, o *ovsSwitch, label string, nodes []*nstest.Node, key int) {
	t.Helper()
	out, err := o.appctl(t, "ovs-vswitchd", "dpctl/dump-flows")
	if err != nil {
		t.Fatalf("ovs-appctl dpctl/dump-flows: %v\n%s", err, out)
	}
	var push, pop []string
	headers := map[string]bool{}
	var popped uint64
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "tnl_push(") {
			push = append(push, line)
			for _, m := range interop6PushRE.FindAllStringSubmatch(line, -1) {
				headers[m[1]] = true
			}
		}
		if strings.Contains(line, "tnl_pop(") {
			pop = append(pop, line)
			if m := interop6PacketsRE.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				popped += n
			}
		}
	}
	t.Logf("interop %s: OVS datapath: %d flows push tunnel headers:\n  %s\n%d flows pop them (%d packets)", label,
		len(push), strings.Join(slices.Sorted(maps.Keys(headers)), "\n  "), len(pop), popped)
	if len(pop) == 0 {
		t.Errorf("interop %s: no datapath flow pops a tunnel header", label)
	}
	for _, n := range nodes {
		found := false
		for _, line := range push {
			_, hdr, _ := strings.Cut(line, "tnl_push(")
			if strings.Contains(hdr, "ipv6(src="+o.node.Underlay6.String()+",dst="+n.Underlay6.String()) &&
				strings.Contains(hdr, "gre((") &&
				(key < 0 || strings.Contains(hdr, fmt.Sprintf("key=0x%x", key))) {
				found = true
			}
		}
		if !found {
			t.Errorf("interop %s: no datapath flow pushes an IPv6 GRE header toward %s", label, n.Underlay6)
		}
	}
	if out, err := o.appctl(t, "ovs-vswitchd", "tnl/neigh/show"); err == nil {
		t.Logf("interop %s: OVS tunnel neighbours:\n%s", label, out)
	}
}
