// Package mld is meshcast's MLD snooping (RFC 4541) of IPv6 multicast:
// byte-view parsers and builders of MLDv1 and MLDv2 messages (RFC 2710, RFC
// 3810) and of the Ethernet frames that carry them. It is the IPv6
// counterpart of package igmp's message and frame code.
//
// The package does no I/O of its own: it is handed frames and bytes, and
// hands back views into them or writes into buffers the caller owns. Parse,
// FromFrame, IPv6Multicast and the record iteration allocate nothing and
// never panic, whatever the input.
//
// # Parsing
//
// FromFrame finds the MLD message in an Ethernet frame: it walks the IPv6
// extension headers, notes whether a Hop-by-Hop header carried the Router
// Alert option, and tells frames that carry MLD from those that carry
// something else and those too broken to tell. Parse then validates one
// message (lengths, every count against the bytes present, the ICMPv6
// checksum over the IPv6 pseudo-header) and returns a Message view that
// copies nothing; Records iterates the Multicast Address Records of a v2
// report without allocating.
//
// # Building
//
// PutQuery, PutQueryV1, PutReportV1 and PutReport write messages into a
// buffer with their checksum left zero; BuildFrame wraps one in Ethernet, an
// IPv6 header with hop limit 1 and a Hop-by-Hop header holding Router Alert,
// and fills the checksum in. Queries that meshcast itself sends can carry
// QuerierMark in their Reserved field, so a node tells its own queriers'
// queries from those of other routers; receivers ignore the field (RFC 3810
// section 5.1.4), so the mark costs nothing on the wire.
package mld
