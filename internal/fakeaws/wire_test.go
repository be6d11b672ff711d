package fakeaws

// These tests check the wire format directly, without the SDK.

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sigv4 is an Authorization header shaped like the SDK's, for testRegion.
const sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDFAKE/20260101/" + testRegion +
	"/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123"

// post sends a Query API form to h and returns the status and body.
func post(t *testing.T, h http.Handler, auth string, form url.Values) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// errorCode decodes an EC2 error document.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		XMLName   xml.Name `xml:"Response"`
		Code      string   `xml:"Errors>Error>Code"`
		Message   string   `xml:"Errors>Error>Message"`
		RequestID string   `xml:"RequestID"`
	}
	if err := xml.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Message == "" || e.RequestID == "" {
		t.Errorf("error body without message or request ID: %s", body)
	}
	return e.Code
}

func describe(extra ...string) url.Values {
	v := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Add(extra[i], extra[i+1])
	}
	return v
}

func TestResponseShape(t *testing.T) {
	s := New(testRegion)
	s.Put(Instance{
		ID:        "i-0123456789abcdef0",
		PrivateIP: netip.MustParseAddr("198.18.0.7"),
		VPC:       "vpc-0123456789abcdef0",
		MAC:       "0A:1B:2C:3D:4E:5F",
		Tags:      map[string]string{"b": "2", "a": "1 < 2 & 3"},
	})
	s.Put(Instance{ID: "i-0123456789abcdef1", State: "stopped"})
	status, body := post(t, s.Handler(), sigv4, describe())
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if !strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8"?>`) ||
		!strings.Contains(body, `<DescribeInstancesResponse xmlns="`+Namespace+`">`) {
		t.Errorf("no XML declaration or namespace:\n%s", body)
	}
	var doc struct {
		XMLName      xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
		RequestID    string   `xml:"requestId"`
		NextToken    *string  `xml:"nextToken"`
		Reservations []struct {
			ReservationID string `xml:"reservationId"`
			OwnerID       string `xml:"ownerId"`
			Instances     []struct {
				ID        string  `xml:"instanceId"`
				ImageID   string  `xml:"imageId"`
				Code      int     `xml:"instanceState>code"`
				State     string  `xml:"instanceState>name"`
				PrivateIP *string `xml:"privateIpAddress"`
				VPC       string  `xml:"vpcId"`
				Subnet    string  `xml:"subnetId"`
				MAC       string  `xml:"networkInterfaceSet>item>macAddress"`
				Tags      []struct {
					Key   string `xml:"key"`
					Value string `xml:"value"`
				} `xml:"tagSet>item"`
			} `xml:"instancesSet>item"`
		} `xml:"reservationSet>item"`
	}
	if err := xml.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, body)
	}
	if doc.RequestID == "" || doc.NextToken != nil || len(doc.Reservations) != 2 {
		t.Fatalf("requestId %q, nextToken %v, %d reservations:\n%s", doc.RequestID, doc.NextToken, len(doc.Reservations), body)
	}
	r := doc.Reservations[0]
	in := r.Instances[0]
	if !strings.HasPrefix(r.ReservationID, "r-") || r.OwnerID != AccountID || len(r.Instances) != 1 ||
		in.ID != "i-0123456789abcdef0" || in.ImageID != ImageID || in.Code != 16 || in.State != "running" ||
		in.PrivateIP == nil || *in.PrivateIP != "198.18.0.7" || in.VPC != "vpc-0123456789abcdef0" ||
		!strings.HasPrefix(in.Subnet, "subnet-") || in.MAC != "0a:1b:2c:3d:4e:5f" ||
		len(in.Tags) != 2 || in.Tags[0].Key != "a" || in.Tags[0].Value != "1 < 2 & 3" {
		t.Errorf("first reservation %+v:\n%s", r, body)
	}
	in = doc.Reservations[1].Instances[0]
	if in.Code != 80 || in.State != "stopped" || in.PrivateIP != nil || in.VPC != "" || in.Subnet != "" || in.Tags != nil {
		t.Errorf("second instance %+v:\n%s", in, body)
	}

	// An empty result still has an (empty) reservationSet.
	_, body = post(t, s.Handler(), sigv4, describe("Filter.1.Name", "tag-key", "Filter.1.Value.1", "none"))
	if !strings.Contains(body, "<reservationSet></reservationSet>") {
		t.Errorf("empty result:\n%s", body)
	}
}

