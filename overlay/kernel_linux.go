package overlay

// The kernel dataplane: the original design of overlay multicast in a VPC,
// driven through netlink so that it can be compared with the userspace path
// on the same hosts.
//
//	app --UDP to 239.x--> bridge (holds the overlay address, IGMP snooping,
//	                      querier) --member ports only--> one tunnel port per
//	                      peer (gretap or VXLAN, isolated) --> underlay
//
// The bridge plays every role meshcast's userspace engine plays:
//
//   - Snooping. mcast_snooping is on and the bridge is its own querier
//     (IFLA_BR_MCAST_QUERIER). Queries carry the overlay address
//     (mcast_query_use_ifaddr), so the bridges of a community elect the one
//     with the lowest address and the others fall silent, as RFC 2236
//     section 3 asks.
//   - IGMPv3 queries (mcast_igmp_version 3). Hosts then answer with IGMPv3
//     reports, which go to 224.0.0.22 (link-local), so the bridge floods them
//     to every peer and every peer learns every member. An IGMPv2 report
//     would go to router ports only, and most peers would never learn of it.
//     MLDv2 (mcast_mld_version 2) for the same reason: its reports go to
//     ff02::16.
//   - No router ports (multicast_router 0 on each tunnel port). A bridge
//     would otherwise mark the port towards the elected querier as a router
//     port and send it every group, wanted or not.
//   - Split horizon. Each tunnel port is isolated (IFLA_BRPORT_ISOLATED): a
//     frame that came in from one peer never goes out to another. This is
//     what `ebtables -P FORWARD DROP` did in the original design; the bridge
//     still delivers it to the local host.
//
// A Linux bridge floods unregistered groups until its querier has been
// active for the query response interval (10 s by default): that is when it
// can trust its membership table. Setting KernelConfig.QueryInterval also
// shortens the response interval, and so that window.
//
// VXLAN comes in two shapes, because Linux refuses two VXLAN devices with
// the same VNI and destination port in one namespace: "pair" gives each peer
// its own device with a VNI computed by PairVNI, so the bridge can prune per
// peer; "hre" is a single device with the community VNI and head-end
// replication, which talks to meshcast's userspace VXLAN nodes but sends every
// wanted group to every peer.
//
// The underlay is IPv4 or IPv6, the family of KernelConfig.Local: see
// kernel6_linux.go for what changes over IPv6.

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VXLAN modes of the kernel dataplane (KernelConfig.VXLANMode).
const (
	VXLANModePair = "pair"
	VXLANModeHRE  = "hre"
)

// Name prefixes of the tunnel devices the kernel dataplane creates. A peer's
// device is the prefix followed by the 8 hex digits of its underlay IPv4
// address, or for an IPv6 peer by 12 hex digits of a hash of its address;
// the single head-end replication device is "mcvh" followed by the 6 hex
// digits of the community VNI.
const (
	KernelGretapPrefix = "mcg"
	KernelVXLANPrefix  = "mcv"
)

// ErrNoGretap is returned by the kernel dataplane in GRE mode when the
// kernel cannot create gretap devices. Over an IPv6 underlay it is
// ErrNoIP6Gretap, which is also ErrNoGretap.
var ErrNoGretap = errors.New("this kernel has no gretap (ip_gre module)")

// ErrInterfaceExists is returned by OpenTAP and OpenKernel when an
// interface of the name asked for exists already: perhaps another meshcast
// of the same community runs.
var ErrInterfaceExists = errors.New("an interface of that name already exists")

// ErrTAPBusy is returned by OpenTAP when another process holds a
// persistent TAP of that name.
var ErrTAPBusy = errors.New("the TAP is held by another process")

// UnderlayNotAssignedError is returned by OpenKernel and AdoptKernel when
// KernelConfig.Local is not assigned to any interface of the namespace.
type UnderlayNotAssignedError struct {
	Addr netip.Addr
}

func (e *UnderlayNotAssignedError) Error() string {
	return fmt.Sprintf("underlay address %v is not assigned to any interface", e.Addr)
}

// PairVNIError is returned by SetPeers in VXLAN pair mode when the tunnels
// to two peers would get the same VNI (see PairVNI): Linux cannot hold both
// devices, so pair mode cannot serve this set of peers with this community
// VNI. SetPeers then changes nothing.
type PairVNIError struct {
	Community uint32        // the community VNI
	Peers     [2]netip.Addr // the two peers' underlay addresses, ascending
	VNI       uint32        // the pair VNI both tunnels would get
}

func (e *PairVNIError) Error() string {
	return fmt.Sprintf("peers %v and %v get the same pair VNI %d with community VNI %d: their tunnels cannot both exist in VXLAN pair mode",
		e.Peers[0], e.Peers[1], e.VNI, e.Community)
}

// minQueryInterval is the shortest query interval the bridge accepts
// (BR_MULTICAST_QUERY_INTVL_MIN); it silently raises shorter ones.
const minQueryInterval = time.Second

