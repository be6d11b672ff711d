package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

// igmpMesh starts three daemons (A, B, C = nodes 1, 2, 3) with a short last
// member interval. With igmpVersion 2 every node's kernel is forced to
// IGMPv2 first.
func igmpMesh(t *testing.T, encap string, igmpVersion int, extra ...string) ([]*nstest.Node, []*nstest.Proc, []string) {
	t.Helper()
	return snoopMesh(t, demoInventory, encap, func(n *nstest.Node) {
		if igmpVersion == 2 {
			if out, err := n.Exec(t, "sysctl", "-w", "net.ipv4.conf.all.force_igmp_version=2"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
	}, extra...)
}

// snoopMesh starts three daemons (A, B, C = nodes 1, 2, 3) on inventory,
// with a short last member (and listener) interval, after prepare has run
// on each node, and waits until each forwards.
func snoopMesh(t *testing.T, inventory, encap string, prepare func(*nstest.Node), extra ...string) ([]*nstest.Node, []*nstest.Proc, []string) {
	t.Helper()
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	var daemons []*nstest.Proc
	var socks []string
	for _, n := range nodes {
		prepare(n)
		sock := ctlPath(t)
		socks = append(socks, sock)
		args := append([]string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", encap, "--control", sock,
			"--igmp-last-member-interval", "500ms"}, extra...)
		daemons = append(daemons, n.Start(t, bin, args...))
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	return nodes, daemons, socks
}

// TestIntegrationIGMPPruning checks, with real kernels as IGMP hosts (v3 by
// default and forced v2), that a group's traffic crosses the underlay only
// to the member peer, and stops within the last member time after the
// member leaves. It runs with --unregistered drop: with the default flood,
// a group whose last member left is flooded again (see
// TestIntegrationIGMPUnregisteredFlood).
func TestIntegrationIGMPPruning(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		for _, v := range []int{3, 2} {
			t.Run(fmt.Sprintf("%s/igmpv%d", encap, v), func(t *testing.T) { testPruning(t, encap, v) })
		}
	}
}

func testPruning(t *testing.T, encap string, version int) {
	nodes, daemons, socks := igmpMesh(t, encap, version, "--unregistered", "drop")
	pruneAndLeave(t, nodes, daemons, socks, fmt.Sprintf("%s v%d", encap, version), "239.1.2.3", "igmp")
}

// pruneAndLeave streams group from A while B is its only member, and
// checks that the non-member C's underlay carries at most 20 packets; then
// B leaves during a steady stream, and A's copies to B must stop within
// the last member time (2 × 500 ms) plus 1 s. proto names the log lines
// ("igmp" or "mld") of A's table.
func pruneAndLeave(t *testing.T, nodes []*nstest.Node, daemons []*nstest.Proc, socks []string, label, group, proto string) {
	t.Helper()
	bin, probe := binaries(t)
	a, b, c := nodes[0], nodes[1], nodes[2]

	// B joins the group and stays for a first stream, then leaves while a
	// second stream runs.
	const count = 1000
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A knows B's membership before the stream starts: with
	// --unregistered drop, nothing crosses before that, and after it the
	// stream reaching B is what proves that copies to C, had A made any,
	// left at the same time.
	waitMembers(t, a, bin, socks[0], group, 1)
	cBefore := c.MustCounters(t, nstest.NodeLink)
	bBefore := b.MustCounters(t, nstest.NodeLink)
	txBefore := txTo(t, socks[0])
	if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	recv.Wait(30 * time.Second)
	got := received(t, recv.Output())
	txAfter := txTo(t, socks[0])
	toC := c.MustCounters(t, nstest.NodeLink).Sub(cBefore).RxPackets
	toB := b.MustCounters(t, nstest.NodeLink).Sub(bBefore).RxPackets
	t.Logf("%s: member B received %d/%d; underlay packets into B %d, into non-member C %d; A's copies to B %d, to C %d (flooding would have made %d)",
		label, got, count, toB, toC, txAfter["198.18.0.2"]-txBefore["198.18.0.2"], txAfter["198.18.0.3"]-txBefore["198.18.0.3"], 2*count)
	if got*1000 < count*999 {
		t.Errorf("member received %d/%d (< 99.9%%)", got, count)
	}
	if toC > 20 {
		t.Errorf("non-member C got %d underlay packets during a %d-datagram stream: not pruned", toC, count)
	}

	// Leave: B's receiver exits during a steady stream; copies into B must
	// stop within the last member time (2 x 500ms) plus 1 s.
	recv2 := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", "1000000", "--timeout", "1500ms")
	if err := recv2.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sender := a.Start(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", "1600", "--rate", "200", "--size", "100")
	recv2.Wait(10 * time.Second)
	left := time.Now()
	// Copies to B are A's tx_packets to B, read from A's control socket.
	last := left
	prev := txTo(t, socks[0])["198.18.0.2"]
	for time.Since(left) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
		cur := txTo(t, socks[0])["198.18.0.2"]
		if cur-prev >= 3 { // the stream runs at 10 per 50 ms
			last = time.Now()
		}
		prev = cur
	}
	sender.Stop()
	// When A's table dropped B is in A's log; A's counter of copies to B
	// shows that they really stopped.
	removed, ok := logTime(daemons[0].Output(), `msg="`+proto+`: member left" group=`+group+` port=198.18.0.2`)
	if !ok {
		t.Fatalf("A never dropped B's membership:\n%s", daemons[0].Output())
	}
	dropAfter := removed.Sub(left)
	stop := last.Sub(left)
	t.Logf("%s: A dropped B's membership %v after B's leave; A's copies to B seen until %v after (limit 2s)",
		label, dropAfter.Round(10*time.Millisecond), stop.Round(10*time.Millisecond))
	if dropAfter > 2*time.Second {
		t.Errorf("A kept sending to B for %v after the leave, want <= last member time 1s + 1s", dropAfter)
	}
	if stop > 3*time.Second {
		t.Errorf("copies reached B for %v after the leave", stop)
	}
}

// txTo returns the copies the daemon behind sock sent to each peer, by
// underlay address.
func txTo(t *testing.T, sock string) map[string]uint64 {
	t.Helper()
	st, err := control.Fetch(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, p := range st.Peers {
		m[p.Underlay] = p.TxPackets
	}
	return m
}

// logTime returns the time of the first log line containing substr.
func logTime(out, substr string) (time.Time, bool) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "time="); ok {
				if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
					return ts, true
				}
			}
		}
	}
	return time.Time{}, false
}

