package igmp

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Port names where membership comes from: a peer, by its underlay address,
// or LocalPort, the node's own TAP.
type Port = netip.Addr

// LocalPort is the port of the local host behind the TAP.
var LocalPort = netip.Addr{}

// Config holds the protocol variables of RFC 3376 section 8 and the bounds
// of the table. Zero fields take the RFC defaults.
type Config struct {
	Robustness         int           // default 2
	QueryInterval      time.Duration // default 125s
	ResponseInterval   time.Duration // default 10s
	LastMemberInterval time.Duration // default 1s
	MaxGroups          int           // (port, group) memberships in all; default 16384
	MaxGroupsPerPort   int           // memberships of one port; default 2048
	MaxSources         int           // sources of one (port, group); default 256
	Logger             *slog.Logger  // default slog.Default()
}

func (c Config) withDefaults() Config {
	if c.Robustness <= 0 {
		c.Robustness = 2
	}
	if c.QueryInterval <= 0 {
		c.QueryInterval = 125 * time.Second
	}
	if c.ResponseInterval <= 0 {
		c.ResponseInterval = 10 * time.Second
	}
	if c.LastMemberInterval <= 0 {
		c.LastMemberInterval = time.Second
	}
	if c.MaxGroups <= 0 {
		c.MaxGroups = 16384
	}
	if c.MaxGroupsPerPort <= 0 {
		c.MaxGroupsPerPort = 2048
	}
	if c.MaxSources <= 0 {
		c.MaxSources = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// GMI is the Group Membership Interval: robustness × query interval +
// response interval (RFC 3376 section 8.4). It is also the Older Host
// Present Interval (section 8.13).
func (c Config) GMI() time.Duration {
	c = c.withDefaults()
	return time.Duration(c.Robustness)*c.QueryInterval + c.ResponseInterval
}

// LMQT is the Last Member Query Time: last member query count (the
// robustness) × last member interval (section 8.14).
func (c Config) LMQT() time.Duration {
	c = c.withDefaults()
	return time.Duration(c.Robustness) * c.LastMemberInterval
}

// OQPI is the Other Querier Present Interval: robustness × query interval +
// half the response interval (section 8.5).
func (c Config) OQPI() time.Duration {
	c = c.withDefaults()
	return time.Duration(c.Robustness)*c.QueryInterval + c.ResponseInterval/2
}

// Filter modes of a membership (RFC 3376 section 6.2.1).
const (
	ModeInclude = 1
	ModeExclude = 2
)

// source is one source of a membership. In INCLUDE mode every source is
// forwarded while its timer runs. In EXCLUDE mode the sources with blocked
// unset form the requested list X, and those with blocked set the exclusion
// list Y (section 6.2.3).
type source struct {
	timer   time.Time
	blocked bool
}

// membership is the router-side state of one group on one port.
type membership struct {
	mode    int
	timer   time.Time // group timer, meaningful in EXCLUDE mode
	srcs    map[netip.Addr]*source
	v1Until time.Time // older version host present timers (section 7.3.2)
	v2Until time.Time
}

func (m *membership) compat(now time.Time) int {
	switch {
	case m.v1Until.After(now):
		return 1
	case m.v2Until.After(now):
		return 2
	}
	return 3
}

// Query asks the querier of the local TAP to send a group-specific query,
// or with Sources a group-and-source-specific one, after the local host
// left a group or blocked sources.
type Query struct {
	Group   netip.Addr
	Sources []netip.Addr
}

// Table is the snooping table of RFC 4541: per port and group, the
// router-side INCLUDE/EXCLUDE state of RFC 3376 section 6.4, with its
// timers, compatibility modes and the router ports learned from queries,
// PIM Hellos and MRD advertisements (HeardRouter).
//
// Updates (Handle, HeardQuery, HeardRouter, Expire, RemovePort) serialize
// on a mutex and take the time as an argument, so tests drive the clock.
// Lookup runs without allocation on an immutable per-group view and is
// safe for concurrent use with updates.
type Table struct {
	cfg  Config
	gmi  time.Duration
	lmqt time.Duration
	log  *slog.Logger

	mu      sync.Mutex
	groups  map[netip.Addr]map[Port]*membership
	perPort map[Port]int
	total   int
	routers map[Port]*routerState // router ports, with how and until when each was learned
	next    time.Time             // no timer expires before this

	// Scratch space of Handle, reused under mu so that a report that
	// changes no forwarding state allocates nothing.
	recordSrcs []netip.Addr // the sources of the record being applied
	sorted     []netip.Addr // the same, sorted, for membership tests
	asked      []netip.Addr // the sources a row queries
	changed    []netip.Addr // the groups whose state changed

	// What Lookup reads. Only holders of mu write them; fwdMu guards fwd
	// against Lookup.
	fwdMu       sync.RWMutex
	fwd         map[netip.Addr]*fwdEntry
	routerPorts atomic.Pointer[[]Port] // the keys of routers, in port order

	refused [numFamilies][numTableRefusals]atomic.Uint64 // by family of the group
}

// Refusals counted by the table.
type tableRefusal uint8

const (
	refusedGlobalCap tableRefusal = iota
	refusedPortCap
	refusedSources
	refusedRecord
	numTableRefusals
)

// The families of groups: IPv4 groups are snooped by IGMP, IPv6 groups by
// MLD. The table counts its refusals per family.
const (
	famIPv4 = iota
	famIPv6
	numFamilies
)

var refusalNames = [numFamilies][numTableRefusals]string{
	famIPv4: {
		refusedGlobalCap: "igmp_cap_global",
		refusedPortCap:   "igmp_cap_port",
		refusedSources:   "igmp_cap_sources",
		refusedRecord:    "igmp_record",
	},
	famIPv6: {
		refusedGlobalCap: "mld_cap_global",
		refusedPortCap:   "mld_cap_port",
		refusedSources:   "mld_cap_sources",
		refusedRecord:    "mld_record",
	},
}

// routerAddr reports whether a can be a multicast router's address: an
// IPv4 address other than 0.0.0.0 (IGMP, PIM, MRD), or an IPv6 link-local
// unicast one (MLD).
func routerAddr(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() || a.Is6() && a.IsLinkLocalUnicast()
}

// logPrefix starts the log messages about a group of each family.
var logPrefix = [numFamilies]string{famIPv4: "igmp: ", famIPv6: "mld: "}

// family returns the family of a group.
func family(group netip.Addr) int {
	if group.Is4() {
		return famIPv4
	}
	return famIPv6
}

// Snooped reports whether group gets snooping state: an IPv4 multicast
// address outside 224.0.0.0/24, or an IPv6 multicast address (not an
// IPv4-mapped one) of a scope from realm-local (3) to global (14). The
// rest of multicast (224.0.0.0/24, and IPv6 interface-local, link-local
// (ff02::/16) and the reserved scopes 0 and 15) goes to every peer and is
// never a member of the table.
func Snooped(group netip.Addr) bool {
	switch {
	case group.Is4():
		return group.IsMulticast() && !group.IsLinkLocalMulticast()
	case group.Is6() && !group.Is4In6():
		if !group.IsMulticast() {
			return false
		}
		scope := group.As16()[1] & 0x0f
		return scope >= 3 && scope <= 14
	}
	return false
}

// fwdEntry is the immutable forwarding view of one group.
type fwdEntry struct {
	ports []fwdPort // peer ports with state, in port order
	local bool      // the local host is a member
}

type fwdPort struct {
	port    Port
	exclude bool
	srcs    []netip.Addr // INCLUDE: forwarded sources; EXCLUDE: blocked ones (sorted)
}

// NewTable returns an empty table.
func NewTable(cfg Config) *Table {
	cfg = cfg.withDefaults()
	t := &Table{
		cfg:     cfg,
		gmi:     cfg.GMI(),
		lmqt:    cfg.LMQT(),
		log:     cfg.Logger,
		groups:  make(map[netip.Addr]map[Port]*membership),
		perPort: make(map[Port]int),
		routers: make(map[Port]*routerState),
		fwd:     make(map[netip.Addr]*fwdEntry),
	}
	t.routerPorts.Store(new([]Port))
	return t
}

// Config returns the table's configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// Refused returns the counts of reports and records the table refused, by
// reason name.
func (t *Table) Refused() map[string]uint64 {
	m := make(map[string]uint64, numFamilies*numTableRefusals)
	for f := range numFamilies {
		for r := tableRefusal(0); r < numTableRefusals; r++ {
			m[refusalNames[f][r]] = t.refused[f][r].Load()
		}
	}
	return m
}

// Handle applies a report or leave that Parse accepted, received on port at
// now. Queries are not handled here (see HeardQuery). For the local port it
// appends to dst the queries the local querier must send, and returns dst
// (unchanged for other ports). dst is the caller's: the table keeps no
// reference to it, so a caller may reuse one buffer across calls (as
// dst[:0]). The Sources of each query appended are a fresh copy that the
// caller may keep (Querier.LastMember does).
//
// Handle allocates nothing for a message that changes no forwarding state
// (the periodic answer to a general query, which only refreshes timers),
// nor for a local leave whose query fits in dst; only a
// group-and-source-specific query allocates, for its Sources.
func (t *Table) Handle(port Port, m Message, now time.Time, dst []Query) []Query {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changed = t.changed[:0]
	switch m.Type() {
	case TypeV1Report:
		dst = t.handleRecord(port, 1, ModeIsExclude, m.Group(), nil, now, dst)
	case TypeV2Report:
		dst = t.handleRecord(port, 2, ModeIsExclude, m.Group(), nil, now, dst)
	case TypeV2Leave:
		dst = t.handleRecord(port, 2, ChangeToInclude, m.Group(), nil, now, dst)
	case TypeV3Report:
		for it := m.Records(); ; {
			r, ok := it.Next()
			if !ok {
				break
			}
			dst = handleV3Record(t, famIPv4, port, r, now, dst)
		}
	}
	t.publishChangedLocked()
	return dst
}

// v3Record is a group record of an IGMPv3 report (Record) or of an MLDv2
// report (mld.Record): they carry the same fields.
type v3Record interface {
	Type() uint8
	Known() bool
	Group() netip.Addr
	NumSources() int
	Source(i int) netip.Addr
}

// handleV3Record applies one IGMPv3 or MLDv2 record, counting it under fam
// when it is of an unknown type or names more than MaxSources sources. A
// type parameter, not an interface value, so that it allocates nothing.
func handleV3Record[R v3Record](t *Table, fam int, port Port, r R, now time.Time, dst []Query) []Query {
	switch n := r.NumSources(); {
	case !r.Known():
		t.refused[fam][refusedRecord].Add(1)
	case n > t.cfg.MaxSources:
		t.refused[fam][refusedSources].Add(1)
	default:
		t.recordSrcs = t.recordSrcs[:0]
		for i := range n {
			t.recordSrcs = append(t.recordSrcs, r.Source(i))
		}
		dst = t.handleRecord(port, 3, r.Type(), r.Group(), t.recordSrcs, now, dst)
	}
	return dst
}

// publishChangedLocked publishes the forwarding view of each group a
// message changed (t.changed).
func (t *Table) publishChangedLocked() {
	slices.SortFunc(t.changed, netip.Addr.Compare)
	for _, g := range slices.Compact(t.changed) {
		t.publishLocked(g)
	}
}

// handleRecord applies one record of a message to (port, group), notes the
// group when its state changed, and appends to queries those the local
// querier must send. Groups that are not Snooped (224.0.0.0/24, ff02::/16)
// always go to every peer: they get no state.
func (t *Table) handleRecord(port Port, ver int, typ uint8, group netip.Addr, srcs []netip.Addr, now time.Time, queries []Query) []Query {
	if !Snooped(group) {
		return queries
	}
	queries, changed := t.apply(port, ver, typ, group, srcs, now, queries)
	if changed {
		t.changed = append(t.changed, group)
	}
	return queries
}

func (t *Table) soon(at time.Time) {
	if at.IsZero() {
		return // no timer
	}
	if t.next.IsZero() || at.Before(t.next) {
		t.next = at
	}
}

func (t *Table) removeLocked(group netip.Addr, port Port, why string) {
	ports := t.groups[group]
	if _, ok := ports[port]; !ok {
		return
	}
	delete(ports, port)
	if len(ports) == 0 {
		delete(t.groups, group)
	}
	t.total--
	if t.perPort[port]--; t.perPort[port] <= 0 {
		delete(t.perPort, port)
	}
	t.log.Info(logPrefix[family(group)]+"member left", "group", group, "port", portName(port), "why", why)
}

func portName(p Port) string {
	if p == LocalPort {
		return "local"
	}
	return p.String()
}

// routerState is one router port: per way it was learned, until when
// (the zero Time where it was not learned that way), and the address of
// the router heard last.
type routerState struct {
	until [NumRouterSources]time.Time
	addr  netip.Addr
}

func (r *routerState) expires() time.Time {
	var last time.Time
	for _, u := range r.until {
		if u.After(last) {
			last = u
		}
	}
	return last
}

// HeardQuery records a query received from a peer port with source src,
// IGMP's IPv4 or MLD's IPv6 (link-local) one: a source other than 0.0.0.0
// and :: makes the port a router port for the other querier present
// interval. A router port gets the traffic of every group, of both
// families.
func (t *Table) HeardQuery(port Port, src netip.Addr, now time.Time) {
	t.HeardRouter(port, src, RouterQuery, t.cfg.OQPI(), now)
}

// HeardRouter records a multicast router with address src heard on a peer
// port, learned the way how says: the port is a router port for hold from
// now (the other querier present interval for a query, a PIM Hello's
// holdtime, an MRD advertisement's neighbor dead interval), or for as long
// as another way keeps it one. A hold of zero or less forgets what that
// way taught at once (a PIM Hello with holdtime 0, an MRD termination). A
// src that is neither an IPv4 address other than 0.0.0.0 nor an IPv6
// link-local one (RFC 3810 section 5.1.14) is ignored, and so is the local
// port. For a port already known it allocates nothing.
func (t *Table) HeardRouter(port Port, src netip.Addr, how RouterSource, hold time.Duration, now time.Time) {
	if port == LocalPort || !routerAddr(src) || how >= NumRouterSources {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.routers[port]
	if hold <= 0 {
		if r == nil || r.until[how].IsZero() {
			return
		}
		r.until[how] = time.Time{}
		if r.expires().IsZero() {
			delete(t.routers, port)
			t.log.Info("igmp: router port gone", "port", port, "router", src, "learned", how.String())
			t.publishRoutersLocked()
		}
		return
	}
	until := now.Add(hold) // saturates for HoldForever
	if r == nil {
		r = &routerState{}
		t.routers[port] = r
		t.log.Info("igmp: router port learned", "port", port, "router", src, "learned", how.String())
		defer t.publishRoutersLocked()
	} else if r.until[how].IsZero() {
		t.log.Info("igmp: router port confirmed", "port", port, "router", src, "learned", how.String())
	}
	r.until[how] = until
	r.addr = src
	t.soon(until)
}

// HasRouters reports whether any peer port is a router port. It takes no
// lock and allocates nothing.
func (t *Table) HasRouters() bool { return len(*t.routerPorts.Load()) > 0 }

// RouterState is one router port of Routers.
type RouterState struct {
	Port    Port
	Router  netip.Addr     // the address of the router heard last
	Learned []RouterSource // the ways it is learned now, in order
	Expires time.Duration  // until the last of them lapses
}

// Routers returns the router ports at now, in port order, with how each
// was learned.
func (t *Table) Routers(now time.Time) []RouterState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]RouterState, 0, len(t.routers))
	for p, r := range t.routers {
		rs := RouterState{Port: p, Router: r.addr}
		for how, u := range r.until {
			if u.After(now) {
				rs.Learned = append(rs.Learned, RouterSource(how))
			}
		}
		if d := r.expires().Sub(now); d > 0 {
			rs.Expires = d
		}
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b RouterState) int { return a.Port.Compare(b.Port) })
	return out
}

