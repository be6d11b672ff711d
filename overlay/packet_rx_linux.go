package overlay

// GRE receive through a memory-mapped AF_PACKET ring: the kernel copies
// each GRE packet addressed to the local address into a TPACKET_V3 ring
// shared with meshcast, a block of many packets at a time, and wakes the
// reader once per block instead of once per recvmmsg. ReadBatch returns
// views of the packets in the ring, so that a packet costs neither a
// system call nor a copy on the reading side. The raw GRE socket stays
// open, so that the kernel does not answer GRE with ICMP protocol
// unreachable, but a filter keeps it from queueing anything.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/meshcast/meshcast/internal/inet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// OffloadPacketRx names GRE receive through the AF_PACKET ring in status,
// metrics and the log.
const OffloadPacketRx = "af_packet_rx"

// The ring's default geometry: 64 blocks of 256 KiB (16 MiB, the size of
// the raw socket's receive buffer, but held for as long as the ring is
// open), each handed to meshcast when full or, when traffic is light,
// one to two retire timeouts (1 ms) after its first packet. A block holds
// about 1,300 packets of 64-byte frames or 160 of 1,400-byte frames.
const (
	ringBlockSize = 256 << 10
	ringBlocks    = 64
	ringRetire    = time.Millisecond
	// ringFrameSize is tp_frame_size: TPACKET_V3 packs packets back to
	// back in a block and uses it only to check the geometry.
	ringFrameSize = 2048
)

// Offsets in the ring (linux/if_packet.h), in host byte order.
const (
	// struct tpacket_block_desc with struct tpacket_hdr_v1
	blkStatus   = 8  // block_status
	blkNumPkts  = 12 // num_pkts
	blkFirstPkt = 16 // offset_to_first_pkt
	blkSeq      = 24 // seq_num: the kernel numbers the blocks it opens
	blkHdrLen   = 48 // up to the end of ts_last_pkt
	// struct tpacket3_hdr
	pktNext    = 0  // tp_next_offset
	pktSnaplen = 12 // tp_snaplen: the bytes in the ring
	pktLen     = 16 // tp_len: the packet's length on the wire
	pktNet     = 26 // tp_net: where the IPv4 header starts
	pktHdrLen  = unix.SizeofTpacket3Hdr
)

// packetRxConfig sizes the ring; the zero value takes the defaults.
type packetRxConfig struct {
	// BlockSize is the size of a block in bytes: a power of two, at least
	// a page. A packet longer than a block less its headers is returned
	// empty, as a truncated one. 0 means 256 KiB.
	BlockSize int
	// Blocks is the number of blocks; 0 means 64.
	Blocks int
	// Retire is the kernel's retire timeout (tp_retire_blk_tov, in whole
	// milliseconds, at least 1; older kernels round it up to their timer
	// tick): a block that does not fill is handed over one to two of them
	// after its first packet, which bounds the latency a packet gains when
	// traffic is light. 0 means 1 ms.
	Retire time.Duration
}

// packetReceiver receives GRE through a TPACKET_V3 ring on the underlay
// interface. ReadBatch, like Conn's, must not run concurrently with
// itself; SetReadDeadline, Drops and Close may be called from any
// goroutine.
//
// The ring sees a packet where the interface hands it to the IP stack:
// before netfilter, reverse-path filtering and the IP stack's own
// reassembly (the socket reassembles fragments itself), and only on its
// interface, whereas the raw socket receives GRE to the local address
// from any interface once the IP stack accepted it. meshcast checks
// the sender of every packet against its peers either way.
type packetReceiver struct {
	file   *os.File
	rc     syscall.RawConn
	raw    syscall.RawConn // the raw GRE socket that receives nothing, or nil
	ifname string

	ring      []byte // the mapping; nil once unmapped
	blockSize int
	blocks    int

	// The reader's state, owned by ReadBatch.
	cur    int   // the block being read, or the next one to wait for
	open   bool  // cur is handed over and being read
	left   int   // packets of cur not returned yet
	off    int   // offset in cur of the next of them
	took   bool  // a packet of cur was returned in this ReadBatch
	losing bool  // a block said that the kernel dropped packets (TP_STATUS_LOSING)
	held   []int // blocks whose packets the caller may still use
	passed int   // blocks opened by this ReadBatch
	ready  bool  // result of peek
	wait   func(fd uintptr) bool
	peek   func(fd uintptr) bool

	// mu guards closed, inUse and unmapping the ring.
	mu     sync.Mutex
	closed bool
	// inUse: a ReadBatch runs, or the messages of the last one may still
	// point into the ring: Close leaves an empty mapping in its place
	// until the next ReadBatch.
	inUse bool

	statsMu sync.Mutex // serializes reading the kernel's counters, which resets them
	drops   atomic.Uint64

	// gone: the interface was deleted, and the ring will not receive
	// again; watching: a goroutine checks whether it was (goneWatch).
	gone, watching atomic.Bool
}

