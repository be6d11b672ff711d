package replicate

import (
	"net/netip"
	"sort"
	"sync/atomic"
)

// FloodGroups is how many groups the flood counters tell apart; the
// traffic of any further group is counted under FloodOther.
const FloodGroups = 256

// FloodOther is the Group of FloodCount that sums the groups past the
// first FloodGroups: the zero Addr.
var FloodOther netip.Addr

// FloodCount is what the flooding of one unregistered group cost since the
// daemon started: frames from the TAP sent to every peer because no host
// had joined the group, the copies they took, and how many of those copies
// went to peers that are not routers, which `--unregistered drop` would
// not have sent.
type FloodCount struct {
	Group    netip.Addr // FloodOther for the overflow
	Frames   uint64
	Copies   uint64
	DropSave uint64 // copies to peers that are not router ports
}

// floodCounts counts flooded traffic per group in a fixed open-addressed
// table, so that counting allocates nothing. One goroutine writes it (the
// TAP's egress); any may read it.
type floodCounts struct {
	slots [FloodGroups]floodSlot
	other floodSlot
}

type floodSlot struct {
	group    atomic.Uint32 // the IPv4 group, big-endian; 0 for an empty slot
	frames   atomic.Uint64
	copies   atomic.Uint64
	dropSave atomic.Uint64
}

// add counts one flooded frame to group, which took copies copies, save of
// them to peers that are not routers. Only one goroutine may call it.
func (f *floodCounts) add(group netip.Addr, copies, save int) {
	s := f.slot(group)
	s.frames.Add(1)
	s.copies.Add(uint64(copies))
	s.dropSave.Add(uint64(save))
}

// slot finds or claims the slot of group, or returns the overflow slot
// when the table is full. A multicast group is never 0.0.0.0, so 0 marks an
// empty slot.
func (f *floodCounts) slot(group netip.Addr) *floodSlot {
	b := group.As4()
	key := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if key == 0 {
		return &f.other
	}
	// Fibonacci hashing spreads the groups, which often differ only in
	// their low bits.
	i := (key * 2654435769) >> 24
	for range FloodGroups {
		s := &f.slots[i%FloodGroups]
		switch s.group.Load() {
		case key:
			return s
		case 0:
			s.group.Store(key)
			return s
		}
		i++
	}
	return &f.other
}

// snapshot returns every group counted so far, in address order, then the
// overflow if it counted anything.
func (f *floodCounts) snapshot() []FloodCount {
	var out []FloodCount
	read := func(g netip.Addr, s *floodSlot) {
		if n := s.frames.Load(); n > 0 {
			out = append(out, FloodCount{Group: g, Frames: n, Copies: s.copies.Load(), DropSave: s.dropSave.Load()})
		}
	}
	for i := range f.slots {
		s := &f.slots[i]
		if k := s.group.Load(); k != 0 {
			read(netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}), s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group.Less(out[j].Group) })
	read(FloodOther, &f.other)
	return out
}
