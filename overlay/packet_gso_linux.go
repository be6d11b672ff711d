package overlay

// Segmentation offload for VXLAN copies sent through AF_PACKET: the copies
// of one flow to one peer in a batch (a run) leave as one UDP packet behind
// a virtio-net header that asks for VIRTIO_NET_HDR_GSO_UDP_L4, which the
// kernel splits into the copies as late as it can (in software just
// before the driver where the interface has no UDP segmentation, or in the
// NIC). This crosses the kernel once per run instead of once per copy. It
// needs a second AF_PACKET socket, with PACKET_VNET_HDR and without the
// qdisc bypass: the bypass (dev_direct_xmit) drops a packet that needs
// segmenting in software. Over IPv6 the runs leave behind an IPv6 header
// (segTx.fill6, packet6_linux.go).

import (
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segHdrLen is the header of a run: the virtio-net header, then the
// Ethernet, IPv4 and UDP headers of the packet the kernel splits.
const segHdrLen = VnetHdrLen + ethIPLen + UDPHeaderLen

// segRun is the copies of a batch that leave as one packet: one flow to
// one peer, every copy the size of the first but the last, which may be
// shorter and ends the run.
type segRun struct {
	r          *peerRoute
	head, tail int // messages, linked through segTx.next
	count      int
	seg, bytes int // the UDP payload of one copy and of the run
	closed     bool
}

// segTx is the segmentation-offload socket of a VXLAN packetTx. Its
// scratch arrays are allocated once and used under Conn.wmu.
type segTx struct {
	off  *Offload // OffloadPacketGSO
	file *os.File
	rc   syscall.RawConn
	sll  unix.RawSockaddrLinklayer
	b    *batchIO     // one header per run
	iovs []unix.Iovec // per header: ours, then each copy's payload
	hdrs []byte       // segHdrLen (segHdr6Len over IPv6) bytes per header
	fn   func(fd uintptr)
	v6   bool

	runs  []segRun
	next  []int
	open  runTable // the open run of each flow and peer
	owner []int    // the run of each header
}

// openSegTx opens the segmentation-offload socket on ifindex, or returns
// nil with off disabled and the reason.
func openSegTx(ifindex, batch int, v6 bool, off *Offload, log *slog.Logger) *segTx {
	fd, _, err := packetSocket(ifindex, log)
	if err != nil {
		off.disable(probeError("open AF_PACKET socket", err, ""))
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		off.disable(probeError("setsockopt PACKET_VNET_HDR", err, ""))
		return nil
	}
	// Through the queueing discipline, where a packet is segmented.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 0); err != nil {
		unix.Close(fd)
		off.disable(probeError("setsockopt PACKET_QDISC_BYPASS 0", err, ""))
		return nil
	}
	ethType, hl := uint16(unix.ETH_P_IP), segHdrLen
	if v6 {
		ethType, hl = unix.ETH_P_IPV6, segHdr6Len
	}
	s := &segTx{
		off:   off,
		file:  os.NewFile(uintptr(fd), "packet-gso"),
		sll:   unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(ethType), Ifindex: int32(ifindex)},
		b:     newBatchIO(batch),
		iovs:  make([]unix.Iovec, batch*(1+maxGSOSegments)),
		hdrs:  make([]byte, batch*hl),
		owner: make([]int, batch),
		v6:    v6,
	}
	if s.rc, err = s.file.SyscallConn(); err != nil {
		s.file.Close()
		off.disable(probeError("AF_PACKET socket", err, ""))
		return nil
	}
	for i := range s.b.hdrs {
		h := &s.b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.sll))
		h.Namelen = unix.SizeofSockaddrLinklayer
	}
	s.fn = func(fd uintptr) { sendmmsgNow(s.b, fd) }
	if err := probeSegLoopback(); err != nil {
		s.file.Close()
		off.disable(probeError("send a VIRTIO_NET_HDR_GSO_UDP_L4 packet on the loopback interface", err, "Linux 6.2"))
		return nil
	}
	off.enable()
	return s
}

