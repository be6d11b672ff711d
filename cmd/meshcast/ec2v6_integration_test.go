package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/fakeaws"
	"github.com/meshcast/meshcast/internal/nstest"
)

// The addresses the hub serves the fake EC2 API and IMDS on: the IPv4 one
// of ec2Env, and an IPv6 one in the underlay's IPv6 subnet. Node K has
// fd00:198:18::K (K in hex), so ::254 is no node's.
var (
	hubEC2Addr4 = netip.MustParseAddr("198.18.0.254")
	hubEC2Addr6 = netip.MustParseAddr("fd00:198:18::254")
)

// fakeEC2Hub is a fake EC2 API and IMDS served from the hub namespace,
// over IPv4, IPv6 or both.
type fakeEC2Hub struct {
	fake       *fakeaws.Server
	url4, url6 string // "" where not served
	home       string
}

// serveEC2Hub serves one fake EC2 (API and IMDS) from the hub namespace on
// the underlay bridge: on 198.18.0.254 when v4, and on fd00:198:18::254
// when v6. The hub's bridge has IPv6 disabled (nstest keeps the hub out
// of IPv6), so for v6 it is enabled on the bridge alone, without duplicate
// address detection, as nstest does for the nodes' eth0: this is the IPv6
// twin of ec2Env's address on the bridge. IMDS answers each node as the
// instance whose private IPv4 or one of whose IPv6 addresses is the
// source of the request, so a node asking over IPv6 is known by its IPv6
// address.
func serveEC2Hub(t *testing.T, nt *nstest.Net, v4, v6 bool) *fakeEC2Hub {
	t.Helper()
	e := &fakeEC2Hub{fake: fakeaws.New("us-east-1"), home: t.TempDir()}
	serve := func(network string, a netip.Addr) string {
		var l net.Listener
		if err := nt.Hub.Do(func() (err error) {
			l, err = net.Listen(network, netip.AddrPortFrom(a, 0).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: e.fake.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return "http://" + l.Addr().String()
	}
	if v4 {
		if out, err := nt.Hub.Exec(t, "ip", "addr", "add", hubEC2Addr4.String()+"/24", "dev", nstest.BridgeName); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		e.url4 = serve("tcp4", hubEC2Addr4)
	}
	if v6 {
		for _, sc := range []string{"accept_dad=0", "accept_ra=0", "disable_ipv6=0"} {
			if out, err := nt.Hub.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf."+nstest.BridgeName+"."+sc); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		if out, err := nt.Hub.Exec(t, "ip", "-6", "addr", "add", hubEC2Addr6.String()+"/64", "dev", nstest.BridgeName, "nodad"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		e.url6 = serve("tcp6", hubEC2Addr6)
	}
	return e
}

// env is the environment that points a daemon's AWS SDK at the fake, the
// EC2 API and IMDS both over IPv6 when over6, else both over IPv4.
func (e *fakeEC2Hub) env(t *testing.T, over6 bool) []string {
	t.Helper()
	endpoint := e.url4
	if over6 {
		endpoint = e.url6
	}
	if endpoint == "" {
		t.Fatalf("the fake EC2 is not served over IPv%s", map[bool]string{false: "4", true: "6"}[over6])
	}
	return []string{
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_EC2=" + endpoint,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + endpoint,
		"AWS_ACCESS_KEY_ID=AKIDMESHCASTTEST",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_CA_BUNDLE=",
		"HOME=" + e.home,
	}
}

// ec2v6Instance is node k's instance: private IPv4 198.18.0.k when v4,
// IPv6 fd00:198:18::k when v6 (marked primary when primary6), tagged into
// community demo with overlay 198.19.0.k/24.
func ec2v6Instance(k int, v4, v6, primary6 bool) fakeaws.Instance {
	in := fakeaws.Instance{
		ID:   fmt.Sprintf("i-%017x", k),
		VPC:  "vpc-0123456789abcdef0",
		Tags: map[string]string{"multicast": fmt.Sprintf("demo,198.19.0.%d/24", k)},
	}
	if v4 {
		in.PrivateIP = netip.AddrFrom4([4]byte{198, 18, 0, byte(k)})
	}
	if v6 {
		a := nstest.UnderlayPrefix6.Addr().As16()
		a[15] = byte(k)
		in.IPv6 = []netip.Addr{netip.AddrFrom16(a)}
		in.PrimaryIPv6 = primary6
	}
	return in
}

// underlayOnly removes the node's underlay addresses of the other family:
// only4 keeps IPv4 and deletes the global IPv6 address (the link-local one
// stays, as on an IPv4-only EC2 instance); otherwise IPv4 is deleted.
func underlayOnly(t *testing.T, n *nstest.Node, only4 bool) {
	t.Helper()
	args := []string{"ip", "-4", "addr", "flush", "dev", nstest.NodeLink}
	if only4 {
		args = []string{"ip", "-6", "addr", "flush", "dev", nstest.NodeLink, "scope", "global"}
	}
	if out, err := n.Exec(t, args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, _ := n.Exec(t, "ip", "-br", "addr", "show", "dev", nstest.NodeLink)
	t.Logf("%s underlay now: %s", n, strings.TrimSpace(out))
}

// ec2Daemon starts meshcast with EC2 discovery in n, with the environment
// env, and waits until it forwards.
func ec2Daemon(t *testing.T, n *nstest.Node, bin string, env []string, sock string, extra ...string) *nstest.Proc {
	t.Helper()
	args := append(append([]string{}, env...), bin, "run", "--discovery", "ec2", "--control", sock,
		"--interval", "2s", "--igmp-last-member-interval", "500ms")
	p := n.Start(t, "env", append(args, extra...)...)
	if err := p.WaitOutput("meshcast forwarding", 30*time.Second); err != nil {
		t.Fatalf("%s did not start: %v\n%s", n, err, p.Output())
	}
	return p
}

// imdsLine returns the daemon's log line that says how it reached IMDS.
func imdsLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ec2: instance metadata endpoint") {
			return l
		}
	}
	return ""
}

// wantIMDS checks that the daemon asked IMDS over the family it was given.
func wantIMDS(t *testing.T, n *nstest.Node, p *nstest.Proc, family, endpoint string) {
	t.Helper()
	l := imdsLine(p.Output())
	if !strings.Contains(l, "mode="+family) || !strings.Contains(l, endpoint) {
		t.Errorf("%s: IMDS line %q, want mode=%s and endpoint %s", n, l, family, endpoint)
	}
}

// peerView is what a test expects of a daemon's status.
type peerView struct {
	local, local6 string
	family        string
	mtu           int
	peers         map[string]string // instance ID -> underlay address
	problems      map[string]string // instance ID -> reason
	// earlier: problem_counts, which are cumulative, may hold reasons
	// of members no longer left out
	earlier bool
}

// waitView polls `meshcast status --json` in n until it shows v, and fails
// the test with the last state after 10 s. It returns the state.
func waitView(t *testing.T, n *nstest.Node, bin, sock string, v peerView) control.State {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := statusJSON(t, n, bin, sock)
		diff := viewDiff(st, v)
		if diff == "" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status after 10s: %s\npeers %+v\ndiscovery %+v", n, diff, st.Peers, st.Discovery)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// viewDiff says how st differs from v, or "".
func viewDiff(st control.State, v peerView) string {
	var d []string
	if st.Local != v.local || st.Local6 != v.local6 {
		d = append(d, fmt.Sprintf("local %q local6 %q, want %q and %q", st.Local, st.Local6, v.local, v.local6))
	}
	if st.Family != v.family {
		d = append(d, fmt.Sprintf("underlay_family %q, want %q", st.Family, v.family))
	}
	if st.MTU != v.mtu {
		d = append(d, fmt.Sprintf("mtu %d, want %d", st.MTU, v.mtu))
	}
	got := map[string]string{}
	for _, p := range st.Peers {
		got[p.ID] = p.Underlay
	}
	if fmt.Sprint(got) != fmt.Sprint(v.peers) {
		d = append(d, fmt.Sprintf("peers %v, want %v", got, v.peers))
	}
	// Every expected problem is listed as "ID: detail" and counted under
	// its reason; no other member is listed.
	var listed []string
	for _, p := range st.Discovery.Problems {
		id, _, _ := strings.Cut(p, ": ")
		listed = append(listed, id)
	}
	var want []string
	for id, reason := range v.problems {
		want = append(want, id)
		if st.Discovery.ProblemCounts[reason] == 0 {
			d = append(d, fmt.Sprintf("problem_counts %v, want %s counted", st.Discovery.ProblemCounts, reason))
		}
	}
	slices.Sort(listed)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		d = append(d, fmt.Sprintf("problems %q, want one each for %v", st.Discovery.Problems, want))
	}
	for r := range st.Discovery.ProblemCounts {
		if v.earlier {
			break
		}
		found := false
		for _, w := range v.problems {
			found = found || w == r
		}
		if !found {
			d = append(d, fmt.Sprintf("problem_counts has %s: %v", r, st.Discovery.ProblemCounts))
		}
	}
	return strings.Join(d, "; ")
}

// tapMTU returns the MTU of the node's TAP.
func tapMTU(t *testing.T, n *nstest.Node) int {
	t.Helper()
	l, err := n.Link("mcbr-demo")
	if err != nil {
		t.Fatalf("%s: TAP: %v", n, err)
	}
	return l.Attrs().MTU
}

// mcastRun has from send 1000 datagrams to group after each node of to
// and of none has joined it, and returns how many each of to and each of
// none received. from's daemon (sock) must count wantMembers member peers
// first. The nodes of none are expected to get nothing: they are stopped
// (and print their count) a second after the last of to has finished.
func mcastRun(t *testing.T, bin, probe string, from *nstest.Node, sock, group string, port, wantMembers int, to, none []*nstest.Node) (got, gotNone []int) {
	t.Helper()
	const count = 1000
	start := func(n *nstest.Node) *nstest.Proc {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(count), "--timeout", "30s")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on %s: %v\n%s", n, err, p.Output())
		}
		return p
	}
	var recvs, silent []*nstest.Proc
	for _, n := range to {
		recvs = append(recvs, start(n))
	}
	for _, n := range none {
		silent = append(silent, start(n))
	}
	waitMembers(t, from, bin, sock, group, wantMembers)
	if out, err := from.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("send from %s: %v\n%s", from, err, out)
	}
	for _, p := range recvs {
		p.Wait(35 * time.Second)
		got = append(got, received(t, p.Output()))
	}
	time.Sleep(time.Second)
	for _, p := range silent {
		p.Signal(syscall.SIGTERM)
		p.Wait(10 * time.Second)
		gotNone = append(gotNone, received(t, p.Output()))
	}
	return got, gotNone
}

