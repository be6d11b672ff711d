package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Message is one packet of a batch. On read, ReadBatch sets Buf to a view of
// the packet in the Conn's own buffers (valid until the next ReadBatch), N
// to its length and Addr to its sender. On write, Buf is the packet and
// Addr its destination, and WriteBatch sets N to len(Buf) when the kernel
// took the packet and to -1 and Errno to the kernel's reason when it
// refused it.
type Message struct {
	Buf   []byte
	N     int
	Addr  netip.Addr
	Errno unix.Errno
}

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2). The compiler
// pads it to the alignment of unix.Msghdr, as C does: 64 bytes on 64-bit
// Linux, 32 on 32-bit.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batchIO holds the scratch arrays of one direction of a socket, allocated
// once, so that a batch costs one system call and no allocation.
type batchIO struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	addrs []unix.RawSockaddrInet6 // room for either family's address
	bufs  [][]byte                // receive buffers, one per header
	ctrl  []byte                  // control buffers, ctrlLen bytes per header

	start, cnt int        // the headers the next system call covers
	n          int        // messages handled by the last system call
	errno      unix.Errno // error of the last system call
	fn         func(fd uintptr) bool
}

func newBatchIO(size int) *batchIO {
	b := &batchIO{
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		addrs: make([]unix.RawSockaddrInet6, size),
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.addrs[i]))
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.Iovlen = 1
	}
	return b
}

// setAddr makes header i address a (IPv4 or IPv6) at port, which raw
// sockets ignore.
func (b *batchIO) setAddr(i int, a netip.Addr, port uint16) {
	if a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.addrs[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(port), Addr: a.As4()}
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		return
	}
	b.addrs[i] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(port), Addr: a.As16()}
	b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
}

// addr returns the address the kernel wrote for header i: the sender of
// a received packet.
func (b *batchIO) addr(i int) netip.Addr {
	switch b.addrs[i].Family {
	case unix.AF_INET:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&b.addrs[i])).Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(b.addrs[i].Addr)
	}
	return netip.Addr{}
}

// Conn is an underlay socket pair for one encapsulation: it receives on rx
// and sends on tx (which may be the same socket) in batches with
// recvmmsg(2) and sendmmsg(2). ReadBatch must not run concurrently with
// itself; WriteBatch is safe for concurrent use (it takes a mutex once per
// batch, so the data path and rare control sends can share the socket).
type Conn struct {
	rx, tx     *os.File
	rxc, txc   syscall.RawConn
	rd, wr     *batchIO
	wmu        sync.Mutex // serializes WriteBatch
	closeFiles []*os.File

	gro  bool     // the receive socket coalesces datagrams (UDP_GRO)
	rest struct { // what the last recvmmsg read that ReadBatch has not returned
		i, n int // the next message of the last recvmmsg, and how many it read
		off  int // where its next segment starts
	}
	gso *gsoSender // VXLAN sends with UDP segmentation offload; nil: raw

	// The offloads of a VXLAN Conn (nil for GRE): whether they are in
	// use, and why not.
	groOff, gsoOff *Offload

	// AF_PACKET egress (both encapsulations): pkt is nil when it is off,
	// and pktOff says why; segOff is its segmentation offload (VXLAN).
	pkt            *packetTx
	pktOff, segOff *Offload

	// GRE receive through the AF_PACKET ring: prx is nil when it is off
	// (or closed, after its interface was deleted), and rxOff says why.
	// drainRaw: the raw socket may hold packets a predecessor without
	// the ring left, to read before the ring's. quiesced: readied for a
	// successor that holds both sockets (Quiesce).
	prx      atomic.Pointer[packetReceiver]
	rxOff    *Offload
	drainRaw bool
	drainFn  func(fd uintptr) // recvmmsg without waiting
	ringWarn time.Time        // when the last warning of ring drops was logged
	quiesced atomic.Bool
}

// DefaultBatch is the number of messages a Conn moves per system call.
const DefaultBatch = 64

const (
	// rxBufSize is a receive buffer: an IPv4 packet of a 9001-byte
	// underlay, with room to spare.
	rxBufSize = 16 << 10
	// groBufSize is a receive buffer of a socket that coalesces: the
	// largest UDP payload.
	groBufSize = 64 << 10
	// groBatch bounds the messages of one recvmmsg that coalesces; each
	// may hold up to 64 datagrams.
	groBatch = 16
	// ctrlLen holds one integer control message (UDP_GRO).
	ctrlLen = 32
)

