package nstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UnderlayPrefix is the IPv4 subnet of every Net's underlay: node K has its
// address .K on NodeLink, unless the Net is IPv6-only. Do not modify it.
var UnderlayPrefix = netip.MustParsePrefix("198.18.0.0/24")

// UnderlayPrefix6 is the IPv6 subnet of the underlay of a Net built with
// UnderlayIPv6 or UnderlayDualStack: node K has the address whose interface
// identifier is K on NodeLink (fd00:198:18::1, ..., fd00:198:18::a for node
// 10). Do not modify it.
var UnderlayPrefix6 = netip.MustParsePrefix("fd00:198:18::/64")

// A Family says which addresses the nodes of a Net have on NodeLink.
type Family int

const (
	// UnderlayIPv4 gives each node an IPv4 address in UnderlayPrefix and
	// leaves IPv6 disabled everywhere. It is the zero Family, and what
	// NewNet builds.
	UnderlayIPv4 Family = iota
	// UnderlayIPv6 gives each node an IPv6 address in UnderlayPrefix6 and
	// no IPv4 address.
	UnderlayIPv6
	// UnderlayDualStack gives each node both addresses.
	UnderlayDualStack
)

func (f Family) String() string {
	switch f {
	case UnderlayIPv4:
		return "IPv4"
	case UnderlayIPv6:
		return "IPv6"
	case UnderlayDualStack:
		return "dual-stack"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

func (f Family) hasIPv4() bool { return f == UnderlayIPv4 || f == UnderlayDualStack }
func (f Family) hasIPv6() bool { return f == UnderlayIPv6 || f == UnderlayDualStack }

// Options are the choices of NewNetWith. The zero Options build what NewNet
// builds.
type Options struct {
	// Underlay is the address family of the nodes' underlay links.
	Underlay Family
}

const (
	// BridgeName is the name of the Linux bridge in the hub namespace.
	BridgeName = "br0"
	// NodeLink is the name of a node's underlay interface.
	NodeLink = "eth0"
	// UnderlayMTU is the MTU of every underlay link.
	UnderlayMTU = 1500
	maxNodes    = 254
)

// A Net is an underlay network: a hub namespace with a Linux bridge, and
// nodes connected to it. Build one with NewNet or NewNetWith. Its methods
// are safe for concurrent use.
type Net struct {
	// Hub is the hub namespace. Its bridge is BridgeName; the bridge port
	// that leads to node K is named HubPort(K).
	Hub *Node

	prefix string      // namespace name prefix, "mc<pid>-<rand>-"
	family Family      // the addresses nodes get
	tb     testing.TB  // the test that made the Net
	test   string      // its name
	seq    uint64      // from netSeq, for LeakCheck
	closed atomic.Bool // set once cleanup has removed everything

	mu    sync.Mutex
	nodes []*Node
	procs []*Proc
	leaks []string // what still held the namespaces at cleanup, for LeakCheck
}

// HubPort returns the name of the hub's bridge port that leads to node k.
func HubPort(k int) string { return fmt.Sprintf("node%d", k) }

// NewNet builds an underlay with n nodes (n may be 0) and registers its
// removal with t.Cleanup. It calls RequireRoot first, and fails the test
// if any step fails. The underlay is IPv4 only: it is NewNetWith with the
// zero Options.
func NewNet(t testing.TB, n int) *Net {
	t.Helper()
	return NewNetWith(t, n, Options{})
}

// NewNetWith is NewNet with options, such as an IPv6 or dual-stack
// underlay:
//
//	nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: nstest.UnderlayIPv6})
func NewNetWith(t testing.TB, n int, opts Options) *Net {
	t.Helper()
	RequireRoot(t)
	if n < 0 || n > maxNodes {
		t.Fatalf("nstest.NewNet: %d nodes; want 0 to %d", n, maxNodes)
	}
	if !opts.Underlay.hasIPv4() && !opts.Underlay.hasIPv6() {
		t.Fatalf("nstest.NewNetWith: unknown underlay family %v", opts.Underlay)
	}
	sweepOnce.Do(func() { sweepStale(t.Logf) })

	nt := &Net{prefix: newPrefix(), family: opts.Underlay, tb: t, test: t.Name(), seq: netSeq.Add(1)}
	// Registered before anything is created, so a failure half way through
	// is cleaned up too.
	t.Cleanup(func() { nt.cleanup(t) })

	hub, err := nt.newNode("hub", 0)
	nt.Hub = hub // for cleanup, even if err != nil
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	err = hub.nl(func(h *netlink.Handle) error {
		off := false
		br := &netlink.Bridge{
			LinkAttrs:         netlink.LinkAttrs{Name: BridgeName, MTU: UnderlayMTU},
			MulticastSnooping: &off,
		}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("adding bridge: %w", err)
		}
		return h.LinkSetUp(br)
	})
	if err != nil {
		t.Fatalf("nstest: hub %s: %v", hub.Name, err)
	}
	for range n {
		nt.AddNode(t)
	}
	return nt
}

// AddNode adds a node on the underlay, with the next free address (or
// addresses, in a dual-stack Net), and returns it. It fails the test if
// that is impossible.
func (nt *Net) AddNode(t testing.TB) *Node {
	t.Helper()
	nt.mu.Lock()
	defer nt.mu.Unlock()
	k := len(nt.nodes) + 1
	if k > maxNodes {
		t.Fatalf("nstest: AddNode: a Net holds at most %d nodes", maxNodes)
	}
	node, err := nt.newNode(fmt.Sprintf("n%d", k), k)
	if node != nil {
		nt.nodes = append(nt.nodes, node) // for cleanup, even if err != nil
	}
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	if nt.family.hasIPv4() {
		a := UnderlayPrefix.Addr().As4()
		a[3] = byte(k)
		node.Underlay = netip.AddrFrom4(a)
	}
	if nt.family.hasIPv6() {
		a := UnderlayPrefix6.Addr().As16()
		a[15] = byte(k)
		node.Underlay6 = netip.AddrFrom16(a)
	}
	if err := nt.connect(node); err != nil {
		t.Fatalf("nstest: connecting %s to the hub: %v", node.Name, err)
	}
	return node
}

// connect creates the veth pair between the hub and node, with the node's
// end named NodeLink and addressed, and brings both ends up.
func (nt *Net) connect(node *Node) error {
	port := HubPort(node.Index)
	err := nt.Hub.nl(func(h *netlink.Handle) error {
		br, err := h.LinkByName(BridgeName)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{
				Name:        port,
				MTU:         UnderlayMTU,
				MasterIndex: br.Attrs().Index,
				TxQLen:      -1,
			},
			PeerName:      NodeLink,
			PeerMTU:       UnderlayMTU,
			PeerTxQLen:    -1,
			PeerNamespace: netlink.NsFd(int(node.ns)),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("adding veth %s: %w", port, err)
		}
		return h.LinkSetUp(veth)
	})
	if err != nil {
		return err
	}
	if node.Underlay6.IsValid() {
		if err := node.Do(enableIPv6); err != nil {
			return err
		}
	}
	return node.nl(func(h *netlink.Handle) error {
		l, err := h.LinkByName(NodeLink)
		if err != nil {
			return err
		}
		if node.Underlay.IsValid() {
			pfx := netip.PrefixFrom(node.Underlay, UnderlayPrefix.Bits())
			addr := &netlink.Addr{IPNet: &net.IPNet{
				IP:   node.Underlay.AsSlice(),
				Mask: net.CIDRMask(pfx.Bits(), 32),
			}}
			if err := h.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("adding %s to %s: %w", pfx, NodeLink, err)
			}
		}
		if node.Underlay6.IsValid() {
			pfx := netip.PrefixFrom(node.Underlay6, UnderlayPrefix6.Bits())
			addr := &netlink.Addr{
				IPNet: &net.IPNet{
					IP:   node.Underlay6.AsSlice(),
					Mask: net.CIDRMask(pfx.Bits(), 128),
				},
				// Usable at once: no duplicate address detection.
				Flags: unix.IFA_F_NODAD,
			}
			if err := h.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("adding %s to %s: %w", pfx, NodeLink, err)
			}
		}
		return h.LinkSetUp(l)
	})
}