// pingOK pings to from n across the overlay.
func pingOK(t *testing.T, n *nstest.Node, to string) {
	t.Helper()
	if out, err := n.Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", to); err != nil {
		t.Errorf("ping %s from %s across the overlay: %v\n%s", to, n, err, out)
	}
}

// stopAll stops the daemons with SIGTERM and wants each to exit 0.
func stopAll(t *testing.T, ps []*nstest.Proc) {
	t.Helper()
	for _, p := range ps {
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("%s: exit %d, %v\n%s", p, code, err, p.Output())
		}
	}
}

// mixedCommunity builds three nodes on a dual-stack underlay and makes
// node 1 IPv4-only and node 2 IPv6-only; node 3 stays dual-stack. The fake
// EC2, served over both families, lists them so: node 1 with a private
// IPv4 address only, node 2 with an IPv6 address only (not marked
// primary: discovery takes its interface's first), node 3 with both (the
// IPv6 one marked primary).
func mixedCommunity(t *testing.T) (*nstest.Net, *fakeEC2Hub, [3]*nstest.Node) {
	t.Helper()
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: nstest.UnderlayDualStack})
	nstest.LeakCheck(t)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	underlayOnly(t, n1, true)
	underlayOnly(t, n2, false)
	e := serveEC2Hub(t, nt, true, true)
	e.fake.Put(ec2v6Instance(1, true, false, false))
	e.fake.Put(ec2v6Instance(2, false, true, false))
	e.fake.Put(ec2v6Instance(3, true, true, true))
	return nt, e, [3]*nstest.Node{n1, n2, n3}
}

