package bench

import (
	"cmp"
	"fmt"
	"slices"
)

// Measure names: what a case measures.
const (
	// MeasureSource: one sending node and N receiving nodes that count and
	// drop the stream's copies at their underlay ingress; what the sending
	// instance of a deployment can send.
	MeasureSource = "source"
	// MeasureReceiver: one sending node and one receiving node whose
	// daemon delivers to an application; what one receiving instance can
	// take.
	MeasureReceiver = "receiver"
	// MeasureE2E: one sending node and N receiving nodes whose daemons
	// deliver to applications; everything on one machine.
	MeasureE2E = "e2e"
)

// AllMeasures lists the measures in the order they run.
var AllMeasures = []string{MeasureSource, MeasureReceiver, MeasureE2E}

// PathKernel is the better of the kernel path's two VXLAN shapes (or its
// only GRE one) in a case of the source or receiver measure: a Result or
// Estimate with this path copies the figures of the one named in its
// BestOf. It is not a path that runs.
const PathKernel = "kernel"

// Limits of a stream in an Estimate.
const (
	LimitSource   = "source"
	LimitReceiver = "receiver"
)

func measureRank(m string) int {
	if m == "" {
		m = MeasureE2E
	}
	if i := slices.Index(AllMeasures, m); i >= 0 {
		return i
	}
	return len(AllMeasures)
}

// measureOf returns the measure of c; a case without one (from a report
// written before there were measures) is e2e.
func measureOf(c Case) string { return cmp.Or(c.Measure, MeasureE2E) }

// fanoutsFor returns the fanouts a measure runs: the receiver measure
// always has one receiver.
func fanoutsFor(measure string, fanouts []int) []int {
	if measure == MeasureReceiver {
		return []int{1}
	}
	return fanouts
}

// isKernel reports whether path is one of the kernel path's shapes.
func isKernel(path string) bool { return path == PathKernelPair || path == PathKernelHRE }

// An Estimate is what one stream of a deployment can carry, per
// encapsulation, payload and fanout, from the source and receiver
// measures: a deployment runs one daemon per instance, so a stream to N
// subscribers costs the sending instance N copies and each receiving
// instance one. Rates are datagrams per second of the stream, copies per
// second what the source sends in all.
type Estimate struct {
	Encap   string `json:"encap"`
	Fanout  int    `json:"fanout"`
	Payload int    `json:"payload"`
	Path    string `json:"path"`
	// BestOf names the kernel shape whose figures a PathKernel estimate
	// copies: the one with the higher ceiling.
	BestOf string `json:"best_of,omitempty"`

	// SourceCopiesPerSec and SourceCPUPerMCopies are the source measure's
	// copies per second and CPU seconds per million copies; SourceRate is
	// SourceCopiesPerSec / Fanout, the stream's datagrams per second the
	// source can send. 0: not measured.
	SourceCopiesPerSec  float64 `json:"source_copies_per_sec"`
	SourceCPUPerMCopies float64 `json:"source_cpu_per_mcopies"`
	SourceRate          float64 `json:"source_rate"`
	// SourceLimited: the sending application, not the path, set the
	// source figure (the path may go faster).
	SourceLimited bool `json:"source_sender_limited,omitempty"`
	// ReceiverRate is the receiver measure's datagrams per second
	// delivered to the application; 0: not measured.
	ReceiverRate    float64 `json:"receiver_rate"`
	ReceiverLimited bool    `json:"receiver_sender_limited,omitempty"`
	// Ceiling is min(SourceRate, ReceiverRate), the stream's datagrams
	// per second, and Limit which of the two sets it; 0 and "" unless
	// both were measured.
	Ceiling float64 `json:"ceiling"`
	Limit   string  `json:"limit,omitempty"`

	// The userspace path's figure divided by this path's (for CPU: the
	// userspace path's CPU per copy over this path's, so above 1 means
	// this path is cheaper); 0 when either is unknown.
	CopiesRatio   float64 `json:"copies_ratio,omitempty"`
	CPURatio      float64 `json:"cpu_ratio,omitempty"`
	ReceiverRatio float64 `json:"receiver_ratio,omitempty"`
	CeilingRatio  float64 `json:"ceiling_ratio,omitempty"`
}

