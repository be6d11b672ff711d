package igmp

import (
	"net"
	"net/netip"
	"sync"
	"time"
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
// Its queries go into the TAP only and are never forwarded to peers. They
// carry the source address 0.0.0.0, as a snooping switch's querier does:
// Linux drops packets whose source is one of its own addresses, and accepts
// IGMP from 0.0.0.0. The election compares the node's overlay address.
//
// Tick drives it; the send function writes a frame into the TAP. It is safe
// for concurrent use.
type Querier struct {
	cfg  Config
	self netip.Addr
	mac  net.HardwareAddr
	send func(frame []byte) error

	mu          sync.Mutex
	startupLeft int
	nextGeneral time.Time
	otherUntil  time.Time
	other       netip.Addr
	pending     []pendingQuery
	buf         []byte
	igmpBuf     []byte
	sent        uint64
	lastSolicit time.Time
	announce    func(frame []byte) error
	lastLen     int  // length of the last frame built in buf
	solicited   bool // the next general query was asked for by Solicit
}

type pendingQuery struct {
	Query
	left int
	next time.Time
}

// NewQuerier returns a querier for the TAP whose overlay address is self
// and MAC address mac. send writes a frame into the TAP.
func NewQuerier(cfg Config, self netip.Addr, mac net.HardwareAddr, send func(frame []byte) error) *Querier {
	cfg = cfg.withDefaults()
	return &Querier{
		cfg:         cfg,
		self:        self,
		mac:         mac,
		send:        send,
		startupLeft: cfg.Robustness,
		buf:         make([]byte, 1600),
		igmpBuf:     make([]byte, 1500),
	}
}

// SetAnnounce gives the querier a way to send its startup queries to every
// peer as well as into the TAP. A node that starts (or restarts) knows
// nothing of its peers' groups; its startup queries reach their hosts,
// whose reports then reach it within one response interval. Periodic and
// specific queries stay on the local TAP.
func (q *Querier) SetAnnounce(announce func(frame []byte) error) {
	q.mu.Lock()
	q.announce = announce
	q.mu.Unlock()
}

// Sent returns the number of queries sent.
func (q *Querier) Sent() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sent
}

// Active reports whether this node is the querier at now.
func (q *Querier) Active(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.otherUntil.After(now)
}

// HeardQuery records a query with IPv4 source src seen on the TAP, from the
// local host or delivered from a peer. A querier with a lower address than
// ours silences this one for the other querier present interval.
func (q *Querier) HeardQuery(src netip.Addr, now time.Time) {
	if !src.Is4() || src.IsUnspecified() || src.Compare(q.self) >= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.otherUntil = now.Add(q.cfg.OQPI())
	q.other = src
	q.pending = q.pending[:0] // a non-querier sends no specific queries
}

// LastMember schedules the specific queries that follow a leave or BLOCK of
// the local host: last member query count (the robustness) queries, a last
// member interval apart, the first at once on the next Tick.
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
// is due.
func (q *Querier) Tick(now time.Time) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.otherUntil.After(now) {
		return q.otherUntil
	}
	if !q.otherUntil.IsZero() {
		// The other querier went silent: take over with a general query.
		q.otherUntil = time.Time{}
		q.nextGeneral = now
	}
	next := time.Time{}
	if !q.nextGeneral.After(now) {
		maxResp := q.cfg.ResponseInterval
		if q.solicited && q.startupLeft == 0 {
			// A solicited query wants answers soon: peers that just
			// met wait for nothing else.
			maxResp = min(maxResp, q.cfg.LastMemberInterval)
		}
		q.sendLocked(netip.Addr{}, nil, maxResp)
		if (q.startupLeft > 0 || q.solicited) && q.announce != nil {
			_ = q.announce(q.buf[:q.lastLen])
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
	next = q.nextGeneral
	kept := q.pending[:0]
	for _, p := range q.pending {
		if !p.next.After(now) {
			q.sendLocked(p.Group, p.Sources, q.cfg.LastMemberInterval)
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
	q.pending = kept
	return next
}

func (q *Querier) sendLocked(group netip.Addr, sources []netip.Addr, maxResp time.Duration) {
	if len(sources) > 366 { // what fits one 1500-byte frame
		sources = sources[:366]
	}
	n := PutQueryV3(q.igmpBuf, group, maxResp, false, q.cfg.Robustness, q.cfg.QueryInterval, sources)
	dst := AllHosts
	if group.IsValid() && !group.IsUnspecified() {
		dst = group
	}
	f := BuildQueryFrame(q.buf, q.mac, netip.IPv4Unspecified(), dst, q.igmpBuf[:n])
	q.lastLen = f
	if q.send(q.buf[:f]) == nil {
		q.sent++
	}
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
