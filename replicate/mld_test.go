package replicate

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/mld"
	"github.com/meshcast/meshcast/overlay"
)

// MLD snooping in the engine: the IPv6 counterparts of the IGMP snooping
// tests of snoop_test.go.

var (
	peerLL   = netip.MustParseAddr("fe80::200:ff:fe00:3")
	localLL  = mld.LinkLocal(localMAC)
	mldAll   = netip.MustParseAddr("ff02::16")
	src6     = netip.MustParseAddr("fd00:198:19::1")
	other6   = netip.MustParseAddr("fd00:198:19::9")
	group6   = netip.MustParseAddr("ff0e::1:2:3")
	ssmGroup = netip.MustParseAddr("ff3e::8000:1")
)

// mldFrame wraps an MLD message in an Ethernet/IPv6 frame with Router
// Alert and hop limit 1 from src to dst, in a buffer with headroom.
func mldFrame(srcMAC net.HardwareAddr, src, dst netip.Addr, msg []byte) ([]byte, int) {
	buf := make([]byte, BufSize)
	n := mld.BuildFrame(buf[overlay.Headroom:], srcMAC, src, dst, msg)
	return buf, n
}

// mldReport returns an MLDv2 report of records.
func mldReport(records ...mld.RecordSpec) []byte {
	b := make([]byte, mld.ReportLen(records...))
	mld.PutReport(b, records...)
	return b
}

func mldV1(typ uint8, group netip.Addr) []byte {
	b := make([]byte, mld.HeaderLen)
	mld.PutReportV1(b, typ, group)
	return b
}

// data6 builds a UDP over IPv6 frame from src to group.
func data6(src, group netip.Addr) ([]byte, int) {
	mac := mld.MulticastMAC(group)
	buf, n := frame(mac[:], localMAC, 100)
	f := buf[overlay.Headroom : overlay.Headroom+n]
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(n-14-40))
	ip[6], ip[7] = 17, 64
	s, g := src.As16(), group.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], g[:])
	return buf, n
}

func newMLDRig(t testing.TB, peers int, policy Unregistered) *snoopRig {
	r := newSnoopRig(t, peers, policy)
	r.s.MLDQuerier = igmp.NewMLDQuerier(r.s.Table.Config(), localLL, localMAC, func(f []byte) error {
		r.queries = append(r.queries, append([]byte(nil), f...))
		return nil
	})
	return r
}

// TestMLDSnoopingPrunes: a peer's MLDv2 report is learned and not
// delivered; a registered group goes to its member only, ff02::/16 and the
// local host's MLD to every peer; a peer's done, after the last-listener
// time, leaves the group unregistered.
func TestMLDSnoopingPrunes(t *testing.T) {
	r := newMLDRig(t, 3, UnregisteredDrop)
	now := time.Now().UnixNano()
	if got := r.egress2(data6(src6, group6))(now); len(got) != 0 {
		t.Fatalf("unregistered IPv6 group with drop went to %v", got)
	}
	rb, rn := mldFrame(remoteMAC, peerLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: group6}))
	if r.fromPeer(3, rb, rn, now) {
		t.Fatal("a peer's MLD report was delivered into the TAP")
	}
	if got := r.egress2(data6(src6, group6))(now); len(got) != 1 || got[underlay(3)] != 1 {
		t.Fatalf("registered IPv6 group went to %v, want only peer 3", got)
	}
	for _, g := range []string{"ff02::1", "ff02::fb", "ff02::1:ff00:2", "ff02::cc"} {
		if got := r.egress2(data6(src6, netip.MustParseAddr(g)))(now); len(got) != 3 {
			t.Errorf("link-local %s went to %v, want every peer", g, got)
		}
	}
	lb, ln := mldFrame(localMAC, localLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: group6}))
	if got := r.egress(lb, ln, now); len(got) != 3 {
		t.Fatalf("local MLD report went to %v", got)
	}
	gs, _ := r.s.Table.Snapshot(time.Unix(0, now))
	if len(gs) != 1 || gs[0].Group != group6 || !gs[0].Local || len(gs[0].Ports) != 2 || gs[0].Ports[1].Version != 2 {
		t.Fatalf("snapshot %+v", gs)
	}
	// An MLDv1 done from peer 3 (to ff02::2): after the last listener
	// query time (2 × 100 ms) without a report, peer 3 is gone.
	db, dn := mldFrame(remoteMAC, peerLL, netip.MustParseAddr("ff02::2"), mldV1(mld.TypeV1Done, group6))
	r.fromPeer(3, db, dn, now)
	r.s.tick(time.Unix(0, now).Add(300 * time.Millisecond))
	if got := r.egress2(data6(src6, group6))(now); len(got) != 0 {
		t.Fatalf("after the done, the group went to %v", got)
	}
}

