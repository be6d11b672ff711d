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

func FuzzParseTag(f *testing.F) {
	for _, tt := range tagTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, o, err := ParseTag(v)
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
		// Re-formatting parses back to the same values.
		s := c + "," + o.String()
		c2, o2, err := ParseTag(s)
		if err != nil || c2 != c || o2 != o {
			t.Fatalf("ParseTag(%q) = %q, %v; re-parsing %q gave %q, %v, %v", v, c, o, s, c2, o2, err)
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
	}
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
			if !u.Is4() || u.IsMulticast() || u.IsLoopback() || u.IsUnspecified() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				t.Fatalf("member %v: underlay is not unicast IPv4", m)
			}
			if bad := checkOverlay(m.Overlay); bad != "" {
				t.Fatalf("member %v: overlay %s", m, bad)
			}
			n, err := strconv.Atoi(strings.TrimPrefix(m.ID, "f:"))
			if err != nil || n <= prev {
				t.Fatalf("member %v: ID is not f:LINE in increasing order", m)
			}
			prev = n
			tag := m.Community + "," + m.Overlay.String()
			if c, o, err := ParseTag(tag); err != nil || c != m.Community || o != m.Overlay {
				t.Fatalf("member %v: tag %q parses back as %q, %v, %v", m, tag, c, o, err)
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
