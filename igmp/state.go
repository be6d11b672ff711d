package igmp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// State handover. A daemon that hands over to its successor (an upgrade
// passes the state as JSON over a Unix socket; a restart under systemd
// reads it back from a file) exports its Table and Querier, and the next
// process imports them before it forwards or queries: members keep their
// traffic and the TAP gets no second round of startup queries.
//
// Every deadline is an absolute wall-clock time, so it means the same in
// the next process. Import runs the timers up to its own now as Expire
// would: what lapsed in between is gone, and the forwarding view equals
// the exporter's after Expire at that time.

// TableState is what a Table holds that forwarding depends on, as Export
// writes it and Import reads it.
type TableState struct {
	// Memberships are the (group, port) states, in group then port order
	// (the local port first).
	Memberships []MembershipState `json:"memberships"`
	// Routers are the router ports, in port order.
	Routers []RouterPortState `json:"routers"`
	// MembershipsIPv6 and RoutersIPv6 are the IPv6 groups' memberships
	// (MLD) and the router ports whose router was heard last over IPv6,
	// in the same orders. They are kept apart from the IPv4 ones so that
	// a meshcast without MLD, which ignores these keys, still takes the
	// IPv4 state after a downgrade rather than refusing all of it.
	MembershipsIPv6 []MembershipState `json:"memberships_ipv6,omitempty"`
	RoutersIPv6     []RouterPortState `json:"routers_ipv6,omitempty"`
	// Refused are the table's refusal counters by name, as Refused returns
	// them, so that the counts go on from where they were.
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// MembershipState is the router-side state of one group on one port (RFC
// 3376 section 6.4).
type MembershipState struct {
	Group netip.Addr `json:"group"`
	// Port is a peer's underlay address, or LocalPort, the zero Addr,
	// which JSON writes as "".
	Port Port `json:"port"`
	// Mode is "include" or "exclude".
	Mode string `json:"mode"`
	// Version is the compatibility mode (section 7.3.2): 1 while V1Until
	// is set, else 2 while V2Until is set, else 3. An IPv6 group (MLD) is
	// held as IGMP's modes 2 (an MLDv1 listener present, in V2Until) and
	// 3 (MLDv2), and never has V1Until.
	Version int `json:"version"`
	// V1Until and V2Until are the older version host present timers: an
	// IGMPv1 or IGMPv2 host was heard on the port until then. Unset when
	// none was heard within the interval.
	V1Until time.Time `json:"v1_host_until,omitzero"`
	V2Until time.Time `json:"v2_host_until,omitzero"`
	// GroupTimer is the group timer, set in EXCLUDE mode only.
	GroupTimer time.Time `json:"group_timer,omitzero"`
	// Sources are the sources, in address order: in INCLUDE mode those
	// forwarded; in EXCLUDE mode the requested ones (X) and the blocked
	// ones (Y).
	Sources []SourceState `json:"sources,omitempty"`
}

// SourceState is one source of a MembershipState.
type SourceState struct {
	Addr netip.Addr `json:"addr"`
	// Until is the source timer; a blocked source has none.
	Until time.Time `json:"until,omitzero"`
	// Blocked marks a source of EXCLUDE mode's exclusion list Y.
	Blocked bool `json:"blocked,omitempty"`
}

// RouterPortState is one router port.
type RouterPortState struct {
	Port Port `json:"port"`
	// Router is the address of the router heard last.
	Router netip.Addr `json:"router"`
	// Learned holds, per way the port was learned ("query", "pim" or
	// "mrd", as RouterSource.String names them), until when that way
	// keeps it a router port.
	Learned map[string]time.Time `json:"learned"`
}

// Mode names of MembershipState, as in PortState.
const (
	modeInclude = "include"
	modeExclude = "exclude"
)

// maxMRDHold is the longest hold an MRD advertisement gives: 3 × the
// largest Advertisement Interval, 255 s (RFC 4286 section 3.1.5).
const maxMRDHold = 3 * 255 * time.Second

// wall returns t without its monotonic clock reading: a deadline that
// means the same in another process.
func wall(t time.Time) time.Time { return t.Round(0) }

// unicastOf reports whether a can be the source of traffic forwarded to
// group: an address of the group's family that is neither multicast,
// unspecified, nor (IPv4) 255.255.255.255, nor (IPv6) IPv4-mapped.
func unicastOf(group, a netip.Addr) bool {
	if group.Is4() {
		return a.Is4() && !a.IsMulticast() && !a.IsUnspecified() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return a.Is6() && !a.Is4In6() && !a.IsMulticast() && !a.IsUnspecified()
}

// Export returns the table's state at now for Import in another process.
// Deadlines that passed at now but that Expire has not run yet are
// exported as they are; Import drops them. A source that no traffic can
// come from (one that is not unicast IPv4, which a report may name) is left
// out. Export is meant for a table no longer updated, but it is safe to
// call concurrently with updates.
func (t *Table) Export(now time.Time) TableState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TableState{
		Memberships: make([]MembershipState, 0, t.total),
		Routers:     make([]RouterPortState, 0, len(t.routers)),
		Refused:     t.Refused(),
	}
	for group, ports := range t.groups {
		for port, m := range ports {
			if ms, ok := exportMembership(group, port, m, now); ok {
				if group.Is4() {
					s.Memberships = append(s.Memberships, ms)
				} else {
					s.MembershipsIPv6 = append(s.MembershipsIPv6, ms)
				}
			}
		}
	}
	slices.SortFunc(s.Memberships, compareMembership)
	slices.SortFunc(s.MembershipsIPv6, compareMembership)
	for port, r := range t.routers {
		rs := RouterPortState{Port: port, Router: r.addr, Learned: make(map[string]time.Time, NumRouterSources)}
		for how, until := range r.until {
			if !until.IsZero() {
				rs.Learned[RouterSource(how).String()] = wall(until)
			}
		}
		switch {
		case len(rs.Learned) == 0:
		case rs.Router.Is4():
			s.Routers = append(s.Routers, rs)
		default:
			s.RoutersIPv6 = append(s.RoutersIPv6, rs)
		}
	}
	byPort := func(a, b RouterPortState) int { return a.Port.Compare(b.Port) }
	slices.SortFunc(s.Routers, byPort)
	slices.SortFunc(s.RoutersIPv6, byPort)
	return s
}

func compareMembership(a, b MembershipState) int {
	if c := a.Group.Compare(b.Group); c != 0 {
		return c
	}
	return a.Port.Compare(b.Port)
}

func exportMembership(group netip.Addr, port Port, m *membership, now time.Time) (MembershipState, bool) {
	ms := MembershipState{Group: group, Port: port, Mode: modeInclude, Version: m.compat(now)}
	if m.v1Until.After(now) {
		ms.V1Until = wall(m.v1Until)
	}
	if m.v2Until.After(now) {
		ms.V2Until = wall(m.v2Until)
	}
	exclude := m.mode == ModeExclude
	if exclude {
		ms.Mode = modeExclude
		ms.GroupTimer = wall(m.timer)
	}
	ms.Sources = make([]SourceState, 0, len(m.srcs))
	for a, src := range m.srcs {
		switch {
		case !unicastOf(group, a):
		case src.blocked && exclude:
			ms.Sources = append(ms.Sources, SourceState{Addr: a, Blocked: true})
		case !src.blocked:
			ms.Sources = append(ms.Sources, SourceState{Addr: a, Until: wall(src.timer)})
		}
	}
	if !exclude && len(ms.Sources) == 0 {
		return ms, false // INCLUDE {} is no state
	}
	slices.SortFunc(ms.Sources, func(a, b SourceState) int { return a.Addr.Compare(b.Addr) })
	return ms, true
}

// Import loads s, which Export wrote, into t at now. t must be fresh: a
// table that holds any membership or router port refuses with an error.
//
// It validates all of s before it changes anything, and a malformed s
// (a group that is not an IPv4 multicast group outside 224.0.0.0/24, a
// source that is not unicast IPv4, an unknown mode, router way or version,
// a version the older host timers contradict, a missing deadline, a
// duplicate) leaves t as it was and returns an error naming the entry and
// what is wrong. Otherwise it runs the timers up to now as Expire does
// (what lapsed is dropped; an EXCLUDE membership whose group timer lapsed
// falls back to INCLUDE), bounds every deadline by what this table's
// configuration could have set at now (GMI for memberships, the other
// querier present interval and 765 s for router ports learned by query and
// MRD), and applies t's caps as Handle does: a membership over the global
// or per-port cap is refused and counted, one with more sources than
// MaxSources becomes EXCLUDE {} and is counted. The refusal counters of s
// are added to t's. Then it publishes the forwarding view, so that Lookup,
// HasRouters and Snapshot answer as the exporter's table would have.
func (t *Table) Import(s TableState, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.groups) > 0 || len(t.routers) > 0 {
		return errors.New("igmp: import: the table has state already")
	}
	// One list of each, IPv6 after IPv4: the indexes in errors count in
	// it.
	s.Memberships = slices.Concat(s.Memberships, s.MembershipsIPv6)
	s.Routers = slices.Concat(s.Routers, s.RoutersIPv6)
	if err := t.validateLocked(&s); err != nil {
		return err
	}
	var refused [numFamilies][numTableRefusals]uint64
	for i := range s.Memberships {
		t.importMembershipLocked(&s.Memberships[i], now, &refused)
	}
	for i := range s.Routers {
		t.importRouterLocked(&s.Routers[i], now)
	}
	capped := uint64(0)
	for f := range numFamilies {
		for r := range numTableRefusals {
			t.refused[f][r].Add(refused[f][r] + s.Refused[refusalNames[f][r]])
		}
		capped += refused[f][refusedGlobalCap] + refused[f][refusedPortCap] + refused[f][refusedSources]
	}
	for group := range t.groups {
		t.rebuildLocked(group)
	}
	if len(t.routers) > 0 {
		t.publishRoutersLocked()
	}
	t.log.Info("igmp: state imported", "memberships", t.total, "router_ports", len(t.routers),
		"refused", capped)
	return nil
}

