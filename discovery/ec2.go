package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
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

	// hostAddrs lists this host's addresses on its non-loopback
	// interfaces that are up; default interfaceAddrs. Tests replace it.
	hostAddrs func() ([]netip.Addr, error)
	// dial, when set, makes every connection of the SDK's clients, so
	// that tests can serve the fixed IMDS addresses on loopback.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Self is this instance as the instance metadata service (IMDSv2) sees it.
// An IPv4-only instance has only IP, an IPv6-only one only IP6, and a
// dual-stack one both.
type Self struct {
	ID     string
	Region string
	VPC    string     // empty if IMDS does not say
	IP     netip.Addr // primary private IPv4; the zero Addr if the instance has none
	IP6    netip.Addr // primary IPv6; the zero Addr if the instance has none
}

// EC2 lists the instances tagged with the community tag through the EC2
// API (DescribeInstances with server-side filters: the tag key, state
// running and this instance's VPC, all pages). It uses the AWS SDK's
// default configuration chain, so AWS_REGION, AWS_ENDPOINT_URL_EC2,
// AWS_EC2_METADATA_SERVICE_ENDPOINT and
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE apply.
//
// Each instance's underlay addresses are its primary private IPv4 address
// and its primary IPv6 address (see Member): a dual-stack instance has
// both, Underlay and Underlay6; an IPv6-only one has its IPv6 address in
// Underlay. Reach then picks the family of each tunnel.
//
// Instances with a malformed tag, with neither a private IPv4 nor a usable
// IPv6 address (no_private_ip), claiming an overlay or underlay address
// another instance claims too (all of them are left out), or whose overlay
// prefix disagrees with the community's are left out, logged once and
// counted. An instance is removed when EC2 reports it stopped or
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

	problems *ProblemLog
}

