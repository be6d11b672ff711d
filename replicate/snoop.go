package replicate

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/igmp"
)

// Unregistered says what happens to traffic for a group no peer has joined.
type Unregistered uint8

const (
	// UnregisteredFlood sends it to every peer (the default, as RFC 4541
	// section 2.1.2 recommends for a switch that cannot be sure it heard
	// every report).
	UnregisteredFlood Unregistered = iota
	// UnregisteredDrop sends it to router peers only.
	UnregisteredDrop
)

// Snooping wires IGMP snooping (RFC 4541) into the engine: the table that
// decides which peers get a group's traffic, and the querier of the local
// TAP.
//
//   - From the TAP: IGMP goes to every peer, and reports and leaves of the
//     local host update the table's local port (a leave makes the querier
//     send its last-member queries). Groups in 224.0.0.0/24 and non-IPv4
//     multicast go to every peer. Other groups go to their member peers,
//     whose source filters pass the sender, and to router peers.
//   - From a peer: reports and leaves update that peer's port and are not
//     delivered into the TAP, so the local host never suppresses its own
//     reports, unless a multicast router runs on the local host (see
//     below). Queries are delivered, and make the peer a router port. A
//     query from 0.0.0.0, the source a meshcast querier uses, makes no
//     router port, and goes into the TAP with the peer's overlay address
//     as its source: a router on this host ignores queries from 0.0.0.0
//     and needs the address for the querier election.
//   - Router ports (RFC 4541 section 2.1.1) are also learned from a
//     peer's PIMv2 Hellos (to 224.0.0.13; for their holdtime) and MRD
//     advertisements (RFC 4286; for their neighbor dead interval); both
//     are delivered into the TAP. A malformed PIM message is dropped and
//     counted as pim_malformed.
//   - A multicast router on the local host shows itself by the queries
//     from an address, the PIM Hellos or the MRD advertisements it sends
//     into the TAP. While it is there, the peers' reports and leaves go
//     into the TAP too: a router must hear them (RFC 4541 section
//     2.1.1), and every peer sends this node every group anyway, as a
//     router port.
//   - A message that fails its checksum is neither learned nor forwarded.
type Snooping struct {
	Table   *igmp.Table
	Querier *igmp.Querier // nil: no querier

	// Unregistered is the initial policy for unregistered groups: New
	// reads it once and puts it in force (overriding a SetUnregistered
	// made before). It is configuration, not state: SetUnregistered
	// changes the policy in force and leaves this field alone, and
	// UnregisteredPolicy reports the policy in force.
	Unregistered Unregistered

	policy atomic.Uint32 // the Unregistered in force; see SetUnregistered

	drops     [igmp.NumReasons]atomic.Uint64
	badIP     atomic.Uint64 // IGMP whose IPv4 header is malformed
	badPIM    atomic.Uint64 // PIM from a peer whose IPv4 header or PIM header is malformed
	unregDrop atomic.Uint64 // unregistered traffic with no router peer, dropped
	flooded   floodCounts   // unregistered traffic flooded, per group

	// floodBase is what the previous process flooded (Engine.Import), in
	// FloodCount order; Flooded adds it to flooded. It is kept apart so
	// that flooded keeps its single writer.
	floodBase atomic.Pointer[[]FloodCount]

	// hostRouter is when the multicast router heard last on the local
	// host stops counting as present, in unix nanoseconds (0: none
	// heard). The egress goroutine alone writes it.
	hostRouter atomic.Int64

	// Egress scratch; egress is one goroutine.
	ports   []igmp.Port
	queries []igmp.Query // the querier's answers to the local host's leaves
}

// decide returns the peers that get a copy of a multicast frame from the
// local host, appending to scratch where it must.
func (s *Snooping) decide(frame []byte, set *peerSet, scratch []*Peer, now int64) []*Peer {
	src, dst, proto, ok := igmp.IPv4Multicast(frame)
	if !ok {
		return set.list // broadcast, ARP, IPv6 and other non-IPv4 multicast
	}
	if proto == igmp.ProtoIGMP {
		if !s.snoopHost(frame, now) {
			return nil
		}
		return set.list
	}
	if dst.IsLinkLocalMulticast() {
		if proto == igmp.ProtoPIM && dst == igmp.AllPIMRouters {
			s.snoopHostPIM(frame, now)
		}
		return set.list
	}
	if cap(s.ports) < len(set.list) {
		s.ports = make([]igmp.Port, 0, len(set.list))
	}
	ports, registered := s.Table.Lookup(dst, src, s.ports[:0])
	s.ports = ports[:0]
	if !registered && s.UnregisteredPolicy() == UnregisteredFlood {
		if n := len(set.list); n > 0 {
			routers := 0
			for _, port := range ports {
				if set.byAddr[port.As4()] != nil {
					routers++
				}
			}
			s.flooded.add(dst, n, n-routers)
		}
		return set.list
	}
	for _, port := range ports {
		if p := set.byAddr[port.As4()]; p != nil {
			scratch = append(scratch, p)
		}
	}
	if !registered && len(scratch) == 0 {
		s.unregDrop.Add(1)
	}
	return scratch
}

