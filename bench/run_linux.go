package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Run builds the testbed, runs every case of the grid on every path that
// can run, interleaved over opts.Rounds rounds, removes the testbed, and
// returns the report. It writes progress and then the table to out (nil:
// nowhere), and the JSON and chart files that opts names. It needs root.
//
// When ctx is cancelled, or a step fails in a way that stops the run, Run
// returns the report of what was measured so far (also written to the
// files) together with the error. A path that fails for one case (a daemon
// that does not start, say) is recorded in the report and the run goes on.
func Run(ctx context.Context, opts Options, out io.Writer) (*Report, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = io.Discard
	}
	if uid := os.Geteuid(); uid != 0 {
		return nil, fmt.Errorf("bench: needs root to build network namespaces and start daemons (running as uid %d): run it with sudo", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("bench: the ip command (iproute2) is missing: %w", err)
	}
	if opts.Binary, err = filepath.Abs(opts.Binary); err != nil {
		return nil, err
	}
	help, err := helpText(ctx, opts.Binary)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(help, "--peers") {
		return nil, fmt.Errorf("bench: %s does not look like meshcast (its `run --help` lacks --peers); pass the meshcast daemon (Options.Binary, --meshcast)", opts.Binary)
	}
	caps := probeHelp(help)
	if opts.Underlay == Underlay6 && !caps.UnderlayFamily {
		return nil, fmt.Errorf("bench: %s cannot tunnel over IPv6 (its `run --help` lacks --underlay-family): build a newer meshcast, or use the IPv4 underlay (Options.Underlay, --underlay 4)", opts.Binary)
	}
	if slices.Contains(opts.Measures, MeasureSource) {
		for _, prog := range []string{"nft", "ethtool"} {
			if _, err := exec.LookPath(prog); err != nil {
				return nil, fmt.Errorf("bench: the source measure counts copies with nft (nftables) and turns segmentation offload off with ethtool; %s is missing (make deps installs both): %w", prog, err)
			}
		}
	}

	r := &runner{opts: opts, started: map[string]bool{}, dropped: map[string]bool{}, stepped: map[string]int{}}
	rep := &Report{
		Started: time.Now(), Binary: opts.Binary, Kernel: kernelRelease(), CPUs: runtime.NumCPU(),
		Quick: opts.Quick, Measures: opts.Measures, Rounds: opts.Rounds, Fanouts: opts.Fanouts, Payloads: opts.Payloads, Encaps: opts.Encaps,
		Underlay: opts.Underlay, LossThreshold: opts.LossThreshold, CapacityLossThreshold: opts.CapacityLossThreshold,
	}
	r.rep = rep

	nodes := 0
	for _, m := range opts.Measures {
		nodes = max(nodes, slices.Max(fanoutsFor(m, opts.Fanouts))+1)
	}
	tb, err := newTestbed(nodes, opts.Underlay)
	if err != nil {
		return nil, err
	}
	r.tb = tb
	defer func() {
		if cerr := tb.close(); cerr != nil {
			fmt.Fprintf(out, "bench: cleanup: %v\n", cerr)
		}
	}()
	// Named like the namespaces, so that a harness killed with SIGKILL
	// leaves nothing the next one does not sweep.
	r.tmp, err = os.MkdirTemp("", tb.prefix+"tmp")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(r.tmp)

	if opts.Underlay == Underlay6 {
		caps.IP6Gretap = probeIP6Gretap(tb.hub)
	} else {
		caps.Gretap = probeGretap(tb.hub)
	}
	r.ovsSchema, caps.OVSWhy = ovsAvailable()
	caps.OVS = caps.OVSWhy == ""
	plan, skipped := planPaths(opts.Paths, opts.Encaps, opts.Underlay, caps)
	r.plan = plan
	rep.Skipped = skipped
	if slices.Contains(opts.Measures, MeasureE2E) || slices.Contains(opts.Measures, MeasureReceiver) {
		rep.Notes = append(rep.Notes, "cpu counts the machine-wide softirq time (/proc/stat), which also holds the subscribers' receive processing: compare paths by ratio, not by absolute value")
	}
	if slices.Contains(opts.Measures, MeasureSource) {
		rep.Notes = append(rep.Notes, "source cpu counts the machine-wide softirq time, which also holds the underlay switch's forwarding and the receivers' ingress counting of every copy, the same for every path: it narrows the ratios")
		if slices.Contains(plan["vxlan"], PathOVS) || slices.Contains(plan["gre"], PathOVS) {
			rep.Notes = append(rep.Notes, "source measure of ovs: only the source runs Open vSwitch (its userspace datapath would read the receivers' eth0 through AF_PACKET, before the ingress rule drops the copies); with no members known it floods the stream to every peer, N copies")
		}
	}
	for _, e := range opts.Encaps {
		for _, p := range plan[e] {
			if !slices.Contains(rep.Paths, p) {
				rep.Paths = append(rep.Paths, p)
			}
		}
	}

	total := 0
	for _, m := range opts.Measures {
		for _, e := range opts.Encaps {
			total += len(fanoutsFor(m, opts.Fanouts)) * opts.Rounds * len(plan[e])
		}
	}
	r.prog = newProgress(out, total)
	for _, line := range MethodText(opts.Measures, opts.LossThreshold, opts.CapacityLossThreshold, opts.LatencyRate) {
		r.prog.Printf("%s", line)
	}
	r.prog.Printf("underlay: %s", UnderlayText(opts.Underlay))
	if !caps.Dataplane {
		r.prog.Printf("kernel path unavailable: %s run --help lacks --dataplane; running the userspace path only", opts.Binary)
	}
	for _, s := range skipped {
		enc := ""
		if s.Encap != "" {
			enc = " (" + s.Encap + ")"
		}
		r.prog.Printf("skipping %s%s: %s", s.Path, enc, s.Reason)
	}

	runErr := r.runGrid(ctx, plan)
	r.prog.Finish()
	rep.Results = Aggregate(rep.Measurements)
	rep.Estimates = Estimates(rep.Results)
	rep.Seconds = time.Since(rep.Started).Seconds()
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if opts.JSONPath != "" {
		if err := WriteJSON(opts.JSONPath, rep); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(out, "wrote %s\n", opts.JSONPath)
		}
	}
	if opts.ChartPath != "" && len(rep.Results) > 0 {
		if files, err := WriteChart(opts.ChartPath, rep.Results); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(out, "wrote %s\n", strings.Join(files, ", "))
		}
	}
	if err := WriteTable(out, rep); err != nil {
		errs = append(errs, err)
	}
	cases := 0
	for _, m := range opts.Measures {
		cases += len(opts.Encaps) * len(fanoutsFor(m, opts.Fanouts)) * len(opts.Payloads)
	}
	fmt.Fprintf(out, "%d cases (%s), paths %s, %d round(s), in %.0f s\n",
		cases, strings.Join(opts.Measures, ", "), strings.Join(rep.Paths, ", "), opts.Rounds, rep.Seconds)
	return rep, errors.Join(errs...)
}

