package fakeaws

// The EC2 Query API: a form-encoded request (Action, Version, then the
// action's parameters, lists flattened as Name.1, Name.2, ...) answered with
// XML in the 2016-11-15 namespace, or with an <Response><Errors> document
// and a 4xx or 5xx status.

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Namespace is the XML namespace of EC2 API version 2016-11-15, the version
// the SDK sends.
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// apiError is an EC2 error response: an HTTP status and an error code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badParam(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf(format, args...)}
}

// serveQuery answers one EC2 Query API request.
func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, &apiError{http.StatusMethodNotAllowed, "InvalidAction",
			"The HTTP method " + r.Method + " is not supported."})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, badParam("The request could not be parsed: %v", err))
		return
	}
	action := r.Form.Get("Action")

	s.mu.Lock()
	if action == "DescribeInstances" {
		s.calls++
	}
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(action, cloneForm(r.Form))
	}

	if err := s.checkAuth(r); err != nil {
		writeError(w, err)
		return
	}
	switch action {
	case "":
		writeError(w, &apiError{http.StatusBadRequest, "MissingAction",
			"The request must contain the parameter Action."})
	case "DescribeInstances":
		s.describeInstances(w, r.Form)
	default:
		writeError(w, &apiError{http.StatusBadRequest, "InvalidAction",
			"The action " + action + " is not valid for this web service."})
	}
}

// checkAuth makes sure the request was signed with Signature Version 4 for
// the service ec2 in the server's region. The signature itself is not
// checked: any credentials are accepted.
func (s *Server) checkAuth(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return &apiError{http.StatusForbidden, "AuthFailure",
			"AWS was not able to validate the provided access credentials (no Authorization header)."}
	}
	alg, rest, _ := strings.Cut(h, " ")
	if alg != "AWS4-HMAC-SHA256" {
		return &apiError{http.StatusForbidden, "AuthFailure",
			"Unsupported signing algorithm " + strconv.Quote(alg) + "; want AWS4-HMAC-SHA256."}
	}
	// Credential=AKID/20060102/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...
	for _, part := range strings.Split(rest, ",") {
		cred, ok := strings.CutPrefix(strings.TrimSpace(part), "Credential=")
		if !ok {
			continue
		}
		scope := strings.Split(cred, "/")
		if len(scope) != 5 || scope[4] != "aws4_request" {
			return &apiError{http.StatusForbidden, "AuthFailure", "Malformed credential scope " + strconv.Quote(cred) + "."}
		}
		if scope[2] != s.region {
			return &apiError{http.StatusForbidden, "AuthFailure",
				"Credential should be scoped to a valid region, not " + strconv.Quote(scope[2]) + " (this endpoint serves " + strconv.Quote(s.region) + ")."}
		}
		if scope[3] != "ec2" {
			return &apiError{http.StatusForbidden, "AuthFailure",
				"Credential should be scoped to correct service: 'ec2', not " + strconv.Quote(scope[3]) + "."}
		}
		return nil
	}
	return &apiError{http.StatusForbidden, "AuthFailure", "The Authorization header has no Credential."}
}

// describeRequest is a parsed DescribeInstances request.
type describeRequest struct {
	filters    []filter
	ids        []string
	maxResults int    // 0 = not given
	after      string // resume after this instance ID; "" = from the start
	dryRun     bool
}

// filter is one Filter.N: an instance matches when the attribute called
// name has a value that matches one of values. A filter without values
// matches any instance that has the attribute at all.
type filter struct {
	name   string
	values []string
}

// describeInstances answers DescribeInstances.
func (s *Server) describeInstances(w http.ResponseWriter, form url.Values) {
	if form.Get("Version") == "" {
		writeError(w, &apiError{http.StatusBadRequest, "MissingParameter",
			"The request must contain the parameter Version."})
		return
	}
	s.mu.Lock()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		s.mu.Unlock()
		writeError(w, &apiError{f.status, f.code, f.msg})
		return
	}
	s.mu.Unlock()

	req, err := parseDescribe(form)
	if err != nil {
		writeError(w, err)
		return
	}
	if req.dryRun {
		writeError(w, &apiError{http.StatusPreconditionFailed, "DryRunOperation",
			"Request would have succeeded, but DryRun flag is set."})
		return
	}
	resp, err := s.query(req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeXML(w, http.StatusOK, resp)
}

