package metrics

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serve starts a Server on a free loopback port and closes it when the test
// ends, checking that its goroutine is gone.
func serve(t *testing.T, f *fakeState) (*Server, *http.Client) {
	t.Helper()
	srv, err := Serve("127.0.0.1:0", New(f.state, "v1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if stacks := serverGoroutines(); stacks != "" {
			t.Errorf("goroutines left after Close:\n%s", stacks)
		}
	})
	return srv, client
}

// serverGoroutines returns the stacks of goroutines that Serve started.
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/metrics.Serve") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}

// scrape fetches /metrics and parses it.
func scrape(client *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// value returns the value of the series of family name whose labels
// include labels (name=value pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestServe(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	srv, client := serve(t, f)
	if host, _, err := net.SplitHostPort(srv.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q", srv.Addr())
	}

	mfs, err := scrape(client, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"meshcast_build_info", []string{"version", "v1.2.3"}, 1},
		{"meshcast_peers", []string{"community", "demo"}, 2},
		{"meshcast_peer_tx_packets_total", []string{"community", "demo", "peer", "198.18.0.2"}, 10},
		{"meshcast_peer_rx_bytes_total", []string{"peer", "198.18.0.2"}, 2000},
		{"meshcast_peer_tx_packets_total", []string{"peer", "198.18.0.3"}, 5},
		{"meshcast_drops_total", []string{"reason", "not_a_peer"}, 3},
		{"meshcast_group_members", []string{"group", "239.1.1.1"}, 2},
		{"meshcast_discovery_successes_total", nil, 7},
		{"meshcast_igmp_queries_sent_total", nil, 9},
		{"meshcast_info", []string{"community", "demo", "encap", "gre", "tap", "mcbr-demo"}, 1},
	} {
		if got, ok := value(mfs, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("no go_goroutines")
	}

	s := snapshot1()
	s.Peers = s.Peers[1:]
	s.Peers[0].TxPackets = 6
	f.set(s)
	mfs, err = scrape(client, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value(mfs, "meshcast_peer_tx_packets_total", "peer", "198.18.0.2"); ok {
		t.Errorf("removed peer 198.18.0.2 still served: %v", v)
	}
	if v, ok := value(mfs, "meshcast_peer_last_seen_timestamp_seconds", "peer", "198.18.0.2"); ok {
		t.Errorf("removed peer 198.18.0.2 still served: last seen %v", v)
	}
	if v, _ := value(mfs, "meshcast_peer_tx_packets_total", "peer", "198.18.0.3"); v != 6 {
		t.Errorf("peer 198.18.0.3 tx packets = %v, want 6", v)
	}
	if v, _ := value(mfs, "meshcast_peers"); v != 1 {
		t.Errorf("meshcast_peers = %v, want 1", v)
	}
}

func TestServePages(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	srv, client := serve(t, f)
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", http.StatusOK, `href="/metrics"`},
		{"HEAD", "/", http.StatusOK, ""},
		{"GET", "/nothing", http.StatusNotFound, ""},
		{"POST", "/metrics", http.StatusMethodNotAllowed, ""},
	} {
		req, err := http.NewRequest(c.method, "http://"+srv.Addr()+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(body), c.body) {
			t.Errorf("%s %s = %s %q, want %d with %q", c.method, c.path, resp.Status, body, c.status, c.body)
		}
	}
}

// TestServeInvalidLabel checks over HTTP that a series Prometheus refuses
// costs that series, not the scrape, and is counted.
func TestServeInvalidLabel(t *testing.T) {
	f := &fakeState{}
	s := snapshot1()
	s.Drops["bad\xff"] = 1
	f.set(s)
	srv, client := serve(t, f)
	mfs, err := scrape(client, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value(mfs, "meshcast_peer_tx_packets_total", "peer", "198.18.0.2"); !ok || v != 10 {
		t.Errorf("peer tx packets = %v, %v; want 10", v, ok)
	}
	// The error counter counts the failed gather of the scrape before.
	mfs, err = scrape(client, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := value(mfs, "promhttp_metric_handler_errors_total", "cause", "gathering"); v < 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} = %v, want >= 1", v)
	}
}

func TestServeErrors(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	srv, _ := serve(t, f)
	if s2, err := Serve(srv.Addr(), New(f.state, "")); err == nil {
		s2.Close()
		t.Fatalf("Serve(%s) twice: no error", srv.Addr())
	}
	if _, err := Serve("127.0.0.1:bad", New(f.state, "")); err == nil {
		t.Fatal("Serve on a bad address: no error")
	}
}

func TestClose(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	srv, err := Serve("127.0.0.1:0", New(f.state, ""))
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts after Close", addr)
	}
	if stacks := serverGoroutines(); stacks != "" {
		t.Errorf("goroutines left after Close:\n%s", stacks)
	}
}

// TestConcurrentScrapes scrapes from several clients while the state
// changes. Each scrape must be one snapshot: in every snapshot the test
// makes, rx packets are twice tx packets and the peer count matches.
func TestConcurrentScrapes(t *testing.T) {
	f := &fakeState{}
	f.set(snapshot1())
	srv, client := serve(t, f)

	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := snapshot1()
			s.Peers[0].TxPackets, s.Peers[0].RxPackets = i, 2*i
			if i%2 == 0 {
				s.Peers = s.Peers[:1]
			}
			f.set(s)
			runtime.Gosched()
		}
	})

	var scrapers sync.WaitGroup
	for range 6 {
		scrapers.Go(func() {
			for range 25 {
				mfs, err := scrape(client, srv.Addr())
				if err != nil {
					t.Error(err)
					return
				}
				tx, _ := value(mfs, "meshcast_peer_tx_packets_total", "peer", "198.18.0.2")
				rx, _ := value(mfs, "meshcast_peer_rx_packets_total", "peer", "198.18.0.2")
				if rx != 2*tx {
					t.Errorf("torn scrape: tx %v, rx %v", tx, rx)
					return
				}
				n, _ := value(mfs, "meshcast_peers")
				if want := float64(len(mfs["meshcast_peer_tx_packets_total"].GetMetric())); n != want {
					t.Errorf("meshcast_peers = %v with %v peer series", n, want)
					return
				}
			}
		})
	}
	scrapers.Wait()
	close(stop)
	writer.Wait()
}
