package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// DefaultTagKey is the EC2 tag whose value is COMMUNITY,IP/PREFIX.
const DefaultTagKey = "multicast"

// EC2Config configures the EC2 source. Zero fields take defaults.
type EC2Config struct {
	TagKey string       // default DefaultTagKey
	Logger *slog.Logger // default slog.Default()
}

// Self is this instance as the instance metadata service (IMDSv2) sees it.
type Self struct {
	ID     string
	Region string
	VPC    string     // empty if IMDS does not say
	IP     netip.Addr // primary private IPv4
}

// EC2 lists the instances tagged with the community tag through the EC2
// API (DescribeInstances with server-side filters: the tag key, state
// running and this instance's VPC, all pages). It uses the AWS SDK's
// default configuration chain, so AWS_REGION, AWS_ENDPOINT_URL_EC2 and
// AWS_EC2_METADATA_SERVICE_ENDPOINT apply.
//
// Instances with a malformed tag, without a private IPv4 address, claiming
// an overlay address another instance claims too (both are left out), or
// whose overlay prefix disagrees with the community's are left out, logged
// once and counted. An instance is removed when EC2 reports it stopped or
// terminated, or when it was absent from two consecutive successful
// listings; until then the last listing's entry stays.
//
// Members must not be called concurrently with itself; Problems and Counts
// may be called at any time.
type EC2 struct {
	client *ec2.Client
	self   Self
	tagKey string
	log    *slog.Logger

	last   map[string]Member // the previous successful result, by ID
	absent map[string]int    // consecutive listings an instance of last was missing from

	mu       sync.Mutex
	problems []Problem
	reported map[string]string // ID -> detail last logged
	counts   map[string]uint64 // problems by reason, cumulative
}

// NewEC2 loads the AWS configuration and asks IMDSv2 who this instance is.
func NewEC2(ctx context.Context, cfg EC2Config) (*EC2, error) {
	if cfg.TagKey == "" {
		cfg.TagKey = DefaultTagKey
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// The source retries on its own schedule (see Reconciler), so the
	// SDK makes one attempt per call.
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(1))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	md := imds.NewFromConfig(awsCfg, func(o *imds.Options) { o.HTTPClient = hideBodies(o.HTTPClient) })
	get := func(path string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := md.GetMetadata(c, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", fmt.Errorf("instance metadata %s: %w (is this an EC2 instance with IMDSv2 reachable?)", path, err)
		}
		defer out.Content.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		for b.Len() < 4096 {
			n, err := out.Content.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return strings.TrimSpace(b.String()), nil
	}
	var self Self
	if self.ID, err = get("instance-id"); err != nil {
		return nil, err
	}
	ip, err := get("local-ipv4")
	if err != nil {
		return nil, err
	}
	if self.IP, err = netip.ParseAddr(ip); err != nil || !self.IP.Is4() {
		return nil, fmt.Errorf("instance metadata local-ipv4 %q is not an IPv4 address", ip)
	}
	if mac, err := get("mac"); err == nil {
		self.VPC, _ = get("network/interfaces/macs/" + mac + "/vpc-id")
	}
	if awsCfg.Region == "" {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := md.GetRegion(c, &imds.GetRegionInput{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("no region: set AWS_REGION, or make instance metadata reachable: %w", err)
		}
		awsCfg.Region = r.Region
	}
	self.Region = awsCfg.Region
	return &EC2{
		client:   ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.HTTPClient = hideBodies(o.HTTPClient) }),
		self:     self,
		tagKey:   cfg.TagKey,
		log:      cfg.Logger,
		last:     map[string]Member{},
		absent:   map[string]int{},
		reported: map[string]string{},
		counts:   map[string]uint64{},
	}, nil
}

// Name implements Source.
func (e *EC2) Name() string { return "ec2" }

// Self returns this instance's identity.
func (e *EC2) Self() Self { return e.self }

// Problems returns the instances the last successful listing left out.
func (e *EC2) Problems() []Problem {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.problems)
}

// Counts returns how often each problem was seen, by reason, across all
// listings.
func (e *EC2) Counts() map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]uint64, len(e.counts))
	for k, v := range e.counts {
		m[k] = v
	}
	return m
}

