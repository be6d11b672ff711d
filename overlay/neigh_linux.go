package overlay

// The resolver of AF_PACKET egress: for each peer the data path sends to,
// the route the kernel would take (netlink RTM_GETROUTE from the local
// address) and the neighbour entry of its next hop, turned into the
// Ethernet and IPv4 (or IPv6) header of its copies. It follows changes as the kernel
// announces them (neighbour, route, rule, link and traffic control updates
// on one netlink socket, IPsec policy updates on another) and looks at
// everything again every resolveEvery as a safety net.
// It never resolves a neighbour itself: while a peer's next hop has no
// usable entry its copies go through the IP sockets, whose first packet
// makes the kernel ask ARP (or neighbour discovery, over IPv6), and the
// entry's update switches the peer over. Its tables are keyed by 16-byte
// addresses (IPv4 ones mapped) whatever the underlay's family.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const (
	// resolveEvery is the resolver's tick: it looks at the interface,
	// every route and every neighbour again, lets peers held on the
	// socket path after a refused copy try AF_PACKET again, sends one
	// copy to each peer with a stale neighbour entry through the socket
	// path (so that the kernel confirms the entry as it would if every
	// copy went that way), and forgets peers unused since forgetAfter
	// ticks.
	resolveEvery = 10 * time.Second
	forgetAfter  = 30
	// maxResolvedPeers bounds the peers the resolver follows; copies to
	// others go through the IP sockets.
	maxResolvedPeers = 1 << 14
	// watchBuf is the receive buffer asked for on the update socket.
	watchBuf = 4 << 20
)

// usableNeigh are the neighbour states whose link-layer address the kernel
// itself would send to.
const usableNeigh = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT

type resolverConfig struct {
	h     *netlink.Handle // in the Conn's network namespace
	xfrm  *netlink.Handle // likewise, for IPsec policies; nil without NETLINK_XFRM
	watch *watchConn
	// xwatch is subscribed to IPsec policy updates; nil where the kernel
	// or the process's capabilities do not allow it.
	xwatch *watchConn
	// hops reads the hop limit and path MTU per peer over IPv6; nil
	// over IPv4.
	hops    *hopProbe
	local   netip.Addr
	link    netlink.Link
	proto   uint8
	sockHdr func() (sockHeader, error)
	log     *slog.Logger
	publish func(*peerTable)
	// setBypass turns the packet socket's qdisc bypass on or off and
	// reports whether it is on.
	setBypass func(bool) bool
}

// resolver follows routes and neighbours for a packetTx. Its maps are
// owned by its goroutine.
type resolver struct {
	resolverConfig
	ifindex  int
	v6       bool
	requests chan netip.Addr
	kicks    chan struct{}
	events   chan neighEvent
	full     atomic.Bool // events were lost: look at everything again
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once

	peers map[[16]byte]*peerEntry
	neigh map[[16]byte]neighEntry // of the bound interface
	ifc   ifaceState
	hdr   sockHeader
	why   string // why no peer takes AF_PACKET now, or ""
	// bypass: the packet socket skips the queueing discipline, as the
	// resolver last set it (bypassSeen).
	bypass, bypassSeen bool
	// xfrmWhy is the last answer of ipsec that the kernel let the
	// resolver read (a process that dropped CAP_NET_ADMIN cannot dump
	// the policies any more).
	xfrmWhy string
}

// peerEntry is the resolver's view of one peer.
type peerEntry struct {
	st    *peerState
	route *peerRoute // as published
	// From the route: whether it leaves through the bound interface, as
	// unicast, and if not why; the next hop; the MTU, whether it is
	// locked, and the hop limit.
	why      string
	nh       [16]byte
	mtu      int
	locked   bool
	hoplimit int
	idle     int // ticks unused
}

type neighEntry struct {
	state int
	mac   [6]byte
}

type ifaceState struct {
	name string
	mac  net.HardwareAddr
	mtu  int
	why  string // why the interface takes no copies now, or ""
}

// neighEvent is a neighbour update of the bound interface.
type neighEvent struct {
	del bool
	ip  [16]byte
	n   neighEntry
}

func newResolver(cfg resolverConfig) *resolver {
	r := &resolver{
		resolverConfig: cfg,
		ifindex:        cfg.link.Attrs().Index,
		v6:             cfg.hops != nil,
		requests:       make(chan netip.Addr, 256),
		kicks:          make(chan struct{}, 1),
		events:         make(chan neighEvent, 1024),
		done:           make(chan struct{}),
		peers:          make(map[[16]byte]*peerEntry),
		neigh:          make(map[[16]byte]neighEntry),
	}
	// Read now, while the process surely has the capabilities to.
	r.ipsec()
	r.wg.Add(2)
	go r.run()
	go r.follow()
	if r.xwatch != nil {
		r.wg.Add(1)
		go r.followXfrm()
	}
	return r
}

