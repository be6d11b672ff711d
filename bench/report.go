package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Path names.
const (
	PathUserspace  = "userspace"
	PathKernelPair = "kernel-pair"
	PathKernelHRE  = "kernel-hre"
	PathOVS        = "ovs"
)

// AllPaths lists every path in the order they run within a round.
var AllPaths = []string{PathUserspace, PathKernelPair, PathKernelHRE, PathOVS}

// Sample kinds.
const (
	KindSearch  = "search"  // a step of the rate search
	KindLatency = "latency" // the low-rate trial for latency and delivery (e2e, receiver)
	KindCheck   = "check"   // the low-rate trial that counts the copies per datagram (source)
)

// A Case is one cell of the grid.
type Case struct {
	// Measure is MeasureSource, MeasureReceiver or MeasureE2E; reports
	// written before there were measures have none, and ReadJSON makes
	// that e2e.
	Measure string `json:"measure,omitempty"`
	Encap   string `json:"encap"`
	Fanout  int    `json:"fanout"`  // subscribers
	Payload int    `json:"payload"` // UDP payload bytes
}

func (c Case) String() string {
	s := fmt.Sprintf("%s fanout %d payload %d", c.Encap, c.Fanout, c.Payload)
	if m := measureOf(c); m != MeasureE2E {
		s = m + " " + s
	}
	return s
}

func compareCases(a, b Case) int {
	return cmp.Or(cmp.Compare(measureRank(a.Measure), measureRank(b.Measure)),
		cmp.Compare(a.Encap, b.Encap), cmp.Compare(a.Fanout, b.Fanout), cmp.Compare(a.Payload, b.Payload))
}

// A Sample is one trial: the source sent for Seconds at Rate. In the
// source measure nothing reaches an application: Delivered, OnTime and
// PerApp count the copies of the stream that reached the subscribers'
// underlay ingress (their nftables counters), and Span ends when those
// stopped arriving.
type Sample struct {
	Case
	Path  string `json:"path"`
	Round int    `json:"round"` // from 1
	Kind  string `json:"kind"`  // KindSearch or KindLatency
	Step  int    `json:"step"`  // index within the search, from 0

	Rate    float64 `json:"rate"`    // datagrams per second asked of the sender
	Seconds float64 `json:"seconds"` // time spent sending
	// Span is the time from the first datagram sent to the last one
	// received (at least Seconds): a path that queues what it cannot
	// forward at once is measured over the time it takes to deliver.
	Span      float64 `json:"span"`
	Sent      uint64  `json:"sent"`      // datagrams the source sent
	Delivered uint64  `json:"delivered"` // datagrams the subscribers' applications received, all together
	// OnTime is the part of Delivered that arrived at most a quarter of
	// the trial (at least 50 ms) after the end of sending; Loss and Pass
	// count only these, so a path that queues what it cannot forward at
	// once fails the rate instead of passing it late.
	OnTime uint64   `json:"on_time"`
	PerApp []uint64 `json:"per_app"` // datagrams received by each subscriber's application (source: copies counted at its ingress)
	// Loss is 1 - OnTime/(Sent*Fanout), at least 0; in the source measure
	// each subscriber counts for at most Sent, so that copies one gets
	// twice do not hide copies another missed.
	Loss float64 `json:"loss"`
	Pass bool    `json:"pass"` // Loss below the threshold

	// UnderlayRx is the packets received on the subscribers' eth0, all
	// together. With UDP segmentation offload one packet there may carry
	// many copies, so it is informative only.
	UnderlayRx uint64 `json:"underlay_rx"`
	// IngressBytes is the bytes of the copies counted at the subscribers'
	// ingress, all together (source measure): IP packets of
	// wireLen(encap, underlay, payload) bytes each, unless the underlay
	// coalesced them.
	IngressBytes uint64  `json:"ingress_bytes,omitempty"`
	CopiesPerSec float64 `json:"copies_per_sec"` // Delivered / Span

	CPUDaemon  float64 `json:"cpu_daemon_s"`  // utime+stime of every node's daemon (source: the source's only)
	CPUSender  float64 `json:"cpu_sender_s"`  // sending thread's system time
	CPUSoftirq float64 `json:"cpu_softirq_s"` // softirq time of the whole machine

	LatencyP50us float64 `json:"latency_p50_us,omitempty"`
	LatencyP99us float64 `json:"latency_p99_us,omitempty"`
}