// KernelConfig describes the kernel dataplane of a community.
type KernelConfig struct {
	// Bridge is the name of the bridge, at most MaxIfNameLen bytes, e.g.
	// mcbr-demo. OpenKernel refuses a name that is already taken.
	Bridge string
	// Overlay is the node's overlay address and prefix; the bridge holds it.
	Overlay netip.Prefix
	// Overlay6, if valid, is the node's IPv6 overlay address and prefix:
	// IPv6 is then on for the bridge, with this address and a link-local
	// one from the bridge's MAC (EUI-64), from which its MLD querier
	// queries. Without it IPv6 is off on the bridge.
	Overlay6 netip.Prefix
	// MAC is the bridge's MAC address; nil means MACFor(Overlay.Addr()),
	// the same as the userspace TAP, so ARP caches survive a switch.
	MAC net.HardwareAddr
	// MTU is the overlay MTU, set on the bridge and on every tunnel port;
	// 0 means the underlay interface's MTU minus the encapsulation overhead
	// over the underlay's family: over IPv4 38 bytes for GRE (42 with a
	// key) and 50 for VXLAN, over IPv6 58 (62) and 70.
	MTU int
	// Local is the node's underlay address, IPv4 or IPv6, the tunnels'
	// source. It must be assigned to an interface. Its family is the
	// underlay's: every tunnel is over IPv4, or every tunnel over IPv6
	// (VXLAN, or ip6gretap for GRE), and peers of the other family get
	// none (see SetPeers).
	Local netip.Addr
	// UnderlayIf is the underlay interface the tunnels are bound to; ""
	// means the interface that holds Local.
	UnderlayIf string
	// Encap is "gre" or "vxlan".
	Encap string
	// GREKey is the GRE key, used when HasGREKey is set.
	GREKey    uint32
	HasGREKey bool
	// VNI is the community's VXLAN network identifier, at most MaxVNI.
	VNI uint32
	// Port is the VXLAN destination UDP port; 0 means DefaultVXLANPort.
	Port uint16
	// VXLANMode is VXLANModePair ("" means pair) or VXLANModeHRE.
	//
	// In pair mode each peer has its own VXLAN device, whose VNI is
	// PairVNI(VNI, Local, peer): both ends compute the same, and it differs
	// from pair to pair, so the devices coexist and the bridge can prune per
	// peer. Only kernel-dataplane peers in pair mode understand it.
	//
	// In hre mode there is one VXLAN device with the community VNI and
	// head-end replication: one all-zero FDB entry per peer. It talks to
	// meshcast's userspace VXLAN nodes, but cannot prune per peer: a group
	// that one peer wants goes to every peer.
	VXLANMode string
	// QueryInterval is the bridge querier's query interval, at least 1 s;
	// 0 keeps the kernel's timers (125 s). When it is set, the other IGMP
	// timers are derived from it as RFC 2236 section 8 does with robustness
	// 2: response interval min(10 s, QueryInterval/2), startup query
	// interval QueryInterval/4 (at least 1 s), membership interval
	// 2*QueryInterval + response, other querier present 2*QueryInterval +
	// response/2.
	QueryInterval time.Duration
}

// KernelPeer is a peer of the kernel dataplane. Only Underlay, IPv4 or
// IPv6, decides the tunnel; Overlay and ID are for the caller's
// bookkeeping.
type KernelPeer struct {
	Underlay netip.Addr
	Overlay  netip.Prefix
	ID       string
}

// KernelPortStats are the counters of one tunnel port. Underlay is the
// peer's underlay address, IPv4 or IPv6 as the underlay is. In hre mode the
// single port carries every peer's traffic and Underlay is the zero Addr.
type KernelPortStats struct {
	Underlay                               netip.Addr
	Port                                   string
	TxPackets, RxPackets, TxBytes, RxBytes uint64
}

// Kernel is the kernel dataplane of one community: a Linux bridge and its
// tunnel ports. It works in the network namespace that OpenKernel (or
// AdoptKernel) was called in, from any goroutine. Its methods are safe for
// concurrent use.
type Kernel struct {
	cfg           KernelConfig // normalized
	underlayIndex int

	ns  netns.NsHandle
	h   *netlink.Handle
	raw map[int]*nl.SocketHandle // for requests the library cannot build

	mu          sync.Mutex
	closed      bool
	bridgeIndex int // 0 until the bridge exists
	hre         kernelPort
	peers       map[netip.Addr]kernelPort // hre: index and name are unset
}

type kernelPort struct {
	name  string
	index int
}