// parseDescribe parses the parameters of DescribeInstances. Unknown
// parameters are rejected, as EC2 does.
func parseDescribe(form url.Values) (*describeRequest, *apiError) {
	req := new(describeRequest)
	byIndex := make(map[int]*filter)
	ids := make(map[int]string)
	for key, vals := range form {
		val := ""
		if len(vals) > 0 {
			val = vals[0]
		}
		switch {
		case key == "Action" || key == "Version" || key == "IncludeManagedResources":
		case key == "DryRun":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, badParam("Value (%s) for parameter DryRun is invalid. Expected a boolean.", val)
			}
			req.dryRun = b
		case key == "MaxResults":
			n, err := strconv.Atoi(val)
			if err != nil || n < 5 || n > 1000 {
				return nil, badParam("Value ( %s ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", val)
			}
			req.maxResults = n
		case key == "NextToken":
			req.after = val // decoded below, once the filters are known
		case strings.HasPrefix(key, "InstanceId."):
			n, ok := listIndex(strings.TrimPrefix(key, "InstanceId."))
			if !ok {
				return nil, unknownParam(key)
			}
			ids[n] = val
		case strings.HasPrefix(key, "Filter."):
			rest := strings.TrimPrefix(key, "Filter.")
			ns, field, _ := strings.Cut(rest, ".")
			n, ok := listIndex(ns)
			if !ok {
				return nil, unknownParam(key)
			}
			f := byIndex[n]
			if f == nil {
				f = new(filter)
				byIndex[n] = f
			}
			switch {
			case field == "Name":
				f.name = val
			case strings.HasPrefix(field, "Value."):
				if _, ok := listIndex(strings.TrimPrefix(field, "Value.")); !ok {
					return nil, unknownParam(key)
				}
				f.values = append(f.values, val)
			default:
				return nil, unknownParam(key)
			}
		default:
			return nil, unknownParam(key)
		}
	}
	for _, n := range sortedKeys(byIndex) {
		f := byIndex[n]
		if f.name == "" {
			return nil, &apiError{http.StatusBadRequest, "MissingParameter",
				fmt.Sprintf("The request must contain the parameter Filter.%d.Name.", n)}
		}
		if !knownFilter(f.name) {
			return nil, badParam("The filter '%s' is invalid", f.name)
		}
		sort.Strings(f.values)
		req.filters = append(req.filters, *f)
	}
	for _, n := range sortedKeys(ids) {
		id := ids[n]
		if !strings.HasPrefix(id, "i-") || len(id) < 3 {
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.Malformed",
				fmt.Sprintf("Invalid id: \"%s\"", id)}
		}
		req.ids = append(req.ids, id)
	}
	if req.maxResults != 0 && len(req.ids) > 0 {
		return nil, &apiError{http.StatusBadRequest, "InvalidParameterCombination",
			"The parameter instancesSet cannot be used with the parameter maxResults"}
	}
	if req.after != "" {
		after, ok := decodeToken(req.after, req.fingerprint())
		if !ok {
			return nil, badParam("Invalid value '%s' for nextToken.", req.after)
		}
		req.after = after
	}
	return req, nil
}

// listIndex parses the N of a flattened list member, which counts from 1.
func listIndex(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && strconv.Itoa(n) == s
}

