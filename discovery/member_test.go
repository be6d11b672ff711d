package discovery

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/internal/nstest"
)

func TestInCommunity(t *testing.T) {
	all := []Member{
		member("198.18.0.1", "demo,198.19.0.1/24", "f:1"),
		member("198.18.0.2", "other,198.19.0.2/24", "f:2"),
		member("198.18.0.3", "demo,198.19.0.3/24", "f:3"),
		member("198.18.0.4", "Demo,198.19.0.4/24", "f:4"), // names are case-sensitive
	}
	tests := []struct {
		community string
		want      []Member
	}{
		{"demo", []Member{all[0], all[2]}},
		{"other", []Member{all[1]}},
		{"Demo", []Member{all[3]}},
		{"none", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := InCommunity(all, tt.community); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("InCommunity(%q) = %v, want %v", tt.community, got, tt.want)
		}
	}
	if InCommunity(nil, "demo") != nil {
		t.Error("InCommunity(nil) != nil")
	}
}

func TestFindLocal(t *testing.T) {
	ms := []Member{
		member("198.18.0.1", "demo,198.19.0.1/24", "f:1"),
		member("198.18.0.2", "demo,198.19.0.2/24", "f:2"),
		member("198.18.0.3", "demo,198.19.0.3/24", "f:3"),
	}
	other1 := member("198.18.0.1", "other,198.19.0.1/24", "f:9")
	other5 := member("198.18.0.5", "other,198.19.0.5/24", "f:9")
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
	tests := []struct {
		name    string
		members []Member
		local   string // "" for none
		isLocal func(netip.Addr) bool
		wantID  string
		wantErr *LocalError // the error's fields; nil for success
		errMsg  string      // the whole message
	}{
		{name: "by address", members: ms, local: "198.18.0.2", isLocal: addrs("198.18.0.1"), wantID: "f:2"},
		{name: "by mapped address", members: ms, local: "::ffff:198.18.0.3", wantID: "f:3"},
		{
			name: "address not found", members: ms, local: "198.18.0.9", isLocal: addrs("198.18.0.1"),
			wantErr: &LocalError{Err: ErrLocalNotFound, Local: netip.MustParseAddr("198.18.0.9"), Members: 3},
			errMsg:  "local member not found: no member has underlay address 198.18.0.9",
		},
		{
			name: "address twice", members: append(ms[:1:1], ms[0]), local: "198.18.0.1",
			wantErr: &LocalError{Err: ErrLocalAmbiguous, Local: netip.MustParseAddr("198.18.0.1"), Members: 2, Matches: []Member{ms[0], ms[0]}},
			errMsg:  "local member is ambiguous: several members have underlay address 198.18.0.1: f:1 (198.18.0.1), f:1 (198.18.0.1)",
		},
		{
			name: "address in two communities", members: append(ms[:1:1], other1), local: "198.18.0.1",
			wantErr: &LocalError{Err: ErrLocalAmbiguous, Local: netip.MustParseAddr("198.18.0.1"), Members: 2, Matches: []Member{ms[0], other1}},
			errMsg:  "local member is ambiguous: several members have underlay address 198.18.0.1: f:1 (198.18.0.1), f:9 (198.18.0.1) (of communities demo, other)",
		},
		{name: "by interface", members: ms, isLocal: addrs("10.0.0.1", "198.18.0.3"), wantID: "f:3"},
		{
			name: "no interface matches", members: ms, isLocal: addrs("10.0.0.1"),
			wantErr: &LocalError{Err: ErrLocalNotFound, Members: 3},
			errMsg:  "local member not found: none of the 3 members' underlay addresses is assigned to this host",
		},
		{
			name: "several interfaces match", members: ms, isLocal: addrs("198.18.0.1", "198.18.0.3"),
			wantErr: &LocalError{Err: ErrLocalAmbiguous, Members: 3, Matches: []Member{ms[0], ms[2]}},
			errMsg:  "local member is ambiguous: the underlay addresses of several members are assigned to this host: f:1 (198.18.0.1), f:3 (198.18.0.3)",
		},
		{
			name: "interfaces in two communities", members: append(ms[:1:1], other5), isLocal: addrs("198.18.0.1", "198.18.0.5"),
			wantErr: &LocalError{Err: ErrLocalAmbiguous, Members: 2, Matches: []Member{ms[0], other5}},
			errMsg:  "local member is ambiguous: the underlay addresses of several members are assigned to this host: f:1 (198.18.0.1), f:9 (198.18.0.5) (of communities demo, other)",
		},
		{
			name: "no members", isLocal: addrs("198.18.0.1"),
			wantErr: &LocalError{Err: ErrLocalNotFound},
			errMsg:  "local member not found: none of the 0 members' underlay addresses is assigned to this host",
		},
		{
			name: "no address and no isLocal", members: ms,
			wantErr: &LocalError{Err: ErrLocalNotFound, NoHostAddrs: true, Members: 3},
			errMsg:  "local member not found: no underlay address given, and no way to list this host's addresses",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var local netip.Addr
			if tt.local != "" {
				local = netip.MustParseAddr(tt.local)
			}
			got, err := FindLocal(tt.members, local, tt.isLocal)
			if tt.wantErr == nil {
				if err != nil || got.ID != tt.wantID {
					t.Fatalf("FindLocal = %v, %v; want ID %s", got, err, tt.wantID)
				}
				return
			}
			le, ok := errors.AsType[*LocalError](err)
			if !ok || !errors.Is(err, tt.wantErr.Err) {
				t.Fatalf("error = %v, want a *LocalError wrapping %v", err, tt.wantErr.Err)
			}
			if !reflect.DeepEqual(le, tt.wantErr) {
				t.Errorf("error = %+v\nwant    %+v", le, tt.wantErr)
			}
			if le.ManyCommunities() != strings.Contains(tt.name, "two communities") {
				t.Errorf("ManyCommunities() = %v", le.ManyCommunities())
			}
			if err.Error() != tt.errMsg {
				t.Errorf("error = %q\nwant    %q", err, tt.errMsg)
			}
			if strings.Contains(err.Error(), "--") {
				t.Errorf("error %q names a command-line flag", err)
			}
		})
	}
}

