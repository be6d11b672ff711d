package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/meshcast/meshcast/discovery"
	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/overlay"
	"github.com/meshcast/meshcast/replicate"
	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"
)

// runConfig is the parsed and checked configuration of `meshcast run`.
type runConfig struct {
	discovery string
	tagKey    string
	interval  time.Duration
	overlay   netip.Prefix
	peersFile string
	local     netip.Addr
	family    discovery.Family // --underlay-family
	community string
	encap     string
	greKey    uint32
	hasGREKey bool
	vni       uint32
	hasVNI    bool
	vxlanPort uint16
	tap       string
	logLevel  slog.Level
	logFormat string

	igmp         igmp.Config
	unregistered replicate.Unregistered

	noOffload    bool // --offload off
	socketEgress bool // --egress socket
	packetRx     bool // --ingress packet
	maxFanout    int
	rateLimit    float64

	control     string
	metrics     string
	configFile  string
	dataplane   string
	kernelVXLAN string
	takeover    bool // --takeover

	args     []string       // the command line, parsed again on SIGHUP
	levelVar *slog.LevelVar // the logger's level, changed on SIGHUP
}

// usageError is a configuration problem: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// addRunFlags defines the flags of `meshcast run` on fs, and returns the
// function that checks them into cfg once fs is parsed (and the config
// file applied).
func addRunFlags(fs *pflag.FlagSet, cfg *runConfig) func() error {
	var local, encap, greKey, vni, port, level, format, disc, ovl string
	fs.StringVar(&cfg.peersFile, "peers", "", "inventory `FILE`: one line per instance, `UNDERLAY-IP COMMUNITY,OVERLAY-IP/PREFIX`")
	fs.StringVar(&disc, "discovery", "", "where peers come from: `static` (the --peers file; the default when --peers is given) or ec2 (instance tags)")
	fs.StringVar(&cfg.tagKey, "tag-key", discovery.DefaultTagKey, "EC2 tag `KEY` whose value is COMMUNITY,IP/PREFIX (with --discovery ec2)")
	fs.DurationVar(&cfg.interval, "interval", 60*time.Second, "discovery `period` (±10% jitter); the inventory file is also watched for changes")
	fs.StringVar(&ovl, "overlay", "", "this node's overlay `IP/PREFIX`, overriding its EC2 tag (with --discovery ec2)")
	fs.StringVar(&local, "local", "", "this node's underlay `IP`, IPv4 or IPv6 (default: the inventory line whose address is on one of this host's interfaces)")
	var family string
	fs.StringVar(&family, "underlay-family", "auto", "the address family the tunnels cross: 4, 6, or `auto` (IPv4 to peers where both ends have IPv4, else IPv6 where both have IPv6; a dual-stack node opens sockets on both addresses). A peer reachable by no allowed family is left out and reported in status")
	fs.StringVar(&cfg.community, "community", "", "community `NAME` (default: the community of this node's inventory line)")
	fs.StringVar(&encap, "encap", "gre", "encapsulation: `gre` or vxlan")
	fs.StringVar(&greKey, "gre-key", "", "GRE key `N` (0-4294967295) sent and required on every packet (default: no key)")
	fs.StringVar(&vni, "vni", "", "VXLAN network identifier `N` (1-16777215) (default: derived from the community name)")
	fs.StringVar(&port, "vxlan-port", strconv.Itoa(overlay.DefaultVXLANPort), "VXLAN UDP `PORT`")
	fs.StringVar(&cfg.tap, "tap", "", "TAP device `NAME`, at most 15 bytes (default mcbr-COMMUNITY)")
	var unregistered string
	var robustness int
	fs.DurationVar(&cfg.igmp.QueryInterval, "igmp-query-interval", 125*time.Second, "IGMP and MLD general query `interval` of this node's queriers")
	fs.DurationVar(&cfg.igmp.ResponseInterval, "igmp-response-interval", 10*time.Second, "IGMP and MLD maximum response `time` of general queries")
	fs.IntVar(&robustness, "igmp-robustness", 2, "IGMP and MLD robustness variable `N` (1-7): startup and last member query count")
	fs.DurationVar(&cfg.igmp.LastMemberInterval, "igmp-last-member-interval", time.Second, "IGMP last member and MLD last listener query `interval`")
	fs.IntVar(&cfg.igmp.MaxGroups, "igmp-max-groups", 16384, "most (peer, group) memberships in the snooping table, IPv4 and IPv6 groups together; reports beyond are refused and counted")
	fs.IntVar(&cfg.igmp.MaxGroupsPerPort, "igmp-max-groups-per-peer", 2048, "most groups one peer (or the local host) may join")
	fs.IntVar(&cfg.maxFanout, "max-fanout", 0, "drop a multicast frame from this host that would be copied to more than `N` peers (0: no cap; link-local multicast, ARP and broadcast are never held back)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 0, "most multicast frames per second this host may send per source address, bursts of a tenth of a second (`PPS`; 0: no limit; link-local multicast, ARP and broadcast are never held back)")
	fs.StringVar(&unregistered, "unregistered", "flood", "traffic for groups no peer joined: `flood` to every peer, or drop (router peers still get it)")
	fs.StringVar(&level, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&format, "log-format", "text", "log `FORMAT`: text or json")
	var dataplane, kvx, offload, egress, ingress string
	fs.StringVar(&ingress, "ingress", "socket", "how GRE arrives: `socket` (the raw GRE socket, after the IP stack's netfilter hooks) or packet (an AF_PACKET ring on the underlay interface, which sees packets before those hooks: a higher receive rate for less CPU, but the kernel hands the ring over a block at a time, so that at light traffic a packet waits up to 1 ms, a timer tick on older kernels)")
	fs.StringVar(&egress, "egress", "packet", "how copies leave: `packet` (an AF_PACKET socket on the underlay interface with the outer headers meshcast writes, skipping the IP output path, for every peer whose next hop the kernel has resolved; the others, and any copy it refuses, go through the sockets) or socket (always through the kernel's IP sockets)")
	fs.StringVar(&offload, "offload", "on", "`on`: send the copies of a burst to a peer as one UDP segmentation-offload packet and coalesce on receive (VXLAN), and hand the TAP runs of one UDP flow as one frame; off: every copy and frame on its own (for comparison or troubleshooting)")
	fs.StringVar(&dataplane, "dataplane", "userspace", "`userspace` (meshcast forwards) or kernel (a Linux bridge with IGMP snooping and one tunnel port per peer, for comparison)")
	fs.StringVar(&kvx, "kernel-vxlan", "pair", "kernel VXLAN ports: `pair` (one device per peer, per-pair VNI, pruned per peer) or hre (one device with head-end replication, interoperates with userspace nodes)")
	fs.StringVar(&cfg.control, "control", "", "control socket `PATH` (default /run/meshcast/COMMUNITY.sock)")
	fs.StringVar(&cfg.metrics, "metrics", "", "serve Prometheus metrics on `ADDR`, such as 127.0.0.1:9977 (default off; bind to loopback)")
	fs.BoolVar(&cfg.takeover, "takeover", false, "take over from the meshcast of this community that is running: its TAP, sockets and state pass to this process over the control socket, and it exits without removing anything (an upgrade that applications do not notice); with none running, just start")
	fs.StringVar(&cfg.configFile, "config", "", "YAML configuration `FILE` whose keys are these flags' names; flags given on the command line win")
	check := func() error {
		switch disc {
		case "":
			if cfg.peersFile == "" {
				return usagef("--peers FILE or --discovery ec2 is required: the inventory of the community has one line per instance such as '198.18.0.1 demo,198.19.0.1/24'")
			}
			cfg.discovery = "static"
		case "static":
			if cfg.peersFile == "" {
				return usagef("--discovery static needs --peers FILE")
			}
			cfg.discovery = disc
		case "ec2":
			if cfg.peersFile != "" {
				return usagef("--peers is for --discovery static; drop it with --discovery ec2")
			}
			cfg.discovery = disc
		default:
			return usagef("--discovery %q is not known: use static or ec2", disc)
		}
		if cfg.interval < time.Second {
			return usagef("--interval %v is too short: use 1s or more (default 60s)", cfg.interval)
		}
		if cfg.tagKey == "" {
			return usagef("--tag-key must not be empty")
		}
		if ovl != "" {
			if cfg.discovery != "ec2" {
				return usagef("--overlay applies to --discovery ec2; with an inventory, edit this node's line")
			}
			tag, err := discovery.ParseTag("x," + ovl)
			if err != nil {
				return usagef("--overlay %q: %v", ovl, err)
			}
			if tag.Overlay6.IsValid() {
				return usagef("--overlay %q: pass the IPv4 overlay address alone; an IPv6 one goes in the instance's tag", ovl)
			}
			cfg.overlay = tag.Overlay
		}
		if local != "" {
			a, err := netip.ParseAddr(local)
			if err != nil || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() {
				return usagef("--local %q is not a unicast IPv4 or IPv6 address: pass this node's underlay address, such as 198.18.0.1 or fd00:198:18::1 (no zone, no link-local address)", local)
			}
			cfg.local = a
		}
		f, err := discovery.ParseFamily(family)
		if err != nil {
			return usagef("--underlay-family: %v", err)
		}
		cfg.family = f
		if cfg.local.IsValid() && (f == discovery.Family4 && !cfg.local.Is4() || f == discovery.Family6 && cfg.local.Is4()) {
			return usagef("--local %v is not of --underlay-family %v: pass an address of that family, or drop one of them", cfg.local, f)
		}
		switch encap {
		case "gre", "vxlan":
			cfg.encap = encap
		default:
			return usagef("--encap %q is not known: use gre or vxlan", encap)
		}
		if greKey != "" {
			k, err := strconv.ParseUint(greKey, 0, 32)
			if err != nil {
				return usagef("--gre-key %q is not a number from 0 to 4294967295", greKey)
			}
			if cfg.encap != "gre" {
				return usagef("--gre-key applies to --encap gre only; drop it or use --vni with vxlan")
			}
			cfg.greKey, cfg.hasGREKey = uint32(k), true
		}
		if vni != "" {
			v, err := strconv.ParseUint(vni, 0, 32)
			if err != nil || v < 1 || v > overlay.MaxVNI {
				return usagef("--vni %q is not a number from 1 to %d", vni, overlay.MaxVNI)
			}
			if cfg.encap != "vxlan" {
				return usagef("--vni applies to --encap vxlan only; drop it or use --gre-key with gre")
			}
			cfg.vni, cfg.hasVNI = uint32(v), true
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return usagef("--vxlan-port %q is not a port number from 1 to 65535", port)
		}
		cfg.vxlanPort = uint16(p)
		switch dataplane {
		case "userspace", "kernel":
			cfg.dataplane = dataplane
		default:
			return usagef("--dataplane %q is not known: use userspace or kernel", dataplane)
		}
		switch kvx {
		case overlay.VXLANModePair, overlay.VXLANModeHRE:
			cfg.kernelVXLAN = kvx
		default:
			return usagef("--kernel-vxlan %q is not known: use pair or hre", kvx)
		}
		if cfg.maxFanout < 0 {
			return usagef("--max-fanout %d: use 0 (no cap) or a number of peers", cfg.maxFanout)
		}
		if cfg.rateLimit < 0 || math.IsNaN(cfg.rateLimit) || math.IsInf(cfg.rateLimit, 0) {
			return usagef("--rate-limit %v: use 0 (no limit) or frames per second", cfg.rateLimit)
		}
		if cfg.dataplane == "kernel" && (cfg.maxFanout > 0 || cfg.rateLimit > 0) {
			return usagef("--max-fanout and --rate-limit apply to the userspace dataplane: drop them with --dataplane kernel")
		}
		switch offload {
		case "on":
			cfg.noOffload = false
		case "off":
			cfg.noOffload = true
		default:
			return usagef("--offload %q is not known: use on or off", offload)
		}
		switch egress {
		case "packet":
			cfg.socketEgress = false
		case "socket":
			cfg.socketEgress = true
		default:
			return usagef("--egress %q is not known: use packet or socket", egress)
		}
		switch ingress {
		case "packet":
			cfg.packetRx = true
		case "socket":
			cfg.packetRx = false
		default:
			return usagef("--ingress %q is not known: use packet or socket", ingress)
		}
		switch unregistered {
		case "flood":
			cfg.unregistered = replicate.UnregisteredFlood
		case "drop":
			cfg.unregistered = replicate.UnregisteredDrop
		default:
			return usagef("--unregistered %q is not known: use flood or drop", unregistered)
		}
		if robustness < 1 || robustness > 7 {
			return usagef("--igmp-robustness %d is out of range: use 1 to 7 (2 is the RFC 3376 default)", robustness)
		}
		cfg.igmp.Robustness = robustness
		for _, d := range []struct {
			name string
			v    time.Duration
		}{
			{"--igmp-query-interval", cfg.igmp.QueryInterval},
			{"--igmp-response-interval", cfg.igmp.ResponseInterval},
			{"--igmp-last-member-interval", cfg.igmp.LastMemberInterval},
		} {
			if d.v <= 0 {
				return usagef("%s %v must be positive, such as 1s", d.name, d.v)
			}
		}
		if cfg.igmp.ResponseInterval >= cfg.igmp.QueryInterval {
			return usagef("--igmp-response-interval %v must be less than --igmp-query-interval %v (RFC 3376 section 8.3)",
				cfg.igmp.ResponseInterval, cfg.igmp.QueryInterval)
		}
		if cfg.igmp.LastMemberInterval > 25500*time.Millisecond {
			return usagef("--igmp-last-member-interval %v is longer than a query can carry (25.5s)", cfg.igmp.LastMemberInterval)
		}
		if cfg.igmp.MaxGroups < 1 || cfg.igmp.MaxGroupsPerPort < 1 {
			return usagef("--igmp-max-groups and --igmp-max-groups-per-peer must be at least 1")
		}
		if err := cfg.logLevel.UnmarshalText([]byte(level)); err != nil {
			return usagef("--log-level %q is not known: use debug, info, warn or error", level)
		}
		switch format {
		case "text", "json":
			cfg.logFormat = format
		default:
			return usagef("--log-format %q is not known: use text or json", format)
		}
		return nil
	}
	return check
}

func newLogger(w io.Writer, level slog.Level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

// defaultVNI derives a VNI from the community name, so that every node of a
// community agrees on it and two communities on one host do not collide.
func defaultVNI(community string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(community))
	v := h.Sum32() & overlay.MaxVNI
	if v == 0 {
		v = 1
	}
	return v
}

// node is what the daemon resolved from the configuration and inventory.
type node struct {
	self  discovery.Member
	peers []replicate.PeerInfo
	// unreached are the members no tunnel can join this node to under
	// --underlay-family (discovery.Reach), with the reason.
	unreached []discovery.Problem
}

// pick finds this node and its peers in a listing of all communities.
// With EC2 discovery, ec2Self names this instance.
func pick(cfg *runConfig, all []discovery.Member, ec2Self *discovery.Self) (node, error) {
	if ec2Self != nil {
		return pickEC2(cfg, all, ec2Self)
	}
	candidates := all
	if cfg.community != "" {
		candidates = discovery.InCommunity(all, cfg.community)
		if len(candidates) == 0 {
			return node{}, usagef("%s: no line of community %q: fix --community or the inventory", cfg.peersFile, cfg.community)
		}
	}
	isLocal, err := discovery.LocalAddrs()
	if err != nil {
		return node{}, err
	}
	self, err := discovery.FindLocal(candidates, cfg.local, isLocal)
	if err != nil {
		return node{}, &usageError{msg: withAdvice(fmt.Sprintf("%s: %v", cfg.peersFile, err), err)}
	}
	members := discovery.InCommunity(all, self.Community)
	if err := discovery.Validate(members); err != nil {
		return node{}, &usageError{msg: fmt.Sprintf("%s: %v", cfg.peersFile, err)}
	}
	return withPeers(cfg, self, members), nil
}

// family is the underlay family this node uses: --underlay-family, except
// that the kernel dataplane of a dual-stack node uses IPv4 alone (its
// bridge's tunnel ports are of one family).
func (cfg *runConfig) underlayFamily(self discovery.Member) discovery.Family {
	if v4, v6 := self.Underlays(); cfg.dataplane == "kernel" && cfg.family == discovery.FamilyAuto && v4.IsValid() && v6.IsValid() {
		return discovery.Family4
	}
	return cfg.family
}

// withPeers is self with the members it can reach under the underlay
// family, each at the address chosen for it.
func withPeers(cfg *runConfig, self discovery.Member, members []discovery.Member) node {
	n := node{self: self}
	peers, problems := discovery.Reach(self, members, cfg.underlayFamily(self))
	for _, m := range peers {
		n.peers = append(n.peers, replicate.PeerInfo{Underlay: m.Underlay, Overlay: m.Overlay, Overlay6: m.Overlay6, ID: m.ID})
	}
	n.unreached = problems
	return n
}

// withLocal is m with a as its underlay address of a's family.
func withLocal(m discovery.Member, a netip.Addr) discovery.Member {
	v4, v6 := m.Underlays()
	if a.Is4() {
		v4 = a
	} else {
		v6 = a
	}
	if v4.IsValid() {
		m.Underlay, m.Underlay6 = v4, v6
	} else {
		m.Underlay, m.Underlay6 = v6, netip.Addr{}
	}
	return m
}

// pickEC2 finds this instance by its ID. Its tag gives the community and
// overlay address unless --community and --overlay override them, and its
// primary private address is the underlay unless --local overrides it.
func pickEC2(cfg *runConfig, all []discovery.Member, me *discovery.Self) (node, error) {
	self := withLocal(discovery.Member{ID: me.ID}, me.IP6)
	if me.IP.IsValid() {
		self = withLocal(self, me.IP)
	}
	tagged := false
	for _, m := range all {
		if m.ID == me.ID {
			self, tagged = m, true
		}
	}
	if cfg.community != "" && cfg.community != self.Community {
		self.Community = cfg.community
		if !cfg.overlay.IsValid() {
			if tagged {
				return node{}, usagef("--community %q differs from this instance's tag (community %q): pass --overlay IP/PREFIX too", cfg.community, self.Community)
			}
		}
	}
	if cfg.overlay.IsValid() {
		self.Overlay = cfg.overlay
	}
	if self.Community == "" || !self.Overlay.IsValid() {
		return node{}, usagef("this instance (%s) has no usable tag %s=COMMUNITY,IP/PREFIX (a malformed one is logged above): tag it, or pass --community and --overlay", me.ID, cfg.tagKey)
	}
	if cfg.local.IsValid() {
		self = withLocal(self, cfg.local)
	}
	return withPeers(cfg, self, discovery.InCommunity(all, self.Community)), nil
}

// underlayMTU returns the MTU of the interface that holds addr.
func underlayMTU(addr netip.Addr) (string, int, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return "", 0, err
	}
	for _, l := range links {
		fam := netlink.FAMILY_V4
		if addr.Is6() {
			fam = netlink.FAMILY_V6
		}
		addrs, err := netlink.AddrList(l, fam)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
				return l.Attrs().Name, l.Attrs().MTU, nil
			}
		}
	}
	return "", 0, usagef("underlay address %v is not assigned to any interface of this host: pass --local with one of this host's addresses, or fix the inventory", addr)
}
