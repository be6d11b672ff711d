package bench

import (
	"bytes"
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
