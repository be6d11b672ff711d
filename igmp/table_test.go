package igmp

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The table tests drive a fake clock: every call takes now, which starts at
// t0 and moves only when a test moves it. Timers use the RFC 3376 defaults
// (robustness 2, query interval 125 s, response 10 s, last member interval
// 1 s), so GMI is 260 s, LMQT 2 s and OQPI 255 s.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	gmi  = 260 * time.Second // Config{}.GMI()
	lmqt = 2 * time.Second   // Config{}.LMQT()
	oqpi = 255 * time.Second // Config{}.OQPI()
)

// Groups, peers (underlay) and sources (overlay) of the tests.
var (
	grp1 = mustAddr("239.1.1.1")
	grp2 = mustAddr("239.1.1.2")
	grp3 = mustAddr("239.1.1.3")
	grp4 = mustAddr("239.1.1.4")

	peer1 = mustAddr("198.18.0.1")
	peer2 = mustAddr("198.18.0.2")
	peer3 = mustAddr("198.18.0.3")

	s1 = mustAddr("198.19.1.1")
	s2 = mustAddr("198.19.1.2")
	s3 = mustAddr("198.19.1.3")
	s4 = mustAddr("198.19.1.4")
	s5 = mustAddr("198.19.1.5")
	s6 = mustAddr("198.19.1.6")

	allSources = []netip.Addr{s1, s2, s3, s4, s5, s6}
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newTestTable(cfg Config) *Table {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return NewTable(cfg)
}

// v2msg returns a parsed v1 report, v2 report or v2 leave for group.
func v2msg(tb testing.TB, typ uint8, group netip.Addr) Message {
	tb.Helper()
	b := make([]byte, HeaderLen)
	PutReportV2(b, typ, group)
	m, r := Parse(b)
	if r != OK {
		tb.Fatalf("Parse(type %#x %v) = %v", typ, group, r)
	}
	return m
}

// rec is a Group Record for v3msg.
func rec(typ uint8, group netip.Addr, srcs ...netip.Addr) RecordSpec {
	return RecordSpec{Type: typ, Group: group, Sources: srcs}
}

// v3msg returns a parsed v3 report holding records.
func v3msg(tb testing.TB, records ...RecordSpec) Message {
	tb.Helper()
	b := make([]byte, ReportV3Len(records...))
	PutReportV3(b, records...)
	m, r := Parse(b)
	if r != OK {
		tb.Fatalf("Parse(v3 report) = %v", r)
	}
	return m
}

// portState returns the Snapshot entry of (group, port).
func portState(tb *Table, group netip.Addr, port Port, now time.Time) (PortState, bool) {
	groups, _ := tb.Snapshot(now)
	for _, g := range groups {
		if g.Group != group {
			continue
		}
		for _, p := range g.Ports {
			if p.Port == port {
				return p, true
			}
		}
	}
	return PortState{}, false
}

// forwarded returns the sources among srcs whose traffic to group Lookup
// sends to port.
func forwarded(tb *Table, group netip.Addr, port Port, srcs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, s := range srcs {
		ports, _ := tb.Lookup(group, s, nil)
		if slices.Contains(ports, port) {
			out = append(out, s)
		}
	}
	return out
}

// timers returns the source timers and the group timer of (group, port) as
// offsets from t0. Sources without a running timer (EXCLUDE's blocked list)
// are left out. It reads the table's internals, which the Snapshot sums up
// in one number.
func timers(tb *Table, group netip.Addr, port Port) (srcs map[netip.Addr]time.Duration, gt time.Duration, ok bool) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	m := tb.groups[group][port]
	if m == nil {
		return nil, 0, false
	}
	srcs = map[netip.Addr]time.Duration{}
	for a, s := range m.srcs {
		if !s.blocked {
			srcs[a] = s.timer.Sub(t0)
		}
	}
	if m.mode == ModeExclude {
		gt = m.timer.Sub(t0)
	}
	return srcs, gt, true
}

func sortedQueries(qs []Query) []Query {
	out := make([]Query, len(qs))
	for i, q := range qs {
		srcs := slices.Clone(q.Sources)
		slices.SortFunc(srcs, netip.Addr.Compare)
		out[i] = Query{Group: q.Group, Sources: srcs}
	}
	return out
}

func equalQueries(a, b []Query) bool {
	return slices.EqualFunc(sortedQueries(a), sortedQueries(b), func(x, y Query) bool {
		return x.Group == y.Group && slices.Equal(x.Sources, y.Sources)
	})
}

// wantState is what a membership should look like at some time.
type wantState struct {
	mode    string // "include", "exclude", or "" for no state
	sources []netip.Addr
	blocked []netip.Addr
	fwd     []netip.Addr // which of allSources Lookup forwards to the port
	timers  map[netip.Addr]time.Duration
	gt      time.Duration // group timer, EXCLUDE only
}

func checkState(t *testing.T, tb *Table, group netip.Addr, port Port, now time.Time, w wantState) {
	t.Helper()
	ps, ok := portState(tb, group, port, now)
	switch {
	case w.mode == "" && ok:
		t.Errorf("at %v: state %+v, want none", now.Sub(t0), ps)
	case w.mode != "" && !ok:
		t.Errorf("at %v: no state, want %s", now.Sub(t0), w.mode)
	case ok:
		if ps.Mode != w.mode {
			t.Errorf("at %v: mode %s, want %s", now.Sub(t0), ps.Mode, w.mode)
		}
		if !slices.Equal(ps.Sources, w.sources) {
			t.Errorf("at %v: sources %v, want %v", now.Sub(t0), ps.Sources, w.sources)
		}
		if !slices.Equal(ps.Blocked, w.blocked) {
			t.Errorf("at %v: blocked %v, want %v", now.Sub(t0), ps.Blocked, w.blocked)
		}
	}
	if port != LocalPort {
		if got := forwarded(tb, group, port, allSources); !slices.Equal(got, w.fwd) {
			t.Errorf("at %v: Lookup forwards %v, want %v", now.Sub(t0), got, w.fwd)
		}
	}
	if w.timers != nil {
		got, gt, _ := timers(tb, group, port)
		for a, d := range w.timers {
			if got[a] != d {
				t.Errorf("at %v: timer of %v = %v, want %v", now.Sub(t0), a, got[a], d)
			}
		}
		if len(got) != len(w.timers) {
			t.Errorf("at %v: source timers %v, want %v", now.Sub(t0), got, w.timers)
		}
		if w.mode == "exclude" && gt != w.gt {
			t.Errorf("at %v: group timer %v, want %v", now.Sub(t0), gt, w.gt)
		}
	}
}

