package vmtest

import (
	"net/netip"
	"testing"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// The cells testDelivery runs: delivery over the IPv4 underlay, and
// underlay6, the same check over an IPv6-only underlay.
const (
	cellDelivery  = "delivery"
	cellUnderlay6 = "underlay6"
)

// The underlay6 cell: the demo inventory with IPv6 underlay addresses,
// node K at fd00:198:18::K (nstest's UnderlayIPv6; the underlay has no
// IPv4 address at all), overlay 198.19.0.K/24 as in the delivery cell.
// Its load is defaultUnderlay6 datagrams, about the mld cell's, split as
// the delivery cell's is: half in sendmmsg bursts, the rest a steady
// stream before them.
const (
	inventoryUnderlay6 = `# underlay          COMMUNITY,OVERLAY-IP/PREFIX
fd00:198:18::1      demo,198.19.0.1/24
fd00:198:18::2      demo,198.19.0.2/24
fd00:198:18::3      demo,198.19.0.3/24
`
	defaultUnderlay6 = 1000
)

// overhead6 is each encapsulation's overhead over IPv6: the outer IPv6
// header (40), GRE (4) or UDP and VXLAN (16), and the inner Ethernet
// header (14). The TAP MTU is the underlay's minus it.
var overhead6 = map[string]int{"gre": 40 + 4 + 14, "vxlan": 40 + 8 + 8 + 14}

// underlay returns node n's underlay address: its IPv4 one, or on an
// IPv6-only underlay its IPv6 one.
func underlay(n *nstest.Node) netip.Addr {
	if n.Underlay.IsValid() {
		return n.Underlay
	}
	return n.Underlay6
}

// underlay6Load splits count datagrams as the delivery cell's load is
// split: half of them, in whole bursts of burst, sent with sendmmsg, the
// rest a steady stream before them.
func underlay6Load(count, burst int) load {
	if burst <= 0 {
		return load{steady: count}
	}
	bursts := count / 2 / burst
	return load{steady: count - bursts*burst, bursts: bursts, burst: burst}
}

// underlayName names the underlay of the cell of r, for messages.
func (r *result) underlayName() string {
	if r.cell == cellUnderlay6 {
		return "IPv6"
	}
	return "IPv4"
}

// packetEgress6 says whether meshcast sends through AF_PACKET egress over
// an IPv6 underlay. It does, behind an IPv6 header it writes: the cell
// expects af_packet_tx and af_packet_gso as over IPv4. (false: every copy
// through the IPv6 socket, both off with overlay.OffloadNoIPv6.)
const packetEgress6 = true

// underlay6Offloads returns the offloads this kernel allows over an IPv6
// underlay with encap, with default flags, and the reasons those that are
// off must give where the IPv6 underlay is the reason. Over IPv6 meshcast
// uses neither AF_PACKET egress and its segmentation offload (unless
// packetEgress6) nor GRE's receive ring: they are off with
// overlay.OffloadNoIPv6. VXLAN's UDP offloads apply as over IPv4
// (UDP_SEGMENT on the UDP6 flow sockets needs Linux 4.18, UDP_GRO on the
// UDP6 receive socket 5.0), and so does the TAP's coalescing (6.2). Where
// the encapsulation has no such offload at all, its own reason stands:
// GRE has no af_packet_gso ("gre has no UDP offload"), and VXLAN arrives
// through its UDP socket, never the receive ring.
func underlay6Offloads(t *testing.T, encap string, tapGSO bool) (map[string]bool, map[string]string) {
	t.Helper()
	_, gso := kernelRelease(t, 4, 18)
	_, gro := kernelRelease(t, 5, 0)
	vxlan := encap == "vxlan"
	want := map[string]bool{"tap_coalesce": tapGSO, "udp_gso": vxlan && gso, "udp_gro": vxlan && gro,
		"af_packet_tx": packetEgress6, "af_packet_gso": packetEgress6 && vxlan && tapGSO, "af_packet_rx": false}
	reason := map[string]string{}
	if !packetEgress6 {
		reason["af_packet_tx"] = overlay.OffloadNoIPv6
		if vxlan {
			reason["af_packet_gso"] = overlay.OffloadNoIPv6
		}
	}
	if !vxlan {
		reason["af_packet_rx"] = overlay.OffloadNoIPv6
	}
	return want, reason
}

// checkUnderlay6 checks what the daemons of an underlay6 cell report
// besides their offloads: each one's local address is its IPv6 underlay
// address, it lists the other two nodes by theirs, and its TAP MTU is the
// underlay's less the encapsulation's overhead over IPv6. It records the
// MTU in res.
func (m *mesh) checkUnderlay6(t *testing.T, sts []*status, encap string, res *result) {
	t.Helper()
	wantMTU := nstest.UnderlayMTU - overhead6[encap]
	for i, st := range sts {
		if st == nil {
			continue
		}
		n := m.nodes[i]
		switch {
		case res.mtu == 0:
			res.mtu = st.MTU
		case res.mtu != st.MTU:
			res.mtu = -1
		}
		if st.Local != n.Underlay6.String() {
			res.fail(t, "node %d: status local is %q, want its IPv6 underlay address %s", i+1, st.Local, n.Underlay6)
		}
		for j, o := range m.nodes {
			if j == i {
				continue
			}
			if _, _, ok := st.peer(o.Underlay6.String()); !ok {
				res.fail(t, "node %d: status lists no peer %s (node %d's IPv6 underlay address)", i+1, o.Underlay6, j+1)
			}
		}
		if st.MTU != wantMTU {
			res.fail(t, "node %d: TAP MTU %d with %s over IPv6, want %d (%d less %d)",
				i+1, st.MTU, encap, wantMTU, nstest.UnderlayMTU, overhead6[encap])
		}
	}
}