// NewEC2 loads the AWS configuration and asks IMDSv2 who this instance is.
//
// IMDS is reached over IPv4 (169.254.169.254) unless the configuration
// names an endpoint or an endpoint mode (AWS_EC2_METADATA_SERVICE_ENDPOINT,
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE or their shared-config
// equivalents), or this host has no global unicast IPv4 address on an
// interface but loopback: then it is reached over IPv6 ([fd00:ec2::254],
// which the instance's metadata options must enable). When the endpoint
// chosen from the host's addresses gives no answer at all, the other one
// is tried once. The choice is logged.
//
// The instance's own addresses come from IMDS: local-ipv4, and ipv6 (or
// the first of network/interfaces/macs/MAC/ipv6s). An instance needs one
// of the two; an IPv6-only instance has no local-ipv4.
//
// The EC2 API endpoint is the SDK's default, IPv4 only, except on an
// IPv6-only instance: there, unless the configuration names an endpoint
// (AWS_ENDPOINT_URL_EC2) or says whether to use the dual-stack one
// (AWS_USE_DUALSTACK_ENDPOINT, use_dualstack_endpoint), the dual-stack
// endpoint ec2.REGION.api.aws is used, which answers over IPv6. Setting
// AWS_USE_DUALSTACK_ENDPOINT=false keeps the IPv4 one (reached through
// the subnet's DNS64 and a NAT64 gateway).
func NewEC2(ctx context.Context, cfg EC2Config) (*EC2, error) {
	if cfg.TagKey == "" {
		cfg.TagKey = DefaultTagKey
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.hostAddrs == nil {
		cfg.hostAddrs = interfaceAddrs
	}
	// The source retries on its own schedule (see Reconciler), so the
	// SDK makes one attempt per call.
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(1))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	var dialing httpDoer // nil: the SDK's default client
	if cfg.dial != nil {
		dialing = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.Proxy = nil
			tr.DialContext = cfg.dial
		})
	}
	httpClient := func(c httpDoer) httpDoer {
		if dialing != nil {
			c = dialing
		}
		return hideBodies(c)
	}
	// newIMDS makes the IMDS client. With mode unset, chooseIMDSMode
	// decides the endpoint mode; auto records whether it did so from this
	// host's addresses rather than from the configuration, and used is the
	// mode.
	var (
		auto bool
		used imds.EndpointModeState
	)
	newIMDS := func(mode imds.EndpointModeState, why string) *imds.Client {
		return imds.NewFromConfig(awsCfg, func(o *imds.Options) {
			o.HTTPClient = httpClient(o.HTTPClient)
			if mode == imds.EndpointModeStateUnset {
				mode, why, auto = chooseIMDSMode(o, cfg.hostAddrs)
			}
			o.EndpointMode, used = mode, mode
			endpoint, name := o.Endpoint, imdsModeName[mode]
			if endpoint == "" {
				endpoint = os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
			}
			if endpoint == "" {
				endpoint = imdsDefaultEndpoint[mode]
			} else {
				name = endpointFamily(endpoint)
			}
			cfg.Logger.Info("ec2: instance metadata endpoint", "mode", name, "endpoint", endpoint, "why", why)
		})
	}
	md := newIMDS(imds.EndpointModeStateUnset, "")
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
	if self.ID, err = get("instance-id"); err != nil && auto && noAnswer(err) && ctx.Err() == nil {
		// The family chosen from the host's addresses can be wrong (a
		// container bridge's IPv4 address on an IPv6-only instance, say):
		// try the other endpoint once before giving up.
		other := imds.EndpointModeStateIPv6
		if used == imds.EndpointModeStateIPv6 {
			other = imds.EndpointModeStateIPv4
		}
		md = newIMDS(other, fmt.Sprintf("the %s endpoint did not answer (%v)", imdsModeName[used], err))
		var err2 error
		if self.ID, err2 = get("instance-id"); err2 != nil {
			return nil, fmt.Errorf("%w; over %s: %v", err, imdsModeName[other], err2)
		}
	} else if err != nil {
		return nil, err
	}
	mac, macErr := get("mac")
	ip, err4 := get("local-ipv4")
	switch {
	case err4 == nil:
		if self.IP, err = netip.ParseAddr(ip); err != nil || !self.IP.Is4() {
			return nil, fmt.Errorf("instance metadata local-ipv4 %q is not an IPv4 address", clip(ip))
		}
	case !isNotFound(err4):
		return nil, err4
	}
	// An IPv6-only instance has no local-ipv4 (404). Its IPv6 address is
	// "ipv6", or the first of its primary interface's "ipv6s".
	ip6, err6 := get("ipv6")
	if isNotFound(err6) && macErr == nil {
		ip6, err6 = get("network/interfaces/macs/" + mac + "/ipv6s")
		ip6, _, _ = strings.Cut(ip6, "\n")
		ip6 = strings.TrimSpace(ip6)
	}
	if err6 == nil {
		a, err := netip.ParseAddr(ip6)
		if err != nil || !usableIPv6(a) {
			err6 = fmt.Errorf("instance metadata ipv6 %q is not a global unicast IPv6 address", clip(ip6))
		} else {
			self.IP6 = a
		}
	}
	switch {
	case self.IP.IsValid() && err6 != nil && !isNotFound(err6):
		cfg.Logger.Warn("ec2: this instance's IPv6 address is unknown; it tunnels over IPv4 only", "err", err6)
	case !self.IP.IsValid() && !self.IP6.IsValid():
		if isNotFound(err6) {
			return nil, fmt.Errorf("instance metadata has neither local-ipv4 nor ipv6: this instance has no private IPv4 or IPv6 address; give it one")
		}
		return nil, fmt.Errorf("this instance has no private IPv4 address (local-ipv4 not found), and its IPv6 address is unknown: %w", err6)
	}
	if macErr == nil {
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
		client: ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
			o.HTTPClient = httpClient(o.HTTPClient)
			if useDualStack(self, o) {
				o.EndpointOptions.UseDualStackEndpoint = aws.DualStackEndpointStateEnabled
				cfg.Logger.Info("ec2: this instance has no IPv4 address: the EC2 API is reached at its dual-stack endpoint", "region", self.Region)
			}
		}),
		self:     self,
		tagKey:   cfg.TagKey,
		log:      cfg.Logger,
		last:     map[string]Member{},
		absent:   map[string]int{},
		problems: &ProblemLog{Msg: "ec2: instance left out of the mesh", IDKey: "instance", Logger: cfg.Logger},
	}, nil
}