// validateLocked checks all of s. It changes nothing but the table's
// scratch.
func (t *Table) validateLocked(s *TableState) error {
	for i := range s.Memberships {
		ms := &s.Memberships[i]
		if why := t.checkMembership(ms); why != "" {
			return fmt.Errorf("igmp: import: membership %d (group %v, port %s): %s", i, ms.Group, portName(ms.Port), why)
		}
	}
	if i, ok := duplicateMembership(s.Memberships); ok {
		ms := &s.Memberships[i]
		return fmt.Errorf("igmp: import: membership %d (group %v, port %s): appears twice", i, ms.Group, portName(ms.Port))
	}
	for i := range s.Routers {
		rs := &s.Routers[i]
		if why := checkRouter(rs); why != "" {
			return fmt.Errorf("igmp: import: router port %d (%s): %s", i, portName(rs.Port), why)
		}
	}
	if i, ok := duplicateRouter(s.Routers); ok {
		return fmt.Errorf("igmp: import: router port %d (%s): appears twice", i, portName(s.Routers[i].Port))
	}
	return nil
}

// checkMembership returns what is wrong with ms, or "".
func (t *Table) checkMembership(ms *MembershipState) string {
	switch {
	case !ms.Group.IsMulticast():
		return "the group is not a multicast address"
	case !Snooped(ms.Group):
		return "the group is in 224.0.0.0/24 or of an IPv6 scope that has no state"
	case ms.Group.Is6() && (ms.Version < 2 || !ms.V1Until.IsZero()):
		return "an IPv6 group with IGMPv1 state"
	case ms.Port != LocalPort && ms.Port.IsUnspecified():
		return `the port is unspecified (the local port is "")`
	case ms.Mode != modeInclude && ms.Mode != modeExclude:
		return fmt.Sprintf("mode %q unknown (want include or exclude)", ms.Mode)
	case ms.Version < 1 || ms.Version > 3:
		return fmt.Sprintf("version %d (want 1, 2 or 3)", ms.Version)
	case ms.Mode == modeExclude && ms.GroupTimer.IsZero():
		return "exclude mode without a group timer"
	}
	want := 3
	if !ms.V2Until.IsZero() {
		want = 2
	}
	if !ms.V1Until.IsZero() {
		want = 1
	}
	if ms.Version != want {
		return fmt.Sprintf("version %d, but the older host timers say %d", ms.Version, want)
	}
	sorted := true
	for j := range ms.Sources {
		src := &ms.Sources[j]
		switch {
		case !unicastOf(ms.Group, src.Addr):
			return fmt.Sprintf("source %v is not a unicast address of the group's family", src.Addr)
		case src.Blocked && ms.Mode == modeInclude:
			return fmt.Sprintf("source %v is blocked in include mode", src.Addr)
		case !src.Blocked && src.Until.IsZero():
			return fmt.Sprintf("source %v has no timer", src.Addr)
		}
		if j > 0 {
			switch c := ms.Sources[j-1].Addr.Compare(src.Addr); {
			case c == 0:
				return fmt.Sprintf("source %v appears twice", src.Addr)
			case c > 0:
				sorted = false
			}
		}
	}
	if !sorted {
		// Out of order (Export writes them sorted): look for a
		// duplicate in the table's scratch.
		t.sorted = t.sorted[:0]
		for j := range ms.Sources {
			t.sorted = append(t.sorted, ms.Sources[j].Addr)
		}
		slices.SortFunc(t.sorted, netip.Addr.Compare)
		for j := 1; j < len(t.sorted); j++ {
			if t.sorted[j-1] == t.sorted[j] {
				return fmt.Sprintf("source %v appears twice", t.sorted[j])
			}
		}
	}
	return ""
}

