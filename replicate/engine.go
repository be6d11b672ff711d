package replicate

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/mld"
	"github.com/meshcast/meshcast/overlay"
	"golang.org/x/sys/unix"
)

// Reason says why the engine dropped a frame or a packet. The decoders'
// reasons (overlay.Reason) are counted beside these.
type Reason uint8

// Drop reasons of the engine.
const (
	ReasonNotPeer      Reason = iota // tunnel packet from an address that is not a current peer
	ReasonInnerTooBig                // inner frame larger than the TAP MTU allows
	ReasonLoop                       // inner frame carries this node's own MAC as source
	ReasonBadSourceMAC               // inner frame's source MAC is multicast or broadcast
	ReasonNotLocal                   // unicast inner frame for a MAC that is not this node's
	ReasonSendError                  // the kernel refused to send a copy to a peer
	ReasonTAPWrite                   // writing a frame to the TAP failed
	ReasonRunt                       // frame from the TAP shorter than an Ethernet header
	ReasonMACTableFull               // source MAC not learned: the MAC table is full
	ReasonFanoutCap                  // frame from the TAP for more peers than Config.MaxFanout
	ReasonRateLimit                  // multicast frame from the TAP over its source's Config.RateLimit
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNotPeer:      "not_peer",
	ReasonInnerTooBig:  "inner_too_big",
	ReasonLoop:         "loop",
	ReasonBadSourceMAC: "bad_source_mac",
	ReasonNotLocal:     "not_local",
	ReasonSendError:    "send_error",
	ReasonTAPWrite:     "tap_write",
	ReasonRunt:         "runt",
	ReasonMACTableFull: "mac_table_full",
	ReasonFanoutCap:    "fanout_cap",
	ReasonRateLimit:    "rate_limit",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Config configures an Engine. Zero fields take their defaults.
type Config struct {
	Codec    overlay.Codec    // required
	LocalMAC net.HardwareAddr // the TAP's MAC address; required
	MTU      int              // the TAP MTU; default 1500 minus Codec.Overhead(), as for a 1500-byte underlay
	Batch    int              // frames per batch; default overlay.DefaultBatch
	MACTable int              // most learned MAC addresses; default 8192
	MACAge   time.Duration    // how long a learned MAC stays; default 300s
	Snoop    *Snooping        // IGMP snooping; nil floods every multicast frame to every peer
	Logger   *slog.Logger     // default slog.Default()

	// The limits below apply to IPv4 multicast from the TAP outside
	// 224.0.0.0/24: the traffic a host could have amplified. ARP,
	// broadcast and link-local multicast (IGMP among it) are never held
	// back, so that the overlay keeps working under them.
	//
	// MaxFanout, if set, drops such a frame, or an IPv6 multicast frame
	// to a group igmp.Snooped names (beyond link-local scope), that would
	// be copied to more peers than this (counted once per frame as
	// fanout_cap).
	MaxFanout int
	// RateLimit, if set, is the most such frames per second the TAP may
	// send per IPv4 source address, with bursts of a tenth of a second;
	// frames over it are dropped and counted as rate_limit. At most
	// MaxRateSources sources are tracked at once (a source idle for a
	// tenth of a second is forgotten); while that many are active, the
	// others share one budget.
	RateLimit float64
}

// MaxRateSources bounds the sources Config.RateLimit tracks.
const MaxRateSources = 1024

// Engine forwards frames between the TAP and the peers.
type Engine struct {
	codec    overlay.Codec
	localMAC macKey
	maxFrame int
	batch    int
	maxFan   int
	limiter  *rateLimiter // nil: no rate limit
	snoop    *Snooping
	log      *slog.Logger
	faults   *faultLog

	peers atomic.Pointer[peerSet]
	setMu sync.Mutex // serializes SetPeers
	macs  *macTable

	announceTo atomic.Pointer[PacketWriter] // the underlay, once Run starts

	fanout fanoutHist

	drops     [numReasons]atomic.Uint64
	wireDrops [overlay.NumReasons]atomic.Uint64
}

// BufSize is the size of every packet buffer: room for a 9001-byte underlay
// packet with its headers and the headroom.
const BufSize = 16 << 10

// New returns an Engine with no peers.
func New(cfg Config) (*Engine, error) {
	if cfg.Codec == nil {
		return nil, errors.New("replicate: Config.Codec is required")
	}
	if len(cfg.LocalMAC) != 6 {
		return nil, errors.New("replicate: Config.LocalMAC must be 6 bytes")
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1500 - cfg.Codec.Overhead()
	}
	if cfg.Batch <= 0 {
		cfg.Batch = overlay.DefaultBatch
	}
	if cfg.MACTable <= 0 {
		cfg.MACTable = 8192
	}
	if cfg.MACAge <= 0 {
		cfg.MACAge = 300 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{
		codec:  cfg.Codec,
		batch:  cfg.Batch,
		maxFan: cfg.MaxFanout,
		snoop:  cfg.Snoop,
		log:    cfg.Logger,
		faults: newFaultLog(cfg.Logger, FaultLogEvery),
		macs:   newMACTable(cfg.MACTable, cfg.MACAge),
		// An inner frame may carry one VLAN tag beyond the MTU.
		maxFrame: cfg.MTU + overlay.EthHeaderLen + 4,
	}
	if cfg.MaxFanout < 0 || cfg.RateLimit < 0 {
		return nil, errors.New("replicate: Config.MaxFanout and Config.RateLimit must not be negative")
	}
	if cfg.RateLimit > 0 {
		e.limiter = newRateLimiter(cfg.RateLimit, MaxRateSources)
	}
	copy(e.localMAC[:], cfg.LocalMAC)
	if cfg.Snoop != nil {
		cfg.Snoop.policy.Store(uint32(cfg.Snoop.Unregistered))
	}
	e.peers.Store(newPeerSet(nil))
	return e, nil
}

// SetPeers replaces the peer set with infos, keeping the counters of peers
// that stay. Removed peers lose their learned MAC addresses at once. Traffic
// to peers that stay is never interrupted. It returns the underlay
// addresses added and removed. It is safe for concurrent use.
func (e *Engine) SetPeers(infos []PeerInfo) (added, removed []netip.Addr, err error) {
	e.setMu.Lock()
	defer e.setMu.Unlock()
	old := e.peers.Load()
	seen := make(map[netip.Addr]bool, len(infos))
	list := make([]*Peer, 0, len(infos))
	for _, in := range infos {
		if !in.Underlay.IsValid() || in.Underlay.Zone() != "" || in.Underlay.Is4In6() || in.Underlay.IsUnspecified() || in.Underlay.IsMulticast() {
			return nil, nil, fmt.Errorf("peer %s: underlay address %v is not a unicast IPv4 or IPv6 address", in.ID, in.Underlay)
		}
		if seen[in.Underlay] {
			return nil, nil, fmt.Errorf("peer %s: underlay address %v listed twice", in.ID, in.Underlay)
		}
		seen[in.Underlay] = true
		if p := old.lookup(in.Underlay); p != nil && p.Overlay == in.Overlay && p.Overlay6 == in.Overlay6 {
			list = append(list, p)
			continue
		}
		list = append(list, &Peer{Underlay: in.Underlay, Overlay: in.Overlay, Overlay6: in.Overlay6, ID: in.ID})
		added = append(added, in.Underlay)
		if e.snoop != nil && len(old.list) > 0 {
			// A peer added to a running node learns this host's groups
			// from its next reports; at start the startup queries do it.
			e.snoop.peerAppeared(time.Now().UnixNano())
		}
	}
	slices.SortFunc(list, func(a, b *Peer) int { return a.Underlay.Compare(b.Underlay) })
	next := newPeerSet(list)
	var gone []*Peer
	for _, p := range old.list {
		if next.lookup(p.Underlay) != p {
			gone = append(gone, p)
			removed = append(removed, p.Underlay)
		}
	}
	e.peers.Store(next)
	if len(gone) > 0 {
		for _, p := range gone {
			p.removed.Store(true)
			if e.snoop != nil {
				e.snoop.removePort(p.Underlay)
			}
		}
		e.macs.sweep(time.Now().UnixNano())
	}
	slices.SortFunc(removed, netip.Addr.Compare)
	return added, removed, nil
}

// Peers returns a snapshot of every peer's counters, ordered by underlay
// address.
func (e *Engine) Peers() []PeerStats {
	set := e.peers.Load()
	out := make([]PeerStats, len(set.list))
	for i, p := range set.list {
		out[i] = p.Stats()
	}
	return out
}

// Drops returns the drop counters by reason name, including zero ones.
func (e *Engine) Drops() map[string]uint64 {
	m := make(map[string]uint64, int(numReasons)+int(overlay.NumReasons))
	for r := Reason(0); r < numReasons; r++ {
		m[r.String()] = e.drops[r].Load()
	}
	for r := overlay.Reason(1); r < overlay.NumReasons; r++ {
		m[r.String()] = e.wireDrops[r].Load()
	}
	if e.snoop != nil {
		e.snoop.addDrops(m)
	}
	return m
}

// Sweep forgets expired MAC addresses. Run calls it periodically.
func (e *Engine) Sweep(now time.Time) { e.macs.sweep(now.UnixNano()) }

func isMulticastMAC(mac []byte) bool { return mac[0]&1 != 0 }

// egress is the per-batch state of the TAP-to-underlay direction. It is
// owned by one goroutine and allocated once.
type egress struct {
	e       *Engine
	out     []overlay.Message
	outPeer []*Peer
	scratch []*Peer
	now     int64
}

func (e *Engine) newEgress(outCap int) *egress {
	return &egress{
		e:       e,
		out:     make([]overlay.Message, 0, outCap),
		outPeer: make([]*Peer, 0, outCap),
		scratch: make([]*Peer, 0, 64),
	}
}

// PacketWriter sends a batch of packets; overlay.Conn implements it.
type PacketWriter interface {
	WriteBatch(msgs []overlay.Message) (failed int, err error)
}

// forward queues the copies of one frame from the TAP, held in
// buf[overlay.Headroom:overlay.Headroom+n]. It flushes to w when the
// queue is full.
func (g *egress) forward(buf []byte, n int, w PacketWriter) error {
	e := g.e
	if n < overlay.EthHeaderLen {
		e.drops[ReasonRunt].Add(1)
		return nil
	}
	frame := buf[overlay.Headroom : overlay.Headroom+n]
	set := e.peers.Load()
	var targets []*Peer
	dst := frame[0:6]
	if cap(g.scratch) < len(set.list) {
		g.scratch = make([]*Peer, 0, len(set.list))
	}
	data := false  // routable IPv4 multicast: what the limits apply to
	data6 := false // routable IPv6 multicast: what --max-fanout applies to
	if isMulticastMAC(dst) {
		if e.limiter != nil || e.maxFan > 0 {
			// IGMP and MLD are control traffic even when addressed
			// to a group (IGMPv2 and MLDv1 reports are): they go to
			// every peer, whatever the limits.
			_, group, proto, ok := igmp.IPv4Multicast(frame)
			data = ok && !group.IsLinkLocalMulticast() && proto != igmp.ProtoIGMP
			if !ok && e.maxFan > 0 {
				_, group, ok = mld.IPv6Multicast(frame)
				data6 = ok && igmp.Snooped(group) && !isMLD(frame)
			}
		}
		if data && e.limiter != nil && !e.limiter.allow(frame, g.now) {
			e.drops[ReasonRateLimit].Add(1)
			return nil
		}
		if e.snoop != nil {
			targets = e.snoop.decide(frame, set, g.scratch[:0], g.now)
		} else {
			targets = set.list
		}
	} else if p := e.macs.lookup(dst, g.now); p != nil {
		g.scratch = append(g.scratch[:0], p)
		targets = g.scratch
	} else {
		targets = set.list
	}
	if (data || data6) && e.maxFan > 0 && len(targets) > e.maxFan {
		e.drops[ReasonFanoutCap].Add(1)
		return nil
	}
	e.fanout.observe(len(targets))
	if len(targets) == 0 {
		return nil
	}
	pkt := e.codec.Encap(buf, n)
	for _, p := range targets {
		if len(g.out) == cap(g.out) {
			if err := g.flush(w); err != nil {
				return err
			}
		}
		g.out = append(g.out, overlay.Message{Buf: pkt, Addr: p.Underlay})
		g.outPeer = append(g.outPeer, p)
	}
	return nil
}

// flush sends the queued copies and counts them per peer.
func (g *egress) flush(w PacketWriter) error {
	if len(g.out) == 0 {
		return nil
	}
	_, err := w.WriteBatch(g.out)
	hdr := g.e.codec.HeaderLen()
	failed := 0
	var errno unix.Errno
	for i := range g.out {
		p := g.outPeer[i]
		// WriteBatch sets N for every copy it handled; a copy it did not
		// reach because the socket failed keeps N 0 and is lost too.
		if g.out[i].N <= 0 {
			p.txErrors.Add(1)
			g.e.drops[ReasonSendError].Add(1)
			failed++
			if e := g.out[i].Errno; e != 0 {
				errno = e
			}
			continue
		}
		p.txPackets.Add(1)
		p.txBytes.Add(uint64(len(g.out[i].Buf) - hdr))
	}
	if failed > 0 {
		if errno == 0 {
			errno = overlay.Errno(err)
		}
		g.e.faults.note(ReasonSendError, failed, errno, g.now)
	}
	clear(g.outPeer)
	g.out, g.outPeer = g.out[:0], g.outPeer[:0]
	return err
}

// Announce sends one frame from this node's control plane (such as the
// querier's startup query) to every peer. It is for rare messages: it
// allocates. It is safe for concurrent use with the data path, and does
// nothing before Run has started.
func (e *Engine) Announce(frame []byte) error {
	w := e.announceTo.Load()
	if w == nil || len(frame) < overlay.EthHeaderLen {
		return nil
	}
	set := e.peers.Load()
	if len(set.list) == 0 {
		return nil
	}
	buf := make([]byte, overlay.Headroom+len(frame))
	copy(buf[overlay.Headroom:], frame)
	g := &egress{e: e, out: make([]overlay.Message, 0, len(set.list)), outPeer: make([]*Peer, 0, len(set.list)), now: time.Now().UnixNano()}
	pkt := e.codec.Encap(buf, len(frame))
	for _, p := range set.list {
		g.out = append(g.out, overlay.Message{Buf: pkt, Addr: p.Underlay})
		g.outPeer = append(g.outPeer, p)
	}
	return g.flush(*w)
}

// receive validates one packet from the underlay and returns the inner
// frame to write to the TAP, or nil when it is dropped. src is the outer
// source address as the socket reported it.
func (e *Engine) receive(src netip.Addr, pkt []byte, now int64) []byte {
	set := e.peers.Load()
	var p *Peer
	if src.Is4() {
		p = set.byAddr[src.As4()]
	} else {
		p = set.byAddr6[src.As16()]
	}
	if p == nil {
		e.drops[ReasonNotPeer].Add(1)
		return nil
	}
	if len(pkt) == 0 {
		e.wireDrops[overlay.ReasonTruncated].Add(1)
		return nil
	}
	var frame []byte
	var r overlay.Reason
	if src.Is4() {
		frame, r = e.codec.Decap(pkt)
	} else {
		frame, r = e.codec.DecapIPv6(pkt)
	}
	if r != overlay.OK {
		e.wireDrops[r].Add(1)
		return nil
	}
	if len(frame) > e.maxFrame {
		e.drops[ReasonInnerTooBig].Add(1)
		return nil
	}
	srcMAC := frame[6:12]
	if bytes.Equal(srcMAC, e.localMAC[:]) {
		e.drops[ReasonLoop].Add(1)
		return nil
	}
	if isMulticastMAC(srcMAC) {
		e.drops[ReasonBadSourceMAC].Add(1)
		return nil
	}
	if dst := frame[0:6]; !isMulticastMAC(dst) && !bytes.Equal(dst, e.localMAC[:]) {
		e.drops[ReasonNotLocal].Add(1)
		return nil
	}
	if !e.macs.learn(srcMAC, p, now) {
		e.drops[ReasonMACTableFull].Add(1)
	}
	p.rxPackets.Add(1)
	p.rxBytes.Add(uint64(len(frame)))
	if prev := p.lastSeen.Swap(now); e.snoop != nil && (prev == 0 || now-prev > e.snoop.silence()) {
		// A peer that is new or was silent for long may have restarted
		// and forgotten this host's groups: have the host report them.
		e.snoop.peerAppeared(now)
	}
	if e.snoop != nil && !e.snoop.ingress(p, frame, now) {
		return nil // an IGMP report for the table, or malformed IGMP (counted)
	}
	return frame
}

// FanoutBounds are the upper bounds of the fan-out histogram's buckets.
var FanoutBounds = []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// fanoutHist counts the copies sent per frame from the TAP, in buckets of
// FanoutBounds (and one more for larger fan-outs).
type fanoutHist struct {
	buckets [13]atomic.Uint64
	sum     atomic.Uint64
}

func (h *fanoutHist) observe(n int) {
	i := 0
	if n > 0 {
		i = bits.Len(uint(n-1)) + 1 // 1 -> 1, 2 -> 2, 3..4 -> 3, 5..8 -> 4, ...
	}
	i = min(i, len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.sum.Add(uint64(n))
}

// Fanout returns the fan-out histogram: cumulative counts per bound of
// FanoutBounds, the number of frames and the number of copies.
func (e *Engine) Fanout() (cumulative []uint64, count, sum uint64) {
	cumulative = make([]uint64, len(FanoutBounds))
	var c uint64
	for i := range e.fanout.buckets {
		c += e.fanout.buckets[i].Load()
		if i < len(cumulative) {
			cumulative[i] = c
		}
	}
	return cumulative, c, e.fanout.sum.Load()
}
