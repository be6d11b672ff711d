package igmp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The querier election against a multicast router on the overlay.
//
// frrRouter models how FRR's pimd (8.4, pimd/pim_mroute.c
// process_igmp_packet and pimd/pim_igmp.c igmp_recv_query) takes a query
// on its interface: one from a source outside the interface's subnets
// (0.0.0.0 among them) is dropped as "from a non-connected source", one
// from its own address is ignored, and one from a lower address than its
// own, no higher than the querier it knows, makes it a non-querier for the
// other querier present interval, computed from the query's QRV and QQI
// (which a non-querier adopts) and its own max response time.
type frrRouter struct {
	addr     netip.Prefix // its interface address, with the subnet
	qi       time.Duration
	querier  netip.Addr // igmp->querier_addr
	other    time.Time  // end of the other-querier-present timer
	lastSent time.Time
	sent     int
}

func newFRR(addr string, qi time.Duration) *frrRouter {
	p := netip.MustParsePrefix(addr)
	return &frrRouter{addr: p, qi: qi, querier: p.Addr()}
}

func (f *frrRouter) hear(t *testing.T, frame []byte, now time.Time) {
	t.Helper()
	src, _, b, ok := FromFrame(frame)
	if !ok {
		t.Fatalf("the router got a frame FromFrame refuses: % x", frame)
	}
	m, r := Parse(b)
	if r != OK {
		t.Fatalf("the router got a message Parse refuses: %v", r)
	}
	if m.Type() != TypeQuery || !f.addr.Masked().Contains(src) || src == f.addr.Addr() {
		return
	}
	if src.Compare(f.addr.Addr()) < 0 && src.Compare(f.querier) <= 0 {
		f.querier = src
		f.other = now.Add(time.Duration(m.QRV())*m.QQI() + 5*time.Second) // half FRR's max response time of 10 s
	}
}

func (f *frrRouter) active(now time.Time) bool { return !f.other.After(now) }

// tick has the router send its general query when it is the querier and
// one is due; it returns the query's frame, or nil.
func (f *frrRouter) tick(now time.Time) []byte {
	if !f.active(now) {
		return nil
	}
	if !f.lastSent.IsZero() && now.Sub(f.lastSent) < f.qi {
		return nil
	}
	if f.querier != f.addr.Addr() {
		f.querier = f.addr.Addr() // the other querier went quiet
	}
	f.lastSent = now
	f.sent++
	q := make([]byte, QueryV3HeaderLen)
	PutQueryV3(q, netip.Addr{}, 10*time.Second, true, 2, f.qi, nil)
	frame := make([]byte, FrameOverhead+len(q))
	n := BuildQueryFrame(frame, testMAC2, f.addr.Addr(), AllHosts, q)
	return frame[:n]
}

// electionRig is the overlay of the election tests: node M, whose querier
// is under test, and node R, on whose TAP the router runs. What M
// announces reaches R's TAP as meshcast's ingress writes it there (a query
// from 0.0.0.0 gets M's overlay address), and the router's queries reach
// M's querier as a peer's.
type electionRig struct {
	t         *testing.T
	q         *Querier
	mAddr     netip.Addr
	frr       *frrRouter
	now       time.Time
	rewrite   bool     // R's meshcast gives M's queries M's address
	tap       [][]byte // what M's querier wrote into its own TAP
	announced [][]byte // what it sent to the peers
}

func newElectionRig(t *testing.T, cfg Config, mAddr, frrAddr string) *electionRig {
	r := &electionRig{t: t, mAddr: mustAddr(mAddr), frr: newFRR(frrAddr, cfg.QueryInterval), now: t0, rewrite: true}
	r.q = NewQuerier(cfg, r.mAddr, testMAC, func(f []byte) error {
		r.tap = append(r.tap, slices.Clone(f))
		return nil
	})
	r.q.SetAnnounce(func(f []byte) error {
		r.announced = append(r.announced, slices.Clone(f))
		f = slices.Clone(f)
		if src, _, _, ok := FromFrame(f); ok && src.IsUnspecified() && r.rewrite {
			SetSource(f, r.mAddr)
		}
		r.frr.hear(t, f, r.now)
		return nil
	})
	return r
}

// run advances the clock in steps of step up to d, with the router's
// queries reaching M, M knowing R as a router port once it heard one,
// and M's querier ticking.
func (r *electionRig) run(d, step time.Duration) {
	routerPort := false
	for end := r.now.Add(d); !r.now.After(end); r.now = r.now.Add(step) {
		if f := r.frr.tick(r.now); f != nil {
			routerPort = true
			src, _, _, _ := FromFrame(f)
			r.q.HeardQuery(src, r.now)
		}
		r.q.RouterPeers(routerPort)
		r.q.Tick(r.now)
	}
}

