package fakeaws

// The instance metadata service, version 2 only: a session token comes from
// PUT /latest/api/token and must accompany every GET.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// IMDS header names, in the spelling the SDK sends. HTTP header names are
// case-insensitive.
const (
	headerToken    = "X-Aws-Ec2-Metadata-Token"
	headerTokenTTL = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	maxTokenTTL    = 21600 // seconds: six hours
)

func (s *Server) serveIMDS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		s.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		imdsError(w, http.StatusMethodNotAllowed)
		return
	}
	if !s.validToken(r.Header.Get(headerToken)) {
		imdsError(w, http.StatusUnauthorized)
		return
	}
	in, ok := s.whoami(r)
	if !ok {
		imdsError(w, http.StatusNotFound)
		return
	}
	body, contentType, ok := s.metadata(in, strings.TrimPrefix(r.URL.Path, "/latest/"))
	if !ok {
		imdsError(w, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		io.WriteString(w, body)
	}
}

// serveToken issues a session token. Like IMDS, it refuses a request that
// went through a proxy (X-Forwarded-For), and a TTL outside 1..21600 s.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		imdsError(w, http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		imdsError(w, http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(headerTokenTTL))
	if err != nil || ttl < 1 || ttl > maxTokenTTL {
		imdsError(w, http.StatusBadRequest)
		return
	}
	var b [32]byte
	rand.Read(b[:])
	tok := base64.StdEncoding.EncodeToString(b[:])

	s.mu.Lock()
	now := s.now()
	for t, exp := range s.tokens {
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	s.mu.Unlock()

	// The SDK reads the lifetime from this response header; without it the
	// token is rejected.
	w.Header().Set(headerTokenTTL, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, tok)
}

func (s *Server) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && s.now().Before(exp)
}

// whoami returns a copy of the instance the request speaks for.
func (s *Server) whoami(r *http.Request) (instance, bool) {
	s.mu.Lock()
	fn := s.identity
	s.mu.Unlock()

	var id string
	if fn != nil {
		id = fn(r)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return instance{}, false
		}
		id = s.instanceAt(ap.Addr().Unmap())
	}
	in, ok := s.insts[id]
	if !ok {
		return instance{}, false
	}
	return *in, true
}

// instanceAt returns the ID of the instance with this private IP or IPv6
// address, or "". Should several have it, a live one wins over a
// terminated one, then the lowest ID. The caller holds s.mu.
func (s *Server) instanceAt(addr netip.Addr) string {
	var best *instance
	for _, in := range s.insts {
		if in.PrivateIP != addr && !slices.Contains(in.IPv6, addr) {
			continue
		}
		if best == nil {
			best = in
			continue
		}
		inDead, bestDead := in.State == "terminated", best.State == "terminated"
		if inDead != bestDead && bestDead || inDead == bestDead && in.ID < best.ID {
			best = in
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// metadata returns the document at path (relative to /latest/) for the
// instance, and its content type.
func (s *Server) metadata(in instance, path string) (body, contentType string, ok bool) {
	const text = "text/plain"
	if p, found := strings.CutPrefix(path, "meta-data/network/interfaces/macs/"); found {
		if p == "" {
			return in.MAC + "/", text, true
		}
		mac, leaf, _ := strings.Cut(p, "/")
		if !strings.EqualFold(mac, in.MAC) {
			return "", "", false
		}
		switch leaf {
		case "vpc-id":
			return in.VPC, text, in.VPC != ""
		case "subnet-id":
			return subnetOf(in.VPC), text, in.VPC != ""
		case "local-ipv4s":
			return in.PrivateIP.String(), text, in.PrivateIP.IsValid()
		case "ipv6s":
			return joinAddrs(in.IPv6), text, len(in.IPv6) > 0
		case "mac":
			return in.MAC, text, true
		}
		return "", "", false
	}
	switch path {
	case "meta-data/instance-id":
		return in.ID, text, true
	case "meta-data/local-ipv4":
		return in.PrivateIP.String(), text, in.PrivateIP.IsValid()
	case "meta-data/ipv6":
		if len(in.IPv6) == 0 {
			return "", "", false
		}
		return in.IPv6[0].String(), text, true
	case "meta-data/mac":
		return in.MAC, text, true
	case "meta-data/placement/region":
		return s.region, text, true
	case "meta-data/placement/availability-zone":
		return s.region + "a", text, true
	case "dynamic/instance-identity/document":
		return s.identityDocument(in), text, true
	}
	return "", "", false
}

// joinAddrs lists addresses one a line, as IMDS lists them.
func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, "\n")
}

// identityDocument is the JSON document IMDS serves at
// /latest/dynamic/instance-identity/document, with the fields the SDK's
// imds.InstanceIdentityDocument reads.
func (s *Server) identityDocument(in instance) string {
	doc := struct {
		AccountID               string    `json:"accountId"`
		Architecture            string    `json:"architecture"`
		AvailabilityZone        string    `json:"availabilityZone"`
		BillingProducts         []string  `json:"billingProducts"`
		DevpayProductCodes      []string  `json:"devpayProductCodes"`
		MarketplaceProductCodes []string  `json:"marketplaceProductCodes"`
		ImageID                 string    `json:"imageId"`
		InstanceID              string    `json:"instanceId"`
		InstanceType            string    `json:"instanceType"`
		KernelID                *string   `json:"kernelId"`
		PendingTime             time.Time `json:"pendingTime"`
		PrivateIP               string    `json:"privateIp,omitempty"`
		RamdiskID               *string   `json:"ramdiskId"`
		Region                  string    `json:"region"`
		Version                 string    `json:"version"`
	}{
		AccountID:        AccountID,
		Architecture:     "x86_64",
		AvailabilityZone: s.region + "a",
		ImageID:          ImageID,
		InstanceID:       in.ID,
		InstanceType:     InstanceType,
		PendingTime:      in.launched,
		Region:           s.region,
		Version:          "2017-09-30",
	}
	if in.PrivateIP.IsValid() {
		doc.PrivateIP = in.PrivateIP.String()
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("fakeaws: marshal identity document: " + err.Error())
	}
	return string(b)
}

// imdsError answers with a status and the small HTML page IMDS sends with
// its errors.
func imdsError(w http.ResponseWriter, status int) {
	text := strconv.Itoa(status) + " - " + http.StatusText(status)
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	io.WriteString(w, "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n"+
		"<html><head><title>"+text+"</title></head><body><h1>"+text+"</h1></body></html>\n")
}
