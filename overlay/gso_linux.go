package overlay

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// MaxFlowSockets bounds the UDP sockets a VXLAN Conn opens for the
	// source ports of inner flows; flows beyond it are sent raw.
	MaxFlowSockets = 64
	// maxGSOSegments bounds the datagrams of one segmentation-offload
	// send: UDP_MAX_SEGMENTS before Linux 6.1.
	maxGSOSegments = 64
	// maxGSOBytes bounds the UDP payload of one such send.
	maxGSOBytes = 65507
	// gsoCtrlLen holds a UDP_SEGMENT control message (a uint16).
	gsoCtrlLen = 24
)

// gsoSupported returns nil if the kernel accepts UDP_SEGMENT, and else
// why not.
func gsoSupported() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 1400)
}

// flowSock is the UDP socket of one source port; rc is nil when the port
// could not be bound, and the flow is sent raw.
type flowSock struct {
	file *os.File
	rc   syscall.RawConn
	// retryAt is when to try to open a socket that could not be opened
	// again: its port may have been held by a process that has gone
	// since, such as the meshcast this one took over from.
	retryAt time.Time
}

// flowRetry is how long a flow whose socket could not be opened sends
// without segmentation offload before meshcast tries again.
const flowRetry = 2 * time.Second

// gsoRun is the copies of a batch that leave as one send: one source
// port, one destination, segments of one size but for the last.
type gsoRun struct {
	key        runKey
	head, tail int // messages, linked through gsoSender.next
	count      int
	seg, bytes int
	closed     bool
}

type runKey struct {
	sport, dport uint16
	dst          netip.Addr
}

// gsoSender sends VXLAN with UDP segmentation offload. Its scratch
// arrays are allocated once and grow only when a batch is larger than
// any before.
type gsoSender struct {
	off   *Offload     // OffloadUDPGSO; switched off when the kernel refuses it
	log   *slog.Logger // for a flow socket that cannot be opened
	local netip.Addr   // IPv4 or IPv6: the flow sockets' family
	socks map[uint16]*flowSock
	runs  []gsoRun
	open  map[runKey]int // the last run of each key in runs
	next  []int
	raw   []Message // copies of flows without a socket
	rawAt []int     // their index in the batch
	b     *batchIO  // headers for one sendmmsg; iovecs are separate
	iovs  []unix.Iovec
	ctrl  []byte
	owner []int // the run of each header
	order []int // runs sorted by socket
	fn    func(fd uintptr) bool

	flowFailed bool // a flow socket could not be opened (logged once)
	resent     int  // copies that the last resend delivered
}

func newGSOSender(local netip.Addr, b *batchIO, off *Offload, log *slog.Logger) *gsoSender {
	if log == nil {
		log = slog.Default()
	}
	g := &gsoSender{
		off:   off,
		log:   log,
		local: local,
		socks: make(map[uint16]*flowSock),
		open:  make(map[runKey]int),
		b:     newBatchIO(len(b.hdrs)),
	}
	g.ctrl = make([]byte, len(g.b.hdrs)*gsoCtrlLen)
	g.owner = make([]int, len(g.b.hdrs))
	g.fn = func(fd uintptr) bool { return g.b.call(fd, unix.SYS_SENDMMSG) }
	return g
}

// sock returns the socket of source port sport, opening it if it can.
func (g *gsoSender) sock(sport uint16) *flowSock {
	s, ok := g.socks[sport]
	if ok && (s.file != nil || s.retryAt.IsZero() || time.Now().Before(s.retryAt)) {
		return s
	}
	if !ok {
		s = &flowSock{}
	}
	if ok || len(g.socks) < MaxFlowSockets {
		fd, err := flowSocket(g.local, sport, g.log)
		if err == nil {
			s.file = os.NewFile(uintptr(fd), "vxlan-flow")
			if s.rc, err = s.file.SyscallConn(); err != nil {
				s.file.Close()
				s.file, s.rc = nil, nil
			}
		}
		s.retryAt = time.Time{}
		if err != nil {
			s.retryAt = time.Now().Add(flowRetry)
		}
		if err != nil && !g.flowFailed {
			// Not a loss: the flow's copies go through the raw socket,
			// one packet each, until the socket opens.
			g.flowFailed = true
			g.log.Warn("VXLAN flow socket not opened; its copies are sent without segmentation offload until it opens",
				"source_port", sport, "errno", ErrnoName(Errno(err)), "err", err)
		}
	}
	g.socks[sport] = s
	return s
}

