package bench

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestProbeHelp(t *testing.T) {
	if c := probeHelp("Flags:\n  --peers FILE\n  --encap gre|vxlan\n"); c.Dataplane || c.KernelVXLAN {
		t.Errorf("old binary: %+v", c)
	}
	if c := probeHelp("  --dataplane userspace|kernel\n  --kernel-vxlan pair|hre\n"); !c.Dataplane || !c.KernelVXLAN {
		t.Errorf("new binary: %+v", c)
	}
}

func TestPlanPaths(t *testing.T) {
	encaps := []string{"vxlan", "gre"}
	t.Run("no dataplane", func(t *testing.T) {
		run, skipped := planPaths(AllPaths, encaps, Underlay4, capabilities{})
		if want := map[string][]string{"vxlan": {PathUserspace}, "gre": {PathUserspace}}; !reflect.DeepEqual(run, want) {
			t.Errorf("run %v; want %v", run, want)
		}
		var paths []string
		for _, s := range skipped {
			paths = append(paths, s.Path)
			if s.Path != PathOVS && !strings.Contains(s.Reason, "--dataplane") {
				t.Errorf("skip reason %q does not name --dataplane", s.Reason)
			}
		}
		if want := []string{PathKernelPair, PathKernelHRE, PathOVS}; !slices.Equal(paths, want) {
			t.Errorf("skipped %v; want %v (once each)", paths, want)
		}
	})
	t.Run("kernel without gretap", func(t *testing.T) {
		run, skipped := planPaths(AllPaths, encaps, Underlay4, capabilities{Dataplane: true, KernelVXLAN: true, OVS: true})
		want := map[string][]string{
			"vxlan": {PathUserspace, PathKernelPair, PathKernelHRE, PathOVS},
			"gre":   {PathUserspace, PathOVS},
		}
		if !reflect.DeepEqual(run, want) {
			t.Errorf("run %v; want %v", run, want)
		}
		if len(skipped) != 2 || skipped[0].Encap != "gre" || skipped[1].Encap != "gre" {
			t.Errorf("skipped %+v; want kernel-pair and kernel-hre for gre", skipped)
		}
	})
	t.Run("gretap", func(t *testing.T) {
		run, _ := planPaths([]string{PathKernelPair, PathKernelHRE}, []string{"gre"}, Underlay4, capabilities{Dataplane: true, KernelVXLAN: true, Gretap: true})
		if want := map[string][]string{"gre": {PathKernelPair}}; !reflect.DeepEqual(run, want) {
			t.Errorf("run %v; want %v", run, want)
		}
	})
}

func TestPlanPathsUnderlay6(t *testing.T) {
	encaps := []string{"vxlan", "gre"}
	all := capabilities{Dataplane: true, KernelVXLAN: true, UnderlayFamily: true, Gretap: true, OVS: true}
	t.Run("no ip6gretap", func(t *testing.T) {
		// gretap alone does not carry GRE over IPv6.
		run, skipped := planPaths(AllPaths, encaps, Underlay6, all)
		want := map[string][]string{
			"vxlan": {PathUserspace, PathKernelPair, PathKernelHRE, PathOVS},
			"gre":   {PathUserspace, PathOVS},
		}
		if !reflect.DeepEqual(run, want) {
			t.Errorf("run %v; want %v", run, want)
		}
		if len(skipped) != 2 || skipped[0] != (Skip{Path: PathKernelPair, Encap: "gre", Reason: skipped[0].Reason}) ||
			skipped[1].Path != PathKernelHRE || skipped[1].Encap != "gre" {
			t.Fatalf("skipped %+v; want kernel-pair and kernel-hre for gre", skipped)
		}
		for _, w := range []string{"IPv6 underlay", "ip6gretap"} {
			if !strings.Contains(skipped[0].Reason, w) {
				t.Errorf("skip reason %q does not say %q", skipped[0].Reason, w)
			}
		}
	})
	t.Run("ip6gretap", func(t *testing.T) {
		c := all
		c.Gretap, c.IP6Gretap = false, true
		run, skipped := planPaths([]string{PathKernelPair}, []string{"gre"}, Underlay6, c)
		if want := map[string][]string{"gre": {PathKernelPair}}; !reflect.DeepEqual(run, want) || len(skipped) != 0 {
			t.Errorf("run %v, skipped %v; want %v and no skips", run, skipped, want)
		}
		// ... and ip6gretap alone does not carry GRE over IPv4.
		if run, _ := planPaths([]string{PathKernelPair}, []string{"gre"}, Underlay4, c); len(run["gre"]) != 0 {
			t.Errorf("IPv4 underlay without gretap: run %v", run)
		}
	})
}

