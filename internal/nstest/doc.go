// Package nstest builds throwaway networks of Linux network namespaces for
// integration tests that need root.
//
// A [Net] is an underlay like a VPC subnet: a hub namespace holding a Linux
// bridge, and one namespace per [Node], each joined to the bridge by a veth
// pair. Inside a node the veth is named eth0 and has the address
// 198.18.0.K/24, where K is the node's Index (1, 2, ...). [NewNetWith]
// builds an IPv6-only or dual-stack underlay instead (see below). Tests start
// daemons and probes in the nodes with [Node.Start], run short commands with
// [Node.Exec], and run Go code inside a namespace with [Node.Do].
//
// # Privileges
//
// Every constructor calls [RequireRoot] first. Without root, or where
// namespaces cannot be created, the test is skipped with a hint; with the
// environment variable CI=true it fails instead, because CI is expected to
// run these tests.
//
// # Cleanup
//
// Everything is removed by t.Cleanup, also when the test fails or panics:
// processes are stopped first (SIGTERM, then SIGKILL after 5 s), then any
// other process still inside one of the namespaces is killed, then the
// namespaces are deleted, which deletes their links. Processes are started
// with a parent-death signal, so they die with the test binary even when it
// is killed by -timeout. Namespaces left behind by a test binary that died
// are removed by the next [NewNet] in any test binary.
//
// Namespace names are "mc" + the test process id in base 36 + a random
// suffix + the role ("hub", "n1", "n2", ...), so tests may run in parallel.
//
// # Defaults inside the namespaces
//
// IPv6 is disabled in every namespace (including on links created later),
// so that router solicitations and MLD reports do not show up in packet
// counters. The hub bridge has IGMP and MLD snooping off: it is a plain
// switch, like the unicast-only underlay it stands for, and floods multicast
// to every port.
//
// # IPv6 underlays
//
// [NewNetWith] with [Options].Underlay set to [UnderlayIPv6] gives node K
// the address fd00:198:18::K/64 on eth0 (K as the interface identifier, so
// node 10 has fd00:198:18::a) and no IPv4 address; [UnderlayDualStack]
// gives it both addresses. The node's [Node.Underlay6] holds the IPv6
// address, [Node.Underlay] the IPv4 one; each is the zero netip.Addr when
// the node has none. [UnderlayIPv4], the zero value, is what [NewNet]
// builds, and there Underlay6 is always the zero Addr.
//
// In such a Net IPv6 is enabled on each node's eth0 only, with duplicate
// address detection off (the addresses, the link-local one included, are
// usable at once) and router advertisements ignored (so no router
// solicitations are sent). Everything else keeps IPv6 disabled: lo, every
// link created later, and the hub's bridge and ports, which switch IPv6
// frames without taking part. Expect some neighbour discovery and MLD
// reports (for the solicited-node groups) on the underlay; the hub floods
// them to every node. As lo has no IPv6, a node cannot reach its own IPv6
// underlay address.
//
// # Example
//
//	func TestIntegrationPing(t *testing.T) {
//		nstest.LeakCheck(t)
//		nt := nstest.NewNet(t, 2)
//		a, b := nt.Node(1), nt.Node(2)
//		if out, err := a.Exec(t, "ping", "-c", "1", "-W", "2", b.Underlay.String()); err != nil {
//			t.Fatalf("%v\n%s", err, out)
//		}
//	}
package nstest