// CPU returns the sample's CPU time in seconds: the daemons, the sender's
// system time and the machine's softirq time.
func (s Sample) CPU() float64 { return s.CPUDaemon + s.CPUSender + s.CPUSoftirq }

// A Measurement is what one round measured for one case and path.
type Measurement struct {
	Case
	Path  string `json:"path"`
	Round int    `json:"round"`
	Metrics
	Error string `json:"error,omitempty"` // why nothing was measured
}

// Metrics are the figures of one case and path.
type Metrics struct {
	// Rate is the highest rate, in datagrams per second sent by the
	// source and delivered (over the sample's Span), with loss below the
	// threshold; 0 if none passed.
	Rate float64 `json:"rate"`
	// CopiesPerSec is the copies per second delivered to the subscribers'
	// applications at Rate.
	CopiesPerSec float64 `json:"copies_per_sec"`
	// CPUPerMCopies is the CPU seconds per million delivered copies at
	// Rate, and its parts.
	CPUPerMCopies  float64 `json:"cpu_per_mcopies"`
	DaemonPerM     float64 `json:"cpu_daemon_per_mcopies"`
	SenderPerM     float64 `json:"cpu_sender_per_mcopies"`
	SoftirqPerM    float64 `json:"cpu_softirq_per_mcopies"`
	LatencyP50us   float64 `json:"latency_p50_us"`
	LatencyP99us   float64 `json:"latency_p99_us"`
	DeliveryMinPct float64 `json:"delivery_min_pct"`  // the worst subscriber, at the latency rate
	DeliveryPct    float64 `json:"delivery_mean_pct"` // all subscribers together
	// SenderLimited is set when the sender could not reach the rate asked
	// of it at Rate: the path may go faster than measured.
	SenderLimited bool `json:"sender_limited,omitempty"`

	// Source measure: the copies counted per datagram sent in the check
	// trial at the latency rate, all subscribers together (Fanout when the
	// path sends one copy to each), and the least and most one subscriber
	// counted per datagram (1 and 1).
	CopiesPerDatagram float64 `json:"copies_per_datagram,omitempty"`
	RecvCopiesMin     float64 `json:"receiver_copies_min,omitempty"`
	RecvCopiesMax     float64 `json:"receiver_copies_max,omitempty"`
}

// copiesWrong reports whether the check trial of a source measurement saw
// a subscriber get a datagram more than once, or miss more than
// tolerance of them: the path sends more or fewer copies than it should.
func (m Metrics) copiesWrong(tolerance float64) bool {
	return m.CopiesPerDatagram > 0 && (m.RecvCopiesMax > 1 || m.RecvCopiesMin < 1-tolerance)
}

// A Result is the median over the rounds of one case and path.
type Result struct {
	Case
	Path   string `json:"path"`
	Rounds int    `json:"rounds"` // rounds that measured something
	Metrics
	// BestOf names the kernel shape whose figures a PathKernel result
	// copies.
	BestOf string `json:"best_of,omitempty"`
	// CopiesRatio is the userspace path's copies per second divided by
	// this path's, CPURatio the userspace path's CPU per copy divided by
	// this path's; 0 when either is unknown.
	CopiesRatio float64  `json:"copies_ratio,omitempty"`
	CPURatio    float64  `json:"cpu_ratio,omitempty"`
	Errors      []string `json:"errors,omitempty"`
}

// A Skip says why a path did not run.
type Skip struct {
	Path   string `json:"path"`
	Encap  string `json:"encap,omitempty"` // empty: for every encapsulation
	Reason string `json:"reason"`
}

