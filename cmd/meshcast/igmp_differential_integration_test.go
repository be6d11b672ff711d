package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationIGMPDifferential runs the same sequence of host actions
// (joins, source joins, exclusions, leaves, IGMP version changes) in two
// worlds of four hosts each, driven by real Linux host stacks through
// ordinary sockets:
//
//   - bridge: a Linux bridge with IGMPv3 snooping and its own querier in a
//     switch namespace, the hosts on veth ports (198.19.1.1-4);
//   - meshcast: four nodes running `meshcast run`, each host being the
//     node's own stack on its TAP (198.19.0.1-4).
//
// Both run with the same IGMP timers. After each step has converged, every
// host sends a few datagrams to every group from its own address, and each
// host interface counts (nftables, netdev ingress) what arrives, per sender
// and group: the delivery matrix. It is compared cell by cell with an RFC
// reading computed from the sockets the test itself opened (RFC 4541
// section 2.1.2, RFC 3376 sections 3.2, 6.4 and 7.3.2). The test fails on
// any cell where meshcast deviates; cells where the kernel bridge deviates
// are listed, with the RFC reason.
//
// A fixed script runs first, then a random sequence; MESHCAST_DIFF_SEED
// replays a seed. TestIntegrationMLDDifferential is the same test for MLD.
func TestIntegrationIGMPDifferential(t *testing.T) {
	diffRun(t, igmpDiff)
}

// igmpDiff is the IPv4 family of the differential test.
var igmpDiff = &diffFamily{
	name: "IGMP", newVer: 3, oldVer: 2,
	seedEnv: []string{"MESHCAST_DIFF_SEED"},
	// The groups: random steps use the first three, the fourth only in
	// the script, so one group stays unregistered in most steps. None is
	// in 232/8: RFC 4604 (SSM) rules for IGMPv2 reports are not what is
	// compared here.
	groups: []netip.Addr{
		netip.MustParseAddr("239.1.1.1"), netip.MustParseAddr("239.2.2.2"),
		netip.MustParseAddr("239.3.3.3"), netip.MustParseAddr("239.4.4.4"),
	},
	randomGroups: []int{0, 1, 2},
	// A link-local group goes to every port (RFC 4541 section 2.1.2
	// (2)), so once a host counted every other host's marker, the
	// datagrams sent before it on the same path have been counted too.
	marker:      netip.MustParseAddr("224.0.0.200"),
	markerWhy:   "link-local 224.0.0.x: every port (RFC 4541 2.1.2(2))",
	headers:     28, // IPv4 (no options) and UDP
	loopOpt:     "IP_MULTICAST_LOOP",
	rfcRouter:   "RFC 3376 6.4",
	rfcCompat:   "RFC 3376 7.3.2",
	bridgeVer:   []string{"mcast_igmp_version", "3"},
	versionKnob: "force_igmp_version",
	hostNet:     [2]netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("198.19.1.0/24")},
	inventory:   diffInventory,
	proto:       igmpProto{},
	script:      diffScript,
	opKinds:     []diffOpKind{diffJoin, diffLeave, diffBlock, diffUnblock, diffSJoin, diffSDrop, diffVersion},
	opWeights:   map[diffOpKind]int{diffJoin: 3, diffLeave: 2, diffBlock: 2, diffUnblock: 1, diffSJoin: 3, diffSDrop: 2, diffVersion: 2},
	randomSteps: diffRandomSteps,
}

// diffFamily is what differs between the IGMP (IPv4) and the MLD (IPv6)
// runs of the differential test: groups, addresses, the host stack's
// socket interface, the texts of the RFC reading, and the steps.
type diffFamily struct {
	name           string // "IGMP" or "MLD"
	newVer, oldVer int    // the protocol versions: 3 and 2 (IGMP), 2 and 1 (MLD)
	seedEnv        []string

	groups       []netip.Addr
	randomGroups []int // the groups random steps use (indices of groups)
	// sourceOnly: a group that only source-specific (INCLUDE) sockets
	// of hosts of version newVer join (an SSM-style group); nil: none.
	sourceOnly func(g int) bool
	// meshcastFloods: a group meshcast does not snoop and sends to every
	// peer by design (IPv6 link-local scope); nil: none. Its cells are
	// compared with the RFC reading all the same, and meshcast's copies
	// beyond it are counted apart.
	meshcastFloods func(g int) bool

	marker    netip.Addr // a group every port gets, sent after the datagrams
	markerWhy string
	headers   int // bytes of IP and UDP headers of a datagram
	loopOpt   string
	rfcRouter string // the router's filter rules
	rfcCompat string // the router's compatibility with older-version hosts

	bridgeVer   []string // the bridge's snooping version setting
	versionKnob string   // the host's sysctl that forces a version
	hostNet     [2]netip.Prefix
	inventory   string
	proto       diffProto

	script      func() []diffOp
	opKinds     []diffOpKind // the kinds of random steps, in draw order
	opWeights   map[diffOpKind]int
	randomSteps int
}

// verName is the name of protocol version v: "IGMPv2", "MLDv1".
func (f *diffFamily) verName(v int) string { return fmt.Sprintf("%sv%d", f.name, v) }

// force is the value of versionKnob for version v: 0 (the kernel's
// default, the newest version while no older querier is heard) for newVer.
func (f *diffFamily) force(v int) int {
	if v == f.newVer {
		return 0
	}
	return v
}

// hostAddr is the address of host k in the world of kind kind.
func (f *diffFamily) hostAddr(kind string, k int) netip.Addr {
	p := f.hostNet[0]
	if kind == "bridge" {
		p = f.hostNet[1]
	}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		a[3] = byte(k)
		return netip.AddrFrom4(a)
	}
	a := p.Addr().As16()
	a[15] = byte(k)
	return netip.AddrFrom16(a)
}

func (f *diffFamily) isSourceOnly(g int) bool { return f.sourceOnly != nil && f.sourceOnly(g) }

func (f *diffFamily) isMeshcastFlooded(g int) bool {
	return f.meshcastFloods != nil && f.meshcastFloods(g)
}

// diffProto is a host stack's interface for one family: its sockets, the
// memberships on them, and the counter rules that see its traffic.
type diffProto interface {
	socket(n *nstest.Node) (int, error)
	// openSender opens h.send, bound to h.addr, sending out of h's
	// interface without loopback.
	openSender(h *diffHost) error
	// member performs a membership step on h's sockets (h.mu held).
	member(w *diffWorld, h *diffHost, op diffOp) error
	send(h *diffHost, fd int, payload []byte, group netip.Addr) error
	// counters is the nftables rules on h's interface: the datagrams
	// (comments "d S G") and markers ("m S") at ingress, queries ("q")
	// at ingress, and the host's own reports ("r1", "r2", "r3",
	// "rleave") at egress.
	counters(w *diffWorld, h *diffHost) (in, out []string)
}

// diffRun runs the differential test of family fam.
func diffRun(t *testing.T, fam *diffFamily) {
	for _, tool := range []string{"nft", "bridge", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.SkipOrFail(t, "%s needs %s (Debian: %s): %v", t.Name(), tool,
				map[string]string{"nft": "nftables", "bridge": "iproute2", "ip": "iproute2"}[tool], err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	for _, env := range fam.seedEnv {
		if s := os.Getenv(env); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q: %v", env, s, err)
			}
			seed = v
			break
		}
	}
	t.Logf("seed %d (replay with %s=%d)", seed, fam.seedEnv[0], seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d (replay with %s=%d)", seed, fam.seedEnv[0], seed)
		}
	})
	start := time.Now()

	nstest.LeakCheck(t)
	ref := diffBridgeWorld(t, fam)
	mc := diffMeshcastWorld(t, fam)
	worlds := []*diffWorld{mc, ref}
	// Sockets hold their namespaces: close them before the namespaces go
	// (cleanups run last registered first).
	t.Cleanup(func() {
		for _, w := range worlds {
			w.closeSockets()
		}
	})
	for _, w := range worlds {
		for _, h := range w.hosts {
			if err := h.openSender(); err != nil {
				t.Fatalf("%s h%d: sender socket: %v", w.name, h.idx, err)
			}
		}
	}
	ref.waitQuerier(t)
	t.Logf("setup: %v", time.Since(start).Round(10*time.Millisecond))

	script := fam.script()
	for i := range script {
		script[i].fam = fam
	}
	model := newDiffModel(fam)
	sim := model.clone()
	for _, op := range script {
		sim.apply(op)
	}
	random := diffRandomOps(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), sim, fam.randomSteps)
	steps := append(append([]diffOp(nil), script...), random...)

	t.Logf("%d steps: %d scripted, %d random (seed %d); each step: the action, the hosts' filters and %s versions, "+
		"how long reports and state took, then per group who gets whose traffic (hS>R,R: receivers of sender S's datagrams, counted at each host interface); "+
		"rfc is the RFC reading with unregistered groups flooded (meshcast's policy); '=' means the world matches its RFC reading",
		len(steps), len(script), len(random), seed, fam.name)
	var all diffTally
	for i, op := range steps {
		phase := "script"
		if i >= len(script) {
			phase = "random"
		}
		all.add(diffRunStep(t, i+1, len(steps), phase, op, model, worlds))
	}
	all.report(t, mc, ref)
	t.Logf("runtime %v for %d steps", time.Since(start).Round(100*time.Millisecond), len(steps))
}

