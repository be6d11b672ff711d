// Package discovery finds the peers of a meshcast community. A peer source
// (the static inventory file given with --peers, or EC2 instance tags) yields
// a list of Members, each an underlay address plus the value of its
// `multicast` tag, COMMUNITY,IP/PREFIX. Both sources share one tag grammar,
// ParseTag. The daemon keeps the members of its own community (InCommunity),
// checks them (Validate), finds its own entry (FindLocal) and tunnels to the
// rest. This package never touches packets.
//
// # IPv6 underlays
//
// The underlay, the network the tunnels cross, may be IPv4, IPv6 or both.
// An inventory line's underlay address may be IPv6 (ParseInventory). EC2
// discovery reads each instance's primary private IPv4 address and its
// primary IPv6 address: a dual-stack instance has both (Member.Underlay and
// Member.Underlay6), an IPv6-only instance only IPv6, in Member.Underlay;
// an instance with neither is left out as no_private_ip. On an instance
// without IPv4, NewEC2 reaches the instance metadata service over IPv6.
//
// meshcast's --underlay-family 4|6|auto (Family, ParseFamily) decides which
// family each tunnel uses (Reach): 4 and 6 use only that family; auto, the
// default, uses IPv4 where both ends have an IPv4 address, else IPv6 where
// both have an IPv6 one. LocalUnderlays gives the addresses this node opens
// sockets on. A peer reachable by no allowed family is left out with a
// reason: no_ipv4_underlay, no_ipv6_underlay, or no_common_family. The mesh
// is full and never forwards between peers, so a community may mix
// IPv4-only and IPv6-only instances, but those two kinds never reach each
// other: each reaches the dual-stack instances, and the dual-stack ones
// reach everyone. For an IPv4-only and an IPv6-only instance to reach each
// other, give one of them the other's family too (make it dual-stack).
//
// # Example
//
// An inventory lists one instance per line: its underlay address (IPv4, or
// IPv6), then its tag value exactly as in the EC2 tag (see ParseInventory):
//
//	# underlay      COMMUNITY,OVERLAY-IP/PREFIX
//	198.18.0.1      demo,198.19.0.1/24
//	198.18.0.2      demo,198.19.0.2/24
//
// A node loads it, keeps its community and finds itself. A malformed line is
// an *InventoryError naming the file and line, on which meshcast exits 2:
//
//	all, err := discovery.LoadInventory("/etc/meshcast/peers.txt")
//	if err != nil {
//		return err // e.g. "/etc/meshcast/peers.txt:3: overlay "198.19.0.1" has no prefix length; write it as 198.19.0.1/24"
//	}
//	members := discovery.InCommunity(all, "demo")
//	if err := discovery.Validate(members); err != nil {
//		return err
//	}
//	isLocal, err := discovery.LocalAddrs()
//	if err != nil {
//		return err
//	}
//	self, err := discovery.FindLocal(members, netip.Addr{}, isLocal)
//	if err != nil {
//		return err // pass --local
//	}
//	fmt.Println(self.Overlay) // 198.19.0.1/24
package discovery
