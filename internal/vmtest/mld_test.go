package vmtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// testMLD runs the mld cell: the three daemons with IPv6 overlay addresses
// and --unregistered drop, default flags otherwise. Once every TAP's IPv6
// addresses are usable, node 2 joins group6 (any source, an MLDv2 report
// from node 2's kernel) and node 3 joins nothing. When node 1's daemon
// lists node 2 as a member, node 1 streams count datagrams to the group.
// Node 2 must receive every one, node 3's underlay carry at most mldLeak
// packets during the stream (the stream is pruned away from it), and node
// 1's MLD querier be active with queries sent.
func testMLD(t *testing.T, encap string, bins [2]string, count int) {
	meshcast, probe := bins[0], bins[1]
	release, tapGSO := kernelRelease(t, 6, 2)
	start := time.Now()
	res := &result{kernel: release, encap: encap, cell: "mld", inUse: map[string]string{},
		underlay3: -1, ipv6: -1, member: -1, querier: "absent"}
	var m *mesh
	defer func() {
		if t.Failed() && m != nil {
			m.logIPv6(t)
		}
		res.seconds = time.Since(start).Seconds()
		res.pass = !t.Failed()
		fmt.Println(res.line())
	}()

	nstest.LeakCheck(t)
	m = startMesh(t, res, meshcast, encap, nstest.UnderlayIPv4, inventory6, "--unregistered", "drop")
	nodes := m.nodes
	began := time.Now()
	if err := m.waitOverlay6(t); err != nil {
		res.fail(t, "%v", err)
		return
	}
	res.ipv6 = time.Since(began)
	t.Logf("IPv6 on every TAP usable %v after the daemons forwarded", res.ipv6.Round(time.Millisecond))

	recv := nodes[1].Start(t, probe, "recv", "--iface", tapName, "--group", group6, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(count), "--timeout", "10m", "--json")
	if err := recv.WaitOutput("ready\n", time.Minute); err != nil {
		res.fail(t, "node 2 could not join %s: %v: %s", group6, err, strings.TrimSpace(recv.Output()))
		return
	}
	// With --unregistered drop nothing crosses to node 2 before node 1
	// knows of the member, and nothing can reach node 3 after.
	took, err := waitMembers(t, nodes[0], meshcast, m.ctl[0], group6, []string{underlay(nodes[1]).String()})
	if err != nil {
		res.fail(t, "MLD: node 2 joined %s, but %v", group6, err)
		return
	}
	res.member = took
	t.Logf("node 1 lists node 2 as a member of %s %v after node 2's join", group6, took.Round(time.Millisecond))

	u3 := nodes[2].MustCounters(t, nstest.NodeLink)
	before := m.tapCounters(t)
	out, err := nodes[0].Exec(t, probe, "send", "--iface", tapName, "--group", group6, "--port", strconv.Itoa(port),
		"--count", strconv.Itoa(count), "--rate", strconv.Itoa(rate6), "--size", strconv.Itoa(size), "--json")
	var sr struct {
		Sent int `json:"sent"`
	}
	if jerr := json.Unmarshal([]byte(lastJSON(out)), &sr); jerr != nil || err != nil {
		res.fail(t, "node 1's send to %s: %v: %s", group6, err, strings.TrimSpace(out))
	}
	res.sent = sr.Sent

	got, err := receiverResult(recv, time.Now().Add(drainWait))
	res.received[0], res.lost[0] = got, count-got
	if err != nil {
		res.fail(t, "receiver on node 2: %v", err)
	}
	// Node 2's receiver is done: whatever node 1 sent node 3 arrived too.
	res.underlay3 = int(nodes[2].MustCounters(t, nstest.NodeLink).Sub(u3).RxPackets)
	after := m.tapCounters(t)
	for i := range after {
		res.frames[i] = after[i].Sub(before[i]).RxPackets
	}
	sts := m.report(t, res, release, encap, tapGSO)
	if st := sts[0]; st != nil && st.MLDQuerier != nil {
		res.querier = fmt.Sprintf("%t/%d", st.MLDQuerier.Active, st.MLDQuerier.Sent)
	}

	t.Logf("%s on %s: sent %d to %s; member node 2 received %d (%d TAP frames); non-member node 3's underlay received %d packets, its TAP %d frames; node 1's mld_querier %s",
		encap, release, res.sent, group6, got, res.frames[0], res.underlay3, res.frames[1], res.querier)
	if res.sent != count {
		res.fail(t, "node 1 sent %d of %d datagrams", res.sent, count)
	}
	if got != count {
		res.fail(t, "member node 2 received %d of %d datagrams to %s (tap_write drops %d)", got, count, group6, res.tapWrite[0])
	}
	if res.underlay3 > mldLeak {
		res.fail(t, "non-member node 3's underlay received %d packets during a %d-datagram stream to %s, want at most %d: not pruned",
			res.underlay3, count, group6, mldLeak)
	}
	switch st := sts[0]; {
	case st == nil:
		res.fail(t, "node 1: no status, so no mld_querier")
	case st.MLDQuerier == nil:
		res.fail(t, "node 1's status has no mld_querier: no MLD querier on a TAP with an IPv6 overlay address")
	case !st.MLDQuerier.Active || st.MLDQuerier.Sent == 0:
		res.fail(t, "node 1's mld_querier is active=%t with %d queries sent, want active with queries sent",
			st.MLDQuerier.Active, st.MLDQuerier.Sent)
	}
}

