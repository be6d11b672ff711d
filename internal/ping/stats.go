package ping

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Stats summarizes the probes of one kind to one target.
type Stats struct {
	Sent     int // probes sent
	Received int // probes answered, each counted once
	// Round-trip times of the answered probes: the population standard
	// deviation, like ping's mdev. All zero when nothing was answered.
	Min, Avg, Max, Stddev time.Duration
}

// Loss returns the percentage of sent probes that went unanswered, from 0
// to 100; 0 when nothing was sent.
func (s Stats) Loss() float64 {
	if s.Sent <= 0 {
		return 0
	}
	return 100 * float64(s.Sent-s.Received) / float64(s.Sent)
}

// newStats returns the Stats of sent probes whose answered ones took rtts.
func newStats(sent int, rtts []time.Duration) Stats {
	s := Stats{Sent: sent, Received: len(rtts)}
	if len(rtts) == 0 {
		return s
	}
	s.Min, s.Max = rtts[0], rtts[0]
	var sum float64
	for _, d := range rtts {
		s.Min, s.Max = min(s.Min, d), max(s.Max, d)
		sum += float64(d)
	}
	mean := sum / float64(len(rtts))
	var sq float64
	for _, d := range rtts {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	s.Avg = time.Duration(math.Round(mean))
	s.Stddev = time.Duration(math.Round(math.Sqrt(sq / float64(len(rtts)))))
	return s
}

// Result is what Run learned about one target.
type Result struct {
	Target    Target
	Unicast   Stats
	Multicast Stats
}

// label returns how Write names the target: "NAME (OVERLAY)", or the
// overlay address alone when the name is empty or the same.
func (t Target) label() string {
	o := t.Overlay.String()
	if t.Name == "" || t.Name == o {
		return o
	}
	return t.Name + " (" + o + ")"
}

// Write prints two lines per result, in the style of omping, with the
// labels padded to line up, then a summary line:
//
//	198.18.0.2 (198.19.0.2)   unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms
//	198.18.0.2 (198.19.0.2) multicast, xmt/rcv/%loss = 5/0/100%
//	1 peers: unicast ok for 1, multicast ok for 0
//
// Round-trip times are in milliseconds, and left out when nothing was
// answered. A kind is ok for a peer when it answered at least one probe.
// When peers marked NotJoined lost multicast probes, a last line names
// them:
//
//	multicast loss to 1 peers not yet known as members of the ping group when probing began (IGMP had not converged): 198.18.0.2 (198.19.0.2)
//
// With IPv6 targets, the line says MLD instead of IGMP.
//
// Write returns no error: it is meant for a terminal, and stops at the
// first error of w.
func Write(w io.Writer, results []Result) {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Target.label()))
	}
	ew := &errWriter{w: w}
	var uniOK, multiOK int
	var unjoined []string // NotJoined peers that lost multicast probes
	proto := "IGMP"       // what had not converged
	for _, r := range results {
		for _, k := range []struct {
			name string
			s    Stats
		}{{"unicast", r.Unicast}, {"multicast", r.Multicast}} {
			ew.printf("%-*s %9s, xmt/rcv/%%loss = %d/%d/%s%%", width, r.Target.label(), k.name, k.s.Sent, k.s.Received, formatLoss(k.s))
			if k.s.Received > 0 {
				ew.printf(", min/avg/max/std-dev = %s/%s/%s/%s ms", ms(k.s.Min), ms(k.s.Avg), ms(k.s.Max), ms(k.s.Stddev))
			}
			ew.printf("\n")
		}
		if r.Unicast.Received > 0 {
			uniOK++
		}
		if r.Multicast.Received > 0 {
			multiOK++
		}
		if r.Target.NotJoined && r.Multicast.Received < r.Multicast.Sent {
			unjoined = append(unjoined, r.Target.label())
			if a := r.Target.Overlay; a.Is6() && !a.Is4In6() {
				proto = "MLD"
			}
		}
	}
	ew.printf("%d peers: unicast ok for %d, multicast ok for %d\n", len(results), uniOK, multiOK)
	if len(unjoined) > 0 {
		ew.printf("multicast loss to %d peers not yet known as members of the ping group when probing began (%s had not converged): %s\n",
			len(unjoined), proto, strings.Join(unjoined, ", "))
	}
}

// formatLoss formats the loss percentage: whole numbers without decimals,
// others with one, never rounded to 0 or 100 when some probes were lost or
// answered.
func formatLoss(s Stats) string {
	l := s.Loss()
	if l == math.Trunc(l) {
		return fmt.Sprintf("%.0f", l)
	}
	l = math.Round(l*10) / 10
	l = max(0.1, min(99.9, l))
	return fmt.Sprintf("%.1f", l)
}

// ms formats d in milliseconds with three decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

// errWriter writes until the first error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// OK reports whether every target answered at least one unicast and one
// multicast probe. It is true for no results.
func OK(results []Result) bool {
	for _, r := range results {
		if r.Unicast.Received == 0 || r.Multicast.Received == 0 {
			return false
		}
	}
	return true
}
