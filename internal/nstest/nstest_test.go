package nstest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestNamePrefix(t *testing.T) {
	p := newPrefix()
	if !staleName.MatchString(p + "n12") {
		t.Fatalf("stale-name pattern does not match %q", p+"n12")
	}
	m := staleName.FindStringSubmatch(p + "hub")
	pid, err := strconv.ParseInt(m[1], 36, 32)
	if err != nil || int(pid) != os.Getpid() {
		t.Fatalf("pid in %q = %d, %v; want %d", p, pid, err, os.Getpid())
	}
	for _, name := range []string{"meshdemo-1", "mcdemo-hub", "mc1-zzzz-n1", "other"} {
		if staleName.MatchString(name) {
			t.Errorf("stale-name pattern matches %q", name)
		}
	}
}

func TestCountersSub(t *testing.T) {
	a := Counters{RxPackets: 10, TxPackets: 7, RxBytes: 1000, Multicast: 3}
	b := Counters{RxPackets: 4, TxPackets: 7, RxBytes: 400, Multicast: 1}
	got := a.Sub(b)
	want := Counters{RxPackets: 6, RxBytes: 600, Multicast: 2}
	if got != want {
		t.Fatalf("Sub = %+v, want %+v", got, want)
	}
}

func ping(t *testing.T, from, to *Node) {
	t.Helper()
	if out, err := from.Exec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", to.Underlay.String()); err != nil {
		t.Fatalf("ping %s -> %s: %v\n%s", from.Underlay, to.Underlay, err, out)
	}
}

func TestIntegrationUnderlay(t *testing.T) {
	t.Parallel()
	LeakCheck(t)
	nt := NewNet(t, 3)
	nodes := nt.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("got %d nodes, want 3", len(nodes))
	}
	for i, n := range nodes {
		if n.Index != i+1 || n.Underlay.String() != fmt.Sprintf("198.18.0.%d", i+1) || nt.Node(i+1) != n {
			t.Errorf("node %d: %s index %d underlay %s", i, n.Name, n.Index, n.Underlay)
		}
		l, err := n.Link(NodeLink)
		if err != nil {
			t.Fatal(err)
		}
		if a := l.Attrs(); a.MTU != 1500 || a.OperState != netlink.OperUp {
			t.Errorf("%s: %s mtu %d state %v; want 1500 up", n.Name, NodeLink, a.MTU, a.OperState)
		}
		out, err := n.Exec(t, "ip", "-4", "-o", "addr", "show", "dev", NodeLink)
		if err != nil || !strings.Contains(out, n.Underlay.String()+"/24") {
			t.Errorf("%s: address of %s: %v\n%s", n.Name, NodeLink, err, out)
		}
		out, err = n.Exec(t, "ip", "-o", "link", "show", "lo")
		if err != nil || !strings.Contains(out, "UP") {
			t.Errorf("%s: lo is not up: %v\n%s", n.Name, err, out)
		}
		if !strings.HasPrefix(n.Name, "mc") || !strings.HasSuffix(n.Name, fmt.Sprintf("-n%d", i+1)) {
			t.Errorf("namespace name %q", n.Name)
		}
	}
	ping(t, nodes[0], nodes[1])
	ping(t, nodes[2], nodes[0])

	// The hub is a Node too: its ports carry the traffic.
	c, err := nt.Hub.Counters(HubPort(1))
	if err != nil || c.RxPackets == 0 {
		t.Errorf("hub port %s counters %+v, %v", HubPort(1), c, err)
	}
}

func TestIntegrationAddNode(t *testing.T) {
	t.Parallel()
	LeakCheck(t)
	nt := NewNet(t, 1)
	n2 := nt.AddNode(t)
	if n2.Index != 2 || n2.Underlay.String() != "198.18.0.2" {
		t.Fatalf("AddNode = index %d underlay %s", n2.Index, n2.Underlay)
	}
	ping(t, n2, nt.Node(1))
}

func TestFamilyString(t *testing.T) {
	for f, want := range map[Family]string{
		UnderlayIPv4: "IPv4", UnderlayIPv6: "IPv6", UnderlayDualStack: "dual-stack", Family(7): "Family(7)",
	} {
		if got := f.String(); got != want {
			t.Errorf("Family(%d).String() = %q, want %q", int(f), got, want)
		}
	}
	var zero Options
	if zero.Underlay != UnderlayIPv4 {
		t.Errorf("the zero Options have underlay %v, want IPv4", zero.Underlay)
	}
}

