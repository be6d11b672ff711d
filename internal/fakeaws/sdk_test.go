package fakeaws

// These tests drive the server with the real aws-sdk-go-v2 clients,
// configured only through the SDK's standard environment variables.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

const testRegion = "eu-west-1"

// env is a fake server and an SDK configuration that points at it.
type env struct {
	srv *Server
	ts  *httptest.Server
	cfg aws.Config
}

// newEnv starts a fake server and loads the SDK configuration the way
// meshcast does, from the environment. The SDK's HTTP client is
// HTTPClient, which only lets requests to the fake server through; any
// other host also fails the test, so nothing reaches AWS even with a
// network.
func newEnv(t *testing.T) *env {
	t.Helper()
	srv := New(testRegion)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return configure(t, srv, ts, "")
}

// newEnv6 is newEnv with the server on the IPv6 loopback address, [::1],
// and the SDK's IMDS endpoint mode set to IPv6 as well. It skips the test
// where the host has no IPv6.
func newEnv6(t *testing.T) *env {
	t.Helper()
	srv := New(testRegion)
	ts := startIPv6(t, srv.Handler())
	return configure(t, srv, ts, "IPv6")
}

// startIPv6 serves h on [::1] with StartServer, and skips the test when
// the host really has no IPv6 loopback address (IPv6 is off, or lo lacks
// ::1); any other failure fails it.
func startIPv6(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts, err := StartServer("[::1]:0", h)
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Skipf("this host has no IPv6 loopback address [::1] (%v); IMDS over IPv6 cannot be tested here", err)
	}
	if err != nil {
		t.Fatalf("listen on [::1]: %v", err)
	}
	t.Cleanup(ts.Close)
	return ts
}

// configure points the SDK at ts, which serves srv, with the IMDS endpoint
// mode imdsMode ("" for none).
func configure(t *testing.T, srv *Server, ts *httptest.Server, imdsMode string) *env {
	t.Helper()

	// Keep the host's AWS configuration out of the test.
	dir := t.TempDir()
	for _, k := range []string{
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_EC2_METADATA_DISABLED",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_V1_DISABLED",
		"AWS_DEFAULTS_MODE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_CA_BUNDLE",
		"AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	} {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))

	t.Setenv("AWS_ENDPOINT_URL_EC2", ts.URL)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ts.URL)
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
	if imdsMode != "" {
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", imdsMode)
	}

	host := strings.TrimPrefix(ts.URL, "http://")
	safe := HTTPClient(ts.URL).Transport
	guard := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != host {
			t.Errorf("SDK tried to reach %s %s", r.Method, r.URL)
		}
		return safe.RoundTrip(r)
	})}
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithHTTPClient(guard))
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return &env{srv: srv, ts: ts, cfg: cfg}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ec2 returns an EC2 client that makes one attempt per call, so injected
// failures surface directly.
func (e *env) ec2() *ec2.Client {
	return ec2.NewFromConfig(e.cfg, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// fleet puts n running instances i-00..0K (K = 1..n) in two VPCs, with
// addresses 198.18.0.K.
func fleet(s *Server, n int) []Instance {
	var all []Instance
	for k := 1; k <= n; k++ {
		in := Instance{
			ID:        fmt.Sprintf("i-%017x", k),
			PrivateIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(k)}),
			VPC:       []string{"vpc-aaaaaaaa", "vpc-bbbbbbbb"}[k%2],
			Tags: map[string]string{
				"multicast": fmt.Sprintf("demo,198.19.0.%d/24", k),
				"Name":      fmt.Sprintf("node-%d", k),
			},
		}
		s.Put(in)
		all = append(all, in)
	}
	return all
}

