package bench

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
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
	caseV1 = Case{Encap: "vxlan", Fanout: 1, Payload: 64}
	caseV4 = Case{Encap: "vxlan", Fanout: 4, Payload: 64}
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
		meas(Case{Encap: "gre", Fanout: 4, Payload: 1400}, PathUserspace, 1, 80e3, 11),
	}
	ms[0].SenderLimited = true
	return &Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 12.5, Kernel: "6.1", CPUs: 2, Binary: "/bin/meshcast",
		Quick: true, Rounds: 1, Fanouts: []int{1, 4}, Payloads: []int{64, 1400}, Encaps: []string{"vxlan", "gre"},
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
