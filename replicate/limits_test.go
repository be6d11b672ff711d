package replicate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshcast/meshcast/overlay"
)

func newLimitedEngine(t testing.TB, peers int, maxFanout int, rate float64) *Engine {
	t.Helper()
	codec := overlay.NewGRE(0, false)
	e, err := New(Config{Codec: codec, LocalMAC: localMAC, MTU: 1500 - codec.Overhead(), MaxFanout: maxFanout, RateLimit: rate})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.SetPeers(peerInfos(peers)); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestFanoutCap: a multicast data frame for more peers than MaxFanout is
// dropped and counted once; ARP-like broadcast and link-local multicast
// (IGMP) still reach every peer, and so does data within the cap.
func TestFanoutCap(t *testing.T) {
	e := newLimitedEngine(t, 5, 3, 0)
	w := &capture{keep: true}
	g := e.newEgress(64)
	data, n := frame(mcastMAC, localMAC, 100) // to 239.1.2.3
	g.forward(data, n, w)
	g.flush(w)
	if len(w.sent) != 0 || e.Drops()["fanout_cap"] != 1 {
		t.Fatalf("data for 5 peers with a cap of 3: %d copies, fanout_cap %d", len(w.sent), e.Drops()["fanout_cap"])
	}
	bcast, n := arpFrame()
	g.forward(bcast, n, w)
	ll, n2 := mcastData(netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("224.0.0.251"))
	g.forward(ll, n2, w)
	g.flush(w)
	if len(w.sent) != 10 {
		t.Fatalf("broadcast and 224.0.0.251: %d copies, want 5 each", len(w.sent))
	}
	e2 := newLimitedEngine(t, 3, 3, 0)
	w2 := &capture{keep: true}
	g2 := e2.newEgress(64)
	data, n = frame(mcastMAC, localMAC, 100)
	g2.forward(data, n, w2)
	g2.flush(w2)
	if len(w2.sent) != 3 || e2.Drops()["fanout_cap"] != 0 {
		t.Fatalf("data for 3 peers with a cap of 3: %d copies", len(w2.sent))
	}
}

// TestRateLimit: 100 frames/s per source, bursts of 10. Of 50 frames at
// one instant 10 go; 100 ms later 10 more; another source has its own
// budget; broadcast is never limited.
func TestRateLimit(t *testing.T) {
	e := newLimitedEngine(t, 2, 0, 100)
	w := &capture{keep: true}
	g := e.newEgress(256)
	t0 := time.Unix(1000, 0).UnixNano()
	g.now = t0
	src1, _ := mcastData(netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("239.1.2.3"))
	src2, n := mcastData(netip.MustParseAddr("198.19.0.7"), netip.MustParseAddr("239.1.2.3"))
	bcast, nb := arpFrame()
	send := func(buf []byte, n, k int) int {
		w.sent = w.sent[:0]
		for range k {
			g.forward(buf, n, w)
		}
		g.flush(w)
		return len(w.sent) / 2
	}
	if got := send(src1, n, 50); got != 10 {
		t.Errorf("burst: %d frames passed, want 10", got)
	}
	if got := send(src2, n, 50); got != 10 {
		t.Errorf("second source: %d frames passed, want its own 10", got)
	}
	if got := send(bcast, nb, 50); got != 50 {
		t.Errorf("broadcast: %d frames passed, want all 50", got)
	}
	g.now = t0 + (100 * time.Millisecond).Nanoseconds()
	if got := send(src1, n, 50); got != 10 {
		t.Errorf("after 100 ms: %d frames passed, want 10", got)
	}
	if d := e.Drops()["rate_limit"]; d != 120 {
		t.Errorf("rate_limit = %d, want 120", d)
	}
}

// TestLimitsZeroAllocs: with both limits on, forwarding allocates nothing
// once the source is known.
func TestLimitsZeroAllocs(t *testing.T) {
	e := newLimitedEngine(t, 4, 8, 1e9)
	w := &capture{}
	g := e.newEgress(64)
	buf, n := mcastData(netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("239.1.2.3"))
	g.forward(buf, n, w)
	g.flush(w)
	if a := testing.AllocsPerRun(1000, func() {
		g.now += 1000
		g.forward(buf, n, w)
		g.flush(w)
	}); a != 0 {
		t.Errorf("%v allocations per frame", a)
	}
}

// TestRateLimiterBoundsSources: sources beyond MaxRateSources share one
// budget instead of growing the table.
func TestRateLimiterBoundsSources(t *testing.T) {
	l := newRateLimiter(10, 4)
	for i := range 100 {
		f, _ := mcastData(netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}), netip.MustParseAddr("239.1.2.3"))
		l.allow(f[overlay.Headroom:], 1)
	}
	if len(l.buckets) != 4 {
		t.Errorf("%d buckets, want 4", len(l.buckets))
	}
}

// TestRateLimiterForgetsIdleSources: once the table is full, a new source
// still gets a bucket of its own as soon as an old one has been idle for a
// refill period; while every tracked source is active, it shares.
func TestRateLimiterForgetsIdleSources(t *testing.T) {
	const rate = 10 // frames/s: a burst of 1, refilled in 100 ms
	l := newRateLimiter(rate, 4)
	src := func(i int) []byte {
		f, _ := mcastData(netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}), netip.MustParseAddr("239.1.2.3"))
		return f[overlay.Headroom:]
	}
	ms := int64(time.Millisecond)
	t0 := int64(1000) * int64(time.Second)
	for i := range 4 {
		if !l.allow(src(i), t0) {
			t.Fatalf("source %d refused its first frame", i)
		}
	}
	// All four active: a fifth shares the overflow bucket.
	if !l.allow(src(5), t0+10*ms) || len(l.buckets) != 4 {
		t.Fatalf("fifth source: %d buckets", len(l.buckets))
	}
	if l.allow(src(6), t0+20*ms) {
		t.Fatal("a sixth source got a frame from the shared, empty bucket")
	}
	// Sources 1 to 3 stay active; source 0 falls idle for a refill period.
	for i := 1; i < 4; i++ {
		l.allow(src(i), t0+150*ms)
	}
	if !l.allow(src(7), t0+160*ms) {
		t.Fatal("a new source was refused after an idle one could be forgotten")
	}
	if _, ok := l.buckets[[4]byte{198, 19, 1, 7}]; !ok || len(l.buckets) != 4 {
		t.Fatalf("the new source has no bucket of its own (%d buckets)", len(l.buckets))
	}
	if _, ok := l.buckets[[4]byte{198, 19, 1, 0}]; ok {
		t.Fatal("the idle source is still tracked")
	}
	// Its bucket is its own: a burst of one, then refused until refilled.
	if l.allow(src(7), t0+161*ms) {
		t.Fatal("the new source's second frame within 1 ms passed a burst of 1")
	}
	// After a daemon's life of sources, a new one still gets its own.
	for i := range 2000 {
		l.allow(src(i%250), t0+int64(i+1)*time.Second.Nanoseconds())
	}
	if len(l.buckets) > 4 {
		t.Fatalf("%d buckets, want at most 4", len(l.buckets))
	}
}

// arpFrame is a broadcast frame that is not IPv4, like an ARP request.
func arpFrame() ([]byte, int) {
	buf, n := frame(bcastMAC, localMAC, 28)
	buf[overlay.Headroom+12], buf[overlay.Headroom+13] = 0x08, 0x06
	return buf, n
}
