package overlay

// The hand-over of the kernel dataplane from one meshcast to the next:
// Release leaves the bridge and its tunnel ports in place, forwarding, and
// AdoptKernel checks that they are what its configuration makes, reads the
// peers back from them and puts back in place whatever settings differ.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ErrNoBridge is returned by AdoptKernel when there is no interface of the
// bridge's name to take over.
var ErrNoBridge = errors.New("no bridge of that name to adopt")

// ErrBridgeMismatch is what every *BridgeMismatchError is (errors.Is).
var ErrBridgeMismatch = errors.New("the bridge does not fit the configuration")

// BridgeMismatchError is returned by AdoptKernel when the interface of the
// bridge's name cannot be the kernel dataplane that its configuration
// describes: it is not a bridge, or one of its ports is not a port that the
// configuration makes (another encapsulation, VXLAN mode, VNI, UDP port,
// underlay address or interface, GRE key, or a device that is not
// meshcast's). AdoptKernel leaves such a bridge untouched.
type BridgeMismatchError struct {
	Bridge string
	// Device is the bridge port that does not fit, or the bridge itself.
	Device string
	// Problem says what differs, such as "VXLAN VNI 12 where this
	// configuration has 34".
	Problem string
}

func (e *BridgeMismatchError) Error() string {
	if e.Device == e.Bridge {
		return fmt.Sprintf("bridge %s does not fit the configuration: %s", e.Bridge, e.Problem)
	}
	return fmt.Sprintf("bridge %s does not fit the configuration: port %s: %s", e.Bridge, e.Device, e.Problem)
}

// Is reports whether target is ErrBridgeMismatch.
func (e *BridgeMismatchError) Is(target error) bool { return target == ErrBridgeMismatch }

// Release gives the Kernel up without deleting anything: the bridge, its
// address and settings, its tunnel ports and FDB entries stay as they are
// and keep forwarding, for the next meshcast to take over with AdoptKernel.
// It closes the Kernel's netlink sockets and its handle on the network
// namespace. Afterwards the Kernel behaves as closed: SetPeers fails, Ports
// and Peers return nil, and Release and Close do nothing and return nil.
func (k *Kernel) Release() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.closeHandles()
	k.peers = nil
	return nil
}