// Options tune an underlay socket.
type Options struct {
	// Batch is the number of messages one system call moves; 0 means
	// DefaultBatch.
	Batch int
	// NoOffload turns off UDP segmentation and receive offload for VXLAN
	// and AF_PACKET egress for both encapsulations: every copy is then
	// its own packet, sent through a raw socket.
	NoOffload bool
	// NoPacketEgress turns off AF_PACKET egress alone (see ListenGRE):
	// every copy then crosses the kernel's IP output path, including
	// netfilter's OUTPUT and POSTROUTING hooks and the interface's
	// queueing discipline and tc egress filters, which AF_PACKET egress
	// skips.
	NoPacketEgress bool
	// PacketRx has GRE arrive through an AF_PACKET receive ring on the
	// underlay interface instead of the raw socket (unless NoOffload is
	// set): more packets per second for less CPU, but the kernel hands
	// the ring over a block at a time, when it is full or its timeout
	// (1 ms; on older kernels a timer tick) expired, so that at light
	// traffic a packet waits up to that long. The ring (like every packet
	// socket) sees packets before the IP stack's netfilter hooks; the raw
	// socket after them.
	PacketRx bool
	// Logger receives warnings: a socket option or an offload the kernel
	// refuses. nil means slog.Default().
	Logger *slog.Logger
	// Receive, if not nil, is the receive socket of an earlier Conn of the
	// same kind and address, kept open across a restart (a service
	// manager's file descriptor store), to use instead of opening one: what
	// peers sent meanwhile waits in its buffer. Listen checks it and
	// returns an error wrapping ErrNotOurSocket if it does not fit. The
	// Conn owns it from then on.
	Receive *os.File
	// ReceiveRing, if not nil, is the GRE receive ring of an earlier Conn
	// of the same address (ReceiveRingConn), handed over with Receive:
	// ListenGRE reads what waits in it first. One that does not fit is
	// closed, with a warning, and a ring opened instead. The Conn owns it
	// from then on.
	ReceiveRing *os.File
}

// ErrNotOurSocket is returned by ListenGRE and ListenVXLAN when
// Options.Receive is not a socket of the kind and address asked for.
var ErrNotOurSocket = errors.New("the stored socket is not the one asked for")

// reuse checks that f is a socket of type typ and protocol proto bound to
// local:port, enlarges its buffers again, and returns its descriptor,
// which f no longer owns.
func reuse(f *os.File, typ, proto int, local netip.Addr, port uint16, log *slog.Logger) (int, error) {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return -1, err
	}
	check := func() error {
		t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotOurSocket, err)
		}
		p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotOurSocket, err)
		}
		sa, err := unix.Getsockname(fd)
		var addr netip.Addr
		var aport int
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			addr, aport = netip.AddrFrom4(sa.Addr), sa.Port
		case *unix.SockaddrInet6:
			addr, aport = netip.AddrFrom16(sa.Addr), sa.Port
		}
		// A raw socket reports its protocol where a port would be.
		if err != nil || t != typ || (proto != 0 && p != proto) || addr != local || (typ != unix.SOCK_RAW && aport != int(port)) {
			return fmt.Errorf("%w: want a socket of type %d, protocol %d on %v:%d", ErrNotOurSocket, typ, proto, local, port)
		}
		return nil
	}
	if err := check(); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	unix.CloseOnExec(fd)
	f.Close()
	setBuffer(fd, recvBuffer, log)
	setBuffer(fd, sendBuffer, log)
	return fd, nil
}

// ReceiveConn returns the receive socket, for a service manager to keep
// across a restart (see Options.Receive).
func (c *Conn) ReceiveConn() syscall.RawConn { return c.rxc }

// The socket buffer sizes requested for underlay sockets. The send buffer
// is large so that copies queued for one slow destination (up to a full
// queueing discipline of 64 KiB segmentation-offload packets) never fill
// it: a full send buffer would hold back the copies to every other peer.
// Memory is used only by what is queued.
const (
	sndBuf = 64 << 20
	rcvBuf = 16 << 20
)

