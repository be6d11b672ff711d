package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/mld"
	"github.com/meshcast/meshcast/overlay"
	"github.com/meshcast/meshcast/replicate"
)

// plane is a data plane as the daemon's lifecycle drives it: opened or
// attached by open, run by serve (paused and resumed by a handover that
// fails), and at the end either released (a successor or the service
// manager holds it now) or closed.
type plane interface {
	setPeers(ps []replicate.PeerInfo) (added, removed []netip.Addr, err error)
	// run forwards until ctx is done, then returns with every device
	// open: what arrives meanwhile waits in the TAP's queue and the
	// sockets' buffers.
	run(ctx context.Context) error
	// files are the descriptors that carry the data plane over to the
	// next process.
	files() []control.File
	export(now time.Time) planeState
	restore(s planeState, now time.Time) error
	// release closes this process's descriptors and removes nothing.
	release()
	// close removes what this process created.
	close()
}

// planeState is the state of a data plane that crosses to the next
// process: the snooping table, the querier, and the engine's learned MACs
// and counters. The kernel dataplane's state lives in its bridge.
type planeState struct {
	IGMP       *igmp.TableState       `json:"igmp,omitempty"` // IPv4 and IPv6 (MLD) groups
	Querier    *igmp.QuerierState     `json:"querier,omitempty"`
	MLDQuerier *igmp.QuerierState     `json:"mld_querier,omitempty"`
	Engine     *replicate.EngineState `json:"engine,omitempty"`
}

// userPlane is meshcast's own forwarding: the TAP, the underlay sockets
// and the engine.
type userPlane struct {
	tap   *overlay.TAP
	conn  *overlay.Conn // the underlay of the node's first (or only) address
	conn6 *overlay.Conn // a dual-stack node's IPv6 underlay; nil otherwise
	dual  *overlay.Dual // both, when conn6 is open
	eng   *replicate.Engine
	snoop *replicate.Snooping
}

// underlay is what the engine sends and receives through: the Conn, or
// both of a dual-stack node.
func (p *userPlane) underlay() interface {
	replicate.PacketConn
	replicate.Deadliner
} {
	if p.dual != nil {
		return p.dual
	}
	return p.conn
}

// offloads are the TAP's and the underlay's offloads.
func (p *userPlane) offloads() []overlay.OffloadStatus {
	if p.dual != nil {
		return append(p.tap.Offloads(), p.dual.Offloads()...)
	}
	return append(p.tap.Offloads(), p.conn.Offloads()...)
}

// userPlaneConfig is what openUserPlane needs.
type userPlaneConfig struct {
	cfg     *runConfig
	self    netip.Prefix
	self6   netip.Prefix // the IPv6 overlay address, if any
	local   netip.Addr
	local6  netip.Addr // a dual-stack node's IPv6 underlay address, beside local (IPv4)
	tapName string
	mtu     int
	codec   overlay.Codec
	log     *slog.Logger
	// inherited holds the descriptors of the previous process (the
	// service manager's store or the predecessor's offer) by name; the
	// ones used are removed from it.
	inherited map[string]*os.File
	// strict makes a descriptor that does not fit an error instead of
	// a warning (a takeover must not silently create a second TAP).
	strict bool
}

