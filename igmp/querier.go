package igmp

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/mld"
)

// AllHosts is 224.0.0.1, the destination of general queries.
var AllHosts = netip.AddrFrom4([4]byte{224, 0, 0, 1})

// Querier is the IGMP querier of a node's own TAP (RFC 3376 section 6.1,
// RFC 2236 section 3). It sends robustness startup queries a quarter query
// interval apart, then a general query every query interval, and the
// group-specific and group-and-source-specific queries that follow a leave
// or BLOCK of the local host. It stays quiet while a querier with a lower
// address is heard and takes over after the other querier present interval.
//
// Every query goes into the TAP through the send function. With
// SetAnnounce, the startup queries and the general queries Solicit asks
// for also go to every peer; the periodic general queries and the specific
// ones stay on the TAP. Queries carry the source address 0.0.0.0, as a
// snooping switch's querier does: Linux drops packets whose source is one
// of its own addresses, and accepts IGMP from 0.0.0.0. The election
// compares the node's overlay address.
//
// A multicast router on the overlay takes part in the election too, and a
// router ignores a query from 0.0.0.0 (FRR's pimd drops IGMP from a source
// outside the interface's subnets). So while RouterPeers says a peer is a
// router port, each general query this querier sends also goes to the
// peers as an election query: the same general query addressed to
// AllRouters (224.0.0.2), which routers hear and hosts do not. A receiving
// meshcast writes a peer's query from 0.0.0.0 into its TAP with that peer's
// overlay address as the source, so a router there hears this node's
// address and defers to it when it is lower. A query that the local host
// sends from this node's own address (a router running on this host)
// silences this querier as a lower address would (HeardHostQuery).
//
// Tick drives it and is the only method that does I/O: it decides what is
// due and builds the frames under the querier's lock, then releases it
// before it calls send and announce. HeardQuery, LastMember and Solicit,
// which the data path calls, never wait for that I/O. It is safe for
// concurrent use; concurrent Ticks take turns.
type Querier struct {
	cfg  Config
	self netip.Addr
	mac  net.HardwareAddr
	send func(frame []byte) error
	v6   bool // an MLD querier (NewMLDQuerier)

	// tickMu serializes Ticks, so that the frames one Tick built stay as
	// they are until it has sent them. Only Tick takes it, before mu, and
	// it is held across I/O: nothing but another Tick waits for it.
	tickMu sync.Mutex
	out    []outFrame // the frames of the running Tick; guarded by tickMu
	sent   atomic.Uint64

	// mu guards the state below; it is never held across I/O.
	mu          sync.Mutex
	startupLeft int
	nextGeneral time.Time
	otherUntil  time.Time
	other       netip.Addr
	pending     []pendingQuery
	lastSolicit time.Time
	announce    func(frame []byte) error
	solicited   bool // the next general query was asked for by Solicit
	routerPeers bool // a peer is a router port: general queries go to the peers as election queries
	electNow    bool // a router peer appeared: send an election query on the next Tick
}

// outFrame is one query a Tick sends once it has released mu.
type outFrame struct {
	buf      []byte // room for a full frame; reused by later Ticks
	n        int    // the frame is buf[:n]
	tap      bool   // it goes into the TAP
	announce bool   // it goes to the peers
}

// maxQuerySources is the most sources one query carries, as many as fit a
// 1500-byte IPv4 packet; maxFrame is the length of such a query's frame,
// the longest the querier builds.
const (
	maxQuerySources  = (1500 - (FrameOverhead - ethHeaderLen) - QueryV3HeaderLen) / 4 // 366
	maxQuerySources6 = (1500 - (mld.FrameOverhead - ethHeaderLen) - mld.QueryV2HeaderLen) / 16
	maxFrame         = max(FrameOverhead+QueryV3HeaderLen+4*maxQuerySources, mld.FrameOverhead+mld.QueryV2HeaderLen+16*maxQuerySources6)
)

// IPv6 destinations of MLD queries: general queries go to all nodes, and
// election queries to all routers.
var (
	allNodes6   = netip.MustParseAddr("ff02::1")
	allRouters6 = netip.MustParseAddr("ff02::2")
)

type pendingQuery struct {
	Query
	left int
	next time.Time
}

// NewQuerier returns a querier for the TAP whose overlay address is self
// and MAC address mac. send writes a frame into the TAP; Tick calls it
// without holding the querier's lock, and the frame is valid only until
// send returns.
func NewQuerier(cfg Config, self netip.Addr, mac net.HardwareAddr, send func(frame []byte) error) *Querier {
	cfg = cfg.withDefaults()
	return &Querier{
		cfg:         cfg,
		self:        self,
		mac:         mac,
		send:        send,
		startupLeft: cfg.Robustness,
	}
}

