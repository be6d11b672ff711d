// Package igmp will hold meshcast's IGMP v1/v2/v3 snooping table and
// querier (RFC 4541, RFC 2236, RFC 3376). Until it lands, package replicate
// floods every multicast frame to every peer through replicate.Flood.
package igmp
