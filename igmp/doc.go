// Package igmp is meshcast's IGMP snooping (RFC 4541): byte-view parsers
// and builders of IGMP v1, v2 and v3 messages (RFC 1112, RFC 2236, RFC
// 3376), the snooping table, and the querier of a node's own TAP.
//
// The package does no I/O of its own: it is handed frames and the time,
// and the Querier sends through the functions it is given. Every Table
// and Querier method takes now, so tests drive the clock and run in
// milliseconds.
//
// # Parsing
//
// Parse validates one message (lengths, every count against the bytes
// present, the checksum) and returns a Message view that copies nothing;
// Records iterates the group records of a v3 report without allocating.
// FromFrame finds the IGMP message in an Ethernet frame.
//
// # Table
//
// A Table holds, per port (a peer's underlay address, or LocalPort for the
// TAP) and group, IPv4 groups from IGMP (Handle) and IPv6 groups from MLD
// (HandleMLD, with package mld's messages; RFC 3810 section 7 has the same
// rows), the router-side state of RFC 3376 section 6.4: INCLUDE or
// EXCLUDE with source timers and a group timer, and the IGMPv1/v2
// compatibility modes of section 7.3.2. Lookup answers which peer ports get
// traffic from a source to a group without allocating. The table is bounded
// globally, per port and per membership; what exceeds a bound is refused and
// counted.
//
// # Querier
//
// A Querier (NewQuerier for IGMP, NewMLDQuerier for MLD) sends startup and
// general queries into the TAP (the startup
// ones, and those Solicit asks for, to the peers too, with SetAnnounce),
// the last-member queries after the local host leaves, and yields to a
// querier with a lower address. It holds no lock while it sends.
package igmp
