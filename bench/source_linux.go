package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The source measure: the subscribers' applications stay joined, so that
// the source's path knows every member as in a deployment, but what the
// source sends them is counted and dropped at their underlay ingress by
// the nftables rule of ingressRuleset, before their daemons see it. IGMP,
// ARP and the daemons' own traffic pass, so memberships stay fresh.

// An ingressCount is what one subscriber's rule counted.
type ingressCount struct{ packets, bytes uint64 }

// readIngress reads the stream counter of every node, in parallel.
func readIngress(ctx context.Context, nodes []*nsNode) ([]ingressCount, error) {
	out := make([]ingressCount, len(nodes))
	errs := make([]error, len(nodes))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			b, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.name,
				"nft", "-j", "list", "counter", "netdev", nftTable, nftCounter).Output()
			if err != nil {
				errs[i] = fmt.Errorf("bench: reading the ingress counter in %s: %w%s", n.name, err, exitStderr(err))
				return
			}
			out[i].packets, out[i].bytes, errs[i] = parseNftCounter(b)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", n.name, errs[i])
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// installIngress puts the counting rule on every subscriber's eth0, and
// returns what removes them.
func installIngress(ctx context.Context, src *nsNode, subs []*nsNode, encap string) (func() error, error) {
	var done []*nsNode
	undo := func() error {
		var errs []error
		for _, n := range done {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.name, "nft", "delete", "table", "netdev", nftTable).CombinedOutput()
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("nft delete table in %s: %w%s", n.name, err, indentTail(string(out))))
			}
		}
		return errors.Join(errs...)
	}
	for _, n := range subs {
		rules := ingressRuleset(encap, src.underlay, n.underlay)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.name, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return undo, fmt.Errorf("bench: nftables in %s: %w%s\n\tthe rules:\n\t%s", n.name, err, indentTail(string(out)),
				strings.ReplaceAll(strings.TrimSpace(rules), "\n", "\n\t"))
		}
		done = append(done, n)
	}
	return undo, nil
}

// segmentationOff turns UDP segmentation offload off on the node's eth0, as
// on a NIC without it: every copy is a packet of its own on the wire. It
// returns what puts the setting back.
func segmentationOff(ctx context.Context, n *nsNode) (func() error, error) {
	ethtool := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, "ethtool"}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("bench: ethtool %s in %s: %w%s", strings.Join(args, " "), n.name, err, indentTail(string(out)))
		}
		return string(out), nil
	}
	out, err := ethtool("-k", nodeLink)
	if err != nil {
		return nil, err
	}
	was, _, ok := ethtoolFeature(out, featureUSO)
	if !ok {
		return nil, fmt.Errorf("bench: ethtool -k %s in %s lists no %s", nodeLink, n.name, featureUSO)
	}
	restore := func() error {
		if !was {
			return nil
		}
		_, err := ethtool("-K", nodeLink, featureUSO, "on")
		return err
	}
	if _, err := ethtool("-K", nodeLink, featureUSO, "off"); err != nil {
		return nil, err
	}
	out, err = ethtool("-k", nodeLink)
	if err != nil {
		return restore, err
	}
	if on, _, _ := ethtoolFeature(out, featureUSO); on {
		return restore, fmt.Errorf("bench: %s of %s in %s is still on after ethtool -K", featureUSO, nodeLink, n.name)
	}
	return restore, nil
}

func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return indentTail(string(ee.Stderr))
	}
	return ""
}

// rxSum sums the received-packet counters of the nodes' eth0: every packet,
// the stream's copies and the rest.
func rxSum(nodes []*nsNode) (uint64, error) { return underlayRx(nodes) }