func TestProbeHelpUnderlayFamily(t *testing.T) {
	if probeHelp("  --peers FILE\n").UnderlayFamily {
		t.Error("a binary without --underlay-family tunnels over IPv6")
	}
	if !probeHelp("  --underlay-family 4|6|auto\n").UnderlayFamily {
		t.Error("--underlay-family not seen")
	}
}

func TestDaemonArgs(t *testing.T) {
	v4 := netip.MustParseAddr("198.18.0.1")
	base := []string{"run", "--peers", "P", "--local", "198.18.0.1", "--encap", "vxlan", "--control", "C",
		"--igmp-query-interval", "2s", "--igmp-response-interval", "1s"}
	if got := daemonArgs(PathUserspace, "vxlan", "P", v4, "C", "2s", "1s"); !slices.Equal(got, base) {
		t.Errorf("userspace: %q", got)
	}
	if got := daemonArgs(PathKernelHRE, "vxlan", "P", v4, "C", "2s", "1s"); !slices.Equal(got, append(slices.Clone(base), "--dataplane", "kernel", "--kernel-vxlan", "hre")) {
		t.Errorf("kernel-hre: %q", got)
	}
	if got := daemonArgs(PathKernelPair, "vxlan", "P", v4, "C", "2s", "1s"); !slices.Equal(got, append(slices.Clone(base), "--dataplane", "kernel", "--kernel-vxlan", "pair")) {
		t.Errorf("kernel-pair: %q", got)
	}
	// Over IPv6: the address, and the family said explicitly.
	v6 := netip.MustParseAddr("fd00:198:18::1")
	base6 := []string{"run", "--peers", "P", "--local", "fd00:198:18::1", "--encap", "gre", "--control", "C",
		"--igmp-query-interval", "2s", "--igmp-response-interval", "1s", "--underlay-family", "6"}
	if got := daemonArgs(PathUserspace, "gre", "P", v6, "C", "2s", "1s"); !slices.Equal(got, base6) {
		t.Errorf("userspace over IPv6: %q", got)
	}
	if got := daemonArgs(PathKernelHRE, "vxlan", "P", v6, "C", "2s", "1s"); !slices.Contains(got, "fd00:198:18::1") ||
		!slices.Equal(got[len(got)-6:], []string{"--underlay-family", "6", "--dataplane", "kernel", "--kernel-vxlan", "hre"}) {
		t.Errorf("kernel-hre over IPv6: %q", got)
	}
}

func TestUnderlayAddr(t *testing.T) {
	for _, c := range []struct {
		family string
		k      int
		want   string
	}{
		{Underlay4, 1, "198.18.0.1"}, {Underlay4, 17, "198.18.0.17"},
		{Underlay6, 1, "fd00:198:18::1"}, {Underlay6, 17, "fd00:198:18::11"}, {Underlay6, 200, "fd00:198:18::c8"},
	} {
		a := underlayAddr(c.family, c.k)
		if a.String() != c.want {
			t.Errorf("node %d over IPv%s: %s; want %s", c.k, c.family, a, c.want)
		}
		if c.family == Underlay6 && !netip.MustParsePrefix("fd00:198:18::/64").Contains(a) {
			t.Errorf("%s is outside fd00:198:18::/64", a)
		}
	}
	a6 := underlayNetlinkAddr(underlayAddr(Underlay6, 3))
	if ones, bits := a6.Mask.Size(); ones != 64 || bits != 128 || a6.Flags&unix.IFA_F_NODAD == 0 {
		t.Errorf("IPv6 underlay address %v flags %#x; want a /64 without DAD", a6.IPNet, a6.Flags)
	}
	a4 := underlayNetlinkAddr(underlayAddr(Underlay4, 3))
	if ones, bits := a4.Mask.Size(); ones != 24 || bits != 32 || a4.Flags != 0 {
		t.Errorf("IPv4 underlay address %v flags %#x; want a /24", a4.IPNet, a4.Flags)
	}
}