func (t *Table) publishRoutersLocked() {
	list := make([]Port, 0, len(t.routers))
	for p := range t.routers {
		list = append(list, p)
	}
	slices.SortFunc(list, netip.Addr.Compare)
	t.routerPorts.Store(&list)
}

// Expire runs the timers up to now: source timers, group timers with the
// EXCLUDE to INCLUDE fallback of section 6.5, and router ports. It is cheap
// when no timer is due.
func (t *Table) Expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.next.IsZero() && now.Before(t.next) {
		return
	}
	t.next = time.Time{}
	for group, ports := range t.groups {
		changed := false
		for port, m := range ports {
			if t.expireLocked(group, port, m, now) {
				changed = true
			}
		}
		if changed {
			t.publishLocked(group)
		}
	}
	routersChanged := false
	for p, r := range t.routers {
		for how, u := range r.until {
			if !u.IsZero() && !u.After(now) {
				r.until[how] = time.Time{}
			}
		}
		if until := r.expires(); until.IsZero() {
			delete(t.routers, p)
			routersChanged = true
			t.log.Info("igmp: router port expired", "port", p, "router", r.addr)
		} else {
			for _, u := range r.until {
				t.soon(u)
			}
		}
	}
	if routersChanged {
		t.publishRoutersLocked()
	}
}

