package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

// kernelFlags give the bridge's querier short timers, so that snooping
// prunes within a second or two instead of after the kernel's 10 s.
var kernelFlags = []string{"--igmp-query-interval", "1s", "--igmp-response-interval", "500ms"}

// TestIntegrationKernelDataplane runs three nodes on the kernel path (a
// bridge with IGMP snooping and one isolated VXLAN port per peer) and
// checks delivery, pruning at a non-member, and a clean exit.
func TestIntegrationKernelDataplane(t *testing.T) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	os.WriteFile(inv, []byte(demoInventory), 0o644)
	nodes := nt.Nodes()
	var daemons []*nstest.Proc
	for _, n := range nodes {
		args := append([]string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", "vxlan",
			"--dataplane", "kernel", "--control", ctlPath(t)}, kernelFlags...)
		d := n.Start(t, bin, args...)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
		daemons = append(daemons, d)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	if out, err := a.Exec(t, "ip", "-d", "link", "show", "master", "mcbr-demo"); err != nil || strings.Count(out, "isolated on") != 2 {
		t.Fatalf("tunnel ports not isolated bridge ports: %v\n%s", err, out)
	}
	const count = 1000
	recv := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A's bridge floods the group until its querier is active and it has
	// learned B's membership (a second or two with the short timers).
	// Wait for that, the event the check below needs, by sending bursts
	// to another port of the group until one reaches B and not C.
	waitKernelPruned(t, a, b, c, probe)
	c0 := c.MustCounters(t, nstest.NodeLink)
	if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000", "--size", "200"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	recv.Wait(30 * time.Second)
	c1 := c.MustCounters(t, nstest.NodeLink)
	got := received(t, recv.Output())
	toC := c1.Sub(c0).RxPackets
	t.Logf("kernel path: member received %d/%d, non-member's underlay got %d packets", got, count, toC)
	if got*1000 < count*999 {
		t.Errorf("member received %d/%d", got, count)
	}
	if toC > 50 {
		t.Errorf("non-member got %d packets: the bridge did not prune", toC)
	}
	for i, d := range daemons {
		d.Signal(syscall.SIGTERM)
		if code, err := d.Wait(10 * time.Second); code != 0 || err != nil {
			t.Errorf("node %d: exit %d %v", i+1, code, err)
		}
		if out, _ := nodes[i].Exec(t, "ip", "-o", "link", "show"); strings.Contains(out, "mcbr-demo") || strings.Contains(out, "mcv") {
			t.Errorf("node %d: kernel objects left after SIGTERM:\n%s", i+1, out)
		}
	}
}

