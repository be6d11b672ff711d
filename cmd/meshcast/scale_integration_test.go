package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/inet"
	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// TestIntegrationScaleRSS runs a daemon whose community has 1,000 peers
// that have joined 10,000 groups between them (10 each, IGMPv3), and checks
// that its resident memory stays under 64 MiB. The peers do not exist: a
// second namespace sends their GRE-encapsulated reports with their
// underlay addresses as sources.
func TestIntegrationScaleRSS(t *testing.T) {
	const peers, perPeer = 1000, 10
	const limit = 64 << 20
	nt := nstest.NewNet(t, 2)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	self, injector := nt.Node(1), nt.Node(2)

	peerAddr := func(i int) netip.Addr { // 198.18.1.0 onwards, off the /24
		return netip.AddrFrom4([4]byte{198, 18, byte(1 + i/250), byte(1 + i%250)})
	}
	overlayAddr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, byte(1 + i/250), byte(1 + i%250)}) }
	var inv strings.Builder
	fmt.Fprintf(&inv, "%v demo,198.19.0.1/16\n", self.Underlay)
	for i := range peers {
		fmt.Fprintf(&inv, "%v demo,%v/16\n", peerAddr(i), overlayAddr(i))
	}
	invPath := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := ctlPath(t)
	d := self.Start(t, bin, "run", "--peers", invPath, "--local", self.Underlay.String(), "--control", ctl)
	if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
		t.Fatalf("daemon: %v\n%s", err, d.Output())
	}

	rss0, _ := procMemory(t, d.Pid())
	t.Logf("RSS at start: %.1f MiB", float64(rss0)/(1<<20))
	// Every peer reports 10 groups of its own in one IGMPv3 report.
	err := injector.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		dst := &unix.SockaddrInet4{Addr: self.Underlay.As4()}
		for i := range peers {
			var groups []netip.Addr
			for k := range perPeer {
				n := i*perPeer + k
				groups = append(groups, netip.AddrFrom4([4]byte{239, 10, byte(n >> 8), byte(n)}))
			}
			pkt := greReport(peerAddr(i), self.Underlay, overlayAddr(i), groups)
			if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
				return fmt.Errorf("send report of peer %d: %w", i, err)
			}
			if i%100 == 99 {
				time.Sleep(5 * time.Millisecond) // let the daemon drain its socket
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	rss1, _ := procMemory(t, d.Pid())
	t.Logf("RSS after the reports: %.1f MiB", float64(rss1)/(1<<20))
	var st control.State
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err = control.Fetch(ctx, ctl)
		cancel()
		if err == nil && len(st.Groups) >= peers*perPeer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d groups after 10 s, want %d (err %v); drops %v", len(st.Groups), peers*perPeer, err, st.Drops)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss, hwm := procMemory(t, d.Pid())
	t.Logf("%d peers, %d groups: RSS %.1f MiB, peak %.1f MiB (limit %d MiB)",
		len(st.Peers), len(st.Groups), float64(rss)/(1<<20), float64(hwm)/(1<<20), limit>>20)
	if len(st.Peers) != peers {
		t.Errorf("%d peers in the status, want %d", len(st.Peers), peers)
	}
	if hwm > limit && memoryBounded(t) {
		t.Errorf("peak RSS %d MiB, want under %d MiB", hwm>>20, limit>>20)
	}
}

// memoryBounded reports whether a daemon's memory is held to the tests'
// bounds, and logs why not when it is not: under the race detector
// (MESHCAST_TEST_RACE) its shadow memory takes several times the
// program's own. The run without the race detector checks the bounds.
func memoryBounded(t *testing.T) bool {
	t.Helper()
	if raceDaemon() {
		t.Log("the daemon runs under the race detector: its memory bound is not checked")
		return false
	}
	return true
}

// procMemory returns VmRSS and VmHWM of pid, in bytes.
func procMemory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		t.Fatalf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm
}

// greReport builds an outer IPv4 packet (for an IPPROTO_RAW socket) from
// src to dst carrying GRE and the Ethernet frame of an IGMPv3 report of
// the host overlay, EXCLUDE({}) for each group.
func greReport(src, dst, overlayIP netip.Addr, groups []netip.Addr) []byte {
	recs := make([]igmp.RecordSpec, len(groups))
	for i, g := range groups {
		recs[i] = igmp.RecordSpec{Type: igmp.ModeIsExclude, Group: g}
	}
	return greIGMP(src, dst, overlayIP, allReports, reportV3(recs...))
}

// allReports is 224.0.0.22, where IGMPv3 reports go.
var allReports = netip.AddrFrom4([4]byte{224, 0, 0, 22})

// reportV3 returns an IGMPv3 report holding recs.
func reportV3(recs ...igmp.RecordSpec) []byte {
	b := make([]byte, igmp.ReportV3Len(recs...))
	igmp.PutReportV3(b, recs...)
	return b
}

// reportV2 returns an IGMPv2 membership report for group.
func reportV2(group netip.Addr) []byte {
	b := make([]byte, igmp.HeaderLen)
	igmp.PutReportV2(b, igmp.TypeV2Report, group)
	return b
}

// igmpFrame returns the Ethernet frame of an IGMP message from the host
// overlayIP (with the MAC meshcast gives it) to ipDst.
func igmpFrame(overlayIP, ipDst netip.Addr, msg []byte) []byte {
	f := make([]byte, igmp.FrameOverhead+len(msg))
	igmp.BuildQueryFrame(f, overlay.MACFor(overlayIP), overlayIP, ipDst, msg)
	return f
}

