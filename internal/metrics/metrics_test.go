package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshcast/meshcast/internal/control"
)

// fakeState is a daemon whose snapshot a test replaces between scrapes.
type fakeState struct {
	mu     sync.Mutex
	s      control.State
	fanout *histogram
	calls  int
}

func (f *fakeState) set(s control.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
}

func (f *fakeState) setFanout(h *histogram) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fanout = h
}

func (f *fakeState) state() control.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.s
}

// fanoutOf stands in for the State field that control does not have yet.
func (f *fakeState) fanoutOf(control.State) (histogram, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fanout == nil {
		return histogram{}, false
	}
	return *f.fanout, true
}

// collector returns a collector of f, fan-out included.
func (f *fakeState) collector() *collector {
	c := newCollector(f.state)
	c.fanoutOf = f.fanoutOf
	return c
}

func ptr[T any](v T) *T { return &v }

var (
	seenA   = time.Unix(1700000000, 500_000_000)
	success = time.Unix(1700000100, 0)
)

// snapshot1 is a node of community demo with two peers.
func snapshot1() control.State {
	return control.State{
		Version:   "v1.2.3",
		Community: "demo",
		Encap:     "gre",
		TAP:       "mcbr-demo",
		Local:     "198.18.0.1",
		Overlay:   "198.19.0.1/24",
		MTU:       1462,
		Peers: []control.Peer{
			{Underlay: "198.18.0.2", Overlay: "198.19.0.2", TxPackets: 10, RxPackets: 20, TxBytes: 1000, RxBytes: 2000, TxErrors: 1, LastSeen: ptr(seenA)},
			{Underlay: "198.18.0.3", Overlay: "198.19.0.3", TxPackets: 5, TxBytes: 500},
		},
		Groups: []control.Group{
			{Group: "239.1.1.1", Peers: []string{"198.18.0.2", "198.18.0.3"}, Local: true},
			{Group: "239.2.2.2", Peers: []string{"198.18.0.3"}},
		},
		Flooded: []control.Flooded{
			{Group: "239.3.3.3", Frames: 4, Copies: 8, DropSave: 4},
			{Group: "other", Frames: 1, Copies: 2, DropSave: 2},
		},
		Drops: map[string]uint64{"not_a_peer": 3, "send_error": 1},
		Discovery: control.Discovery{
			Source:             "ec2",
			LastSuccess:        ptr(success),
			LastSuccessAgeSecs: 42.5,
			Successes:          7,
			Failures:           2,
			Throttled:          1,
			ProblemCounts:      map[string]uint64{"malformed_tag": 4},
		},
		Querier: control.Querier{Active: true, Sent: 9},
	}
}

const help1 = `
# HELP meshcast_info A metric with a constant value of 1, labelled by the node's encapsulation, TAP device, underlay address and overlay address.
# TYPE meshcast_info gauge
meshcast_info{community="demo",encap="gre",local="198.18.0.1",overlay="198.19.0.1/24",tap="mcbr-demo"} 1
# HELP meshcast_tap_mtu_bytes MTU of the TAP device in bytes.
# TYPE meshcast_tap_mtu_bytes gauge
meshcast_tap_mtu_bytes{community="demo"} 1462
# HELP meshcast_peers Number of peers in the community, this node excluded.
# TYPE meshcast_peers gauge
`

const helpPeers = `
# HELP meshcast_peer_tx_packets_total Frames sent to the peer.
# TYPE meshcast_peer_tx_packets_total counter
# HELP meshcast_peer_rx_packets_total Frames accepted from the peer.
# TYPE meshcast_peer_rx_packets_total counter
# HELP meshcast_peer_tx_bytes_total Bytes of inner Ethernet frames sent to the peer.
# TYPE meshcast_peer_tx_bytes_total counter
# HELP meshcast_peer_rx_bytes_total Bytes of inner Ethernet frames accepted from the peer.
# TYPE meshcast_peer_rx_bytes_total counter
# HELP meshcast_peer_tx_errors_total Copies for the peer that the underlay failed to send (also counted in meshcast_drops_total).
# TYPE meshcast_peer_tx_errors_total counter
# HELP meshcast_peer_last_seen_timestamp_seconds Unix time of the last packet accepted from the peer; absent before the first.
# TYPE meshcast_peer_last_seen_timestamp_seconds gauge
`

