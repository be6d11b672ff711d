//go:build meshcast_faultinject

package overlay

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationPacketEgressFault makes the AF_PACKET socket refuse
// copies, as a full device queue (ENOBUFS) and as a device that went away
// (ENXIO) would, and checks that every copy still reaches the peer's
// socket, once, that each refusal is counted as a fallback, that the
// offload stays in use, and that only the second kind holds the peer on
// the socket path.
func TestIntegrationPacketEgressFault(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			nstest.LeakCheck(t)
			nt := nstest.NewNet(t, 2)
			src, peer := nt.Node(1), nt.Node(2)
			pc := listenIn(t, src, codec, packetTestPort, Options{Batch: 8})
			rc := listenIn(t, peer, codec, DefaultVXLANPort, Options{NoOffload: true})
			p := packetOf(t, pc)
			c := codecOf(codec)
			pkts, frames := encapFrames(c, 20) // three sendmmsg calls
			writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
			checkDelivered(t, c, readN(t, rc, len(pkts)), src.Underlay, frames)
			waitResolved(t, pc, peer.Underlay)
			t.Cleanup(func() { SetFaults("") })

			for _, step := range []struct {
				fault     string
				fallbacks uint64
				held      bool
			}{
				{"af_packet_tx=ENOBUFS x2", 2, false},
				{"af_packet_tx=ENXIO", 3, true},
			} {
				if err := SetFaults(step.fault); err != nil {
					t.Fatal(err)
				}
				before, fellBefore := p.stats(), statusOf(t, pc).Fallbacks
				writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
				checkDelivered(t, c, readN(t, rc, len(pkts)), src.Underlay, frames)
				st := statusOf(t, pc)
				after := p.stats()
				t.Logf("%s: %+v, %d through AF_PACKET", step.fault, st, after.Packet-before.Packet)
				if !st.InUse || st.Fallbacks != step.fallbacks {
					t.Errorf("%s: %+v, want in use with %d fallbacks", step.fault, st, step.fallbacks)
				}
				if got := after.Packet - before.Packet; got != uint64(len(pkts))-(st.Fallbacks-fellBefore) {
					t.Errorf("%s: %d copies through AF_PACKET", step.fault, got)
				}
				if held := routeTo(pc, peer.Underlay).st.hold.Load(); held != step.held {
					t.Errorf("%s: peer held %v, want %v", step.fault, held, step.held)
				}
			}
			// Held: the next batch takes the socket path, and still
			// arrives.
			before := p.stats()
			writeIn(t, src, pc, peerMsgs(pkts, peer.Underlay))
			checkDelivered(t, c, readN(t, rc, len(pkts)), src.Underlay, frames)
			if after := p.stats(); after.Packet != before.Packet || after.Socket-before.Socket != uint64(len(pkts)) {
				t.Errorf("held: %+v after %+v, want every copy through the socket", after, before)
			}
		})
	}
}