// NewMLDQuerier returns the MLD querier (RFC 3810 section 6) of the TAP
// whose IPv6 link-local address is self and MAC address mac. It is a
// Querier as NewQuerier's, with the same timers and behaviour, that sends
// MLDv2 queries from self, as RFC 3810 section 5.1.14 requires (a host
// drops a query whose source is not link-local): general queries to
// ff02::1, election queries to ff02::2, specific ones to their group.
//
// Every query carries mld.QuerierMark in its Reserved field, which hosts
// and routers ignore. A receiving meshcast knows by the mark that a peer's
// query came from a meshcast querier and not from a multicast router: it
// makes the peer no router port and silences no querier, as IGMP queries
// from 0.0.0.0 do not. Each meshcast node is the querier of its own TAP,
// and its periodic queries do not cross the mesh.
func NewMLDQuerier(cfg Config, self netip.Addr, mac net.HardwareAddr, send func(frame []byte) error) *Querier {
	q := NewQuerier(cfg, self, mac, send)
	q.v6 = true
	return q
}

// SetAnnounce gives the querier a way to send its startup queries to every
// peer as well as into the TAP. A node that starts (or restarts) knows
// nothing of its peers' groups; its startup queries reach their hosts,
// whose reports then reach it within one response interval. The general
// queries Solicit asks for are announced too. Periodic and specific
// queries stay on the local TAP. Tick calls announce after send, without
// holding the querier's lock; the frame is valid only until announce
// returns.
func (q *Querier) SetAnnounce(announce func(frame []byte) error) {
	q.mu.Lock()
	q.announce = announce
	q.mu.Unlock()
}

// Sent returns the number of queries sent into the TAP (those send
// accepted).
func (q *Querier) Sent() uint64 { return q.sent.Load() }

// Active reports whether this node is the querier at now.
func (q *Querier) Active(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.otherUntil.After(now)
}

// HeardQuery records a query with source src (IPv4 for an IGMP querier,
// IPv6 for an MLD one; others are ignored) delivered from a peer. A
// querier with a lower address than ours silences this one for the other
// querier present interval.
func (q *Querier) HeardQuery(src netip.Addr, now time.Time) {
	if src.Is4() != !q.v6 || src.IsUnspecified() || src.Compare(q.self) >= 0 {
		return
	}
	q.silence(src, now)
}

// HeardHostQuery records a query with source src (of the querier's
// family) that the local host
// sent on the TAP. A source lower than ours silences this querier, and so
// does our own address: that is a multicast router on this host (FRR's
// pimd on the TAP, say), the better querier of the TAP, whose queries carry
// the address this querier would stand for in the election.
func (q *Querier) HeardHostQuery(src netip.Addr, now time.Time) {
	if src.Is4() != !q.v6 || src.IsUnspecified() || src.Compare(q.self) > 0 {
		return
	}
	q.silence(src, now)
}

// RouterPeers tells the querier whether any peer is a router port, so that
// its general queries also go to the peers as election queries, and the
// first one at once. Snooping calls it before every Tick.
func (q *Querier) RouterPeers(present bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if present && !q.routerPeers {
		q.electNow = true
	}
	q.routerPeers = present
}

func (q *Querier) silence(src netip.Addr, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.otherUntil = now.Add(q.cfg.OQPI())
	q.other = src
	clear(q.pending)
	q.pending = q.pending[:0] // a non-querier sends no specific queries
}

// LastMember schedules the specific queries that follow a leave or BLOCK of
// the local host: last member query count (the robustness) queries, a last
// member interval apart, the first at once on the next Tick. It keeps
// query.Sources (Table.Handle hands out a fresh copy): the caller must not
// change them afterwards.
func (q *Querier) LastMember(query Query, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.otherUntil.After(now) {
		return
	}
	for i := range q.pending {
		p := &q.pending[i]
		if p.Group == query.Group && len(p.Sources) == 0 && len(query.Sources) == 0 {
			p.left, p.next = q.cfg.Robustness, now
			return
		}
	}
	q.pending = append(q.pending, pendingQuery{Query: query, left: q.cfg.Robustness, next: now})
}

// Tick sends whatever queries are due at now and returns when the next one
// is due. It builds the frames under the querier's lock and sends them
// after releasing it, so the other methods never wait for send or
// announce; a concurrent Tick waits for this one to finish.
func (q *Querier) Tick(now time.Time) time.Time {
	q.tickMu.Lock()
	defer q.tickMu.Unlock()
	q.mu.Lock()
	out, next := q.dueLocked(now)
	announce := q.announce
	q.mu.Unlock()

	for i := range out {
		f := &out[i]
		if f.tap && q.send(f.buf[:f.n]) == nil {
			q.sent.Add(1)
		}
		if f.announce && announce != nil {
			_ = announce(f.buf[:f.n])
		}
	}
	return next
}

