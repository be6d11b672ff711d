package overlay

// Egress through AF_PACKET: the copies to a peer whose next hop the kernel
// has resolved leave through a packet socket bound to the underlay
// interface, behind an Ethernet and IPv4 (or IPv6: packet6_linux.go)
// header that meshcast writes, instead of crossing the IP output path
// (routing, netfilter, the neighbour table and, with PACKET_QDISC_BYPASS,
// the queueing discipline) once per copy. The resolver (neigh_linux.go) follows the kernel's routes
// and neighbours and publishes, per peer, whether and how its copies may
// go this way; every other copy goes through the IP sockets as before.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ethIPLen is the header meshcast writes in front of each copy it sends
// through AF_PACKET: Ethernet and IPv4 without options.
const ethIPLen = EthHeaderLen + IPv4HeaderLen

// Offsets in that header.
const (
	hdrTotLen = EthHeaderLen + 2
	hdrID     = EthHeaderLen + 4
	hdrSum    = EthHeaderLen + 10
)

// packetWarnEvery spaces the warnings about copies the packet socket
// refused.
const packetWarnEvery = time.Minute

// peerRoute is how the copies to one peer leave, as the resolver last
// found it. It is immutable once published.
type peerRoute struct {
	st *peerState
	// ok: the route to the peer leaves through the bound interface and
	// its next hop's neighbour entry is usable, so that copies may go
	// through AF_PACKET behind hdr. elsewhere: not ok for another reason
	// than the neighbour entry (the route, the interface, IPsec).
	ok, elsewhere bool
	// hdr is the Ethernet and IPv4 header with total length, ID and
	// checksum zero; sum is the one's-complement sum of its IPv4 words,
	// not folded.
	hdr [ethIPLen]byte
	sum uint32
	// Over IPv6: hdr6 is the Ethernet and IPv6 header with payload
	// length zero, and psum the UDP pseudo-header's sum of addresses and
	// next header, not folded.
	hdr6 [ethIP6Len]byte
	psum uint32
	// zeroID: the ID stays 0, as the kernel leaves it on a packet with DF
	// from a socket that does not let it fragment (IP_PMTUDISC_DO or
	// _PROBE). Otherwise, as with the default IP_PMTUDISC_WANT, each copy
	// takes the next ID of its peer's counter, as each takes the next of
	// the kernel's counter for the addresses and protocol.
	zeroID bool
	// maxLen is the longest packet (from the L4 header on) that fits the
	// route's MTU; a longer one goes through the socket path, which
	// fragments it or refuses it as it always did.
	maxLen int
}

// peerState is what the data path and the resolver share about one peer,
// for as long as the peer is known.
type peerState struct {
	// used is set by WriteBatch and cleared by the resolver, which
	// forgets a peer that stays unused.
	used atomic.Bool
	// nudge sends the next copy through the socket path, so that the
	// kernel confirms a stale neighbour entry as it would if every copy
	// went that way.
	nudge atomic.Bool
	// hold keeps the peer on the socket path after the packet socket
	// refused one of its copies, until the resolver's next tick.
	hold atomic.Bool
	// id is the next IPv4 ID (unless the route has zeroID); WriteBatch
	// owns it (under Conn.wmu).
	id uint16
	// seq numbers the peers the resolver follows (it keys the runs of
	// segmentation offload over IPv6).
	seq uint32
}

// peerTable maps a peer's underlay address to its route: m over an IPv4
// underlay, m6 over IPv6.
type peerTable struct {
	m  map[[4]byte]*peerRoute
	m6 map[[16]byte]*peerRoute
}

// PacketEgressStats counts what a Conn sent through AF_PACKET and what it
// sent through its IP sockets while AF_PACKET egress was in use.
type PacketEgressStats struct {
	// Packet is the copies the packet sockets took.
	Packet uint64
	// Socket is the copies sent through the IP sockets because their
	// peer was not resolved yet, leaves through another interface, the
	// copy was larger than the route's MTU, or the kernel's neighbour
	// entry needed confirming. Copies that the packet socket refused and
	// that were sent again are in the offload's Fallbacks instead.
	Socket uint64
	// Unresolved is the part of Socket whose peer the resolver had not
	// seen yet or had found no usable neighbour entry for.
	Unresolved uint64
	// Segmented is the part of Packet that left in runs, several copies
	// of one VXLAN flow to one peer as one packet that the kernel split
	// (OffloadPacketGSO).
	Segmented uint64
	// Peers is the number of peers the resolver follows, and Resolved
	// how many of them take AF_PACKET.
	Peers, Resolved int
	// QdiscBypass reports whether the packet socket skips the queueing
	// discipline (PACKET_QDISC_BYPASS).
	QdiscBypass bool
	// Interface is the underlay interface the packet socket is bound to.
	Interface string
}

