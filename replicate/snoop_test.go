package replicate

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/overlay"
)

var overlayLocal = netip.MustParseAddr("198.19.0.1")

// igmpFrame wraps an IGMP message in an Ethernet/IPv4 frame from src to dst,
// laid out in a buffer with headroom.
func igmpFrame(srcMAC net.HardwareAddr, src, dst netip.Addr, msg []byte) ([]byte, int) {
	buf := make([]byte, BufSize)
	n := igmp.BuildQueryFrame(buf[overlay.Headroom:], srcMAC, src, dst, msg)
	return buf, n
}

func v2Report(group netip.Addr) []byte {
	b := make([]byte, 8)
	igmp.PutReportV2(b, igmp.TypeV2Report, group)
	return b
}

// mcastData builds a UDP datagram frame from src to group.
func mcastData(src, group netip.Addr) ([]byte, int) {
	buf, n := frame(net.HardwareAddr(func() []byte { m := igmp.MulticastMAC(group); return m[:] }()), localMAC, 100)
	f := buf[overlay.Headroom:]
	s, g := src.As4(), group.As4()
	copy(f[14+12:], s[:])
	copy(f[14+16:], g[:])
	return buf, n
}

type snoopRig struct {
	e       *Engine
	s       *Snooping
	codec   overlay.Codec
	queries [][]byte
}

func newSnoopRig(t testing.TB, peers int, policy Unregistered) *snoopRig {
	r := &snoopRig{codec: overlay.NewGRE(0, false)}
	cfg := igmp.Config{LastMemberInterval: 100 * time.Millisecond, MaxGroups: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r.s = &Snooping{
		Table: igmp.NewTable(cfg),
		// The querier's election address is above the peers' 198.19.0.2-.
		Querier: igmp.NewQuerier(cfg, netip.MustParseAddr("198.19.0.200"), localMAC, func(f []byte) error {
			r.queries = append(r.queries, append([]byte(nil), f...))
			return nil
		}),
		Unregistered: policy,
	}
	e, err := New(Config{Codec: r.codec, LocalMAC: localMAC, Snoop: r.s})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.SetPeers(peerInfos(peers)); err != nil {
		t.Fatal(err)
	}
	r.e = e
	return r
}

// fromPeer delivers a frame from peer i and reports whether it reached the TAP.
func (r *snoopRig) fromPeer(i int, buf []byte, n int, now int64) bool {
	return r.e.receive(underlay(i), encapFrom(r.codec, underlay(i), buf[overlay.Headroom:overlay.Headroom+n]), now) != nil
}

func (r *snoopRig) egress(buf []byte, n int, now int64) map[netip.Addr]int {
	w := &capture{keep: true}
	g := r.e.newEgress(64)
	g.now = now
	g.forward(buf, n, w)
	g.flush(w)
	return w.to()
}

func TestSnoopingPrunesToMembers(t *testing.T) {
	for _, policy := range []Unregistered{UnregisteredFlood, UnregisteredDrop} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			r := newSnoopRig(t, 3, policy)
			now := time.Now().UnixNano()
			group := netip.MustParseAddr("239.1.2.3")
			sender := netip.MustParseAddr("198.19.0.1")

			buf, n := mcastData(sender, group)
			got := r.egress(buf, n, now)
			if policy == UnregisteredFlood && len(got) != 3 {
				t.Fatalf("unregistered group with flood went to %v, want every peer", got)
			}
			if policy == UnregisteredDrop && len(got) != 0 {
				t.Fatalf("unregistered group with drop went to %v", got)
			}

			// Peer 3 reports 239.1.2.3: the report is learned, not delivered.
			rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.3"), group, v2Report(group))
			if r.fromPeer(3, rb, rn, now) {
				t.Fatal("a peer's report was delivered into the TAP")
			}
			buf, n = mcastData(sender, group)
			if got := r.egress(buf, n, now); len(got) != 1 || got[underlay(3)] != 1 {
				t.Fatalf("registered group went to %v, want only 198.18.0.3", got)
			}
			// 224.0.0.0/24 and IGMP of the local host go to every peer.
			buf, n = mcastData(sender, netip.MustParseAddr("224.0.0.251"))
			if got := r.egress(buf, n, now); len(got) != 3 {
				t.Fatalf("link-local group went to %v", got)
			}
			lb, ln := igmpFrame(localMAC, overlayLocal, group, v2Report(group))
			if got := r.egress(lb, ln, now); len(got) != 3 {
				t.Fatalf("local report went to %v", got)
			}
			gs, _ := r.s.Table.Snapshot(time.Unix(0, now))
			if len(gs) != 1 || !gs[0].Local || len(gs[0].Ports) != 2 {
				t.Fatalf("snapshot %+v", gs)
			}
			// Removing the peer drops its state at once.
			r.e.SetPeers(peerInfos(1))
			if gs, _ := r.s.Table.Snapshot(time.Unix(0, now)); len(gs) != 1 || len(gs[0].Ports) != 1 {
				t.Fatalf("removed peer's state kept: %+v", gs)
			}
		})
	}
}