// TestV2ReportLeave is conformance case 1: a v2 report, then a leave.
func TestV2ReportLeave(t *testing.T) {
	for _, port := range []Port{peer1, LocalPort} {
		t.Run(portName(port), func(t *testing.T) {
			tb := newTestTable(Config{})
			if q := tb.Handle(port, v2msg(t, TypeV2Report, grp1), at(0), nil); q != nil {
				t.Errorf("report returned queries %v", q)
			}
			ps, ok := portState(tb, grp1, port, at(0))
			if !ok || ps.Mode != "exclude" || ps.Version != 2 || ps.Expires != gmi {
				t.Fatalf("after report: %+v, %v; want exclude, v2, expires in GMI", ps, ok)
			}
			dst, reg := tb.Lookup(grp1, s1, make([]Port, 0, 4))
			if port == LocalPort {
				// Registered (RFC 4541 section 2.1.2), but no peer gets a copy.
				if !reg || len(dst) != 0 {
					t.Errorf("Lookup = %v, %v; want no peer, registered, for a local membership", dst, reg)
				}
			} else if !reg || !slices.Equal(dst, []Port{peer1}) {
				t.Errorf("Lookup = %v, %v; want [peer1], registered", dst, reg)
			}

			q := tb.Handle(port, v2msg(t, TypeV2Leave, grp1), at(10*time.Second), nil)
			var wantQ []Query
			if port == LocalPort {
				wantQ = []Query{{Group: grp1}}
			}
			if !equalQueries(q, wantQ) {
				t.Errorf("leave returned queries %v, want %v", q, wantQ)
			}
			ps, _ = portState(tb, grp1, port, at(10*time.Second))
			if ps.Expires != lmqt {
				t.Errorf("group timer after leave = %v, want LMQT %v", ps.Expires, lmqt)
			}

			tb.Expire(at(10*time.Second + lmqt - time.Millisecond))
			if _, ok := portState(tb, grp1, port, at(10*time.Second+lmqt-time.Millisecond)); !ok {
				t.Errorf("membership gone before LMQT passed")
			}
			if dst, reg := tb.Lookup(grp1, s1, nil); port != LocalPort && (!reg || len(dst) != 1) {
				t.Errorf("before LMQT Lookup = %v, %v; want still forwarded", dst, reg)
			}

			tb.Expire(at(10*time.Second + lmqt))
			if groups, _ := tb.Snapshot(at(10*time.Second + lmqt)); len(groups) != 0 {
				t.Errorf("after LMQT Snapshot = %+v, want empty", groups)
			}
			if dst, reg := tb.Lookup(grp1, s1, nil); reg || len(dst) != 0 {
				t.Errorf("after LMQT Lookup = %v, %v; want nothing, unregistered", dst, reg)
			}
		})
	}
}

// transitionCase is one row of the router state tables of RFC 3376 section
// 6.4: a record applied at 10 s to a membership set up before.
type transitionCase struct {
	name  string
	rec   RecordSpec
	now   wantState // right after the record
	query []Query   // what Handle returns on the local port
	after wantState // after LMQT passed and Expire ran
}

const step = 10 * time.Second // when the record under test arrives

// runTransitions applies setup then each case's record, on a peer port and
// on the local port.
func runTransitions(t *testing.T, setup func(tb *Table, port Port), cases []transitionCase) {
	for _, tc := range cases {
		for _, port := range []Port{peer1, LocalPort} {
			t.Run(tc.name+"/"+portName(port), func(t *testing.T) {
				tb := newTestTable(Config{})
				setup(tb, port)
				q := tb.Handle(port, v3msg(t, tc.rec), at(step), nil)
				want := tc.query
				if port != LocalPort {
					want = nil // peers never get queries from us
				}
				if !equalQueries(q, want) {
					t.Errorf("Handle returned queries %v, want %v", q, want)
				}
				checkState(t, tb, grp1, port, at(step), tc.now)
				end := at(step + lmqt)
				tb.Expire(end)
				checkState(t, tb, grp1, port, end, tc.after)
			})
		}
	}
}

func addrs(a ...netip.Addr) []netip.Addr { return a }

// TestIncludeTransitions is conformance case 2: the six record types applied
// to INCLUDE(A), A = {s1, s2}, with B = {s2, s3}.
func TestIncludeTransitions(t *testing.T) {
	setup := func(tb *Table, port Port) {
		tb.Handle(port, v3msg(t, rec(ModeIsInclude, grp1, s1, s2)), at(0), nil)
	}
	b := []netip.Addr{s2, s3}
	unchanged := func(w wantState) wantState { w.timers = nil; return w }

	isIn := wantState{ // INCLUDE(A+B); (B)=GMI
		mode: "include", sources: addrs(s1, s2, s3), fwd: addrs(s1, s2, s3),
		timers: map[netip.Addr]time.Duration{s1: gmi, s2: step + gmi, s3: step + gmi},
	}
	isEx := wantState{ // EXCLUDE(A*B, B-A); (B-A)=0; Delete(A-B); GT=GMI
		mode: "exclude", sources: addrs(s2), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
		timers: map[netip.Addr]time.Duration{s2: gmi}, gt: step + gmi,
	}
	runTransitions(t, setup, []transitionCase{
		{name: "IS_IN", rec: rec(ModeIsInclude, grp1, b...), now: isIn, after: unchanged(isIn)},
		{name: "ALLOW", rec: rec(AllowNewSources, grp1, b...), now: isIn, after: unchanged(isIn)},
		{
			name: "BLOCK", // INCLUDE(A); Send Q(G,A*B)
			rec:  rec(BlockOldSources, grp1, b...),
			now: wantState{
				mode: "include", sources: addrs(s1, s2), fwd: addrs(s1, s2),
				timers: map[netip.Addr]time.Duration{s1: gmi, s2: step + lmqt},
			},
			query: []Query{{Group: grp1, Sources: addrs(s2)}},
			after: wantState{mode: "include", sources: addrs(s1), fwd: addrs(s1)},
		},
		{name: "IS_EX", rec: rec(ModeIsExclude, grp1, b...), now: isEx, after: unchanged(isEx)},
		{
			name: "TO_EX", // as IS_EX, and Send Q(G,A*B)
			rec:  rec(ChangeToExclude, grp1, b...),
			now: wantState{
				mode: "exclude", sources: addrs(s2), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
				timers: map[netip.Addr]time.Duration{s2: step + lmqt}, gt: step + gmi,
			},
			query: []Query{{Group: grp1, Sources: addrs(s2)}},
			after: wantState{mode: "exclude", blocked: addrs(s2, s3), fwd: addrs(s1, s4, s5, s6)},
		},
		{
			name: "TO_IN", // INCLUDE(A+B); (B)=GMI; Send Q(G,A-B)
			rec:  rec(ChangeToInclude, grp1, b...),
			now: wantState{
				mode: "include", sources: addrs(s1, s2, s3), fwd: addrs(s1, s2, s3),
				timers: map[netip.Addr]time.Duration{s1: step + lmqt, s2: step + gmi, s3: step + gmi},
			},
			query: []Query{{Group: grp1, Sources: addrs(s1)}},
			after: wantState{mode: "include", sources: addrs(s2, s3), fwd: addrs(s2, s3)},
		},
	})
}

