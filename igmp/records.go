package igmp

import (
	"net/netip"
	"slices"
	"time"
)

// This file is the router side of RFC 3376 section 6.4: how one Group
// Record changes the state of one group on one port. apply does what every
// record shares (the compatibility rules, creating the state, the bounds);
// one function per group of rows of the tables of sections 6.4.1
// (current-state records) and 6.4.2 (filter-mode-change and
// source-list-change records) does the rest, and quotes its rows: the 12
// rows of the two tables, each quoted once (TestRecordsQuoteRFC checks).
//
// In the rows, A is the port's source list in INCLUDE mode; X and Y are its
// requested and excluded lists in EXCLUDE mode; B (in INCLUDE rows) and A
// (in EXCLUDE rows) are the sources of the record. GMI is the Group
// Membership Interval, Q(G) a group-specific query and Q(G,S) a
// group-and-source-specific one. Here a source in A or X is a source with
// blocked unset and a running timer, and a source in Y one with blocked
// set.

// update is one record being applied to one membership: what the row
// functions read, and the queries they ask for.
type update struct {
	port    Port
	group   netip.Addr
	typ     uint8        // the record type, ModeIsInclude to BlockOldSources
	srcs    []netip.Addr // the record's sources; may be scratch, never kept
	now     time.Time
	gmi     time.Time // now + GMI
	queries []Query   // for the local port: what the querier must send, appended to the caller's
}

// apply runs one record on (port, group) and reports whether the state
// changed, with, for the local port, the queries the querier must send
// appended to queries. It keeps neither srcs nor any part of it.
func (t *Table) apply(port Port, ver int, typ uint8, group netip.Addr, srcs []netip.Addr, now time.Time, queries []Query) ([]Query, bool) {
	m := t.groups[group][port]
	if m != nil {
		// Compatibility (section 7.3.2): with an older host present, v3
		// BLOCK is ignored, and TO_EX ignores its sources; with a v1 host,
		// v2 leaves and v3 TO_IN are ignored too.
		switch c := m.compat(now); {
		case ver == 3 && c < 3 && typ == BlockOldSources:
			return queries, false
		case ver == 3 && c < 3 && typ == ChangeToExclude:
			srcs = nil
		case ver >= 2 && typ == ChangeToInclude && c == 1:
			return queries, false
		}
	} else if m = t.join(port, ver, typ, group, srcs); m == nil {
		return queries, false
	}
	switch ver {
	case 1:
		m.v1Until = now.Add(t.gmi)
	case 2:
		if typ == ModeIsExclude {
			m.v2Until = now.Add(t.gmi)
		}
	}
	u := update{port: port, group: group, typ: typ, srcs: srcs, now: now, gmi: now.Add(t.gmi), queries: queries}
	include := m.mode == ModeInclude
	switch typ {
	case ModeIsInclude, AllowNewSources:
		t.allow(&u, m)
	case ModeIsExclude, ChangeToExclude:
		if include {
			t.includeToExclude(&u, m)
		} else {
			t.excludeToExclude(&u, m)
		}
	case BlockOldSources:
		if include {
			t.includeBlock(&u, m)
		} else {
			t.excludeBlock(&u, m)
		}
	case ChangeToInclude:
		if include {
			t.includeToInclude(&u, m)
		} else {
			t.excludeToInclude(&u, m)
		}
	}
	if len(m.srcs) > t.cfg.MaxSources {
		// Keep the bound: a membership that grew past it falls back to
		// EXCLUDE {} (every source), the safe superset.
		t.refused[family(group)][refusedSources].Add(1)
		clear(m.srcs)
		m.mode = ModeExclude
		m.timer = u.gmi
	}
	t.soon(u.gmi)
	if m.mode == ModeInclude && len(m.srcs) == 0 {
		t.removeLocked(group, port, "no sources left")
	}
	return u.queries, true
}