func (t *Table) expireLocked(group netip.Addr, port Port, m *membership, now time.Time) bool {
	changed := false
	if m.mode == ModeExclude && !m.timer.After(now) {
		// Group timer expired: INCLUDE with the sources whose timers
		// still run; Y is forgotten.
		m.mode = ModeInclude
		for a, s := range m.srcs {
			if s.blocked || !s.timer.After(now) {
				delete(m.srcs, a)
			}
		}
		changed = true
	}
	for a, s := range m.srcs {
		if s.blocked || s.timer.After(now) {
			if !s.blocked {
				t.soon(s.timer)
			}
			continue
		}
		if m.mode == ModeInclude {
			delete(m.srcs, a)
		} else {
			s.blocked = true // EXCLUDE: an expired requested source is blocked
		}
		changed = true
	}
	if m.mode == ModeInclude && len(m.srcs) == 0 {
		t.removeLocked(group, port, "membership timer expired")
		return true
	}
	if m.mode == ModeExclude {
		t.soon(m.timer)
	}
	for _, until := range [...]time.Time{m.v1Until, m.v2Until} {
		if until.After(now) {
			t.soon(until)
		}
	}
	return changed
}

// RemovePort forgets everything learned on port: a peer that left the
// community loses its state at once.
func (t *Table) RemovePort(port Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for group, ports := range t.groups {
		if _, ok := ports[port]; ok {
			t.removeLocked(group, port, "peer removed")
			t.publishLocked(group)
		}
	}
	if _, ok := t.routers[port]; ok {
		delete(t.routers, port)
		t.publishRoutersLocked()
	}
}

