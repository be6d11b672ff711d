package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/net/ipv6"
)

// The tests below run the built binary over IPv6 in network namespaces on a
// plain underlay, where the hub bridge floods multicast (MLD snooping is off
// with IGMP snooping). nstest turns IPv6 off in its namespaces; enableIPv6
// turns it on again for the node links these tests use.

// underlay6 is the IPv6 subnet of the tests: node K has the address ::K.
var underlay6 = netip.MustParsePrefix("fd00:198:19::/64")

// addr6 returns the address in underlay6 whose last byte is k.
func addr6(k int) netip.Addr {
	a := underlay6.Addr().As16()
	a[15] = byte(k)
	return netip.AddrFrom16(a)
}

// hostPort is how an address a of underlay6 begins in recv's "sources".
func hostPort(a netip.Addr) string { return "[" + a.String() + "]:" }

var errNoIPv6 = errors.New("the kernel has no IPv6 (no /proc/sys/net/ipv6)")

// enableIPv6 turns IPv6 on for the node's underlay link, with duplicate
// address detection off, adds the addresses addrs/64 to the link, and waits
// until none of its addresses is tentative.
func enableIPv6(t *testing.T, n *nstest.Node, addrs ...netip.Addr) {
	t.Helper()
	conf := "/proc/sys/net/ipv6/conf/" + nstest.NodeLink + "/"
	err := n.Do(func() error {
		if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
			return errNoIPv6
		}
		// DAD off before IPv6 on: the link-local address is usable at
		// once, like the addresses added with nodad below.
		for _, kv := range [][2]string{{"accept_dad", "0"}, {"disable_ipv6", "0"}} {
			if err := os.WriteFile(conf+kv[0], []byte(kv[1]), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errNoIPv6) {
		nstest.SkipOrFail(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("in %s: enabling IPv6 on %s: %v", n, nstest.NodeLink, err)
	}
	for _, a := range addrs {
		pfx := netip.PrefixFrom(a, underlay6.Bits()).String()
		if out, err := n.Exec(t, "ip", "-6", "addr", "add", pfx, "dev", nstest.NodeLink, "nodad"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", nstest.NodeLink, "tentative")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in %s: addresses still tentative after 10s:\n%s", n, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newNet6 builds an underlay of n nodes with IPv6 on, node K having the
// address addr6(K).
func newNet6(t *testing.T, n int) *nstest.Net {
	t.Helper()
	nt := nstest.NewNet(t, n)
	for _, node := range nt.Nodes() {
		enableIPv6(t, node, addr6(node.Index))
	}
	return nt
}

func TestIntegrationIPv6Multicast(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := newNet6(t, 3)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)

	common := []string{"--iface", nstest.NodeLink, "--group", "ff0e::1:2:3", "--port", "5000", "--count", "300"}
	r2 := probeRecv(t, bin, n2, append(common, "--json", "--linger", "300ms")...)
	r3 := probeRecv(t, bin, n3, append(common, "--json")...)
	out, err := n1.Exec(t, append([]string{bin, "send", "--rate", "1000", "--size", "200"}, common...)...)
	if err != nil || !strings.Contains(out, "sent 300/300 to [ff0e::1:2:3]:5000") {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for _, r := range []*nstest.Proc{r2, r3} {
		code, res := probeResult(t, r)
		if code != 0 || res.Received != 300 || res.Dup != 0 || res.Invalid != 0 {
			t.Errorf("%v: exit %d, %+v", r, code, res)
		}
		if len(res.Sources) != 1 || !strings.HasPrefix(res.Sources[0], hostPort(addr6(1))) {
			t.Errorf("%v: sources %v, want only %s", r, res.Sources, addr6(1))
		}
	}
}

// TestIntegrationIPv6LinkScope sends to a group of link-local scope, which
// needs the interface for the receiver's bind and the sender's route.
func TestIntegrationIPv6LinkScope(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2 := nt.Node(1), nt.Node(2)

	common := []string{"--iface", nstest.NodeLink, "--group", "ff02::1:2:3", "--port", "5002", "--count", "100"}
	r := probeRecv(t, bin, n2, append(common, "--json")...)
	if out, err := n1.Exec(t, append([]string{bin, "send", "--rate", "0"}, common...)...); err != nil || !strings.Contains(out, "sent 100/100") {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if code, res := probeResult(t, r); code != 0 || res.Received != 100 || res.Dup != 0 || len(res.Sources) != 1 {
		t.Errorf("exit %d, %+v", code, res)
	}
}

// TestIntegrationIPv6SourceSpecific joins (S1, ff3e::8000:1) on node 3 and
// sends to the group from another node (S2), from a second address of S1's
// node, and from S1: only S1's datagrams may arrive. A second receiver on
// the same node and port joins the group for any source and must see all
// three, so the first one's exclusions are its source filter's doing.
func TestIntegrationIPv6SourceSpecific(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := newNet6(t, 3)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2, n3 := nt.Node(1), nt.Node(2), nt.Node(3)
	s1, s2, other := addr6(1), addr6(2), netip.MustParseAddr("fd00:198:19::101")
	enableIPv6(t, n1, other)

	group := []string{"--iface", nstest.NodeLink, "--group", "ff3e::8000:1", "--port", "5001", "--count", "50"}
	ssm := probeRecv(t, bin, n3, append(group, "--source", s1.String(), "--json", "--timeout", "15s")...)

	// The join is source-specific in the kernel: an INCLUDE filter for S1
	// alone, which MLDv2 reports as an INCLUDE record.
	out, err := n3.Exec(t, "cat", "/proc/net/mcfilter6")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := fmt.Sprintf("%s %x %x 1 0", nstest.NodeLink, netip.MustParseAddr("ff3e::8000:1").AsSlice(), s1.AsSlice()); !containsFields(out, want) {
		t.Errorf("/proc/net/mcfilter6 in %s has no %q:\n%s", n3, want, out)
	}

	asm := probeRecv(t, bin, n3, append(group, "--json", "--timeout", "15s", "--linger", "3s")...)
	for _, s := range []struct {
		node *nstest.Node
		args []string
	}{
		{n2, nil}, // S2, another source on the link
		{n1, []string{"--source", other.String()}}, // S1's node, not S1
		{n1, []string{"--source", s1.String()}},
	} {
		args := append(append([]string{bin, "send", "--rate", "2000"}, group...), s.args...)
		if out, err := s.node.Exec(t, args...); err != nil {
			t.Fatalf("send from %s: %v\n%s", s.node, err, out)
		}
	}
	code, res := probeResult(t, ssm)
	if code != 0 || res.Received != 50 || res.Dup != 0 || res.Invalid != 0 ||
		len(res.Sources) != 1 || !strings.HasPrefix(res.Sources[0], hostPort(s1)) {
		t.Errorf("source-specific receiver: exit %d, %+v; want 50 datagrams from %s only", code, res, s1)
	}
	code, res = probeResult(t, asm)
	if code != 0 || res.Received != 50 || res.Dup != 100 || len(res.Sources) != 3 {
		t.Errorf("any-source receiver: exit %d, %+v; want 50 datagrams and 100 duplicates from %s, %s and %s", code, res, s2, other, s1)
	}
	for i, a := range []netip.Addr{s2, other, s1} {
		if i < len(res.Sources) && !strings.HasPrefix(res.Sources[i], hostPort(a)) {
			t.Errorf("any-source receiver: source %d is %s, want %s", i, res.Sources[i], a)
		}
	}
}

// containsFields reports whether a line of out has the fields of want at
// its end (a line of /proc/net/mcfilter6 starts with the interface index).
func containsFields(out, want string) bool {
	w := strings.Fields(want)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(w) && strings.Join(f[len(f)-len(w):], " ") == strings.Join(w, " ") {
			return true
		}
	}
	return false
}

// TestIntegrationIPv6NotJoined checks that a receiver joined on another
// interface gets nothing: a join is per interface.
func TestIntegrationIPv6NotJoined(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2 := nt.Node(1), nt.Node(2)

	r := probeRecv(t, bin, n2, "--iface", "lo", "--group", "ff0e::9:9:9", "--count", "10", "--timeout", "2s", "--json")
	if out, err := n1.Exec(t, bin, "send", "--iface", nstest.NodeLink, "--group", "ff0e::9:9:9", "--count", "10"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if code, res := probeResult(t, r); code != 1 || res.Received != 0 || res.Lost != 10 {
		t.Errorf("exit %d, %+v; want nothing received", code, res)
	}
}

// TestIntegrationIPv6HopLimit checks that --ttl sets the hop limit of the
// datagrams, as a socket in the receiving node sees it.
func TestIntegrationIPv6HopLimit(t *testing.T) {
	t.Parallel()
	nstest.LeakCheck(t)
	nt := newNet6(t, 2)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
	n1, n2 := nt.Node(1), nt.Node(2)
	group := netip.MustParseAddr("ff0e::1:2:5")

	var pc *ipv6.PacketConn
	err := n2.Do(func() error {
		c, err := net.ListenPacket("udp6", netip.AddrPortFrom(group, 5003).String())
		if err != nil {
			return err
		}
		pc = ipv6.NewPacketConn(c)
		ifi, err := net.InterfaceByName(nstest.NodeLink)
		if err != nil {
			return err
		}
		if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: group.AsSlice()}); err != nil {
			return err
		}
		return pc.SetControlMessage(ipv6.FlagHopLimit, true)
	})
	if pc != nil {
		// Before the namespaces go: the socket keeps its namespace alive.
		t.Cleanup(func() { pc.Close() })
	}
	if err != nil {
		t.Fatalf("in %s: receiving socket: %v", n2, err)
	}
	const count = 5
	if out, err := n1.Exec(t, bin, "send", "--iface", nstest.NodeLink, "--group", group.String(), "--port", "5003", "--count", fmt.Sprint(count), "--ttl", "7"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := range count {
		n, cm, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if _, ok := decode(buf[:n]); !ok || cm == nil || cm.HopLimit != 7 {
			t.Errorf("datagram %d from %v: probe %v, control message %v; want hop limit 7", i, from, ok, cm)
		}
	}
}
