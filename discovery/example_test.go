package discovery_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/meshcast/meshcast/discovery"
)

func ExampleParseTag() {
	tag, err := discovery.ParseTag("demo,198.19.0.1/24")
	fmt.Println(tag.Community, tag.Overlay, err)

	tag, err = discovery.ParseTag("demo,198.19.0.1/24,fd00:198:19::1/64")
	fmt.Println(tag.Community, tag.Overlay, tag.Overlay6, err)

	_, err = discovery.ParseTag("demo,198.19.0.1/32")
	fmt.Println(err)
	// Output:
	// demo 198.19.0.1/24 <nil>
	// demo 198.19.0.1/24 fd00:198:19::1/64 <nil>
	// overlay "198.19.0.1/32" has prefix length /32, which gives no on-link peers; write the community's subnet length, such as 198.19.0.1/24
}

func ExampleParseInventory() {
	const peers = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX
198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
198.18.0.3      other,198.19.0.3/24   # another community
`
	all, err := discovery.ParseInventory(strings.NewReader(peers), "peers.txt")
	if err != nil {
		fmt.Println(err)
		return
	}
	members := discovery.InCommunity(all, "demo")
	if err := discovery.Validate(members); err != nil {
		fmt.Println(err)
		return
	}
	self, err := discovery.FindLocal(members, netip.MustParseAddr("198.18.0.2"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range members {
		fmt.Println(m.ID, m.Underlay, m.Overlay, m == self)
	}
	// Output:
	// peers.txt:2 198.18.0.1 198.19.0.1/24 false
	// peers.txt:3 198.18.0.2 198.19.0.2/24 true
}

func ExampleInventoryError() {
	_, err := discovery.ParseInventory(strings.NewReader("198.18.0.1 demo,198.19.0.1\n"), "peers.txt")
	if ie, ok := errors.AsType[*discovery.InventoryError](err); ok {
		fmt.Println(ie.Line)
		fmt.Println(err)
	}
	// Output:
	// 1
	// peers.txt:1: overlay "198.19.0.1" has no prefix length; write it as 198.19.0.1/24
}

// A community of an IPv4-only instance a, an IPv6-only instance b and a
// dual-stack instance c, under --underlay-family auto: c tunnels to a over
// IPv4 and to b over IPv6; a reaches c only, and leaves b out.
func ExampleReach() {
	a := discovery.Member{ID: "i-a", Underlay: netip.MustParseAddr("198.18.0.1")}
	b := discovery.Member{ID: "i-b", Underlay: netip.MustParseAddr("fd00:198:18::2")}
	c := discovery.Member{ID: "i-c", Underlay: netip.MustParseAddr("198.18.0.3"), Underlay6: netip.MustParseAddr("fd00:198:18::3")}
	community := []discovery.Member{a, b, c}

	for _, self := range []discovery.Member{c, a} {
		peers, problems := discovery.Reach(self, community, discovery.FamilyAuto)
		for _, p := range peers {
			fmt.Printf("%s -> %s over %s\n", self.ID, p.ID, p.Underlay)
		}
		for _, p := range problems {
			fmt.Printf("%s -> %s left out: %s\n", self.ID, p.ID, p.Reason)
		}
	}
	// Output:
	// i-c -> i-a over 198.18.0.1
	// i-c -> i-b over fd00:198:18::2
	// i-a -> i-c over 198.18.0.3
	// i-a -> i-b left out: no_common_family
}