const (
	diffHosts       = 4
	diffPort        = 5400
	diffPerCell     = 2 // datagrams per (sender, group) and step
	diffPayload     = 64
	diffRandomSteps = 12
	diffTAP         = "mcbr-demo"
	diffTable       = "diff" // the nftables table (netdev family) on each host interface

	diffReportWait   = 8 * time.Second  // a host's report after a step (a version change answers the next query)
	diffMeshcastWait = 15 * time.Second // meshcast tables reach the RFC state (GMI 5s + QI 2s + RI 1s, with room)
	diffBridgeWait   = 3 * time.Second  // after the bridge heard the report: LMQT 0.4s and spread responses of RI 1s, with room
	// After a change to the older version the RFC state needs no last
	// member queries: only the other groups' reports, spread over RI
	// (1s). Kept short so that the bridge is measured before the source
	// timers of the host's last report of the newer version (GMI, 5s)
	// run out.
	diffBridgeVersionWait = 1200 * time.Millisecond
	diffSettleWait        = 10 * time.Second // GMI 5s + QI 2s + RI 1s, with room
	diffBarrierWait       = 5 * time.Second  // every host counted every other host's marker
)

// The IGMP and MLD timers of both worlds: meshcast's flags (which set
// both), and the bridge's settings in centiseconds (which apply to both).
// The bridge's membership and other querier present intervals are what
// RFC 3376 section 8 (RFC 3810 section 9) derives from them (GMI = 2 x 2s
// + 1s, OQPI = 2 x 2s + 0.5s). Its startup query interval is 1s: the
// kernel refuses less (meshcast's is a quarter query interval, 0.5s).
var (
	diffMeshcastTimers = []string{"--igmp-query-interval", "2s", "--igmp-response-interval", "1s",
		"--igmp-last-member-interval", "200ms", "--igmp-robustness", "2"}
	diffBridgeTimers = []string{"mcast_query_interval", "200", "mcast_query_response_interval", "100",
		"mcast_last_member_interval", "20", "mcast_last_member_count", "2",
		"mcast_startup_query_interval", "100", "mcast_startup_query_count", "2",
		"mcast_membership_interval", "500", "mcast_querier_interval", "450"}
)

