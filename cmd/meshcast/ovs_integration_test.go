package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// Open vSwitch interoperability: meshcast's GRE must be the frames of Linux
// gretap, and this kernel has no GRE module to show it. So the third node of
// the mesh is an implementation we did not write, Open vSwitch's userspace
// datapath (ovs-vswitchd --disable-system, bridges of datapath_type netdev),
// with one native GRE tunnel port per meshcast peer.
//
// Node 3 is laid out as the OVS documentation lays out userspace tunneling:
//
//	br-phy  (netdev): eth0 (the veth to the hub) and the internal port br-phy,
//	                  which holds the underlay address 198.18.0.3/24 and
//	                  eth0's MAC; OVS terminates GRE sent to that address
//	br-int  (netdev): ovl0, an internal port with the overlay address
//	                  198.19.0.3/24 and MTU 1462, and gre1, gre2 to
//	                  198.18.0.1 and .2, both protected (no forwarding from
//	                  one tunnel port to another: split horizon, as meshcast)
//
// OVS reads eth0 through AF_PACKET while the kernel still receives every
// frame on it too. Two things follow, both from DESIGN.md: checksum offload
// is turned off on both ends of the veth, so that OVS never sees a partial
// checksum, and GRE is dropped at node 3's IP input (nftables), or its
// kernel would answer every GRE packet with ICMP protocol-unreachable.
const (
	ovsSchema     = "/usr/share/openvswitch/vswitch.ovsschema"
	ovsPort       = "ovl0"              // node 3's overlay port on br-int
	ovsOverlay    = "198.19.0.3/24"     // as in demoInventory
	ovsOverlayMAC = "02:19:00:00:00:03" // locally administered
	ovsMTU        = 1462                // 1500 minus GRE's 38 bytes, as meshcast's TAP
	// The largest UDP payload one frame of MTU 1462 carries, so that every
	// stream also shows that full-size frames cross in both directions.
	ovsPayload = ovsMTU - 20 - 8
	ovsCount   = 500
)

// ovsPackages are the commands the test needs and the Debian packages that
// have them.
var ovsPackages = []struct{ cmd, pkg string }{
	{"ovs-vswitchd", "openvswitch-switch"},
	{"ovsdb-server", "openvswitch-switch"},
	{"ovsdb-tool", "openvswitch-common"},
	{"ovs-vsctl", "openvswitch-common"},
	{"ovs-appctl", "openvswitch-common"},
	{"nft", "nftables"},
	{"ethtool", "ethtool"},
}

// sbinTool finds a command on PATH or in the sbin directories, which a
// test's PATH may lack, and returns its absolute path.
func sbinTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH or in the sbin directories", name)
}

// ovsUnavailable skips the test when Open vSwitch cannot be had, and fails
// it under CI=true, where a skip would hide that the test never ran.
func ovsUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skipf("%s: skipping the Open vSwitch interoperability test", msg)
}

// requireOVS installs Open vSwitch, nftables and ethtool with apt-get where
// they are missing, without starting any service, and returns the commands'
// absolute paths.
func requireOVS(t *testing.T) map[string]string {
	t.Helper()
	var missing []string
	for _, c := range ovsPackages {
		if _, err := sbinTool(c.cmd); err != nil && !slices.Contains(missing, c.pkg) {
			missing = append(missing, c.pkg)
		}
	}
	if len(missing) > 0 {
		start := time.Now()
		if err := aptInstall(missing); err != nil {
			ovsUnavailable(t, "installing %s: %v", strings.Join(missing, " "), err)
		}
		t.Logf("installed %s in %v", strings.Join(missing, " "), time.Since(start).Round(time.Second))
	}
	tools := map[string]string{}
	for _, c := range ovsPackages {
		p, err := sbinTool(c.cmd)
		if err != nil {
			ovsUnavailable(t, "%v (package %s)", err, c.pkg)
		}
		tools[c.cmd] = p
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		ovsUnavailable(t, "the Open vSwitch database schema: %v", err)
	}
	return tools
}