// TestIntegrationPacketGSOFault makes the kernel refuse the first
// VIRTIO_NET_HDR_GSO_UDP_L4 packet with EINVAL, as Linux before 6.2 does,
// and checks that every copy still arrives, once, that the fallback is
// counted once and the offload is off from then on, with the errno in its
// reason, and that runs then leave through AF_PACKET copy by copy.
func TestIntegrationPacketGSOFault(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	pc := listenIn(t, src, "vxlan", packetTestPort, Options{})
	rc := listenIn(t, peer, "vxlan", DefaultVXLANPort, Options{NoOffload: true})
	c := codecOf("vxlan")
	var msgs []Message
	var frames [][]byte
	for i := range 12 {
		f := testFrame(400, uint16(1001+i%2)) // two runs of 6
		binary.BigEndian.PutUint32(f[396:], uint32(i))
		frames = append(frames, f)
		msgs = append(msgs, Message{Buf: c.Encap(withHeadroom(f), len(f)), Addr: peer.Underlay})
	}
	writeIn(t, src, pc, msgs)
	checkDelivered(t, c, readN(t, rc, len(msgs)), src.Underlay, frames)
	waitResolved(t, pc, peer.Underlay)
	if err := SetFaults("af_packet_gso=EINVAL"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetFaults("") })
	for _, name := range []string{"refused", "after"} {
		before := pc.PacketEgress()
		writeIn(t, src, pc, msgs)
		checkDelivered(t, c, readN(t, rc, len(msgs)), src.Underlay, frames)
		after := pc.PacketEgress()
		st := pc.Offloads()[3]
		t.Logf("%s: %+v; %d through AF_PACKET, %d through the socket", name, st, after.Packet-before.Packet, after.Socket-before.Socket)
		if st.Name != OffloadPacketGSO || st.InUse || st.Fallbacks != 1 || !strings.Contains(st.Reason, "EINVAL") || !strings.Contains(st.Reason, "6.2") {
			t.Errorf("%s: %+v; want off after 1 fallback, saying EINVAL and Linux 6.2", name, st)
		}
		if after.Segmented != before.Segmented {
			t.Errorf("%s: %d copies segmented", name, after.Segmented-before.Segmented)
		}
		if name == "after" && after.Packet-before.Packet != uint64(len(msgs)) {
			t.Errorf("after: %d copies through AF_PACKET, want %d one by one", after.Packet-before.Packet, len(msgs))
		}
	}
	if st := statusOf(t, pc); !st.InUse || st.Fallbacks != uint64(len(msgs)) {
		t.Errorf("%+v: want AF_PACKET egress in use, with the %d copies of the refused runs as fallbacks", st, len(msgs))
	}
}

// TestIntegrationPacketGSOProbe makes the open-time probe of
// VIRTIO_NET_HDR_GSO_UDP_L4 fail with EINVAL, as Linux before 6.2 does,
// and checks that the offload is off from the start with the errno in its
// reason and no fallback counted, that runs leave through AF_PACKET copy
// by copy and that every copy arrives once.
func TestIntegrationPacketGSOProbe(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 2)
	src, peer := nt.Node(1), nt.Node(2)
	if err := SetFaults("af_packet_gso_probe=EINVAL"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetFaults("") })
	pc := listenIn(t, src, "vxlan", packetTestPort, Options{})
	rc := listenIn(t, peer, "vxlan", DefaultVXLANPort, Options{NoOffload: true})
	c := codecOf("vxlan")
	var msgs []Message
	var frames [][]byte
	for i := range 12 {
		f := testFrame(400, uint16(1001+i%2))
		binary.BigEndian.PutUint32(f[396:], uint32(i))
		frames = append(frames, f)
		msgs = append(msgs, Message{Buf: c.Encap(withHeadroom(f), len(f)), Addr: peer.Underlay})
	}
	st := pc.Offloads()[3]
	if st.Name != OffloadPacketGSO || st.InUse || st.Fallbacks != 0 || !strings.Contains(st.Reason, "EINVAL") || !strings.Contains(st.Reason, "Linux 6.2") {
		t.Fatalf("%+v; want off from the start, saying EINVAL and Linux 6.2, with no fallback", st)
	}
	writeIn(t, src, pc, msgs)
	checkDelivered(t, c, readN(t, rc, len(msgs)), src.Underlay, frames)
	waitResolved(t, pc, peer.Underlay)
	before := pc.PacketEgress()
	writeIn(t, src, pc, msgs)
	checkDelivered(t, c, readN(t, rc, len(msgs)), src.Underlay, frames)
	after := pc.PacketEgress()
	if after.Packet-before.Packet != uint64(len(msgs)) || after.Segmented != before.Segmented {
		t.Errorf("%+v after %+v: want the %d copies through AF_PACKET one by one", after, before, len(msgs))
	}
	if st := statusOf(t, pc); !st.InUse || st.Fallbacks != 0 {
		t.Errorf("%+v: want AF_PACKET egress in use with no fallback", st)
	}
}