func TestSnoopingBadChecksum(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	group := netip.MustParseAddr("239.1.2.3")
	msg := v2Report(group)
	msg[2] ^= 0xff
	rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), group, msg)
	if r.fromPeer(2, rb, rn, now) {
		t.Fatal("bad report delivered")
	}
	lb, ln := igmpFrame(localMAC, overlayLocal, group, msg)
	if got := r.egress(lb, ln, now); len(got) != 0 {
		t.Fatalf("bad local report forwarded to %v", got)
	}
	if gs, _ := r.s.Table.Snapshot(time.Unix(0, now)); len(gs) != 0 {
		t.Fatalf("bad report learned: %+v", gs)
	}
	if d := r.e.Drops()["igmp_checksum"]; d != 2 {
		t.Fatalf("igmp_checksum = %d, want 2", d)
	}
}

func TestSnoopingQueries(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now()
	// A peer's query is delivered and makes it a router port.
	q := make([]byte, 12)
	igmp.PutQueryV3(q, netip.Addr{}, time.Second, false, 2, 125*time.Second, nil)
	qb, qn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllHosts, q)
	if !r.fromPeer(2, qb, qn, now.UnixNano()) {
		t.Fatal("a peer's query was not delivered")
	}
	buf, n := mcastData(overlayLocal, netip.MustParseAddr("239.5.5.5"))
	if got := r.egress(buf, n, now.UnixNano()); len(got) != 1 || got[underlay(2)] != 1 {
		t.Fatalf("unregistered traffic with a router peer went to %v", got)
	}
	// Its lower address silences the local querier.
	if r.s.Querier.Active(now) {
		t.Fatal("querier still active after a lower-addressed query")
	}
	// The querier's queries go into the TAP through its send function.
	r2 := newSnoopRig(t, 1, UnregisteredFlood)
	r2.s.tick(now)
	if len(r2.queries) != 1 {
		t.Fatalf("startup: %d queries", len(r2.queries))
	}
	// A peer appearing solicits a general query of the local host.
	r2.s.tick(now.Add(time.Second))
	before := len(r2.queries)
	r2.e.SetPeers(peerInfos(2))
	r2.s.tick(now.Add(2 * time.Second))
	if len(r2.queries) != before+1 {
		t.Fatalf("a new peer did not solicit a query: %d -> %d", before, len(r2.queries))
	}
}

// TestSnoopingUnregisteredPolicy checks that the Unregistered field is the
// initial policy only: New puts it in force, SetUnregistered changes the
// policy in force and leaves the field alone, and UnregisteredPolicy
// reports it.
func TestSnoopingUnregisteredPolicy(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	if got := r.s.UnregisteredPolicy(); got != UnregisteredDrop {
		t.Fatalf("UnregisteredPolicy() = %v after New, want the field's %v", got, UnregisteredDrop)
	}
	buf, n := mcastData(overlayLocal, netip.MustParseAddr("239.9.9.9"))
	if got := r.egress(buf, n, now); len(got) != 0 {
		t.Fatalf("drop: unregistered traffic went to %v", got)
	}
	r.s.SetUnregistered(UnregisteredFlood)
	if got := r.s.UnregisteredPolicy(); got != UnregisteredFlood {
		t.Fatalf("UnregisteredPolicy() = %v after SetUnregistered, want %v", got, UnregisteredFlood)
	}
	if r.s.Unregistered != UnregisteredDrop {
		t.Fatalf("SetUnregistered wrote the initial policy: %v", r.s.Unregistered)
	}
	buf, n = mcastData(overlayLocal, netip.MustParseAddr("239.9.9.9"))
	if got := r.egress(buf, n, now); len(got) != 2 {
		t.Fatalf("flood: unregistered traffic went to %v, want both peers", got)
	}
}

