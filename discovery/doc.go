// Package discovery finds the peers of a meshcast community. A peer source
// (the static inventory file given with --peers, or EC2 instance tags) yields
// a list of Members, each an underlay address plus the value of its
// `multicast` tag, COMMUNITY,IP/PREFIX. Both sources share one tag grammar,
// ParseTag. The daemon keeps the members of its own community (InCommunity),
// checks them (Validate), finds its own entry (FindLocal) and tunnels to the
// rest. This package never touches packets.
//
// # Example
//
// An inventory lists one instance per line: its underlay IPv4 address, then
// its tag value exactly as in the EC2 tag (see ParseInventory):
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