// ipv6Sysctls are written, in order, for NodeLink in a node of a Net with
// IPv6: no duplicate address detection (so the link-local address is
// usable at once too), no router advertisements (so no router
// solicitations either), and then IPv6 on. Every other interface keeps
// IPv6 disabled.
var ipv6Sysctls = []struct{ name, value string }{
	{"accept_dad", "0"},
	{"accept_ra", "0"},
	{"disable_ipv6", "0"},
}

// enableIPv6 enables IPv6 on NodeLink, which must be down. It runs inside
// the node's namespace, where /proc/sys/net is the namespace's.
func enableIPv6() error {
	for _, sc := range ipv6Sysctls {
		f := "/proc/sys/net/ipv6/conf/" + NodeLink + "/" + sc.name
		if err := os.WriteFile(f, []byte(sc.value), 0); err != nil {
			return fmt.Errorf("enabling IPv6 on %s: %w", NodeLink, err)
		}
	}
	return nil
}

// newNode creates the namespace prefix+role and a Node for it, and records
// it for cleanup. It returns a non-nil Node whenever the namespace exists,
// even with an error.
func (nt *Net) newNode(role string, index int) (*Node, error) {
	name := nt.prefix + role
	ns, err := createNamespace(name)
	if err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	node := &Node{Name: name, Index: index, net: nt, ns: ns}
	registerNamespace(name, nt)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return node, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	node.handle = h
	return node, nil
}