// flowSocket opens a UDP socket bound to local:sport that only sends.
func flowSocket(local netip.Addr, sport uint16, log *slog.Logger) (int, error) {
	fd, err := unix.Socket(family(local), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	setBuffer(fd, sendBuffer, log)
	if err := receiveNothing(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, sockaddr(local, sport)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// group sorts the copies of a batch into runs, each of which can leave as
// one segmentation-offload send: one source port, destination port and
// address, at most maxGSOSegments copies and maxGSOBytes of payload, every
// copy the size of the first but the last, which may be shorter and ends
// the run. Runs are linked through g.next and listed in g.order by source
// port, in the order they were opened within a port. Copies of a flow
// without a socket go to g.raw (their index in g.rawAt), to be sent one
// by one. A message too short for VXLAN, or to the other address family
// than the Conn's, is marked failed;
// group returns how many were.
func (g *gsoSender) group(msgs []Message) (failed int) {
	g.runs = g.runs[:0]
	clear(g.open)
	if cap(g.next) < len(msgs) {
		g.next = make([]int, len(msgs))
	}
	g.next = g.next[:len(msgs)]
	g.raw, g.rawAt = g.raw[:0], g.rawAt[:0]
	for i := range msgs {
		m := &msgs[i]
		if len(m.Buf) < UDPHeaderLen+VXLANHeaderLen || m.Addr.Is4() != g.local.Is4() {
			m.N, m.Errno = -1, unix.EINVAL
			failed++
			continue
		}
		key := runKey{
			sport: binary.BigEndian.Uint16(m.Buf[0:2]),
			dport: binary.BigEndian.Uint16(m.Buf[2:4]),
			dst:   m.Addr,
		}
		plen := len(m.Buf) - UDPHeaderLen
		g.next[i] = -1
		r, ok := g.open[key]
		if ok {
			run := &g.runs[r]
			if !run.closed && run.count < maxGSOSegments && plen <= run.seg && run.bytes+plen <= maxGSOBytes {
				g.next[run.tail] = i
				run.tail = i
				run.count++
				run.bytes += plen
				run.closed = plen < run.seg
				continue
			}
		} else if g.sock(key.sport).rc == nil {
			// No socket for this port (a key with a run has one).
			g.raw = append(g.raw, *m)
			g.rawAt = append(g.rawAt, i)
			continue
		}
		g.open[key] = len(g.runs)
		g.runs = append(g.runs, gsoRun{key: key, head: i, tail: i, count: 1, seg: plen, bytes: plen})
	}
	// Runs of one socket go out together, in the order they were opened.
	g.order = g.order[:0]
	for r := range g.runs {
		g.order = append(g.order, r)
	}
	sortBySport(g.order, g.runs)
	return failed
}

// writeBatch groups msgs (UDP header, VXLAN header, frame, as VXLAN.Encap
// makes them) into runs and sends each run as one message of a sendmmsg on
// the socket of its source port. Flows without a socket go to raw.
func (g *gsoSender) writeBatch(msgs []Message, raw func([]Message) (int, error)) (failed int, err error) {
	failed = g.group(msgs)
	if len(g.raw) > 0 {
		f, err := raw(g.raw)
		failed += f
		for j, at := range g.rawAt {
			msgs[at].N, msgs[at].Errno = g.raw[j].N, g.raw[j].Errno
		}
		clear(g.raw)
		if err != nil {
			return failed, err
		}
	}
	for start := 0; start < len(g.order); {
		end := start + 1
		for end < len(g.order) && g.runs[g.order[end]].key.sport == g.runs[g.order[start]].key.sport {
			end++
		}
		f, left, err := g.sendRuns(msgs, g.order[start:end], raw)
		failed += f
		if err != nil {
			return failed, err
		}
		if left != nil {
			// The kernel refused the offload: the rest of the batch goes
			// without it.
			left = append(left, g.order[end:]...)
			f, err := g.resend(msgs, left, raw)
			return failed + f, err
		}
		start = end
	}
	return failed, nil
}

// resend sends the copies of runs one by one through raw, without the
// offload, and returns how many failed. It sets g.resent to how many the
// kernel took.
func (g *gsoSender) resend(msgs []Message, runs []int, raw func([]Message) (int, error)) (failed int, err error) {
	g.raw, g.rawAt = g.raw[:0], g.rawAt[:0]
	for _, r := range runs {
		run := &g.runs[r]
		for i := run.head; i >= 0; i = g.next[i] {
			g.raw = append(g.raw, msgs[i])
			g.rawAt = append(g.rawAt, i)
			if i == run.tail {
				break
			}
		}
	}
	failed, err = raw(g.raw)
	g.resent = 0
	for j, at := range g.rawAt {
		msgs[at].N, msgs[at].Errno = g.raw[j].N, g.raw[j].Errno
		if g.raw[j].N >= 0 && err == nil {
			g.resent++
		}
	}
	clear(g.raw)
	return failed, err
}

// sortBySport orders runs by source port, keeping the order of runs of
// one port (an insertion sort: a batch has few flows).
func sortBySport(order []int, runs []gsoRun) {
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && runs[order[j]].key.sport < runs[order[j-1]].key.sport; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
}

// sendRuns sends runs, all of one source port, with as few sendmmsg calls
// as the headers allow. A run that the kernel refuses with an errno that
// may mean it does not take the offload is sent again at once through raw,
// copy by copy; if that delivers, the offload is switched off and sendRuns
// returns the runs it has not sent yet as left, for the caller to send
// without it.
func (g *gsoSender) sendRuns(msgs []Message, runs []int, raw func([]Message) (int, error)) (failed int, left []int, err error) {
	s := g.sock(g.runs[runs[0]].key.sport)
	b := g.b
	for len(runs) > 0 {
		// Fill headers and iovecs for as many runs as fit.
		nh, niov := 0, 0
		for nh < len(runs) && nh < len(b.hdrs) {
			run := &g.runs[runs[nh]]
			if cap(g.iovs) < niov+run.count {
				if nh > 0 {
					break // send these first: growing would move their iovecs
				}
				g.iovs = make([]unix.Iovec, 0, max(run.count, 2*cap(g.iovs)))
			}
			g.iovs = g.iovs[:niov+run.count]
			first := niov
			for i := run.head; i >= 0; i = g.next[i] {
				p := msgs[i].Buf[UDPHeaderLen:]
				g.iovs[niov].Base = unsafe.SliceData(p)
				g.iovs[niov].SetLen(len(p))
				niov++
				if i == run.tail {
					break
				}
			}
			h := &b.hdrs[nh].hdr
			h.Iov = &g.iovs[first]
			h.SetIovlen(run.count)
			b.setAddr(nh, run.key.dst, run.key.dport)
			h.Control, h.Controllen = nil, 0
			if run.count > 1 {
				c := g.ctrl[nh*gsoCtrlLen : (nh+1)*gsoCtrlLen]
				clear(c)
				cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
				cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
				cm.SetLen(unix.CmsgLen(2))
				binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(run.seg))
				h.Control = &c[0]
				h.SetControllen(unix.CmsgSpace(2))
			}
			g.owner[nh] = runs[nh]
			nh++
		}
		for sent := 0; sent < nh; {
			b.start, b.cnt, b.n, b.errno = sent, nh-sent, 0, 0
			if e := g.fault(sent); e != 0 {
				b.errno = e
			} else if err := s.rc.Write(g.fn); err != nil {
				return failed, nil, err
			}
			switch {
			case b.errno == 0:
				for j := sent; j < sent+b.n; j++ {
					failed += g.mark(msgs, g.owner[j], 0)
				}
				sent += b.n
			case g.runs[g.owner[sent]].count > 1 && refusesOffload(b.errno):
				errno := b.errno
				f, err := g.resend(msgs, g.owner[sent:sent+1], raw)
				failed += f
				if err != nil {
					return failed, nil, err
				}
				sent++
				if g.resent > 0 {
					g.off.fallBack("sendmmsg with UDP_SEGMENT", errno)
					left = append(g.order[:0:0], g.owner[sent:nh]...)
					return failed, append(left, runs[nh:]...), nil
				}
			case perMessage(b.errno) || b.errno == unix.EIO:
				failed += g.mark(msgs, g.owner[sent], b.errno)
				sent++
			default:
				return failed, nil, os.NewSyscallError("sendmmsg", b.errno)
			}
		}
		runs = runs[nh:]
	}
	return failed, nil, nil
}

// fault returns the errno to fail the send at header sent with, where a
// test build injects one into a segmentation-offload send.
func (g *gsoSender) fault(sent int) unix.Errno {
	if g.runs[g.owner[sent]].count < 2 {
		return 0
	}
	return injected(OffloadUDPGSO)
}

// mark sets N and Errno on the messages of run r, sent when errno is 0,
// and returns how many failed.
func (g *gsoSender) mark(msgs []Message, r int, errno unix.Errno) int {
	run := &g.runs[r]
	for i := run.head; i >= 0; i = g.next[i] {
		if errno == 0 {
			msgs[i].N, msgs[i].Errno = len(msgs[i].Buf), 0
		} else {
			msgs[i].N, msgs[i].Errno = -1, errno
		}
		if i == run.tail {
			break
		}
	}
	if errno == 0 {
		return 0
	}
	return run.count
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func (g *gsoSender) close() error {
	var errs []error
	for _, s := range g.socks {
		if s.file != nil {
			errs = append(errs, s.file.Close())
		}
	}
	return errors.Join(errs...)
}
