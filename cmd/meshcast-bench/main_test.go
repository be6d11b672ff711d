package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/bench"
)

func TestParseArgs(t *testing.T) {
	var stderr bytes.Buffer
	o, _, err := parseArgs([]string{"--meshcast", "/x/meshcast", "--quick", "--rounds", "2", "--json", "j.json", "--chart", "c",
		"--fanout", "1,8", "--payload", "64", "--encap", "vxlan", "--paths", "userspace,kernel-hre"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	want := bench.Options{Binary: "/x/meshcast", Quick: true, Rounds: 2, JSONPath: "j.json", ChartPath: "c",
		Fanouts: []int{1, 8}, Payloads: []int{64}, Encaps: []string{"vxlan"}, Paths: []string{bench.PathUserspace, bench.PathKernelHRE}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v\nwant %+v", o, want)
	}

	// --measure: repeatable, comma-separated, or both.
	for _, args := range [][]string{
		{"--measure", "source,receiver"},
		{"--measure", "source", "--measure", "receiver"},
		{"--measure=source", "--measure=receiver"},
	} {
		o, _, err := parseArgs(args, &stderr)
		if err != nil || !reflect.DeepEqual(o.Measures, []string{bench.MeasureSource, bench.MeasureReceiver}) {
			t.Errorf("%q: measures %q, %v", args, o.Measures, err)
		}
	}
	if _, _, err := parseArgs([]string{"--from", "r.json", "--measure", "source"}, &stderr); err == nil {
		t.Error("--from with --measure: no error")
	}

	// --underlay picks the family; Check (a usage error) rejects others.
	o, _, err = parseArgs([]string{"--underlay", "6"}, &stderr)
	if err != nil || o.Underlay != bench.Underlay6 {
		t.Errorf("--underlay 6: %q, %v", o.Underlay, err)
	}
	if o, _, err := parseArgs(nil, &stderr); err != nil || o.Underlay != "" {
		t.Errorf("without --underlay: %q, %v; want the default", o.Underlay, err)
	}

	// The old name still works, and says what to use instead.
	stderr.Reset()
	o, _, err = parseArgs([]string{"--binary", "/y/meshcast"}, &stderr)
	if err != nil || o.Binary != "/y/meshcast" {
		t.Errorf("--binary: %+v, %v", o, err)
	}
	if !strings.Contains(stderr.String(), "--meshcast") {
		t.Errorf("--binary: no deprecation notice naming --meshcast in %q", stderr.String())
	}

	o, from, err := parseArgs(nil, &stderr)
	if err != nil || o.Binary != "" || from != "" {
		t.Errorf("without --meshcast: %+v, %q, %v; want no binary yet", o, from, err)
	}
	if _, _, err := parseArgs([]string{"--nope"}, &stderr); err == nil {
		t.Error("no error for an unknown flag")
	}
	if _, _, err := parseArgs([]string{"extra"}, &stderr); err == nil {
		t.Error("no error for an argument")
	}
	if o, from, err := parseArgs([]string{"--from", "r.json", "--chart", "c"}, &stderr); err != nil || from != "r.json" || o.ChartPath != "c" {
		t.Errorf("--from: %+v, %q, %v", o, from, err)
	}
	if _, _, err := parseArgs([]string{"--from", "r.json", "--quick"}, &stderr); err == nil || !strings.Contains(err.Error(), "--quick") {
		t.Errorf("--from with --quick: %v; want an error naming --quick", err)
	}
}

func TestFindMeshcast(t *testing.T) {
	dir, onPath, empty := t.TempDir(), t.TempDir(), t.TempDir()
	exe := filepath.Join(dir, "meshcast-bench")
	write := func(name string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(name, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(exe, 0o755)
	write(filepath.Join(onPath, "meshcast"), 0o755)

	// Nothing next to it: the one on PATH.
	t.Setenv("PATH", onPath)
	if got, err := findMeshcast(exe); err != nil || got != filepath.Join(onPath, "meshcast") {
		t.Errorf("PATH only: %q, %v", got, err)
	}
	// A file that is not executable next to it does not count.
	write(filepath.Join(dir, "meshcast"), 0o644)
	if got, err := findMeshcast(exe); err != nil || got != filepath.Join(onPath, "meshcast") {
		t.Errorf("non-executable neighbour: %q, %v", got, err)
	}
	// The one next to it wins over PATH.
	if err := os.Chmod(filepath.Join(dir, "meshcast"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := findMeshcast(exe); err != nil || got != filepath.Join(dir, "meshcast") {
		t.Errorf("neighbour: %q, %v", got, err)
	}
	// Neither: an error that says what to pass.
	t.Setenv("PATH", empty)
	if got, err := findMeshcast(filepath.Join(empty, "meshcast-bench")); err == nil || !strings.Contains(err.Error(), "--meshcast") {
		t.Errorf("none: %q, %v; want an error naming --meshcast", got, err)
	}
	if got, err := findMeshcast(""); err == nil {
		t.Errorf("no executable, empty PATH: %q; want an error", got)
	}
}

func TestMainUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--fanout", "x"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("bad flag: exit %d; want %d", code, exitUsage)
	}
	stderr.Reset()
	if code := Main([]string{"--help"}, &stdout, &stderr); code != exitOK ||
		!strings.Contains(stderr.String(), "--quick") || !strings.Contains(stderr.String(), "--meshcast") ||
		strings.Contains(stderr.String(), "--binary") {
		t.Errorf("--help: exit %d, output %q", code, stderr.String())
	}
	stderr.Reset()
	if code := Main([]string{"--meshcast", "/x", "--payload", "9999"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("bad payload: exit %d; want %d", code, exitUsage)
	}
	stderr.Reset()
	if code := Main([]string{"--meshcast", "/x", "--measure", "source,sink"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), `"sink"`) {
		t.Errorf("bad measure: exit %d, output %q; want %d naming it", code, stderr.String(), exitUsage)
	}
	stderr.Reset()
	if code := Main([]string{"--help"}, &stdout, &stderr); code != exitOK || !strings.Contains(stderr.String(), "--measure") ||
		!strings.Contains(stderr.String(), "min(source copies/s / N") {
		t.Errorf("--help does not explain --measure: %q", stderr.String())
	}
	stderr.Reset()
	if code := Main([]string{"--meshcast", "/x", "--underlay", "ipv6"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), `"ipv6"`) {
		t.Errorf("bad underlay: exit %d, output %q; want %d naming it", code, stderr.String(), exitUsage)
	}
	stderr.Reset()
	if code := Main([]string{"--meshcast", "/x", "--underlay", "6", "--payload", "1420"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "1430") {
		t.Errorf("payload 1420 over IPv6: exit %d, output %q; want %d naming the MTU 1430", code, stderr.String(), exitUsage)
	}
	stderr.Reset()
	if code := Main([]string{"--help"}, &stdout, &stderr); code != exitOK || !strings.Contains(stderr.String(), "--underlay FAMILY") {
		t.Errorf("--help does not list --underlay FAMILY: %q", stderr.String())
	}
	stderr.Reset()
	t.Setenv("PATH", t.TempDir())
	if code := Main([]string{"--quick"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "--meshcast") {
		t.Errorf("no meshcast to be found: exit %d, output %q; want %d and a hint", code, stderr.String(), exitUsage)
	}
}

// TestRedraw reads a saved report back, prints its table and draws its
// chart, as `meshcast-bench --from` does: docs/bench-quick.json is such a
// report.
func TestRedraw(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "quick")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--from", "../../docs/bench-quick.json", "--chart", prefix}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"wrote " + prefix + ".png, " + prefix + ".svg", "userspace", "kernel-hre*", "vxlan      16     1400"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{prefix + ".png", prefix + ".svg"} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if code := Main([]string{"--from", filepath.Join(t.TempDir(), "none.json")}, &stdout, &stderr); code != exitRuntime {
		t.Errorf("missing report: exit %d; want %d", code, exitRuntime)
	}
}
