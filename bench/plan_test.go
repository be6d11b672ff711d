package bench

import (
	"bytes"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
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
		run, skipped := planPaths(AllPaths, encaps, capabilities{})
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
		run, skipped := planPaths(AllPaths, encaps, capabilities{Dataplane: true, KernelVXLAN: true, OVS: true})
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
		run, _ := planPaths([]string{PathKernelPair, PathKernelHRE}, []string{"gre"}, capabilities{Dataplane: true, KernelVXLAN: true, Gretap: true})
		if want := map[string][]string{"gre": {PathKernelPair}}; !reflect.DeepEqual(run, want) {
			t.Errorf("run %v; want %v", run, want)
		}
	})
}

func TestDaemonArgs(t *testing.T) {
	base := []string{"run", "--peers", "P", "--local", "198.18.0.1", "--encap", "vxlan", "--control", "C",
		"--igmp-query-interval", "2s", "--igmp-response-interval", "1s"}
	if got := daemonArgs(PathUserspace, "vxlan", "P", "198.18.0.1", "C", "2s", "1s"); !slices.Equal(got, base) {
		t.Errorf("userspace: %q", got)
	}
	if got := daemonArgs(PathKernelHRE, "vxlan", "P", "198.18.0.1", "C", "2s", "1s"); !slices.Equal(got, append(slices.Clone(base), "--dataplane", "kernel", "--kernel-vxlan", "hre")) {
		t.Errorf("kernel-hre: %q", got)
	}
	if got := daemonArgs(PathKernelPair, "vxlan", "P", "198.18.0.1", "C", "2s", "1s"); !slices.Equal(got, append(slices.Clone(base), "--dataplane", "kernel", "--kernel-vxlan", "pair")) {
		t.Errorf("kernel-pair: %q", got)
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
	// The overheads of wireLen are the same headers.
	if wireLen("vxlan", 64) != 20+30+20+8+64 || wireLen("gre", 1400) != 20+18+20+8+1400 {
		t.Errorf("wireLen: vxlan 64 %d, gre 1400 %d", wireLen("vxlan", 64), wireLen("gre", 1400))
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
