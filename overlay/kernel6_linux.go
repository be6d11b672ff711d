package overlay

// The kernel dataplane over an IPv6 underlay. When KernelConfig.Local is an
// IPv6 address, every tunnel is IPv6 too:
//
//   - VXLAN devices, per pair and for head-end replication, have an IPv6
//     local address (IFLA_VXLAN_LOCAL6) and an IPv6 remote (IFLA_VXLAN_GROUP6)
//     or IPv6 FDB destinations. udp6zerocsumtx and udp6zerocsumrx are off,
//     as they are by default, and set so explicitly: the kernel computes the
//     UDP checksum on every packet it sends and requires one on every packet
//     it takes, as meshcast's userspace VXLAN over IPv6 does (RFC 6935 and
//     6936 allow a zero checksum only in narrow cases).
//   - GRE ports are ip6gretap devices, where the kernel has the ip6_gre
//     module: the same GRE header and key as gretap, over IPv6. They carry no
//     tunnel encapsulation limit option (IP6_TNL_F_IGN_ENCAP_LIMIT): Linux
//     would otherwise add an 8-byte destination options header to every
//     packet, which neither the MTU below nor meshcast's userspace GRE over
//     IPv6 expects. Without ip6_gre, OpenKernel returns ErrNoIP6Gretap, as it
//     returns ErrNoGretap for gretap.
//   - The outer header is 40 bytes instead of 20: VXLAN costs 70 bytes
//     (40 IPv6 + 8 UDP + 8 VXLAN + 14 Ethernet), GRE 58, or 62 with a key.
//
// One dataplane tunnels over one family: a peer whose underlay address is
// of the other family gets no tunnel, and SetPeers reports it with a
// *PeerFamilyError while it serves the others.

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ErrNoIP6Gretap is returned by the kernel dataplane in GRE mode over an
// IPv6 underlay when the kernel cannot create ip6gretap devices. It is also
// ErrNoGretap (errors.Is), so whatever handles a kernel without gretap
// handles it too.
var ErrNoIP6Gretap error = &noIP6GretapError{}

type noIP6GretapError struct{}

func (*noIP6GretapError) Error() string { return "this kernel has no ip6gretap (ip6_gre module)" }

// Is reports whether target is ErrNoGretap.
func (*noIP6GretapError) Is(target error) bool { return target == ErrNoGretap }

// PeerFamilyError is part of SetPeers' error for each peer whose underlay
// address is not of the family of the node's own (KernelConfig.Local): an
// IPv4 peer of a node with an IPv6 underlay address, or the reverse. The
// kernel dataplane tunnels over one family, so that peer gets no tunnel;
// SetPeers serves the other peers all the same.
type PeerFamilyError struct {
	ID    string     // the peer's KernelPeer.ID
	Peer  netip.Addr // the peer's underlay address
	Local netip.Addr // this node's underlay address
}

func (e *PeerFamilyError) Error() string {
	return fmt.Sprintf("peer %s: underlay address %v is %s, this node's (%v) is %s: the kernel dataplane tunnels over one address family, so this peer is left out",
		e.ID, e.Peer, familyName(e.Peer), e.Local, familyName(e.Local))
}

// familyName returns "IPv4" or "IPv6" for a, an unmapped address.
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// outerIPv6Len is the length of the outer IPv6 header of a tunnel packet:
// no extension headers, none of them.
const outerIPv6Len = 40

// ip6TnlIgnEncapLimit is IP6_TNL_F_IGN_ENCAP_LIMIT, the IFLA_GRE_FLAGS bit
// of an ip6gretap device that leaves out the tunnel encapsulation limit
// option.
const ip6TnlIgnEncapLimit = 0x1

// ip6gretapHopLimit is the hop limit of the packets of an ip6gretap port,
// iproute2's default. With 0 the kernel would copy the inner packet's TTL,
// which is 1 for most multicast.
const ip6gretapHopLimit = 64

// underlayAddr returns a as the kernel dataplane keeps an underlay address:
// IPv4-mapped IPv6 addresses as IPv4, without a zone.
func underlayAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// sameFamily reports whether a and b, both unmapped, are of one family.
func sameFamily(a, b netip.Addr) bool { return a.Is4() == b.Is4() }