// join returns a new membership, INCLUDE {}, for a record on a port that
// has no state for the group, or nil when the record creates no state
// (INCLUDE {} is no state, and BLOCK of it changes nothing) or a cap
// refuses it.
func (t *Table) join(port Port, ver int, typ uint8, group netip.Addr, srcs []netip.Addr) *membership {
	switch typ {
	case ModeIsInclude, AllowNewSources, ChangeToInclude:
		if len(srcs) == 0 {
			return nil // INCLUDE {} is no state; a leave of nothing
		}
	case BlockOldSources:
		return nil
	}
	if t.total >= t.cfg.MaxGroups {
		t.refused[family(group)][refusedGlobalCap].Add(1)
		return nil
	}
	if t.perPort[port] >= t.cfg.MaxGroupsPerPort {
		t.refused[family(group)][refusedPortCap].Add(1)
		return nil
	}
	m := &membership{mode: ModeInclude, srcs: map[netip.Addr]*source{}}
	ports := t.groups[group]
	if ports == nil {
		ports = map[Port]*membership{}
		t.groups[group] = ports
	}
	ports[port] = m
	t.total++
	t.perPort[port]++
	if group.Is6() {
		ver-- // MLDv1 is held as IGMPv2, MLDv2 as IGMPv3
	}
	t.log.Info(logPrefix[family(group)]+"member joined", "group", group, "port", portName(port), "version", ver)
	return m
}

// allow implements the rows that add sources, the IS_IN rows of section
// 6.4.1 and the ALLOW rows of section 6.4.2, which do the same in both
// filter modes:
//
//	Router State   Report Rec'd  New Router State     Actions
//	INCLUDE (A)    IS_IN (B)     INCLUDE (A+B)        (B)=GMI
//	INCLUDE (A)    ALLOW (B)     INCLUDE (A+B)        (B)=GMI
//	EXCLUDE (X,Y)  IS_IN (A)     EXCLUDE (X+A,Y-A)    (A)=GMI
//	EXCLUDE (X,Y)  ALLOW (A)     EXCLUDE (X+A,Y-A)    (A)=GMI
//
// Every source of the record is forwarded with a timer of GMI; in EXCLUDE
// mode one that was in Y leaves it for X.
func (t *Table) allow(u *update, m *membership) {
	setTimers(m, u.srcs, u.gmi)
}

// includeToExclude implements the rows that take INCLUDE to EXCLUDE, IS_EX
// of section 6.4.1 and TO_EX of section 6.4.2:
//
//	Router State   Report Rec'd  New Router State     Actions
//	INCLUDE (A)    IS_EX (B)     EXCLUDE (A*B,B-A)    (B-A)=0
//	                                                  Delete (A-B)
//	                                                  Group Timer=GMI
//	INCLUDE (A)    TO_EX (B)     EXCLUDE (A*B,B-A)    (B-A)=0
//	                                                  Delete (A-B)
//	                                                  Send Q(G,A*B)
//	                                                  Group Timer=GMI
//
// (B-A)=0 puts the new sources in Y, blocked.
func (t *Table) includeToExclude(u *update, m *membership) {
	m.mode = ModeExclude
	t.exclude(u, m, source{blocked: true})
}

// excludeToExclude implements the rows of EXCLUDE mode that replace the
// source lists, IS_EX of section 6.4.1 and TO_EX of section 6.4.2:
//
//	Router State   Report Rec'd  New Router State     Actions
//	EXCLUDE (X,Y)  IS_EX (A)     EXCLUDE (A-Y,Y*A)    (A-X-Y)=GMI
//	                                                  Delete (X-A)
//	                                                  Delete (Y-A)
//	                                                  Group Timer=GMI
//	EXCLUDE (X,Y)  TO_EX (A)     EXCLUDE (A-Y,Y*A)    (A-X-Y)=Group Timer
//	                                                  Delete (X-A)
//	                                                  Delete (Y-A)
//	                                                  Send Q(G,A-Y)
//	                                                  Group Timer=GMI
//
// The new sources, A-X-Y, go to X with a running timer.
func (t *Table) excludeToExclude(u *update, m *membership) {
	fresh := u.gmi
	if u.typ == ChangeToExclude {
		fresh = m.timer
	}
	t.exclude(u, m, source{timer: fresh})
}

// exclude is what the IS_EX and TO_EX rows of both modes share: it deletes
// the sources the record does not list, adds those it lists that m lacks as
// copies of fresh, sets the group timer to GMI and, for TO_EX, queries the
// listed sources that m forwards: A*B from INCLUDE, A-Y from EXCLUDE.
func (t *Table) exclude(u *update, m *membership, fresh source) {
	t.keepOnly(m, u.srcs)
	addMissing(m, u.srcs, fresh)
	m.timer = u.gmi
	if u.typ == ChangeToExclude {
		t.ask(u, m, t.forwarded(m, u.srcs))
	}
}

// includeBlock implements the INCLUDE row of BLOCK (section 6.4.2):
//
//	Router State   Report Rec'd  New Router State     Actions
//	INCLUDE (A)    BLOCK (B)     INCLUDE (A)          Send Q(G,A*B)
func (t *Table) includeBlock(u *update, m *membership) {
	t.ask(u, m, t.forwarded(m, u.srcs))
}