// egress2 is egress for a frame and its length.
func (r *snoopRig) egress2(buf []byte, n int) func(int64) map[netip.Addr]int {
	return func(now int64) map[netip.Addr]int { return r.egress(buf, n, now) }
}

// TestMLDSnoopingSourceSpecific: an MLDv2 INCLUDE join of (S, ff3e::8000:1)
// gets S's traffic and not another source's.
func TestMLDSnoopingSourceSpecific(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	rb, rn := mldFrame(remoteMAC, peerLL, mldAll, mldReport(mld.RecordSpec{Type: mld.AllowNewSources, Group: ssmGroup, Sources: []netip.Addr{src6}}))
	r.fromPeer(2, rb, rn, now)
	if got := r.egress2(data6(src6, ssmGroup))(now); got[underlay(2)] != 1 {
		t.Errorf("joined source went to %v", got)
	}
	if got := r.egress2(data6(other6, ssmGroup))(now); len(got) != 0 {
		t.Errorf("other source went to %v", got)
	}
}

// TestMLDSnoopingInvalid: MLD that fails its checksum (over the IPv6
// pseudo-header), has no Router Alert, a hop limit other than 1, or a
// source that is not link-local is neither learned nor forwarded, and is
// counted.
func TestMLDSnoopingInvalid(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	report := mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: group6})
	cases := []struct {
		name   string
		mutate func(f []byte)
		drop   string
	}{
		{"checksum", func(f []byte) { f[len(f)-1] ^= 1 }, "mld_checksum"},
		{"hop limit", func(f []byte) { f[14+7] = 255 }, "mld_hop_limit"},
		{"router alert", func(f []byte) { f[14+40+2] = 1 }, "mld_router_alert"}, // the option becomes PadN
		{"global source", func(f []byte) {
			s := src6.As16()
			copy(f[14+8:], s[:])
			// Keep the checksum right for the new source.
			msg := f[mld.FrameOverhead:]
			msg[2], msg[3] = 0, 0
			mld.SetChecksum(src6, mldAll, msg)
		}, "mld_source"},
		{"truncated", func(f []byte) { binary.BigEndian.PutUint16(f[14+4:], 8+4) }, "mld_truncated"},
	}
	for _, c := range cases {
		for _, from := range []string{"peer", "host"} {
			buf, n := mldFrame(remoteMAC, peerLL, mldAll, report)
			c.mutate(buf[overlay.Headroom : overlay.Headroom+n])
			before := r.e.Drops()[c.drop]
			if from == "peer" {
				if r.fromPeer(2, buf, n, now) {
					t.Errorf("%s from a peer: delivered", c.name)
				}
			} else if got := r.egress(buf, n, now); len(got) != 0 {
				t.Errorf("%s from the host: forwarded to %v", c.name, got)
			}
			if d := r.e.Drops()[c.drop] - before; d != 1 {
				t.Errorf("%s from the %s: %s counted %d, want 1", c.name, from, c.drop, d)
			}
		}
	}
	if gs, _ := r.s.Table.Snapshot(time.Unix(0, now)); len(gs) != 0 {
		t.Errorf("invalid MLD was learned: %+v", gs)
	}
}