func instanceID(k int) string { return fmt.Sprintf("i-%017x", k) }

// TestIntegrationEC2MixedCommunity runs EC2 discovery on a community of an
// IPv4-only instance (node 1), an IPv6-only one (node 2) and a dual-stack
// one (node 3), for GRE and VXLAN, with the fake EC2 API and IMDS served
// over IPv4 and over IPv6 from the underlay's hub; node 2 reaches both
// over IPv6 only. It checks the community forms as the README documents:
// node 3 opens sockets on both addresses (local, local6) and tunnels to
// node 1 over IPv4 and to node 2 over IPv6; nodes 1 and 2 each have node 3
// as their one peer and list the other as no_common_family (logged once);
// the TAP MTUs are 1462/1442/1442 (GRE) and 1450/1430/1430 (VXLAN);
// multicast from node 3 reaches both, from node 1 reaches node 3 but not
// node 2 and from node 2 reaches node 3 but not node 1 (node 3 does not
// relay); and unicast crosses the overlay between node 3 and each other.
func TestIntegrationEC2MixedCommunity(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testEC2Mixed(t, encap) })
	}
}

func testEC2Mixed(t *testing.T, encap string) {
	_, e, nodes := mixedCommunity(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	bin, probe := binaries(t)
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	d1 := ec2Daemon(t, n1, bin, e.env(t, false), socks[0], "--encap", encap)
	d2 := ec2Daemon(t, n2, bin, e.env(t, true), socks[1], "--encap", encap)
	d3 := ec2Daemon(t, n3, bin, e.env(t, false), socks[2], "--encap", encap)
	wantIMDS(t, n1, d1, "IPv4", e.url4)
	wantIMDS(t, n2, d2, "IPv6", e.url6)
	wantIMDS(t, n3, d3, "IPv4", e.url4)
	t.Logf("node 2 (IPv6-only) IMDS: %s", strings.TrimSpace(imdsLine(d2.Output())))

	over4, over6 := map[string]int{"gre": 38, "vxlan": 50}[encap], map[string]int{"gre": 58, "vxlan": 70}[encap]
	mtu4, mtu6 := nstest.UnderlayMTU-over4, nstest.UnderlayMTU-over6
	id1, id2, id3 := instanceID(1), instanceID(2), instanceID(3)
	waitView(t, n3, bin, socks[2], peerView{
		local: "198.18.0.3", local6: "fd00:198:18::3", family: "auto", mtu: min(mtu4, mtu6),
		peers: map[string]string{id1: "198.18.0.1", id2: "fd00:198:18::2"},
	})
	st1 := waitView(t, n1, bin, socks[0], peerView{
		local: "198.18.0.1", family: "auto", mtu: mtu4,
		peers:    map[string]string{id3: "198.18.0.3"},
		problems: map[string]string{id2: "no_common_family"},
	})
	st2 := waitView(t, n2, bin, socks[1], peerView{
		local: "fd00:198:18::2", family: "auto", mtu: mtu6,
		peers:    map[string]string{id3: "fd00:198:18::3"},
		problems: map[string]string{id1: "no_common_family"},
	})
	t.Logf("%s: node 1 problems %q counts %v", encap, st1.Discovery.Problems, st1.Discovery.ProblemCounts)
	t.Logf("%s: node 2 problems %q counts %v", encap, st2.Discovery.Problems, st2.Discovery.ProblemCounts)
	got := []int{tapMTU(t, n1), tapMTU(t, n2), tapMTU(t, n3)}
	if want := []int{mtu4, mtu6, min(mtu4, mtu6)}; !slices.Equal(got, want) {
		t.Errorf("TAP MTUs of nodes 1, 2, 3: %v, want %v", got, want)
	}
	t.Logf("%s: TAP MTUs: node 1 (IPv4-only) %d, node 2 (IPv6-only) %d, node 3 (dual-stack) %d", encap, got[0], got[1], got[2])

	// Node 3 sends to both.
	const count = 1000
	r, _ := mcastRun(t, bin, probe, n3, socks[2], "239.1.2.3", 5000, 2, []*nstest.Node{n1, n2}, nil)
	t.Logf("%s: node 3 -> group: node 1 (over IPv4) received %d/%d, node 2 (over IPv6) %d/%d", encap, r[0], count, r[1], count)
	for i, g := range r {
		if g*1000 < count*999 {
			t.Errorf("node %d received %d/%d from node 3 (< 99.9%%)", i+1, g, count)
		}
	}
	// Node 1 sends: node 3 receives, node 2 (a member too) gets nothing.
	r, r0 := mcastRun(t, bin, probe, n1, socks[0], "239.1.2.4", 5001, 1, []*nstest.Node{n3}, []*nstest.Node{n2})
	t.Logf("%s: node 1 -> group: node 3 received %d/%d, node 2 %d/%d", encap, r[0], count, r0[0], count)
	if r[0]*1000 < count*999 {
		t.Errorf("node 3 received %d/%d from node 1 (< 99.9%%)", r[0], count)
	}
	if r0[0] != 0 {
		t.Errorf("node 2 received %d datagrams from node 1, with no tunnel between them", r0[0])
	}
	// Node 2 sends: node 3 receives, node 1 gets nothing.
	r, r0 = mcastRun(t, bin, probe, n2, socks[1], "239.1.2.5", 5002, 1, []*nstest.Node{n3}, []*nstest.Node{n1})
	t.Logf("%s: node 2 -> group: node 3 received %d/%d, node 1 %d/%d", encap, r[0], count, r0[0], count)
	if r[0]*1000 < count*999 {
		t.Errorf("node 3 received %d/%d from node 2 (< 99.9%%)", r[0], count)
	}
	if r0[0] != 0 {
		t.Errorf("node 1 received %d datagrams from node 2, with no tunnel between them", r0[0])
	}

	// Unicast across the overlay, both ways between node 3 and each other.
	pingOK(t, n3, "198.19.0.1")
	pingOK(t, n3, "198.19.0.2")
	pingOK(t, n1, "198.19.0.3")
	pingOK(t, n2, "198.19.0.3")
	if out, err := n1.Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.19.0.2"); err == nil {
		t.Errorf("node 1 reached node 2 across the overlay, with no tunnel between them:\n%s", out)
	}

	// Each of nodes 1 and 2 logged the other once, though several listings
	// (one per 2 s interval) have left it out since.
	for _, c := range []struct {
		d     *nstest.Proc
		other string
	}{{d1, id2}, {d2, id1}} {
		var lines []string
		for _, l := range strings.Split(c.d.Output(), "\n") {
			if strings.Contains(l, "member left out: no tunnel can reach it") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "id="+c.other) || !strings.Contains(lines[0], "reason=no_common_family") {
			t.Errorf("%s: left-out log lines %q, want one for %s with reason no_common_family", c.d, lines, c.other)
		}
	}
	for i, sock := range socks {
		st := fetchState(t, sock)
		t.Logf("%s: node %d discovery: %d listings, problem_counts %v; peers:", encap, i+1, st.Discovery.Successes, st.Discovery.ProblemCounts)
		for _, p := range st.Peers {
			t.Logf("    %s via %s: tx %d rx %d tx_errors %d", p.ID, p.Underlay, p.TxPackets, p.RxPackets, p.TxErrors)
		}
	}
	stopAll(t, []*nstest.Proc{d1, d2, d3})
}