// instances flattens the reservations of DescribeInstances pages.
func instances(pages ...*ec2.DescribeInstancesOutput) []types.Instance {
	var out []types.Instance
	for _, p := range pages {
		for _, r := range p.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out
}

func ids(ins []types.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, aws.ToString(in.InstanceId))
	}
	return out
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string)
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func TestPaginatorReturnsEveryInstance(t *testing.T) {
	e := newEnv(t)
	want := fleet(e.srv, 7)
	e.srv.SetState(want[6].ID, "stopped")
	want[6].State = "stopped"
	e.srv.SetPageSize(3)

	p := ec2.NewDescribeInstancesPaginator(e.ec2(), &ec2.DescribeInstancesInput{})
	var got []types.Instance
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		if n := len(instances(out)); n > 3 {
			t.Errorf("page %d has %d instances, page size is 3", pages, n)
		}
		got = append(got, instances(out)...)
	}
	if pages != 3 || e.srv.Calls() != 3 {
		t.Errorf("pages = %d, calls = %d; want 3 and 3", pages, e.srv.Calls())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d instances %v, want %d", len(got), ids(got), len(want))
	}
	for i, in := range got {
		w := want[i]
		if id := aws.ToString(in.InstanceId); id != w.ID {
			t.Errorf("instance %d: ID %s, want %s (sorted by ID)", i, id, w.ID)
		}
		if ip := aws.ToString(in.PrivateIpAddress); ip != w.PrivateIP.String() {
			t.Errorf("%s: private IP %q, want %v", w.ID, ip, w.PrivateIP)
		}
		if v := aws.ToString(in.VpcId); v != w.VPC {
			t.Errorf("%s: VPC %q, want %q", w.ID, v, w.VPC)
		}
		wantState := w.State
		if wantState == "" {
			wantState = "running"
		}
		if in.State == nil || string(in.State.Name) != wantState || aws.ToInt32(in.State.Code) != int32(stateCodes[wantState]) {
			t.Errorf("%s: state %+v, want %s", w.ID, in.State, wantState)
		}
		if tags := tagMap(in.Tags); !maps(tags, w.Tags) {
			t.Errorf("%s: tags %v, want %v", w.ID, tags, w.Tags)
		}
		if len(in.NetworkInterfaces) != 1 || aws.ToString(in.NetworkInterfaces[0].MacAddress) != derivedMAC(w.ID) {
			t.Errorf("%s: network interfaces %+v, want one with MAC %s", w.ID, in.NetworkInterfaces, derivedMAC(w.ID))
		}
		if az := aws.ToString(in.Placement.AvailabilityZone); az != testRegion+"a" {
			t.Errorf("%s: availability zone %q", w.ID, az)
		}
		if in.LaunchTime == nil || in.LaunchTime.IsZero() {
			t.Errorf("%s: no launch time", w.ID)
		}
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestMaxResultsAndPageSize(t *testing.T) {
	for _, tc := range []struct {
		pageSize, maxResults int
		wantPages            []int
	}{
		{1000, 5, []int{5, 5, 2}},
		{4, 5, []int{4, 4, 4}},
		{1000, 0, []int{12}},
		{7, 0, []int{7, 5}},
	} {
		t.Run(fmt.Sprintf("page%d/max%d", tc.pageSize, tc.maxResults), func(t *testing.T) {
			e := newEnv(t)
			fleet(e.srv, 12)
			e.srv.SetPageSize(tc.pageSize)
			in := &ec2.DescribeInstancesInput{}
			if tc.maxResults > 0 {
				in.MaxResults = aws.Int32(int32(tc.maxResults))
			}
			p := ec2.NewDescribeInstancesPaginator(e.ec2(), in)
			var sizes []int
			var all []string
			for p.HasMorePages() {
				out, err := p.NextPage(ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(instances(out)))
				all = append(all, ids(instances(out))...)
			}
			if !slices.Equal(sizes, tc.wantPages) {
				t.Errorf("page sizes %v, want %v", sizes, tc.wantPages)
			}
			if len(all) != 12 || !slices.IsSorted(all) || len(slices.Compact(all)) != 12 {
				t.Errorf("instances %v, want 12 distinct in order", all)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 6) // odd K in vpc-bbbbbbbb, even K in vpc-aaaaaaaa
	e.srv.SetState(fmt.Sprintf("i-%017x", 5), "stopped")
	const other = "i-00000000000000f00" // sorts after the fleet
	e.srv.Put(Instance{ID: other, State: "pending",
		Tags: map[string]string{"role": "", "multicast": "other,198.19.1.1/24"}})

	id := func(ks ...int) []string {
		var out []string
		for _, k := range ks {
			out = append(out, fmt.Sprintf("i-%017x", k))
		}
		return out
	}
	f := func(name string, values ...string) types.Filter {
		return types.Filter{Name: aws.String(name), Values: values}
	}
	for _, tc := range []struct {
		name    string
		filters []types.Filter
		want    []string
	}{
		{"none", nil, append(id(1, 2, 3, 4, 5, 6), other)},
		{"tag-key", []types.Filter{f("tag-key", "role")}, []string{other}},
		{"tag-key OR", []types.Filter{f("tag-key", "role", "Name")}, append(id(1, 2, 3, 4, 5, 6), other)},
		{"tag exact", []types.Filter{f("tag:Name", "node-3")}, id(3)},
		{"tag wildcard", []types.Filter{f("tag:multicast", "demo,*")}, id(1, 2, 3, 4, 5, 6)},
		{"tag question mark", []types.Filter{f("tag:Name", "node-?")}, id(1, 2, 3, 4, 5, 6)},
		{"tag empty value", []types.Filter{f("tag:role", "")}, []string{other}},
		{"tag without values", []types.Filter{f("tag:role")}, []string{other}},
		{"tag absent", []types.Filter{f("tag:nope", "*")}, nil},
		{"tag-value", []types.Filter{f("tag-value", "node-2")}, id(2)},
		{"state", []types.Filter{f("instance-state-name", "running")}, id(1, 2, 3, 4, 6)},
		{"state OR", []types.Filter{f("instance-state-name", "stopped", "pending")}, append(id(5), other)},
		{"state code", []types.Filter{f("instance-state-code", "80")}, id(5)},
		{"vpc", []types.Filter{f("vpc-id", "vpc-aaaaaaaa")}, id(2, 4, 6)},
		{"vpc without values", []types.Filter{f("vpc-id")}, id(1, 2, 3, 4, 5, 6)},
		{"subnet", []types.Filter{f("subnet-id", subnetOf("vpc-bbbbbbbb"))}, id(1, 3, 5)},
		{"instance-id", []types.Filter{f("instance-id", id(2, 3)...)}, id(2, 3)},
		{"private ip", []types.Filter{f("private-ip-address", "198.18.0.4")}, id(4)},
		{"private ip wildcard", []types.Filter{f("private-ip-address", "198.18.0.*")}, id(1, 2, 3, 4, 5, 6)},
		{"AND", []types.Filter{
			f("vpc-id", "vpc-bbbbbbbb"),
			f("instance-state-name", "running"),
			f("tag-key", "multicast"),
		}, id(1, 3)},
		{"AND nothing", []types.Filter{f("vpc-id", "vpc-aaaaaaaa"), f("tag:Name", "node-3")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.ec2().DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{Filters: tc.filters})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(instances(out)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// apiErr returns the error code and HTTP status of an SDK error.
func apiErr(t *testing.T, err error) (string, int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is no smithy.APIError", err, err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is no *awshttp.ResponseError", err, err)
	}
	if re.ServiceRequestID() == "" {
		t.Errorf("error %v has no request ID", err)
	}
	return ae.ErrorCode(), re.HTTPStatusCode()
}

// httpStatus returns the HTTP status of a failed SDK call, or 0. IMDS
// errors are *smithyhttp.ResponseError, not *awshttp.ResponseError, so look
// for the method both have.
func httpStatus(err error) int {
	var se interface{ HTTPStatusCode() int }
	if errors.As(err, &se) {
		return se.HTTPStatusCode()
	}
	return 0
}

func TestRequestErrors(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 3)
	for _, tc := range []struct {
		name   string
		in     ec2.DescribeInstancesInput
		code   string
		status int
	}{
		{"unknown filter", ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("owner-alias"), Values: []string{"x"}}}},
			"InvalidParameterValue", 400},
		{"empty tag key", ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("tag:"), Values: []string{"x"}}}},
			"InvalidParameterValue", 400},
		{"MaxResults too small", ec2.DescribeInstancesInput{MaxResults: aws.Int32(4)}, "InvalidParameterValue", 400},
		{"MaxResults too large", ec2.DescribeInstancesInput{MaxResults: aws.Int32(1001)}, "InvalidParameterValue", 400},
		{"bad NextToken", ec2.DescribeInstancesInput{NextToken: aws.String("garbage")}, "InvalidParameterValue", 400},
		{"unknown instance", ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000ff"}}, "InvalidInstanceID.NotFound", 400},
		{"malformed instance", ec2.DescribeInstancesInput{InstanceIds: []string{"x-1"}}, "InvalidInstanceID.Malformed", 400},
		{"IDs with MaxResults", ec2.DescribeInstancesInput{InstanceIds: []string{fmt.Sprintf("i-%017x", 1)}, MaxResults: aws.Int32(5)},
			"InvalidParameterCombination", 400},
		{"dry run", ec2.DescribeInstancesInput{DryRun: aws.Bool(true)}, "DryRunOperation", 412},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ec2().DescribeInstances(ctx(t), &tc.in)
			if err == nil {
				t.Fatal("no error")
			}
			code, status := apiErr(t, err)
			if code != tc.code || status != tc.status {
				t.Errorf("got %s (HTTP %d), want %s (HTTP %d): %v", code, status, tc.code, tc.status, err)
			}
		})
	}
}