// TestMLDSnoopingQueries: a peer's query is delivered; one without the
// meshcast mark (a router's) makes the peer a router port and silences a
// querier with a higher address; a meshcast querier's marked query does
// neither.
func TestMLDSnoopingQueries(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	query := func(mark bool) ([]byte, int) {
		b := make([]byte, mld.QueryLen(0))
		n := mld.PutQuery(b, netip.IPv6Unspecified(), time.Second, false, 2, 125*time.Second, nil, mark)
		return mldFrame(remoteMAC, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1"), b[:n])
	}
	qb, qn := query(true)
	if !r.fromPeer(2, qb, qn, now) {
		t.Fatal("a meshcast query was not delivered")
	}
	if r.s.Table.HasRouters() || !r.s.MLDQuerier.Active(time.Unix(0, now)) {
		t.Fatal("a meshcast query made a router port or silenced the querier")
	}
	qb, qn = query(false)
	if !r.fromPeer(2, qb, qn, now) {
		t.Fatal("a router's query was not delivered")
	}
	if !r.s.Table.HasRouters() || r.s.MLDQuerier.Active(time.Unix(0, now)) {
		t.Fatal("a router's query at fe80::1 made no router port or left the querier active")
	}
	if !r.s.Querier.Active(time.Unix(0, now)) {
		t.Fatal("an MLD query silenced the IGMP querier")
	}
}

// TestMLDSnoopingHostDone: the local host's done makes the MLD querier
// send the last-listener queries into the TAP, from the TAP's link-local
// address.
func TestMLDSnoopingHostDone(t *testing.T) {
	r := newMLDRig(t, 1, UnregisteredDrop)
	now := time.Now().UnixNano()
	jb, jn := mldFrame(localMAC, localLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ChangeToExclude, Group: group6}))
	r.egress(jb, jn, now)
	r.s.MLDQuerier.Tick(time.Unix(0, now)) // startup query
	r.queries = nil
	lb, ln := mldFrame(localMAC, localLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ChangeToInclude, Group: group6}))
	r.egress(lb, ln, now)
	r.s.MLDQuerier.Tick(time.Unix(0, now))
	if len(r.queries) != 1 {
		t.Fatalf("%d queries after the host's done, want 1", len(r.queries))
	}
	p, fr := mld.FromFrame(r.queries[0])
	m, why := mld.Parse(p.Src, p.Dst, p.MLD)
	if fr != mld.IsMLD || why != mld.OK || p.Src != localLL || p.Dst != group6 || m.Group() != group6 {
		t.Fatalf("query %v %v from %v to %v for %v", fr, why, p.Src, p.Dst, m.Group())
	}
}

// TestMLDSnoopingZeroAllocs: IPv6 egress to members, and a peer's
// periodic MLDv2 report, allocate nothing.
func TestMLDSnoopingZeroAllocs(t *testing.T) {
	r := newMLDRig(t, 16, UnregisteredFlood)
	now := time.Now().UnixNano()
	rb, rn := mldFrame(remoteMAC, peerLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: group6}))
	for i := 2; i < 18; i += 2 {
		r.fromPeer(i, rb, rn, now)
	}
	g := r.e.newEgress(64)
	g.now = now
	w := &capture{}
	buf, n := data6(src6, group6)
	if a := testing.AllocsPerRun(1000, func() {
		g.forward(buf, n, w)
		g.flush(w)
	}); a != 0 {
		t.Errorf("IPv6 snooped egress allocates %.1f per frame", a)
	}
	g.forward(buf, n, w)
	if len(g.out) != 8 {
		t.Errorf("%d copies, want 8 members", len(g.out))
	}
	g.flush(w)
	enc := encapFrom(r.codec, underlay(2), rb[overlay.Headroom:overlay.Headroom+rn])
	if a := testing.AllocsPerRun(1000, func() { r.e.receive(underlay(2), enc, now) }); a != 0 {
		t.Errorf("a peer's MLD refresh allocates %.1f", a)
	}
}

// TestMLDSnoopingFloodCounts: an unregistered IPv6 group is flooded with
// the default policy and counted per group beside IPv4 ones, without
// allocating, and the counts cross to the next process.
func TestMLDSnoopingFloodCounts(t *testing.T) {
	r := newMLDRig(t, 3, UnregisteredFlood)
	now := time.Now().UnixNano()
	buf, n := data6(src6, group6)
	if got := r.egress(buf, n, now); len(got) != 3 {
		t.Fatalf("unregistered IPv6 group went to %v, want every peer", got)
	}
	b4, n4 := mcastData(overlayLocal, netip.MustParseAddr("239.9.9.9"))
	r.egress(b4, n4, now)
	g := r.e.newEgress(64)
	g.now = now
	w := &capture{}
	if a := testing.AllocsPerRun(100, func() {
		g.forward(buf, n, w)
		g.flush(w)
	}); a != 0 {
		t.Errorf("flooding an IPv6 group allocates %.1f per frame", a)
	}
	fl := r.s.Flooded()
	if len(fl) != 2 || fl[0].Group != netip.MustParseAddr("239.9.9.9") || fl[1].Group != group6 ||
		fl[1].Frames != 102 || fl[1].Copies != 306 || fl[1].DropSave != 306 {
		t.Fatalf("Flooded() = %+v, want 239.9.9.9 and %v with 102 frames, 306 copies", fl, group6)
	}
	st := r.e.Export(time.Unix(0, now))
	if len(st.Flooded) != 1 || len(st.FloodedIPv6) != 1 || st.FloodedIPv6[0].Group != group6.String() {
		t.Errorf("exported flooded %+v and flooded_ipv6 %+v, want the IPv6 group apart", st.Flooded, st.FloodedIPv6)
	}
	r2 := newMLDRig(t, 3, UnregisteredFlood)
	if err := r2.e.Import(st, time.Unix(0, now)); err != nil {
		t.Fatal(err)
	}
	if got := r2.s.Flooded(); len(got) != 2 || got[1] != fl[1] {
		t.Errorf("imported Flooded() = %+v, want %+v", got, fl)
	}
}

