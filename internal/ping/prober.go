package ping

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Target is one peer to probe.
type Target struct {
	Name string // a label for Write, such as the peer's underlay address
	// Overlay is the peer's overlay address, of the family of
	// Options.Local: probes go here, replies come from here.
	Overlay netip.Addr
	// NotJoined says that, when the run began, the prober's daemon did not
	// yet count the peer as a member of the ping group (IGMP, or MLD for
	// IPv6, had not converged, as in the seconds after daemons start): the
	// overlay carries multicast probes only to members it knows, so they
	// may miss the peer until it joins. Run ignores it; Write names such
	// peers when they lost multicast probes, so that this loss is not
	// taken for a fault of the path.
	NotJoined bool
}

// Options configure Run. Zero values mean the defaults.
type Options struct {
	// Iface is the TAP that multicast probes leave by (IP_MULTICAST_IF,
	// IPV6_MULTICAST_IF). They are sent with TTL (hop limit) 1 and
	// multicast loopback off. Required.
	Iface string
	// Local is this node's overlay address, IPv4 or IPv6: Run probes in
	// its family, and every target's overlay address must be of it. The
	// probe socket binds to it (with an ephemeral port), so it is the
	// source of every probe; replies from it are ignored. Required.
	Local netip.Addr
	// Group and Port are where the responders listen: DefaultGroup (or
	// DefaultGroup6 for an IPv6 Local) and DefaultPort by default. An IPv6
	// group must have a scope wider than link-local (see ValidGroup6).
	Group netip.Addr
	Port  int
	// Count is the number of probes of each kind to each target: 5 by
	// default.
	Count int
	// Interval is the time between rounds: 1s by default.
	Interval time.Duration
	// Wait is how long to wait for late replies after the last round: 1s
	// by default. Run returns sooner when every probe has been answered.
	Wait time.Duration
}