// TestQuerierElectionWithRouter: with the router's address lower than the
// node's, the router is the querier and meshcast's querier goes quiet;
// with it higher, meshcast's querier goes on and the router stops, because
// it hears meshcast's election queries from the node's address. Without
// that address (the query from 0.0.0.0, as before) the router never
// defers, and both query.
func TestQuerierElectionWithRouter(t *testing.T) {
	cfg := Config{QueryInterval: 2 * time.Second, ResponseInterval: time.Second, LastMemberInterval: 100 * time.Millisecond}
	const step = 100 * time.Millisecond
	const span = 60 * time.Second

	t.Run("router lower", func(t *testing.T) {
		r := newElectionRig(t, cfg, "198.19.0.2", "198.19.0.1/24")
		r.run(span, step)
		if !r.frr.active(r.now) || r.frr.sent < int(span/cfg.QueryInterval)-1 {
			t.Errorf("router: querier %v after sending %d queries; want the querier", r.frr.active(r.now), r.frr.sent)
		}
		if r.q.Active(r.now) {
			t.Error("meshcast's querier is active beside a lower-addressed router")
		}
		// Quiet from the router's first query (at t0) on: only the
		// first startup query went out before it.
		if len(r.tap) > 1 {
			t.Errorf("meshcast's querier wrote %d queries into its TAP, want at most the first startup one", len(r.tap))
		}
		for _, f := range r.announced {
			if _, dst, _, _ := FromFrame(f); dst == AllRouters {
				t.Errorf("a silenced querier sent an election query")
			}
		}
	})

	t.Run("router higher", func(t *testing.T) {
		r := newElectionRig(t, cfg, "198.19.0.2", "198.19.0.3/24")
		r.run(span, step)
		if r.frr.active(r.now) || r.frr.querier != r.mAddr {
			t.Errorf("router: querier %v, knows querier %v; want it quiet behind %v", r.frr.active(r.now), r.frr.querier, r.mAddr)
		}
		// The router sent its first query before it heard M, and no
		// more once it did.
		if r.frr.sent != 1 {
			t.Errorf("router sent %d queries, want 1", r.frr.sent)
		}
		if !r.q.Active(r.now) {
			t.Error("meshcast's querier went quiet behind a higher-addressed router")
		}
		if want := int(span/cfg.QueryInterval) - 1; len(r.tap) < want {
			t.Errorf("meshcast's querier wrote %d queries into its TAP, want at least %d", len(r.tap), want)
		}
		// Its periodic queries went to the peers as election queries:
		// to 224.0.0.2 from 0.0.0.0, general v3 queries with its QRV
		// and QQI.
		elections := 0
		for _, f := range r.announced {
			src, dst, b, ok := FromFrame(f)
			m, _ := Parse(b)
			if !ok || dst != AllRouters {
				continue
			}
			elections++
			if src != netip.IPv4Unspecified() || [6]byte(f[:6]) != MulticastMAC(AllRouters) ||
				m.QueryVersion() != 3 || !m.Group().IsUnspecified() || m.QQI() != cfg.QueryInterval || m.QRV() != 2 {
				t.Errorf("election query %v -> %v (% x): group %v QQI %v QRV %d", src, dst, f[:6], m.Group(), m.QQI(), m.QRV())
			}
		}
		if want := int(span/cfg.QueryInterval) - 2; elections < want {
			t.Errorf("%d election queries, want at least %d", elections, want)
		}
		for _, f := range r.tap {
			if _, dst, _, _ := FromFrame(f); dst != AllHosts {
				t.Errorf("a query to %v went into the TAP", dst)
			}
		}
	})

	t.Run("router higher, queries from 0.0.0.0", func(t *testing.T) {
		r := newElectionRig(t, cfg, "198.19.0.2", "198.19.0.3/24")
		r.rewrite = false
		r.run(span, step)
		if !r.frr.active(r.now) || !r.q.Active(r.now) {
			t.Errorf("router querier %v, meshcast querier %v: want both, as the router ignores 0.0.0.0", r.frr.active(r.now), r.q.Active(r.now))
		}
	})
}