func TestInstanceIDs(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 4)
	want := []string{fmt.Sprintf("i-%017x", 2), fmt.Sprintf("i-%017x", 4)}
	out, err := e.ec2().DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{want[1], want[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(instances(out)); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNextTokenSurvivesChanges(t *testing.T) {
	e := newEnv(t)
	all := fleet(e.srv, 9)
	e.srv.SetPageSize(3)
	p := ec2.NewDescribeInstancesPaginator(e.ec2(), &ec2.DescribeInstancesInput{})
	first, err := p.NextPage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// Remove one instance already returned and one still to come, and add
	// one before the cursor: the rest must neither repeat nor go missing.
	e.srv.Remove(all[0].ID)
	e.srv.Remove(all[5].ID)
	e.srv.Put(Instance{ID: "i-00000000000000000000"})
	got := ids(instances(first))
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(instances(out))...)
	}
	var want []string
	for i, in := range all {
		if i != 5 {
			want = append(want, in.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNextTokenBelongsToItsQuery(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 6)
	e.srv.SetPageSize(2)
	c := e.ec2()
	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	if err != nil || out.NextToken == nil {
		t.Fatalf("first page: %v, token %v", err, out.NextToken)
	}
	_, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{
		NextToken: out.NextToken,
		Filters:   []types.Filter{{Name: aws.String("vpc-id"), Values: []string{"vpc-aaaaaaaa"}}},
	})
	if err == nil {
		t.Fatal("a token from another query was accepted")
	}
	if code, _ := apiErr(t, err); code != "InvalidParameterValue" {
		t.Errorf("code %s, want InvalidParameterValue", code)
	}
}

func TestThrottle(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 2)
	c := e.ec2()
	e.srv.Throttle(2)
	for i := range 2 {
		_, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
		if err == nil {
			t.Fatalf("call %d: no error", i+1)
		}
		if code, status := apiErr(t, err); code != "RequestLimitExceeded" || status != 503 {
			t.Errorf("call %d: %s (HTTP %d), want RequestLimitExceeded (HTTP 503)", i+1, code, status)
		}
	}
	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	if err != nil || len(instances(out)) != 2 {
		t.Fatalf("after throttling: %v, %d instances", err, len(instances(out)))
	}
	if n := e.srv.Calls(); n != 3 {
		t.Errorf("Calls() = %d, want 3", n)
	}
}

// TestRetryerRetriesThrottling checks that the SDK's standard retryer
// treats the fake's throttling as retryable, with the backoff removed.
func TestRetryerRetriesThrottling(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 2)
	c := ec2.NewFromConfig(e.cfg, func(o *ec2.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 4
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	})
	e.srv.Throttle(2)
	e.srv.Fail(500, 1)
	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(instances(out)) != 2 || e.srv.Calls() != 4 {
		t.Errorf("%d instances after %d calls, want 2 after 4", len(instances(out)), e.srv.Calls())
	}
}

