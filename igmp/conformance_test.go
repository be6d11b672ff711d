package igmp

// The conformance suite: the scenarios of two public snooping test suites,
// ported to the table with injected reports and a fake clock.
//
//   - The Linux bridge selftest
//     tools/testing/selftests/net/forwarding/bridge_igmp.sh (torvalds/linux):
//     all 14 tests, with its addresses (group 239.10.10.10, sources
//     192.0.2.x, "other source" 192.0.2.100). Port brH1 (peer1) stands for
//     the bridge port swp1 behind which h1 reports; brH2 (peer2) for swp2.
//     Where the selftest sleeps, the fake clock moves; where it changes the
//     bridge's intervals, the scenario's Config does.
//   - Open vSwitch's tests/mcast-snooping.at (openvswitch/ovs): the
//     table-level parts (the protocol version column, the IGMPv1
//     compatibility rules, a destroyed port's entries). The parts that need
//     frames and peers are in replicate/conformance_test.go.
//
// The expected values come from the tables of RFC 3376 sections 6.3, 6.4.1,
// 6.4.2, 6.5, 6.6.3 and 7.3.2 and from the selftests' checks, worked out by
// hand in the comments, not from what the code does. Where meshcast
// deliberately differs from the bridge or from OVS, the tests check the RFC
// and say so.

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Addresses of bridge_igmp.sh.
var (
	brGroup = mustAddr("239.10.10.10")

	br1     = mustAddr("192.0.2.1")
	br2     = mustAddr("192.0.2.2")
	br3     = mustAddr("192.0.2.3")
	br10    = mustAddr("192.0.2.10")
	br11    = mustAddr("192.0.2.11")
	br12    = mustAddr("192.0.2.12")
	br20    = mustAddr("192.0.2.20")
	br21    = mustAddr("192.0.2.21")
	br30    = mustAddr("192.0.2.30")
	brOther = mustAddr("192.0.2.100") // check_sg_fwding's "other source"

	// brSources are every source the selftest names, in address order:
	// forwarding is checked for each of them, not only for the ones a
	// test's check_sg_fwding lists.
	brSources = []netip.Addr{br1, br2, br3, br10, br11, br12, br20, br21, br30, brOther}

	brH1 = peer1 // swp1: h1 sends the reports
	brH2 = peer2 // swp2: h2 (v3star_ex_auto_add_test's second reporter)
)

// The moments of a bridge scenario: v3include_prepare's IS_IN, then
// v3exclude_prepare's IS_EX (the selftest sleeps 1 s between them), then
// the report under test.
const (
	brTInc = 0
	brTExc = 1 * time.Second
	brTRec = 10 * time.Second
)

