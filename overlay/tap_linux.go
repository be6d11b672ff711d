package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TAPQueueLen is the TAP's transmit queue length, in frames: what the
// local host may send while the daemon is not reading. The kernel's
// default, 1000, is 5 ms at 200,000 frames/s, less than a busy machine may
// keep the daemon waiting; much more only adds delay under overload.
const TAPQueueLen = 4096

// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// TAPConfig describes the TAP device of a community.
type TAPConfig struct {
	Name    string       // interface name, at most MaxIfNameLen bytes
	Overlay netip.Prefix // the node's overlay address and prefix
	// Overlay6, if valid, is the node's IPv6 overlay address and prefix:
	// IPv6 is then on for the TAP, with this address and a link-local one
	// from the TAP's MAC (EUI-64). Without it IPv6 is off on the TAP.
	Overlay6 netip.Prefix
	MTU      int              // the TAP MTU: underlay MTU minus the codec's Overhead
	MAC      net.HardwareAddr // nil means MACFor(Overlay.Addr())
	// NoCoalesce makes WriteBatch write every frame on its own instead of
	// handing runs of one UDP flow to the kernel as one frame.
	NoCoalesce bool
	// Logger receives the warning of an offload the kernel refuses; nil
	// means slog.Default().
	Logger *slog.Logger
}

// TAP is the device that holds a node's overlay address. Frames the local
// host sends are read from it; frames from peers are written to it. It is
// not persistent: closing it removes the interface.
//
// Every frame crosses the device behind a virtio-net header
// (IFF_VNET_HDR), with no offloads asked of the kernel: frames read are
// complete. Where the kernel takes UDP segmentation-offload frames (Linux
// 6.2 and later, probed at open), WriteBatch hands it a run of datagrams
// of one UDP flow as a single frame (see WriteBatch).
//
// ReadBatch and WriteBatch must not be called concurrently with
// themselves; Write is safe for concurrent use.
type TAP struct {
	name string
	mac  net.HardwareAddr
	mtu  int
	file *os.File
	log  *slog.Logger
	rc   syscall.RawConn
	w    tapWriter

	// State of the batch read in progress, used by readFn.
	rbufs   [][]byte
	roffset int
	rsizes  []int
	rn      int
	rerr    error
	readFn  func(fd uintptr) bool
}

// ValidIfName reports whether name can be a Linux interface name, and why not.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("interface name %q is %d bytes; Linux allows at most %d", name, len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c == '/' || c == ':' || c >= 0x7f {
			return fmt.Errorf("interface name %q contains %q; use letters, digits, '-', '_' or '.'", name, c)
		}
	}
	return nil
}

// OpenTAP creates the TAP device, sets its MAC address, MTU and overlay
// address through netlink and brings it up. IPv6 is on only with
// cfg.Overlay6: without an IPv6 address to reach, neighbour discovery
// would only add multicast that every peer receives.
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrInterfaceExists, cfg.Name)
	}
	f, err := openTAP(cfg.Name)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%w: %s", ErrTAPBusy, cfg.Name)
		}
		return nil, fmt.Errorf("create TAP %s: %w (is /dev/net/tun present and are we root with CAP_NET_ADMIN?)", cfg.Name, err)
	}
	t, err := newTAP(f, cfg)
	if err != nil {
		return nil, err
	}
	if err := t.configure(cfg.Overlay, cfg.Overlay6); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// valid checks what OpenTAP and AttachTAP need of cfg.
func (cfg TAPConfig) valid() error {
	if err := ValidIfName(cfg.Name); err != nil {
		return err
	}
	if !cfg.Overlay.Addr().Is4() {
		return fmt.Errorf("overlay address %v is not IPv4", cfg.Overlay)
	}
	if cfg.Overlay6.IsValid() && (!cfg.Overlay6.Addr().Is6() || cfg.Overlay6.Addr().Is4In6()) {
		return fmt.Errorf("IPv6 overlay address %v is not IPv6", cfg.Overlay6)
	}
	return nil
}

