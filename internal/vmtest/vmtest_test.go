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
	envEnable   = "MESHCAST_VMTEST"        // must be 1, or the test skips
	envMeshcast = "MESHCAST_BIN"           // the meshcast binary (default: meshcast on PATH)
	envProbe    = "MCASTPROBE_BIN"         // the mcastprobe binary (default: mcastprobe on PATH)
	envEncaps   = "MESHCAST_VMTEST_ENCAPS" // encapsulations to test, default "gre vxlan"
	envSteady   = "MESHCAST_VMTEST_STEADY" // datagrams of the steady stream, default 1500
	envBursts   = "MESHCAST_VMTEST_BURSTS" // number of sendmmsg bursts, default 80
	envBurst    = "MESHCAST_VMTEST_BURST"  // datagrams per burst, default 32
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
}

// entries returns the offloads by name, in the order of the table.
func (o *offloads) entries() []namedOffload {
	return []namedOffload{{"tap_coalesce", o.TAPCoalesce}, {"udp_gso", o.UDPGSO}, {"udp_gro", o.UDPGRO}}
}

type namedOffload struct {
	name string
	o    *offload
}

// status is the part of meshcast status --json this test reads.
type status struct {
	Drops    map[string]uint64 `json:"drops"`
	Offloads *offloads         `json:"offloads"`
	Groups   []struct {
		Group string   `json:"group"`
		Peers []string `json:"peers"`
	} `json:"groups"`
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
// encapsulation, and checks that both receivers get every datagram of a
// steady stream followed by sendmmsg bursts, and that the offloads meshcast
// reports fit this kernel.
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
	for _, encap := range encaps {
		t.Run(encap, func(t *testing.T) { testEncap(t, encap, bins, load) })
	}
}

// load is what node 1 sends: a steady stream, then bursts of sendmmsg
// batches at the same average rate.
type load struct{ steady, bursts, burst int }

func (l load) total() int { return l.steady + l.bursts*l.burst }

// result is one line of the table that scripts/vmtest.sh prints.
type result struct {
	kernel, encap string
	sent          int
	received      [2]int    // by receiver: nodes 2 and 3
	frames        [2]uint64 // frames meshcast wrote into each receiver's TAP
	tapWrite      [2]uint64 // tap_write drops of each receiver
	inUse         map[string]string
	fallback      uint64
	seconds       float64
	pass          bool
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
	return fmt.Sprintf("VMTEST-RESULT kernel=%s encap=%s sent=%d node2=%d node3=%d frames2=%d frames3=%d "+
		"tap_write2=%d tap_write3=%d tap_coalesce=%s udp_gso=%s udp_gro=%s fallback=%d seconds=%.1f verdict=%s",
		r.kernel, r.encap, r.sent, r.received[0], r.received[1], r.frames[0], r.frames[1],
		r.tapWrite[0], r.tapWrite[1], use("tap_coalesce"), use("udp_gso"), use("udp_gro"), r.fallback, r.seconds, verdict)
}

