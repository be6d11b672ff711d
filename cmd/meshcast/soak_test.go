package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestSoak is the sustained-load test, run by `make soak` (SOAK=10m by
// default) and skipped otherwise: five nodes, a steady multicast stream
// from node 1 to nodes 2, 3 and 4 at 500 datagrams/s, and churn every 30 s
// (node 5 leaves the inventory, then comes back). Every 10 s it samples
// the resident memory, goroutines and open files of nodes 1 and 2 (from
// their metrics). At the end it reports the packets lost and the samples,
// and fails if anything was lost or any series grew beyond noise.
func TestSoak(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("MESHCAST_SOAK"))
	if err != nil || dur <= 0 {
		t.Skip("the soak test runs with MESHCAST_SOAK=DURATION (make soak)")
	}
	nt := nstest.NewNet(t, 5)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	all := "198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 demo,198.19.0.2/24\n198.18.0.3 demo,198.19.0.3/24\n198.18.0.4 demo,198.19.0.4/24\n"
	with5 := all + "198.18.0.5 demo,198.19.0.5/24\n"
	write := func(s string) {
		tmp := inv + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, inv); err != nil { // replaced whole, as tools do
			t.Fatal(err)
		}
	}
	write(with5)
	nodes := nt.Nodes()
	for i, n := range nodes {
		args := []string{"run", "--peers", inv, "--local", n.Underlay.String(), "--encap", "vxlan", "--control", ctlPath(t)}
		if i < 2 {
			args = append(args, "--metrics", "127.0.0.1:9977")
		}
		d := n.Start(t, bin, args...)
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, d.Output())
		}
	}
	const rate = 500
	count := int(dur.Seconds()) * rate
	var recvs []*nstest.Proc
	for _, n := range nodes[1:4] {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
			"--count", strconv.Itoa(count), "--timeout", (dur + time.Minute).String())
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		recvs = append(recvs, p)
	}
	time.Sleep(500 * time.Millisecond)
	sender := nodes[0].Start(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", strconv.Itoa(rate))

	type sample struct {
		at                   time.Duration
		rss, goroutines, fds [2]float64
	}
	var samples []sample
	scrape := func(n *nstest.Node) (rss, gor, fds float64) {
		var body string
		// Dial on the namespace's thread (an http.Client would dial from
		// another goroutine, outside the namespace).
		err := n.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:9977", 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			body = string(b)
			return err
		})
		if err != nil {
			t.Errorf("metrics of %s: %v", n, err)
			return
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			v, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "process_resident_memory_bytes":
				rss = v
			case "go_goroutines":
				gor = v
			case "process_open_fds":
				fds = v
			}
		}
		return
	}
	start := time.Now()
	churns := 0
	nextChurn := start.Add(30 * time.Second)
	for time.Since(start) < dur {
		time.Sleep(10 * time.Second)
		var s sample
		s.at = time.Since(start).Round(time.Second)
		for i := range 2 {
			s.rss[i], s.goroutines[i], s.fds[i] = scrape(nodes[i])
		}
		samples = append(samples, s)
		if time.Now().After(nextChurn) {
			churns++
			if churns%2 == 1 {
				write(all) // node 5 leaves
			} else {
				write(with5) // and comes back
			}
			nextChurn = nextChurn.Add(30 * time.Second)
		}
	}
	sender.Wait(2 * time.Minute)
	var lines []string
	lost := 0
	for i, p := range recvs {
		p.Wait(2 * time.Minute)
		got := received(t, p.Output())
		lost += count - got
		lines = append(lines, fmt.Sprintf("node %d received %d/%d", i+2, got, count))
	}
	lines = append(lines, fmt.Sprintf("%d inventory changes; samples (node 1 | node 2):", churns))
	for _, s := range samples {
		lines = append(lines, fmt.Sprintf("%6v  RSS %5.1f | %5.1f MiB  goroutines %3.0f | %3.0f  fds %3.0f | %3.0f",
			s.at, s.rss[0]/(1<<20), s.rss[1]/(1<<20), s.goroutines[0], s.goroutines[1], s.fds[0], s.fds[1]))
	}
	t.Logf("soak %v at %d datagrams/s to 3 subscribers, %d lost:\n%s", dur, rate, lost, strings.Join(lines, "\n"))
	if lost > 0 {
		t.Errorf("%d datagrams lost", lost)
	}
	if len(samples) >= 3 {
		// Compare the last sample with the second (after start-up).
		first, last := samples[1], samples[len(samples)-1]
		for i := range 2 {
			if last.rss[i] > first.rss[i]+8<<20 {
				t.Errorf("node %d: RSS grew from %.1f to %.1f MiB", i+1, first.rss[i]/(1<<20), last.rss[i]/(1<<20))
			}
			if last.goroutines[i] > first.goroutines[i]+5 {
				t.Errorf("node %d: goroutines grew from %.0f to %.0f", i+1, first.goroutines[i], last.goroutines[i])
			}
			if last.fds[i] > first.fds[i]+5 {
				t.Errorf("node %d: open files grew from %.0f to %.0f", i+1, first.fds[i], last.fds[i])
			}
		}
	}
}
