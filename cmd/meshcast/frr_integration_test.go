package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// A real multicast router on the overlay: FRR's pimd (8.4, Debian
// bookworm's) runs on one node's TAP, beside that node's meshcast, with its
// own zebra. The other nodes must take that node for a router peer, from
// its PIM Hellos (RFC 4541 section 2.1.1), with FRR's IGMP off too, and
// from its queries; send it every group, registered or not, under
// --unregistered drop; and elect the IGMP querier with it by address.
//
// FRR's daemons run in the foreground as children of the test, as root
// (-u root; -g frrvty, as FRR refuses a user outside its vty group), with
// their configuration, pidfiles, zserv socket and vty sockets in a
// temporary directory: nothing of the system's FRR (/etc/frr, /run/frr) is
// used, and the frr service is never started.
//
// pimd 8.4 reads IGMP only through its multicast routing socket
// (pimd/pim_mroute.c process_igmp_packet; the IGMP socket's reader drains
// its queue unread). On a kernel without CONFIG_IP_MROUTE it sends its
// queries and Hellos but hears no IGMP: its side of the election and the
// groups it learns are then not checked (the subtests frr_view and
// frr_groups skip, saying so), and the test checks instead, with a raw
// socket on the router's TAP, what pimd would have read there: the other
// nodes' election queries from their overlay addresses, and their reports.
// Under qemu on Debian's 6.1 cloud kernel, which has it, those subtests
// run and pass: pimd defers to node 1's election queries, and learns the
// group joined behind another node.
const (
	frrPimd     = "/usr/lib/frr/pimd"
	frrZebra    = "/usr/lib/frr/zebra"
	frrVtyGroup = "frrvty"
	frrTAP      = "mcbr-demo"
	frrCount    = 200 // datagrams per stream
	// FRR's timers, short as meshcast's in this test: a Hello every
	// second with a holdtime of 4 s, a query every 2 s answered within
	// 1 s (query-max-response-time is in tenths of a second).
	frrHello, frrHold = 1, 4
)

// frrMeshFlags are the daemons' flags: timers as short as FRR's, and
// unregistered groups dropped, so that what reaches the router peer
// reaches it because it is a router peer, not because of a flood.
var frrMeshFlags = []string{
	"--unregistered", "drop",
	"--igmp-query-interval", "2s", "--igmp-response-interval", "1s", "--igmp-last-member-interval", "200ms",
}

// requireFRR returns vtysh's path, or skips the test (fails it under
// CI=true) when FRR is not installed.
func requireFRR(t *testing.T) string {
	t.Helper()
	for _, p := range []string{frrPimd, frrZebra} {
		if _, err := os.Stat(p); err != nil {
			nstest.SkipOrFail(t, "FRR is not installed (%v): apt-get install frr (make deps installs it)", err)
		}
	}
	vtysh, err := sbinTool("vtysh")
	if err != nil {
		nstest.SkipOrFail(t, "FRR's vtysh: %v: apt-get install frr (make deps installs it)", err)
	}
	if _, err := user.LookupGroup(frrVtyGroup); err != nil {
		nstest.SkipOrFail(t, "FRR's group %s: %v: apt-get install frr (make deps installs it)", frrVtyGroup, err)
	}
	return vtysh
}

// kernelMroute reports whether the kernel has IPv4 multicast routing
// (CONFIG_IP_MROUTE), which pimd needs to read IGMP.
func kernelMroute() bool {
	_, err := os.Stat("/proc/net/ip_mr_vif")
	return err == nil
}

// frrRouter is a zebra and a pimd of our own in one node's namespace.
type frrRouter struct {
	node        *nstest.Node
	dir, vtysh  string
	zebra, pimd *nstest.Proc
}