const diffInventory = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX
198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
198.18.0.3      demo,198.19.0.3/24
198.18.0.4      demo,198.19.0.4/24
`

// ---------------------------------------------------------------------------
// Steps and the RFC model

type diffOpKind int

const (
	diffBaseline diffOpKind = iota // nothing: measure the state as it is
	diffJoin                       // IP_ADD_MEMBERSHIP, MCAST_JOIN_GROUP (any source)
	diffLeave                      // IP_DROP_MEMBERSHIP, MCAST_LEAVE_GROUP
	diffBlock                      // IP_BLOCK_SOURCE, MCAST_BLOCK_SOURCE on the any-source socket
	diffUnblock                    // IP_UNBLOCK_SOURCE, MCAST_UNBLOCK_SOURCE
	diffSJoin                      // IP_ADD_SOURCE_MEMBERSHIP, MCAST_JOIN_SOURCE_GROUP (INCLUDE)
	diffSDrop                      // IP_DROP_SOURCE_MEMBERSHIP, MCAST_LEAVE_SOURCE_GROUP
	diffVersion                    // net.ipv4.conf.IF.force_igmp_version, net.ipv6.conf.IF.force_mld_version
	diffSFilter                    // MCAST_MSFILTER on the source-specific socket: its whole filter at once
)

// diffOp is one step: host (1-4) acts on group (an index of the family's
// groups) with source src (a host index), or changes to version ver, or
// sets the filter mode and srcs of its source-specific socket.
type diffOp struct {
	fam        *diffFamily
	kind       diffOpKind
	host       int
	group, src int
	ver        int
	mode       string // diffSFilter: "include" or "exclude"
	srcs       []int  // diffSFilter
	note       string
	// settle: the bridge gets diffSettleWait to reach the RFC state
	// (a baseline that lets transient kernel state run out).
	settle bool
}

func (o diffOp) String() string {
	g := ""
	if o.group >= 0 && o.group < len(o.fam.groups) {
		g = o.fam.groups[o.group].String()
	}
	var s string
	switch o.kind {
	case diffBaseline:
		s = "no action: measure again"
	case diffJoin:
		s = fmt.Sprintf("h%d joins %s (any source)", o.host, g)
	case diffLeave:
		s = fmt.Sprintf("h%d leaves %s (any source)", o.host, g)
	case diffBlock:
		s = fmt.Sprintf("h%d blocks h%d on %s", o.host, o.src, g)
	case diffUnblock:
		s = fmt.Sprintf("h%d unblocks h%d on %s", o.host, o.src, g)
	case diffSJoin:
		s = fmt.Sprintf("h%d joins (h%d, %s)", o.host, o.src, g)
	case diffSDrop:
		s = fmt.Sprintf("h%d drops (h%d, %s)", o.host, o.src, g)
	case diffVersion:
		s = fmt.Sprintf("h%d: %s %d (%s)", o.host, o.fam.versionKnob, o.fam.force(o.ver), o.fam.verName(o.ver))
	case diffSFilter:
		s = fmt.Sprintf("h%d sets its source socket on %s to %v (MCAST_MSFILTER)", o.host, g, diffFilter{mode: o.mode, srcs: o.srcs})
	}
	if o.note != "" {
		s += " [" + o.note + "]"
	}
	return s
}

// diffScript is the fixed sequence of the IGMP test. Groups: 0 =
// 239.1.1.1, 1 = 239.2.2.2, 2 = 239.3.3.3, 3 = 239.4.4.4.
func diffScript() []diffOp {
	return []diffOp{
		{kind: diffBaseline, note: "nothing joined"},
		{kind: diffJoin, host: 1, group: 3, note: "only the sender joined: h1's own traffic goes nowhere"},
		{kind: diffVersion, host: 2, ver: 2},
		{kind: diffJoin, host: 2, group: 1, note: "IGMPv2 join"},
		{kind: diffLeave, host: 2, group: 1, note: "IGMPv2 leave"},
		{kind: diffSJoin, host: 3, group: 0, src: 1, note: "IGMPv3 INCLUDE source join"},
		{kind: diffJoin, host: 4, group: 0},
		{kind: diffBlock, host: 4, group: 0, src: 2, note: "EXCLUDE with a blocked source"},
		{kind: diffVersion, host: 4, ver: 2, note: "v3 to v2 with an existing exclusion"},
		{kind: diffJoin, host: 2, group: 0, note: "IGMPv2 join onto a group with source-specific state"},
		{kind: diffVersion, host: 4, ver: 3, note: "back to v3: the exclusion returns"},
		{kind: diffSJoin, host: 1, group: 2, src: 3},
		{kind: diffVersion, host: 1, ver: 2, note: "v3 to v2 with an INCLUDE source filter"},
		{kind: diffBaseline, settle: true, note: "a GMI later: the IGMPv3 source timers of h1's last v3 report have run out"},
		{kind: diffSDrop, host: 3, group: 0, src: 1},
		{kind: diffLeave, host: 2, group: 0, note: "IGMPv2 leave"},
		{kind: diffLeave, host: 4, group: 0},
		{kind: diffVersion, host: 2, ver: 3},
		{kind: diffSDrop, host: 1, group: 2, src: 3, note: "IGMPv2 leave of a source-specific membership"},
		{kind: diffVersion, host: 1, ver: 3},
		{kind: diffLeave, host: 1, group: 3},
	}
}

type diffHG struct{ h, g int }

// diffModel is what the test's own sockets ask for: per host its protocol
// version, and per (host, group) the any-source socket with its blocked
// sources and the source-specific socket with its sources (INCLUDE, or
// EXCLUDE once a diffSFilter set that mode).
type diffModel struct {
	fam   *diffFamily
	ver   [diffHosts + 1]int
	asm   map[diffHG]map[int]bool
	ssm   map[diffHG]map[int]bool
	ssmEx map[diffHG]bool // the source-specific socket is in EXCLUDE mode
}

func newDiffModel(fam *diffFamily) *diffModel {
	m := &diffModel{fam: fam, asm: map[diffHG]map[int]bool{}, ssm: map[diffHG]map[int]bool{}, ssmEx: map[diffHG]bool{}}
	for h := 1; h <= diffHosts; h++ {
		m.ver[h] = fam.newVer
	}
	return m
}

func (m *diffModel) clone() *diffModel {
	c := &diffModel{fam: m.fam, ver: m.ver, asm: map[diffHG]map[int]bool{}, ssm: map[diffHG]map[int]bool{}, ssmEx: map[diffHG]bool{}}
	for k, v := range m.asm {
		c.asm[k] = diffCopySet(v)
	}
	for k, v := range m.ssm {
		c.ssm[k] = diffCopySet(v)
	}
	for k, v := range m.ssmEx {
		c.ssmEx[k] = v
	}
	return c
}

func diffCopySet(v map[int]bool) map[int]bool {
	c := map[int]bool{}
	for k, b := range v {
		c[k] = b
	}
	return c
}

func (m *diffModel) apply(op diffOp) {
	k := diffHG{op.host, op.group}
	switch op.kind {
	case diffJoin:
		m.asm[k] = map[int]bool{}
	case diffLeave:
		delete(m.asm, k)
	case diffBlock:
		m.asm[k][op.src] = true
	case diffUnblock:
		delete(m.asm[k], op.src)
	case diffSJoin:
		if m.ssm[k] == nil {
			m.ssm[k] = map[int]bool{}
		}
		m.ssm[k][op.src] = true
	case diffSDrop:
		delete(m.ssm[k], op.src)
		if len(m.ssm[k]) == 0 {
			delete(m.ssm, k)
		}
	case diffSFilter:
		// INCLUDE {} leaves the group: the socket's state entry goes
		// (RFC 3376 section 3.1, RFC 3810 section 4.1).
		delete(m.ssm, k)
		delete(m.ssmEx, k)
		if op.mode == "exclude" || len(op.srcs) > 0 {
			m.ssm[k] = map[int]bool{}
			for _, s := range op.srcs {
				m.ssm[k][s] = true
			}
			if op.mode == "exclude" {
				m.ssmEx[k] = true
			}
		}
	case diffVersion:
		m.ver[op.host] = op.ver
	}
}

// diffFilter is a filter: mode "" (no state, INCLUDE {}), "include" or
// "exclude", with sources as host indices.
type diffFilter struct {
	mode string
	srcs []int
}

func (f diffFilter) String() string {
	switch f.mode {
	case "":
		return "-"
	case "include":
		return "IN{" + diffHostList(f.srcs) + "}"
	}
	return "EX{" + diffHostList(f.srcs) + "}"
}

func diffHostList(hs []int) string {
	var s []string
	for _, h := range hs {
		s = append(s, fmt.Sprintf("h%d", h))
	}
	return strings.Join(s, ",")
}

func diffSorted(set map[int]bool) []int {
	var out []int
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// filter is the interface state of host h for group g, merged from its
// sockets as RFC 3376 section 3.2 (RFC 3810 section 4.2) says: with any
// EXCLUDE socket, EXCLUDE with the intersection of the EXCLUDE lists minus
// the union of the INCLUDE lists; else INCLUDE with the union of the
// INCLUDE lists.
func (m *diffModel) filter(h, g int) diffFilter {
	k := diffHG{h, g}
	var excl []map[int]bool
	in := map[int]bool{}
	if b, ok := m.asm[k]; ok {
		excl = append(excl, b)
	}
	if s, ok := m.ssm[k]; ok {
		if m.ssmEx[k] {
			excl = append(excl, s)
		} else {
			in = s
		}
	}
	if len(excl) > 0 {
		ex := map[int]bool{}
		for s := range excl[0] {
			all := true
			for _, e := range excl[1:] {
				all = all && e[s]
			}
			if all && !in[s] {
				ex[s] = true
			}
		}
		return diffFilter{mode: "exclude", srcs: diffSorted(ex)}
	}
	if len(in) > 0 {
		return diffFilter{mode: "include", srcs: diffSorted(in)}
	}
	return diffFilter{}
}

// router is the state a router (or snooping switch) holds for host h's
// port and group g once the host's reports have converged: the host's
// filter under the newer version (RFC 3376 section 6.4, RFC 3810 section
// 7.4), and EXCLUDE {} for a host of the older version (IGMPv2, MLDv1),
// whose report counts as IS_EX({}) (RFC 3376 section 7.3.2, RFC 3810
// section 8.3.2).
func (m *diffModel) router(h, g int) diffFilter {
	f := m.filter(h, g)
	if f.mode != "" && m.ver[h] < m.fam.newVer {
		return diffFilter{mode: "exclude"}
	}
	return f
}

// members returns the hosts with state for g.
func (m *diffModel) members(g int) []int {
	var hs []int
	for h := 1; h <= diffHosts; h++ {
		if m.router(h, g).mode != "" {
			hs = append(hs, h)
		}
	}
	return hs
}

// expect is the RFC reading of one cell: does host r's interface get a
// copy of traffic from host s to group g, and why. flood is the world's
// policy for unregistered groups.
func (m *diffModel) expect(s, g, r int, flood bool) (bool, string) {
	fam := m.fam
	if r == s {
		return false, "own traffic: never back out of its ingress port (and " + fam.loopOpt + " is off)"
	}
	members := m.members(g)
	if len(members) == 0 {
		if flood {
			return true, "unregistered: flooded (RFC 4541 2.1.2(3) allows flooding; the world's policy)"
		}
		return false, "unregistered: to router ports only, and there are none (RFC 4541 2.1.2(3))"
	}
	reg := "registered by " + diffHostList(members)
	f := m.filter(r, g)
	rs := m.router(r, g)
	switch {
	case rs.mode == "":
		return false, fmt.Sprintf("%s; h%d is no member (RFC 4541 2.1.2(1))", reg, r)
	case m.ver[r] < fam.newVer:
		why := fmt.Sprintf("%s; h%d is %s: its report is IS_EX({}), every source (%s)", reg, r, fam.verName(m.ver[r]), fam.rfcCompat)
		if len(f.srcs) > 0 || f.mode == "include" {
			why += fmt.Sprintf(", its source filter %v is not seen", f)
		}
		return true, why
	case rs.mode == "include":
		in := slices.Contains(rs.srcs, s)
		return in, fmt.Sprintf("%s; h%d INCLUDE{%s} %s h%d (%s)", reg, r, diffHostList(rs.srcs), map[bool]string{true: "lists", false: "does not list"}[in], s, fam.rfcRouter)
	default:
		out := slices.Contains(rs.srcs, s)
		return !out, fmt.Sprintf("%s; h%d EXCLUDE{%s} %s h%d (%s)", reg, r, diffHostList(rs.srcs), map[bool]string{true: "blocks", false: "does not block"}[out], s, fam.rfcRouter)
	}
}

func (m *diffModel) describe() string {
	var parts []string
	for h := 1; h <= diffHosts; h++ {
		var gs []string
		for g := range m.fam.groups {
			if f := m.filter(h, g); f.mode != "" {
				gs = append(gs, fmt.Sprintf("%s:%v", m.fam.groups[g], f))
			}
		}
		if len(gs) == 0 {
			gs = []string{"-"}
		}
		parts = append(parts, fmt.Sprintf("h%d v%d %s", h, m.ver[h], strings.Join(gs, " ")))
	}
	return strings.Join(parts, " | ")
}

// diffReport is the egress counter of a report of version v.
func diffReport(v int) string { return fmt.Sprintf("r%d", v) }

// diffReportKind is the report host op.host must send after op, as an
// egress counter name, or "" when op changes nothing the network sees yet.
func diffReportKind(prev, next *diffModel, op diffOp) string {
	h := op.host
	fam := next.fam
	switch op.kind {
	case diffBaseline:
		return ""
	case diffVersion:
		if prev.ver[h] == next.ver[h] {
			return ""
		}
		for g := range fam.groups {
			if next.filter(h, g).mode != "" {
				// Not at once: the answer to the next query.
				return diffReport(next.ver[h])
			}
		}
		return ""
	}
	before, after := prev.filter(h, op.group), next.filter(h, op.group)
	if before.mode == after.mode && slices.Equal(before.srcs, after.srcs) {
		return ""
	}
	if next.ver[h] == fam.newVer {
		return diffReport(fam.newVer)
	}
	switch {
	case before.mode == "" && after.mode != "":
		return diffReport(next.ver[h])
	case before.mode != "" && after.mode == "":
		return "rleave"
	}
	return "" // an older-version host says nothing about its sources
}

// diffRandomOps draws n valid steps from the state m (which it changes).
func diffRandomOps(rng *rand.Rand, m *diffModel, n int) []diffOp {
	fam := m.fam
	var ops []diffOp
	for len(ops) < n {
		cands := map[diffOpKind][]diffOp{}
		add := func(op diffOp) {
			op.fam = fam
			cands[op.kind] = append(cands[op.kind], op)
		}
		for h := 1; h <= diffHosts; h++ {
			for _, g := range fam.randomGroups {
				k := diffHG{h, g}
				srcOnly := fam.isSourceOnly(g)
				if b, ok := m.asm[k]; !ok {
					if !srcOnly {
						add(diffOp{kind: diffJoin, host: h, group: g})
					}
				} else {
					add(diffOp{kind: diffLeave, host: h, group: g})
					for s := 1; s <= diffHosts; s++ {
						if s == h {
							continue
						}
						if b[s] {
							add(diffOp{kind: diffUnblock, host: h, group: g, src: s})
						} else {
							add(diffOp{kind: diffBlock, host: h, group: g, src: s})
						}
					}
				}
				if !m.ssmEx[k] {
					for s := 1; s <= diffHosts; s++ {
						if s == h {
							continue
						}
						if m.ssm[k][s] {
							add(diffOp{kind: diffSDrop, host: h, group: g, src: s})
						} else if !srcOnly || m.ver[h] == fam.newVer {
							add(diffOp{kind: diffSJoin, host: h, group: g, src: s})
						}
					}
				}
				if _, member := m.ssm[k]; member && fam.opWeights[diffSFilter] > 0 {
					for _, f := range diffFilters(h) {
						if srcOnly && (f.mode == "exclude" || m.ver[h] != fam.newVer) {
							continue
						}
						cur := diffFilter{mode: "include", srcs: diffSorted(m.ssm[k])}
						if m.ssmEx[k] {
							cur.mode = "exclude"
						}
						if f.mode != cur.mode || !slices.Equal(f.srcs, cur.srcs) {
							add(diffOp{kind: diffSFilter, host: h, group: g, mode: f.mode, srcs: f.srcs})
						}
					}
				}
			}
			v := fam.oldVer
			if m.ver[h] == fam.oldVer {
				v = fam.newVer
			}
			held := false
			for g := range fam.groups {
				held = held || fam.isSourceOnly(g) && m.filter(h, g).mode != ""
			}
			if v == fam.newVer || !held {
				add(diffOp{kind: diffVersion, host: h, ver: v})
			}
		}
		total := 0
		for _, k := range fam.opKinds {
			if len(cands[k]) > 0 {
				total += fam.opWeights[k]
			}
		}
		pick := rng.IntN(total)
		for _, k := range fam.opKinds {
			if len(cands[k]) == 0 {
				continue
			}
			if pick -= fam.opWeights[k]; pick < 0 {
				op := cands[k][rng.IntN(len(cands[k]))]
				m.apply(op)
				ops = append(ops, op)
				break
			}
		}
	}
	return ops
}

// diffFilters lists the filters a source-specific socket of host h can be
// set to: INCLUDE with any non-empty set of the other hosts, EXCLUDE with
// any set of them.
func diffFilters(h int) []diffFilter {
	var others []int
	for s := 1; s <= diffHosts; s++ {
		if s != h {
			others = append(others, s)
		}
	}
	var out []diffFilter
	for _, mode := range []string{"include", "exclude"} {
		for bits := 0; bits < 1<<len(others); bits++ {
			var srcs []int
			for i, s := range others {
				if bits&(1<<i) != 0 {
					srcs = append(srcs, s)
				}
			}
			if mode == "include" && len(srcs) == 0 {
				continue
			}
			out = append(out, diffFilter{mode: mode, srcs: srcs})
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Worlds and hosts

type diffWorld struct {
	fam   *diffFamily
	name  string
	kind  string // "meshcast" or "bridge"
	hosts []*diffHost
	flood bool // policy for unregistered groups

	socks []string     // meshcast: the control sockets, by host
	sw    *nstest.Node // bridge: the switch
	// lasting: the bridge's lasting differences (diffMiss.lasting) at
	// the end of the previous step, by text.
	lasting map[string]bool
}

type diffHost struct {
	w       *diffWorld
	idx     int
	node    *nstest.Node
	ifname  string
	ifindex int
	addr    netip.Addr
	port    string // the port this host is known by: meshcast peer address, or bridge port

	mu   sync.Mutex
	send int         // sender socket, -1 if none
	asm  map[int]int // group -> any-source socket
	ssm  map[int]int // group -> source-specific socket
}

func (w *diffWorld) addrOf(h int) netip.Addr { return w.fam.hostAddr(w.kind, h) }

func (w *diffWorld) closeSockets() {
	for _, h := range w.hosts {
		h.mu.Lock()
		if h.send >= 0 {
			unix.Close(h.send)
			h.send = -1
		}
		for g, fd := range h.asm {
			unix.Close(fd)
			delete(h.asm, g)
		}
		for g, fd := range h.ssm {
			unix.Close(fd)
			delete(h.ssm, g)
		}
		h.mu.Unlock()
	}
}

// diffBridgeWorld builds the reference: the hub of an nstest.Net is the
// switch, its bridge gets snooping of the family's newer version with a
// querier, and the nodes are the hosts, with the bridge world's host
// addresses (and, for IPv4, without their underlay addresses).
func diffBridgeWorld(t *testing.T, fam *diffFamily) *diffWorld {
	t.Helper()
	nt := nstest.NewNet(t, diffHosts)
	w := &diffWorld{fam: fam, name: "bridge", kind: "bridge", sw: nt.Hub}
	// Timers first: the querier's start-up delay is the response
	// interval in force when it is switched on (10s by default).
	args := append(append([]string{"ip", "link", "set", nstest.BridgeName, "type", "bridge",
		"mcast_snooping", "1"}, fam.bridgeVer...), diffBridgeTimers...)
	if out, err := nt.Hub.Exec(t, args...); err != nil {
		nstest.SkipOrFail(t, "this kernel or iproute2 cannot configure %s snooping on a bridge: %v\n%s", fam.verName(fam.newVer), err, out)
	}
	for _, n := range nt.Nodes() {
		a := fam.hostAddr("bridge", n.Index)
		cmds := [][]string{
			{"ip", "addr", "flush", "dev", nstest.NodeLink},
			{"ip", "addr", "add", netip.PrefixFrom(a, fam.hostNet[1].Bits()).String(), "dev", nstest.NodeLink},
		}
		if a.Is6() {
			// The underlay stays; IPv6 comes on, with a link-local
			// address for MLD.
			diffEnableIPv6(t, n, nstest.NodeLink)
			cmds = [][]string{{"ip", "addr", "add", netip.PrefixFrom(a, fam.hostNet[1].Bits()).String(), "dev", nstest.NodeLink, "nodad"}}
		}
		for _, cmd := range cmds {
			if out, err := n.Exec(t, cmd...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		l, err := n.Link(nstest.NodeLink)
		if err != nil {
			t.Fatal(err)
		}
		w.hosts = append(w.hosts, &diffHost{w: w, idx: n.Index, node: n, ifname: nstest.NodeLink, ifindex: l.Attrs().Index,
			addr: a, port: nstest.HubPort(n.Index), send: -1, asm: map[int]int{}, ssm: map[int]int{}})
	}
	for _, h := range w.hosts {
		h.installCounters(t)
	}
	if fam.hostNet[1].Addr().Is6() {
		diffBridgeIPv6(t, w)
	}
	if out, err := nt.Hub.Exec(t, "ip", "link", "set", nstest.BridgeName, "type", "bridge", "mcast_querier", "1"); err != nil {
		nstest.SkipOrFail(t, "the bridge cannot be its own %s querier: %v\n%s", fam.name, err, out)
	}
	return w
}

// waitQuerier waits until every host of the bridge world has heard three
// of the bridge's queries: two start-up queries a second apart and a
// periodic one, well after the querier's start-up delay (one response
// interval, 1s) in which the bridge floods every group.
func (w *diffWorld) waitQuerier(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs := w.counts(t)
		ok := true
		for _, c := range cs {
			ok = ok && c["q"] >= 3
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge world: the hosts heard %v queries of the bridge's querier after 15s, want 3 each", diffCol(cs, "q"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func diffCol(cs []diffCounts, key string) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c[key])
	}
	return out
}

// diffMeshcastWorld starts four daemons; each node's own stack on its TAP
// is a host.
func diffMeshcastWorld(t *testing.T, fam *diffFamily) *diffWorld {
	t.Helper()
	nt := nstest.NewNet(t, diffHosts)
	bin, _ := binaries(t)
	w := &diffWorld{fam: fam, name: "meshcast", kind: "meshcast", flood: true}
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(fam.inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	var daemons []*nstest.Proc
	for _, n := range nt.Nodes() {
		sock := ctlPath(t)
		w.socks = append(w.socks, sock)
		args := append([]string{"run", "--peers", inv, "--local", n.Underlay.String(), "--control", sock}, diffMeshcastTimers...)
		daemons = append(daemons, n.Start(t, bin, args...))
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	for _, n := range nt.Nodes() {
		l, err := n.Link(diffTAP)
		if err != nil {
			t.Fatal(err)
		}
		h := &diffHost{w: w, idx: n.Index, node: n, ifname: diffTAP, ifindex: l.Attrs().Index,
			addr: fam.hostAddr("meshcast", n.Index), port: n.Underlay.String(),
			send: -1, asm: map[int]int{}, ssm: map[int]int{}}
		w.hosts = append(w.hosts, h)
		h.installCounters(t)
	}
	if fam.hostNet[0].Addr().Is6() {
		for _, h := range w.hosts {
			diffWaitIPv6(t, h.node, h.ifname, h.addr)
		}
	}
	return w
}

// installCounters puts the counters on the host's interface: at ingress,
// the datagrams of every sender to every group and the markers, and the
// queries; at egress, the host's own reports by type.
func (h *diffHost) installCounters(t *testing.T) {
	t.Helper()
	in, out := h.w.fam.proto.counters(h.w, h)
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n\tchain in {\n\t\ttype filter hook ingress device %q priority 0; policy accept;\n", diffTable, h.ifname)
	for _, r := range in {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	fmt.Fprintf(&b, "\t}\n\tchain out {\n\t\ttype filter hook egress device %q priority 0; policy accept;\n", h.ifname)
	for _, r := range out {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n}\n")
	f := filepath.Join(t.TempDir(), "nft")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.node.Exec(t, "nft", "-f", f); err != nil {
		nstest.SkipOrFail(t, "nftables netdev ingress/egress counters on %s are not available (netdev egress needs Linux 5.16): %v\n%s", h.ifname, err, out)
	}
}

// diffDataRules are the ingress rules counting the datagrams of every
// sender to every group, and its markers; l3 is "ip" or "ip6".
func diffDataRules(w *diffWorld, l3 string) []string {
	var rules []string
	for s := 1; s <= diffHosts; s++ {
		src := w.addrOf(s)
		for g, grp := range w.fam.groups {
			rules = append(rules, fmt.Sprintf("%s saddr %s %s daddr %s udp dport %d counter comment \"d %d %d\"", l3, src, l3, grp, diffPort, s, g))
		}
		rules = append(rules, fmt.Sprintf("%s saddr %s %s daddr %s udp dport %d counter comment \"m %d\"", l3, src, l3, w.fam.marker, diffPort, s))
	}
	return rules
}

// diffCounts are a host's counters by rule comment: packets under the
// comment, bytes under the comment + " bytes".
type diffCounts map[string]uint64

// datagrams is how many of the test's datagrams the counter key counted
// between before and c. Bytes, not packets: meshcast may write several
// datagrams of one flow into its TAP as one segmentation-offload frame,
// which the ingress hook counts once. Each datagram is headers bytes of IP
// and UDP headers and diffPayload bytes of payload, and a coalesced frame
// carries the headers once.
func (c diffCounts) datagrams(before diffCounts, key string, headers int) uint64 {
	p := c[key] - before[key]
	b := c[key+" bytes"] - before[key+" bytes"]
	if b < p*uint64(headers) {
		return p
	}
	return (b - p*uint64(headers)) / diffPayload
}

// readCounts reads the host's counters by comment.
func (h *diffHost) readCounts(t *testing.T) (diffCounts, error) {
	out, err := h.node.Exec(t, "nft", "-j", "list", "table", "netdev", diffTable)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %v\n%s", err, out)
	}
	c := diffCounts{}
	for _, item := range doc.Nftables {
		raw, ok := item["rule"]
		if !ok {
			continue
		}
		var rule struct {
			Comment string                       `json:"comment"`
			Expr    []map[string]json.RawMessage `json:"expr"`
		}
		if err := json.Unmarshal(raw, &rule); err != nil {
			return nil, err
		}
		for _, e := range rule.Expr {
			if cr, ok := e["counter"]; ok {
				var ctr struct {
					Packets uint64 `json:"packets"`
					Bytes   uint64 `json:"bytes"`
				}
				if err := json.Unmarshal(cr, &ctr); err != nil {
					return nil, err
				}
				c[rule.Comment] = ctr.Packets
				c[rule.Comment+" bytes"] = ctr.Bytes
			}
		}
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("no counters in nft output:\n%s", out)
	}
	return c, nil
}

// counts reads every host's counters, in parallel.
func (w *diffWorld) counts(t *testing.T) []diffCounts {
	t.Helper()
	cs := make([]diffCounts, len(w.hosts))
	errs := make([]error, len(w.hosts))
	var wg sync.WaitGroup
	for i, h := range w.hosts {
		wg.Go(func() { cs[i], errs[i] = h.readCounts(t) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s h%d: counters: %v", w.name, i+1, err)
		}
	}
	return cs
}

func (h *diffHost) openSender() error { return h.w.fam.proto.openSender(h) }

// apply performs op with the host's sockets (or sysctl).
func (w *diffWorld) apply(op diffOp) error {
	if op.kind == diffBaseline {
		return nil
	}
	h := w.hosts[op.host-1]
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.kind != diffVersion {
		return w.fam.proto.member(w, h, op)
	}
	ipv := "ipv4"
	if h.addr.Is6() {
		ipv = "ipv6"
	}
	path := "/proc/sys/net/" + ipv + "/conf/" + h.ifname + "/" + w.fam.versionKnob
	want := strconv.Itoa(w.fam.force(op.ver))
	return h.node.Do(func() error {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) != want {
			err = fmt.Errorf("%s reads %q after writing %s", path, b, want)
		}
		return err
	})
}

// socketFor returns the socket a source option of op goes to.
func (h *diffHost) socketFor(op diffOp) int {
	if op.kind == diffSJoin || op.kind == diffSDrop || op.kind == diffSFilter {
		return h.ssm[op.group]
	}
	return h.asm[op.group]
}

// sendAll has every host send diffPerCell datagrams to every group from its
// own address, then as many markers.
func (w *diffWorld) sendAll() error {
	payload := make([]byte, diffPayload)
	for _, h := range w.hosts {
		h.mu.Lock()
		fd := h.send
		h.mu.Unlock()
		for _, g := range w.fam.groups {
			for range diffPerCell {
				if err := w.fam.proto.send(h, fd, payload, g); err != nil {
					return fmt.Errorf("h%d to %s: %w", h.idx, g, err)
				}
			}
		}
		for range diffPerCell {
			if err := w.fam.proto.send(h, fd, payload, w.fam.marker); err != nil {
				return fmt.Errorf("h%d marker: %w", h.idx, err)
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// IPv4: IGMP

type igmpProto struct{}

func (igmpProto) socket(n *nstest.Node) (int, error) {
	fd := -1
	err := n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func (p igmpProto) openSender(h *diffHost) error {
	fd, err := p.socket(h.node)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.send = fd
	h.mu.Unlock()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: h.addr.As4()}); err != nil {
		return fmt.Errorf("bind %s: %w", h.addr, err)
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Address: h.addr.As4(), Ifindex: int32(h.ifindex)}); err != nil {
		return fmt.Errorf("IP_MULTICAST_IF: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0); err != nil {
		return fmt.Errorf("IP_MULTICAST_LOOP: %w", err)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1)
}

func (igmpProto) send(_ *diffHost, fd int, payload []byte, group netip.Addr) error {
	return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: diffPort, Addr: group.As4()})
}

func (igmpProto) counters(w *diffWorld, _ *diffHost) (in, out []string) {
	in = append(diffDataRules(w, "ip"), `ip protocol igmp igmp type membership-query counter comment "q"`)
	for _, r := range [][2]string{{"membership-report-v1", "r1"}, {"membership-report-v2", "r2"}, {"leave-group", "rleave"}, {"membership-report-v3", "r3"}} {
		out = append(out, fmt.Sprintf("ip protocol igmp igmp type %s counter comment %q", r[0], r[1]))
	}
	return in, out
}

// diffMreqSource is a struct ip_mreq_source: group, interface address,
// source.
func diffMreqSource(g, iface, src netip.Addr) string {
	b := make([]byte, 0, 12)
	for _, a := range []netip.Addr{g, iface, src} {
		a4 := a.As4()
		b = append(b, a4[:]...)
	}
	return string(b)
}

func (p igmpProto) member(w *diffWorld, h *diffHost, op diffOp) error {
	g := w.fam.groups[op.group]
	mreqn := &unix.IPMreqn{Multiaddr: g.As4(), Ifindex: int32(h.ifindex)}
	srcOpt := func(opt int) error {
		return unix.SetsockoptString(h.socketFor(op), unix.IPPROTO_IP, opt, diffMreqSource(g, h.addr, w.addrOf(op.src)))
	}
	switch op.kind {
	case diffJoin:
		fd, err := p.socket(h.node)
		if err != nil {
			return err
		}
		h.asm[op.group] = fd
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreqn)
	case diffLeave:
		fd := h.asm[op.group]
		delete(h.asm, op.group)
		defer unix.Close(fd)
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_DROP_MEMBERSHIP, mreqn)
	case diffBlock:
		return srcOpt(unix.IP_BLOCK_SOURCE)
	case diffUnblock:
		return srcOpt(unix.IP_UNBLOCK_SOURCE)
	case diffSJoin:
		if _, ok := h.ssm[op.group]; !ok {
			fd, err := p.socket(h.node)
			if err != nil {
				return err
			}
			h.ssm[op.group] = fd
		}
		return srcOpt(unix.IP_ADD_SOURCE_MEMBERSHIP)
	case diffSDrop:
		// The socket stays open (without membership once its last
		// source is gone) and serves later source joins.
		return srcOpt(unix.IP_DROP_SOURCE_MEMBERSHIP)
	}
	return fmt.Errorf("unknown step %v", op)
}

// ---------------------------------------------------------------------------
// Convergence

// waitReport waits until host h has sent at least one report of kind
// since base, and returns when it saw it.
func (w *diffWorld) waitReport(t *testing.T, h int, kind string, base []diffCounts) (time.Time, error) {
	deadline := time.Now().Add(diffReportWait)
	for {
		c, err := w.hosts[h-1].readCounts(t)
		if err != nil {
			return time.Time{}, err
		}
		if c[kind] > base[h-1][kind] {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Now(), fmt.Errorf("%s: h%d sent no %s report within %v", w.name, h, kind, diffReportWait)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// meshcastMismatch compares every daemon's table with the RFC state of m,
// and describes the first difference ("" when every table matches).
// Groups meshcast does not snoop must have no state.
func (w *diffWorld) meshcastMismatch(m *diffModel) string {
	for i, sock := range w.socks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := control.Fetch(ctx, sock)
		cancel()
		if err != nil {
			return fmt.Sprintf("node %d: %v", i+1, err)
		}
		for g, grp := range w.fam.groups {
			got := map[string]control.Member{}
			for _, cg := range st.Groups {
				if cg.Group == grp.String() {
					for _, mem := range cg.Members {
						got[mem.Port] = mem
					}
				}
			}
			for _, h := range w.hosts {
				port := h.port
				if h.idx == i+1 {
					port = "local"
				}
				want := m.router(h.idx, g)
				if w.fam.isMeshcastFlooded(g) {
					want = diffFilter{}
				}
				mem, ok := got[port]
				if want.mode == "" {
					if ok {
						return fmt.Sprintf("node %d holds %s for h%d (port %s): %+v, want no state", i+1, grp, h.idx, port, mem)
					}
					continue
				}
				var srcs []string
				for _, s := range want.srcs {
					srcs = append(srcs, w.addrOf(s).String())
				}
				have := mem.Sources
				if want.mode == "exclude" {
					have = mem.Blocked
				}
				if !ok || mem.Mode != want.mode || mem.Version != m.ver[h.idx] || !slices.Equal(slices.Sorted(slices.Values(have)), srcs) {
					return fmt.Sprintf("node %d: %s for h%d (port %s) is %+v (present %v), want %s v%d %v", i+1, grp, h.idx, port, mem, ok, want.mode, m.ver[h.idx], srcs)
				}
			}
		}
	}
	return ""
}

// diffMDB is the bridge's snooping state: per (host, group) its port
// group, and per (group, source) the ports of the source-specific entry.
type diffMDB struct {
	pg map[diffHG]diffPG
	sg map[[2]netip.Addr][]string // (group, source) -> ports forwarding (none: every port blocks it)
}

type diffPG struct {
	mode    string
	fwd     []netip.Addr // sources with a running timer
	blocked []netip.Addr // EXCLUDE: sources with no timer
}

func (p diffPG) String() string {
	return fmt.Sprintf("%s fwd%v blocked%v", p.mode, p.fwd, p.blocked)
}

func (w *diffWorld) mdb(t *testing.T) (diffMDB, error) {
	out, err := w.sw.Exec(t, "bridge", "-d", "-j", "mdb", "show", "dev", nstest.BridgeName)
	if err != nil {
		return diffMDB{}, err
	}
	var doc []struct {
		MDB []struct {
			Port       string   `json:"port"`
			Grp        string   `json:"grp"`
			Src        string   `json:"src"`
			FilterMode string   `json:"filter_mode"`
			Flags      []string `json:"flags"`
			SourceList []struct {
				Address string `json:"address"`
				Timer   string `json:"timer"`
			} `json:"source_list"`
		} `json:"mdb"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return diffMDB{}, fmt.Errorf("bridge -j mdb show: %v\n%s", err, out)
	}
	s := diffMDB{pg: map[diffHG]diffPG{}, sg: map[[2]netip.Addr][]string{}}
	for _, d := range doc {
		for _, e := range d.MDB {
			grp, err := netip.ParseAddr(e.Grp)
			if err != nil {
				continue
			}
			g := slices.Index(w.fam.groups, grp)
			h := 0
			for _, hh := range w.hosts {
				if hh.port == e.Port {
					h = hh.idx
				}
			}
			if g < 0 || h == 0 {
				continue
			}
			if e.Src != "" {
				// An entry whose ports all block the source is an
				// entry all the same: listed, without ports.
				if src, err := netip.ParseAddr(e.Src); err == nil {
					k := [2]netip.Addr{grp, src}
					if !slices.Contains(e.Flags, "blocked") {
						s.sg[k] = append(s.sg[k], e.Port)
					} else if _, ok := s.sg[k]; !ok {
						s.sg[k] = nil
					}
				}
				continue
			}
			pg := diffPG{mode: e.FilterMode}
			if pg.mode == "" {
				pg.mode = "exclude" // an IGMPv2 or MLDv1 entry of an older kernel
			}
			for _, sl := range e.SourceList {
				a, err := netip.ParseAddr(sl.Address)
				if err != nil {
					continue
				}
				if v, err := strconv.ParseFloat(strings.TrimSpace(sl.Timer), 64); err == nil && v > 0 {
					pg.fwd = append(pg.fwd, a)
				} else {
					pg.blocked = append(pg.blocked, a)
				}
			}
			slices.SortFunc(pg.fwd, netip.Addr.Compare)
			slices.SortFunc(pg.blocked, netip.Addr.Compare)
			s.pg[diffHG{h, g}] = pg
		}
	}
	return s, nil
}

