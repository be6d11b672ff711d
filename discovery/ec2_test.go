package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/meshcast/meshcast/internal/fakeaws"
)

const testRegion = "us-east-1"

func instID(k int) string { return fmt.Sprintf("i-%017x", k) }

func instance(k int, tag string) fakeaws.Instance {
	return fakeaws.Instance{
		ID:        instID(k),
		PrivateIP: netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)}),
		VPC:       "vpc-0123456789abcdef0",
		Tags:      map[string]string{"multicast": tag},
	}
}

// ec2Rig serves a fake EC2 and IMDS on loopback and points the real SDK at
// it through its standard variables. IMDS speaks for instance 1.
func ec2Rig(t *testing.T) (*fakeaws.Server, *EC2) {
	t.Helper()
	fake := fakeaws.New(testRegion)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	fake.SetIdentity(func(*http.Request) string { return instID(1) })
	for _, kv := range [][2]string{
		{"AWS_ENDPOINT_URL_EC2", srv.URL},
		{"AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL},
		{"AWS_REGION", testRegion},
		{"AWS_ACCESS_KEY_ID", "AKIDMESHCASTTEST"},
		{"AWS_SECRET_ACCESS_KEY", "secret"},
		{"AWS_CONFIG_FILE", "/dev/null"},
		{"AWS_SHARED_CREDENTIALS_FILE", "/dev/null"},
		{"AWS_EC2_METADATA_DISABLED", ""},
		{"AWS_PROFILE", ""},
		{"AWS_CA_BUNDLE", ""},
	} {
		t.Setenv(kv[0], kv[1])
	}
	fake.Put(instance(1, "demo,198.19.0.1/24"))
	e, err := NewEC2(context.Background(), EC2Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return fake, e
}

func memberIDs(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

func list(t *testing.T, e *EC2) []string {
	t.Helper()
	m, err := e.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return memberIDs(m)
}

func TestEC2Self(t *testing.T) {
	_, e := ec2Rig(t)
	s := e.Self()
	if s.ID != instID(1) || s.IP != netip.MustParseAddr("198.18.0.1") || s.VPC != "vpc-0123456789abcdef0" || s.Region != testRegion {
		t.Fatalf("self %+v", s)
	}
}

func TestEC2Pagination(t *testing.T) {
	fake, e := ec2Rig(t)
	for k := 2; k <= 7; k++ {
		fake.Put(instance(k, fmt.Sprintf("demo,198.19.0.%d/24", k)))
	}
	var mu sync.Mutex
	var forms []url.Values
	fake.Hook(func(action string, form url.Values) {
		mu.Lock()
		forms = append(forms, form)
		mu.Unlock()
	})
	fake.SetPageSize(3)
	before := fake.Calls()
	got := list(t, e)
	if len(got) != 7 {
		t.Fatalf("listed %v, want 7 instances", got)
	}
	if calls := fake.Calls() - before; calls != 3 {
		t.Fatalf("%d DescribeInstances calls, want 3 pages", calls)
	}
	// The server-side filters: tag key, state running, own VPC.
	want := map[string]string{"tag-key": "multicast", "instance-state-name": "running", "vpc-id": "vpc-0123456789abcdef0"}
	f := forms[0]
	for i := 1; i <= 3; i++ {
		name := f.Get(fmt.Sprintf("Filter.%d.Name", i))
		if v := f.Get(fmt.Sprintf("Filter.%d.Value.1", i)); want[name] != v {
			t.Errorf("filter %s = %q, want %q", name, v, want[name])
		}
		delete(want, name)
	}
	if len(want) != 0 {
		t.Errorf("filters missing: %v", want)
	}
}

func TestEC2Problems(t *testing.T) {
	fake, e := ec2Rig(t)
	fake.Put(instance(2, "demo,198.19.0.2/24"))
	fake.Put(instance(3, "demo,198.19.0.3"))          // no prefix length
	fake.Put(instance(4, "demo,198.19.0.9/24"))       // claims .9 ...
	fake.Put(instance(5, "demo,198.19.0.9/24"))       // ... as does this one
	fake.Put(instance(6, "demo,198.19.5.6/16"))       // another prefix than self's
	fake.Put(instance(7, "other,198.19.0.7/24"))      // another community: listed
	fake.Put(instance(8, "demo,198.19.0.8/24 extra")) // malformed
	noIP := instance(9, "demo,198.19.0.99/24")
	noIP.PrivateIP = netip.Addr{}
	fake.Put(noIP)
	got := list(t, e)
	if want := []string{instID(1), instID(2), instID(7)}; !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	reasons := map[string]string{}
	for _, p := range e.Problems() {
		reasons[p.ID] = p.Reason
	}
	want := map[string]string{
		instID(3): "malformed_tag", instID(4): "duplicate_overlay", instID(5): "duplicate_overlay",
		instID(6): "prefix_mismatch", instID(8): "malformed_tag", instID(9): "no_private_ip",
	}
	for id, r := range want {
		if reasons[id] != r {
			t.Errorf("%s: reason %q, want %q (all: %v)", id, reasons[id], r, reasons)
		}
	}
	c := e.Counts()
	if c["malformed_tag"] != 2 || c["duplicate_overlay"] != 2 || c["prefix_mismatch"] != 1 || c["no_private_ip"] != 1 {
		t.Fatalf("counts %v", c)
	}
	// Fixing a tag brings the instance in at the next listing.
	fake.Put(instance(3, "demo,198.19.0.3/24"))
	if got := list(t, e); !slices.Contains(got, instID(3)) {
		t.Fatalf("fixed instance not listed: %v", got)
	}
}

func TestEC2Removal(t *testing.T) {
	fake, e := ec2Rig(t)
	for k := 2; k <= 4; k++ {
		fake.Put(instance(k, fmt.Sprintf("demo,198.19.0.%d/24", k)))
	}
	if got := list(t, e); len(got) != 4 {
		t.Fatal(got)
	}
	// Terminated or stopped: gone at the next listing.
	fake.SetState(instID(2), "terminated")
	fake.SetState(instID(3), "stopped")
	if got := list(t, e); !slices.Equal(got, []string{instID(1), instID(4)}) {
		t.Fatalf("after terminate and stop: %v", got)
	}
	// Vanished without a state: kept for one listing, gone at the second.
	fake.Remove(instID(4))
	if got := list(t, e); !slices.Equal(got, []string{instID(1), instID(4)}) {
		t.Fatalf("first listing without it: %v", got)
	}
	if got := list(t, e); !slices.Equal(got, []string{instID(1)}) {
		t.Fatalf("second listing without it: %v", got)
	}
	// A new instance appears at the next listing.
	fake.Put(instance(5, "demo,198.19.0.5/24"))
	if got := list(t, e); !slices.Equal(got, []string{instID(1), instID(5)}) {
		t.Fatalf("new instance: %v", got)
	}
}

// TestEC2Throttling runs the reconciler against an API that throttles
// several calls in a row: the peer set stays, and the retries back off.
func TestEC2Throttling(t *testing.T) {
	fake, e := ec2Rig(t)
	fake.Put(instance(2, "demo,198.19.0.2/24"))
	var mu sync.Mutex
	var applied [][]string
	var at []time.Time
	fake.Hook(func(string, url.Values) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	r := &Reconciler{Source: e, Interval: 5 * time.Second, Backoff: 100 * time.Millisecond, Logger: quiet(),
		Rand: func() float64 { return 0.999 },
		Apply: func(m []Member) error {
			mu.Lock()
			applied = append(applied, memberIDs(m))
			mu.Unlock()
			return nil
		}}
	if err := r.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	fake.Throttle(4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mu.Lock()
	at = at[:0]
	mu.Unlock()
	go r.Run(ctx)
	for {
		mu.Lock()
		n := len(applied)
		mu.Unlock()
		if n == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	st := r.Status()
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 2 || !slices.Equal(applied[0], applied[1]) {
		t.Fatalf("applied %v: the peer set changed or never came back", applied)
	}
	if st.Throttled != 4 || st.Failures != 4 {
		t.Fatalf("status %+v, want 4 throttled failures", st)
	}
	// Calls: 4 throttled, then the successful listing. The gaps double.
	if len(at) < 5 {
		t.Fatalf("%d calls", len(at))
	}
	var gaps []time.Duration
	for i := 1; i < 5; i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	t.Logf("gaps between calls while throttled: %v", gaps)
	for i := 1; i < len(gaps); i++ {
		if gaps[i] < gaps[i-1]*3/2 {
			t.Errorf("backoff did not grow: %v", gaps)
		}
	}
}

func TestEC2ServerErrors(t *testing.T) {
	fake, e := ec2Rig(t)
	fake.Fail(503, 1)
	_, err := e.Members(context.Background())
	if err == nil || IsThrottled(err) {
		t.Fatalf("503: err %v", err)
	}
	fake.Fail(500, 1)
	if _, err := e.Members(context.Background()); err == nil {
		t.Fatal("500 not reported")
	}
	if got := list(t, e); len(got) != 1 {
		t.Fatalf("after errors: %v", got)
	}
}

func TestEC2NoIMDS(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := NewEC2(ctx, EC2Config{Logger: quiet()}); err == nil {
		t.Fatal("no IMDS, no error")
	}
}

// TestEC2Overlay6 lists instances whose tags carry IPv6 overlay addresses:
// each member keeps its own, and two that claim the same one are left out
// as duplicate_overlay.
func TestEC2Overlay6(t *testing.T) {
	fake, e := ec2Rig(t)
	fake.Put(instance(2, "demo,198.19.0.2/24,fd00:198:19::2/64"))
	fake.Put(instance(3, "demo,198.19.0.3/24,fd00:198:19::9/64")) // claims ::9 ...
	fake.Put(instance(4, "demo,198.19.0.4/24,fd00:198:19::9/64")) // ... as does this one
	ms, err := e.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
		if m.ID == instID(2) && m.Overlay6 != netip.MustParsePrefix("fd00:198:19::2/64") {
			t.Errorf("%s: IPv6 overlay %v", m.ID, m.Overlay6)
		}
	}
	if want := []string{instID(1), instID(2)}; !slices.Equal(ids, want) {
		t.Fatalf("members %v, want %v", ids, want)
	}
	if c := e.Counts(); c["duplicate_overlay"] != 2 {
		t.Fatalf("counts %v, want 2 duplicate_overlay", c)
	}
}

// Addresses of the IPv6 EC2 tests.
func ip6(k int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 14: byte(k >> 8), 15: byte(k)})
}

// dualStack and ipv6Only are instance(k, tag) in a dual-stack or an
// IPv6-only subnet: with the IPv6 address fd00:198:18::K, and without a
// private IPv4 address for the latter.
func dualStack(k int, tag string) fakeaws.Instance {
	in := instance(k, tag)
	in.IPv6 = []netip.Addr{ip6(k)}
	return in
}

func ipv6Only(k int, tag string) fakeaws.Instance {
	in := dualStack(k, tag)
	in.PrivateIP = netip.Addr{}
	return in
}

func byID(ms []Member) map[string]Member {
	out := map[string]Member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// TestEC2IPv6Members lists dual-stack, IPv6-only and address-less
// instances: each gets the underlay addresses it has, and one with none
// that is usable is left out as no_private_ip.
func TestEC2IPv6Members(t *testing.T) {
	fake, e := ec2Rig(t)
	fake.Put(dualStack(2, "demo,198.19.0.2/24"))
	fake.Put(ipv6Only(3, "demo,198.19.0.3/24,fd00:198:19::3/64"))
	primary := ipv6Only(4, "demo,198.19.0.4/24")
	primary.IPv6 = []netip.Addr{ip6(4), ip6(0x44)}
	primary.PrimaryIPv6 = true
	fake.Put(primary)
	neither := instance(5, "demo,198.19.0.5/24")
	neither.PrivateIP = netip.Addr{}
	fake.Put(neither)
	linkLocal := ipv6Only(6, "demo,198.19.0.6/24")
	linkLocal.IPv6 = []netip.Addr{netip.MustParseAddr("fe80::6")}
	fake.Put(linkLocal)
	ms, err := e.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := byID(ms)
	for id, want := range map[string][2]netip.Addr{
		instID(1): {netip.MustParseAddr("198.18.0.1"), {}},
		instID(2): {netip.MustParseAddr("198.18.0.2"), ip6(2)},
		instID(3): {ip6(3), {}},
		instID(4): {ip6(4), {}},
	} {
		m, ok := got[id]
		if !ok || m.Underlay != want[0] || m.Underlay6 != want[1] {
			t.Errorf("%s: %+v (listed %v), want underlays %v and %v", id, m, ok, want[0], want[1])
		}
	}
	if m := got[instID(3)]; m.Overlay6 != netip.MustParsePrefix("fd00:198:19::3/64") || m.Overlay != netip.MustParsePrefix("198.19.0.3/24") {
		t.Errorf("IPv6-only member lost its overlay: %+v", m)
	}
	if len(ms) != 4 {
		t.Errorf("members %v, want 4", memberIDs(ms))
	}
	problems := map[string]Problem{}
	for _, p := range e.Problems() {
		problems[p.ID] = p
	}
	if p := problems[instID(5)]; p.Reason != "no_private_ip" || !strings.HasPrefix(p.Detail, "instance has no private IPv4 or IPv6 address; ") {
		t.Errorf("instance without addresses: %+v", p)
	}
	if p := problems[instID(6)]; p.Reason != "no_private_ip" || !strings.Contains(p.Detail, "IPv6 address fe80::6 is not global unicast; ") {
		t.Errorf("instance with only a link-local IPv6 address: %+v", p)
	}
	if err := Validate(InCommunity(ms, "demo")); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestEC2DuplicateUnderlay6 leaves out two dual-stack instances that
// claim one IPv6 address, and an IPv6-only one whose address is another's
// Underlay6.
func TestEC2DuplicateUnderlay6(t *testing.T) {
	fake, e := ec2Rig(t)
	a, b := dualStack(2, "demo,198.19.0.2/24"), dualStack(3, "demo,198.19.0.3/24")
	b.IPv6 = a.IPv6
	c := ipv6Only(4, "demo,198.19.0.4/24")
	c.IPv6 = a.IPv6
	for _, in := range []fakeaws.Instance{a, b, c, dualStack(5, "demo,198.19.0.5/24")} {
		fake.Put(in)
	}
	if got, want := list(t, e), []string{instID(1), instID(5)}; !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	for _, p := range e.Problems() {
		if p.Reason != "duplicate_underlay" || !strings.Contains(p.Detail, ip6(2).String()) {
			t.Errorf("problem %+v, want duplicate_underlay naming %v", p, ip6(2))
		}
	}
	if c := e.Counts(); c["duplicate_underlay"] != 3 {
		t.Errorf("counts %v, want 3 duplicate_underlay", c)
	}
}

// TestEC2MixedCommunity forms the community of an IPv4-only instance A,
// an IPv6-only B and a dual-stack C, as the package documentation says:
// C reaches both, A and B reach C only and report each other as
// no_common_family.
func TestEC2MixedCommunity(t *testing.T) {
	fake, e := ec2Rig(t)                         // instance 1 is A
	fake.Put(ipv6Only(2, "demo,198.19.0.2/24"))  // B
	fake.Put(dualStack(3, "demo,198.19.0.3/24")) // C
	ms, err := e.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all := byID(ms)
	a, b, c := all[instID(1)], all[instID(2)], all[instID(3)]
	if err := Validate(ms); err != nil {
		t.Fatal(err)
	}
	reach := func(self Member) (to map[string]netip.Addr, left map[string]string) {
		peers, problems := Reach(self, ms, FamilyAuto)
		to, left = map[string]netip.Addr{}, map[string]string{}
		for _, p := range peers {
			to[p.ID] = p.Underlay
		}
		for _, p := range problems {
			left[p.ID] = p.Reason
		}
		return to, left
	}
	to, left := reach(c)
	if want := map[string]netip.Addr{instID(1): a.Underlay, instID(2): ip6(2)}; !reflect.DeepEqual(to, want) || len(left) != 0 {
		t.Errorf("from C: peers %v, left out %v; want %v", to, left, want)
	}
	to, left = reach(a)
	if want := map[string]netip.Addr{instID(3): c.Underlay}; !reflect.DeepEqual(to, want) || !reflect.DeepEqual(left, map[string]string{instID(2): "no_common_family"}) {
		t.Errorf("from A: peers %v, left out %v; want %v and B no_common_family", to, left, want)
	}
	to, left = reach(b)
	if want := map[string]netip.Addr{instID(3): ip6(3)}; !reflect.DeepEqual(to, want) || !reflect.DeepEqual(left, map[string]string{instID(1): "no_common_family"}) {
		t.Errorf("from B: peers %v, left out %v; want %v and A no_common_family", to, left, want)
	}
	// With family 6, A cannot even start, and C reaches B only.
	if _, _, err := LocalUnderlays(a, Family6); err == nil {
		t.Error("A has an IPv6 underlay under family 6")
	}
	if peers, problems := Reach(c, ms, Family6); len(peers) != 1 || peers[0].ID != instID(2) || len(problems) != 1 || problems[0].Reason != "no_ipv6_underlay" {
		t.Errorf("from C with family 6: peers %v, problems %v", peers, problems)
	}
}

// TestInstanceIPv6 picks the primary IPv6 address of EC2 API answers
// shaped by hand: the address marked primary on the primary interface
// first, then the instance's Ipv6Address, then the primary interface's
// first address, then any.
func TestInstanceIPv6(t *testing.T) {
	ni := func(card, dev int32, addrs ...string) types.InstanceNetworkInterface {
		n := types.InstanceNetworkInterface{Attachment: &types.InstanceNetworkInterfaceAttachment{
			NetworkCardIndex: aws.Int32(card), DeviceIndex: aws.Int32(dev)}}
		for _, a := range addrs {
			primary := strings.HasSuffix(a, "*")
			n.Ipv6Addresses = append(n.Ipv6Addresses, types.InstanceIpv6Address{
				Ipv6Address: aws.String(strings.TrimSuffix(a, "*")), IsPrimaryIpv6: aws.Bool(primary)})
		}
		return n
	}
	tests := []struct {
		name     string
		in       types.Instance
		want     string
		unusable string
	}{
		{"none", types.Instance{}, "", ""},
		{"first of the primary interface", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 1, "fd00::10"), ni(0, 0, "fd00::1", "fd00::2")}}, "fd00::1", ""},
		{"marked primary", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 0, "fd00::1", "fd00::2*")}, Ipv6Address: aws.String("fd00::3")}, "fd00::2", ""},
		{"marked on another interface is not primary", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 1, "fd00::10*"), ni(0, 0, "fd00::1")}}, "fd00::1", ""},
		{"second network card", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(1, 0, "fd00::20*"), ni(0, 0, "fd00::1")}}, "fd00::1", ""},
		{"instance's address", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 0, "fd00::1")}, Ipv6Address: aws.String("fd00::3")}, "fd00::3", ""},
		{"only on a secondary interface", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 0), ni(0, 2, "fd00::12"), ni(0, 1, "fd00::11")}}, "fd00::11", ""},
		{"no attachment", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			{Ipv6Addresses: []types.InstanceIpv6Address{{Ipv6Address: aws.String("fd00::30")}}}}}, "fd00::30", ""},
		{"unusable ones skipped", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 0, "fe80::1*", "garbage", "::ffff:198.18.0.1", "ff02::1", "2001:db8::7")}}, "2001:db8::7", ""},
		{"only unusable", types.Instance{NetworkInterfaces: []types.InstanceNetworkInterface{
			ni(0, 0, "fe80::1", "::1")}}, "", "fe80::1"},
	}
	for _, tt := range tests {
		got, unusable := instanceIPv6(tt.in)
		if s := got.String(); !got.IsValid() && tt.want != "" || got.IsValid() && s != tt.want {
			t.Errorf("%s: got %v, want %q", tt.name, got, tt.want)
		}
		if s := unusable.String(); !unusable.IsValid() && tt.unusable != "" || unusable.IsValid() && s != tt.unusable {
			t.Errorf("%s: unusable %v, want %q", tt.name, unusable, tt.unusable)
		}
	}
}

