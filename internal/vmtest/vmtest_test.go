package vmtest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/internal/nstest"
)

// The test's environment. scripts/vmtest.sh sets these in the guest.
const (
	envEnable   = "MESHCAST_VMTEST"           // must be 1, or the test skips
	envMeshcast = "MESHCAST_BIN"              // the meshcast binary (default: meshcast on PATH)
	envProbe    = "MCASTPROBE_BIN"            // the mcastprobe binary (default: mcastprobe on PATH)
	envEncaps   = "MESHCAST_VMTEST_ENCAPS"    // encapsulations to test, default "gre vxlan"
	envSteady   = "MESHCAST_VMTEST_STEADY"    // datagrams of the steady stream, default 1500
	envBursts   = "MESHCAST_VMTEST_BURSTS"    // number of sendmmsg bursts, default 80
	envBurst    = "MESHCAST_VMTEST_BURST"     // datagrams per burst, default 32
	envTakeover = "MESHCAST_VMTEST_TAKEOVER"  // datagrams of the takeover stream, default 9000; 0 leaves the takeover cells out
	envMLD      = "MESHCAST_VMTEST_MLD"       // datagrams of the mld stream, default 1000; 0 leaves the mld cells out
	envUnder6   = "MESHCAST_VMTEST_UNDERLAY6" // datagrams of the underlay6 cell, default 1000; 0 leaves the underlay6 cells out
)

// The overlay of the demo inventory: nodes 198.18.0.K carry 198.19.0.K/24.
const (
	inventory = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX
198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
198.18.0.3      demo,198.19.0.3/24
`
	tapName = "mcbr-demo"
	group   = "239.1.2.3"
	port    = 5000
	size    = 200  // UDP payload bytes of every datagram
	rate    = 1500 // datagrams per second, steady and bursts alike: TCG is slow
)

// The mld cell: the demo inventory with IPv6 overlay addresses, node K
// fd00:198:19::K/64. Node 2 joins group6 (any source), node 3 joins
// nothing; node 1 streams at rate6, and with --unregistered drop node 3's
// underlay carries at most mldLeak packets during the stream: the daemons'
// own (queries, reports of link-local groups, which are flooded), none of
// the stream.
const (
	inventory6 = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX[,OVERLAY-IPV6/PREFIX]
198.18.0.1      demo,198.19.0.1/24,fd00:198:19::1/64
198.18.0.2      demo,198.19.0.2/24,fd00:198:19::2/64
198.18.0.3      demo,198.19.0.3/24,fd00:198:19::3/64
`
	group6      = "ff0e::1:2:3"
	rate6       = 2000
	defaultMLD  = 1000
	mldLeak     = 20               // underlay packets node 3 may receive during the stream
	overlayWait = 20 * time.Second // until DAD has ended on a TAP's IPv6 addresses
	memberWait  = 30 * time.Second // until node 1 lists a member, from its receiver's join
)

// The takeover cell: node 1 streams at rate; node 2's daemon is taken over
// takeoverAt after the stream starts, node 1's takeoverGap after node 2's
// successor forwards and its predecessor has exited. The default stream
// lasts 6 s, which leaves the stream running well after both takeovers.
const (
	defaultTakeover = 6 * rate
	takeoverAt      = time.Second
	takeoverGap     = 500 * time.Millisecond
	takeoverLoss    = 5                // datagrams one takeover may cost a receiver it affects
	forwardWait     = time.Minute      // until a daemon or a successor logs "meshcast forwarding"
	exitWait        = 30 * time.Second // until the daemon taken over exits
	drainWait       = 5 * time.Second  // after the stream, until the receivers give up
)

// Every datagram carries mcastprobe's payload, so that its receiver counts
// the burst sender's datagrams too: the magic "MCP1", then the sequence
// number as a big-endian uint64, then filler.
const (
	probeMagic  = "MCP1"
	probeHeader = len(probeMagic) + 8
)

// offload is one entry of the offloads object of meshcast status --json.
type offload struct {
	InUse    bool   `json:"in_use"`
	Reason   string `json:"reason"`
	Fallback uint64 `json:"offload_fallback"`
}

// offloads is the offloads object of meshcast status --json.
type offloads struct {
	Kernel      string   `json:"kernel"`
	TAPCoalesce *offload `json:"tap_coalesce"`
	UDPGSO      *offload `json:"udp_gso"`
	UDPGRO      *offload `json:"udp_gro"`
	PacketTx    *offload `json:"af_packet_tx"`
	PacketGSO   *offload `json:"af_packet_gso"`
	PacketRx    *offload `json:"af_packet_rx"`
}

// entries returns the offloads by name, in the order of the table.
func (o *offloads) entries() []namedOffload {
	return []namedOffload{{"tap_coalesce", o.TAPCoalesce}, {"udp_gso", o.UDPGSO}, {"udp_gro", o.UDPGRO}, {"af_packet_tx", o.PacketTx}, {"af_packet_gso", o.PacketGSO}, {"af_packet_rx", o.PacketRx}}
}