// aptInstall runs apt-get update, then installs pkgs. A policy-rc.d that
// denies every action keeps the packages' services (the system's own
// ovsdb-server and ovs-vswitchd) from starting; one that is there already is
// left alone.
func aptInstall(pkgs []string) error {
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return fmt.Errorf("apt-get is missing: install %s by hand", strings.Join(pkgs, " "))
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		body := "#!/bin/sh\n# meshcast TestIntegrationOVSGRE: installing packages starts no service\nexit 101\n"
		if err := os.WriteFile(policy, []byte(body), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", policy, err)
		}
		defer os.Remove(policy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"update", "-qq"},
		append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...),
	} {
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// ovsSwitch is an ovsdb-server and an ovs-vswitchd of our own, running in a
// test namespace, with their database, sockets, pidfiles and logs in a
// temporary directory.
type ovsSwitch struct {
	node            *nstest.Node
	tools           map[string]string
	dir             string
	db              string // the database socket, "unix:PATH"
	server, switchd *nstest.Proc
}

func (o *ovsSwitch) path(name string) string { return filepath.Join(o.dir, name) }

// vsctl runs ovs-vsctl against this switch's database. Without --no-wait it
// returns once ovs-vswitchd has applied the change.
func (o *ovsSwitch) vsctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := o.node.Exec(t, append([]string{o.tools["ovs-vsctl"], "--db=" + o.db, "--timeout=30"}, args...)...)
	if err != nil {
		t.Fatalf("ovs-vsctl: %v", err)
	}
	return strings.TrimSpace(out)
}

// appctl runs ovs-appctl against one of the daemons ("ovs-vswitchd" or
// "ovsdb-server").
func (o *ovsSwitch) appctl(t *testing.T, daemon string, args ...string) (string, error) {
	return o.node.Exec(t, append([]string{o.tools["ovs-appctl"], "--timeout=10", "-t", o.path(daemon + ".ctl")}, args...)...)
}

// startOVS starts ovsdb-server and ovs-vswitchd in node n. Their cleanup
// (registered after the namespaces', so it runs first) asks each to exit,
// and kills what is left.
func startOVS(t *testing.T, n *nstest.Node, tools map[string]string) *ovsSwitch {
	t.Helper()
	o := &ovsSwitch{node: n, tools: tools, dir: t.TempDir()}
	o.db = "unix:" + o.path("db.sock")
	if out, err := exec.Command(tools["ovsdb-tool"], "create", o.path("conf.db"), ovsSchema).CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool create: %v\n%s", err, out)
	}
	// Nothing of ours may default to the system's directories.
	env := []string{
		"OVS_RUNDIR=" + o.dir, "OVS_DBDIR=" + o.dir, "OVS_LOGDIR=" + o.dir,
		"OVS_SYSCONFDIR=" + o.dir, "OVS_PKGDATADIR=" + filepath.Dir(ovsSchema),
	}
	// In the foreground, as children of the test: Node.Start reaps them, and
	// --detach would leave them to an init that may not.
	start := func(daemon string, args ...string) *nstest.Proc {
		argv := append(append(slices.Clone(env), tools[daemon]), args...)
		argv = append(argv,
			"--pidfile="+o.path(daemon+".pid"),
			"--unixctl="+o.path(daemon+".ctl"),
			"--log-file="+o.path(daemon+".log"),
			"-vconsole:warn", "-vfile:info")
		p := n.Start(t, "env", argv...)
		t.Cleanup(func() { o.stop(t, daemon, p) })
		return p
	}
	o.server = start("ovsdb-server", o.path("conf.db"), "--remote=punix:"+o.path("db.sock"))
	if err := ovsWaitFor(10*time.Second, func() bool {
		_, err := os.Stat(o.path("db.sock"))
		return err == nil || o.server.Exited()
	}); err != nil || o.server.Exited() {
		t.Fatalf("ovsdb-server did not open %s: %v\n%s", o.path("db.sock"), err, o.server.Output())
	}
	o.vsctl(t, "--no-wait", "init")
	o.switchd = start("ovs-vswitchd", o.db, "--disable-system")
	return o
}