// runner holds the state of one Run.
type runner struct {
	opts  Options
	rep   *Report
	tb    *testbed
	tmp   string // inventories and control sockets
	prog  *progress
	trial atomic.Uint32 // the last trial number used

	ovsSchema string              // the OVS database schema, if OVS is installed
	plan      map[string][]string // the paths that run with each encapsulation

	// Over the IPv6 underlay, a path other than userspace runs only if it
	// works: started records the paths ("path encap") that started once,
	// stepped how many steps each took, and dropped those whose first
	// start failed, so are skipped from then on (see dropUnworkable).
	started, dropped map[string]bool
	stepped          map[string]int
}

// runGrid runs every measure, and within each every fanout and
// encapsulation, and within those the rounds of interleaved paths; each
// path run covers every payload size.
func (r *runner) runGrid(ctx context.Context, plan map[string][]string) error {
	for _, measure := range r.opts.Measures {
		for _, fanout := range fanoutsFor(measure, r.opts.Fanouts) {
			for _, encap := range r.opts.Encaps {
				for round := 1; round <= r.opts.Rounds; round++ {
					for _, path := range plan[encap] {
						if err := ctx.Err(); err != nil {
							return err
						}
						if r.dropped[path+" "+encap] {
							continue
						}
						r.stepped[path+" "+encap]++
						label := fmt.Sprintf("%s fanout %d %s round %d", encap, fanout, path, round)
						if measure != MeasureE2E {
							label = measure + " " + label
						}
						r.prog.Step(label)
						err := r.runPath(ctx, measure, encap, fanout, path, round)
						r.prog.Done()
						if err != nil {
							return err
						}
					}
				}
			}
		}
	}
	return nil
}