// TestIntegrationEC2IPv6Only runs EC2 discovery on a community whose
// instances are all IPv6-only (an IPv6-only subnet), for GRE and VXLAN:
// the fake EC2 lists them without private IPv4 addresses and serves the
// API and IMDS over IPv6 only. Each daemon learns its identity from IMDS
// over IPv6, tunnels to the other two over IPv6 with the IPv6 TAP MTU, and
// multicast and unicast cross the overlay.
func TestIntegrationEC2IPv6Only(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testEC2IPv6Only(t, encap) })
	}
}

func testEC2IPv6Only(t *testing.T, encap string) {
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: nstest.UnderlayIPv6})
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	e := serveEC2Hub(t, nt, false, true)
	for k := 1; k <= 3; k++ {
		e.fake.Put(ec2v6Instance(k, false, true, k != 2))
	}
	nodes := nt.Nodes()
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	var daemons []*nstest.Proc
	for i, n := range nodes {
		d := ec2Daemon(t, n, bin, e.env(t, true), socks[i], "--encap", encap)
		wantIMDS(t, n, d, "IPv6", e.url6)
		daemons = append(daemons, d)
	}
	mtu := nstest.UnderlayMTU - map[string]int{"gre": 58, "vxlan": 70}[encap]
	for i, n := range nodes {
		peers := map[string]string{}
		for j, m := range nodes {
			if j != i {
				peers[instanceID(j+1)] = m.Underlay6.String()
			}
		}
		waitView(t, n, bin, socks[i], peerView{local: n.Underlay6.String(), family: "auto", mtu: mtu, peers: peers})
		if got := tapMTU(t, n); got != mtu {
			t.Errorf("%s: TAP MTU %d, want %d", n, got, mtu)
		}
	}
	t.Logf("%s: IPv6-only community over EC2: 2 peers each over IPv6, TAP MTU %d", encap, mtu)
	const count = 1000
	r, _ := mcastRun(t, bin, probe, nodes[0], socks[0], "239.1.2.3", 5000, 2, nodes[1:], nil)
	t.Logf("%s over IPv6: node 1 -> group: node 2 received %d/%d, node 3 %d/%d", encap, r[0], count, r[1], count)
	for i, g := range r {
		if g*1000 < count*999 {
			t.Errorf("node %d received %d/%d (< 99.9%%)", i+2, g, count)
		}
	}
	pingOK(t, nodes[2], "198.19.0.1")
	stopAll(t, daemons)
}

