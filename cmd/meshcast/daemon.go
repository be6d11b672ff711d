package main

// The daemon's lifecycle, one phase per method:
//
//	open      resolve this node (discovery's first listing), claim the
//	          control socket or take over from the daemon that holds it,
//	          and open the data plane or attach the one inherited from the
//	          predecessor or the service manager's store
//	serve     forward, answer the control socket, the metrics and ping,
//	          apply discovery, until a signal, a failure or a handover
//	reload    SIGHUP: the inventory, and the settings that can change
//	handOver  pause, offer the descriptors and the state to a successor,
//	          and stop without removing anything, or resume if it fails
//	close     remove what this process created, unless a successor or the
//	          service manager holds it
//
// runDaemon only strings them together.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshcast/meshcast/discovery"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/metrics"
	"github.com/meshcast/meshcast/internal/ping"
	"github.com/meshcast/meshcast/overlay"
	"github.com/meshcast/meshcast/replicate"
)

// Typed errors the CLI acts on.
var (
	// errAlreadyRunning: a daemon of the community answers its control
	// socket and --takeover was not given (exit 2).
	errAlreadyRunning = errors.New("already running")
	// errTakeover: the running daemon could not be taken over; it goes
	// on running (exit 1).
	errTakeover = errors.New("takeover failed; the running meshcast goes on forwarding")
)

// Timeouts of a handover: how long the predecessor waits for its
// successor to attach everything, and how long the successor waits for
// the predecessor to commit.
const (
	handoverAttachTimeout = 10 * time.Second
	handoverCommitTimeout = 5 * time.Second
)

// daemon is one run of `meshcast run`. The control socket and the metrics
// read it through state().
type daemon struct {
	cfg     *runConfig
	log     *slog.Logger
	started time.Time

	// Discovery.
	src     discovery.Source
	rec     *discovery.Reconciler
	static  *discovery.Static
	ec2     *discovery.EC2
	ec2Self *discovery.Self

	// This node as resolved by open. local is the underlay address its
	// sockets are on (IPv4 where it has one), and local6 the IPv6 one of
	// a dual-stack node, which has sockets on both.
	self    discovery.Member
	local   netip.Addr
	local6  netip.Addr
	tap     string
	ifname  string
	mtu     int
	codec   overlay.Codec
	ctlPath string

	// What open opened.
	ctl       *control.Server
	plane     plane
	eng       *replicate.Engine   // nil with the kernel dataplane
	snoop     *replicate.Snooping // nil with the kernel dataplane
	kern      *overlay.Kernel     // nil with the userspace dataplane
	offloads  func() []overlay.OffloadStatus
	ringDrops func() uint64 // GRE receive ring: packets the kernel dropped, nil without
	responder *ping.Responder
	metricsrv *metrics.Server
	ping      control.PingService

	// Under systemd: the notification socket, and the descriptors the
	// service manager kept from the previous run.
	sd     *sdNotifier
	stored map[string]*os.File
	// pred is the daemon this one takes over from, between its offer
	// and its commit.
	pred *control.Predecessor
	// inherited is set when the data plane came from a predecessor or
	// the service manager's store.
	inherited bool
	// fromPred is set when it came from a predecessor: until open
	// completes, the predecessor may resume, so close must not remove
	// anything.
	fromPred bool
	opened   bool
	// handedOver is set once a successor holds the data plane.
	handedOver bool

	mu    sync.Mutex
	peers []replicate.PeerInfo // the peers in force (the kernel path keeps no table of its own)
	// unreached are the members of the listings that no tunnel can join
	// this node to (--underlay-family), counted and logged.
	unreached discovery.ProblemLog
}

// memoryLimit is the daemon's soft limit on the Go runtime's memory, unless
// GOMEMLIMIT says otherwise: the working set is a few MiB of buffers and
// tables, and the limit makes the collector return the garbage of a large
// status or a burst of reports instead of letting the heap double.
const memoryLimit = 40 << 20