// TestSnoopingQuerierSendBlocked checks that the data path never waits for
// the querier's I/O: while the querier's send into the TAP blocks inside
// a tick, a leave of the local host (which schedules last-member queries)
// and a query from a peer (which the querier hears) go through.
func TestSnoopingQuerierSendBlocked(t *testing.T) {
	const deadline = 5 * time.Second
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	cfg := igmp.Config{Logger: slog.New(slog.DiscardHandler)}
	s := &Snooping{
		Table: igmp.NewTable(cfg),
		Querier: igmp.NewQuerier(cfg, netip.MustParseAddr("198.19.0.200"), localMAC, func([]byte) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
			return nil
		}),
	}
	codec := overlay.NewGRE(0, false)
	e, err := New(Config{Codec: codec, LocalMAC: localMAC, Snoop: s})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.SetPeers(peerInfos(2)); err != nil {
		t.Fatal(err)
	}
	r := &snoopRig{e: e, s: s, codec: codec}
	now := time.Now()
	group := netip.MustParseAddr("239.1.2.3")
	lb, ln := igmpFrame(localMAC, overlayLocal, group, v2Report(group))
	r.egress(lb, ln, now.UnixNano())

	ticked := make(chan struct{})
	go func() { defer close(ticked); s.tick(now) }() // the startup query: send blocks
	select {
	case <-entered:
	case <-time.After(deadline):
		t.Fatalf("the querier did not send within %v", deadline)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		leave := make([]byte, 8)
		igmp.PutReportV2(leave, igmp.TypeV2Leave, group)
		lb, ln := igmpFrame(localMAC, overlayLocal, igmp.AllHosts, leave)
		r.egress(lb, ln, now.UnixNano())
		q := make([]byte, 12)
		igmp.PutQueryV3(q, netip.Addr{}, time.Second, false, 2, 125*time.Second, nil)
		qb, qn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllHosts, q)
		r.fromPeer(2, qb, qn, now.UnixNano())
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatalf("the data path did not return within %v while the querier's send was blocked", deadline)
	}
	unblock()
	select {
	case <-ticked:
	case <-time.After(deadline):
		t.Fatalf("tick did not return within %v of send returning", deadline)
	}
	if s.Querier.Active(now) {
		t.Error("the peer's lower-addressed query, heard while send was blocked, did not silence the querier")
	}
}

// TestSnoopingZeroAllocs asserts that the snooped egress decision of a
// registered group allocates nothing.
func TestSnoopingZeroAllocs(t *testing.T) {
	r := newSnoopRig(t, 16, UnregisteredFlood)
	now := time.Now().UnixNano()
	group := netip.MustParseAddr("239.1.2.3")
	for i := 2; i < 18; i += 2 {
		rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.9"), group, v2Report(group))
		r.fromPeer(i, rb, rn, now)
	}
	g := r.e.newEgress(64)
	g.now = now
	w := &capture{}
	buf, n := mcastData(overlayLocal, group)
	if a := testing.AllocsPerRun(1000, func() {
		g.forward(buf, n, w)
		g.flush(w)
	}); a != 0 {
		t.Fatalf("snooped egress allocates %.1f per frame", a)
	}
	g.forward(buf, n, w)
	if len(g.out) != 8 {
		t.Fatalf("%d copies, want 8 members", len(g.out))
	}
}

// BenchmarkSnoopedDecision measures the replicate decision with 1,000
// groups, each joined by half of 100 peers.
func BenchmarkSnoopedDecision(b *testing.B) {
	r := newSnoopRig(b, 100, UnregisteredFlood)
	now := time.Now().UnixNano()
	groups := make([]netip.Addr, 1000)
	for gi := range groups {
		groups[gi] = netip.AddrFrom4([4]byte{239, 1, byte(gi >> 8), byte(gi)})
		for i := 2; i < 102; i += 2 {
			rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.9"), groups[gi], v2Report(groups[gi]))
			r.fromPeer(i, rb, rn, now)
		}
	}
	bufs := make([][]byte, len(groups))
	var n int
	for i, g := range groups {
		bufs[i], n = mcastData(overlayLocal, g)
	}
	set := r.e.peers.Load()
	scratch := make([]*Peer, 0, 128)
	b.ReportAllocs()
	i, copies := 0, 0
	for b.Loop() {
		frame := bufs[i%len(bufs)][overlay.Headroom : overlay.Headroom+n]
		copies += len(r.s.decide(frame, set, scratch[:0], now))
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "lookups/s")
	b.ReportMetric(float64(copies)/float64(i), "peers/lookup")
}