// startFRR starts zebra and pimd in n, PIM on the TAP, and IGMP too when
// igmp is set. Their cleanup (registered after the namespaces' and the
// daemons', so it runs first) stops pimd, then zebra, and removes what
// FRR left under /var/tmp/frr for their pids.
func startFRR(t *testing.T, n *nstest.Node, vtysh string, igmp bool) *frrRouter {
	t.Helper()
	f := &frrRouter{node: n, dir: t.TempDir(), vtysh: vtysh}
	conf := fmt.Sprintf("hostname meshcast-test\n!\ninterface %s\n ip pim\n ip pim hello %d %d\n", frrTAP, frrHello, frrHold)
	if igmp {
		// The response time first: FRR wants the query interval at
		// least as long.
		conf += " ip igmp\n ip igmp query-max-response-time 10\n ip igmp query-interval 2\n"
	}
	conf += "!\n"
	for name, body := range map[string]string{"zebra.conf": "hostname meshcast-test\n!\n", "pimd.conf": conf} {
		if err := os.WriteFile(f.path(name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(bin, daemon string) *nstest.Proc {
		return n.Start(t, bin, "-f", f.path(daemon+".conf"), "-i", f.path(daemon+".pid"),
			"-z", f.path("zserv.api"), "--vty_socket", f.dir,
			"-u", "root", "-g", frrVtyGroup, "-P", "0", "--log", "stdout")
	}
	f.zebra = start(frrZebra, "zebra")
	t.Cleanup(func() { f.stop(t) })
	if err := ovsWaitFor(10*time.Second, func() bool {
		_, err := os.Stat(f.path("zserv.api"))
		return err == nil || f.zebra.Exited()
	}); err != nil || f.zebra.Exited() {
		t.Fatalf("zebra did not open its zserv socket: %v\n%s", err, f.zebra.Output())
	}
	f.pimd = start(frrPimd, "pimd")
	if err := ovsWaitFor(10*time.Second, func() bool {
		_, err := os.Stat(f.path("pimd.vty"))
		return err == nil || f.pimd.Exited()
	}); err != nil || f.pimd.Exited() {
		t.Fatalf("pimd did not open its vty socket: %v\n%s", err, f.pimd.Output())
	}
	if out := f.pimd.Output(); strings.Contains(out, "Configuration failed") {
		t.Fatalf("pimd refused its configuration:\n%s", out)
	}
	return f
}

func (f *frrRouter) path(name string) string { return filepath.Join(f.dir, name) }

func (f *frrRouter) stop(t *testing.T) {
	for _, p := range []*nstest.Proc{f.pimd, f.zebra} {
		if p == nil {
			continue
		}
		if !p.Exited() {
			p.Signal(syscall.SIGTERM)
			if _, err := p.Wait(10 * time.Second); err != nil {
				t.Logf("%s did not stop on SIGTERM: %v; killing it", p, err)
				p.Stop()
			}
		}
		// FRR keeps a crash-log directory per daemon and pid, and
		// removes it only on a clean exit.
		for _, d := range []string{"zebra", "pimd"} {
			os.RemoveAll(fmt.Sprintf("/var/tmp/frr/%s.%d", d, p.Pid()))
		}
	}
}

// show runs a vtysh show command with "json" and decodes its answer.
func (f *frrRouter) show(t *testing.T, cmd string, v any) {
	t.Helper()
	out, err := f.node.Exec(t, f.vtysh, "--vty_socket", f.dir, "-c", cmd+" json")
	if err != nil {
		t.Fatalf("vtysh: %v", err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vtysh -c %q: %v\n%s", cmd+" json", err, out)
	}
}

// frrIGMPInterface is FRR's `show ip igmp interface json` for the TAP.
type frrIGMPInterface struct {
	Querier   bool   `json:"querier"`
	QuerierIP string `json:"querierIp"`
}

func (f *frrRouter) igmpInterface(t *testing.T) frrIGMPInterface {
	t.Helper()
	var m map[string]frrIGMPInterface
	f.show(t, "show ip igmp interface", &m)
	return m[frrTAP]
}

// igmpGroups returns the groups FRR's IGMP learned on the TAP.
func (f *frrRouter) igmpGroups(t *testing.T) []string {
	t.Helper()
	var m map[string]json.RawMessage
	f.show(t, "show ip igmp groups", &m)
	var ifc struct {
		Groups []struct {
			Group string `json:"group"`
		} `json:"groups"`
	}
	if raw, ok := m[frrTAP]; ok {
		if err := json.Unmarshal(raw, &ifc); err != nil {
			t.Fatalf("show ip igmp groups json: %v\n%s", err, raw)
		}
	}
	var out []string
	for _, g := range ifc.Groups {
		out = append(out, g.Group)
	}
	return out
}

// igmpSeen is one IGMP packet a raw socket on a TAP read.
type igmpSeen struct {
	src, dst netip.Addr
	typ      uint8
}

// igmpWatch reads every IGMP packet the kernel of a node accepts on its
// TAP, through a raw socket that joins 224.0.0.2 and 224.0.0.22 there (as
// pimd's IGMP socket does): what a router on that TAP is given to read.
type igmpWatch struct {
	fd   int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []igmpSeen
}

func watchIGMP(t *testing.T, n *nstest.Node, ifname string) *igmpWatch {
	t.Helper()
	w := &igmpWatch{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_IGMP)
		if err != nil {
			return err
		}
		w.fd = fd
		for _, g := range [][4]byte{{224, 0, 0, 2}, {224, 0, 0, 22}} {
			mreq := &unix.IPMreqn{Multiaddr: g, Ifindex: int32(ifi.Index)}
			if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
				return fmt.Errorf("joining %v: %w", netip.AddrFrom4(g), err)
			}
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	})
	if err != nil {
		if w.fd >= 0 {
			unix.Close(w.fd)
		}
		t.Fatalf("raw IGMP socket on %s in %s: %v", ifname, n, err)
	}
	go func() {
		defer close(w.done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			k, _, err := unix.Recvfrom(w.fd, buf, 0)
			if err != nil || k < 20 {
				continue // the timeout, to look at stop
			}
			hl := int(buf[0]&0x0f) * 4
			if k <= hl {
				continue
			}
			s := igmpSeen{src: netip.AddrFrom4([4]byte(buf[12:16])), dst: netip.AddrFrom4([4]byte(buf[16:20])), typ: buf[hl]}
			w.mu.Lock()
			w.seen = append(w.seen, s)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *igmpWatch) close() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	<-w.done
	unix.Close(w.fd)
}

// waitFor waits until a packet that ok accepts was read, and reports it.
func (w *igmpWatch) waitFor(timeout time.Duration, ok func(igmpSeen) bool) (igmpSeen, bool) {
	var got igmpSeen
	err := ovsWaitFor(timeout, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, s := range w.seen {
			if ok(s) {
				got = s
				return true
			}
		}
		return false
	})
	return got, err == nil
}

// groupCounter counts the UDP datagrams to each IPv4 group that reach a
// node's kernel through an interface, from a packet socket there.
// meshcast writes datagrams of one flow into its TAP coalesced, several to
// a frame (a virtio-net header with GSO_UDP_L4), so the interface's packet
// counter counts writes, not datagrams; the packet socket's virtio-net
// header (PACKET_VNET_HDR) says how many datagrams each frame holds.
type groupCounter struct {
	fd   int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	n    map[netip.Addr]uint64
}

func countGroups(t *testing.T, n *nstest.Node, ifname string) *groupCounter {
	t.Helper()
	c := &groupCounter{fd: -1, stop: make(chan struct{}), done: make(chan struct{}), n: map[netip.Addr]uint64{}}
	const ethPIP = 0x0008 // htons(ETH_P_IP)
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, ethPIP)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: ethPIP, Ifindex: ifi.Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("packet socket on %s in %s: %v", ifname, n, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 1<<17)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			k, from, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // the timeout, to look at stop
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			const vnet = 10
			f := buf[vnet:k]
			if len(f) < 14+20+8 || f[12] != 0x08 || f[13] != 0x00 {
				continue
			}
			ip := f[14:]
			hl := int(ip[0]&0x0f) * 4
			if ip[9] != unix.IPPROTO_UDP || len(ip) < hl+8 || ip[16]&0xf0 != 0xe0 {
				continue
			}
			segs := uint64(1)
			if gsoType, gsoSize := buf[1], int(binary.LittleEndian.Uint16(buf[4:])); gsoType != 0 && gsoSize > 0 {
				payload := len(ip) - hl - 8
				segs = uint64((payload + gsoSize - 1) / gsoSize)
			}
			c.mu.Lock()
			c.n[netip.AddrFrom4([4]byte(ip[16:20]))] += segs
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *groupCounter) count(group netip.Addr) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[group]
}

