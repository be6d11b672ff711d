package ping

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The loopback tests run a Responder on the host's lo with ::1 (and
// 127.0.0.1), on a free port, without namespaces. lo carries no multicast,
// so they probe unicast only; the group socket is opened and joined all
// the same. The namespace tests (integration6_test.go) probe both kinds.
// Their names start with TestIntegration, so that `make cross` leaves them
// to the host: qemu-user does not emulate IP_MULTICAST_ALL.

var loopback6 = netip.MustParseAddr("::1")

// freePort returns a UDP port that nothing of this host uses on ::1 or
// 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Skipf("no IPv6 on this host's loopback: %v", err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
			c4.Close()
			return port
		}
	}
	t.Fatal("no free UDP port on the loopback")
	return 0
}

// skipUnlessListens skips the test when err says that this host cannot
// bind a socket to a device, or has IPv6 off on lo.
func skipUnlessListens(t *testing.T, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		t.Skipf("binding a socket to lo needs CAP_NET_RAW before Linux 5.7: %v", err)
	case errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL):
		t.Skipf("no IPv6 on this host's loopback: %v", err)
	default:
		t.Fatal(err)
	}
}

// probeOnce sends the request h from c to dst and returns the reply, or
// an error after a second.
func probeOnce(c *net.UDPConn, dst netip.AddrPort, h header) (header, netip.AddrPort, error) {
	if _, err := c.WriteToUDPAddrPort(encode(make([]byte, packetLen), h), dst); err != nil {
		return header{}, netip.AddrPort{}, err
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		return header{}, netip.AddrPort{}, err
	}
	buf := make([]byte, readBufLen)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return header{}, netip.AddrPort{}, err
	}
	p, why := parse(buf[:n])
	if why != reasonOK {
		return header{}, from, fmt.Errorf("reply refused: %v", why)
	}
	return p.header(), from, nil
}

// joinedOn reports whether /proc/net/igmp6 lists group as joined on
// ifname.
func joinedOn(t *testing.T, ifname string, group netip.Addr) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/igmp6")
	if err != nil {
		t.Skipf("cannot read the IPv6 memberships: %v", err)
	}
	hex := fmt.Sprintf("%x", group.AsSlice())
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == ifname && f[2] == hex {
			return true
		}
	}
	return false
}

