package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshcast/meshcast/internal/control"
)

// New returns a registry with meshcast's collector, the Go and process
// collectors, and meshcast_build_info for version. The collector calls
// state once per scrape, possibly from several scrapes at once, so state
// must be safe for concurrent use; it should return a fresh snapshot that
// nothing modifies afterwards.
func New(state func() control.State, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "meshcast_build_info",
		Help:        "A metric with a constant value of 1, labelled by the meshcast version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(
		newCollector(state),
		build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// collector turns one control.State into metrics per Collect. It keeps no
// state of its own, so it is safe for concurrent use if its state function
// is.
type collector struct {
	state    func() control.State
	fanoutOf func(control.State) (histogram, bool)

	info, mtu *prometheus.Desc

	peers, peerTxPackets, peerRxPackets, peerTxBytes, peerRxBytes *prometheus.Desc
	peerTxErrors, peerLastSeen                                    *prometheus.Desc

	drops *prometheus.Desc

	groups, groupMembers, groupLocal *prometheus.Desc

	floodFrames, floodCopies, floodDropSave *prometheus.Desc

	fanout *prometheus.Desc

	discSuccesses, discFailures, discThrottled *prometheus.Desc
	discLastSuccess, discLastSuccessAge        *prometheus.Desc
	discProblems                               *prometheus.Desc

	querierActive, queriesSent       *prometheus.Desc
	mldQuerierActive, mldQueriesSent *prometheus.Desc

	offloadInUse, offloadFallbacks *prometheus.Desc
}

// desc describes a meshcast metric: the label community comes first, then
// labels.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append([]string{"community"}, labels...), nil)
}

