package igmp

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/mld"
)

// The MLD tests check that MLD is IGMP for IPv6 (RFC 3810 section 1): the
// router-side state of RFC 3810 section 7 has the same rows as RFC 3376
// section 6, so the scenarios whose expected states were worked out by hand
// for IGMP (conformance_test.go) are replayed as MLD, on IPv6 addresses,
// and must leave the same state.

// Addresses of the MLD packets the tests build.
var (
	mldHost   = netip.MustParseAddr("fe80::5054:ff:fe00:1")
	mldV2Dst  = netip.MustParseAddr("ff02::16")
	mldRouter = netip.MustParseAddr("ff02::2")
)

// to6 maps an IPv4 address of the IGMP tests to the IPv6 address the MLD
// tests use for it: a group a.b.c.d to ff0e::a.b.c.d (global scope), a
// unicast source to 2001:db8::a.b.c.d. The invalid Addr stays invalid.
func to6(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	v := a.As4()
	b := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	if a.IsMulticast() {
		b = [16]byte{0xff, 0x0e}
	}
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// to4 is the inverse of to6.
func to4(a netip.Addr) netip.Addr {
	if !a.IsValid() || a.Is4() {
		return a
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:]))
}

func map6(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, to6(a))
	}
	return out
}

// mldMsg parses an MLD message built into b, sent from mldHost to dst.
func mldMsg(tb testing.TB, dst netip.Addr, b []byte) mld.Message {
	tb.Helper()
	mld.SetChecksum(mldHost, dst, b)
	m, r := mld.Parse(mldHost, dst, b)
	if r != mld.OK {
		tb.Fatalf("mld.Parse = %v", r)
	}
	return m
}

// toMLD translates an IGMPv2 report or leave, or an IGMPv3 report, into
// the MLDv1 report or done, or the MLDv2 report, a host would send for the
// to6 addresses.
func toMLD(tb testing.TB, m Message) mld.Message {
	tb.Helper()
	switch m.Type() {
	case TypeV2Report, TypeV2Leave:
		b := make([]byte, mld.HeaderLen)
		typ, dst := uint8(mld.TypeV1Report), to6(m.Group())
		if m.Type() == TypeV2Leave {
			typ, dst = mld.TypeV1Done, mldRouter
		}
		mld.PutReportV1(b, typ, to6(m.Group()))
		return mldMsg(tb, dst, b)
	case TypeV3Report:
		var recs []mld.RecordSpec
		for it := m.Records(); ; {
			r, ok := it.Next()
			if !ok {
				break
			}
			var srcs []netip.Addr
			for i := range r.NumSources() {
				srcs = append(srcs, to6(r.Source(i)))
			}
			recs = append(recs, mld.RecordSpec{Type: r.Type(), Group: to6(r.Group()), Sources: srcs, Aux: r.Aux()})
		}
		b := make([]byte, mld.ReportLen(recs...))
		mld.PutReport(b, recs...)
		return mldMsg(tb, mldV2Dst, b)
	}
	tb.Fatalf("no MLD message for IGMP type %#x", m.Type())
	return nil
}