// packetTx sends copies through an AF_PACKET socket. Its scratch arrays
// are allocated once and used under Conn.wmu.
type packetTx struct {
	off   *Offload
	file  *os.File
	rc    syscall.RawConn
	res   *resolver
	table atomic.Pointer[peerTable]
	// bypassOK: the kernel takes PACKET_QDISC_BYPASS; bypass: the packet
	// socket skips the queueing discipline now.
	bypassOK bool
	bypass   atomic.Bool
	ifname   string
	log      *slog.Logger
	// v6: the underlay is IPv6; udp6: and the copies are VXLAN, whose
	// UDP header goes into each copy's header, behind a virtio-net
	// header. hlen is the length of a copy's header.
	v6, udp6 bool
	hlen     int

	b    *batchIO     // headers of one sendmmsg, each with two iovecs
	iovs []unix.Iovec // two per header: ours and the packet
	hdrs []byte       // hlen bytes per header
	sll  unix.RawSockaddrLinklayer
	fn   func(fd uintptr)

	pk    []int        // the messages that go through AF_PACKET
	route []*peerRoute // and their routes
	sock  []Message    // copies for the socket path
	at    []int        // their index in the batch

	seg *segTx // VXLAN runs; nil for GRE or when off

	packet, socket, unresolved, segmented atomic.Uint64

	warnAt     time.Time // when the last warning about a refused copy was logged
	suppressed int       // copies refused since, not logged
}

// packetSocket opens an AF_PACKET socket bound to ifindex that sends only:
// protocol 0 registers no receive handler. It asks for PACKET_QDISC_BYPASS
// and reports whether the kernel took it (the resolver turns it off again
// where the interface has a queueing discipline an operator installed).
func packetSocket(ifindex int, log *slog.Logger) (fd int, bypass bool, err error) {
	return packetSocketVnet(ifindex, false, log)
}

// packetSocketVnet opens the packet socket as packetSocket does; with
// vnet, its packets start with a virtio-net header (PACKET_VNET_HDR).
func packetSocketVnet(ifindex int, vnet bool, log *slog.Logger) (fd int, bypass bool, err error) {
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("socket(AF_PACKET, SOCK_RAW, 0): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("bind AF_PACKET to interface %d: %w", ifindex, err)
	}
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			unix.Close(fd)
			return -1, false, fmt.Errorf("setsockopt PACKET_VNET_HDR: %w", err)
		}
	}
	bypass = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1) == nil
	setBuffer(fd, sendBuffer, log)
	return fd, bypass, nil
}

// underlayLink returns the interface that holds local.
func underlayLink(h *netlink.Handle, local netip.Addr) (netlink.Link, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, family(local)) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == local {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("interface %d of %v: %w", a.LinkIndex, local, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface holds %v", local)
}

// etherLink reports why AF_PACKET egress cannot use l, or "".
func etherLink(l netlink.Link) string {
	a := l.Attrs()
	if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
		return fmt.Sprintf("interface %s is %s, not Ethernet", a.Name, a.EncapType)
	}
	return ""
}

