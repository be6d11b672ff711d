package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/internal/nstest"
)

// The kernel dataplane over IPv6 underlays: nstest's UnderlayIPv6 gives
// node K the address fd00:198:18::K/64 and no IPv4 address on its underlay.
// The overlay stays 198.19.0.K/24.

// TestKernelOverhead6 needs no privileges: the MTU the kernel dataplane
// derives follows the underlay's family.
func TestKernelOverhead6(t *testing.T) {
	base := KernelConfig{
		Bridge:  kernelTestBridge,
		Overlay: netip.MustParsePrefix("198.19.0.1/24"),
		VNI:     kernelTestVNI,
	}
	v4, v6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00:198:18::1")
	for _, c := range []struct {
		encap string
		key   bool
		local netip.Addr
		want  int
	}{
		{"gre", false, v4, 38},
		{"gre", true, v4, 42},
		{"vxlan", false, v4, 50},
		{"gre", false, v6, 58},
		{"gre", true, v6, 62},
		{"vxlan", false, v6, 70},
		// An IPv4-mapped IPv6 address is IPv4.
		{"vxlan", false, netip.AddrFrom16(v4.As16()), 50},
	} {
		cfg := base
		cfg.Encap, cfg.HasGREKey, cfg.Local = c.encap, c.key, c.local
		n, err := cfg.normalize()
		if err != nil {
			t.Fatalf("%s over %v: %v", c.encap, c.local, err)
		}
		if got := n.overhead(); got != c.want {
			t.Errorf("%s (key %v) over %v: overhead %d, want %d", c.encap, c.key, c.local, got, c.want)
		}
	}
	for _, bad := range []string{"::", "ff02::1", "224.0.0.1", "0.0.0.0"} {
		cfg := base
		cfg.Encap, cfg.Local = "vxlan", netip.MustParseAddr(bad)
		if _, err := cfg.normalize(); err == nil || !strings.Contains(err.Error(), "not a unicast") {
			t.Errorf("Local %s: %v, want it refused as not unicast", bad, err)
		}
	}
}

// TestKernelPortName6: IPv6 peers get names of a fixed form, which
// AdoptKernel relies on, and peers that differ only in their prefix get
// different names.
func TestKernelPortName6(t *testing.T) {
	a := netip.MustParseAddr("fd00:198:18::2")
	b := netip.MustParseAddr("fd00:198:19::2")
	for _, encap := range []string{"vxlan", "gre"} {
		na, nb := kernelPortName(encap, a), kernelPortName(encap, b)
		prefix := KernelVXLANPrefix
		if encap == "gre" {
			prefix = KernelGretapPrefix
		}
		if len(na) != MaxIfNameLen || !strings.HasPrefix(na, prefix) || ValidIfName(na) != nil {
			t.Errorf("%s port to %v: %q, want %s and 12 hex digits", encap, a, na, prefix)
		}
		if _, err := strconv.ParseUint(na[len(prefix):], 16, 64); err != nil {
			t.Errorf("%s port to %v: %q is not hex after the prefix", encap, a, na)
		}
		if na == nb {
			t.Errorf("%v and %v both get %q", a, b, na)
		}
		if na == hreName(kernelTestVNI) || kernelPortName(encap, a) != na {
			t.Errorf("%s port name %q is not stable or is the hre device's", encap, na)
		}
	}
	// Pinned: a port that a previous meshcast made must keep its name.
	if got := kernelPortName("vxlan", a); got != "mcv"+kernelPortName6("", a) || got != "mcvbc8bf18e1654" {
		t.Errorf("VXLAN port to %v is %q", a, got)
	}
}