func TestQueryErrors(t *testing.T) {
	s := New(testRegion)
	h := s.Handler()
	var hooked []string
	s.Hook(func(action string, form url.Values) { hooked = append(hooked, action) })
	for _, tc := range []struct {
		name   string
		auth   string
		form   url.Values
		status int
		code   string
	}{
		{"unsigned", "", describe(), 403, "AuthFailure"},
		{"other algorithm", "AWS AKID:sig", describe(), 403, "AuthFailure"},
		{"wrong region", strings.Replace(sigv4, testRegion, "us-east-1", 1), describe(), 403, "AuthFailure"},
		{"wrong service", strings.Replace(sigv4, "/ec2/", "/sts/", 1), describe(), 403, "AuthFailure"},
		{"other action", sigv4, url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}}, 400, "InvalidAction"},
		{"no action", sigv4, url.Values{"Version": {"2016-11-15"}}, 400, "MissingAction"},
		{"no version", sigv4, url.Values{"Action": {"DescribeInstances"}}, 400, "MissingParameter"},
		{"unknown parameter", sigv4, describe("Foo", "1"), 400, "UnknownParameter"},
		{"filter index 0", sigv4, describe("Filter.0.Name", "vpc-id"), 400, "UnknownParameter"},
		{"filter value without name", sigv4, describe("Filter.1.Value.1", "x"), 400, "MissingParameter"},
		{"unknown filter", sigv4, describe("Filter.1.Name", "bogus", "Filter.1.Value.1", "x"), 400, "InvalidParameterValue"},
		{"bad MaxResults", sigv4, describe("MaxResults", "many"), 400, "InvalidParameterValue"},
		{"bad token", sigv4, describe("NextToken", "djE"), 400, "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, h, tc.auth, tc.form)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if code := errorCode(t, body); code != tc.code {
				t.Errorf("code %s, want %s", code, tc.code)
			}
		})
	}
	if len(hooked) != 13 || hooked[4] != "RunInstances" || hooked[5] != "" {
		t.Errorf("hook saw %q", hooked)
	}
	// Only requests for DescribeInstances count.
	if n := s.Calls(); n != 11 {
		t.Errorf("Calls() = %d, want 11", n)
	}
}