func unknownParam(key string) *apiError {
	return &apiError{http.StatusBadRequest, "UnknownParameter",
		"The parameter " + key + " is not recognized"}
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// knownFilter reports whether name is a DescribeInstances filter that the
// server implements.
func knownFilter(name string) bool {
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		return key != ""
	}
	switch name {
	case "tag-key", "tag-value", "instance-state-name", "instance-state-code",
		"vpc-id", "subnet-id", "instance-id", "private-ip-address", "ipv6-address":
		return true
	}
	return false
}

// attr returns the values the instance has for a filter name; none when
// the instance lacks the attribute.
func (in *instance) attr(name string) []string {
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := in.Tags[key]; ok {
			return []string{v}
		}
		return nil
	}
	switch name {
	case "tag-key":
		return sortedTagKeys(in.Tags)
	case "tag-value":
		var vs []string
		for _, v := range in.Tags {
			vs = append(vs, v)
		}
		return vs
	case "instance-state-name":
		return one(in.State)
	case "instance-state-code":
		return one(strconv.Itoa(stateCodes[in.State]))
	case "instance-id":
		return one(in.ID)
	case "vpc-id":
		return one(in.vpc())
	case "subnet-id":
		return one(subnetOf(in.vpc()))
	case "private-ip-address":
		if ip := in.privateIP(); ip != "" {
			return []string{ip}
		}
	case "ipv6-address":
		return in.ipv6()
	}
	return nil
}

// vpc returns the VPC that EC2 would report: none once the instance is
// terminated.
func (in *instance) vpc() string {
	if in.State == "terminated" {
		return ""
	}
	return in.VPC
}

// privateIP returns the private IPv4 address that EC2 would report, or "".
func (in *instance) privateIP() string {
	if in.State == "terminated" || !in.PrivateIP.IsValid() {
		return ""
	}
	return in.PrivateIP.String()
}

// ipv6 returns the IPv6 addresses that EC2 would report: none once the
// instance is terminated.
func (in *instance) ipv6() []string {
	if in.State == "terminated" {
		return nil
	}
	var out []string
	for _, a := range in.IPv6 {
		out = append(out, a.String())
	}
	return out
}

func (f *filter) match(in *instance) bool {
	have := in.attr(f.name)
	if len(f.values) == 0 {
		return len(have) > 0
	}
	for _, h := range have {
		for _, p := range f.values {
			if wildcardMatch(p, h) {
				return true
			}
		}
	}
	return false
}