// TestIntegrationEC2UnderlayFamily runs the mixed community of
// TestIntegrationEC2MixedCommunity (GRE) with the dual-stack node 3 under
// --underlay-family 6 and then 4. With 6 it opens only its IPv6 socket,
// tunnels to node 2 only and leaves node 1 out as no_ipv6_underlay; with
// 4 it opens only its IPv4 socket, tunnels to node 1 only and leaves node
// 2 out as no_ipv4_underlay. Status lists and counts the problem, the TAP
// MTU is that of the one family, and the remaining tunnel carries
// unicast.
func TestIntegrationEC2UnderlayFamily(t *testing.T) {
	_, e, nodes := mixedCommunity(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	bin, _ := binaries(t)
	d1 := ec2Daemon(t, n1, bin, e.env(t, false), ctlPath(t))
	d2 := ec2Daemon(t, n2, bin, e.env(t, true), ctlPath(t))
	id1, id2 := instanceID(1), instanceID(2)
	for _, c := range []struct {
		family      string
		view        peerView
		reach, miss *nstest.Node
	}{
		{"6", peerView{local: "fd00:198:18::3", family: "6", mtu: nstest.UnderlayMTU - 58,
			peers: map[string]string{id2: "fd00:198:18::2"}, problems: map[string]string{id1: "no_ipv6_underlay"}}, n2, n1},
		{"4", peerView{local: "198.18.0.3", family: "4", mtu: nstest.UnderlayMTU - 38,
			peers: map[string]string{id1: "198.18.0.1"}, problems: map[string]string{id2: "no_ipv4_underlay"}}, n1, n2},
	} {
		sock := ctlPath(t)
		d3 := ec2Daemon(t, n3, bin, e.env(t, false), sock, "--underlay-family", c.family)
		st := waitView(t, n3, bin, sock, c.view)
		t.Logf("--underlay-family %s on node 3: local %s, peers %d, problems %q, counts %v, TAP MTU %d",
			c.family, st.Local, len(st.Peers), st.Discovery.Problems, st.Discovery.ProblemCounts, tapMTU(t, n3))
		if got := tapMTU(t, n3); got != c.view.mtu {
			t.Errorf("--underlay-family %s: TAP MTU %d, want %d", c.family, got, c.view.mtu)
		}
		wantLine := "reason=" + map[string]string{"6": "no_ipv6_underlay", "4": "no_ipv4_underlay"}[c.family]
		if !strings.Contains(d3.Output(), wantLine) {
			t.Errorf("--underlay-family %s: no log line with %s:\n%s", c.family, wantLine, d3.Output())
		}
		pingOK(t, n3, "198.19.0."+strconv.Itoa(c.reach.Index))
		if out, err := n3.Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.19.0."+strconv.Itoa(c.miss.Index)); err == nil {
			t.Errorf("--underlay-family %s: node 3 reached %s, which it left out:\n%s", c.family, c.miss, out)
		}
		stopAll(t, []*nstest.Proc{d3})
	}
	stopAll(t, []*nstest.Proc{d1, d2})
}

