package igmp

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The querier tests drive Tick with a fake clock and capture every frame
// the send function gets, stamped with the time of the Tick that sent it.

var querierSelf = mustAddr("198.19.0.5")

// sentQuery is one captured query frame, parsed back.
type sentQuery struct {
	at       time.Duration // since t0
	src, dst netip.Addr    // IPv4 addresses
	ethDst   [6]byte
	msg      Message
}

func (q sentQuery) sources() []netip.Addr {
	var out []netip.Addr
	for i := range q.msg.NumSources() {
		out = append(out, q.msg.Source(i))
	}
	return out
}

// querierRig is a Querier with a fake clock and a capture of its frames.
type querierRig struct {
	t    *testing.T
	q    *Querier
	now  time.Time
	sent []sentQuery
}

func newQuerierRig(t *testing.T, cfg Config) *querierRig {
	r := &querierRig{t: t, now: t0}
	r.q = NewQuerier(cfg, querierSelf, testMAC, func(frame []byte) error {
		f := slices.Clone(frame) // the querier reuses its buffer
		src, dst, igmp, ok := FromFrame(f)
		if !ok {
			t.Fatalf("querier sent a frame FromFrame refuses: % x", f)
		}
		m, reason := Parse(igmp)
		if reason != OK {
			t.Fatalf("querier sent a message Parse refuses: %v", reason)
		}
		r.sent = append(r.sent, sentQuery{at: r.now.Sub(t0), src: src, dst: dst, ethDst: [6]byte(f[:6]), msg: m})
		return nil
	})
	return r
}

// run calls Tick at every time it asks for, up to and including until.
func (r *querierRig) run(until time.Duration) {
	r.t.Helper()
	for !r.now.After(at(until)) {
		next := r.q.Tick(r.now)
		if !next.After(r.now) {
			r.t.Fatalf("Tick(%v) asked to be called again at %v", r.now.Sub(t0), next.Sub(t0))
		}
		r.now = next
	}
}

// tickAt moves the clock to d and calls Tick once.
func (r *querierRig) tickAt(d time.Duration) time.Time {
	r.now = at(d)
	return r.q.Tick(r.now)
}

func (r *querierRig) times() []time.Duration { return times(r.sent) }

func times(sent []sentQuery) []time.Duration {
	var out []time.Duration
	for _, s := range sent {
		out = append(out, s.at)
	}
	return out
}

// specific returns the group-specific and group-and-source-specific
// queries among those sent.
func (r *querierRig) specific() []sentQuery {
	var out []sentQuery
	for _, s := range r.sent {
		if !s.msg.Group().IsUnspecified() {
			out = append(out, s)
		}
	}
	return out
}

// checkGeneral checks that s is an IGMPv3 general query as the querier of
// cfg sends it.
func checkGeneral(t *testing.T, s sentQuery, cfg Config) {
	t.Helper()
	cfg = cfg.withDefaults()
	m := s.msg
	switch {
	case m.Type() != TypeQuery || m.QueryVersion() != 3:
		t.Errorf("at %v: type %#x version %d, want a v3 query", s.at, m.Type(), m.QueryVersion())
	case s.src != netip.IPv4Unspecified() || s.dst != AllHosts || s.ethDst != MulticastMAC(AllHosts):
		t.Errorf("at %v: %v -> %v (%x), want 0.0.0.0 -> 224.0.0.1", s.at, s.src, s.dst, s.ethDst)
	case m.Group() != netip.IPv4Unspecified() || m.NumSources() != 0:
		t.Errorf("at %v: group %v with %d sources, want a general query", s.at, m.Group(), m.NumSources())
	case m.MaxResp() != cfg.ResponseInterval:
		t.Errorf("at %v: max resp %v, want %v", s.at, m.MaxResp(), cfg.ResponseInterval)
	case m.QRV() != cfg.Robustness || m.QQI() != cfg.QueryInterval || m.SFlag():
		t.Errorf("at %v: QRV %d QQI %v S %v, want %d %v false", s.at, m.QRV(), m.QQI(), m.SFlag(), cfg.Robustness, cfg.QueryInterval)
	}
}