// probeGretap reports nil if this kernel can create gretap devices, and
// ErrNoGretap if it has none, by creating and deleting a gretap device with
// a unique name and key in h's network namespace.
func probeGretap(h *netlink.Handle) error {
	attrs, key := probeAttrs("p")
	// Local must be an IPv4 address, or the library asks for ip6gretap.
	// The key keeps the probe apart from gretap0, the keyless device that
	// ip_gre makes in every namespace: the kernel refuses a second tunnel
	// with the same addresses and key (EEXIST).
	probe := &netlink.Gretap{LinkAttrs: attrs, Local: net.IPv4zero.To4(), IKey: key, OKey: key}
	if err := h.LinkAdd(probe); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return ErrNoGretap
		case errors.Is(err, unix.EEXIST):
			// Only a kernel with gretap finds a gretap like it.
			return nil
		}
		return fmt.Errorf("probing for gretap: %w", err)
	}
	if err := h.LinkDel(probe); err != nil {
		return fmt.Errorf("probing for gretap: removing %s: %w", attrs.Name, err)
	}
	return nil
}

// probeAttrs returns the attributes of a probe device, named with the
// gretap prefix, mark and 8 random hex digits, and a random non-zero GRE
// key for it.
func probeAttrs(mark string) (netlink.LinkAttrs, uint32) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	attrs := netlink.NewLinkAttrs()
	attrs.Name = KernelGretapPrefix + mark + hex.EncodeToString(b[:])
	return attrs, binary.BigEndian.Uint32(b[:]) | 1
}

// PairVNI returns the VNI of the VXLAN tunnel between the underlay
// addresses a and b in a community with VNI community: FNV-1a (32 bits) over
// the community VNI (4 bytes, big endian) and the two addresses (16 bytes
// each, IPv4 as IPv4-mapped IPv6), the smaller first, reduced modulo
// 2^24-1 and plus one. It is symmetric, PairVNI(c, a, b) == PairVNI(c, b, a),
// so both ends agree without talking, and always in 1..2^24-1. Different
// pairs get different VNIs except by chance: among n peers of one node, two
// collide with probability about n²/2^25, and SetPeers reports it.
func PairVNI(community uint32, a, b netip.Addr) uint32 {
	x, y := a.As16(), b.As16()
	if slices.Compare(x[:], y[:]) > 0 {
		x, y = y, x
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], community)
	h := fnv32a(fnv32a(fnv32a(fnvOffset32, c[:]), x[:]), y[:])
	return h%MaxVNI + 1
}

// kernelPortName returns the name of the tunnel device to peer, an IPv4 or
// IPv6 address (see kernelPortName6).
func kernelPortName(encap string, peer netip.Addr) string {
	prefix := KernelVXLANPrefix
	if encap == "gre" {
		prefix = KernelGretapPrefix
	}
	if !peer.Is4() {
		return kernelPortName6(prefix, peer)
	}
	a := peer.As4()
	return prefix + hex.EncodeToString(a[:])
}

// hreName returns the name of the head-end replication device.
func hreName(vni uint32) string { return fmt.Sprintf("%sh%06x", KernelVXLANPrefix, vni) }

// normalize checks cfg and fills in the defaults that need no system state.
func (cfg KernelConfig) normalize() (KernelConfig, error) {
	if err := ValidIfName(cfg.Bridge); err != nil {
		return cfg, fmt.Errorf("bridge: %w", err)
	}
	if !cfg.Overlay.IsValid() || !cfg.Overlay.Addr().Is4() {
		return cfg, fmt.Errorf("overlay address %v is not IPv4", cfg.Overlay)
	}
	if cfg.Overlay6.IsValid() && (!cfg.Overlay6.Addr().Is6() || cfg.Overlay6.Addr().Is4In6()) {
		return cfg, fmt.Errorf("IPv6 overlay address %v is not IPv6", cfg.Overlay6)
	}
	if cfg.MAC == nil {
		cfg.MAC = MACFor(cfg.Overlay.Addr())
	} else if len(cfg.MAC) != 6 {
		return cfg, fmt.Errorf("bridge MAC %v is not an Ethernet address", cfg.MAC)
	}
	cfg.Local = underlayAddr(cfg.Local)
	if !cfg.Local.IsValid() || cfg.Local.IsUnspecified() || cfg.Local.IsMulticast() {
		return cfg, fmt.Errorf("underlay address %v is not a unicast IPv4 or IPv6 address", cfg.Local)
	}
	if cfg.UnderlayIf != "" {
		if err := ValidIfName(cfg.UnderlayIf); err != nil {
			return cfg, fmt.Errorf("underlay interface: %w", err)
		}
	}
	if cfg.MTU < 0 || cfg.MTU > 0 && cfg.MTU < 68 {
		return cfg, fmt.Errorf("overlay MTU %d is below the IPv4 minimum of 68", cfg.MTU)
	}
	switch cfg.Encap {
	case "gre":
	case "vxlan":
		if cfg.VNI > MaxVNI {
			return cfg, fmt.Errorf("VNI %d is above %d", cfg.VNI, MaxVNI)
		}
		if cfg.Port == 0 {
			cfg.Port = DefaultVXLANPort
		}
		switch cfg.VXLANMode {
		case "":
			cfg.VXLANMode = VXLANModePair
		case VXLANModePair, VXLANModeHRE:
		default:
			return cfg, fmt.Errorf("VXLAN mode %q: use %q or %q", cfg.VXLANMode, VXLANModePair, VXLANModeHRE)
		}
	default:
		return cfg, fmt.Errorf("encapsulation %q: use gre or vxlan", cfg.Encap)
	}
	if cfg.QueryInterval != 0 && cfg.QueryInterval < minQueryInterval {
		return cfg, fmt.Errorf("query interval %v is below the bridge's minimum of %v", cfg.QueryInterval, minQueryInterval)
	}
	return cfg, nil
}