// newTAP makes the TAP of the open device f, set up by setVnet: it probes
// the coalescing offload and prepares the batch writer. It closes f on
// error.
func newTAP(f *os.File, cfg TAPConfig) (*TAP, error) {
	mac := cfg.MAC
	if mac == nil {
		mac = MACFor(cfg.Overlay.Addr())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	t := &TAP{name: cfg.Name, mac: mac, mtu: cfg.MTU, file: f, log: log}
	t.w.tap = t
	t.w.off = newOffload(OffloadTAPCoalesce, cfg.Logger)
	var err error
	if t.rc, err = f.SyscallConn(); err != nil {
		f.Close()
		return nil, fmt.Errorf("TAP %s: %w", cfg.Name, err)
	}
	var perr error
	if cfg.NoCoalesce {
		t.w.off.disable(OffloadOffByConfig)
	} else if err := t.rc.Control(func(fd uintptr) { perr = probeUSO(int(fd)) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("TAP %s: %w", cfg.Name, err)
	} else if perr != nil {
		t.w.off.disable(probeError("TUNSETOFFLOAD TUN_F_CSUM|TUN_F_USO4|TUN_F_USO6", perr,
			"Linux 6.2 for UDP segmentation frames written to a TAP"))
	} else {
		t.w.off.enable()
	}
	t.w.init()
	t.readFn = t.readBatch
	return t, nil
}

// openTAP creates the TAP device name with a virtio-net header and no
// offloads, and returns it as a nonblocking file.
func openTAP(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := setVnet(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// setVnet sets the TAP fd up as meshcast reads and writes it: no checksum
// or segmentation offload towards us, so that frames read are complete
// and ready to forward to peers, and a virtio-net header of VnetHdrLen.
func setVnet(fd int) error {
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	return nil
}

// The TUNSETOFFLOAD flags of linux/if_tun.h.
const (
	tunFCSUM = 0x01
	tunFUSO4 = 0x20 // Linux 6.2
	tunFUSO6 = 0x40 // Linux 6.2
)

// probeUSO asks the kernel whether the TAP fd takes UDP segmentation
// offload. A kernel that knows the TUN_F_USO flags (Linux 6.2) also
// accepts VIRTIO_NET_HDR_GSO_UDP_L4 frames written to the device; an older
// one refuses the flags with EINVAL, and such a write too. The device is
// set back to no offloads either way, so that frames read stay complete.
func probeUSO(fd int) error {
	err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCSUM|tunFUSO4|tunFUSO6)
	if rerr := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); rerr != nil && err == nil {
		err = fmt.Errorf("reset: %w", rerr)
	}
	return err
}

// addrGenModeEUI64 is IN6_ADDR_GEN_MODE_EUI64 of linux/if_link.h.
const addrGenModeEUI64 = 0

// setIPv6 turns IPv6 on for the TAP with overlay6 (valid) or off. A
// kernel without IPv6 has no such setting: off is then what it is.
func (t *TAP) setIPv6(link netlink.Link, overlay6 netip.Prefix) error {
	v := []byte("1")
	if overlay6.IsValid() {
		v = []byte("0")
		// The link-local address from the MAC (EUI-64), whatever the
		// host's default (stable-privacy, say): the MLD querier
		// queries from it, and a router on this host does too.
		if err := netlink.LinkSetIP6AddrGenMode(link, addrGenModeEUI64); err != nil {
			t.log.Warn("TAP's IPv6 link-local address may not come from its MAC: addr_gen_mode eui64 refused",
				"tap", t.name, "errno", ErrnoName(Errno(err)), "err", err)
		}
	}
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+t.name+"/disable_ipv6", v, 0)
	if !overlay6.IsValid() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("TAP %s: turn IPv6 on for %v: %w", t.name, overlay6, err)
	}
	// AddrReplace: an address the TAP kept across a takeover stays.
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: overlay6.Addr().AsSlice(), Mask: net.CIDRMask(overlay6.Bits(), 128)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("TAP %s: add address %v: %w", t.name, overlay6, err)
	}
	return nil
}

