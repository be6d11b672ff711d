package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/internal/ping"
)

// TestIntegrationPing6 runs four daemons, three of them with IPv6 overlay
// addresses: each of those answers pings on IPv6 too (joined to the IPv6
// ping group on its TAP), and `meshcast ping --family 6` on each reaches
// the other two, unicast and multicast, and lists the fourth as skipped.
// On the fourth, --family 6 fails for want of an IPv6 overlay address, and
// plain `meshcast ping` still works everywhere. After a takeover, the
// successor answers on IPv6. Both dataplanes: the kernel one's bridge holds
// the IPv6 overlay address as the TAP does. nstest removes the namespaces,
// with their links, and stops the daemons, also on failure.
func TestIntegrationPing6(t *testing.T) {
	for _, dataplane := range []string{"userspace", "kernel"} {
		t.Run(dataplane, func(t *testing.T) { testPing6(t, dataplane) })
	}
}

func testPing6(t *testing.T, dataplane string) {
	nt := nstest.NewNet(t, 4)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	const peers = "198.18.0.1 demo,198.19.0.1/24,fd00:198:19::1/64\n" +
		"198.18.0.2 demo,198.19.0.2/24,fd00:198:19::2/64\n" +
		"198.18.0.3 demo,198.19.0.3/24,fd00:198:19::3/64\n" +
		"198.18.0.4 demo,198.19.0.4/24\n"
	if err := os.WriteFile(inv, []byte(peers), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	var socks []string
	run := func(n *nstest.Node, sock string, more ...string) []string {
		args := []string{"run", "--peers", inv, "--local", n.Underlay.String(), "--control", sock, "--dataplane", dataplane}
		if dataplane == "kernel" {
			args = append(append(args, "--encap", "vxlan"), kernelFlags...)
		}
		return append(args, more...)
	}
	for _, n := range nodes {
		socks = append(socks, ctlPath(t))
		d := n.Start(t, bin, run(n, socks[len(socks)-1])...)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
	}
	v6 := nodes[:3]
	// ping learns the peers' IPv6 overlay addresses from the status.
	for _, p := range statusJSON(t, nodes[0], bin, socks[0]).Peers {
		if want := p.Underlay != "198.18.0.4"; (p.Overlay6 != "") != want {
			t.Fatalf("%s dataplane: the status of node 1 lists peer %s with IPv6 overlay address %q; ping --family 6 takes the peers' addresses from there",
				dataplane, p.Underlay, p.Overlay6)
		}
	}
	// The responders joined the IPv6 ping group on the TAP.
	group := fmt.Sprintf("%x", netip.MustParseAddr(ping.DefaultGroup6).AsSlice())
	for _, n := range v6 {
		out, err := n.Exec(t, "cat", "/proc/net/igmp6")
		if err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
		joined := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[1] == "mcbr-demo" && f[2] == group {
				joined = true
			}
		}
		if !joined {
			t.Errorf("%s: %s is not joined on mcbr-demo:\n%s", n, ping.DefaultGroup6, out)
		}
	}
	waitDAD(t, v6)

	// Every daemon with IPv6 knows the other two as members of the IPv6
	// ping group (MLD has converged); then each pings the others at once.
	// The kernel dataplane lists no groups: there a run that lost
	// multicast probes is tried again, until memberWait.
	if dataplane != "kernel" {
		for i, n := range v6 {
			waitMembers(t, n, bin, socks[i], ping.DefaultGroup6, len(v6)-1)
		}
	}
	outs := make([]string, len(v6))
	var wg sync.WaitGroup
	for i, n := range v6 {
		wg.Go(func() {
			deadline := time.Now().Add(memberWait)
			for {
				out, err := n.Exec(t, bin, "ping", "--family", "6", "--control", socks[i], "--count", "5", "--interval", "200ms")
				outs[i] = fmt.Sprintf("%s(exit %d)", out, exitCode(err))
				if err == nil || dataplane != "kernel" || time.Now().After(deadline) {
					return
				}
				t.Logf("meshcast ping --family 6 on node %d, to be tried again:\n%s", i+1, outs[i])
				time.Sleep(500 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for i := range v6 {
		t.Logf("meshcast ping --family 6 on node %d:\n%s", i+1, outs[i])
		want := []string{
			"198.18.0.4 skipped: the peer has no IPv6 overlay address\n",
			"2 peers: unicast ok for 2, multicast ok for 2\n",
			"(exit 0)",
		}
		for j := range v6 {
			if j == i {
				continue
			}
			label := fmt.Sprintf("198.18.0.%d (fd00:198:19::%d)", j+1, j+1)
			want = append(want,
				label+"   unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = ",
				label+" multicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = ")
		}
		for _, w := range want {
			if !strings.Contains(outs[i], w) {
				t.Errorf("meshcast ping --family 6 on node %d: the output lacks %q", i+1, w)
			}
		}
		if !strings.HasPrefix(outs[i], want[0]) {
			t.Errorf("meshcast ping --family 6 on node %d does not begin with the skipped peer", i+1)
		}
	}

	// Without an IPv6 overlay address: a runtime error that says so.
	out, err := nodes[3].Exec(t, bin, "ping", "--family", "6", "--control", socks[3], "--count", "1")
	if code := exitCode(err); code != exitRuntime || !strings.Contains(out, "the daemon has no IPv6 overlay address") {
		t.Errorf("meshcast ping --family 6 on node 4: exit %d, want %d with the reason:\n%s", code, exitRuntime, out)
	}

	// IPv4 as before, through the same responders.
	if dataplane != "kernel" {
		waitPingGroup(t, nodes, bin, socks)
	}
	out, err = nodes[0].Exec(t, bin, "ping", "--control", socks[0], "--count", "3", "--interval", "200ms")
	t.Logf("meshcast ping on node 1:\n%s", out)
	if err != nil || strings.Contains(out, "skipped") || !strings.Contains(out, "3 peers: unicast ok for 3, multicast ok for 3\n") {
		t.Errorf("meshcast ping on node 1: %v", err)
	}

	// A successor takes over node 2's TAP, whose IPv6 address stays: its
	// responder binds it once the predecessor's is gone, and answers.
	next := nodes[1].Start(t, bin, run(nodes[1], socks[1], "--takeover")...)
	if err := next.WaitOutput("meshcast forwarding", 15*time.Second); err != nil {
		t.Fatalf("takeover on node 2: %v\n%s", err, next.Output())
	}
	if strings.Contains(next.Output(), "ping responder not started") {
		t.Errorf("the successor on node 2 answers no pings:\n%s", next.Output())
	}
	out, err = nodes[0].Exec(t, bin, "ping", "--family", "6", "--control", socks[0], "--count", "3", "--interval", "200ms")
	t.Logf("meshcast ping --family 6 on node 1 after the takeover on node 2:\n%s", out)
	for _, w := range []string{
		"198.18.0.2 (fd00:198:19::2)   unicast, xmt/rcv/%loss = 3/3/0%",
		"198.18.0.2 (fd00:198:19::2) multicast, xmt/rcv/%loss = 3/3/0%",
	} {
		if err != nil || !strings.Contains(out, w) {
			t.Errorf("after the takeover on node 2: %v; the output lacks %q", err, w)
		}
	}
}

// waitDAD waits until each node's IPv6 overlay address on the TAP is
// usable: duplicate address detection has passed (a second or two after
// the TAP comes up); a prober cannot bind a tentative address.
func waitDAD(t *testing.T, nodes []*nstest.Node) {
	t.Helper()
	for _, n := range nodes {
		want := fmt.Sprintf("fd00:198:19::%d/64", n.Index)
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", "mcbr-demo")
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, out)
			}
			if strings.Contains(out, "dadfailed") {
				t.Fatalf("%s: duplicate address detection failed:\n%s", n, out)
			}
			if strings.Contains(out, want) && !strings.Contains(out, "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s not usable after 10 s:\n%s", n, want, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
