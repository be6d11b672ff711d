// Package bench is meshcast's throughput harness: it measures the userspace
// path (the `meshcast run` daemon) against the kernel path (`meshcast run
// --dataplane kernel`: a Linux bridge with IGMP snooping and VXLAN ports) on
// the same machine, in network namespaces it builds and removes itself.
//
// A deployment runs one daemon per instance: a stream to N subscribers
// costs the sending instance N copies and each receiving instance one. So
// the harness measures what limits a deployment, each a measure of its own
// (Options.Measures, meshcast-bench --measure):
//
//   - source: what one sending node sends, in copies per second, to N
//     receiving nodes that only count and drop the copies;
//   - receiver: what one receiving node delivers to an application, in
//     datagrams per second;
//   - e2e: one sending node and N receiving nodes whose daemons deliver to
//     applications, all on this machine (the default; --quick measures
//     source and receiver instead).
//
// From the first two the report estimates the ceiling of one stream per
// encapsulation, payload and fanout: min(source copies/s / N, receiver
// datagrams/s), per path ([Estimates]).
//
// [Run] does the work and returns a [Report]; it needs root. The command
// line is meshcast-bench (cmd/meshcast-bench), a binary of its own so that
// the daemon links none of this. The rate search ([SearchRate]), the
// aggregation, the table, the JSON and the chart are plain functions that
// need no privileges.
//
// # Topology
//
// A hub namespace holds a Linux bridge (IGMP snooping off: a plain switch,
// like a VPC) with one veth port per node. Node 1 is the source, nodes 2 to
// N+1 are the subscribers; node K has the underlay address 198.18.0.K on
// eth0 and the overlay address 198.19.0.K/24 on mcbr-demo. With
// Options.Underlay Underlay6 (meshcast-bench --underlay 6) the underlay is
// IPv6 instead: node K has fd00:198:18::K/64 on eth0 (IPv6 on, no
// duplicate address detection, no IPv4 underlay address), the inventory
// lines carry those addresses, the daemons run with --underlay-family 6,
// and the tunnels are GRE over IPv6 (next header 47) and VXLAN over UDP6;
// the overlay stays IPv4. The report says which family it used
// (Report.Underlay, "underlay" in the JSON). Every namespace
// is named "mcb-" + the harness's pid in base 36 + a random suffix + its
// role, so namespaces left by a harness that was killed are recognised and
// removed by the next run. Everything is removed when Run returns, also on
// an error, on a cancelled context (Ctrl-C in meshcast-bench) and on a
// panic; the daemons are started with a parent-death signal, so they die
// with the harness.
//
// # Paths
//
//   - userspace: `meshcast run` (GRE or VXLAN).
//   - kernel-pair, kernel-hre: `meshcast run --dataplane kernel
//     --kernel-vxlan pair|hre`. They run only when the binary's `run --help`
//     mentions --dataplane (and --kernel-vxlan); otherwise they are listed
//     as skipped and the run says so. With GRE they need the kernel's
//     gretap, which is probed; head-end replication is VXLAN only. Before
//     measuring, the harness waits until the source bridge's own IGMP
//     querier is active (its query response interval, read with `ip -d -j
//     link show`, after the bridge appears), because a snooping bridge
//     floods until then. Every daemon gets --igmp-query-interval 2s, so
//     that wait is about 1.5 s.
//   - ovs: Open vSwitch with the userspace datapath, one ovsdb-server and
//     ovs-vswitchd per node, only when ovs-vswitchd is installed (otherwise
//     listed as skipped). Its mcbr-demo bridge snoops IGMP and has one
//     protected VXLAN or GRE port per peer (no forwarding between peers, as
//     with the kernel bridge's isolated ports); see ovs_linux.go.
//
// Over the IPv6 underlay the kernel paths need the kernel's ip6gretap for
// GRE (probed; this build machine's kernel has none, so they are skipped
// with GRE), and a path other than userspace whose first start fails over
// IPv6 (a build whose kernel dataplane lacks IPv6 tunnels, say) is listed
// in Report.Skipped with the daemon's error and not run again; a later
// failure of a path that has started is an error, as over IPv4.
//
// The paths of one case run interleaved (userspace, kernel, userspace,
// kernel, ... for Options.Rounds rounds) so that drift on the machine hits
// all of them, and the report gives medians over the rounds. The measures
// run one after the other: source, receiver, e2e. In the source and
// receiver measures the report adds a row "kernel", the better of the
// kernel path's two shapes (by copies per second; in the estimate, by
// ceiling), naming the shape it copies.
//
// # The source measure
//
// Node 1 sends; nodes 2 to N+1 receive. Every node runs the path's daemon
// and every receiver's application joins the group on mcbr-demo, so that
// the source's path knows N members, as in a deployment; but the copies
// never reach the receivers' daemons: an nftables rule on each receiver's
// eth0 ingress (table netdev mcb, hook ingress) counts the stream's copies
// (packets and bytes: from the source's underlay address to the
// receiver's, IPv4 or IPv6, VXLAN or GRE, inner destination
// 239.1.2.3:5001, matched at its offset in the encapsulation) and drops
// them. IGMP, ARP, neighbour discovery and the daemons' own traffic pass, so the memberships stay fresh during the
// trials (the 2 s query interval would let them expire about 5 s after the
// last report otherwise) and the source keeps resolving its peers. The
// source's eth0 gets `ethtool -K eth0 tx-udp-segmentation off`, as on a
// NIC without UDP segmentation offload: the kernel splits what meshcast
// hands it with UDP_SEGMENT before the wire, and every copy is one packet
// (the check below verifies it by the bytes counted). Everything is put
// back when the daemons stop.
//
// Per case and path:
//
//   - A check trial at Options.LatencyRate for Options.LatencyDuration:
//     every receiver must count exactly one copy of every datagram, N in
//     all (copies per datagram, in the JSON also the least and the most
//     one receiver counted). A path that sends more copies (duplicates) or
//     fewer is reported, in a note, in the table (copies/dgram with !) and
//     by a WRONG COPY COUNT line, not hidden: the loss of the search counts
//     each receiver for at most the datagrams sent.
//   - Copies per second: the highest offered rate whose loss, the
//     datagrams sent times N against the copies counted by the end of
//     sending plus the lag limit (as in e2e), stays below
//     Options.CapacityLossThreshold (0.5 %), found by SearchRate; copies
//     per second are the copies counted over the time from the first
//     datagram sent to the last copy arriving (the receivers' eth0 packet
//     counters are polled every millisecond after sending). The sender's
//     ceiling works as in e2e.
//   - CPU seconds per million copies at the source: the source's
//     forwarding process (the meshcast daemon, ovs-vswitchd) utime+stime,
//     the sending application thread's system time (RUSAGE_THREAD: the
//     kernel path replicates inside the sender's sendmmsg) and the softirq
//     time of the whole machine during the trial, which also holds the
//     underlay bridge's forwarding and the receivers' counting of every
//     copy, the same on every path. The parts are in the table and JSON.
//
// Open vSwitch's userspace datapath reads its ports through AF_PACKET,
// which sees a packet before the ingress hook drops it; so in the source
// measure only the source runs Open vSwitch, and with no members known it
// floods the stream to every peer: N copies too.
//
// # The receiver measure
//
// One sending node, one receiving node whose daemon delivers to an
// application: the e2e measure below at fanout 1, with the loss threshold
// Options.CapacityLossThreshold (0.5 %). Its figure is the datagrams per
// second the application received.
//
// # The e2e measure, per case (encapsulation, fanout, payload) and path
//
//   - Copies per second: the datagrams the subscribers' applications
//     received over a trial, all together, divided by the time from the
//     first datagram sent to the last one received (a path that queues
//     what it cannot forward at once is measured over the time it takes
//     to deliver, so a deep queue does not pass for speed), at
//     the highest offered rate whose loss at the applications is below
//     0.1 %, counting as delivered only datagrams that arrive at most a
//     quarter of the trial (at least 50 ms) after the end of sending: a
//     path that queues what it cannot forward fails the rate. Before each
//     trial the harness waits until nothing has arrived for 50 ms, so
//     that what one trial left queued does not spill into the next. That
//     rate is found by SearchRate: an exponential ramp, then a few
//     bisections. Copies are counted where they arrive, not on the
//     underlay: with UDP segmentation offload one underlay packet may carry
//     many copies. (The subscribers' eth0 packet counters are in the JSON
//     as underlay_rx.) When the sender itself cannot reach the rate asked
//     (on the kernel path the bridge replicates inside the sender's
//     sendmmsg, so one sending thread is the limit), the search stops
//     there and the result is marked sender-limited (* in the table): the
//     path may go faster.
//   - CPU seconds per million copies, over the same trial: the
//     utime+stime (/proc/PID/stat) of the forwarding processes of every
//     node, the source's and the subscribers' (meshcast daemons, or
//     ovs-vswitchd), plus the sending application thread's system time
//     (getrusage RUSAGE_THREAD: on the kernel path the bridge replicates
//     inside the sender's sendmmsg, so without it the kernel path would
//     look free), plus the softirq time of the whole machine (/proc/stat),
//     where the kernel path decapsulates and delivers. The receiving
//     applications are left out: they do the same work on every path. The
//     parts are in the JSON.
//   - One-way latency p50 and p99 at a low fixed rate (Options.LatencyRate),
//     from a CLOCK_REALTIME timestamp in each datagram (the namespaces share
//     the clock).
//   - End-to-end delivery: the percentage of datagrams each subscriber's
//     application received in that low-rate trial (the table shows the
//     worst subscriber).
//
// The sender is one UDP socket in the source namespace, sending to
// 239.1.2.3 out of mcbr-demo with sendmmsg (x/net/ipv4 WriteBatch), paced
// in batches. Each subscriber runs an in-process receiver: a socket opened
// inside its namespace, joined to the group on mcbr-demo, read with
// recvmmsg. Every datagram carries a trial number, a sequence number and its
// send time.
//
// # Outputs
//
// Run writes the method of each measure, progress (an in-place bar on a
// terminal, plain lines otherwise) and at the end a table per measure, and
// with the source and receiver measures the deployment estimate: per
// encapsulation, payload, fanout and path the source's rate (copies/s /
// N), the receiver's, the ceiling and which of the two sets it, and the
// ratios userspace/path of the source's copies per second, its CPU per
// copy, the receiver's rate and the ceiling. Options.JSONPath receives
// every sample, the aggregated results and the estimates;
// Options.ChartPath+".png" and ".svg" a chart against fanout with a set of
// panels per measure: e2e copies per second, source copies per second and
// the estimated ceiling of one stream (logarithmic), a panel per
// encapsulation and payload size, a line per path, the legend beside the
// panels ([WriteChart]). meshcast-bench --from FILE prints the table and
// draws the chart again from the JSON, also from reports written before
// there were measures (they are read as e2e).
package bench
