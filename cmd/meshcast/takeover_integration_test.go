package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationTakeover upgrades each daemon of a two-node mesh in place
// with `meshcast run --takeover` while node 1 streams 1000 datagrams/s to a
// receiver on node 2 that is never restarted, and while a UDP server bound
// to node 2's overlay address answers node 1 every 10 ms. Each takeover
// loses at most 5 datagrams, the sender sees no error, the server answers
// throughout, and the TAP keeps its interface index.
func TestIntegrationTakeover(t *testing.T) {
	for _, c := range []struct {
		name, encap, dataplane string
		extra                  []string
	}{
		{"gre", "gre", "userspace", nil},
		{"gre-ring", "gre", "userspace", []string{"--ingress", "packet"}},
		{"vxlan", "vxlan", "userspace", nil},
		{"kernel-vxlan", "vxlan", "kernel", nil},
	} {
		t.Run(c.name, func(t *testing.T) { testTakeover(t, c.encap, c.dataplane, c.extra...) })
	}
	t.Run("refusals", testTakeoverRefusals)
}

// takeoverDaemon starts meshcast run on n with args and waits until it
// forwards.
func takeoverDaemon(t *testing.T, n *nstest.Node, bin string, args ...string) *nstest.Proc {
	t.Helper()
	d := n.Start(t, bin, args...)
	if err := d.WaitOutput("meshcast forwarding", 15*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", n.Name, err, d.Output())
	}
	return d
}

func ifindex(t *testing.T, n *nstest.Node, name string) int {
	t.Helper()
	l, err := n.Link(name)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, name, err)
	}
	return l.Attrs().Index
}

// bridgePorts returns the interface index of every port of bridge on n.
func bridgePorts(t *testing.T, n *nstest.Node, bridge string) map[string]int {
	t.Helper()
	out, err := n.Exec(t, "ip", "-o", "link", "show", "master", bridge)
	if err != nil {
		t.Fatalf("%s: ports of %s: %v\n%s", n.Name, bridge, err, out)
	}
	ports := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		idx, _ := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		ports[name] = idx
	}
	return ports
}

// echoServer is a UDP server bound to an overlay address that answers
// every request, and a client that asks every 10 ms and records the
// longest time without an answer.
type echoServer struct {
	srv, cli *net.UDPConn
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	sent     int
	answered int
	lastAns  time.Time
	longest  time.Duration
}