// TestExcludeTransitions is conformance case 3: the six record types applied
// to EXCLUDE(X, Y), X = {s1, s2}, Y = {s3, s4}, with A = {s2, s4, s5}: s2 is
// in X, s4 in Y, s5 in neither.
func TestExcludeTransitions(t *testing.T) {
	setup := func(tb *Table, port Port) {
		tb.Handle(port, v3msg(t, rec(ModeIsExclude, grp1, s3, s4)), at(0), nil)               // GT = GMI
		tb.Handle(port, v3msg(t, rec(AllowNewSources, grp1, s1, s2)), at(5*time.Second), nil) // X timers 5 s + GMI
	}
	a := []netip.Addr{s2, s4, s5}
	unchanged := func(w wantState) wantState { w.timers = nil; return w }

	isIn := wantState{ // EXCLUDE(X+A, Y-A); (A)=GMI
		mode: "exclude", sources: addrs(s1, s2, s4, s5), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
		timers: map[netip.Addr]time.Duration{s1: 5*time.Second + gmi, s2: step + gmi, s4: step + gmi, s5: step + gmi},
		gt:     gmi,
	}
	isEx := wantState{ // EXCLUDE(A-Y, Y*A); (A-X-Y)=GMI; Delete(X-A); Delete(Y-A); GT=GMI
		mode: "exclude", sources: addrs(s2, s5), blocked: addrs(s4), fwd: addrs(s1, s2, s3, s5, s6),
		timers: map[netip.Addr]time.Duration{s2: 5*time.Second + gmi, s5: step + gmi},
		gt:     step + gmi,
	}
	runTransitions(t, setup, []transitionCase{
		{name: "IS_IN", rec: rec(ModeIsInclude, grp1, a...), now: isIn, after: unchanged(isIn)},
		{name: "ALLOW", rec: rec(AllowNewSources, grp1, a...), now: isIn, after: unchanged(isIn)},
		{
			name: "BLOCK", // EXCLUDE(X+(A-Y), Y); (A-X-Y)=GT; Send Q(G,A-Y)
			rec:  rec(BlockOldSources, grp1, a...),
			now: wantState{
				mode: "exclude", sources: addrs(s1, s2, s5), blocked: addrs(s3, s4), fwd: addrs(s1, s2, s5, s6),
				timers: map[netip.Addr]time.Duration{s1: 5*time.Second + gmi, s2: step + lmqt, s5: step + lmqt},
				gt:     gmi,
			},
			query: []Query{{Group: grp1, Sources: addrs(s2, s5)}},
			after: wantState{mode: "exclude", sources: addrs(s1), blocked: addrs(s2, s3, s4, s5), fwd: addrs(s1, s6)},
		},
		{name: "IS_EX", rec: rec(ModeIsExclude, grp1, a...), now: isEx, after: unchanged(isEx)},
		{
			name: "TO_EX", // as IS_EX but (A-X-Y)=GT, and Send Q(G,A-Y)
			rec:  rec(ChangeToExclude, grp1, a...),
			now: wantState{
				mode: "exclude", sources: addrs(s2, s5), blocked: addrs(s4), fwd: addrs(s1, s2, s3, s5, s6),
				timers: map[netip.Addr]time.Duration{s2: step + lmqt, s5: step + lmqt},
				gt:     step + gmi,
			},
			query: []Query{{Group: grp1, Sources: addrs(s2, s5)}},
			after: wantState{mode: "exclude", blocked: addrs(s2, s4, s5), fwd: addrs(s1, s3, s6)},
		},
		{
			name: "TO_IN", // EXCLUDE(X+A, Y-A); (A)=GMI; Send Q(G,X-A); Send Q(G)
			rec:  rec(ChangeToInclude, grp1, a...),
			now: wantState{
				mode: "exclude", sources: addrs(s1, s2, s4, s5), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
				timers: map[netip.Addr]time.Duration{s1: step + lmqt, s2: step + gmi, s4: step + gmi, s5: step + gmi},
				gt:     step + lmqt,
			},
			query: []Query{{Group: grp1, Sources: addrs(s1)}, {Group: grp1}},
			// The group timer ran out: INCLUDE with the sources still
			// running; s1 (lowered) and Y are gone.
			after: wantState{mode: "include", sources: addrs(s2, s4, s5), fwd: addrs(s2, s4, s5)},
		},
	})
}

// TestExcludeExpiry is conformance case 4: timers running out in EXCLUDE.
func TestExcludeExpiry(t *testing.T) {
	t.Run("group timer falls back to INCLUDE", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v3msg(t, rec(ModeIsExclude, grp1, s3)), at(0), nil)                 // Y = {s3}, GT = GMI
		tb.Handle(peer1, v3msg(t, rec(AllowNewSources, grp1, s1)), at(100*time.Second), nil) // s1 until 100 s + GMI
		tb.Handle(peer1, v3msg(t, rec(AllowNewSources, grp1, s2)), at(0), nil)               // s2 until GMI
		checkState(t, tb, grp1, peer1, at(100*time.Second), wantState{
			mode: "exclude", sources: addrs(s1, s2), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
		})
		tb.Expire(at(gmi - time.Millisecond))
		checkState(t, tb, grp1, peer1, at(gmi-time.Millisecond), wantState{
			mode: "exclude", sources: addrs(s1, s2), blocked: addrs(s3), fwd: addrs(s1, s2, s4, s5, s6),
		})
		// GT and s2 run out together: INCLUDE(s1), Y forgotten.
		tb.Expire(at(gmi))
		checkState(t, tb, grp1, peer1, at(gmi), wantState{
			mode: "include", sources: addrs(s1), fwd: addrs(s1),
			timers: map[netip.Addr]time.Duration{s1: 100*time.Second + gmi},
		})
		tb.Expire(at(100*time.Second + gmi))
		checkState(t, tb, grp1, peer1, at(100*time.Second+gmi), wantState{})
		if _, reg := tb.Lookup(grp1, s1, nil); reg {
			t.Errorf("group still registered after every timer ran out")
		}
	})
	t.Run("group timer with no running source deletes", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v3msg(t, rec(ModeIsExclude, grp1, s3)), at(0), nil)
		tb.Expire(at(gmi))
		checkState(t, tb, grp1, peer1, at(gmi), wantState{})
	})
	t.Run("source timer blocks but keeps the source", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v3msg(t, rec(ModeIsExclude, grp1)), at(0), nil)
		tb.Handle(peer1, v3msg(t, rec(AllowNewSources, grp1, s1, s2)), at(0), nil)
		tb.Handle(peer1, v3msg(t, rec(BlockOldSources, grp1, s2)), at(step), nil)
		tb.Expire(at(step + lmqt))
		checkState(t, tb, grp1, peer1, at(step+lmqt), wantState{
			mode: "exclude", sources: addrs(s1), blocked: addrs(s2), fwd: addrs(s1, s3, s4, s5, s6),
		})
	})
}

