// Package overlay is meshcast's wire: the GRE and VXLAN codecs, the TAP device
// that holds a node's overlay address, and the underlay sockets with batch I/O.
//
// Nothing here decides where a frame goes; package replicate does that. The
// codecs are byte views in the style of gVisor's header package: they parse
// and write in place, copy nothing and allocate nothing, so they can run once
// per frame on the data path.
//
// # Buffers and headroom
//
// Every frame buffer reserves [Headroom] bytes in front of the Ethernet frame.
// A [Codec] writes its header into that room, so encapsulation never moves the
// frame. The same encapsulated packet is then sent to every subscribing peer;
// only the destination address differs per copy.
//
// # Wire formats
//
//   - GRE (RFC 2784, RFC 2890): outer IPv4 protocol 47, GRE protocol type
//     0x6558 (Transparent Ethernet Bridging), then the inner frame: the same
//     frames as Linux gretap. 38 bytes of overhead, 42 with a key.
//   - VXLAN (RFC 7348): outer IPv4 and UDP (port 4789 by default), the 8-byte
//     VXLAN header with the I flag and a 24-bit VNI, then the inner frame.
//     50 bytes of overhead. The UDP source port is a hash of the inner flow.
//   - Either over IPv6: the same headers behind an outer IPv6 header (next
//     header 47 as Linux ip6gretap sends, or UDP with its mandatory
//     checksum), 20 bytes more: 58 bytes for GRE (62 with a key), 70 for
//     VXLAN ([OverheadOver]).
//
// # The kernel dataplane
//
// OpenKernel builds the original kernel design instead, through netlink: a
// bridge with IGMP snooping and its querier, holding the overlay address,
// and one isolated tunnel port per peer (gretap, or ip6gretap over an IPv6
// underlay, where the kernel has it, or VXLAN per pair of nodes), or one
// VXLAN device with head-end replication.
// meshcast drives it with the same discovery, so both paths can be compared
// on the same hosts.
package overlay