// overhead is what the underlay carries per frame beyond the inner IP
// packet, as Codec.Overhead, over the family of Local: an outer IPv6
// header is 20 bytes longer than IPv4's.
func (cfg KernelConfig) overhead() int {
	var n int
	if cfg.Encap == "gre" {
		n = NewGRE(cfg.GREKey, cfg.HasGREKey).Overhead()
	} else {
		n = NewVXLAN(cfg.VNI, cfg.Port).Overhead()
	}
	if cfg.Local.Is6() {
		n += outerIPv6Len - IPv4HeaderLen
	}
	return n
}

// OpenKernel builds the kernel dataplane in the calling thread's network
// namespace: the bridge, with IGMP snooping and its own querier, the MAC
// address, MTU and overlay address, up; in hre mode also the one VXLAN
// device. It has no peers yet: call SetPeers. IPv6 is disabled on the
// bridge, as on the TAP. It refuses a bridge name that is already taken
// (ErrInterfaceExists; AdoptKernel takes over a bridge that a previous
// meshcast left with Release), and in GRE mode it returns ErrNoGretap if the
// kernel has no gretap, or over an IPv6 underlay ErrNoIP6Gretap if it has no
// ip6gretap. On error it removes whatever it created.
func OpenKernel(cfg KernelConfig) (*Kernel, error) { return openKernel(cfg, true) }

// openKernel is OpenKernel; probe false skips the gretap or ip6gretap
// probe, for tests.
func openKernel(cfg KernelConfig, probe bool) (_ *Kernel, err error) {
	// Stay on this thread: it is in the namespace the caller means, and
	// /proc/sys/net below shows the namespace of the thread that opens it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	k, err := newKernel(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	if _, err := k.h.LinkByName(k.cfg.Bridge); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrInterfaceExists, k.cfg.Bridge)
	}
	if err := k.findUnderlay(); err != nil {
		return nil, err
	}
	if k.cfg.Encap == "gre" && probe {
		if err := k.cfg.probeGRE(k.h); err != nil {
			return nil, err
		}
	}
	if err := k.createBridge(); err != nil {
		return nil, err
	}
	if k.hreMode() {
		if err := k.createHRE(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// newKernel normalizes cfg and returns a Kernel for it with its netlink
// sockets open in the calling thread's network namespace, and nothing
// else. The caller keeps the thread locked. On error it has released what
// it opened.
func newKernel(cfg KernelConfig) (_ *Kernel, err error) {
	cfg, err = cfg.normalize()
	if err != nil {
		return nil, err
	}
	k := &Kernel{cfg: cfg, ns: netns.None(), peers: map[netip.Addr]kernelPort{}}
	defer func() {
		if err != nil {
			k.closeHandles()
		}
	}()
	if k.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("kernel dataplane: current network namespace: %w", err)
	}
	if k.h, err = netlink.NewHandleAt(k.ns, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("kernel dataplane: netlink: %w", err)
	}
	sock, err := nl.GetNetlinkSocketAt(k.ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("kernel dataplane: netlink: %w", err)
	}
	k.raw = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	return k, nil
}

// findUnderlay checks that Local is assigned here, finds the underlay
// interface and derives the MTU.
func (k *Kernel) findUnderlay() error {
	family := netlink.FAMILY_V4
	if k.cfg.Local.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := k.h.AddrList(nil, family)
	if err != nil {
		return fmt.Errorf("kernel dataplane: list addresses: %w", err)
	}
	holder := 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == k.cfg.Local {
			holder = a.LinkIndex
			break
		}
	}
	if holder == 0 {
		return &UnderlayNotAssignedError{Addr: k.cfg.Local}
	}
	var link netlink.Link
	if k.cfg.UnderlayIf == "" {
		link, err = k.h.LinkByIndex(holder)
	} else {
		link, err = k.h.LinkByName(k.cfg.UnderlayIf)
	}
	if err != nil {
		return fmt.Errorf("underlay interface %s: %w", k.cfg.UnderlayIf, err)
	}
	k.cfg.UnderlayIf = link.Attrs().Name
	k.underlayIndex = link.Attrs().Index
	if k.cfg.MTU == 0 {
		k.cfg.MTU = link.Attrs().MTU - k.cfg.overhead()
		if k.cfg.MTU < 68 {
			return fmt.Errorf("underlay interface %s has MTU %d, too small for %s over %s", k.cfg.UnderlayIf, link.Attrs().MTU, k.cfg.Encap, familyName(k.cfg.Local))
		}
	}
	return nil
}