func TestIntegrationLoopback6Responder(t *testing.T) {
	checkGoroutines(t)
	port := freePort(t)
	r, err := Listen("lo", loopback6, netip.Addr{}, port)
	skipUnlessListens(t, err)
	defer r.Close()
	// IPV6_JOIN_GROUP on lo's index.
	if !joinedOn(t, "lo", defaultGroup6) {
		t.Errorf("%s is not joined on lo", DefaultGroup6)
	}

	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := netip.AddrPortFrom(loopback6, uint16(port))
	h := header{typ: typeRequest, kind: kindUnicast, seq: 7, nonce: 99, stamp: 12345}
	got, from, err := probeOnce(c, dst, h)
	if err != nil {
		t.Fatalf("no reply over IPv6: %v", err)
	}
	want := h
	want.typ = typeReply
	if got != want || from != dst {
		t.Fatalf("reply %+v from %v, want %+v from %v", got, from, want, dst)
	}

	// A multicast probe to the unicast socket, and a short datagram, are
	// ignored; the valid request after them is answered, so both were
	// read.
	multi := h
	multi.kind = kindMulticast
	for _, b := range [][]byte{encode(make([]byte, packetLen), multi), encode(make([]byte, packetLen), h)[:40]} {
		if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	h.seq++
	if _, _, err := probeOnce(c, dst, h); err != nil {
		t.Fatalf("no reply after the junk: %v", err)
	}
	answered, ignored := r.Stats()
	if answered != 2 || ignored != 2 || r.ignoredBy(reasonWrongKind) != 1 || r.ignoredBy(reasonShort) != 1 {
		t.Errorf("answered %d, ignored %d (wrong kind %d, short %d); want 2 answered, 1 wrong kind and 1 short ignored",
			answered, ignored, r.ignoredBy(reasonWrongKind), r.ignoredBy(reasonShort))
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if joinedOn(t, "lo", defaultGroup6) {
		t.Errorf("%s still joined on lo after Close", DefaultGroup6)
	}
}

// TestIntegrationLoopbackDual answers on both families with one Responder, and
// counts both.
func TestIntegrationLoopbackDual(t *testing.T) {
	checkGoroutines(t)
	port := freePort(t)
	r, err := ListenDual("lo", netip.MustParseAddr("127.0.0.1"), loopback6, port)
	skipUnlessListens(t, err)
	defer r.Close()
	for _, network := range []string{"udp4", "udp6"} {
		src := netip.MustParseAddr("127.0.0.1")
		if network == "udp6" {
			src = loopback6
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dst := netip.AddrPortFrom(src, uint16(port))
		h := header{typ: typeRequest, kind: kindUnicast, seq: 1, nonce: 5, stamp: 6}
		if got, from, err := probeOnce(c, dst, h); err != nil || got.typ != typeReply || from != dst {
			t.Errorf("%s: reply %+v from %v, %v", network, got, from, err)
		}
	}
	if a, _ := r.Stats(); a != 2 {
		t.Errorf("answered %d, want 2", a)
	}
	// Without an IPv6 address, IPv4 only: ::1 is not answered.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r4, err := ListenDual("lo", netip.MustParseAddr("127.0.0.1"), netip.Addr{}, port)
	if err != nil {
		t.Fatal(err)
	}
	defer r4.Close()
	if len(r4.conns) != 2 {
		t.Errorf("%d sockets without an IPv6 address, want 2", len(r4.conns))
	}
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := probeOnce(c, netip.AddrPortFrom(loopback6, uint16(port)), header{typ: typeRequest, kind: kindUnicast}); err == nil {
		t.Error("an IPv4-only responder answered over IPv6")
	}
}

func TestIntegrationLoopback6ListenRefuses(t *testing.T) {
	checkGoroutines(t)
	port := freePort(t)
	for _, tc := range []struct {
		name           string
		overlay, group netip.Addr
		dual           bool // ListenDual with 127.0.0.1 and overlay
		want           string
	}{
		{"not held", netip.MustParseAddr("fd00:198:19::7"), netip.Addr{}, false, "fd00:198:19::7 is not an address of lo"},
		{"link-local", netip.MustParseAddr("fe80::1"), netip.Addr{}, false, "overlay address fe80::1 is link-local"},
		{"multicast", defaultGroup6, netip.Addr{}, false, "is not a unicast IPv6 address"},
		{"link-local group", loopback6, netip.MustParseAddr("ff02::1"), false, "group ff02::1 is not an IPv6 multicast group of scope wider than link-local"},
		{"IPv4 group", loopback6, defaultGroup, false, "group 232.43.211.234 is not an IPv6 multicast group"},
		{"IPv4 as the IPv6 address", netip.MustParseAddr("127.0.0.1"), netip.Addr{}, true, "overlay address 127.0.0.1 is not a unicast IPv6 address"},
		{"mapped as the IPv6 address", netip.MustParseAddr("::ffff:127.0.0.1"), netip.Addr{}, true, "is not a unicast IPv6 address"},
		{"dual, not held", netip.MustParseAddr("fd00:198:19::7"), netip.Addr{}, true, "fd00:198:19::7 is not an address of lo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *Responder
			var err error
			if tc.dual {
				r, err = ListenDual("lo", netip.MustParseAddr("127.0.0.1"), tc.overlay, port)
			} else {
				r, err = Listen("lo", tc.overlay, tc.group, port)
			}
			if err == nil {
				r.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// A failed ListenDual leaves nothing open: the port is free again.
	r, err := ListenDual("lo", netip.MustParseAddr("127.0.0.1"), loopback6, port)
	skipUnlessListens(t, err)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Two responders cannot share the IPv6 unicast address and port.
	r, err = Listen("lo", loopback6, netip.Addr{}, port)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r2, err := Listen("lo", loopback6, netip.Addr{}, port); err == nil {
		r2.Close()
		t.Fatal("a second responder on the same IPv6 address and port")
	}
}

// TestIntegrationLoopback6SendAllocs proves that a responder's IPv6 send allocates
// nothing.
func TestIntegrationLoopback6SendAllocs(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 on this host's loopback: %v", err)
	}
	defer c.Close()
	send, err := newSender(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	b := encode(make([]byte, packetLen), goldenHeader)
	dst := netip.AddrPortFrom(loopback6, 9) // nobody listens
	failed := false
	n := testing.AllocsPerRun(1000, func() { failed = !send(b, dst) || failed })
	if failed {
		t.Fatal("a send failed")
	}
	if n != 0 {
		t.Fatalf("%v allocations per send, want 0", n)
	}
}
