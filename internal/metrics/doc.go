// Package metrics exposes a running meshcast daemon to Prometheus.
//
// Every metric that describes the daemon is computed from a [control.State]
// snapshot at scrape time by one custom collector: the data path keeps its
// own counters and does no work for Prometheus, and the package runs no
// goroutine of its own besides the HTTP server that [Serve] starts. A peer
// or group that leaves the snapshot leaves the next scrape with it.
//
// # Exposure
//
// Serve the registry on a loopback address, such as 127.0.0.1:9977, and
// let a local agent scrape it. The metrics name every peer's underlay
// address and every multicast group, which is the community's topology.
//
//	reg := metrics.New(engineState, version)
//	srv, err := metrics.Serve("127.0.0.1:9977", reg)
//	if err != nil {
//		return err
//	}
//	defer srv.Close()
//
// # Metrics
//
// Each metric below carries the label community. Counters are the daemon's
// own totals since it started, so they reset when it restarts.
//
//	meshcast_build_info{version,goversion}                 1 (no community label)
//	meshcast_info{community,encap,tap,local,overlay}       1
//	meshcast_tap_mtu_bytes                                  gauge
//	meshcast_peers                                          gauge
//	meshcast_peer_{tx,rx}_packets_total{peer}               counter
//	meshcast_peer_{tx,rx}_bytes_total{peer}                 counter, inner Ethernet frames
//	meshcast_peer_tx_errors_total{peer}                     counter
//	meshcast_peer_last_seen_timestamp_seconds{peer}         gauge, once a packet was accepted
//	meshcast_drops_total{reason}                            counter
//	meshcast_groups                                         gauge
//	meshcast_group_members{group}                           gauge, member peers
//	meshcast_group_local{group}                             gauge, 1 if the local host is a member
//	meshcast_flooded_frames_total{group}                    counter, unregistered frames sent to every peer
//	meshcast_flooded_copies_total{group}                    counter, their copies
//	meshcast_flooded_drop_would_save_total{group}           counter, those copies not to router peers
//	meshcast_replication_fanout                             histogram, copies per frame
//	meshcast_discovery_{successes,failures,throttled}_total counter
//	meshcast_discovery_last_success_timestamp_seconds       gauge, after the first success
//	meshcast_discovery_last_success_age_seconds             gauge, after the first success
//	meshcast_discovery_problems_total{reason}               counter
//	meshcast_igmp_querier_active                            gauge, 0 or 1
//	meshcast_igmp_queries_sent_total                        counter
//
// The peer label is the peer's underlay address. The registry also holds
// the standard go_* and process_* collectors.
//
// The two discovery gauges are absent until discovery first succeeds, so
// an alert on staleness should also fire on absence:
//
//	absent(meshcast_discovery_last_success_age_seconds) or meshcast_discovery_last_success_age_seconds > 300
package metrics
