package main

// The conformance suite a second time, with real hosts: the scenarios of
// the Linux bridge selftest bridge_igmp.sh and of Open vSwitch's
// mcast-snooping.at that igmp/conformance_test.go and
// replicate/conformance_test.go port at unit level, played again by real
// Linux host stacks in a three-node meshcast mesh.
//
// Node A (198.18.0.1) is the observer and the sender: its daemon's table,
// read with `meshcast status --json`, is checked, and its host sends the
// traffic. The reporting hosts are the kernels of nodes B and C: a test
// opens ordinary UDP sockets in their namespaces and calls
// IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IP_ADD_SOURCE_MEMBERSHIP,
// IP_DROP_SOURCE_MEMBERSHIP, IP_BLOCK_SOURCE, IP_UNBLOCK_SOURCE and
// IP_MSFILTER (setsourcefilter, RFC 3678) on mcbr-demo. The host's kernel
// sends the reports, which cross the overlay to A.
//
// Addresses: the selftest's group 239.10.10.10 becomes one group
// 239.10.10.N per scenario (the scenarios run two at a time, one on B's
// host and one on C's), and its sources 192.0.2.X become 198.19.0.(100+X):
// 192.0.2.1 is 198.19.0.101, 192.0.2.20 is 198.19.0.120, and the "other
// source" 192.0.2.100 is 198.19.0.200. A's host sends from each of them:
// they are /32 addresses on A's TAP. Forwarding is counted where the
// datagrams come out of meshcast: at the TAP of B and C, seen from their
// hosts through an AF_PACKET socket. A check that something did not arrive
// waits for a marker sent after the datagrams (to 224.0.0.200, which goes
// to every peer, on the same path) and for A's daemon to have handled every
// frame from its TAP (waitTAPFrames), never for a fixed time.
//
// What a real host can and cannot send:
//   - IS_IN and IS_EX records are the host's answers to general queries,
//     and B's daemon is the querier of B's host (every 2 s here). To have
//     A learn a state from them alone, as the selftest's IS_IN and IS_EX
//     reports do, an nftables rule at the egress of the host's mcbr-demo
//     (the "gate") drops the host's state-change reports (TO_IN, TO_EX,
//     ALLOW, BLOCK) while its current-state reports pass; for a state
//     change under test it is the other way round. Linux never mixes the
//     two kinds in one report, so the first record's type tells them apart.
//   - A host sends TO_EX only when it leaves INCLUDE mode, ALLOW only for
//     sources it starts to want (in EXCLUDE mode: stops blocking) and
//     BLOCK only for sources it stops wanting. Where the selftest's record
//     needs a router state older than the host's, the host first makes a
//     change whose report the gate drops (a lost report), then the change
//     under test. Where no such history can produce the selftest's record,
//     the nearest record is sent and the comment says so: v3exc_allow and
//     v3exc_timeout send ALLOW {20} (the selftest: ALLOW {20,30}; 30 was
//     never in the host's exclusion list), v3exc_block sends BLOCK {1,30}
//     (the selftest: BLOCK {1,20,30}; the host already blocks 20), with
//     the same resulting state where the RFC says so.
//   - A filter mode change that must reach A as one record is made with
//     IP_MSFILTER: an any-source join plus IP_BLOCK_SOURCE calls on another
//     socket make the same TO_EX only when the kernel's report timer (one
//     jiffy) does not fire between the calls; where only the resulting
//     state matters (the lost reports), the single calls are used.
//   - The selftest reads each source timer; status shows the group timer
//     (EXCLUDE) or the longest source timer (INCLUDE), so the timers are
//     checked by when the state changes: a source lowered to LMQT goes
//     within LMQT, an unrefreshed one at GMI.
//   - Not ported: Open vSwitch's VLANs (meshcast has none: "delete the
//     port mdb when vlan configuration changed" becomes a peer whose
//     inventory line changes), mcast-snooping-flood ports (no counterpart;
//     router peers are, in the port tests), and "igmp flood for non-snoop
//     enabled" (snooping cannot be turned off). A bad IP header checksum
//     cannot come out of the host's IP stack (the kernel fills it in), so
//     that frame is injected through an AF_PACKET socket on the host's TAP,
//     which a host can do as well. TestIntegrationConformanceList maps
//     every scenario of the unit-level suite to its test here.
//
// Timers: every daemon sends a general query every 2 s with a maximum
// response time of 1 s. A counts with robustness 6 and a last member
// interval of 750 ms: GMI = 6 x 2 s + 1 s = 13 s and LMQT = 6 x 750 ms =
// 4.5 s, so that the router state the selftest builds (sources whose
// timers run from an IS_IN two or three answers back) still holds when the
// record under test arrives, and a source lowered to LMQT can be checked
// before it goes. B and C run robustness 2: their hosts send each state
// change twice (or as often as the QRV of the last query they heard
// says), repeated within 100 ms (igmpv3_unsolicited_report_interval); a
// change is complete once two reports have left and none for 300 ms.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

const (
	confTAP       = "mcbr-demo"
	confPerSource = 3                      // datagrams per source and check
	confPayload   = 64                     // bytes of UDP payload of every test datagram
	confPortBase  = 24000                  // UDP ports of the checks: one per check
	confWait      = 25 * time.Second       // a table state: GMI (13 s) and a query answer, with room for a loaded machine
	confQuiet     = 300 * time.Millisecond // no report for 3 unsolicited report intervals: a change is fully sent
	confGMI       = 13 * time.Second
	confLMQT      = 4500 * time.Millisecond
)

var (
	confMarker = netip.MustParseAddr("224.0.0.200")
	// Every node: general queries every 2 s, answers within 1 s.
	confTimers = []string{"--igmp-query-interval", "2s", "--igmp-response-interval", "1s"}
	// A: GMI 13 s, LMQT 4.5 s. B and C: the defaults' robustness.
	confAFlags    = []string{"--igmp-robustness", "6", "--igmp-last-member-interval", "750ms"}
	confHostFlags = []string{"--igmp-robustness", "2", "--igmp-last-member-interval", "500ms"}
	// The selftest's sources, as labels: 192.0.2.X is "X", 192.0.2.100
	// (its "other source") is "O".
	confLabels = []string{"1", "2", "3", "10", "11", "12", "20", "21", "30", "O"}
)

// confSrc returns the address of a source label: 198.19.0.(100+X), and
// 198.19.0.200 for "O".
func confSrc(label string) netip.Addr {
	if label == "O" {
		return netip.AddrFrom4([4]byte{198, 19, 0, 200})
	}
	n, err := strconv.Atoi(label)
	if err != nil || n < 1 || n > 99 {
		panic("conf: bad source label " + label)
	}
	return netip.AddrFrom4([4]byte{198, 19, 0, byte(100 + n)})
}

// confLabel returns the label of a source address, or the address.
func confLabel(a netip.Addr) string {
	for _, l := range confLabels {
		if confSrc(l) == a {
			return l
		}
	}
	return a.String()
}

// confSorted returns labels in address order.
func confSorted(labels []string) []string {
	out := slices.Clone(labels)
	slices.SortFunc(out, func(a, b string) int {
		x, errX := netip.ParseAddr(a)
		if errX != nil {
			x = confSrc(a)
		}
		y, errY := netip.ParseAddr(b)
		if errY != nil {
			y = confSrc(b)
		}
		return x.Compare(y)
	})
	return out
}

// confExcept returns every source label but labels: what an EXCLUDE
// membership whose blocked list is labels forwards.
func confExcept(labels ...string) []string {
	var out []string
	for _, l := range confLabels {
		if !slices.Contains(labels, l) {
			out = append(out, l)
		}
	}
	return out
}

func confHtons(v uint16) uint16 { return v<<8 | v>>8 }

// ---------------------------------------------------------------------------
// The mesh

// confMesh is three daemons; a is node A (observer and sender), b and c
// the reporting hosts.
type confMesh struct {
	nodes   []*nstest.Node
	daemons []*nstest.Proc
	socks   []string
	bin     string
	inv     string
	a, b, c *confHost
	seq     atomic.Uint32 // numbers the checks: their UDP ports
}

// confNewMesh starts a daemon on each of three nodes with args[i] added to
// its command line, and prepares the hosts: A's sources, recorders on every
// TAP, and gates on B's and C's.
func confNewMesh(t *testing.T, args [3][]string) *confMesh {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		nstest.SkipOrFail(t, "the conformance tests need nft (nftables) for the gate on the hosts' TAPs: %v", err)
	}
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	m := &confMesh{nodes: nt.Nodes(), bin: bin}
	m.inv = filepath.Join(t.TempDir(), "peers")
	confWriteFile(t, m.inv, demoInventory)
	for i, n := range m.nodes {
		sock := ctlPath(t)
		m.socks = append(m.socks, sock)
		argv := append([]string{"run", "--peers", m.inv, "--local", n.Underlay.String(), "--control", sock}, args[i]...)
		m.daemons = append(m.daemons, n.Start(t, bin, argv...))
	}
	for i, d := range m.daemons {
		if err := d.WaitOutput("meshcast forwarding", 15*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	m.a = confNewHost(t, m.nodes[0], "A", false)
	m.b = confNewHost(t, m.nodes[1], "B", true)
	m.c = confNewHost(t, m.nodes[2], "C", true)
	// A's host sends from the selftest's sources: /32 addresses on its TAP.
	m.a.src = map[string]int{}
	for _, l := range confLabels {
		a := confSrc(l)
		if out, err := m.nodes[0].Exec(t, "ip", "addr", "add", a.String()+"/32", "dev", confTAP); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		m.a.src[l] = m.a.udpSender(t, a)
	}
	return m
}

// confWriteFile replaces path with body, atomically.
func confWriteFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (m *confMesh) hosts() []*confHost { return []*confHost{m.b, m.c} }

// status returns node i's `meshcast status --json`.
func (m *confMesh) status(t *testing.T, i int) control.State {
	t.Helper()
	return statusJSON(t, m.nodes[i], m.bin, m.socks[i])
}

// confMemberOf returns the member entry of port in group, or nil.
func confMemberOf(st control.State, group netip.Addr, port string) *control.Member {
	for _, g := range st.Groups {
		if g.Group != group.String() {
			continue
		}
		for i := range g.Members {
			if g.Members[i].Port == port {
				return &g.Members[i]
			}
		}
	}
	return nil
}

// confShow renders a member entry with source labels.
func confShow(mem *control.Member) string {
	if mem == nil {
		return "no entry"
	}
	s := fmt.Sprintf("%s v%d {%s}", mem.Mode, mem.Version, strings.Join(confLabelsOf(mem.Sources), ","))
	if mem.Mode == "exclude" {
		s += fmt.Sprintf(" blocked {%s}", strings.Join(confLabelsOf(mem.Blocked), ","))
	}
	return s + fmt.Sprintf(" expires %.1fs", mem.ExpiresSeconds)
}

func confLabelsOf(addrs []string) []string {
	var out []string
	for _, s := range addrs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, confLabel(a))
		} else {
			out = append(out, s)
		}
	}
	return confSorted(out)
}

// confWant is the state of a group on one port of A's table, as status
// shows it: the selftest's filter_mode, its source entries with running
// timers (sources: INCLUDE's A, EXCLUDE's X) and those with none
// (blocked: EXCLUDE's Y), and the compatibility mode.
type confWant struct {
	mode             string // "" for no entry
	sources, blocked []string
	version          int // 0: not checked
}

func (w confWant) String() string {
	if w.mode == "" {
		return "no entry"
	}
	s := fmt.Sprintf("%s {%s}", w.mode, strings.Join(confSorted(w.sources), ","))
	if w.mode == "exclude" {
		s += fmt.Sprintf(" blocked {%s}", strings.Join(confSorted(w.blocked), ","))
	}
	if w.version != 0 {
		s += fmt.Sprintf(" v%d", w.version)
	}
	return s
}

