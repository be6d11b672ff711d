//go:build meshcast_faultinject

package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestSetFaults(t *testing.T) {
	for _, bad := range []string{"tap_coalesce", "tap_coalesce=EWHAT", "udp_gso=EIOx0", "udp_gso=EIOxz"} {
		if err := SetFaults(bad); err == nil {
			t.Errorf("SetFaults(%q) accepted", bad)
		}
	}
	if err := SetFaults("tap_coalesce=EINVAL x2, udp_gso=EIO"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetFaults("") })
	for i, want := range []unix.Errno{unix.EINVAL, unix.EINVAL, 0} {
		if got := injected(OffloadTAPCoalesce); got != want {
			t.Errorf("tap_coalesce use %d: %v, want %v", i, got, want)
		}
	}
	if got := injected(OffloadUDPGSO); got != unix.EIO {
		t.Errorf("udp_gso: %v", got)
	}
}

// TestIntegrationTAPCoalesceFault makes the kernel refuse the first
// coalesced TAP write with EINVAL, as Linux 6.1 does, and checks that the
// same datagrams reach a socket on the host, that the fallback is counted
// once, and that coalescing is off afterwards.
func TestIntegrationTAPCoalesceFault(t *testing.T) {
	ns := newTestNS(t)
	const name = "mctest2"
	var tap *TAP
	var sock *net.UDPConn
	ns.do(t, func() error {
		var err error
		if tap, err = OpenTAP(TAPConfig{Name: name, Overlay: netip.PrefixFrom(coDst, 24), MTU: 1500}); err != nil {
			return err
		}
		sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: coDst.AsSlice(), Port: 7000})
		return err
	})
	t.Cleanup(func() { sock.Close(); tap.Close() })
	if st := tap.Offloads()[0]; !st.InUse {
		t.Skipf("this kernel takes no UDP segmentation frames on a TAP, so there is nothing to refuse: %s", st.Reason)
	}
	rxPackets := func() uint64 {
		var n uint64
		ns.do(t, func() error {
			l, err := netlink.LinkByName(name)
			if err == nil {
				n = l.Attrs().Statistics.RxPackets
			}
			return err
		})
		return n
	}
	if err := SetFaults("tap_coalesce=EINVAL"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetFaults("") })

	seq := 0
	batch := func(n int) (frames, want [][]byte) {
		for range n {
			p := bytes.Repeat([]byte{byte(seq)}, 600)
			binary.BigEndian.PutUint32(p, uint32(seq))
			frames = append(frames, coFrame(5001, uint16(seq), p))
			want = append(want, p)
			seq++
		}
		return frames, want
	}
	buf := make([]byte, 2048)
	for round, name := range []string{"refused", "after"} {
		frames, want := batch(40)
		before := rxPackets()
		failed, errno, err := tap.WriteBatch(frames)
		if err != nil || failed != 0 {
			t.Fatalf("%s: WriteBatch: %d failed (%v), %v", name, failed, errno, err)
		}
		for i, w := range want {
			sock.SetReadDeadline(time.Now().Add(ioTimeout))
			n, _, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%s: datagram %d of %d: %v", name, i, len(want), err)
			}
			if !bytes.Equal(buf[:n], w) {
				t.Fatalf("%s: datagram %d: seq %d, want seq %d", name, i, binary.BigEndian.Uint32(buf), binary.BigEndian.Uint32(w))
			}
		}
		// The refused run and everything after it go one frame a write.
		if writes := rxPackets() - before; writes != uint64(len(frames)) {
			t.Errorf("%s: %d TAP writes for %d frames; want one each", name, writes, len(frames))
		}
		st := tap.Offloads()[0]
		t.Logf("round %d: %+v", round, st)
		if st.InUse || st.Fallbacks != 1 || !strings.Contains(st.Reason, "EINVAL") || !strings.Contains(st.Reason, KernelRelease()) {
			t.Errorf("%s: %+v; want off after 1 fallback, with the errno and kernel in the reason", name, st)
		}
	}
}

// TestIntegrationGSOFault makes the kernel refuse the first UDP_SEGMENT
// send with EINVAL and checks that every copy still arrives, each as its
// own packet, that the fallback is counted once, and that the offload is
// off afterwards.
func TestIntegrationGSOFault(t *testing.T) {
	ns := newTestNS(t)
	a, b := listenPairOpts(t, ns, "vxlan", Options{Batch: 64})
	if _, gso := a.Offload(); !gso {
		t.Skip("this kernel has no UDP segmentation offload, so there is nothing to refuse")
	}
	if err := SetFaults("udp_gso=EINVAL"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetFaults("") })
	v := NewVXLAN(testVNI, DefaultVXLANPort)
	for _, name := range []string{"refused", "after"} {
		// Two flows of 30 frames each, interleaved as the engine makes
		// them: each would be one segmentation-offload send.
		var msgs []Message
		var sent [][]byte
		for i := range 30 {
			for _, flow := range []uint16{1001, 1002} {
				f := testFrame(300, flow)
				binary.BigEndian.PutUint32(f[296:], uint32(i))
				sent = append(sent, f)
				msgs = append(msgs, Message{Buf: v.Encap(withHeadroom(f), 300), Addr: underlayB})
			}
		}
		before := loTx(t, ns)
		var failed int
		ns.do(t, func() (err error) {
			failed, err = a.WriteBatch(msgs)
			return err
		})
		if failed != 0 {
			t.Fatalf("%s: WriteBatch: %d failed", name, failed)
		}
		for i, m := range msgs {
			if m.N != len(m.Buf) || m.Errno != 0 {
				t.Fatalf("%s: message %d: N = %d, errno %v", name, i, m.N, m.Errno)
			}
		}
		got := readN(t, b, len(msgs))
		if packets := loTx(t, ns) - before; packets != uint64(len(msgs)) {
			t.Errorf("%s: %d packets for %d copies; want one each without the offload", name, packets, len(msgs))
		}
		count := map[string]int{}
		for _, m := range got {
			inner, r := v.Decap(m.buf)
			if r != OK {
				t.Fatalf("%s: %v", name, r)
			}
			count[string(inner)]++
		}
		for i, f := range sent {
			if count[string(f)] != 1 {
				t.Errorf("%s: frame %d arrived %d times", name, i, count[string(f)])
			}
		}
		st := a.Offloads()[0]
		if st.Name != OffloadUDPGSO || st.InUse || st.Fallbacks != 1 || !strings.Contains(st.Reason, "EINVAL") {
			t.Errorf("%s: %+v; want udp_gso off after 1 fallback", name, st)
		}
		if _, gso := a.Offload(); gso {
			t.Errorf("%s: Offload() still reports segmentation offload", name)
		}
	}
}
