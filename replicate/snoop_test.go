package replicate

import (
	"encoding/binary"
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
	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/mld"
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
// groups, each joined by half of 100 peers: IPv4 groups learned from IGMPv2
// reports, and IPv6 groups (ff0e::/16) learned from MLDv2 reports, so
// that the two families' costs compare in one run.
func BenchmarkSnoopedDecision(b *testing.B) {
	for _, family := range []string{"ipv4", "ipv6"} {
		b.Run("family="+family, func(b *testing.B) {
			r := newMLDRig(b, 100, UnregisteredFlood)
			now := time.Now().UnixNano()
			groups := make([]netip.Addr, 1000)
			bufs := make([][]byte, len(groups))
			var n int
			for gi := range groups {
				if family == "ipv4" {
					groups[gi] = netip.AddrFrom4([4]byte{239, 1, byte(gi >> 8), byte(gi)})
				} else {
					groups[gi] = netip.AddrFrom16([16]byte{0xff, 0x0e, 14: byte(gi >> 8), 15: byte(gi)})
				}
				for i := 2; i < 102; i += 2 {
					var rb []byte
					var rn int
					if family == "ipv4" {
						rb, rn = igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.9"), groups[gi], v2Report(groups[gi]))
					} else {
						rb, rn = mldFrame(remoteMAC, peerLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: groups[gi]}))
					}
					r.fromPeer(i, rb, rn, now)
				}
				if family == "ipv4" {
					bufs[gi], n = mcastData(overlayLocal, groups[gi])
				} else {
					bufs[gi], n = data6(src6, groups[gi])
				}
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
		})
	}
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

// The router learning of the peer path (RFC 4541 section 2.1.1): router
// ports from PIM Hellos and MRD advertisements as well as from queries,
// and what a router on the local host changes.

// ipProtoFrame builds a frame of IPv4 protocol proto from src to dst
// carrying payload, laid out as igmpFrame's.
func ipProtoFrame(srcMAC net.HardwareAddr, proto uint8, src, dst netip.Addr, payload []byte) ([]byte, int) {
	buf, n := igmpFrame(srcMAC, src, dst, payload)
	ip := inet.IPv4(buf[overlay.Headroom+14:])
	ip[inet.IPv4Proto] = proto
	ip.SetChecksum()
	return buf, n
}

func pimHello(holdtime time.Duration) []byte {
	b := make([]byte, 10)
	return b[:igmp.PutPIMHello(b, holdtime)]
}

// pimFromPeer is peer i's PIM message b to 224.0.0.13 from its overlay
// address.
func pimFromPeer(i int, b []byte) ([]byte, int) {
	return ipProtoFrame(remoteMAC, igmp.ProtoPIM, netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), igmp.AllPIMRouters, b)
}

func routerPorts(s *Snooping, now int64) map[netip.Addr][]igmp.RouterSource {
	m := map[netip.Addr][]igmp.RouterSource{}
	for _, r := range s.Table.Routers(time.Unix(0, now)) {
		m[r.Port] = r.Learned
	}
	return m
}

// TestSnoopingPIMRouter: a peer's PIM Hello goes into the TAP and makes
// the peer a router port for the Hello's holdtime; every group, registered
// or not, then reaches it, with --unregistered drop too; a Hello of
// holdtime 0 (goodbye) ends it at once.
func TestSnoopingPIMRouter(t *testing.T) {
	for _, policy := range []Unregistered{UnregisteredFlood, UnregisteredDrop} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			r := newSnoopRig(t, 3, policy)
			now := time.Now().UnixNano()
			hb, hn := pimFromPeer(2, pimHello(3*time.Second))
			if !r.fromPeer(2, hb, hn, now) {
				t.Fatal("a peer's PIM Hello was not delivered into the TAP")
			}
			if got := routerPorts(r.s, now); !slices.Equal(got[underlay(2)], []igmp.RouterSource{igmp.RouterPIM}) || len(got) != 1 {
				t.Fatalf("router ports %v, want 198.18.0.2 learned by pim", got)
			}
			if r.s.Querier.Active(time.Unix(0, now)) == false {
				t.Fatal("a PIM Hello silenced the querier")
			}
			member := netip.MustParseAddr("239.1.2.3")
			rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.3"), member, v2Report(member))
			r.fromPeer(3, rb, rn, now)
			unreg := 3
			if policy == UnregisteredDrop {
				unreg = 1
			}
			for _, g := range []netip.Addr{netip.MustParseAddr("239.9.9.9"), netip.MustParseAddr("232.1.1.1"), netip.MustParseAddr("239.255.0.1")} {
				buf, n := mcastData(overlayLocal, g)
				if got := r.egress(buf, n, now); got[underlay(2)] != 1 || len(got) != unreg {
					t.Errorf("unregistered %v went to %v, want the router peer (and all with flood)", g, got)
				}
			}
			buf, n := mcastData(overlayLocal, member)
			if got := r.egress(buf, n, now); len(got) != 2 || got[underlay(2)] != 1 || got[underlay(3)] != 1 {
				t.Errorf("registered group went to %v, want the member and the router peer", got)
			}

			// The holdtime passes without a Hello.
			r.s.tick(time.Unix(0, now).Add(3 * time.Second))
			if len(routerPorts(r.s, now+int64(3*time.Second))) != 0 {
				t.Fatal("the router port outlived its holdtime")
			}
			// Back, then a goodbye.
			r.fromPeer(2, hb, hn, now+int64(4*time.Second))
			gb, gn := pimFromPeer(2, pimHello(0))
			if !r.fromPeer(2, gb, gn, now+int64(5*time.Second)) {
				t.Fatal("a goodbye Hello was not delivered")
			}
			if got := routerPorts(r.s, now+int64(5*time.Second)); len(got) != 0 {
				t.Fatalf("router ports %v after a goodbye", got)
			}
		})
	}
}

