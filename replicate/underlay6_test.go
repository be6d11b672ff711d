package replicate

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshcast/meshcast/overlay"
)

func underlay6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0x01, 0x98, 0, 0x18, 15: byte(i)})
}

// mixedInfos is n IPv4 peers (198.18.0.2...) and n IPv6 ones
// (fd00:198:18::2...), as a dual-stack node sees a mixed community.
func mixedInfos(n int) []PeerInfo {
	infos := peerInfos(n)
	for i := 2; i < n+2; i++ {
		infos = append(infos, PeerInfo{
			Underlay: underlay6(i),
			Overlay:  netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}), 16),
			ID:       fmt.Sprintf("peer6-%d", i),
		})
	}
	return infos
}

// encapFrom6 wraps an inner frame as an IPv6 peer sends it, in the form
// the IPv6 underlay socket delivers: no outer header for GRE; the VXLAN
// header on for VXLAN.
func encapFrom6(codec overlay.Codec, inner []byte) []byte {
	buf := make([]byte, BufSize)
	copy(buf[overlay.Headroom:], inner)
	pkt := codec.Encap(buf, len(inner))
	if codec.Name() != "gre" {
		return bytes.Clone(pkt[overlay.UDPHeaderLen:])
	}
	return bytes.Clone(pkt)
}

// TestIPv6Underlay checks a node with IPv4 and IPv6 peers: multicast goes
// to both families, a packet from an IPv6 peer is accepted and counted to
// it, one from an IPv6 address that is not a peer is counted as not_peer,
// and neither path allocates.
func TestIPv6Underlay(t *testing.T) {
	for _, codec := range codecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			e, err := New(Config{Codec: codec, LocalMAC: localMAC})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.SetPeers(mixedInfos(2)); err != nil {
				t.Fatal(err)
			}
			w := &capture{keep: true}
			g := e.newEgress(8)
			buf, n := frame(mcastMAC, localMAC, 100)
			if err := g.forward(buf, n, w); err != nil {
				t.Fatal(err)
			}
			g.flush(w)
			to := w.to()
			for _, a := range []netip.Addr{underlay(2), underlay(3), underlay6(2), underlay6(3)} {
				if to[a] != 1 {
					t.Errorf("copies to %v: %d, want 1", a, to[a])
				}
			}

			in, m := frame(localMAC, remoteMAC, 300)
			pkt := encapFrom6(codec, in[overlay.Headroom:overlay.Headroom+m])
			now := time.Now().UnixNano()
			if f := e.receive(underlay6(3), pkt, now); !bytes.Equal(f, in[overlay.Headroom:overlay.Headroom+m]) {
				t.Fatalf("a packet from IPv6 peer %v was not delivered intact", underlay6(3))
			}
			if e.receive(underlay6(9), pkt, now) != nil || e.Drops()["not_peer"] != 1 {
				t.Errorf("a packet from the non-peer %v: not_peer = %d, want 1", underlay6(9), e.Drops()["not_peer"])
			}
			// A peer's IPv4 address in IPv4-mapped form is no peer.
			mapped := netip.AddrFrom16(underlay(2).As16())
			if e.receive(mapped, pkt, now) != nil {
				t.Errorf("a packet from %v was accepted", mapped)
			}
			for _, p := range e.Peers() {
				want := uint64(0)
				if p.Underlay == underlay6(3) {
					want = 1
				}
				if p.RxPackets != want {
					t.Errorf("peer %v: rx %d, want %d", p.Underlay, p.RxPackets, want)
				}
			}
			if a := testing.AllocsPerRun(1000, func() {
				if e.receive(underlay6(3), pkt, now) == nil {
					t.Fatal("dropped")
				}
			}); a != 0 {
				t.Errorf("ingress from an IPv6 peer allocates %.1f per packet", a)
			}
		})
	}
}

// TestSetPeersUnderlay6 checks that SetPeers keeps an IPv6 peer's
// counters across updates, removes it, and refuses addresses that name
// no unicast peer.
func TestSetPeersUnderlay6(t *testing.T) {
	e := newTestEngine(t, overlay.NewGRE(0, false), 0)
	added, _, err := e.SetPeers(mixedInfos(1))
	if err != nil || len(added) != 2 {
		t.Fatalf("SetPeers: %v added, %v", added, err)
	}
	e.peers.Load().lookup(underlay6(2)).rxPackets.Add(5)
	added, removed, err := e.SetPeers(mixedInfos(1))
	if err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("the same peers again: added %v removed %v, %v", added, removed, err)
	}
	if p := e.peers.Load().lookup(underlay6(2)); p == nil || p.rxPackets.Load() != 5 {
		t.Fatalf("the IPv6 peer lost its counters")
	}
	_, removed, err = e.SetPeers(peerInfos(1))
	if err != nil || len(removed) != 1 || removed[0] != underlay6(2) {
		t.Fatalf("removing the IPv6 peer: removed %v, %v", removed, err)
	}
	for _, bad := range []string{"::ffff:198.18.0.9", "fe80::1%eth0", "ff02::1", "::"} {
		info := PeerInfo{Underlay: netip.MustParseAddr(bad), Overlay: netip.MustParsePrefix("198.19.0.9/24"), ID: "bad"}
		if _, _, err := e.SetPeers([]PeerInfo{info}); err == nil {
			t.Errorf("SetPeers accepted underlay %s", bad)
		}
	}
}

func BenchmarkIngress6(b *testing.B) {
	for _, codec := range []overlay.Codec{overlay.NewGRE(0, false), overlay.NewVXLAN(42, 4789)} {
		b.Run(codec.Name(), func(b *testing.B) {
			e, err := New(Config{Codec: codec, LocalMAC: localMAC})
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := e.SetPeers(mixedInfos(16)); err != nil {
				b.Fatal(err)
			}
			in, m := frame(localMAC, remoteMAC, 1400-42)
			pkt := encapFrom6(codec, in[overlay.Headroom:overlay.Headroom+m])
			now := time.Now().UnixNano()
			b.ReportAllocs()
			for b.Loop() {
				e.receive(underlay6(2), pkt, now)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