func testEncap(t *testing.T, encap string, bins [2]string, load load) {
	meshcast, probe := bins[0], bins[1]
	release, tapGSO := kernelRelease(t, 6, 2) // UDP segmentation frames into a TAP need 6.2
	start := time.Now()
	res := &result{kernel: release, encap: encap, inUse: map[string]string{}}
	defer func() {
		res.seconds = time.Since(start).Seconds()
		res.pass = !t.Failed()
		fmt.Println(res.line())
	}()

	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 3)
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	ctl := make([]string, len(nodes))
	daemons := make([]*nstest.Proc, len(nodes))
	for i, n := range nodes {
		ctl[i] = filepath.Join(dir, fmt.Sprintf("ctl%d.sock", i+1))
		daemons[i] = n.Start(t, meshcast, "run", "--peers", inv, "--local", n.Underlay.String(),
			"--encap", encap, "--control", ctl[i])
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", time.Minute); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}

	total := load.total()
	receivers := nodes[1:]
	recvs := make([]*nstest.Proc, len(receivers))
	for i, n := range receivers {
		recvs[i] = n.Start(t, probe, "recv", "--iface", tapName, "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(total), "--timeout", "10m", "--json")
		if err := recvs[i].WaitOutput("ready\n", time.Minute); err != nil {
			t.Fatalf("receiver on node %d: %v\n%s", i+2, err, recvs[i].Output())
		}
	}
	// The receivers' IGMP reports reach node 1 (unregistered groups are
	// flooded anyway, so this only waits for the normal state).
	waitMembers(t, nodes[0], meshcast, ctl[0], []string{receivers[0].Underlay.String(), receivers[1].Underlay.String()})

	var before [2]nstest.Counters
	for i, n := range receivers {
		c, err := n.Counters(tapName)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = c
	}

	// The steady stream: mcastprobe, sequence numbers 0 to steady-1.
	if load.steady > 0 {
		out, err := nodes[0].Exec(t, probe, "send", "--iface", tapName, "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(load.steady), "--rate", strconv.Itoa(rate), "--size", strconv.Itoa(size), "--json")
		var sr struct {
			Sent int `json:"sent"`
		}
		if jerr := json.Unmarshal([]byte(lastJSON(out)), &sr); jerr != nil {
			t.Errorf("steady send: %v, printed:\n%s", err, out)
		}
		res.sent += sr.Sent
		if err != nil {
			t.Errorf("steady send: %v", err)
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
			t.Errorf("bursts: %v (sent %d of %d)", err, n, load.bursts*load.burst)
		}
	}

	// Every datagram is on its way: give the receivers 20 s together.
	deadline := time.Now().Add(20 * time.Second)
	for i, p := range recvs {
		got, err := receiverResult(p, deadline)
		res.received[i] = got
		if err != nil {
			t.Errorf("receiver on node %d: %v", i+2, err)
		}
	}
	for i, n := range receivers {
		c, err := n.Counters(tapName)
		if err != nil {
			t.Fatal(err)
		}
		res.frames[i] = c.Sub(before[i]).RxPackets
	}

	// What each daemon reports: drops and offloads.
	for i, n := range nodes {
		st, err := readStatus(t, n, meshcast, ctl[i])
		if err != nil {
			t.Errorf("node %d: %v", i+1, err)
			continue
		}
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

	t.Logf("%s on %s: sent %d, node 2 received %d (%d TAP frames), node 3 received %d (%d TAP frames)",
		encap, release, res.sent, res.received[0], res.frames[0], res.received[1], res.frames[1])
	if res.sent != total {
		t.Errorf("sent %d of %d datagrams", res.sent, total)
	}
	for i, got := range res.received {
		if got != total {
			t.Errorf("node %d received %d of %d datagrams (tap_write drops %d)", i+2, got, total, res.tapWrite[i])
		}
	}
}

// checkOffloads checks node k's offloads object against what this kernel
// and encapsulation allow, and records it in res.
func checkOffloads(t *testing.T, k int, o *offloads, release, encap string, tapGSO bool, res *result) {
	t.Helper()
	if o == nil {
		t.Errorf("node %d: meshcast status --json has no offloads object", k)
		return
	}
	if o.Kernel != release {
		t.Errorf("node %d: offloads.kernel is %q, want %q", k, o.Kernel, release)
	}
	want := map[string]bool{"tap_coalesce": tapGSO, "udp_gso": encap == "vxlan", "udp_gro": encap == "vxlan"}
	for _, e := range o.entries() {
		if e.o == nil {
			t.Errorf("node %d: offloads.%s is missing", k, e.name)
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
			fmt.Printf("VMTEST-REASON kernel=%s encap=%s node=%d offload=%s in_use=%t reason=%s\n",
				release, encap, k, e.name, e.o.InUse, e.o.Reason)
		}
		if e.o.InUse != want[e.name] {
			t.Errorf("node %d: offloads.%s.in_use is %t on %s with %s, want %t (reason %q)",
				k, e.name, e.o.InUse, release, encap, want[e.name], e.o.Reason)
		}
		if !e.o.InUse && e.o.Reason == "" {
			t.Errorf("node %d: offloads.%s is not in use and gives no reason", k, e.name)
		}
		if e.o.Fallback != 0 {
			t.Errorf("node %d: offloads.%s.offload_fallback is %d, want 0: the probe decided wrongly", k, e.name, e.o.Fallback)
		}
	}
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

// waitMembers waits up to 30 s until node n's meshcast lists every peer in
// want as a member of the group. Delivery does not depend on it (the group
// is flooded until then), so it only logs if they do not show up.
func waitMembers(t *testing.T, n *nstest.Node, meshcast, ctl string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := readStatus(t, n, meshcast, ctl)
		if err == nil {
			for _, g := range st.Groups {
				if g.Group == group && !slices.ContainsFunc(want, func(p string) bool { return !slices.Contains(g.Peers, p) }) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Logf("after 30 s, %s does not list %v as members of %s (last error %v); sending anyway", n, want, group, err)
			return
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