// centiseconds converts d to the clock_t unit (USER_HZ, 100 per second) in
// which the bridge takes its multicast timers.
func centiseconds(d time.Duration) uint64 { return uint64(d / (10 * time.Millisecond)) }

func (k *Kernel) createBridge() error {
	cfg := k.cfg
	attrs := netlink.NewLinkAttrs()
	attrs.Name = cfg.Bridge
	attrs.MTU = cfg.MTU
	attrs.HardwareAddr = cfg.MAC
	on := true
	br := &netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &on}
	if err := k.h.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s: create: %w", cfg.Bridge, err)
	}
	link, err := k.h.LinkByName(cfg.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", cfg.Bridge, err)
	}
	k.bridgeIndex = link.Attrs().Index

	// The library's Bridge type has none of the querier settings: set them
	// with an RTM_NEWLINK request of our own.
	settings := cfg.bridgeSettings()
	if cfg.QueryInterval > 0 {
		settings = append(settings, cfg.bridgeTimers()...)
	}
	if err := k.changeBridge(settings...); err != nil {
		return fmt.Errorf("bridge %s: multicast settings: %w", cfg.Bridge, err)
	}
	if err := k.setIPv6(); err != nil {
		return err
	}
	// Set the MTU once more as a change, so that the bridge keeps it rather
	// than following its ports' MTU.
	if err := k.h.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("bridge %s: set MTU %d: %w", cfg.Bridge, cfg.MTU, err)
	}
	if err := k.addOverlayAddr(link); err != nil {
		return err
	}
	if err := k.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", cfg.Bridge, err)
	}
	// The querier last, in a request of its own: enabling it arms the
	// delay after which the bridge trusts its table, with the response
	// interval in force at that moment.
	if err := k.changeBridge(querierOn); err != nil {
		return fmt.Errorf("bridge %s: enable the IGMP querier: %w", cfg.Bridge, err)
	}
	return nil
}

// setIPv6 turns IPv6 on for the bridge with an IPv6 overlay address, and
// off without one. Netlink cannot switch IPv6 on a device (the kernel only
// accepts IFLA_INET6_TOKEN and IFLA_INET6_ADDR_GEN_MODE), so this is the
// one file written. A kernel without IPv6 has no such file: off is what
// it is, and an IPv6 overlay address is then an error.
func (k *Kernel) setIPv6() error {
	v := []byte("1")
	if k.cfg.Overlay6.IsValid() {
		v = []byte("0")
	}
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k.cfg.Bridge+"/disable_ipv6", v, 0)
	if err != nil && (k.cfg.Overlay6.IsValid() || !errors.Is(err, os.ErrNotExist)) {
		return fmt.Errorf("bridge %s: set disable_ipv6 %s: %w", k.cfg.Bridge, v, err)
	}
	return nil
}

// addOverlayAddr gives the bridge br the overlay address, and the IPv6 one
// if there is one.
func (k *Kernel) addOverlayAddr(br netlink.Link) error {
	for _, p := range []netip.Prefix{k.cfg.Overlay, k.cfg.Overlay6} {
		if err := k.addAddr(br, p); err != nil {
			return err
		}
	}
	return nil
}

// addAddr gives the bridge br the address p, if valid; one it has already
// stays.
func (k *Kernel) addAddr(br netlink.Link, p netip.Prefix) error {
	if !p.IsValid() {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := k.h.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("bridge %s: add address %v: %w", k.cfg.Bridge, p, err)
	}
	return nil
}

// bridgeSetting is one IFLA_BR_* attribute of the bridge that the kernel
// dataplane sets: a u8, or a timer (u64, in centiseconds).
type bridgeSetting struct {
	typ   int
	value uint64
	timer bool
}

func (st bridgeSetting) attr() []byte {
	if st.timer {
		return nl.Uint64Attr(st.value)
	}
	return nl.Uint8Attr(uint8(st.value))
}

// matches reports whether v, the attribute as the kernel reports it, has
// the value st sets. A timer passes through jiffies, so it may come back a
// centisecond or two off.
func (st bridgeSetting) matches(v []byte) bool {
	if !st.timer {
		return len(v) >= 1 && uint64(v[0]) == st.value
	}
	if len(v) < 8 {
		return false
	}
	got := binary.NativeEndian.Uint64(v)
	return max(got, st.value)-min(got, st.value) <= 2
}

// querierOn switches the bridge's IGMP querier on; the kernel dataplane
// sets it last (see createBridge).
var querierOn = bridgeSetting{typ: nl.IFLA_BR_MCAST_QUERIER, value: 1}