// request asks the resolver to follow the peer at a. It never blocks: a
// request that does not fit is made again by the next copy.
func (r *resolver) request(a netip.Addr) {
	select {
	case r.requests <- a:
	default:
	}
}

// kick asks the resolver to look at everything again.
func (r *resolver) kick() {
	select {
	case r.kicks <- struct{}{}:
	default:
	}
}

func (r *resolver) stop() {
	r.stopOnce.Do(func() {
		close(r.done)
		r.watch.Close()
		if r.xwatch != nil {
			r.xwatch.Close()
		}
		r.wg.Wait()
		r.h.Close()
		if r.hops != nil {
			r.hops.close()
		}
		if r.xfrm != nil {
			r.xfrm.Close()
		}
	})
}

func (r *resolver) run() {
	defer r.wg.Done()
	tick := time.NewTicker(resolveEvery)
	defer tick.Stop()
	r.refresh()
	for {
		changed := false
		select {
		case <-r.done:
			return
		case a := <-r.requests:
			changed = r.add(a)
			for more := true; more; {
				select {
				case a := <-r.requests:
					changed = r.add(a) || changed
				default:
					more = false
				}
			}
		case ev := <-r.events:
			changed = r.neighbour(ev)
		case <-r.kicks:
			changed = r.refresh()
		case <-tick.C:
			changed = r.tick()
		}
		if r.full.Swap(false) {
			changed = r.refresh() || changed
		}
		if changed {
			r.publishTable()
		}
	}
}

// add starts to follow the peer at addr.
func (r *resolver) add(addr netip.Addr) bool {
	a := addr.As16()
	if _, ok := r.peers[a]; ok || len(r.peers) >= maxResolvedPeers {
		return false
	}
	pe := &peerEntry{st: newPeerState()}
	r.peers[a] = pe
	r.routeOf(a, pe)
	r.compute(a, pe)
	return true
}

// neighbour applies a neighbour update to the peers behind it.
func (r *resolver) neighbour(ev neighEvent) bool {
	if ev.del {
		delete(r.neigh, ev.ip)
	} else {
		r.neigh[ev.ip] = ev.n
	}
	changed := false
	for a, pe := range r.peers {
		if pe.why == "" && pe.nh == ev.ip {
			changed = r.compute(a, pe) || changed
		}
	}
	return changed
}

// tick forgets unused peers, releases held ones, nudges those with stale
// entries, and looks at everything again.
func (r *resolver) tick() bool {
	changed := false
	for a, pe := range r.peers {
		if pe.st.used.Swap(false) {
			pe.idle = 0
		} else if pe.idle++; pe.idle >= forgetAfter {
			delete(r.peers, a)
			changed = true
			continue
		}
		pe.st.hold.Store(false)
		if n, ok := r.neigh[pe.nh]; ok && pe.route.ok && n.state == unix.NUD_STALE {
			pe.st.nudge.Store(true)
		}
	}
	return r.refresh() || changed
}

// refresh reads the interface, the socket's header fields, the
// neighbours and every peer's route again.
func (r *resolver) refresh() bool {
	r.readLink()
	r.readQdisc()
	hdr, err := r.sockHdr()
	r.hdr, r.why = hdr, ""
	if err != nil {
		r.why = fmt.Sprintf("read the socket's TTL, TOS and PMTU discovery: %v", err)
		if r.v6 {
			r.why = fmt.Sprintf("read the socket's hop limit, traffic class and flow labelling: %v", err)
		}
	}
	if r.v6 && err == nil {
		// The socket's own hop limit, unless it is the default one, in
		// which case each peer's route or interface decides (routeOf).
		def, err := r.hops.defaultHops()
		if err != nil {
			r.why = fmt.Sprintf("read the default hop limit: %v", err)
		}
		r.hdr.hopsSet = r.hdr.ttl != def
	}
	if r.why == "" {
		r.why = r.ipsec()
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return r.h.NeighList(r.ifindex, family(r.local)) })
	if err == nil {
		clear(r.neigh)
		for _, n := range neighs {
			if ip, ok := r.neighKey(n.IP); ok {
				r.neigh[ip] = toNeighEntry(n)
			}
		}
	}
	changed := false
	for a, pe := range r.peers {
		r.routeOf(a, pe)
		changed = r.compute(a, pe) || changed
	}
	return changed
}