// publishLocked publishes the forwarding view of one group, unless the view
// published already matches its state: a report that only refreshed timers
// publishes nothing and allocates nothing.
func (t *Table) publishLocked(group netip.Addr) {
	// Reading fwd without fwdMu is safe: only holders of mu write it.
	if !t.fwd[group].matches(t.groups[group]) {
		t.rebuildLocked(group)
	}
}

// matches reports whether e, the published view of a group (nil for none),
// forwards as the state ports of the group does.
func (e *fwdEntry) matches(ports map[Port]*membership) bool {
	if e == nil || len(ports) == 0 {
		return e == nil && len(ports) == 0
	}
	if _, local := ports[LocalPort]; local != e.local {
		return false
	}
	peers := 0
	for port, m := range ports {
		if port == LocalPort {
			continue
		}
		peers++
		i, ok := slices.BinarySearchFunc(e.ports, port, func(p fwdPort, port Port) int { return p.port.Compare(port) })
		if !ok {
			return false
		}
		fp := &e.ports[i]
		if fp.exclude != (m.mode == ModeExclude) {
			return false
		}
		n := 0
		for a, s := range m.srcs {
			if s.blocked == fp.exclude {
				if !contains(fp.srcs, a) {
					return false
				}
				n++
			}
		}
		if n != len(fp.srcs) {
			return false
		}
	}
	return peers == len(e.ports)
}