func (o Options) withDefaults() (Options, error) {
	v6 := o.v6()
	if !o.Group.IsValid() {
		o.Group = defaultGroup
		if v6 {
			o.Group = defaultGroup6
		}
	}
	if v6 {
		o.Local = o.Local.WithZone("")
	} else {
		o.Group, o.Local = o.Group.Unmap(), o.Local.Unmap()
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Count == 0 {
		o.Count = 5
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.Wait == 0 {
		o.Wait = time.Second
	}
	switch {
	case o.Iface == "":
		return o, errors.New("ping: Options.Iface is empty; name the TAP that multicast probes leave by")
	case checkOverlay(o.Local, v6) != "":
		return o, fmt.Errorf("ping: Options.Local %v %s; use this node's overlay address", o.Local, checkOverlay(o.Local, v6))
	case checkGroup(o.Group, v6) != "":
		return o, fmt.Errorf("ping: Options.Group %v %s", o.Group, checkGroup(o.Group, v6))
	case o.Port < 1 || o.Port > 65535:
		return o, fmt.Errorf("ping: Options.Port %d is out of range 1-65535", o.Port)
	case o.Count < 0 || o.Count > maxCount:
		return o, fmt.Errorf("ping: Options.Count %d is out of range 1-%d", o.Count, maxCount)
	case o.Interval < 0:
		return o, fmt.Errorf("ping: Options.Interval %v is negative", o.Interval)
	case o.Wait < 0:
		return o, fmt.Errorf("ping: Options.Wait %v is negative", o.Wait)
	}
	return o, nil
}

// v6 reports whether the run probes in IPv6: whether Local is an IPv6
// address, not IPv4-mapped.
func (o Options) v6() bool { return o.Local.Is6() && !o.Local.Is4In6() }

// maxCount bounds Options.Count, so that the per-probe state stays small.
const maxCount = 1 << 20

// Run probes targets and returns one Result per target, in their order.
// It probes in the family of Options.Local, IPv4 or IPv6.
//
// Every Interval it sends one round: a unicast probe to each target's
// overlay address and port, and a single multicast probe to the group and
// port, which every responder on the overlay answers. After the last round
// it waits up to Wait for late replies. A reply counts when it carries this
// run's random nonce, the sequence number and kind of a probe that was
// sent, and that probe's timestamp, and comes from a target's overlay
// address and the responder port; the target is the reply's source.
// Duplicates count once. A probe the kernel refuses counts as sent and
// lost. Round-trip times come from the monotonic clock.
//
// Any number of probers may run at once, on one node or on many: each has
// its own socket and nonce. The socket is opened in the calling goroutine's
// network namespace.
//
// Run returns an error, and no results, when the options or targets are
// invalid or the socket cannot be set up. With no targets it returns no
// results at once, sending nothing. When ctx is done before the end, it
// returns the results so far (probes sent until then) with ctx.Err().
func Run(ctx context.Context, opts Options, targets []Target) ([]Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tr, err := newTracker(rand.Uint64(), o, targets)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return []Result{}, nil
	}
	ifi, err := net.InterfaceByName(o.Iface)
	if err != nil {
		return nil, fmt.Errorf("ping: Options.Iface %q: %w", o.Iface, err)
	}
	network := "udp4"
	if o.v6() {
		network = "udp6"
	}
	c, err := (&net.ListenConfig{}).ListenPacket(ctx, network, netip.AddrPortFrom(o.Local, 0).String())
	if err != nil {
		if o.v6() && errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, fmt.Errorf("ping: probe socket: %w (an IPv6 address is usable once duplicate address detection has passed, a second or two after it is added; is %v on %s?)", err, o.Local, o.Iface)
		}
		return nil, fmt.Errorf("ping: probe socket: %w", err)
	}
	uc := c.(*net.UDPConn)
	type option struct {
		what string
		err  error
	}
	var sets []option
	if o.v6() {
		pc := ipv6.NewPacketConn(uc)
		sets = []option{
			{"IPV6_MULTICAST_IF " + o.Iface, pc.SetMulticastInterface(ifi)},
			{"IPV6_MULTICAST_HOPS", pc.SetMulticastHopLimit(1)},
			{"IPV6_MULTICAST_LOOP", pc.SetMulticastLoopback(false)},
		}
	} else {
		pc := ipv4.NewPacketConn(uc)
		sets = []option{
			{"IP_MULTICAST_IF " + o.Iface, pc.SetMulticastInterface(ifi)},
			{"IP_MULTICAST_TTL", pc.SetMulticastTTL(1)},
			{"IP_MULTICAST_LOOP", pc.SetMulticastLoopback(false)},
		}
	}
	for _, set := range sets {
		if set.err != nil {
			uc.Close()
			return nil, fmt.Errorf("ping: probe socket: %s: %w", set.what, set.err)
		}
	}

	// Closing the socket ends the reader, and unblocks a send when ctx
	// is done.
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tr.read(uc)
	}()
	defer func() {
		stop()
		uc.Close()
		wg.Wait()
	}()

	buf := make([]byte, packetLen)
	group := netip.AddrPortFrom(o.Group, uint16(o.Port))
	start := time.Now()
	for seq := range o.Count {
		if seq > 0 && !sleep(ctx, time.Until(start.Add(time.Duration(seq)*o.Interval))) {
			return tr.results(), ctx.Err()
		}
		for i := range targets {
			tr.send(uc, buf, i, uint32(seq), netip.AddrPortFrom(tr.addrs[i], uint16(o.Port)))
		}
		tr.send(uc, buf, -1, uint32(seq), group)
	}
	timer := time.NewTimer(o.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-tr.all:
	case <-ctx.Done():
		return tr.results(), ctx.Err()
	}
	return tr.results(), nil
}

// sleep waits for d or until ctx is done, and reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}

// probe is the state of one probe to one target.
type probe struct {
	sent  bool
	at    time.Time // when it was sent, with the monotonic clock reading
	stamp int64     // at in unix nanoseconds, as sent in the probe
	rtt   time.Duration
	got   bool
}

// tracker holds a run's probes and matches replies to them. Its methods
// are safe for concurrent use.
type tracker struct {
	nonce   uint64
	local   netip.Addr
	port    uint16
	targets []Target
	addrs   []netip.Addr       // the targets' overlay addresses, unmapped, without zones
	index   map[netip.Addr]int // overlay address -> target index

	mu       sync.Mutex
	probes   [][2][]probe // [target][kind-1][seq]
	received int
	expected int           // replies that complete the run
	all      chan struct{} // closed when received reaches expected
	ignored  [numReasons]int
	foreign  int // well-formed replies that match no probe of this run
}