// awsEnv keeps the host's AWS configuration out of a test, and points the
// SDK at the fake EC2 endpoint ec2URL and, unless it is "", the IMDS
// endpoint imdsURL.
func awsEnv(t *testing.T, ec2URL, imdsURL string) {
	t.Helper()
	for _, k := range []string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_DISABLED",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
		"AWS_USE_DUALSTACK_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
	} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2URL)
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDMESHCASTTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	if imdsURL != "" {
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsURL)
	}
}

// serveIPv6 serves h on the IPv6 loopback address [::1], or skips the
// test when this host really has no IPv6 there.
func serveIPv6(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts, err := fakeaws.StartServer("[::1]:0", h)
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Skipf("this host has no IPv6 loopback address [::1] (%v): IMDS over IPv6 cannot be tested here", err)
	}
	if err != nil {
		t.Fatalf("listen on [::1]: %v", err)
	}
	t.Cleanup(ts.Close)
	return ts
}

// logTo returns a logger that writes text lines into b.
func logTo(b *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEC2IMDSOverIPv6 runs NewEC2 on an IPv6-only instance against IMDS
// (and the EC2 API) on [::1], with the endpoint mode IPv6 and the endpoint
// set in the environment: Self has the IPv6 address and no IPv4 one, and
// the instance lists itself with its IPv6 underlay.
func TestEC2IMDSOverIPv6(t *testing.T) {
	fake := fakeaws.New(testRegion)
	var mu sync.Mutex
	var remotes []string
	fake.SetIdentity(func(r *http.Request) string {
		mu.Lock()
		remotes = append(remotes, r.RemoteAddr)
		mu.Unlock()
		return instID(1)
	})
	ts := serveIPv6(t, fake.Handler())
	awsEnv(t, ts.URL, ts.URL)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")
	fake.Put(ipv6Only(1, "demo,198.19.0.1/24"))
	fake.Put(dualStack(2, "demo,198.19.0.2/24"))
	var logs syncBuffer
	e, err := NewEC2(context.Background(), EC2Config{Logger: logTo(&logs),
		hostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("198.18.0.1")}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Self(); s.ID != instID(1) || s.IP.IsValid() || s.IP6 != ip6(1) || s.VPC != "vpc-0123456789abcdef0" {
		t.Fatalf("self %+v, want %s with IPv6 %v and no IPv4", s, instID(1), ip6(1))
	}
	mu.Lock()
	for _, r := range remotes {
		if ap, err := netip.ParseAddrPort(r); err != nil || !ap.Addr().Is6() {
			t.Errorf("IMDS request from %s, want an IPv6 address", r)
		}
	}
	n := len(remotes)
	mu.Unlock()
	if n == 0 {
		t.Fatal("IMDS never asked")
	}
	if l := logs.String(); !strings.Contains(l, `msg="ec2: instance metadata endpoint" mode=IPv6 endpoint=http://[::1]:`) {
		t.Errorf("log does not name the IPv6 endpoint:\n%s", l)
	}
	ms, err := e.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	self, ok := byID(ms)[instID(1)]
	if !ok || self.Underlay != ip6(1) {
		t.Fatalf("self as listed: %+v (%v)", self, ok)
	}
	if v4, v6, err := LocalUnderlays(self, FamilyAuto); err != nil || v4.IsValid() || v6 != ip6(1) {
		t.Errorf("LocalUnderlays = %v, %v, %v", v4, v6, err)
	}
	if peers, _ := Reach(self, ms, FamilyAuto); len(peers) != 1 || peers[0].Underlay != ip6(2) {
		t.Errorf("peers %v, want instance 2 over IPv6", peers)
	}
}

// TestEC2IMDSIPv6sFallback reads an IPv6-only instance's address from
// network/interfaces/macs/MAC/ipv6s where IMDS has no ipv6.
func TestEC2IMDSIPv6sFallback(t *testing.T) {
	fake := fakeaws.New(testRegion)
	fake.SetIdentity(func(*http.Request) string { return instID(1) })
	h := fake.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/meta-data/ipv6" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	awsEnv(t, srv.URL, srv.URL)
	in := ipv6Only(1, "demo,198.19.0.1/24")
	in.IPv6 = []netip.Addr{ip6(1), ip6(0x101)}
	fake.Put(in)
	e, err := NewEC2(context.Background(), EC2Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Self(); s.IP.IsValid() || s.IP6 != ip6(1) {
		t.Fatalf("self %+v, want IPv6 %v and no IPv4", s, ip6(1))
	}
}

// TestEC2IMDSNoAddress refuses an instance with neither a private IPv4
// nor an IPv6 address, and one whose IPv6 address is not global.
func TestEC2IMDSNoAddress(t *testing.T) {
	fake := fakeaws.New(testRegion)
	fake.SetIdentity(func(*http.Request) string { return instID(1) })
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	awsEnv(t, srv.URL, srv.URL)
	none := instance(1, "demo,198.19.0.1/24")
	none.PrivateIP = netip.Addr{}
	fake.Put(none)
	_, err := NewEC2(context.Background(), EC2Config{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "neither local-ipv4 nor ipv6") {
		t.Errorf("instance without addresses: %v", err)
	}
	none.IPv6 = []netip.Addr{netip.MustParseAddr("fe80::1")}
	fake.Put(none)
	_, err = NewEC2(context.Background(), EC2Config{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), `instance metadata ipv6 "fe80::1" is not a global unicast IPv6 address`) {
		t.Errorf("instance with a link-local IPv6 address: %v", err)
	}
	// A dual-stack instance keeps going with IPv4 if its IPv6 is odd.
	dual := instance(1, "demo,198.19.0.1/24")
	dual.IPv6 = []netip.Addr{netip.MustParseAddr("fe80::1")}
	fake.Put(dual)
	e, err := NewEC2(context.Background(), EC2Config{Logger: quiet()})
	if err != nil || e.Self().IP != netip.MustParseAddr("198.18.0.1") || e.Self().IP6.IsValid() {
		t.Errorf("dual-stack instance with a link-local IPv6 address: %v", err)
	}
}

// TestEC2IMDSAutoMode lets NewEC2 choose the IMDS endpoint from this
// host's addresses (replaced by the test): without a global IPv4 address
// it asks [fd00:ec2::254], else 169.254.169.254, unless the environment
// names a mode. The test's dialer carries those fixed addresses to fakes
// on loopback and records them; nothing leaves loopback.
func TestEC2IMDSAutoMode(t *testing.T) {
	fake := fakeaws.New(testRegion)
	fake.SetIdentity(func(*http.Request) string { return instID(1) })
	ts6 := serveIPv6(t, fake.Handler())
	ts4 := httptest.NewServer(fake.Handler())
	t.Cleanup(ts4.Close)
	fake.Put(dualStack(1, "demo,198.19.0.1/24"))

	route := map[string]string{
		"[fd00:ec2::254]:80": ts6.Listener.Addr().String(),
		"169.254.169.254:80": ts4.Listener.Addr().String(),
	}
	for _, tt := range []struct {
		name  string
		host  []netip.Addr
		err   error
		mode  string // AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE
		dials string // the IMDS address dialled
		log   string
	}{
		{name: "IPv6-only host", host: []netip.Addr{ip6(1), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("169.254.0.9")},
			dials: "[fd00:ec2::254]:80", log: `mode=IPv6 endpoint=http://[fd00:ec2::254] why="this host has no IPv4 address but on loopback"`},
		{name: "no addresses", dials: "[fd00:ec2::254]:80", log: "mode=IPv6"},
		{name: "dual-stack host", host: []netip.Addr{ip6(1), netip.MustParseAddr("10.0.0.5")},
			dials: "169.254.169.254:80", log: `mode=IPv4 endpoint=http://169.254.169.254 why="this host has an IPv4 address (10.0.0.5)"`},
		{name: "lookup fails", err: errors.New("no netlink"), dials: "169.254.169.254:80", log: "cannot list this host's addresses (no netlink)"},
		{name: "mode set to IPv4", mode: "IPv4", dials: "169.254.169.254:80", log: "mode=IPv4"},
		{name: "mode set to IPv6", mode: "IPv6", host: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, dials: "[fd00:ec2::254]:80",
			log: `mode=IPv6 endpoint=http://[fd00:ec2::254] why="mode set by AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			awsEnv(t, ts4.URL, "")
			if tt.mode != "" {
				t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", tt.mode)
			}
			var mu sync.Mutex
			dialled := map[string]bool{}
			var d net.Dialer
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				dialled[addr] = true
				mu.Unlock()
				if to, ok := route[addr]; ok {
					return d.DialContext(ctx, network, to)
				}
				if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().IsLoopback() {
					return d.DialContext(ctx, network, addr)
				}
				return nil, fmt.Errorf("test refuses to dial %s", addr)
			}
			var logs syncBuffer
			e, err := NewEC2(context.Background(), EC2Config{Logger: logTo(&logs), dial: dial,
				hostAddrs: func() ([]netip.Addr, error) { return tt.host, tt.err }})
			if err != nil {
				t.Fatal(err)
			}
			if s := e.Self(); s.IP != netip.MustParseAddr("198.18.0.1") || s.IP6 != ip6(1) {
				t.Errorf("self %+v", s)
			}
			mu.Lock()
			other := "169.254.169.254:80"
			if tt.dials == other {
				other = "[fd00:ec2::254]:80"
			}
			if !dialled[tt.dials] || dialled[other] {
				t.Errorf("dialled %v, want %s and not %s", dialled, tt.dials, other)
			}
			mu.Unlock()
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log does not contain %s:\n%s", tt.log, logs.String())
			}
			if got := list(t, e); !slices.Equal(got, []string{instID(1)}) {
				t.Errorf("members %v", got)
			}
		})
	}
}

// TestEC2IMDSFallback starts on an IPv6-only instance whose host has an
// IPv4 address all the same (a container bridge's): the IPv4 endpoint
// gives no answer, so NewEC2 tries the IPv6 one, which answers. An
// endpoint mode set in the environment is never second-guessed.
func TestEC2IMDSFallback(t *testing.T) {
	fake := fakeaws.New(testRegion)
	fake.SetIdentity(func(*http.Request) string { return instID(1) })
	ts6 := serveIPv6(t, fake.Handler())
	ec2API := httptest.NewServer(fake.Handler())
	t.Cleanup(ec2API.Close)
	fake.Put(ipv6Only(1, "demo,198.19.0.1/24"))
	var mu sync.Mutex
	var dialled []string
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		switch ap, err := netip.ParseAddrPort(addr); {
		case addr == "[fd00:ec2::254]:80":
			return d.DialContext(ctx, network, ts6.Listener.Addr().String())
		case err == nil && ap.Addr().IsLoopback():
			return d.DialContext(ctx, network, addr)
		}
		return nil, fmt.Errorf("dial %s: network is unreachable", addr)
	}
	bridge := func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("172.17.0.1"), ip6(1)}, nil }

	awsEnv(t, ec2API.URL, "")
	var logs syncBuffer
	e, err := NewEC2(context.Background(), EC2Config{Logger: logTo(&logs), dial: dial, hostAddrs: bridge})
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Self(); s.IP6 != ip6(1) || s.IP.IsValid() {
		t.Errorf("self %+v", s)
	}
	mu.Lock()
	if len(dialled) < 2 || dialled[0] != "169.254.169.254:80" || !slices.Contains(dialled, "[fd00:ec2::254]:80") {
		t.Errorf("dialled %v, want 169.254.169.254:80 first, then [fd00:ec2::254]:80", dialled)
	}
	mu.Unlock()
	if l := logs.String(); !strings.Contains(l, `mode=IPv4 endpoint=http://169.254.169.254 why="this host has an IPv4 address (172.17.0.1)"`) ||
		!strings.Contains(l, `mode=IPv6 endpoint=http://[fd00:ec2::254] why="the IPv4 endpoint did not answer`) {
		t.Errorf("log does not tell both choices:\n%s", l)
	}

	// With the mode set to IPv4, there is no second try.
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
	mu.Lock()
	dialled = nil
	mu.Unlock()
	if _, err := NewEC2(context.Background(), EC2Config{Logger: quiet(), dial: dial, hostAddrs: bridge}); err == nil {
		t.Error("NewEC2 found IMDS over IPv4, which does not answer")
	}
	mu.Lock()
	if slices.Contains(dialled, "[fd00:ec2::254]:80") {
		t.Errorf("dialled %v: tried IPv6 though the mode is set to IPv4", dialled)
	}
	mu.Unlock()
}
