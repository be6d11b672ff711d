package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
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
	KindLatency = "latency" // the low-rate trial for latency and delivery
)

// A Case is one cell of the grid.
type Case struct {
	Encap   string `json:"encap"`
	Fanout  int    `json:"fanout"`  // subscribers
	Payload int    `json:"payload"` // UDP payload bytes
}

func (c Case) String() string {
	return fmt.Sprintf("%s fanout %d payload %d", c.Encap, c.Fanout, c.Payload)
}

func compareCases(a, b Case) int {
	return cmp.Or(cmp.Compare(a.Encap, b.Encap), cmp.Compare(a.Fanout, b.Fanout), cmp.Compare(a.Payload, b.Payload))
}

// A Sample is one trial: the source sent for Seconds at Rate.
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
	PerApp []uint64 `json:"per_app"` // datagrams received by each subscriber's application
	Loss   float64  `json:"loss"`    // 1 - OnTime/(Sent*Fanout), at least 0
	Pass   bool     `json:"pass"`    // Loss below the threshold

	// UnderlayRx is the packets received on the subscribers' eth0, all
	// together. With UDP segmentation offload one packet there may carry
	// many copies, so it is informative only.
	UnderlayRx   uint64  `json:"underlay_rx"`
	CopiesPerSec float64 `json:"copies_per_sec"` // Delivered / Span

	CPUDaemon  float64 `json:"cpu_daemon_s"`  // utime+stime of every node's daemon
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
}

// A Result is the median over the rounds of one case and path.
type Result struct {
	Case
	Path   string `json:"path"`
	Rounds int    `json:"rounds"` // rounds that measured something
	Metrics
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

	Quick    bool     `json:"quick"`
	Rounds   int      `json:"rounds"`
	Fanouts  []int    `json:"fanouts"`
	Payloads []int    `json:"payloads"`
	Encaps   []string `json:"encaps"`
	Paths    []string `json:"paths"` // paths that ran for at least one encapsulation

	Skipped []Skip   `json:"skipped,omitempty"`
	Notes   []string `json:"notes,omitempty"`

	Samples      []Sample      `json:"samples"`
	Measurements []Measurement `json:"measurements"`
	Results      []Result      `json:"results"`
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
// and path (rounds with an error are left out), and sets the ratios against
// the userspace path of the same case. The results are sorted by case, then
// path.
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
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(compareCases(a.c, b.c), cmp.Compare(pathRank(a.path), pathRank(b.path)), cmp.Compare(a.path, b.path))
	})
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
	return &r, nil
}

// WriteTable writes the report's skips and notes, then one row per case and
// path with the median metrics and the ratios against the userspace path.
func WriteTable(w io.Writer, r *Report) error {
	var b strings.Builder
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
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encap\tfanout\tpayload\tpath\tbest pps\tcopies/s\tcpu s/Mcopy\tp50 µs\tp99 µs\tdelivery\tus/path copies\tus/path cpu\trounds\t")
	for _, res := range r.Results {
		path := res.Path
		if res.SenderLimited {
			path += "*"
		}
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
	b.WriteString("best pps: datagrams/s from the source at loss < 0.1%; copies/s: datagrams/s received by the subscribers' applications; cpu: every node's daemon + sender system time + machine-wide softirq per million copies;\n")
	b.WriteString("delivery: worst subscriber at the latency rate; us/path: userspace value / this path's value (medians over rounds); * sender-limited\n")
	for _, res := range r.Results {
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "error: %s %s: %s\n", res.Case, res.Path, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
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
