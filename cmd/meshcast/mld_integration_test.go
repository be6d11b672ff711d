package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

// inventory6 is demoInventory with IPv6 overlay addresses.
const inventory6 = "198.18.0.1 demo,198.19.0.1/24,fd00:198:19::1/64\n" +
	"198.18.0.2 demo,198.19.0.2/24,fd00:198:19::2/64\n" +
	"198.18.0.3 demo,198.19.0.3/24,fd00:198:19::3/64\n"

// mldMesh starts three daemons (A, B, C = nodes 1, 2, 3) with IPv6
// overlay addresses and a short last listener interval, and waits until
// every node's IPv6 overlay address is usable.
func mldMesh(t *testing.T, encap string, extra ...string) ([]*nstest.Node, []*nstest.Proc, []string) {
	t.Helper()
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(inventory6), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	var daemons []*nstest.Proc
	var socks []string
	for _, n := range nodes {
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
	waitOverlay6(t, nodes)
	return nodes, daemons, socks
}

// waitOverlay6 waits until duplicate address detection (about a second)
// has ended on every node with its addresses usable: neither tentative
// nor failed.
func waitOverlay6(t *testing.T, nodes []*nstest.Node) {
	t.Helper()
	for i, n := range nodes {
		want := fmt.Sprintf("fd00:198:19::%d/64", i+1)
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", "mcbr-demo")
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, out)
			}
			if strings.Contains(out, "dadfailed") {
				t.Fatalf("%s: duplicate address detection failed:\n%s", n, out)
			}
			if strings.Contains(out, want) && strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s not usable after 10 s:\n%s", n, want, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestIntegrationMLDPruning checks MLD snooping with real kernels as MLDv2
// listeners: a group's traffic crosses the underlay only to the member
// peer (the non-member's underlay carries at most 20 packets during a
// 1000-datagram stream), and the copies stop within the last listener
// time after the member's done. It runs with --unregistered drop, as
// TestIntegrationIGMPPruning does.
func TestIntegrationMLDPruning(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testMLDPruning(t, encap) })
	}
}

func testMLDPruning(t *testing.T, encap string) {
	nodes, daemons, socks := mldMesh(t, encap, "--unregistered", "drop")
	bin, probe := binaries(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const group = "ff0e::1:2:3"

	const count = 1000
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, a, bin, socks[0], group, 1)
	st := statusJSON(t, a, bin, socks[0])
	for _, g := range st.Groups {
		if g.Group == group {
			t.Logf("A's status of %s: %+v", group, g.Members)
			if len(g.Members) != 1 || g.Members[0].Port != "198.18.0.2" || g.Members[0].Mode != "exclude" || g.Members[0].Version != 2 {
				t.Errorf("A's status lists %+v, want B in exclude mode, MLDv2", g.Members)
			}
		}
	}
	if st.MLDQuerier == nil || !st.MLDQuerier.Active || st.MLDQuerier.Sent == 0 {
		t.Errorf("A's status: mld_querier %+v, want active with queries sent", st.MLDQuerier)
	}
	cBefore := c.MustCounters(t, nstest.NodeLink)
	bBefore := b.MustCounters(t, nstest.NodeLink)
	if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	recv.Wait(30 * time.Second)
	got := received(t, recv.Output())
	toC := c.MustCounters(t, nstest.NodeLink).Sub(cBefore).RxPackets
	toB := b.MustCounters(t, nstest.NodeLink).Sub(bBefore).RxPackets
	t.Logf("%s: member B received %d/%d; underlay packets into B %d, into non-member C %d", encap, got, count, toB, toC)
	if got*1000 < count*999 {
		t.Errorf("member received %d/%d (< 99.9%%)", got, count)
	}
	if toC > 20 {
		t.Errorf("non-member C got %d underlay packets during a %d-datagram stream: not pruned", toC, count)
	}

	// Done: B's receiver exits during a steady stream; copies into B
	// must stop within the last listener time (2 × 500 ms) plus 1 s.
	recv2 := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", "1000000", "--timeout", "1500ms")
	if err := recv2.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sender := a.Start(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5000",
		"--count", "1600", "--rate", "200", "--size", "100")
	recv2.Wait(10 * time.Second)
	left := time.Now()
	txToB := func() uint64 {
		st, err := control.Fetch(context.Background(), socks[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.Underlay == "198.18.0.2" {
				return p.TxPackets
			}
		}
		return 0
	}
	last := left
	prev := txToB()
	for time.Since(left) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
		cur := txToB()
		if cur-prev >= 3 {
			last = time.Now()
		}
		prev = cur
	}
	sender.Stop()
	removed, ok := logTime(daemons[0].Output(), `msg="mld: member left" group=ff0e::1:2:3 port=198.18.0.2`)
	if !ok {
		t.Fatalf("A never dropped B's membership:\n%s", daemons[0].Output())
	}
	dropAfter, stop := removed.Sub(left), last.Sub(left)
	t.Logf("%s: A dropped B's membership %v after B's done; A's copies to B seen until %v after (limit 2s)",
		encap, dropAfter.Round(10*time.Millisecond), stop.Round(10*time.Millisecond))
	if dropAfter > 2*time.Second {
		t.Errorf("A kept B's membership for %v after the done, want <= last listener time 1s + 1s", dropAfter)
	}
	if stop > 3*time.Second {
		t.Errorf("copies reached B for %v after the done", stop)
	}
}