// duplicateMembership returns the index of a membership whose (group,
// port) an earlier one has. It allocates only when the memberships are out
// of order.
func duplicateMembership(ms []MembershipState) (int, bool) {
	sorted := true
	for i := 1; i < len(ms); i++ {
		switch c := compareMembership(ms[i-1], ms[i]); {
		case c == 0:
			return i, true
		case c > 0:
			sorted = false
		}
	}
	if sorted {
		return 0, false
	}
	type key struct {
		group netip.Addr
		port  Port
		i     int
	}
	keys := make([]key, len(ms))
	for i := range ms {
		keys[i] = key{ms[i].Group, ms[i].Port, i}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := a.group.Compare(b.group); c != 0 {
			return c
		}
		if c := a.port.Compare(b.port); c != 0 {
			return c
		}
		return a.i - b.i
	})
	for i := 1; i < len(keys); i++ {
		if keys[i-1].group == keys[i].group && keys[i-1].port == keys[i].port {
			return keys[i].i, true
		}
	}
	return 0, false
}

// checkRouter returns what is wrong with rs, or "".
func checkRouter(rs *RouterPortState) string {
	switch {
	case rs.Port == LocalPort:
		return "the local port is never a router port"
	case rs.Port.IsUnspecified():
		return "the port is unspecified"
	case !routerAddr(rs.Router):
		return fmt.Sprintf("router address %v is not an IPv4 address other than 0.0.0.0 nor an IPv6 link-local one", rs.Router)
	case len(rs.Learned) == 0:
		return "learned no way"
	}
	for name, until := range rs.Learned {
		if _, ok := routerSourceByName(name); !ok {
			return fmt.Sprintf("way %q unknown (want query, pim or mrd)", name)
		}
		if until.IsZero() {
			return fmt.Sprintf("way %s without a deadline", name)
		}
	}
	return ""
}

