package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// tinyOptions is a grid of one case on the userspace path, with short
// trials.
func tinyOptions(t *testing.T, bin string) Options {
	dir := t.TempDir()
	return Options{
		Binary:          bin,
		Fanouts:         []int{1},
		Payloads:        []int{64},
		Encaps:          []string{"vxlan"},
		Paths:           []string{PathUserspace},
		Rounds:          1,
		TrialDuration:   150 * time.Millisecond,
		LatencyDuration: 300 * time.Millisecond,
		Bisections:      1,
		JSONPath:        filepath.Join(dir, "bench.json"),
		ChartPath:       filepath.Join(dir, "chart"),
	}
}

// TestIntegrationBenchQuick runs the harness on a tiny grid against a
// freshly built meshcast, and checks the figures, the files, and that
// nothing is left behind.
func TestIntegrationBenchQuick(t *testing.T) {
	nstest.RequireRoot(t) // skips without root; fails with CI=true
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/cmd/meshcast")
	fds := namespaceFds(t)
	opts := tinyOptions(t, bin)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opts, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, fds)

	if len(rep.Results) != 1 {
		t.Fatalf("%d results; want 1: %+v", len(rep.Results), rep.Results)
	}
	res := rep.Results[0]
	if res.Path != PathUserspace || res.Rounds != 1 || len(res.Errors) > 0 {
		t.Fatalf("result %+v", res)
	}
	if res.DeliveryMinPct < 99.9 {
		t.Errorf("delivery %.2f%%; want at least 99.9%%", res.DeliveryMinPct)
	}
	if !(res.CopiesPerSec > 0) || !(res.Rate > 0) {
		t.Errorf("copies/s %v at %v datagrams/s; want both above 0", res.CopiesPerSec, res.Rate)
	}
	if !(res.CPUPerMCopies > 0) {
		t.Errorf("cpu per million copies %v; want above 0", res.CPUPerMCopies)
	}
	if !(res.LatencyP50us > 0) || res.LatencyP99us < res.LatencyP50us {
		t.Errorf("latency p50 %v p99 %v µs", res.LatencyP50us, res.LatencyP99us)
	}
	var search, latency int
	for _, s := range rep.Samples {
		switch s.Kind {
		case KindSearch:
			search++
		case KindLatency:
			latency++
		}
	}
	if search < 2 || latency != 1 {
		t.Errorf("%d search and %d latency samples; want at least 2 and 1", search, latency)
	}
	if !strings.Contains(out.String(), "copies/s") || !strings.Contains(out.String(), "userspace") {
		t.Errorf("the output lacks the table")
	}
	if _, err := ReadJSON(opts.JSONPath); err != nil {
		t.Error(err)
	}
	for _, ext := range []string{".png", ".svg"} {
		if st, err := os.Stat(opts.ChartPath + ext); err != nil || st.Size() == 0 {
			t.Errorf("chart %s: %v", ext, err)
		}
	}
}

