package igmp

import (
	"encoding/json"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The state tests hand a real table or querier over as the daemon does:
// Export, json.Marshal, json.Unmarshal, Import into a fresh one, and then
// drive both with the same clock.

var (
	grp5   = mustAddr("239.1.1.5")
	grpOff = mustAddr("239.9.9.9") // a group nobody joins
	peer4  = mustAddr("198.18.0.4")
	peer5  = mustAddr("198.18.0.5")
	s7     = mustAddr("198.19.1.7") // a source no report names

	rtr1 = mustAddr("198.19.0.1")
	rtr2 = mustAddr("198.19.0.2")
	rtr3 = mustAddr("198.19.0.3")
	rtr4 = mustAddr("198.19.0.4")
	rtr5 = mustAddr("198.19.0.5")

	stateGroups  = []netip.Addr{grp1, grp2, grp3, grp4, grp5, grpOff}
	stateSources = append(slices.Clone(allSources), s7)
)

// handoverCfg bounds the round-trip table so that its fixture counts a
// refusal.
var handoverCfg = Config{MaxGroupsPerPort: 4}

// handoverTable returns a table with v1, v2 and v3 members on three peer
// ports and the local port, INCLUDE and EXCLUDE with sources, v1 and v2
// compatibility state, router ports learned by query, PIM Hello (one for
// ever) and MRD, and one refused report, as it stands at the time
// returned.
func handoverTable(tb testing.TB) (*Table, time.Time) {
	tb.Helper()
	t := newTestTable(handoverCfg)
	handle := func(port Port, d time.Duration, m Message) {
		t.Handle(port, m, at(d), nil)
	}
	// peer1, v3: INCLUDE {s1,s2} on grp1; EXCLUDE ({s4},{s3}) on grp2,
	// whose group timer lapses before s4's.
	handle(peer1, 0, v3msg(tb, rec(ModeIsInclude, grp1, s1, s2)))
	handle(peer1, 0, v3msg(tb, rec(ModeIsExclude, grp2, s3)))
	handle(peer1, 5*time.Second, v3msg(tb, rec(AllowNewSources, grp2, s4)))
	handle(peer1, 3*time.Second, v3msg(tb, rec(ModeIsInclude, grp3, s1), rec(ModeIsInclude, grp4, s2)))
	handle(peer1, 4*time.Second, v3msg(tb, rec(ModeIsInclude, grp5, s1))) // over MaxGroupsPerPort: refused
	// peer2: a v2 host on grp1, v1 and v2 hosts on grp3.
	handle(peer2, 0, v2msg(tb, TypeV2Report, grp1))
	handle(peer2, 10*time.Second, v2msg(tb, TypeV1Report, grp3))
	handle(peer2, 20*time.Second, v2msg(tb, TypeV2Report, grp3))
	// peer3, v3: EXCLUDE ({s5},{s1,s2}) on grp2; INCLUDE {s5,s6} on grp4,
	// s6 lowered to LMQT by TO_IN.
	handle(peer3, 15*time.Second, v3msg(tb, rec(ChangeToExclude, grp2, s1, s2)))
	handle(peer3, 30*time.Second, v3msg(tb, rec(ModeIsInclude, grp2, s5)))
	handle(peer3, 40*time.Second, v3msg(tb, rec(ModeIsInclude, grp4, s6)))
	handle(peer3, 49*time.Second, v3msg(tb, rec(ChangeToInclude, grp4, s5)))
	// The local host: INCLUDE {s5} on grp4, a v2 join of grp2.
	handle(LocalPort, 0, v3msg(tb, rec(ModeIsInclude, grp4, s5)))
	handle(LocalPort, time.Second, v2msg(tb, TypeV2Report, grp2))
	// Router ports.
	t.HeardQuery(peer1, rtr1, at(2*time.Second))
	t.HeardRouter(peer2, rtr2, RouterMRD, 60*time.Second, at(10*time.Second))
	t.HeardQuery(peer2, rtr2, at(30*time.Second))
	t.HeardRouter(peer3, rtr3, RouterPIM, PIMDefaultHoldtime, at(20*time.Second))
	t.HeardRouter(peer4, rtr4, RouterPIM, HoldForever, at(25*time.Second))
	// peer5's lapses first of all the timers after the handover.
	t.HeardRouter(peer5, rtr5, RouterMRD, 3*time.Second, at(47500*time.Millisecond))
	return t, at(50 * time.Second)
}

// handover exports a at now and imports it, through JSON, into a fresh
// table of cfg.
func handover(t *testing.T, a *Table, cfg Config, now time.Time) (*Table, []byte) {
	t.Helper()
	js, err := json.Marshal(a.Export(now))
	if err != nil {
		t.Fatalf("json.Marshal(Export): %v", err)
	}
	var s TableState
	if err := json.Unmarshal(js, &s); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	b := newTestTable(cfg)
	if err := b.Import(s, now); err != nil {
		t.Fatalf("Import: %v\n%s", err, js)
	}
	return b, js
}

// lookupAll returns what Lookup answers for every group and source of the
// tests, as one string per pair.
func lookupAll(tb *Table) []string {
	var out []string
	for _, g := range stateGroups {
		for _, s := range stateSources {
			ports, registered := tb.Lookup(g, s, nil)
			names := make([]string, len(ports))
			for i, p := range ports {
				names[i] = portName(p)
			}
			out = append(out, g.String()+" "+s.String()+" -> "+strings.Join(names, ",")+map[bool]string{true: " registered", false: ""}[registered])
		}
	}
	return out
}

// sameView checks that a and b forward alike at now: Lookup for every
// pair, HasRouters, Snapshot and Routers.
func sameView(t *testing.T, a, b *Table, now time.Time) bool {
	t.Helper()
	ok := true
	if la, lb := lookupAll(a), lookupAll(b); !slices.Equal(la, lb) {
		for i := range la {
			if la[i] != lb[i] {
				t.Errorf("at %v: Lookup %s, imported %s", now.Sub(t0), la[i], lb[i])
			}
		}
		ok = false
	}
	if a.HasRouters() != b.HasRouters() {
		t.Errorf("at %v: HasRouters %v, imported %v", now.Sub(t0), a.HasRouters(), b.HasRouters())
		ok = false
	}
	ga, ra := a.Snapshot(now)
	gb, rb := b.Snapshot(now)
	if !reflect.DeepEqual(ga, gb) || !slices.Equal(ra, rb) {
		t.Errorf("at %v: Snapshot\n%+v %v\nimported\n%+v %v", now.Sub(t0), ga, ra, gb, rb)
		ok = false
	}
	if a, b := a.Routers(now), b.Routers(now); !reflect.DeepEqual(a, b) {
		t.Errorf("at %v: Routers %+v, imported %+v", now.Sub(t0), a, b)
		ok = false
	}
	return ok
}

// TestTableHandoverRoundTrip hands a table with every kind of state over
// through JSON: the imported table forwards as the exporter does, exports
// the same state, keeps its counters, and its timers run out as the
// exporter's do, at the same times.
func TestTableHandoverRoundTrip(t *testing.T) {
	a, now := handoverTable(t)
	b, js := handover(t, a, handoverCfg, now)

	// The encoding: snake_case, the local port as "", absolute times.
	for _, want := range []string{`"port":""`, `"mode":"exclude"`, `"v1_host_until":`, `"v2_host_until":`,
		`"group_timer":`, `"blocked":true`, `"learned":{"mrd":`, `"pim":"2318-`, `"refused":{`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("exported JSON lacks %s:\n%s", want, js)
		}
	}
	if !sameView(t, a, b, now) {
		t.FailNow()
	}
	if sa, sb := a.Export(now), b.Export(now); !reflect.DeepEqual(sa, sb) {
		t.Errorf("the imported table exports\n%+v\nthe exporter\n%+v", sb, sa)
	}
	if ra, rb := a.Refused(), b.Refused(); !maps.Equal(ra, rb) || rb["igmp_cap_port"] != 1 {
		t.Errorf("Refused %v, imported %v (want igmp_cap_port 1)", ra, rb)
	}
	// Check what the fixture holds, so that the run below tests it.
	for _, w := range []struct {
		group   netip.Addr
		port    Port
		mode    string
		version int
		srcs    []netip.Addr
		blocked []netip.Addr
	}{
		{grp1, peer1, "include", 3, []netip.Addr{s1, s2}, nil},
		{grp1, peer2, "exclude", 2, nil, nil},
		{grp2, LocalPort, "exclude", 2, nil, nil},
		{grp2, peer1, "exclude", 3, []netip.Addr{s4}, []netip.Addr{s3}},
		{grp2, peer3, "exclude", 3, []netip.Addr{s5}, []netip.Addr{s1, s2}},
		{grp3, peer2, "exclude", 1, nil, nil},
		{grp4, LocalPort, "include", 3, []netip.Addr{s5}, nil},
		{grp4, peer3, "include", 3, []netip.Addr{s5, s6}, nil},
	} {
		ps, ok := portState(b, w.group, w.port, now)
		if !ok || ps.Mode != w.mode || ps.Version != w.version || !slices.Equal(ps.Sources, w.srcs) || !slices.Equal(ps.Blocked, w.blocked) {
			t.Errorf("imported %v on %s: %+v (found %v), want %s v%d %v blocked %v", w.group, portName(w.port), ps, ok, w.mode, w.version, w.srcs, w.blocked)
		}
	}
	if _, routers := b.Snapshot(now); !slices.Equal(routers, []Port{peer1, peer2, peer3, peer4, peer5}) {
		t.Errorf("imported router ports %v", routers)
	}

	// Run both clocks past every timer; they must change together.
	changes := 0
	prev := lookupAll(a)
	for d := now; !d.After(now.Add(2*gmi + 10*time.Second)); d = d.Add(500 * time.Millisecond) {
		a.Expire(d)
		b.Expire(d)
		if !sameView(t, a, b, d) {
			t.Fatalf("the tables part at %v", d.Sub(t0))
		}
		if cur := lookupAll(a); !slices.Equal(cur, prev) {
			changes++
			prev = cur
		}
	}
	if changes < 5 {
		t.Errorf("the forwarding view changed %d times as the timers ran; the fixture should expire more", changes)
	}
	groups, routers := b.Snapshot(now.Add(2*gmi + 10*time.Second))
	if len(groups) != 0 || !slices.Equal(routers, []Port{peer4}) {
		t.Errorf("at the end: %+v, routers %v; want no groups and peer4, held forever", groups, routers)
	}
}

