package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/overlay"
	"github.com/meshcast/meshcast/replicate"
)

// preflight checks what the daemon needs from the host before it touches
// anything, with one clear error each.
func preflight() error {
	capEff, err := effectiveCaps()
	if err == nil {
		const capNetAdmin, capNetRaw = 12, 13
		var missing []string
		if capEff&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if capEff&(1<<capNetRaw) == 0 {
			missing = append(missing, "CAP_NET_RAW")
		}
		if len(missing) > 0 {
			who := "this user"
			if os.Geteuid() != 0 {
				who = "a user who is not root"
			}
			return fmt.Errorf("meshcast runs as %s without %s: run it as root, or grant CAP_NET_ADMIN and CAP_NET_RAW (the systemd unit in deploy/ does)",
				who, strings.Join(missing, " and "))
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("/dev/net/tun is missing (%v): load the tun module (modprobe tun) or give the container the device", err)
	}
	return nil
}

// effectiveCaps reads the effective capability set from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

func (d *daemon) setPeerList(p []replicate.PeerInfo) {
	d.mu.Lock()
	d.peers = p
	d.mu.Unlock()
}

// kernelPeers reports the kernel path's peers, with the counters of their
// own tunnel ports, and every tunnel port. Head-end replication has one
// port for all peers: its counters are the port's, not any peer's.
func (d *daemon) kernelPeers() ([]control.Peer, []control.TunnelPort) {
	d.mu.Lock()
	peers := slices.Clone(d.peers)
	d.mu.Unlock()
	byAddr := map[netip.Addr]overlay.KernelPortStats{}
	ports := []control.TunnelPort{}
	for _, p := range d.kern.Ports() {
		tp := control.TunnelPort{Name: p.Port, TxPackets: p.TxPackets, RxPackets: p.RxPackets, TxBytes: p.TxBytes, RxBytes: p.RxBytes}
		if p.Underlay.IsValid() {
			tp.Peer = p.Underlay.String()
			byAddr[p.Underlay] = p
		}
		ports = append(ports, tp)
	}
	slices.SortFunc(peers, func(a, b replicate.PeerInfo) int { return a.Underlay.Compare(b.Underlay) })
	out := []control.Peer{}
	for _, p := range peers {
		cp := control.Peer{Underlay: p.Underlay.String(), Overlay: p.Overlay.String(), ID: p.ID}
		if p.Overlay6.IsValid() {
			cp.Overlay6 = p.Overlay6.String()
		}
		if s, ok := byAddr[p.Underlay]; ok {
			cp.TxPackets, cp.RxPackets, cp.TxBytes, cp.RxBytes = s.TxPackets, s.RxPackets, s.TxBytes, s.RxBytes
		}
		out = append(out, cp)
	}
	return out, ports
}

// state builds the control.State snapshot.
func (d *daemon) state() control.State {
	now := time.Now()
	st := control.State{
		Version:    buildVersion(),
		PID:        os.Getpid(),
		Started:    d.started,
		Community:  d.self.Community,
		Encap:      d.codec.Name(),
		TAP:        d.tap,
		Local:      d.local.String(),
		Family:     d.cfg.family.String(),
		Overlay:    d.self.Overlay.String(),
		MTU:        d.mtu,
		Peers:      []control.Peer{},
		Groups:     []control.Group{},
		Routers:    []string{},
		Flooded:    []control.Flooded{},
		RouterInfo: []control.Router{},
		Drops:      map[string]uint64{},
		Ping:       d.ping,
	}
	if d.self.Overlay6.IsValid() {
		st.Overlay6 = d.self.Overlay6.String()
	}
	if d.local6.IsValid() {
		st.Local6 = d.local6.String()
	}
	st.Offloads = d.offloadState()
	if d.kern != nil {
		st.Dataplane = "kernel"
		st.Peers, st.TunnelPorts = d.kernelPeers()
		d.fillDiscovery(&st, now)
		return st
	}
	st.Dataplane = "userspace"
	st.Drops = d.eng.Drops()
	if d.ringDrops != nil {
		st.Drops["rx_ring_full"] = d.ringDrops()
	}
	if v, ok := d.codec.(*overlay.VXLAN); ok {
		st.VNI, st.Port = v.VNI(), v.Port()
	}
	for _, p := range d.eng.Peers() {
		cp := control.Peer{
			Underlay: p.Underlay.String(), Overlay: p.Overlay.String(), ID: p.ID,
			TxPackets: p.TxPackets, RxPackets: p.RxPackets, TxBytes: p.TxBytes, RxBytes: p.RxBytes, TxErrors: p.TxErrors,
		}
		if p.LastSeen != 0 {
			t := time.Unix(0, p.LastSeen)
			cp.LastSeen = &t
		}
		if p.Overlay6.IsValid() {
			cp.Overlay6 = p.Overlay6.String()
		}
		st.Peers = append(st.Peers, cp)
	}
	groups, routers := d.snoop.Table.Snapshot(now)
	for _, g := range groups {
		cg := control.Group{Group: g.Group.String(), Local: g.Local, Peers: []string{}}
		for _, p := range g.Ports {
			name := "local"
			if p.Port != igmp.LocalPort {
				name = p.Port.String()
				cg.Peers = append(cg.Peers, name)
			}
			m := control.Member{Port: name, Mode: p.Mode, Version: p.Version, ExpiresSeconds: p.Expires.Seconds()}
			for _, a := range p.Sources {
				m.Sources = append(m.Sources, a.String())
			}
			for _, a := range p.Blocked {
				m.Blocked = append(m.Blocked, a.String())
			}
			cg.Members = append(cg.Members, m)
		}
		st.Groups = append(st.Groups, cg)
	}
	for _, r := range routers {
		st.Routers = append(st.Routers, r.String())
	}
	st.RouterInfo = []control.Router{}
	for _, r := range d.snoop.Table.Routers(now) {
		if r.Port == igmp.LocalPort {
			continue // st.HostRouter says so
		}
		cr := control.Router{Peer: r.Port.String(), Router: r.Router.String(), Learned: []string{}, ExpiresSeconds: r.Expires.Seconds()}
		for _, how := range r.Learned {
			cr.Learned = append(cr.Learned, how.String())
		}
		st.RouterInfo = append(st.RouterInfo, cr)
	}
	st.HostRouter = d.snoop.HostRouter(now)
	st.Flooded = []control.Flooded{}
	for _, f := range d.snoop.Flooded() {
		g := "other"
		if f.Group != replicate.FloodOther {
			g = f.Group.String()
		}
		st.Flooded = append(st.Flooded, control.Flooded{Group: g, Frames: f.Frames, Copies: f.Copies, DropSave: f.DropSave})
	}
	d.fillDiscovery(&st, now)
	if q := d.snoop.Querier; q != nil {
		st.Querier = control.Querier{Active: q.Active(now), Sent: q.Sent()}
	}
	if q := d.snoop.MLDQuerier; q != nil {
		st.MLDQuerier = &control.Querier{Active: q.Active(now), Sent: q.Sent()}
	}
	cum, count, sum := d.eng.Fanout()
	st.Fanout = control.Histogram{Bounds: replicate.FanoutBounds, Counts: cum, Count: count, Sum: sum}
	return st
}

// offloadState reports every offload meshcast knows: the ones the
// userspace dataplane uses, and why the rest are off.
func (d *daemon) offloadState() control.Offloads {
	off := func(reason string) control.Offload { return control.Offload{Reason: reason} }
	o := control.Offloads{Kernel: overlay.KernelRelease()}
	if d.offloads == nil {
		o.TAPCoalesce = off("the kernel dataplane forwards in the kernel")
		o.UDPGSO, o.UDPGRO, o.PacketTx, o.PacketGSO, o.PacketRx = o.TAPCoalesce, o.TAPCoalesce, o.TAPCoalesce, o.TAPCoalesce, o.TAPCoalesce
		return o
	}
	if d.codec.Name() != "vxlan" {
		o.UDPGSO = off(d.codec.Name() + " has no UDP offload")
		o.UDPGRO, o.PacketGSO = o.UDPGSO, o.UDPGSO
	} else {
		o.PacketRx = off("VXLAN arrives through its UDP socket (udp_gro)")
	}
	for _, s := range d.offloads() {
		c := control.Offload{InUse: s.InUse, Reason: offloadReason(s.Name, s.Reason, d.cfg), Fallbacks: s.Fallbacks}
		switch s.Name {
		case overlay.OffloadTAPCoalesce:
			o.TAPCoalesce = c
		case overlay.OffloadUDPGSO:
			o.UDPGSO = c
		case overlay.OffloadUDPGRO:
			o.UDPGRO = c
		case overlay.OffloadPacketTx:
			o.PacketTx = c
		case overlay.OffloadPacketGSO:
			o.PacketGSO = c
		case overlay.OffloadPacketRx:
			o.PacketRx = c
		}
	}
	return o
}

func (d *daemon) fillDiscovery(st *control.State, now time.Time) {
	rs := d.rec.Status()
	st.Discovery = control.Discovery{
		Source: rs.Source, Successes: rs.Successes, Failures: rs.Failures, Throttled: rs.Throttled, LastError: rs.LastError,
	}
	if !rs.LastSuccess.IsZero() {
		t := rs.LastSuccess
		st.Discovery.LastSuccess = &t
		st.Discovery.LastSuccessAgeSecs = now.Sub(t).Seconds()
	}
	if d.ec2 != nil {
		for _, p := range d.ec2.Problems() {
			st.Discovery.Problems = append(st.Discovery.Problems, p.String())
		}
		st.Discovery.ProblemCounts = d.ec2.Counts()
	}
	for _, p := range d.unreached.Problems() {
		st.Discovery.Problems = append(st.Discovery.Problems, p.String())
	}
	for r, n := range d.unreached.Counts() {
		if st.Discovery.ProblemCounts == nil {
			st.Discovery.ProblemCounts = map[string]uint64{}
		}
		st.Discovery.ProblemCounts[r] += n
	}
}