// TestQuerierGeneralQueries is conformance case 13, first part: startup
// queries, then one every query interval.
func TestQuerierGeneralQueries(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want []time.Duration
	}{
		{
			name: "defaults",
			cfg:  Config{},
			// two startup queries QI/4 apart, then every QI
			want: []time.Duration{0, 31250 * time.Millisecond, 156250 * time.Millisecond, 281250 * time.Millisecond},
		},
		{
			name: "robustness 3, QI 20s, response 5s",
			cfg:  Config{Robustness: 3, QueryInterval: 20 * time.Second, ResponseInterval: 5 * time.Second},
			want: []time.Duration{0, 5 * time.Second, 10 * time.Second, 30 * time.Second, 50 * time.Second, 70 * time.Second},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newQuerierRig(t, tc.cfg)
			r.run(tc.want[len(tc.want)-1] + time.Second)
			if got := r.times(); !slices.Equal(got, tc.want) {
				t.Fatalf("queries sent at %v, want %v", got, tc.want)
			}
			for _, s := range r.sent {
				checkGeneral(t, s, tc.cfg)
			}
			if r.q.Sent() != uint64(len(tc.want)) {
				t.Errorf("Sent() = %d, want %d", r.q.Sent(), len(tc.want))
			}
			if !r.q.Active(r.now) {
				t.Errorf("not Active with no other querier")
			}
		})
	}
	t.Run("a late Tick sends nothing twice", func(t *testing.T) {
		r := newQuerierRig(t, Config{})
		r.tickAt(0)
		r.tickAt(time.Second) // nothing due
		r.tickAt(10 * time.Minute)
		r.tickAt(10 * time.Minute)
		if got := r.times(); !slices.Equal(got, []time.Duration{0, 10 * time.Minute}) {
			t.Errorf("queries sent at %v", got)
		}
	})
}

// TestQuerierLastMember is conformance case 13, second part: the specific
// queries after the local host leaves a group or blocks sources.
func TestQuerierLastMember(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		query Query
	}{
		{"group-specific", Config{}, Query{Group: grp1}},
		{"group-specific, robustness 3", Config{Robustness: 3, LastMemberInterval: 300 * time.Millisecond}, Query{Group: grp1}},
		{"group-and-source-specific", Config{}, Query{Group: grp2, Sources: []netip.Addr{s1, s2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.withDefaults()
			r := newQuerierRig(t, tc.cfg)
			r.run(cfg.QueryInterval) // startup done
			r.sent = nil
			start := 200 * time.Second
			r.now = at(start)
			r.q.LastMember(tc.query, r.now)
			r.run(start + 10*time.Second)

			var want []time.Duration
			for i := range cfg.Robustness {
				want = append(want, start+time.Duration(i)*cfg.LastMemberInterval)
			}
			if got := times(r.specific()); !slices.Equal(got, want) {
				t.Fatalf("specific queries sent at %v, want %v", got, want)
			}
			for _, s := range r.specific() {
				m := s.msg
				if s.src != netip.IPv4Unspecified() || s.dst != tc.query.Group || s.ethDst != MulticastMAC(tc.query.Group) {
					t.Errorf("at %v: %v -> %v (%x), want 0.0.0.0 -> %v", s.at, s.src, s.dst, s.ethDst, tc.query.Group)
				}
				if m.QueryVersion() != 3 || m.Group() != tc.query.Group || !slices.Equal(s.sources(), tc.query.Sources) {
					t.Errorf("at %v: v%d query for %v %v, want v3 for %v %v", s.at, m.QueryVersion(), m.Group(), s.sources(), tc.query.Group, tc.query.Sources)
				}
				if m.MaxResp() != cfg.LastMemberInterval || m.QRV() != cfg.Robustness {
					t.Errorf("at %v: max resp %v QRV %d, want %v %d", s.at, m.MaxResp(), m.QRV(), cfg.LastMemberInterval, cfg.Robustness)
				}
			}
		})
	}
	t.Run("a second leave restarts the count", func(t *testing.T) {
		r := newQuerierRig(t, Config{})
		r.run(200 * time.Second)
		r.sent = nil
		r.q.LastMember(Query{Group: grp1}, r.now)
		r.q.Tick(r.now)
		r.q.LastMember(Query{Group: grp1}, r.now) // merged, not doubled
		start := r.now.Sub(t0)
		r.run(start + 10*time.Second)
		want := []time.Duration{start, start, start + time.Second}
		if got := times(r.specific()); !slices.Equal(got, want) {
			t.Errorf("queries sent at %v, want %v", got, want)
		}
	})
	t.Run("from the table", func(t *testing.T) {
		// The table's answer to a local leave is what the querier sends.
		tb := newTestTable(Config{})
		r := newQuerierRig(t, Config{})
		r.run(200 * time.Second)
		r.sent = nil
		tb.Handle(LocalPort, v2msg(t, TypeV2Report, grp1), r.now, nil)
		for _, q := range tb.Handle(LocalPort, v2msg(t, TypeV2Leave, grp1), r.now, nil) {
			r.q.LastMember(q, r.now)
		}
		r.run(r.now.Sub(t0) + 10*time.Second)
		if sent := r.specific(); len(sent) != 2 || sent[0].msg.Group() != grp1 {
			t.Errorf("sent %d specific queries after a leave, want 2 for %v", len(sent), grp1)
		}
	})
}