// TestBlockInclude is conformance case 5: BLOCK in INCLUDE prunes a source
// only after the last member query time.
func TestBlockInclude(t *testing.T) {
	for _, port := range []Port{peer1, LocalPort} {
		t.Run(portName(port), func(t *testing.T) {
			tb := newTestTable(Config{})
			tb.Handle(port, v3msg(t, rec(ModeIsInclude, grp1, s1, s2)), at(0), nil)
			q := tb.Handle(port, v3msg(t, rec(BlockOldSources, grp1, s2, s5)), at(step), nil)
			var want []Query
			if port == LocalPort {
				want = []Query{{Group: grp1, Sources: addrs(s2)}} // Q(G, A*B): s5 was never included
			}
			if !equalQueries(q, want) {
				t.Errorf("Handle(BLOCK) = %v, want %v", q, want)
			}
			before := at(step + lmqt - time.Millisecond)
			tb.Expire(before)
			checkState(t, tb, grp1, port, before, wantState{
				mode: "include", sources: addrs(s1, s2), fwd: addrs(s1, s2),
				timers: map[netip.Addr]time.Duration{s1: gmi, s2: step + lmqt},
			})
			tb.Expire(at(step + lmqt))
			checkState(t, tb, grp1, port, at(step+lmqt), wantState{
				mode: "include", sources: addrs(s1), fwd: addrs(s1),
			})
		})
	}
	t.Run("reported again within LMQT", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, grp1, s1, s2)), at(0), nil)
		tb.Handle(peer1, v3msg(t, rec(BlockOldSources, grp1, s2)), at(step), nil)
		// Another host behind the peer answers the Q(G,S).
		tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, grp1, s2)), at(step+time.Second), nil)
		tb.Expire(at(step + lmqt))
		checkState(t, tb, grp1, peer1, at(step+lmqt), wantState{
			mode: "include", sources: addrs(s1, s2), fwd: addrs(s1, s2),
			timers: map[netip.Addr]time.Duration{s1: gmi, s2: step + time.Second + gmi},
		})
	})
}