// AdoptKernel takes over, in the calling thread's network namespace, the
// kernel dataplane that a previous meshcast built with the same
// configuration and left in place with Release: the bridge cfg.Bridge and
// its tunnel ports. The ports are taken as they are, not recreated, so
// frames keep flowing throughout. The ports named as OpenKernel and SetPeers
// name them become the Kernel's peers, each mapped back to its peer's
// underlay address: from the remote address of a gretap, ip6gretap or
// pair-mode VXLAN device, and in hre mode from the all-zero FDB entries of
// the head-end replication device. Those addresses, and every port's local
// address, are of the family of cfg.Local: a port over the other family is
// a mismatch. Peers and Ports list them, and a following SetPeers
// keeps the ports of the peers it still lists (same devices, same indexes)
// and adds and removes the others.
//
// Settings that may differ from cfg are changed in place, never by
// recreating a device: the bridge's MTU, MAC address, overlay address (the
// configured one is added, other IPv4 addresses removed), multicast
// snooping, querier and IGMP timers (a querier whose timers change is
// restarted, so that it queries on the new interval), and each port's MTU,
// isolation and multicast_router 0. In hre mode a missing head-end
// replication device is created.
//
// A missing bridge is an error wrapping ErrNoBridge. An interface of the
// bridge's name that cannot be the dataplane cfg describes is a
// *BridgeMismatchError (errors.Is ErrBridgeMismatch): not a bridge, or a
// port that cfg would not make, such as another encapsulation, VXLAN mode,
// VNI or UDP port, another underlay address, family or interface, another
// GRE key, or a device that is not meshcast's. It is found before anything is
// changed, and the bridge is left untouched. On any error AdoptKernel
// deletes only what it created itself.
func AdoptKernel(cfg KernelConfig) (_ *Kernel, err error) {
	// As in openKernel: /proc/sys/net shows the namespace of this thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	k, err := newKernel(cfg)
	if err != nil {
		return nil, err
	}
	createdHRE := false
	defer func() {
		if err != nil {
			if createdHRE {
				_ = k.deleteLink(k.hre.index)
			}
			k.Release()
		}
	}()
	br, err := k.h.LinkByName(k.cfg.Bridge)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil, fmt.Errorf("%w: %s", ErrNoBridge, k.cfg.Bridge)
		}
		return nil, fmt.Errorf("bridge %s: %w", k.cfg.Bridge, err)
	}
	if br.Type() != "bridge" {
		return nil, k.mismatch(k.cfg.Bridge, fmt.Sprintf("it is a %s device, not a bridge", br.Type()))
	}
	k.bridgeIndex = br.Attrs().Index
	if err := k.findUnderlay(); err != nil {
		return nil, err
	}

	// Everything is checked before anything is changed.
	ports, err := k.adoptablePorts()
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if p.hre {
			k.hre = p.port()
		}
	}
	if k.hre.index != 0 {
		peers, err := k.hrePeers()
		if err != nil {
			return nil, err
		}
		for _, a := range peers {
			k.peers[a] = kernelPort{}
		}
	}

	if err := k.adoptBridge(br); err != nil {
		return nil, err
	}
	if err := k.adoptPorts(ports); err != nil {
		return nil, err
	}
	for _, p := range ports {
		if !p.hre {
			k.peers[p.peer] = p.port()
		}
	}
	if k.hreMode() && k.hre.index == 0 {
		if err := k.createHRE(); err != nil {
			return nil, err
		}
		createdHRE = true
	}
	return k, nil
}

// mismatch returns the *BridgeMismatchError for device.
func (k *Kernel) mismatch(device, problem string) error {
	return &BridgeMismatchError{Bridge: k.cfg.Bridge, Device: device, Problem: problem}
}

// adoptedPort is a port of the bridge that AdoptKernel takes over: the
// head-end replication device, or the tunnel to peer.
type adoptedPort struct {
	link netlink.Link
	peer netip.Addr
	hre  bool
}

// port returns p as the Kernel keeps it.
func (p adoptedPort) port() kernelPort {
	return kernelPort{name: p.link.Attrs().Name, index: p.link.Attrs().Index}
}