// TestIntegrationEC2GainsIPv6 runs the mixed community of
// TestIntegrationEC2MixedCommunity (GRE) and then gives the IPv4-only
// node 1 an IPv6 address, on its host and in EC2, as `aws ec2
// assign-ipv6-addresses` does to move an instance to dual-stack. Its
// running daemon has no IPv6 socket: it keeps tunnelling from its IPv4
// address alone, still leaves node 2 out, sends no copy it cannot send
// (no send_error drops) and says once that a restart is needed. The
// others go on receiving from node 3. Restarted, node 1 is dual-stack
// (local and local6, TAP MTU 1442), tunnels to node 2 over IPv6 and
// receives its multicast.
func TestIntegrationEC2GainsIPv6(t *testing.T) {
	_, e, nodes := mixedCommunity(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	bin, probe := binaries(t)
	socks := []string{ctlPath(t), ctlPath(t), ctlPath(t)}
	d1 := ec2Daemon(t, n1, bin, e.env(t, false), socks[0])
	d2 := ec2Daemon(t, n2, bin, e.env(t, true), socks[1])
	d3 := ec2Daemon(t, n3, bin, e.env(t, false), socks[2])
	id1, id2, id3 := instanceID(1), instanceID(2), instanceID(3)
	only4 := peerView{local: "198.18.0.1", family: "auto", mtu: nstest.UnderlayMTU - 38,
		peers: map[string]string{id3: "198.18.0.3"}, problems: map[string]string{id2: "no_common_family"}}
	waitView(t, n1, bin, socks[0], only4)

	if out, err := n1.Exec(t, "ip", "-6", "addr", "add", "fd00:198:18::1/64", "dev", nstest.NodeLink, "nodad"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.fake.Put(ec2v6Instance(1, true, true, true))
	const warning = "this node's underlay addresses changed; restart meshcast to tunnel over them"
	if err := d1.WaitOutput(warning, 10*time.Second); err != nil {
		t.Fatalf("node 1 did not notice its new IPv6 address: %v\n%s", err, d1.Output())
	}
	time.Sleep(5 * time.Second) // two more listings
	st := waitView(t, n1, bin, socks[0], only4)
	if n := strings.Count(d1.Output(), warning); n != 1 {
		t.Errorf("node 1 warned %d times, want once", n)
	}
	r, _ := mcastRun(t, bin, probe, n3, socks[2], "239.1.2.3", 5000, 2, []*nstest.Node{n1, n2}, nil)
	t.Logf("after node 1 gained IPv6, not restarted: node 3 -> node 1 %d/1000, node 2 %d/1000", r[0], r[1])
	for i, g := range r {
		if g*1000 < 1000*999 {
			t.Errorf("node %d received %d/1000 from node 3", i+1, g)
		}
	}
	if st = fetchState(t, socks[0]); st.Drops["send_error"] != 0 {
		t.Errorf("node 1 dropped %d copies as send_error: it sent to a family it has no socket for", st.Drops["send_error"])
	}
	if strings.Contains(d1.Output(), "EAFNOSUPPORT") {
		t.Errorf("node 1 sent over a family it has no socket for:\n%s", d1.Output())
	}

	// Restarted, node 1 opens sockets on both addresses.
	stopAll(t, []*nstest.Proc{d1})
	socks[0] = ctlPath(t)
	d1 = ec2Daemon(t, n1, bin, e.env(t, false), socks[0])
	waitView(t, n1, bin, socks[0], peerView{local: "198.18.0.1", local6: "fd00:198:18::1", family: "auto", mtu: nstest.UnderlayMTU - 58,
		peers: map[string]string{id2: "fd00:198:18::2", id3: "198.18.0.3"}})
	waitView(t, n2, bin, socks[1], peerView{local: "fd00:198:18::2", family: "auto", mtu: nstest.UnderlayMTU - 58,
		peers: map[string]string{id1: "fd00:198:18::1", id3: "fd00:198:18::3"}, earlier: true})
	r, _ = mcastRun(t, bin, probe, n2, socks[1], "239.1.2.5", 5002, 2, []*nstest.Node{n1, n3}, nil)
	t.Logf("node 1 restarted dual-stack: node 2 -> node 1 %d/1000 (over IPv6), node 3 %d/1000", r[0], r[1])
	for i, g := range r {
		if g*1000 < 1000*999 {
			t.Errorf("%s received %d/1000 from node 2", []string{"node 1", "node 3"}[i], g)
		}
	}
	stopAll(t, []*nstest.Proc{d1, d2, d3})
}