// TestIntegrationBenchSource runs a tiny source measure (fanout 2, one
// payload, short trials) on every path that can run, with both
// encapsulations, and checks that the receivers' ingress counted two copies
// of every datagram of the check trial, one each, of the size the
// encapsulation makes; and that nothing is left behind.
func TestIntegrationBenchSource(t *testing.T) {
	nstest.RequireRoot(t)
	for _, prog := range []string{"nft", "ethtool"} {
		if _, err := exec.LookPath(prog); err != nil {
			nstest.SkipOrFail(t, "the source measure needs %s (make deps installs it): %v", prog, err)
		}
	}
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/cmd/meshcast")
	fds := namespaceFds(t)
	opts := tinyOptions(t, bin)
	opts.Measures = []string{MeasureSource}
	opts.Fanouts = []int{2}
	opts.Encaps = []string{"vxlan", "gre"}
	opts.Paths = nil // every path that can run
	opts.TrialDuration = 100 * time.Millisecond
	opts.MaxRate = 20000
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opts, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, fds)

	ran := map[string]bool{}
	for _, res := range rep.Results {
		if res.Path == PathKernel {
			continue
		}
		ran[res.Encap+" "+res.Path] = true
		if res.Measure != MeasureSource || res.Fanout != 2 || res.Rounds != 1 || len(res.Errors) > 0 {
			t.Errorf("%v %s: %+v", res.Case, res.Path, res)
			continue
		}
		if res.CopiesPerDatagram != 2 || res.RecvCopiesMin != 1 || res.RecvCopiesMax != 1 {
			t.Errorf("%v %s: %.4f copies per datagram, %.4f to %.4f per receiver; want 2, 1 and 1",
				res.Case, res.Path, res.CopiesPerDatagram, res.RecvCopiesMin, res.RecvCopiesMax)
		}
		if !(res.Rate > 0) || !(res.CopiesPerSec > 0) || !(res.CPUPerMCopies > 0) {
			t.Errorf("%v %s: rate %v, copies/s %v, cpu %v; want all above 0", res.Case, res.Path, res.Rate, res.CopiesPerSec, res.CPUPerMCopies)
		}
	}
	if !ran["vxlan "+PathUserspace] || !ran["gre "+PathUserspace] {
		t.Errorf("the userspace path did not run with both encapsulations: %v", ran)
	}
	checks := 0
	for _, s := range rep.Samples {
		if s.Kind != KindCheck {
			continue
		}
		checks++
		if s.Sent == 0 || s.Delivered != 2*s.Sent || !slices.Equal(s.PerApp, []uint64{s.Sent, s.Sent}) {
			t.Errorf("check trial of %v %s: %d datagrams sent, %v copies counted", s.Case, s.Path, s.Sent, s.PerApp)
		}
		if want := uint64(wireLen(s.Encap, rep.Underlay, s.Payload)) * s.Delivered; s.IngressBytes != want {
			t.Errorf("check trial of %v %s: %d bytes counted; want %d", s.Case, s.Path, s.IngressBytes, want)
		}
	}
	if checks != len(ran) {
		t.Errorf("%d check trials for %d paths", checks, len(ran))
	}
	if !strings.Contains(out.String(), "== source:") || !strings.Contains(out.String(), "method, source:") {
		t.Error("the output lacks the method or the source table")
	}
}