// How long goneWatch looks for the interface's deletion after it went
// down: the kernel unbinds the socket only after the interface is down
// and the network has quiesced.
const (
	goneEvery = 100 * time.Millisecond
	goneFor   = 3 * time.Second
)

// openPacketReceiver opens a TPACKET_V3 receive ring for GRE packets
// (IPv4 protocol 47) to local on the Ethernet interface that holds local,
// and then attaches a filter that accepts nothing to raw, the raw GRE
// socket bound to local (nil: none), which must stay open. Any error
// (no interface holds local, one that is not Ethernet, a kernel without
// TPACKET_V3 or PACKET_FANOUT, mmap refused) comes back
// wrapping the kernel's errno where there is one, with everything opened
// closed again and raw untouched: the caller then receives on raw as
// before. It must be called from a thread in local's network namespace.
//
// The socket sees only what a classic BPF filter accepts: IPv4 packets
// addressed to this host at the link layer (not another host's, nor
// outgoing ones, which PACKET_IGNORE_OUTGOING also skips where the
// kernel has it), of protocol 47, to local, and not a fragment. It
// reassembles fragments before the filter (a fanout group of one with
// PACKET_FANOUT_FLAG_DEFRAG), so that ReadBatch returns whole packets as
// the raw socket does.
func openPacketReceiver(local netip.Addr, raw syscall.RawConn, cfg packetRxConfig) (_ *packetReceiver, err error) {
	if !local.Is4() || local.IsUnspecified() || local.IsMulticast() {
		return nil, fmt.Errorf("GRE receive ring: local address %v is not a unicast IPv4 address", local)
	}
	bs, nb, tov, ifindex, ifname, err := ringTarget(local, cfg)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_PACKET, SOCK_DGRAM): %w", err)
	}
	p := &packetReceiver{ifname: ifname, blockSize: bs, blocks: nb, held: make([]int, 0, nb)}
	defer func() {
		if err != nil {
			if p.ring != nil {
				unix.Munmap(p.ring)
			}
			if p.file != nil {
				p.file.Close()
			} else {
				unix.Close(fd)
			}
		}
	}()
	// Protocol 0 receives nothing until bind, by when the filter and the
	// ring are in place.
	if err := attachGREFilter(fd, local); err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("setsockopt PACKET_VERSION TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(bs),
		Block_nr:       uint32(nb),
		Frame_size:     ringFrameSize,
		Frame_nr:       uint32(bs / ringFrameSize * nb),
		Retire_blk_tov: tov,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("setsockopt PACKET_RX_RING (%d blocks of %d bytes): %w", nb, bs, err)
	}
	if p.ring, err = unix.Mmap(fd, 0, bs*nb, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap the receive ring (%d bytes): %w", bs*nb, err)
	}
	// Linux 4.20 and later; the filter drops outgoing packets anyway.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("bind AF_PACKET to %s: %w", ifname, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname AF_PACKET: %w", err)
	}
	if ll, ok := sa.(*unix.SockaddrLinklayer); !ok || ll.Hatype != unix.ARPHRD_ETHER {
		hatype := -1
		if ok {
			hatype = int(ll.Hatype)
		}
		return nil, fmt.Errorf("interface %s of %v is not Ethernet (ARPHRD %d)", ifname, local, hatype)
	}
	// A fanout group of this socket alone, for its defragmentation. The
	// kernel picks an unused group id (UNIQUEID, Linux 4.3), so that no
	// other socket can join. Older kernels refuse it (EINVAL) while the
	// interface is down; newer ones link it when the interface comes up.
	fanout := uint32(unix.PACKET_FANOUT_CPU|unix.PACKET_FANOUT_FLAG_DEFRAG|unix.PACKET_FANOUT_FLAG_UNIQUEID) << 16 // group id 0
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(int32(fanout))); err != nil {
		return nil, fmt.Errorf("setsockopt PACKET_FANOUT with PACKET_FANOUT_FLAG_DEFRAG on %s: %w", ifname, err)
	}
	p.file = os.NewFile(uintptr(fd), "gre-ring")
	if p.rc, err = p.file.SyscallConn(); err != nil {
		return nil, err
	}
	if err := p.start(raw); err != nil {
		return nil, err
	}
	return p, nil
}

