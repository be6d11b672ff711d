package replicate

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/mld"
	"github.com/meshcast/meshcast/overlay"
)

// EngineState is what the engine hands from one meshcast process to the
// next: the learned MAC addresses and the counters. It is encoded as JSON,
// by the old process for the new one over a Unix socket during an upgrade,
// or into a file that the next start under systemd reads. The IGMP table
// and the querier are package igmp's to hand over, not part of it.
//
// Addresses are strings, so that Import can name an entry that does not
// parse; times are absolute, so that a state read later has aged meanwhile.
type EngineState struct {
	// MACs are the learned MAC addresses, in MAC order.
	MACs []MACState `json:"macs"`
	// Peers are the counters of every peer, by underlay address.
	Peers map[string]PeerCounters `json:"peers"`
	// Drops are the drop counters by reason name, as Engine.Drops names
	// them, without those of the IGMP table (package igmp's).
	Drops map[string]uint64 `json:"drops"`
	// Fanout is the fan-out histogram.
	Fanout FanoutState `json:"fanout"`
	// Flooded are the flood counters of the engine's Snooping, as
	// Snooping.Flooded returns them; empty without a Snooping. Those of
	// IPv6 groups are in FloodedIPv6, which a meshcast without MLD
	// ignores (it refuses an IPv6 group in Flooded, and with it the whole
	// state).
	Flooded     []FloodState `json:"flooded,omitempty"`
	FloodedIPv6 []FloodState `json:"flooded_ipv6,omitempty"`
}

// MACState is one learned MAC address.
type MACState struct {
	MAC      string    `json:"mac"`       // such as "02:00:00:00:00:01"
	Peer     string    `json:"peer"`      // the underlay address of the peer it sits behind
	LastSeen time.Time `json:"last_seen"` // when a frame from it came last
}

// PeerCounters are the counters of one peer; see PeerStats.
type PeerCounters struct {
	TxPackets uint64    `json:"tx_packets"`
	TxBytes   uint64    `json:"tx_bytes"`
	TxErrors  uint64    `json:"tx_errors"`
	RxPackets uint64    `json:"rx_packets"`
	RxBytes   uint64    `json:"rx_bytes"`
	LastSeen  time.Time `json:"last_seen,omitzero"` // absent if never
}

// FanoutState is the fan-out histogram. Counts[i] is the number of frames
// whose fan-out was at most Bounds[i] and above Bounds[i-1] (not
// cumulative); the last count, one past the bounds, is of those above
// every bound. Sum is the number of copies.
type FanoutState struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Sum    uint64    `json:"sum"`
}

// FloodState is one FloodCount. Group is "" for FloodOther.
type FloodState struct {
	Group    string `json:"group"`
	Frames   uint64 `json:"frames"`
	Copies   uint64 `json:"copies"`
	DropSave uint64 `json:"drop_save"`
}

