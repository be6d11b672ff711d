package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

var (
	buildOnce             sync.Once
	buildErr              error
	binDir                string
	meshcastBin, probeBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// raceDaemon reports whether the daemons of the integration tests run
// under the race detector: MESHCAST_TEST_RACE=1 (as in
// `MESHCAST_TEST_RACE=1 make test`, whose race pass then runs these tests
// too). Node.Start's cleanup fails a test whose daemon reported a data
// race.
func raceDaemon() bool { return os.Getenv("MESHCAST_TEST_RACE") == "1" }

// binaries builds meshcast and the multicast probe once per test binary,
// into a directory that outlives every test. With raceDaemon, meshcast is
// built with -race, which needs cgo (see TestIntegrationCapabilities).
func binaries(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "meshcast-bin-"); buildErr != nil {
			return
		}
		meshcastBin = filepath.Join(binDir, "meshcast")
		probeBin = filepath.Join(binDir, "mcastprobe")
		if raceDaemon() {
			buildErr = buildRace("github.com/meshcast/meshcast/cmd/meshcast", meshcastBin)
		} else {
			buildErr = nstest.Build("github.com/meshcast/meshcast/cmd/meshcast", meshcastBin)
		}
		if buildErr == nil {
			buildErr = nstest.Build("github.com/meshcast/meshcast/internal/cmd/mcastprobe", probeBin)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return meshcastBin, probeBin
}

// buildRace builds the main package pkg with the race detector into out.
func buildRace(pkg, out string) error {
	cmd := exec.Command(nstest.GoTool(), "build", "-race", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // -race needs cgo
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -race %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// ctlPath returns a control socket path of its own: the test namespaces
// share one filesystem, and one socket is one daemon.
func ctlPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "ctl.sock")
}

const demoInventory = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX
198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
198.18.0.3      demo,198.19.0.3/24
`

var receivedRE = regexp.MustCompile(`received (\d+)/(\d+)`)

func received(t *testing.T, out string) int {
	t.Helper()
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no result line in probe output:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// drops parses the "drops" line the daemon logs when it stops.
func drops(out string) map[string]int {
	m := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "msg=drops") {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if n, err := strconv.Atoi(v); ok && err == nil {
				m[k] = n
			}
		}
	}
	return m
}

// TestIntegrationMesh runs three real daemons in namespaces on a shared
// underlay, for GRE and VXLAN, and checks multicast delivery, unicast across
// the overlay, split horizon, and that a fourth host outside the inventory
// gets nothing into a TAP.
// The vxlan-offload-off case runs the fallback path: raw sends, no
// receive coalescing, one TAP write per frame.
func TestIntegrationMesh(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan", "vxlan-offload-off"} {
		t.Run(encap, func(t *testing.T) { testMesh(t, encap, nstest.UnderlayIPv4) })
	}
}

// testMesh is TestIntegrationMesh's run of variant over an underlay of
// family (IPv4, or IPv6 only: TestIntegrationUnderlay6).
func testMesh(t *testing.T, variant string, family nstest.Family) {
	encap, extra := variant, []string(nil)
	if e, ok := strings.CutSuffix(variant, "-offload-off"); ok {
		encap, extra = e, []string{"--offload", "off"}
	}
	v6 := family == nstest.UnderlayIPv6
	nt := nstest.NewNetWith(t, 4, nstest.Options{Underlay: family})
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	nodes := nt.Nodes()[:3]
	outsider := nt.Node(4)
	under := func(n *nstest.Node) netip.Addr {
		if v6 {
			return n.Underlay6
		}
		return n.Underlay
	}
	inventory := demoInventory
	if v6 {
		inventory = ""
		for i, n := range nodes {
			inventory += fmt.Sprintf("%s demo,198.19.0.%d/24\n", n.Underlay6, i+1)
		}
	}
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	daemons := make([]*nstest.Proc, 3)
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	for i, n := range nodes {
		args := []string{"run", "--peers", inv, "--encap", encap, "--control", socks[i]}
		if !v6 {
			// Over IPv6 the daemon finds its line itself.
			args = append(args, "--local", n.Underlay.String())
		}
		daemons[i] = n.Start(t, bin, append(args, extra...)...)
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	// The TAP has the expected MTU: underlay 1500 minus the overhead, 20
	// bytes more over IPv6; status says so, and names the node's and its
	// peers' addresses of the family.
	wantMTU := map[string]int{"gre": 1462, "vxlan": 1450}[encap]
	if v6 {
		wantMTU -= 20
	}
	if l, err := nodes[0].Link("mcbr-demo"); err != nil || l.Attrs().MTU != wantMTU {
		t.Fatalf("TAP MTU: link %v err %v, want %d", l, err, wantMTU)
	}
	st := fetchState(t, socks[0])
	if st.Local != under(nodes[0]).String() || st.Local6 != "" || st.MTU != wantMTU || len(st.Peers) != 2 {
		t.Fatalf("status: local %q local6 %q mtu %d, %d peers; want %v, no local6, %d, 2 peers", st.Local, st.Local6, st.MTU, len(st.Peers), under(nodes[0]), wantMTU)
	}
	for _, p := range st.Peers {
		if a, err := netip.ParseAddr(p.Underlay); err != nil || a.Is6() != v6 {
			t.Errorf("peer underlay %q is not of the underlay's family", p.Underlay)
		}
	}
	t.Logf("%s: TAP MTU %d over an underlay of MTU 1500 (IPv6 %v)", variant, wantMTU, v6)
	// A frame of the TAP's full MTU crosses without fragmentation: the
	// path MTU is right (ping's 28 bytes of IPv4 and ICMP headers).
	if out, err := nodes[0].Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", strconv.Itoa(wantMTU-28), "198.19.0.2"); err != nil {
		t.Errorf("a full-MTU ping across the overlay: %v\n%s", err, out)
	}

	// Multicast: nodes 2 and 3 join 239.1.2.3; node 1 sends 1000 datagrams.
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
	// Both joins reached the source before the stream starts.
	waitMembers(t, nodes[0], bin, socks[0], "239.1.2.3", 2)
	var before []nstest.Counters
	for _, n := range nodes {
		c, err := n.Counters(nstest.NodeLink)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, c)
	}
	if out, err := nodes[0].Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for i, p := range recvs {
		p.Wait(40 * time.Second)
		got := received(t, p.Output())
		t.Logf("%s (IPv6 underlay %v): node %d received %d/%d multicast datagrams", variant, v6, i+2, got, count)
		if got*1000 < count*999 {
			t.Errorf("node %d received %d/%d (< 99.9%%)", i+2, got, count)
		}
	}
	// Split horizon: nodes 2 and 3 received about 1000 copies each (in
	// bytes: with segmentation offload one underlay packet may carry
	// several) but sent almost nothing (IGMP reports and ARP of their
	// own), so they forwarded no frame of node 1 to each other.
	for i, n := range nodes[1:] {
		d := n.MustCounters(t, nstest.NodeLink).Sub(before[i+1])
		t.Logf("%s: node %d underlay rx %d packets %d bytes, tx %d packets %d bytes during the stream",
			encap, i+2, d.RxPackets, d.RxBytes, d.TxPackets, d.TxBytes)
		if d.RxBytes < uint64(count*200) || d.TxPackets > 50 || d.TxBytes > 50*1500 {
			t.Errorf("node %d: underlay rx %d B, tx %d packets %d B: a peer's frames were sent on to another peer",
				i+2, d.RxBytes, d.TxPackets, d.TxBytes)
		}
	}

	// Unicast across the overlay: ARP resolves through the mesh.
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

	// A host outside the inventory sends GRE and VXLAN at node 1: nothing
	// reaches the TAP, and the daemon counts the drops.
	tapBefore := nodes[0].MustCounters(t, "mcbr-demo")
	notPeer0 := notPeerDrops(t, socks[0])
	const forged = 300
	if err := outsider.Do(func() error {
		if v6 {
			return sendForged6(outsider.Underlay6, nodes[0].Underlay6, forged, defaultVNI("demo"), encap)
		}
		return sendForged(outsider.Underlay, nodes[0].Underlay, forged, defaultVNI("demo"))
	}); err != nil {
		t.Fatal(err)
	}
	// The TAP is read once the daemon has dropped the forged packets of
	// its encapsulation: every one of them has been handled then, and
	// none can still be on its way to the TAP.
	for deadline := time.Now().Add(5 * time.Second); notPeerDrops(t, socks[0])-notPeer0 < forged; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 counted %d not_peer drops of %d forged packets after 5s", notPeerDrops(t, socks[0])-notPeer0, forged)
		}
	}
	tapAfter := nodes[0].MustCounters(t, "mcbr-demo")
	if d := tapAfter.Sub(tapBefore); d.RxPackets > 10 {
		t.Errorf("TAP of node 1 received %d frames while the outsider sent %d", d.RxPackets, forged)
	}

	// SIGTERM: clean exit, TAP removed, drops reported.
	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		code, err := d.Wait(10 * time.Second)
		if err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v", i+1, code, err)
		}
		if _, err := nodes[i].Link("mcbr-demo"); err == nil {
			t.Errorf("node %d: TAP still present after SIGTERM", i+1)
		}
	}
	dr := drops(daemons[0].Output())
	t.Logf("%s: node 1 drops %v", encap, dr)
	if dr["not_peer"] < forged {
		t.Errorf("node 1 counted %d not_peer drops, want >= %d", dr["not_peer"], forged)
	}
}

// notPeerDrops returns the not_peer drops of the daemon behind sock:
// packets from a host that is no peer.
func notPeerDrops(t *testing.T, sock string) uint64 {
	t.Helper()
	return fetchState(t, sock).Drops["not_peer"]
}

// sendForged sends n GRE and n VXLAN packets with a broadcast inner frame
// from src to dst, as a host outside the community would.
func sendForged(src, dst netip.Addr, n int, vni uint32) error {
	inner := make([]byte, 60)
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0, 0, 0, 0, 4})
	binary.BigEndian.PutUint16(inner[12:14], 0x0806)
	gre, err := net.ListenPacket("ip4:47", src.String())
	if err != nil {
		return err
	}
	defer gre.Close()
	pkt := make([]byte, 4+len(inner))
	overlay.MarshalGRE(pkt, overlay.GREHeader{Proto: overlay.EtherTypeTEB})
	copy(pkt[4:], inner)
	vx, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, overlay.DefaultVXLANPort)))
	if err != nil {
		return err
	}
	defer vx.Close()
	vpkt := make([]byte, 8+len(inner))
	overlay.PutVXLAN(vpkt, vni)
	copy(vpkt[8:], inner)
	for i := 0; i < n; i++ {
		if _, err := gre.WriteTo(pkt, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("forged GRE: %w", err)
		}
		vx.Write(vpkt) // ICMP port unreachable may refuse later writes on a GRE node
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// TestIntegrationOverlay6 runs three nodes whose inventory lines carry
// IPv6 overlay addresses, for GRE and VXLAN: each TAP gets its address and
// a link-local one, duplicate address detection passes (split horizon
// never returns a node's own neighbour solicitations), and ping6 and a TCP
// connection work between overlay addresses across the mesh.
func TestIntegrationOverlay6(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testOverlay6(t, encap) })
	}
}

func testOverlay6(t *testing.T, encap string) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(inventory6), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	var socks []string
	for _, n := range nodes {
		socks = append(socks, ctlPath(t))
		d := n.Start(t, bin, "run", "--peers", inv, "--local", n.Underlay.String(), "--encap", encap, "--control", socks[len(socks)-1])
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
	}
	// Count, at each TAP's ingress, the neighbour solicitations to a
	// solicited-node group that the peers' daemons write into it (all of
	// ff02::/16 goes to every peer), for solicitedNodeCopies.
	nftOK := true
	if _, err := exec.LookPath("nft"); err != nil {
		nftOK = false
		t.Logf("no nft: the solicited-node copies are not counted: %v", err)
	}
	for _, n := range nodes {
		if !nftOK {
			break
		}
		script := "add table netdev mcsn\n" +
			"add chain netdev mcsn in { type filter hook ingress device mcbr-demo priority 0; }\n" +
			"add rule netdev mcsn in ip6 daddr ff02::1:ff00:0/104 icmpv6 type nd-neighbor-solicit counter\n"
		if out, err := n.Exec(t, "nft", script); err != nil {
			t.Fatalf("%s: nft: %v\n%s", n, err, out)
		}
	}
	waitOverlay6(t, nodes)
	defer func() {
		if nftOK && !t.Failed() {
			solicitedNodeCopies(t, nodes)
		}
	}()
	st := statusJSON(t, nodes[1], bin, socks[1])
	if st.Overlay6 != "fd00:198:19::2/64" {
		t.Errorf("node 2 status: overlay6 %q, want fd00:198:19::2/64", st.Overlay6)
	}
	for _, p := range st.Peers {
		if want := "fd00:198:19::" + strings.TrimPrefix(p.Underlay, "198.18.0.") + "/64"; p.Overlay6 != want {
			t.Errorf("node 2 status: peer %s overlay6 %q, want %q", p.Underlay, p.Overlay6, want)
		}
	}
	for _, dst := range []string{"fd00:198:19::2", "fd00:198:19::3"} {
		if out, err := nodes[0].Exec(t, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", dst); err != nil {
			t.Fatalf("ping6 %s: %v\n%s", dst, err, out)
		}
	}
	// TCP over the overlay: node 3 echoes what node 1 sends.
	var ln net.Listener
	if err := nodes[2].Do(func() (err error) { ln, err = net.Listen("tcp6", "[fd00:198:19::3]:7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := nodes[0].Do(func() (err error) {
		c, err = net.DialTimeout("tcp6", "[fd00:198:19::3]:7000", 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("TCP over IPv6 across the overlay: %v", err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("meshcast "), 4000) // several segments
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write(msg)
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("TCP echo over IPv6: %v", err)
	}
}

// solicitedNodeCopies reads the counter testOverlay6 set at each TAP's
// ingress and logs, per node, the solicitations to solicited-node groups
// the peers copied to it, and how many at most were for its own addresses:
// the node answers each of those with an advertisement, so the kernel's
// count of advertisements sent bounds them. The rest is what snooping
// ff02::1:ff00:0/104 would have saved.
func solicitedNodeCopies(t *testing.T, nodes []*nstest.Node) {
	t.Helper()
	total, own := 0, 0
	for _, n := range nodes {
		all := nftCounter(t, n, "mcsn", "in", 0)
		snmp, err := n.Exec(t, "cat", "/proc/net/snmp6")
		if err != nil {
			t.Fatal(err)
		}
		mine := 0
		for _, line := range strings.Split(snmp, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Icmp6OutNeighborAdvertisements" {
				mine, _ = strconv.Atoi(f[1])
			}
		}
		mine = min(mine, all)
		t.Logf("%s: %d solicitations to solicited-node groups came in from peers, at most %d for its own addresses", n, all, mine)
		total += all
		own += mine
	}
	t.Logf("solicited-node copies in the mesh: %d, of which at least %d (%.0f%%) snooping would have saved",
		total, total-own, 100*float64(total-own)/float64(max(total, 1)))
}

// nftCounter returns the packets of the i-th counter rule of a netdev
// chain.
func nftCounter(t *testing.T, n *nstest.Node, table, chain string, i int) int {
	t.Helper()
	out, err := n.Exec(t, "nft", "list", "chain", "netdev", table, chain)
	if err != nil {
		t.Fatalf("%s: nft list: %v\n%s", n, err, out)
	}
	var counts []int
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, "counter packets "); ok {
			v, _ := strconv.Atoi(strings.Fields(rest)[0])
			counts = append(counts, v)
		}
	}
	if i >= len(counts) {
		t.Fatalf("%s: no counter %d in\n%s", n, i, out)
	}
	return counts[i]
}