func runDaemon(cfg *runConfig, log *slog.Logger) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if path := os.Getenv("MESHCAST_CPUPROFILE"); path != "" {
		// For profiling the data path: a CPU profile of the whole run.
		if f, err := os.Create(path); err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// SIGINT and SIGTERM cancel ctx, during start-up (such as waiting for
	// the EC2 API) and after. SIGHUP waits in its own channel until the
	// data plane runs, so a reload asked for during start-up is not lost.
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(term)
	hup := make(chan os.Signal, 2)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		select {
		case sig := <-term:
			log.Info("stopping", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()

	d := newDaemon(cfg, log)
	defer d.close()
	if err := d.open(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return d.serve(ctx, hup)
}

func newDaemon(cfg *runConfig, log *slog.Logger) *daemon {
	return &daemon{cfg: cfg, log: log, started: time.Now(), sd: newSdNotifier(log), stored: storedFiles(),
		unreached: discovery.ProblemLog{Msg: "member left out: no tunnel can reach it", IDKey: "id", Logger: log}}
}

// open is the first phase: after it the daemon is ready to forward.
func (d *daemon) open(ctx context.Context) error {
	if err := d.resolve(ctx); err != nil {
		return err
	}
	if err := preflight(); err != nil {
		return err
	}
	if err := d.claim(ctx); err != nil {
		return err
	}
	if err := d.openPlane(); err != nil {
		d.abortTakeover(err)
		return err
	}
	if _, _, err := d.plane.setPeers(d.peers); err != nil {
		d.abortTakeover(err)
		return usagef("%s", withAdvice(err.Error(), err))
	}
	d.restoreState()
	if err := d.openMetrics(); err != nil {
		d.abortTakeover(err)
		return err
	}
	if d.pred != nil {
		// Everything is attached and nothing forwarded yet: the
		// predecessor stops for good when it answers, or resumes.
		err := d.pred.Ready(handoverCommitTimeout)
		d.pred.Close()
		d.pred = nil
		if err != nil {
			return fmt.Errorf("%w: %v", errTakeover, err)
		}
		d.log.Info("took over", "tap", d.tap, "control", d.ctlPath)
	}
	d.opened = true
	return d.openServices()
}

// resolve starts discovery and waits for its first listing, which gives
// this node's community and overlay address. An inventory that does not
// parse is a configuration error; the EC2 API is retried with backoff
// until it answers.
func (d *daemon) resolve(ctx context.Context) error {
	cfg, log := d.cfg, d.log
	switch cfg.discovery {
	case "ec2":
		e, err := discovery.NewEC2(ctx, discovery.EC2Config{TagKey: cfg.tagKey, Logger: log})
		if err != nil {
			return err
		}
		self := e.Self()
		d.ec2Self = &self
		d.src, d.ec2 = e, e
		log.Info("ec2 discovery", "instance", self.ID, "region", self.Region, "vpc", self.VPC, "private_ip", self.IP, "tag_key", cfg.tagKey)
	default:
		d.static = &discovery.Static{Path: cfg.peersFile}
		d.src = d.static
	}
	d.rec = &discovery.Reconciler{Source: d.src, Interval: cfg.interval, Logger: log}
	var n node
	d.rec.Apply = func(all []discovery.Member) (err error) {
		n, err = pick(cfg, all, d.ec2Self)
		return err
	}
	for {
		err := d.rec.Once(ctx)
		if err == nil {
			break
		}
		var ue *usageError
		var ie *discovery.InventoryError
		switch {
		case errors.As(err, &ue):
			return err
		case errors.As(err, &ie):
			return &usageError{msg: withAdvice(err.Error(), err)}
		case ctx.Err() != nil:
			return ctx.Err()
		case d.static != nil:
			return err
		}
		delay := d.rec.Delay(d.rec.Status().ConsecutiveFailures)
		log.Warn("discovery failed; retrying", "source", d.src.Name(), "err", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	d.self, d.peers = n.self, n.peers
	d.tap = cfg.tap
	if d.tap == "" {
		d.tap = "mcbr-" + d.self.Community
	}
	if err := overlay.ValidIfName(d.tap); err != nil {
		return usagef("TAP device: %v: pass --tap NAME, or use a community name of at most 10 bytes", err)
	}
	switch cfg.encap {
	case "gre":
		d.codec = overlay.NewGRE(cfg.greKey, cfg.hasGREKey)
	case "vxlan":
		d.codec = overlay.NewVXLAN(d.vni(), cfg.vxlanPort)
	}
	v4, v6, err := discovery.LocalUnderlays(d.self, cfg.underlayFamily(d.self))
	if err != nil {
		return usagef("%v", err)
	}
	d.local = v4
	if !v4.IsValid() {
		d.local = v6
	} else if v6.IsValid() {
		d.local6 = v6
	}
	// The TAP MTU fits the smaller of the two families' paths.
	d.mtu = 0
	for _, a := range []netip.Addr{d.local, d.local6} {
		if !a.IsValid() {
			continue
		}
		name, mtu, err := underlayMTU(a)
		if err != nil {
			if a == d.local6 {
				return usagef("%v (this node's IPv6 underlay address; or pass --underlay-family 4)", err)
			}
			return err
		}
		if d.ifname == "" {
			d.ifname = name
		}
		if m := mtu - overlay.OverheadOver(d.codec, a); d.mtu == 0 || m < d.mtu {
			d.mtu = m
		}
	}
	d.unreached.Record(n.unreached)
	d.ctlPath = cfg.control
	if d.ctlPath == "" {
		d.ctlPath = control.DefaultPath(d.self.Community)
	}
	return nil
}

func (d *daemon) vni() uint32 {
	if d.cfg.hasVNI {
		return d.cfg.vni
	}
	return defaultVNI(d.self.Community)
}

// claim takes the control socket: it keeps a second daemon of the
// community from touching anything. With --takeover and a daemon running,
// it asks that daemon for its descriptors and state instead.
func (d *daemon) claim(ctx context.Context) error {
	var err error
	if d.cfg.takeover {
		tctx, cancel := context.WithTimeout(ctx, handoverAttachTimeout)
		pred, err := control.Takeover(tctx, d.ctlPath)
		cancel()
		switch {
		case errors.Is(err, control.ErrNotRunning):
			d.log.Info("no meshcast to take over; starting", "control", d.ctlPath)
		case err != nil:
			return fmt.Errorf("%w: %v", errTakeover, err)
		default:
			d.pred = pred
			d.inherited, d.fromPred = true, true
			d.log.Info("taking over", "from_pid", pred.PID, "control", d.ctlPath, "descriptors", len(pred.Files))
			if err := d.checkOffer(); err != nil {
				d.abortTakeover(err)
				return err
			}
			f := pred.Files[controlFDName]
			delete(pred.Files, controlFDName)
			if f == nil {
				err := errors.New("the offer carries no control socket")
				d.abortTakeover(err)
				return fmt.Errorf("%w: %v", errTakeover, err)
			}
			if d.ctl, err = control.ListenFile(d.ctlPath, f); err != nil {
				d.abortTakeover(err)
				return fmt.Errorf("%w: %v", errTakeover, err)
			}
			return nil
		}
	}
	d.ctl, err = control.Listen(d.ctlPath)
	if errors.Is(err, control.ErrRunning) {
		return fmt.Errorf("%w: community %s: %v: stop it first, pass --takeover to take over from it, or pass another --control and --tap",
			errAlreadyRunning, d.self.Community, err)
	}
	return err
}

// abortTakeover tells the predecessor to resume, if there is one.
func (d *daemon) abortTakeover(err error) {
	if d.pred == nil {
		return
	}
	d.log.Error("takeover aborted; the running meshcast resumes", "err", err)
	d.pred.Abort(err.Error())
	d.pred.Close()
	d.pred = nil
}

// handoverState is what crosses from a daemon to its successor, and what
// a daemon under systemd leaves in its state file for the next start.
type handoverState struct {
	Version   string          `json:"version"`
	Started   time.Time       `json:"started"`
	Community string          `json:"community"`
	Dataplane string          `json:"dataplane"`
	Encap     string          `json:"encap"`
	TAP       string          `json:"tap"`
	Local     netip.Addr      `json:"local"`
	Overlay   netip.Prefix    `json:"overlay"`
	Plane     planeState      `json:"plane"`
	Peers     []handoverPeer  `json:"peers"`
	Extra     json.RawMessage `json:"extra,omitempty"`
}

type handoverPeer struct {
	Underlay netip.Addr   `json:"underlay"`
	Overlay  netip.Prefix `json:"overlay"`
	ID       string       `json:"id,omitempty"`
}

// offered is the predecessor's state, decoded by checkOffer.
func (d *daemon) offered() (handoverState, error) {
	var s handoverState
	if err := json.Unmarshal(d.pred.State, &s); err != nil {
		return s, fmt.Errorf("the predecessor's state: %w", err)
	}
	return s, nil
}

// checkOffer refuses to take over a daemon that runs with settings that
// cannot be carried over.
func (d *daemon) checkOffer() error {
	s, err := d.offered()
	if err != nil {
		return fmt.Errorf("%w: %v", errTakeover, err)
	}
	var diffs []string
	check := func(what, running, want string) {
		if running != want {
			diffs = append(diffs, fmt.Sprintf("%s is %s in the running daemon, %s here", what, running, want))
		}
	}
	check("the community", s.Community, d.self.Community)
	check("the TAP (--tap)", s.TAP, d.tap)
	check("the dataplane (--dataplane)", s.Dataplane, d.cfg.dataplane)
	if d.cfg.dataplane == "kernel" {
		check("the encapsulation (--encap)", s.Encap, d.cfg.encap)
	}
	check("this node's overlay address", s.Overlay.String(), d.self.Overlay.String())
	if len(diffs) > 0 {
		return usagef("cannot take over: %s; start with the same settings, or stop the running daemon first", strings.Join(diffs, "; "))
	}
	return nil
}

// openPlane opens the data plane, or attaches the one inherited from the
// predecessor or from the service manager's store.
func (d *daemon) openPlane() error {
	cfg := d.cfg
	inherited := d.stored
	if d.pred != nil {
		inherited = d.pred.Files
	}
	if cfg.dataplane == "kernel" {
		kcfg := overlay.KernelConfig{
			Bridge: d.tap, Overlay: d.self.Overlay, Overlay6: d.self.Overlay6, MTU: d.mtu, Local: d.local, UnderlayIf: d.ifname,
			Encap: cfg.encap, GREKey: cfg.greKey, HasGREKey: cfg.hasGREKey, VNI: d.vni(), Port: cfg.vxlanPort,
			VXLANMode: cfg.kernelVXLAN, QueryInterval: cfg.igmp.QueryInterval,
		}
		var kern *overlay.Kernel
		var err error
		if d.pred != nil {
			// The bridge and its tunnel ports stay as they are.
			kern, err = overlay.AdoptKernel(kcfg)
		} else {
			kern, err = overlay.OpenKernel(kcfg)
		}
		if err != nil {
			if errors.Is(err, overlay.ErrNoGretap) {
				return fmt.Errorf("%w: %s", err, flagAdvice(err))
			}
			if errors.Is(err, overlay.ErrInterfaceExists) {
				return interfaceExists(d.tap)
			}
			return fmt.Errorf("kernel dataplane: %s", withAdvice(err.Error(), err))
		}
		d.kern = kern
		d.plane = &kernelPlane{kern: kern}
		return nil
	}
	if d.stored[tapFDName] != nil && d.pred == nil {
		d.inherited = true
	}
	p, err := openUserPlane(userPlaneConfig{cfg: cfg, self: d.self.Overlay, self6: d.self.Overlay6, local: d.local, local6: d.local6, tapName: d.tap,
		mtu: d.mtu, codec: d.codec, log: d.log, inherited: inherited, strict: d.pred != nil})
	if err != nil {
		return err
	}
	d.plane, d.eng, d.snoop = p, p.eng, p.snoop
	d.offloads = p.offloads
	if p.conn.ReceiveRingConn() != nil {
		d.ringDrops = p.conn.ReceiveDrops
	}
	return nil
}

// statePath is where a daemon under systemd leaves its state for the next
// start: beside the control socket, /run/meshcast/COMMUNITY.state by
// default.
func (d *daemon) statePath() string {
	return strings.TrimSuffix(d.ctlPath, ".sock") + ".state"
}

// restoreState takes the predecessor's state, or the state file that the
// previous run under systemd left with the TAP it stored: the snooping
// table, the querier and the engine's MACs and counters continue, so
// members miss nothing and non-members are not flooded while the hosts
// report again.
func (d *daemon) restoreState() {
	var raw []byte
	from := ""
	switch {
	case d.pred != nil:
		raw, from = d.pred.State, "predecessor"
	case d.inherited:
		b, err := os.ReadFile(d.statePath())
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				d.log.Warn("state file not read; relearning memberships", "file", d.statePath(), "err", err)
			}
			return
		}
		raw, from = b, d.statePath()
	default:
		return
	}
	os.Remove(d.statePath())
	var s handoverState
	if err := json.Unmarshal(raw, &s); err != nil {
		d.log.Warn("state not restored; relearning memberships", "from", from, "err", err)
		return
	}
	if s.TAP != d.tap || s.Community != d.self.Community {
		d.log.Warn("state of another TAP not restored; relearning memberships", "from", from, "tap", s.TAP)
		return
	}
	if err := d.plane.restore(s.Plane, time.Now()); err != nil {
		d.log.Warn("state partly restored; the rest is relearned", "from", from, "err", err)
		return
	}
	groups := 0
	if s.Plane.IGMP != nil {
		groups = len(s.Plane.IGMP.Memberships)
	}
	d.log.Info("state restored", "from", from, "memberships", groups, "previous_version", s.Version)
}

// exportState is the state a successor or the next start takes.
func (d *daemon) exportState() handoverState {
	s := handoverState{
		Version: buildVersion(), Started: d.started, Community: d.self.Community, Dataplane: d.cfg.dataplane,
		Encap: d.cfg.encap, TAP: d.tap, Local: d.local, Overlay: d.self.Overlay,
		Plane: d.plane.export(time.Now()), Peers: []handoverPeer{},
	}
	d.mu.Lock()
	for _, p := range d.peers {
		s.Peers = append(s.Peers, handoverPeer{Underlay: p.Underlay, Overlay: p.Overlay, ID: p.ID})
	}
	d.mu.Unlock()
	return s
}

// openMetrics serves the metrics: on the predecessor's listener when it
// served the same address, so that scrapes find it throughout.
func (d *daemon) openMetrics() error {
	var f *os.File
	if d.pred != nil {
		f = d.pred.Files[metricsFDName]
		delete(d.pred.Files, metricsFDName)
	}
	if d.cfg.metrics == "" {
		if f != nil {
			f.Close()
		}
		return nil
	}
	reg := metrics.New(d.state, buildVersion())
	var err error
	if f != nil {
		if d.metricsrv, err = metrics.ServeFile(f, reg); err == nil && !sameTCPAddr(d.metricsrv.Addr(), d.cfg.metrics) {
			// The predecessor served another address: it closes that
			// one when it commits.
			d.metricsrv.Close()
			d.metricsrv = nil
		}
	}
	if d.metricsrv == nil {
		if d.metricsrv, err = metrics.Serve(d.cfg.metrics, reg); err != nil {
			return usagef("--metrics %s: %v", d.cfg.metrics, err)
		}
	}
	d.log.Info("serving metrics", "url", "http://"+d.metricsrv.Addr()+"/metrics")
	return nil
}

// sameTCPAddr reports whether the listening address got is what the
// setting want asks for (a port 0 asks for any port).
func sameTCPAddr(got, want string) bool {
	g, err1 := netip.ParseAddrPort(got)
	w, err2 := net.ResolveTCPAddr("tcp", want)
	if err1 != nil || err2 != nil {
		return false
	}
	wa := w.AddrPort()
	if wa.Port() != 0 && wa.Port() != g.Port() {
		return false
	}
	// 0.0.0.0 resolves to ::ffff:0.0.0.0, and a listener on it reports [::].
	asked, have := wa.Addr().Unmap(), g.Addr().Unmap()
	return !asked.IsValid() || asked.IsUnspecified() && have.IsUnspecified() || asked == have
}

// openServices starts what answers on the TAP and the control socket.
func (d *daemon) openServices() error {
	pingGroup := netip.MustParseAddr(ping.DefaultGroup)
	var err error
	for try := 0; ; try++ {
		// With an IPv6 overlay address, on IPv6 too (ping.DefaultGroup6).
		d.responder, err = ping.ListenDual(d.tap, d.self.Overlay.Addr(), d.self.Overlay6.Addr(), ping.DefaultPort)
		if err == nil || !d.fromPred || try == 20 {
			break
		}
		// The predecessor closes its responder before it commits; its
		// sockets may take a moment to go.
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil && d.fromPred {
		// This process holds the TAP now: failing would take it away
		// from the applications. Forward without answering pings.
		d.log.Error("ping responder not started; meshcast ping gets no answer from this node until a restart", "err", err)
	} else if err != nil {
		return fmt.Errorf("ping responder: %w", err)
	}
	d.ping = control.PingService{Group: pingGroup.String(), Port: ping.DefaultPort}
	d.ctl.Serve(d.state)
	return nil
}

// serve is the second phase: it forwards until a signal cancels ctx, the
// data plane fails, or a successor takes over.
func (d *daemon) serve(ctx context.Context, hup <-chan os.Signal) error {
	log := d.log
	d.logStart()
	// From now on every listing is applied live; a failed one changes
	// nothing.
	running := *d.cfg // the settings as this node resolved them
	running.local, running.community = d.local, d.self.Community
	var underlayWarned string // the discovered underlays last warned about
	d.rec.Apply = func(all []discovery.Member) error {
		next, err := pick(&running, all, d.ec2Self)
		if err != nil {
			return err
		}
		if next.self.Overlay != d.self.Overlay {
			log.Warn("this node's overlay address changed; restart meshcast to apply it",
				"running", d.self.Overlay, "discovered", next.self.Overlay)
		}
		// The underlay sockets are open on the addresses this node
		// started with. An instance that gained an address of another
		// family (EC2 assign-ipv6-addresses, say) must not pick peers
		// over it: it has no socket of that family (EAFNOSUPPORT), and an
		// IPv6-only node that gained IPv4 would move its working tunnels
		// to IPv4. Keep choosing from the running addresses until a
		// restart opens sockets on the new ones.
		r4, r6 := d.self.Underlays()
		if n4, n6 := next.self.Underlays(); n4 != r4 || n6 != r6 {
			if seen := n4.String() + " " + n6.String(); seen != underlayWarned {
				underlayWarned = seen
				log.Warn("this node's underlay addresses changed; restart meshcast to tunnel over them",
					"running", addrList(r4, r6), "discovered", addrList(n4, n6))
			}
			self := next.self
			self.Underlay, self.Underlay6 = d.self.Underlay, d.self.Underlay6
			next = withPeers(&running, self, discovery.InCommunity(all, self.Community))
		} else {
			underlayWarned = ""
		}
		added, removed, err := d.plane.setPeers(next.peers)
		if err != nil {
			return err
		}
		d.setPeerList(next.peers)
		d.unreached.Record(next.unreached)
		if len(added)+len(removed) > 0 {
			log.Info("peers changed", "peers", len(next.peers), "added", added, "removed", removed)
		}
		return nil
	}

	recCtx, stopRec := context.WithCancel(ctx)
	defer stopRec()
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		d.rec.RunAfter(recCtx) // the first listing is applied already
	}()
	if d.static != nil {
		go watchFile(recCtx, d.static, d.rec)
	}

	planeCtx, pause := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.plane.run(planeCtx) }()
	d.storeFiles()
	d.sd.notify("READY=1")

	for {
		select {
		case err := <-done:
			pause()
			stopRec()
			<-recDone
			d.sd.notify("STOPPING=1")
			if d.sd.stored {
				// The plane is paused: the state file matches what the
				// store keeps.
				d.writeStateFile()
				log.Info("TAP left to the service manager's store; `systemctl stop` removes it", "tap", d.tap)
			}
			d.logCounters()
			if err != nil {
				return fmt.Errorf("data plane: %w", err)
			}
			return nil
		case <-hup:
			log.Info("SIGHUP: reloading", "source", d.src.Name(), "config", d.cfg.configFile)
			d.reload(log)
			d.rec.Poke()
		case req := <-d.ctl.Takeovers():
			pause()
			if err := <-done; err != nil {
				req.Refuse("the data plane failed: " + err.Error())
				req.Close()
				return fmt.Errorf("data plane: %w", err)
			}
			if d.handOver(req) {
				stopRec()
				<-recDone
				d.logCounters()
				return nil
			}
			// The handover failed: forward again.
			planeCtx, pause = context.WithCancel(ctx)
			go func() { done <- d.plane.run(planeCtx) }()
		}
	}
}

// reload parses the command line and config file again on SIGHUP, applies
// the settings that can change at run time, and names those that need a
// restart.
func (d *daemon) reload(log *slog.Logger) {
	if d.cfg.configFile == "" {
		return
	}
	next, err := parseRun(d.cfg.args)
	if err != nil {
		log.Error("config not reloaded; keeping the running settings", "file", d.cfg.configFile, "err", err)
		return
	}
	cur := d.cfg
	if next.logLevel != cur.logLevel {
		log.Info("setting changed", "setting", "log-level", "from", cur.logLevel, "to", next.logLevel)
		cur.levelVar.Set(next.logLevel)
		cur.logLevel = next.logLevel
	}
	if next.unregistered != cur.unregistered && d.snoop != nil {
		// In force before the line is logged, so that a script acting on
		// the line sees the new policy.
		d.snoop.SetUnregistered(next.unregistered)
		log.Info("setting changed", "setting", "unregistered", "from", policyName(cur.unregistered), "to", policyName(next.unregistered))
		cur.unregistered = next.unregistered
	}
	if next.interval != cur.interval {
		log.Info("setting changed", "setting", "interval", "from", cur.interval, "to", next.interval)
		d.rec.SetInterval(next.interval)
		cur.interval = next.interval
	}
	// Everything else needs a restart: name what differs.
	a, b := *cur, next
	for _, x := range []*runConfig{&a, &b} {
		x.args, x.levelVar, x.logLevel, x.unregistered, x.interval = nil, nil, 0, 0, 0
		x.igmp.Logger = nil
	}
	if !reflect.DeepEqual(a, b) {
		log.Warn("the config file changed settings that need a restart of meshcast; they are not applied")
	}
}

func policyName(u replicate.Unregistered) string {
	if u == replicate.UnregisteredDrop {
		return "drop"
	}
	return "flood"
}

// handOver is the last phase when a successor asks: the data plane is
// paused; offer it, and stop for good once the successor is ready.
// It reports whether the successor took over; if not, the daemon resumes.
func (d *daemon) handOver(req *control.TakeoverRequest) bool {
	defer req.Close()
	log := d.log
	log.Info("handing over to a successor")
	files := append(d.plane.files(), control.File{Name: controlFDName, Conn: d.ctl.Listener()})
	if d.metricsrv != nil {
		files = append(files, control.File{Name: metricsFDName, Conn: d.metricsrv.Listener()})
	}
	if err := req.Offer(d.exportState(), files); err != nil {
		log.Warn("handover failed; forwarding again", "err", err)
		return false
	}
	if err := req.Await(handoverAttachTimeout); err != nil {
		log.Warn("handover failed; forwarding again", "err", err)
		return false
	}
	// Committed: stop answering, then let the successor start.
	d.stopServices(true)
	if err := req.Commit(); err != nil {
		// The successor is ready and holds everything; it times out
		// and exits if it never reads this, like a crash.
		log.Warn("handover commit not delivered", "err", err)
	}
	d.handedOver = true
	log.Info("handed over; exiting without removing anything", "tap", d.tap)
	return true
}

// stopServices closes the ping responder and the metrics, and stops the
// control socket: released (left for a successor) or removed.
func (d *daemon) stopServices(release bool) {
	if d.responder != nil {
		d.responder.Close()
		d.responder = nil
	}
	if d.metricsrv != nil {
		d.metricsrv.Close() // a successor holds its own descriptor
		d.metricsrv = nil
	}
	if d.ctl != nil {
		if release {
			d.ctl.Release()
		} else {
			d.ctl.Close()
		}
		d.ctl = nil
	}
}

// close is the end: remove what this process created, unless a successor
// or the service manager holds it.
func (d *daemon) close() {
	d.abortTakeover(errors.New("meshcast stopped before the takeover completed"))
	// Until a takeover completes, everything belongs to the predecessor,
	// which resumes: leave its control socket and data plane in place.
	keep := d.handedOver || d.fromPred && !d.opened
	d.stopServices(keep)
	if d.plane != nil {
		if keep {
			d.plane.release()
		} else {
			d.plane.close()
		}
	}
	for _, f := range d.stored {
		f.Close()
	}
}

// storeFiles hands the TAP and the underlay receive socket to the service
// manager's store, so that a restart keeps them.
func (d *daemon) storeFiles() {
	if !d.sd.enabled() {
		return
	}
	for _, f := range d.plane.files() {
		if err := d.sd.storeFD(f.Name, f.Conn); err != nil {
			d.log.Warn("descriptor not stored with the service manager; a restart opens it again", "fdname", f.Name, "err", err)
			return
		}
		d.log.Info("descriptor stored with the service manager (FDSTORE=1)", "fdname", f.Name, "tap", d.tap)
	}
}

// writeStateFile leaves the state for the next start under systemd.
func (d *daemon) writeStateFile() {
	b, err := json.Marshal(d.exportState())
	if err == nil {
		path := d.statePath()
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		d.log.Warn("state file not written; the next start relearns memberships", "file", d.statePath(), "err", err)
		return
	}
	d.log.Info("state left for the next start", "file", d.statePath(), "bytes", len(b))
}

// dropPrivileges keeps only the capabilities the running daemon needs, now
// that everything that needs more is open. Handing over needs nothing
// more: the successor, started with privilege, opens what it is given.
func (d *daemon) dropPrivileges() bool {
	if err := dropCapabilities(keptCapabilities); err != nil {
		d.log.Warn("capabilities not reduced", "err", err)
		return false
	}
	return true
}

// logStart logs the one line that says the daemon forwards, with what it
// runs on, and the offloads that are off and why.
func (d *daemon) logStart() {
	cfg := d.cfg
	attrs := []any{"community", d.self.Community, "dataplane", cfg.dataplane, "encap", d.codec.Name(), "tap", d.tap, "local", d.local}
	if d.local6.IsValid() {
		attrs = append(attrs, "local6", d.local6)
	}
	attrs = append(attrs, "underlay_family", cfg.family.String(), "overlay", d.self.Overlay, "mtu", d.mtu, "underlay_if", d.ifname,
		"peers", len(d.peers), "discovery", d.src.Name(), "control", d.ctlPath)
	if d.self.Overlay6.IsValid() {
		attrs = append(attrs, "overlay6", d.self.Overlay6)
	}
	if v, ok := d.codec.(*overlay.VXLAN); ok {
		attrs = append(attrs, "vni", v.VNI(), "port", v.Port())
	}
	off := d.offloadState()
	attrs = append(attrs, "kernel", off.Kernel, "tap_coalesce", off.TAPCoalesce.InUse, "udp_gso", off.UDPGSO.InUse, "udp_gro", off.UDPGRO.InUse, "af_packet_tx", off.PacketTx.InUse, "af_packet_gso", off.PacketGSO.InUse, "af_packet_rx", off.PacketRx.InUse)
	if d.dropPrivileges() {
		attrs = append(attrs, "capabilities", "cap_net_admin")
	}
	d.log.Info("meshcast forwarding", attrs...)
	if d.offloads != nil {
		for _, s := range d.offloads() {
			if !s.InUse {
				d.log.Info("offload off; meshcast works without it", "offload", s.Name, "reason", offloadReason(s.Name, s.Reason, d.cfg))
			}
		}
	}
}

// The names of the control socket's and the metrics' listeners in a
// handover.
const (
	controlFDName = "control"
	metricsFDName = "metrics"
)

// interfaceExists is the usage error for a TAP or bridge name in use.
func interfaceExists(name string) error {
	return usagef("interface %s already exists: another meshcast may be running for this community (pass --takeover to take over from it), or pass --tap with another name", name)
}

// watchFile pokes the reconciler when the inventory file changes.
func watchFile(ctx context.Context, s *discovery.Static, rec *discovery.Reconciler) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.Changed() {
				rec.Poke()
			}
		}
	}
}

func (d *daemon) logCounters() {
	st := d.state()
	for _, p := range st.Peers {
		d.log.Info("peer counters", "underlay", p.Underlay, "overlay", p.Overlay,
			"tx_packets", p.TxPackets, "tx_bytes", p.TxBytes, "rx_packets", p.RxPackets, "rx_bytes", p.RxBytes)
	}
	var total uint64
	var attrs []any
	for k, v := range st.Drops {
		if v != 0 {
			attrs = append(attrs, k, v)
			total += v
		}
	}
	d.log.Info("drops", append([]any{"total", total}, attrs...)...)
	rs := d.rec.Status()
	d.log.Info("discovery", "source", rs.Source, "successes", rs.Successes, "failures", rs.Failures,
		"throttled", rs.Throttled, "last_success", rs.LastSuccess.Format(time.RFC3339))
}

// addrList writes a node's underlay addresses for a log line: the valid
// ones of v4 and v6, space-separated, or "none".
func addrList(v4, v6 netip.Addr) string {
	var s []string
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}