// checkVXLANUnderlay checks, through netlink, the underlay side of the
// VXLAN device name in n: its local address is n's underlay address, as
// IFLA_VXLAN_LOCAL6 over IPv6; its remote is remote (none if remote is
// the zero Addr); and over IPv6 UDP checksums are sent and required.
func checkVXLANUnderlay(t *testing.T, n *nstest.Node, name string, remote netip.Addr) {
	t.Helper()
	link, err := n.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s: %s is a %s device, not VXLAN", n, name, link.Type())
	}
	local := underlayOf(n)
	// The library reads IFLA_VXLAN_LOCAL into 4 bytes, IFLA_VXLAN_LOCAL6
	// into 16.
	wantLen := net.IPv4len
	if local.Is6() {
		wantLen = net.IPv6len
	}
	if len(vx.SrcAddr) != wantLen || !vx.SrcAddr.Equal(local.AsSlice()) {
		t.Errorf("%s: %s has local address %v (%d bytes), want %v (%d)", n, name, vx.SrcAddr, len(vx.SrcAddr), local, wantLen)
	}
	switch {
	case remote.IsValid() && (len(vx.Group) != remote.BitLen()/8 || !vx.Group.Equal(remote.AsSlice())):
		t.Errorf("%s: %s has remote %v, want %v", n, name, vx.Group, remote)
	case !remote.IsValid() && len(vx.Group) != 0 && !vx.Group.IsUnspecified():
		t.Errorf("%s: %s has remote %v, want none", n, name, vx.Group)
	}
	if local.Is6() && (vx.UDP6ZeroCSumTx || vx.UDP6ZeroCSumRx) {
		t.Errorf("%s: %s has udp6zerocsumtx %v udp6zerocsumrx %v, want both off", n, name, vx.UDP6ZeroCSumTx, vx.UDP6ZeroCSumRx)
	}
	if local.Is6() {
		out := mustExec(t, n, "ip", "-d", "link", "show", "dev", name)
		want := []string{"local " + local.String(), "noudp6zerocsumtx noudp6zerocsumrx"}
		if remote.IsValid() {
			want = append(want, "remote "+remote.String())
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: ip -d link show dev %s lacks %q:\n%s", n, name, w, out)
			}
		}
	}
}

// checkUnicast sends count unicast UDP packets from one node's overlay
// address to another's, across the kernel dataplane, and checks that each
// arrives once.
func checkUnicast(t *testing.T, from, to *nstest.Node, count int) {
	t.Helper()
	addr := kernelOverlay(to).Addr()
	rx := listenUnicast(t, to, addr)
	tx := newSender(t, from, kernelTestBridge)
	tx.port = kernelUnicastPort
	defer rx.c.Close() // and the cleanup waits for its reader
	defer tx.c.Close()
	warmUp(t, tx, addr, rx)
	tx.send(t, addr, count, time.Millisecond)
	if got := rx.waitCount(int64(count)); got != int64(count) {
		t.Errorf("unicast %s -> %s (%v): received %d of %d packets", from, to, addr, got, count)
	}
}