// sameState fails unless the MLD table t6 holds what the IGMP table t4
// holds, for the to6 addresses: every group, port, mode, version (MLDv1
// for IGMPv2, MLDv2 for IGMPv3), source and timer, and the same Lookup
// answer for every source of srcs.
func sameState(tb testing.TB, t4, t6 *Table, now time.Time, srcs []netip.Addr, when string) {
	tb.Helper()
	g4, r4 := t4.Snapshot(now)
	g6, r6 := t6.Snapshot(now)
	for i := range g6 {
		g := &g6[i]
		g.Group = to4(g.Group)
		for j := range g.Ports {
			p := &g.Ports[j]
			p.Version++ // MLDv1 is IGMPv2's row, MLDv2 IGMPv3's
			for k := range p.Sources {
				p.Sources[k] = to4(p.Sources[k])
			}
			for k := range p.Blocked {
				p.Blocked[k] = to4(p.Blocked[k])
			}
		}
	}
	if !reflect.DeepEqual(g4, g6) || !slices.Equal(r4, r6) {
		tb.Fatalf("%s: MLD table\n%+v\nIGMP table\n%+v", when, g6, g4)
	}
	for _, g := range g4 {
		for _, p := range g.Ports {
			s4, gt4, _ := timers(t4, g.Group, p.Port)
			s6, gt6, _ := timers(t6, to6(g.Group), p.Port)
			m := map[netip.Addr]time.Duration{}
			for a, d := range s6 {
				m[to4(a)] = d
			}
			if !mapsEqual(s4, m) || gt4 != gt6 {
				tb.Fatalf("%s: %v on %v: MLD timers %v %v, IGMP %v %v", when, g.Group, p.Port, m, gt6, s4, gt4)
			}
		}
		for _, s := range srcs {
			p4, reg4 := t4.Lookup(g.Group, s, nil)
			p6, reg6 := t6.Lookup(to6(g.Group), to6(s), nil)
			if !slices.Equal(p4, p6) || reg4 != reg6 {
				tb.Fatalf("%s: Lookup(%v, %v): MLD %v %v, IGMP %v %v", when, g.Group, s, p6, reg6, p4, reg4)
			}
		}
	}
}

func mapQueries(qs []Query) []Query {
	var out []Query
	for _, q := range qs {
		out = append(out, Query{Group: to6(q.Group), Sources: map6(q.Sources)})
	}
	return out
}

// TestConformanceMLDBridge replays every scenario of bridge_igmp.sh (the
// rows of RFC 3376 section 6.4 and 6.6, worked out by hand in
// conformance_test.go) as MLD, the scenarios of bridge_mld.sh: they are
// the same tests with MLDv2 reports (RFC 3810 section 7.4.1 and 7.4.2 have
// the rows of RFC 3376 section 6.4.1 and 6.4.2). At every step the MLD
// table must hold the state the IGMP table holds, and the local port's
// last-listener queries must be the last-member ones.
func TestConformanceMLDBridge(t *testing.T) {
	for _, sc := range bridgeScenarios() {
		t.Run(sc.selftest, func(t *testing.T) {
			t.Logf("bridge_mld.sh counterpart of %s; %s", sc.selftest, sc.rfc)
			for _, port := range []Port{brH1, LocalPort} {
				t4, t6 := newTestTable(sc.cfg), newTestTable(sc.cfg)
				for _, st := range sc.steps {
					now := at(st.at)
					if st.msg != nil {
						m := st.msg(t)
						q4 := t4.Handle(port, m, now, nil)
						q6 := t6.HandleMLD(port, toMLD(t, m), now, nil)
						if !equalQueries(q6, mapQueries(q4)) {
							t.Fatalf("%v at %v: MLD queries %v, IGMP %v", portName(port), st.at, q6, q4)
						}
					}
					t4.Expire(now)
					t6.Expire(now)
					sameState(t, t4, t6, now, brSources, fmt.Sprintf("%v at %v", portName(port), st.at))
				}
			}
		})
	}
}

