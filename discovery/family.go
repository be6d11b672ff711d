package discovery

import (
	"fmt"
	"net/netip"
)

// Family is the address family of the underlay, the network the tunnels
// cross: the value of meshcast's --underlay-family. The zero value is
// FamilyAuto.
type Family uint8

const (
	// FamilyAuto tunnels over IPv4 where both ends have an IPv4 underlay
	// address, else over IPv6 where both have an IPv6 one.
	FamilyAuto Family = iota
	// Family4 tunnels over IPv4 only.
	Family4
	// Family6 tunnels over IPv6 only.
	Family6
)

// Reasons Reach gives for a peer it leaves out (Problem.Reason).
const (
	ReasonNoIPv4Underlay = "no_ipv4_underlay" // family 4, and the peer (or this node) has no IPv4 underlay address
	ReasonNoIPv6Underlay = "no_ipv6_underlay" // family 6, and the peer (or this node) has no IPv6 underlay address
	ReasonNoCommonFamily = "no_common_family" // family auto, and this node and the peer share no family
)

// ParseFamily parses a family as --underlay-family spells it: "4", "6" or
// "auto".
func ParseFamily(s string) (Family, error) {
	switch s {
	case "4":
		return Family4, nil
	case "6":
		return Family6, nil
	case "auto":
		return FamilyAuto, nil
	}
	return FamilyAuto, fmt.Errorf("underlay family %q is not known; write 4, 6 or auto", clip(s))
}