// ListenGRE opens a raw IPv4 socket for protocol 47 bound to local. It
// receives every GRE packet addressed to this host, outer IPv4 header
// included, and sends with the kernel writing the outer header. When local
// is an IPv6 address the socket is a raw IPv6 one, which receives GRE
// without the outer IPv6 header (Codec.DecapIPv6): the kernel has checked
// that header and processed its extension headers (reassembling
// fragments), and drops what fails there, counted in its own statistics
// (nstat's Ip6InHdrErrors, Ip6InTruncatedPkts and the like).
//
// Over an IPv6 underlay the receive ring is not used (its status says so,
// OffloadNoIPv6); AF_PACKET egress works as over IPv4, behind an Ethernet
// and IPv6 header that WriteBatch writes (see packet6_linux.go).
//
// Unless opts.NoPacketEgress or opts.NoOffload is set, both ListenGRE and
// ListenVXLAN also open AF_PACKET egress (OffloadPacketTx): an AF_PACKET
// socket bound to the interface that holds local (it must be an Ethernet
// interface). It skips the queueing discipline (PACKET_QDISC_BYPASS, where
// the kernel takes it) while the interface has only default ones
// (noqueue, pfifo_fast, fq_codel, fq, mq...); where an operator installed
// another or tc egress filters, its copies go through them. A copy to a
// peer whose route leaves through that interface and whose next hop has a
// usable neighbour entry (REACHABLE, STALE, DELAY, PROBE or PERMANENT)
// leaves through it behind an Ethernet and IPv4 header that WriteBatch
// writes as the socket would: the interface's address to the neighbour's;
// TTL and TOS as the socket reports them (the route's hop limit if it has
// one); DF where the socket sets it (path MTU discovery, the default); an
// ID that counts the copies to the peer, or 0 where the socket leaves it
// 0; and the protocol. For VXLAN the UDP header is the one Encap wrote,
// with a checksum of zero, as the raw socket sends it, except that the
// copies of a flow that has several to one peer in a batch leave as one
// packet behind a virtio-net header asking for UDP segmentation
// (OffloadPacketGSO, Linux 6.2; through a second AF_PACKET socket, which
// goes through the queueing discipline, where the kernel splits it): those
// copies carry a UDP checksum, as a UDP_SEGMENT send's do. Every other copy
// goes through the socket as before: to peers not resolved yet (whose
// first copies make the kernel ask ARP), routed through another interface,
// or behind IPsec policies; copies larger than the route's MTU; and, every
// 10 s, one copy to each peer whose entry is STALE, so that the kernel
// confirms it. The Conn follows the kernel's route, rule, link, neighbour,
// traffic control and IPsec policy updates, and reads everything again
// every 10 s. A copy the AF_PACKET socket refuses is sent again at once
// through the socket and counted in OffloadPacketTx's Fallbacks. Copies
// through AF_PACKET skip netfilter's OUTPUT and POSTROUTING hooks, and
// with the bypass packet captures on the source's interface do not see
// them: turn AF_PACKET egress off where those must see meshcast's traffic.
//
// With opts.PacketRx (and without opts.NoOffload), GRE arrives through a
// TPACKET_V3 ring on the same interface (OffloadPacketRx) instead of the
// raw socket, which stays open with a filter that lets nothing in; with
// opts.ReceiveRing, a predecessor's ring is adopted (see Quiesce). Where
// the ring cannot be opened, or its interface is deleted, the raw socket
// receives. The Conn must be opened in the network namespace it sends in,
// from a thread that stays there during the call.
func ListenGRE(local netip.Addr, opts Options) (*Conn, error) {
	var fd int
	var err error
	if opts.Receive != nil {
		fd, err = reuse(opts.Receive, unix.SOCK_RAW, ProtoGRE, local, 0, opts.Logger)
	} else {
		fd, err = socket(unix.SOCK_RAW, ProtoGRE, local, 0, opts.Logger)
	}
	if err != nil {
		return nil, fmt.Errorf("open raw GRE socket on %v: %w", local, err)
	}
	f := os.NewFile(uintptr(fd), "gre")
	c, err := newConn(f, f, opts.Batch, false)
	if err != nil {
		return nil, err
	}
	c.openPacket(local, ProtoGRE, opts)
	c.openRing(local, opts)
	return c, nil
}