// TestQuerierElection is conformance case 13, third part: a querier with a
// lower address silences ours for the other querier present interval.
func TestQuerierElection(t *testing.T) {
	cases := []struct {
		name   string
		other  netip.Addr
		silent bool
	}{
		{"lower address", mustAddr("198.19.0.3"), true},
		{"much lower address", mustAddr("10.0.0.1"), true},
		{"higher address", mustAddr("198.19.0.9"), false},
		{"own address", querierSelf, false},
		{"unspecified", netip.IPv4Unspecified(), false},
		{"invalid", netip.Addr{}, false},
	}
	const heard = 200 * time.Second // startup is over; queries due at 156.25 s + n × 125 s
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newQuerierRig(t, Config{})
			r.run(heard - time.Second)
			r.sent = nil
			r.now = at(heard)
			r.q.HeardQuery(tc.other, r.now)
			if r.q.Active(r.now) == tc.silent {
				t.Fatalf("Active = %v, want %v", tc.silent, !tc.silent)
			}
			r.q.LastMember(Query{Group: grp1}, r.now)
			if !tc.silent {
				r.run(heard + 300*time.Second)
				if len(r.sent) < 4 { // 2 specific queries, general at 281.25 s and 406.25 s
					t.Errorf("sent %v, want the querier to go on", r.times())
				}
				return
			}
			if next := r.tickAt(heard + time.Second); !next.Equal(at(heard + oqpi)) {
				t.Errorf("silenced Tick asked for %v, want the end of OQPI %v", next.Sub(t0), heard+oqpi)
			}
			r.run(heard + oqpi - time.Millisecond)
			if len(r.sent) != 0 {
				t.Fatalf("silenced querier sent at %v", r.times())
			}
			if r.q.Active(at(heard + oqpi - time.Millisecond)) {
				t.Errorf("Active before OQPI passed")
			}
			// OQPI passes: take over at once with a general query.
			r.run(heard + oqpi)
			if got := r.times(); !slices.Equal(got, []time.Duration{heard + oqpi}) {
				t.Fatalf("after OQPI sent at %v, want one general query at %v", got, heard+oqpi)
			}
			checkGeneral(t, r.sent[0], Config{})
			if !r.q.Active(at(heard + oqpi)) {
				t.Errorf("not Active after OQPI")
			}
			r.run(heard + oqpi + 125*time.Second)
			if got := r.times(); !slices.Equal(got, []time.Duration{heard + oqpi, heard + oqpi + 125*time.Second}) {
				t.Errorf("after take-over sent at %v, want every QI", got)
			}
		})
	}
	t.Run("heard again within OQPI", func(t *testing.T) {
		r := newQuerierRig(t, Config{})
		r.run(heard)
		r.sent = nil
		other := mustAddr("198.19.0.1")
		r.q.HeardQuery(other, at(heard))
		r.now = at(heard + 200*time.Second)
		r.q.HeardQuery(other, r.now)
		r.run(heard + 200*time.Second + oqpi - time.Millisecond)
		if len(r.sent) != 0 {
			t.Fatalf("sent at %v while the other querier kept talking", r.times())
		}
		r.run(heard + 200*time.Second + oqpi)
		if len(r.sent) != 1 {
			t.Errorf("sent at %v, want a take-over query", r.times())
		}
	})
	t.Run("silenced during startup", func(t *testing.T) {
		r := newQuerierRig(t, Config{})
		r.q.HeardQuery(mustAddr("198.19.0.1"), t0)
		r.run(oqpi - time.Millisecond)
		if len(r.sent) != 0 {
			t.Fatalf("sent at %v while silenced", r.times())
		}
		r.run(oqpi)
		if got := r.times(); !slices.Equal(got, []time.Duration{oqpi}) {
			t.Errorf("sent at %v, want a general query at OQPI", got)
		}
	})
}