func TestFail(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{500, "InternalError"},
		{502, "InternalError"},
		{503, "Unavailable"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			e := newEnv(t)
			e.srv.Fail(tc.status, 1)
			_, err := e.ec2().DescribeInstances(ctx(t), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if code, status := apiErr(t, err); code != tc.code || status != tc.status {
				t.Errorf("%s (HTTP %d), want %s (HTTP %d)", code, status, tc.code, tc.status)
			}
			if _, err := e.ec2().DescribeInstances(ctx(t), nil); err != nil {
				t.Errorf("second call: %v", err)
			}
		})
	}
}

func TestTerminatedInstanceLosesNetworkFields(t *testing.T) {
	e := newEnv(t)
	all := fleet(e.srv, 1)
	e.srv.SetState(all[0].ID, "terminated")
	out, err := e.ec2().DescribeInstances(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := instances(out)[0]
	if in.PrivateIpAddress != nil || in.VpcId != nil || in.SubnetId != nil || len(in.NetworkInterfaces) != 0 {
		t.Errorf("terminated instance still has network fields: ip %v vpc %v subnet %v enis %d",
			aws.ToString(in.PrivateIpAddress), aws.ToString(in.VpcId), aws.ToString(in.SubnetId), len(in.NetworkInterfaces))
	}
	if in.State.Name != types.InstanceStateNameTerminated || aws.ToInt32(in.State.Code) != 48 {
		t.Errorf("state %+v", in.State)
	}
}

func TestHookSeesTheForm(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seen []url.Values
	e.srv.Hook(func(action string, form url.Values) {
		mu.Lock()
		defer mu.Unlock()
		if action != "DescribeInstances" {
			t.Errorf("action %q", action)
		}
		seen = append(seen, form)
	})
	_, err := e.ec2().DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{
		Filters:    []types.Filter{{Name: aws.String("tag:multicast"), Values: []string{"a", "b"}}},
		MaxResults: aws.Int32(50),
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("hook called %d times", len(seen))
	}
	want := url.Values{
		"Action": {"DescribeInstances"}, "Version": {"2016-11-15"},
		"Filter.1.Name": {"tag:multicast"}, "Filter.1.Value.1": {"a"}, "Filter.1.Value.2": {"b"},
		"MaxResults": {"50"},
	}
	if got := seen[0].Encode(); got != want.Encode() {
		t.Errorf("form\n%s\nwant\n%s", got, want.Encode())
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 20)
	e.srv.SetPageSize(5)
	c := e.ec2()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				id := fmt.Sprintf("i-%017x", 100+g*100+i)
				e.srv.Put(Instance{ID: id, Tags: map[string]string{"g": fmt.Sprint(g)}})
				e.srv.SetState(id, "stopping")
				e.srv.Remove(id)
			}
		})
		wg.Go(func() {
			p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{
				Filters: []types.Filter{{Name: aws.String("tag-key"), Values: []string{"multicast"}}},
			})
			n := 0
			for p.HasMorePages() {
				out, err := p.NextPage(ctx(t))
				if err != nil {
					t.Error(err)
					return
				}
				n += len(instances(out))
			}
			if n != 20 {
				t.Errorf("paginator saw %d instances, want 20", n)
			}
		})
	}
	wg.Wait()
}