func TestBriefError(t *testing.T) {
	err := errors.New("daemon in mcb-x-n1 exited (exit status 1)\n\ttime=... level=INFO msg=starting\n\tmeshcast: kernel dataplane: no IPv6 VXLAN\n")
	if got, want := briefError(err), "daemon in mcb-x-n1 exited (exit status 1): meshcast: kernel dataplane: no IPv6 VXLAN"; got != want {
		t.Errorf("briefError = %q; want %q", got, want)
	}
	if got := briefError(errors.New("one line")); got != "one line" {
		t.Errorf("briefError = %q", got)
	}
}

func TestParseBridgeInfo(t *testing.T) {
	js := `[{"ifname":"mcbr-demo","linkinfo":{"info_kind":"bridge","info_data":{"mcast_snooping":1,"mcast_querier":1,"mcast_query_response_intvl":100}}}]`
	snoop, querier, resp, err := parseBridgeInfo([]byte(js))
	if err != nil || !snoop || !querier || resp != time.Second {
		t.Errorf("got %v %v %v %v; want true true 1s nil", snoop, querier, resp, err)
	}
	js = `[{"linkinfo":{"info_kind":"bridge","info_data":{"mcast_snooping":0}}}]`
	snoop, querier, resp, err = parseBridgeInfo([]byte(js))
	if err != nil || snoop || querier || resp != 10*time.Second {
		t.Errorf("got %v %v %v %v; want false false 10s nil", snoop, querier, resp, err)
	}
	for _, bad := range []string{`[]`, `[{"linkinfo":{"info_kind":"tun"}}]`, `{`, `[{"linkinfo":{"info_kind":"bridge","info_data":{}}}]`} {
		if _, _, _, err := parseBridgeInfo([]byte(bad)); err == nil {
			t.Errorf("no error for %s", bad)
		}
	}
}