// TestQuerierLongSourceList checks that a group-and-source-specific query
// with more sources than fit one frame is cut to fit.
func TestQuerierLongSourceList(t *testing.T) {
	r := newQuerierRig(t, Config{})
	r.run(0)
	r.sent = nil
	srcs := make([]netip.Addr, 500)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	}
	r.q.LastMember(Query{Group: grp1, Sources: srcs}, r.now)
	r.q.Tick(r.now)
	sent := r.specific()
	if len(sent) != 1 {
		t.Fatalf("sent %d specific queries, want 1", len(sent))
	}
	got := sent[0].sources()
	if len(got) == 0 || len(got) >= len(srcs) || !slices.Equal(got, srcs[:len(got)]) {
		t.Fatalf("query carries %d sources, want a prefix of the %d", len(got), len(srcs))
	}
	if n := FrameOverhead + QueryV3Len(len(got)); n > 14+1500 {
		t.Errorf("frame of %d bytes exceeds a 1500-byte MTU", n)
	}
}

// TestQuerierAnnounce checks what goes to the peers: the startup queries
// and a solicited general query, but not the periodic or specific ones, and
// solicits at most once per last member interval.
func TestQuerierAnnounce(t *testing.T) {
	cfg := Config{}.withDefaults()
	r := newQuerierRig(t, cfg)
	var announced []time.Duration
	r.q.SetAnnounce(func(frame []byte) error {
		if _, _, b, ok := FromFrame(frame); !ok {
			t.Fatal("announced frame is not IGMP")
		} else if m, reason := Parse(b); reason != OK || m.Type() != TypeQuery || m.Group().IsValid() && !m.Group().IsUnspecified() {
			t.Fatalf("announced %v %v, want a general query", reason, m.Group())
		}
		announced = append(announced, r.now.Sub(t0))
		return nil
	})
	r.run(3 * cfg.QueryInterval)
	// Robustness (2) startup queries are announced; the periodic ones are not.
	if len(announced) != cfg.Robustness || announced[0] != 0 || announced[1] != cfg.QueryInterval/4 {
		t.Fatalf("announced at %v, want the %d startup queries", announced, cfg.Robustness)
	}
	r.q.LastMember(Query{Group: netip.MustParseAddr("239.1.2.3")}, r.now)
	r.tickAt(r.now.Sub(t0) + time.Millisecond)
	if len(announced) != cfg.Robustness {
		t.Fatal("a group-specific query was announced")
	}
	// Solicit: a general query at the next Tick, announced; a second
	// Solicit within the last member interval does nothing. (First let the
	// last-member queries finish.)
	r.tickAt(r.now.Sub(t0) + 5*time.Second)
	base := r.now.Sub(t0)
	sent := len(r.sent)
	r.q.Solicit(r.now)
	r.tickAt(base + 100*time.Millisecond)
	if len(r.sent) != sent+1 || len(announced) != cfg.Robustness+1 {
		t.Fatalf("solicit: sent %d -> %d, announced %d", sent, len(r.sent), len(announced))
	}
	if got := r.sent[len(r.sent)-1].msg.MaxResp(); got != cfg.LastMemberInterval {
		t.Fatalf("solicited query max response %v, want the last member interval", got)
	}
	r.q.Solicit(at(base + 500*time.Millisecond))
	r.tickAt(base + 600*time.Millisecond)
	if len(r.sent) != sent+1 {
		t.Fatal("a second solicit within the last member interval sent a query")
	}
	r.q.Solicit(at(base + 2*time.Second))
	r.tickAt(base + 2100*time.Millisecond)
	if len(r.sent) != sent+2 || len(announced) != cfg.Robustness+2 {
		t.Fatalf("solicit after the response interval: sent %d, announced %d", len(r.sent)-sent, len(announced))
	}
}

