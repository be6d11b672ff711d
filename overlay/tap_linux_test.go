package overlay

import (
	"net/netip"
	"strings"
	"testing"
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