// bridgeSettings are the multicast settings of the bridge, but for the
// querier switch and the timers: queries from the overlay address, IGMPv3,
// and MLDv2, so that the bridge snoops IPv6 groups per source as meshcast
// does.
func (cfg KernelConfig) bridgeSettings() []bridgeSetting {
	return []bridgeSetting{
		{typ: nl.IFLA_BR_MCAST_QUERY_USE_IFADDR, value: 1},
		{typ: nl.IFLA_BR_MCAST_IGMP_VERSION, value: 3},
		{typ: nl.IFLA_BR_MCAST_MLD_VERSION, value: 2},
	}
}

// The bridge's own IGMP timers, which a QueryInterval of 0 keeps.
const (
	bridgeQueryInterval      = 125 * time.Second
	bridgeResponseInterval   = 10 * time.Second
	bridgeStartupInterval    = bridgeQueryInterval / 4
	bridgeMembershipInterval = 260 * time.Second
	bridgeQuerierInterval    = 255 * time.Second
)

// bridgeTimers are the bridge's IGMP timers for QueryInterval, as
// KernelConfig.QueryInterval describes; for 0, the bridge's own.
func (cfg KernelConfig) bridgeTimers() []bridgeSetting {
	timer := func(typ int, d time.Duration) bridgeSetting {
		return bridgeSetting{typ: typ, value: centiseconds(d), timer: true}
	}
	qi := cfg.QueryInterval
	if qi == 0 {
		return []bridgeSetting{
			timer(nl.IFLA_BR_MCAST_QUERY_INTVL, bridgeQueryInterval),
			timer(nl.IFLA_BR_MCAST_QUERY_RESPONSE_INTVL, bridgeResponseInterval),
			timer(nl.IFLA_BR_MCAST_STARTUP_QUERY_INTVL, bridgeStartupInterval),
			timer(nl.IFLA_BR_MCAST_MEMBERSHIP_INTVL, bridgeMembershipInterval),
			timer(nl.IFLA_BR_MCAST_QUERIER_INTVL, bridgeQuerierInterval),
		}
	}
	resp := min(10*time.Second, qi/2)
	return []bridgeSetting{
		timer(nl.IFLA_BR_MCAST_QUERY_INTVL, qi),
		timer(nl.IFLA_BR_MCAST_QUERY_RESPONSE_INTVL, resp),
		timer(nl.IFLA_BR_MCAST_STARTUP_QUERY_INTVL, max(minQueryInterval, qi/4)),
		timer(nl.IFLA_BR_MCAST_MEMBERSHIP_INTVL, 2*qi+resp),
		timer(nl.IFLA_BR_MCAST_QUERIER_INTVL, 2*qi+resp/2),
	}
}

func (k *Kernel) createHRE() error {
	name := hreName(k.cfg.VNI)
	index, err := k.addTunnel(name, k.linkAdder(func(attrs netlink.LinkAttrs) netlink.Link {
		return &netlink.Vxlan{
			LinkAttrs:    attrs,
			VxlanId:      int(k.cfg.VNI),
			VtepDevIndex: k.underlayIndex,
			SrcAddr:      k.cfg.Local.AsSlice(), // IPv6: IFLA_VXLAN_LOCAL6
			Port:         int(k.cfg.Port),
			Learning:     false,
			// Over IPv6, UDP checksums sent and required (the library
			// always sends these two).
			UDP6ZeroCSumTx: false,
			UDP6ZeroCSumRx: false,
		}
	}))
	if err != nil {
		return err
	}
	k.hre = kernelPort{name: name, index: index}
	return nil
}

// linkAdder returns a function that creates the device that build
// describes, for addTunnel.
func (k *Kernel) linkAdder(build func(netlink.LinkAttrs) netlink.Link) func(netlink.LinkAttrs) error {
	return func(attrs netlink.LinkAttrs) error { return k.h.LinkAdd(build(attrs)) }
}