// Estimates derives the deployment estimates from the results of the
// source and receiver measures: one per source case and path (PathKernel
// included), with the receiver figure of the same encapsulation, payload
// and path. Results of paths that measured nothing count as unknown. The
// estimates are sorted like the results (encapsulation, fanout, payload,
// path); there are none without source results.
func Estimates(results []Result) []Estimate {
	type rkey struct {
		encap   string
		payload int
		path    string
	}
	recv := map[rkey]Result{}
	key := func(encap string, payload int, path string) rkey { return rkey{encap, payload, path} }
	for _, r := range results {
		if measureOf(r.Case) == MeasureReceiver && r.Rounds > 0 && r.Path != PathKernel {
			recv[key(r.Encap, r.Payload, r.Path)] = r
		}
	}
	var out []Estimate
	for _, r := range results {
		if measureOf(r.Case) != MeasureSource || r.Path == PathKernel {
			continue
		}
		e := Estimate{Encap: r.Encap, Fanout: r.Fanout, Payload: r.Payload, Path: r.Path}
		if r.Rounds > 0 {
			e.SourceCopiesPerSec, e.SourceCPUPerMCopies = r.CopiesPerSec, r.CPUPerMCopies
			e.SourceRate = r.CopiesPerSec / float64(max(r.Fanout, 1))
			e.SourceLimited = r.SenderLimited
		}
		if rr, ok := recv[key(r.Encap, r.Payload, r.Path)]; ok {
			e.ReceiverRate, e.ReceiverLimited = rr.CopiesPerSec, rr.SenderLimited
		}
		e.Ceiling, e.Limit = ceiling(e.SourceRate, e.ReceiverRate)
		out = append(out, e)
	}
	// The kernel path: the shape with the higher ceiling (or, with no
	// ceiling, the higher source rate) of each case.
	var kernels []Estimate
	for i, e := range out {
		if !isKernel(e.Path) {
			continue
		}
		j := slices.IndexFunc(kernels, func(k Estimate) bool { return sameEstimateCase(k, e) })
		if j < 0 {
			k := out[i]
			k.Path, k.BestOf = PathKernel, e.Path
			kernels = append(kernels, k)
			continue
		}
		if better := kernels[j]; e.Ceiling > better.Ceiling || (e.Ceiling == better.Ceiling && e.SourceRate > better.SourceRate) {
			k := e
			k.Path, k.BestOf = PathKernel, e.Path
			kernels[j] = k
		}
	}
	out = append(out, kernels...)
	for i := range out {
		e := &out[i]
		u := slices.IndexFunc(out, func(x Estimate) bool { return x.Path == PathUserspace && sameEstimateCase(x, *e) })
		if u < 0 {
			continue
		}
		us := out[u]
		e.CopiesRatio = Ratio(us.SourceCopiesPerSec, e.SourceCopiesPerSec)
		e.CPURatio = Ratio(us.SourceCPUPerMCopies, e.SourceCPUPerMCopies)
		e.ReceiverRatio = Ratio(us.ReceiverRate, e.ReceiverRate)
		e.CeilingRatio = Ratio(us.Ceiling, e.Ceiling)
	}
	slices.SortFunc(out, func(a, b Estimate) int {
		return cmp.Or(cmp.Compare(a.Encap, b.Encap), cmp.Compare(a.Fanout, b.Fanout), cmp.Compare(a.Payload, b.Payload),
			comparePathOrder(a.Path, b.Path))
	})
	return out
}

// ceiling returns the lower of the source's and the receiver's rate and
// which it is; 0 and "" unless both are known.
func ceiling(source, receiver float64) (float64, string) {
	if !(source > 0) || !(receiver > 0) {
		return 0, ""
	}
	if source <= receiver {
		return source, LimitSource
	}
	return receiver, LimitReceiver
}

func sameEstimateCase(a, b Estimate) bool {
	return a.Encap == b.Encap && a.Fanout == b.Fanout && a.Payload == b.Payload
}

// addKernelBest appends, for every case of the source and receiver
// measures in which a kernel shape measured something, a PathKernel result
// copying the shape with the higher copies per second.
func addKernelBest(results []Result) []Result {
	var add []Result
	for _, r := range results {
		if m := measureOf(r.Case); (m != MeasureSource && m != MeasureReceiver) || !isKernel(r.Path) || r.Rounds == 0 {
			continue
		}
		j := slices.IndexFunc(add, func(k Result) bool { return k.Case == r.Case })
		k := r
		k.Path, k.BestOf, k.Errors = PathKernel, r.Path, nil
		if j < 0 {
			add = append(add, k)
		} else if r.CopiesPerSec > add[j].CopiesPerSec {
			add[j] = k
		}
	}
	return append(results, add...)
}

// pathOrder is the order of the paths in the tables.
var pathOrder = []string{PathUserspace, PathKernelPair, PathKernelHRE, PathKernel, PathOVS}

func comparePathOrder(a, b string) int {
	rank := func(p string) int {
		if i := slices.Index(pathOrder, p); i >= 0 {
			return i
		}
		return len(pathOrder)
	}
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
}

// MethodText describes how the measures of a run measure, a line each, as
// Run prints it before it starts: loss is the e2e measure's loss threshold,
// capLoss the source and receiver measures', rate the check and latency
// trials' datagrams per second.
func MethodText(measures []string, loss, capLoss, rate float64) []string {
	var out []string
	for _, m := range measures {
		switch m {
		case MeasureSource:
			out = append(out, fmt.Sprintf("method, source: one sending node and N receiving nodes; every node runs the path's daemon and every receiver's application "+
				"joins the group, so the source knows N members; an nftables rule on each receiver's eth0 ingress counts the stream's copies from the source "+
				"(packets and bytes) and drops them before the receiver's daemon, letting IGMP, ARP and neighbour discovery pass; the source's eth0 has %s off, so every copy is a packet. "+
				"A check trial at %.0f datagrams/s verifies N copies per datagram (one per receiver); the throughput is the highest offered rate whose loss "+
				"(datagrams x N against the copies counted) stays under %s (an exponential ramp, then bisections); CPU: the source's daemon, "+
				"the sending thread's system time and the machine's softirq time, per million copies.", featureUSO, rate, pct(capLoss)))
		case MeasureReceiver:
			out = append(out, fmt.Sprintf("method, receiver: one sending node and one receiving node whose daemon delivers to an application; "+
				"the highest rate the application receives with loss under %s. Deployment estimate: the ceiling of one stream to N subscribers is "+
				"min(source copies/s / N, receiver datagrams/s), per path; kernel is the better of its shapes.", pct(capLoss)))
		case MeasureE2E:
			out = append(out, fmt.Sprintf("method, e2e: one sending node and N receiving nodes whose daemons deliver to applications, all on this machine; "+
				"the highest rate with loss under %s at the applications.", pct(loss)))
		}
	}
	return out
}