func (w confWant) match(mem *control.Member) bool {
	if w.mode == "" || mem == nil {
		return w.mode == "" && mem == nil
	}
	return mem.Mode == w.mode && (w.version == 0 || mem.Version == w.version) &&
		slices.Equal(confLabelsOf(mem.Sources), confSorted(w.sources)) &&
		slices.Equal(confLabelsOf(mem.Blocked), confSorted(w.blocked))
}

// waitMember polls A's status until ok holds for h's entry in group (nil
// while there is none), and returns the entry.
func (m *confMesh) waitMember(t *testing.T, h *confHost, group netip.Addr, what string, ok func(*control.Member) bool) *control.Member {
	t.Helper()
	return m.waitMemberOn(t, 0, h, group, what, ok)
}

// waitMemberOn is waitMember on node i's daemon.
func (m *confMesh) waitMemberOn(t *testing.T, i int, h *confHost, group netip.Addr, what string, ok func(*control.Member) bool) *control.Member {
	t.Helper()
	deadline := time.Now().Add(confWait)
	for {
		mem := confMemberOf(m.status(t, i), group, h.port)
		if ok(mem) {
			return mem
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v node %d's entry of %s's host (port %s) in %s is %s, want %s",
				confWait, i+1, h.name, h.port, group, confShow(mem), what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// want waits until A holds w for h in group.
func (m *confMesh) want(t *testing.T, h *confHost, group netip.Addr, step string, w confWant) *control.Member {
	t.Helper()
	mem := m.waitMember(t, h, group, w.String(), w.match)
	t.Logf("%s: A holds %s for %s: %s", step, group, h.name, confShow(mem))
	return mem
}

// send has A's host send confPerSource datagrams to group from each source
// of labels, then a marker, and returns per host of to the datagrams of
// each source that reached its TAP. It returns once A's daemon has handled
// every frame and every host of to has received the marker, which went to
// every peer after the datagrams.
func (m *confMesh) send(t *testing.T, group netip.Addr, labels []string, to []*confHost) map[*confHost]map[string]int {
	t.Helper()
	port := confPortBase + int(m.seq.Add(1))
	frames := tapFrames(t, m.socks[0])
	payload := make([]byte, confPayload)
	n := 0
	for _, l := range labels {
		for range confPerSource {
			if err := unix.Sendto(m.a.src[l], payload, 0, &unix.SockaddrInet4{Port: port, Addr: group.As4()}); err != nil {
				t.Fatalf("send from %s to %s: %v", confSrc(l), group, err)
			}
			n++
		}
	}
	if err := unix.Sendto(m.a.sender, payload, 0, &unix.SockaddrInet4{Port: port, Addr: confMarker.As4()}); err != nil {
		t.Fatalf("marker: %v", err)
	}
	n++
	waitTAPFrames(t, m.socks[0], frames+uint64(n))
	for _, h := range to {
		h.rec.wait(t, fmt.Sprintf("%s: A's marker to %s:%d", h.name, confMarker, port), 10*time.Second, func(p *confPkt) bool {
			return !p.out && p.proto == unix.IPPROTO_UDP && p.dst == confMarker && p.dport == port
		})
	}
	got := map[*confHost]map[string]int{}
	for _, h := range []*confHost{m.b, m.c} {
		c := map[string]int{}
		for _, p := range h.rec.filter(func(p *confPkt) bool {
			return !p.out && p.proto == unix.IPPROTO_UDP && p.dst == group && p.dport == port
		}) {
			c[confLabel(p.src)] += p.n
		}
		got[h] = c
	}
	return got
}

// fwd checks forwarding as the selftest's check_sg_fwding does, for every
// source: A's host sends from each, and each host of want receives
// exactly the datagrams of its sources (confPerSource each) and nothing
// of the others. B and C are both checked; a host not in want gets
// nothing.
func (m *confMesh) fwd(t *testing.T, group netip.Addr, step string, want map[*confHost][]string) {
	t.Helper()
	got := m.send(t, group, confLabels, m.hosts())
	for _, h := range m.hosts() {
		var gotSrcs []string
		for l, n := range got[h] {
			gotSrcs = append(gotSrcs, fmt.Sprintf("%s x%d", l, n))
		}
		slices.Sort(gotSrcs)
		ok := len(got[h]) == len(want[h])
		for _, l := range want[h] {
			ok = ok && got[h][l] == confPerSource
		}
		if !ok {
			t.Errorf("%s: traffic to %s reached %s's host from %v, want from %v (x%d each)",
				step, group, h.name, gotSrcs, confSorted(want[h]), confPerSource)
		} else {
			t.Logf("%s: %s's host received %s from {%s}", step, h.name, group, strings.Join(confSorted(want[h]), ","))
		}
	}
}

// ---------------------------------------------------------------------------
// Hosts

// confHost is a node's own host stack on its TAP: the sockets the test
// opens there, a recorder of what crosses the TAP and, on B and C, the gate.
type confHost struct {
	name    string
	n       *nstest.Node
	port    string     // its port in the other daemons' tables: the underlay address
	addr    netip.Addr // its overlay address
	ifindex int
	rec     *confRecorder
	sender  int            // a UDP socket bound to addr
	src     map[string]int // A only: a UDP socket per source label

	mu    sync.Mutex
	socks map[int]bool // open sockets, closed at cleanup
}

func confNewHost(t *testing.T, n *nstest.Node, name string, gate bool) *confHost {
	t.Helper()
	l, err := n.Link(confTAP)
	if err != nil {
		t.Fatal(err)
	}
	h := &confHost{name: name, n: n, port: n.Underlay.String(), addr: netip.AddrFrom4([4]byte{198, 19, 0, byte(n.Index)}),
		ifindex: l.Attrs().Index, socks: map[int]bool{}}
	// Sockets hold their namespace: close them before it goes (cleanups
	// run last registered first, and the Net's was registered before).
	t.Cleanup(h.closeAll)
	h.rec = confRecord(t, n, h.ifindex)
	h.sender = h.udpSender(t, h.addr)
	for _, kv := range []string{
		"net.ipv4.conf." + confTAP + ".igmpv3_unsolicited_report_interval=100",
		"net.ipv4.conf." + confTAP + ".igmpv2_unsolicited_report_interval=100",
	} {
		if out, err := n.Exec(t, "sysctl", "-qw", kv); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	if gate {
		// "changes" counts the host's state-change reports (v3 reports
		// whose first record is TO_IN, TO_EX, ALLOW or BLOCK) before
		// the gate, whatever it lets through.
		script := `add table netdev mcconf; ` +
			`add chain netdev mcconf out { type filter hook egress device "` + confTAP + `" priority 0; policy accept; }; ` +
			`add chain netdev mcconf gate; ` +
			`add rule netdev mcconf out ip protocol igmp @th,0,8 0x22 @th,64,8 3-6 counter comment "changes"; ` +
			`add rule netdev mcconf out ip protocol igmp jump gate`
		if out, err := n.Exec(t, "nft", script); err != nil {
			nstest.SkipOrFail(t, "nftables netdev egress on %s is not available (Linux 5.16): %v\n%s", confTAP, err, out)
		}
	}
	return h
}

// socket opens a UDP socket in the host's namespace.
func (h *confHost) socket(t *testing.T) int {
	t.Helper()
	fd := -1
	if err := h.n.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("%s: socket: %v", h.name, err)
	}
	h.mu.Lock()
	h.socks[fd] = true
	h.mu.Unlock()
	return fd
}

// udpSender opens a socket that sends multicast from a out of the TAP.
func (h *confHost) udpSender(t *testing.T, a netip.Addr) int {
	t.Helper()
	fd := h.socket(t)
	for _, err := range []error{
		unix.Bind(fd, &unix.SockaddrInet4{Addr: a.As4()}),
		unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Address: a.As4(), Ifindex: int32(h.ifindex)}),
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1),
	} {
		if err != nil {
			t.Fatalf("%s: sender socket on %s: %v", h.name, a, err)
		}
	}
	return fd
}

func (h *confHost) closeSock(t *testing.T, fd int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.socks[fd] {
		delete(h.socks, fd)
		if err := unix.Close(fd); err != nil {
			t.Errorf("%s: close: %v", h.name, err)
		}
	}
}

func (h *confHost) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for fd := range h.socks {
		unix.Close(fd)
		delete(h.socks, fd)
	}
}

func (h *confHost) mreqn(g netip.Addr) *unix.IPMreqn {
	return &unix.IPMreqn{Multiaddr: g.As4(), Ifindex: int32(h.ifindex)}
}

// join is IP_ADD_MEMBERSHIP: an any-source join, EXCLUDE {}.
func (h *confHost) join(t *testing.T, fd int, g netip.Addr) {
	t.Helper()
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, h.mreqn(g)); err != nil {
		t.Fatalf("%s: IP_ADD_MEMBERSHIP %s: %v", h.name, g, err)
	}
}

// leave is IP_DROP_MEMBERSHIP.
func (h *confHost) leave(t *testing.T, fd int, g netip.Addr) {
	t.Helper()
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_DROP_MEMBERSHIP, h.mreqn(g)); err != nil {
		t.Fatalf("%s: IP_DROP_MEMBERSHIP %s: %v", h.name, g, err)
	}
}

var confOptNames = map[int]string{
	unix.IP_ADD_SOURCE_MEMBERSHIP: "IP_ADD_SOURCE_MEMBERSHIP", unix.IP_DROP_SOURCE_MEMBERSHIP: "IP_DROP_SOURCE_MEMBERSHIP",
	unix.IP_BLOCK_SOURCE: "IP_BLOCK_SOURCE", unix.IP_UNBLOCK_SOURCE: "IP_UNBLOCK_SOURCE",
}

// srcOpt calls opt (IP_ADD_SOURCE_MEMBERSHIP, IP_DROP_SOURCE_MEMBERSHIP,
// IP_BLOCK_SOURCE or IP_UNBLOCK_SOURCE) once per source: a struct
// ip_mreq_source of the group, the host's address and the source.
func (h *confHost) srcOpt(t *testing.T, fd, opt int, g netip.Addr, labels ...string) {
	t.Helper()
	for _, l := range labels {
		var b []byte
		for _, a := range []netip.Addr{g, h.addr, confSrc(l)} {
			a4 := a.As4()
			b = append(b, a4[:]...)
		}
		if err := unix.SetsockoptString(fd, unix.IPPROTO_IP, opt, string(b)); err != nil {
			t.Fatalf("%s: %s %s source %s: %v", h.name, confOptNames[opt], g, confSrc(l), err)
		}
	}
}

// msfilter is IP_MSFILTER (setsourcefilter): the socket's filter for g
// becomes mode (unix.MCAST_INCLUDE or MCAST_EXCLUDE) with sources, in one
// call, so that the kernel reports the change as one record.
func (h *confHost) msfilter(t *testing.T, fd int, g netip.Addr, mode uint32, labels ...string) {
	t.Helper()
	ga, ia := g.As4(), h.addr.As4()
	b := append(append([]byte{}, ga[:]...), ia[:]...)
	b = binary.NativeEndian.AppendUint32(b, mode)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(labels)))
	for _, l := range labels {
		a := confSrc(l).As4()
		b = append(b, a[:]...)
	}
	if len(labels) == 0 {
		b = append(b, 0, 0, 0, 0) // struct ip_msfilter holds one source at least
	}
	if err := unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_MSFILTER, string(b)); err != nil {
		t.Fatalf("%s: IP_MSFILTER %s mode %d %v: %v", h.name, g, mode, labels, err)
	}
}