func openUserPlane(pc userPlaneConfig) (_ *userPlane, err error) {
	cfg, log := pc.cfg, pc.log
	p := &userPlane{}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	dual := pc.local6.IsValid()
	packetRx := cfg.packetRx
	if dual && packetRx {
		// One reader polls both sockets; the ring is not one of them.
		log.Info("AF_PACKET receive ring off: a dual-stack node receives through its sockets", "offload", overlay.OffloadPacketRx)
		packetRx = false
	}
	listenOn := func(local netip.Addr, recv, ring *os.File) (*overlay.Conn, error) {
		opts := overlay.Options{NoOffload: cfg.noOffload, NoPacketEgress: cfg.socketEgress, PacketRx: packetRx, Logger: log, Receive: recv, ReceiveRing: ring}
		if cfg.encap == "gre" {
			return overlay.ListenGRE(local, opts)
		}
		return overlay.ListenVXLAN(local, cfg.vxlanPort, opts)
	}
	listen := func(recv, ring *os.File) (*overlay.Conn, error) { return listenOn(pc.local, recv, ring) }
	f, ring := pc.inherited[underlayFDName], (*os.File)(nil)
	if raw := pc.inherited[ringRawFDName]; raw != nil {
		// GRE through the previous process's receive ring, which holds
		// what peers sent meanwhile. (Listening for VXLAN refuses the
		// raw socket as any other that does not fit.)
		if f != nil {
			f.Close()
		}
		f, ring = raw, pc.inherited[ringFDName]
	}
	for _, name := range []string{underlayFDName, ringRawFDName, ringFDName} {
		delete(pc.inherited, name)
	}
	if f != nil {
		// The receive socket of the previous process: what peers sent
		// meanwhile waits in its buffer.
		p.conn, err = listen(f, ring)
		f.Close()
		if ring != nil {
			ring.Close()
		}
		switch {
		case err == nil:
			log.Info("attached to the previous process's underlay socket", "encap", cfg.encap)
		case errors.Is(err, overlay.ErrNotOurSocket) && !pc.strict:
			// Such as after --encap or --local changed.
			log.Warn("inherited underlay socket ignored", "err", err)
			p.conn = nil
		default:
			return nil, fmt.Errorf("inherited underlay socket: %w", err)
		}
	}
	if p.conn == nil {
		p.conn, err = listen(nil, nil)
	}
	if err == nil && dual {
		if f := pc.inherited[underlay6FDName]; f != nil {
			delete(pc.inherited, underlay6FDName)
			p.conn6, err = listenOn(pc.local6, f, nil)
			f.Close()
			switch {
			case err == nil:
				log.Info("attached to the previous process's IPv6 underlay socket", "encap", cfg.encap)
			case errors.Is(err, overlay.ErrNotOurSocket) && !pc.strict:
				log.Warn("inherited IPv6 underlay socket ignored", "err", err)
				p.conn6, err = nil, nil
			default:
				err = fmt.Errorf("inherited IPv6 underlay socket: %w", err)
			}
		}
		if err == nil && p.conn6 == nil {
			p.conn6, err = listenOn(pc.local6, nil, nil)
		}
		if err == nil {
			p.dual, err = overlay.NewDual(p.conn, p.conn6)
		}
	}
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: meshcast needs root, or CAP_NET_RAW and CAP_NET_ADMIN", err)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, usagef("%v: another program (perhaps meshcast for another community) holds UDP port %d: pass --vxlan-port", err, cfg.vxlanPort)
		}
		return nil, err
	}

	tcfg := overlay.TAPConfig{Name: pc.tapName, Overlay: pc.self, Overlay6: pc.self6, MTU: pc.mtu, NoCoalesce: cfg.noOffload, Logger: log}
	if f := pc.inherited[tapFDName]; f != nil {
		// The TAP of the previous process: its address, routes and the
		// host's memberships are as they were.
		delete(pc.inherited, tapFDName)
		p.tap, err = overlay.AttachTAP(f, tcfg)
		switch {
		case err == nil:
			log.Info("attached to the previous process's TAP", "tap", pc.tapName)
		case errors.Is(err, overlay.ErrNotOurTAP) && !pc.strict:
			// Such as after --tap changed: create the configured one.
			log.Warn("inherited descriptor ignored", "err", err)
			p.tap = nil
		default:
			return nil, fmt.Errorf("inherited TAP descriptor: %w", err)
		}
	}
	if p.tap == nil {
		p.tap, err = overlay.OpenTAP(tcfg)
	}
	if err != nil {
		if errors.Is(err, overlay.ErrInterfaceExists) {
			return nil, interfaceExists(pc.tapName)
		}
		if errors.Is(err, overlay.ErrTAPBusy) {
			return nil, usagef("TAP %s is held by another process: stop it or pass --tap with another name", pc.tapName)
		}
		return nil, err
	}

	icfg := cfg.igmp
	icfg.Logger = log
	tap := p.tap
	p.snoop = &replicate.Snooping{
		Table: igmp.NewTable(icfg),
		Querier: igmp.NewQuerier(icfg, pc.self.Addr(), tap.MAC(), func(frame []byte) error {
			_, err := tap.Write(frame)
			return err
		}),
		Unregistered: cfg.unregistered,
	}
	p.eng, err = replicate.New(replicate.Config{Codec: pc.codec, LocalMAC: tap.MAC(), MTU: pc.mtu, Logger: log, Snoop: p.snoop,
		MaxFanout: cfg.maxFanout, RateLimit: cfg.rateLimit})
	if err != nil {
		return nil, err
	}
	p.snoop.Querier.SetAnnounce(p.eng.Announce)
	if pc.self6.IsValid() {
		// IPv6 is on for the TAP: query it with MLD too, from the
		// link-local address the kernel gave it (EUI-64 of its MAC).
		p.snoop.MLDQuerier = igmp.NewMLDQuerier(icfg, mld.LinkLocal(tap.MAC()), tap.MAC(), func(frame []byte) error {
			_, err := tap.Write(frame)
			return err
		})
		p.snoop.MLDQuerier.SetAnnounce(p.eng.Announce)
	}
	return p, nil
}

