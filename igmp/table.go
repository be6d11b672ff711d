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
// timers, compatibility modes and the router ports learned from queries.
//
// Updates (Handle, HeardQuery, Expire, RemovePort) serialize on a mutex and
// take the time as an argument, so tests drive the clock. Lookup runs
// without allocation on an immutable per-group view and is safe for
// concurrent use with updates.
type Table struct {
	cfg  Config
	gmi  time.Duration
	lmqt time.Duration
	log  *slog.Logger

	mu      sync.Mutex
	groups  map[netip.Addr]map[Port]*membership
	perPort map[Port]int
	total   int
	routers map[Port]time.Time
	next    time.Time // no timer expires before this

	fwdMu   sync.RWMutex
	fwd     map[netip.Addr]*fwdEntry
	routerV atomic.Pointer[[]Port]

	refused [numTableRefusals]atomic.Uint64
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

var refusalNames = [numTableRefusals]string{
	refusedGlobalCap: "igmp_cap_global",
	refusedPortCap:   "igmp_cap_port",
	refusedSources:   "igmp_cap_sources",
	refusedRecord:    "igmp_record",
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
		routers: make(map[Port]time.Time),
		fwd:     make(map[netip.Addr]*fwdEntry),
	}
	t.routerV.Store(new([]Port))
	return t
}

// Config returns the table's configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// Refused returns the counts of reports and records the table refused, by
// reason name.
func (t *Table) Refused() map[string]uint64 {
	m := make(map[string]uint64, numTableRefusals)
	for r := tableRefusal(0); r < numTableRefusals; r++ {
		m[refusalNames[r]] = t.refused[r].Load()
	}
	return m
}

// Handle applies a report or leave that Parse accepted, received on port at
// now. Queries are not handled here (see HeardQuery). For the local port it
// returns the queries the local querier must send.
func (t *Table) Handle(port Port, m Message, now time.Time) []Query {
	t.mu.Lock()
	defer t.mu.Unlock()
	dirty := map[netip.Addr]bool{}
	var queries []Query
	apply := func(ver int, typ uint8, group netip.Addr, srcs []netip.Addr) {
		if !group.Is4() || !group.IsMulticast() || group.IsLinkLocalMulticast() {
			return // 224.0.0.0/24 always goes to every peer: no state
		}
		if qs, changed := t.apply(port, ver, typ, group, srcs, now); changed {
			dirty[group] = true
			if port == LocalPort {
				queries = append(queries, qs...)
			}
		}
	}
	switch m.Type() {
	case TypeV1Report:
		apply(1, ModeIsExclude, m.Group(), nil)
	case TypeV2Report:
		apply(2, ModeIsExclude, m.Group(), nil)
	case TypeV2Leave:
		apply(2, ChangeToInclude, m.Group(), nil)
	case TypeV3Report:
		it := m.Records()
		for r, ok := it.Next(); ok; r, ok = it.Next() {
			if !r.Known() {
				t.refused[refusedRecord].Add(1)
				continue
			}
			n := r.NumSources()
			if n > t.cfg.MaxSources {
				t.refused[refusedSources].Add(1)
				continue
			}
			var srcs []netip.Addr
			if n > 0 {
				srcs = make([]netip.Addr, n)
				for i := range srcs {
					srcs[i] = r.Source(i)
				}
			}
			apply(3, r.Type(), r.Group(), srcs)
		}
	}
	for g := range dirty {
		t.rebuildLocked(g)
	}
	return queries
}