func (t *TAP) configure(overlay, overlay6 netip.Prefix) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", t.name, err)
	}
	if err := t.setIPv6(link, overlay6); err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(link, t.mac); err != nil {
		return fmt.Errorf("TAP %s: set MAC %v: %w", t.name, t.mac, err)
	}
	// The kernel drops what the host sends when this queue is full, so it
	// must absorb a burst while the daemon is not running.
	if err := netlink.LinkSetTxQLen(link, TAPQueueLen); err != nil {
		return fmt.Errorf("TAP %s: set queue length %d: %w", t.name, TAPQueueLen, err)
	}
	// No queueing discipline: the device's own queue is the only one, and
	// the host's sends skip a lock and a queue per frame. A kernel that
	// cannot attach noqueue (before Linux 4.3) keeps its default one,
	// which only costs speed.
	if err := netlink.QdiscReplace(&netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Parent: netlink.HANDLE_ROOT},
		QdiscType:  "noqueue",
	}); err != nil {
		t.log.Warn("TAP keeps the kernel's default queueing discipline: noqueue refused",
			"tap", t.name, "errno", ErrnoName(Errno(err)), "err", err, "kernel", KernelRelease())
	}
	if t.mtu > 0 {
		if err := netlink.LinkSetMTU(link, t.mtu); err != nil {
			return fmt.Errorf("TAP %s: set MTU %d: %w", t.name, t.mtu, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   overlay.Addr().AsSlice(),
		Mask: net.CIDRMask(overlay.Bits(), 32),
	}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("TAP %s: add address %v: %w", t.name, overlay, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("TAP %s: set up: %w", t.name, err)
	}
	return nil
}

// Name returns the interface name.
func (t *TAP) Name() string { return t.name }

// MAC returns the interface's MAC address. Do not modify it.
func (t *TAP) MAC() net.HardwareAddr { return t.mac }

// MTU returns the interface MTU.
func (t *TAP) MTU() int { return t.mtu }

// ReadBatch reads at least one frame, waiting for the first, and then as
// many more as are ready, up to len(bufs). Frame i is stored at
// bufs[i][offset:] and its length in sizes[i]; the device's virtio-net
// header goes to the VnetHdrLen bytes before it. It returns the number of
// frames read. It requires len(sizes) >= len(bufs) and offset >=
// VnetHdrLen.
func (t *TAP) ReadBatch(bufs [][]byte, offset int, sizes []int) (int, error) {
	t.rbufs, t.roffset, t.rsizes, t.rn, t.rerr = bufs, offset, sizes, 0, nil
	err := t.rc.Read(t.readFn)
	if err != nil && t.rn == 0 && t.rerr == nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
		// The poller saw an error event on the device (EPOLLERR, as when
		// the interface is deleted) and reports it without reading: read
		// once, to return the kernel's own error (ErrTAPGone).
		if cerr := t.rc.Control(func(fd uintptr) { t.readBatch(fd) }); cerr == nil && (t.rn > 0 || t.rerr != nil) {
			err = nil
		}
	}
	t.rbufs, t.rsizes = nil, nil
	if t.rn > 0 {
		return t.rn, nil
	}
	if err != nil {
		return 0, err
	}
	return 0, t.rerr
}

func (t *TAP) readBatch(fd uintptr) bool {
	for t.rn < len(t.rbufs) {
		b := t.rbufs[t.rn][t.roffset-VnetHdrLen:]
		n, err := rawRead(fd, b)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return t.rn > 0
			}
			t.rerr = t.gone(err)
			return true
		}
		t.rsizes[t.rn] = finishVnet(b[:max(n, 0)])
		t.rn++
	}
	return true
}