// stop asks daemon to exit through its control socket, waits, and stops
// the process (SIGTERM, then SIGKILL) if it is still there.
func (o *ovsSwitch) stop(t *testing.T, daemon string, p *nstest.Proc) {
	if p.Exited() {
		return
	}
	args := []string{"exit"}
	if daemon == "ovs-vswitchd" {
		args = append(args, "--cleanup") // remove its datapath and ports
	}
	if out, err := o.appctl(t, daemon, args...); err != nil {
		t.Logf("ovs-appctl %s exit: %v\n%s", daemon, err, out)
	}
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Logf("%s did not exit on request: %v; stopping it", daemon, err)
		p.Stop()
	}
}

// diagnose logs the switch's configuration, flows, tunnel neighbours,
// routes and log tails, for a failed test.
func (o *ovsSwitch) diagnose(t *testing.T) {
	if o.switchd == nil || o.switchd.Exited() {
		t.Logf("ovs-vswitchd is not running")
	} else {
		for _, args := range [][]string{
			{"dpctl/dump-flows"}, {"fdb/show", "br-int"}, {"fdb/show", "br-phy"},
			{"tnl/neigh/show"}, {"ovs/route/show"}, {"dpif/show"},
		} {
			out, err := o.appctl(t, "ovs-vswitchd", args...)
			t.Logf("ovs-appctl %s (%v):\n%s", strings.Join(args, " "), err, out)
		}
		out, err := o.node.Exec(t, o.tools["ovs-vsctl"], "--db="+o.db, "--timeout=5", "show")
		t.Logf("ovs-vsctl show (%v):\n%s", err, out)
	}
	for _, daemon := range []string{"ovsdb-server", "ovs-vswitchd"} {
		b, _ := os.ReadFile(o.path(daemon + ".log"))
		s := string(b)
		if len(s) > 8000 {
			s = "..." + s[len(s)-8000:]
		}
		t.Logf("%s log:\n%s", daemon, s)
	}
}

