package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

const (
	batchMax = 64      // datagrams per sendmmsg and recvmmsg
	sockBuf  = 8 << 20 // socket buffers, set with the FORCE options (root)
)

// A receiver is the application of one subscriber: a UDP socket opened in
// its namespace, joined to the group on mcbr-demo, counting the datagrams
// of the current trial and, when asked, their one-way latency.
type receiver struct {
	node *nsNode
	ifi  *net.Interface // mcbr-demo
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	done chan struct{} // closed when the read loop has returned

	mu     sync.Mutex
	trial  uint32
	count  uint64
	last   int64 // arrival of the trial's last datagram, Unix ns
	any    int64 // arrival of the last datagram of any trial, Unix ns
	record bool
	lat    []float64 // microseconds
}

// openReceiver opens and joins the receiver of node; mcbr-demo must exist.
func openReceiver(node *nsNode) (*receiver, error) {
	r := &receiver{node: node, done: make(chan struct{})}
	err := node.do(func() error {
		ifi, err := net.InterfaceByName(overlayDev)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: groupAddr, Port: groupPort})
		if err != nil {
			return err
		}
		setBuffer(c, unix.SO_RCVBUFFORCE)
		pc := ipv4.NewPacketConn(c)
		if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: groupAddr}); err != nil {
			c.Close()
			return fmt.Errorf("joining %v on %s: %w", groupAddr, overlayDev, err)
		}
		r.conn, r.pc, r.ifi = c, pc, ifi
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: receiver in %s: %w", node.name, err)
	}
	go r.loop()
	return r, nil
}

func setBuffer(c *net.UDPConn, opt int) {
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, sockBuf)
		})
	}
}

func (r *receiver) loop() {
	defer close(r.done)
	msgs := make([]ipv4.Message, batchMax)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := r.pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		r.mu.Lock()
		r.any = now
		for _, m := range msgs[:n] {
			trial, _, sent, ok := parseHeader(m.Buffers[0][:m.N])
			if !ok || trial != r.trial {
				continue
			}
			r.count++
			r.last = now
			if r.record {
				r.lat = append(r.lat, float64(now-sent)/1e3)
			}
		}
		r.mu.Unlock()
	}
}

// reset starts counting trial, recording latencies if record is set.
func (r *receiver) reset(trial uint32, record bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trial, r.count, r.last, r.record, r.lat = trial, 0, 0, record, r.lat[:0]
}

// lastAny returns when the last datagram of any trial arrived, in Unix
// nanoseconds, or 0.
func (r *receiver) lastAny() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.any
}

// lastArrival returns when the current trial's last datagram arrived, in
// Unix nanoseconds, or 0.
func (r *receiver) lastArrival() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// received returns the count of the current trial.
func (r *receiver) received() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// latencies returns a copy of the latencies of the current trial.
func (r *receiver) latencies() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]float64(nil), r.lat...)
}

// rejoin leaves and joins the group again, so that the host sends fresh
// membership reports.
func (r *receiver) rejoin() error {
	g := &net.UDPAddr{IP: groupAddr}
	_ = r.pc.LeaveGroup(r.ifi, g)
	if err := r.pc.JoinGroup(r.ifi, g); err != nil {
		return fmt.Errorf("bench: receiver in %s: joining again: %w", r.node.name, err)
	}
	return nil
}

func (r *receiver) close() {
	r.conn.Close()
	<-r.done
}

// A sender sends the group's datagrams out of mcbr-demo in the source
// namespace.
type sender struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	dst  *net.UDPAddr
	bufs [][]byte
	msgs []ipv4.Message
}

// openSender opens the sender in node; mcbr-demo must exist.
func openSender(node *nsNode) (*sender, error) {
	s := &sender{dst: &net.UDPAddr{IP: groupAddr, Port: groupPort}}
	err := node.do(func() error {
		ifi, err := net.InterfaceByName(overlayDev)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			return err
		}
		setBuffer(c, unix.SO_SNDBUFFORCE)
		pc := ipv4.NewPacketConn(c)
		for _, set := range []func() error{
			func() error { return pc.SetMulticastInterface(ifi) },
			func() error { return pc.SetMulticastTTL(1) },
			func() error { return pc.SetMulticastLoopback(false) },
		} {
			if err := set(); err != nil {
				c.Close()
				return err
			}
		}
		s.conn, s.pc = c, pc
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: sender in %s: %w", node.name, err)
	}
	s.bufs = make([][]byte, batchMax)
	s.msgs = make([]ipv4.Message, batchMax)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, maxPayload)
		s.msgs[i].Addr = s.dst
	}
	return s, nil
}

func (s *sender) close() { s.conn.Close() }

// sendStats is what one sending interval did.
type sendStats struct {
	sent    uint64
	start   time.Time
	elapsed time.Duration
	sysCPU  float64 // system time of the sending thread, seconds
}

// send sends datagrams of payload bytes for trial at rate datagrams per
// second for dur, in batches of up to rate/2000 (half a millisecond's
// worth, at most batchMax) per sendmmsg. A sender that falls behind sends
// full batches back to back. It runs on its locked thread so that the
// thread's system time is the cost of sending, which on the kernel path
// includes the bridge's replication.
func (s *sender) send(ctx context.Context, trial uint32, rate float64, dur time.Duration, payload int) (sendStats, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batch := min(max(int(rate/2000), 1), batchMax)
	for i := range s.msgs {
		s.msgs[i].Buffers = [][]byte{s.bufs[i][:payload]}
	}
	var st sendStats
	sys0 := threadSysCPU()
	start := time.Now()
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= dur || ctx.Err() != nil {
			break
		}
		due := uint64(rate*el.Seconds()) + 1
		if due <= st.sent {
			next := start.Add(time.Duration(float64(st.sent) / rate * float64(time.Second)))
			time.Sleep(max(next.Sub(now), 0))
			continue
		}
		n := int(min(due-st.sent, uint64(batch)))
		for i := range n {
			putHeader(s.bufs[i], trial, st.sent+uint64(i), now)
		}
		k, err := s.pc.WriteBatch(s.msgs[:n], 0)
		st.sent += uint64(max(k, 0))
		if err != nil && !errors.Is(err, syscall.ENOBUFS) {
			return st, fmt.Errorf("bench: sending: %w", err)
		}
	}
	st.start = start
	st.elapsed = time.Since(start)
	st.sysCPU = threadSysCPU() - sys0
	return st, nil
}
