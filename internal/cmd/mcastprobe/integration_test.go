package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// The tests below run the built binary in network namespaces on a plain
// underlay, where the hub bridge carries multicast natively.

// probeRecv starts mcastprobe recv on node and waits until it is ready.
func probeRecv(t *testing.T, bin string, node *nstest.Node, args ...string) *nstest.Proc {
	t.Helper()
	p := node.Start(t, bin, append([]string{"recv"}, args...)...)
	if err := p.WaitOutput("ready\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// probeResult waits for recv to finish and returns its exit code and the
// JSON result it printed.
func probeResult(t *testing.T, p *nstest.Proc) (int, recvResult) {
	t.Helper()
	code, err := p.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res recvResult
	out := p.Output()
	i := strings.LastIndex(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &res) != nil {
		t.Fatalf("%v printed no JSON result:\n%s", p, out)
	}
	return code, res
}

func TestIntegrationMulticast(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 3)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)

	common := []string{"--iface", nstest.NodeLink, "--group", "239.1.2.3", "--port", "5000", "--count", "300"}
	r2 := probeRecv(t, bin, n2, append(common, "--json", "--linger", "300ms")...)
	r3 := probeRecv(t, bin, n3, append(common, "--json")...)
	if out, err := n1.Exec(t, append([]string{bin, "send", "--rate", "1000", "--size", "200"}, common...)...); err != nil || !strings.Contains(out, "sent 300/300") {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for _, r := range []*nstest.Proc{r2, r3} {
		code, res := probeResult(t, r)
		if code != 0 || res.Received != 300 || res.Dup != 0 || res.Invalid != 0 {
			t.Errorf("%v: exit %d, %+v", r, code, res)
		}
		if len(res.Sources) != 1 || !strings.HasPrefix(res.Sources[0], n1.Underlay.String()+":") {
			t.Errorf("%v: sources %v, want only %s", r, res.Sources, n1.Underlay)
		}
	}
}

func TestIntegrationSourceSpecific(t *testing.T) {
	t.Parallel()
	nt := nstest.NewNet(t, 3)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)

	group := []string{"--iface", nstest.NodeLink, "--group", "232.1.2.3", "--port", "5001", "--count", "50"}
	r := probeRecv(t, bin, n3, append(group, "--source", n1.Underlay.String(), "--json", "--timeout", "15s")...)
	// The wrong source first: the receiver must not count it.
	for _, n := range []*nstest.Node{n2, n1} {
		if out, err := n.Exec(t, append([]string{bin, "send", "--rate", "2000"}, group...)...); err != nil {
			t.Fatalf("send from %s: %v\n%s", n.Underlay, err, out)
		}
	}
	code, res := probeResult(t, r)
	if code != 0 || res.Received != 50 || len(res.Sources) != 1 || !strings.HasPrefix(res.Sources[0], n1.Underlay.String()+":") {
		t.Errorf("exit %d, %+v; want 50 datagrams from %s only", code, res, n1.Underlay)
	}
}

func TestIntegrationUnicast(t *testing.T) {
	t.Parallel()
	nt := nstest.NewNet(t, 2)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2 := nt.Node(1), nt.Node(2)

	r := probeRecv(t, bin, n2, "--iface", nstest.NodeLink, "--port", "6000", "--count", "100", "--json")
	out, err := n1.Exec(t, bin, "send", "--to", n2.Underlay.String()+":6000", "--count", "100", "--rate", "0", "--json")
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	var sent sendResult
	if err := json.Unmarshal([]byte(out), &sent); err != nil || sent.Sent != 100 || sent.Errors != 0 {
		t.Errorf("send --json printed %q (%v)", out, err)
	}
	if code, res := probeResult(t, r); code != 0 || res.Received != 100 {
		t.Errorf("exit %d, %+v", code, res)
	}
}

// TestIntegrationNotJoined checks that a receiver on another interface gets
// nothing: a join is per interface.
func TestIntegrationNotJoined(t *testing.T) {
	t.Parallel()
	nt := nstest.NewNet(t, 2)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2 := nt.Node(1), nt.Node(2)

	r := probeRecv(t, bin, n2, "--iface", "lo", "--group", "239.9.9.9", "--count", "10", "--timeout", "2s", "--json")
	if out, err := n1.Exec(t, bin, "send", "--iface", nstest.NodeLink, "--group", "239.9.9.9", "--count", "10"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if code, res := probeResult(t, r); code != 1 || res.Received != 0 || res.Lost != 10 {
		t.Errorf("exit %d, %+v; want nothing received", code, res)
	}
}
