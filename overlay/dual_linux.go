package overlay

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Dual is the underlay of a dual-stack node: a Conn on its IPv4 address
// and one on its IPv6 address, so that it reaches IPv4-only peers over
// IPv4 and IPv6-only ones over IPv6. WriteBatch sends each message
// through the Conn of its address's family; ReadBatch returns what
// either received, taking turns, so that one reader serves both.
//
// ReadBatch must not run concurrently with itself; WriteBatch is safe for
// concurrent use. The Conns must receive through their sockets (not a
// receive ring): NewDual refuses one that does not.
type Dual struct {
	c4, c6 *Conn
	pfd    [3]unix.PollFd // the receive sockets and the wake-up eventfd
	wake   int            // eventfd that SetReadDeadline and Close write
	// deadline is SetReadDeadline's time in Unix nanoseconds, 0 for none.
	deadline atomic.Int64
	first    int        // the Conn ReadBatch tries first: 0 IPv4, 1 IPv6
	rmu      sync.Mutex // held by ReadBatch, so Close can free wake after it
	closed   bool       // under rmu: wake is closed

	wmu  sync.Mutex
	part [2][]Message // the messages of a mixed batch, by family
	at   [2][]int     // and their index in the batch
}

// NewDual joins c4 (IPv4) and c6 (IPv6). The Dual owns both: Close closes
// them.
func NewDual(c4, c6 *Conn) (*Dual, error) {
	if c4 == nil || c6 == nil {
		return nil, errors.New("overlay: NewDual needs an IPv4 and an IPv6 Conn")
	}
	if c4.prx.Load() != nil || c6.prx.Load() != nil {
		return nil, errors.New("overlay: a dual-stack underlay receives through its sockets, not a receive ring")
	}
	d := &Dual{c4: c4, c6: c6}
	for i, c := range []*Conn{c4, c6} {
		var fd int
		if err := c.rxc.Control(func(s uintptr) { fd = int(s) }); err != nil {
			return nil, err
		}
		d.pfd[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("overlay: eventfd: %w", err)
	}
	d.wake = wake
	d.pfd[2] = unix.PollFd{Fd: int32(wake), Events: unix.POLLIN}
	return d, nil
}

// Conns returns the IPv4 and the IPv6 Conn.
func (d *Dual) Conns() (c4, c6 *Conn) { return d.c4, d.c6 }

func (d *Dual) conn(i int) *Conn {
	if i == 0 {
		return d.c4
	}
	return d.c6
}

// ReadBatch waits until either Conn has received and returns its packets,
// as Conn.ReadBatch does. It returns os.ErrDeadlineExceeded once the time
// SetReadDeadline set has passed, and the Conns' error once they are
// closed.
func (d *Dual) ReadBatch(msgs []Message) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	for {
		for k := range 2 {
			i := d.first ^ k
			n, err := d.conn(i).readSocket(msgs, false)
			if n > 0 || err != nil {
				d.first = i ^ 1 // the other one first next time
				return n, err
			}
		}
		timeout := -1
		if dl := d.deadline.Load(); dl != 0 {
			left := dl - time.Now().UnixNano()
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = int(left/int64(time.Millisecond)) + 1
		}
		for i := range d.pfd {
			d.pfd[i].Revents = 0
		}
		if _, err := unix.Poll(d.pfd[:], timeout); err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("poll", err)
		}
		if d.pfd[2].Revents != 0 {
			var b [8]byte
			unix.Read(d.wake, b[:])
		}
	}
}

// SetReadDeadline interrupts ReadBatch at t (a time in the past: at once);
// the zero time lets it wait again.
func (d *Dual) SetReadDeadline(t time.Time) error {
	var dl int64
	if !t.IsZero() {
		dl = max(t.UnixNano(), 1)
	}
	d.deadline.Store(dl)
	d.poke()
	return nil
}

// poke wakes a ReadBatch waiting in poll.
func (d *Dual) poke() {
	var one = [8]byte{1}
	unix.Write(d.wake, one[:])
}

// WriteBatch sends every message through the Conn of its address's
// family, as Conn.WriteBatch does.
func (d *Dual) WriteBatch(msgs []Message) (failed int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	v4 := msgs[0].Addr.Is4()
	mixed := false
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Addr.Is4() != v4 {
			mixed = true
			break
		}
	}
	if !mixed {
		if v4 {
			return d.c4.WriteBatch(msgs)
		}
		return d.c6.WriteBatch(msgs)
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	for i := range msgs {
		k := 1
		if msgs[i].Addr.Is4() {
			k = 0
		}
		d.part[k] = append(d.part[k], msgs[i])
		d.at[k] = append(d.at[k], i)
	}
	var errs []error
	for k := range 2 {
		f, err := d.conn(k).WriteBatch(d.part[k])
		failed += f
		for j, i := range d.at[k] {
			msgs[i].N, msgs[i].Errno = d.part[k][j].N, d.part[k][j].Errno
		}
		clear(d.part[k])
		d.part[k], d.at[k] = d.part[k][:0], d.at[k][:0]
		if err != nil {
			errs = append(errs, err)
		}
	}
	return failed, errors.Join(errs...)
}

// Offloads reports the offloads of both Conns; those of the IPv6 one are
// named with the suffix "_ipv6".
func (d *Dual) Offloads() []OffloadStatus {
	out := d.c4.Offloads()
	for _, o := range d.c6.Offloads() {
		o.Name += "_ipv6"
		out = append(out, o)
	}
	return out
}

// Close closes both Conns and wakes a waiting ReadBatch, which then
// returns their error.
func (d *Dual) Close() error {
	err := errors.Join(d.c4.Close(), d.c6.Close())
	d.poke()
	d.rmu.Lock()
	if !d.closed {
		d.closed = true
		unix.Close(d.wake)
	}
	d.rmu.Unlock()
	return err
}
