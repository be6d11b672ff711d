package replicate

import (
	"encoding/binary"

	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/overlay"
)

// rateLimiter is a token bucket per IPv4 source address. Each bucket holds
// a tenth of a second of the rate (at least one frame) and refills
// continuously. A bucket idle for as long as it takes to refill is full
// again, as a new one would be, so it is forgotten when the table is full
// and a new source appears; only while max sources are all active do
// further sources share one bucket. Only the egress goroutine uses it, so
// it takes no lock.
type rateLimiter struct {
	rate      float64 // frames per nanosecond
	burst     float64
	refill    int64 // nanoseconds to fill an empty bucket
	max       int
	buckets   map[[4]byte]*bucket
	other     bucket // sources beyond max, while every bucket is in use
	lastSweep int64
}

type bucket struct {
	tokens float64
	last   int64 // Unix ns of the last refill
}

func newRateLimiter(perSecond float64, maxSources int) *rateLimiter {
	burst := max(perSecond/10, 1)
	return &rateLimiter{
		rate:    perSecond / 1e9,
		burst:   burst,
		refill:  int64(burst / perSecond * 1e9),
		max:     maxSources,
		buckets: make(map[[4]byte]*bucket, maxSources),
	}
}

// forgetIdle removes the buckets that have been idle long enough to be
// full: one refill period at most once per refill period, so a table full
// of active sources costs one pass per period, not one per frame.
func (l *rateLimiter) forgetIdle(now int64) {
	if now-l.lastSweep < l.refill {
		return
	}
	l.lastSweep = now
	for src, b := range l.buckets {
		if now-b.last >= l.refill {
			delete(l.buckets, src)
		}
	}
}

// allow reports whether frame, an Ethernet frame from the TAP, may go now
// (Unix ns), and takes a token if so.
func (l *rateLimiter) allow(frame []byte, now int64) bool {
	b := &l.other
	if len(frame) >= overlay.EthHeaderLen+inet.IPv4MinLen && binary.BigEndian.Uint16(frame[12:14]) == 0x0800 {
		src := [4]byte(frame[overlay.EthHeaderLen+inet.IPv4Src:])
		if found, ok := l.buckets[src]; ok {
			b = found
		} else {
			if len(l.buckets) >= l.max {
				l.forgetIdle(now)
			}
			if len(l.buckets) < l.max {
				b = &bucket{tokens: l.burst, last: now}
				l.buckets[src] = b
			}
		}
	}
	if b.last == 0 {
		b.tokens, b.last = l.burst, now
	}
	b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
