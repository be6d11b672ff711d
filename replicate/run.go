package replicate

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/meshcast/meshcast/overlay"
	"golang.org/x/sys/unix"
)

// FrameReader reads frames in batches; overlay.TAP implements it. Frame i
// goes to bufs[i][offset:] and its length to sizes[i].
type FrameReader interface {
	ReadBatch(bufs [][]byte, offset int, sizes []int) (int, error)
}

// FrameWriter writes frames; overlay.TAP implements it. WriteBatch returns
// how many frames it could not write and the errno of the last one, and an
// error only when the device fails.
type FrameWriter interface {
	WriteBatch(frames [][]byte) (failed int, errno unix.Errno, err error)
}

// PacketReader reads a batch of packets; overlay.Conn implements it.
type PacketReader interface {
	ReadBatch(msgs []overlay.Message) (int, error)
}

// PacketConn is the underlay: overlay.Conn implements it.
type PacketConn interface {
	PacketReader
	PacketWriter
}

// Deadliner is a device whose reads can be interrupted; overlay.TAP and
// overlay.Conn implement it.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
}

// Run forwards in both directions until ctx is done or a device fails.
//
// When ctx is done and both devices are Deadliners, Run stops its readers
// with a read deadline, waits until both have finished the batch in hand
// (every frame read is sent and every packet read is written), clears the
// deadlines and returns nil. The devices are then untouched and open:
// what arrives meanwhile waits in the TAP's queue and the socket's buffer,
// for Run to be called again or for another process that holds the same
// descriptors. Otherwise, cancel ctx and then close tap and conn: Run
// returns nil when its devices fail after ctx is done.
func (e *Engine) Run(ctx context.Context, tap interface {
	FrameReader
	FrameWriter
}, conn PacketConn) error {
	var w PacketWriter = conn
	e.announceTo.Store(&w)
	defer e.announceTo.Store(nil)
	errc := make(chan error, 2)
	go func() { errc <- e.RunEgress(tap, conn) }()
	go func() { errc <- e.RunIngress(conn, tap) }()
	td, tok := any(tap).(Deadliner)
	cd, cok := any(conn).(Deadliner)
	// stop interrupts both loops and waits for them; pending is how many
	// have not returned yet.
	stop := func(pending int) error {
		if !tok || !cok {
			return nil
		}
		var errs []error
		for _, d := range []Deadliner{td, cd} {
			if err := d.SetReadDeadline(time.Unix(1, 0)); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		for ; pending > 0; pending-- {
			<-errc
		}
		for _, d := range []Deadliner{td, cd} {
			d.SetReadDeadline(time.Time{})
		}
		return nil
	}
	sweep := time.NewTicker(10 * time.Second)
	defer sweep.Stop()
	faults := time.NewTicker(FaultLogEvery)
	defer faults.Stop()
	var snoopC <-chan time.Time
	if e.snoop != nil {
		// Timers run at a tenth of the last member interval, so a group
		// stops within that much of its deadline.
		every := e.snoop.Table.Config().LastMemberInterval / 10
		if every < 10*time.Millisecond {
			every = 10 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		snoopC = t.C
		e.snoop.tick(time.Now())
	}
	for {
		select {
		case err := <-errc:
			if ctx.Err() != nil || isClosed(err) {
				stop(1)
				return nil
			}
			stop(1)
			return err
		case now := <-sweep.C:
			e.Sweep(now)
		case now := <-faults.C:
			e.faults.flush(now.UnixNano())
		case now := <-snoopC:
			e.snoop.tick(now)
		case <-ctx.Done():
			if err := stop(2); err != nil && !isClosed(err) {
				return err
			}
			return nil
		}
	}
}

func isClosed(err error) bool {
	return err == nil || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// RunEgress reads frames from the TAP and sends their copies to the peers
// until r fails.
func (e *Engine) RunEgress(r FrameReader, w PacketWriter) error {
	bufs := make([][]byte, e.batch)
	for i := range bufs {
		bufs[i] = make([]byte, BufSize)
	}
	sizes := make([]int, e.batch)
	g := e.newEgress(4 * e.batch)
	for {
		n, err := r.ReadBatch(bufs, overlay.Headroom, sizes)
		if err != nil {
			return err
		}
		g.now = time.Now().UnixNano()
		for i := 0; i < n; i++ {
			if err := g.forward(bufs[i], sizes[i], w); err != nil {
				return err
			}
		}
		if err := g.flush(w); err != nil {
			return err
		}
	}
}

// RunIngress reads packets from the underlay and writes the accepted inner
// frames of each batch to the TAP together until r or w fails.
func (e *Engine) RunIngress(r PacketReader, w FrameWriter) error {
	msgs := make([]overlay.Message, e.batch)
	frames := make([][]byte, 0, e.batch)
	for {
		n, err := r.ReadBatch(msgs)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		frames = frames[:0]
		for i := 0; i < n; i++ {
			if frame := e.receive(msgs[i].Addr, msgs[i].Buf[:msgs[i].N], now); frame != nil {
				frames = append(frames, frame)
			}
		}
		if len(frames) == 0 {
			continue
		}
		failed, errno, err := w.WriteBatch(frames)
		clear(frames)
		if failed > 0 {
			e.drops[ReasonTAPWrite].Add(uint64(failed))
			e.faults.note(ReasonTAPWrite, failed, errno, now)
		}
		if err != nil {
			return err
		}
	}
}
