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

// The ping group and port that every meshcast daemon answers on.
const (
	DefaultGroup = "232.43.211.234"
	DefaultPort  = 4321
)

var defaultGroup = netip.MustParseAddr(DefaultGroup)

// readBufLen is the size of the read buffers: larger than packetLen, so
// that a datagram longer than a probe is seen as such (the kernel truncates
// it to the buffer) and refused.
const readBufLen = 2 * packetLen

// A Responder answers probes on one node. It holds two UDP sockets: one
// bound to the node's overlay address and port, for unicast probes, and one
// bound to the group and port and joined on the node's TAP, for multicast
// probes. Each valid request is answered by a unicast reply from the
// overlay address and port to the prober's address and port; the reply is
// the request with its type changed, so the prober's nonce, sequence number
// and timestamp come back as they were sent.
//
// A Responder never waits for a prober: replies are sent without blocking,
// and one the kernel does not take at once is dropped and counted. Each
// received datagram costs one parse and at most one send.
//
// Its methods are safe for concurrent use.
type Responder struct {
	uc, mc *net.UDPConn // replies to both leave through uc

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
// overlay address is overlay. A zero group means DefaultGroup, and port 0
// means DefaultPort. The sockets are opened in the calling goroutine's
// network namespace. Close stops it.
func Listen(ifname string, overlay netip.Addr, group netip.Addr, port int) (*Responder, error) {
	if !group.IsValid() {
		group = defaultGroup
	}
	if port == 0 {
		port = DefaultPort
	}
	overlay, group = overlay.Unmap(), group.Unmap()
	switch {
	case !unicast4(overlay):
		return nil, fmt.Errorf("ping: listen: overlay address %v is not a unicast IPv4 address", overlay)
	case !group.Is4() || !group.IsMulticast():
		return nil, fmt.Errorf("ping: listen: group %v is not an IPv4 multicast group", group)
	case port < 1 || port > 65535:
		return nil, fmt.Errorf("ping: listen: port %d is out of range 1-65535", port)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ping: listen: interface %q: %w", ifname, err)
	}

	c, err := net.ListenPacket("udp4", netip.AddrPortFrom(overlay, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("ping: listen: %w", err)
	}
	uc := c.(*net.UDPConn)
	mc, err := listenGroup(group, port)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("ping: listen: %w", err)
	}
	if err := ipv4.NewPacketConn(mc).JoinGroup(ifi, &net.UDPAddr{IP: group.AsSlice()}); err != nil {
		uc.Close()
		mc.Close()
		return nil, fmt.Errorf("ping: listen: joining %v on %s: %w", group, ifname, err)
	}

	r := &Responder{uc: uc, mc: mc}
	for _, s := range []struct {
		c *net.UDPConn
		k kind
	}{{uc, kindUnicast}, {mc, kindMulticast}} {
		send, err := newSender(uc)
		if err != nil {
			uc.Close()
			mc.Close()
			return nil, fmt.Errorf("ping: listen: %w", err)
		}
		r.wg.Add(1)
		go r.serve(s.c, s.k, send)
	}
	return r, nil
}

// serve answers the probes of kind k that arrive on c, until c is closed.
func (r *Responder) serve(c *net.UDPConn, k kind, send sendFunc) {
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
		if why := answer(b, from, k); why != reasonOK {
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
// for probes of kind k, is answered. If it is, answer turns b into the
// reply in place and returns reasonOK.
func answer(b []byte, from netip.AddrPort, k kind) reason {
	p, why := parse(b)
	switch {
	case why != reasonOK:
		return why
	case p.typ() != typeRequest:
		return reasonDirection
	case p.kind() != k:
		return reasonWrongKind
	}
	if !unicast4(from.Addr().Unmap()) || from.Port() == 0 {
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

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Stats returns how many requests were answered, and how many datagrams
// were not: malformed or foreign ones, requests on the wrong socket, and
// requests whose reply the kernel did not take at once.
func (r *Responder) Stats() (answered, ignored uint64) {
	for i := range r.ignored {
		ignored += r.ignored[i].Load()
	}
	return r.answered.Load(), ignored
}

// ignoredBy returns the count of datagrams ignored for reason why.
func (r *Responder) ignoredBy(why reason) uint64 { return r.ignored[why].Load() }

// Close closes both sockets and waits for the Responder's goroutines to
// return. Calls after the first return the first call's result.
func (r *Responder) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = errors.Join(r.uc.Close(), r.mc.Close())
		r.wg.Wait()
		if r.closeErr != nil {
			r.closeErr = fmt.Errorf("ping: close: %w", r.closeErr)
		}
	})
	return r.closeErr
}
