package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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

// A hostile class is one kind of crafted packet, sent perClass times from
// a peer's address or from a non-peer's, and the counter it must show up
// under: a drop reason of the daemon, or one of the kernel's (Ip or Udp in
// /proc/net/snmp of the target's namespace) for what the kernel discards
// before meshcast sees it.
type hostileClass struct {
	name    string
	fromSrc netip.Addr
	counter string // "drops:REASON", "kernel:MIB:Name" (Ip, Udp, IpExt), or "tap:rx_packets"
	build   func(i int) []byte
}

const perClass = 2000

// TestIntegrationHostilePackets sends over 50,000 crafted packets at a
// running node, for GRE (with a key) and VXLAN, from a peer's address and
// from a non-peer's, while two other peers stream multicast between them.
// Each class must show up under its counter, the node must stay alive with
// bounded memory, and the stream must lose nothing.
func TestIntegrationHostilePackets(t *testing.T) {
	for _, encap := range []string{"gre", "vxlan"} {
		t.Run(encap, func(t *testing.T) { testHostile(t, encap) })
	}
}

func testHostile(t *testing.T, encap string) {
	nt, bin, probe, inv := demoNet(t, 4)
	target, p2, p3, attacker := nt.Node(1), nt.Node(2), nt.Node(3), nt.Node(4)
	const key = 42
	ctl := ctlPath(t)
	var daemons []*nstest.Proc
	for _, n := range []*nstest.Node{target, p2, p3} {
		c := ctlPath(t)
		if n == target {
			c = ctl
		}
		args := []string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", encap, "--control", c}
		if encap == "gre" {
			args = append(args, "--gre-key", strconv.Itoa(key))
		}
		d := n.Start(t, bin, args...)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
		daemons = append(daemons, d)
	}
	state := hostileState(t, ctl, daemons[0])
	st0 := state()
	// Let malformed IPv4 reach the target.
	hostileOpenPath(t, nt, target, attacker, "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables")
	targetMAC := linkMAC(t, target, nstest.NodeLink)
	targetTAPMAC := overlay.MACFor(netip.MustParseAddr("198.19.0.1"))
	peer, stranger := p2.Underlay, attacker.Underlay
	rss0, _ := procMemory(t, daemons[0].Pid())

	// Builders.
	inner := func(dst net.HardwareAddr, src net.HardwareAddr, typ uint16, payload []byte) []byte {
		f := make([]byte, 14+len(payload))
		copy(f[0:6], dst)
		copy(f[6:12], src)
		binary.BigEndian.PutUint16(f[12:14], typ)
		copy(f[14:], payload)
		return f
	}
	peerMAC := overlay.MACFor(netip.MustParseAddr("198.19.0.2"))
	ipv4 := func(src, dst netip.Addr, proto byte, payload []byte) []byte {
		p := make([]byte, 20+len(payload))
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
		p[8], p[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], d[:])
		binary.BigEndian.PutUint16(p[10:12], inet.Checksum(p[:20]))
		copy(p[20:], payload)
		return p
	}
	udpPayload := func(n int) []byte { return make([]byte, n) }
	goodInner := func(i int) []byte {
		return inner(targetTAPMAC, peerMAC, 0x0800,
			ipv4(netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.1"), 17, udpPayload(40)))
	}
	peerIGMP := func(msg []byte) []byte {
		return igmpFrame(netip.MustParseAddr("198.19.0.2"), allReports, msg)
	}
	// reseal recomputes an IGMP message's checksum after a change.
	reseal := func(m []byte) []byte {
		binary.BigEndian.PutUint16(m[2:4], 0)
		binary.BigEndian.PutUint16(m[2:4], inet.Checksum(m))
		return m
	}
	oneRecord := func(typ uint8) []byte {
		return reportV3(igmp.RecordSpec{Type: typ, Group: netip.MustParseAddr("239.9.9.9")})
	}
	var vni uint32 = st0.VNI
	var encapsulate func(innerFrame []byte) []byte // the tunnel payload
	var proto byte
	if encap == "gre" {
		proto = overlay.ProtoGRE
		encapsulate = func(f []byte) []byte {
			h := make([]byte, 8+len(f))
			binary.BigEndian.PutUint16(h[0:2], 0x2000) // K
			binary.BigEndian.PutUint16(h[2:4], 0x6558)
			binary.BigEndian.PutUint32(h[4:8], key)
			copy(h[8:], f)
			return h
		}
	} else {
		proto = overlay.ProtoUDP
		encapsulate = func(f []byte) []byte {
			h := make([]byte, 8+8+len(f))
			binary.BigEndian.PutUint16(h[0:2], 50000)
			binary.BigEndian.PutUint16(h[2:4], overlay.DefaultVXLANPort)
			binary.BigEndian.PutUint16(h[4:6], uint16(len(h)))
			overlay.PutVXLAN(h[8:16], vni)
			copy(h[16:], f)
			return h
		}
	}
	tunnel := func(src netip.Addr, payload []byte) []byte { return ipv4(src, target.Underlay, proto, payload) }
	fixIP := func(p []byte) []byte {
		binary.BigEndian.PutUint16(p[10:12], 0)
		binary.BigEndian.PutUint16(p[10:12], inet.Checksum(p[:int(p[0]&0xf)*4]))
		return p
	}
	classes := []hostileClass{
		{"outer IPv4 cut to 12 bytes", peer, "kernel:Ip:InHdrErrors|IpExt:InTruncatedPkts", func(i int) []byte {
			return tunnel(peer, encapsulate(goodInner(i)))[:12]
		}},
		{"outer IHL < 5", peer, "kernel:Ip:InHdrErrors", func(i int) []byte {
			p := tunnel(peer, encapsulate(goodInner(i)))
			p[0] = 0x44
			return fixIP(p)
		}},
		{"outer total length beyond the packet", peer, "kernel:Ip:InHdrErrors|IpExt:InTruncatedPkts", func(i int) []byte {
			p := tunnel(peer, encapsulate(goodInner(i)))
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)+200))
			return fixIP(p)
		}},
		{"outer header checksum wrong", peer, "kernel:Ip:InCsumErrors|InHdrErrors", func(i int) []byte {
			p := tunnel(peer, encapsulate(goodInner(i)))
			p[10] ^= 0xff
			return p
		}},
		{"outer IP options", peer, map[string]string{"gre": "drops:ip_options", "vxlan": "tap:rx_packets"}[encap], func(i int) []byte {
			body := encapsulate(goodInner(i))
			p := make([]byte, 24+len(body))
			p[0] = 0x46
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			p[8], p[9] = 64, proto
			s, d := peer.As4(), target.Underlay.As4()
			copy(p[12:16], s[:])
			copy(p[16:20], d[:])
			copy(p[20:24], []byte{1, 1, 1, 0}) // NOPs and end of options
			copy(p[24:], body)
			return fixIP(p)
		}},
		{"outer first fragment, never completed", peer, "kernel:Ip:ReasmReqds", func(i int) []byte {
			p := tunnel(peer, encapsulate(goodInner(i)))
			binary.BigEndian.PutUint16(p[4:6], uint16(i))
			binary.BigEndian.PutUint16(p[6:8], 0x2000) // MF
			return fixIP(p)
		}},
		{"non-peer, well formed", stranger, "drops:not_peer", func(i int) []byte {
			return tunnel(stranger, encapsulate(goodInner(i)))
		}},
		{"non-peer, garbage", stranger, "drops:not_peer", func(i int) []byte {
			g := []byte{0xde, 0xad, byte(i), 0xef, 1, 2, 3, 4, 5, 6, 7, 8}
			if encap == "vxlan" { // to the VXLAN port, or the kernel answers it
				u := make([]byte, 8+len(g))
				binary.BigEndian.PutUint16(u[0:2], 50000)
				binary.BigEndian.PutUint16(u[2:4], overlay.DefaultVXLANPort)
				binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
				copy(u[8:], g)
				g = u
			}
			return tunnel(stranger, g)
		}},
		{"inner frame shorter than 14 bytes", peer, "drops:inner_short", func(i int) []byte {
			return tunnel(peer, encapsulate([]byte{1, 2, 3, 4, 5, 6, 7}))
		}},
		{"inner frame longer than the MTU", peer, "drops:inner_too_big", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(targetTAPMAC, peerMAC, 0x0800, make([]byte, 2000))))
		}},
		{"inner source MAC is the node's own", peer, "drops:loop", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(targetTAPMAC, targetTAPMAC, 0x0800, make([]byte, 46))))
		}},
		{"inner source MAC is multicast", peer, "drops:bad_source_mac", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(targetTAPMAC, net.HardwareAddr{1, 0, 0x5e, 1, 2, 3}, 0x0800, make([]byte, 46))))
		}},
		{"inner unicast to another MAC", peer, "drops:not_local", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(net.HardwareAddr{2, 0x6d, 198, 19, 0, 99}, peerMAC, 0x0800, make([]byte, 46))))
		}},
		{"inner VLAN-tagged frame (delivered; the host has no VLAN device)", peer, "tap:rx_packets", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(targetTAPMAC, peerMAC, 0x8100, make([]byte, 46))))
		}},
		{"inner IPv4 header cut to 10 bytes (the host's stack drops it)", peer, "kernel:Ip:InHdrErrors|IpExt:InTruncatedPkts", func(i int) []byte {
			ip := ipv4(netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.1"), 17, nil)[:10]
			return tunnel(peer, encapsulate(inner(targetTAPMAC, peerMAC, 0x0800, append(ip, make([]byte, 36)...)[:10])))
		}},
		{"nested encapsulation: inner IPv4 carrying GRE (host has no GRE)", peer, "kernel:Ip:InUnknownProtos", func(i int) []byte {
			return tunnel(peer, encapsulate(inner(targetTAPMAC, peerMAC, 0x0800,
				ipv4(netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.1"), 47, make([]byte, 40)))))
		}},
		{"IGMP with a bad checksum", peer, "drops:igmp_checksum", func(i int) []byte {
			m := oneRecord(igmp.ModeIsExclude)
			m[2] ^= 0xff
			return tunnel(peer, encapsulate(peerIGMP(m)))
		}},
		{"IGMPv3 record claiming 65,535 sources", peer, "drops:igmp_truncated|igmp_length", func(i int) []byte {
			m := oneRecord(igmp.ModeIsInclude)
			binary.BigEndian.PutUint16(m[10:12], 0xffff) // the record's source count
			return tunnel(peer, encapsulate(peerIGMP(reseal(m))))
		}},
		{"IGMP message cut to 4 bytes", peer, "drops:igmp_truncated|igmp_length", func(i int) []byte {
			return tunnel(peer, encapsulate(peerIGMP(reportV2(netip.MustParseAddr("239.9.9.9"))[:4])))
		}},
		{"IGMPv3 unknown record type", peer, "drops:igmp_record", func(i int) []byte {
			return tunnel(peer, encapsulate(peerIGMP(oneRecord(9))))
		}},
		{"IGMPv3 aux data beyond the message", peer, "drops:igmp_truncated|igmp_length", func(i int) []byte {
			m := oneRecord(igmp.ModeIsExclude)
			m[9] = 200 // aux data length, in 32-bit words
			return tunnel(peer, encapsulate(peerIGMP(reseal(m))))
		}},
	}
	if encap == "gre" {
		for _, b := range hostileGREBodies(key, goodInner) {
			classes = append(classes, hostileClass{b.name, peer, b.counter, func(i int) []byte { return tunnel(peer, b.body(i)) }})
		}
	} else {
		vx := func(b0 byte, reserved bool, v uint32, f []byte) []byte {
			h := make([]byte, 8, 16+len(f))
			binary.BigEndian.PutUint16(h[0:2], 50000)
			binary.BigEndian.PutUint16(h[2:4], overlay.DefaultVXLANPort)
			binary.BigEndian.PutUint16(h[4:6], uint16(16+len(f)))
			return append(h, vxlanHeader(b0, reserved, v, f)...)
		}
		classes = append(classes,
			hostileClass{"UDP header cut to 4 bytes", peer, "kernel:Udp:InErrors", func(i int) []byte {
				return tunnel(peer, []byte{0xc3, 0x50, 0x12, 0xb5})
			}},
			hostileClass{"UDP length beyond the packet", peer, "kernel:Udp:InErrors", func(i int) []byte {
				p := vx(0x08, false, vni, goodInner(i))
				binary.BigEndian.PutUint16(p[4:6], uint16(len(p)+100))
				return tunnel(peer, p)
			}},
			hostileClass{"VXLAN header cut to 4 bytes", peer, "drops:truncated", func(i int) []byte {
				p := vx(0x08, false, vni, nil)[:12]
				binary.BigEndian.PutUint16(p[4:6], 12)
				return tunnel(peer, p)
			}},
			hostileClass{"VXLAN without the I flag", peer, "drops:vxlan_flags", func(i int) []byte {
				return tunnel(peer, vx(0x00, false, vni, goodInner(i)))
			}},
			hostileClass{"VXLAN reserved bits set", peer, "drops:vxlan_reserved", func(i int) []byte {
				return tunnel(peer, vx(0x08, true, vni, goodInner(i)))
			}},
			hostileClass{"VXLAN wrong VNI", peer, "drops:vxlan_vni", func(i int) []byte {
				return tunnel(peer, vx(0x08, false, vni^1, goodInner(i)))
			}},
		)
	}

	// The stream between two other peers, during the whole barrage.
	const count = 3000
	recv := p3.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "30s")
	if err := recv.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	sender := p2.Start(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "1000")

	// The attacker writes whole Ethernet frames to the target's underlay
	// MAC: nothing in its own stack checks or fixes them.
	send := hostileAttacker(t, attacker, targetMAC, unix.ETH_P_IP)
	total := 0
	var report []string
	for _, c := range classes {
		kb := kernelCounters(t, target)
		db := state().Drops
		tb := target.MustCounters(t, "mcbr-demo")
		total += send(c.name, perClass, c.build)
		time.Sleep(100 * time.Millisecond)
		ka := kernelCounters(t, target)
		da := state().Drops
		ta := target.MustCounters(t, "mcbr-demo")
		var got uint64
		kind, names, _ := strings.Cut(c.counter, ":")
		switch kind {
		case "drops":
			for _, n := range strings.Split(names, "|") {
				got += da[n] - db[n]
			}
		case "kernel":
			mib, fields, _ := strings.Cut(names, ":")
			for _, n := range strings.Split(fields, "|") {
				if !strings.Contains(n, ":") {
					n = mib + ":" + n
				}
				got += ka[n] - kb[n]
			}
		case "tap":
			got = ta.RxPackets - tb.RxPackets
		}
		report = append(report, fmt.Sprintf("%-62s %5d  %-40s %d", c.name, perClass, c.counter, got))
		if got < perClass*99/100 {
			t.Errorf("%s: %s grew by %d for %d packets", c.name, c.counter, got, perClass)
		}
	}
	sender.Wait(30 * time.Second)
	recv.Wait(30 * time.Second)
	got := received(t, recv.Output())
	st := state() // alive
	rss1, hwm := procMemory(t, daemons[0].Pid())
	t.Logf("%s: %d crafted packets in %d classes:\n%s", encap, total, len(classes), strings.Join(report, "\n"))
	t.Logf("%s: stream between two other peers %d/%d; target alive (%d peers); RSS %.1f -> %.1f MiB, peak %.1f MiB",
		encap, got, count, len(st.Peers), float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(hwm)/(1<<20))
	if got*1000 < count*999 {
		t.Errorf("the stream between two other peers lost %d of %d", count-got, count)
	}
	if rss1-rss0 > 16<<20 && memoryBounded(t) {
		t.Errorf("RSS grew by %d MiB during the barrage; the bound is 16 MiB", (rss1-rss0)>>20)
	}
	if total < 50000 {
		t.Errorf("only %d packets sent", total)
	}
}

// hostileBody is a class of broken tunnel payloads (from the GRE header
// on), for an underlay of either family, and the counter it must show up
// under.
type hostileBody struct {
	name, counter string
	body          func(i int) []byte
}

// greHeader returns a GRE header of flags, protocol type ptype and the
// optional fields extra, followed by f.
func greHeader(flags, ptype uint16, extra, f []byte) []byte {
	h := make([]byte, 4+len(extra)+len(f))
	binary.BigEndian.PutUint16(h[0:2], flags)
	binary.BigEndian.PutUint16(h[2:4], ptype)
	copy(h[4:], extra)
	copy(h[4+len(extra):], f)
	return h
}

// vxlanHeader returns a VXLAN header whose first byte (the flags) is b0,
// with a reserved bit set if reserved, of VNI vni, followed by f.
func vxlanHeader(b0 byte, reserved bool, vni uint32, f []byte) []byte {
	h := make([]byte, 8+len(f))
	h[0] = b0
	if reserved {
		h[3] = 1
	}
	binary.BigEndian.PutUint32(h[4:8], vni<<8)
	copy(h[8:], f)
	return h
}

// hostileGREBodies are the classes of broken GRE headers, to a node whose
// GRE key is key; goodInner(i) is a valid inner frame.
func hostileGREBodies(key uint32, goodInner func(i int) []byte) []hostileBody {
	k := binary.BigEndian.AppendUint32(nil, key)
	return []hostileBody{
		{"GRE header cut to 2 bytes", "drops:truncated", func(i int) []byte {
			return []byte{0x20, 0x00}
		}},
		{"GRE version 1", "drops:gre_version", func(i int) []byte {
			return greHeader(0x2001, overlay.EtherTypeTEB, k, goodInner(i))
		}},
		{"GRE reserved flags", "drops:gre_flags", func(i int) []byte {
			return greHeader(0x2000|0x4000, overlay.EtherTypeTEB, k, goodInner(i))
		}},
		{"GRE C flag with a wrong checksum", "drops:gre_checksum", func(i int) []byte {
			return greHeader(0xa000, overlay.EtherTypeTEB, append([]byte{0x12, 0x34, 0, 0}, k...), goodInner(i))
		}},
		{"GRE without the key", "drops:gre_key", func(i int) []byte {
			return greHeader(0, overlay.EtherTypeTEB, nil, goodInner(i))
		}},
		{"GRE with a wrong key", "drops:gre_key", func(i int) []byte {
			return greHeader(0x2000, overlay.EtherTypeTEB, []byte{0, 0, 0, 7}, goodInner(i))
		}},
		{"GRE protocol type IPv4", "drops:gre_proto", func(i int) []byte {
			return greHeader(0x2000, 0x0800, k, goodInner(i))
		}},
	}
}

// hostileState returns a function that fetches the state of the target's
// daemon d through its control socket sock, and fails the test if it does
// not answer.
func hostileState(t *testing.T, sock string, d *nstest.Proc) func() control.State {
	return func() control.State {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := control.Fetch(ctx, sock)
		if err != nil {
			t.Fatalf("the target does not answer: %v\n%s", err, d.Output())
		}
		return st
	}
}

// hostileOpenPath lets malformed packets from the attacker (node 4) reach
// the target (node 1): the hub's bridge must not check them on the way
// (br_netfilter would drop them there; nf names its sysctls), and the
// links of the attacker and the target carry frames beyond 1500 bytes,
// raised after the daemon has chosen its TAP MTU from its underlay's.
func hostileOpenPath(t *testing.T, nt *nstest.Net, target, attacker *nstest.Node, nf ...string) {
	t.Helper()
	for _, k := range nf {
		nt.Hub.Exec(t, "sysctl", "-q", "-w", k+"=0") // absent without br_netfilter: fine
	}
	for _, l := range []struct {
		n   *nstest.Node
		dev string
	}{{nt.Hub, nstest.HubPort(1)}, {nt.Hub, nstest.HubPort(4)}, {target, nstest.NodeLink}, {attacker, nstest.NodeLink}} {
		if out, err := l.n.Exec(t, "ip", "link", "set", "dev", l.dev, "mtu", "9000"); err != nil {
			t.Fatalf("mtu: %v\n%s", err, out)
		}
	}
	if out, err := nt.Hub.Exec(t, "ip", "link", "set", "dev", nstest.BridgeName, "mtu", "9000"); err != nil {
		t.Logf("bridge mtu: %v\n%s", err, out)
	}
}

// hostileAttacker opens an AF_PACKET socket in attacker, closed when the
// test ends, and returns a function that sends n packets of the class
// name, build(0) to build(n-1), each in an Ethernet frame of EtherType
// ethType from the attacker's MAC to targetMAC, and returns n.
func hostileAttacker(t *testing.T, attacker *nstest.Node, targetMAC net.HardwareAddr, ethType uint16) func(name string, n int, build func(i int) []byte) int {
	t.Helper()
	var fd, ifindex int
	if err := attacker.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(nstest.NodeLink)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	attackerMAC := linkMAC(t, attacker, nstest.NodeLink)
	sll := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons16(ethType), Halen: 6}
	copy(sll.Addr[:], targetMAC)
	return func(name string, n int, build func(i int) []byte) int {
		t.Helper()
		for i := range n {
			pkt := build(i)
			frame := make([]byte, 14+len(pkt))
			copy(frame[0:6], targetMAC)
			copy(frame[6:12], attackerMAC)
			binary.BigEndian.PutUint16(frame[12:14], ethType)
			copy(frame[14:], pkt)
			for {
				err := unix.Sendto(fd, frame, 0, sll)
				if err == unix.ENOBUFS {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Fatalf("%s: send: %v", name, err)
				}
				break
			}
			if i%200 == 199 {
				time.Sleep(2 * time.Millisecond) // let the target drain its socket
			}
		}
		return n
	}
}

func htons16(v uint16) uint16 { return v<<8 | v>>8 }

// linkMAC returns the MAC address of a node's interface.
func linkMAC(t *testing.T, n *nstest.Node, name string) net.HardwareAddr {
	t.Helper()
	l, err := n.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// kernelCounters reads the counters of /proc/net/snmp and /proc/net/netstat
// in a node's namespace, as "Ip:Name", "Udp:Name", "IpExt:Name" and so on.
func kernelCounters(t *testing.T, n *nstest.Node) map[string]uint64 {
	t.Helper()
	out, err := n.Exec(t, "cat", "/proc/net/snmp", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 {
			continue
		}
		mib := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, _ := strconv.ParseUint(values[j], 10, 64)
			m[mib+":"+names[j]] = v
		}
	}
	return m
}