// openRing opens GRE receive through the AF_PACKET ring, or adopts
// opts.ReceiveRing, unless opts.NoOffload is set, and logs once why it
// could not. Without the ring, the raw socket receives (again).
func (c *Conn) openRing(local netip.Addr, opts Options) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c.rxOff = newOffload(OffloadPacketRx, log)
	inherited := opts.ReceiveRing
	if opts.NoOffload || !opts.PacketRx || local.Is6() {
		if local.Is6() {
			c.rxOff.disable(OffloadNoIPv6)
			if opts.PacketRx && !opts.NoOffload {
				log.Info("AF_PACKET receive ring off: GRE arrives through the raw socket", "offload", OffloadPacketRx, "reason", OffloadNoIPv6)
			}
		} else {
			c.rxOff.disable(OffloadOffByConfig)
		}
		if inherited != nil {
			inherited.Close()
		}
		c.receiveOnRaw(log)
		return
	}
	var p *packetReceiver
	var err error
	if inherited != nil {
		p, err = adoptPacketReceiver(inherited, local, c.rxc, packetRxConfig{})
		if err != nil {
			log.Warn("inherited GRE receive ring ignored: opening one; what waited in it is lost", "err", err)
			inherited.Close()
		}
	}
	if p == nil {
		p, err = openPacketReceiver(local, c.rxc, packetRxConfig{})
	}
	if err != nil {
		c.rxOff.disable(probeError("open the GRE receive ring", err, ""))
		c.receiveOnRaw(log)
		attrs := []any{"offload", OffloadPacketRx, "reason", c.rxOff.Status().Reason}
		if e := Errno(err); e != 0 {
			log.Warn("AF_PACKET receive ring off: GRE arrives through the raw socket", append(attrs, "errno", ErrnoName(e))...)
		} else {
			log.Info("AF_PACKET receive ring off: GRE arrives through the raw socket", attrs...)
		}
		return
	}
	c.drainRaw = opts.Receive != nil
	c.prx.Store(p)
	c.rxOff.enable()
}

// receiveOnRaw removes a filter a ring left on the raw socket, so that it
// receives.
func (c *Conn) receiveOnRaw(log *slog.Logger) {
	var ferr error
	if err := c.rxc.Control(func(fd uintptr) { ferr = receiveAll(int(fd)) }); err == nil && ferr != nil {
		log.Warn("raw GRE socket: cannot remove the filter of the receive ring; GRE is not received", "err", ferr, "errno", ErrnoName(Errno(ferr)))
	}
}

// ReceiveRingConn returns the GRE receive ring's socket, for a successor
// or the service manager to keep with ReceiveConn (Options.ReceiveRing),
// or nil when the Conn receives on the raw socket.
func (c *Conn) ReceiveRingConn() syscall.RawConn {
	if p := c.prx.Load(); p != nil {
		return p.rc
	}
	return nil
}

// Quiesce readies the GRE receive ring for a successor that takes over
// both receive sockets: once no ReadBatch runs and the caller is done
// with the last batch, it leaves in the ring exactly the packets not
// returned yet, and Close then leaves the raw socket's filter in place.
// A ReadBatch afterwards (the successor did not take over) goes on where
// it stopped.
func (c *Conn) Quiesce() {
	if p := c.prx.Load(); p != nil {
		p.quiesce()
		c.quiesced.Store(true)
	}
}