// TestQuerierElectionQueries: election queries go only to the peers, and
// only while a router peer is known; the first goes at once when one
// appears; a startup or solicited query, announced to 224.0.0.1 already,
// gets no second copy; a silenced querier sends none.
func TestQuerierElectionQueries(t *testing.T) {
	cfg := Config{}
	var tap, ann []netip.Addr // destinations
	q := NewQuerier(cfg, querierSelf, testMAC, func(f []byte) error {
		_, dst, _, _ := FromFrame(f)
		tap = append(tap, dst)
		return nil
	})
	q.SetAnnounce(func(f []byte) error {
		_, dst, _, _ := FromFrame(f)
		ann = append(ann, dst)
		return nil
	})
	q.RouterPeers(true)
	q.Tick(at(0)) // the first startup query
	if !slices.Equal(tap, []netip.Addr{AllHosts}) || !slices.Equal(ann, []netip.Addr{AllHosts}) {
		t.Fatalf("startup with a router peer: TAP %v, peers %v; want one query to 224.0.0.1 each", tap, ann)
	}
	q.Tick(at(125 * time.Second / 4)) // the second startup query
	q.Tick(at(125*time.Second/4 + 125*time.Second))
	if !slices.Equal(tap, []netip.Addr{AllHosts, AllHosts, AllHosts}) || !slices.Equal(ann, []netip.Addr{AllHosts, AllHosts, AllRouters}) {
		t.Fatalf("TAP %v, peers %v; want the periodic query's election copy to 224.0.0.2", tap, ann)
	}
	// No router peer: no election queries.
	q.RouterPeers(false)
	tap, ann = nil, nil
	q.Tick(at(125*time.Second/4 + 250*time.Second))
	if len(tap) != 1 || len(ann) != 0 {
		t.Fatalf("without a router peer: TAP %v, peers %v", tap, ann)
	}
	// A router peer appears: an election query at once, and none
	// into the TAP.
	tap, ann = nil, nil
	q.RouterPeers(true)
	q.Tick(at(300 * time.Second))
	if len(tap) != 0 || !slices.Equal(ann, []netip.Addr{AllRouters}) {
		t.Fatalf("a router peer appeared: TAP %v, peers %v; want one election query", tap, ann)
	}
	if q.Sent() != 4 {
		t.Errorf("Sent() = %d, want the 4 queries into the TAP", q.Sent())
	}
	// A solicited query goes to 224.0.0.1 and needs no election copy.
	tap, ann = nil, nil
	q.Solicit(at(301 * time.Second))
	q.Tick(at(301 * time.Second))
	if !slices.Equal(tap, []netip.Addr{AllHosts}) || !slices.Equal(ann, []netip.Addr{AllHosts}) {
		t.Fatalf("solicited: TAP %v, peers %v", tap, ann)
	}
	// Silenced, it sends nothing, election queries included, even when
	// a router peer appears again.
	tap, ann = nil, nil
	q.HeardQuery(mustAddr("198.19.0.1"), at(302*time.Second))
	q.RouterPeers(false)
	q.RouterPeers(true)
	q.Tick(at(400 * time.Second))
	if len(tap) != 0 || len(ann) != 0 {
		t.Fatalf("silenced: TAP %v, peers %v", tap, ann)
	}
}

// TestQuerierHeardHostQuery: a query the local host sends from this
// node's own address is a router on this host, and silences the querier;
// the same address from a peer does not (HeardQuery).
func TestQuerierHeardHostQuery(t *testing.T) {
	cases := []struct {
		name   string
		src    netip.Addr
		silent bool
	}{
		{"own address", querierSelf, true},
		{"lower address", mustAddr("198.19.0.3"), true},
		{"higher address", mustAddr("198.19.0.9"), false},
		{"unspecified", netip.IPv4Unspecified(), false},
		{"invalid", netip.Addr{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := NewQuerier(Config{}, querierSelf, testMAC, func([]byte) error { return nil })
			q.HeardHostQuery(tc.src, at(0))
			if q.Active(at(time.Second)) == tc.silent {
				t.Errorf("HeardHostQuery(%v): Active = %v, want %v", tc.src, !tc.silent, !tc.silent)
			}
			if tc.silent && !q.Active(at(oqpi)) {
				t.Errorf("still silenced after the OQPI")
			}
		})
	}
	q := NewQuerier(Config{}, querierSelf, testMAC, func([]byte) error { return nil })
	q.HeardQuery(querierSelf, at(0))
	if !q.Active(at(time.Second)) {
		t.Error("HeardQuery of the own address from a peer silenced the querier")
	}
}