// rebuildLocked publishes a new forwarding view of one group.
func (t *Table) rebuildLocked(group netip.Addr) {
	ports := t.groups[group]
	if len(ports) == 0 {
		t.fwdMu.Lock()
		delete(t.fwd, group)
		t.fwdMu.Unlock()
		return
	}
	e := &fwdEntry{}
	for port, m := range ports {
		if port == LocalPort {
			e.local = true
			continue
		}
		fp := fwdPort{port: port, exclude: m.mode == ModeExclude}
		for a, s := range m.srcs {
			if s.blocked == fp.exclude {
				fp.srcs = append(fp.srcs, a)
			}
		}
		slices.SortFunc(fp.srcs, netip.Addr.Compare)
		e.ports = append(e.ports, fp)
	}
	slices.SortFunc(e.ports, func(a, b fwdPort) int { return a.port.Compare(b.port) })
	t.fwdMu.Lock()
	t.fwd[group] = e
	t.fwdMu.Unlock()
}

// Lookup appends to dst the peer ports that get a copy of traffic from src
// to group: member ports whose source filter passes src, then router ports.
// registered reports whether any port, the local port included, has state
// for the group: RFC 4541 section 2.1.2 calls a group registered once any
// host on any port has reported it, so a group only this node's own host
// joined is registered and its traffic goes to the router ports alone, not
// flooded. For an unregistered group dst holds only the router ports. It
// does not allocate when dst has room.
func (t *Table) Lookup(group, src netip.Addr, dst []Port) (out []Port, registered bool) {
	t.fwdMu.RLock()
	e := t.fwd[group]
	t.fwdMu.RUnlock()
	if e != nil {
		for i := range e.ports {
			p := &e.ports[i]
			_, found := slices.BinarySearchFunc(p.srcs, src, netip.Addr.Compare)
			if found != p.exclude {
				dst = append(dst, p.port)
			}
		}
		registered = len(e.ports) > 0 || e.local
	}
	n := len(dst)
	for _, r := range *t.routerPorts.Load() {
		if !slices.Contains(dst[:n], r) {
			dst = append(dst, r)
		}
	}
	return dst, registered
}