// ListenVXLAN opens a UDP socket on local:port to receive VXLAN and a raw
// IPv4 socket for protocol UDP to send it, so that the source port can
// follow the inner flow. The raw socket carries a filter that accepts
// nothing, so the kernel never queues received UDP on it. When local is
// an IPv6 address both are IPv6 sockets, and the kernel computes the UDP
// checksum that IPv6 requires for the raw socket's datagrams
// (IPV6_CHECKSUM) as for the flow sockets'; the receive socket takes only
// datagrams whose checksum verifies.
//
// Unless opts.NoOffload is set, and where the kernel supports it (Linux
// 4.18 and later), the receive socket coalesces the datagrams of one
// sender (UDP_GRO), which ReadBatch splits again, and WriteBatch sends
// through a UDP socket per source port: the copies of a batch to one peer
// leave as one UDP segmentation-offload send (UDP_SEGMENT), which the
// kernel splits into the same datagrams as late as it can. These sockets
// are bound to the flow's source port on local, and carry a UDP checksum.
// A flow whose port cannot be bound, and any beyond MaxFlowSockets, use
// the raw socket. Both offloads are probed with setsockopt at open. A
// segmentation-offload send that the kernel refuses anyway is sent again
// at once, copy by copy through the raw socket, and the offload is off
// from then on. The flow sockets are opened by WriteBatch when a flow
// first appears, in the network namespace of the calling thread: call it
// from the namespace the Conn was opened in. With AF_PACKET egress (see
// ListenGRE), these sockets carry only the copies it does not take.
func ListenVXLAN(local netip.Addr, port uint16, opts Options) (*Conn, error) {
	var rx int
	var err error
	if opts.Receive != nil {
		rx, err = reuse(opts.Receive, unix.SOCK_DGRAM, unix.IPPROTO_UDP, local, port, opts.Logger)
	} else {
		rx, err = socket(unix.SOCK_DGRAM, 0, local, port, opts.Logger)
	}
	if err != nil {
		return nil, fmt.Errorf("open VXLAN socket on %v:%d: %w", local, port, err)
	}
	tx, err := socket(unix.SOCK_RAW, ProtoUDP, local, 0, opts.Logger)
	if err != nil {
		unix.Close(rx)
		return nil, fmt.Errorf("open raw UDP socket on %v: %w", local, err)
	}
	if local.Is6() {
		// UDP over IPv6 must carry a checksum: the kernel computes it
		// over the pseudo-header into the field at offset 6, as it
		// does for ICMPv6.
		if err := unix.SetsockoptInt(tx, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 6); err != nil {
			unix.Close(rx)
			unix.Close(tx)
			return nil, fmt.Errorf("raw UDP socket on %v: setsockopt IPV6_CHECKSUM: %w", local, err)
		}
	}
	if err := receiveNothing(tx); err != nil {
		unix.Close(rx)
		unix.Close(tx)
		return nil, fmt.Errorf("filter raw UDP socket: %w", err)
	}
	groOff, gsoOff := newOffload(OffloadUDPGRO, opts.Logger), newOffload(OffloadUDPGSO, opts.Logger)
	if opts.NoOffload {
		groOff.disable(OffloadOffByConfig)
		gsoOff.disable(OffloadOffByConfig)
	} else {
		if err := unix.SetsockoptInt(rx, unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
			groOff.disable(probeError("setsockopt UDP_GRO", err, "Linux 5.0"))
		} else {
			groOff.enable()
		}
		if err := gsoSupported(); err != nil {
			gsoOff.disable(probeError("setsockopt UDP_SEGMENT", err, "Linux 4.18"))
		} else {
			gsoOff.enable()
		}
	}
	c, err := newConn(os.NewFile(uintptr(rx), "vxlan-rx"), os.NewFile(uintptr(tx), "vxlan-tx"), opts.Batch, groOff.InUse())
	if err != nil {
		return nil, err
	}
	c.groOff, c.gsoOff = groOff, gsoOff
	if gsoOff.InUse() {
		c.gso = newGSOSender(local, c.wr, gsoOff, opts.Logger)
	}
	c.openPacket(local, ProtoUDP, opts)
	return c, nil
}

// openPacket opens AF_PACKET egress unless opts turn it off, and logs
// once why it could not.
func (c *Conn) openPacket(local netip.Addr, proto uint8, opts Options) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c.pktOff = newOffload(OffloadPacketTx, log)
	if proto == ProtoUDP {
		c.segOff = newOffload(OffloadPacketGSO, log)
	}
	if opts.NoOffload || opts.NoPacketEgress {
		c.pktOff.disable(OffloadOffByConfig)
		if c.segOff != nil {
			c.segOff.disable(OffloadOffByConfig)
		}
		return
	}
	sockHdr := func() (sockHeader, error) { return readSockHeader(c.txc) }
	if local.Is6() {
		sockHdr = func() (sockHeader, error) { return readSockHeader6(c.txc) }
	}
	p, err := openPacketTx(local, proto, len(c.wr.hdrs), sockHdr, c.pktOff, c.segOff, log)
	if p != nil {
		c.pkt = p
		return
	}
	reason := c.pktOff.Status().Reason
	if err != nil {
		log.Warn("AF_PACKET egress off: every copy goes through the IP socket",
			"offload", OffloadPacketTx, "reason", reason, "errno", ErrnoName(Errno(err)))
	} else {
		log.Info("AF_PACKET egress off: every copy goes through the IP socket", "offload", OffloadPacketTx, "reason", reason)
	}
}

// PacketEgress reports what AF_PACKET egress sent and how many peers it
// resolved; it is zero when AF_PACKET egress is off (see Offloads).
func (c *Conn) PacketEgress() PacketEgressStats {
	if c.pkt == nil {
		return PacketEgressStats{}
	}
	return c.pkt.stats()
}

// family is the socket address family of a.
func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sockaddr is a:port as a socket address of a's family.
func sockaddr(a netip.Addr, port uint16) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: int(port)}
	}
	return &unix.SockaddrInet6{Addr: a.As16(), Port: int(port)}
}

