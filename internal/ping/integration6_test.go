package ping

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// The IPv6 integration tests stand in for an overlay with IPv6 the same
// way: each node's eth0 also gets IPv6 on, with 198.19.0.K/24 and
// fd00:198:19::K/64 (without duplicate address detection), and a
// Responder for both families, as a daemon with an IPv6 overlay address
// runs. The hub bridge floods IPv6 multicast too.

func overlayAddr6(k int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x19, 15: byte(k)})
}

// enableIPv6 turns IPv6 on for ifname in node: nstest turns it off in
// every namespace.
func enableIPv6(node *nstest.Node, ifname string) error {
	return node.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("0"), 0)
	})
}

// overlayNet6 builds n nodes with both overlay addresses on eth0, and
// starts a Responder of both families on each, closed in cleanup.
func overlayNet6(t *testing.T, n int) (*nstest.Net, []*Responder) {
	t.Helper()
	nt := nstest.NewNet(t, n)
	resp := make([]*Responder, n+1) // by node index
	for k := 1; k <= n; k++ {
		node := nt.Node(k)
		if err := enableIPv6(node, iface); err != nil {
			t.Fatalf("in %s: turning IPv6 on for %s: %v", node, iface, err)
		}
		for _, args := range [][]string{
			{"ip", "addr", "add", netip.PrefixFrom(overlayAddr(k), 24).String(), "dev", iface},
			{"ip", "-6", "addr", "add", netip.PrefixFrom(overlayAddr6(k), 64).String(), "dev", iface, "nodad"},
		} {
			if out, err := node.Exec(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		err := node.Do(func() error {
			var err error
			resp[k], err = ListenDual(iface, overlayAddr(k), overlayAddr6(k), 0)
			return err
		})
		if err != nil {
			t.Fatalf("in %s: %v", node, err)
		}
		t.Cleanup(func() {
			if err := resp[k].Close(); err != nil {
				t.Errorf("closing the responder of %s: %v", node, err)
			}
		})
	}
	return nt, resp
}

// target6 returns node k as an IPv6 Target.
func target6(nt *nstest.Net, k int) Target {
	return Target{Name: nt.Node(k).Underlay.String(), Overlay: overlayAddr6(k)}
}

// probeFrom6 runs Run over IPv6 in node k against targets, and logs what
// Write prints.
func probeFrom6(t *testing.T, nt *nstest.Net, k int, targets ...Target) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := Options{Iface: iface, Local: overlayAddr6(k), Count: 5, Interval: 100 * time.Millisecond, Wait: time.Second}
	var res []Result
	err := nt.Node(k).Do(func() error {
		var err error
		res, err = Run(ctx, opts, targets)
		return err
	})
	if err != nil {
		t.Errorf("Run in node %d: %v", k, err)
		return nil
	}
	var buf bytes.Buffer
	Write(&buf, res)
	t.Logf("from node %d over IPv6:\n%s", k, buf.String())
	return res
}

func TestIntegrationPing6(t *testing.T) {
	nstest.LeakCheck(t)
	checkGoroutines(t)
	nt, resp := overlayNet6(t, 3)

	t.Run("all answer", func(t *testing.T) {
		own, _ := resp[1].Stats()
		before2, _ := resp[2].Stats()
		res := probeFrom6(t, nt, 1, target6(nt, 2), target6(nt, 3))
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		for i, r := range res {
			if want := target6(nt, i+2); r.Target != want {
				t.Errorf("result %d is for %+v, want %+v", i, r.Target, want)
			}
			wantStats(t, r, kindUnicast, 5, 5)
			wantStats(t, r, kindMulticast, 5, 5)
		}
		if !OK(res) {
			t.Error("OK is false")
		}
		if a, _ := resp[1].Stats(); a != own {
			t.Errorf("node 1 answered %d probes of its own prober", a-own)
		}
		if a, _ := resp[2].Stats(); a-before2 != 10 {
			t.Errorf("node 2 answered %d probes, want 5 unicast + 5 multicast", a-before2)
		}
	})

	t.Run("both families at once", func(t *testing.T) {
		// Every node probes the others over both families at the same
		// time, through the same responders.
		var wg sync.WaitGroup
		results := make([][2][]Result, 4)
		for k := 1; k <= 3; k++ {
			var targets, targets6 []Target
			for j := 1; j <= 3; j++ {
				if j != k {
					targets = append(targets, target(nt, j))
					targets6 = append(targets6, target6(nt, j))
				}
			}
			wg.Go(func() { results[k][0] = probeFrom(t, nt, k, targets...) })
			wg.Go(func() { results[k][1] = probeFrom6(t, nt, k, targets6...) })
		}
		wg.Wait()
		for k := 1; k <= 3; k++ {
			for fam, res := range results[k] {
				if len(res) != 2 {
					t.Fatalf("node %d, family %d: %d results, want 2", k, 4+2*fam, len(res))
				}
				for _, r := range res {
					wantStats(t, r, kindUnicast, 5, 5)
					wantStats(t, r, kindMulticast, 5, 5)
				}
			}
		}
	})

	t.Run("unknown target", func(t *testing.T) {
		nobody := Target{Name: "nobody", Overlay: overlayAddr6(99)}
		res := probeFrom6(t, nt, 1, target6(nt, 2), nobody)
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		wantStats(t, res[0], kindUnicast, 5, 5)
		wantStats(t, res[0], kindMulticast, 5, 5)
		wantStats(t, res[1], kindUnicast, 5, 0)
		wantStats(t, res[1], kindMulticast, 5, 0)
		if OK(res) {
			t.Error("OK is true with a target that does not exist")
		}
	})

	t.Run("another interface joined the group", func(t *testing.T) {
		// Node 2 gets a second interface, as a host with two TAPs of two
		// communities, with a responder of its own on the same group
		// and port. Its address is tentative (duplicate address
		// detection runs) when the responder starts. The probes that
		// arrive on eth0 reach the responder of eth0 only.
		node := nt.Node(2)
		for _, args := range [][]string{
			{"ip", "link", "add", "mcv0", "type", "veth", "peer", "name", "mcv1"},
			{"ip", "link", "set", "mcv0", "up"},
		} {
			if out, err := node.Exec(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		if err := enableIPv6(node, "mcv1"); err != nil {
			t.Fatal(err)
		}
		other := netip.MustParseAddr("fd00:198:19:1::2")
		for _, args := range [][]string{
			{"ip", "link", "set", "mcv1", "up"},
			{"ip", "-6", "addr", "add", netip.PrefixFrom(other, 64).String(), "dev", "mcv1"},
		} {
			if out, err := node.Exec(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		var r *Responder
		err := node.Do(func() error {
			var err error
			r, err = Listen("mcv1", other, netip.Addr{}, 0)
			return err
		})
		if err != nil {
			t.Fatalf("Listen on mcv1 while its address is tentative: %v", err)
		}
		defer r.Close()
		if out, _ := node.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", "mcv1"); !strings.Contains(out, "tentative") {
			t.Logf("the address was no longer tentative when checked:\n%s", out)
		}
		before2, _ := resp[2].Stats()
		res := probeFrom6(t, nt, 1, target6(nt, 2))
		if len(res) != 1 {
			t.Fatalf("%d results, want 1", len(res))
		}
		wantStats(t, res[0], kindUnicast, 5, 5)
		wantStats(t, res[0], kindMulticast, 5, 5)
		if a, _ := resp[2].Stats(); a-before2 != 10 {
			t.Errorf("node 2 answered %d probes on eth0, want 10", a-before2)
		}
		if a, ign := r.Stats(); a != 0 || ign != 0 {
			t.Errorf("the responder on mcv1 answered %d and ignored %d datagrams that arrived on eth0", a, ign)
		}
	})

	t.Run("closed responder", func(t *testing.T) {
		if err := resp[3].Close(); err != nil {
			t.Fatal(err)
		}
		res := probeFrom6(t, nt, 1, target6(nt, 2), target6(nt, 3))
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		wantStats(t, res[0], kindUnicast, 5, 5)
		wantStats(t, res[0], kindMulticast, 5, 5)
		wantStats(t, res[1], kindUnicast, 5, 0)
		wantStats(t, res[1], kindMulticast, 5, 0)
		var buf bytes.Buffer
		Write(&buf, res)
		want := fmt.Sprintf("198.18.0.3 (%[1]s)   unicast, xmt/rcv/%%loss = 5/0/100%%\n"+
			"198.18.0.3 (%[1]s) multicast, xmt/rcv/%%loss = 5/0/100%%\n"+
			"2 peers: unicast ok for 1, multicast ok for 1\n", overlayAddr6(3))
		if !strings.HasSuffix(buf.String(), want) {
			t.Errorf("Write:\n%s\nwant it to end with:\n%s", buf.String(), want)
		}
	})
}

// TestIntegrationRun6Refuses checks that Run reports a probe socket it
// cannot bind: an IPv6 address that the node does not hold.
func TestIntegrationRun6Refuses(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 1)
	node := nt.Node(1)
	if err := enableIPv6(node, iface); err != nil {
		t.Fatal(err)
	}
	err := node.Do(func() error {
		_, err := Run(context.Background(), Options{Iface: iface, Local: overlayAddr6(1)}, []Target{{Overlay: overlayAddr6(2)}})
		if err == nil || !strings.Contains(err.Error(), "duplicate address detection") {
			return fmt.Errorf("Run from an address not held: %v, want an error about it", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
