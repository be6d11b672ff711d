package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/meshcast/meshcast/internal/netnsx"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The testbed's fixed names and addresses.
const (
	netnsDir    = "/run/netns"
	nsPrefix    = "mcb-"
	hubBridge   = "br0"
	nodeLink    = "eth0"
	overlayDev  = "mcbr-demo"
	community   = "demo"
	underlayMTU = 1500
)

// staleName matches the namespaces and temporary directories of a
// harness; the group is its pid in base 36.
var staleName = regexp.MustCompile(`^mcb-([0-9a-z]+)-[0-9a-f]{4}-[a-z0-9]+$`)

// A testbed is the hub and the nodes. Node K (nodes[K-1]) has the underlay
// address 198.18.0.K/24, or with an IPv6 underlay fd00:198:18::K/64 (and
// no IPv4 address on eth0), and the overlay address 198.19.0.K/24; node 1
// is the source.
type testbed struct {
	prefix string
	hub    *nsNode
	nodes  []*nsNode
}

// underlayNetlinkAddr is a, an underlay address, as eth0 (or Open
// vSwitch's br-phy) holds it: in a /24, or an IPv6 /64 usable at once (no
// duplicate address detection).
func underlayNetlinkAddr(a netip.Addr) *netlink.Addr {
	if a.Is6() {
		return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}
}

// ipv6Sysctls are written, in order, for a link that carries the IPv6
// underlay, while it is down: no duplicate address detection (its
// link-local address is usable at once too), no router advertisements (so
// no router solicitations either), then IPv6 on.
var ipv6Sysctls = []struct{ name, value string }{
	{"accept_dad", "0"},
	{"accept_ra", "0"},
	{"disable_ipv6", "0"},
}

// enableIPv6 turns IPv6 on for link in node n's namespace, as ipv6Sysctls
// say.
func (n *nsNode) enableIPv6(link string) error {
	return n.do(func() error {
		// /proc/sys/net is the namespace of the thread that opens it.
		for _, sc := range ipv6Sysctls {
			f := "/proc/sys/net/ipv6/conf/" + link + "/" + sc.name
			if err := os.WriteFile(f, []byte(sc.value), 0); err != nil {
				return fmt.Errorf("enabling IPv6 on %s: %w", link, err)
			}
		}
		return nil
	})
}

// An nsNode is one named network namespace.
type nsNode struct {
	name     string
	index    int // K; 0 for the hub
	ns       netns.NsHandle
	h        *netlink.Handle
	underlay netip.Addr
	overlay  netip.Prefix
}

// newTestbed builds a hub and n nodes whose underlay is of family
// (Underlay4 or Underlay6). On error everything built so far is removed.
func newTestbed(n int, family string) (tb *testbed, err error) {
	sweepStale()
	tb = &testbed{prefix: newPrefix()}
	defer func() {
		if err != nil {
			tb.close()
			tb = nil
		}
	}()
	if _, err := tb.newNode("hub", 0); err != nil { // sets tb.hub
		return tb, err
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: hubBridge, MTU: underlayMTU}, MulticastSnooping: &off}
	if err := tb.hub.h.LinkAdd(br); err != nil {
		return tb, fmt.Errorf("bench: hub bridge: %w", err)
	}
	if err := tb.hub.h.LinkSetUp(br); err != nil {
		return tb, fmt.Errorf("bench: hub bridge: %w", err)
	}
	for k := 1; k <= n; k++ {
		node, err := tb.newNode(fmt.Sprintf("n%d", k), k)
		if err != nil {
			return tb, err
		}
		node.underlay = underlayAddr(family, k)
		node.overlay = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(k)}), 24)
		if err := tb.connect(node, br); err != nil {
			return tb, fmt.Errorf("bench: connecting %s: %w", node.name, err)
		}
	}
	return tb, nil
}

// newNode creates namespace prefix+role and records it in tb, before
// anything can fail, so close removes it.
func (tb *testbed) newNode(role string, index int) (*nsNode, error) {
	name := tb.prefix + role
	node := &nsNode{name: name, index: index, ns: netns.None()}
	if index == 0 {
		tb.hub = node
	} else {
		tb.nodes = append(tb.nodes, node)
	}
	ns, err := createNamespace(name)
	if err != nil {
		return nil, fmt.Errorf("bench: creating namespace %s: %w", name, err)
	}
	node.ns = ns
	if node.h, err = netlink.NewHandleAt(ns); err != nil {
		return nil, fmt.Errorf("bench: netlink in %s: %w", name, err)
	}
	return node, nil
}

