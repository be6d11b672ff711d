package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests run gsoSender.group, the sorting of a batch's VXLAN copies
// into segmentation-offload runs, without a socket and without root: the
// sender's flow sockets are fakes that refuse any I/O, and a port listed
// as raw has no socket, as when the kernel refused to bind it.

// noIO is a flow socket's connection that must never be used: group only
// asks whether a port has one.
type noIO struct{}

var errNoIO = errors.New("grouping test: no I/O")

func (noIO) Control(func(fd uintptr)) error    { return errNoIO }
func (noIO) Read(func(fd uintptr) bool) error  { return errNoIO }
func (noIO) Write(func(fd uintptr) bool) error { return errNoIO }

var _ syscall.RawConn = noIO{}

// groupingSender returns a gsoSender with a fake socket for every source
// port in msgs but those in raw, which have none. It opens nothing.
func groupingSender(msgs []Message, raw ...uint16) *gsoSender {
	g := &gsoSender{local: netip.MustParseAddr("198.18.0.1"), socks: make(map[uint16]*flowSock), open: make(map[runKey]int)}
	addSockets(g, msgs, raw...)
	return g
}

// addSockets gives g a fake socket for every source port of msgs it has
// none for, but the ports in raw, which get none.
func addSockets(g *gsoSender, msgs []Message, raw ...uint16) {
	for _, m := range msgs {
		if len(m.Buf) < 2 {
			continue
		}
		sport := binary.BigEndian.Uint16(m.Buf)
		if _, ok := g.socks[sport]; ok {
			continue
		}
		s := &flowSock{rc: noIO{}}
		if slices.Contains(raw, sport) {
			s = &flowSock{}
		}
		g.socks[sport] = s
	}
}

// copyTo is n copies of one frame as VXLAN.Encap makes them: a UDP header
// with the flow's source port and destination port dport, the VXLAN
// header, and a frame, payload bytes after the UDP header in all, to dst.
type copyTo struct {
	sport, dport uint16
	dst          string
	payload      int // bytes after the UDP header: VXLAN header and frame
	n            int
}

// batch builds the messages of specs, in order.
func batch(specs ...copyTo) []Message {
	var msgs []Message
	for _, s := range specs {
		for range s.n {
			buf := make([]byte, UDPHeaderLen+s.payload)
			binary.BigEndian.PutUint16(buf[0:2], s.sport)
			binary.BigEndian.PutUint16(buf[2:4], s.dport)
			binary.BigEndian.PutUint16(buf[4:6], uint16(len(buf)))
			var addr netip.Addr
			if s.dst != "" {
				addr = netip.MustParseAddr(s.dst)
			}
			msgs = append(msgs, Message{Buf: buf, Addr: addr})
		}
	}
	return msgs
}

// fanout is frames copies of one flow to each of peers, in the order the
// engine makes them: every peer's copy of a frame before the next frame.
func fanout(sport uint16, payload, frames int, peers ...string) []Message {
	var specs []copyTo
	for range frames {
		for _, p := range peers {
			specs = append(specs, copyTo{sport: sport, dport: DefaultVXLANPort, dst: p, payload: payload, n: 1})
		}
	}
	return batch(specs...)
}

// run is a run as the tests expect it: its key, its segment size and the
// indexes in the batch of its copies, in sending order.
type run struct {
	sport, dport uint16
	dst          string
	seg          int
	msgs         []int
}

func (r run) String() string {
	return fmt.Sprintf("{%d->%s:%d seg %d, %d copies %v}", r.sport, r.dst, r.dport, r.seg, len(r.msgs), r.msgs)
}

// seq returns the indexes from, from+step, ... of n copies.
func seq(from, n, step int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = from + i*step
	}
	return s
}

