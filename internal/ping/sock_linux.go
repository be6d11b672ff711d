package ping

import (
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
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	setup := func() error {
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
	}
	if err := setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "ping-group")
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
	sa  unix.SockaddrInet4
	err error
	fn  func(fd uintptr) bool
}

// newSender returns a sendFunc for c (an IPv4 UDP socket) that never
// blocks.
func newSender(c *net.UDPConn) (sendFunc, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sender{rc: rc}
	s.fn = func(fd uintptr) bool {
		s.err = unix.Sendto(int(fd), s.b, unix.MSG_DONTWAIT, &s.sa)
		return true // done, whatever happened: never wait for the socket to drain
	}
	return s.send, nil
}

func (s *sender) send(b []byte, dst netip.AddrPort) bool {
	s.b = b
	s.sa.Addr = dst.Addr().Unmap().As4()
	s.sa.Port = int(dst.Port())
	err := s.rc.Write(s.fn)
	s.b = nil
	return err == nil && s.err == nil
}