// adoptablePorts returns the ports of the bridge, each checked to be one
// that this configuration makes, or a *BridgeMismatchError.
func (k *Kernel) adoptablePorts() ([]adoptedPort, error) {
	links, err := retryDump(k.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: list its ports: %w", k.cfg.Bridge, err)
	}
	var ports []adoptedPort
	for _, l := range links {
		if l.Attrs().MasterIndex != k.bridgeIndex || l.Attrs().Index == k.bridgeIndex {
			continue
		}
		p, problem := k.checkPort(l)
		if problem != "" {
			return nil, k.mismatch(l.Attrs().Name, problem)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// checkPort checks that l is a port this configuration makes. It returns
// the port, or a description of what differs.
func (k *Kernel) checkPort(l netlink.Link) (adoptedPort, string) {
	cfg := k.cfg
	name := l.Attrs().Name
	mode := "GRE"
	if cfg.Encap == "vxlan" {
		mode = "VXLAN " + cfg.VXLANMode + " mode"
	}
	mode += " over " + familyName(cfg.Local)
	notOurs := fmt.Sprintf("a %s device that is not a port this configuration (%s) makes", l.Type(), mode)
	switch {
	case k.hreMode():
		vx, ok := l.(*netlink.Vxlan)
		if !ok || !strings.HasPrefix(name, KernelVXLANPrefix+"h") {
			return adoptedPort{}, notOurs
		}
		if vx.VxlanId != int(cfg.VNI) {
			return adoptedPort{}, fmt.Sprintf("head-end replication device with VNI %d where this configuration has VNI %d", vx.VxlanId, cfg.VNI)
		}
		if name != hreName(cfg.VNI) {
			return adoptedPort{}, notOurs
		}
		if problem := k.checkFamily("VXLAN device", vx.SrcAddr); problem != "" {
			return adoptedPort{}, problem
		}
		if len(vx.Group) != 0 && !vx.Group.IsUnspecified() {
			return adoptedPort{}, fmt.Sprintf("VXLAN device with remote %v where head-end replication has none", vx.Group)
		}
		if problem := k.checkVXLAN(vx); problem != "" {
			return adoptedPort{}, problem
		}
		return adoptedPort{link: l, hre: true}, ""

	case k.pairMode():
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			return adoptedPort{}, notOurs
		}
		if strings.HasPrefix(name, KernelVXLANPrefix+"h") {
			return adoptedPort{}, "a head-end replication device where this configuration (VXLAN pair mode) makes one VXLAN device per peer"
		}
		if problem := k.checkFamily("VXLAN device", vx.SrcAddr); problem != "" {
			return adoptedPort{}, problem
		}
		peer, ok := k.tunnelAddr(vx.Group)
		if !ok || name != kernelPortName("vxlan", peer) {
			return adoptedPort{}, notOurs
		}
		if want := PairVNI(cfg.VNI, cfg.Local, peer); vx.VxlanId != int(want) {
			return adoptedPort{}, fmt.Sprintf("VXLAN VNI %d where this configuration (community VNI %d) makes VNI %d for peer %v", vx.VxlanId, cfg.VNI, want, peer)
		}
		if problem := k.checkVXLAN(vx); problem != "" {
			return adoptedPort{}, problem
		}
		return adoptedPort{link: l, peer: peer}, ""

	default: // gre
		// The library reads gretap and ip6gretap devices alike.
		g, ok := l.(*netlink.Gretap)
		if !ok {
			return adoptedPort{}, notOurs
		}
		kind := "gretap"
		if cfg.Local.Is6() {
			kind = "ip6gretap"
		}
		if problem := k.checkFamily("GRE device", g.Local); problem != "" {
			return adoptedPort{}, problem
		}
		peer, ok := k.tunnelAddr(g.Remote)
		if !ok || name != kernelPortName("gre", peer) {
			return adoptedPort{}, notOurs
		}
		if local, ok := k.tunnelAddr(g.Local); !ok || local != cfg.Local {
			return adoptedPort{}, fmt.Sprintf("%s from underlay address %v where this configuration has %v", kind, g.Local, cfg.Local)
		}
		keyed := g.IFlags&nl.GRE_KEY != 0 || g.OFlags&nl.GRE_KEY != 0
		switch {
		case keyed && !cfg.HasGREKey:
			return adoptedPort{}, fmt.Sprintf("%s with GRE key %d where this configuration has no key", kind, g.IKey)
		case !keyed && cfg.HasGREKey:
			return adoptedPort{}, fmt.Sprintf("%s without a GRE key where this configuration has key %d", kind, cfg.GREKey)
		case keyed && (g.IKey != cfg.GREKey || g.OKey != cfg.GREKey):
			return adoptedPort{}, fmt.Sprintf("%s with GRE key %d where this configuration has key %d", kind, g.IKey, cfg.GREKey)
		}
		return adoptedPort{link: l, peer: peer}, ""
	}
}

// checkVXLAN checks what every VXLAN device of the configuration shares:
// the UDP port, the underlay source address and interface, and over IPv6
// UDP checksums sent and required.
func (k *Kernel) checkVXLAN(vx *netlink.Vxlan) string {
	if vx.Port != int(k.cfg.Port) {
		return fmt.Sprintf("VXLAN UDP port %d where this configuration has %d", vx.Port, k.cfg.Port)
	}
	if src, ok := k.tunnelAddr(vx.SrcAddr); !ok || src != k.cfg.Local {
		return fmt.Sprintf("VXLAN device from underlay address %v where this configuration has %v", vx.SrcAddr, k.cfg.Local)
	}
	if k.cfg.Local.Is6() && (vx.UDP6ZeroCSumTx || vx.UDP6ZeroCSumRx) {
		return "VXLAN device with udp6zerocsumtx or udp6zerocsumrx on, where this configuration sends and requires UDP checksums over IPv6"
	}
	if vx.VtepDevIndex != k.underlayIndex {
		return fmt.Sprintf("VXLAN device on the interface of index %d where this configuration uses %s (index %d)", vx.VtepDevIndex, k.cfg.UnderlayIf, k.underlayIndex)
	}
	return ""
}

// checkFamily returns a problem if local, the underlay address of a device
// of the kind named, is of the other family than Local, and "" otherwise.
func (k *Kernel) checkFamily(kind string, local net.IP) string {
	a, ok := netip.AddrFromSlice(local)
	if a = a.Unmap(); !ok || sameFamily(a, k.cfg.Local) {
		return ""
	}
	return fmt.Sprintf("%s over %s (from %v) where this configuration's underlay is %s (%v)", kind, familyName(a), a, familyName(k.cfg.Local), k.cfg.Local)
}

// tunnelAddr returns ip as a unicast address of the underlay's family (that
// of Local), the only kind the kernel dataplane tunnels to or from.
func (k *Kernel) tunnelAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	if !ok || !sameFamily(a, k.cfg.Local) || a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, false
	}
	return a, true
}