// TestIntegrationMLDSourceSpecific checks MLDv2 source filtering end to
// end: B joins (fd00:198:19::1, ff3e::8000:1) with MCAST_JOIN_SOURCE_GROUP;
// A's traffic crosses to B and C's to the same group does not cross the
// underlay at all.
func TestIntegrationMLDSourceSpecific(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) {
			nodes, _, socks := mldMesh(t, encap)
			bin, probe := binaries(t)
			a, b, c := nodes[0], nodes[1], nodes[2]
			const count = 500
			const group = "ff3e::8000:1"
			recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--source", "fd00:198:19::1",
				"--port", "5002", "--count", strconv.Itoa(count), "--timeout", "30s")
			if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{0, 2} {
				waitMembership(t, nodes[i], bin, socks[i], group, "198.18.0.2", "include", "fd00:198:19::1")
			}
			before := b.MustCounters(t, nstest.NodeLink)
			frames := tapFrames(t, socks[2])
			if out, err := c.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5002",
				"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
				t.Fatalf("send from C: %v\n%s", err, out)
			}
			waitTAPFrames(t, socks[2], frames+count)
			time.Sleep(100 * time.Millisecond)
			mid := b.MustCounters(t, nstest.NodeLink)
			if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5002",
				"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
				t.Fatalf("send from A: %v\n%s", err, out)
			}
			recv.Wait(30 * time.Second)
			after := b.MustCounters(t, nstest.NodeLink)
			fromC, fromA := mid.Sub(before).RxBytes, after.Sub(mid).RxBytes
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
		})
	}
}

// TestIntegrationMLDQuerierRefresh checks that the hosts answer the MLD
// querier's queries (sent from the TAP's own link-local address): with a
// 2 s query interval the listener interval is 2 × 2 s + 1 s, and a
// membership must outlive several of them, which only the answers to the
// periodic queries can keep.
func TestIntegrationMLDQuerierRefresh(t *testing.T) {
	nodes, _, socks := mldMesh(t, "vxlan", "--igmp-query-interval", "2s", "--igmp-response-interval", "1s")
	bin, probe := binaries(t)
	recv := nodes[1].Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "ff05::77", "--port", "5003",
		"--count", "1", "--timeout", "40s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, nodes[0], bin, socks[0], "ff05::77", 1)
	time.Sleep(15 * time.Second) // three listener intervals
	waitMembers(t, nodes[0], bin, socks[0], "ff05::77", 1)
	st := statusJSON(t, nodes[1], bin, socks[1])
	if st.MLDQuerier == nil || st.MLDQuerier.Sent < 6 {
		t.Errorf("B's MLD querier: %+v, want at least 6 queries sent in 15 s", st.MLDQuerier)
	}
	recv.Stop()
}