// brSet returns addrs sorted, as forwarded and Snapshot list them.
func brSet(addrs ...netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// brExcept returns brSources without addrs: what an EXCLUDE membership
// forwards when addrs are its exclusion list Y.
func brExcept(addrs ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range brSources {
		if !slices.Contains(addrs, a) {
			out = append(out, a)
		}
	}
	return out
}

// brRec returns a v3 report of one record for 239.10.10.10.
func brRec(typ uint8, srcs ...netip.Addr) func(testing.TB) Message {
	return func(tb testing.TB) Message { return v3msg(tb, rec(typ, brGroup, srcs...)) }
}

func brV2(typ uint8) func(testing.TB) Message {
	return func(tb testing.TB) Message { return v2msg(tb, typ, brGroup) }
}

// brWant is the state of 239.10.10.10 on one port: what bridge mdb show
// and check_sg_fwding look at.
type brWant struct {
	mode    string       // filter_mode: "include", "exclude", or "" for no entry at all
	sources []netip.Addr // INCLUDE: A; EXCLUDE: X. Each has a running timer (check_sg_state 0)
	blocked []netip.Addr // EXCLUDE: Y, blocked with no timer (check_sg_state 1)
	// fwd are the sources of brSources whose traffic goes to the port
	// (check_sg_fwding 1); the others must not (check_sg_fwding 0).
	fwd []netip.Addr
	// timers is when each source timer expires, as an offset from t0; a
	// source of sources missing here is an error. gt is the group timer
	// (EXCLUDE only).
	timers  map[netip.Addr]time.Duration
	gt      time.Duration
	version int // compatibility mode; 0: not checked
}

// brStep is one moment of a scenario: a report received (msg) or only the
// clock moving (msg nil), then Expire, then the checks.
type brStep struct {
	at    time.Duration
	msg   func(testing.TB) Message
	query []Query // what Handle must return for the local port (peers get none)
	want  *brWant
}

// brScenario is one test of bridge_igmp.sh.
type brScenario struct {
	selftest string // the selftest function it ports
	test     string // the Go test that runs it
	rfc      string // the rows and sections it checks
	cfg      Config
	steps    []brStep
}

// brIncludePrepare is v3include_prepare: IS_IN {.1,.2,.3} from no state.
//
//	INCLUDE ({})  IS_IN ({1,2,3})  INCLUDE ({1,2,3})  (B)=GMI      RFC 3376 6.4.1
func brIncludePrepare(gmi time.Duration) brStep {
	return brStep{
		at:  brTInc,
		msg: brRec(ModeIsInclude, br1, br2, br3),
		want: &brWant{
			mode: "include", sources: brSet(br1, br2, br3), fwd: brSet(br1, br2, br3),
			timers:  map[netip.Addr]time.Duration{br1: gmi, br2: gmi, br3: gmi},
			version: 3,
		},
	}
}

// brExcludePrepare is the IS_EX step of v3exclude_prepare, on the state
// v3include_prepare left:
//
//	INCLUDE (A)  IS_EX (B)  EXCLUDE (A*B, B-A)  (B-A)=0, Delete (A-B), Group Timer=GMI
//
// with A = {1,2,3}, B = {1,2,20,21}: X = {1,2} keep the timers IS_IN gave
// them (GMI from t0), Y = {20,21}, 3 is deleted. EXCLUDE forwards every
// source but Y, 192.0.2.3 and 192.0.2.100 included.
func brExcludePrepare(gmi time.Duration) brStep {
	return brStep{
		at:  brTExc,
		msg: brRec(ModeIsExclude, br1, br2, br20, br21),
		want: &brWant{
			mode: "exclude", sources: brSet(br1, br2), blocked: brSet(br20, br21), fwd: brExcept(br20, br21),
			timers: map[netip.Addr]time.Duration{br1: gmi, br2: gmi},
			gt:     brTExc + gmi, version: 3,
		},
	}
}

// bridgeScenarios returns the 14 tests of bridge_igmp.sh but
// v3star_ex_auto_add_test, which needs two ports (see
// TestConformanceBridgeV3StarExAutoAdd). Each step's state is worked out
// from the RFC rows its rfc field names.
func bridgeScenarios() []brScenario {
	// Default timers (RFC 3376 section 8): GMI = 2 × 125 s + 10 s, LMQT =
	// 2 × 1 s.
	const gmi, lmqt = 2*125*time.Second + 10*time.Second, 2 * time.Second
	// The selftest sets mcast_last_member_interval 500 (5 s) where a
	// group-and-source-specific query must not expire before it checks:
	// LMQT = 2 × 5 s.
	slow := Config{LastMemberInterval: 5 * time.Second}
	const slowLMQT = 2 * 5 * time.Second
	// v3exc_timeout_test: "GMI should be 3 seconds": query interval and
	// response interval 1 s, GMI = 2 × 1 s + 1 s.
	short := Config{QueryInterval: time.Second, ResponseInterval: time.Second}
	const shortGMI = 2*time.Second + time.Second
	const R = brTRec
	type m = map[netip.Addr]time.Duration

	return []brScenario{
		{
			selftest: "v2reportleave_test", test: "TestConformanceBridgeV2ReportLeave",
			rfc: "RFC 2236 2, 3; RFC 3376 7.3.2 (v2 Report = IS_EX({}), Leave = TO_IN({})), 6.4.1 INCLUDE+IS_EX, 6.4.2 EXCLUDE+TO_IN, 6.6.3.1, 6.5",
			steps: []brStep{
				// The report: INCLUDE ({}) IS_EX ({}) -> EXCLUDE ({}, {}),
				// Group Timer=GMI; every source is forwarded (the selftest
				// sends from 192.0.2.1).
				{at: 0, msg: brV2(TypeV2Report), want: &brWant{mode: "exclude", fwd: brSources, gt: gmi, version: 2}},
				// The leave: EXCLUDE (X,Y) TO_IN ({}) -> Send Q(G): the group
				// timer drops to LMQT (6.6.3.1); still forwarded meanwhile.
				{at: R, msg: brV2(TypeV2Leave), query: []Query{{Group: brGroup}},
					want: &brWant{mode: "exclude", fwd: brSources, gt: R + lmqt, version: 2}},
				{at: R + lmqt - time.Millisecond, want: &brWant{mode: "exclude", fwd: brSources, gt: R + lmqt, version: 2}},
				// Group timer expiry in EXCLUDE with no source timers (6.5):
				// INCLUDE ({}), the entry is deleted and nothing is forwarded
				// ("Leave didn't delete mdb entry", "forwarded without mdb
				// entry").
				{at: R + lmqt, want: &brWant{}},
			},
		},
		{
			selftest: "v3include_test", test: "TestConformanceBridgeV3Include",
			rfc:   "RFC 3376 6.4.1 INCLUDE (A) IS_IN (B) -> INCLUDE (A+B), (B)=GMI",
			steps: []brStep{brIncludePrepare(gmi)},
		},
		{
			selftest: "v3inc_allow_test", test: "TestConformanceBridgeV3IncAllow",
			rfc: "RFC 3376 6.4.2 INCLUDE (A) ALLOW (B) -> INCLUDE (A+B), (B)=GMI",
			steps: []brStep{
				brIncludePrepare(gmi),
				// A = {1,2,3}, B = {10,11,12}: A keeps its timers.
				{at: R, msg: brRec(AllowNewSources, br10, br11, br12), want: &brWant{
					mode: "include", sources: brSet(br1, br2, br3, br10, br11, br12), fwd: brSet(br1, br2, br3, br10, br11, br12),
					timers: m{br1: gmi, br2: gmi, br3: gmi, br10: R + gmi, br11: R + gmi, br12: R + gmi}, version: 3,
				}},
			},
		},
		{
			selftest: "v3inc_is_include_test", test: "TestConformanceBridgeV3IncIsInclude",
			rfc: "RFC 3376 6.4.1 INCLUDE (A) IS_IN (B) -> INCLUDE (A+B), (B)=GMI",
			steps: []brStep{
				brIncludePrepare(gmi),
				{at: R, msg: brRec(ModeIsInclude, br10, br11, br12), want: &brWant{
					mode: "include", sources: brSet(br1, br2, br3, br10, br11, br12), fwd: brSet(br1, br2, br3, br10, br11, br12),
					timers: m{br1: gmi, br2: gmi, br3: gmi, br10: R + gmi, br11: R + gmi, br12: R + gmi}, version: 3,
				}},
			},
		},
		{
			selftest: "v3inc_is_exclude_test", test: "TestConformanceBridgeV3IncIsExclude",
			rfc:   "RFC 3376 6.4.1 INCLUDE (A) IS_EX (B) -> EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), Group Timer=GMI",
			steps: []brStep{brIncludePrepare(gmi), brExcludePrepare(gmi)},
		},
		{
			selftest: "v3inc_to_exclude_test", test: "TestConformanceBridgeV3IncToExclude",
			rfc: "RFC 3376 6.4.2 INCLUDE (A) TO_EX (B) -> EXCLUDE (A*B, B-A), (B-A)=0, Delete (A-B), Send Q(G,A*B), Group Timer=GMI; 6.6.3.2; 6.3",
			cfg: slow,
			steps: []brStep{
				brIncludePrepare(gmi),
				// A = {1,2,3}, B = {1,20,30}: X = A*B = {1}, Y = B-A =
				// {20,30}, 2 and 3 deleted (the selftest: "192.0.2.2 entry
				// still exists"; 192.0.2.21 was never there). Q(G,{1})
				// lowers 1's timer to LMQT (6.6.3.2).
				{at: R, msg: brRec(ChangeToExclude, br1, br20, br30), query: []Query{{Group: brGroup, Sources: brSet(br1)}},
					want: &brWant{
						mode: "exclude", sources: brSet(br1), blocked: brSet(br20, br30), fwd: brExcept(br20, br30),
						timers: m{br1: R + slowLMQT}, gt: R + gmi, version: 3,
					}},
				// Beyond the selftest: nobody answers Q(G,{1}). In EXCLUDE
				// a source whose timer expires stops being forwarded but
				// keeps its record (6.3): 1 joins Y.
				{at: R + slowLMQT, want: &brWant{
					mode: "exclude", blocked: brSet(br1, br20, br30), fwd: brExcept(br1, br20, br30), gt: R + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_allow_test", test: "TestConformanceBridgeV3ExcAllow",
			rfc: "RFC 3376 6.4.2 EXCLUDE (X,Y) ALLOW (A) -> EXCLUDE (X+A, Y-A), (A)=GMI",
			steps: []brStep{
				brIncludePrepare(gmi), brExcludePrepare(gmi),
				// X = {1,2}, Y = {20,21}, A = {20,30}: X = {1,2,20,30},
				// Y = {21}; the group timer is untouched.
				{at: R, msg: brRec(AllowNewSources, br20, br30), want: &brWant{
					mode: "exclude", sources: brSet(br1, br2, br20, br30), blocked: brSet(br21), fwd: brExcept(br21),
					timers: m{br1: gmi, br2: gmi, br20: R + gmi, br30: R + gmi}, gt: brTExc + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_is_include_test", test: "TestConformanceBridgeV3ExcIsInclude",
			rfc: "RFC 3376 6.4.1 EXCLUDE (X,Y) IS_IN (A) -> EXCLUDE (X+A, Y-A), (A)=GMI",
			steps: []brStep{
				brIncludePrepare(gmi), brExcludePrepare(gmi),
				{at: R, msg: brRec(ModeIsInclude, br20, br30), want: &brWant{
					mode: "exclude", sources: brSet(br1, br2, br20, br30), blocked: brSet(br21), fwd: brExcept(br21),
					timers: m{br1: gmi, br2: gmi, br20: R + gmi, br30: R + gmi}, gt: brTExc + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_is_exclude_test", test: "TestConformanceBridgeV3ExcIsExclude",
			rfc: "RFC 3376 6.4.1 EXCLUDE (X,Y) IS_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=GMI, Delete (X-A), Delete (Y-A), Group Timer=GMI",
			steps: []brStep{
				brIncludePrepare(gmi), brExcludePrepare(gmi),
				// A = {20,30}: X = A-Y = {30} with GMI, Y = Y*A = {20};
				// 1, 2 (X-A) and 21 (Y-A) deleted, so forwarded again.
				{at: R, msg: brRec(ModeIsExclude, br20, br30), want: &brWant{
					mode: "exclude", sources: brSet(br30), blocked: brSet(br20), fwd: brExcept(br20),
					timers: m{br30: R + gmi}, gt: R + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_to_exclude_test", test: "TestConformanceBridgeV3ExcToExclude",
			rfc: "RFC 3376 6.4.2 EXCLUDE (X,Y) TO_EX (A) -> EXCLUDE (A-Y, Y*A), (A-X-Y)=Group Timer, Delete (X-A), Delete (Y-A), Send Q(G,A-Y), Group Timer=GMI; 6.6.3.2; 6.3",
			cfg: slow,
			steps: []brStep{
				brIncludePrepare(gmi), brExcludePrepare(gmi),
				// A = {1,20,30}: X = A-Y = {1,30}, Y = {20}; 2 and 21
				// deleted. 30 starts at the group timer, then Q(G,{1,30})
				// lowers both to LMQT.
				{at: R, msg: brRec(ChangeToExclude, br1, br20, br30), query: []Query{{Group: brGroup, Sources: brSet(br1, br30)}},
					want: &brWant{
						mode: "exclude", sources: brSet(br1, br30), blocked: brSet(br20), fwd: brExcept(br20),
						timers: m{br1: R + slowLMQT, br30: R + slowLMQT}, gt: R + gmi, version: 3,
					}},
				// Unanswered, 1 and 30 stop (6.3).
				{at: R + slowLMQT, want: &brWant{
					mode: "exclude", blocked: brSet(br1, br20, br30), fwd: brExcept(br1, br20, br30), gt: R + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3inc_block_test", test: "TestConformanceBridgeV3IncBlock",
			rfc: "RFC 3376 6.4.2 INCLUDE (A) BLOCK (B) -> INCLUDE (A), Send Q(G,A*B); 6.6.3.2; 6.3",
			steps: []brStep{
				brIncludePrepare(gmi),
				// B = {1,20,30}: A*B = {1}, queried, its timer at LMQT.
				{at: R, msg: brRec(BlockOldSources, br1, br20, br30), query: []Query{{Group: brGroup, Sources: brSet(br1)}},
					want: &brWant{
						mode: "include", sources: brSet(br1, br2, br3), fwd: brSet(br1, br2, br3),
						timers: m{br1: R + lmqt, br2: gmi, br3: gmi}, version: 3,
					}},
				// The selftest sleeps past the lowered timer: in INCLUDE an
				// expired source is deleted (6.3).
				{at: R + lmqt, want: &brWant{
					mode: "include", sources: brSet(br2, br3), fwd: brSet(br2, br3),
					timers: m{br2: gmi, br3: gmi}, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_block_test", test: "TestConformanceBridgeV3ExcBlock",
			rfc: "RFC 3376 6.4.2 EXCLUDE (X,Y) BLOCK (A) -> EXCLUDE (X+(A-Y), Y), (A-X-Y)=Group Timer, Send Q(G,A-Y); 6.6.3.2; 6.3",
			cfg: slow,
			steps: []brStep{
				brIncludePrepare(gmi), brExcludePrepare(gmi),
				// A = {1,20,30}: X = {1,2,30}, Y = {20,21}; Q(G,{1,30})
				// lowers 1 and 30 to LMQT.
				{at: R, msg: brRec(BlockOldSources, br1, br20, br30), query: []Query{{Group: brGroup, Sources: brSet(br1, br30)}},
					want: &brWant{
						mode: "exclude", sources: brSet(br1, br2, br30), blocked: brSet(br20, br21), fwd: brExcept(br20, br21),
						timers: m{br1: R + slowLMQT, br2: gmi, br30: R + slowLMQT}, gt: brTExc + gmi, version: 3,
					}},
				{at: R + slowLMQT, want: &brWant{
					mode: "exclude", sources: brSet(br2), blocked: brSet(br1, br20, br21, br30), fwd: brExcept(br1, br20, br21, br30),
					timers: m{br2: gmi}, gt: brTExc + gmi, version: 3,
				}},
			},
		},
		{
			selftest: "v3exc_timeout_test", test: "TestConformanceBridgeV3ExcTimeout",
			rfc: "RFC 3376 6.4.2 EXCLUDE (X,Y) ALLOW (A); 6.3 source timer expiry in EXCLUDE; 6.5 group timer expiry: EXCLUDE -> INCLUDE of the running sources",
			cfg: short,
			steps: []brStep{
				brIncludePrepare(shortGMI), brExcludePrepare(shortGMI),
				// 1 and 2 run out at GMI (their timers date from IS_IN at
				// t0): blocked, records kept (6.3).
				{at: shortGMI, want: &brWant{
					mode: "exclude", blocked: brSet(br1, br2, br20, br21), fwd: brExcept(br1, br2, br20, br21),
					gt: brTExc + shortGMI, version: 3,
				}},
				// ALLOW {20,30} before the group timer runs out (the
				// selftest lengthens GMI instead, so that 20 and 30 outlive
				// the group timer): X = {20,30}, Y = {1,2,21}.
				{at: brTExc + shortGMI - 500*time.Millisecond, msg: brRec(AllowNewSources, br20, br30), want: &brWant{
					mode: "exclude", sources: brSet(br20, br30), blocked: brSet(br1, br2, br21), fwd: brExcept(br1, br2, br21),
					timers: m{br20: brTExc + 2*shortGMI - 500*time.Millisecond, br30: brTExc + 2*shortGMI - 500*time.Millisecond},
					gt:     brTExc + shortGMI, version: 3,
				}},
				// The group timer runs out (6.5): INCLUDE with the sources
				// whose timers run, {20,30}; Y is dropped, and 1, 2 and
				// 192.0.2.100 are no longer forwarded.
				{at: brTExc + shortGMI, want: &brWant{
					mode: "include", sources: brSet(br20, br30), fwd: brSet(br20, br30),
					timers:  m{br20: brTExc + 2*shortGMI - 500*time.Millisecond, br30: brTExc + 2*shortGMI - 500*time.Millisecond},
					version: 3,
				}},
				// And then the INCLUDE sources run out: no entry.
				{at: brTExc + 2*shortGMI - 500*time.Millisecond, want: &brWant{}},
			},
		},
	}
}

// runBridgeScenario runs a scenario on port brH1 and on the local port: the
// table keeps the same state for both, and only the local port has the
// querier send the queries the rows call for.
func runBridgeScenario(t *testing.T, selftest string) {
	t.Helper()
	i := slices.IndexFunc(bridgeScenarios(), func(s brScenario) bool { return s.selftest == selftest })
	if i < 0 {
		t.Fatalf("no scenario %s", selftest)
	}
	sc := bridgeScenarios()[i]
	t.Logf("bridge_igmp.sh %s; %s", sc.selftest, sc.rfc)
	for _, port := range []Port{brH1, LocalPort} {
		t.Run(portName(port), func(t *testing.T) {
			tb := newTestTable(sc.cfg)
			for _, st := range sc.steps {
				now := at(st.at)
				if st.msg != nil {
					q := tb.Handle(port, st.msg(t), now, nil)
					want := st.query
					if port != LocalPort {
						want = nil
					}
					if !equalQueries(q, want) {
						t.Errorf("at %v: Handle returned queries %v, want %v", st.at, q, want)
					}
				}
				tb.Expire(now)
				if st.want != nil {
					checkBridge(t, tb, port, now, *st.want)
				}
			}
		})
	}
}

// checkBridge compares the state of 239.10.10.10 on port with w.
func checkBridge(t *testing.T, tb *Table, port Port, now time.Time, w brWant) {
	t.Helper()
	when := now.Sub(t0)
	ps, ok := portState(tb, brGroup, port, now)
	switch {
	case w.mode == "" && ok:
		t.Errorf("at %v: entry %+v, want none", when, ps)
	case w.mode != "" && !ok:
		t.Errorf("at %v: no entry, want %s", when, w.mode)
	case ok:
		if ps.Mode != w.mode {
			t.Errorf("at %v: filter mode %s, want %s", when, ps.Mode, w.mode)
		}
		if !slices.Equal(ps.Sources, w.sources) {
			t.Errorf("at %v: sources with running timers %v, want %v", when, ps.Sources, w.sources)
		}
		if !slices.Equal(ps.Blocked, w.blocked) {
			t.Errorf("at %v: blocked sources %v, want %v", when, ps.Blocked, w.blocked)
		}
		if w.version != 0 && ps.Version != w.version {
			t.Errorf("at %v: version %d, want %d", when, ps.Version, w.version)
		}
		srcs, gt, _ := timers(tb, brGroup, port)
		want := w.timers
		if want == nil {
			want = map[netip.Addr]time.Duration{}
		}
		if !mapsEqual(srcs, want) {
			t.Errorf("at %v: source timers %v, want %v", when, srcs, want)
		}
		if w.mode == "exclude" && gt != w.gt {
			t.Errorf("at %v: group timer %v, want %v", when, gt, w.gt)
		}
	}
	if _, reg := tb.Lookup(brGroup, brOther, nil); reg != (w.mode != "") {
		t.Errorf("at %v: registered %v, want %v", when, reg, w.mode != "")
	}
	if port != LocalPort {
		if got := forwarded(tb, brGroup, port, brSources); !slices.Equal(got, w.fwd) {
			t.Errorf("at %v: traffic forwarded from %v, want from %v", when, got, w.fwd)
		}
	}
}

func mapsEqual(a, b map[netip.Addr]time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestConformanceBridgeV2ReportLeave ports bridge_igmp.sh
// v2reportleave_test: an IGMPv2 report creates the entry and traffic is
// forwarded; after the leave and the last member query time the entry is
// gone and the group is unregistered. RFC 2236 sections 2-3; RFC 3376
// 7.3.2, 6.4.1, 6.4.2, 6.6.3.1, 6.5. meshcast applies the v2 compatibility
// of RFC 3376 7.3.2 (version 2 checked); the Linux bridge does not.
func TestConformanceBridgeV2ReportLeave(t *testing.T) { runBridgeScenario(t, "v2reportleave_test") }

// TestConformanceBridgeV3Include ports bridge_igmp.sh v3include_test:
// IS_IN {.1,.2,.3} gives INCLUDE {.1,.2,.3}, all with running timers, all
// forwarded, 192.0.2.100 not. RFC 3376 6.4.1 INCLUDE/IS_IN.
func TestConformanceBridgeV3Include(t *testing.T) { runBridgeScenario(t, "v3include_test") }

// TestConformanceBridgeV3IncAllow ports bridge_igmp.sh v3inc_allow_test.
// RFC 3376 6.4.2 INCLUDE/ALLOW.
func TestConformanceBridgeV3IncAllow(t *testing.T) { runBridgeScenario(t, "v3inc_allow_test") }

// TestConformanceBridgeV3IncIsInclude ports bridge_igmp.sh
// v3inc_is_include_test. RFC 3376 6.4.1 INCLUDE/IS_IN.
func TestConformanceBridgeV3IncIsInclude(t *testing.T) { runBridgeScenario(t, "v3inc_is_include_test") }

// TestConformanceBridgeV3IncIsExclude ports bridge_igmp.sh
// v3inc_is_exclude_test (v3exclude_prepare). RFC 3376 6.4.1 INCLUDE/IS_EX.
func TestConformanceBridgeV3IncIsExclude(t *testing.T) { runBridgeScenario(t, "v3inc_is_exclude_test") }

// TestConformanceBridgeV3IncToExclude ports bridge_igmp.sh
// v3inc_to_exclude_test. RFC 3376 6.4.2 INCLUDE/TO_EX, 6.6.3.2, and (past
// the selftest) 6.3 for the unanswered Q(G,A*B).
func TestConformanceBridgeV3IncToExclude(t *testing.T) { runBridgeScenario(t, "v3inc_to_exclude_test") }

// TestConformanceBridgeV3ExcAllow ports bridge_igmp.sh v3exc_allow_test.
// RFC 3376 6.4.2 EXCLUDE/ALLOW.
func TestConformanceBridgeV3ExcAllow(t *testing.T) { runBridgeScenario(t, "v3exc_allow_test") }

// TestConformanceBridgeV3ExcIsInclude ports bridge_igmp.sh
// v3exc_is_include_test. RFC 3376 6.4.1 EXCLUDE/IS_IN.
func TestConformanceBridgeV3ExcIsInclude(t *testing.T) { runBridgeScenario(t, "v3exc_is_include_test") }

// TestConformanceBridgeV3ExcIsExclude ports bridge_igmp.sh
// v3exc_is_exclude_test. RFC 3376 6.4.1 EXCLUDE/IS_EX.
func TestConformanceBridgeV3ExcIsExclude(t *testing.T) { runBridgeScenario(t, "v3exc_is_exclude_test") }

// TestConformanceBridgeV3ExcToExclude ports bridge_igmp.sh
// v3exc_to_exclude_test. RFC 3376 6.4.2 EXCLUDE/TO_EX, 6.6.3.2, 6.3.
func TestConformanceBridgeV3ExcToExclude(t *testing.T) { runBridgeScenario(t, "v3exc_to_exclude_test") }

// TestConformanceBridgeV3IncBlock ports bridge_igmp.sh v3inc_block_test.
// RFC 3376 6.4.2 INCLUDE/BLOCK, 6.6.3.2, 6.3.
func TestConformanceBridgeV3IncBlock(t *testing.T) { runBridgeScenario(t, "v3inc_block_test") }

// TestConformanceBridgeV3ExcBlock ports bridge_igmp.sh v3exc_block_test.
// RFC 3376 6.4.2 EXCLUDE/BLOCK, 6.6.3.2, 6.3.
func TestConformanceBridgeV3ExcBlock(t *testing.T) { runBridgeScenario(t, "v3exc_block_test") }

// TestConformanceBridgeV3ExcTimeout ports bridge_igmp.sh
// v3exc_timeout_test: with GMI 3 s, the group timer of EXCLUDE runs out and
// the entry falls back to INCLUDE of the sources still running. RFC 3376
// 6.4.2 EXCLUDE/ALLOW, 6.3, 6.5.
func TestConformanceBridgeV3ExcTimeout(t *testing.T) { runBridgeScenario(t, "v3exc_timeout_test") }

// TestConformanceBridgeV3StarExAutoAdd ports bridge_igmp.sh
// v3star_ex_auto_add_test: when one port is in EXCLUDE (the bridge's *,G
// EXCLUDE port) and another has an INCLUDE (S,G) entry, the bridge
// auto-adds the EXCLUDE port to the S,G entry so that traffic from S
// reaches both. meshcast keeps state per port, so Lookup must merge the two:
// Lookup(G, S) gives both ports, Lookup(G, other) only the EXCLUDE one.
// RFC 3376 6.2.1 (per-interface state; here per port) and 6.3 (forwarding
// per mode); RFC 4541 2.1.2 (forwarding by (G,S) INCLUDE and EXCLUDE lists).
//
// Port B (brH1, swp1) is in EXCLUDE by an IGMPv2 join, a v3 IS_EX {}, or
// the selftest's own v3exclude_prepare (EXCLUDE {.1,.2} / {.20,.21}); port
// A (brH2, swp2) reports IS_IN {.1,.2,.3} as h2 does. Both orders of
// arrival are run: the kernel's auto-add happens at either.
func TestConformanceBridgeV3StarExAutoAdd(t *testing.T) {
	A, B := brH2, brH1
	type exp struct {
		src  netip.Addr
		want []Port
	}
	for _, join := range []struct {
		name string
		msgs []func(testing.TB) Message
		exp  []exp
	}{
		{"v2 join", []func(testing.TB) Message{brV2(TypeV2Report)}, []exp{
			{br3, []Port{A, B}}, {br1, []Port{A, B}}, {brOther, []Port{B}}, {br20, []Port{B}},
		}},
		{"v3 IS_EX {}", []func(testing.TB) Message{brRec(ModeIsExclude)}, []exp{
			{br3, []Port{A, B}}, {br1, []Port{A, B}}, {brOther, []Port{B}}, {br20, []Port{B}},
		}},
		{"v3exclude_prepare", []func(testing.TB) Message{brRec(ModeIsInclude, br1, br2, br3), brRec(ModeIsExclude, br1, br2, br20, br21)}, []exp{
			// B is EXCLUDE ({1,2}, {20,21}): it takes 3 (the selftest's
			// check), 1 and 100, not 20; A takes its INCLUDE {1,2,3}.
			{br3, []Port{A, B}}, {br1, []Port{A, B}}, {brOther, []Port{B}}, {br20, nil},
		}},
	} {
		for _, excludeFirst := range []bool{true, false} {
			name := join.name + "/include port first"
			if excludeFirst {
				name = join.name + "/exclude port first"
			}
			t.Run(name, func(t *testing.T) {
				tb := newTestTable(Config{})
				now := at(0)
				joinB := func() {
					for _, msg := range join.msgs {
						tb.Handle(B, msg(t), now, nil)
						now = now.Add(time.Second)
					}
				}
				joinA := func() {
					tb.Handle(A, brRec(ModeIsInclude, br1, br2, br3)(t), now, nil)
					now = now.Add(time.Second)
				}
				if excludeFirst {
					joinB()
					joinA()
				} else {
					joinA()
					joinB()
				}
				tb.Expire(now)
				for _, e := range join.exp {
					got, reg := tb.Lookup(brGroup, e.src, nil)
					slices.SortFunc(got, netip.Addr.Compare)
					want := slices.Clone(e.want)
					slices.SortFunc(want, netip.Addr.Compare)
					if !reg || !slices.Equal(got, want) {
						t.Errorf("Lookup(%v, %v) = %v, %v; want %v, registered", brGroup, e.src, got, reg, want)
					}
				}
			})
		}
	}
}

// OVS: tests/mcast-snooping.at. Its frames are used byte for byte, with
// the 802.1Q tag (VLAN 0 priority tag) taken out where it had one: meshcast
// carries untagged frames only.
var (
	ovsGroup1 = mustAddr("224.1.1.1")
	ovsGroup2 = mustAddr("224.1.1.2")
	ovsGroup3 = mustAddr("233.54.12.230")
)

const (
	// "Send IGMPv1 report packet": 172.16.34.30 > 224.1.1.1, type 0x12.
	ovsV1Report224111 = "01005E010101000C29A027A108004500001C000100004002CBAEAC10221EE001010112140CE9E0010101"
	// "Send IGMPv2 report packet": 10.0.1.3 > 224.1.1.2, type 0x16.
	ovsV2Report224112 = "01005e010102505400000103080046c00020000040000102f8110a000103e001010294040000160008fce0010102"
	// "Send IGMPv3 report packet": 10.0.0.3 > 224.0.0.22, one record
	// CHANGE_TO_EXCLUDE {} for 233.54.12.230.
	ovsV3Report233 = "01005e000016505400000003080046c00028000040000102f9f60a000003e0000016940400002200e3e10000000104000000e9360ce6"
	// "Send IGMPv1 report packet to address 224.1.1.2".
	ovsV1Report224112 = "01005e010102505400000103080046c00020000040000102f8110a000103e00101029404000012000cfce0010102"
)

// ovsMessage decodes one of the OVS frames and runs it through FromFrame
// and Parse, as the data path does.
func ovsMessage(tb testing.TB, frameHex string) Message {
	tb.Helper()
	f, err := hex.DecodeString(frameHex)
	if err != nil {
		tb.Fatal(err)
	}
	_, _, b, ok := FromFrame(f)
	if !ok {
		tb.Fatalf("FromFrame refused the OVS frame %s", frameHex)
	}
	m, r := Parse(b)
	if r != OK {
		tb.Fatalf("Parse(OVS frame) = %v", r)
	}
	return m
}

// TestConformanceOVSVersionColumn ports mcast-snooping.at "mcast -
// mcast_group protocol updated in mdb": the mdb's protocol column shows
// IGMPv1, IGMPv2 and IGMPv3 for groups reported with each version, and a
// v1 report on the v2 group turns it to IGMPv1. In meshcast the column is
// PortState.Version, the group compatibility mode of RFC 3376 7.3.2.
//
// Past OVS (which shows the version of the latest report): by RFC 3376
// 7.3.2 and 8.13 the mode stays IGMPv1 while the Older Host Present timer
// (GMI after the last v1 report) runs, even when v2 and v3 reports come in
// meanwhile; then it steps up to 2, then to 3.
func TestConformanceOVSVersionColumn(t *testing.T) {
	const gmi = 2*125*time.Second + 10*time.Second // RFC 3376 8.4 and 8.13, defaults
	tb := newTestTable(Config{})
	p1 := peer1
	for _, f := range []string{ovsV1Report224111, ovsV2Report224112, ovsV3Report233} {
		tb.Handle(p1, ovsMessage(t, f), at(0), nil)
	}
	version := func(g netip.Addr, now time.Duration) int {
		tb.Expire(at(now))
		ps, ok := portState(tb, g, p1, at(now))
		if !ok {
			return 0
		}
		if ps.Mode != "exclude" {
			t.Errorf("%v at %v: mode %s, want exclude (every one of these reports is a join of all sources)", g, now, ps.Mode)
		}
		return ps.Version
	}
	for _, c := range []struct {
		group netip.Addr
		want  int
	}{{ovsGroup1, 1}, {ovsGroup2, 2}, {ovsGroup3, 3}} {
		if got := version(c.group, 0); got != c.want {
			t.Errorf("after the three reports %v shows version %d, want %d", c.group, got, c.want)
		}
	}

	// The v1 report on 224.1.1.2: IGMPv1.
	tb.Handle(p1, ovsMessage(t, ovsV1Report224112), at(time.Second), nil)
	if got := version(ovsGroup2, time.Second); got != 1 {
		t.Errorf("after a v1 report on the v2 group 224.1.1.2: version %d, want 1", got)
	}
	if got := version(ovsGroup3, time.Second); got != 3 {
		t.Errorf("233.54.12.230: version %d, want 3 (untouched)", got)
	}

	// RFC 3376 7.3.2: the lowest version present wins. The v2 host keeps
	// reporting at 100 s and 200 s; a v3 host at 300 s, 400 s and 500 s.
	for _, c := range []struct {
		at   time.Duration
		msg  Message
		want int
	}{
		{100 * time.Second, v2msg(t, TypeV2Report, ovsGroup2), 1}, // a v2 report does not lift the v1 mode
		{200 * time.Second, v2msg(t, TypeV2Report, ovsGroup2), 1},
		{time.Second + gmi - time.Millisecond, nil, 1}, // v1 host present until GMI after its report
		{time.Second + gmi, nil, 2},                    // then v2, until GMI after the report of 200 s
		{300 * time.Second, v3msg(t, rec(ModeIsExclude, ovsGroup2)), 2},
		{400 * time.Second, v3msg(t, rec(ModeIsExclude, ovsGroup2)), 2},
		{200*time.Second + gmi - time.Millisecond, nil, 2},
		{200*time.Second + gmi, nil, 3},
		{500 * time.Second, v3msg(t, rec(ModeIsExclude, ovsGroup2)), 3},
	} {
		if c.msg != nil {
			tb.Handle(p1, c.msg, at(c.at), nil)
		}
		if got := version(ovsGroup2, c.at); got != c.want {
			t.Errorf("224.1.1.2 at %v: version %d, want %d", c.at, got, c.want)
		}
	}
}

// TestConformanceOVSV1Compat ports the IGMPv1 side of mcast-snooping.at's
// protocol column: once a v1 report downgraded a group, RFC 3376 7.3.2
// (and RFC 2236 section 4, for IGMPv2 routers) has the router ignore v2
// Leaves, v3 TO_IN and BLOCK, and the source lists of TO_EX. The same
// messages are honoured in v2 mode (leave, TO_IN {}) or v3 mode. OVS has no
// such rule (it acts on the Leave at once); the test checks the RFC.
//
// The group is OVS's 224.1.1.2: a v2 report at 0, then (in v1 mode) the
// v1 report of the OVS frame at 1 s, then the message under test at 10 s.
func TestConformanceOVSV1Compat(t *testing.T) {
	const gmi, lmqt = 2*125*time.Second + 10*time.Second, 2 * time.Second
	const R = 10 * time.Second
	g := ovsGroup2
	for _, tc := range []struct {
		name string
		v1   bool // a v1 host is present
		msg  func(testing.TB) Message
		// What is expected right after the message (at R) and after LMQT.
		query    []Query // on the local port
		gtAtR    time.Duration
		goneLMQT bool
	}{
		// v1 mode: ignored; the group timer stays GMI after the v1 report.
		{name: "v1/v2 leave ignored", v1: true, msg: func(tb testing.TB) Message { return v2msg(tb, TypeV2Leave, g) },
			gtAtR: time.Second + gmi},
		{name: "v1/TO_IN {} ignored", v1: true, msg: func(tb testing.TB) Message { return v3msg(tb, rec(ChangeToInclude, g)) },
			gtAtR: time.Second + gmi},
		{name: "v1/BLOCK ignored", v1: true, msg: func(tb testing.TB) Message { return v3msg(tb, rec(BlockOldSources, g, s1)) },
			gtAtR: time.Second + gmi},
		// TO_EX ({s1}) is TO_EX ({}): the group timer is GMI again, s1 not
		// excluded.
		{name: "v1/TO_EX sources ignored", v1: true, msg: func(tb testing.TB) Message { return v3msg(tb, rec(ChangeToExclude, g, s1)) },
			gtAtR: R + gmi},
		// v2 mode: the leave (and its v3 twin TO_IN {}) is honoured: Q(G),
		// group timer LMQT, gone after it (RFC 2236 3, RFC 3376 6.4.2,
		// 6.6.3.1).
		{name: "v2/v2 leave honoured", msg: func(tb testing.TB) Message { return v2msg(tb, TypeV2Leave, g) },
			query: []Query{{Group: g}}, gtAtR: R + lmqt, goneLMQT: true},
		{name: "v2/TO_IN {} honoured", msg: func(tb testing.TB) Message { return v3msg(tb, rec(ChangeToInclude, g)) },
			query: []Query{{Group: g}}, gtAtR: R + lmqt, goneLMQT: true},
		// v2 mode: BLOCK ignored, TO_EX sources ignored (RFC 3376 7.3.2).
		{name: "v2/BLOCK ignored", msg: func(tb testing.TB) Message { return v3msg(tb, rec(BlockOldSources, g, s1)) },
			gtAtR: gmi},
		{name: "v2/TO_EX sources ignored", msg: func(tb testing.TB) Message { return v3msg(tb, rec(ChangeToExclude, g, s1)) },
			gtAtR: R + gmi},
	} {
		for _, port := range []Port{peer1, LocalPort} {
			t.Run(tc.name+"/"+portName(port), func(t *testing.T) {
				tb := newTestTable(Config{})
				tb.Handle(port, ovsMessage(t, ovsV2Report224112), at(0), nil)
				if tc.v1 {
					tb.Handle(port, ovsMessage(t, ovsV1Report224112), at(time.Second), nil)
				}
				q := tb.Handle(port, tc.msg(t), at(R), nil)
				want := tc.query
				if port != LocalPort {
					want = nil
				}
				if !equalQueries(q, want) {
					t.Errorf("queries %v, want %v", q, want)
				}
				tb.Expire(at(R))
				ps, ok := portState(tb, g, port, at(R))
				wantV := 2
				if tc.v1 {
					wantV = 1
				}
				if !ok || ps.Mode != "exclude" || ps.Version != wantV || ps.Expires != tc.gtAtR-R || len(ps.Blocked) != 0 {
					t.Errorf("at R: %+v (present %v); want exclude, version %d, nothing blocked, group timer at %v", ps, ok, wantV, tc.gtAtR)
				}
				// Nothing the message says stops s1: it is still forwarded.
				if port != LocalPort {
					if got := forwarded(tb, g, port, addrs(s1)); len(got) != 1 {
						t.Errorf("s1 is no longer forwarded")
					}
				}
				tb.Expire(at(R + lmqt))
				if _, ok := portState(tb, g, port, at(R+lmqt)); ok == tc.goneLMQT {
					t.Errorf("after LMQT: present %v, want %v", ok, !tc.goneLMQT)
				}
			})
		}
	}
}

// TestConformanceOVSPortDestroyed ports mcast-snooping.at "mcast - delete
// the port mdb when port destroyed" at the table: p1 reported 224.1.1.1,
// p2 carries a querier; p2 goes; its querier entry goes with it and p1's
// group stays. Then p1 goes too. (The VLAN half of the test has no
// counterpart: meshcast has no VLANs; the peer-level version is in
// replicate.) RFC 4541 2.1.1 (router ports), RFC 3376 6.
func TestConformanceOVSPortDestroyed(t *testing.T) {
	tb := newTestTable(Config{})
	p1, p2 := peer1, peer2
	tb.Handle(p1, ovsMessage(t, ovsV1Report224111), at(0), nil)
	tb.HeardQuery(p2, mustAddr("172.16.34.1"), at(0)) // the OVS query's source
	groups, routers := tb.Snapshot(at(0))
	if len(groups) != 1 || groups[0].Group != ovsGroup1 || len(groups[0].Ports) != 1 || groups[0].Ports[0].Port != p1 ||
		!slices.Equal(routers, []Port{p2}) {
		t.Fatalf("before: groups %+v, routers %v; want 224.1.1.1 on p1 and querier p2", groups, routers)
	}
	tb.RemovePort(p2)
	groups, routers = tb.Snapshot(at(0))
	if len(groups) != 1 || len(groups[0].Ports) != 1 || groups[0].Ports[0].Port != p1 || len(routers) != 0 {
		t.Errorf("after p2 went: groups %+v, routers %v; want 224.1.1.1 on p1 and no querier", groups, routers)
	}
	if got, _ := tb.Lookup(mustAddr("239.9.9.9"), s1, nil); len(got) != 0 {
		t.Errorf("unregistered traffic still goes to %v after the router port went", got)
	}
	if got, _ := tb.Lookup(ovsGroup1, s1, nil); !slices.Equal(got, []Port{p1}) {
		t.Errorf("224.1.1.1 goes to %v, want [p1]", got)
	}
	tb.RemovePort(p1)
	if groups, _ := tb.Snapshot(at(0)); len(groups) != 0 {
		t.Errorf("after p1 went: %+v, want no group", groups)
	}
	if _, reg := tb.Lookup(ovsGroup1, s1, nil); reg {
		t.Errorf("224.1.1.1 still registered after its only port went")
	}
}

// conformanceList is every scenario of the suite: the scenario, where it
// comes from, and the test that ports it (package.Test).
var conformanceList = []struct{ scenario, source, test string }{
	{"v2reportleave", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV2ReportLeave"},
	{"v3include", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3Include"},
	{"v3inc_allow", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3IncAllow"},
	{"v3inc_is_include", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3IncIsInclude"},
	{"v3inc_is_exclude", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3IncIsExclude"},
	{"v3inc_to_exclude", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3IncToExclude"},
	{"v3exc_allow", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcAllow"},
	{"v3exc_is_include", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcIsInclude"},
	{"v3exc_is_exclude", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcIsExclude"},
	{"v3exc_to_exclude", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcToExclude"},
	{"v3inc_block", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3IncBlock"},
	{"v3exc_block", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcBlock"},
	{"v3exc_timeout", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3ExcTimeout"},
	{"v3star_ex_auto_add", "linux bridge_igmp.sh", "igmp.TestConformanceBridgeV3StarExAutoAdd"},
	{"bridge scenarios, end to end (per-source forwarding through the engine)", "linux bridge_igmp.sh", "replicate.TestConformanceBridgeDataPath"},
	{"mcast_group protocol updated in mdb (version column, v1 downgrade)", "ovs mcast-snooping.at", "igmp.TestConformanceOVSVersionColumn"},
	{"mcast_group protocol updated in mdb (same, from peer frames)", "ovs mcast-snooping.at", "replicate.TestConformanceOVSVersionColumn"},
	{"IGMPv1 compatibility: v2 leave ignored while a v1 host is present", "ovs mcast-snooping.at + RFC 3376 7.3.2", "igmp.TestConformanceOVSV1Compat"},
	{"delete the port mdb when port destroyed (table)", "ovs mcast-snooping.at", "igmp.TestConformanceOVSPortDestroyed"},
	{"delete the port mdb when port destroyed (peer removed)", "ovs mcast-snooping.at", "replicate.TestConformanceOVSPortDestroyed"},
	{"delete the port mdb when vlan configuration changed (peer reconfigured)", "ovs mcast-snooping.at", "replicate.TestConformanceOVSPortReconfigured"},
	{"check reports per port flooding / igmp flood for non-snoop enabled", "ovs mcast-snooping.at", "replicate.TestConformanceOVSReportForwarding"},
	{"check multicast per port flooding (unregistered flood on, off)", "ovs mcast-snooping.at", "replicate.TestConformanceOVSUnregisteredFlood"},
	{"check multicasts to trunk ports are not duplicated", "ovs mcast-snooping.at", "replicate.TestConformanceOVSNotDuplicated"},
	{"invalid IGMP checksum not learned", "ovs mcast-snooping.at", "replicate.TestConformanceOVSBadChecksum"},
}

// TestConformanceList prints the suite as a table (go test -v -run
// TestConformanceList ./igmp) and checks that every test it names exists.
func TestConformanceList(t *testing.T) {
	files := map[string]string{"igmp": "conformance_test.go", "replicate": "../replicate/conformance_test.go"}
	src := map[string]string{}
	for pkg, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		src[pkg] = string(b)
	}
	w1, w2 := len("scenario"), len("source")
	for _, c := range conformanceList {
		w1, w2 = max(w1, len(c.scenario)), max(w2, len(c.source))
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-*s | %-*s | %s\n", w1, "scenario", w2, "source", "test name")
	fmt.Fprintf(&sb, "%s-|-%s-|-%s\n", strings.Repeat("-", w1), strings.Repeat("-", w2), strings.Repeat("-", 40))
	seen := map[string]bool{}
	for _, c := range conformanceList {
		fmt.Fprintf(&sb, "%-*s | %-*s | %s\n", w1, c.scenario, w2, c.source, c.test)
		pkg, name, _ := strings.Cut(c.test, ".")
		if !regexp.MustCompile(`(?m)^func ` + name + `\(t \*testing\.T\)`).MatchString(src[pkg]) {
			t.Errorf("%s: no func %s in %s", c.scenario, name, files[pkg])
		}
		seen[c.test] = true
	}
	t.Log(sb.String())
	// Every Conformance test of both files is listed.
	for pkg, s := range src {
		for _, m := range regexp.MustCompile(`(?m)^func (TestConformance\w+)\(`).FindAllStringSubmatch(s, -1) {
			if m[1] != "TestConformanceList" && !seen[pkg+"."+m[1]] {
				t.Errorf("%s.%s is not in the list", pkg, m[1])
			}
		}
	}
	// And every bridge_igmp.sh test is ported.
	for _, sc := range bridgeScenarios() {
		if !seen["igmp."+sc.test] {
			t.Errorf("bridge scenario %s (%s) is not listed", sc.selftest, sc.test)
		}
	}
}
