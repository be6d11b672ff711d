package overlay

// The netlink messages of the kernel dataplane that the netlink library
// cannot build or read, sent on the Kernel's own socket (Kernel.raw), and
// the retry of a dump that a change interrupted.

import (
	"errors"
	"maps"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// dumpAttempts is how many times a dump is made before an interruption by
// a change is returned as its error.
const dumpAttempts = 5

// retryDump returns what dump returns, calling it again, up to dumpAttempts
// times in all, while a change interrupts it (nl.ErrDumpInterrupted, which
// is also netlink.ErrDumpInterrupted).
func retryDump[T any](dump func() (T, error)) (v T, err error) {
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

// request returns an acknowledged request on the Kernel's own socket.
func (k *Kernel) request(typ uint16) *nl.NetlinkRequest {
	return &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  typ,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: k.raw,
	}
}

// changeBridge sends an RTM_NEWLINK for the existing bridge that sets
// settings, in their order, as `ip link set BRIDGE type bridge ...`.
func (k *Kernel) changeBridge(settings ...bridgeSetting) error {
	req := k.request(unix.RTM_NEWLINK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(k.bridgeIndex)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	for _, st := range settings {
		data.AddRtAttr(st.typ, st.attr())
	}
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// setNoMulticastRouter sets multicast_router 0 on bridge port index: the
// port never becomes a router port, so it gets only the groups its peer
// has joined. The library has no call for it.
func (k *Kernel) setNoMulticastRouter(index int) error {
	req := k.request(unix.RTM_SETLINK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(index)
	req.AddData(msg)
	protinfo := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	protinfo.AddRtAttr(nl.IFLA_BRPORT_MULTICAST_ROUTER, nl.Uint8Attr(0))
	req.AddData(protinfo)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// bridgeData returns the bridge's IFLA_BR_* attributes by type.
func (k *Kernel) bridgeData() (map[int][]byte, error) {
	links, err := k.linkAttrs(unix.AF_UNSPEC, k.bridgeIndex, unix.IFLA_LINKINFO, nl.IFLA_INFO_DATA)
	return links[k.bridgeIndex], err
}

// portInfo returns the IFLA_BRPORT_* attributes of every bridge port in the
// namespace, by ifindex and type.
func (k *Kernel) portInfo() (map[int]map[int][]byte, error) {
	return k.linkAttrs(unix.AF_BRIDGE, 0, unix.IFLA_PROTINFO)
}

// linkAttrs sends an RTM_GETLINK of family for the link of ifindex index,
// or for index 0 a dump of every link, made again if a change interrupts
// it. It returns, by ifindex, each link's attributes nested at path in its
// answer (see nestedAttrs); a link without them is left out.
func (k *Kernel) linkAttrs(family, index int, path ...int) (map[int]map[int][]byte, error) {
	req := k.request(unix.RTM_GETLINK)
	req.Flags = unix.NLM_F_REQUEST // the answer is the reply: no ack
	if index == 0 {
		req.Flags |= unix.NLM_F_DUMP
	}
	msg := nl.NewIfInfomsg(family)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := retryDump(func() ([][]byte, error) {
		return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	})
	if err != nil {
		return nil, err
	}
	links := map[int]map[int][]byte{}
	for _, m := range msgs {
		ifi := nl.DeserializeIfInfomsg(m)
		if index != 0 && int(ifi.Index) != index {
			continue
		}
		attrs, err := nestedAttrs(m[ifi.Len():], path...)
		if err != nil {
			return nil, err
		}
		if attrs != nil {
			links[int(ifi.Index)] = mergeAttrs(links[int(ifi.Index)], attrs)
		}
	}
	return links, nil
}

// nestedAttrs parses b, netlink attributes one after another, and descends
// along path: into the attribute of type path[0], in it into the one of
// type path[1], and so on. It returns the attributes it arrives at by type
// (without NLA_F_NESTED), or nil if a step of path is missing. Where a step
// matches several attributes, what they hold is merged, the later winning.
func nestedAttrs(b []byte, path ...int) (map[int][]byte, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, err
	}
	if len(path) == 0 {
		found := make(map[int][]byte, len(attrs))
		for _, a := range attrs {
			found[attrType(a)] = a.Value
		}
		return found, nil
	}
	var found map[int][]byte
	for _, a := range attrs {
		if attrType(a) != path[0] {
			continue
		}
		inner, err := nestedAttrs(a.Value, path[1:]...)
		if err != nil {
			return nil, err
		}
		found = mergeAttrs(found, inner)
	}
	return found, nil
}

// attrType returns the type of a without the NLA_F_NESTED flag.
func attrType(a syscall.NetlinkRouteAttr) int { return int(a.Attr.Type &^ unix.NLA_F_NESTED) }

// mergeAttrs returns the attributes of dst and src together, those of src
// winning, in dst if it is not nil; it returns nil only if both are nil.
func mergeAttrs(dst, src map[int][]byte) map[int][]byte {
	if src == nil {
		return dst
	}
	if dst == nil {
		return src
	}
	maps.Copy(dst, src)
	return dst
}