// hrePeers returns the peers of the head-end replication device: the
// destinations of its all-zero FDB entries.
func (k *Kernel) hrePeers() ([]netip.Addr, error) {
	entries, err := retryDump(func() ([]netlink.Neigh, error) {
		return k.h.NeighList(k.hre.index, unix.AF_BRIDGE)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list FDB entries: %w", k.hre.name, err)
	}
	var peers []netip.Addr
	for _, e := range entries {
		if e.IP == nil || !slices.Equal(e.HardwareAddr, make(net.HardwareAddr, 6)) {
			continue // not a head-end replication entry
		}
		a, ok := k.tunnelAddr(e.IP)
		if !ok {
			return nil, k.mismatch(k.hre.name, fmt.Sprintf("FDB entry to %v, which is not a peer's %s underlay address", e.IP, familyName(k.cfg.Local)))
		}
		if !slices.Contains(peers, a) {
			peers = append(peers, a)
		}
	}
	return peers, nil
}

// adoptBridge sets, in place, whatever of the bridge br differs from the
// configuration, and nothing else.
func (k *Kernel) adoptBridge(br netlink.Link) error {
	cfg := k.cfg
	a := br.Attrs()
	if a.MTU != cfg.MTU {
		if err := k.h.LinkSetMTU(br, cfg.MTU); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", cfg.Bridge, cfg.MTU, err)
		}
	}
	if !slices.Equal(a.HardwareAddr, cfg.MAC) {
		if err := k.h.LinkSetHardwareAddr(br, cfg.MAC); err != nil {
			return fmt.Errorf("bridge %s: set MAC address %v: %w", cfg.Bridge, cfg.MAC, err)
		}
	}
	current, err := k.bridgeData()
	if err != nil {
		return fmt.Errorf("bridge %s: read multicast settings: %w", cfg.Bridge, err)
	}
	want := append([]bridgeSetting{{typ: nl.IFLA_BR_MCAST_SNOOPING, value: 1}}, cfg.bridgeSettings()...)
	want = append(want, cfg.bridgeTimers()...)
	var differ []bridgeSetting
	timers := false
	for _, st := range want {
		if !st.matches(current[st.typ]) {
			differ = append(differ, st)
			timers = timers || st.timer
		}
	}
	if len(differ) > 0 {
		if err := k.changeBridge(differ...); err != nil {
			return fmt.Errorf("bridge %s: multicast settings: %w", cfg.Bridge, err)
		}
	}
	if err := k.setIPv6(); err != nil {
		return err
	}
	if err := k.adoptAddress(br); err != nil {
		return err
	}
	if a.Flags&net.FlagUp == 0 {
		if err := k.h.LinkSetUp(br); err != nil {
			return fmt.Errorf("bridge %s: set up: %w", cfg.Bridge, err)
		}
	}
	// The querier last, as in createBridge. A running querier whose timers
	// changed has its next query due on the old interval, which may be
	// longer than the new membership interval: switched off and on again,
	// it queries now and then on the new interval. Meanwhile the bridge
	// floods rather than prunes, for the response interval.
	on := querierOn.matches(current[querierOn.typ])
	if on && timers {
		if err := k.changeBridge(bridgeSetting{typ: querierOn.typ, value: 0}); err != nil {
			return fmt.Errorf("bridge %s: restart the IGMP querier: %w", cfg.Bridge, err)
		}
	}
	if !on || timers {
		if err := k.changeBridge(querierOn); err != nil {
			return fmt.Errorf("bridge %s: enable the IGMP querier: %w", cfg.Bridge, err)
		}
	}
	return nil
}