// A group is one start of the daemons of a path: the source, the
// subscribers, their receivers and the source's sender.
type group struct {
	measure string
	encap   string
	path    string
	round   int
	src     *nsNode
	subs    []*nsNode
	// daemons are the forwarding processes, one per node, the source's
	// first: its CPU time is measured.
	daemons []*daemon
	aux     []*daemon      // helper processes (ovsdb-server)
	restore []func() error // undo changes to the testbed, after the daemons stop, last first
	send    *sender
	recv    []*receiver
}

// startMeshcast starts `meshcast run` on every node.
func (r *runner) startMeshcast(g *group, nodes []*nsNode, invPath string) error {
	q := r.opts.QueryInterval
	for _, n := range nodes {
		ctl := filepath.Join(r.tmp, fmt.Sprintf("n%d.sock", n.index))
		args := daemonArgs(g.path, g.encap, invPath, n.underlay, ctl, q.String(), (q / 2).String())
		d, err := startDaemon(n, append([]string{r.opts.Binary}, args...), nil)
		if err != nil {
			return err
		}
		g.daemons = append(g.daemons, d)
	}
	return nil
}

// runPath starts the daemons of path for fanout subscribers, measures every
// payload size, and stops them. A failure to start is recorded as the
// measurements' error; only a cancelled ctx or an error that leaves the
// testbed in doubt is returned.
func (r *runner) runPath(ctx context.Context, measure, encap string, fanout int, path string, round int) error {
	g := &group{measure: measure, encap: encap, path: path, round: round, src: r.tb.nodes[0], subs: r.tb.nodes[1 : fanout+1]}
	defer r.stopGroup(g)
	startErr := r.startGroup(ctx, g)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if r.dropUnworkable(path, encap, startErr) {
		return nil
	}
	for _, payload := range r.opts.Payloads {
		c := Case{Measure: measure, Encap: encap, Fanout: fanout, Payload: payload}
		m := Measurement{Case: c, Path: path, Round: round}
		err := startErr
		if err == nil && measure == MeasureSource {
			m.Metrics, err = r.measureSource(ctx, g, c)
		} else if err == nil {
			m.Metrics, err = r.measure(ctx, g, c)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			m.Error = err.Error()
			r.prog.Printf("%s %s round %d: %v", c, path, round, err)
		}
		r.rep.Measurements = append(r.rep.Measurements, m)
	}
	return nil
}

// dropUnworkable decides, after a start of path with encap whose error is
// startErr, whether the path cannot run over this underlay: over IPv6, a
// path other than userspace whose first start fails (the binary's or the
// kernel's dataplane lacks IPv6 tunnels, say) is listed in Report.Skipped
// with the error, and not run again. Once a path has started, a later
// failure is an error of its measurements, as over IPv4.
func (r *runner) dropUnworkable(path, encap string, startErr error) bool {
	key := path + " " + encap
	if startErr == nil {
		r.started[key] = true
		return false
	}
	if r.opts.Underlay != Underlay6 || path == PathUserspace || r.started[key] {
		return false
	}
	r.dropped[key] = true
	reason := "does not run over the IPv6 underlay with this binary and kernel: " + briefError(startErr)
	r.rep.Skipped = append(r.rep.Skipped, Skip{Path: path, Encap: encap, Reason: reason})
	r.prog.Printf("skipping %s (%s): it does not run over the IPv6 underlay; its first start failed with:\n\t%s",
		path, encap, strings.ReplaceAll(startErr.Error(), "\n", "\n\t"))
	// The progress counts the steps the path will not take.
	steps := 0
	for _, m := range r.opts.Measures {
		steps += len(fanoutsFor(m, r.opts.Fanouts)) * r.opts.Rounds
	}
	r.prog.Drop(steps - r.stepped[key])
	// The path no longer counts as run unless another encapsulation still
	// runs it.
	still := false
	for e, paths := range r.plan {
		still = still || (e != encap && slices.Contains(paths, path) && !r.dropped[path+" "+e])
	}
	if !still {
		r.rep.Paths = slices.DeleteFunc(r.rep.Paths, func(p string) bool { return p == path })
	}
	return true
}