// Export returns the engine's state at now: the MAC addresses still
// learned then and every counter. It is safe for concurrent use with the
// data path; for a state that misses nothing, take it once forwarding has
// stopped.
func (e *Engine) Export(now time.Time) EngineState {
	nowNs := now.UnixNano()
	set := e.peers.Load()
	s := EngineState{
		MACs:  []MACState{},
		Peers: make(map[string]PeerCounters, len(set.list)),
		Drops: make(map[string]uint64),
	}
	e.macs.mu.RLock()
	for k, m := range e.macs.m {
		if nowNs-m.seen > e.macs.age || m.peer.removed.Load() {
			continue
		}
		s.MACs = append(s.MACs, MACState{
			MAC:      net.HardwareAddr(k[:]).String(),
			Peer:     m.peer.Underlay.String(),
			LastSeen: time.Unix(0, m.seen).UTC(),
		})
	}
	e.macs.mu.RUnlock()
	slices.SortFunc(s.MACs, func(a, b MACState) int { return cmp.Compare(a.MAC, b.MAC) })
	for _, p := range set.list {
		st := p.Stats()
		c := PeerCounters{
			TxPackets: st.TxPackets, TxBytes: st.TxBytes, TxErrors: st.TxErrors,
			RxPackets: st.RxPackets, RxBytes: st.RxBytes,
		}
		if st.LastSeen != 0 {
			c.LastSeen = time.Unix(0, st.LastSeen).UTC()
		}
		s.Peers[p.Underlay.String()] = c
	}
	for name, c := range e.dropCounters() {
		s.Drops[name] = c.Load()
	}
	s.Fanout = FanoutState{
		Bounds: slices.Clone(FanoutBounds),
		Counts: make([]uint64, len(e.fanout.buckets)),
		Sum:    e.fanout.sum.Load(),
	}
	for i := range e.fanout.buckets {
		s.Fanout.Counts[i] = e.fanout.buckets[i].Load()
	}
	if e.snoop != nil {
		for _, f := range e.snoop.Flooded() {
			g := ""
			if f.Group != FloodOther {
				g = f.Group.String()
			}
			fs := FloodState{Group: g, Frames: f.Frames, Copies: f.Copies, DropSave: f.DropSave}
			if f.Group.Is6() {
				s.FloodedIPv6 = append(s.FloodedIPv6, fs)
			} else {
				s.Flooded = append(s.Flooded, fs)
			}
		}
	}
	return s
}