func (p *userPlane) setPeers(ps []replicate.PeerInfo) ([]netip.Addr, []netip.Addr, error) {
	return p.eng.SetPeers(ps)
}

func (p *userPlane) run(ctx context.Context) error { return p.eng.Run(ctx, p.tap, p.underlay()) }

func (p *userPlane) files() []control.File {
	files := []control.File{{Name: tapFDName, Conn: p.tap.SyscallConn()}}
	if p.conn6 != nil {
		files = append(files, control.File{Name: underlay6FDName, Conn: p.conn6.ReceiveConn()})
	}
	if ring := p.conn.ReceiveRingConn(); ring != nil {
		return append(files, control.File{Name: ringRawFDName, Conn: p.conn.ReceiveConn()}, control.File{Name: ringFDName, Conn: ring})
	}
	return append(files, control.File{Name: underlayFDName, Conn: p.conn.ReceiveConn()})
}

func (p *userPlane) export(now time.Time) planeState {
	// The engine is paused: leave in the GRE receive ring what it did not
	// read, for the successor or the next start.
	p.conn.Quiesce()
	t := p.snoop.Table.Export(now)
	q := p.snoop.Querier.Export(now)
	e := p.eng.Export(now)
	st := planeState{IGMP: &t, Querier: &q, Engine: &e}
	if mq := p.snoop.MLDQuerier; mq != nil {
		s := mq.Export(now)
		st.MLDQuerier = &s
	}
	return st
}

func (p *userPlane) restore(s planeState, now time.Time) error {
	var errs []error
	if s.IGMP != nil {
		if err := p.snoop.Table.Import(*s.IGMP, now); err != nil {
			errs = append(errs, fmt.Errorf("snooping table: %w", err))
		}
	}
	if s.Querier != nil {
		p.snoop.Querier.Import(*s.Querier, now)
	}
	if s.MLDQuerier != nil && p.snoop.MLDQuerier != nil {
		p.snoop.MLDQuerier.Import(*s.MLDQuerier, now)
	}
	if s.Engine != nil {
		if err := p.eng.Import(*s.Engine, now); err != nil {
			errs = append(errs, fmt.Errorf("engine: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (p *userPlane) release() {
	if p.tap != nil {
		p.tap.Close()
	}
	if p.dual != nil {
		p.dual.Close() // and both Conns
	}
	if p.conn != nil {
		p.conn.Close()
	}
	if p.conn6 != nil {
		p.conn6.Close()
	}
}

// close closes the TAP, which removes it unless another process (the
// service manager's store) holds it too.
func (p *userPlane) close() { p.release() }

// kernelPlane is the original design: a bridge with IGMP snooping and one
// isolated tunnel port per peer, driven through netlink. It forwards in
// the kernel, so pausing it is nothing and a successor adopts the bridge.
type kernelPlane struct {
	kern *overlay.Kernel
}

func (p *kernelPlane) setPeers(ps []replicate.PeerInfo) ([]netip.Addr, []netip.Addr, error) {
	kps := make([]overlay.KernelPeer, len(ps))
	for i, q := range ps {
		kps[i] = overlay.KernelPeer{Underlay: q.Underlay, Overlay: q.Overlay, ID: q.ID}
	}
	return p.kern.SetPeers(kps)
}

func (p *kernelPlane) run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (p *kernelPlane) files() []control.File               { return nil }
func (p *kernelPlane) export(time.Time) planeState         { return planeState{} }
func (p *kernelPlane) restore(planeState, time.Time) error { return nil }
func (p *kernelPlane) release()                            { p.kern.Release() }
func (p *kernelPlane) close()                              { p.kern.Close() }