// sysctl6 reads the IPv6 setting name of interface ifname in n's namespace,
// and fails the test if it cannot.
func sysctl6(t *testing.T, n *Node, ifname, name string) string {
	t.Helper()
	out, err := n.Exec(t, "cat", "/proc/sys/net/ipv6/conf/"+ifname+"/"+name)
	if err != nil {
		t.Fatalf("%s: reading %s of %s: %v\n%s", n.Name, name, ifname, err, out)
	}
	return strings.TrimSpace(out)
}

// checkAddrs checks the addresses of NodeLink in n: the IPv4 one if want4
// is valid, none otherwise, and likewise for IPv6 (a global address,
// ready to use).
func checkAddrs(t *testing.T, n *Node, want4, want6 netip.Addr) {
	t.Helper()
	out, err := n.Exec(t, "ip", "-4", "-o", "addr", "show", "dev", NodeLink)
	switch {
	case err != nil:
		t.Errorf("%s: IPv4 addresses of %s: %v\n%s", n.Name, NodeLink, err, out)
	case want4.IsValid() && !strings.Contains(out, " inet "+want4.String()+"/24 "):
		t.Errorf("%s: %s lacks %s/24:\n%s", n.Name, NodeLink, want4, out)
	case !want4.IsValid() && strings.TrimSpace(out) != "":
		t.Errorf("%s: %s has IPv4 addresses; want none:\n%s", n.Name, NodeLink, out)
	}
	out, err = n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", NodeLink, "scope", "global")
	switch {
	case err != nil:
		t.Errorf("%s: IPv6 addresses of %s: %v\n%s", n.Name, NodeLink, err, out)
	case want6.IsValid() && !strings.Contains(out, " inet6 "+want6.String()+"/64 "):
		t.Errorf("%s: %s lacks %s/64:\n%s", n.Name, NodeLink, want6, out)
	case want6.IsValid() && strings.Contains(out, "tentative"):
		t.Errorf("%s: %s is still tentative:\n%s", n.Name, want6, out)
	case !want6.IsValid() && strings.TrimSpace(out) != "":
		t.Errorf("%s: %s has IPv6 addresses; want none:\n%s", n.Name, NodeLink, out)
	}
}

func TestIntegrationUnderlayIPv6(t *testing.T) {
	t.Parallel()
	for _, family := range []Family{UnderlayIPv6, UnderlayDualStack} {
		t.Run(family.String(), func(t *testing.T) {
			t.Parallel()
			LeakCheck(t)
			nt := NewNetWith(t, 2, Options{Underlay: family})
			nodes := nt.Nodes()
			if len(nodes) != 2 {
				t.Fatalf("got %d nodes, want 2", len(nodes))
			}
			// AddNode gives the next addresses of the family too.
			nodes = append(nodes, nt.AddNode(t))
			for i, n := range nodes {
				k := i + 1
				var want4 netip.Addr
				if family == UnderlayDualStack {
					want4 = netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", k))
				}
				want6 := netip.MustParseAddr(fmt.Sprintf("fd00:198:18::%d", k))
				if n.Index != k || n.Underlay != want4 || n.Underlay6 != want6 {
					t.Errorf("node %d: %s index %d underlay %v underlay6 %v; want %v and %v",
						k, n.Name, n.Index, n.Underlay, n.Underlay6, want4, want6)
				}
				checkAddrs(t, n, want4, want6)
				if v := sysctl6(t, n, NodeLink, "disable_ipv6"); v != "0" {
					t.Errorf("%s: disable_ipv6 on %s = %q, want 0", n.Name, NodeLink, v)
				}
				// Every other interface, and those created later,
				// keep IPv6 off.
				for _, ifname := range []string{"lo", "all", "default"} {
					if v := sysctl6(t, n, ifname, "disable_ipv6"); v != "1" {
						t.Errorf("%s: disable_ipv6 on %s = %q, want 1", n.Name, ifname, v)
					}
				}
			}
			// The hub only switches: IPv6 stays off on the bridge and its
			// ports, and the bridge floods multicast, neighbour
			// solicitations included.
			for _, ifname := range []string{BridgeName, HubPort(1), HubPort(2), HubPort(3)} {
				if v := sysctl6(t, nt.Hub, ifname, "disable_ipv6"); v != "1" {
					t.Errorf("hub: disable_ipv6 on %s = %q, want 1", ifname, v)
				}
			}
			if out, err := nt.Hub.Exec(t, "cat", "/sys/class/net/"+BridgeName+"/bridge/multicast_snooping"); err != nil || strings.TrimSpace(out) != "0" {
				t.Errorf("hub: multicast_snooping of %s = %q, %v; want 0", BridgeName, out, err)
			}

			ping6 := func(from, to *Node) {
				t.Helper()
				if out, err := from.Exec(t, "ping", "-6", "-c", "2", "-W", "2", to.Underlay6.String()); err != nil {
					t.Errorf("ping -6 %s -> %s: %v\n%s", from.Underlay6, to.Underlay6, err, out)
				}
			}
			ping6(nodes[0], nodes[1])
			ping6(nodes[2], nodes[0])
			if family == UnderlayDualStack {
				ping(t, nodes[0], nodes[1])
				ping(t, nodes[2], nodes[1])
			} else if out, err := nodes[0].Exec(t, "ping", "-4", "-c", "1", "-W", "1", "198.18.0.2"); err == nil {
				t.Errorf("IPv4 ping in an IPv6-only Net succeeded:\n%s", out)
			}
		})
	}
}