// Write writes one Ethernet frame to the TAP, delivering it to the local
// host.
func (t *TAP) Write(frame []byte) (int, error) {
	var n int
	var werr error
	err := t.rc.Write(func(fd uintptr) bool {
		n, werr = writev2(fd, zeroVnet[:], frame)
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	return max(n-VnetHdrLen, 0), err
}

// tapWriter is the state of WriteBatch, allocated once.
type tapWriter struct {
	tap       *TAP
	off       *Offload // OffloadTAPCoalesce
	coalesced []byte   // a coalesced frame under construction
	frames    [][]byte
	failed    int
	errno     unix.Errno // of the last frame refused
	sent      int        // frames that one wrote
	err       error
	fn        func(fd uintptr) bool
}

func (w *tapWriter) init() {
	if w.off.InUse() {
		w.coalesced = make([]byte, VnetHdrLen+EthHeaderLen+maxCoalescedLen)
	}
	w.fn = w.write
}

// Offloads reports the TAP's offload, OffloadTAPCoalesce.
func (t *TAP) Offloads() []OffloadStatus { return []OffloadStatus{t.w.off.Status()} }

// WriteBatch writes frames to the TAP, delivering them to the local host,
// and returns how many it could not write and the errno of the last one
// refused. It returns an error only when the device fails.
//
// Where the kernel takes it (OffloadTAPCoalesce in use), consecutive
// frames that carry IPv4 UDP datagrams of one flow (the same Ethernet and
// IP headers but for length, ID and checksum, the same ports, payloads of
// one length but for the last) go to the kernel as one UDP
// segmentation-offload frame, which it splits back into the same
// datagrams, so that a burst costs one system call. Only datagrams whose
// IP and UDP checksums are valid are coalesced (the kernel does not check
// them again); the rest are written one by one, as is everything with
// TAPConfig.NoCoalesce. If the kernel refuses a coalesced frame, its
// datagrams are written again one by one at once, and coalescing is off
// from then on (Offload.Status counts the fallback).
func (t *TAP) WriteBatch(frames [][]byte) (failed int, errno unix.Errno, err error) {
	w := &t.w
	w.frames, w.failed, w.errno, w.err = frames, 0, 0, nil
	err = t.rc.Write(w.fn)
	w.frames = nil
	if err == nil {
		err = w.err
	}
	return w.failed, w.errno, err
}

func (w *tapWriter) write(fd uintptr) bool {
	for i := 0; i < len(w.frames); {
		n, seg := 1, 0
		if w.off.InUse() {
			n, seg = udpRun(w.frames[i:])
		}
		var err error
		if n >= 2 {
			l := buildCoalesced(w.coalesced, w.frames[i:i+n], seg)
			if e := injected(OffloadTAPCoalesce); e != 0 {
				err = e
			} else {
				_, err = rawWrite(fd, w.coalesced[:l])
			}
			if e, ok := err.(unix.Errno); ok && refusesOffload(e) {
				if w.one(fd, w.frames[i:i+n]) {
					return true
				}
				if w.sent > 0 {
					w.off.fallBack("write of a VIRTIO_NET_HDR_GSO_UDP_L4 frame to the TAP", e)
				}
				i += n
				continue
			}
		} else {
			n = 1
			_, err = writev2(fd, zeroVnet[:], w.frames[i])
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EBADF:
			w.err = os.ErrClosed
			return true
		case unix.EBADFD:
			w.err = w.tap.gone(err)
			return true
		default:
			w.failed += n
			w.errno, _ = err.(unix.Errno)
		}
		i += n
	}
	return true
}

// one writes frames one by one, setting w.sent to how many the kernel
// took and counting the rest in w.failed. It reports true when the device
// failed (w.err is set).
func (w *tapWriter) one(fd uintptr, frames [][]byte) bool {
	w.sent = 0
	for j := 0; j < len(frames); {
		_, err := writev2(fd, zeroVnet[:], frames[j])
		switch err {
		case nil:
			w.sent++
		case unix.EINTR:
			continue
		case unix.EBADF:
			w.err = os.ErrClosed
			return true
		case unix.EBADFD:
			w.err = w.tap.gone(err)
			return true
		default:
			w.failed++
			w.errno, _ = err.(unix.Errno)
		}
		j++
	}
	return false
}

// ErrTAPGone is the error of a TAP whose interface was deleted while open.
var ErrTAPGone = errors.New("the TAP interface was deleted underneath meshcast")

// gone turns EBADFD, what the kernel returns once the interface is
// deleted, into ErrTAPGone.
func (t *TAP) gone(err error) error {
	if errors.Is(err, unix.EBADFD) {
		return fmt.Errorf("TAP %s: %w; restart meshcast to recreate it", t.name, ErrTAPGone)
	}
	return err
}

// writev2 writes a and b as one packet, without allocating.
func writev2(fd uintptr, a, b []byte) (int, error) {
	var iov [2]unix.Iovec
	iov[0].Base, iov[1].Base = unsafe.SliceData(a), unsafe.SliceData(b)
	iov[0].SetLen(len(a))
	iov[1].SetLen(len(b))
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawRead and rawWrite are read(2) and write(2) as raw system calls: the
// TAP is nonblocking, so they return at once, and the runtime's bookkeeping
// for calls that may block (and the wake-up of its monitor thread) is
// saved.
func rawRead(fd uintptr, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawWrite(fd uintptr, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Close closes the device, which removes the interface.
func (t *TAP) Close() error { return t.file.Close() }

// SetReadDeadline interrupts ReadBatch at d (a time in the past: at once),
// and the zero time lets it wait again. The device stays open and what
// arrives meanwhile waits in its queue.
func (t *TAP) SetReadDeadline(d time.Time) error { return t.file.SetReadDeadline(d) }

// ErrNotOurTAP is the error of a file handed to AttachTAP that is not a
// TAP device of the expected name and flags.
var ErrNotOurTAP = errors.New("stored file descriptor is not the expected TAP device")

// AttachTAP takes over a TAP device that is already open: a file
// descriptor kept by the service manager (systemd's file descriptor
// store) across a restart of the daemon. It checks that f is a TAP of the
// name cfg.Name with a virtio-net header, applies the header size, the
// offloads and the offload probe again, and leaves the interface's
// addresses and routes as they are: the overlay address is added only if
// it is missing, and the interface is brought up. f is consumed: AttachTAP
// works on a duplicate of it and closes f either way.
func AttachTAP(f *os.File, cfg TAPConfig) (*TAP, error) {
	defer f.Close()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	// A duplicate through SyscallConn, not f.Fd(), which would put the
	// shared file description into blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("attach TAP %s: %w", cfg.Name, err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(ofd uintptr) {
		fd, derr = unix.FcntlInt(ofd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("attach TAP %s: %w", cfg.Name, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("attach TAP %s: dup: %w", cfg.Name, derr)
	}
	if err := checkTAP(fd, cfg.Name); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach TAP %s: %w", cfg.Name, err)
	}
	if err := setVnet(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach TAP %s: %w", cfg.Name, err)
	}
	t, err := newTAP(os.NewFile(uintptr(fd), "/dev/net/tun"), cfg)
	if err != nil {
		return nil, err
	}
	if err := t.reconfigure(cfg.Overlay, cfg.Overlay6); err != nil {
		t.file.Close()
		return nil, err
	}
	return t, nil
}

// checkTAP reports whether fd is a TAP device named name with IFF_VNET_HDR.
func checkTAP(fd int, name string) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("%w: TUNGETIFF: %v", ErrNotOurTAP, err)
	}
	flags := ifr.Uint16()
	switch {
	case ifr.Name() != name:
		return fmt.Errorf("%w: it is %q, not %q", ErrNotOurTAP, ifr.Name(), name)
	case flags&(unix.IFF_TAP|unix.IFF_TUN) != unix.IFF_TAP:
		return fmt.Errorf("%w: %s is not a TAP (flags %#x)", ErrNotOurTAP, name, flags)
	case flags&unix.IFF_VNET_HDR == 0 || flags&unix.IFF_NO_PI == 0:
		return fmt.Errorf("%w: %s lacks IFF_VNET_HDR|IFF_NO_PI (flags %#x)", ErrNotOurTAP, name, flags)
	}
	return nil
}

// reconfigure is configure for an attached TAP: it changes only what
// differs from the configuration and never removes an address or route.
func (t *TAP) reconfigure(overlay, overlay6 netip.Prefix) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", t.name, err)
	}
	if err := t.setIPv6(link, overlay6); err != nil {
		return err
	}
	a := link.Attrs()
	if a.HardwareAddr.String() != t.mac.String() {
		if err := netlink.LinkSetHardwareAddr(link, t.mac); err != nil {
			return fmt.Errorf("TAP %s: set MAC %v: %w", t.name, t.mac, err)
		}
	}
	if a.TxQLen != TAPQueueLen {
		if err := netlink.LinkSetTxQLen(link, TAPQueueLen); err != nil {
			return fmt.Errorf("TAP %s: set queue length %d: %w", t.name, TAPQueueLen, err)
		}
	}
	if t.mtu > 0 && a.MTU != t.mtu {
		if err := netlink.LinkSetMTU(link, t.mtu); err != nil {
			return fmt.Errorf("TAP %s: set MTU %d: %w", t.name, t.mtu, err)
		}
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("TAP %s: list addresses: %w", t.name, err)
	}
	have := false
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP.To4())
		ones, _ := ad.Mask.Size()
		if ok && ip == overlay.Addr() && ones == overlay.Bits() {
			have = true
		}
	}
	if !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   overlay.Addr().AsSlice(),
			Mask: net.CIDRMask(overlay.Bits(), 32),
		}}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("TAP %s: add address %v: %w", t.name, overlay, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("TAP %s: set up: %w", t.name, err)
		}
	}
	return nil
}

// SyscallConn gives access to the TAP's file descriptor, such as to hand
// a copy of it to the service manager's file descriptor store.
func (t *TAP) SyscallConn() syscall.RawConn { return t.rc }
