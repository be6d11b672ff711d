package ping

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/net/ipv4"
)

// The integration tests stand in for the overlay without meshcast: each
// node's underlay link eth0 also gets the overlay address 198.19.0.K/24,
// and plays the TAP. The hub bridge floods multicast, as the overlay does.
const iface = nstest.NodeLink

func overlayAddr(k int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 0, byte(k)}) }

// checkGoroutines fails the test if goroutines of this package are still
// running once the test's other cleanups are done. Call it before anything
// that starts them.
func checkGoroutines(t *testing.T) {
	t.Cleanup(func() {
		var left []string
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			left = left[:0]
			for _, g := range strings.Split(string(buf), "\n\n") {
				for _, fn := range []string{"ping.(*Responder).serve", "ping.(*tracker).read", "ping.Run("} {
					if strings.Contains(g, fn) {
						left = append(left, g)
						break
					}
				}
			}
			if len(left) == 0 {
				return
			}
		}
		t.Errorf("goroutines left behind:\n%s", strings.Join(left, "\n\n"))
	})
}

// overlayNet builds n nodes, gives each its overlay address on eth0 and
// starts a Responder on each, closed in cleanup.
func overlayNet(t *testing.T, n int) (*nstest.Net, []*Responder) {
	t.Helper()
	nt := nstest.NewNet(t, n)
	resp := make([]*Responder, n+1) // by node index
	for k := 1; k <= n; k++ {
		node := nt.Node(k)
		if out, err := node.Exec(t, "ip", "addr", "add", netip.PrefixFrom(overlayAddr(k), 24).String(), "dev", iface); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		err := node.Do(func() error {
			var err error
			resp[k], err = Listen(iface, overlayAddr(k), netip.Addr{}, 0)
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

// target returns node k as a Target.
func target(nt *nstest.Net, k int) Target {
	return Target{Name: nt.Node(k).Underlay.String(), Overlay: overlayAddr(k)}
}

// probeFrom runs Run in node k against targets, and logs what Write prints.
func probeFrom(t *testing.T, nt *nstest.Net, k int, targets ...Target) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := Options{Iface: iface, Local: overlayAddr(k), Count: 5, Interval: 100 * time.Millisecond, Wait: time.Second}
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
	t.Logf("from node %d:\n%s", k, buf.String())
	return res
}

// wantStats checks the sent and received counts of one kind of a result.
func wantStats(t *testing.T, r Result, k kind, sent, received int) {
	t.Helper()
	s := r.Unicast
	if k == kindMulticast {
		s = r.Multicast
	}
	if s.Sent != sent || s.Received != received {
		t.Errorf("%s %v: %d/%d sent/received, want %d/%d", r.Target.label(), k, s.Sent, s.Received, sent, received)
	}
	if received > 0 && (s.Min <= 0 || s.Min > s.Avg || s.Avg > s.Max || s.Max > 2*time.Second) {
		t.Errorf("%s %v: implausible round trips %+v", r.Target.label(), k, s)
	}
	wantLoss := 100 * float64(sent-received) / float64(sent)
	if s.Loss() != wantLoss {
		t.Errorf("%s %v: loss %v%%, want %v%%", r.Target.label(), k, s.Loss(), wantLoss)
	}
}

func TestIntegrationPing(t *testing.T) {
	nstest.LeakCheck(t)
	checkGoroutines(t)
	nt, resp := overlayNet(t, 3)

	t.Run("all answer", func(t *testing.T) {
		own, _ := resp[1].Stats()
		before2, _ := resp[2].Stats()
		res := probeFrom(t, nt, 1, target(nt, 2), target(nt, 3))
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		for i, r := range res {
			if want := target(nt, i+2); r.Target != want {
				t.Errorf("result %d is for %+v, want %+v", i, r.Target, want)
			}
			wantStats(t, r, kindUnicast, 5, 5)
			wantStats(t, r, kindMulticast, 5, 5)
		}
		if !OK(res) {
			t.Error("OK is false")
		}
		// The prober's own responder did not hear its multicast probes.
		if a, _ := resp[1].Stats(); a != own {
			t.Errorf("node 1 answered %d probes of its own prober", a-own)
		}
		if a, _ := resp[2].Stats(); a-before2 != 10 {
			t.Errorf("node 2 answered %d probes, want 5 unicast + 5 multicast", a-before2)
		}
	})

	t.Run("concurrent probers", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make([][]Result, 4)
		for k := 1; k <= 3; k++ {
			var targets []Target
			for j := 1; j <= 3; j++ {
				if j != k {
					targets = append(targets, target(nt, j))
				}
			}
			wg.Go(func() { results[k] = probeFrom(t, nt, k, targets...) })
		}
		wg.Wait()
		for k := 1; k <= 3; k++ {
			if len(results[k]) != 2 {
				t.Fatalf("node %d: %d results, want 2", k, len(results[k]))
			}
			for _, r := range results[k] {
				wantStats(t, r, kindUnicast, 5, 5)
				wantStats(t, r, kindMulticast, 5, 5)
			}
			if !OK(results[k]) {
				t.Errorf("node %d: OK is false", k)
			}
		}
	})

	t.Run("junk is ignored", func(t *testing.T) {
		_, ign2 := resp[2].Stats()
		answered2, _ := resp[2].Stats()
		sendJunk(t, nt)
		// The group socket has its own goroutine: give it time.
		var ign uint64
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, ign = resp[2].Stats(); ign-ign2 >= 4 {
				break
			}
		}
		if ign-ign2 != 4 {
			t.Errorf("node 2 ignored %d datagrams, want 4", ign-ign2)
		}
		for _, why := range []reason{reasonShort, reasonDirection, reasonWrongKind} {
			if resp[2].ignoredBy(why) == 0 {
				t.Errorf("node 2 counted nothing as %v", why)
			}
		}
		if a, _ := resp[2].Stats(); a-answered2 != 1 {
			t.Errorf("node 2 answered %d probes, want 1", a-answered2)
		}
	})

	t.Run("unknown target", func(t *testing.T) {
		nobody := Target{Name: "nobody", Overlay: overlayAddr(99)}
		res := probeFrom(t, nt, 1, target(nt, 2), nobody)
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

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 220*time.Millisecond)
		defer cancel()
		opts := Options{Iface: iface, Local: overlayAddr(1), Count: 1000, Interval: 50 * time.Millisecond}
		var res []Result
		var runErr error
		start := time.Now()
		err := nt.Node(1).Do(func() error {
			res, runErr = Run(ctx, opts, []Target{target(nt, 2), target(nt, 3)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if runErr != context.DeadlineExceeded {
			t.Fatalf("Run: %v, want %v", runErr, context.DeadlineExceeded)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run took %v to stop", d)
		}
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		for _, r := range res {
			for _, s := range []Stats{r.Unicast, r.Multicast} {
				if s.Sent < 1 || s.Sent > 10 || s.Received > s.Sent {
					t.Errorf("%s: %+v after a canceled run of about 5 rounds", r.Target.label(), s)
				}
			}
		}
	})

	t.Run("closed responder", func(t *testing.T) {
		if err := resp[3].Close(); err != nil {
			t.Fatal(err)
		}
		res := probeFrom(t, nt, 1, target(nt, 2), target(nt, 3))
		if len(res) != 2 {
			t.Fatalf("%d results, want 2", len(res))
		}
		wantStats(t, res[0], kindUnicast, 5, 5)
		wantStats(t, res[0], kindMulticast, 5, 5)
		wantStats(t, res[1], kindUnicast, 5, 0)
		wantStats(t, res[1], kindMulticast, 5, 0)
		if OK(res) {
			t.Error("OK is true with node 3's responder closed")
		}
		var buf bytes.Buffer
		Write(&buf, res)
		want := "198.18.0.3 (198.19.0.3)   unicast, xmt/rcv/%loss = 5/0/100%\n" +
			"198.18.0.3 (198.19.0.3) multicast, xmt/rcv/%loss = 5/0/100%\n" +
			"2 peers: unicast ok for 1, multicast ok for 1\n"
		if !strings.HasSuffix(buf.String(), want) {
			t.Errorf("Write:\n%s\nwant it to end with:\n%s", buf.String(), want)
		}
	})
}

// sendJunk sends node 2's responder, from node 1, three datagrams it must
// ignore on its unicast socket (a short one, a reply, a multicast probe)
// and one on its group socket (a unicast probe), and a multicast probe to
// its underlay address, which no socket of it receives; then a valid
// request, and checks the reply.
func sendJunk(t *testing.T, nt *nstest.Net) {
	t.Helper()
	err := nt.Node(1).Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(overlayAddr(1), 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		pc := ipv4.NewPacketConn(c)
		if err := pc.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := pc.SetMulticastLoopback(false); err != nil {
			return err
		}
		uni := netip.AddrPortFrom(overlayAddr(2), DefaultPort)
		group := netip.AddrPortFrom(defaultGroup, DefaultPort)
		h := header{typ: typeRequest, kind: kindUnicast, seq: 9, nonce: 77, stamp: 12345}
		req := func(h header) []byte { return encode(make([]byte, packetLen), h) }
		replyHdr, multiHdr := h, h
		replyHdr.typ, multiHdr.kind = typeReply, kindMulticast
		for _, d := range []struct {
			b   []byte
			dst netip.AddrPort
		}{
			// Not received at all: the group socket is bound to the
			// group, so it does not hear unicast to the port.
			{req(multiHdr), netip.AddrPortFrom(nt.Node(2).Underlay, DefaultPort)},
			{req(h)[:packetLen-1], uni},
			{req(replyHdr), uni},
			{req(multiHdr), uni},
			{req(h), group}, // node 3 ignores it too
		} {
			if _, err := c.WriteToUDPAddrPort(d.b, d.dst); err != nil {
				return err
			}
		}
		// The junk went first; the answer to a valid request means it
		// has been read.
		if _, err := c.WriteToUDPAddrPort(req(h), uni); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		buf := make([]byte, readBufLen)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return fmt.Errorf("no reply: %w", err)
		}
		p, why := parse(buf[:n])
		want := h
		want.typ = typeReply
		if why != reasonOK || p.header() != want || from != uni {
			return fmt.Errorf("reply %x from %v (%v), want %+v from %v", buf[:n], from, why, want, uni)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationListenRefuses checks Listen's errors.
func TestIntegrationListenRefuses(t *testing.T) {
	nstest.LeakCheck(t)
	checkGoroutines(t)
	nt := nstest.NewNet(t, 1)
	node := nt.Node(1)
	if out, err := node.Exec(t, "ip", "addr", "add", "198.19.0.1/24", "dev", iface); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, tc := range []struct {
		name    string
		ifname  string
		overlay netip.Addr
		group   netip.Addr
		port    int
		want    string
	}{
		{"no interface", "mcbr-none", overlayAddr(1), netip.Addr{}, 0, `interface "mcbr-none"`},
		{"overlay not held", iface, overlayAddr(7), netip.Addr{}, 0, "cannot assign requested address"},
		{"invalid overlay", iface, netip.Addr{}, netip.Addr{}, 0, "not a unicast IPv4 address"},
		{"unicast group", iface, overlayAddr(1), overlayAddr(2), 0, "not an IPv4 multicast group"},
		{"port", iface, overlayAddr(1), netip.Addr{}, 65536, "port 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := node.Do(func() error {
				r, err := Listen(tc.ifname, tc.overlay, tc.group, tc.port)
				if err == nil {
					r.Close()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// Two responders cannot share the unicast address and port; the
	// first is unharmed.
	err := node.Do(func() error {
		r, err := Listen(iface, overlayAddr(1), netip.Addr{}, 0)
		if err != nil {
			return err
		}
		defer r.Close()
		if r2, err := Listen(iface, overlayAddr(1), netip.Addr{}, 0); err == nil {
			r2.Close()
			return fmt.Errorf("a second responder on the same address and port")
		}
		if err := r.Close(); err != nil {
			return err
		}
		return r.Close() // again: the same result
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationSendAllocs proves that a responder's send allocates
// nothing.
func TestIntegrationSendAllocs(t *testing.T) {
	nstest.LeakCheck(t)
	nt := nstest.NewNet(t, 1)
	err := nt.Node(1).Do(func() error {
		self := nt.Node(1).Underlay
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(self, 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		send, err := newSender(c, 0)
		if err != nil {
			return err
		}
		b := encode(make([]byte, packetLen), goldenHeader)
		dst := netip.AddrPortFrom(self, 9) // nobody listens
		failed := false
		n := testing.AllocsPerRun(1000, func() { failed = !send(b, dst) || failed })
		if failed {
			return fmt.Errorf("a send failed")
		}
		if n != 0 {
			return fmt.Errorf("%v allocations per send, want 0", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationStalledLink proves that a responder does not wait when
// its replies cannot leave: a token bucket of 8 kbit/s on node 2's link
// holds the replies, which fill the socket's send buffer; the responder
// must go on reading and count the replies it could not send, instead of
// blocking in a send.
func TestIntegrationStalledLink(t *testing.T) {
	nstest.LeakCheck(t)
	checkGoroutines(t)
	if _, err := exec.LookPath("tc"); err != nil {
		nstest.SkipOrFail(t, "needs tc (iproute2; make deps installs it): %v", err)
	}
	nt, resp := overlayNet(t, 2)
	// Resolve the neighbours both ways while the link is fast.
	if res := probeFrom(t, nt, 1, target(nt, 2)); !OK(res) {
		t.Fatal("no answer before the link was stalled")
	}
	if out, err := nt.Node(2).Exec(t, "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", "8kbit", "burst", "1600", "limit", "10000000"); err != nil {
		nstest.SkipOrFail(t, "cannot stall the link with a tbf qdisc (sch_tbf): %v\n%s", err, out)
	}
	const probes = 4000
	answered0, _ := resp[2].Stats()
	err := nt.Node(1).Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(overlayAddr(1), 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		dst := netip.AddrPortFrom(overlayAddr(2), DefaultPort)
		b := make([]byte, packetLen)
		for seq := range uint32(probes) {
			encode(b, header{typ: typeRequest, kind: kindUnicast, seq: seq, nonce: 5, stamp: 1})
			if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
				return err
			}
			if seq%50 == 49 {
				time.Sleep(time.Millisecond) // let the responder keep up with reading
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var failed uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if failed = resp[2].ignoredBy(reasonSendFailed); failed > 0 {
			break
		}
	}
	answered, _ := resp[2].Stats()
	t.Logf("answered %d, dropped %d replies of %d probes", answered-answered0, failed, probes)
	if failed == 0 {
		t.Fatal("no reply was dropped: the responder waited for the stalled link, or the link did not stall")
	}
	// It is still reading: the reads and the counts go on after the
	// send buffer filled up.
	if answered-answered0+failed < probes/2 {
		t.Errorf("only %d of %d probes handled", answered-answered0+failed, probes)
	}
}