const helpRest = `
# HELP meshcast_drops_total Frames dropped, by reason.
# TYPE meshcast_drops_total counter
# HELP meshcast_groups Number of multicast groups with state in the IGMP snooping table.
# TYPE meshcast_groups gauge
# HELP meshcast_group_members Number of peers that are members of the group, the local host not counted.
# TYPE meshcast_group_members gauge
# HELP meshcast_group_local 1 if the local host is a member of the group, else 0.
# TYPE meshcast_group_local gauge
# HELP meshcast_flooded_frames_total Frames from the local host to an unregistered group, sent to every peer, by group ("other" past the first 256 groups).
# TYPE meshcast_flooded_frames_total counter
# HELP meshcast_flooded_copies_total Copies those flooded frames took, by group.
# TYPE meshcast_flooded_copies_total counter
# HELP meshcast_flooded_drop_would_save_total Flooded copies to peers that are not router peers: what --unregistered drop would not have sent, by group.
# TYPE meshcast_flooded_drop_would_save_total counter
# HELP meshcast_replication_fanout Copies sent to peers per frame read from the TAP.
# TYPE meshcast_replication_fanout histogram
# HELP meshcast_discovery_successes_total Peer discovery rounds that succeeded.
# TYPE meshcast_discovery_successes_total counter
# HELP meshcast_discovery_failures_total Peer discovery rounds that failed.
# TYPE meshcast_discovery_failures_total counter
# HELP meshcast_discovery_throttled_total Failed peer discovery rounds that were the source's request rate limit (also counted as failures).
# TYPE meshcast_discovery_throttled_total counter
# HELP meshcast_discovery_last_success_timestamp_seconds Unix time of the last successful discovery round; absent before the first.
# TYPE meshcast_discovery_last_success_timestamp_seconds gauge
# HELP meshcast_discovery_last_success_age_seconds Seconds since the last successful discovery round; absent before the first.
# TYPE meshcast_discovery_last_success_age_seconds gauge
# HELP meshcast_discovery_problems_total Instances that discovery left out of the mesh, by reason, counted on every listing that saw them.
# TYPE meshcast_discovery_problems_total counter
# HELP meshcast_igmp_querier_active 1 if this node's IGMP querier for its TAP is active, else 0.
# TYPE meshcast_igmp_querier_active gauge
# HELP meshcast_igmp_queries_sent_total IGMP queries sent by this node's querier.
# TYPE meshcast_igmp_queries_sent_total counter
`

// flooded1 is the series of snapshot1's Flooded.
const flooded1 = `meshcast_flooded_frames_total{community="demo",group="239.3.3.3"} 4
meshcast_flooded_frames_total{community="demo",group="other"} 1
meshcast_flooded_copies_total{community="demo",group="239.3.3.3"} 8
meshcast_flooded_copies_total{community="demo",group="other"} 2
meshcast_flooded_drop_would_save_total{community="demo",group="239.3.3.3"} 4
meshcast_flooded_drop_would_save_total{community="demo",group="other"} 2
`

