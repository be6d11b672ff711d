package ping

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	local = netip.MustParseAddr("198.19.0.1")
	peerA = Target{Name: "198.18.0.2", Overlay: netip.MustParseAddr("198.19.0.2")}
	peerB = Target{Name: "198.18.0.3", Overlay: netip.MustParseAddr("198.19.0.3")}

	local6 = netip.MustParseAddr("fd00:198:19::1")
	peer6A = Target{Name: "198.18.0.2", Overlay: netip.MustParseAddr("fd00:198:19::2")}
	peer6B = Target{Name: "198.18.0.3", Overlay: netip.MustParseAddr("fd00:198:19::3")}
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Iface: "mcbr-demo", Local: local}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Iface: "mcbr-demo", Local: local, Group: netip.MustParseAddr(DefaultGroup), Port: DefaultPort,
		Count: 5, Interval: time.Second, Wait: time.Second}
	if o != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", o, want)
	}
}

func TestOptionsDefaults6(t *testing.T) {
	o, err := Options{Iface: "mcbr-demo", Local: local6}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Iface: "mcbr-demo", Local: local6, Group: netip.MustParseAddr(DefaultGroup6), Port: DefaultPort,
		Count: 5, Interval: time.Second, Wait: time.Second}
	if o != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", o, want)
	}
	// An IPv4-mapped address is IPv4.
	o, err = Options{Iface: "mcbr-demo", Local: netip.MustParseAddr("::ffff:198.19.0.1")}.withDefaults()
	if err != nil || o.Local != local || o.Group != netip.MustParseAddr(DefaultGroup) {
		t.Fatalf("mapped local: %+v, %v; want IPv4 with the IPv4 group", o, err)
	}
}

// TestDefaultGroup6 pins the IPv6 ping group: transient, site-local, and
// "MCping" in its group ID.
func TestDefaultGroup6(t *testing.T) {
	g := netip.MustParseAddr(DefaultGroup6)
	b := g.As16()
	if g.String() != DefaultGroup6 || b[0] != 0xff || b[1] != 0x15 || string(b[10:]) != "MCping" {
		t.Fatalf("DefaultGroup6 %s: %x", DefaultGroup6, b)
	}
	if !ValidGroup6(g) {
		t.Fatal("DefaultGroup6 is not a valid IPv6 ping group")
	}
}

func TestValidGroup6(t *testing.T) {
	for _, tc := range []struct {
		g    string
		want bool
	}{
		{DefaultGroup6, true},
		{"ff05::1:3", true},    // site-local
		{"ff03::1", true},      // realm-local
		{"ff04::1", true},      // admin-local
		{"ff08::1", true},      // organization-local
		{"ff0e::1", true},      // global
		{"ff3e::8000:1", true}, // source-specific, global
		{"ff7e:140:2001:db8::1", true},
		{"ff01::1", false}, // interface-local
		{"ff02::1", false}, // link-local
		{"ff12::1", false},
		{"ff00::1", false}, // reserved scope 0
		{"ff0f::1", false}, // reserved scope f
		{"fd00:198:19::1", false},
		{"::", false},
		{"::ffff:232.43.211.234", false},
		{DefaultGroup, false},
		{"ff05::1%eth0", false},
	} {
		if got := ValidGroup6(netip.MustParseAddr(tc.g)); got != tc.want {
			t.Errorf("ValidGroup6(%s) = %v, want %v", tc.g, got, tc.want)
		}
	}
	if ValidGroup6(netip.Addr{}) {
		t.Error("ValidGroup6 of the zero Addr is true")
	}
}

