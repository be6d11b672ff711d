package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// MaxCommunityLength is the longest community name ParseTag accepts, in bytes.
const MaxCommunityLength = 63

// Tag is a parsed tag value.
type Tag struct {
	Community string
	// Overlay is the IPv4 overlay address with its prefix length, host
	// bits kept (198.19.0.1/24).
	Overlay netip.Prefix
	// Overlay6 is the optional IPv6 overlay address with its prefix
	// length, host bits kept (fd00:198:19::1/64); the zero Prefix when
	// the tag has none.
	Overlay6 netip.Prefix
}

// String returns the tag in its canonical form, which ParseTag accepts.
func (t Tag) String() string {
	s := t.Community + "," + t.Overlay.String()
	if t.Overlay6.IsValid() {
		s += "," + t.Overlay6.String()
	}
	return s
}

// ParseTag parses a tag value of the form COMMUNITY,IP/PREFIX[,IPv6/PREFIX]:
// the value of the EC2 tag `multicast`, and the second column of the
// inventory file. It is the one grammar both peer sources use.
//
// The rules are:
//   - Whitespace around the whole value is trimmed; none is allowed inside it.
//   - There are one or two commas.
//   - COMMUNITY is 1 to 63 bytes of letters, digits, '_', '.' and '-', and
//     starts with a letter or digit.
//   - IP/PREFIX is an IPv4 address in dotted-quad form without leading
//     zeros (no IPv6, no IPv4-mapped IPv6, no zone) and a decimal prefix
//     length from 1 to 31. A /32 would leave the instance with no on-link
//     peers.
//   - The address is a host address of its prefix: not the network address,
//     and not the broadcast address, except in a /31, where both addresses
//     are usable (RFC 3021). It is not multicast, loopback, unspecified
//     (0.0.0.0) or the limited broadcast address 255.255.255.255.
//   - The optional IPv6/PREFIX after a second comma is an IPv6 address in
//     its canonical form (RFC 5952: lower case, the longest run of zero
//     groups compressed; no zone, no IPv4-mapped form) and a decimal prefix
//     length from 1 to 127. It is a global unicast or unique local address:
//     not link-local (the TAP has its own, from its MAC), multicast,
//     loopback or unspecified, and not the subnet-router anycast address
//     of its prefix (all host bits zero).
//
// The returned prefixes keep the host bits (198.19.0.1/24, not
// 198.19.0.0/24). Errors say what is wrong and what to write instead.
func ParseTag(v string) (Tag, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return Tag{}, errors.New("tag is empty; write COMMUNITY,IP/PREFIX, such as demo,198.19.0.1/24")
	}
	if strings.IndexFunc(v, unicode.IsSpace) >= 0 {
		return Tag{}, fmt.Errorf("tag %q contains whitespace; write it without spaces, such as demo,198.19.0.1/24", clip(v))
	}
	switch n := strings.Count(v, ","); n {
	case 0:
		return Tag{}, fmt.Errorf("tag %q has no comma; write COMMUNITY,IP/PREFIX, such as demo,198.19.0.1/24", clip(v))
	case 1, 2:
	default:
		return Tag{}, fmt.Errorf("tag %q has %d commas; write COMMUNITY,IP/PREFIX with an optional ,IPv6/PREFIX, such as demo,198.19.0.1/24,fd00:198:19::1/64", clip(v), n)
	}
	community, rest, _ := strings.Cut(v, ",")
	ov, ov6, has6 := strings.Cut(rest, ",")
	if err := checkCommunity(community); err != nil {
		return Tag{}, err
	}
	if ov == "" {
		return Tag{}, fmt.Errorf("tag %q has no overlay address; write IP/PREFIX after the comma, such as %s,198.19.0.1/24", clip(v), community)
	}
	t := Tag{Community: community}
	var err error
	if t.Overlay, err = parseOverlay(ov); err != nil {
		return Tag{}, err
	}
	if has6 {
		if t.Overlay6, err = parseOverlay6(ov6); err != nil {
			return Tag{}, err
		}
	}
	return t, nil
}

// parseOverlay6 parses the optional IPv6/PREFIX of a tag.
func parseOverlay6(s string) (netip.Prefix, error) {
	const example = "fd00:198:19::1/64"
	as, bs, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(as)
	switch {
	case s == "":
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay is empty after the second comma; write one, such as %s, or leave out the comma", example)
	case err != nil && strings.Contains(as, "%"):
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q has a zone; write a plain address, such as %s", clip(s), example)
	case err != nil || !a.Is6():
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q is not an IPv6 address; write one, such as %s", clip(s), example)
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q has a zone; write a plain address, such as %s", clip(s), example)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q is IPv4-mapped; write a global or unique local IPv6 address, such as %s", clip(s), example)
	case as != a.String():
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q is not in canonical form; write %s", clip(s), a)
	}
	var kind string
	switch {
	case a.IsUnspecified():
		kind = "the unspecified address"
	case a.IsLoopback():
		kind = "the loopback address"
	case a.IsMulticast():
		kind = "a multicast address"
	case a.IsLinkLocalUnicast():
		kind = "link-local (the TAP has its own, from its MAC)"
	}
	if kind != "" {
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %s is %s; write a global or unique local address, such as %s", a, kind, example)
	}
	if !hasBits {
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q has no prefix length; write it as %s/64", clip(s), a)
	}
	bits, ok := parseBits6(bs)
	if !ok || bits < 1 || bits > 127 {
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %q has prefix length %q; write a number from 1 to 127, such as %s/64", clip(s), clip(bs), a)
	}
	p := netip.PrefixFrom(a, bits)
	if bits < 127 && a == p.Masked().Addr() {
		return netip.Prefix{}, fmt.Errorf("IPv6 overlay %s is the subnet-router anycast address of %s; use a host address, such as %s/%d", p, p.Masked(), p.Masked().Addr().Next(), bits)
	}
	return p, nil
}