// ringTarget checks cfg and local's interface: the ring's geometry (see
// ringGeometry) and the interface's index and name.
func ringTarget(local netip.Addr, cfg packetRxConfig) (bs, nb int, tov uint32, ifindex int, ifname string, err error) {
	if bs, nb, tov, err = ringGeometry(cfg); err != nil {
		return
	}
	ifindex, ifname, err = ringInterface(local)
	return
}

// attachGREFilter attaches the ring's socket filter for local to fd; it
// replaces an earlier filter at once.
func attachGREFilter(fd int, local netip.Addr) error {
	prog, err := greFilter(local)
	if err != nil {
		return err
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		return fmt.Errorf("attach the GRE filter (SO_ATTACH_FILTER): %w", err)
	}
	return nil
}

// start readies the reader of an open ring and silences raw, the raw GRE
// socket (nil: none), which the caller then must not close before the
// ring.
func (p *packetReceiver) start(raw syscall.RawConn) error {
	p.wait = p.waitBlock
	p.peek = func(uintptr) bool { p.ready = p.blockReady(p.cur); return true }
	if raw == nil {
		return nil
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = receiveNothing(int(fd)) }); err != nil || ferr != nil {
		return fmt.Errorf("raw GRE socket: %w", errors.Join(err, ferr))
	}
	p.raw = raw
	return nil
}

// adoptPacketReceiver takes over ring, the socket of a receive ring that
// an earlier receiver for local opened (a predecessor's, handed over
// with raw), instead of opening one, so that what arrived while no
// process read waits in the ring and nothing is lost. Reading starts at
// the oldest block the kernel handed over and not handed back (the
// earlier receiver's quiesce leaves exactly the packets it did not
// return), or else at the block the kernel fills. The socket must be a
// TPACKET_V3 ring of cfg's geometry on the interface that holds local:
// any other comes back as an error wrapping ErrNotOurSocket, with ring
// untouched. On success the receiver owns a duplicate of ring's
// descriptor, and raw receives nothing, as with openPacketReceiver.
func adoptPacketReceiver(ring *os.File, local netip.Addr, raw syscall.RawConn, cfg packetRxConfig) (_ *packetReceiver, err error) {
	bs, nb, _, ifindex, ifname, err := ringTarget(local, cfg)
	if err != nil {
		return nil, err
	}
	rc, err := ring.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil, fmt.Errorf("%w: dup the GRE receive ring: %v", ErrNotOurSocket, errors.Join(err, derr))
	}
	p := &packetReceiver{ifname: ifname, blockSize: bs, blocks: nb, held: make([]int, 0, nb)}
	defer func() {
		if err != nil {
			if p.ring != nil {
				unix.Munmap(p.ring)
			}
			unix.Close(fd)
		}
	}()
	notOurs := func(what string, e error) error {
		return fmt.Errorf("%w: GRE receive ring: %s: %v", ErrNotOurSocket, what, e)
	}
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_PACKET {
		return nil, notOurs("not an AF_PACKET socket", err)
	}
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_DGRAM {
		return nil, notOurs("not SOCK_DGRAM", err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION); err != nil || v != unix.TPACKET_V3 {
		return nil, notOurs("not TPACKET_V3", err)
	}
	sa, err := unix.Getsockname(fd)
	if ll, ok := sa.(*unix.SockaddrLinklayer); err != nil || !ok || ll.Ifindex != ifindex || ll.Hatype != unix.ARPHRD_ETHER {
		return nil, notOurs("not bound to "+ifname, err)
	}
	// The mapping must cover the ring exactly: the kernel refuses any
	// other length (EINVAL), so a ring of another geometry is refused.
	if p.ring, err = unix.Mmap(fd, 0, bs*nb, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, notOurs(fmt.Sprintf("mmap %d blocks of %d bytes", nb, bs), err)
	}
	// The filter, again for local (it replaces the earlier one at once).
	if err := attachGREFilter(fd, local); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	p.file = os.NewFile(uintptr(fd), "gre-ring")
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		fd = -1
		return nil, err
	}
	p.cur = p.firstBlock()
	if err := p.start(raw); err != nil {
		p.file.Close()
		fd = -1
		return nil, err
	}
	ring.Close()
	return p, nil
}

