package discovery

import (
	"net/netip"
	"strings"
	"testing"
)

// tagTests are the ParseTag cases; FuzzParseTag is seeded from them. For a
// valid tag, want is the expected overlay prefix; otherwise errSub is a
// substring the error message must contain.
var tagTests = []struct {
	in        string
	community string
	want      string
	want6     string // the IPv6 overlay, if any
	errSub    string
}{
	// Valid.
	{in: "demo,198.19.0.1/24", community: "demo", want: "198.19.0.1/24"},
	{in: "demo,198.19.0.1/24,fd00:198:19::1/64", community: "demo", want: "198.19.0.1/24", want6: "fd00:198:19::1/64"},
	{in: "demo,198.19.0.1/24,2001:db8::7/127", community: "demo", want: "198.19.0.1/24", want6: "2001:db8::7/127"},
	{in: "demo,198.19.0.1/24,2001:db8::/127", community: "demo", want: "198.19.0.1/24", want6: "2001:db8::/127"},
	// IPv6 overlay errors.
	{in: "demo,198.19.0.1/24,", errSub: "IPv6 overlay is empty after the second comma"},
	{in: "demo,198.19.0.1/24,fd00:198:19::1", errSub: "has no prefix length; write it as fd00:198:19::1/64"},
	{in: "demo,198.19.0.1/24,FD00:198:19::1/64", errSub: "not in canonical form; write fd00:198:19::1"},
	{in: "demo,198.19.0.1/24,fd00:198:19:0:0:0:0:1/64", errSub: "not in canonical form; write fd00:198:19::1"},
	{in: "demo,198.19.0.1/24,fe80::1/64", errSub: "is link-local"},
	{in: "demo,198.19.0.1/24,ff0e::1/64", errSub: "is a multicast address"},
	{in: "demo,198.19.0.1/24,::1/64", errSub: "is the loopback address"},
	{in: "demo,198.19.0.1/24,::/64", errSub: "is the unspecified address"},
	{in: "demo,198.19.0.1/24,::ffff:198.19.0.1/64", errSub: "is IPv4-mapped"},
	{in: "demo,198.19.0.1/24,fd00::1%eth0/64", errSub: "has a zone"},
	{in: "demo,198.19.0.1/24,198.19.0.2/24", errSub: "is not an IPv6 address"},
	{in: "demo,198.19.0.1/24,fd00::1/128", errSub: "write a number from 1 to 127"},
	{in: "demo,198.19.0.1/24,fd00::1/0", errSub: "write a number from 1 to 127"},
	{in: "demo,198.19.0.1/24,fd00::1/064", errSub: "write a number from 1 to 127"},
	{in: "demo,198.19.0.1/24,fd00::/64", errSub: "subnet-router anycast address of fd00::/64; use a host address, such as fd00::1/64"},
	{in: "demo,198.19.0.1/24,fd00::1/64,x", errSub: "has 3 commas"},
	{in: "  demo,198.19.0.1/24\t\n", community: "demo", want: "198.19.0.1/24"},
	{in: "a,10.0.0.1/8", community: "a", want: "10.0.0.1/8"},
	{in: "0,10.0.0.1/8", community: "0", want: "10.0.0.1/8"},
	{in: "Prod_east-1.a,198.19.255.254/16", community: "Prod_east-1.a", want: "198.19.255.254/16"},
	{in: strings.Repeat("x", 63) + ",198.19.0.1/24", community: strings.Repeat("x", 63), want: "198.19.0.1/24"},
	{in: "demo,198.19.0.1/30", community: "demo", want: "198.19.0.1/30"},
	{in: "demo,198.19.0.2/30", community: "demo", want: "198.19.0.2/30"},
	{in: "demo,198.19.0.0/31", community: "demo", want: "198.19.0.0/31"}, // RFC 3021: both addresses usable
	{in: "demo,198.19.0.1/31", community: "demo", want: "198.19.0.1/31"},
	{in: "demo,1.2.3.4/1", community: "demo", want: "1.2.3.4/1"},
	{in: "demo,169.254.0.5/16", community: "demo", want: "169.254.0.5/16"},

	// Shape.
	{in: "", errSub: "tag is empty"},
	{in: "   ", errSub: "tag is empty"},
	{in: "demo 198.19.0.1/24", errSub: "contains whitespace"},
	{in: "demo, 198.19.0.1/24", errSub: "contains whitespace"},
	{in: "demo,198.19.0.1 /24", errSub: "contains whitespace"},
	{in: "demo,198.19.0.1/\u00a024", errSub: "contains whitespace"},
	{in: "demo198.19.0.1/24", errSub: "has no comma"},
	{in: "demo,198.19.0.1/24,x", errSub: "IPv6 overlay \"x\" is not an IPv6 address"},
	{in: ",,", errSub: "empty community"},

	// Community.
	{in: ",198.19.0.1/24", errSub: "empty community"},
	{in: strings.Repeat("x", 64) + ",198.19.0.1/24", errSub: "is 64 bytes long; use at most 63"},
	{in: "-demo,198.19.0.1/24", errSub: "start it with a letter or digit"},
	{in: "_demo,198.19.0.1/24", errSub: "start it with a letter or digit"},
	{in: ".demo,198.19.0.1/24", errSub: "start it with a letter or digit"},
	{in: "de/mo,198.19.0.1/24", errSub: `contains '/'`},
	{in: "démo,198.19.0.1/24", errSub: `contains 'é'; use only letters, digits`},
	{in: "ébc,198.19.0.1/24", errSub: `starts with 'é'`},
	{in: "de#mo,198.19.0.1/24", errSub: `contains '#'`},

	// Overlay address.
	{in: "demo,", errSub: "no overlay address"},
	{in: "demo,/24", errSub: "overlay address is empty"},
	{in: "demo,198.19.0.1", errSub: `overlay "198.19.0.1" has no prefix length; write it as 198.19.0.1/24`},
	{in: "demo,198.19.0/24", errSub: "not an IPv4 address"},
	{in: "demo,198.19.0.256/24", errSub: "not an IPv4 address"},
	{in: "demo,198.019.0.1/24", errSub: "without leading zeros"},
	{in: "demo,host.example/24", errSub: "not an IPv4 address"},
	{in: "demo,2001:db8::1/64", errSub: "is IPv6; meshcast uses IPv4 only"},
	{in: "demo,fe80::1%eth0/64", errSub: "is IPv6"},
	{in: "demo,::ffff:198.19.0.1/24", errSub: "IPv4-mapped IPv6; write the plain IPv4 form 198.19.0.1"},
	{in: "demo,198.19.0.1%eth0/24", errSub: "has a zone"},
	{in: "demo,0.0.0.0/8", errSub: "unspecified address"},
	{in: "demo,127.0.0.1/8", errSub: "loopback address"},
	{in: "demo,239.1.2.3/24", errSub: "multicast address"},
	{in: "demo,224.0.0.1/4", errSub: "multicast address"},
	{in: "demo,255.255.255.255/24", errSub: "the broadcast address; write"},

	// Prefix length.
	{in: "demo,198.19.0.1/", errSub: `prefix length ""; write a number from 1 to 31`},
	{in: "demo,198.19.0.1/0", errSub: "prefix length /0"},
	{in: "demo,198.19.0.1/32", errSub: "/32, which gives no on-link peers"},
	{in: "demo,198.19.0.1/33", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/024", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/08", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/+8", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/-1", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/24/8", errSub: "write a number from 1 to 31"},
	{in: "demo,198.19.0.1/255.255.255.0", errSub: "write a number from 1 to 31"},

	// Host part.
	{in: "demo,198.19.0.0/24", errSub: "network address of 198.19.0.0/24; use a host address, such as 198.19.0.1/24"},
	{in: "demo,198.19.0.255/24", errSub: "broadcast address of 198.19.0.0/24; use a host address, such as 198.19.0.1/24"},
	{in: "demo,198.19.0.3/30", errSub: "broadcast address of 198.19.0.0/30"},
	{in: "demo,198.19.0.4/30", errSub: "network address of 198.19.0.4/30"},
	{in: "demo,128.0.0.0/1", errSub: "network address of 128.0.0.0/1"},
}

func TestParseTag(t *testing.T) {
	for _, tt := range tagTests {
		tag, err := ParseTag(tt.in)
		c, p := tag.Community, tag.Overlay
		if tt.errSub != "" {
			if err == nil {
				t.Errorf("ParseTag(%q) = %q, %v; want error containing %q", tt.in, c, p, tt.errSub)
			} else if !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("ParseTag(%q) error = %q; want it to contain %q", tt.in, err, tt.errSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTag(%q) error = %v", tt.in, err)
			continue
		}
		if want := netip.MustParsePrefix(tt.want); c != tt.community || p != want {
			t.Errorf("ParseTag(%q) = %q, %v; want %q, %v", tt.in, c, p, tt.community, want)
		}
		var want6 netip.Prefix
		if tt.want6 != "" {
			want6 = netip.MustParsePrefix(tt.want6)
		}
		if tag.Overlay6 != want6 {
			t.Errorf("ParseTag(%q) IPv6 overlay %v, want %v", tt.in, tag.Overlay6, want6)
		}
	}
}

// Every error says what to do about it.
func TestParseTagErrorsSuggestFix(t *testing.T) {
	for _, tt := range tagTests {
		if _, err := ParseTag(tt.in); err != nil && !strings.Contains(err.Error(), "; ") {
			t.Errorf("ParseTag(%q) error %q has no suggestion after \"; \"", tt.in, err)
		}
	}
}