// TestMembershipExpiry is conformance case 6: a membership lives GMI after
// its last report.
func TestMembershipExpiry(t *testing.T) {
	cases := []struct {
		name   string
		report func(tb testing.TB) Message
	}{
		{"v1", func(tb testing.TB) Message { return v2msg(tb, TypeV1Report, grp1) }},
		{"v2", func(tb testing.TB) Message { return v2msg(tb, TypeV2Report, grp1) }},
		{"v3 EXCLUDE", func(tb testing.TB) Message { return v3msg(tb, rec(ModeIsExclude, grp1)) }},
		{"v3 INCLUDE", func(tb testing.TB) Message { return v3msg(tb, rec(ModeIsInclude, grp1, s1)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestTable(Config{})
			tb.Handle(peer1, tc.report(t), at(0), nil)
			tb.Expire(at(gmi - time.Millisecond))
			if _, reg := tb.Lookup(grp1, s1, nil); !reg {
				t.Fatalf("gone before GMI")
			}
			tb.Expire(at(gmi))
			if dst, reg := tb.Lookup(grp1, s1, nil); reg || len(dst) != 0 {
				t.Fatalf("after GMI Lookup = %v, %v; want gone", dst, reg)
			}

			// A report before GMI refreshes it.
			tb = newTestTable(Config{})
			tb.Handle(peer1, tc.report(t), at(0), nil)
			tb.Handle(peer1, tc.report(t), at(gmi-time.Second), nil)
			tb.Expire(at(gmi))
			if dst, reg := tb.Lookup(grp1, s1, nil); !reg || !slices.Equal(dst, []Port{peer1}) {
				t.Fatalf("refreshed membership: Lookup = %v, %v; want [peer1]", dst, reg)
			}
			if ps, _ := portState(tb, grp1, peer1, at(gmi)); ps.Expires != gmi-time.Second {
				t.Errorf("refreshed membership expires in %v, want %v", ps.Expires, gmi-time.Second)
			}
			tb.Expire(at(2*gmi - time.Second))
			if _, reg := tb.Lookup(grp1, s1, nil); reg {
				t.Errorf("refreshed membership outlived GMI after the last report")
			}
		})
	}
}

// TestCompatibility is conformance case 7: the group compatibility modes of
// RFC 3376 section 7.3.2.
func TestCompatibility(t *testing.T) {
	t.Run("v2 host: BLOCK ignored", func(t *testing.T) {
		for _, older := range []bool{false, true} {
			tb := newTestTable(Config{})
			if older {
				tb.Handle(LocalPort, v2msg(t, TypeV2Report, grp1), at(0), nil)
			} else {
				tb.Handle(LocalPort, v3msg(t, rec(ModeIsExclude, grp1)), at(0), nil)
			}
			tb.Handle(LocalPort, v3msg(t, rec(AllowNewSources, grp1, s1)), at(time.Second), nil)
			q := tb.Handle(LocalPort, v3msg(t, rec(BlockOldSources, grp1, s1, s2)), at(step), nil)
			srcs, _, _ := timers(tb, grp1, LocalPort)
			if older {
				if q != nil || srcs[s1] != time.Second+gmi || len(srcs) != 1 {
					t.Errorf("v2 mode: BLOCK gave queries %v, timers %v; want ignored", q, srcs)
				}
			} else if len(q) != 1 || srcs[s1] != step+lmqt || srcs[s2] != step+lmqt {
				t.Errorf("v3 mode: BLOCK gave queries %v, timers %v; want Q(G,{s1,s2}) and LMQT", q, srcs)
			}
		}
	})
	t.Run("v2 host: TO_EX(x) is TO_EX({}) in EXCLUDE", func(t *testing.T) {
		for _, port := range []Port{peer1, LocalPort} {
			tb := newTestTable(Config{})
			tb.Handle(port, v2msg(t, TypeV2Report, grp1), at(0), nil)
			tb.Handle(port, v3msg(t, rec(AllowNewSources, grp1, s1)), at(time.Second), nil)
			// v3 would give EXCLUDE({s2, s3}, {}), delete s1 and ask Q(G,{s2,s3}).
			if q := tb.Handle(port, v3msg(t, rec(ChangeToExclude, grp1, s2, s3)), at(step), nil); q != nil {
				t.Errorf("%s: queries %v, want none", portName(port), q)
			}
			checkState(t, tb, grp1, port, at(step), wantState{
				mode: "exclude", fwd: allSources, timers: map[netip.Addr]time.Duration{}, gt: step + gmi,
			})
		}
	})
	t.Run("v2 host: TO_EX(x) is TO_EX({}) in INCLUDE", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v2msg(t, TypeV2Report, grp1), at(0), nil)
		tb.Handle(peer1, v3msg(t, rec(ChangeToInclude, grp1, s1)), at(time.Second), nil) // GT = LMQT
		tb.Expire(at(time.Second + lmqt))
		checkState(t, tb, grp1, peer1, at(time.Second+lmqt), wantState{
			mode: "include", sources: addrs(s1), fwd: addrs(s1),
		})
		if ps, _ := portState(tb, grp1, peer1, at(step)); ps.Version != 2 {
			t.Fatalf("version %d, want 2", ps.Version)
		}
		tb.Handle(peer1, v3msg(t, rec(ChangeToExclude, grp1, s1, s3)), at(step), nil)
		// v3 would give EXCLUDE({s1}, {s3}) and stop s3.
		checkState(t, tb, grp1, peer1, at(step), wantState{mode: "exclude", fwd: allSources})
	})
	t.Run("v2 host: leave honoured", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v2msg(t, TypeV2Report, grp1), at(0), nil)
		tb.Handle(peer1, v2msg(t, TypeV2Leave, grp1), at(step), nil)
		if ps, _ := portState(tb, grp1, peer1, at(step)); ps.Expires != lmqt {
			t.Errorf("group timer %v after leave, want LMQT", ps.Expires)
		}
	})
	for _, tc := range []struct {
		name string
		msg  func(tb testing.TB) Message
	}{
		{"v1 host: v2 leave ignored", func(tb testing.TB) Message { return v2msg(tb, TypeV2Leave, grp1) }},
		{"v1 host: TO_IN ignored", func(tb testing.TB) Message { return v3msg(tb, rec(ChangeToInclude, grp1)) }},
		{"v1 host: BLOCK ignored", func(tb testing.TB) Message { return v3msg(tb, rec(BlockOldSources, grp1, s1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestTable(Config{})
			tb.Handle(LocalPort, v2msg(t, TypeV1Report, grp1), at(0), nil)
			tb.Handle(LocalPort, v2msg(t, TypeV2Report, grp1), at(time.Second), nil) // v1 still wins
			if q := tb.Handle(LocalPort, tc.msg(t), at(step), nil); q != nil {
				t.Errorf("queries %v, want none", q)
			}
			ps, _ := portState(tb, grp1, LocalPort, at(step))
			if ps.Version != 1 || ps.Expires != gmi+time.Second-step || len(ps.Sources)+len(ps.Blocked) != 0 {
				t.Errorf("state %+v, want untouched v1 EXCLUDE{} expiring GMI after the last report", ps)
			}
			tb.Expire(at(step + lmqt))
			if _, ok := portState(tb, grp1, LocalPort, at(step+lmqt)); !ok {
				t.Errorf("membership gone after LMQT")
			}
		})
	}
	t.Run("reverts to v3 after the older host present interval", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(LocalPort, v2msg(t, TypeV1Report, grp1), at(0), nil)
		tb.Handle(LocalPort, v2msg(t, TypeV2Report, grp1), at(60*time.Second), nil)
		tb.Handle(LocalPort, v3msg(t, rec(ModeIsExclude, grp1)), at(100*time.Second), nil)
		tb.Handle(LocalPort, v3msg(t, rec(ModeIsExclude, grp1)), at(300*time.Second), nil)
		for _, c := range []struct {
			at   time.Duration
			want int
		}{
			{0, 1}, {gmi - time.Millisecond, 1}, {gmi, 2},
			{60*time.Second + gmi - time.Millisecond, 2}, {60*time.Second + gmi, 3},
		} {
			tb.Expire(at(c.at))
			if ps, ok := portState(tb, grp1, LocalPort, at(c.at)); !ok || ps.Version != c.want {
				t.Errorf("at %v: version %d (present %v), want %d", c.at, ps.Version, ok, c.want)
			}
		}
		// Back in v3: BLOCK counts again.
		now := at(60*time.Second + gmi)
		tb.Handle(LocalPort, v3msg(t, rec(AllowNewSources, grp1, s1)), now, nil)
		q := tb.Handle(LocalPort, v3msg(t, rec(BlockOldSources, grp1, s1)), now, nil)
		if !equalQueries(q, []Query{{Group: grp1, Sources: addrs(s1)}}) {
			t.Errorf("v3 BLOCK gave %v, want Q(G,{s1})", q)
		}
	})
}

