package replicate

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// sharedLinePeer is the layout Peer had before its counters were split:
// both directions' counters in one cache line.
type sharedLinePeer struct {
	txPackets, txBytes atomic.Uint64
	rxPackets, rxBytes atomic.Uint64
	txErrors           atomic.Uint64
	lastSeen           atomic.Int64
}

func TestPeerCounterLines(t *testing.T) {
	var p Peer
	tx := uintptr(unsafe.Pointer(&p.txPackets))
	rx := uintptr(unsafe.Pointer(&p.rxPackets))
	if rx-tx < 64 {
		t.Errorf("tx and rx counters %d bytes apart: they may share a cache line", rx-tx)
	}
}

// BenchmarkPeerCounters counts a packet in each direction for one peer, the
// transmit side in one goroutine and the receive side in another, as the
// engine's egress and ingress goroutines do: with the counters of both
// directions in one cache line, and in lines of their own (Peer). One op
// is a packet each way.
func BenchmarkPeerCounters(b *testing.B) {
	run := func(b *testing.B, tx func(), rx func()) {
		b.ReportAllocs()
		var wg sync.WaitGroup
		wg.Add(1)
		n := b.N
		go func() {
			defer wg.Done()
			for range n {
				rx()
			}
		}()
		for range n {
			tx()
		}
		wg.Wait()
	}
	b.Run("shared-line", func(b *testing.B) {
		var p sharedLinePeer
		run(b, func() { p.txPackets.Add(1); p.txBytes.Add(100) },
			func() { p.rxPackets.Add(1); p.rxBytes.Add(100); p.lastSeen.Store(1) })
	})
	b.Run("own-lines", func(b *testing.B) {
		var p Peer
		run(b, func() { p.txPackets.Add(1); p.txBytes.Add(100) },
			func() { p.rxPackets.Add(1); p.rxBytes.Add(100); p.lastSeen.Store(1) })
	})
}
