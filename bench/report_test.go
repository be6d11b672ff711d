package bench

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5, 5, 1}, 5},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v; want %v", c.in, got, c.want)
		}
		if !reflect.DeepEqual(in, c.in) {
			t.Errorf("Median modified its input: %v became %v", in, c.in)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100 .. 1
	}
	if got := Percentile(xs, 50); got != 50 {
		t.Errorf("p50 = %v; want 50", got)
	}
	if got := Percentile(xs, 99); got != 99 {
		t.Errorf("p99 = %v; want 99", got)
	}
	if got := Percentile(xs, 100); got != 100 {
		t.Errorf("p100 = %v; want 100", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v; want 0", got)
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("p99 of one = %v; want 7", got)
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(3, 2); got != 1.5 {
		t.Errorf("Ratio(3, 2) = %v", got)
	}
	for _, c := range [][2]float64{{0, 1}, {1, 0}, {math.NaN(), 1}, {-1, 1}} {
		if got := Ratio(c[0], c[1]); got != 0 {
			t.Errorf("Ratio(%v, %v) = %v; want 0", c[0], c[1], got)
		}
	}
}

var (
	caseV1 = Case{Measure: MeasureE2E, Encap: "vxlan", Fanout: 1, Payload: 64}
	caseV4 = Case{Measure: MeasureE2E, Encap: "vxlan", Fanout: 4, Payload: 64}
)

func meas(c Case, path string, round int, copies, cpu float64) Measurement {
	return Measurement{Case: c, Path: path, Round: round, Metrics: Metrics{
		Rate: copies / float64(c.Fanout), CopiesPerSec: copies, CPUPerMCopies: cpu,
		LatencyP50us: 100, LatencyP99us: 300, DeliveryMinPct: 100, DeliveryPct: 100,
	}}
}

func TestAggregate(t *testing.T) {
	ms := []Measurement{
		// Interleaved rounds, in the order Run produces them.
		meas(caseV4, PathUserspace, 1, 100e3, 10),
		meas(caseV4, PathKernelHRE, 1, 400e3, 2),
		meas(caseV4, PathUserspace, 2, 120e3, 12),
		meas(caseV4, PathKernelHRE, 2, 380e3, 3),
		meas(caseV4, PathUserspace, 3, 90e3, 50), // an outlier the median ignores
		meas(caseV4, PathKernelHRE, 3, 200e3, 4),
		meas(caseV1, PathUserspace, 1, 50e3, 8),
		{Case: caseV1, Path: PathKernelPair, Round: 1, Error: "daemon exited"},
	}
	got := Aggregate(ms)
	if len(got) != 4 {
		t.Fatalf("%d results; want 4: %+v", len(got), got)
	}
	// Sorted by case, then path in AllPaths order.
	order := []struct {
		c    Case
		path string
	}{{caseV1, PathUserspace}, {caseV1, PathKernelPair}, {caseV4, PathUserspace}, {caseV4, PathKernelHRE}}
	for i, o := range order {
		if got[i].Case != o.c || got[i].Path != o.path {
			t.Errorf("result %d is %v %s; want %v %s", i, got[i].Case, got[i].Path, o.c, o.path)
		}
	}
	us, hre := got[2], got[3]
	if us.CopiesPerSec != 100e3 || us.CPUPerMCopies != 12 || us.Rounds != 3 {
		t.Errorf("userspace medians: %+v", us)
	}
	if hre.CopiesPerSec != 380e3 || hre.CPUPerMCopies != 3 {
		t.Errorf("kernel-hre medians: %+v", hre)
	}
	if us.CopiesRatio != 1 || us.CPURatio != 1 {
		t.Errorf("userspace ratios %v %v; want 1 1", us.CopiesRatio, us.CPURatio)
	}
	if math.Abs(hre.CopiesRatio-100.0/380) > 1e-12 || hre.CPURatio != 4 {
		t.Errorf("kernel-hre ratios %v %v; want %v 4", hre.CopiesRatio, hre.CPURatio, 100.0/380)
	}
	failed := got[1]
	if failed.Rounds != 0 || len(failed.Errors) != 1 || failed.CopiesRatio != 0 {
		t.Errorf("failed path: %+v", failed)
	}
}

func testReport() *Report {
	ms := []Measurement{
		meas(caseV4, PathUserspace, 1, 100e3, 10),
		meas(caseV4, PathKernelHRE, 1, 400e3, 2.5),
		meas(caseV1, PathUserspace, 1, 50e3, 8),
		meas(Case{Measure: MeasureE2E, Encap: "gre", Fanout: 4, Payload: 1400}, PathUserspace, 1, 80e3, 11),
	}
	ms[0].SenderLimited = true
	return &Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 12.5, Kernel: "6.1", CPUs: 2, Binary: "/bin/meshcast",
		Quick: true, Measures: []string{MeasureE2E}, Rounds: 1, Fanouts: []int{1, 4}, Payloads: []int{64, 1400}, Encaps: []string{"vxlan", "gre"},
		Paths:   []string{PathUserspace, PathKernelHRE},
		Skipped: []Skip{{Path: PathOVS, Reason: "ovs-vswitchd is not installed"}, {Path: PathKernelHRE, Encap: "gre", Reason: "VXLAN only"}},
		Notes:   []string{"a note"},
		Samples: []Sample{{Case: caseV4, Path: PathUserspace, Round: 1, Kind: KindSearch, Rate: 25e3, Seconds: 0.25,
			Sent: 6250, Delivered: 25000, PerApp: []uint64{6250, 6250, 6250, 6250}, Pass: true, UnderlayRx: 25010,
			CopiesPerSec: 100040, CPUDaemon: 0.2, CPUSender: 0.03, CPUSoftirq: 0.02}},
		Measurements: ms,
		Results:      Aggregate(ms),
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := testReport()
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := WriteJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}
	b, _ := os.ReadFile(path)
	for _, key := range []string{`"copies_per_sec"`, `"cpu_per_mcopies"`, `"cpu_softirq_s"`, `"per_app"`, `"copies_ratio"`, `"skipped"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if _, err := ReadJSON(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("no error reading a missing file")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, testReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"skipped: ovs: ovs-vswitchd is not installed",
		"skipped: kernel-hre (gre): VXLAN only",
		"note: a note",
		"copies/s", "cpu s/Mcopy", "us/path copies",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "vxlan" || f[0] == "gre") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows; want 4:\n%s", len(rows), out)
	}
	// Sorted: gre first, then vxlan fanout 1, then vxlan fanout 4.
	want := [][]string{
		{"gre", "4", "1400", "userspace", "20.0k", "80.0k", "11.00", "100", "300", "100.00%", "1.00", "1.00", "1"},
		{"vxlan", "1", "64", "userspace", "50.0k", "50.0k", "8.00", "100", "300", "100.00%", "1.00", "1.00", "1"},
		{"vxlan", "4", "64", "userspace*", "25.0k", "100k", "10.00", "100", "300", "100.00%", "1.00", "1.00", "1"},
		{"vxlan", "4", "64", "kernel-hre", "100k", "400k", "2.50", "100", "300", "100.00%", "0.25", "4.00", "1"},
	}
	for i, row := range rows {
		if got := strings.Fields(row); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, got, want[i])
		}
	}
	// The columns line up: every row is as long as the header.
	header := lines[3]
	for _, row := range rows {
		if len([]rune(row)) != len([]rune(header)) {
			t.Errorf("row %q is not as wide as the header %q", row, header)
		}
	}
}

func TestSI(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want string
	}{{0, "0.00"}, {5.5, "5.50"}, {999, "999"}, {1000, "1.00k"}, {12345, "12.3k"}, {456789, "457k"}, {1.5e6, "1.50M"}} {
		if got := SI(c.x); got != c.want {
			t.Errorf("SI(%v) = %q; want %q", c.x, got, c.want)
		}
	}
}

func TestWriteChart(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "copies")
	files, err := WriteChart(prefix, testReport().Results)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{prefix + ".png", prefix + ".svg"}; !reflect.DeepEqual(files, want) {
		t.Errorf("files %v; want %v", files, want)
	}
	png, err := os.ReadFile(prefix + ".png")
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG (%v)", prefix+".png", err)
	}
	svg, err := os.ReadFile(prefix + ".svg")
	if err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Fatalf("%s is not an SVG (%v)", prefix+".svg", err)
	}
	// A panel per encapsulation and payload; the legend names each path
	// once, with * when it was sender-limited; the y axis reads like the
	// table.
	for _, want := range []string{">VXLAN, payload 64 bytes<", ">GRE, payload 1400 bytes<", ">userspace*<", ">kernel-hre<",
		">* sender-limited: may go faster<", ">400k<", ">0<"} {
		if n := bytes.Count(svg, []byte(want)); n == 0 {
			t.Errorf("the SVG lacks the text %q", want)
		} else if strings.HasPrefix(want, ">userspace") && n != 1 {
			t.Errorf("the SVG has %q %d times; want once, in the legend", want, n)
		}
	}
	if bytes.Contains(svg, []byte("0.00<")) || bytes.Contains(svg, []byte("000<")) {
		t.Error("the SVG has an axis label with zeros instead of k or M")
	}
	if _, err := WriteChart(filepath.Join(dir, "none"), nil); err == nil {
		t.Error("no error charting nothing")
	}
}

func TestSITick(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want string
	}{
		{0, "0"}, {50, "50"}, {2.5, "2.5"}, {1000, "1k"}, {250e3, "250k"}, {500000, "500k"},
		{300000.00000000006, "300k"}, {1.2e6, "1.2M"}, {1.125e6, "1.125M"}, {2e6, "2M"}, {-5000, "-5k"},
	} {
		if got := siTick(c.x); got != c.want {
			t.Errorf("siTick(%v) = %q; want %q", c.x, got, c.want)
		}
	}
	var labels []string
	for _, tk := range (siTicks{}).Ticks(0, 1.3e6) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if len(labels) < 2 || labels[0] != "0" || !strings.HasSuffix(labels[len(labels)-1], "M") {
		t.Errorf("ticks from 0 to 1.3M labelled %q", labels)
	}
}

// TestReadJSONv1 reads a report written before there were measures (the
// one behind docs/bench-quick.png): it is all e2e, and its table reads as
// that version printed it (testdata/report-v1.table).
func TestReadJSONv1(t *testing.T) {
	rep, err := ReadJSON("testdata/report-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.Measures, []string{MeasureE2E}) {
		t.Errorf("measures %v; want [e2e]", rep.Measures)
	}
	if len(rep.Results) != 36 {
		t.Fatalf("%d results; want 36", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Measure != MeasureE2E || r.Path == PathKernel {
			t.Errorf("result %v %s: want e2e and no better-kernel rows", r.Case, r.Path)
		}
	}
	if es := Estimates(rep.Results); len(es) != 0 {
		t.Errorf("%d estimates from e2e results; want none", len(es))
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/report-v1.table")
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("the table of an old report changed:\n got:\n%s\nwant:\n%s", b.String(), want)
	}
	if _, err := WriteChart(filepath.Join(t.TempDir(), "v1"), rep.Results); err != nil {
		t.Error(err)
	}
	// Written again, it reads back the same.
	path := filepath.Join(t.TempDir(), "again.json")
	if err := WriteJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	again, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, rep) {
		t.Error("an old report written again reads back differently")
	}
	// The smallest old report: no measure anywhere.
	old := `{"rounds":1,"samples":[{"encap":"gre","fanout":1,"payload":64,"path":"userspace","kind":"search"}],
		"measurements":[{"encap":"gre","fanout":1,"payload":64,"path":"userspace","round":1,"rate":5}],
		"results":[{"encap":"gre","fanout":1,"payload":64,"path":"userspace","rounds":1,"rate":5,"copies_per_sec":5}]}`
	path = filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Samples[0].Measure != MeasureE2E || rep.Measurements[0].Measure != MeasureE2E || rep.Results[0].Measure != MeasureE2E {
		t.Errorf("an old report's cases are not e2e: %+v", rep)
	}
}

// The cases of the deployment tests.
var (
	srcV1   = Case{Measure: MeasureSource, Encap: "vxlan", Fanout: 1, Payload: 64}
	srcV4   = Case{Measure: MeasureSource, Encap: "vxlan", Fanout: 4, Payload: 64}
	recvV1  = Case{Measure: MeasureReceiver, Encap: "vxlan", Fanout: 1, Payload: 64}
	srcG4   = Case{Measure: MeasureSource, Encap: "gre", Fanout: 4, Payload: 64}
	recvG1  = Case{Measure: MeasureReceiver, Encap: "gre", Fanout: 1, Payload: 64}
	srcG4XL = Case{Measure: MeasureSource, Encap: "gre", Fanout: 4, Payload: 1400}
)

// srcMeas is a source measurement with copies/s and CPU per million
// copies, and a correct copy count.
func srcMeas(c Case, path string, round int, copies, cpu float64) Measurement {
	m := meas(c, path, round, copies, cpu)
	m.LatencyP50us, m.LatencyP99us, m.DeliveryMinPct, m.DeliveryPct = 0, 0, 0, 0
	m.CopiesPerDatagram, m.RecvCopiesMin, m.RecvCopiesMax = float64(c.Fanout), 1, 1
	m.DaemonPerM = cpu
	return m
}

// deployMeasurements: at fanout 4 the source limits every path; at fanout
// 1 the receiver limits the userspace path.
func deployMeasurements() []Measurement {
	ms := []Measurement{
		srcMeas(srcV1, PathUserspace, 1, 300e3, 4),
		srcMeas(srcV1, PathKernelPair, 1, 120e3, 6),
		srcMeas(srcV1, PathKernelHRE, 1, 110e3, 7),
		srcMeas(srcV4, PathUserspace, 1, 400e3, 3),
		srcMeas(srcV4, PathKernelPair, 1, 200e3, 5),
		srcMeas(srcV4, PathKernelHRE, 1, 240e3, 4),
		meas(recvV1, PathUserspace, 1, 150e3, 9),
		meas(recvV1, PathKernelPair, 1, 300e3, 6),
		meas(recvV1, PathKernelHRE, 1, 250e3, 6),
		// GRE: no kernel shape ran; the source of 1400 bytes failed.
		srcMeas(srcG4, PathUserspace, 1, 100e3, 10),
		meas(recvG1, PathUserspace, 1, 80e3, 12),
		{Case: srcG4XL, Path: PathUserspace, Round: 1, Error: "daemon exited"},
	}
	ms[4].SenderLimited = true
	return ms
}

func TestAggregateKernelBest(t *testing.T) {
	ms := deployMeasurements()
	ms = append(ms, meas(caseV1, PathKernelPair, 1, 1, 1), meas(caseV1, PathKernelHRE, 1, 2, 1))
	res := Aggregate(ms)
	find := func(c Case, path string) *Result {
		for i := range res {
			if res[i].Case == c && res[i].Path == path {
				return &res[i]
			}
		}
		return nil
	}
	// The source: the shape with more copies/s, hre.
	k := find(srcV4, PathKernel)
	if k == nil || k.BestOf != PathKernelHRE || k.CopiesPerSec != 240e3 || k.CPUPerMCopies != 4 {
		t.Fatalf("source kernel row %+v; want hre's figures", k)
	}
	if math.Abs(k.CopiesRatio-400.0/240) > 1e-12 || k.CPURatio != 0.75 {
		t.Errorf("source kernel ratios %v %v; want %v 0.75", k.CopiesRatio, k.CPURatio, 400.0/240)
	}
	if k.CopiesPerDatagram != 4 || k.RecvCopiesMin != 1 || k.RecvCopiesMax != 1 {
		t.Errorf("source kernel copy count %+v", k.Metrics)
	}
	// The receiver: pair.
	if k := find(recvV1, PathKernel); k == nil || k.BestOf != PathKernelPair || k.CopiesPerSec != 300e3 || k.CopiesRatio != 0.5 {
		t.Errorf("receiver kernel row %+v; want pair's figures and ratio 0.5", k)
	}
	// None for e2e (unchanged), none where no kernel shape ran.
	if find(caseV1, PathKernel) != nil || find(srcG4, PathKernel) != nil {
		t.Error("a better-kernel row for e2e or for a case without kernel shapes")
	}
	// Order: measure source, receiver, e2e; the kernel row after the
	// shapes.
	var order []string
	for _, r := range res {
		if r.Encap == "vxlan" && r.Fanout == 4 && r.Measure == MeasureSource {
			order = append(order, r.Path)
		}
	}
	if want := []string{PathUserspace, PathKernelPair, PathKernelHRE, PathKernel}; !slices.Equal(order, want) {
		t.Errorf("source paths in order %v; want %v", order, want)
	}
	if res[0].Measure != MeasureSource || res[len(res)-1].Measure != MeasureE2E {
		t.Errorf("measures not in order: first %s, last %s", res[0].Measure, res[len(res)-1].Measure)
	}
}

func TestEstimates(t *testing.T) {
	es := Estimates(Aggregate(deployMeasurements()))
	find := func(encap string, fanout, payload int, path string) *Estimate {
		for i := range es {
			if e := &es[i]; e.Encap == encap && e.Fanout == fanout && e.Payload == payload && e.Path == path {
				return e
			}
		}
		return nil
	}
	// Fanout 4: the source limits. userspace: 400k/4 = 100k against 150k.
	us := find("vxlan", 4, 64, PathUserspace)
	if us == nil || us.SourceRate != 100e3 || us.ReceiverRate != 150e3 || us.Ceiling != 100e3 || us.Limit != LimitSource {
		t.Fatalf("userspace fanout 4: %+v", us)
	}
	pair := find("vxlan", 4, 64, PathKernelPair)
	if pair == nil || pair.Ceiling != 50e3 || !pair.SourceLimited || pair.ReceiverRate != 300e3 {
		t.Errorf("kernel-pair fanout 4: %+v", pair)
	}
	// The kernel: the shape with the higher ceiling, hre (60k > 50k).
	k := find("vxlan", 4, 64, PathKernel)
	if k == nil || k.BestOf != PathKernelHRE || k.Ceiling != 60e3 || k.Limit != LimitSource {
		t.Fatalf("kernel fanout 4: %+v", k)
	}
	for name, got := range map[string][2]float64{
		"copies":   {k.CopiesRatio, 400.0 / 240},
		"cpu":      {k.CPURatio, 3.0 / 4},
		"receiver": {k.ReceiverRatio, 150.0 / 250},
		"ceiling":  {k.CeilingRatio, 100.0 / 60},
	} {
		if math.Abs(got[0]-got[1]) > 1e-12 {
			t.Errorf("kernel fanout 4 %s ratio %v; want %v", name, got[0], got[1])
		}
	}
	if us.CopiesRatio != 1 || us.CeilingRatio != 1 {
		t.Errorf("userspace ratios against itself: %+v", us)
	}
	// Fanout 1: the receiver limits the userspace path (300k > 150k).
	if us1 := find("vxlan", 1, 64, PathUserspace); us1 == nil || us1.Ceiling != 150e3 || us1.Limit != LimitReceiver {
		t.Errorf("userspace fanout 1: %+v", us1)
	}
	// The kernel at fanout 1: pair's ceiling min(120k, 300k) beats hre's
	// min(110k, 250k).
	if k1 := find("vxlan", 1, 64, PathKernel); k1 == nil || k1.BestOf != PathKernelPair || k1.Ceiling != 120e3 {
		t.Errorf("kernel fanout 1: %+v", k1)
	}
	// GRE: no kernel row; the failed source case has no ceiling.
	if find("gre", 4, 64, PathKernel) != nil {
		t.Error("a kernel estimate for GRE, where no kernel shape ran")
	}
	if g := find("gre", 4, 64, PathUserspace); g == nil || g.Ceiling != 25e3 || g.Limit != LimitSource {
		t.Errorf("gre fanout 4: %+v", g)
	}
	if g := find("gre", 4, 1400, PathUserspace); g == nil || g.Ceiling != 0 || g.Limit != "" || g.SourceRate != 0 {
		t.Errorf("gre fanout 4 payload 1400, not measured: %+v", g)
	}
	// Sorted like the results: encapsulation, fanout, payload, path.
	if es[0].Encap != "gre" || es[0].Payload != 64 || es[2].Encap != "vxlan" || es[2].Fanout != 1 || es[2].Path != PathUserspace ||
		es[len(es)-1].Path != PathKernel {
		t.Errorf("order: first %+v, last %+v", es[0], es[len(es)-1])
	}
	// Without receiver results: source rates, no ceilings.
	var srcOnly []Measurement
	for _, m := range deployMeasurements() {
		if m.Measure == MeasureSource {
			srcOnly = append(srcOnly, m)
		}
	}
	for _, e := range Estimates(Aggregate(srcOnly)) {
		if e.Ceiling != 0 || e.ReceiverRate != 0 || (e.Payload == 64 && e.SourceRate == 0) {
			t.Errorf("source only: %+v", e)
		}
	}
}

func TestCeiling(t *testing.T) {
	for _, c := range []struct {
		src, recv, want float64
		limit           string
	}{
		{100, 200, 100, LimitSource}, {300, 200, 200, LimitReceiver}, {200, 200, 200, LimitSource},
		{0, 200, 0, ""}, {100, 0, 0, ""}, {math.NaN(), 1, 0, ""},
	} {
		if got, limit := ceiling(c.src, c.recv); got != c.want || limit != c.limit {
			t.Errorf("ceiling(%v, %v) = %v %q; want %v %q", c.src, c.recv, got, limit, c.want, c.limit)
		}
	}
}

func deployReport() *Report {
	ms := deployMeasurements()
	// A path that sends one subscriber every copy twice.
	ms = append(ms, srcMeas(srcV4, PathOVS, 1, 500e3, 8))
	ms[len(ms)-1].CopiesPerDatagram, ms[len(ms)-1].RecvCopiesMax = 5, 2
	res := Aggregate(ms)
	return &Report{
		Measures: []string{MeasureSource, MeasureReceiver}, Rounds: 1, Fanouts: []int{1, 4}, Payloads: []int{64, 1400},
		Encaps: []string{"vxlan", "gre"}, Paths: AllPaths, LossThreshold: 0.001, CapacityLossThreshold: 0.005,
		Measurements: ms, Results: res, Estimates: Estimates(res),
	}
}

func TestWriteTableMeasures(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, deployReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== source:", "== receiver:", "== deployment estimate:",
		"copies/dgram", "us/path src copies", "loss < 0.5%",
		"WRONG COPY COUNT: source vxlan fanout 4 payload 64 ovs: 5.000 copies per datagram in all (want 4), 1.000 to 2.000 per subscriber (want 1)",
		"error: source gre fanout 4 payload 1400 userspace: round 1: daemon exited",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "== e2e") {
		t.Errorf("an e2e section without e2e results:\n%s", out)
	}
	// The sections come in order, the estimate after the receiver.
	if i, j, k := strings.Index(out, "== source"), strings.Index(out, "== receiver"), strings.Index(out, "== deployment"); !(i < j && j < k) {
		t.Errorf("sections out of order: %d %d %d", i, j, k)
	}
	rows := map[string][]string{}
	section := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "== ") {
			section = strings.Fields(l)[1]
			continue
		}
		f := strings.Fields(l)
		if n := 4; len(f) > n && (f[0] == "vxlan" || f[0] == "gre") {
			if section == "receiver:" {
				n = 3 // no fanout column
			}
			rows[section+" "+strings.Join(f[:n], " ")] = f
		}
	}
	for key, want := range map[string][]string{
		"source: vxlan 4 64 kernel-pair*":    {"vxlan", "4", "64", "kernel-pair*", "50.0k", "200k", "4.00", "5.00", "5.00", "0.00", "0.00", "2.00", "0.60", "1"},
		"source: vxlan 4 64 kernel(hre)":     {"vxlan", "4", "64", "kernel(hre)", "60.0k", "240k", "4.00", "4.00", "4.00", "0.00", "0.00", "1.67", "0.75", "1"},
		"source: vxlan 4 64 ovs":             {"vxlan", "4", "64", "ovs", "125k", "500k", "5.00!", "8.00", "8.00", "0.00", "0.00", "0.80", "0.38", "1"},
		"receiver: vxlan 64 kernel(pair)":    {"vxlan", "64", "kernel(pair)", "300k", "6.00", "100", "300", "100.00%", "0.50", "1.50", "1"},
		"deployment vxlan 4 64 userspace":    {"vxlan", "4", "64", "userspace", "100k", "150k", "100k", "source", "1.00", "1.00", "1.00", "1.00"},
		"deployment vxlan 4 64 kernel-pair":  {"vxlan", "4", "64", "kernel-pair", "50.0k*", "300k", "50.0k", "source", "2.00", "0.60", "0.50", "2.00"},
		"deployment vxlan 4 64 kernel(hre)":  {"vxlan", "4", "64", "kernel(hre)", "60.0k", "250k", "60.0k", "source", "1.67", "0.75", "0.60", "1.67"},
		"deployment vxlan 1 64 userspace":    {"vxlan", "1", "64", "userspace", "300k", "150k", "150k", "receiver", "1.00", "1.00", "1.00", "1.00"},
		"deployment gre 4 1400 userspace":    {"gre", "4", "1400", "userspace", "-", "-", "-", "-", "-", "-", "-", "-"},
		"source: gre 4 1400 userspace":       {"gre", "4", "1400", "userspace", "-", "-", "-", "-", "-", "-", "-", "-", "-", "0"},
		"receiver: gre 64 userspace":         {"gre", "64", "userspace", "80.0k", "12.00", "100", "300", "100.00%", "1.00", "1.00", "1"},
		"deployment vxlan 4 64 ovs":          {"vxlan", "4", "64", "ovs", "125k", "-", "-", "-", "0.80", "0.38", "-", "-"},
		"source: vxlan 1 64 userspace":       {"vxlan", "1", "64", "userspace", "300k", "300k", "1.00", "4.00", "4.00", "0.00", "0.00", "1.00", "1.00", "1"},
		"deployment vxlan 1 64 kernel(pair)": {"vxlan", "1", "64", "kernel(pair)", "120k", "300k", "120k", "source", "2.50", "0.67", "0.50", "1.25"},
		"receiver: vxlan 64 userspace":       {"vxlan", "64", "userspace", "150k", "9.00", "100", "300", "100.00%", "1.00", "1.00", "1"},
		"source: vxlan 4 64 userspace":       {"vxlan", "4", "64", "userspace", "100k", "400k", "4.00", "3.00", "3.00", "0.00", "0.00", "1.00", "1.00", "1"},
		"deployment gre 4 64 userspace":      {"gre", "4", "64", "userspace", "25.0k", "80.0k", "25.0k", "source", "1.00", "1.00", "1.00", "1.00"},
		"receiver: vxlan 64 kernel-hre":      {"vxlan", "64", "kernel-hre", "250k", "6.00", "100", "300", "100.00%", "0.60", "1.50", "1"},
		"deployment vxlan 4 64 kernel-hre":   {"vxlan", "4", "64", "kernel-hre", "60.0k", "250k", "60.0k", "source", "1.67", "0.75", "0.60", "1.67"},
		"source: vxlan 1 64 kernel(pair)":    {"vxlan", "1", "64", "kernel(pair)", "120k", "120k", "1.00", "6.00", "6.00", "0.00", "0.00", "2.50", "0.67", "1"},
		"deployment vxlan 1 64 kernel-hre":   {"vxlan", "1", "64", "kernel-hre", "110k", "250k", "110k", "source", "2.73", "0.57", "0.60", "1.36"},
		"receiver: vxlan 64 kernel-pair":     {"vxlan", "64", "kernel-pair", "300k", "6.00", "100", "300", "100.00%", "0.50", "1.50", "1"},
		"source: gre 4 64 userspace":         {"gre", "4", "64", "userspace", "25.0k", "100k", "4.00", "10.00", "10.00", "0.00", "0.00", "1.00", "1.00", "1"},
		"deployment vxlan 1 64 kernel-pair":  {"vxlan", "1", "64", "kernel-pair", "120k", "300k", "120k", "source", "2.50", "0.67", "0.50", "1.25"},
		"source: vxlan 1 64 kernel-hre":      {"vxlan", "1", "64", "kernel-hre", "110k", "110k", "1.00", "7.00", "7.00", "0.00", "0.00", "2.73", "0.57", "1"},
		"source: vxlan 1 64 kernel-pair":     {"vxlan", "1", "64", "kernel-pair", "120k", "120k", "1.00", "6.00", "6.00", "0.00", "0.00", "2.50", "0.67", "1"},
		"source: vxlan 4 64 kernel-hre":      {"vxlan", "4", "64", "kernel-hre", "60.0k", "240k", "4.00", "4.00", "4.00", "0.00", "0.00", "1.67", "0.75", "1"},
	} {
		if got := rows[key]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", key, got, want)
		}
	}
	// Every table's rows line up with its header.
	for _, block := range strings.Split(out, "\n== ") {
		lines := strings.Split(block, "\n")
		if len(lines) < 3 {
			continue
		}
		header := lines[1]
		for _, l := range lines[2:] {
			if f := strings.Fields(l); len(f) > 3 && (f[0] == "vxlan" || f[0] == "gre") && len([]rune(l)) != len([]rune(header)) {
				t.Errorf("row %q is not as wide as the header %q", l, header)
			}
		}
	}
}

func TestCopiesWrong(t *testing.T) {
	for _, c := range []struct {
		m    Metrics
		want bool
	}{
		{Metrics{}, false}, // not a source measurement
		{Metrics{CopiesPerDatagram: 4, RecvCopiesMin: 1, RecvCopiesMax: 1}, false},
		{Metrics{CopiesPerDatagram: 3.99, RecvCopiesMin: 0.996, RecvCopiesMax: 1}, false}, // within the tolerance
		{Metrics{CopiesPerDatagram: 3.5, RecvCopiesMin: 0.5, RecvCopiesMax: 1}, true},     // fewer
		{Metrics{CopiesPerDatagram: 4.01, RecvCopiesMin: 1, RecvCopiesMax: 1.01}, true},   // more
		{Metrics{CopiesPerDatagram: 3, RecvCopiesMin: 0, RecvCopiesMax: 1}, true},         // a subscriber forgotten
	} {
		if got := c.m.copiesWrong(0.005); got != c.want {
			t.Errorf("copiesWrong(%+v) = %v; want %v", c.m, got, c.want)
		}
	}
	// The median hides no round's wrong count.
	ms := []Metrics{
		{CopiesPerDatagram: 4, RecvCopiesMin: 1, RecvCopiesMax: 1},
		{CopiesPerDatagram: 4, RecvCopiesMin: 1, RecvCopiesMax: 2},
		{CopiesPerDatagram: 4, RecvCopiesMin: 0.5, RecvCopiesMax: 1},
	}
	if m := medianMetrics(ms); m.RecvCopiesMin != 0.5 || m.RecvCopiesMax != 2 || m.CopiesPerDatagram != 4 {
		t.Errorf("aggregated copy counts %+v", m)
	}
}

func TestJSONRoundTripMeasures(t *testing.T) {
	rep := deployReport()
	path := filepath.Join(t.TempDir(), "deploy.json")
	if err := WriteJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}
	b, _ := os.ReadFile(path)
	for _, key := range []string{`"measure": "source"`, `"measures"`, `"estimates"`, `"ceiling"`, `"best_of": "kernel-hre"`,
		`"copies_per_datagram"`, `"capacity_loss_threshold"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestWriteChartMeasures(t *testing.T) {
	rep := deployReport()
	ms := append(rep.Measurements, meas(caseV1, PathUserspace, 1, 50e3, 8), meas(caseV4, PathUserspace, 1, 100e3, 8))
	prefix := filepath.Join(t.TempDir(), "deploy")
	if _, err := WriteChart(prefix, Aggregate(ms)); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(prefix + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{">VXLAN, payload 64 bytes<", ">source: VXLAN, payload 64 bytes<", ">source: GRE, payload 64 bytes<",
		">one stream: VXLAN, payload 64 bytes<", ">one stream: GRE, payload 64 bytes<", ">kernel-pair*<", ">kernel-hre<", ">ovs<",
		">ceiling, datagrams/s<", ">source copies/s at &lt; 0.5% loss<"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks the text %q", want)
		}
	}
	if bytes.Contains(svg, []byte(">kernel<")) || bytes.Contains(svg, []byte(">kernel*<")) {
		t.Error("the chart draws the better-kernel rows, which repeat a shape")
	}
	// Only the source measure: one panel set.
	var src []Result
	for _, r := range rep.Results {
		if r.Measure == MeasureSource {
			src = append(src, r)
		}
	}
	if _, err := WriteChart(prefix+"-src", src); err != nil {
		t.Fatal(err)
	}
	svg, _ = os.ReadFile(prefix + "-src.svg")
	if bytes.Contains(svg, []byte("one stream:")) || !bytes.Contains(svg, []byte(">source: VXLAN, payload 64 bytes<")) {
		t.Error("a source-only chart has estimate panels, or lacks the source panels")
	}
}

func TestSILogTicks(t *testing.T) {
	var labels []string
	for _, tk := range (siLogTicks{}).Ticks(15e3, 450e3) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if want := []string{"20k", "50k", "100k", "200k"}; !slices.Equal(labels, want) {
		t.Errorf("labels %q; want %q", labels, want)
	}
	if ticks := (siLogTicks{}).Ticks(0, 10); ticks != nil {
		t.Errorf("ticks from 0 on a log axis: %v", ticks)
	}
}

func TestReportUnderlay(t *testing.T) {
	rep := testReport()
	rep.Underlay = Underlay6
	path := filepath.Join(t.TempDir(), "bench6.json")
	if err := WriteJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Contains(b, []byte(`"underlay": "6"`)) {
		t.Errorf("the JSON does not say the underlay family:\n%s", b)
	}
	got, err := ReadJSON(path)
	if err != nil || got.Underlay != Underlay6 {
		t.Fatalf("read back underlay %q, %v", got.Underlay, err)
	}
	var out bytes.Buffer
	if err := WriteTable(&out, got); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); !strings.HasPrefix(first, "underlay: IPv6 (") || !strings.Contains(first, "fd00:198:18::K/64") {
		t.Errorf("the table does not start with the IPv6 underlay: %q", first)
	}
	rep.Underlay = Underlay4
	out.Reset()
	if err := WriteTable(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "underlay: IPv4 (") {
		t.Errorf("the table does not start with the IPv4 underlay: %q", out.String()[:40])
	}
	// A report written before the choice says nothing about it.
	rep.Underlay = ""
	out.Reset()
	if err := WriteTable(&out, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "underlay:") {
		t.Error("a report without an underlay family prints one")
	}
}
