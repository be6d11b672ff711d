package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

const twoNodeInventory = `198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
`

// twoNodes makes the namespaces of a two-node mesh, builds the binaries
// and writes the inventory of the two nodes. It returns the nodes, the
// inventory's path, meshcast and mcastprobe.
func twoNodes(t *testing.T) (nodes []*nstest.Node, inv, bin, probe string) {
	t.Helper()
	nt := nstest.NewNet(t, 2)
	bin, probe = binaries(t)
	inv = filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(twoNodeInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	return nt.Nodes(), inv, bin, probe
}

var sentRE = regexp.MustCompile(`sent (\d+)/(\d+)`)
var lostRE = regexp.MustCompile(`received (\d+)/(\d+) lost (\d+)`)

// streamRun is a stream of 8000 datagrams at 1000/s from node 1 to a
// receiver on node 2 that is never restarted, while each node's daemon is
// replaced in turn: node 2's at firstAt after the sender starts, node 1's
// at 5 s.
type streamRun struct {
	label      string // what every logged line starts with, such as "userspace/gre"
	event      string // what replaces a daemon, in the singular: "takeover", "restart"
	nodes      []*nstest.Node
	bin, probe string
	socks      []string // each node's control socket
	// joined returns once node 1 forwards streamGroup to node 2's
	// receiver. nil waits until node 1's daemon counts node 2 as a member.
	joined  func()
	firstAt time.Duration
	// replace replaces node i's daemon (0 is node 1) and checks the
	// successor.
	replace func(i int)
	// finish runs once the stream is over: it stops each node's last
	// daemon and returns their output, which ends in the peer counters
	// they log at exit; nil when the daemons count no peer traffic (the
	// kernel dataplane).
	finish func() []string
	budget int // datagrams each replacement may lose
}

// streamResult is what a streamRun measured. atB and atA, the loss at
// node 2's and node 1's replacement, are -1 when finish returned no
// counters.
type streamResult struct {
	sent, received, lost int
	atB, atA             int
}

// The stream: streamCount datagrams to streamGroup.
const (
	streamCount = 8000
	streamGroup = "239.1.2.3"
)

// streamAcross runs s and fails the test unless the sender sent every
// datagram without an error and each replacement lost at most s.budget.
// It does not call t.Helper, so that each line it logs has a line number
// of its own.
func streamAcross(t *testing.T, s streamRun) streamResult {
	a, b := s.nodes[0], s.nodes[1]
	const group, port = streamGroup, "5010"
	count := strconv.Itoa(streamCount)
	recv := b.Start(t, s.probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", port,
		"--count", count, "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if s.joined != nil {
		s.joined()
	} else {
		waitMembers(t, a, s.bin, s.socks[0], group, 1)
	}

	begin := time.Now()
	send := a.Start(t, s.probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", port,
		"--count", count, "--rate", "1000")
	time.Sleep(s.firstAt - time.Since(begin))
	s.replace(1) // the receiver's node
	time.Sleep(5*time.Second - time.Since(begin))
	s.replace(0) // the sender's node

	code, err := send.Wait(30 * time.Second)
	sendOut := send.Output()
	if err != nil || code != 0 {
		t.Fatalf("sender: exit %d, %v\n%s", code, err, sendOut)
	}
	sm := sentRE.FindStringSubmatch(sendOut)
	if sm == nil || sm[1] != sm[2] || sm[1] != count {
		t.Fatalf("sender did not send all %d without an error:\n%s", streamCount, sendOut)
	}
	recv.Wait(30 * time.Second)
	rm := lostRE.FindStringSubmatch(recv.Output())
	if rm == nil {
		t.Fatalf("receiver printed no result:\n%s", recv.Output())
	}
	r := streamResult{sent: streamCount, atB: -1, atA: -1}
	r.received, _ = strconv.Atoi(rm[1])
	r.lost = streamCount - r.received
	t.Logf("%s: sent %d, received %d, lost %d over two %ss (receiver reports lost %s)",
		s.label, r.sent, r.received, r.lost, s.event, rm[3])

	outs := s.finish()
	if outs == nil {
		t.Logf("%s: loss at node 2's %s and at node 1's not told apart: the daemons count no peer traffic", s.label, s.event)
	} else {
		// Where the loss happened: what node 1 sent to node 2 that node 2
		// did not receive was lost on the underlay while node 2's daemon
		// was replaced; the rest of the loss is node 1's replacement. The
		// counters cross each replacement, so the last daemons' counters,
		// logged at exit, cover the whole stream.
		tx := peerCounter(t, outs[0], "tx_packets")
		rx := peerCounter(t, outs[1], "rx_packets")
		if tx < streamCount {
			t.Errorf("%s: node 1's last daemon counts %d packets sent to node 2, fewer than the %d of the stream: the counters did not cross the %ss",
				s.label, tx, streamCount, s.event)
		}
		r.atB = max(tx-rx, 0)
		r.atA = max(r.lost-r.atB, 0)
		t.Logf("%s: loss at node 2's %s %d (underlay: node 1 sent %d, node 2 received %d), at node 1's %d",
			s.label, s.event, r.atB, tx, rx, r.atA)
		if r.atB > s.budget {
			t.Errorf("%s: node 2's %s lost %d datagrams, want at most %d", s.label, s.event, r.atB, s.budget)
		}
		if r.atA > s.budget {
			t.Errorf("%s: node 1's %s lost %d datagrams, want at most %d", s.label, s.event, r.atA, s.budget)
		}
	}
	if r.lost > 2*s.budget {
		t.Errorf("%s: lost %d datagrams over two %ss, want at most %d (%d per %s)",
			s.label, r.lost, s.event, 2*s.budget, s.budget, s.event)
	}
	return r
}

// peerCounter returns a counter ("tx_packets" or "rx_packets") of the
// daemon's only peer, from the counters it logs at exit.
func peerCounter(t *testing.T, out, name string) int {
	t.Helper()
	re := regexp.MustCompile(`msg="peer counters".* ` + name + `=(\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no peer counters in the daemon's output:\n%s", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}