// TestSnoopingPIMMalformed: a PIM message whose IPv4 header, version or
// checksum is wrong is neither delivered nor learned, and is counted as
// pim_malformed; a well-formed PIM message other than a Hello is
// delivered and teaches nothing.
func TestSnoopingPIMMalformed(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	badSum := pimHello(105 * time.Second)
	badSum[3] ^= 1
	v1 := pimHello(105 * time.Second)
	v1[0] = 1<<4 | igmp.PIMHello
	short := []byte{0x20, 0, 0}
	for _, b := range [][]byte{badSum, v1, short} {
		buf, n := pimFromPeer(2, b)
		if r.fromPeer(2, buf, n, now) {
			t.Errorf("malformed PIM % x delivered", b)
		}
	}
	buf, n := pimFromPeer(2, pimHello(105*time.Second))
	buf[overlay.Headroom+14+inet.IPv4TTL] ^= 1 // the IPv4 header checksum fails
	if r.fromPeer(2, buf, n, now) {
		t.Error("PIM with a bad IPv4 header delivered")
	}
	if d := r.e.Drops()["pim_malformed"]; d != 4 {
		t.Errorf("pim_malformed = %d, want 4", d)
	}
	join := []byte{2<<4 | 3, 0, 0, 0, 1, 2, 3, 4}
	binary.BigEndian.PutUint16(join[2:], inet.Checksum(join))
	buf, n = pimFromPeer(2, join)
	if !r.fromPeer(2, buf, n, now) {
		t.Error("a PIM Join/Prune was not delivered")
	}
	// A Hello to another address than 224.0.0.13 teaches nothing.
	buf, n = ipProtoFrame(remoteMAC, igmp.ProtoPIM, netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("224.0.0.5"), pimHello(105*time.Second))
	r.fromPeer(2, buf, n, now)
	if got := routerPorts(r.s, now); len(got) != 0 {
		t.Errorf("router ports %v from no Hello to 224.0.0.13", got)
	}
}

func mrdMsg(typ uint8) []byte {
	if typ == igmp.TypeMRDAdvertisement {
		b := make([]byte, 8)
		return b[:igmp.PutMRDAdvertisement(b, 2*time.Second, 125*time.Second, 2)]
	}
	b := []byte{typ, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], inet.Checksum(b))
	return b
}