// openPacketTx opens AF_PACKET egress for a Conn that sends protocol proto
// from local, and starts its resolver. sockHdr reads the header fields
// that the Conn's socket path would write. It returns the reason when it
// cannot, with off disabled; err is set when the kernel refused with an
// errno (which the caller logs once).
func openPacketTx(local netip.Addr, proto uint8, batch int, sockHdr func() (sockHeader, error), off, segOff *Offload, log *slog.Logger) (p *packetTx, err error) {
	fail := func(reason string, e error) (*packetTx, error) {
		off.disable(reason)
		if segOff != nil {
			segOff.disable(reason)
		}
		return nil, e
	}
	v6 := local.Is6() && !local.Is4In6()
	if v6 && (local.IsUnspecified() || local.IsMulticast() || local.IsLinkLocalUnicast()) {
		return fail(fmt.Sprintf("local address %v is not a global or unique local IPv6 address", local), nil)
	}
	if !v6 && (!local.Is4() || local.IsUnspecified()) {
		return fail(fmt.Sprintf("local address %v is not a unicast IPv4 address", local), nil)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fail(probeError("netlink socket", err, ""), err)
	}
	link, err := underlayLink(h, local)
	if err != nil {
		h.Close()
		return fail(probeError("find the underlay interface", err, ""), err)
	}
	if why := etherLink(link); why != "" {
		h.Close()
		return fail(why, nil)
	}
	ifindex := link.Attrs().Index
	watch, err := watchSocket(v6)
	if err != nil {
		h.Close()
		return fail(probeError("subscribe to route and neighbour updates", err, ""), err)
	}
	var hops *hopProbe
	if v6 {
		if hops, err = newHopProbe(local); err != nil {
			watch.Close()
			h.Close()
			return fail(probeError("open a UDP socket on "+local.String()+" to read hop limits and MTUs", err, ""), err)
		}
	}
	udp6 := v6 && proto == ProtoUDP
	fd, bypass, err := packetSocketVnet(ifindex, udp6, log)
	if err != nil {
		if hops != nil {
			hops.close()
		}
		watch.Close()
		h.Close()
		return fail(probeError("open AF_PACKET socket on "+link.Attrs().Name, err, ""), err)
	}
	hlen, ethType := ethIPLen, uint16(unix.ETH_P_IP)
	if v6 {
		hlen, ethType = greHdr6Len, unix.ETH_P_IPV6
		if udp6 {
			hlen = vxlanHdr6Len
		}
	}
	p = &packetTx{
		off:      off,
		file:     os.NewFile(uintptr(fd), "packet-tx"),
		bypassOK: bypass,
		ifname:   link.Attrs().Name,
		log:      log,
		v6:       v6,
		udp6:     udp6,
		hlen:     hlen,
		b:        newBatchIO(batch),
		iovs:     make([]unix.Iovec, 2*batch),
		hdrs:     make([]byte, hlen*batch),
	}
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		if hops != nil {
			hops.close()
		}
		watch.Close()
		h.Close()
		return fail(probeError("AF_PACKET socket", err, ""), err)
	}
	p.sll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(ethType), Ifindex: int32(ifindex)}
	for i := range p.b.hdrs {
		h := &p.b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&p.sll))
		h.Namelen = unix.SizeofSockaddrLinklayer
		h.Iov = &p.iovs[2*i]
		h.SetIovlen(2)
		p.iovs[2*i].Base = &p.hdrs[i*hlen]
		p.iovs[2*i].SetLen(hlen)
	}
	if v6 {
		p.initHdrs6()
	}
	p.fn = func(fd uintptr) { sendmmsgNow(p.b, fd) }
	p.table.Store(&peerTable{})
	// IPsec policies are read where the kernel lets us; a kernel without
	// NETLINK_XFRM has none that netlink could have set.
	xfrm, _ := netlink.NewHandle(unix.NETLINK_XFRM)
	var xwatch *watchConn
	if xfrm != nil {
		xwatch, _ = xfrmWatchSocket()
	}
	p.bypass.Store(bypass)
	p.res = newResolver(resolverConfig{
		h: h, xfrm: xfrm, watch: watch, xwatch: xwatch, hops: hops, local: local, link: link, proto: proto,
		sockHdr: sockHdr, log: log, publish: func(t *peerTable) { p.table.Store(t) },
		setBypass: p.setBypass,
	})
	if segOff != nil {
		p.seg = openSegTx(ifindex, batch, v6, segOff, log)
	}
	off.enable()
	return p, nil
}