func TestRunRefuses(t *testing.T) {
	good := Options{Iface: "mcbr-demo", Local: local}
	for _, tc := range []struct {
		name    string
		opts    func(*Options)
		targets []Target
		want    string
	}{
		{"no iface", func(o *Options) { o.Iface = "" }, nil, "Iface is empty"},
		{"no local", func(o *Options) { o.Local = netip.Addr{} }, nil, "Local invalid IP"},
		{"mapped local, IPv6 group", func(o *Options) {
			o.Local, o.Group = netip.MustParseAddr("::ffff:198.19.0.1"), netip.MustParseAddr(DefaultGroup6)
		}, nil, "Group ff15::4d43:7069:6e67 is not an IPv4 multicast group"},
		{"IPv6 local, IPv4 group", func(o *Options) { o.Local, o.Group = local6, netip.MustParseAddr(DefaultGroup) }, nil,
			"Group 232.43.211.234 is not an IPv6 multicast group of scope wider than link-local"},
		{"IPv6 link-local group", func(o *Options) { o.Local, o.Group = local6, netip.MustParseAddr("ff02::1") }, nil, "scope wider than link-local"},
		{"IPv6 interface-local group", func(o *Options) { o.Local, o.Group = local6, netip.MustParseAddr("ff01::4d43") }, nil, "scope wider than link-local"},
		{"IPv6 unicast group", func(o *Options) { o.Local, o.Group = local6, local6 }, nil, "scope wider than link-local"},
		{"IPv6 link-local local", func(o *Options) { o.Local = netip.MustParseAddr("fe80::1") }, nil, "Local fe80::1 is link-local"},
		{"IPv6 multicast local", func(o *Options) { o.Local = netip.MustParseAddr(DefaultGroup6) }, nil, "not a unicast IPv6"},
		{"IPv6 target of an IPv4 run", func(*Options) {}, []Target{peerA, peer6A}, `target "198.18.0.2": overlay address fd00:198:19::2 is not a unicast IPv4 address`},
		{"IPv4 target of an IPv6 run", func(o *Options) { o.Local = local6 }, []Target{peer6A, peerB}, `target "198.18.0.3": overlay address 198.19.0.3 is not a unicast IPv6 address`},
		{"mapped target of an IPv6 run", func(o *Options) { o.Local = local6 }, []Target{{Name: "m", Overlay: netip.MustParseAddr("::ffff:198.19.0.2")}}, "not a unicast IPv6 address"},
		{"link-local target", func(o *Options) { o.Local = local6 }, []Target{{Name: "ll", Overlay: netip.MustParseAddr("fe80::2")}}, `target "ll": overlay address fe80::2 is link-local`},
		{"IPv6 target is local", func(o *Options) { o.Local = local6 }, []Target{{Name: "me", Overlay: local6}}, "is Options.Local"},
		{"duplicate IPv6 target", func(o *Options) { o.Local = local6 }, []Target{peer6A, peer6B, {Name: "again", Overlay: peer6A.Overlay}}, `have the same overlay address fd00:198:19::2`},
		{"multicast local", func(o *Options) { o.Local = netip.MustParseAddr(DefaultGroup) }, nil, "not a unicast IPv4"},
		{"unicast group", func(o *Options) { o.Group = local }, nil, "not an IPv4 multicast group"},
		{"port", func(o *Options) { o.Port = 70000 }, nil, "Port 70000"},
		{"count", func(o *Options) { o.Count = -1 }, nil, "Count -1"},
		{"interval", func(o *Options) { o.Interval = -time.Second }, nil, "Interval -1s is negative"},
		{"wait", func(o *Options) { o.Wait = -time.Second }, nil, "Wait -1s is negative"},
		{"invalid target", func(*Options) {}, []Target{{Name: "x"}}, `target "x": overlay address invalid IP is not a unicast IPv4 address`},
		{"target is local", func(*Options) {}, []Target{{Name: "me", Overlay: local}}, "is Options.Local"},
		{"duplicate target", func(*Options) {}, []Target{peerA, peerB, {Name: "again", Overlay: peerA.Overlay}}, `"198.18.0.2" and "again" have the same overlay address 198.19.0.2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.opts(&o)
			res, err := Run(context.Background(), o, tc.targets)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error with %q", err, tc.want)
			}
			if res != nil {
				t.Fatal("results with an error")
			}
		})
	}
}

func TestRunNoTargets(t *testing.T) {
	res, err := Run(context.Background(), Options{Iface: "does-not-exist", Local: local}, nil)
	if err != nil || res == nil || len(res) != 0 {
		t.Fatalf("Run without targets: %v, %v; want no results and no error", res, err)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Iface: "mcbr-demo", Local: local}, []Target{peerA}); err != context.Canceled {
		t.Fatalf("Run: %v, want %v", err, context.Canceled)
	}
}

// testTracker returns a tracker with nonce 42 for peerA and peerB, with
// count probes of each kind, none sent yet, and a time to send them at.
func testTracker(t *testing.T, count int) (*tracker, time.Time) {
	t.Helper()
	o, err := Options{Iface: "x", Local: local, Count: count}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTracker(42, o, []Target{peerA, peerB})
	if err != nil {
		t.Fatal(err)
	}
	return tr, time.Now()
}

// markSent records probe seq of kind k as sent at at, to target i (all
// targets for multicast, with i < 0).
func (tr *tracker) markSent(i int, k kind, seq uint32, at time.Time) {
	tr.mark(i, k, seq, probe{sent: true, at: at, stamp: at.UnixNano()})
}

func reply(k kind, seq uint32, nonce uint64, stamp int64) []byte {
	return encode(make([]byte, packetLen), header{typ: typeReply, kind: k, seq: seq, nonce: nonce, stamp: stamp})
}

func TestTrackerRecord(t *testing.T) {
	tr, t0 := testTracker(t, 3)
	for seq := range uint32(2) { // seq 2 is never sent
		tr.markSent(0, kindUnicast, seq, t0)
		tr.markSent(1, kindUnicast, seq, t0)
		tr.markSent(-1, kindMulticast, seq, t0)
	}
	fromA := netip.AddrPortFrom(peerA.Overlay, DefaultPort)
	fromB := netip.AddrPortFrom(peerB.Overlay, DefaultPort)
	stamp := t0.UnixNano()
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	for _, st := range []struct {
		name string
		b    []byte
		from netip.AddrPort
		now  time.Time
		want bool
	}{
		{"unicast from A", reply(kindUnicast, 0, 42, stamp), fromA, at(400 * us), true},
		{"duplicate", reply(kindUnicast, 0, 42, stamp), fromA, at(900 * us), false},
		{"multicast from A", reply(kindMulticast, 0, 42, stamp), fromA, at(500 * us), true},
		{"multicast from B", reply(kindMulticast, 0, 42, stamp), fromB, at(600 * us), true},
		{"mapped source", reply(kindMulticast, 1, 42, stamp), netip.MustParseAddrPort("[::ffff:198.19.0.2]:4321"), at(700 * us), true},
		{"other nonce", reply(kindUnicast, 1, 43, stamp), fromA, at(time.Millisecond), false},
		{"wrong stamp", reply(kindUnicast, 1, 42, stamp+1), fromA, at(time.Millisecond), false},
		{"unsent seq", reply(kindUnicast, 2, 42, stamp), fromA, at(time.Millisecond), false},
		{"seq past count", reply(kindUnicast, 3, 42, stamp), fromA, at(time.Millisecond), false},
		{"seq far past count", reply(kindUnicast, 1<<32-1, 42, stamp), fromA, at(time.Millisecond), false},
		{"from local", reply(kindUnicast, 1, 42, stamp), netip.AddrPortFrom(local, DefaultPort), at(time.Millisecond), false},
		{"from a stranger", reply(kindMulticast, 1, 42, stamp), netip.MustParseAddrPort("198.19.0.9:4321"), at(time.Millisecond), false},
		{"from another port", reply(kindUnicast, 1, 42, stamp), netip.AddrPortFrom(peerA.Overlay, 4322), at(time.Millisecond), false},
		{"a request", encode(make([]byte, packetLen), header{typ: typeRequest, kind: kindUnicast, seq: 1, nonce: 42, stamp: stamp}), fromA, at(time.Millisecond), false},
		{"malformed", reply(kindUnicast, 1, 42, stamp)[:40], fromA, at(time.Millisecond), false},
		{"unicast from B, late", reply(kindUnicast, 1, 42, stamp), fromB, at(2 * time.Millisecond), true},
	} {
		if got := tr.record(st.b, st.from, st.now); got != st.want {
			t.Errorf("%s: record = %v, want %v", st.name, got, st.want)
		}
	}
	if tr.foreign != 8 || tr.ignored[reasonDirection] != 1 || tr.ignored[reasonShort] != 1 {
		t.Errorf("foreign %d, ignored %v; want 8 foreign, one request and one short", tr.foreign, tr.ignored)
	}

	res := tr.results()
	want := []Result{
		{
			Target:    peerA,
			Unicast:   Stats{Sent: 2, Received: 1, Min: 400 * us, Avg: 400 * us, Max: 400 * us},
			Multicast: Stats{Sent: 2, Received: 2, Min: 500 * us, Avg: 600 * us, Max: 700 * us, Stddev: 100 * us},
		},
		{
			Target:    peerB,
			Unicast:   Stats{Sent: 2, Received: 1, Min: 2 * time.Millisecond, Avg: 2 * time.Millisecond, Max: 2 * time.Millisecond},
			Multicast: Stats{Sent: 2, Received: 1, Min: 600 * us, Avg: 600 * us, Max: 600 * us},
		},
	}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("result %d:\n got %+v\nwant %+v", i, res[i], want[i])
		}
	}
	select {
	case <-tr.all:
		t.Fatal("all closed before every probe was answered")
	default:
	}
}

// TestTrackerRecord6 matches IPv6 replies: the source is the target's
// IPv6 overlay address, whatever zone the socket reports.
func TestTrackerRecord6(t *testing.T) {
	o, err := Options{Iface: "x", Local: local6, Count: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTracker(42, o, []Target{peer6A, peer6B})
	if err != nil {
		t.Fatal(err)
	}
	if tr.addrs[0] != peer6A.Overlay || tr.addrs[1] != peer6B.Overlay {
		t.Fatalf("addresses %v", tr.addrs)
	}
	t0 := time.Now()
	tr.markSent(0, kindUnicast, 0, t0)
	tr.markSent(1, kindUnicast, 0, t0)
	tr.markSent(-1, kindMulticast, 0, t0)
	stamp := t0.UnixNano()
	fromA := netip.AddrPortFrom(peer6A.Overlay, DefaultPort)
	for _, st := range []struct {
		name string
		b    []byte
		from netip.AddrPort
		want bool
	}{
		{"unicast from A", reply(kindUnicast, 0, 42, stamp), fromA, true},
		{"multicast from A, with a zone", reply(kindMulticast, 0, 42, stamp), netip.MustParseAddrPort("[fd00:198:19::2%mcbr-demo]:4321"), true},
		{"from the IPv4 overlay of A", reply(kindUnicast, 0, 42, stamp), netip.AddrPortFrom(peerA.Overlay, DefaultPort), false},
		{"from local", reply(kindMulticast, 0, 42, stamp), netip.AddrPortFrom(local6, DefaultPort), false},
		{"from a stranger", reply(kindMulticast, 0, 42, stamp), netip.MustParseAddrPort("[fd00:198:19::9]:4321"), false},
		{"from another port", reply(kindUnicast, 0, 42, stamp), netip.AddrPortFrom(peer6B.Overlay, 4322), false},
		{"multicast from B", reply(kindMulticast, 0, 42, stamp), netip.AddrPortFrom(peer6B.Overlay, DefaultPort), true},
	} {
		if got := tr.record(st.b, st.from, t0.Add(time.Millisecond)); got != st.want {
			t.Errorf("%s: record = %v, want %v", st.name, got, st.want)
		}
	}
	res := tr.results()
	if res[0].Unicast.Received != 1 || res[0].Multicast.Received != 1 || res[1].Unicast.Received != 0 || res[1].Multicast.Received != 1 {
		t.Fatalf("results %+v", res)
	}
}

func TestTrackerAll(t *testing.T) {
	tr, t0 := testTracker(t, 1)
	tr.markSent(0, kindUnicast, 0, t0)
	tr.markSent(1, kindUnicast, 0, t0)
	tr.markSent(-1, kindMulticast, 0, t0)
	for _, from := range []Target{peerA, peerB} {
		for _, k := range []kind{kindUnicast, kindMulticast} {
			select {
			case <-tr.all:
				t.Fatal("all closed early")
			default:
			}
			if !tr.record(reply(k, 0, 42, t0.UnixNano()), netip.AddrPortFrom(from.Overlay, DefaultPort), t0) {
				t.Fatalf("reply %v from %s refused", k, from.Name)
			}
		}
	}
	select {
	case <-tr.all:
	default:
		t.Fatal("all not closed once every probe was answered")
	}
	// Duplicates after the end neither count nor close all again.
	if tr.record(reply(kindUnicast, 0, 42, t0.UnixNano()), netip.AddrPortFrom(peerA.Overlay, DefaultPort), t0) {
		t.Fatal("duplicate counted")
	}
	if !OK(tr.results()) {
		t.Fatal("OK false")
	}
}