// readLink reads the bound interface's address, MTU and state.
func (r *resolver) readLink() {
	l, err := r.h.LinkByIndex(r.ifindex)
	if err != nil {
		r.ifc = ifaceState{name: r.ifc.name, why: fmt.Sprintf("interface %d: %v", r.ifindex, err)}
		return
	}
	a := l.Attrs()
	r.ifc = ifaceState{name: a.Name, mac: a.HardwareAddr, mtu: a.MTU}
	switch {
	case etherLink(l) != "":
		r.ifc.why = etherLink(l)
	case a.Flags&net.FlagUp == 0:
		r.ifc.why = "interface " + a.Name + " is down"
	case a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown:
		r.ifc.why = fmt.Sprintf("interface %s is %s", a.Name, a.OperState)
	}
}

// defaultQdiscs are the queueing disciplines that the kernel installs on
// its own (net.core.default_qdisc, and mq on a multiqueue device) or that
// only receive: they neither shape nor filter what leaves, so the packet
// socket may skip them.
var defaultQdiscs = map[string]bool{
	"noqueue": true, "pfifo_fast": true, "fq_codel": true, "fq": true, "mq": true,
	"pfifo": true, "bfifo": true, "ingress": true,
}

// readQdisc lets the packet socket skip the queueing discipline only while
// every one on the interface is a default one: where an operator installed
// another (htb, tbf, prio...) or tc egress filters (clsact), copies go
// through it, as the socket path's do.
func (r *resolver) readQdisc() {
	qs, err := r.h.QdiscList(r.link)
	if err != nil {
		return
	}
	ok, other := true, ""
	for _, q := range qs {
		if !defaultQdiscs[q.Type()] {
			ok, other = false, q.Type()
		}
	}
	now := r.setBypass(ok)
	if !ok && (r.bypass || !r.bypassSeen) {
		r.log.Info("AF_PACKET egress goes through the queueing discipline: the interface has one that shapes or filters",
			"offload", OffloadPacketTx, "interface", r.ifc.name, "qdisc", other)
	}
	r.bypass, r.bypassSeen = now, true
}

// ipsec returns why no copy may bypass the IP output path because the
// kernel has IPsec policies for outgoing packets, or "". Where the
// policies cannot be read (no NETLINK_XFRM, or no CAP_NET_ADMIN) it keeps
// its last answer, and assumes none if it never had one.
func (r *resolver) ipsec() string {
	if r.xfrm == nil {
		return r.xfrmWhy
	}
	pols, err := r.xfrm.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		return r.xfrmWhy
	}
	r.xfrmWhy = ""
	for _, p := range pols {
		if p.Dir == netlink.XFRM_DIR_OUT {
			r.xfrmWhy = "the kernel has IPsec policies for outgoing packets"
		}
	}
	return r.xfrmWhy
}

// neighKey returns the key of a neighbour's address, if it is of the
// underlay's family.
func (r *resolver) neighKey(ip net.IP) ([16]byte, bool) {
	if r.v6 {
		if len(ip) != net.IPv6len || ip.To4() != nil {
			return [16]byte{}, false
		}
		return [16]byte(ip), true
	}
	if ip4 := ip.To4(); ip4 != nil {
		return netip.AddrFrom4([4]byte(ip4)).As16(), true
	}
	return [16]byte{}, false
}

// keyAddr is the address of a key of the resolver's tables.
func keyAddr(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

// routeOf asks the kernel for the route to peer a from the local address,
// as the socket path would take it.
func (r *resolver) routeOf(a [16]byte, pe *peerEntry) {
	pe.why, pe.nh, pe.mtu, pe.locked, pe.hoplimit = "", a, r.ifc.mtu, false, 0
	dst := keyAddr(a)
	routes, err := r.h.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{SrcAddr: r.local.AsSlice()})
	switch {
	case err != nil:
		pe.why = fmt.Sprintf("no route: %v", err)
		return
	case len(routes) == 0:
		pe.why = "no route"
		return
	}
	rt := routes[0]
	switch {
	case rt.Type != unix.RTN_UNICAST:
		pe.why = fmt.Sprintf("route of type %d", rt.Type)
	case rt.LinkIndex != r.ifindex:
		pe.why = fmt.Sprintf("route through interface %d", rt.LinkIndex)
	case rt.Encap != nil || rt.Via != nil:
		pe.why = "route with an encapsulation or a next hop of another family"
	}
	if pe.why != "" {
		return
	}
	if gw, ok := r.neighKey(rt.Gw); ok {
		pe.nh = gw
	}
	if rt.MTU > 0 && rt.MTU < pe.mtu {
		pe.mtu = rt.MTU
	}
	pe.locked, pe.hoplimit = rt.MTULock, rt.Hoplimit
	if r.v6 {
		// What the socket path's packets to the peer get: the hop
		// limit of the route or the interface, and the path MTU (a
		// learnt one, or the interface's IPv6 MTU).
		hops, mtu, err := r.hops.query(dst)
		if err != nil {
			pe.why = fmt.Sprintf("read the hop limit and MTU of the route: %v", err)
			return
		}
		pe.hoplimit = hops
		if mtu > 0 && mtu < pe.mtu {
			pe.mtu = mtu
		}
	}
}