// A Report is everything a run measured.
type Report struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"` // wall time of the run
	Kernel  string    `json:"kernel"`
	CPUs    int       `json:"cpus"`
	Binary  string    `json:"binary"`

	Quick bool `json:"quick"`
	// Measures that ran; reports written before there were measures have
	// none, and ReadJSON makes that e2e.
	Measures []string `json:"measures,omitempty"`
	Rounds   int      `json:"rounds"`
	Fanouts  []int    `json:"fanouts"`
	Payloads []int    `json:"payloads"`
	Encaps   []string `json:"encaps"`
	Paths    []string `json:"paths"` // paths that ran for at least one encapsulation
	// Underlay is the address family the tunnels crossed: Underlay4 or
	// Underlay6; reports written before there was a choice have none,
	// and those ran over IPv4.
	Underlay string `json:"underlay,omitempty"`
	// The loss thresholds of the e2e measure and of the source and
	// receiver measures; 0 in old reports: 0.001 and 0.005.
	LossThreshold         float64 `json:"loss_threshold,omitempty"`
	CapacityLossThreshold float64 `json:"capacity_loss_threshold,omitempty"`

	Skipped []Skip   `json:"skipped,omitempty"`
	Notes   []string `json:"notes,omitempty"`

	Samples      []Sample      `json:"samples"`
	Measurements []Measurement `json:"measurements"`
	Results      []Result      `json:"results"`
	// Estimates are Estimates(Results), for readers of the JSON.
	Estimates []Estimate `json:"estimates,omitempty"`
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none. It does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile returns the p-th percentile (0 < p <= 100, nearest rank) of
// xs, or 0 for none. It sorts xs in place.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	return xs[min(max(rank, 1), len(xs))-1]
}

// Ratio returns a/b, or 0 when either is not positive.
func Ratio(a, b float64) float64 {
	if !(a > 0) || !(b > 0) {
		return 0
	}
	return a / b
}

func pathRank(p string) int {
	if i := slices.Index(AllPaths, p); i >= 0 {
		return i
	}
	return len(AllPaths)
}

// Aggregate takes the median of every metric over the rounds of each case
// and path (rounds with an error are left out), adds a PathKernel result,
// the better kernel shape, to each case of the source and receiver
// measures, and sets the ratios against the userspace path of the same
// case. The results are sorted by case (measure, encapsulation, fanout,
// payload), then path.
func Aggregate(ms []Measurement) []Result {
	type key struct {
		c    Case
		path string
	}
	groups := map[key][]Measurement{}
	var keys []key
	for _, m := range ms {
		k := key{m.Case, m.Path}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], m)
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(compareCases(a.c, b.c), comparePathOrder(a.path, b.path)) })
	results := make([]Result, 0, len(keys))
	for _, k := range keys {
		r := Result{Case: k.c, Path: k.path}
		var ok []Metrics
		for _, m := range groups[k] {
			if m.Error != "" {
				r.Errors = append(r.Errors, fmt.Sprintf("round %d: %s", m.Round, m.Error))
				continue
			}
			ok = append(ok, m.Metrics)
		}
		r.Rounds = len(ok)
		r.Metrics = medianMetrics(ok)
		results = append(results, r)
	}
	results = addKernelBest(results)
	slices.SortStableFunc(results, func(a, b Result) int { return cmp.Or(compareCases(a.Case, b.Case), comparePathOrder(a.Path, b.Path)) })
	for i := range results {
		r := &results[i]
		for _, u := range results {
			if u.Case == r.Case && u.Path == PathUserspace && u.Rounds > 0 && r.Rounds > 0 {
				r.CopiesRatio = Ratio(u.CopiesPerSec, r.CopiesPerSec)
				r.CPURatio = Ratio(u.CPUPerMCopies, r.CPUPerMCopies)
			}
		}
	}
	return results
}