func TestHeader(t *testing.T) {
	b := make([]byte, 64)
	now := time.Unix(1700000000, 123456789)
	putHeader(b, 7, 1<<40+3, now)
	trial, seq, sent, ok := parseHeader(b)
	if !ok || trial != 7 || seq != 1<<40+3 || sent != now.UnixNano() {
		t.Errorf("parsed %v %v %v %v", trial, seq, sent, ok)
	}
	if _, _, _, ok := parseHeader(b[:headerLen-1]); ok {
		t.Error("parsed a short header")
	}
	b[0] ^= 0xff
	if _, _, _, ok := parseHeader(b); ok {
		t.Error("parsed a header with a bad magic")
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Binary: "x", Quick: true}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Fanouts, []int{1, 4, 16}) || !slices.Equal(o.Payloads, []int{64, 1400}) ||
		!slices.Equal(o.Encaps, []string{"vxlan", "gre"}) || o.Rounds != 1 || o.TrialDuration != 250*time.Millisecond {
		t.Errorf("quick defaults: %+v", o)
	}
	o, err = Options{Binary: "x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Fanouts, []int{1, 2, 4, 8, 16}) || o.Rounds != 3 {
		t.Errorf("defaults: %+v", o)
	}
	if err := (Options{Binary: "x", Quick: true}).Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	for _, bad := range []Options{
		{},
		{Binary: "x", Fanouts: []int{0}},
		{Binary: "x", Payloads: []int{1500}},
		{Binary: "x", Payloads: []int{10}},
		{Binary: "x", Encaps: []string{"geneve"}},
		{Binary: "x", Paths: []string{"dpdk"}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("no error for %+v", bad)
		}
		if err := bad.Check(); err == nil {
			t.Errorf("Check: no error for %+v", bad)
		}
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, 2)
	p.Step("vxlan fanout 1 userspace round 1")
	p.Printf("a message")
	p.Done()
	p.Step("vxlan fanout 1 kernel-hre round 1")
	p.Done()
	p.Finish()
	want := "[1/2] vxlan fanout 1 userspace round 1\na message\n[2/2] vxlan fanout 1 kernel-hre round 1\n"
	if b.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", b.String(), want)
	}
	// The in-place bar, as a terminal would get it.
	b.Reset()
	p = newProgress(&b, 4)
	p.tty = true
	p.Step("x")
	p.Done()
	p.Printf("msg")
	p.Finish()
	out := b.String()
	if !strings.Contains(out, "\r\x1b[K[......") || !strings.Contains(out, "[######..................] 1/4") ||
		!strings.Contains(out, "msg\n") || !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("bar output %q", out)
	}
	// Steps dropped (a path that cannot run) come off the total.
	b.Reset()
	p = newProgress(&b, 6)
	p.Step("a")
	p.Done()
	p.Drop(3)
	p.Step("b")
	p.Drop(10) // never below what is done
	if want := "[1/6] a\n[2/3] b\n"; b.String() != want || p.total != 1 {
		t.Errorf("after Drop: %q, total %d; want %q, 1", b.String(), p.total, want)
	}
	if got := progressBar(3, 3, 4); got != "[####] 3/3" {
		t.Errorf("progressBar = %q", got)
	}
}

func TestOptionsMeasures(t *testing.T) {
	o, err := Options{Binary: "x", Quick: true}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Measures, []string{MeasureSource, MeasureReceiver}) || o.CapacityLossThreshold != 0.005 || o.LossThreshold != 0.001 {
		t.Errorf("quick: measures %v, thresholds %v %v; want source, receiver, 0.005, 0.001", o.Measures, o.CapacityLossThreshold, o.LossThreshold)
	}
	o, err = Options{Binary: "x"}.withDefaults()
	if err != nil || !slices.Equal(o.Measures, []string{MeasureE2E}) {
		t.Errorf("default measures %v, %v; want e2e (as before)", o.Measures, err)
	}
	// In the order of AllMeasures, each once; the caller's slice untouched.
	in := []string{MeasureE2E, MeasureReceiver, MeasureE2E, MeasureSource}
	o, err = Options{Binary: "x", Quick: true, Measures: in}.withDefaults()
	if err != nil || !slices.Equal(o.Measures, AllMeasures) || in[0] != MeasureE2E {
		t.Errorf("measures %v (%v) from %v; want %v", o.Measures, err, in, AllMeasures)
	}
	for _, bad := range []Options{
		{Binary: "x", Measures: []string{"sink"}},
		{Binary: "x", CapacityLossThreshold: 1},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("no error for %+v", bad)
		}
	}
	if got := fanoutsFor(MeasureReceiver, []int{1, 4, 16}); !slices.Equal(got, []int{1}) {
		t.Errorf("receiver fanouts %v; want [1]", got)
	}
	if got := fanoutsFor(MeasureSource, []int{1, 4, 16}); !slices.Equal(got, []int{1, 4, 16}) {
		t.Errorf("source fanouts %v", got)
	}
}