// TestCaps is conformance case 8: bounds and counted refusals.
func TestCaps(t *testing.T) {
	refused := func(global, port, sources, record uint64) map[string]uint64 {
		return map[string]uint64{"igmp_cap_global": global, "igmp_cap_port": port, "igmp_cap_sources": sources, "igmp_record": record,
			"mld_cap_global": 0, "mld_cap_port": 0, "mld_cap_sources": 0, "mld_record": 0}
	}
	checkRefused := func(t *testing.T, tb *Table, want map[string]uint64) {
		t.Helper()
		got := tb.Refused()
		if len(got) != len(want) {
			t.Errorf("Refused() = %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("Refused()[%s] = %d, want %d", k, got[k], v)
			}
		}
	}
	members := func(tb *Table, port Port) []netip.Addr {
		var out []netip.Addr
		groups, _ := tb.Snapshot(t0)
		for _, g := range groups {
			for _, p := range g.Ports {
				if p.Port == port {
					out = append(out, g.Group)
				}
			}
		}
		return out
	}

	t.Run("groups", func(t *testing.T) {
		tb := newTestTable(Config{MaxGroups: 3, MaxGroupsPerPort: 2})
		report := func(port Port, g netip.Addr, d time.Duration) { tb.Handle(port, v2msg(t, TypeV2Report, g), at(d), nil) }
		report(peer1, grp1, 0)
		report(peer1, grp2, 0)
		report(peer1, grp3, 0) // over the port cap
		checkRefused(t, tb, refused(0, 1, 0, 0))
		report(peer2, grp3, 0) // another port is not affected
		report(peer2, grp4, 0) // over the global cap (3)
		checkRefused(t, tb, refused(1, 1, 0, 0))
		if got := members(tb, peer1); !slices.Equal(got, addrs(grp1, grp2)) {
			t.Errorf("peer1 groups %v, want [grp1 grp2]", got)
		}
		if got := members(tb, peer2); !slices.Equal(got, addrs(grp3)) {
			t.Errorf("peer2 groups %v, want [grp3]", got)
		}
		if _, reg := tb.Lookup(grp4, s1, nil); reg {
			t.Errorf("refused group is registered")
		}

		// Existing memberships still refresh, also in a report that has
		// a refused record.
		tb.Handle(peer1, v3msg(t, rec(ModeIsExclude, grp1), rec(ModeIsExclude, grp3)), at(100*time.Second), nil)
		report(peer2, grp3, 100*time.Second)
		checkRefused(t, tb, refused(2, 1, 0, 0)) // grp3 on peer1 meets the global cap first
		for _, m := range []struct {
			port Port
			g    netip.Addr
		}{{peer1, grp1}, {peer2, grp3}} {
			if ps, _ := portState(tb, m.g, m.port, at(100*time.Second)); ps.Expires != gmi {
				t.Errorf("%v %v expires in %v, want refreshed to GMI", m.port, m.g, ps.Expires)
			}
		}

		// Room comes back when memberships expire.
		tb.Expire(at(gmi))
		report(peer1, grp4, gmi)
		if got := members(tb, peer1); !slices.Equal(got, addrs(grp1, grp4)) {
			t.Errorf("peer1 groups %v after grp2 expired, want [grp1 grp4]", got)
		}
		checkRefused(t, tb, refused(2, 1, 0, 0))
	})
	t.Run("sources", func(t *testing.T) {
		tb := newTestTable(Config{MaxSources: 4})
		tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, grp1, s1, s2, s3, s4, s5)), at(0), nil)
		checkRefused(t, tb, refused(0, 0, 1, 0))
		checkState(t, tb, grp1, peer1, at(0), wantState{})

		tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, grp1, s1, s2, s3, s4)), at(0), nil)
		checkState(t, tb, grp1, peer1, at(0), wantState{
			mode: "include", sources: addrs(s1, s2, s3, s4), fwd: addrs(s1, s2, s3, s4),
		})
		// Growing past the bound falls back to EXCLUDE {}: every source.
		tb.Handle(peer1, v3msg(t, rec(AllowNewSources, grp1, s5)), at(0), nil)
		checkRefused(t, tb, refused(0, 0, 2, 0))
		checkState(t, tb, grp1, peer1, at(0), wantState{mode: "exclude", fwd: allSources})
	})
	t.Run("unknown record type", func(t *testing.T) {
		tb := newTestTable(Config{})
		tb.Handle(peer1, v3msg(t, rec(7, grp1, s1), rec(ModeIsExclude, grp2), rec(0, grp3)), at(0), nil)
		checkRefused(t, tb, refused(0, 0, 0, 2))
		if got := members(tb, peer1); !slices.Equal(got, addrs(grp2)) {
			t.Errorf("groups %v, want [grp2]: the known record still applies", got)
		}
	})
}

// TestRouterPorts is conformance case 9: ports that carry queries from a
// real querier get every group.
func TestRouterPorts(t *testing.T) {
	tb := newTestTable(Config{})
	tb.Handle(peer1, v2msg(t, TypeV2Report, grp1), at(0), nil)
	tb.Handle(peer3, v2msg(t, TypeV2Report, grp1), at(0), nil)
	tb.HeardQuery(peer2, mustAddr("198.19.0.1"), at(0))
	tb.HeardQuery(peer3, mustAddr("198.19.0.3"), at(0))
	tb.HeardQuery(peer1, netip.IPv4Unspecified(), at(0)) // a snooping querier: not a router
	tb.HeardQuery(LocalPort, mustAddr("198.19.0.9"), at(0))

	cases := []struct {
		group netip.Addr
		ports []Port
		reg   bool
	}{
		{grp1, []Port{peer1, peer3, peer2}, true}, // members, then routers not already listed
		{grp2, []Port{peer2, peer3}, false},       // unregistered: routers only
	}
	for _, c := range cases {
		dst, reg := tb.Lookup(c.group, s1, make([]Port, 0, 8))
		if reg != c.reg || !slices.Equal(dst, c.ports) {
			t.Errorf("Lookup(%v) = %v, %v; want %v, %v", c.group, dst, reg, c.ports, c.reg)
		}
	}
	if _, routers := tb.Snapshot(at(0)); !slices.Equal(routers, []Port{peer2, peer3}) {
		t.Errorf("Snapshot routers = %v, want [peer2 peer3]", routers)
	}

	// peer3 keeps querying; peer2 falls silent.
	tb.HeardQuery(peer3, mustAddr("198.19.0.3"), at(100*time.Second))
	tb.Expire(at(oqpi - time.Millisecond))
	if dst, _ := tb.Lookup(grp2, s1, nil); !slices.Equal(dst, []Port{peer2, peer3}) {
		t.Errorf("before OQPI Lookup = %v, want [peer2 peer3]", dst)
	}
	tb.Expire(at(oqpi))
	if dst, _ := tb.Lookup(grp2, s1, nil); !slices.Equal(dst, []Port{peer3}) {
		t.Errorf("after OQPI Lookup = %v, want [peer3]", dst)
	}
	tb.Expire(at(100*time.Second + oqpi))
	if dst, _ := tb.Lookup(grp2, s1, nil); len(dst) != 0 {
		t.Errorf("after every OQPI Lookup = %v, want none", dst)
	}
}

// TestLocalMemberRegisters: a group only the local host joined is
// registered (RFC 4541 section 2.1.2: any host on any port), so its traffic
// goes to the router ports only; it is not flooded as unregistered. When
// the local host leaves, the group is unregistered again.
func TestLocalMemberRegisters(t *testing.T) {
	tb := newTestTable(Config{})
	if dst, reg := tb.Lookup(grp1, s1, nil); reg || len(dst) != 0 {
		t.Fatalf("before any report Lookup = %v, %v; want nothing, unregistered", dst, reg)
	}
	tb.Handle(LocalPort, v2msg(t, TypeV2Report, grp1), at(0), nil)
	if dst, reg := tb.Lookup(grp1, s1, nil); !reg || len(dst) != 0 {
		t.Errorf("local member only: Lookup = %v, %v; want no peer, registered", dst, reg)
	}
	tb.HeardQuery(peer2, mustAddr("198.19.0.1"), at(0))
	if dst, reg := tb.Lookup(grp1, s1, nil); !reg || !slices.Equal(dst, []Port{peer2}) {
		t.Errorf("local member and a router peer: Lookup = %v, %v; want [peer2], registered", dst, reg)
	}
	// A v3 INCLUDE of other sources still registers the group for every source.
	tb.Handle(LocalPort, v3msg(t, rec(ModeIsInclude, grp2, s2)), at(0), nil)
	if _, reg := tb.Lookup(grp2, s1, nil); !reg {
		t.Errorf("local INCLUDE {s2}: traffic from s1 is unregistered; want registered")
	}
	tb.Handle(LocalPort, v2msg(t, TypeV2Leave, grp1), at(time.Second), nil)
	tb.Expire(at(time.Second + lmqt))
	if _, reg := tb.Lookup(grp1, s1, nil); reg {
		t.Errorf("after the local host left and LMQT passed, the group is still registered")
	}
}