// TestConformanceMLDRandom drives an IGMP table and an MLD table with the
// same random sequence of IGMPv2 and IGMPv3 messages (as MLDv1 and MLDv2)
// on three ports, two groups and four sources, with the clock moving, and
// checks after every step that they hold the same state. It covers the
// compatibility rows (RFC 3810 section 8.3.2, as RFC 3376 7.3.2 for
// IGMPv2) and the timer paths no scenario reaches.
func TestConformanceMLDRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	groups := []netip.Addr{grp1, grp2}
	srcs := allSources[:4]
	ports := []Port{LocalPort, peer1, peer2}
	for run := range 20 {
		cfg := Config{LastMemberInterval: 500 * time.Millisecond, QueryInterval: 20 * time.Second, ResponseInterval: 2 * time.Second}
		t4, t6 := newTestTable(cfg), newTestTable(cfg)
		now := t0
		for step := range 300 {
			now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
			port := ports[rng.IntN(len(ports))]
			g := groups[rng.IntN(len(groups))]
			var m Message
			switch k := rng.IntN(10); {
			case k == 0:
				m = v2msg(t, TypeV2Report, g)
			case k == 1:
				m = v2msg(t, TypeV2Leave, g)
			default:
				var pick []netip.Addr
				for _, s := range srcs {
					if rng.IntN(2) == 0 {
						pick = append(pick, s)
					}
				}
				m = v3msg(t, rec(uint8(1+rng.IntN(6)), g, pick...))
			}
			q4 := t4.Handle(port, m, now, nil)
			q6 := t6.HandleMLD(port, toMLD(t, m), now, nil)
			if !equalQueries(q6, mapQueries(q4)) {
				t.Fatalf("run %d step %d: MLD queries %v, IGMP %v", run, step, q6, q4)
			}
			t4.Expire(now)
			t6.Expire(now)
			sameState(t, t4, t6, now, srcs, fmt.Sprintf("run %d step %d", run, step))
		}
	}
}

// TestMLDScopes checks which IPv6 groups get state: realm-local (3) to
// global (14) scope do; interface-local, link-local (ff02::/16: all-nodes,
// solicited-node, mDNS) and the reserved scopes 0 and 15 do not, and go
// to every peer (RFC 4541 section 3 keeps ff02::1 flooded; meshcast floods
// all of ff02::/16, as it does 224.0.0.0/24).
func TestMLDScopes(t *testing.T) {
	for _, c := range []struct {
		group string
		want  bool
	}{
		{"ff01::1:3", false}, {"ff02::1", false}, {"ff02::fb", false}, {"ff02::1:ff00:1", false}, {"ff02::cc", false},
		{"ff00::1", false}, {"ff0f::1", false},
		{"ff03::1", true}, {"ff05::1:3", true}, {"ff08::1", true}, {"ff0e::1", true}, {"ff15::4d43", true}, {"ff3e::8000:1", true},
		{"::ffff:239.1.1.1", false}, {"2001:db8::1", false},
	} {
		g := netip.MustParseAddr(c.group)
		if got := Snooped(g); got != c.want {
			t.Errorf("Snooped(%v) = %v, want %v", g, got, c.want)
		}
		if !g.IsMulticast() {
			continue
		}
		tb := newTestTable(Config{})
		b := make([]byte, mld.HeaderLen)
		mld.PutReportV1(b, mld.TypeV1Report, g)
		mld.SetChecksum(mldHost, g, b)
		m, r := mld.Parse(mldHost, g, b)
		if r != mld.OK {
			if c.want {
				t.Errorf("a report for %v does not parse: %v", g, r)
			}
			continue // the reserved scope 0: mld_group
		}
		tb.HandleMLD(peer1, m, t0, nil)
		ports, reg := tb.Lookup(g, s1, nil)
		if reg != c.want || (len(ports) == 1) != c.want {
			t.Errorf("%v after an MLDv1 report: Lookup = %v, %v; want registered %v", g, ports, reg, c.want)
		}
	}
}