func TestIngressRuleset(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.3")
	vx := ingressRuleset("vxlan", src, dst)
	for _, want := range []string{
		"table netdev mcb {", "counter stream {", `type filter hook ingress device "eth0" priority -500; policy accept;`,
		// The inner IPv4 header starts 8+8+14 = 30 bytes into the outer
		// UDP header: its destination at byte 46, the inner UDP
		// destination port at byte 52.
		`ip saddr 198.18.0.1 ip daddr 198.18.0.3 udp dport 4789 @th,368,32 0xef010203 @th,416,16 5001 counter name "stream" drop`,
	} {
		if !strings.Contains(vx, want) {
			t.Errorf("the VXLAN ruleset lacks %q:\n%s", want, vx)
		}
	}
	if n := strings.Count(vx, "drop"); n != 1 {
		t.Errorf("the VXLAN ruleset has %d rules; want 1", n)
	}
	gre := ingressRuleset("gre", src, dst)
	for _, want := range []string{
		// Without a key the inner Ethernet header follows the 4-byte GRE
		// header: inner IPv4 at byte 18, destination at 34, port at 40.
		`ip protocol 47 @th,0,32 0x00006558 @th,272,32 0xef010203 @th,320,16 5001 counter name "stream" drop`,
		// With a key, four bytes later.
		`ip protocol 47 @th,0,32 0x20006558 @th,304,32 0xef010203 @th,352,16 5001 counter name "stream" drop`,
	} {
		if !strings.Contains(gre, want) {
			t.Errorf("the GRE ruleset lacks %q:\n%s", want, gre)
		}
	}
	if strings.Contains(gre, "udp dport 4789") {
		t.Error("the GRE ruleset matches VXLAN")
	}
	if strings.Contains(vx+gre, "ip6") {
		t.Error("an IPv4 ruleset matches IPv6")
	}
	// The overheads of wireLen are the same headers.
	if wireLen("vxlan", Underlay4, 64) != 20+30+20+8+64 || wireLen("gre", Underlay4, 1400) != 20+18+20+8+1400 {
		t.Errorf("wireLen: vxlan 64 %d, gre 1400 %d", wireLen("vxlan", Underlay4, 64), wireLen("gre", Underlay4, 1400))
	}
	if wireLen("vxlan", "", 64) != wireLen("vxlan", Underlay4, 64) {
		t.Error("wireLen: no family is not IPv4")
	}
}

func TestIngressRuleset6(t *testing.T) {
	src, dst := netip.MustParseAddr("fd00:198:18::1"), netip.MustParseAddr("fd00:198:18::3")
	vx := ingressRuleset("vxlan", src, dst)
	for _, want := range []string{
		"table netdev mcb {", `type filter hook ingress device "eth0" priority -500; policy accept;`,
		// The same offsets from the outer UDP header as over IPv4.
		`ip6 saddr fd00:198:18::1 ip6 daddr fd00:198:18::3 udp dport 4789 @th,368,32 0xef010203 @th,416,16 5001 counter name "stream" drop`,
	} {
		if !strings.Contains(vx, want) {
			t.Errorf("the VXLAN ruleset over IPv6 lacks %q:\n%s", want, vx)
		}
	}
	gre := ingressRuleset("gre", src, dst)
	for _, want := range []string{
		`ip6 saddr fd00:198:18::1 ip6 daddr fd00:198:18::3 ip6 nexthdr 47 @th,0,32 0x00006558 @th,272,32 0xef010203 @th,320,16 5001 counter name "stream" drop`,
		`ip6 saddr fd00:198:18::1 ip6 daddr fd00:198:18::3 ip6 nexthdr 47 @th,0,32 0x20006558 @th,304,32 0xef010203 @th,352,16 5001 counter name "stream" drop`,
	} {
		if !strings.Contains(gre, want) {
			t.Errorf("the GRE ruleset over IPv6 lacks %q:\n%s", want, gre)
		}
	}
	for _, rs := range []string{vx, gre} {
		if strings.Contains(rs, "ip saddr") || strings.Contains(rs, "ip protocol") {
			t.Errorf("an IPv6 ruleset matches IPv4:\n%s", rs)
		}
	}
	// The outer IPv6 header is 40 bytes, 20 more than IPv4's.
	if wireLen("vxlan", Underlay6, 64) != 40+30+20+8+64 || wireLen("gre", Underlay6, 1400) != 40+18+20+8+1400 {
		t.Errorf("wireLen over IPv6: vxlan 64 %d, gre 1400 %d", wireLen("vxlan", Underlay6, 64), wireLen("gre", Underlay6, 1400))
	}
}