// TestIMDS reads every served path with the SDK's IMDS client, which
// fetches a session token first.
func TestIMDS(t *testing.T) {
	e := newEnv(t)
	all := fleet(e.srv, 2)
	me := all[1]
	e.srv.SetIdentity(func(*http.Request) string { return me.ID })
	c := imds.NewFromConfig(e.cfg)

	mac := derivedMAC(me.ID)
	for path, want := range map[string]string{
		"instance-id":                 me.ID,
		"/instance-id":                me.ID,
		"local-ipv4":                  me.PrivateIP.String(),
		"mac":                         mac,
		"placement/region":            testRegion,
		"placement/availability-zone": testRegion + "a",
		"network/interfaces/macs/":    mac + "/",
		"network/interfaces/macs/" + mac + "/vpc-id":      me.VPC,
		"network/interfaces/macs/" + mac + "/subnet-id":   subnetOf(me.VPC),
		"network/interfaces/macs/" + mac + "/local-ipv4s": me.PrivateIP.String(),
	} {
		out, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: path})
		if err != nil {
			t.Errorf("GetMetadata(%q): %v", path, err)
			continue
		}
		b, err := io.ReadAll(out.Content)
		out.Content.Close()
		if err != nil || string(b) != want {
			t.Errorf("GetMetadata(%q) = %q, %v; want %q", path, b, err, want)
		}
	}

	region, err := c.GetRegion(ctx(t), nil)
	if err != nil || region.Region != testRegion {
		t.Errorf("GetRegion = %+v, %v", region, err)
	}
	doc, err := c.GetInstanceIdentityDocument(ctx(t), nil)
	if err != nil {
		t.Fatalf("GetInstanceIdentityDocument: %v", err)
	}
	d := doc.InstanceIdentityDocument
	if d.InstanceID != me.ID || d.Region != testRegion || d.PrivateIP != me.PrivateIP.String() ||
		d.AvailabilityZone != testRegion+"a" || d.AccountID != AccountID || d.PendingTime.IsZero() {
		t.Errorf("identity document %+v", d)
	}

	for _, path := range []string{"ami-id", "network/interfaces/macs/02:00:00:00:00:00/vpc-id", "placement"} {
		_, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: path})
		if st := httpStatus(err); st != 404 {
			t.Errorf("GetMetadata(%q): %v, want HTTP 404", path, err)
		}
	}
}

