package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
)

// TestPrintStatusIPv6Groups checks the text form of status with an IPv6
// overlay: IPv6 groups beside IPv4 ones, their MLD version named as such,
// and the MLD querier's line under the IGMP querier's.
func TestPrintStatusIPv6Groups(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	st := control.State{
		Started: now.Add(-time.Minute), TAP: "mcbr-demo", Local: "198.18.0.1",
		Overlay: "198.19.0.1/24", Overlay6: "fd00:198:19::1/64",
		Groups: []control.Group{
			{Group: "239.1.2.3", Peers: []string{"198.18.0.2"}, Members: []control.Member{
				{Port: "198.18.0.2", Mode: "exclude", Version: 3, ExpiresSeconds: 250}}},
			{Group: "ff3e::8000:1", Peers: []string{"198.18.0.3"}, Members: []control.Member{
				{Port: "198.18.0.3", Mode: "include", Version: 2, ExpiresSeconds: 251, Sources: []string{"fd00:198:19::1"}}}},
		},
		Querier:    control.Querier{Active: true, Sent: 7},
		MLDQuerier: &control.Querier{Active: false, Sent: 2},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, re := range []string{
		`(?m)^239\.1\.2\.3\s+198\.18\.0\.2\s+exclude\s+v3\s+250\.0s\s*$`,
		`(?m)^ff3e::8000:1\s+198\.18\.0\.3\s+include\s+mldv2\s+251\.0s\s+fd00:198:19::1$`,
		`(?m)^igmp\s+querier, 7 queries sent$`,
		`(?m)^mld\s+not querier \(another querier is present\), 2 queries sent$`,
		`fd00:198:19::1/64`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}
}