// wildcardMatch matches s against an EC2 filter value: '*' matches any run
// of characters, '?' exactly one, and a backslash makes the next character
// literal.
func wildcardMatch(p, s string) bool {
	// Iterative matching with one backtrack point for the last '*'.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; {
			case c == '*':
				star, mark = pi, si
				pi++
				continue
			case c == '?':
				pi++
				si++
				continue
			case c == '\\' && pi+1 < len(p):
				if p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			case c == s[si]:
				pi++
				si++
				continue
			}
		}
		if star < 0 {
			return false
		}
		mark++
		pi, si = star+1, mark
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// fingerprint identifies the set of instances a request selects, so that a
// NextToken is only accepted by the query that produced it.
func (req *describeRequest) fingerprint() uint64 {
	h := fnv.New64a()
	for _, f := range req.filters {
		io.WriteString(h, f.name)
		h.Write([]byte{0})
		for _, v := range f.values {
			io.WriteString(h, v)
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	for _, id := range req.ids {
		io.WriteString(h, id)
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// A NextToken is "v1" + the request fingerprint + the ID of the last
// instance on the previous page, base64-encoded. Because it names an
// instance rather than a position, instances added or removed between two
// pages neither repeat nor hide the others.
func encodeToken(fp uint64, after string) string {
	b := append([]byte("v1"), binary.BigEndian.AppendUint64(nil, fp)...)
	b = append(b, after...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok string, fp uint64) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2+8+3 || string(b[:2]) != "v1" ||
		binary.BigEndian.Uint64(b[2:10]) != fp {
		return "", false
	}
	after := string(b[10:])
	if !strings.HasPrefix(after, "i-") {
		return "", false
	}
	return after, true
}

// query selects one page of instances, sorted by ID.
func (s *Server) query(req *describeRequest) (*describeInstancesResponse, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if len(req.ids) > 0 {
		var missing []string
		for _, id := range req.ids {
			if _, ok := s.insts[id]; !ok {
				missing = append(missing, id)
			}
		}
		switch len(missing) {
		case 0:
		case 1:
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound",
				"The instance ID '" + missing[0] + "' does not exist"}
		default:
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound",
				"The instance IDs '" + strings.Join(missing, ", ") + "' do not exist"}
		}
	}

	var ids []string
	for id, in := range s.insts {
		if len(req.ids) > 0 && !slices.Contains(req.ids, id) {
			continue
		}
		ok := true
		for i := range req.filters {
			if !req.filters[i].match(in) {
				ok = false
				break
			}
		}
		if ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	start := 0
	if req.after != "" {
		start, _ = slices.BinarySearch(ids, req.after)
		if start < len(ids) && ids[start] == req.after {
			start++
		}
	}
	limit := s.pageSize
	if req.maxResults > 0 && req.maxResults < limit {
		limit = req.maxResults
	}
	end := min(start+limit, len(ids))

	resp := &describeInstancesResponse{RequestID: randomID()}
	resp.ReservationSet.Items = []xmlReservation{}
	for _, id := range ids[start:end] {
		resp.ReservationSet.Items = append(resp.ReservationSet.Items, s.reservation(s.insts[id]))
	}
	if end < len(ids) {
		resp.NextToken = encodeToken(req.fingerprint(), ids[end-1])
	}
	return resp, nil
}

// reservation renders one instance as a reservation of its own.
func (s *Server) reservation(in *instance) xmlReservation {
	ip := in.privateIP()
	vpc := in.vpc()
	subnet := subnetOf(vpc)
	x := xmlInstance{
		InstanceID:    in.ID,
		ImageID:       ImageID,
		State:         xmlState{Code: stateCodes[in.State], Name: in.State},
		InstanceType:  InstanceType,
		LaunchTime:    in.launched.Format("2006-01-02T15:04:05.000Z"),
		Placement:     xmlPlacement{AvailabilityZone: s.region + "a", Tenancy: "default"},
		Monitoring:    xmlMonitoring{State: "disabled"},
		SubnetID:      subnet,
		VPCID:         vpc,
		PrivateIP:     ip,
		Architecture:  "x86_64",
		NetInterfaces: &xmlInterfaceSet{},
	}
	v6 := in.ipv6()
	switch {
	case ip != "":
		x.PrivateDNSName = "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + s.region + ".compute.internal"
	case len(v6) > 0:
		// An IPv6-only instance has a resource-based name.
		x.PrivateDNSName = in.ID + "." + s.region + ".compute.internal"
	}
	if in.PrimaryIPv6 && len(v6) > 0 {
		x.IPv6Address = v6[0]
	}
	if vpc != "" {
		x.SourceDestCheck = new(true)
	}
	if len(in.Tags) > 0 {
		x.TagSet = &xmlTagSet{}
		for _, k := range sortedTagKeys(in.Tags) {
			x.TagSet.Items = append(x.TagSet.Items, xmlTag{Key: k, Value: in.Tags[k]})
		}
	}
	if in.State != "terminated" {
		var set *xmlIPv6Set
		if len(v6) > 0 {
			set = &xmlIPv6Set{}
			for i, a := range v6 {
				set.Items = append(set.Items, xmlIPv6{Address: a, IsPrimary: in.PrimaryIPv6 && i == 0})
			}
		}
		x.NetInterfaces.Items = append(x.NetInterfaces.Items, xmlInterface{
			ID:              hexID("eni-", in.ID, 17),
			SubnetID:        subnet,
			VPCID:           vpc,
			OwnerID:         AccountID,
			Status:          "in-use",
			MAC:             in.MAC,
			PrivateIP:       ip,
			PrivateDNSName:  x.PrivateDNSName,
			SourceDestCheck: true,
			IPv6:            set,
			Attachment: xmlAttachment{
				ID:                  hexID("eni-attach-", in.ID, 17),
				DeviceIndex:         0,
				Status:              "attached",
				AttachTime:          x.LaunchTime,
				DeleteOnTermination: true,
			},
		})
	}
	return xmlReservation{
		ReservationID: hexID("r-", in.ID, 17),
		OwnerID:       AccountID,
		Instances:     []xmlInstance{x},
	}
}

func sortedTagKeys(tags map[string]string) []string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// The response documents. Elements appear in the order EC2 sends them.

type describeInstancesResponse struct {
	XMLName        xml.Name          `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
	RequestID      string            `xml:"requestId"`
	ReservationSet xmlReservationSet `xml:"reservationSet"`
	NextToken      string            `xml:"nextToken,omitempty"`
}

type xmlReservationSet struct {
	Items []xmlReservation `xml:"item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlInstance struct {
	InstanceID      string           `xml:"instanceId"`
	ImageID         string           `xml:"imageId"`
	State           xmlState         `xml:"instanceState"`
	PrivateDNSName  string           `xml:"privateDnsName"`
	DNSName         string           `xml:"dnsName"`
	AMILaunchIndex  int              `xml:"amiLaunchIndex"`
	InstanceType    string           `xml:"instanceType"`
	LaunchTime      string           `xml:"launchTime"`
	Placement       xmlPlacement     `xml:"placement"`
	Monitoring      xmlMonitoring    `xml:"monitoring"`
	SubnetID        string           `xml:"subnetId,omitempty"`
	VPCID           string           `xml:"vpcId,omitempty"`
	PrivateIP       string           `xml:"privateIpAddress,omitempty"`
	IPv6Address     string           `xml:"ipv6Address,omitempty"`
	SourceDestCheck *bool            `xml:"sourceDestCheck,omitempty"`
	Architecture    string           `xml:"architecture"`
	TagSet          *xmlTagSet       `xml:"tagSet,omitempty"`
	NetInterfaces   *xmlInterfaceSet `xml:"networkInterfaceSet"`
}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type xmlMonitoring struct {
	State string `xml:"state"`
}

type xmlTagSet struct {
	Items []xmlTag `xml:"item"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlInterfaceSet struct {
	Items []xmlInterface `xml:"item"`
}

type xmlInterface struct {
	ID              string        `xml:"networkInterfaceId"`
	SubnetID        string        `xml:"subnetId,omitempty"`
	VPCID           string        `xml:"vpcId,omitempty"`
	OwnerID         string        `xml:"ownerId"`
	Status          string        `xml:"status"`
	MAC             string        `xml:"macAddress"`
	PrivateIP       string        `xml:"privateIpAddress,omitempty"`
	PrivateDNSName  string        `xml:"privateDnsName,omitempty"`
	SourceDestCheck bool          `xml:"sourceDestCheck"`
	Attachment      xmlAttachment `xml:"attachment"`
	IPv6            *xmlIPv6Set   `xml:"ipv6AddressesSet,omitempty"`
}

type xmlIPv6Set struct {
	Items []xmlIPv6 `xml:"item"`
}

type xmlIPv6 struct {
	Address   string `xml:"ipv6Address"`
	IsPrimary bool   `xml:"isPrimaryIpv6"`
}

type xmlAttachment struct {
	ID                  string `xml:"attachmentId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type errorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []xmlError `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type xmlError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeXML(w, e.status, &errorResponse{
		Errors:    []xmlError{{Code: e.code, Message: e.msg}},
		RequestID: randomID(),
	})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		// Only a bug in the types above can get here.
		panic(fmt.Sprintf("fakeaws: marshal %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	w.Write(b)
}

func cloneForm(f url.Values) url.Values {
	c := make(url.Values, len(f))
	for k, v := range f {
		c[k] = slices.Clone(v)
	}
	return c
}