type namedOffload struct {
	name string
	o    *offload
}

// status is the part of meshcast status --json this test reads.
type status struct {
	PID      int               `json:"pid"`
	Local    string            `json:"local"`
	MTU      int               `json:"mtu"`
	Drops    map[string]uint64 `json:"drops"`
	Offloads *offloads         `json:"offloads"`
	Groups   []struct {
		Group string   `json:"group"`
		Peers []string `json:"peers"`
	} `json:"groups"`
	MLDQuerier *struct {
		Active bool   `json:"active"`
		Sent   uint64 `json:"sent"`
	} `json:"mld_querier"`
	Peers []struct {
		Underlay  string `json:"underlay"`
		TxPackets uint64 `json:"tx_packets"`
		RxPackets uint64 `json:"rx_packets"`
	} `json:"peers"`
}

// peer returns the packets sent to and received from the peer with
// underlay address underlay, and whether it is listed.
func (s *status) peer(underlay string) (tx, rx uint64, ok bool) {
	for _, p := range s.Peers {
		if p.Underlay == underlay {
			return p.TxPackets, p.RxPackets, true
		}
	}
	return 0, 0, false
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number, 0 or more", name, s)
	}
	return n
}

func binaryPath(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		var err error
		if p, err = exec.LookPath(name); err != nil {
			t.Fatalf("%s is not on PATH and %s is not set", name, env)
		}
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return p
}

var releaseRE = regexp.MustCompile(`^(\d+)\.(\d+)`)

// kernelRelease returns the running kernel's release and whether it is at
// least major.minor.
func kernelRelease(t *testing.T, major, minor int) (string, bool) {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	m := releaseRE.FindStringSubmatch(rel)
	if m == nil {
		t.Fatalf("kernel release %q: no version", rel)
	}
	maj, _ := strconv.Atoi(m[1])
	mnr, _ := strconv.Atoi(m[2])
	return rel, maj > major || maj == major && mnr >= minor
}

// TestVMDelivery runs three meshcast daemons with default flags, for each
// encapsulation, in three cells. delivery: both receivers get every
// datagram of a steady stream followed by sendmmsg bursts, and the offloads
// meshcast reports fit this kernel. takeover: during a steady stream node
// 2's and then node 1's daemon are replaced with meshcast run --takeover,
// and each takeover costs each receiver it affects at most takeoverLoss
// datagrams. mld: with IPv6 overlay addresses and --unregistered drop, an
// IPv6 group's stream reaches its only member and not the other node.
func TestVMDelivery(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skipf("runs inside the virtual machine of make vmtest (scripts/vmtest.sh); set %s=1 to run it here", envEnable)
	}
	bins := [2]string{binaryPath(t, envMeshcast, "meshcast"), binaryPath(t, envProbe, "mcastprobe")}
	encaps := strings.Fields(os.Getenv(envEncaps))
	if len(encaps) == 0 {
		encaps = []string{"gre", "vxlan"}
	}
	load := load{steady: envInt(t, envSteady, 1500), bursts: envInt(t, envBursts, 80), burst: envInt(t, envBurst, 32)}
	if load.total() == 0 {
		t.Fatal("nothing to send: the steady stream and the bursts are both empty")
	}
	takeover := envInt(t, envTakeover, defaultTakeover)
	mld := envInt(t, envMLD, defaultMLD)
	under6 := envInt(t, envUnder6, defaultUnderlay6)
	for _, encap := range encaps {
		t.Run(encap, func(t *testing.T) {
			t.Run("delivery", func(t *testing.T) { testDelivery(t, encap, bins, load, cellDelivery) })
			if takeover > 0 {
				t.Run("takeover", func(t *testing.T) { testTakeover(t, encap, bins, takeover) })
			}
			if mld > 0 {
				t.Run("mld", func(t *testing.T) { testMLD(t, encap, bins, mld) })
			}
			if under6 > 0 {
				t.Run(cellUnderlay6, func(t *testing.T) { testDelivery(t, encap, bins, underlay6Load(under6, load.burst), cellUnderlay6) })
			}
		})
	}
}

// load is what node 1 sends: a steady stream, then bursts of sendmmsg
// batches at the same average rate.
type load struct{ steady, bursts, burst int }

func (l load) total() int { return l.steady + l.bursts*l.burst }

