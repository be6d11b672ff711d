package replicate

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/mld"
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

// Snooping wires IGMP and MLD snooping (RFC 4541) into the engine: the table that
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
//   - IPv6 (MLD, RFC 3810): the same table holds IPv6 groups. MLD from the
//     TAP goes to every peer and is learned on the local port, as IGMP is;
//     ff02::/16 and the narrower scopes go to every peer; other groups go
//     where the table says. A peer's reports and dones are learned, not
//     delivered; queries are delivered, and one without the meshcast mark
//     (a router's) makes the peer a router port. MLDQuerier queries the
//     TAP. Router ports are learned from a peer's PIM Hellos to ff02::d
//     and MRD advertisements to ff02::6a (RFC 4286 section 4) too, and a
//     router on the local host is noticed from them, as for IPv4; a
//     malformed one from a peer is dropped and counted (pim_malformed, or
//     the mld_ reason of an MRD message). See decide6, ingress6 and
//     parseMLD.
type Snooping struct {
	Table   *igmp.Table
	Querier *igmp.Querier // nil: no querier

	// MLDQuerier is the MLD querier of the TAP (igmp.NewMLDQuerier), for
	// a node with an IPv6 overlay; nil: none.
	MLDQuerier *igmp.Querier

	// Unregistered is the initial policy for unregistered groups: New
	// reads it once and puts it in force (overriding a SetUnregistered
	// made before). It is configuration, not state: SetUnregistered
	// changes the policy in force and leaves this field alone, and
	// UnregisteredPolicy reports the policy in force.
	Unregistered Unregistered

	policy atomic.Uint32 // the Unregistered in force; see SetUnregistered

	drops  [igmp.NumReasons]atomic.Uint64
	badIP  atomic.Uint64 // IGMP whose IPv4 header is malformed
	badPIM atomic.Uint64 // PIM from a peer whose IPv4 header or PIM header is malformed

	mldDrops   [mld.NumReasons]atomic.Uint64
	mldInvalid [numMLDInvalid]atomic.Uint64
	badIP6     atomic.Uint64 // IPv6 multicast whose header or extension headers are malformed
	badScope   atomic.Uint64 // IPv6 multicast to the reserved scope 0
	unregDrop  atomic.Uint64 // unregistered traffic with no router peer, dropped
	flooded    floodCounts   // unregistered traffic flooded, per group

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
		if src6, dst6, ok := mld.IPv6Multicast(frame); ok {
			return s.decide6(frame, src6, dst6, set, scratch, now)
		}
		return set.list // broadcast, ARP and other non-IP multicast
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
	return s.lookup(dst, src, set, scratch)
}

// decide6 is decide for an IPv6 multicast frame: MLD goes to every peer,
// and is learned as it goes; other groups outside Snooped scopes
// (ff02::/16 above all: neighbour discovery, mDNS) go to every peer, and
// the rest go where the table says.
func (s *Snooping) decide6(frame []byte, src, dst netip.Addr, set *peerSet, scratch []*Peer, now int64) []*Peer {
	if reservedScope(dst) {
		s.badScope.Add(1)
		return nil
	}
	if maybeControl6(frame) {
		p, r := mld.FromFrame(frame)
		switch r {
		case mld.IsMLD:
			if !s.snoopHostMLD(&p, now) {
				return nil
			}
			return set.list
		case mld.Malformed:
			s.badIP6.Add(1)
			return nil
		}
		s.snoopHostRouter6(frame, dst, now)
	}
	if !igmp.Snooped(dst) {
		return set.list
	}
	return s.lookup(dst, src, set, scratch)
}

