package ping

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// The ping groups and port that every meshcast daemon answers on.
//
// DefaultGroup6 is the IPv6 ping group, for nodes with an IPv6 overlay
// address: ff15::/16 is transient (flag T) and site-local (scope 5), wider
// than link-local, so the overlay carries it only to the peers that joined
// it; its group ID is "MCping" in ASCII.
const (
	DefaultGroup  = "232.43.211.234"
	DefaultGroup6 = "ff15::4d43:7069:6e67"
	DefaultPort   = 4321
)

var (
	defaultGroup  = netip.MustParseAddr(DefaultGroup)
	defaultGroup6 = netip.MustParseAddr(DefaultGroup6)
)

// readBufLen is the size of the read buffers: larger than packetLen, so
// that a datagram longer than a probe is seen as such (the kernel truncates
// it to the buffer) and refused.
const readBufLen = 2 * packetLen

// A Responder answers probes on one node, for one address family or both.
// For each, it holds two UDP sockets: one bound to the node's overlay
// address and port, for unicast probes, and one bound to the group and port
// and joined on the node's TAP, for multicast probes. Each valid request is
// answered by a unicast reply from the overlay address and port to the
// prober's address and port; the reply is the request with its type
// changed, so the prober's nonce, sequence number and timestamp come back
// as they were sent.
//
// The IPv6 sockets are bound to the TAP (SO_BINDTODEVICE): unlike IPv4,
// Linux delivers an IPv6 group to every socket that joined it on any
// interface, and another TAP of the host may have joined the same ping
// group. The IPv6 unicast socket binds with IP_FREEBIND, since the overlay
// address is tentative (duplicate address detection) for a second or two
// after the TAP comes up: the Responder answers once it is usable.
//
// A Responder never waits for a prober: replies are sent without blocking,
// and one the kernel does not take at once is dropped and counted. Each
// received datagram costs one parse and at most one send.
//
// Its methods are safe for concurrent use.
type Responder struct {
	conns []*net.UDPConn // per family: unicast, then group; replies leave through the unicast one

	answered atomic.Uint64
	ignored  [numReasons]atomic.Uint64 // by reason; reasonOK unused

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// sendFunc sends b to dst without blocking, and reports whether the kernel
// took it. Each goroutine that sends has its own (see newSender).
type sendFunc func(b []byte, dst netip.AddrPort) bool

// Listen starts a Responder for the node whose TAP is ifname and whose
// overlay address is overlay, IPv4 or IPv6: it answers in that family. A
// zero group means DefaultGroup, or DefaultGroup6 for an IPv6 overlay
// address; an IPv6 group must have a scope wider than link-local (see
// ValidGroup6). Port 0 means DefaultPort. The sockets are opened in the
// calling goroutine's network namespace. Close stops it.
func Listen(ifname string, overlay netip.Addr, group netip.Addr, port int) (*Responder, error) {
	return listen(ifname, port, endpoint{overlay: overlay, group: group, v6: overlay.Unmap().Is6()})
}

// ListenDual starts a Responder that answers in both families, on the
// ping groups DefaultGroup and DefaultGroup6: IPv4 on overlay4, and IPv6
// on overlay6 unless it is the zero Addr (a node without an IPv6 overlay
// address). Otherwise it is Listen.
func ListenDual(ifname string, overlay4, overlay6 netip.Addr, port int) (*Responder, error) {
	eps := []endpoint{{overlay: overlay4, group: defaultGroup}}
	if overlay6.IsValid() {
		eps = append(eps, endpoint{overlay: overlay6, group: defaultGroup6, v6: true})
	}
	return listen(ifname, port, eps...)
}

// endpoint is where a Responder answers in one family: IPv6 if v6, else
// IPv4.
type endpoint struct {
	overlay, group netip.Addr
	v6             bool
}

func listen(ifname string, port int, eps ...endpoint) (*Responder, error) {
	if port == 0 {
		port = DefaultPort
	}
	for i := range eps {
		e := &eps[i]
		if e.v6 {
			e.overlay = e.overlay.WithZone("")
		} else {
			e.overlay, e.group = e.overlay.Unmap(), e.group.Unmap()
		}
		if !e.group.IsValid() {
			e.group = defaultGroup
			if e.v6 {
				e.group = defaultGroup6
			}
		}
		if why := checkOverlay(e.overlay, e.v6); why != "" {
			return nil, fmt.Errorf("ping: listen: overlay address %v %s", e.overlay, why)
		}
		if why := checkGroup(e.group, e.v6); why != "" {
			return nil, fmt.Errorf("ping: listen: group %v %s", e.group, why)
		}
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("ping: listen: port %d is out of range 1-65535", port)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ping: listen: interface %q: %w", ifname, err)
	}

	r := &Responder{}
	type server struct {
		c    *net.UDPConn
		k    kind
		v6   bool
		send sendFunc
	}
	var servers []server
	for _, e := range eps {
		uc, mc, err := openFamily(ifi, e, port)
		if err != nil {
			r.closeConns()
			return nil, fmt.Errorf("ping: listen: %w", err)
		}
		r.conns = append(r.conns, uc, mc)
		for _, s := range []server{{c: uc, k: kindUnicast, v6: e.v6}, {c: mc, k: kindMulticast, v6: e.v6}} {
			if s.send, err = newSender(uc, ifi.Index); err != nil {
				r.closeConns()
				return nil, fmt.Errorf("ping: listen: %w", err)
			}
			servers = append(servers, s)
		}
	}
	for _, s := range servers {
		r.wg.Add(1)
		go r.serve(s.c, s.k, s.v6, s.send)
	}
	return r, nil
}

// openFamily opens the unicast and the group socket of one family, the
// group joined on ifi.
func openFamily(ifi *net.Interface, e endpoint, port int) (uc, mc *net.UDPConn, err error) {
	overlay, group := e.overlay, e.group
	if e.v6 {
		if !hasAddr(ifi, overlay) {
			return nil, nil, fmt.Errorf("%v is not an address of %s", overlay, ifi.Name)
		}
		if uc, err = listenUnicast6(ifi, overlay, port); err != nil {
			return nil, nil, err
		}
		if mc, err = listenGroup6(ifi, group, port); err != nil {
			uc.Close()
			return nil, nil, err
		}
		return uc, mc, nil
	}
	c, err := net.ListenPacket("udp4", netip.AddrPortFrom(overlay, uint16(port)).String())
	if err != nil {
		return nil, nil, err
	}
	uc = c.(*net.UDPConn)
	if mc, err = listenGroup(group, port); err != nil {
		uc.Close()
		return nil, nil, err
	}
	if err := ipv4.NewPacketConn(mc).JoinGroup(ifi, &net.UDPAddr{IP: group.AsSlice()}); err != nil {
		uc.Close()
		mc.Close()
		return nil, nil, fmt.Errorf("joining %v on %s: %w", group, ifi.Name, err)
	}
	return uc, mc, nil
}

// hasAddr reports whether a is one of ifi's addresses, tentative ones
// included.
func hasAddr(ifi *net.Interface, a netip.Addr) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// serve answers the probes of kind k that arrive on c, a socket of the
// family v6 (IPv6 or IPv4), until c is closed.
func (r *Responder) serve(c *net.UDPConn, k kind, v6 bool, send sendFunc) {
	defer r.wg.Done()
	buf := make([]byte, readBufLen)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // nothing to answer; an unconnected UDP socket has no lasting errors
		}
		b := buf[:n]
		if why := answer(b, from, k, v6); why != reasonOK {
			r.ignored[why].Add(1)
			continue
		}
		if !send(b, from) {
			r.ignored[reasonSendFailed].Add(1)
			continue
		}
		r.answered.Add(1)
	}
}