// parseBits6 parses an IPv6 prefix length: one to three decimal digits,
// without a sign or a leading zero.
func parseBits6(s string) (int, bool) { return parseLength(s, 3) }

// checkCommunity enforces the community name rules of ParseTag.
func checkCommunity(c string) error {
	switch {
	case c == "":
		return errors.New("tag has an empty community; write a name before the comma, such as demo,198.19.0.1/24")
	case len(c) > MaxCommunityLength:
		return fmt.Errorf("community %q is %d bytes long; use at most %d", clip(c), len(c), MaxCommunityLength)
	}
	for i, r := range c {
		switch {
		case i == 0 && !isAlnum(r):
			return fmt.Errorf("community %q starts with %q; start it with a letter or digit", c, r)
		case !isAlnum(r) && r != '_' && r != '.' && r != '-':
			return fmt.Errorf("community %q contains %q; use only letters, digits, '_', '.' and '-'", c, r)
		}
	}
	return nil
}

// isAlnum reports whether r is an ASCII letter or digit.
func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// parseOverlay parses the IP/PREFIX half of a tag.
func parseOverlay(s string) (netip.Prefix, error) {
	as, bs, hasBits := strings.Cut(s, "/")
	addr, err := parseIPv4("overlay", as, "198.19.0.1")
	if err != nil {
		return netip.Prefix{}, err
	}
	if !hasBits {
		return netip.Prefix{}, fmt.Errorf("overlay %q has no prefix length; write it as %s/24", clip(s), addr)
	}
	bits, ok := parseBits(bs)
	switch {
	case !ok || bits > 32:
		return netip.Prefix{}, fmt.Errorf("overlay %q has prefix length %q; write a number from 1 to 31, such as %s/24", clip(s), clip(bs), addr)
	case bits == 0:
		return netip.Prefix{}, fmt.Errorf("overlay %q has prefix length /0; write the community's subnet length, such as %s/24", clip(s), addr)
	case bits == 32:
		return netip.Prefix{}, fmt.Errorf("overlay %q has prefix length /32, which gives no on-link peers; write the community's subnet length, such as %s/24", clip(s), addr)
	}
	p := netip.PrefixFrom(addr, bits)
	if bits < 31 {
		netw := p.Masked().Addr()
		host := netw.Next()
		if addr == netw {
			return netip.Prefix{}, fmt.Errorf("overlay %s is the network address of %s; use a host address, such as %s/%d", p, p.Masked(), host, bits)
		}
		if addr == broadcast(p) {
			return netip.Prefix{}, fmt.Errorf("overlay %s is the broadcast address of %s; use a host address, such as %s/%d", p, p.Masked(), host, bits)
		}
	}
	return p, nil
}

// parseBits parses a prefix length: one or two decimal digits, without a
// sign or a leading zero.
func parseBits(s string) (int, bool) { return parseLength(s, 2) }

// parseLength parses 1 to most decimal digits without a sign or a leading
// zero.
func parseLength(s string, most int) (int, bool) {
	if len(s) == 0 || len(s) > most || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// broadcast returns the last address of p's network.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// parseIPv4 parses a unicast IPv4 address for the column called what
// ("underlay" or "overlay"); example is a valid address to suggest.
func parseIPv4(what, s, example string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case s == "":
		return netip.Addr{}, fmt.Errorf("%s address is empty; write an IPv4 address, such as %s", what, example)
	case err != nil && strings.Contains(s, "%"):
		return netip.Addr{}, fmt.Errorf("%s address %q has a zone; write a plain IPv4 address, such as %s", what, clip(s), example)
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%s address %q is not an IPv4 address; write four decimal numbers without leading zeros, such as %s", what, clip(s), example)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("%s address %q is IPv4-mapped IPv6; write the plain IPv4 form %s", what, clip(s), a.Unmap())
	case a.Is6():
		return netip.Addr{}, fmt.Errorf("%s address %q is IPv6; meshcast uses IPv4 only, write an address such as %s", what, clip(s), example)
	}
	var kind string
	switch {
	case a.IsUnspecified():
		kind = "the unspecified address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		kind = "the broadcast address"
	case a.IsLoopback():
		kind = "a loopback address"
	case a.IsMulticast():
		kind = "a multicast address"
	default:
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%s address %s is %s; write the instance's unicast address, such as %s", what, a, kind, example)
}

// clip shortens a bad value quoted in an error message, so that a long one
// cannot flood the log.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:60] + "..."
}