// apply runs one record of the state machine of RFC 3376 section 6.4 on
// (port, group). It reports whether the state changed and the queries the
// router would send.
func (t *Table) apply(port Port, ver int, typ uint8, group netip.Addr, srcs []netip.Addr, now time.Time) ([]Query, bool) {
	ports := t.groups[group]
	m := ports[port]
	if m != nil {
		// Compatibility (section 7.3.2): with an older host present, v3
		// BLOCK is ignored, and TO_EX ignores its sources; with a v1 host,
		// v2 leaves and v3 TO_IN are ignored too.
		switch c := m.compat(now); {
		case ver == 3 && c < 3 && typ == BlockOldSources:
			return nil, false
		case ver == 3 && c < 3 && typ == ChangeToExclude:
			srcs = nil
		case ver >= 2 && typ == ChangeToInclude && c == 1:
			return nil, false
		}
	}
	if m == nil {
		switch typ {
		case ModeIsInclude, AllowNewSources, ChangeToInclude:
			if len(srcs) == 0 {
				return nil, false // INCLUDE {} is no state; a leave of nothing
			}
		case BlockOldSources:
			return nil, false
		}
		if t.total >= t.cfg.MaxGroups {
			t.refused[refusedGlobalCap].Add(1)
			return nil, false
		}
		if t.perPort[port] >= t.cfg.MaxGroupsPerPort {
			t.refused[refusedPortCap].Add(1)
			return nil, false
		}
		m = &membership{mode: ModeInclude, srcs: map[netip.Addr]*source{}}
		if ports == nil {
			ports = map[Port]*membership{}
			t.groups[group] = ports
		}
		ports[port] = m
		t.total++
		t.perPort[port]++
		t.log.Info("igmp: member joined", "group", group, "port", portName(port), "version", ver)
	}
	switch ver {
	case 1:
		m.v1Until = now.Add(t.gmi)
	case 2:
		if typ == ModeIsExclude {
			m.v2Until = now.Add(t.gmi)
		}
	}
	gmi := now.Add(t.gmi)
	var q []Query
	if m.mode == ModeInclude {
		switch typ {
		case ModeIsInclude, AllowNewSources:
			t.setTimers(m, srcs, gmi)
		case ModeIsExclude, ChangeToExclude:
			// EXCLUDE(A*B, B-A); (B-A)=0; Delete(A-B); GT=GMI
			in := setOf(srcs)
			for a := range m.srcs {
				if !in[a] {
					delete(m.srcs, a)
				}
			}
			var both []netip.Addr
			for _, b := range srcs {
				if s := m.srcs[b]; s != nil {
					both = append(both, b)
				} else {
					m.srcs[b] = &source{blocked: true}
				}
			}
			m.mode = ModeExclude
			m.timer = gmi
			if typ == ChangeToExclude && len(both) > 0 {
				t.lower(m, both, now)
				q = append(q, Query{Group: group, Sources: both})
			}
		case BlockOldSources:
			// INCLUDE(A); Send Q(G,A*B)
			var both []netip.Addr
			for _, b := range srcs {
				if m.srcs[b] != nil {
					both = append(both, b)
				}
			}
			if len(both) > 0 {
				t.lower(m, both, now)
				q = append(q, Query{Group: group, Sources: both})
			}
		case ChangeToInclude:
			// INCLUDE(A+B); (B)=GMI; Send Q(G,A-B)
			in := setOf(srcs)
			var rest []netip.Addr
			for a := range m.srcs {
				if !in[a] {
					rest = append(rest, a)
				}
			}
			t.setTimers(m, srcs, gmi)
			if len(rest) > 0 {
				slices.SortFunc(rest, netip.Addr.Compare)
				t.lower(m, rest, now)
				q = append(q, Query{Group: group, Sources: rest})
			}
		}
	} else {
		switch typ {
		case ModeIsInclude, AllowNewSources:
			// EXCLUDE(X+A, Y-A); (A)=GMI
			t.setTimers(m, srcs, gmi)
		case ModeIsExclude, ChangeToExclude:
			// EXCLUDE(A-Y, Y*A); (A-X-Y)=GMI (IS_EX) or GT (TO_EX);
			// Delete(X-A), Delete(Y-A); GT=GMI
			in := setOf(srcs)
			for a := range m.srcs {
				if !in[a] {
					delete(m.srcs, a)
				}
			}
			fresh := gmi
			if typ == ChangeToExclude {
				fresh = m.timer
			}
			var ask []netip.Addr // A-Y
			for _, a := range srcs {
				s := m.srcs[a]
				if s == nil {
					m.srcs[a] = &source{timer: fresh}
					ask = append(ask, a)
				} else if !s.blocked {
					ask = append(ask, a)
				}
			}
			m.timer = gmi
			if typ == ChangeToExclude && len(ask) > 0 {
				t.lower(m, ask, now)
				q = append(q, Query{Group: group, Sources: ask})
			}
		case BlockOldSources:
			// EXCLUDE(X+(A-Y), Y); (A-X-Y)=GT; Send Q(G,A-Y)
			var ask []netip.Addr
			for _, a := range srcs {
				s := m.srcs[a]
				if s == nil {
					m.srcs[a] = &source{timer: m.timer}
					ask = append(ask, a)
				} else if !s.blocked {
					ask = append(ask, a)
				}
			}
			if len(ask) > 0 {
				t.lower(m, ask, now)
				q = append(q, Query{Group: group, Sources: ask})
			}
		case ChangeToInclude:
			// EXCLUDE(X+A, Y-A); (A)=GMI; Send Q(G,X-A); Send Q(G)
			in := setOf(srcs)
			var rest []netip.Addr
			for a, s := range m.srcs {
				if !s.blocked && !in[a] {
					rest = append(rest, a)
				}
			}
			t.setTimers(m, srcs, gmi)
			if len(rest) > 0 {
				slices.SortFunc(rest, netip.Addr.Compare)
				t.lower(m, rest, now)
				q = append(q, Query{Group: group, Sources: rest})
			}
			if lm := now.Add(t.lmqt); m.timer.After(lm) {
				m.timer = lm
			}
			t.soon(m.timer)
			q = append(q, Query{Group: group})
		}
	}
	if len(m.srcs) > t.cfg.MaxSources {
		// Keep the bound: a membership that grew past it falls back to
		// EXCLUDE {} (every source), the safe superset.
		t.refused[refusedSources].Add(1)
		clear(m.srcs)
		m.mode = ModeExclude
		m.timer = gmi
	}
	t.soon(gmi)
	if m.mode == ModeInclude && len(m.srcs) == 0 {
		t.removeLocked(group, port, "no sources left")
	}
	return q, true
}