// TestIntegrationUnderlayIPv4Only checks that NewNet, and NewNetWith with
// the zero Options, keep IPv6 off on the node link.
func TestIntegrationUnderlayIPv4Only(t *testing.T) {
	t.Parallel()
	for name, build := range map[string]func(t *testing.T) *Net{
		"NewNet":     func(t *testing.T) *Net { return NewNet(t, 2) },
		"NewNetWith": func(t *testing.T) *Net { return NewNetWith(t, 2, Options{}) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			LeakCheck(t)
			nt := build(t)
			for _, n := range append(nt.Nodes(), nt.AddNode(t)) {
				if n.Underlay6.IsValid() || !n.Underlay.IsValid() {
					t.Errorf("%s: underlay %v underlay6 %v; want only IPv4", n.Name, n.Underlay, n.Underlay6)
				}
				if v := sysctl6(t, n, NodeLink, "disable_ipv6"); v != "1" {
					t.Errorf("%s: disable_ipv6 on %s = %q, want 1", n.Name, NodeLink, v)
				}
				checkAddrs(t, n, n.Underlay, netip.Addr{})
			}
			ping(t, nt.Node(1), nt.Node(3))
		})
	}
}

func TestIntegrationCounters(t *testing.T) {
	t.Parallel()
	nt := NewNet(t, 2)
	a, b := nt.Node(1), nt.Node(2)
	before, err := b.Counters(NodeLink)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := a.Exec(t, "ping", "-c", "5", "-i", "0.05", "-W", "2", b.Underlay.String()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after, err := b.Counters(NodeLink)
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d.RxPackets < 5 || d.TxPackets < 5 {
		t.Errorf("after 5 pings, %s counters moved by %+v", NodeLink, d)
	}
	rx, err := b.RxPackets(NodeLink)
	if err != nil || rx < after.RxPackets {
		t.Errorf("RxPackets = %d, %v; want >= %d", rx, err, after.RxPackets)
	}
	if _, err := b.RxPackets("nonexistent0"); err == nil {
		t.Error("RxPackets of a missing link: no error")
	}
}

func TestIntegrationDo(t *testing.T) {
	t.Parallel()
	nt := NewNet(t, 1)
	n := nt.Node(1)
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, n.Name), &want); err != nil {
		t.Fatal(err)
	}
	outside, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()

	err = n.Do(func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(cur), &st); err != nil {
			return err
		}
		if st.Ino != want.Ino {
			return fmt.Errorf("inside Do: namespace inode %d, want %d", st.Ino, want.Ino)
		}
		l, err := netlink.LinkByName(NodeLink)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil || len(addrs) != 1 || addrs[0].IP.String() != n.Underlay.String() {
			return fmt.Errorf("addresses of %s: %v, %v", NodeLink, addrs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(n.Do(func() error { return os.ErrClosed }), os.ErrClosed) == false {
		t.Error("Do did not return fn's error")
	}
	if err := n.Do(func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Do with a panic = %v", err)
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(outside) {
		t.Error("the test goroutine's namespace changed")
	}
}

func TestIntegrationProc(t *testing.T) {
	t.Parallel()
	LeakCheck(t)
	nt := NewNet(t, 1)
	n := nt.Node(1)

	p := n.Start(t, "sh", "-c", "echo ready; exec sleep 100")
	if err := p.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(50 * time.Millisecond); err == nil {
		t.Fatal("Wait on a running process: no error")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(5 * time.Second)
	if code != -1 || err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Wait after SIGTERM = %d, %v; want -1 and killed by signal", code, err)
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal after exit: no error")
	}

	q := n.Start(t, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	if code, err := q.Wait(10 * time.Second); code != 3 || err != nil {
		t.Errorf("Wait = %d, %v; want 3, nil", code, err)
	}
	if out := q.Output(); !strings.Contains(out, "to-stdout") || !strings.Contains(out, "to-stderr") {
		t.Errorf("Output = %q", out)
	}
	if err := q.WaitOutput("never printed", 5*time.Second); err == nil {
		t.Error("WaitOutput on an exited process: no error")
	}

	// The process runs in the namespace: it sees eth0 with the address.
	r := n.Start(t, "ip", "-4", "-o", "addr", "show", "dev", NodeLink)
	if code, err := r.Wait(10 * time.Second); code != 0 || err != nil || !strings.Contains(r.Output(), n.Underlay.String()) {
		t.Errorf("ip addr in the namespace = %d, %v, %q", code, err, r.Output())
	}

	// Stop escalates to SIGKILL for a process that ignores SIGTERM.
	if testing.Short() {
		return
	}
	s := n.Start(t, "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done")
	if err := s.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, err = s.Stop()
	if code != -1 || err == nil || !strings.Contains(err.Error(), "killed") || time.Since(start) < StopGrace {
		t.Errorf("Stop = %d, %v after %v; want SIGKILL after %v", code, err, time.Since(start), StopGrace)
	}
}

func TestIntegrationExec(t *testing.T) {
	t.Parallel()
	nt := NewNet(t, 1)
	n := nt.Node(1)
	out, err := n.Exec(t, "sh", "-c", "echo out; echo err >&2; exit 4")
	if err == nil || !strings.Contains(err.Error(), "exit status 4") || !strings.Contains(err.Error(), "err") {
		t.Errorf("Exec error = %v", err)
	}
	if !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("Exec output = %q", out)
	}
	// /sys is the namespace's own.
	out, err = n.Exec(t, "cat", "/sys/class/net/"+NodeLink+"/mtu")
	if err != nil || strings.TrimSpace(out) != "1500" {
		t.Errorf("mtu from /sys = %q, %v", out, err)
	}
	// IPv6 is off, so no router solicitations or MLD show up in counters.
	out, err = n.Exec(t, "cat", "/proc/sys/net/ipv6/conf/"+NodeLink+"/disable_ipv6")
	if err == nil && strings.TrimSpace(out) != "1" {
		t.Errorf("disable_ipv6 on %s = %q", NodeLink, out)
	}
}

// TestIntegrationCleanup checks that a test's namespaces and processes are
// gone once the test (here a subtest) has ended.
func TestIntegrationCleanup(t *testing.T) {
	t.Parallel()
	RequireRoot(t)
	var names []string
	var pid int
	t.Run("sub", func(t *testing.T) {
		LeakCheck(t)
		nt := NewNet(t, 2)
		names = append(names, nt.Hub.Name)
		for _, n := range nt.Nodes() {
			names = append(names, n.Name)
		}
		p := nt.Node(2).Start(t, "sleep", "1000")
		pid = p.Pid()
		// A process started behind nstest's back is killed too.
		if out, err := nt.Node(1).Exec(t, "sh", "-c", "sleep 1000 >/dev/null 2>&1 &"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	for _, name := range names {
		if nsExists(name) {
			t.Errorf("namespace %s still exists", name)
		}
	}
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("process %d still exists (kill 0: %v)", pid, err)
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	for _, name := range names {
		if strings.Contains(string(out), name) {
			t.Errorf("ip netns list still shows %s", name)
		}
	}
}

// The helper process for the tests below: a test binary that builds a Net,
// writes its namespace names and a process id to the file
// $NSTEST_HELPER_OUT, and then ends as $NSTEST_HELPER tells it.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("NSTEST_HELPER")
	if mode == "" {
		t.Skip("helper process for other tests")
	}
	nt := NewNet(t, 2)
	p := nt.Node(1).Start(t, "sleep", "1000")
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d\nns %s\n", p.Pid(), nt.Hub.Name)
	for _, n := range nt.Nodes() {
		fmt.Fprintf(&b, "ns %s\n", n.Name)
	}
	b.WriteString("built\n")
	if err := os.WriteFile(os.Getenv("NSTEST_HELPER_OUT"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "panic":
		panic("helper panics on purpose")
	case "fail":
		t.Fatal("helper fails on purpose")
	case "hang":
		time.Sleep(time.Hour)
	}
}

type helper struct {
	names []string      // its namespaces
	pid   int           // its child process
	cmd   *exec.Cmd     // the helper itself
	done  chan struct{} // closed when the helper has exited
	err   error         // cmd.Wait's result, once done is closed
}

// runHelper starts the helper in mode and waits until it has built its Net.
func runHelper(t *testing.T, mode string) *helper {
	t.Helper()
	outFile := filepath.Join(t.TempDir(), "built")
	var log strings.Builder
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "NSTEST_HELPER="+mode, "NSTEST_HELPER_OUT="+outFile)
	cmd.Stdout = &log
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, done: make(chan struct{})}
	go func() { h.err = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(outFile)
		if err == nil && strings.HasSuffix(string(b), "built\n") {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "ns "); ok {
					h.names = append(h.names, v)
				}
				if v, ok := strings.CutPrefix(line, "pid "); ok {
					h.pid, _ = strconv.Atoi(v)
				}
			}
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("helper %s did not build its Net in time; output:\n%s", mode, log.String())
	return nil
}

func checkGone(t *testing.T, names []string, pid int) {
	t.Helper()
	for _, name := range names {
		if nsExists(name) {
			t.Errorf("namespace %s still exists", name)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("process %d still exists (kill 0: %v)", pid, err)
	}
}

// TestIntegrationCleanupOnFailure checks that a test that fails or panics
// still removes its namespaces and processes.
func TestIntegrationCleanupOnFailure(t *testing.T) {
	t.Parallel()
	RequireRoot(t)
	for _, mode := range []string{"fail", "panic"} {
		t.Run(mode, func(t *testing.T) {
			h := runHelper(t, mode)
			select {
			case <-h.done:
				if h.err == nil {
					t.Errorf("helper in mode %s exited 0", mode)
				}
			case <-time.After(time.Minute):
				t.Fatalf("helper in mode %s did not exit", mode)
			}
			checkGone(t, h.names, h.pid)
		})
	}
}

// TestIntegrationKilledTestBinary checks that when a test binary dies without
// running its cleanup (as under go test -timeout), its processes die with
// it, and its namespaces are swept by the next NewNet.
func TestIntegrationKilledTestBinary(t *testing.T) {
	t.Parallel()
	RequireRoot(t)
	h := runHelper(t, "hang")
	_ = h.cmd.Process.Kill()
	<-h.done
	for _, name := range h.names {
		if !nsExists(name) {
			t.Fatalf("namespace %s of the killed helper is already gone; the test proves nothing", name)
		}
	}
	// The parent-death signal has killed the helper's child already.
	checkGone(t, nil, h.pid)
	sweepStale(t.Logf)
	checkGone(t, h.names, h.pid)
}

// recordingTB runs cleanups on demand and records errors instead of failing.
type recordingTB struct {
	testing.TB
	name     string
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Name() string        { return r.name }
func (r *recordingTB) Helper()             {}
func (r *recordingTB) Cleanup(fn func())   { r.cleanups = append(r.cleanups, fn) }
func (r *recordingTB) Failed() bool        { return len(r.errs) > 0 }
func (r *recordingTB) Logf(string, ...any) {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestIntegrationLeakCheck(t *testing.T) {
	t.Parallel()
	RequireRoot(t)
	for _, order := range []string{"LeakCheck first", "NewNet first"} {
		t.Run(order, func(t *testing.T) {
			fake := &recordingTB{TB: t, name: t.Name() + "/fake"}
			if order == "LeakCheck first" {
				LeakCheck(fake)
			}
			nt := NewNet(fake, 1)
			if order != "LeakCheck first" {
				LeakCheck(fake)
			}
			// Hold the node's namespace open behind nstest's back.
			h, err := netns.GetFromName(nt.Node(1).Name)
			if err != nil {
				t.Fatal(err)
			}
			fake.runCleanups()
			h.Close()
			if len(fake.errs) != 1 || !strings.Contains(fake.errs[0], "file descriptor") {
				t.Errorf("LeakCheck reported %q; want one file descriptor leak", fake.errs)
			}
			if nsExists(nt.Node(1).Name) {
				t.Errorf("namespace %s still exists", nt.Node(1).Name)
			}
		})
	}
}
