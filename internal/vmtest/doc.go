// Package vmtest checks meshcast's multicast delivery on a kernel booted
// under qemu. Its test, TestVMDelivery, runs inside the virtual machine that
// scripts/vmtest.sh (make vmtest) boots with an older distribution kernel:
// three meshcast daemons in network namespaces, one sender and two
// receivers, first with GRE and then with VXLAN, default flags otherwise.
// Each encapsulation has four cells, each its own subtest and its own
// result line for the script's table:
//
//   - delivery: a steady stream and then sendmmsg bursts. Every receiver
//     gets every datagram, and the offloads meshcast status reports fit the
//     kernel.
//   - takeover: during a steady stream, node 2's daemon and then node 1's
//     are replaced with meshcast run --takeover on the same command line.
//     The successor takes the TAP, the underlay socket, the control socket
//     and the state over the control socket (SCM_RIGHTS), attaches to the
//     TAP (TUNSETIFF, TUNGETIFF) and applies its offloads again
//     (TUNSETOFFLOAD, probed, with the fallback of kernels before 6.2). Each
//     takeover costs each receiver it affects at most 5 datagrams, the
//     sender sees no error, the daemon taken over exits 0, every TAP keeps
//     its interface index, and the successors report the offloads the
//     kernel allows.
//   - mld: the nodes have IPv6 overlay addresses (IPv6 on each TAP, with
//     its link-local address) and run with --unregistered drop. Node 2
//     joins ff0e::1:2:3 (an MLDv2 report from its kernel), node 3 joins
//     nothing. Once node 1's daemon lists node 2 as a member, node 1
//     streams to the group: node 2 gets every datagram, node 3's underlay
//     carries at most 20 packets during the stream (the daemons' own), and
//     node 1's MLD querier is active with queries sent. A failed cell says
//     why in its result line; the console has each node's IPv6 addresses,
//     multicast addresses and daemon log.
//   - underlay6: the delivery cell over an IPv6-only underlay (node K at
//     fd00:198:18::K/64, no IPv4 address on the underlay; the inventory
//     lists the IPv6 addresses), with 1000 datagrams, half of them in
//     sendmmsg bursts: GRE over IPv6 through a raw AF_INET6 socket
//     (protocol 47), VXLAN over IPv6 through a raw AF_INET6 UDP socket
//     with IPV6_CHECKSUM, UDP_SEGMENT on UDP6 flow sockets and UDP_GRO on
//     the UDP6 receive socket. Every receiver gets every datagram; each
//     daemon reports its IPv6 address as local, lists its peers by theirs,
//     and a TAP MTU of 1500 less 58 (GRE) or 70 (VXLAN); and the offloads
//     fit the kernel: AF_PACKET egress (and, for VXLAN on 6.2 and later,
//     its segmentation offload) in use behind an IPv6 header, GRE's
//     receive ring off because the underlay is IPv6
//     (overlay.OffloadNoIPv6), the rest as over IPv4.
//
// On a development host the test skips unless MESHCAST_VMTEST=1: it is
// meant for the guest, where it is the only thing running.
package vmtest