func newTracker(nonce uint64, o Options, targets []Target) (*tracker, error) {
	tr := &tracker{
		nonce:    nonce,
		targets:  append([]Target(nil), targets...),
		local:    o.Local,
		port:     uint16(o.Port),
		addrs:    make([]netip.Addr, len(targets)),
		index:    make(map[netip.Addr]int, len(targets)),
		probes:   make([][2][]probe, len(targets)),
		expected: 2 * o.Count * len(targets),
		all:      make(chan struct{}),
	}
	v6 := o.v6()
	for i, t := range targets {
		a := t.Overlay.Unmap()
		if v6 {
			a = t.Overlay.WithZone("")
		}
		switch why := checkOverlay(a, v6); {
		case why != "":
			return nil, fmt.Errorf("ping: target %q: overlay address %v %s", t.Name, t.Overlay, why)
		case a == o.Local:
			return nil, fmt.Errorf("ping: target %q: overlay address %v is Options.Local; leave this node out of the targets", t.Name, t.Overlay)
		}
		if j, dup := tr.index[a]; dup {
			return nil, fmt.Errorf("ping: targets %q and %q have the same overlay address %v", targets[j].Name, t.Name, a)
		}
		tr.index[a] = i
		tr.addrs[i] = a
		tr.probes[i] = [2][]probe{make([]probe, o.Count), make([]probe, o.Count)}
	}
	return tr, nil
}

// send sends probe seq to dst: a unicast probe to target i, or with i < 0
// the multicast probe, which is a probe to every target. buf has at least
// packetLen bytes. The probe is recorded before it leaves, so that a reply
// can never beat it.
func (tr *tracker) send(c *net.UDPConn, buf []byte, i int, seq uint32, dst netip.AddrPort) {
	k := kindUnicast
	if i < 0 {
		k = kindMulticast
	}
	now := time.Now()
	stamp := now.UnixNano()
	tr.mark(i, k, seq, probe{sent: true, at: now, stamp: stamp})
	p := encode(buf, header{typ: typeRequest, kind: k, seq: seq, nonce: tr.nonce, stamp: stamp})
	if _, err := c.WriteToUDPAddrPort(p, dst); errors.Is(err, net.ErrClosed) {
		tr.mark(i, k, seq, probe{}) // the run was canceled: not sent
	}
	// Any other error is a lost probe.
}

// mark sets the state of probe seq of kind k to target i, or to every
// target for i < 0.
func (tr *tracker) mark(i int, k kind, seq uint32, pr probe) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for j := range tr.probes {
		if j == i || i < 0 {
			tr.probes[j][k-1][seq] = pr
		}
	}
}

// read records the replies that arrive on c until c is closed.
func (tr *tracker) read(c *net.UDPConn) {
	buf := make([]byte, readBufLen)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			continue
		}
		tr.record(buf[:n], from, time.Now())
	}
}

// record matches the datagram b from from, received at now, to a probe,
// and reports whether it was the first reply to one.
func (tr *tracker) record(b []byte, from netip.AddrPort, now time.Time) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	p, why := parse(b)
	if why == reasonOK && p.typ() != typeReply {
		why = reasonDirection
	}
	if why != reasonOK {
		tr.ignored[why]++
		return false
	}
	src := from.Addr().Unmap().WithZone("")
	i, ok := tr.index[src]
	if !ok || src == tr.local || from.Port() != tr.port || p.nonce() != tr.nonce {
		tr.foreign++
		return false
	}
	probes := tr.probes[i][p.kind()-1]
	seq := p.seq()
	if uint64(seq) >= uint64(len(probes)) {
		tr.foreign++
		return false
	}
	pr := &probes[seq]
	if !pr.sent || pr.stamp != p.stamp() {
		tr.foreign++
		return false
	}
	if pr.got {
		return false // a duplicate
	}
	pr.got, pr.rtt = true, now.Sub(pr.at)
	tr.received++
	if tr.received == tr.expected {
		close(tr.all)
	}
	return true
}

// results summarizes the probes so far.
func (tr *tracker) results() []Result {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	res := make([]Result, len(tr.probes))
	for i := range tr.probes {
		res[i].Target = tr.targets[i]
		var st [2]Stats
		for k := range st {
			sent := 0
			var rtts []time.Duration
			for _, pr := range tr.probes[i][k] {
				if pr.sent {
					sent++
				}
				if pr.got {
					rtts = append(rtts, pr.rtt)
				}
			}
			st[k] = newStats(sent, rtts)
		}
		res[i].Unicast, res[i].Multicast = st[kindUnicast-1], st[kindMulticast-1]
	}
	return res
}
