package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
	nodes, daemons, socks := snoopMesh(t, inventory6, encap, func(*nstest.Node) {}, extra...)
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
	bin, _ := binaries(t)
	const group = "ff0e::1:2:3"
	pruneAndLeave(t, nodes, daemons, socks, encap, group, "mld")
	// What A's status said of the group and of its MLD querier.
	st := statusJSON(t, nodes[0], bin, socks[0])
	if st.MLDQuerier == nil || !st.MLDQuerier.Active || st.MLDQuerier.Sent == 0 {
		t.Errorf("A's status: mld_querier %+v, want active with queries sent", st.MLDQuerier)
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
			sourceSpecific(t, nodes, socks, encap, "ff3e::8000:1", "fd00:198:19::1")
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