// excludeBlock implements the EXCLUDE row of BLOCK (section 6.4.2):
//
//	Router State   Report Rec'd  New Router State     Actions
//	EXCLUDE (X,Y)  BLOCK (A)     EXCLUDE (X+(A-Y),Y)  (A-X-Y)=Group Timer
//	                                                  Send Q(G,A-Y)
func (t *Table) excludeBlock(u *update, m *membership) {
	addMissing(m, u.srcs, source{timer: m.timer})
	t.ask(u, m, t.forwarded(m, u.srcs))
}

// includeToInclude implements the INCLUDE row of TO_IN (section 6.4.2):
//
//	Router State   Report Rec'd  New Router State     Actions
//	INCLUDE (A)    TO_IN (B)     INCLUDE (A+B)        (B)=GMI
//	                                                  Send Q(G,A-B)
//
// excludeToInclude does the same with X in place of A.
func (t *Table) includeToInclude(u *update, m *membership) {
	in := t.sortedCopy(u.srcs)
	rest := t.asked[:0] // the forwarded sources the record leaves out
	for a, s := range m.srcs {
		if !s.blocked && !contains(in, a) {
			rest = append(rest, a)
		}
	}
	slices.SortFunc(rest, netip.Addr.Compare)
	t.asked = rest
	setTimers(m, u.srcs, u.gmi)
	t.ask(u, m, rest)
}

// excludeToInclude implements the EXCLUDE row of TO_IN (section 6.4.2):
//
//	Router State   Report Rec'd  New Router State     Actions
//	EXCLUDE (X,Y)  TO_IN (A)     EXCLUDE (X+A,Y-A)    (A)=GMI
//	                                                  Send Q(G,X-A)
//	                                                  Send Q(G)
//
// The first two actions are the INCLUDE row's, with X in place of A. Q(G)
// lowers the group timer to the last member query time (section 6.6.3.1).
func (t *Table) excludeToInclude(u *update, m *membership) {
	t.includeToInclude(u, m)
	if lm := u.now.Add(t.lmqt); m.timer.After(lm) {
		m.timer = lm
	}
	t.soon(m.timer)
	if u.port == LocalPort {
		u.queries = append(u.queries, Query{Group: u.group})
	}
}

// ask does what sending Q(G,S) for srcs does to the state: it lowers their
// timers to the last member query time (section 6.6.3.2). For the local
// port it also asks the querier to send it, with a copy of srcs (which may
// be scratch). An empty srcs asks nothing.
func (t *Table) ask(u *update, m *membership, srcs []netip.Addr) {
	if len(srcs) == 0 {
		return
	}
	t.lower(m, srcs, u.now)
	if u.port == LocalPort {
		u.queries = append(u.queries, Query{Group: u.group, Sources: slices.Clone(srcs)})
	}
}

// forwarded returns the sources of srcs that m forwards (A*B in INCLUDE,
// A-Y in EXCLUDE), in record order, in the table's scratch.
func (t *Table) forwarded(m *membership, srcs []netip.Addr) []netip.Addr {
	out := t.asked[:0]
	for _, a := range srcs {
		if s := m.srcs[a]; s != nil && !s.blocked {
			out = append(out, a)
		}
	}
	t.asked = out
	return out
}

// keepOnly deletes the sources of m that srcs does not list.
func (t *Table) keepOnly(m *membership, srcs []netip.Addr) {
	in := t.sortedCopy(srcs)
	for a := range m.srcs {
		if !contains(in, a) {
			delete(m.srcs, a)
		}
	}
}

// addMissing adds each source of srcs that m lacks, in the state fresh.
func addMissing(m *membership, srcs []netip.Addr, fresh source) {
	for _, a := range srcs {
		if m.srcs[a] == nil {
			s := fresh
			m.srcs[a] = &s
		}
	}
}

// setTimers makes srcs forwarded sources of m with timer until.
func setTimers(m *membership, srcs []netip.Addr, until time.Time) {
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

// sortedCopy returns srcs sorted, in the table's scratch, for contains.
func (t *Table) sortedCopy(srcs []netip.Addr) []netip.Addr {
	t.sorted = append(t.sorted[:0], srcs...)
	slices.SortFunc(t.sorted, netip.Addr.Compare)
	return t.sorted
}

// contains reports whether the sorted list holds a.
func contains(sorted []netip.Addr, a netip.Addr) bool {
	_, ok := slices.BinarySearchFunc(sorted, a, netip.Addr.Compare)
	return ok
}
