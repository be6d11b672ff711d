// Command meshcast-bench measures meshcast's userspace path against the
// kernel path in network namespaces it builds and removes itself: copies per
// second at the loss threshold, CPU per million copies, one-way latency and
// delivery, with the userspace/kernel ratio per case. It needs root.
//
// --measure picks what limits a deployment, which runs one daemon per
// instance: source (the copies per second one sending node sends to N
// receiving nodes, counted at their underlay ingress), receiver (the
// datagrams per second one receiving node delivers to an application), and
// e2e (everything on one machine, the default); --quick measures source and
// receiver, and the report then estimates the ceiling of one stream per
// fanout.
//
// It is a binary of its own so that the meshcast daemon, which runs with
// CAP_NET_ADMIN, links none of the charting code. It starts the daemons it
// measures from a meshcast binary: --meshcast PATH, by default the meshcast
// next to this executable, else the one on PATH. With --from it measures
// nothing and needs no root: it prints the table of a report saved with
// --json and draws its chart again. --underlay 6 runs the tunnels over an
// IPv6 underlay instead of IPv4. See package bench for what is measured
// and how.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshcast/meshcast/bench"
	"github.com/spf13/pflag"
)

// Exit statuses, as for the daemon.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the harness with command-line arguments args (without the
// program name), printing progress and the table to stdout and errors to
// stderr, and returns the exit status: 0 on success, 1 when the run failed,
// 2 on a usage error. SIGINT and SIGTERM stop the run cleanly (namespaces
// and daemons removed). With --from it only prints the table and draws the
// chart of a saved report.
func Main(args []string, stdout, stderr io.Writer) int {
	opts, from, err := parseArgs(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err == nil && from != "" {
		if err := redraw(from, opts.ChartPath, stdout); err != nil {
			fmt.Fprintf(stderr, "meshcast-bench: %v\n", err)
			return exitRuntime
		}
		return exitOK
	}
	if err == nil && opts.Binary == "" {
		exe, _ := os.Executable() // "" if unknown: then PATH alone
		opts.Binary, err = findMeshcast(exe)
	}
	if err == nil {
		err = opts.Check() // Run checks again; here it is a usage error
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshcast-bench: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, opts, stdout); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted: the table above holds what was measured; the namespaces and daemons are removed")
		}
		fmt.Fprintf(stderr, "meshcast-bench: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// redraw prints the table of the report saved in the JSON file from and,
// if chart is set, draws its chart into chart+".png" and chart+".svg".
func redraw(from, chart string, stdout io.Writer) error {
	rep, err := bench.ReadJSON(from)
	if err != nil {
		return err
	}
	if chart != "" {
		files, err := bench.WriteChart(chart, rep.Results)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", strings.Join(files, ", "))
	}
	return bench.WriteTable(stdout, rep)
}

// parseArgs turns the command line into bench.Options, and returns the
// report file of --from, if given. Options.Binary stays empty unless
// --meshcast (or its old name --binary) is given.
func parseArgs(args []string, stderr io.Writer) (o bench.Options, from string, err error) {
	fs := pflag.NewFlagSet("meshcast-bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Binary, "meshcast", "", "meshcast daemon `PATH` to benchmark (default: the meshcast next to this executable, else on PATH)")
	fs.StringVar(&o.Binary, "binary", "", "old name of --meshcast")
	fs.MarkDeprecated("binary", "use --meshcast")
	fs.BoolVar(&o.Quick, "quick", false, "short run: --measure source,receiver, fanout 1,4,16, payload 64,1400, vxlan and gre, 1 round, short trials (about 5 minutes on 2 cores)")
	fs.StringSliceVar(&o.Measures, "measure", nil, "what to measure, repeatable or comma-separated: source (copies/s one sending node sends to N receiving nodes, counted and dropped at their ingress), receiver (datagrams/s one receiving node delivers to an application), e2e (N receiving nodes delivering to applications) (default e2e; source,receiver with --quick)")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds of interleaved paths per case; the report gives medians (default 3, 1 with --quick)")
	fs.StringVar(&o.JSONPath, "json", "", "write every sample and the results as JSON to `FILE`")
	fs.StringVar(&o.ChartPath, "chart", "", "write a chart of copies/s against fanout to `PREFIX`.png and PREFIX.svg")
	fs.IntSliceVar(&o.Fanouts, "fanout", nil, "subscriber counts, comma-separated (default 1,2,4,8,16; 1,4,16 with --quick)")
	fs.IntSliceVar(&o.Payloads, "payload", nil, "UDP payload sizes in bytes, comma-separated (default 64,1400)")
	fs.StringSliceVar(&o.Encaps, "encap", nil, "encapsulations: gre, vxlan (default both)")
	fs.StringSliceVar(&o.Paths, "paths", nil, "paths: userspace, kernel-pair, kernel-hre, ovs (default all; those that cannot run are listed as skipped)")
	fs.StringVar(&o.Underlay, "underlay", "", "the address `FAMILY` of the underlay the tunnels cross: 4 (node K has 198.18.0.K/24) or 6 (fd00:198:18::K/64, no IPv4 underlay address; the daemons get --underlay-family 6); paths that cannot run over it are listed as skipped (default 4)")
	fs.DurationVar(&o.TrialDuration, "trial", 0, "sending time of one step of the rate search (default 500ms, 250ms with --quick)")
	fs.DurationVar(&o.LatencyDuration, "latency-trial", 0, "sending time of the latency trial, and of the source measure's copy-count check (default 2s, 500ms with --quick)")
	fs.Float64Var(&o.LatencyRate, "latency-rate", 0, "datagrams/s of the latency trial and of the copy-count check (default 1000)")
	fs.StringVar(&from, "from", "", "measure nothing: print the table of the report that --json saved in `FILE`, and with --chart draw its chart again (no root needed)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: meshcast-bench [flags]

Compare the userspace path (meshcast run) with the kernel path (meshcast run
--dataplane kernel) in network namespaces: replication rate, CPU per copy,
latency and delivery. Needs root. Namespaces are named mcb-*; all are removed
at the end, also on Ctrl-C.

A deployment runs one daemon per instance: a stream to N subscribers costs
the sending instance N copies and each receiving instance one. --measure
source measures the first, --measure receiver the second, and with both the
report estimates the ceiling of one stream: min(source copies/s / N,
receiver datagrams/s).

Examples:
  meshcast-bench --quick
  meshcast-bench --meshcast bin/meshcast --quick --json out.json --chart out
  meshcast-bench --measure source --measure receiver --encap vxlan --rounds 3 --json out.json --chart out
  meshcast-bench --fanout 1,4,16 --payload 64,1400 --encap vxlan --json out.json --chart out
  meshcast-bench --measure source --underlay 6 --paths userspace --json out6.json
  meshcast-bench --from out.json --chart out

Flags:
%s`, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return o, "", err
	}
	if fs.NArg() > 0 {
		return o, "", fmt.Errorf("unexpected argument %q: meshcast-bench takes only flags", fs.Arg(0))
	}
	if from != "" {
		var other []string
		fs.Visit(func(f *pflag.Flag) {
			if f.Name != "from" && f.Name != "chart" {
				other = append(other, "--"+f.Name)
			}
		})
		if len(other) > 0 {
			return o, "", fmt.Errorf("--from redraws a saved report, so only --chart goes with it, not %s", strings.Join(other, ", "))
		}
	}
	return o, from, nil
}

// findMeshcast returns the meshcast daemon binary to run when --meshcast is
// not given: the executable file "meshcast" in the directory of exe (this
// program), else "meshcast" on PATH. exe may be empty.
func findMeshcast(exe string) (string, error) {
	if exe != "" {
		next := filepath.Join(filepath.Dir(exe), "meshcast")
		if fi, err := os.Stat(next); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return next, nil
		}
	}
	p, err := exec.LookPath("meshcast")
	if err == nil {
		return p, nil
	}
	where := "on PATH"
	if exe != "" {
		where = fmt.Sprintf("next to %s nor on PATH", exe)
	}
	return "", fmt.Errorf("no meshcast binary %s: build it (make build) or pass --meshcast PATH", where)
}