// TestRemovePort is conformance case 10.
func TestRemovePort(t *testing.T) {
	tb := newTestTable(Config{MaxGroups: 4, MaxGroupsPerPort: 3})
	for _, g := range []netip.Addr{grp1, grp2, grp3} {
		tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, g, s1)), at(0), nil)
	}
	tb.Handle(peer2, v2msg(t, TypeV2Report, grp1), at(0), nil)
	tb.HeardQuery(peer1, mustAddr("198.19.0.1"), at(0))

	tb.RemovePort(peer1)
	groups, routers := tb.Snapshot(at(0))
	if len(groups) != 1 || groups[0].Group != grp1 || len(groups[0].Ports) != 1 || groups[0].Ports[0].Port != peer2 {
		t.Errorf("Snapshot groups = %+v, want only grp1 on peer2", groups)
	}
	if len(routers) != 0 {
		t.Errorf("Snapshot routers = %v, want none", routers)
	}
	for _, g := range []netip.Addr{grp1, grp2, grp3} {
		dst, _ := tb.Lookup(g, s1, nil)
		if slices.Contains(dst, peer1) {
			t.Errorf("Lookup(%v) = %v still has the removed port", g, dst)
		}
	}
	// Its share of the caps is free again.
	for _, g := range []netip.Addr{grp2, grp3, grp4} {
		tb.Handle(peer1, v2msg(t, TypeV2Report, g), at(time.Second), nil)
	}
	if r := tb.Refused(); r["igmp_cap_port"] != 0 || r["igmp_cap_global"] != 0 {
		t.Errorf("Refused() = %v after RemovePort, want nothing refused", r)
	}
	tb.RemovePort(peer3) // unknown: no effect
}

// TestLinkLocalGroups is conformance case 11: 224.0.0.0/24 is never stored.
func TestLinkLocalGroups(t *testing.T) {
	tb := newTestTable(Config{})
	ll := []netip.Addr{mustAddr("224.0.0.251"), mustAddr("224.0.0.22"), mustAddr("224.0.0.1")}
	for _, g := range ll {
		for _, typ := range []uint8{TypeV1Report, TypeV2Report, TypeV2Leave} {
			tb.Handle(peer1, v2msg(t, typ, g), at(0), nil)
		}
	}
	q := tb.Handle(LocalPort, v3msg(t, rec(ChangeToExclude, ll[0]), rec(ModeIsInclude, ll[1], s1)), at(0), nil)
	if q != nil {
		t.Errorf("queries %v for link-local groups", q)
	}
	tb.Handle(peer1, v2msg(t, TypeV2Report, mustAddr("224.0.1.1")), at(0), nil) // not link-local
	groups, _ := tb.Snapshot(at(0))
	if len(groups) != 1 || groups[0].Group != mustAddr("224.0.1.1") {
		t.Errorf("Snapshot = %+v, want only 224.0.1.1", groups)
	}
	for _, g := range ll {
		if dst, reg := tb.Lookup(g, s1, nil); reg || len(dst) != 0 {
			t.Errorf("Lookup(%v) = %v, %v; want unregistered", g, dst, reg)
		}
	}
}

// TestHandleAllocs checks that Handle allocates nothing in steady state:
// the reports that answer every general query, for a group and port the
// table already knows, from a peer and from the local host; and a local
// leave whose group-specific query fits in the caller's buffer.
func TestHandleAllocs(t *testing.T) {
	v2 := v2msg(t, TypeV2Report, grp1)
	v3 := v3msg(t,
		rec(ModeIsInclude, grp2, s1, s2, s3),
		rec(AllowNewSources, grp2, s1),
		rec(ModeIsExclude, grp3, s4, s5))
	leave := v2msg(t, TypeV2Leave, grp1)
	for _, port := range []Port{peer1, LocalPort} {
		t.Run(portName(port), func(t *testing.T) {
			tb := newTestTable(Config{})
			now := at(0)
			dst := make([]Query, 0, 4)
			// Warm up: the first reports create the state and publish it.
			for range 2 {
				tb.Handle(port, v2, now, nil)
				tb.Handle(port, v3, now, nil)
			}
			for _, c := range []struct {
				name string
				msg  Message
			}{{"v2 report", v2}, {"v3 report with sources", v3}} {
				var q []Query
				a := testing.AllocsPerRun(1000, func() { q = tb.Handle(port, c.msg, now, dst[:0]) })
				t.Logf("%s: %v allocations per message", c.name, a)
				if a != 0 {
					t.Errorf("%s: Handle allocates %v times per message, want 0", c.name, a)
				}
				if len(q) != 0 {
					t.Errorf("%s: queries %v", c.name, q)
				}
			}
			if _, ok := portState(tb, grp3, port, now); !ok {
				t.Fatal("the v3 report left no state")
			}
			if port != LocalPort {
				return
			}
			var q []Query
			a := testing.AllocsPerRun(1000, func() {
				tb.Handle(port, v2, now, nil)
				q = tb.Handle(port, leave, now, dst[:0])
			})
			t.Logf("v2 report and leave: %v allocations per pair", a)
			if a != 0 {
				t.Errorf("a local v2 report and leave allocate %v times, want 0", a)
			}
			if len(q) != 1 || q[0].Group != grp1 || q[0].Sources != nil || &q[0] != &dst[:1][0] {
				t.Errorf("leave gave %v, want Q(%v) in dst", q, grp1)
			}
		})
	}
}