// writeBatch sends msgs: the copies to resolved peers through AF_PACKET,
// the rest through socket (the Conn's IP sockets), first, so that a peer's
// first copies keep their order. With segmentation offload (VXLAN), the
// copies of a flow that has several to one peer leave as one packet. A
// copy the packet socket refuses is sent again at once through socket.
func (p *packetTx) writeBatch(msgs []Message, socket func([]Message) (int, error)) (failed int, err error) {
	t := p.table.Load()
	p.pk, p.route = p.pk[:0], p.route[:0]
	p.sock, p.at = p.sock[:0], p.at[:0]
	var unresolved, other uint64
	for i := range msgs {
		m := &msgs[i]
		var r *peerRoute
		if p.v6 {
			if !m.Addr.Is6() || m.Addr.Is4In6() || len(m.Buf) < UDPHeaderLen {
				p.sock, p.at = append(p.sock, *m), append(p.at, i)
				other++
				continue
			}
			r = t.m6[m.Addr.As16()]
		} else {
			if !m.Addr.Is4() || len(m.Buf) == 0 {
				p.sock, p.at = append(p.sock, *m), append(p.at, i)
				other++
				continue
			}
			r = t.m[m.Addr.As4()]
		}
		switch {
		case r == nil:
			p.res.request(m.Addr)
			unresolved++
		case !r.st.used.Load():
			r.st.used.Store(true)
			fallthrough
		default:
			if !r.ok {
				if r.elsewhere {
					other++
				} else {
					unresolved++
				}
				break
			}
			if r.st.hold.Load() || len(m.Buf) > r.maxLen || (r.st.nudge.Load() && r.st.nudge.CompareAndSwap(true, false)) {
				other++
				break
			}
			p.pk, p.route = append(p.pk, i), append(p.route, r)
			continue
		}
		p.sock, p.at = append(p.sock, *m), append(p.at, i)
	}
	if unresolved+other > 0 {
		p.unresolved.Add(unresolved)
		p.socket.Add(unresolved + other)
		f, err := p.viaSocket(msgs, socket)
		failed += f
		if err != nil {
			return failed, err
		}
	}
	if len(p.pk) == 0 {
		return failed, nil
	}
	p.sock, p.at = p.sock[:0], p.at[:0]
	if p.seg != nil && p.seg.off.InUse() && len(p.pk) > 1 {
		p.seg.group(msgs, p)
		p.seg.send(msgs, p)
	}
	for start := 0; start < len(p.pk); {
		n := min(len(p.pk)-start, len(p.b.hdrs))
		if p.v6 {
			p.fill6(msgs, start, n)
		} else {
			p.fill(msgs, start, n)
		}
		for sent := 0; sent < n; {
			b := p.b
			b.start, b.cnt, b.n, b.errno = sent, n-sent, 0, 0
			if e := injected(OffloadPacketTx); e != 0 {
				b.errno = e
			} else if err := p.rc.Control(p.fn); err != nil {
				// The packet socket is closed: the rest goes through the
				// IP sockets.
				b.errno = unix.EBADF
			}
			if b.errno == 0 {
				for j := start + sent; j < start+sent+b.n; j++ {
					m := &msgs[p.pk[j]]
					m.N, m.Errno = len(m.Buf), 0
				}
				p.packet.Add(uint64(b.n))
				sent += b.n
				continue
			}
			// The first message of this call was refused.
			j := start + sent
			p.refused(msgs, p.pk[j], p.route[j], b.errno)
			sent++
		}
		start += n
	}
	if len(p.sock) > 0 {
		f, err := p.viaSocket(msgs, socket)
		failed += f
		if err != nil {
			return failed, err
		}
	}
	return failed, nil
}

// fill writes the headers and iovecs of the messages p.pk[start:start+n].
func (p *packetTx) fill(msgs []Message, start, n int) {
	for k := range n {
		r := p.route[start+k]
		buf := msgs[p.pk[start+k]].Buf
		h := p.hdrs[k*ethIPLen : (k+1)*ethIPLen : (k+1)*ethIPLen]
		copy(h, r.hdr[:])
		tot := uint32(IPv4HeaderLen + len(buf))
		binary.BigEndian.PutUint16(h[hdrTotLen:], uint16(tot))
		s := r.sum + tot
		if !r.zeroID {
			id := r.st.id
			r.st.id++
			binary.BigEndian.PutUint16(h[hdrID:], id)
			s += uint32(id)
		}
		binary.BigEndian.PutUint16(h[hdrSum:], ^fold(s))
		iov := &p.iovs[2*k+1]
		iov.Base = unsafe.SliceData(buf)
		iov.SetLen(len(buf))
	}
}