// waitKernelPruned sends bursts of 50 datagrams from a to 239.1.2.3 port
// 5009, which no socket receives (so they cost no receiver a datagram),
// until one burst reaches b's underlay and at most 10 packets reach c's,
// for at most 15 s. Each burst's check of c comes once the burst reached
// b, plus a short window for copies in flight.
func waitKernelPruned(t *testing.T, a, b, c *nstest.Node, probe string) {
	t.Helper()
	const burst = 50
	start := time.Now()
	var toB, toC uint64
	for attempt := 1; ; attempt++ {
		b0, c0 := b.MustCounters(t, nstest.NodeLink), c.MustCounters(t, nstest.NodeLink)
		if out, err := a.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5009",
			"--count", strconv.Itoa(burst), "--rate", "2000"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if toB = b.MustCounters(t, nstest.NodeLink).Sub(b0).RxPackets; toB >= burst {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		toC = c.MustCounters(t, nstest.NodeLink).Sub(c0).RxPackets
		if toB >= burst && toC <= 10 {
			t.Logf("a's bridge prunes the non-member after %v (%d bursts)", time.Since(start).Round(10*time.Millisecond), attempt)
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("after %v a burst of %d reached the member with %d and the non-member with %d packets: "+
				"the bridge never pruned", time.Since(start).Round(time.Second), burst, toB, toC)
		}
	}
}

// TestIntegrationKernelUserspaceInterop puts a kernel-path node (one VXLAN
// device with head-end replication, the community's VNI) and two userspace
// nodes in one VXLAN community, and passes multicast both ways.
func TestIntegrationKernelUserspaceInterop(t *testing.T) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	inv := filepath.Join(t.TempDir(), "peers")
	os.WriteFile(inv, []byte(demoInventory), 0o644)
	nodes := nt.Nodes()
	// The kernel node's bridge leaves inner UDP checksums for the device
	// to finish (CHECKSUM_PARTIAL), and veth never finishes them: a
	// userspace peer reading the wire would see them unfinished. With
	// transmit offload off on its underlay veth the kernel finishes them.
	if out, err := nodes[0].Exec(t, "ethtool", "-K", nstest.NodeLink, "tx", "off"); err != nil {
		t.Fatalf("ethtool: %v\n%s", err, out)
	}
	kernelSock := ctlPath(t)
	for i, n := range nodes {
		sock := ctlPath(t)
		if i == 0 {
			sock = kernelSock
		}
		args := []string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", "vxlan", "--control", sock}
		if i == 0 {
			args = append(append(args, "--dataplane", "kernel", "--kernel-vxlan", "hre"), kernelFlags...)
		}
		d := n.Start(t, bin, args...)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
	}
	const count = 500
	flow := func(from, to *nstest.Node, group string) int {
		recv := to.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", group, "--port", "5001",
			"--count", strconv.Itoa(count), "--timeout", "20s")
		if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if out, err := from.Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", group, "--port", "5001",
			"--count", strconv.Itoa(count), "--rate", "1000"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		recv.Wait(20 * time.Second)
		return received(t, recv.Output())
	}
	k2u := flow(nodes[0], nodes[1], "239.1.2.5")
	u2k := flow(nodes[2], nodes[0], "239.1.2.6")
	t.Logf("kernel -> userspace: %d/%d; userspace -> kernel: %d/%d", k2u, count, u2k, count)
	if k2u*1000 < count*999 || u2k*1000 < count*999 {
		t.Errorf("interop: kernel->userspace %d, userspace->kernel %d of %d", k2u, u2k, count)
	}
	if out, err := nodes[0].Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.2"); err != nil {
		t.Errorf("unicast kernel -> userspace: %v\n%s", err, out)
	}
	// Status of the kernel node: the one head-end replication device
	// carries the counters; no peer is credited with them.
	st, err := control.Fetch(context.Background(), kernelSock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dataplane != "kernel" || len(st.TunnelPorts) != 1 || st.TunnelPorts[0].Peer != "" || st.TunnelPorts[0].TxPackets < 2*count {
		t.Errorf("kernel status tunnel ports: %+v", st.TunnelPorts)
	}
	for _, p := range st.Peers {
		if p.TxPackets != 0 || p.RxPackets != 0 {
			t.Errorf("peer %s credited with the shared device's counters: %+v", p.Underlay, p)
		}
	}
}

// TestIntegrationKernelNoGretap: on a kernel without gretap, the kernel
// dataplane with GRE fails with one clear line and leaves nothing.
func TestIntegrationKernelNoGretap(t *testing.T) {
	nt := nstest.NewNet(t, 1)
	bin, _ := binaries(t)
	n := nt.Node(1)
	// Probe as a user would: can this kernel make a gretap device at all?
	if _, err := n.Exec(t, "ip", "link", "add", "mcgprobe", "type", "gretap", "local", "198.18.0.1", "remote", "198.18.0.2"); err == nil {
		n.Exec(t, "ip", "link", "del", "mcgprobe")
		t.Skip("this kernel has gretap: the missing-module path cannot be shown here")
	}
	inv := filepath.Join(t.TempDir(), "peers")
	os.WriteFile(inv, []byte(demoInventory), 0o644)
	out, err := n.Exec(t, bin, "run", "--peers", inv, "--local", "198.18.0.1", "--encap", "gre", "--dataplane", "kernel", "--control", ctlPath(t))
	if code := exitCode(err); code != exitRuntime || !strings.Contains(out, "no gretap") || strings.Contains(out, "panic") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if links, _ := n.Exec(t, "ip", "-o", "link", "show"); strings.Contains(links, "mcbr-demo") {
		t.Fatalf("bridge left behind:\n%s", links)
	}
	t.Logf("kernel dataplane with GRE here: %s", strings.TrimSpace(out))
}
