package bench

import (
	"fmt"
	"slices"
	"time"
)

// Options configure Run. The zero value of every field means its default;
// with Quick the defaults are those of a short run (about four and a half
// minutes on two cores).
type Options struct {
	// Binary is the meshcast executable started in the namespaces.
	// Required.
	Binary string
	// Quick selects the short grid and intervals: fanout 1, 4 and 16, payload
	// 64 and 1400, VXLAN and GRE, one round, and the measures source and
	// receiver.
	Quick bool
	// Measures to run, from AllMeasures: MeasureSource, MeasureReceiver,
	// MeasureE2E; default e2e (source and receiver with Quick). They run
	// one after the other, in the order of AllMeasures.
	Measures []string
	// Rounds is how many times each case runs every path, interleaved;
	// default 3 (1 with Quick).
	Rounds int

	// The grid. Defaults: fanout 1, 2, 4, 8, 16; payload 64 and 1400;
	// encapsulation vxlan and gre.
	Fanouts  []int
	Payloads []int
	Encaps   []string
	// Paths to run, from AllPaths; default all of them (those that cannot
	// run are listed in Report.Skipped).
	Paths []string
	// Underlay is the address family the tunnels cross: Underlay4 (the
	// default: node K has 198.18.0.K/24 on eth0) or Underlay6 (node K has
	// fd00:198:18::K/64 and no IPv4 address on eth0; the daemons run with
	// --underlay-family 6). A path that cannot run over it is listed in
	// Report.Skipped.
	Underlay string

	// JSONPath, if set, receives the whole report as JSON.
	JSONPath string
	// ChartPath, if set, is the prefix of the chart files (PREFIX.png and
	// PREFIX.svg).
	ChartPath string

	// TrialDuration is the sending time of one search step; default 500ms
	// (250ms with Quick).
	TrialDuration time.Duration
	// LatencyDuration is the sending time of the latency trial, and of the
	// source measure's check trial; default 2s (500ms with Quick).
	LatencyDuration time.Duration
	// LatencyRate is the datagrams per second of the latency trial and of
	// the check trial; default 1000.
	LatencyRate float64
	// StartCopies is the copies per second (rate times fanout) of the
	// search's first step; default 20000.
	StartCopies float64
	// MaxRate caps the search, in datagrams per second; default 1e6.
	MaxRate float64
	// Bisections after the ramp; default 4 (3 with Quick).
	Bisections int
	// LossThreshold of the e2e measure; default 0.001 (0.1 %).
	LossThreshold float64
	// CapacityLossThreshold of the source and receiver measures; default
	// 0.005 (0.5 %).
	CapacityLossThreshold float64
	// QueryInterval is passed to every daemon as --igmp-query-interval
	// (and half of it as --igmp-response-interval), so the kernel bridge's
	// querier becomes active soon; default 2s.
	QueryInterval time.Duration
	// StartTimeout bounds the start of the daemons and the first delivery
	// to every subscriber; default 20s.
	StartTimeout time.Duration
}

// The grids.
var (
	defaultFanouts  = []int{1, 2, 4, 8, 16}
	quickFanouts    = []int{1, 4, 16}
	defaultPayloads = []int{64, 1400}
	defaultEncaps   = []string{"vxlan", "gre"}
)

// maxFanout bounds the fanout: node K has the address 198.18.0.K (or
// fd00:198:18::K).
const maxFanout = 200

// The underlay families of Options.Underlay.
const (
	Underlay4 = "4" // IPv4: 198.18.0.K/24
	Underlay6 = "6" // IPv6: fd00:198:18::K/64
)