func routerSourceByName(name string) (RouterSource, bool) {
	for how, n := range routerSourceNames {
		if n == name {
			return RouterSource(how), true
		}
	}
	return 0, false
}

// duplicateRouter returns the index of a router port an earlier one has.
func duplicateRouter(rs []RouterPortState) (int, bool) {
	sorted := true
	for i := 1; i < len(rs); i++ {
		switch c := rs[i-1].Port.Compare(rs[i].Port); {
		case c == 0:
			return i, true
		case c > 0:
			sorted = false
		}
	}
	if sorted {
		return 0, false
	}
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := rs[a].Port.Compare(rs[b].Port); c != 0 {
			return c
		}
		return a - b
	})
	for i := 1; i < len(idx); i++ {
		if rs[idx[i-1]].Port == rs[idx[i]].Port {
			return idx[i], true
		}
	}
	return 0, false
}

// importMembershipLocked adds one validated membership as it stands at now,
// the way expireLocked would leave it, unless nothing of it is left or a
// cap refuses it (counted in refused). It allocates the membership, its
// source map and one array of its sources, and nothing for what it skips.
func (t *Table) importMembershipLocked(ms *MembershipState, now time.Time, refusedAll *[numFamilies][numTableRefusals]uint64) {
	refused := &refusedAll[family(ms.Group)]
	limit := now.Add(t.gmi) // no timer of this table runs longer
	// exclude: the membership stays in EXCLUDE mode. One whose group
	// timer lapsed falls back to INCLUDE with its running requested
	// sources, and the blocked ones are forgotten (section 6.5).
	exclude := ms.Mode == modeExclude && ms.GroupTimer.After(now)
	kept := func(src *SourceState) bool {
		return exclude || !src.Blocked && src.Until.After(now)
	}
	n := 0
	var last time.Time // the latest running source timer
	for j := range ms.Sources {
		if src := &ms.Sources[j]; kept(src) {
			n++
			if !src.Blocked && src.Until.After(last) {
				last = src.Until
			}
		}
	}
	if !exclude && n == 0 {
		return // INCLUDE {}: no state
	}
	if t.total >= t.cfg.MaxGroups {
		refused[refusedGlobalCap]++
		return
	}
	if t.perPort[ms.Port] >= t.cfg.MaxGroupsPerPort {
		refused[refusedPortCap]++
		return
	}

	m := &membership{mode: ModeInclude}
	if ms.V1Until.After(now) {
		m.v1Until = earliest(ms.V1Until, limit)
	}
	if ms.V2Until.After(now) {
		m.v2Until = earliest(ms.V2Until, limit)
	}
	if exclude {
		m.mode = ModeExclude
		m.timer = earliest(ms.GroupTimer, limit)
	}
	if n > t.cfg.MaxSources {
		// As a report that grows a membership past the bound: EXCLUDE {},
		// every source, until the state would have lapsed.
		refused[refusedSources]++
		if !exclude {
			m.mode = ModeExclude
			m.timer = earliest(last, limit)
		}
		n = 0
	}
	m.srcs = make(map[netip.Addr]*source, n)
	if n > 0 {
		all := make([]source, 0, n)
		for j := range ms.Sources {
			src := &ms.Sources[j]
			if !kept(src) {
				continue
			}
			s := source{blocked: true} // a blocked source, or a requested one whose timer lapsed (expireLocked)
			if !src.Blocked && src.Until.After(now) {
				s = source{timer: earliest(src.Until, limit)}
				t.soon(s.timer)
			}
			all = append(all, s)
			m.srcs[src.Addr] = &all[len(all)-1]
		}
	}
	if m.mode == ModeExclude {
		t.soon(m.timer)
	}
	t.soon(m.v1Until)
	t.soon(m.v2Until)

	ports := t.groups[ms.Group]
	if ports == nil {
		ports = make(map[Port]*membership, 1)
		t.groups[ms.Group] = ports
	}
	ports[ms.Port] = m
	t.total++
	t.perPort[ms.Port]++
}