// dueLocked advances the schedule to now and builds the frames due, in the
// order they go out, into q.out, which it returns with the time the next
// query is due. The caller holds tickMu and mu.
func (q *Querier) dueLocked(now time.Time) ([]outFrame, time.Time) {
	q.out = q.out[:0]
	if q.otherUntil.After(now) {
		return q.out, q.otherUntil
	}
	if !q.otherUntil.IsZero() {
		// The other querier went silent: take over with a general query.
		q.otherUntil = time.Time{}
		q.nextGeneral = now
	}
	if !q.nextGeneral.After(now) {
		maxResp := q.cfg.ResponseInterval
		if q.solicited && q.startupLeft == 0 {
			// A solicited query wants answers soon: peers that just
			// met wait for nothing else.
			maxResp = min(maxResp, q.cfg.LastMemberInterval)
		}
		announce := q.startupLeft > 0 || q.solicited
		q.buildLocked(netip.Addr{}, nil, maxResp, AllHosts, true, announce)
		if q.routerPeers {
			// Announced to 224.0.0.1, the routers hear it already.
			q.electNow = !announce
		}
		q.solicited = false
		if q.startupLeft > 1 {
			q.startupLeft--
			q.nextGeneral = now.Add(q.cfg.QueryInterval / 4)
		} else {
			q.startupLeft = 0
			q.nextGeneral = now.Add(q.cfg.QueryInterval)
		}
	}
	if q.electNow && q.announce != nil {
		// The general query as an election query, for the routers
		// among the peers only.
		q.buildLocked(netip.Addr{}, nil, q.cfg.ResponseInterval, AllRouters, false, true)
	}
	q.electNow = false
	next := q.nextGeneral
	kept := q.pending[:0]
	for _, p := range q.pending {
		if !p.next.After(now) {
			q.buildLocked(p.Group, p.Sources, q.cfg.LastMemberInterval, p.Group, true, false)
			p.left--
			p.next = now.Add(q.cfg.LastMemberInterval)
		}
		if p.left > 0 {
			kept = append(kept, p)
			if p.next.Before(next) {
				next = p.next
			}
		}
	}
	clear(q.pending[len(kept):]) // drop the finished queries' Sources
	q.pending = kept
	return q.out, next
}

// buildLocked appends to q.out the frame of a query for group (a general
// query for the zero Addr) and sources, cut to what fits one frame, to the
// IPv4 destination dst, for the TAP or the peers or both. It reuses the
// buffers earlier Ticks left in q.out.
func (q *Querier) buildLocked(group netip.Addr, sources []netip.Addr, maxResp time.Duration, dst netip.Addr, tap, announce bool) {
	if len(sources) > maxQuerySources {
		sources = sources[:maxQuerySources]
	}
	if len(q.out) < cap(q.out) {
		q.out = q.out[:len(q.out)+1]
	} else {
		q.out = append(q.out, outFrame{})
	}
	f := &q.out[len(q.out)-1]
	if f.buf == nil {
		f.buf = make([]byte, maxFrame)
	}
	f.tap, f.announce = tap, announce
	if q.v6 {
		if len(sources) > maxQuerySources6 {
			sources = sources[:maxQuerySources6]
		}
		switch dst {
		case AllHosts:
			dst = allNodes6
		case AllRouters:
			dst = allRouters6
		}
		msg := f.buf[mld.FrameOverhead:]
		n := mld.PutQuery(msg, group, maxResp, false, q.cfg.Robustness, q.cfg.QueryInterval, sources, true)
		f.n = mld.BuildFrame(f.buf, q.mac, q.self, dst, msg[:n])
		return
	}
	msg := f.buf[FrameOverhead:]
	n := PutQueryV3(msg, group, maxResp, false, q.cfg.Robustness, q.cfg.QueryInterval, sources)
	f.n = BuildQueryFrame(f.buf, q.mac, netip.IPv4Unspecified(), dst, msg[:n])
}

// Solicit asks for a general query on the next Tick, into the TAP and (with
// SetAnnounce) to every peer, so that this host and every peer's host
// report their groups again. meshcast calls it when a peer is added or
// comes back after a silence: the two sides know nothing of each other's
// groups yet. It does nothing while another querier is present, and at most
// once per last member interval.
func (q *Querier) Solicit(now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.otherUntil.After(now) {
		return
	}
	if !q.lastSolicit.IsZero() && now.Sub(q.lastSolicit) < q.cfg.LastMemberInterval {
		return
	}
	q.lastSolicit = now
	q.solicited = true
	if q.nextGeneral.After(now) {
		q.nextGeneral = now
	}
}