// diffMiss is one difference between the bridge's port groups and the RFC
// state.
type diffMiss struct {
	hg   diffHG
	text string
	// lasting: the port of an older-version host (IGMPv2, MLDv1) keeps
	// the blocked sources of its newer-version reports. Its
	// older-version reports refresh the port group without clearing
	// them, so this lasts as long as the host stays on the older version.
	lasting bool
}

// bridgeMismatch compares the bridge's port groups with the RFC state of
// m and describes every difference.
func (w *diffWorld) bridgeMismatch(s diffMDB, m *diffModel) []diffMiss {
	var diffs []diffMiss
	for _, h := range w.hosts {
		for g, grp := range w.fam.groups {
			want := m.router(h.idx, g)
			got, ok := s.pg[diffHG{h.idx, g}]
			var srcs []netip.Addr
			for _, x := range want.srcs {
				srcs = append(srcs, w.addrOf(x))
			}
			miss := diffMiss{hg: diffHG{h.idx, g}}
			switch {
			case want.mode == "" && !ok:
				continue
			case want.mode == "" && ok:
				miss.text = fmt.Sprintf("%s %s: %v, want no entry", h.port, grp, got)
			case !ok:
				miss.text = fmt.Sprintf("%s %s: no entry, want %s %v", h.port, grp, want.mode, srcs)
			case want.mode == "include" && (got.mode != "include" || !slices.Equal(got.fwd, srcs)):
				miss.text = fmt.Sprintf("%s %s: %v, want include %v", h.port, grp, got, srcs)
			case want.mode == "exclude" && (got.mode != "exclude" || !slices.Equal(got.blocked, srcs)):
				miss.text = fmt.Sprintf("%s %s: %v, want exclude blocked %v", h.port, grp, got, srcs)
				miss.lasting = m.ver[h.idx] < w.fam.newVer && got.mode == "exclude" && len(srcs) == 0 && len(got.blocked) > 0
			default:
				continue
			}
			diffs = append(diffs, miss)
		}
	}
	return diffs
}