// result is one line of the table that scripts/vmtest.sh prints.
type result struct {
	kernel, encap string
	cell          string // delivery, takeover, mld or underlay6
	sent          int
	received      [2]int    // by receiver: nodes 2 and 3
	lost          [2]int    // sent but not received, by receiver
	frames        [2]uint64 // frames meshcast wrote into each receiver's TAP
	tapWrite      [2]uint64 // tap_write drops of each receiver
	inUse         map[string]string
	fallback      uint64
	seconds       float64
	pass          bool

	// The takeover cell only.
	takeovers []takeoverStat
	// The packets node 1's daemons sent to node 2 during the stream and
	// node 2's daemons received from node 1, by their counters, which
	// carry over a takeover; path is false if a status lacked them.
	path     bool
	pathSent int
	pathRecv int
	// Node 2's loss at node 2's takeover and at node 1's, from the
	// underlay counters; split is false if they could not tell.
	split   bool
	lostAt2 int
	lostAt1 int

	// The mld cell only: the packets node 3's underlay interface received
	// during the stream (-1 if not read), how long the TAPs' IPv6
	// addresses took to be usable (duplicate address detection) and node
	// 1 to list node 2 as a member (-1 if they did not), node 1's MLD
	// querier, and why the cell failed.
	underlay3 int
	ipv6      time.Duration
	member    time.Duration
	querier   string // active/sent, or absent
	reasons   []string

	// The underlay6 cell only: the TAP MTU every daemon reports (0 if
	// none did, -1 if they differ).
	mtu int
}

// fail fails the test and records why, for the cell's line.
func (r *result) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Error(msg)
	r.reasons = append(r.reasons, msg)
}

// fatal is fail, then stops the test.
func (r *result) fatal(t *testing.T, format string, args ...any) {
	t.Helper()
	r.fail(t, format, args...)
	t.FailNow()
}

// takeoverStat is how one takeover went.
type takeoverStat struct {
	node   int           // 1, 2 or 3
	took   time.Duration // from the successor's start to its "meshcast forwarding"
	paused time.Duration // from the predecessor's "handing over to a successor" to the successor's "meshcast forwarding", by their logs; -1 if a log lacks a line
}

func (r *result) line() string {
	use := func(name string) string {
		if s := r.inUse[name]; s != "" {
			return s
		}
		return "absent"
	}
	verdict := "FAIL"
	if r.pass {
		verdict = "PASS"
	}
	node3, lost3 := strconv.Itoa(r.received[1]), strconv.Itoa(r.lost[1])
	if r.cell == "mld" {
		node3, lost3 = "-", "-" // node 3 is no receiver
	}
	f := []string{
		"kernel=" + r.kernel, "encap=" + r.encap, "case=" + r.cell,
		fmt.Sprintf("sent=%d node2=%d node3=%s lost2=%d lost3=%s frames2=%d frames3=%d tap_write2=%d tap_write3=%d",
			r.sent, r.received[0], node3, r.lost[0], lost3, r.frames[0], r.frames[1], r.tapWrite[0], r.tapWrite[1]),
		fmt.Sprintf("tap_coalesce=%s udp_gso=%s udp_gro=%s af_packet_tx=%s af_packet_gso=%s af_packet_rx=%s fallback=%d seconds=%.1f",
			use("tap_coalesce"), use("udp_gso"), use("udp_gro"), use("af_packet_tx"), use("af_packet_gso"), use("af_packet_rx"), r.fallback, r.seconds),
	}
	if r.cell == "takeover" {
		for _, s := range r.takeovers {
			paused := "?"
			if s.paused >= 0 {
				paused = strconv.FormatInt(s.paused.Milliseconds(), 10) + "ms"
			}
			f = append(f, fmt.Sprintf("takeover%d=%dms paused%d=%s", s.node, s.took.Milliseconds(), s.node, paused))
		}
		path, at2, at1 := "?", "?", "?"
		if r.path {
			path = fmt.Sprintf("%d/%d", r.pathSent, r.pathRecv)
		}
		if r.split {
			at2, at1 = strconv.Itoa(r.lostAt2), strconv.Itoa(r.lostAt1)
		}
		f = append(f, "underlay12="+path, "lost2_at_node2="+at2, "lost2_at_node1="+at1)
	}
	if r.cell == "mld" {
		underlay3, ipv6, member := "?", "none", "none"
		if r.underlay3 >= 0 {
			underlay3 = strconv.Itoa(r.underlay3)
		}
		if r.ipv6 >= 0 {
			ipv6 = strconv.FormatInt(r.ipv6.Milliseconds(), 10) + "ms"
		}
		if r.member >= 0 {
			member = strconv.FormatInt(r.member.Milliseconds(), 10) + "ms"
		}
		f = append(f, "underlay3="+underlay3, "ipv6="+ipv6, "member2="+member, "mld_querier="+r.querier)
	}
	if r.cell == cellUnderlay6 {
		f = append(f, "underlay="+nstest.UnderlayPrefix6.String(), fmt.Sprintf("mtu=%d", r.mtu))
	}
	f = append(f, "verdict="+verdict)
	if !r.pass {
		// Last, as it has spaces: the first reason, on one line.
		why := "see the console log"
		if len(r.reasons) > 0 {
			why = strings.Join(strings.Fields(r.reasons[0]), " ")
		}
		f = append(f, "reason="+why)
	}
	return "VMTEST-RESULT " + strings.Join(f, " ")
}

// mesh is three meshcast daemons with default flags, one in each node of a
// fresh network.
type mesh struct {
	meshcast string
	nodes    []*nstest.Node
	ctl      []string       // control socket of each node
	args     [][]string     // each node's meshcast command line, without the binary
	daemons  []*nstest.Proc // the daemon of each node now
}