// sysctl sets net.ipv4.conf.IFACE.KEY in the host's namespace.
func (h *confHost) sysctl(t testing.TB, iface, key, val string) error {
	out, err := h.n.Exec(t, "sysctl", "-qw", "net.ipv4.conf."+iface+"."+key+"="+val)
	if err != nil {
		return fmt.Errorf("%s: sysctl %s.%s=%s: %v\n%s", h.name, iface, key, val, err, out)
	}
	return nil
}

// force sets force_igmp_version on the host's TAP: 1, 2, 3, or 0 (any).
func (h *confHost) force(t *testing.T, v int) {
	t.Helper()
	if err := h.sysctl(t, confTAP, "force_igmp_version", strconv.Itoa(v)); err != nil {
		t.Fatal(err)
	}
}

// The gate's modes: what it drops of the IGMP the host sends.
var confGates = map[string]string{
	"none":    "",
	"changes": "@th,0,8 0x22 @th,64,8 3-6 counter drop", // state-change reports: TO_IN, TO_EX, ALLOW, BLOCK
	"current": "@th,0,8 0x22 @th,64,8 1-2 counter drop", // current-state reports: IS_IN, IS_EX (query answers)
	"all":     "counter drop",                           // everything: the host is silent
}

// gate sets what the nftables gate at the egress of the host's TAP drops.
func (h *confHost) gate(t *testing.T, mode string) {
	t.Helper()
	if err := h.setGate(t, mode); err != nil {
		t.Fatal(err)
	}
}

func (h *confHost) setGate(t testing.TB, mode string) error {
	rule, ok := confGates[mode]
	if !ok {
		panic("conf: gate " + mode)
	}
	script := "flush chain netdev mcconf gate"
	if rule != "" {
		script += "; add rule netdev mcconf gate " + rule
	}
	if out, err := h.n.Exec(t, "nft", script); err != nil {
		return fmt.Errorf("%s: gate %s: %v\n%s", h.name, mode, err, out)
	}
	return nil
}

var confChangesRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "changes"`)

// changes returns how many state-change reports the host has sent, the
// gate's drops included.
func (h *confHost) changes(t testing.TB) (uint64, error) {
	out, err := h.n.Exec(t, "nft", "list", "chain", "netdev", "mcconf", "out")
	if err != nil {
		return 0, err
	}
	mm := confChangesRE.FindStringSubmatch(out)
	if mm == nil {
		return 0, fmt.Errorf("no changes counter in:\n%s", out)
	}
	return strconv.ParseUint(mm[1], 10, 64)
}

// settle waits until the host has sent at least n state-change reports
// since c0 and then none for confQuiet: the kernel sends each change
// robustness times (from the QRV of the last query it heard), a report
// timer armed again by every call, within 100 ms of each other.
func (h *confHost) settle(t testing.TB, c0 uint64, n uint64) error {
	deadline := time.Now().Add(10 * time.Second)
	last, lastAt := c0, time.Now()
	for {
		c, err := h.changes(t)
		if err != nil {
			return err
		}
		if c != last {
			last, lastAt = c, time.Now()
		}
		if last >= c0+n && time.Since(lastAt) >= confQuiet {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d state-change reports after 10s, want %d more than %d and then quiet", h.name, last, n, c0)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// change runs ops, which change the host's IGMPv3 state, and waits until
// the host has sent every report of the change (through the gate or into
// it). It returns when ops began.
func (h *confHost) change(t *testing.T, ops func()) time.Time {
	t.Helper()
	c0, err := h.changes(t)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ops()
	if err := h.settle(t, c0, 2); err != nil {
		t.Fatal(err)
	}
	return start
}

// marker sends a datagram from the host to 224.0.0.200 (every peer) and
// returns its port.
func (h *confHost) marker(t *testing.T, m *confMesh) int {
	t.Helper()
	port := confPortBase + int(m.seq.Add(1))
	if err := unix.Sendto(h.sender, make([]byte, 16), 0, &unix.SockaddrInet4{Port: port, Addr: confMarker.As4()}); err != nil {
		t.Fatalf("%s: marker: %v", h.name, err)
	}
	return port
}

// waitMarker waits until the marker on port from from reached h's TAP.
func (h *confHost) waitMarker(t *testing.T, from *confHost, port int) {
	t.Helper()
	h.rec.wait(t, fmt.Sprintf("%s's marker at %s", from.name, h.name), 10*time.Second, func(p *confPkt) bool {
		return !p.out && p.proto == unix.IPPROTO_UDP && p.src == from.addr && p.dst == confMarker && p.dport == port
	})
}

// sent returns the records about g in the IGMP the host sent since (what
// passed the gate), as "TO_EX{1,20,30}", "v2 report" and so on.
func (h *confHost) sent(g netip.Addr, since time.Time) []string {
	var out []string
	for _, p := range h.rec.filter(func(p *confPkt) bool { return p.out && p.proto == unix.IPPROTO_IGMP && !p.at.Before(since) }) {
		out = append(out, confDescribe(p.igmp, g)...)
	}
	return out
}

// ---------------------------------------------------------------------------
// The recorder

// confPkt is an IGMP message, or a UDP datagram to a multicast group, that
// crossed a TAP.
type confPkt struct {
	at       time.Time
	out      bool // sent by the host; else written into the TAP by the daemon
	src, dst netip.Addr
	proto    int
	dport    int
	n        int // UDP: the datagrams it carries (a frame the daemon coalesced carries several)
	igmp     []byte
}

// confRecorder records what crosses a TAP, through an AF_PACKET socket in
// the host's namespace (which sees what the gate let out, and everything
// the daemon writes in).
type confRecorder struct {
	fd   int
	stop atomic.Bool
	done chan struct{}
	mu   sync.Mutex
	pkts []confPkt
}

func confRecord(t *testing.T, n *nstest.Node, ifindex int) *confRecorder {
	t.Helper()
	r := &confRecorder{fd: -1, done: make(chan struct{})}
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(confHtons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		r.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: confHtons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		t.Fatalf("%s: AF_PACKET socket on %s: %v", n, confTAP, err)
	}
	go r.loop()
	t.Cleanup(r.close)
	return r
}

func (r *confRecorder) close() {
	r.stop.Store(true)
	<-r.done
	unix.Close(r.fd)
}

func (r *confRecorder) loop() {
	defer close(r.done)
	buf := make([]byte, 1<<16)
	for !r.stop.Load() {
		n, from, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Protocol != confHtons(unix.ETH_P_IP) {
			continue
		}
		p, ok := confParseIPv4(buf[:n])
		if !ok {
			continue
		}
		p.out = ll.Pkttype == unix.PACKET_OUTGOING
		p.at = time.Now()
		r.mu.Lock()
		r.pkts = append(r.pkts, p)
		r.mu.Unlock()
	}
}

// confParseIPv4 keeps IGMP, and UDP to multicast groups.
func confParseIPv4(b []byte) (confPkt, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return confPkt{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || total > len(b) {
		return confPkt{}, false
	}
	p := confPkt{src: netip.AddrFrom4([4]byte(b[12:16])), dst: netip.AddrFrom4([4]byte(b[16:20])), proto: int(b[9])}
	switch p.proto {
	case unix.IPPROTO_IGMP:
		p.igmp = slices.Clone(b[ihl:total])
		return p, true
	case unix.IPPROTO_UDP:
		if total-ihl < 8 || !p.dst.IsMulticast() {
			return confPkt{}, false
		}
		p.dport = int(binary.BigEndian.Uint16(b[ihl+2:]))
		// The daemon hands the TAP a run of datagrams of one flow as one
		// UDP segmentation frame (virtio-net GSO, Linux 6.2): one UDP
		// header, then the payloads. The tests' payloads are
		// confPayload bytes.
		p.n = 1
		if payload := total - ihl - 8; payload > confPayload && payload%confPayload == 0 {
			p.n = payload / confPayload
		}
		return p, true
	}
	return confPkt{}, false
}

func (r *confRecorder) filter(ok func(*confPkt) bool) []confPkt {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []confPkt
	for i := range r.pkts {
		if ok(&r.pkts[i]) {
			out = append(out, r.pkts[i])
		}
	}
	return out
}

func (r *confRecorder) wait(t *testing.T, what string, timeout time.Duration, ok func(*confPkt) bool) confPkt {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ps := r.filter(ok); len(ps) > 0 {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var confRecordNames = map[uint8]string{
	igmp.ModeIsInclude: "IS_IN", igmp.ModeIsExclude: "IS_EX", igmp.ChangeToInclude: "TO_IN",
	igmp.ChangeToExclude: "TO_EX", igmp.AllowNewSources: "ALLOW", igmp.BlockOldSources: "BLOCK",
}

// confDescribe returns what an IGMP message says about group g: its v3
// records for g ("TO_EX{1,20,30}"), or "v1 report", "v2 report", "v2
// leave", "query".
func confDescribe(b []byte, g netip.Addr) []string {
	m, r := igmp.Parse(b)
	if r != igmp.OK {
		return nil
	}
	switch m.Type() {
	case igmp.TypeV1Report, igmp.TypeV2Report, igmp.TypeV2Leave:
		if m.Group() == g {
			return []string{map[uint8]string{igmp.TypeV1Report: "v1 report", igmp.TypeV2Report: "v2 report", igmp.TypeV2Leave: "v2 leave"}[m.Type()]}
		}
	case igmp.TypeQuery:
		if m.Group() == g || !m.Group().IsValid() || m.Group().IsUnspecified() {
			return []string{"query"}
		}
	case igmp.TypeV3Report:
		var out []string
		it := m.Records()
		for rec, ok := it.Next(); ok; rec, ok = it.Next() {
			if rec.Group() != g {
				continue
			}
			var srcs []string
			for i := range rec.NumSources() {
				srcs = append(srcs, confLabel(rec.Source(i)))
			}
			out = append(out, confRecordNames[rec.Type()]+"{"+strings.Join(confSorted(srcs), ",")+"}")
		}
		return out
	}
	return nil
}

// confKinds returns the distinct descriptions, sorted.
func confKinds(recs []string) []string {
	out := slices.Clone(recs)
	slices.Sort(out)
	return slices.Compact(out)
}

// confUnion returns the union of the sources of the records of type typ,
// and whether every record is of that type.
func confUnion(recs []string, typ string) ([]string, bool) {
	var srcs []string
	only := true
	for _, r := range recs {
		name, rest, _ := strings.Cut(r, "{")
		if name != typ {
			only = false
			continue
		}
		for _, s := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			if s != "" && !slices.Contains(srcs, s) {
				srcs = append(srcs, s)
			}
		}
	}
	return confSorted(srcs), only
}

// ---------------------------------------------------------------------------
// bridge_igmp.sh

// confScen is one bridge_igmp.sh scenario on one host: h reports, A
// observes; the other host is not a member of g.
type confScen struct {
	t     *testing.T
	m     *confMesh
	h     *confHost
	g     netip.Addr
	start time.Time
}

func (s *confScen) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("[%5.1fs] %s", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *confScen) want(step string, w confWant) *control.Member {
	s.t.Helper()
	mem := s.m.waitMember(s.t, s.h, s.g, w.String(), w.match)
	s.logf("%s: A holds %s", step, confShow(mem))
	return mem
}

func (s *confScen) fwd(step string, labels ...string) {
	s.t.Helper()
	s.m.fwd(s.t, s.g, step, map[*confHost][]string{s.h: labels})
}

// sentChanges checks that the state-change records about g that left the
// host since are all of type typ and together list labels.
func (s *confScen) sentChanges(since time.Time, typ string, labels ...string) {
	s.t.Helper()
	var changes []string
	for _, r := range s.h.sent(s.g, since) {
		if !strings.HasPrefix(r, "IS_") {
			changes = append(changes, r)
		}
	}
	union, only := confUnion(changes, typ)
	if !only || !slices.Equal(union, confSorted(labels)) || len(changes) == 0 {
		s.t.Fatalf("the host sent %v, want %s records listing {%s} together", changes, typ, strings.Join(confSorted(labels), ","))
	}
	s.logf("the kernel sent %v", confKinds(changes))
}

// sentCurrent checks that no state-change record about g left the host
// since (the gate dropped them), and that rec did: A learned the state
// from the host's answers to queries alone.
func (s *confScen) sentCurrent(since time.Time, rec string) {
	s.t.Helper()
	recs := s.h.sent(s.g, since)
	for _, r := range recs {
		if !strings.HasPrefix(r, "IS_") {
			s.t.Fatalf("a state-change record %s passed the gate (the host sent %v)", r, recs)
		}
	}
	if !slices.Contains(recs, rec) {
		s.t.Fatalf("the host sent %v, want %s among them", recs, rec)
	}
	s.logf("the host's answers to queries: %v (its state changes were dropped)", confKinds(recs))
}

// incPrepare is v3include_prepare, IS_IN {1,2,3}: socket X includes 1, 2
// and 3 (IP_ADD_SOURCE_MEMBERSHIP). The kernel announces them in ALLOW
// records, which the gate drops; A learns INCLUDE {1,2,3} (RFC 3376
// 6.4.1: INCLUDE (A) IS_IN (B) -> INCLUDE (A+B), (B)=GMI) from the
// IS_IN {1,2,3} the host sends in answer to B's next general query.
func (s *confScen) incPrepare() int {
	s.t.Helper()
	s.h.gate(s.t, "changes")
	x := s.h.socket(s.t)
	since := s.h.change(s.t, func() { s.h.srcOpt(s.t, x, unix.IP_ADD_SOURCE_MEMBERSHIP, s.g, "1", "2", "3") })
	s.want("v3include_prepare", confWant{mode: "include", sources: []string{"1", "2", "3"}, version: 3})
	s.sentCurrent(since, "IS_IN{1,2,3}")
	return x
}

// excPrepare is the IS_EX step of v3exclude_prepare on incPrepare's state:
// the host goes to EXCLUDE {1,2,20,21}: socket Y joins the group
// (IP_ADD_MEMBERSHIP) and blocks 1, 2, 20 and 21 (IP_BLOCK_SOURCE), then X
// closes. Its TO_EX and BLOCK records are dropped; A learns the state
// from the IS_EX {1,2,20,21} of the next answer: INCLUDE (A) IS_EX (B) ->
// EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), Group Timer=GMI (6.4.1):
// X = {1,2} keep their timers from the IS_IN, Y = {20,21}, 3 is deleted.
func (s *confScen) excPrepare(x int) int {
	s.t.Helper()
	y := s.h.socket(s.t)
	since := s.h.change(s.t, func() {
		s.h.join(s.t, y, s.g)
		s.h.srcOpt(s.t, y, unix.IP_BLOCK_SOURCE, s.g, "1", "2", "20", "21")
		s.h.closeSock(s.t, x)
	})
	s.want("v3exclude_prepare", confWant{mode: "exclude", sources: []string{"1", "2"}, blocked: []string{"20", "21"}, version: 3})
	s.sentCurrent(since, "IS_EX{1,2,20,21}")
	return y
}

type confBridgeCase struct {
	selftest string
	rfc      string
	run      func(s *confScen)
}

// confBridgeCases are the thirteen tests of bridge_igmp.sh that one
// reporting host plays; v3star_ex_auto_add_test needs two (see
// testConfStarExAutoAdd).
var confBridgeCases = []confBridgeCase{
	{"v2reportleave_test", "RFC 2236 2, 3; RFC 3376 7.3.2, 6.4.1, 6.4.2, 6.6.3.1, 6.5", func(s *confScen) {
		// The host is forced to IGMPv2: IP_ADD_MEMBERSHIP sends a v2
		// report, IP_DROP_MEMBERSHIP a leave (the host was the last to
		// report). A: EXCLUDE ({}, {}) in v2 compatibility mode, every
		// source forwarded; after the leave the group timer drops to
		// LMQT and the entry goes, and nothing is forwarded
		// (--unregistered drop).
		s.h.force(s.t, 2)
		fd := s.h.socket(s.t)
		s.h.join(s.t, fd, s.g)
		s.want("v2 report", confWant{mode: "exclude", version: 2})
		s.fwd("v2 report", confLabels...)
		left := time.Now()
		s.h.leave(s.t, fd, s.g)
		s.h.rec.wait(s.t, "the host's v2 leave", 10*time.Second, func(p *confPkt) bool {
			return p.out && p.proto == unix.IPPROTO_IGMP && slices.Contains(confDescribe(p.igmp, s.g), "v2 leave")
		})
		s.want("v2 leave", confWant{})
		took := time.Since(left)
		s.logf("the entry went %v after the leave (LMQT %v, GMI %v)", took.Round(10*time.Millisecond), confLMQT, confGMI)
		if took > confLMQT+2*time.Second {
			s.t.Errorf("the entry went %v after the leave, want within LMQT %v (+2s): the leave did not lower the group timer", took, confLMQT)
		}
		s.fwd("after the leave")
	}},
	{"v3include_test", "RFC 3376 6.4.1 INCLUDE (A) IS_IN (B) -> INCLUDE (A+B), (B)=GMI", func(s *confScen) {
		s.incPrepare()
		s.fwd("v3include", "1", "2", "3")
	}},
	{"v3inc_allow_test", "RFC 3376 6.4.2 INCLUDE (A) ALLOW (B) -> INCLUDE (A+B), (B)=GMI", func(s *confScen) {
		// X also includes 10, 11 and 12: ALLOW {10,11,12}; the gate now
		// drops the answers to queries, so that A learns it from the
		// ALLOW.
		x := s.incPrepare()
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.srcOpt(s.t, x, unix.IP_ADD_SOURCE_MEMBERSHIP, s.g, "10", "11", "12") })
		s.sentChanges(since, "ALLOW", "10", "11", "12")
		all := []string{"1", "2", "3", "10", "11", "12"}
		s.want("ALLOW {10,11,12}", confWant{mode: "include", sources: all, version: 3})
		s.fwd("v3inc_allow", all...)
	}},
	{"v3inc_is_include_test", "RFC 3376 6.4.1 INCLUDE (A) IS_IN (B) -> INCLUDE (A+B), (B)=GMI; 6.3", func(s *confScen) {
		// The host switches X to {10,11,12} (joins 10-12, drops 1-3);
		// its ALLOW and BLOCK are dropped, so A hears only its next
		// answer, IS_IN {10,11,12}: INCLUDE ({1,2,3}) IS_IN
		// ({10,11,12}) -> INCLUDE ({1,2,3,10,11,12}), exactly the
		// selftest's record and state.
		x := s.incPrepare()
		since := s.h.change(s.t, func() {
			s.h.srcOpt(s.t, x, unix.IP_ADD_SOURCE_MEMBERSHIP, s.g, "10", "11", "12")
			s.h.srcOpt(s.t, x, unix.IP_DROP_SOURCE_MEMBERSHIP, s.g, "1", "2", "3")
		})
		all := []string{"1", "2", "3", "10", "11", "12"}
		s.want("IS_IN {10,11,12}", confWant{mode: "include", sources: all, version: 3})
		s.sentCurrent(since, "IS_IN{10,11,12}")
		s.fwd("v3inc_is_include", all...)
		// Past the selftest: nobody reports 1, 2, 3 again; they run out
		// GMI after the IS_IN that listed them, and in INCLUDE an
		// expired source is deleted (6.3).
		s.want("1, 2, 3 timed out", confWant{mode: "include", sources: []string{"10", "11", "12"}, version: 3})
		s.fwd("after GMI", "10", "11", "12")
	}},
	{"v3inc_is_exclude_test", "RFC 3376 6.4.1 INCLUDE (A) IS_EX (B) -> EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), Group Timer=GMI; 6.3", func(s *confScen) {
		x := s.incPrepare()
		s.excPrepare(x)
		s.fwd("v3inc_is_exclude", confExcept("20", "21")...)
		// Past the selftest: 1 and 2 are never reported again as
		// wanted; in EXCLUDE an expired source stops being forwarded
		// and keeps its record (6.3), while the host's IS_EX answers
		// keep the group timer running.
		s.want("X timed out", confWant{mode: "exclude", blocked: []string{"1", "2", "20", "21"}, version: 3})
		s.fwd("after GMI", confExcept("1", "2", "20", "21")...)
	}},
	{"v3inc_to_exclude_test", "RFC 3376 6.4.2 INCLUDE (A) TO_EX (B) -> EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), Send Q(G,A*B), Group Timer=GMI; 6.6.3.2; 6.3", func(s *confScen) {
		// X's filter becomes EXCLUDE {1,20,30} in one IP_MSFILTER
		// call: the kernel sends TO_EX {1,20,30}. X = {1} with its
		// timer lowered to LMQT by Q(G,{1}), Y = {20,30}, 2 and 3
		// deleted; nobody wants 1, so after LMQT it joins Y.
		x := s.incPrepare()
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.msfilter(s.t, x, s.g, unix.MCAST_EXCLUDE, "1", "20", "30") })
		s.sentChanges(since, "TO_EX", "1", "20", "30")
		s.want("TO_EX {1,20,30}", confWant{mode: "exclude", sources: []string{"1"}, blocked: []string{"20", "30"}, version: 3})
		s.fwd("v3inc_to_exclude", confExcept("20", "30")...)
		s.want("after LMQT", confWant{mode: "exclude", blocked: []string{"1", "20", "30"}, version: 3})
		if took := time.Since(since); took > confLMQT+3*time.Second {
			s.t.Errorf("1 was blocked %v after the TO_EX, want within LMQT %v", took, confLMQT)
		}
		s.fwd("after LMQT", confExcept("1", "20", "30")...)
	}},
	{"v3exc_allow_test", "RFC 3376 6.4.2 EXCLUDE (X,Y) ALLOW (A) -> EXCLUDE (X+A, Y-A), (A)=GMI", func(s *confScen) {
		// The host stops blocking 20 (IP_UNBLOCK_SOURCE): ALLOW {20}.
		// The selftest's ALLOW {20,30} cannot come from a host whose
		// exclusion list never held 30. X = {1,2,20}, Y = {21}.
		x := s.incPrepare()
		y := s.excPrepare(x)
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.srcOpt(s.t, y, unix.IP_UNBLOCK_SOURCE, s.g, "20") })
		s.sentChanges(since, "ALLOW", "20")
		s.want("ALLOW {20}", confWant{mode: "exclude", sources: []string{"1", "2", "20"}, blocked: []string{"21"}, version: 3})
		s.fwd("v3exc_allow", confExcept("21")...)
	}},
	{"v3exc_is_include_test", "RFC 3376 6.4.1 EXCLUDE (X,Y) IS_IN (A) -> EXCLUDE (X+A, Y-A), (A)=GMI; 6.5", func(s *confScen) {
		// The host goes to INCLUDE {20,30} (socket Z includes 20 and
		// 30, Y closes); its TO_IN is dropped, and A hears IS_IN
		// {20,30}: X = {1,2,20,30}, Y = {21}.
		x := s.incPrepare()
		y := s.excPrepare(x)
		z := s.h.socket(s.t)
		since := s.h.change(s.t, func() {
			s.h.srcOpt(s.t, z, unix.IP_ADD_SOURCE_MEMBERSHIP, s.g, "20", "30")
			s.h.closeSock(s.t, y)
		})
		s.want("IS_IN {20,30}", confWant{mode: "exclude", sources: []string{"1", "2", "20", "30"}, blocked: []string{"21"}, version: 3})
		s.sentCurrent(since, "IS_IN{20,30}")
		s.fwd("v3exc_is_include", confExcept("21")...)
		// Past the selftest: no IS_EX refreshes the group timer any
		// more; when it runs out the entry falls back to INCLUDE of
		// the sources whose timers run (6.5), the host's {20,30}.
		s.want("group timer expired", confWant{mode: "include", sources: []string{"20", "30"}, version: 3})
		s.fwd("after GMI", "20", "30")
	}},
	{"v3exc_is_exclude_test", "RFC 3376 6.4.1 EXCLUDE (X,Y) IS_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=GMI, Delete (X-A), Delete (Y-A), Group Timer=GMI", func(s *confScen) {
		// The host's exclusion list becomes {20,30} (unblock 1, 2, 21;
		// block 30); its ALLOW and BLOCK are dropped, A hears IS_EX
		// {20,30}: X = {30}, Y = {20}; 1, 2 and 21 deleted.
		x := s.incPrepare()
		y := s.excPrepare(x)
		since := s.h.change(s.t, func() {
			s.h.srcOpt(s.t, y, unix.IP_UNBLOCK_SOURCE, s.g, "1", "2", "21")
			s.h.srcOpt(s.t, y, unix.IP_BLOCK_SOURCE, s.g, "30")
		})
		s.want("IS_EX {20,30}", confWant{mode: "exclude", sources: []string{"30"}, blocked: []string{"20"}, version: 3})
		s.sentCurrent(since, "IS_EX{20,30}")
		s.fwd("v3exc_is_exclude", confExcept("20")...)
	}},
	{"v3exc_to_exclude_test", "RFC 3376 6.4.2 EXCLUDE (X,Y) TO_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=Group Timer, Delete (X-A), Delete (Y-A), Send Q(G,A-Y), Group Timer=GMI; 6.6.3.2; 6.3", func(s *confScen) {
		// A host sends TO_EX only when it leaves INCLUDE. Y's filter
		// becomes INCLUDE {2} (its TO_IN {2} is lost: the gate drops
		// everything), then EXCLUDE {1,20,30} in one IP_MSFILTER call:
		// TO_EX {1,20,30} reaches A, whose state is still EXCLUDE
		// ({1,2}, {20,21}). X = {1,30} at LMQT, Y = {20}; 2 and 21
		// deleted; after LMQT 1 and 30 join Y.
		x := s.incPrepare()
		y := s.excPrepare(x)
		s.h.gate(s.t, "all")
		lost := s.h.change(s.t, func() { s.h.msfilter(s.t, y, s.g, unix.MCAST_INCLUDE, "2") })
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.msfilter(s.t, y, s.g, unix.MCAST_EXCLUDE, "1", "20", "30") })
		if recs := s.h.sent(s.g, lost); slices.ContainsFunc(recs, func(r string) bool { return strings.HasPrefix(r, "TO_IN") }) {
			s.t.Fatalf("the lost TO_IN passed the gate: %v", recs)
		}
		s.sentChanges(since, "TO_EX", "1", "20", "30")
		s.want("TO_EX {1,20,30}", confWant{mode: "exclude", sources: []string{"1", "30"}, blocked: []string{"20"}, version: 3})
		s.fwd("v3exc_to_exclude", confExcept("20")...)
		s.want("after LMQT", confWant{mode: "exclude", blocked: []string{"1", "20", "30"}, version: 3})
		s.fwd("after LMQT", confExcept("1", "20", "30")...)
	}},
	{"v3inc_block_test", "RFC 3376 6.4.2 INCLUDE (A) BLOCK (B) -> INCLUDE (A), Send Q(G,A*B); 6.6.3.2; 6.3", func(s *confScen) {
		// A host BLOCKs only sources it included: X includes 20 and 30
		// too (that ALLOW is lost), then drops 1, 20 and 30 (IP_DROP_
		// SOURCE_MEMBERSHIP): BLOCK {1,20,30}, the selftest's record.
		// A keeps INCLUDE {1,2,3} with 1 at LMQT; after LMQT 1 is
		// deleted.
		x := s.incPrepare()
		s.h.gate(s.t, "all")
		s.h.change(s.t, func() { s.h.srcOpt(s.t, x, unix.IP_ADD_SOURCE_MEMBERSHIP, s.g, "20", "30") })
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.srcOpt(s.t, x, unix.IP_DROP_SOURCE_MEMBERSHIP, s.g, "1", "20", "30") })
		s.sentChanges(since, "BLOCK", "1", "20", "30")
		// From now on the host's answers (IS_IN {2,3}) refresh 2 and 3.
		s.h.gate(s.t, "changes")
		s.want("BLOCK {1,20,30}", confWant{mode: "include", sources: []string{"1", "2", "3"}, version: 3})
		s.fwd("v3inc_block", "1", "2", "3")
		s.want("after LMQT", confWant{mode: "include", sources: []string{"2", "3"}, version: 3})
		took := time.Since(since)
		s.logf("1 went %v after the BLOCK (LMQT %v)", took.Round(10*time.Millisecond), confLMQT)
		if took > confLMQT+3*time.Second {
			s.t.Errorf("1 went %v after the BLOCK, want within LMQT %v", took, confLMQT)
		}
		s.fwd("after LMQT", "2", "3")
	}},
	{"v3exc_block_test", "RFC 3376 6.4.2 EXCLUDE (X,Y) BLOCK (A) -> EXCLUDE (X+(A-Y), Y), (A-X-Y)=Group Timer, Send Q(G,A-Y); 6.6.3.2; 6.3", func(s *confScen) {
		// The host unblocks 1 (that ALLOW is lost), then blocks 1 and
		// 30: BLOCK {1,30}; the selftest's BLOCK {1,20,30} also names
		// 20, which this host already blocks (20 is in Y, so the state
		// is the same). X = {1,2,30} with 1 and 30 at LMQT, Y =
		// {20,21}; after LMQT 1 and 30 join Y.
		x := s.incPrepare()
		y := s.excPrepare(x)
		s.h.gate(s.t, "all")
		s.h.change(s.t, func() { s.h.srcOpt(s.t, y, unix.IP_UNBLOCK_SOURCE, s.g, "1") })
		s.h.gate(s.t, "current")
		since := s.h.change(s.t, func() { s.h.srcOpt(s.t, y, unix.IP_BLOCK_SOURCE, s.g, "1", "30") })
		s.sentChanges(since, "BLOCK", "1", "30")
		s.want("BLOCK {1,30}", confWant{mode: "exclude", sources: []string{"1", "2", "30"}, blocked: []string{"20", "21"}, version: 3})
		s.fwd("v3exc_block", confExcept("20", "21")...)
		s.want("after LMQT", confWant{mode: "exclude", sources: []string{"2"}, blocked: []string{"1", "20", "21", "30"}, version: 3})
		s.fwd("after LMQT", confExcept("1", "20", "21", "30")...)
	}},
	{"v3exc_timeout_test", "RFC 3376 6.4.2 EXCLUDE (X,Y) ALLOW (A); 6.3; 6.5: group timer expiry, EXCLUDE -> INCLUDE of the running sources", func(s *confScen) {
		// The host stops answering queries (the gate drops its
		// current-state reports) and, 4 s after its last IS_EX,
		// unblocks 20: ALLOW {20} (the selftest: ALLOW {20,30}, and it
		// lengthens GMI instead, so that 20 and 30 outlive the group
		// timer). Then it is silent altogether. 1 and 2 run out (Y),
		// then the group timer: INCLUDE {20}, Y dropped, 1, 2 and the
		// other source no longer forwarded; then 20 runs out: no entry.
		x := s.incPrepare()
		y := s.excPrepare(x)
		s.h.gate(s.t, "current")
		s.m.waitMember(s.t, s.h, s.g, "a group timer 4s short of GMI", func(mem *control.Member) bool {
			return mem != nil && mem.ExpiresSeconds <= (confGMI-4*time.Second).Seconds()
		})
		since := s.h.change(s.t, func() { s.h.srcOpt(s.t, y, unix.IP_UNBLOCK_SOURCE, s.g, "20") })
		s.h.gate(s.t, "all")
		s.sentChanges(since, "ALLOW", "20")
		mem := s.m.waitMember(s.t, s.h, s.g, "20 requested, 21 blocked", func(mem *control.Member) bool {
			return mem != nil && mem.Mode == "exclude" && slices.Contains(confLabelsOf(mem.Sources), "20") &&
				slices.Contains(confLabelsOf(mem.Blocked), "21") && !slices.Contains(confLabelsOf(mem.Blocked), "20")
		})
		s.logf("ALLOW {20}: A holds %s", confShow(mem))
		s.want("1 and 2 timed out", confWant{mode: "exclude", sources: []string{"20"}, blocked: []string{"1", "2", "21"}, version: 3})
		s.want("group timer expired", confWant{mode: "include", sources: []string{"20"}, version: 3})
		s.fwd("v3exc_timeout", "20")
		s.want("20 timed out", confWant{})
		s.fwd("no entry")
	}},
}

// TestIntegrationConformanceBridge ports the 14 tests of the Linux bridge
// selftest bridge_igmp.sh to real IGMPv3 and IGMPv2 hosts (the kernels of
// nodes B and C) reporting through the overlay to node A, whose table and
// forwarding are checked: the table by `meshcast status --json` (filter
// mode, sources with timers, blocked sources, version), forwarding by
// datagrams from each of the selftest's sources, counted at the hosts'
// TAPs. The thirteen one-host tests run two at a time, one on B's host and
// one on C's, each on a group of its own; v3star_ex_auto_add_test then
// needs both hosts. See the top of the file for what a real host cannot
// send and how the selftest's records are made.
func TestIntegrationConformanceBridge(t *testing.T) {
	t.Parallel()
	start := time.Now()
	m := confNewMesh(t, [3][]string{
		append(append([]string{"--unregistered", "drop"}, confTimers...), confAFlags...),
		append(append([]string{"--unregistered", "drop"}, confTimers...), confHostFlags...),
		append(append([]string{"--unregistered", "drop"}, confTimers...), confHostFlags...),
	})
	t.Logf("mesh up in %v", time.Since(start).Round(10*time.Millisecond))
	pool := make(chan *confHost, 2)
	pool <- m.b
	pool <- m.c
	t.Run("single", func(t *testing.T) {
		for i, tc := range confBridgeCases {
			g := netip.AddrFrom4([4]byte{239, 10, 10, byte(11 + i)})
			t.Run(strings.TrimSuffix(tc.selftest, "_test"), func(t *testing.T) {
				t.Parallel()
				h := <-pool
				defer func() { pool <- h }()
				s := &confScen{t: t, m: m, h: h, g: g, start: time.Now()}
				defer confReset(t, h)
				t.Logf("bridge_igmp.sh %s on %s's host, group %s; %s", tc.selftest, h.name, g, tc.rfc)
				tc.run(s)
				s.logf("done")
			})
		}
	})
	t.Run("v3star_ex_auto_add", func(t *testing.T) { testConfStarExAutoAdd(t, m) })
	t.Logf("runtime %v", time.Since(start).Round(100*time.Millisecond))
}

// confReset closes a scenario's sockets, opens the gate and undoes a
// forced version, so that the host is ready for the next scenario. It
// never stops the test.
func confReset(t *testing.T, h *confHost) {
	c0, err := h.changes(t)
	if err := h.setGate(t, "none"); err != nil {
		t.Error(err)
	}
	h.mu.Lock()
	for fd := range h.socks {
		if fd != h.sender {
			unix.Close(fd)
			delete(h.socks, fd)
		}
	}
	h.mu.Unlock()
	if err := h.sysctl(t, confTAP, "force_igmp_version", "0"); err != nil {
		t.Error(err)
	}
	if err == nil {
		// The leaves' reports; no more than quiet if there were none.
		_ = h.settle(t, c0, 0)
	}
}

// testConfStarExAutoAdd ports v3star_ex_auto_add_test: one port in
// EXCLUDE (the bridge's *,G EXCLUDE port) and another with INCLUDE {S}:
// traffic from S reaches both, traffic from another source only the
// EXCLUDE port. Here B's host includes 1, 2, 3 (h2's IS_IN {1,2,3}) and C's
// host is the EXCLUDE port, by an IGMPv3 any-source join (TO_EX {}), by an
// IGMPv2 join, or by the selftest's own v3exclude_prepare (EXCLUDE
// ({1,2},{20,21})); the any-source join is also made in both orders. RFC
// 3376 6.2.1, 6.3; RFC 4541 2.1.2.
func testConfStarExAutoAdd(t *testing.T, m *confMesh) {
	inc := []string{"1", "2", "3"}
	for i, v := range []struct {
		name         string
		excludeFirst bool
		exclude      func(s *confScen) // C's host joins
		cWant        confWant
		cFwd         []string
	}{
		{"v3 join/exclude port first", true, func(s *confScen) {
			s.h.join(s.t, s.h.socket(s.t), s.g)
		}, confWant{mode: "exclude", version: 3}, confLabels},
		{"v3 join/include port first", false, func(s *confScen) {
			s.h.join(s.t, s.h.socket(s.t), s.g)
		}, confWant{mode: "exclude", version: 3}, confLabels},
		{"v2 join", true, func(s *confScen) {
			s.h.force(s.t, 2)
			s.h.join(s.t, s.h.socket(s.t), s.g)
		}, confWant{mode: "exclude", version: 2}, confLabels},
		{"v3exclude_prepare", true, func(s *confScen) {
			s.excPrepare(s.incPrepare())
			s.h.gate(s.t, "current") // keep X = {1,2}: no more IS_EX
		}, confWant{mode: "exclude", sources: []string{"1", "2"}, blocked: []string{"20", "21"}, version: 3}, confExcept("20", "21")},
	} {
		g := netip.AddrFrom4([4]byte{239, 10, 11, byte(1 + i)})
		t.Run(v.name, func(t *testing.T) {
			sc := &confScen{t: t, m: m, h: m.c, g: g, start: time.Now()}
			defer confReset(t, m.b)
			defer confReset(t, m.c)
			includeB := func() {
				x := m.b.socket(t)
				m.b.srcOpt(t, x, unix.IP_ADD_SOURCE_MEMBERSHIP, g, inc...)
				m.want(t, m.b, g, "B's host includes {1,2,3}", confWant{mode: "include", sources: inc, version: 3})
			}
			if !v.excludeFirst {
				includeB()
			}
			v.exclude(sc)
			m.want(t, m.c, g, "C's host is the EXCLUDE port", v.cWant)
			if v.excludeFirst {
				includeB()
			}
			// 3 and 1 reach both; the other source and 20 reach C only
			// (20 neither, when C blocks it).
			m.fwd(t, g, "v3star_ex_auto_add", map[*confHost][]string{m.b: inc, m.c: v.cFwd})
		})
	}
}

// ---------------------------------------------------------------------------
// Open vSwitch mcast-snooping.at

// TestIntegrationConformanceOVS ports the scenarios of Open vSwitch's
// tests/mcast-snooping.at that real hosts can produce in a meshcast mesh:
// a peer's reports reach the other daemons but are never delivered into
// their TAPs (an IGMPv2 host that heard another's report would suppress
// its own); the version column, with a v1 report downgrading a v2 group
// and the compatibility rules of RFC 3376 7.3.2 (v2 leave, BLOCK and TO_IN
// ignored in v1 mode, BLOCK ignored in v2 mode); reports and a query with
// bad checksums not learned; unregistered flooding switched off and on by
// reloading the config file; a peer's entries removed when its inventory
// line changes or goes, its router entry included, and a router port that
// is also a member getting one copy only.
func TestIntegrationConformanceOVS(t *testing.T) {
	t.Parallel()
	start := time.Now()
	conf := filepath.Join(t.TempDir(), "meshcast.yaml")
	confWriteFile(t, conf, "unregistered: flood\n")
	m := confNewMesh(t, [3][]string{
		append(append([]string{"--config", conf}, confTimers...), confAFlags...),
		append(slices.Clone(confTimers), confHostFlags...),
		append(slices.Clone(confTimers), confHostFlags...),
	})
	t.Logf("mesh up in %v", time.Since(start).Round(10*time.Millisecond))
	for _, tc := range confOVSCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, m, conf) })
	}
	t.Logf("runtime %v", time.Since(start).Round(100*time.Millisecond))
}

// confOVSCases are the subtests of TestIntegrationConformanceOVS, in
// order: the last two change the inventory.
var confOVSCases = []struct {
	name string
	run  func(t *testing.T, m *confMesh, conf string)
}{
	{"reports_not_delivered", testConfReportsNotDelivered},
	{"v1_downgrade", testConfV1Downgrade},
	{"bad_checksum", testConfBadChecksum},
	{"unregistered_flood", testConfUnregisteredFlood},
	{"port_reconfigured", testConfPortReconfigured},
	{"port_destroyed", testConfPortDestroyed},
}

// testConfReportsNotDelivered ports "check reports per port flooding":
// IGMPv2 hosts on B and C (net.ipv4.conf.all.force_igmp_version=2) join
// the same group. B's reports reach A's and C's tables (a local host's
// reports go to every peer) but never C's TAP: C's host hears no other
// report, stays the group's reporter (/proc/net/igmp) instead of
// suppressing, so its own reports keep reaching A, and its leave is sent
// and honoured (RFC 2236 3 and 6; DESIGN "IGMP snooping").
func testConfReportsNotDelivered(t *testing.T, m *confMesh, _ string) {
	g := netip.MustParseAddr("239.20.0.1")
	for _, h := range m.hosts() {
		if err := h.sysctl(t, "all", "force_igmp_version", "2"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.sysctl(t, "all", "force_igmp_version", "0") })
	}
	fb := m.b.socket(t)
	m.b.join(t, fb, g)
	m.want(t, m.b, g, "B's v2 report", confWant{mode: "exclude", version: 2})
	m.waitMemberOn(t, 2, m.b, g, "B a member in C's table", func(mem *control.Member) bool { return mem != nil && mem.Version == 2 })
	joined := time.Now()
	fc := m.c.socket(t)
	m.c.join(t, fc, g)
	m.want(t, m.c, g, "C's v2 report", confWant{mode: "exclude", version: 2})
	// B's host answers B's queries: wait for two more of its reports,
	// then for a marker it sends after them to reach C's TAP.
	deadline := time.Now().Add(15 * time.Second)
	for len(m.b.rec.filter(func(p *confPkt) bool {
		return p.out && p.proto == unix.IPPROTO_IGMP && p.at.After(joined) && slices.Contains(confDescribe(p.igmp, g), "v2 report")
	})) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("B's host sent fewer than two v2 reports for %s in 15s after C joined", g)
		}
		time.Sleep(50 * time.Millisecond)
	}
	port := m.b.marker(t, m)
	m.c.waitMarker(t, m.b, port)
	sentB := len(m.b.rec.filter(func(p *confPkt) bool {
		return p.out && p.proto == unix.IPPROTO_IGMP && slices.Contains(confDescribe(p.igmp, g), "v2 report")
	}))
	var inC []string
	for _, p := range m.c.rec.filter(func(p *confPkt) bool { return !p.out && p.proto == unix.IPPROTO_IGMP }) {
		if d := confDescribe(p.igmp, g); len(d) > 0 && d[0] != "query" {
			inC = append(inC, fmt.Sprintf("%s from %s", d[0], p.src))
		}
	}
	t.Logf("B's host sent %d v2 reports for %s; IGMP about it delivered into C's TAP: %v", sentB, g, inC)
	if len(inC) > 0 {
		t.Errorf("reports reached C's host: %v", inC)
	}
	if rep := confReporter(t, m.c, g); rep != "1" {
		t.Errorf("C's host /proc/net/igmp: reporter flag %q for %s, want 1 (it heard no other host's report)", rep, g)
	}
	// C leaves: its kernel sends the leave (it is the reporter), and A
	// drops C within LMQT while B stays.
	left := time.Now()
	m.c.leave(t, fc, g)
	m.c.rec.wait(t, "C's v2 leave", 10*time.Second, func(p *confPkt) bool {
		return p.out && p.proto == unix.IPPROTO_IGMP && slices.Contains(confDescribe(p.igmp, g), "v2 leave")
	})
	m.want(t, m.c, g, "C's leave", confWant{})
	if took := time.Since(left); took > confLMQT+2*time.Second {
		t.Errorf("C's entry went %v after its leave, want within LMQT %v", took, confLMQT)
	}
	if mem := confMemberOf(m.status(t, 0), g, m.b.port); mem == nil {
		t.Errorf("B's membership went with C's leave")
	}
	m.b.leave(t, fb, g)
}

// confReporter returns the Reporter column of /proc/net/igmp for group g
// on the host's TAP.
func confReporter(t *testing.T, h *confHost, g netip.Addr) string {
	t.Helper()
	out, err := h.n.Exec(t, "cat", "/proc/net/igmp")
	if err != nil {
		t.Fatal(err)
	}
	a := g.As4()
	hex := fmt.Sprintf("%02X%02X%02X%02X", a[3], a[2], a[1], a[0])
	dev := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasPrefix(line, "\t") && len(f) > 1 {
			dev = f[1] == confTAP
			continue
		}
		if dev && f[0] == hex {
			return f[len(f)-1]
		}
	}
	t.Fatalf("%s not in %s's /proc/net/igmp:\n%s", g, h.name, out)
	return ""
}

// testConfV1Downgrade ports "mcast_group protocol updated in mdb" and the
// IGMPv1 compatibility rules of RFC 3376 7.3.2 (TestConformanceOVSV1Compat
// at unit level). B's host, forced to IGMPv2, joins (A shows version 2);
// forced to IGMPv1, it leaves (v1 has no leave: nothing is sent) and joins
// again: a v1 report, and A shows version 1. Forced back to v2, the host
// leaves with a v2 leave, which A ignores while the v1 host is present:
// the group timer stays above LMQT. Then, on two more groups downgraded
// to v1 and to v2, the host, no longer forced, blocks a source (IGMPv3
// BLOCK) and leaves (TO_IN {}): both modes ignore the BLOCK (the source is
// still forwarded); v1 mode ignores the TO_IN, v2 mode honours it as a
// leave.
func testConfV1Downgrade(t *testing.T, m *confMesh, _ string) {
	g := netip.MustParseAddr("239.20.0.2")
	h := m.b
	defer confReset(t, h)
	// downgrade joins g on a new socket as an IGMPv2 host, then, for v 1,
	// leaves and joins again as an IGMPv1 host; A shows version v.
	downgrade := func(g netip.Addr, v int) int {
		t.Helper()
		h.force(t, 2)
		fd := h.socket(t)
		h.join(t, fd, g)
		m.want(t, h, g, "v2 report", confWant{mode: "exclude", version: 2})
		if v == 1 {
			h.force(t, 1)
			since := time.Now()
			h.leave(t, fd, g)
			h.join(t, fd, g)
			m.want(t, h, g, "v1 report", confWant{mode: "exclude", version: 1})
			if recs := h.sent(g, since); len(recs) == 0 || slices.ContainsFunc(recs, func(r string) bool { return r != "v1 report" }) {
				t.Errorf("the host sent %v after it was forced to IGMPv1, want v1 reports only", recs)
			}
		}
		return fd
	}
	// handled returns A's entry once A has handled what the host sent
	// before: a marker sent after it has reached A's TAP.
	handled := func(g netip.Addr) *control.Member {
		t.Helper()
		port := h.marker(t, m)
		m.a.waitMarker(t, h, port)
		return confMemberOf(m.status(t, 0), g, h.port)
	}
	// sentNow waits until the host has sent rec about g since.
	sentNow := func(g netip.Addr, since time.Time, rec string) {
		t.Helper()
		h.rec.wait(t, fmt.Sprintf("the host's %s for %s", rec, g), 10*time.Second, func(p *confPkt) bool {
			return p.out && !p.at.Before(since) && p.proto == unix.IPPROTO_IGMP && slices.Contains(confDescribe(p.igmp, g), rec)
		})
	}

	fd := downgrade(g, 1)
	h.force(t, 2)
	since := time.Now()
	h.leave(t, fd, g)
	sentNow(g, since, "v2 leave")
	mem := handled(g)
	t.Logf("after the v2 leave (A has handled it): %s", confShow(mem))
	if mem == nil || mem.Version != 1 || mem.ExpiresSeconds <= confLMQT.Seconds() {
		t.Errorf("A holds %s after a v2 leave in v1 mode, want version 1 and the group timer untouched (> LMQT %v)", confShow(mem), confLMQT)
	}

	for _, v := range []int{1, 2} {
		g := netip.AddrFrom4([4]byte{239, 20, 0, byte(8 + v)})
		fd := downgrade(g, v)
		// Unforced, the host answers queries in IGMPv3: IS_EX {1} once
		// it blocks 1, which RFC 3376 7.3.2 does not ignore (1 would
		// become a requested source, X). The gate drops those answers,
		// so that A sees the BLOCK and the TO_IN alone.
		h.gate(t, "current")
		h.force(t, 0)
		since := time.Now()
		h.srcOpt(t, fd, unix.IP_BLOCK_SOURCE, g, "1")
		sentNow(g, since, "BLOCK{1}")
		mem := handled(g)
		t.Logf("v%d mode, after the host's BLOCK {1} (A has handled it): %s", v, confShow(mem))
		if !(confWant{mode: "exclude", version: v}).match(mem) {
			t.Errorf("A holds %s after a BLOCK in v%d mode, want it ignored: exclude, version %d, nothing blocked", confShow(mem), v, v)
		}
		m.fwd(t, g, fmt.Sprintf("v%d mode, BLOCK {1} ignored", v), map[*confHost][]string{h: confLabels})
		since = time.Now()
		left := time.Now()
		h.closeSock(t, fd)
		sentNow(g, since, "TO_IN{}")
		if v == 1 {
			mem := handled(g)
			t.Logf("v1 mode, after the host's TO_IN {} (A has handled it): %s", confShow(mem))
			if mem == nil || mem.Version != 1 || mem.ExpiresSeconds <= confLMQT.Seconds() {
				t.Errorf("A holds %s after a TO_IN {} in v1 mode, want it ignored (> LMQT %v)", confShow(mem), confLMQT)
			}
			continue
		}
		m.want(t, h, g, "v2 mode, TO_IN {} honoured as a leave", confWant{})
		if took := time.Since(left); took > confLMQT+2*time.Second {
			t.Errorf("the entry went %v after the TO_IN {}, want within LMQT %v", took, confLMQT)
		}
	}
}

// testConfBadChecksum ports "send a IGMP packet with invalid checksum": a
// program on B's host sends a v2 report whose IGMP checksum is wrong (a
// raw IGMP socket), an IGMPv3 query with OVS's wrong checksum, and a v2
// report whose IP header checksum is wrong (injected through an AF_PACKET
// socket: the IP stack always fills that checksum in). B's daemon counts
// each (status drops igmp_checksum, igmp_ip_header) and forwards none: A
// learns nothing, and B does not become a router port. The same reports
// with good checksums are learned. RFC 4541 2.1.1.
func testConfBadChecksum(t *testing.T, m *confMesh, _ string) {
	h := m.b
	g, g2 := netip.MustParseAddr("239.20.0.3"), netip.MustParseAddr("239.20.0.4")
	raw := -1
	if err := h.n.Do(func() (err error) {
		raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_IGMP)
		return err
	}); err != nil {
		t.Fatalf("raw IGMP socket: %v", err)
	}
	h.mu.Lock()
	h.socks[raw] = true
	h.mu.Unlock()
	for _, err := range []error{
		unix.SetsockoptIPMreqn(raw, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Address: h.addr.As4(), Ifindex: int32(h.ifindex)}),
		unix.SetsockoptInt(raw, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
		unix.SetsockoptInt(raw, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1),
		unix.SetsockoptString(raw, unix.IPPROTO_IP, unix.IP_OPTIONS, "\x94\x04\x00\x00"), // Router Alert
	} {
		if err != nil {
			t.Fatalf("raw IGMP socket: %v", err)
		}
	}
	report := func(group netip.Addr, bad bool) []byte {
		b := make([]byte, igmp.HeaderLen)
		igmp.PutReportV2(b, igmp.TypeV2Report, group)
		if bad {
			b[2] ^= 0x40
		}
		return b
	}
	drops := func(i int, reason string) uint64 { return m.status(t, i).Drops[reason] }
	// waitDrop waits until B's daemon has counted one more of reason,
	// then until a marker B's host sent after the frame reached A: had
	// B forwarded the frame, A would have handled it by then.
	waitDrop := func(reason string, before uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for drops(1, reason) < before+1 {
			if time.Now().After(deadline) {
				t.Fatalf("B's daemon did not count %s after 10s", reason)
			}
			time.Sleep(50 * time.Millisecond)
		}
		port := h.marker(t, m)
		m.a.waitMarker(t, h, port)
	}
	aBefore := m.status(t, 0).Drops

	// A v2 report with a bad IGMP checksum.
	before := drops(1, "igmp_checksum")
	if err := unix.Sendto(raw, report(g, true), 0, &unix.SockaddrInet4{Addr: g.As4()}); err != nil {
		t.Fatal(err)
	}
	waitDrop("igmp_checksum", before)
	// OVS's IGMPv3 query with its invalid checksum (ec1e -> ec10), sent
	// to 224.0.0.1: a router on B's host whose query is refused makes
	// no router port.
	before = drops(1, "igmp_checksum")
	q := []byte{0x11, 0x64, 0xec, 0x10, 0, 0, 0, 0, 0x02, 0x7d, 0, 0}
	if err := unix.Sendto(raw, q, 0, &unix.SockaddrInet4{Addr: igmp.AllHosts.As4()}); err != nil {
		t.Fatal(err)
	}
	waitDrop("igmp_checksum", before)
	// A v2 report for g2 whose IP header checksum is bad.
	before = drops(1, "igmp_ip_header")
	confInject(t, h, g2, report(g2, false), true)
	waitDrop("igmp_ip_header", before)

	st := m.status(t, 0)
	for _, gr := range st.Groups {
		if gr.Group == g.String() || gr.Group == g2.String() {
			t.Errorf("A learned %s from a frame with a bad checksum: %+v", gr.Group, gr)
		}
	}
	if slices.Contains(st.Routers, h.port) {
		t.Errorf("B became a router port by a query with a bad checksum: routers %v", st.Routers)
	}
	// (B's querier's queries reach A's TAP with B's address: they are
	// not what this looks for.)
	for _, p := range m.a.rec.filter(func(p *confPkt) bool {
		if p.out || p.proto != unix.IPPROTO_IGMP || p.src != h.addr {
			return false
		}
		_, r := igmp.Parse(p.igmp)
		return r != igmp.OK || p.igmp[0] != igmp.TypeQuery && len(confDescribe(p.igmp, g))+len(confDescribe(p.igmp, g2)) > 0
	}) {
		t.Errorf("IGMP with a bad checksum, or about %s or %s, reached A's TAP: %x", g, g2, p.igmp)
	}
	for _, reason := range []string{"igmp_checksum", "igmp_ip_header"} {
		if st.Drops[reason] != aBefore[reason] {
			t.Errorf("A counted %s %d -> %d: B's daemon should have dropped the frame", reason, aBefore[reason], st.Drops[reason])
		}
	}
	stB := m.status(t, 1)
	t.Logf("B's drops: igmp_checksum %d, igmp_ip_header %d; A learned nothing", stB.Drops["igmp_checksum"], stB.Drops["igmp_ip_header"])

	// The controls: the same reports with good checksums are learned.
	if err := unix.Sendto(raw, report(g, false), 0, &unix.SockaddrInet4{Addr: g.As4()}); err != nil {
		t.Fatal(err)
	}
	confInject(t, h, g2, report(g2, false), false)
	m.want(t, h, g, "good v2 report", confWant{mode: "exclude", version: 2})
	m.want(t, h, g2, "good v2 report (AF_PACKET)", confWant{mode: "exclude", version: 2})
}

// confInject writes an IPv4 packet carrying the IGMP message msg, from the
// host's address to group, into the host's TAP through an AF_PACKET
// socket, with the IP header checksum wrong if badIP.
func confInject(t *testing.T, h *confHost, group netip.Addr, msg []byte, badIP bool) {
	t.Helper()
	ip := make([]byte, 24+len(msg))
	ip[0] = 0x46 // version 4, 24-byte header: Router Alert
	ip[1] = 0xc0
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 1 // TTL
	ip[9] = unix.IPPROTO_IGMP
	src, dst := h.addr.As4(), group.As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	copy(ip[20:], []byte{0x94, 0x04, 0, 0})
	binary.BigEndian.PutUint16(ip[10:], confChecksum(ip[:24]))
	if badIP {
		ip[10] ^= 0x40
	}
	copy(ip[24:], msg)
	mac := igmp.MulticastMAC(group)
	err := h.n.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, ip, 0, &unix.SockaddrLinklayer{Protocol: confHtons(unix.ETH_P_IP), Ifindex: h.ifindex, Halen: 6,
			Addr: [8]byte{mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]}})
	})
	if err != nil {
		t.Fatalf("AF_PACKET send on %s's TAP: %v", h.name, err)
	}
}

// confChecksum is the Internet checksum (RFC 1071).
func confChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// testConfUnregisteredFlood ports "check multicast per port flooding" with
// flooding of unregistered groups on and off: A's config file says
// unregistered: flood, then drop, then flood again, each reloaded with
// SIGHUP. Unregistered traffic reaches every peer (flood) or none (drop:
// no router peer); a group B's host joined reaches B only either way.
// RFC 4541 2.1.2 (3).
func testConfUnregisteredFlood(t *testing.T, m *confMesh, conf string) {
	unreg, reg := netip.MustParseAddr("239.20.0.5"), netip.MustParseAddr("239.20.0.6")
	both := map[*confHost][]string{m.b: confLabels, m.c: confLabels}
	m.fwd(t, unreg, "flood: unregistered", both)
	defer confReset(t, m.b)
	m.b.join(t, m.b.socket(t), reg)
	m.want(t, m.b, reg, "B's host joins", confWant{mode: "exclude", version: 3})
	m.fwd(t, reg, "flood: registered", map[*confHost][]string{m.b: confLabels})
	reload := func(policy, from string) {
		t.Helper()
		confWriteFile(t, conf, "unregistered: "+policy+"\n")
		if err := m.daemons[0].Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := m.daemons[0].WaitOutput("setting=unregistered from="+from+" to="+policy, 10*time.Second); err != nil {
			t.Fatalf("reload: %v", err)
		}
		// The daemon logs the change just before it puts it in force:
		// wait until a probe datagram to a group of its own is handled
		// by the new policy.
		probe := netip.MustParseAddr("239.20.0.99")
		deadline := time.Now().Add(10 * time.Second)
		for tries := 1; ; tries++ {
			st := m.status(t, 0)
			flooded0, dropped0 := confFloodedFrames(st, probe), st.Drops["unregistered"]
			frames := tapFrames(t, m.socks[0])
			if err := unix.Sendto(m.a.sender, make([]byte, confPayload), 0, &unix.SockaddrInet4{Port: confPortBase, Addr: probe.As4()}); err != nil {
				t.Fatal(err)
			}
			waitTAPFrames(t, m.socks[0], frames+1)
			st = m.status(t, 0)
			if policy == "flood" && confFloodedFrames(st, probe) > flooded0 || policy == "drop" && st.Drops["unregistered"] > dropped0 {
				if tries > 1 {
					t.Logf("policy %s in force at the %d. probe after the log line", policy, tries)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy %s not in force 10s after the reload", policy)
			}
		}
	}
	reload("drop", "flood")
	m.fwd(t, unreg, "drop: unregistered", nil)
	m.fwd(t, reg, "drop: registered", map[*confHost][]string{m.b: confLabels})
	reload("flood", "drop")
	m.fwd(t, unreg, "flood again: unregistered", both)
	var got []control.Flooded
	for _, f := range m.status(t, 0).Flooded {
		if f.Group == unreg.String() || f.Group == reg.String() {
			got = append(got, f)
		}
	}
	n := uint64(len(confLabels) * confPerSource)
	want := control.Flooded{Group: unreg.String(), Frames: 2 * n, Copies: 4 * n, DropSave: 4 * n}
	if len(got) != 1 || got[0] != want {
		t.Errorf("status flooded = %+v, want only %+v (two flooded rounds)", got, want)
	}
}

// confFloodedFrames returns how many frames to group A has flooded.
func confFloodedFrames(st control.State, group netip.Addr) uint64 {
	for _, f := range st.Flooded {
		if f.Group == group.String() {
			return f.Frames
		}
	}
	return 0
}

// testConfPortDestroyed ports "delete the port mdb when port destroyed":
// B's and C's hosts join a group, and a multicast router on B's host sends
// a general query from its address, which makes B a router port of A (RFC
// 4541 2.1.1). B, a router port and a member, gets one copy of each
// datagram ("multicasts to trunk ports are not duplicated"). Then B leaves
// the inventory and A gets SIGHUP: B's group entries and its router entry
// go at once, and the group's traffic reaches C alone.
func testConfPortDestroyed(t *testing.T, m *confMesh, _ string) {
	g := netip.MustParseAddr("239.20.0.7")
	for _, h := range m.hosts() {
		h.join(t, h.socket(t), g)
		m.want(t, h, g, h.name+"'s host joins", confWant{mode: "exclude", version: 3})
	}
	raw := -1
	if err := m.b.n.Do(func() (err error) {
		raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_IGMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(raw)
	q := make([]byte, igmp.QueryV3Len(0))
	igmp.PutQueryV3(q, netip.IPv4Unspecified(), time.Second, false, 2, 2*time.Second, nil)
	for _, err := range []error{
		unix.SetsockoptIPMreqn(raw, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Address: m.b.addr.As4(), Ifindex: int32(m.b.ifindex)}),
		unix.SetsockoptInt(raw, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
		unix.Sendto(raw, q, 0, &unix.SockaddrInet4{Addr: igmp.AllHosts.As4()}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(confWait)
	for !slices.Contains(m.status(t, 0).Routers, m.b.port) {
		if time.Now().After(deadline) {
			t.Fatalf("A did not make B a router port after its host's query: routers %v", m.status(t, 0).Routers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.fwd(t, g, "B router port and member, C member", map[*confHost][]string{m.b: confLabels, m.c: confLabels})

	lines := strings.SplitAfter(demoInventory, "\n")
	m.reload(t, lines[0]+lines[1]+lines[3], "removed=[198.18.0.2]")
	st := m.status(t, 0)
	for _, p := range st.Peers {
		if p.Underlay == m.b.port {
			t.Errorf("B is still a peer: %+v", st.Peers)
		}
	}
	if slices.Contains(st.Routers, m.b.port) {
		t.Errorf("B is still a router port: %v", st.Routers)
	}
	for _, gr := range st.Groups {
		if slices.Contains(gr.Peers, m.b.port) || confMemberOf(st, netip.MustParseAddr(gr.Group), m.b.port) != nil {
			t.Errorf("B still holds %s: %+v", gr.Group, gr)
		}
	}
	if mem := confMemberOf(st, g, m.c.port); mem == nil {
		t.Errorf("C's entry of %s went with B", g)
	}
	t.Logf("after B left the inventory: A's routers %v, %s members %v", st.Routers, g, func() []string {
		for _, gr := range st.Groups {
			if gr.Group == g.String() {
				return gr.Peers
			}
		}
		return nil
	}())
	// Only C can get the traffic now; A sends its marker to its peers,
	// C alone, and has handled every frame when it arrives.
	got := m.send(t, g, confLabels, []*confHost{m.c})
	if len(got[m.b]) != 0 {
		t.Errorf("B, no longer a peer, received %v", got[m.b])
	}
	if len(got[m.c]) != len(confLabels) {
		t.Errorf("C received %v, want every source", got[m.c])
	}
}

// reload rewrites A's inventory and sends A SIGHUP, and waits until A's
// log has one more line containing logged than before.
func (m *confMesh) reload(t *testing.T, inventory, logged string) {
	t.Helper()
	d := m.daemons[0]
	before := strings.Count(d.Output(), logged)
	confWriteFile(t, m.inv, inventory)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.Output(), logged) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("A did not log %q within 10s of the SIGHUP:\n%s", logged, d.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testConfPortReconfigured ports "delete the port mdb when vlan
// configuration changed": meshcast has no VLANs; the counterpart is a peer
// whose inventory line changes (B's overlay address becomes 198.19.0.33),
// which A takes for a new peer on the same underlay address. B's and C's
// hosts joined a group, and B's host is silent meanwhile (its gate drops
// all its IGMP), so that nothing relearns B's entry: after the SIGHUP, B's
// entry is gone and C's stays. Then the inventory is restored.
func testConfPortReconfigured(t *testing.T, m *confMesh, _ string) {
	g := netip.MustParseAddr("239.20.0.8")
	defer confReset(t, m.b)
	defer confReset(t, m.c)
	for _, h := range m.hosts() {
		h.join(t, h.socket(t), g)
		m.want(t, h, g, h.name+"'s host joins", confWant{mode: "exclude", version: 3})
	}
	m.b.gate(t, "all")
	m.reload(t, strings.Replace(demoInventory, "demo,198.19.0.2/24", "demo,198.19.0.33/24", 1), "removed=[198.18.0.2]")
	st := m.status(t, 0)
	var overlay string
	for _, p := range st.Peers {
		if p.Underlay == m.b.port {
			overlay = p.Overlay
		}
	}
	if overlay != "198.19.0.33/24" {
		t.Errorf("A's peer %s has overlay %q after the change, want 198.19.0.33/24: %+v", m.b.port, overlay, st.Peers)
	}
	if mem := confMemberOf(st, g, m.b.port); mem != nil {
		t.Errorf("B's entry of %s outlived its peer's reconfiguration: %s", g, confShow(mem))
	}
	if mem := confMemberOf(st, g, m.c.port); mem == nil {
		t.Errorf("C's entry of %s went with B's reconfiguration", g)
	}
	t.Logf("after B's line changed: B is %s %s, B's entry of %s gone, C's kept", m.b.port, overlay, g)
	m.reload(t, demoInventory, "added=[198.18.0.2]")
}

// confUnitPorts maps every scenario of the unit-level suite
// (conformanceList in igmp/conformance_test.go) to the tests that play it
// here with real hosts, or says why a real host cannot.
var confUnitPorts = map[string]string{
	"v2reportleave":      "Bridge/single/v2reportleave",
	"v3include":          "Bridge/single/v3include",
	"v3inc_allow":        "Bridge/single/v3inc_allow",
	"v3inc_is_include":   "Bridge/single/v3inc_is_include",
	"v3inc_is_exclude":   "Bridge/single/v3inc_is_exclude",
	"v3inc_to_exclude":   "Bridge/single/v3inc_to_exclude",
	"v3exc_allow":        "Bridge/single/v3exc_allow (ALLOW {20}: the host never excluded 30)",
	"v3exc_is_include":   "Bridge/single/v3exc_is_include",
	"v3exc_is_exclude":   "Bridge/single/v3exc_is_exclude",
	"v3exc_to_exclude":   "Bridge/single/v3exc_to_exclude",
	"v3inc_block":        "Bridge/single/v3inc_block",
	"v3exc_block":        "Bridge/single/v3exc_block (BLOCK {1,30}: the host already blocks 20)",
	"v3exc_timeout":      "Bridge/single/v3exc_timeout (ALLOW {20})",
	"v3star_ex_auto_add": "Bridge/v3star_ex_auto_add",
	"bridge scenarios, end to end (per-source forwarding through the engine)": "every Bridge subtest (forwarding from each source, counted at the hosts' TAPs)",
	"mcast_group protocol updated in mdb (version column, v1 downgrade)":      "OVS/v1_downgrade (versions 1, 2, 3 shown throughout)",
	"mcast_group protocol updated in mdb (same, from peer frames)":            "OVS/v1_downgrade",
	"IGMPv1 compatibility: v2 leave ignored while a v1 host is present":       "OVS/v1_downgrade (TO_IN and BLOCK in v1 mode: a host forced to v1 sends no v3)",
	"delete the port mdb when port destroyed (table)":                         "OVS/port_destroyed",
	"delete the port mdb when port destroyed (peer removed)":                  "OVS/port_destroyed",
	"delete the port mdb when vlan configuration changed (peer reconfigured)": "OVS/port_reconfigured",
	"check reports per port flooding / igmp flood for non-snoop enabled":      "OVS/reports_not_delivered (non-snoop: snooping cannot be turned off)",
	"check multicast per port flooding (unregistered flood on, off)":          "OVS/unregistered_flood",
	"check multicasts to trunk ports are not duplicated":                      "OVS/port_destroyed (a router peer that is also a member gets one copy)",
	"invalid IGMP checksum not learned":                                       "OVS/bad_checksum",
}

var confUnitListRE = regexp.MustCompile(`\{"([^"]+)", "([^"]+)", "((?:igmp|replicate)\.TestConformance\w+)"\}`)

// TestIntegrationConformanceList prints which test here plays each
// scenario of the unit-level conformance suite (go test -v -run
// TestIntegrationConformanceList ./cmd/meshcast), and checks that every
// scenario of that suite has one and that every test named exists. It
// needs no root.
func TestIntegrationConformanceList(t *testing.T) {
	b, err := os.ReadFile("../../igmp/conformance_test.go")
	if err != nil {
		t.Fatal(err)
	}
	subtests := map[string]bool{"Bridge/v3star_ex_auto_add": true}
	for _, c := range confBridgeCases {
		subtests["Bridge/single/"+strings.TrimSuffix(c.selftest, "_test")] = true
	}
	for _, c := range confOVSCases {
		subtests["OVS/"+c.name] = true
	}
	var sb strings.Builder
	seen := map[string]bool{}
	for _, mm := range confUnitListRE.FindAllStringSubmatch(string(b), -1) {
		scenario, unit := mm[1], mm[3]
		port, ok := confUnitPorts[scenario]
		if !ok {
			t.Errorf("unit scenario %q (%s) has no entry in confUnitPorts: add the integration test that plays it, or why a real host cannot", scenario, unit)
			continue
		}
		seen[scenario] = true
		if !strings.HasPrefix(port, "every ") {
			port = "TestIntegrationConformance" + port
		}
		fmt.Fprintf(&sb, "%-75s | %-52s | %s\n", scenario, unit, port)
		if name, _, _ := strings.Cut(strings.TrimPrefix(port, "TestIntegrationConformance"), " "); !subtests[name] && !strings.HasPrefix(port, "every ") {
			t.Errorf("%s: no subtest TestIntegrationConformance%s", scenario, name)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no scenario found in igmp/conformance_test.go's conformanceList")
	}
	for s := range confUnitPorts {
		if !seen[s] {
			t.Errorf("confUnitPorts names %q, which the unit-level list no longer has", s)
		}
	}
	t.Logf("\n%s", sb.String())
}