// TestIMDSDefaultIdentity relies on the default identity: the instance
// whose private IP is the client's address, here loopback.
func TestIMDSDefaultIdentity(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 2)
	c := imds.NewFromConfig(e.cfg)
	_, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: "instance-id"})
	if httpStatus(err) != 404 {
		t.Fatalf("unknown client: %v, want HTTP 404", err)
	}

	e.srv.Put(Instance{ID: "i-0000000000000100", PrivateIP: netip.MustParseAddr("127.0.0.1")})
	out, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: "local-ipv4"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Content)
	out.Content.Close()
	if string(b) != "127.0.0.1" {
		t.Errorf("local-ipv4 = %q", b)
	}
}

// TestIMDSEndpointPathIsIgnored pins an SDK quirk: the IMDS client parses
// the endpoint and then replaces its path, so a path prefix is dropped.
func TestIMDSEndpointPathIsIgnored(t *testing.T) {
	e := newEnv(t)
	fleet(e.srv, 1)
	e.srv.SetIdentity(func(*http.Request) string { return fmt.Sprintf("i-%017x", 1) })
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", e.ts.URL+"/some/prefix/")
	cfg, err := config.LoadDefaultConfig(ctx(t), config.WithHTTPClient(e.cfg.HTTPClient))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imds.NewFromConfig(cfg).GetRegion(ctx(t), nil); err != nil {
		t.Errorf("GetRegion with a path in the endpoint: %v", err)
	}
}