// briefError is the first line of err and, if it goes on (a daemon's
// output), its last line: what a skip reason shows.
func briefError(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	s := strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
			s += ": " + last
		}
	}
	return s
}

// startGroup writes the inventory, starts a daemon on every node, waits
// until each holds its overlay address, opens the sender and the
// receivers, and waits until every receiver gets traffic (and, on a
// snooping kernel bridge, until its querier is active). For the source
// measure it first turns segmentation offload off on the source's eth0,
// and then puts the counting rule on every subscriber's eth0, whose
// counters, not the applications, tell when every subscriber gets the
// traffic.
func (r *runner) startGroup(ctx context.Context, g *group) error {
	nodes := append([]*nsNode{g.src}, g.subs...)
	var inv strings.Builder
	inv.WriteString("# meshcast bench inventory\n")
	for _, n := range nodes {
		fmt.Fprintf(&inv, "%s %s,%s\n", n.underlay, community, n.overlay)
	}
	invPath := filepath.Join(r.tmp, fmt.Sprintf("peers-%d", len(g.subs)))
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o644); err != nil {
		return fmt.Errorf("bench: inventory: %w", err)
	}
	source := g.measure == MeasureSource
	// The nodes that run the path: every node, but in the source measure
	// of Open vSwitch the source alone (see the note in Run).
	active := nodes
	if source && g.path == PathOVS {
		active = nodes[:1]
	}
	if source {
		undo, err := segmentationOff(ctx, g.src)
		if undo != nil {
			g.restore = append(g.restore, undo)
		}
		if err != nil {
			return err
		}
	}
	var err error
	if g.path == PathOVS {
		err = r.startOVS(ctx, g, active, nodes)
	} else {
		err = r.startMeshcast(g, active, invPath)
	}
	if err != nil {
		return err
	}

	deadline := time.Now().Add(r.opts.StartTimeout)
	var srcUp time.Time
	for i, n := range active {
		for {
			if _, ok := n.overlayReady(); ok {
				break
			}
			if g.daemons[i].exited() {
				return g.daemons[i].exitError()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s has no %s up with %s after %v%s", g.path, n.name, overlayDev, n.overlay,
					r.opts.StartTimeout, indentTail(g.daemons[i].out.String()))
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		if i == 0 {
			srcUp = time.Now()
		}
	}

	if g.send, err = openSender(g.src); err != nil {
		return err
	}
	for _, n := range active[1:] {
		rc, err := openReceiver(n)
		if err != nil {
			return err
		}
		g.recv = append(g.recv, rc)
	}
	if source {
		undo, err := installIngress(ctx, g.src, g.subs, g.encap)
		if undo != nil {
			g.restore = append(g.restore, undo)
		}
		if err != nil {
			return err
		}
	}
	if err := r.waitReady(ctx, g, deadline); err != nil {
		return err
	}
	if g.path == PathKernelPair || g.path == PathKernelHRE {
		return r.waitQuerier(ctx, g, srcUp)
	}
	return nil
}

