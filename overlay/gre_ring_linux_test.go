package overlay

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// dupFile returns a duplicate of the socket behind rc, as a successor
// receives it in a handover.
func dupFile(t testing.TB, rc syscall.RawConn, name string) *os.File {
	t.Helper()
	var fd int
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		t.Fatalf("dup %s: %v %v", name, err, derr)
	}
	return os.NewFile(uintptr(fd), name)
}

// greListen opens a GRE Conn with opts on node n.
func greListen(t testing.TB, n *nstest.Node, opts Options) *Conn {
	t.Helper()
	var c *Conn
	if err := n.Do(func() (err error) { c, err = ListenGRE(n.Underlay, opts); return err }); err != nil {
		t.Fatalf("in %s: ListenGRE: %v", n, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ringStatus returns the Conn's OffloadPacketRx.
func ringStatus(t testing.TB, c *Conn) OffloadStatus {
	t.Helper()
	return offloadNamed(t, c, OffloadPacketRx)
}

// TestIntegrationGRERing checks that a GRE Conn receives through the ring
// with PacketRx, with the raw socket silenced, and through the raw socket
// by default and with NoOffload.
func TestIntegrationGRERing(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	snd, rcv := nt.Node(1), nt.Node(2)
	tx := greListen(t, snd, Options{NoOffload: true})
	g := NewGRE(testKey, true)
	for _, tt := range []struct {
		name string
		opts Options
		ring bool
	}{{"packet rx", Options{PacketRx: true}, true}, {"default", Options{}, false}, {"offload off", Options{NoOffload: true, PacketRx: true}, false}} {
		t.Run(tt.name, func(t *testing.T) {
			rx := greListen(t, rcv, tt.opts)
			st := ringStatus(t, rx)
			if st.InUse != tt.ring || (!tt.ring && st.Reason != OffloadOffByConfig) {
				t.Fatalf("%+v, want in use %t", st, tt.ring)
			}
			if got, want := filterLen(t, rx) > 0, tt.ring; got != want {
				t.Errorf("the raw socket has a filter: %t, want %t", got, want)
			}
			if (rx.ReceiveRingConn() != nil) != tt.ring {
				t.Errorf("ReceiveRingConn: %v", rx.ReceiveRingConn())
			}
			msgs, frames := greMsgs(g, rcv.Underlay, 60, 200, 1400, 90, 64, 1000)
			writeIn(t, snd, tx, msgs)
			checkDelivered(t, g, readAll(t, rx, len(msgs), 4), snd.Underlay, frames)
			rx.Close()
		})
	}
}

// TestIntegrationGRERingHandover hands a GRE Conn's receive sockets to a
// successor the way a takeover does, with packets that arrived while
// nobody read and a block read in part, and checks that the successor
// receives every packet once, in order: from a predecessor with the ring,
// from one without it (whose raw socket holds the packets), and into a
// successor without it.
func TestIntegrationGRERingHandover(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	snd, rcv := nt.Node(1), nt.Node(2)
	tx := greListen(t, snd, Options{NoOffload: true})
	g := NewGRE(testKey, true)
	batch := func(base int) ([]Message, [][]byte) {
		var sizes []int
		for i := range 10 {
			sizes = append(sizes, 100+base+i)
		}
		return greMsgs(g, rcv.Underlay, sizes...)
	}
	inOrder := func(t *testing.T, got []received, frames [][]byte) {
		t.Helper()
		checkDelivered(t, g, got, snd.Underlay, frames)
		for i, m := range got {
			if inner, _ := g.Decap(m.buf); len(inner) != len(frames[i]) {
				t.Fatalf("packet %d is a frame of %d bytes, want %d: out of order", i, len(inner), len(frames[i]))
			}
		}
	}
	for _, tt := range []struct {
		name             string
		pred, succ       Options
		predRing, onRing bool
	}{
		{"ring to ring", Options{PacketRx: true}, Options{PacketRx: true}, true, true},
		{"raw to ring", Options{}, Options{PacketRx: true}, false, true},
		{"ring to raw", Options{PacketRx: true}, Options{}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pred := greListen(t, rcv, tt.pred)
			// The ring's reader reads 3 of the first 10: the rest of
			// their block is left. (The raw socket's reader reads all:
			// what one recvmmsg took is the reader's.)
			m1, f1 := batch(0)
			writeIn(t, snd, tx, m1)
			time.Sleep(20 * time.Millisecond) // the block retires
			k := 10
			if tt.predRing {
				k = 3
			}
			inOrder(t, readAll(t, pred, k, k), f1[:k])
			// Paused: 10 more arrive.
			m2, f2 := batch(20)
			writeIn(t, snd, tx, m2)
			time.Sleep(20 * time.Millisecond)
			pred.Quiesce()
			opts := tt.succ
			opts.Receive = dupFile(t, pred.ReceiveConn(), "raw")
			if rc := pred.ReceiveRingConn(); rc != nil {
				opts.ReceiveRing = dupFile(t, rc, "ring")
			}
			succ := greListen(t, rcv, opts)
			if err := pred.Close(); err != nil {
				t.Fatal(err)
			}
			if st := ringStatus(t, succ); st.InUse != tt.onRing {
				t.Fatalf("successor: %+v", st)
			}
			m3, f3 := batch(40)
			if !tt.predRing || tt.onRing {
				writeIn(t, snd, tx, m3)
			}
			want := append(append(f1[k:len(f1):len(f1)], f2...), f3...)
			if tt.predRing && !tt.onRing {
				// Into a successor without the ring: what waited in
				// it is lost, and the raw socket receives from then on.
				time.Sleep(20 * time.Millisecond)
				writeIn(t, snd, tx, m3)
				want = f3
			}
			inOrder(t, readAll(t, succ, len(want), 8), want)
			expectNothing(t, succ, 50*time.Millisecond, "after the last packet")
		})
	}
}

// TestIntegrationGRERingZeroAllocs checks that a GRE Conn that receives
// through the ring allocates nothing per batch read, the raw socket's
// queue of a predecessor drained first included.
func TestIntegrationGRERingZeroAllocs(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	snd, rcv := nt.Node(1), nt.Node(2)
	tx := greListen(t, snd, Options{NoOffload: true})
	pred := greListen(t, rcv, Options{NoOffload: true})
	g := NewGRE(testKey, true)
	msgs, _ := greMsgs(g, rcv.Underlay, 60, 200, 1400, 90, 64, 1000, 300, 500)
	// Two batches wait in the predecessor's raw socket: AllocsPerRun
	// runs once more than asked.
	writeIn(t, snd, tx, msgs)
	writeIn(t, snd, tx, msgs)
	time.Sleep(20 * time.Millisecond)
	rx := greListen(t, rcv, Options{PacketRx: true, Receive: dupFile(t, pred.ReceiveConn(), "raw")})
	if !ringStatus(t, rx).InUse {
		t.Fatalf("%+v", ringStatus(t, rx))
	}
	in := make([]Message, 64)
	rx.SetReadDeadline(time.Now().Add(ioTimeout))
	round := func() {
		for got := 0; got < len(msgs); {
			n, err := rx.ReadBatch(in[:len(msgs)-got])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	if n := testing.AllocsPerRun(1, round); n != 0 { // the drained queue
		t.Errorf("%v allocations per batch drained from the raw socket", n)
	}
	if n := testing.AllocsPerRun(20, func() { writeIn(t, snd, tx, msgs) }); n < 0 {
		t.Fatal(n)
	}
	if n := testing.AllocsPerRun(20, round); n != 0 {
		t.Errorf("%v allocations per batch read through the ring", n)
	}
}

// TestIntegrationGRERingAdoptRefuses hands adoptPacketReceiver sockets that
// are not a ring it can take: the raw GRE socket, and a ring of another
// geometry. Each is refused as ErrNotOurSocket, and the ring offered keeps
// receiving for its owner.
func TestIntegrationGRERingAdoptRefuses(t *testing.T) {
	rt := newRingTest(t)
	r := rt.open(t, packetRxConfig{BlockSize: 8 << 10, Blocks: 4})
	for _, tt := range []struct {
		name string
		f    *os.File
	}{
		{"the raw socket", dupFile(t, rt.ref.ReceiveConn(), "raw")},
		{"another geometry", dupFile(t, r.rc, "ring")},
	} {
		err := rt.rcv.Do(func() error {
			p, err := adoptPacketReceiver(tt.f, rt.rcv.Underlay, nil, packetRxConfig{})
			if p != nil {
				p.Close()
			}
			return err
		})
		tt.f.Close()
		if !errors.Is(err, ErrNotOurSocket) {
			t.Errorf("%s: %v, want ErrNotOurSocket", tt.name, err)
		}
	}
	g := NewGRE(testKey, true)
	msgs, frames := greMsgs(g, rt.rcv.Underlay, 100, 200)
	rt.send(t, msgs)
	checkDelivered(t, g, readAll(t, r, len(msgs), 8), rt.snd.Underlay, frames)
	readAll(t, rt.ref, len(msgs), 8)
}