// ipv6Fleet puts a dual-stack instance with a primary IPv6 address, an
// IPv6-only one whose addresses are not marked primary, and an IPv4-only
// one.
func ipv6Fleet(s *Server) (dual, only6, only4 Instance) {
	dual = Instance{
		ID:          "i-00000000000000001",
		PrivateIP:   netip.MustParseAddr("198.18.0.1"),
		IPv6:        []netip.Addr{netip.MustParseAddr("fd00:198:18::1"), netip.MustParseAddr("fd00:198:18::a")},
		PrimaryIPv6: true,
		VPC:         "vpc-aaaaaaaa",
		Tags:        map[string]string{"multicast": "demo,198.19.0.1/24"},
	}
	only6 = Instance{
		ID:   "i-00000000000000002",
		IPv6: []netip.Addr{netip.MustParseAddr("fd00:198:18::2")},
		VPC:  "vpc-aaaaaaaa",
		Tags: map[string]string{"multicast": "demo,198.19.0.2/24"},
	}
	only4 = Instance{
		ID:        "i-00000000000000003",
		PrivateIP: netip.MustParseAddr("198.18.0.3"),
		VPC:       "vpc-aaaaaaaa",
		Tags:      map[string]string{"multicast": "demo,198.19.0.3/24"},
	}
	for _, in := range []Instance{dual, only6, only4} {
		s.Put(in)
	}
	return dual, only6, only4
}