// compute builds peer a's route from what the resolver knows and reports
// whether it differs from the published one.
func (r *resolver) compute(a [16]byte, pe *peerEntry) bool {
	nr := &peerRoute{st: pe.st}
	why := r.why
	if why == "" {
		why = r.ifc.why
	}
	if why == "" {
		why = pe.why
	}
	nr.elsewhere = why != ""
	n, found := r.neigh[pe.nh]
	if why == "" {
		switch {
		case !found:
			why = fmt.Sprintf("no neighbour entry for next hop %v", keyAddr(pe.nh))
		case n.state&usableNeigh == 0 || n.mac == [6]byte{}:
			why = fmt.Sprintf("neighbour %v is %s", keyAddr(pe.nh), neighState(n.state))
		}
	}
	switch {
	case why != "":
	case r.v6:
		hops := pe.hoplimit
		if r.hdr.hopsSet || hops <= 0 {
			hops = r.hdr.ttl
		}
		var label uint32
		if r.hdr.autoFlow {
			label = flowLabel(r.local, keyAddr(a), r.proto)
		}
		nr.ok = true
		nr.maxLen = pe.mtu - IPv6HeaderLen
		nr.buildHeader6(n.mac[:], r.ifc.mac, r.local, keyAddr(a), r.proto, hops, r.hdr.tos, label)
	default:
		ttl := r.hdr.ttl
		if pe.hoplimit > 0 {
			ttl = pe.hoplimit
		}
		nr.ok = true
		nr.maxLen = pe.mtu - IPv4HeaderLen
		df := r.hdr.setsDF(pe.locked)
		nr.buildHeader(n.mac[:], r.ifc.mac, r.local.As4(), keyAddr(a).As4(), r.proto, ttl, r.hdr.tos, df, r.hdr.zeroID(df))
	}
	old := pe.route
	if old != nil && old.ok == nr.ok && old.elsewhere == nr.elsewhere && old.hdr == nr.hdr && old.hdr6 == nr.hdr6 &&
		old.maxLen == nr.maxLen && old.zeroID == nr.zeroID {
		return false
	}
	pe.route = nr
	if nr.ok {
		r.log.Debug("AF_PACKET egress to peer", "peer", keyAddr(a), "next_hop", keyAddr(pe.nh),
			"mac", net.HardwareAddr(n.mac[:]), "state", neighState(n.state), "max_len", nr.maxLen)
	} else if old == nil || old.ok {
		r.log.Debug("socket egress to peer", "peer", keyAddr(a), "why", why)
	}
	return true
}

func (r *resolver) publishTable() {
	t := &peerTable{}
	if r.v6 {
		t.m6 = make(map[[16]byte]*peerRoute, len(r.peers))
		for a, pe := range r.peers {
			t.m6[a] = pe.route
		}
	} else {
		t.m = make(map[[4]byte]*peerRoute, len(r.peers))
		for a, pe := range r.peers {
			t.m[keyAddr(a).As4()] = pe.route
		}
	}
	r.publish(t)
}

func toNeighEntry(n netlink.Neigh) neighEntry {
	e := neighEntry{state: n.State}
	if len(n.HardwareAddr) == 6 {
		e.mac = [6]byte(n.HardwareAddr)
	}
	return e
}

// neighState names a neighbour state as ip-neighbour(8) does.
func neighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{unix.NUD_INCOMPLETE, "INCOMPLETE"}, {unix.NUD_REACHABLE, "REACHABLE"}, {unix.NUD_STALE, "STALE"},
		{unix.NUD_DELAY, "DELAY"}, {unix.NUD_PROBE, "PROBE"}, {unix.NUD_FAILED, "FAILED"},
		{unix.NUD_NOARP, "NOARP"}, {unix.NUD_PERMANENT, "PERMANENT"},
	}
	for _, n := range names {
		if s&n.bit != 0 {
			return n.name
		}
	}
	return "NONE"
}