// runsOf returns g's runs in sending order (g.order), walking each run's
// list, and checks the bookkeeping of each run against its messages.
func runsOf(t *testing.T, g *gsoSender, msgs []Message) []run {
	t.Helper()
	if len(g.order) != len(g.runs) {
		t.Fatalf("%d runs in the sending order, %d runs", len(g.order), len(g.runs))
	}
	var out []run
	for _, r := range g.order {
		gr := g.runs[r]
		var idx []int
		bytes := 0
		for i := gr.head; i >= 0; i = g.next[i] {
			idx = append(idx, i)
			bytes += len(msgs[i].Buf) - UDPHeaderLen
			if i == gr.tail {
				break
			}
			if len(idx) > len(msgs) {
				t.Fatalf("run %d: its list loops: %v...", r, idx[:8])
			}
		}
		if gr.count != len(idx) || gr.bytes != bytes {
			t.Errorf("run %d: count %d bytes %d, but its list holds %d copies of %d bytes", r, gr.count, gr.bytes, len(idx), bytes)
		}
		out = append(out, run{sport: gr.key.sport, dport: gr.key.dport, dst: gr.key.dst.String(), seg: gr.seg, msgs: idx})
	}
	return out
}

func TestGSOGroup(t *testing.T) {
	const (
		a, b, c, d = "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"
		p          = DefaultVXLANPort
	)
	tests := []struct {
		name   string
		msgs   []Message
		raw    []uint16 // source ports without a socket
		want   []run
		rawAt  []int // copies sent one by one, in order
		failed []int // copies marked failed (EINVAL)
	}{
		{
			name: "one flow to one peer",
			msgs: batch(copyTo{1000, p, a, 200, 16}),
			want: []run{{1000, p, a, 200, seq(0, 16, 1)}},
		},
		{
			name: "one copy is a run of one",
			msgs: batch(copyTo{1000, p, a, 200, 1}),
			want: []run{{1000, p, a, 200, []int{0}}},
		},
		{
			name: "fanout 4: one run per peer, in the order opened",
			msgs: fanout(1000, 300, 16, a, b, c, d),
			want: []run{
				{1000, p, a, 300, seq(0, 16, 4)},
				{1000, p, b, 300, seq(1, 16, 4)},
				{1000, p, c, 300, seq(2, 16, 4)},
				{1000, p, d, 300, seq(3, 16, 4)},
			},
		},
		{
			name: "source ports: runs sorted by port, opening order kept within a port",
			msgs: batch(
				copyTo{2000, p, b, 100, 2}, // 0, 1
				copyTo{1000, p, b, 100, 2}, // 2, 3
				copyTo{2000, p, a, 100, 1}, // 4
				copyTo{1000, p, a, 100, 1}, // 5
				copyTo{2000, p, b, 100, 1}, // 6
			),
			want: []run{
				{1000, p, b, 100, []int{2, 3}},
				{1000, p, a, 100, []int{5}},
				{2000, p, b, 100, []int{0, 1, 6}},
				{2000, p, a, 100, []int{4}},
			},
		},
		{
			name: "destination ports differ: separate runs",
			msgs: batch(copyTo{1000, p, a, 100, 1}, copyTo{1000, 8472, a, 100, 1}, copyTo{1000, p, a, 100, 1}),
			want: []run{{1000, p, a, 100, []int{0, 2}}, {1000, 8472, a, 100, []int{1}}},
		},
		{
			name: "a shorter copy ends its run; the next copy opens another",
			msgs: batch(copyTo{1000, p, a, 500, 3}, copyTo{1000, p, a, 120, 1}, copyTo{1000, p, a, 500, 2}),
			want: []run{{1000, p, a, 500, []int{0, 1, 2, 3}}, {1000, p, a, 500, []int{4, 5}}},
		},
		{
			name: "a shorter copy of one peer leaves the others' runs open",
			msgs: batch(copyTo{1000, p, a, 500, 1}, copyTo{1000, p, b, 500, 1}, copyTo{1000, p, a, 100, 1},
				copyTo{1000, p, b, 500, 1}, copyTo{1000, p, a, 500, 1}),
			want: []run{{1000, p, a, 500, []int{0, 2}}, {1000, p, b, 500, []int{1, 3}}, {1000, p, a, 500, []int{4}}},
		},
		{
			name: "a longer copy opens a run of its own size, which takes shorter ones",
			msgs: batch(copyTo{1000, p, a, 100, 2}, copyTo{1000, p, a, 300, 2}, copyTo{1000, p, a, 100, 1}, copyTo{1000, p, a, 300, 1}),
			want: []run{{1000, p, a, 100, []int{0, 1}}, {1000, p, a, 300, []int{2, 3, 4}}, {1000, p, a, 300, []int{5}}},
		},
		{
			name: "at most 64 segments",
			msgs: batch(copyTo{1000, p, a, 100, 130}),
			want: []run{{1000, p, a, 100, seq(0, 64, 1)}, {1000, p, a, 100, seq(64, 64, 1)}, {1000, p, a, 100, []int{128, 129}}},
		},
		{
			name: "64 segments per run, per peer",
			msgs: fanout(1000, 100, 65, a, b),
			want: []run{
				{1000, p, a, 100, seq(0, 64, 2)},
				{1000, p, b, 100, seq(1, 64, 2)},
				{1000, p, a, 100, []int{128}},
				{1000, p, b, 100, []int{129}},
			},
		},
		{
			name: "at most 65507 bytes: 46 copies of 1400",
			msgs: batch(copyTo{1000, p, a, 1400, 50}),
			want: []run{{1000, p, a, 1400, seq(0, 46, 1)}, {1000, p, a, 1400, seq(46, 4, 1)}},
		},
		{
			name: "exactly 65507 bytes fit in one run",
			msgs: batch(copyTo{1000, p, a, 5039, 14}), // 13 x 5039 = 65507
			want: []run{{1000, p, a, 5039, seq(0, 13, 1)}, {1000, p, a, 5039, []int{13}}},
		},
		{
			name: "a short last copy that would pass the byte limit opens a run",
			msgs: batch(copyTo{1000, p, a, 8000, 8}, copyTo{1000, p, a, 1600, 1}), // 64000 + 1600 > 65507
			want: []run{{1000, p, a, 8000, seq(0, 8, 1)}, {1000, p, a, 1600, []int{8}}},
		},
		{
			name:  "a flow without a socket goes raw, in order; the others still group",
			msgs:  batch(copyTo{3000, p, a, 200, 2}, copyTo{1000, p, a, 200, 2}, copyTo{3000, p, b, 200, 1}),
			raw:   []uint16{3000},
			want:  []run{{1000, p, a, 200, []int{2, 3}}},
			rawAt: []int{0, 1, 4},
		},
		{
			name:  "every flow raw",
			msgs:  fanout(4000, 100, 3, a, b),
			raw:   []uint16{4000},
			rawAt: seq(0, 6, 1),
		},
		{
			name: "copies too short for VXLAN, or not to IPv4, fail",
			msgs: append(append(batch(copyTo{1000, p, a, 100, 1}),
				Message{Buf: make([]byte, UDPHeaderLen+VXLANHeaderLen-1), Addr: netip.MustParseAddr(a)},
				Message{Buf: batch(copyTo{1000, p, a, 100, 1})[0].Buf, Addr: netip.MustParseAddr("2001:db8::1")},
				Message{Buf: batch(copyTo{1000, p, a, 100, 1})[0].Buf}),
				batch(copyTo{1000, p, a, 100, 1})...),
			want:   []run{{1000, p, a, 100, []int{0, 4}}},
			failed: []int{1, 2, 3},
		},
		{
			name: "the shortest VXLAN copy: headers only",
			msgs: batch(copyTo{1000, p, a, VXLANHeaderLen, 3}),
			want: []run{{1000, p, a, VXLANHeaderLen, seq(0, 3, 1)}},
		},
		{
			name: "empty batch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := groupingSender(tt.msgs, tt.raw...)
			failed := g.group(tt.msgs)
			got := runsOf(t, g, tt.msgs)
			if !slices.EqualFunc(got, tt.want, func(x, y run) bool {
				return x.sport == y.sport && x.dport == y.dport && x.dst == y.dst && x.seg == y.seg && slices.Equal(x.msgs, y.msgs)
			}) {
				t.Errorf("runs:\n%s\nwant:\n%s", runsString(got), runsString(tt.want))
			}
			if !slices.Equal(g.rawAt, tt.rawAt) {
				t.Errorf("raw copies %v, want %v", g.rawAt, tt.rawAt)
			}
			for j, at := range g.rawAt {
				if &g.raw[j].Buf[0] != &tt.msgs[at].Buf[0] || g.raw[j].Addr != tt.msgs[at].Addr {
					t.Errorf("raw copy %d is not message %d", j, at)
				}
			}
			if failed != len(tt.failed) {
				t.Errorf("group returned %d failed, want %d", failed, len(tt.failed))
			}
			for i, m := range tt.msgs {
				bad := slices.Contains(tt.failed, i)
				if bad != (m.N == -1 && m.Errno == unix.EINVAL) {
					t.Errorf("message %d: N %d errno %v; want failed: %v", i, m.N, m.Errno, bad)
				}
			}
		})
	}
}