// TestLookupAllocs is conformance case 12, first half.
func TestLookupAllocs(t *testing.T) {
	tb := newTestTable(Config{})
	tb.Handle(peer1, v3msg(t, rec(ModeIsInclude, grp1, s1, s2)), at(0), nil)
	tb.Handle(peer2, v3msg(t, rec(ModeIsExclude, grp1, s3)), at(0), nil)
	tb.HeardQuery(peer3, mustAddr("198.19.0.1"), at(0))
	dst := make([]Port, 0, 8)
	var n int
	allocs := testing.AllocsPerRun(1000, func() {
		for _, g := range []netip.Addr{grp1, grp2} {
			for _, s := range allSources {
				out, _ := tb.Lookup(g, s, dst[:0])
				n += len(out)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run, want 0", allocs)
	}
	if n == 0 {
		t.Fatal("Lookup returned nothing")
	}
}

// TestConcurrentLookup is conformance case 12, second half: Lookup runs
// while the table changes. Run it with -race.
func TestConcurrentLookup(t *testing.T) {
	tb := newTestTable(Config{})
	groups := []netip.Addr{grp1, grp2, grp3, grp4}
	peers := []Port{peer1, peer2, peer3}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lookups atomic.Uint64
	for r := range 2 {
		wg.Go(func() {
			dst := make([]Port, 0, 8)
			for i := r; !stop.Load() || i < 1000; i++ {
				out, _ := tb.Lookup(groups[i%len(groups)], allSources[i%len(allSources)], dst[:0])
				for j, p := range out {
					if !p.IsValid() || slices.Contains(out[:j], p) {
						t.Errorf("Lookup returned %v", out)
						return
					}
				}
				lookups.Add(1)
			}
		})
	}
	msgs := []Message{
		v3msg(t, rec(ModeIsInclude, grp1, s1, s2), rec(ModeIsExclude, grp2, s3)),
		v3msg(t, rec(BlockOldSources, grp1, s1), rec(ChangeToInclude, grp2, s3)),
		v3msg(t, rec(ChangeToExclude, grp3, s4), rec(AllowNewSources, grp4, s5, s6)),
		v2msg(t, TypeV2Report, grp4),
		v2msg(t, TypeV2Leave, grp3),
	}
	now := t0
	for i := range 3000 {
		now = now.Add(100 * time.Millisecond)
		port := peers[i%len(peers)]
		tb.Handle(port, msgs[i%len(msgs)], now, nil)
		tb.Handle(LocalPort, msgs[(i+1)%len(msgs)], now, nil)
		if i%7 == 0 {
			tb.HeardQuery(port, mustAddr("198.19.0.1"), now)
		}
		if i%50 == 0 {
			tb.Expire(now.Add(time.Duration(i%3) * gmi))
		}
		if i%301 == 0 {
			tb.RemovePort(port)
		}
		tb.Expire(now)
	}
	stop.Store(true)
	wg.Wait()
	if lookups.Load() == 0 {
		t.Fatal("no lookups ran")
	}
}

// TestExpireSchedule checks that Expire remembers when the next timer is
// due, so that calling it on every tick costs nothing until then.
func TestExpireSchedule(t *testing.T) {
	tb := newTestTable(Config{})
	tb.Handle(peer1, v2msg(t, TypeV1Report, grp1), at(0), nil)
	tb.Handle(peer2, v3msg(t, rec(ModeIsInclude, grp2, s1)), at(step), nil)
	tb.HeardQuery(peer3, mustAddr("198.19.0.1"), at(0))
	nextAfter := func(d time.Duration) time.Duration {
		tb.Expire(at(d))
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return tb.next.Sub(t0)
	}
	for _, c := range []struct{ expire, next time.Duration }{
		{time.Second, oqpi}, // the router port
		{200 * time.Second, oqpi},
		{oqpi, gmi},       // grp1's group timer and v1 host timer
		{gmi, step + gmi}, // grp2's source timer
	} {
		if got := nextAfter(c.expire); got != c.next {
			t.Errorf("after Expire at %v the next timer is at %v, want %v", c.expire, got, c.next)
		}
	}
}

// TestBadChecksumNeverReachesTable is conformance case 14: the pipeline
// FromFrame → Parse refuses a report whose checksum does not verify.
func TestBadChecksumNeverReachesTable(t *testing.T) {
	reports := map[string][]byte{}
	b := make([]byte, HeaderLen)
	PutReportV2(b, TypeV2Report, grp1)
	reports["v2"] = slices.Clone(b)
	specs := []RecordSpec{rec(ModeIsExclude, grp1)}
	b = make([]byte, ReportV3Len(specs...))
	PutReportV3(b, specs...)
	reports["v3"] = b

	for name, report := range reports {
		t.Run(name, func(t *testing.T) {
			for _, corrupt := range []bool{false, true} {
				frame := make([]byte, FrameOverhead+len(report))
				n := BuildQueryFrame(frame, testMAC, mustAddr("198.19.0.7"), mustAddr("224.0.0.22"), report)
				frame = frame[:n]
				if corrupt {
					frame[FrameOverhead+2] ^= 0x40 // the IGMP checksum, not the IP one
				}
				tb := newTestTable(Config{})
				_, _, igmp, ok := FromFrame(frame)
				if !ok {
					t.Fatalf("FromFrame refused the frame (corrupt %v)", corrupt)
				}
				m, reason := Parse(igmp)
				if corrupt != (reason == BadChecksum) || (!corrupt && reason != OK) {
					t.Fatalf("Parse = %v (corrupt %v)", reason, corrupt)
				}
				if reason == OK {
					tb.Handle(peer1, m, at(0), nil)
				}
				if _, reg := tb.Lookup(grp1, s1, nil); reg != !corrupt {
					t.Errorf("registered = %v with corrupt = %v", reg, corrupt)
				}
			}
		})
	}
}

// BenchmarkLookup looks up traffic in a table of 1,000 groups, each with 100
// member peers: three in four in EXCLUDE with one blocked source, one in
// four in INCLUDE with four sources. Half the lookups hit a listed source.
func BenchmarkLookup(b *testing.B) {
	const nGroups, nPorts = 1000, 100
	tb := newTestTable(Config{MaxGroups: nGroups * nPorts, MaxGroupsPerPort: nGroups})
	groups := make([]netip.Addr, nGroups)
	for i := range groups {
		groups[i] = netip.AddrFrom4([4]byte{239, 2, byte(i >> 8), byte(i)})
	}
	// Handle would publish a group's view after each of the 100,000
	// reports; apply the records and publish each group once instead.
	tb.mu.Lock()
	for p := range nPorts {
		port := netip.AddrFrom4([4]byte{198, 18, 1, byte(p + 1)})
		for _, g := range groups {
			if p%4 == 0 {
				tb.apply(port, 3, ModeIsInclude, g, []netip.Addr{s1, s2, s3, s4}, t0, nil)
			} else {
				tb.apply(port, 3, ModeIsExclude, g, []netip.Addr{s4}, t0, nil)
			}
		}
	}
	for _, g := range groups {
		tb.rebuildLocked(g)
	}
	tb.mu.Unlock()
	if got, want := tb.Refused(), newTestTable(Config{}).Refused(); !maps.Equal(got, want) {
		b.Fatalf("Refused() = %v after setup", got)
	}
	srcs := []netip.Addr{s1, s4, s5, s6}
	dst := make([]Port, 0, nPorts)
	var copies int
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		out, _ := tb.Lookup(groups[i%nGroups], srcs[i%len(srcs)], dst[:0])
		copies += len(out)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	b.ReportMetric(float64(copies)/float64(b.N), "ports/lookup")
	if copies == 0 {
		b.Fatal("no ports returned")
	}
}
