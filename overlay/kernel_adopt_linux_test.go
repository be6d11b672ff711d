package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// adoptKernelIn adopts the kernel dataplane left in n.
func adoptKernelIn(n *nstest.Node, cfg KernelConfig) (*Kernel, error) {
	var k *Kernel
	err := n.Do(func() (err error) {
		k, err = AdoptKernel(cfg)
		return err
	})
	return k, err
}

// linkIndex returns the ifindex of name in n, or 0 if there is none.
func linkIndex(n *nstest.Node, name string) int {
	l, err := n.Link(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

// leaveKernelIn builds the kernel dataplane of cfg in n with nodes as its
// peers and releases it, as a meshcast that hands over does.
func leaveKernelIn(t *testing.T, n *nstest.Node, cfg KernelConfig, nodes ...*nstest.Node) {
	t.Helper()
	var k *Kernel
	if err := n.Do(func() (err error) { k, err = OpenKernel(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.SetPeers(peersOf(nodes...)); err != nil {
		k.Close()
		t.Fatal(err)
	}
	if err := k.Release(); err != nil {
		t.Fatal(err)
	}
}

// adoptAndClose adopts with cfg the kernel dataplane left in n, checks that
// it has nodes as its peers, and closes it, which must leave no device of
// the kernel dataplane behind.
func adoptAndClose(t *testing.T, n *nstest.Node, cfg KernelConfig, nodes ...*nstest.Node) {
	t.Helper()
	k, err := adoptKernelIn(n, cfg)
	if err != nil {
		t.Fatalf("%s: AdoptKernel: %v", cfg.VXLANMode, err)
	}
	var want []netip.Addr
	for _, p := range peersOf(nodes...) {
		want = append(want, p.Underlay)
	}
	if got := k.Peers(); !slices.Equal(got, want) {
		t.Errorf("%s: Peers() = %v, want %v", cfg.VXLANMode, got, want)
	}
	if err := k.Close(); err != nil {
		t.Errorf("%s: Close: %v", cfg.VXLANMode, err)
	}
	if links := kernelLinks(t, n); len(links) != 0 {
		t.Errorf("%s: Close left %q", cfg.VXLANMode, links)
	}
}

// hreFDB returns the all-zero FDB entries of the head-end replication
// device in n, as "00:00:00:00:00:00 dst ADDR".
func hreFDB(t *testing.T, n *nstest.Node) []string {
	t.Helper()
	out := mustExec(t, n, "bridge", "fdb", "show", "dev", hreName(kernelTestVNI))
	return regexp.MustCompile(`(?m)^00:00:00:00:00:00 dst (\S+)`).FindAllString(out, -1)
}

// TestIntegrationKernelAdopt checks the hand-over of a running kernel
// dataplane from one Kernel to the next: Release leaves the bridge and
// ports forwarding, AdoptKernel takes them over without recreating them
// (same ifindexes, no packet of a stream through it lost) and puts back
// settings changed meanwhile, a SetPeers after it keeps the ports of the
// peers that stay, and Close removes everything.
func TestIntegrationKernelAdopt(t *testing.T) {
	for _, mode := range []string{"vxlan-pair", "vxlan-hre", "gre"} {
		t.Run(mode, func(t *testing.T) { testKernelAdopt(t, mode, nstest.UnderlayIPv4) })
	}
}

func testKernelAdopt(t *testing.T, mode string, family nstest.Family) {
	nstest.LeakCheck(t)
	nt := nstest.NewNetWith(t, 4, nstest.Options{Underlay: family})
	n1, n2, n3, n4 := nt.Node(1), nt.Node(2), nt.Node(3), nt.Node(4)
	cfg := kernelTestConfig(n1, VXLANModePair)
	peerCfg := kernelTestConfig(n2, VXLANModePair)
	encap := "vxlan"
	switch mode {
	case "vxlan-hre":
		cfg.VXLANMode, peerCfg.VXLANMode = VXLANModeHRE, VXLANModeHRE
	case "gre":
		var supported error
		probe, kind := gretapSupported, "gretap"
		if underlayOf(n1).Is6() {
			probe, kind = ip6gretapSupported, "ip6gretap"
		}
		if err := n1.Do(func() error { supported = probe(); return nil }); err != nil {
			t.Fatal(err)
		}
		if errors.Is(supported, ErrNoGretap) {
			t.Skipf("the %s case of adoption cannot run here: %v (Linux %s)", kind, supported, KernelRelease())
		}
		if supported != nil {
			t.Fatal(supported)
		}
		encap = "gre"
		for _, c := range []*KernelConfig{&cfg, &peerCfg} {
			c.Encap, c.GREKey, c.HasGREKey, c.VXLANMode = "gre", 7, true, ""
			c.MTU = kernelMTUOf(n1)
		}
	}
	hre := cfg.VXLANMode == VXLANModeHRE

	// The Kernel in n1 changes hands; whichever holds it last closes it.
	var k *Kernel
	if err := n1.Do(func() (err error) { k, err = OpenKernel(cfg); return err }); err != nil {
		t.Fatalf("OpenKernel: %v", err)
	}
	t.Cleanup(func() {
		if k != nil {
			k.Close()
		}
	})
	if _, _, err := k.SetPeers(peersOf(n2, n3)); err != nil {
		t.Fatal(err)
	}
	// n2 runs a dataplane too and receives a stream from n1 throughout.
	k2 := openKernelIn(t, n2, peerCfg)
	if _, _, err := k2.SetPeers(peersOf(n1)); err != nil {
		t.Fatal(err)
	}

	port2, port3, port4 := kernelPortName(encap, underlayOf(n2)), kernelPortName(encap, underlayOf(n3)), kernelPortName(encap, underlayOf(n4))
	watched := []string{kernelTestBridge, port2, port3}
	if hre {
		watched = []string{kernelTestBridge, hreName(kernelTestVNI)}
	}
	before := map[string]int{}
	for _, name := range watched {
		if before[name] = linkIndex(n1, name); before[name] == 0 {
			t.Fatalf("%s: no %s after SetPeers", n1, name)
		}
	}
	ports := k.Ports()
	fdb := []string(nil)
	if hre {
		fdb = hreFDB(t, n1)
	}

	rx := joinGroup(t, n2, kernelTestBridge, kernelGroup)
	tx := newSender(t, n1, kernelTestBridge)
	warmUp(t, tx, kernelGroup, rx)
	const count = 600 // at one a millisecond, longer than the hand-over
	sent := make(chan error, 1)
	go func() {
		payload := make([]byte, kernelPayloadLen)
		copy(payload, kernelMagic)
		dst := &net.UDPAddr{IP: kernelGroup.AsSlice(), Port: kernelTestPort}
		for i := range count {
			if _, err := tx.c.WriteTo(payload, dst); err != nil {
				sent <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			time.Sleep(time.Millisecond)
		}
		sent <- nil
	}()
	time.Sleep(50 * time.Millisecond)

	if err := k.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	released := k
	k = nil
	if err := released.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if err := released.Close(); err != nil {
		t.Errorf("Close after Release: %v", err)
	}
	if _, _, err := released.SetPeers(peersOf(n2)); err == nil {
		t.Error("SetPeers after Release succeeded")
	}
	if p := released.Ports(); p != nil {
		t.Errorf("Ports after Release = %v", p)
	}
	for _, name := range watched {
		if got := linkIndex(n1, name); got != before[name] {
			t.Fatalf("%s after Release: index %d, want %d", name, got, before[name])
		}
	}
	// Meanwhile an operator changes what AdoptKernel puts back in place.
	const strayAddr = "198.19.9.9/24" // not the overlay address: it goes
	mustExec(t, n1, "ip", "link", "set", "dev", kernelTestBridge, "mtu", "1300")
	mustExec(t, n1, "ip", "link", "set", "dev", kernelTestBridge, "type", "bridge", "mcast_query_interval", "12500")
	mustExec(t, n1, "bridge", "link", "set", "dev", watched[1], "isolated", "off")
	mustExec(t, n1, "bridge", "link", "set", "dev", watched[1], "mcast_router", "2")
	mustExec(t, n1, "ip", "link", "set", "dev", kernelTestBridge, "type", "bridge", "mcast_querier", "0")
	mustExec(t, n1, "ip", "addr", "add", strayAddr, "dev", kernelTestBridge)

	adopted, err := adoptKernelIn(n1, cfg)
	if err != nil {
		t.Fatalf("AdoptKernel: %v", err)
	}
	k = adopted
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if got := rx.waitCount(count); got != count {
		t.Errorf("during the hand-over n2 received %d of %d packets", got, count)
	}

	for _, name := range watched {
		if got := linkIndex(n1, name); got != before[name] {
			t.Errorf("%s after AdoptKernel: index %d, want %d (recreated)", name, got, before[name])
		}
	}
	checkBridge(t, n1)
	if out := mustExec(t, n1, "ip", "-o", "addr", "show", "dev", kernelTestBridge); strings.Contains(out, strayAddr) {
		t.Errorf("after AdoptKernel the bridge still has %s:\n%s", strayAddr, out)
	}
	for _, name := range watched[1:] {
		checkPort(t, n1, name)
	}
	if got := k.Ports(); len(got) != len(ports) {
		t.Errorf("Ports() after AdoptKernel = %+v, want %+v", got, ports)
	} else {
		for i := range got {
			if got[i].Port != ports[i].Port || got[i].Underlay != ports[i].Underlay {
				t.Errorf("Ports() after AdoptKernel = %+v, want %+v", got, ports)
			}
		}
	}
	if got, want := k.Peers(), []netip.Addr{underlayOf(n2), underlayOf(n3)}; !slices.Equal(got, want) {
		t.Errorf("Peers() after AdoptKernel = %v, want %v", got, want)
	}
	if hre {
		if got := hreFDB(t, n1); !slices.Equal(got, fdb) {
			t.Errorf("FDB after AdoptKernel %q, want %q", got, fdb)
		}
	}
	if k.Bridge() != kernelTestBridge || k.MTU() != kernelMTUOf(n1) {
		t.Errorf("Bridge() %q MTU() %d", k.Bridge(), k.MTU())
	}

	// One peer dropped, one added: the port of the one that stays is kept.
	added, removed, err := k.SetPeers(peersOf(n2, n4))
	if err != nil || !slices.Equal(added, []netip.Addr{underlayOf(n4)}) || !slices.Equal(removed, []netip.Addr{underlayOf(n3)}) {
		t.Fatalf("SetPeers(2, 4) after AdoptKernel: added %v removed %v, %v", added, removed, err)
	}
	if hre {
		dev := hreName(kernelTestVNI)
		if got := linkIndex(n1, dev); got != before[dev] {
			t.Errorf("%s: index %d after SetPeers, want %d", dev, got, before[dev])
		}
		want := []string{"00:00:00:00:00:00 dst " + underlayOf(n2).String(), "00:00:00:00:00:00 dst " + underlayOf(n4).String()}
		if got := hreFDB(t, n1); !slices.Equal(got, want) {
			t.Errorf("FDB after SetPeers %q, want %q", got, want)
		}
	} else {
		if got := linkIndex(n1, port2); got != before[port2] {
			t.Errorf("%s: index %d after SetPeers, want %d (recreated)", port2, got, before[port2])
		}
		if linkIndex(n1, port3) != 0 {
			t.Errorf("%s still exists after its peer was dropped", port3)
		}
		checkPort(t, n1, port4)
		if got := k.Ports(); len(got) != 2 || got[0].Port != port2 || got[1].Port != port4 {
			t.Errorf("Ports() = %+v, want %s and %s", got, port2, port4)
		}
	}
	rx.count.Store(0)
	tx.send(t, kernelGroup, 50, time.Millisecond)
	if got := rx.waitCount(50); got != 50 {
		t.Errorf("after SetPeers n2 received %d of 50 packets", got)
	}

	if err := k.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	k = nil
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("Close left %q", links)
	}
}

// TestIntegrationKernelAdoptRefuses checks that AdoptKernel refuses what
// it cannot take over, with typed errors, and leaves it untouched.
func TestIntegrationKernelAdoptRefuses(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 3)
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	pair, hre := kernelTestConfig(n1, VXLANModePair), kernelTestConfig(n1, VXLANModeHRE)

	// Nothing to adopt.
	_, err := adoptKernelIn(n1, pair)
	if !errors.Is(err, ErrNoBridge) || !strings.Contains(err.Error(), kernelTestBridge) {
		t.Errorf("AdoptKernel without a bridge: %v, want %v naming %s", err, ErrNoBridge, kernelTestBridge)
	}
	if links := kernelLinks(t, n1); len(links) != 0 {
		t.Errorf("the failed AdoptKernel left %q", links)
	}

	// An interface of the bridge's name that is not a bridge.
	mustExec(t, n1, "ip", "link", "add", kernelTestBridge, "type", "veth", "peer", "name", "mcpeer")
	_, err = adoptKernelIn(n1, pair)
	if me, ok := errors.AsType[*BridgeMismatchError](err); !ok || !errors.Is(err, ErrBridgeMismatch) || me.Device != kernelTestBridge || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("AdoptKernel of a veth: %v, want a *BridgeMismatchError saying it is not a bridge", err)
	}
	mustExec(t, n1, "ip", "link", "del", kernelTestBridge)

	// A pair-mode bridge left behind by Release.
	leaveKernelIn(t, n1, pair, n2, n3)
	t.Cleanup(func() {
		// Whatever the outcome, the bridge goes; deleting it frees its
		// ports, which go with the namespace.
		n1.Exec(t, "ip", "link", "del", kernelTestBridge)
	})
	port2 := kernelPortName("vxlan", n2.Underlay)
	indexes := func() [3]int {
		return [3]int{linkIndex(n1, kernelTestBridge), linkIndex(n1, port2), linkIndex(n1, kernelPortName("vxlan", n3.Underlay))}
	}
	want := indexes()

	otherVNI := pair
	otherVNI.VNI = kernelTestVNI + 1
	otherPort := pair
	otherPort.Port = DefaultVXLANPort + 1
	otherLocal := pair
	otherLocal.Local = n2.Underlay // assigned in no namespace but n2's
	for _, c := range []struct {
		name    string
		cfg     KernelConfig
		problem string
	}{
		{"another VNI", otherVNI, fmt.Sprintf("VXLAN VNI %d where this configuration (community VNI %d) makes VNI %d",
			PairVNI(kernelTestVNI, n1.Underlay, n2.Underlay), kernelTestVNI+1, PairVNI(kernelTestVNI+1, n1.Underlay, n2.Underlay))},
		{"hre mode", hre, "not a port this configuration (VXLAN hre mode over IPv4) makes"},
		{"another UDP port", otherPort, fmt.Sprintf("VXLAN UDP port %d where this configuration has %d", DefaultVXLANPort, DefaultVXLANPort+1)},
	} {
		_, err := adoptKernelIn(n1, c.cfg)
		me, ok := errors.AsType[*BridgeMismatchError](err)
		if !ok || !errors.Is(err, ErrBridgeMismatch) || me.Bridge != kernelTestBridge || me.Device != port2 || !strings.Contains(me.Problem, c.problem) {
			t.Errorf("%s: AdoptKernel = %v, want a *BridgeMismatchError for port %s saying %q", c.name, err, port2, c.problem)
		}
		if err != nil && strings.Contains(err.Error(), "--") {
			t.Errorf("%s: error %q names a command-line flag", c.name, err)
		}
		if got := indexes(); got != want {
			t.Errorf("%s: the refused AdoptKernel changed the devices: indexes %v, want %v", c.name, got, want)
		}
	}
	_, err = adoptKernelIn(n1, otherLocal)
	if ne, ok := errors.AsType[*UnderlayNotAssignedError](err); !ok || ne.Addr != n2.Underlay {
		t.Errorf("AdoptKernel with a foreign Local: %v, want an *UnderlayNotAssignedError for %v", err, n2.Underlay)
	}

	// A port that is not meshcast's.
	mustExec(t, n1, "ip", "link", "add", "mcforeign", "type", "veth", "peer", "name", "mcforeignpeer")
	mustExec(t, n1, "ip", "link", "set", "dev", "mcforeign", "master", kernelTestBridge)
	_, err = adoptKernelIn(n1, pair)
	if me, ok := errors.AsType[*BridgeMismatchError](err); !ok || me.Device != "mcforeign" {
		t.Errorf("AdoptKernel with a foreign port: %v, want a *BridgeMismatchError for mcforeign", err)
	}
	mustExec(t, n1, "ip", "link", "del", "mcforeign")
	if got := indexes(); got != want {
		t.Errorf("the refused AdoptKernels changed the devices: indexes %v, want %v", got, want)
	}

	// The right configuration takes it over, and Close removes it.
	adoptAndClose(t, n1, pair, n2, n3)

	// An hre bridge of another VNI.
	leaveKernelIn(t, n1, hre, n2, n3)
	otherHRE := hre
	otherHRE.VNI = kernelTestVNI + 1
	_, err = adoptKernelIn(n1, otherHRE)
	problem := fmt.Sprintf("head-end replication device with VNI %d where this configuration has VNI %d", kernelTestVNI, kernelTestVNI+1)
	if me, ok := errors.AsType[*BridgeMismatchError](err); !ok || me.Device != hreName(kernelTestVNI) || me.Problem != problem {
		t.Errorf("AdoptKernel of an hre bridge with another VNI: %v, want a *BridgeMismatchError for %s saying %q", err, hreName(kernelTestVNI), problem)
	}
	adoptAndClose(t, n1, hre, n2, n3)
}