// Import adds a state that another process exported to this engine, at
// now. Call it once, after SetPeers has set this process's peers:
//
//   - The counters of each peer in the state that is a current peer are
//     added to what this engine counted since it started (a peer's last
//     seen time becomes the later of the two); the other peers' counters
//     are left out. So are those of the drop reasons this version does not
//     know, and the fan-out histogram and the flood counters are added
//     likewise (the latter only if the engine has a Snooping).
//   - Each MAC address learned behind a current peer and seen within the
//     MAC age before now is learned again, with its time (one in the
//     future counts as now), unless this engine learned it since at a
//     later time; the newest fill the table when they do not all fit.
//
// It logs how many peers and addresses it restored and skipped. A
// malformed entry (a MAC address, an underlay address or a group that
// does not parse, a histogram whose lengths do not match) is an error that
// names it, and then nothing is imported. It is safe for concurrent use
// with the data path.
func (e *Engine) Import(s EngineState, now time.Time) error {
	nowNs := now.UnixNano()
	set := e.peers.Load()

	type peerCounters struct {
		p *Peer
		c PeerCounters
	}
	var peers []peerCounters
	peersAbsent := 0
	for addr, c := range s.Peers {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return fmt.Errorf("replicate: state: peer %q: %w", addr, err)
		}
		p := lookupPeer(set, a)
		if p == nil {
			peersAbsent++
			continue
		}
		peers = append(peers, peerCounters{p, c})
	}

	var macs []macEntryAt
	macsAbsent, macsExpired := 0, 0
	age := time.Duration(e.macs.age)
	for i, m := range s.MACs {
		hw, err := net.ParseMAC(m.MAC)
		if err == nil && len(hw) != 6 {
			err = fmt.Errorf("%d bytes, not 6", len(hw))
		}
		if err == nil && isMulticastMAC(hw) {
			err = errors.New("a multicast address is never learned")
		}
		if err != nil {
			return fmt.Errorf("replicate: state: MAC entry %d (%q): %w", i, m.MAC, err)
		}
		a, err := netip.ParseAddr(m.Peer)
		if err != nil {
			return fmt.Errorf("replicate: state: MAC entry %d (%q): peer %q: %w", i, m.MAC, m.Peer, err)
		}
		seen := m.LastSeen
		if seen.After(now) {
			seen = now
		}
		if now.Sub(seen) > age {
			macsExpired++
			continue
		}
		p := lookupPeer(set, a)
		if p == nil || macKey(hw) == e.localMAC {
			macsAbsent++
			continue
		}
		macs = append(macs, macEntryAt{key: macKey(hw), entry: macEntry{peer: p, seen: seen.UnixNano()}})
	}

	var fanout [len(e.fanout.buckets)]uint64
	if f := s.Fanout; len(f.Counts) > 0 || f.Sum != 0 {
		if len(f.Counts) != len(f.Bounds)+1 {
			return fmt.Errorf("replicate: state: fanout: %d counts for %d bounds, want one more", len(f.Counts), len(f.Bounds))
		}
		for i := 1; i < len(f.Bounds); i++ {
			if !(f.Bounds[i] > f.Bounds[i-1]) {
				return fmt.Errorf("replicate: state: fanout: bound %d (%v) does not exceed bound %d (%v)", i, f.Bounds[i], i-1, f.Bounds[i-1])
			}
		}
		// Each count goes to the first bucket of this version whose
		// bound holds it: the same one while the bounds are the same.
		for i, c := range f.Counts {
			j := len(fanout) - 1
			if i < len(f.Bounds) {
				j = min(j, sort.SearchFloat64s(FanoutBounds, f.Bounds[i]))
			}
			fanout[j] += c
		}
	}

	// In the order Flooded returns them: IPv4 groups, IPv6 groups, then
	// the overflow, the entry without a group.
	all := slices.Concat(s.Flooded, s.FloodedIPv6)
	if i := slices.IndexFunc(s.Flooded, func(f FloodState) bool { return f.Group == "" }); i >= 0 {
		all = slices.Concat(s.Flooded[:i], s.Flooded[i+1:], s.FloodedIPv6, s.Flooded[i:i+1])
	}
	var flooded []FloodCount
	for i, f := range all {
		g := FloodOther
		if f.Group != "" {
			a, err := netip.ParseAddr(f.Group)
			if err == nil && (!a.IsMulticast() || a.Is4In6() || a.Zone() != "") {
				err = errors.New("not an IPv4 or IPv6 multicast group")
			}
			if err != nil {
				return fmt.Errorf("replicate: state: flooded entry %d (%q): %w", i, f.Group, err)
			}
			g = a
		}
		flooded = append(flooded, FloodCount{Group: g, Frames: f.Frames, Copies: f.Copies, DropSave: f.DropSave})
	}

	// Valid: apply it.
	for _, pc := range peers {
		p, c := pc.p, pc.c
		p.txPackets.Add(c.TxPackets)
		p.txBytes.Add(c.TxBytes)
		p.txErrors.Add(c.TxErrors)
		p.rxPackets.Add(c.RxPackets)
		p.rxBytes.Add(c.RxBytes)
		if t := c.LastSeen; t.After(time.Unix(0, 0)) {
			if t.After(now) {
				t = now
			}
			ns := t.UnixNano() // defined: t is between 1970 and now
			for {
				old := p.lastSeen.Load()
				if old >= ns || p.lastSeen.CompareAndSwap(old, ns) {
					break
				}
			}
		}
	}
	drops := e.dropCounters()
	for name, n := range s.Drops {
		if c := drops[name]; c != nil {
			c.Add(n)
		}
	}
	for i, c := range fanout {
		e.fanout.buckets[i].Add(c)
	}
	e.fanout.sum.Add(s.Fanout.Sum)
	if e.snoop != nil && len(flooded) > 0 {
		for {
			old := e.snoop.floodBase.Load()
			var base []FloodCount
			if old != nil {
				base = *old
			}
			merged := mergeFlood(base, flooded)
			if e.snoop.floodBase.CompareAndSwap(old, &merged) {
				break
			}
		}
	}
	restored, superseded, full := e.macs.restore(macs, nowNs)

	e.log.Info("restored forwarding state",
		"peers", len(peers), "peers_absent", peersAbsent,
		"macs", restored, "macs_peer_absent", macsAbsent+(len(macs)-restored-superseded-full),
		"macs_expired", macsExpired, "macs_superseded", superseded, "macs_table_full", full)
	return nil
}