// fragmentsCreated returns how many fragments n's namespace has made of
// the packets of the family of its underlay.
func fragmentsCreated(t *testing.T, n *nstest.Node) uint64 {
	t.Helper()
	if underlayOf(n).Is6() {
		for _, line := range strings.Split(mustExec(t, n, "cat", "/proc/net/snmp6"), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Ip6FragCreates" {
				v, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("%s: no Ip6FragCreates in /proc/net/snmp6", n)
	}
	var head []string
	for _, line := range strings.Split(mustExec(t, n, "cat", "/proc/net/snmp"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		if i := slices.Index(head, "FragCreates"); i > 0 && i < len(f) {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("%s: no Ip FragCreates in /proc/net/snmp", n)
	return 0
}

// checkOverlayMTU checks the overlay MTU between two nodes: a packet of
// exactly the MTU crosses unfragmented, in the overlay and on the underlay,
// and one byte more is refused at the source.
func checkOverlayMTU(t *testing.T, from, to *nstest.Node) {
	t.Helper()
	mtu := kernelMTUOf(from)
	addr := kernelOverlay(to).Addr().String()
	before := fragmentsCreated(t, from)
	out, err := from.Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", strconv.Itoa(mtu-28), addr)
	if err != nil {
		t.Errorf("%s: ping of %d bytes to %s across the kernel dataplane: %v\n%s", from, mtu, addr, err, out)
	}
	if d := fragmentsCreated(t, from) - before; d != 0 {
		t.Errorf("%s: the underlay fragmented %d times for packets of the overlay MTU %d", from, d, mtu)
	}
	if out, err := from.Exec(t, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", strconv.Itoa(mtu-27), addr); err == nil {
		t.Errorf("%s: a packet of %d bytes, above the overlay MTU %d, went out:\n%s", from, mtu+1, mtu, out)
	}
}

// TestIntegrationKernel6Pair checks VXLAN pair mode over an IPv6 underlay:
// the devices are IPv6 at both ends, the MTU is the underlay's less 70,
// and multicast and unicast flow both ways.
func TestIntegrationKernel6Pair(t *testing.T) { testKernelPairTwoNodes(t, nstest.UnderlayIPv6) }

// TestIntegrationKernel6PairSnooping checks pruning and split horizon over
// an IPv6 underlay, as TestIntegrationKernelPairSnooping does over IPv4.
func TestIntegrationKernel6PairSnooping(t *testing.T) { testKernelPairSnooping(t, nstest.UnderlayIPv6) }

// TestIntegrationKernel6HRE checks head-end replication over an IPv6
// underlay: one VXLAN device with an IPv6 local address and one all-zero
// FDB entry per peer with its IPv6 address.
func TestIntegrationKernel6HRE(t *testing.T) { testKernelHRE(t, nstest.UnderlayIPv6) }

// TestIntegrationKernel6Adopt checks the hand-over of a kernel dataplane
// over an IPv6 underlay, as TestIntegrationKernelAdopt does over IPv4.
func TestIntegrationKernel6Adopt(t *testing.T) {
	for _, mode := range []string{"vxlan-pair", "vxlan-hre", "gre"} {
		t.Run(mode, func(t *testing.T) { testKernelAdopt(t, mode, nstest.UnderlayIPv6) })
	}
}

// TestIntegrationKernel6MixedFamily checks peers of the other family on a
// dual-stack underlay: each is left out with a *PeerFamilyError, and the
// others are served.
func TestIntegrationKernel6MixedFamily(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 3, nstest.Options{Underlay: nstest.UnderlayDualStack})
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	for _, local6 := range []bool{true, false} {
		t.Run(fmt.Sprintf("IPv6 local %v", local6), func(t *testing.T) {
			mine := func(n *nstest.Node) netip.Addr {
				if local6 {
					return n.Underlay6
				}
				return n.Underlay
			}
			other := func(n *nstest.Node) netip.Addr {
				if local6 {
					return n.Underlay
				}
				return n.Underlay6
			}
			for _, mode := range []string{VXLANModePair, VXLANModeHRE} {
				cfg1, cfg2 := kernelTestConfig(n1, mode), kernelTestConfig(n2, mode)
				cfg1.Local, cfg2.Local = mine(n1), mine(n2)
				k1, k2 := openKernelIn(t, n1, cfg1), openKernelIn(t, n2, cfg2)
				if _, _, err := k2.SetPeers([]KernelPeer{{Underlay: mine(n1), ID: n1.Name}}); err != nil {
					t.Fatal(err)
				}
				// Node 3 is listed by its address of the other family.
				added, removed, err := k1.SetPeers([]KernelPeer{{Underlay: mine(n2), ID: n2.Name}, {Underlay: other(n3), ID: n3.Name}})
				fe, ok := errors.AsType[*PeerFamilyError](err)
				if !ok || !slices.Equal(added, []netip.Addr{mine(n2)}) || removed != nil {
					t.Fatalf("%s: SetPeers with a peer of the other family: added %v removed %v, %v; want node 2 added and a *PeerFamilyError", mode, added, removed, err)
				}
				if want := (PeerFamilyError{ID: n3.Name, Peer: other(n3), Local: mine(n1)}); *fe != want {
					t.Errorf("%s: %+v, want %+v", mode, *fe, want)
				}
				for _, s := range []string{n3.Name, other(n3).String(), mine(n1).String(), "left out"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: error %q lacks %q", mode, err, s)
					}
				}
				if got := k1.Peers(); !slices.Equal(got, []netip.Addr{mine(n2)}) {
					t.Errorf("%s: Peers() = %v, want node 2 only", mode, got)
				}
				if links := kernelLinks(t, n1); len(links) != 2 {
					t.Errorf("%s: links %q, want the bridge and one tunnel", mode, links)
				}
				if mode == VXLANModeHRE {
					if got := hreFDB(t, n1); !slices.Equal(got, []string{"00:00:00:00:00:00 dst " + mine(n2).String()}) {
						t.Errorf("%s: FDB entries %q, want node 2's only", mode, got)
					}
				} else if ports := k1.Ports(); len(ports) != 1 || ports[0].Underlay != mine(n2) {
					t.Errorf("%s: Ports() = %+v, want one port to %v", mode, ports, mine(n2))
				}
				// The same list again: no change, the same refusal.
				added, removed, err = k1.SetPeers([]KernelPeer{{Underlay: mine(n2), ID: n2.Name}, {Underlay: other(n3), ID: n3.Name}})
				if _, ok := errors.AsType[*PeerFamilyError](err); !ok || added != nil || removed != nil {
					t.Errorf("%s: SetPeers again: added %v removed %v, %v", mode, added, removed, err)
				}
				rx := joinGroup(t, n2, kernelTestBridge, kernelGroup)
				tx := newSender(t, n1, kernelTestBridge)
				warmUp(t, tx, kernelGroup, rx)
				tx.send(t, kernelGroup, 50, time.Millisecond)
				if got := rx.waitCount(50); got != 50 {
					t.Errorf("%s: node 2 received %d of 50 packets", mode, got)
				}
				rx.c.Close()
				tx.c.Close()
				for _, k := range []*Kernel{k1, k2} {
					if err := k.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestIntegrationKernel6AdoptRefuses checks that AdoptKernel refuses a
// bridge whose ports are over the other family, and leaves it untouched.
func TestIntegrationKernel6AdoptRefuses(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: nstest.UnderlayDualStack})
	n1, n2 := nt.Node(1), nt.Node(2)
	peer := func(a netip.Addr) []KernelPeer { return []KernelPeer{{Underlay: a, ID: n2.Name}} }
	for _, c := range []struct {
		mode         string
		left, adopt  netip.Addr // the Local that builds the bridge, and that adopts it
		left2, want2 netip.Addr // node 2's address of each family
	}{
		{VXLANModePair, n1.Underlay6, n1.Underlay, n2.Underlay6, n2.Underlay},
		{VXLANModePair, n1.Underlay, n1.Underlay6, n2.Underlay, n2.Underlay6},
		{VXLANModeHRE, n1.Underlay6, n1.Underlay, n2.Underlay6, n2.Underlay},
		{VXLANModeHRE, n1.Underlay, n1.Underlay6, n2.Underlay, n2.Underlay6},
	} {
		name := fmt.Sprintf("%s built over %s, adopted over %s", c.mode, familyName(c.left), familyName(c.adopt))
		cfg := kernelTestConfig(n1, c.mode)
		cfg.Local = c.left
		var k *Kernel
		if err := n1.Do(func() (err error) { k, err = OpenKernel(cfg); return err }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.SetPeers(peer(c.left2)); err != nil {
			t.Fatal(err)
		}
		k.Release()
		dev := kernelPortName("vxlan", c.left2)
		if c.mode == VXLANModeHRE {
			dev = hreName(kernelTestVNI)
		}
		before := [2]int{linkIndex(n1, kernelTestBridge), linkIndex(n1, dev)}

		cfg.Local = c.adopt
		_, err := adoptKernelIn(n1, cfg)
		me, ok := errors.AsType[*BridgeMismatchError](err)
		problem := fmt.Sprintf("VXLAN device over %s (from %v) where this configuration's underlay is %s (%v)", familyName(c.left), c.left, familyName(c.adopt), c.adopt)
		if !ok || me.Device != dev || me.Problem != problem {
			t.Errorf("%s: AdoptKernel = %v, want a *BridgeMismatchError for %s saying %q", name, err, dev, problem)
		}
		if got := [2]int{linkIndex(n1, kernelTestBridge), linkIndex(n1, dev)}; got != before {
			t.Errorf("%s: the refused AdoptKernel changed the devices: indexes %v, want %v", name, got, before)
		}
		// Its own family adopts it, with the peer's address as it was.
		cfg.Local = c.left
		k, err = adoptKernelIn(n1, cfg)
		if err != nil {
			t.Fatalf("%s: AdoptKernel over %s: %v", name, familyName(c.left), err)
		}
		if got := k.Peers(); !slices.Equal(got, []netip.Addr{c.left2}) {
			t.Errorf("%s: adopted peers %v, want %v", name, got, c.left2)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		if links := kernelLinks(t, n1); len(links) != 0 {
			t.Fatalf("%s: Close left %q", name, links)
		}
	}
}

// ip6gretapSupported reports nil if this kernel can create ip6gretap
// devices, and ErrNoIP6Gretap if it has none, probing in the calling
// thread's network namespace as the kernel dataplane does.
func ip6gretapSupported() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("probing for ip6gretap: %w", err)
	}
	defer h.Close()
	return probeIP6Gretap(h)
}

// gre6Config is the GRE configuration over node n's IPv6 underlay, with
// key 7 and the MTU derived from the underlay.
func gre6Config(n *nstest.Node) KernelConfig {
	cfg := kernelTestConfig(n, "")
	cfg.Encap, cfg.VXLANMode, cfg.GREKey, cfg.HasGREKey = "gre", "", 7, true
	return cfg
}

// TestIntegrationKernel6NoIP6Gretap checks GRE over an IPv6 underlay on a
// kernel without ip6gretap: every entry point says so in one line, which
// is also ErrNoGretap, and leaves nothing behind; VXLAN per pair over the
// same underlay is the way forward, and works.
func TestIntegrationKernel6NoIP6Gretap(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: nstest.UnderlayIPv6})
	n1, n2 := nt.Node(1), nt.Node(2)
	var supported error
	if err := n1.Do(func() error { supported = ip6gretapSupported(); return nil }); err != nil {
		t.Fatal(err)
	}
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("the ip6gretap probe left %q", links)
	}
	if supported == nil {
		t.Skipf("this kernel (Linux %s) has ip6gretap: the missing-module path cannot be shown here", KernelRelease())
	}
	if !errors.Is(supported, ErrNoIP6Gretap) || !errors.Is(supported, ErrNoGretap) {
		t.Fatalf("ip6gretapSupported() = %v, want ErrNoIP6Gretap, which is also ErrNoGretap", supported)
	}
	if errors.Is(ErrNoGretap, ErrNoIP6Gretap) {
		t.Error("ErrNoGretap is ErrNoIP6Gretap: a kernel without gretap would be said to lack ip6gretap")
	}
	const line = "this kernel has no ip6gretap (ip6_gre module)"
	if supported.Error() != line {
		t.Errorf("ip6gretapSupported() = %q, want %q", supported, line)
	}
	t.Logf("ip6gretapSupported() = %v", supported)

	cfg := gre6Config(n1)
	err := n1.Do(func() error {
		k, err := OpenKernel(cfg)
		if err == nil {
			k.Close()
		}
		return err
	})
	if !errors.Is(err, ErrNoIP6Gretap) || err.Error() != line {
		t.Errorf("OpenKernel in GRE mode over IPv6 = %v, want %q", err, line)
	}
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("the failed OpenKernel left %q", links)
	}
	// Past the probe (as if the module went away), SetPeers fails as
	// plainly and leaves no port.
	var k *Kernel
	if err := n1.Do(func() (err error) { k, err = openKernel(cfg, false); return err }); err != nil {
		t.Fatalf("openKernel without the ip6gretap probe: %v", err)
	}
	if k.MTU() != nstest.UnderlayMTU-62 {
		t.Errorf("GRE with a key over IPv6: MTU %d, want %d", k.MTU(), nstest.UnderlayMTU-62)
	}
	added, _, err := k.SetPeers(peersOf(n2))
	if !errors.Is(err, ErrNoIP6Gretap) || len(added) != 0 {
		t.Errorf("SetPeers in GRE mode over IPv6: added %v, %v; want %v", added, err, ErrNoIP6Gretap)
	}
	if links := kernelLinks(t, n1); len(links) != 1 {
		t.Errorf("links %q after the failed SetPeers, want the bridge only", links)
	}
	if err := k.Close(); err != nil {
		t.Error(err)
	}
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("Close left %q", links)
	}

	// The fallback: VXLAN per pair between the same nodes.
	ks := meshKernels(t, []*nstest.Node{n1, n2}, VXLANModePair)
	rx := joinGroup(t, n2, kernelTestBridge, kernelGroup)
	tx := newSender(t, n1, kernelTestBridge)
	warmUp(t, tx, kernelGroup, rx)
	tx.send(t, kernelGroup, 100, time.Millisecond)
	if got := rx.waitCount(100); got != 100 {
		t.Errorf("VXLAN pair mode instead: node 2 received %d of 100 packets", got)
	}
	t.Logf("no ip6gretap here; VXLAN pair mode over IPv6 instead: MTU %d, ports %+v", ks[0].MTU(), ks[0].Ports())
}

// TestIntegrationKernel6IP6Gretap checks GRE ports over an IPv6 underlay
// where the kernel has ip6gretap: keyed ip6gretap devices between the
// nodes' IPv6 addresses, without the encapsulation limit option, the MTU
// the underlay's less 62, and multicast and unicast both ways.
func TestIntegrationKernel6IP6Gretap(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: nstest.UnderlayIPv6})
	n1, n2 := nt.Node(1), nt.Node(2)
	var supported error
	if err := n1.Do(func() error { supported = ip6gretapSupported(); return nil }); err != nil {
		t.Fatal(err)
	}
	if errors.Is(supported, ErrNoIP6Gretap) {
		t.Skipf("ip6gretap ports cannot be tested here: %v (Linux %s); TestIntegrationKernel6NoIP6Gretap covers this kernel", supported, KernelRelease())
	}
	if supported != nil {
		t.Fatal(supported)
	}
	const mtu = nstest.UnderlayMTU - 62
	nodes := []*nstest.Node{n1, n2}
	ks := make([]*Kernel, 2)
	for i, n := range nodes {
		ks[i] = openKernelIn(t, n, gre6Config(n))
		if ks[i].MTU() != mtu {
			t.Errorf("%s: MTU %d, want %d", n, ks[i].MTU(), mtu)
		}
	}
	for i, n := range nodes {
		other := nodes[1-i]
		if _, _, err := ks[i].SetPeers(peersOf(other)); err != nil {
			t.Fatalf("%s: SetPeers: %v", n, err)
		}
		name := kernelPortName("gre", other.Underlay6)
		link, err := n.Link(name)
		if err != nil {
			t.Fatal(err)
		}
		g, ok := link.(*netlink.Gretap)
		if !ok || g.IKey != 7 || g.OKey != 7 || g.IFlags&nl.GRE_KEY == 0 || g.OFlags&nl.GRE_KEY == 0 ||
			len(g.Local) != net.IPv6len || !g.Local.Equal(n.Underlay6.AsSlice()) || !g.Remote.Equal(other.Underlay6.AsSlice()) {
			t.Errorf("%s: %s is %#v, want ip6gretap from %v to %v with key 7", n, name, link, n.Underlay6, other.Underlay6)
		}
		if a := link.Attrs(); a.MTU != mtu {
			t.Errorf("%s: %s has MTU %d, want %d", n, name, a.MTU, mtu)
		}
		out := mustExec(t, n, "ip", "-d", "link", "show", "dev", name)
		for _, want := range []string{"ip6gretap", "encaplimit none", "hoplimit 64"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: ip -d link show dev %s lacks %q:\n%s", n, name, want, out)
			}
		}
		out = mustExec(t, n, "bridge", "-d", "link", "show", "dev", name)
		if !strings.Contains(out, "isolated on") {
			t.Errorf("%s: %s is not isolated:\n%s", n, name, out)
		}
		if ports := ks[i].Ports(); len(ports) != 1 || ports[0].Port != name || ports[0].Underlay != other.Underlay6 {
			t.Errorf("%s: Ports() = %+v, want one port %s to %v", n, ports, name, other.Underlay6)
		}
	}
	const count = 100
	for _, dir := range [][2]*nstest.Node{{n1, n2}, {n2, n1}} {
		from, to := dir[0], dir[1]
		rx := joinGroup(t, to, kernelTestBridge, kernelGroup)
		tx := newSender(t, from, kernelTestBridge)
		warmUp(t, tx, kernelGroup, rx)
		tx.send(t, kernelGroup, count, time.Millisecond)
		if got := rx.waitCount(count); got != count {
			t.Errorf("%s -> %s: received %d of %d packets", from, to, got, count)
		}
		rx.c.Close()
		tx.c.Close()
		checkUnicast(t, from, to, count)
		out, err := from.Exec(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", strconv.Itoa(mtu-28), kernelOverlay(to).Addr().String())
		if err != nil {
			t.Errorf("%s: ping of %d bytes across ip6gretap: %v\n%s", from, mtu, err, out)
		}
	}
}