// waitOverlay6 waits until every node's TAP has its IPv6 overlay address,
// fd00:198:19::K/64, and a link-local one, and duplicate address detection
// (about a second) has ended on both: neither tentative nor failed.
func (m *mesh) waitOverlay6(t *testing.T) error {
	t.Helper()
	deadline := time.Now().Add(overlayWait)
	for i, n := range m.nodes {
		want := fmt.Sprintf("fd00:198:19::%d/64", i+1)
		for {
			out, err := n.Exec(t, "ip", "-6", "-o", "addr", "show", "dev", tapName)
			if err != nil {
				return fmt.Errorf("node %d: ip -6 addr: %v", i+1, err)
			}
			if strings.Contains(out, "dadfailed") {
				return fmt.Errorf("node %d: duplicate address detection failed on %s: %s", i+1, tapName, oneLine(out))
			}
			if strings.Contains(out, want) && strings.Contains(out, "inet6 fe80::") && !strings.Contains(out, "tentative") {
				break
			}
			if time.Now().After(deadline) {
				if strings.TrimSpace(out) == "" {
					out = "no IPv6 address"
				}
				return fmt.Errorf("node %d: IPv6 on %s: want %s and a link-local address, not tentative, after %v: %s",
					i+1, tapName, want, overlayWait, oneLine(out))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// logIPv6 logs, for a failed mld cell, each node's IPv6 state of its TAP
// (addresses, multicast addresses, disable_ipv6) and its daemon's log.
func (m *mesh) logIPv6(t *testing.T) {
	t.Helper()
	for i, n := range m.nodes {
		var b strings.Builder
		for _, args := range [][]string{
			{"ip", "-6", "addr", "show", "dev", tapName},
			{"ip", "-6", "maddr", "show", "dev", tapName},
			{"cat", "/proc/sys/net/ipv6/conf/" + tapName + "/disable_ipv6"},
		} {
			out, err := n.Exec(t, args...)
			fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), out)
			if err != nil {
				fmt.Fprintf(&b, "(%v)\n", err)
			}
		}
		t.Logf("node %d:\n%sdaemon log:\n%s", i+1, b.String(), m.daemons[i].Output())
	}
}

// oneLine returns out with its lines joined by " | ", without the
// backslashes that ip -o puts for line breaks.
func oneLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		f := slices.DeleteFunc(strings.Fields(l), func(s string) bool { return s == "\\" })
		lines[i] = strings.Join(f, " ")
	}
	return strings.Join(lines, " | ")
}
