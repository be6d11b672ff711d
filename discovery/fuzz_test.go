package discovery

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// maxMsg bounds an error message: bad values are clipped, so a long input
// never makes a long message.
const maxMsg = 1024

// checkOverlay reports what is wrong with a parsed overlay prefix, or "".
func checkOverlay(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case !p.IsValid() || !a.Is4():
		return "not a valid IPv4 prefix"
	case p.Bits() < 1 || p.Bits() > 31:
		return "prefix length out of 1..31"
	case a.IsMulticast() || a.IsLoopback() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "not a unicast address"
	case p.Bits() < 31 && (a == p.Masked().Addr() || a == broadcast(p)):
		return "network or broadcast address"
	}
	return ""
}

// checkOverlay6 returns what is wrong with an IPv6 overlay prefix ParseTag
// returned, or "" (the zero Prefix: none).
func checkOverlay6(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case !p.IsValid():
		if p != (netip.Prefix{}) {
			return "invalid"
		}
		return ""
	case !a.Is6() || a.Is4In6() || a.Zone() != "":
		return "not plain IPv6"
	case p.Bits() < 1 || p.Bits() > 127:
		return "prefix length out of range"
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast():
		return "not a global or unique local unicast address"
	case p.Bits() < 127 && a == p.Masked().Addr():
		return "subnet-router anycast address"
	}
	return ""
}

// checkUnderlay reports what is wrong with an underlay address that
// ParseInventory returned, or "".
func checkUnderlay(u netip.Addr) string {
	switch {
	case !u.IsValid():
		return "invalid"
	case u.Is4():
		if u.IsMulticast() || u.IsLoopback() || u.IsUnspecified() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return "not unicast IPv4"
		}
	case u.Is4In6() || u.Zone() != "":
		return "IPv4-mapped or zoned IPv6"
	case !u.IsGlobalUnicast():
		return "not global unicast IPv6"
	case netip.MustParsePrefix("::/96").Contains(u):
		return "IPv4-compatible IPv6"
	}
	return ""
}

func FuzzParseTag(f *testing.F) {
	for _, tt := range tagTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tag, err := ParseTag(v)
		c, o := tag.Community, tag.Overlay
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "; ") || len(msg) > maxMsg {
				t.Fatalf("ParseTag(%q) error %q does not say what to write instead, or is too long", v, msg)
			}
			return
		}
		if checkCommunity(c) != nil || strings.ContainsAny(c, ", \t") {
			t.Fatalf("ParseTag(%q) community %q breaks the grammar", v, c)
		}
		if bad := checkOverlay(o); bad != "" {
			t.Fatalf("ParseTag(%q) overlay %v: %s", v, o, bad)
		}
		if bad := checkOverlay6(tag.Overlay6); bad != "" {
			t.Fatalf("ParseTag(%q) IPv6 overlay %v: %s", v, tag.Overlay6, bad)
		}
		// Re-formatting parses back to the same values.
		s := tag.String()
		again, err := ParseTag(s)
		if err != nil || again != tag {
			t.Fatalf("ParseTag(%q) = %+v; re-parsing %q gave %+v, %v", v, tag, s, again, err)
		}
		// The canonical form is the input without its surrounding whitespace
		// (ParseTag accepts no other spellings).
		if s != strings.TrimSpace(v) {
			t.Fatalf("ParseTag(%q) accepted a non-canonical spelling of %q", v, s)
		}
	})
}

func FuzzParseInventory(f *testing.F) {
	for _, tt := range inventoryTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range tagTests {
		f.Add([]byte("198.18.0.1 " + tt.in + "\n"))
		f.Add([]byte("fd00:198:18::1 " + tt.in + "\n"))
	}
	for _, u := range []string{
		"2001:db8::1", "fd00:198:18::ffff", "FD00:198:18::1", "fd00:0198:0018::1", "fe80::1", "fe80::1%eth0",
		"fd00::1%2", "ff02::1", "::", "::1", "::ffff:198.18.0.1", "::198.18.0.1", "64:ff9b::c612:1", "fd00::1/64", "[fd00::1]",
	} {
		f.Add([]byte(u + " demo,198.19.0.1/24\n"))
	}
	f.Add([]byte("198.18.0.1 demo,198.19.0.1/24\nfd00:198:18::2 demo,198.19.0.2/24,fd00:198:19::2/64\nfd00:198:18:0::2 demo,198.19.0.3/24\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseInventory(bytes.NewReader(data), "f")
		if err != nil {
			ie, ok := errors.AsType[*InventoryError](err)
			lines := bytes.Count(data, []byte("\n")) + 1
			switch {
			case !ok:
				t.Fatalf("error %v is a %T, want *InventoryError", err, err)
			case ie.File != "f" || ie.Line < 1 || ie.Line > lines:
				t.Fatalf("error %q: file %q line %d, want f and 1..%d", err, ie.File, ie.Line, lines)
			case !strings.Contains(ie.Msg, "; ") || len(ie.Msg) > maxMsg:
				t.Fatalf("error %q does not say what to write instead, or is too long", err)
			}
			return
		}
		var canon strings.Builder
		prev := 0
		for _, m := range ms {
			u := m.Underlay
			if bad := checkUnderlay(u); bad != "" || m.Underlay6.IsValid() {
				t.Fatalf("member %v: underlay %s, or an Underlay6", m, bad)
			}
			if bad := checkOverlay(m.Overlay); bad != "" {
				t.Fatalf("member %v: overlay %s", m, bad)
			}
			n, err := strconv.Atoi(strings.TrimPrefix(m.ID, "f:"))
			if err != nil || n <= prev {
				t.Fatalf("member %v: ID is not f:LINE in increasing order", m)
			}
			prev = n
			tag := Tag{m.Community, m.Overlay, m.Overlay6}.String()
			if back, err := ParseTag(tag); err != nil || back.Community != m.Community || back.Overlay != m.Overlay || back.Overlay6 != m.Overlay6 {
				t.Fatalf("member %v: tag %q parses back as %+v, %v", m, tag, back, err)
			}
			canon.WriteString(u.String() + " " + tag + "\n")
		}
		// The members, written out one per line, parse back to themselves.
		again, err := ParseInventory(strings.NewReader(canon.String()), "f")
		if err != nil || len(again) != len(ms) {
			t.Fatalf("re-parsing %q: %d members, %v; want %d", canon.String(), len(again), err, len(ms))
		}
		for i, m := range again {
			if want := ms[i]; m.Underlay != want.Underlay || m.Community != want.Community || m.Overlay != want.Overlay || m.ID != "f:"+strconv.Itoa(i+1) {
				t.Fatalf("re-parsed member %d = %v, want %v", i, m, want)
			}
		}
	})
}
