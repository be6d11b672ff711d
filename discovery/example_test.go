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
