package discovery

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

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
