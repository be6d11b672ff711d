package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Member is one instance of a community.
type Member struct {
	Underlay  netip.Addr   // IPv4 underlay address: where tunnels to this instance go
	Community string       // community name from the tag
	Overlay   netip.Prefix // overlay address with its prefix length, e.g. 198.19.0.1/24 (not masked)
	ID        string       // identity: "FILE:LINE" for the static inventory, the instance ID for EC2
}

// Errors from FindLocal, wrapped with details; test them with errors.Is.
var (
	ErrLocalNotFound  = errors.New("local member not found")
	ErrLocalAmbiguous = errors.New("local member is ambiguous")
)

// InCommunity returns the members of community, in their original order.
// The result is a new slice; all is not modified.
func InCommunity(all []Member, community string) []Member {
	var out []Member
	for _, m := range all {
		if m.Community == community {
			out = append(out, m)
		}
	}
	return out
}

// FindLocal picks this node's own entry among members (normally one
// community's). When local is valid (the --local flag), it is the member whose
// Underlay equals local. Otherwise it is the single member whose Underlay
// isLocal reports true for; isLocal is typically the result of LocalAddrs.
//
// The error wraps ErrLocalNotFound when no member matches, and
// ErrLocalAmbiguous when several do, and says how to fix either.
func FindLocal(members []Member, local netip.Addr, isLocal func(netip.Addr) bool) (Member, error) {
	var match []Member
	if local.IsValid() {
		local = local.Unmap()
		for _, m := range members {
			if m.Underlay == local {
				match = append(match, m)
			}
		}
		switch len(match) {
		case 0:
			return Member{}, fmt.Errorf("%w: no member has underlay %s (from --local); pass this instance's underlay address as --local, or add a line for it to the inventory", ErrLocalNotFound, local)
		case 1:
			return match[0], nil
		}
		fix := "keep one line per instance"
		if manyCommunities(match) {
			fix = "pass --community to choose one"
		}
		return Member{}, fmt.Errorf("%w: several members have underlay %s: %s; %s", ErrLocalAmbiguous, local, ids(match), fix)
	}
	if isLocal == nil {
		return Member{}, fmt.Errorf("%w: no --local given and no way to list this host's addresses; pass --local with this instance's underlay address", ErrLocalNotFound)
	}
	for _, m := range members {
		if isLocal(m.Underlay) {
			match = append(match, m)
		}
	}
	switch len(match) {
	case 0:
		return Member{}, fmt.Errorf("%w: none of the %d members' underlay addresses is assigned to this host; pass --local with this instance's underlay address, or fix the inventory", ErrLocalNotFound, len(members))
	case 1:
		return match[0], nil
	}
	fix := "pass --local to choose one"
	if manyCommunities(match) {
		fix = "pass --local or --community to choose one"
	}
	return Member{}, fmt.Errorf("%w: the underlay addresses of several members are assigned to this host: %s; %s", ErrLocalAmbiguous, ids(match), fix)
}

// manyCommunities reports whether ms span more than one community.
func manyCommunities(ms []Member) bool {
	for _, m := range ms {
		if m.Community != ms[0].Community {
			return true
		}
	}
	return false
}

// ids lists members as "ID (underlay)" for error messages.
func ids(ms []Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = fmt.Sprintf("%s (%s)", m.ID, m.Underlay)
	}
	return strings.Join(s, ", ")
}

// LocalAddrs returns a function that reports whether an address is assigned
// to one of this host's interfaces, for FindLocal. It takes a snapshot of
// the addresses when called; call it again to see later changes.
func LocalAddrs() (func(netip.Addr) bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("discovery: listing interface addresses: %w", err)
	}
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				set[ip.Unmap()] = true
			}
		}
	}
	return func(a netip.Addr) bool { return set[a.Unmap()] }, nil
}

// Validate checks the member list of one community: every member has the
// same community name, a valid overlay address, and the same overlay prefix
// (length and network) as the first member, and no two members share an
// underlay address or an overlay address. It reports every problem found,
// each naming the members' IDs; it returns nil for a consistent list.
func Validate(members []Member) error {
	if len(members) == 0 {
		return nil
	}
	var (
		errs     []error
		first    = members[0]
		underlay = map[netip.Addr]Member{}
		overlay  = map[netip.Addr]Member{}
	)
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("community %s: "+format, append([]any{first.Community}, args...)...))
	}
	for i, m := range members {
		if m.Community != first.Community {
			add("%s is in community %s; validate each community's members separately", m.ID, m.Community)
			continue
		}
		if !m.Overlay.IsValid() || !m.Underlay.IsValid() {
			add("%s has no valid underlay or overlay address; give it both", m.ID)
			continue
		}
		if prev, dup := underlay[m.Underlay]; dup {
			add("%s and %s both have underlay %s; give each instance its own address", prev.ID, m.ID, m.Underlay)
		} else {
			underlay[m.Underlay] = m
		}
		if prev, dup := overlay[m.Overlay.Addr()]; dup {
			add("%s and %s both have overlay %s; give each instance its own address", prev.ID, m.ID, m.Overlay.Addr())
		} else {
			overlay[m.Overlay.Addr()] = m
		}
		if i == 0 || !first.Overlay.IsValid() {
			continue
		}
		switch {
		case m.Overlay.Bits() != first.Overlay.Bits():
			add("%s has overlay %s but %s has %s; use the same prefix length /%d on every member", m.ID, m.Overlay, first.ID, first.Overlay, first.Overlay.Bits())
		case m.Overlay.Masked() != first.Overlay.Masked():
			add("%s has overlay %s outside %s, the subnet of %s; put every member in %s", m.ID, m.Overlay, first.Overlay.Masked(), first.ID, first.Overlay.Masked())
		}
	}
	return errors.Join(errs...)
}
