package overlay

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestValidIfName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // "" when valid, else a part of the message
	}{
		{"mcbr-demo", ""},
		{"eth0.100", ""},
		{"tap_0-x", ""},
		{"a", ""},
		{"mcbr-community1", ""}, // 15 bytes: the most Linux allows
		{strings.Repeat("x", 15), ""},
		{strings.Repeat("x", 16), "at most 15"},
		{"mcbr-community12", "is 16 bytes"},
		{strings.Repeat("x", 64), "at most 15"},
		{"", "empty"},
		{".", "not allowed"},
		{"..", "not allowed"},
		{"a/b", "contains '/'"},
		{"/", "contains '/'"},
		{"a b", "contains ' '"},
		{" a", "contains ' '"},
		{"a\tb", "contains"},
		{"a\nb", "contains"},
		{"a:1", "contains ':'"},
		{"a\x00b", "contains"},
		{"a\x7fb", "contains"},
		{"tap\u00e9", "contains"},
	}
	for _, tt := range tests {
		err := ValidIfName(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidIfName(%q) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidIfName(%q) = nil, want an error", tt.name)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidIfName(%q) = %q, want it to mention %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestOpenTAPRefusesBadConfig needs no privileges: OpenTAP checks its
// configuration before it touches the system.
func TestOpenTAPRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     TAPConfig
		wantErr string
	}{
		{"long name", TAPConfig{Name: "mcbr-community12", Overlay: netip.MustParsePrefix("198.19.0.1/24")}, "at most 15"},
		{"slash", TAPConfig{Name: "mc/0", Overlay: netip.MustParsePrefix("198.19.0.1/24")}, "contains '/'"},
		{"IPv6 overlay", TAPConfig{Name: "mctap0", Overlay: netip.MustParsePrefix("2001:db8::1/64")}, "not IPv4"},
		{"no overlay", TAPConfig{Name: "mctap0"}, "not IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tap, err := OpenTAP(tt.cfg)
			if err == nil {
				tap.Close()
				t.Fatal("OpenTAP succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenTAP = %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestIntegrationTAPIPv6LinkLocal checks that a TAP with an IPv6 overlay
// address gets the link-local address of its MAC (EUI-64) even where the
// host's default is another way (random here): meshcast's MLD querier
// queries from that address.
func TestIntegrationTAPIPv6LinkLocal(t *testing.T) {
	ns := newTestNS(t)
	const name = "mctest6"
	overlay6 := netip.MustParsePrefix("fd00:198:19::1/64")
	var tap *TAP
	ns.do(t, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/addr_gen_mode", []byte("3"), 0); err != nil {
			return err
		}
		var err error
		tap, err = OpenTAP(TAPConfig{Name: name, Overlay: tapOverlay, Overlay6: overlay6})
		return err
	})
	t.Cleanup(func() { tap.Close() })
	m := tap.MAC()
	want := netip.AddrFrom16([16]byte{0xfe, 0x80, 8: m[0] ^ 2, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []netip.Prefix
		ns.do(t, func() error {
			link, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				bits, _ := a.Mask.Size()
				got = append(got, netip.PrefixFrom(ip, bits))
			}
			return err
		})
		if slices.Contains(got, netip.PrefixFrom(want, 64)) && slices.Contains(got, overlay6) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TAP IPv6 addresses %v, want %v/64 (EUI-64 of %v) and %v", got, want, m, overlay6)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
