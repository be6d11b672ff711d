package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// Exit statuses of Main, as for the daemon.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// Main runs the harness with command-line arguments args (without the
// program or subcommand name), printing progress and the table to stdout
// and errors to stderr, and returns the exit status: 0 on success, 1 when
// the run failed, 2 on a usage error. SIGINT and SIGTERM stop the run
// cleanly (namespaces and daemons removed). It is meant for `meshcast
// bench`: without --binary it runs the executable it is part of.
func Main(args []string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		_, err = opts.withDefaults() // Run checks again; here it is a usage error
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshcast bench: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := Run(ctx, opts, stdout); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted: the table above holds what was measured; the namespaces and daemons are removed")
		}
		fmt.Fprintf(stderr, "meshcast bench: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// parseArgs turns the command line into Options.
func parseArgs(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := pflag.NewFlagSet("meshcast bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Binary, "binary", "", "meshcast `PATH` to benchmark (default: this executable)")
	fs.BoolVar(&o.Quick, "quick", false, "short run: fanout 1,4,16, payload 64,1400, vxlan and gre, 1 round, short trials (about 3 minutes)")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds of interleaved paths per case; the report gives medians (default 3, 1 with --quick)")
	fs.StringVar(&o.JSONPath, "json", "", "write every sample and the results as JSON to `FILE`")
	fs.StringVar(&o.ChartPath, "chart", "", "write a chart of copies/s against fanout to `PREFIX`.png and PREFIX.svg")
	fs.IntSliceVar(&o.Fanouts, "fanout", nil, "subscriber counts, comma-separated (default 1,2,4,8,16; 1,4,16 with --quick)")
	fs.IntSliceVar(&o.Payloads, "payload", nil, "UDP payload sizes in bytes, comma-separated (default 64,1400)")
	fs.StringSliceVar(&o.Encaps, "encap", nil, "encapsulations: gre, vxlan (default both)")
	fs.StringSliceVar(&o.Paths, "paths", nil, "paths: userspace, kernel-pair, kernel-hre, ovs (default all; those that cannot run are listed as skipped)")
	fs.DurationVar(&o.TrialDuration, "trial", 0, "sending time of one step of the rate search (default 500ms, 250ms with --quick)")
	fs.DurationVar(&o.LatencyDuration, "latency-trial", 0, "sending time of the latency trial (default 2s, 500ms with --quick)")
	fs.Float64Var(&o.LatencyRate, "latency-rate", 0, "datagrams/s of the latency trial (default 1000)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: meshcast bench [flags]

Compare the userspace path (meshcast run) with the kernel path (meshcast run
--dataplane kernel) in network namespaces: replication rate, CPU per copy,
latency and delivery. Needs root. Namespaces are named mcb-*; all are removed
at the end, also on Ctrl-C.

Flags:
%s`, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: meshcast bench takes only flags", fs.Arg(0))
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding this executable: %w; pass --binary PATH", err)
		}
		o.Binary = exe
	}
	return o, nil
}