// useDualStack reports whether the EC2 client of an instance self should
// use the dual-stack endpoint: self has no IPv4 address, and the
// configuration neither names an endpoint nor chose.
func useDualStack(self Self, o *ec2.Options) bool {
	return !self.IP.IsValid() && o.BaseEndpoint == nil && o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateUnset
}

// Name implements Source.
func (e *EC2) Name() string { return "ec2" }

// Self returns this instance's identity.
func (e *EC2) Self() Self { return e.self }

// Problems returns the instances the last successful listing left out.
func (e *EC2) Problems() []Problem { return e.problems.Problems() }

// Counts returns how often each problem was seen, by reason, across all
// listings.
func (e *EC2) Counts() map[string]uint64 { return e.problems.Counts() }

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
	e.problems.Record(problems)
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
	m := Member{Community: t.Community, Overlay: t.Overlay, Overlay6: t.Overlay6, ID: id}
	ip4, err := netip.ParseAddr(aws.ToString(in.PrivateIpAddress))
	if ip4 = ip4.Unmap(); err != nil || !ip4.Is4() {
		ip4 = netip.Addr{}
	}
	ip6, unusable := instanceIPv6(in)
	switch {
	case ip4.IsValid() && ip6.IsValid():
		m.Underlay, m.Underlay6 = ip4, ip6
	case ip4.IsValid():
		m.Underlay = ip4
	case ip6.IsValid():
		m.Underlay = ip6
	case unusable.IsValid():
		return Member{}, Problem{id, "no_private_ip", fmt.Sprintf("instance has no private IPv4 address, and its IPv6 address %s is not global unicast; give it a private IPv4 or a global IPv6 address, or remove its tag", unusable)}, false
	default:
		return Member{}, Problem{id, "no_private_ip", "instance has no private IPv4 or IPv6 address; launch it in a subnet that gives it one (IPv4, dual-stack or IPv6-only), or remove its tag"}, false
	}
	return m, Problem{}, true
}

// instanceIPv6 returns the instance's primary IPv6 address: on its primary
// network interface (device index 0 on network card 0), the address marked
// primary (IsPrimaryIpv6), else the instance's Ipv6Address, else the
// interface's first IPv6 address; failing those, the first IPv6 address of
// any other interface. Only global unicast addresses (unique local ones
// included) count; unusable is the first other one seen, for the message
// when there is no usable one.
func instanceIPv6(in types.Instance) (addr, unusable netip.Addr) {
	nis := slices.Clone(in.NetworkInterfaces)
	order := func(ni types.InstanceNetworkInterface) (int32, int32) {
		if ni.Attachment == nil {
			return 1 << 30, 1 << 30 // unknown: last
		}
		return aws.ToInt32(ni.Attachment.NetworkCardIndex), aws.ToInt32(ni.Attachment.DeviceIndex)
	}
	slices.SortStableFunc(nis, func(a, b types.InstanceNetworkInterface) int {
		ac, ad := order(a)
		bc, bd := order(b)
		return cmp.Or(cmp.Compare(ac, bc), cmp.Compare(ad, bd))
	})
	var candidates []*string
	if len(nis) > 0 {
		if c, d := order(nis[0]); c == 0 && d == 0 {
			for _, a := range nis[0].Ipv6Addresses {
				if aws.ToBool(a.IsPrimaryIpv6) {
					candidates = append(candidates, a.Ipv6Address)
				}
			}
		}
	}
	candidates = append(candidates, in.Ipv6Address)
	for _, ni := range nis {
		for _, a := range ni.Ipv6Addresses {
			candidates = append(candidates, a.Ipv6Address)
		}
	}
	for _, c := range candidates {
		if c == nil {
			continue
		}
		a, err := netip.ParseAddr(*c)
		switch {
		case err != nil:
		case usableIPv6(a):
			return a, netip.Addr{}
		case !unusable.IsValid():
			unusable = a
		}
	}
	return netip.Addr{}, unusable
}