// Check reports whether Run would accept the options, as Run checks them
// before it starts: an error names the option to change. It needs no
// privileges.
func (o Options) Check() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults fills in the defaults and checks the options.
func (o Options) withDefaults() (Options, error) {
	if o.Binary == "" {
		return o, fmt.Errorf("bench: no meshcast binary given (Options.Binary, --meshcast)")
	}
	set := func(d *time.Duration, normal, quick time.Duration) {
		if *d <= 0 {
			*d = normal
			if o.Quick {
				*d = quick
			}
		}
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
		if o.Quick {
			o.Rounds = 1
		}
	}
	if len(o.Fanouts) == 0 {
		o.Fanouts = defaultFanouts
		if o.Quick {
			o.Fanouts = quickFanouts
		}
	}
	if len(o.Payloads) == 0 {
		o.Payloads = defaultPayloads
	}
	if len(o.Encaps) == 0 {
		o.Encaps = defaultEncaps
	}
	if len(o.Paths) == 0 {
		o.Paths = AllPaths
	}
	if o.Underlay == "" {
		o.Underlay = Underlay4
	}
	if len(o.Measures) == 0 {
		o.Measures = []string{MeasureE2E}
		if o.Quick {
			o.Measures = []string{MeasureSource, MeasureReceiver}
		}
	}
	o.Fanouts, o.Payloads = slices.Clone(o.Fanouts), slices.Clone(o.Payloads)
	o.Encaps, o.Paths = slices.Clone(o.Encaps), slices.Clone(o.Paths)
	o.Measures = slices.Clone(o.Measures)
	set(&o.TrialDuration, 500*time.Millisecond, 250*time.Millisecond)
	set(&o.LatencyDuration, 2*time.Second, 500*time.Millisecond)
	set(&o.QueryInterval, 2*time.Second, 2*time.Second)
	set(&o.StartTimeout, 20*time.Second, 20*time.Second)
	if o.LatencyRate <= 0 {
		o.LatencyRate = 1000
	}
	if o.StartCopies <= 0 {
		o.StartCopies = 20000
	}
	if o.MaxRate <= 0 {
		o.MaxRate = 1e6
	}
	if o.Bisections <= 0 {
		o.Bisections = 4
		if o.Quick {
			o.Bisections = 3
		}
	}
	if o.LossThreshold <= 0 {
		o.LossThreshold = 0.001
	}
	if o.CapacityLossThreshold <= 0 {
		o.CapacityLossThreshold = 0.005
	}

	for _, f := range o.Fanouts {
		if f < 1 || f > maxFanout {
			return o, fmt.Errorf("bench: fanout %d: use 1 to %d subscribers", f, maxFanout)
		}
	}
	if o.Underlay != Underlay4 && o.Underlay != Underlay6 {
		return o, fmt.Errorf("bench: underlay %q: use %s (IPv4) or %s (IPv6)", o.Underlay, Underlay4, Underlay6)
	}
	for _, p := range o.Payloads {
		if max := maxPayloadOver(o.Underlay); p < headerLen || p > max {
			return o, fmt.Errorf("bench: payload %d: use %d to %d bytes (the VXLAN overlay MTU over IPv%s is %d)",
				p, headerLen, max, o.Underlay, max+20+8)
		}
	}
	for _, e := range o.Encaps {
		if e != "gre" && e != "vxlan" {
			return o, fmt.Errorf("bench: encapsulation %q: use gre or vxlan", e)
		}
	}
	for _, p := range o.Paths {
		if !slices.Contains(AllPaths, p) {
			return o, fmt.Errorf("bench: path %q: use %v", p, AllPaths)
		}
	}
	for _, m := range o.Measures {
		if !slices.Contains(AllMeasures, m) {
			return o, fmt.Errorf("bench: measure %q: use %v", m, AllMeasures)
		}
	}
	if o.LossThreshold >= 1 || o.CapacityLossThreshold >= 1 {
		return o, fmt.Errorf("bench: a loss threshold is a fraction below 1 (0.001 is 0.1 %%)")
	}
	slices.Sort(o.Fanouts)
	o.Fanouts = slices.Compact(o.Fanouts)
	// The measures run in the order of AllMeasures, each once.
	slices.SortFunc(o.Measures, func(a, b string) int { return measureRank(a) - measureRank(b) })
	o.Measures = slices.Compact(o.Measures)
	return o, nil
}