// follow reads the update socket and hands the resolver what concerns it.
func (r *resolver) follow() {
	defer r.wg.Done()
	warned := false
	for {
		msgs, err := r.watch.read()
		select {
		case <-r.done:
			return
		default:
		}
		if err != nil {
			// ENOBUFS: the kernel dropped updates; anything else is
			// unexpected. Either way, look at everything again.
			r.full.Store(true)
			r.kick()
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if !errors.Is(err, unix.ENOBUFS) && !warned {
				warned = true
				r.log.Warn("reading route and neighbour updates failed; AF_PACKET egress re-resolves every "+resolveEvery.String(),
					"errno", ErrnoName(Errno(err)), "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		for i := range msgs {
			m := &msgs[i]
			switch m.Header.Type {
			case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
				n, err := netlink.NeighDeserialize(m.Data)
				if err != nil || n.LinkIndex != r.ifindex {
					continue
				}
				ip, ok := r.neighKey(n.IP)
				if !ok {
					continue
				}
				ev := neighEvent{del: m.Header.Type == unix.RTM_DELNEIGH, ip: ip, n: toNeighEntry(*n)}
				select {
				case r.events <- ev:
				default:
					r.full.Store(true)
					r.kick()
				}
			case unix.RTM_NEWROUTE, unix.RTM_DELROUTE, unix.RTM_NEWRULE, unix.RTM_DELRULE,
				unix.RTM_NEWQDISC, unix.RTM_DELQDISC, unix.RTM_NEWTFILTER, unix.RTM_DELTFILTER:
				r.kick()
			case unix.RTM_NEWLINK, unix.RTM_DELLINK:
				if len(m.Data) >= unix.SizeofIfInfomsg {
					if idx := int32(binary.NativeEndian.Uint32(m.Data[4:8])); int(idx) == r.ifindex {
						r.kick()
					}
				}
			}
		}
	}
}

// followXfrm reads the IPsec policy updates and has the resolver look at
// everything again after each.
func (r *resolver) followXfrm() {
	defer r.wg.Done()
	for {
		_, err := r.xwatch.read()
		select {
		case <-r.done:
			return
		default:
		}
		if errors.Is(err, os.ErrClosed) {
			return
		}
		r.kick()
	}
}

// watchConn is a netlink socket subscribed to updates.
type watchConn struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
}

// watchSocket opens the socket of link, neighbour, route and rule (IPv4,
// or IPv6 with v6) and traffic control updates in the calling thread's
// network namespace.
func watchSocket(v6 bool) (*watchConn, error) {
	groups := uint32(1)<<(unix.RTNLGRP_LINK-1) | 1<<(unix.RTNLGRP_NEIGH-1) | 1<<(unix.RTNLGRP_TC-1)
	if v6 {
		groups |= 1<<(unix.RTNLGRP_IPV6_ROUTE-1) | 1<<(unix.RTNLGRP_IPV6_RULE-1)
	} else {
		groups |= 1<<(unix.RTNLGRP_IPV4_ROUTE-1) | 1<<(unix.RTNLGRP_IPV4_RULE-1)
	}
	return subscribe(unix.NETLINK_ROUTE, groups)
}

// xfrmWatchSocket opens the socket of IPsec policy updates in the calling
// thread's network namespace (it needs CAP_NET_ADMIN).
func xfrmWatchSocket() (*watchConn, error) {
	return subscribe(unix.NETLINK_XFRM, 1<<(nl.XFRMNLGRP_POLICY-1))
}

// subscribe opens a netlink socket of protocol proto bound to groups.
func subscribe(proto int, groups uint32) (*watchConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, watchBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, watchBuf)
	}
	w := &watchConn{f: os.NewFile(uintptr(fd), "netlink-watch"), buf: make([]byte, 64<<10)}
	if w.rc, err = w.f.SyscallConn(); err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// read waits for the next datagram of updates and returns its messages.
func (w *watchConn) read() ([]syscall.NetlinkMessage, error) {
	var n int
	var rerr error
	err := w.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), w.buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return syscall.ParseNetlinkMessage(w.buf[:n])
}

// Close closes the socket, which ends a pending read.
func (w *watchConn) Close() error { return w.f.Close() }