// usableIPv6 reports whether a can be an IPv6 underlay address: global
// unicast (unique local included), not IPv4-mapped, without a zone.
func usableIPv6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.Zone() == "" && a.IsGlobalUnicast()
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
		if m.Underlay6.IsValid() {
			underlays[key{m.Community, m.Underlay6}] = append(underlays[key{m.Community, m.Underlay6}], m.ID)
		}
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
		if ids := underlays[key{m.Community, m.Underlay6}]; m.Underlay6.IsValid() && len(ids) > 1 {
			problems = append(problems, Problem{m.ID, "duplicate_underlay",
				fmt.Sprintf("IPv6 underlay address %v is claimed by %s", m.Underlay6, strings.Join(ids, ", "))})
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

// The IMDS endpoint modes, by name and default endpoint, for the log.
var (
	imdsModeName = map[imds.EndpointModeState]string{
		imds.EndpointModeStateUnset: "IPv4",
		imds.EndpointModeStateIPv4:  "IPv4",
		imds.EndpointModeStateIPv6:  "IPv6",
	}
	imdsDefaultEndpoint = map[imds.EndpointModeState]string{
		imds.EndpointModeStateUnset: "http://169.254.169.254",
		imds.EndpointModeStateIPv4:  "http://169.254.169.254",
		imds.EndpointModeStateIPv6:  "http://[fd00:ec2::254]",
	}
)

// chooseIMDSMode decides how to reach IMDS. An endpoint or endpoint mode
// in the configuration (o, as the SDK resolved it, or the environment)
// wins. Otherwise IMDS is reached over IPv6 when hostAddrs lists no global
// unicast IPv4 address, and over IPv4, the SDK's default, when it does or
// cannot tell; auto is then true. why says which rule decided.
func chooseIMDSMode(o *imds.Options, hostAddrs func() ([]netip.Addr, error)) (mode imds.EndpointModeState, why string, auto bool) {
	switch {
	case o.Endpoint != "" || os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") != "":
		return o.EndpointMode, "endpoint set by AWS_EC2_METADATA_SERVICE_ENDPOINT or ec2_metadata_service_endpoint", false
	case o.EndpointMode != imds.EndpointModeStateUnset:
		return o.EndpointMode, "mode set by AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE or ec2_metadata_service_endpoint_mode", false
	}
	addrs, err := hostAddrs()
	if err != nil {
		return imds.EndpointModeStateIPv4, fmt.Sprintf("cannot list this host's addresses (%v); set AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6 on an IPv6-only instance", err), true
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && a.IsGlobalUnicast() {
			return imds.EndpointModeStateIPv4, "this host has an IPv4 address (" + a.String() + ")", true
		}
	}
	return imds.EndpointModeStateIPv6, "this host has no IPv4 address but on loopback", true
}

// noAnswer reports whether err is a failure to get any HTTP answer, such
// as an unreachable network, rather than an error status.
func noAnswer(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return !errors.As(err, &re) && !errors.Is(err, context.Canceled)
}

// endpointFamily names the address family of an endpoint URL's host: "IPv4",
// "IPv6", or "custom" for a host name or a URL it cannot parse.
func endpointFamily(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "custom"
	}
	a, err := netip.ParseAddr(u.Hostname())
	switch {
	case err != nil:
		return "custom"
	case a.Unmap().Is4():
		return "IPv4"
	}
	return "IPv6"
}

// interfaceAddrs lists the addresses of this host's interfaces that are up,
// loopback left out.
func interfaceAddrs() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out, nil
}

// isNotFound reports whether err is an HTTP 404 from IMDS: the path does
// not exist for this instance.
func isNotFound(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
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