// IsThrottled reports whether err is the EC2 API's request rate limit.
func IsThrottled(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "RequestLimitExceeded" || ae.ErrorCode() == "Throttling")
}

// Members implements Source.
func (e *EC2) Members(ctx context.Context) ([]Member, error) {
	filters := []types.Filter{
		{Name: aws.String("tag-key"), Values: []string{e.tagKey}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}
	if e.self.VPC != "" {
		filters = append(filters, types.Filter{Name: aws.String("vpc-id"), Values: []string{e.self.VPC}})
	}
	p := ec2.NewDescribeInstancesPaginator(e.client, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(1000),
	})
	var members []Member
	var problems []Problem
	seen := map[string]bool{}
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ec2 DescribeInstances: %w", err)
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				id := aws.ToString(in.InstanceId)
				if id == "" || seen[id] {
					continue
				}
				seen[id] = true
				m, prob, ok := e.member(in)
				if !ok {
					problems = append(problems, prob)
					continue
				}
				members = append(members, m)
			}
		}
	}
	members, problems = consistent(members, problems, e.self.ID)
	members = e.graceAndGone(ctx, members, seen)
	e.record(problems)
	return members, nil
}

// member turns one instance into a Member, or says why it cannot be one.
func (e *EC2) member(in types.Instance) (Member, Problem, bool) {
	id := aws.ToString(in.InstanceId)
	var tag string
	found := false
	for _, t := range in.Tags {
		if aws.ToString(t.Key) == e.tagKey {
			tag, found = aws.ToString(t.Value), true
		}
	}
	if !found {
		return Member{}, Problem{id, "malformed_tag", fmt.Sprintf("no tag %s", e.tagKey)}, false
	}
	t, err := ParseTag(tag)
	if err != nil {
		return Member{}, Problem{id, "malformed_tag", fmt.Sprintf("tag %s: %v", e.tagKey, err)}, false
	}
	ip, err := netip.ParseAddr(aws.ToString(in.PrivateIpAddress))
	if err != nil || !ip.Is4() {
		return Member{}, Problem{id, "no_private_ip", "instance has no private IPv4 address; give it one or remove its tag"}, false
	}
	return Member{Underlay: ip, Community: t.Community, Overlay: t.Overlay, Overlay6: t.Overlay6, ID: id}, Problem{}, true
}

// consistent leaves out, per community, instances that claim an overlay or
// underlay address another instance claims too (all of them), and those
// whose overlay prefix differs from the community's: the prefix of self
// when self is a member, else the most common one.
func consistent(members []Member, problems []Problem, self string) ([]Member, []Problem) {
	type key struct {
		community string
		addr      netip.Addr
	}
	overlays := map[key][]string{}
	underlays := map[key][]string{}
	prefixes := map[string]map[netip.Prefix]int{}
	selfPrefix := map[string]netip.Prefix{}
	for _, m := range members {
		overlays[key{m.Community, m.Overlay.Addr()}] = append(overlays[key{m.Community, m.Overlay.Addr()}], m.ID)
		if m.Overlay6.IsValid() {
			overlays[key{m.Community, m.Overlay6.Addr()}] = append(overlays[key{m.Community, m.Overlay6.Addr()}], m.ID)
		}
		underlays[key{m.Community, m.Underlay}] = append(underlays[key{m.Community, m.Underlay}], m.ID)
		if prefixes[m.Community] == nil {
			prefixes[m.Community] = map[netip.Prefix]int{}
		}
		prefixes[m.Community][m.Overlay.Masked()]++
		if m.ID == self {
			selfPrefix[m.Community] = m.Overlay.Masked()
		}
	}
	want := map[string]netip.Prefix{}
	for c, counts := range prefixes {
		if p, ok := selfPrefix[c]; ok {
			want[c] = p
			continue
		}
		best, n := netip.Prefix{}, -1
		for p, k := range counts {
			if k > n || (k == n && p.Addr().Less(best.Addr())) {
				best, n = p, k
			}
		}
		want[c] = best
	}
	var out []Member
	for _, m := range members {
		switch ids := overlays[key{m.Community, m.Overlay.Addr()}]; {
		case len(ids) > 1:
			problems = append(problems, Problem{m.ID, "duplicate_overlay",
				fmt.Sprintf("overlay address %v is claimed by %s; give each instance its own", m.Overlay.Addr(), strings.Join(ids, ", "))})
			continue
		}
		if ids := overlays[key{m.Community, m.Overlay6.Addr()}]; m.Overlay6.IsValid() && len(ids) > 1 {
			problems = append(problems, Problem{m.ID, "duplicate_overlay",
				fmt.Sprintf("IPv6 overlay address %v is claimed by %s; give each instance its own", m.Overlay6.Addr(), strings.Join(ids, ", "))})
			continue
		}
		if ids := underlays[key{m.Community, m.Underlay}]; len(ids) > 1 {
			problems = append(problems, Problem{m.ID, "duplicate_underlay",
				fmt.Sprintf("underlay address %v is claimed by %s", m.Underlay, strings.Join(ids, ", "))})
			continue
		}
		if p := want[m.Community]; m.Overlay.Masked() != p {
			problems = append(problems, Problem{m.ID, "prefix_mismatch",
				fmt.Sprintf("overlay %v is not in the community's %v; tag it with an address of %v", m.Overlay, p, p)})
			continue
		}
		out = append(out, m)
	}
	return out, problems
}