// TestCollector feeds two snapshots and checks that every metric equals the
// snapshot of its scrape: counters follow the State, and a peer, group or
// drop reason that leaves the State leaves the output.
func TestCollector(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	f.setFanout(&histogram{Bounds: []float64{0, 1, 2, 4}, Counts: []uint64{1, 3, 3, 7}, Count: 9, Sum: 30})
	c := f.collector()

	want1 := help1 + `meshcast_peers{community="demo"} 2
` + helpPeers + `
meshcast_peer_tx_packets_total{community="demo",peer="198.18.0.2"} 10
meshcast_peer_tx_packets_total{community="demo",peer="198.18.0.3"} 5
meshcast_peer_rx_packets_total{community="demo",peer="198.18.0.2"} 20
meshcast_peer_rx_packets_total{community="demo",peer="198.18.0.3"} 0
meshcast_peer_tx_bytes_total{community="demo",peer="198.18.0.2"} 1000
meshcast_peer_tx_bytes_total{community="demo",peer="198.18.0.3"} 500
meshcast_peer_rx_bytes_total{community="demo",peer="198.18.0.2"} 2000
meshcast_peer_rx_bytes_total{community="demo",peer="198.18.0.3"} 0
meshcast_peer_tx_errors_total{community="demo",peer="198.18.0.2"} 1
meshcast_peer_tx_errors_total{community="demo",peer="198.18.0.3"} 0
meshcast_peer_last_seen_timestamp_seconds{community="demo",peer="198.18.0.2"} 1700000000.5
` + helpRest + `
meshcast_drops_total{community="demo",reason="not_a_peer"} 3
meshcast_drops_total{community="demo",reason="send_error"} 1
meshcast_groups{community="demo"} 2
meshcast_group_members{community="demo",group="239.1.1.1"} 2
meshcast_group_members{community="demo",group="239.2.2.2"} 1
meshcast_group_local{community="demo",group="239.1.1.1"} 1
meshcast_group_local{community="demo",group="239.2.2.2"} 0
` + flooded1 + `meshcast_replication_fanout_bucket{community="demo",le="0"} 1
meshcast_replication_fanout_bucket{community="demo",le="1"} 3
meshcast_replication_fanout_bucket{community="demo",le="2"} 3
meshcast_replication_fanout_bucket{community="demo",le="4"} 7
meshcast_replication_fanout_bucket{community="demo",le="+Inf"} 9
meshcast_replication_fanout_sum{community="demo"} 30
meshcast_replication_fanout_count{community="demo"} 9
meshcast_discovery_successes_total{community="demo"} 7
meshcast_discovery_failures_total{community="demo"} 2
meshcast_discovery_throttled_total{community="demo"} 1
meshcast_discovery_last_success_timestamp_seconds{community="demo"} 1700000100
meshcast_discovery_last_success_age_seconds{community="demo"} 42.5
meshcast_discovery_problems_total{community="demo",reason="malformed_tag"} 4
meshcast_igmp_querier_active{community="demo"} 1
meshcast_igmp_queries_sent_total{community="demo"} 9
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want1)); err != nil {
		t.Fatalf("first snapshot:\n%v", err)
	}

	// Peer 198.18.0.2 leaves, 198.18.0.3 sends more, group 239.2.2.2
	// expires, a drop reason appears, discovery has not succeeded (a
	// restarted daemon), the querier stopped.
	s := snapshot1()
	s.Peers = []control.Peer{{Underlay: "198.18.0.3", TxPackets: 50, RxPackets: 4, TxBytes: 5000, RxBytes: 400, LastSeen: ptr(seenA.Add(time.Second))}}
	s.Groups = s.Groups[:1]
	s.Groups[0].Peers = []string{"198.18.0.3"}
	s.Groups[0].Local = false
	s.Drops = map[string]uint64{"not_a_peer": 3, "send_error": 1, "bad_gre": 8}
	s.Discovery = control.Discovery{Source: "ec2", Failures: 1, ProblemCounts: nil}
	s.Querier = control.Querier{Active: false, Sent: 9}
	f.set(s)
	f.setFanout(&histogram{Bounds: []float64{0, 1, 2, 4}, Counts: []uint64{1, 4, 5, 9}, Count: 12, Sum: 51})

	want2 := help1 + `meshcast_peers{community="demo"} 1
` + helpPeers + `
meshcast_peer_tx_packets_total{community="demo",peer="198.18.0.3"} 50
meshcast_peer_rx_packets_total{community="demo",peer="198.18.0.3"} 4
meshcast_peer_tx_bytes_total{community="demo",peer="198.18.0.3"} 5000
meshcast_peer_rx_bytes_total{community="demo",peer="198.18.0.3"} 400
meshcast_peer_tx_errors_total{community="demo",peer="198.18.0.3"} 0
meshcast_peer_last_seen_timestamp_seconds{community="demo",peer="198.18.0.3"} 1700000001.5
` + helpRest + `
meshcast_drops_total{community="demo",reason="bad_gre"} 8
meshcast_drops_total{community="demo",reason="not_a_peer"} 3
meshcast_drops_total{community="demo",reason="send_error"} 1
meshcast_groups{community="demo"} 1
meshcast_group_members{community="demo",group="239.1.1.1"} 1
meshcast_group_local{community="demo",group="239.1.1.1"} 0
` + flooded1 + `meshcast_replication_fanout_bucket{community="demo",le="0"} 1
meshcast_replication_fanout_bucket{community="demo",le="1"} 4
meshcast_replication_fanout_bucket{community="demo",le="2"} 5
meshcast_replication_fanout_bucket{community="demo",le="4"} 9
meshcast_replication_fanout_bucket{community="demo",le="+Inf"} 12
meshcast_replication_fanout_sum{community="demo"} 51
meshcast_replication_fanout_count{community="demo"} 12
meshcast_discovery_successes_total{community="demo"} 0
meshcast_discovery_failures_total{community="demo"} 1
meshcast_discovery_throttled_total{community="demo"} 0
meshcast_igmp_querier_active{community="demo"} 0
meshcast_igmp_queries_sent_total{community="demo"} 9
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want2)); err != nil {
		t.Fatalf("second snapshot:\n%v", err)
	}
	if f.calls != 2 {
		t.Errorf("state called %d times for 2 scrapes, want 2", f.calls)
	}
}