// importRouterLocked adds one validated router port with the ways that
// still run at now, if any.
func (t *Table) importRouterLocked(rs *RouterPortState, now time.Time) {
	var r routerState
	for name, until := range rs.Learned {
		how, _ := routerSourceByName(name)
		if !until.After(now) {
			continue
		}
		switch how {
		case RouterQuery:
			until = earliest(until, now.Add(t.cfg.OQPI()))
		case RouterMRD:
			until = earliest(until, now.Add(maxMRDHold))
		} // a PIM Hello may hold forever
		r.until[how] = until
	}
	if r.expires().IsZero() {
		return
	}
	for _, until := range r.until {
		t.soon(until)
	}
	r.addr = rs.Router
	t.routers[rs.Port] = &r
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// QuerierState is the schedule and election state of a Querier, as Export
// writes it and Import reads it.
type QuerierState struct {
	// Querier says whether this node was the querier of its TAP at
	// export. Import goes by OtherUntil.
	Querier bool `json:"querier"`
	// OtherQuerier is the querier heard, whose queries keep this one
	// silent until OtherUntil (the other querier present timer). Both are
	// unset when none was heard.
	OtherQuerier netip.Addr `json:"other_querier,omitzero"`
	OtherUntil   time.Time  `json:"other_querier_until,omitzero"`
	// StartupLeft is the number of startup queries still to send.
	StartupLeft int `json:"startup_queries_left"`
	// NextGeneral is when the next general query is due; unset for at
	// once.
	NextGeneral time.Time `json:"next_general_query,omitzero"`
	// Solicited says that the next general query was asked for by Solicit
	// (it goes to the peers too, with a short response time), and
	// LastSolicit is when Solicit last asked.
	Solicited   bool      `json:"solicited,omitempty"`
	LastSolicit time.Time `json:"last_solicit,omitzero"`
	// RouterPeers says that a peer was a router port, so that general
	// queries also went to the peers as election queries; ElectionDue,
	// that an election query was due on the next Tick.
	RouterPeers bool `json:"router_peers,omitempty"`
	ElectionDue bool `json:"election_query_due,omitempty"`
	// Pending are the group-specific and group-and-source-specific
	// queries still to send after a leave of the local host.
	Pending []PendingQueryState `json:"pending,omitempty"`
	// Sent is the count of Sent, so that it goes on.
	Sent uint64 `json:"sent"`
}

// PendingQueryState is one specific query of QuerierState.
type PendingQueryState struct {
	Group   netip.Addr   `json:"group"`
	Sources []netip.Addr `json:"sources,omitempty"` // none for a group-specific query
	Left    int          `json:"left"`              // how many more to send
	Next    time.Time    `json:"next"`              // when the next is due
}

// Export returns the querier's state at now for Import in another process.
// It is meant for a querier whose Ticks have stopped.
func (q *Querier) Export(now time.Time) QuerierState {
	q.mu.Lock()
	s := QuerierState{
		Querier:     !q.otherUntil.After(now),
		StartupLeft: q.startupLeft,
		NextGeneral: wall(q.nextGeneral),
		Solicited:   q.solicited,
		LastSolicit: wall(q.lastSolicit),
		RouterPeers: q.routerPeers,
		ElectionDue: q.electNow,
	}
	if !q.otherUntil.IsZero() {
		s.OtherQuerier, s.OtherUntil = q.other, wall(q.otherUntil)
	}
	if len(q.pending) > 0 {
		s.Pending = make([]PendingQueryState, len(q.pending))
		for i, p := range q.pending {
			s.Pending[i] = PendingQueryState{Group: p.Group, Sources: slices.Clone(p.Sources), Left: p.left, Next: wall(p.next)}
		}
	}
	q.mu.Unlock()
	s.Sent = q.sent.Load()
	return s
}

// Import takes over s, which Export wrote, at now. It is meant for a fresh
// querier, before its first Tick: it replaces the schedule, so that no
// startup query goes out again that the exporter had sent, the next
// general query goes out when the exporter's would have, and a querier
// that had been silenced stays silent until the other querier present
// timer ends, then takes over at once. The count of Sent continues from
// s.Sent.
//
// It bounds s by this querier's configuration and drops what cannot be:
// at most Robustness startup queries left, the next general query within a
// query interval of now, the other querier present timer within its
// interval (and forgotten, with a takeover at once, when the address heard
// is not an IPv4 address that would win the election against this node);
// a pending query must be for a group with state (IPv4 multicast outside
// 224.0.0.0/24) and list at most MaxSources unicast IPv4 sources, at most
// Robustness times, the next within a last member interval; at most
// MaxGroupsPerPort of them are kept, and none while silenced.
func (q *Querier) Import(s QuerierState, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cfg := &q.cfg
	q.startupLeft = min(max(s.StartupLeft, 0), cfg.Robustness)
	q.nextGeneral = s.NextGeneral
	if limit := now.Add(cfg.QueryInterval); q.nextGeneral.After(limit) {
		q.nextGeneral = limit
	}
	q.otherUntil, q.other = time.Time{}, netip.Addr{}
	if !s.OtherUntil.IsZero() {
		a := s.OtherQuerier
		if a.Is4() == q.self.Is4() && !a.IsUnspecified() && a.Compare(q.self) <= 0 {
			q.otherUntil, q.other = earliest(s.OtherUntil, now.Add(cfg.OQPI())), a
		} else {
			q.otherUntil = now // no querier to defer to: take over on the next Tick
		}
	}
	q.solicited = s.Solicited
	q.lastSolicit = s.LastSolicit
	if q.lastSolicit.After(now) {
		q.lastSolicit = now
	}
	q.routerPeers, q.electNow = s.RouterPeers, s.ElectionDue
	clear(q.pending)
	q.pending = q.pending[:0]
	if !q.otherUntil.After(now) {
		for i := range s.Pending {
			if len(q.pending) >= cfg.MaxGroupsPerPort {
				break
			}
			if p, ok := q.pendingFrom(&s.Pending[i], now); ok {
				q.pending = append(q.pending, p)
			}
		}
	}
	q.sent.Add(s.Sent)
}

// pendingFrom returns the pending query of ps bounded as Import says, or
// false when it has to go.
func (q *Querier) pendingFrom(ps *PendingQueryState, now time.Time) (pendingQuery, bool) {
	g := ps.Group
	if g.Is4() != q.self.Is4() || !Snooped(g) || ps.Left <= 0 || len(ps.Sources) > q.cfg.MaxSources {
		return pendingQuery{}, false
	}
	for _, a := range ps.Sources {
		if !unicastOf(g, a) {
			return pendingQuery{}, false
		}
	}
	if len(ps.Sources) == 0 {
		for _, p := range q.pending {
			if p.Group == g && len(p.Sources) == 0 {
				return pendingQuery{}, false // LastMember keeps one per group
			}
		}
	}
	p := pendingQuery{Query: Query{Group: g, Sources: slices.Clone(ps.Sources)}, left: min(ps.Left, q.cfg.Robustness), next: ps.Next}
	if limit := now.Add(q.cfg.LastMemberInterval); p.next.After(limit) {
		p.next = limit
	}
	return p, true
}