func runsString(rs []run) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\t%v\n", r)
	}
	return b.String()
}

// TestGSOGroupReuse checks that a sender's scratch state starts afresh at
// every batch: a second batch, smaller and of other flows, is grouped as
// if it were the first.
func TestGSOGroupReuse(t *testing.T) {
	first := fanout(1000, 300, 40, "198.18.0.2", "198.18.0.3")
	second := batch(copyTo{2000, DefaultVXLANPort, "198.18.0.3", 100, 3}, copyTo{3000, DefaultVXLANPort, "198.18.0.2", 100, 2})
	g := groupingSender(first, 3000)
	addSockets(g, second, 3000)
	g.group(first)
	if len(g.runs) != 2 {
		t.Fatalf("first batch: %d runs, want 2", len(g.runs))
	}
	if failed := g.group(second); failed != 0 {
		t.Fatalf("second batch: %d failed", failed)
	}
	got := runsOf(t, g, second)
	want := []run{{2000, DefaultVXLANPort, "198.18.0.3", 100, []int{0, 1, 2}}}
	if len(got) != 1 || got[0].String() != want[0].String() {
		t.Errorf("second batch: runs\n%s\nwant\n%s", runsString(got), runsString(want))
	}
	if !slices.Equal(g.rawAt, []int{3, 4}) || len(g.raw) != 2 {
		t.Errorf("second batch: raw copies %v (%d), want [3 4]", g.rawAt, len(g.raw))
	}
}

