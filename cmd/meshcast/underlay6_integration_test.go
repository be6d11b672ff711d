package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// TestIntegrationUnderlay6 is TestIntegrationMesh over an underlay that is
// IPv6 only (fd00:198:18::K/64, no IPv4 address on the underlay), for GRE
// and VXLAN: the TAP MTU is the underlay's 1500 minus the IPv6 overhead
// (58 and 70 bytes), and a frame of that size crosses unfragmented;
// multicast delivery of 1000 datagrams and split horizon; unicast across
// the overlay; and a fourth host outside the inventory, sending GRE or
// VXLAN over IPv6, gets nothing into a TAP and is counted as not_peer.
func TestIntegrationUnderlay6(t *testing.T) {
	for _, variant := range []string{"gre", "vxlan", "vxlan-offload-off"} {
		t.Run(variant, func(t *testing.T) { testMesh(t, variant, nstest.UnderlayIPv6) })
	}
}

// sendForged6 sends n packets of the encapsulation with a broadcast inner
// frame from src to dst over IPv6, as a host outside the community would.
func sendForged6(src, dst netip.Addr, n int, vni uint32, encap string) error {
	inner := make([]byte, 60)
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0, 0, 0, 0, 4})
	binary.BigEndian.PutUint16(inner[12:14], 0x0806)
	var c net.Conn
	var pkt []byte
	var err error
	if encap == "gre" {
		c, err = net.DialIP("ip6:47", &net.IPAddr{IP: src.AsSlice()}, &net.IPAddr{IP: dst.AsSlice()})
		pkt = make([]byte, 4+len(inner))
		overlay.MarshalGRE(pkt, overlay.GREHeader{Proto: overlay.EtherTypeTEB})
		copy(pkt[4:], inner)
	} else {
		c, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, overlay.DefaultVXLANPort)))
		pkt = make([]byte, 8+len(inner))
		overlay.PutVXLAN(pkt, vni)
		copy(pkt[8:], inner)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.Write(pkt); err != nil {
			return fmt.Errorf("forged %s over IPv6: %w", encap, err)
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}