// socket opens a nonblocking socket of local's family (IPv4 or IPv6)
// bound to local:port, with large buffers to absorb bursts of replicated
// copies (the FORCE variants pass net.core.{r,w}mem_max when we have
// CAP_NET_ADMIN). An IPv6 socket is IPv6-only.
func socket(typ, proto int, local netip.Addr, port uint16, log *slog.Logger) (int, error) {
	fd, err := unix.Socket(family(local), typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	setBuffer(fd, recvBuffer, log)
	setBuffer(fd, sendBuffer, log)
	if local.Is6() && typ != unix.SOCK_RAW {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Bind(fd, sockaddr(local, port)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// A socket buffer to enlarge: its options, with and without FORCE, and
// the size asked for.
type sockBuffer struct {
	force, plain   string
	nforce, nplain int
	size           int
}

var (
	recvBuffer = sockBuffer{"SO_RCVBUFFORCE", "SO_RCVBUF", unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcvBuf}
	sendBuffer = sockBuffer{"SO_SNDBUFFORCE", "SO_SNDBUF", unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndBuf}
)

// setBuffer asks for the large buffer b on fd: with FORCE, which passes
// net.core.[rw]mem_max with CAP_NET_ADMIN, else without, capped there. It
// logs a warning with the errno when the kernel refuses both: the socket
// then keeps its default buffer, which a burst may overflow.
func setBuffer(fd int, b sockBuffer, log *slog.Logger) {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.nforce, b.size)
	if err == nil {
		return
	}
	err2 := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.nplain, b.size)
	if err2 == nil {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("socket option refused: the socket keeps its default buffer, which a burst may overflow",
		"option", b.force, "errno", ErrnoName(Errno(err)), "then", b.plain, "then_errno", ErrnoName(Errno(err2)))
}

// receiveNothing attaches a socket filter that accepts no packet, to a
// socket that only sends, so that the kernel never queues received
// packets on it.
func receiveNothing(fd int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	if err != nil {
		return fmt.Errorf("attach a filter that receives nothing: %w", err)
	}
	return nil
}

// Offloads reports the offloads of the Conn: for both encapsulations
// OffloadPacketTx, for VXLAN also OffloadUDPGSO, OffloadUDPGRO and
// OffloadPacketGSO, and for GRE OffloadPacketRx, in the order
// OffloadUDPGSO, OffloadUDPGRO, OffloadPacketTx, OffloadPacketGSO (VXLAN)
// or OffloadPacketTx, OffloadPacketRx (GRE).
func (c *Conn) Offloads() []OffloadStatus {
	var s []OffloadStatus
	if c.gsoOff != nil {
		s = append(s, c.gsoOff.Status(), c.groOff.Status())
	}
	if c.pktOff != nil {
		s = append(s, c.pktOff.Status())
	}
	if c.segOff != nil {
		s = append(s, c.segOff.Status())
	}
	if c.rxOff != nil {
		s = append(s, c.rxOff.Status())
	}
	return s
}

func newConn(rx, tx *os.File, batch int, gro bool) (*Conn, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	rbatch, rsize := batch, rxBufSize
	if gro {
		rbatch, rsize = min(batch, groBatch), groBufSize
	}
	c := &Conn{rx: rx, tx: tx, rd: newBatchIO(rbatch), wr: newBatchIO(batch), gro: gro}
	c.rd.bufs = make([][]byte, rbatch)
	c.rd.ctrl = make([]byte, rbatch*ctrlLen)
	for i := range c.rd.bufs {
		c.rd.bufs[i] = make([]byte, rsize)
		c.rd.iovs[i].Base = unsafe.SliceData(c.rd.bufs[i])
		c.rd.iovs[i].SetLen(rsize)
	}
	c.closeFiles = append(c.closeFiles, rx)
	if tx != rx {
		c.closeFiles = append(c.closeFiles, tx)
	}
	var err error
	if c.rxc, err = rx.SyscallConn(); err != nil {
		c.Close()
		return nil, err
	}
	if c.txc, err = tx.SyscallConn(); err != nil {
		c.Close()
		return nil, err
	}
	c.rd.fn = c.recv
	c.wr.fn = c.send
	c.drainFn = func(fd uintptr) { c.recv(fd) }
	return c, nil
}

// batchSize is the largest number of messages one system call reads.
func (c *Conn) batchSize() int { return len(c.rd.hdrs) }

// Offload reports whether the Conn coalesces on receive (UDP_GRO) and
// sends with segmentation offload (UDP_SEGMENT).
func (c *Conn) Offload() (gro, gso bool) { return c.gro, c.gsoOff.InUse() }

// ReadBatch waits for at least one packet and returns up to len(msgs) of
// them, reading a batch in one system call when the last one is used up.
// A datagram the receive socket coalesced is returned as the datagrams it
// was made of. For each message it sets Buf, N and the sender's Addr; a
// packet that did not fit its buffer comes back empty, for the caller to
// drop. It returns the number of messages set.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	c.quiesced.Store(false)
	if p := c.prx.Load(); p != nil {
		if c.drainRaw {
			if n, err := c.readSocket(msgs, false); n > 0 || err != nil {
				return n, err
			}
			c.drainRaw = false
		}
		n, err := p.ReadBatch(msgs)
		if p.losing {
			c.ringLosing(p)
		}
		if err == nil || !errors.Is(err, unix.ENODEV) {
			return n, err
		}
		// The interface was deleted: receive on the raw socket, which
		// receives on any interface.
		if c.prx.CompareAndSwap(p, nil) {
			p.Close()
			c.rxOff.disable(fmt.Sprintf("%v; receiving on the raw socket since", err))
			c.rxOff.log.Warn("AF_PACKET receive ring closed: GRE arrives through the raw socket", "offload", OffloadPacketRx, "err", err, "errno", "ENODEV")
		}
	}
	return c.readSocket(msgs, true)
}

// ringWarnEvery spaces the warnings of packets the full ring dropped.
const ringWarnEvery = 10 * time.Second

// ringLosing logs, at most once per ringWarnEvery, that the ring was full
// and the kernel dropped packets, with how many in all (ReceiveDrops).
func (c *Conn) ringLosing(p *packetReceiver) {
	now := time.Now()
	if !c.ringWarn.IsZero() && now.Sub(c.ringWarn) < ringWarnEvery {
		return
	}
	p.losing = false
	c.ringWarn = now
	c.rxOff.log.Warn("the GRE receive ring was full: the kernel dropped packets meshcast did not read in time",
		"offload", OffloadPacketRx, "dropped_total", p.Drops(), "errno", "ENOBUFS")
}

// ReceiveDrops returns the packets the kernel dropped because the GRE
// receive ring was full (0 without the ring).
func (c *Conn) ReceiveDrops() uint64 {
	if p := c.prx.Load(); p != nil {
		return p.Drops()
	}
	return 0
}

// readSocket is ReadBatch on the receive socket; without wait, it returns
// 0 at once when nothing waits there.
func (c *Conn) readSocket(msgs []Message, wait bool) (int, error) {
	b := c.rd
	if c.rest.i >= c.rest.n {
		for i := range b.hdrs {
			h := &b.hdrs[i].hdr
			h.Namelen = unix.SizeofSockaddrInet6
			h.Flags = 0
			if c.gro {
				h.Control = &b.ctrl[i*ctrlLen]
				h.SetControllen(ctrlLen)
			}
			b.hdrs[i].len = 0
		}
		b.start, b.cnt, b.n, b.errno = 0, len(b.hdrs), 0, 0
		if !wait {
			if err := c.rxc.Control(c.drainFn); err != nil {
				return 0, err
			}
		} else if err := c.rxc.Read(b.fn); err != nil {
			return 0, err
		}
		if b.errno != 0 {
			return 0, os.NewSyscallError("recvmmsg", b.errno)
		}
		c.rest.i, c.rest.n, c.rest.off = 0, b.n, 0
	}
	k := 0
	for k < len(msgs) && c.rest.i < c.rest.n {
		i := c.rest.i
		h := &b.hdrs[i]
		total := int(h.len)
		m := &msgs[k]
		m.Addr = b.addr(i)
		k++
		seg := 0
		if c.gro {
			seg = groSize(b.ctrl[i*ctrlLen:], int(h.hdr.Controllen))
		}
		if h.hdr.Flags&unix.MSG_TRUNC != 0 || total > len(b.bufs[i]) {
			m.Buf, m.N = b.bufs[i][:0], 0 // truncated: the caller drops it
			c.rest.i, c.rest.off = i+1, 0
			continue
		}
		start, end := c.rest.off, total
		if seg > 0 && start+seg < total {
			end = start + seg
		}
		m.Buf = b.bufs[i][start:end:end]
		m.N = end - start
		if end >= total {
			c.rest.i, c.rest.off = i+1, 0
		} else {
			c.rest.off = end
		}
	}
	return k, nil
}

func (c *Conn) recv(fd uintptr) bool { return c.rd.call(fd, unix.SYS_RECVMMSG) }

func (c *Conn) send(fd uintptr) bool { return c.wr.call(fd, unix.SYS_SENDMMSG) }

// call runs recvmmsg or sendmmsg over hdrs[start:start+cnt]. It reports
// false, asking the poller to wait, when the socket is not ready.
func (b *batchIO) call(fd uintptr, trap uintptr) bool {
	for {
		// A raw system call: the socket is nonblocking, so it returns at
		// once, and the runtime's bookkeeping for a call that may block
		// (and the wake-up of its monitor thread) is saved.
		n, _, errno := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&b.hdrs[b.start])),
			uintptr(b.cnt), 0, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			b.errno = errno
			return true
		}
	}
}