// TestSnoopingMRD: a peer's MRD advertisement to 224.0.0.106 makes it a
// router port for 3 × its interval, and its termination ends that; both
// are delivered. A malformed one is dropped and counted. The local host's
// advertisements go to every peer.
func TestSnoopingMRD(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	src := netip.MustParseAddr("198.19.0.2")
	ab, an := igmpFrame(remoteMAC, src, igmp.AllSnoopers, mrdMsg(igmp.TypeMRDAdvertisement))
	if !r.fromPeer(2, ab, an, now) {
		t.Fatal("an MRD advertisement was not delivered")
	}
	if got := routerPorts(r.s, now); !slices.Equal(got[underlay(2)], []igmp.RouterSource{igmp.RouterMRD}) {
		t.Fatalf("router ports %v, want 198.18.0.2 learned by mrd", got)
	}
	buf, n := mcastData(overlayLocal, netip.MustParseAddr("239.9.9.9"))
	if got := r.egress(buf, n, now); len(got) != 1 || got[underlay(2)] != 1 {
		t.Errorf("unregistered traffic went to %v, want the MRD router", got)
	}
	r.s.tick(time.Unix(0, now).Add(6 * time.Second))
	if got := routerPorts(r.s, now+int64(6*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after 3 × the advertisement interval", got)
	}
	r.fromPeer(2, ab, an, now+int64(7*time.Second))
	tb, tn := igmpFrame(remoteMAC, src, igmp.AllSnoopers, mrdMsg(igmp.TypeMRDTermination))
	if !r.fromPeer(2, tb, tn, now+int64(8*time.Second)) {
		t.Fatal("an MRD termination was not delivered")
	}
	if got := routerPorts(r.s, now+int64(8*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after a termination", got)
	}
	bad := mrdMsg(igmp.TypeMRDAdvertisement)
	bad[5] ^= 1
	bb, bn := igmpFrame(remoteMAC, src, igmp.AllSnoopers, bad)
	if r.fromPeer(2, bb, bn, now) {
		t.Error("a malformed MRD advertisement was delivered")
	}
	if d := r.e.Drops()["igmp_checksum"]; d != 1 {
		t.Errorf("igmp_checksum = %d, want 1", d)
	}
	// From the local host: to every peer, and not counted as a drop.
	lb, ln := igmpFrame(localMAC, overlayLocal, igmp.AllSnoopers, mrdMsg(igmp.TypeMRDAdvertisement))
	if got := r.egress(lb, ln, now); len(got) != 2 {
		t.Errorf("the local host's MRD advertisement went to %v, want every peer", got)
	}
	if d := r.e.Drops()["igmp_type"]; d != 0 {
		t.Errorf("igmp_type = %d, want 0", d)
	}
}

// TestSnoopingQueryAttributed: a peer's query from 0.0.0.0 (a meshcast
// querier's) makes no router port and goes into the TAP with the peer's
// overlay address as its source and a valid header; a router's query
// keeps its source.
func TestSnoopingQueryAttributed(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	for _, dst := range []netip.Addr{igmp.AllHosts, igmp.AllRouters} {
		qb, qn := igmpFrame(remoteMAC, netip.IPv4Unspecified(), dst, routerQuery())
		in := r.e.receive(underlay(2), encapFrom(r.codec, underlay(2), qb[overlay.Headroom:overlay.Headroom+qn]), now)
		src, gotDst, b, ok := igmp.FromFrame(in)
		if !ok || src != netip.MustParseAddr("198.19.0.2") || gotDst != dst || !slices.Equal(b, routerQuery()) {
			t.Fatalf("delivered query to %v: %v -> %v % x (ok %v); want it from 198.19.0.2", dst, src, gotDst, b, ok)
		}
	}
	if got := routerPorts(r.s, now); len(got) != 0 {
		t.Fatalf("router ports %v from a query from 0.0.0.0", got)
	}
	if !r.s.Querier.Active(time.Unix(0, now)) {
		t.Fatal("a query from 0.0.0.0 silenced the querier")
	}
	src := netip.MustParseAddr("198.19.0.77")
	qb, qn := igmpFrame(remoteMAC, src, igmp.AllHosts, routerQuery())
	in := r.e.receive(underlay(2), encapFrom(r.codec, underlay(2), qb[overlay.Headroom:overlay.Headroom+qn]), now)
	if got, _, _, _ := igmp.FromFrame(in); got != src {
		t.Fatalf("a router's query was delivered from %v, want %v", got, src)
	}
	if got := routerPorts(r.s, now); !slices.Equal(got[underlay(2)], []igmp.RouterSource{igmp.RouterQuery}) {
		t.Fatalf("router ports %v, want 198.18.0.2 learned by query", got)
	}
}

// TestSnoopingHostRouter: once the local host shows a multicast router (a
// query from the node's address, or a PIM Hello), the peers' reports go
// into the TAP for it, and a query from the node's own address silences
// the querier; before and after, reports stay out of the TAP.
func TestSnoopingHostRouter(t *testing.T) {
	for _, how := range []string{"query", "pim"} {
		t.Run(how, func(t *testing.T) {
			r := newSnoopRig(t, 2, UnregisteredDrop)
			now := time.Now().UnixNano()
			group := netip.MustParseAddr("239.1.2.3")
			report := func(at int64) bool {
				rb, rn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), group, v2Report(group))
				return r.fromPeer(2, rb, rn, at)
			}
			if report(now) {
				t.Fatal("a peer's report went into the TAP with no router on the host")
			}
			self := netip.MustParseAddr("198.19.0.200") // the rig's querier address
			var hold time.Duration
			switch how {
			case "query":
				lb, ln := igmpFrame(localMAC, self, igmp.AllHosts, routerQuery())
				if got := r.egress(lb, ln, now); len(got) != 2 {
					t.Fatalf("the host's query went to %v, want every peer", got)
				}
				if r.s.Querier.Active(time.Unix(0, now)) {
					t.Error("a query from the node's own address, sent by the host, left the querier active")
				}
				hold = r.s.Table.Config().OQPI()
			case "pim":
				lb, ln := ipProtoFrame(localMAC, igmp.ProtoPIM, self, igmp.AllPIMRouters, pimHello(3*time.Second))
				if got := r.egress(lb, ln, now); len(got) != 2 {
					t.Fatalf("the host's PIM Hello went to %v, want every peer", got)
				}
				hold = 3 * time.Second
			}
			if !r.s.HostRouter(time.Unix(0, now)) || !report(now+1) {
				t.Fatal("a peer's report did not go into the TAP for the router on the host")
			}
			if got := routerPorts(r.s, now); len(got) != 0 {
				t.Errorf("router ports %v: the local host is no peer", got)
			}
			if r.s.HostRouter(time.Unix(0, now).Add(hold)) || report(now+int64(hold)) {
				t.Fatal("reports still go into the TAP after the host's router went quiet")
			}
		})
	}
}