// maybeMLD reports whether an IPv6 frame's first next header is one an
// MLD message can follow: Hop-by-Hop Options (which carries MLD's Router
// Alert), ICMPv6, or the Destination Options and Routing headers an
// invalid MLD message may hide behind (mld.FromFrame walks them, and
// parseMLD then refuses the message for its missing Router Alert). Data
// traffic is none of these, and skips mld.FromFrame.
func maybeMLD(frame []byte) bool {
	switch frame[ethHeaderLen+6] {
	case 0, mld.NextHeaderICMPv6, nextHeaderDstOpts, nextHeaderRouting:
		return true
	}
	return false
}

// maybeControl6 reports whether an IPv6 frame may carry MLD (maybeMLD),
// MRD (ICMPv6, so maybeMLD too) or PIM: its first next header is PIM's.
// Data traffic is none of these, and skips the parsing.
func maybeControl6(frame []byte) bool {
	return maybeMLD(frame) || frame[ethHeaderLen+6] == mld.NextHeaderPIM
}

// IPv6 extension headers an MLD message may follow.
const (
	nextHeaderRouting = 43
	nextHeaderDstOpts = 60
)

// isMLD reports whether an IPv6 multicast frame carries MLD, valid or not,
// or is malformed where MLD could be: control traffic, which the limits
// for data never hold back.
func isMLD(frame []byte) bool {
	if !maybeMLD(frame) {
		return false
	}
	_, r := mld.FromFrame(frame)
	return r != mld.NotMLD
}

// reservedScope reports whether an IPv6 multicast destination has the
// reserved scope 0, which RFC 4291 section 2.7 has nodes drop silently
// (meshcast counts them, as ipv6_reserved_scope).
func reservedScope(dst netip.Addr) bool { return dst.As16()[1]&0x0f == 0 }

// ethHeaderLen is the length of an untagged Ethernet header.
const ethHeaderLen = 14