// waitReady waits until every subscriber gets (nearly) all the traffic,
// twice in a row: the daemons learn the group, ARP resolves the underlay,
// the bridges get their ports. It counts at the applications, or in the
// source measure at the subscribers' ingress. A subscriber that misses
// traffic joins again, in case its membership reports were lost while the
// paths came up (Open vSwitch has no querier to ask again).
func (r *runner) waitReady(ctx context.Context, g *group, deadline time.Time) error {
	var base []ingressCount
	reset := func(id uint32) (err error) {
		if g.measure == MeasureSource {
			base, err = readIngress(ctx, g.subs)
			return err
		}
		for _, rc := range g.recv {
			rc.reset(id, false)
		}
		return nil
	}
	counts := func() ([]uint64, error) {
		if g.measure == MeasureSource {
			now, err := readIngress(ctx, g.subs)
			if err != nil {
				return nil, err
			}
			out := make([]uint64, len(now))
			for i := range now {
				out[i] = now[i].packets - base[i].packets
			}
			return out, nil
		}
		out := make([]uint64, len(g.recv))
		for i, rc := range g.recv {
			out[i] = rc.received()
		}
		return out, nil
	}
	for good := 0; good < 2; {
		id := r.trial.Add(1)
		if err := reset(id); err != nil {
			return err
		}
		st, err := g.send.send(ctx, id, 500, 100*time.Millisecond, headerLen)
		if err != nil {
			return err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		got, err := counts()
		if err != nil {
			return err
		}
		good++
		for i, n := range got {
			if n*20 < st.sent*19 {
				good = 0
				if len(g.recv) == len(g.subs) {
					if err := g.recv[i].rejoin(); err != nil {
						return err
					}
				}
			}
		}
		for _, d := range append(g.daemons, g.aux...) {
			if d.exited() {
				return d.exitError()
			}
		}
		if good == 0 && time.Now().After(deadline) {
			var s []string
			for i, n := range got {
				s = append(s, fmt.Sprintf("%s: %d/%d", g.subs[i].name, n, st.sent))
			}
			where := "not every subscriber receives the group"
			if g.measure == MeasureSource {
				where = "not every subscriber's ingress counts the stream"
			}
			return fmt.Errorf("%s: %s after %v (%s)%s", g.path, where, r.opts.StartTimeout,
				strings.Join(s, ", "), indentTail(g.daemons[0].out.String()))
		}
		if good == 0 {
			// Give fresh reports time to arrive.
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitQuerier waits until the source bridge's own IGMP querier is active:
// a snooping Linux bridge floods every group until its querier has been
// on for the query response interval.
func (r *runner) waitQuerier(ctx context.Context, g *group, up time.Time) error {
	snooping, querier, response, err := bridgeInfo(ctx, g.src.name, overlayDev)
	if err != nil {
		r.note(fmt.Sprintf("%s: could not read the source bridge's IGMP settings (%v); waited 11 s for its querier", g.path, err))
		snooping, querier, response = true, true, 10*time.Second
	}
	if !snooping {
		r.note(fmt.Sprintf("%s: the source bridge %s has IGMP snooping off: it floods every group", g.path, overlayDev))
		return nil
	}
	if !querier {
		r.note(fmt.Sprintf("%s: the source bridge %s has no querier of its own; it relies on the others'", g.path, overlayDev))
	}
	return sleepCtx(ctx, time.Until(up.Add(response+500*time.Millisecond)))
}

// note adds a note to the report once.
func (r *runner) note(s string) {
	if !slices.Contains(r.rep.Notes, s) {
		r.rep.Notes = append(r.rep.Notes, s)
		r.prog.Printf("note: %s", s)
	}
}

// stopGroup closes the sockets and stops the daemons; a daemon that does
// not exit cleanly is noted.
func (r *runner) stopGroup(g *group) {
	for _, rc := range g.recv {
		rc.close()
	}
	if g.send != nil {
		g.send.close()
	}
	for _, ds := range [][]*daemon{g.daemons, g.aux} {
		errs := make([]error, len(ds))
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Go(func() { errs[i] = d.stop() })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				r.note(fmt.Sprintf("%s did not stop cleanly: %v", g.path, err))
			}
		}
	}
	// Last in, first out: the counting rules, then what the daemons'
	// setup changed (Open vSwitch's offloads), then segmentation offload.
	for _, undo := range slices.Backward(g.restore) {
		if err := undo(); err != nil {
			r.note(fmt.Sprintf("%s: restoring the testbed: %v", g.path, err))
		}
	}
}

// measure runs the rate search and the latency trial of one case of the
// e2e or receiver measure.
func (r *runner) measure(ctx context.Context, g *group, c Case) (Metrics, error) {
	var m Metrics
	var samples []Sample
	loss := r.opts.LossThreshold
	if g.measure == MeasureReceiver {
		loss = r.opts.CapacityLossThreshold
	}
	cfg := SearchConfig{
		Start:         r.opts.StartCopies / float64(c.Fanout),
		Max:           r.opts.MaxRate,
		Min:           50,
		Bisections:    r.opts.Bisections,
		LossThreshold: loss,
	}
	res, err := SearchRate(cfg, func(rate float64) (float64, float64, error) {
		s, err := r.trialRun(ctx, g, c, rate, r.opts.TrialDuration, false)
		if err != nil {
			return 0, 0, err
		}
		s.Kind, s.Step = KindSearch, len(samples)
		s.Pass = s.Loss < loss
		samples = append(samples, s)
		if s.Seconds > 0 && float64(s.Sent)/s.Seconds < 0.9*rate {
			err = ErrCeiling // the sender is the bottleneck
		}
		return float64(s.OnTime), float64(s.Sent) * float64(c.Fanout), err
	})
	r.rep.Samples = append(r.rep.Samples, samples...)
	if err != nil {
		return m, err
	}
	lat, err := r.trialRun(ctx, g, c, r.opts.LatencyRate, r.opts.LatencyDuration, true)
	if err != nil {
		return m, err
	}
	lat.Kind = KindLatency
	lat.Pass = lat.Loss < loss
	r.rep.Samples = append(r.rep.Samples, lat)

	m.LatencyP50us, m.LatencyP99us = lat.LatencyP50us, lat.LatencyP99us
	if lat.Sent > 0 {
		m.DeliveryMinPct = 100
		for _, n := range lat.PerApp {
			m.DeliveryMinPct = min(m.DeliveryMinPct, 100*float64(n)/float64(lat.Sent))
		}
		m.DeliveryPct = 100 * (1 - lat.Loss)
	}
	if res.BestStep < 0 {
		return m, fmt.Errorf("no rate down to %.0f datagrams/s had loss below %s", cfg.Min, pct(loss))
	}
	best := samples[res.BestStep]
	if best.Span > 0 {
		m.Rate = float64(best.Sent) / best.Span
	}
	m.CopiesPerSec = best.CopiesPerSec
	if best.Delivered > 0 {
		perM := 1e6 / float64(best.Delivered)
		m.DaemonPerM, m.SenderPerM, m.SoftirqPerM = best.CPUDaemon*perM, best.CPUSender*perM, best.CPUSoftirq*perM
		m.CPUPerMCopies = best.CPU() * perM
	}
	m.SenderLimited = best.Seconds > 0 && float64(best.Sent)/best.Seconds < 0.95*best.Rate
	return m, nil
}

// trialRun sends at rate for dur and measures what arrived, the underlay
// copies and the source's CPU time.
func (r *runner) trialRun(ctx context.Context, g *group, c Case, rate float64, dur time.Duration, record bool) (Sample, error) {
	s := Sample{Case: c, Path: g.path, Round: g.round, Rate: rate}
	// What an earlier trial left queued must not arrive during this one.
	if err := waitQuiet(ctx, g.recv, 50*time.Millisecond, 5*time.Second); err != nil {
		return s, err
	}
	id := r.trial.Add(1)
	for _, rc := range g.recv {
		rc.reset(id, record)
	}
	rx0, err := underlayRx(g.subs)
	if err != nil {
		return s, err
	}
	cpu0, err1 := daemonsCPU(g.daemons)
	soft0, err2 := softirqCPU()
	if err := errors.Join(err1, err2); err != nil {
		return s, daemonError(g.daemons, err)
	}

	st, err := g.send.send(ctx, id, rate, dur, c.Payload)
	if err != nil {
		return s, err
	}
	// Datagrams that arrive later than lagLimit after the end of sending
	// were queued: the path did not keep up with the rate.
	if err := sleepCtx(ctx, time.Until(st.start.Add(st.elapsed+lagLimit(dur)))); err != nil {
		return s, err
	}
	for _, rc := range g.recv {
		s.OnTime += rc.received()
	}
	// Wait until everything arrived, or nothing more arrives for 50 ms.
	want := st.sent * uint64(len(g.recv))
	var last uint64
	stable := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end) && stable < 5; {
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return s, err
		}
		var got uint64
		for _, rc := range g.recv {
			got += rc.received()
		}
		if got >= want {
			break
		}
		if got == last {
			stable++
		} else {
			stable, last = 0, got
		}
	}

	rx1, err := underlayRx(g.subs)
	if err != nil {
		return s, err
	}
	cpu1, err1 := daemonsCPU(g.daemons)
	soft1, err2 := softirqCPU()
	if err := errors.Join(err1, err2); err != nil {
		return s, daemonError(g.daemons, err)
	}

	s.Seconds = st.elapsed.Seconds()
	s.Span = s.Seconds
	s.Sent = st.sent
	var lats []float64
	for _, rc := range g.recv {
		if last := rc.lastArrival(); last > 0 {
			s.Span = max(s.Span, float64(last-st.start.UnixNano())/1e9)
		}
		n := rc.received()
		s.PerApp = append(s.PerApp, n)
		s.Delivered += n
		if record {
			lats = append(lats, rc.latencies()...)
		}
	}
	s.Loss = Loss(float64(s.OnTime), float64(s.Sent)*float64(len(g.recv)))
	s.UnderlayRx = rx1 - rx0
	if s.Span > 0 {
		s.CopiesPerSec = float64(s.Delivered) / s.Span
	}
	s.CPUDaemon, s.CPUSender, s.CPUSoftirq = cpu1-cpu0, st.sysCPU, soft1-soft0
	if record {
		s.LatencyP50us = Percentile(lats, 50)
		s.LatencyP99us = Percentile(lats, 99)
	}
	return s, nil
}

