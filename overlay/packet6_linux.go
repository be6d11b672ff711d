package overlay

// AF_PACKET egress over an IPv6 underlay: the same packet socket and
// resolver as over IPv4 (packet_linux.go, neigh_linux.go), with an
// Ethernet and IPv6 header in front of each copy. IPv6 has no header
// checksum and no ID, so a peer's header is fixed but for the payload
// length. The UDP checksum of VXLAN is mandatory over IPv6: the packet
// socket of a VXLAN Conn takes a virtio-net header (PACKET_VNET_HDR) that
// leaves the checksum to the kernel or the NIC (VIRTIO_NET_HDR_F_NEEDS_CSUM,
// as a UDP socket's datagrams do), and since the checksum field differs
// per destination (the pseudo-header), each copy's UDP header lives in its
// own header iovec, not in the packet shared by the copies.

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethIP6Len is the Ethernet and IPv6 header meshcast writes in front of
// each copy it sends through AF_PACKET over IPv6.
const ethIP6Len = EthHeaderLen + IPv6HeaderLen

// Offsets in that header.
const (
	hdr6PayloadLen = EthHeaderLen + 4
	hdr6Src        = EthHeaderLen + 8
	hdr6Dst        = EthHeaderLen + 24
)

// Per-copy header lengths over IPv6: GRE has the Ethernet and IPv6
// header; VXLAN a virtio-net header before them and the copy's UDP header
// after.
const (
	greHdr6Len   = ethIP6Len
	vxlanHdr6Len = VnetHdrLen + ethIP6Len + UDPHeaderLen
)

// sockHeader6 reads the fields of the socket behind rc that go into an
// outer IPv6 header: the hop limit (IPV6_UNICAST_HOPS: the socket's own,
// else net.ipv6.conf.all.hop_limit, since the socket is not connected),
// the traffic class (IPV6_TCLASS) and whether the kernel gives its packets
// a flow label (IPV6_AUTOFLOWLABEL, following net.ipv6.auto_flowlabels).
func readSockHeader6(rc syscall.RawConn) (sockHeader, error) {
	var h sockHeader
	var errs []error
	err := rc.Control(func(fd uintptr) {
		var err error
		h.ttl, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS)
		errs = append(errs, err)
		h.tos, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS)
		errs = append(errs, err)
		auto, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL)
		// A kernel without the option (before 4.10) labels by the
		// sysctl alone, on by default.
		h.autoFlow = err != nil || auto != 0
	})
	if err != nil {
		return h, err
	}
	return h, errors.Join(errs...)
}

// hopProbe is a UDP socket in the Conn's network namespace, bound to the
// local address, that the resolver connects to each peer in turn to ask
// the kernel what the socket path's packets to it get: the hop limit
// (the route's, else the interface's net.ipv6.conf.IF.hop_limit) and the
// path MTU (the route's, a learnt path MTU, or the interface's
// net.ipv6.conf.IF.mtu). Connecting a UDP socket sends nothing.
// A second socket, never connected, tells the hop limit of a socket that
// sets none: net.ipv6.conf.all.hop_limit.
type hopProbe struct{ fd, def int }

func newHopProbe(local netip.Addr) (*hopProbe, error) {
	var fds [2]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err == nil && i == 0 {
			// It reads nothing: a filter drops what a peer might send
			// to its port.
			if err = receiveNothing(fd); err == nil {
				err = unix.Bind(fd, &unix.SockaddrInet6{Addr: local.As16()})
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			if i > 0 {
				unix.Close(fds[0])
			}
			return nil, err
		}
		fds[i] = fd
	}
	return &hopProbe{fd: fds[0], def: fds[1]}, nil
}

// defaultHops returns the hop limit of a socket that neither set one nor
// is connected: net.ipv6.conf.all.hop_limit.
func (p *hopProbe) defaultHops() (int, error) {
	return unix.GetsockoptInt(p.def, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS)
}

// query returns the hop limit and path MTU of the socket path's packets to
// dst.
func (p *hopProbe) query(dst netip.Addr) (hops, mtu int, err error) {
	if err := unix.Connect(p.fd, &unix.SockaddrInet6{Addr: dst.As16(), Port: 9}); err != nil {
		return 0, 0, err
	}
	if hops, err = unix.GetsockoptInt(p.fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS); err != nil {
		return 0, 0, err
	}
	if mtu, err = unix.GetsockoptInt(p.fd, unix.IPPROTO_IPV6, unix.IPV6_MTU); err != nil {
		return 0, 0, err
	}
	return hops, mtu, nil
}

func (p *hopProbe) close() error {
	unix.Close(p.def)
	return unix.Close(p.fd)
}

// flowSeed keys the flow labels of this process.
var flowSeed = maphash.MakeSeed()

// flowLabel returns the flow label of the copies from src to dst of
// protocol proto: as the kernel's own label for a socket that sets none
// (net.ipv6.auto_flowlabels), a hash of the addresses and protocol under
// a key of this process, constant per peer (the kernel's raw sockets
// hash no ports either), so that the network sees one flow per peer.
func flowLabel(src, dst netip.Addr, proto uint8) uint32 {
	var b [33]byte
	s, d := src.As16(), dst.As16()
	copy(b[0:16], s[:])
	copy(b[16:32], d[:])
	b[32] = proto
	return uint32(maphash.Bytes(flowSeed, b[:])) & 0xfffff
}