// TestGSOGroupAllocs proves that grouping a batch allocates nothing once
// the sender has seen a batch as large.
func TestGSOGroupAllocs(t *testing.T) {
	msgs := append(fanout(1000, 1400, 16, "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"),
		batch(copyTo{3000, DefaultVXLANPort, "198.18.0.2", 100, 8})...)
	g := groupingSender(msgs, 3000)
	g.group(msgs)
	if n := testing.AllocsPerRun(100, func() { g.group(msgs) }); n != 0 {
		t.Errorf("%v allocations per batch, want 0", n)
	}
}

// FuzzGSOGroup groups batches made from the input and checks what every
// grouping must hold: each valid copy is in exactly one run or sent raw;
// a run has one key, at most maxGSOSegments copies and maxGSOBytes of
// payload, copies of its segment size but the last, which may be shorter,
// in batch order; runs go out sorted by source port; and the runs of one
// key, read in sending order, keep the batch order of its copies.
func FuzzGSOGroup(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 2, 1})
	f.Add(slices.Repeat([]byte{1, 2, 3, 9}, 70))
	f.Add([]byte{7, 0, 255, 3, 7, 0, 255, 3, 7, 0, 10, 3, 7, 0, 255, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		// Four bytes a copy: source port (of 5; port 5 has no socket),
		// destination (of 4, the last one IPv6), destination port (of 2),
		// payload size (short, small, odd or large).
		sizes := []int{3, 40, 99, 700, 1400, 5039, 9000, 16}
		var msgs []Message
		for ; len(in) >= 4 && len(msgs) < 512; in = in[4:] {
			sport := 1000 + uint16(in[0]%6)
			dst := []string{"198.18.0.2", "198.18.0.3", "198.18.0.4", "2001:db8::1"}[in[1]%4]
			dport := []uint16{DefaultVXLANPort, 8472}[in[2]%2]
			payload := sizes[in[3]%8] + int(in[2]>>1)%3
			msgs = append(msgs, batch(copyTo{sport, dport, dst, payload, 1})...)
		}
		g := groupingSender(msgs, 1005)
		failed := g.group(msgs)
		seen := make([]int, len(msgs))
		nfailed := 0
		for i, m := range msgs {
			if m.N == -1 && m.Errno == unix.EINVAL {
				nfailed++
				seen[i]++
				if len(m.Buf) >= UDPHeaderLen+VXLANHeaderLen && m.Addr.Is4() {
					t.Errorf("message %d failed, but it is a valid copy", i)
				}
			}
		}
		if nfailed != failed {
			t.Errorf("group returned %d failed, %d messages are marked", failed, nfailed)
		}
		for _, at := range g.rawAt {
			seen[at]++
			if binary.BigEndian.Uint16(msgs[at].Buf) != 1005 {
				t.Errorf("message %d sent raw, but its port has a socket", at)
			}
		}
		prevSport := uint16(0)
		lastOfKey := map[runKey]int{}
		for _, r := range runsOf(t, g, msgs) {
			if r.sport < prevSport {
				t.Errorf("run of port %d after a run of port %d", r.sport, prevSport)
			}
			prevSport = r.sport
			if r.sport == 1005 {
				t.Errorf("a run of port 1005, which has no socket")
			}
			if len(r.msgs) > maxGSOSegments {
				t.Errorf("a run of %d copies", len(r.msgs))
			}
			total := 0
			for j, i := range r.msgs {
				seen[i]++
				m := msgs[i]
				key := runKey{sport: binary.BigEndian.Uint16(m.Buf[0:2]), dport: binary.BigEndian.Uint16(m.Buf[2:4]), dst: m.Addr}
				if key.sport != r.sport || key.dport != r.dport || key.dst.String() != r.dst {
					t.Errorf("message %d (%v) in run %v", i, key, r)
				}
				plen := len(m.Buf) - UDPHeaderLen
				total += plen
				if j == 0 && plen != r.seg {
					t.Errorf("run %v: its first copy has %d bytes", r, plen)
				}
				if (j < len(r.msgs)-1 && plen != r.seg) || plen > r.seg {
					t.Errorf("run %v: copy %d of %d has %d bytes", r, j, len(r.msgs), plen)
				}
				if last, ok := lastOfKey[key]; ok && i <= last {
					t.Errorf("message %d of %v sent after message %d", i, key, last)
				}
				lastOfKey[key] = i
			}
			if total > maxGSOBytes {
				t.Errorf("run %v: %d bytes", r, total)
			}
		}
		for i, n := range seen {
			if n != 1 {
				t.Errorf("message %d is in %d places (runs, raw, failed), want 1", i, n)
			}
		}
	})
}

// TestFlowSocketRetry checks that a flow whose source port was held by
// another socket (the meshcast this one took over from, until it exits)
// gets its own socket, and segmentation offload, once the port is free.
func TestFlowSocketRetry(t *testing.T) {
	holder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sport := uint16(holder.LocalAddr().(*net.UDPAddr).Port)
	g := newGSOSender(netip.MustParseAddr("127.0.0.1"), newBatchIO(4), nil, nil)
	s := g.sock(sport)
	if s.rc != nil {
		t.Fatalf("flow socket on port %d opened while another socket holds the port", sport)
	}
	if s.retryAt.IsZero() {
		t.Fatalf("a flow socket that could not be opened is never tried again")
	}
	if g.sock(sport) != s || s.rc != nil {
		t.Fatalf("a flow socket was tried again before its retry time")
	}
	holder.Close()
	s.retryAt = time.Now().Add(-time.Millisecond)
	if got := g.sock(sport); got != s || s.rc == nil {
		t.Fatalf("flow socket on port %d not opened once the port is free", sport)
	}
	if !s.retryAt.IsZero() {
		t.Errorf("retry time left on an open flow socket")
	}
	s.file.Close()
}