func startEcho(t *testing.T, server, client *nstest.Node, addr string) *echoServer {
	t.Helper()
	e := &echoServer{stop: make(chan struct{})}
	ap := net.UDPAddrFromAddrPort(mustAddrPort(t, addr))
	if err := server.Do(func() (err error) { e.srv, err = net.ListenUDP("udp4", ap); return err }); err != nil {
		t.Fatalf("echo server: %v", err)
	}
	if err := client.Do(func() (err error) { e.cli, err = net.DialUDP("udp4", nil, ap); return err }); err != nil {
		e.srv.Close()
		t.Fatalf("echo client: %v", err)
	}
	t.Cleanup(func() { e.close() })
	e.wg.Add(3)
	go func() { // the server
		defer e.wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := e.srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	go func() { // the client's requests
		defer e.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var seq [8]byte
		for i := uint64(0); ; i++ {
			select {
			case <-e.stop:
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(seq[:], i)
			if _, err := e.cli.Write(seq[:]); err == nil {
				e.mu.Lock()
				e.sent++
				e.mu.Unlock()
			}
		}
	}()
	go func() { // the client's answers
		defer e.wg.Done()
		buf := make([]byte, 64)
		for {
			if _, err := e.cli.Read(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // such as ECONNREFUSED from an ICMP error
			}
			now := time.Now()
			e.mu.Lock()
			if !e.lastAns.IsZero() && now.Sub(e.lastAns) > e.longest {
				e.longest = now.Sub(e.lastAns)
			}
			e.lastAns = now
			e.answered++
			e.mu.Unlock()
		}
	}()
	return e
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// result stops the client after a last answer has had time to arrive.
func (e *echoServer) result() (sent, answered int, longest time.Duration, sinceLast time.Duration) {
	time.Sleep(200 * time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent, e.answered, e.longest, time.Since(e.lastAns)
}

func (e *echoServer) close() {
	select {
	case <-e.stop:
		return
	default:
	}
	close(e.stop)
	e.srv.Close()
	e.cli.Close()
	e.wg.Wait()
}

func testTakeover(t *testing.T, encap, dataplane string, extra ...string) {
	nodes, inv, bin, probe := twoNodes(t)
	socks := []string{ctlPath(t), ctlPath(t)}
	args := func(i int, more ...string) []string {
		a := append([]string{"run", "--peers", inv, "--local", nodes[i].Underlay.String(), "--encap", encap,
			"--dataplane", dataplane, "--control", socks[i]}, extra...)
		if dataplane == "kernel" {
			a = append(a, "--kernel-vxlan", "pair", "--igmp-query-interval", "2s", "--igmp-response-interval", "1s")
		}
		return append(a, more...)
	}
	daemons := make([]*nstest.Proc, len(nodes))
	for i, n := range nodes {
		daemons[i] = takeoverDaemon(t, n, bin, args(i)...)
	}
	a, b := nodes[0], nodes[1]
	tapIndex := []int{ifindex(t, a, "mcbr-demo"), ifindex(t, b, "mcbr-demo")}
	var ports []map[string]int
	if dataplane == "kernel" {
		ports = []map[string]int{bridgePorts(t, a, "mcbr-demo"), bridgePorts(t, b, "mcbr-demo")}
	}

	takeover := func(i int) {
		t.Helper()
		n, old := nodes[i], daemons[i]
		start := time.Now()
		next := n.Start(t, bin, args(i, "--takeover")...)
		if err := next.WaitOutput("meshcast forwarding", 15*time.Second); err != nil {
			t.Fatalf("node %d: the successor did not start forwarding: %v\n%s\nthe running daemon:\n%s", i+1, err, next.Output(), old.Output())
		}
		took := time.Since(start)
		code, err := old.Wait(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("node %d: the daemon taken over exited %d, %v; want 0\n%s", i+1, code, err, old.Output())
		}
		if !strings.Contains(old.Output(), "handed over") || !strings.Contains(next.Output(), "took over") {
			t.Errorf("node %d: no handover in the logs:\n%s\n%s", i+1, old.Output(), next.Output())
		}
		if dataplane == "userspace" && !strings.Contains(next.Output(), "state restored") {
			t.Errorf("node %d: the successor did not restore the state:\n%s", i+1, next.Output())
		}
		if got := ifindex(t, n, "mcbr-demo"); got != tapIndex[i] {
			t.Errorf("node %d: mcbr-demo is interface %d after the takeover, was %d: it was recreated", i+1, got, tapIndex[i])
		}
		if ports != nil {
			if got := bridgePorts(t, n, "mcbr-demo"); fmt.Sprint(got) != fmt.Sprint(ports[i]) {
				t.Errorf("node %d: bridge ports %v after the takeover, were %v", i+1, got, ports[i])
			}
		}
		st := statusJSON(t, n, bin, socks[i])
		if st.PID != next.Pid() {
			t.Errorf("node %d: status answered by pid %d, want the successor %d", i+1, st.PID, next.Pid())
		}
		t.Logf("%s/%s: node %d taken over in %v (successor started to forwarding)", dataplane, encap, i+1, took.Round(time.Millisecond))
		daemons[i] = next
	}

	var echo *echoServer
	joined := func() {
		if dataplane == "kernel" {
			// The bridge floods until its querier has run a response
			// interval; the stream goes to the member either way.
			time.Sleep(2 * time.Second)
		} else {
			waitMembers(t, a, bin, socks[0], streamGroup, 1)
		}
		echo = startEcho(t, b, a, "198.19.0.2:7007") // answers throughout the stream
	}
	var esent, eans int
	var longest, sinceLast time.Duration
	label := strings.Join(append([]string{dataplane + "/" + encap}, extra...), " ")
	streamAcross(t, streamRun{
		label: label, event: "takeover",
		nodes: nodes, bin: bin, probe: probe, socks: socks,
		joined:  joined,
		firstAt: 2500 * time.Millisecond,
		replace: takeover,
		finish: func() []string {
			esent, eans, longest, sinceLast = echo.result()
			echo.close()
			for i := range daemons {
				if code, err := daemons[i].Stop(); err != nil || code != 0 {
					t.Errorf("node %d: exit %d, %v at the end", i+1, code, err)
				}
			}
			if dataplane != "userspace" {
				return nil // the kernel forwards the stream: the peer counters miss it
			}
			return []string{daemons[0].Output(), daemons[1].Output()}
		},
		budget: 5,
	})
	t.Logf("%s: unicast: %d requests every 10 ms, %d answered, longest wait between answers %v", label,
		esent, eans, longest.Round(time.Millisecond))
	if eans < esent-10 || longest > time.Second || sinceLast > time.Second {
		t.Errorf("%s: the UDP server on the overlay did not answer throughout: %d of %d answered, longest gap %v",
			label, eans, esent, longest)
	}
	if _, err := b.Link("mcbr-demo"); err == nil {
		t.Errorf("node 2: the TAP is still there after SIGTERM of the last daemon")
	}
}

// testTakeoverRefusals checks the edges: --takeover with nothing running
// starts; a second daemon without --takeover exits 2; a takeover that
// cannot work leaves the running daemon forwarding and exits non-zero.
func testTakeoverRefusals(t *testing.T) {
	nodes, inv, bin, _ := twoNodes(t)
	a, b := nodes[0], nodes[1]
	sockA, sockB := ctlPath(t), ctlPath(t)
	base := func(n *nstest.Node, sock string, more ...string) []string {
		return append([]string{"run", "--peers", inv, "--local", n.Underlay.String(), "--control", sock}, more...)
	}
	first := takeoverDaemon(t, a, bin, base(a, sockA, "--takeover")...)
	if !strings.Contains(first.Output(), "no meshcast to take over; starting") {
		t.Errorf("--takeover with nothing running did not say it just starts:\n%s", first.Output())
	}
	takeoverDaemon(t, b, bin, base(b, sockB)...)

	// A second daemon without --takeover.
	out, err := a.Exec(t, append([]string{bin}, base(a, sockA)...)...)
	if code := exitCode(err); code != 2 || !strings.Contains(out, "already running") || !strings.Contains(out, "--takeover") {
		t.Errorf("a second daemon without --takeover: exit %d, want 2 with 'already running' and the --takeover advice:\n%s", code, out)
	}
	// A takeover that cannot carry the TAP over: another --tap.
	out, err = a.Exec(t, append([]string{bin}, base(a, sockA, "--takeover", "--tap", "mcx-demo")...)...)
	if code := exitCode(err); code == 0 || !strings.Contains(out, "cannot take over") || !strings.Contains(out, "--tap") {
		t.Errorf("a takeover with another --tap: exit %d, want non-zero naming --tap:\n%s", code, out)
	}
	// A takeover that fails once the descriptors are in hand: another
	// encapsulation cannot use the GRE socket it is offered.
	out, err = a.Exec(t, append([]string{bin}, base(a, sockA, "--takeover", "--encap", "vxlan")...)...)
	if code := exitCode(err); code == 0 {
		t.Errorf("a takeover with another --encap: exit 0, want non-zero:\n%s", out)
	} else {
		t.Logf("a takeover with another --encap: exit %d: %s", code, lastLine(out))
	}
	if _, err := a.Link("mcx-demo"); err == nil {
		t.Errorf("a failed takeover left interface mcx-demo behind")
	}
	// The running daemon goes on: it answers status, and still forwards.
	if first.Exited() {
		t.Fatalf("the running daemon exited after the failed takeovers:\n%s", first.Output())
	}
	if st := statusJSON(t, a, bin, sockA); st.PID != first.Pid() {
		t.Errorf("status answered by pid %d, want the running daemon %d", st.PID, first.Pid())
	}
	if !strings.Contains(first.Output(), "forwarding again") {
		t.Errorf("the running daemon did not log that it resumed:\n%s", first.Output())
	}
	out, err = a.Exec(t, bin, "ping", "--control", sockA, "--count", "3", "--interval", "100ms")
	if err != nil {
		t.Errorf("ping through the daemon after the failed takeovers: %v\n%s", err, out)
	}
	if code, err := first.Stop(); err != nil || code != 0 {
		t.Errorf("exit %d, %v", code, err)
	}
	if _, err := a.Link("mcbr-demo"); err == nil {
		t.Errorf("the TAP is still there after SIGTERM")
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
