package replicate

import (
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// PeerInfo describes a peer as discovery knows it.
type PeerInfo struct {
	Underlay netip.Addr   // IPv4 or IPv6 address the peer's tunnel packets come from and go to
	Overlay  netip.Prefix // the peer's overlay address
	Overlay6 netip.Prefix // the peer's IPv6 overlay address; the zero Prefix if none
	ID       string       // identity for logs and status
}

// Peer is one remote node of the community. Its identity fields never
// change; its counters are updated atomically.
type Peer struct {
	Underlay netip.Addr
	Overlay  netip.Prefix
	Overlay6 netip.Prefix
	ID       string

	removed atomic.Bool

	// The counters of each direction have a cache line of their own: the
	// egress goroutine writes the first group and the ingress goroutine
	// the second, for every packet, and a shared line would bounce
	// between their cores (BenchmarkPeerCounters).
	_                            cpu.CacheLinePad
	txPackets, txBytes, txErrors atomic.Uint64 // egress
	_                            cpu.CacheLinePad
	rxPackets, rxBytes           atomic.Uint64 // ingress
	lastSeen                     atomic.Int64  // ingress: unix nanoseconds of the last accepted packet
	_                            cpu.CacheLinePad
}

// PeerStats is a snapshot of a peer's counters. Bytes count inner Ethernet
// frames.
type PeerStats struct {
	Underlay  netip.Addr
	Overlay   netip.Prefix
	Overlay6  netip.Prefix
	ID        string
	TxPackets uint64
	TxBytes   uint64
	RxPackets uint64
	RxBytes   uint64
	TxErrors  uint64
	LastSeen  int64 // unix nanoseconds, 0 if never
}

// Stats returns a snapshot of the peer's counters.
func (p *Peer) Stats() PeerStats {
	return PeerStats{
		Underlay: p.Underlay, Overlay: p.Overlay, Overlay6: p.Overlay6, ID: p.ID,
		TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
		RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
		TxErrors: p.txErrors.Load(), LastSeen: p.lastSeen.Load(),
	}
}

// peerSet is an immutable snapshot of the peers. Each family has a map of
// its own, keyed by the address's bytes: a netip.Addr key costs a quarter
// more per packet received.
type peerSet struct {
	list    []*Peer
	byAddr  map[[4]byte]*Peer  // IPv4 underlays
	byAddr6 map[[16]byte]*Peer // IPv6 underlays; nil when there are none
}

func newPeerSet(list []*Peer) *peerSet {
	s := &peerSet{list: list, byAddr: make(map[[4]byte]*Peer, len(list))}
	for _, p := range list {
		if p.Underlay.Is4() {
			s.byAddr[p.Underlay.As4()] = p
			continue
		}
		if s.byAddr6 == nil {
			s.byAddr6 = make(map[[16]byte]*Peer)
		}
		s.byAddr6[p.Underlay.As16()] = p
	}
	return s
}

// lookup returns the peer at underlay address a, or nil.
func (s *peerSet) lookup(a netip.Addr) *Peer {
	if a.Is4() {
		return s.byAddr[a.As4()]
	}
	return s.byAddr6[a.As16()]
}
