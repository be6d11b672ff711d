package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Member is one instance of a community.
//
// Its underlay addresses are where tunnels to it go. Underlay is IPv4, or
// IPv6 for an IPv6-only instance and for an inventory line that gives an
// IPv6 address. A dual-stack EC2 instance has its IPv4 address in
// Underlay and its IPv6 address in Underlay6; Underlay6 is the zero Addr
// otherwise. Underlays returns them by family, and Reach picks the one a
// tunnel uses.
type Member struct {
	Underlay  netip.Addr   // underlay address: IPv4, or IPv6 when the instance has no IPv4 underlay
	Underlay6 netip.Addr   // IPv6 underlay address of a dual-stack instance (Underlay is then IPv4); the zero Addr otherwise
	Community string       // community name from the tag
	Overlay   netip.Prefix // overlay address with its prefix length, e.g. 198.19.0.1/24 (not masked)
	Overlay6  netip.Prefix // optional IPv6 overlay address, e.g. fd00:198:19::1/64; the zero Prefix if none
	ID        string       // identity: "FILE:LINE" for the static inventory, the instance ID for EC2
}

// Errors from FindLocal, inside a *LocalError; test them with errors.Is.
var (
	ErrLocalNotFound  = errors.New("local member not found")
	ErrLocalAmbiguous = errors.New("local member is ambiguous")
)

// LocalError is the error of FindLocal: no member is this node, or several
// are. It wraps ErrLocalNotFound or ErrLocalAmbiguous, and its fields say
// how FindLocal searched, so that a caller can say how to fix it.
type LocalError struct {
	// Err is ErrLocalNotFound or ErrLocalAmbiguous.
	Err error
	// Local is the underlay address FindLocal was given; the zero Addr
	// when it looked for the host's own addresses instead.
	Local netip.Addr
	// NoHostAddrs reports that FindLocal was given neither an address nor
	// a way to tell the host's addresses.
	NoHostAddrs bool
	// Members is how many members FindLocal searched.
	Members int
	// Matches are the members that matched, when several did.
	Matches []Member
}

// Error says what FindLocal did not find, such as "local member not found:
// no member has underlay address 198.18.0.9".
func (e *LocalError) Error() string {
	var what string
	switch {
	case e.Err == ErrLocalAmbiguous && e.Local.IsValid():
		what = fmt.Sprintf("several members have underlay address %s: %s", e.Local, ids(e.Matches))
	case e.Err == ErrLocalAmbiguous:
		what = fmt.Sprintf("the underlay addresses of several members are assigned to this host: %s", ids(e.Matches))
	case e.Local.IsValid():
		what = fmt.Sprintf("no member has underlay address %s", e.Local)
	case e.NoHostAddrs:
		what = "no underlay address given, and no way to list this host's addresses"
	default:
		what = fmt.Sprintf("none of the %d members' underlay addresses is assigned to this host", e.Members)
	}
	if e.ManyCommunities() {
		what += fmt.Sprintf(" (of communities %s)", strings.Join(communities(e.Matches), ", "))
	}
	return fmt.Sprintf("%v: %s", e.Err, what)
}

// Unwrap returns Err.
func (e *LocalError) Unwrap() error { return e.Err }

// ManyCommunities reports whether the members that matched belong to more
// than one community, so that naming the community would tell them apart.
func (e *LocalError) ManyCommunities() bool { return len(communities(e.Matches)) > 1 }

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
// community's). When local is valid, it is the member with the underlay
// address local (Underlay or Underlay6, of either family). Otherwise it is
// the single member with an underlay address isLocal reports true for;
// isLocal is typically the result of LocalAddrs.
//
// When no member or several match, the error is a *LocalError, which wraps
// ErrLocalNotFound or ErrLocalAmbiguous.
func FindLocal(members []Member, local netip.Addr, isLocal func(netip.Addr) bool) (Member, error) {
	var match []Member
	fail := func(err error) (Member, error) {
		return Member{}, &LocalError{Err: err, Local: local, NoHostAddrs: !local.IsValid() && isLocal == nil, Members: len(members), Matches: match}
	}
	if local.IsValid() {
		local = local.Unmap()
		for _, m := range members {
			if v4, v6 := m.Underlays(); sameAddr(v4, local) || sameAddr(v6, local) {
				match = append(match, m)
			}
		}
	} else if isLocal != nil {
		for _, m := range members {
			if v4, v6 := m.Underlays(); v4.IsValid() && isLocal(v4) || v6.IsValid() && isLocal(v6) {
				match = append(match, m)
			}
		}
	}
	switch len(match) {
	case 0:
		return fail(ErrLocalNotFound)
	case 1:
		return match[0], nil
	}
	return fail(ErrLocalAmbiguous)
}

// communities returns the distinct communities of ms, in their order.
func communities(ms []Member) []string {
	var cs []string
	for _, m := range ms {
		if !slices.Contains(cs, m.Community) {
			cs = append(cs, m.Community)
		}
	}
	return cs
}

// ids lists members as "ID (underlay)" or "ID (underlay, underlay6)" for
// error messages.
func ids(ms []Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		if m.Underlay6.IsValid() {
			s[i] = fmt.Sprintf("%s (%s, %s)", m.ID, m.Underlay, m.Underlay6)
			continue
		}
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
// (length and network) as the first member; the members with an IPv6
// overlay address share one IPv6 prefix; an IPv6 Underlay6 goes with an
// IPv4 Underlay only; and no two members share an underlay address
// (Underlay or Underlay6) or an overlay address of either family. The
// underlay addresses may be IPv4 or IPv6. It reports every problem found,
// each naming the members' IDs; it returns nil for a consistent list.
func Validate(members []Member) error {
	if len(members) == 0 {
		return nil
	}
	var (
		errs     []error
		first    = members[0]
		underlay = map[netip.Addr]Member{}
		overlay  = map[netip.Addr]Member{} // IPv4 and IPv6 overlay addresses
		first6   netip.Prefix              // the first IPv6 overlay, and whose
		first6ID string
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
		if u6 := m.Underlay6; u6.IsValid() && (!m.Underlay.Unmap().Is4() || !u6.Is6() || u6.Is4In6()) {
			add("%s has underlays %s and %s; a second underlay address must be IPv6 beside an IPv4 one", m.ID, m.Underlay, u6)
		}
		for j, u := range []netip.Addr{m.Underlay.Unmap(), m.Underlay6.Unmap()} {
			if !u.IsValid() || j == 1 && u == m.Underlay.Unmap() {
				continue
			}
			if prev, dup := underlay[u]; dup {
				add("%s and %s both have underlay %s; give each instance its own address", prev.ID, m.ID, u)
			} else {
				underlay[u] = m
			}
		}
		if prev, dup := overlay[m.Overlay.Addr()]; dup {
			add("%s and %s both have overlay %s; give each instance its own address", prev.ID, m.ID, m.Overlay.Addr())
		} else {
			overlay[m.Overlay.Addr()] = m
		}
		if m.Overlay6.IsValid() {
			if prev, dup := overlay[m.Overlay6.Addr()]; dup {
				add("%s and %s both have IPv6 overlay %s; give each instance its own address", prev.ID, m.ID, m.Overlay6.Addr())
			} else {
				overlay[m.Overlay6.Addr()] = m
			}
			if !first6.IsValid() {
				first6, first6ID = m.Overlay6, m.ID
			} else if m.Overlay6.Masked() != first6.Masked() {
				add("%s has IPv6 overlay %s outside %s, the IPv6 subnet of %s; put every member in %s", m.ID, m.Overlay6, first6.Masked(), first6ID, first6.Masked())
			}
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