// refused queues message i, which the packet socket refused with errno, to
// be sent again through the socket path, counts it, and warns at most
// once per packetWarnEvery. Unless the error is a full device queue, its
// peer stays on the socket path until the resolver's next tick, and the
// resolver looks at the interface again now.
func (p *packetTx) refused(msgs []Message, i int, r *peerRoute, errno unix.Errno) {
	p.sock, p.at = append(p.sock, msgs[i]), append(p.at, i)
	p.off.fallbacks.Add(1)
	if errno != unix.ENOBUFS && errno != unix.EAGAIN {
		r.st.hold.Store(true)
		p.res.kick()
	}
	now := time.Now()
	if !p.warnAt.IsZero() && now.Sub(p.warnAt) < packetWarnEvery {
		p.suppressed++
		return
	}
	p.log.Warn("AF_PACKET socket refused a copy: sent again through the IP socket, not lost",
		"offload", OffloadPacketTx, "interface", p.ifname, "peer", msgs[i].Addr,
		"errno", ErrnoName(errno), "err", errno.Error(), "refused_since_last_warning", p.suppressed,
		"fallbacks", p.off.fallbacks.Load())
	p.warnAt, p.suppressed = now, 0
}

// viaSocket sends p.sock through socket and copies the outcome back to
// the batch.
func (p *packetTx) viaSocket(msgs []Message, socket func([]Message) (int, error)) (int, error) {
	failed, err := socket(p.sock)
	for j, at := range p.at {
		msgs[at].N, msgs[at].Errno = p.sock[j].N, p.sock[j].Errno
	}
	clear(p.sock)
	return failed, err
}

// setBypass turns PACKET_QDISC_BYPASS on or off, where the kernel takes
// it, and reports whether the socket skips the queueing discipline now.
func (p *packetTx) setBypass(on bool) bool {
	if !p.bypassOK || p.bypass.Load() == on {
		return p.bypass.Load()
	}
	v := 0
	if on {
		v = 1
	}
	var err error
	if cerr := p.rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, v)
	}); cerr != nil || err != nil {
		return p.bypass.Load()
	}
	p.bypass.Store(on)
	return on
}

// stats returns the counters and the resolver's view.
func (p *packetTx) stats() PacketEgressStats {
	s := PacketEgressStats{
		Packet: p.packet.Load(), Socket: p.socket.Load(), Unresolved: p.unresolved.Load(), Segmented: p.segmented.Load(),
		QdiscBypass: p.bypass.Load(), Interface: p.ifname,
	}
	t := p.table.Load()
	for _, r := range t.m {
		s.Peers++
		if r.ok {
			s.Resolved++
		}
	}
	for _, r := range t.m6 {
		s.Peers++
		if r.ok {
			s.Resolved++
		}
	}
	return s
}

func (p *packetTx) close() error {
	p.res.stop()
	if p.seg != nil {
		p.seg.close()
	}
	return p.file.Close()
}

// sockHeader is what the socket path writes into the outer IPv4 header of
// a copy, as the Conn's send socket reports it. Over IPv6, ttl is the hop
// limit, tos the traffic class, and autoFlow whether the kernel labels
// the flow (readSockHeader6).
type sockHeader struct {
	ttl, tos int
	pmtudisc int // IP_MTU_DISCOVER
	autoFlow bool
	// hopsSet: the socket's hop limit is not the default one, so it
	// overrides the route's (IPv6).
	hopsSet bool
}

// readSockHeader reads the header fields of the socket behind rc: its TTL
// (net.ipv4.ip_default_ttl unless set on the socket), TOS and path MTU
// discovery mode.
func readSockHeader(rc syscall.RawConn) (sockHeader, error) {
	var h sockHeader
	var errs []error
	err := rc.Control(func(fd uintptr) {
		var err error
		h.ttl, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL)
		errs = append(errs, err)
		h.tos, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS)
		errs = append(errs, err)
		h.pmtudisc, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
		errs = append(errs, err)
	})
	if err != nil {
		return h, err
	}
	return h, errors.Join(errs...)
}