// imdsRequest sends one IMDS request to h.
func imdsRequest(h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestIMDSTokens(t *testing.T) {
	s := New(testRegion)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	s.Put(Instance{ID: "i-1", PrivateIP: netip.MustParseAddr("198.18.0.1")})
	s.SetIdentity(func(*http.Request) string { return "i-1" })
	h := s.Handler()

	if w := imdsRequest(h, "GET", "/latest/meta-data/instance-id"); w.Code != 401 {
		t.Errorf("GET without a token: %d, want 401", w.Code)
	}
	if w := imdsRequest(h, "GET", "/latest/meta-data/instance-id", headerToken, "forged"); w.Code != 401 {
		t.Errorf("GET with a forged token: %d, want 401", w.Code)
	}
	for _, ttl := range []string{"", "0", "21601", "-5", "ten"} {
		if w := imdsRequest(h, "PUT", "/latest/api/token", headerTokenTTL, ttl); w.Code != 400 {
			t.Errorf("PUT token with TTL %q: %d, want 400", ttl, w.Code)
		}
	}
	if w := imdsRequest(h, "GET", "/latest/api/token", headerTokenTTL, "60"); w.Code != 405 {
		t.Errorf("GET token: %d, want 405", w.Code)
	}
	if w := imdsRequest(h, "PUT", "/latest/api/token", headerTokenTTL, "60", "X-Forwarded-For", "203.0.113.1"); w.Code != 403 {
		t.Errorf("PUT token through a proxy: %d, want 403", w.Code)
	}

	// Header names are case-insensitive; send them as curl users do.
	w := imdsRequest(h, "PUT", "/latest/api/token", "x-aws-ec2-metadata-token-ttl-seconds", "60")
	if w.Code != 200 || w.Header().Get(headerTokenTTL) != "60" || w.Body.Len() == 0 {
		t.Fatalf("PUT token: %d, TTL header %q, body %q", w.Code, w.Header().Get(headerTokenTTL), w.Body)
	}
	tok := w.Body.String()
	w = imdsRequest(h, "GET", "/latest/meta-data/instance-id", "x-aws-ec2-metadata-token", tok)
	if w.Code != 200 || w.Body.String() != "i-1" {
		t.Errorf("GET with token: %d %q", w.Code, w.Body)
	}
	if w := imdsRequest(h, "PUT", "/latest/meta-data/instance-id", headerToken, tok); w.Code != 405 {
		t.Errorf("PUT metadata: %d, want 405", w.Code)
	}
	if w := imdsRequest(h, "GET", "/latest/meta-data/nothing-here", headerToken, tok); w.Code != 404 {
		t.Errorf("unknown path: %d, want 404", w.Code)
	}

	now = now.Add(59 * time.Second)
	if w := imdsRequest(h, "GET", "/latest/meta-data/instance-id", headerToken, tok); w.Code != 200 {
		t.Errorf("token after 59 s: %d, want 200", w.Code)
	}
	now = now.Add(time.Second)
	if w := imdsRequest(h, "GET", "/latest/meta-data/instance-id", headerToken, tok); w.Code != 401 {
		t.Errorf("token after 60 s: %d, want 401", w.Code)
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "abcd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"**a", "bba", true},
		{"*ab*ab", "xabyabab", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`a\?c`, "abc", false},
		{`a\\`, `a\`, true},
		{`a\`, `a\`, true},
		{"demo,*", "demo,198.19.0.1/24", true},
		{"demo,*", "demo2,198.19.0.1/24", false},
	} {
		if got := wildcardMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// FuzzDescribeInstances sends arbitrary forms and checks that every answer
// is a well-formed EC2 document: a DescribeInstancesResponse with 200, at
// most a page long, whose NextToken the same query accepts; or an error
// document with a code and 400 or 412. Nothing else, and never a 5xx.
func FuzzDescribeInstances(f *testing.F) {
	for _, seed := range []string{
		"",
		"Filter.1.Name=tag-key&Filter.1.Value.1=multicast",
		"Filter.1.Name=tag:multicast&Filter.1.Value.1=demo,*&Filter.2.Name=instance-state-name&Filter.2.Value.1=running",
		"MaxResults=5",
		"MaxResults=5&NextToken=djEAAAAAAAAAAGktMQ",
		"InstanceId.1=i-1&InstanceId.2=i-2",
		"Filter.1.Name=private-ip-address&Filter.1.Value.1=198.18.0.?",
		"DryRun=true",
		"Filter.2.Value.7=x",
		"Filter.1.Name=ipv6-address&Filter.1.Value.1=fd00:198:18::*",
	} {
		f.Add(seed)
	}
	s := New(testRegion)
	for k := 1; k <= 12; k++ {
		in := Instance{
			ID:        "i-" + strings.Repeat("0", 15) + string(rune('a'+k)),
			PrivateIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(k)}),
			Tags:      map[string]string{"multicast": "demo,198.19.0.1/24"},
		}
		// Every third is dual-stack and every fourth IPv6-only.
		if k%3 == 0 || k%4 == 0 {
			in.IPv6 = []netip.Addr{netip.AddrFrom16([16]byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: byte(k)})}
			in.PrimaryIPv6 = k%2 == 0
		}
		if k%4 == 0 {
			in.PrivateIP = netip.Addr{}
		}
		s.Put(in)
	}
	s.SetPageSize(5)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, query string) {
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		form.Set("Action", "DescribeInstances")
		form.Set("Version", "2016-11-15")
		status, body := post(t, h, sigv4, form)
		switch status {
		case 200:
			var doc struct {
				XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
				NextToken string   `xml:"nextToken"`
				Items     []struct {
					ID string `xml:"instancesSet>item>instanceId"`
				} `xml:"reservationSet>item"`
			}
			if err := xml.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatalf("200 with a bad body: %v\n%s", err, body)
			}
			if len(doc.Items) > 5 {
				t.Errorf("%d instances on a page of 5", len(doc.Items))
			}
			if doc.NextToken != "" {
				form.Set("NextToken", doc.NextToken)
				if st, b := post(t, h, sigv4, form); st != 200 {
					t.Errorf("its own NextToken was refused: %d %s", st, b)
				}
			}
		case 400, 412:
			if code := errorCode(t, body); code == "" {
				t.Errorf("error without a code: %s", body)
			}
		default:
			t.Errorf("status %d: %s", status, body)
		}
	})
}

func TestHTTPClientRefusesOtherHosts(t *testing.T) {
	c := HTTPClient("http://127.0.0.1:1")
	for _, u := range []string{"https://ec2.eu-west-1.amazonaws.com/", "http://169.254.169.254/latest/api/token"} {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s went through", u)
		} else if !strings.Contains(err.Error(), "refusing") {
			t.Errorf("GET %s: %v", u, err)
		}
	}
}

func TestDefaultIdentityPrefersLiveInstance(t *testing.T) {
	s := New(testRegion)
	ip := netip.MustParseAddr("198.18.0.9")
	s.Put(Instance{ID: "i-0a", PrivateIP: ip, State: "terminated"})
	s.Put(Instance{ID: "i-0c", PrivateIP: ip})
	s.Put(Instance{ID: "i-0b", PrivateIP: ip, State: "stopped"})
	s.Put(Instance{ID: "i-0d", PrivateIP: netip.MustParseAddr("198.18.0.10")})
	tok := imdsRequest(s.Handler(), "PUT", "/latest/api/token", headerTokenTTL, "60").Body.String()
	r := httptest.NewRequest("GET", "/latest/meta-data/instance-id", nil)
	r.RemoteAddr = "[::ffff:198.18.0.9]:41000" // IPv4-mapped, as a dual-stack listener reports it
	r.Header.Set(headerToken, tok)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "i-0b" {
		t.Errorf("got %d %q, want i-0b", w.Code, w.Body)
	}
}

func TestPutValidates(t *testing.T) {
	for name, in := range map[string]Instance{
		"no i- prefix": {ID: "x-1"},
		"bad state":    {ID: "i-1", State: "sleeping"},
		"IPv6":         {ID: "i-1", PrivateIP: netip.MustParseAddr("2001:db8::1")},
		"bad MAC":      {ID: "i-1", MAC: "02:00:00"},
		"IPv4 as IPv6": {ID: "i-1", IPv6: []netip.Addr{netip.MustParseAddr("198.18.0.1")}},
		"mapped IPv6":  {ID: "i-1", IPv6: []netip.Addr{netip.MustParseAddr("::ffff:198.18.0.1")}},
		"IPv6 zone":    {ID: "i-1", IPv6: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}},
		"zero IPv6":    {ID: "i-1", IPv6: []netip.Addr{{}}},
		"lone primary": {ID: "i-1", PrimaryIPv6: true},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Put did not panic", name)
				}
			}()
			New(testRegion).Put(in)
		}()
	}
}

// TestResponseShapeIPv6 checks the element names of the IPv6 fields in the
// raw XML: ipv6AddressesSet under the network interface, with ipv6Address
// and isPrimaryIpv6 per item, the instance's ipv6Address, and no
// privateIpAddress for an IPv6-only instance.
func TestResponseShapeIPv6(t *testing.T) {
	s := New(testRegion)
	s.Put(Instance{ID: "i-0a", IPv6: []netip.Addr{netip.MustParseAddr("fd00:198:18::1")}, PrimaryIPv6: true})
	status, body := post(t, s.Handler(), sigv4, describe())
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if want := "<ipv6AddressesSet><item><ipv6Address>fd00:198:18::1</ipv6Address><isPrimaryIpv6>true</isPrimaryIpv6></item></ipv6AddressesSet>"; !strings.Contains(body, want) {
		t.Errorf("no %s in:\n%s", want, body)
	}
	var doc struct {
		IPv6 string `xml:"reservationSet>item>instancesSet>item>ipv6Address"`
	}
	if err := xml.Unmarshal([]byte(body), &doc); err != nil || doc.IPv6 != "fd00:198:18::1" {
		t.Errorf("instance ipv6Address %q, %v:\n%s", doc.IPv6, err, body)
	}
	if strings.Contains(body, "privateIpAddress") {
		t.Errorf("IPv6-only instance with a privateIpAddress:\n%s", body)
	}
}
