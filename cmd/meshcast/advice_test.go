package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/discovery"
	"github.com/meshcast/meshcast/overlay"
)

// TestFlagAdvice checks the advice for each typed error of discovery and
// overlay, built with the library's own functions where they need no
// privileges, and that the library's message names no flag.
func TestFlagAdvice(t *testing.T) {
	const inventory = `198.18.0.1 demo,198.19.0.1/24
198.18.0.2 demo,198.19.0.2/24
198.18.0.1 other,198.19.0.1/24
198.18.0.5 other,198.19.0.5/24
`
	all, err := discovery.ParseInventory(strings.NewReader(inventory), "peers.txt")
	if err != nil {
		t.Fatal(err)
	}
	demo := discovery.InCommunity(all, "demo")
	addrs := func(as ...string) func(netip.Addr) bool {
		return func(a netip.Addr) bool {
			for _, s := range as {
				if a == netip.MustParseAddr(s) {
					return true
				}
			}
			return false
		}
	}
	findLocal := func(members []discovery.Member, local string, isLocal func(netip.Addr) bool) error {
		var l netip.Addr
		if local != "" {
			l = netip.MustParseAddr(local)
		}
		_, err := discovery.FindLocal(members, l, isLocal)
		if err == nil {
			t.Fatalf("FindLocal(%q) found a member", local)
		}
		return err
	}
	_, openErr := discovery.LoadInventory(filepath.Join(t.TempDir(), "missing.txt"))
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("198.18.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, parseErr := discovery.LoadInventory(bad)

	tests := []struct {
		name   string
		err    error
		advice string
	}{
		{"local address not listed", findLocal(demo, "198.18.0.9", nil),
			"pass --local with this node's underlay address, or add its line to the inventory"},
		{"local address in two communities", findLocal(all, "198.18.0.1", nil), "pass --community to choose one"},
		{"local address twice in one community", findLocal(append(demo[:1:1], demo[0]), "198.18.0.1", nil),
			"keep one line per instance in the inventory"},
		{"no address and no host addresses", findLocal(demo, "", nil), "pass --local with this node's underlay address"},
		{"no host address listed", findLocal(demo, "", addrs("10.0.0.1")),
			"pass --local with this node's underlay address, or fix the inventory"},
		{"several host addresses listed", findLocal(demo, "", addrs("198.18.0.1", "198.18.0.2")), "pass --local to choose one"},
		{"host addresses in two communities", findLocal(all, "", addrs("198.18.0.2", "198.18.0.5")),
			"pass --local or --community to choose one"},
		{"inventory cannot be opened", openErr, "check the --peers path"},
		{"malformed inventory", parseErr, ""},
		{"underlay address not here", fmt.Errorf("kernel dataplane: %w", &overlay.UnderlayNotAssignedError{Addr: netip.MustParseAddr("198.18.0.9")}),
			"pass --local with one of this host's addresses, or fix the inventory"},
		{"pair VNI collision", &overlay.PairVNIError{Community: 42, Peers: [2]netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")}, VNI: 7},
			"use --kernel-vxlan hre, or another --vni"},
		{"pair VNI collision, joined", errors.Join(errors.New("peer 198.18.0.4: create"), &overlay.PairVNIError{VNI: 7}),
			"use --kernel-vxlan hre, or another --vni"},
		{"no bridge to adopt", fmt.Errorf("%w: mcbr-demo", overlay.ErrNoBridge), "start without --takeover"},
		{"bridge of other settings", fmt.Errorf("kernel dataplane: %w", &overlay.BridgeMismatchError{Bridge: "mcbr-demo", Device: "mcvc6120002", Problem: "VXLAN VNI 1 where this configuration (community VNI 2) makes VNI 3 for peer 198.18.0.2"}),
			"take over with the same --encap, --vni, --kernel-vxlan"},
		{"no gretap", overlay.ErrNoGretap, "use --encap vxlan, or the userspace dataplane"},
		{"interface exists", fmt.Errorf("%w: mcbr-demo", overlay.ErrInterfaceExists), "pass --tap with another name"},
		{"TAP busy", fmt.Errorf("TAP mcbr-demo: %w", overlay.ErrTAPBusy), "pass --tap with another name"},
		{"another error", errors.New("something else"), ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flagAdvice(tt.err)
			if tt.advice == "" && got != "" || !strings.Contains(got, tt.advice) {
				t.Errorf("flagAdvice(%v) = %q, want %q", tt.err, got, tt.advice)
			}
			if tt.err != nil && strings.Contains(tt.err.Error(), "--") {
				t.Errorf("the library's error %q names a flag", tt.err)
			}
		})
	}
}

func TestOffloadReason(t *testing.T) {
	const refused = "sendmmsg with UDP_SEGMENT refused with EIO (input/output error) on Linux 6.1; sent without the offload since"
	offloadOff := &runConfig{noOffload: true}
	socketEgress := &runConfig{socketEgress: true}
	both := &runConfig{noOffload: true, socketEgress: true}
	for _, tt := range []struct {
		name, in string
		cfg      *runConfig
		want     string
	}{
		{overlay.OffloadUDPGSO, overlay.OffloadOffByConfig, offloadOff, "turned off by --offload off"},
		{overlay.OffloadPacketTx, overlay.OffloadOffByConfig, offloadOff, "turned off by --offload off"},
		{overlay.OffloadPacketTx, overlay.OffloadOffByConfig, socketEgress, "turned off by --egress socket"},
		{overlay.OffloadPacketGSO, overlay.OffloadOffByConfig, socketEgress, "turned off by --egress socket"},
		{overlay.OffloadPacketGSO, overlay.OffloadOffByConfig, both, "turned off by --offload off"},
		{overlay.OffloadPacketRx, overlay.OffloadOffByConfig, &runConfig{}, "off unless --ingress packet"},
		{overlay.OffloadPacketRx, overlay.OffloadOffByConfig, offloadOff, "turned off by --offload off"},
		{overlay.OffloadUDPGSO, refused, socketEgress, refused},
		{overlay.OffloadTAPCoalesce, "", nil, ""},
	} {
		if got := offloadReason(tt.name, tt.in, tt.cfg); got != tt.want {
			t.Errorf("offloadReason(%s, %q, %+v) = %q, want %q", tt.name, tt.in, tt.cfg, got, tt.want)
		}
	}
}