// lookupPeer returns the current peer at underlay address a, or nil.
func lookupPeer(set *peerSet, a netip.Addr) *Peer { return set.lookup(a) }

// dropCounters returns the engine's drop counters by reason name, those of
// its Snooping included and those of the IGMP table left out: the names
// Engine.Drops reports, less Table.Refused's.
func (e *Engine) dropCounters() map[string]*atomic.Uint64 {
	m := make(map[string]*atomic.Uint64, int(numReasons)+int(overlay.NumReasons)+int(igmp.NumReasons)+3)
	for r := Reason(0); r < numReasons; r++ {
		m[r.String()] = &e.drops[r]
	}
	for r := overlay.Reason(1); r < overlay.NumReasons; r++ {
		m[r.String()] = &e.wireDrops[r]
	}
	if s := e.snoop; s != nil {
		for r := igmp.Reason(1); r < igmp.NumReasons; r++ {
			m[r.String()] = &s.drops[r]
		}
		m["igmp_ip_header"] = &s.badIP
		m["pim_malformed"] = &s.badPIM
		m["unregistered"] = &s.unregDrop
		for r := mld.Reason(1); r < mld.NumReasons; r++ {
			m[r.String()] = &s.mldDrops[r]
		}
		for i, name := range mldInvalidNames {
			m[name] = &s.mldInvalid[i]
		}
		m["ipv6_header"] = &s.badIP6
		m["ipv6_reserved_scope"] = &s.badScope
	}
	return m
}

// macEntryAt is a MAC table entry with its key.
type macEntryAt struct {
	key   macKey
	entry macEntry
}

// restore learns the entries, the newest first, where the table holds no
// later entry for the address. It returns how many it learned, how many
// the table held a later entry for, and how many found no room; the rest
// are of peers removed meanwhile.
func (t *macTable) restore(entries []macEntryAt, now int64) (learned, superseded, full int) {
	slices.SortStableFunc(entries, func(a, b macEntryAt) int { return cmp.Compare(b.entry.seen, a.entry.seen) })
	t.mu.Lock()
	defer t.mu.Unlock()
	swept := false
	for _, m := range entries {
		old, ok := t.m[m.key]
		if ok && old.seen >= m.entry.seen && !old.peer.removed.Load() {
			superseded++
			continue
		}
		if !ok && len(t.m) >= t.max {
			if !swept {
				t.sweepLocked(now)
				swept = true
			}
			if len(t.m) >= t.max {
				full++
				continue
			}
		}
		if m.entry.peer.removed.Load() {
			continue
		}
		t.m[m.key] = m.entry
		learned++
	}
	return learned, superseded, full
}

// mergeFlood adds two lists of flood counts, each in the order Flooded
// returns them, into a new one in that order. It keeps at most FloodGroups
// groups: a's first, then b's; the counts of the others go to FloodOther.
func mergeFlood(a, b []FloodCount) []FloodCount {
	out := make([]FloodCount, 0, min(len(a)+len(b), FloodGroups+1))
	at := make(map[netip.Addr]int, cap(out))
	other := FloodCount{Group: FloodOther}
	add := func(to *FloodCount, c FloodCount) {
		to.Frames += c.Frames
		to.Copies += c.Copies
		to.DropSave += c.DropSave
	}
	for _, c := range slices.Concat(a, b) {
		switch i, ok := at[c.Group]; {
		case c.Frames == 0 && c.Copies == 0 && c.DropSave == 0:
		case c.Group == FloodOther:
			add(&other, c)
		case ok:
			add(&out[i], c)
		case len(out) < FloodGroups:
			at[c.Group] = len(out)
			out = append(out, c)
		default:
			add(&other, c)
		}
	}
	slices.SortFunc(out, func(x, y FloodCount) int { return x.Group.Compare(y.Group) })
	if other.Frames != 0 || other.Copies != 0 || other.DropSave != 0 {
		out = append(out, other)
	}
	return out
}