// TestMLDControlNotCapped: --max-fanout holds back data, not IGMP or MLD:
// an MLDv1 report or an IGMPv2 report is addressed to its group, and goes
// to every peer all the same; data to the group over the cap is dropped.
func TestMLDControlNotCapped(t *testing.T) {
	r := newMLDRig(t, 3, UnregisteredFlood)
	r.e.maxFan = 2
	now := time.Now().UnixNano()
	b6, n6 := mldFrame(localMAC, localLL, group6, mldV1(mld.TypeV1Report, group6))
	if got := r.egress(b6, n6, now); len(got) != 3 {
		t.Errorf("an MLDv1 report went to %v, want every peer", got)
	}
	g4 := netip.MustParseAddr("239.1.2.3")
	b4, n4 := igmpFrame(localMAC, overlayLocal, g4, v2Report(g4))
	if got := r.egress(b4, n4, now); len(got) != 3 {
		t.Errorf("an IGMPv2 report went to %v, want every peer", got)
	}
	before := r.e.Drops()["fanout_cap"]
	d, dn := data6(src6, netip.MustParseAddr("ff0e::99"))
	if got := r.egress(d, dn, now); len(got) != 0 || r.e.Drops()["fanout_cap"] != before+1 {
		t.Errorf("IPv6 data for 3 peers with a cap of 2 went to %v (fanout_cap %d)", got, r.e.Drops()["fanout_cap"]-before)
	}
}

// TestMLDBehindDestOpts: an MLD report behind a Destination Options
// header (so without the Router Alert that only a Hop-by-Hop header can
// carry) is invalid: neither learned nor delivered, and counted.
func TestMLDBehindDestOpts(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	buf, n := mldFrame(remoteMAC, peerLL, group6, mldV1(mld.TypeV1Report, group6))
	f := buf[overlay.Headroom : overlay.Headroom+n]
	f[14+6] = 60   // Destination Options instead of Hop-by-Hop
	f[14+40+2] = 1 // its option: PadN instead of Router Alert
	f[14+40+3] = 2 // PadN of 2 bytes
	before := r.e.Drops()["mld_router_alert"]
	if r.fromPeer(2, buf, n, now) {
		t.Error("an MLD report behind Destination Options was delivered into the TAP")
	}
	if got := r.egress(buf, n, now); len(got) != 0 {
		t.Errorf("the same from the host went to %v", got)
	}
	if d := r.e.Drops()["mld_router_alert"] - before; d != 2 {
		t.Errorf("mld_router_alert counted %d, want 2", d)
	}
	if gs, _ := r.s.Table.Snapshot(time.Unix(0, now)); len(gs) != 0 {
		t.Errorf("learned %+v", gs)
	}
}

// TestMLDReservedScope: IPv6 multicast to the reserved scope 0 is dropped
// and counted, from the host and from a peer (RFC 4291 section 2.7).
func TestMLDReservedScope(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredFlood)
	now := time.Now().UnixNano()
	buf, n := data6(src6, netip.MustParseAddr("ff00::1"))
	if got := r.egress(buf, n, now); len(got) != 0 {
		t.Errorf("scope 0 went to %v", got)
	}
	copy(buf[overlay.Headroom+6:], remoteMAC) // from a host behind the peer
	if r.fromPeer(2, buf, n, now) {
		t.Error("scope 0 from a peer was delivered")
	}
	if d := r.e.Drops()["ipv6_reserved_scope"]; d != 2 {
		t.Errorf("ipv6_reserved_scope = %d, want 2", d)
	}
}