// String returns "4", "6" or "auto", the spelling ParseFamily accepts.
func (f Family) String() string {
	switch f {
	case Family4:
		return "4"
	case Family6:
		return "6"
	case FamilyAuto:
		return "auto"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// Underlays returns the member's underlay addresses by family: v4 is its
// IPv4 underlay address and v6 its IPv6 one, each the zero Addr when it
// has none. A dual-stack EC2 instance has both (Underlay and Underlay6);
// an IPv4-only instance or inventory line has only v4, an IPv6-only one
// only v6.
func (m Member) Underlays() (v4, v6 netip.Addr) {
	u := m.Underlay.Unmap()
	switch {
	case u.Is4():
		v4 = u
	case u.Is6():
		v6 = u
	}
	if u6 := m.Underlay6; !v6.IsValid() && u6.Is6() && !u6.Is4In6() {
		v6 = u6
	}
	return v4, v6
}

// Reach chooses, for each member other than self, the underlay address
// this node tunnels to, under the family f:
//
//   - Family4: the member's IPv4 address; this node needs one too.
//   - Family6: the member's IPv6 address; this node needs one too.
//   - FamilyAuto: IPv4 where both ends have an IPv4 address, else IPv6
//     where both have an IPv6 one.
//
// Members with self's ID or one of self's underlay addresses are self and
// skipped. Each peer is returned with Underlay set to the chosen address
// and Underlay6 cleared, in the order of members. A member reachable by no
// allowed family is left out with a Problem whose Reason is
// ReasonNoIPv4Underlay, ReasonNoIPv6Underlay or ReasonNoCommonFamily, and
// whose Detail says what to change.
//
// The mesh is full and never forwards between peers, so an IPv4-only and
// an IPv6-only instance of one community cannot reach each other, not even
// through a dual-stack one: each reaches the dual-stack instances only.
func Reach(self Member, members []Member, f Family) (peers []Member, problems []Problem) {
	s4, s6 := self.Underlays()
	for _, m := range members {
		p4, p6 := m.Underlays()
		if m.ID == self.ID || sameAddr(p4, s4) || sameAddr(p6, s6) {
			continue
		}
		to, reason, detail := choose(selfName(self), s4, s6, p4, p6, f)
		if !to.IsValid() {
			problems = append(problems, Problem{m.ID, reason, detail})
			continue
		}
		m.Underlay, m.Underlay6 = to, netip.Addr{}
		peers = append(peers, m)
	}
	return peers, problems
}

// choose picks the address to tunnel to from this node (s4, s6) to a peer
// (p4, p6) under f, or gives the reason and detail why there is none; self
// names this node in the detail.
func choose(self string, s4, s6, p4, p6 netip.Addr, f Family) (to netip.Addr, reason, detail string) {
	switch f {
	case Family4:
		switch {
		case !s4.IsValid():
			return netip.Addr{}, ReasonNoIPv4Underlay, fmt.Sprintf("this node (%s) has no IPv4 underlay address and the underlay family is 4; give it one, or use --underlay-family auto or 6", self)
		case !p4.IsValid() && s6.IsValid() && p6.IsValid():
			return netip.Addr{}, ReasonNoIPv4Underlay, fmt.Sprintf("peer has no IPv4 underlay address, only IPv6 %s, and the underlay family is 4; give it an IPv4 address, or use --underlay-family auto", p6)
		case !p4.IsValid():
			return netip.Addr{}, ReasonNoIPv4Underlay, fmt.Sprintf("peer has no IPv4 underlay address (it has %s) and the underlay family is 4; give it an IPv4 address", families(p4, p6))
		}
		return p4, "", ""
	case Family6:
		switch {
		case !s6.IsValid():
			return netip.Addr{}, ReasonNoIPv6Underlay, fmt.Sprintf("this node (%s) has no IPv6 underlay address and the underlay family is 6; give it one, or use --underlay-family auto or 4", self)
		case !p6.IsValid() && s4.IsValid() && p4.IsValid():
			return netip.Addr{}, ReasonNoIPv6Underlay, fmt.Sprintf("peer has no IPv6 underlay address, only IPv4 %s, and the underlay family is 6; give it an IPv6 address, or use --underlay-family auto", p4)
		case !p6.IsValid():
			return netip.Addr{}, ReasonNoIPv6Underlay, fmt.Sprintf("peer has no IPv6 underlay address (it has %s) and the underlay family is 6; give it an IPv6 address", families(p4, p6))
		}
		return p6, "", ""
	}
	switch {
	case s4.IsValid() && p4.IsValid():
		return p4, "", ""
	case s6.IsValid() && p6.IsValid():
		return p6, "", ""
	}
	return netip.Addr{}, ReasonNoCommonFamily, fmt.Sprintf(
		"peer has %s and this node (%s) has %s: they share no address family, so no tunnel can join them; give one of them an address of the other family (dual-stack), or leave it out of the community",
		families(p4, p6), self, families(s4, s6))
}

// LocalUnderlays returns the underlay addresses this node opens its
// sockets on, under the family f: with Family4 its IPv4 address, with
// Family6 its IPv6 address, and with FamilyAuto each of the two that it
// has. The error says what to change when self has no address of the
// family.
func LocalUnderlays(self Member, f Family) (v4, v6 netip.Addr, err error) {
	v4, v6 = self.Underlays()
	switch f {
	case Family4:
		if !v4.IsValid() {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("this node (%s) has no IPv4 underlay address and the underlay family is 4; give it one, or use --underlay-family 6 or auto", selfName(self))
		}
		return v4, netip.Addr{}, nil
	case Family6:
		if !v6.IsValid() {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("this node (%s) has no IPv6 underlay address and the underlay family is 6; give it one, or use --underlay-family 4 or auto", selfName(self))
		}
		return netip.Addr{}, v6, nil
	}
	if !v4.IsValid() && !v6.IsValid() {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("this node (%s) has no underlay address; give it an IPv4 or IPv6 address", selfName(self))
	}
	return v4, v6, nil
}

// sameAddr reports whether a and b are the same valid address.
func sameAddr(a, b netip.Addr) bool { return a.IsValid() && a == b }

// selfName names this node in messages: its ID, or its addresses.
func selfName(self Member) string {
	if self.ID != "" {
		return self.ID
	}
	v4, v6 := self.Underlays()
	return families(v4, v6)
}

// families describes the addresses of an instance, for messages: "only
// IPv4 (198.18.0.1)", "only IPv6 (fd00:198:18::1)", "IPv4 198.18.0.1 and
// IPv6 fd00:198:18::1" or "no underlay address".
func families(v4, v6 netip.Addr) string {
	switch {
	case v4.IsValid() && v6.IsValid():
		return fmt.Sprintf("IPv4 %s and IPv6 %s", v4, v6)
	case v4.IsValid():
		return fmt.Sprintf("only IPv4 (%s)", v4)
	case v6.IsValid():
		return fmt.Sprintf("only IPv6 (%s)", v6)
	}
	return "no underlay address"
}