// TestMLDv1Compat checks RFC 3810 section 8.3.2 for a port with an MLDv1
// listener: an MLDv2 BLOCK is ignored, TO_EX ignores its sources, and the
// port leaves compatibility mode (to MLDv2) after the Older Version Host
// Present Timeout (the MALI).
func TestMLDv1Compat(t *testing.T) {
	g := netip.MustParseAddr("ff05::101")
	a, b := netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::b")
	tb := newTestTable(Config{})
	v1 := make([]byte, mld.HeaderLen)
	mld.PutReportV1(v1, mld.TypeV1Report, g)
	report := func(recs ...mld.RecordSpec) mld.Message {
		buf := make([]byte, mld.ReportLen(recs...))
		mld.PutReport(buf, recs...)
		return mldMsg(t, mldV2Dst, buf)
	}
	tb.HandleMLD(peer1, mldMsg(t, g, v1), at(0), nil)
	ps, _ := portState(tb, g, peer1, at(0))
	if ps.Mode != "exclude" || ps.Version != 1 {
		t.Fatalf("after an MLDv1 report: %+v, want exclude in MLDv1 mode", ps)
	}
	tb.HandleMLD(peer1, report(mld.RecordSpec{Type: mld.BlockOldSources, Group: g, Sources: []netip.Addr{a}}), at(time.Second), nil)
	tb.HandleMLD(peer1, report(mld.RecordSpec{Type: mld.ChangeToExclude, Group: g, Sources: []netip.Addr{b}}), at(2*time.Second), nil)
	ps, _ = portState(tb, g, peer1, at(2*time.Second))
	if len(ps.Blocked) != 0 || len(ps.Sources) != 0 {
		t.Errorf("in MLDv1 mode, BLOCK and TO_EX's sources changed the state: %+v", ps)
	}
	for _, s := range []netip.Addr{a, b} {
		if ports, _ := tb.Lookup(g, s, nil); !slices.Equal(ports, []Port{peer1}) {
			t.Errorf("in MLDv1 mode, traffic from %v goes to %v, want peer1", s, ports)
		}
	}
	// The MALI after the MLDv1 report, the port is an MLDv2 one again (the
	// TO_EX at 2 s keeps the group).
	now := at(gmi + time.Second)
	tb.Expire(now)
	tb.HandleMLD(peer1, report(mld.RecordSpec{Type: mld.BlockOldSources, Group: g, Sources: []netip.Addr{a}}), now, nil)
	ps, _ = portState(tb, g, peer1, now)
	// EXCLUDE (X, Y) BLOCK (A) = EXCLUDE (X+(A-Y), Y), A-X-Y = Group
	// Timer (RFC 3810 section 7.4.2): a is requested again, not blocked.
	if ps.Version != 2 || !slices.Equal(ps.Sources, []netip.Addr{a}) || len(ps.Blocked) != 0 {
		t.Errorf("after the MALI: %+v, want MLDv2 mode with %v requested", ps, a)
	}
}

// TestMLDRefusals checks that the caps hold IPv6 memberships as IPv4 ones,
// counted under the mld_ names, and that an unknown record type is counted
// as mld_record and the rest of the report applied.
func TestMLDRefusals(t *testing.T) {
	tb := newTestTable(Config{MaxGroupsPerPort: 2, MaxSources: 2})
	var recs []mld.RecordSpec
	for i := range 3 {
		recs = append(recs, mld.RecordSpec{Type: mld.ModeIsExclude, Group: netip.AddrFrom16([16]byte{0xff, 0x0e, 15: byte(i + 1)})})
	}
	recs = append(recs, mld.RecordSpec{Type: 9, Group: netip.MustParseAddr("ff0e::99")},
		mld.RecordSpec{Type: mld.ModeIsInclude, Group: netip.MustParseAddr("ff0e::98"), Sources: map6([]netip.Addr{s1, s2, s3})})
	buf := make([]byte, mld.ReportLen(recs...))
	mld.PutReport(buf, recs...)
	tb.HandleMLD(peer1, mldMsg(t, mldV2Dst, buf), t0, nil)
	got := tb.Refused()
	want := map[string]uint64{"mld_cap_port": 1, "mld_record": 1, "mld_cap_sources": 1}
	for name, n := range got {
		if n != want[name] {
			t.Errorf("Refused()[%s] = %d, want %d", name, n, want[name])
		}
	}
	if groups, _ := tb.Snapshot(t0); len(groups) != 2 {
		t.Errorf("%d groups, want 2 (the per-port cap)", len(groups))
	}
}

