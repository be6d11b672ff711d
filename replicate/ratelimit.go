package replicate

import "encoding/binary"

// rateLimiter is a token bucket per IPv4 source address. Each bucket holds
// a tenth of a second of the rate (at least one frame) and refills
// continuously. Only the egress goroutine uses it, so it takes no lock.
type rateLimiter struct {
	rate    float64 // frames per nanosecond
	burst   float64
	max     int
	buckets map[[4]byte]*bucket
	other   bucket // sources beyond max
}

type bucket struct {
	tokens float64
	last   int64 // Unix ns of the last refill
}

func newRateLimiter(perSecond float64, maxSources int) *rateLimiter {
	return &rateLimiter{
		rate:    perSecond / 1e9,
		burst:   max(perSecond/10, 1),
		max:     maxSources,
		buckets: make(map[[4]byte]*bucket, maxSources),
	}
}

// allow reports whether frame, an Ethernet frame from the TAP, may go now
// (Unix ns), and takes a token if so.
func (l *rateLimiter) allow(frame []byte, now int64) bool {
	b := &l.other
	if len(frame) >= 14+20 && binary.BigEndian.Uint16(frame[12:14]) == 0x0800 {
		var src [4]byte
		copy(src[:], frame[14+12:14+16])
		if found, ok := l.buckets[src]; ok {
			b = found
		} else if len(l.buckets) < l.max {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[src] = b
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