func (c *groupCounter) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
}

// routerLearned returns how the daemon whose output is out learned the
// router port port, from its log lines "igmp: router port learned" and
// "... confirmed".
func routerLearned(out string, port netip.Addr) []string {
	var how []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "igmp: router port") || !strings.Contains(line, " port="+port.String()+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "learned="); ok && !slices.Contains(how, v) {
				how = append(how, v)
			}
		}
	}
	slices.Sort(how)
	return how
}

// TestIntegrationFRRRouter runs FRR's pimd on one node's TAP in three
// cases: PIM only (its IGMP off), IGMP with FRR's address the lowest
// (node 1), and IGMP with it the highest (node 3).
func TestIntegrationFRRRouter(t *testing.T) {
	nstest.RequireRoot(t)
	vtysh := requireFRR(t)
	mroute := kernelMroute()
	if !mroute {
		t.Logf("this kernel has no multicast routing (no /proc/net/ip_mr_vif: CONFIG_IP_MROUTE is off): pimd cannot read IGMP, so FRR's own view of the election and of the groups is not checked")
	}
	for _, tc := range []struct {
		name   string
		router int // the node FRR runs on
		igmp   bool
	}{
		{"pim_only", 3, false},
		{"frr_lower", 1, true},
		{"frr_higher", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testFRRRouter(t, vtysh, mroute, tc.router, tc.igmp) })
	}
}