// addTunnel creates the tunnel device name with create, which is given its
// name and MTU, makes it an isolated bridge port without router role, and
// brings it up. It returns the device's index. On error it deletes the
// device.
func (k *Kernel) addTunnel(name string, create func(netlink.LinkAttrs) error) (index int, err error) {
	if _, err := k.h.LinkByName(name); err == nil {
		return 0, fmt.Errorf("tunnel %s: an interface of that name already exists: is another meshcast using the kernel dataplane here?", name)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = k.cfg.MTU
	if err := create(attrs); err != nil {
		if k.cfg.Encap == "gre" && errors.Is(err, unix.EOPNOTSUPP) {
			return 0, k.cfg.noGretap()
		}
		if errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("tunnel %s: %w (another device may use the same VNI and port)", name, err)
		}
		return 0, fmt.Errorf("tunnel %s: create: %w", name, err)
	}
	created, err := k.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("tunnel %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = k.h.LinkDel(created)
		}
	}()
	// Without a link-local address the port sends no IPv6 of its own
	// (no DAD, router solicitation or MLD report) to the peer. A kernel
	// without IPv6 refuses the setting, which is fine.
	_ = k.h.LinkSetIP6AddrGenMode(created, nl.IN6_ADDR_GEN_MODE_NONE)
	if err := k.h.LinkSetMasterByIndex(created, k.bridgeIndex); err != nil {
		return 0, fmt.Errorf("tunnel %s: add to bridge %s: %w", name, k.cfg.Bridge, err)
	}
	if err := k.h.LinkSetIsolated(created, true); err != nil {
		// Without isolation a peer's frames would be sent on to the
		// others: the mesh would loop.
		return 0, fmt.Errorf("tunnel %s: set isolated (bridge port isolation needs Linux 4.18; this is %s): %w",
			name, KernelRelease(), err)
	}
	if err := k.setNoMulticastRouter(created.Attrs().Index); err != nil {
		return 0, fmt.Errorf("tunnel %s: set multicast_router 0: %w", name, err)
	}
	if err := k.h.LinkSetUp(created); err != nil {
		return 0, fmt.Errorf("tunnel %s: set up: %w", name, err)
	}
	return created.Attrs().Index, nil
}

// SetPeers makes the tunnels match peers: it creates a tunnel port for each
// new peer (hre: an FDB entry) and removes those of peers that are gone,
// while the bridge keeps forwarding. Ports of unchanged peers are not
// touched. Entries for Local itself are ignored. A peer whose underlay
// address is of the other family than Local gets no tunnel: the error holds
// a *PeerFamilyError for it, and the other peers are served. A peer without
// a unicast underlay address makes SetPeers change nothing. It returns the
// underlay addresses added and removed, in ascending order; on error they
// say what was done nonetheless, and the error says what was not.
func (k *Kernel) SetPeers(peers []KernelPeer) (added, removed []netip.Addr, err error) {
	want := map[netip.Addr]bool{}
	var errs []error
	for _, p := range peers {
		a := underlayAddr(p.Underlay)
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return nil, nil, fmt.Errorf("peer %s: underlay address %v is not a unicast IPv4 or IPv6 address", p.ID, p.Underlay)
		}
		if !sameFamily(a, k.cfg.Local) {
			errs = append(errs, &PeerFamilyError{ID: p.ID, Peer: a, Local: k.cfg.Local})
			continue
		}
		if a != k.cfg.Local {
			want[a] = true
		}
	}
	if k.pairMode() {
		vnis := map[uint32]netip.Addr{}
		for _, a := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
			vni := PairVNI(k.cfg.VNI, k.cfg.Local, a)
			if b, ok := vnis[vni]; ok {
				return nil, nil, &PairVNIError{Community: k.cfg.VNI, Peers: [2]netip.Addr{b, a}, VNI: vni}
			}
			vnis[vni] = a
		}
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, nil, errors.New("kernel dataplane is closed")
	}
	for _, a := range slices.SortedFunc(maps.Keys(k.peers), netip.Addr.Compare) {
		if want[a] {
			continue
		}
		if err := k.removePeer(a, k.peers[a]); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(k.peers, a)
		removed = append(removed, a)
	}
	for _, a := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		if _, ok := k.peers[a]; ok {
			continue
		}
		port, err := k.addPeer(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.peers[a] = port
		added = append(added, a)
	}
	return added, removed, errors.Join(errs...)
}

func (k *Kernel) pairMode() bool { return k.cfg.Encap == "vxlan" && k.cfg.VXLANMode == VXLANModePair }
func (k *Kernel) hreMode() bool  { return k.cfg.Encap == "vxlan" && k.cfg.VXLANMode == VXLANModeHRE }

// hreEntry is the all-zero FDB entry that sends BUM traffic and unknown
// unicast of the hre device to peer.
func (k *Kernel) hreEntry(peer netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    k.hre.index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		Flags:        netlink.NTF_SELF,
		HardwareAddr: make(net.HardwareAddr, 6),
		IP:           peer.AsSlice(),
	}
}