// connect joins node to the hub bridge with a veth pair: hub side pK,
// node side eth0 with the underlay address (and, for an IPv6 one, IPv6
// turned on first).
func (tb *testbed) connect(node *nsNode, br netlink.Link) error {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: fmt.Sprintf("p%d", node.index), MTU: underlayMTU,
			MasterIndex: br.Attrs().Index, TxQLen: -1,
		},
		PeerName: nodeLink, PeerMTU: underlayMTU, PeerTxQLen: -1,
		PeerNamespace: netlink.NsFd(int(node.ns)),
	}
	if err := tb.hub.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := tb.hub.h.LinkSetUp(veth); err != nil {
		return err
	}
	l, err := node.h.LinkByName(nodeLink)
	if err != nil {
		return err
	}
	if node.underlay.Is6() {
		if err := node.enableIPv6(nodeLink); err != nil {
			return err
		}
	}
	if err := node.h.AddrAdd(l, underlayNetlinkAddr(node.underlay)); err != nil {
		return fmt.Errorf("address %s: %w", node.underlay, err)
	}
	return node.h.LinkSetUp(l)
}

// close deletes every namespace of the testbed (their links go with them),
// killing whatever still runs inside. It may be called more than once.
func (tb *testbed) close() error {
	var errs []error
	nodes := append([]*nsNode(nil), tb.nodes...)
	if tb.hub != nil {
		nodes = append(nodes, tb.hub)
	}
	for _, n := range nodes {
		if n.h != nil {
			n.h.Close()
			n.h = nil
		}
		if n.ns.IsOpen() {
			n.ns.Close()
			n.ns = netns.None()
		}
		if err := deleteNamespace(n.name); err != nil {
			errs = append(errs, err)
		}
	}
	tb.nodes, tb.hub = nil, nil
	return errors.Join(errs...)
}

// do runs fn on a fresh OS thread inside the node's namespace; see doIn.
func (n *nsNode) do(fn func() error) error { return doIn(n.ns, fn) }

// rxPackets returns the received-packets counter of the node's eth0.
func (n *nsNode) rxPackets() (uint64, error) {
	l, err := n.h.LinkByName(nodeLink)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", n.name, err)
	}
	if s := l.Attrs().Statistics; s != nil {
		return s.RxPackets, nil
	}
	return 0, fmt.Errorf("%s: %s has no statistics", n.name, nodeLink)
}

// overlayReady reports whether mcbr-demo exists, is up and holds the node's
// overlay address, and returns its link.
func (n *nsNode) overlayReady() (netlink.Link, bool) {
	l, err := n.h.LinkByName(overlayDev)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		return nil, false
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, false
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == n.overlay.Addr() {
			return l, true
		}
	}
	return nil, false
}

// newPrefix returns "mcb-<pid base 36>-<4 hex>-".
func newPrefix() string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return nsPrefix + strconv.FormatInt(int64(os.Getpid()), 36) + "-" + hex.EncodeToString(b[:]) + "-"
}

// sweepStale deletes the namespaces and temporary directories of
// harnesses that died without cleaning up (SIGKILL): their names carry the
// pid of a process that no longer exists. Best effort.
func sweepStale() {
	stale := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, err := strconv.ParseInt(m[1], 36, 32)
		if err != nil || int(pid) == os.Getpid() {
			return false
		}
		err = unix.Kill(int(pid), 0)
		return errors.Is(err, unix.ESRCH) // else its owner is alive
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if stale(e.Name()) {
				_ = deleteNamespace(e.Name())
			}
		}
	}
	if entries, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range entries {
			if e.IsDir() && stale(e.Name()) {
				_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

func createNamespace(name string) (netns.NsHandle, error) { return netnsx.Create(name) }
func deleteNamespace(name string) error                   { return netnsx.Delete(name) }
func doIn(ns netns.NsHandle, fn func() error) error       { return netnsx.DoIn(ns, fn) }