// GroupState is one group of a Snapshot.
type GroupState struct {
	Group netip.Addr
	Local bool        // the local host is a member
	Ports []PortState // peer ports with state, in port order
}

// PortState is the state of one group on one port.
type PortState struct {
	Port    Port
	Mode    string        // "include" or "exclude"
	Version int           // compatibility mode: IGMP 1, 2 or 3 for an IPv4 group, MLD 1 or 2 for an IPv6 one
	Expires time.Duration // group timer (EXCLUDE) or longest source timer (INCLUDE)
	Sources []netip.Addr  // INCLUDE: forwarded; EXCLUDE: requested (X)
	Blocked []netip.Addr  // EXCLUDE: blocked (Y)
}

// Snapshot returns the table's state at now, groups in address order.
func (t *Table) Snapshot(now time.Time) (groups []GroupState, routers []Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for group, ports := range t.groups {
		g := GroupState{Group: group}
		for port, m := range ports {
			if port == LocalPort {
				g.Local = true
			}
			ps := PortState{Port: port, Mode: "include", Version: m.compat(now)}
			if group.Is6() {
				ps.Version-- // MLDv1 is held as IGMPv2, MLDv2 as IGMPv3
			}
			var until time.Time
			if m.mode == ModeExclude {
				ps.Mode = "exclude"
				until = m.timer
			}
			for a, s := range m.srcs {
				if s.blocked {
					ps.Blocked = append(ps.Blocked, a)
					continue
				}
				ps.Sources = append(ps.Sources, a)
				if m.mode == ModeInclude && s.timer.After(until) {
					until = s.timer
				}
			}
			slices.SortFunc(ps.Sources, netip.Addr.Compare)
			slices.SortFunc(ps.Blocked, netip.Addr.Compare)
			if d := until.Sub(now); d > 0 {
				ps.Expires = d
			}
			g.Ports = append(g.Ports, ps) // the local port sorts first, as the zero address
		}
		slices.SortFunc(g.Ports, func(a, b PortState) int { return a.Port.Compare(b.Port) })
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b GroupState) int { return a.Group.Compare(b.Group) })
	for p := range t.routers {
		routers = append(routers, p)
	}
	slices.SortFunc(routers, netip.Addr.Compare)
	return groups, routers
}