// setsDF reports whether the socket path sets DF on a packet that fits
// the route's MTU, as __ip_make_skb decides: always with
// IP_PMTUDISC_DO and _PROBE, and with _WANT (the default) unless the
// route's MTU is locked.
func (s sockHeader) setsDF(mtuLocked bool) bool {
	switch s.pmtudisc {
	case unix.IP_PMTUDISC_DO, unix.IP_PMTUDISC_PROBE:
		return true
	case unix.IP_PMTUDISC_WANT:
		return !mtuLocked
	}
	return false
}

// zeroID reports whether the socket path leaves the ID of a packet with
// DF at 0, as ip_select_ident does for an unconnected socket unless the
// packet may be fragmented (skb->ignore_df, which __ip_make_skb sets for
// modes below IP_PMTUDISC_DO).
func (s sockHeader) zeroID(df bool) bool { return df && s.pmtudisc >= unix.IP_PMTUDISC_DO }

// buildHeader writes the Ethernet and IPv4 header of copies from src to
// dst into r, with total length, ID and checksum left zero.
func (r *peerRoute) buildHeader(dstMAC, srcMAC net.HardwareAddr, src, dst [4]byte, proto uint8, ttl, tos int, df, zeroID bool) {
	h := r.hdr[:]
	copy(h[0:6], dstMAC)
	copy(h[6:12], srcMAC)
	binary.BigEndian.PutUint16(h[12:14], unix.ETH_P_IP)
	ip := h[EthHeaderLen:]
	ip[0] = 0x45
	ip[1] = byte(tos)
	if df {
		binary.BigEndian.PutUint16(ip[6:8], 0x4000)
	}
	ip[8] = byte(ttl)
	ip[9] = proto
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	r.sum = 0
	for i := 0; i < IPv4HeaderLen; i += 2 {
		r.sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	r.zeroID = zeroID
}

// peerSeq numbers the peers the resolvers follow.
var peerSeq atomic.Uint32

// newPeerState returns the state of a peer the resolver starts to follow.
func newPeerState() *peerState {
	s := &peerState{id: uint16(rand.Uint32()), seq: peerSeq.Add(1)}
	s.used.Store(true)
	return s
}

// runTable maps the flow and peer of a VXLAN copy (source port,
// destination port, destination address) to a value: an open-addressing
// table reused from batch to batch, which grows only with the batch.
type runTable struct {
	keys  []uint64
	val   []int32 // 0: the slot is free
	shift uint
}

// runKeyOf returns the flow and peer of a VXLAN copy.
func runKeyOf(m *Message) (uint64, bool) {
	if !m.Addr.Is4() || len(m.Buf) < UDPHeaderLen+VXLANHeaderLen {
		return 0, false
	}
	a := m.Addr.As4()
	return uint64(binary.BigEndian.Uint32(a[:]))<<32 | uint64(binary.BigEndian.Uint32(m.Buf[0:4])), true
}

// reset empties the table for a batch of n copies.
func (t *runTable) reset(n int) {
	size, shift := 16, uint(60)
	for size < 2*n {
		size, shift = size*2, shift-1
	}
	if len(t.keys) < size {
		t.keys, t.val, t.shift = make([]uint64, size), make([]int32, size), shift
		return
	}
	clear(t.val)
}

// slot returns the slot of key: where it is, or the free one to put it.
func (t *runTable) slot(key uint64) int {
	mask := len(t.keys) - 1
	for i := int((key * 0x9e3779b97f4a7c15) >> t.shift); ; i = (i + 1) & mask {
		if t.val[i] == 0 || t.keys[i] == key {
			return i
		}
	}
}

// set stores v (not 0) for key in slot i.
func (t *runTable) set(i int, key uint64, v int32) { t.keys[i], t.val[i] = key, v }

// sendmmsgNow sends the headers b.start to b.start+b.cnt on a packet
// socket without waiting. The packet sockets are in blocking mode, so that
// the runtime's poller does not watch them (it would be woken each time
// the kernel frees a sent packet, which makes the socket writable: a
// wake-up of an idle thread per copy), and each call asks for
// MSG_DONTWAIT. A full send buffer (EAGAIN) is refused like a full device
// queue: the copy goes through the IP socket.
func sendmmsgNow(b *batchIO, fd uintptr) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.start])),
			uintptr(b.cnt), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		b.n, b.errno = int(n), errno
		return
	}
}
