package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

// peerTxPackets sums the frames the daemon behind sock on n has sent to its
// peers.
func peerTxPackets(t *testing.T, n *nstest.Node, bin, sock string) uint64 {
	t.Helper()
	var sum uint64
	for _, p := range statusJSON(t, n, bin, sock).Peers {
		sum += p.TxPackets
	}
	return sum
}

// TestIntegrationIGMPLocalOnlyMember: a group that only the sending host
// has joined is registered (RFC 4541 section 2.1.2: any host on any port,
// this node's own host included), so its traffic goes to no peer, with the
// default --unregistered flood. The sender's own socket joins the group,
// as an application that both sends and listens does; no other host
// joins. A group nobody joined is flooded, and status counts the copies
// that flooding cost per group.
func TestIntegrationIGMPLocalOnlyMember(t *testing.T) {
	nodes, _, socks := igmpMesh(t, "gre", 3)
	bin, probe := binaries(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const count = 1000
	const group, unregistered = "239.9.9.20", "239.9.9.21"

	// A's own host joins the group: A's table registers it on the local
	// port from the host's report.
	recv := a.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5004",
		"--count", strconv.Itoa(count), "--timeout", "60s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, a, bin, socks[0], group, "the local host a member", func(g control.Group) bool { return g.Local })

	// send sends count datagrams from A's host to g and returns the copies
	// A's daemon sent to peers meanwhile and the underlay packets into B
	// and C. It reads them once A's daemon has handled every datagram from
	// its TAP, so every copy it made has been counted.
	send := func(g string) (copies, toB, toC uint64) {
		t.Helper()
		b0 := b.MustCounters(t, nstest.NodeLink)
		c0 := c.MustCounters(t, nstest.NodeLink)
		tx0 := peerTxPackets(t, a, bin, socks[0])
		frames := tapFrames(t, socks[0])
		if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", g, "--port", "5004",
			"--count", strconv.Itoa(count), "--rate", "2000"); err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		waitTAPFrames(t, socks[0], frames+count)
		copies = peerTxPackets(t, a, bin, socks[0]) - tx0
		return copies, b.MustCounters(t, nstest.NodeLink).Sub(b0).RxPackets, c.MustCounters(t, nstest.NodeLink).Sub(c0).RxPackets
	}

	copies, toB, toC := send(group)
	t.Logf("group %s joined by the sender's host only: %d datagrams, %d copies to peers, underlay packets into B %d, into C %d", group, count, copies, toB, toC)
	// A few copies may be IGMP or ping traffic of the mesh itself; a
	// flooded stream would be 2 x count.
	if copies > 20 || toB > 20 || toC > 20 {
		t.Errorf("a group only the sender joined took %d copies (B %d, C %d packets), want none: it is registered", copies, toB, toC)
	}

	copies, toB, toC = send(unregistered)
	t.Logf("group %s joined by no host: %d datagrams, %d copies to peers, underlay packets into B %d, into C %d", unregistered, count, copies, toB, toC)
	if copies < 2*count {
		t.Errorf("an unregistered group took %d copies, want %d: flooded to both peers", copies, 2*count)
	}
	var flooded []control.Flooded
	for _, f := range statusJSON(t, a, bin, socks[0]).Flooded {
		if f.Group == group || f.Group == unregistered {
			flooded = append(flooded, f)
		}
	}
	want := control.Flooded{Group: unregistered, Frames: count, Copies: 2 * count, DropSave: 2 * count}
	if len(flooded) != 1 || flooded[0] != want {
		t.Errorf("status flooded = %+v, want only %+v", flooded, want)
	}
}