// TestLocalAddrs checks LocalAddrs against the addresses this machine's
// interfaces hold, whichever they are: every one of them, also written as
// an IPv4-mapped IPv6 address, is local, and an address from TEST-NET-1 is
// not.
func TestLocalAddrs(t *testing.T) {
	isLocal, err := LocalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, a := range ifAddrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !isLocal(ip) {
			t.Errorf("isLocal(%v) = false for an address of an interface", ip)
		}
		if ip.Is4() && !isLocal(netip.AddrFrom16(ip.As16())) {
			t.Errorf("isLocal(%v) = false for the IPv4-mapped form of %v", netip.AddrFrom16(ip.As16()), ip)
		}
		checked++
	}
	if isLocal(netip.MustParseAddr("192.0.2.77")) { // TEST-NET-1, never assigned
		t.Error("isLocal(192.0.2.77) = true, want false")
	}
	if checked == 0 {
		// Only a network namespace without even lo up has no address;
		// CI always has lo.
		nstest.SkipOrFail(t, "no interface holds an address here, so LocalAddrs cannot be shown to find one")
	}
}

func TestValidate(t *testing.T) {
	a := member("198.18.0.1", "demo,198.19.0.1/24", "i-a")
	b := member("198.18.0.2", "demo,198.19.0.2/24", "i-b")
	c := member("198.18.0.3", "demo,198.19.0.3/24", "i-c")
	tests := []struct {
		name    string
		members []Member
		errSubs []string // all must appear; none means valid
	}{
		{name: "empty"},
		{name: "one", members: []Member{a}},
		{name: "consistent", members: []Member{a, b, c}},
		{name: "/31 pair", members: []Member{
			member("198.18.0.1", "p2p,198.19.0.0/31", "i-a"),
			member("198.18.0.2", "p2p,198.19.0.1/31", "i-b"),
		}},
		{
			name:    "duplicate underlay",
			members: []Member{a, b, member("198.18.0.1", "demo,198.19.0.9/24", "i-z")},
			errSubs: []string{"community demo: i-a and i-z both have underlay 198.18.0.1; give each instance its own address"},
		},
		{
			name:    "duplicate overlay",
			members: []Member{a, b, member("198.18.0.9", "demo,198.19.0.2/24", "i-z")},
			errSubs: []string{"i-b and i-z both have overlay 198.19.0.2"},
		},
		{name: "IPv6 on some members", members: []Member{
			a,
			member("198.18.0.2", "demo,198.19.0.2/24,fd00:198:19::2/64", "i-b"),
			member("198.18.0.3", "demo,198.19.0.3/24,fd00:198:19::3/64", "i-c"),
		}},
		{
			name: "duplicate IPv6 overlay",
			members: []Member{
				member("198.18.0.1", "demo,198.19.0.1/24,fd00:198:19::1/64", "i-a"),
				member("198.18.0.2", "demo,198.19.0.2/24,fd00:198:19::1/64", "i-b"),
			},
			errSubs: []string{"i-a and i-b both have IPv6 overlay fd00:198:19::1"},
		},
		{
			name: "IPv6 overlay in another subnet",
			members: []Member{
				a,
				member("198.18.0.2", "demo,198.19.0.2/24,fd00:198:19::2/64", "i-b"),
				member("198.18.0.3", "demo,198.19.0.3/24,fd00:198:20::3/64", "i-c"),
			},
			errSubs: []string{"i-c has IPv6 overlay fd00:198:20::3/64 outside fd00:198:19::/64, the IPv6 subnet of i-b"},
		},
		{
			name:    "prefix length differs",
			members: []Member{a, b, member("198.18.0.9", "demo,198.19.0.9/16", "i-z")},
			errSubs: []string{"i-z has overlay 198.19.0.9/16 but i-a has 198.19.0.1/24; use the same prefix length /24"},
		},
		{
			name:    "network differs",
			members: []Member{a, member("198.18.0.9", "demo,198.19.1.9/24", "i-z")},
			errSubs: []string{"i-z has overlay 198.19.1.9/24 outside 198.19.0.0/24, the subnet of i-a"},
		},
		{
			name:    "other community",
			members: []Member{a, member("198.18.0.9", "other,198.19.0.9/24", "i-z")},
			errSubs: []string{"i-z is in community other"},
		},
		{
			name:    "invalid member",
			members: []Member{a, {Community: "demo", ID: "i-z"}},
			errSubs: []string{"i-z has no valid underlay or overlay address"},
		},
		{
			name: "every problem reported",
			members: []Member{a, b,
				member("198.18.0.2", "demo,198.19.0.7/24", "i-y"),
				member("198.18.0.8", "demo,198.19.0.8/25", "i-z"),
			},
			errSubs: []string{"i-b and i-y both have underlay", "i-z has overlay 198.19.0.8/25"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.members)
			if len(tt.errSubs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want error containing %q", tt.errSubs)
			}
			for _, s := range tt.errSubs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}