func diffMissTexts(ms []diffMiss) []string {
	var out []string
	for _, x := range ms {
		out = append(out, x.text)
	}
	return out
}

// ---------------------------------------------------------------------------
// A step

type diffCell struct {
	s, g, r int // g == -1: the marker
}

type diffDeviation struct {
	step  int
	op    diffOp
	world string
	cell  diffCell
	want  bool
	got   uint64
	why   string // the RFC reading
	class string // what the world did, where known
}

type diffTally struct {
	steps      int
	cells      map[string]int
	deviations []diffDeviation
	// flooded are meshcast's copies beyond the RFC reading in groups it
	// does not snoop by design (IPv6 link-local scope): not deviations.
	flooded []diffDeviation
	partial []string
	notes   []string
}

func (a *diffTally) add(b diffTally) {
	if a.cells == nil {
		a.cells = map[string]int{}
	}
	a.steps += b.steps
	for k, v := range b.cells {
		a.cells[k] += v
	}
	a.deviations = append(a.deviations, b.deviations...)
	a.flooded = append(a.flooded, b.flooded...)
	a.partial = append(a.partial, b.partial...)
	a.notes = append(a.notes, b.notes...)
}

func diffRunStep(t *testing.T, n, total int, phase string, op diffOp, model *diffModel, worlds []*diffWorld) diffTally {
	t.Helper()
	fam := model.fam
	stepStart := time.Now()
	prev := model.clone()
	model.apply(op)
	kind := diffReportKind(prev, model, op)

	bases := make([][]diffCounts, len(worlds))
	for i, w := range worlds {
		bases[i] = w.counts(t)
	}
	// A host that turns to the older version with source state changes
	// right after one of its periodic reports of the newer version, in
	// each world: its older-version report then comes within one query
	// interval and response time (3s), before the source timers that
	// report set run out (GMI, 5s), so the state right after the change
	// is measured the same way in every run. (The bridge's INCLUDE state
	// of such a port decays: its source timers expire, the port group
	// goes, and the next older-version report recreates it as EXCLUDE
	// {}.)
	pace := op.kind == diffVersion && kind == diffReport(fam.oldVer) && prev.ver[op.host] == fam.newVer
	for i, w := range worlds {
		if pace {
			// A fresh base: the change follows a report sent now, not
			// one sent while the other world was being handled.
			c, err := w.hosts[op.host-1].readCounts(t)
			if err != nil {
				t.Fatal(err)
			}
			bases[i][op.host-1] = c
			if _, err := w.waitReport(t, op.host, diffReport(fam.newVer), bases[i]); err != nil {
				t.Fatalf("step %d (%v): waiting for a periodic report before the change: %v", n, op, err)
			}
			if c, err = w.hosts[op.host-1].readCounts(t); err != nil {
				t.Fatal(err)
			}
			bases[i][op.host-1] = c
		}
		if err := w.apply(op); err != nil {
			t.Fatalf("step %d (%v) in %s: %v", n, op, w.name, err)
		}
	}
	tally := diffTally{steps: 1, cells: map[string]int{}}
	heard := make([]time.Time, len(worlds))
	var converged []string
	for i, w := range worlds {
		heard[i] = time.Now()
		if kind == "" {
			continue
		}
		at, err := w.waitReport(t, op.host, kind, bases[i])
		heard[i] = at
		converged = append(converged, fmt.Sprintf("%s %s report %v", w.name, kind, at.Sub(stepStart).Round(10*time.Millisecond)))
		if err != nil {
			// A report meshcast does not act on (a group it does not
			// snoop) is the host's business.
			if w.kind == "meshcast" && (op.kind == diffVersion || !fam.isMeshcastFlooded(op.group)) {
				t.Errorf("step %d (%v): %v", n, op, err)
			} else {
				tally.notes = append(tally.notes, fmt.Sprintf("step %d: %v", n, err))
			}
		}
	}
	var mdb diffMDB
	for i, w := range worlds {
		switch w.kind {
		case "meshcast":
			deadline := time.Now().Add(diffMeshcastWait)
			for {
				miss := w.meshcastMismatch(model)
				if miss == "" {
					converged = append(converged, fmt.Sprintf("meshcast tables %v", time.Since(stepStart).Round(10*time.Millisecond)))
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("step %d (%v): meshcast tables did not reach the RFC state in %v: %s", n, op, diffMeshcastWait, miss)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		case "bridge":
			deadline := heard[i].Add(diffBridgeWait)
			switch {
			case op.settle, op.kind == diffVersion && op.ver == fam.newVer:
				// Back to the newer version: the state of the
				// older-version reports lasts a GMI after the last of
				// them (RFC 3376 7.3.2, RFC 3810 8.3.2; the bridge's
				// EXCLUDE group timer), as in meshcast.
				deadline = heard[i].Add(diffSettleWait)
			case op.kind == diffVersion:
				deadline = heard[i].Add(diffBridgeVersionWait)
			}
			// A lasting difference the previous step ended with, on a
			// host and group this step leaves alone, is not waited
			// for: it does not go away by itself.
			var miss []diffMiss
			for {
				var err error
				if mdb, err = w.mdb(t); err != nil {
					t.Fatal(err)
				}
				miss = w.bridgeMismatch(mdb, model)
				var wait, known []string
				for _, x := range miss {
					touched := op.host == x.hg.h && (op.kind == diffVersion || op.group == x.hg.g)
					if x.lasting && w.lasting[x.text] && !touched && !op.settle {
						known = append(known, x.text)
					} else {
						wait = append(wait, x.text)
					}
				}
				if len(wait) == 0 {
					c := fmt.Sprintf("bridge mdb %v", time.Since(stepStart).Round(10*time.Millisecond))
					if len(known) > 0 {
						c += fmt.Sprintf(" but for its lasting %s compatibility gap: %s", fam.verName(fam.oldVer), strings.Join(known, "; "))
					}
					converged = append(converged, c)
					break
				}
				if time.Now().After(deadline) {
					converged = append(converged, fmt.Sprintf("bridge mdb not at the RFC state: %s", strings.Join(diffMissTexts(miss), "; ")))
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			w.lasting = map[string]bool{}
			for _, x := range miss {
				if x.lasting {
					w.lasting[x.text] = true
				}
			}
		}
	}

	// Traffic: every host to every group, then the markers.
	before := make([][]diffCounts, len(worlds))
	for i, w := range worlds {
		before[i] = w.counts(t)
	}
	for _, w := range worlds {
		if err := w.sendAll(); err != nil {
			t.Fatalf("step %d: %s: send: %v", n, w.name, err)
		}
	}
	after := make([][]diffCounts, len(worlds))
	for i, w := range worlds {
		deadline := time.Now().Add(diffBarrierWait)
		for {
			after[i] = w.counts(t)
			missing := 0
			for r := 1; r <= diffHosts; r++ {
				for s := 1; s <= diffHosts; s++ {
					key := fmt.Sprintf("m %d", s)
					if s != r && after[i][r-1][key] <= before[i][r-1][key] {
						missing++
					}
				}
			}
			if missing == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(30 * time.Millisecond)
		}
	}

	// The matrix, and each world against the RFC reading.
	t.Logf("step %d/%d (%s): %v", n, total, phase, op)
	t.Logf("    hosts: %s", model.describe())
	t.Logf("    converged: %s", strings.Join(converged, ", "))
	for i, w := range worlds {
		for r := 1; r <= diffHosts; r++ {
			for s := 1; s <= diffHosts; s++ {
				for g := -1; g < len(fam.groups); g++ {
					key := fmt.Sprintf("d %d %d", s, g)
					want, why := false, ""
					if g == -1 {
						key = fmt.Sprintf("m %d", s)
						want, why = s != r, fam.markerWhy
						if s == r {
							why = "own traffic: never back out of its ingress port"
						}
					} else {
						want, why = model.expect(s, g, r, w.flood)
					}
					got := after[i][r-1].datagrams(before[i][r-1], key, fam.headers)
					tally.cells[w.name]++
					if per := uint64(diffPerCell); got > 0 && got < per {
						tally.partial = append(tally.partial, fmt.Sprintf("step %d %s: h%d got %d/%d of h%d to %s", n, w.name, r, got, per, s, fam.cellGroup(g)))
					}
					if (got > 0) == want {
						continue
					}
					d := diffDeviation{step: n, op: op, world: w.name, cell: diffCell{s, g, r}, want: want, got: got, why: why}
					if w.kind == "bridge" {
						d.class = diffClassify(w, mdb, model, d.cell)
					}
					if w.kind == "meshcast" && g >= 0 && fam.isMeshcastFlooded(g) && got > 0 && s != r {
						d.class = "flooded: meshcast does not snoop " + fam.groups[g].String() + " (link-local scope) and sends it to every peer"
						tally.flooded = append(tally.flooded, d)
						continue
					}
					tally.deviations = append(tally.deviations, d)
				}
			}
		}
	}
	// One line per group: the RFC reading, and each world where it differs.
	for g := -1; g < len(fam.groups); g++ {
		rfc := diffRow(func(s, r int) bool {
			if g == -1 {
				return s != r
			}
			want, _ := model.expect(s, g, r, true)
			return want
		})
		line := fmt.Sprintf("    %-*s rfc %s", fam.cellWidth(), fam.cellGroup(g), rfc)
		for i, w := range worlds {
			got := func(s, r int) bool {
				key := fmt.Sprintf("d %d %d", s, g)
				if g == -1 {
					key = fmt.Sprintf("m %d", s)
				}
				return after[i][r-1].datagrams(before[i][r-1], key, fam.headers) > 0
			}
			wantOf := func(s, r int) bool {
				if g == -1 {
					return s != r
				}
				want, _ := model.expect(s, g, r, w.flood)
				return want
			}
			row, wantRow := diffRow(got), diffRow(wantOf)
			superset := g >= 0 && w.kind == "meshcast" && fam.isMeshcastFlooded(g)
			for s := 1; s <= diffHosts && superset; s++ {
				for r := 1; r <= diffHosts; r++ {
					superset = superset && (!wantOf(s, r) || got(s, r)) && (s != r || !got(s, r))
				}
			}
			switch {
			case row == wantRow && g >= 0 && len(model.members(g)) == 0 && !w.flood:
				line += fmt.Sprintf(" | %s %s (unregistered: no flooding)", w.name, row)
			case row == wantRow:
				line += fmt.Sprintf(" | %s =", w.name)
			case superset:
				line += fmt.Sprintf(" | %s %s (not snooped: floods, a superset)", w.name, row)
			default:
				line += fmt.Sprintf(" | %s %s DEVIATES", w.name, row)
			}
		}
		t.Logf("%s", line)
	}
	var mcDev []string
	for _, d := range tally.deviations {
		if d.world == "meshcast" {
			mcDev = append(mcDev, fmt.Sprintf("traffic from h%d to %s %s h%d (%d datagrams); RFC: %s",
				d.cell.s, fam.cellGroup(d.cell.g), map[bool]string{true: "must reach", false: "must not reach"}[d.want], d.cell.r, d.got, d.why))
		}
	}
	if total := len(mcDev); total > 0 {
		const show = 6
		more := ""
		if total > show {
			more = fmt.Sprintf("\n    ... and %d more", len(mcDev)-show)
			mcDev = mcDev[:show]
		}
		t.Errorf("step %d (%v): meshcast deviates from the RFC in %d cells:\n    %s%s", n, op, total, strings.Join(mcDev, "\n    "), more)
	}
	return tally
}

func (f *diffFamily) cellGroup(g int) string {
	if g == -1 {
		return f.marker.String()
	}
	return f.groups[g].String()
}

// cellWidth is the width of the group column of the per-step lines.
func (f *diffFamily) cellWidth() int {
	w := len(f.marker.String())
	for _, g := range f.groups {
		w = max(w, len(g.String()))
	}
	return w
}

// diffRow renders who gets whose traffic: "h1>3,4 h2>- ...".
func diffRow(get func(s, r int) bool) string {
	var parts []string
	for s := 1; s <= diffHosts; s++ {
		var rs []string
		for r := 1; r <= diffHosts; r++ {
			if get(s, r) {
				rs = append(rs, strconv.Itoa(r))
			}
		}
		if len(rs) == 0 {
			rs = []string{"-"}
		}
		parts = append(parts, fmt.Sprintf("h%d>%s", s, strings.Join(rs, ",")))
	}
	return strings.Join(parts, " ")
}

// diffClassify says what the bridge did with a cell, from its mdb.
func diffClassify(w *diffWorld, s diffMDB, m *diffModel, c diffCell) string {
	fam := w.fam
	if c.g < 0 {
		return "link-local group not flooded"
	}
	grp := fam.groups[c.g]
	pg, ok := s.pg[diffHG{c.r, c.g}]
	src := w.addrOf(c.s)
	port := w.hosts[c.r-1].port
	oldName, newName := fam.verName(fam.oldVer), fam.verName(fam.newVer)
	switch {
	case c.s == c.r:
		return "sent back out of the ingress port"
	case len(m.members(c.g)) == 0:
		return "unregistered group flooded"
	case !ok && m.ver[c.r] < fam.newVer:
		return fmt.Sprintf("no %s compatibility: %s lost its entry for %s: the %s source timers ran out while h%d reports %s, "+
			"which does not refresh them; all traffic is lost until its next %s report recreates the entry as EXCLUDE {}", oldName, port, grp, newName, c.r, oldName, oldName)
	case !ok:
		return fmt.Sprintf("no entry for %s on %s", grp, port)
	case m.ver[c.r] < fam.newVer && (pg.mode == "include" || len(pg.blocked) > 0):
		return fmt.Sprintf("no %s compatibility: %s keeps its %s source state (%v) after h%d turned %s", oldName, port, newName, pg, c.r, oldName)
	case m.ver[c.r] < fam.newVer && pg.mode == "exclude":
		if ports, sg := s.sg[[2]netip.Addr{grp, src}]; sg && !slices.Contains(ports, port) {
			return fmt.Sprintf("%s member %s not added to the existing (%s, %s) entry (ports %v)", oldName, port, src, grp, ports)
		}
	}
	return fmt.Sprintf("bridge state of %s: %v", port, pg)
}

func (a *diffTally) report(t *testing.T, mc, ref *diffWorld) {
	t.Helper()
	fam := mc.fam
	var mcDev, refDev []diffDeviation
	for _, d := range a.deviations {
		if d.world == mc.name {
			mcDev = append(mcDev, d)
		} else {
			refDev = append(refDev, d)
		}
	}
	t.Logf("summary: %d steps; cells compared: meshcast %d, bridge %d (sender x group x host, markers included)",
		a.steps, a.cells[mc.name], a.cells[ref.name])
	t.Logf("unregistered groups: meshcast floods them (its default, --unregistered flood); the bridge, once its querier runs, sends them to router ports only (none here); RFC 4541 2.1.2(3) allows both, so each is compared with its own policy")
	t.Logf("meshcast deviations from the RFC reading: %d", len(mcDev))
	if len(mcDev) > 40 {
		mcDev = mcDev[:40]
		t.Logf("    (the first 40)")
	}
	for _, d := range mcDev {
		t.Logf("    step %d %v: h%d>%s>h%d rfc %v meshcast %d: %s", d.step, d.op, d.cell.s, fam.cellGroup(d.cell.g), d.cell.r, d.want, d.got, d.why)
	}
	t.Logf("kernel bridge deviations from the RFC reading: %d", len(refDev))
	if len(refDev) > 0 {
		t.Logf("    %-4s %-58s %-28s %-4s %-6s %s", "step", "action", "cell (src>group>host)", "rfc", "bridge", "RFC reading / what the bridge did")
	}
	classes := map[string]int{}
	oldName, newName := fam.verName(fam.oldVer), fam.verName(fam.newVer)
	for _, d := range refDev {
		t.Logf("    %-4d %-58s %-28s %-4s %-6d %s\n         -> %s", d.step, d.op.String(), fmt.Sprintf("h%d>%s>h%d", d.cell.s, fam.cellGroup(d.cell.g), d.cell.r),
			map[bool]string{true: "yes", false: "no"}[d.want], d.got, d.why, d.class)
		c := d.class
		switch {
		case strings.HasPrefix(c, "no "+oldName+" compatibility"):
			c = fmt.Sprintf("no %s compatibility for a port with %s source state (%s)", oldName, newName, fam.rfcCompat)
		case strings.HasPrefix(c, oldName+" member"):
			c = oldName + " member not added to existing source-specific (S,G) entries"
		}
		if d.cell.g >= 0 && fam.isMeshcastFlooded(d.cell.g) {
			c = fam.groups[d.cell.g].String() + " (link-local scope): " + c
		}
		classes[c]++
	}
	for _, c := range slices.Sorted(func(yield func(string) bool) {
		for c := range classes {
			if !yield(c) {
				return
			}
		}
	}) {
		t.Logf("    kernel deviation class: %d cells: %s", classes[c], c)
	}
	if fam.meshcastFloods != nil {
		a.reportFlooded(t, mc, ref, refDev)
	}
	if len(a.partial) > 0 {
		t.Logf("partial deliveries (%d): %s", len(a.partial), strings.Join(a.partial, "; "))
	}
	for _, nt := range a.notes {
		t.Logf("note: %s", nt)
	}
}

// reportFlooded reports the groups meshcast does not snoop by design
// apart: its copies beyond the RFC reading there, the copies it owed a
// joined host (failures, counted with the deviations above), and the
// bridge's deviations there.
func (a *diffTally) reportFlooded(t *testing.T, mc, ref *diffWorld, refDev []diffDeviation) {
	t.Helper()
	fam := mc.fam
	for g, grp := range fam.groups {
		if !fam.isMeshcastFlooded(g) {
			continue
		}
		cells := a.steps * diffHosts * diffHosts
		flooded, missed, bridge := 0, 0, 0
		steps := map[int]bool{}
		for _, d := range a.flooded {
			if d.cell.g == g {
				flooded++
				steps[d.step] = true
			}
		}
		for _, d := range a.deviations {
			if d.cell.g == g && d.world == mc.name {
				missed++
			}
		}
		for _, d := range refDev {
			if d.cell.g == g {
				bridge++
			}
		}
		t.Logf("link-local column %s (%d cells per world): RFC 4541 section 3 exempts only ff02::1 from snooping, so the %s snoops it; meshcast sends all of ff02::/16 to every peer by design (a superset): "+
			"%d cells flooded beyond the RFC reading in %d steps (not failures); %d cells where meshcast missed a host the RFC reading requires (failures); %d bridge deviations",
			grp, cells, ref.name, flooded, len(steps), missed, bridge)
	}
}