// firstBlock returns the block to read first in a ring another receiver
// read before: the oldest the kernel handed over (the lowest sequence
// number), or else the one it fills (the highest).
func (p *packetReceiver) firstBlock() int {
	oldest, newest := -1, 0
	var oldSeq, newSeq uint64
	for b := range p.blocks {
		seq := binary.NativeEndian.Uint64(p.ring[b*p.blockSize+blkSeq:])
		if p.blockReady(b) && (oldest < 0 || seq < oldSeq) {
			oldest, oldSeq = b, seq
		}
		if seq > newSeq {
			newest, newSeq = b, seq
		}
	}
	if oldest >= 0 {
		return oldest
	}
	return newest
}

// quiesce readies the ring for a receiver that adopts its socket
// (adoptPacketReceiver), once the caller is done with the last batch and
// no ReadBatch runs: it hands back the blocks read, and rewrites the
// header of a block read in part so that it holds only the packets not
// returned yet. Reading may go on afterwards, from the same place.
func (p *packetReceiver) quiesce() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.ring == nil {
		return
	}
	p.handBack()
	if !p.open {
		return
	}
	p.open = false
	if p.left > 0 {
		b := p.block(p.cur)
		binary.NativeEndian.PutUint32(b[blkNumPkts:], uint32(p.left))
		binary.NativeEndian.PutUint32(b[blkFirstPkt:], uint32(p.off))
		return
	}
	atomic.StoreUint32(p.status(p.cur), unix.TP_STATUS_KERNEL)
	p.cur++
	if p.cur == p.blocks {
		p.cur = 0
	}
}

// ringGeometry checks cfg and returns the block size, the number of
// blocks and the retire timeout in milliseconds.
func ringGeometry(cfg packetRxConfig) (bs, nb int, tov uint32, err error) {
	bs, nb = cfg.BlockSize, cfg.Blocks
	if bs == 0 {
		bs = ringBlockSize
	}
	if nb == 0 {
		nb = ringBlocks
	}
	if bs < os.Getpagesize() || bs&(bs-1) != 0 || bs < ringFrameSize || bs > 1<<30 {
		return 0, 0, 0, fmt.Errorf("GRE receive ring: block size %d is not a power of two of at least a page", bs)
	}
	if nb < 2 || bs*nb > 1<<30 {
		return 0, 0, 0, fmt.Errorf("GRE receive ring: %d blocks of %d bytes", nb, bs)
	}
	ms := cfg.Retire.Milliseconds()
	switch {
	case cfg.Retire == 0:
		ms = ringRetire.Milliseconds()
	case ms < 1:
		ms = 1
	}
	return bs, nb, uint32(ms), nil
}

// ringInterface returns the index and name of the interface that holds
// local, in the calling thread's network namespace.
func ringInterface(local netip.Addr) (int, string, error) {
	addrs, err := netlink.AddrList(nil, unix.AF_INET)
	if err != nil {
		return 0, "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == local {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, "", fmt.Errorf("interface %d of %v: %w", a.LinkIndex, local, err)
			}
			return l.Attrs().Index, l.Attrs().Name, nil
		}
	}
	return 0, "", fmt.Errorf("no interface holds %v", local)
}