// TestIntegrationIGMPSourceSpecific checks IGMPv3 source filtering end to
// end: B joins (198.19.0.1, 232.1.1.1) only; traffic from A crosses to B,
// and traffic from C to the same group does not cross the underlay at all.
func TestIntegrationIGMPSourceSpecific(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) {
			nodes, _, socks := igmpMesh(t, encap, 3)
			sourceSpecific(t, nodes, socks, encap, "232.1.1.1", "198.19.0.1")
		})
	}
}

// sourceSpecific has B join (source, group) only, with source A's overlay
// address; then C and A send to the group in turn. A's traffic crosses to
// B, and C's does not cross the underlay at all.
func sourceSpecific(t *testing.T, nodes []*nstest.Node, socks []string, encap, group, source string) {
	t.Helper()
	bin, probe := binaries(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const count = 500
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--source", source,
		"--port", "5002", "--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Both senders know B's (A, group) membership before either sends:
	// until C does, it floods the group (the default policy), and C's
	// bytes crossing to B would say nothing about source filtering.
	for _, i := range []int{0, 2} {
		waitMembership(t, nodes[i], bin, socks[i], group, "198.18.0.2", "include", source)
	}
	before := b.MustCounters(t, nstest.NodeLink)
	frames := tapFrames(t, socks[2])
	if out, err := c.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5002",
		"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
		t.Fatalf("send from C: %v\n%s", err, out)
	}
	// Nothing of C's may reach B: read B's counter once C's daemon has
	// handled every datagram from its TAP (any copy it made has left
	// then), and a short window later for copies in flight.
	waitTAPFrames(t, socks[2], frames+count)
	time.Sleep(100 * time.Millisecond)
	mid := b.MustCounters(t, nstest.NodeLink)
	if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5002",
		"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
		t.Fatalf("send from A: %v\n%s", err, out)
	}
	recv.Wait(30 * time.Second)
	after := b.MustCounters(t, nstest.NodeLink)
	// Bytes, not packets: with segmentation offload one underlay packet
	// may carry several datagrams. The probe's datagrams are over 100
	// bytes; IGMP or MLD and ARP or ND of their own are far less than 20
	// of them.
	fromC := mid.Sub(before).RxBytes
	fromA := after.Sub(mid).RxBytes
	got := received(t, recv.Output())
	t.Logf("%s: B received %d/%d from the joined source; underlay bytes into B: %d while C sent, %d while A sent",
		encap, got, count, fromC, fromA)
	if got*1000 < count*999 {
		t.Errorf("received %d/%d from the joined source", got, count)
	}
	if fromC > 20*100 {
		t.Errorf("%d bytes of the excluded source C crossed to B", fromC)
	}
	if fromA < count*100 {
		t.Errorf("only %d bytes of the joined source A crossed to B", fromA)
	}
}