// TestSnoopingElectionQuery: while a peer is a router port, the querier's
// general queries also go to the peers as election queries (224.0.0.2),
// the first at once.
func TestSnoopingElectionQuery(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	var announced []netip.Addr
	r.s.Querier.SetAnnounce(func(f []byte) error {
		_, dst, _, _ := igmp.FromFrame(f)
		announced = append(announced, dst)
		return nil
	})
	now := time.Now()
	r.s.tick(now)                            // startup query, announced to 224.0.0.1
	r.s.tick(now.Add(125 * time.Second / 4)) // the second
	r.s.tick(now.Add(time.Minute))
	if !slices.Equal(announced, []netip.Addr{igmp.AllHosts, igmp.AllHosts}) {
		t.Fatalf("announced %v before any router peer", announced)
	}
	// Peer 2's first packet, a PIM Hello, makes it a router port and
	// solicits a general query: announced to 224.0.0.1, where the router
	// hears it too, so it needs no election copy.
	hb, hn := pimFromPeer(2, pimHello(time.Hour))
	r.fromPeer(2, hb, hn, now.Add(time.Minute).UnixNano())
	r.s.tick(now.Add(time.Minute + time.Millisecond))
	if !slices.Equal(announced, []netip.Addr{igmp.AllHosts, igmp.AllHosts, igmp.AllHosts}) {
		t.Fatalf("announced %v, want the solicited query", announced)
	}
	// The next general query is a periodic one: its election copy goes
	// to the peers.
	r.s.tick(now.Add(time.Minute + 125*time.Second + time.Millisecond))
	if !slices.Equal(announced, []netip.Addr{igmp.AllHosts, igmp.AllHosts, igmp.AllHosts, igmp.AllRouters}) {
		t.Fatalf("announced %v, want an election query with the periodic query", announced)
	}
	// The router port goes, and comes back from a peer seen lately
	// (no solicited query): an election query at once.
	r.s.Table.RemovePort(underlay(2))
	r.s.tick(now.Add(time.Minute + 126*time.Second))
	announced = nil
	r.fromPeer(2, hb, hn, now.Add(time.Minute+127*time.Second).UnixNano())
	r.s.tick(now.Add(time.Minute + 127*time.Second))
	if want := []netip.Addr{igmp.AllRouters}; !slices.Equal(announced, want) {
		t.Fatalf("announced %v, want %v", announced, want)
	}
}

// TestSnoopingRouterIngressZeroAllocs: a known router's PIM Hellos and
// queries, and a meshcast querier's query from 0.0.0.0 (rewritten in
// place), cost no allocation on the peer path.
func TestSnoopingRouterIngressZeroAllocs(t *testing.T) {
	r := newSnoopRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	hb, hn := pimFromPeer(2, pimHello(105*time.Second))
	qb, qn := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllHosts, routerQuery())
	zb, zn := igmpFrame(remoteMAC, netip.IPv4Unspecified(), igmp.AllRouters, routerQuery())
	ab, an := igmpFrame(remoteMAC, netip.MustParseAddr("198.19.0.2"), igmp.AllSnoopers, mrdMsg(igmp.TypeMRDAdvertisement))
	for _, c := range []struct {
		name string
		buf  []byte
		n    int
	}{{"pim hello", hb, hn}, {"router query", qb, qn}, {"query from 0.0.0.0", zb, zn}, {"mrd advertisement", ab, an}} {
		pkt := encapFrom(r.codec, underlay(2), c.buf[overlay.Headroom:overlay.Headroom+c.n])
		if r.e.receive(underlay(2), pkt, now) == nil { // learned the first time
			t.Fatalf("%s dropped", c.name)
		}
		if a := testing.AllocsPerRun(1000, func() {
			if r.e.receive(underlay(2), pkt, now) == nil {
				t.Fatalf("%s dropped", c.name)
			}
		}); a != 0 {
			t.Errorf("%s: the peer path allocates %.1f per packet", c.name, a)
		}
	}
}
