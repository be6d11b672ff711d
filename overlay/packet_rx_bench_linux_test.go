package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// BenchmarkReceiveGRE measures the capacity of a receiving instance for
// GRE: node 1 of an nstest underlay sends batches of 64 GRE packets
// through a Conn (with AF_PACKET egress where it can) as fast as it can
// for the benchmark's duration, over a veth pair straight to node 2,
// which reads them through its raw GRE socket (socket: Conn.ReadBatch)
// or through the receive ring (ring: packetReceiver.ReadBatch). The
// figure is rx-pkts/s, the packets ReadBatch returned per second;
// tx-pkts/s is what the sender sent meanwhile, and lost-% the part that
// a full socket buffer or ring dropped (or that was still in flight).
// rx-cpu-ns/pkt is the busy time of the receiving CPU (softirq and
// reader, from /proc/stat) per packet returned, and rx-cpu-idle-% what
// was left of it.
// With two CPUs or more, the sender runs on CPU 0 and the receiver on
// CPU 1, and receive packet steering sends node 2's packets to CPU 1, so
// that the receiver's softirq (IP input, the copy into the socket or the
// ring) and its reader share one CPU, as on a receiving host: otherwise
// the sender's CPU runs the receiver's softirq (veth). rx-pkts/s is the
// receiver's capacity when lost-% is well above 0 or rx-cpu-idle-% near
// 0; otherwise the sender was the limit, and 1e9/rx-cpu-ns/pkt estimates
// the capacity of one receiving CPU. One underlay serves every
// sub-benchmark. It needs root.
func BenchmarkReceiveGRE(b *testing.B) {
	nt := nstest.NewNet(b, 2)
	snd, rcv := nt.Node(1), nt.Node(2)
	// A veth pair from node 1 straight to node 2, so that the sender's
	// CPU does not also run the bridge.
	src, dst := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.1.2")
	for _, c := range []struct {
		n    *nstest.Node
		args []string
	}{
		{snd, []string{"ip", "link", "add", "mcb0", "type", "veth", "peer", "name", "mcb1", "netns", rcv.Name}},
		{snd, []string{"ip", "addr", "add", src.String() + "/24", "dev", "mcb0"}},
		{snd, []string{"ip", "link", "set", "mcb0", "up"}},
		{rcv, []string{"ip", "addr", "add", dst.String() + "/24", "dev", "mcb1"}},
		{rcv, []string{"ip", "link", "set", "mcb1", "up"}},
	} {
		if out, err := c.n.Exec(b, c.args...); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
	var pinned bool
	if runtime.NumCPU() >= 2 {
		out, err := rcv.Exec(b, "sh", "-c", "echo 2 > /sys/class/net/mcb1/queues/rx-0/rps_cpus")
		if err != nil {
			b.Logf("no receive packet steering, the sender's CPU runs the receiver's softirq: %v %s", err, out)
		} else {
			pinned = true
		}
	}
	// The sender takes AF_PACKET egress where it can: the faster it
	// sends, the more of the figure is the receiver's.
	var tx *Conn
	if err := snd.Do(func() (err error) { tx, err = ListenGRE(src, Options{}); return err }); err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	g := NewGRE(testKey, true)
	for _, method := range []string{"socket", "ring"} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("method=%s/frame=%d", method, size), func(b *testing.B) {
				benchReceive(b, method, size, pinned, g, tx, rcv, dst)
			})
		}
	}
}

// benchReceive runs one sub-benchmark of BenchmarkReceiveGRE.
func benchReceive(b *testing.B, method string, size int, pinned bool, g *GRE, tx *Conn, rcv *nstest.Node, dst netip.Addr) {
	var rx *Conn
	if err := rcv.Do(func() (err error) { rx, err = ListenGRE(dst, Options{NoOffload: true}); return err }); err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	var r batchReader = rx
	var ring *packetReceiver
	if method == "ring" {
		if err := rcv.Do(func() (err error) { ring, err = openPacketReceiver(dst, rx.rxc, packetRxConfig{}); return err }); err != nil {
			b.Fatal(err)
		}
		defer ring.Close()
		r = ring
	}
	pkt := g.Encap(withHeadroom(testFrame(size, 1001)), size)
	out := make([]Message, DefaultBatch)
	for i := range out {
		out[i] = Message{Buf: pkt, Addr: dst}
	}

	if pinned {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		restore, err := pinTo(1)
		if err != nil {
			b.Fatal(err)
		}
		defer restore()
	}
	var stop atomic.Bool
	var sent atomic.Uint64
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if pinned {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if restore, err := pinTo(0); err == nil {
				defer restore()
			}
		}
		for !stop.Load() {
			failed, err := tx.WriteBatch(out)
			if err != nil {
				sendErr <- err
				return
			}
			sent.Add(uint64(len(out) - failed))
		}
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	in := make([]Message, DefaultBatch)
	read := func() int {
		n, err := r.ReadBatch(in)
		if err != nil {
			select {
			case e := <-sendErr:
				b.Fatalf("WriteBatch: %v", e)
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal("no packet for 5 s")
			}
			b.Fatal(err)
		}
		return n
	}
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got := 0; got < 10*DefaultBatch; {
		got += read()
	}
	var drops0 uint64
	if ring != nil {
		drops0 = ring.Drops()
	}
	r.SetReadDeadline(time.Time{})
	received := 0
	sent0 := sent.Load()
	busy0, idle0, cpuErr := cpuTicks(1)
	for b.Loop() {
		received += read()
	}
	elapsed := b.Elapsed().Seconds()
	busy1, idle1, cpuErr1 := cpuTicks(1)
	txPkts := sent.Load() - sent0
	b.ReportMetric(float64(received)/elapsed, "rx-pkts/s")
	b.ReportMetric(float64(txPkts)/elapsed, "tx-pkts/s")
	if txPkts > 0 {
		b.ReportMetric(100*(1-float64(received)/float64(txPkts)), "lost-%")
	}
	if pinned && cpuErr == nil && cpuErr1 == nil && received > 0 {
		// The receiving CPU's time per packet: softirq and reader.
		b.ReportMetric(float64(busy1-busy0)*1e9/userHZ/float64(received), "rx-cpu-ns/pkt")
		b.ReportMetric(100*float64(idle1-idle0)/float64(busy1-busy0+idle1-idle0), "rx-cpu-idle-%")
	}
	if ring != nil {
		b.ReportMetric(float64(ring.Drops()-drops0)/elapsed, "ring-drops/s")
	}
}

// userHZ is the unit of /proc/stat.
const userHZ = 100

// cpuTicks returns the busy and idle time of CPU cpu from /proc/stat, in
// 1/userHZ s.
func cpuTicks(cpu int) (busy, idle uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		// user nice system idle iowait irq softirq steal ...
		for i, f := range strings.Fields(line)[1:] {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return 0, 0, err
			}
			switch i {
			case 3, 4:
				idle += v
			case 0, 1, 2, 5, 6:
				busy += v
			}
		}
		return busy, idle, nil
	}
	return 0, 0, fmt.Errorf("no %q in /proc/stat", prefix)
}

// pinTo binds the calling thread, which must be locked, to CPU cpu, and
// returns a function that restores its affinity.
func pinTo(cpu int) (func(), error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, err
	}
	return func() { unix.SchedSetaffinity(0, &old) }, nil
}