// TestMLDExportImport checks that IPv6 memberships and an IPv6 router
// port cross to the next process with their modes, sources and timers,
// beside IPv4 ones.
func TestMLDExportImport(t *testing.T) {
	tb := newTestTable(Config{})
	g := netip.MustParseAddr("ff3e::8000:1")
	m := toMLD(t, v3msg(t, rec(ModeIsExclude, grp1, s1)))
	tb.HandleMLD(peer1, m, t0, nil)
	buf := make([]byte, mld.ReportLen(mld.RecordSpec{Type: mld.ModeIsInclude, Group: g, Sources: map6([]netip.Addr{s2})}))
	mld.PutReport(buf, mld.RecordSpec{Type: mld.ModeIsInclude, Group: g, Sources: map6([]netip.Addr{s2})})
	tb.HandleMLD(LocalPort, mldMsg(t, mldV2Dst, buf), t0, nil)
	tb.Handle(peer2, v3msg(t, rec(ModeIsExclude, grp1)), t0, nil)
	tb.HeardQuery(peer3, netip.MustParseAddr("fe80::1"), t0)
	st := tb.Export(at(time.Second))
	tb2 := newTestTable(Config{})
	if err := tb2.Import(st, at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1, r1 := tb.Snapshot(at(2 * time.Second))
	g2, r2 := tb2.Snapshot(at(2 * time.Second))
	if !reflect.DeepEqual(g1, g2) || !slices.Equal(r1, r2) {
		t.Errorf("imported\n%+v %v\nexported\n%+v %v", g2, r2, g1, r1)
	}
	// The IPv6 state is kept apart, so that a meshcast without MLD takes
	// the IPv4 state after a downgrade: it refuses a whole state that
	// holds an IPv6 group or an IPv6 router address in these lists.
	for _, ms := range st.Memberships {
		if !ms.Group.Is4() {
			t.Errorf("IPv6 membership %v among the IPv4 ones", ms.Group)
		}
	}
	for _, rs := range st.Routers {
		if !rs.Router.Is4() {
			t.Errorf("IPv6 router %v among the IPv4 ones", rs.Router)
		}
	}
	if len(st.Memberships) != 1 || len(st.MembershipsIPv6) != 2 || len(st.RoutersIPv6) != 1 {
		t.Errorf("exported %d IPv4 and %d IPv6 memberships, %d IPv6 routers; want 1, 2, 1",
			len(st.Memberships), len(st.MembershipsIPv6), len(st.RoutersIPv6))
	}
	// An IPv6 group with an IPv4 source does not import.
	bad := st
	bad.MembershipsIPv6 = slices.Clone(st.MembershipsIPv6)
	for i := range bad.MembershipsIPv6 {
		if len(bad.MembershipsIPv6[i].Sources) > 0 {
			ms := bad.MembershipsIPv6[i]
			ms.Sources = []SourceState{{Addr: s1, Until: at(time.Minute)}}
			bad.MembershipsIPv6[i] = ms
		}
	}
	if err := newTestTable(Config{}).Import(bad, at(2*time.Second)); err == nil {
		t.Error("an IPv6 membership with an IPv4 source imported")
	}
}

// TestMLDHandleZeroAllocs checks that the periodic MLDv2 answer to a
// general query, which changes nothing, allocates nothing.
func TestMLDHandleZeroAllocs(t *testing.T) {
	tb := newTestTable(Config{})
	m := toMLD(t, v3msg(t, rec(ModeIsExclude, grp1), rec(ModeIsInclude, grp2, s1, s2)))
	tb.HandleMLD(peer1, m, t0, nil)
	if n := testing.AllocsPerRun(100, func() { tb.HandleMLD(peer1, m, t0, nil) }); n != 0 {
		t.Errorf("HandleMLD of a refresh: %v allocations, want 0", n)
	}
}

// TestMLDQuerier checks the MLD querier's frames: MLDv2 queries from the
// TAP's link-local address (RFC 3810 section 5.1.14) with hop limit 1 and
// Router Alert, marked as meshcast's, general ones to ff02::1 and the
// last-listener ones to their group with its sources; and its election by
// the lowest IPv6 address.
func TestMLDQuerier(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}
	self := mld.LinkLocal(mac)
	var mu sync.Mutex
	var frames [][]byte
	q := NewMLDQuerier(Config{}, self, mac, func(f []byte) error {
		mu.Lock()
		frames = append(frames, slices.Clone(f))
		mu.Unlock()
		return nil
	})
	check := func(f []byte, dst, group netip.Addr, srcs []netip.Addr) {
		t.Helper()
		p, r := mld.FromFrame(f)
		if r != mld.IsMLD {
			t.Fatalf("frame is %v, not MLD", r)
		}
		m, why := mld.Parse(p.Src, p.Dst, p.MLD)
		if why != mld.OK {
			t.Fatalf("query does not parse: %v", why)
		}
		mac6 := mld.MulticastMAC(dst)
		switch {
		case p.Src != self || p.Dst != dst || p.HopLimit != 1 || !p.RouterAlert:
			t.Errorf("query from %v to %v, hop limit %d, router alert %v; want from %v to %v, 1, true", p.Src, p.Dst, p.HopLimit, p.RouterAlert, self, dst)
		case !slices.Equal(f[:6], mac6[:]) || !slices.Equal(f[6:12], mac):
			t.Errorf("Ethernet %x -> %x", f[6:12], f[:6])
		case m.Type() != mld.TypeQuery || m.Version() != 2 || !m.Marked() || m.Group() != group || m.QRV() != 2 || m.QQI() != 125*time.Second:
			t.Errorf("query type %d v%d marked %v group %v QRV %d QQI %v", m.Type(), m.Version(), m.Marked(), m.Group(), m.QRV(), m.QQI())
		}
		var got []netip.Addr
		for i := range m.NumSources() {
			got = append(got, m.Source(i))
		}
		if !slices.Equal(got, srcs) {
			t.Errorf("query sources %v, want %v", got, srcs)
		}
	}
	q.Tick(t0)
	if len(frames) != 1 {
		t.Fatalf("%d frames at start, want 1 startup query", len(frames))
	}
	check(frames[0], netip.MustParseAddr("ff02::1"), netip.IPv6Unspecified(), nil)
	if m, _ := mld.Parse(mld.LinkLocal(mac), netip.MustParseAddr("ff02::1"), frames[0][mld.FrameOverhead:]); m.MaxResp() != 10*time.Second {
		t.Errorf("general query max response %v, want 10s", m.MaxResp())
	}
	g := netip.MustParseAddr("ff0e::1:2:3")
	a := netip.MustParseAddr("2001:db8::a")
	frames = nil
	q.LastMember(Query{Group: g}, at(time.Second))
	q.LastMember(Query{Group: g, Sources: []netip.Addr{a}}, at(time.Second))
	q.Tick(at(time.Second))
	if len(frames) != 2 {
		t.Fatalf("%d frames after a done and a BLOCK, want 2", len(frames))
	}
	check(frames[0], g, g, nil)
	check(frames[1], g, g, []netip.Addr{a})

	// Election: an IPv4 query and a higher address do not silence it; a
	// lower link-local address does.
	q.HeardQuery(netip.MustParseAddr("198.19.0.1"), at(2*time.Second))
	q.HeardQuery(netip.MustParseAddr("fe80::ffff:0:0:1"), at(2*time.Second))
	if !q.Active(at(2 * time.Second)) {
		t.Fatal("silenced by an IPv4 query or a higher address")
	}
	q.HeardQuery(netip.MustParseAddr("fe80::1"), at(2*time.Second))
	if q.Active(at(2 * time.Second)) {
		t.Fatal("a querier at fe80::1 did not silence one at", self)
	}
	if !q.Active(at(2*time.Second + oqpi)) {
		t.Error("still silent after the other querier present interval")
	}
	// A router on the local host queries from the TAP's own address.
	q2 := NewMLDQuerier(Config{}, self, mac, func([]byte) error { return nil })
	q2.HeardHostQuery(self, t0)
	if q2.Active(t0) {
		t.Error("a router on the local host did not silence the querier")
	}
	// The state crosses to the next process.
	st := q.Export(at(3 * time.Second))
	q3 := NewMLDQuerier(Config{}, self, mac, func([]byte) error { return nil })
	q3.Import(st, at(3*time.Second))
	if q3.Active(at(3*time.Second)) != q.Active(at(3*time.Second)) {
		t.Error("imported querier's election state differs")
	}
}