func (k *Kernel) addPeer(peer netip.Addr) (kernelPort, error) {
	if k.hreMode() {
		if err := k.h.NeighAppend(k.hreEntry(peer)); err != nil {
			return kernelPort{}, fmt.Errorf("peer %v: add FDB entry on %s: %w", peer, k.hre.name, err)
		}
		return kernelPort{}, nil
	}
	name := kernelPortName(k.cfg.Encap, peer)
	var create func(netlink.LinkAttrs) error
	switch {
	case k.cfg.Encap == "gre" && k.cfg.Local.Is6():
		create = func(attrs netlink.LinkAttrs) error { return k.addIP6Gretap(attrs, peer) }
	case k.cfg.Encap == "gre":
		create = k.linkAdder(func(attrs netlink.LinkAttrs) netlink.Link {
			g := &netlink.Gretap{
				LinkAttrs: attrs,
				Local:     k.cfg.Local.AsSlice(),
				Remote:    peer.AsSlice(),
				PMtuDisc:  1,
				Link:      uint32(k.underlayIndex),
			}
			if k.cfg.HasGREKey {
				g.IKey, g.OKey = k.cfg.GREKey, k.cfg.GREKey
				g.IFlags, g.OFlags = nl.GRE_KEY, nl.GRE_KEY // also for key 0
			}
			return g
		})
	default:
		create = k.linkAdder(func(attrs netlink.LinkAttrs) netlink.Link {
			return &netlink.Vxlan{
				LinkAttrs:    attrs,
				VxlanId:      int(PairVNI(k.cfg.VNI, k.cfg.Local, peer)),
				VtepDevIndex: k.underlayIndex,
				SrcAddr:      k.cfg.Local.AsSlice(), // IPv6: IFLA_VXLAN_LOCAL6
				Group:        peer.AsSlice(),        // a unicast group is the remote
				Port:         int(k.cfg.Port),
				Learning:     false,
				// As in createHRE.
				UDP6ZeroCSumTx: false,
				UDP6ZeroCSumRx: false,
			}
		})
	}
	index, err := k.addTunnel(name, create)
	if err != nil {
		return kernelPort{}, fmt.Errorf("peer %v: %w", peer, err)
	}
	return kernelPort{name: name, index: index}, nil
}

func (k *Kernel) removePeer(peer netip.Addr, port kernelPort) error {
	if k.hreMode() {
		err := k.h.NeighDel(k.hreEntry(peer))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("peer %v: delete FDB entry on %s: %w", peer, k.hre.name, err)
		}
		return nil
	}
	if err := k.deleteLink(port.index); err != nil {
		return fmt.Errorf("peer %v: delete %s: %w", peer, port.name, err)
	}
	return nil
}

// deleteLink deletes the device index; one that is already gone is fine.
func (k *Kernel) deleteLink(index int) error {
	err := k.h.LinkDel(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}})
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

// Ports returns the counters of the tunnel ports, one per peer in ascending
// order of underlay address; in hre mode, one entry for the single device.
// It returns nil once the Kernel is closed.
func (k *Kernel) Ports() []KernelPortStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	if k.hreMode() {
		return []KernelPortStats{k.stats(netip.Addr{}, k.hre)}
	}
	ports := make([]KernelPortStats, 0, len(k.peers))
	for a, p := range k.peers {
		ports = append(ports, k.stats(a, p))
	}
	slices.SortFunc(ports, func(x, y KernelPortStats) int { return x.Underlay.Compare(y.Underlay) })
	return ports
}

func (k *Kernel) stats(peer netip.Addr, port kernelPort) KernelPortStats {
	st := KernelPortStats{Underlay: peer, Port: port.name}
	link, err := k.h.LinkByIndex(port.index)
	if err != nil || link.Attrs().Statistics == nil {
		return st
	}
	s := link.Attrs().Statistics
	st.TxPackets, st.RxPackets, st.TxBytes, st.RxBytes = s.TxPackets, s.RxPackets, s.TxBytes, s.RxBytes
	return st
}

// Bridge returns the bridge's name.
func (k *Kernel) Bridge() string { return k.cfg.Bridge }

// MTU returns the overlay MTU of the bridge and its ports.
func (k *Kernel) MTU() int { return k.cfg.MTU }

// Peers returns the underlay addresses of the peers the Kernel has a
// tunnel to (hre: an FDB entry for), in ascending order. It returns nil
// once the Kernel is closed or released.
func (k *Kernel) Peers() []netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	return slices.SortedFunc(maps.Keys(k.peers), netip.Addr.Compare)
}

// Close deletes every device the Kernel created or adopted, the bridge
// last, and releases its netlink sockets. Later calls, and Close after
// Release, do nothing and return nil.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	var errs []error
	if k.h != nil {
		for a, p := range k.peers {
			if p.index == 0 {
				continue // an FDB entry of the hre device
			}
			if err := k.deleteLink(p.index); err != nil {
				errs = append(errs, fmt.Errorf("peer %v: delete %s: %w", a, p.name, err))
			}
		}
		if k.hre.index != 0 {
			if err := k.deleteLink(k.hre.index); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", k.hre.name, err))
			}
		}
		if k.bridgeIndex != 0 {
			if err := k.deleteLink(k.bridgeIndex); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w", k.cfg.Bridge, err))
			}
		}
	}
	k.closeHandles()
	k.peers = nil
	return errors.Join(errs...)
}

// closeHandles closes the netlink sockets and the namespace handle.
func (k *Kernel) closeHandles() {
	if k.h != nil {
		k.h.Close()
		k.h = nil
	}
	for _, s := range k.raw {
		s.Close()
	}
	k.raw = nil
	if k.ns.IsOpen() {
		k.ns.Close()
	}
	k.ns = netns.None()
}