// answer decides whether the datagram b from from, received on the socket
// for probes of kind k of the family v6 (IPv6 or IPv4), is answered. If it
// is, answer turns b into the reply in place and returns reasonOK.
func answer(b []byte, from netip.AddrPort, k kind, v6 bool) reason {
	p, why := parse(b)
	switch {
	case why != reasonOK:
		return why
	case p.typ() != typeRequest:
		return reasonDirection
	case p.kind() != k:
		return reasonWrongKind
	}
	src := from.Addr()
	ok := unicast6(src)
	if !v6 {
		ok = unicast4(src.Unmap())
	}
	if !ok || from.Port() == 0 {
		return reasonSource
	}
	p.setType(typeReply)
	return reasonOK
}

// unicast4 reports whether a is an IPv4 address that a host may hold and
// answer from: not unspecified, multicast or the limited broadcast.
func unicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && a != broadcast
}

// unicast6 reports whether a is an IPv6 address, not IPv4-mapped, that a
// host may hold and answer from: not unspecified or multicast.
func unicast6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast()
}

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// checkOverlay returns why a cannot be an overlay address of the family v6
// (IPv6 or IPv4) for a Responder or a prober, or "" if it can. An IPv6
// link-local address would need a zone, and is not an overlay address.
func checkOverlay(a netip.Addr, v6 bool) string {
	switch {
	case !v6 && !unicast4(a):
		return "is not a unicast IPv4 address"
	case v6 && !unicast6(a):
		return "is not a unicast IPv6 address"
	case v6 && a.IsLinkLocalUnicast():
		return "is link-local; use the overlay address"
	}
	return ""
}

// checkGroup returns why g cannot be the ping group of the family v6, or
// "" if it can.
func checkGroup(g netip.Addr, v6 bool) string {
	switch {
	case !v6 && (!g.Is4() || !g.IsMulticast()):
		return "is not an IPv4 multicast group"
	case v6 && !ValidGroup6(g):
		return "is not an IPv6 multicast group of scope wider than link-local"
	}
	return ""
}

// ValidGroup6 reports whether g can be an IPv6 ping group: a multicast
// address (not IPv4-mapped) whose scope is realm-local (3) to global (e),
// so wider than link-local. Interface-local groups (ff01::/16) never leave
// the node, and link-local ones (ff02::/16) go to every peer whatever they
// joined, so probes to them would not check how the overlay forwards a
// group; scopes 0 and f are reserved.
func ValidGroup6(g netip.Addr) bool {
	if !g.Is6() || g.Is4In6() || !g.IsMulticast() || g.Zone() != "" {
		return false
	}
	scope := g.As16()[1] & 0x0f
	return scope >= 3 && scope <= 0xe
}

// Stats returns how many requests were answered, and how many datagrams
// were not: malformed or foreign ones, requests on the wrong socket, and
// requests whose reply the kernel did not take at once. A Responder of
// both families counts both.
func (r *Responder) Stats() (answered, ignored uint64) {
	for i := range r.ignored {
		ignored += r.ignored[i].Load()
	}
	return r.answered.Load(), ignored
}

// ignoredBy returns the count of datagrams ignored for reason why.
func (r *Responder) ignoredBy(why reason) uint64 { return r.ignored[why].Load() }

// closeConns closes every socket, and returns their errors joined.
func (r *Responder) closeConns() error {
	var errs []error
	for _, c := range r.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Close closes every socket and waits for the Responder's goroutines to
// return. Calls after the first return the first call's result.
func (r *Responder) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.closeConns()
		r.wg.Wait()
		if r.closeErr != nil {
			r.closeErr = fmt.Errorf("ping: close: %w", r.closeErr)
		}
	})
	return r.closeErr
}