// TestEmptyState checks a daemon that has nothing yet: no peers, no groups,
// no fan-out histogram. Every series that exists has a value; none is
// left dangling.
func TestEmptyState(t *testing.T) {
	c := newCollector(func() control.State { return control.State{Community: "demo"} })
	names := []string{"meshcast_peers", "meshcast_groups", "meshcast_peer_tx_packets_total", "meshcast_group_members",
		"meshcast_replication_fanout", "meshcast_discovery_last_success_age_seconds", "meshcast_drops_total"}
	want := `
# HELP meshcast_peers Number of peers in the community, this node excluded.
# TYPE meshcast_peers gauge
meshcast_peers{community="demo"} 0
# HELP meshcast_groups Number of multicast groups with state in the IGMP snooping table.
# TYPE meshcast_groups gauge
meshcast_groups{community="demo"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// TestFanoutBuckets converts histograms shaped like the engine's.
func TestFanoutBuckets(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    histogram
		want string
	}{
		{
			name: "engine bounds",
			h: histogram{
				Bounds: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
				Counts: []uint64{2, 2, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6},
				Count:  7, Sum: 2000,
			},
			want: `le="0"} 2 le="1"} 2 le="2"} 5 le="4"} 5 le="8"} 6 le="16"} 6 le="32"} 6 le="64"} 6 le="128"} 6 le="256"} 6 le="512"} 6 le="1024"} 6 le="+Inf"} 7 sum 2000 count 7`,
		},
		{
			name: "empty",
			h:    histogram{},
			want: `le="+Inf"} 0 sum 0 count 0`,
		},
		{
			name: "more bounds than counts",
			h:    histogram{Bounds: []float64{1, 2, 4}, Counts: []uint64{1, 2}, Count: 3, Sum: 6},
			want: `le="1"} 1 le="2"} 2 le="+Inf"} 3 sum 6 count 3`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeState{}
			f.set(control.State{Community: "c"})
			f.setFanout(&tc.h)
			var b strings.Builder
			b.WriteString("# HELP meshcast_replication_fanout Copies sent to peers per frame read from the TAP.\n")
			b.WriteString("# TYPE meshcast_replication_fanout histogram\n")
			fields := strings.Fields(tc.want)
			for i := 0; i < len(fields); i += 2 {
				switch fields[i] {
				case "sum", "count":
					fmt.Fprintf(&b, "meshcast_replication_fanout_%s{community=\"c\"} %s\n", fields[i], fields[i+1])
				default:
					fmt.Fprintf(&b, "meshcast_replication_fanout_bucket{community=\"c\",%s %s\n", fields[i], fields[i+1])
				}
			}
			if err := testutil.CollectAndCompare(f.collector(), strings.NewReader(b.String()), "meshcast_replication_fanout"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLint runs the Prometheus naming lint over everything New registers,
// and over the collector with a fan-out histogram, which New's snapshot
// cannot carry yet.
func TestLint(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	f.setFanout(&histogram{Bounds: []float64{0, 1}, Counts: []uint64{1, 2}, Count: 2, Sum: 1})

	problems, err := testutil.GatherAndLint(New(f.state, "v1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("New: lint: %s: %s", p.Metric, p.Text)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(f.collector())
	problems, err = testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("collector: lint: %s: %s", p.Metric, p.Text)
	}
}

// TestNew checks what New registers besides the collector.
func TestNew(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	reg := New(f.state, "v1.2.3")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"meshcast_build_info", "meshcast_peers", "meshcast_info", "go_goroutines", "process_start_time_seconds"} {
		if !names[n] {
			t.Errorf("New: no %s", n)
		}
	}
	n, err := testutil.GatherAndCount(reg, "meshcast_build_info")
	if err != nil || n != 1 {
		t.Errorf("meshcast_build_info: %d series, %v; want 1", n, err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshcast_build_info" {
			continue
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != "v1.2.3" || !strings.HasPrefix(labels["goversion"], "go") || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("meshcast_build_info = %v %v", labels, mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
}

// TestInvalidLabel checks that a label value Prometheus refuses (not UTF-8)
// costs that one series, not the scrape.
func TestInvalidLabel(t *testing.T) {
	f := &fakeState{}
	s := snapshot1()
	s.Drops = map[string]uint64{"bad\xff": 1}
	f.set(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.collector())
	mfs, err := reg.Gather()
	if err == nil {
		t.Fatal("Gather: no error for a label value that is not UTF-8")
	}
	if len(mfs) == 0 {
		t.Fatal("Gather returned nothing besides the error")
	}
	for _, mf := range mfs {
		if mf.GetName() == "meshcast_drops_total" {
			t.Errorf("meshcast_drops_total served with an invalid label")
		}
	}
}

// TestDuplicates checks that a snapshot that repeats a peer or a group
// still makes a valid scrape.
func TestDuplicates(t *testing.T) {
	s := snapshot1()
	s.Peers = append(s.Peers, s.Peers[0])
	s.Groups = append(s.Groups, s.Groups[0])
	c := newCollector(func() control.State { return s })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP meshcast_peers Number of peers in the community, this node excluded.
# TYPE meshcast_peers gauge
meshcast_peers{community="demo"} 2
# HELP meshcast_groups Number of multicast groups with state in the IGMP snooping table.
# TYPE meshcast_groups gauge
meshcast_groups{community="demo"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "meshcast_peers", "meshcast_groups"); err != nil {
		t.Fatal(err)
	}
}