func medianMetrics(ms []Metrics) Metrics {
	med := func(f func(Metrics) float64) float64 {
		xs := make([]float64, len(ms))
		for i, m := range ms {
			xs[i] = f(m)
		}
		return Median(xs)
	}
	out := Metrics{
		Rate:           med(func(m Metrics) float64 { return m.Rate }),
		CopiesPerSec:   med(func(m Metrics) float64 { return m.CopiesPerSec }),
		CPUPerMCopies:  med(func(m Metrics) float64 { return m.CPUPerMCopies }),
		DaemonPerM:     med(func(m Metrics) float64 { return m.DaemonPerM }),
		SenderPerM:     med(func(m Metrics) float64 { return m.SenderPerM }),
		SoftirqPerM:    med(func(m Metrics) float64 { return m.SoftirqPerM }),
		LatencyP50us:   med(func(m Metrics) float64 { return m.LatencyP50us }),
		LatencyP99us:   med(func(m Metrics) float64 { return m.LatencyP99us }),
		DeliveryMinPct: med(func(m Metrics) float64 { return m.DeliveryMinPct }),
		DeliveryPct:    med(func(m Metrics) float64 { return m.DeliveryPct }),

		CopiesPerDatagram: med(func(m Metrics) float64 { return m.CopiesPerDatagram }),
	}
	// A wrong copy count in any round shows.
	for i, m := range ms {
		if i == 0 || m.RecvCopiesMin < out.RecvCopiesMin {
			out.RecvCopiesMin = m.RecvCopiesMin
		}
		out.RecvCopiesMax = max(out.RecvCopiesMax, m.RecvCopiesMax)
	}
	for _, m := range ms {
		out.SenderLimited = out.SenderLimited || m.SenderLimited
	}
	return out
}

// WriteJSON writes r as indented JSON to path.
func WriteJSON(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encoding the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	// Reports written before there were measures hold e2e only.
	norm := func(c *Case) { c.Measure = measureOf(*c) }
	for i := range r.Samples {
		norm(&r.Samples[i].Case)
	}
	for i := range r.Measurements {
		norm(&r.Measurements[i].Case)
	}
	for i := range r.Results {
		norm(&r.Results[i].Case)
	}
	if len(r.Measures) == 0 {
		r.Measures = []string{MeasureE2E}
	}
	return &r, nil
}

// UnderlayText describes the underlay family of Options.Underlay and
// Report.Underlay, as the table states it.
func UnderlayText(underlay string) string {
	switch underlay {
	case Underlay4:
		return "IPv4 (node K: 198.18.0.K/24 on eth0)"
	case Underlay6:
		return "IPv6 (node K: fd00:198:18::K/64 on eth0, no IPv4 underlay address; GRE as IPv6 next header 47, VXLAN over UDP6 port 4789)"
	}
	return underlay
}