// lookup returns the peers that get traffic from src to the snooped group
// dst: its member peers whose source filters pass src, and the router
// peers; or every peer while the group is unregistered and the policy
// floods.
func (s *Snooping) lookup(dst, src netip.Addr, set *peerSet, scratch []*Peer) []*Peer {
	if cap(s.ports) < len(set.list) {
		s.ports = make([]igmp.Port, 0, len(set.list))
	}
	ports, registered := s.Table.Lookup(dst, src, s.ports[:0])
	s.ports = ports[:0]
	if !registered && s.UnregisteredPolicy() == UnregisteredFlood {
		if n := len(set.list); n > 0 {
			routers := 0
			for _, port := range ports {
				if set.lookup(port) != nil {
					routers++
				}
			}
			s.flooded.add(dst, n, n-routers)
		}
		return set.list
	}
	for _, port := range ports {
		// A port is a peer's underlay address; one that is not (from
		// a hand-edited state file) names no peer.
		if p := set.lookup(port); p != nil {
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
		return s.ingress6(p, frame, now)
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

// ingress6 is ingress for a frame that is not IPv4 multicast: MLD from a
// peer is snooped as IGMP is, and everything else goes into the TAP.
//   - A report or done updates the peer's port and is not delivered,
//     unless a multicast router runs on the local host.
//   - A query is delivered. One without mld.QuerierMark comes from a
//     multicast router, and makes the peer a router port and takes part in
//     the election of the local MLD querier; a meshcast querier's marked
//     query does neither.
//   - A malformed or invalid message (see parseMLD) is counted and dropped.
//   - PIM and MRD are snooped by peerRouter6.
func (s *Snooping) ingress6(p *Peer, frame []byte, now int64) bool {
	_, dst, ok := mld.IPv6Multicast(frame)
	if !ok {
		return true
	}
	if reservedScope(dst) {
		s.badScope.Add(1)
		return false
	}
	if !maybeControl6(frame) {
		return true
	}
	pk, r := mld.FromFrame(frame)
	switch r {
	case mld.NotMLD:
		return s.peerRouter6(p, frame, now)
	case mld.Malformed:
		s.badIP6.Add(1)
		return false
	}
	m, ok := s.parseMLD(&pk)
	if !ok {
		return false
	}
	t := time.Unix(0, now)
	if m.Type() == mld.TypeQuery {
		if !m.Marked() {
			s.Table.HeardQuery(p.Underlay, pk.Src, t)
			if s.MLDQuerier != nil {
				s.MLDQuerier.HeardQuery(pk.Src, t)
			}
		}
		return true
	}
	s.Table.HandleMLD(p.Underlay, m, t, nil) // a peer's port gets no queries
	return s.hostRouter.Load() > now
}

// parseMLD validates the MLD message of pk (mld.Parse) and the packet
// around it as RFC 3810 sections 5.1.14 and 5.2.13 require: hop limit 1,
// the Router Alert option, and a link-local source (or, for a report or
// done, the unspecified address a host uses before it has one). It counts
// what it refuses.
func (s *Snooping) parseMLD(pk *mld.Packet) (mld.Message, bool) {
	m, r := mld.Parse(pk.Src, pk.Dst, pk.MLD)
	switch {
	case r != mld.OK:
		s.mldDrops[r].Add(1)
	case pk.HopLimit != 1:
		s.mldInvalid[mldHopLimit].Add(1)
	case !pk.RouterAlert:
		s.mldInvalid[mldRouterAlert].Add(1)
	case !pk.Src.IsLinkLocalUnicast() && !(pk.Src.IsUnspecified() && m.Type() != mld.TypeQuery):
		s.mldInvalid[mldSource].Add(1)
	default:
		return m, true
	}
	return nil, false
}

// Ways an MLD packet that parses can still be invalid.
const (
	mldHopLimit = iota
	mldRouterAlert
	mldSource
	numMLDInvalid
)

var mldInvalidNames = [numMLDInvalid]string{
	mldHopLimit:    "mld_hop_limit",
	mldRouterAlert: "mld_router_alert",
	mldSource:      "mld_source",
}

// snoopHostMLD snoops an MLD message from the local host, as snoopHost
// does IGMP: a query without the meshcast mark shows a router on the host
// and is heard by the MLD querier; a report or done is learned on the
// table's local port, and a done or BLOCK has the MLD querier schedule the
// last-listener queries. It reports whether the frame may be forwarded:
// false when it is malformed or invalid. It runs on the egress goroutine
// only.
func (s *Snooping) snoopHostMLD(pk *mld.Packet, now int64) (forward bool) {
	m, ok := s.parseMLD(pk)
	if !ok {
		return false
	}
	t := time.Unix(0, now)
	if m.Type() == mld.TypeQuery {
		if !m.Marked() {
			s.heardHostRouter(now, s.Table.Config().OQPI())
			if s.MLDQuerier != nil {
				s.MLDQuerier.HeardHostQuery(pk.Src, t)
			}
		}
		return true
	}
	s.queries = s.Table.HandleMLD(igmp.LocalPort, m, t, s.queries[:0])
	for _, q := range s.queries {
		if s.MLDQuerier != nil {
			s.MLDQuerier.LastMember(q, t)
		}
	}
	clear(s.queries)
	return true
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

// peerRouter6 snoops a frame from peer p that passed maybeControl6 and
// carries no MLD, as peerPIM and ingress do for IPv4: a PIM Hello to
// ff02::d makes p a router port for its holdtime, an MRD advertisement to
// ff02::6a for its neighbor dead interval, and an MRD termination there
// ends that. The router's address must be link-local (Table.HeardRouter
// ignores others). It reports whether the frame goes into the TAP: false
// when the PIM or MRD message is malformed, counted as pim_malformed or by
// its mld_ reason. Anything else goes into the TAP. It allocates nothing
// once p is known as a router port.
func (s *Snooping) peerRouter6(p *Peer, frame []byte, now int64) bool {
	if src, dst, b, ok := mld.PIMFromFrame(frame); ok {
		typ, hold, ok := igmp.ParsePIM6(src, dst, b)
		if !ok {
			s.badPIM.Add(1)
			return false
		}
		if typ == igmp.PIMHello && dst == mld.AllPIMRouters6 {
			s.Table.HeardRouter(p.Underlay, src, igmp.RouterPIM, hold, time.Unix(0, now))
		}
		return true
	}
	if src, dst, b, ok := mld.MRDFromFrame(frame); ok {
		typ, hold, r := igmp.ParseMRD6(src, dst, b)
		if r != igmp.OK {
			s.mldDrops[mldReason(r)].Add(1)
			return false
		}
		if dst == mld.AllSnoopers6 && (typ == mld.TypeMRDAdvertisement6 || typ == mld.TypeMRDTermination6) {
			s.Table.HeardRouter(p.Underlay, src, igmp.RouterMRD, hold, time.Unix(0, now))
		}
		return true
	}
	return true
}

// mldReason is the MLD counterpart of a reason igmp.ParseMRD6 gives, for
// the mld_ drop counters.
func mldReason(r igmp.Reason) mld.Reason {
	switch r {
	case igmp.Truncated:
		return mld.Truncated
	case igmp.BadChecksum:
		return mld.BadChecksum
	}
	return mld.UnknownType
}

// snoopHostRouter6 notes a PIM Hello to ff02::d, or an MRD advertisement to
// ff02::6a, from a link-local source on the local host: a router on the
// host, as snoopHostPIM and snoopHost note for IPv4. The frame goes to
// every peer whatever it holds (both groups are link-local); the peers
// judge it. It runs on the egress goroutine only.
func (s *Snooping) snoopHostRouter6(frame []byte, dst netip.Addr, now int64) {
	switch dst {
	case mld.AllPIMRouters6:
		if src, _, b, ok := mld.PIMFromFrame(frame); ok && src.IsLinkLocalUnicast() {
			if typ, hold, ok := igmp.ParsePIM6(src, dst, b); ok && typ == igmp.PIMHello {
				s.heardHostRouter(now, hold)
			}
		}
	case mld.AllSnoopers6:
		if src, _, b, ok := mld.MRDFromFrame(frame); ok && src.IsLinkLocalUnicast() {
			if typ, hold, r := igmp.ParseMRD6(src, dst, b); r == igmp.OK && typ == mld.TypeMRDAdvertisement6 {
				s.heardHostRouter(now, hold)
			}
		}
	}
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
	if s.MLDQuerier != nil {
		s.MLDQuerier.Solicit(time.Unix(0, now))
	}
}

// tick runs the table's timers and the querier.
func (s *Snooping) tick(now time.Time) {
	s.Table.Expire(now)
	if s.Querier != nil {
		s.Querier.RouterPeers(s.Table.HasRouters())
		s.Querier.Tick(now)
	}
	if s.MLDQuerier != nil {
		s.MLDQuerier.RouterPeers(s.Table.HasRouters())
		s.MLDQuerier.Tick(now)
	}
}

func (s *Snooping) removePort(addr netip.Addr) { s.Table.RemovePort(addr) }

func (s *Snooping) addDrops(m map[string]uint64) {
	for r := igmp.Reason(1); r < igmp.NumReasons; r++ {
		m[r.String()] = s.drops[r].Load()
	}
	m["igmp_ip_header"] = s.badIP.Load()
	m["pim_malformed"] = s.badPIM.Load()
	for r := mld.Reason(1); r < mld.NumReasons; r++ {
		m[r.String()] = s.mldDrops[r].Load()
	}
	for i, name := range mldInvalidNames {
		m[name] = s.mldInvalid[i].Load()
	}
	m["ipv6_header"] = s.badIP6.Load()
	m["ipv6_reserved_scope"] = s.badScope.Load()
	m["unregistered"] = s.unregDrop.Load()
	for k, v := range s.Table.Refused() {
		m[k] = v
	}
}