// ovsWaitFor polls cond every 50 ms until it holds or timeout passes.
func ovsWaitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// ovsExec runs a command in n and fails the test if it fails.
func ovsExec(t *testing.T, n *nstest.Node, args ...string) string {
	t.Helper()
	out, err := n.Exec(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var ovsDupRE = regexp.MustCompile(`dup (\d+)`)

// ovsProbeResult returns the received and duplicate counts of a probe.
func ovsProbeResult(t *testing.T, out string) (got, dup int) {
	t.Helper()
	got = received(t, out)
	if m := ovsDupRE.FindStringSubmatch(out); m != nil {
		dup, _ = strconv.Atoi(m[1])
	}
	return got, dup
}

// TestIntegrationOVSGRE shows that meshcast's GRE interoperates with Open
// vSwitch's GRE tunnel ports: nodes 1 and 2 run meshcast, node 3 is an OVS
// userspace switch with one GRE port per meshcast peer. Multicast flows at
// full frame size both ways, without loss and without duplicates (split
// horizon on both sides), unicast crosses both ways, and the meshcast nodes
// drop nothing that OVS sent as malformed.
func TestIntegrationOVSGRE(t *testing.T) {
	began := time.Now()
	nstest.RequireRoot(t)
	tools := requireOVS(t)
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(demoInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	meshNodes := []*nstest.Node{n1, n2}

	// Node 3: Open vSwitch.
	ovsStart := time.Now()
	o := startOVS(t, n3, tools)
	t.Cleanup(func() {
		if t.Failed() {
			o.diagnose(t)
		}
	})
	ovsLayOut(t, nt, o, meshNodes, ovsLayout{
		underlay: fmt.Sprintf("%s/%d", n3.Underlay, nstest.UnderlayPrefix.Bits()),
		portType: "gre", portName: "GRE", mtu: ovsMTU, key: -1,
		local:  n3.Underlay.String(),
		remote: func(n *nstest.Node) string { return n.Underlay.String() },
	}, ovsStart)

	// Nodes 1 and 2: meshcast.
	socks := map[*nstest.Node]string{}
	var daemons []*nstest.Proc
	for _, n := range meshNodes {
		socks[n] = ctlPath(t)
		daemons = append(daemons, n.Start(t, bin, "run", "--peers", inv, "--local", n.Underlay.String(),
			"--encap", "gre", "--control", socks[n]))
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v", i+1, err)
		}
	}

	// Unicast both ways. This also lets OVS learn where the meshcast nodes'
	// tunnel endpoints are (its tunnel neighbour cache) before the streams.
	for _, c := range []struct {
		from *nstest.Node
		to   string
	}{{n1, "198.19.0.3"}, {n3, "198.19.0.1"}, {n3, "198.19.0.2"}} {
		out, err := c.from.Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", c.to)
		if err != nil {
			t.Errorf("ping %s from node %d: %v", c.to, c.from.Index, err)
			continue
		}
		t.Logf("ping %s from node %d: %s", c.to, c.from.Index, ovsPingSummary(out))
	}

	// Multicast from meshcast node 1 to node 3 (OVS) and node 2.
	ovsMulticast(t, probe, n1, "mcbr-demo", []*nstest.Node{n2, n3}, "239.1.2.3", 5000, func() {
		// Node 1 sends only to member peers once a group is registered:
		// wait until both receivers' reports have reached it.
		err := ovsWaitFor(10*time.Second, func() bool {
			for _, g := range statusJSON(t, n1, bin, socks[n1]).Groups {
				if g.Group == "239.1.2.3" {
					return slices.Contains(g.Peers, n2.Underlay.String()) && slices.Contains(g.Peers, n3.Underlay.String())
				}
			}
			return false
		})
		if err != nil {
			t.Fatalf("node 1 did not learn both members of 239.1.2.3: %v", err)
		}
	})
	// Multicast from node 3 (OVS floods it to both tunnel ports) to nodes 1
	// and 2.
	ovsMulticast(t, probe, n3, ovsPort, meshNodes, "239.1.2.4", 5001, nil)

	// The meshcast nodes stop cleanly and dropped nothing that OVS sent as
	// malformed.
	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: exit %d, %v", i+1, code, err)
		}
		dr := drops(d.Output())
		t.Logf("node %d drops %v", i+1, dr)
		for _, reason := range []string{"truncated", "ip_header", "ip_options", "ip_fragment", "ip_proto",
			"gre_version", "gre_flags", "gre_proto", "gre_checksum", "gre_key", "inner_short", "inner_too_big"} {
			if dr[reason] > 0 {
				t.Errorf("node %d dropped %d packets as %s: OVS's GRE and meshcast's disagree", i+1, dr[reason], reason)
			}
		}
	}
	t.Logf("nft GRE drops at node 3's IP input:\n%s", ovsExec(t, n3, tools["nft"], "list", "chain", "inet", "ovs", "input"))
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// ovsLayout is how ovsLayOut lays out node 3's switch.
type ovsLayout struct {
	underlay string // node 3's underlay address and prefix, moved from eth0 to br-phy
	v6       bool   // the underlay is IPv6: turned on for br-phy, the address without DAD
	portType string // of the tunnel ports: "gre" or "ip6gre"
	portName string // how the failures name a tunnel port
	mtu      int    // ovsPort's MTU
	key      int    // the tunnel ports' options:key, none if < 0
	local    string // node 3's tunnel endpoint
	remote   func(n *nstest.Node) string
}

// ovsLayOut lays out node 3 of nt (the node of switch o) as the OVS
// documentation lays out userspace tunneling (see TestIntegrationOVSGRE),
// with one protected tunnel port per node of meshNodes, checks that every
// port is up and attached, and logs the version and the time since start.
func ovsLayOut(t *testing.T, nt *nstest.Net, o *ovsSwitch, meshNodes []*nstest.Node, l ovsLayout, start time.Time) {
	t.Helper()
	n3, tools := o.node, o.tools
	// Checksum offload off on both ends of node 3's veth.
	ovsExec(t, nt.Hub, tools["ethtool"], "-K", nstest.HubPort(3), "tx", "off", "rx", "off")
	ovsExec(t, n3, tools["ethtool"], "-K", nstest.NodeLink, "tx", "off", "rx", "off")
	eth0, err := n3.Link(nstest.NodeLink)
	if err != nil {
		t.Fatal(err)
	}
	o.vsctl(t,
		"add-br", "br-phy",
		"--", "set", "bridge", "br-phy", "datapath_type=netdev",
		fmt.Sprintf("other-config:hwaddr=%q", eth0.Attrs().HardwareAddr.String()),
		"--", "add-port", "br-phy", nstest.NodeLink)
	if err := ovsWaitFor(10*time.Second, func() bool { _, err := n3.Link("br-phy"); return err == nil }); err != nil {
		t.Fatalf("br-phy's internal port did not appear: %v", err)
	}
	addArgs := []string{"ip", "addr", "add", l.underlay, "dev", "br-phy"}
	if l.v6 {
		// IPv6 is off on every interface of a test namespace but
		// NodeLink: turn it on for br-phy as nstest does for NodeLink (no
		// duplicate address detection, no router advertisements).
		for _, sc := range []string{"accept_dad=0", "accept_ra=0", "disable_ipv6=0"} {
			ovsExec(t, n3, "sysctl", "-q", "-w", "net.ipv6.conf.br-phy."+sc)
		}
		addArgs = append(addArgs, "nodad")
	}
	ovsExec(t, n3, "ip", "addr", "del", l.underlay, "dev", nstest.NodeLink)
	ovsExec(t, n3, addArgs...)
	ovsExec(t, n3, "ip", "link", "set", "br-phy", "up")

	args := []string{
		"add-br", "br-int",
		"--", "set", "bridge", "br-int", "datapath_type=netdev",
		"--", "add-port", "br-int", ovsPort,
		"--", "set", "interface", ovsPort, "type=internal",
		fmt.Sprintf("mtu_request=%d", l.mtu), fmt.Sprintf("mac=%q", ovsOverlayMAC),
	}
	for _, n := range meshNodes {
		port := fmt.Sprintf("gre%d", n.Index)
		args = append(args,
			"--", "add-port", "br-int", port,
			"--", "set", "interface", port, "type="+l.portType,
			"options:remote_ip="+l.remote(n), "options:local_ip="+l.local)
		if l.key >= 0 {
			args = append(args, fmt.Sprintf("options:key=%d", l.key))
		}
		args = append(args, "--", "set", "port", port, "protected=true")
	}
	o.vsctl(t, args...)
	if err := ovsWaitFor(10*time.Second, func() bool { _, err := n3.Link(ovsPort); return err == nil }); err != nil {
		t.Fatalf("%s did not appear: %v", ovsPort, err)
	}
	ovsExec(t, n3, "ip", "addr", "add", ovsOverlay, "dev", ovsPort)
	ovsExec(t, n3, "ip", "link", "set", ovsPort, "up")

	// Without a GRE handler, node 3's kernel would answer each GRE packet
	// that reaches its IP input through eth0 with ICMP protocol-unreachable
	// (over IPv6, ICMPv6 parameter problem: unrecognized next header). The
	// inet table covers both.
	ovsExec(t, n3, tools["nft"], "add", "table", "inet", "ovs")
	ovsExec(t, n3, tools["nft"], "add", "chain", "inet", "ovs", "input",
		"{ type filter hook input priority 0 ; policy accept ; }")
	ovsExec(t, n3, tools["nft"], "add", "rule", "inet", "ovs", "input", "meta", "l4proto", "gre", "counter", "drop")

	// Every port is up and attached.
	o.vsctl(t, "wait-until", "interface", ovsPort, "link_state=up")
	o.vsctl(t, "wait-until", "interface", nstest.NodeLink, "link_state=up")
	for _, n := range meshNodes {
		port := fmt.Sprintf("gre%d", n.Index)
		if ofport := o.vsctl(t, "get", "interface", port, "ofport"); ofport == "-1" || ofport == "[]" {
			t.Fatalf("%s port %s has no OpenFlow port (ofport %s): %s", l.portName, port, ofport,
				o.vsctl(t, "get", "interface", port, "error"))
		}
		if p := o.vsctl(t, "get", "port", port, "protected"); p != "true" {
			t.Fatalf("port %s: protected is %s", port, p)
		}
	}
	if link, err := n3.Link(ovsPort); err != nil || link.Attrs().MTU != l.mtu || link.Attrs().HardwareAddr.String() != ovsOverlayMAC {
		t.Fatalf("%s: %v (err %v), want MTU %d and MAC %s", ovsPort, link, err, l.mtu, ovsOverlayMAC)
	}
	t.Logf("%s up in %v", strings.TrimSpace(strings.SplitN(ovsExec(t, n3, tools["ovs-vswitchd"], "--version"), "\n", 2)[0]),
		time.Since(start).Round(time.Millisecond))
}

// ovsMulticast starts receivers of group:port on rcvs, waits until they are
// ready and ready() (if not nil) returns, sends ovsCount full-size datagrams
// from sender out of iface, and checks that every receiver got at least
// 99.9% of them and no duplicate.
func ovsMulticast(t *testing.T, probe string, sender *nstest.Node, iface string, rcvs []*nstest.Node, group string, port int, ready func()) {
	t.Helper()
	ifaceOf := func(n *nstest.Node) string {
		if n.Index == 3 {
			return ovsPort
		}
		return "mcbr-demo"
	}
	var procs []*nstest.Proc
	for _, n := range rcvs {
		p := n.Start(t, probe, "recv", "--iface", ifaceOf(n), "--group", group, "--port", strconv.Itoa(port),
			"--count", strconv.Itoa(ovsCount), "--timeout", "30s", "--linger", "500ms")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on node %d: %v", n.Index, err)
		}
		procs = append(procs, p)
	}
	if ready != nil {
		ready()
	}
	start := time.Now()
	if _, err := sender.Exec(t, probe, "send", "--iface", iface, "--group", group, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(ovsCount), "--rate", "1000", "--size", strconv.Itoa(ovsPayload)); err != nil {
		t.Fatalf("send from node %d: %v", sender.Index, err)
	}
	for i, p := range procs {
		p.Wait(40 * time.Second)
		got, dup := ovsProbeResult(t, p.Output())
		t.Logf("%s from node %d (%d-byte datagrams): node %d received %d/%d, %d duplicates (%v)",
			group, sender.Index, ovsPayload, rcvs[i].Index, got, ovsCount, dup, time.Since(start).Round(time.Millisecond))
		if got*1000 < ovsCount*999 {
			t.Errorf("%s from node %d: node %d received %d/%d (< 99.9%%)", group, sender.Index, rcvs[i].Index, got, ovsCount)
		}
		if dup > 0 {
			t.Errorf("%s from node %d: node %d received %d duplicates: a tunnel sent another tunnel's frames on", group, sender.Index, rcvs[i].Index, dup)
		}
	}
}

// ovsPingSummary returns ping's packet and round-trip lines.
func ovsPingSummary(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "packets transmitted") || strings.HasPrefix(line, "rtt") {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, "; ")
}