// TestTableImportCaps checks that Import applies the importing table's
// caps as Handle does: refused and counted, not an error; a membership
// over MaxSources becomes EXCLUDE {}; deadlines beyond GMI are cut to it.
// An expired entry takes no room.
func TestTableImportCaps(t *testing.T) {
	now := at(time.Minute)
	later := now.Add(100 * time.Second)
	inc := func(g netip.Addr, port Port, srcs ...netip.Addr) MembershipState {
		ms := MembershipState{Group: g, Port: port, Mode: "include", Version: 3}
		for i, s := range srcs {
			ms.Sources = append(ms.Sources, SourceState{Addr: s, Until: later.Add(time.Duration(i) * time.Second)})
		}
		return ms
	}
	expired := inc(grp4, peer3, s1)
	expired.Sources[0].Until = now.Add(-time.Second)
	farOff := inc(grp1, peer1, s1)
	farOff.Sources[0].Until = now.Add(10 * time.Hour)
	s := TableState{
		Memberships: []MembershipState{
			expired,                      // skipped
			farOff,                       // kept, its timer cut to GMI
			inc(grp2, peer1, s1),         // kept: peer1 at its cap of 2
			inc(grp3, peer1, s1),         // refused: port cap
			inc(grp1, peer2, s1, s2, s3), // kept as EXCLUDE {}: source cap; 3 in all
			{Group: grp2, Port: peer2, Mode: "exclude", Version: 3, GroupTimer: later}, // refused: global cap
		},
		Refused: map[string]uint64{"igmp_cap_global": 5, "igmp_from_the_future": 7},
	}
	tb := newTestTable(Config{MaxGroups: 3, MaxGroupsPerPort: 2, MaxSources: 2})
	if err := tb.Import(s, now); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"igmp_cap_global": 6, "igmp_cap_port": 1, "igmp_cap_sources": 1, "igmp_record": 0,
		"mld_cap_global": 0, "mld_cap_port": 0, "mld_cap_sources": 0, "mld_record": 0}
	if got := tb.Refused(); !maps.Equal(got, want) {
		t.Errorf("Refused %v, want %v", got, want)
	}
	groups, _ := tb.Snapshot(now)
	wantGroups := []GroupState{
		{Group: grp1, Ports: []PortState{
			{Port: peer1, Mode: "include", Version: 3, Expires: gmi, Sources: []netip.Addr{s1}},
			{Port: peer2, Mode: "exclude", Version: 3, Expires: 102 * time.Second},
		}},
		{Group: grp2, Ports: []PortState{{Port: peer1, Mode: "include", Version: 3, Expires: 100 * time.Second, Sources: []netip.Addr{s1}}}},
	}
	if !reflect.DeepEqual(groups, wantGroups) {
		t.Errorf("Snapshot\n%+v\nwant\n%+v", groups, wantGroups)
	}
	if ports, reg := tb.Lookup(grp1, s6, nil); !slices.Equal(ports, []Port{peer2}) || !reg {
		t.Errorf("Lookup(grp1, s6) = %v %v, want [peer2] (EXCLUDE {}) registered", ports, reg)
	}
	if ports, reg := tb.Lookup(grp4, s1, nil); len(ports) != 0 || reg {
		t.Errorf("Lookup(grp4, s1) = %v %v: the expired membership was imported", ports, reg)
	}
}