// igmpOf finds the IGMP message of a frame, counting a malformed IPv4
// header.
func (s *Snooping) igmpOf(frame []byte) (src, dst netip.Addr, b []byte, ok bool) {
	src, dst, b, ok = igmp.FromFrame(frame)
	if !ok {
		s.badIP.Add(1)
	}
	return src, dst, b, ok
}

// parse validates an IGMP message, counting what it refuses.
func (s *Snooping) parse(b []byte) (igmp.Message, bool) {
	m, r := igmp.Parse(b)
	if r != igmp.OK {
		s.drops[r].Add(1)
		return nil, false
	}
	return m, true
}

// mrd validates an MRD message, counting what it refuses. hold is an
// advertisement's neighbor dead interval, and zero for a termination.
func (s *Snooping) mrd(b []byte) (typ uint8, hold time.Duration, ok bool) {
	typ, hold, r := igmp.ParseMRD(b)
	if r != igmp.OK {
		s.drops[r].Add(1)
		return 0, 0, false
	}
	return typ, hold, true
}

// heardHostRouter notes a multicast router on the local host, present
// for hold from now. It runs on the egress goroutine only.
func (s *Snooping) heardHostRouter(now int64, hold time.Duration) {
	if until := now + int64(min(hold, time.Duration(math.MaxInt64-now))); until > s.hostRouter.Load() {
		s.hostRouter.Store(until)
	}
}

// HostRouter reports whether a multicast router on the local host has been
// heard recently enough at now: a query from an address, a PIM Hello or an
// MRD advertisement it sent into the TAP. It is safe for concurrent use.
func (s *Snooping) HostRouter(now time.Time) bool {
	return s.hostRouter.Load() > now.UnixNano()
}

// snoopHost snoops an IGMP frame from the local host, on its way to the
// peers: a query is heard by the querier, and one from an address shows a
// router on the host; a report or leave is learned on the table's local
// port, and a leave or BLOCK has the querier schedule the last-member
// queries; an MRD advertisement shows a router on the host. It reports
// whether the frame may be forwarded: false when it is malformed. It runs
// on the egress goroutine only.
func (s *Snooping) snoopHost(frame []byte, now int64) (forward bool) {
	src, dst, b, ok := s.igmpOf(frame)
	if !ok {
		return false
	}
	if igmp.IsMRD(b) {
		typ, hold, ok := s.mrd(b)
		if ok && typ == igmp.TypeMRDAdvertisement && dst == igmp.AllSnoopers {
			s.heardHostRouter(now, hold)
		}
		return ok
	}
	m, ok := s.parse(b)
	if !ok {
		return false
	}
	t := time.Unix(0, now)
	switch m.Type() {
	case igmp.TypeQuery:
		if src.Is4() && !src.IsUnspecified() {
			s.heardHostRouter(now, s.Table.Config().OQPI())
		}
		if s.Querier != nil {
			s.Querier.HeardHostQuery(src, t)
		}
	default:
		s.queries = s.Table.Handle(igmp.LocalPort, m, t, s.queries[:0])
		for _, q := range s.queries {
			if s.Querier != nil {
				s.Querier.LastMember(q, t)
			}
		}
		clear(s.queries) // the querier keeps the Sources; the scratch does not
	}
	return true
}

// snoopHostPIM notes a PIM Hello from the local host: a router on the
// host. The frame goes to every peer whatever it holds; the peers judge
// it. It runs on the egress goroutine only.
func (s *Snooping) snoopHostPIM(frame []byte, now int64) {
	if _, _, b, ok := igmp.PIMFromFrame(frame); ok {
		if typ, hold, ok := igmp.ParsePIM(b); ok && typ == igmp.PIMHello {
			s.heardHostRouter(now, hold)
		}
	}
}