func TestOptionsUnderlay(t *testing.T) {
	o, err := Options{Binary: "x"}.withDefaults()
	if err != nil || o.Underlay != Underlay4 {
		t.Errorf("default underlay %q, %v; want %q", o.Underlay, err, Underlay4)
	}
	o, err = Options{Binary: "x", Underlay: Underlay6, Payloads: []int{64, 1400}}.withDefaults()
	if err != nil || o.Underlay != Underlay6 {
		t.Errorf("underlay 6: %q, %v", o.Underlay, err)
	}
	// 1422 fits the VXLAN overlay MTU over IPv4 (1450), not over IPv6 (1430).
	if err := (Options{Binary: "x", Payloads: []int{maxPayload}}).Check(); err != nil {
		t.Errorf("payload %d over IPv4: %v", maxPayload, err)
	}
	if err := (Options{Binary: "x", Underlay: Underlay6, Payloads: []int{maxPayload6}}).Check(); err != nil {
		t.Errorf("payload %d over IPv6: %v", maxPayload6, err)
	}
	if err := (Options{Binary: "x", Underlay: Underlay6, Payloads: []int{maxPayload6 + 1}}).Check(); err == nil || !strings.Contains(err.Error(), "1430") {
		t.Errorf("payload %d over IPv6: %v; want an error naming the MTU 1430", maxPayload6+1, err)
	}
	for _, bad := range []string{"ipv6", "46", "v4"} {
		if err := (Options{Binary: "x", Underlay: bad}).Check(); err == nil {
			t.Errorf("no error for underlay %q", bad)
		}
	}
}