// TestTableImportRunsTimers checks that Import at a later time leaves what
// Import at the export time followed by Expire leaves: lapsed sources,
// memberships, compatibility modes and router ways are gone; an EXCLUDE
// membership whose group timer lapsed is INCLUDE of its running sources;
// a lapsed requested source of a running EXCLUDE is blocked.
func TestTableImportRunsTimers(t *testing.T) {
	s := TableState{
		Memberships: []MembershipState{
			{Group: grp1, Port: peer1, Mode: "include", Version: 3, Sources: []SourceState{
				{Addr: s1, Until: at(10 * time.Second)}, {Addr: s2, Until: at(100 * time.Second)}}},
			{Group: grp2, Port: peer1, Mode: "exclude", Version: 3, GroupTimer: at(20 * time.Second), Sources: []SourceState{
				{Addr: s1, Until: at(100 * time.Second)}, {Addr: s2, Until: at(10 * time.Second)}, {Addr: s3, Blocked: true}}},
			{Group: grp3, Port: peer2, Mode: "exclude", Version: 3, GroupTimer: at(100 * time.Second), Sources: []SourceState{
				{Addr: s1, Until: at(100 * time.Second)}, {Addr: s2, Until: at(10 * time.Second)}, {Addr: s3, Blocked: true}}},
			{Group: grp4, Port: peer2, Mode: "include", Version: 3, Sources: []SourceState{{Addr: s1, Until: at(20 * time.Second)}}},
			{Group: grp4, Port: LocalPort, Mode: "exclude", Version: 1, V1Until: at(20 * time.Second), V2Until: at(100 * time.Second), GroupTimer: at(100 * time.Second)},
		},
		Routers: []RouterPortState{
			{Port: peer1, Router: rtr1, Learned: map[string]time.Time{"query": at(20 * time.Second), "pim": at(100 * time.Second)}},
			{Port: peer2, Router: rtr2, Learned: map[string]time.Time{"mrd": at(20 * time.Second)}},
		},
	}
	early := newTestTable(Config{})
	if err := early.Import(s, at(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	now := at(30 * time.Second)
	early.Expire(now)
	late := newTestTable(Config{})
	if err := late.Import(s, now); err != nil {
		t.Fatal(err)
	}
	sameView(t, early, late, now)

	groups, routers := late.Snapshot(now)
	want := []GroupState{
		{Group: grp1, Ports: []PortState{{Port: peer1, Mode: "include", Version: 3, Expires: 70 * time.Second, Sources: []netip.Addr{s2}}}},
		{Group: grp2, Ports: []PortState{{Port: peer1, Mode: "include", Version: 3, Expires: 70 * time.Second, Sources: []netip.Addr{s1}}}},
		{Group: grp3, Ports: []PortState{{Port: peer2, Mode: "exclude", Version: 3, Expires: 70 * time.Second, Sources: []netip.Addr{s1}, Blocked: []netip.Addr{s2, s3}}}},
		{Group: grp4, Local: true, Ports: []PortState{{Port: LocalPort, Mode: "exclude", Version: 2, Expires: 70 * time.Second}}},
	}
	if !reflect.DeepEqual(groups, want) || !slices.Equal(routers, []Port{peer1}) {
		t.Errorf("Snapshot\n%+v %v\nwant\n%+v [peer1]", groups, routers, want)
	}
	if r := late.Routers(now); len(r) != 1 || !slices.Equal(r[0].Learned, []RouterSource{RouterPIM}) {
		t.Errorf("Routers %+v, want peer1 learned by PIM only", r)
	}
	// Everything lapsed: an empty table, and no error.
	empty := newTestTable(Config{})
	if err := empty.Import(s, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if g, r := empty.Snapshot(at(time.Hour)); len(g) != 0 || len(r) != 0 || empty.HasRouters() {
		t.Errorf("an import after every deadline left %+v %v", g, r)
	}
}

// TestTableImportRefusesATableWithState checks that Import is for a fresh
// table only.
func TestTableImportRefusesATableWithState(t *testing.T) {
	a, now := handoverTable(t)
	s := a.Export(now)
	withMember := newTestTable(Config{})
	withMember.Handle(peer1, v2msg(t, TypeV2Report, grp1), now, nil)
	withRouter := newTestTable(Config{})
	withRouter.HeardQuery(peer1, rtr1, now)
	for name, tb := range map[string]*Table{"member": withMember, "router port": withRouter} {
		before := lookupAll(tb)
		if err := tb.Import(s, now); err == nil || !strings.Contains(err.Error(), "has state") {
			t.Errorf("a table with a %s: Import = %v, want an error", name, err)
		}
		if !slices.Equal(lookupAll(tb), before) {
			t.Errorf("a table with a %s: the refused Import changed it", name)
		}
	}
}

// TestTableImportMalformed checks that Import refuses malformed state with
// an error that names the entry and the fault, leaves the table empty, and
// that the same table then takes a valid state.
func TestTableImportMalformed(t *testing.T) {
	now := at(time.Minute)
	until := now.Add(time.Minute)
	valid := func() TableState {
		return TableState{
			Memberships: []MembershipState{
				{Group: grp1, Port: LocalPort, Mode: "include", Version: 3, Sources: []SourceState{{Addr: s1, Until: until}}},
				{Group: grp1, Port: peer1, Mode: "exclude", Version: 2, V2Until: until, GroupTimer: until,
					Sources: []SourceState{{Addr: s1, Until: until}, {Addr: s2, Blocked: true}}},
			},
			Routers: []RouterPortState{{Port: peer1, Router: rtr1, Learned: map[string]time.Time{"query": until}}},
		}
	}
	m1 := func(f func(*MembershipState)) func(*TableState) {
		return func(s *TableState) { f(&s.Memberships[1]) }
	}
	r0 := func(f func(*RouterPortState)) func(*TableState) {
		return func(s *TableState) { f(&s.Routers[0]) }
	}
	for _, tc := range []struct {
		name  string
		edit  func(*TableState)
		error string
	}{
		{"unicast group", m1(func(m *MembershipState) { m.Group = s3 }), "membership 1 (group 198.19.1.3, port 198.18.0.1): the group is not a multicast address"},
		{"no group", m1(func(m *MembershipState) { m.Group = netip.Addr{} }), "group invalid IP, port 198.18.0.1): the group is not"},
		{"IPv6 group, IPv4 source", m1(func(m *MembershipState) { m.Group = mustAddr("ff05::1") }), "source 198.19.1.1 is not a unicast address of the group's family"},
		{"link-local IPv6 group", m1(func(m *MembershipState) { m.Group = mustAddr("ff02::fb") }), "of an IPv6 scope that has no state"},
		{"link-local group", m1(func(m *MembershipState) { m.Group = mustAddr("224.0.0.251") }), "224.0.0.0/24"},
		{"unspecified port", m1(func(m *MembershipState) { m.Port = mustAddr("0.0.0.0") }), "port is unspecified"},
		{"mode", m1(func(m *MembershipState) { m.Mode = "EXCLUDE" }), `mode "EXCLUDE" unknown`},
		{"version 0", m1(func(m *MembershipState) { m.Version = 0 }), "version 0 (want 1, 2 or 3)"},
		{"version 4", m1(func(m *MembershipState) { m.Version = 4 }), "version 4 (want 1, 2 or 3)"},
		{"version without timer", m1(func(m *MembershipState) { m.Version = 1 }), "version 1, but the older host timers say 2"},
		{"timer without version", m1(func(m *MembershipState) { m.Version = 3 }), "version 3, but the older host timers say 2"},
		{"exclude without group timer", m1(func(m *MembershipState) { m.GroupTimer = time.Time{} }), "exclude mode without a group timer"},
		{"multicast source", m1(func(m *MembershipState) { m.Sources[0].Addr = grp2 }), "source 239.1.1.2 is not a unicast address of the group's family"},
		{"source 0.0.0.0", m1(func(m *MembershipState) { m.Sources[0].Addr = mustAddr("0.0.0.0") }), "source 0.0.0.0 is not"},
		{"broadcast source", m1(func(m *MembershipState) { m.Sources[0].Addr = mustAddr("255.255.255.255") }), "source 255.255.255.255 is not"},
		{"IPv6 source", m1(func(m *MembershipState) { m.Sources[0].Addr = mustAddr("2001:db8::1") }), "source 2001:db8::1 is not"},
		{"mapped source", m1(func(m *MembershipState) { m.Sources[0].Addr = mustAddr("::ffff:198.19.1.1") }), "source ::ffff:198.19.1.1 is not"},
		{"source without timer", m1(func(m *MembershipState) { m.Sources[0].Until = time.Time{} }), "source 198.19.1.1 has no timer"},
		{"blocked in include", func(s *TableState) { s.Memberships[0].Sources[0].Blocked = true }, "membership 0 (group 239.1.1.1, port local): source 198.19.1.1 is blocked in include mode"},
		{"duplicate source", m1(func(m *MembershipState) { m.Sources[1].Addr = s1 }), "source 198.19.1.1 appears twice"},
		{"duplicate source out of order", m1(func(m *MembershipState) {
			m.Sources = []SourceState{{Addr: s3, Until: until}, {Addr: s1, Until: until}, {Addr: s3, Until: until}}
		}), "source 198.19.1.3 appears twice"},
		{"duplicate membership", func(s *TableState) { s.Memberships = append(s.Memberships, s.Memberships[0]) }, "membership 2 (group 239.1.1.1, port local): appears twice"},
		{"duplicate membership out of order", func(s *TableState) {
			s.Memberships = append([]MembershipState{s.Memberships[1]}, s.Memberships...)
		}, "membership 2 (group 239.1.1.1, port 198.18.0.1): appears twice"},
		{"local router port", r0(func(r *RouterPortState) { r.Port = LocalPort }), "router port 0 (local): the local port is never a router port"},
		{"router 0.0.0.0", r0(func(r *RouterPortState) { r.Router = mustAddr("0.0.0.0") }), "router address 0.0.0.0 is not"},
		{"global IPv6 router", r0(func(r *RouterPortState) { r.Router = mustAddr("2001:db8::1") }), "router address 2001:db8::1 is not"},
		{"unknown way", r0(func(r *RouterPortState) { r.Learned["igmp"] = until }), `way "igmp" unknown`},
		{"no way", r0(func(r *RouterPortState) { r.Learned = nil }), "router port 0 (198.18.0.1): learned no way"},
		{"way without deadline", r0(func(r *RouterPortState) { r.Learned["pim"] = time.Time{} }), "way pim without a deadline"},
		{"duplicate router port", func(s *TableState) {
			s.Routers = append(s.Routers, RouterPortState{Port: peer2, Router: rtr2, Learned: map[string]time.Time{"pim": until}}, s.Routers[0])
		}, "router port 2 (198.18.0.1): appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.edit(&s)
			tb := newTestTable(Config{})
			err := tb.Import(s, now)
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("Import = %v, want an error with %q", err, tc.error)
			}
			if g, r := tb.Snapshot(now); len(g) != 0 || len(r) != 0 || tb.HasRouters() {
				t.Errorf("the refused Import left %+v %v", g, r)
			}
			if ports, reg := tb.Lookup(grp1, s1, nil); len(ports) != 0 || reg {
				t.Errorf("the refused Import published %v %v", ports, reg)
			}
			if err := tb.Import(valid(), now); err != nil {
				t.Errorf("Import(valid) after the refusal: %v", err)
			}
		})
	}
}

// The fuzz table's caps, small enough that the seeds exceed them.
var fuzzTableCfg = Config{MaxGroups: 6, MaxGroupsPerPort: 3, MaxSources: 3}

// FuzzTableImport imports arbitrary JSON into a small table: no panic, the
// caps hold, a refused state changes nothing, what is imported is valid
// and published, and it hands over again unchanged.
func FuzzTableImport(f *testing.F) {
	a, now := handoverTable(f)
	js, _ := json.Marshal(a.Export(now))
	f.Add(js)
	tb := newTestTable(Config{})
	s := TableState{Memberships: []MembershipState{{Group: grp1, Port: peer1, Mode: "exclude", Version: 3, GroupTimer: at(time.Minute),
		Sources: []SourceState{{Addr: s2, Until: at(time.Second)}, {Addr: s1, Blocked: true}}}}}
	_ = tb.Import(s, t0)
	js, _ = json.Marshal(s)
	f.Add(js)
	for _, seed := range []string{
		`{}`, `null`, `{"memberships":null,"routers":[]}`,
		`{"memberships":[{"group":"239.1.1.1","port":"","mode":"include","version":3,"sources":[{"addr":"10.0.0.1","until":"2026-01-01T00:01:00Z"}]}]}`,
		`{"memberships":[{"group":"239.1.1.1","port":"10.1.1.1","mode":"exclude","version":1,"v1_host_until":"2026-01-01T00:01:00Z","group_timer":"9999-12-31T23:59:59Z"}]}`,
		`{"routers":[{"port":"10.1.1.1","router":"10.2.2.2","learned":{"pim":"2026-01-01T00:01:00Z","query":"2027-01-01T00:00:00Z"}}],"refused":{"igmp_record":18446744073709551615}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s TableState
		if json.Unmarshal(data, &s) != nil {
			return
		}
		now := at(30 * time.Second)
		tb := newTestTable(fuzzTableCfg)
		if err := tb.Import(s, now); err != nil {
			if g, r := tb.Snapshot(now); len(g) != 0 || len(r) != 0 || tb.HasRouters() {
				t.Fatalf("Import refused with %v but left %+v %v", err, g, r)
			}
			return
		}
		checkTableInvariants(t, tb, now)
		again := newTestTable(fuzzTableCfg)
		if err := again.Import(tb.Export(now), now); err != nil {
			t.Fatalf("the imported table exports what Import refuses: %v", err)
		}
		ga, ra := tb.Snapshot(now)
		gb, rb := again.Snapshot(now)
		if !reflect.DeepEqual(ga, gb) || !slices.Equal(ra, rb) || !reflect.DeepEqual(tb.Routers(now), again.Routers(now)) {
			t.Fatalf("handed over again:\n%+v %v\nbecame\n%+v %v", ga, ra, gb, rb)
		}
	})
}

// checkTableInvariants checks the caps, the validity of every entry and
// the published views of tb at now.
func checkTableInvariants(t *testing.T, tb *Table, now time.Time) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	cfg, limit := tb.cfg, now.Add(tb.gmi)
	running := func(u time.Time) bool { return u.After(now) && !u.After(limit) }
	total, perPort := 0, map[Port]int{}
	for g, ports := range tb.groups {
		if !g.Is4() || !g.IsMulticast() || g.IsLinkLocalMulticast() || len(ports) == 0 {
			t.Fatalf("group %v with %d ports", g, len(ports))
		}
		for p, m := range ports {
			total++
			perPort[p]++
			if len(m.srcs) > cfg.MaxSources {
				t.Fatalf("%v on %s: %d sources, over the cap of %d", g, portName(p), len(m.srcs), cfg.MaxSources)
			}
			if m.mode == ModeInclude && len(m.srcs) == 0 || m.mode == ModeExclude && !running(m.timer) || m.mode != ModeInclude && m.mode != ModeExclude {
				t.Fatalf("%v on %s: mode %d with %d sources, group timer %v", g, portName(p), m.mode, len(m.srcs), m.timer.Sub(now))
			}
			for _, u := range []time.Time{m.v1Until, m.v2Until} {
				if !u.IsZero() && !running(u) {
					t.Fatalf("%v on %s: older host timer %v", g, portName(p), u.Sub(now))
				}
			}
			for a, s := range m.srcs {
				if !unicastOf(g, a) || s.blocked && m.mode == ModeInclude || !s.blocked && !running(s.timer) {
					t.Fatalf("%v on %s: source %v %+v", g, portName(p), a, *s)
				}
			}
		}
		if !tb.fwd[g].matches(ports) {
			t.Fatalf("the published view of %v does not match its state", g)
		}
	}
	if total != tb.total || total > cfg.MaxGroups || len(tb.fwd) != len(tb.groups) {
		t.Fatalf("%d memberships, counted %d, cap %d; %d groups published of %d", total, tb.total, cfg.MaxGroups, len(tb.fwd), len(tb.groups))
	}
	if !maps.Equal(perPort, tb.perPort) {
		t.Fatalf("per port %v, counted %v", perPort, tb.perPort)
	}
	for p, n := range perPort {
		if n > cfg.MaxGroupsPerPort {
			t.Fatalf("port %s has %d memberships, over the cap of %d", portName(p), n, cfg.MaxGroupsPerPort)
		}
	}
	for p, r := range tb.routers {
		if p == LocalPort || !r.addr.Is4() || !r.expires().After(now) {
			t.Fatalf("router port %s: %+v", portName(p), *r)
		}
	}
	keys := slices.SortedFunc(maps.Keys(tb.routers), netip.Addr.Compare)
	if !slices.Equal(*tb.routerPorts.Load(), keys) {
		t.Fatalf("published router ports %v, state %v", *tb.routerPorts.Load(), keys)
	}
}

// querierHandover exports r's querier at now and imports it, through JSON,
// into a fresh rig of cfg whose clock stands at now, counting what it
// announces.
func querierHandover(t *testing.T, r *querierRig, cfg Config, now time.Time) (*querierRig, *[]time.Duration) {
	t.Helper()
	js, err := json.Marshal(r.q.Export(now))
	if err != nil {
		t.Fatal(err)
	}
	var s QuerierState
	if err := json.Unmarshal(js, &s); err != nil {
		t.Fatal(err)
	}
	b := newQuerierRig(t, cfg)
	announced := new([]time.Duration)
	b.q.SetAnnounce(func([]byte) error {
		*announced = append(*announced, b.now.Sub(t0))
		return nil
	})
	b.q.Import(s, now)
	b.now = now
	return b, announced
}

// after returns the times of the queries sent after d.
func after(sent []sentQuery, d time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range sent {
		if s.at > d {
			out = append(out, s.at)
		}
	}
	return out
}

// TestQuerierHandoverStartup hands over an active querier between its two
// startup queries: the next process sends the second one (announced to the
// peers) when the exporter would have, then periodic ones, and no third
// startup query; Sent goes on.
func TestQuerierHandoverStartup(t *testing.T) {
	cfg := Config{}
	a := newQuerierRig(t, cfg)
	a.tickAt(0)
	b, announced := querierHandover(t, a, cfg, at(5*time.Second))
	if !b.q.Active(b.now) {
		t.Error("the imported querier is not active")
	}
	a.run(400 * time.Second)
	b.run(400 * time.Second)
	want := []time.Duration{31250 * time.Millisecond, 156250 * time.Millisecond, 281250 * time.Millisecond}
	if got := b.times(); !slices.Equal(got, want) || !slices.Equal(after(a.sent, 5*time.Second), want) {
		t.Errorf("imported querier sent at %v, exporter at %v, want %v", got, after(a.sent, 5*time.Second), want)
	}
	for _, s := range b.sent {
		checkGeneral(t, s, cfg)
	}
	if !slices.Equal(*announced, want[:1]) {
		t.Errorf("announced at %v, want the last startup query only, at %v", *announced, want[0])
	}
	if b.q.Sent() != 4 {
		t.Errorf("Sent = %d, want 1 before the handover and 3 after", b.q.Sent())
	}
}

// TestQuerierHandoverFinished hands over a querier past its startup
// queries, with a group-specific query half sent: the next process sends
// no startup query, the second specific query on time, and its next
// general query when the exporter would have.
func TestQuerierHandoverFinished(t *testing.T) {
	cfg := Config{}
	a := newQuerierRig(t, cfg)
	a.run(200 * time.Second) // a.now is 281.25 s, when the next general query is due
	a.q.LastMember(Query{Group: grp1, Sources: []netip.Addr{s1, s2}}, a.now)
	a.q.Tick(a.now) // the general query and the first specific one
	exportAt := a.now.Add(500 * time.Millisecond)
	b, announced := querierHandover(t, a, cfg, exportAt)
	a.run(600 * time.Second)
	b.run(600 * time.Second)
	d := exportAt.Sub(t0)
	if got, want := b.times(), after(a.sent, d); !slices.Equal(got, want) || len(got) != 3 {
		t.Errorf("imported querier sent at %v, exporter at %v", got, want)
	}
	if sp := b.specific(); len(sp) != 1 || sp[0].msg.Group() != grp1 || !slices.Equal(sp[0].sources(), []netip.Addr{s1, s2}) {
		t.Errorf("specific queries after the handover: %v", sp)
	}
	if len(*announced) != 0 {
		t.Errorf("the imported querier announced queries at %v: startup queries again", *announced)
	}
}

// TestQuerierHandoverSilenced hands over a querier that heard a querier
// with a lower address: the next process stays silent until the other
// querier present timer ends, then takes over as the exporter would.
func TestQuerierHandoverSilenced(t *testing.T) {
	cfg := Config{}
	a := newQuerierRig(t, cfg)
	a.tickAt(0)
	lower := mustAddr("198.19.0.1")
	a.q.HeardQuery(lower, at(10*time.Second))
	exportAt := at(20 * time.Second)
	s := a.q.Export(exportAt)
	if s.Querier || s.OtherQuerier != lower || !s.OtherUntil.Equal(at(10*time.Second+oqpi)) {
		t.Errorf("Export = %+v, want silenced by %v until %v", s, lower, 10*time.Second+oqpi)
	}
	b, _ := querierHandover(t, a, cfg, exportAt)
	if b.q.Active(exportAt) || b.q.Active(at(10*time.Second+oqpi-time.Nanosecond)) || !b.q.Active(at(10*time.Second+oqpi)) {
		t.Error("the imported querier is not silenced until the other querier present timer ends")
	}
	a.run(600 * time.Second)
	b.run(600 * time.Second)
	got, want := b.times(), after(a.sent, exportAt.Sub(t0))
	if !slices.Equal(got, want) || len(got) == 0 || got[0] != 10*time.Second+oqpi {
		t.Errorf("imported querier sent at %v, exporter at %v; want the first at %v", got, want, 10*time.Second+oqpi)
	}
}

// TestQuerierImportBounds checks that Import bounds what it takes by the
// querier's configuration and drops what cannot be.
func TestQuerierImportBounds(t *testing.T) {
	now := at(time.Minute)
	far := now.Add(100 * time.Hour)
	s := QuerierState{
		StartupLeft:  99,
		NextGeneral:  far,
		OtherQuerier: mustAddr("198.19.0.9"), // higher than querierSelf: loses the election
		OtherUntil:   far,
		LastSolicit:  far,
		Pending: []PendingQueryState{
			{Group: s1, Left: 1, Next: now},                                               // not a group
			{Group: mustAddr("224.0.0.1"), Left: 1, Next: now},                            // link-local
			{Group: grp1, Sources: []netip.Addr{mustAddr("0.0.0.0")}, Left: 1, Next: now}, // bad source
			{Group: grp1, Left: 0, Next: now},                                             // nothing left
			{Group: grp2, Sources: []netip.Addr{s1, s2, s3}, Left: 1, Next: now},          // over MaxSources
			{Group: grp3, Left: 99, Next: far},                                            // kept, bounded
			{Group: grp3, Left: 1, Next: now},                                             // the same group-specific query
			{Group: grp4, Sources: []netip.Addr{s1}, Left: 1, Next: now},                  // kept
		},
		Sent: 7,
	}
	cfg := Config{MaxSources: 2}
	r := newQuerierRig(t, cfg)
	r.q.Import(s, now)
	checkQuerierInvariants(t, r.q, now)
	r.q.mu.Lock()
	got := slices.Clone(r.q.pending)
	startup, next, other := r.q.startupLeft, r.q.nextGeneral, r.q.otherUntil
	r.q.mu.Unlock()
	if startup != 2 || !next.Equal(now.Add(125*time.Second)) || !other.Equal(now) {
		t.Errorf("startup %d, next general %v, other querier until %v; want 2, 125s, a takeover now", startup, next.Sub(now), other.Sub(now))
	}
	if len(got) != 2 || got[0].Group != grp3 || got[0].left != 2 || !got[0].next.Equal(now.Add(time.Second)) || got[1].Group != grp4 {
		t.Errorf("pending %+v, want grp3 (2 left, in 1s) and grp4", got)
	}
	if r.q.Sent() != 7 {
		t.Errorf("Sent = %d, want 7", r.q.Sent())
	}
	r.now = now
	r.run(now.Sub(t0))
	if r.times() == nil || r.times()[0] != time.Minute {
		t.Errorf("sent at %v: want the takeover query at once", r.times())
	}
}

// checkQuerierInvariants checks that q's state is within its
// configuration's bounds at now.
func checkQuerierInvariants(t *testing.T, q *Querier, now time.Time) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	cfg := q.cfg
	switch {
	case q.startupLeft < 0 || q.startupLeft > cfg.Robustness:
		t.Fatalf("%d startup queries left", q.startupLeft)
	case q.nextGeneral.After(now.Add(cfg.QueryInterval)):
		t.Fatalf("next general query in %v", q.nextGeneral.Sub(now))
	case q.otherUntil.After(now.Add(cfg.OQPI())):
		t.Fatalf("other querier present for %v", q.otherUntil.Sub(now))
	case q.otherUntil.After(now) && (!q.other.Is4() || q.other.Compare(q.self) > 0):
		t.Fatalf("silenced by %v", q.other)
	case q.otherUntil.After(now) && len(q.pending) > 0:
		t.Fatalf("silenced with %d specific queries pending", len(q.pending))
	case q.lastSolicit.After(now):
		t.Fatalf("last solicited in %v", q.lastSolicit.Sub(now))
	case len(q.pending) > cfg.MaxGroupsPerPort:
		t.Fatalf("%d specific queries pending", len(q.pending))
	}
	for _, p := range q.pending {
		ok := p.Group.Is4() && p.Group.IsMulticast() && !p.Group.IsLinkLocalMulticast() &&
			p.left >= 1 && p.left <= cfg.Robustness && !p.next.After(now.Add(cfg.LastMemberInterval)) &&
			len(p.Sources) <= cfg.MaxSources && !slices.ContainsFunc(p.Sources, func(a netip.Addr) bool { return !unicastOf(p.Group, a) })
		if !ok {
			t.Fatalf("pending %+v", p)
		}
	}
}

// FuzzQuerierImport imports arbitrary JSON into a querier: no panic, its
// state within bounds, and Ticks that send valid queries and ask to be
// called again later.
func FuzzQuerierImport(f *testing.F) {
	a := &querierRig{q: NewQuerier(Config{}, querierSelf, testMAC, func([]byte) error { return nil })}
	a.q.Tick(t0)
	a.q.LastMember(Query{Group: grp1, Sources: []netip.Addr{s1}}, at(time.Second))
	a.q.Tick(at(time.Second))
	js, _ := json.Marshal(a.q.Export(at(2 * time.Second)))
	f.Add(js)
	a.q.HeardQuery(mustAddr("198.19.0.1"), at(3*time.Second))
	js, _ = json.Marshal(a.q.Export(at(4 * time.Second)))
	f.Add(js)
	f.Add([]byte(`{"startup_queries_left":-5,"next_general_query":"9999-01-01T00:00:00Z","pending":[{"group":"239.1.1.1","left":1000000,"next":"0001-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"other_querier":"::1","other_querier_until":"2026-01-01T00:10:00Z","sent":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s QuerierState
		if json.Unmarshal(data, &s) != nil {
			return
		}
		cfg := Config{MaxSources: 4, MaxGroupsPerPort: 8}
		r := newQuerierRig(t, cfg)
		r.q.SetAnnounce(func([]byte) error { return nil })
		now := at(time.Minute)
		r.q.Import(s, now)
		checkQuerierInvariants(t, r.q, now)
		r.now = now
		for range 8 {
			next := r.q.Tick(r.now)
			if !next.After(r.now) {
				t.Fatalf("Tick(%v) asked to be called again at %v", r.now.Sub(t0), next.Sub(t0))
			}
			r.now = next
		}
	})
}