// TestSnoopingLocalMemberNotFlooded: a group that only the local host has
// joined is registered (RFC 4541 section 2.1.2), so the local host's own
// traffic to it goes to no peer but router peers, whatever the policy for
// unregistered groups.
func TestSnoopingLocalMemberNotFlooded(t *testing.T) {
	r := newSnoopRig(t, 3, UnregisteredFlood)
	now := time.Now().UnixNano()
	group := netip.MustParseAddr("239.1.2.4")
	lb, ln := igmpFrame(localMAC, overlayLocal, group, v2Report(group))
	r.egress(lb, ln, now)
	buf, n := mcastData(overlayLocal, group)
	if got := r.egress(buf, n, now); len(got) != 0 {
		t.Fatalf("a group only the local host joined went to %v, want no peer", got)
	}
	// A router peer still gets it.
	qb, qn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllHosts, routerQuery())
	r.fromPeer(2, qb, qn, now)
	buf, n = mcastData(overlayLocal, group)
	if got := r.egress(buf, n, now); len(got) != 1 || got[underlay(2)] != 1 {
		t.Fatalf("with router peer 2 the group went to %v, want only 198.18.0.2", got)
	}
	if f := r.s.Flooded(); len(f) != 0 {
		t.Errorf("Flooded = %+v, want nothing flooded", f)
	}
}

// TestSnoopingFloodCounts: flooded unregistered traffic is counted per
// group, with the copies --unregistered drop would save (those to peers
// that are not routers); registered traffic is not counted; groups past
// FloodGroups are summed under FloodOther.
func TestSnoopingFloodCounts(t *testing.T) {
	r := newSnoopRig(t, 3, UnregisteredFlood)
	now := time.Now().UnixNano()
	g1, g2 := netip.MustParseAddr("239.1.1.1"), netip.MustParseAddr("239.1.1.2")
	qb, qn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllHosts, routerQuery())
	r.fromPeer(2, qb, qn, now) // peer 2 is a router
	for range 5 {
		buf, n := mcastData(overlayLocal, g1)
		r.egress(buf, n, now)
	}
	buf, n := mcastData(overlayLocal, g2)
	r.egress(buf, n, now)
	// Registered from now on: no longer counted.
	rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.3"), g2, v2Report(g2))
	r.fromPeer(3, rb, rn, now)
	buf, n = mcastData(overlayLocal, g2)
	r.egress(buf, n, now)
	want := []FloodCount{
		{Group: g1, Frames: 5, Copies: 15, DropSave: 10},
		{Group: g2, Frames: 1, Copies: 3, DropSave: 2},
	}
	if got := r.s.Flooded(); !slices.Equal(got, want) {
		t.Errorf("Flooded = %+v, want %+v", got, want)
	}

	var f floodCounts
	for i := range FloodGroups + 10 {
		f.add(netip.AddrFrom4([4]byte{239, 2, byte(i >> 8), byte(i)}), 2, 1)
	}
	got := f.snapshot()
	if len(got) != FloodGroups+1 || got[len(got)-1] != (FloodCount{Group: FloodOther, Frames: 10, Copies: 20, DropSave: 10}) {
		t.Errorf("%d entries, last %+v; want %d groups then FloodOther with 10 frames", len(got), got[len(got)-1], FloodGroups)
	}
}

// TestSnoopingFloodZeroAllocs: counting a flooded frame allocates nothing.
func TestSnoopingFloodZeroAllocs(t *testing.T) {
	r := newSnoopRig(t, 16, UnregisteredFlood)
	g := r.e.newEgress(64)
	g.now = time.Now().UnixNano()
	w := &capture{}
	buf, n := mcastData(overlayLocal, netip.MustParseAddr("239.9.9.9"))
	if a := testing.AllocsPerRun(1000, func() {
		g.forward(buf, n, w)
		g.flush(w)
	}); a != 0 {
		t.Fatalf("flooded egress allocates %.1f per frame", a)
	}
	if f := r.s.Flooded(); len(f) != 1 || f[0].Copies != 16*1001 {
		t.Errorf("Flooded = %+v, want 16 copies each of 1001 frames", f)
	}
}

// routerQuery is a general IGMPv3 query, as a multicast router sends.
func routerQuery() []byte {
	q := make([]byte, 12)
	igmp.PutQueryV3(q, netip.Addr{}, time.Second, false, 2, 125*time.Second, nil)
	return q
}