// TestIntegrationBenchSource6 runs the tiny source measure of
// TestIntegrationBenchSource over an IPv6 underlay (fd00:198:18::K/64),
// on the userspace path and the kernel path with VXLAN per pair, and
// checks that the receivers' IPv6 ingress rules counted one copy of every
// datagram each, of the size the encapsulation makes over IPv6, that the
// report says IPv6, and that the kernel path either ran or is listed as
// skipped (GRE without ip6gretap; a build whose kernel dataplane lacks
// IPv6); and that nothing is left behind.
func TestIntegrationBenchSource6(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the IPv6 source measure starts daemons in namespaces")
	}
	nstest.RequireRoot(t)
	for _, prog := range []string{"nft", "ethtool"} {
		if _, err := exec.LookPath(prog); err != nil {
			nstest.SkipOrFail(t, "the source measure needs %s (make deps installs it): %v", prog, err)
		}
	}
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/cmd/meshcast")
	fds := namespaceFds(t)
	opts := tinyOptions(t, bin)
	opts.Underlay = Underlay6
	opts.Measures = []string{MeasureSource}
	opts.Fanouts = []int{2}
	opts.Payloads = []int{maxPayload6} // a full-size frame over IPv6
	opts.Encaps = []string{"vxlan", "gre"}
	opts.Paths = []string{PathUserspace, PathKernelPair}
	opts.TrialDuration = 100 * time.Millisecond
	opts.MaxRate = 20000
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opts, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, fds)

	if rep.Underlay != Underlay6 || !strings.HasPrefix(out.String(), "method") || !strings.Contains(out.String(), "underlay: IPv6") {
		t.Errorf("the report's underlay is %q; want %q, stated in the output", rep.Underlay, Underlay6)
	}
	ran := map[string]bool{}
	for _, res := range rep.Results {
		if res.Path == PathKernel {
			continue
		}
		ran[res.Encap+" "+res.Path] = true
		if len(res.Errors) > 0 || res.CopiesPerDatagram != 2 || res.RecvCopiesMin != 1 || res.RecvCopiesMax != 1 || !(res.CopiesPerSec > 0) {
			t.Errorf("%v %s over IPv6: %.4f copies per datagram, %.4f to %.4f per receiver, %v copies/s, errors %q; want 2, 1, 1, above 0, none",
				res.Case, res.Path, res.CopiesPerDatagram, res.RecvCopiesMin, res.RecvCopiesMax, res.CopiesPerSec, res.Errors)
		}
	}
	if !ran["vxlan "+PathUserspace] || !ran["gre "+PathUserspace] {
		t.Errorf("the userspace path did not run over IPv6 with both encapsulations: %v", ran)
	}
	for _, e := range opts.Encaps {
		skipped := slices.ContainsFunc(rep.Skipped, func(s Skip) bool {
			return s.Path == PathKernelPair && s.Encap == e && strings.Contains(s.Reason, "IPv6")
		})
		if ran[e+" "+PathKernelPair] == skipped {
			t.Errorf("kernel-pair with %s: ran %v, skipped for IPv6 %v; want one of them (skips %+v)", e, ran[e+" "+PathKernelPair], skipped, rep.Skipped)
		}
	}
	checks := 0
	for _, s := range rep.Samples {
		if s.Kind != KindCheck {
			continue
		}
		checks++
		if s.Sent == 0 || s.Delivered != 2*s.Sent || !slices.Equal(s.PerApp, []uint64{s.Sent, s.Sent}) {
			t.Errorf("check trial of %v %s: %d datagrams sent, %v copies counted", s.Case, s.Path, s.Sent, s.PerApp)
		}
		// 40 bytes of outer IPv6 header: wireLen over IPv6.
		if want := uint64(wireLen(s.Encap, Underlay6, s.Payload)) * s.Delivered; s.IngressBytes != want {
			t.Errorf("check trial of %v %s: %d bytes counted; want %d", s.Case, s.Path, s.IngressBytes, want)
		}
	}
	if checks != len(ran) {
		t.Errorf("%d check trials for %d paths", checks, len(ran))
	}
}

// TestIntegrationBenchCancel cancels a run while the daemons run, as
// Ctrl-C does, and checks that nothing is left behind.
func TestIntegrationBenchCancel(t *testing.T) {
	nstest.RequireRoot(t)
	bin := nstest.BuildBinary(t, "github.com/meshcast/meshcast/cmd/meshcast")
	fds := namespaceFds(t)
	opts := tinyOptions(t, bin)
	opts.TrialDuration = 10 * time.Second // still searching when cancelled
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, opts, &out)
		done <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "[1/1]") || len(ourNamespaces(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the run did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // the daemons are up, trials are running
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v; want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after cancellation")
	}
	checkNothingLeft(t, fds)
}

// ourNamespaces lists the named namespaces of this process's harness.
func ourNamespaces(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	prefix := nsPrefix + strconv.FormatInt(int64(os.Getpid()), 36) + "-"
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// namespaceFds counts this process's file descriptors that hold a network
// namespace.
func namespaceFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(link, "net:[") {
			n++
		}
	}
	return n
}

func checkNothingLeft(t *testing.T, fdsBefore int) {
	t.Helper()
	if names := ourNamespaces(t); len(names) > 0 {
		t.Errorf("namespaces left behind: %v", names)
	}
	if n := namespaceFds(t); n > fdsBefore {
		t.Errorf("%d namespace file descriptors left open (had %d)", n, fdsBefore)
	}
	// The daemons ran with this process as parent: none may be left.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" {
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			t.Errorf("child process %s left running: %s", e.Name(), bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