// startMesh starts the three daemons with inventory, on an underlay of
// family fam, and waits until they forward; if one does not, it stops the
// test with the reason in res.
func startMesh(t *testing.T, res *result, meshcast, encap string, fam nstest.Family, inventory string, extra ...string) *mesh {
	t.Helper()
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: fam})
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &mesh{meshcast: meshcast, nodes: nt.Nodes()}
	for i, n := range m.nodes {
		ctl := filepath.Join(dir, fmt.Sprintf("ctl%d.sock", i+1))
		args := append([]string{"run", "--peers", inv, "--local", underlay(n).String(), "--encap", encap, "--control", ctl}, extra...)
		m.ctl = append(m.ctl, ctl)
		m.args = append(m.args, args)
		m.daemons = append(m.daemons, n.Start(t, meshcast, args...))
	}
	for i, d := range m.daemons {
		if err := d.WaitOutput("meshcast forwarding", forwardWait); err != nil {
			t.Log(d.Output())
			res.fatal(t, "node %d's daemon did not start: %v: %s", i+1, err, lastLine(d.Output()))
		}
	}
	return m
}

// startReceivers starts mcastprobe recv on nodes 2 and 3, expecting count
// datagrams, and waits until node 1's daemon lists both as members.
func (m *mesh) startReceivers(t *testing.T, probe string, count int) []*nstest.Proc {
	t.Helper()
	receivers := m.nodes[1:]
	recvs := make([]*nstest.Proc, len(receivers))
	for i, n := range receivers {
		recvs[i] = n.Start(t, probe, "recv", "--iface", tapName, "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(count), "--timeout", "10m", "--json")
		if err := recvs[i].WaitOutput("ready\n", time.Minute); err != nil {
			t.Fatalf("receiver on node %d: %v\n%s", i+2, err, recvs[i].Output())
		}
	}
	// The receivers' IGMP reports reach node 1 (unregistered groups are
	// flooded anyway, so this only waits for the normal state).
	want := []string{underlay(receivers[0]).String(), underlay(receivers[1]).String()}
	if _, err := waitMembers(t, m.nodes[0], m.meshcast, m.ctl[0], group, want); err != nil {
		t.Logf("%v; sending anyway", err)
	}
	return recvs
}

// tapCounters reads the statistics of the TAP of nodes 2 and 3.
func (m *mesh) tapCounters(t *testing.T) [2]nstest.Counters {
	t.Helper()
	var c [2]nstest.Counters
	for i, n := range m.nodes[1:] {
		c[i] = n.MustCounters(t, tapName)
	}
	return c
}

// report reads what each daemon reports (drops and offloads), checks the
// offloads, records them and the receivers' tap_write drops in res, and
// returns the statuses by node, nil where status failed.
func (m *mesh) report(t *testing.T, res *result, release, encap string, tapGSO bool) []*status {
	t.Helper()
	sts := make([]*status, len(m.nodes))
	for i, n := range m.nodes {
		st, err := readStatus(t, n, m.meshcast, m.ctl[i])
		if err != nil {
			t.Errorf("node %d: %v", i+1, err)
			continue
		}
		sts[i] = st
		if i > 0 {
			res.tapWrite[i-1] = st.Drops["tap_write"]
		}
		var nonzero []string
		for k, v := range st.Drops {
			if v != 0 {
				nonzero = append(nonzero, fmt.Sprintf("%s=%d", k, v))
			}
		}
		slices.Sort(nonzero)
		if len(nonzero) == 0 {
			nonzero = []string{"none"}
		}
		t.Logf("node %d drops: %s", i+1, strings.Join(nonzero, " "))
		checkOffloads(t, i+1, st.Offloads, release, encap, tapGSO, res)
	}
	return sts
}

// tapIndex returns the interface index of the TAP of node n.
func tapIndex(t *testing.T, n *nstest.Node) int {
	t.Helper()
	l, err := n.Link(tapName)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// takeover replaces the daemon of node i (0-based) with meshcast run
// --takeover on the same command line: the successor must forward, the
// daemon taken over exit 0, both log the handover, and the TAP keep its
// interface index, index.
func (m *mesh) takeover(t *testing.T, i, index int) takeoverStat {
	t.Helper()
	n, old := m.nodes[i], m.daemons[i]
	start := time.Now()
	next := n.Start(t, m.meshcast, append(slices.Clone(m.args[i]), "--takeover")...)
	if err := next.WaitOutput("meshcast forwarding", forwardWait); err != nil {
		t.Fatalf("node %d: the successor did not forward: %v\nthe daemon it was to take over:\n%s", i+1, err, old.Output())
	}
	s := takeoverStat{node: i + 1, took: time.Since(start), paused: -1}
	m.daemons[i] = next
	if code, err := old.Wait(exitWait); err != nil || code != 0 {
		t.Errorf("node %d: the daemon taken over exited %d (%v), want 0:\n%s", i+1, code, err, old.Output())
	}
	if !strings.Contains(old.Output(), "handed over") {
		t.Errorf("node %d: the daemon taken over did not log that it handed over:\n%s", i+1, old.Output())
	}
	if !strings.Contains(next.Output(), "took over") {
		t.Errorf("node %d: the successor did not log that it took over:\n%s", i+1, next.Output())
	}
	if got := tapIndex(t, n); got != index {
		t.Errorf("node %d: %s is interface %d after the takeover, was %d: it was recreated", i+1, tapName, got, index)
	}
	from, ok1 := logTime(old.Output(), "handing over to a successor")
	to, ok2 := logTime(next.Output(), "meshcast forwarding")
	if ok1 && ok2 {
		s.paused = to.Sub(from)
	}
	paused := "unknown (a log lacks its line)"
	if s.paused >= 0 {
		paused = s.paused.Round(time.Millisecond).String()
	}
	t.Logf("node %d taken over: successor forwarding %v after its start; from handing over to forwarding %s",
		s.node, s.took.Round(time.Millisecond), paused)
	return s
}

// logExtraFrames logs the frames meshcast wrote into node k's TAP beyond
// the received datagrams of the stream, one frame each where the TAP does
// not coalesce: the daemons' own packets, such as IGMP.
func logExtraFrames(t *testing.T, k int, c nstest.Counters, received int) {
	t.Helper()
	const frame = 14 + 20 + 8 + size // Ethernet, IPv4, UDP, payload
	if extra := int(c.RxPackets) - received; extra > 0 {
		t.Logf("node %d: %d frames in the TAP besides the %d datagrams received, %d bytes besides theirs",
			k, extra, received, int(c.RxBytes)-received*frame)
	}
}

// logTime returns the time of the first line of a meshcast text log whose
// message starts with msg.
func logTime(out, msg string) (time.Time, bool) {
	re := regexp.MustCompile(`(?m)^time=(\S+) level=\S+ msg="?` + regexp.QuoteMeta(msg))
	m := re.FindStringSubmatch(out)
	if m == nil {
		return time.Time{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, m[1])
	return ts, err == nil
}

// testDelivery runs the delivery cell, or with cell cellUnderlay6 the same
// check over an IPv6-only underlay: node 1 sends a steady stream and then
// sendmmsg bursts, both receivers must get every datagram, and the
// offloads meshcast reports must fit this kernel (and the underlay).
func testDelivery(t *testing.T, encap string, bins [2]string, load load, cell string) {
	meshcast, probe := bins[0], bins[1]
	release, tapGSO := kernelRelease(t, 6, 2) // UDP segmentation frames into a TAP need 6.2
	start := time.Now()
	res := &result{kernel: release, encap: encap, cell: cell, inUse: map[string]string{}}
	var m *mesh
	defer func() {
		if t.Failed() && m != nil {
			for i, d := range m.daemons {
				t.Logf("node %d's daemon log:\n%s", i+1, d.Output())
			}
		}
		res.seconds = time.Since(start).Seconds()
		res.pass = !t.Failed()
		fmt.Println(res.line())
	}()

	nstest.LeakCheck(t)
	fam, inv := nstest.UnderlayIPv4, inventory
	if cell == cellUnderlay6 {
		fam, inv = nstest.UnderlayIPv6, inventoryUnderlay6
	}
	m = startMesh(t, res, meshcast, encap, fam, inv)
	nodes := m.nodes
	total := load.total()
	recvs := m.startReceivers(t, probe, total)
	before := m.tapCounters(t)

	// The steady stream: mcastprobe, sequence numbers 0 to steady-1.
	if load.steady > 0 {
		out, err := nodes[0].Exec(t, probe, "send", "--iface", tapName, "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(load.steady), "--rate", strconv.Itoa(rate), "--size", strconv.Itoa(size), "--json")
		var sr struct {
			Sent int `json:"sent"`
		}
		if jerr := json.Unmarshal([]byte(lastJSON(out)), &sr); jerr != nil {
			res.fail(t, "steady send: %v, printed:\n%s", err, out)
		}
		res.sent += sr.Sent
		if err != nil {
			res.fail(t, "steady send: %v", err)
		}
	}
	// The bursts: the rest of the sequence numbers, burst datagrams per
	// sendmmsg, so that they reach the receiving daemons back to back.
	if load.bursts > 0 && load.burst > 0 {
		var n int
		err := nodes[0].Do(func() error {
			var err error
			n, err = sendBursts(load.steady, load.bursts, load.burst)
			return err
		})
		res.sent += n
		if err != nil {
			res.fail(t, "bursts: %v (sent %d of %d)", err, n, load.bursts*load.burst)
		}
	}

	// Every datagram is on its way: give the receivers 20 s together.
	deadline := time.Now().Add(20 * time.Second)
	for i, p := range recvs {
		got, err := receiverResult(p, deadline)
		res.received[i] = got
		res.lost[i] = total - got
		if err != nil {
			res.fail(t, "receiver on node %d: %v", i+2, err)
		}
	}
	after := m.tapCounters(t)
	for i := range after {
		res.frames[i] = after[i].Sub(before[i]).RxPackets
		logExtraFrames(t, i+2, after[i].Sub(before[i]), res.received[i])
	}
	sts := m.report(t, res, release, encap, tapGSO)
	if cell == cellUnderlay6 {
		m.checkUnderlay6(t, sts, encap, res)
	}

	t.Logf("%s on %s: sent %d, node 2 received %d (%d TAP frames), node 3 received %d (%d TAP frames)",
		encap, release, res.sent, res.received[0], res.frames[0], res.received[1], res.frames[1])
	if res.sent != total {
		res.fail(t, "sent %d of %d datagrams", res.sent, total)
	}
	for i, got := range res.received {
		if got != total {
			res.fail(t, "node %d received %d of %d datagrams (tap_write drops %d)", i+2, got, total, res.tapWrite[i])
		}
	}
}

// testTakeover streams count datagrams from node 1 to nodes 2 and 3 and,
// during the stream, takes over node 2's daemon and then node 1's. Node 2's
// takeover affects node 2's receiver, node 1's both: each may cost a
// receiver at most takeoverLoss datagrams. The sender must see no error,
// every TAP keep its interface index, and the successors report the
// offloads this kernel allows, as the daemons they took over did.
func testTakeover(t *testing.T, encap string, bins [2]string, count int) {
	meshcast, probe := bins[0], bins[1]
	release, tapGSO := kernelRelease(t, 6, 2)
	start := time.Now()
	res := &result{kernel: release, encap: encap, cell: "takeover", inUse: map[string]string{}}
	defer func() {
		res.seconds = time.Since(start).Seconds()
		res.pass = !t.Failed()
		fmt.Println(res.line())
	}()

	nstest.LeakCheck(t)
	var extra []string
	if ringCell(encap, res.cell) {
		extra = []string{"--ingress", "packet"}
	}
	m := startMesh(t, res, meshcast, encap, nstest.UnderlayIPv4, inventory, extra...)
	nodes := m.nodes
	recvs := m.startReceivers(t, probe, count)
	before := m.tapCounters(t)
	index := make([]int, len(nodes))
	for i, n := range nodes {
		index[i] = tapIndex(t, n)
	}
	// The path from node 1 to node 2 as their daemons count it; the
	// counters carry over a takeover. What node 1 sent to node 2 during
	// the stream and node 2 did not receive was lost at node 2's
	// takeover.
	tx0, rx0, path0 := m.path(t)

	send := nodes[0].Start(t, probe, "send", "--iface", tapName, "--group", group, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(count), "--rate", strconv.Itoa(rate), "--size", strconv.Itoa(size), "--json")
	begin := time.Now()
	time.Sleep(time.Until(begin.Add(takeoverAt)))
	res.takeovers = append(res.takeovers, m.takeover(t, 1, index[1]))
	time.Sleep(takeoverGap)
	res.takeovers = append(res.takeovers, m.takeover(t, 0, index[0]))
	if send.Exited() {
		res.fail(t, "the stream of %d datagrams ended before node 1's takeover was done, %v after it started: "+
			"the takeover was not checked under traffic (raise %s)", count, time.Since(begin).Round(time.Millisecond), envTakeover)
	}

	code, err := send.Wait(time.Duration(count/rate)*time.Second + time.Minute)
	var sr struct {
		Sent   int `json:"sent"`
		Errors int `json:"errors"`
	}
	if jerr := json.Unmarshal([]byte(lastJSON(send.Output())), &sr); jerr != nil || err != nil || code != 0 ||
		sr.Errors != 0 || sr.Sent != count {
		res.fail(t, "sender: exit %d (%v), sent %d of %d with %d errors; want all without an error:\n%s",
			code, err, sr.Sent, count, sr.Errors, send.Output())
	}
	res.sent = sr.Sent

	// The receivers end by themselves once they have every datagram;
	// after a loss they wait until interrupted.
	deadline := time.Now().Add(drainWait)
	for i, p := range recvs {
		got, err := receiverResult(p, deadline)
		res.received[i] = got
		res.lost[i] = count - got
		if err != nil {
			res.fail(t, "receiver on node %d: %v", i+2, err)
		}
	}
	after := m.tapCounters(t)
	for i := range after {
		res.frames[i] = after[i].Sub(before[i]).RxPackets
		logExtraFrames(t, i+2, after[i].Sub(before[i]), res.received[i])
	}
	sts := m.report(t, res, release, encap, tapGSO)
	for i, st := range sts[:2] {
		if st != nil && st.PID != m.daemons[i].Pid() {
			res.fail(t, "node %d: status answered by pid %d, want the successor %d", i+1, st.PID, m.daemons[i].Pid())
		}
	}
	for i, n := range nodes {
		if got := tapIndex(t, n); got != index[i] {
			res.fail(t, "node %d: %s is interface %d at the end, was %d", i+1, tapName, got, index[i])
		}
	}

	// Split node 2's loss between the two takeovers. The counters carried
	// over if they cover at least what node 2's receiver got. They count
	// the daemons' own packets too (IGMP, ping): a difference beyond the
	// receiver's loss is not the stream's.
	if tx1, rx1, path1 := m.path(t); path0 && path1 && tx1 >= tx0 && rx1 >= rx0 {
		res.path, res.pathSent, res.pathRecv = true, int(tx1-tx0), int(rx1-rx0)
		if got := res.received[0]; res.pathSent >= got && res.pathRecv >= got {
			res.split = true
			res.lostAt2 = min(max(res.pathSent-res.pathRecv, 0), res.lost[0])
			res.lostAt1 = res.lost[0] - res.lostAt2
		}
		t.Logf("underlay from node 1 to node 2 during the stream: %d sent, %d received", res.pathSent, res.pathRecv)
	}
	if !res.split {
		t.Logf("the underlay counters do not tell at which takeover node 2 lost what")
	}

	t.Logf("%s on %s: sent %d; node 2 received %d, lost %d; node 3 received %d, lost %d",
		encap, release, res.sent, res.received[0], res.lost[0], res.received[1], res.lost[1])
	if res.lost[0] > 2*takeoverLoss {
		res.fail(t, "node 2 lost %d datagrams over two takeovers (its own and node 1's), want at most %d", res.lost[0], 2*takeoverLoss)
	}
	if res.split && (res.lostAt2 > takeoverLoss || res.lostAt1 > takeoverLoss) {
		res.fail(t, "node 2 lost %d datagrams at its own takeover and %d at node 1's, want at most %d at each",
			res.lostAt2, res.lostAt1, takeoverLoss)
	}
	if res.lost[1] > takeoverLoss {
		res.fail(t, "node 3 lost %d datagrams over node 1's takeover, want at most %d", res.lost[1], takeoverLoss)
	}
}

// path returns the packets node 1's daemon counts as sent to node 2 and
// node 2's daemon as received from node 1, and whether both were listed.
func (m *mesh) path(t *testing.T) (tx, rx uint64, ok bool) {
	t.Helper()
	a, b := m.nodes[0], m.nodes[1]
	sa, err := readStatus(t, a, m.meshcast, m.ctl[0])
	if err != nil {
		t.Logf("node 1: %v", err)
		return 0, 0, false
	}
	sb, err := readStatus(t, b, m.meshcast, m.ctl[1])
	if err != nil {
		t.Logf("node 2: %v", err)
		return 0, 0, false
	}
	tx, _, oka := sa.peer(underlay(b).String())
	_, rx, okb := sb.peer(underlay(a).String())
	return tx, rx, oka && okb
}

// ringCell reports whether the cell runs with --ingress packet: GRE's
// takeover cell, so that the receive ring and its handover are tested on
// every kernel, while the delivery cell keeps the defaults.
func ringCell(encap, cell string) bool { return encap == "gre" && cell == "takeover" }

// checkOffloads checks node k's offloads object against what this kernel
// and encapsulation allow, and records it in res.
func checkOffloads(t *testing.T, k int, o *offloads, release, encap string, tapGSO bool, res *result) {
	t.Helper()
	if o == nil {
		res.fail(t, "node %d: meshcast status --json has no offloads object", k)
		return
	}
	if o.Kernel != release {
		res.fail(t, "node %d: offloads.kernel is %q, want %q", k, o.Kernel, release)
	}
	// AF_PACKET egress (PACKET_QDISC_BYPASS is Linux 3.14) is in use on
	// every kernel meshcast runs on; its segmentation offload for VXLAN
	// (VIRTIO_NET_HDR_GSO_UDP_L4) needs Linux 6.2, as the TAP's does.
	want := map[string]bool{"tap_coalesce": tapGSO, "udp_gso": encap == "vxlan", "udp_gro": encap == "vxlan",
		"af_packet_tx": true, "af_packet_gso": encap == "vxlan" && tapGSO, "af_packet_rx": ringCell(encap, res.cell)}
	// The reason an offload that is off must give; any where not listed.
	var wantReason map[string]string
	if res.cell == cellUnderlay6 {
		want, wantReason = underlay6Offloads(t, encap, tapGSO)
	}
	for _, e := range o.entries() {
		if e.o == nil {
			res.fail(t, "node %d: offloads.%s is missing", k, e.name)
			continue
		}
		use := "no"
		if e.o.InUse {
			use = "yes"
		}
		if prev, ok := res.inUse[e.name]; ok && prev != use {
			use = "mixed"
		}
		res.inUse[e.name] = use
		res.fallback += e.o.Fallback
		if e.o.Reason != "" {
			under := ""
			if res.cell == cellUnderlay6 {
				under = "underlay=ipv6 "
			}
			fmt.Printf("VMTEST-REASON kernel=%s encap=%s %snode=%d offload=%s in_use=%t reason=%s\n",
				release, encap, under, k, e.name, e.o.InUse, e.o.Reason)
		}
		if e.o.InUse != want[e.name] {
			res.fail(t, "node %d: offloads.%s.in_use is %t on %s with %s over %s, want %t (reason %q)",
				k, e.name, e.o.InUse, release, encap, res.underlayName(), want[e.name], e.o.Reason)
		}
		if !e.o.InUse && e.o.Reason == "" {
			res.fail(t, "node %d: offloads.%s is not in use and gives no reason", k, e.name)
		}
		if r, ok := wantReason[e.name]; ok && !e.o.InUse && e.o.Reason != r {
			res.fail(t, "node %d: offloads.%s is off on %s with %s over %s because %q, want %q",
				k, e.name, release, encap, res.underlayName(), e.o.Reason, r)
		}
		if e.o.Fallback != 0 {
			res.fail(t, "node %d: offloads.%s.offload_fallback is %d, want 0: the probe decided wrongly", k, e.name, e.o.Fallback)
		}
	}
}

// lastLine returns the last line of out that is not empty.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// lastJSON returns the last line of out that starts with "{".
func lastJSON(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return lines[i]
		}
	}
	return ""
}

// receiverResult waits until deadline for mcastprobe recv to finish (it ends
// by itself once it has every datagram), then interrupts it, and returns how
// many distinct datagrams it received.
func receiverResult(p *nstest.Proc, deadline time.Time) (int, error) {
	if _, err := p.Wait(max(time.Until(deadline), 100*time.Millisecond)); err != nil {
		_ = p.Signal(syscall.SIGINT) // it prints its result and exits
		if _, err := p.Wait(10 * time.Second); err != nil {
			return 0, err
		}
	}
	var r struct {
		Received int `json:"received"`
		Dup      int `json:"dup"`
		Invalid  int `json:"invalid"`
	}
	if err := json.Unmarshal([]byte(lastJSON(p.Output())), &r); err != nil {
		return 0, fmt.Errorf("no JSON result (%v):\n%s", err, p.Output())
	}
	if r.Dup != 0 || r.Invalid != 0 {
		return r.Received, fmt.Errorf("%d duplicates and %d invalid datagrams", r.Dup, r.Invalid)
	}
	return r.Received, nil
}

// readStatus returns what meshcast status --json reports on node n.
func readStatus(t *testing.T, n *nstest.Node, meshcast, ctl string) (*status, error) {
	t.Helper()
	out, err := n.Exec(t, meshcast, "status", "--json", "--control", ctl)
	if err != nil {
		return nil, fmt.Errorf("meshcast status: %w", err)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("meshcast status --json: %v\n%s", err, out)
	}
	return &st, nil
}

// waitMembers waits up to memberWait until node n's meshcast lists every
// peer in want as a member of grp, and returns how long that took, or an
// error saying what it listed last.
func waitMembers(t *testing.T, n *nstest.Node, meshcast, ctl, grp string, want []string) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	for {
		st, err := readStatus(t, n, meshcast, ctl)
		listed := "no entry"
		if err == nil {
			for _, g := range st.Groups {
				if g.Group != grp {
					continue
				}
				if !slices.ContainsFunc(want, func(p string) bool { return !slices.Contains(g.Peers, p) }) {
					return time.Since(start), nil
				}
				listed = fmt.Sprintf("members %v", g.Peers)
			}
		}
		if time.Since(start) > memberWait {
			return -1, fmt.Errorf("after %v, %s does not list %v as members of %s (%s, last error %v)",
				memberWait, n, want, grp, listed, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sendBursts sends bursts batches of burst datagrams to the group out of
// the TAP, each batch with one sendmmsg, paced at rate datagrams per second
// on average. Sequence numbers start at first. It returns how many
// datagrams it sent. It must run in the sending node's namespace.
func sendBursts(first, bursts, burst int) (int, error) {
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	ifi, err := net.InterfaceByName(tapName)
	if err != nil {
		return 0, err
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return 0, fmt.Errorf("IP_MULTICAST_IF: %w", err)
	}
	if err := pc.SetMulticastTTL(1); err != nil {
		return 0, err
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		return 0, err
	}
	dst := &net.UDPAddr{IP: net.ParseIP(group), Port: port}
	msgs := make([]ipv4.Message, burst)
	for j := range msgs {
		b := make([]byte, size)
		for i := probeHeader; i < len(b); i++ {
			b[i] = byte(i)
		}
		copy(b, probeMagic)
		msgs[j] = ipv4.Message{Buffers: [][]byte{b}, Addr: dst}
	}
	interval := time.Duration(burst) * time.Second / rate
	start := time.Now()
	sent := 0
	for k := range bursts {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		for j := range msgs {
			binary.BigEndian.PutUint64(msgs[j].Buffers[0][len(probeMagic):], uint64(first+k*burst+j))
		}
		deadline := time.Now().Add(time.Second)
		for off := 0; off < burst; {
			n, err := pc.WriteBatch(msgs[off:], 0)
			off += max(n, 0)
			sent += max(n, 0)
			if err != nil {
				if (errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN)) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
					continue
				}
				return sent, fmt.Errorf("sendmmsg: %w", err)
			}
		}
	}
	return sent, nil
}