// greFilter returns the ring's socket filter. The socket is SOCK_DGRAM,
// so offsets count from the IPv4 header.
func greFilter(local netip.Addr) ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble(greFilterProgram(local))
	if err != nil {
		return nil, fmt.Errorf("assemble the GRE filter: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
}

// greFilterProgram returns the instructions of greFilter.
func greFilterProgram(local netip.Addr) []bpf.Instruction {
	const drop = 9 // the index of the last instruction
	// skip returns the jump from instruction i to drop.
	skip := func(i uint8) uint8 { return drop - i - 1 }
	dst := local.As4()
	return []bpf.Instruction{
		// 0-1: the packet is for this host (PACKET_HOST, _BROADCAST or
		// _MULTICAST, as the IP stack takes them), not another host's
		// or an outgoing one.
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: unix.PACKET_OTHERHOST, SkipTrue: skip(1)},
		// 2-3: IPv4 protocol 47.
		bpf.LoadAbsolute{Off: inet.IPv4Proto, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtoGRE, SkipTrue: skip(3)},
		// 4-5: to local.
		bpf.LoadAbsolute{Off: inet.IPv4Dst, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(dst[:]), SkipTrue: skip(5)},
		// 6-7: not a fragment (the socket reassembled those it could).
		bpf.LoadAbsolute{Off: inet.IPv4FlagsFrag, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: inet.IPv4FlagMF | inet.IPv4FragOffset, SkipTrue: skip(7)},
		// 8: all of it.
		bpf.RetConstant{Val: 1 << 18},
		// 9: drop.
		bpf.RetConstant{Val: 0},
	}
}

// receiveAll removes the filter of a socket, so that it receives again
// what receiveNothing kept out. A socket without a filter is left as it
// is.
func receiveAll(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detach the socket filter: %w", err)
	}
	return nil
}

// Interface returns the name of the interface the ring receives on.
func (p *packetReceiver) Interface() string { return p.ifname }

// block returns block b of the ring.
func (p *packetReceiver) block(b int) []byte {
	return p.ring[b*p.blockSize : (b+1)*p.blockSize : (b+1)*p.blockSize]
}

// status returns the block_status word of block b, which the kernel and
// meshcast pass the block with.
func (p *packetReceiver) status(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&p.ring[b*p.blockSize+blkStatus]))
}

// blockReady reports whether the kernel handed block b over.
func (p *packetReceiver) blockReady(b int) bool {
	return atomic.LoadUint32(p.status(b))&unix.TP_STATUS_USER != 0
}

// waitBlock reports whether block cur is handed over, for the poller.
// When it is not (before waiting, and when an error woke the reader) it
// reads and clears the socket's error: ENETDOWN means that the interface
// went down, and perhaps is being deleted (see goneWatch).
func (p *packetReceiver) waitBlock(fd uintptr) bool {
	if p.blockReady(p.cur) || p.gone.Load() {
		return true
	}
	if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e == int(unix.ENETDOWN) {
		if !bound(int(fd)) {
			p.gone.Store(true)
			return true
		}
		if p.watching.CompareAndSwap(false, true) {
			go p.goneWatch()
		}
	}
	return false
}

// bound reports whether the packet socket fd is still bound to an
// interface: the kernel unbinds it when the interface is deleted.
func bound(fd int) bool {
	sa, err := unix.Getsockname(fd)
	ll, ok := sa.(*unix.SockaddrLinklayer)
	return err != nil || !ok || ll.Ifindex > 0
}

// goneWatch checks for a while whether the interface, which went down,
// was deleted, and if so wakes a ReadBatch that waits, through the read
// deadline, so that it returns the error.
func (p *packetReceiver) goneWatch() {
	defer p.watching.Store(false)
	for range goneFor / goneEvery {
		time.Sleep(goneEvery)
		still := true
		if err := p.rc.Control(func(fd uintptr) { still = bound(int(fd)) }); err != nil {
			return // closed
		}
		if !still {
			p.gone.Store(true)
			p.file.SetReadDeadline(time.Unix(1, 0))
			return
		}
	}
}

// handBack returns the held blocks to the kernel.
func (p *packetReceiver) handBack() {
	for _, b := range p.held {
		atomic.StoreUint32(p.status(b), unix.TP_STATUS_KERNEL)
	}
	p.held = p.held[:0]
}

