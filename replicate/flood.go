package replicate

import (
	"encoding/binary"
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
	// used is set once the slot holds a group, in hi and lo: its 16
	// bytes (an IPv4 group as ::ffff:a.b.c.d), big-endian. The writer
	// stores them before used, and a slot never changes group, so a
	// reader that sees used sees them whole.
	used     atomic.Bool
	hi, lo   atomic.Uint64
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

// slot finds or claims the slot of group, an IPv4 or IPv6 one, or returns
// the overflow slot when the table is full or group is the zero Addr.
func (f *floodCounts) slot(group netip.Addr) *floodSlot {
	if !group.IsValid() {
		return &f.other
	}
	b := group.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	// Fibonacci hashing spreads the groups, which often differ only in
	// their low bits.
	i := ((hi ^ lo) * 11400714819323198485) >> 56
	for range FloodGroups {
		s := &f.slots[i%FloodGroups]
		if !s.used.Load() {
			s.hi.Store(hi)
			s.lo.Store(lo)
			s.used.Store(true)
			return s
		}
		if s.hi.Load() == hi && s.lo.Load() == lo {
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
		if s.used.Load() {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], s.hi.Load())
			binary.BigEndian.PutUint64(b[8:], s.lo.Load())
			read(netip.AddrFrom16(b).Unmap(), s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group.Less(out[j].Group) })
	read(FloodOther, &f.other)
	return out
}