// FuzzHandleMLD feeds any message that mld.Parse accepts to a small table,
// from a peer and from the local port, and checks that the table stays
// within its caps, holds only snooped IPv6 groups, and crosses Export and
// Import unchanged.
func FuzzHandleMLD(f *testing.F) {
	f.Add(mldReport6(mld.RecordSpec{Type: mld.ModeIsExclude, Group: netip.MustParseAddr("ff0e::1")}))
	f.Add(mldReport6(mld.RecordSpec{Type: mld.AllowNewSources, Group: netip.MustParseAddr("ff3e::8000:1"), Sources: map6([]netip.Addr{s1, s2})},
		mld.RecordSpec{Type: mld.BlockOldSources, Group: netip.MustParseAddr("ff05::2"), Sources: map6([]netip.Addr{s3})}))
	v1 := make([]byte, mld.HeaderLen)
	mld.PutReportV1(v1, mld.TypeV1Done, netip.MustParseAddr("ff15::9"))
	f.Add(v1)
	f.Fuzz(func(t *testing.T, b []byte) {
		// The checksum is not what is fuzzed: set it.
		b = slices.Clone(b)
		if len(b) >= 4 {
			b[2], b[3] = 0, 0
			mld.SetChecksum(mldHost, mldV2Dst, b)
		}
		m, r := mld.Parse(mldHost, mldV2Dst, b)
		if r != mld.OK {
			return
		}
		cfg := Config{MaxGroups: 8, MaxGroupsPerPort: 4, MaxSources: 4}
		tb := newTestTable(cfg)
		tb.HandleMLD(peer1, m, t0, nil)
		tb.HandleMLD(LocalPort, m, at(time.Second), nil)
		tb.Expire(at(2 * time.Second))
		groups, _ := tb.Snapshot(at(2 * time.Second))
		n := 0
		for _, g := range groups {
			if !g.Group.Is6() || !Snooped(g.Group) {
				t.Fatalf("group %v in the table", g.Group)
			}
			for _, p := range g.Ports {
				n++
				if len(p.Sources)+len(p.Blocked) > cfg.MaxSources || p.Version < 1 || p.Version > 2 {
					t.Fatalf("%v on %v: %+v", g.Group, p.Port, p)
				}
			}
		}
		if n > cfg.MaxGroups {
			t.Fatalf("%d memberships over the cap %d", n, cfg.MaxGroups)
		}
		st := tb.Export(at(2 * time.Second))
		tb2 := newTestTable(cfg)
		if err := tb2.Import(st, at(2*time.Second)); err != nil {
			t.Fatalf("Import of an Export: %v", err)
		}
		g2, _ := tb2.Snapshot(at(2 * time.Second))
		if !reflect.DeepEqual(groups, g2) {
			t.Fatalf("imported %+v, exported %+v", g2, groups)
		}
	})
}

func mldReport6(records ...mld.RecordSpec) []byte {
	b := make([]byte, mld.ReportLen(records...))
	mld.PutReport(b, records...)
	return b
}