// TestIntegrationIGMPUnregisteredFlood checks the default policy: traffic
// for a group nobody joined goes to every peer, and once a peer joins, only
// to that peer.
func TestIntegrationIGMPUnregisteredFlood(t *testing.T) {
	nodes, _, socks := igmpMesh(t, "gre", 3)
	bin, probe := binaries(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const count = 300
	// send streams count datagrams from A to group and returns the
	// underlay packets into B and C meanwhile. It returns once A's daemon
	// has handled every datagram from its TAP (so every copy it made has
	// left) and B, which gets the stream in both cases below, has received
	// count packets: C's counter is read after that, and a short window
	// more for copies still in flight, so that C's "nothing arrived" is
	// not read too early. With flooded, C must receive count packets too.
	send := func(group string, flooded bool) (toB, toC uint64) {
		t.Helper()
		b0 := b.MustCounters(t, nstest.NodeLink)
		c0 := c.MustCounters(t, nstest.NodeLink)
		frames := tapFrames(t, socks[0])
		if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5003",
			"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		waitTAPFrames(t, socks[0], frames+count)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			toB = b.MustCounters(t, nstest.NodeLink).Sub(b0).RxPackets
			toC = c.MustCounters(t, nstest.NodeLink).Sub(c0).RxPackets
			if (toB >= count && (!flooded || toC >= count)) || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond) // stragglers, after the positive event above
		return b.MustCounters(t, nstest.NodeLink).Sub(b0).RxPackets, c.MustCounters(t, nstest.NodeLink).Sub(c0).RxPackets
	}
	toB, toC := send("239.9.9.9", true)
	t.Logf("unregistered 239.9.9.9: underlay packets into B %d, into C %d", toB, toC)
	if toB < count || toC < count {
		t.Errorf("unregistered group not flooded: B %d, C %d of %d", toB, toC, count)
	}
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.9.9.9", "--port", "5003",
		"--count", strconv.Itoa(count), "--timeout", "20s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A knows B's join before the second stream: from then on the group
	// is registered and goes to B alone.
	waitMembers(t, a, bin, socks[0], "239.9.9.9", 1)
	toB, toC = send("239.9.9.9", false)
	t.Logf("after B joined 239.9.9.9: underlay packets into B %d, into C %d", toB, toC)
	if toB < count || toC > 20 {
		t.Errorf("registered group: B %d (want %d), C %d (want ~0)", toB, count, toC)
	}
}

// TestIntegrationIGMPRestart restarts a node and checks that it relearns a
// peer's group within one response interval of its start: its startup
// queries reach the peers' hosts, whose reports come back at once.
func TestIntegrationIGMPRestart(t *testing.T) {
	flags := []string{"--unregistered", "drop", "--igmp-response-interval", "2s"}
	nodes, daemons, _ := igmpMesh(t, "gre", 3, flags...)
	bin, probe := binaries(t)
	a, b := nodes[0], nodes[1]
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5004",
		"--count", "100", "--timeout", "60s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := daemons[0].WaitOutput(`member joined" group=239.1.2.3 port=198.18.0.2`, 5*time.Second); err != nil {
		t.Fatalf("A never learned B's join: %v", err)
	}
	daemons[0].Signal(syscall.SIGKILL)
	daemons[0].Wait(5 * time.Second)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(demoInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	again := a.Start(t, bin, append([]string{"run", "--peers", inv, "--local", a.Underlay.String(), "--encap", "gre", "--control", ctlPath(t),
		"--igmp-last-member-interval", "500ms"}, flags...)...)
	if err := again.WaitOutput(`member joined" group=239.1.2.3 port=198.18.0.2`, 10*time.Second); err != nil {
		t.Fatalf("restarted A did not relearn B's group: %v\n%s", err, again.Output())
	}
	took := time.Since(start)
	t.Logf("after SIGKILL and restart, A relearned B's group in %v (response interval 2s)", took.Round(10*time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("relearning took %v, want within the 2s response interval plus start-up", took)
	}
	if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5004",
		"--count", "100", "--rate", "1000"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	recv.Wait(20 * time.Second)
	if got := received(t, recv.Output()); got < 100 {
		t.Errorf("after the restart B received %d/100", got)
	}
}