func TestParseNftCounter(t *testing.T) {
	js := `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},` +
		` {"counter": {"family": "netdev", "name": "stream", "table": "mcb", "handle": 1, "packets": 12345, "bytes": 1752990}}]}`
	p, b, err := parseNftCounter([]byte(js))
	if err != nil || p != 12345 || b != 1752990 {
		t.Errorf("got %d %d %v", p, b, err)
	}
	for _, bad := range []string{`{"nftables": [{"metainfo": {}}]}`, `{`, ``} {
		if _, _, err := parseNftCounter([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestEthtoolFeature(t *testing.T) {
	out := `Features for eth0:
rx-checksumming: on
tx-checksumming: on
	tx-checksum-ipv4: off [fixed]
tcp-segmentation-offload: on
	tx-udp-segmentation: on
tx-udp_tnl-segmentation: on
rx-gro-hw: off [fixed]
`
	if on, fixed, ok := ethtoolFeature(out, featureUSO); !on || fixed || !ok {
		t.Errorf("%s: %v %v %v", featureUSO, on, fixed, ok)
	}
	if on, fixed, ok := ethtoolFeature(out, "tx-checksum-ipv4"); on || !fixed || !ok {
		t.Errorf("tx-checksum-ipv4: %v %v %v", on, fixed, ok)
	}
	if _, _, ok := ethtoolFeature(out, "tx-udp"); ok {
		t.Error("found a feature by a prefix of its name")
	}
}

func TestMethodText(t *testing.T) {
	lines := MethodText([]string{MeasureSource, MeasureReceiver}, 0.001, 0.005, 1000)
	if len(lines) != 2 {
		t.Fatalf("%d lines; want 2", len(lines))
	}
	for _, want := range []string{"nftables", "eth0 ingress", "tx-udp-segmentation off", "under 0.5%", "1000 datagrams/s", "N copies", "softirq"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the source method lacks %q: %s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], "min(source copies/s / N, receiver datagrams/s)") {
		t.Errorf("the receiver method does not state the estimate: %s", lines[1])
	}
	if e2e := MethodText([]string{MeasureE2E}, 0.001, 0.005, 1000); len(e2e) != 1 || !strings.Contains(e2e[0], "under 0.1%") {
		t.Errorf("e2e method %q", e2e)
	}
}

func TestDropUnworkable(t *testing.T) {
	var out bytes.Buffer
	newRunner := func(underlay string) *runner {
		out.Reset()
		return &runner{
			opts: Options{Underlay: underlay, Measures: []string{MeasureSource}, Fanouts: []int{4, 16}, Rounds: 3, Encaps: []string{"vxlan", "gre"}},
			rep:  &Report{Paths: []string{PathUserspace, PathKernelPair, PathKernelHRE}},
			prog: newProgress(&out, 18), started: map[string]bool{}, dropped: map[string]bool{}, stepped: map[string]int{},
			plan: map[string][]string{"vxlan": {PathUserspace, PathKernelPair, PathKernelHRE}, "gre": {PathUserspace, PathKernelPair}},
		}
	}
	fail := errors.New("daemon in mcb-x-n1 exited (exit status 1)\n\tmeshcast: no IPv6 VXLAN in the kernel dataplane")

	// Over IPv6, a kernel path whose first start fails is skipped, with
	// the daemon's error, and its remaining steps come off the progress.
	r := newRunner(Underlay6)
	r.stepped["kernel-hre vxlan"] = 1
	if !r.dropUnworkable(PathKernelHRE, "vxlan", fail) || !r.dropped["kernel-hre vxlan"] {
		t.Fatal("a kernel path that failed its first start over IPv6 was not dropped")
	}
	if len(r.rep.Skipped) != 1 || r.rep.Skipped[0].Path != PathKernelHRE || r.rep.Skipped[0].Encap != "vxlan" ||
		!strings.Contains(r.rep.Skipped[0].Reason, "IPv6 underlay") || !strings.Contains(r.rep.Skipped[0].Reason, "no IPv6 VXLAN") {
		t.Errorf("skipped %+v", r.rep.Skipped)
	}
	if r.prog.total != 18-5 || !slices.Equal(r.rep.Paths, []string{PathUserspace, PathKernelPair}) {
		t.Errorf("progress total %d, paths %v; want 13 and kernel-hre gone", r.prog.total, r.rep.Paths)
	}
	if !strings.Contains(out.String(), "skipping kernel-hre (vxlan)") || !strings.Contains(out.String(), "no IPv6 VXLAN") {
		t.Errorf("the progress does not say why: %q", out.String())
	}

	// Once started, a failure is the measurement's error; the same for
	// the userspace path, and for everything over IPv4.
	r = newRunner(Underlay6)
	if r.dropUnworkable(PathKernelPair, "vxlan", nil) || !r.started["kernel-pair vxlan"] {
		t.Error("a path that started was dropped, or not recorded")
	}
	if r.dropUnworkable(PathKernelPair, "vxlan", fail) {
		t.Error("a path that had started was dropped on a later failure")
	}
	if r.dropUnworkable(PathUserspace, "vxlan", fail) {
		t.Error("the userspace path was dropped")
	}
	// kernel-pair still runs with vxlan: dropping it for gre keeps it
	// listed; dropped for both, it goes.
	if !r.dropUnworkable(PathKernelPair, "gre", fail) || !slices.Contains(r.rep.Paths, PathKernelPair) {
		t.Errorf("kernel-pair gre: dropped %v, paths %v", r.dropped, r.rep.Paths)
	}
	r = newRunner(Underlay6)
	if !r.dropUnworkable(PathKernelPair, "vxlan", fail) || !slices.Contains(r.rep.Paths, PathKernelPair) {
		t.Errorf("kernel-pair vxlan first, gre still to run: dropped %v, paths %v", r.dropped, r.rep.Paths)
	}
	if !r.dropUnworkable(PathKernelPair, "gre", fail) || slices.Contains(r.rep.Paths, PathKernelPair) {
		t.Errorf("kernel-pair dropped for both: paths %v", r.rep.Paths)
	}
	r = newRunner(Underlay4)
	if r.dropUnworkable(PathKernelHRE, "vxlan", fail) || len(r.rep.Skipped) != 0 {
		t.Error("a path was dropped over IPv4")
	}
}