// ReadBatch waits for at least one packet and returns up to len(msgs) of
// them, as Conn.ReadBatch does for GRE: each message's Buf and N hold a
// packet from its outer IPv4 header on, and Addr the outer source; a
// packet longer than Conn's receive buffer, or than a block of the ring,
// comes back empty, for the caller to drop. It returns the number of
// messages set.
//
// Buf points into the ring, which the kernel writes: it is valid until
// the next ReadBatch, which hands the blocks it came from back to the
// kernel, or Close. The caller may modify it in place. A packet the IP
// stack would have dropped (a malformed IPv4 header, a wrong header
// checksum) is skipped.
//
// A read deadline in the past (SetReadDeadline) makes ReadBatch return
// os.ErrDeadlineExceeded once the packets of the block in hand are
// returned; the blocks the kernel filled meanwhile wait in the ring.
// After Close it returns os.ErrClosed. Once the interface is deleted it
// returns an error wrapping ENODEV: the ring will not receive again, and
// the caller should close it and receive on the raw socket. (An interface
// that goes down and up again is no error: the ring receives again.)
func (p *packetReceiver) ReadBatch(msgs []Message) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.unmapLocked()
		p.mu.Unlock()
		return 0, os.ErrClosed
	}
	p.inUse = true
	p.mu.Unlock()

	// The caller is done with the last batch.
	p.handBack()
	n, err := p.read(msgs)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.unmapLocked()
		return 0, os.ErrClosed
	}
	p.inUse = n > 0
	return n, err
}

// read fills msgs from the ring, waiting for a block only while it has
// none to return.
func (p *packetReceiver) read(msgs []Message) (int, error) {
	k := 0
	p.passed, p.took = 0, false
	for k < len(msgs) {
		if !p.open {
			if p.passed == p.blocks {
				// Every block was opened in this call: the next one is
				// held.
				if k > 0 {
					break
				}
				p.handBack()
				p.passed = 0
			}
			// Through the poller, for its deadline: a past deadline ends
			// the batch here, with the packets in hand returned.
			if k == 0 {
				err := p.rc.Read(p.wait)
				if p.gone.Load() {
					return 0, fmt.Errorf("GRE receive ring: interface %s was deleted: %w", p.ifname, unix.ENODEV)
				}
				if err != nil {
					return 0, err
				}
			} else if err := p.rc.Read(p.peek); err != nil || !p.ready {
				break
			}
			p.openBlock()
		}
		if p.left == 0 {
			p.closeBlock()
			continue
		}
		if p.next(&msgs[k]) {
			k++
		}
	}
	return k, nil
}

// openBlock starts reading block cur, which the kernel handed over.
func (p *packetReceiver) openBlock() {
	b := p.block(p.cur)
	if atomic.LoadUint32(p.status(p.cur))&unix.TP_STATUS_LOSING != 0 {
		p.losing = true
	}
	p.open, p.took = true, false
	p.left = int(binary.NativeEndian.Uint32(b[blkNumPkts:]))
	p.off = int(binary.NativeEndian.Uint32(b[blkFirstPkt:]))
	p.passed++
}

// closeBlock ends reading block cur: it is held until the next ReadBatch
// if a packet of it was returned, else handed back at once.
func (p *packetReceiver) closeBlock() {
	if p.took {
		p.held = append(p.held, p.cur)
	} else {
		atomic.StoreUint32(p.status(p.cur), unix.TP_STATUS_KERNEL)
	}
	p.open = false
	p.cur++
	if p.cur == p.blocks {
		p.cur = 0
	}
}