// setTimers adds srcs as forwarded sources with timer until.
func (t *Table) setTimers(m *membership, srcs []netip.Addr, until time.Time) {
	for _, a := range srcs {
		if s := m.srcs[a]; s != nil {
			s.blocked = false
			s.timer = until
		} else {
			m.srcs[a] = &source{timer: until}
		}
	}
}

// lower brings the timers of srcs down to the last member query time, as
// sending Q(G,S) does (section 6.6.3.2).
func (t *Table) lower(m *membership, srcs []netip.Addr, now time.Time) {
	lm := now.Add(t.lmqt)
	for _, a := range srcs {
		if s := m.srcs[a]; s != nil && !s.blocked && s.timer.After(lm) {
			s.timer = lm
		}
	}
	t.soon(lm)
}

func (t *Table) soon(at time.Time) {
	if at.IsZero() {
		return // no timer
	}
	if t.next.IsZero() || at.Before(t.next) {
		t.next = at
	}
}

func setOf(a []netip.Addr) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(a))
	for _, x := range a {
		m[x] = true
	}
	return m
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
	t.log.Info("igmp: member left", "group", group, "port", portName(port), "why", why)
}

func portName(p Port) string {
	if p == LocalPort {
		return "local"
	}
	return p.String()
}

// HeardQuery records a query received from a peer port with IPv4 source
// src: a source other than 0.0.0.0 makes the port a router port for the
// other querier present interval.
func (t *Table) HeardQuery(port Port, src netip.Addr, now time.Time) {
	if port == LocalPort || !src.IsValid() || src.IsUnspecified() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	until := now.Add(t.cfg.OQPI())
	_, had := t.routers[port]
	t.routers[port] = until
	t.soon(until)
	if !had {
		t.log.Info("igmp: router port learned", "port", port, "querier", src)
		t.publishRoutersLocked()
	}
}

func (t *Table) publishRoutersLocked() {
	list := make([]Port, 0, len(t.routers))
	for p := range t.routers {
		list = append(list, p)
	}
	slices.SortFunc(list, netip.Addr.Compare)
	t.routerV.Store(&list)
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
			t.rebuildLocked(group)
		}
	}
	routersChanged := false
	for p, until := range t.routers {
		if !until.After(now) {
			delete(t.routers, p)
			routersChanged = true
			t.log.Info("igmp: router port expired", "port", p)
		} else {
			t.soon(until)
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
			t.rebuildLocked(group)
		}
	}
	if _, ok := t.routers[port]; ok {
		delete(t.routers, port)
		t.publishRoutersLocked()
	}
}

// rebuildLocked publishes the forwarding view of one group.
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
// registered reports whether any peer port has state for the group; for an
// unregistered group dst holds only the router ports. It does not allocate
// when dst has room.
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
		registered = len(e.ports) > 0
	}
	n := len(dst)
	for _, r := range *t.routerV.Load() {
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
	Version int           // compatibility mode: 1, 2 or 3
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
