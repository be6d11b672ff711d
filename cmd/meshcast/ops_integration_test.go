package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := 0
		for _, g := range statusJSON(t, n, bin, sock).Groups {
			if g.Group == group {
				got = len(g.Peers)
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the daemon knows %d member peers of %s after 10s, want %d", n, got, group, want)
		}
		time.Sleep(50 * time.Millisecond)
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

	// Node 2 joins a group; node 1 sends 500 datagrams to it.
	recv := nodes[1].Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", "500", "--timeout", "20s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
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

	// ping on all three nodes at once: 0% loss both ways, exit 0.
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