// ingress snoops a frame from peer p. It reports whether the frame goes
// into the TAP. It allocates nothing once p is known as a router port.
func (s *Snooping) ingress(p *Peer, frame []byte, now int64) bool {
	_, _, proto, ok := igmp.IPv4Multicast(frame)
	if !ok {
		return true
	}
	switch proto {
	case igmp.ProtoIGMP:
	case igmp.ProtoPIM:
		return s.peerPIM(p, frame, now)
	default:
		return true
	}
	src, dst, b, ok := s.igmpOf(frame)
	if !ok {
		return false
	}
	t := time.Unix(0, now)
	if igmp.IsMRD(b) {
		typ, hold, ok := s.mrd(b)
		if ok && dst == igmp.AllSnoopers && (typ == igmp.TypeMRDAdvertisement || typ == igmp.TypeMRDTermination) {
			s.Table.HeardRouter(p.Underlay, src, igmp.RouterMRD, hold, t)
		}
		return ok
	}
	m, ok := s.parse(b)
	if !ok {
		return false
	}
	if m.Type() == igmp.TypeQuery {
		s.Table.HeardQuery(p.Underlay, src, t)
		if s.Querier != nil {
			s.Querier.HeardQuery(src, t)
		}
		if src.IsUnspecified() {
			// A meshcast querier's: give it the peer's address, for
			// a router on this host.
			if a := p.Overlay.Addr(); a.Is4() && !a.IsUnspecified() {
				igmp.SetSource(frame, a)
			}
		}
		return true
	}
	s.Table.Handle(p.Underlay, m, t, nil) // a peer's port gets no queries
	return s.hostRouter.Load() > now
}

// peerPIM snoops a PIM frame from peer p: a Hello to 224.0.0.13 makes p a
// router port for its holdtime. It reports whether the frame goes into
// the TAP: false when it is malformed (counted).
func (s *Snooping) peerPIM(p *Peer, frame []byte, now int64) bool {
	src, dst, b, ok := igmp.PIMFromFrame(frame)
	if !ok {
		s.badPIM.Add(1)
		return false
	}
	typ, hold, ok := igmp.ParsePIM(b)
	if !ok {
		s.badPIM.Add(1)
		return false
	}
	if typ == igmp.PIMHello && dst == igmp.AllPIMRouters {
		s.Table.HeardRouter(p.Underlay, src, igmp.RouterPIM, hold, time.Unix(0, now))
	}
	return true
}

// Flooded returns, per group, what flooding unregistered traffic from the
// local host cost since the start: the frames, their copies, and the copies
// `--unregistered drop` would have saved, the previous processes' counts
// (Engine.Import) included. Groups past the first FloodGroups are summed
// under FloodOther, last. It is safe for concurrent use with the data path.
func (s *Snooping) Flooded() []FloodCount {
	live := s.flooded.snapshot()
	if base := s.floodBase.Load(); base != nil {
		return mergeFlood(*base, live)
	}
	return live
}

// SetUnregistered changes the policy for unregistered groups at run time.
// It is safe for concurrent use with the data path. The Unregistered field
// keeps the initial policy.
func (s *Snooping) SetUnregistered(u Unregistered) {
	s.policy.Store(uint32(u))
}

// UnregisteredPolicy returns the policy for unregistered groups in force:
// the Unregistered field once New has read it, then what SetUnregistered
// set last.
func (s *Snooping) UnregisteredPolicy() Unregistered {
	return Unregistered(s.policy.Load())
}

// silence is how long a peer may be quiet before its next packet counts as
// a (re)appearance: a live peer's host reports its groups at least once
// per query interval.
func (s *Snooping) silence() int64 {
	c := s.Table.Config()
	return int64(c.QueryInterval + c.ResponseInterval)
}

// peerAppeared has the querier solicit the local host's reports.
func (s *Snooping) peerAppeared(now int64) {
	if s.Querier != nil {
		s.Querier.Solicit(time.Unix(0, now))
	}
}

// tick runs the table's timers and the querier.
func (s *Snooping) tick(now time.Time) {
	s.Table.Expire(now)
	if s.Querier != nil {
		s.Querier.RouterPeers(s.Table.HasRouters())
		s.Querier.Tick(now)
	}
}

func (s *Snooping) removePort(addr netip.Addr) { s.Table.RemovePort(addr) }

func (s *Snooping) addDrops(m map[string]uint64) {
	for r := igmp.Reason(1); r < igmp.NumReasons; r++ {
		m[r.String()] = s.drops[r].Load()
	}
	m["igmp_ip_header"] = s.badIP.Load()
	m["pim_malformed"] = s.badPIM.Load()
	m["unregistered"] = s.unregDrop.Load()
	for k, v := range s.Table.Refused() {
		m[k] = v
	}
}