// WriteTable writes the report's underlay family (if it says), skips and
// notes, then a table per measure with one row per case and path (the
// median metrics and the ratios against the userspace path), and, with
// source results, the deployment estimates. A report of the e2e measure alone reads as it did
// before there were measures.
func WriteTable(w io.Writer, r *Report) error {
	var b strings.Builder
	if r.Underlay != "" {
		fmt.Fprintf(&b, "underlay: %s\n", UnderlayText(r.Underlay))
	}
	for _, s := range r.Skipped {
		enc := ""
		if s.Encap != "" {
			enc = " (" + s.Encap + ")"
		}
		fmt.Fprintf(&b, "skipped: %s%s: %s\n", s.Path, enc, s.Reason)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	byMeasure := map[string][]Result{}
	for _, res := range r.Results {
		m := measureOf(res.Case)
		byMeasure[m] = append(byMeasure[m], res)
	}
	e2eOnly := len(byMeasure) == 0 || (len(byMeasure) == 1 && byMeasure[MeasureE2E] != nil)
	e2eLoss := cmp.Or(r.LossThreshold, 0.001)
	capLoss := cmp.Or(r.CapacityLossThreshold, 0.005)
	for _, m := range AllMeasures {
		results := byMeasure[m]
		if results == nil && !(m == MeasureE2E && e2eOnly) {
			continue
		}
		var err error
		switch m {
		case MeasureSource:
			err = writeSourceTable(&b, results, capLoss)
		case MeasureReceiver:
			err = writeReceiverTable(&b, results, capLoss)
		case MeasureE2E:
			if !e2eOnly {
				fmt.Fprintf(&b, "\n== e2e: one source, N subscribers whose daemons deliver to applications, all on this machine\n")
			}
			err = writeE2ETable(&b, results, e2eLoss)
		}
		if err != nil {
			return err
		}
		if m == MeasureReceiver || (m == MeasureSource && byMeasure[MeasureReceiver] == nil) {
			if err := writeEstimateTable(&b, Estimates(r.Results)); err != nil {
				return err
			}
		}
	}
	for _, res := range r.Results {
		if res.copiesWrong(capLoss) {
			fmt.Fprintf(&b, "WRONG COPY COUNT: %s %s: %.3f copies per datagram in all (want %d), %.3f to %.3f per subscriber (want 1)\n",
				res.Case, res.Path, res.CopiesPerDatagram, res.Fanout, res.RecvCopiesMin, res.RecvCopiesMax)
		}
	}
	for _, res := range r.Results {
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "error: %s %s: %s\n", res.Case, res.Path, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pathLabel is the path as a table shows it: the kernel shape a
// PathKernel row copies, and * when sender-limited.
func pathLabel(res Result) string {
	p := res.Path
	if res.BestOf != "" {
		p += "(" + strings.TrimPrefix(res.BestOf, "kernel-") + ")"
	}
	if res.SenderLimited {
		p += "*"
	}
	return p
}

// pct formats a loss threshold: 0.001 is "0.1%".
func pct(x float64) string { return strconv.FormatFloat(100*x, 'g', 3, 64) + "%" }

// writeE2ETable writes the table of the e2e measure.
func writeE2ETable(b *strings.Builder, results []Result, loss float64) error {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encap\tfanout\tpayload\tpath\tbest pps\tcopies/s\tcpu s/Mcopy\tp50 µs\tp99 µs\tdelivery\tus/path copies\tus/path cpu\trounds\t")
	for _, res := range results {
		path := pathLabel(res)
		if res.Rounds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t0\t\n", res.Encap, res.Fanout, res.Payload, path)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%.2f\t%.0f\t%.0f\t%.2f%%\t%s\t%s\t%d\t\n",
			res.Encap, res.Fanout, res.Payload, path,
			SI(res.Rate), SI(res.CopiesPerSec), res.CPUPerMCopies,
			res.LatencyP50us, res.LatencyP99us, res.DeliveryMinPct,
			ratioString(res.CopiesRatio), ratioString(res.CPURatio), res.Rounds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(b, "best pps: datagrams/s from the source at loss < %s; copies/s: datagrams/s received by the subscribers' applications; cpu: every node's daemon + sender system time + machine-wide softirq per million copies;\n", pct(loss))
	b.WriteString("delivery: worst subscriber at the latency rate; us/path: userspace value / this path's value (medians over rounds); * sender-limited\n")
	return nil
}

// writeSourceTable writes the table of the source measure.
func writeSourceTable(b *strings.Builder, results []Result, loss float64) error {
	fmt.Fprintf(b, "\n== source: one sending node, N receiving nodes that count and drop the copies at their underlay ingress (nftables), source eth0 without UDP segmentation offload\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encap\tfanout\tpayload\tpath\tbest pps\tcopies/s\tcopies/dgram\tcpu s/Mcopy\tdaemon\tsender\tsoftirq\tus/path copies\tus/path cpu\trounds\t")
	for _, res := range results {
		path := pathLabel(res)
		if res.Rounds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t0\t\n", res.Encap, res.Fanout, res.Payload, path)
			continue
		}
		per := "-"
		if res.CopiesPerDatagram > 0 {
			per = fmt.Sprintf("%.2f", res.CopiesPerDatagram)
			if res.copiesWrong(loss) {
				per += "!"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%d\t\n",
			res.Encap, res.Fanout, res.Payload, path,
			SI(res.Rate), SI(res.CopiesPerSec), per, res.CPUPerMCopies, res.DaemonPerM, res.SenderPerM, res.SoftirqPerM,
			ratioString(res.CopiesRatio), ratioString(res.CPURatio), res.Rounds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(b, "best pps: datagrams/s offered by the source's application at loss < %s (copies counted at the receivers' ingress vs datagrams x N); copies/s: copies counted at the receivers' ingress per second;\n", pct(loss))
	b.WriteString("copies/dgram: copies counted per datagram at the latency rate (want N; ! a receiver got one twice or missed some); cpu: the source's daemon + sender system time + machine-wide softirq per million copies, then those parts;\n")
	b.WriteString("kernel(x): the better kernel shape; us/path: userspace value / this path's value (medians over rounds); * sender-limited\n")
	return nil
}

// writeReceiverTable writes the table of the receiver measure.
func writeReceiverTable(b *strings.Builder, results []Result, loss float64) error {
	fmt.Fprintf(b, "\n== receiver: one sending node, one receiving node whose daemon delivers to an application\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encap\tpayload\tpath\tdelivered/s\tcpu s/Mdgram\tp50 µs\tp99 µs\tdelivery\tus/path rate\tus/path cpu\trounds\t")
	for _, res := range results {
		path := pathLabel(res)
		if res.Rounds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\t-\t0\t\n", res.Encap, res.Payload, path)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%.0f\t%.0f\t%.2f%%\t%s\t%s\t%d\t\n",
			res.Encap, res.Payload, path, SI(res.CopiesPerSec), res.CPUPerMCopies,
			res.LatencyP50us, res.LatencyP99us, res.DeliveryMinPct,
			ratioString(res.CopiesRatio), ratioString(res.CPURatio), res.Rounds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(b, "delivered/s: datagrams/s the application received at loss < %s; cpu: both daemons + sender system time + machine-wide softirq per million datagrams;\n", pct(loss))
	b.WriteString("delivery: at the latency rate; kernel(x): the better kernel shape; us/path: userspace value / this path's value (medians over rounds); * sender-limited\n")
	return nil
}

// writeEstimateTable writes the deployment estimates.
func writeEstimateTable(b *strings.Builder, es []Estimate) error {
	if len(es) == 0 {
		return nil
	}
	fmt.Fprintf(b, "\n== deployment estimate: one daemon per instance; a stream to N subscribers costs the sending instance N copies, each receiving instance one\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encap\tfanout\tpayload\tpath\tsource/N\treceiver\tceiling\tlimit\tus/path src copies\tus/path src cpu\tus/path receiver\tus/path ceiling\t")
	dash := func(x float64, limited bool) string {
		if !(x > 0) {
			return "-"
		}
		if limited {
			return SI(x) + "*"
		}
		return SI(x)
	}
	for _, e := range es {
		path := e.Path
		if e.BestOf != "" {
			path += "(" + strings.TrimPrefix(e.BestOf, "kernel-") + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			e.Encap, e.Fanout, e.Payload, path,
			dash(e.SourceRate, e.SourceLimited), dash(e.ReceiverRate, e.ReceiverLimited), dash(e.Ceiling, false), cmp.Or(e.Limit, "-"),
			ratioString(e.CopiesRatio), ratioString(e.CPURatio), ratioString(e.ReceiverRatio), ratioString(e.CeilingRatio))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("source/N: the source's copies/s / N; receiver: the receiver measure's delivered/s; ceiling: min of the two, datagrams/s of one stream, and limit: which;\n")
	b.WriteString("kernel(x): the kernel shape with the higher ceiling; us/path: userspace / this path (src cpu: userspace cpu per copy / this path's, above 1 means this path is cheaper); * sender-limited\n")
	return nil
}

func ratioString(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

// SI formats x with a k or M suffix and three significant digits.
func SI(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 1e6:
		return trim3(x/1e6) + "M"
	case ax >= 1e3:
		return trim3(x/1e3) + "k"
	default:
		return trim3(x)
	}
}

func trim3(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}