// buildHeader6 writes the Ethernet and IPv6 header of copies from src to
// dst into r.hdr6, with the payload length left zero, and r.psum, the
// pseudo-header's sum of addresses and next header (RFC 8200 section
// 8.1), not folded.
func (r *peerRoute) buildHeader6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, proto uint8, hops, tclass int, label uint32) {
	h := r.hdr6[:]
	copy(h[0:6], dstMAC)
	copy(h[6:12], srcMAC)
	binary.BigEndian.PutUint16(h[12:14], unix.ETH_P_IPV6)
	ip := h[EthHeaderLen:]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28|uint32(tclass&0xff)<<20|label&0xfffff)
	ip[6] = proto
	ip[7] = byte(hops)
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	r.psum = uint32(proto)
	for i := 8; i < 40; i += 2 {
		r.psum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
}

// initHdrs6 writes the parts of the per-copy headers that never change:
// for VXLAN, the virtio-net header that leaves the UDP checksum to the
// kernel (or the NIC), with the pseudo-header sum in the checksum field.
func (p *packetTx) initHdrs6() {
	if !p.udp6 {
		return
	}
	for k := range len(p.b.hdrs) {
		h := p.hdrs[k*p.hlen:]
		h[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
		h[1] = vnetGSONone
		binary.NativeEndian.PutUint16(h[2:4], ethIP6Len+UDPHeaderLen) // hdr_len
		binary.NativeEndian.PutUint16(h[6:8], ethIP6Len)              // csum_start
		binary.NativeEndian.PutUint16(h[8:10], 6)                     // csum_offset
	}
}

// fill6 writes the headers and iovecs of the messages p.pk[start:start+n]
// over IPv6.
func (p *packetTx) fill6(msgs []Message, start, n int) {
	hl := p.hlen
	for k := range n {
		r := p.route[start+k]
		buf := msgs[p.pk[start+k]].Buf
		h := p.hdrs[k*hl : (k+1)*hl : (k+1)*hl]
		if p.udp6 {
			h = h[VnetHdrLen:]
		}
		copy(h, r.hdr6[:])
		binary.BigEndian.PutUint16(h[hdr6PayloadLen:], uint16(len(buf)))
		if p.udp6 {
			// The copy's UDP header: the ports and length Encap wrote,
			// and the pseudo-header sum for the kernel to finish.
			u := h[ethIP6Len : ethIP6Len+UDPHeaderLen]
			copy(u[0:6], buf[0:6])
			binary.BigEndian.PutUint16(u[6:8], fold(r.psum+uint32(len(buf))))
			buf = buf[UDPHeaderLen:]
		}
		iov := &p.iovs[2*k+1]
		iov.Base = unsafe.SliceData(buf)
		iov.SetLen(len(buf))
	}
}

// fill6 writes header k for run r over IPv6, starting at iovec niov, and
// returns how many iovecs it used: the kernel writes each copy's payload
// length and UDP checksum.
func (s *segTx) fill6(msgs []Message, r, k, niov int) int {
	run := &s.runs[r]
	s.owner[k] = r
	h := s.hdrs[k*segHdr6Len : (k+1)*segHdr6Len : (k+1)*segHdr6Len]
	h[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	h[1] = unix.VIRTIO_NET_HDR_GSO_UDP_L4
	binary.NativeEndian.PutUint16(h[2:4], ethIP6Len+UDPHeaderLen) // hdr_len
	binary.NativeEndian.PutUint16(h[4:6], uint16(run.seg))        // gso_size
	binary.NativeEndian.PutUint16(h[6:8], ethIP6Len)              // csum_start
	binary.NativeEndian.PutUint16(h[8:10], 6)                     // csum_offset
	e := h[VnetHdrLen:]
	copy(e, run.r.hdr6[:])
	udpLen := UDPHeaderLen + run.bytes
	binary.BigEndian.PutUint16(e[hdr6PayloadLen:], uint16(udpLen))
	u := e[ethIP6Len:]
	copy(u[0:4], msgs[run.head].Buf[0:4])
	binary.BigEndian.PutUint16(u[4:6], uint16(udpLen))
	binary.BigEndian.PutUint16(u[6:8], fold(run.r.psum+uint32(udpLen)))
	return s.runIovecs(k, h[:segHdr6Len], msgs, run.head, niov)
}

// segHdr6Len is the header of a run over IPv6.
const segHdr6Len = VnetHdrLen + ethIP6Len + UDPHeaderLen

// runKey6Of returns the flow and peer of a VXLAN copy over IPv6: the
// peer's number (peerState.seq) and the ports.
func runKey6Of(m *Message, r *peerRoute) (uint64, bool) {
	if len(m.Buf) < UDPHeaderLen+VXLANHeaderLen {
		return 0, false
	}
	return uint64(r.st.seq)<<32 | uint64(binary.BigEndian.Uint32(m.Buf[0:4])), true
}