// TestSnoopingNonIPv4Port: a router port that is not an IPv4 address
// (only a hand-edited state file can hold one) names no peer, and does not
// break forwarding.
func TestSnoopingNonIPv4Port(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredFlood)
	now := time.Now()
	st := igmp.TableState{Routers: []igmp.RouterPortState{{Port: netip.MustParseAddr("2001:db8::1"), Router: netip.MustParseAddr("fe80::1"),
		Learned: map[string]time.Time{"query": now.Add(time.Minute)}}}}
	if err := r.s.Table.Import(st, now); err != nil {
		t.Fatal(err)
	}
	buf, n := data6(src6, group6)
	if got := r.egress(buf, n, now.UnixNano()); len(got) != 2 {
		t.Errorf("unregistered group went to %v, want both peers", got)
	}
	b4, n4 := mcastData(overlayLocal, netip.MustParseAddr("239.7.7.7"))
	if got := r.egress(b4, n4, now.UnixNano()); len(got) != 2 {
		t.Errorf("unregistered IPv4 group went to %v, want both peers", got)
	}
}

// Router discovery over IPv6: the counterparts of TestSnoopingPIMRouter,
// TestSnoopingMRD and TestSnoopingHostRouter.

// pim6Frame wraps a PIM message in an Ethernet/IPv6 frame of next header
// 103, hop limit 1, from src to dst, in a buffer with headroom, and sets
// its checksum over the IPv6 pseudo-header, summed here by hand.
func pim6Frame(srcMAC net.HardwareAddr, src, dst netip.Addr, pim []byte) ([]byte, int) {
	mac := mld.MulticastMAC(dst)
	n := 14 + 40 + len(pim)
	buf := make([]byte, BufSize)
	f := buf[overlay.Headroom : overlay.Headroom+n]
	copy(f, mac[:])
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(pim)))
	ip[6], ip[7] = 103, 1
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	b := ip[40:]
	copy(b, pim)
	b[2], b[3] = 0, 0
	acc := inet.Sum(s[:], inet.Sum(d[:], uint64(len(b))+103))
	binary.BigEndian.PutUint16(b[2:], ^inet.Fold(inet.Sum(b, acc)))
	return buf, n
}

// mrd6Msg is an MRD message of ICMPv6 type typ: an advertisement with an
// interval of 2 s, or a 4-byte solicitation or termination. Its checksum
// is left to mld.BuildFrame.
func mrd6Msg(typ uint8) []byte {
	b := []byte{typ, 0, 0, 0}
	if typ == mld.TypeMRDAdvertisement6 {
		b = make([]byte, 8)
		igmp.PutMRDAdvertisement(b, 2*time.Second, 125*time.Second, 2)
		b[0] = typ
	}
	return b
}

var pimPeerLL = netip.MustParseAddr("fe80::200:ff:fe00:2")