func testFRRRouter(t *testing.T, vtysh string, mroute bool, router int, igmp bool) {
	began := time.Now()
	nt, bin, probe, inv := demoNet(t, 3)
	nodes := nt.Nodes()
	socks := make([]string, len(nodes))
	daemons := make([]*nstest.Proc, len(nodes))
	for i, n := range nodes {
		socks[i] = ctlPath(t)
		args := append([]string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", "gre", "--control", socks[i]}, frrMeshFlags...)
		daemons[i] = n.Start(t, bin, args...)
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v", i+1, err)
		}
	}
	r := nodes[router-1]
	var others []int // indexes of the nodes without FRR: a sender, then a member
	for i := range nodes {
		if i != router-1 {
			others = append(others, i)
		}
	}
	si, mi := others[0], others[1]
	s, m := nodes[si], nodes[mi]
	overlay := func(n *nstest.Node) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 0, byte(n.Index)}) }

	// What the router's TAP is given to read, from before FRR starts.
	watch := watchIGMP(t, r, frrTAP)
	frrStart := time.Now()
	f := startFRR(t, r, vtysh, igmp)
	t.Logf("FRR pimd on node %d (%v, IGMP %v) up in %v", router, overlay(r), igmp, time.Since(frrStart).Round(time.Millisecond))

	// 1. The other nodes list the router's node as a router peer.
	for _, i := range others {
		err := ovsWaitFor(10*time.Second, func() bool {
			return slices.Contains(statusJSON(t, nodes[i], bin, socks[i]).Routers, r.Underlay.String())
		})
		if err != nil {
			t.Fatalf("node %d does not list node %d (%s) among its router peers: %v", i+1, router, r.Underlay, err)
		}
	}
	if got := statusJSON(t, r, bin, socks[router-1]).Routers; len(got) != 0 {
		t.Errorf("the router's own node lists router peers %v, want none", got)
	}

	// 2. How they learned it: PIM Hellos always; queries too when FRR's
	// IGMP runs and FRR is the querier.
	time.Sleep(3 * time.Second) // several Hellos and queries
	for _, i := range others {
		how := routerLearned(daemons[i].Output(), r.Underlay)
		t.Logf("node %d learned router peer %s from %v", i+1, r.Underlay, how)
		want := []string{"pim"}
		if igmp && router == 1 {
			want = []string{"pim", "query"}
		}
		if !igmp && slices.Contains(how, "query") {
			t.Errorf("node %d learned the router from a query with FRR's IGMP off", i+1)
		}
		for _, w := range want {
			if !slices.Contains(how, w) {
				t.Errorf("node %d learned router peer %s from %v, want %s among them", i+1, r.Underlay, how, w)
			}
		}
		// status says the same: the router, and PIM among the ways.
		var info *control.Router
		for _, ri := range statusJSON(t, nodes[i], bin, socks[i]).RouterInfo {
			if ri.Peer == r.Underlay.String() {
				info = &ri
			}
		}
		if info == nil || !slices.Contains(info.Learned, "pim") || info.Router != overlay(r).String() || info.ExpiresSeconds <= 0 {
			t.Errorf("node %d status router_info for %s = %+v, want router %v learned from pim among others", i+1, r.Underlay, info, overlay(r))
		}
	}
	if !statusJSON(t, r, bin, socks[router-1]).HostRouter {
		t.Errorf("node %d, where FRR runs, does not report host_router", router)
	}

	// 3. The querier election.
	checkFRRElection(t, f, watch, mroute, router, igmp, nodes, bin, socks)

	// 4. Every group reaches the router peer: a group the member node
	// joined, and a group nobody joined (under --unregistered drop).
	registered, unregistered := netip.MustParseAddr("239.7.7.1"), netip.MustParseAddr("239.7.7.2")
	recv := m.Start(t, probe, "recv", "--iface", frrTAP, "--group", registered.String(), "--port", "5400",
		"--count", strconv.Itoa(frrCount), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, s, bin, socks[si], registered.String(), 1)
	// The member's report went into the router's TAP too, for the
	// router (RFC 4541 section 2.1.1): a router on a node's TAP hears
	// the overlay's reports.
	if got, ok := watch.waitFor(10*time.Second, func(x igmpSeen) bool {
		return x.src == overlay(m) && (x.typ == 0x22 || x.typ == 0x16)
	}); ok {
		t.Logf("node %d's report (type %#x to %v) reached the router's TAP", m.Index, got.typ, got.dst)
	} else {
		t.Errorf("no report of node %d reached the TAP of the router on node %d", m.Index, router)
	}
	// FRR learned the member's group from the overlay, while the member
	// is still in it (the receiver leaves after the stream).
	t.Run("frr_groups", func(t *testing.T) {
		switch {
		case !igmp:
			t.Skip("FRR's IGMP is off")
		case !mroute:
			t.Skip("pimd reads no IGMP on this kernel (no CONFIG_IP_MROUTE)")
		}
		var groups []string
		if err := ovsWaitFor(10*time.Second, func() bool {
			groups = f.igmpGroups(t)
			return slices.Contains(groups, registered.String())
		}); err != nil {
			t.Errorf("FRR's IGMP groups on %s: %v, want %s joined on node %d", frrTAP, groups, registered, m.Index)
		}
		t.Logf("FRR's IGMP groups on %s: %v", frrTAP, groups)
	})

	rc, mc := countGroups(t, r, frrTAP), countGroups(t, m, frrTAP)
	for _, g := range []netip.Addr{registered, unregistered} {
		st0 := statusJSON(t, s, bin, socks[si])
		frames := tapFrames(t, socks[si])
		if out, err := s.Exec(t, probe, "send", "--iface", frrTAP, "--group", g.String(), "--port", "5400",
			"--count", strconv.Itoa(frrCount), "--rate", "1000"); err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		waitTAPFrames(t, socks[si], frames+frrCount)
		ovsWaitFor(5*time.Second, func() bool { return rc.count(g) >= frrCount })
		time.Sleep(200 * time.Millisecond) // stragglers
		toR, toM := rc.count(g), mc.count(g)
		st1 := statusJSON(t, s, bin, socks[si])
		dropped := st1.Drops["unregistered"] - st0.Drops["unregistered"]
		kind := fmt.Sprintf("registered (node %d joined)", m.Index)
		if g == unregistered {
			kind = "unregistered"
		}
		t.Logf("%s %v from node %d: %d datagrams sent; into the router's TAP (node %d) %d, into node %d's TAP %d; dropped as unregistered at the sender %d",
			kind, g, s.Index, frrCount, router, toR, m.Index, toM, dropped)
		if toR != frrCount {
			t.Errorf("%s %v: the router's TAP got %d datagrams, want %d", kind, g, toR, frrCount)
		}
		if dropped != 0 {
			t.Errorf("%s %v: the sender dropped %d frames as unregistered with a router peer present", kind, g, dropped)
		}
		if g == registered && toM != frrCount {
			t.Errorf("%v: the member's TAP got %d datagrams, want %d", g, toM, frrCount)
		}
		if g == unregistered && toM != 0 {
			t.Errorf("%v: node %d (no member, no router) got %d datagrams: flooded, not sent to the router alone", g, m.Index, toM)
		}
	}
	if _, err := recv.Wait(30 * time.Second); err != nil {
		t.Errorf("receiver: %v", err)
	}
	t.Logf("node %d received %d/%d of %s", m.Index, received(t, recv.Output()), frrCount, registered)

	// The daemons stop cleanly, and dropped no PIM as malformed.
	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v", i+1, code, err)
		}
		dr := drops(d.Output())
		if dr["pim_malformed"] > 0 {
			t.Errorf("node %d dropped %d PIM messages of FRR's as malformed", i+1, dr["pim_malformed"])
		}
	}
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// checkFRRElection checks the querier election between FRR and meshcast's
// queriers.
func checkFRRElection(t *testing.T, f *frrRouter, watch *igmpWatch, mroute bool, router int, igmp bool, nodes []*nstest.Node, bin string, socks []string) {
	t.Helper()
	querier := func(i int) control.Querier { return statusJSON(t, nodes[i], bin, socks[i]).Querier }
	waitQuerier := func(i int, active bool) {
		t.Helper()
		var q control.Querier
		if err := ovsWaitFor(10*time.Second, func() bool { q = querier(i); return q.Active == active }); err != nil {
			t.Errorf("node %d: querier active %v after 10s, want %v", i+1, q.Active, active)
		}
	}
	r := nodes[router-1]
	switch {
	case !igmp:
		// No IGMP router: every node is the querier of its own TAP.
		for i := range nodes {
			waitQuerier(i, true)
		}
	case router == 1:
		// FRR's address is the lowest: it is the querier, and every
		// meshcast querier goes quiet, the router's own node's too (a
		// router on its TAP).
		for i := range nodes {
			waitQuerier(i, false)
		}
	default:
		// FRR's address is the highest: the other nodes query, and
		// their election queries reach the router's TAP from their
		// overlay addresses, to 224.0.0.2.
		for i := range nodes {
			if i != router-1 {
				waitQuerier(i, true)
			}
		}
		low := netip.AddrFrom4([4]byte{198, 19, 0, 1})
		if got, ok := watch.waitFor(10*time.Second, func(x igmpSeen) bool {
			return x.typ == 0x11 && x.src == low && x.dst == netip.AddrFrom4([4]byte{224, 0, 0, 2})
		}); ok {
			t.Logf("node 1's election query reached the router's TAP: %v -> %v", got.src, got.dst)
		} else {
			t.Errorf("no election query from %v reached the TAP of the router on node %d", low, router)
		}
	}
	for i := range nodes {
		q := querier(i)
		t.Logf("node %d (%s): querier active %v, %d queries into its TAP", i+1, nodes[i].Underlay, q.Active, q.Sent)
	}
	watch.mu.Lock()
	counts := map[string]int{}
	for _, x := range watch.seen {
		if x.typ == 0x11 {
			counts[fmt.Sprintf("%v->%v", x.src, x.dst)]++
		}
	}
	watch.mu.Unlock()
	t.Logf("queries on the router's TAP (node %d) so far, by source and destination: %v", router, counts)

	t.Run("frr_view", func(t *testing.T) {
		switch {
		case !igmp:
			t.Skip("FRR's IGMP is off")
		case !mroute:
			t.Skip("pimd reads no IGMP on this kernel (no CONFIG_IP_MROUTE): FRR would stay querier whatever it is sent")
		}
		// The lowest address wins: FRR's own on node 1, node 1's
		// otherwise.
		want := frrIGMPInterface{Querier: true, QuerierIP: netip.AddrFrom4([4]byte{198, 19, 0, byte(r.Index)}).String()}
		if router != 1 {
			want = frrIGMPInterface{Querier: false, QuerierIP: "198.19.0.1"}
		}
		var got frrIGMPInterface
		if err := ovsWaitFor(15*time.Second, func() bool { got = f.igmpInterface(t); return got == want }); err != nil {
			t.Errorf("FRR's IGMP on %s: %+v, want %+v", frrTAP, got, want)
		}
		t.Logf("FRR's IGMP on %s: querier %v, querier address %s", frrTAP, got.Querier, got.QuerierIP)
	})
}