// WriteBatch sends msgs[i].Buf to msgs[i].Addr for every message, in as few
// system calls as it can. A message the kernel refuses (for example an
// unreachable destination or one over the path MTU) is skipped and counted
// in failed; the rest are still sent. It returns an error only when the
// socket itself fails.
func (c *Conn) WriteBatch(msgs []Message) (failed int, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.pkt != nil {
		return c.pkt.writeBatch(msgs, c.writeSocket)
	}
	return c.writeSocket(msgs)
}

// writeSocket sends msgs through the IP sockets: with segmentation
// offload where it is in use, else one by one through the tx socket.
func (c *Conn) writeSocket(msgs []Message) (failed int, err error) {
	if c.gso != nil && c.gsoOff.InUse() {
		return c.gso.writeBatch(msgs, c.writeRaw)
	}
	return c.writeRaw(msgs)
}

// writeRaw sends every message on its own through the tx socket.
func (c *Conn) writeRaw(msgs []Message) (failed int, err error) {
	b := c.wr
	for len(msgs) > 0 {
		chunk := msgs
		if len(chunk) > len(b.hdrs) {
			chunk = chunk[:len(b.hdrs)]
		}
		for i := range chunk {
			buf := chunk[i].Buf
			b.iovs[i].Base = unsafe.SliceData(buf)
			b.iovs[i].SetLen(len(buf))
			b.setAddr(i, chunk[i].Addr, 0)
		}
		for sent := 0; sent < len(chunk); {
			b.start, b.cnt, b.n, b.errno = sent, len(chunk)-sent, 0, 0
			if err := c.txc.Write(b.fn); err != nil {
				return failed, err
			}
			switch {
			case b.errno == 0:
				for i := sent; i < sent+b.n; i++ {
					chunk[i].N, chunk[i].Errno = len(chunk[i].Buf), 0
				}
				sent += b.n
			case perMessage(b.errno):
				// The first message of this call was refused.
				chunk[sent].N, chunk[sent].Errno = -1, b.errno
				failed++
				sent++
			default:
				return failed, os.NewSyscallError("sendmmsg", b.errno)
			}
		}
		msgs = msgs[len(chunk):]
	}
	return failed, nil
}

