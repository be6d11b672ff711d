package ping

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const us = time.Microsecond

func TestNewStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent int
		rtts []time.Duration
		want Stats
	}{
		{"nothing sent", 0, nil, Stats{}},
		{"nothing answered", 5, nil, Stats{Sent: 5}},
		{"one", 3, []time.Duration{700 * us}, Stats{Sent: 3, Received: 1, Min: 700 * us, Avg: 700 * us, Max: 700 * us}},
		// mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, /8 = 4, sqrt 2
		{"population stddev", 8, []time.Duration{2, 4, 4, 4, 5, 5, 7, 9}, Stats{Sent: 8, Received: 8, Min: 2, Avg: 5, Max: 9, Stddev: 2}},
		{"unordered", 5, []time.Duration{530 * us, 412 * us, 702 * us, 476 * us}, Stats{
			Sent: 5, Received: 4, Min: 412 * us, Avg: 530 * us, Max: 702 * us,
			// deviations 0, -118, 172, -54 µs: sqrt((0+13924+29584+2916)/4) µs
			Stddev: 107731 * time.Nanosecond,
		}},
		{"rounds the mean", 3, []time.Duration{1, 2}, Stats{Sent: 3, Received: 2, Min: 1, Avg: 2, Max: 2, Stddev: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newStats(tc.sent, tc.rtts); got != tc.want {
				t.Fatalf("newStats:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		s    Stats
		want float64
	}{
		{Stats{}, 0},
		{Stats{Sent: 5, Received: 5}, 0},
		{Stats{Sent: 5, Received: 4}, 20},
		{Stats{Sent: 5}, 100},
		{Stats{Sent: 3, Received: 2}, 100.0 / 3},
	} {
		if got := tc.s.Loss(); got != tc.want {
			t.Errorf("%+v.Loss() = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestFormatLoss(t *testing.T) {
	for _, tc := range []struct {
		sent, received int
		want           string
	}{
		{0, 0, "0"},
		{5, 5, "0"},
		{5, 0, "100"},
		{4, 3, "25"},
		{3, 2, "33.3"},
		{3, 1, "66.7"},
		{8, 7, "12.5"},
		{10000, 9999, "0.1"},   // 0.01%: not shown as no loss
		{10000, 1, "99.9"},     // 99.99%: not shown as total loss
		{2000, 1999, "0.1"},    // 0.05%
		{1000, 999, "0.1"},     // exactly 0.1%
		{100000, 99999, "0.1"}, // 0.001%
	} {
		if got := formatLoss(Stats{Sent: tc.sent, Received: tc.received}); got != tc.want {
			t.Errorf("%d/%d: %q, want %q", tc.sent, tc.received, got, tc.want)
		}
	}
}

func TestWrite(t *testing.T) {
	results := []Result{
		{
			Target:    Target{Name: "198.18.0.2", Overlay: netip.MustParseAddr("198.19.0.2")},
			Unicast:   Stats{Sent: 5, Received: 5, Min: 412 * us, Avg: 530 * us, Max: 702 * us, Stddev: 101 * us},
			Multicast: Stats{Sent: 5, Received: 4, Min: 1500 * us, Avg: 2 * time.Millisecond, Max: 12345678, Stddev: 250 * us},
		},
		{
			Target:    Target{Name: "198.18.0.10", Overlay: netip.MustParseAddr("198.19.0.10")},
			Unicast:   Stats{Sent: 5, Received: 1, Min: 1, Avg: 1, Max: 1},
			Multicast: Stats{Sent: 5},
		},
		{
			Target:    Target{Overlay: netip.MustParseAddr("198.19.0.3")},
			Unicast:   Stats{Sent: 3},
			Multicast: Stats{Sent: 3, Received: 2, Min: 1 * time.Millisecond, Avg: 1 * time.Millisecond, Max: 1 * time.Millisecond},
		},
	}
	var buf bytes.Buffer
	Write(&buf, results)
	want := strings.Join([]string{
		"198.18.0.2 (198.19.0.2)     unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms",
		"198.18.0.2 (198.19.0.2)   multicast, xmt/rcv/%loss = 5/4/20%, min/avg/max/std-dev = 1.500/2.000/12.346/0.250 ms",
		"198.18.0.10 (198.19.0.10)   unicast, xmt/rcv/%loss = 5/1/80%, min/avg/max/std-dev = 0.000/0.000/0.000/0.000 ms",
		"198.18.0.10 (198.19.0.10) multicast, xmt/rcv/%loss = 5/0/100%",
		"198.19.0.3                  unicast, xmt/rcv/%loss = 3/0/100%",
		"198.19.0.3                multicast, xmt/rcv/%loss = 3/2/33.3%, min/avg/max/std-dev = 1.000/1.000/1.000/0.000 ms",
		"3 peers: unicast ok for 2, multicast ok for 2",
		"",
	}, "\n")
	if got := buf.String(); got != want {
		t.Fatalf("Write:\n%s\nwant:\n%s", got, want)
	}
}

// TestWriteBriefExample checks the lines of the brief's example.
func TestWriteBriefExample(t *testing.T) {
	s := Stats{Sent: 5, Received: 5, Min: 412 * us, Avg: 530 * us, Max: 702 * us, Stddev: 101 * us}
	var buf bytes.Buffer
	Write(&buf, []Result{{Target: Target{Name: "198.18.0.2", Overlay: netip.MustParseAddr("198.19.0.2")}, Unicast: s, Multicast: s}})
	want := "198.18.0.2 (198.19.0.2)   unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms\n" +
		"198.18.0.2 (198.19.0.2) multicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms\n" +
		"1 peers: unicast ok for 1, multicast ok for 1\n"
	if got := buf.String(); got != want {
		t.Fatalf("Write:\n%s\nwant:\n%s", got, want)
	}
}

// TestWriteNotJoined checks the line that names the peers that lost
// multicast probes while not yet members of the ping group, and only them.
func TestWriteNotJoined(t *testing.T) {
	full := Stats{Sent: 5, Received: 5, Min: 1, Avg: 1, Max: 1}
	lossy := Stats{Sent: 5, Received: 4, Min: 1, Avg: 1, Max: 1}
	target := func(k byte, notJoined bool) Target {
		return Target{Name: fmt.Sprintf("198.18.0.%d", k), Overlay: netip.AddrFrom4([4]byte{198, 19, 0, k}), NotJoined: notJoined}
	}
	results := []Result{
		{Target: target(2, true), Unicast: full, Multicast: lossy},  // named
		{Target: target(3, true), Unicast: full, Multicast: full},   // joined in time: not named
		{Target: target(4, false), Unicast: full, Multicast: lossy}, // a member that lost probes: not named
		{Target: target(5, true), Unicast: full, Multicast: Stats{Sent: 5}},
	}
	var buf bytes.Buffer
	Write(&buf, results)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"4 peers: unicast ok for 4, multicast ok for 3",
		"multicast loss to 2 peers not yet known as members of the ping group when probing began (IGMP had not converged): " +
			"198.18.0.2 (198.19.0.2), 198.18.0.5 (198.19.0.5)",
	}
	if len(lines) != 2*len(results)+2 || !slices.Equal(lines[len(lines)-2:], want) {
		t.Fatalf("Write:\n%s\nwant it to end with:\n%s", buf.String(), strings.Join(want, "\n"))
	}
	// Without such a peer, no such line.
	buf.Reset()
	Write(&buf, results[1:3])
	if strings.Contains(buf.String(), "ping group") {
		t.Errorf("Write names no peer, yet says:\n%s", buf.String())
	}
}

// TestWrite6 checks the lines for IPv6 targets, and that the last line
// says that MLD, not IGMP, had not converged.
func TestWrite6(t *testing.T) {
	full := Stats{Sent: 5, Received: 5, Min: 412 * us, Avg: 530 * us, Max: 702 * us, Stddev: 101 * us}
	results := []Result{
		{Target: Target{Name: "198.18.0.2", Overlay: netip.MustParseAddr("fd00:198:19::2")}, Unicast: full, Multicast: full},
		{Target: Target{Name: "198.18.0.3", Overlay: netip.MustParseAddr("fd00:198:19::3"), NotJoined: true}, Unicast: full, Multicast: Stats{Sent: 5}},
	}
	var buf bytes.Buffer
	Write(&buf, results)
	want := "198.18.0.2 (fd00:198:19::2)   unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms\n" +
		"198.18.0.2 (fd00:198:19::2) multicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms\n" +
		"198.18.0.3 (fd00:198:19::3)   unicast, xmt/rcv/%loss = 5/5/0%, min/avg/max/std-dev = 0.412/0.530/0.702/0.101 ms\n" +
		"198.18.0.3 (fd00:198:19::3) multicast, xmt/rcv/%loss = 5/0/100%\n" +
		"2 peers: unicast ok for 2, multicast ok for 1\n" +
		"multicast loss to 1 peers not yet known as members of the ping group when probing began (MLD had not converged): 198.18.0.3 (fd00:198:19::3)\n"
	if got := buf.String(); got != want {
		t.Fatalf("Write:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteEmpty(t *testing.T) {
	var buf bytes.Buffer
	Write(&buf, nil)
	if got, want := buf.String(), "0 peers: unicast ok for 0, multicast ok for 0\n"; got != want {
		t.Fatalf("Write(nil) = %q, want %q", got, want)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

func TestWriteStopsAtError(t *testing.T) {
	w := &failWriter{}
	Write(w, []Result{{Unicast: Stats{Sent: 1}}, {Multicast: Stats{Sent: 1}}})
	if w.n != 1 {
		t.Fatalf("%d writes after the first error, want none", w.n-1)
	}
}

func TestOK(t *testing.T) {
	good := Result{Unicast: Stats{Sent: 5, Received: 1}, Multicast: Stats{Sent: 5, Received: 5}}
	noUni := Result{Unicast: Stats{Sent: 5}, Multicast: Stats{Sent: 5, Received: 5}}
	noMulti := Result{Unicast: Stats{Sent: 5, Received: 5}, Multicast: Stats{Sent: 5}}
	nothingSent := Result{}
	for _, tc := range []struct {
		name string
		r    []Result
		want bool
	}{
		{"no peers", nil, true},
		{"one good", []Result{good}, true},
		{"two good", []Result{good, good}, true},
		{"no unicast", []Result{good, noUni}, false},
		{"no multicast", []Result{noMulti, good}, false},
		{"nothing sent", []Result{nothingSent}, false},
	} {
		if got := OK(tc.r); got != tc.want {
			t.Errorf("%s: OK = %v, want %v", tc.name, got, tc.want)
		}
	}
}
