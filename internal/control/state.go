// Package control is meshcast's control socket: the JSON state a running
// daemon serves on a Unix socket (mode 0600) and the client that `meshcast
// status` and `meshcast ping` use. The socket also keeps a second daemon of
// the same community from starting.
//
// The State type is a contract: scripts read `meshcast status --json`.
// Fields are only ever added.
package control

import "time"

// State is what a daemon reports about itself.
type State struct {
	Version     string            `json:"version"`
	PID         int               `json:"pid"`
	Started     time.Time         `json:"started"`
	Dataplane   string            `json:"dataplane"` // userspace or kernel
	Community   string            `json:"community"`
	Encap       string            `json:"encap"`
	VNI         uint32            `json:"vni,omitempty"`
	Port        uint16            `json:"port,omitempty"`
	TAP         string            `json:"tap"`
	Local       string            `json:"local"`              // underlay address: IPv4, or IPv6 on an IPv6-only node
	Local6      string            `json:"local6,omitempty"`   // a dual-stack node's IPv6 underlay address
	Family      string            `json:"underlay_family"`    // --underlay-family: 4, 6 or auto
	Overlay     string            `json:"overlay"`            // overlay address with prefix
	Overlay6    string            `json:"overlay6,omitempty"` // IPv6 overlay address with prefix, if any
	MTU         int               `json:"mtu"`
	Peers       []Peer            `json:"peers"`
	Groups      []Group           `json:"groups"`
	Routers     []string          `json:"routers"`
	RouterInfo  []Router          `json:"router_info"` // the router peers, with how each was learned
	HostRouter  bool              `json:"host_router"` // a multicast router runs on the local host
	Flooded     []Flooded         `json:"flooded"`     // unregistered groups flooded to every peer
	Drops       map[string]uint64 `json:"drops"`
	Discovery   Discovery         `json:"discovery"`
	Querier     Querier           `json:"querier"`
	MLDQuerier  *Querier          `json:"mld_querier,omitempty"` // the MLD querier, with an IPv6 overlay
	Ping        PingService       `json:"ping"`
	Fanout      Histogram         `json:"fanout"` // copies sent per frame from the TAP
	Offloads    Offloads          `json:"offloads"`
	TunnelPorts []TunnelPort      `json:"tunnel_ports,omitempty"` // kernel dataplane only
}

// Offloads says which kernel offloads the daemon uses on the running
// kernel, and why any is off.
type Offloads struct {
	Kernel      string  `json:"kernel"`       // the running kernel's release
	TAPCoalesce Offload `json:"tap_coalesce"` // UDP segmentation frames written to the TAP (Linux 6.2)
	UDPGSO      Offload `json:"udp_gso"`      // UDP_SEGMENT sends of VXLAN copies (Linux 4.18)
	UDPGRO      Offload `json:"udp_gro"`      // UDP_GRO on the VXLAN receive socket (Linux 5.0)
	// PacketTx: copies leave through an AF_PACKET socket on the underlay
	// interface, with the outer headers meshcast writes, instead of the
	// IP output path; peers whose next hop is not resolved yet use the
	// sockets.
	PacketTx Offload `json:"af_packet_tx"`
	// PacketGSO: VXLAN copies of one flow to one peer leave AF_PACKET as
	// one packet that the kernel segments (VIRTIO_NET_HDR_GSO_UDP_L4,
	// Linux 6.2).
	PacketGSO Offload `json:"af_packet_gso"`
	// PacketRx: GRE arrives through an AF_PACKET receive ring on the
	// underlay interface instead of the raw socket.
	PacketRx Offload `json:"af_packet_rx"`
}

// Offload is one kernel offload: in use, or off and why. Fallbacks
// counts the batches the kernel refused with the offload, which were sent
// again without it; the offload is off after the first.
type Offload struct {
	InUse     bool   `json:"in_use"`
	Reason    string `json:"reason,omitempty"`
	Fallbacks uint64 `json:"offload_fallback"`
}

// TunnelPort is a kernel tunnel device of the kernel dataplane, with its
// counters. Peer is empty for the one device of head-end replication.
type TunnelPort struct {
	Name      string `json:"name"`
	Peer      string `json:"peer,omitempty"`
	TxPackets uint64 `json:"tx_packets"`
	RxPackets uint64 `json:"rx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// Histogram is a cumulative histogram: Counts[i] frames had at most
// Bounds[i] copies; Count is every frame, Sum every copy.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    uint64    `json:"sum"`
}

// Peer is one peer with its counters. Bytes count inner Ethernet frames.
type Peer struct {
	Underlay  string     `json:"underlay"`
	Overlay   string     `json:"overlay"`
	Overlay6  string     `json:"overlay6,omitempty"` // the IPv6 overlay address, if the peer has one
	ID        string     `json:"id"`
	TxPackets uint64     `json:"tx_packets"`
	RxPackets uint64     `json:"rx_packets"`
	TxBytes   uint64     `json:"tx_bytes"`
	RxBytes   uint64     `json:"rx_bytes"`
	TxErrors  uint64     `json:"tx_errors"`
	LastSeen  *time.Time `json:"last_seen,omitempty"` // last packet accepted from it
}

// Group is one multicast group with state in the snooping table.
type Group struct {
	Group   string   `json:"group"`
	Peers   []string `json:"peers"` // underlay addresses of member peers
	Local   bool     `json:"local"` // the local host is a member
	Members []Member `json:"members"`
}

// Router is a router peer: the address of the router heard last behind
// it, how it is learned now (query, pim, mrd; RFC 4541 section 2.1.1), and
// the seconds until the last of those lapses.
type Router struct {
	Peer           string   `json:"peer"`
	Router         string   `json:"router"`
	Learned        []string `json:"learned"`
	ExpiresSeconds float64  `json:"expires_seconds"`
}

// Flooded is what flooding one unregistered group from the local host cost
// since the daemon started: frames sent to every peer because no host had
// joined the group, their copies, and the copies that `--unregistered drop`
// would have saved (those to peers that are not router peers). Group is
// "other" for the sum of the groups past the first 256.
type Flooded struct {
	Group    string `json:"group"`
	Frames   uint64 `json:"frames"`
	Copies   uint64 `json:"copies"`
	DropSave uint64 `json:"drop_would_save"`
}

// Member is the state of a group on one port: a peer or "local".
type Member struct {
	Port           string   `json:"port"`
	Mode           string   `json:"mode"` // include or exclude
	Version        int      `json:"version"`
	ExpiresSeconds float64  `json:"expires_seconds"`
	Sources        []string `json:"sources,omitempty"`
	Blocked        []string `json:"blocked,omitempty"`
}

// Discovery is the health of peer discovery.
type Discovery struct {
	Source             string            `json:"source"` // static or ec2
	LastSuccess        *time.Time        `json:"last_success,omitempty"`
	LastSuccessAgeSecs float64           `json:"last_success_age_seconds"`
	Successes          uint64            `json:"successes"`
	Failures           uint64            `json:"failures"`
	Throttled          uint64            `json:"throttled"`
	LastError          string            `json:"last_error,omitempty"`
	Problems           []string          `json:"problems,omitempty"`
	ProblemCounts      map[string]uint64 `json:"problem_counts,omitempty"`
}

// Querier is the state of the local IGMP or MLD querier.
type Querier struct {
	Active bool   `json:"active"`
	Sent   uint64 `json:"sent"`
}

// PingService is where the daemon answers `meshcast ping` probes.
type PingService struct {
	Group string `json:"group"`
	Port  int    `json:"port"`
}
