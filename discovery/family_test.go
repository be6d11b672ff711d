package discovery

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func TestParseFamily(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Family
	}{{"4", Family4}, {"6", Family6}, {"auto", FamilyAuto}} {
		got, err := ParseFamily(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseFamily(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
	for _, in := range []string{"", "ipv4", "IPv6", "Auto", "46", " 4", "4 ", "inet6", "both"} {
		_, err := ParseFamily(in)
		if err == nil || !strings.Contains(err.Error(), "write 4, 6 or auto") {
			t.Errorf("ParseFamily(%q) = %v, want an error saying 4, 6 or auto", in, err)
		}
	}
	if FamilyAuto != 0 {
		t.Error("FamilyAuto is not the zero value")
	}
	if s := Family(9).String(); s != "Family(9)" {
		t.Errorf("Family(9).String() = %q", s)
	}
}

// Addresses of the stacks in the Reach tests: self is .1, the peer .2.
var (
	self4 = netip.MustParseAddr("198.18.0.1")
	self6 = netip.MustParseAddr("fd00:198:18::1")
	peer4 = netip.MustParseAddr("198.18.0.2")
	peer6 = netip.MustParseAddr("fd00:198:18::2")
)

// stack builds a member that is IPv4-only ("4"), IPv6-only ("6") or
// dual-stack ("dual"), as EC2 discovery makes them.
func stack(kind, id string, v4, v6 netip.Addr) Member {
	m := Member{ID: id, Community: "demo", Overlay: netip.MustParsePrefix("198.19.0.9/24")}
	switch kind {
	case "4":
		m.Underlay = v4
	case "6":
		m.Underlay = v6
	case "dual":
		m.Underlay, m.Underlay6 = v4, v6
	default:
		panic(kind)
	}
	return m
}

func TestUnderlays(t *testing.T) {
	for _, tt := range []struct {
		m      Member
		v4, v6 netip.Addr
	}{
		{stack("4", "a", self4, self6), self4, netip.Addr{}},
		{stack("6", "a", self4, self6), netip.Addr{}, self6},
		{stack("dual", "a", self4, self6), self4, self6},
		{Member{}, netip.Addr{}, netip.Addr{}},
		{Member{Underlay: netip.MustParseAddr("::ffff:198.18.0.1")}, self4, netip.Addr{}},
	} {
		if v4, v6 := tt.m.Underlays(); v4 != tt.v4 || v6 != tt.v6 {
			t.Errorf("%+v.Underlays() = %v, %v; want %v, %v", tt.m, v4, v6, tt.v4, tt.v6)
		}
	}
}

// TestReachMatrix tries every pair of IPv4-only, IPv6-only and dual-stack
// self and peer under each family.
func TestReachMatrix(t *testing.T) {
	const (
		v4   = "4"
		v6   = "6"
		dual = "dual"
	)
	tests := []struct {
		self, peer string
		f          Family
		to         netip.Addr // the address tunnelled to; invalid when left out
		reason     string
		detail     string // a part of the problem's Detail
	}{
		// Family 4: IPv4 on both ends, or nothing.
		{v4, v4, Family4, peer4, "", ""},
		{v4, v6, Family4, netip.Addr{}, ReasonNoIPv4Underlay, "peer has no IPv4 underlay address (it has only IPv6 (fd00:198:18::2)) and the underlay family is 4; give it an IPv4 address"},
		{v4, dual, Family4, peer4, "", ""},
		{v6, v4, Family4, netip.Addr{}, ReasonNoIPv4Underlay, "this node (self) has no IPv4 underlay address and the underlay family is 4; give it one"},
		{v6, v6, Family4, netip.Addr{}, ReasonNoIPv4Underlay, "this node (self) has no IPv4 underlay address"},
		{v6, dual, Family4, netip.Addr{}, ReasonNoIPv4Underlay, "this node (self) has no IPv4 underlay address"},
		{dual, v4, Family4, peer4, "", ""},
		{dual, v6, Family4, netip.Addr{}, ReasonNoIPv4Underlay, "peer has no IPv4 underlay address, only IPv6 fd00:198:18::2, and the underlay family is 4; give it an IPv4 address, or use --underlay-family auto"},
		{dual, dual, Family4, peer4, "", ""},

		// Family 6: IPv6 on both ends, or nothing.
		{v4, v4, Family6, netip.Addr{}, ReasonNoIPv6Underlay, "this node (self) has no IPv6 underlay address and the underlay family is 6; give it one"},
		{v4, v6, Family6, netip.Addr{}, ReasonNoIPv6Underlay, "this node (self) has no IPv6 underlay address"},
		{v4, dual, Family6, netip.Addr{}, ReasonNoIPv6Underlay, "this node (self) has no IPv6 underlay address"},
		{v6, v4, Family6, netip.Addr{}, ReasonNoIPv6Underlay, "peer has no IPv6 underlay address (it has only IPv4 (198.18.0.2)) and the underlay family is 6; give it an IPv6 address"},
		{v6, v6, Family6, peer6, "", ""},
		{v6, dual, Family6, peer6, "", ""},
		{dual, v4, Family6, netip.Addr{}, ReasonNoIPv6Underlay, "peer has no IPv6 underlay address, only IPv4 198.18.0.2, and the underlay family is 6; give it an IPv6 address, or use --underlay-family auto"},
		{dual, v6, Family6, peer6, "", ""},
		{dual, dual, Family6, peer6, "", ""},

		// Auto: IPv4 where both have it, else IPv6 where both have it.
		{v4, v4, FamilyAuto, peer4, "", ""},
		{v4, v6, FamilyAuto, netip.Addr{}, ReasonNoCommonFamily, "peer has only IPv6 (fd00:198:18::2) and this node (self) has only IPv4 (198.18.0.1): they share no address family, so no tunnel can join them; give one of them an address of the other family (dual-stack)"},
		{v4, dual, FamilyAuto, peer4, "", ""},
		{v6, v4, FamilyAuto, netip.Addr{}, ReasonNoCommonFamily, "peer has only IPv4 (198.18.0.2) and this node (self) has only IPv6 (fd00:198:18::1): they share no address family"},
		{v6, v6, FamilyAuto, peer6, "", ""},
		{v6, dual, FamilyAuto, peer6, "", ""},
		{dual, v4, FamilyAuto, peer4, "", ""},
		{dual, v6, FamilyAuto, peer6, "", ""},
		{dual, dual, FamilyAuto, peer4, "", ""},
	}
	for _, tt := range tests {
		name := "self " + tt.self + ", peer " + tt.peer + ", family " + tt.f.String()
		t.Run(name, func(t *testing.T) {
			self := stack(tt.self, "self", self4, self6)
			peer := stack(tt.peer, "peer", peer4, peer6)
			peers, problems := Reach(self, []Member{self, peer}, tt.f)
			if !tt.to.IsValid() {
				if len(peers) != 0 || len(problems) != 1 {
					t.Fatalf("peers %v, problems %v; want the peer left out", peers, problems)
				}
				p := problems[0]
				if p.ID != "peer" || p.Reason != tt.reason || !strings.Contains(p.Detail, tt.detail) || !strings.Contains(p.Detail, "; ") {
					t.Errorf("problem %+v\nwant reason %s and a detail containing %q", p, tt.reason, tt.detail)
				}
				return
			}
			want := peer
			want.Underlay, want.Underlay6 = tt.to, netip.Addr{}
			if len(problems) != 0 || !reflect.DeepEqual(peers, []Member{want}) {
				t.Fatalf("peers %v, problems %v; want %v", peers, problems, want)
			}
		})
	}
}

// TestReach checks what the matrix does not: self is skipped by ID or by
// address, the order stays, and the input is not modified.
func TestReach(t *testing.T) {
	self := stack("dual", "i-self", self4, self6)
	a := stack("4", "i-a", netip.MustParseAddr("198.18.0.10"), netip.Addr{})
	b := stack("6", "i-b", netip.Addr{}, netip.MustParseAddr("fd00:198:18::11"))
	c := stack("dual", "i-c", netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("fd00:198:18::12"))
	sameID := stack("4", "i-self", netip.MustParseAddr("198.18.0.99"), netip.Addr{})
	same6 := stack("6", "f:7", netip.Addr{}, self6) // self as an inventory line would give it
	members := []Member{c, sameID, b, self, a, same6}
	before := append([]Member(nil), members...)
	peers, problems := Reach(self, members, FamilyAuto)
	var got []string
	for _, p := range peers {
		got = append(got, p.ID+" "+p.Underlay.String())
		if p.Underlay6.IsValid() {
			t.Errorf("%s keeps Underlay6 %v", p.ID, p.Underlay6)
		}
	}
	if want := []string{"i-c 198.18.0.12", "i-b fd00:198:18::11", "i-a 198.18.0.10"}; !reflect.DeepEqual(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
	if len(problems) != 0 {
		t.Errorf("problems %v", problems)
	}
	if !reflect.DeepEqual(members, before) {
		t.Error("Reach modified its input")
	}

	// Several left out, in order; an ID-less self is named by its address.
	anon := stack("4", "", self4, netip.Addr{})
	peers, problems = Reach(anon, []Member{b, a, stack("6", "i-d", netip.Addr{}, netip.MustParseAddr("fd00:198:18::13"))}, FamilyAuto)
	if len(peers) != 1 || peers[0].ID != "i-a" || len(problems) != 2 || problems[0].ID != "i-b" || problems[1].ID != "i-d" {
		t.Fatalf("peers %v, problems %v", peers, problems)
	}
	if !strings.Contains(problems[0].Detail, "this node (only IPv4 (198.18.0.1))") {
		t.Errorf("detail %q does not name this node by its address", problems[0].Detail)
	}
	if peers, problems := Reach(self, nil, Family6); peers != nil || problems != nil {
		t.Errorf("Reach(nil) = %v, %v", peers, problems)
	}
}

func TestLocalUnderlays(t *testing.T) {
	none := netip.Addr{}
	tests := []struct {
		kind   string
		f      Family
		v4, v6 netip.Addr
		err    string
	}{
		{"4", Family4, self4, none, ""},
		{"4", Family6, none, none, "this node (self) has no IPv6 underlay address and the underlay family is 6; give it one, or use --underlay-family 4 or auto"},
		{"4", FamilyAuto, self4, none, ""},
		{"6", Family4, none, none, "this node (self) has no IPv4 underlay address and the underlay family is 4; give it one, or use --underlay-family 6 or auto"},
		{"6", Family6, none, self6, ""},
		{"6", FamilyAuto, none, self6, ""},
		{"dual", Family4, self4, none, ""},
		{"dual", Family6, none, self6, ""},
		{"dual", FamilyAuto, self4, self6, ""},
	}
	for _, tt := range tests {
		v4, v6, err := LocalUnderlays(stack(tt.kind, "self", self4, self6), tt.f)
		if v4 != tt.v4 || v6 != tt.v6 || (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("LocalUnderlays(%s, %v) = %v, %v, %v; want %v, %v, %q", tt.kind, tt.f, v4, v6, err, tt.v4, tt.v6, tt.err)
		}
	}
	if _, _, err := LocalUnderlays(Member{ID: "x"}, FamilyAuto); err == nil || !strings.Contains(err.Error(), "has no underlay address; give it an IPv4 or IPv6 address") {
		t.Errorf("no address: %v", err)
	}
}

func TestValidateIPv6Underlays(t *testing.T) {
	a := member("198.18.0.1", "demo,198.19.0.1/24", "i-a")
	b6 := member("fd00:198:18::2", "demo,198.19.0.2/24", "i-b")
	c := member("198.18.0.3", "demo,198.19.0.3/24", "i-c")
	c.Underlay6 = netip.MustParseAddr("fd00:198:18::3")
	for _, tt := range []struct {
		name    string
		members []Member
		errSubs []string
	}{
		{name: "IPv4, IPv6 and dual-stack", members: []Member{a, b6, c}},
		{name: "IPv6 only", members: []Member{b6, member("fd00:198:18::4", "demo,198.19.0.4/24", "f:4")}},
		{
			name:    "Underlay6 of one is the Underlay of another",
			members: []Member{a, c, member("fd00:198:18::3", "demo,198.19.0.9/24", "i-z")},
			errSubs: []string{"i-c and i-z both have underlay fd00:198:18::3; give each instance its own address"},
		},
		{
			name:    "Underlay6 twice",
			members: []Member{c, func() Member { m := a; m.Underlay6 = c.Underlay6; return m }()},
			errSubs: []string{"i-c and i-a both have underlay fd00:198:18::3"},
		},
		{
			name:    "Underlay6 beside an IPv6 Underlay",
			members: []Member{func() Member { m := b6; m.Underlay6 = netip.MustParseAddr("fd00:198:18::9"); return m }()},
			errSubs: []string{"i-b has underlays fd00:198:18::2 and fd00:198:18::9; a second underlay address must be IPv6 beside an IPv4 one"},
		},
		{
			name:    "IPv4 Underlay6",
			members: []Member{func() Member { m := a; m.Underlay6 = netip.MustParseAddr("198.18.0.9"); return m }()},
			errSubs: []string{"i-a has underlays 198.18.0.1 and 198.18.0.9"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.members)
			if len(tt.errSubs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			for _, s := range tt.errSubs {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("Validate = %v, want it to contain %q", err, s)
				}
			}
		})
	}
}

// TestFindLocalIPv6 finds a member by an IPv6 address: its Underlay or
// its Underlay6, given or assigned to the host.
func TestFindLocalIPv6(t *testing.T) {
	a := member("198.18.0.1", "demo,198.19.0.1/24", "i-a")
	b6 := member("fd00:198:18::2", "demo,198.19.0.2/24", "i-b")
	c := member("198.18.0.3", "demo,198.19.0.3/24", "i-c")
	c.Underlay6 = netip.MustParseAddr("fd00:198:18::3")
	ms := []Member{a, b6, c}
	for local, want := range map[string]string{"fd00:198:18::2": "i-b", "fd00:198:18::3": "i-c", "198.18.0.3": "i-c"} {
		got, err := FindLocal(ms, netip.MustParseAddr(local), nil)
		if err != nil || got.ID != want {
			t.Errorf("FindLocal(%s) = %v, %v; want %s", local, got, err, want)
		}
		got, err = FindLocal(ms, netip.Addr{}, func(x netip.Addr) bool { return x == netip.MustParseAddr(local) })
		if err != nil || got.ID != want {
			t.Errorf("FindLocal by host address %s = %v, %v; want %s", local, got, err, want)
		}
	}
	_, err := FindLocal(ms, netip.MustParseAddr("fd00:198:18::9"), nil)
	if !errors.Is(err, ErrLocalNotFound) || !strings.Contains(err.Error(), "no member has underlay address fd00:198:18::9") {
		t.Errorf("unknown IPv6 address: %v", err)
	}
	_, err = FindLocal([]Member{c, c}, netip.MustParseAddr("fd00:198:18::3"), nil)
	if !errors.Is(err, ErrLocalAmbiguous) || !strings.Contains(err.Error(), "i-c (198.18.0.3, fd00:198:18::3)") {
		t.Errorf("ambiguous IPv6 address: %v", err)
	}
}

// TestUseDualStack: only an IPv6-only instance whose configuration names
// no endpoint and did not choose gets the dual-stack EC2 endpoint.
func TestUseDualStack(t *testing.T) {
	v4 := Self{IP: netip.MustParseAddr("198.18.0.1"), IP6: netip.MustParseAddr("fd00:198:18::1")}
	v6 := Self{IP6: netip.MustParseAddr("fd00:198:18::1")}
	endpoint := "http://[::1]:8080"
	for _, c := range []struct {
		name string
		self Self
		o    ec2.Options
		want bool
	}{
		{"IPv6-only", v6, ec2.Options{}, true},
		{"dual-stack", v4, ec2.Options{}, false},
		{"IPv6-only, endpoint named", v6, ec2.Options{BaseEndpoint: &endpoint}, false},
		{"IPv6-only, dual-stack refused", v6, ec2.Options{EndpointOptions: ec2.EndpointResolverOptions{UseDualStackEndpoint: aws.DualStackEndpointStateDisabled}}, false},
	} {
		if got := useDualStack(c.self, &c.o); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
