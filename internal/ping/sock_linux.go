package ping

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenGroup opens a UDP socket bound to the group address and port, not
// to the wildcard address as net.ListenPacket would for a multicast
// address: bound to the group, the socket never receives unicast datagrams
// to the port, and does not conflict with the unicast socket.
//
// It sets SO_REUSEADDR, so that other listeners on the ping group and port
// (another responder, omping) do not keep it from binding; and
// IP_MULTICAST_ALL off, so that it receives only the group it joins on the
// interface it joins it on, and not groups that other sockets of the host
// joined.
func listenGroup(group netip.Addr, port int) (*net.UDPConn, error) {
	return udpSocket(unix.AF_INET, "ping-group", func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
			return fmt.Errorf("IP_MULTICAST_ALL: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: group.As4(), Port: port}); err != nil {
			return fmt.Errorf("bind %v: %w", netip.AddrPortFrom(group, uint16(port)), err)
		}
		return nil
	})
}

// listenGroup6 is listenGroup for IPv6: a socket bound to the group and
// port, with SO_REUSEADDR, and joined to the group on ifi
// (IPV6_JOIN_GROUP). Linux checks an IPv6 socket's memberships by group
// alone, not by interface, so the socket is also bound to ifi
// (SO_BINDTODEVICE): it then hears the group from ifi only, even when
// another interface of the host joined it. IPV6_MULTICAST_ALL is turned
// off where the kernel has it (Linux 4.20), as for IPv4.
func listenGroup6(ifi *net.Interface, group netip.Addr, port int) (*net.UDPConn, error) {
	return udpSocket(unix.AF_INET6, "ping-group6", func(fd int) error {
		if err := setup6(fd, ifi); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
		if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			return fmt.Errorf("IPV6_MULTICAST_ALL: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: group.As16(), Port: port, ZoneId: uint32(ifi.Index)}); err != nil {
			return fmt.Errorf("bind %v: %w", netip.AddrPortFrom(group, uint16(port)), err)
		}
		mreq := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(ifi.Index)}
		if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
			return fmt.Errorf("joining %v on %s: %w", group, ifi.Name, err)
		}
		return nil
	})
}

// listenUnicast6 opens the IPv6 unicast socket of a responder: bound to
// ifi and to overlay and port. It sets IP_FREEBIND, so that it binds while
// overlay is still tentative (duplicate address detection): the kernel
// refuses to bind a tentative address otherwise, and the TAP's address is
// tentative for a second or two after the TAP comes up.
func listenUnicast6(ifi *net.Interface, overlay netip.Addr, port int) (*net.UDPConn, error) {
	return udpSocket(unix.AF_INET6, "ping-unicast6", func(fd int) error {
		if err := setup6(fd, ifi); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
			return fmt.Errorf("IP_FREEBIND: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: overlay.As16(), Port: port}); err != nil {
			return fmt.Errorf("bind %v: %w", netip.AddrPortFrom(overlay, uint16(port)), err)
		}
		return nil
	})
}

// setup6 makes the IPv6 socket fd IPv6 only, and binds it to ifi.
func setup6(fd int, ifi *net.Interface) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
		return fmt.Errorf("IPV6_V6ONLY: %w", err)
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name); err != nil {
		return fmt.Errorf("SO_BINDTODEVICE %s: %w", ifi.Name, err)
	}
	return nil
}

// udpSocket opens a non-blocking UDP socket of the family, runs setup on
// it, and returns it as a *net.UDPConn named name.
func udpSocket(family int, name string, setup func(fd int) error) (*net.UDPConn, error) {
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := setup(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FilePacketConn(f) // a dup of fd
	f.Close()
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// sender sends datagrams on one socket without ever waiting: a datagram
// the kernel does not take at once (a full send buffer) is dropped. Its
// fields are scratch space, set once per send, so that a send allocates
// nothing. A sender is used by one goroutine.
type sender struct {
	rc  syscall.RawConn
	b   []byte
	sa  unix.Sockaddr // &sa4 or &sa6, for the family of dst
	sa4 unix.SockaddrInet4
	sa6 unix.SockaddrInet6
	err error
	fn  func(fd uintptr) bool
}

// newSender returns a sendFunc for c (an IPv4 or IPv6 UDP socket) that
// never blocks. IPv6 destinations get the zone ifindex: it matters only for
// link-local ones, which are on the TAP.
func newSender(c *net.UDPConn, ifindex int) (sendFunc, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sender{rc: rc}
	s.sa6.ZoneId = uint32(ifindex)
	s.fn = func(fd uintptr) bool {
		s.err = unix.Sendto(int(fd), s.b, unix.MSG_DONTWAIT, s.sa)
		return true // done, whatever happened: never wait for the socket to drain
	}
	return s.send, nil
}

func (s *sender) send(b []byte, dst netip.AddrPort) bool {
	s.b = b
	if a := dst.Addr(); a.Is4() || a.Is4In6() {
		s.sa4.Addr = a.Unmap().As4()
		s.sa4.Port = int(dst.Port())
		s.sa = &s.sa4
	} else {
		s.sa6.Addr = a.As16()
		s.sa6.Port = int(dst.Port())
		s.sa = &s.sa6
	}
	err := s.rc.Write(s.fn)
	s.b = nil
	return err == nil && s.err == nil
}
