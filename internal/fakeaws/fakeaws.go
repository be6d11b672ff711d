package fakeaws

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// AccountID is the AWS account that owns every fake instance. It appears as
// ownerId in DescribeInstances and as accountId in the identity document.
const AccountID = "123456789012"

// ImageID is the AMI every fake instance reports.
const ImageID = "ami-0fa4e0c5a1b2c3d4e"

// InstanceType is the instance type every fake instance reports.
const InstanceType = "t3.micro"

// Instance describes one fake EC2 instance. The zero values of the optional
// fields mean: no private IPv4 address, no IPv6 address, no VPC, no tags,
// state "running", and a MAC address derived from ID.
//
// A dual-stack instance has PrivateIP and IPv6; an IPv6-only instance, as
// in an IPv6-only subnet, has IPv6 but no PrivateIP.
type Instance struct {
	ID        string            // "i-...", required
	PrivateIP netip.Addr        // invalid = no private IPv4
	VPC       string            // "vpc-..."
	State     string            // "pending" | "running" | "stopping" | "stopped" | "shutting-down" | "terminated"; "" = "running"
	Tags      map[string]string // copied by Put
	MAC       string            // for IMDS network paths and the network interface; "" = derived from ID

	// IPv6 are the IPv6 addresses of the instance's network interface, in
	// order; none = no IPv6. Any plain IPv6 address (no zone, not
	// IPv4-mapped) is accepted, even one no instance gets, such as a
	// link-local one, so that tests can offer it. Copied by Put.
	IPv6 []netip.Addr
	// PrimaryIPv6 marks IPv6[0] as the primary IPv6 address
	// (isPrimaryIpv6), as EC2 does for an interface launched with
	// EnablePrimaryIpv6, and reports it as the instance's ipv6Address too.
	PrimaryIPv6 bool
}

// stateCodes maps an instance state name to its EC2 state code. Only the low
// byte is used by EC2; the high byte is internal to AWS and always 0 here.
var stateCodes = map[string]int{
	"pending":       0,
	"running":       16,
	"shutting-down": 32,
	"terminated":    48,
	"stopping":      64,
	"stopped":       80,
}

// instance is an Instance as the server holds it.
type instance struct {
	Instance
	launched time.Time
}

// fault is one injected DescribeInstances failure.
type fault struct {
	status int
	code   string
	msg    string
}

// Server is a fake EC2 Query API and instance metadata service (IMDSv2)
// holding a set of instances in one region. It is safe for concurrent use.
// Serve it with [Server.Handler], for example through httptest.NewServer.
type Server struct {
	region string

	mu       sync.Mutex
	insts    map[string]*instance
	pageSize int
	faults   []fault
	calls    int
	identity func(*http.Request) string
	hook     func(action string, form url.Values)
	tokens   map[string]time.Time // IMDS session token -> expiry
	now      func() time.Time     // replaced by tests
}

// New returns an empty server for the given region, such as "eu-west-1".
// Availability zones are the region followed by "a".
func New(region string) *Server {
	return &Server{
		region:   region,
		insts:    make(map[string]*instance),
		pageSize: 1000,
		tokens:   make(map[string]time.Time),
		now:      time.Now,
	}
}

// Region returns the region given to New.
func (s *Server) Region() string { return s.region }

// Handler returns the one handler that serves both APIs: the instance
// metadata service under /latest/, and the EC2 Query API on every other
// path (the SDK posts to /).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest" || strings.HasPrefix(r.URL.Path, "/latest/") {
			s.serveIMDS(w, r)
			return
		}
		s.serveQuery(w, r)
	})
}

// StartServer starts an httptest.Server for h, such as Server.Handler,
// listening on addr: "[::1]:0" serves on the IPv6 loopback address, for
// tests of IMDS over IPv6. Its URL is then http://[::1]:PORT. The error is
// that of net.Listen, such as where the host has no IPv6. Close the server
// when done.
func StartServer(addr string, h http.Handler) (*httptest.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	return ts, nil
}

// Put adds the instance, or replaces the one with the same ID. A replaced
// instance keeps its launch time. Put panics if ID does not start with "i-",
// State is not a valid state name, PrivateIP is not IPv4, an IPv6 address
// is not IPv6 (IPv4, IPv4-mapped or with a zone), PrimaryIPv6 is set
// without IPv6, or MAC is not an Ethernet address: these are mistakes in
// the test.
func (s *Server) Put(in Instance) {
	if !strings.HasPrefix(in.ID, "i-") || len(in.ID) < 3 {
		panic(fmt.Sprintf("fakeaws: instance ID %q does not start with \"i-\"", in.ID))
	}
	if in.State == "" {
		in.State = "running"
	}
	mustState(in.State)
	in.PrivateIP = in.PrivateIP.Unmap()
	if in.PrivateIP.IsValid() && !in.PrivateIP.Is4() {
		panic(fmt.Sprintf("fakeaws: private IP %v of %s is not IPv4", in.PrivateIP, in.ID))
	}
	in.IPv6 = slices.Clone(in.IPv6)
	for _, a := range in.IPv6 {
		if !a.Is6() || a.Is4In6() || a.Zone() != "" {
			panic(fmt.Sprintf("fakeaws: IPv6 address %v of %s is not a plain IPv6 address", a, in.ID))
		}
	}
	if in.PrimaryIPv6 && len(in.IPv6) == 0 {
		panic(fmt.Sprintf("fakeaws: %s has PrimaryIPv6 but no IPv6 address", in.ID))
	}
	if in.MAC == "" {
		in.MAC = derivedMAC(in.ID)
	}
	hw, err := net.ParseMAC(in.MAC)
	if err != nil || len(hw) != 6 {
		panic(fmt.Sprintf("fakeaws: MAC %q of %s is not an Ethernet address", in.MAC, in.ID))
	}
	in.MAC = hw.String() // lower case with colons, as IMDS writes it
	tags := make(map[string]string, len(in.Tags))
	for k, v := range in.Tags {
		tags[k] = v
	}
	in.Tags = tags

	s.mu.Lock()
	defer s.mu.Unlock()
	launched := s.now().UTC().Truncate(time.Second)
	if old, ok := s.insts[in.ID]; ok {
		launched = old.launched
	}
	s.insts[in.ID] = &instance{Instance: in, launched: launched}
}