// next sets m to the next packet of block cur and reports whether it
// did; it skips a packet the IP stack would have dropped.
func (p *packetReceiver) next(m *Message) bool {
	b := p.block(p.cur)
	off := p.off
	if off < blkHdrLen || off > len(b)-pktHdrLen {
		p.left = 0 // not a packet: the rest of the block is lost
		return false
	}
	h := b[off : off+pktHdrLen]
	snap := int(binary.NativeEndian.Uint32(h[pktSnaplen:]))
	wire := int(binary.NativeEndian.Uint32(h[pktLen:]))
	start := off + int(binary.NativeEndian.Uint16(h[pktNet:]))
	if start > len(b) || snap > len(b)-start {
		p.left = 0
		return false
	}
	p.left--
	if nx := int(binary.NativeEndian.Uint32(h[pktNext:])); nx > 0 {
		p.off = off + nx
	} else if p.left > 0 {
		p.left = 0
	}
	ip := inet.IPv4(b[start : start+snap : start+snap])
	if len(ip) < inet.IPv4MinLen {
		return false
	}
	m.Addr = ip.Src()
	if snap < wire {
		// The ring truncated it: longer than a block.
		if ip.Version() != 4 || ip.HeaderLen() < inet.IPv4MinLen || ip.HeaderLen() > len(ip) || !ip.HeaderChecksumOK() {
			return false
		}
		m.Buf, m.N = ip[:0], 0
		p.took = true
		return true
	}
	// ip_rcv's checks; it also trims the link layer's padding.
	if ip.Check() != inet.IPv4OK || !ip.HeaderChecksumOK() {
		return false
	}
	total := ip.TotalLen()
	if total > rxBufSize {
		m.Buf, m.N = ip[:0], 0 // as Conn's receive buffer truncates it
	} else {
		m.Buf, m.N = ip[:total:total], total
	}
	p.took = true
	return true
}

// SetReadDeadline interrupts ReadBatch at d (a time in the past: at once)
// once the packets of the block in hand are returned; the zero time lets
// it wait again. What arrives meanwhile waits in the ring, and what does
// not fit is counted in Drops.
func (p *packetReceiver) SetReadDeadline(d time.Time) error { return p.file.SetReadDeadline(d) }

// Drops returns the number of packets the kernel dropped because the ring
// was full, since the receiver was opened. After Close it returns the
// count at Close.
func (p *packetReceiver) Drops() uint64 {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	var st *unix.TpacketStatsV3
	var err error
	// The kernel resets its counters on every read.
	if cerr := p.rc.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); cerr == nil && err == nil {
		return p.drops.Add(uint64(st.Drops))
	}
	return p.drops.Load()
}

// Close closes the ring's socket and removes the filter from the raw GRE
// socket (if it is still open), so that what arrives afterwards queues
// there again, for a successor that holds the socket or for receiving
// on it: close the ring before the raw socket. A ReadBatch waiting
// returns os.ErrClosed. The ring is released at once: the packets of the
// last ReadBatch, if the caller still holds them, read as zeros from
// then on.
func (p *packetReceiver) Close() error { return p.close(true) }

// release closes the ring's socket as Close does, but leaves the raw GRE
// socket's filter in place: a successor that holds both sockets receives
// through the ring.
func (p *packetReceiver) release() error { return p.close(false) }

func (p *packetReceiver) close(rawAgain bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return os.ErrClosed
	}
	p.Drops()
	p.closed = true
	p.releaseLocked()
	p.mu.Unlock()
	var errs []error
	if p.raw != nil && rawAgain {
		var ferr error
		if err := p.raw.Control(func(fd uintptr) { ferr = receiveAll(int(fd)) }); err == nil && ferr != nil {
			errs = append(errs, fmt.Errorf("raw GRE socket: %w", ferr))
		}
	}
	errs = append(errs, p.file.Close())
	return errors.Join(errs...)
}

// releaseLocked lets the kernel free the ring once the socket is closed:
// a mapping holds the socket open, bound and receiving. If the ring may
// be in use (a ReadBatch runs, or the caller holds its packets), anonymous
// zero pages replace it, so that stale views read zeros instead of
// faulting, until ReadBatch unmaps them; else it is unmapped.
func (p *packetReceiver) releaseLocked() {
	if p.ring == nil {
		return
	}
	if !p.inUse {
		p.unmapLocked()
		return
	}
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(&p.ring[0]), uintptr(len(p.ring)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_FIXED|unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// Not expected; the ring then stays until the next ReadBatch.
		return
	}
}

// unmapLocked unmaps the ring (or what replaced it), once.
func (p *packetReceiver) unmapLocked() {
	if p.ring != nil {
		unix.Munmap(p.ring)
		p.ring = nil
	}
}