// greIGMP wraps igmpFrame(overlayIP, ipDst, msg) in GRE and an outer IPv4
// header from src to dst (for an IPPROTO_RAW socket).
func greIGMP(src, dst, overlayIP, ipDst netip.Addr, msg []byte) []byte {
	frame := igmpFrame(overlayIP, ipDst, msg)
	pkt := make([]byte, 20+4+len(frame))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, overlay.ProtoGRE
	s, t := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], t[:])
	binary.BigEndian.PutUint16(pkt[10:12], inet.Checksum(pkt[:20]))
	binary.BigEndian.PutUint16(pkt[22:24], 0x6558)
	copy(pkt[24:], frame)
	return pkt
}

// TestIntegrationJoinFlood has one peer announce 1,000,000 groups (900,000
// in IGMPv3 INCLUDE records with 4 sources each, 100,000 in IGMPv2
// reports) to a daemon while that daemon streams to another peer. The
// flooding peer's groups stop at the per-peer cap, the rest are refused and
// counted, the daemon's memory stays bounded, and the stream loses nothing.
func TestIntegrationJoinFlood(t *testing.T) {
	const (
		v3Groups, v2Groups = 900_000, 100_000
		perReport          = 50 // records of 24 bytes: 1208-byte reports
		limit              = 64 << 20
	)
	nt, bin, probe, inv := demoNet(t, 3)
	victim, sub, attacker := nt.Node(1), nt.Node(2), nt.Node(3)
	ctl := ctlPath(t)
	d := victim.Start(t, bin, "run", "--peers", inv, "--local", victim.Underlay.String(), "--control", ctl)
	s := sub.Start(t, bin, "run", "--peers", inv, "--local", sub.Underlay.String(), "--control", ctlPath(t))
	for _, p := range []*nstest.Proc{d, s} {
		if err := p.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("daemon: %v\n%s", err, p.Output())
		}
	}
	const count = 4000 // 2 s at 2000 datagrams/s
	recv := sub.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	sender := victim.Start(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "2000")

	// The flood, from the attacker's own underlay address (a peer) and its
	// overlay identity.
	attackerOverlay := netip.MustParseAddr("198.19.0.3")
	sent := 0
	start := time.Now()
	err := attacker.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		dst := &unix.SockaddrInet4{Addr: victim.Underlay.As4()}
		group := func(n int) netip.Addr { return netip.AddrFrom4([4]byte{239, 100 + byte(n>>16), byte(n >> 8), byte(n)}) }
		srcs := []netip.Addr{netip.MustParseAddr("198.19.9.1"), netip.MustParseAddr("198.19.9.2"),
			netip.MustParseAddr("198.19.9.3"), netip.MustParseAddr("198.19.9.4")}
		send := func(pkt []byte) error {
			for {
				err := unix.Sendto(fd, pkt, 0, dst)
				if err == unix.ENOBUFS {
					time.Sleep(time.Millisecond)
					continue
				}
				sent++
				return err
			}
		}
		for n := 0; n < v3Groups; n += perReport {
			recs := make([]igmp.RecordSpec, perReport)
			for i := range recs {
				recs[i] = igmp.RecordSpec{Type: igmp.ModeIsInclude, Group: group(n + i), Sources: srcs}
			}
			if err := send(greIGMP(attacker.Underlay, victim.Underlay, attackerOverlay, allReports, reportV3(recs...))); err != nil {
				return err
			}
		}
		for n := v3Groups; n < v3Groups+v2Groups; n++ {
			g := group(n)
			if err := send(greIGMP(attacker.Underlay, victim.Underlay, attackerOverlay, g, reportV2(g))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d reports announcing %d groups in %v", sent, v3Groups+v2Groups, time.Since(start).Round(time.Millisecond))
	sender.Wait(20 * time.Second)
	recv.Wait(30 * time.Second)
	got := received(t, recv.Output())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Fetch(ctx, ctl)
	if err != nil {
		t.Fatal(err)
	}
	attackerGroups, subGroups := 0, 0
	for _, g := range st.Groups {
		if slices.Contains(g.Peers, attacker.Underlay.String()) {
			attackerGroups++
		}
		if slices.Contains(g.Peers, sub.Underlay.String()) {
			subGroups++
		}
	}
	rss, hwm := procMemory(t, d.Pid())
	t.Logf("stream to the other peer: %d/%d; the flooding peer holds %d groups (cap 2048), the other %d; refused: igmp_cap_port %d, igmp_cap_global %d; RSS %.1f MiB, peak %.1f MiB",
		got, count, attackerGroups, subGroups, st.Drops["igmp_cap_port"], st.Drops["igmp_cap_global"],
		float64(rss)/(1<<20), float64(hwm)/(1<<20))
	if got*1000 < count*999 {
		t.Errorf("the other peer received %d/%d during the flood", got, count)
	}
	if attackerGroups > 2048 {
		t.Errorf("the flooding peer holds %d groups, over the per-peer cap of 2048", attackerGroups)
	}
	if subGroups == 0 {
		t.Error("the other peer's membership was lost")
	}
	if st.Drops["igmp_cap_port"] < 100_000 {
		t.Errorf("igmp_cap_port = %d: the refused groups are not counted", st.Drops["igmp_cap_port"])
	}
	if hwm > limit && memoryBounded(t) {
		t.Errorf("peak RSS %d MiB, want under %d MiB", hwm>>20, limit>>20)
	}
}