// TestMLDSnoopingPIMRouter: a peer's PIM Hello to ff02::d from a
// link-local address goes into the TAP and makes the peer a router port
// for its holdtime: unregistered IPv6 groups then reach it with
// --unregistered drop. A goodbye ends it; a Hello from a global address,
// or to another group, teaches nothing.
func TestMLDSnoopingPIMRouter(t *testing.T) {
	r := newMLDRig(t, 3, UnregisteredDrop)
	now := time.Now().UnixNano()
	hb, hn := pim6Frame(remoteMAC, pimPeerLL, mld.AllPIMRouters6, pimHello(3*time.Second))
	if !r.fromPeer(2, hb, hn, now) {
		t.Fatal("a peer's PIMv6 Hello was not delivered into the TAP")
	}
	if got := routerPorts(r.s, now); !slices.Equal(got[underlay(2)], []igmp.RouterSource{igmp.RouterPIM}) || len(got) != 1 {
		t.Fatalf("router ports %v, want 198.18.0.2 learned by pim", got)
	}
	if !r.s.Table.HasRouters() {
		t.Fatal("HasRouters false after a PIMv6 Hello")
	}
	if got := r.egress2(data6(src6, group6))(now); len(got) != 1 || got[underlay(2)] != 1 {
		t.Errorf("unregistered IPv6 group went to %v, want the router peer", got)
	}
	r.s.tick(time.Unix(0, now).Add(3 * time.Second))
	if got := routerPorts(r.s, now+int64(3*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after the holdtime", got)
	}
	r.fromPeer(2, hb, hn, now+int64(4*time.Second))
	gb, gn := pim6Frame(remoteMAC, pimPeerLL, mld.AllPIMRouters6, pimHello(0))
	if !r.fromPeer(2, gb, gn, now+int64(5*time.Second)) {
		t.Fatal("a goodbye Hello was not delivered")
	}
	if got := routerPorts(r.s, now+int64(5*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after a goodbye", got)
	}
	for _, c := range []struct{ src, dst netip.Addr }{
		{src6, mld.AllPIMRouters6},
		{pimPeerLL, netip.MustParseAddr("ff02::1")},
	} {
		b, n := pim6Frame(remoteMAC, c.src, c.dst, pimHello(time.Minute))
		if !r.fromPeer(2, b, n, now) {
			t.Errorf("a Hello from %v to %v was not delivered", c.src, c.dst)
		}
	}
	if got := routerPorts(r.s, now); len(got) != 0 {
		t.Errorf("router ports %v from no link-local Hello to ff02::d", got)
	}
}

// TestMLDSnoopingPIMMalformed: a PIMv6 message whose checksum fails (one
// without the pseudo-header among them) or whose version is wrong is
// neither delivered nor learned, and is counted as pim_malformed.
func TestMLDSnoopingPIMMalformed(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	v4Sum := pimHello(105 * time.Second)[2:4] // IPv4's checksum: no pseudo-header
	mutations := []func(b []byte){
		func(b []byte) { b[len(b)-1] ^= 1 },
		func(b []byte) { copy(b[2:4], v4Sum) },
		func(b []byte) { b[0] = 1<<4 | igmp.PIMHello },
	}
	for i, mutate := range mutations {
		buf, n := pim6Frame(remoteMAC, pimPeerLL, mld.AllPIMRouters6, pimHello(105*time.Second))
		mutate(buf[overlay.Headroom+14+40 : overlay.Headroom+n])
		if r.fromPeer(2, buf, n, now) {
			t.Errorf("malformed PIMv6 %d delivered", i)
		}
	}
	if d := r.e.Drops()["pim_malformed"]; d != uint64(len(mutations)) {
		t.Errorf("pim_malformed = %d, want %d", d, len(mutations))
	}
	if got := routerPorts(r.s, now); len(got) != 0 {
		t.Errorf("router ports %v from malformed Hellos", got)
	}
}

// TestMLDSnoopingMRD: a peer's MRD advertisement to ff02::6a makes it a
// router port for 3 × its interval, and its termination ends that; both
// are delivered. One whose checksum fails, or that is cut short, is
// dropped and counted by its mld_ reason.
func TestMLDSnoopingMRD(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	ab, an := mldFrame(remoteMAC, pimPeerLL, mld.AllSnoopers6, mrd6Msg(mld.TypeMRDAdvertisement6))
	if !r.fromPeer(2, ab, an, now) {
		t.Fatal("an MRD advertisement was not delivered")
	}
	if got := routerPorts(r.s, now); !slices.Equal(got[underlay(2)], []igmp.RouterSource{igmp.RouterMRD}) {
		t.Fatalf("router ports %v, want 198.18.0.2 learned by mrd", got)
	}
	if !r.s.Table.HasRouters() {
		t.Fatal("HasRouters false after an MRD advertisement")
	}
	r.s.tick(time.Unix(0, now).Add(6 * time.Second))
	if got := routerPorts(r.s, now+int64(6*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after 3 × the advertisement interval", got)
	}
	r.fromPeer(2, ab, an, now+int64(7*time.Second))
	tb, tn := mldFrame(remoteMAC, pimPeerLL, mld.AllSnoopers6, mrd6Msg(mld.TypeMRDTermination6))
	if !r.fromPeer(2, tb, tn, now+int64(8*time.Second)) {
		t.Fatal("an MRD termination was not delivered")
	}
	if got := routerPorts(r.s, now+int64(8*time.Second)); len(got) != 0 {
		t.Fatalf("router ports %v after a termination", got)
	}
	sb, sn := mldFrame(remoteMAC, pimPeerLL, netip.MustParseAddr("ff02::2"), mrd6Msg(mld.TypeMRDSolicitation6))
	if !r.fromPeer(2, sb, sn, now) {
		t.Error("an MRD solicitation was not delivered")
	}
	for _, c := range []struct {
		drop   string
		mutate func(f []byte)
	}{
		{"mld_checksum", func(f []byte) { f[len(f)-1] ^= 1 }},
		{"mld_truncated", func(f []byte) { binary.BigEndian.PutUint16(f[14+4:], 8+6) }},
	} {
		buf, n := mldFrame(remoteMAC, pimPeerLL, mld.AllSnoopers6, mrd6Msg(mld.TypeMRDAdvertisement6))
		c.mutate(buf[overlay.Headroom : overlay.Headroom+n])
		before := r.e.Drops()[c.drop]
		if r.fromPeer(2, buf, n, now+int64(9*time.Second)) {
			t.Errorf("a %s MRD advertisement was delivered", c.drop)
		}
		if d := r.e.Drops()[c.drop] - before; d != 1 {
			t.Errorf("%s counted %d, want 1", c.drop, d)
		}
	}
	if got := routerPorts(r.s, now+int64(9*time.Second)); len(got) != 0 {
		t.Errorf("router ports %v from malformed advertisements", got)
	}
}

// TestMLDSnoopingHostRouter: a PIM Hello to ff02::d or an MRD
// advertisement to ff02::6a from the local host goes to every peer and
// shows a router on the host: the peers' MLD reports then go into the TAP,
// until the Hello's holdtime or the advertisement's dead interval passes.
func TestMLDSnoopingHostRouter(t *testing.T) {
	for _, how := range []string{"pim", "mrd"} {
		t.Run(how, func(t *testing.T) {
			r := newMLDRig(t, 2, UnregisteredDrop)
			now := time.Now().UnixNano()
			report := func(at int64) bool {
				rb, rn := mldFrame(remoteMAC, peerLL, mldAll, mldReport(mld.RecordSpec{Type: mld.ModeIsExclude, Group: group6}))
				return r.fromPeer(2, rb, rn, at)
			}
			if r.s.HostRouter(time.Unix(0, now)) || report(now) {
				t.Fatal("a peer's MLD report went into the TAP with no router on the host")
			}
			var lb []byte
			var ln int
			var hold time.Duration
			switch how {
			case "pim":
				lb, ln = pim6Frame(localMAC, localLL, mld.AllPIMRouters6, pimHello(3*time.Second))
				hold = 3 * time.Second
			case "mrd":
				lb, ln = mldFrame(localMAC, localLL, mld.AllSnoopers6, mrd6Msg(mld.TypeMRDAdvertisement6))
				hold = 6 * time.Second
			}
			if got := r.egress(lb, ln, now); len(got) != 2 {
				t.Fatalf("the host's %s message went to %v, want every peer", how, got)
			}
			if !r.s.HostRouter(time.Unix(0, now)) || !report(now+1) {
				t.Fatal("no router on the host after its message, or a peer's report stayed out of the TAP")
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

// TestMLDSnoopingRouterIngressZeroAllocs: a known router's PIMv6 Hellos
// and MRD advertisements cost no allocation on the peer path, nor does the
// local host's PIMv6 Hello on the egress path.
func TestMLDSnoopingRouterIngressZeroAllocs(t *testing.T) {
	r := newMLDRig(t, 2, UnregisteredDrop)
	now := time.Now().UnixNano()
	hb, hn := pim6Frame(remoteMAC, pimPeerLL, mld.AllPIMRouters6, pimHello(105*time.Second))
	ab, an := mldFrame(remoteMAC, pimPeerLL, mld.AllSnoopers6, mrd6Msg(mld.TypeMRDAdvertisement6))
	for _, c := range []struct {
		name string
		buf  []byte
		n    int
	}{{"pimv6 hello", hb, hn}, {"mrd6 advertisement", ab, an}} {
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
	g := r.e.newEgress(64)
	g.now = now
	w := &capture{}
	lb, ln := pim6Frame(localMAC, localLL, mld.AllPIMRouters6, pimHello(105*time.Second))
	if a := testing.AllocsPerRun(1000, func() {
		g.forward(lb, ln, w)
		g.flush(w)
	}); a != 0 {
		t.Errorf("the host's PIMv6 Hello allocates %.1f per frame", a)
	}
}