// kernelPortName6 returns the name of the tunnel device to the IPv6 peer:
// prefix and 12 hex digits, the high 48 bits of FNV-1a (64 bits) over the
// 16 bytes of the address. An IPv6 address has no room in an interface name,
// and a hash keeps peers apart that differ anywhere in their addresses. The
// names are 15 bytes long, those of IPv4 peers 11, and both are hex after
// the prefix, so neither is ever the name of the head-end replication
// device. AdoptKernel recognises a port by this name, so it never changes.
// Two of n peers share a name with probability about n²/2^49; SetPeers then
// refuses the second, as it refuses a name that is taken.
func kernelPortName6(prefix string, peer netip.Addr) string {
	h := fnv.New64a()
	a := peer.As16()
	h.Write(a[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	return prefix + hex.EncodeToString(b[:6])
}

// probeIP6Gretap reports nil if this kernel can create ip6gretap devices,
// and ErrNoIP6Gretap if it has none, by creating and deleting an ip6gretap
// device with a unique name in h's network namespace.
func probeIP6Gretap(h *netlink.Handle) error {
	attrs, key := probeAttrs("q")
	// An IPv6 Local makes the library ask for ip6gretap; the key keeps
	// the probe apart from any keyless ip6gretap, as in probeGretap.
	probe := &netlink.Gretap{LinkAttrs: attrs, Local: net.IPv6unspecified, IKey: key, OKey: key}
	if err := h.LinkAdd(probe); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return ErrNoIP6Gretap
		case errors.Is(err, unix.EEXIST):
			return nil // only a kernel with ip6gretap finds one like it
		}
		return fmt.Errorf("probing for ip6gretap: %w", err)
	}
	if err := h.LinkDel(probe); err != nil {
		return fmt.Errorf("probing for ip6gretap: removing %s: %w", attrs.Name, err)
	}
	return nil
}

// noGretap returns the error for a kernel without the GRE tunnels of the
// configured underlay family.
func (cfg KernelConfig) noGretap() error {
	if cfg.Local.Is6() {
		return ErrNoIP6Gretap
	}
	return ErrNoGretap
}

// probeGRE probes for the GRE tunnels of the configured underlay family.
func (cfg KernelConfig) probeGRE(h *netlink.Handle) error {
	if cfg.Local.Is6() {
		return probeIP6Gretap(h)
	}
	return probeGretap(h)
}

// addIP6Gretap creates the ip6gretap port to peer, named and sized as
// attrs says. The library's Gretap has no IFLA_GRE_FLAGS, which the port
// needs (see ip6TnlIgnEncapLimit), so the request is built here, as `ip
// link add NAME type ip6gretap local LOCAL remote PEER dev UNDERLAY
// encaplimit none hoplimit 64 [key KEY]` would.
func (k *Kernel) addIP6Gretap(attrs netlink.LinkAttrs, peer netip.Addr) error {
	req := k.request(unix.RTM_NEWLINK)
	req.Flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(attrs.Name)))
	if attrs.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(attrs.MTU))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("ip6gretap"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	local, remote := k.cfg.Local.As16(), peer.As16()
	data.AddRtAttr(nl.IFLA_GRE_LOCAL, local[:])
	data.AddRtAttr(nl.IFLA_GRE_REMOTE, remote[:])
	data.AddRtAttr(nl.IFLA_GRE_LINK, nl.Uint32Attr(uint32(k.underlayIndex)))
	data.AddRtAttr(nl.IFLA_GRE_TTL, nl.Uint8Attr(ip6gretapHopLimit))
	data.AddRtAttr(nl.IFLA_GRE_FLAGS, nl.Uint32Attr(ip6TnlIgnEncapLimit))
	var flags uint16
	if k.cfg.HasGREKey {
		flags = nl.GRE_KEY // also for key 0
		key := binary.BigEndian.AppendUint32(nil, k.cfg.GREKey)
		data.AddRtAttr(nl.IFLA_GRE_IKEY, key)
		data.AddRtAttr(nl.IFLA_GRE_OKEY, key)
	}
	data.AddRtAttr(nl.IFLA_GRE_IFLAGS, binary.BigEndian.AppendUint16(nil, flags))
	data.AddRtAttr(nl.IFLA_GRE_OFLAGS, binary.BigEndian.AppendUint16(nil, flags))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