// lagLimit is how long after the end of sending a datagram may arrive and
// still count as delivered on time: a quarter of the trial, at least 50 ms.
func lagLimit(trial time.Duration) time.Duration { return max(trial/4, 50*time.Millisecond) }

// waitQuiet waits until no receiver has had a datagram for quiet, or
// until limit has passed.
func waitQuiet(ctx context.Context, recv []*receiver, quiet, limit time.Duration) error {
	for end := time.Now().Add(limit); time.Now().Before(end); {
		var last int64
		for _, rc := range recv {
			last = max(last, rc.lastAny())
		}
		wait := time.Until(time.Unix(0, last).Add(quiet))
		if wait <= 0 {
			return nil
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	return nil
}

// daemonsCPU sums the utime+stime of every forwarding process, in seconds:
// the source's and the subscribers'.
func daemonsCPU(ds []*daemon) (float64, error) {
	var sum float64
	for _, d := range ds {
		v, err := procCPU(d.pid())
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// daemonError explains err by a daemon that has exited, if one has.
func daemonError(ds []*daemon, err error) error {
	for _, d := range ds {
		if d.exited() {
			return d.exitError()
		}
	}
	return err
}

// underlayRx sums the received-packet counters of the nodes' eth0.
func underlayRx(nodes []*nsNode) (uint64, error) {
	var sum uint64
	for _, n := range nodes {
		v, err := n.rxPackets()
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// probeGretap reports whether the kernel can create a gretap link, by
// trying in the hub namespace.
func probeGretap(hub *nsNode) bool {
	gt := &netlink.Gretap{
		LinkAttrs: netlink.LinkAttrs{Name: "mcbgt0"},
		Local:     net.IPv4(198, 18, 0, 250),
		Remote:    net.IPv4(198, 18, 0, 251),
	}
	if err := hub.h.LinkAdd(gt); err != nil {
		return false
	}
	_ = hub.h.LinkDel(gt)
	return true
}

// probeIP6Gretap reports whether the kernel can create an ip6gretap link
// (the ip6_gre module), by trying in the hub namespace.
func probeIP6Gretap(hub *nsNode) bool {
	gt := &netlink.Gretap{
		LinkAttrs: netlink.LinkAttrs{Name: "mcbgt6"},
		Local:     underlayAddr(Underlay6, 250).AsSlice(), // an IPv6 Local makes it ip6gretap
		Remote:    underlayAddr(Underlay6, 251).AsSlice(),
	}
	if err := hub.h.LinkAdd(gt); err != nil {
		return false
	}
	_ = hub.h.LinkDel(gt)
	return true
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
