package overlay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestOverheadOver(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00:198:18::1")
	for _, c := range []struct {
		codec  Codec
		o4, o6 int
	}{
		{NewGRE(0, false), 38, 58},
		{NewGRE(7, true), 42, 62},
		{NewVXLAN(5, DefaultVXLANPort), 50, 70},
	} {
		if got := OverheadOver(c.codec, v4); got != c.o4 {
			t.Errorf("%s over IPv4: %d, want %d", c.codec.Name(), got, c.o4)
		}
		if got := OverheadOver(c.codec, v6); got != c.o6 {
			t.Errorf("%s over IPv6: %d, want %d", c.codec.Name(), got, c.o6)
		}
	}
}

// ipv6Packet has gopacket serialize an IPv6 packet of next header nh
// around the layers, and returns what a raw IPv6 socket would deliver:
// the payload after the IPv6 header.
func ipv6Payload(t *testing.T, nh layers.IPProtocol, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh,
		SrcIP: net.ParseIP("fd00:198:18::1"), DstIP: net.ParseIP("fd00:198:18::2")}
	for _, l := range ls {
		if u, ok := l.(*layers.UDP); ok {
			u.SetNetworkLayerForChecksum(ip)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append([]gopacket.SerializableLayer{ip}, ls...)...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[IPv6HeaderLen:]
}

// TestDecapIPv6Oracle decapsulates what gopacket builds as ip6gretap and
// VXLAN over IPv6 would send, and checks the other way that gopacket
// decodes what Encap wrote behind an IPv6 header.
func TestDecapIPv6Oracle(t *testing.T) {
	frame := testFrame(200, 42)
	eth := gopacket.Payload(frame)

	g := NewGRE(testKey, true)
	pkt := ipv6Payload(t, layers.IPProtocolGRE, &layers.GRE{KeyPresent: true, Key: testKey, Protocol: layers.EthernetTypeTransparentEthernetBridging}, eth)
	if inner, r := g.DecapIPv6(pkt); r != OK || !bytes.Equal(inner, frame) {
		t.Errorf("GRE DecapIPv6 of gopacket's ip6gretap packet: %v, %d bytes", r, len(inner))
	}
	if _, r := NewGRE(testKey+1, true).DecapIPv6(pkt); r != ReasonGREKey {
		t.Errorf("GRE with another key: %v, want %v", r, ReasonGREKey)
	}

	v := NewVXLAN(testVNI, DefaultVXLANPort)
	udp := ipv6Payload(t, layers.IPProtocolUDP, &layers.UDP{SrcPort: 50000, DstPort: DefaultVXLANPort}, &layers.VXLAN{ValidIDFlag: true, VNI: testVNI}, eth)
	// The UDP socket delivers what follows the UDP header.
	if inner, r := v.DecapIPv6(udp[UDPHeaderLen:]); r != OK || !bytes.Equal(inner, frame) {
		t.Errorf("VXLAN DecapIPv6 of gopacket's packet: %v, %d bytes", r, len(inner))
	}

	for _, c := range []Codec{g, v} {
		enc := c.Encap(withHeadroom(frame), len(frame))
		nh := layers.IPProtocolGRE
		if c.Name() == "vxlan" {
			nh = layers.IPProtocolUDP
		}
		ip := make([]byte, IPv6HeaderLen)
		ip[0] = 0x60
		ip[4], ip[5] = byte(len(enc)>>8), byte(len(enc))
		ip[6], ip[7] = byte(nh), 64
		p := gopacket.NewPacket(append(ip, enc...), layers.LayerTypeIPv6, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Errorf("%s over IPv6: gopacket: %v", c.Name(), el.Error())
			continue
		}
		e, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if e == nil || !bytes.Equal(e.Contents, frame[:EthHeaderLen]) {
			t.Errorf("%s over IPv6: gopacket finds no inner Ethernet frame", c.Name())
		}
	}
}

// FuzzDecapIPv6 checks that neither codec panics on what an IPv6 socket
// may deliver, and that an accepted packet's inner frame is its tail and
// at least an Ethernet header.
func FuzzDecapIPv6(f *testing.F) {
	frame := testFrame(80, 1)
	f.Add(NewGRE(testKey, true).Encap(withHeadroom(frame), len(frame)))
	f.Add(NewVXLAN(testVNI, DefaultVXLANPort).Encap(withHeadroom(frame), len(frame))[UDPHeaderLen:])
	f.Add([]byte{0x20, 0, 0x65, 0x58})
	f.Add([]byte{})
	codecs := []Codec{NewGRE(testKey, true), NewGRE(0, false), NewVXLAN(testVNI, DefaultVXLANPort)}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, c := range codecs {
			inner, r := c.DecapIPv6(pkt)
			if r != OK {
				if inner != nil {
					t.Fatalf("%s: reason %v with a frame", c.Name(), r)
				}
				continue
			}
			if len(inner) < EthHeaderLen || !bytes.HasSuffix(pkt, inner) {
				t.Fatalf("%s: accepted a frame of %d bytes that is not the packet's tail", c.Name(), len(inner))
			}
		}
	})
}