// TestQuerierNoLockAcrossIO checks that the querier holds no lock while it
// does I/O: with send, or announce, blocked inside a Tick, the methods the
// data path calls (HeardQuery, LastMember, Solicit) and the status ones
// return.
func TestQuerierNoLockAcrossIO(t *testing.T) {
	const deadline = 5 * time.Second
	for _, blocking := range []string{"send", "announce"} {
		t.Run(blocking, func(t *testing.T) {
			entered := make(chan []byte, 1)
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			defer unblock()
			block := func(frame []byte) error {
				select {
				case entered <- slices.Clone(frame):
				default:
				}
				<-release
				return nil
			}
			noop := func([]byte) error { return nil }
			send, announce := noop, noop
			if blocking == "send" {
				send = block
			} else {
				announce = block
			}
			q := NewQuerier(Config{}, querierSelf, testMAC, func(f []byte) error { return send(f) })
			q.SetAnnounce(func(f []byte) error { return announce(f) })

			// The first startup query is due at t0: it is sent and announced.
			ticked := make(chan time.Time, 1)
			go func() { ticked <- q.Tick(t0) }()
			var frame []byte
			select {
			case frame = <-entered:
			case <-time.After(deadline):
				t.Fatalf("Tick did not call %s within %v", blocking, deadline)
			}

			returned := make(chan struct{})
			go func() {
				defer close(returned)
				q.LastMember(Query{Group: grp1, Sources: []netip.Addr{s1}}, t0)
				q.Solicit(t0)
				q.HeardQuery(mustAddr("198.19.0.1"), t0) // lower: silences q
				_ = q.Active(t0)
				_ = q.Sent()
				q.SetAnnounce(func(f []byte) error { return announce(f) })
			}()
			select {
			case <-returned:
			case <-time.After(deadline):
				t.Fatalf("the querier's methods did not return within %v while %s was blocked", deadline, blocking)
			}

			unblock()
			select {
			case next := <-ticked:
				if next.Before(t0) {
					t.Errorf("Tick returned %v", next)
				}
			case <-time.After(deadline):
				t.Fatalf("Tick did not return within %v of %s returning", deadline, blocking)
			}
			if _, _, b, ok := FromFrame(frame); !ok {
				t.Errorf("%s got a frame FromFrame refuses: % x", blocking, frame)
			} else if m, r := Parse(b); r != OK || m.Type() != TypeQuery {
				t.Errorf("%s got %v %#x, want a query", blocking, r, m.Type())
			}
			if q.Sent() != 1 {
				t.Errorf("Sent() = %d, want 1", q.Sent())
			}
			// The HeardQuery made while send was blocked holds: silenced.
			if q.Active(t0) {
				t.Error("Active after hearing a lower-addressed querier")
			}
		})
	}
}

// TestQuerierConcurrent runs Ticks on two goroutines while the data path's
// methods run on others, and checks every frame send and announce get.
// Under -race it finds a frame buffer that one Tick overwrites while
// another still sends it.
func TestQuerierConcurrent(t *testing.T) {
	cfg := Config{QueryInterval: time.Second, ResponseInterval: 100 * time.Millisecond, LastMemberInterval: 10 * time.Millisecond}
	var sent, announced atomic.Uint64
	check := func(what string, n *atomic.Uint64) func([]byte) error {
		return func(frame []byte) error {
			src, _, b, ok := FromFrame(frame)
			if !ok || src != netip.IPv4Unspecified() {
				t.Errorf("%s got a bad frame % x", what, frame)
				return nil
			}
			if m, r := Parse(b); r != OK || m.Type() != TypeQuery {
				t.Errorf("%s got %v %#x, want a query", what, r, m.Type())
			}
			n.Add(1)
			return nil
		}
	}
	q := NewQuerier(cfg, querierSelf, testMAC, check("send", &sent))
	q.SetAnnounce(check("announce", &announced))
	var clock atomic.Int64 // since t0
	now := func() time.Time { return t0.Add(time.Duration(clock.Load())) }
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 2000 {
				q.Tick(t0.Add(time.Duration(clock.Add(int64(5 * time.Millisecond)))))
			}
		})
	}
	wg.Go(func() {
		for i := range 2000 {
			g := netip.AddrFrom4([4]byte{239, 1, 2, byte(i)})
			q.LastMember(Query{Group: g, Sources: allSources[:i%len(allSources)]}, now())
			if i%10 == 0 {
				q.Solicit(now())
			}
			if i%500 == 499 {
				q.HeardQuery(mustAddr("198.19.0.1"), now())
			}
			_ = q.Active(now())
		}
	})
	wg.Wait()
	if sent.Load() == 0 || announced.Load() == 0 {
		t.Fatalf("sent %d, announced %d: want both", sent.Load(), announced.Load())
	}
	if q.Sent() != sent.Load() {
		t.Errorf("Sent() = %d, send accepted %d", q.Sent(), sent.Load())
	}
}