func newCollector(state func() control.State) *collector {
	return &collector{
		state:    state,
		fanoutOf: fanoutOf,

		info: desc("meshcast_info", "A metric with a constant value of 1, labelled by the node's encapsulation, TAP device, underlay address and overlay address.",
			"encap", "tap", "local", "overlay"),
		mtu: desc("meshcast_tap_mtu_bytes", "MTU of the TAP device in bytes."),

		peers:         desc("meshcast_peers", "Number of peers in the community, this node excluded."),
		peerTxPackets: desc("meshcast_peer_tx_packets_total", "Frames sent to the peer.", "peer"),
		peerRxPackets: desc("meshcast_peer_rx_packets_total", "Frames accepted from the peer.", "peer"),
		peerTxBytes:   desc("meshcast_peer_tx_bytes_total", "Bytes of inner Ethernet frames sent to the peer.", "peer"),
		peerRxBytes:   desc("meshcast_peer_rx_bytes_total", "Bytes of inner Ethernet frames accepted from the peer.", "peer"),
		peerTxErrors:  desc("meshcast_peer_tx_errors_total", "Copies for the peer that the underlay failed to send (also counted in meshcast_drops_total).", "peer"),
		peerLastSeen:  desc("meshcast_peer_last_seen_timestamp_seconds", "Unix time of the last packet accepted from the peer; absent before the first.", "peer"),

		drops: desc("meshcast_drops_total", "Frames dropped, by reason.", "reason"),

		groups:       desc("meshcast_groups", "Number of multicast groups with state in the IGMP snooping table."),
		groupMembers: desc("meshcast_group_members", "Number of peers that are members of the group, the local host not counted.", "group"),
		groupLocal:   desc("meshcast_group_local", "1 if the local host is a member of the group, else 0.", "group"),

		floodFrames:   desc("meshcast_flooded_frames_total", "Frames from the local host to an unregistered group, sent to every peer, by group (\"other\" past the first 256 groups).", "group"),
		floodCopies:   desc("meshcast_flooded_copies_total", "Copies those flooded frames took, by group.", "group"),
		floodDropSave: desc("meshcast_flooded_drop_would_save_total", "Flooded copies to peers that are not router peers: what --unregistered drop would not have sent, by group.", "group"),

		fanout: desc("meshcast_replication_fanout", "Copies sent to peers per frame read from the TAP."),

		discSuccesses:      desc("meshcast_discovery_successes_total", "Peer discovery rounds that succeeded."),
		discFailures:       desc("meshcast_discovery_failures_total", "Peer discovery rounds that failed."),
		discThrottled:      desc("meshcast_discovery_throttled_total", "Failed peer discovery rounds that were the source's request rate limit (also counted as failures)."),
		discLastSuccess:    desc("meshcast_discovery_last_success_timestamp_seconds", "Unix time of the last successful discovery round; absent before the first."),
		discLastSuccessAge: desc("meshcast_discovery_last_success_age_seconds", "Seconds since the last successful discovery round; absent before the first."),
		discProblems:       desc("meshcast_discovery_problems_total", "Instances that discovery left out of the mesh, by reason, counted on every listing that saw them.", "reason"),

		querierActive:    desc("meshcast_igmp_querier_active", "1 if this node's IGMP querier for its TAP is active, else 0."),
		queriesSent:      desc("meshcast_igmp_queries_sent_total", "IGMP queries sent by this node's querier."),
		mldQuerierActive: desc("meshcast_mld_querier_active", "1 if this node's MLD querier for its TAP is active, else 0; absent without an IPv6 overlay."),
		mldQueriesSent:   desc("meshcast_mld_queries_sent_total", "MLD queries sent by this node's querier; absent without an IPv6 overlay."),

		offloadInUse:     desc("meshcast_offload_in_use", "1 if the kernel offload is in use on this kernel, else 0 (meshcast status says why).", "offload"),
		offloadFallbacks: desc("meshcast_offload_fallback_total", "Batches the kernel refused with the offload, sent again without it; the offload is off after the first.", "offload"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.info, c.mtu,
		c.peers, c.peerTxPackets, c.peerRxPackets, c.peerTxBytes, c.peerRxBytes, c.peerTxErrors, c.peerLastSeen,
		c.drops,
		c.groups, c.groupMembers, c.groupLocal,
		c.floodFrames, c.floodCopies, c.floodDropSave,
		c.fanout,
		c.discSuccesses, c.discFailures, c.discThrottled, c.discLastSuccess, c.discLastSuccessAge, c.discProblems,
		c.querierActive, c.queriesSent, c.mldQuerierActive, c.mldQueriesSent,
		c.offloadInUse, c.offloadFallbacks,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it takes one snapshot and
// reports it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.state()
	e := emitter{ch: ch, community: s.Community}

	e.gauge(c.info, 1, s.Encap, s.TAP, s.Local, s.Overlay)
	e.gauge(c.mtu, float64(s.MTU))

	seen := make(map[string]bool, len(s.Peers))
	for _, p := range s.Peers {
		if seen[p.Underlay] {
			continue // one series per peer, even if a snapshot repeats one
		}
		seen[p.Underlay] = true
		e.counter(c.peerTxPackets, p.TxPackets, p.Underlay)
		e.counter(c.peerRxPackets, p.RxPackets, p.Underlay)
		e.counter(c.peerTxBytes, p.TxBytes, p.Underlay)
		e.counter(c.peerRxBytes, p.RxBytes, p.Underlay)
		e.counter(c.peerTxErrors, p.TxErrors, p.Underlay)
		if p.LastSeen != nil {
			e.gauge(c.peerLastSeen, unixSeconds(*p.LastSeen), p.Underlay)
		}
	}
	e.gauge(c.peers, float64(len(seen)))

	for reason, n := range s.Drops {
		e.counter(c.drops, n, reason)
	}

	clear(seen)
	for _, g := range s.Groups {
		if seen[g.Group] {
			continue
		}
		seen[g.Group] = true
		e.gauge(c.groupMembers, float64(len(g.Peers)), g.Group)
		e.gauge(c.groupLocal, boolValue(g.Local), g.Group)
	}
	e.gauge(c.groups, float64(len(seen)))

	clear(seen)
	for _, f := range s.Flooded {
		if seen[f.Group] {
			continue
		}
		seen[f.Group] = true
		e.counter(c.floodFrames, f.Frames, f.Group)
		e.counter(c.floodCopies, f.Copies, f.Group)
		e.counter(c.floodDropSave, f.DropSave, f.Group)
	}

	if h, ok := c.fanoutOf(s); ok {
		e.histogram(c.fanout, h)
	}

	d := s.Discovery
	e.counter(c.discSuccesses, d.Successes)
	e.counter(c.discFailures, d.Failures)
	e.counter(c.discThrottled, d.Throttled)
	if d.LastSuccess != nil {
		e.gauge(c.discLastSuccess, unixSeconds(*d.LastSuccess))
		e.gauge(c.discLastSuccessAge, d.LastSuccessAgeSecs)
	}
	for reason, n := range d.ProblemCounts {
		e.counter(c.discProblems, n, reason)
	}

	e.gauge(c.querierActive, boolValue(s.Querier.Active))
	e.counter(c.queriesSent, s.Querier.Sent)
	if q := s.MLDQuerier; q != nil {
		e.gauge(c.mldQuerierActive, boolValue(q.Active))
		e.counter(c.mldQueriesSent, q.Sent)
	}

	if o := s.Offloads; o.Kernel != "" {
		for _, x := range []struct {
			name string
			o    control.Offload
		}{{"tap_coalesce", o.TAPCoalesce}, {"udp_gso", o.UDPGSO}, {"udp_gro", o.UDPGRO}, {"af_packet_tx", o.PacketTx}, {"af_packet_gso", o.PacketGSO}, {"af_packet_rx", o.PacketRx}} {
			e.gauge(c.offloadInUse, boolValue(x.o.InUse), x.name)
			e.counter(c.offloadFallbacks, x.o.Fallbacks, x.name)
		}
	}
}

// emitter sends const metrics with the community label first. A metric
// that cannot be built (a label value that is not UTF-8) is sent as an
// invalid metric: the handler reports it and serves the rest.
type emitter struct {
	ch        chan<- prometheus.Metric
	community string
}

func (e emitter) send(d *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func (e emitter) labels(values []string) []string {
	return append([]string{e.community}, values...)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, e.labels(labels)...)
	e.send(d, m, err)
}

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), e.labels(labels)...)
	e.send(d, m, err)
}

func (e emitter) histogram(d *prometheus.Desc, h histogram, labels ...string) {
	n := min(len(h.Bounds), len(h.Counts))
	buckets := make(map[float64]uint64, n)
	for i := range n {
		buckets[h.Bounds[i]] = h.Counts[i]
	}
	m, err := prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets, e.labels(labels)...)
	e.send(d, m, err)
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