// measureSource runs the check trial and the rate search of one case of
// the source measure.
func (r *runner) measureSource(ctx context.Context, g *group, c Case) (Metrics, error) {
	var m Metrics
	loss := r.opts.CapacityLossThreshold
	check, err := r.trialSource(ctx, g, c, r.opts.LatencyRate, r.opts.LatencyDuration)
	if err != nil {
		return m, err
	}
	check.Kind = KindCheck
	check.Pass = check.Loss < loss
	r.rep.Samples = append(r.rep.Samples, check)
	if check.Sent > 0 {
		sent := float64(check.Sent)
		m.CopiesPerDatagram = float64(check.Delivered) / sent
		for i, n := range check.PerApp {
			v := float64(n) / sent
			if i == 0 || v < m.RecvCopiesMin {
				m.RecvCopiesMin = v
			}
			m.RecvCopiesMax = max(m.RecvCopiesMax, v)
		}
	}
	if check.Delivered > 0 {
		if want := uint64(wireLen(c.Encap, r.opts.Underlay, c.Payload)); check.IngressBytes != check.Delivered*want {
			return m, fmt.Errorf("the receivers counted %d packets of %.1f bytes on average, not %d: the underlay coalesced copies, so packets do not count copies",
				check.Delivered, float64(check.IngressBytes)/float64(check.Delivered), want)
		}
	}
	if m.copiesWrong(loss) {
		r.note(fmt.Sprintf("%s %s round %d sends the wrong number of copies: at %.0f datagrams/s the receivers counted %.3f per datagram in all (want %d), %.3f to %.3f each (want 1)",
			c, g.path, g.round, r.opts.LatencyRate, m.CopiesPerDatagram, c.Fanout, m.RecvCopiesMin, m.RecvCopiesMax))
	}

	var samples []Sample
	cfg := SearchConfig{
		Start:         r.opts.StartCopies / float64(c.Fanout),
		Max:           r.opts.MaxRate,
		Min:           50,
		Bisections:    r.opts.Bisections,
		LossThreshold: loss,
	}
	res, err := SearchRate(cfg, func(rate float64) (float64, float64, error) {
		s, err := r.trialSource(ctx, g, c, rate, r.opts.TrialDuration)
		if err != nil {
			return 0, 0, err
		}
		s.Kind, s.Step = KindSearch, len(samples)
		s.Pass = s.Loss < loss
		samples = append(samples, s)
		if s.Seconds > 0 && float64(s.Sent)/s.Seconds < 0.9*rate {
			err = ErrCeiling
		}
		// The loss as trialSource counts it: a subscriber counts for at
		// most the datagrams sent.
		offered := float64(s.Sent) * float64(c.Fanout)
		return offered * (1 - s.Loss), offered, err
	})
	r.rep.Samples = append(r.rep.Samples, samples...)
	if err != nil {
		return m, err
	}
	if res.BestStep < 0 {
		return m, fmt.Errorf("no rate down to %.0f datagrams/s had loss below %s at the receivers' ingress", cfg.Min, pct(loss))
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

// trialSource sends at rate for dur and counts the copies at the
// subscribers' ingress: those there by the end of sending plus the lag
// limit are on time; the source's daemon, the sender's system time and the
// machine's softirq time are measured up to then.
func (r *runner) trialSource(ctx context.Context, g *group, c Case, rate float64, dur time.Duration) (Sample, error) {
	s := Sample{Case: c, Path: g.path, Round: g.round, Rate: rate}
	// What an earlier trial left queued must not be counted in this one.
	if err := waitQuietRx(ctx, g.subs, 50*time.Millisecond, 5*time.Second); err != nil {
		return s, err
	}
	c0, err := readIngress(ctx, g.subs)
	if err != nil {
		return s, err
	}
	rx0, err := rxSum(g.subs)
	if err != nil {
		return s, err
	}
	srcDaemon := g.daemons[:1]
	cpu0, err1 := daemonsCPU(srcDaemon)
	soft0, err2 := softirqCPU()
	if err := errors.Join(err1, err2); err != nil {
		return s, daemonError(g.daemons, err)
	}
	id := r.trial.Add(1)
	st, err := g.send.send(ctx, id, rate, dur, c.Payload)
	if err != nil {
		return s, err
	}

	// Poll the underlay counters until every copy could be there, or the
	// lag limit: that is the on-time point. The last change of the
	// counters before it ends the span.
	want := st.sent * uint64(len(g.subs))
	onTime := st.start.Add(st.elapsed + lagLimit(dur))
	lastRx, lastChange := rx0, time.Now()
	for time.Now().Before(onTime) && lastRx-rx0 < want {
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return s, err
		}
		rx, err := rxSum(g.subs)
		if err != nil {
			return s, err
		}
		if rx != lastRx {
			lastRx, lastChange = rx, time.Now()
		}
	}
	cpu1, err1 := daemonsCPU(srcDaemon)
	soft1, err2 := softirqCPU()
	if err := errors.Join(err1, err2); err != nil {
		return s, daemonError(g.daemons, err)
	}
	c1, err := readIngress(ctx, g.subs)
	if err != nil {
		return s, err
	}
	// The late copies, if any: until nothing arrives for 50 ms.
	c2 := c1
	if lastRx-rx0 < want {
		if err := waitQuietRx(ctx, g.subs, 50*time.Millisecond, time.Second); err != nil {
			return s, err
		}
		if c2, err = readIngress(ctx, g.subs); err != nil {
			return s, err
		}
	}

	s.Seconds = st.elapsed.Seconds()
	s.Span = max(s.Seconds, lastChange.Sub(st.start).Seconds())
	tallyIngress(&s, st.sent, c0, c1, c2)
	if rx, err := rxSum(g.subs); err == nil {
		s.UnderlayRx = rx - rx0
	}
	if s.Span > 0 {
		s.CopiesPerSec = float64(s.Delivered) / s.Span
	}
	s.CPUDaemon, s.CPUSender, s.CPUSoftirq = cpu1-cpu0, st.sysCPU, soft1-soft0
	return s, nil
}

// waitQuietRx waits until the nodes' eth0 have received nothing for
// quiet, or until limit has passed.
func waitQuietRx(ctx context.Context, nodes []*nsNode, quiet, limit time.Duration) error {
	last, err := rxSum(nodes)
	if err != nil {
		return err
	}
	since := time.Now()
	for end := time.Now().Add(limit); time.Now().Before(end); {
		if time.Since(since) >= quiet {
			return nil
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
		rx, err := rxSum(nodes)
		if err != nil {
			return err
		}
		if rx != last {
			last, since = rx, time.Now()
		}
	}
	return nil
}