// TestIPv6Addresses reads the IPv6 fields of DescribeInstances with the
// SDK: the interface's addresses with the primary one marked, the
// instance's ipv6Address, and an IPv6-only instance without a private
// IPv4 address. The ipv6-address filter finds an instance by any of them.
func TestIPv6Addresses(t *testing.T) {
	e := newEnv(t)
	dual, only6, only4 := ipv6Fleet(e.srv)
	out, err := e.ec2().DescribeInstances(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := instances(out)
	if len(got) != 3 {
		t.Fatalf("%d instances", len(got))
	}
	type addr struct {
		ip      string
		primary bool
	}
	v6 := func(in types.Instance) []addr {
		var out []addr
		for _, ni := range in.NetworkInterfaces {
			for _, a := range ni.Ipv6Addresses {
				out = append(out, addr{aws.ToString(a.Ipv6Address), aws.ToBool(a.IsPrimaryIpv6)})
			}
		}
		return out
	}
	if a := v6(got[0]); !slices.Equal(a, []addr{{"fd00:198:18::1", true}, {"fd00:198:18::a", false}}) ||
		aws.ToString(got[0].Ipv6Address) != "fd00:198:18::1" || aws.ToString(got[0].PrivateIpAddress) != "198.18.0.1" {
		t.Errorf("dual-stack %s: IPv6 %v, ipv6Address %q, private IP %q", dual.ID, a, aws.ToString(got[0].Ipv6Address), aws.ToString(got[0].PrivateIpAddress))
	}
	if a := v6(got[1]); !slices.Equal(a, []addr{{"fd00:198:18::2", false}}) || got[1].Ipv6Address != nil ||
		got[1].PrivateIpAddress != nil || got[1].NetworkInterfaces[0].PrivateIpAddress != nil {
		t.Errorf("IPv6-only %s: IPv6 %v, ipv6Address %v, private IP %v", only6.ID, a, got[1].Ipv6Address, got[1].PrivateIpAddress)
	}
	if dns := aws.ToString(got[1].PrivateDnsName); dns != only6.ID+"."+testRegion+".compute.internal" {
		t.Errorf("IPv6-only %s: private DNS name %q", only6.ID, dns)
	}
	if a := v6(got[2]); len(a) != 0 || got[2].Ipv6Address != nil {
		t.Errorf("IPv4-only %s: IPv6 %v", only4.ID, a)
	}
	if d := aws.ToInt32(got[1].NetworkInterfaces[0].Attachment.DeviceIndex); d != 0 {
		t.Errorf("device index %d, want 0 (the primary interface)", d)
	}

	for value, want := range map[string][]string{
		"fd00:198:18::a": {dual.ID},
		"fd00:198:18::2": {only6.ID},
		"fd00:198:18::*": {dual.ID, only6.ID},
	} {
		out, err := e.ec2().DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{
			Filters: []types.Filter{{Name: aws.String("ipv6-address"), Values: []string{value}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(instances(out)); !slices.Equal(got, want) {
			t.Errorf("ipv6-address %s: %v, want %v", value, got, want)
		}
	}

	// A terminated instance loses its IPv6 addresses too.
	e.srv.SetState(dual.ID, "terminated")
	out, err = e.ec2().DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{dual.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if in := instances(out)[0]; in.Ipv6Address != nil || len(in.NetworkInterfaces) != 0 {
		t.Errorf("terminated instance keeps IPv6: %v, %d interfaces", aws.ToString(in.Ipv6Address), len(in.NetworkInterfaces))
	}
}

// TestIMDSOverIPv6 serves IMDS on the IPv6 loopback address with the
// SDK's endpoint mode IPv6, for an IPv6-only instance: ipv6 and ipv6s
// answer, local-ipv4 is 404, and the default identity finds the instance
// by its IPv6 address.
func TestIMDSOverIPv6(t *testing.T) {
	e := newEnv6(t)
	if !strings.HasPrefix(e.ts.URL, "http://[::1]:") {
		t.Fatalf("server URL %s, want http://[::1]:PORT", e.ts.URL)
	}
	_, only6, _ := ipv6Fleet(e.srv)
	only6.IPv6 = append(only6.IPv6, netip.MustParseAddr("fd00:198:18::b"))
	e.srv.Put(only6)
	var mu sync.Mutex
	var remotes []string
	e.srv.SetIdentity(func(r *http.Request) string {
		mu.Lock()
		remotes = append(remotes, r.RemoteAddr)
		mu.Unlock()
		return only6.ID
	})
	c := imds.NewFromConfig(e.cfg)
	mac := derivedMAC(only6.ID)
	for path, want := range map[string]string{
		"instance-id": only6.ID,
		"ipv6":        "fd00:198:18::2",
		"network/interfaces/macs/" + mac + "/ipv6s": "fd00:198:18::2\nfd00:198:18::b",
	} {
		out, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: path})
		if err != nil {
			t.Errorf("GetMetadata(%q): %v", path, err)
			continue
		}
		b, _ := io.ReadAll(out.Content)
		out.Content.Close()
		if string(b) != want {
			t.Errorf("GetMetadata(%q) = %q, want %q", path, b, want)
		}
	}
	for _, path := range []string{"local-ipv4", "network/interfaces/macs/" + mac + "/local-ipv4s"} {
		if _, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: path}); httpStatus(err) != 404 {
			t.Errorf("GetMetadata(%q) on an IPv6-only instance: %v, want HTTP 404", path, err)
		}
	}
	doc, err := c.GetInstanceIdentityDocument(ctx(t), nil)
	if err != nil || doc.PrivateIP != "" || doc.InstanceID != only6.ID {
		t.Errorf("identity document %+v, %v; want no privateIp", doc, err)
	}
	mu.Lock()
	for _, r := range remotes {
		if ap, err := netip.ParseAddrPort(r); err != nil || ap.Addr() != netip.IPv6Loopback() {
			t.Errorf("request from %s, want [::1]", r)
		}
	}
	mu.Unlock()

	// The default identity: the instance with the client's IPv6 address.
	e.srv.SetIdentity(nil)
	e.srv.Put(Instance{ID: "i-00000000000000100", IPv6: []netip.Addr{netip.IPv6Loopback()}})
	out, err := c.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Content)
	out.Content.Close()
	if string(b) != "i-00000000000000100" {
		t.Errorf("instance-id by IPv6 address = %q", b)
	}
}