// perMessage reports whether errno concerns one destination rather than the
// socket.
func perMessage(errno unix.Errno) bool {
	switch errno {
	case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE, unix.ECONNREFUSED,
		unix.EPERM, unix.EACCES, unix.EINVAL, unix.ENOBUFS, unix.EADDRNOTAVAIL, unix.EHOSTDOWN,
		unix.EAFNOSUPPORT: // an address of the other family
		return true
	}
	return false
}

// SetReadDeadline interrupts ReadBatch at d (a time in the past: at once)
// once the packets of the last receive are returned; the zero time lets it
// wait again. What arrives meanwhile waits in the socket's buffer.
func (c *Conn) SetReadDeadline(d time.Time) error {
	if p := c.prx.Load(); p != nil {
		if err := p.SetReadDeadline(d); err != nil {
			return err
		}
	}
	return c.rx.SetReadDeadline(d)
}

// Close closes the sockets.
func (c *Conn) Close() error {
	var errs []error
	if p := c.prx.Swap(nil); p != nil {
		// Before the raw socket; a successor that holds both receives
		// through the ring, so its filter stays.
		if c.quiesced.Load() {
			errs = append(errs, p.release())
		} else {
			errs = append(errs, p.Close())
		}
	}
	if c.pkt != nil {
		errs = append(errs, c.pkt.close())
	}
	if c.gso != nil {
		errs = append(errs, c.gso.close())
	}
	for _, f := range c.closeFiles {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