// probeSegLoopback asks the kernel whether it takes a packet with
// VIRTIO_NET_HDR_GSO_UDP_L4 from an AF_PACKET socket (Linux 6.2; before,
// sendmsg returns EINVAL), without sending anything on the underlay: it
// sends one small run of two copies on the loopback interface, addressed
// to an Ethernet address that is not the interface's, so the IP stack
// drops it on receipt. It returns nil where the kernel took the packet or
// where the question cannot be asked (no loopback interface, loopback
// down): there, a refusal on the underlay still falls back without loss.
func probeSegLoopback() error {
	if e := injected(OffloadPacketGSO + "_probe"); e != 0 {
		return e
	}
	lo := loopbackIndex()
	if lo == 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	if unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) != nil {
		return nil
	}
	const seg = 8
	var pkt [segHdrLen + 2*seg]byte
	h := pkt[:]
	h[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	h[1] = unix.VIRTIO_NET_HDR_GSO_UDP_L4
	binary.NativeEndian.PutUint16(h[2:4], ethIPLen+UDPHeaderLen)
	binary.NativeEndian.PutUint16(h[4:6], seg)
	binary.NativeEndian.PutUint16(h[6:8], ethIPLen)
	binary.NativeEndian.PutUint16(h[8:10], 6)
	e := h[VnetHdrLen:]
	copy(e[0:6], []byte{0x02, 0, 0, 0, 0, 0x01}) // not the loopback's address
	copy(e[6:12], []byte{0x02, 0, 0, 0, 0, 0x02})
	binary.BigEndian.PutUint16(e[12:14], unix.ETH_P_IP)
	ip := e[EthHeaderLen:]
	udpLen := UDPHeaderLen + 2*seg
	ip[0], ip[8], ip[9] = 0x45, 1, ProtoUDP
	binary.BigEndian.PutUint16(ip[2:], uint16(IPv4HeaderLen+udpLen))
	copy(ip[12:16], []byte{127, 0, 0, 1})
	copy(ip[16:20], []byte{127, 0, 0, 1})
	var sum uint32
	for o := 0; o < IPv4HeaderLen; o += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[o:]))
	}
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum))
	u := ip[IPv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], 9) // discard
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	binary.BigEndian.PutUint16(u[6:], fold(uint32(ProtoUDP)+uint32(udpLen)+2*0x7f00+2*0x0001))
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: lo}
	err = unix.Sendto(fd, h, unix.MSG_DONTWAIT, sa)
	if err != nil && refusesOffload(Errno(err)) {
		return err
	}
	return nil
}

// loopbackIndex returns the index of an up loopback interface, or 0.
func loopbackIndex() int {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Index
		}
	}
	return 0
}

// group moves the copies of p.pk that have company of their flow and peer
// into runs, and leaves the others in p.pk, in their order.
func (s *segTx) group(msgs []Message, p *packetTx) {
	s.runs = s.runs[:0]
	s.open.reset(len(p.pk))
	if cap(s.next) < len(msgs) {
		s.next = make([]int, len(msgs))
	}
	s.next = s.next[:len(msgs)]
	for j, i := range p.pk {
		m := &msgs[i]
		s.next[i] = -1
		var key uint64
		var ok bool
		if s.v6 {
			key, ok = runKey6Of(m, p.route[j])
		} else {
			key, ok = runKeyOf(m)
		}
		if !ok {
			s.runs = append(s.runs, segRun{r: p.route[j], head: i, tail: i, count: 1, closed: true})
			continue
		}
		plen := len(m.Buf) - UDPHeaderLen
		slot := s.open.slot(key)
		if v := s.open.val[slot]; v > 0 {
			run := &s.runs[v-1]
			if !run.closed && run.count < maxGSOSegments && plen <= run.seg && run.bytes+plen <= maxGSOBytes {
				s.next[run.tail] = i
				run.tail = i
				run.count++
				run.bytes += plen
				run.closed = plen < run.seg
				continue
			}
		}
		s.open.set(slot, key, int32(len(s.runs)+1))
		s.runs = append(s.runs, segRun{r: p.route[j], head: i, tail: i, count: 1, seg: plen, bytes: plen})
	}
	// Runs of one copy go back to p.pk; the others stay, in the order of
	// their first copy.
	p.pk, p.route = p.pk[:0], p.route[:0]
	k := 0
	for _, run := range s.runs {
		if run.count == 1 {
			p.pk, p.route = append(p.pk, run.head), append(p.route, run.r)
			continue
		}
		s.runs[k] = run
		k++
	}
	s.runs = s.runs[:k]
}

