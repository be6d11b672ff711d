package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

const slowInventory = `198.18.0.1 demo,198.19.0.1/24
198.18.0.2 demo,198.19.0.2/24
198.18.0.3 demo,198.19.0.3/24
198.18.0.4 demo,198.19.0.4/24
`

// TestIntegrationSlowPeer throttles one subscriber's underlay with tc while
// the source streams to three subscribers, and checks that the other two
// lose nothing: a slow peer does not lower the rate to the others. Two
// places are throttled: the hub's port to the subscriber (the network is
// slow), and the source's own egress towards it (the source's socket and
// queue fill with that peer's copies).
func TestIntegrationSlowPeer(t *testing.T) {
	if _, err := exec.LookPath("tc"); err != nil {
		nstest.RequireRoot(t) // fails under CI, where iproute2 is installed
		t.Skip("tc (iproute2) is not installed")
	}
	for _, where := range []string{"hub", "source", "source-offload-off"} {
		t.Run(where, func(t *testing.T) { testSlowPeer(t, where) })
	}
}

func testSlowPeer(t *testing.T, variant string) {
	where, offload := variant, "on"
	if w, ok := strings.CutSuffix(variant, "-offload-off"); ok {
		where, offload = w, "off"
	}
	nt := nstest.NewNet(t, 4)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(slowInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	srcSock := ctlPath(t)
	for i, n := range nodes {
		sock := ctlPath(t)
		if i == 0 {
			sock = srcSock
		}
		d := n.Start(t, bin, "run", "--peers", inv, "--local", n.Underlay.String(), "--encap", "vxlan",
			"--offload", offload, "--control", sock)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s did not start: %v\n%s", n, err, d.Output())
		}
	}
	// 8 Mbit/s to node 2, against the 160 Mbit/s of the stream.
	switch where {
	case "hub":
		if out, err := nt.Hub.Exec(t, "tc", "qdisc", "add", "dev", nstest.HubPort(2), "root",
			"tbf", "rate", "8mbit", "burst", "16kb", "latency", "20ms"); err != nil {
			t.Fatalf("tc: %v\n%s", err, out)
		}
	case "source":
		src := nodes[0]
		for _, args := range [][]string{
			{"qdisc", "add", "dev", nstest.NodeLink, "root", "handle", "1:", "htb", "default", "10"},
			{"class", "add", "dev", nstest.NodeLink, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"},
			{"class", "add", "dev", nstest.NodeLink, "parent", "1:", "classid", "1:20", "htb", "rate", "8mbit", "ceil", "8mbit"},
			{"filter", "add", "dev", nstest.NodeLink, "parent", "1:", "protocol", "ip", "u32",
				"match", "ip", "dst", nodes[1].Underlay.String() + "/32", "flowid", "1:20"},
		} {
			if out, err := src.Exec(t, append([]string{"tc"}, args...)...); err != nil {
				t.Fatalf("tc %v: %v\n%s", args, err, out)
			}
		}
	}

	// 2 s at 20000 datagrams/s of 1000 bytes: 160 Mbit/s per subscriber,
	// enough that the throttled peer's backlog at the source would fill a
	// small send buffer and hold back the others.
	const count, rate = 40000, 20000
	var recvs []*nstest.Proc
	for _, n := range nodes[1:] {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
			"--count", strconv.Itoa(count), "--timeout", "8s", "--rcvbuf", "8388608")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on %s: %v\n%s", n, err, p.Output())
		}
		recvs = append(recvs, p)
	}
	// Every subscriber is known at the source before the stream starts.
	waitMembers(t, nodes[0], bin, srcSock, "239.1.2.3", len(recvs))
	start := time.Now()
	if out, err := nodes[0].Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", strconv.Itoa(rate), "--size", "1000"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	sendTime := time.Since(start)
	for i, p := range recvs {
		p.Wait(20 * time.Second)
		got := received(t, p.Output())
		t.Logf("throttled at the %s: node %d received %d/%d datagrams (sent in %v)", where, i+2, got, count, sendTime.Round(time.Millisecond))
		switch {
		case i == 0 && got*10 > count*9:
			// What the throttle queued still arrives after the stream,
			// so the slow node gets more than its rate times 2.5 s.
			t.Errorf("the throttled node received %d/%d: the throttle did not bite", got, count)
		case i > 0 && got*1000 < count*999:
			t.Errorf("node %d received %d/%d (< 99.9%%) while node 2 was slow", i+2, got, count)
		}
	}
}
