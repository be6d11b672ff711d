package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/internal/ping"
)

// opsMesh starts three daemons, each with its own control socket (the
// namespaces share one filesystem) and node 1 with metrics on its loopback.
func opsMesh(t *testing.T) (nodes []*nstest.Node, daemons []*nstest.Proc, socks []string, bin string) {
	t.Helper()
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ = binaries(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	if err := os.WriteFile(inv, []byte(demoInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes = nt.Nodes()
	for i, n := range nodes {
		sock := filepath.Join(dir, fmt.Sprintf("n%d.sock", i+1))
		args := []string{"run", "--peers", inv, "--local", n.Underlay.String(), "--control", sock}
		if i == 0 {
			args = append(args, "--metrics", "127.0.0.1:9977")
		}
		daemons = append(daemons, n.Start(t, bin, args...))
		socks = append(socks, sock)
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, d.Output())
		}
	}
	return nodes, daemons, socks, bin
}

func statusJSON(t *testing.T, n *nstest.Node, bin, sock string) control.State {
	t.Helper()
	out, err := n.Exec(t, bin, "status", "--json", "--control", sock)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st control.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// waitMembers waits until the daemon behind sock on n counts want peers as
// members of group, so that a stream sent then reaches every subscriber
// from its first datagram.
func waitMembers(t *testing.T, n *nstest.Node, bin, sock, group string, want int) {
	t.Helper()
	waitGroup(t, n, bin, sock, group, fmt.Sprintf("%d member peers", want), func(g control.Group) bool {
		return len(g.Peers) == want
	})
}

// waitMembership waits until the daemon behind sock on n holds peer as a
// member of group in mode ("include" or "exclude") with exactly sources.
func waitMembership(t *testing.T, n *nstest.Node, bin, sock, group, peer, mode string, sources ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(sources))
	waitGroup(t, n, bin, sock, group, fmt.Sprintf("peer %s in %s mode with sources %v", peer, mode, want), func(g control.Group) bool {
		for _, m := range g.Members {
			if m.Port == peer && m.Mode == mode && slices.Equal(slices.Sorted(slices.Values(m.Sources)), want) {
				return true
			}
		}
		return false
	})
}

// memberWait bounds waitGroup: IGMP converges within one response
// interval (10 s by default) of the last daemon's start, when the startup
// queries' reports come back.
const memberWait = 15 * time.Second

// waitGroup polls `meshcast status --json` of the daemon behind sock on n
// until ok holds for its entry of group (the zero Group while it lists
// none), and fails the test, saying it wanted what, after memberWait.
func waitGroup(t *testing.T, n *nstest.Node, bin, sock, group, what string, ok func(control.Group) bool) {
	t.Helper()
	deadline := time.Now().Add(memberWait)
	for {
		var entry control.Group
		for _, g := range statusJSON(t, n, bin, sock).Groups {
			if g.Group == group {
				entry = g
			}
		}
		if ok(entry) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v the daemon's entry of %s is %+v, want %s", n, memberWait, group, entry, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPingGroup waits until every node's daemon knows every other node as
// a member of the ping group, so that multicast probes sent then reach
// every peer from the first one: until then a daemon that knows some
// members but not all sends its multicast probe only to those it knows.
func waitPingGroup(t *testing.T, nodes []*nstest.Node, bin string, socks []string) {
	t.Helper()
	for i, n := range nodes {
		waitMembers(t, n, bin, socks[i], ping.DefaultGroup, len(nodes)-1)
	}
}

// tapFrames returns how many frames from its TAP the daemon behind sock
// has handled (forwarded to any number of peers, none included).
func tapFrames(t *testing.T, sock string) uint64 {
	t.Helper()
	return fetchState(t, sock).Fanout.Count
}

// fetchState asks the daemon behind sock for its state over the control
// socket, from the test process, and fails the test if it cannot.
func fetchState(t *testing.T, sock string) control.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.Fetch(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitTAPFrames waits until the daemon behind sock has handled at least
// want frames from its TAP in all: every copy it made of them has then
// been handed to the underlay.
func waitTAPFrames(t *testing.T, sock string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := tapFrames(t, sock)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon handled %d frames from its TAP after 10s, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape fetches /metrics from inside a namespace over its loopback.
func scrape(t *testing.T, n *nstest.Node, addr string) string {
	t.Helper()
	var conn net.Conn
	if err := n.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in metrics", series)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestIntegrationOperations checks status, ping, metrics and the clean
// lifecycle on a three-node community.
func TestIntegrationOperations(t *testing.T) {
	nodes, daemons, socks, bin := opsMesh(t)
	_, probe := binaries(t)

	// Node 2 joins a group; node 1 sends 500 datagrams to it. A second
	// socket keeps node 2 in the group after the counting receiver has
	// exited, until the test ends: the checks of the group below must not
	// race its last member time (2 x 1 s).
	holder := nodes[1].Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5999",
		"--count", "1", "--timeout", "10m")
	recv := nodes[1].Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", "500", "--timeout", "20s")
	for _, p := range []*nstest.Proc{holder, recv} {
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitMembers(t, nodes[0], bin, socks[0], "239.1.2.3", 1)
	before := statusJSON(t, nodes[0], bin, socks[0])
	m0 := scrape(t, nodes[0], "127.0.0.1:9977")
	if out, err := nodes[0].Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", "500", "--rate", "2000"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	recv.Wait(20 * time.Second)
	after := statusJSON(t, nodes[0], bin, socks[0])

	// status --json: the contract fields, the peers, the group and its member.
	if after.Community != "demo" || after.Encap != "gre" || after.TAP != "mcbr-demo" || after.Local != "198.18.0.1" ||
		after.Overlay != "198.19.0.1/24" || after.MTU != 1462 || len(after.Peers) != 2 {
		t.Fatalf("status: %+v", after)
	}
	var group *control.Group
	for i := range after.Groups {
		if after.Groups[i].Group == "239.1.2.3" {
			group = &after.Groups[i]
		}
	}
	if group == nil || len(group.Peers) != 1 || group.Peers[0] != "198.18.0.2" || group.Local {
		t.Fatalf("group 239.1.2.3 in status: %+v", after.Groups)
	}
	grew := after.Peers[0].TxPackets - before.Peers[0].TxPackets
	t.Logf("status: tx_packets to 198.18.0.2 grew by %d while 500 datagrams were sent", grew)
	if grew < 500 || grew > 520 {
		t.Errorf("tx_packets to the member grew by %d, want about 500", grew)
	}
	if after.Peers[1].TxPackets-before.Peers[1].TxPackets > 20 {
		t.Errorf("the non-member's counter grew by %d", after.Peers[1].TxPackets-before.Peers[1].TxPackets)
	}
	if _, ok := after.Drops["not_peer"]; !ok || after.Discovery.Source != "static" || after.Discovery.LastSuccess == nil {
		t.Errorf("drops or discovery missing: %+v %+v", after.Drops, after.Discovery)
	}
	plain, err := nodes[0].Exec(t, bin, "status", "--control", socks[0])
	if err != nil || !strings.Contains(plain, "239.1.2.3") || !strings.Contains(plain, "198.18.0.2") {
		t.Fatalf("status: %v\n%s", err, plain)
	}
	t.Logf("meshcast status on node 1:\n%s", plain)

	// /metrics agrees with the traffic.
	m1 := scrape(t, nodes[0], "127.0.0.1:9977")
	series := `meshcast_peer_tx_packets_total{community="demo",peer="198.18.0.2"}`
	delta := metricValue(t, m1, series) - metricValue(t, m0, series)
	t.Logf("metrics: %s grew by %.0f", series, delta)
	if delta < 500 || delta > 520 {
		t.Errorf("%s grew by %.0f, want about 500", series, delta)
	}
	if v := metricValue(t, m1, `meshcast_group_members{community="demo",group="239.1.2.3"}`); v != 1 {
		t.Errorf("meshcast_group_members = %v", v)
	}

	// ping on all three nodes at once: 0% loss both ways, exit 0. Every
	// daemon first knows every peer as a member of the ping group: a
	// multicast probe sent before reaches only the members known then.
	waitPingGroup(t, nodes, bin, socks)
	var wg sync.WaitGroup
	outs := make([]string, 3)
	errs := make([]error, 3)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = n.Exec(t, bin, "ping", "--control", socks[i], "--count", "5", "--interval", "200ms")
		}()
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Errorf("ping on node %d: %v\n%s", i+1, errs[i], outs[i])
		}
		if strings.Count(outs[i], "/0%") != 4 {
			t.Errorf("ping on node %d did not report 0%% loss for 2 peers x 2 kinds:\n%s", i+1, outs[i])
		}
	}
	t.Logf("meshcast ping on node 1:\n%s", outs[0])

	// A second daemon for the same community refuses to start.
	dup, err := nodes[0].Exec(t, bin, "run", "--peers", filepath.Join(filepath.Dir(socks[0]), "peers"),
		"--local", "198.18.0.1", "--control", socks[0])
	if code := exitCode(err); code != exitUsage || !strings.Contains(dup, "already running") {
		t.Errorf("second daemon: exit %d, output:\n%s", code, dup)
	}

	// Node 3 stops cleanly: TAP and socket gone. Ping elsewhere reports it
	// lost and exits non-zero.
	daemons[2].Signal(syscall.SIGTERM)
	if code, err := daemons[2].Wait(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("SIGTERM: exit %d %v", code, err)
	}
	if _, err := nodes[2].Link("mcbr-demo"); err == nil {
		t.Error("TAP left after SIGTERM")
	}
	if _, err := os.Stat(socks[2]); err == nil {
		t.Error("control socket left after SIGTERM")
	}
	out, err := nodes[0].Exec(t, bin, "ping", "--control", socks[0], "--count", "3", "--interval", "200ms")
	if exitCode(err) == 0 || !regexp.MustCompile(`198\.18\.0\.3.*/100%`).MatchString(out) {
		t.Errorf("ping with node 3 down: exit %d\n%s", exitCode(err), out)
	}
	t.Logf("meshcast ping on node 1 with node 3 stopped:\n%s", out)
	if out, err := nodes[2].Exec(t, bin, "status", "--control", socks[2]); exitCode(err) != exitRuntime || !strings.Contains(out, "no meshcast is running") {
		t.Errorf("status with no daemon: exit %d\n%s", exitCode(err), out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	m := regexp.MustCompile(`exit status (\d+)`).FindStringSubmatch(err.Error())
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestIntegrationPingNotJoined checks what meshcast ping says when the
// prober's daemon does not know a peer as a member of the ping group: node
// 1 never hears node 3's IGMP (an nft rule at the ingress of its underlay
// interface drops the GRE packets from node 3 whose inner frame is IGMP;
// GRE's receive ring sees packets after that hook, but before the IP
// stack's input hook), so it knows node 2 alone
// as a member and sends its multicast probes to node 2 alone. Ping on node
// 1 loses every multicast probe to node 3, exits 1, and names node 3, and
// only node 3, as not yet known in the ping group.
func TestIntegrationPingNotJoined(t *testing.T) {
	nt, bin, _, inv := demoNet(t, 3)
	nodes := nt.Nodes()
	// Outer IPv4 (20 bytes) + GRE without key (4) + Ethernet (14): the
	// inner IPv4 protocol byte is at offset 47 of the packet, bit 376.
	for _, rule := range [][]string{
		{"add", "table", "netdev", "mctest"},
		{"add", "chain", "netdev", "mctest", "ingress", "{ type filter hook ingress device " + nstest.NodeLink + " priority 0; }"},
		{"add", "rule", "netdev", "mctest", "ingress", "ip", "saddr", nodes[2].Underlay.String(), "ip", "protocol", "gre",
			"@nh,376,8", "2", "counter", "drop"},
	} {
		if _, err := exec.LookPath("nft"); err != nil {
			nstest.SkipOrFail(t, "needs nft (nftables): %v", err)
		}
		if out, err := nodes[0].Exec(t, append([]string{"nft"}, rule...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	var socks []string
	for _, n := range nodes {
		sock := ctlPath(t)
		socks = append(socks, sock)
		d := n.Start(t, bin, "run", "--peers", inv, "--local", n.Underlay.String(), "--control", sock)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
	}
	waitMembership(t, nodes[0], bin, socks[0], ping.DefaultGroup, nodes[1].Underlay.String(), "exclude")
	for _, g := range statusJSON(t, nodes[0], bin, socks[0]).Groups {
		if g.Group == ping.DefaultGroup && slices.Contains(g.Peers, nodes[2].Underlay.String()) {
			t.Fatalf("node 1 knows node 3 in the ping group although its IGMP is dropped: %+v", g)
		}
	}
	out, err := nodes[0].Exec(t, bin, "ping", "--control", socks[0], "--count", "3", "--interval", "200ms")
	t.Logf("meshcast ping on node 1, which does not know node 3 in the ping group:\n%s", out)
	if code := exitCode(err); code != exitRuntime {
		t.Errorf("exit %d, want %d: node 3 answered no multicast probe", code, exitRuntime)
	}
	for _, want := range []string{
		"198.18.0.2 (198.19.0.2) multicast, xmt/rcv/%loss = 3/3/0%",
		"198.18.0.3 (198.19.0.3)   unicast, xmt/rcv/%loss = 3/3/0%",
		"198.18.0.3 (198.19.0.3) multicast, xmt/rcv/%loss = 3/0/100%",
		"\nmulticast loss to 1 peers not yet known as members of the ping group when probing began (IGMP had not converged): 198.18.0.3 (198.19.0.3)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if drops, err := nodes[0].Exec(t, "nft", "list", "chain", "netdev", "mctest", "ingress"); err != nil || strings.Contains(drops, "packets 0 ") {
		t.Errorf("the rule dropped none of node 3's IGMP: %v\n%s", err, drops)
	}
}