// send sends the runs, as few sendmmsg calls as the headers allow. The
// copies of a run the kernel refuses go to p's socket-path list; if the
// kernel refused the offload itself, it is off from then on and the runs
// not sent yet go there too.
func (s *segTx) send(msgs []Message, p *packetTx) {
	b := s.b
	for start := 0; start < len(s.runs); {
		nh := min(len(s.runs)-start, len(b.hdrs))
		niov := 0
		for k := range nh {
			if s.v6 {
				niov += s.fill6(msgs, start+k, k, niov)
			} else {
				niov += s.fill(msgs, start+k, k, niov)
			}
		}
		for sent := 0; sent < nh; {
			b.start, b.cnt, b.n, b.errno = sent, nh-sent, 0, 0
			if e := injected(OffloadPacketGSO); e != 0 {
				b.errno = e
			} else if err := s.rc.Control(s.fn); err != nil {
				b.errno = unix.EBADF
			}
			if b.errno == 0 {
				for k := sent; k < sent+b.n; k++ {
					run := &s.runs[s.owner[k]]
					for i := run.head; i >= 0; i = s.next[i] {
						msgs[i].N, msgs[i].Errno = len(msgs[i].Buf), 0
					}
					p.packet.Add(uint64(run.count))
					p.segmented.Add(uint64(run.count))
				}
				sent += b.n
				continue
			}
			run := &s.runs[s.owner[sent]]
			if refusesOffload(b.errno) {
				// Not this run: the offload. Everything left goes
				// through the socket path.
				s.off.fallBack("sendmmsg with VIRTIO_NET_HDR_GSO_UDP_L4 (needs Linux 6.2)", b.errno)
				for r := s.owner[sent]; r < len(s.runs); r++ {
					s.resend(msgs, p, &s.runs[r])
				}
				return
			}
			for i := run.head; i >= 0; i = s.next[i] {
				p.refused(msgs, i, run.r, b.errno)
			}
			sent++
		}
		start += nh
	}
}

// resend queues the copies of run for the socket path, counted as
// copies AF_PACKET refused.
func (s *segTx) resend(msgs []Message, p *packetTx, run *segRun) {
	for i := run.head; i >= 0; i = s.next[i] {
		p.sock, p.at = append(p.sock, msgs[i]), append(p.at, i)
	}
	p.off.fallbacks.Add(uint64(run.count))
}

// fill writes header k for run r, starting at iovec niov, and returns how
// many iovecs it used.
func (s *segTx) fill(msgs []Message, r, k, niov int) int {
	run := &s.runs[r]
	s.owner[k] = r
	h := s.hdrs[k*segHdrLen : (k+1)*segHdrLen : (k+1)*segHdrLen]
	// The virtio-net header, in the host's byte order (legacy virtio).
	h[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	h[1] = unix.VIRTIO_NET_HDR_GSO_UDP_L4
	binary.NativeEndian.PutUint16(h[2:4], ethIPLen+UDPHeaderLen) // hdr_len
	binary.NativeEndian.PutUint16(h[4:6], uint16(run.seg))       // gso_size
	binary.NativeEndian.PutUint16(h[6:8], ethIPLen)              // csum_start
	binary.NativeEndian.PutUint16(h[8:10], 6)                    // csum_offset
	// The IPv4 header of the whole run: the kernel writes each copy's
	// total length and checksum, and the ID counting up from this one.
	e := h[VnetHdrLen:]
	copy(e, run.r.hdr[:])
	udpLen := UDPHeaderLen + run.bytes
	tot := uint32(IPv4HeaderLen + udpLen)
	binary.BigEndian.PutUint16(e[hdrTotLen:], uint16(tot))
	sum := run.r.sum + tot
	if !run.r.zeroID {
		id := run.r.st.id
		run.r.st.id += uint16(run.count)
		binary.BigEndian.PutUint16(e[hdrID:], id)
		sum += uint32(id)
	}
	binary.BigEndian.PutUint16(e[hdrSum:], ^fold(sum))
	// The UDP header: the ports of the flow, the length of the run, and
	// the pseudo-header sum, for the kernel to finish per copy.
	u := e[ethIPLen:]
	copy(u[0:4], msgs[run.head].Buf[0:4])
	binary.BigEndian.PutUint16(u[4:6], uint16(udpLen))
	ip := e[EthHeaderLen:]
	ps := uint32(ProtoUDP) + uint32(udpLen)
	for o := 12; o < 20; o += 2 {
		ps += uint32(binary.BigEndian.Uint16(ip[o:]))
	}
	binary.BigEndian.PutUint16(u[6:8], fold(ps))
	return s.runIovecs(k, h[:segHdrLen], msgs, run.head, niov)
}

// runIovecs points message k of the next sendmmsg at the run that starts
// at message head: its header hdr, then each copy's VXLAN header and
// frame, in the iovecs from niov on. It returns how many it used.
func (s *segTx) runIovecs(k int, hdr []byte, msgs []Message, head, niov int) int {
	first := niov
	s.iovs[niov] = unix.Iovec{Base: &hdr[0]}
	s.iovs[niov].SetLen(len(hdr))
	niov++
	for i := head; i >= 0; i = s.next[i] {
		pl := msgs[i].Buf[UDPHeaderLen:]
		s.iovs[niov] = unix.Iovec{Base: unsafe.SliceData(pl)}
		s.iovs[niov].SetLen(len(pl))
		niov++
	}
	mh := &s.b.hdrs[k].hdr
	mh.Iov = &s.iovs[first]
	mh.SetIovlen(niov - first)
	return niov - first
}

func (s *segTx) close() error { return s.file.Close() }

// fold folds a 32-bit one's-complement sum to 16 bits.
func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}