// Remove deletes the instance with this ID, if there is one. A removed
// instance disappears from DescribeInstances at once, unlike in EC2, where a
// terminated instance stays visible for about an hour; use SetState with
// "terminated" for that.
func (s *Server) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.insts, id)
}

// SetState changes the state of the instance with this ID; it does nothing
// if there is none. It panics if state is not a valid state name.
func (s *Server) SetState(id, state string) {
	mustState(state)
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.insts[id]; ok {
		in.State = state
	}
}

// SetPageSize sets how many instances one DescribeInstances page holds when
// the request has no MaxResults (default 1000). With MaxResults, the smaller
// of the two applies. It panics if n < 1.
func (s *Server) SetPageSize(n int) {
	if n < 1 {
		panic(fmt.Sprintf("fakeaws: page size %d < 1", n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// Throttle makes the next n DescribeInstances calls fail with HTTP 503 and
// the error code RequestLimitExceeded, as EC2 does when it throttles an
// account. The SDK's standard retryer retries this code.
func (s *Server) Throttle(n int) {
	s.addFaults(n, fault{
		status: http.StatusServiceUnavailable,
		code:   "RequestLimitExceeded",
		msg:    "Request limit exceeded.",
	})
}

// Fail makes the next n DescribeInstances calls fail with this HTTP status,
// which must be 5xx (it panics otherwise). The error code is Unavailable for
// 503 and InternalError for any other status. Faults queued by Throttle and
// Fail are served in the order they were queued.
func (s *Server) Fail(status, n int) {
	if status < 500 || status > 599 {
		panic(fmt.Sprintf("fakeaws: Fail status %d is not 5xx", status))
	}
	f := fault{status: status, code: "InternalError",
		msg: "An internal error has occurred."}
	if status == http.StatusServiceUnavailable {
		f.code, f.msg = "Unavailable", "The server is overloaded and can't handle the request."
	}
	s.addFaults(n, f)
}

func (s *Server) addFaults(n int, f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// Calls returns how many DescribeInstances requests the server has
// received, including the ones that failed for any reason.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// SetIdentity sets how IMDS decides which instance a request comes from:
// fn returns its instance ID, or "" for none (IMDS then answers 404). By
// default the server picks the instance whose PrivateIP, or one of whose
// IPv6 addresses, equals the request's remote address. Tests whose clients all share the loopback
// address set a fixed ID. A nil fn restores the default. fn is called
// without the server's lock held, so it may call the server.
func (s *Server) SetIdentity(fn func(r *http.Request) string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identity = fn
}

// Hook sets a function that observes every EC2 Query API request after its
// form is parsed and before it is answered, failed requests included. fn
// gets its own copy of the form, and is called without the server's lock
// held. A nil fn removes the hook.
func (s *Server) Hook(fn func(action string, form url.Values)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = fn
}

func mustState(state string) {
	if _, ok := stateCodes[state]; !ok {
		panic(fmt.Sprintf("fakeaws: invalid instance state %q", state))
	}
}

// hexID returns n hex digits derived from the prefix p and the string v, to
// make stable resource IDs ("r-", "eni-", "subnet-") from an instance or VPC
// ID.
func hexID(p, v string, n int) string {
	h := fnv.New64a()
	h.Write([]byte(p))
	h.Write([]byte(v))
	sum := h.Sum(nil)
	h.Write([]byte{0})
	sum = h.Sum(sum)
	return p + hex.EncodeToString(sum)[:n]
}

// derivedMAC returns a stable, locally administered unicast MAC address
// for an instance ID, in the lower-case form IMDS uses.
func derivedMAC(id string) string {
	h := fnv.New64a()
	h.Write([]byte(id))
	b := h.Sum(nil)
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4])
}

// subnetOf returns the subnet ID of the instances in a VPC: one subnet per
// VPC, in availability zone "a".
func subnetOf(vpc string) string {
	if vpc == "" {
		return ""
	}
	return hexID("subnet-", vpc, 17)
}

// randomID returns a random identifier shaped like a UUID, as EC2 request
// IDs are.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}