// Nodes returns the nodes in order of Index (node K is Nodes()[K-1]). The
// slice is a copy; the hub is not in it.
func (nt *Net) Nodes() []*Node {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	return append([]*Node(nil), nt.nodes...)
}

// Node returns the node with Index k, or nil.
func (nt *Net) Node(k int) *Node {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if k < 1 || k > len(nt.nodes) {
		return nil
	}
	return nt.nodes[k-1]
}

func (nt *Net) addProc(p *Proc) {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	nt.procs = append(nt.procs, p)
}

// cleanup stops the processes, kills whatever else runs in the namespaces,
// and deletes the namespaces, nodes before the hub. It reports on t any
// namespace it could not delete.
func (nt *Net) cleanup(t testing.TB) {
	nt.mu.Lock()
	procs := append([]*Proc(nil), nt.procs...)
	nodes := append([]*Node(nil), nt.nodes...)
	nt.mu.Unlock()
	if nt.Hub != nil {
		nodes = append(nodes, nt.Hub)
	}
	// A node whose creation failed half way is not in nt.nodes, but its
	// namespace is registered: find it there.
	for _, name := range registeredBy(nt) {
		found := false
		for _, n := range nodes {
			found = found || n.Name == name
		}
		if !found {
			nodes = append(nodes, &Node{Name: name, ns: netns.None()})
		}
	}

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.stop() })
	}
	wg.Wait()

	var errs []error
	var leaks []string
	for _, n := range nodes {
		if n.handle != nil {
			n.handle.Close()
		}
		if n.ns.IsOpen() {
			n.ns.Close()
		}
		if ino, err := nsInode(filepath.Join(netnsDir, n.Name)); err == nil {
			killNamespaceProcs(ino)
			leaks = append(leaks, holders(n.Name, ino)...)
		}
		if err := deleteNamespace(n.Name); err != nil {
			errs = append(errs, err)
		}
	}
	nt.mu.Lock()
	nt.leaks = leaks
	nt.mu.Unlock()
	nt.closed.Store(true)
	if err := errors.Join(errs...); err != nil {
		t.Errorf("nstest: cleanup: %v", err)
	}
	runPending()
}