// graceAndGone applies the removal rules to instances of the previous
// result that this listing lacks.
func (e *EC2) graceAndGone(ctx context.Context, members []Member, seen map[string]bool) []Member {
	present := map[string]bool{}
	for _, m := range members {
		present[m.ID] = true
	}
	var missing []string
	for id := range e.last {
		if !present[id] && !seen[id] {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	gone := map[string]string{}
	if len(missing) > 0 {
		// Ask for the missing ones by ID: EC2 still lists a stopped or
		// terminated instance for a while, and then it goes at once.
		out, err := e.client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: missing})
		if err == nil {
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					if in.State != nil && in.State.Name != types.InstanceStateNameRunning && in.State.Name != types.InstanceStateNamePending {
						gone[aws.ToString(in.InstanceId)] = string(in.State.Name)
					}
				}
			}
		}
	}
	next := map[string]Member{}
	for _, m := range members {
		next[m.ID] = m
		delete(e.absent, m.ID)
	}
	for _, id := range missing {
		if state, ok := gone[id]; ok {
			e.log.Info("ec2: instance left the community", "instance", id, "state", state)
			delete(e.absent, id)
			continue
		}
		e.absent[id]++
		if e.absent[id] >= 2 {
			e.log.Info("ec2: instance left the community", "instance", id, "why", "absent from two listings")
			delete(e.absent, id)
			continue
		}
		next[id] = e.last[id]
		members = append(members, e.last[id])
	}
	for id := range e.absent {
		if _, ok := next[id]; !ok {
			delete(e.absent, id)
		}
	}
	e.last = next
	return members
}

// record keeps the problems of a listing, logging each instance's problem
// once until it changes, and counting them.
func (e *EC2) record(problems []Problem) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.problems = problems
	now := map[string]bool{}
	for _, p := range problems {
		now[p.ID] = true
		e.counts[p.Reason]++
		if e.reported[p.ID] != p.Detail {
			e.reported[p.ID] = p.Detail
			e.log.Warn("ec2: instance left out of the mesh", "instance", p.ID, "reason", p.Reason, "detail", p.Detail)
		}
	}
	for id := range e.reported {
		if !now[id] {
			delete(e.reported, id)
		}
	}
}

// httpDoer is the SDK's HTTP client interface.
type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// bodyHider passes requests on with their bodies reduced to Read and
// Close. The SDK's request body also has WriteTo, which fails with io.EOF
// once the SDK closed the body after an early response; net/http, still
// checking for bytes beyond Content-Length, takes that for a write error and
// closes the connection while the response is being read. Endpoints close
// by (a VPC endpoint, a local test server) answer fast enough to hit it.
type bodyHider struct{ next httpDoer }

func hideBodies(c httpDoer) httpDoer {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return bodyHider{c}
}

func (b bodyHider) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r = r.Clone(r.Context())
		r.Body = readCloserOnly{r.Body}
	}
	return b.next.Do(r)
}

type readCloserOnly struct{ io.ReadCloser }