// adoptAddress gives the bridge the overlay address, and then takes away
// any other IPv4 address, so that it is never without one; likewise the
// IPv6 overlay address, if any, and other global IPv6 addresses.
func (k *Kernel) adoptAddress(br netlink.Link) error {
	cfg := k.cfg
	addrs, err := k.h.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", cfg.Bridge, err)
	}
	has := false
	var others []netlink.Addr
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		if netip.PrefixFrom(ip.Unmap(), bits) == cfg.Overlay {
			has = true
		} else {
			others = append(others, a)
		}
	}
	if !has {
		if err := k.addAddr(br, cfg.Overlay); err != nil {
			return err
		}
	}
	if err := k.addAddr(br, cfg.Overlay6); err != nil {
		return err
	}
	if cfg.Overlay6.IsValid() {
		addrs, err := k.h.AddrList(br, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("bridge %s: list IPv6 addresses: %w", cfg.Bridge, err)
		}
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			bits, _ := a.Mask.Size()
			if !ip.IsLinkLocalUnicast() && netip.PrefixFrom(ip, bits) != cfg.Overlay6 {
				others = append(others, a)
			}
		}
	}
	for _, a := range others {
		if err := k.h.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("bridge %s: delete address %v: %w", cfg.Bridge, a.IPNet, err)
		}
	}
	return nil
}

// adoptPorts sets, in place, whatever of the ports differs from what
// addTunnel makes: the MTU, isolation, multicast_router 0, up.
func (k *Kernel) adoptPorts(ports []adoptedPort) error {
	if len(ports) == 0 {
		return nil
	}
	info, err := k.portInfo()
	if err != nil {
		return fmt.Errorf("bridge %s: read its ports' settings: %w", k.cfg.Bridge, err)
	}
	for _, p := range ports {
		a := p.link.Attrs()
		if a.MTU != k.cfg.MTU {
			if err := k.h.LinkSetMTU(p.link, k.cfg.MTU); err != nil {
				return fmt.Errorf("tunnel %s: set MTU %d: %w", a.Name, k.cfg.MTU, err)
			}
		}
		pi := info[a.Index]
		if v := pi[nl.IFLA_BRPORT_ISOLATED]; len(v) < 1 || v[0] != 1 {
			if err := k.h.LinkSetIsolated(p.link, true); err != nil {
				return fmt.Errorf("tunnel %s: set isolated: %w", a.Name, err)
			}
		}
		if v := pi[nl.IFLA_BRPORT_MULTICAST_ROUTER]; len(v) < 1 || v[0] != 0 {
			if err := k.setNoMulticastRouter(a.Index); err != nil {
				return fmt.Errorf("tunnel %s: set multicast_router 0: %w", a.Name, err)
			}
		}
		if a.Flags&net.FlagUp == 0 {
			if err := k.h.LinkSetUp(p.link); err != nil {
				return fmt.Errorf("tunnel %s: set up: %w", a.Name, err)
			}
		}
	}
	return nil
}
